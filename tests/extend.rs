//! Changing policy, not code: a new directive as a file, a new table declared by the policy
//! set, a dated parameter change, rule versions chosen by `--as-of`, and a hostile rule that
//! the sandbox stops without touching other rules.

mod common;

use common::*;
use std::path::Path;

const DELIBERATION: &str = r#"
[directive]
key = "deliberation-2021"
title = "党员参与社区民主议事"
issuer = "示例：某区委组织部"
issued_on = 2020-12-20
effective_from = 2021-01-01

[directive.clauses.half-year]
text = "参与社区民主议事"

[periods.first_half]
label = "上半年"
start = "year_start(as_of)"
end = "date(year(as_of), 6, 30)"

[periods.second_half]
label = "下半年"
start = "date(year(as_of), 7, 1)"
end = "year_end(as_of)"

[aggregates.deliberations_h1]
subject = "member"
table = "services"
by = "member_id"
where = [{ column = "category", is = "deliberation" }, { column = "start", within = "first_half" }]
op = "count"

[aggregates.deliberations_h2]
subject = "member"
table = "services"
by = "member_id"
where = [{ column = "category", is = "deliberation" }, { column = "start", within = "second_half" }]
op = "count"

[[rule]]
id = "deliberation.half-yearly"
version = 1
title = "每半年至少参与一次社区民主议事"
subject = "member"
effective_from = 2021-01-01
clause = "half-year"
evidence = ["deliberations_h1", "deliberations_h2"]

[[rule.case]]
when = "deliberations_h1 >= 1 && deliberations_h2 >= 1"
status = "pass"
message = "上半年 {deliberations_h1} 次、下半年 {deliberations_h2} 次参与民主议事"

[[rule.case]]
status = "fail"
message = "上半年 {deliberations_h1} 次、下半年 {deliberations_h2} 次；每半年至少一次"
"#;

fn write(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
}

#[test]
fn a_new_directive_is_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    write(&pol.join("directives/deliberation-2021.toml"), DELIBERATION);
    let out = rulebook().arg("check").arg(&pol).output().unwrap();
    assert!(out.status.success(), "{}", texts(&out).0);
    let data = dataset(
        dir.path(),
        &[
            (
                "services",
                "S1,M1,C1,2021-03-01 19:00,2021-03-01 21:00,deliberation,community,true",
            ),
            (
                "services",
                "S2,M1,C1,2021-09-01 19:00,2021-09-01 21:00,deliberation,community,true",
            ),
            (
                "services",
                "S3,M2,C2,2021-03-01 19:00,2021-03-01 21:00,deliberation,community,true",
            ),
            (
                "services",
                "S4,M2,C2,2021-09-01 19:00,2021-09-01 21:00,patrol,community,true",
            ),
        ],
    );
    let f = eval_json(&pol, &data, Some("2021-12-31"));
    assert_eq!(status(&f, "deliberation.half-yearly", "M1"), "pass");
    assert_eq!(status(&f, "deliberation.half-yearly", "M2"), "fail");
    assert_eq!(
        finding(&f, "deliberation.half-yearly", "M2")["directive"],
        "deliberation-2021"
    );
    // Not in force in 2020.
    let f = eval_json(&pol, &data, Some("2020-12-31"));
    assert!(!f.iter().any(|x| x["rule"] == "deliberation.half-yearly"));
}

const TRAININGS: &str = r#"
[directive]
key = "training-2021"
title = "党员年度培训"
effective_from = 2021-01-01

[directive.clauses.hours]
text = "示例条款：每年参加培训不少于 8 学时"

[tables.trainings]
label = "培训记录"
aliases = ["培训记录"]

[tables.trainings.columns]
member_id = { type = "id", label = "党员编号", aliases = ["党员编号"], references = "members" }
trained_on = { type = "date", label = "培训日期", aliases = ["培训日期"] }
hours = { type = "number", label = "学时", aliases = ["学时"] }

[parameters.training_hours_required]
basis = "assumption"
reason = "示例"
values = [{ from = 2021-01-01, value = 8 }]

[aggregates.training_hours]
subject = "member"
table = "trainings"
by = "member_id"
where = [{ column = "trained_on", within = "cycle" }]
op = "sum"
column = "hours"

[[rule]]
id = "training.hours"
version = 1
title = "年度培训学时"
subject = "member"
effective_from = 2021-01-01
clause = "hours"
period = "cycle"
evidence = ["training_hours"]

[[rule.case]]
when = "training_hours >= training_hours_required"
status = "pass"
message = "培训 {training_hours} 学时"

[[rule.case]]
status = "fail"
message = "培训 {training_hours} 学时，不足 {training_hours_required} 学时"
"#;

#[test]
fn a_new_table_is_declared_in_the_policy_set() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    write(&pol.join("directives/training-2021.toml"), TRAININGS);
    let data = dataset(dir.path(), &[]);
    // The new table is required: without its file the data cannot be evaluated.
    let out = rulebook()
        .args(["eval", "--quiet"])
        .arg("--policies")
        .arg(&pol)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(texts(&out).1.contains("trainings"), "{}", texts(&out).1);
    // Given as a Chinese-headed file, it loads through its aliases.
    write(
        &data.join("培训记录.csv"),
        "党员编号,培训日期,学时\nM1,2021-03-01,6\nM1,2021/9/1,2.5\nM2,2021-03-01,4\nM9,2021-03-01,4\n",
    );
    let out = rulebook()
        .args(["eval", "--format", "json", "--as-of", "2021-12-31"])
        .arg("--policies")
        .arg(&pol)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("培训记录.csv:5"),
        "unknown member M9 is rejected with its line: {stderr}"
    );
    let f: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status(&f, "training.hours", "M1"), "pass");
    assert_eq!(status(&f, "training.hours", "M2"), "fail");
}

#[test]
fn a_dated_parameter_change_applies_from_its_date() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    let file = pol.join("directives/service-hours-20.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace(
        "values = [{ from = 2020-01-01, value = 20 }]",
        "values = [{ from = 2020-01-01, value = 20 }, { from = 2022-01-01, value = 24 }]",
    );
    write(&file, &text);
    // M1 serves 22 verified hours in 2020 and again in 2022.
    let data = dataset(
        dir.path(),
        &[
            (
                "services",
                "S1,M1,C1,2020-08-01 08:00,2020-08-01 19:00,patrol,community,true",
            ),
            (
                "services",
                "S2,M1,C1,2020-09-01 08:00,2020-09-01 19:00,patrol,community,true",
            ),
            (
                "services",
                "S3,M1,C1,2022-08-01 08:00,2022-08-01 19:00,patrol,community,true",
            ),
            (
                "services",
                "S4,M1,C1,2022-09-01 08:00,2022-09-01 19:00,patrol,community,true",
            ),
        ],
    );
    let new_2020 = eval_json(&pol, &data, Some("2020-12-31"));
    let new_2022 = eval_json(&pol, &data, Some("2022-12-31"));
    let old_2022 = eval_json(&policies(), &data, Some("2022-12-31"));
    assert_eq!(status(&new_2020, "hours.yearly", "M1"), "pass");
    assert_eq!(status(&old_2022, "hours.yearly", "M1"), "pass");
    let f = finding(&new_2022, "hours.yearly", "M1");
    assert_eq!(f["status"], "fail");
    assert!(
        f["message"].as_str().unwrap().contains("还需 2 小时"),
        "{}",
        f["message"]
    );
    assert_eq!(f["evidence"]["service_hours_required"], 24);
}

#[test]
fn rule_versions_are_chosen_by_as_of() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    let file = pol.join("directives/service-hours-20.toml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text = text.replace(
        "id = \"hours.yearly\"\nversion = 1\n",
        "id = \"hours.yearly\"\nversion = 1\neffective_until = 2021-12-31\n",
    );
    text.push_str(
        r#"
[[rule]]
id = "hours.yearly"
version = 2
title = "年度社区服务时长（含未核实提醒）"
subject = "member"
effective_from = 2022-01-01
clause = "yearly-hours"
period = "cycle"
evidence = ["verified_hours"]

[[rule.case]]
when = "verified_hours >= service_hours_required"
status = "pass"
message = "v2 达标"

[[rule.case]]
status = "fail"
message = "v2 未达标"
"#,
    );
    write(&file, &text);
    let data = dataset(dir.path(), &[]);
    let f = eval_json(&pol, &data, Some("2021-06-30"));
    assert_eq!(finding(&f, "hours.yearly", "M1")["rule_version"], "1");
    let f = eval_json(&pol, &data, Some("2022-06-30"));
    let m1 = finding(&f, "hours.yearly", "M1");
    assert_eq!(m1["rule_version"], "2");
    assert_eq!(m1["message"], "v2 未达标");

    // Overlapping versions are a check error naming the file and line.
    let overlapping = text.replace(
        "effective_until = 2021-12-31\n",
        "effective_until = 2022-03-31\n",
    );
    write(&file, &overlapping);
    let out = rulebook().arg("check").arg(&pol).output().unwrap();
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("RB0301") && stdout.contains("service-hours-20.toml:"),
        "{stdout}"
    );
}

#[test]
fn a_hostile_rule_errors_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    write(
        &pol.join("directives/zz-hostile.toml"),
        r#"
[directive]
key = "zz-hostile"
title = "hostile"
[directive.clauses.x]
text = "x"

[[rule]]
id = "hostile.loop"
version = 1
title = "loops forever"
subject = "member"
clause = "x"
[[rule.case]]
when = "{ let n = 0; loop { n += 1; } }"
status = "pass"
message = "never"

[[rule]]
id = "hostile.grow"
version = 1
title = "grows a string"
subject = "member"
clause = "x"
[[rule.case]]
when = '{ let s = "a"; loop { s += s; } }'
status = "pass"
message = "never"
"#,
    );
    let data = dataset(
        dir.path(),
        &[(
            "services",
            "S1,M1,C1,2020-08-01 08:00,2020-08-01 19:00,patrol,community,true",
        )],
    );
    let f = eval_json(&pol, &data, Some("2020-12-31"));
    for rule in ["hostile.loop", "hostile.grow"] {
        for m in ["M1", "M2"] {
            let x = finding(&f, rule, m);
            assert_eq!(x["status"], "error", "{x}");
        }
    }
    assert!(
        finding(&f, "hostile.loop", "M1")["message"]
            .as_str()
            .unwrap()
            .contains("运算次数超过上限")
    );
    // The shipped rules are unaffected.
    let clean = eval_json(&policies(), &data, Some("2020-12-31"));
    let strip = |v: &[serde_json::Value]| -> Vec<(String, String, String)> {
        v.iter()
            .filter(|x| !x["rule"].as_str().unwrap().starts_with("hostile"))
            .map(|x| {
                (
                    x["rule"].to_string(),
                    x["subject_id"].to_string(),
                    x["status"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&f), strip(&clean));
}

const NOTICE: &str = r#"
[directive]
key = "notice-2021"
title = "示例：上半年专项通知"
effective_from = 2021-01-01
effective_until = "$param.notice_end"

[directive.clauses.serve]
text = "示例条款：在工作时间以外到两个以上社区服务"

[parameters.notice_end]
basis = "assumption"
reason = "示例"
values = [{ from = 2021-01-01, value = 2021-06-30 }]

[parameters.notice_from]
basis = "assumption"
reason = "示例"
values = [{ from = 2021-01-01, value = 2021-03-01 }]

[periods.notice]
start = "2021-01-01"
end = "$param.notice_end"
not_before = "$param.notice_from"

[aggregates.communities_served]
subject = "member"
table = "services"
by = "member_id"
where = [{ column = "start", within = "notice" }]
op = "count_distinct"
column = "community_id"

[aggregates.working_time_services]
subject = "member"
table = "services"
by = "member_id"
where = [
  { column = "start", within = "notice" },
  { column = "start", end_column = "end", working_time = true },
]
op = "count"

[aggregates.working_hours_served]
subject = "member"
table = "services"
by = "member_id"
where = [{ column = "start", within = "notice" }]
op = "sum_working_hours"
column = "start"
end_column = "end"

[[rule]]
id = "notice.serve"
version = 1
title = "两个以上社区、业余时间"
subject = "member"
effective_from = 2021-01-01
clause = "serve"
period = "notice"
evidence = ["communities_served", "working_time_services", "working_hours_served"]

[[rule.case]]
when = "communities_served >= 2 && working_time_services == 0"
status = "pass"
message = "{period_start} 至 {period_end}：{communities_served} 个社区"

[[rule.case]]
status = "fail"
message = "{period_start} 至 {period_end}：{communities_served} 个社区，{working_time_services} 次在工作时间"
"#;

/// A directive that ends (`effective_until` from a parameter), a period clamped by
/// `not_before`, `count_distinct`, and a policy set's own working calendar.
#[test]
fn a_directive_ends_and_the_calendar_is_the_policy_sets() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    write(&pol.join("directives/notice-2021.toml"), NOTICE);
    // Judge by the as-of date alone (no run period): the directive is in force through
    // 2021-06-30 and not from 2021-07-01.
    let manifest = std::fs::read_to_string(pol.join("policy.toml")).unwrap();
    write(
        &pol.join("policy.toml"),
        &manifest.replace("run_period = \"assessment_year\"", ""),
    );
    // This policy set's calendar makes Wednesday 2021-03-03 a holiday.
    write(
        &pol.join("calendar/cn-2020-2021.csv"),
        "date,type,name\n2021-03-03,holiday,示例假日\n",
    );
    let out = rulebook().arg("check").arg(&pol).output().unwrap();
    assert!(out.status.success(), "{}", texts(&out).0);
    let data = dataset(
        dir.path(),
        &[
            // M1: two communities (C1 twice), on the holiday and a Saturday evening; the
            // February service is before `not_before`.
            (
                "services",
                "S1,M1,C1,2021-03-03 10:00,2021-03-03 12:00,patrol,community,true",
            ),
            (
                "services",
                "S2,M1,C1,2021-03-06 19:00,2021-03-06 21:00,patrol,community,true",
            ),
            (
                "services",
                "S3,M1,C2,2021-03-13 19:00,2021-03-13 21:00,patrol,community,true",
            ),
            // M2: one community in the period, on a working Wednesday morning.
            (
                "services",
                "S4,M2,C2,2021-03-10 10:00,2021-03-10 12:00,patrol,community,true",
            ),
            (
                "services",
                "S5,M2,C1,2021-02-10 19:00,2021-02-10 21:00,patrol,community,true",
            ),
        ],
    );
    let f = eval_json(&pol, &data, Some("2021-06-30"));
    let m1 = finding(&f, "notice.serve", "M1");
    assert_eq!(m1["status"], "pass", "{m1}");
    assert_eq!(m1["evidence"]["communities_served"], 2);
    assert_eq!(m1["evidence"]["working_time_services"], 0);
    assert_eq!(m1["period"]["start"], "2021-03-01", "{m1}");
    let m2 = finding(&f, "notice.serve", "M2");
    assert_eq!(m2["status"], "fail", "{m2}");
    assert_eq!(m2["evidence"]["communities_served"], 1);
    assert_eq!(m2["evidence"]["working_hours_served"], 2.0);
    // The day after the directive's last day: no findings for it.
    let f = eval_json(&pol, &data, Some("2021-07-01"));
    assert!(!f.iter().any(|x| x["directive"] == "notice-2021"));
    // With the shipped run period (the assessment year) it is judged all 2021.
    write(&pol.join("policy.toml"), &manifest);
    let f = eval_json(&pol, &data, Some("2021-12-31"));
    assert_eq!(status(&f, "notice.serve", "M1"), "pass");
}
