//! Loading a dataset folder against a [`Schema`]: find each table's file, map headers through
//! aliases, parse every cell, check keys and references, and account for every row.

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
    /// Words of up to 15 bytes, packed into an integer (quick to hash and compare).
    short: FxHashMap<u128, u8>,
    long: FxHashMap<String, u8>,
}

impl Words {
    fn insert(&mut self, w: String, i: u8) {
        match super::pack(&w) {
            Some(k) => {
                self.short.entry(k).or_insert(i);
            }
            None => {
                self.long.entry(w).or_insert(i);
            }
        }
    }

    fn get(&self, w: &str) -> Option<u8> {
        match super::pack(w) {
            Some(k) => self.short.get(&k).copied(),
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
    let word = |t: &str| words.and_then(|w| w.get(t).or_else(|| w.get(&norm(t))));
    let empty = text.is_empty();
    if empty && col.required {
        return Err("a value is required here but the cell is empty".into());
    }
    match out {
        ColumnData::Id(v) => v.push(if empty {
            Sym::NONE
        } else {
            match (super::pack(text), *last) {
                (Some(k), Some((lk, sym))) if k == lk => sym,
                (Some(k), _) => {
                    let sym = intern(global, local, text);
                    *last = Some((k, sym));
                    sym
                }
                (None, _) => intern(global, local, text),
            }
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
            match crate::dates::iso_datetime_secs(text) {
                Some(secs) => Some(secs),
                None => Some(datetime_secs(datetime_cell(text, excel)?)),
            }
        }),
        ColumnData::Bool(v) => v.push(if empty {
            None
        } else {
            Some(
                match parse::parse_bool(text)
                    .or_else(|| word(text).map(|i| col.values[i as usize].0 == "true"))
                {
                    Some(b) => b,
                    None => {
                        return Err(format!(
                            "`{text}` is not yes/no; write true/false, 1/0, yes/no or 是/否"
                        ));
                    }
                },
            )
        }),
        ColumnData::Number(v) => v.push(if empty {
            None
        } else {
            Some(parse::parse_number(text).ok_or_else(|| format!("`{text}` is not a number"))?)
        }),
        ColumnData::Enum(v) => v.push(if empty {
            None
        } else {
            let idx = word(text).ok_or_else(|| {
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
            })?;
            Some(idx)
        }),
    }
    Ok(())
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

    fn absorb(&self, p: Piece) {
        self.absorb_piece(p)
    }

    fn progress(&self, bytes: u64) {
        self.progress.advance(bytes);
    }
}

impl TableLoader<'_> {
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
/// The hashes are grouped by their top bits into buckets of about 256 (each task of a few
/// per core owns a range of buckets, reads every hash and keeps its own) and each bucket is
/// sorted in place, which finds the hashes that occur more than once. Equal hashes are rare,
/// so the rows that hold them are then found in one pass over the hashes in row order.
fn equal_hashes(hashes: &[u64]) -> Vec<(u32, u32)> {
    let n = hashes.len();
    if n < 2 {
        return Vec::new();
    }
    let bits = (usize::BITS - (n / 256).leading_zeros()).clamp(4, 20);
    let buckets = 1usize << bits;
    let bucket = |h: u64| (h >> (64 - bits)) as usize;
    let mut start = vec![0usize; buckets + 1];
    for &h in hashes {
        start[bucket(h) + 1] += 1;
    }
    for b in 0..buckets {
        start[b + 1] += start[b];
    }
    // Bucket ranges, one a task, each with its part of `sorted`.
    let tasks = (rayon::current_num_threads() * 4).clamp(1, buckets);
    let mut sorted = vec![0u64; n];
    let mut parts = Vec::with_capacity(tasks);
    let mut rest: &mut [u64] = &mut sorted;
    for t in 0..tasks {
        let (lo, hi) = (buckets * t / tasks, buckets * (t + 1) / tasks);
        let (part, tail) = rest.split_at_mut(start[hi] - start[lo]);
        parts.push((lo, hi, part));
        rest = tail;
    }
    let mut repeated: Vec<u64> = parts
        .into_par_iter()
        .flat_map_iter(|(lo, hi, part)| {
            let base = start[lo];
            let mut fill: Vec<usize> = start[lo..hi].iter().map(|&s| s - base).collect();
            for &h in hashes {
                let b = bucket(h);
                if (lo..hi).contains(&b) {
                    part[fill[b - lo]] = h;
                    fill[b - lo] += 1;
                }
            }
            let mut repeated = Vec::new();
            for b in lo..hi {
                let v = &mut part[start[b] - base..start[b + 1] - base];
                v.sort_unstable();
                repeated.extend(v.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]));
            }
            repeated
        })
        .collect();
    drop(sorted);
    if repeated.is_empty() {
        return Vec::new();
    }
    repeated.dedup();
    let mut first: FxHashMap<u64, Option<u32>> = repeated.into_iter().map(|h| (h, None)).collect();
    let mut out = Vec::new();
    for (row, h) in hashes.iter().enumerate() {
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
