//! Running the rules on every subject: the status, message and evidence of each finding,
//! computed with the native evaluator where it can ([`super::native`]) and with Rhai where it
//! cannot, then counted, encoded straight into output bytes, or turned into [`Finding`]s.
//! How the bytes look is [`crate::findings::encode`]'s business; this module only hands it
//! the values (the evidence through [`EvidenceValues`]).
//!
//! The result is exactly what evaluating every expression with Rhai gives: an expression the
//! native evaluator gives up on is evaluated with Rhai in a scope holding the same variables
//! (`as_of`, parameters, the rule's variables, the `let`s so far), and from then on the rest
//! of that finding is evaluated with Rhai in that scope.

use super::native::{self, Frame, Machine, Node, Slot, V};
use super::packed::AggCell;
use super::value::Scalar;
use super::{AggValue, KindState, PreparedRule, Run, VarSource, Waiver};
use super::{EmitError, Error};
use crate::dates::{DateText, DateTimeText};
use crate::findings::encode::{
    self, EvidenceLayout, EvidenceValue, EvidenceValues, FindingParts, LaidOut, RecordHead,
    Template, json,
};
use crate::findings::{Finding, Format, PeriodRef, Status, Summary};
use crate::policy::{Part, Rule, case_status_name};
use crate::script;
use rayon::prelude::*;
use rhai::{Dynamic, Scope};
use serde_json::ser::Formatter;

/// Subjects evaluated per parallel step; findings come out in subject order.
const BLOCK: usize = 16 * 1024;
const CHUNK: usize = 256;

/// A rule's expressions compiled for the native evaluator (`None`: Rhai evaluates it).
pub(super) struct FastRule<'a> {
    applies: Option<Node>,
    lets: Vec<Option<Node>>,
    whens: Vec<Option<Node>>,
    /// Per case, per message part (`None` for text).
    parts: Vec<Vec<Option<Node>>>,
    /// Per evidence name: where its value is.
    evidence: Vec<EvSlot>,
    /// The evidence object's names and records, for writing it.
    layout: EvidenceLayout<'a>,
    /// Where the input rows of each of the layout's records are.
    records: Vec<Record<'a>>,
}

/// Where an evidence value comes from: the latest of these `let`s already computed, else a
/// variable or parameter, else nothing (`null`).
struct EvSlot {
    lets: Vec<u16>,
    other: Option<Slot>,
}

/// An aggregate whose input rows are listed under `records`: its lineage slot, and the line
/// number of each row of its table.
struct Record<'a> {
    slot: usize,
    lines: &'a crate::data::Lines,
}

impl Record<'_> {
    /// The line numbers of subject row `s`'s input rows.
    fn lines<'x>(&'x self, kind: &'x KindState, s: usize) -> impl Iterator<Item = u32> + 'x {
        kind.lineage
            .get(s, self.slot)
            .map(|row| self.lines.get(row as usize))
    }
}

/// Compile a rule for the native evaluator.
pub(super) fn compile<'a>(
    prog: &native::Program,
    rule: &'a Rule,
    vars: &[(String, VarSource)],
    base_names: &[String],
    policy: &'a crate::policy::PolicySet,
    data: &'a crate::data::Dataset,
    kind: &KindState,
) -> FastRule<'a> {
    // Names resolve as Rhai finds them in the scope: latest first.
    let slot_of = |name: &str, lets_done: usize| -> Option<Slot> {
        if let Some(j) = rule.lets[..lets_done].iter().rposition(|(n, _)| n == name) {
            return Some(Slot::Let(j as u16));
        }
        if let Some(i) = vars.iter().rposition(|(n, _)| n == name) {
            return Some(Slot::Var(i as u16));
        }
        base_names
            .iter()
            .rposition(|n| n == name)
            .map(|i| Slot::Base(i as u16))
    };
    let at = |lets_done: usize, e: &crate::policy::Expr| -> Option<Node> {
        prog.compile(&e.ast, &|n| slot_of(n, lets_done))
    };
    let n_lets = rule.lets.len();
    let applies = rule.applies.as_ref().and_then(|e| at(0, e));
    let lets = rule
        .lets
        .iter()
        .enumerate()
        .map(|(j, (_, e))| at(j, e))
        .collect();
    let whens = rule
        .cases
        .iter()
        .map(|c| c.when.as_ref().and_then(|w| at(n_lets, w)))
        .collect();
    let parts = rule
        .cases
        .iter()
        .map(|c| {
            c.message
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text(_) => None,
                    Part::Expr(e) => at(n_lets, e),
                })
                .collect()
        })
        .collect();
    let evidence = rule
        .evidence
        .iter()
        .map(|name| EvSlot {
            lets: (0..n_lets)
                .rev()
                .filter(|&j| rule.lets[j].0 == *name)
                .map(|j| j as u16)
                .collect(),
            other: slot_of(name, 0),
        })
        .collect();
    let (heads, records): (Vec<RecordHead>, Vec<Record>) = rule
        .evidence
        .iter()
        .filter_map(|name| {
            let g = policy.aggregates.get_index_of(name)?;
            let l = *kind.local.get(&g)?;
            let slot = kind.lineage_slot[l]?;
            let a = &policy.aggregates[g];
            let table = &data.tables[a.table.as_str()];
            let head = RecordHead {
                name: name.as_str(),
                table: a.table.as_str(),
                file: table.file.as_str(),
            };
            Some((
                head,
                Record {
                    slot,
                    lines: &table.lines,
                },
            ))
        })
        .unzip();
    FastRule {
        applies,
        lets,
        whens,
        parts,
        evidence,
        layout: EvidenceLayout::new(&rule.evidence, heads),
        records,
    }
}

/// The entries of a scope in order (`Scope::iter_raw` gives them last first).
pub(super) fn base_entries<'s>(scope: &'s Scope<'static>) -> Vec<(&'s str, bool, &'s Dynamic)> {
    let mut v: Vec<_> = scope.iter_raw().collect();
    v.reverse();
    v
}

/// The evaluation state of one thread.
pub(super) struct Worker<'r> {
    vars: Vec<V<'r>>,
    lets: Vec<V<'r>>,
    machine: Machine<'r>,
    /// The Rhai scope, used from the first expression the native evaluator leaves to Rhai.
    scope: Scope<'static>,
    rhai: bool,
    /// Evaluate every expression with Rhai (to check the native evaluator against it).
    rhai_only: bool,
    /// The period's dates for the subject.
    period: Option<(Option<chrono::NaiveDate>, Option<chrono::NaiveDate>)>,
    status: Status,
    message: String,
    /// The evidence, when it is not written straight from the values.
    map: Option<serde_json::Map<String, serde_json::Value>>,
    scratch: Vec<u8>,
    /// The current subject's [`memo_key`].
    key: Vec<u8>,
}

/// Findings of consecutive subjects: encoded, counted, and the rows of those that fail.
struct Chunk {
    out: Vec<u8>,
    n: u64,
    counts: [u64; 6],
    fails: Vec<u32>,
    /// Each subject's status, in subject order (only when [`Outcomes`] are collected).
    statuses: Vec<Status>,
}

/// What one rule gave for inputs already seen on this thread: a rule's status, message and
/// `let` values are a function of its variables, its period and the parameters alone when the
/// native evaluator decides it (no Rhai, no aggregate rows as values), and many subjects share
/// those (the same hours, the same dates, the same employment). [`Run::stream`] keeps one memo
/// per rayon thread, so the results cannot depend on how subjects are split among threads.
#[derive(Default)]
pub(super) struct Memo<'r> {
    /// The rule the entries are for (index in [`Run::rules`]); another one empties the memo.
    rule: usize,
    /// Subjects looked up and found, for the current rule: a rule whose inputs rarely repeat
    /// (one that reads the subject's id, say) stops being looked up.
    tries: u32,
    hits: u32,
    /// The key's bytes ([`memo_key`]) to status, message and `let` values.
    map: std::collections::HashMap<Box<[u8]>, Remembered<'r>, rustc_hash::FxBuildHasher>,
}

/// A rule's result for one set of inputs.
struct Remembered<'r> {
    status: Status,
    message: Box<str>,
    lets: Box<[V<'r>]>,
}

/// Entries at most in one thread's [`Memo`] (then it starts again empty).
const MEMO_MAX: usize = 1 << 16;
/// Lookups after which a rule whose inputs repeat less than one time in four stops being
/// remembered.
const MEMO_PROBE: u32 = 4096;

/// The bytes that tell one rule's inputs apart: its period and the values of its variables,
/// each with its type. `None` when a value is aggregate rows or another Rhai value, which
/// are not kept by value.
fn memo_key(
    period: Option<(Option<chrono::NaiveDate>, Option<chrono::NaiveDate>)>,
    vars: &[V],
    out: &mut Vec<u8>,
) -> Option<()> {
    use chrono::Datelike;
    let date = |d: Option<chrono::NaiveDate>, out: &mut Vec<u8>| match d {
        None => out.push(0),
        Some(d) => {
            out.push(1);
            out.extend(d.num_days_from_ce().to_le_bytes());
        }
    };
    out.clear();
    match period {
        None => out.push(0),
        Some((a, b)) => {
            out.push(1);
            date(a, out);
            date(b, out);
        }
    }
    let text = |tag: u8, t: &str, out: &mut Vec<u8>| {
        out.push(tag);
        out.extend((t.len() as u64).to_le_bytes());
        out.extend(t.as_bytes());
    };
    for v in vars {
        match v {
            V::Unit => out.push(0),
            V::Bool(b) => out.extend([1, u8::from(*b)]),
            V::Int(i) => {
                out.push(2);
                out.extend(i.to_le_bytes());
            }
            V::Float(x) => {
                out.push(3);
                out.extend(x.to_bits().to_le_bytes());
            }
            V::Str(t) => text(4, t, out),
            V::Own(t) => text(5, t, out),
            V::Date(d) => {
                out.push(6);
                out.extend(d.num_days_from_ce().to_le_bytes());
            }
            V::DateTime(t) => {
                out.push(7);
                out.extend(t.and_utc().timestamp().to_le_bytes());
                out.extend(t.and_utc().timestamp_subsec_nanos().to_le_bytes());
            }
            V::Days(days) => {
                out.push(8);
                out.extend((days.len() as u64).to_le_bytes());
                for d in *days {
                    out.extend(d.num_days_from_ce().to_le_bytes());
                }
            }
            V::Rows(..) | V::Dyn(_) => return None,
        }
    }
    Some(())
}

/// What [`Run::stream`] counts as the chunks of findings arrive, in order.
struct Tally<'r> {
    /// Findings by rule and status.
    counts: Vec<[u64; 6]>,
    /// Subjects a rule fails that no earlier rule of the directive failed.
    newly_failing: Vec<u64>,
    /// Subjects of each rule received so far.
    done: Vec<usize>,
    /// Subjects already failing each (directive, kind).
    failing: std::collections::HashMap<(&'r str, &'r str), Vec<bool>>,
}

impl<'r> Tally<'r> {
    /// Count rule `ri`'s next chunks, keep their statuses in `outcomes`, and return their
    /// buffers to `pool`.
    fn absorb(
        &mut self,
        run: &'r Run,
        ri: usize,
        chunks: Vec<Chunk>,
        mut outcomes: Option<&mut Outcomes>,
        pool: &std::sync::Mutex<Vec<Vec<u8>>>,
    ) {
        let pr = &run.rules[ri];
        let kind = run.kinds.get(&*pr.kind);
        let n = kind.map_or(0, |k| k.n);
        let failed = self
            .failing
            .entry((&*pr.directive, &*pr.kind))
            .or_insert_with(|| vec![false; n]);
        // A rule's subjects come in blocks, in order: this block starts where the rule's
        // previous blocks ended.
        let order = kind.map(|k| &k.order[..]).unwrap_or_default();
        for mut c in chunks {
            if let Some(o) = outcomes.as_deref_mut() {
                let at = self.done[ri];
                let row = &mut o.statuses[ri];
                for (&s, st) in order[at..].iter().zip(&c.statuses) {
                    row[s as usize] = *st;
                }
            }
            self.done[ri] += c.n as usize;
            if c.out.capacity() > 0 {
                c.out.clear();
                if let Ok(mut p) = pool.lock() {
                    p.push(c.out);
                }
            }
            for (t, c) in self.counts[ri].iter_mut().zip(c.counts) {
                *t += c;
            }
            if let Some(o) = outcomes.as_deref_mut()
                && o.first_fail[ri].is_none()
            {
                o.first_fail[ri] = c.fails.first().copied();
            }
            for s in c.fails {
                if !std::mem::replace(&mut failed[s as usize], true) {
                    self.newly_failing[ri] += 1;
                }
            }
        }
    }
}

/// The status of every finding of a run: one byte per (rule, subject), so that reports can
/// grade and summarise a province without holding its findings. A subject's full findings
/// are made again when a report shows them ([`Run::subject_findings`]).
#[derive(Debug, Default)]
pub struct Outcomes {
    /// `statuses[rule][subject row]`, rules in run order.
    statuses: Vec<Box<[Status]>>,
    /// Number of findings by status (`Status as usize`), per rule.
    counts: Vec<[u64; 6]>,
    /// Per rule, the first subject (in run order) that fails it.
    first_fail: Vec<Option<u32>>,
}

impl Outcomes {
    /// The status of rule `rule` (index in [`Run::rules`]) for the subject in row `row`.
    pub fn status(&self, rule: usize, row: usize) -> Status {
        self.statuses[rule][row]
    }

    /// How many findings have `status`.
    pub fn count(&self, status: Status) -> u64 {
        self.counts.iter().map(|c| c[status as usize]).sum()
    }

    /// How many findings of rule `rule` have `status`.
    pub fn rule_count(&self, rule: usize, status: Status) -> u64 {
        self.counts[rule][status as usize]
    }

    /// The first subject row (in run order) that fails rule `rule`.
    pub fn first_fail(&self, rule: usize) -> Option<usize> {
        self.first_fail[rule].map(|r| r as usize)
    }

    /// How many findings there are.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }
}

/// A value of an expression: native, or from Rhai.
enum Val<'r> {
    Fast(V<'r>),
    Rhai(Dynamic),
}

impl<'a> Run<'a> {
    /// `as_of` and the parameters as native values (the base scope, in order).
    pub(super) fn base_values(&self) -> Vec<V<'_>> {
        base_entries(&self.base)
            .into_iter()
            .enumerate()
            .map(|(i, (_, _, d))| {
                if i == 0 {
                    return V::Str(&self.as_of_text);
                }
                let Some((_, p)) = self.params.get_index(i - 1) else {
                    return V::Dyn(d);
                };
                if p.from.is_none() {
                    return V::Unit;
                }
                match &p.value {
                    toml::Value::String(s) => V::Str(s),
                    toml::Value::Integer(i) => V::Int(*i),
                    toml::Value::Float(f) => V::Float(*f),
                    toml::Value::Boolean(b) => V::Bool(*b),
                    toml::Value::Datetime(d) => V::Own(d.to_string().into()),
                    toml::Value::Array(_) | toml::Value::Table(_) => V::Dyn(d),
                }
            })
            .collect()
    }

    pub(super) fn worker(&self) -> Worker<'_> {
        Worker {
            vars: Vec::new(),
            lets: Vec::new(),
            machine: Machine::default(),
            scope: self.base.clone(),
            rhai: false,
            rhai_only: false,
            period: None,
            status: Status::Error,
            message: String::new(),
            map: None,
            scratch: Vec::new(),
            key: Vec::new(),
        }
    }

    /// Number of findings the run will produce.
    pub fn finding_count(&self) -> usize {
        self.rules
            .iter()
            .map(|r| self.kinds.get(&*r.kind).map_or(0, |k| k.order.len()))
            .sum()
    }

    /// The rules evaluated (versions in force on `as_of`).
    pub fn rules(&self) -> impl Iterator<Item = &'a Rule> + '_ {
        self.rules.iter().map(|r| r.rule)
    }

    /// Evaluate every rule on every subject, calling `emit` with findings in order.
    pub fn for_each_finding(
        &self,
        emit: impl FnMut(Finding) -> Result<(), EmitError>,
    ) -> Result<(), Error> {
        self.for_each_finding_with(false, emit)
    }

    /// [`Run::for_each_finding`]; with `rhai_only`, without the native evaluator.
    pub(super) fn for_each_finding_with(
        &self,
        rhai_only: bool,
        mut emit: impl FnMut(Finding) -> Result<(), EmitError>,
    ) -> Result<(), Error> {
        let base = self.base_values();
        for pr in &self.rules {
            let Some(kind) = self.kinds.get(&*pr.kind) else {
                continue;
            };
            for block in kind.order.chunks(BLOCK) {
                let findings: Vec<Finding> = block
                    .par_chunks(CHUNK)
                    .map_init(
                        || Worker {
                            rhai_only,
                            ..self.worker()
                        },
                        |w, chunk| {
                            chunk
                                .iter()
                                .map(|&s| {
                                    self.evaluate(pr, kind, s as usize, &base, w);
                                    self.finding(pr, kind, s as usize, &base, w)
                                })
                                .collect::<Vec<_>>()
                        },
                    )
                    .flatten()
                    .collect();
                for f in findings {
                    emit(f).map_err(Error::Emit)?;
                }
            }
        }
        Ok(())
    }

    /// Evaluate every rule on every subject: count the findings in `summary` and, with a
    /// format, pass them to `emit` encoded (runs of consecutive findings, with their number),
    /// in order. Evaluation and encoding run in parallel, without building [`Finding`]s, while
    /// the calling thread emits what is ready.
    ///
    /// With `outcomes`, the status of every finding is also kept there.
    pub fn stream(
        &self,
        format: Option<Format>,
        summary: &mut Summary,
        outcomes: Option<&mut Outcomes>,
        emit: impl FnMut(&[&[u8]], u64) -> Result<(), EmitError>,
    ) -> Result<(), Error> {
        self.stream_rules(format, summary, outcomes, None, emit)
    }

    /// [`Run::stream`] of the rules `wanted` (by index in [`Run::rules`]; `None`: all);
    /// the others give no findings, and no statuses in `outcomes`.
    pub(super) fn stream_rules(
        &self,
        format: Option<Format>,
        summary: &mut Summary,
        mut outcomes: Option<&mut Outcomes>,
        wanted: Option<&[bool]>,
        mut emit: impl FnMut(&[&[u8]], u64) -> Result<(), EmitError>,
    ) -> Result<(), Error> {
        let wanted = |ri: usize| wanted.is_none_or(|w| w[ri]);
        let base = self.base_values();
        let keep = outcomes.is_some();
        if let Some(o) = outcomes.as_deref_mut() {
            *o = Outcomes {
                statuses: self
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(ri, pr)| {
                        let n = self.kinds.get(&*pr.kind).map_or(0, |k| k.n);
                        let n = if wanted(ri) { n } else { 0 };
                        vec![Status::NotApplicable; n].into_boxed_slice()
                    })
                    .collect(),
                counts: vec![[0; 6]; self.rules.len()],
                first_fail: vec![None; self.rules.len()],
            };
        }
        // Output buffers go back here once written, to be filled again.
        let pool: std::sync::Mutex<Vec<Vec<u8>>> = Default::default();
        let mut tally = Tally {
            counts: vec![[0u64; 6]; self.rules.len()],
            newly_failing: vec![0u64; self.rules.len()],
            done: vec![0usize; self.rules.len()],
            failing: Default::default(),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Chunk>)>(2);
        // One memo per rayon thread (see `Memo`), and one for work run outside the pool.
        let memos: Vec<std::sync::Mutex<Memo>> = (0..=rayon::current_num_threads())
            .map(|_| Default::default())
            .collect();
        std::thread::scope(|scope| {
            let (base, pool, memos) = (&base, &pool, &memos);
            let producer = scope.spawn(move || {
                for (ri, pr) in self.rules.iter().enumerate() {
                    let Some(kind) = self.kinds.get(&*pr.kind).filter(|_| wanted(ri)) else {
                        continue;
                    };
                    let template = format.and_then(|f| self.template(pr, f));
                    for block in kind.order.chunks(BLOCK) {
                        let chunks: Vec<Chunk> = block
                            .par_chunks(CHUNK)
                            .map_init(
                                || self.worker(),
                                |w, subjects| {
                                    let mut c = Chunk {
                                        out: Vec::new(),
                                        n: subjects.len() as u64,
                                        counts: [0; 6],
                                        fails: Vec::new(),
                                        statuses: Vec::new(),
                                    };
                                    if keep {
                                        c.statuses.reserve(subjects.len());
                                    }
                                    if format.is_some() {
                                        c.out = pool
                                            .lock()
                                            .map(|mut p| p.pop())
                                            .ok()
                                            .flatten()
                                            .unwrap_or_default();
                                        c.out.reserve(subjects.len() * 1536);
                                    }
                                    let thread = rayon::current_thread_index()
                                        .map_or(memos.len() - 1, |t| t.min(memos.len() - 1));
                                    let mut memo = memos[thread].try_lock().ok();
                                    for &s in subjects {
                                        self.evaluate_with(
                                            (pr, ri),
                                            kind,
                                            s as usize,
                                            base,
                                            w,
                                            memo.as_deref_mut(),
                                        );
                                        c.counts[w.status as usize] += 1;
                                        if keep {
                                            c.statuses.push(w.status);
                                        }
                                        if w.status == Status::Fail {
                                            c.fails.push(s);
                                        }
                                        if let Some(format) = format {
                                            self.encode(
                                                (pr, kind),
                                                s as usize,
                                                base,
                                                w,
                                                (format, template.as_ref()),
                                                &mut c.out,
                                            );
                                        }
                                    }
                                    c
                                },
                            )
                            .collect();
                        if tx.send((ri, chunks)).is_err() {
                            return;
                        }
                    }
                }
            });
            let mut result = Ok(());
            for (ri, chunks) in rx.iter() {
                if format.is_some() {
                    let outs: Vec<&[u8]> = chunks.iter().map(|c| &c.out[..]).collect();
                    result = emit(&outs, chunks.iter().map(|c| c.n).sum()).map_err(Error::Emit);
                    if result.is_err() {
                        break;
                    }
                }
                tally.absorb(self, ri, chunks, outcomes.as_deref_mut(), pool);
            }
            // Stops the producer at its next block if we stopped early.
            drop(rx);
            if producer.join().is_err() {
                result = Err(Error::Panicked);
            }
            result
        })?;
        for (ri, pr) in self.rules.iter().enumerate() {
            summary.add_counts(&pr.directive, &tally.counts[ri], tally.newly_failing[ri]);
            if let Some(o) = outcomes.as_deref_mut() {
                o.counts[ri] = tally.counts[ri];
            }
        }
        Ok(())
    }

    /// The bytes every finding of `pr` shares in `format`.
    fn template(&self, pr: &PreparedRule, format: Format) -> Option<Template> {
        Template::new(
            &FindingParts {
                directive: &pr.directive,
                rule: &pr.id,
                rule_version: &pr.version,
                subject_kind: &pr.kind,
                subject_id: "",
                subject_name: None,
                status: Status::Pass,
                severity: pr.rule.severity,
                message: "",
                source: &pr.source,
                period: pr
                    .period
                    .map(|i| (self.periods[i].label.as_str(), None, None)),
                as_of: &self.as_of_text,
                policy_set: &self.policy_name,
                policy_version: &self.policy_version,
                policy_hash: &self.policy_hash,
            },
            format,
        )
    }

    /// The key of subject row `s`.
    pub(super) fn subject_key(&self, kind: &KindState, s: usize) -> &str {
        let table = self.vals.table(kind.table_idx);
        self.vals
            .data_text(&super::value::Values::cell(
                table,
                kind.table_idx,
                kind.key_col,
                s,
            ))
            .unwrap_or("")
    }

    fn subject_name(&self, kind: &KindState, s: usize) -> Option<&str> {
        let c = kind.name_col?;
        let table = self.vals.table(kind.table_idx);
        self.vals
            .data_text(&super::value::Values::cell(table, kind.table_idx, c, s))
    }

    /// A cell or scalar as a native value.
    fn scalar_v<'r>(&'r self, s: &'r Scalar) -> V<'r> {
        match s {
            Scalar::None => V::Unit,
            Scalar::Date(d) => V::Date(*d),
            Scalar::DateTime(d) => V::DateTime(*d),
            Scalar::Bool(b) => V::Bool(*b),
            Scalar::Num(x) => V::Float(*x),
            Scalar::Int(i) => V::Int(*i),
            Scalar::Str(t) => V::Str(t),
            other => self.vals.data_text(other).map_or(V::Unit, V::Str),
        }
    }

    /// A cell (a temporary scalar) as a native value.
    fn cell_v(&self, s: Scalar) -> V<'_> {
        match s {
            Scalar::None => V::Unit,
            Scalar::Date(d) => V::Date(d),
            Scalar::DateTime(d) => V::DateTime(d),
            Scalar::Bool(b) => V::Bool(b),
            Scalar::Num(x) => V::Float(x),
            Scalar::Int(i) => V::Int(i),
            Scalar::Str(t) => V::Own(rhai::ImmutableString::from(&**t)),
            other => self.vals.data_text(&other).map_or(V::Unit, V::Str),
        }
    }

    fn agg_v<'r>(&'r self, v: AggCell<'r>, l: usize) -> V<'r> {
        match v {
            AggCell::Ref(AggValue::Unit) | AggCell::Own(AggValue::Unit) => V::Unit,
            AggCell::Ref(AggValue::Scalar(s)) => self.scalar_v(s),
            AggCell::Own(AggValue::Scalar(s)) => self.cell_v(s),
            AggCell::Ref(AggValue::Days(d)) => V::Days(d),
            AggCell::Ref(AggValue::Rows(r)) => V::Rows(l, r),
            // Lists are only ever lent (`Ref`): what is unpacked (`Own`) is a scalar or unit.
            AggCell::Own(_) => V::Unit,
        }
    }

    /// A native value as Rhai holds it (as `push_vars` would have pushed it).
    fn v_dynamic(&self, v: &V, kind: &KindState) -> Dynamic {
        use rhai::ImmutableString as S;
        match v {
            V::Unit => Dynamic::UNIT,
            V::Bool(b) => Dynamic::from(*b),
            V::Int(i) => Dynamic::from(*i),
            V::Float(x) => Dynamic::from(*x),
            V::Str(s) => Dynamic::from(S::from(*s)),
            V::Own(s) => Dynamic::from(s.clone()),
            V::Date(d) => Dynamic::from(S::from(super::date_text(*d))),
            V::DateTime(d) => Dynamic::from(S::from(crate::dates::datetime_text(*d))),
            V::Days(d) => Dynamic::from_array(
                d.iter()
                    .map(|d| Dynamic::from(S::from(super::date_text(*d))))
                    .collect(),
            ),
            V::Rows(l, rows) => {
                self.agg_dynamic(&AggValue::Rows(Box::new((*rows).into())), kind, *l)
            }
            V::Dyn(d) => (*d).clone(),
        }
    }

    /// Evaluate rule `pr` on subject row `s`; the outcome is left in `w`.
    pub(super) fn evaluate<'r>(
        &'r self,
        pr: &'r PreparedRule<'a>,
        kind: &'r KindState,
        s: usize,
        base: &[V<'r>],
        w: &mut Worker<'r>,
    ) {
        self.evaluate_with((pr, usize::MAX), kind, s, base, w, None);
    }

    /// [`Run::evaluate`], taking the status, message and `let` values from `memo` when rule
    /// `ri` was decided for the same inputs before (see [`Memo`]), and keeping them there.
    fn evaluate_with<'r>(
        &'r self,
        (pr, ri): (&'r PreparedRule<'a>, usize),
        kind: &'r KindState,
        s: usize,
        base: &[V<'r>],
        w: &mut Worker<'r>,
        memo: Option<&mut Memo<'r>>,
    ) {
        let rule = pr.rule;
        w.rhai = false;
        w.map = None;
        w.message.clear();
        w.lets.clear();
        w.vars.clear();
        let period = self.period_of(pr, kind, s);
        w.period = period;
        let table = self.vals.table(kind.table_idx);
        for (_, src) in &pr.vars {
            let v = match src {
                VarSource::SubjectId => V::Str(self.subject_key(kind, s)),
                VarSource::SubjectCol(c) => {
                    self.cell_v(super::value::Values::cell(table, kind.table_idx, *c, s))
                }
                VarSource::Agg(l) => self.agg_v(kind.value(s, *l), *l),
                VarSource::PeriodStart => period.and_then(|p| p.0).map_or(V::Unit, V::Date),
                VarSource::PeriodEnd => period.and_then(|p| p.1).map_or(V::Unit, V::Date),
            };
            w.vars.push(v);
        }
        if w.rhai_only {
            self.enter_rhai(pr, kind, w);
        }
        // Inputs seen before: their result, else remember this one (decided natively only).
        let memo = memo.filter(|_| !w.rhai_only).and_then(|m| {
            if m.rule != ri {
                m.rule = ri;
                m.map.clear();
                (m.tries, m.hits) = (0, 0);
            }
            let worth = m.tries < MEMO_PROBE || m.hits >= m.tries / 4;
            (worth && memo_key(period, &w.vars, &mut w.key).is_some()).then_some(m)
        });
        let decided = match memo {
            Some(m) => {
                m.tries = m.tries.saturating_add(1);
                if let Some(r) = m.map.get(&w.key[..]) {
                    m.hits = m.hits.saturating_add(1);
                    w.message.push_str(&r.message);
                    w.lets.extend(r.lets.iter().cloned());
                    Ok(r.status)
                } else {
                    let d = self.decide(pr, kind, base, w);
                    if let Ok(status) = d
                        && !w.rhai
                    {
                        if m.map.len() >= MEMO_MAX {
                            m.map.clear();
                        }
                        m.map.insert(
                            w.key.as_slice().into(),
                            Remembered {
                                status,
                                message: w.message.as_str().into(),
                                lets: w.lets.as_slice().into(),
                            },
                        );
                    }
                    d
                }
            }
            None => self.decide(pr, kind, base, w),
        };
        match decided {
            Ok(status) => {
                w.status = status;
                if w.rhai {
                    // As the scope holds it.
                    let mut m = serde_json::Map::new();
                    for name in &rule.evidence {
                        let v = w
                            .scope
                            .get(name)
                            .map(script::to_json)
                            .unwrap_or(serde_json::Value::Null);
                        m.insert(name.clone(), v);
                    }
                    self.insert_records(pr, kind, s, &mut m);
                    w.map = Some(m);
                } else if !pr.fast.layout.is_plain() {
                    w.map = Some(self.evidence_map(pr, kind, s, base, w));
                }
            }
            Err(e) => {
                w.status = Status::Error;
                w.message.clear();
                w.message.push_str("规则执行出错：");
                w.message.push_str(&e);
                let mut m = serde_json::Map::new();
                m.insert("error".into(), serde_json::Value::String(e));
                w.map = Some(m);
            }
        }
        if matches!(w.status, Status::Fail | Status::Warn)
            && !self.waivers.is_empty()
            && let Some(wv) = self.waivers.get(self.subject_key(kind, s)).and_then(|ws| {
                ws.iter().find(|w| {
                    w.directive == rule.directive && w.rule.as_deref().is_none_or(|r| r == rule.id)
                })
            })
        {
            self.waive(pr, kind, s, base, w, wv);
        }
    }

    fn waive<'r>(
        &'r self,
        pr: &'r PreparedRule<'a>,
        kind: &'r KindState,
        s: usize,
        base: &[V<'r>],
        w: &mut Worker<'r>,
        wv: &Waiver,
    ) {
        let until = wv.valid_until.as_deref().unwrap_or("长期");
        w.message = format!(
            "已豁免：{}（{}批准，{} 至 {}）。原结果（{}）：{}",
            wv.reason,
            wv.approved_by,
            wv.valid_from,
            until,
            w.status.chinese(),
            w.message
        );
        let mut info = serde_json::to_value(wv).unwrap_or_default();
        info["original_status"] = w.status.name().into();
        let mut m = match w.map.take() {
            Some(m) => m,
            None => self.evidence_map(pr, kind, s, base, w),
        };
        m.insert("waiver".into(), info);
        w.map = Some(m);
        w.status = Status::Waived;
    }

    /// Evaluate one expression: natively when possible, else with Rhai.
    fn value<'r>(
        &'r self,
        pr: &'r PreparedRule<'a>,
        kind: &KindState,
        e: &crate::policy::Expr,
        node: &'r Option<Node>,
        base: &[V<'r>],
        w: &mut Worker<'r>,
    ) -> Result<Val<'r>, String> {
        if !w.rhai {
            if let Some(n) = node {
                let f = Frame {
                    base,
                    vars: &w.vars,
                    lets: &w.lets,
                };
                if let Ok(v) = w.machine.eval(&self.prog, n, &f) {
                    return Ok(Val::Fast(v));
                }
            }
            self.enter_rhai(pr, kind, w);
        }
        self.eval(e, &mut w.scope).map(Val::Rhai)
    }

    /// A condition (`applies`, `when`): natively when its `node` compiled and gives a
    /// boolean, else with Rhai; `what` names it in the error when it is not a boolean.
    fn truth<'r>(
        &'r self,
        (pr, kind): (&'r PreparedRule<'a>, &KindState),
        (e, node): (&crate::policy::Expr, &'r Option<Node>),
        base: &[V<'r>],
        w: &mut Worker<'r>,
        what: &str,
    ) -> Result<bool, String> {
        if !w.rhai
            && let Some(n) = node
        {
            let f = Frame {
                base,
                vars: &w.vars,
                lets: &w.lets,
            };
            if let Ok(V::Bool(b)) = w.machine.eval(&self.prog, n, &f) {
                return Ok(b);
            }
        }
        if !w.rhai {
            self.enter_rhai(pr, kind, w);
        }
        let v = self.eval(e, &mut w.scope)?;
        v.as_bool()
            .map_err(|t| format!("{what} `{}` gave {t} `{v}`, not true/false", e.src.trim()))
    }

    /// From here on evaluate this finding with Rhai: fill the scope as the values stand.
    fn enter_rhai(&self, pr: &PreparedRule, kind: &KindState, w: &mut Worker) {
        w.scope.rewind(self.base.len());
        for ((name, _), v) in pr.vars.iter().zip(&w.vars) {
            w.scope.push_dynamic(name.clone(), self.v_dynamic(v, kind));
        }
        for ((name, _), v) in pr.rule.lets.iter().zip(&w.lets) {
            w.scope.push_dynamic(name.clone(), self.v_dynamic(v, kind));
        }
        w.rhai = true;
    }

    /// Applicability, lets and cases: the status; the message is left in `w.message`.
    fn decide<'r>(
        &'r self,
        pr: &'r PreparedRule<'a>,
        kind: &KindState,
        base: &[V<'r>],
        w: &mut Worker<'r>,
    ) -> Result<Status, String> {
        let rule = pr.rule;
        let fr = &pr.fast;
        if let Some(a) = &rule.applies
            && !self.truth((pr, kind), (a, &fr.applies), base, w, "applies")?
        {
            w.message.push_str(&rule.not_applicable_message);
            return Ok(Status::NotApplicable);
        }
        for (j, (name, e)) in rule.lets.iter().enumerate() {
            match self.value(pr, kind, e, &fr.lets[j], base, w)? {
                Val::Fast(v) => w.lets.push(v),
                Val::Rhai(d) => {
                    w.scope.push_dynamic(name.clone(), d);
                }
            }
        }
        for (ci, c) in rule.cases.iter().enumerate() {
            let holds = match &c.when {
                Some(e) => self.truth((pr, kind), (e, &fr.whens[ci]), base, w, "when")?,
                None => true,
            };
            if holds {
                for (pi, p) in c.message.parts.iter().enumerate() {
                    match p {
                        Part::Text(t) => w.message.push_str(t),
                        Part::Expr(e) => {
                            match self.value(pr, kind, e, &fr.parts[ci][pi], base, w)? {
                                Val::Fast(v) => self.display(&v, kind, &mut w.message),
                                Val::Rhai(d) => w.message.push_str(&script::display(&d)),
                            }
                        }
                    }
                }
                return Ok(match case_status_name(c.status) {
                    "pass" => Status::Pass,
                    "fail" => Status::Fail,
                    "warn" => Status::Warn,
                    _ => Status::NotApplicable,
                });
            }
        }
        Err("no case matched; add a last case without `when`".to_string())
    }

    /// [`script::display`] of a native value.
    fn display(&self, v: &V, kind: &KindState, out: &mut String) {
        use std::fmt::Write;
        match v {
            V::Unit => out.push('无'),
            V::Float(x) => script::push_number(out, *x),
            V::Bool(b) => out.push(if *b { '是' } else { '否' }),
            V::Int(i) => {
                let _ = write!(out, "{i}");
            }
            V::Str(s) => out.push_str(s),
            V::Own(s) => out.push_str(s),
            V::Date(d) => out.push_str(DateText::of(*d).as_str()),
            V::DateTime(d) => out.push_str(DateTimeText::of(*d).as_str()),
            V::Days(days) => {
                for (i, d) in days.iter().enumerate() {
                    if i > 0 {
                        out.push('、');
                    }
                    out.push_str(DateText::of(*d).as_str());
                }
            }
            V::Rows(..) | V::Dyn(_) => out.push_str(&script::display(&self.v_dynamic(v, kind))),
        }
    }

    /// The value of evidence entry `j` (`None`: not in scope).
    fn evidence_value<'x, 'r>(
        &self,
        pr: &PreparedRule,
        j: usize,
        base: &'x [V<'r>],
        w: &'x Worker<'r>,
    ) -> Option<&'x V<'r>> {
        let slot = &pr.fast.evidence[j];
        if let Some(&l) = slot.lets.iter().find(|&&l| (l as usize) < w.lets.len()) {
            return w.lets.get(l as usize);
        }
        match slot.other? {
            Slot::Base(i) => base.get(i as usize),
            Slot::Var(i) => w.vars.get(i as usize),
            Slot::Let(_) | Slot::Local(_) => None,
        }
    }

    /// [`script::to_json`] of a native value.
    fn v_json(&self, v: &V, kind: &KindState) -> serde_json::Value {
        match as_evidence(v) {
            Some(e) => e.to_json(),
            None => script::to_json(&self.v_dynamic(v, kind)),
        }
    }

    /// The evidence object of a finding evaluated natively, as a JSON map.
    fn evidence_map<'r>(
        &'r self,
        pr: &'r PreparedRule<'a>,
        kind: &KindState,
        s: usize,
        base: &[V<'r>],
        w: &Worker<'r>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        for (j, name) in pr.rule.evidence.iter().enumerate() {
            let v = self
                .evidence_value(pr, j, base, w)
                .map_or(serde_json::Value::Null, |v| self.v_json(v, kind));
            m.insert(name.clone(), v);
        }
        self.insert_records(pr, kind, s, &mut m);
        m
    }

    /// Input rows behind the aggregates named in the rule's evidence, under `records`.
    fn insert_records(
        &self,
        pr: &PreparedRule,
        kind: &KindState,
        s: usize,
        m: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        let records = &pr.fast.records;
        if let Some(r) = pr.fast.layout.records_json(|i| records[i].lines(kind, s)) {
            m.insert("records".into(), r);
        }
    }

    /// The finding just evaluated into `w`.
    pub(super) fn finding<'r>(
        &'r self,
        pr: &'r PreparedRule<'a>,
        kind: &'r KindState,
        s: usize,
        base: &[V<'r>],
        w: &mut Worker<'r>,
    ) -> Finding {
        let evidence = match w.map.take() {
            Some(m) => m,
            None => self.evidence_map(pr, kind, s, base, w),
        };
        let period = w.period;
        Finding {
            directive: pr.directive.clone(),
            rule: pr.id.clone(),
            rule_version: pr.version.clone(),
            subject_kind: pr.kind.clone(),
            subject_id: self.subject_key(kind, s).to_string(),
            subject_name: self.subject_name(kind, s).map(str::to_string),
            status: w.status,
            severity: pr.rule.severity,
            message: std::mem::take(&mut w.message),
            evidence,
            source: pr.source.clone(),
            period: pr.period.map(|i| PeriodRef {
                name: self.periods[i].label.as_str().into(),
                start: period.and_then(|p| p.0).map(super::date_text),
                end: period.and_then(|p| p.1).map(super::date_text),
            }),
            as_of: self.as_of_text.clone(),
            policy_set: self.policy_name.clone(),
            policy_version: self.policy_version.clone(),
            policy_hash: self.policy_hash.clone(),
        }
    }

    /// Append the finding of subject `s` just evaluated into `w` to `out`, encoded in
    /// `format` (from the rule's `template` where there is one).
    fn encode<'r>(
        &'r self,
        (pr, kind): (&'r PreparedRule<'a>, &'r KindState),
        s: usize,
        base: &[V<'r>],
        w: &mut Worker<'r>,
        (format, template): (Format, Option<&Template>),
        out: &mut Vec<u8>,
    ) {
        let period = w.period;
        let start = period.and_then(|p| p.0).map(DateText::of);
        let end = period.and_then(|p| p.1).map(DateText::of);
        let parts = FindingParts {
            directive: &pr.directive,
            rule: &pr.id,
            rule_version: &pr.version,
            subject_kind: &pr.kind,
            subject_id: self.subject_key(kind, s),
            subject_name: self.subject_name(kind, s),
            status: w.status,
            severity: pr.rule.severity,
            message: &w.message,
            source: &pr.source,
            period: pr.period.map(|i| {
                (
                    self.periods[i].label.as_str(),
                    start.as_ref().map(|d| d.as_str()),
                    end.as_ref().map(|d| d.as_str()),
                )
            }),
            as_of: &self.as_of_text,
            policy_set: &self.policy_name,
            policy_version: &self.policy_version,
            policy_hash: &self.policy_hash,
        };
        let mut scratch = std::mem::take(&mut w.scratch);
        let how = (format, template);
        match &w.map {
            Some(m) => encode::encode_in_stream(out, &mut scratch, &parts, m, how),
            None => {
                let ev = LaidOut {
                    layout: &pr.fast.layout,
                    values: FastEvidence {
                        run: self,
                        pr,
                        kind,
                        s,
                        base,
                        w,
                    },
                };
                encode::encode_in_stream(out, &mut scratch, &parts, &ev, how);
            }
        }
        w.scratch = scratch;
    }
}

/// The evidence values of a finding evaluated natively, for [`LaidOut`] to write straight
/// from the values.
struct FastEvidence<'x, 'a, 'r> {
    run: &'r Run<'a>,
    pr: &'r PreparedRule<'a>,
    kind: &'r KindState,
    s: usize,
    base: &'x [V<'r>],
    w: &'x Worker<'r>,
}

impl EvidenceValues for FastEvidence<'_, '_, '_> {
    fn write_value<F: Formatter>(&self, j: usize, f: &mut F, o: &mut Vec<u8>) {
        let Some(v) = self.run.evidence_value(self.pr, j, self.base, self.w) else {
            let _ = f.write_null(o);
            return;
        };
        match as_evidence(v) {
            Some(e) => e.write_json(f, o),
            None => json::value(f, o, &script::to_json(&self.run.v_dynamic(v, self.kind))),
        }
    }

    fn record_lines(&self, r: usize) -> impl Iterator<Item = u32> {
        self.pr.fast.records[r].lines(self.kind, self.s)
    }
}

/// A native value as evidence, `None` for those only Rhai's value of says how to write
/// ([`script::to_json`]: aggregate rows, array and map parameters).
#[inline]
fn as_evidence<'v>(v: &'v V) -> Option<EvidenceValue<'v>> {
    Some(match v {
        V::Unit => EvidenceValue::Null,
        V::Bool(b) => EvidenceValue::Bool(*b),
        V::Int(i) => EvidenceValue::Int(*i),
        V::Float(x) => EvidenceValue::Float(*x),
        V::Str(s) => EvidenceValue::Str(s),
        V::Own(s) => EvidenceValue::Str(s),
        V::Date(d) => EvidenceValue::Date(*d),
        V::DateTime(d) => EvidenceValue::DateTime(*d),
        V::Days(days) => EvidenceValue::Dates(days),
        V::Rows(..) | V::Dyn(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Findings as JSON lines, evaluated natively where possible or with Rhai only.
    fn findings(run: &super::Run, rhai_only: bool) -> Vec<String> {
        let mut out = Vec::new();
        run.for_each_finding_with(rhai_only, |f| {
            out.push(serde_json::to_string(&f)?);
            Ok(())
        })
        .unwrap();
        out
    }

    fn check(data: &Path) {
        check_with(Path::new("policies"), data, true);
    }

    fn check_with(policies: &Path, data: &Path, all_native: bool) {
        let set = crate::policy::load(policies).unwrap_or_else(|_| panic!("policies"));
        let ds = crate::data::load(data, &set.schema, &Default::default()).unwrap();
        let run = super::super::prepare(&set, &ds, None).unwrap();
        // Every expression of the shipped rules compiles for the native evaluator.
        for pr in run.rules.iter().filter(|_| all_native) {
            let r = pr.rule;
            let f = &pr.fast;
            assert_eq!(f.applies.is_some(), r.applies.is_some(), "{} applies", r.id);
            for (j, (name, _)) in r.lets.iter().enumerate() {
                assert!(f.lets[j].is_some(), "{} let {name}", r.id);
            }
            for (ci, c) in r.cases.iter().enumerate() {
                assert_eq!(
                    f.whens[ci].is_some(),
                    c.when.is_some(),
                    "{} case {ci}",
                    r.id
                );
                for (pi, p) in c.message.parts.iter().enumerate() {
                    if let crate::policy::Part::Expr(e) = p {
                        assert!(f.parts[ci][pi].is_some(), "{}: {}", r.id, e.src);
                    }
                }
            }
            assert!(f.layout.is_plain(), "{}", r.id);
        }
        let (native, rhai) = (findings(&run, false), findings(&run, true));
        assert_eq!(native.len(), rhai.len());
        for (a, b) in native.iter().zip(&rhai) {
            assert_eq!(a, b);
        }
        // The encoded stream gives the same bytes as encoding the findings.
        for format in [
            crate::findings::Format::Jsonl,
            crate::findings::Format::Json,
            crate::findings::Format::Csv,
        ] {
            let mut streamed = Vec::new();
            let mut summary = crate::findings::Summary::default();
            run.stream(Some(format), &mut summary, None, |runs, _| {
                for b in runs {
                    streamed.extend_from_slice(b);
                }
                Ok(())
            })
            .unwrap();
            let mut encoded = Vec::new();
            let mut expected = crate::findings::Summary::default();
            let mut first = true;
            run.for_each_finding(|f| {
                if format == crate::findings::Format::Json && !first {
                    encoded.extend_from_slice(b",\n");
                }
                first = false;
                encoded.extend(crate::findings::encode(&f, format)?);
                expected.add(&f);
                Ok(())
            })
            .unwrap();
            let streamed = if format == crate::findings::Format::Json {
                streamed[2..].to_vec()
            } else {
                streamed
            };
            assert!(streamed == encoded, "{format:?}");
            assert_eq!(
                serde_json::to_string(&summary).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }

    #[test]
    fn native_evaluation_matches_rhai_on_the_samples() {
        check(Path::new("samples/hubei-2020"));
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }

    /// Expressions the native evaluator leaves to Rhai half-way through a rule (loops,
    /// `type_of`, arrays in messages), errors, waivers, odd evidence names, escapes.
    #[test]
    fn mixed_native_and_rhai_evaluation_matches_rhai() {
        let dir = tempfile::tempdir().unwrap();
        let (pol, data) = (dir.path().join("policies"), dir.path().join("data"));
        copy_dir(Path::new("policies"), &pol);
        copy_dir(Path::new("samples/hubei-2020"), &data);
        std::fs::write(pol.join("helpers/zz.rhai"), TORTURE_HELPERS).unwrap();
        std::fs::write(pol.join("directives/zz-torture.toml"), TORTURE_RULES).unwrap();
        std::fs::write(data.join("waivers.csv"), TORTURE_WAIVERS).unwrap();
        check_with(&pol, &data, false);
    }

    const TORTURE_HELPERS: &str = r#"
fn count_up(n) { let i = 0; while i < n { i += 1; } i }
fn twice(x) { x * 2 }
fn label(x) {
    if x > 10 { "多" } else if x > 0 { "少" } else { "无" }
}
fn nothing(x) { }
fn semi(x) { x + 1; }
"#;

    const TORTURE_WAIVERS: &str =
        "subject_id,directive,rule,reason,approved_by,valid_from,valid_until
M001,service-hours-20,hours.yearly,因病住院三个月,某厅机关党委,2020-07-01,2021-06-30
M002,zz-torture,,\"特殊\"\"情况\"\",测试\",某厅机关党委,2020-01-01,
M003,zz-torture,zz.records,驻村扶贫,某厅机关党委,2020-01-01,
B01,dual-registration-2020-07,,联系社区撤并,某区委组织部,2020-07-01,
";

    const TORTURE_RULES: &str = r#"
[directive]
key = "zz-torture"
title = "测试用指令"
issuer = "测试"
issued_on = 2020-01-01
effective_from = 2020-01-01
cited_from = "测试"
summary = "测试各种表达式。"

[directive.clauses.c1]
text = "第一条，含\"引号\"、反斜杠\\和换行\n第二行"

[parameters.zz_list]
label = "列表参数"
basis = "assumption"
reason = "测试"
values = [{ from = 2020-01-01, value = [1, 2, 3] }]

[parameters.zz_ratio]
label = "比例"
basis = "assumption"
reason = "测试"
values = [{ from = 2020-01-01, value = 0.1 }]

[parameters.zz_later]
label = "以后才有"
basis = "assumption"
reason = "测试"
values = [{ from = 2030-01-01, value = 5 }]

[[rule]]
id = "zz.loops"
version = 2
title = "循环与辅助函数"
subject = "member"
effective_from = 2020-01-01
clause = "c1"
severity = "minor"
period = "sinking"
evidence = ["n", "m", "services_sinking", "zz_list", "zz_later", "lbl", "s1", "s2"]

[rule.let]
lbl = "label(services_sinking)"
n = "count_up(services_sinking)"
m = "twice(n) + twice(0.5)"
s1 = "semi(1)"
s2 = "nothing(1)"

[[rule.case]]
when = "n != services_sinking"
status = "fail"
message = "不一致"

[[rule.case]]
when = "m > 10 && zz_list.len() > 2"
status = "warn"
message = "多：{m}，{lbl}，{zz_list}，{zz_later}，{type_of(m)}"

[[rule.case]]
status = "pass"
message = "{n} 次，{label(n)}，{if n > 3 { \"大\" }}，{`${n}/${m}/${zz_ratio}`}"

[[rule]]
id = "zz.errors"
version = 1
title = "出错"
subject = "member"
effective_from = 2020-01-01
clause = "c1"
severity = "major"
applies = "if employment == \"retired\" { 1 } else { employment == \"in_service\" }"
evidence = ["verified_hours", "q"]

[rule.let]
q = "if verified_hours > 30.0 { services_sinking / 0 } else { verified_hours / 0 }"

[[rule.case]]
when = "q > 1.0"
status = "fail"
message = "q = {q}，{days_between(first_epidemic_report, \"2020-12-31\")}"

[[rule.case]]
when = "verified_hours == 20"
status = "warn"
message = "正好 20：{verified_hours}"

[[rule.case]]
when = "services_sinking - 9223372036854775807 - 10 > 0"
status = "warn"
message = "溢出"

[[rule]]
id = "zz.records"
version = 1
title = "证据名重复"
subject = "member"
effective_from = 2020-01-01
clause = "c1"
severity = "critical"
period = "epidemic"
evidence = ["first_epidemic_report", "records", "first_epidemic_report", "checkin_only_days", "name"]

[rule.let]
records = "checkin_only_days.len() * 1000000000000000000"

[[rule.case]]
when = "present(first_epidemic_report) && checkin_only_days.len() > 0"
status = "fail"
message = "{name}（{subject_id}）{zh(employment)}：{checkin_only_days}；{join(checkin_only_days, \",\")}；{period_start}—{period_end}；{as_of}"

[[rule.case]]
when = "name + \"x\" > \"\" || name - \"a\" == \"\""
status = "warn"
message = "{name + subject_id}；{-verified_hours}；{!present(name)}；{3 % 2}；{7.5 % 2}；{1 / 3}；{1.0 / 3}；{round_to(verified_hours, 1)}；{ratio(2, 3)}"

[[rule]]
id = "zz.org"
version = 1
title = "组织"
subject = "organization"
effective_from = 2020-01-01
clause = "c1"
severity = "minor"
evidence = ["kind", "community_id", "subject_id"]

[[rule.case]]
when = "kind == \"unit_branch\" && community_id >= \"C03\""
status = "fail"
message = "{name}：{kind}，{zh(kind)}，{community_id}"

[[rule.case]]
status = "pass"
message = "好"
"#;

    #[test]
    fn outcomes_hold_every_block_of_subjects() {
        // More members than one evaluation block, so that statuses come in several blocks.
        let dir = tempfile::tempdir().unwrap();
        crate::r#gen::generate(&crate::r#gen::GenOptions {
            members: super::BLOCK + 2000,
            seed: 5,
            out: dir.path().to_path_buf(),
            year: 2020,
        })
        .unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let set = crate::policy::load(&root.join("policies")).unwrap();
        let ds = crate::data::load(dir.path(), &set.schema, &Default::default()).unwrap();
        let run = crate::eval::prepare(&set, &ds, None).unwrap();
        let outcomes = run.outcomes().unwrap();
        let members = run.subjects("member");
        assert!(members.len() > super::BLOCK);
        let mut checked = 0;
        for (ri, r) in run.rules().enumerate() {
            if r.subject != "member" {
                continue;
            }
            // Subjects of every block, the last ones especially.
            for &row in members
                .iter()
                .step_by(211)
                .chain(members.iter().rev().take(50))
            {
                let f = run.rule_finding(ri, row).unwrap();
                assert_eq!(
                    outcomes.status(ri, row),
                    f.status,
                    "{} {}",
                    r.id,
                    f.subject_id
                );
                checked += 1;
            }
        }
        assert!(checked > 1000, "{checked}");
        let fails: u64 = (0..run.rules().count())
            .map(|ri| outcomes.rule_count(ri, crate::findings::Status::Fail))
            .sum();
        assert_eq!(fails, outcomes.count(crate::findings::Status::Fail));
    }

    #[test]
    fn native_evaluation_matches_rhai_on_generated_data() {
        let dir = tempfile::tempdir().unwrap();
        crate::r#gen::generate(&crate::r#gen::GenOptions {
            members: 3000,
            seed: 11,
            out: dir.path().to_path_buf(),
            year: 2020,
        })
        .unwrap();
        check(dir.path());
    }
}
