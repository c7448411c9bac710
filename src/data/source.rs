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
pub fn decode(bytes: &[u8], enc: Encoding) -> (String, &'static str) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let utf8 = || String::from_utf8_lossy(bytes).into_owned();
    let gb = || {
        let (text, _) = encoding_rs::GB18030.decode_without_bom_handling(bytes);
        text.into_owned()
    };
    match enc {
        Encoding::Utf8 => (utf8(), "UTF-8"),
        Encoding::Gb18030 => (gb(), "GB18030"),
        Encoding::Auto => match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_string(), "UTF-8"),
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

/// Read a CSV file into records.
pub fn read_csv(path: &Path, enc: Encoding) -> Result<RawTable, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes): it needs at least a header line".into());
    }
    let (text, encoding) = decode(&bytes, enc);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut header: Option<(Vec<String>, u32)> = None;
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut lines = LineCounter::new(text.as_bytes());
    loop {
        let line = lines.line_at(rdr.position().byte() as usize);
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record
                    .position()
                    .map(|p| lines.line_at(p.byte() as usize))
                    .unwrap_or(line);
                let fields: Vec<String> = record.iter().map(|f| f.trim().to_string()).collect();
                if header.is_none() {
                    if fields.iter().all(|f| f.is_empty()) {
                        continue;
                    }
                    header = Some((fields, line));
                    continue;
                }
                let problem = fields.iter().any(|f| f.contains('\u{FFFD}')).then(|| {
                    "the row has bytes that are neither UTF-8 nor GB18030 text".to_string()
                });
                rows.push(RawRow {
                    line,
                    fields,
                    problem,
                });
            }
            Err(e) => {
                let line = e
                    .position()
                    .map(|p| lines.line_at(p.byte() as usize))
                    .unwrap_or(line);
                let msg = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "the row is not valid text".to_string(),
                    _ => format!("the row cannot be read as CSV: {e}"),
                };
                if header.is_none() {
                    return Err(format!("line {line}: {msg}"));
                }
                rows.push(RawRow {
                    line,
                    fields: Vec::new(),
                    problem: Some(msg),
                });
            }
        }
    }
    // An unterminated quote swallows the rest of the file into one field: say so.
    let (header, header_line) = header.ok_or_else(|| "the file has no header line".to_string())?;
    let header_len = header.len();
    if let Some(last) = rows.last_mut()
        && last.problem.is_none()
        && last.fields.len() < header_len
        && last.fields.iter().any(|f| f.contains('\n'))
    {
        last.problem = Some(format!(
            "a quote opened on line {} is never closed, so the rest of the file was read as one field",
            last.line
        ));
    }
    for r in rows.iter_mut() {
        if r.problem.is_none() && r.fields.iter().any(|f| f.len() > 1 << 20) {
            r.problem = Some("a field is longer than 1 MiB (an unclosed quote?)".into());
            r.fields.clear();
        }
    }
    Ok(RawTable {
        header,
        header_line,
        rows,
        encoding,
        from_excel: false,
    })
}

/// Sheet names of an XLSX workbook.
pub fn sheet_names(path: &Path) -> Result<Vec<String>, String> {
    let wb = calamine::open_workbook_auto(path).map_err(|e| xlsx_error(&e.to_string()))?;
    Ok(wb.sheet_names().to_vec())
}

fn xlsx_error(e: &str) -> String {
    format!("cannot open as an Excel workbook (.xlsx): {e}")
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
        assert_eq!((t.as_str(), e), ("党员编号", "UTF-8"));
        let (gbk, _, _) = encoding_rs::GBK.encode("党员编号,姓名");
        let (t, e) = decode(&gbk, Encoding::Auto);
        assert_eq!((t.as_str(), e), ("党员编号,姓名", "GB18030"));
    }

    #[test]
    fn csv_lines_are_where_records_start() {
        let dir = std::env::temp_dir().join(format!("rb-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.csv");
        std::fs::write(&p, "a,b\n1,\"x\ny\"\n2,z\n").unwrap();
        let t = read_csv(&p, Encoding::Auto).unwrap();
        assert_eq!(t.header, vec!["a", "b"]);
        assert_eq!(
            t.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 4]
        );
        std::fs::write(&p, "a,b\r\n1,2\r\n\r\n3,\"x\r\ny\"\r\n4,5\r\n").unwrap();
        let t = read_csv(&p, Encoding::Auto).unwrap();
        assert_eq!(
            t.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 4, 6]
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
