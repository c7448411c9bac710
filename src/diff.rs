//! Impact of a policy change (`rulebook diff`): evaluate the old and the new policy set on the
//! same data and list every subject whose status changed, grouped by directive and rule,
//! with counts per transition (pass→fail …) and both messages. The old set may be a folder or
//! a git revision of the policies folder.

use crate::findings::{Finding, Status};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One subject whose verdict changed.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Key of the directive the rule belongs to.
    pub directive: String,
    /// Id of the rule whose verdict changed.
    pub rule: String,
    /// Kind of subject (`member`, `branch`, …).
    pub subject_kind: String,
    /// The subject's id.
    pub subject_id: String,
    /// The subject's name, from the new side's finding if there is one, else the old side's;
    /// `None` when neither finding has one.
    pub subject_name: Option<String>,
    /// `None` when the rule did not exist (or was not in force) on that side.
    pub before: Option<Status>,
    /// Status under the new policy set; `None` when the rule did not exist (or was not in
    /// force) there.
    pub after: Option<Status>,
    /// Message of the old finding; `None` when there was none.
    pub before_message: Option<String>,
    /// Message of the new finding; `None` when there is none.
    pub after_message: Option<String>,
}

impl Change {
    /// The change as `before→after` status names (`(none)` for a missing side), e.g. `pass→fail`.
    pub fn transition(&self) -> String {
        let name = |s: Option<Status>| s.map_or("(none)", |s| s.name());
        format!("{}→{}", name(self.before), name(self.after))
    }
}

/// Changes grouped by (directive, rule), with counts per transition.
#[derive(Debug, Default, Serialize)]
pub struct Impact {
    /// Label of the old policy set (as the caller describes it: folder or revision, version).
    pub base: String,
    /// Label of the new policy set.
    pub new: String,
    /// How many were compared, as the caller counts them (`rulebook diff` passes the number
    /// of findings of the new set).
    pub subjects_compared: usize,
    /// Every finding whose status differs, sorted by directive, rule, subject kind and id.
    pub changes: Vec<Change>,
    /// Per `directive / rule`, the number of changes per transition (see
    /// [`Change::transition`]).
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
}

/// A finding's key (directive, rule, subject kind, subject id), hashed: what [`compare_runs`]
/// keeps of every finding (XXH3-128, so two keys share a hash with negligible chance).
fn key_hash(f: &Finding) -> u128 {
    let mut h = twox_hash::XxHash3_128::new();
    for part in [
        &*f.directive,
        &*f.rule,
        &*f.subject_kind,
        f.subject_id.as_str(),
    ] {
        h.write(part.as_bytes());
        h.write(&[0]);
    }
    h.finish_128()
}

/// Compare the findings of two runs without holding them. On one dataset (the policy sets
/// share a schema) see [`crate::eval::Run::changed_findings`]; otherwise the old run's
/// verdicts are kept as 17 bytes each (key hash and status), the new run's findings are
/// compared as they come and only the changed ones kept, then the old run is evaluated again
/// for the changed findings' old messages. Gives what [`compare`] gives on all the findings
/// (each key has one finding per run: one version of a rule is in force, one finding per
/// subject), with memory for the changes only; returns the changes and the number of
/// findings of the new run.
pub fn compare_runs(
    base: &crate::eval::Run,
    new: &crate::eval::Run,
) -> Result<(Vec<Change>, usize), crate::eval::Error> {
    // On one dataset: one status byte per finding, then only the changed findings made.
    if let Some((before, after, count)) = new.changed_findings(base)? {
        return Ok((compare(&before, &after), count));
    }
    let mut before: rustc_hash::FxHashMap<u128, Status> = Default::default();
    base.for_each_finding(|f| {
        before.insert(key_hash(&f), f.status);
        Ok(())
    })?;
    let mut changed_new = Vec::new();
    let mut changed: rustc_hash::FxHashSet<u128> = Default::default();
    let mut count = 0;
    new.for_each_finding(|f| {
        count += 1;
        let k = key_hash(&f);
        if before.remove(&k) != Some(f.status) {
            changed.insert(k);
            changed_new.push(f);
        }
        Ok(())
    })?;
    // Keys left in `before` have no finding in the new run.
    let mut changed_old = Vec::new();
    if !changed.is_empty() || !before.is_empty() {
        base.for_each_finding(|f| {
            let k = key_hash(&f);
            if changed.contains(&k) || before.contains_key(&k) {
                changed_old.push(f);
            }
            Ok(())
        })?;
    }
    Ok((compare(&changed_old, &changed_new), count))
}

/// Compare findings of the old and new policy sets.
pub fn compare(base: &[Finding], new: &[Finding]) -> Vec<Change> {
    type Key = (String, String, String, String);
    let key = |f: &Finding| -> Key {
        (
            f.directive.to_string(),
            f.rule.to_string(),
            f.subject_kind.to_string(),
            f.subject_id.clone(),
        )
    };
    let old: BTreeMap<Key, &Finding> = base.iter().map(|f| (key(f), f)).collect();
    let newm: BTreeMap<Key, &Finding> = new.iter().map(|f| (key(f), f)).collect();
    let mut keys: Vec<&Key> = old.keys().chain(newm.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        let (a, b) = (old.get(k), newm.get(k));
        let (sa, sb) = (a.map(|f| f.status), b.map(|f| f.status));
        if sa == sb {
            continue;
        }
        out.push(Change {
            directive: k.0.clone(),
            rule: k.1.clone(),
            subject_kind: k.2.clone(),
            subject_id: k.3.clone(),
            subject_name: b.or(a).and_then(|f| f.subject_name.clone()),
            before: sa,
            after: sb,
            before_message: a.map(|f| f.message.clone()),
            after_message: b.map(|f| f.message.clone()),
        });
    }
    out
}

impl Impact {
    /// The impact of `changes`, counting them per rule and transition.
    pub fn new(
        base: String,
        new: String,
        subjects_compared: usize,
        changes: Vec<Change>,
    ) -> Impact {
        let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for c in &changes {
            *counts
                .entry(format!("{} / {}", c.directive, c.rule))
                .or_default()
                .entry(c.transition())
                .or_default() += 1;
        }
        Impact {
            base,
            new,
            subjects_compared,
            changes,
            counts,
        }
    }

    fn groups(&self) -> BTreeMap<(String, String), Vec<&Change>> {
        let mut g: BTreeMap<(String, String), Vec<&Change>> = BTreeMap::new();
        for c in &self.changes {
            g.entry((c.directive.clone(), c.rule.clone()))
                .or_default()
                .push(c);
        }
        g
    }

    /// The impact as plain text for a terminal: per rule, the counts, then each subject with
    /// both messages.
    pub fn render_text(&self) -> String {
        let mut s = format!(
            "impact of {} → {}: {} finding(s) changed\n",
            self.base,
            self.new,
            self.changes.len()
        );
        for ((d, r), cs) in self.groups() {
            let counts = &self.counts[&format!("{d} / {r}")];
            let summary: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
            s.push_str(&format!("\n{r} [{d}]: {}\n", summary.join(", ")));
            for c in cs {
                s.push_str(&format!(
                    "  {} {}{}: {}\n      before: {}\n      after:  {}\n",
                    c.subject_kind,
                    c.subject_id,
                    c.subject_name
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    c.transition(),
                    c.before_message.as_deref().unwrap_or("—"),
                    c.after_message.as_deref().unwrap_or("—"),
                ));
            }
        }
        s
    }

    /// The impact as Markdown (for a pull-request comment): a table of counts per rule, then
    /// a collapsible table of subjects per rule.
    pub fn render_markdown(&self) -> String {
        let mut s = format!(
            "### Policy change impact\n\n`{}` → `{}`: **{} finding(s) changed**.\n\n",
            self.base,
            self.new,
            self.changes.len()
        );
        if self.changes.is_empty() {
            s.push_str("No subject's verdict changes.\n");
            return s;
        }
        s.push_str("| directive | rule | changes |\n|---|---|---|\n");
        for ((d, r), _) in self.groups() {
            let counts = &self.counts[&format!("{d} / {r}")];
            let summary: Vec<String> = counts.iter().map(|(t, n)| format!("{t}: {n}")).collect();
            s.push_str(&format!("| {d} | `{r}` | {} |\n", summary.join(", ")));
        }
        for ((d, r), cs) in self.groups() {
            s.push_str(&format!(
                "\n<details><summary><code>{r}</code> ({d}): {} subject(s)</summary>\n\n",
                cs.len()
            ));
            s.push_str("| subject | change | before | after |\n|---|---|---|---|\n");
            for c in cs {
                let cell = |t: &Option<String>| t.as_deref().unwrap_or("—").replace('|', "\\|");
                s.push_str(&format!(
                    "| {} {} | {} | {} | {} |\n",
                    c.subject_id,
                    c.subject_name.as_deref().unwrap_or(""),
                    c.transition(),
                    cell(&c.before_message),
                    cell(&c.after_message)
                ));
            }
            s.push_str("\n</details>\n");
        }
        s
    }
}

/// Why the old policy set (`--base`) cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policies folder cannot be resolved.
    #[error("policy folder {}", .path.display())]
    PolicyFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Git cannot be run.
    #[error("running git")]
    RunGit {
        /// Git's arguments.
        args: Vec<String>,
        /// Why.
        source: std::io::Error,
    },
    /// A git command failed.
    #[error("git {}: {stderr}", .args.join(" "))]
    Git {
        /// Git's arguments.
        args: Vec<String>,
        /// What git wrote to stderr.
        stderr: String,
    },
    /// `--base` is not a folder, and the policies folder is not in a git repository.
    #[error(
        "--base `{base}` is neither a folder nor a git revision ({} is not in a git repository)",
        .policies.display()
    )]
    NotInRepository {
        /// `--base`.
        base: String,
        /// The policies folder.
        policies: PathBuf,
    },
    /// `--base` is neither a folder nor a revision of the repository.
    #[error("--base `{base}` is neither a folder nor a git revision")]
    NotARevision {
        /// `--base`.
        base: String,
    },
    /// A file of the revision cannot be read from git.
    #[error("git show {base}:{file} failed")]
    Show {
        /// The revision.
        base: String,
        /// The file (from the top of the repository).
        file: String,
    },
    /// A file of the revision cannot be read from git (spawning `git show`) or written out;
    /// the message is the I/O error's.
    #[error("{error}")]
    Io {
        /// The file or folder written, or the repository read.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The revision has no policy files.
    #[error("revision `{base}` has no files under {prefix}/")]
    NoFiles {
        /// The revision.
        base: String,
        /// The policies folder, from the top of the repository.
        prefix: String,
    },
}

/// The old policy set as a folder: `base` itself if it is one, otherwise a git revision of
/// the folder `policies` (checked out into `into`).
pub fn resolve_base(base: &str, policies: &Path, into: &Path) -> Result<PathBuf, Error> {
    let p = Path::new(base);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    let dir = policies
        .canonicalize()
        .map_err(|source| Error::PolicyFolder {
            path: policies.to_path_buf(),
            source,
        })?;
    let git = |args: &[&str]| -> Result<String, Error> {
        let args_owned = || args.iter().map(|a| a.to_string()).collect();
        let out = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .map_err(|source| Error::RunGit {
                args: args_owned(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::Git {
                args: args_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let prefix = git(&["rev-parse", "--show-prefix"]).map_err(|_| Error::NotInRepository {
        base: base.to_string(),
        policies: policies.to_path_buf(),
    })?;
    let prefix = prefix.trim().trim_end_matches('/').to_string();
    git(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{base}^{{commit}}"),
    ])
    .map_err(|_| Error::NotARevision {
        base: base.to_string(),
    })?;
    let top = git(&["rev-parse", "--show-toplevel"])?.trim().to_string();
    let files = git(&[
        "ls-tree",
        "-r",
        "--full-name",
        "--name-only",
        base,
        "--",
        ".",
    ])?;
    let mut n = 0;
    for f in files.lines().filter(|l| !l.is_empty()) {
        let rel = f.strip_prefix(&format!("{prefix}/")).unwrap_or(f);
        let out = Command::new("git")
            .arg("-C")
            .arg(&top)
            .args(["show", &format!("{base}:{f}")])
            .output()
            .map_err(|error| Error::Io {
                path: PathBuf::from(&top),
                error,
            })?;
        if !out.status.success() {
            return Err(Error::Show {
                base: base.to_string(),
                file: f.to_string(),
            });
        }
        let dest = into.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|error| Error::Io {
                path: parent.to_path_buf(),
                error,
            })?;
        }
        std::fs::write(&dest, out.stdout).map_err(|error| Error::Io { path: dest, error })?;
        n += 1;
    }
    if n == 0 {
        return Err(Error::NoFiles {
            base: base.to_string(),
            prefix,
        });
    }
    Ok(into.to_path_buf())
}
