//! Data loading: a dataset folder becomes typed, columnar tables checked against the policy
//! set's schema. Every input row is either loaded or rejected with file, row, column and
//! reason; references between tables are resolved to row numbers.

mod load;
pub mod parse;
pub mod source;

use chrono::{NaiveDate, NaiveDateTime};
use indexmap::IndexMap;
use rustc_hash::FxHashMap;
use serde::Serialize;

pub use load::{Focus, FocusInfo, LoadOptions, LoadedTables, RowFilter, load, load_focused};
pub use source::{Chunking, Encoding};

/// An interned id (`M001`, `C03`): cheap to compare and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(pub u32);

impl Sym {
    /// No id: an empty id cell.
    pub const NONE: Sym = Sym(u32::MAX);
    /// Whether this is [`Sym::NONE`].
    pub fn is_none(self) -> bool {
        self == Sym::NONE
    }
}

/// All ids of a dataset, interned once.
///
/// Ids of up to 15 bytes (nearly all: `M00000001`, `CM000175`) are looked up by their bytes
/// packed into one integer, which is much faster to hash and compare than a string.
#[derive(Debug, Default)]
pub struct Interner {
    short: FxHashMap<u128, Sym>,
    long: FxHashMap<std::sync::Arc<str>, Sym>,
    strs: Vec<std::sync::Arc<str>>,
}

/// The bytes of a short string and its length in one integer.
#[inline]
pub(crate) fn pack(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() > 15 {
        return None;
    }
    let mut k = (b.len() as u128) << 120;
    for (i, &c) in b.iter().enumerate() {
        k |= u128::from(c) << (8 * i);
    }
    Some(k)
}

impl Interner {
    /// The symbol of `s`, interning it if it is new.
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(id) = self.get(s) {
            return id;
        }
        let id = Sym(self.strs.len() as u32);
        let shared: std::sync::Arc<str> = s.into();
        self.strs.push(shared.clone());
        match pack(s) {
            Some(k) => {
                self.short.insert(k, id);
            }
            None => {
                self.long.insert(shared, id);
            }
        }
        id
    }

    /// The interned strings, in id order.
    pub fn strings(&self) -> &[std::sync::Arc<str>] {
        &self.strs
    }

    /// Number of ids interned.
    pub fn len(&self) -> usize {
        self.strs.len()
    }

    /// Whether no id is interned.
    pub fn is_empty(&self) -> bool {
        self.strs.is_empty()
    }

    /// The symbol of `s`, if it is interned (never interns).
    #[inline]
    pub fn get(&self, s: &str) -> Option<Sym> {
        match pack(s) {
            Some(k) => self.short.get(&k).copied(),
            None => self.long.get(s).copied(),
        }
    }

    /// The id a symbol stands for; empty for [`Sym::NONE`].
    pub fn resolve(&self, id: Sym) -> &str {
        if id.is_none() {
            ""
        } else {
            &self.strs[id.0 as usize]
        }
    }
}

/// Text cells stored end to end in one buffer (no allocation per cell).
#[derive(Debug, Clone, Default)]
pub struct TextColumn {
    buf: String,
    ends: Vec<usize>,
}

impl TextColumn {
    /// The text of row `row` (empty for an empty cell).
    pub fn get(&self, row: usize) -> &str {
        let start = if row == 0 { 0 } else { self.ends[row - 1] };
        &self.buf[start..self.ends[row]]
    }

    /// Add a row holding `s`.
    pub fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        self.ends.push(self.buf.len());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of text held.
    pub fn bytes_len(&self) -> usize {
        self.buf.len()
    }

    fn reserve_bytes(&mut self, n: usize) {
        self.buf.reserve(n);
    }

    /// The text of each row, in row order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|r| self.get(r))
    }

    fn truncate(&mut self, n: usize) {
        if n < self.ends.len() {
            self.ends.truncate(n);
            self.buf.truncate(self.ends.last().copied().unwrap_or(0));
        }
    }

    /// Move the rows of `other` here (it keeps its buffers, empty, for reuse).
    fn append(&mut self, other: &mut TextColumn) {
        let base = self.buf.len();
        self.buf.push_str(&other.buf);
        self.ends.extend(other.ends.iter().map(|e| e + base));
        other.buf.clear();
        other.ends.clear();
    }

    fn retain(&mut self, keep: &[bool]) {
        let mut out = TextColumn::default();
        for (r, k) in keep.iter().enumerate() {
            if *k {
                out.push(self.get(r));
            }
        }
        *self = out;
    }
}

impl<S: AsRef<str>> FromIterator<S> for TextColumn {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut c = TextColumn::default();
        for s in iter {
            c.push(s.as_ref());
        }
        c
    }
}

/// The values of one column.
#[derive(Debug, Clone)]
pub enum ColumnData {
    /// Interned ids; [`Sym::NONE`] for an empty cell.
    Id(Vec<Sym>),
    /// Text; an empty cell is empty text.
    Text(TextColumn),
    /// Dates; `None` for an empty cell.
    Date(Vec<Option<NaiveDate>>),
    /// Local date-times; `None` for an empty cell.
    DateTime(Vec<Option<NaiveDateTime>>),
    /// Booleans; `None` for an empty cell.
    Bool(Vec<Option<bool>>),
    /// Numbers; `None` for an empty cell.
    Number(Vec<Option<f64>>),
    /// Index into the column's enum values.
    Enum(Vec<Option<u8>>),
}

impl ColumnData {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Id(v) => v.len(),
            ColumnData::Text(v) => v.len(),
            ColumnData::Date(v) => v.len(),
            ColumnData::DateTime(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Number(v) => v.len(),
            ColumnData::Enum(v) => v.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room for `n` more rows.
    fn reserve(&mut self, n: usize) {
        match self {
            ColumnData::Id(v) => v.reserve(n),
            ColumnData::Text(v) => v.ends.reserve(n),
            ColumnData::Date(v) => v.reserve(n),
            ColumnData::DateTime(v) => v.reserve(n),
            ColumnData::Bool(v) => v.reserve(n),
            ColumnData::Number(v) => v.reserve(n),
            ColumnData::Enum(v) => v.reserve(n),
        }
    }

    /// Drop rows from `n` on.
    fn truncate(&mut self, n: usize) {
        match self {
            ColumnData::Id(v) => v.truncate(n),
            ColumnData::Text(v) => v.truncate(n),
            ColumnData::Date(v) => v.truncate(n),
            ColumnData::DateTime(v) => v.truncate(n),
            ColumnData::Bool(v) => v.truncate(n),
            ColumnData::Number(v) => v.truncate(n),
            ColumnData::Enum(v) => v.truncate(n),
        }
    }

    /// Add the rows of `other` (a column of the same type).
    /// Move the rows of `other` (a column of the same type) here; `other` keeps its
    /// buffers, empty, for reuse.
    fn append(&mut self, other: &mut ColumnData) {
        match (self, other) {
            (ColumnData::Id(a), ColumnData::Id(b)) => a.append(b),
            (ColumnData::Text(a), ColumnData::Text(b)) => a.append(b),
            (ColumnData::Date(a), ColumnData::Date(b)) => a.append(b),
            (ColumnData::DateTime(a), ColumnData::DateTime(b)) => a.append(b),
            (ColumnData::Bool(a), ColumnData::Bool(b)) => a.append(b),
            (ColumnData::Number(a), ColumnData::Number(b)) => a.append(b),
            (ColumnData::Enum(a), ColumnData::Enum(b)) => a.append(b),
            _ => debug_assert!(false, "columns of one table keep their types"),
        }
    }

    /// Keep only the rows where `keep` is true.
    fn retain(&mut self, keep: &[bool]) {
        fn r<T>(v: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                let k = keep[i];
                i += 1;
                k
            });
        }
        match self {
            ColumnData::Id(v) => r(v, keep),
            ColumnData::Text(v) => v.retain(keep),
            ColumnData::Date(v) => r(v, keep),
            ColumnData::DateTime(v) => r(v, keep),
            ColumnData::Bool(v) => r(v, keep),
            ColumnData::Number(v) => r(v, keep),
            ColumnData::Enum(v) => r(v, keep),
        }
    }

    /// The date of a date or date-time cell.
    pub fn date(&self, row: usize) -> Option<NaiveDate> {
        match self {
            ColumnData::Date(v) => v[row],
            ColumnData::DateTime(v) => v[row].map(|d| d.date()),
            _ => None,
        }
    }
}

/// A loaded table: typed columns in schema order, plus where each row came from.
#[derive(Debug)]
pub struct Table {
    /// The table's name in the schema (`members`).
    pub name: String,
    /// The file (and sheet) the rows came from; empty for an absent optional table.
    pub file: String,
    /// Line (CSV) or row (XLSX) number of each loaded row.
    pub lines: Vec<u32>,
    /// One column per column of the table's schema, in schema order; one value per loaded row.
    pub columns: Vec<ColumnData>,
    /// Key value → row, for tables with a key.
    pub key_index: FxHashMap<Sym, u32>,
    /// The same as a dense array by symbol number (`u32::MAX`: no row), for fast lookups
    /// while later tables load; symbols added after this table loaded are past its end.
    pub row_by_sym: Vec<u32>,
    /// For each reference column, the row it points at in the referenced table.
    pub refs: Vec<Option<Vec<u32>>>,
}

impl Table {
    /// Number of loaded rows.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no row loaded.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// A row that could not be loaded, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    /// The table's name in the schema.
    pub table: String,
    /// The file (and sheet) the row is in.
    pub file: String,
    /// Line (CSV) or row (XLSX) number of the row.
    pub line: u32,
    /// Column (English name and label) the problem is in, if one.
    pub column: Option<String>,
    /// The offending value as read, if the problem is one value.
    pub value: Option<String>,
    /// Why the row was rejected, for people.
    pub reason: String,
    /// The row's fields as read.
    #[serde(skip)]
    pub raw: Vec<String>,
}

/// Something worth knowing that did not stop a row (exact duplicate, ignored column).
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    /// The file (and sheet) it is about.
    pub file: String,
    /// Line (CSV) or row (XLSX) number; `None` when it is about the file as a whole.
    pub line: Option<u32>,
    /// What was found, for people.
    pub message: String,
}

/// Rows read, loaded and rejected for one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableStats {
    /// The table's name in the schema.
    pub table: String,
    /// The file (and sheet) read; `(absent, optional)` for an optional table with no file.
    pub file: String,
    /// How the file was decoded: `UTF-8`, `GB18030` or `XLSX`; empty when there was no file.
    pub encoding: String,
    /// Data rows read (the header and skipped title lines not counted).
    pub read: u64,
    /// Rows loaded into the table.
    pub loaded: u64,
    /// Rows rejected (each listed in [`Dataset::rejects`]).
    pub rejected: u64,
}

/// A table that could not be read at all: the run stops.
#[derive(Debug, Clone)]
pub struct FatalError {
    /// The file (and sheet), or the data folder, that could not be read.
    pub file: String,
    /// What is wrong, for people.
    pub message: String,
}

impl std::fmt::Display for FatalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// A dataset that cannot be loaded: the problems that stop it, one per table (or one for the
/// data folder).
///
/// Displayed as `rulebook` lists them: one `file: message` line per problem (the command
/// prefixes each with `error: `), then the line with their count.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", show_problems(.problems))]
pub struct Error {
    /// The problems, in the order they were found.
    pub problems: Vec<FatalError>,
}

impl Error {
    /// The number of problems.
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    /// Whether there are no problems (never so for an error a load returns).
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, FatalError> {
        self.problems.iter()
    }
}

impl From<Vec<FatalError>> for Error {
    fn from(problems: Vec<FatalError>) -> Self {
        Error { problems }
    }
}

impl<'a> IntoIterator for &'a Error {
    type Item = &'a FatalError;
    type IntoIter = std::slice::Iter<'a, FatalError>;

    fn into_iter(self) -> Self::IntoIter {
        self.problems.iter()
    }
}

/// [`Error`]'s text: each problem on a line, then how many there are.
fn show_problems(problems: &[FatalError]) -> String {
    let mut out = String::new();
    for p in problems {
        out.push_str(&format!("{p}\n"));
    }
    out.push_str(&format!(
        "the data cannot be evaluated: {} file problem(s)",
        problems.len()
    ));
    out
}

/// A loaded dataset.
#[derive(Debug)]
pub struct Dataset {
    /// The loaded tables by schema name.
    pub tables: IndexMap<String, Table>,
    /// The ids in the id columns of every table, interned once for the whole dataset (a key
    /// column that is not looked up by id is kept as text, see `TableSchema::indexed`).
    pub ids: Interner,
    /// Rows read, loaded and rejected, per table.
    pub stats: Vec<TableStats>,
    /// Every row that could not be loaded.
    pub rejects: Vec<Reject>,
    /// Things worth knowing that did not stop a row.
    pub warnings: Vec<Warning>,
    /// Set when the dataset was loaded for one subject ([`load_focused`]): some tables hold
    /// only the rows that matter to it.
    pub focus: Option<FocusInfo>,
}

impl Dataset {
    /// The latest date anywhere in the loaded data (the default `--as-of`). For a dataset
    /// loaded for one subject, with the rows left out (when that was asked for).
    pub fn latest_date(&self) -> Option<NaiveDate> {
        debug_assert!(self.focus.as_ref().is_none_or(|f| f.latest_known));
        let mut best: Option<NaiveDate> = self.focus.as_ref().and_then(|f| f.latest_left_out);
        for t in self.tables.values() {
            for c in &t.columns {
                let m = match c {
                    ColumnData::Date(v) => v.iter().flatten().max().copied(),
                    ColumnData::DateTime(v) => v.iter().flatten().max().map(|d| d.date()),
                    _ => None,
                };
                if let Some(m) = m {
                    best = Some(best.map_or(m, |b| b.max(m)));
                }
            }
        }
        best
    }

    /// Data rows read, all tables together.
    pub fn total_read(&self) -> u64 {
        self.stats.iter().map(|s| s.read).sum()
    }
    /// Rows loaded, all tables together.
    pub fn total_loaded(&self) -> u64 {
        self.stats.iter().map(|s| s.loaded).sum()
    }
    /// Rows rejected, all tables together.
    pub fn total_rejected(&self) -> u64 {
        self.stats.iter().map(|s| s.rejected).sum()
    }
}
