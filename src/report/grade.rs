//! Grades: each subject's findings (those of the directives graded in the assessment period)
//! counted into a [`Tally`], and the first grade of `policies/assessment.toml` whose
//! condition holds.

use super::*;

/// Grades and counts per subject, computed from findings by the assessment rules.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Tally {
    /// Findings that pass.
    pub passes: i64,
    /// Findings that fail.
    pub fails: i64,
    /// Findings that warn.
    pub warns: i64,
    /// Findings whose expressions failed to evaluate.
    pub errors: i64,
    /// Findings whose rule does not apply.
    pub not_applicable: i64,
    /// Failing findings waived.
    pub waived: i64,
    /// Failing findings of critical rules.
    pub critical_fails: i64,
    /// Failing findings of major rules.
    pub major_fails: i64,
    /// Failing findings of minor rules.
    pub minor_fails: i64,
    /// Directives with at least one failing finding.
    pub failed_directives: i64,
    /// Directives with a warning and no failing finding.
    pub warned_directives: i64,
}

impl Tally {
    /// Count findings given as (status, severity, directive).
    pub(super) fn of<'d>(findings: impl Iterator<Item = (Status, Severity, &'d str)>) -> Tally {
        let mut t = Tally::default();
        // Directives with a failure and with a warning (a subject has only a few).
        let mut failed: Vec<&str> = Vec::new();
        let mut warned: Vec<&str> = Vec::new();
        let note = |list: &mut Vec<&'d str>, d: &'d str| {
            if !list.contains(&d) {
                list.push(d);
            }
        };
        for (status, severity, directive) in findings {
            match status {
                Status::Pass => t.passes += 1,
                Status::Fail => {
                    t.fails += 1;
                    note(&mut failed, directive);
                    match severity {
                        Severity::Critical => t.critical_fails += 1,
                        Severity::Major => t.major_fails += 1,
                        Severity::Minor => t.minor_fails += 1,
                    }
                }
                Status::Warn => {
                    t.warns += 1;
                    note(&mut warned, directive);
                }
                Status::Error => t.errors += 1,
                Status::NotApplicable => t.not_applicable += 1,
                Status::Waived => t.waived += 1,
            }
        }
        t.failed_directives = failed.len() as i64;
        t.warned_directives = warned.len() as i64;
        t
    }

    pub(super) fn push(&self, scope: &mut rhai::Scope<'static>) {
        for (k, v) in [
            ("passes", self.passes),
            ("fails", self.fails),
            ("warns", self.warns),
            ("errors", self.errors),
            ("not_applicable", self.not_applicable),
            ("critical_fails", self.critical_fails),
            ("major_fails", self.major_fails),
            ("minor_fails", self.minor_fails),
            ("failed_directives", self.failed_directives),
            ("warned_directives", self.warned_directives),
        ] {
            scope.push(k, v);
        }
    }
}

impl<'a> Model<'a> {
    /// The counts of a subject's findings.
    pub(super) fn tally(&self, kind: &str, row: usize) -> Tally {
        Tally::of(
            self.rules_of(kind)
                .iter()
                .map(|r| (self.outcomes.status(r.index, row), r.severity, r.directive)),
        )
    }

    /// The counts of a subject's findings that enter grades.
    pub(super) fn grade_tally(&self, kind: &str, row: usize) -> Tally {
        Tally::of(
            self.rules_of(kind)
                .iter()
                .filter(|r| r.graded)
                .map(|r| (self.outcomes.status(r.index, row), r.severity, r.directive)),
        )
    }

    /// The hours figure the grades use for member row `row`: the assessment's `hours`
    /// aggregate, or else verified service hours within the grading period (or the as-of
    /// year).
    pub(super) fn graded_hours(&self, row: usize) -> f64 {
        if let Some(h) = self
            .policy
            .assessment
            .as_ref()
            .and_then(|a| a.hours.as_deref())
        {
            return self.run.agg_number("member", row, h).unwrap_or(0.0);
        }
        let (from, to) = self.run.grading_span.unwrap_or_else(|| {
            let y = self.run.as_of.year();
            (
                NaiveDate::from_ymd_opt(y, 1, 1).unwrap_or(self.run.as_of),
                self.run.as_of,
            )
        });
        self.services_of(Some(row), None)
            .unwrap_or_default()
            .iter()
            .filter(|(d, _, _)| from <= *d && *d <= to)
            .map(|(_, h, _)| h)
            .sum()
    }

    /// The worst status of a subject's findings under `directive`; `None` if it has none.
    pub(super) fn worst(&self, kind: &str, row: usize, directive: &str) -> Option<Status> {
        worst_status(
            self.rules_of(kind)
                .iter()
                .filter(|r| r.directive == directive)
                .map(|r| self.outcomes.status(r.index, row)),
        )
    }

    /// The first grade of `grades` whose condition holds in `scope` (its index); problems
    /// go to `errors`, named by `who`.
    pub(super) fn pick_grade(
        &self,
        grades: &[Grade],
        scope: &mut rhai::Scope<'static>,
        who: &dyn Fn() -> String,
        errors: &mut Vec<String>,
    ) -> Option<u16> {
        for (i, g) in grades.iter().enumerate() {
            match &g.when {
                None => return Some(i as u16),
                Some(e) => match self.run.eval_in(e, scope).map(|v| v.as_bool()) {
                    Ok(Ok(true)) => return Some(i as u16),
                    Ok(Ok(false)) => {}
                    Ok(Err(t)) => errors.push(format!(
                        "{}: grade `{}`: `{}` gave {t}, not true/false",
                        who(),
                        g.name,
                        e.src
                    )),
                    Err(msg) => errors.push(format!("{}: grade `{}`: {msg}", who(), g.name)),
                },
            }
        }
        None
    }

    /// Keep the first grading problems and count them all.
    pub(super) fn note_grade_errors(&mut self, errors: Vec<String>) {
        self.grade_error_count += errors.len();
        let room = GRADE_ERRORS_KEPT.saturating_sub(self.grade_errors.len());
        self.grade_errors.extend(errors.into_iter().take(room));
    }

    /// Grade every member, then every organization (which look at their members), in
    /// parallel; problems are kept in subject order.
    pub(super) fn grade_all(&mut self) {
        let Some(assessment) = self.policy.assessment.as_ref() else {
            return;
        };
        let member_who = |row: usize| format!("member {}", self.words.member_id(row));
        let (grades, errors) =
            self.grade_kind("member", &assessment.member, &member_who, &|_, _| {});
        self.member_grades = grades;
        self.note_grade_errors(errors);
        let Some(ot) = self.words.org_table() else {
            return;
        };
        let okey = self.policy.schema.tables[ot]
            .key_name()
            .unwrap_or("org_id")
            .to_string();
        let org_id = |row: usize| self.run.cell_text(ot, row, &okey).unwrap_or_default();
        let org_who = |row: usize| format!("organization {}", org_id(row));
        // Organizations also see how many of their members fail.
        let members = |row: usize, scope: &mut rhai::Scope<'static>| {
            let members = self
                .members_of
                .get(&org_id(row))
                .map_or(&[][..], |v| v.as_slice());
            let failing = members.iter().filter(|&&r| self.member_fails[r]).count() as i64;
            let n = members.len() as i64;
            let share = |k: i64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
            scope.push("members", n);
            scope.push("members_failing", failing);
            scope.push("members_passing", n - failing);
            scope.push("member_pass_share", share(n - failing));
            scope.push("member_fail_share", share(failing));
        };
        let (grades, errors) =
            self.grade_kind("organization", &assessment.organization, &org_who, &members);
        self.org_grades = grades;
        self.note_grade_errors(errors);
    }

    /// Grade every subject of `kind` with `grades`, in parallel: each scope holds the
    /// subject's columns and aggregates that the grade expressions name, its tally, and what
    /// `more` pushes. The grade by row, and the problems in subject order (named by `who`).
    #[allow(clippy::type_complexity)]
    pub(super) fn grade_kind(
        &self,
        kind: &str,
        grades: &[Grade],
        who: &(dyn Fn(usize) -> String + Sync),
        more: &(dyn Fn(usize, &mut rhai::Scope<'static>) + Sync),
    ) -> (Vec<Option<u16>>, Vec<String>) {
        let wanted: std::collections::HashSet<&str> = grades
            .iter()
            .filter_map(|g| g.when.as_ref())
            .flat_map(|e| e.idents.iter().map(String::as_str))
            .collect();
        let wanted = |n: &str| wanted.contains(n);
        let base = self.run.base_scope();
        let graded: Vec<(usize, Option<u16>, Vec<String>)> = self
            .run
            .subjects(kind)
            .into_par_iter()
            .map_init(
                || base.clone(),
                |scope, row| {
                    scope.rewind(base.len());
                    self.run.push_subject(scope, kind, row, &wanted);
                    self.grade_tally(kind, row).push(scope);
                    more(row, scope);
                    let mut errors = Vec::new();
                    let g = self.pick_grade(grades, scope, &|| who(row), &mut errors);
                    (row, g, errors)
                },
            )
            .collect();
        let mut by_row = vec![None; self.rows_of(kind)];
        let mut errors = Vec::new();
        for (row, g, e) in graded {
            by_row[row] = g;
            errors.extend(e);
        }
        (by_row, errors)
    }

    /// The grade of the subject with id `id` (the first kind that has it), as reports show it.
    pub fn grade_of(&self, id: &str) -> Option<String> {
        let (kind, row) = crate::eval::find_subject(self.policy, self.data, id)?;
        Some(self.grade(kind, row))
    }

    /// The grade of a subject (`未评定` when it has none).
    pub(super) fn grade(&self, kind: &str, row: usize) -> String {
        let (grades, list) = match (kind, self.policy.assessment.as_ref()) {
            ("member", Some(a)) => (&self.member_grades, &a.member),
            (_, Some(a)) => (&self.org_grades, &a.organization),
            (_, None) => return "未评定".into(),
        };
        grades
            .get(row)
            .copied()
            .flatten()
            .and_then(|i| list.get(i as usize))
            .map_or_else(|| "未评定".into(), |g| g.name.clone())
    }

    pub(super) fn grade_description(&self, kind: &str, grade: &str) -> Option<String> {
        let a = self.policy.assessment.as_ref()?;
        let list = if kind == "member" {
            &a.member
        } else {
            &a.organization
        };
        list.iter()
            .find(|g| g.name == grade)
            .and_then(|g| g.description.clone())
    }
}
