//! Finding a dataset's files and reading them into text records with the line numbers a
//! person sees: CSV in UTF-8 (BOM allowed) or GB18030/GBK, and sheets of XLSX workbooks.

use calamine::{Data, Reader};
use std::path::{Path, PathBuf};

/// How to decode CSV bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Encoding {
    /// Valid UTF-8 is UTF-8; otherwise GB18030 (which covers GBK and GB2312).
    #[default]
    Auto,
    Utf8,
    Gb18030,
}

/// Where a table's rows come from.
#[derive(Debug, Clone)]
pub enum SourceKind {
    Csv,
    Sheet(String),
}

/// One table file found in the dataset folder.
#[derive(Debug, Clone)]
pub struct TableSource {
    pub path: PathBuf,
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
            SourceKind::Csv => name,
            SourceKind::Sheet(s) => format!("{name}[{s}]"),
        }
    }
}

/// A file-level problem: the table cannot be read at all.
#[derive(Debug, Clone)]
pub struct FileError {
    pub file: String,
    pub message: String,
}

/// Records of a table as text: the header and each row with its line (or Excel row) number.
pub struct RawTable {
    pub header: Vec<String>,
    pub header_line: u32,
    pub rows: Vec<RawRow>,
    /// What decoding was used: `UTF-8`, `GB18030`, `XLSX`.
    pub encoding: &'static str,
    /// True for spreadsheet cells (numbers may be Excel serial dates).
    pub from_excel: bool,
}

pub struct RawRow {
    pub line: u32,
    pub fields: Vec<String>,
    /// A problem with the row as a whole (undecodable bytes, broken quoting).
    pub problem: Option<String>,
}

/// Decode CSV bytes into text, per the encoding rule.
pub fn decode(bytes: &[u8], enc: Encoding) -> (std::borrow::Cow<'_, str>, &'static str) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let utf8 = || String::from_utf8_lossy(bytes);
    let gb = || encoding_rs::GB18030.decode_without_bom_handling(bytes).0;
    match enc {
        Encoding::Utf8 => (utf8(), "UTF-8"),
        Encoding::Gb18030 => (gb(), "GB18030"),
        Encoding::Auto => match std::str::from_utf8(bytes) {
            Ok(s) => (std::borrow::Cow::Borrowed(s), "UTF-8"),
            Err(_) => {
                // Mostly valid UTF-8 with a few broken bytes stays UTF-8 (those rows are
                // rejected); otherwise the file is GB18030.
                let mut good = 0usize;
                let mut bad = 0usize;
                for chunk in bytes.utf8_chunks() {
                    good += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
                    if !chunk.invalid().is_empty() {
                        bad += 1;
                    }
                }
                if good >= 10 * bad.max(1) {
                    (utf8(), "UTF-8")
                } else {
                    (gb(), "GB18030")
                }
            }
        },
    }
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

    fn line_at(&mut self, mut offset: usize) -> u32 {
        while offset < self.text.len() && matches!(self.text[offset], b'\r' | b'\n') {
            offset += 1;
        }
        let offset = offset.min(self.text.len());
        if offset < self.pos {
            // Offsets normally grow; recount from the start if not.
            self.pos = 0;
            self.line = 1;
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
    pub fields: &'a [&'a str],
    /// A problem with the row as a whole (undecodable bytes, broken quoting).
    pub problem: Option<String>,
}

/// Receives a table's header, then its rows, one at a time.
pub trait RowSink {
    /// Whether these fields can be the header (exports often put a title line above it).
    fn is_header(&self, _fields: &[String]) -> bool {
        true
    }
    /// A line before the header that was skipped (a title), for a warning.
    fn skipped(&mut self, _line: u32, _text: &str) {}

    fn header(
        &mut self,
        header: &[String],
        line: u32,
        encoding: &'static str,
        from_excel: bool,
    ) -> Result<(), String>;
    fn row(&mut self, row: Row<'_>);
}

const MAX_FIELD: usize = 1 << 20;

/// A field as text (the whole file was decoded, so this only fails on a lone broken row).
fn field_str(f: &[u8]) -> &str {
    std::str::from_utf8(f).unwrap_or("\u{FFFD}").trim()
}

/// Stream a CSV file into `sink` without holding its rows (the bytes are read once; valid
/// UTF-8 is used in place).
pub fn read_csv(path: &Path, enc: Encoding, sink: &mut dyn RowSink) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes): it needs at least a header line".into());
    }
    let (text, encoding) = decode(&bytes, enc);
    let data = text.as_bytes();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(data);
    let mut lines = LineCounter::new(data);
    let mut cur = csv::ByteRecord::new();
    let mut next = csv::ByteRecord::new();
    // The header: the first non-empty record the sink accepts among the first few (title
    // lines above it are skipped with a warning); if none fits, the first non-empty one, so
    // the sink can say which columns are missing.
    const LOOK: usize = 5;
    let mut candidates: Vec<(u32, Vec<String>)> = Vec::new();
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
                    candidates.push((line, rec.iter().map(|f| field_str(f).to_string()).collect()));
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
    if candidates.is_empty() {
        return Err("the file has no header line".into());
    }
    let pick = candidates
        .iter()
        .position(|(_, f)| sink.is_header(f))
        .unwrap_or(0);
    let header_line = candidates[pick].0;
    for (line, fields) in &candidates[..pick] {
        sink.skipped(*line, &fields.join(","));
    }
    // Move the real reader past the header.
    loop {
        match rdr.read_byte_record(&mut cur) {
            Ok(true) => {
                let line = lines.line_at(cur.position().map_or(0, |p| p.byte() as usize));
                if line < header_line || cur.iter().all(|f| field_str(f).is_empty()) {
                    continue;
                }
                let header: Vec<String> = cur.iter().map(|f| field_str(f).to_string()).collect();
                if header.iter().any(|h| h.contains('\u{FFFD}')) {
                    return Err(format!(
                        "line {header_line}: the header is not UTF-8 or GB18030 text (try --encoding)"
                    ));
                }
                sink.header(&header, header_line, encoding, false)?;
                break;
            }
            Ok(false) => return Err("the file has no header line".into()),
            Err(e) => return Err(format!("the header cannot be read as CSV: {e}")),
        }
    }
    let header_len = cur.len();
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
                sink.row(Row {
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
        let mut f2: Vec<&str> = Vec::with_capacity(header_len);
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
            sink.row(Row {
                line,
                fields: &f2,
                problem,
            });
        }
        std::mem::swap(&mut cur, &mut next);
        have = next_have;
    }
    Ok(())
}

/// Sheet names of an XLSX workbook.
pub fn sheet_names(path: &Path) -> Result<Vec<String>, String> {
    let wb = calamine::open_workbook_auto(path).map_err(|e| xlsx_error(&e.to_string()))?;
    Ok(wb.sheet_names().to_vec())
}

fn xlsx_error(e: &str) -> String {
    format!("cannot open as an Excel workbook (.xlsx): {e}")
}

/// Stream one sheet of a workbook into `sink`; row numbers are those Excel shows.
pub fn read_sheet_into(path: &Path, sheet: &str, sink: &mut dyn RowSink) -> Result<(), String> {
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
    for r in t.rows {
        let fields: Vec<&str> = r.fields.iter().map(|s| s.as_str()).collect();
        sink.row(Row {
            line: r.line,
            fields: &fields,
            problem: r.problem,
        });
    }
    Ok(())
}

/// Read one sheet of a workbook; row numbers are those Excel shows.
pub fn read_sheet(path: &Path, sheet: &str) -> Result<RawTable, String> {
    let mut wb = calamine::open_workbook_auto(path).map_err(|e| xlsx_error(&e.to_string()))?;
    let range = wb
        .worksheet_range(sheet)
        .map_err(|e| format!("cannot read sheet `{sheet}`: {e}"))?;
    let first_row = range.start().map(|(r, _)| r).unwrap_or(0);
    let first_col = range.start().map(|(_, c)| c).unwrap_or(0) as usize;
    let mut header: Option<(Vec<String>, u32)> = None;
    let mut rows = Vec::new();
    for (i, row) in range.rows().enumerate() {
        let line = first_row + i as u32 + 1;
        let mut fields: Vec<String> = std::iter::repeat_n(String::new(), first_col)
            .chain(row.iter().map(cell_text))
            .collect();
        while fields.last().is_some_and(|f| f.is_empty()) {
            fields.pop();
        }
        if fields.is_empty() {
            continue;
        }
        if header.is_none() {
            header = Some((fields, line));
            continue;
        }
        let problem = row.iter().find_map(|c| match c {
            Data::Error(e) => Some(format!("the sheet has an error cell ({e:?})")),
            _ => None,
        });
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
        rows: Vec<(u32, Vec<String>, Option<String>)>,
    }

    impl RowSink for Collect {
        fn header(&mut self, h: &[String], _: u32, _: &'static str, _: bool) -> Result<(), String> {
            self.header = h.to_vec();
            Ok(())
        }
        fn row(&mut self, r: Row<'_>) {
            self.rows.push((
                r.line,
                r.fields.iter().map(|s| s.to_string()).collect(),
                r.problem,
            ));
        }
    }

    fn read(p: &Path) -> Collect {
        let mut c = Collect::default();
        read_csv(p, Encoding::Auto, &mut c).unwrap();
        c
    }

    #[test]
    fn csv_lines_are_where_records_start() {
        let dir = std::env::temp_dir().join(format!("rb-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.csv");
        std::fs::write(&p, "a,b\n1,\"x\ny\"\n2,z\n").unwrap();
        let t = read(&p);
        assert_eq!(t.header, vec!["a", "b"]);
        assert_eq!(t.rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 4]);
        std::fs::write(&p, "a,b\r\n1,2\r\n\r\n3,\"x\r\ny\"\r\n4,5\r\n").unwrap();
        let t = read(&p);
        assert_eq!(
            t.rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![2, 4, 6]
        );
        std::fs::write(&p, "a,b\n1,2\n3,\"4\n5,6\n").unwrap();
        let t = read(&p);
        assert_eq!(t.rows.len(), 2);
        assert!(
            t.rows[1]
                .2
                .as_deref()
                .unwrap_or("")
                .contains("never closed"),
            "{:?}",
            t.rows[1]
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
