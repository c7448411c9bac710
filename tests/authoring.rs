//! Tools for policy staff: `rulebook test` (cases beside the rules, coverage) and
//! `rulebook explain` (why a subject got its verdict).

mod common;

use common::*;

#[test]
fn shipped_policy_tests_pass_with_every_rule_covered() {
    let out = rulebook()
        .args(["test", "--require-coverage"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("12/12 rules tested"), "{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("BROKEN"), "{stdout}");
}

#[test]
fn breaking_a_rule_in_a_copy_fails_with_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    let file = pol.join("directives/service-hours-20.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "values = [{ from = 2020-01-01, value = 20 }]",
            "values = [{ from = 2020-01-01, value = 24 }]",
        ),
    )
    .unwrap();
    let out = rulebook()
        .arg("test")
        .arg("--policies")
        .arg(&pol)
        .output()
        .unwrap();
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("hours.yearly M1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected: pass") && stdout.contains("actual:   fail"),
        "{stdout}"
    );
    assert!(
        stdout.contains("还需 4 小时"),
        "the finding's message is shown: {stdout}"
    );
}

#[test]
fn rules_without_tests_are_listed_and_can_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    // Every file with cases for the dual-registration rules.
    for f in ["dual-registration-2020-07", "multi-year", "assessment"] {
        std::fs::remove_file(pol.join(format!("tests/{f}.toml"))).unwrap();
    }
    let out = rulebook()
        .arg("test")
        .arg("--policies")
        .arg(&pol)
        .output()
        .unwrap();
    let (stdout, _) = texts(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("rules with no test: dual.filing, dual.member-report, dual.org-registration, dual.spare-time"), "{stdout}");
    let out = rulebook()
        .args(["test", "--require-coverage"])
        .arg("--policies")
        .arg(&pol)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn explain_shows_records_parameters_versions_and_clause() {
    let out = rulebook()
        .args([
            "explain",
            "--data",
            "samples/hubei-2020",
            "--subject",
            "M017",
            "--rule",
            "hours.yearly",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let e: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(e["subject_id"], "M017");
    assert_eq!(e["subject_name"], "何雪梅");
    let r = &e["rules"][0];
    assert_eq!(r["rule"], "hours.yearly");
    assert_eq!(r["version"], "1");
    assert_eq!(r["status"], "fail");
    assert!(r["chosen_because"].as_str().unwrap().contains("2020-07-01"));
    assert!(
        r["clause"]
            .as_str()
            .unwrap()
            .contains("要求每位党员在社区服务 20小时")
    );
    let p = &r["parameters"][0];
    assert_eq!(p["name"], "service_hours_required");
    assert_eq!(p["value"], "20");
    assert_eq!(p["from"], "2020-01-01");
    let hours = r["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "verified_hours")
        .unwrap();
    assert_eq!(hours["value"], 13.5);
    let used: Vec<u64> = hours["used"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["line"].as_u64().unwrap())
        .collect();
    assert_eq!(used, vec![162, 221, 284]);
    // The April services are left out, and the reason says which condition they fail.
    let excluded = hours["excluded"].as_array().unwrap();
    assert_eq!(excluded.len(), 2);
    assert!(
        excluded[0]["reason"]
            .as_str()
            .unwrap()
            .contains("start within cycle (2020-07-01 – 2020-12-31)")
    );
    let steps = r["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["what"] == "let hours_missing" && s["result"] == "6.5")
    );

    // The same lines of services.csv are the member's verified services.
    let text = std::fs::read_to_string(root().join("samples/hubei-2020/services.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for l in used {
        assert!(lines[l as usize - 1].contains(",M017,"));
    }
}

#[test]
fn explain_in_a_terminal_and_unknown_subjects() {
    let out = rulebook()
        .args([
            "explain",
            "--data",
            "samples/hubei-2020",
            "--subject",
            "B05",
        ])
        .output()
        .unwrap();
    let (stdout, _) = texts(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("organization B05")
            && stdout.contains("grid.branch-work-team")
            && stdout.contains("dual.org-registration"),
        "{stdout}"
    );
    let out = rulebook()
        .args([
            "explain",
            "--data",
            "samples/hubei-2020",
            "--subject",
            "NOPE",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(texts(&out).1.contains("no member or organization `NOPE`"));
}

/// Members whose verified hours in the 2020 cycle (2020-07-01..2020-12-31) lie in [lo, hi),
/// computed straight from the sample CSV, independently of the engine.
fn members_with_hours_between(lo: f64, hi: f64) -> Vec<String> {
    let mut rdr = csv::Reader::from_path(root().join("samples/hubei-2020/services.csv")).unwrap();
    let mut hours: std::collections::BTreeMap<String, f64> = Default::default();
    let dt = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    for r in rdr.records() {
        let r = r.unwrap();
        let (start, end) = (dt(&r[3]), dt(&r[4]));
        let d = start.date().to_string();
        if &r[7] == "true" && ("2020-07-01".."2021-01-01").contains(&d.as_str()) {
            *hours.entry(r[1].to_string()).or_default() +=
                (end - start).num_minutes() as f64 / 60.0;
        }
    }
    hours
        .into_iter()
        .filter(|(_, h)| *h >= lo && *h < hi)
        .map(|(m, _)| m)
        .collect()
}

#[test]
fn diff_lists_exactly_the_members_a_raised_hour_requirement_affects() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    let file = pol.join("directives/service-hours-20.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "values = [{ from = 2020-01-01, value = 20 }]",
            "values = [{ from = 2020-01-01, value = 22 }]",
        ),
    )
    .unwrap();
    let out = rulebook()
        .args([
            "diff",
            "--base",
            "policies",
            "--data",
            "samples/hubei-2020",
            "--format",
            "json",
            "--policies",
        ])
        .arg(&pol)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let impact: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let changed: Vec<String> = impact["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["rule"], "hours.yearly");
            assert_eq!(c["before"], "pass");
            assert_eq!(c["after"], "fail");
            c["subject_id"].as_str().unwrap().to_string()
        })
        .collect();
    let expected = members_with_hours_between(20.0, 22.0);
    assert!(!expected.is_empty());
    assert_eq!(changed, expected);
    assert_eq!(
        impact["counts"]["service-hours-20 / hours.yearly"]["pass→fail"],
        expected.len()
    );

    // Markdown for a review comment, and an exit code for CI.
    let out = rulebook()
        .args([
            "diff",
            "--base",
            "policies",
            "--data",
            "samples/hubei-2020",
            "--format",
            "markdown",
            "--fail-on-change",
            "--policies",
        ])
        .arg(&pol)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let md = texts(&out).0;
    assert!(
        md.contains("| service-hours-20 | `hours.yearly` | pass→fail:"),
        "{md}"
    );
    // No change, no failure.
    let out = rulebook()
        .args([
            "diff",
            "--base",
            "policies",
            "--data",
            "samples/hubei-2020",
            "--fail-on-change",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// `diff` compares one status byte per finding when both policy sets read the data with the
/// same schema, and whole findings when they do not; both give the same impact.
#[test]
fn diff_gives_the_same_impact_with_one_schema_or_two() {
    let dir = tempfile::tempdir().unwrap();
    let new = policies_copy(dir.path());
    let file = new.join("directives/service-hours-20.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "values = [{ from = 2020-01-01, value = 20 }]",
            "values = [{ from = 2020-01-01, value = 25 }]",
        ),
    )
    .unwrap();
    // The base with one more table alias: the same data, another schema.
    let other = dir.path().join("other");
    copy_dir(&policies(), &other);
    let manifest = other.join("policy.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains(r#""社区名单"]"#));
    std::fs::write(
        &manifest,
        text.replacen(r#""社区名单"]"#, r#""社区名单", "社区表"]"#, 1),
    )
    .unwrap();
    let impact = |base: &std::path::Path| {
        let out = rulebook()
            .args([
                "diff",
                "--data",
                "samples/hubei-2020",
                "--format",
                "json",
                "--base",
            ])
            .arg(base)
            .arg("--policies")
            .arg(&new)
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{stderr}");
        let mut v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        v["base"] = serde_json::Value::Null;
        v
    };
    let one = impact(&policies());
    assert!(one["changes"].as_array().unwrap().len() > 5, "{one}");
    assert_eq!(one, impact(&other));
}

#[test]
fn diff_against_a_git_revision() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "policies"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.org",
        "commit",
        "-qm",
        "base",
    ]);
    let file = pol.join("directives/service-hours-20.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "values = [{ from = 2020-01-01, value = 20 }]",
            "values = [{ from = 2020-01-01, value = 22 }]",
        ),
    )
    .unwrap();
    let out = rulebook()
        .args([
            "diff",
            "--base",
            "HEAD",
            "--data",
            "samples/hubei-2020",
            "--policies",
        ])
        .arg(&pol)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "{} finding(s) changed",
            members_with_hours_between(20.0, 22.0).len()
        )),
        "{stdout}"
    );
}

#[test]
fn waivers_turn_matching_findings_into_waived_and_report_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(
        dir.path(),
        &[(
            "services",
            "S1,M1,C1,2020-08-01 08:00,2020-08-01 10:00,patrol,community,true",
        )],
    );
    std::fs::write(
        data.join("豁免记录.csv"),
        "对象编号,文件,规则,豁免理由,批准人,生效日期,失效日期\n\
         M1,service-hours-20,hours.yearly,因病住院三个月,某厅机关党委,2020-07-01,2021-06-30\n\
         M2,service-hours-20,,驻村扶贫,某厅机关党委,2020-01-01,2020-06-30\n\
         M9,service-hours-20,,不存在的党员,某厅机关党委,2020-01-01,\n\
         B1,dual-registration-2020-07,dual.org-registration,联系社区撤并,某区委组织部,2020-07-01,\n",
    )
    .unwrap();
    let out = rulebook()
        .args([
            "eval",
            "--format",
            "json",
            "--as-of",
            "2020-12-31",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let f: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    let m1 = finding(&f, "hours.yearly", "M1");
    assert_eq!(m1["status"], "waived");
    assert!(
        m1["message"]
            .as_str()
            .unwrap()
            .starts_with("已豁免：因病住院三个月"),
        "{}",
        m1["message"]
    );
    assert_eq!(m1["evidence"]["waiver"]["original_status"], "fail");
    assert_eq!(status(&f, "dual.org-registration", "B1"), "waived");
    // Expired: M2's finding stays a failure, and the run says why the waiver was not used.
    assert_eq!(status(&f, "hours.yearly", "M2"), "fail");
    assert!(stderr.contains("expired on 2020-06-30"), "{stderr}");
    assert!(
        stderr.contains("unknown member or organization `M9`"),
        "{stderr}"
    );
    // A waiver covers only its own directive.
    assert_eq!(status(&f, "epidemic.report-residence", "M1"), "fail");
}

/// A directive that ended before --as-of: explain says its version was chosen on the
/// directive's last day, and shows the period starting at the notice.
#[test]
fn explain_names_the_last_day_of_an_ended_directive() {
    let out = rulebook()
        .args([
            "explain",
            "--data",
            "samples/hubei-2020",
            "--subject",
            "M027",
            "--rule",
            "sinking.detached",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("which contains 2020-05-01, the directive's last day"),
        "{stdout}"
    );
    assert!(stdout.contains("2020-02-27 – 2020-05-01"), "{stdout}");
    assert!(
        stdout.contains("line 2: member_id=M027 date=2020-02-24 — fails"),
        "{stdout}"
    );
}
