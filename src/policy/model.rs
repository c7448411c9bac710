//! The serde shape of policy files, exactly as policy staff write them.
//!
//! `policy.toml` is the manifest ([`ManifestFile`]); each file in `directives/` is a
//! [`DirectiveFile`]. Both may declare tables, parameters, aggregates and periods; names are
//! global across the set. Unknown fields are rejected so that a misspelt key is an error.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// A date written either as a TOML date (`2020-02-07`) or a string (`"2020-02-07"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DateLit {
    Toml(toml::value::Datetime),
    Text(String),
}

impl DateLit {
    /// The date as `YYYY-MM-DD` text, for parsing by the loader.
    pub fn as_text(&self) -> String {
        match self {
            DateLit::Toml(d) => d.to_string(),
            DateLit::Text(s) => s.clone(),
        }
    }
}

/// `policy.toml`: the name and version of the set, the subjects and the data schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: Spanned<String>,
    pub title: Option<String>,
    pub version: Spanned<String>,
    pub data_contract: Option<u32>,
    pub source: Option<String>,
    #[serde(default)]
    pub subjects: IndexMap<String, Spanned<SubjectDef>>,
    #[serde(default)]
    pub tables: IndexMap<String, Spanned<TableDef>>,
    #[serde(default)]
    pub parameters: IndexMap<String, Spanned<ParamDef>>,
    #[serde(default)]
    pub aggregates: IndexMap<String, Spanned<AggDef>>,
    #[serde(default)]
    pub periods: IndexMap<String, Spanned<PeriodDef>>,
}

/// Declarations any policy file may carry; their names are global to the policy set.
/// (Serde's `flatten` would lose spans and unknown-field checks, so the files repeat the
/// fields and hand them over here.)
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    pub tables: IndexMap<String, Spanned<TableDef>>,
    pub parameters: IndexMap<String, Spanned<ParamDef>>,
    pub aggregates: IndexMap<String, Spanned<AggDef>>,
    pub periods: IndexMap<String, Spanned<PeriodDef>>,
}

impl ManifestFile {
    pub fn take_decls(&mut self) -> Declarations {
        Declarations {
            tables: std::mem::take(&mut self.tables),
            parameters: std::mem::take(&mut self.parameters),
            aggregates: std::mem::take(&mut self.aggregates),
            periods: std::mem::take(&mut self.periods),
        }
    }
}

impl DirectiveFile {
    pub fn take_decls(&mut self) -> Declarations {
        Declarations {
            tables: std::mem::take(&mut self.tables),
            parameters: std::mem::take(&mut self.parameters),
            aggregates: std::mem::take(&mut self.aggregates),
            periods: std::mem::take(&mut self.periods),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectDef {
    pub table: Spanned<String>,
    pub label: Option<String>,
}

/// One table of the data contract (or a table a new directive adds).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    pub label: Option<String>,
    /// Other file or sheet names for this table (`党员.csv`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The key column: unique, every other table may reference it.
    pub key: Option<Spanned<String>>,
    /// An optional table may be absent from a dataset (it is then empty).
    #[serde(default)]
    pub optional: bool,
    pub columns: IndexMap<String, Spanned<ColumnDef>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Id,
    Text,
    Date,
    Datetime,
    Bool,
    Number,
    Enum,
}

impl ColumnType {
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Id => "id",
            ColumnType::Text => "text",
            ColumnType::Date => "date",
            ColumnType::Datetime => "datetime",
            ColumnType::Bool => "bool",
            ColumnType::Number => "number",
            ColumnType::Enum => "enum",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub label: Option<String>,
    /// Headers that mean this column (Chinese exports).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A value is required unless `required = false`.
    #[serde(default = "yes")]
    pub required: bool,
    /// The value must be a key of this table.
    pub references: Option<Spanned<String>>,
    /// For enums: each value with the words exports use for it.
    #[serde(default)]
    pub values: IndexMap<String, Vec<String>>,
    /// The value must be later than this other column of the same row (end after start).
    pub after: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// Where a parameter's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Stated in the source document (`quote` says where).
    Source,
    /// Not fixed by the source; `reason` says why this value was chosen.
    Assumption,
}

/// A parameter with dated values: each value holds from its date on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDef {
    pub label: Option<String>,
    pub unit: Option<String>,
    pub basis: Basis,
    pub quote: Option<String>,
    pub reason: Option<String>,
    pub values: Vec<Spanned<DatedValue>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatedValue {
    pub from: DateLit,
    pub value: toml::Value,
}

/// A per-subject figure computed natively in one pass over a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggDef {
    pub label: Option<String>,
    /// Subject kind this aggregate is computed for (`member`, `organization`).
    pub subject: Spanned<String>,
    pub table: Spanned<String>,
    /// Column linking a row to the subject; `a.b` follows references (`member_id.branch_id`).
    pub by: Spanned<String>,
    #[serde(rename = "where", default)]
    pub filters: Vec<Spanned<FilterDef>>,
    pub op: Spanned<AggOp>,
    /// The column the operation reads (dates for `min`, start for `sum_hours`, …).
    pub column: Option<Spanned<String>>,
    /// `sum_hours`: the end column (the duration is end − column).
    pub end_column: Option<Spanned<String>>,
    /// `min`/`max`: return this column of the chosen row instead of the compared value.
    pub pick: Option<Spanned<String>>,
    /// `days`/`count_days`: leave out the days of another `days` aggregate.
    pub except_days: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggOp {
    Count,
    Exists,
    CountDays,
    Days,
    Sum,
    SumHours,
    Min,
    Max,
    Records,
}

impl AggOp {
    pub fn name(self) -> &'static str {
        match self {
            AggOp::Count => "count",
            AggOp::Exists => "exists",
            AggOp::CountDays => "count_days",
            AggOp::Days => "days",
            AggOp::Sum => "sum",
            AggOp::SumHours => "sum_hours",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Records => "records",
        }
    }
}

/// One condition on a row. Values may be literals or references: `$subject.COLUMN`,
/// `$param.NAME`, `$agg.NAME`, `$as_of`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterDef {
    pub column: String,
    pub is: Option<toml::Value>,
    pub is_not: Option<toml::Value>,
    #[serde(rename = "in")]
    pub one_of: Option<Vec<toml::Value>>,
    pub not_in: Option<Vec<toml::Value>>,
    /// The row's date lies in this period (and not after `--as-of`).
    pub within: Option<String>,
    /// On or after (dates: the day counts).
    pub from: Option<toml::Value>,
    /// On or before.
    pub until: Option<toml::Value>,
    /// ISO weekdays 1 = Monday … 7 = Sunday (a list, or `$param.NAME`).
    pub weekday: Option<toml::Value>,
    /// Time of day at or after `HH:MM` (or `$param.NAME`).
    pub time_from: Option<toml::Value>,
    /// Time of day before `HH:MM` (or `$param.NAME`).
    pub time_before: Option<toml::Value>,
    /// The value is present (`true`) or empty (`false`).
    pub present: Option<bool>,
}

/// A named span of dates. `start`/`end` are dates, `$` references, or Rhai expressions over
/// `as_of` and parameters (evaluated once per run).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodDef {
    pub label: Option<String>,
    pub start: Spanned<String>,
    pub end: Spanned<String>,
}

/// A file in `directives/`: one directive with its clauses and rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectiveFile {
    pub directive: Spanned<DirectiveDef>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<RuleDef>>,
    #[serde(default)]
    pub tables: IndexMap<String, Spanned<TableDef>>,
    #[serde(default)]
    pub parameters: IndexMap<String, Spanned<ParamDef>>,
    #[serde(default)]
    pub aggregates: IndexMap<String, Spanned<AggDef>>,
    #[serde(default)]
    pub periods: IndexMap<String, Spanned<PeriodDef>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectiveDef {
    /// Stable key every finding carries (`service-hours-20`).
    pub key: Spanned<String>,
    pub title: String,
    pub issuer: Option<String>,
    pub document_number: Option<String>,
    pub issued_on: Option<DateLit>,
    pub effective_from: Option<DateLit>,
    pub effective_until: Option<DateLit>,
    pub summary: Option<String>,
    /// Where the text is quoted from (document and place).
    pub cited_from: Option<String>,
    /// Clauses the rules enforce, quoted from the source.
    #[serde(default)]
    pub clauses: IndexMap<String, ClauseDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClauseDef {
    pub text: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Major,
    Minor,
}

/// A rule: one version of one check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub id: Spanned<String>,
    pub version: Spanned<toml::Value>,
    pub title: String,
    pub subject: Spanned<String>,
    pub effective_from: Option<Spanned<DateLit>>,
    pub effective_until: Option<Spanned<DateLit>>,
    /// Key of the directive's clause this rule enforces.
    pub clause: Spanned<String>,
    #[serde(default = "major")]
    pub severity: Severity,
    /// Name of the period the rule looks at (shown in findings).
    pub period: Option<Spanned<String>>,
    /// Rhai condition; when false the finding is `not_applicable`.
    pub applies: Option<Spanned<String>>,
    pub not_applicable_message: Option<String>,
    /// Intermediate values (Rhai), in order; later ones may use earlier ones.
    #[serde(default, rename = "let")]
    pub lets: IndexMap<String, Spanned<String>>,
    /// Names whose values are recorded in the finding's evidence.
    #[serde(default)]
    pub evidence: Vec<Spanned<String>>,
    /// Outcomes, tried in order; the first whose `when` holds decides.
    #[serde(default, rename = "case")]
    pub cases: Vec<Spanned<CaseDef>>,
}

fn major() -> Severity {
    Severity::Major
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Pass,
    Fail,
    Warn,
    NotApplicable,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseDef {
    /// Rhai condition; a case without `when` always holds (put it last).
    pub when: Option<Spanned<String>>,
    pub status: CaseStatus,
    /// Chinese message; `{expr}` placeholders are Rhai expressions.
    pub message: Spanned<String>,
}

/// `assessment.toml`: how findings become grades (考核评价) for members and organizations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssessmentFile {
    pub assessment: AssessmentDef,
    #[serde(default)]
    pub tables: IndexMap<String, Spanned<TableDef>>,
    #[serde(default)]
    pub parameters: IndexMap<String, Spanned<ParamDef>>,
    #[serde(default)]
    pub aggregates: IndexMap<String, Spanned<AggDef>>,
    #[serde(default)]
    pub periods: IndexMap<String, Spanned<PeriodDef>>,
}

impl AssessmentFile {
    pub fn take_decls(&mut self) -> Declarations {
        Declarations {
            tables: std::mem::take(&mut self.tables),
            parameters: std::mem::take(&mut self.parameters),
            aggregates: std::mem::take(&mut self.aggregates),
            periods: std::mem::take(&mut self.periods),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssessmentDef {
    pub title: Option<String>,
    pub note: Option<String>,
    /// Grades for members, tried in order; the first whose `when` holds applies.
    #[serde(default)]
    pub member: Vec<Spanned<GradeDef>>,
    /// Grades for organizations, tried in order.
    #[serde(default)]
    pub organization: Vec<Spanned<GradeDef>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeDef {
    pub grade: String,
    /// Rhai condition; a grade without `when` always applies (put it last).
    pub when: Option<Spanned<String>>,
    pub description: Option<String>,
}
