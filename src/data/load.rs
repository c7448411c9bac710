//! Loading a dataset folder against a [`Schema`]: find each table's file, map headers through
//! aliases, parse every cell, check keys and references, and account for every row.

use super::parse;
use super::source::{self, Encoding, Row, RowSink, SourceKind, TableSource};
use super::*;
use crate::policy::model::ColumnType;
use crate::policy::{ColumnSchema, Schema, TableSchema};
use rayon::prelude::*;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Ids seen while loading one table: the dataset's ids (read-only, shared by tables loading
/// in parallel) plus ids new to this table, numbered locally and merged afterwards.
struct Ids<'g> {
    global: &'g Interner,
    local: Interner,
}

const LOCAL: u32 = 1 << 31;

impl Ids<'_> {
    fn intern(&mut self, s: &str) -> Sym {
        match self.global.get(s) {
            Some(sym) => sym,
            None => Sym(self.local.intern(s).0 | LOCAL),
        }
    }

    fn resolve(&self, sym: Sym) -> &str {
        if !sym.is_none() && sym.0 & LOCAL != 0 {
            self.local.resolve(Sym(sym.0 & !LOCAL))
        } else {
            self.global.resolve(sym)
        }
    }
}

/// A loaded table and what came with it, or why the file cannot be read.
type Loaded = Result<(Table, Done), String>;

/// A [`Part`] without its borrow of the dataset's ids, ready to merge.
struct Done {
    local: Interner,
    rejects: Vec<Reject>,
    warnings: Vec<Warning>,
    stats: Option<TableStats>,
    rejected_keys: HashMap<Sym, u32>,
}

impl Part<'_> {
    fn done(self) -> Done {
        Done {
            local: self.ids.local,
            rejects: self.rejects,
            warnings: self.warnings,
            stats: self.stats,
            rejected_keys: self.rejected_keys,
        }
    }
}

/// What loading one table produced besides the table itself.
struct Part<'g> {
    ids: Ids<'g>,
    rejects: Vec<Reject>,
    warnings: Vec<Warning>,
    stats: Option<TableStats>,
    /// Keys of this table's rejected rows (for messages of tables that reference them).
    rejected_keys: HashMap<Sym, u32>,
}

/// Options for loading a dataset.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub encoding: Encoding,
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
fn discover(
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
            "csv" => match table_for(schema, &stem) {
                Some(t) => claim(
                    &t.name,
                    TableSource {
                        path: path.clone(),
                        kind: SourceKind::Csv,
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
                message: "not a .csv or .xlsx file, ignored".into(),
            }),
        }
    }
    for t in schema.tables.values() {
        if !found.contains_key(&t.name) && !t.optional {
            let mut names = vec![format!("{}.csv", t.name)];
            names.extend(t.aliases.iter().map(|a| format!("{a}.csv")));
            errors.push(FatalError {
                file: dir.display().to_string(),
                message: format!("no file for table `{}` ({}); expected one of: {}, or an .xlsx sheet of that name", t.name, t.label, names.join(", ")),
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
fn dependency_order(schema: &Schema) -> Vec<&TableSchema> {
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
pub fn load(dir: &Path, schema: &Schema, opts: &LoadOptions) -> Result<Dataset, Vec<FatalError>> {
    let mut warnings = Vec::new();
    let sources = discover(dir, schema, &mut warnings)?;
    let mut ds = Dataset {
        tables: IndexMap::new(),
        ids: Interner::default(),
        stats: Vec::new(),
        rejects: Vec::new(),
        warnings,
    };
    let mut fatal = Vec::new();
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
                let part = Part {
                    ids: Ids {
                        global,
                        local: Interner::default(),
                    },
                    rejects: Vec::new(),
                    warnings: Vec::new(),
                    stats: None,
                    rejected_keys: HashMap::new(),
                };
                let r = match sources.get(&ts.name) {
                    None => {
                        let mut part = part;
                        part.stats = Some(TableStats {
                            table: ts.name.clone(),
                            file: "(absent, optional)".into(),
                            encoding: String::new(),
                            read: 0,
                            loaded: 0,
                            rejected: 0,
                        });
                        Ok((empty_table(ts), part))
                    }
                    Some(src) => load_table(
                        ts,
                        src,
                        opts.encoding,
                        schema,
                        part,
                        &loaded,
                        &rejected_keys,
                    ),
                };
                (*ts, r.map(|(t, p)| (t, p.done())))
            })
            .collect();
        for (ts, r) in results {
            match r {
                Ok((mut t, part)) => {
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
    if !fatal.is_empty() {
        return Err(fatal);
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
    Ok(ds)
}

/// Fold a table's part into the dataset: give its new ids dataset-wide numbers, and keep
/// its rejects, warnings and counts. Returns the keys of its rejected rows.
fn merge(ds: &mut Dataset, ts: &TableSchema, t: &mut Table, part: Done) -> HashMap<Sym, u32> {
    let map: Vec<Sym> = part
        .local
        .strings()
        .iter()
        .map(|s| ds.ids.intern(s))
        .collect();
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
        if let Some(k) = ts.key
            && let ColumnData::Id(v) = &t.columns[k]
        {
            t.key_index = v.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
        }
    }
    ds.rejects.extend(part.rejects);
    ds.warnings.extend(part.warnings);
    ds.stats.extend(part.stats);
    part.rejected_keys
        .into_iter()
        .map(|(k, v)| (remap(k), v))
        .collect()
}

fn empty_table(ts: &TableSchema) -> Table {
    Table {
        name: ts.name.clone(),
        file: String::new(),
        lines: Vec::new(),
        columns: ts.columns.iter().map(|c| empty_column(c.ty)).collect(),
        key_index: FxHashMap::default(),
        refs: ts
            .columns
            .iter()
            .map(|c| c.references.as_ref().map(|_| Vec::new()))
            .collect(),
    }
}

fn empty_column(ty: ColumnType) -> ColumnData {
    match ty {
        ColumnType::Id => ColumnData::Id(Vec::new()),
        ColumnType::Text => ColumnData::Text(Vec::new()),
        ColumnType::Date => ColumnData::Date(Vec::new()),
        ColumnType::Datetime => ColumnData::DateTime(Vec::new()),
        ColumnType::Bool => ColumnData::Bool(Vec::new()),
        ColumnType::Number => ColumnData::Number(Vec::new()),
        ColumnType::Enum => ColumnData::Enum(Vec::new()),
    }
}

/// A parsed cell.
enum Cell {
    Id(Sym),
    Text(String),
    Date(Option<NaiveDate>),
    DateTime(Option<NaiveDateTime>),
    Bool(Option<bool>),
    Number(Option<f64>),
    Enum(Option<u8>),
}

fn push(col: &mut ColumnData, cell: Cell) {
    match (col, cell) {
        (ColumnData::Id(v), Cell::Id(x)) => v.push(x),
        (ColumnData::Text(v), Cell::Text(x)) => v.push(x),
        (ColumnData::Date(v), Cell::Date(x)) => v.push(x),
        (ColumnData::DateTime(v), Cell::DateTime(x)) => v.push(x),
        (ColumnData::Bool(v), Cell::Bool(x)) => v.push(x),
        (ColumnData::Number(v), Cell::Number(x)) => v.push(x),
        (ColumnData::Enum(v), Cell::Enum(x)) => v.push(x),
        _ => unreachable!("cell type follows the column type"),
    }
}

/// The words (names and aliases, as written and normalized) of an enum or bool column.
fn column_words(col: &ColumnSchema) -> Option<FxHashMap<String, u8>> {
    if !matches!(col.ty, ColumnType::Enum | ColumnType::Bool) || col.values.is_empty() {
        return None;
    }
    let mut m = FxHashMap::default();
    for (i, (k, aliases)) in col.values.iter().enumerate() {
        for w in std::iter::once(k).chain(aliases) {
            m.entry(w.trim().to_string()).or_insert(i as u8);
            m.entry(norm(w)).or_insert(i as u8);
        }
    }
    Some(m)
}

/// Parse one cell; `Err` is the reason it cannot be read.
fn parse_cell(
    col: &ColumnSchema,
    words: Option<&FxHashMap<String, u8>>,
    text: &str,
    excel: bool,
    ids: &mut Ids,
) -> Result<Cell, String> {
    let word = |t: &str| words.and_then(|w| w.get(t).or_else(|| w.get(&norm(t))).copied());
    let empty = text.is_empty();
    if empty && col.required {
        return Err("a value is required here but the cell is empty".into());
    }
    Ok(match col.ty {
        ColumnType::Id => Cell::Id(if empty { Sym::NONE } else { ids.intern(text) }),
        ColumnType::Text => Cell::Text(text.to_string()),
        ColumnType::Date => Cell::Date(if empty {
            None
        } else {
            Some(
                parse::parse_date_lenient(text)
                    .or_else(|| {
                        excel
                            .then(|| parse::excel_serial_date(text).map(|d| d.date()))
                            .flatten()
                    })
                    .ok_or_else(|| {
                        format!("`{text}` is not a date; write 2020-02-07 or 2020/2/7")
                    })?,
            )
        }),
        ColumnType::Datetime => Cell::DateTime(if empty {
            None
        } else {
            Some(
                parse::parse_datetime(text)
                    .or_else(|| excel.then(|| parse::excel_serial_date(text)).flatten())
                    // A spreadsheet date cell at midnight is shown as a bare date.
                    .or_else(|| excel.then(|| parse::parse_date(text).map(|d| d.and_time(chrono::NaiveTime::MIN))).flatten())
                    .ok_or_else(|| {
                        if parse::parse_date(text).is_some() {
                            format!("`{text}` has a date but no time; write 2020-02-07 09:30")
                        } else {
                            format!("`{text}` is not a date and time; write 2020-02-07 09:30 or 2020/2/7 9:30")
                        }
                    })?,
            )
        }),
        ColumnType::Bool => Cell::Bool(if empty {
            None
        } else {
            Some(
                match parse::parse_bool(text)
                    .or_else(|| word(text).map(|i| col.values[i as usize].0 == "true"))
                {
                    Some(b) => b,
                    None => parse::parse_bool(text).ok_or_else(|| {
                        format!("`{text}` is not yes/no; write true/false, 1/0, yes/no or 是/否")
                    })?,
                },
            )
        }),
        ColumnType::Number => Cell::Number(if empty {
            None
        } else {
            Some(parse::parse_number(text).ok_or_else(|| format!("`{text}` is not a number"))?)
        }),
        ColumnType::Enum => Cell::Enum(if empty {
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
    })
}

#[allow(clippy::too_many_arguments)]
fn reject(
    rejects: &mut Vec<Reject>,
    ts: &TableSchema,
    file: &str,
    line: u32,
    col: Option<&ColumnSchema>,
    value: Option<&str>,
    reason: String,
    raw: &[&str],
) {
    rejects.push(Reject {
        table: ts.name.clone(),
        file: file.to_string(),
        line,
        column: col.map(|c| c.display()),
        value: value.map(|v| v.to_string()),
        reason,
        raw: raw
            .iter()
            .map(|f| {
                if f.len() > 200 {
                    format!("{}…", f.chars().take(100).collect::<String>())
                } else {
                    f.to_string()
                }
            })
            .collect(),
    });
}

/// Loads one table row by row as its source streams it (a [`RowSink`]).
struct TableLoader<'x, 'r> {
    ts: &'x TableSchema,
    file: String,
    schema: &'x Schema,
    part: Part<'x>,
    rejected_keys: &'r HashMap<String, HashMap<Sym, u32>>,
    field_of: Vec<Option<usize>>,
    header_len: usize,
    from_excel: bool,
    encoding: &'static str,
    seen_keys: FxHashMap<Sym, u32>,
    seen_rows: FxHashMap<u64, u32>,
    cells: Vec<Cell>,
    t: Table,
    read: u64,
    /// Per column: enum/bool words.
    words: Vec<Option<FxHashMap<String, u8>>>,
    /// Per column: the already loaded table it references.
    targets: Vec<Option<&'x Table>>,
}

impl RowSink for TableLoader<'_, '_> {
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
        self.part.warnings.push(Warning {
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
                    self.part.warnings.push(Warning {
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

    fn row(&mut self, row: Row<'_>) {
        self.read += 1;
        let ts = self.ts;
        let file: &str = &self.file;
        let key = ts.key;
        if let Some(p) = &row.problem {
            self.reject_row(&row, None, None, p.clone(), true);
            return;
        }
        let header_len = self.header_len;
        if row.fields.len() > header_len && row.fields[header_len..].iter().any(|f| !f.is_empty()) {
            let why = format!(
                "the row has {} fields but the header has {}",
                row.fields.len(),
                header_len
            );
            self.reject_row(&row, None, None, why, true);
            return;
        }
        self.cells.clear();
        for (ci, col) in ts.columns.iter().enumerate() {
            let text = self.field_of[ci]
                .and_then(|fi| row.fields.get(fi))
                .copied()
                .unwrap_or("");
            match parse_cell(
                col,
                self.words[ci].as_ref(),
                text,
                self.from_excel,
                &mut self.part.ids,
            ) {
                Ok(c) => self.cells.push(c),
                Err(reason) => {
                    let reason = if self.field_of[ci].is_some_and(|fi| fi >= row.fields.len()) {
                        format!(
                            "the row has {} fields but the header has {}",
                            row.fields.len(),
                            header_len
                        )
                    } else {
                        reason
                    };
                    self.reject_row(&row, Some(ci), Some(text), reason, true);
                    return;
                }
            }
        }
        // A later column (end) must be after its partner (start).
        for (ci, col) in ts.columns.iter().enumerate() {
            let Some(ai) = col.after else { continue };
            let later = match (&self.cells[ci], &self.cells[ai]) {
                (Cell::DateTime(Some(e)), Cell::DateTime(Some(s))) => Some(e > s),
                (Cell::Date(Some(e)), Cell::Date(Some(s))) => Some(e > s),
                (Cell::Number(Some(e)), Cell::Number(Some(s))) => Some(e > s),
                _ => None,
            };
            if later == Some(false) {
                let text = self.field_of[ci]
                    .and_then(|fi| row.fields.get(fi))
                    .copied()
                    .unwrap_or_default();
                let other = self.field_of[ai]
                    .and_then(|fi| row.fields.get(fi))
                    .copied()
                    .unwrap_or_default();
                let why = format!(
                    "{} `{text}` is not after {} `{other}` (zero or negative duration)",
                    col.display(),
                    ts.columns[ai].display()
                );
                self.reject_row(&row, Some(ci), Some(text), why, true);
                return;
            }
        }
        // Keys are unique.
        if let Some(k) = key
            && let Cell::Id(sym) = self.cells[k]
        {
            if let Some(first) = self.seen_keys.get(&sym) {
                let v = self.part.ids.resolve(sym).to_string();
                let why = format!(
                    "duplicate key: {} `{v}` is already on line {first}",
                    ts.columns[k].display()
                );
                // The key stays valid (its first row is loaded): do not record it.
                self.reject_row(&row, Some(k), Some(&v), why, false);
                return;
            }
            self.seen_keys.insert(sym, row.line);
        }
        // References resolve to loaded rows.
        for (ci, col) in ts.columns.iter().enumerate() {
            let (Some(target), Cell::Id(sym)) = (col.references.as_deref(), &self.cells[ci]) else {
                continue;
            };
            if sym.is_none() || target == ts.name {
                continue; // self references are checked when the table is complete
            }
            let Some(tt) = self.targets[ci] else {
                continue;
            };
            if tt.key_index.contains_key(sym) {
                continue;
            }
            let tkey = self.schema.tables[target].key_name().unwrap_or("key");
            let v = self.part.ids.resolve(*sym).to_string();
            let why = match self.rejected_keys.get(target).and_then(|m| m.get(sym)) {
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
            self.reject_row(&row, Some(ci), Some(&v), why, true);
            return;
        }
        // Exact duplicates in event tables: a warning; the row still counts.
        if key.is_none() {
            let mut h = rustc_hash::FxHasher::default();
            for f in &self.field_of {
                f.and_then(|fi| row.fields.get(fi))
                    .copied()
                    .unwrap_or("")
                    .hash(&mut h);
            }
            let hv = h.finish();
            if let Some(first) = self.seen_rows.get(&hv) {
                self.part.warnings.push(Warning {
                    file: file.to_string(),
                    line: Some(row.line),
                    message: format!("exact duplicate of line {first}"),
                });
            } else {
                self.seen_rows.insert(hv, row.line);
            }
        }
        for (col, cell) in self.t.columns.iter_mut().zip(self.cells.drain(..)) {
            push(col, cell);
        }
        self.t.lines.push(row.line);
    }
}

impl TableLoader<'_, '_> {
    /// Reject a row; with `record_key`, remember its key as rejected so rows of other
    /// tables that reference it can say why they fail.
    fn reject_row(
        &mut self,
        row: &Row<'_>,
        col: Option<usize>,
        value: Option<&str>,
        reason: String,
        record_key: bool,
    ) {
        let key = self.ts.key;
        if record_key
            && let Some(v) = key_text(key, &self.field_of, row.fields)
            && !v.is_empty()
            && (col.is_none() || col != key)
        {
            let sym = self.part.ids.intern(v);
            self.part.rejected_keys.insert(sym, row.line);
        }
        let col = col.map(|c| &self.ts.columns[c]);
        reject(
            &mut self.part.rejects,
            self.ts,
            &self.file,
            row.line,
            col,
            value,
            reason,
            row.fields,
        );
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

fn load_table<'x>(
    ts: &'x TableSchema,
    src: &TableSource,
    encoding: Encoding,
    schema: &'x Schema,
    part: Part<'x>,
    loaded: &'x HashMap<String, Table>,
    rejected_keys: &HashMap<String, HashMap<Sym, u32>>,
) -> Result<(Table, Part<'x>), String> {
    let file = src.display();
    let mut t = empty_table(ts);
    t.file = file.clone();
    let mut loader = TableLoader {
        ts,
        file: file.clone(),
        schema,
        part,
        rejected_keys,
        field_of: vec![None; ts.columns.len()],
        header_len: 0,
        from_excel: false,
        encoding: "",
        seen_keys: FxHashMap::default(),
        seen_rows: FxHashMap::default(),
        cells: Vec::with_capacity(ts.columns.len()),
        t,
        read: 0,
        words: ts.columns.iter().map(column_words).collect(),
        targets: ts
            .columns
            .iter()
            .map(|c| {
                c.references
                    .as_deref()
                    .filter(|r| *r != ts.name)
                    .and_then(|r| loaded.get(r))
            })
            .collect(),
    };
    match &src.kind {
        SourceKind::Csv => source::read_csv(&src.path, encoding, &mut loader)?,
        SourceKind::Sheet(s) => source::read_sheet_into(&src.path, s, &mut loader)?,
    }
    let TableLoader {
        mut t,
        read,
        encoding,
        mut part,
        ..
    } = loader;
    let key = ts.key;
    let file = file.as_str();
    // Resolve references to row numbers.
    if let Some(k) = key
        && let ColumnData::Id(v) = &t.columns[k]
    {
        t.key_index = v.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
    }
    let mut keep = vec![true; t.len()];
    let mut any_drop = false;
    for (ci, col) in ts.columns.iter().enumerate() {
        let Some(target) = col.references.as_deref() else {
            continue;
        };
        let ColumnData::Id(v) = &t.columns[ci] else {
            continue;
        };
        let index = if target == ts.name {
            Some(&t.key_index)
        } else {
            loaded.get(target).map(|tt| &tt.key_index)
        };
        let Some(index) = index else { continue };
        let mut rows = Vec::with_capacity(v.len());
        for (i, s) in v.iter().enumerate() {
            match index.get(s) {
                Some(r) => rows.push(*r),
                None if s.is_none() => rows.push(u32::MAX),
                None => {
                    // Only possible for self references.
                    keep[i] = false;
                    any_drop = true;
                    rows.push(u32::MAX);
                    part.rejects.push(Reject {
                        table: ts.name.clone(),
                        file: file.to_string(),
                        line: t.lines[i],
                        column: Some(col.display()),
                        value: Some(part.ids.resolve(*s).to_string()),
                        reason: format!(
                            "unknown {}: `{}` is not in table `{}`",
                            col.display(),
                            part.ids.resolve(*s),
                            ts.name
                        ),
                        raw: Vec::new(),
                    });
                }
            }
        }
        t.refs[ci] = Some(rows);
    }
    if any_drop {
        for c in t.columns.iter_mut() {
            c.retain(&keep);
        }
        let mut i = 0;
        t.lines.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
        for r in t.refs.iter_mut().flatten() {
            let mut i = 0;
            r.retain(|_| {
                let k = keep[i];
                i += 1;
                k
            });
        }
        if let Some(k) = key
            && let ColumnData::Id(v) = &t.columns[k]
        {
            t.key_index = v.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
        }
    }
    let rejected = part.rejects.len() as u64;
    part.stats = Some(TableStats {
        table: ts.name.clone(),
        file: file.to_string(),
        encoding: encoding.to_string(),
        read,
        loaded: t.len() as u64,
        rejected,
    });
    debug_assert_eq!(read, t.len() as u64 + rejected);
    Ok((t, part))
}
