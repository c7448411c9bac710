//! Finding a dataset's files and reading them into text records with the line numbers a
//! person sees: CSV in UTF-8 (BOM allowed) or GB18030/GBK, and sheets of XLSX workbooks.

mod parquet;
pub use parquet::read_parquet_into;

use calamine::{Data, Reader};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// How to decode CSV bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Valid UTF-8 is UTF-8; otherwise GB18030 (which covers GBK and GB2312).
    #[default]
    Auto,
    /// Always UTF-8, whatever the bytes look like.
    Utf8,
    /// Always GB18030 (which covers GBK and GB2312).
    Gb18030,
}

/// Where a table's rows come from.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// The whole file, as CSV.
    Csv,
    /// The sheet of this name in a workbook.
    Sheet(String),
    /// The whole file, as Parquet.
    Parquet,
}

/// One table file found in the dataset folder.
#[derive(Debug, Clone)]
pub struct TableSource {
    /// Path of the file.
    pub path: PathBuf,
    /// CSV, or which sheet of the workbook.
    pub kind: SourceKind,
}

impl TableSource {
    /// File name (and sheet) as shown in messages: `services.csv`, `服务记录.xlsx[服务记录]`.
    pub fn display(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        match &self.kind {
            SourceKind::Csv | SourceKind::Parquet => name,
            SourceKind::Sheet(s) => format!("{name}[{s}]"),
        }
    }
}

/// A file-level problem: the table cannot be read at all.
#[derive(Debug, Clone)]
pub struct FileError {
    /// The file (and sheet), as shown in messages.
    pub file: String,
    /// What is wrong, for people.
    pub message: String,
}

/// Records of a table as text: the header and each row with its line (or Excel row) number.
pub struct RawTable {
    /// The header's fields, as read.
    pub header: Vec<String>,
    /// Line (or Excel row) number of the header.
    pub header_line: u32,
    /// The rows after the header, in file order.
    pub rows: Vec<RawRow>,
    /// What decoding was used: `UTF-8`, `GB18030`, `XLSX`.
    pub encoding: &'static str,
    /// True for spreadsheet cells (numbers may be Excel serial dates).
    pub from_excel: bool,
}

/// One record of a [`RawTable`], with its fields as text.
pub struct RawRow {
    /// The line a text editor shows (or Excel's row number).
    pub line: u32,
    /// The fields, as text.
    pub fields: Vec<String>,
    /// A problem with the row as a whole (undecodable bytes, broken quoting).
    pub problem: Option<String>,
}

/// Decode CSV bytes into text, per the encoding rule (`decode_name`), after dropping a UTF-8
/// BOM; also gives the name of the encoding used (`UTF-8` or `GB18030`).
pub fn decode(bytes: &[u8], enc: Encoding) -> (std::borrow::Cow<'_, str>, &'static str) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let name = decode_name(bytes, enc);
    (decode_piece(bytes, Some(name)), name)
}

/// Line numbers from byte offsets, counted incrementally (offsets only grow). A record's
/// line is the line of its first byte, after any line breaks before it, so CRLF files count
/// like LF files.
struct LineCounter<'a> {
    text: &'a [u8],
    pos: usize,
    line: u32,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        LineCounter {
            text,
            pos: 0,
            line: 1,
        }
    }

    /// A counter for text whose first byte is on line `line`.
    fn starting(text: &'a [u8], line: u32) -> Self {
        LineCounter { text, pos: 0, line }
    }

    fn line_at(&mut self, mut offset: usize) -> u32 {
        while offset < self.text.len() && matches!(self.text[offset], b'\r' | b'\n') {
            offset += 1;
        }
        let offset = offset.min(self.text.len());
        if offset < self.pos {
            // Offsets only grow.
            return self.line;
        }
        self.line += self.text[self.pos..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u32;
        self.pos = offset;
        self.line
    }
}

/// One record as the loader sees it.
pub struct Row<'a> {
    /// The line a text editor shows (or Excel's row number).
    pub line: u32,
    /// The fields, trimmed (borrowed from the reader's buffers).
    pub fields: &'a [&'a str],
    /// A problem with the row as a whole (undecodable bytes, broken quoting).
    pub problem: Option<String>,
}

/// Receives a table's header, then its rows. Rows are handled in *pieces*: each piece
/// collects consecutive rows on its own (pieces of a large file are filled in parallel),
/// then the pieces are absorbed in file order.
pub trait TableSink: Sync {
    /// Rows collected by one piece, before they are absorbed.
    type Piece: Send;

    /// Whether these fields can be the header (exports often put a title line above it).
    fn is_header(&self, _fields: &[String]) -> bool {
        true
    }
    /// A line before the header that was skipped (a title), for a warning.
    fn skipped(&mut self, _line: u32, _text: &str) {}

    /// The header's fields and line, with the encoding used (`UTF-8`, `GB18030`, `XLSX`) and
    /// whether the cells come from a spreadsheet; an error stops reading the table.
    fn header(
        &mut self,
        header: &[String],
        line: u32,
        encoding: &'static str,
        from_excel: bool,
    ) -> Result<(), String>;

    /// An empty piece, with room for about `rows` rows.
    fn piece(&self, rows: usize) -> Self::Piece;
    /// About `rows` rows are coming in all (a hint, given before the first piece).
    fn reserve(&mut self, _rows: usize) {}
    /// One row into a piece (called from several threads, on different pieces).
    fn row(&self, piece: &mut Self::Piece, row: Row<'_>);
    /// The rows of `text`, a piece of simple text (every line one record, the first one
    /// numbered `first`), into `piece`: by default one [`row`](Self::row) at a time.
    fn rows(&self, piece: &mut Self::Piece, text: &str, first: u32) {
        simple_rows(text, first, &mut |row| self.row(piece, row));
    }
    /// A filled piece, in file order (while later pieces are being filled).
    fn absorb(&self, piece: Self::Piece);
    /// `bytes` more of the file have been read (for progress bars).
    fn progress(&self, _bytes: u64) {}
}

/// How a CSV file is cut for parallel reading.
#[derive(Debug, Clone, Copy)]
pub struct Chunking {
    /// Bytes read at a time (the file is never held whole unless it needs the slow path).
    pub window: usize,
    /// Bytes per piece parsed on one thread.
    pub piece: usize,
}

impl Default for Chunking {
    fn default() -> Self {
        Chunking {
            window: 16 << 20,
            piece: 512 << 10,
        }
    }
}

/// Fields longer than this are taken for an unclosed quote.
pub(super) const MAX_FIELD: usize = 1 << 20;

/// A field as text (the whole file was decoded, so this only fails on a lone broken row).
fn field_str(f: &[u8]) -> &str {
    std::str::from_utf8(f).unwrap_or("\u{FFFD}").trim()
}

/// Read a CSV file into `sink`; returns the encoding used (`UTF-8`, `GB18030`).
///
/// The fast path reads the file in windows, cuts each window into pieces at line breaks and
/// parses the pieces in parallel; it applies while the text has no quote characters and no
/// bare carriage returns, where every line is one record. From the first window that has
/// either, the rest of the file is read by the `csv` crate on one thread. Both paths give the
/// same rows, line numbers and problems.
pub fn read_csv<S: TableSink>(
    path: &Path,
    enc: Encoding,
    chunking: Chunking,
    sink: &mut S,
) -> Result<&'static str, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let window = chunking.window.max(64);
    // Room for a window plus the partial line carried over, so buffers are never regrown.
    let mut cur: Vec<u8> = Vec::with_capacity(2 * window);
    let mut eof = fill(&mut file, &mut cur, window)?;
    if cur.is_empty() {
        return Err("the file is empty (0 bytes): it needs at least a header line".into());
    }
    if cur.starts_with(b"\xEF\xBB\xBF") {
        cur.drain(..3);
    }
    let mut decided = match enc {
        Encoding::Utf8 => Some("UTF-8"),
        Encoding::Gb18030 => Some("GB18030"),
        Encoding::Auto => None,
    };
    // The first window must hold whole lines.
    while !eof && memchr::memrchr(b'\n', &cur).is_none() {
        eof = fill(&mut file, &mut cur, window)?;
    }
    let first_end = window_end(&cur, eof);
    if !is_simple(&cur[..first_end]) {
        // Quotes or bare CRs from the start: the whole file on the slow path.
        let mut rest = Vec::new();
        file.read_to_end(&mut rest)
            .map_err(|e| format!("cannot read the file: {e}"))?;
        cur.extend_from_slice(&rest);
        sink.progress(cur.len() as u64);
        let (text, name) = decode(&cur, decided.map_or(enc, encoding_of));
        read_csv_text(text.as_bytes(), name, sink)?;
        return Ok(name);
    }
    decide(&mut decided, &cur[..first_end], enc);
    // The header, from the first window.
    let text0 = decode_piece(&cur[..first_end], decided);
    let (header_line, body_start) = simple_header(&text0, sink)?;
    let body_start = raw_offset_after_lines(&cur[..first_end], &text0, body_start);
    let mut line = header_line + 1;
    let mut start = body_start;
    let mut next: Vec<u8> = Vec::with_capacity(2 * window);
    let mut first_window = true;
    // Pieces parsed but not yet absorbed: they are absorbed while the next window is parsed.
    let mut pending: Vec<S::Piece> = Vec::new();
    loop {
        let end = window_end(&cur, eof);
        let body = &cur[start..end];
        let ranges = cut_at_lines(body, chunking.piece);
        let simple = ranges.par_iter().all(|&(a, b)| is_simple(&body[a..b]));
        if !simple {
            // The rest of the file (from this window's first line) on the slow path.
            for p in pending.drain(..) {
                sink.absorb(p);
            }
            let mut rest = cur[start..].to_vec();
            file.read_to_end(&mut rest)
                .map_err(|e| format!("cannot read the file: {e}"))?;
            decide(&mut decided, &rest, enc);
            read_rest_slowly(&rest, line, decided.map_or(enc, encoding_of), sink);
            return Ok(decided.unwrap_or("UTF-8"));
        }
        decide(&mut decided, body, enc);
        let newlines: Vec<u32> = ranges
            .par_iter()
            .map(|&(a, b)| memchr::memchr_iter(b'\n', &body[a..b]).count() as u32)
            .collect();
        let mut first_lines = Vec::with_capacity(ranges.len());
        let mut l = line;
        for n in &newlines {
            first_lines.push(l);
            l += n;
        }
        let window_lines = l - line;
        if first_window {
            // Size the table from the first window's lines per byte.
            let len = file.metadata().map_or(0, |m| m.len()) as f64;
            let est = len * f64::from(window_lines) / (end.max(1) as f64) * 1.02;
            sink.reserve(est as usize);
            first_window = false;
        }
        // Parse the pieces while the previous ones are absorbed and the next window is read.
        next.clear();
        next.extend_from_slice(&cur[end..]);
        let sink_ref: &S = sink;
        let previous = std::mem::take(&mut pending);
        let (pieces, ((), read)) = rayon::join(
            || {
                ranges
                    .par_iter()
                    .zip(first_lines.par_iter().zip(newlines.par_iter()))
                    .map(|(&(a, b), (&first, &n))| {
                        let text = decode_piece(&body[a..b], decided);
                        let mut piece = sink_ref.piece(n as usize + 1);
                        sink_ref.rows(&mut piece, &text, first);
                        piece
                    })
                    .collect::<Vec<_>>()
            },
            || {
                rayon::join(
                    || previous.into_iter().for_each(|p| sink_ref.absorb(p)),
                    || {
                        if eof {
                            Ok(true)
                        } else {
                            fill(&mut file, &mut next, window)
                        }
                    },
                )
            },
        );
        pending = pieces;
        sink.progress((end - start) as u64);
        eof = read?;
        line += window_lines;
        std::mem::swap(&mut cur, &mut next);
        start = 0;
        if cur.is_empty() && eof {
            break;
        }
        while !eof && memchr::memrchr(b'\n', &cur).is_none() {
            eof = fill(&mut file, &mut cur, window)?;
        }
    }
    for p in pending {
        sink.absorb(p);
    }
    Ok(decided.unwrap_or("UTF-8"))
}

/// `body` cut into pieces of about `piece` bytes, each ending at a line break (the last at
/// the end of `body`).
fn cut_at_lines(body: &[u8], piece: usize) -> Vec<(usize, usize)> {
    let mut cuts = vec![0usize];
    while *cuts.last().unwrap_or(&0) < body.len() {
        let from = cuts.last().copied().unwrap_or(0) + piece.max(1);
        let cut = if from >= body.len() {
            body.len()
        } else {
            memchr::memchr(b'\n', &body[from..]).map_or(body.len(), |i| from + i + 1)
        };
        cuts.push(cut);
    }
    cuts.windows(2).map(|w| (w[0], w[1])).collect()
}

/// The rest of a file, from line `line`, read by the `csv` crate on one thread.
fn read_rest_slowly<S: TableSink>(rest: &[u8], line: u32, enc: Encoding, sink: &mut S) {
    let (text, _) = decode(rest, enc);
    let sink_ref: &S = sink;
    let mut piece = sink_ref.piece(0);
    csv_rows(text.as_bytes(), line, usize::MAX, &mut |row| {
        sink_ref.row(&mut piece, row)
    });
    sink.absorb(piece);
    sink.progress(rest.len() as u64);
}

/// Append up to `n` bytes from `file`; true at the end of the file.
fn fill(file: &mut std::fs::File, buf: &mut Vec<u8>, n: usize) -> Result<bool, String> {
    use std::io::Read;
    let before = buf.len();
    let got = file
        .by_ref()
        .take(n as u64)
        .read_to_end(buf)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    debug_assert_eq!(buf.len(), before + got);
    Ok(got < n)
}

/// Where the whole lines of a window end.
fn window_end(buf: &[u8], eof: bool) -> usize {
    if eof {
        buf.len()
    } else {
        memchr::memrchr(b'\n', buf).map_or(buf.len(), |i| i + 1)
    }
}

/// True when every line is one record: no quotes, and CR only before LF (one pass).
fn is_simple(bytes: &[u8]) -> bool {
    memchr::memchr2_iter(b'"', b'\r', bytes)
        .all(|i| bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n'))
}

fn encoding_of(name: &'static str) -> Encoding {
    if name == "GB18030" {
        Encoding::Gb18030
    } else {
        Encoding::Utf8
    }
}

/// With `--encoding auto`, decide at the first bytes that are not ASCII (ASCII reads the
/// same either way).
fn decide(decided: &mut Option<&'static str>, bytes: &[u8], enc: Encoding) {
    if decided.is_none() && !bytes.is_ascii() {
        *decided = Some(decode_name(bytes, enc));
    }
}

/// The encoding for these bytes: with `auto`, valid UTF-8 is UTF-8; mostly valid UTF-8 with
/// a few broken bytes stays UTF-8 (those rows are rejected); otherwise GB18030.
fn decode_name(bytes: &[u8], enc: Encoding) -> &'static str {
    match enc {
        Encoding::Utf8 => "UTF-8",
        Encoding::Gb18030 => "GB18030",
        Encoding::Auto => {
            if std::str::from_utf8(bytes).is_ok() {
                return "UTF-8";
            }
            let mut good = 0usize;
            let mut bad = 0usize;
            for chunk in bytes.utf8_chunks() {
                good += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
                if !chunk.invalid().is_empty() {
                    bad += 1;
                }
            }
            if good >= 10 * bad.max(1) {
                "UTF-8"
            } else {
                "GB18030"
            }
        }
    }
}

/// Decode a piece (whole lines) with the encoding decided so far.
fn decode_piece<'a>(bytes: &'a [u8], decided: Option<&'static str>) -> std::borrow::Cow<'a, str> {
    match decided {
        Some("GB18030") => encoding_rs::GB18030.decode_without_bom_handling(bytes).0,
        _ => match simdutf8::basic::from_utf8(bytes) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(bytes),
        },
    }
}

/// The raw byte offset of the start of the line at text offset `text_off` (offsets after a
/// line break; line breaks are the same bytes in raw and decoded text).
fn raw_offset_after_lines(raw: &[u8], text: &str, text_off: usize) -> usize {
    if text_off >= text.len() {
        return raw.len();
    }
    let n = memchr::memchr_iter(b'\n', &text.as_bytes()[..text_off]).count();
    if n == 0 {
        return 0;
    }
    memchr::memchr_iter(b'\n', raw)
        .nth(n - 1)
        .map_or(raw.len(), |i| i + 1)
}

/// Split a line into trimmed fields; the problem if the row cannot be taken as it is.
fn split_line<'t>(line: &'t str, fields: &mut Vec<&'t str>) -> Option<String> {
    fields.clear();
    let mut problem = None;
    let bytes = line.as_bytes();
    let mut start = 0;
    // Commas are ASCII, so every cut is at a character boundary.
    for i in memchr::memchr_iter(b',', bytes).chain(std::iter::once(bytes.len())) {
        let f = &line[start..i];
        if f.len() > MAX_FIELD {
            problem = Some("a field is longer than 1 MiB (an unclosed quote?)".to_string());
        }
        fields.push(trim(f));
        start = i + 1;
    }
    problem
}

/// `str::trim`, quicker for the usual field that has no space at either end.
#[inline]
pub(super) fn trim(f: &str) -> &str {
    match (f.as_bytes().first(), f.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => f,
        (None, _) => f,
        _ => f.trim(),
    }
}

/// The header of a simple (quote-free) text: the first of the first five non-empty lines
/// that the sink accepts (title lines above it are reported as skipped). Returns the header
/// line number and the text offset where the body starts.
fn simple_header<S: TableSink>(text: &str, sink: &mut S) -> Result<(u32, usize), String> {
    const LOOK: usize = 5;
    let mut candidates: Vec<(u32, Vec<String>, usize)> = Vec::new();
    let mut pos = 0;
    let mut line = 1u32;
    let mut fields = Vec::new();
    while pos < text.len() && candidates.len() < LOOK {
        let end = memchr::memchr(b'\n', &text.as_bytes()[pos..]).map_or(text.len(), |i| pos + i);
        let l = text[pos..end].strip_suffix('\r').unwrap_or(&text[pos..end]);
        split_line(l, &mut fields);
        if !l.is_empty() && fields.iter().any(|f| !f.is_empty()) {
            candidates.push((
                line,
                fields.iter().map(|f| f.to_string()).collect(),
                (end + 1).min(text.len()),
            ));
        }
        pos = end + 1;
        line += 1;
    }
    let (header_line, _, body) = &candidates[pick_header(&candidates, "UTF-8", sink)?];
    Ok((*header_line, *body))
}

/// Of the first non-empty records (line, fields, offset after), the header: the first the
/// sink accepts (those above it are reported as skipped title lines), else the first.
/// Gives the sink the header and returns its index.
fn pick_header<S: TableSink>(
    candidates: &[(u32, Vec<String>, usize)],
    encoding: &'static str,
    sink: &mut S,
) -> Result<usize, String> {
    if candidates.is_empty() {
        return Err("the file has no header line".into());
    }
    let pick = candidates
        .iter()
        .position(|(_, f, _)| sink.is_header(f))
        .unwrap_or(0);
    for (l, f, _) in &candidates[..pick] {
        sink.skipped(*l, &f.join(","));
    }
    let (header_line, header, _) = &candidates[pick];
    if header.iter().any(|h| h.contains('\u{FFFD}')) {
        return Err(format!(
            "line {header_line}: the header is not UTF-8 or GB18030 text (try --encoding)"
        ));
    }
    sink.header(header, *header_line, encoding, false)?;
    Ok(pick)
}

/// Rows of simple text (every line one record), the first line numbered `first`.
///
/// One SIMD pass (`memchr2`) finds every comma and line break of the piece, instead of a
/// search for the line's end and then one for its commas on every line.
pub(super) fn simple_rows(text: &str, first: u32, row: &mut dyn FnMut(Row<'_>)) {
    let bytes = text.as_bytes();
    // U+FFFD marks bytes that could not be decoded; most pieces have none.
    let damaged = memchr::memmem::find(bytes, "\u{FFFD}".as_bytes()).is_some();
    let mut fields: Vec<&str> = Vec::new();
    let mut line = first;
    let (mut line_start, mut field_start) = (0, 0);
    let mut long = false;
    // Commas and line breaks are ASCII, so every cut is at a character boundary.
    for i in memchr::memchr2_iter(b',', b'\n', bytes).chain(std::iter::once(bytes.len())) {
        if i < bytes.len() && bytes[i] == b',' {
            let f = &text[field_start..i];
            long |= f.len() > MAX_FIELD;
            fields.push(trim(f));
            field_start = i + 1;
            continue;
        }
        if line_start >= bytes.len() {
            break; // the text ended with a line break
        }
        // A line break (or the end): the line is `line_start..end`, without a CR before LF.
        let end = if i > line_start && bytes[i - 1] == b'\r' {
            i - 1
        } else {
            i
        };
        if end > line_start {
            let f = &text[field_start.min(end)..end];
            long |= f.len() > MAX_FIELD;
            fields.push(trim(f));
            let mut problem =
                long.then(|| "a field is longer than 1 MiB (an unclosed quote?)".to_string());
            if problem.is_none() && damaged && text[line_start..end].contains('\u{FFFD}') {
                problem =
                    Some("the row has bytes that are neither UTF-8 nor GB18030 text".to_string());
            }
            // A line of only empty fields (`,,,`) holds nothing: it is skipped like a blank line.
            if problem.is_some() || fields.iter().any(|f| !f.is_empty()) {
                row(Row {
                    line,
                    fields: &fields,
                    problem,
                });
            }
        }
        fields.clear();
        long = false;
        line += 1;
        line_start = i + 1;
        field_start = i + 1;
    }
}

/// Read decoded CSV text (header and rows) with the `csv` crate, on one thread.
pub fn read_csv_text<S: TableSink>(
    data: &[u8],
    encoding: &'static str,
    sink: &mut S,
) -> Result<(), String> {
    // The header: the first non-empty record the sink accepts among the first few (title
    // lines above it are skipped with a warning); if none fits, the first non-empty one, so
    // the sink can say which columns are missing.
    const LOOK: usize = 5;
    let mut candidates: Vec<(u32, Vec<String>, usize)> = Vec::new();
    {
        let mut probe = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(data);
        let mut rec = csv::ByteRecord::new();
        let mut probe_lines = LineCounter::new(data);
        while candidates.len() < LOOK {
            match probe.read_byte_record(&mut rec) {
                Ok(true) => {
                    if rec.iter().all(|f| field_str(f).is_empty()) {
                        continue;
                    }
                    let line = probe_lines.line_at(rec.position().map_or(0, |p| p.byte() as usize));
                    let after = probe.position().byte() as usize;
                    candidates.push((
                        line,
                        rec.iter().map(|f| field_str(f).to_string()).collect(),
                        after,
                    ));
                }
                Ok(false) => break,
                Err(e) => {
                    if candidates.is_empty() {
                        return Err(format!("the header cannot be read as CSV: {e}"));
                    }
                    break;
                }
            }
        }
    }
    let (_, header, after) = &candidates[pick_header(&candidates, encoding, sink)?];
    let after = (*after).min(data.len());
    let line = 1 + memchr::memchr_iter(b'\n', &data[..after]).count() as u32;
    let sink_ref: &S = sink;
    let mut piece = sink_ref.piece(0);
    csv_rows(&data[after..], line, header.len(), &mut |row| {
        sink_ref.row(&mut piece, row)
    });
    sink.absorb(piece);
    Ok(())
}

/// The records of decoded CSV text after the header; the text starts on line `first`.
fn csv_rows(data: &[u8], first: u32, header_len: usize, row: &mut dyn FnMut(Row<'_>)) {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(data);
    let mut lines = LineCounter::starting(data, first);
    let mut cur = csv::ByteRecord::new();
    let mut next = csv::ByteRecord::new();
    let mut read = |rec: &mut csv::ByteRecord| -> Result<bool, String> {
        rdr.read_byte_record(rec)
            .map_err(|e| format!("the row cannot be read as CSV: {e}"))
    };
    let mut have = read(&mut cur);
    loop {
        match have {
            Ok(false) => break,
            Err(msg) => {
                let line = lines.line_at(data.len());
                row(Row {
                    line,
                    fields: &[],
                    problem: Some(msg),
                });
                break;
            }
            Ok(true) => {}
        }
        let line = lines.line_at(cur.position().map_or(0, |p| p.byte() as usize));
        let next_have = read(&mut next);
        let is_last = matches!(next_have, Ok(false));
        let mut f2: Vec<&str> = Vec::with_capacity(header_len.min(256));
        let mut problem = None;
        for f in cur.iter() {
            if f.len() > MAX_FIELD {
                problem = Some("a field is longer than 1 MiB (an unclosed quote?)".to_string());
            }
            f2.push(field_str(f));
        }
        if problem.is_none() && f2.iter().any(|f| f.contains('\u{FFFD}')) {
            problem = Some("the row has bytes that are neither UTF-8 nor GB18030 text".to_string());
        }
        let start = cur
            .position()
            .map_or(0, |p| p.byte() as usize)
            .min(data.len());
        if problem.is_none()
            && is_last
            && data[start..].iter().filter(|&&b| b == b'"').count() % 2 == 1
        {
            problem = Some(format!(
                "a quote opened on line {line} is never closed, so the rest of the file was read as one field"
            ));
        }
        // A line of only empty fields (`,,,`) holds nothing: it is skipped like a blank line.
        if problem.is_some() || f2.iter().any(|f| !f.is_empty()) {
            row(Row {
                line,
                fields: &f2,
                problem,
            });
        }
        std::mem::swap(&mut cur, &mut next);
        have = next_have;
    }
}

/// Sheet names of an XLSX workbook.
pub fn sheet_names(path: &Path) -> Result<Vec<String>, String> {
    guarded_sheet("the workbook", || {
        let wb = calamine::open_workbook_auto(path).map_err(|e| xlsx_error(&e.to_string()))?;
        Ok(wb.sheet_names().to_vec())
    })
}

fn xlsx_error(e: &str) -> String {
    format!("cannot open as an Excel workbook (.xlsx): {e}")
}

/// Stream one sheet of a workbook into `sink`; row numbers are those Excel shows.
pub fn read_sheet_into<S: TableSink>(path: &Path, sheet: &str, sink: &mut S) -> Result<(), String> {
    let mut t = read_sheet(path, sheet)?;
    // A title row above the header: take the first of the first rows that is a header.
    if !sink.is_header(&t.header)
        && let Some(k) = t
            .rows
            .iter()
            .take(4)
            .position(|r| sink.is_header(&r.fields))
    {
        let mut skipped = vec![(t.header_line, t.header.join(","))];
        let mut rest = t.rows.split_off(k);
        let new_header = rest.remove(0);
        skipped.extend(t.rows.iter().map(|r| (r.line, r.fields.join(","))));
        for (line, text) in skipped {
            sink.skipped(line, &text);
        }
        t.header = new_header.fields;
        t.header_line = new_header.line;
        t.rows = rest;
    }
    sink.header(&t.header, t.header_line, t.encoding, true)?;
    let sink_ref: &S = sink;
    let mut piece = sink_ref.piece(0);
    for r in t.rows {
        let fields: Vec<&str> = r.fields.iter().map(|s| s.as_str()).collect();
        sink_ref.row(
            &mut piece,
            Row {
                line: r.line,
                fields: &fields,
                problem: r.problem,
            },
        );
    }
    sink.absorb(piece);
    Ok(())
}

/// Excel's grid: 1,048,576 rows and 16,384 columns (the last cell is XFD1048576).
const EXCEL_ROWS: u32 = 1 << 20;
const EXCEL_COLS: u32 = 1 << 14;
/// Columns a table row may use; a cell further right makes its row a problem row.
const MAX_COLS: u32 = 1024;

/// A column number (0 based) as Excel's letters.
fn column_name(mut c: u32) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// Run calamine on a workbook someone sent: a panic inside it (a malformed file) becomes an
/// error, and its message is not printed.
fn guarded_sheet<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    guarded(
        || {
            format!(
                "{what} cannot be read: a cell reference is malformed or beyond Excel's grid (the last cell is XFD1048576); the file is damaged"
            )
        },
        f,
    )
}

/// Run a reader on a file someone sent: a panic inside it (a malformed file) becomes the
/// error `message` gives, and the panic's own message is not printed.
fn guarded<T>(
    message: impl FnOnce() -> String,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    thread_local! {
        static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r.unwrap_or_else(|_| Err(message()))
}

/// The non-empty cells of a sheet with their (row, column), checked against Excel's grid.
/// XLSX sheets are streamed cell by cell, so a damaged file cannot make the reader allocate
/// a grid up to a far-away cell reference.
/// A cell's (row, column) and value.
type SheetCell = ((u32, u32), Data);

fn sheet_cells(path: &Path, sheet: &str) -> Result<Vec<SheetCell>, String> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut cells = Vec::new();
    let mut add = |(r, c): (u32, u32), v: Data| -> Result<(), String> {
        if r >= EXCEL_ROWS || c >= EXCEL_COLS {
            return Err(format!(
                "sheet `{sheet}`: cell {}{} is beyond Excel's grid (the last cell is XFD1048576); the file is damaged",
                column_name(c),
                u64::from(r) + 1
            ));
        }
        if !matches!(v, Data::Empty) {
            cells.push(((r, c), v));
        }
        Ok(())
    };
    if ext == "xlsx" || ext == "xlsm" {
        let mut wb: calamine::Xlsx<_> = calamine::open_workbook(path)
            .map_err(|e: calamine::XlsxError| xlsx_error(&e.to_string()))?;
        let mut rdr = wb
            .worksheet_cells_reader(sheet)
            .map_err(|e| format!("cannot read sheet `{sheet}`: {e}"))?;
        while let Some(cell) = rdr
            .next_cell()
            .map_err(|e| format!("cannot read sheet `{sheet}`: {e}"))?
        {
            add(cell.get_position(), Data::from(cell.get_value().clone()))?;
        }
    } else {
        let mut wb = calamine::open_workbook_auto(path).map_err(|e| xlsx_error(&e.to_string()))?;
        let range = wb
            .worksheet_range(sheet)
            .map_err(|e| format!("cannot read sheet `{sheet}`: {e}"))?;
        for (r, c, v) in range.used_cells() {
            let (r0, c0) = range.start().unwrap_or((0, 0));
            add((r0 + r as u32, c0 + c as u32), v.clone())?;
        }
    }
    Ok(cells)
}

/// Read one sheet of a workbook; row numbers are those Excel shows.
pub fn read_sheet(path: &Path, sheet: &str) -> Result<RawTable, String> {
    let mut cells = guarded_sheet(&format!("sheet `{sheet}`"), || sheet_cells(path, sheet))?;
    cells.sort_by_key(|(pos, _)| *pos);
    cells.dedup_by_key(|(pos, _)| *pos);
    let mut header: Option<(Vec<String>, u32)> = None;
    let mut rows = Vec::new();
    let mut i = 0;
    while i < cells.len() {
        let r = cells[i].0.0;
        let mut j = i;
        while j < cells.len() && cells[j].0.0 == r {
            j += 1;
        }
        let row = &cells[i..j];
        i = j;
        let line = r + 1;
        let last = row.last().map_or(0, |((_, c), _)| *c);
        let mut problem = row.iter().find_map(|(_, v)| match v {
            Data::Error(e) => Some(format!("the sheet has an error cell ({e:?})")),
            _ => None,
        });
        let mut fields: Vec<String> = Vec::new();
        if last >= MAX_COLS {
            problem = Some(format!(
                "the row has a value in column {} ({}), beyond the table's columns",
                column_name(last),
                last + 1
            ));
            fields.extend(row.iter().map(|(_, v)| cell_text(v)));
        } else {
            fields.resize(last as usize + 1, String::new());
            for ((_, c), v) in row {
                fields[*c as usize] = cell_text(v);
            }
        }
        while fields.last().is_some_and(|f| f.is_empty()) {
            fields.pop();
        }
        if fields.is_empty() && problem.is_none() {
            continue;
        }
        if header.is_none() {
            header = Some((fields, line));
            continue;
        }
        rows.push(RawRow {
            line,
            fields,
            problem,
        });
    }
    let (header, header_line) =
        header.ok_or_else(|| format!("sheet `{sheet}` has no header row"))?;
    Ok(RawTable {
        header,
        header_line,
        rows,
        encoding: "XLSX",
        from_excel: true,
    })
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::Empty => String::new(),
        Data::String(s) => s.trim().to_string(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", *f as i64)
            } else {
                f.to_string()
            }
        }
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => match d.as_datetime() {
            Some(dt) if dt.time() == chrono::NaiveTime::MIN => dt.format("%Y-%m-%d").to_string(),
            Some(dt) => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
            None => d.as_f64().to_string(),
        },
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => format!("#{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A piece is simple when it has no quote and every CR ends a line.
    #[test]
    fn simple_pieces() {
        for (text, simple) in [
            ("", true),
            ("a,b\n1,2\n", true),
            ("a,b\r\n1,2\r\n", true),
            ("a,b\r\n1,2\r", false),
            ("a\rb,c\n", false),
            ("a,\"b\"\n", false),
            ("\r\n\r\n\"", false),
        ] {
            assert_eq!(is_simple(text.as_bytes()), simple, "{text:?}");
        }
    }

    #[test]
    fn decoding_picks_utf8_or_gb18030() {
        let (t, e) = decode("\u{FEFF}党员编号".as_bytes(), Encoding::Auto);
        assert_eq!((&*t, e), ("党员编号", "UTF-8"));
        let (gbk, _, _) = encoding_rs::GBK.encode("党员编号,姓名");
        let (t, e) = decode(&gbk, Encoding::Auto);
        assert_eq!((&*t, e), ("党员编号,姓名", "GB18030"));
    }

    /// Collects rows for tests.
    #[derive(Default)]
    struct Collect {
        header: Vec<String>,
        header_line: u32,
        skipped: Vec<u32>,
        rows: std::sync::Mutex<Rows>,
    }

    type Rows = Vec<(u32, Vec<String>, Option<String>)>;

    impl TableSink for Collect {
        type Piece = Rows;
        fn is_header(&self, f: &[String]) -> bool {
            f.first().is_some_and(|h| h == "a")
        }
        fn skipped(&mut self, line: u32, _: &str) {
            self.skipped.push(line);
        }
        fn header(&mut self, h: &[String], l: u32, _: &'static str, _: bool) -> Result<(), String> {
            self.header = h.to_vec();
            self.header_line = l;
            Ok(())
        }
        fn piece(&self, _: usize) -> Rows {
            Vec::new()
        }
        fn row(&self, p: &mut Rows, r: Row<'_>) {
            p.push((
                r.line,
                r.fields.iter().map(|s| s.to_string()).collect(),
                r.problem,
            ));
        }
        fn absorb(&self, p: Rows) {
            self.rows.lock().unwrap().extend(p);
        }
    }

    fn read_with(p: &Path, chunking: Chunking) -> (Collect, &'static str) {
        let mut c = Collect::default();
        let enc = read_csv(p, Encoding::Auto, chunking, &mut c).unwrap();
        (c, enc)
    }

    fn read(p: &Path) -> Collect {
        read_with(p, Chunking::default()).0
    }

    /// The fast path (tiny windows and pieces) gives what the `csv` crate gives.
    #[test]
    fn parallel_pieces_read_like_the_csv_crate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        let mut body = String::from("title line,,\n\na,b,c\n");
        for i in 0..400 {
            match i % 7 {
                0 => body.push_str(&format!("{i},名字{i},x\r\n")),
                1 => body.push('\n'),
                2 => body.push_str(",,\n"),
                3 => body.push_str(&format!(" {i} , 值 ,\n")),
                _ => body.push_str(&format!("{i},{i},{i},extra\n")),
            }
        }
        let quoted = format!("{body}9,\"q\nq\",1\n10,b,c");
        let gbk = encoding_rs::GBK.encode(&body).0.into_owned();
        for (name, bytes) in [
            ("plain", body.clone().into_bytes()),
            ("quote late", quoted.clone().into_bytes()),
            ("gbk", gbk),
        ] {
            std::fs::write(&p, &bytes).unwrap();
            let (text, enc0) = decode(&bytes, Encoding::Auto);
            let mut slow = Collect::default();
            read_csv_text(text.as_bytes(), enc0, &mut slow).unwrap();
            for (window, piece) in [(64, 1), (100, 7), (1000, 50), (1 << 20, 1 << 20)] {
                let (fast, enc) = read_with(&p, Chunking { window, piece });
                assert_eq!(enc, enc0, "{name}");
                assert_eq!(fast.header, slow.header, "{name} {window}");
                assert_eq!(fast.header_line, 3, "{name}");
                assert_eq!(fast.skipped, vec![1], "{name}");
                assert_eq!(
                    *fast.rows.lock().unwrap(),
                    *slow.rows.lock().unwrap(),
                    "{name} {window}/{piece}"
                );
            }
        }
    }

    #[test]
    fn csv_lines_are_where_records_start() {
        let dir = std::env::temp_dir().join(format!("rb-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.csv");
        std::fs::write(&p, "a,b\n1,\"x\ny\"\n2,z\n").unwrap();
        let t = read(&p);
        assert_eq!(t.header, vec!["a", "b"]);
        assert_eq!(
            t.rows
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            vec![2, 4]
        );
        std::fs::write(&p, "a,b\r\n1,2\r\n\r\n3,\"x\r\ny\"\r\n4,5\r\n").unwrap();
        let t = read(&p);
        assert_eq!(
            t.rows
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            vec![2, 4, 6]
        );
        std::fs::write(&p, "a,b\n1,2\n3,\"4\n5,6\n").unwrap();
        let t = read(&p);
        let rows = t.rows.lock().unwrap();
        assert_eq!(rows.len(), 2);
        assert!(
            rows[1].2.as_deref().unwrap_or("").contains("never closed"),
            "{:?}",
            rows[1]
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
