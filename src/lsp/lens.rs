//! Code lenses: over each rule, how many subjects of a sample dataset pass, fail or are out
//! of its scope (`pass 120 · fail 8 · n/a 3`), counted with the library on save. The dataset
//! is the `rulebook.data` setting (`initializationOptions`) or `data` in the workspace's
//! `rulebook.toml`; without one there are no lenses.

use super::text;
use crate::findings::Status;
use crate::script::Limits;
use lsp_types::{CodeLens, Command, Range};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The sample dataset folder: `{"rulebook": {"data": …}}` or `{"data": …}` in the client's
/// initialization options, else `data = "…"` in `rulebook.toml` at the workspace root;
/// relative paths are from the workspace root.
pub fn data_setting(
    options: Option<&serde_json::Value>,
    workspace: Option<&Path>,
) -> Option<PathBuf> {
    let from_options = options.and_then(|o| {
        o.get("rulebook")
            .and_then(|r| r.get("data"))
            .or_else(|| o.get("data"))
            .or_else(|| o.get("rulebook.data"))
            .and_then(|d| d.as_str())
            .map(str::to_string)
    });
    let from_file = || {
        let text = std::fs::read_to_string(workspace?.join("rulebook.toml")).ok()?;
        let t: toml::Table = toml::from_str(&text).ok()?;
        t.get("data")?.as_str().map(str::to_string)
    };
    let d = PathBuf::from(from_options.or_else(from_file)?);
    Some(match workspace {
        Some(w) if d.is_relative() => w.join(d),
        _ => d,
    })
}

/// The lens title of one rule's counts.
fn title(count: impl Fn(Status) -> u64) -> String {
    let mut t = format!(
        "pass {} · fail {} · n/a {}",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::NotApplicable)
    );
    for (s, name) in [
        (Status::Warn, "warn"),
        (Status::Error, "error"),
        (Status::Waived, "waived"),
    ] {
        if count(s) > 0 {
            t.push_str(&format!(" · {name} {}", count(s)));
        }
    }
    t
}

/// Lenses for every rule of the set in `root` (with the editor's texts) counted on the
/// dataset in `data`, by file; none when the set or the dataset does not load.
pub fn lenses(
    root: &Path,
    data: &Path,
    overlay: &HashMap<PathBuf, String>,
) -> HashMap<PathBuf, Vec<CodeLens>> {
    let mut out: HashMap<PathBuf, Vec<CodeLens>> = HashMap::new();
    let Ok(set) = crate::policy::load_overlay(root, &Limits::default(), overlay) else {
        return out;
    };
    let Ok(ds) = crate::data::load(data, &set.schema, &Default::default()) else {
        return out;
    };
    let Ok(run) = crate::eval::prepare(&set, &ds, None) else {
        return out;
    };
    let Ok(outcomes) = run.outcomes() else {
        return out;
    };
    for (i, r) in run.rules().enumerate() {
        let file = PathBuf::from(set.sources.name(r.loc.file));
        let pos = text::position(set.sources.text(r.loc.file), r.loc.span.start);
        out.entry(file).or_default().push(CodeLens {
            range: Range::new(pos, pos),
            command: Some(Command {
                title: title(|s| outcomes.rule_count(i, s)),
                command: String::new(),
                arguments: None,
            }),
            data: None,
        });
    }
    out
}
