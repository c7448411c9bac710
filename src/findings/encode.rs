//! How findings are written: everything that turns findings into the bytes of the findings
//! contract, in JSON (one indented array), JSON Lines or CSV, byte for byte as serde_json and
//! the `csv` crate would write them, but faster (this is the hot path for millions of
//! findings).
//!
//! - [`FindingWriter`] writes the output: what comes before the first finding, the findings
//!   (encoded here, or already encoded in parallel), and the end.
//! - [`encode`] encodes a [`Finding`]; [`encode_into`] encodes one from borrowed
//!   [`FindingParts`] and any evidence that implements [`WriteJson`], without building a
//!   `Finding`; [`encode_with`] does the same from a [`Template`], the bytes every finding of
//!   one rule shares, encoded once; [`encode_in_stream`] picks one of the two for the
//!   evaluator's stream.
//! - Evidence: a `serde_json::Map` writes itself ([`WriteJson`]); the evaluator writes its
//!   values straight to bytes through [`LaidOut`]: an [`EvidenceLayout`] per rule (the
//!   entries' names and the aggregates listed under `records`, their keys encoded once) and
//!   the values of one finding ([`EvidenceValues`], implemented in `eval::rules`), each value
//!   an [`EvidenceValue`] written as [`crate::script::to_json`] would give it, or any JSON
//!   value.
//! - [`json`]: strings, keys, numbers, objects and values written with a serde_json
//!   [`Formatter`] (compact for JSON Lines and CSV; for the JSON array, `InArray`, serde_json's
//!   pretty form indented one level); `csv_field` quotes a CSV field as the `csv` crate does.

use super::{Finding, Format, SourceRef, Status, severity_name};
use crate::dates::{DateText, DateTimeText};
use crate::policy::model::Severity;
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};
use std::io::Write;

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

/// Append one finding of a rule to a stream of its findings: from the rule's `template` where
/// there is one (JSON Lines, CSV), else as [`encode_into`] gives it with the `,` separator
/// (the JSON array; see [`FindingWriter::write_runs`]).
pub fn encode_in_stream<E: WriteJson>(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    p: &FindingParts,
    ev: &E,
    (format, template): (Format, Option<&Template>),
) {
    match template {
        Some(t) => encode_with(out, scratch, t, p, ev),
        None => encode_into(out, scratch, p, ev, format, true),
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

/// A value of evidence as the evaluator holds it without Rhai, borrowed, written as
/// [`crate::script::to_json`] gives the same value held by Rhai.
#[derive(Debug, Clone, Copy)]
pub enum EvidenceValue<'a> {
    /// No value: `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number, rounded to six decimal places (`null` when it is not finite).
    Float(f64),
    /// A string.
    Str(&'a str),
    /// A date, as the string `YYYY-MM-DD`.
    Date(NaiveDate),
    /// A date-time, as the string `YYYY-MM-DD HH:MM:SS`.
    DateTime(NaiveDateTime),
    /// Dates, as an array of `YYYY-MM-DD` strings.
    Dates(&'a [NaiveDate]),
}

/// A number of evidence as [`crate::script::to_json`] writes it: rounded to six decimal
/// places.
#[inline]
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

impl EvidenceValue<'_> {
    /// Append the value to `o` written with `f`.
    pub fn write_json<F: Formatter>(self, f: &mut F, o: &mut Vec<u8>) {
        match self {
            EvidenceValue::Null => {
                let _ = f.write_null(o);
            }
            EvidenceValue::Bool(b) => {
                let _ = f.write_bool(o, b);
            }
            EvidenceValue::Int(i) => {
                let _ = f.write_i64(o, i);
            }
            EvidenceValue::Float(x) => json::f64(f, o, round6(x)),
            EvidenceValue::Str(s) => json::str(f, o, s),
            EvidenceValue::Date(d) => json::str(f, o, DateText::of(d).as_str()),
            EvidenceValue::DateTime(d) => json::str(f, o, DateTimeText::of(d).as_str()),
            EvidenceValue::Dates(days) => {
                let _ = f.begin_array(o);
                for (i, d) in days.iter().enumerate() {
                    let _ = f.begin_array_value(o, i == 0);
                    json::str(f, o, DateText::of(*d).as_str());
                    let _ = f.end_array_value(o);
                }
                let _ = f.end_array(o);
            }
        }
    }

    /// The value as a JSON value (which serde_json writes as [`EvidenceValue::write_json`]
    /// does).
    pub fn to_json(self) -> serde_json::Value {
        use crate::dates::{date_text, datetime_text};
        use serde_json::Value as J;
        match self {
            EvidenceValue::Null => J::Null,
            EvidenceValue::Bool(b) => J::Bool(b),
            EvidenceValue::Int(i) => J::from(i),
            EvidenceValue::Float(x) => serde_json::Number::from_f64(round6(x))
                .map(J::Number)
                .unwrap_or(J::Null),
            EvidenceValue::Str(s) => J::String(s.to_string()),
            EvidenceValue::Date(d) => J::String(date_text(d)),
            EvidenceValue::DateTime(d) => J::String(datetime_text(d)),
            EvidenceValue::Dates(d) => {
                J::Array(d.iter().map(|d| J::String(date_text(*d))).collect())
            }
        }
    }
}

/// An aggregate whose input rows a rule's evidence lists under `records`: the evidence
/// entry's name, and the table and file the rows come from.
#[derive(Debug, Clone, Copy)]
pub struct RecordHead<'a> {
    /// The evidence entry (the aggregate's name).
    pub name: &'a str,
    /// The table the aggregate reads.
    pub table: &'a str,
    /// The table's file.
    pub file: &'a str,
}

/// The shape of one rule's evidence object: its entries' names in order, then, under
/// `records`, the input rows behind the aggregates among them; with the compact JSON of the
/// keys encoded once for all the rule's findings.
pub struct EvidenceLayout<'a> {
    names: &'a [String],
    records: Vec<RecordHead<'a>>,
    /// No name repeats and none is `records`.
    plain: bool,
    /// Compact JSON of each evidence key with its separator: `"k":`, then `,"k":`.
    keys: Vec<Vec<u8>>,
    /// Compact JSON before the records: `"records":{` (with its separator).
    rec_open: Vec<u8>,
    /// Compact JSON before each record's line numbers: `"name":{"table":…,"lines":[`.
    rec_keys: Vec<Vec<u8>>,
}

impl<'a> EvidenceLayout<'a> {
    /// The layout of evidence entries `names` (values to come from [`EvidenceValues`]) and
    /// of `records`, in that order.
    pub fn new(names: &'a [String], records: Vec<RecordHead<'a>>) -> EvidenceLayout<'a> {
        let mut sorted: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let plain = sorted.len() == names.len() && !sorted.contains(&"records");
        let f = &mut CompactFormatter;
        let keys = names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let mut o = Vec::new();
                json::key(f, &mut o, name, j == 0);
                o
            })
            .collect();
        let mut rec_open = Vec::new();
        json::key(f, &mut rec_open, "records", names.is_empty());
        let _ = f.begin_object(&mut rec_open);
        let rec_keys = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut o = Vec::new();
                json::key(f, &mut o, r.name, i == 0);
                let _ = f.begin_object(&mut o);
                json::key(f, &mut o, "table", true);
                json::str(f, &mut o, r.table);
                json::key(f, &mut o, "file", false);
                json::str(f, &mut o, r.file);
                json::key(f, &mut o, "lines", false);
                let _ = f.begin_array(&mut o);
                o
            })
            .collect();
        EvidenceLayout {
            names,
            records,
            plain,
            keys,
            rec_open,
            rec_keys,
        }
    }

    /// The object can be written straight from the values ([`LaidOut`]): no name repeats
    /// and none is `records` (otherwise the evidence is built as a `serde_json::Map`, where a
    /// later entry replaces an earlier one of the same name).
    pub fn is_plain(&self) -> bool {
        self.plain
    }

    /// The `records` entry of the evidence: per record, its table, its file and the line
    /// numbers `lines` gives for it (by index in the layout's records); `None` when the
    /// evidence names no aggregate with input rows.
    pub fn records_json<I: Iterator<Item = u32>>(
        &self,
        lines: impl Fn(usize) -> I,
    ) -> Option<serde_json::Value> {
        if self.records.is_empty() {
            return None;
        }
        let mut out = serde_json::Map::new();
        for (i, r) in self.records.iter().enumerate() {
            let lines: Vec<serde_json::Value> = lines(i).map(serde_json::Value::from).collect();
            let mut e = serde_json::Map::new();
            e.insert("table".into(), r.table.into());
            e.insert("file".into(), r.file.into());
            e.insert("lines".into(), serde_json::Value::Array(lines));
            out.insert(r.name.to_string(), serde_json::Value::Object(e));
        }
        Some(serde_json::Value::Object(out))
    }
}

/// The values of one finding's evidence, as the evaluator holds them (implemented in
/// `eval::rules`), to be written in an [`EvidenceLayout`] by [`LaidOut`].
pub trait EvidenceValues {
    /// Append the value of the layout's entry `j` to `o`, written with `f` (`null` when the
    /// entry has no value).
    fn write_value<F: Formatter>(&self, j: usize, f: &mut F, o: &mut Vec<u8>);

    /// The line numbers of the input rows behind the layout's record `r`.
    fn record_lines(&self, r: usize) -> impl Iterator<Item = u32>;
}

/// One finding's evidence written straight from the evaluator's values, without building a
/// `serde_json::Map`: the same bytes as the map would give (for a layout that
/// [`EvidenceLayout::is_plain`]).
pub struct LaidOut<'l, 'a, E> {
    /// The rule's layout.
    pub layout: &'l EvidenceLayout<'a>,
    /// The finding's values.
    pub values: E,
}

impl<E: EvidenceValues> WriteJson for LaidOut<'_, '_, E> {
    fn write_compact(&self, o: &mut Vec<u8>) {
        // As `write_json` with `CompactFormatter`, with the keys encoded beforehand.
        let l = self.layout;
        let f = &mut CompactFormatter;
        o.push(b'{');
        for (j, key) in l.keys.iter().enumerate() {
            o.extend_from_slice(key);
            self.values.write_value(j, f, o);
        }
        if !l.records.is_empty() {
            o.extend_from_slice(&l.rec_open);
            for (r, key) in l.rec_keys.iter().enumerate() {
                o.extend_from_slice(key);
                for (k, line) in self.values.record_lines(r).enumerate() {
                    if k > 0 {
                        o.push(b',');
                    }
                    let _ = f.write_u32(o, line);
                }
                o.extend_from_slice(b"]}");
            }
            o.push(b'}');
        }
        o.push(b'}');
    }

    fn write_json<F: Formatter>(&self, f: &mut F, o: &mut Vec<u8>) {
        let l = self.layout;
        let _ = f.begin_object(o);
        let mut first = true;
        for (j, name) in l.names.iter().enumerate() {
            json::key(f, o, name, first);
            first = false;
            self.values.write_value(j, f, o);
            let _ = f.end_object_value(o);
        }
        if !l.records.is_empty() {
            json::key(f, o, "records", first);
            let _ = f.begin_object(o);
            for (i, r) in l.records.iter().enumerate() {
                json::key(f, o, r.name, i == 0);
                let _ = f.begin_object(o);
                json::key(f, o, "table", true);
                json::str(f, o, r.table);
                let _ = f.end_object_value(o);
                json::key(f, o, "file", false);
                json::str(f, o, r.file);
                let _ = f.end_object_value(o);
                json::key(f, o, "lines", false);
                let _ = f.begin_array(o);
                for (k, line) in self.values.record_lines(i).enumerate() {
                    let _ = f.begin_array_value(o, k == 0);
                    let _ = f.write_u32(o, line);
                    let _ = f.end_array_value(o);
                }
                let _ = f.end_array(o);
                let _ = f.end_object_value(o);
                let _ = f.end_object(o);
                let _ = f.end_object_value(o);
            }
            let _ = f.end_object(o);
            let _ = f.end_object_value(o);
        }
        let _ = f.end_object(o);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Evidence values held in vectors (`None`: the entry has no value).
    struct Held<'a>(Vec<Option<EvidenceValue<'a>>>, Vec<Vec<u32>>);

    impl EvidenceValues for Held<'_> {
        fn write_value<F: Formatter>(&self, j: usize, f: &mut F, o: &mut Vec<u8>) {
            match self.0[j] {
                Some(v) => v.write_json(f, o),
                None => {
                    let _ = f.write_null(o);
                }
            }
        }

        fn record_lines(&self, r: usize) -> impl Iterator<Item = u32> {
            self.1[r].iter().copied()
        }
    }

    #[test]
    fn laid_out_evidence_is_what_serde_json_writes_of_the_map() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let days = [day(2020, 1, 2), day(12345, 6, 7), day(0, 1, 1)];
        let at = day(2020, 2, 29).and_hms_opt(23, 5, 9).unwrap();
        let values = vec![
            Some(EvidenceValue::Null),
            Some(EvidenceValue::Bool(true)),
            Some(EvidenceValue::Int(i64::MIN)),
            Some(EvidenceValue::Float(1.234_567_89)),
            Some(EvidenceValue::Float(f64::NAN)),
            Some(EvidenceValue::Float(-1e300)),
            Some(EvidenceValue::Str("引\"号\\\n\u{1}\u{7f}end")),
            Some(EvidenceValue::Date(days[1])),
            Some(EvidenceValue::DateTime(at)),
            Some(EvidenceValue::Dates(&days)),
            Some(EvidenceValue::Dates(&[])),
            None,
        ];
        let names: Vec<String> = (0..values.len()).map(|i| format!("名{i}\t")).collect();
        let heads = [
            RecordHead {
                name: "名1\t",
                table: "service_records",
                file: "service,records.csv",
            },
            RecordHead {
                name: "hours",
                table: "t",
                file: "t.xlsx",
            },
        ];
        for (n, records) in [(names.len(), 2), (0, 2), (names.len(), 0), (0, 0), (1, 1)] {
            let layout = EvidenceLayout::new(&names[..n], heads[..records].to_vec());
            assert!(layout.is_plain());
            let held = Held(values[..n].to_vec(), vec![vec![3, 5, 8], vec![]]);
            let mut map = serde_json::Map::new();
            for (name, v) in names[..n].iter().zip(&held.0) {
                let v = v.map_or(serde_json::Value::Null, EvidenceValue::to_json);
                map.insert(name.clone(), v);
            }
            if let Some(r) = layout.records_json(|r| held.1[r].iter().copied()) {
                map.insert("records".into(), r);
            }
            let ev = LaidOut {
                layout: &layout,
                values: held,
            };
            let mut compact = Vec::new();
            ev.write_compact(&mut compact);
            let expected = serde_json::to_vec(&map).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&compact),
                String::from_utf8_lossy(&expected)
            );
            let mut general = Vec::new();
            ev.write_json(&mut CompactFormatter, &mut general);
            assert_eq!(general, expected);
            let mut pretty = Vec::new();
            ev.write_json(&mut serde_json::ser::PrettyFormatter::new(), &mut pretty);
            assert_eq!(pretty, serde_json::to_vec_pretty(&map).unwrap());
        }
        let repeated = ["a".to_string(), "a".to_string()];
        assert!(!EvidenceLayout::new(&repeated, Vec::new()).is_plain());
        assert!(!EvidenceLayout::new(&["records".to_string()], Vec::new()).is_plain());
    }
}
