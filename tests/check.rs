//! `rulebook check` on broken copies of the shipped policies: every problem is reported with
//! its code, file:line:column, the offending line and a hint; exit 1.

mod common;

use common::*;

/// Copy the policies, apply `edit` to one file, run check; returns (exit code, output).
fn check_with(file: &str, edit: impl FnOnce(String) -> String) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    let path = pol.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = edit(text.clone());
    assert_ne!(text, edited, "the edit changed nothing");
    std::fs::write(&path, edited).unwrap();
    let out = rulebook().arg("check").arg(&pol).output().unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().unwrap(),
        stdout.replace(&pol.display().to_string(), "policies"),
    )
}

#[test]
fn misspelt_field_gets_position_and_suggestion() {
    let (code, out) = check_with("directives/service-hours-20.toml", |t| {
        t.replacen("status = \"pass\"", "staus = \"pass\"", 1)
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("error[RB0002]: unknown field `staus`"),
        "{out}"
    );
    assert!(
        out.contains("policies/directives/service-hours-20.toml:"),
        "{out}"
    );
    assert!(out.contains("did you mean `status`?"), "{out}");
    assert!(
        out.contains("staus = \"pass\""),
        "the offending line is quoted: {out}"
    );
}

#[test]
fn rhai_syntax_error_points_into_the_expression() {
    let (code, out) = check_with("directives/service-hours-20.toml", |t| {
        t.replace(
            "when = \"hours_verified_only && unverified_hours > 0\"",
            "when = \"hours_verified_only && unverified_hours > (0\"",
        )
    });
    assert_eq!(code, 1);
    assert!(out.contains("error[RB0401]"), "{out}");
    // Line of the `when`, column of the end of the expression.
    let line = std::fs::read_to_string(policies().join("directives/service-hours-20.toml"))
        .unwrap()
        .lines()
        .position(|l| l.contains("when = \"hours_verified_only && unverified_hours > 0\""))
        .unwrap()
        + 1;
    assert!(
        out.contains(&format!("service-hours-20.toml:{line}:")),
        "{out}"
    );
}

#[test]
fn unknown_name_in_expression_is_suggested() {
    let (code, out) = check_with("directives/service-hours-20.toml", |t| {
        t.replace(
            "to_float(service_hours_required) }",
            "to_float(service_hour_required) }",
        )
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("unknown name `service_hour_required`")
            && out.contains("did you mean `service_hours_required`?"),
        "{out}"
    );
}

#[test]
fn overlapping_parameter_dates_are_errors() {
    let (code, out) = check_with("directives/service-hours-20.toml", |t| {
        t.replace(
            "values = [{ from = 2020-01-01, value = 20 }]",
            "values = [{ from = 2020-01-01, value = 20 }, { from = 2020-01-01, value = 24 }]",
        )
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("RB0201") && out.contains("two values from 2020-01-01"),
        "{out}"
    );
}

#[test]
fn assumption_without_reason_is_an_error() {
    let (code, out) = check_with("directives/two-teams-one-grid-2020-02-17.toml", |t| {
        t.replacen("reason = \"原文要求“配合社区将报到党员编入社区防控网格”，未规定期限；假设报到后 7 天内编入，逾期记为提醒。\"\n", "", 1)
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("RB0202") && out.contains("grid_assignment_days"),
        "{out}"
    );
}

#[test]
fn undeclared_table_and_column_are_named() {
    let (code, out) = check_with("directives/service-hours-20.toml", |t| {
        t.replacen("table = \"services\"", "table = \"servises\"", 1)
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("unknown table `servises`") && out.contains("did you mean `services`?"),
        "{out}"
    );
    let (code, out) = check_with("directives/service-hours-20.toml", |t| {
        t.replacen(
            "{ column = \"verified\", is = true }",
            "{ column = \"verifed\", is = true }",
            1,
        )
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("no column `verifed`") && out.contains("did you mean `verified`?"),
        "{out}"
    );
}

#[test]
fn wrong_enum_literal_lists_the_values() {
    let (code, out) = check_with("directives/dual-registration-2020-07.toml", |t| {
        t.replacen(
            "is = \"dual_registration\"",
            "is = \"dual-registration\"",
            1,
        )
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("not a value of `campaign`") && out.contains("dual_registration"),
        "{out}"
    );
}

#[test]
fn toml_syntax_error_has_a_position() {
    let (code, out) = check_with("policy.toml", |t| {
        t.replacen("version = \"1.0.0\"", "version = \"1.0.0", 1)
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("RB0001") && out.contains("policies/policy.toml:"),
        "{out}"
    );
}

#[test]
fn a_case_without_when_must_be_last() {
    let (code, out) = check_with("directives/service-hours-20.toml", |t| {
        t.replacen("when = \"counted_hours >= hours_required\"\n", "", 1)
    });
    assert_eq!(code, 1);
    assert!(out.contains("RB0302"), "{out}");
}

#[test]
fn missing_policy_folder_is_an_error() {
    let out = rulebook()
        .args(["check", "no/such/policies"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        texts(&out).0.contains("policy folder not found"),
        "{}",
        texts(&out).0
    );
}

#[test]
fn codes_are_explained_with_an_example_and_the_fix() {
    let out = rulebook()
        .args(["check", "--explain", "RB0301"])
        .output()
        .unwrap();
    let (stdout, _) = texts(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("rule versions overlap")
            && stdout.contains("Example")
            && stdout.contains("Fix"),
        "{stdout}"
    );
    let out = rulebook()
        .args(["check", "--explain", "RB9999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_warns_about_untested_rules_and_version_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let pol = policies_copy(dir.path());
    for f in ["service-hours-20", "multi-year", "assessment"] {
        std::fs::remove_file(pol.join(format!("tests/{f}.toml"))).unwrap();
    }
    let file = pol.join("directives/service-hours-20.toml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text = text.replace(
        "id = \"hours.yearly\"\nversion = 1\n",
        "id = \"hours.yearly\"\nversion = 1\neffective_until = 2021-12-31\n",
    );
    text.push_str("\n[[rule]]\nid = \"hours.yearly\"\nversion = 2\ntitle = \"v2\"\nsubject = \"member\"\neffective_from = 2022-03-01\nclause = \"yearly-hours\"\n[[rule.case]]\nstatus = \"pass\"\nmessage = \"ok\"\n");
    std::fs::write(&file, text).unwrap();
    let out = rulebook().arg("check").arg(&pol).output().unwrap();
    let (stdout, _) = texts(&out);
    assert!(
        out.status.success(),
        "warnings do not fail the check: {stdout}"
    );
    assert!(
        stdout.contains("warning[RB0503]: rules with no test: hours.yearly"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning[RB0504]") && stdout.contains("from 2022-01-01 to 2022-02-28"),
        "{stdout}"
    );
}

#[test]
fn misspelt_helper_function_is_suggested() {
    let (code, out) = check_with("directives/service-hours-20.toml", |t| {
        t.replacen(
            "{hours_text(counted_hours)}，达到",
            "{hours_txt(counted_hours)}，达到",
            1,
        )
    });
    assert_eq!(code, 0, "a warning, not an error: {out}");
    assert!(
        out.contains("warning[RB0404]: unknown function `hours_txt`")
            && out.contains("did you mean `hours_text`?"),
        "{out}"
    );
}

/// Mistakes in the multi-year settings and the working calendar: each named with its file
/// and line, and a hint.
#[test]
fn run_period_assessment_scope_and_calendar_mistakes_are_reported() {
    let (code, out) = check_with("policy.toml", |t| {
        t.replace(
            "run_period = \"assessment_year\"",
            "run_period = \"assesment_year\"",
        )
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("`run_period`: unknown period `assesment_year`")
            && out.contains("did you mean `assessment_year`?")
            && out.contains("policies/policy.toml:"),
        "{out}"
    );
    let (code, out) = check_with("assessment.toml", |t| {
        t.replace("period = \"cycle\"", "period = \"sinking\"")
            .replace("\"service-hours-20\",\n]", "\"service-hours-2O\",\n]")
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("assessment `period`: period `sinking` depends on each subject"),
        "{out}"
    );
    assert!(
        out.contains("no directive has the key `service-hours-2O`")
            && out.contains("did you mean `service-hours-20`?"),
        "{out}"
    );
    let (code, out) = check_with("calendar/cn-2020-2021.csv", |t| {
        t.replace("2020-10-10,workday", "2020-10-32,workday")
            .replace("2021-10-09,workday", "2021-10-09,weekend")
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("`2020-10-32` is not a date")
            && out.contains("day type `weekend` is neither `holiday` (休) nor `workday` (班)"),
        "{out}"
    );
    let line = std::fs::read_to_string(policies().join("calendar/cn-2020-2021.csv"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("2020-10-10"))
        .unwrap()
        + 1;
    assert!(
        out.contains(&format!("cn-2020-2021.csv:{line}:")),
        "the bad row's line: {out}"
    );
    let (code, out) = check_with("policy.toml", |t| {
        t.replace("calendar/cn-2020-2021.csv", "calendar/cn-2022.csv")
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("calendar file `calendar/cn-2022.csv` not found"),
        "{out}"
    );
}

/// Working time without a calendar is an error at the aggregate that asks for it.
#[test]
fn working_time_needs_a_calendar() {
    let (code, out) = check_with("policy.toml", |t| {
        let start = t.find("[calendar]").unwrap();
        let end = t.find("work_end = \"$param.working_hours_end\"\n").unwrap()
            + "work_end = \"$param.working_hours_end\"\n".len();
        format!("{}{}", &t[..start], &t[end..])
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("aggregate `workhour_services`: working time needs working hours")
            && out.contains("declare `[calendar]` in policy.toml"),
        "{out}"
    );
}

#[test]
fn an_error_is_reported_once_not_again_where_the_broken_name_is_used() {
    // `verified_hours` reads an unknown table: that is the one error. The rule and the
    // assessment that use the aggregate, and the parameters only they use, say nothing more.
    let (code, out) = check_with("directives/service-hours-20.toml", |t| {
        t.replacen("table = \"services\"", "table = \"servises\"", 1)
    });
    assert_eq!(code, 1);
    assert!(
        out.contains("error[RB0102]: aggregate `verified_hours`: unknown table `servises`"),
        "{out}"
    );
    let problems: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("error[") || l.starts_with("warning["))
        .collect();
    assert_eq!(problems.len(), 1, "{out}");
}

/// An enum column's values are kept in one byte each: more than 256 is an error at the
/// column, not values silently mixed up when the data loads.
#[test]
fn an_enum_of_more_than_256_values_is_an_error() {
    let extra: String = (0..300).map(|i| format!(", v{i} = [\"值{i}\"]")).collect();
    let (code, out) = check_with("policy.toml", |t| {
        t.replacen(
            "other = [\"其他\"] }",
            &format!("other = [\"其他\"]{extra} }}"),
            1,
        )
    });
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "error[RB0110]: column `members.employment` lists 303 values; at most 256 are allowed"
        ),
        "{out}"
    );
    assert!(out.contains("policy.toml:75:"), "{out}");
}

/// `file:line:col` of every diagnostic in `out`, in order, and their first lines.
fn problems(out: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut head: Option<String> = None;
    for line in out.lines() {
        if line.starts_with("error[") || line.starts_with("warning[") {
            head = Some(line.to_string());
        } else if let (Some(h), Some(place)) = (&head, line.trim().strip_prefix("┌─ ")) {
            found.push((h.clone(), place.to_string()));
            head = None;
        }
    }
    found
}

/// `file:line:col` (column in characters) of the first `needle` in `text`.
fn place(file: &str, text: &str, needle: &str) -> String {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in {file}"));
    let line = text[..at].matches('\n').count() + 1;
    let col = text[..at].rsplit('\n').next().unwrap().chars().count() + 1;
    format!("policies/{file}:{line}:{col}")
}

/// Replace the first `from` after `anchor`.
fn replace_after(text: &str, anchor: &str, from: &str, to: &str) -> String {
    let start = text.find(anchor).unwrap();
    let at = start + text[start..].find(from).unwrap();
    format!("{}{to}{}", &text[..at], &text[at + from.len()..])
}

const DUAL: &str = "directives/dual-registration-2020-07.toml";

#[test]
fn every_mistake_of_a_file_is_reported_in_one_run() {
    // An unknown field in one rule, a wrong kind of value in another, an unknown word in a
    // third: all three, each at its place, in file order, and nothing else.
    let mut text = String::new();
    let (code, out) = check_with(DUAL, |t| {
        let t = t.replacen(
            "not_applicable_message = \"非在职党员，不适用“双报到”\"",
            "not_applicable_mesage = \"非在职党员，不适用“双报到”\"",
            1,
        );
        let t = t.replacen("title = \"报到后向单位党支部报备\"", "title = 42", 1);
        let t = replace_after(
            &t,
            "id = \"dual.spare-time\"",
            "status = \"warn\"",
            "status = \"warnn\"",
        );
        text = t.clone();
        t
    });
    assert_eq!(code, 1);
    let found = problems(&out);
    let expected = vec![
        (
            "error[RB0002]: unknown field `not_applicable_mesage`".to_string(),
            place(DUAL, &text, "not_applicable_mesage"),
        ),
        (
            "error[RB0003]: invalid type: integer `42`, expected a string".to_string(),
            place(DUAL, &text, "42"),
        ),
        (
            "error[RB0003]: `warnn` is not allowed here".to_string(),
            place(DUAL, &text, "\"warnn\""),
        ),
    ];
    assert_eq!(found, expected, "{out}");
    assert!(
        out.contains("did you mean `not_applicable_message`?")
            && out.contains("did you mean `warn`?")
            && out.contains("3 error(s), 0 warning(s)"),
        "{out}"
    );
}

#[test]
fn the_rest_of_a_file_with_a_mistake_is_still_checked() {
    // A mistake in one rule does not hide the later checks of another rule of the file.
    let mut text = String::new();
    let (code, out) = check_with(DUAL, |t| {
        let t = t.replacen(
            "not_applicable_message = \"非在职党员，不适用“双报到”\"",
            "not_applicable_mesage = \"非在职党员，不适用“双报到”\"",
            1,
        );
        let t = t.replacen(
            "applies = 'kind == \"unit_branch\"'",
            "applies = 'kinds == \"unit_branch\"'",
            1,
        );
        text = t.clone();
        t
    });
    assert_eq!(code, 1);
    let found = problems(&out);
    assert_eq!(found.len(), 2, "{out}");
    assert_eq!(
        found[0],
        (
            "error[RB0002]: unknown field `not_applicable_mesage`".to_string(),
            place(DUAL, &text, "not_applicable_mesage"),
        ),
        "{out}"
    );
    assert_eq!(
        found[1].0, "error[RB0402]: unknown name `kinds` in expression",
        "{out}"
    );
    assert!(out.contains("did you mean `kind`?"), "{out}");
}

#[test]
fn a_declaration_with_a_mistake_is_not_reported_again_where_it_is_used() {
    // `filing_deadline_days` has a wrong word: that is the one error; the rule that uses
    // the parameter (in a condition and its evidence) says nothing about it.
    let mut text = String::new();
    let (code, out) = check_with(DUAL, |t| {
        let t = replace_after(
            &t,
            "[parameters.filing_deadline_days]",
            "basis = \"assumption\"",
            "basis = \"assumed\"",
        );
        text = t.clone();
        t
    });
    assert_eq!(code, 1);
    assert_eq!(
        problems(&out),
        vec![(
            "error[RB0003]: `assumed` is not allowed here".to_string(),
            place(DUAL, &text, "\"assumed\""),
        )],
        "{out}"
    );
}

#[test]
fn several_mistakes_in_one_table_are_all_reported() {
    // In one rule: a misspelt field, and a case with an unknown status word and no
    // `message`. Nothing that only follows from them: no "missing field `title`" (it is
    // the misspelt one) nor "missing field `status`".
    let mut text = String::new();
    let (code, out) = check_with(DUAL, |t| {
        let t = t.replacen(
            "title = \"单位党支部向联系社区报到\"",
            "titel = \"单位党支部向联系社区报到\"",
            1,
        );
        let t = replace_after(
            &t,
            "when = \"present(registration_contact)\"",
            "status = \"pass\"\nmessage = \"已于 {registration_contact} 向联系点社区（{community_id}）报到\"\n",
            "status = \"passed\"\n",
        );
        text = t.clone();
        t
    });
    assert_eq!(code, 1);
    let found = problems(&out);
    let heads: Vec<&str> = found.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        heads,
        [
            "error[RB0002]: unknown field `titel`",
            "error[RB0003]: missing field `message`",
            "error[RB0003]: `passed` is not allowed here",
        ],
        "{out}"
    );
    assert_eq!(found[0].1, place(DUAL, &text, "titel"), "{out}");
    assert_eq!(found[2].1, place(DUAL, &text, "\"passed\""), "{out}");
    assert!(!out.contains("missing field `title`"), "{out}");
}
