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
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the cache layout; an entry of another version is rebuilt.
const FORMAT: u32 = 2;
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
    /// Status-change time, nanoseconds since 1970 (0 where the system has none): it moves
    /// whenever the file is written or its mtime is set, and cannot be set back.
    ctime_ns: i128,
    /// The file's inode number (0 where the system has none).
    inode: u64,
    /// Content hash (XXH3-128 of 32 MiB chunks, then of their hashes), hex.
    hash: String,
}

impl InputFile {
    /// What the cached columns depend on: the name and the bytes.
    fn content(&self) -> (&str, u64, &str) {
        (&self.name, self.size, &self.hash)
    }

    /// Whether `self`, as found now, is the file `known` recorded with its hash, going by
    /// its stamps alone (so it need not be hashed again), as git trusts its index: same
    /// size, mtime, status-change time and inode, and last changed over a second before the
    /// stamps of `known` were taken (`stamped_ns`; a file changed within the clock's
    /// granularity of that moment could keep its stamps, so it is hashed every time).
    fn same_by_stamps(&self, known: &InputFile, stamped_ns: i128) -> bool {
        self.ctime_ns != 0
            && self.ctime_ns < stamped_ns - 1_000_000_000
            && (
                &self.name,
                self.size,
                self.mtime_ns,
                self.ctime_ns,
                self.inode,
            ) == (
                &known.name,
                known.size,
                known.mtime_ns,
                known.ctime_ns,
                known.inode,
            )
    }
}

/// One cache file, as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheFile {
    /// File name in the entry folder.
    file: String,
    bytes: u64,
    /// The file's consecutive parts, which cover it: the Arrow header, each record batch's
    /// block, then the footer. Each is checked as it is read, so a table can be read in
    /// parallel, batch by batch, and nothing unchecked is ever decoded.
    parts: Vec<Part>,
}

/// A part of a cache file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    bytes: u64,
    /// XXH3-128 of the part's bytes, hex.
    hash: String,
}

/// One table of the entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedTable {
    name: String,
    /// The data file (and sheet) the rows came from.
    source: String,
    rows: u64,
    /// The latest date in the table's date and date-time columns (`YYYY-MM-DD`).
    latest: Option<NaiveDate>,
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
    /// When the inputs' stamps were taken, nanoseconds since 1970.
    stamped_ns: i128,
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
    let stamped_ns = now_ns();
    let Ok((mut before, paths)) = inputs(dir, schema) else {
        // The folder cannot be read as a dataset: the load says why.
        return load(dir, schema, opts).map(|ds| (ds, Outcome::Off));
    };
    let manifest = read_manifest(&entry);
    let known = manifest
        .as_ref()
        .ok()
        .map(|m| (&m.inputs[..], m.stamped_ns));
    let Ok(hashed) = fill_hashes(&mut before, &paths, known) else {
        return load(dir, schema, opts).map(|ds| (ds, Outcome::Off));
    };
    let miss = match manifest.and_then(|m| read_entry_settled(&entry, schema, m, &before)) {
        Ok(ds) => {
            if hashed {
                // Same bytes, new stamps (a copy, a touch): record them, so the next run
                // need not hash again.
                restamp(&entry, &before, stamped_ns);
            }
            return Ok((ds, Outcome::Hit));
        }
        Err(m) => m,
    };
    let ds = load(dir, schema, opts)?;
    // A file that changed while it was read: the entry would not match what was loaded.
    let after = inputs(dir, schema).ok();
    let outcome = if after.as_ref().map(|(a, _)| stamps(a)) != Some(stamps(&before)) {
        Outcome::NotWritten("a data file changed while it was read".into())
    } else {
        // A damaged entry is replaced even when its manifest looks current.
        let keep_current = !matches!(miss, Miss::Damaged(_));
        match write_entry(&entry, schema, &before, stamped_ns, &ds, keep_current) {
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

/// The dataset from the cache for one subject, when its entry is current (`None`
/// otherwise; nothing is written), as [`super::load_focused`] reads the data files: each
/// table `focus` filters keeps only the rows it wants, the others are read whole. Every
/// cache file is checked against its hashes (on one core, while the ids are read on the
/// other); a table that keeps no rows is not decoded. The row counts, rejects and warnings
/// are the whole dataset's, and [`Dataset::latest_date`] is right (from the manifest).
pub fn cached_focused(
    dir: &Path,
    schema: &Schema,
    opts: &LoadOptions,
    cache: &Cache,
    focus: &dyn Focus,
) -> Option<Dataset> {
    let (entry, m) = current_entry(dir, schema, opts, cache)?;
    if m.tables.len() != schema.tables.len() {
        return None;
    }
    // The ids on one core while the other checks the tables' bytes (the two costs of a
    // read that keeps few rows).
    let (ids, files) = rayon::join(
        || read_ids(&Bytes::open(&entry, &m.ids)?, &m.ids, m.id_count),
        || {
            m.tables
                .iter()
                .map(|t| {
                    let mut b = Bytes::open(&entry, &t.arrow)?;
                    b.check(&t.arrow)?;
                    Ok((t.name.as_str(), b))
                })
                .collect::<Result<HashMap<&str, Bytes>, String>>()
        },
    );
    let (ids, files) = (ids.ok()?, files.ok()?);
    let mut loaded: HashMap<String, Table> = HashMap::new();
    let mut partial = Vec::new();
    let mut latest_left_out: Option<NaiveDate> = None;
    for ts in super::load::dependency_order(schema) {
        let meta = m.tables.iter().find(|t| t.name == ts.name)?;
        let filter = focus.filter(
            ts,
            &LoadedTables {
                ids: &ids,
                tables: &loaded,
            },
        );
        let mut t = match filter {
            None => read_table(files.get(ts.name.as_str())?, ts, meta, None).ok()?,
            Some(f) => {
                partial.push(ts.name.clone());
                latest_left_out = latest_left_out.max(meta.latest);
                if f.via.is_empty() {
                    let mut t = super::load::empty_table(ts);
                    t.file = meta.source.clone();
                    t
                } else {
                    let keep = Keep::new(&f, ts, &loaded)?;
                    read_table(files.get(ts.name.as_str())?, ts, meta, Some(&keep)).ok()?
                }
            }
        };
        index_keys(&mut t, ts, ids.len());
        loaded.insert(ts.name.clone(), t);
    }
    let mut tables = IndexMap::new();
    for t in &m.tables {
        tables.insert(t.name.clone(), loaded.remove(&t.name)?);
    }
    Some(Dataset {
        tables,
        ids,
        stats: m.stats,
        rejects: m.rejects.into_iter().map(Reject::from).collect(),
        warnings: m.warnings,
        focus: Some(FocusInfo {
            partial,
            latest_known: true,
            latest_left_out,
        }),
    })
}

/// A table's rows a [`RowFilter`] keeps: those whose reference column's id is the key of a
/// marked row of the referenced table.
struct Keep {
    /// Per reference column (its index in the Arrow batch), the ids wanted there.
    via: Vec<(usize, Wanted)>,
}

/// The ids wanted in a reference column.
enum Wanted {
    /// A few (one subject's rows are marked): compared one by one.
    Few(Vec<u32>),
    /// A flag per id.
    Flags(Vec<bool>),
}

impl Keep {
    /// `None` when a filter's column is not a reference to a loaded table.
    fn new(f: &RowFilter, ts: &TableSchema, loaded: &HashMap<String, Table>) -> Option<Self> {
        let mut via = Vec::new();
        for (ci, marks) in &f.via {
            let target = loaded.get(ts.columns.get(*ci)?.references.as_deref()?)?;
            let wanted = |s: usize| {
                target
                    .row_by_sym
                    .get(s)
                    .and_then(|row| marks.get(*row as usize))
                    == Some(&true)
            };
            let few: Vec<u32> = (0..target.row_by_sym.len())
                .filter(|s| wanted(*s))
                .take(9)
                .map(|s| s as u32)
                .collect();
            via.push((
                ci + 1,
                if few.len() <= 8 {
                    Wanted::Few(few)
                } else {
                    Wanted::Flags((0..target.row_by_sym.len()).map(wanted).collect())
                },
            ));
        }
        Some(Keep { via })
    }

    /// Which rows of `b` to keep.
    fn mask(&self, b: &RecordBatch) -> Result<BooleanArray, String> {
        let mut keep = arrow_buffer::BooleanBuffer::new_unset(b.num_rows());
        for (col, wanted) in &self.via {
            let ids = b
                .column(*col)
                .as_any()
                .downcast_ref::<UInt32Array>()
                .ok_or("a reference column is not UInt32")?;
            let values = ids.values();
            let mut here = match wanted {
                Wanted::Few(few) => arrow_buffer::BooleanBuffer::collect_bool(values.len(), |i| {
                    few.contains(&values[i])
                }),
                Wanted::Flags(flags) => {
                    arrow_buffer::BooleanBuffer::collect_bool(values.len(), |i| {
                        flags.get(values[i] as usize) == Some(&true)
                    })
                }
            };
            // An empty cell's value slot holds any number.
            if let Some(nulls) = ids.nulls() {
                here = &here & nulls.inner();
            }
            keep = &keep | &here;
        }
        Ok(BooleanArray::new(keep, None))
    }
}

/// The entry for `dir` and its manifest, when the entry is current for the data files.
fn current_entry(
    dir: &Path,
    schema: &Schema,
    opts: &LoadOptions,
    cache: &Cache,
) -> Option<(PathBuf, Manifest)> {
    let entry = entry_dir(dir, schema, opts, cache)?;
    let (mut inputs, paths) = inputs(dir, schema).ok()?;
    let m = read_manifest(&entry).ok()?;
    // Names, sizes and mtimes first: a stale entry is found without hashing the data files
    // (the caller then does a load of its own, which does not need the hashes).
    if stamps_written(&m.inputs) != stamps_written(&inputs) {
        return None;
    }
    fill_hashes(&mut inputs, &paths, Some((&m.inputs, m.stamped_ns))).ok()?;
    if m.format != FORMAT
        || m.rulebook != env!("CARGO_PKG_VERSION")
        || !same_content(&m.inputs, &inputs)
    {
        return None;
    }
    Some((entry, m))
}

/// Nanoseconds since 1970, now.
fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The entry's manifest, checked against its hash.
fn read_manifest(entry: &Path) -> Result<Manifest, Miss> {
    let text = match std::fs::read(entry.join("manifest.json")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
        Err(e) => return Err(Miss::Damaged(format!("its manifest cannot be read: {e}"))),
    };
    parse_manifest(&text).map_err(Miss::Damaged)
}

/// [`read_entry`], tried again once (with the manifest read again) when the entry looks
/// damaged: another run may have been replacing it while it was read.
fn read_entry_settled(
    entry: &Path,
    schema: &Schema,
    m: Manifest,
    inputs: &[InputFile],
) -> Result<Dataset, Miss> {
    match read_entry(entry, schema, m, inputs) {
        Err(Miss::Damaged(_)) => read_entry(entry, schema, read_manifest(entry)?, inputs),
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
        twox_hash::XxHash3_64::oneshot(key.as_bytes())
    )))
}

/// The dataset's input files (each table's file once) with their stamps but no hashes, and
/// their paths; then the files the load ignores, with their warnings in place of a hash.
/// `Err` when the folder cannot be read as a dataset.
fn inputs(dir: &Path, schema: &Schema) -> Result<(Vec<InputFile>, Vec<PathBuf>), ()> {
    let mut notes = Vec::new();
    let sources = discover(dir, schema, &mut notes).map_err(|_| ())?;
    let mut paths: Vec<PathBuf> = sources.values().map(|s| s.path.clone()).collect();
    paths.sort();
    paths.dedup();
    let mut files: Vec<InputFile> = paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).map_err(|_| ())?;
            let since = |t: std::io::Result<std::time::SystemTime>| {
                t.ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i128)
            };
            #[cfg(unix)]
            let (ctime_ns, inode) = {
                use std::os::unix::fs::MetadataExt;
                (
                    i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
                    meta.ino(),
                )
            };
            #[cfg(not(unix))]
            let (ctime_ns, inode) = (0, 0);
            Ok(InputFile {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                size: meta.len(),
                mtime_ns: since(meta.modified()),
                ctime_ns,
                inode,
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
            ctime_ns: 0,
            inode: 0,
            hash: n.message,
        });
    }
    Ok((files, paths))
}

/// Fill in the content hashes of the table files (the first `paths.len()` of `files`): the
/// hash `known` (an entry's inputs and when their stamps were taken) recorded, for a file
/// whose stamps show it unchanged since ([`InputFile::same_by_stamps`]), else by hashing
/// the file. Returns whether any file was hashed.
fn fill_hashes(
    files: &mut [InputFile],
    paths: &[PathBuf],
    known: Option<(&[InputFile], i128)>,
) -> Result<bool, ()> {
    let mut hashed = false;
    for (f, p) in files.iter_mut().zip(paths) {
        let recorded = known.and_then(|(k, stamped_ns)| {
            k.iter()
                .find(|k| k.name == f.name)
                .filter(|k| f.same_by_stamps(k, stamped_ns))
        });
        f.hash = match recorded {
            Some(k) => k.hash.clone(),
            None => {
                hashed = true;
                file_hash(p).map_err(|_| ())?
            }
        };
    }
    Ok(hashed)
}

/// Names, sizes and stamps (what changes when a file is written or its mtime set).
fn stamps(files: &[InputFile]) -> Vec<(&str, u64, i128, i128, u64)> {
    files
        .iter()
        .map(|f| (f.name.as_str(), f.size, f.mtime_ns, f.ctime_ns, f.inode))
        .collect()
}

/// Names, sizes and mtimes (what a copy that keeps mtimes keeps too).
fn stamps_written(files: &[InputFile]) -> Vec<(&str, u64, i128)> {
    files
        .iter()
        .map(|f| (f.name.as_str(), f.size, f.mtime_ns))
        .collect()
}

/// Whether two lists of inputs have the same files with the same bytes.
fn same_content(a: &[InputFile], b: &[InputFile]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.content() == b.content())
}

/// Record new stamps for an entry's unchanged inputs (best effort: the manifest is
/// replaced whole, or left as it was).
fn restamp(entry: &Path, inputs: &[InputFile], stamped_ns: i128) {
    let Ok(mut m) = read_manifest(entry) else {
        return;
    };
    if !same_content(&m.inputs, inputs) {
        return;
    }
    m.inputs = inputs.to_vec();
    m.stamped_ns = stamped_ns;
    let _ = write_manifest(entry, &m);
}

/// Write `m` as `manifest.json` in `dir`, with its hash, replacing any there at once.
fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), String> {
    let body = serde_json::to_vec(m).map_err(|e| e.to_string())?;
    let mut text = format!("{MAGIC} {}\n", bytes_hash(&body)).into_bytes();
    text.extend_from_slice(&body);
    // Written beside it and renamed over it (a plain file: readable as the folder's other
    // files are, for a cache folder several users share).
    let tmp = dir.join(format!(".manifest-{}.tmp", std::process::id()));
    let placed =
        std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, dir.join("manifest.json")));
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed.map_err(|e| e.to_string())
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
            let mut h = twox_hash::XxHash3_128::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut left = CHUNK.min(len - i * CHUNK) as usize;
            while left > 0 {
                let n = f.read(&mut buf[..left.min(1 << 20)])?;
                if n == 0 {
                    break;
                }
                h.write(&buf[..n]);
                left -= n;
            }
            Ok(h.finish_128())
        })
        .collect::<std::io::Result<_>>()?;
    let mut all = Vec::with_capacity(hashes.len() * 16 + 8);
    all.extend_from_slice(&len.to_le_bytes());
    for h in hashes {
        all.extend_from_slice(&h.to_le_bytes());
    }
    Ok(format!("{:032x}", twox_hash::XxHash3_128::oneshot(&all)))
}

/// A writer that hashes (XXH3-128) what goes through it, in parts ([`Part`]) ended by
/// [`Hashing::cut`].
struct Hashing<W> {
    inner: W,
    hasher: twox_hash::XxHash3_128,
    bytes: u64,
    parts: Vec<Part>,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: twox_hash::XxHash3_128::new(),
            bytes: 0,
            parts: Vec::new(),
        }
    }

    /// End the current part (if it has any bytes).
    fn cut(&mut self) {
        if self.bytes > 0 {
            self.parts.push(Part {
                bytes: self.bytes,
                hash: format!("{:032x}", self.hasher.finish_128()),
            });
            self.hasher = twox_hash::XxHash3_128::new();
            self.bytes = 0;
        }
    }

    /// The parts written, and the inner writer.
    fn finish(mut self) -> (Vec<Part>, W) {
        self.cut();
        (self.parts, self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.write(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn bytes_hash(bytes: &[u8]) -> String {
    format!("{:032x}", twox_hash::XxHash3_128::oneshot(bytes))
}

/// Read the entry in `entry` (its manifest `m`) if it is current for `inputs`.
fn read_entry(
    entry: &Path,
    schema: &Schema,
    m: Manifest,
    inputs: &[InputFile],
) -> Result<Dataset, Miss> {
    if m.format != FORMAT || m.rulebook != env!("CARGO_PKG_VERSION") {
        return Err(Miss::Stale("written by another rulebook version".into()));
    }
    if !same_content(&m.inputs, inputs) {
        return Err(Miss::Stale("the data files changed".into()));
    }
    let damaged = |what: &str, why: String| Miss::Damaged(format!("{what} is damaged: {why}"));
    let ids = Bytes::open(entry, &m.ids).map_err(|e| damaged(&m.ids.file, e))?;
    let (ids, tables) = rayon::join(
        || read_ids(&ids, &m.ids, m.id_count),
        || {
            m.tables
                .par_iter()
                .map(|t| {
                    let ts = schema
                        .tables
                        .get(&t.name)
                        .ok_or_else(|| format!("table `{}` is not in the schema", t.name))?;
                    read_table(&Bytes::open(entry, &t.arrow)?, ts, t, None)
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

/// A cache file's bytes: mapped into memory (read by the kernel as they are touched, and
/// decoded in place), or held in memory (tests).
struct Bytes {
    whole: arrow_buffer::Buffer,
    map: Option<Arc<memmap2::Mmap>>,
    /// Every part was checked already ([`Bytes::check`]).
    checked: bool,
}

impl Bytes {
    /// Map cache file `f` of the entry.
    fn open(entry: &Path, f: &CacheFile) -> Result<Bytes, String> {
        let name = Path::new(&f.file);
        if name.components().count() != 1 {
            return Err("its name is not a file of the entry".into());
        }
        let file = std::fs::File::open(entry.join(name)).map_err(|e| e.to_string())?;
        if file.metadata().map_err(|e| e.to_string())?.len() != f.bytes {
            return Err("its size does not match the manifest".into());
        }
        // SAFETY: a cache file is written once, into a new entry folder, and never changed
        // in place (an entry is replaced by renaming folders; a removed file stays mapped),
        // so the mapped bytes do not change while they are read; what they hold is checked
        // against the manifest's hashes before it is decoded.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?);
        let ptr = std::ptr::NonNull::new(map.as_ptr().cast_mut())
            .unwrap_or(std::ptr::NonNull::dangling());
        // SAFETY: the pointer and length are the mapping's, which `map` (the owner) keeps
        // alive as long as any buffer sliced from it.
        let whole =
            unsafe { arrow_buffer::Buffer::from_custom_allocation(ptr, map.len(), map.clone()) };
        Ok(Bytes {
            whole,
            map: Some(map),
            checked: false,
        })
    }

    /// Check every part of the file (`f`, its manifest record) at once, on all cores. Its
    /// pages stay mapped (shared with the page cache) until its record batches are read.
    fn check(&mut self, f: &CacheFile) -> Result<(), String> {
        let r = CacheReader::new(self, f)?;
        (0..r.parts.len())
            .into_par_iter()
            .try_for_each(|i| r.part(i).map(|_| ()))?;
        self.checked = true;
        Ok(())
    }

    /// Give the pages of `offset..offset + len` back (they are mapped again if touched).
    fn release(&self, offset: u64, len: u64) {
        #[cfg(unix)]
        if let Some(map) = &self.map {
            const PAGE: u64 = 4096;
            let start = offset.div_ceil(PAGE) * PAGE;
            let end = ((offset + len) / PAGE * PAGE).min(map.len() as u64);
            if end > start {
                // SAFETY: the mapping is read-only and never written, so a page dropped
                // here reads the file's same bytes again if it is touched later.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start as usize,
                        (end - start) as usize,
                    )
                };
            }
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
    }
}

impl From<&[u8]> for Bytes {
    fn from(b: &[u8]) -> Bytes {
        Bytes {
            whole: arrow_buffer::Buffer::from(b.to_vec()),
            map: None,
            checked: false,
        }
    }
}

/// A cache file opened for reading its parts, each checked against the manifest as it is
/// read (so what was checked is what is decoded).
struct CacheReader<'f> {
    bytes: &'f Bytes,
    /// Each part's offset, size and hash.
    parts: Vec<(u64, &'f Part)>,
}

impl<'f> CacheReader<'f> {
    fn new(bytes: &'f Bytes, f: &'f CacheFile) -> Result<Self, String> {
        let mut offset = 0;
        let mut parts = Vec::with_capacity(f.parts.len());
        for p in &f.parts {
            parts.push((offset, p));
            offset += p.bytes;
        }
        if offset != f.bytes || bytes.whole.len() as u64 != f.bytes {
            return Err("its size does not match the manifest".into());
        }
        Ok(CacheReader { bytes, parts })
    }

    /// Part `i`'s bytes, after checking them.
    fn part(&self, i: usize) -> Result<arrow_buffer::Buffer, String> {
        let (offset, p) = self.parts.get(i).ok_or("a part is missing")?;
        let part = self
            .bytes
            .whole
            .slice_with_length(*offset as usize, p.bytes as usize);
        if !self.bytes.checked && bytes_hash(&part) != p.hash {
            return Err("its bytes do not match their hash in the manifest".into());
        }
        Ok(part)
    }

    /// The file's schema, and a decoder with the blocks of its record batches (each the
    /// part after the header's, in order).
    fn open(&self) -> Result<Batches, String> {
        let footer = self.part(self.parts.len().checked_sub(1).ok_or("it is empty")?)?;
        let n = footer.len();
        let tail: [u8; 10] = footer
            .get(n.saturating_sub(10)..)
            .and_then(|t| t.try_into().ok())
            .ok_or("its footer is too short")?;
        let len = arrow_ipc::reader::read_footer_length(tail).map_err(|e| e.to_string())?;
        let fb = arrow_ipc::root_as_footer(
            footer
                .get(n - 10 - len.min(n - 10)..n - 10)
                .ok_or("its footer is too short")?,
        )
        .map_err(|e| e.to_string())?;
        let schema = Arc::new(
            arrow_ipc::convert::try_fb_to_schema(fb.schema().ok_or("its footer has no schema")?)
                .map_err(|e| e.to_string())?,
        );
        let blocks: Vec<arrow_ipc::Block> = fb
            .recordBatches()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        if blocks.len() + 2 != self.parts.len()
            || blocks.iter().zip(&self.parts[1..]).any(|(b, (offset, p))| {
                b.offset() as u64 != *offset
                    || b.metaDataLength() as u64 + b.bodyLength() as u64 != p.bytes
            })
        {
            return Err("its record batches are not the manifest's parts".into());
        }
        let decoder = arrow_ipc::reader::FileDecoder::new(schema.clone(), fb.version());
        Ok(Batches {
            schema,
            decoder,
            blocks,
        })
    }

    /// Every record batch, each mapped by `map` (on all cores, a few at a time), given to
    /// `each` in order.
    fn for_each_batch(
        &self,
        b: &Batches,
        map: &(dyn Fn(RecordBatch) -> Result<RecordBatch, String> + Sync),
        each: &mut dyn FnMut(RecordBatch) -> Result<(), String>,
    ) -> Result<(), String> {
        let window = rayon::current_num_threads().max(1);
        for start in (0..b.blocks.len()).step_by(window) {
            let end = (start + window).min(b.blocks.len());
            let batches: Vec<Result<RecordBatch, String>> = (start..end)
                .into_par_iter()
                .map(|i| {
                    let data = self.part(i + 1)?;
                    let batch = b
                        .decoder
                        .read_record_batch(&b.blocks[i], &data)
                        .map_err(|e| e.to_string())?
                        .ok_or("a record batch is missing")?;
                    map(batch)
                })
                .collect();
            for (i, batch) in (start..end).zip(batches) {
                each(batch?)?;
                let (offset, p) = self.parts[i + 1];
                self.bytes.release(offset, p.bytes);
            }
        }
        Ok(())
    }
}

/// An opened cache file's schema and record batches.
struct Batches {
    schema: arrow_schema::SchemaRef,
    decoder: arrow_ipc::reader::FileDecoder,
    blocks: Vec<arrow_ipc::Block>,
}

fn read_ids(src: &Bytes, f: &CacheFile, count: u64) -> Result<Interner, String> {
    let mut ids = Interner::default();
    ids.reserve(usize::try_from(count).map_err(|_| "too many ids")?);
    // The file holds the text and an offset per id: a little more than the text.
    ids.reserve_text(usize::try_from(f.bytes).unwrap_or(0));
    let r = CacheReader::new(src, f)?;
    r.for_each_batch(&r.open()?, &Ok, &mut |b| {
        let col = b
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("its column is not text")?;
        for s in col.iter() {
            let s = s.unwrap_or_default();
            if ids.intern_new(s).is_none() {
                return Err(format!("id `{s}` is there twice"));
            }
        }
        Ok(())
    })?;
    if ids.len() as u64 != count {
        return Err("it does not hold every id".into());
    }
    Ok(ids)
}

/// The dense row-by-key-symbol array of a table read from the cache.
fn index_keys(t: &mut Table, ts: &TableSchema, n_ids: usize) {
    if let Some(k) = ts.key
        && let ColumnData::Id(v) = &t.columns[k]
    {
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
            v.reserve(a.len());
            let date = |d: i32| unix_day_date(d.into()).ok_or("a date is out of range");
            if a.null_count() == 0 {
                for &d in a.values() {
                    v.push(Some(date(d)?));
                }
            } else {
                for d in a.iter() {
                    v.push(d.map(date).transpose()?);
                }
            }
        }
        ColumnData::DateTime(v) => {
            let a = cast!(TimestampSecondArray);
            v.reserve(a.len());
            if a.null_count() == 0 {
                v.extend_secs(a.values());
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
fn read_table(
    src: &Bytes,
    ts: &TableSchema,
    meta: &CachedTable,
    keep: Option<&Keep>,
) -> Result<Table, String> {
    let mut t = super::load::empty_table(ts);
    t.file = meta.source.clone();
    let reader = CacheReader::new(src, &meta.arrow)?;
    let batches = reader.open()?;
    let fields = batches.schema.fields();
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
    // Room for every row at once: grown by doubling, the columns would end up to twice
    // their size.
    let rows = usize::try_from(meta.rows).map_err(|_| "too many rows")?;
    if rows <= 1 << 32 && keep.is_none() {
        for c in &mut t.columns {
            c.reserve(rows);
        }
    }
    // Rows in the file (before `keep`).
    let read = std::sync::atomic::AtomicU64::new(0);
    let map = |b: RecordBatch| {
        if b.num_columns() != ts.columns.len() + 1 {
            return Err("its columns are not the schema's".to_string());
        }
        read.fetch_add(b.num_rows() as u64, std::sync::atomic::Ordering::Relaxed);
        match keep {
            Some(keep) => arrow_select::filter::filter_record_batch(&b, &keep.mask(&b)?)
                .map_err(|e| e.to_string()),
            None => Ok(b),
        }
    };
    reader.for_each_batch(&batches, &map, &mut |b| {
        let lines = b
            .column(0)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or("its `_line` column is not UInt32")?;
        if lines.null_count() > 0 {
            return Err("a line number is missing".into());
        }
        // The line numbers and the columns are copied side by side.
        let (lines_to, columns) = (&mut t.lines, &mut t.columns);
        let ((), copied) = rayon::join(
            || lines_to.extend_from_slice(lines.values()),
            || {
                columns
                    .par_iter_mut()
                    .zip(b.columns()[1..].par_iter())
                    .try_for_each(|(c, a)| from_arrow(c, a.as_ref()))
            },
        );
        copied
    })?;
    let read = read.into_inner();
    if read != meta.rows || t.columns.iter().any(|c| c.len() != t.len()) {
        return Err("its row count does not match the manifest".into());
    }
    for c in &mut t.columns {
        if let ColumnData::Text(text) = c {
            text.buf.shrink_to_fit();
        }
    }
    Ok(t)
}

/// A table as one Arrow IPC file's bytes, a part ([`Part`]) a record batch.
fn write_table<W: std::io::Write>(
    out: Hashing<W>,
    t: &Table,
    ts: &TableSchema,
) -> Result<Hashing<W>, String> {
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
    w.get_mut().cut();
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
        w.get_mut().cut();
        start = end;
        if start >= t.len() {
            break;
        }
    }
    w.finish().map_err(|e| e.to_string())?;
    w.into_inner().map_err(|e| e.to_string())
}

fn write_ids<W: std::io::Write>(out: Hashing<W>, ids: &Interner) -> Result<Hashing<W>, String> {
    let schema = Arc::new(arrow_schema::Schema::new(vec![Field::new(
        "id",
        DataType::Utf8,
        false,
    )]));
    let mut w = arrow_ipc::writer::FileWriter::try_new(out, &schema).map_err(|e| e.to_string())?;
    w.get_mut().cut();
    let n = ids.len();
    // An empty dataset still has one (empty) batch.
    for start in (0..n)
        .step_by(BATCH_ROWS)
        .chain(ids.is_empty().then_some(0))
    {
        let part = (start..n.min(start + BATCH_ROWS)).map(|i| ids.resolve(Sym(i as u32)));
        let col = StringArray::from_iter_values(part);
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(col)]).map_err(|e| e.to_string())?;
        w.write(&batch).map_err(|e| e.to_string())?;
        w.get_mut().cut();
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
    stamped_ns: i128,
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
        let (parts, inner) = h.finish();
        // No fsync: after a crash, a torn file fails its hash and is rebuilt.
        inner
            .into_inner()
            .map_err(|e| format!("{name}: {}", e.error()))?;
        Ok(CacheFile {
            file: name.to_string(),
            bytes: parts.iter().map(|p| p.bytes).sum(),
            parts,
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
                latest: t.latest_date(),
                arrow,
            }
        })
        .collect();
    let m = Manifest {
        format: FORMAT,
        rulebook: env!("CARGO_PKG_VERSION").to_string(),
        stamped_ns,
        inputs: inputs.to_vec(),
        ids,
        id_count: ds.ids.len() as u64,
        tables,
        stats: ds.stats.clone(),
        warnings: ds.warnings.clone(),
        rejects: ds.rejects.iter().map(CachedReject::from).collect(),
    };
    write_manifest(tmp.path(), &m)?;
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
        .is_some_and(|m| m.format == FORMAT && same_content(&m.inputs, inputs))
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
    /// The cache's hashes are XXH3's (values from the reference C library through Python's
    /// `xxhash` module): entries written before stay readable.
    #[test]
    fn hashes_are_xxh3() {
        let long: Vec<u8> = (0..=255u8).cycle().take(10_240).collect();
        assert_eq!(bytes_hash(b""), "99aa06d3014798d86001c324468d497f");
        assert_eq!(bytes_hash(b"abc"), "06b05ab6733a618578af5f94892f3950");
        assert_eq!(bytes_hash(&long), "1cb22534d0d96975c03d2231ab9348f3");
        let mut h = Hashing::new(Vec::new());
        for piece in long.chunks(1000) {
            std::io::Write::write_all(&mut h, piece).unwrap();
        }
        h.cut();
        std::io::Write::write_all(&mut h, b"abc").unwrap();
        let (parts, _) = h.finish();
        let hashes: Vec<&str> = parts.iter().map(|p| p.hash.as_str()).collect();
        assert_eq!(hashes, [bytes_hash(&long), bytes_hash(b"abc")]);
        assert_eq!(twox_hash::XxHash3_64::oneshot(b"abc"), 0x78af5f94892f3950);
    }

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
        let (bytes, arrow) = in_memory(|w| write_table(w, &t, &ts));
        // The header, a part per record batch, the footer.
        assert_eq!(arrow.parts.len(), n.div_ceil(BATCH_ROWS) + 2);
        let meta = CachedTable {
            name: "t".into(),
            source: "t.csv".into(),
            rows: n as u64,
            latest: t.latest_date(),
            arrow,
        };
        let back = read_table(&Bytes::from(&bytes[..]), &ts, &meta, None).unwrap();
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
        assert!(read_table(&Bytes::from(&bytes[..]), &other, &meta, None).is_err());
        // A flipped byte in a record batch is found before it is decoded.
        let mut flipped = bytes.clone();
        let second = (meta.arrow.parts[0].bytes + meta.arrow.parts[1].bytes + 100) as usize;
        flipped[second] ^= 1;
        assert!(
            read_table(&Bytes::from(&flipped[..]), &ts, &meta, None)
                .is_err_and(|e| e.contains("hash"))
        );
        assert!(read_table(&Bytes::from(&bytes[..bytes.len() - 1]), &ts, &meta, None).is_err());
        let wrong_rows = CachedTable { rows: 1, ..meta };
        assert!(read_table(&Bytes::from(&bytes[..]), &ts, &wrong_rows, None).is_err());
    }

    /// A cache file written in memory, with its manifest record.
    fn in_memory(
        write: impl FnOnce(Hashing<Vec<u8>>) -> Result<Hashing<Vec<u8>>, String>,
    ) -> (Vec<u8>, CacheFile) {
        let (parts, bytes) = write(Hashing::new(Vec::new())).unwrap().finish();
        let f = CacheFile {
            file: "f.arrow".into(),
            bytes: bytes.len() as u64,
            parts,
        };
        (bytes, f)
    }

    #[test]
    fn ids_round_trip_and_manifest_hash() {
        let mut ids = Interner::default();
        for s in ["M001", "C01", "一个很长很长的编号-0000000001"] {
            ids.intern(s);
        }
        let (bytes, f) = in_memory(|w| write_ids(w, &ids));
        let back = read_ids(&Bytes::from(&bytes[..]), &f, 3).unwrap();
        assert!(back.strings().eq(ids.strings()));
        assert_eq!(back.get("C01"), Some(Sym(1)));
        assert!(read_ids(&Bytes::from(&bytes[..]), &f, 4).is_err());
        let empty = Interner::default();
        let (bytes, f) = in_memory(|w| write_ids(w, &empty));
        assert!(
            read_ids(&Bytes::from(&bytes[..]), &f, 0)
                .unwrap()
                .is_empty()
        );
        // The manifest's first line guards the rest.
        let body = br#"{"format":2}"#;
        let text = [format!("{MAGIC} {}\n", bytes_hash(body)).as_bytes(), body].concat();
        assert!(
            parse_manifest(&text).is_err_and(|e| e.contains("format") || e.contains("missing"))
        );
        let mut bad = text.clone();
        *bad.last_mut().unwrap() = b']';
        assert_eq!(parse_manifest(&bad).unwrap_err(), "its manifest is damaged");
    }
}
