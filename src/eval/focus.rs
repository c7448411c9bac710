//! Loading a dataset for one subject (`rulebook explain`): which rows of each table can
//! matter to the subject, as the policy set's aggregates show.
//!
//! A run for one subject ([`super::prepare_subject`]) reads the subject tables, the tables
//! other tables refer to and the waivers table (`[roles.waivers]`) whole, and of any other table only the rows
//! its kind's aggregates group under the subject. Such a table keeps only the rows whose
//! first step on each `by` path — a reference column — leads to the subject along the rest
//! of the path (worked out on the tables already loaded, exactly as
//! `aggregate::group` follows it); a table no aggregate of the kind reads keeps no
//! rows. Where that cannot be shown (a path that does not start with a reference column to
//! another table, a table not yet loaded), the table loads whole.

use crate::data::{self, Dataset, Focus, LoadOptions, LoadedTables, RowFilter};
use crate::policy::{PolicySet, TableSchema};
use std::path::Path;

/// The rows that matter to subject `id` under `policy`.
pub struct SubjectFocus<'p> {
    /// The policy set whose subjects and aggregates decide which rows matter.
    pub policy: &'p PolicySet,
    /// The subject's id (its key in its subject table).
    pub id: &'p str,
}

impl Focus for SubjectFocus<'_> {
    fn filter(&self, ts: &TableSchema, loaded: &LoadedTables<'_>) -> Option<RowFilter> {
        let policy = self.policy;
        let schema = &policy.schema;
        // Read whole: subject tables, tables referred to (their rows decide other tables'
        // rows), and waivers (read apart from aggregates).
        if ts.name == policy.roles.waivers.table
            || policy.subjects.values().any(|sk| sk.table == ts.name)
            || schema.tables.values().any(|t| {
                t.columns
                    .iter()
                    .any(|c| c.references.as_deref() == Some(ts.name.as_str()))
            })
        {
            return None;
        }
        // The subject, as `find_subject` finds it: every subject table must be in.
        let sym = loaded.ids.get(self.id);
        let mut subject = None;
        for (kind, sk) in &policy.subjects {
            let t = loaded.table(&sk.table)?;
            if subject.is_none()
                && let Some(r) = sym.and_then(|s| t.row_of(s))
            {
                subject = Some((kind.as_str(), sk.table.as_str(), r));
            }
        }
        // No such subject: nothing is evaluated, no row matters.
        let Some((kind, subject_table, row)) = subject else {
            return Some(RowFilter::default());
        };
        let mut via: Vec<(usize, Vec<bool>)> = Vec::new();
        for a in policy
            .aggregates
            .values()
            .filter(|a| a.subject == kind && a.table == ts.name)
        {
            // The first step: a reference column to another table, which is loaded.
            let ci = ts.column(a.by.first()?)?;
            let target = ts.columns[ci].references.as_deref()?;
            if target == ts.name || ts.key == Some(ci) {
                return None;
            }
            let (target, _) = schema.tables.get_key_value(target)?;
            let tt = loaded.table(target)?;
            // The rest of the path, from the referenced table.
            let chain = super::aggregate::path_chain(
                schema,
                &|n| loaded.table(n),
                target,
                &a.by[1..],
                subject_table,
            )?;
            let rows: Vec<bool> = (0..tt.len() as u32)
                .map(|x| super::aggregate::follow(&chain, x) == row)
                .collect();
            match via.iter_mut().find(|(c, _)| *c == ci) {
                Some((_, wanted)) => wanted.iter_mut().zip(rows).for_each(|(w, r)| *w |= r),
                None => via.push((ci, rows)),
            }
        }
        Some(RowFilter { via })
    }
}

/// Load the dataset in `dir` for subject `id`: only the rows that can matter to it where the
/// policy set shows which those are, else (or when a row left out might still change the
/// outcome) the whole dataset. With `latest`, [`Dataset::latest_date`] is right too (needed
/// without `--as-of`).
pub fn load_for_subject(
    dir: &Path,
    policy: &PolicySet,
    opts: &LoadOptions,
    id: &str,
    latest: bool,
) -> Result<Dataset, data::Error> {
    let focus = SubjectFocus { policy, id };
    match data::load_focused(dir, &policy.schema, opts, &focus, latest)? {
        Some(ds) => Ok(ds),
        None => data::load(dir, &policy.schema, opts),
    }
}

/// The rows that matter to subject `id`, read from the data cache when its entry is current
/// ([`data::cache::cached_focused`]); `None` otherwise (nothing is written).
pub fn cached_for_subject(
    dir: &Path,
    policy: &PolicySet,
    opts: &LoadOptions,
    cache: &data::cache::Cache,
    id: &str,
) -> Option<Dataset> {
    let focus = SubjectFocus { policy, id };
    data::cache::cached_focused(dir, &policy.schema, opts, cache, &focus)
}
