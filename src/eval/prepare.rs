//! Preparing a run, stage by stage: parameters on `--as-of`, periods, the directives in force
//! and graded, the rule versions in force, every subject kind's aggregates (computed in
//! parallel), and the rules compiled for the native evaluator with their variables resolved.

use super::aggregate::{self, AggValue, Groups, Prepared, Span, SubjectCtx};
use super::packed;
use super::value::{Scalar, Values};
use super::{
    BoundSource, DirectiveWindow, Error, KindState, LINEAGE_CHUNK, Lineage, LineageChunk,
    ParamValue, PeriodValue, PreparedRule, Run, VarSource, date_text, native, rules, span_of,
};
use crate::data::{ColumnData, Dataset};
use crate::findings::SourceRef;
use crate::policy::{Bound, PolicySet, Rule, SubjectKind, ValueRef};
use crate::script;
use chrono::NaiveDate;
use indexmap::IndexMap;
use rayon::prelude::*;
use rhai::{Dynamic, Scope};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Prepare a run: choose `as_of`, resolve parameters and periods, compute aggregates.
pub fn prepare<'a>(
    policy: &'a PolicySet,
    data: &'a Dataset,
    as_of: Option<NaiveDate>,
) -> Result<Run<'a>, Error> {
    prepare_with(policy, data, as_of, Subjects::All, None)
}

/// As [`prepare`], sharing with `base` (a run of another policy set on the same dataset,
/// as `diff` compares) each subject kind's aggregates when everything they read is the same
/// in both sets (`eval::reuse`); then [`Run::changed_findings`] also skips the rules
/// whose statuses cannot differ. The findings are those [`prepare`] gives.
pub fn prepare_against<'a>(
    policy: &'a PolicySet,
    data: &'a Dataset,
    as_of: Option<NaiveDate>,
    base: &Run<'_>,
) -> Result<Run<'a>, Error> {
    prepare_with(policy, data, as_of, Subjects::All, Some(base))
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
        let r = data.tables.get(sk.table.as_str())?.row_of(sym)?;
        Some((kname.as_str(), r as usize))
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
) -> Result<Option<Run<'a>>, Error> {
    // Without such a subject the run is still prepared (without subjects), so that it fails
    // as a full run would.
    let found = find_subject(policy, data, id);
    let run = prepare_with(policy, data, as_of, Subjects::Only(found), None)?;
    Ok(found.map(|_| run))
}

/// Which subjects a run is for.
#[derive(Clone, Copy)]
enum Subjects<'k> {
    All,
    /// One subject (kind and row), or none.
    Only(Option<(&'k str, usize)>),
}

/// What the stages after parameters and periods read.
struct Stage<'a, 'r> {
    policy: &'a PolicySet,
    data: &'a Dataset,
    as_of: NaiveDate,
    params: &'r IndexMap<String, ParamValue>,
    periods: &'r [PeriodValue],
    vals: &'r Values<'a>,
}

/// [`prepare`] for `subjects`.
fn prepare_with<'a>(
    policy: &'a PolicySet,
    data: &'a Dataset,
    as_of: Option<NaiveDate>,
    subjects: Subjects,
    shared_with: Option<&Run<'_>>,
) -> Result<Run<'a>, Error> {
    let as_of = as_of.or_else(|| data.latest_date()).ok_or(Error::NoDates)?;
    // A base run's aggregates can be shared only if they were computed from the same rows,
    // read with the same schema, on the same day.
    let shared_with = shared_with.filter(|b| {
        std::ptr::eq(b.data, data) && b.as_of == as_of && b.policy.schema.same_as(&policy.schema)
    });
    let vals = Values::new(data, policy);
    let (params, base) = resolve_params(policy, as_of);
    let periods = policy
        .periods
        .values()
        .map(|p| resolve_period(policy, p, &params, &base, as_of))
        .collect::<Result<Vec<_>, _>>()?;
    let (windows, grading) = directive_windows(policy, &params, &periods, as_of);
    let in_force = rules_in_force(policy, &windows, as_of);
    let lineage_names: HashSet<&str> = in_force
        .iter()
        .flat_map(|r| r.evidence.iter().map(|s| s.as_str()))
        .collect();

    let stage = Stage {
        policy,
        data,
        as_of,
        params: &params,
        periods: &periods,
        vals: &vals,
    };
    let mut kinds = IndexMap::new();
    for (kname, sk) in &policy.subjects {
        let only = match subjects {
            Subjects::All => None,
            Subjects::Only(Some((k, row))) if k == kname => Some(row),
            Subjects::Only(_) => continue,
        };
        let shared = shared_with.and_then(|b| b.kinds.get(kname));
        let state = stage.kind_state(kname, sk, &lineage_names, only, shared)?;
        kinds.insert(kname.clone(), state);
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
    let rules = in_force
        .into_iter()
        .filter_map(|r| {
            let kind = kinds.get(&r.subject)?;
            Some(prepare_rule(policy, data, &prog, &base_names, kind, r))
        })
        .collect();

    let subject_known = |id: &str| {
        data.ids.get(id).is_some_and(|sym| {
            policy
                .subjects
                .values()
                .any(|sk| data.tables[sk.table.as_str()].row_of(sym).is_some())
        })
    };
    let (waivers, waiver_notes) = super::waivers::read_waivers(policy, data, as_of, &subject_known);
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

fn toml_date(v: &toml::Value) -> Option<NaiveDate> {
    match v {
        toml::Value::String(s) => crate::policy::parse_date(s),
        toml::Value::Datetime(d) => crate::policy::parse_date(&d.to_string()),
        _ => None,
    }
}

/// Parameters on the evaluation date, and the Rhai scope every expression starts from
/// (`as_of` and the parameters, as constants; a parameter without a value yet is `()`).
fn resolve_params(
    policy: &PolicySet,
    as_of: NaiveDate,
) -> (IndexMap<String, ParamValue>, Scope<'static>) {
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
    (params, base)
}

/// A period's bounds that are the same for every subject (fixed dates, parameters and
/// expressions) now; bounds from aggregates are left for each subject.
fn resolve_period(
    policy: &PolicySet,
    p: &crate::policy::Period,
    params: &IndexMap<String, ParamValue>,
    base: &Scope<'static>,
    as_of: NaiveDate,
) -> Result<PeriodValue, Error> {
    let mut per_subject = false;
    let mut bound = |b: &Bound| -> Result<Option<NaiveDate>, Error> {
        Ok(match b {
            Bound::Date(d) => Some(*d),
            Bound::Ref(ValueRef::AsOf) => Some(as_of),
            Bound::Ref(ValueRef::Param(n)) => {
                let v = params.get(n).ok_or_else(|| Error::UnknownParameter {
                    period: p.name.clone(),
                    param: n.clone(),
                })?;
                Some(toml_date(&v.value).ok_or_else(|| Error::ParameterNotDate {
                    period: p.name.clone(),
                    param: n.clone(),
                    value: v.value.to_string(),
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
                    .map_err(|err| Error::BoundFailed {
                        period: p.name.clone(),
                        expr: e.src.to_string(),
                        message: script::describe_error(&err),
                    })?;
                let text = v.to_string();
                Some(
                    crate::policy::parse_date(&text).ok_or_else(|| Error::BoundNotDate {
                        period: p.name.clone(),
                        expr: e.src.to_string(),
                        value: text.clone(),
                    })?,
                )
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
    Ok(pv)
}

/// Every directive's days in force, whether it is in force during the run period and
/// whether its findings are graded; and the dates the grades assess.
fn directive_windows(
    policy: &PolicySet,
    params: &IndexMap<String, ParamValue>,
    periods: &[PeriodValue],
    as_of: NaiveDate,
) -> (Vec<DirectiveWindow>, Option<(NaiveDate, NaiveDate)>) {
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
    let windows = policy
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
    (windows, grading)
}

/// Rules in force: of a directive in force in the run, the version in force on the last day
/// the directive is (the as-of date, or the directive's end if it is earlier); in the order
/// findings are written (directive, rule).
fn rules_in_force<'a>(
    policy: &'a PolicySet,
    windows: &[DirectiveWindow],
    as_of: NaiveDate,
) -> Vec<&'a Rule> {
    let mut in_force: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|r| match windows.iter().find(|w| w.key == r.directive) {
            Some(w) => w.in_force && r.in_force(w.until.map_or(as_of, |u| u.min(as_of))),
            None => r.in_force(as_of),
        })
        .collect();
    in_force.sort_by(|a, b| (&a.directive, &a.id).cmp(&(&b.directive, &b.id)));
    in_force
}

/// A subject kind's aggregates as planned: which, in what order, with which rows.
pub(super) struct AggPlan {
    /// The kind's aggregates (global indexes) in dependency order.
    pub(super) topo: Vec<usize>,
    /// Global aggregate index → local index.
    local: IndexMap<usize, usize>,
    /// The slot of each local aggregate's input rows, for those kept as evidence.
    pub(super) lineage_slot: Vec<Option<usize>>,
    n_slots: usize,
    pub(super) prepared: Vec<Prepared>,
    /// Filled by [`Stage::group_rows`] when the values are computed (not shared).
    groups: Vec<Arc<Groups>>,
}

impl Stage<'_, '_> {
    /// Everything about subject kind `kname` that rules read: its subjects in id order and
    /// their aggregates. `only`: the one subject (row) a run for one subject is for.
    /// `shared`: the same kind in a base run, whose aggregates are taken when their
    /// [`KindState::agg_key`] is this one's.
    fn kind_state(
        &self,
        kname: &str,
        sk: &SubjectKind,
        lineage_names: &HashSet<&str>,
        only: Option<usize>,
        shared: Option<&KindState>,
    ) -> Result<KindState, Error> {
        let (policy, data) = (self.policy, self.data);
        let table_idx = policy
            .schema
            .tables
            .get_index_of(&sk.table)
            .ok_or_else(|| Error::SubjectTable {
                kind: kname.to_string(),
                table: sk.table.clone(),
            })?;
        let table = &data.tables[sk.table.as_str()];
        let ts = &policy.schema.tables[sk.table.as_str()];
        let n = table.len();
        let key = ts.key.ok_or_else(|| Error::SubjectKey {
            kind: kname.to_string(),
            table: sk.table.clone(),
        })?;
        let ColumnData::Id(keys) = &table.columns[key] else {
            return Err(Error::SubjectKeyNotId {
                kind: kname.to_string(),
                table: sk.table.clone(),
            });
        };
        let mut plan = self.plan_aggregates(kname, sk, lineage_names);
        let agg_key =
            super::reuse::aggregates_key(self.policy, self.periods, self.as_of, (kname, sk), &plan);
        let shared = shared.filter(|k| only.is_none() && k.n == n && k.agg_key == agg_key);
        let (order, values, lineage) = match shared {
            Some(k) => (k.order.clone(), k.values.clone(), k.lineage.clone()),
            None => {
                let order: Vec<u32> = match only {
                    Some(row) => vec![row as u32],
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
                plan.groups = self.group_rows(sk, &plan.topo, only);
                let (values, lineage) = self.compute_aggregates(&plan, sk, table_idx, only);
                (Arc::new(order), Arc::new(values), Arc::new(lineage))
            }
        };
        Ok(KindState {
            table_idx,
            table_name: sk.table.clone(),
            n,
            order,
            local: plan.local,
            values,
            lineage,
            agg_key,
            lineage_slot: plan.lineage_slot,
            key_col: key,
            name_col: ts.column(&sk.name_column),
            prepared: plan.prepared,
            // A run for every subject lets its groups go (a fifth of its memory at province
            // scale); `explain` then groups its one subject's rows again.
            groups: if only.is_some() {
                plan.groups
            } else {
                Vec::new()
            },
        })
    }

    /// The kind's aggregates in dependency order, prepared (their rows not yet grouped).
    fn plan_aggregates(
        &self,
        kname: &str,
        sk: &SubjectKind,
        lineage_names: &HashSet<&str>,
    ) -> AggPlan {
        let (policy, data) = (self.policy, self.data);
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
            if lineage_names.contains(policy.aggregates[*g].name.as_str()) {
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
            self.params
                .get(name)
                .map_or(Scalar::None, |v| Values::literal(&v.value, cs, &data.ids))
        };
        let param_raw = |name: &str| {
            self.params
                .get(name)
                .filter(|v| v.from.is_some())
                .map(|v| v.value.clone())
        };
        let cx = aggregate::PrepareCx {
            policy,
            data,
            as_of: self.as_of,
            subject_table: &sk.table,
            agg_index: &agg_index,
            period_index: &period_index,
            param_scalar: &param_scalar,
            param_raw: &param_raw,
        };
        let prepared: Vec<Prepared> = topo
            .iter()
            .map(|g| {
                let a = &policy.aggregates[*g];
                let tidx = policy.schema.tables.get_index_of(&a.table).unwrap_or(0);
                let keep_rows = lineage_slot[local[g]].is_some();
                aggregate::prepare(a, tidx, keep_rows, &cx)
            })
            .collect();
        AggPlan {
            topo,
            local,
            lineage_slot,
            n_slots,
            prepared,
            groups: Vec::new(),
        }
    }

    /// The rows of each aggregate (in `topo` order) grouped by subject, once per table and
    /// reference path: aggregates over the same rows share them.
    fn group_rows(
        &self,
        sk: &SubjectKind,
        topo: &[usize],
        only: Option<usize>,
    ) -> Vec<Arc<Groups>> {
        let (policy, data) = (self.policy, self.data);
        let n = data.tables[sk.table.as_str()].len();
        let mut shared: HashMap<(&str, &[String]), Arc<Groups>> = HashMap::new();
        topo.iter()
            .map(|g| {
                let a = &policy.aggregates[*g];
                shared
                    .entry((a.table.as_str(), a.by.as_slice()))
                    .or_insert_with(|| {
                        Arc::new(match only {
                            Some(row) => aggregate::group_one(data, policy, a, &sk.table, n, row),
                            None => aggregate::group(data, policy, a, &sk.table, n),
                        })
                    })
                    .clone()
            })
            .collect()
    }

    /// Every subject's aggregate values and evidence rows (in parallel, in chunks of
    /// subjects), or the one subject's.
    fn compute_aggregates<'s>(
        &'s self,
        plan: &'s AggPlan,
        sk: &SubjectKind,
        table_idx: usize,
        only: Option<usize>,
    ) -> (packed::AggValues, Lineage) {
        let (policy, periods, as_of) = (self.policy, self.periods, self.as_of);
        let table = &self.data.tables[sk.table.as_str()];
        let n = table.len();
        let (n_local, n_slots) = (plan.local.len(), plan.n_slots);
        let agg_index = |name: &str| {
            policy
                .aggregates
                .get_index_of(name)
                .and_then(|g| plan.local.get(&g).copied())
        };
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
        // Subject `s`'s aggregates into `values` (its `n_local`), and its `n_slots` lists of
        // rows onto `lineage` (in slot order: slots are numbered in aggregate order).
        let compute =
            |s: usize,
             values: &mut [AggValue],
             lineage: &mut LineageChunk,
             (spans, scratch): (&mut Vec<Span>, &mut aggregate::Scratch)| {
                for (l, p) in plan.prepared.iter().enumerate() {
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
                    let t = self.vals.table(p.table);
                    values[l] =
                        aggregate::compute(p, t, plan.groups[l].of(s), &cx, self.vals, scratch);
                    if plan.lineage_slot[l].is_some() {
                        lineage.push(scratch.used());
                    }
                }
                lineage.end_subject();
            };
        let first = only.unwrap_or(0);
        let held = if only.is_some() { 1 } else { n };
        let n_chunks = held.div_ceil(LINEAGE_CHUNK).max(1);
        // Each chunk of subjects is computed into plain values, then packed (see
        // `packed`): the plain values of every subject at once would be the largest thing
        // a run holds.
        let (packed, lineage): (Vec<_>, Vec<_>) = (0..n_chunks)
            .into_par_iter()
            .map(|c| {
                let from = c * LINEAGE_CHUNK;
                let count = LINEAGE_CHUNK.min(held - from.min(held));
                let mut values = vec![AggValue::Unit; count * n_local];
                let mut lchunk = LineageChunk::default();
                let mut spans: Vec<Span> = vec![None; periods.len()];
                let mut scratch = aggregate::Scratch::default();
                if n_local > 0 {
                    for k in 0..count {
                        compute(
                            first + from + k,
                            &mut values[k * n_local..(k + 1) * n_local],
                            &mut lchunk,
                            (&mut spans, &mut scratch),
                        );
                    }
                }
                lchunk.bytes.shrink_to_fit();
                (packed::AggValues::pack_chunk(n_local, values), lchunk)
            })
            .unzip();
        let mut values = packed::AggValues::new(first, n_local, LINEAGE_CHUNK);
        for chunk in packed {
            values.push(chunk);
        }
        (
            values,
            Lineage {
                first,
                n_slots,
                chunks: lineage,
            },
        )
    }
}

/// Where each name a rule mentions comes from for its subject kind: the subject id, a period
/// bound, one of the kind's aggregates or a column of its table (names that are none of these
/// are parameters or `let`s, found in the scope).
fn rule_vars(policy: &PolicySet, kind: &KindState, r: &Rule) -> Vec<(String, VarSource)> {
    let ts = &policy.schema.tables[kind.table_name.as_str()];
    r.idents()
        .into_iter()
        .filter_map(|ident| {
            let src = match ident.as_str() {
                "subject_id" => VarSource::SubjectId,
                "period_start" => VarSource::PeriodStart,
                "period_end" => VarSource::PeriodEnd,
                _ => match policy
                    .aggregates
                    .get_index_of(&ident)
                    .and_then(|g| kind.local.get(&g))
                {
                    Some(l) => VarSource::Agg(*l),
                    None => VarSource::SubjectCol(ts.column(&ident)?),
                },
            };
            Some((ident, src))
        })
        .collect()
}

/// The source a rule's findings cite: its directive's document and the clause quoted.
fn source_ref(policy: &PolicySet, r: &Rule) -> Arc<SourceRef> {
    let d = policy.directive(&r.directive);
    Arc::new(SourceRef {
        document: d
            .and_then(|d| d.document_number.clone())
            .or_else(|| d.map(|d| d.title.clone()))
            .unwrap_or_default()
            .into(),
        title: d.map(|d| d.title.clone()).unwrap_or_default().into(),
        issuer: d.and_then(|d| d.issuer.clone()).map(Into::into),
        clause: r.clause.key.as_str().into(),
        text: r.clause.text.as_str().into(),
    })
}

/// A rule ready to run for its subject kind: variables resolved, expressions compiled for the
/// native evaluator, its period's bounds located.
fn prepare_rule<'a>(
    policy: &'a PolicySet,
    data: &'a Dataset,
    prog: &native::Program,
    base_names: &[String],
    kind: &KindState,
    r: &'a Rule,
) -> PreparedRule<'a> {
    let vars = rule_vars(policy, kind, r);
    let fast = rules::compile(prog, r, &vars, base_names, policy, data, kind);
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
    PreparedRule {
        rule: r,
        vars,
        fast,
        bounds,
        source: source_ref(policy, r),
        period,
        directive: r.directive.as_str().into(),
        id: r.id.as_str().into(),
        version: r.version.as_str().into(),
        kind: r.subject.as_str().into(),
    }
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
