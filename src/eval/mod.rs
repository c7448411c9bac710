//! Evaluation: picks the rule versions and parameter values in force on `--as-of`, computes
//! every declared aggregate natively per subject (in parallel), then runs each rule's small
//! Rhai predicates per subject and streams findings in a deterministic order
//! (directive, rule, subject id).

pub mod aggregate;
pub mod explain;
pub mod focus;
mod native;
mod rules;
pub mod value;

pub use rules::Outcomes;

use crate::data::{ColumnData, Dataset};
use crate::findings::{Finding, SourceRef};
use crate::policy::{Bound, Expr, PolicySet, Rule, ValueRef};
use crate::script;
use aggregate::{AggValue, Groups, Prepared, Span, SubjectCtx};
use anyhow::{Context, Result, anyhow, bail};
use chrono::{Datelike, NaiveDate};
use indexmap::IndexMap;
use rayon::prelude::*;
use rhai::{Dynamic, Scope};
use std::sync::Arc;
use value::{Scalar, Values};

/// A parameter's value on the evaluation date.
#[derive(Debug, Clone)]
pub struct ParamValue {
    pub from: Option<NaiveDate>,
    pub value: toml::Value,
}

/// A period as resolved for the run (`None` bounds depend on the subject).
#[derive(Debug, Clone)]
pub struct PeriodValue {
    pub name: String,
    pub label: String,
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
    pub per_subject: bool,
    /// The period starts no earlier and ends no later than these (for every subject).
    pub not_before: Option<NaiveDate>,
    pub not_after: Option<NaiveDate>,
}

impl PeriodValue {
    /// `start..end` within `not_before..not_after`, or `None` when nothing is left.
    fn clamp(&self, s: NaiveDate, e: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        let s = self.not_before.map_or(s, |nb| s.max(nb));
        let e = self.not_after.map_or(e, |na| e.min(na));
        (s <= e).then_some((s, e))
    }
}

/// A directive's days in force as the run sees them, and whether it counts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DirectiveWindow {
    pub key: String,
    pub title: String,
    pub from: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
    /// In force during the run period: its rules give findings.
    pub in_force: bool,
    /// Its findings enter grades (in force during the assessment period and listed there).
    pub graded: bool,
}

/// Everything computed per subject kind before rules run.
struct KindState {
    table_idx: usize,
    table_name: String,
    /// Rows of the subject table.
    n: usize,
    /// Subjects evaluated, in id order (rows of the subject table): all of them, or the one
    /// a run for one subject is for ([`prepare_subject`]).
    order: Vec<u32>,
    /// Global aggregate index → local index, for this kind's aggregates.
    local: IndexMap<usize, usize>,
    /// values[s * n_local + a]
    values: PerSubject<AggValue>,
    /// lineage[s * n_slots + slot] for aggregates recorded as evidence.
    lineage: PerSubject<Box<[u32]>>,
    lineage_slot: Vec<Option<usize>>,
    n_slots: usize,
    /// The key column and the `name` column of the subject table.
    key_col: usize,
    name_col: Option<usize>,
    /// Prepared aggregates and their row groups, by local index (kept for `explain`).
    prepared: Vec<Prepared>,
    groups: Vec<Arc<Groups>>,
}

impl KindState {
    fn n_local(&self) -> usize {
        self.local.len()
    }
    /// Whether row `s` is one of the run's subjects (a run for one subject holds only it).
    fn holds(&self, s: usize) -> bool {
        s < self.n && (self.order.len() == self.n || self.order.contains(&(s as u32)))
    }

    fn subject_values(&self, s: usize) -> &[AggValue] {
        debug_assert_eq!(self.values.width, self.n_local());
        self.values.of(s)
    }
}

/// Per-subject entries, `width` per subject, held for every subject of a kind or for a run
/// of them starting at row `first` (one subject for `explain`); indexed as if all were held,
/// `[s * width + i]`.
struct PerSubject<T> {
    first: usize,
    width: usize,
    items: Vec<T>,
}

impl<T> PerSubject<T> {
    /// The entries of subject `s` (which must be held).
    fn of(&self, s: usize) -> &[T] {
        let i = (s - self.first) * self.width;
        &self.items[i..i + self.width]
    }
}

impl<T> std::ops::Index<usize> for PerSubject<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.items[i - self.first * self.width]
    }
}

/// Where a variable in a rule comes from.
#[derive(Debug, Clone)]
enum VarSource {
    SubjectId,
    SubjectCol(usize),
    Agg(usize),
    PeriodStart,
    PeriodEnd,
}

struct PreparedRule<'a> {
    rule: &'a Rule,
    vars: Vec<(String, VarSource)>,
    source: Arc<SourceRef>,
    period: Option<usize>,
    directive: Arc<str>,
    id: Arc<str>,
    version: Arc<str>,
    kind: Arc<str>,
    /// The expressions compiled for the native evaluator.
    fast: rules::FastRule<'a>,
    /// Where the period's start and end come from for each subject.
    bounds: [BoundSource; 2],
}

/// A period bound as `subject_bounds` finds it.
#[derive(Debug, Clone, Copy)]
enum BoundSource {
    /// The same for every subject.
    Fixed,
    /// An aggregate of the subject (its local index; `None`: not one of this kind's).
    Agg(Option<usize>),
}

/// A prepared evaluation run: aggregates computed, rules ready.
pub struct Run<'a> {
    pub policy: &'a PolicySet,
    pub data: &'a Dataset,
    pub as_of: NaiveDate,
    pub params: IndexMap<String, ParamValue>,
    pub periods: Vec<PeriodValue>,
    /// Every directive's days in force, whether it gives findings in this run and whether
    /// they are graded.
    pub directives: Vec<DirectiveWindow>,
    /// The dates the grades assess (the assessment's period, clipped at `--as-of`).
    pub grading_span: Option<(NaiveDate, NaiveDate)>,
    vals: Values<'a>,
    kinds: IndexMap<String, KindState>,
    base: Scope<'static>,
    rules: Vec<PreparedRule<'a>>,
    /// Helper functions and tables for the native evaluator.
    prog: native::Program,
    as_of_text: Arc<str>,
    policy_name: Arc<str>,
    policy_version: Arc<str>,
    policy_hash: Arc<str>,
    /// Waivers in force on `as_of`, by subject id.
    waivers: std::collections::HashMap<String, Vec<Waiver>>,
    /// Waivers that were not applied, and why (expired, not yet valid, unknown target).
    pub waiver_notes: Vec<String>,
}

/// An approved exemption (a row of the `waivers` table).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Waiver {
    pub subject_id: String,
    pub directive: String,
    pub rule: Option<String>,
    pub reason: String,
    pub approved_by: String,
    pub valid_from: String,
    pub valid_until: Option<String>,
    pub file: String,
    pub line: u32,
}

/// Read the `waivers` table (if the policy set declares it): those in force on `as_of` by
/// subject, and notes on the others.
fn read_waivers(
    policy: &PolicySet,
    data: &Dataset,
    as_of: NaiveDate,
    subject_known: &dyn Fn(&str) -> bool,
) -> (std::collections::HashMap<String, Vec<Waiver>>, Vec<String>) {
    let mut active: std::collections::HashMap<String, Vec<Waiver>> = Default::default();
    let mut notes = Vec::new();
    let (Some(ts), Some(t)) = (
        policy.schema.tables.get("waivers"),
        data.tables.get("waivers"),
    ) else {
        return (active, notes);
    };
    let tidx = policy.schema.tables.get_index_of("waivers").unwrap_or(0);
    let col = |name: &str, r: usize| -> Option<String> {
        let ci = ts.column(name)?;
        match Values::cell(t, tidx, ci, r) {
            Scalar::None => None,
            Scalar::Date(d) => Some(date_text(d)),
            Scalar::Id(i) => Some(data.ids.resolve(i).to_string()),
            Scalar::TextRef(..) | Scalar::Str(_) => match &t.columns[ci] {
                ColumnData::Text(v) => Some(v.get(r).to_string()),
                _ => None,
            },
            _ => None,
        }
    };
    for r in 0..t.len() {
        let w = Waiver {
            subject_id: col("subject_id", r).unwrap_or_default(),
            directive: col("directive", r).unwrap_or_default(),
            rule: col("rule", r),
            reason: col("reason", r).unwrap_or_default(),
            approved_by: col("approved_by", r).unwrap_or_default(),
            valid_from: col("valid_from", r).unwrap_or_default(),
            valid_until: col("valid_until", r),
            file: t.file.clone(),
            line: t.lines[r],
        };
        let at = format!("{}:{}", w.file, w.line);
        let from = crate::policy::parse_date(&w.valid_from);
        let until = w.valid_until.as_deref().and_then(crate::policy::parse_date);
        if !subject_known(&w.subject_id) {
            notes.push(format!(
                "{at}: waiver for unknown member or organization `{}` not applied",
                w.subject_id
            ));
        } else if policy.directive(&w.directive).is_none() {
            notes.push(format!(
                "{at}: waiver names unknown directive `{}`; not applied",
                w.directive
            ));
        } else if let Some(rule) = w.rule.as_deref().filter(|r| {
            !policy
                .rules
                .iter()
                .any(|x| x.id == *r && x.directive == w.directive)
        }) {
            notes.push(format!(
                "{at}: waiver names rule `{rule}`, which directive `{}` does not have; not applied",
                w.directive
            ));
        } else if until.is_some_and(|u| u < as_of) {
            notes.push(format!(
                "{at}: waiver for `{}` expired on {}; not applied",
                w.subject_id,
                w.valid_until.clone().unwrap_or_default()
            ));
        } else if from.is_some_and(|f| f > as_of) {
            notes.push(format!(
                "{at}: waiver for `{}` is valid only from {}; not applied",
                w.subject_id, w.valid_from
            ));
        } else {
            active.entry(w.subject_id.clone()).or_default().push(w);
        }
    }
    (active, notes)
}

fn date_text(d: NaiveDate) -> String {
    crate::dates::date_text(d)
}

fn toml_date(v: &toml::Value) -> Option<NaiveDate> {
    match v {
        toml::Value::String(s) => crate::policy::parse_date(s),
        toml::Value::Datetime(d) => crate::policy::parse_date(&d.to_string()),
        _ => None,
    }
}

/// Prepare a run: choose `as_of`, resolve parameters and periods, compute aggregates.
pub fn prepare<'a>(
    policy: &'a PolicySet,
    data: &'a Dataset,
    as_of: Option<NaiveDate>,
) -> Result<Run<'a>> {
    prepare_with(policy, data, as_of, Subjects::All)
}

/// The kind and row of subject `id`: the first subject kind (in the order the policy set
/// declares them) whose table has it, as [`Run::explain`] looks it up.
pub fn find_subject<'p>(
    policy: &'p PolicySet,
    data: &Dataset,
    id: &str,
) -> Option<(&'p str, usize)> {
    let sym = data.ids.get(id)?;
    policy.subjects.iter().find_map(|(kname, sk)| {
        let r = data.tables.get(sk.table.as_str())?.key_index.get(&sym)?;
        Some((kname.as_str(), *r as usize))
    })
}

/// A run for one subject (`rulebook explain`): as [`prepare`], but only the rules of the
/// subject's kind, and the aggregates of that one subject, computed from its own rows. Its
/// findings are those a full run gives for the subject. `None` if there is no subject `id`.
///
/// `data` may be a dataset loaded for this subject ([`crate::data::load_focused`]).
pub fn prepare_subject<'a>(
    policy: &'a PolicySet,
    data: &'a Dataset,
    as_of: Option<NaiveDate>,
    id: &str,
) -> Result<Option<Run<'a>>> {
    // Without such a subject the run is still prepared (without subjects), so that it fails
    // as a full run would.
    let found = find_subject(policy, data, id);
    let run = prepare_with(policy, data, as_of, Subjects::Only(found))?;
    Ok(found.map(|_| run))
}

/// Which subjects a run is for.
#[derive(Clone, Copy)]
enum Subjects<'k> {
    All,
    /// One subject (kind and row), or none.
    Only(Option<(&'k str, usize)>),
}

/// [`prepare`] for `subjects`.
fn prepare_with<'a>(
    policy: &'a PolicySet,
    data: &'a Dataset,
    as_of: Option<NaiveDate>,
    subjects: Subjects,
) -> Result<Run<'a>> {
    let as_of = match as_of.or_else(|| data.latest_date()) {
        Some(d) => d,
        None => bail!(
            "the data has no dates, so --as-of cannot default to the latest one; give --as-of YYYY-MM-DD"
        ),
    };
    let vals = Values::new(data, policy);

    // Parameters on the evaluation date.
    let mut params = IndexMap::new();
    let mut base = Scope::new();
    base.push_constant("as_of", rhai::ImmutableString::from(date_text(as_of)));
    for (name, p) in &policy.params {
        let (from, value) = match p.value_at(as_of) {
            Some((d, v)) => (Some(d), v.clone()),
            None => (None, toml::Value::String(String::new())),
        };
        let dynamic = if from.is_some() {
            script::from_toml(&value)
        } else {
            Dynamic::UNIT
        };
        base.push_constant_dynamic(name.clone(), dynamic);
        params.insert(name.clone(), ParamValue { from, value });
    }

    // Periods: fixed dates, parameters and expressions now; aggregate bounds per subject.
    let mut periods = Vec::new();
    for p in policy.periods.values() {
        let mut per_subject = false;
        let mut bound = |b: &Bound| -> Result<Option<NaiveDate>> {
            Ok(match b {
                Bound::Date(d) => Some(*d),
                Bound::Ref(ValueRef::AsOf) => Some(as_of),
                Bound::Ref(ValueRef::Param(n)) => {
                    let v = params
                        .get(n)
                        .ok_or_else(|| anyhow!("period `{}`: unknown parameter `{n}`", p.name))?;
                    Some(toml_date(&v.value).ok_or_else(|| {
                        anyhow!(
                            "period `{}`: parameter `{n}` is `{}`, not a date",
                            p.name,
                            v.value
                        )
                    })?)
                }
                Bound::Ref(_) => {
                    per_subject = true;
                    None
                }
                Bound::Script(e) => {
                    let mut scope = base.clone();
                    script::start_clock();
                    let v = policy
                        .engine
                        .eval_ast_with_scope::<Dynamic>(&mut scope, &e.ast)
                        .map_err(|err| {
                            anyhow!(
                                "period `{}`: `{}` failed: {}",
                                p.name,
                                e.src,
                                script::describe_error(&err)
                            )
                        })?;
                    let text = v.to_string();
                    Some(crate::policy::parse_date(&text).ok_or_else(|| {
                        anyhow!("period `{}`: `{}` gave `{text}`, not a date", p.name, e.src)
                    })?)
                }
            })
        };
        let start = bound(&p.start)?;
        let end = bound(&p.end)?;
        let not_before = p.not_before.as_ref().map(&mut bound).transpose()?.flatten();
        let not_after = p.not_after.as_ref().map(&mut bound).transpose()?.flatten();
        let mut pv = PeriodValue {
            name: p.name.clone(),
            label: p.label.clone(),
            start,
            end,
            per_subject,
            not_before,
            not_after,
        };
        // Fixed bounds are clamped now; bounds from aggregates per subject.
        if let Some(nb) = not_before
            && let Some(s) = pv.start.as_mut()
        {
            *s = (*s).max(nb);
        }
        if let Some(na) = not_after
            && let Some(e) = pv.end.as_mut()
        {
            *e = (*e).min(na);
        }
        periods.push(pv);
    }

    // Directives in force during the run period, and those whose findings are graded.
    let fixed_span = |name: &str| -> Option<(NaiveDate, NaiveDate)> {
        let pv = periods.iter().find(|p| p.name == name)?;
        Some((pv.start?, pv.end?))
    };
    let run_span = policy
        .run_period
        .as_deref()
        .and_then(fixed_span)
        .map_or((as_of, as_of), |(s, e)| (s, e.min(as_of)));
    let grading = policy.assessment.as_ref().and_then(|a| {
        a.period
            .as_deref()
            .and_then(fixed_span)
            .map(|(s, e)| (s, e.min(as_of)))
    });
    let windows: Vec<DirectiveWindow> = policy
        .directives
        .iter()
        .map(|d| {
            let until = match &d.until_param {
                Some(pn) => params.get(pn).and_then(|v| toml_date(&v.value)),
                None => d.effective_until,
            };
            let overlaps = |(s, e): (NaiveDate, NaiveDate)| {
                s <= e && d.effective_from.is_none_or(|f| f <= e) && until.is_none_or(|u| s <= u)
            };
            let in_force = overlaps(run_span);
            let listed = policy
                .assessment
                .as_ref()
                .and_then(|a| a.directives.as_ref())
                .is_none_or(|l| l.contains(&d.key));
            let graded = in_force && listed && grading.is_none_or(overlaps);
            DirectiveWindow {
                key: d.key.clone(),
                title: d.title.clone(),
                from: d.effective_from,
                until,
                in_force,
                graded,
            }
        })
        .collect();

    // Rules in force: of a directive in force in the run, the version in force on the last
    // day the directive is (the as-of date, or the directive's end if it is earlier).
    let mut in_force: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|r| match windows.iter().find(|w| w.key == r.directive) {
            Some(w) => w.in_force && r.in_force(w.until.map_or(as_of, |u| u.min(as_of))),
            None => r.in_force(as_of),
        })
        .collect();
    in_force.sort_by(|a, b| (&a.directive, &a.id).cmp(&(&b.directive, &b.id)));
    let lineage_names: std::collections::HashSet<&str> = in_force
        .iter()
        .flat_map(|r| r.evidence.iter().map(|s| s.as_str()))
        .collect();

    // Aggregates per subject kind.
    let mut kinds = IndexMap::new();
    for (kname, sk) in &policy.subjects {
        let table_idx = policy
            .schema
            .tables
            .get_index_of(&sk.table)
            .context("subject table")?;
        let table = &data.tables[sk.table.as_str()];
        let ts = &policy.schema.tables[sk.table.as_str()];
        let n = table.len();
        let key = ts.key.context("subject table has a key")?;
        let ColumnData::Id(keys) = &table.columns[key] else {
            bail!("subject key is not an id")
        };
        // The one subject, if the run is for one.
        let only = match subjects {
            Subjects::All => None,
            Subjects::Only(Some((k, row))) if k == kname => Some((k, row)),
            Subjects::Only(_) => continue,
        };
        let order: Vec<u32> = match only {
            Some((_, row)) => vec![row as u32],
            None => {
                let mut order: Vec<u32> = (0..n as u32).collect();
                order.sort_by(|a, b| {
                    data.ids
                        .resolve(keys[*a as usize])
                        .cmp(data.ids.resolve(keys[*b as usize]))
                });
                order
            }
        };
        // This kind's aggregates in dependency order.
        let mine: Vec<usize> = policy
            .aggregates
            .values()
            .enumerate()
            .filter(|(_, a)| a.subject == *kname)
            .map(|(i, _)| i)
            .collect();
        let topo = topo_order(policy, &mine);
        let local: IndexMap<usize, usize> = topo.iter().enumerate().map(|(l, g)| (*g, l)).collect();
        let mut lineage_slot = vec![None; local.len()];
        let mut n_slots = 0;
        for (g, l) in &local {
            let a = &policy.aggregates[*g];
            if lineage_names.contains(a.name.as_str()) {
                lineage_slot[*l] = Some(n_slots);
                n_slots += 1;
            }
        }
        let agg_index = |name: &str| {
            policy
                .aggregates
                .get_index_of(name)
                .and_then(|g| local.get(&g).copied())
        };
        let period_index = |name: &str| policy.periods.get_index_of(name);
        let param_scalar = |name: &str, cs: &crate::policy::ColumnSchema| -> Scalar {
            params
                .get(name)
                .map_or(Scalar::None, |v| Values::literal(&v.value, cs, &data.ids))
        };
        let param_raw = |name: &str| {
            params
                .get(name)
                .filter(|v| v.from.is_some())
                .map(|v| v.value.clone())
        };
        let prepared: Vec<Prepared> = topo
            .iter()
            .map(|g| {
                let a = &policy.aggregates[*g];
                let tidx = policy.schema.tables.get_index_of(&a.table).unwrap_or(0);
                let l = local[g];
                aggregate::prepare(
                    a,
                    policy,
                    data,
                    tidx,
                    &sk.table,
                    &agg_index,
                    &period_index,
                    &param_scalar,
                    &param_raw,
                    as_of,
                    lineage_slot[l].is_some(),
                )
            })
            .collect();
        // Rows grouped by subject, once per (table, path): aggregates over the same rows
        // share their groups.
        let mut shared: std::collections::HashMap<(&str, &[String]), Arc<Groups>> =
            Default::default();
        let groups: Vec<Arc<Groups>> = topo
            .iter()
            .map(|g| {
                let a = &policy.aggregates[*g];
                shared
                    .entry((a.table.as_str(), a.by.as_slice()))
                    .or_insert_with(|| {
                        Arc::new(match only {
                            Some((_, row)) => {
                                aggregate::group_one(data, policy, a, &sk.table, n, row)
                            }
                            None => aggregate::group(data, policy, a, &sk.table, n),
                        })
                    })
                    .clone()
            })
            .collect();
        let n_local = topo.len();
        // Each period's bounds that come from this kind's aggregates, resolved once.
        let bound_aggs: Vec<(Option<usize>, Option<usize>)> = policy
            .periods
            .values()
            .map(|p| {
                let of = |b: &Bound| match b {
                    Bound::Ref(ValueRef::Agg(a)) => agg_index(a),
                    _ => None,
                };
                (of(&p.start), of(&p.end))
            })
            .collect();
        // Subject `s`'s aggregates into `values` (its `n_local`) and `lineage` (its `n_slots`).
        let compute = |s: usize,
                       values: &mut [AggValue],
                       lineage: &mut [Box<[u32]>],
                       spans: &mut Vec<Span>| {
            for (l, p) in prepared.iter().enumerate() {
                for (i, pv) in periods.iter().enumerate() {
                    spans[i] = span_of(pv, bound_aggs[i], values, as_of);
                }
                let cx = SubjectCtx {
                    subject_row: s,
                    subject_table: table,
                    subject_table_idx: table_idx,
                    values,
                    periods: spans,
                };
                let t = vals.table(p.table);
                let (v, used) = aggregate::compute(p, t, groups[l].of(s), &cx, &vals);
                values[l] = v;
                if let Some(slot) = lineage_slot[l] {
                    lineage[slot] = used.into_boxed_slice();
                }
            }
        };
        let first = only.map_or(0, |(_, row)| row);
        let held = if only.is_some() { 1 } else { n };
        let mut values = vec![AggValue::Unit; held * n_local];
        let mut lineage: Vec<Box<[u32]>> = vec![Box::default(); held * n_slots];
        if only.is_some() {
            let mut spans: Vec<Span> = vec![None; periods.len()];
            compute(first, &mut values, &mut lineage, &mut spans);
        } else {
            const CHUNK: usize = 256;
            // Lineage in the same chunks of subjects (none when no aggregate keeps it: zipping
            // with no chunks at all would compute nothing).
            let lchunks: Vec<&mut [Box<[u32]>]> = if n_slots == 0 {
                (0..n.div_ceil(CHUNK)).map(|_| &mut [][..]).collect()
            } else {
                lineage.chunks_mut(CHUNK * n_slots).collect()
            };
            values
                .par_chunks_mut(CHUNK * n_local.max(1))
                .zip(lchunks.into_par_iter())
                .enumerate()
                .for_each(|(c, (vchunk, lchunk))| {
                    let mut spans: Vec<Span> = vec![None; periods.len()];
                    for k in 0..CHUNK {
                        let s = c * CHUNK + k;
                        if s >= n || n_local == 0 {
                            break;
                        }
                        compute(
                            s,
                            &mut vchunk[k * n_local..(k + 1) * n_local],
                            &mut lchunk[k * n_slots..(k + 1) * n_slots],
                            &mut spans,
                        );
                    }
                });
        }
        let values = PerSubject {
            first,
            width: n_local,
            items: values,
        };
        let lineage = PerSubject {
            first,
            width: n_slots,
            items: lineage,
        };
        let name_col = ts.column("name");
        kinds.insert(
            kname.clone(),
            KindState {
                table_idx,
                table_name: sk.table.clone(),
                n,
                order,
                local,
                values,
                lineage,
                lineage_slot,
                n_slots,
                key_col: key,
                name_col,
                prepared,
                groups,
            },
        );
    }

    // The native evaluator: helper functions (lowered from Rhai's AST) and `zh`'s words.
    let prog = native::Program::new(
        &policy.helpers,
        crate::policy::enum_words(&policy.schema),
        &policy.engine,
    );
    let base_names: Vec<String> = rules::base_entries(&base)
        .into_iter()
        .map(|(n, _, _)| n.to_string())
        .collect();

    // Rules with their variables resolved.
    let mut rules = Vec::new();
    for r in in_force {
        let Some(kind) = kinds.get(&r.subject) else {
            continue;
        };
        let ts = &policy.schema.tables[kind.table_name.as_str()];
        let mut vars = Vec::new();
        for ident in r.idents() {
            let src = if ident == "subject_id" {
                Some(VarSource::SubjectId)
            } else if ident == "period_start" {
                Some(VarSource::PeriodStart)
            } else if ident == "period_end" {
                Some(VarSource::PeriodEnd)
            } else if let Some(l) = policy
                .aggregates
                .get_index_of(&ident)
                .and_then(|g| kind.local.get(&g))
            {
                Some(VarSource::Agg(*l))
            } else {
                ts.column(&ident).map(VarSource::SubjectCol)
            };
            if let Some(src) = src {
                vars.push((ident, src));
            }
        }
        let d = policy.directive(&r.directive);
        let source = Arc::new(SourceRef {
            document: d
                .and_then(|d| d.document_number.clone())
                .or_else(|| d.map(|d| d.title.clone()))
                .unwrap_or_default()
                .into(),
            title: d.map(|d| d.title.clone()).unwrap_or_default().into(),
            issuer: d.and_then(|d| d.issuer.clone()).map(Into::into),
            clause: r.clause.key.as_str().into(),
            text: r.clause.text.as_str().into(),
        });
        let fast = rules::compile(&prog, r, &vars, &base_names, policy, data, kind);
        let period = r
            .period
            .as_deref()
            .and_then(|p| policy.periods.get_index_of(p));
        let bound = |b: &Bound| match b {
            Bound::Ref(ValueRef::Agg(a)) => BoundSource::Agg(
                policy
                    .aggregates
                    .get_index_of(a)
                    .and_then(|g| kind.local.get(&g).copied()),
            ),
            _ => BoundSource::Fixed,
        };
        let bounds = match period.map(|i| &policy.periods[i]) {
            Some(p) => [bound(&p.start), bound(&p.end)],
            None => [BoundSource::Fixed; 2],
        };
        rules.push(PreparedRule {
            rule: r,
            vars,
            fast,
            bounds,
            source,
            period,
            directive: r.directive.as_str().into(),
            id: r.id.as_str().into(),
            version: r.version.as_str().into(),
            kind: r.subject.as_str().into(),
        });
    }

    let subject_known = |id: &str| {
        data.ids.get(id).is_some_and(|sym| {
            policy
                .subjects
                .values()
                .any(|sk| data.tables[sk.table.as_str()].key_index.contains_key(&sym))
        })
    };
    let (waivers, waiver_notes) = read_waivers(policy, data, as_of, &subject_known);
    Ok(Run {
        waivers,
        waiver_notes,
        policy,
        data,
        as_of,
        params,
        periods,
        directives: windows,
        grading_span: grading,
        vals,
        kinds,
        base,
        rules,
        prog,
        as_of_text: date_text(as_of).into(),
        policy_name: policy.name.as_str().into(),
        policy_version: policy.version.as_str().into(),
        policy_hash: policy.hash.as_str().into(),
    })
}

/// Aggregates of one kind ordered so that each comes after those it depends on.
fn topo_order(policy: &PolicySet, mine: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut state = vec![0u8; policy.aggregates.len()];
    fn visit(g: usize, policy: &PolicySet, state: &mut Vec<u8>, out: &mut Vec<usize>) {
        if state[g] != 0 {
            return;
        }
        state[g] = 1;
        for dep in policy.aggregates[g].dependencies(&policy.periods) {
            if let Some(d) = policy.aggregates.get_index_of(&dep)
                && policy.aggregates[d].subject == policy.aggregates[g].subject
            {
                visit(d, policy, state, out);
            }
        }
        state[g] = 2;
        out.push(g);
    }
    for &g in mine {
        visit(g, policy, &mut state, &mut out);
    }
    out
}

/// A period's dates for one subject (clipped at `--as-of`), its bounds from aggregates
/// already resolved to local aggregate indexes (as [`subject_span`] with `clip`).
fn span_of(
    pv: &PeriodValue,
    (start_agg, end_agg): (Option<usize>, Option<usize>),
    values: &[AggValue],
    as_of: NaiveDate,
) -> Span {
    let bound = |agg: Option<usize>, fixed: Option<NaiveDate>| -> Option<NaiveDate> {
        if !pv.per_subject {
            return fixed;
        }
        match agg {
            Some(l) => match &values[l] {
                AggValue::Scalar(Scalar::Date(d)) => Some(*d),
                AggValue::Scalar(Scalar::DateTime(d)) => Some(d.date()),
                _ => None,
            },
            None => fixed,
        }
    };
    let (s, e) = (bound(start_agg, pv.start)?, bound(end_agg, pv.end)?);
    let e = e.min(as_of);
    pv.clamp(s, e)
}

/// A period's dates for one subject. With `clip`, the end is not after `--as-of`.
fn subject_span(
    policy: &PolicySet,
    pv: &PeriodValue,
    i: usize,
    values: &[AggValue],
    agg_index: &dyn Fn(&str) -> Option<usize>,
    as_of: NaiveDate,
    clip: bool,
) -> Span {
    let (start, end) = subject_bounds(policy, pv, i, values, agg_index);
    let (s, e) = (start?, end?);
    let e = if clip { e.min(as_of) } else { e };
    pv.clamp(s, e)
}

fn subject_bounds(
    policy: &PolicySet,
    pv: &PeriodValue,
    i: usize,
    values: &[AggValue],
    agg_index: &dyn Fn(&str) -> Option<usize>,
) -> (Option<NaiveDate>, Option<NaiveDate>) {
    if !pv.per_subject {
        return (pv.start, pv.end);
    }
    let p = &policy.periods[i];
    let b = |bound: &Bound, fixed: Option<NaiveDate>| -> Option<NaiveDate> {
        match bound {
            Bound::Ref(ValueRef::Agg(a)) => match agg_index(a).map(|l| &values[l]) {
                Some(AggValue::Scalar(Scalar::Date(d))) => Some(*d),
                Some(AggValue::Scalar(Scalar::DateTime(d))) => Some(d.date()),
                _ => None,
            },
            _ => fixed,
        }
    };
    (b(&p.start, pv.start), b(&p.end, pv.end))
}

impl<'a> Run<'a> {
    /// Lines for the terminal summary: directives not in force in this run (with their
    /// days), what the grades cover, and a calendar that does not cover the run's year.
    pub fn scope_notes(&self) -> Vec<String> {
        let d = |x: Option<NaiveDate>| x.map_or("…".to_string(), date_text);
        let mut out = Vec::new();
        for w in self.directives.iter().filter(|w| !w.in_force) {
            out.push(format!(
                "not in force in this run: {} ({} to {}), no findings",
                w.key,
                d(w.from),
                d(w.until)
            ));
        }
        if let Some((s, e)) = self.grading_span {
            let graded: Vec<&str> = self
                .directives
                .iter()
                .filter(|w| w.graded)
                .map(|w| w.key.as_str())
                .collect();
            out.push(format!(
                "grades assess {} to {}: {}",
                date_text(s),
                date_text(e),
                if graded.is_empty() {
                    "no directive".to_string()
                } else {
                    graded.join(", ")
                }
            ));
        }
        if let Some(note) = self.calendar_note() {
            out.push(note);
        }
        out
    }

    /// A warning when the run's year is outside the years the working calendar lists.
    pub fn calendar_note(&self) -> Option<String> {
        let c = &self.policy.calendar;
        if c.years.is_empty() || c.covers(self.as_of.year()) {
            return None;
        }
        Some(format!(
            "warning: the working calendar ({}) lists holidays for {:?} only; in {} only weekends are rest days",
            c.file,
            c.years,
            self.as_of.year()
        ))
    }

    /// Whether the findings of `directive` enter grades.
    pub fn graded(&self, directive: &str) -> bool {
        self.directives
            .iter()
            .find(|w| w.key == directive)
            .is_none_or(|w| w.graded)
    }

    /// The row of subject `id` of `kind` in its table.
    pub fn subject_row(&self, kind: &str, id: &str) -> Option<usize> {
        let k = self.kinds.get(kind)?;
        let sym = self.data.ids.get(id)?;
        self.data.tables[k.table_name.as_str()]
            .key_index
            .get(&sym)
            .map(|r| *r as usize)
    }

    /// Subject rows of `kind` in id order.
    pub fn subjects(&self, kind: &str) -> Vec<usize> {
        self.kinds
            .get(kind)
            .map(|k| k.order.iter().map(|r| *r as usize).collect())
            .unwrap_or_default()
    }

    /// A scope with the parameters, `as_of`, `subject_id`, the subject's columns and all its
    /// aggregates (for grading and reports).
    pub fn subject_scope(&self, kind: &str, s: usize) -> Scope<'static> {
        self.subject_scope_with(kind, s, &|_| true)
    }

    /// [`Run::subject_scope`] with only the columns and aggregates `wanted` names (for
    /// expressions whose identifiers are known).
    pub fn subject_scope_with(
        &self,
        kind: &str,
        s: usize,
        wanted: &(dyn Fn(&str) -> bool + Sync),
    ) -> Scope<'static> {
        let mut scope = self.base.clone();
        self.push_subject(&mut scope, kind, s, wanted);
        scope
    }

    /// The scope every subject's starts from: `as_of` and the parameters.
    pub fn base_scope(&self) -> Scope<'static> {
        self.base.clone()
    }

    /// Push `subject_id` and the subject's columns and aggregates that `wanted` names onto
    /// `scope`.
    pub fn push_subject(
        &self,
        scope: &mut Scope<'static>,
        kind: &str,
        s: usize,
        wanted: &(dyn Fn(&str) -> bool + Sync),
    ) {
        let Some(k) = self.kinds.get(kind).filter(|k| k.holds(s)) else {
            return;
        };
        let table = self.vals.table(k.table_idx);
        let ts = &self.policy.schema.tables[k.table_name.as_str()];
        for (ci, c) in ts.columns.iter().enumerate() {
            if !wanted(&c.name) {
                continue;
            }
            scope.push_dynamic(
                c.name.clone(),
                self.vals
                    .to_dynamic(&Values::cell(table, k.table_idx, ci, s)),
            );
        }
        if let Some(key) = ts.key {
            scope.push_dynamic(
                "subject_id",
                self.vals
                    .to_dynamic(&Values::cell(table, k.table_idx, key, s)),
            );
        }
        let values = k.subject_values(s);
        for (g, l) in &k.local {
            if !wanted(&self.policy.aggregates[*g].name) {
                continue;
            }
            scope.push_dynamic(
                self.policy.aggregates[*g].name.clone(),
                self.agg_dynamic(&values[*l], k, *l),
            );
        }
    }

    /// The number aggregate `name` gives subject row `s` of `kind` (`None`: not a number, or
    /// not one of the run's subjects).
    pub fn agg_number(&self, kind: &str, s: usize, name: &str) -> Option<f64> {
        let k = self.kinds.get(kind).filter(|k| k.holds(s))?;
        let g = self.policy.aggregates.get_index_of(name)?;
        let l = *k.local.get(&g)?;
        match k.subject_values(s)[l].scalar() {
            Scalar::Num(x) => Some(x),
            Scalar::Int(i) => Some(i as f64),
            _ => None,
        }
    }

    /// Evaluate a compiled expression in a scope (grading).
    pub fn eval_in(
        &self,
        e: &Expr,
        scope: &mut Scope<'static>,
    ) -> std::result::Result<Dynamic, String> {
        self.eval(e, scope)
    }

    /// The text of a cell of a subject's table (`name`, `branch_id` …).
    pub fn cell_text(&self, table: &str, row: usize, column: &str) -> Option<String> {
        let tidx = self.policy.schema.tables.get_index_of(table)?;
        let ci = self.policy.schema.tables[table].column(column)?;
        let t = self.vals.table(tidx);
        if row >= t.len() {
            return None;
        }
        let v = Values::cell(t, tidx, ci, row);
        match &v {
            Scalar::None => None,
            Scalar::Date(d) => Some(date_text(*d)),
            Scalar::Num(x) => Some(script::format_number(*x)),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            other => self.vals.text(other).map(|t| t.to_string()),
        }
    }

    /// All findings, in order.
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::with_capacity(self.finding_count());
        let _ = self.for_each_finding(|f| {
            out.push(f);
            Ok(())
        });
        out
    }

    fn period_of(
        &self,
        pr: &PreparedRule,
        kind: &KindState,
        s: usize,
    ) -> Option<(Option<NaiveDate>, Option<NaiveDate>)> {
        let pv = &self.periods[pr.period?];
        if !pv.per_subject {
            return Some((pv.start, pv.end));
        }
        // As `subject_bounds` finds them, with the aggregates looked up beforehand.
        let values = kind.subject_values(s);
        let bound = |b: BoundSource, fixed: Option<NaiveDate>| match b {
            BoundSource::Fixed => fixed,
            BoundSource::Agg(l) => match l.map(|l| &values[l]) {
                Some(AggValue::Scalar(Scalar::Date(d))) => Some(*d),
                Some(AggValue::Scalar(Scalar::DateTime(d))) => Some(d.date()),
                _ => None,
            },
        };
        let start = bound(pr.bounds[0], pv.start);
        let end = bound(pr.bounds[1], pv.end);
        Some((
            start.map(|s| pv.not_before.map_or(s, |nb| s.max(nb))),
            end.map(|e| pv.not_after.map_or(e, |na| e.min(na))),
        ))
    }

    /// Push the variables a rule reads for subject `s` into `scope`.
    fn push_vars(&self, pr: &PreparedRule, kind: &KindState, s: usize, scope: &mut Scope<'static>) {
        let subject_table = self.vals.table(kind.table_idx);
        let subject_id = self.subject_key(kind, s);
        let period = self.period_of(pr, kind, s);
        let values = kind.subject_values(s);
        for (name, src) in &pr.vars {
            let v = match src {
                VarSource::SubjectId => Dynamic::from(rhai::ImmutableString::from(subject_id)),
                VarSource::SubjectCol(c) => {
                    self.vals
                        .to_dynamic(&Values::cell(subject_table, kind.table_idx, *c, s))
                }
                VarSource::Agg(l) => self.agg_dynamic(&values[*l], kind, *l),
                VarSource::PeriodStart => period.and_then(|p| p.0).map_or(Dynamic::UNIT, |d| {
                    Dynamic::from(rhai::ImmutableString::from(date_text(d)))
                }),
                VarSource::PeriodEnd => period.and_then(|p| p.1).map_or(Dynamic::UNIT, |d| {
                    Dynamic::from(rhai::ImmutableString::from(date_text(d)))
                }),
            };
            scope.push_dynamic(name.clone(), v);
        }
    }

    /// The status of every finding (for reports), from one pass over the rules.
    pub fn outcomes(&self) -> Result<Outcomes> {
        let mut outcomes = Outcomes::default();
        self.stream(
            None,
            &mut crate::findings::Summary::default(),
            Some(&mut outcomes),
            |_, _| Ok(()),
        )?;
        Ok(outcomes)
    }

    /// The findings of one subject (rules of its kind, in run order), as a full run gives
    /// them.
    pub fn subject_findings(&self, kind: &str, row: usize) -> Vec<Finding> {
        let Some(k) = self.kinds.get(kind).filter(|k| k.holds(row)) else {
            return Vec::new();
        };
        let base = self.base_values();
        let mut w = self.worker();
        self.rules
            .iter()
            .filter(|pr| *pr.kind == *kind)
            .map(|pr| {
                self.evaluate(pr, k, row, &base, &mut w);
                self.finding(pr, k, row, &base, &mut w)
            })
            .collect()
    }

    /// The finding of rule `rule` (index in [`Run::rules`]) for the subject in row `row`.
    pub fn rule_finding(&self, rule: usize, row: usize) -> Option<Finding> {
        let pr = self.rules.get(rule)?;
        let k = self.kinds.get(&*pr.kind).filter(|k| k.holds(row))?;
        Some(self.eval_rule(pr, k, row))
    }

    /// Evaluate one rule on one subject (for `explain`).
    fn eval_rule(&self, pr: &PreparedRule<'a>, kind: &KindState, s: usize) -> Finding {
        let base = self.base_values();
        let mut w = self.worker();
        self.evaluate(pr, kind, s, &base, &mut w);
        self.finding(pr, kind, s, &base, &mut w)
    }

    fn agg_dynamic(&self, v: &AggValue, kind: &KindState, l: usize) -> Dynamic {
        match v {
            AggValue::Unit => Dynamic::UNIT,
            AggValue::Scalar(s) => self.vals.to_dynamic(s),
            AggValue::Days(d) => Dynamic::from_array(
                d.iter()
                    .map(|d| Dynamic::from(rhai::ImmutableString::from(date_text(*d))))
                    .collect(),
            ),
            AggValue::Rows(rows) => {
                let g = *kind.local.get_index(l).map(|(g, _)| g).unwrap_or(&0);
                let a = &self.policy.aggregates[g];
                let tidx = self
                    .policy
                    .schema
                    .tables
                    .get_index_of(&a.table)
                    .unwrap_or(0);
                let ts = &self.policy.schema.tables[a.table.as_str()];
                let t = self.vals.table(tidx);
                Dynamic::from_array(
                    rows.iter()
                        .map(|&r| {
                            let mut m = rhai::Map::new();
                            for (ci, c) in ts.columns.iter().enumerate() {
                                m.insert(
                                    c.name.as_str().into(),
                                    self.vals.to_dynamic(&Values::cell(t, tidx, ci, r as usize)),
                                );
                            }
                            m.insert("_line".into(), Dynamic::from(t.lines[r as usize] as i64));
                            Dynamic::from_map(m)
                        })
                        .collect(),
                )
            }
        }
    }

    fn eval(&self, e: &Expr, scope: &mut Scope<'static>) -> std::result::Result<Dynamic, String> {
        script::start_clock();
        self.policy
            .engine
            .eval_ast_with_scope::<Dynamic>(scope, &e.ast)
            .map_err(|err| format!("`{}`: {}", e.src.trim(), script::describe_error(&err)))
    }
}
