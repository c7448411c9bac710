//! Loading a dataset folder against a [`Schema`]: find each table's file, map headers through
//! aliases, parse every cell, check keys and references, and account for every row.

use super::parse;
use super::source::{self, Encoding, Row, RowSink, SourceKind, TableSource};
use super::*;
use crate::policy::model::ColumnType;
use crate::policy::{ColumnSchema, Schema, TableSchema};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

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
    for ts in dependency_order(schema) {
        let Some(src) = sources.get(&ts.name) else {
            loaded.insert(ts.name.clone(), empty_table(ts));
            ds.stats.push(TableStats {
                table: ts.name.clone(),
                file: "(absent, optional)".into(),
                encoding: String::new(),
                read: 0,
                loaded: 0,
                rejected: 0,
            });
            continue;
        };
        match load_table(
            ts,
            src,
            opts.encoding,
            schema,
            &mut ds,
            &loaded,
            &mut rejected_keys,
        ) {
            Ok(t) => {
                loaded.insert(ts.name.clone(), t);
            }
            Err(message) => fatal.push(FatalError {
                file: src.display(),
                message,
            }),
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

/// Parse one cell; `Err` is the reason it cannot be read.
fn parse_cell(
    col: &ColumnSchema,
    text: &str,
    excel: bool,
    ids: &mut Interner,
) -> Result<Cell, String> {
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
            let n = norm(text);
            let alias = col
                .values
                .iter()
                .find(|(_, al)| al.iter().any(|a| norm(a) == n))
                .map(|(k, _)| k.as_str());
            Some(match alias {
                Some("true") => true,
                Some("false") => false,
                _ => parse::parse_bool(text).ok_or_else(|| {
                    format!("`{text}` is not yes/no; write true/false, 1/0, yes/no or 是/否")
                })?,
            })
        }),
        ColumnType::Number => Cell::Number(if empty {
            None
        } else {
            Some(parse::parse_number(text).ok_or_else(|| format!("`{text}` is not a number"))?)
        }),
        ColumnType::Enum => Cell::Enum(if empty {
            None
        } else {
            let n = norm(text);
            let idx = col
                .values
                .iter()
                .position(|(k, al)| norm(k) == n || al.iter().any(|a| norm(a) == n))
                .ok_or_else(|| {
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
            Some(idx as u8)
        }),
    })
}

#[allow(clippy::too_many_arguments)]
fn reject(
    ds: &mut Dataset,
    ts: &TableSchema,
    file: &str,
    line: u32,
    col: Option<&ColumnSchema>,
    value: Option<&str>,
    reason: String,
    raw: &[&str],
) {
    ds.rejects.push(Reject {
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
    file: &'x str,
    schema: &'x Schema,
    ds: &'x mut Dataset,
    loaded: &'x HashMap<String, Table>,
    rejected_keys: &'r HashMap<String, HashMap<Sym, u32>>,
    my_rejected: HashMap<Sym, u32>,
    field_of: Vec<Option<usize>>,
    header_len: usize,
    from_excel: bool,
    encoding: &'static str,
    seen_keys: FxHashMap<Sym, u32>,
    seen_rows: FxHashMap<u64, u32>,
    cells: Vec<Cell>,
    t: Table,
    read: u64,
}

impl RowSink for TableLoader<'_, '_> {
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
                    self.ds.warnings.push(Warning {
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
        let (ts, file) = (self.ts, self.file);
        let key = ts.key;
        if let Some(p) = row.problem {
            if let Some(v) = key_text(key, &self.field_of, row.fields) {
                let sym = self.ds.ids.intern(v);
                self.my_rejected.insert(sym, row.line);
            }
            reject(self.ds, ts, file, row.line, None, None, p, row.fields);
            return;
        }
        let header_len = self.header_len;
        if row.fields.len() > header_len && row.fields[header_len..].iter().any(|f| !f.is_empty()) {
            let why = format!(
                "the row has {} fields but the header has {}",
                row.fields.len(),
                header_len
            );
            reject(self.ds, ts, file, row.line, None, None, why, row.fields);
            return;
        }
        self.cells.clear();
        for (ci, col) in ts.columns.iter().enumerate() {
            let text = self.field_of[ci]
                .and_then(|fi| row.fields.get(fi))
                .copied()
                .unwrap_or("");
            match parse_cell(col, text, self.from_excel, &mut self.ds.ids) {
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
                    if key != Some(ci)
                        && let Some(v) = key_text(key, &self.field_of, row.fields)
                    {
                        let sym = self.ds.ids.intern(v);
                        self.my_rejected.insert(sym, row.line);
                    }
                    reject(
                        self.ds,
                        ts,
                        file,
                        row.line,
                        Some(col),
                        Some(text),
                        reason,
                        row.fields,
                    );
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
                reject(
                    self.ds,
                    ts,
                    file,
                    row.line,
                    Some(col),
                    Some(text),
                    why,
                    row.fields,
                );
                return;
            }
        }
        // Keys are unique.
        if let Some(k) = key
            && let Cell::Id(sym) = self.cells[k]
        {
            if let Some(first) = self.seen_keys.get(&sym) {
                let v = self.ds.ids.resolve(sym).to_string();
                let why = format!(
                    "duplicate key: {} `{v}` is already on line {first}",
                    ts.columns[k].display()
                );
                reject(
                    self.ds,
                    ts,
                    file,
                    row.line,
                    Some(&ts.columns[k]),
                    Some(&v),
                    why,
                    row.fields,
                );
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
            let Some(tt) = self.loaded.get(target) else {
                continue;
            };
            if tt.key_index.contains_key(sym) {
                continue;
            }
            let tkey = self.schema.tables[target].key_name().unwrap_or("key");
            let v = self.ds.ids.resolve(*sym).to_string();
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
            if let Some(k) = key
                && let Cell::Id(ks) = self.cells[k]
            {
                self.my_rejected.insert(ks, row.line);
            }
            reject(
                self.ds,
                ts,
                file,
                row.line,
                Some(col),
                Some(&v),
                why,
                row.fields,
            );
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
                self.ds.warnings.push(Warning {
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

/// The key cell of a row, as text.
fn key_text<'a>(
    key: Option<usize>,
    field_of: &[Option<usize>],
    fields: &[&'a str],
) -> Option<&'a str> {
    key.and_then(|k| field_of[k])
        .and_then(|fi| fields.get(fi).copied())
}

fn load_table(
    ts: &TableSchema,
    src: &TableSource,
    encoding: Encoding,
    schema: &Schema,
    ds: &mut Dataset,
    loaded: &HashMap<String, Table>,
    rejected_keys: &mut HashMap<String, HashMap<Sym, u32>>,
) -> Result<Table, String> {
    let file = src.display();
    let rejects_before = ds.rejects.len();
    let mut t = empty_table(ts);
    t.file = file.clone();
    let mut loader = TableLoader {
        ts,
        file: &file,
        schema,
        ds,
        loaded,
        rejected_keys: &*rejected_keys,
        my_rejected: HashMap::new(),
        field_of: vec![None; ts.columns.len()],
        header_len: 0,
        from_excel: false,
        encoding: "",
        seen_keys: FxHashMap::default(),
        seen_rows: FxHashMap::default(),
        cells: Vec::with_capacity(ts.columns.len()),
        t,
        read: 0,
    };
    match &src.kind {
        SourceKind::Csv => source::read_csv(&src.path, encoding, &mut loader)?,
        SourceKind::Sheet(s) => source::read_sheet_into(&src.path, s, &mut loader)?,
    }
    let TableLoader {
        mut t,
        my_rejected,
        read,
        encoding,
        ds,
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
                    ds.rejects.push(Reject {
                        table: ts.name.clone(),
                        file: file.to_string(),
                        line: t.lines[i],
                        column: Some(col.display()),
                        value: Some(ds.ids.resolve(*s).to_string()),
                        reason: format!(
                            "unknown {}: `{}` is not in table `{}`",
                            col.display(),
                            ds.ids.resolve(*s),
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
    rejected_keys.insert(ts.name.clone(), my_rejected);
    let rejected = (ds.rejects.len() - rejects_before) as u64;
    ds.stats.push(TableStats {
        table: ts.name.clone(),
        file: file.to_string(),
        encoding: encoding.to_string(),
        read,
        loaded: t.len() as u64,
        rejected,
    });
    debug_assert_eq!(read, t.len() as u64 + rejected);
    Ok(t)
}
