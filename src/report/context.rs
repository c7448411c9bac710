//! The data each report template receives, as types. A template gets one [`Context`]: the
//! [`Common`] facts every report shows, [`ReportRef`], and the body of its own kind
//! ([`Member`], [`Branch`], [`Community`] or [`Summary`]). `rulebook schema --kind report`
//! prints their JSON Schema (shipped as `report-templates/context.schema.json`); a test keeps it
//! equal to the types and checks that `report-templates/README.md` documents every key.
//!
//! Dates are text (`YYYY-MM-DD`); hours are rounded to 2 decimals and shares to 1.

use super::Tally;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use schemars::transform::RestrictFormats;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What one report template receives: the common facts, which report it is, and its body
/// (exactly one of `member`, `branch`, `community`, `summary`, `bundle`, after the report's
/// kind).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Context {
    /// Facts every report shows (the keys sit at the top level of the template's data).
    #[serde(flatten)]
    pub common: Arc<Common>,
    /// Which report this is.
    pub report: ReportRef,
    /// The member's data (member reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<Member>,
    /// The branch's data (branch reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<Branch>,
    /// The community's data (community reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community: Option<Community>,
    /// The whole run's data (the summary report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// The reports a bundle holds (bundles, `--bundle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<Bundle>,
}

/// Which report a template is rendering.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ReportRef {
    /// `member`, `branch`, `community`, `summary` or `bundle`.
    pub kind: String,
    /// The subject's id (`summary` for the summary; a bundle's branch or community id).
    pub id: String,
}

/// The part of the dataset a run's reports cover (`--scope`).
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct ScopeFacts {
    /// What was asked for, as one line: `党支部 市财政局机关第一党支部（B01）`.
    pub title: String,
    /// Each `--scope` asked for.
    pub items: Vec<ScopeItem>,
}

/// One `--scope KIND:ID`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ScopeItem {
    /// `branch`, `community`, `district` or `member`.
    pub kind: String,
    /// The kind in Chinese: `党支部`, `社区`, `区`, `党员`.
    pub kind_cn: String,
    /// The id (a district's name).
    pub id: String,
    /// The name for people (empty for a district).
    pub name: String,
}

/// A bundle: one PDF holding a branch's (or community's) report followed by the member forms
/// of its members, with a table of contents and page numbers per report.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Bundle {
    /// What the bundle is for: `branch` or `community`.
    pub kind: String,
    /// The kind in Chinese: `党支部`, `社区`.
    pub kind_cn: String,
    /// The branch's or community's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// How many member forms it holds.
    pub member_count: usize,
    /// The reports in the bundle, in order: the branch's (community's) own report first when
    /// it is in scope, then one member form per member by id.
    pub parts: Vec<BundlePart>,
}

/// One report inside a bundle.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BundlePart {
    /// The report's kind: `branch`, `community` or `member`.
    pub kind: String,
    /// Its subject's id.
    pub id: String,
    /// Its subject's name.
    pub name: String,
    /// The Typst file holding the rendered report (its own template's output up to the shared
    /// appendix), beside the bundle's own (`part-3.typ`): write
    /// `#include {{ part.path | str | safe }}`.
    pub path: String,
}

/// Data every template gets: the document facts and the appendix.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Common {
    /// What grades assess.
    pub grading: Grading,
    /// Directives whose days do not reach the run period (no findings).
    pub not_in_force: Vec<Window>,
    /// The working calendar.
    pub calendar: CalendarFacts,
    /// The evaluation date, `2020-12-31`.
    pub as_of: String,
    /// The evaluation date in Chinese, `2020年12月31日`.
    pub as_of_cn: String,
    /// The evaluation date's year.
    pub year: i32,
    /// … its month.
    pub month: u32,
    /// … its day.
    pub day: u32,
    /// The policy set.
    pub policy: PolicyFacts,
    /// The assessment's grades (`null` without `assessment.toml`).
    pub assessment: Option<AssessmentFacts>,
    /// The run's periods.
    pub periods: Vec<PeriodFacts>,
    /// Every parameter, with its value on the evaluation date.
    pub assumptions: Vec<Assumption>,
    /// Each data table read.
    pub sources: Vec<SourceFacts>,
    /// Rows over all tables.
    pub totals: Totals,
    /// The directives evaluated.
    pub directives: Vec<DirectiveFacts>,
    /// The waivers applied.
    pub waivers: Vec<WaiverFacts>,
    /// Waivers not applied (expired, not yet valid, unknown target), as text.
    pub waiver_notes: Vec<String>,
    /// The part of the dataset the run's reports cover (`--scope`); `null` for all of it.
    pub scope: Option<ScopeFacts>,
}

/// What grades assess.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Grading {
    /// The grading period's label.
    pub period: Option<String>,
    /// Its first day.
    pub start: Option<String>,
    /// Its last day.
    pub end: Option<String>,
    /// Directives counted in grades.
    pub directives: Vec<Window>,
    /// Directives in force in the run, reported, not graded.
    pub not_graded: Vec<Window>,
}

/// The days a directive is in force.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Window {
    /// The directive's key.
    pub key: String,
    /// Its title.
    pub title: String,
    /// First day in force.
    pub from: Option<String>,
    /// Last day in force.
    pub until: Option<String>,
}

/// The working calendar.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CalendarFacts {
    /// What it is.
    pub label: String,
    /// Its file.
    pub file: String,
    /// Where its days come from.
    pub source: String,
    /// The years it lists.
    pub years: Vec<i32>,
    /// False when the run's year is not listed.
    pub covers_year: bool,
}

/// The policy set.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PolicyFacts {
    /// Its name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// Its version.
    pub version: String,
    /// SHA-256 of its files.
    pub hash: String,
    /// The hash's first 12 digits.
    pub short_hash: String,
    /// The document it encodes.
    pub source: Option<String>,
}

/// The assessment's grades.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AssessmentFacts {
    /// Its title.
    pub title: String,
    /// Its note.
    pub note: Option<String>,
    /// Member grades, best first.
    pub member_grades: Vec<GradeFacts>,
    /// Organization grades, best first.
    pub organization_grades: Vec<GradeFacts>,
}

/// One grade.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GradeFacts {
    /// Its name.
    pub grade: String,
    /// What it means.
    pub description: Option<String>,
    /// The condition that gives it (Rhai).
    pub when: Option<String>,
}

/// A period of the run.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PeriodFacts {
    /// Its name.
    pub name: String,
    /// Its label.
    pub label: String,
    /// First day.
    pub start: Option<String>,
    /// Last day.
    pub end: Option<String>,
    /// True when the start is each member's own date.
    pub per_subject: bool,
}

/// Where a parameter's value comes from.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BasisName {
    /// Stated in the source document.
    Source,
    /// Chosen where the source is silent (`reason` says why).
    Assumption,
}

/// A parameter, with its value on the evaluation date.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Assumption {
    /// Its name.
    pub name: String,
    /// Its label.
    pub label: String,
    /// Its value as text.
    pub value: String,
    /// Its unit.
    pub unit: Option<String>,
    /// The day this value holds from.
    pub from: Option<String>,
    /// `source` or `assumption`.
    pub basis: BasisName,
    /// Why this value (assumptions).
    pub reason: Option<String>,
    /// The source's words (source values).
    pub quote: Option<String>,
}

/// A data table read.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SourceFacts {
    /// The table's name.
    pub table: String,
    /// Its label.
    pub label: Option<String>,
    /// The file (and sheet) read.
    pub file: String,
    /// Its encoding.
    pub encoding: String,
    /// Rows read.
    pub read: u64,
    /// Rows loaded.
    pub loaded: u64,
    /// Rows rejected.
    pub rejected: u64,
}

/// Rows over all tables.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Totals {
    /// Rows read.
    pub read: u64,
    /// Rows loaded.
    pub loaded: u64,
    /// Rows rejected.
    pub rejected: u64,
}

/// A directive evaluated.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DirectiveFacts {
    /// Its key.
    pub key: String,
    /// Its title.
    pub title: String,
    /// Its document number.
    pub document: Option<String>,
    /// Who issued it.
    pub issuer: Option<String>,
    /// When.
    pub issued_on: Option<String>,
}

/// A waiver applied.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WaiverFacts {
    /// The subject waived.
    pub subject_id: String,
    /// Its name.
    pub subject_name: Option<String>,
    /// The rule whose finding was waived.
    pub rule: String,
    /// Why.
    pub reason: Option<String>,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// First day it holds.
    pub valid_from: Option<String>,
    /// Last day it holds.
    pub valid_until: Option<String>,
}

/// An id and a name.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Named {
    /// The id.
    pub id: String,
    /// The name.
    pub name: String,
}

/// A bar of a chart.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Bar {
    /// What it stands for.
    pub label: String,
    /// Its value (hours).
    pub value: f64,
}

/// A member report's data.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Member {
    /// The member's id.
    pub id: String,
    /// The name.
    pub name: String,
    /// Employment status as in the data.
    pub employment: String,
    /// … in Chinese.
    pub employment_cn: String,
    /// The member's branch.
    pub branch: Named,
    /// The community the member lives in.
    pub residence_community: Named,
    /// The branch's contact community.
    pub contact_community: Named,
    /// The grade.
    pub grade: String,
    /// What the grade means.
    pub grade_description: Option<String>,
    /// Every finding counted.
    pub tally: Tally,
    /// Findings by directive.
    pub directives: Vec<DirectiveSection>,
    /// 12 bars: verified hours per month of the as-of year.
    pub hours_by_month: Vec<Bar>,
    /// Their sum.
    pub hours_total: f64,
    /// The hours the grade used (the assessment's `hours` aggregate).
    pub graded_hours: f64,
    /// Findings that enter grades, counted.
    pub grade_tally: Tally,
}

/// A subject's findings of one directive.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DirectiveSection {
    /// The directive's key.
    pub key: String,
    /// Its title.
    pub title: String,
    /// Its document number.
    pub document: Option<String>,
    /// Who issued it.
    pub issuer: Option<String>,
    /// The worst status of the findings.
    pub status: String,
    /// … in Chinese.
    pub status_cn: String,
    /// The findings.
    pub findings: Vec<FindingFacts>,
}

/// A finding as a report shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FindingFacts {
    /// The rule's id.
    pub rule: String,
    /// Its title.
    pub title: String,
    /// Its version.
    pub version: String,
    /// The status.
    pub status: String,
    /// … in Chinese.
    pub status_cn: String,
    /// The rule's severity.
    pub severity: String,
    /// The message.
    pub message: String,
    /// The clause quoted.
    pub clause: String,
    /// Its document.
    pub document: String,
    /// The period judged.
    pub period: Option<PeriodSpan>,
    /// The evidence.
    pub evidence: Vec<EvidenceItem>,
    /// Lines of the data files the finding rests on.
    pub records: Vec<RecordLines>,
}

/// The period a finding judged.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PeriodSpan {
    /// Its label.
    pub name: String,
    /// First day.
    pub start: Option<String>,
    /// Last day.
    pub end: Option<String>,
}

/// One piece of evidence.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EvidenceItem {
    /// Its name in the rule file.
    pub name: String,
    /// Its label.
    pub label: String,
    /// Its value as text.
    pub value: String,
}

/// Lines of one data file.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RecordLines {
    /// The evidence name.
    pub name: String,
    /// The file.
    pub file: Option<String>,
    /// Its line numbers, `3, 7`.
    pub lines: String,
}

/// A branch report's data.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Branch {
    /// The branch's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its contact community.
    pub contact_community: Named,
    /// Its grade.
    pub grade: String,
    /// What the grade means.
    pub grade_description: Option<String>,
    /// Its members.
    pub members: Vec<MemberRow>,
    /// How many.
    pub member_count: usize,
    /// Compliance per directive over its members.
    pub compliance: Vec<Compliance>,
    /// The members' grade distribution.
    pub grades: Vec<GradeShare>,
    /// The branch's own findings, by directive.
    pub own: Vec<DirectiveSection>,
    /// Hours per member.
    pub hours_chart: Vec<Bar>,
}

/// A member in a branch report.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MemberRow {
    /// The member's id.
    pub id: String,
    /// The name.
    pub name: String,
    /// The grade.
    pub grade: String,
    /// The hours the grade used.
    pub hours: f64,
    /// Failing findings that enter grades.
    pub fails: i64,
    /// Warnings that enter grades.
    pub warns: i64,
}

/// Compliance with one directive over a set of subjects.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Compliance {
    /// The directive's key.
    pub key: String,
    /// Its title.
    pub title: String,
    /// Its document number.
    pub document: Option<String>,
    /// Subjects it applies to.
    pub applicable: i64,
    /// … that do not fail it.
    pub passing: i64,
    /// … that warn.
    pub warning: i64,
    /// … that fail it.
    pub failing: i64,
    /// `passing` as % of `applicable`.
    pub rate: f64,
}

/// How many subjects have a grade.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GradeShare {
    /// The grade.
    pub label: String,
    /// Subjects with it.
    pub value: i64,
    /// … in %.
    pub share: f64,
}

/// A community report's data (verified hours of the as-of year).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Community {
    /// The community's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its district.
    pub district: String,
    /// The year.
    pub year: i32,
    /// Members who served there.
    pub members: Vec<ServingMember>,
    /// Members living there.
    pub residents: usize,
    /// Hours per branch of the members who served there.
    pub from: Vec<BranchHours>,
    /// Hours per service category.
    pub hours_by_category: Vec<Bar>,
    /// All hours.
    pub hours_total: f64,
    /// All services.
    pub services_total: usize,
}

/// A member who served in a community.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServingMember {
    /// The member's id.
    pub id: String,
    /// The name.
    pub name: String,
    /// The member's branch.
    pub branch: Named,
    /// Whether the member lives there.
    pub resident: bool,
    /// Verified hours there.
    pub hours: f64,
    /// Services there.
    pub services: i64,
    /// The member's grade.
    pub grade: String,
}

/// Hours a branch's members served in a community.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BranchHours {
    /// The branch's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its members who served.
    pub members: i64,
    /// Their hours.
    pub hours: f64,
}

/// The summary report's data.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Summary {
    /// Members evaluated.
    pub members: usize,
    /// Unit branches evaluated.
    pub branches: usize,
    /// Findings.
    pub findings: u64,
    /// Findings per status.
    pub statuses: BTreeMap<String, i64>,
    /// Compliance per directive over all members and branches.
    pub compliance: Vec<Compliance>,
    /// Member grade distribution.
    pub member_grades: Vec<GradeShare>,
    /// Branch grade distribution.
    pub branch_grades: Vec<GradeShare>,
    /// The most common failures (up to 10).
    pub top_failures: Vec<TopFailure>,
    /// Every unit branch, best first.
    pub branches_ranked: Vec<RankedBranch>,
    /// The first problems met while grading.
    pub grade_errors: Vec<String>,
    /// How many there were.
    pub grade_error_count: usize,
}

/// A rule that fails often.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TopFailure {
    /// Its directive.
    pub directive: String,
    /// The rule's id.
    pub rule: String,
    /// Its title.
    pub title: String,
    /// Failing findings.
    pub fails: i64,
    /// Warnings.
    pub warns: i64,
    /// The first failing finding's message.
    pub example: String,
}

/// A branch in the ranking.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RankedBranch {
    /// The branch's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its grade.
    pub grade: String,
    /// Its members.
    pub members: i64,
    /// … that fail no rule.
    pub members_passing: i64,
    /// `members_passing` as % of `members`.
    pub pass_rate: f64,
    /// The branch's own failing findings.
    pub own_fails: i64,
    /// Its place, from 1.
    pub rank: usize,
}

/// The JSON Schema of [`Context`] (draft 7), pretty-printed with a final newline, as
/// `rulebook schema --kind report` prints it and `report-templates/context.schema.json` ships it.
pub fn schema_text() -> String {
    let schema = SchemaSettings::draft07()
        .with_transform(RestrictFormats::default())
        .into_generator()
        .into_root_schema_for::<Context>();
    let mut value = schema.to_value();
    if let Value::Object(obj) = &mut value {
        let mut head = serde_json::Map::new();
        if let Some(meta) = obj.remove("$schema") {
            head.insert("$schema".into(), meta);
        }
        head.insert("title".into(), "rulebook report template data".into());
        head.insert(
            "$comment".into(),
            "Generated by `rulebook schema --kind report` from src/report/context.rs; do not \
             edit. Regenerate with `cargo run -- schema --kind report > \
             report-templates/context.schema.json`."
                .into(),
        );
        obj.remove("title");
        head.append(obj);
        *obj = head;
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}
