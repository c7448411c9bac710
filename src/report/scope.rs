//! Which reports a run renders: `--scope KIND:ID` (a branch, a community, a district or a
//! member) turned into the members, unit branches and communities it covers. Evaluation
//! always reads the whole dataset; the scope only limits the reports, and the summary is
//! computed over it.

use super::{Model, ctx};
use std::collections::BTreeSet;

/// What a `--scope` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScopeKind {
    /// A unit branch (by organization id): the branch and its members.
    Branch,
    /// A community (by id): the community, the unit branches paired with it (contact
    /// community) with their members, and the members who live there.
    Community,
    /// A district (by the communities' district column): every community in it, as above.
    District,
    /// One member (by id).
    Member,
}

impl ScopeKind {
    /// The word used on the command line (`branch`).
    pub fn name(self) -> &'static str {
        match self {
            ScopeKind::Branch => "branch",
            ScopeKind::Community => "community",
            ScopeKind::District => "district",
            ScopeKind::Member => "member",
        }
    }

    /// The Chinese word for reports (`党支部`).
    pub fn chinese(self) -> &'static str {
        match self {
            ScopeKind::Branch => "党支部",
            ScopeKind::Community => "社区",
            ScopeKind::District => "区",
            ScopeKind::Member => "党员",
        }
    }
}

/// One `--scope KIND:ID` as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScopeSpec {
    /// What it names.
    pub kind: ScopeKind,
    /// The id (a district's name).
    pub id: String,
}

impl std::str::FromStr for ScopeSpec {
    type Err = String;

    /// `branch:B01`, `community:C02`, `district:江岸区`, `member:M001`.
    fn from_str(s: &str) -> Result<ScopeSpec, String> {
        let usage = "write KIND:ID with KIND one of branch, community, district, member \
                     (e.g. branch:B01)";
        let Some((kind, id)) = s.split_once(':') else {
            return Err(format!("`{s}`: {usage}"));
        };
        let kind = match kind.trim() {
            "branch" => ScopeKind::Branch,
            "community" => ScopeKind::Community,
            "district" => ScopeKind::District,
            "member" => ScopeKind::Member,
            other => return Err(format!("`{other}` is not a scope kind: {usage}")),
        };
        let id = id.trim();
        if id.is_empty() {
            return Err(format!("`{s}`: the id is empty; {usage}"));
        }
        Ok(ScopeSpec {
            kind,
            id: id.to_string(),
        })
    }
}

/// A scope resolved against the dataset: the subjects whose reports are rendered.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Member rows in scope, by member id.
    pub members: Vec<usize>,
    /// Unit branch rows (organizations) in scope, in row order.
    pub branches: Vec<usize>,
    /// Community ids in scope, sorted.
    pub communities: Vec<String>,
    /// What was asked for, as reports say it.
    pub facts: ctx::ScopeFacts,
}

/// A `--scope` that names nothing in the dataset.
#[derive(Debug, Clone, thiserror::Error)]
#[error("--scope {}:{}: no {} `{}` in the data{}", .kind.name(), .id, .what, .id, close_text(.close))]
pub struct UnknownScope {
    /// What was asked for.
    pub kind: ScopeKind,
    /// The id that was not found.
    pub id: String,
    /// What kind of thing was looked for (`unit branch`).
    pub what: &'static str,
    /// Ids that are close, best first.
    pub close: Vec<String>,
}

fn close_text(close: &[String]) -> String {
    if close.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", close.join(", "))
    }
}

/// Up to five of `known` that look like `id`, closest first.
fn close_matches<'k>(id: &str, known: impl Iterator<Item = &'k str>) -> Vec<String> {
    let lower = id.to_lowercase();
    let mut scored: Vec<(f64, &str)> = known
        .filter_map(|k| {
            let score = strsim::normalized_levenshtein(&lower, &k.to_lowercase());
            (score >= 0.5).then_some((score, k))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(5)
        .map(|(_, k)| k.to_string())
        .collect()
}

impl Model<'_> {
    /// The scope `specs` cover (their union), or the first spec that names nothing, with
    /// close matches.
    pub fn scope(&self, specs: &[ScopeSpec]) -> Result<Scope, UnknownScope> {
        let mut members = BTreeSet::new();
        let mut branches = BTreeSet::new();
        let mut communities = BTreeSet::new();
        let mut items = Vec::new();
        let mut specs = specs.to_vec();
        specs.sort();
        specs.dedup();
        for spec in &specs {
            let name = match spec.kind {
                ScopeKind::Member => {
                    let row = self.find_member(spec)?;
                    members.insert(row);
                    self.words.subject_name("member", row)
                }
                ScopeKind::Branch => {
                    let row = self.find_branch(spec)?;
                    branches.insert(row);
                    members.extend(self.members_of_branch(row));
                    self.words.subject_name("organization", row)
                }
                ScopeKind::Community => {
                    if self.words.community_row(&spec.id).is_none() {
                        let all = self.communities();
                        return Err(UnknownScope {
                            kind: spec.kind,
                            id: spec.id.clone(),
                            what: "community",
                            close: close_matches(&spec.id, all.iter().map(|(c, _)| c.as_str())),
                        });
                    }
                    communities.insert(spec.id.clone());
                    self.words.community_name(&spec.id)
                }
                ScopeKind::District => {
                    let all = self.communities();
                    let district = &self.words.roles().communities.district;
                    let inside: Vec<&String> = (all.iter())
                        .filter(|(_, row)| self.words.community_text(*row, district) == spec.id)
                        .map(|(id, _)| id)
                        .collect();
                    if inside.is_empty() {
                        let names: BTreeSet<String> = (all.iter())
                            .map(|(_, row)| self.words.community_text(*row, district))
                            .filter(|d| !d.is_empty())
                            .collect();
                        return Err(UnknownScope {
                            kind: spec.kind,
                            id: spec.id.clone(),
                            what: "district",
                            close: close_matches(&spec.id, names.iter().map(String::as_str)),
                        });
                    }
                    for c in inside {
                        communities.insert(c.clone());
                    }
                    String::new()
                }
            };
            items.push(ctx::ScopeItem {
                kind: spec.kind.name().into(),
                kind_cn: spec.kind.chinese().into(),
                id: spec.id.clone(),
                name,
            });
        }
        let title = (items.iter())
            .map(|i| {
                if i.name.is_empty() || i.name == i.id {
                    format!("{} {}", i.kind_cn, i.id)
                } else {
                    format!("{} {}（{}）", i.kind_cn, i.name, i.id)
                }
            })
            .collect::<Vec<_>>()
            .join("、");
        self.add_communities(&communities, &mut members, &mut branches);
        // Reports come in the order the whole run has them: members by id, branches by row.
        let members = (self.run.subjects("member").into_iter())
            .filter(|r| members.contains(r))
            .collect();
        let branches = (self.branches().into_iter())
            .filter(|r| branches.contains(r))
            .collect();
        Ok(Scope {
            members,
            branches,
            communities: communities.into_iter().collect(),
            facts: ctx::ScopeFacts { title, items },
        })
    }

    fn find_member(&self, spec: &ScopeSpec) -> Result<usize, UnknownScope> {
        self.run.subject_row("member", &spec.id).ok_or_else(|| {
            let ids: Vec<String> = (self.run.subjects("member").into_iter())
                .map(|r| self.words.member_id(r))
                .collect();
            UnknownScope {
                kind: spec.kind,
                id: spec.id.clone(),
                what: "member",
                close: close_matches(&spec.id, ids.iter().map(String::as_str)),
            }
        })
    }

    fn find_branch(&self, spec: &ScopeSpec) -> Result<usize, UnknownScope> {
        let branches = self.branches();
        let found =
            (self.run.subject_row("organization", &spec.id)).filter(|row| branches.contains(row));
        found.ok_or_else(|| {
            let ids: Vec<String> = (branches.iter())
                .map(|&r| {
                    self.words
                        .subject_text("organization", r, self.words.org_key())
                })
                .collect();
            UnknownScope {
                kind: spec.kind,
                id: spec.id.clone(),
                what: "unit branch",
                close: close_matches(&spec.id, ids.iter().map(String::as_str)),
            }
        })
    }

    /// Member rows whose branch is the organization at `row`.
    pub(super) fn members_of_branch(&self, row: usize) -> Vec<usize> {
        let id = self
            .words
            .subject_text("organization", row, self.words.org_key());
        self.members_of.get(&id).cloned().unwrap_or_default()
    }

    /// Add the unit branches paired with `communities` and their members, and the members
    /// who live in them: one pass over the branches and one over the members, however many
    /// communities a district has.
    fn add_communities(
        &self,
        communities: &BTreeSet<String>,
        members: &mut BTreeSet<usize>,
        branches: &mut BTreeSet<usize>,
    ) {
        if communities.is_empty() {
            return;
        }
        let contact = &self.words.roles().organizations.community;
        for row in self.branches() {
            if communities.contains(&self.words.subject_text("organization", row, contact)) {
                branches.insert(row);
                members.extend(self.members_of_branch(row));
            }
        }
        let residence = &self.words.roles().members.residence;
        for row in self.run.subjects("member") {
            if communities.contains(&self.words.subject_text("member", row, residence)) {
                members.insert(row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let s: ScopeSpec = "branch:B01".parse().unwrap();
        assert_eq!((s.kind, s.id.as_str()), (ScopeKind::Branch, "B01"));
        let s: ScopeSpec = "district: 江岸区 ".parse().unwrap();
        assert_eq!((s.kind, s.id.as_str()), (ScopeKind::District, "江岸区"));
        assert!("B01".parse::<ScopeSpec>().unwrap_err().contains("KIND:ID"));
        assert!(
            "team:B01"
                .parse::<ScopeSpec>()
                .unwrap_err()
                .contains("`team`")
        );
        assert!(
            "member:"
                .parse::<ScopeSpec>()
                .unwrap_err()
                .contains("empty")
        );
    }

    #[test]
    fn close_matches_rank_the_nearest_first() {
        let known = ["B01", "B02", "B10", "C01", "X99"];
        assert_eq!(close_matches("B1", known.into_iter()), ["B01", "B10"]);
        assert_eq!(close_matches("b02", known.into_iter())[0], "B02");
        assert!(close_matches("zzzz", known.into_iter()).is_empty());
    }
}
