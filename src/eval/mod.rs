//! Evaluation: picks the rule versions and parameter values in force on `--as-of`, computes
//! every declared aggregate natively per subject (in parallel), then runs each rule's small
//! Rhai predicates per subject and streams findings in a deterministic order
//! (directive, rule, subject id).

pub(crate) mod aggregate;
mod error;
pub mod explain;
pub mod focus;
mod native;
mod packed;
mod prepare;
mod reuse;
mod rules;
pub mod value;
mod waivers;

pub use error::{EmitError, Error};
pub use prepare::{find_subject, prepare, prepare_against, prepare_subject};
pub use rules::Outcomes;
pub use waivers::Waiver;

use crate::data::Dataset;
use crate::findings::{Finding, SourceRef};
use crate::policy::{Bound, Expr, PolicySet, Rule, ValueRef};
use crate::script;
use aggregate::{AggValue, Groups, Prepared, Span};
use chrono::{Datelike, NaiveDate};
use indexmap::IndexMap;
use rhai::{Dynamic, Scope};
use std::sync::Arc;
use value::{Scalar, Values};

/// A parameter's value on the evaluation date.
#[derive(Debug, Clone)]
pub struct ParamValue {
    /// The first day of the dated entry in force (`None`: no entry is in force yet).
    pub from: Option<NaiveDate>,
    /// The value (an empty string when no entry is in force).
    pub value: toml::Value,
}

/// A period as resolved for the run (`None` bounds depend on the subject).
#[derive(Debug, Clone)]
pub struct PeriodValue {
    /// The period's name.
    pub name: String,
    /// How reports name it.
    pub label: String,
    /// First day, when the same for every subject.
    pub start: Option<NaiveDate>,
    /// Last day, when the same for every subject.
    pub end: Option<NaiveDate>,
    /// Some bound comes from an aggregate, so the dates differ per subject.
    pub per_subject: bool,
    /// The period starts no earlier and ends no later than these (for every subject).
    pub not_before: Option<NaiveDate>,
    /// See `not_before`.
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
    /// The directive's key.
    pub key: String,
    /// Its title.
    pub title: String,
    /// First day in force (`None`: from the start).
    pub from: Option<NaiveDate>,
    /// Last day in force, with `$param` ends resolved (`None`: open-ended).
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
    order: Arc<Vec<u32>>,
    /// Global aggregate index → local index, for this kind's aggregates.
    local: IndexMap<usize, usize>,
    /// Each held subject's aggregates, by local index (shared with the base run of a `diff`
    /// when [`Self::agg_key`] is the same there).
    values: Arc<packed::AggValues>,
    /// The rows each aggregate recorded as evidence used, per subject and slot.
    lineage: Arc<Lineage>,
    /// Everything the values and lineage depend on besides the data ([`reuse`]).
    agg_key: String,
    lineage_slot: Vec<Option<usize>>,
    /// The key column and the `name` column of the subject table.
    key_col: usize,
    name_col: Option<usize>,
    /// Prepared aggregates, and in a run for one subject their row groups, by local index
    /// (kept for `explain`; a run for every subject drops its groups once the aggregates
    /// are computed).
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

    /// Subject `s`'s aggregate with local index `l`.
    #[inline]
    fn value(&self, s: usize, l: usize) -> packed::AggCell<'_> {
        self.values.get(s, l)
    }

    /// All of subject `s`'s aggregates, by local index (for one subject at a time).
    fn subject_values(&self, s: usize) -> Vec<AggValue> {
        debug_assert_eq!(self.values.width(), self.n_local());
        self.values.of(s)
    }
}

/// Subjects per chunk of [`Lineage`] (and of the parallel aggregate pass).
const LINEAGE_CHUNK: usize = 256;

/// The input rows behind the aggregates recorded as evidence: for each subject (held from
/// row `first`) and each of its `n_slots` slots, a list of rows. Kept per chunk of
/// [`LINEAGE_CHUNK`] subjects as bytes, each row as its difference from the row before: at a
/// million members 45 million rows took 0.26 GB as 4-byte rows with an offset per list,
/// and take about 1 byte a row when a subject's rows are near each other in the file.
struct Lineage {
    first: usize,
    n_slots: usize,
    chunks: Vec<LineageChunk>,
}

/// [`Lineage`] of one chunk of subjects: subject `k`'s lists begin at `bytes[starts[k]]`,
/// one after the other in slot order, each as its length and then its rows, the first as
/// it is and each other as the difference from the one before, as zigzag LEB128 varints.
#[derive(Debug, Clone)]
struct LineageChunk {
    starts: Vec<usize>,
    bytes: Vec<u8>,
}

impl Default for LineageChunk {
    fn default() -> Self {
        LineageChunk {
            starts: vec![0],
            bytes: Vec::new(),
        }
    }
}

/// Append `x` as an unsigned LEB128 varint (7 bits a byte, low bits first).
fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// The varint at `bytes[*at..]`, moving `at` past it (0 past the end: lists are only read
/// as they were written).
fn get_varint(bytes: &[u8], at: &mut usize) -> u64 {
    // Most rows are a byte from the row before.
    if let Some(&b) = bytes.get(*at)
        && b < 0x80
    {
        *at += 1;
        return u64::from(b);
    }
    let mut x = 0u64;
    let mut shift = 0;
    while let Some(&b) = bytes.get(*at) {
        *at += 1;
        x |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b < 0x80 || shift >= 64 {
            break;
        }
    }
    x
}

impl LineageChunk {
    /// Append the current subject's next list.
    fn push(&mut self, rows: &[u32]) {
        put_varint(&mut self.bytes, rows.len() as u64);
        let mut prev = 0i64;
        for &r in rows {
            let d = i64::from(r) - prev;
            put_varint(&mut self.bytes, ((d << 1) ^ (d >> 63)) as u64);
            prev = i64::from(r);
        }
    }

    /// The current subject's lists are all pushed.
    fn end_subject(&mut self) {
        self.starts.push(self.bytes.len());
    }

    /// The rows of list `slot` of subject `k` of the chunk.
    fn rows(&self, k: usize, slot: usize) -> impl Iterator<Item = u32> + '_ {
        let bytes = &self.bytes[self.starts[k]..self.starts[k + 1]];
        let mut at = 0;
        for _ in 0..slot {
            // Past the list: its length, then that many varints (each ends with a byte
            // below 0x80).
            let len = get_varint(bytes, &mut at) as usize;
            if len > 0 {
                at = bytes[at.min(bytes.len())..]
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b < 0x80)
                    .nth(len - 1)
                    .map_or(bytes.len(), |(i, _)| at + i + 1);
            }
        }
        let len = get_varint(bytes, &mut at);
        let mut prev = 0i64;
        (0..len).map(move |_| {
            let z = get_varint(bytes, &mut at);
            prev += (z >> 1) as i64 ^ -((z & 1) as i64);
            prev as u32
        })
    }
}

impl Lineage {
    /// The rows of subject `s`'s slot `slot` (the subject must be held).
    fn get(&self, s: usize, slot: usize) -> impl Iterator<Item = u32> + '_ {
        let i = s - self.first;
        debug_assert!(slot < self.n_slots);
        self.chunks[i / LINEAGE_CHUNK].rows(i % LINEAGE_CHUNK, slot)
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
    /// The policy set.
    pub policy: &'a PolicySet,
    /// The dataset.
    pub data: &'a Dataset,
    /// The evaluation date.
    pub as_of: NaiveDate,
    /// Each parameter's value on `as_of`.
    pub params: IndexMap<String, ParamValue>,
    /// Each period as resolved for the run, in declaration order.
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

fn date_text(d: NaiveDate) -> String {
    crate::dates::date_text(d)
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
            .row_of(sym)
            .map(|r| r as usize)
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
        for (g, l) in &k.local {
            if !wanted(&self.policy.aggregates[*g].name) {
                continue;
            }
            scope.push_dynamic(
                self.policy.aggregates[*g].name.clone(),
                self.agg_dynamic(&k.value(s, *l), k, *l),
            );
        }
    }

    /// The number aggregate `name` gives subject row `s` of `kind` (`None`: not a number, or
    /// not one of the run's subjects).
    pub fn agg_number(&self, kind: &str, s: usize, name: &str) -> Option<f64> {
        let k = self.kinds.get(kind).filter(|k| k.holds(s))?;
        let g = self.policy.aggregates.get_index_of(name)?;
        let l = *k.local.get(&g)?;
        match k.value(s, l).scalar() {
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
        let bound = |b: BoundSource, fixed: Option<NaiveDate>| match b {
            BoundSource::Fixed => fixed,
            BoundSource::Agg(l) => match l.map(|l| kind.value(s, l)).as_deref() {
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
        for (name, src) in &pr.vars {
            let v = match src {
                VarSource::SubjectId => Dynamic::from(rhai::ImmutableString::from(subject_id)),
                VarSource::SubjectCol(c) => {
                    self.vals
                        .to_dynamic(&Values::cell(subject_table, kind.table_idx, *c, s))
                }
                VarSource::Agg(l) => self.agg_dynamic(&kind.value(s, *l), kind, *l),
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
    pub fn outcomes(&self) -> Result<Outcomes, Error> {
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

    /// The findings whose status differs between `base` and this run, both made on the same
    /// dataset: each run is streamed keeping one status byte per finding ([`Outcomes`]), then
    /// only the findings that changed are made, as (base's, this run's); a rule in force on one
    /// side only changes all its findings. Also the number of this run's findings. `None`
    /// when the runs are on different datasets (their subject rows need not match).
    ///
    /// A rule whose statuses cannot differ (see `eval::reuse`: this run prepared with
    /// [`prepare_against`] `base`, and nothing the rule reads changed) is not evaluated.
    #[allow(clippy::type_complexity)]
    pub fn changed_findings(
        &self,
        base: &Run,
    ) -> Result<Option<(Vec<Finding>, Vec<Finding>, usize)>, Error> {
        if !std::ptr::eq(self.data, base.data) {
            return Ok(None);
        }
        let pairs = self.rule_pairs(base);
        let mut wanted = vec![false; self.rules.len()];
        let mut wanted_base = vec![false; base.rules.len()];
        for (ri, p) in pairs.iter().enumerate() {
            if let Some((bi, true)) = *p {
                wanted[ri] = true;
                wanted_base[bi] = true;
            }
        }
        let outcomes = |run: &Run, wanted: &[bool]| -> Result<Outcomes, Error> {
            let mut o = Outcomes::default();
            run.stream_rules(
                None,
                &mut crate::findings::Summary::default(),
                Some(&mut o),
                Some(wanted),
                |_, _| Ok(()),
            )?;
            Ok(o)
        };
        let (ob, on) = (outcomes(base, &wanted_base)?, outcomes(self, &wanted)?);
        let rows = |run: &Run, pr: &PreparedRule| -> Vec<usize> {
            run.kinds
                .get(&*pr.kind)
                .map(|k| k.order.iter().map(|&r| r as usize).collect())
                .unwrap_or_default()
        };
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let mut matched = vec![false; base.rules.len()];
        let mut count = 0;
        for (ri, pr) in self.rules.iter().enumerate() {
            count += self.kinds.get(&*pr.kind).map_or(0, |k| k.order.len());
            match pairs[ri] {
                Some((bi, compare)) => {
                    matched[bi] = true;
                    if !compare {
                        continue;
                    }
                    for row in rows(self, pr) {
                        if on.status(ri, row) != ob.status(bi, row) {
                            before.extend(base.rule_finding(bi, row));
                            after.extend(self.rule_finding(ri, row));
                        }
                    }
                }
                None => after.extend(
                    rows(self, pr)
                        .into_iter()
                        .filter_map(|r| self.rule_finding(ri, r)),
                ),
            }
        }
        for (bi, pr) in base
            .rules
            .iter()
            .enumerate()
            .filter(|(bi, _)| !matched[*bi])
        {
            before.extend(
                rows(base, pr)
                    .into_iter()
                    .filter_map(|r| base.rule_finding(bi, r)),
            );
        }
        Ok(Some((before, after, count)))
    }

    /// For each of this run's rules, the same rule's index in `base` (directive, id and kind
    /// alike), if it has it, and whether their statuses must be compared: not when they
    /// cannot differ ([`reuse`]).
    fn rule_pairs(&self, base: &Run) -> Vec<Option<(usize, bool)>> {
        let key = |pr: &'_ PreparedRule| -> (String, String, String) {
            (
                pr.directive.to_string(),
                pr.id.to_string(),
                pr.kind.to_string(),
            )
        };
        let base_rules: std::collections::HashMap<(String, String, String), usize> = base
            .rules
            .iter()
            .enumerate()
            .map(|(i, pr)| (key(pr), i))
            .collect();
        let same_waivers = std::ptr::eq(self.data, base.data) && self.waivers == base.waivers;
        self.rules
            .iter()
            .map(|pr| {
                let bi = *base_rules.get(&key(pr))?;
                let bp = &base.rules[bi];
                let same = same_waivers
                    && match (self.kinds.get(&*pr.kind), base.kinds.get(&*bp.kind)) {
                        (Some(a), Some(b)) => reuse::same_kind(a, b),
                        _ => false,
                    }
                    && reuse::statuses_key(self, pr) == reuse::statuses_key(base, bp);
                Some((bi, !same))
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
                            m.insert(
                                "_line".into(),
                                Dynamic::from(i64::from(t.lines.get(r as usize))),
                            );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists come back as pushed: rows in any order, far apart, empty lists, the largest
    /// row number, subject after subject.
    #[test]
    fn lineage_lists_come_back_as_pushed() {
        let subjects: Vec<Vec<Vec<u32>>> = vec![
            vec![vec![3, 4, 5], vec![], vec![u32::MAX, 0, 7_000_000, 6]],
            vec![vec![], vec![], vec![]],
            vec![vec![9, 2], vec![1_000_000_000], vec![0]],
        ];
        let mut chunk = LineageChunk::default();
        for lists in &subjects {
            for rows in lists {
                chunk.push(rows);
            }
            chunk.end_subject();
        }
        let lineage = Lineage {
            first: 5,
            n_slots: 3,
            chunks: vec![chunk],
        };
        for (k, lists) in subjects.iter().enumerate() {
            for (slot, rows) in lists.iter().enumerate() {
                assert_eq!(&lineage.get(5 + k, slot).collect::<Vec<_>>(), rows);
            }
        }
        // Rows near each other take a byte each.
        let mut near = LineageChunk::default();
        near.push(&(1000..1100).collect::<Vec<_>>());
        near.end_subject();
        assert_eq!(near.bytes.len(), 1 + 2 + 99);
    }
}
