//! Policy loading: reads a policy folder (`policy.toml`, `directives/*.toml`,
//! `helpers/*.rhai`), checks it, and compiles every Rhai expression once.
//!
//! The result is a [`PolicySet`]: the data [`Schema`], dated parameters, declared aggregates
//! and periods, directives with their quoted clauses, and rules with compiled expressions.
//! Problems come back as [`Diag`]nostics with file, line and column.

pub mod codes;
pub mod model;
pub mod schema;
mod validate;

use crate::diag::{Diag, FileId, Level, Loc, Sources};
use crate::script::{self, Limits};
use chrono::{NaiveDate, NaiveTime};
use indexmap::IndexMap;
use model::{AggOp, Basis, CaseStatus, ColumnType, Severity};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub use validate::{BUILTIN_NAMES, enum_words};

/// A loaded, checked and compiled policy set.
pub struct PolicySet {
    pub root: PathBuf,
    pub name: String,
    pub title: String,
    pub version: String,
    pub source: Option<String>,
    /// SHA-256 of every policy file (path and bytes), hex.
    pub hash: String,
    pub sources: Sources,
    pub subjects: IndexMap<String, SubjectKind>,
    pub schema: Schema,
    pub params: IndexMap<String, Param>,
    pub aggregates: IndexMap<String, Aggregate>,
    pub periods: IndexMap<String, Period>,
    pub directives: Vec<Directive>,
    pub rules: Vec<Rule>,
    /// Grading rules from `assessment.toml`, if present.
    pub assessment: Option<Assessment>,
    /// The period whose days decide which directives are in force in a run (`run_period`);
    /// without it, the directives in force on `--as-of`.
    pub run_period: Option<String>,
    /// The working calendar (`[calendar]`; without it Monday to Friday are working days).
    pub calendar: std::sync::Arc<crate::calendar::Calendar>,
    /// Working hours (`HH:MM` text or `$param.NAME`), from `[calendar]`.
    pub work_hours: Option<(ValueRef, ValueRef)>,
    /// Helper functions from `helpers/*.rhai`, merged into every expression.
    pub helpers: rhai::AST,
    pub engine: rhai::Engine,
    /// Warnings found while loading (errors make loading fail).
    pub warnings: Vec<Diag>,
}

/// A kind of subject findings are about.
#[derive(Debug, Clone)]
pub struct SubjectKind {
    pub name: String,
    pub table: String,
    pub label: String,
}

/// The data schema: tables and their columns, with aliases.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub tables: IndexMap<String, TableSchema>,
}

#[derive(Debug, Clone)]
pub struct TableSchema {
    pub name: String,
    pub label: String,
    pub aliases: Vec<String>,
    /// Index of the key column.
    pub key: Option<usize>,
    pub optional: bool,
    pub columns: Vec<ColumnSchema>,
    /// Its keys are looked up by id (a subject table, or referenced by another table), so
    /// they are interned and indexed; other keys are kept as text and only checked unique.
    pub indexed: bool,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn key_name(&self) -> Option<&str> {
        self.key.map(|k| self.columns[k].name.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct ColumnSchema {
    pub name: String,
    pub label: String,
    pub ty: ColumnType,
    pub aliases: Vec<String>,
    pub required: bool,
    pub references: Option<String>,
    /// Enum values, each with its aliases.
    pub values: Vec<(String, Vec<String>)>,
    /// Index of the column this one must be later than.
    pub after: Option<usize>,
}

impl ColumnSchema {
    /// `end（结束时间）`: the English name with the Chinese label.
    pub fn display(&self) -> String {
        if self.label.is_empty() || self.label == self.name {
            self.name.clone()
        } else {
            format!("{}（{}）", self.name, self.label)
        }
    }
}

/// A parameter with dated values.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub label: String,
    pub unit: Option<String>,
    pub basis: Basis,
    pub quote: Option<String>,
    pub reason: Option<String>,
    /// Values, sorted by their start date.
    pub values: Vec<(NaiveDate, toml::Value)>,
    pub loc: Loc,
}

impl Param {
    /// The value in force on `date`, with the date it holds from.
    pub fn value_at(&self, date: NaiveDate) -> Option<(NaiveDate, &toml::Value)> {
        self.values
            .iter()
            .rev()
            .find(|(from, _)| *from <= date)
            .map(|(d, v)| (*d, v))
    }
}

/// A value in an aggregate filter or period bound.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueRef {
    Lit(toml::Value),
    Subject(String),
    Param(String),
    Agg(String),
    AsOf,
}

#[derive(Debug, Clone)]
pub enum Cond {
    Is(ValueRef),
    IsNot(ValueRef),
    In(Vec<ValueRef>),
    NotIn(Vec<ValueRef>),
    Within(String),
    From(ValueRef),
    Until(ValueRef),
    Weekday(ValueRef),
    TimeFrom(ValueRef),
    TimeBefore(ValueRef),
    Present(bool),
    WorkingDay(bool),
    /// The span from the filter's column to `end` overlaps working hours (or not).
    WorkingTime {
        overlaps: bool,
        end: String,
    },
}

/// ISO weekdays (1 = Monday) from a list value.
pub fn weekdays(v: &toml::Value) -> Option<Vec<u32>> {
    let toml::Value::Array(a) = v else {
        return None;
    };
    a.iter()
        .map(|x| {
            x.as_integer()
                .filter(|d| (1..=7).contains(d))
                .map(|d| d as u32)
        })
        .collect()
}

/// A time of day from `HH:MM` text.
pub fn time_of_day(v: &toml::Value) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(v.as_str()?.trim(), "%H:%M").ok()
}

#[derive(Debug, Clone)]
pub struct Filter {
    pub column: String,
    pub cond: Cond,
}

/// A per-subject figure computed natively from one table.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub name: String,
    pub label: String,
    pub subject: String,
    pub table: String,
    /// Reference path from a row to the subject key (`["member_id", "branch_id"]`).
    pub by: Vec<String>,
    pub filters: Vec<Filter>,
    pub op: AggOp,
    pub column: Option<String>,
    pub end_column: Option<String>,
    pub pick: Option<String>,
    pub except_days: Option<String>,
    /// `sum_hours`/`sum_working_hours`: time covered by overlapping rows counts once.
    pub merge_overlaps: bool,
    pub loc: Loc,
}

impl Aggregate {
    /// Names of other aggregates this one depends on (`$agg.x`, `except_days`, periods).
    pub fn dependencies(&self, periods: &IndexMap<String, Period>) -> Vec<String> {
        let mut out = Vec::new();
        let add_ref = |r: &ValueRef, out: &mut Vec<String>| {
            if let ValueRef::Agg(a) = r {
                out.push(a.clone());
            }
        };
        for f in &self.filters {
            match &f.cond {
                Cond::Is(r)
                | Cond::IsNot(r)
                | Cond::From(r)
                | Cond::Until(r)
                | Cond::Weekday(r)
                | Cond::TimeFrom(r)
                | Cond::TimeBefore(r) => add_ref(r, &mut out),
                Cond::In(rs) | Cond::NotIn(rs) => rs.iter().for_each(|r| add_ref(r, &mut out)),
                Cond::Within(p) => {
                    if let Some(p) = periods.get(p) {
                        for b in [&p.start, &p.end] {
                            if let Bound::Ref(r) = b {
                                add_ref(r, &mut out);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(e) = &self.except_days {
            out.push(e.clone());
        }
        out
    }
}

/// One end of a period.
#[derive(Debug, Clone)]
pub enum Bound {
    Date(NaiveDate),
    Ref(ValueRef),
    /// A Rhai expression over `as_of` and parameters, evaluated once per run.
    Script(Expr),
}

#[derive(Debug, Clone)]
pub struct Period {
    pub name: String,
    pub label: String,
    pub start: Bound,
    pub end: Bound,
    /// The period starts no earlier than this (a fixed bound).
    pub not_before: Option<Bound>,
    /// The period ends no later than this (a fixed bound).
    pub not_after: Option<Bound>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Clause {
    pub key: String,
    pub text: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Directive {
    pub key: String,
    pub title: String,
    pub issuer: Option<String>,
    pub document_number: Option<String>,
    pub issued_on: Option<NaiveDate>,
    pub effective_from: Option<NaiveDate>,
    pub effective_until: Option<NaiveDate>,
    /// `effective_until = "$param.NAME"`: the last day is that parameter's value in the run.
    pub until_param: Option<String>,
    pub summary: Option<String>,
    pub cited_from: Option<String>,
    pub clauses: Vec<Clause>,
    pub file: FileId,
}

/// A compiled Rhai expression with where it was written.
#[derive(Debug, Clone)]
pub struct Expr {
    pub src: String,
    pub loc: Loc,
    pub ast: rhai::AST,
    /// Identifiers the expression mentions (to fill the scope with only what it needs).
    pub idents: Vec<String>,
}

/// A message with `{expr}` placeholders.
#[derive(Debug, Clone)]
pub enum Part {
    Text(String),
    Expr(Expr),
}

#[derive(Debug, Clone)]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub when: Option<Expr>,
    pub status: CaseStatus,
    pub message: Template,
}

/// One version of one rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub version: String,
    pub title: String,
    pub directive: String,
    pub subject: String,
    pub effective_from: Option<NaiveDate>,
    pub effective_until: Option<NaiveDate>,
    pub clause: Clause,
    pub severity: Severity,
    pub period: Option<String>,
    pub applies: Option<Expr>,
    pub not_applicable_message: String,
    pub lets: Vec<(String, Expr)>,
    pub evidence: Vec<String>,
    pub cases: Vec<Case>,
    pub loc: Loc,
}

impl Rule {
    /// Whether this version is in force on `date`.
    pub fn in_force(&self, date: NaiveDate) -> bool {
        self.effective_from.is_none_or(|f| f <= date)
            && self.effective_until.is_none_or(|u| date <= u)
    }

    /// Every identifier any expression of the rule mentions.
    pub fn idents(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |e: &Expr| out.extend(e.idents.iter().cloned());
        if let Some(a) = &self.applies {
            add(a);
        }
        for (_, e) in &self.lets {
            add(e);
        }
        for c in &self.cases {
            if let Some(w) = &c.when {
                add(w);
            }
            for p in &c.message.parts {
                if let Part::Expr(e) = p {
                    add(e);
                }
            }
        }
        out.extend(self.evidence.iter().cloned());
        out.sort();
        out.dedup();
        out
    }
}

/// Variables every grading expression sees (besides parameters, aggregates and columns).
pub const GRADE_COUNT_NAMES: &[&str] = &[
    "passes",
    "fails",
    "warns",
    "errors",
    "not_applicable",
    "critical_fails",
    "major_fails",
    "minor_fails",
    "failed_directives",
    "warned_directives",
];

/// Extra variables for organization grades: how the organization's members did.
pub const GRADE_ORG_NAMES: &[&str] = &[
    "members",
    "members_failing",
    "members_passing",
    "member_pass_share",
    "member_fail_share",
];

/// How findings become grades.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub title: String,
    pub note: Option<String>,
    /// The period the grades assess; only directives in force during it count.
    pub period: Option<String>,
    /// The directives whose findings count in grades (`None`: all).
    pub directives: Option<Vec<String>>,
    /// The member aggregate shown as the hours the grades used.
    pub hours: Option<String>,
    pub member: Vec<Grade>,
    pub organization: Vec<Grade>,
}

#[derive(Debug, Clone)]
pub struct Grade {
    pub name: String,
    pub when: Option<Expr>,
    pub description: Option<String>,
}

/// Loading failed: the diagnostics (errors and warnings) and the sources to render them.
pub struct LoadFailure {
    pub diags: Vec<Diag>,
    pub sources: Sources,
}

impl LoadFailure {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diags {
            out.push_str(&d.render(&self.sources));
        }
        let errors = self
            .diags
            .iter()
            .filter(|d| d.level == Level::Error)
            .count();
        let warnings = self.diags.len() - errors;
        out.push_str(&format!("{errors} error(s), {warnings} warning(s)\n"));
        out
    }
}

impl std::fmt::Debug for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

/// Parse a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// Load, check and compile the policy set in `root` with default sandbox limits.
pub fn load(root: &Path) -> Result<PolicySet, LoadFailure> {
    load_with(root, &Limits::default())
}

/// Load, check and compile the policy set in `root`.
pub fn load_with(root: &Path, limits: &Limits) -> Result<PolicySet, LoadFailure> {
    let mut sources = Sources::default();
    let mut diags = Vec::new();
    let files = match collect_files(root) {
        Ok(f) => f,
        Err(msg) => {
            return Err(LoadFailure {
                diags: vec![Diag::error("RB0004", msg)],
                sources,
            });
        }
    };
    let hash = content_hash(root, &files);
    let mut texts = Vec::new();
    for path in &files {
        let rel = display_path(root, path);
        match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    let id = sources.add(rel.clone(), text);
                    texts.push((path.clone(), id));
                }
                Err(_) => diags.push(
                    Diag::error("RB0004", format!("{rel}: policy files must be UTF-8 text"))
                        .help("save the file as UTF-8 (in Notepad: Save As → Encoding: UTF-8)"),
                ),
            },
            Err(e) => diags.push(Diag::error("RB0004", format!("cannot read {rel}: {e}"))),
        }
    }
    let engine = script::engine(limits);
    let set = validate::build(root, hash, sources, texts, engine, diags);
    match set {
        Ok(set) => Ok(set),
        Err((diags, sources)) => Err(LoadFailure { diags, sources }),
    }
}

/// The policy files of a folder, in a stable order: `policy.toml`, then directives, helpers.
fn collect_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    if !root.is_dir() {
        return Err(format!("policy folder not found: {}", root.display()));
    }
    let manifest = root.join("policy.toml");
    if !manifest.is_file() {
        return Err(format!(
            "{} has no policy.toml (the manifest naming the policy set and its data schema)",
            root.display()
        ));
    }
    let mut files = vec![manifest];
    let assessment = root.join("assessment.toml");
    if assessment.is_file() {
        files.push(assessment);
    }
    for (sub, ext) in [
        ("directives", "toml"),
        ("helpers", "rhai"),
        ("calendar", "csv"),
    ] {
        let dir = root.join(sub);
        if !dir.is_dir() {
            continue;
        }
        let mut found: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
            .sort_by_file_name()
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

fn display_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let root_name = root.to_string_lossy();
    let rel = rel.to_string_lossy().replace('\\', "/");
    if root_name.is_empty() || root_name == "." {
        rel
    } else {
        format!("{}/{}", root_name.trim_end_matches('/'), rel)
    }
}

/// SHA-256 over every file of the set (relative path and bytes), plus the tests folder.
fn content_hash(root: &Path, files: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    for f in files {
        let rel = f
            .strip_prefix(root)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('\\', "/");
        h.update(rel.as_bytes());
        h.update([0u8]);
        if let Ok(bytes) = std::fs::read(f) {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl PolicySet {
    /// The directive with this key.
    pub fn directive(&self, key: &str) -> Option<&Directive> {
        self.directives.iter().find(|d| d.key == key)
    }

    /// Short content hash for display.
    pub fn short_hash(&self) -> &str {
        &self.hash[..12.min(self.hash.len())]
    }

    /// Render warnings found while loading.
    pub fn render_warnings(&self) -> String {
        self.warnings
            .iter()
            .map(|d| d.render(&self.sources))
            .collect()
    }
}

/// The status words of the findings contract.
pub fn case_status_name(s: CaseStatus) -> &'static str {
    match s {
        CaseStatus::Pass => "pass",
        CaseStatus::Fail => "fail",
        CaseStatus::Warn => "warn",
        CaseStatus::NotApplicable => "not_applicable",
    }
}
