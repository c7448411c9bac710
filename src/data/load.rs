//! Loading a dataset folder against a [`Schema`]: find each table's file, map headers through
//! aliases, parse every cell, check keys and references, and account for every row.
//! A piece of clean CSV rows is parsed a column at a time; a piece with any problem is parsed
//! row by row, which names each problem (the two give the same rows).

use super::parse;
use super::source::{self, Chunking, Encoding, Row, SourceKind, TableSink, TableSource};
use super::*;
use crate::policy::model::ColumnType;
use crate::policy::{ColumnSchema, Schema, TableSchema};
use rayon::prelude::*;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

mod focus;
pub use focus::{Focus, FocusInfo, LoadedTables, RowFilter, load_focused};

/// Ids new to a table are numbered locally with this bit set, then merged into the
/// dataset's ids once the table is loaded (tables of a wave load in parallel).
const LOCAL: u32 = 1 << 31;

/// What loading one table produced besides the table itself.
struct Done {
    local: Interner,
    rejects: Vec<Reject>,
    warnings: Vec<Warning>,
    stats: Option<TableStats>,
    /// Keys of this table's rejected rows (for messages of tables that reference them).
    rejected_keys: HashMap<Sym, u32>,
    /// For a table loaded in part: what that concluded.
    part: Option<focus::Outcome>,
}

/// A loaded table and what came with it, or why the file cannot be read.
type Loaded = Result<(Table, Done), String>;

/// Options for loading a dataset.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// How CSV bytes are decoded.
    pub encoding: Encoding,
    /// How CSV files are cut for parallel reading.
    pub chunking: Chunking,
    /// Where progress goes (bytes read).
    pub progress: crate::progress::Reporter,
    /// Parse every row on its own, never a clean piece a column at a time (the two give the
    /// same dataset; this is for tests and comparisons).
    pub row_by_row: bool,
}

fn norm(s: &str) -> String {
    s.trim().trim_start_matches('\u{FEFF}').to_lowercase()
}

/// Which table a file stem or sheet name stands for.
fn table_for<'a>(schema: &'a Schema, name: &str) -> Option<&'a TableSchema> {
    let n = norm(name);
    schema
        .tables
        .values()
        .find(|t| norm(&t.name) == n || t.aliases.iter().any(|a| norm(a) == n))
}

/// Find the source of each table in `dir`.
pub(super) fn discover(
    dir: &Path,
    schema: &Schema,
    warnings: &mut Vec<Warning>,
) -> Result<IndexMap<String, TableSource>, Vec<FatalError>> {
    let mut errors = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![FatalError {
            file: dir.display().to_string(),
            message: format!("cannot open the data folder: {e}"),
        }]
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut found: IndexMap<String, TableSource> = IndexMap::new();
    let mut claim = |table: &str, src: TableSource, errors: &mut Vec<FatalError>| {
        if let Some(prev) = found.get(table) {
            errors.push(FatalError {
                file: src.display(),
                message: format!(
                    "table `{table}` is given twice: {} and {}; keep one",
                    prev.display(),
                    src.display()
                ),
            });
        } else {
            found.insert(table.to_string(), src);
        }
    };
    for path in paths {
        let fname = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if fname.starts_with('.') || fname.starts_with("~$") {
            continue;
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        match ext.as_str() {
            "csv" | "parquet" => match table_for(schema, &stem) {
                Some(t) => claim(
                    &t.name,
                    TableSource {
                        path: path.clone(),
                        kind: if ext == "csv" {
                            SourceKind::Csv
                        } else {
                            SourceKind::Parquet
                        },
                    },
                    &mut errors,
                ),
                None => warnings.push(Warning {
                    file: fname.clone(),
                    line: None,
                    message: format!(
                        "not a table of this policy set, ignored (tables: {})",
                        schema.tables.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                }),
            },
            "xlsx" | "xlsm" | "xls" | "ods" => {
                let sheets = match source::sheet_names(&path) {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push(FatalError {
                            file: fname.clone(),
                            message: e,
                        });
                        continue;
                    }
                };
                let mut any = false;
                for s in &sheets {
                    if let Some(t) = table_for(schema, s) {
                        any = true;
                        claim(
                            &t.name,
                            TableSource {
                                path: path.clone(),
                                kind: SourceKind::Sheet(s.clone()),
                            },
                            &mut errors,
                        );
                    }
                }
                if !any {
                    match (table_for(schema, &stem), sheets.first()) {
                        (Some(t), Some(first)) if sheets.len() == 1 => claim(
                            &t.name,
                            TableSource {
                                path: path.clone(),
                                kind: SourceKind::Sheet(first.clone()),
                            },
                            &mut errors,
                        ),
                        _ => warnings.push(Warning {
                            file: fname.clone(),
                            line: None,
                            message: format!(
                                "no sheet is named like a table ({}), ignored",
                                sheets.join(", ")
                            ),
                        }),
                    }
                }
            }
            "md" | "txt" | "json" => {}
            _ => warnings.push(Warning {
                file: fname.clone(),
                line: None,
                message: "not a .csv, .xlsx or .parquet file, ignored".into(),
            }),
        }
    }
    for t in schema.tables.values() {
        if !found.contains_key(&t.name) && !t.optional {
            let mut names = vec![format!("{}.csv", t.name)];
            names.extend(t.aliases.iter().map(|a| format!("{a}.csv")));
            errors.push(FatalError {
                file: dir.display().to_string(),
                message: format!("no file for table `{}` ({}); expected one of: {} (or .parquet), or an .xlsx sheet of that name", t.name, t.label, names.join(", ")),
            });
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// Tables ordered so that every referenced table comes before the tables that reference it.
pub(super) fn dependency_order(schema: &Schema) -> Vec<&TableSchema> {
    let mut out: Vec<&TableSchema> = Vec::new();
    let mut placed = std::collections::HashSet::new();
    let mut remaining: Vec<&TableSchema> = schema.tables.values().collect();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|t| {
            let ready = t
                .columns
                .iter()
                .filter_map(|c| c.references.as_deref())
                .all(|r| r == t.name || placed.contains(r) || !schema.tables.contains_key(r));
            if ready {
                placed.insert(t.name.clone());
                out.push(t);
            }
            !ready
        });
        if remaining.len() == before {
            // A reference cycle: load the rest in declaration order.
            out.append(&mut remaining);
        }
    }
    out
}

/// Load the dataset in `dir`.
pub fn load(dir: &Path, schema: &Schema, opts: &LoadOptions) -> Result<Dataset, Error> {
    load_with(dir, schema, opts, None)
        .map(|ds| ds.expect("a whole dataset is never given up for a subject"))
}

/// [`load`], or with `focusing` [`load_focused`].
fn load_with(
    dir: &Path,
    schema: &Schema,
    opts: &LoadOptions,
    focusing: Option<focus::Focusing>,
) -> Result<Option<Dataset>, Error> {
    let mut warnings = Vec::new();
    let sources = discover(dir, schema, &mut warnings)?;
    let total: u64 = sources
        .values()
        .filter_map(|s| std::fs::metadata(&s.path).ok())
        .map(|m| m.len())
        .sum();
    opts.progress.start(crate::progress::Stage::Loading, total);
    let mut ds = Dataset {
        tables: IndexMap::new(),
        ids: Interner::default(),
        stats: Vec::new(),
        rejects: Vec::new(),
        warnings,
        focus: None,
    };
    let mut fatal = Vec::new();
    // Tables loaded in part, and what that concluded.
    let mut parts: Vec<(String, focus::Outcome)> = Vec::new();
    let mut loaded: HashMap<String, Table> = HashMap::new();
    // Keys of rejected rows, so dependents can say why a reference fails.
    let mut rejected_keys: HashMap<String, HashMap<Sym, u32>> = HashMap::new();
    // Tables load in waves: every table whose referenced tables are loaded goes into the
    // next wave, and the tables of a wave load in parallel.
    let mut remaining: Vec<&TableSchema> = dependency_order(schema);
    while !remaining.is_empty() {
        let ready = |t: &&TableSchema| {
            t.columns
                .iter()
                .filter_map(|c| c.references.as_deref())
                .all(|r| r == t.name || loaded.contains_key(r) || !schema.tables.contains_key(r))
        };
        let mut wave: Vec<&TableSchema> = remaining.iter().copied().filter(ready).collect();
        if wave.is_empty() {
            wave.push(remaining[0]); // a reference cycle: load one at a time
        }
        remaining.retain(|t| !wave.iter().any(|w| w.name == t.name));
        let global = &ds.ids;
        let results: Vec<(&TableSchema, Loaded)> = wave
            .par_iter()
            .map(|ts| {
                let r = match sources.get(&ts.name) {
                    None => Ok(absent_table(ts)),
                    Some(src) => load_table(
                        src,
                        opts,
                        &TableInputs {
                            ts,
                            schema,
                            global,
                            loaded: &loaded,
                            rejected_keys: &rejected_keys,
                            progress: &*opts.progress,
                            focusing: focusing.as_ref(),
                        },
                    ),
                };
                (*ts, r)
            })
            .collect();
        for (ts, r) in results {
            match r {
                Ok((mut t, mut part)) => {
                    if let Some(outcome) = part.part.take() {
                        parts.push((ts.name.clone(), outcome));
                    }
                    let keys = merge(&mut ds, ts, &mut t, part);
                    rejected_keys.insert(ts.name.clone(), keys);
                    loaded.insert(ts.name.clone(), t);
                }
                Err(message) => fatal.push(FatalError {
                    file: sources
                        .get(&ts.name)
                        .map(|s| s.display())
                        .unwrap_or_default(),
                    message,
                }),
            }
        }
        if !fatal.is_empty() {
            break;
        }
    }
    opts.progress.finish(fatal.is_empty());
    if !fatal.is_empty() {
        return Err(fatal.into());
    }
    for name in schema.tables.keys() {
        if let Some(t) = loaded.remove(name) {
            ds.tables.insert(name.clone(), t);
        }
    }
    let order: HashMap<&str, usize> = schema
        .tables
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    ds.stats
        .sort_by_key(|s| order.get(s.table.as_str()).copied().unwrap_or(usize::MAX));
    ds.rejects.sort_by(|a, b| {
        (order.get(a.table.as_str()), a.line).cmp(&(order.get(b.table.as_str()), b.line))
    });
    if let Some(f) = focusing {
        // Give up when a row left out may change a kept row, or the latest date.
        if parts.iter().any(|(_, o)| o.ambiguous) {
            return Ok(None);
        }
        let latest =
            parts
                .iter()
                .filter_map(|(_, o)| o.latest)
                .reduce(|a, b| match a.0.cmp(&b.0) {
                    std::cmp::Ordering::Less => b,
                    std::cmp::Ordering::Greater => a,
                    std::cmp::Ordering::Equal => (a.0, a.1 || b.1),
                });
        if f.latest && latest.is_some_and(|(_, certain)| !certain) {
            return Ok(None);
        }
        ds.focus = Some(FocusInfo {
            partial: parts.into_iter().map(|(name, _)| name).collect(),
            latest_known: f.latest,
            latest_left_out: latest.and_then(|(d, _)| focus::from_days(d)),
        });
    }
    Ok(Some(ds))
}

/// Fold a table's part into the dataset: give its new ids dataset-wide numbers, and keep
/// its rejects, warnings and counts. Returns the keys of its rejected rows.
fn merge(ds: &mut Dataset, ts: &TableSchema, t: &mut Table, part: Done) -> HashMap<Sym, u32> {
    let map: Vec<Sym> = part.local.strings().map(|s| ds.ids.intern(s)).collect();
    let remap = |s: Sym| {
        if !s.is_none() && s.0 & LOCAL != 0 {
            map[(s.0 & !LOCAL) as usize]
        } else {
            s
        }
    };
    if !map.is_empty() {
        for c in t.columns.iter_mut() {
            if let ColumnData::Id(v) = c {
                for s in v.iter_mut() {
                    *s = remap(*s);
                }
            }
        }
    }
    // Rows by key symbol, dense, for the tables loaded after this one.
    if let Some(k) = ts.key
        && let ColumnData::Id(v) = &t.columns[k]
    {
        let mut by_sym = vec![u32::MAX; ds.ids.len()];
        for (i, s) in v.iter().enumerate() {
            if let Some(slot) = by_sym.get_mut(s.0 as usize) {
                *slot = i as u32;
            }
        }
        t.row_by_sym = by_sym;
    }
    ds.rejects.extend(part.rejects);
    ds.warnings.extend(part.warnings);
    ds.stats.extend(part.stats);
    part.rejected_keys
        .into_iter()
        .map(|(k, v)| (remap(k), v))
        .collect()
}

pub(super) fn empty_table(ts: &TableSchema) -> Table {
    Table {
        name: ts.name.clone(),
        file: String::new(),
        lines: Lines::default(),
        columns: ts.columns.iter().map(|c| empty_column(c.ty)).collect(),
        row_by_sym: Vec::new(),
    }
}

fn empty_column(ty: ColumnType) -> ColumnData {
    match ty {
        ColumnType::Id => ColumnData::Id(Vec::new()),
        ColumnType::Text => ColumnData::Text(TextColumn::default()),
        ColumnType::Date => ColumnData::Date(Vec::new()),
        ColumnType::Datetime => ColumnData::DateTime(DateTimes::default()),
        ColumnType::Bool => ColumnData::Bool(Vec::new()),
        ColumnType::Number => ColumnData::Number(Numbers::default()),
        ColumnType::Enum => ColumnData::Enum(Vec::new()),
    }
}

/// The words (names and aliases, as written and normalized) of an enum or bool column.
#[derive(Default)]
struct Words {
    /// Words of up to 15 bytes, packed into an integer, in a table of their own: open
    /// addressing by a multiplicative hash, at most a quarter full (a word is found at
    /// its first slot, nearly always; zero, the empty word, marks a free slot).
    slots: Vec<(u128, u8)>,
    long: FxHashMap<String, u8>,
}

impl Words {
    #[inline(always)]
    fn slot(&self, k: u128) -> usize {
        let x = (k as u64 ^ (k >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (x >> 32) as usize & (self.slots.len() - 1)
    }

    fn insert(&mut self, w: String, i: u8) {
        match super::pack(&w) {
            Some(0) => {}
            Some(k) => {
                let used = self.slots.iter().filter(|s| s.0 != 0).count();
                if (used + 1) * 4 > self.slots.len() {
                    let old = std::mem::replace(
                        &mut self.slots,
                        vec![(0, 0); ((used + 1) * 4).next_power_of_two().max(16)],
                    );
                    for (k, i) in old.into_iter().filter(|s| s.0 != 0) {
                        self.place(k, i);
                    }
                }
                self.place(k, i);
            }
            None => {
                self.long.entry(w).or_insert(i);
            }
        }
    }

    /// Put `k` in its slot, unless it is there (the first value of a word wins).
    fn place(&mut self, k: u128, i: u8) {
        let mut at = self.slot(k);
        while self.slots[at].0 != 0 {
            if self.slots[at].0 == k {
                return;
            }
            at = (at + 1) & (self.slots.len() - 1);
        }
        self.slots[at] = (k, i);
    }

    #[inline]
    fn get(&self, w: &str) -> Option<u8> {
        match super::pack(w) {
            Some(k) if !self.slots.is_empty() && k != 0 => {
                let mut at = self.slot(k);
                loop {
                    let (x, i) = self.slots[at];
                    if x == k {
                        return Some(i);
                    }
                    if x == 0 {
                        return None;
                    }
                    at = (at + 1) & (self.slots.len() - 1);
                }
            }
            Some(_) => None,
            None => self.long.get(w).copied(),
        }
    }
}

fn column_words(col: &ColumnSchema) -> Option<Words> {
    if !matches!(col.ty, ColumnType::Enum | ColumnType::Bool) || col.values.is_empty() {
        return None;
    }
    let mut m = Words::default();
    for (i, (k, aliases)) in col.values.iter().enumerate() {
        for w in std::iter::once(k).chain(aliases) {
            m.insert(w.trim().to_string(), i as u8);
            m.insert(norm(w), i as u8);
        }
    }
    Some(m)
}

/// Parse one cell and push it onto its column `out`; `Err` is the reason it cannot be read.
/// Ids are interned (in the dataset's `global` symbols, else this table's `local` ones);
/// `last` is the column's previous id, as a run of equal ids is interned once.
fn push_cell(
    col: &ColumnSchema,
    words: Option<&Words>,
    (text, excel): (&str, bool),
    (global, local): (&Interner, &mut Interner),
    out: &mut ColumnData,
    last: &mut Option<(u128, Sym)>,
) -> Result<(), String> {
    let empty = text.is_empty();
    if empty && col.required {
        return Err("a value is required here but the cell is empty".into());
    }
    match out {
        ColumnData::Id(v) => v.push(if empty {
            Sym::NONE
        } else {
            id_cell(text, global, local, last)
        }),
        ColumnData::Text(v) => v.push(text),
        ColumnData::Date(v) => v.push(if empty {
            None
        } else {
            Some(date_cell(text, excel)?)
        }),
        ColumnData::DateTime(v) => v.push_secs(if empty {
            None
        } else {
            Some(datetime_secs_cell(text, excel)?)
        }),
        ColumnData::Bool(v) => v.push(if empty {
            None
        } else {
            Some(bool_cell(col, words, text)?)
        }),
        ColumnData::Number(v) => v.push(if empty {
            None
        } else {
            Some(number_cell(text)?)
        }),
        ColumnData::Enum(v) => v.push(if empty {
            None
        } else {
            Some(enum_cell(col, words, text)?)
        }),
    }
    Ok(())
}

/// A (non-empty) id cell's symbol: the dataset's, or one new to this table in `local`;
/// `last` is the column's previous id, as a run of equal ids is interned once.
#[inline]
fn id_cell(
    text: &str,
    global: &Interner,
    local: &mut Interner,
    last: &mut Option<(u128, Sym)>,
) -> Sym {
    match (super::pack(text), *last) {
        (Some(k), Some((lk, sym))) if k == lk => sym,
        (Some(k), _) => {
            let sym = intern(global, local, text);
            *last = Some((k, sym));
            sym
        }
        (None, _) => intern(global, local, text),
    }
}

/// The value number of an enum or yes/no word (as written, else normalized).
#[inline]
fn word(words: Option<&Words>, text: &str) -> Option<u8> {
    words.and_then(|w| w.get(text).or_else(|| w.get(&norm(text))))
}

/// A (non-empty) yes/no cell; `Err` is why it cannot be read.
#[inline]
fn bool_cell(col: &ColumnSchema, words: Option<&Words>, text: &str) -> Result<bool, String> {
    parse::parse_bool(text)
        .or_else(|| word(words, text).map(|i| col.values[i as usize].0 == "true"))
        .ok_or_else(|| format!("`{text}` is not yes/no; write true/false, 1/0, yes/no or 是/否"))
}

/// A (non-empty) number cell; `Err` is why it cannot be read.
#[inline]
fn number_cell(text: &str) -> Result<f64, String> {
    parse::parse_number(text).ok_or_else(|| format!("`{text}` is not a number"))
}

/// A (non-empty) enum cell's value number; `Err` is why it cannot be read.
#[inline]
fn enum_cell(col: &ColumnSchema, words: Option<&Words>, text: &str) -> Result<u8, String> {
    word(words, text).ok_or_else(|| {
        let allowed: Vec<String> = col
            .values
            .iter()
            .map(|(k, al)| {
                if al.is_empty() {
                    k.clone()
                } else {
                    format!("{k} ({})", al.join("/"))
                }
            })
            .collect();
        let hint = crate::diag::did_you_mean(
            text,
            col.values.iter().flat_map(|(k, al)| {
                std::iter::once(k.as_str()).chain(al.iter().map(|s| s.as_str()))
            }),
        )
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
        format!(
            "`{text}` is not one of the allowed values: {}{hint}",
            allowed.join(", ")
        )
    })
}

/// A (non-empty) date-time cell as seconds since 1970; `Err` is why it cannot be read.
#[inline]
fn datetime_secs_cell(text: &str, excel: bool) -> Result<i64, String> {
    match crate::dates::iso_datetime_secs(text) {
        Some(secs) => Ok(secs),
        None => Ok(datetime_secs(datetime_cell(text, excel)?)),
    }
}

/// A (non-empty) date cell; `Err` is why it cannot be read.
fn date_cell(text: &str, excel: bool) -> Result<NaiveDate, String> {
    crate::dates::parse_date_lenient(text)
        .or_else(|| {
            excel
                .then(|| crate::dates::excel_serial_date(text).map(|d| d.date()))
                .flatten()
        })
        .ok_or_else(|| format!("`{text}` is not a date; write 2020-02-07 or 2020/2/7"))
}

/// A (non-empty) date-time cell; `Err` is why it cannot be read.
fn datetime_cell(text: &str, excel: bool) -> Result<NaiveDateTime, String> {
    crate::dates::parse_datetime(text)
        .or_else(|| {
            excel
                .then(|| crate::dates::excel_serial_date(text))
                .flatten()
        })
        // A spreadsheet date cell at midnight is shown as a bare date.
        .or_else(|| {
            excel
                .then(|| crate::dates::parse_date(text).map(|d| d.and_time(chrono::NaiveTime::MIN)))
                .flatten()
        })
        .ok_or_else(|| {
            if crate::dates::parse_date(text).is_some() {
                format!("`{text}` has a date but no time; write 2020-02-07 09:30")
            } else {
                format!("`{text}` is not a date and time; write 2020-02-07 09:30 or 2020/2/7 9:30")
            }
        })
}

/// A rejected row: where, which cell, why, and its fields.
fn reject(
    ts: &TableSchema,
    file: &str,
    line: u32,
    col: Option<&ColumnSchema>,
    value: Option<&str>,
    reason: String,
    raw: Vec<String>,
) -> Reject {
    Reject {
        table: ts.name.clone(),
        file: file.to_string(),
        line,
        column: col.map(|c| c.display()),
        value: value.map(|v| v.to_string()),
        reason,
        raw,
    }
}

/// A row's fields as kept with a reject (long fields shortened).
fn raw_fields(fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .map(|f| {
            if f.len() > 200 {
                format!("{}…", f.chars().take(100).collect::<String>())
            } else {
                f.to_string()
            }
        })
        .collect()
}

/// Rows of one piece of a table's file, parsed on one thread; pieces are absorbed in file
/// order into the table's own piece.
struct Piece {
    /// Ids new to this table (symbols carry the `LOCAL` bit).
    local: Interner,
    columns: Vec<ColumnData>,
    lines: Lines,
    /// Per loaded row: the hash of its key (keys kept as text) or of all its fields (tables
    /// without a key), for finding duplicates once all pieces are in.
    hashes: Vec<u64>,
    rejects: Vec<Reject>,
    warnings: Vec<Warning>,
    /// Keys of rejected rows (for messages of tables that reference them).
    rejected_keys: HashMap<Sym, u32>,
    read: u64,
    /// Per column: the last id and its symbol (rows of one member usually come together).
    last: Vec<Option<(u128, Sym)>>,
    /// Per reference column: the last symbol and the row it points at.
    last_ref: Vec<Option<(Sym, u32)>>,
    /// Rows left out of a table loaded in part.
    part: focus::PiecePart,
    /// Field bounds of the text being parsed a column at a time (kept for its room).
    bounds: Vec<u32>,
}

impl Piece {
    fn reserve(&mut self, rows: usize) {
        for c in self.columns.iter_mut() {
            c.reserve(rows);
        }
        self.lines.reserve(rows);
        self.hashes.reserve(rows);
    }

    /// Drop the cells pushed for a row that is then rejected.
    fn truncate(&mut self, n: usize) {
        for c in self.columns.iter_mut() {
            c.truncate(n);
        }
        self.hashes.truncate(n);
    }

    /// Empty again (keeping its room), as before its first row.
    fn clear(&mut self) {
        self.truncate(0);
        self.lines = Lines::default();
        self.local = Interner::default();
        self.last.iter_mut().for_each(|l| *l = None);
        self.last_ref.iter_mut().for_each(|l| *l = None);
    }
}

/// Loads one table: the header maps columns, then rows are parsed piece by piece.
struct TableLoader<'x> {
    ts: &'x TableSchema,
    file: String,
    schema: &'x Schema,
    global: &'x Interner,
    /// Keys of rejected rows of tables already loaded (by table).
    rejected_keys: &'x HashMap<String, HashMap<Sym, u32>>,
    field_of: Vec<Option<usize>>,
    header_len: usize,
    from_excel: bool,
    encoding: &'static str,
    /// Per column: enum/bool words.
    words: Vec<Option<Words>>,
    /// Per column: the already loaded table it references (not this table).
    targets: Vec<Option<&'x Table>>,
    /// The key is kept as text, not interned: no table references it.
    text_key: bool,
    /// Hash exact rows (tables without a key) to warn about duplicates.
    hash_rows: bool,
    header_warnings: Vec<Warning>,
    acc: std::sync::Mutex<Option<Piece>>,
    /// Emptied pieces, to be filled again.
    pool: std::sync::Mutex<Vec<Piece>>,
    /// Rows expected in all (from the first window), to size the table once.
    reserve: usize,
    /// Loading for one subject: which rows to keep (`None`: all).
    part: Option<focus::Part<'x>>,
    /// Rows expected in all, for the key hashes of a table loaded in part.
    expected: usize,
    progress: &'x dyn crate::progress::Progress,
    /// Never parse a piece a column at a time ([`LoadOptions::row_by_row`]).
    row_by_row: bool,
}

/// An id as a symbol: the dataset's, or one new to this table.
fn intern(global: &Interner, local: &mut Interner, s: &str) -> Sym {
    match global.get(s) {
        Some(sym) => sym,
        None => Sym(local.intern(s).0 | LOCAL),
    }
}

fn resolve<'a>(global: &'a Interner, local: &'a Interner, sym: Sym) -> &'a str {
    if !sym.is_none() && sym.0 & LOCAL != 0 {
        local.resolve(Sym(sym.0 & !LOCAL))
    } else {
        global.resolve(sym)
    }
}

impl TableSink for TableLoader<'_> {
    type Piece = Piece;

    fn is_header(&self, fields: &[String]) -> bool {
        let names: Vec<String> = fields.iter().map(|f| norm(f)).collect();
        self.ts.columns.iter().filter(|c| c.required).all(|c| {
            names.iter().any(|n| {
                *n == norm(&c.name)
                    || *n == norm(&c.label)
                    || c.aliases.iter().any(|a| norm(a) == *n)
            })
        })
    }

    fn skipped(&mut self, line: u32, text: &str) {
        let shown: String = text.chars().take(60).collect();
        self.header_warnings.push(Warning {
            file: self.file.clone(),
            line: Some(line),
            message: format!("line before the header skipped (a title?): `{shown}`"),
        });
    }

    fn header(
        &mut self,
        header: &[String],
        header_line: u32,
        encoding: &'static str,
        from_excel: bool,
    ) -> Result<(), String> {
        let ts = self.ts;
        self.encoding = encoding;
        self.from_excel = from_excel;
        self.header_len = header.len();
        let field_of = &mut self.field_of;
        for (fi, h) in header.iter().enumerate() {
            let n = norm(h);
            if n.is_empty() {
                continue;
            }
            let ci = ts.columns.iter().position(|c| {
                norm(&c.name) == n || norm(&c.label) == n || c.aliases.iter().any(|a| norm(a) == n)
            });
            match ci {
                Some(ci) => {
                    if let Some(prev) = field_of[ci] {
                        return Err(format!(
                            "line {header_line}: columns {} (`{}`) and {} (`{h}`) both mean {}; keep one",
                            prev + 1,
                            header[prev],
                            fi + 1,
                            ts.columns[ci].display()
                        ));
                    }
                    field_of[ci] = Some(fi);
                }
                None => {
                    let hint = crate::diag::did_you_mean(
                        h,
                        ts.columns.iter().flat_map(|c| {
                            std::iter::once(c.name.as_str())
                                .chain(c.aliases.iter().map(|s| s.as_str()))
                        }),
                    )
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                    self.header_warnings.push(Warning {
                        file: self.file.to_string(),
                        line: Some(header_line),
                        message: format!(
                            "column {} `{h}` is not part of table `{}`, ignored{hint}",
                            fi + 1,
                            ts.name
                        ),
                    });
                }
            }
        }
        let missing: Vec<String> = ts
            .columns
            .iter()
            .zip(field_of.iter())
            .filter(|(c, f)| f.is_none() && c.required)
            .map(|(c, _)| {
                let mut words = vec![c.name.clone()];
                words.extend(c.aliases.iter().cloned());
                format!("{} (header: {})", c.display(), words.join(" / "))
            })
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "line {header_line}: required column(s) missing: {}",
                missing.join("; ")
            ));
        }
        Ok(())
    }

    fn reserve(&mut self, rows: usize) {
        // A table loaded in part keeps few of its rows (but maybe every row's key hash).
        match &self.part {
            None => self.reserve = rows,
            Some(part) => self.expected = rows * usize::from(part.hash_keys),
        }
    }

    fn piece(&self, rows: usize) -> Piece {
        let mut p = self
            .pool
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_else(|| self.empty_piece());
        p.reserve(rows);
        p
    }

    fn row(&self, p: &mut Piece, row: Row<'_>) {
        p.read += 1;
        match &self.part {
            Some(part) => self.focused_row(part, p, row),
            None => self.load_row(p, row),
        }
    }

    fn rows(&self, p: &mut Piece, text: &str, first: u32) {
        if self.part.is_none() && !self.row_by_row && self.load_columns(p, text, first) {
            return;
        }
        source::simple_rows(text, first, &mut |row| self.row(p, row));
    }

    fn absorb(&self, p: Piece) {
        self.absorb_piece(p)
    }

    fn progress(&self, bytes: u64) {
        self.progress.advance(bytes);
    }
}

impl TableLoader<'_> {
    /// Load the rows of `text` (simple text, the first line numbered `first`) a column at a
    /// time: the fields of every row are found first, then each column is parsed in one
    /// loop of its type, then the rows are checked (later-than partners, references) a
    /// check at a time. This applies only to a piece of clean rows: when any line is not
    /// a full row (blank, too few or too many fields, undecodable bytes, a field too long)
    /// or any cell or check fails, the piece is emptied again and `false` returned, and
    /// its rows are then loaded one at a time ([`load_row`](Self::load_row)), which says
    /// what is wrong with each. For the rows it loads, both give the same piece.
    fn load_columns(&self, p: &mut Piece, text: &str, first: u32) -> bool {
        let b = text.as_bytes();
        if !p.lines.is_empty()
            || self.header_len == 0
            || b.len() > source::MAX_FIELD
            || memchr::memmem::find(b, "\u{FFFD}".as_bytes()).is_some()
        {
            return false;
        }
        let mut bounds = std::mem::take(&mut p.bounds);
        let loaded = split_fields(b, self.header_len, &mut bounds)
            && self.parse_columns(p, text, &bounds, first);
        if !loaded {
            p.clear();
        }
        p.bounds = bounds;
        loaded
    }

    /// The rows whose fields `bounds` holds (see [`split_fields`]) into the empty piece `p`,
    /// column by column; `false` at the first cell or check that fails (`p` is then left
    /// part-filled).
    fn parse_columns(&self, p: &mut Piece, text: &str, bounds: &[u32], first: u32) -> bool {
        let ts = self.ts;
        let h = self.header_len;
        let stride = h;
        let n = (bounds.len() - 1) / stride;
        let excel = self.from_excel;
        let fields = Fields {
            text,
            bounds,
            stride,
        };
        let cell = |r: usize, fi: usize| fields.get(r, fi);
        // A line of only empty fields is skipped by the row-by-row reader: unless a
        // required column would turn it away anyway, look for one.
        let guarded = ts
            .columns
            .iter()
            .zip(&self.field_of)
            .any(|(c, f)| c.required && f.is_some());
        if !guarded && (0..n).any(|r| (0..h).all(|fi| cell(r, fi).is_empty())) {
            return false;
        }
        let Piece {
            columns,
            local,
            last,
            last_ref,
            hashes,
            lines,
            ..
        } = p;
        // Ids row by row (over the id columns only), so new ids are numbered in the order
        // the row-by-row reader meets them.
        let ids: Vec<(usize, usize, bool)> = ts
            .columns
            .iter()
            .enumerate()
            .filter(|(ci, _)| matches!(columns[*ci], ColumnData::Id(_)))
            .filter_map(|(ci, c)| self.field_of[ci].map(|fi| (ci, fi, c.required)))
            .collect();
        for r in 0..n {
            for &(ci, fi, required) in &ids {
                let t = cell(r, fi);
                let ColumnData::Id(v) = &mut columns[ci] else {
                    return false;
                };
                v.push(if t.is_empty() {
                    if required {
                        return false;
                    }
                    Sym::NONE
                } else {
                    id_cell(t, self.global, local, &mut last[ci])
                });
            }
        }
        for (ci, col) in ts.columns.iter().enumerate() {
            let words = self.words[ci].as_ref();
            let Some(fi) = self.field_of[ci] else {
                // A column the file does not have: every cell empty.
                for _ in 0..n {
                    let out = &mut columns[ci];
                    if push_cell(
                        col,
                        words,
                        ("", excel),
                        (self.global, local),
                        out,
                        &mut last[ci],
                    )
                    .is_err()
                    {
                        return false;
                    }
                }
                continue;
            };
            let required = col.required;
            // Each loop: the cell, `None` when empty (if it may be), else the parsed value.
            macro_rules! each {
                ($v:ident, $parse:expr) => {
                    each!($v.push, $parse)
                };
                ($v:ident . $push:ident, $parse:expr) => {
                    for r in 0..n {
                        let t = cell(r, fi);
                        if t.is_empty() {
                            if required {
                                return false;
                            }
                            $v.$push(None);
                        } else {
                            match $parse(t) {
                                Ok(x) => $v.$push(Some(x)),
                                Err(_) => return false,
                            }
                        }
                    }
                };
            }
            match &mut columns[ci] {
                ColumnData::Id(_) => {}
                ColumnData::Text(v) => {
                    for r in 0..n {
                        let t = cell(r, fi);
                        if t.is_empty() && required {
                            return false;
                        }
                        v.push(t);
                    }
                }
                ColumnData::Date(v) => each!(v, |t| date_cell(t, excel)),
                ColumnData::DateTime(v) => each!(v.push_secs, |t| datetime_secs_cell(t, excel)),
                ColumnData::Bool(v) => each!(v, |t| bool_cell(col, words, t)),
                ColumnData::Number(v) => each!(v, number_cell),
                ColumnData::Enum(v) => each!(v, |t| enum_cell(col, words, t)),
            }
        }
        // A later column (end) must be after its partner (start).
        for (ci, col) in ts.columns.iter().enumerate() {
            let Some(ai) = col.after else { continue };
            let after = match (&columns[ci], &columns[ai]) {
                (ColumnData::DateTime(e), ColumnData::DateTime(s)) => {
                    (0..n).all(|r| e.secs(r).zip(s.secs(r)).is_none_or(|(e, s)| e > s))
                }
                (ColumnData::Date(e), ColumnData::Date(s)) => {
                    (0..n).all(|r| e[r].zip(s[r]).is_none_or(|(e, s)| e > s))
                }
                (ColumnData::Number(e), ColumnData::Number(s)) => {
                    (0..n).all(|r| e.get(r).zip(s.get(r)).is_none_or(|(e, s)| e > s))
                }
                _ => true,
            };
            if !after {
                return false;
            }
        }
        // References resolve to loaded rows of other tables.
        for ci in 0..ts.columns.len() {
            let Some(tt) = self.targets[ci] else { continue };
            let ColumnData::Id(v) = &columns[ci] else {
                continue;
            };
            for &sym in v.iter() {
                if sym.is_none() {
                    continue;
                }
                if let Some((s, _)) = last_ref[ci]
                    && s == sym
                {
                    continue;
                }
                match tt.row_by_sym.get(sym.0 as usize).copied() {
                    Some(row) if row != u32::MAX => last_ref[ci] = Some((sym, row)),
                    _ => return false,
                }
            }
        }
        let text_of = |r: usize, ci: usize| self.field_of[ci].map_or("", |fi| cell(r, fi));
        if self.text_key
            && let Some(k) = ts.key
        {
            hashes.extend((0..n).map(|r| hash_one(text_of(r, k))));
        } else if self.hash_rows {
            hashes.extend((0..n).map(|r| {
                let mut h = rustc_hash::FxHasher::default();
                for ci in 0..ts.columns.len() {
                    text_of(r, ci).hash(&mut h);
                }
                mix(h.finish())
            }));
        }
        lines.push_run(first, n as u32);
        p.read += n as u64;
        true
    }

    /// Parse a row, check it, and load it into `p` or reject it.
    fn load_row(&self, p: &mut Piece, row: Row<'_>) {
        let ts = self.ts;
        if let Some(problem) = &row.problem {
            // A field too long to read names its column.
            let col = row
                .fields
                .iter()
                .position(|f| f.len() > 1 << 20)
                .and_then(|fi| self.field_of.iter().position(|x| *x == Some(fi)));
            self.reject_row(p, &row, col, None, problem.clone(), true);
            return;
        }
        let header_len = self.header_len;
        if row.fields.len() > header_len && row.fields[header_len..].iter().any(|f| !f.is_empty()) {
            let why = format!(
                "the row has {} fields but the header has {}",
                row.fields.len(),
                header_len
            );
            self.reject_row(p, &row, None, None, why, true);
            return;
        }
        let n = p.lines.len();
        let text_of = |ci: usize| -> &str {
            self.field_of[ci]
                .and_then(|fi| row.fields.get(fi))
                .copied()
                .unwrap_or("")
        };
        for (ci, col) in ts.columns.iter().enumerate() {
            let text = text_of(ci);
            if let Err(reason) = push_cell(
                col,
                self.words[ci].as_ref(),
                (text, self.from_excel),
                (self.global, &mut p.local),
                &mut p.columns[ci],
                &mut p.last[ci],
            ) {
                p.truncate(n);
                let reason = if self.field_of[ci].is_some_and(|fi| fi >= row.fields.len()) {
                    format!(
                        "the row has {} fields but the header has {}",
                        row.fields.len(),
                        header_len
                    )
                } else {
                    reason
                };
                self.reject_row(p, &row, Some(ci), Some(text), reason, true);
                return;
            }
        }
        // A later column (end) must be after its partner (start).
        for (ci, col) in ts.columns.iter().enumerate() {
            let Some(ai) = col.after else { continue };
            let later = match (&p.columns[ci], &p.columns[ai]) {
                (ColumnData::DateTime(e), ColumnData::DateTime(s)) => {
                    e.secs(n).zip(s.secs(n)).map(|(e, s)| e > s)
                }
                (ColumnData::Date(e), ColumnData::Date(s)) => e[n].zip(s[n]).map(|(e, s)| e > s),
                (ColumnData::Number(e), ColumnData::Number(s)) => {
                    e.get(n).zip(s.get(n)).map(|(e, s)| e > s)
                }
                _ => None,
            };
            if later == Some(false) {
                p.truncate(n);
                let (text, other) = (text_of(ci), text_of(ai));
                let why = format!(
                    "{} `{text}` is not after {} `{other}` (zero or negative duration)",
                    col.display(),
                    ts.columns[ai].display()
                );
                self.reject_row(p, &row, Some(ci), Some(text), why, true);
                return;
            }
        }
        // References resolve to loaded rows of other tables (references within the table
        // are checked when it is complete).
        for (ci, col) in ts.columns.iter().enumerate() {
            let Some(tt) = self.targets[ci] else { continue };
            let ColumnData::Id(v) = &p.columns[ci] else {
                continue;
            };
            let sym = v[n];
            if sym.is_none() {
                continue;
            }
            let found = match p.last_ref[ci] {
                Some((s, row)) if s == sym => Some(row),
                _ => tt
                    .row_by_sym
                    .get(sym.0 as usize)
                    .copied()
                    .filter(|r| *r != u32::MAX),
            };
            if let Some(target_row) = found {
                p.last_ref[ci] = Some((sym, target_row));
                continue;
            }
            let target = col.references.as_deref().unwrap_or_default();
            let tkey = self.schema.tables[target].key_name().unwrap_or("key");
            let v = resolve(self.global, &p.local, sym).to_string();
            p.truncate(n);
            let why = match self.rejected_keys.get(target).and_then(|m| m.get(&sym)) {
                Some(line) => format!(
                    "{} `{v}` was rejected ({} line {line}), so this row cannot be evaluated",
                    col.display(),
                    tt.file
                ),
                None => format!(
                    "unknown {}: `{v}` is not a {tkey} in table `{target}` ({})",
                    col.display(),
                    if tt.file.is_empty() {
                        "absent"
                    } else {
                        &tt.file
                    }
                ),
            };
            self.reject_row(p, &row, Some(ci), Some(&v), why, true);
            return;
        }
        // Hashes to find duplicate keys (kept as text) or exact duplicate rows later.
        if self.text_key
            && let Some(k) = ts.key
        {
            p.hashes.push(hash_one(text_of(k)));
        } else if self.hash_rows {
            let mut h = rustc_hash::FxHasher::default();
            for ci in 0..ts.columns.len() {
                text_of(ci).hash(&mut h);
            }
            p.hashes.push(mix(h.finish()));
        }
        p.lines.push(row.line);
    }

    fn absorb_piece(&self, mut p: Piece) {
        let Ok(mut guard) = self.acc.lock() else {
            return;
        };
        let Some(acc) = guard.as_mut() else {
            // The first piece becomes the table, sized for the rows to come.
            let rows = p.lines.len().max(1);
            let more = self.reserve.saturating_sub(rows);
            p.reserve(more);
            for c in p.columns.iter_mut() {
                if let ColumnData::Text(t) = c {
                    t.reserve_bytes(more * t.bytes_len().div_ceil(rows));
                }
            }
            p.part.reserve(self.expected);
            *guard = Some(p);
            return;
        };
        // This piece's new ids get the table's local numbers.
        if !p.local.is_empty() {
            let map: Vec<Sym> = p
                .local
                .strings()
                .map(|s| Sym(acc.local.intern(s).0 | LOCAL))
                .collect();
            let remap = |s: Sym| {
                if !s.is_none() && s.0 & LOCAL != 0 {
                    map[(s.0 & !LOCAL) as usize]
                } else {
                    s
                }
            };
            for c in p.columns.iter_mut() {
                if let ColumnData::Id(v) = c {
                    for s in v.iter_mut() {
                        *s = remap(*s);
                    }
                }
            }
            p.rejected_keys = p
                .rejected_keys
                .into_iter()
                .map(|(k, v)| (remap(k), v))
                .collect();
        }
        for (a, b) in acc.columns.iter_mut().zip(p.columns.iter_mut()) {
            a.append(b);
        }
        acc.lines.append(&mut p.lines);
        acc.hashes.append(&mut p.hashes);
        acc.rejects.append(&mut p.rejects);
        acc.warnings.append(&mut p.warnings);
        acc.rejected_keys.extend(p.rejected_keys.drain());
        acc.read += p.read;
        acc.part.absorb(&mut p.part);
        // The emptied piece keeps its buffers for the next window (fresh memory costs more
        // than parsing: the kernel zeroes every new page).
        p.read = 0;
        p.local = Interner::default();
        p.last.iter_mut().for_each(|l| *l = None);
        p.last_ref.iter_mut().for_each(|l| *l = None);
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(p);
        }
    }
}

/// The fields of simple text split by [`split_fields`].
struct Fields<'a> {
    text: &'a str,
    bounds: &'a [u32],
    stride: usize,
}

impl<'a> Fields<'a> {
    /// Field `fi` of row `r`, trimmed.
    #[inline(always)]
    fn get(&self, r: usize, fi: usize) -> &'a str {
        let at = r * self.stride + fi;
        let (a, b) = (self.bounds[at] as usize, self.bounds[at + 1] as usize - 1);
        source::trim(self.text.get(a..b).unwrap_or_default())
    }
}

/// The fields of simple text whose every line is a row of `h` fields, as offsets into it:
/// `bounds[0]` is 0, then one entry per comma or line break (and one for the end of a last
/// line without a break): its offset + 1. Field `f` of row `r` spans
/// `bounds[r * h + f]..bounds[r * h + f + 1] - 1` (with a carriage return before a line
/// break, which trimming drops). `false` when a line is blank or has another number of
/// fields (with one field a row, a blank line is a row of one empty field, which
/// `parse_columns` turns away).
///
/// Every separator is taken alike (no branch on which it is, which the processor cannot
/// predict); then the rows are checked: each `h`-th separator a line break, and no others.
fn split_fields(b: &[u8], h: usize, bounds: &mut Vec<u32>) -> bool {
    bounds.clear();
    if b.len() >= u32::MAX as usize || h == 0 {
        return false;
    }
    bounds.push(0);
    let mut breaks = separators(b, bounds);
    if b.last().is_some_and(|&c| c != b'\n') {
        // The last line, without a line break.
        bounds.push(b.len() as u32 + 1);
        breaks += 1;
    }
    let seps = bounds.len() - 1;
    if !seps.is_multiple_of(h) || seps / h != breaks {
        return false;
    }
    (1..=breaks).all(|r| {
        let at = bounds[r * h] as usize - 1;
        at == b.len() || b[at] == b'\n'
    })
}

/// Append to `bounds` the offset + 1 of every comma and line break of `b`, found sixty-four
/// bytes at a time (a bit per byte, gathered from eight words): with a separator every ten
/// bytes or so, this beats a search call per field. Returns the number of line breaks.
fn separators(b: &[u8], bounds: &mut Vec<u32>) -> usize {
    let mut breaks = 0;
    let mut tail = [0u8; 64];
    for base in (0..b.len()).step_by(64) {
        let block = match b.get(base..base + 64) {
            Some(block) => block,
            None => {
                // Past the end: zero bytes, no separators.
                let rest = &b[base..];
                tail[..rest.len()].copy_from_slice(rest);
                &tail[..]
            }
        };
        let mut mask = 0u64;
        for (k, w) in block.chunks_exact(8).enumerate() {
            let x = u64::from_le_bytes(w.try_into().unwrap_or_default());
            let nl = byte_is(x, b'\n');
            breaks += nl.count_ones() as usize;
            mask |= gather(byte_is(x, b',') | nl) << (8 * k);
        }
        while mask != 0 {
            bounds.push((base + mask.trailing_zeros() as usize) as u32 + 1);
            mask &= mask - 1;
        }
    }
    breaks
}

/// The high bits of the eight bytes of `x` (other bits clear) as the low eight bits: byte
/// `k` to bit `k`. One multiplication: every product lands on its own bit, so none carries.
#[inline(always)]
fn gather(x: u64) -> u64 {
    ((x >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// The high bit of each byte of `x` that equals `c` (exact: no carries between bytes).
#[inline(always)]
fn byte_is(x: u64, c: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let t = x ^ (u64::from(c) * 0x0101_0101_0101_0101);
    !(((t & LOW7) + LOW7) | t | LOW7)
}

/// A well-mixed 64-bit hash of a string.
fn hash_one(s: &str) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    s.hash(&mut h);
    mix(h.finish())
}

/// Spread the bits of a hash (FxHash's low bits are weak).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// Pairs `(later, first)` of rows with equal hashes: each later row with the first row of
/// its hash. Sorted by the later row. Runs in parallel on large inputs.
///
/// The hashes are grouped by their top bits into buckets of about 256: each chunk of rows
/// (one or two a core) is sorted by bucket on its own, in one counting pass and one scatter;
/// then each bucket, gathered from every chunk, is sorted, which finds the hashes that occur
/// more than once. Equal hashes are rare, so the rows that hold them are then found in one
/// pass over the hashes in row order, most rows turned away by a bit filter.
fn equal_hashes(hashes: &[u64]) -> Vec<(u32, u32)> {
    let n = hashes.len();
    if n < 2 {
        return Vec::new();
    }
    let bits = (usize::BITS - (n / 256).leading_zeros()).clamp(4, 20);
    let buckets = 1usize << bits;
    let shift = 64 - bits;
    let threads = rayon::current_num_threads().max(1);
    let chunk = n.div_ceil(threads * 2).max(1 << 16);
    // Per chunk: where each bucket starts, and the chunk's hashes in bucket order.
    let parts: Vec<(Vec<u32>, Vec<u64>)> = hashes
        .par_chunks(chunk)
        .map(|c| {
            let mut start = vec![0u32; buckets + 1];
            for &h in c {
                start[(h >> shift) as usize + 1] += 1;
            }
            for b in 0..buckets {
                start[b + 1] += start[b];
            }
            let mut fill = start.clone();
            let mut sorted = vec![0u64; c.len()];
            for &h in c {
                let b = (h >> shift) as usize;
                sorted[fill[b] as usize] = h;
                fill[b] += 1;
            }
            (start, sorted)
        })
        .collect();
    let tasks = (threads * 8).clamp(1, buckets);
    let mut repeated: Vec<u64> = (0..tasks)
        .into_par_iter()
        .flat_map_iter(|t| {
            let (lo, hi) = (buckets * t / tasks, buckets * (t + 1) / tasks);
            let mut v = Vec::new();
            let mut repeated = Vec::new();
            for b in lo..hi {
                v.clear();
                for (start, sorted) in &parts {
                    v.extend_from_slice(&sorted[start[b] as usize..start[b + 1] as usize]);
                }
                v.sort_unstable();
                repeated.extend(v.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]));
            }
            repeated
        })
        .collect();
    drop(parts);
    if repeated.is_empty() {
        return Vec::new();
    }
    repeated.dedup();
    // A bit per slot of the hash's low bits, about 16 slots per repeated hash.
    let fbits = (usize::BITS - (repeated.len() * 16).leading_zeros()).clamp(12, 30);
    let mask = (1u64 << fbits) - 1;
    let mut filter = vec![0u64; 1 << (fbits - 6)];
    for &h in &repeated {
        let s = h & mask;
        filter[(s >> 6) as usize] |= 1 << (s & 63);
    }
    let mut first: FxHashMap<u64, Option<u32>> = repeated.into_iter().map(|h| (h, None)).collect();
    let mut out = Vec::new();
    for (row, h) in hashes.iter().enumerate() {
        let s = h & mask;
        if filter[(s >> 6) as usize] & (1 << (s & 63)) == 0 {
            continue;
        }
        if let Some(f) = first.get_mut(h) {
            match f {
                Some(f) => out.push((row as u32, *f)),
                None => *f = Some(row as u32),
            }
        }
    }
    out
}

impl TableLoader<'_> {
    fn empty_piece(&self) -> Piece {
        Piece {
            local: Interner::default(),
            columns: self
                .ts
                .columns
                .iter()
                .enumerate()
                .map(|(ci, c)| {
                    if self.text_key && self.ts.key == Some(ci) {
                        ColumnData::Text(TextColumn::default())
                    } else {
                        empty_column(c.ty)
                    }
                })
                .collect(),
            lines: Lines::default(),
            hashes: Vec::new(),
            rejects: Vec::new(),
            warnings: Vec::new(),
            rejected_keys: HashMap::new(),
            read: 0,
            last: vec![None; self.ts.columns.len()],
            last_ref: vec![None; self.ts.columns.len()],
            part: Default::default(),
            bounds: Vec::new(),
        }
    }

    /// Reject a row; with `record_key`, remember its key as rejected so rows of other
    /// tables that reference it can say why they fail.
    fn reject_row(
        &self,
        p: &mut Piece,
        row: &Row<'_>,
        col: Option<usize>,
        value: Option<&str>,
        reason: String,
        record_key: bool,
    ) {
        let key = self.ts.key;
        if record_key
            && !self.text_key
            && let Some(v) = key_text(key, &self.field_of, row.fields)
            && !v.is_empty()
            && (col.is_none() || col != key)
        {
            let sym = intern(self.global, &mut p.local, v);
            p.rejected_keys.insert(sym, row.line);
        }
        let col = col.map(|c| &self.ts.columns[c]);
        p.rejects.push(reject(
            self.ts,
            &self.file,
            row.line,
            col,
            value,
            reason,
            raw_fields(row.fields),
        ));
    }
}

/// The key cell of a row, as text.
fn key_text<'a>(
    key: Option<usize>,
    field_of: &[Option<usize>],
    fields: &[&'a str],
) -> Option<&'a str> {
    key.and_then(|k| field_of[k])
        .and_then(|fi| fields.get(fi).copied())
}

/// A loaded row's cells as text (for a row rejected after loading, e.g. a duplicate key).
fn row_text(
    t: &Table,
    ts: &TableSchema,
    r: usize,
    global: &Interner,
    local: &Interner,
) -> Vec<String> {
    t.columns
        .iter()
        .enumerate()
        .map(|(ci, c)| match c {
            ColumnData::Id(v) => resolve(global, local, v[r]).to_string(),
            ColumnData::Text(v) => v.get(r).to_string(),
            ColumnData::Date(v) => v[r].map(crate::dates::date_text).unwrap_or_default(),
            ColumnData::DateTime(v) => v
                .get(r)
                .map(crate::dates::datetime_text)
                .unwrap_or_default(),
            ColumnData::Bool(v) => v[r].map(|b| b.to_string()).unwrap_or_default(),
            ColumnData::Number(v) => v.get(r).map(|x| x.to_string()).unwrap_or_default(),
            ColumnData::Enum(v) => v[r]
                .and_then(|i| ts.columns[ci].values.get(i as usize))
                .map(|(k, _)| k.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// An optional table without a file: empty, and listed as absent.
fn absent_table(ts: &TableSchema) -> (Table, Done) {
    (
        empty_table(ts),
        Done {
            local: Interner::default(),
            rejects: Vec::new(),
            warnings: Vec::new(),
            stats: Some(TableStats {
                table: ts.name.clone(),
                file: "(absent, optional)".into(),
                encoding: String::new(),
                read: 0,
                loaded: 0,
                rejected: 0,
            }),
            rejected_keys: HashMap::new(),
            part: None,
        },
    )
}

/// What loading one table reads besides its file: the schema, the tables already loaded
/// (for references) and the keys they rejected.
struct TableInputs<'x> {
    ts: &'x TableSchema,
    schema: &'x Schema,
    global: &'x Interner,
    loaded: &'x HashMap<String, Table>,
    rejected_keys: &'x HashMap<String, HashMap<Sym, u32>>,
    progress: &'x dyn crate::progress::Progress,
    focusing: Option<&'x focus::Focusing<'x>>,
}

/// Rows dropped after reading (duplicate keys, unknown references within the table); empty
/// while every row is kept.
struct Keep {
    keep: Vec<bool>,
    n: usize,
}

impl Keep {
    fn drop_row(&mut self, i: usize) {
        if self.keep.is_empty() {
            self.keep.resize(self.n, true);
        }
        self.keep[i] = false;
    }

    fn kept(&self, i: usize) -> bool {
        self.keep.is_empty() || self.keep[i]
    }
}

/// Load one table from its file: read and check every row (in parallel pieces), then reject
/// duplicate keys and unknown references within the table, and index the keys.
fn load_table(
    src: &TableSource,
    opts: &LoadOptions,
    inp: &TableInputs,
) -> Result<(Table, Done), String> {
    let ts = inp.ts;
    let file = src.display();
    let mut loader = inp.loader(file.clone());
    loader.row_by_row = opts.row_by_row;
    match &src.kind {
        SourceKind::Csv => {
            loader.encoding =
                source::read_csv(&src.path, opts.encoding, opts.chunking, &mut loader)?;
        }
        SourceKind::Sheet(s) => source::read_sheet_into(&src.path, s, &mut loader)?,
        SourceKind::Parquet => source::read_parquet_into(&src.path, &mut loader)?,
    }
    let encoding = loader.encoding;
    let acc = match loader.acc.lock().ok().and_then(|mut a| a.take()) {
        Some(p) => p,
        None => loader.empty_piece(),
    };
    let Piece {
        local,
        columns,
        lines,
        hashes,
        mut rejects,
        warnings: row_warnings,
        rejected_keys: my_rejected_keys,
        read,
        part: mut piece_part,
        ..
    } = acc;
    let mut warnings = std::mem::take(&mut loader.header_warnings);
    let mut t = Table {
        name: ts.name.clone(),
        file: file.clone(),
        lines,
        columns,
        row_by_sym: Vec::new(),
    };
    let mut keep = Keep {
        keep: Vec::new(),
        n: t.len(),
    };
    let ids = (inp.global, &local);
    rejects.extend(duplicate_keys(&t, ts, &hashes, ids, &mut keep));
    // Exact duplicates in event tables: a warning; the row still counts.
    if loader.hash_rows {
        for (later, first) in equal_hashes(&hashes) {
            warnings.push(Warning {
                file: file.clone(),
                line: Some(t.lines.get(later as usize)),
                message: format!("exact duplicate of line {}", t.lines.get(first as usize)),
            });
        }
    }
    drop(hashes);
    warnings.extend(row_warnings);
    rejects.extend(self_references(&t, ts, ids, &mut keep));
    piece_part.retain_loaded(&keep.keep);
    compact(&mut t, &keep.keep);
    let rejected = rejects.len() as u64;
    let part = loader
        .part
        .as_ref()
        .map(|part| focus::conclude(part, &piece_part));
    let stats = TableStats {
        table: ts.name.clone(),
        file: file.clone(),
        encoding: encoding.to_string(),
        read,
        loaded: t.len() as u64,
        rejected,
    };
    debug_assert_eq!(read, t.len() as u64 + rejected + piece_part.left_out());
    Ok((
        t,
        Done {
            local,
            rejects,
            warnings,
            stats: Some(stats),
            rejected_keys: my_rejected_keys,
            part,
        },
    ))
}

impl<'x> TableInputs<'x> {
    /// A loader for the table's rows (all, or the rows that matter to one subject).
    fn loader(&self, file: String) -> TableLoader<'x> {
        let ts = self.ts;
        let text_key = ts.key.is_some_and(|k| ts.columns[k].ty == ColumnType::Id) && !ts.indexed;
        let part = self.focusing.and_then(|f| {
            let filter = f.focus.filter(
                ts,
                &LoadedTables {
                    ids: self.global,
                    tables: self.loaded,
                },
            )?;
            focus::Part::new(
                ts,
                filter,
                self.schema,
                self.loaded,
                self.global,
                text_key,
                f,
            )
        });
        TableLoader {
            ts,
            file,
            schema: self.schema,
            global: self.global,
            rejected_keys: self.rejected_keys,
            field_of: vec![None; ts.columns.len()],
            header_len: 0,
            from_excel: false,
            encoding: "",
            words: ts.columns.iter().map(column_words).collect(),
            targets: ts
                .columns
                .iter()
                .map(|c| {
                    c.references
                        .as_deref()
                        .filter(|r| *r != ts.name)
                        .and_then(|r| self.loaded.get(r))
                })
                .collect(),
            text_key,
            // Exact duplicates are only warned about; not for a table loaded in part.
            hash_rows: ts.key.is_none() && part.is_none(),
            header_warnings: Vec::new(),
            acc: Default::default(),
            pool: Default::default(),
            reserve: 0,
            progress: self.progress,
            part,
            expected: 0,
            row_by_row: false,
        }
    }
}

/// Keys are unique: a later row with a key already loaded is rejected.
fn duplicate_keys(
    t: &Table,
    ts: &TableSchema,
    hashes: &[u64],
    (global, local): (&Interner, &Interner),
    keep: &mut Keep,
) -> Vec<Reject> {
    let mut rejects = Vec::new();
    let Some(k) = ts.key else {
        return rejects;
    };
    let key_col = &ts.columns[k];
    let mut dup = |i: usize, first: usize, v: &str, keep: &mut Keep| {
        let why = format!(
            "duplicate key: {} `{v}` is already on line {}",
            key_col.display(),
            t.lines.get(first)
        );
        let raw = row_text(t, ts, i, global, local);
        rejects.push(reject(
            ts,
            &t.file,
            t.lines.get(i),
            Some(key_col),
            Some(v),
            why,
            raw,
        ));
        keep.drop_row(i);
    };
    match &t.columns[k] {
        ColumnData::Id(v) => {
            let mut seen: FxHashMap<Sym, u32> = FxHashMap::default();
            seen.reserve(v.len());
            for (i, s) in v.iter().enumerate() {
                if s.is_none() {
                    continue;
                }
                if let Some(&first) = seen.get(s) {
                    dup(i, first as usize, resolve(global, local, *s), keep);
                } else {
                    seen.insert(*s, i as u32);
                }
            }
        }
        ColumnData::Text(v) => {
            // Equal hashes are checked on the text: rows with the same key as an earlier
            // kept row are duplicates.
            let mut firsts: HashMap<u32, Vec<u32>> = HashMap::new();
            for (later, first) in equal_hashes(hashes) {
                let text = v.get(later as usize);
                let group = firsts.entry(first).or_insert_with(|| vec![first]);
                match group.iter().find(|&&f| v.get(f as usize) == text) {
                    Some(&f) => dup(later as usize, f as usize, text, keep),
                    None => group.push(later),
                }
            }
        }
        _ => {}
    }
    rejects
}

/// References within the table, checked once it is complete; a row whose reference is not
/// a key of the table (among the rows kept) is rejected.
fn self_references(
    t: &Table,
    ts: &TableSchema,
    (global, local): (&Interner, &Interner),
    keep: &mut Keep,
) -> Vec<Reject> {
    let mut rejects = Vec::new();
    let self_refs: Vec<usize> = ts
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.references.as_deref() == Some(ts.name.as_str()))
        .map(|(ci, _)| ci)
        .collect();
    if self_refs.is_empty() {
        return rejects;
    }
    let key = ts.key.unwrap_or(0);
    let index: FxHashMap<Sym, u32> = match &t.columns[key] {
        ColumnData::Id(v) => v
            .iter()
            .enumerate()
            .filter(|(i, _)| keep.kept(*i))
            .map(|(i, s)| (*s, i as u32))
            .collect(),
        _ => FxHashMap::default(),
    };
    for ci in self_refs {
        let col = &ts.columns[ci];
        let ColumnData::Id(v) = &t.columns[ci] else {
            continue;
        };
        for (i, s) in v.iter().enumerate() {
            if s.is_none() || index.contains_key(s) || !keep.kept(i) {
                continue;
            }
            let text = resolve(global, local, *s);
            let why = format!(
                "unknown {}: `{text}` is not in table `{}`",
                col.display(),
                ts.name
            );
            let raw = row_text(t, ts, i, global, local);
            rejects.push(reject(
                ts,
                &t.file,
                t.lines.get(i),
                Some(col),
                Some(text),
                why,
                raw,
            ));
            keep.drop_row(i);
        }
    }
    rejects
}

/// Drop the rows not kept (`keep` empty: all kept).
fn compact(t: &mut Table, keep: &[bool]) {
    if keep.is_empty() {
        return;
    }
    for c in t.columns.iter_mut() {
        c.retain(keep);
    }
    t.lines.retain(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dataset in `dir`, loaded a column at a time where it can be or row by row, in
    /// pieces of `piece` bytes; as its debug text (every column, line, reject and warning),
    /// or the error.
    fn loaded(dir: &Path, schema: &Schema, piece: usize, row_by_row: bool) -> String {
        let opts = LoadOptions {
            chunking: Chunking {
                window: (piece * 8).max(4096),
                piece,
            },
            row_by_row,
            ..Default::default()
        };
        match load(dir, schema, &opts) {
            Ok(ds) => format!("{ds:#?}"),
            Err(e) => format!("error: {e:?}"),
        }
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    /// Loading a column at a time gives the dataset that loading row by row gives: on the
    /// samples, on every case of the bad-input corpus (laid over the sample as
    /// tests/corpus.rs does), and in pieces small enough that some are clean and some not.
    #[test]
    fn columns_and_rows_load_the_same_dataset() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let set = crate::policy::load(&root.join("policies")).unwrap();
        let mut dirs: Vec<PathBuf> = ["hubei-2020", "hubei-2021", "hubei-2020-export"]
            .iter()
            .map(|d| root.join("samples").join(d))
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let cases: toml::Table =
            toml::from_str(&std::fs::read_to_string(root.join("tests/corpus/cases.toml")).unwrap())
                .unwrap();
        let cases = cases["case"].as_array().unwrap();
        for case in cases {
            let name = case["name"].as_str().unwrap();
            if case.get("generate").is_some() {
                continue;
            }
            let dir = tmp.path().join(name);
            copy_dir(&root.join("samples/hubei-2020"), &dir);
            for f in case
                .get("remove")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
            {
                std::fs::remove_file(dir.join(f.as_str().unwrap())).unwrap();
            }
            copy_dir(&root.join("tests/corpus").join(name), &dir);
            dirs.push(dir);
        }
        assert!(dirs.len() > 15, "{} datasets", dirs.len());
        for dir in &dirs {
            for piece in [512 << 10, 700, 64] {
                let rows = loaded(dir, &set.schema, piece, true);
                let columns = loaded(dir, &set.schema, piece, false);
                assert!(
                    rows == columns,
                    "{} in pieces of {piece} bytes: the datasets differ",
                    dir.display()
                );
            }
        }
    }

    /// The same on copies of the sample with cells spoiled at random: each spoiled file is
    /// loaded both ways, in pieces of a few rows (so clean pieces sit beside spoiled ones).
    #[test]
    fn columns_and_rows_agree_on_spoiled_rows() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let set = crate::policy::load(&root.join("policies")).unwrap();
        let sample = root.join("samples/hubei-2020");
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        let spoils = [
            "",
            " ",
            "x",
            "2020-13-01",
            "2020-02-30 08:00",
            "M99999999",
            "是",
            "否",
            "1.5",
            "-3",
            "a,b",
            "疫情防控",
            "社区",
            "\u{3000}",
            "2020/2/7",
            "2020-02-07",
            "2020-02-07 09:30",
        ];
        let tmp = tempfile::tempdir().unwrap();
        let mut differ = Vec::new();
        for round in 0..60 {
            let dir = tmp.path().join(format!("r{round}"));
            copy_dir(&sample, &dir);
            for file in [
                "services.csv",
                "checkins.csv",
                "members.csv",
                "assignments.csv",
            ] {
                let text = std::fs::read_to_string(dir.join(file)).unwrap();
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                for _ in 0..1 + next(4) {
                    let l = 1 + next(lines.len() - 1);
                    match next(7) {
                        0 => lines[l] = String::new(),
                        1 => {
                            let dup = lines[l].clone();
                            lines.insert(l, dup);
                        }
                        2 => lines[l].push(','),
                        3 => {
                            // Two cells side by side swapped (an end before its start, a
                            // date as an id).
                            let mut cells: Vec<&str> = lines[l].split(',').collect();
                            let a = next(cells.len() - 1);
                            cells.swap(a, a + 1);
                            lines[l] = cells.join(",");
                        }
                        _ => {
                            let mut cells: Vec<String> =
                                lines[l].split(',').map(str::to_string).collect();
                            let c = next(cells.len());
                            cells[c] = spoils[next(spoils.len())].to_string();
                            lines[l] = cells.join(",");
                        }
                    }
                }
                let eol = if next(5) == 0 { "\r\n" } else { "\n" };
                std::fs::write(dir.join(file), lines.join(eol) + eol).unwrap();
            }
            for piece in [300, 2000] {
                if loaded(&dir, &set.schema, piece, true) != loaded(&dir, &set.schema, piece, false)
                {
                    differ.push(format!("round {round}, pieces of {piece}"));
                }
            }
        }
        assert!(differ.is_empty(), "the datasets differ: {differ:?}");
    }

    /// `split_fields` finds each row's fields, and turns away blank lines and rows of
    /// another width.
    #[test]
    fn split_fields_bounds_rows_of_equal_width() {
        let fields = |text: &str, h: usize| -> Option<Vec<Vec<String>>> {
            let mut bounds = Vec::new();
            if !split_fields(text.as_bytes(), h, &mut bounds) {
                return None;
            }
            let f = Fields {
                text,
                bounds: &bounds,
                stride: h,
            };
            Some(
                (0..(bounds.len() - 1) / h)
                    .map(|r| (0..h).map(|fi| f.get(r, fi).to_string()).collect())
                    .collect(),
            )
        };
        let want = |rows: &[&[&str]]| -> Option<Vec<Vec<String>>> {
            Some(
                rows.iter()
                    .map(|r| r.iter().map(|s| s.to_string()).collect())
                    .collect(),
            )
        };
        assert_eq!(fields("", 2), want(&[]));
        assert_eq!(fields("a,b\n", 2), want(&[&["a", "b"]]));
        assert_eq!(fields("a,b", 2), want(&[&["a", "b"]]));
        assert_eq!(
            fields("a1,b22\r\n,\n ccc , d\nlonger than eight,x", 2),
            want(&[
                &["a1", "b22"],
                &["", ""],
                &["ccc", "d"],
                &["longer than eight", "x"]
            ])
        );
        assert_eq!(fields("社区,是\n", 2), want(&[&["社区", "是"]]));
        assert_eq!(fields("a,b\n\nc,d\n", 2), None, "a blank line");
        assert_eq!(fields("a,b\r\n\r\nc,d\n", 2), None, "a blank line");
        assert_eq!(fields("a,b,c\n", 2), None, "too many fields");
        assert_eq!(fields("a\n", 2), None, "too few");
        assert_eq!(fields("a,b\nc", 2), None, "too few on the last line");
        assert_eq!(fields("a,b\r", 2), want(&[&["a", "b"]]), "trimmed");
        assert_eq!(
            fields("\n", 1),
            want(&[&[""]]),
            "with one field, an empty one"
        );
        // Against splitting by lines and commas, on random texts.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let alphabet = ["a", "bc", ",", ",", "\n", "\r\n", " ", "中", "0123456789"];
        let mut accepted = 0;
        for _ in 0..20_000 {
            let text: String = (0..next(60))
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            let h = 1 + next(4);
            let body = text.strip_suffix('\n').unwrap_or(&text);
            let naive: Option<Vec<Vec<String>>> = if text.is_empty() {
                Some(Vec::new())
            } else {
                body.split('\n')
                    .map(|l| {
                        let f: Vec<String> = l.split(',').map(|f| f.trim().to_string()).collect();
                        (f.len() == h).then_some(f)
                    })
                    .collect()
            };
            accepted += usize::from(naive.is_some());
            assert_eq!(fields(&text, h), naive, "{text:?}, {h} fields");
        }
        assert!(accepted > 500, "{accepted} texts split");
        // Separators at every position of an eight-byte word and across words.
        for n in 0..20 {
            let cells: Vec<String> = (0..5).map(|i| "x".repeat((i * n) % 11)).collect();
            let line = cells.join(",");
            let text = format!("{line}\n{line}");
            let got = fields(&text, 5).unwrap();
            assert_eq!(got, vec![cells.clone(), cells], "{text:?}");
        }
    }

    /// Enum words are found by their packed form or their text, the first value of a word
    /// wins, and a word that is not there is not found (with the table grown past 16 slots).
    #[test]
    fn words_find_every_word_and_no_other() {
        let mut w = Words::default();
        let names: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            w.insert(n.clone(), (i % 200) as u8);
        }
        w.insert("w3".into(), 99);
        w.insert("a word longer than fifteen bytes".into(), 7);
        w.insert(String::new(), 5);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(w.get(n), Some(i as u8), "{n}");
        }
        assert_eq!(w.get("a word longer than fifteen bytes"), Some(7));
        for n in ["w40", "w", "", "x3", "a word longer than fifteen byte"] {
            assert_eq!(w.get(n), None, "{n}");
        }
    }

    /// `equal_hashes` against the obvious way, with pairs, triples and no repeats at all,
    /// small and large enough for many buckets and tasks.
    #[test]
    fn equal_hashes_pairs_each_later_row_with_the_first() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in [0, 1, 2, 3, 300, 5_000, 200_000] {
            for repeats in [0, 1, 7, n / 10] {
                let mut hashes: Vec<u64> = (0..n).map(|_| next()).collect();
                for _ in 0..repeats {
                    let (a, b) = (next() as usize % n.max(1), next() as usize % n.max(1));
                    if n > 0 {
                        hashes[b] = hashes[a];
                    }
                }
                let mut firsts: std::collections::HashMap<u64, u32> = Default::default();
                let mut want = Vec::new();
                for (row, &h) in hashes.iter().enumerate() {
                    match firsts.get(&h) {
                        Some(&f) => want.push((row as u32, f)),
                        None => {
                            firsts.insert(h, row as u32);
                        }
                    }
                }
                assert_eq!(equal_hashes(&hashes), want, "{n} rows, {repeats} repeats");
            }
        }
        // Every hash the same, and all in one bucket.
        assert_eq!(equal_hashes(&[9; 4]), vec![(1, 0), (2, 0), (3, 0)]);
    }
}
