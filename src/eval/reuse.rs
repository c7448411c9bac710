//! What `diff` shares between two runs on one dataset, so that it costs about one `eval`
//! and not two. A subject kind's aggregates are computed once when everything they read is
//! the same in both policy sets: their definitions resolved against the run (parameters,
//! `--as-of`, the calendar and working hours), the periods, and which of them are kept as
//! evidence. A rule is not evaluated at all when its statuses cannot differ: its text, the
//! parameters it or a helper can name, the helpers, the calendar, the engine's limits, its
//! period and its kind's (shared) aggregates are all the same.
//!
//! Both are decided by comparing keys: texts of everything read, so that equal keys mean
//! equal results. The keys are deliberately wide (a parameter counts as read when its name
//! appears anywhere in the rule or the helpers; a rule's title is in its key): a key that
//! differs without need only costs the work being done again.

use super::prepare::AggPlan;
use super::{KindState, PeriodValue, PreparedRule, Run};
use crate::policy::{Bound, Case, Expr, Part, Period, PolicySet, Rule, SubjectKind, Template};
use chrono::NaiveDate;
use std::fmt::Write;
use std::sync::Arc;

/// The key of a subject kind's aggregate values and evidence rows (everything but the data).
pub(super) fn aggregates_key(
    policy: &PolicySet,
    periods: &[PeriodValue],
    as_of: NaiveDate,
    (kname, sk): (&str, &SubjectKind),
    plan: &AggPlan,
) -> String {
    let mut k = String::new();
    let _ = writeln!(k, "{as_of} {kname:?} {sk:?}");
    for (l, g) in plan.topo.iter().enumerate() {
        let a = &policy.aggregates[*g];
        let _ = writeln!(
            k,
            "{:?} {:?} {:?} {:?} {}",
            a.name,
            a.table,
            a.by,
            plan.lineage_slot[l],
            plan.prepared[l].key()
        );
    }
    periods_key(&mut k, policy, periods);
    k
}

/// Every period, as resolved and as declared (a bound may come from an aggregate).
fn periods_key(k: &mut String, policy: &PolicySet, periods: &[PeriodValue]) {
    for (p, pv) in policy.periods.values().zip(periods) {
        period_key(k, p, pv);
    }
}

/// One period, as resolved and as declared.
fn period_key(k: &mut String, p: &Period, pv: &PeriodValue) {
    let _ = write!(k, "{pv:?}");
    for b in [
        Some(&p.start),
        Some(&p.end),
        p.not_before.as_ref(),
        p.not_after.as_ref(),
    ] {
        k.push(' ');
        match b {
            None => k.push('-'),
            Some(b) => bound_key(k, b),
        }
    }
    k.push('\n');
}

fn bound_key(k: &mut String, b: &Bound) {
    let _ = match b {
        Bound::Date(d) => write!(k, "{d}"),
        Bound::Ref(r) => write!(k, "{r:?}"),
        Bound::Script(e) => write!(k, "script {:?}", e.src),
    };
}

/// The key of rule `pr`'s statuses in `run`, besides its kind's aggregates (compared by
/// [`same_kind`]) and the waivers (compared whole).
pub(super) fn statuses_key(run: &Run, pr: &PreparedRule) -> String {
    // Every field, so that a new one cannot be forgotten here; only where it is written
    // is left out.
    let Rule {
        id,
        version,
        title,
        directive,
        subject,
        effective_from,
        effective_until,
        clause,
        severity,
        period,
        applies,
        not_applicable_message,
        lets,
        evidence,
        cases,
        loc: _,
    } = pr.rule;
    let mut k = String::new();
    let _ = writeln!(
        k,
        "{id:?} {version:?} {title:?} {directive:?} {subject:?} {effective_from:?} \
         {effective_until:?} {:?} {:?} {severity:?} {period:?} {not_applicable_message:?} \
         {evidence:?}",
        clause.key, clause.text
    );
    let mut exprs: Vec<&Expr> = Vec::new();
    exprs.extend(applies);
    for (name, e) in lets {
        let _ = write!(k, "let {name:?} ");
        exprs.push(e);
    }
    for Case {
        when,
        status,
        message: Template { parts },
    } in cases
    {
        let _ = write!(k, "case {status:?} {} ", when.is_some());
        exprs.extend(when);
        for p in parts {
            match p {
                Part::Text(t) => {
                    let _ = write!(k, "text {t:?} ");
                }
                Part::Expr(e) => {
                    k.push_str("expr ");
                    exprs.push(e);
                }
            }
        }
    }
    k.push('\n');
    for e in &exprs {
        let _ = writeln!(k, "{:?}", e.src);
    }
    let _ = writeln!(k, "{:?} {:?}", pr.vars, pr.bounds);

    // What every expression can reach: the helpers, the engine's functions and limits.
    let policy = run.policy;
    let e = &policy.engine;
    let _ = writeln!(
        k,
        "{:?}\n{} {} {} {} {} {} {}\n{}",
        policy.helper_source,
        e.max_operations(),
        e.max_call_levels(),
        e.max_expr_depth(),
        e.max_function_expr_depth(),
        e.max_string_size(),
        e.max_array_size(),
        e.max_map_size(),
        policy.calendar.digest()
    );
    // The parameters any of them names (as a variable, in `global::`, anywhere).
    let mut names: Vec<&str> = exprs
        .iter()
        .flat_map(|e| words(&e.src))
        .chain(words(&policy.helper_source))
        .collect();
    names.sort_unstable();
    names.dedup();
    let _ = writeln!(k, "as_of {}", run.as_of);
    for n in names {
        if let Some(v) = run.params.get(n) {
            let _ = writeln!(k, "{n:?} = {v:?}");
        }
    }
    if let Some(i) = pr.period {
        k.push_str("period ");
        period_key(&mut k, &policy.periods[i], &run.periods[i]);
    }
    let window = run.directives.iter().find(|w| w.key == *directive);
    let _ = writeln!(k, "{window:?}");
    k
}

/// Whether two runs' states of a subject kind hold the same (shared) aggregates, subjects
/// and columns.
pub(super) fn same_kind(a: &KindState, b: &KindState) -> bool {
    Arc::ptr_eq(&a.values, &b.values)
        && Arc::ptr_eq(&a.lineage, &b.lineage)
        && Arc::ptr_eq(&a.order, &b.order)
        && a.n == b.n
        && a.table_idx == b.table_idx
        && a.key_col == b.key_col
        && a.name_col == b.name_col
        && a.agg_key == b.agg_key
}

/// The identifier-like words of a text (runs of letters, digits and `_`).
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::{Run, prepare, prepare_against};
    use std::path::{Path, PathBuf};

    #[test]
    fn words_find_names_wherever_they_are_written() {
        let w: Vec<&str> = super::words("global::hours_需要+f(x1, \"a b\")").collect();
        assert_eq!(w, ["global", "hours_需要", "f", "x1", "a", "b"]);
    }

    /// The shipped policy set in a temporary folder, with `file`'s `from` replaced by `to`.
    fn edited(dir: &Path, file: &str, from: &str, to: &str) -> PathBuf {
        let root = dir.join("policies");
        for e in walkdir::WalkDir::new("policies") {
            let e = e.unwrap();
            let dest = root.join(e.path().strip_prefix("policies").unwrap());
            if e.file_type().is_dir() {
                std::fs::create_dir_all(&dest).unwrap();
            } else {
                std::fs::copy(e.path(), &dest).unwrap();
            }
        }
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        root
    }

    fn changes(new: &Run, old: &Run) -> String {
        let (before, after, count) = new.changed_findings(old).unwrap().unwrap();
        serde_json::to_string(&(before, after, count)).unwrap()
    }

    /// For each edit of the shipped set: the changes found sharing work with the base run are
    /// those found computing the new run on its own (where nothing can be shared), and only
    /// what the edit touches is computed again.
    #[test]
    fn diff_shares_only_what_an_edit_leaves_alone() {
        let old_set = crate::policy::load(Path::new("policies")).unwrap();
        let ds = crate::data::load(
            Path::new("samples/hubei-2020"),
            &old_set.schema,
            &Default::default(),
        )
        .unwrap();
        let old = prepare(&old_set, &ds, None).unwrap();
        let hours = "directives/service-hours-20.toml";
        // (file, from, to, kinds computed again, rules compared: `None` for all)
        type Edit<'a> = (
            &'a str,
            &'a str,
            &'a str,
            &'a [&'a str],
            Option<&'a [&'a str]>,
        );
        let edits: &[Edit] = &[
            ("policy.toml", "", "", &[], Some(&[])),
            // A parameter only a rule reads.
            (
                hours,
                "value = 20 }",
                "value = 22 }",
                &[],
                Some(&["hours.yearly"]),
            ),
            // A parameter an aggregate's filter reads: the working hours, which every
            // aggregate's key holds (wider than needed, never wrong).
            (
                "policy.toml",
                "value = \"09:00\"",
                "value = \"10:00\"",
                &["member", "organization"],
                None,
            ),
            // Helpers: every rule may call them.
            (
                "helpers/common.rhai",
                "round_to(h, 2)",
                "round_to(h, 1)",
                &[],
                None,
            ),
            // The calendar, a parameter ending three directives, a rule's condition.
            (
                "calendar/cn-2020-2021.csv",
                "2020-10-01,holiday",
                "2020-10-01,workday",
                &["member", "organization"],
                None,
            ),
            (
                "policy.toml",
                "value = 2020-05-01 }",
                "value = 2020-04-20 }",
                &["member", "organization"],
                None,
            ),
            (
                hours,
                "when = \"counted_hours >= hours_required\"",
                "when = \"counted_hours > hours_required\"",
                &[],
                Some(&["hours.yearly"]),
            ),
        ];
        for (file, from, to, recomputed, compared) in edits {
            let dir = tempfile::tempdir().unwrap();
            let set = crate::policy::load(&edited(dir.path(), file, from, to)).unwrap();
            let shared = prepare_against(&set, &ds, None, &old).unwrap();
            let alone = prepare(&set, &ds, None).unwrap();
            let what = format!("{file}: {from} → {to}");
            assert_eq!(changes(&shared, &old), changes(&alone, &old), "{what}");
            for (name, k) in &shared.kinds {
                let again = !super::same_kind(k, &old.kinds[name]);
                assert_eq!(again, recomputed.contains(&name.as_str()), "{what}: {name}");
            }
            let pairs = shared.rule_pairs(&old);
            let got: Vec<&str> = shared
                .rules
                .iter()
                .zip(&pairs)
                .filter(|(_, p)| matches!(p, Some((_, true))))
                .map(|(pr, _)| pr.rule.id.as_str())
                .collect();
            match compared {
                Some(want) => assert_eq!(&got, want, "{what}"),
                None if recomputed.is_empty() => {
                    assert_eq!(got.len(), pairs.iter().flatten().count(), "{what}")
                }
                None => {}
            }
        }
    }
}
