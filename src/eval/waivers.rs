//! Waivers: approved exemptions read from the waivers table (`[roles.waivers]`, by default
//! `waivers`, when the policy set declares it). A waiver in force on `--as-of` turns a subject's failing finding of its directive
//! (or one rule) into `waived`; every other waiver row is listed with why it was not applied.

use super::value::{Scalar, Values};
use crate::data::{ColumnData, Dataset};
use crate::policy::PolicySet;
use chrono::NaiveDate;
use std::collections::HashMap;

/// An approved exemption (a row of the waivers table).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Waiver {
    /// The member or organization exempted.
    pub subject_id: String,
    /// The directive it is exempted from.
    pub directive: String,
    /// Only this rule of the directive (`None`: all its rules).
    pub rule: Option<String>,
    /// Why, as approved.
    pub reason: String,
    /// Who approved it.
    pub approved_by: String,
    /// First day it holds (text as written).
    pub valid_from: String,
    /// Last day it holds (`None`: open-ended).
    pub valid_until: Option<String>,
    /// The file it was read from.
    pub file: String,
    /// Its line in that file.
    pub line: u32,
}

/// Read the waivers table (if the policy set declares it): those in force on `as_of` by
/// subject, and notes on the others.
pub(super) fn read_waivers(
    policy: &PolicySet,
    data: &Dataset,
    as_of: NaiveDate,
    subject_known: &dyn Fn(&str) -> bool,
) -> (HashMap<String, Vec<Waiver>>, Vec<String>) {
    let mut active: HashMap<String, Vec<Waiver>> = Default::default();
    let mut notes = Vec::new();
    let role = &policy.roles.waivers;
    let (Some(ts), Some(t)) = (
        policy.schema.tables.get(&role.table),
        data.tables.get(role.table.as_str()),
    ) else {
        return (active, notes);
    };
    let tidx = policy.schema.tables.get_index_of(&role.table).unwrap_or(0);
    let col = |name: &str, r: usize| -> Option<String> {
        let ci = ts.column(name)?;
        match Values::cell(t, tidx, ci, r) {
            Scalar::None => None,
            Scalar::Date(d) => Some(crate::dates::date_text(d)),
            Scalar::Id(i) => Some(data.ids.resolve(i).to_string()),
            Scalar::TextRef(..) | Scalar::Str(_) => match &t.columns[ci] {
                ColumnData::Text(v) => Some(v.get(r).to_string()),
                _ => None,
            },
            _ => None,
        }
    };
    for r in 0..t.len() {
        let w = Waiver {
            subject_id: col(&role.subject, r).unwrap_or_default(),
            directive: col(&role.directive, r).unwrap_or_default(),
            rule: col(&role.rule, r),
            reason: col(&role.reason, r).unwrap_or_default(),
            approved_by: col(&role.approved_by, r).unwrap_or_default(),
            valid_from: col(&role.valid_from, r).unwrap_or_default(),
            valid_until: col(&role.valid_until, r),
            file: t.file.clone(),
            line: t.lines.get(r),
        };
        let at = format!("{}:{}", w.file, w.line);
        let from = crate::policy::parse_date(&w.valid_from);
        let until = w.valid_until.as_deref().and_then(crate::policy::parse_date);
        if !subject_known(&w.subject_id) {
            notes.push(format!(
                "{at}: waiver for unknown member or organization `{}` not applied",
                w.subject_id
            ));
        } else if policy.directive(&w.directive).is_none() {
            notes.push(format!(
                "{at}: waiver names unknown directive `{}`; not applied",
                w.directive
            ));
        } else if let Some(rule) = w.rule.as_deref().filter(|r| {
            !policy
                .rules
                .iter()
                .any(|x| x.id == *r && x.directive == w.directive)
        }) {
            notes.push(format!(
                "{at}: waiver names rule `{rule}`, which directive `{}` does not have; not applied",
                w.directive
            ));
        } else if until.is_some_and(|u| u < as_of) {
            notes.push(format!(
                "{at}: waiver for `{}` expired on {}; not applied",
                w.subject_id,
                w.valid_until.clone().unwrap_or_default()
            ));
        } else if from.is_some_and(|f| f > as_of) {
            notes.push(format!(
                "{at}: waiver for `{}` is valid only from {}; not applied",
                w.subject_id, w.valid_from
            ));
        } else {
            active.entry(w.subject_id.clone()).or_default().push(w);
        }
    }
    (active, notes)
}
