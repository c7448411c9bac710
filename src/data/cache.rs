//! The columnar cache: a loaded dataset kept as Apache Arrow IPC files, so the next run on
//! the same export starts from typed columns instead of parsing CSV or XLSX again.
//!
//! A cache entry is a folder holding `manifest.json`, `ids.arrow` (every interned id, row `i`
//! is id number `i`) and one `TABLE.arrow` per table (a `_line` column, then the schema's
//! columns by name). It is keyed by the policy set's schema, the decoding option and the
//! rulebook version (the folder's name), and by every input file's name, size, mtime and
//! content hash (in the manifest). Every cache file's size and hash are in the manifest, and
//! the manifest carries a hash of itself: a changed, damaged or stale entry is rebuilt from the
//! data, never trusted. The format is documented in `docs/cache.md`.

use super::load::{discover, load};
use super::*;
use crate::policy::model::ColumnType;
use crate::policy::{Schema, TableSchema};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray,
    TimestampSecondArray, UInt8Array, UInt32Array,
};
use arrow_schema::{DataType, Field, TimeUnit};
use rayon::prelude::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the cache layout; an entry of another version is rebuilt.
const FORMAT: u32 = 1;
/// Rows per Arrow record batch (text offsets are 32-bit per batch).
const BATCH_ROWS: usize = 1 << 20;
/// The manifest's first line starts with this, then the hash of the rest.
const MAGIC: &str = "rulebook-cache";

/// Where the cache of a dataset folder lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Cache {
    /// No cache: always read the files.
    Off,
    /// In the folder `.rulebook-cache` inside the dataset folder.
    #[default]
    Beside,
    /// Under this folder (one entry per dataset folder and schema).
    In(PathBuf),
}

/// What the cache did for a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No cache was asked for.
    Off,
    /// The dataset came from the cache.
    Hit,
    /// There was no entry; the data was loaded and the entry written.
    Built,
    /// The entry was stale (why: the data files changed, another rulebook version); the data
    /// was loaded and the entry rewritten.
    Rebuilt(String),
    /// The entry was damaged (what); the data was loaded and the entry rewritten.
    Repaired(String),
    /// The data was loaded but the entry could not be written (why).
    NotWritten(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Off => f.write_str("none"),
            Outcome::Hit => f.write_str("hit (the data was read from the cache)"),
            Outcome::Built => f.write_str("written"),
            Outcome::Rebuilt(why) => write!(f, "rebuilt ({why})"),
            Outcome::Repaired(what) => write!(f, "rebuilt ({what})"),
            Outcome::NotWritten(why) => write!(f, "not written ({why})"),
        }
    }
}

/// One input file as the key records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InputFile {
    /// File name in the dataset folder.
    name: String,
    size: u64,
    /// Modification time, nanoseconds since 1970.
    mtime_ns: i128,
    /// Content hash (XXH3-128 of 32 MiB chunks, then of their hashes), hex.
    hash: String,
}

/// One cache file, as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheFile {
    /// File name in the entry folder.
    file: String,
    bytes: u64,
    /// XXH3-128 of the file's bytes, hex.
    hash: String,
}

/// One table of the entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedTable {
    name: String,
    /// The data file (and sheet) the rows came from.
    source: String,
    rows: u64,
    arrow: CacheFile,
}

/// A rejected row with its raw fields (which [`Reject`] does not serialize).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedReject {
    table: String,
    file: String,
    line: u32,
    column: Option<String>,
    value: Option<String>,
    reason: String,
    raw: Vec<String>,
}

/// `manifest.json`: the key, the cache files, and what the load found besides the rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    rulebook: String,
    inputs: Vec<InputFile>,
    ids: CacheFile,
    id_count: u64,
    tables: Vec<CachedTable>,
    stats: Vec<TableStats>,
    warnings: Vec<Warning>,
    rejects: Vec<CachedReject>,
}

/// Why an entry cannot be used.
enum Miss {
    /// There is no entry.
    Absent,
    /// The entry is for other data files or another version (why); rebuild it.
    Stale(String),
    /// The entry is damaged (what); rebuild it.
    Damaged(String),
}

/// Load the dataset in `dir` through the cache: from the cache when its entry is current,
/// else from the files (then the entry is written). Without a cache, [`load`].
pub fn load_cached(
    dir: &Path,
    schema: &Schema,
    opts: &LoadOptions,
    cache: &Cache,
) -> Result<(Dataset, Outcome), Error> {
    let Some(entry) = entry_dir(dir, schema, opts, cache) else {
        return load(dir, schema, opts).map(|ds| (ds, Outcome::Off));
    };
    let before = match inputs(dir, schema, true) {
        Ok(i) => i,
        // The folder cannot be read as a dataset: the load says why.
        Err(()) => return load(dir, schema, opts).map(|ds| (ds, Outcome::Off)),
    };
    let miss = match read_entry_settled(&entry, schema, &before) {
        Ok(ds) => return Ok((ds, Outcome::Hit)),
        Err(m) => m,
    };
    let ds = load(dir, schema, opts)?;
    // A file that changed while it was read: the entry would not match what was loaded.
    let after = inputs(dir, schema, false).ok();
    let outcome = if after.as_ref().map(|a| stamps(a)) != Some(stamps(&before)) {
        Outcome::NotWritten("a data file changed while it was read".into())
    } else {
        // A damaged entry is replaced even when its manifest looks current.
        let keep_current = !matches!(miss, Miss::Damaged(_));
        match write_entry(&entry, schema, &before, &ds, keep_current) {
            Ok(()) => match miss {
                Miss::Absent => Outcome::Built,
                Miss::Stale(why) => Outcome::Rebuilt(why),
                Miss::Damaged(what) => Outcome::Repaired(what),
            },
            Err(e) => Outcome::NotWritten(e),
        }
    };
    Ok((ds, outcome))
}

/// The dataset from the cache, when its entry is current; `None` otherwise (nothing is
/// written). For commands that can do with less than the whole dataset when there is no
/// cache (`explain`).
pub fn cached(dir: &Path, schema: &Schema, opts: &LoadOptions, cache: &Cache) -> Option<Dataset> {
    let entry = entry_dir(dir, schema, opts, cache)?;
    // Names, sizes and mtimes first: a stale entry is found without hashing the data files
    // (the caller then does a load of its own, which does not need the hashes).
    let stamped = inputs(dir, schema, false).ok()?;
    let m = parse_manifest(&std::fs::read(entry.join("manifest.json")).ok()?).ok()?;
    if stamps(&m.inputs) != stamps(&stamped) {
        return None;
    }
    let inputs = inputs(dir, schema, true).ok()?;
    read_entry_settled(&entry, schema, &inputs).ok()
}

/// [`read_entry`], tried again once when the entry looks damaged: another run may have been
/// replacing it while it was read.
fn read_entry_settled(
    entry: &Path,
    schema: &Schema,
    inputs: &[InputFile],
) -> Result<Dataset, Miss> {
    match read_entry(entry, schema, inputs) {
        Err(Miss::Damaged(_)) => read_entry(entry, schema, inputs),
        r => r,
    }
}

/// The entry folder for this dataset folder, schema, decoding and rulebook version.
fn entry_dir(dir: &Path, schema: &Schema, opts: &LoadOptions, cache: &Cache) -> Option<PathBuf> {
    let mut key = format!(
        "format {FORMAT}\nrulebook {}\nencoding {:?}\nschema {schema:?}\n",
        env!("CARGO_PKG_VERSION"),
        opts.encoding
    );
    let root = match cache {
        Cache::Off => return None,
        Cache::Beside => dir.join(".rulebook-cache"),
        Cache::In(root) => {
            // One cache folder may serve many datasets: the folder is part of the key.
            let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            key.push_str(&format!("data {}\n", abs.display()));
            root.clone()
        }
    };
    Some(root.join(format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(key.as_bytes())
    )))
}

/// The dataset's input files (each table's file once), with sizes, mtimes and (with `hash`)
/// content hashes; `Err` when the folder cannot be read as a dataset.
fn inputs(dir: &Path, schema: &Schema, hash: bool) -> Result<Vec<InputFile>, ()> {
    let mut notes = Vec::new();
    let sources = discover(dir, schema, &mut notes).map_err(|_| ())?;
    let mut paths: Vec<&Path> = sources.values().map(|s| s.path.as_path()).collect();
    paths.sort();
    paths.dedup();
    let mut files: Vec<InputFile> = paths
        .par_iter()
        .map(|p| {
            let meta = std::fs::metadata(p).map_err(|_| ())?;
            let mtime_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            Ok(InputFile {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                size: meta.len(),
                mtime_ns,
                hash: String::new(),
            })
        })
        .collect::<Result<_, ()>>()?;
    // Files the load ignores (with a warning) are part of what it reports.
    for n in notes {
        files.push(InputFile {
            name: n.file,
            size: 0,
            mtime_ns: 0,
            hash: n.message,
        });
    }
    // Hashes last, and only of table files: they are the costly part.
    if hash {
        for (f, p) in files.iter_mut().zip(&paths) {
            f.hash = file_hash(p).map_err(|_| ())?;
        }
    }
    Ok(files)
}

/// Names, sizes and mtimes (what changes when a file is written).
fn stamps(files: &[InputFile]) -> Vec<(&str, u64, i128)> {
    files
        .iter()
        .map(|f| (f.name.as_str(), f.size, f.mtime_ns))
        .collect()
}

/// XXH3-128 of a file, hashed in 32 MiB chunks on all cores, then of the chunks' hashes.
fn file_hash(path: &Path) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    const CHUNK: u64 = 32 << 20;
    let len = std::fs::metadata(path)?.len();
    let chunks = len.div_ceil(CHUNK).max(1);
    let hashes: Vec<u128> = (0..chunks)
        .into_par_iter()
        .map(|i| -> std::io::Result<u128> {
            let mut f = std::fs::File::open(path)?;
            f.seek(SeekFrom::Start(i * CHUNK))?;
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut left = CHUNK.min(len - i * CHUNK) as usize;
            while left > 0 {
                let n = f.read(&mut buf[..left.min(1 << 20)])?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                left -= n;
            }
            Ok(h.digest128())
        })
        .collect::<std::io::Result<_>>()?;
    let mut all = Vec::with_capacity(hashes.len() * 16 + 8);
    all.extend_from_slice(&len.to_le_bytes());
    for h in hashes {
        all.extend_from_slice(&h.to_le_bytes());
    }
    Ok(format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&all)))
}

/// A writer that hashes (XXH3-128) and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: xxhash_rust::xxh3::Xxh3,
    bytes: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            bytes: 0,
        }
    }

    /// Bytes written, their hash (hex), and the inner writer.
    fn finish(self) -> (u64, String, W) {
        (
            self.bytes,
            format!("{:032x}", self.hasher.digest128()),
            self.inner,
        )
    }
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn bytes_hash(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Read the entry in `entry` if it is current for `inputs`.
fn read_entry(entry: &Path, schema: &Schema, inputs: &[InputFile]) -> Result<Dataset, Miss> {
    let path = entry.join("manifest.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
        Err(e) => return Err(Miss::Damaged(format!("its manifest cannot be read: {e}"))),
    };
    let m = parse_manifest(&text).map_err(Miss::Damaged)?;
    if m.format != FORMAT || m.rulebook != env!("CARGO_PKG_VERSION") {
        return Err(Miss::Stale("written by another rulebook version".into()));
    }
    if m.inputs != inputs {
        return Err(Miss::Stale("the data files changed".into()));
    }
    let damaged = |what: &str, why: String| Miss::Damaged(format!("{what} is damaged: {why}"));
    let ids = open_cache_file(entry, &m.ids).map_err(|e| damaged(&m.ids.file, e))?;
    let (ids, tables) = rayon::join(
        || read_ids(ids, m.id_count),
        || {
            m.tables
                .par_iter()
                .map(|t| {
                    let ts = schema
                        .tables
                        .get(&t.name)
                        .ok_or_else(|| format!("table `{}` is not in the schema", t.name))?;
                    read_table(open_cache_file(entry, &t.arrow)?, ts, t)
                })
                .collect::<Vec<Result<Table, String>>>()
        },
    );
    let ids = ids.map_err(|e| damaged(&m.ids.file, e))?;
    let mut ds = Dataset {
        tables: IndexMap::new(),
        ids,
        stats: m.stats,
        rejects: m.rejects.into_iter().map(Reject::from).collect(),
        warnings: m.warnings,
        focus: None,
    };
    for (t, meta) in tables.into_iter().zip(&m.tables) {
        let mut t = t.map_err(|e| damaged(&meta.arrow.file, e))?;
        index_keys(&mut t, &schema.tables[&meta.name], ds.ids.len());
        ds.tables.insert(meta.name.clone(), t);
    }
    if ds.tables.len() != schema.tables.len() {
        return Err(Miss::Damaged("it does not hold every table".into()));
    }
    Ok(ds)
}

/// The manifest, after checking the hash on its first line.
fn parse_manifest(text: &[u8]) -> Result<Manifest, String> {
    let bad = || "its manifest is damaged".to_string();
    let nl = memchr::memchr(b'\n', text).ok_or_else(bad)?;
    let head = std::str::from_utf8(&text[..nl]).map_err(|_| bad())?;
    let body = &text[nl + 1..];
    if head != format!("{MAGIC} {}", bytes_hash(body)) {
        return Err(bad());
    }
    serde_json::from_slice(body).map_err(|e| format!("its manifest is damaged: {e}"))
}

/// A cache file, checked against the manifest's size and hash, ready to be read from its
/// start (the same open file is read, so what was checked is what is read).
fn open_cache_file(
    entry: &Path,
    f: &CacheFile,
) -> Result<std::io::BufReader<std::fs::File>, String> {
    use std::io::{Read, Seek};
    let name = Path::new(&f.file);
    if name.components().count() != 1 {
        return Err("its name is not a file of the entry".into());
    }
    let mut file = std::fs::File::open(entry.join(name)).map_err(|e| e.to_string())?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    if len != f.bytes || format!("{:032x}", h.digest128()) != f.hash {
        return Err("its size or hash does not match the manifest".into());
    }
    file.rewind().map_err(|e| e.to_string())?;
    Ok(std::io::BufReader::with_capacity(1 << 20, file))
}

/// An Arrow IPC file reader; record batches are read one at a time.
fn ipc_reader<R: std::io::Read + std::io::Seek>(
    src: R,
) -> Result<arrow_ipc::reader::FileReader<R>, String> {
    arrow_ipc::reader::FileReader::try_new(src, None).map_err(|e| e.to_string())
}

fn read_ids<R: std::io::Read + std::io::Seek>(src: R, count: u64) -> Result<Interner, String> {
    let mut ids = Interner::default();
    for b in ipc_reader(src)? {
        let b = b.map_err(|e| e.to_string())?;
        let col = b
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("its column is not text")?;
        for s in col.iter() {
            let s = s.unwrap_or_default();
            let before = ids.len();
            if ids.intern(s).0 as usize != before {
                return Err(format!("id `{s}` is there twice"));
            }
        }
    }
    if ids.len() as u64 != count {
        return Err("it does not hold every id".into());
    }
    Ok(ids)
}

/// Key index and dense row-by-symbol array of a table read from the cache.
fn index_keys(t: &mut Table, ts: &TableSchema, n_ids: usize) {
    if let Some(k) = ts.key
        && let ColumnData::Id(v) = &t.columns[k]
    {
        t.key_index = v.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
        t.row_by_sym = vec![u32::MAX; n_ids];
        for (i, s) in v.iter().enumerate() {
            if let Some(slot) = t.row_by_sym.get_mut(s.0 as usize) {
                *slot = i as u32;
            }
        }
    }
}

/// The Arrow type a column is kept as.
fn arrow_type(ty: &ColumnData) -> DataType {
    match ty {
        ColumnData::Id(_) => DataType::UInt32,
        ColumnData::Text(_) => DataType::Utf8,
        ColumnData::Date(_) => DataType::Date32,
        ColumnData::DateTime(_) => DataType::Timestamp(TimeUnit::Second, None),
        ColumnData::Bool(_) => DataType::Boolean,
        ColumnData::Number(_) => DataType::Float64,
        ColumnData::Enum(_) => DataType::UInt8,
    }
}

/// Days from 0001-01-01 to a date, as Arrow's days since 1970.
fn date_days(d: NaiveDate) -> i32 {
    use chrono::Datelike;
    d.num_days_from_ce() - UNIX_DAYS_FROM_CE as i32
}

/// Column `c`'s rows `rows` as an Arrow array.
fn to_arrow(c: &ColumnData, rows: std::ops::Range<usize>) -> ArrayRef {
    match c {
        ColumnData::Id(v) => Arc::new(UInt32Array::from_iter(
            v[rows].iter().map(|s| (!s.is_none()).then_some(s.0)),
        )),
        ColumnData::Text(t) => Arc::new(StringArray::from_iter_values(rows.map(|r| t.get(r)))),
        ColumnData::Date(v) => Arc::new(Date32Array::from_iter(
            v[rows].iter().map(|d| d.map(date_days)),
        )),
        ColumnData::DateTime(v) => {
            Arc::new(TimestampSecondArray::from_iter(rows.map(|r| v.secs(r))))
        }
        ColumnData::Bool(v) => Arc::new(BooleanArray::from_iter(v[rows].iter().copied())),
        ColumnData::Number(v) => Arc::new(Float64Array::from_iter(rows.map(|r| v.get(r)))),
        ColumnData::Enum(v) => Arc::new(UInt8Array::from_iter(v[rows].iter().copied())),
    }
}

/// Append an Arrow array to column `c` (of the type [`arrow_type`] gives).
fn from_arrow(c: &mut ColumnData, a: &dyn Array) -> Result<(), String> {
    let wrong = || {
        format!(
            "a column is {}, not the type the schema gives",
            a.data_type()
        )
    };
    macro_rules! cast {
        ($t:ty) => {
            a.as_any().downcast_ref::<$t>().ok_or_else(wrong)?
        };
    }
    match c {
        ColumnData::Id(v) => {
            let a = cast!(UInt32Array);
            if a.null_count() == 0 {
                v.extend(a.values().iter().map(|&x| Sym(x)));
            } else {
                v.extend(a.iter().map(|x| x.map_or(Sym::NONE, Sym)));
            }
        }
        ColumnData::Text(t) => {
            let a = cast!(StringArray);
            if a.null_count() > 0 {
                return Err("a text column has nulls".into());
            }
            let offsets = a.value_offsets();
            let (first, last) = (offsets[0] as usize, offsets[a.len()] as usize);
            let values = std::str::from_utf8(&a.value_data()[first..last])
                .map_err(|_| "a text column is not UTF-8".to_string())?;
            let base = t.buf.len();
            t.buf.push_str(values);
            for &o in &offsets[1..] {
                t.push_end(base + o as usize - first);
            }
        }
        ColumnData::Date(v) => {
            let a = cast!(Date32Array);
            for d in a.iter() {
                v.push(match d {
                    None => None,
                    Some(d) => Some(
                        NaiveDate::from_num_days_from_ce_opt(d + UNIX_DAYS_FROM_CE as i32)
                            .ok_or("a date is out of range")?,
                    ),
                });
            }
        }
        ColumnData::DateTime(v) => {
            let a = cast!(TimestampSecondArray);
            v.reserve(a.len());
            if a.null_count() == 0 {
                a.values().iter().for_each(|&x| v.push_secs(Some(x)));
            } else {
                a.iter().for_each(|x| v.push_secs(x));
            }
        }
        ColumnData::Bool(v) => v.extend(cast!(BooleanArray).iter()),
        ColumnData::Number(v) => {
            let a = cast!(Float64Array);
            if a.null_count() == 0 {
                v.0.extend_from_slice(a.values());
            } else {
                v.0.extend(a.iter().map(|x| x.unwrap_or(f64::NAN)));
            }
        }
        ColumnData::Enum(v) => v.extend(cast!(UInt8Array).iter()),
    }
    Ok(())
}

/// An empty column of the type an Arrow field holds, if the schema's column can be kept so
/// (an id key that is not looked up by id is kept as text).
fn column_for(f: &Field, ty: ColumnType) -> Option<ColumnData> {
    let c = match (f.data_type(), ty) {
        (DataType::UInt32, ColumnType::Id) => ColumnData::Id(Vec::new()),
        (DataType::Utf8, ColumnType::Id | ColumnType::Text) => {
            ColumnData::Text(TextColumn::default())
        }
        (DataType::Date32, ColumnType::Date) => ColumnData::Date(Vec::new()),
        (DataType::Timestamp(TimeUnit::Second, None), ColumnType::Datetime) => {
            ColumnData::DateTime(DateTimes::default())
        }
        (DataType::Boolean, ColumnType::Bool) => ColumnData::Bool(Vec::new()),
        (DataType::Float64, ColumnType::Number) => ColumnData::Number(Numbers::default()),
        (DataType::UInt8, ColumnType::Enum) => ColumnData::Enum(Vec::new()),
        _ => return None,
    };
    Some(c)
}

/// A table from its Arrow IPC file, checked against the schema and the manifest.
fn read_table<R: std::io::Read + std::io::Seek>(
    src: R,
    ts: &TableSchema,
    meta: &CachedTable,
) -> Result<Table, String> {
    let mut t = super::load::empty_table(ts);
    t.file = meta.source.clone();
    let reader = ipc_reader(src)?;
    {
        let schema = reader.schema();
        let fields = schema.fields();
        if fields.len() != ts.columns.len() + 1 {
            return Err("its columns are not the schema's".into());
        }
        for ((c, cs), f) in t
            .columns
            .iter_mut()
            .zip(&ts.columns)
            .zip(fields.iter().skip(1))
        {
            if f.name() != &cs.name {
                return Err(format!(
                    "column `{}` is not the schema's `{}`",
                    f.name(),
                    cs.name
                ));
            }
            *c = column_for(f, cs.ty).ok_or_else(|| {
                format!(
                    "column `{}` is {}, not a {}",
                    cs.name,
                    f.data_type(),
                    cs.ty.name()
                )
            })?;
        }
    }
    // Room for every row at once: grown by doubling, the columns would end up to twice
    // their size.
    let rows = usize::try_from(meta.rows).map_err(|_| "too many rows")?;
    if rows <= 1 << 32 {
        for c in &mut t.columns {
            c.reserve(rows);
        }
    }
    for b in reader {
        let b = b.map_err(|e| e.to_string())?;
        if b.num_columns() != ts.columns.len() + 1 {
            return Err("its columns are not the schema's".into());
        }
        let lines = b
            .column(0)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or("its `_line` column is not UInt32")?;
        for l in lines.iter() {
            t.lines.push(l.ok_or("a line number is missing")?);
        }
        for (c, a) in t.columns.iter_mut().zip(b.columns().iter().skip(1)) {
            from_arrow(c, a.as_ref())?;
        }
    }
    if t.len() as u64 != meta.rows || t.columns.iter().any(|c| c.len() != t.len()) {
        return Err("its row count does not match the manifest".into());
    }
    for c in &mut t.columns {
        if let ColumnData::Text(text) = c {
            text.buf.shrink_to_fit();
        }
    }
    Ok(t)
}

/// A table as one Arrow IPC file's bytes.
fn write_table<W: std::io::Write>(out: W, t: &Table, ts: &TableSchema) -> Result<W, String> {
    let mut fields = vec![Field::new("_line", DataType::UInt32, false)];
    for (c, cs) in t.columns.iter().zip(&ts.columns) {
        let mut f = Field::new(&cs.name, arrow_type(c), true);
        let mut meta = std::collections::HashMap::new();
        if !cs.label.is_empty() {
            meta.insert("label".to_string(), cs.label.clone());
        }
        if !cs.values.is_empty() {
            // An enum column holds the index of its value in this list.
            let values: Vec<&str> = cs.values.iter().map(|(v, _)| v.as_str()).collect();
            meta.insert("enum_values".to_string(), values.join(","));
        }
        if matches!(c, ColumnData::Id(_)) {
            meta.insert("ids".to_string(), "row number in ids.arrow".to_string());
        }
        f.set_metadata(meta);
        fields.push(f);
    }
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    let mut w = arrow_ipc::writer::FileWriter::try_new(out, &schema).map_err(|e| e.to_string())?;
    let mut start = 0;
    loop {
        let end = (start + BATCH_ROWS).min(t.len());
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(t.columns.len() + 1);
        cols.push(Arc::new(UInt32Array::from_iter_values(
            (start..end).map(|r| t.lines.get(r)),
        )));
        cols.extend(t.columns.iter().map(|c| to_arrow(c, start..end)));
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())?;
        w.write(&batch).map_err(|e| e.to_string())?;
        start = end;
        if start >= t.len() {
            break;
        }
    }
    w.finish().map_err(|e| e.to_string())?;
    w.into_inner().map_err(|e| e.to_string())
}

fn write_ids<W: std::io::Write>(out: W, ids: &Interner) -> Result<W, String> {
    let schema = Arc::new(arrow_schema::Schema::new(vec![Field::new(
        "id",
        DataType::Utf8,
        false,
    )]));
    let mut w = arrow_ipc::writer::FileWriter::try_new(out, &schema).map_err(|e| e.to_string())?;
    for part in ids.strings().chunks(BATCH_ROWS).chain(
        // An empty dataset still has one (empty) batch.
        ids.is_empty().then_some(&[][..]),
    ) {
        let col = StringArray::from_iter_values(part.iter().map(|s| s.as_ref()));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(col)]).map_err(|e| e.to_string())?;
        w.write(&batch).map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())?;
    w.into_inner().map_err(|e| e.to_string())
}

/// Write the entry for `ds` (loaded from files matching `inputs`): into a new folder beside
/// it, which then replaces the old entry, so a reader never sees half an entry. With
/// `keep_current`, an entry another run has meanwhile written for the same inputs is kept.
fn write_entry(
    entry: &Path,
    schema: &Schema,
    inputs: &[InputFile],
    ds: &Dataset,
    keep_current: bool,
) -> Result<(), String> {
    let parent = entry.parent().ok_or("no folder for the cache")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".new-")
        .tempdir_in(parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    // Each file is hashed as it is written (never held whole in memory).
    let save = |name: &str,
                write: &dyn Fn(
        Hashing<std::io::BufWriter<std::fs::File>>,
    )
        -> Result<Hashing<std::io::BufWriter<std::fs::File>>, String>|
     -> Result<CacheFile, String> {
        let file =
            std::fs::File::create(tmp.path().join(name)).map_err(|e| format!("{name}: {e}"))?;
        let h = write(Hashing::new(std::io::BufWriter::with_capacity(
            1 << 20,
            file,
        )))?;
        let (bytes, hash, inner) = h.finish();
        // No fsync: after a crash, a torn file fails its hash and is rebuilt.
        inner
            .into_inner()
            .map_err(|e| format!("{name}: {}", e.error()))?;
        Ok(CacheFile {
            file: name.to_string(),
            bytes,
            hash,
        })
    };
    let names: Vec<&String> = ds.tables.keys().collect();
    let (ids, tables) = rayon::join(
        || save("ids.arrow", &|w| write_ids(w, &ds.ids)),
        || {
            names
                .par_iter()
                .enumerate()
                .map(|(i, name)| {
                    let t = &ds.tables[*name];
                    let ts = schema
                        .tables
                        .get(*name)
                        .ok_or("a table is not in the schema")?;
                    // Numbered: a table's name need not make a good file name.
                    save(&format!("table-{i:02}.arrow"), &|w| write_table(w, t, ts))
                })
                .collect::<Result<Vec<CacheFile>, String>>()
        },
    );
    let ids = ids?;
    let tables = tables?
        .into_iter()
        .zip(&names)
        .map(|(arrow, name)| {
            let t = &ds.tables[*name];
            CachedTable {
                name: name.to_string(),
                source: t.file.clone(),
                rows: t.len() as u64,
                arrow,
            }
        })
        .collect();
    let m = Manifest {
        format: FORMAT,
        rulebook: env!("CARGO_PKG_VERSION").to_string(),
        inputs: inputs.to_vec(),
        ids,
        id_count: ds.ids.len() as u64,
        tables,
        stats: ds.stats.clone(),
        warnings: ds.warnings.clone(),
        rejects: ds.rejects.iter().map(CachedReject::from).collect(),
    };
    let body = serde_json::to_vec(&m).map_err(|e| e.to_string())?;
    let mut text = format!("{MAGIC} {}\n", bytes_hash(&body)).into_bytes();
    text.extend_from_slice(&body);
    std::fs::write(tmp.path().join("manifest.json"), text).map_err(|e| e.to_string())?;
    // Another run may have written a current entry meanwhile: keep that one.
    if keep_current && current_manifest(entry, inputs) {
        return Ok(());
    }
    let tmp = tmp.keep();
    // The old entry is moved aside first, so the new one goes in with one rename.
    let old = parent.join(format!(
        ".old-{}-{}",
        std::process::id(),
        entry
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let had_old = std::fs::rename(entry, &old).is_ok();
    let placed = std::fs::rename(&tmp, entry);
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    if let Err(e) = placed {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another run put its entry there first: keep it.
        if !current_manifest(entry, inputs) {
            return Err(format!("{}: {e}", entry.display()));
        }
    }
    Ok(())
}

/// Whether `entry` has a whole manifest for exactly these inputs.
fn current_manifest(entry: &Path, inputs: &[InputFile]) -> bool {
    std::fs::read(entry.join("manifest.json"))
        .ok()
        .and_then(|t| parse_manifest(&t).ok())
        .is_some_and(|m| m.format == FORMAT && m.inputs == inputs)
}

impl From<&Reject> for CachedReject {
    fn from(r: &Reject) -> Self {
        CachedReject {
            table: r.table.clone(),
            file: r.file.clone(),
            line: r.line,
            column: r.column.clone(),
            value: r.value.clone(),
            reason: r.reason.clone(),
            raw: r.raw.clone(),
        }
    }
}

impl From<CachedReject> for Reject {
    fn from(r: CachedReject) -> Self {
        Reject {
            table: r.table,
            file: r.file,
            line: r.line,
            column: r.column,
            value: r.value,
            reason: r.reason,
            raw: r.raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ColumnSchema;

    fn column(name: &str, ty: ColumnType) -> ColumnSchema {
        ColumnSchema {
            name: name.into(),
            label: format!("{name}标签"),
            ty,
            aliases: Vec::new(),
            required: false,
            references: None,
            values: if ty == ColumnType::Enum {
                vec![("a".into(), Vec::new()), ("b".into(), Vec::new())]
            } else {
                Vec::new()
            },
            after: None,
        }
    }

    /// Every column type, empty cells, wide date-times and scattered lines survive the
    /// Arrow files unchanged, across record batches.
    #[test]
    fn tables_round_trip() {
        let ts = TableSchema {
            name: "t".into(),
            label: "t".into(),
            aliases: Vec::new(),
            key: Some(0),
            optional: false,
            columns: vec![
                column("id", ColumnType::Id),
                column("text", ColumnType::Text),
                column("date", ColumnType::Date),
                column("at", ColumnType::Datetime),
                column("ok", ColumnType::Bool),
                column("n", ColumnType::Number),
                column("kind", ColumnType::Enum),
            ],
            indexed: true,
        };
        let n = BATCH_ROWS + 3;
        let mut t = super::super::load::empty_table(&ts);
        t.file = "t.csv".into();
        let day = NaiveDate::from_ymd_opt(2020, 2, 7).unwrap();
        for r in 0..n {
            t.lines.push(if r % 3 == 0 {
                2 * r as u32 + 2
            } else {
                r as u32 + 7
            });
            let cols = &mut t.columns;
            if let ColumnData::Id(v) = &mut cols[0] {
                v.push(if r % 5 == 4 { Sym::NONE } else { Sym(r as u32) });
            }
            if let ColumnData::Text(v) = &mut cols[1] {
                v.push(if r % 2 == 0 { "" } else { "社区服务" });
            }
            if let ColumnData::Date(v) = &mut cols[2] {
                v.push((r % 7 != 0).then(|| day + chrono::Days::new(r as u64 % 400)));
            }
            if let ColumnData::DateTime(v) = &mut cols[3] {
                v.push_secs(match r {
                    0 => None,
                    1 => Some(-86_400 * 365),
                    _ => Some(1_580_000_000 + r as i64),
                });
            }
            if let ColumnData::Bool(v) = &mut cols[4] {
                v.push([None, Some(true), Some(false)][r % 3]);
            }
            if let ColumnData::Number(v) = &mut cols[5] {
                v.push((r % 4 != 0).then_some(r as f64 / 4.0));
            }
            if let ColumnData::Enum(v) = &mut cols[6] {
                v.push([None, Some(0), Some(1)][r % 3]);
            }
        }
        let bytes = write_table(Vec::new(), &t, &ts).unwrap();
        let meta = CachedTable {
            name: "t".into(),
            source: "t.csv".into(),
            rows: n as u64,
            arrow: CacheFile {
                file: "table-00.arrow".into(),
                bytes: 0,
                hash: String::new(),
            },
        };
        let back = read_table(std::io::Cursor::new(&bytes), &ts, &meta).unwrap();
        assert_eq!(back.file, "t.csv");
        assert_eq!(back.len(), n);
        assert!(back.lines.iter().eq(t.lines.iter()));
        assert!(matches!(
            back.columns[3],
            ColumnData::DateTime(DateTimes::Wide(_))
        ));
        for (a, b) in back.columns.iter().zip(&t.columns) {
            match (a, b) {
                (ColumnData::Id(a), ColumnData::Id(b)) => assert_eq!(a, b),
                (ColumnData::Text(a), ColumnData::Text(b)) => assert!(a.iter().eq(b.iter())),
                (ColumnData::Date(a), ColumnData::Date(b)) => assert_eq!(a, b),
                (ColumnData::DateTime(a), ColumnData::DateTime(b)) => {
                    assert!(a.iter().eq(b.iter()))
                }
                (ColumnData::Bool(a), ColumnData::Bool(b)) => assert_eq!(a, b),
                (ColumnData::Number(a), ColumnData::Number(b)) => assert!(a.iter().eq(b.iter())),
                (ColumnData::Enum(a), ColumnData::Enum(b)) => assert_eq!(a, b),
                _ => panic!("column types differ"),
            }
        }
        // Another table's file, or a schema with another column count, is refused.
        let mut other = ts.clone();
        other.columns.pop();
        assert!(read_table(std::io::Cursor::new(&bytes), &other, &meta).is_err());
        let wrong_rows = CachedTable { rows: 1, ..meta };
        assert!(read_table(std::io::Cursor::new(&bytes), &ts, &wrong_rows).is_err());
    }

    #[test]
    fn ids_round_trip_and_manifest_hash() {
        let mut ids = Interner::default();
        for s in ["M001", "C01", "一个很长很长的编号-0000000001"] {
            ids.intern(s);
        }
        let back = read_ids(
            std::io::Cursor::new(write_ids(Vec::new(), &ids).unwrap()),
            3,
        )
        .unwrap();
        assert_eq!(back.strings(), ids.strings());
        assert_eq!(back.get("C01"), Some(Sym(1)));
        assert!(
            read_ids(
                std::io::Cursor::new(write_ids(Vec::new(), &ids).unwrap()),
                4
            )
            .is_err()
        );
        let empty = Interner::default();
        assert!(
            read_ids(
                std::io::Cursor::new(write_ids(Vec::new(), &empty).unwrap()),
                0
            )
            .unwrap()
            .is_empty()
        );
        // The manifest's first line guards the rest.
        let body = br#"{"format":1}"#;
        let text = [format!("{MAGIC} {}\n", bytes_hash(body)).as_bytes(), body].concat();
        assert!(
            parse_manifest(&text).is_err_and(|e| e.contains("format") || e.contains("missing"))
        );
        let mut bad = text.clone();
        *bad.last_mut().unwrap() = b']';
        assert_eq!(parse_manifest(&bad).unwrap_err(), "its manifest is damaged");
    }
}
