//! Loading a dataset for one subject (`rulebook explain`): tables whose rows reach the
//! subject only through a reference column keep only the rows that reach it; the other rows
//! are counted and left out without being parsed, so a province's services and check-ins
//! cost little more than reading their bytes.
//!
//! What the rows left out could still change is kept exact, or the load gives up (and the
//! caller loads the whole dataset):
//! - a kept row is rejected as a duplicate key when an earlier row has its key: the key hash
//!   of every row is kept, and a kept row whose hash an earlier row left out shares gives up;
//! - the latest date of the data (the default `--as-of`), when asked for: a row left out
//!   whose dates are not before the latest date found so far is read in full to learn
//!   whether it would load; the latest such date must come from a row that surely loads (for
//!   a table with a key: no earlier row shares its key hash), or the load gives up.
//!
//! Rejects, warnings and row counts of a table loaded in part cover only the rows it kept.

use super::*;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

/// Which rows of a table matter to one subject: those whose reference column (`.0`) points
/// at a row of the referenced table that `.1` marks, for any entry. No entries: none.
#[derive(Debug, Clone, Default)]
pub struct RowFilter {
    /// Per reference column (its index in the table), one flag per row of the referenced
    /// table: `true` where a row pointing there is kept.
    pub via: Vec<(usize, Vec<bool>)>,
}

/// Decides, as each table is about to load, which of its rows to keep ([`load_focused`]).
pub trait Focus: Sync {
    /// The rows of `table` to keep; `None` keeps them all (the table loads as usual).
    fn filter(&self, table: &TableSchema, loaded: &LoadedTables<'_>) -> Option<RowFilter>;
}

/// The tables loaded so far and the dataset's ids, for a [`Focus`].
pub struct LoadedTables<'a> {
    /// The dataset's interned ids, shared by every table.
    pub ids: &'a Interner,
    pub(in crate::data) tables: &'a HashMap<String, Table>,
}

impl<'a> LoadedTables<'a> {
    /// The table called `name`, if it has loaded already.
    pub fn table(&self, name: &str) -> Option<&'a Table> {
        self.tables.get(name)
    }
}

/// What a dataset loaded for one subject left out.
#[derive(Debug, Clone, Default)]
pub struct FocusInfo {
    /// Tables of which only the rows that matter were kept (their rejects, warnings and
    /// counts cover only those rows).
    pub partial: Vec<String>,
    /// Whether the latest date of the rows left out was asked for.
    pub latest_known: bool,
    /// The latest date of the rows left out that would have loaded.
    pub latest_left_out: Option<NaiveDate>,
}

/// Load the dataset in `dir` for one subject: each table `focus` filters keeps only the rows
/// it wants. With `latest`, the latest date of the rows left out is found too (for
/// [`Dataset::latest_date`]). `Ok(None)` when a row left out might change a kept row or the
/// latest date (see the module notes): load the whole dataset instead.
pub fn load_focused(
    dir: &Path,
    schema: &Schema,
    opts: &LoadOptions,
    focus: &dyn Focus,
    latest: bool,
) -> Result<Option<Dataset>, Error> {
    let threshold = AtomicI32::new(i32::MIN);
    super::load_with(
        dir,
        schema,
        opts,
        Some(Focusing {
            focus,
            latest,
            threshold: &threshold,
        }),
    )
}

/// A focused load in progress.
#[derive(Clone, Copy)]
pub(super) struct Focusing<'f> {
    pub focus: &'f dyn Focus,
    pub latest: bool,
    /// The latest date (days from the common era) of a row left out that would load.
    pub threshold: &'f AtomicI32,
}

/// How one table loads in part.
pub(super) struct Part<'x> {
    /// Reference columns, each with the keys of the rows of the referenced table wanted: a
    /// reference resolves to the row with that key, so a row is wanted when its id is one
    /// of them.
    via: Vec<(usize, Wanted)>,
    /// Keep every row's key hash (the table's keys are unique).
    pub(super) hash_keys: bool,
    /// Date and date-time columns, when the latest date of the rows left out is wanted.
    dates: Vec<usize>,
    threshold: &'x AtomicI32,
}

impl<'x> Part<'x> {
    /// The part for a table `filter` filters; `None` if it keeps every row.
    pub(super) fn new(
        ts: &TableSchema,
        filter: RowFilter,
        schema: &Schema,
        loaded: &HashMap<String, Table>,
        ids: &Interner,
        text_key: bool,
        focusing: &Focusing<'x>,
    ) -> Option<Part<'x>> {
        let mut via = Vec::new();
        for (ci, rows) in filter.via {
            let target = ts.columns.get(ci)?.references.as_deref()?;
            if target == ts.name || ts.key == Some(ci) {
                return None;
            }
            let tt = loaded.get(target)?;
            let ColumnData::Id(keys) = &tt.columns[schema.tables.get(target)?.key?] else {
                return None;
            };
            if rows.len() != tt.len() {
                return None;
            }
            let mut wanted = Wanted::default();
            for (r, _) in rows.iter().enumerate().filter(|(_, w)| **w) {
                if keys[r].is_none() {
                    continue;
                }
                let key = ids.resolve(keys[r]);
                match super::super::pack(key) {
                    Some(k) => {
                        wanted.short.insert(k);
                    }
                    None => {
                        wanted.long.insert(key.to_string());
                    }
                }
            }
            via.push((ci, wanted));
        }
        let dates = if focusing.latest {
            ts.columns
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c.ty, ColumnType::Date | ColumnType::Datetime))
                .map(|(ci, _)| ci)
                .collect()
        } else {
            Vec::new()
        };
        Some(Part {
            hash_keys: text_key && (!via.is_empty() || !dates.is_empty()),
            via,
            dates,
            threshold: focusing.threshold,
        })
    }
}

/// Ids (keys of wanted rows), short ones packed into an integer.
#[derive(Default)]
struct Wanted {
    short: rustc_hash::FxHashSet<u128>,
    long: std::collections::HashSet<String>,
}

/// A piece's share of a table loaded in part.
#[derive(Default)]
pub(super) struct PiecePart {
    /// Rows left out.
    left_out: u64,
    /// Key hash of every row, in file order (with `hash_keys`).
    seq: Vec<u64>,
    /// Positions in `seq` of the rows kept (loaded or rejected).
    seq_kept: Vec<u32>,
    /// Position in `seq` of each loaded row (aligned with the table's rows).
    seq_loaded: Vec<u32>,
    /// Rows left out that would load, at the latest date among them: position in `seq`
    /// (`u32::MAX`: the table has no key) and the date (days from the common era).
    latest: Vec<(u32, i32)>,
    /// Per entry of `via`: the last (short) id seen, packed, and whether it is wanted (rows
    /// of one member usually come together).
    last: Vec<Option<(u128, bool)>>,
    /// The latest date found so far (days) and its `YYYY-MM-DD` text.
    cut: Option<(i32, [u8; 10])>,
}

impl PiecePart {
    /// Move `p`'s rows here (they come after this piece's); `p` is left empty for reuse.
    pub(super) fn absorb(&mut self, p: &mut PiecePart) {
        let base = self.seq.len() as u32;
        self.seq.append(&mut p.seq);
        self.seq_kept.extend(p.seq_kept.drain(..).map(|i| i + base));
        self.seq_loaded
            .extend(p.seq_loaded.drain(..).map(|i| i + base));
        for (pos, d) in p.latest.drain(..) {
            let pos = if pos == u32::MAX { pos } else { pos + base };
            add_latest(&mut self.latest, pos, d);
        }
        self.left_out += std::mem::take(&mut p.left_out);
        p.last.clear();
    }

    /// Room for `rows` rows' key hashes.
    pub(super) fn reserve(&mut self, rows: usize) {
        self.seq.reserve(rows);
    }

    /// Keep only the loaded rows `keep` keeps (duplicate keys among the kept rows dropped).
    pub(super) fn retain_loaded(&mut self, keep: &[bool]) {
        if keep.is_empty() || self.seq_loaded.is_empty() {
            return;
        }
        let mut i = 0;
        self.seq_loaded.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
    }

    pub(super) fn left_out(&self) -> u64 {
        self.left_out
    }
}

/// A candidate for the latest date: only those at the latest date are kept.
fn add_latest(latest: &mut Vec<(u32, i32)>, pos: u32, d: i32) {
    match latest.first() {
        Some(&(_, best)) if best > d => {}
        Some(&(_, best)) if best < d => {
            latest.clear();
            latest.push((pos, d));
        }
        // Without a key every such row surely loads: one is enough.
        Some(_) if pos == u32::MAX && latest.iter().any(|(p, _)| *p == u32::MAX) => {}
        _ => latest.push((pos, d)),
    }
}

/// What loading a table in part concluded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outcome {
    /// A kept row may be a duplicate of a key left out.
    pub ambiguous: bool,
    /// The latest date of the rows left out that would load (days), and whether a row at
    /// that date surely loads.
    pub latest: Option<(i32, bool)>,
}

/// The outcome of a table once all its pieces are in.
pub(super) fn conclude(part: &Part, pp: &PiecePart) -> Outcome {
    let mut ambiguous = false;
    let mut certain = pp.latest.iter().any(|(pos, _)| *pos == u32::MAX);
    if part.hash_keys {
        // Where each hash that matters occurs.
        let mut at: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
        for &i in pp
            .seq_loaded
            .iter()
            .chain(pp.latest.iter().map(|(i, _)| i).filter(|i| **i != u32::MAX))
        {
            at.insert(pp.seq[i as usize], Vec::new());
        }
        if !at.is_empty() {
            for (i, h) in pp.seq.iter().enumerate() {
                if let Some(v) = at.get_mut(h) {
                    v.push(i as u32);
                }
            }
        }
        // A loaded row is a duplicate if an earlier row that would load has its key; among
        // the kept rows that is already settled, not for a row left out.
        let kept: rustc_hash::FxHashSet<u32> = pp.seq_kept.iter().copied().collect();
        ambiguous = pp.seq_loaded.iter().any(|&j| {
            at[&pp.seq[j as usize]]
                .iter()
                .any(|&i| i < j && !kept.contains(&i))
        });
        // A row left out surely loads if no earlier row has its key hash.
        certain = certain
            || pp.latest.iter().any(|&(pos, _)| {
                pos != u32::MAX && at[&pp.seq[pos as usize]].iter().all(|&i| i >= pos)
            });
    }
    Outcome {
        ambiguous,
        latest: pp.latest.first().map(|&(_, d)| (d, certain)),
    }
}

/// Whether a date or date-time cell is surely before the date whose `YYYY-MM-DD` text is
/// `cut`, from its text alone: it starts with `YYYY-MM-DD` (not followed by a digit) before
/// `cut`, and every reading of such a cell ([`date_cell`], [`datetime_cell`]) gives that date
/// or fails (see the test below).
fn surely_before(text: &str, cut: &[u8; 10]) -> bool {
    let b = text.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && !b.get(10).is_some_and(|c| c.is_ascii_digit())
        && b[..10] < cut[..]
}

/// Days from the common era of a date, and back.
pub(super) fn days(d: NaiveDate) -> i32 {
    chrono::Datelike::num_days_from_ce(&d)
}

pub(super) fn from_days(d: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(d)
}

impl TableLoader<'_> {
    /// One row of a table loaded in part: kept rows load as usual; the others are counted,
    /// their key hash kept, and read in full only when they might hold the latest date.
    pub(super) fn focused_row(&self, part: &Part, p: &mut Piece, row: Row<'_>) {
        let fields = row.fields;
        let text_of = |ci: usize| -> &str {
            self.field_of[ci]
                .and_then(|fi| fields.get(fi))
                .copied()
                .unwrap_or("")
        };
        let pos = if part.hash_keys {
            let key = self.ts.key.map_or("", text_of);
            p.part.seq.push(hash_one(key));
            p.part.seq.len() as u32 - 1
        } else {
            u32::MAX
        };
        // A row with a problem is rejected whatever it holds.
        if row.problem.is_none() && self.wanted(part, p, &text_of) {
            if part.hash_keys {
                p.part.seq_kept.push(pos);
            }
            let n = p.lines.len();
            self.load_row(p, row);
            if part.hash_keys && p.lines.len() > n {
                p.part.seq_loaded.push(pos);
            }
            return;
        }
        p.part.left_out += 1;
        if part.dates.is_empty() || row.problem.is_some() {
            return;
        }
        // Most rows are plainly before the latest date found so far: said by their text.
        let t = part.threshold.load(Relaxed);
        if p.part.cut.is_none_or(|(c, _)| c != t) {
            p.part.cut = from_days(t)
                .and_then(|d| crate::dates::date_text(d).as_bytes().try_into().ok())
                .map(|text| (t, text));
        }
        if let Some((_, cut)) = &p.part.cut
            && part.dates.iter().all(|&ci| {
                let text = text_of(ci);
                text.is_empty() || surely_before(text, cut)
            })
        {
            return;
        }
        // The row's latest date, if every date cell reads (else the row is rejected).
        let mut latest: Option<NaiveDate> = None;
        for &ci in &part.dates {
            let col = &self.ts.columns[ci];
            let text = text_of(ci);
            if text.is_empty() {
                if col.required {
                    return;
                }
                continue;
            }
            let d = match col.ty {
                ColumnType::Date => date_cell(text, self.from_excel),
                _ => datetime_cell(text, self.from_excel).map(|d| d.date()),
            };
            let Ok(d) = d else { return };
            latest = Some(latest.map_or(d, |l| l.max(d)));
        }
        let Some(d) = latest.map(days) else { return };
        // Rows before the latest date found so far cannot change it; rows at it only help
        // to show that a row at that date surely loads (a few are enough).
        let t = part.threshold.load(Relaxed);
        if d < t {
            return;
        }
        if d == t {
            let mut here = p.part.latest.iter().filter(|(_, e)| *e == d);
            if pos == u32::MAX {
                if here.any(|(q, _)| *q == u32::MAX) {
                    return;
                }
            } else if here.count() >= 16 {
                return;
            }
        }
        // Would it load? Read it in full, then take it out again.
        let (n, rejects) = (p.lines.len(), p.rejects.len());
        self.load_row(p, row);
        if p.lines.len() == n {
            p.rejects.truncate(rejects);
            return;
        }
        p.truncate(n);
        p.lines.truncate(n);
        part.threshold.fetch_max(d, Relaxed);
        add_latest(&mut p.part.latest, pos, d);
    }

    /// Whether a row's id in one of the reference columns is wanted.
    fn wanted<'r>(&self, part: &Part, p: &mut Piece, text_of: &dyn Fn(usize) -> &'r str) -> bool {
        if p.part.last.len() != part.via.len() {
            p.part.last = vec![None; part.via.len()];
        }
        part.via.iter().enumerate().any(|(i, (ci, wanted))| {
            let id = text_of(*ci);
            match super::super::pack(id) {
                Some(k) => match p.part.last[i] {
                    Some((last, w)) if last == k => w,
                    _ => {
                        let w = wanted.short.contains(&k);
                        p.part.last[i] = Some((k, w));
                        w
                    }
                },
                None => wanted.long.contains(id),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell that starts with `YYYY-MM-DD` (not followed by a digit) reads as that date or
    /// not at all, whatever follows — as date or date-time, from CSV or a spreadsheet.
    #[test]
    fn a_cell_starting_with_a_date_reads_as_that_date_or_not_at_all() {
        let alphabet = [
            "0", "1", "9", " ", "T", ":", ".", "-", "/", "年", "月", "日", "x", "\t", "５",
        ];
        let mut suffixes = vec![String::new()];
        for _ in 0..3 {
            let more: Vec<String> = suffixes
                .iter()
                .flat_map(|s| alphabet.iter().map(move |a| format!("{s}{a}")))
                .collect();
            suffixes.extend(more);
        }
        suffixes.sort();
        suffixes.dedup();
        for longer in [
            " 09:30",
            " 09:30:00",
            "T09:30:00",
            "T09:30:00.000",
            " 25:00",
            " 00:00:00",
            " 9:30",
            "  09:30",
            " 09:30:00.5",
            "日 09:30",
            ".000",
            " 00:00",
            "T00:00",
        ] {
            suffixes.push(longer.to_string());
        }
        let mut checked = 0;
        for prefix in [
            "2020-02-01",
            "2020-02-00",
            "2020-02-30",
            "2020-13-01",
            "2020-12-31",
            "0000-01-01",
            "9999-12-31",
        ] {
            let date = NaiveDate::parse_from_str(prefix, "%Y-%m-%d").ok();
            let cut = *b"9999-99-99";
            for suffix in &suffixes {
                let text = format!("{prefix}{suffix}");
                if !surely_before(&text, &cut) {
                    assert!(suffix.starts_with(|c: char| c.is_ascii_digit()), "{text}");
                    continue;
                }
                checked += 1;
                for excel in [false, true] {
                    for read in [
                        date_cell(&text, excel).ok(),
                        datetime_cell(&text, excel).ok().map(|d| d.date()),
                    ] {
                        assert!(read.is_none() || read == date, "{text:?} read as {read:?}");
                    }
                }
            }
        }
        assert!(checked > 20_000, "{checked}");
        // And the comparison is the dates'.
        let cut = *b"2020-12-31";
        assert!(surely_before("2020-12-30 23:59", &cut));
        assert!(!surely_before("2020-12-31 00:00", &cut));
        assert!(!surely_before("2021-01-01", &cut));
        assert!(!surely_before("2020/1/5", &cut));
        assert!(!surely_before("2020-01-051", &cut));
    }
}
