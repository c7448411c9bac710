//! The bundled samples through the real CLI: the summary, the findings contract, the same
//! verdicts from the English and the Chinese export, the designed verdicts, and an insta
//! snapshot of every finding (a rule change shows up as a reviewed diff).

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

fn sample_findings(folder: &str) -> Vec<Value> {
    eval_json(&policies(), &root().join("samples").join(folder), None)
}

#[test]
fn eval_prints_summary_with_rows_and_directives() {
    let out = rulebook()
        .args(["eval", "--data", "samples/hubei-2020"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("as of 2020-12-31"), "{stdout}");
    for table in ["members", "services", "checkins", "org_registrations"] {
        assert!(stdout.contains(table), "{stdout}");
    }
    assert!(stdout.contains("1463      1463         0"), "{stdout}");
    for d in [
        "epidemic-report-2020-02-07",
        "two-teams-one-grid-2020-02-17",
        "sinking-discipline-2020-02-27",
        "dual-registration-2020-07",
        "service-hours-20",
    ] {
        assert!(stdout.contains(d), "{d} missing in {stdout}");
    }
}

#[test]
fn json_findings_follow_the_contract() {
    let findings = sample_findings("hubei-2020");
    let statuses: BTreeSet<&str> =
        ["pass", "fail", "warn", "not_applicable", "error", "waived"].into();
    let mut keys = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &findings {
        for field in [
            "directive",
            "rule",
            "rule_version",
            "subject_kind",
            "subject_id",
            "status",
            "message",
            "evidence",
            "source",
            "period",
        ] {
            assert!(f.get(field).is_some(), "missing {field} in {f}");
        }
        assert!(statuses.contains(f["status"].as_str().unwrap()));
        assert!(["member", "organization"].contains(&f["subject_kind"].as_str().unwrap()));
        assert!(f["evidence"].is_object());
        assert!(!f["message"].as_str().unwrap().is_empty());
        assert!(
            f["source"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        );
        assert_eq!(f["as_of"], "2020-12-31");
        assert_eq!(f["policy_version"], "1.0.0");
        assert_eq!(f["policy_hash"].as_str().unwrap().len(), 64);
        assert!(
            seen.insert((
                f["rule"].as_str().unwrap().to_string(),
                f["subject_id"].as_str().unwrap().to_string()
            )),
            "two findings for one (rule, subject)"
        );
        keys.push((
            f["directive"].as_str().unwrap().to_string(),
            f["rule"].as_str().unwrap().to_string(),
            f["subject_id"].as_str().unwrap().to_string(),
        ));
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        keys, sorted,
        "findings are ordered by directive, rule, subject"
    );
    // 60 members × 10 member rules + 11 organizations × 2 organization rules.
    assert_eq!(findings.len(), 60 * 10 + 11 * 2);
}

#[test]
fn evidence_names_input_rows() {
    let findings = sample_findings("hubei-2020");
    let f = finding(&findings, "hours.yearly", "M017");
    assert_eq!(f["status"], "fail");
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("还需 6.5 小时，截止 2020-12-31"), "{msg}");
    let rec = &f["evidence"]["records"]["verified_hours"];
    assert_eq!(rec["file"], "services.csv");
    let lines = rec["lines"].as_array().unwrap();
    assert!(!lines.is_empty());
    // Each named line of services.csv is a verified service of M017.
    let text = std::fs::read_to_string(root().join("samples/hubei-2020/services.csv")).unwrap();
    let all: Vec<&str> = text.lines().collect();
    for l in lines {
        let row = all[l.as_u64().unwrap() as usize - 1];
        assert!(row.contains(",M017,") && row.ends_with("true"), "{row}");
    }
}

#[test]
fn export_in_chinese_gbk_and_xlsx_gives_the_same_verdicts() {
    let a = sample_findings("hubei-2020");
    let b = sample_findings("hubei-2020-export");
    let key = |f: &Value| {
        (
            f["rule"].to_string(),
            f["subject_id"].to_string(),
            f["status"].to_string(),
            f["message"].to_string(),
        )
    };
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(key(x), key(y));
    }
    // Lineage names the export's own files and lines.
    let f = finding(&b, "hours.yearly", "M017");
    assert_eq!(
        f["evidence"]["records"]["verified_hours"]["file"],
        "服务记录.xlsx[服务记录]"
    );
}

/// The verdicts designed into the sample (samples/hubei-2020/EXPECTED.md), checked
/// independently of the snapshot.
#[test]
fn designed_verdicts_hold() {
    let findings = sample_findings("hubei-2020");
    let mut got: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for f in &findings {
        let s = f["status"].as_str().unwrap();
        if s == "fail" || s == "warn" {
            got.entry((f["rule"].as_str().unwrap().into(), s.into()))
                .or_default()
                .insert(f["subject_id"].as_str().unwrap().into());
        }
    }
    let expect: &[(&str, &str, &[&str])] = &[
        (
            "epidemic.report-residence",
            "fail",
            &["M011", "M035", "M058"],
        ),
        (
            "epidemic.report-residence",
            "warn",
            &["M006", "M029", "M044", "M052"],
        ),
        ("grid.member-assigned", "fail", &["M016", "M053"]),
        ("grid.member-assigned", "warn", &["M023", "M040"]),
        ("grid.branch-work-team", "fail", &["B05"]),
        ("sinking.detached", "fail", &["M005", "M041"]),
        (
            "sinking.not-nominal",
            "fail",
            &["M007", "M016", "M021", "M046", "M055", "M060"],
        ),
        ("sinking.no-roll-call", "fail", &["M021"]),
        ("sinking.no-roll-call", "warn", &["M008", "M033", "M050"]),
        ("sinking.obey-command", "warn", &["M012", "M038"]),
        ("dual.member-report", "fail", &["M026", "M048"]),
        ("dual.member-report", "warn", &["M014", "M039"]),
        ("dual.filing", "fail", &["M015", "M031", "M043"]),
        ("dual.filing", "warn", &["M019", "M042"]),
        ("dual.spare-time", "warn", &["M004", "M020", "M037", "M054"]),
        ("dual.org-registration", "fail", &["B04", "B05"]),
        (
            "hours.yearly",
            "fail",
            &["M011", "M017", "M024", "M026", "M032", "M049"],
        ),
    ];
    let mut want: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (rule, status, ids) in expect {
        want.insert(
            (rule.to_string(), status.to_string()),
            ids.iter().map(|s| s.to_string()).collect(),
        );
    }
    assert_eq!(got, want);
    // Every rule has passing subjects too.
    let passing: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f["status"] == "pass")
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(passing.len(), 12);
}

/// fail/warn subjects per rule, as the designed-verdict tests compare them.
fn failing_and_warning(findings: &[Value]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut got: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for f in findings {
        let s = f["status"].as_str().unwrap();
        if s == "fail" || s == "warn" {
            got.entry((f["rule"].as_str().unwrap().into(), s.into()))
                .or_default()
                .insert(f["subject_id"].as_str().unwrap().into());
        }
    }
    got
}

/// The second year (samples/hubei-2021/EXPECTED.md): the epidemic notices give no findings
/// and are listed as not in force; the yearly rules judge 2021 with the 2021 calendar.
#[test]
fn second_year_verdicts_hold() {
    let findings = sample_findings("hubei-2021");
    assert!(findings.iter().all(|f| f["as_of"] == "2021-12-31"));
    let directives: BTreeSet<&str> = findings
        .iter()
        .map(|f| f["directive"].as_str().unwrap())
        .collect();
    assert_eq!(
        directives,
        BTreeSet::from(["dual-registration-2020-07", "service-hours-20"])
    );
    let expect: &[(&str, &str, &[&str])] = &[
        ("dual.member-report", "fail", &["M048"]),
        ("dual.member-report", "warn", &["M014", "M026", "M039"]),
        ("dual.filing", "fail", &["M015", "M031", "M043"]),
        ("dual.spare-time", "warn", &["M013", "M025"]),
        ("dual.org-registration", "fail", &["B04"]),
        (
            "hours.yearly",
            "fail",
            &["M003", "M010", "M017", "M034", "M049"],
        ),
    ];
    let want: BTreeMap<(String, String), BTreeSet<String>> = expect
        .iter()
        .map(|(r, s, ids)| {
            (
                (r.to_string(), s.to_string()),
                ids.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(failing_and_warning(&findings), want);

    let out = rulebook()
        .args(["eval", "--data", "samples/hubei-2021"])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    for d in [
        "epidemic-report-2020-02-07 (2020-02-07 to 2020-05-01)",
        "two-teams-one-grid-2020-02-17 (2020-02-17 to 2020-05-01)",
        "sinking-discipline-2020-02-27 (2020-02-27 to 2020-05-01)",
    ] {
        assert!(
            stdout.contains(&format!("not in force in this run: {d}")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(
            "grades assess 2021-01-01 to 2021-12-31: dual-registration-2020-07, service-hours-20"
        ),
        "{stdout}"
    );
}

/// A year the working calendar does not list is judged by weekends only, and says so.
#[test]
fn a_year_outside_the_calendar_is_warned() {
    let out = rulebook()
        .args([
            "eval",
            "--data",
            "samples/hubei-2021",
            "--as-of",
            "2022-12-31",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(
            "warning: the working calendar (calendar/cn-2020-2021.csv) lists holidays for [2020, 2021] only; in 2022 only weekends are rest days"
        ),
        "{stdout}"
    );
}

/// The 2020 sample judged as of 2021-12-31 (issue #11's first "done means"): no finding
/// from a directive that ended in 2020.
#[test]
fn a_later_year_gives_no_finding_from_ended_directives() {
    let findings = eval_json(
        &policies(),
        &root().join("samples/hubei-2020"),
        Some("2021-12-31"),
    );
    assert!(!findings.is_empty());
    for f in &findings {
        let d = f["directive"].as_str().unwrap();
        assert!(
            d == "dual-registration-2020-07" || d == "service-hours-20",
            "{d} gave a finding in 2021"
        );
    }
}

/// One line per finding: a rule change shows up as a reviewed snapshot diff.
#[test]
fn findings_snapshot() {
    insta::assert_snapshot!("hubei_2020_findings", snapshot_text("hubei-2020"));
}

/// The second year, likewise.
#[test]
fn findings_snapshot_second_year() {
    insta::assert_snapshot!("hubei_2021_findings", snapshot_text("hubei-2021"));
}

fn snapshot_text(folder: &str) -> String {
    let findings = sample_findings(folder);
    let mut text = String::new();
    for f in &findings {
        let mut ev = f["evidence"].clone();
        if let Some(o) = ev.as_object_mut() {
            o.remove("records");
        }
        text.push_str(&format!(
            "{} {} v{} {} {}: {} {}\n",
            f["directive"].as_str().unwrap(),
            f["rule"].as_str().unwrap(),
            f["rule_version"].as_str().unwrap(),
            f["subject_id"].as_str().unwrap(),
            f["status"].as_str().unwrap(),
            f["message"].as_str().unwrap(),
            ev
        ));
    }
    text
}

#[test]
fn json_lines_and_csv_carry_the_same_findings() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("f.jsonl");
    let csvp = dir.path().join("f.csv");
    for (p, fmt) in [(&jsonl, "jsonl"), (&csvp, "csv")] {
        let out = rulebook()
            .args([
                "eval",
                "--data",
                "samples/hubei-2020",
                "--quiet",
                "--format",
                fmt,
                "--out",
            ])
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut rdr = csv::Reader::from_path(&csvp).unwrap();
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(&headers[0], "directive");
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(lines.len(), rows.len());
    let json = sample_findings("hubei-2020");
    for ((a, b), c) in lines.iter().zip(&rows).zip(&json) {
        assert_eq!(a, c);
        assert_eq!(a["rule"].as_str().unwrap(), &b[1]);
        assert_eq!(a["status"].as_str().unwrap(), &b[6]);
        assert_eq!(a["message"].as_str().unwrap(), &b[8]);
    }
}

#[test]
fn findings_are_byte_identical_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for i in 0..2 {
        let p = dir.path().join(format!("f{i}.json"));
        let out = rulebook()
            .args(["eval", "--data", "samples/hubei-2020", "--quiet", "--out"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(out.status.success());
        outs.push(std::fs::read(&p).unwrap());
    }
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn check_passes_on_shipped_policies() {
    let out = rulebook().args(["check", "policies"]).output().unwrap();
    let (stdout, _) = texts(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("5 directives"), "{stdout}");
}
