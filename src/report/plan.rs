//! What a report run renders, decided before any report's data is made: a [`Plan`] lists
//! one small [`Item`] per PDF (a member, a branch, a community, the summary, or a bundle of
//! a branch's or community's reports), so that a province's reports can be prepared and
//! rendered in batches ([`Model::job`] makes one item's data when its batch comes).

use super::scope::{Scope, ScopeSpec, UnknownScope};
use super::{Body, Job, Level, Model, ctx, file_name};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// What a bundle gathers (`--bundle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// One PDF per unit branch: the branch report, then its members' forms.
    Branch,
    /// One PDF per community: the community report, then the forms of the members who live
    /// there.
    Community,
}

impl BundleKind {
    /// `branch` or `community`.
    pub fn name(self) -> &'static str {
        match self {
            BundleKind::Branch => "branch",
            BundleKind::Community => "community",
        }
    }

    fn chinese(self) -> &'static str {
        match self {
            BundleKind::Branch => "党支部",
            BundleKind::Community => "社区",
        }
    }
}

/// One PDF of a run.
#[derive(Debug, Clone)]
pub enum Item {
    /// A member form (row of the members table).
    Member(usize),
    /// A unit branch report (row of the organizations table).
    Branch(usize),
    /// A community report (id, row of the communities table).
    Community(String, usize),
    /// The summary.
    Summary,
    /// A bundle of reports.
    Bundle(Box<BundleItem>),
}

/// The reports one bundle holds.
#[derive(Debug, Clone)]
pub struct BundleItem {
    /// What it gathers.
    pub kind: BundleKind,
    /// The branch's or community's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its own report, when it is in scope.
    pub head: Option<Item>,
    /// Member rows, by id.
    pub members: Vec<usize>,
}

impl BundleItem {
    /// Where the bundle's PDF goes: `bundles/ID-NAME.pdf`.
    pub fn file(&self) -> PathBuf {
        PathBuf::from("bundles").join(file_name(&self.id, &self.name))
    }
}

impl Item {
    /// How many reports the item renders (a bundle: its head and member forms).
    pub fn reports(&self) -> usize {
        match self {
            Item::Bundle(b) => b.head.is_some() as usize + b.members.len(),
            _ => 1,
        }
    }
}

/// What to render.
#[derive(Debug, Clone)]
pub struct PlanOptions<'s> {
    /// Which reports.
    pub level: Level,
    /// Limit reports to these (their union); empty: the whole dataset.
    pub scope: &'s [ScopeSpec],
    /// Gather member forms into bundles.
    pub bundle: Option<BundleKind>,
}

/// Why a run's reports cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A `--scope` names nothing in the data.
    #[error(transparent)]
    Scope(#[from] UnknownScope),
    /// `--bundle` with a level that has no member forms.
    #[error(
        "--bundle {0} gathers member forms: use it with --level all or --level member, not \
         --level {1}"
    )]
    BundleLevel(&'static str, &'static str),
}

/// Every PDF of a run, in order, and what they share.
#[derive(Debug)]
pub struct Plan {
    /// One per PDF: member forms, branch reports, community reports, then the summary (or
    /// bundles in place of the member forms).
    pub items: Vec<Item>,
    /// The scope, when the run is limited to one.
    pub scope: Option<Scope>,
    common: Arc<ctx::Common>,
}

impl Plan {
    /// How many reports in all (a bundle counts each report it holds).
    pub fn reports(&self) -> usize {
        self.items.iter().map(Item::reports).sum()
    }
}

impl Model<'_> {
    /// The PDFs a run renders.
    pub fn plan(&self, opts: &PlanOptions) -> Result<Plan, PlanError> {
        let level = opts.level;
        if let Some(b) = opts.bundle
            && !matches!(level, Level::All | Level::Member)
        {
            let name = match level {
                Level::Branch => "branch",
                Level::Community => "community",
                _ => "summary",
            };
            return Err(PlanError::BundleLevel(b.name(), name));
        }
        let scope = if opts.scope.is_empty() {
            None
        } else {
            Some(self.scope(opts.scope)?)
        };
        let members = match &scope {
            Some(s) => s.members.clone(),
            None => self.run.subjects("member"),
        };
        let branches = match &scope {
            Some(s) => s.branches.clone(),
            None => self.branches(),
        };
        let mut communities = self.communities();
        communities.sort();
        if let Some(s) = &scope {
            communities.retain(|(id, _)| s.communities.binary_search(id).is_ok());
        }
        let all = level == Level::All;
        let mut items = Vec::new();
        let (mut branch_items, mut community_items) = (
            (all || level == Level::Branch).then(|| branches.iter().map(|&r| Item::Branch(r))),
            (all || level == Level::Community)
                .then(|| (communities.iter()).map(|(id, row)| Item::Community(id.clone(), *row))),
        );
        match opts.bundle {
            None => {
                if all || level == Level::Member {
                    items.extend(members.iter().map(|&r| Item::Member(r)));
                }
                items.extend(branch_items.take().into_iter().flatten());
                items.extend(community_items.take().into_iter().flatten());
            }
            Some(BundleKind::Branch) => {
                items.extend(self.branch_bundles(&members, &branches));
                items.extend(community_items.take().into_iter().flatten());
            }
            Some(BundleKind::Community) => {
                items.extend(self.community_bundles(&members, &communities));
                items.extend(branch_items.take().into_iter().flatten());
            }
        }
        if all || level == Level::Summary {
            items.push(Item::Summary);
        }
        let mut common = self.common();
        common.scope = scope.as_ref().map(|s| s.facts.clone());
        Ok(Plan {
            items,
            scope,
            common: Arc::new(common),
        })
    }

    /// One bundle per unit branch with members (or itself) in scope, in branch order; then
    /// the forms of members in no unit branch, one by one.
    fn branch_bundles(&self, members: &[usize], branches: &[usize]) -> Vec<Item> {
        let mut by_branch: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut loose = Vec::new();
        let unit: HashSet<usize> = self.branches().into_iter().collect();
        let bc = self.words.branch_column();
        for &m in members {
            let branch = (bc.as_deref())
                .map(|c| self.words.subject_text("member", m, c))
                .and_then(|id| self.run.subject_row("organization", &id))
                .filter(|r| unit.contains(r));
            match branch {
                Some(b) => by_branch.entry(b).or_default().push(m),
                None => loose.push(Item::Member(m)),
            }
        }
        for &b in branches {
            by_branch.entry(b).or_default();
        }
        let in_scope: HashSet<usize> = branches.iter().copied().collect();
        let mut items: Vec<Item> = (by_branch.into_iter())
            .map(|(b, mut rows)| {
                self.sort_by_id(&mut rows);
                Item::Bundle(Box::new(BundleItem {
                    kind: BundleKind::Branch,
                    id: self
                        .words
                        .subject_text("organization", b, self.words.org_key()),
                    name: self.words.subject_name("organization", b),
                    head: in_scope.contains(&b).then_some(Item::Branch(b)),
                    members: rows,
                }))
            })
            .collect();
        items.extend(loose);
        items
    }

    /// One bundle per community with residents (or itself) in scope, by community id; then
    /// the forms of members who live in no known community, one by one.
    fn community_bundles(&self, members: &[usize], communities: &[(String, usize)]) -> Vec<Item> {
        let residence = &self.words.roles().members.residence;
        let mut by_community: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut loose = Vec::new();
        for &m in members {
            let c = self.words.subject_text("member", m, residence);
            if self.words.community_row(&c).is_some() {
                by_community.entry(c).or_default().push(m);
            } else {
                loose.push(Item::Member(m));
            }
        }
        for (c, _) in communities {
            by_community.entry(c.clone()).or_default();
        }
        let mut items: Vec<Item> = (by_community.into_iter())
            .map(|(c, mut rows)| {
                self.sort_by_id(&mut rows);
                let head = (communities.iter())
                    .find(|(id, _)| *id == c)
                    .map(|(id, row)| Item::Community(id.clone(), *row));
                Item::Bundle(Box::new(BundleItem {
                    kind: BundleKind::Community,
                    name: self.words.community_name(&c),
                    id: c,
                    head,
                    members: rows,
                }))
            })
            .collect();
        items.extend(loose);
        items
    }

    /// Member rows in id order.
    fn sort_by_id(&self, rows: &mut [usize]) {
        rows.sort_by_cached_key(|&r| self.words.member_id(r));
    }

    /// The data and file of item `index` of `plan`.
    pub fn job(&self, plan: &Plan, index: usize) -> Job {
        self.job_of(&plan.common, &plan.items[index], plan.scope.as_ref())
    }

    /// Where item's PDF goes, relative to the output folder (known before its data is made,
    /// for `--resume`).
    pub fn item_file(&self, item: &Item) -> PathBuf {
        match item {
            Item::Member(row) => PathBuf::from("members").join(file_name(
                &self.words.member_id(*row),
                &self.words.subject_name("member", *row),
            )),
            Item::Branch(row) => PathBuf::from("branches").join(file_name(
                &self
                    .words
                    .subject_text("organization", *row, self.words.org_key()),
                &self.words.subject_name("organization", *row),
            )),
            Item::Community(id, row) => PathBuf::from("communities").join(file_name(
                id,
                &self
                    .words
                    .community_text(*row, &self.words.roles().communities.name),
            )),
            Item::Summary => PathBuf::from("summary.pdf"),
            Item::Bundle(b) => b.file(),
        }
    }

    fn job_of(&self, common: &Arc<ctx::Common>, item: &Item, scope: Option<&Scope>) -> Job {
        let body = match item {
            Item::Member(row) => Body::Member(Box::new(self.member_facts(*row))),
            Item::Branch(row) => Body::Branch(self.branch_facts(*row)),
            Item::Community(id, row) => Body::Community(self.community_facts(id, *row)),
            Item::Summary => Body::Summary(self.summary_facts(scope)),
            Item::Bundle(b) => return self.bundle_job(common, b),
        };
        let mut job = job_with(common, body);
        job.file = self.item_file(item);
        job
    }

    fn bundle_job(&self, common: &Arc<ctx::Common>, b: &BundleItem) -> Job {
        let mut parts: Vec<Job> = Vec::with_capacity(b.members.len() + 1);
        if let Some(head) = &b.head {
            parts.push(self.job_of(common, head, None));
        }
        parts.extend(b.members.iter().map(|&r| {
            let body = Body::Member(Box::new(self.member_facts(r)));
            job_with(common, body)
        }));
        let facts = ctx::Bundle {
            kind: b.kind.name().into(),
            kind_cn: b.kind.chinese().into(),
            id: b.id.clone(),
            name: b.name.clone(),
            member_count: b.members.len(),
            parts: (parts.iter().enumerate())
                .map(|(i, p)| ctx::BundlePart {
                    kind: p.kind.into(),
                    id: p.id.clone(),
                    name: p.name.clone(),
                    path: format!("part-{i}.typ"),
                })
                .collect(),
        };
        let context = ctx::Context {
            common: common.clone(),
            report: ctx::ReportRef {
                kind: "bundle".into(),
                id: b.id.clone(),
            },
            member: None,
            branch: None,
            community: None,
            summary: None,
            bundle: Some(facts),
        };
        Job {
            kind: "bundle",
            id: b.id.clone(),
            name: b.name.clone(),
            file: b.file(),
            context: serde_json::to_value(&context).unwrap_or_default(),
            parts,
        }
    }
}

/// The job of one report body.
fn job_with(common: &Arc<ctx::Common>, body: Body) -> Job {
    let (kind, folder, id, name) = match &body {
        Body::Member(m) => ("member", "members", m.id.clone(), m.name.clone()),
        Body::Branch(b) => ("branch", "branches", b.id.clone(), b.name.clone()),
        Body::Community(c) => ("community", "communities", c.id.clone(), c.name.clone()),
        Body::Summary(_) => ("summary", "", "summary".to_string(), String::new()),
    };
    let file = match &body {
        Body::Summary(_) => PathBuf::from("summary.pdf"),
        _ => PathBuf::from(folder).join(file_name(&id, &name)),
    };
    let mut context = ctx::Context {
        common: common.clone(),
        report: ctx::ReportRef {
            kind: kind.into(),
            id: id.clone(),
        },
        member: None,
        branch: None,
        community: None,
        summary: None,
        bundle: None,
    };
    match body {
        Body::Member(m) => context.member = Some(*m),
        Body::Branch(b) => context.branch = Some(b),
        Body::Community(c) => context.community = Some(c),
        Body::Summary(s) => context.summary = Some(s),
    }
    Job {
        kind,
        id,
        name,
        file,
        context: serde_json::to_value(&context).unwrap_or_default(),
        parts: Vec::new(),
    }
}
