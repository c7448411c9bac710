//! Findings per the findings contract: one per (rule, subject), with status, Chinese message,
//! evidence and lineage, the source clause and the period; written as JSON, JSON Lines or
//! CSV in a deterministic order, plus the terminal summary.

use crate::data::TableStats;
use crate::policy::model::Severity;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

/// The verdict of one rule on one subject.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    Warn,
    NotApplicable,
    Error,
    Waived,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pass,
        Status::Warn,
        Status::Fail,
        Status::NotApplicable,
        Status::Error,
        Status::Waived,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::NotApplicable => "not_applicable",
            Status::Error => "error",
            Status::Waived => "waived",
        }
    }

    /// The word used in Chinese reports.
    pub fn chinese(self) -> &'static str {
        match self {
            Status::Pass => "符合",
            Status::Fail => "不符合",
            Status::Warn => "提醒",
            Status::NotApplicable => "不适用",
            Status::Error => "规则出错",
            Status::Waived => "已豁免",
        }
    }
}

/// The document and clause a finding enforces.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRef {
    /// Document number, or the title where it has none.
    pub document: Arc<str>,
    /// The directive's title and issuer (in the policy set; not repeated in every finding).
    #[serde(skip)]
    pub title: Arc<str>,
    #[serde(skip)]
    pub issuer: Option<Arc<str>>,
    pub clause: Arc<str>,
    /// The clause, quoted from the source.
    pub text: Arc<str>,
}

/// The dates a finding looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodRef {
    pub name: Arc<str>,
    pub start: Option<String>,
    pub end: Option<String>,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub directive: Arc<str>,
    pub rule: Arc<str>,
    pub rule_version: Arc<str>,
    pub subject_kind: Arc<str>,
    pub subject_id: String,
    pub subject_name: Option<String>,
    pub status: Status,
    pub severity: Severity,
    pub message: String,
    /// The values the decision used; `records` names the input rows behind aggregates.
    pub evidence: serde_json::Map<String, serde_json::Value>,
    pub source: Arc<SourceRef>,
    pub period: Option<PeriodRef>,
    pub as_of: Arc<str>,
    pub policy_set: Arc<str>,
    pub policy_version: Arc<str>,
    pub policy_hash: Arc<str>,
}

/// Output format of findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Jsonl,
    Csv,
}

/// Writes findings as they come, in the chosen format.
pub struct FindingWriter<W: Write> {
    out: W,
    format: Format,
    count: u64,
}

const CSV_HEADER: [&str; 19] = [
    "directive",
    "rule",
    "rule_version",
    "subject_kind",
    "subject_id",
    "subject_name",
    "status",
    "severity",
    "message",
    "evidence",
    "source_document",
    "source_clause",
    "source_text",
    "period_start",
    "period_end",
    "as_of",
    "policy_set",
    "policy_version",
    "policy_hash",
];

impl<W: Write> FindingWriter<W> {
    pub fn new(mut out: W, format: Format) -> std::io::Result<Self> {
        match format {
            Format::Json => out.write_all(b"[")?,
            Format::Jsonl => {}
            Format::Csv => {
                let mut w = csv::Writer::from_writer(Vec::new());
                w.write_record(CSV_HEADER).map_err(std::io::Error::other)?;
                out.write_all(
                    &w.into_inner()
                        .map_err(|e| std::io::Error::other(e.to_string()))?,
                )?;
            }
        }
        Ok(FindingWriter {
            out,
            format,
            count: 0,
        })
    }

    pub fn write(&mut self, f: &Finding) -> std::io::Result<()> {
        let bytes = encode(f, self.format)?;
        self.write_encoded(&bytes)
    }

    /// Write a finding already encoded with [`encode`] (so encoding can run in parallel).
    pub fn write_encoded(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.format == Format::Json {
            self.out
                .write_all(if self.count == 0 { b"\n" } else { b",\n" })?;
        }
        self.out.write_all(bytes)?;
        self.count += 1;
        Ok(())
    }

    pub fn finish(self) -> std::io::Result<W> {
        let mut out = self.out;
        if self.format == Format::Json {
            out.write_all(if self.count == 0 { b"]\n" } else { b"\n]\n" })?;
        }
        out.flush()?;
        Ok(out)
    }
}

pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Major => "major",
        Severity::Minor => "minor",
    }
}

/// One finding as bytes in `format`: a pretty JSON object (indented for the array), a JSON
/// line, or a CSV record.
pub fn encode(f: &Finding, format: Format) -> std::io::Result<Vec<u8>> {
    match format {
        Format::Json => {
            let mut buf = Vec::with_capacity(1024);
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"  ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            f.serialize(&mut ser).map_err(std::io::Error::other)?;
            // Indent the object by two spaces inside the array.
            let mut out = Vec::with_capacity(buf.len() + buf.len() / 8);
            out.extend_from_slice(b"  ");
            for &b in &buf {
                out.push(b);
                if b == b'\n' {
                    out.extend_from_slice(b"  ");
                }
            }
            Ok(out)
        }
        Format::Jsonl => {
            let mut buf = serde_json::to_vec(f).map_err(std::io::Error::other)?;
            buf.push(b'\n');
            Ok(buf)
        }
        Format::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .buffer_capacity(2048)
                .from_writer(Vec::with_capacity(1024));
            let evidence = serde_json::to_string(&f.evidence).unwrap_or_default();
            let (ps, pe) = f
                .period
                .as_ref()
                .map(|p| {
                    (
                        p.start.clone().unwrap_or_default(),
                        p.end.clone().unwrap_or_default(),
                    )
                })
                .unwrap_or_default();
            w.write_record([
                &*f.directive,
                &*f.rule,
                &*f.rule_version,
                &*f.subject_kind,
                &f.subject_id,
                f.subject_name.as_deref().unwrap_or(""),
                f.status.name(),
                severity_name(f.severity),
                &f.message,
                &evidence,
                &*f.source.document,
                &*f.source.clause,
                &*f.source.text,
                &ps,
                &pe,
                &*f.as_of,
                &*f.policy_set,
                &*f.policy_version,
                &*f.policy_hash,
            ])
            .map_err(std::io::Error::other)?;
            w.into_inner()
                .map_err(|e| std::io::Error::other(e.to_string()))
        }
    }
}

/// Counts by directive × status, in directive order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub counts: BTreeMap<String, BTreeMap<Status, u64>>,
    /// Subjects failing each directive (a subject fails when any of its findings fails).
    pub failing_subjects: BTreeMap<String, u64>,
    pub total: u64,
    #[serde(skip)]
    failed: std::collections::HashSet<(Arc<str>, Arc<str>, String)>,
}

impl Summary {
    pub fn add(&mut self, f: &Finding) {
        *self
            .counts
            .entry(f.directive.to_string())
            .or_default()
            .entry(f.status)
            .or_default() += 1;
        self.total += 1;
        if f.status == Status::Fail
            && self.failed.insert((
                f.directive.clone(),
                f.subject_kind.clone(),
                f.subject_id.clone(),
            ))
        {
            *self
                .failing_subjects
                .entry(f.directive.to_string())
                .or_default() += 1;
        }
    }

    pub fn count(&self, status: Status) -> u64 {
        self.counts.values().filter_map(|m| m.get(&status)).sum()
    }
}

/// The terminal summary: rows per table, then findings by directive × status.
pub fn render_summary(
    summary: &Summary,
    stats: &[TableStats],
    as_of: &str,
    policy: &str,
) -> String {
    let mut s = String::new();
    s.push_str(&format!("policy set {policy}, as of {as_of}\n\n"));
    s.push_str(&format!(
        "{:<20} {:<28} {:>9} {:>9} {:>9}\n",
        "table", "file", "read", "loaded", "rejected"
    ));
    for t in stats {
        s.push_str(&format!(
            "{:<20} {} {:>9} {:>9} {:>9}\n",
            t.table,
            pad(&truncate(&t.file, 28), 28),
            t.read,
            t.loaded,
            t.rejected
        ));
    }
    let (r, l, j) = stats.iter().fold((0, 0, 0), |(r, l, j), t| {
        (r + t.read, l + t.loaded, j + t.rejected)
    });
    s.push_str(&format!(
        "{:<20} {:<28} {:>9} {:>9} {:>9}\n\n",
        "total", "", r, l, j
    ));
    let cols = [
        Status::Pass,
        Status::Warn,
        Status::Fail,
        Status::NotApplicable,
        Status::Error,
        Status::Waived,
    ];
    s.push_str(&format!("{:<34}", "directive"));
    for c in cols {
        s.push_str(&format!(" {:>8}", short(c)));
    }
    s.push_str(&format!(" {:>16}\n", "failing subjects"));
    for (d, m) in &summary.counts {
        s.push_str(&format!("{:<34}", truncate(d, 34)));
        for c in cols {
            s.push_str(&format!(" {:>8}", m.get(&c).copied().unwrap_or(0)));
        }
        s.push_str(&format!(
            " {:>16}\n",
            summary.failing_subjects.get(d).copied().unwrap_or(0)
        ));
    }
    s.push_str(&format!("{:<34}", "total"));
    for c in cols {
        s.push_str(&format!(" {:>8}", summary.count(c)));
    }
    s.push_str(&format!(
        "\n{} findings (a subject fails a directive when any of its findings under it fails)\n",
        summary.total
    ));
    s
}

/// Pad to a display width (CJK characters are two columns wide).
fn pad(s: &str, width: usize) -> String {
    let w = unicode_width::UnicodeWidthStr::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

fn short(s: Status) -> &'static str {
    match s {
        Status::NotApplicable => "n/a",
        other => other.name(),
    }
}

fn truncate(s: &str, n: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    if unicode_width::UnicodeWidthStr::width(s) <= n {
        return s.to_string();
    }
    let mut t = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > n {
            break;
        }
        w += cw;
        t.push(c);
    }
    t.push('…');
    t
}
