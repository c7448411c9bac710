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
    std::fs::remove_file(pol.join("tests/dual-registration-2020-07.toml")).unwrap();
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
