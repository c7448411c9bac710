//! `rulebook explain`: why a subject got its verdict, rule by rule — the version chosen and
//! why, the parameter values and the dated entry they come from, each aggregate with the
//! input rows that made it up and the rows left out (with the condition they failed), every
//! expression with its result, and the clause of the source the rule enforces.

use super::aggregate::{self, Span, SubjectCtx};
use super::value::Values;
use super::{KindState, PreparedRule, Run, date_text};
use crate::policy::{Cond, ValueRef};
use crate::script;
use rhai::Dynamic;
use serde::Serialize;

/// Why one subject got its verdicts: a trace per rule.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// Kind of subject (`member`, `organization`).
    pub subject_kind: String,
    /// The subject's id.
    pub subject_id: String,
    /// The subject's name, from the `name` column of its table; `None` when there is none.
    pub subject_name: Option<String>,
    /// The evaluation date, `YYYY-MM-DD`.
    pub as_of: String,
    /// One trace per rule of the subject's kind in force (or only the rule asked for).
    pub rules: Vec<RuleTrace>,
}

/// How one rule reached its verdict on the subject.
#[derive(Debug, Serialize)]
pub struct RuleTrace {
    /// Key of the rule's directive.
    pub directive: String,
    /// The rule's id.
    pub rule: String,
    /// Title of the check.
    pub title: String,
    /// The version used (`chosen_because` says why).
    pub version: String,
    /// Why this version: its window contains `as_of` (or the last day of a directive that
    /// ended before it).
    pub chosen_because: String,
    /// The rule's other versions with their windows (`v1 (2020-01-01 – 2021-12-31)`).
    pub other_versions: Vec<String>,
    /// The period the rule looks at, `name: start – end` (`…` for an unknown bound); `None`
    /// when the rule names no period.
    pub period: Option<String>,
    /// The parameters the rule mentions, with their values on `as_of`.
    pub parameters: Vec<ParamTrace>,
    /// The aggregates the rule mentions, with the rows behind them.
    pub aggregates: Vec<AggTrace>,
    /// Each expression evaluated, in order, up to the case that decided.
    pub steps: Vec<Step>,
    /// The finding's status (`pass`, `fail`, …).
    pub status: String,
    /// The finding's message.
    pub message: String,
    /// The source document: its number, or its title where it has none.
    pub document: String,
    /// The clause the rule enforces, quoted from the source.
    pub clause: String,
}

/// A parameter as a rule saw it.
#[derive(Debug, Serialize)]
pub struct ParamTrace {
    /// The parameter's name.
    pub name: String,
    /// What it means, for people.
    pub label: String,
    /// The value in force on `as_of`, as TOML text (`""` when none holds yet).
    pub value: String,
    /// The first day of that value, `YYYY-MM-DD`; `None` when no value holds yet.
    pub from: Option<String>,
    /// `source` (the source fixes the value) or `assumption`.
    pub basis: String,
    /// Why this value: the reason of an assumption, else the source's words; `None` when
    /// the policy gives neither.
    pub why: Option<String>,
}

/// An aggregate as a rule saw it, with the subject's rows it used and left out.
#[derive(Debug, Serialize)]
pub struct AggTrace {
    /// The aggregate's name.
    pub name: String,
    /// What the figure means, for people.
    pub label: String,
    /// The operation (`count`, `sum_hours`, …).
    pub op: String,
    /// The subject's value, as JSON.
    pub value: serde_json::Value,
    /// The table the rows come from.
    pub table: String,
    /// The file (and sheet) the table was loaded from.
    pub file: String,
    /// The aggregate's `where` conditions in words, with the values they compared with.
    pub conditions: Vec<String>,
    /// The subject's rows that met every condition.
    pub used: Vec<RowTrace>,
    /// The subject's rows left out, each with the first condition it failed.
    pub excluded: Vec<RowTrace>,
}

/// One input row of an aggregate.
#[derive(Debug, Serialize)]
pub struct RowTrace {
    /// Line (CSV) or row (XLSX) number in the file.
    pub line: u32,
    /// The row's cells as `column=value`, separated by spaces.
    pub row: String,
    /// For a row left out, `fails: ` and the condition it failed; `None` for a row used.
    pub reason: Option<String>,
}

/// One expression of a rule, evaluated.
#[derive(Debug, Serialize)]
pub struct Step {
    /// Which expression: `applies`, `let NAME` or `case N (status)`.
    pub what: String,
    /// Its Rhai source (`(otherwise)` for a case without `when`).
    pub expression: String,
    /// Its result as shown to people, or `error: …`.
    pub result: String,
}

impl Run<'_> {
    /// Explain every rule in force (or only `rule`) for subject `id`; `None` if no such subject.
    pub fn explain(&self, id: &str, rule: Option<&str>) -> Option<Explanation> {
        let (kind_name, kind, row) = self.kinds.iter().find_map(|(n, k)| {
            let sym = self.data.ids.get(id)?;
            let r = self.data.tables[k.table_name.as_str()].row_of(sym)?;
            Some((n.clone(), k, r as usize))
        })?;
        let mut rules = Vec::new();
        for pr in self.rules.iter().filter(|pr| *pr.kind == *kind_name) {
            if rule.is_some_and(|r| *pr.id != *r) {
                continue;
            }
            rules.push(self.trace_rule(pr, kind, row));
        }
        let table = self.vals.table(kind.table_idx);
        let subject_name = kind.name_col.and_then(|c| {
            self.vals
                .text(&Values::cell(table, kind.table_idx, c, row))
                .map(String::from)
        });
        Some(Explanation {
            subject_kind: kind_name,
            subject_id: id.to_string(),
            subject_name,
            as_of: date_text(self.as_of),
            rules,
        })
    }

    fn spans_for(&self, kind: &KindState, row: usize) -> Vec<Span> {
        let agg_index = |name: &str| {
            self.policy
                .aggregates
                .get_index_of(name)
                .and_then(|g| kind.local.get(&g).copied())
        };
        let values = &kind.subject_values(row);
        self.periods
            .iter()
            .enumerate()
            .map(|(i, pv)| {
                super::subject_span(self.policy, pv, i, values, &agg_index, self.as_of, true)
            })
            .collect()
    }

    fn trace_rule(&self, pr: &PreparedRule, kind: &KindState, row: usize) -> RuleTrace {
        let rule = pr.rule;
        let window = format!(
            "{} – {}",
            rule.effective_from.map_or("…".to_string(), date_text),
            rule.effective_until.map_or("…".to_string(), date_text)
        );
        let other_versions = self
            .policy
            .rules
            .iter()
            .filter(|r| r.id == rule.id && r.version != rule.version)
            .map(|r| {
                format!(
                    "v{} ({} – {})",
                    r.version,
                    r.effective_from.map_or("…".to_string(), date_text),
                    r.effective_until.map_or("…".to_string(), date_text)
                )
            })
            .collect();
        let idents = rule.idents();
        let parameters = self
            .policy
            .params
            .values()
            .filter(|p| idents.contains(&p.name))
            .map(|p| {
                let v = &self.params[&p.name];
                ParamTrace {
                    name: p.name.clone(),
                    label: p.label.clone(),
                    value: v.value.to_string(),
                    from: v.from.map(date_text),
                    basis: if p.basis == crate::policy::model::Basis::Assumption {
                        "assumption".into()
                    } else {
                        "source".into()
                    },
                    why: p.reason.clone().or_else(|| p.quote.clone()),
                }
            })
            .collect();
        let aggregates = self.trace_aggregates(kind, row, &idents);
        // Re-run the rule, recording each expression.
        let mut steps = Vec::new();
        let finding = self.eval_rule(pr, kind, row);
        let mut scope = self.base.clone();
        self.push_vars(pr, kind, row, &mut scope);
        let show = |r: &Result<Dynamic, String>| match r {
            Ok(v) => script::display(v),
            Err(e) => format!("error: {e}"),
        };
        let mut go_on = true;
        if let Some(a) = &rule.applies {
            let r = self.eval(a, &mut scope);
            go_on = matches!(r.as_ref().map(|v| v.as_bool()), Ok(Ok(true)));
            steps.push(Step {
                what: "applies".into(),
                expression: a.src.clone(),
                result: show(&r),
            });
        }
        if go_on {
            for (name, e) in &rule.lets {
                let r = self.eval(e, &mut scope);
                steps.push(Step {
                    what: format!("let {name}"),
                    expression: e.src.clone(),
                    result: show(&r),
                });
                scope.push_dynamic(name.clone(), r.unwrap_or(Dynamic::UNIT));
            }
            for (i, c) in rule.cases.iter().enumerate() {
                match &c.when {
                    Some(w) => {
                        let r = self.eval(w, &mut scope);
                        let holds = matches!(r.as_ref().map(|v| v.as_bool()), Ok(Ok(true)));
                        steps.push(Step {
                            what: format!(
                                "case {} ({})",
                                i + 1,
                                crate::policy::case_status_name(c.status)
                            ),
                            expression: w.src.clone(),
                            result: show(&r),
                        });
                        if holds {
                            break;
                        }
                    }
                    None => {
                        steps.push(Step {
                            what: format!(
                                "case {} ({})",
                                i + 1,
                                crate::policy::case_status_name(c.status)
                            ),
                            expression: "(otherwise)".into(),
                            result: "是".into(),
                        });
                        break;
                    }
                }
            }
        }
        RuleTrace {
            directive: rule.directive.clone(),
            rule: rule.id.clone(),
            title: rule.title.clone(),
            version: rule.version.clone(),
            chosen_because: match self
                .directives
                .iter()
                .find(|w| w.key == rule.directive)
                .and_then(|w| w.until)
                .filter(|u| *u < self.as_of)
            {
                // A directive that ended before --as-of: the version of its last day.
                Some(until) => format!(
                    "in force {window}, which contains {}, the directive's last day",
                    date_text(until)
                ),
                None => format!(
                    "in force {window}, which contains {}",
                    date_text(self.as_of)
                ),
            },
            other_versions,
            period: finding.period.as_ref().map(|p| {
                format!(
                    "{}: {} – {}",
                    p.name,
                    p.start.clone().unwrap_or_else(|| "…".into()),
                    p.end.clone().unwrap_or_else(|| "…".into())
                )
            }),
            parameters,
            aggregates,
            steps,
            status: finding.status.name().into(),
            message: finding.message,
            document: finding.source.document.to_string(),
            clause: rule.clause.text.clone(),
        }
    }

    /// The aggregates a rule mentions, each with the rows used and left out.
    fn trace_aggregates(&self, kind: &KindState, row: usize, idents: &[String]) -> Vec<AggTrace> {
        let spans = self.spans_for(kind, row);
        let values = &kind.subject_values(row);
        let subject_table = self.vals.table(kind.table_idx);
        let cx = SubjectCtx {
            subject_row: row,
            subject_table,
            subject_table_idx: kind.table_idx,
            values,
            periods: &spans,
        };
        let mut out = Vec::new();
        for (g, l) in &kind.local {
            let agg = &self.policy.aggregates[*g];
            if !idents.contains(&agg.name) {
                continue;
            }
            let p = &kind.prepared[*l];
            let table = self.vals.table(p.table);
            let ts = &self.policy.schema.tables[agg.table.as_str()];
            // A run for every subject keeps no groups: the subject's rows are found again.
            let regrouped;
            let rows = match kind.groups.get(*l) {
                Some(g) => g.of(row),
                None => {
                    regrouped = aggregate::group_one(
                        self.data,
                        self.policy,
                        agg,
                        &kind.table_name,
                        kind.n,
                        row,
                    );
                    regrouped.of(row)
                }
            };
            let conditions: Vec<String> = agg
                .filters
                .iter()
                .map(|f| self.describe(f, &spans, kind, row))
                .collect();
            let mut used = Vec::new();
            let mut excluded = Vec::new();
            for (r, failed) in aggregate::trace_rows(p, table, rows, &cx, &self.vals) {
                let shown: Vec<String> = ts
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(ci, c)| {
                        format!(
                            "{}={}",
                            c.name,
                            script::display(
                                &self
                                    .vals
                                    .to_dynamic(&Values::cell(table, p.table, ci, r as usize))
                            )
                        )
                    })
                    .collect();
                let t = RowTrace {
                    line: table.lines.get(r as usize),
                    row: shown.join(" "),
                    reason: failed.map(|i| {
                        format!("fails: {}", conditions.get(i).cloned().unwrap_or_default())
                    }),
                };
                if failed.is_some() {
                    excluded.push(t)
                } else {
                    used.push(t)
                }
            }
            out.push(AggTrace {
                name: agg.name.clone(),
                label: agg.label.clone(),
                op: agg.op.name().into(),
                value: script::to_json(&self.agg_dynamic(&values[*l], kind, *l)),
                table: agg.table.clone(),
                file: table.file.clone(),
                conditions,
                used,
                excluded,
            });
        }
        out
    }

    fn describe(
        &self,
        f: &crate::policy::Filter,
        spans: &[Span],
        kind: &KindState,
        row: usize,
    ) -> String {
        let subject_table = self.vals.table(kind.table_idx);
        let sts = &self.policy.schema.tables[kind.table_name.as_str()];
        let value = |r: &ValueRef| -> String {
            match r {
                ValueRef::Lit(v) => v.to_string(),
                ValueRef::AsOf => format!("as_of ({})", date_text(self.as_of)),
                ValueRef::Param(p) => format!(
                    "{p} ({})",
                    self.params
                        .get(p)
                        .map(|v| v.value.to_string())
                        .unwrap_or_default()
                ),
                ValueRef::Subject(c) => {
                    let v = sts.column(c).map(|ci| {
                        script::display(&self.vals.to_dynamic(&Values::cell(
                            subject_table,
                            kind.table_idx,
                            ci,
                            row,
                        )))
                    });
                    format!("subject's {c} ({})", v.unwrap_or_default())
                }
                ValueRef::Agg(a) => {
                    let v = self
                        .policy
                        .aggregates
                        .get_index_of(a)
                        .and_then(|g| kind.local.get(&g))
                        .map(|l| {
                            script::display(&self.agg_dynamic(&kind.value(row, *l), kind, *l))
                        });
                    format!("{a} ({})", v.unwrap_or_default())
                }
            }
        };
        let c = &f.column;
        match &f.cond {
            Cond::Is(r) => format!("{c} is {}", value(r)),
            Cond::IsNot(r) => format!("{c} is not {}", value(r)),
            Cond::In(rs) => format!(
                "{c} in [{}]",
                rs.iter().map(value).collect::<Vec<_>>().join(", ")
            ),
            Cond::NotIn(rs) => format!(
                "{c} not in [{}]",
                rs.iter().map(value).collect::<Vec<_>>().join(", ")
            ),
            Cond::Within(p) => {
                let span = self
                    .policy
                    .periods
                    .get_index_of(p)
                    .and_then(|i| spans.get(i).copied().flatten());
                match span {
                    Some((s, e)) => format!("{c} within {p} ({} – {})", date_text(s), date_text(e)),
                    None => format!("{c} within {p} (empty for this subject)"),
                }
            }
            Cond::From(r) => format!("{c} on or after {}", value(r)),
            Cond::Until(r) => format!("{c} on or before {}", value(r)),
            Cond::Weekday(r) => format!("{c} on weekday {}", value(r)),
            Cond::TimeFrom(r) => format!("{c} at or after {}", value(r)),
            Cond::TimeBefore(r) => format!("{c} before {}", value(r)),
            Cond::Present(b) => format!("{c} {}", if *b { "present" } else { "empty" }),
            Cond::WorkingDay(b) => {
                format!("{c} {} a working day", if *b { "is" } else { "is not" })
            }
            Cond::WorkingTime { overlaps, end } => format!(
                "{c}..{end} {} working hours on a working day",
                if *overlaps {
                    "overlaps"
                } else {
                    "does not overlap"
                }
            ),
        }
    }
}

/// The explanation as text for a terminal.
pub fn render(e: &Explanation) -> String {
    let mut s = format!(
        "{} {}{} — as of {}\n",
        e.subject_kind,
        e.subject_id,
        e.subject_name
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        e.as_of
    );
    for r in &e.rules {
        s.push_str(&format!(
            "\n== {} v{} — {} [{}]\n",
            r.rule, r.version, r.title, r.directive
        ));
        s.push_str(&format!("   status: {} — {}\n", r.status, r.message));
        s.push_str(&format!("   version: {}", r.chosen_because));
        if !r.other_versions.is_empty() {
            s.push_str(&format!(
                "; other versions: {}",
                r.other_versions.join(", ")
            ));
        }
        s.push('\n');
        if let Some(p) = &r.period {
            s.push_str(&format!("   period: {p}\n"));
        }
        for p in &r.parameters {
            s.push_str(&format!(
                "   parameter {} = {}{} [{}]\n",
                p.name,
                p.value,
                p.from
                    .as_ref()
                    .map(|f| format!(" (value from {f})"))
                    .unwrap_or_default(),
                p.basis
            ));
        }
        for a in &r.aggregates {
            s.push_str(&format!(
                "   aggregate {} ({}) = {} — {} of {} ({})\n",
                a.name, a.label, a.value, a.op, a.table, a.file
            ));
            for c in &a.conditions {
                s.push_str(&format!("       where {c}\n"));
            }
            for u in &a.used {
                s.push_str(&format!("       + line {}: {}\n", u.line, u.row));
            }
            for x in &a.excluded {
                s.push_str(&format!(
                    "       - line {}: {} — {}\n",
                    x.line,
                    x.row,
                    x.reason.clone().unwrap_or_default()
                ));
            }
        }
        for st in &r.steps {
            s.push_str(&format!(
                "   {}: {}  ⇒  {}\n",
                st.what,
                st.expression.trim(),
                st.result
            ));
        }
        s.push_str(&format!("   source: {} — “{}”\n", r.document, r.clause));
    }
    s
}
