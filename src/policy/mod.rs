//! Policy loading: reads a policy folder (`policy.toml`, `directives/*.toml`,
//! `helpers/*.rhai`), checks it, and compiles every Rhai expression once.
//!
//! The result is a [`PolicySet`]: the data [`Schema`], dated parameters, declared aggregates
//! and periods, directives with their quoted clauses, and rules with compiled expressions.
//! Problems come back as [`Diag`]nostics with file, line and column.

pub use crate::diag::codes;
pub mod model;
pub mod roles;
pub mod schema;
mod validate;

use crate::diag::{Code, Diag, FileId, Level, Loc, Sources};
use crate::script::{self, Limits};
use chrono::{NaiveDate, NaiveTime};
use indexmap::IndexMap;
use model::{AggOp, Basis, CaseStatus, ColumnType, Severity};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub use roles::Roles;
pub use validate::{BUILTIN_NAMES, enum_words};

/// A loaded, checked and compiled policy set.
pub struct PolicySet {
    /// The policy folder it was loaded from.
    pub root: PathBuf,
    /// Name of the set (`policy.toml`'s `name`); every finding carries it.
    pub name: String,
    /// Title for people (`name` when the manifest gives none).
    pub title: String,
    /// Version of the set; every finding carries it.
    pub version: String,
    /// The source document the set encodes, if the manifest names it.
    pub source: Option<String>,
    /// SHA-256 of every policy file (path and bytes), hex.
    pub hash: String,
    /// The text of every policy file read, for rendering diagnostics.
    pub sources: Sources,
    /// Kinds of subject (`member`, `organization`) by name.
    pub subjects: IndexMap<String, SubjectKind>,
    /// The data schema every dataset is read with.
    pub schema: Schema,
    /// Parameters with dated values, by name.
    pub params: IndexMap<String, Param>,
    /// Per-subject aggregates, by name.
    pub aggregates: IndexMap<String, Aggregate>,
    /// Named date ranges, by name.
    pub periods: IndexMap<String, Period>,
    /// The directives, by date of issue (else first day in force), then key.
    pub directives: Vec<Directive>,
    /// Every version of every rule.
    pub rules: Vec<Rule>,
    /// Grading rules from `assessment.toml`, if present.
    pub assessment: Option<Assessment>,
    /// The period whose days decide which directives are in force in a run (`run_period`);
    /// without it, the directives in force on `--as-of`.
    pub run_period: Option<String>,
    /// The working calendar (`[calendar]`; without it Monday to Friday are working days).
    pub calendar: std::sync::Arc<crate::calendar::Calendar>,
    /// Which tables and columns reports and waivers read (`[roles]`).
    pub roles: Roles,
    /// Working hours (`HH:MM` text or `$param.NAME`), from `[calendar]`.
    pub work_hours: Option<(ValueRef, ValueRef)>,
    /// Helper functions from `helpers/*.rhai`, merged into every expression.
    pub helpers: rhai::AST,
    /// The text of the helper files, one after the other (what `diff` compares).
    pub helper_source: String,
    /// The sandboxed Rhai engine the expressions run on (with `zh` and the calendar
    /// functions registered for this set).
    pub engine: rhai::Engine,
    /// Warnings found while loading (errors make loading fail).
    pub warnings: Vec<Diag>,
}

/// A kind of subject findings are about.
#[derive(Debug, Clone)]
pub struct SubjectKind {
    /// The kind's name (`member`).
    pub name: String,
    /// The table whose rows are the subjects; its key identifies a subject.
    pub table: String,
    /// Name for people (`党员`; the kind's name when none is given).
    pub label: String,
    /// The column with each subject's name for people (`name`).
    pub name_column: String,
}

/// The data schema: tables and their columns, with aliases.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// The tables by name, manifest's first, then in the order the files declare them.
    pub tables: IndexMap<String, TableSchema>,
}

/// One table of the schema: its columns, key and names.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// The table's name (`members`), also its file name (`members.csv`).
    pub name: String,
    /// Name for people (`党员`; the table's name when none is given).
    pub label: String,
    /// Other file or sheet names for the table (`党员.csv`).
    pub aliases: Vec<String>,
    /// Index of the key column.
    pub key: Option<usize>,
    /// An optional table may be absent from a dataset (it is then empty).
    pub optional: bool,
    /// The columns, in contract order.
    pub columns: Vec<ColumnSchema>,
    /// Its keys are looked up by id (a subject table, or referenced by another table), so
    /// they are interned and indexed; other keys are kept as text and only checked unique.
    pub indexed: bool,
}

impl Schema {
    /// Whether data loads the same under both schemas (the same tables, columns, names,
    /// aliases, types and values, in the same order).
    pub fn same_as(&self, other: &Schema) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

impl TableSchema {
    /// Index of the column called `name` (its English name).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Name of the key column, if the table has a key.
    pub fn key_name(&self) -> Option<&str> {
        self.key.map(|k| self.columns[k].name.as_str())
    }
}

/// One column of a table.
#[derive(Debug, Clone)]
pub struct ColumnSchema {
    /// The column's name, its English header (`member_id`).
    pub name: String,
    /// Name for people (`党员编号`); empty when none is given.
    pub label: String,
    /// The kind of value the column holds.
    pub ty: ColumnType,
    /// Other headers that mean this column (Chinese exports).
    pub aliases: Vec<String>,
    /// Whether every row must have a value.
    pub required: bool,
    /// The table whose key every value must be, for a reference column.
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
    /// The parameter's name, as expressions use it.
    pub name: String,
    /// What it means, for people (the name when none is given).
    pub label: String,
    /// Unit shown with the value (`小时`), if any.
    pub unit: Option<String>,
    /// Whether the source fixes the value or it is an assumption.
    pub basis: Basis,
    /// The source's words that fix the value, if given.
    pub quote: Option<String>,
    /// Why the value was chosen, if given (for an assumption).
    pub reason: Option<String>,
    /// Values, sorted by their start date.
    pub values: Vec<(NaiveDate, toml::Value)>,
    /// Where the parameter is declared.
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
    /// A value written in the policy file.
    Lit(toml::Value),
    /// `$subject.COLUMN`: this column of the subject's row.
    Subject(String),
    /// `$param.NAME`: the parameter's value on the evaluation date.
    Param(String),
    /// `$agg.NAME`: the subject's value of another aggregate.
    Agg(String),
    /// `$as_of`: the evaluation date.
    AsOf,
}

/// What a filter asks of its column's value.
#[derive(Debug, Clone)]
pub enum Cond {
    /// `is`: the value equals this.
    Is(ValueRef),
    /// `is_not`: the value differs from this.
    IsNot(ValueRef),
    /// `in`: the value is one of these.
    In(Vec<ValueRef>),
    /// `not_in`: the value is none of these.
    NotIn(Vec<ValueRef>),
    /// `within`: the row's date lies in the named period (and not after `--as-of`).
    Within(String),
    /// `from`: on or after this.
    From(ValueRef),
    /// `until`: on or before this.
    Until(ValueRef),
    /// `weekday`: on one of these ISO weekdays (1 = Monday).
    Weekday(ValueRef),
    /// `time_from`: the time of day is at or after this `HH:MM`.
    TimeFrom(ValueRef),
    /// `time_before`: the time of day is before this `HH:MM`.
    TimeBefore(ValueRef),
    /// `present`: the value is present (`true`) or empty (`false`).
    Present(bool),
    /// `working_day`: the row's date is (`true`) or is not (`false`) a working day.
    WorkingDay(bool),
    /// The span from the filter's column to `end` overlaps working hours (or not).
    WorkingTime {
        /// `true`: the span must overlap working hours; `false`: it must not.
        overlaps: bool,
        /// The column where the span ends.
        end: String,
    },
}

impl Cond {
    /// The values this condition compares with (`$param.X`, `$agg.Y`, literals …); not the
    /// period a `within` names.
    pub fn refs(&self) -> &[ValueRef] {
        match self {
            Cond::Is(r)
            | Cond::IsNot(r)
            | Cond::From(r)
            | Cond::Until(r)
            | Cond::Weekday(r)
            | Cond::TimeFrom(r)
            | Cond::TimeBefore(r) => std::slice::from_ref(r),
            Cond::In(rs) | Cond::NotIn(rs) => rs,
            Cond::Within(_) | Cond::Present(_) | Cond::WorkingDay(_) | Cond::WorkingTime { .. } => {
                &[]
            }
        }
    }
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

/// One condition an aggregate's rows must meet.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The column of the aggregate's table the condition reads.
    pub column: String,
    /// What the value must satisfy.
    pub cond: Cond,
}

/// A per-subject figure computed natively from one table.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// The aggregate's name, as expressions use it.
    pub name: String,
    /// What the figure means, for people (the name when none is given).
    pub label: String,
    /// The kind of subject it is computed for.
    pub subject: String,
    /// The table whose rows it reads.
    pub table: String,
    /// Reference path from a row to the subject key (`["member_id", "branch_id"]`).
    pub by: Vec<String>,
    /// Conditions a row must all meet to count.
    pub filters: Vec<Filter>,
    /// What it computes.
    pub op: AggOp,
    /// The column the operation reads (the start, for hour sums), if it reads one.
    pub column: Option<String>,
    /// The column where a span ends, for hour sums.
    pub end_column: Option<String>,
    /// `min`/`max`: the column of the chosen row to return instead of the compared value.
    pub pick: Option<String>,
    /// `days`/`count_days`: another `days` aggregate whose days are left out.
    pub except_days: Option<String>,
    /// `sum_hours`/`sum_working_hours`: time covered by overlapping rows counts once.
    pub merge_overlaps: bool,
    /// Where the aggregate is declared.
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
            f.cond.refs().iter().for_each(|r| add_ref(r, &mut out));
            if let Cond::Within(p) = &f.cond
                && let Some(p) = periods.get(p)
            {
                for b in [&p.start, &p.end] {
                    if let Bound::Ref(r) = b {
                        add_ref(r, &mut out);
                    }
                }
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
    /// A fixed date.
    Date(NaiveDate),
    /// A `$` reference (`$param.NAME`, `$agg.NAME`, `$as_of`).
    Ref(ValueRef),
    /// A Rhai expression over `as_of` and parameters, evaluated once per run.
    Script(Expr),
}

/// A named span of dates.
#[derive(Debug, Clone)]
pub struct Period {
    /// The period's name, as filters and rules use it.
    pub name: String,
    /// Name for people (`年度考核周期`; the name when none is given).
    pub label: String,
    /// The first day.
    pub start: Bound,
    /// The last day.
    pub end: Bound,
    /// The period starts no earlier than this (a fixed bound).
    pub not_before: Option<Bound>,
    /// The period ends no later than this (a fixed bound).
    pub not_after: Option<Bound>,
}

/// A clause of a directive, quoted from the source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Clause {
    /// The clause's key, as rules name it.
    pub key: String,
    /// The clause, quoted from the source.
    pub text: String,
    /// How the clause is read, where that needs saying.
    pub note: Option<String>,
}

/// A directive: the document, when it is in force, and the clauses the rules enforce.
#[derive(Debug, Clone)]
pub struct Directive {
    /// Stable key every finding carries (`service-hours-20`).
    pub key: String,
    /// Title of the directive.
    pub title: String,
    /// Who issued it, if given.
    pub issuer: Option<String>,
    /// The document number (文号), if it has one.
    pub document_number: Option<String>,
    /// Date of issue, if given.
    pub issued_on: Option<NaiveDate>,
    /// First day in force; `None`: from the beginning.
    pub effective_from: Option<NaiveDate>,
    /// Last day in force; `None` when open-ended or given by a parameter (`until_param`).
    pub effective_until: Option<NaiveDate>,
    /// `effective_until = "$param.NAME"`: the last day is that parameter's value in the run.
    pub until_param: Option<String>,
    /// What the directive requires, in a sentence, if given.
    pub summary: Option<String>,
    /// Where the text is quoted from, if given.
    pub cited_from: Option<String>,
    /// The clauses, in the order the file lists them.
    pub clauses: Vec<Clause>,
    /// The directive's file.
    pub file: FileId,
}

/// A compiled Rhai expression with where it was written.
#[derive(Debug, Clone)]
pub struct Expr {
    /// The expression as written.
    pub src: String,
    /// Where it is written.
    pub loc: Loc,
    /// The compiled expression, with the helper functions merged in.
    pub ast: rhai::AST,
    /// Identifiers the expression mentions (to fill the scope with only what it needs).
    pub idents: Vec<String>,
}

/// A message's text split at its `{…}` placeholders, as `check` compiles it and the
/// language server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text (`{{` and `}}` already made single braces).
    Text(String),
    /// The byte range of a placeholder's inside (between `{` and its `}`).
    Expr(std::ops::Range<usize>),
    /// A `{` at this byte offset without its `}`; nothing follows it.
    Unclosed(usize),
}

/// Split a message template into [`Piece`]s.
pub fn message_pieces(src: &str) -> Vec<Piece> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c @ (b'{' | b'}') if b.get(i + 1) == Some(&c) => {
                lit.push(c as char);
                i += 2;
            }
            b'{' => {
                let mut depth = 1;
                let mut j = i + 1;
                while j < b.len() && depth > 0 {
                    match b[j] {
                        b'{' => depth += 1,
                        b'}' => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                if !lit.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut lit)));
                }
                if depth != 0 {
                    out.push(Piece::Unclosed(i));
                    return out;
                }
                out.push(Piece::Expr(i + 1..j - 1));
                i = j;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or(' ');
                lit.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Text(lit));
    }
    out
}

/// A message with `{expr}` placeholders.
#[derive(Debug, Clone)]
pub enum Part {
    /// Text shown as it is.
    Text(String),
    /// A `{expr}` placeholder, replaced by the expression's value.
    Expr(Expr),
}

/// A compiled message template.
#[derive(Debug, Clone)]
pub struct Template {
    /// The text and placeholders, in order.
    pub parts: Vec<Part>,
}

/// One outcome of a rule.
#[derive(Debug, Clone)]
pub struct Case {
    /// The condition; `None`: the case always holds.
    pub when: Option<Expr>,
    /// The status the case gives.
    pub status: CaseStatus,
    /// The finding's message.
    pub message: Template,
}

/// One version of one rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Rule id, the same for every version (`hours.yearly`).
    pub id: String,
    /// Version of the rule, as text (a number in the file becomes its digits).
    pub version: String,
    /// Title of the check, for people.
    pub title: String,
    /// Key of the directive the rule belongs to.
    pub directive: String,
    /// The kind of subject the rule checks.
    pub subject: String,
    /// First day this version is in force; `None`: no start.
    pub effective_from: Option<NaiveDate>,
    /// Last day this version is in force; `None`: no end.
    pub effective_until: Option<NaiveDate>,
    /// The clause of the directive this rule enforces.
    pub clause: Clause,
    /// How grave a failure is.
    pub severity: Severity,
    /// Name of the period the rule looks at, if any.
    pub period: Option<String>,
    /// The condition for the rule to apply; when false the finding is `not_applicable`.
    pub applies: Option<Expr>,
    /// Message of the `not_applicable` finding when `applies` is false (default `不适用`).
    pub not_applicable_message: String,
    /// Intermediate values, in order; later ones may use earlier ones.
    pub lets: Vec<(String, Expr)>,
    /// Names whose values are recorded in the finding's evidence.
    pub evidence: Vec<String>,
    /// Outcomes, tried in order; the first whose `when` holds decides.
    pub cases: Vec<Case>,
    /// Where the rule is written.
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
    /// Title of the assessment, for reports (default `考核评价`).
    pub title: String,
    /// A note shown with the grades, if given.
    pub note: Option<String>,
    /// The period the grades assess; only directives in force during it count.
    pub period: Option<String>,
    /// The directives whose findings count in grades (`None`: all).
    pub directives: Option<Vec<String>>,
    /// The member aggregate shown as the hours the grades used.
    pub hours: Option<String>,
    /// Grades for members, tried in order; the first whose `when` holds applies.
    pub member: Vec<Grade>,
    /// Grades for organizations, tried in order.
    pub organization: Vec<Grade>,
}

/// One grade and the condition that gives it.
#[derive(Debug, Clone)]
pub struct Grade {
    /// Name of the grade (`优秀`, `合格`, …).
    pub name: String,
    /// The condition; `None`: the grade always applies.
    pub when: Option<Expr>,
    /// What the grade means, shown in reports, if given.
    pub description: Option<String>,
    /// Its place in reports' grade lists, 1 = best (`None`: after the ranked grades).
    pub rank: Option<u32>,
}

/// Loading failed: the diagnostics (errors and warnings) and the sources to render them.
///
/// Displayed (and debug-printed) as [`LoadFailure::render`] gives it, without the last line
/// break.
#[derive(thiserror::Error)]
#[error("{}", self.render().trim_end())]
pub struct LoadFailure {
    /// Every diagnostic found, errors and warnings.
    pub diags: Vec<Diag>,
    /// The text of the policy files read, which the diagnostics point into.
    pub sources: Sources,
}

impl LoadFailure {
    /// Every diagnostic rendered with its file, line and caret, then the count of errors
    /// and warnings.
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
    load_from(root, limits, &|p: &Path| std::fs::read(p))
}

/// Load the policy set in `root` with some files' texts given in memory (an editor's
/// unsaved buffers, by path); other files are read from disk.
pub fn load_overlay(
    root: &Path,
    limits: &Limits,
    overlay: &std::collections::HashMap<PathBuf, String>,
) -> Result<PolicySet, LoadFailure> {
    load_from(root, limits, &|p: &Path| match overlay.get(p) {
        Some(text) => Ok(text.clone().into_bytes()),
        None => std::fs::read(p),
    })
}

/// How a file's bytes are read while loading (from disk, or from an editor's buffers).
type Reader<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

/// Load the policy set in `root`, reading each file with `read`.
fn load_from(root: &Path, limits: &Limits, read: Reader) -> Result<PolicySet, LoadFailure> {
    let mut sources = Sources::default();
    let mut diags = Vec::new();
    let files = match collect_files(root) {
        Ok(f) => f,
        Err(msg) => {
            return Err(LoadFailure {
                diags: vec![Diag::error(Code::RB0004, msg)],
                sources,
            });
        }
    };
    let hash = content_hash(root, &files, read);
    let mut texts = Vec::new();
    for path in &files {
        let rel = display_path(root, path);
        match read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    let id = sources.add(rel.clone(), text);
                    texts.push((path.clone(), id));
                }
                Err(_) => diags.push(
                    Diag::error(
                        Code::RB0004,
                        format!("{rel}: policy files must be UTF-8 text"),
                    )
                    .help("save the file as UTF-8 (in Notepad: Save As → Encoding: UTF-8)"),
                ),
            },
            Err(e) => diags.push(Diag::error(Code::RB0004, format!("cannot read {rel}: {e}"))),
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

/// SHA-256 over every file of the set that decides findings (relative path and bytes): the
/// manifest, the assessment, directives, helpers and calendar files; not the policy tests or
/// the editor schemas.
fn content_hash(root: &Path, files: &[PathBuf], read: Reader) -> String {
    let mut h = Sha256::new();
    for f in files {
        let rel = f
            .strip_prefix(root)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('\\', "/");
        h.update(rel.as_bytes());
        h.update([0u8]);
        if let Ok(bytes) = read(f) {
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

#[cfg(test)]
mod tests {
    use super::{Piece, message_pieces};

    #[test]
    fn message_pieces_split_at_placeholders() {
        assert_eq!(
            message_pieces("已服务 {hours_text(h)} 小时，{{注}} {m}"),
            vec![
                Piece::Text("已服务 ".into()),
                Piece::Expr(11..24),
                Piece::Text(" 小时，{注} ".into()),
                Piece::Expr(44..45),
            ]
        );
        assert_eq!(
            message_pieces("a {f({x})} b {c"),
            vec![
                Piece::Text("a ".into()),
                Piece::Expr(3..9),
                Piece::Text(" b ".into()),
                Piece::Unclosed(13),
            ]
        );
        assert_eq!(message_pieces("}"), vec![Piece::Text("}".into())]);
    }
}
