//! Assessment reports: grades from `policies/assessment.toml`, report data for members,
//! branches, communities and the whole dataset, Tera templates rendered to Typst markup
//! (data escaped by default), and PDFs compiled in-process, in parallel.
//!
//! The data each template receives is documented in `report-templates/README.md`.

mod error;
mod grade;
mod render;
pub mod typst;

pub use error::Error;
pub use grade::Tally;
pub use render::{
    GlyphProblem, RenderOptions, Rendered, check_glyphs, file_name, render, render_typst,
    templates, tera_error,
};

use crate::data::Dataset;
use crate::eval::{Outcomes, Run};
use crate::findings::{Finding, Status};
use crate::policy::model::{Basis, Severity};
use crate::policy::{Grade, PolicySet};
use crate::script;
use chrono::{Datelike, NaiveDate};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Which reports to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// One report per member.
    Member,
    /// One report per branch (党支部).
    Branch,
    /// One report per community (社区).
    Community,
    /// The summary of the whole run.
    Summary,
    /// All of the above.
    All,
}

/// One report ready to render: the template, its data, and where the PDF goes.
#[derive(Debug, Clone)]
pub struct Job {
    /// `member`, `branch`, `community` or `summary`.
    pub kind: &'static str,
    /// The subject's id (empty for the summary).
    pub id: String,
    /// Output path relative to the output folder.
    pub file: PathBuf,
    /// The data the template receives (see `report-templates/README.md`).
    pub context: Value,
}

/// Everything reports are made from.
///
/// Grades and summaries come from the [`Outcomes`] of the run (one status per rule and
/// subject), so a province needs no [`Finding`]s in memory; the findings a report shows are
/// made again for its subject.
pub struct Model<'a> {
    /// The evaluated run.
    pub run: &'a Run<'a>,
    /// Its policy set.
    pub policy: &'a PolicySet,
    /// Its dataset.
    pub data: &'a Dataset,
    outcomes: &'a Outcomes,
    /// Per subject kind, its rules in run order.
    kind_rules: HashMap<String, Vec<RuleAt<'a>>>,
    /// Grade per member row and per organization row (index into the assessment's list).
    member_grades: Vec<Option<u16>>,
    org_grades: Vec<Option<u16>>,
    /// Whether each member (by row) fails any rule.
    member_fails: Vec<bool>,
    /// The first problems met while grading (a grade expression that failed)…
    pub grade_errors: Vec<String>,
    /// … and how many there were in all.
    pub grade_error_count: usize,
    /// Member rows per organization id (members whose branch is the organization).
    members_of: HashMap<String, Vec<usize>>,
    /// Waived findings, as every report's appendix lists them.
    waivers: Vec<Value>,
    /// Verified service rows by member row and by community (built on first use).
    service_index: std::sync::OnceLock<ServiceIndex>,
    /// Members living in each community, by community id (built on first use).
    residents: std::sync::OnceLock<HashMap<String, usize>>,
}

/// How many grading problems are kept to be shown; the rest are counted.
const GRADE_ERRORS_KEPT: usize = 20;

/// A rule as reports use it.
#[derive(Debug, Clone, Copy)]
struct RuleAt<'a> {
    /// Index in [`Run::rules`] (and in [`Outcomes`]).
    index: usize,
    directive: &'a str,
    severity: Severity,
    /// Its findings enter grades (its directive is assessed in the grading period).
    graded: bool,
}

/// Verified services (start date, hours, row), grouped once so that each report reads only
/// its own rows.
#[derive(Default)]
struct ServiceIndex {
    by_member: HashMap<usize, Vec<(NaiveDate, f64, usize)>>,
    by_community: HashMap<crate::data::Sym, Vec<(NaiveDate, f64, usize)>>,
    /// Whether the services table has the columns these reports use.
    usable: bool,
}

fn pct(n: i64, d: i64) -> f64 {
    if d == 0 {
        0.0
    } else {
        (n as f64) * 100.0 / (d as f64)
    }
}

impl<'a> Model<'a> {
    /// The report model of `run`, whose findings' statuses are `outcomes` (from
    /// [`Run::stream`] or [`Run::outcomes`]).
    pub fn new(run: &'a Run<'a>, outcomes: &'a Outcomes) -> Model<'a> {
        let mut kind_rules: HashMap<String, Vec<RuleAt>> = HashMap::new();
        for (index, r) in run.rules().enumerate() {
            kind_rules
                .entry(r.subject.clone())
                .or_default()
                .push(RuleAt {
                    index,
                    directive: &r.directive,
                    severity: r.severity,
                    graded: run.graded(&r.directive),
                });
        }
        let mut m = Model {
            run,
            policy: run.policy,
            data: run.data,
            outcomes,
            kind_rules,
            member_grades: Vec::new(),
            org_grades: Vec::new(),
            member_fails: Vec::new(),
            grade_errors: Vec::new(),
            grade_error_count: 0,
            members_of: HashMap::new(),
            waivers: Vec::new(),
            service_index: Default::default(),
            residents: Default::default(),
        };
        m.index_members();
        m.member_fails = vec![false; m.rows_of("member")];
        let fails: Vec<(usize, bool)> = run
            .subjects("member")
            .into_par_iter()
            .map(|row| (row, m.grade_tally("member", row).fails > 0))
            .collect();
        for (row, f) in fails {
            m.member_fails[row] = f;
        }
        m.grade_all();
        m.waivers = m.waived();
        m
    }

    /// Rows in the table of subject kind `kind`.
    fn rows_of(&self, kind: &str) -> usize {
        self.policy
            .subjects
            .get(kind)
            .and_then(|s| self.data.tables.get(s.table.as_str()))
            .map_or(0, |t| t.len())
    }

    /// The rules of subject kind `kind`.
    fn rules_of(&self, kind: &str) -> &[RuleAt<'a>] {
        self.kind_rules.get(kind).map_or(&[], |v| v.as_slice())
    }

    /// Every waived finding (in run order), as the appendix lists them.
    fn waived(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (index, r) in self.run.rules().enumerate() {
            if self.outcomes.rule_count(index, Status::Waived) == 0 {
                continue;
            }
            for row in self.run.subjects(&r.subject) {
                if self.outcomes.status(index, row) != Status::Waived {
                    continue;
                }
                let Some(f) = self.run.rule_finding(index, row) else {
                    continue;
                };
                let w = |k: &str| f.evidence.get("waiver").and_then(|w| w.get(k)).cloned();
                out.push(json!({
                    "subject_id": f.subject_id,
                    "subject_name": f.subject_name,
                    "rule": f.rule.to_string(),
                    "reason": w("reason"),
                    "approved_by": w("approved_by"),
                    "valid_from": w("valid_from"),
                    "valid_until": w("valid_until"),
                }));
            }
        }
        out
    }

    fn member_table(&self) -> Option<&str> {
        self.policy.subjects.get("member").map(|s| s.table.as_str())
    }

    fn org_table(&self) -> Option<&str> {
        self.policy
            .subjects
            .get("organization")
            .map(|s| s.table.as_str())
    }

    /// The member column that references the organization table (`branch_id`).
    fn branch_column(&self) -> Option<String> {
        let mt = self.policy.schema.tables.get(self.member_table()?)?;
        let ot = self.org_table()?;
        mt.columns
            .iter()
            .find(|c| c.references.as_deref() == Some(ot))
            .map(|c| c.name.clone())
    }

    fn index_members(&mut self) {
        let (Some(mt), Some(bc)) = (
            self.member_table().map(str::to_string),
            self.branch_column(),
        ) else {
            return;
        };
        for row in self.run.subjects("member") {
            if let Some(b) = self.run.cell_text(&mt, row, &bc) {
                self.members_of.entry(b).or_default().push(row);
            }
        }
    }

    fn member_id(&self, row: usize) -> String {
        let mt = self.member_table().unwrap_or("members");
        let key = self.policy.schema.tables[mt]
            .key_name()
            .unwrap_or("member_id")
            .to_string();
        self.run.cell_text(mt, row, &key).unwrap_or_default()
    }

    /// Data every report gets: the document facts and the appendix.
    pub fn common(&self) -> Value {
        let as_of = self.run.as_of;
        let assumptions: Vec<Value> = self
            .policy
            .params
            .values()
            .map(|p| {
                let v = &self.run.params[&p.name];
                json!({
                    "name": p.name,
                    "label": p.label,
                    "value": toml_text(&v.value),
                    "unit": p.unit,
                    "from": v.from.map(|d| d.to_string()),
                    "basis": if p.basis == Basis::Assumption { "assumption" } else { "source" },
                    "reason": p.reason,
                    "quote": p.quote,
                })
            })
            .collect();
        let periods: Vec<Value> = self
            .run
            .periods
            .iter()
            .map(|p| json!({"name": p.name, "label": p.label, "start": p.start.map(|d| d.to_string()), "end": p.end.map(|d| d.to_string()), "per_subject": p.per_subject}))
            .collect();
        let sources: Vec<Value> = self
            .data
            .stats
            .iter()
            .map(|s| json!({"table": s.table, "label": self.policy.schema.tables.get(&s.table).map(|t| t.label.clone()), "file": s.file, "encoding": s.encoding, "read": s.read, "loaded": s.loaded, "rejected": s.rejected}))
            .collect();
        let directives: Vec<Value> = self
            .policy
            .directives
            .iter()
            .filter(|d| self.run.rules().any(|r| r.directive == d.key))
            .map(|d| json!({"key": d.key, "title": d.title, "document": d.document_number, "issuer": d.issuer, "issued_on": d.issued_on.map(|x| x.to_string())}))
            .collect();
        let day = |d: Option<NaiveDate>| d.map(|x| x.to_string());
        let window = |w: &crate::eval::DirectiveWindow| json!({"key": w.key, "title": w.title, "from": day(w.from), "until": day(w.until)});
        let grading_period = self
            .policy
            .assessment
            .as_ref()
            .and_then(|a| a.period.as_deref())
            .and_then(|p| self.run.periods.iter().find(|x| x.name == p));
        let grading = json!({
            "period": grading_period.map(|p| p.label.clone()),
            "start": day(self.run.grading_span.map(|s| s.0)),
            "end": day(self.run.grading_span.map(|s| s.1)),
            "directives": self.run.directives.iter().filter(|w| w.graded).map(window).collect::<Vec<_>>(),
            "not_graded": self.run.directives.iter().filter(|w| w.in_force && !w.graded).map(window).collect::<Vec<_>>(),
        });
        let not_in_force: Vec<Value> = self
            .run
            .directives
            .iter()
            .filter(|w| !w.in_force)
            .map(window)
            .collect();
        json!({
            "grading": grading,
            "not_in_force": not_in_force,
            "calendar": {"label": self.policy.calendar.label, "file": self.policy.calendar.file, "source": self.policy.calendar.source, "years": self.policy.calendar.years, "covers_year": self.run.calendar_note().is_none()},
            "as_of": as_of.to_string(),
            "as_of_cn": format!("{}年{}月{}日", as_of.year(), as_of.month(), as_of.day()),
            "year": as_of.year(), "month": as_of.month(), "day": as_of.day(),
            "policy": {"name": self.policy.name, "title": self.policy.title, "version": self.policy.version, "hash": self.policy.hash, "short_hash": self.policy.short_hash(), "source": self.policy.source},
            "assessment": self.policy.assessment.as_ref().map(|a| json!({
                "title": a.title, "note": a.note,
                "member_grades": a.member.iter().map(|g| json!({"grade": g.name, "description": g.description, "when": g.when.as_ref().map(|e| e.src.clone())})).collect::<Vec<_>>(),
                "organization_grades": a.organization.iter().map(|g| json!({"grade": g.name, "description": g.description, "when": g.when.as_ref().map(|e| e.src.clone())})).collect::<Vec<_>>(),
            })),
            "periods": periods,
            "assumptions": assumptions,
            "sources": sources,
            "totals": {"read": self.data.total_read(), "loaded": self.data.total_loaded(), "rejected": self.data.total_rejected()},
            "directives": directives,
            "waivers": self.waivers,
            "waiver_notes": self.run.waiver_notes,
        })
    }

    fn finding_json(&self, f: &Finding) -> Value {
        let rule = self.run.rules().find(|r| *r.id == *f.rule);
        let mut evidence = Vec::new();
        for (k, v) in &f.evidence {
            if k == "records" {
                continue;
            }
            let label = self
                .policy
                .aggregates
                .get(k)
                .map(|a| a.label.clone())
                .or_else(|| self.policy.params.get(k).map(|p| p.label.clone()))
                .unwrap_or_else(|| k.clone());
            evidence.push(json!({"name": k, "label": label, "value": json_text(v)}));
        }
        let records: Vec<Value> = f
            .evidence
            .get("records")
            .and_then(|r| r.as_object())
            .map(|o| {
                o.iter()
                    .filter(|(_, v)| v["lines"].as_array().is_some_and(|a| !a.is_empty()))
                    .map(|(k, v)| {
                        let lines: Vec<String> = v["lines"]
                            .as_array()
                            .map(|a| a.iter().map(|x| x.to_string()).collect())
                            .unwrap_or_default();
                        json!({"name": k, "file": v["file"], "lines": lines.join(", ")})
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "rule": f.rule.to_string(),
            "title": rule.map(|r| r.title.clone()).unwrap_or_default(),
            "version": f.rule_version.to_string(),
            "status": f.status.name(),
            "status_cn": f.status.chinese(),
            "severity": crate::findings::severity_name(f.severity),
            "message": f.message,
            "clause": f.source.text.to_string(),
            "document": f.source.document.to_string(),
            "period": f.period.as_ref().map(|p| json!({"name": p.name.to_string(), "start": p.start, "end": p.end})),
            "evidence": evidence,
            "records": records,
        })
    }

    /// Findings of a subject grouped by directive, with the worst status of each.
    fn directive_sections(&self, kind: &str, row: usize) -> Vec<Value> {
        let findings = self.run.subject_findings(kind, row);
        let mut out = Vec::new();
        for d in &self.policy.directives {
            let fs: Vec<&Finding> = findings.iter().filter(|f| *f.directive == *d.key).collect();
            let Some(worst) = worst_status(fs.iter().map(|f| f.status)) else {
                continue;
            };
            out.push(json!({
                "key": d.key, "title": d.title, "document": d.document_number, "issuer": d.issuer,
                "status": worst.name(), "status_cn": worst.chinese(),
                "findings": fs.iter().map(|f| self.finding_json(f)).collect::<Vec<_>>(),
            }));
        }
        out
    }

    /// Verified service hours of a member by month of the as-of year (contract table `services`).
    fn hours_by_month(&self, member_row: usize) -> Vec<Value> {
        let year = self.run.as_of.year();
        let mut months = [0f64; 12];
        if let Some(hours) = self.services_of(Some(member_row), None) {
            for (start, h, _) in hours {
                if start.year() == year && start <= self.run.as_of {
                    months[start.month0() as usize] += h;
                }
            }
        }
        months
            .iter()
            .enumerate()
            .map(|(i, h)| json!({"label": format!("{}月", i + 1), "value": round2(*h)}))
            .collect()
    }

    /// Verified services (start date, hours, row) of a member and/or in a community.
    fn services_of(
        &self,
        member_row: Option<usize>,
        community: Option<&str>,
    ) -> Option<Vec<(NaiveDate, f64, usize)>> {
        let index = self.service_index.get_or_init(|| self.index_services());
        if !index.usable {
            return None;
        }
        let rows = match (member_row, community) {
            (Some(m), None) => index.by_member.get(&m),
            (None, Some(c)) => self
                .data
                .ids
                .get(c)
                .and_then(|sym| index.by_community.get(&sym)),
            (Some(m), Some(c)) => {
                let sym = self.data.ids.get(c);
                return Some(
                    index
                        .by_member
                        .get(&m)
                        .map(|v| {
                            v.iter()
                                .filter(|x| {
                                    sym.and_then(|sym| index.by_community.get(&sym))
                                        .is_some_and(|c| {
                                            c.binary_search_by_key(&x.2, |y| y.2).is_ok()
                                        })
                                })
                                .copied()
                                .collect()
                        })
                        .unwrap_or_default(),
                );
            }
            (None, None) => None,
        };
        Some(rows.cloned().unwrap_or_default())
    }

    /// Group the verified services by member and by community, in row order.
    fn index_services(&self) -> ServiceIndex {
        let mut index = ServiceIndex::default();
        let Some(all) = self.scan_services() else {
            return index;
        };
        index.usable = true;
        for (member, community, item) in all {
            index.by_member.entry(member).or_default().push(item);
            index.by_community.entry(community).or_default().push(item);
        }
        index
    }

    /// Every verified service: (member row, community, (start date, hours, row)).
    #[allow(clippy::type_complexity)]
    fn scan_services(&self) -> Option<Vec<(usize, crate::data::Sym, (NaiveDate, f64, usize))>> {
        use crate::data::ColumnData;
        let ts = self.policy.schema.tables.get("services")?;
        let t = self.data.tables.get("services")?;
        let (ci_m, ci_c, ci_s, ci_e, ci_v) = (
            ts.column("member_id")?,
            ts.column("community_id")?,
            ts.column("start")?,
            ts.column("end")?,
            ts.column("verified")?,
        );
        let (
            ColumnData::DateTime(st),
            ColumnData::DateTime(en),
            ColumnData::Bool(ver),
            ColumnData::Id(cm),
        ) = (
            &t.columns[ci_s],
            &t.columns[ci_e],
            &t.columns[ci_v],
            &t.columns[ci_c],
        )
        else {
            return None;
        };
        let mref = t.refs[ci_m].as_ref()?;
        let mut out = Vec::new();
        for r in 0..t.len() {
            if ver[r] != Some(true) {
                continue;
            }
            if let (Some(s), Some(e)) = (st[r], en[r]) {
                out.push((
                    mref[r] as usize,
                    cm[r],
                    (s.date(), (e - s).num_seconds() as f64 / 3600.0, r),
                ));
            }
        }
        Some(out)
    }

    fn community_name(&self, id: &str) -> String {
        self.policy
            .schema
            .tables
            .get("communities")
            .and_then(|_| self.data.ids.get(id))
            .and_then(|sym| {
                self.data
                    .tables
                    .get("communities")?
                    .key_index
                    .get(&sym)
                    .copied()
            })
            .and_then(|row| self.run.cell_text("communities", row as usize, "name"))
            .unwrap_or_default()
    }

    fn member_json(&self, row: usize) -> Value {
        let mt = self.member_table().unwrap_or("members");
        let id = self.member_id(row);
        let text = |c: &str| self.run.cell_text(mt, row, c).unwrap_or_default();
        let branch_id = self.branch_column().map(|c| text(&c)).unwrap_or_default();
        let ot = self.org_table().unwrap_or("organizations");
        let branch_row = self.run.subject_row("organization", &branch_id);
        let branch_name = branch_row
            .and_then(|r| self.run.cell_text(ot, r, "name"))
            .unwrap_or_default();
        let contact = branch_row
            .and_then(|r| self.run.cell_text(ot, r, "community_id"))
            .unwrap_or_default();
        let residence = text("residence_community_id");
        let tally = self.tally("member", row);
        let grade = self.grade("member", row);
        let months = self.hours_by_month(row);
        let total: f64 = months.iter().filter_map(|m| m["value"].as_f64()).sum();
        let graded_hours = self.graded_hours(row);
        let employment = text("employment");
        json!({
            "id": id,
            "name": text("name"),
            "employment": employment,
            "employment_cn": self.zh("employment", &employment),
            "branch": {"id": branch_id, "name": branch_name},
            "residence_community": {"id": residence, "name": self.community_name(&residence)},
            "contact_community": {"id": contact, "name": self.community_name(&contact)},
            "grade": grade,
            "grade_description": self.grade_description("member", &grade),
            "tally": tally,
            "directives": self.directive_sections("member", row),
            "hours_by_month": months,
            "hours_total": round2(total),
            "graded_hours": round2(graded_hours),
            "grade_tally": self.grade_tally("member", row),
        })
    }

    fn zh(&self, column: &str, value: &str) -> String {
        for t in self.policy.schema.tables.values() {
            if let Some(c) = t.columns.iter().find(|c| c.name == column)
                && let Some((_, al)) = c.values.iter().find(|(k, _)| k == value)
            {
                return al.first().cloned().unwrap_or_else(|| value.to_string());
            }
        }
        value.to_string()
    }

    /// Compliance per directive over a set of subjects: applicable, pass/warn/fail subjects.
    fn compliance(&self, subjects: &[(&str, usize)]) -> Vec<Value> {
        let mut out = Vec::new();
        for d in &self.policy.directives {
            let (mut applicable, mut failing, mut warning) = (0i64, 0i64, 0i64);
            let mut any = false;
            for &(kind, row) in subjects {
                let Some(worst) = self.worst(kind, row, &d.key) else {
                    continue;
                };
                any = true;
                match worst {
                    Status::NotApplicable => continue,
                    Status::Fail | Status::Error => failing += 1,
                    Status::Warn => warning += 1,
                    _ => {}
                }
                applicable += 1;
            }
            if !any {
                continue;
            }
            let passing = applicable - failing;
            out.push(json!({
                "key": d.key, "title": d.title, "document": d.document_number,
                "applicable": applicable, "passing": passing, "warning": warning, "failing": failing,
                "rate": round1(pct(passing, applicable)),
            }));
        }
        out
    }

    fn grade_distribution(&self, kind: &str, rows: &[usize]) -> Vec<Value> {
        let Some(a) = self.policy.assessment.as_ref() else {
            return Vec::new();
        };
        let list = if kind == "member" {
            &a.member
        } else {
            &a.organization
        };
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for &row in rows {
            *counts.entry(self.grade(kind, row)).or_default() += 1;
        }
        let total = rows.len() as i64;
        list.iter()
            .map(|g| {
                let n = counts.get(g.name.as_str()).copied().unwrap_or(0);
                json!({"label": g.name, "value": n, "share": round1(pct(n, total))})
            })
            .collect()
    }

    /// The report jobs for `level`.
    pub fn jobs(&self, level: Level) -> Vec<Job> {
        let mut jobs = Vec::new();
        let common = self.common();
        let with = |kind: &'static str, id: String, file: PathBuf, key: &str, v: Value| {
            let mut ctx = common.clone();
            ctx["report"] = json!({"kind": kind, "id": id});
            ctx[key] = v;
            Job {
                kind,
                id,
                file,
                context: ctx,
            }
        };
        let member_rows = self.run.subjects("member");
        // Report data is made in parallel; `collect` keeps the order.
        if matches!(level, Level::Member | Level::All) {
            jobs.par_extend(member_rows.par_iter().map(|&row| {
                let m = self.member_json(row);
                let id = m["id"].as_str().unwrap_or("").to_string();
                let file =
                    PathBuf::from("members").join(file_name(&id, m["name"].as_str().unwrap_or("")));
                with("member", id, file, "member", m)
            }));
        }
        let ot = self.org_table().unwrap_or("organizations").to_string();
        let okey = self
            .policy
            .schema
            .tables
            .get(ot.as_str())
            .and_then(|t| t.key_name())
            .unwrap_or("org_id")
            .to_string();
        if matches!(level, Level::Branch | Level::All) {
            let branches: Vec<usize> = self
                .run
                .subjects("organization")
                .into_iter()
                .filter(|&row| {
                    self.run.cell_text(&ot, row, "kind").as_deref() == Some("unit_branch")
                })
                .collect();
            jobs.par_extend(branches.into_par_iter().map(|row| {
                let b = self.branch_json(&ot, &okey, row);
                let id = b["id"].as_str().unwrap_or("").to_string();
                let file = PathBuf::from("branches")
                    .join(file_name(&id, b["name"].as_str().unwrap_or("")));
                with("branch", id, file, "branch", b)
            }));
        }
        if matches!(level, Level::Community | Level::All)
            && let Some(ct) = self.data.tables.get("communities")
        {
            let cs = &self.policy.schema.tables["communities"];
            let key = cs.key_name().unwrap_or("community_id").to_string();
            let mut rows: Vec<(String, usize)> = (0..ct.len())
                .map(|r| {
                    (
                        self.run
                            .cell_text("communities", r, &key)
                            .unwrap_or_default(),
                        r,
                    )
                })
                .collect();
            rows.sort();
            jobs.par_extend(rows.into_par_iter().map(|(id, row)| {
                let c = self.community_json(&id, row);
                let file = PathBuf::from("communities")
                    .join(file_name(&id, c["name"].as_str().unwrap_or("")));
                with("community", id, file, "community", c)
            }));
        }
        if matches!(level, Level::Summary | Level::All) {
            let s = self.summary_json(&ot, &okey);
            jobs.push(with(
                "summary",
                "summary".into(),
                PathBuf::from("summary.pdf"),
                "summary",
                s,
            ));
        }
        jobs
    }

    fn branch_json(&self, ot: &str, okey: &str, row: usize) -> Value {
        let id = self.run.cell_text(ot, row, okey).unwrap_or_default();
        let name = self.run.cell_text(ot, row, "name").unwrap_or_default();
        let contact = self
            .run
            .cell_text(ot, row, "community_id")
            .unwrap_or_default();
        let rows = self.members_of.get(&id).cloned().unwrap_or_default();
        let mut members: Vec<Value> = rows.iter().map(|&r| self.member_row_summary(r)).collect();
        members.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let subjects: Vec<(&str, usize)> = rows.iter().map(|&r| ("member", r)).collect();
        let grade = self.grade("organization", row);
        let hours: Vec<Value> = members
            .iter()
            .map(|m| json!({"label": m["name"], "value": m["hours"]}))
            .collect();
        json!({
            "id": id, "name": name,
            "contact_community": {"id": contact, "name": self.community_name(&contact)},
            "grade": grade,
            "grade_description": self.grade_description("organization", &grade),
            "members": members,
            "member_count": rows.len(),
            "compliance": self.compliance(&subjects),
            "grades": self.grade_distribution("member", &rows),
            "own": self.directive_sections("organization", row),
            "hours_chart": hours,
        })
    }

    fn member_row_summary(&self, r: usize) -> Value {
        let mt = self.member_table().unwrap_or("members");
        let id = self.member_id(r);
        let tally = self.grade_tally("member", r);
        let hours = self.graded_hours(r);
        json!({
            "id": id,
            "name": self.run.cell_text(mt, r, "name").unwrap_or_default(),
            "grade": self.grade("member", r),
            "hours": round2(hours),
            "fails": tally.fails, "warns": tally.warns,
        })
    }

    fn community_json(&self, id: &str, row: usize) -> Value {
        let name = self
            .run
            .cell_text("communities", row, "name")
            .unwrap_or_default();
        let district = self
            .run
            .cell_text("communities", row, "district")
            .unwrap_or_default();
        let services = self.services_of(None, Some(id)).unwrap_or_default();
        let year = self.run.as_of.year();
        let services: Vec<_> = services
            .into_iter()
            .filter(|(d, _, _)| d.year() == year && *d <= self.run.as_of)
            .collect();
        let t = self.data.tables.get("services");
        let ts = self.policy.schema.tables.get("services");
        let mut by_member: BTreeMap<usize, (f64, i64)> = BTreeMap::new();
        let mut by_category: BTreeMap<String, f64> = BTreeMap::new();
        if let (Some(t), Some(ts)) = (t, ts) {
            let mref = ts.column("member_id").and_then(|c| t.refs[c].as_ref());
            for (_, h, r) in &services {
                if let Some(m) = mref.map(|m| m[*r] as usize) {
                    let e = by_member.entry(m).or_default();
                    e.0 += h;
                    e.1 += 1;
                }
                let cat = self
                    .run
                    .cell_text("services", *r, "category")
                    .unwrap_or_default();
                *by_category.entry(cat).or_default() += h;
            }
        }
        let mt = self.member_table().unwrap_or("members");
        let bc = self.branch_column().unwrap_or_else(|| "branch_id".into());
        let ot = self.org_table().unwrap_or("organizations");
        let mut members: Vec<Value> = by_member
            .iter()
            .map(|(&r, (h, n))| {
                let branch = self.run.cell_text(mt, r, &bc).unwrap_or_default();
                let bname = self
                    .run
                    .subject_row("organization", &branch)
                    .and_then(|b| self.run.cell_text(ot, b, "name"))
                    .unwrap_or_default();
                let residence = self
                    .run
                    .cell_text(mt, r, "residence_community_id")
                    .unwrap_or_default();
                json!({
                    "id": self.member_id(r),
                    "name": self.run.cell_text(mt, r, "name").unwrap_or_default(),
                    "branch": {"id": branch, "name": bname},
                    "resident": residence == id,
                    "hours": round2(*h), "services": n,
                    "grade": self.grade("member", r),
                })
            })
            .collect();
        members.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let mut from: BTreeMap<String, (String, i64, f64)> = BTreeMap::new();
        for m in &members {
            let e = from
                .entry(m["branch"]["id"].as_str().unwrap_or("").to_string())
                .or_insert((
                    m["branch"]["name"].as_str().unwrap_or("").to_string(),
                    0,
                    0.0,
                ));
            e.1 += 1;
            e.2 += m["hours"].as_f64().unwrap_or(0.0);
        }
        let residents = self
            .residents
            .get_or_init(|| {
                let mut n: HashMap<String, usize> = HashMap::new();
                for r in self.run.subjects("member") {
                    if let Some(c) = self.run.cell_text(mt, r, "residence_community_id") {
                        *n.entry(c).or_default() += 1;
                    }
                }
                n
            })
            .get(id)
            .copied()
            .unwrap_or(0);
        let total: f64 = by_category.values().sum();
        json!({
            "id": id, "name": name, "district": district,
            "year": year,
            "members": members,
            "residents": residents,
            "from": from.into_iter().map(|(k, (n, c, h))| json!({"id": k, "name": n, "members": c, "hours": round2(h)})).collect::<Vec<_>>(),
            "hours_by_category": by_category.into_iter().map(|(k, h)| json!({"label": self.zh("category", &k), "value": round2(h)})).collect::<Vec<_>>(),
            "hours_total": round2(total),
            "services_total": services.len(),
        })
    }

    fn summary_json(&self, ot: &str, okey: &str) -> Value {
        let member_rows = self.run.subjects("member");
        let mut subjects: Vec<(&str, usize)> = member_rows.iter().map(|&r| ("member", r)).collect();
        let branches: Vec<usize> = self
            .run
            .subjects("organization")
            .into_iter()
            .filter(|&r| self.run.cell_text(ot, r, "kind").as_deref() == Some("unit_branch"))
            .collect();
        subjects.extend(branches.iter().map(|&r| ("organization", r)));
        // Most common failures, with the first failing finding's message as the example.
        let mut fails: BTreeMap<(&str, &str), (i64, i64, Option<usize>)> = BTreeMap::new();
        for (index, r) in self.run.rules().enumerate() {
            let e = fails.entry((&r.directive, &r.id)).or_insert((0, 0, None));
            e.0 += self.outcomes.rule_count(index, Status::Fail) as i64;
            e.1 += self.outcomes.rule_count(index, Status::Warn) as i64;
            if e.2.is_none() && self.outcomes.first_fail(index).is_some() {
                e.2 = Some(index);
            }
        }
        let mut top: Vec<Value> = fails
            .into_iter()
            .filter(|(_, (f, w, _))| *f + *w > 0)
            .map(|((d, r), (f, w, example))| {
                let example = example
                    .and_then(|i| self.run.rule_finding(i, self.outcomes.first_fail(i)?))
                    .map(|f| f.message)
                    .unwrap_or_default();
                let title = self.run.rules().find(|x| x.id == r).map(|x| x.title.clone()).unwrap_or_default();
                json!({"directive": d, "rule": r, "title": title, "fails": f, "warns": w, "example": example})
            })
            .collect();
        top.sort_by(|a, b| {
            b["fails"]
                .as_i64()
                .cmp(&a["fails"].as_i64())
                .then(b["warns"].as_i64().cmp(&a["warns"].as_i64()))
                .then(a["rule"].as_str().cmp(&b["rule"].as_str()))
        });
        top.truncate(10);
        let mut ranked: Vec<Value> = branches
            .iter()
            .map(|&row| {
                let id = self.run.cell_text(ot, row, okey).unwrap_or_default();
                let rows = self.members_of.get(&id).map_or(&[][..], |v| v.as_slice());
                let failing = rows.iter().filter(|&&r| self.member_fails[r]).count() as i64;
                let n = rows.len() as i64;
                let own = self.tally("organization", row);
                json!({
                    "id": id, "name": self.run.cell_text(ot, row, "name").unwrap_or_default(),
                    "grade": self.grade("organization", row),
                    "members": n, "members_passing": n - failing,
                    "pass_rate": round1(pct(n - failing, n)),
                    "own_fails": own.fails,
                })
            })
            .collect();
        ranked.sort_by(|a, b| {
            b["pass_rate"]
                .as_f64()
                .partial_cmp(&a["pass_rate"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a["own_fails"].as_i64().cmp(&b["own_fails"].as_i64()))
                .then(a["id"].as_str().cmp(&b["id"].as_str()))
        });
        for (i, b) in ranked.iter_mut().enumerate() {
            b["rank"] = json!(i + 1);
        }
        let compliance = self.compliance(&subjects);
        let statuses: BTreeMap<&str, i64> = Status::ALL
            .iter()
            .map(|s| (s.name(), self.outcomes.count(*s) as i64))
            .collect();
        json!({
            "members": member_rows.len(),
            "branches": branches.len(),
            "findings": self.outcomes.total(),
            "statuses": statuses,
            "compliance": compliance,
            "member_grades": self.grade_distribution("member", &member_rows),
            "branch_grades": self.grade_distribution("organization", &branches),
            "top_failures": top,
            "branches_ranked": ranked,
            "grade_errors": self.grade_errors,
            "grade_error_count": self.grade_error_count,
        })
    }
}

/// The worst status (error > fail > warn > waived > pass > not applicable); `None` if empty.
fn worst_status(it: impl Iterator<Item = Status>) -> Option<Status> {
    let rank = |s: Status| match s {
        Status::Error => 5,
        Status::Fail => 4,
        Status::Warn => 3,
        Status::Waived => 2,
        Status::Pass => 1,
        Status::NotApplicable => 0,
    };
    it.max_by_key(|s| rank(*s))
}

/// `x` to 2 decimals; never `-0` (an empty `f64` sum is `-0.0`).
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0 + 0.0
}

/// `x` to 1 decimal; never `-0`.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0 + 0.0
}

fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(toml_text).collect::<Vec<_>>().join("、"),
        toml::Value::Float(f) => script::format_number(*f),
        other => other.to_string(),
    }
}

fn json_text(v: &Value) -> String {
    match v {
        Value::Null => "无".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => {
            if *b {
                "是".into()
            } else {
                "否".into()
            }
        }
        Value::Number(n) => n
            .as_f64()
            .map(script::format_number)
            .unwrap_or_else(|| n.to_string()),
        Value::Array(a) => {
            if a.is_empty() {
                "无".into()
            } else {
                a.iter().map(json_text).collect::<Vec<_>>().join("、")
            }
        }
        Value::Object(_) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_never_gives_minus_zero() {
        let empty: f64 = std::iter::empty::<f64>().sum();
        for x in [empty, -0.0, -0.001, -0.0001] {
            assert_eq!(serde_json::json!(round2(x)).to_string(), "0.0", "{x}");
            assert_eq!(serde_json::json!(round1(x)).to_string(), "0.0", "{x}");
        }
        assert_eq!(round2(6.499), 6.5);
    }

    #[test]
    fn file_names_cannot_escape() {
        assert_eq!(file_name("M001", "张三"), "M001-张三.pdf");
        assert_eq!(file_name("../../etc/passwd", ""), "etc_passwd.pdf");
        assert_eq!(file_name("/abs", "x/y"), "abs-x_y.pdf");
        assert_eq!(file_name("CON", ""), "_CON.pdf");
        assert_eq!(file_name("", ""), "_.pdf");
        assert!(!file_name("..", "..").contains(".."));
    }
}
