//! The findings workbook (`findings.xlsx`) evaluators work in, in Excel or WPS.
//!
//! Sheets, in order:
//! - `整改清单`: one row per failing or warning finding (who, branch, community, the rule's
//!   title, the status in Chinese, the message saying what would fix it, the evidence as a
//!   sentence, the source clause, the period's dates as Excel dates), header frozen, filters
//!   on, column widths fitted to Chinese text;
//! - one sheet per directive (named after its title) with every finding of the directive;
//! - `汇总`: per rule, how many findings of each status and the compliance rate;
//! - `说明`: the policy set (name, version, hash), the evaluation date, and every parameter
//!   with whether it is an assumption and why.
//!
//! Findings come from [`Run::for_each_finding`] in blocks; rows are made in parallel and
//! written in order to worksheets in rust_xlsxwriter's constant-memory mode (each sheet's
//! rows go to a temporary file), so memory does not grow with the number of findings.
//! A sheet that reaches the row limit ([`Options::max_rows`], Excel's 1,048,576) ends with
//! a note and goes on in `整改清单 (2)`, `整改清单 (3)`, … The workbook's creation time is
//! [`Options::created`], so the same inputs give the same bytes.

use super::Words;
use super::context as ctx;
use crate::eval::{EmitError, Run};
use crate::findings::{Finding, Status, Summary};
use crate::policy::model::Severity;
use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use rayon::prelude::*;
use rust_xlsxwriter::{
    Color, DocProperties, ExcelDateTime, Format, FormatAlign, Workbook, Worksheet, XlsxError,
};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// Rows in an Excel worksheet.
pub const EXCEL_ROWS: u32 = 1_048_576;

/// The longest text an Excel cell holds.
const CELL_CHARS: usize = 32_767;

/// Findings turned into rows at a time (in parallel).
const BLOCK: usize = 8192;

/// The list of failing and warning findings.
pub const LIST_SHEET: &str = "整改清单";
/// The compliance table.
pub const SUMMARY_SHEET: &str = "汇总";
/// The policy set and its assumptions.
pub const ABOUT_SHEET: &str = "说明";

/// The columns of the findings sheets: header, and the widest a column is made (in Excel's
/// character widths).
const COLUMNS: [(&str, usize); 14] = [
    ("党员/组织编号", 14),
    ("姓名/名称", 24),
    ("党支部", 30),
    ("社区", 24),
    ("要求", 30),
    ("状态", 10),
    ("说明", 60),
    ("整改期限", 12),
    ("依据", 50),
    ("证据", 60),
    ("期间起", 12),
    ("期间止", 12),
    ("严重程度", 10),
    ("规则", 24),
];

/// Index of the 整改期限 column (left empty: findings carry no deadline).
const DEADLINE: usize = 7;

/// How the workbook is written.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows per worksheet, the header and the continuation note included (Excel's limit,
    /// [`EXCEL_ROWS`]; smaller in tests).
    pub max_rows: u32,
    /// The creation time written in the workbook's properties.
    pub created: NaiveDateTime,
    /// Folder for the worksheets' temporary files (the system's when `None`); best beside
    /// the output, as a province's sheets run to gigabytes before compression.
    pub tempdir: Option<PathBuf>,
}

impl Options {
    /// Excel's row limit, created at `created`, temporary files in the system's folder.
    pub fn new(created: NaiveDateTime) -> Options {
        Options {
            max_rows: EXCEL_ROWS,
            created,
            tempdir: None,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Findings in the workbook (every sheet per directive together).
    pub findings: u64,
    /// Rows of `整改清单` (failing and warning findings), its continuation sheets included.
    pub listed: u64,
    /// The sheets, in order.
    pub sheets: Vec<String>,
}

/// Why the workbook could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rust_xlsxwriter failed (a temporary file, the output).
    #[error("writing the findings workbook: {0}")]
    Xlsx(#[from] XlsxError),
    /// Evaluation failed, or writing rows failed (its message says which).
    #[error(transparent)]
    Eval(#[from] crate::eval::Error),
}

/// A cell of a findings row.
enum Cell {
    Text(String),
    Date(NaiveDate),
}

/// One finding as a row of the findings sheets.
struct Row {
    status: Status,
    directive: usize,
    rule: usize,
    cells: Vec<Cell>,
}

/// The formats the sheets use.
struct Formats {
    header: Format,
    date: Format,
    text: Format,
    note: Format,
    percent: Format,
}

impl Formats {
    fn new() -> Formats {
        Formats {
            header: Format::new()
                .set_bold()
                .set_background_color(Color::RGB(0xDDEBF7))
                .set_align(FormatAlign::VerticalCenter),
            date: Format::new()
                .set_num_format("yyyy-mm-dd")
                .set_align(FormatAlign::Top),
            text: Format::new().set_align(FormatAlign::Top),
            note: Format::new()
                .set_bold()
                .set_font_color(Color::RGB(0xC00000)),
            percent: Format::new().set_num_format("0.0%"),
        }
    }
}

/// A sheet of findings that goes on in continuation sheets when full.
struct Sheets {
    /// The first sheet's name; continuations are `name (2)`, `name (3)`, …
    name: String,
    /// Full sheets, and the one being written (last).
    pages: Vec<Worksheet>,
    /// The next row of the page being written.
    row: u32,
    /// Rows per page.
    max_rows: u32,
    /// The widest text of each column so far (display width: CJK characters count two).
    widths: Vec<usize>,
    /// Findings written.
    count: u64,
}

impl Sheets {
    fn new(wb: &mut Workbook, name: String, max_rows: u32, f: &Formats) -> Result<Sheets, Error> {
        let mut s = Sheets {
            name,
            pages: Vec::new(),
            row: 0,
            max_rows: max_rows.max(3),
            widths: COLUMNS.iter().map(|(h, _)| width(h)).collect(),
            count: 0,
        };
        s.page(wb, f)?;
        Ok(s)
    }

    fn page_name(&self, n: usize) -> String {
        if n == 1 {
            self.name.clone()
        } else {
            format!("{} ({n})", self.name)
        }
    }

    /// Start a page: a new worksheet with the header row.
    fn page(&mut self, wb: &mut Workbook, f: &Formats) -> Result<(), Error> {
        let mut ws = wb.new_worksheet_with_constant_memory()?;
        ws.set_name(self.page_name(self.pages.len() + 1))?;
        for (c, (h, _)) in COLUMNS.iter().enumerate() {
            ws.write_string_with_format(0, c as u16, *h, &f.header)?;
        }
        ws.set_freeze_panes(1, 0)?;
        print_setup(&mut ws)?;
        self.pages.push(ws);
        self.row = 1;
        Ok(())
    }

    /// Write a row, first going on to a new page when this one is full (its last row then
    /// says where the list goes on).
    fn push(&mut self, wb: &mut Workbook, r: &Row, f: &Formats) -> Result<(), Error> {
        if self.row + 1 >= self.max_rows {
            let next = self.page_name(self.pages.len() + 1);
            let note = format!("本表已达 Excel 行数上限，以下续见工作表「{next}」");
            if let Some(ws) = self.pages.last_mut() {
                ws.write_string_with_format(self.row, 0, note, &f.note)?;
            }
            self.page(wb, f)?;
        }
        let Some(ws) = self.pages.last_mut() else {
            return Ok(());
        };
        for (c, cell) in r.cells.iter().enumerate() {
            match cell {
                Cell::Text(t) if t.is_empty() => {}
                Cell::Text(t) => {
                    self.widths[c] = self.widths[c].max(width(t));
                    ws.write_string_with_format(self.row, c as u16, t, &f.text)?;
                }
                Cell::Date(d) => match excel_date(*d) {
                    Some(x) => {
                        self.widths[c] = self.widths[c].max(10);
                        ws.write_datetime_with_format(self.row, c as u16, &x, &f.date)?;
                    }
                    None => {
                        ws.write_string_with_format(self.row, c as u16, d.to_string(), &f.text)?;
                    }
                },
            }
        }
        self.row += 1;
        self.count += 1;
        Ok(())
    }

    /// The pages, with filters and column widths set.
    fn finish(&mut self) -> Result<Vec<Worksheet>, Error> {
        let n = self.pages.len();
        let last_col = (COLUMNS.len() - 1) as u16;
        for (i, ws) in self.pages.iter_mut().enumerate() {
            // Every page but the last is full: its last row is the note.
            let last_row = if i + 1 < n {
                self.max_rows - 2
            } else {
                self.row - 1
            };
            ws.autofilter(0, 0, last_row, last_col)?;
            for (c, (_, most)) in COLUMNS.iter().enumerate() {
                let w = self.widths[c].clamp(6, *most) + 2;
                ws.set_column_width(c as u16, w as f64)?;
            }
        }
        Ok(std::mem::take(&mut self.pages))
    }
}

/// The display width of text: CJK (wide) characters count two.
fn width(s: &str) -> usize {
    s.lines()
        .map(unicode_width::UnicodeWidthStr::width)
        .max()
        .unwrap_or(0)
}

/// A date as Excel holds it; `None` outside Excel's dates (before 1900).
fn excel_date(d: NaiveDate) -> Option<ExcelDateTime> {
    let year = u16::try_from(d.year()).ok()?;
    ExcelDateTime::from_ymd(year, d.month() as u8, d.day() as u8).ok()
}

/// Text cut to what a cell holds.
fn cell_text(mut s: String) -> String {
    if s.chars().count() > CELL_CHARS {
        s = s.chars().take(CELL_CHARS - 1).collect();
        s.push('…');
    }
    s
}

/// The Chinese word for a severity.
fn severity_cn(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "严重",
        Severity::Major => "重要",
        Severity::Minor => "一般",
    }
}

/// A worksheet name from a directive's title: characters Excel forbids replaced, short
/// enough for a continuation's ` (n)`.
/// How a list prints: A4 landscape, all columns on one page width, the header row on every
/// page (evaluators print the 整改清单 to follow up).
fn print_setup(ws: &mut Worksheet) -> Result<(), Error> {
    ws.set_paper_size(9);
    ws.set_landscape();
    ws.set_print_fit_to_pages(1, 0);
    ws.set_repeat_rows(0, 0)?;
    Ok(())
}

fn sheet_name(title: &str, key: &str, taken: &[String]) -> String {
    let clean: String = title
        .chars()
        .map(|c| if "[]:*?/\\".contains(c) { '_' } else { c })
        .filter(|c| !c.is_control())
        .take(25)
        .collect();
    let clean = clean.trim().trim_matches('\'').to_string();
    let base = if clean.is_empty() || clean.eq_ignore_ascii_case("history") {
        key.chars().take(25).collect()
    } else {
        clean
    };
    let free = |n: &str| !taken.iter().any(|t| t.to_lowercase() == n.to_lowercase());
    let mut name = base.clone();
    let mut i = 2;
    while !free(&name) || [LIST_SHEET, SUMMARY_SHEET, ABOUT_SHEET].contains(&name.as_str()) {
        name = format!("{}～{i}", base.chars().take(22).collect::<String>());
        i += 1;
    }
    name
}

/// Per rule: directive, id, title, severity, and findings counted by status.
struct RuleCount<'a> {
    directive: &'a str,
    id: &'a str,
    title: &'a str,
    severity: Severity,
    counts: [u64; 6],
}

/// Writes the workbook as findings come.
struct Writer<'a> {
    wb: Workbook,
    f: Formats,
    words: Words<'a>,
    list: Sheets,
    directives: Vec<Sheets>,
    directive_index: HashMap<&'a str, usize>,
    rules: Vec<RuleCount<'a>>,
    rule_index: HashMap<&'a str, usize>,
}

impl<'a> Writer<'a> {
    fn new(run: &'a Run<'a>, opts: &Options) -> Result<Writer<'a>, Error> {
        let mut wb = Workbook::new();
        if let Some(dir) = &opts.tempdir {
            wb.set_tempdir(dir)?;
        }
        let f = Formats::new();
        let list = Sheets::new(&mut wb, LIST_SHEET.into(), opts.max_rows, &f)?;
        let mut directives = Vec::new();
        let mut directive_index = HashMap::new();
        let mut names: Vec<String> = Vec::new();
        for d in &run.policy.directives {
            if !run.rules().any(|r| r.directive == d.key) {
                continue;
            }
            let name = sheet_name(&d.title, &d.key, &names);
            names.push(name.clone());
            directive_index.insert(d.key.as_str(), directives.len());
            directives.push(Sheets::new(&mut wb, name, opts.max_rows, &f)?);
        }
        let rules: Vec<RuleCount> = (run.rules())
            .map(|r| RuleCount {
                directive: &r.directive,
                id: &r.id,
                title: &r.title,
                severity: r.severity,
                counts: [0; 6],
            })
            .collect();
        let rule_index = (rules.iter().enumerate()).map(|(i, r)| (r.id, i)).collect();
        Ok(Writer {
            wb,
            f,
            words: Words::new(run),
            list,
            directives,
            directive_index,
            rules,
            rule_index,
        })
    }

    /// A finding as a row.
    fn row(&self, f: &Finding) -> Row {
        let w = &self.words;
        let row = w.run.subject_row(&f.subject_kind, &f.subject_id);
        let (branch, community) = row.map_or_else(Default::default, |r| {
            let (b, c) = w.placement(&f.subject_kind, r);
            (b.name, c.name)
        });
        let rule = self.rule_index.get(&*f.rule).copied().unwrap_or(0);
        let title = self.rules.get(rule).map_or("", |r| r.title);
        let source = if f.source.text.is_empty() {
            f.source.document.to_string()
        } else {
            format!("{}：{}", f.source.document, f.source.text)
        };
        let day = |d: Option<&String>| {
            d.and_then(|d| crate::dates::parse_date(d))
                .map_or(Cell::Text(String::new()), Cell::Date)
        };
        let period = f.period.as_ref();
        let cells = vec![
            Cell::Text(f.subject_id.clone()),
            Cell::Text(f.subject_name.clone().unwrap_or_default()),
            Cell::Text(branch),
            Cell::Text(community),
            Cell::Text(title.to_string()),
            Cell::Text(f.status.chinese().to_string()),
            Cell::Text(cell_text(f.message.clone())),
            Cell::Text(String::new()),
            Cell::Text(cell_text(source)),
            Cell::Text(cell_text(w.evidence_text(f))),
            day(period.and_then(|p| p.start.as_ref())),
            day(period.and_then(|p| p.end.as_ref())),
            Cell::Text(severity_cn(f.severity).to_string()),
            Cell::Text(format!("{} v{}", f.rule, f.rule_version)),
        ];
        debug_assert!(matches!(&cells[DEADLINE], Cell::Text(t) if t.is_empty()));
        Row {
            status: f.status,
            directive: self
                .directive_index
                .get(&*f.directive)
                .copied()
                .unwrap_or(usize::MAX),
            rule,
            cells,
        }
    }

    /// Turn a block of findings into rows (in parallel) and write them.
    fn flush(&mut self, block: &mut Vec<Finding>) -> Result<(), Error> {
        let rows: Vec<Row> = block.par_iter().map(|f| self.row(f)).collect();
        block.clear();
        for r in &rows {
            if let Some(c) = self.rules.get_mut(r.rule) {
                c.counts[r.status as usize] += 1;
            }
            if matches!(r.status, Status::Fail | Status::Warn) {
                self.list.push(&mut self.wb, r, &self.f)?;
            }
            if let Some(s) = self.directives.get_mut(r.directive) {
                s.push(&mut self.wb, r, &self.f)?;
            }
        }
        Ok(())
    }

    /// The `汇总` sheet: findings per rule by status, and the compliance rate.
    fn summary_sheet(&self) -> Result<Worksheet, Error> {
        const HEAD: [&str; 13] = [
            "文件",
            "规则",
            "要求",
            "严重程度",
            "结论数",
            "适用",
            "符合",
            "提醒",
            "不符合",
            "出错",
            "已豁免",
            "不适用",
            "符合率",
        ];
        let mut ws = Worksheet::new();
        ws.set_name(SUMMARY_SHEET)?;
        for (c, h) in HEAD.iter().enumerate() {
            ws.write_string_with_format(0, c as u16, *h, &self.f.header)?;
        }
        ws.set_freeze_panes(1, 0)?;
        print_setup(&mut ws)?;
        let title = |key: &str| {
            (self.words.policy.directives.iter())
                .find(|d| d.key == key)
                .map_or(key.to_string(), |d| d.title.clone())
        };
        let mut total = [0u64; 6];
        let mut row = 1u32;
        for r in &self.rules {
            for (t, c) in total.iter_mut().zip(r.counts) {
                *t += c;
            }
            ws.write_string(row, 0, title(r.directive))?;
            ws.write_string(row, 1, r.id)?;
            ws.write_string(row, 2, r.title)?;
            ws.write_string(row, 3, severity_cn(r.severity))?;
            self.count_cells(&mut ws, row, &r.counts)?;
            row += 1;
        }
        ws.write_string_with_format(row, 0, "合计", &self.f.header)?;
        self.count_cells(&mut ws, row, &total)?;
        ws.write_string(
            row + 2,
            0,
            "符合率 =（适用 − 不符合 − 出错）÷ 适用：提醒和已豁免计为符合，与汇总报告的合规表一致；适用 = 结论数 − 不适用。",
        )?;
        for (c, w) in [44, 24, 30, 10, 8, 8, 8, 8, 8, 8, 8, 8, 8]
            .iter()
            .enumerate()
        {
            ws.set_column_width(c as u16, *w)?;
        }
        ws.autofilter(0, 0, row - 1, (HEAD.len() - 1) as u16)?;
        Ok(ws)
    }

    /// The counts of one row of `汇总` (from column 4): all, applicable, pass, warn, fail,
    /// error, waived, not applicable, rate.
    fn count_cells(&self, ws: &mut Worksheet, row: u32, c: &[u64; 6]) -> Result<(), Error> {
        let n = |s: Status| c[s as usize];
        let all: u64 = c.iter().sum();
        let applicable = all - n(Status::NotApplicable);
        let values = [
            all,
            applicable,
            n(Status::Pass),
            n(Status::Warn),
            n(Status::Fail),
            n(Status::Error),
            n(Status::Waived),
            n(Status::NotApplicable),
        ];
        for (i, v) in values.iter().enumerate() {
            ws.write_number(row, 4 + i as u16, *v as f64)?;
        }
        if applicable > 0 {
            let passing = applicable - n(Status::Fail) - n(Status::Error);
            let rate = passing as f64 / applicable as f64;
            ws.write_number_with_format(row, 12, rate, &self.f.percent)?;
        }
        Ok(())
    }

    /// The `说明` sheet: the policy set, the evaluation date, the sheets, and every
    /// parameter with its basis.
    fn about_sheet(&self, written: &Written, continued: &[String]) -> Result<Worksheet, Error> {
        let w = &self.words;
        let p = w.policy;
        let mut ws = Worksheet::new();
        ws.set_name(ABOUT_SHEET)?;
        let f = &self.f;
        let mut row = 0u32;
        let mut line = |ws: &mut Worksheet, k: &str, v: &str| -> Result<(), Error> {
            ws.write_string_with_format(row, 0, k, &f.header)?;
            ws.write_string(row, 1, v)?;
            row += 1;
            Ok(())
        };
        line(&mut ws, "规则集", &p.name)?;
        line(&mut ws, "标题", &p.title)?;
        line(&mut ws, "版本", &p.version)?;
        line(&mut ws, "哈希（SHA-256）", &p.hash)?;
        line(&mut ws, "依据来源", p.source.as_deref().unwrap_or(""))?;
        ws.write_string_with_format(row, 0, "评估日期", &f.header)?;
        match excel_date(w.run.as_of) {
            Some(d) => ws.write_datetime_with_format(row, 1, &d, &f.date)?,
            None => ws.write_string(row, 1, w.run.as_of.to_string())?,
        };
        row += 1;
        let mut line = |ws: &mut Worksheet, k: &str, v: &str| -> Result<(), Error> {
            ws.write_string_with_format(row, 0, k, &f.header)?;
            ws.write_string(row, 1, v)?;
            row += 1;
            Ok(())
        };
        line(
            &mut ws,
            "整改清单",
            &format!(
                "{} 条不符合或提醒的结论（共 {} 条结论）",
                written.listed, written.findings
            ),
        )?;
        if !continued.is_empty() {
            line(
                &mut ws,
                "续表",
                &format!("超出 Excel 行数上限的工作表续在：{}", continued.join("、")),
            )?;
        }
        line(
            &mut ws,
            "整改期限",
            "结论数据（findings 契约）不含整改期限，此列留空，供评估人员填写。",
        )?;
        line(
            &mut ws,
            "证据",
            "证据列以文字列出规则所用的数据及其来源文件行号；规则内部计算的中间值没有中文名称，不列出（见说明列）。",
        )?;
        row += 1;
        self.assumption_rows(&mut ws, row)?;
        for (c, w) in [22, 40, 14, 8, 12, 8, 80].iter().enumerate() {
            ws.set_column_width(c as u16, *w)?;
        }
        Ok(ws)
    }

    /// The parameters of the policy set from row `row`: name, label, value, unit, since,
    /// basis, and the reason (an assumption) or the quote (from the source).
    fn assumption_rows(&self, ws: &mut Worksheet, mut row: u32) -> Result<(), Error> {
        const HEAD: [&str; 7] = ["参数", "含义", "取值", "单位", "自", "依据", "理由或原文"];
        for (c, h) in HEAD.iter().enumerate() {
            ws.write_string_with_format(row, c as u16, *h, &self.f.header)?;
        }
        row += 1;
        for a in self.words.assumptions() {
            ws.write_string(row, 0, &a.name)?;
            ws.write_string(row, 1, &a.label)?;
            ws.write_string(row, 2, &a.value)?;
            ws.write_string(row, 3, a.unit.as_deref().unwrap_or(""))?;
            match a.from.as_deref().and_then(crate::dates::parse_date) {
                Some(d) => match excel_date(d) {
                    Some(x) => ws.write_datetime_with_format(row, 4, &x, &self.f.date)?,
                    None => ws.write_string(row, 4, d.to_string())?,
                },
                None => ws.write_string(row, 4, "")?,
            };
            let (basis, why) = match a.basis {
                ctx::BasisName::Assumption => ("假设", a.reason.as_deref()),
                ctx::BasisName::Source => ("原文", a.quote.as_deref()),
            };
            ws.write_string(row, 5, basis)?;
            ws.write_string(row, 6, cell_text(why.unwrap_or("").to_string()))?;
            row += 1;
        }
        Ok(())
    }

    /// Put the sheets in order and write the workbook.
    fn finish(mut self, out: &mut (dyn Write + Send), opts: &Options) -> Result<Written, Error> {
        let mut written = Written {
            findings: self.rules.iter().flat_map(|r| r.counts).sum(),
            listed: self.list.count,
            sheets: Vec::new(),
        };
        let mut pages = Vec::new();
        let mut continued = Vec::new();
        for s in std::iter::once(&mut self.list).chain(self.directives.iter_mut()) {
            for (i, ws) in s.finish()?.into_iter().enumerate() {
                if i > 0 {
                    continued.push(ws.name());
                }
                pages.push(ws);
            }
        }
        let summary = self.summary_sheet()?;
        let about = self.about_sheet(&written, &continued)?;
        pages.push(summary);
        pages.push(about);
        for ws in pages {
            written.sheets.push(ws.name());
            self.wb.push_worksheet(ws);
        }
        let created = &opts.created;
        let at = ExcelDateTime::from_ymd(
            u16::try_from(created.year()).unwrap_or(1980),
            created.month() as u8,
            created.day() as u8,
        )
        .and_then(|d| {
            d.and_hms(
                created.hour() as u16,
                created.minute() as u8,
                created.second() as f64,
            )
        })?;
        let props = DocProperties::new()
            .set_title(format!("{} 结论", self.words.policy.title))
            .set_creation_datetime(&at);
        self.wb.set_properties(&props);
        self.wb.save_to_writer(out)?;
        Ok(written)
    }
}

/// Evaluate `run` and write the findings workbook to `out`, counting the findings in
/// `summary`.
pub fn write(
    run: &Run,
    out: &mut (dyn Write + Send),
    opts: &Options,
    summary: &mut Summary,
) -> Result<Written, Error> {
    let mut w = Writer::new(run, opts)?;
    let mut block = Vec::with_capacity(BLOCK);
    run.for_each_finding(|f| {
        summary.add(&f);
        block.push(f);
        if block.len() >= BLOCK {
            w.flush(&mut block).map_err(|e| Box::new(e) as EmitError)?;
        }
        Ok(())
    })?;
    w.flush(&mut block)?;
    w.finish(out, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_are_valid_and_unique() {
        let long = "关于组织党员就近进村（社区）协助做好疫情防控工作的通知";
        let a = sheet_name(long, "k", &[]);
        assert_eq!(a.chars().count(), 25);
        let b = sheet_name(long, "k2", std::slice::from_ref(&a));
        assert_ne!(a, b);
        assert_eq!(sheet_name("a/b[c]", "k", &[]), "a_b_c_");
        assert_eq!(sheet_name("", "key", &[]), "key");
        assert_eq!(sheet_name("History", "key", &[]), "key");
        assert_ne!(sheet_name(LIST_SHEET, "k", &[]), LIST_SHEET);
    }

    #[test]
    fn widths_count_wide_characters_twice() {
        assert_eq!(width("M001"), 4);
        assert_eq!(width("整改清单"), 8);
        assert_eq!(width("ab\n整改"), 4);
    }

    #[test]
    fn long_text_is_cut_to_a_cell() {
        let s = cell_text("字".repeat(40_000));
        assert_eq!(s.chars().count(), CELL_CHARS);
        assert_eq!(cell_text("短".into()), "短");
    }
}
