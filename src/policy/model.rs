//! The serde shape of policy files, exactly as policy staff write them.
//!
//! `policy.toml` is the manifest ([`ManifestFile`]); each file in `directives/` is a
//! [`DirectiveFile`]. Both may declare tables, parameters, aggregates and periods; names are
//! global across the set. Unknown fields are rejected so that a misspelt key is an error.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// A date written either as a TOML date (`2020-02-07`) or a string (`"2020-02-07"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DateLit {
    /// Written as a TOML date (`2020-02-07`).
    Toml(toml::value::Datetime),
    /// Written as text (`"2020-02-07"`); not yet checked to be a date.
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

/// In the JSON Schema a date is a string with `format: date`: TOML-aware validators (Taplo)
/// see a TOML date `2020-02-07` as the string `"2020-02-07"`, so both spellings validate.
impl JsonSchema for DateLit {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Date".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date",
            "description": "A date, `2020-02-07` (a TOML date or the same as text)."
        })
    }
}

/// A date, or `$param.NAME` naming a date parameter.
fn date_or_param(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            {"type": "string", "format": "date"},
            {"type": "string", "pattern": "^\\$param\\.[A-Za-z_][A-Za-z0-9_]*$"}
        ],
        "description": "A date (`2020-05-01`), or `$param.NAME` naming a date parameter."
    })
}

/// `policy.toml`: the name and version of the set, the subjects and the data schema.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Name of the policy set; every finding carries it.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Title of the policy set, for people (defaults to `name`).
    pub title: Option<String>,
    /// Version of the policy set (text, `"1.0.0"`); every finding carries it.
    #[schemars(with = "String")]
    pub version: Spanned<String>,
    /// Version of the data contract the set reads (`1`).
    pub data_contract: Option<u32>,
    /// The source document the set encodes.
    pub source: Option<String>,
    /// A directive gives findings in a run when the days it is in force
    /// (`effective_from`..`effective_until`) overlap this period (e.g. the assessment year);
    /// without it, when it is in force on `--as-of`. Rule versions are chosen on the last day
    /// of that overlap.
    #[schemars(with = "Option<String>")]
    pub run_period: Option<Spanned<String>>,
    /// The working calendar: which days are working days (statutory holidays, adjusted
    /// working days) and the working hours, for `is_working_day`, `working_day` and
    /// `working_time` conditions, and `sum_working_hours`.
    #[schemars(with = "Option<CalendarDef>")]
    pub calendar: Option<Spanned<CalendarDef>>,
    /// Which tables and columns the reports and waivers read besides the rules' own (service
    /// records, communities, waivers); every name defaults to data contract v1's.
    pub roles: Option<super::roles::RolesDef>,
    /// Kinds of subject findings are about (`member`, `organization`), one table each.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, SubjectDef>")]
    pub subjects: IndexMap<String, Spanned<SubjectDef>>,
    /// Tables of the data schema, by name (a directive may add its own).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, TableDef>")]
    pub tables: IndexMap<String, Spanned<TableDef>>,
    /// Numbers and dates the rules use, each with dated values; names are global to the set.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, ParamDef>")]
    pub parameters: IndexMap<String, Spanned<ParamDef>>,
    /// Per-subject figures computed in one pass over a table; names are global to the set.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, AggDef>")]
    pub aggregates: IndexMap<String, Spanned<AggDef>>,
    /// Named date ranges; names are global to the set.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, PeriodDef>")]
    pub periods: IndexMap<String, Spanned<PeriodDef>>,
}

/// The working calendar of a policy set: a CSV file shipped with the set listing the days
/// that differ from the usual week (statutory holidays; weekend days that are working days).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarDef {
    /// Name for people (`全国年节假日安排`).
    pub label: Option<String>,
    /// The calendar file, relative to the policy folder: a CSV with `date`, `type`
    /// (`holiday`/`休` or `workday`/`班`) and an optional `name`.
    #[schemars(with = "String")]
    pub file: Spanned<String>,
    /// Where the dates come from (the official notices).
    pub source: String,
    /// The years the file covers completely; for other years only `weekend` decides, and a
    /// run in such a year is warned.
    #[schemars(with = "Vec<i64>")]
    pub years: Spanned<Vec<i64>>,
    /// ISO weekdays that are rest days unless the file lists them as working days
    /// (default `[6, 7]`, Saturday and Sunday).
    #[serde(default = "weekend")]
    pub weekend: Vec<u32>,
    /// Start of working hours on a working day: `"09:00"` or `$param.NAME`.
    #[schemars(with = "String")]
    pub work_start: Spanned<String>,
    /// End of working hours on a working day: `"17:00"` or `$param.NAME`.
    #[schemars(with = "String")]
    pub work_end: Spanned<String>,
}

fn weekend() -> Vec<u32> {
    vec![6, 7]
}

/// Declarations any policy file may carry; their names are global to the policy set.
/// (Serde's `flatten` would lose spans and unknown-field checks, so the files repeat the
/// fields and hand them over here.)
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    /// Tables of the data schema, by name.
    pub tables: IndexMap<String, Spanned<TableDef>>,
    /// Parameters with dated values, by name.
    pub parameters: IndexMap<String, Spanned<ParamDef>>,
    /// Per-subject aggregates, by name.
    pub aggregates: IndexMap<String, Spanned<AggDef>>,
    /// Named date ranges, by name.
    pub periods: IndexMap<String, Spanned<PeriodDef>>,
}

/// Every policy file type repeats the declaration fields (see [`Declarations`]); this hands
/// them over in one shape.
macro_rules! impl_take_decls {
    ($($t:ty),*) => {$(
        impl $t {
            /// Move the file's tables, parameters, aggregates and periods out, leaving them
            /// empty in the file.
            pub fn take_decls(&mut self) -> Declarations {
                Declarations {
                    tables: std::mem::take(&mut self.tables),
                    parameters: std::mem::take(&mut self.parameters),
                    aggregates: std::mem::take(&mut self.aggregates),
                    periods: std::mem::take(&mut self.periods),
                }
            }
        }
    )*};
}

impl_take_decls!(ManifestFile, DirectiveFile, AssessmentFile);

/// A kind of subject the rules evaluate (`member`, `organization`): the table of its rows.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectDef {
    /// The table whose rows are the subjects; its key identifies a subject.
    #[schemars(with = "String")]
    pub table: Spanned<String>,
    /// Name for people (`党员`).
    pub label: Option<String>,
    /// The table's column with each subject's name for people (default `name`).
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
}

/// One table of the data contract (or a table a new directive adds).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    /// Name for people (`社区`).
    pub label: Option<String>,
    /// Other file or sheet names for this table (`党员.csv`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The key column: unique, every other table may reference it.
    #[schemars(with = "Option<String>")]
    pub key: Option<Spanned<String>>,
    /// An optional table may be absent from a dataset (it is then empty).
    #[serde(default)]
    pub optional: bool,
    /// The columns by name (the English header), in contract order.
    #[schemars(with = "IndexMap<String, ColumnDef>")]
    pub columns: IndexMap<String, Spanned<ColumnDef>>,
}

/// The kind of value a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// An identifier: a table's key, or a reference to another table's key.
    Id,
    /// Free text.
    Text,
    /// A date (`2020-02-07`, also `2020/2/7`).
    Date,
    /// A local date and time (`2020-02-07 09:30`).
    Datetime,
    /// Yes or no (`true`/`false`, `是`/`否`, `1`/`0`, …).
    Bool,
    /// A decimal number.
    Number,
    /// One of the words the column's `values` list.
    Enum,
}

impl ColumnType {
    /// The word a policy file writes for the type (`id`, `datetime`, …).
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

/// One column of a table: its type, names, and the checks each value must pass.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    /// The kind of value: `id`, `text`, `date`, `datetime`, `bool`, `number` or `enum`.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Name for people (`党员编号`).
    pub label: Option<String>,
    /// Headers that mean this column (Chinese exports).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A value is required unless `required = false`.
    #[serde(default = "yes")]
    pub required: bool,
    /// The value must be a key of this table.
    #[schemars(with = "Option<String>")]
    pub references: Option<Spanned<String>>,
    /// For enums: each value with the words exports use for it.
    #[serde(default)]
    pub values: IndexMap<String, Vec<String>>,
    /// The value must be later than this other column of the same row (end after start).
    #[schemars(with = "Option<String>")]
    pub after: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// Where a parameter's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Stated in the source document (`quote` says where).
    Source,
    /// Not fixed by the source; `reason` says why this value was chosen.
    Assumption,
}

/// A parameter with dated values: each value holds from its date on.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamDef {
    /// What the parameter means, for people.
    pub label: Option<String>,
    /// Unit shown with the value (`小时`, `天`).
    pub unit: Option<String>,
    /// `source` (the source fixes the value; give `quote`) or `assumption` (give `reason`).
    pub basis: Basis,
    /// The source's words that fix the value (with `basis = "source"`).
    pub quote: Option<String>,
    /// Why this value was chosen (with `basis = "assumption"`).
    pub reason: Option<String>,
    /// Dated values, `[{ from = 2020-01-01, value = 20 }, …]`; each holds from its date on.
    #[schemars(with = "Vec<DatedValue>")]
    pub values: Vec<Spanned<DatedValue>>,
}

/// One value of a parameter and the day it starts to hold.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatedValue {
    /// The first day this value holds.
    pub from: DateLit,
    /// The value: a number, text, date, boolean or list.
    #[schemars(with = "serde_json::Value")]
    pub value: toml::Value,
}

/// A per-subject figure computed natively in one pass over a table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggDef {
    /// What the figure means, for people.
    pub label: Option<String>,
    /// Subject kind this aggregate is computed for (`member`, `organization`).
    #[schemars(with = "String")]
    pub subject: Spanned<String>,
    /// The table whose rows are counted.
    #[schemars(with = "String")]
    pub table: Spanned<String>,
    /// Column linking a row to the subject; `a.b` follows references (`member_id.branch_id`).
    #[schemars(with = "String")]
    pub by: Spanned<String>,
    /// Conditions a row must meet, `[{ column = "verified", is = true }, …]`.
    #[serde(rename = "where", default)]
    #[schemars(with = "Vec<FilterDef>")]
    pub filters: Vec<Spanned<FilterDef>>,
    /// What to compute: `count`, `count_distinct` (distinct values of `column`), `exists`,
    /// `count_days`, `days`, `sum`, `sum_hours`, `sum_working_hours` (the part of
    /// `column`..`end_column` inside working hours on working days of the calendar), `min`,
    /// `max` or `records`.
    #[schemars(with = "AggOp")]
    pub op: Spanned<AggOp>,
    /// The column the operation reads (dates for `min`, start for `sum_hours`, …).
    #[schemars(with = "Option<String>")]
    pub column: Option<Spanned<String>>,
    /// `sum_hours`: the end column (the duration is end − column).
    #[schemars(with = "Option<String>")]
    pub end_column: Option<Spanned<String>>,
    /// `min`/`max`: return this column of the chosen row instead of the compared value.
    #[schemars(with = "Option<String>")]
    pub pick: Option<Spanned<String>>,
    /// `sum_hours`/`sum_working_hours`: count time covered by overlapping rows once (one
    /// member cannot serve twice at the same time).
    #[serde(default)]
    pub merge_overlaps: bool,
    /// `days`/`count_days`: leave out the days of another `days` aggregate.
    #[schemars(with = "Option<String>")]
    pub except_days: Option<Spanned<String>>,
}

/// What an aggregate computes over a subject's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggOp {
    /// The number of rows.
    Count,
    /// Whether there is at least one row.
    Exists,
    /// The number of distinct dates in `column` (less those of `except_days`).
    CountDays,
    /// The distinct dates in `column` (less those of `except_days`), as a list of days.
    Days,
    /// The sum of the number column `column`.
    Sum,
    /// The hours from `column` to `end_column`, summed over the rows.
    SumHours,
    /// The smallest value of `column` (or the `pick` column of that row).
    Min,
    /// The largest value of `column` (or the `pick` column of that row).
    Max,
    /// The rows themselves.
    Records,
    /// The number of distinct values of `column`.
    CountDistinct,
    /// Like `sum_hours`, but only the hours inside working hours on working days.
    SumWorkingHours,
}

impl AggOp {
    /// The word a policy file writes for the operation (`count_days`, …).
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
            AggOp::CountDistinct => "count_distinct",
            AggOp::SumWorkingHours => "sum_working_hours",
        }
    }
}

/// One condition on a row. Values may be literals or references: `$subject.COLUMN`,
/// `$param.NAME`, `$agg.NAME`, `$as_of`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterDef {
    /// The column of the aggregate's table the condition reads.
    pub column: String,
    /// The value equals this.
    #[schemars(with = "Option<serde_json::Value>")]
    pub is: Option<toml::Value>,
    /// The value differs from this.
    #[schemars(with = "Option<serde_json::Value>")]
    pub is_not: Option<toml::Value>,
    /// The value is one of these.
    #[serde(rename = "in")]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub one_of: Option<Vec<toml::Value>>,
    /// The value is none of these.
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub not_in: Option<Vec<toml::Value>>,
    /// The row's date lies in this period (and not after `--as-of`).
    pub within: Option<String>,
    /// On or after (dates: the day counts).
    #[schemars(with = "Option<serde_json::Value>")]
    pub from: Option<toml::Value>,
    /// On or before.
    #[schemars(with = "Option<serde_json::Value>")]
    pub until: Option<toml::Value>,
    /// ISO weekdays 1 = Monday … 7 = Sunday (a list, or `$param.NAME`).
    #[schemars(with = "Option<serde_json::Value>")]
    pub weekday: Option<toml::Value>,
    /// Time of day at or after `HH:MM` (or `$param.NAME`).
    #[schemars(with = "Option<serde_json::Value>")]
    pub time_from: Option<toml::Value>,
    /// Time of day before `HH:MM` (or `$param.NAME`).
    #[schemars(with = "Option<serde_json::Value>")]
    pub time_before: Option<toml::Value>,
    /// The value is present (`true`) or empty (`false`).
    pub present: Option<bool>,
    /// The row's date is (`true`) or is not (`false`) a working day of the calendar.
    pub working_day: Option<bool>,
    /// The span from `column` to `end_column` overlaps (`true`) or does not overlap
    /// (`false`) working hours on a working day of the calendar.
    pub working_time: Option<bool>,
    /// With `working_time`: the column where the span ends.
    pub end_column: Option<String>,
}

/// A named span of dates. `start`/`end` are dates, `$` references, or Rhai expressions over
/// `as_of` and parameters (evaluated once per run).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodDef {
    /// Name for people (`年度考核周期`).
    pub label: Option<String>,
    /// First day: a date, a reference (`$param.NAME`, `$agg.NAME`, `$as_of`) or a Rhai expression over `as_of` and parameters.
    #[schemars(with = "String")]
    pub start: Spanned<String>,
    /// Last day, written like `start`.
    #[schemars(with = "String")]
    pub end: Spanned<String>,
    /// The period never starts before this day (a date, `$param.NAME`, `$as_of` or an
    /// expression), even when `start` is earlier: a notice binds from its date on.
    #[schemars(with = "Option<String>")]
    pub not_before: Option<Spanned<String>>,
    /// The period never ends after this day (written like `not_before`).
    #[schemars(with = "Option<String>")]
    pub not_after: Option<Spanned<String>>,
}

/// A file in `directives/`: one directive with its clauses and rules.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectiveFile {
    /// The directive: key, title, issuer, dates and the clauses quoted from it.
    #[schemars(with = "DirectiveDef")]
    pub directive: Spanned<DirectiveDef>,
    /// The rules (`[[rule]]`), one table per version of a rule.
    #[serde(default, rename = "rule")]
    #[schemars(with = "Vec<RuleDef>")]
    pub rules: Vec<Spanned<RuleDef>>,
    /// Tables of the data schema, by name (a directive may add its own).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, TableDef>")]
    pub tables: IndexMap<String, Spanned<TableDef>>,
    /// Numbers and dates the rules use, each with dated values; names are global to the set.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, ParamDef>")]
    pub parameters: IndexMap<String, Spanned<ParamDef>>,
    /// Per-subject figures computed in one pass over a table; names are global to the set.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, AggDef>")]
    pub aggregates: IndexMap<String, Spanned<AggDef>>,
    /// Named date ranges; names are global to the set.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, PeriodDef>")]
    pub periods: IndexMap<String, Spanned<PeriodDef>>,
}

/// The `[directive]` table of a directive file: what the directive is and the clauses it
/// quotes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectiveDef {
    /// Stable key every finding carries (`service-hours-20`).
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// Title of the directive.
    pub title: String,
    /// Who issued it.
    pub issuer: Option<String>,
    /// The document number (文号).
    pub document_number: Option<String>,
    /// Date of issue; directives are listed in this order.
    pub issued_on: Option<DateLit>,
    /// First day the directive is in force.
    pub effective_from: Option<DateLit>,
    /// Last day the directive is in force: a date, or `$param.NAME` (a date parameter, such
    /// as the end of the epidemic period). A run whose period does not reach the directive's
    /// days gives no findings for it and lists it as not in force.
    #[serde(default)]
    #[schemars(schema_with = "date_or_param")]
    pub effective_until: Option<DateLit>,
    /// What the directive requires, in a sentence.
    pub summary: Option<String>,
    /// Where the text is quoted from (document and place).
    pub cited_from: Option<String>,
    /// Clauses the rules enforce, quoted from the source.
    #[serde(default)]
    pub clauses: IndexMap<String, ClauseDef>,
}

/// One clause of a directive, quoted from the source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClauseDef {
    /// The clause, quoted from the source.
    pub text: String,
    /// How the clause is read, where that needs saying.
    pub note: Option<String>,
}

/// How grave a rule's failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The gravest; grades count these failures as `critical_fails`.
    Critical,
    /// The default; grades count these failures as `major_fails`.
    Major,
    /// The lightest; grades count these failures as `minor_fails`.
    Minor,
}

/// A rule: one version of one check.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Rule id, the same for every version (`hours.yearly`).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Version of the rule: a number or text. Versions of one rule must not overlap in time.
    #[schemars(with = "serde_json::Value")]
    pub version: Spanned<toml::Value>,
    /// Title of the check, for people.
    pub title: String,
    /// The subject kind the rule checks (`member`, `organization`).
    #[schemars(with = "String")]
    pub subject: Spanned<String>,
    /// First day this version is in force (the version in force on `--as-of` is used).
    #[schemars(with = "Option<DateLit>")]
    pub effective_from: Option<Spanned<DateLit>>,
    /// Last day this version is in force.
    #[schemars(with = "Option<DateLit>")]
    pub effective_until: Option<Spanned<DateLit>>,
    /// Key of the directive's clause this rule enforces.
    #[schemars(with = "String")]
    pub clause: Spanned<String>,
    /// `critical`, `major` (the default) or `minor`.
    #[serde(default = "major")]
    pub severity: Severity,
    /// Name of the period the rule looks at (shown in findings).
    #[schemars(with = "Option<String>")]
    pub period: Option<Spanned<String>>,
    /// Rhai condition; when false the finding is `not_applicable`.
    #[schemars(with = "Option<String>")]
    pub applies: Option<Spanned<String>>,
    /// Message of the `not_applicable` finding when `applies` is false.
    pub not_applicable_message: Option<String>,
    /// Intermediate values (Rhai), in order; later ones may use earlier ones.
    #[serde(default, rename = "let")]
    #[schemars(with = "IndexMap<String, String>")]
    pub lets: IndexMap<String, Spanned<String>>,
    /// Names whose values are recorded in the finding's evidence.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub evidence: Vec<Spanned<String>>,
    /// Outcomes, tried in order; the first whose `when` holds decides.
    #[serde(default, rename = "case")]
    #[schemars(with = "Vec<CaseDef>")]
    pub cases: Vec<Spanned<CaseDef>>,
}

fn major() -> Severity {
    Severity::Major
}

/// The status a rule's case gives the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// The subject complies.
    Pass,
    /// The subject does not comply.
    Fail,
    /// A warning: not a failure, but something to look at.
    Warn,
    /// The rule does not apply to the subject.
    NotApplicable,
}

/// One outcome of a rule (`[[rule.case]]`): a condition, the status and the message.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseDef {
    /// Rhai condition; a case without `when` always holds (put it last).
    #[schemars(with = "Option<String>")]
    pub when: Option<Spanned<String>>,
    /// `pass`, `fail`, `warn` or `not_applicable`.
    pub status: CaseStatus,
    /// Chinese message; `{expr}` placeholders are Rhai expressions.
    #[schemars(with = "String")]
    pub message: Spanned<String>,
}

/// `assessment.toml`: how findings become grades (考核评价) for members and organizations.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessmentFile {
    /// Grades for members and organizations, tried in order.
    pub assessment: AssessmentDef,
    /// Tables of the data schema, by name (a directive may add its own).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, TableDef>")]
    pub tables: IndexMap<String, Spanned<TableDef>>,
    /// Numbers and dates the rules use, each with dated values; names are global to the set.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, ParamDef>")]
    pub parameters: IndexMap<String, Spanned<ParamDef>>,
    /// Per-subject figures computed in one pass over a table; names are global to the set.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, AggDef>")]
    pub aggregates: IndexMap<String, Spanned<AggDef>>,
    /// Named date ranges; names are global to the set.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, PeriodDef>")]
    pub periods: IndexMap<String, Spanned<PeriodDef>>,
}

/// The `[assessment]` table: which findings count and the grades for each kind of subject.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessmentDef {
    /// Title of the assessment, for reports.
    pub title: Option<String>,
    /// A note shown with the grades.
    pub note: Option<String>,
    /// The period the grades assess (a period with fixed dates, e.g. `cycle`). Only findings
    /// of directives in force during it enter grades; the others are still reported.
    #[schemars(with = "Option<String>")]
    pub period: Option<Spanned<String>>,
    /// The directives whose findings count in grades (default: all).
    #[schemars(with = "Option<Vec<String>>")]
    pub directives: Option<Vec<Spanned<String>>>,
    /// The member aggregate shown as the hours figure the grades used (`verified_hours`).
    #[schemars(with = "Option<String>")]
    pub hours: Option<Spanned<String>>,
    /// Grades for members, tried in order; the first whose `when` holds applies.
    #[serde(default)]
    #[schemars(with = "Vec<GradeDef>")]
    pub member: Vec<Spanned<GradeDef>>,
    /// Grades for organizations, tried in order.
    #[serde(default)]
    #[schemars(with = "Vec<GradeDef>")]
    pub organization: Vec<Spanned<GradeDef>>,
}

/// One grade and the condition that gives it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GradeDef {
    /// Name of the grade (`优秀`, `合格`, …).
    pub grade: String,
    /// Rhai condition; a grade without `when` always applies (put it last).
    #[schemars(with = "Option<String>")]
    pub when: Option<Spanned<String>>,
    /// What the grade means, shown in reports.
    pub description: Option<String>,
    /// Where the grade stands in reports' grade lists and charts, 1 = best (grades without a
    /// rank come after the ranked ones, in file order).
    pub rank: Option<u32>,
}
