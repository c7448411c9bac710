//! `[roles]` and the subjects' `name`: the tables and columns reports and waivers read are
//! named in `policy.toml`, so data that names them otherwise needs a file change, not a code
//! change. The sample with its service table, the `verified` column, the members' `name` and
//! the communities' `district` renamed gives the same findings and the same report data;
//! names that are not in the schema are `check` errors with their line and column.

mod common;

use common::*;
use rulebook::report::{self, Level};
use std::path::Path;

/// Replace `from` (which must occur) by `to` in a file.
fn replace(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{}: no `{from}`", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// A copy of the policies and of the 2020 sample with the contract names changed, and
/// `[roles]` saying so.
fn renamed(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let policies = policies_copy(tmp);
    let data = tmp.join("data");
    copy_dir(&root().join("samples/hubei-2020"), &data);
    // The service table and its `verified` column.
    let manifest = policies.join("policy.toml");
    replace(&manifest, "[tables.services]", "[tables.service_log]");
    replace(
        &manifest,
        "[tables.services.columns]",
        "[tables.service_log.columns]",
    );
    replace(
        &manifest,
        "verified = { type = \"bool\"",
        "confirmed = { type = \"bool\"",
    );
    for e in std::fs::read_dir(policies.join("directives")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text
            .replace("table = \"services\"", "table = \"service_log\"")
            .replace("column = \"verified\"", "column = \"confirmed\"");
        std::fs::write(&p, text).unwrap();
    }
    std::fs::rename(data.join("services.csv"), data.join("service_log.csv")).unwrap();
    replace(&data.join("service_log.csv"), ",verified\n", ",confirmed\n");
    // The members' name column and the communities' district.
    replace(
        &manifest,
        "name = { type = \"text\", label = \"姓名\"",
        "full_name = { type = \"text\", label = \"姓名\"",
    );
    replace(
        &data.join("members.csv"),
        "member_id,name,",
        "member_id,full_name,",
    );
    replace(
        &manifest,
        "district = { type = \"text\"",
        "area = { type = \"text\"",
    );
    replace(&data.join("communities.csv"), ",district\n", ",area\n");
    replace(
        &manifest,
        "table = \"members\"\nlabel = \"党员\"",
        "table = \"members\"\nlabel = \"党员\"\nname = \"full_name\"",
    );
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        "\n[roles.services]\ntable = \"service_log\"\nverified = \"confirmed\"\n\n[roles.communities]\ndistrict = \"area\"\n",
    );
    std::fs::write(&manifest, text).unwrap();
    (policies, data)
}

/// Every report's data as text, with what differs by name alone made equal: the policy
/// hash, the service table's name and file.
fn report_data(policies: &Path, data: &Path) -> Vec<String> {
    let set = rulebook::policy::load(policies).unwrap_or_else(|e| panic!("{}", e.render()));
    let ds = rulebook::data::load(data, &set.schema, &Default::default()).unwrap();
    let run = rulebook::eval::prepare(&set, &ds, None).unwrap();
    let outcomes = run.outcomes().unwrap();
    let model = report::Model::new(&run, &outcomes);
    model
        .jobs(Level::All)
        .into_iter()
        .map(|mut j| {
            j.context["policy"]["hash"] = "HASH".into();
            j.context["policy"]["short_hash"] = "HASH".into();
            format!("{} {}", j.file.display(), j.context).replace("service_log", "services")
        })
        .collect()
}

#[test]
fn renamed_tables_and_columns_give_the_same_findings_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let (policies, data) = renamed(tmp.path());
    let before = report_data(
        &policies_copy(&tmp.path().join("orig")),
        &root().join("samples/hubei-2020"),
    );
    let after = report_data(&policies, &data);
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a);
    }
    // The reports show what the renamed columns hold.
    let all = after.join("\n");
    assert!(all.contains("张喆"), "member names from `full_name`");
    assert!(all.contains("武昌区"), "districts from `area`");
    let served = all.split("\"services_total\":").skip(1);
    assert!(
        served.filter(|s| !s.starts_with('0')).count() > 0,
        "community hours from the renamed services"
    );
    // Findings too.
    let f_before = eval_json(
        &policies_copy(&tmp.path().join("orig2")),
        &root().join("samples/hubei-2020"),
        None,
    );
    let f_after = eval_json(&policies, &data, None);
    let strip = |v: &Vec<serde_json::Value>| {
        v.iter()
            .map(|f| {
                let mut f = f.clone();
                f["policy_hash"] = serde_json::Value::Null;
                f.to_string().replace("service_log", "services")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&f_before), strip(&f_after));
}

#[test]
fn names_not_in_the_schema_are_check_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let policies = policies_copy(tmp.path());
    let manifest = policies.join("policy.toml");
    replace(
        &manifest,
        "table = \"members\"\nlabel = \"党员\"",
        "table = \"members\"\nlabel = \"党员\"\nname = \"fullname\"",
    );
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        "\n[roles.services]\ntable = \"services\"\nverified = \"checked\"\nstart = \"category\"\n\n[roles.communities]\ntable = \"comunities\"\n\n[roles.organizations]\nbranch = \"unit_brnch\"\n",
    );
    std::fs::write(&manifest, &text).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let out = rulebook().arg("check").arg(&policies).output().unwrap();
    let (stdout, stderr) = texts(&out);
    let all = format!("{stdout}{stderr}");
    assert!(!out.status.success(), "{all}");
    for (needle, message) in [
        (
            "name = \"fullname\"",
            "subject `member`: table `members` has no column `fullname`",
        ),
        (
            "verified = \"checked\"",
            "`[roles.services]`: table `services` has no column `checked`",
        ),
        (
            "start = \"category\"",
            "`[roles.services]`: column `services.category` is enum, not datetime",
        ),
        (
            "table = \"comunities\"",
            "`[roles.communities]`: unknown table `comunities`",
        ),
        (
            "branch = \"unit_brnch\"",
            "`[roles.organizations]`: `unit_brnch` is not a value of column `kind`",
        ),
    ] {
        assert!(all.contains(message), "missing `{message}` in:\n{all}");
        let at = format!("policy.toml:{}:", line_of(needle));
        assert!(
            all.lines().any(|l| l.contains(&at)),
            "`{message}` not reported at {at}:\n{all}"
        );
    }
    assert!(all.contains("did you mean `communities`?"), "{all}");
    assert!(all.contains("did you mean `unit_branch`?"), "{all}");
    assert_eq!(all.matches("RB0113").count(), 5, "{all}");
}
