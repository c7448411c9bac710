//! Focused tests per directive: tiny datasets on the edges of each rule, run through the CLI
//! with the shipped policies. M1 lives in C1, M2 in C2; both belong to unit branch B1,
//! whose contact community is C1.

mod common;

use common::*;

fn run(rows: &[(&str, &str)], as_of: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), rows);
    eval_json(&policies(), &data, Some(as_of))
}

// Directive 1: 《关于组织党员就近进村（社区）协助做好疫情防控工作的通知》 — "党员要向居住地所在的村（社区）党组织报到".
#[test]
fn d1_report_to_residence_from_the_notice_date() {
    let f = run(
        &[
            ("reports", "M1,C1,2020-02-07,epidemic"), // the notice day itself counts
            ("reports", "M2,C2,2020-02-06,epidemic"), // before the notice: does not count
        ],
        "2020-12-31",
    );
    assert_eq!(status(&f, "epidemic.report-residence", "M1"), "pass");
    assert_eq!(status(&f, "epidemic.report-residence", "M2"), "fail");
    let msg = finding(&f, "epidemic.report-residence", "M2")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("未向居住地社区（C2）党组织报到"), "{msg}");
}

#[test]
fn d1_report_elsewhere_is_only_a_warning_and_dual_reports_do_not_count() {
    let f = run(
        &[
            ("reports", "M1,C2,2020-02-10,epidemic"),
            ("reports", "M2,C2,2020-08-01,dual_registration"),
        ],
        "2020-12-31",
    );
    assert_eq!(status(&f, "epidemic.report-residence", "M1"), "warn");
    assert_eq!(status(&f, "epidemic.report-residence", "M2"), "fail");
}

#[test]
fn d1_reports_after_as_of_do_not_count() {
    let f = run(&[("reports", "M1,C1,2020-03-01,epidemic")], "2020-02-20");
    assert_eq!(status(&f, "epidemic.report-residence", "M1"), "fail");
}

// Directive 2: 鄂直工发〔2020〕1号 — "配合社区将报到党员编入社区防控网格".
#[test]
fn d2_members_are_placed_in_a_grid_within_the_deadline() {
    let f = run(
        &[
            ("reports", "M1,C1,2020-02-20,epidemic"),
            ("assignments", "M1,C1,G1,grid_member,2020-02-27"), // 7 days: on time
            ("reports", "M2,C2,2020-02-20,epidemic"),
            ("assignments", "M2,C2,G2,assault_team,2020-02-28"), // 8 days: late
        ],
        "2020-12-31",
    );
    assert_eq!(status(&f, "grid.member-assigned", "M1"), "pass");
    assert_eq!(status(&f, "grid.member-assigned", "M2"), "warn");
}

#[test]
fn d2_reported_but_never_assigned_fails_and_no_report_is_not_applicable() {
    let f = run(
        &[
            ("reports", "M1,C1,2020-02-10,epidemic"),
            ("assignments", "M1,C1,G1,work_team,2020-02-01"),
        ],
        "2020-12-31",
    );
    // The only assignment predates the report: it does not count.
    assert_eq!(status(&f, "grid.member-assigned", "M1"), "fail");
    assert_eq!(status(&f, "grid.member-assigned", "M2"), "not_applicable");
}

#[test]
fn d2_branch_needs_a_work_team_at_its_contact_community() {
    let with = run(
        &[("assignments", "M2,C1,G1,work_team,2020-02-20")],
        "2020-12-31",
    );
    assert_eq!(status(&with, "grid.branch-work-team", "B1"), "pass");
    assert_eq!(
        status(&with, "grid.branch-work-team", "CO1"),
        "not_applicable"
    );
    let elsewhere = run(
        &[
            ("assignments", "M2,C2,G1,work_team,2020-02-20"),
            ("assignments", "M1,C1,G1,grid_member,2020-02-20"),
        ],
        "2020-12-31",
    );
    assert_eq!(status(&elsewhere, "grid.branch-work-team", "B1"), "fail");
}

// Directive 3: 湖北省疫情防控指挥部 2020-02-27 — 脱钩, 服从指挥, 严禁挂名式、点卯式下沉.
// (Reports here are after the notice; before it members were volunteers: policies/tests.)
#[test]
fn d3_unit_attendance_inside_the_sinking_period_fails_detachment() {
    let f = run(
        &[
            ("reports", "M1,C1,2020-03-02,epidemic"),
            ("unit_attendance", "M1,2020-03-02"), // first day of sinking
            ("reports", "M2,C2,2020-03-02,epidemic"),
            ("unit_attendance", "M2,2020-03-01"), // before sinking
            ("unit_attendance", "M2,2020-05-02"), // after the epidemic period
        ],
        "2020-12-31",
    );
    assert_eq!(status(&f, "sinking.detached", "M1"), "fail");
    assert_eq!(status(&f, "sinking.detached", "M2"), "pass");
    assert_eq!(
        finding(&f, "sinking.detached", "M1")["evidence"]["attendance_days_sinking"],
        1
    );
}

#[test]
fn d3_nominal_and_roll_call_sinking() {
    let f = run(
        &[
            ("reports", "M1,C1,2020-03-02,epidemic"),
            ("checkins", "M1,C1,2020-03-03 08:00"),
            ("checkins", "M1,C1,2020-03-04 08:00"),
            ("checkins", "M1,C1,2020-03-05 08:00"),
            ("reports", "M2,C2,2020-03-02,epidemic"),
            (
                "services",
                "S1,M2,C2,2020-03-03 09:00,2020-03-03 12:00,epidemic,community,true",
            ),
            ("checkins", "M2,C2,2020-03-03 08:55"), // a service that day: not roll-call
            ("checkins", "M2,C2,2020-03-04 08:55"),
            ("checkins", "M2,C2,2020-03-05 08:55"),
        ],
        "2020-12-31",
    );
    assert_eq!(status(&f, "sinking.not-nominal", "M1"), "fail");
    assert_eq!(status(&f, "sinking.no-roll-call", "M1"), "fail");
    assert_eq!(status(&f, "sinking.not-nominal", "M2"), "pass");
    assert_eq!(status(&f, "sinking.no-roll-call", "M2"), "warn");
    let msg = finding(&f, "sinking.no-roll-call", "M2")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("2020-03-04、2020-03-05"), "{msg}");
    assert_eq!(status(&f, "sinking.obey-command", "M1"), "not_applicable");
    assert_eq!(status(&f, "sinking.obey-command", "M2"), "pass");
}

#[test]
fn d3_service_tasked_by_the_unit_weakens_obeying_command() {
    let f = run(
        &[
            ("reports", "M1,C1,2020-03-02,epidemic"),
            (
                "services",
                "S1,M1,C1,2020-03-03 09:00,2020-03-03 12:00,epidemic,unit,true",
            ),
        ],
        "2020-12-31",
    );
    assert_eq!(status(&f, "sinking.obey-command", "M1"), "warn");
}

// Directive 4: 双报到 — 报到, 报备, 业余时间, 组织报到.
#[test]
fn d4_member_reports_in_the_cycle_and_files_with_own_branch() {
    let f = run(
        &[
            ("reports", "M1,C1,2020-08-01,dual_registration"),
            ("filings", "M1,B1,2020-08-01"), // same day: on time
            // In June, after the mid-June announcement: it counts, and needs a filing.
            ("reports", "M2,C2,2020-06-20,dual_registration"),
        ],
        "2020-12-31",
    );
    assert_eq!(status(&f, "dual.member-report", "M1"), "pass");
    assert_eq!(status(&f, "dual.filing", "M1"), "pass");
    assert_eq!(status(&f, "dual.member-report", "M2"), "pass");
    assert_eq!(status(&f, "dual.filing", "M2"), "fail");
}

#[test]
fn d4_filing_late_to_another_branch_or_before_reporting() {
    let f = run(
        &[
            ("organizations", "B2,省直某厅第二党支部,unit_branch,C2"),
            ("members", "M3,王五,B1,C1,in_service"),
            ("members", "M4,赵六,B1,C1,retired"),
            ("reports", "M1,C1,2020-08-01,dual_registration"),
            ("filings", "M1,B1,2020-09-01"), // 31 days: late
            ("reports", "M2,C2,2020-08-01,dual_registration"),
            ("filings", "M2,B2,2020-08-02"), // another branch
            ("reports", "M3,C1,2020-08-10,dual_registration"),
            ("filings", "M3,B1,2020-08-09"), // before the report
        ],
        "2020-12-31",
    );
    assert_eq!(status(&f, "dual.filing", "M1"), "warn");
    assert_eq!(status(&f, "dual.filing", "M2"), "fail");
    assert_eq!(status(&f, "dual.filing", "M3"), "fail");
    assert_eq!(status(&f, "dual.member-report", "M4"), "not_applicable");
}

#[test]
fn d4_service_in_working_hours_is_a_warning() {
    let f = run(
        &[
            // 2020-08-05 is a Wednesday, 2020-08-08 a Saturday.
            (
                "services",
                "S1,M1,C1,2020-08-05 10:00,2020-08-05 12:00,patrol,community,true",
            ),
            (
                "services",
                "S2,M2,C2,2020-08-08 10:00,2020-08-08 12:00,patrol,community,true",
            ),
            (
                "services",
                "S3,M2,C2,2020-08-05 17:00,2020-08-05 19:00,patrol,community,true",
            ),
        ],
        "2020-12-31",
    );
    assert_eq!(status(&f, "dual.spare-time", "M1"), "warn");
    assert_eq!(status(&f, "dual.spare-time", "M2"), "pass");
}

#[test]
fn d4_branch_registers_with_its_contact_community() {
    let ok = run(&[("org_registrations", "B1,C1,2020-07-20")], "2020-12-31");
    assert_eq!(status(&ok, "dual.org-registration", "B1"), "pass");
    assert_eq!(
        status(&ok, "dual.org-registration", "CO1"),
        "not_applicable"
    );
    let wrong = run(&[("org_registrations", "B1,C2,2020-07-20")], "2020-12-31");
    assert_eq!(status(&wrong, "dual.org-registration", "B1"), "fail");
    let none = run(&[], "2020-12-31");
    assert_eq!(status(&none, "dual.org-registration", "B1"), "fail");
}

// Directive 5: "以每年为一周期，要求每位党员在社区服务 20小时".
#[test]
fn d5_twenty_verified_hours_in_the_cycle() {
    let f = run(
        &[
            // M1: exactly 20 verified hours in July–December.
            (
                "services",
                "S1,M1,C1,2020-07-04 08:00,2020-07-04 18:00,patrol,community,true",
            ),
            (
                "services",
                "S2,M1,C1,2020-12-31 08:00,2020-12-31 18:00,patrol,community,true",
            ),
            // M2: 19.5 verified; unverified and June hours do not count.
            (
                "services",
                "S3,M2,C2,2020-08-01 08:00,2020-08-01 17:30,traffic,community,true",
            ),
            (
                "services",
                "S4,M2,C2,2020-08-02 08:00,2020-08-02 18:00,traffic,community,true",
            ),
            (
                "services",
                "S5,M2,C2,2020-08-03 08:00,2020-08-03 18:00,traffic,community,false",
            ),
            (
                "services",
                "S6,M2,C2,2020-06-30 08:00,2020-06-30 18:00,traffic,community,true",
            ),
        ],
        "2020-12-31",
    );
    assert_eq!(status(&f, "hours.yearly", "M1"), "pass");
    let m2 = finding(&f, "hours.yearly", "M2");
    assert_eq!(m2["status"], "fail");
    let msg = m2["message"].as_str().unwrap();
    assert!(msg.contains("还需 0.5 小时，截止 2020-12-31"), "{msg}");
    assert!(msg.contains("10 小时 未经核实"), "{msg}");
    assert_eq!(m2["evidence"]["verified_hours"], 19.5);
    assert_eq!(m2["period"]["start"], "2020-07-01");
    assert_eq!(m2["period"]["end"], "2020-12-31");
}

#[test]
fn d5_hours_after_as_of_do_not_count_and_later_years_are_whole_years() {
    let f = run(
        &[(
            "services",
            "S1,M1,C1,2020-09-01 08:00,2020-09-02 08:00,patrol,community,true",
        )],
        "2020-08-31",
    );
    assert_eq!(status(&f, "hours.yearly", "M1"), "fail");
    let f = run(
        &[(
            "services",
            "S1,M1,C1,2021-02-01 08:00,2021-02-02 08:00,patrol,community,true",
        )],
        "2021-12-31",
    );
    assert_eq!(status(&f, "hours.yearly", "M1"), "pass");
    assert_eq!(
        finding(&f, "hours.yearly", "M1")["period"]["start"],
        "2021-01-01"
    );
}
