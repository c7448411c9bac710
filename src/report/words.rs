//! Data as people read it: the names, Chinese words and evidence sentences that reports and
//! the findings workbook show instead of ids, column names and enumeration codes.
//!
//! [`Words`] resolves, through the policy set's schema and `[roles]`
//! ([`crate::policy::Roles`]), a subject's name, its branch and its community, an enumerated
//! value's Chinese word, an id with the name it stands for, and a finding's evidence: as
//! labelled items for the PDFs ([`Words::evidence_item`]) or as one sentence for a
//! spreadsheet cell ([`Words::evidence_text`]).

use super::context as ctx;
use crate::data::Dataset;
use crate::eval::Run;
use crate::findings::Finding;
use crate::policy::model::{AggOp, Basis};
use crate::policy::{PolicySet, Roles};
use serde_json::Value;

/// Names and words for the data of one run.
#[derive(Clone, Copy)]
pub struct Words<'a> {
    /// The evaluated run.
    pub run: &'a Run<'a>,
    /// Its policy set.
    pub policy: &'a PolicySet,
    /// Its dataset.
    pub data: &'a Dataset,
}

/// Line numbers shown in an evidence sentence before the rest are counted (`等 40 行`).
const LINES_SHOWN: usize = 20;

impl<'a> Words<'a> {
    /// The words of `run`.
    pub fn new(run: &'a Run<'a>) -> Words<'a> {
        Words {
            run,
            policy: run.policy,
            data: run.data,
        }
    }

    /// The table of the member subject kind.
    pub fn member_table(&self) -> Option<&str> {
        self.policy.subjects.get("member").map(|s| s.table.as_str())
    }

    /// The table of the organization subject kind.
    pub fn org_table(&self) -> Option<&str> {
        self.policy
            .subjects
            .get("organization")
            .map(|s| s.table.as_str())
    }

    /// The member column that references the organization table (`branch_id`).
    pub fn branch_column(&self) -> Option<String> {
        let mt = self.policy.schema.tables.get(self.member_table()?)?;
        let ot = self.org_table()?;
        mt.columns
            .iter()
            .find(|c| c.references.as_deref() == Some(ot))
            .map(|c| c.name.clone())
    }

    /// The id of the member in row `row`.
    pub fn member_id(&self, row: usize) -> String {
        let mt = self.member_table().unwrap_or("members");
        let key = self.policy.schema.tables[mt]
            .key_name()
            .unwrap_or("member_id")
            .to_string();
        self.run.cell_text(mt, row, &key).unwrap_or_default()
    }

    /// One piece of evidence as people read it: the label the policy set gives the name (an
    /// aggregate's, a parameter's or the subject column's) and the value in Chinese (an
    /// enumerated value as its Chinese word, an id with the name it stands for).
    pub fn evidence_item(&self, kind: &str, name: &str, value: &Value) -> ctx::EvidenceItem {
        let subject_table = self.policy.subjects.get(kind).map(|s| s.table.as_str());
        // The table and column the value comes from, if it is one column's value.
        let (label, column) = if let Some(a) = self.policy.aggregates.get(name) {
            let col = a.pick.as_deref().or(match a.op {
                AggOp::Min | AggOp::Max => a.column.as_deref(),
                _ => None,
            });
            (a.label.clone(), col.map(|c| (a.table.as_str(), c)))
        } else if let Some(p) = self.policy.params.get(name) {
            (p.label.clone(), None)
        } else if let Some(c) = subject_table
            .and_then(|t| self.policy.schema.tables.get(t))
            .and_then(|t| t.columns.iter().find(|c| c.name == name))
        {
            (c.label.clone(), subject_table.map(|t| (t, name)))
        } else {
            (name.to_string(), None)
        };
        let value = match (column, value) {
            (Some((table, column)), Value::String(s)) => self.cell_words(table, column, s),
            _ => super::json_text(value),
        };
        ctx::EvidenceItem {
            name: name.to_string(),
            label,
            value,
        }
    }

    /// A cell's value as people read it: an enumerated value as its Chinese word, an id that
    /// references a table with names as `C02（东亭社区）`, anything else as it is.
    pub fn cell_words(&self, table: &str, column: &str, value: &str) -> String {
        let Some(c) = (self.policy.schema.tables.get(table))
            .and_then(|t| t.columns.iter().find(|c| c.name == column))
        else {
            return value.to_string();
        };
        if !c.values.is_empty() {
            return self.zh(table, column, value);
        }
        let target = c.references.as_deref().or_else(|| {
            // A table's own key names its rows.
            let t = self.policy.schema.tables.get(table)?;
            (t.key_name() == Some(column)).then_some(table)
        });
        let name = target.and_then(|t| self.name_of(t, value));
        match name {
            Some(n) if !n.is_empty() => format!("{value}（{n}）"),
            _ => value.to_string(),
        }
    }

    /// The name of the row with key `id` in `table`: a subject's, or a community's.
    pub fn name_of(&self, table: &str, id: &str) -> Option<String> {
        if let Some((kind, _)) = (self.policy.subjects.iter()).find(|(_, s)| s.table == table) {
            let row = self.run.subject_row(kind, id)?;
            return Some(self.subject_name(kind, row));
        }
        (table == self.roles().communities.table).then(|| self.community_name(id))
    }

    /// The policy set's `[roles]`: which tables and columns reports read.
    pub fn roles(&self) -> &Roles {
        &self.policy.roles
    }

    /// The column holding a subject kind's names for people.
    pub fn name_column(&self, kind: &str) -> &str {
        self.policy
            .subjects
            .get(kind)
            .map_or("name", |s| s.name_column.as_str())
    }

    /// Text of a column of a subject's row (empty when missing).
    pub fn subject_text(&self, kind: &str, row: usize, column: &str) -> String {
        let table = match kind {
            "member" => self.member_table(),
            _ => self.org_table(),
        };
        table
            .and_then(|t| self.run.cell_text(t, row, column))
            .unwrap_or_default()
    }

    /// A subject's name for people.
    pub fn subject_name(&self, kind: &str, row: usize) -> String {
        self.subject_text(kind, row, self.name_column(kind))
    }

    /// The row of a community by id, in the `[roles.communities]` table.
    pub fn community_row(&self, id: &str) -> Option<usize> {
        let table = self.roles().communities.table.as_str();
        self.policy.schema.tables.get(table)?;
        let sym = self.data.ids.get(id)?;
        let row = self.data.tables.get(table)?.row_of(sym)?;
        Some(row as usize)
    }

    /// Text of a column of a community's row (empty when missing).
    pub fn community_text(&self, row: usize, column: &str) -> String {
        let table = self.roles().communities.table.as_str();
        self.run.cell_text(table, row, column).unwrap_or_default()
    }

    /// The name of the community with id `id` (empty when unknown).
    pub fn community_name(&self, id: &str) -> String {
        self.community_row(id)
            .map(|row| self.community_text(row, &self.roles().communities.name))
            .unwrap_or_default()
    }

    /// An organization as an id and a name.
    pub fn organization(&self, id: String) -> ctx::Named {
        let name = (self.run.subject_row("organization", &id))
            .map(|r| self.subject_name("organization", r))
            .unwrap_or_default();
        ctx::Named { id, name }
    }

    /// A community as an id and a name.
    pub fn community(&self, id: String) -> ctx::Named {
        let name = self.community_name(&id);
        ctx::Named { id, name }
    }

    /// The Chinese word for an enumerated value of `table.column` (its first alias).
    pub fn zh(&self, table: &str, column: &str, value: &str) -> String {
        (self.policy.schema.tables.get(table))
            .and_then(|t| t.columns.iter().find(|c| c.name == column))
            .and_then(|c| c.values.iter().find(|(k, _)| k == value))
            .and_then(|(_, aliases)| aliases.first().cloned())
            .unwrap_or_else(|| value.to_string())
    }

    /// The key column of the organization table.
    pub fn org_key(&self) -> &str {
        self.org_table()
            .and_then(|ot| self.policy.schema.tables.get(ot))
            .and_then(|t| t.key_name())
            .unwrap_or("org_id")
    }

    /// Every parameter of the policy set with its value in the run, whether it is an
    /// assumption or from the source, and why (the reports' appendix, the workbook's
    /// `说明`).
    pub fn assumptions(&self) -> Vec<ctx::Assumption> {
        let day = |d: Option<chrono::NaiveDate>| d.map(|x| x.to_string());
        self.policy
            .params
            .values()
            .map(|p| {
                let v = &self.run.params[&p.name];
                ctx::Assumption {
                    name: p.name.clone(),
                    label: p.label.clone(),
                    value: super::toml_text(&v.value),
                    unit: p.unit.clone(),
                    from: day(v.from),
                    basis: match p.basis {
                        Basis::Assumption => ctx::BasisName::Assumption,
                        Basis::Source => ctx::BasisName::Source,
                    },
                    reason: p.reason.clone(),
                    quote: p.quote.clone(),
                }
            })
            .collect()
    }

    /// The input rows behind a finding's aggregates (its evidence's `records`): per
    /// aggregate with rows, its name, file and line numbers.
    fn record_lines<'f>(&self, f: &'f Finding) -> Vec<(&'f str, Option<&'f str>, Vec<u64>)> {
        let Some(records) = f.evidence.get("records").and_then(Value::as_object) else {
            return Vec::new();
        };
        (records.iter())
            .map(|(k, v)| {
                let lines = (v["lines"].as_array())
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                (k.as_str(), v["file"].as_str(), lines)
            })
            .filter(|(_, _, lines): &(_, _, Vec<u64>)| !lines.is_empty())
            .collect()
    }

    /// The input rows behind a finding's aggregates, as the PDFs list them (`3, 7`).
    pub fn records(&self, f: &Finding) -> Vec<ctx::RecordLines> {
        (self.record_lines(f).into_iter())
            .map(|(name, file, lines)| ctx::RecordLines {
                name: name.to_string(),
                file: file.map(str::to_string),
                lines: (lines.iter().map(u64::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect()
    }

    /// A finding's evidence as one sentence for people (a spreadsheet cell): each labelled
    /// value as `label：value` (with the parameter's unit), the input rows behind an
    /// aggregate after its value (`（services.csv 第 12、15 行）`), separated by `；` (a
    /// waiver is told in the message). Values a rule computes itself (its `let`) have no label in the
    /// policy language and are left out; the message says what they mean.
    pub fn evidence_text(&self, f: &Finding) -> String {
        let mut records = self.record_lines(f);
        let mut parts = Vec::new();
        for (name, value) in &f.evidence {
            // A waiver is told in the message.
            if name == "records" || name == "waiver" {
                continue;
            }
            let item = self.evidence_item(&f.subject_kind, name, value);
            if item.label == *name {
                continue;
            }
            let mut part = format!("{}：{}", item.label, item.value);
            if let Some(unit) = (self.policy.params.get(name.as_str()))
                .and_then(|p| p.unit.as_deref())
                .filter(|_| !value.is_null())
            {
                part.push(' ');
                part.push_str(unit);
            }
            if let Some(i) = records.iter().position(|r| r.0 == name.as_str()) {
                let (_, file, lines) = records.remove(i);
                part.push_str(&format!("（{}）", rows_text(file, &lines)));
            }
            parts.push(part);
        }
        for (name, file, lines) in records {
            let label = (self.policy.aggregates.get(name)).map_or(name, |a| a.label.as_str());
            parts.push(format!("{label}：{}", rows_text(file, &lines)));
        }
        parts.join("；")
    }

    /// The branch and the community of a subject, for lists: a member's branch (the member
    /// column that references the organization table) and the community it lives in
    /// (`[roles.members] residence`); an organization itself and its contact community
    /// (`[roles.organizations] community`). Empty where the data has none.
    pub fn placement(&self, kind: &str, row: usize) -> (ctx::Named, ctx::Named) {
        let empty = || ctx::Named {
            id: String::new(),
            name: String::new(),
        };
        match kind {
            "member" => {
                let branch = (self.branch_column())
                    .map(|c| self.subject_text("member", row, &c))
                    .unwrap_or_default();
                let home = self.subject_text("member", row, &self.roles().members.residence);
                (self.organization(branch), self.community(home))
            }
            "organization" => {
                let id = self.subject_text("organization", row, self.org_key());
                let contact =
                    self.subject_text("organization", row, &self.roles().organizations.community);
                (self.organization(id), self.community(contact))
            }
            _ => (empty(), empty()),
        }
    }
}

/// Where input rows are: `services.csv 第 12、15 行` (the first [`LINES_SHOWN`] lines, then
/// how many there are in all).
fn rows_text(file: Option<&str>, lines: &[u64]) -> String {
    let shown: Vec<String> = lines.iter().take(LINES_SHOWN).map(u64::to_string).collect();
    let more = if lines.len() > LINES_SHOWN {
        format!(" 等，共 {} 行", lines.len())
    } else {
        " 行".to_string()
    };
    match file {
        Some(f) => format!("{f} 第 {}{more}", shown.join("、")),
        None => format!("第 {}{more}", shown.join("、")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn rows_are_listed_then_counted() {
        assert_eq!(
            rows_text(Some("services.csv"), &[12, 15]),
            "services.csv 第 12、15 行"
        );
        assert_eq!(rows_text(None, &[3]), "第 3 行");
        let many: Vec<u64> = (1..=25).collect();
        let text = rows_text(Some("a.csv"), &many);
        assert!(text.starts_with("a.csv 第 1、2、"), "{text}");
        assert!(text.ends_with("、20 等，共 25 行"), "{text}");
    }

    #[test]
    fn evidence_reads_as_chinese() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let set = crate::policy::load(&root.join("policies")).unwrap();
        let ds = crate::data::load(
            &root.join("samples/hubei-2020"),
            &set.schema,
            &Default::default(),
        )
        .unwrap();
        let run = crate::eval::prepare(&set, &ds, None).unwrap();
        let words = Words::new(&run);
        let finding = |rule: &str, id: &str| {
            let kind = if id.starts_with('M') {
                "member"
            } else {
                "organization"
            };
            let row = run.subject_row(kind, id).unwrap();
            let index = run.rules().position(|r| r.id == rule).unwrap();
            run.rule_finding(index, row).unwrap()
        };
        // Hours with the rows behind them, and a parameter with its unit; the rule's own
        // values (`counted_hours`) have no label and are left out.
        let text = words.evidence_text(&finding("hours.yearly", "M024"));
        assert_eq!(
            text,
            "本周期已核实服务时长（小时）：17（services.csv 第 334、391、442、467 行）；\
             本周期未核实服务时长（小时）：4（services.csv 第 409 行）；\
             每个周期在社区服务的时长要求：20 小时"
        );
        // An id with the name it stands for; enumerated values in Chinese.
        let text = words.evidence_text(&finding("dual.member-report", "M026"));
        assert!(text.contains("居住地社区编号：C"), "{text}");
        assert!(text.contains("社区）"), "{text}");
        for t in [
            &text,
            &words.evidence_text(&finding("grid.branch-work-team", "B05")),
        ] {
            assert!(!t.contains('{') && !t.contains('"'), "{t}");
        }
        let (branch, community) =
            words.placement("member", run.subject_row("member", "M024").unwrap());
        assert_eq!(
            (branch.id.as_str(), community.name.as_str()),
            ("B02", "万松园社区")
        );
        let (me, contact) = words.placement(
            "organization",
            run.subject_row("organization", "B04").unwrap(),
        );
        assert_eq!(
            (me.name.as_str(), contact.id.as_str()),
            ("省直机关某委机关第一党支部", "C05")
        );
    }
}
