//! Findings per the findings contract: one per (rule, subject), with status, Chinese message,
//! evidence and lineage, the source clause and the period; written as JSON, JSON Lines or
//! CSV in a deterministic order, plus the terminal summary.

use crate::data::TableStats;
use crate::policy::model::Severity;
use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

/// The verdict of one rule on one subject.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The subject complies (符合).
    Pass,
    /// The subject does not comply (不符合).
    Fail,
    /// A warning (提醒): not a failure, but something to look at.
    Warn,
    /// The rule does not apply to the subject (不适用).
    NotApplicable,
    /// The rule could not be evaluated for the subject (规则出错); the message says why.
    Error,
    /// A `fail` or `warn` turned aside by a waiver in force (已豁免).
    Waived,
}

impl Status {
    /// Every status, in declaration order (`status as usize` is the index).
    pub const ALL_IN_ORDER: [Status; 6] = [
        Status::Pass,
        Status::Fail,
        Status::Warn,
        Status::NotApplicable,
        Status::Error,
        Status::Waived,
    ];

    /// Every status, `pass`, `warn` and `fail` first.
    pub const ALL: [Status; 6] = [
        Status::Pass,
        Status::Warn,
        Status::Fail,
        Status::NotApplicable,
        Status::Error,
        Status::Waived,
    ];

    /// The status as the findings contract writes it (`pass`, `not_applicable`, …).
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
    /// Who issued the directive; `None` when the policy set does not say.
    #[serde(skip)]
    pub issuer: Option<Arc<str>>,
    /// Key of the directive's clause the rule enforces.
    pub clause: Arc<str>,
    /// The clause, quoted from the source.
    pub text: Arc<str>,
}

/// The dates a finding looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodRef {
    /// The period's name for people (its label).
    pub name: Arc<str>,
    /// First day, `YYYY-MM-DD`, for this subject; `None` when it could not be worked out
    /// (e.g. it comes from an aggregate the subject has no date for).
    pub start: Option<String>,
    /// Last day, `YYYY-MM-DD`, for this subject; `None` when it could not be worked out.
    pub end: Option<String>,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Key of the directive the rule belongs to (`service-hours-20`).
    pub directive: Arc<str>,
    /// The rule's id (`hours.yearly`).
    pub rule: Arc<str>,
    /// The version of the rule that was evaluated.
    pub rule_version: Arc<str>,
    /// Kind of subject (`member`, `organization`).
    pub subject_kind: Arc<str>,
    /// The subject's id.
    pub subject_id: String,
    /// The subject's name, from the `name` column of its table; `None` when there is no such
    /// column or the cell is empty.
    pub subject_name: Option<String>,
    /// The verdict.
    pub status: Status,
    /// How grave a failure of the rule is.
    pub severity: Severity,
    /// The verdict in Chinese, saying what would fix it where that can be computed.
    pub message: String,
    /// The values the decision used; `records` names the input rows behind aggregates.
    pub evidence: serde_json::Map<String, serde_json::Value>,
    /// The document and clause the rule enforces (shared by the rule's findings).
    pub source: Arc<SourceRef>,
    /// The period the rule looks at; `None` when the rule names none.
    pub period: Option<PeriodRef>,
    /// The evaluation date, `YYYY-MM-DD`.
    pub as_of: Arc<str>,
    /// Name of the policy set.
    pub policy_set: Arc<str>,
    /// Version of the policy set.
    pub policy_version: Arc<str>,
    /// SHA-256 of the policy set's files, hex.
    pub policy_hash: Arc<str>,
}

/// Output format of findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON array, a finding per element, indented.
    Json,
    /// JSON Lines: one compact JSON object per line.
    Jsonl,
    /// CSV with a header line; evidence as compact JSON in one field.
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
    /// A writer to `out` that has written what comes before the first finding (`[` for
    /// JSON, the header line for CSV).
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

    /// Encode and write one finding.
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

    /// Write `n` findings encoded one after another with [`encode_into`] or
    /// [`encode_with`], in pieces (for JSON, each finding begins with its `,` separator; the
    /// first finding of the array drops it).
    pub fn write_runs(&mut self, runs: &[&[u8]], n: u64) -> std::io::Result<()> {
        let mut first = self.format == Format::Json && self.count == 0;
        for run in runs.iter().filter(|r| !r.is_empty()) {
            if std::mem::take(&mut first) {
                self.out.write_all(run.strip_prefix(b",").unwrap_or(run))?;
            } else {
                self.out.write_all(run)?;
            }
        }
        self.count += n;
        Ok(())
    }

    /// Close the output (`]` for JSON), flush it and hand it back.
    pub fn finish(self) -> std::io::Result<W> {
        let mut out = self.out;
        if self.format == Format::Json {
            out.write_all(if self.count == 0 { b"]\n" } else { b"\n]\n" })?;
        }
        out.flush()?;
        Ok(out)
    }
}

/// The severity as the findings contract writes it (`critical`, `major`, `minor`).
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
    let mut out = Vec::with_capacity(1024);
    let mut scratch = Vec::new();
    encode_into(
        &mut out,
        &mut scratch,
        &f.parts(),
        &f.evidence,
        format,
        false,
    );
    Ok(out)
}

/// The fields of a finding, borrowed, for encoding without building a [`Finding`].
pub struct FindingParts<'a> {
    /// As [`Finding::directive`].
    pub directive: &'a str,
    /// As [`Finding::rule`].
    pub rule: &'a str,
    /// As [`Finding::rule_version`].
    pub rule_version: &'a str,
    /// As [`Finding::subject_kind`].
    pub subject_kind: &'a str,
    /// As [`Finding::subject_id`].
    pub subject_id: &'a str,
    /// As [`Finding::subject_name`].
    pub subject_name: Option<&'a str>,
    /// As [`Finding::status`].
    pub status: Status,
    /// As [`Finding::severity`].
    pub severity: Severity,
    /// As [`Finding::message`].
    pub message: &'a str,
    /// As [`Finding::source`].
    pub source: &'a SourceRef,
    /// Name, start, end.
    pub period: Option<(&'a str, Option<&'a str>, Option<&'a str>)>,
    /// As [`Finding::as_of`].
    pub as_of: &'a str,
    /// As [`Finding::policy_set`].
    pub policy_set: &'a str,
    /// As [`Finding::policy_version`].
    pub policy_version: &'a str,
    /// As [`Finding::policy_hash`].
    pub policy_hash: &'a str,
}

impl Finding {
    /// The finding's fields, borrowed (the evidence is passed apart).
    pub fn parts(&self) -> FindingParts<'_> {
        FindingParts {
            directive: &self.directive,
            rule: &self.rule,
            rule_version: &self.rule_version,
            subject_kind: &self.subject_kind,
            subject_id: &self.subject_id,
            subject_name: self.subject_name.as_deref(),
            status: self.status,
            severity: self.severity,
            message: &self.message,
            source: &self.source,
            period: self
                .period
                .as_ref()
                .map(|p| (&*p.name, p.start.as_deref(), p.end.as_deref())),
            as_of: &self.as_of,
            policy_set: &self.policy_set,
            policy_version: &self.policy_version,
            policy_hash: &self.policy_hash,
        }
    }
}

/// Something that writes itself as a JSON value with a serde_json [`Formatter`] (so the bytes
/// are exactly serde_json's).
pub trait WriteJson {
    /// Append the value to `out` as JSON written with `f`.
    fn write_json<F: Formatter>(&self, f: &mut F, out: &mut Vec<u8>);

    /// The same as `write_json` with serde_json's `CompactFormatter` (which an implementation
    /// may write faster).
    fn write_compact(&self, out: &mut Vec<u8>) {
        self.write_json(&mut CompactFormatter, out);
    }
}

impl WriteJson for serde_json::Map<String, serde_json::Value> {
    fn write_json<F: Formatter>(&self, f: &mut F, out: &mut Vec<u8>) {
        json::map(f, out, self);
    }
}

/// Append one finding to `out` as [`encode`] gives it; with `separator`, a JSON finding
/// starts with `,` (see [`FindingWriter::write_runs`]). `scratch` is reused between calls.
pub fn encode_into<E: WriteJson>(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    p: &FindingParts,
    evidence: &E,
    format: Format,
    separator: bool,
) {
    match format {
        Format::Jsonl => {
            write_finding(&mut CompactFormatter, out, p, evidence);
            out.push(b'\n');
        }
        Format::Json => {
            // An element of the array: indented by two spaces.
            if separator {
                out.extend_from_slice(b",\n");
            }
            out.extend_from_slice(b"  ");
            write_finding(&mut InArray::default(), out, p, evidence);
        }
        Format::Csv => {
            scratch.clear();
            evidence.write_compact(scratch);
            let (ps, pe) = p
                .period
                .map(|(_, s, e)| (s.unwrap_or(""), e.unwrap_or("")))
                .unwrap_or_default();
            let fields: [&[u8]; 19] = [
                p.directive.as_bytes(),
                p.rule.as_bytes(),
                p.rule_version.as_bytes(),
                p.subject_kind.as_bytes(),
                p.subject_id.as_bytes(),
                p.subject_name.unwrap_or("").as_bytes(),
                p.status.name().as_bytes(),
                severity_name(p.severity).as_bytes(),
                p.message.as_bytes(),
                scratch,
                p.source.document.as_bytes(),
                p.source.clause.as_bytes(),
                p.source.text.as_bytes(),
                ps.as_bytes(),
                pe.as_bytes(),
                p.as_of.as_bytes(),
                p.policy_set.as_bytes(),
                p.policy_version.as_bytes(),
                p.policy_hash.as_bytes(),
            ];
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                csv_field(out, field);
            }
            out.push(b'\n');
        }
    }
}

/// The bytes that are the same for every finding of one rule, encoded once for a format;
/// [`encode_with`] fills in the rest.
pub enum Template {
    /// For JSON Lines.
    Jsonl(LineTemplate),
    /// For CSV.
    Csv(CsvTemplate),
}

impl Template {
    /// From the fields of `p` that are the same for every finding of its rule (the subject,
    /// status, message and period dates of `p` are not used). `None` for pretty JSON.
    pub fn new(p: &FindingParts, format: Format) -> Option<Template> {
        match format {
            Format::Jsonl => Some(Template::Jsonl(LineTemplate::new(p))),
            Format::Csv => Some(Template::Csv(CsvTemplate::new(p))),
            Format::Json => None,
        }
    }
}

/// Append one finding of the template's rule, as [`encode_into`] would in the template's
/// format.
pub fn encode_with<E: WriteJson>(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    t: &Template,
    p: &FindingParts,
    ev: &E,
) {
    match t {
        Template::Jsonl(t) => t.encode(out, p, ev),
        Template::Csv(t) => t.encode(out, scratch, p, ev),
    }
}

/// A JSON line's fixed parts.
pub struct LineTemplate {
    /// `{"directive":…,"subject_id":`
    head: Vec<u8>,
    /// By status: `,"status":"…","severity":"…","message":`
    status: [Vec<u8>; 6],
    /// `,"source":{…},"period":`
    source: Vec<u8>,
    /// `{"name":"…","start":`
    period_head: Vec<u8>,
    /// `,"as_of":…}` and the line end.
    tail: Vec<u8>,
}

impl LineTemplate {
    fn new(p: &FindingParts) -> LineTemplate {
        use json::{key, str};
        let f = &mut CompactFormatter;
        let mut head = Vec::new();
        let _ = f.begin_object(&mut head);
        for (i, (k, v)) in [
            ("directive", p.directive),
            ("rule", p.rule),
            ("rule_version", p.rule_version),
            ("subject_kind", p.subject_kind),
        ]
        .into_iter()
        .enumerate()
        {
            key(f, &mut head, k, i == 0);
            str(f, &mut head, v);
        }
        key(f, &mut head, "subject_id", false);
        let status = Status::ALL_IN_ORDER.map(|st| {
            let mut o = Vec::new();
            key(f, &mut o, "status", false);
            str(f, &mut o, st.name());
            key(f, &mut o, "severity", false);
            str(f, &mut o, severity_name(p.severity));
            key(f, &mut o, "message", false);
            o
        });
        let mut source = Vec::new();
        key(f, &mut source, "source", false);
        let _ = f.begin_object(&mut source);
        for (i, (k, v)) in [
            ("document", &*p.source.document),
            ("clause", &*p.source.clause),
            ("text", &*p.source.text),
        ]
        .into_iter()
        .enumerate()
        {
            key(f, &mut source, k, i == 0);
            str(f, &mut source, v);
        }
        let _ = f.end_object(&mut source);
        key(f, &mut source, "period", false);
        let mut period_head = Vec::new();
        let _ = f.begin_object(&mut period_head);
        key(f, &mut period_head, "name", true);
        str(f, &mut period_head, p.period.map_or("", |x| x.0));
        key(f, &mut period_head, "start", false);
        let mut tail = Vec::new();
        for (k, v) in [
            ("as_of", p.as_of),
            ("policy_set", p.policy_set),
            ("policy_version", p.policy_version),
            ("policy_hash", p.policy_hash),
        ] {
            key(f, &mut tail, k, false);
            str(f, &mut tail, v);
        }
        let _ = f.end_object(&mut tail);
        tail.push(b'\n');
        LineTemplate {
            head,
            status,
            source,
            period_head,
            tail,
        }
    }

    fn encode<E: WriteJson>(&self, out: &mut Vec<u8>, p: &FindingParts, ev: &E) {
        use json::str;
        let f = &mut CompactFormatter;
        out.extend_from_slice(&self.head);
        str(f, out, p.subject_id);
        out.extend_from_slice(b",\"subject_name\":");
        match p.subject_name {
            Some(n) => str(f, out, n),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(&self.status[p.status as usize]);
        str(f, out, p.message);
        out.extend_from_slice(b",\"evidence\":");
        ev.write_compact(out);
        out.extend_from_slice(&self.source);
        match p.period {
            None => out.extend_from_slice(b"null"),
            Some((_, start, end)) => {
                out.extend_from_slice(&self.period_head);
                match start {
                    Some(s) => str(f, out, s),
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"end\":");
                match end {
                    Some(s) => str(f, out, s),
                    None => out.extend_from_slice(b"null"),
                }
                out.push(b'}');
            }
        }
        out.extend_from_slice(&self.tail);
    }
}

/// A CSV record's fixed fields.
pub struct CsvTemplate {
    /// directive … subject_kind, each with its `,`.
    head: Vec<u8>,
    /// By status: `,status,severity,` (after the subject name).
    status: [Vec<u8>; 6],
    /// `,document,clause,text,` (after the evidence).
    source: Vec<u8>,
    /// `,as_of,…,policy_hash` and the record end.
    tail: Vec<u8>,
}

impl CsvTemplate {
    fn new(p: &FindingParts) -> CsvTemplate {
        let mut head = Vec::new();
        for v in [p.directive, p.rule, p.rule_version, p.subject_kind] {
            csv_field(&mut head, v.as_bytes());
            head.push(b',');
        }
        let status = Status::ALL_IN_ORDER.map(|st| {
            let mut o = vec![b','];
            csv_field(&mut o, st.name().as_bytes());
            o.push(b',');
            csv_field(&mut o, severity_name(p.severity).as_bytes());
            o.push(b',');
            o
        });
        let mut source = Vec::new();
        for v in [&*p.source.document, &*p.source.clause, &*p.source.text] {
            source.push(b',');
            csv_field(&mut source, v.as_bytes());
        }
        source.push(b',');
        let mut tail = Vec::new();
        for v in [p.as_of, p.policy_set, p.policy_version, p.policy_hash] {
            tail.push(b',');
            csv_field(&mut tail, v.as_bytes());
        }
        tail.push(b'\n');
        CsvTemplate {
            head,
            status,
            source,
            tail,
        }
    }

    fn encode<E: WriteJson>(
        &self,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        p: &FindingParts,
        ev: &E,
    ) {
        out.extend_from_slice(&self.head);
        csv_field(out, p.subject_id.as_bytes());
        out.push(b',');
        csv_field(out, p.subject_name.unwrap_or("").as_bytes());
        out.extend_from_slice(&self.status[p.status as usize]);
        csv_field(out, p.message.as_bytes());
        out.push(b',');
        scratch.clear();
        ev.write_compact(scratch);
        csv_field(out, scratch);
        out.extend_from_slice(&self.source);
        let (ps, pe) = p
            .period
            .map(|(_, s, e)| (s.unwrap_or(""), e.unwrap_or("")))
            .unwrap_or_default();
        csv_field(out, ps.as_bytes());
        out.push(b',');
        csv_field(out, pe.as_bytes());
        out.extend_from_slice(&self.tail);
    }
}

/// serde_json's `PrettyFormatter` with a two-space indent, for a value that is itself one
/// level deep (an element of the findings array): every line it breaks is indented two spaces
/// more, as if the pretty output were indented afterwards.
struct InArray {
    level: usize,
    has_value: bool,
}

impl Default for InArray {
    fn default() -> Self {
        InArray {
            level: 1,
            has_value: false,
        }
    }
}

impl InArray {
    fn newline(&self, w: &mut (impl ?Sized + Write), first: bool) -> std::io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        for _ in 0..self.level {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn close(&mut self, w: &mut (impl ?Sized + Write), bracket: &[u8]) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            for _ in 0..self.level {
                w.write_all(b"  ")?;
            }
        }
        w.write_all(bracket)
    }
}

impl Formatter for InArray {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b"[")
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.newline(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(b"{")
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.newline(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// A CSV field as the `csv` crate writes it by default: quoted (with `"` doubled) when it
/// holds a delimiter, a quote or a line break.
fn csv_field(out: &mut Vec<u8>, field: &[u8]) {
    if !field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// The finding object, field by field as `#[derive(Serialize)]` on [`Finding`] writes it.
fn write_finding<F: Formatter, E: WriteJson>(
    f: &mut F,
    o: &mut Vec<u8>,
    p: &FindingParts,
    evidence: &E,
) {
    use json::{key, str};
    let _ = f.begin_object(o);
    let text_fields = [
        ("directive", p.directive),
        ("rule", p.rule),
        ("rule_version", p.rule_version),
        ("subject_kind", p.subject_kind),
        ("subject_id", p.subject_id),
    ];
    for (i, (k, v)) in text_fields.into_iter().enumerate() {
        key(f, o, k, i == 0);
        str(f, o, v);
        let _ = f.end_object_value(o);
    }
    key(f, o, "subject_name", false);
    match p.subject_name {
        Some(n) => str(f, o, n),
        None => {
            let _ = f.write_null(o);
        }
    }
    let _ = f.end_object_value(o);
    for (k, v) in [
        ("status", p.status.name()),
        ("severity", severity_name(p.severity)),
        ("message", p.message),
    ] {
        key(f, o, k, false);
        str(f, o, v);
        let _ = f.end_object_value(o);
    }
    key(f, o, "evidence", false);
    evidence.write_json(f, o);
    let _ = f.end_object_value(o);
    key(f, o, "source", false);
    let _ = f.begin_object(o);
    for (i, (k, v)) in [
        ("document", &*p.source.document),
        ("clause", &*p.source.clause),
        ("text", &*p.source.text),
    ]
    .into_iter()
    .enumerate()
    {
        key(f, o, k, i == 0);
        str(f, o, v);
        let _ = f.end_object_value(o);
    }
    let _ = f.end_object(o);
    let _ = f.end_object_value(o);
    key(f, o, "period", false);
    match p.period {
        None => {
            let _ = f.write_null(o);
        }
        Some((name, start, end)) => {
            let _ = f.begin_object(o);
            key(f, o, "name", true);
            str(f, o, name);
            let _ = f.end_object_value(o);
            for (k, v) in [("start", start), ("end", end)] {
                key(f, o, k, false);
                match v {
                    Some(v) => str(f, o, v),
                    None => {
                        let _ = f.write_null(o);
                    }
                }
                let _ = f.end_object_value(o);
            }
            let _ = f.end_object(o);
        }
    }
    let _ = f.end_object_value(o);
    for (k, v) in [
        ("as_of", p.as_of),
        ("policy_set", p.policy_set),
        ("policy_version", p.policy_version),
        ("policy_hash", p.policy_hash),
    ] {
        key(f, o, k, false);
        str(f, o, v);
        let _ = f.end_object_value(o);
    }
    let _ = f.end_object(o);
}

/// JSON pieces written with a serde_json [`Formatter`] into a byte buffer (writing to a `Vec`
/// cannot fail), byte for byte as serde_json writes them.
pub mod json {
    use super::{CharEscape, Formatter};

    /// A string, escaped as serde_json escapes it.
    pub fn str<F: Formatter>(f: &mut F, o: &mut Vec<u8>, s: &str) {
        let _ = f.begin_string(o);
        let bytes = s.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            i += plain_prefix(&bytes[i..]);
            let Some(&b) = bytes.get(i) else {
                break;
            };
            let esc = match b {
                b'"' => CharEscape::Quote,
                b'\\' => CharEscape::ReverseSolidus,
                0x08 => CharEscape::Backspace,
                0x0c => CharEscape::FormFeed,
                b'\n' => CharEscape::LineFeed,
                b'\r' => CharEscape::CarriageReturn,
                b'\t' => CharEscape::Tab,
                _ => CharEscape::AsciiControl(b),
            };
            if start < i {
                let _ = f.write_string_fragment(o, &s[start..i]);
            }
            let _ = f.write_char_escape(o, esc);
            i += 1;
            start = i;
        }
        if start < bytes.len() {
            let _ = f.write_string_fragment(o, &s[start..]);
        }
        let _ = f.end_string(o);
    }

    /// The length of the longest prefix of `b` that needs no escaping (no control character,
    /// `"` or `\\`), eight bytes at a time.
    fn plain_prefix(b: &[u8]) -> usize {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let mut i = 0;
        while let Some(chunk) = b.get(i..i + 8) {
            let x = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            let q = x ^ (ONES * b'"' as u64);
            let s = x ^ (ONES * b'\\' as u64);
            // A byte below 0x20, or equal to `"` or `\\`, somewhere in these eight.
            let special =
                (x.wrapping_sub(ONES * 0x20) | q.wrapping_sub(ONES) | s.wrapping_sub(ONES))
                    & !x
                    & HIGH;
            if special != 0 {
                break;
            }
            i += 8;
        }
        while let Some(&c) = b.get(i) {
            if c < 0x20 || c == b'"' || c == b'\\' {
                break;
            }
            i += 1;
        }
        i
    }

    /// An object key (with the separator before it) and the `:` after it.
    pub fn key<F: Formatter>(f: &mut F, o: &mut Vec<u8>, k: &str, first: bool) {
        let _ = f.begin_object_key(o, first);
        str(f, o, k);
        let _ = f.end_object_key(o);
        let _ = f.begin_object_value(o);
    }

    /// A number as serde_json writes a finite `f64` (`null` otherwise).
    pub fn f64<F: Formatter>(f: &mut F, o: &mut Vec<u8>, x: f64) {
        let _ = if x.is_finite() {
            f.write_f64(o, x)
        } else {
            f.write_null(o)
        };
    }

    /// An object, its entries in the map's order.
    pub fn map<F: Formatter>(
        f: &mut F,
        o: &mut Vec<u8>,
        m: &serde_json::Map<String, serde_json::Value>,
    ) {
        let _ = f.begin_object(o);
        for (i, (k, v)) in m.iter().enumerate() {
            key(f, o, k, i == 0);
            value(f, o, v);
            let _ = f.end_object_value(o);
        }
        let _ = f.end_object(o);
    }

    /// Any JSON value (a number that is not finite as `null`).
    pub fn value<F: Formatter>(f: &mut F, o: &mut Vec<u8>, v: &serde_json::Value) {
        use serde_json::Value as J;
        match v {
            J::Null => {
                let _ = f.write_null(o);
            }
            J::Bool(b) => {
                let _ = f.write_bool(o, *b);
            }
            J::Number(n) => {
                let _ = if let Some(u) = n.as_u64() {
                    f.write_u64(o, u)
                } else if let Some(i) = n.as_i64() {
                    f.write_i64(o, i)
                } else {
                    match n.as_f64() {
                        Some(x) if x.is_finite() => f.write_f64(o, x),
                        _ => f.write_null(o),
                    }
                };
            }
            J::String(s) => str(f, o, s),
            J::Array(a) => {
                let _ = f.begin_array(o);
                for (i, x) in a.iter().enumerate() {
                    let _ = f.begin_array_value(o, i == 0);
                    value(f, o, x);
                    let _ = f.end_array_value(o);
                }
                let _ = f.end_array(o);
            }
            J::Object(m) => map(f, o, m),
        }
    }
}

/// Counts by directive × status, in directive order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Per directive key, the number of findings per status (statuses with none left out).
    pub counts: BTreeMap<String, BTreeMap<Status, u64>>,
    /// Subjects failing each directive (a subject fails when any of its findings fails).
    pub failing_subjects: BTreeMap<String, u64>,
    /// Findings counted, all directives together.
    pub total: u64,
    #[serde(skip)]
    failed: std::collections::HashSet<(Arc<str>, Arc<str>, String)>,
}

impl Summary {
    /// Count one finding.
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

    /// Add the findings of one rule counted elsewhere: `counts` by status (in the order of
    /// the [`Status`] variants) and the subjects that fail `directive` for the first time
    /// (the caller keeps track of them; do not mix with [`Summary::add`] for a directive).
    pub fn add_counts(&mut self, directive: &str, counts: &[u64; 6], newly_failing: u64) {
        let n: u64 = counts.iter().sum();
        if n > 0 {
            let m = self.counts.entry(directive.to_string()).or_default();
            for (i, &c) in counts.iter().enumerate() {
                if c > 0 {
                    *m.entry(Status::ALL_IN_ORDER[i]).or_default() += c;
                }
            }
            self.total += n;
        }
        if newly_failing > 0 {
            *self
                .failing_subjects
                .entry(directive.to_string())
                .or_default() += newly_failing;
        }
    }

    /// Findings with `status`, all directives together.
    pub fn count(&self, status: Status) -> u64 {
        self.counts.values().filter_map(|m| m.get(&status)).sum()
    }
}

/// The terminal summary: rows per table, then findings by directive × status.
///
/// `notes` are printed last, a line each (directives not in force, what grades cover).
pub fn render_summary(
    summary: &Summary,
    stats: &[TableStats],
    as_of: &str,
    policy: &str,
    notes: &[String],
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
    for n in notes {
        s.push_str(n);
        s.push('\n');
    }
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
