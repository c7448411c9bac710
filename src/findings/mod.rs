//! Findings per the findings contract: one per (rule, subject), with status, Chinese message,
//! evidence and lineage, the source clause and the period.
//!
//! This module holds the types ([`Finding`], [`Status`], [`SourceRef`], [`PeriodRef`],
//! [`Format`]); [`mod@encode`] writes findings as JSON, JSON Lines or CSV in a deterministic
//! order (and holds the byte-level JSON and CSV writing the evaluator's stream uses), and
//! [`summary`] counts them for the terminal summary. What those modules offer is re-exported
//! here too (`findings::FindingWriter`, `findings::Summary`, …).

use crate::policy::model::Severity;
use serde::Serialize;
use std::sync::Arc;

pub mod encode;
pub mod summary;

pub use encode::{
    CsvTemplate, FindingParts, FindingWriter, LineTemplate, Template, WriteJson, encode,
    encode_into, encode_with, json,
};
pub use summary::{Summary, render_summary};

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

/// The severity as the findings contract writes it (`critical`, `major`, `minor`).
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Major => "major",
        Severity::Minor => "minor",
    }
}
