//! Assessment reports: grades from `policies/assessment.toml`, report data for members,
//! branches, communities and the whole dataset, Tera templates rendered to Typst markup
//! (data escaped by default), and PDFs compiled in-process, in parallel.
//!
//! The data each template receives is typed in [`context`] (its JSON Schema ships as
//! `report-templates/context.schema.json`) and documented in `report-templates/README.md`.
//! The tables and columns reports read besides the rules' (services, communities, names)
//! come from the policy set's `[roles]` ([`crate::policy::Roles`]).

pub mod context;
mod error;
mod grade;
mod plan;
mod render;
mod scope;
pub mod typst;
pub mod words;
pub mod workbook;

pub use error::Error;
pub use grade::Tally;
pub use plan::{BundleItem, BundleKind, Item, Plan, PlanError, PlanOptions};
pub use render::{
    GlyphProblem, JOURNAL, RenderOptions, Rendered, check_glyphs, file_name, render, render_parts,
    render_plan, render_typst, run_key, templates, tera_error,
};
pub use scope::{Scope, ScopeKind, ScopeSpec, UnknownScope};
pub use words::Words;

use crate::data::Dataset;
use crate::eval::{Outcomes, Run};
use crate::findings::{Finding, Status};
use crate::policy::model::Severity;
use crate::policy::{Grade, PolicySet};
use crate::script;
use chrono::{Datelike, NaiveDate};
use context as ctx;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;
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
    /// `member`, `branch`, `community`, `summary` or `bundle`; the template is
    /// `KIND.typ.tera`.
    pub kind: &'static str,
    /// The subject's id (`summary` for the summary).
    pub id: String,
    /// The subject's name (empty for the summary).
    pub name: String,
    /// Output path relative to the output folder.
    pub file: PathBuf,
    /// The data the template receives: a [`context::Context`] as JSON (see
    /// `report-templates/README.md`).
    pub context: Value,
    /// A bundle's reports, each rendered with its own template and included by the bundle's
    /// (empty for other reports).
    pub parts: Vec<Job>,
}

impl Job {
    /// How many reports the job renders (a bundle: each it holds).
    pub fn reports(&self) -> usize {
        if self.kind == "bundle" {
            self.parts.len()
        } else {
            1
        }
    }
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
    /// Names and words for people.
    words: Words<'a>,
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
    waivers: Vec<ctx::WaiverFacts>,
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

/// Verified services, grouped once so that each report reads only its own rows. Compact, as
/// a province has tens of millions: one 24-byte item per service, grouped by member as
/// slices of one array, and by community as indices into it.
#[derive(Default)]
struct ServiceIndex {
    /// Every verified service, grouped by member row, in row order within a member.
    items: Vec<Service>,
    /// Member row `m`'s services are `items[member_start[m]..member_start[m + 1]]`.
    member_start: Vec<u32>,
    /// Indices into `items` of each community's services, in row order.
    by_community: HashMap<crate::data::Sym, Vec<u32>>,
    /// Whether the services table has the columns these reports use.
    usable: bool,
}

/// One verified service as reports use it.
#[derive(Debug, Clone, Copy)]
struct Service {
    day: NaiveDate,
    row: u32,
    hours: f64,
    community: crate::data::Sym,
}

impl Service {
    fn tuple(self) -> (NaiveDate, f64, usize) {
        (self.day, self.hours, self.row as usize)
    }
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
            words: Words::new(run),
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
    fn waived(&self) -> Vec<ctx::WaiverFacts> {
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
                let w = |k: &str| {
                    f.evidence
                        .get("waiver")
                        .and_then(|w| w.get(k))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                out.push(ctx::WaiverFacts {
                    subject_id: f.subject_id.clone(),
                    subject_name: f.subject_name.clone(),
                    rule: f.rule.to_string(),
                    reason: w("reason"),
                    approved_by: w("approved_by"),
                    valid_from: w("valid_from"),
                    valid_until: w("valid_until"),
                });
            }
        }
        out
    }

    fn index_members(&mut self) {
        let (Some(mt), Some(bc)) = (
            self.words.member_table().map(str::to_string),
            self.words.branch_column(),
        ) else {
            return;
        };
        for row in self.run.subjects("member") {
            if let Some(b) = self.run.cell_text(&mt, row, &bc) {
                self.members_of.entry(b).or_default().push(row);
            }
        }
    }

    /// Data every report gets: the document facts and the appendix.
    pub fn common(&self) -> ctx::Common {
        let as_of = self.run.as_of;
        let day = |d: Option<NaiveDate>| d.map(|x| x.to_string());
        let assumptions = self.words.assumptions();
        let periods = (self.run.periods.iter())
            .map(|p| ctx::PeriodFacts {
                name: p.name.clone(),
                label: p.label.clone(),
                start: day(p.start),
                end: day(p.end),
                per_subject: p.per_subject,
            })
            .collect();
        let sources = (self.data.stats.iter())
            .map(|s| ctx::SourceFacts {
                table: s.table.clone(),
                label: self
                    .policy
                    .schema
                    .tables
                    .get(&s.table)
                    .map(|t| t.label.clone()),
                file: s.file.clone(),
                encoding: s.encoding.clone(),
                read: s.read,
                loaded: s.loaded,
                rejected: s.rejected,
            })
            .collect();
        let directives = (self.policy.directives.iter())
            .filter(|d| self.run.rules().any(|r| r.directive == d.key))
            .map(|d| ctx::DirectiveFacts {
                key: d.key.clone(),
                title: d.title.clone(),
                document: d.document_number.clone(),
                issuer: d.issuer.clone(),
                issued_on: day(d.issued_on),
            })
            .collect();
        let window = |w: &crate::eval::DirectiveWindow| ctx::Window {
            key: w.key.clone(),
            title: w.title.clone(),
            from: day(w.from),
            until: day(w.until),
        };
        let grading_period = (self.policy.assessment.as_ref())
            .and_then(|a| a.period.as_deref())
            .and_then(|p| self.run.periods.iter().find(|x| x.name == p));
        let windows = |keep: &dyn Fn(&crate::eval::DirectiveWindow) -> bool| {
            self.run
                .directives
                .iter()
                .filter(|w| keep(w))
                .map(window)
                .collect()
        };
        let grades = |list: &[Grade]| {
            list.iter()
                .map(|g| ctx::GradeFacts {
                    grade: g.name.clone(),
                    description: g.description.clone(),
                    when: g.when.as_ref().map(|e| e.src.clone()),
                })
                .collect()
        };
        let cal = &self.policy.calendar;
        ctx::Common {
            grading: ctx::Grading {
                period: grading_period.map(|p| p.label.clone()),
                start: day(self.run.grading_span.map(|s| s.0)),
                end: day(self.run.grading_span.map(|s| s.1)),
                directives: windows(&|w| w.graded),
                not_graded: windows(&|w| w.in_force && !w.graded),
            },
            not_in_force: windows(&|w| !w.in_force),
            calendar: ctx::CalendarFacts {
                label: cal.label.clone(),
                file: cal.file.clone(),
                source: cal.source.clone(),
                years: cal.years.clone(),
                covers_year: self.run.calendar_note().is_none(),
            },
            as_of: as_of.to_string(),
            as_of_cn: format!("{}年{}月{}日", as_of.year(), as_of.month(), as_of.day()),
            year: as_of.year(),
            month: as_of.month(),
            day: as_of.day(),
            policy: ctx::PolicyFacts {
                name: self.policy.name.clone(),
                title: self.policy.title.clone(),
                version: self.policy.version.clone(),
                hash: self.policy.hash.clone(),
                short_hash: self.policy.short_hash().to_string(),
                source: self.policy.source.clone(),
            },
            assessment: self
                .policy
                .assessment
                .as_ref()
                .map(|a| ctx::AssessmentFacts {
                    title: a.title.clone(),
                    note: a.note.clone(),
                    member_grades: grades(&a.member),
                    organization_grades: grades(&a.organization),
                }),
            periods,
            assumptions,
            sources,
            totals: ctx::Totals {
                read: self.data.total_read(),
                loaded: self.data.total_loaded(),
                rejected: self.data.total_rejected(),
            },
            directives,
            waivers: self.waivers.clone(),
            waiver_notes: self.run.waiver_notes.clone(),
            scope: None,
        }
    }

    fn finding_facts(&self, f: &Finding) -> ctx::FindingFacts {
        let rule = self.run.rules().find(|r| *r.id == *f.rule);
        let evidence = (f.evidence.iter())
            .filter(|(k, _)| *k != "records")
            .map(|(k, v)| self.words.evidence_item(&f.subject_kind, k, v))
            .collect();
        let records = self.words.records(f);
        ctx::FindingFacts {
            rule: f.rule.to_string(),
            title: rule.map(|r| r.title.clone()).unwrap_or_default(),
            version: f.rule_version.to_string(),
            status: f.status.name().into(),
            status_cn: f.status.chinese().into(),
            severity: crate::findings::severity_name(f.severity).into(),
            message: f.message.clone(),
            clause: f.source.text.to_string(),
            document: f.source.document.to_string(),
            period: f.period.as_ref().map(|p| ctx::PeriodSpan {
                name: p.name.to_string(),
                start: p.start.clone(),
                end: p.end.clone(),
            }),
            evidence,
            records,
        }
    }

    /// Findings of a subject grouped by directive, with the worst status of each.
    fn directive_sections(&self, kind: &str, row: usize) -> Vec<ctx::DirectiveSection> {
        let findings = self.run.subject_findings(kind, row);
        let mut out = Vec::new();
        for d in &self.policy.directives {
            let fs: Vec<&Finding> = findings.iter().filter(|f| *f.directive == *d.key).collect();
            let Some(worst) = worst_status(fs.iter().map(|f| f.status)) else {
                continue;
            };
            out.push(ctx::DirectiveSection {
                key: d.key.clone(),
                title: d.title.clone(),
                document: d.document_number.clone(),
                issuer: d.issuer.clone(),
                status: worst.name().into(),
                status_cn: worst.chinese().into(),
                findings: fs.iter().map(|f| self.finding_facts(f)).collect(),
            });
        }
        out
    }

    /// Verified service hours of a member by month of the as-of year (the `[roles.services]`
    /// table).
    fn hours_by_month(&self, member_row: usize) -> Vec<ctx::Bar> {
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
            .map(|(i, h)| ctx::Bar {
                label: format!("{}月", i + 1),
                value: round2(*h),
            })
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
        let of_member = |m: usize| -> &[Service] {
            match (index.member_start.get(m), index.member_start.get(m + 1)) {
                (Some(&a), Some(&b)) => &index.items[a as usize..b as usize],
                _ => &[],
            }
        };
        let sym = community.map(|c| self.data.ids.get(c));
        Some(match (member_row, sym) {
            (Some(m), None) => of_member(m).iter().map(|x| x.tuple()).collect(),
            (Some(m), Some(sym)) => (of_member(m).iter())
                .filter(|x| Some(x.community) == sym)
                .map(|x| x.tuple())
                .collect(),
            (None, Some(sym)) => (sym.and_then(|sym| index.by_community.get(&sym)))
                .map(|ix| {
                    ix.iter()
                        .map(|&i| index.items[i as usize].tuple())
                        .collect()
                })
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        })
    }

    /// Group the verified services by member and by community, in row order: one pass to
    /// count each member's, one to place them.
    fn index_services(&self) -> ServiceIndex {
        let mut index = ServiceIndex::default();
        let members = self.rows_of("member");
        let mut counts = vec![0u32; members];
        let usable = self.each_service(|m, _| {
            if let Some(c) = counts.get_mut(m) {
                *c += 1;
            }
        });
        if !usable {
            return index;
        }
        index.usable = true;
        let mut start = Vec::with_capacity(members + 1);
        let mut total = 0u32;
        for c in &counts {
            start.push(total);
            total += c;
        }
        start.push(total);
        let mut next = start.clone();
        let placeholder = Service {
            day: NaiveDate::MIN,
            row: 0,
            hours: 0.0,
            community: crate::data::Sym::NONE,
        };
        index.items = vec![placeholder; total as usize];
        self.each_service(|m, s| {
            if let Some(at) = next.get_mut(m).filter(|_| m < members) {
                // `next[m]` stays below `start[m + 1]`: the same services are counted.
                index.items[*at as usize] = s;
                *at += 1;
            }
        });
        index.member_start = start;
        // By community, in row order.
        let mut order: Vec<u32> = (0..total).collect();
        order.sort_by_key(|&i| index.items[i as usize].row);
        for i in order {
            let c = index.items[i as usize].community;
            index.by_community.entry(c).or_default().push(i);
        }
        index
    }

    /// Call `f` with (member row, service) for every verified service with a start and an
    /// end, in row order; false when the services table lacks the columns reports use.
    fn each_service(&self, mut f: impl FnMut(usize, Service)) -> bool {
        use crate::data::ColumnData;
        let role = &self.words.roles().services;
        let (Some(ts), Some(t)) = (
            self.policy.schema.tables.get(&role.table),
            self.data.tables.get(role.table.as_str()),
        ) else {
            return false;
        };
        let (Some(ci_m), Some(ci_c), Some(ci_s), Some(ci_e), Some(ci_v)) = (
            ts.column(&role.member),
            ts.column(&role.community),
            ts.column(&role.start),
            ts.column(&role.end),
            ts.column(&role.verified),
        ) else {
            return false;
        };
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
            return false;
        };
        let Some(mref) = (ts.columns[ci_m].references.as_deref())
            .and_then(|target| self.data.ref_rows(&role.table, ci_m, target))
        else {
            return false;
        };
        for r in 0..t.len() {
            if ver[r] != Some(true) {
                continue;
            }
            if let (Some(s), Some(e)) = (st.get(r), en.get(r)) {
                let service = Service {
                    day: s.date(),
                    row: r as u32,
                    hours: (e - s).num_seconds() as f64 / 3600.0,
                    community: cm[r],
                };
                f(mref.get(r) as usize, service);
            }
        }
        true
    }

    fn member_facts(&self, row: usize) -> ctx::Member {
        let roles = &self.words.roles().members;
        let text = |c: &str| self.words.subject_text("member", row, c);
        let branch_id = self
            .words
            .branch_column()
            .map(|c| text(&c))
            .unwrap_or_default();
        let contact = (self.run.subject_row("organization", &branch_id))
            .map(|r| {
                self.words.subject_text(
                    "organization",
                    r,
                    &self.words.roles().organizations.community,
                )
            })
            .unwrap_or_default();
        let grade = self.grade("member", row);
        let months = self.hours_by_month(row);
        let total: f64 = months.iter().map(|m| m.value).sum();
        let employment = text(&roles.employment);
        ctx::Member {
            id: self.words.member_id(row),
            name: self.words.subject_name("member", row),
            employment_cn: self.words.zh(
                self.words.member_table().unwrap_or(""),
                &roles.employment,
                &employment,
            ),
            employment,
            branch: self.words.organization(branch_id),
            residence_community: self.words.community(text(&roles.residence)),
            contact_community: self.words.community(contact),
            grade_description: self.grade_description("member", &grade),
            grade,
            tally: self.tally("member", row),
            directives: self.directive_sections("member", row),
            hours_by_month: months,
            hours_total: round2(total),
            graded_hours: round2(self.graded_hours(row)),
            grade_tally: self.grade_tally("member", row),
        }
    }

    /// Compliance per directive over a set of subjects: applicable, pass/warn/fail subjects.
    fn compliance(&self, subjects: &[(&str, usize)]) -> Vec<ctx::Compliance> {
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
            out.push(ctx::Compliance {
                key: d.key.clone(),
                title: d.title.clone(),
                document: d.document_number.clone(),
                applicable,
                passing,
                warning,
                failing,
                rate: round1(pct(passing, applicable)),
            });
        }
        out
    }

    fn grade_distribution(&self, kind: &str, rows: &[usize]) -> Vec<ctx::GradeShare> {
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
        // Best first: by rank, then in file order.
        let mut list: Vec<&Grade> = list.iter().collect();
        list.sort_by_key(|g| g.rank.unwrap_or(u32::MAX));
        list.into_iter()
            .map(|g| {
                let n = counts.get(g.name.as_str()).copied().unwrap_or(0);
                ctx::GradeShare {
                    label: g.name.clone(),
                    value: n,
                    share: round1(pct(n, total)),
                }
            })
            .collect()
    }

    /// The report jobs for `level`, every report's data made at once (fine for a small
    /// dataset; a run renders a [`Plan`] in batches).
    pub fn jobs(&self, level: Level) -> Vec<Job> {
        let opts = PlanOptions {
            level,
            scope: &[],
            bundle: None,
        };
        let Ok(plan) = self.plan(&opts) else {
            return Vec::new();
        };
        (0..plan.items.len())
            .into_par_iter()
            .map(|i| self.job(&plan, i))
            .collect()
    }

    /// The organizations that get branch reports: those of the `[roles.organizations]` kind.
    fn branches(&self) -> Vec<usize> {
        let role = &self.words.roles().organizations;
        self.run
            .subjects("organization")
            .into_iter()
            .filter(|&row| self.words.subject_text("organization", row, &role.kind) == role.branch)
            .collect()
    }

    /// Every community (id, row) of the `[roles.communities]` table, in row order.
    fn communities(&self) -> Vec<(String, usize)> {
        let table = self.words.roles().communities.table.as_str();
        let (Some(ct), Some(cs)) = (
            self.data.tables.get(table),
            self.policy.schema.tables.get(table),
        ) else {
            return Vec::new();
        };
        let key = cs.key_name().unwrap_or("community_id");
        (0..ct.len())
            .map(|r| (self.run.cell_text(table, r, key).unwrap_or_default(), r))
            .collect()
    }

    fn branch_facts(&self, row: usize) -> ctx::Branch {
        let id = self
            .words
            .subject_text("organization", row, self.words.org_key());
        let contact = self.words.subject_text(
            "organization",
            row,
            &self.words.roles().organizations.community,
        );
        let rows = self.members_of.get(&id).cloned().unwrap_or_default();
        let mut members: Vec<ctx::MemberRow> = rows.iter().map(|&r| self.member_row(r)).collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let subjects: Vec<(&str, usize)> = rows.iter().map(|&r| ("member", r)).collect();
        let grade = self.grade("organization", row);
        let hours_chart = (members.iter())
            .map(|m| ctx::Bar {
                label: m.name.clone(),
                value: m.hours,
            })
            .collect();
        ctx::Branch {
            name: self.words.subject_name("organization", row),
            id,
            contact_community: self.words.community(contact),
            grade_description: self.grade_description("organization", &grade),
            grade,
            member_count: rows.len(),
            compliance: self.compliance(&subjects),
            grades: self.grade_distribution("member", &rows),
            own: self.directive_sections("organization", row),
            members,
            hours_chart,
        }
    }

    fn member_row(&self, r: usize) -> ctx::MemberRow {
        let tally = self.grade_tally("member", r);
        ctx::MemberRow {
            id: self.words.member_id(r),
            name: self.words.subject_name("member", r),
            grade: self.grade("member", r),
            hours: round2(self.graded_hours(r)),
            fails: tally.fails,
            warns: tally.warns,
        }
    }

    fn community_facts(&self, id: &str, row: usize) -> ctx::Community {
        let year = self.run.as_of.year();
        let services: Vec<_> = (self.services_of(None, Some(id)).unwrap_or_default())
            .into_iter()
            .filter(|(d, _, _)| d.year() == year && *d <= self.run.as_of)
            .collect();
        let role = &self.words.roles().services;
        let mut by_member: BTreeMap<usize, (f64, i64)> = BTreeMap::new();
        let mut by_category: BTreeMap<String, f64> = BTreeMap::new();
        if let (Some(_), Some(ts)) = (
            self.data.tables.get(role.table.as_str()),
            self.policy.schema.tables.get(&role.table),
        ) {
            let mref = ts.column(&role.member).and_then(|c| {
                let target = ts.columns[c].references.as_deref()?;
                self.data.ref_rows(&role.table, c, target)
            });
            for (_, h, r) in &services {
                if let Some(m) = mref.map(|m| m.get(*r) as usize) {
                    let e = by_member.entry(m).or_default();
                    e.0 += h;
                    e.1 += 1;
                }
                let cat = (self.run.cell_text(&role.table, *r, &role.category)).unwrap_or_default();
                *by_category.entry(cat).or_default() += h;
            }
        }
        let members = self.serving_members(id, &by_member);
        let mut from: BTreeMap<String, (String, i64, f64)> = BTreeMap::new();
        for m in &members {
            let e = (from.entry(m.branch.id.clone())).or_insert((m.branch.name.clone(), 0, 0.0));
            e.1 += 1;
            e.2 += m.hours;
        }
        let total: f64 = by_category.values().sum();
        ctx::Community {
            id: id.to_string(),
            name: self
                .words
                .community_text(row, &self.words.roles().communities.name),
            district: self
                .words
                .community_text(row, &self.words.roles().communities.district),
            year,
            members,
            residents: self.residents(id),
            from: (from.into_iter())
                .map(|(id, (name, members, hours))| ctx::BranchHours {
                    id,
                    name,
                    members,
                    hours: round2(hours),
                })
                .collect(),
            hours_by_category: (by_category.into_iter())
                .map(|(k, h)| ctx::Bar {
                    label: self.words.zh(&role.table, &role.category, &k),
                    value: round2(h),
                })
                .collect(),
            hours_total: round2(total),
            services_total: services.len(),
        }
    }

    /// Members who served in community `id`, by id, from their (hours, services) by row.
    fn serving_members(
        &self,
        id: &str,
        by_member: &BTreeMap<usize, (f64, i64)>,
    ) -> Vec<ctx::ServingMember> {
        let bc = self
            .words
            .branch_column()
            .unwrap_or_else(|| "branch_id".into());
        let residence = &self.words.roles().members.residence;
        let mut members: Vec<ctx::ServingMember> = (by_member.iter())
            .map(|(&r, (h, n))| ctx::ServingMember {
                id: self.words.member_id(r),
                name: self.words.subject_name("member", r),
                branch: self
                    .words
                    .organization(self.words.subject_text("member", r, &bc)),
                resident: self.words.subject_text("member", r, residence) == id,
                hours: round2(*h),
                services: *n,
                grade: self.grade("member", r),
            })
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members
    }

    /// Members living in community `id`.
    fn residents(&self, id: &str) -> usize {
        let residence = &self.words.roles().members.residence;
        self.residents
            .get_or_init(|| {
                let mut n: HashMap<String, usize> = HashMap::new();
                for r in self.run.subjects("member") {
                    if let Some(mt) = self.words.member_table()
                        && let Some(c) = self.run.cell_text(mt, r, residence)
                    {
                        *n.entry(c).or_default() += 1;
                    }
                }
                n
            })
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// The summary's data: over the whole run, or over `scope`'s members and branches.
    fn summary_facts(&self, scope: Option<&Scope>) -> ctx::Summary {
        let (member_rows, branches) = match scope {
            Some(s) => (s.members.clone(), s.branches.clone()),
            None => (self.run.subjects("member"), self.branches()),
        };
        let mut subjects: Vec<(&str, usize)> = member_rows.iter().map(|&r| ("member", r)).collect();
        subjects.extend(branches.iter().map(|&r| ("organization", r)));
        // Per rule: findings by status, and the first failing subject (in run order).
        let counts: Vec<([i64; 6], Option<usize>)> = match scope {
            None => (0..self.run.rules().count())
                .map(|i| {
                    let mut c = [0i64; 6];
                    for s in Status::ALL {
                        c[s as usize] = self.outcomes.rule_count(i, s) as i64;
                    }
                    (c, self.outcomes.first_fail(i))
                })
                .collect(),
            Some(_) => (self.run.rules().enumerate())
                .map(|(i, r)| {
                    let rows: &[usize] = match r.subject.as_str() {
                        "member" => &member_rows,
                        "organization" => &branches,
                        _ => &[],
                    };
                    let mut c = [0i64; 6];
                    let mut first = None;
                    for &row in rows {
                        let st = self.outcomes.status(i, row);
                        c[st as usize] += 1;
                        if st == Status::Fail && first.is_none() {
                            first = Some(row);
                        }
                    }
                    (c, first)
                })
                .collect(),
        };
        let statuses = (Status::ALL.iter())
            .map(|s| {
                let n: i64 = counts.iter().map(|(c, _)| c[*s as usize]).sum();
                (s.name().to_string(), n)
            })
            .collect();
        let findings = counts
            .iter()
            .map(|(c, _)| c.iter().sum::<i64>() as u64)
            .sum();
        ctx::Summary {
            members: member_rows.len(),
            branches: branches.len(),
            findings,
            statuses,
            compliance: self.compliance(&subjects),
            member_grades: self.grade_distribution("member", &member_rows),
            branch_grades: self.grade_distribution("organization", &branches),
            top_failures: self.top_failures(&counts),
            branches_ranked: self.ranked(&branches),
            grade_errors: self.grade_errors.clone(),
            grade_error_count: self.grade_error_count,
        }
    }

    /// The 10 rules with most failures (then warnings), with the first failing finding's
    /// message as the example; `counts` are each rule's findings by status and first
    /// failing subject.
    fn top_failures(&self, counts: &[([i64; 6], Option<usize>)]) -> Vec<ctx::TopFailure> {
        // Per (directive, rule id): fails, warns, and the first failing (rule, subject row).
        type RuleFails = (i64, i64, Option<(usize, usize)>);
        let mut fails: BTreeMap<(&str, &str), RuleFails> = BTreeMap::new();
        for ((index, r), (c, first)) in self.run.rules().enumerate().zip(counts) {
            let e = fails.entry((&r.directive, &r.id)).or_insert((0, 0, None));
            e.0 += c[Status::Fail as usize];
            e.1 += c[Status::Warn as usize];
            if e.2.is_none()
                && let Some(row) = first
            {
                e.2 = Some((index, *row));
            }
        }
        let mut top: Vec<ctx::TopFailure> = (fails.into_iter())
            .filter(|(_, (f, w, _))| *f + *w > 0)
            .map(|((d, r), (fails, warns, example))| {
                let example = example
                    .and_then(|(i, row)| self.run.rule_finding(i, row))
                    .map(|f| f.message)
                    .unwrap_or_default();
                let title = (self.run.rules().find(|x| x.id == r))
                    .map(|x| x.title.clone())
                    .unwrap_or_default();
                ctx::TopFailure {
                    directive: d.into(),
                    rule: r.into(),
                    title,
                    fails,
                    warns,
                    example,
                }
            })
            .collect();
        top.sort_by(|a, b| {
            (b.fails.cmp(&a.fails))
                .then(b.warns.cmp(&a.warns))
                .then(a.rule.cmp(&b.rule))
        });
        top.truncate(10);
        top
    }

    /// Unit branches by the share of their members failing no rule, then by their own
    /// failures, then by id.
    fn ranked(&self, branches: &[usize]) -> Vec<ctx::RankedBranch> {
        let mut ranked: Vec<ctx::RankedBranch> = (branches.iter())
            .map(|&row| {
                let id = self
                    .words
                    .subject_text("organization", row, self.words.org_key());
                let rows = self.members_of.get(&id).map_or(&[][..], |v| v.as_slice());
                let failing = rows.iter().filter(|&&r| self.member_fails[r]).count() as i64;
                let n = rows.len() as i64;
                ctx::RankedBranch {
                    name: self.words.subject_name("organization", row),
                    id,
                    grade: self.grade("organization", row),
                    members: n,
                    members_passing: n - failing,
                    pass_rate: round1(pct(n - failing, n)),
                    own_fails: self.tally("organization", row).fails,
                    rank: 0,
                }
            })
            .collect();
        ranked.sort_by(|a, b| {
            (b.pass_rate.partial_cmp(&a.pass_rate))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.own_fails.cmp(&b.own_fails))
                .then(a.id.cmp(&b.id))
        });
        for (i, b) in ranked.iter_mut().enumerate() {
            b.rank = i + 1;
        }
        ranked
    }
}

/// The body of one report.
enum Body {
    Member(Box<ctx::Member>),
    Branch(ctx::Branch),
    Community(ctx::Community),
    Summary(ctx::Summary),
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
