//! Declarations and what hovers say about them: a parameter's label and dated values with
//! their basis, an aggregate's computation, a clause's quoted text, a column's type and
//! aliases, a helper function's comment.

use super::{Def, Index, Kind, Table, Target, entries, get, sub, tables, text};
use std::fmt::Write;
use std::path::Path;
use toml::de::DeValue;

/// A TOML value as written (strings without quotes, lists with commas).
fn show(v: &DeValue) -> String {
    match v {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(a) => {
            let parts: Vec<String> = a.iter().map(|x| show(x.get_ref())).collect();
            format!("[{}]", parts.join(", "))
        }
        DeValue::Table(t) => {
            let parts: Vec<String> = entries(t)
                .map(|(k, _, v)| format!("{k} = {}", show(v.get_ref())))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
    }
}

/// The text of field `key`, if it is given.
fn field(t: &Table, key: &str) -> Option<String> {
    get(t, key).map(|v| show(v.get_ref()))
}

fn push(
    ix: &mut Index,
    kind: Kind,
    name: &str,
    owner: &str,
    file: &Path,
    span: std::ops::Range<usize>,
    doc: String,
) {
    ix.defs.push(Def {
        target: Target::new(kind, name, owner),
        file: file.to_path_buf(),
        span,
        doc,
    });
}

/// Record every declaration of a TOML file of the set.
pub(super) fn declarations(ix: &mut Index, file: &Path, src: &str, doc: &Table) {
    if let Some(s) = sub(doc, "subjects") {
        for (name, span, v) in entries(s) {
            let DeValue::Table(t) = v.get_ref() else {
                continue;
            };
            let table = field(t, "table").unwrap_or_default();
            ix.subject_table.insert(name.to_string(), table.clone());
            let label = field(t, "label").unwrap_or_default();
            push(
                ix,
                Kind::Subject,
                name,
                "",
                file,
                span,
                format!("**subject** `{name}` {label}\n\nrows of table `{table}`"),
            );
        }
    }
    if let Some(t) = sub(doc, "tables") {
        schema(ix, file, t);
    }
    if let Some(p) = sub(doc, "parameters") {
        for (name, span, v) in entries(p) {
            let DeValue::Table(t) = v.get_ref() else {
                continue;
            };
            push(ix, Kind::Param, name, "", file, span, param_doc(name, t));
        }
    }
    if let Some(a) = sub(doc, "aggregates") {
        for (name, span, v) in entries(a) {
            let DeValue::Table(t) = v.get_ref() else {
                continue;
            };
            if let Some(s) = field(t, "subject") {
                ix.agg_subject.insert(name.to_string(), s);
            }
            push(
                ix,
                Kind::Aggregate,
                name,
                "",
                file,
                span,
                aggregate_doc(name, t, src),
            );
        }
    }
    if let Some(p) = sub(doc, "periods") {
        for (name, span, v) in entries(p) {
            let DeValue::Table(t) = v.get_ref() else {
                continue;
            };
            let mut d = format!(
                "**period** `{name}` {}\n",
                field(t, "label").unwrap_or_default()
            );
            for key in ["start", "end", "not_before", "not_after"] {
                if let Some(v) = field(t, key) {
                    let _ = write!(d, "\n- {key}: `{v}`");
                }
            }
            push(ix, Kind::Period, name, "", file, span, d);
        }
    }
    if let Some(d) = sub(doc, "directive") {
        directive(ix, file, src, d);
    }
    for (i, r) in tables(get(doc, "rule")).into_iter().enumerate() {
        let id = get(r, "id").and_then(text).unwrap_or("");
        let owner = super::rule_owner(file, id, i);
        if let Some(l) = sub(r, "let") {
            for (name, span, v) in entries(l) {
                let e = show(v.get_ref());
                push(
                    ix,
                    Kind::Let,
                    name,
                    &owner,
                    file,
                    span,
                    format!("**let** `{name}` (rule `{id}`)\n\n```rhai\n{e}\n```"),
                );
            }
        }
    }
}

fn param_doc(name: &str, t: &Table) -> String {
    let mut d = format!(
        "**parameter** `{name}` — {}",
        field(t, "label").unwrap_or_default()
    );
    if let Some(u) = field(t, "unit") {
        let _ = write!(d, " ({u})");
    }
    d.push('\n');
    for v in tables(get(t, "values")) {
        let from = field(v, "from").unwrap_or_default();
        let value = field(v, "value").unwrap_or_default();
        let _ = write!(d, "\n- from {from}: `{value}`");
    }
    let basis = field(t, "basis").unwrap_or_default();
    let _ = write!(d, "\n\nbasis: **{basis}**");
    if let Some(q) = field(t, "quote") {
        let _ = write!(d, "\n\n> {q}");
    }
    if let Some(r) = field(t, "reason") {
        let _ = write!(d, "\n\nreason: {r}");
    }
    d
}

fn aggregate_doc(name: &str, t: &Table, src: &str) -> String {
    let f = |k: &str| field(t, k).unwrap_or_default();
    let mut d = format!("**aggregate** `{name}` — {}\n\n", f("label"));
    let _ = write!(d, "`{}`", f("op"));
    if let Some(c) = field(t, "column") {
        let _ = write!(d, " of `{c}`");
    }
    if let Some(e) = field(t, "end_column") {
        let _ = write!(d, " to `{e}`");
    }
    let _ = write!(
        d,
        " over rows of table `{}` per `{}` (by `{}`)",
        f("table"),
        f("subject"),
        f("by")
    );
    let conds = tables(get(t, "where"));
    if !conds.is_empty() {
        d.push_str("\n\nwhere:\n");
        for v in get(t, "where").map(super::items).unwrap_or_default() {
            let raw = src.get(v.span()).unwrap_or("");
            let _ = write!(d, "\n- `{raw}`");
        }
    }
    for k in ["pick", "except_days", "merge_overlaps"] {
        if let Some(v) = field(t, k) {
            let _ = write!(d, "\n\n{k}: `{v}`");
        }
    }
    d
}

fn schema(ix: &mut Index, file: &Path, t: &Table) {
    for (name, span, v) in entries(t) {
        let DeValue::Table(tv) = v.get_ref() else {
            continue;
        };
        let mut d = format!(
            "**table** `{name}` {}",
            field(tv, "label").unwrap_or_default()
        );
        if let Some(a) = field(tv, "aliases") {
            let _ = write!(d, "\n\naliases: {a}");
        }
        if let Some(k) = field(tv, "key") {
            let _ = write!(d, "\n\nkey: `{k}`");
        }
        push(ix, Kind::Table, name, "", file, span, d);
        let Some(cols) = sub(tv, "columns") else {
            continue;
        };
        for (c, span, cv) in entries(cols) {
            let DeValue::Table(ct) = cv.get_ref() else {
                continue;
            };
            let f = |k: &str| field(ct, k);
            let mut d = format!(
                "**column** `{name}.{c}` {}\n\ntype: `{}`",
                f("label").unwrap_or_default(),
                f("type").unwrap_or_default()
            );
            for k in ["aliases", "references", "required", "after", "values"] {
                if let Some(v) = f(k) {
                    let _ = write!(d, "\n\n{k}: {v}");
                }
            }
            push(ix, Kind::Column, c, name, file, span, d);
        }
    }
}

fn directive(ix: &mut Index, file: &Path, src: &str, d: &Table) {
    let key = get(d, "key").and_then(text).unwrap_or("").to_string();
    if let Some(k) = get(d, "key") {
        let span = super::TomlStr::decode(src, &k.span())
            .map_or(k.span(), |t| t.file_range(&(0..t.value.len())));
        let mut doc = format!(
            "**directive** `{key}` — {}",
            field(d, "title").unwrap_or_default()
        );
        for f in [
            "issuer",
            "document_number",
            "issued_on",
            "effective_from",
            "effective_until",
            "summary",
        ] {
            if let Some(v) = field(d, f) {
                let _ = write!(doc, "\n\n{f}: {v}");
            }
        }
        push(ix, Kind::Directive, &key, "", file, span, doc);
    }
    if let Some(c) = sub(d, "clauses") {
        for (name, span, v) in entries(c) {
            let DeValue::Table(t) = v.get_ref() else {
                continue;
            };
            let mut doc = format!(
                "**clause** `{name}` of `{key}`\n\n> {}",
                field(t, "text").unwrap_or_default()
            );
            if let Some(n) = field(t, "note") {
                let _ = write!(doc, "\n\nnote: {n}");
            }
            push(ix, Kind::Clause, name, &key, file, span, doc);
        }
    }
}

/// Record the helper functions of a Rhai file (`fn name(args)`), each with the comment
/// lines above it.
pub(super) fn helpers(ix: &mut Index, file: &Path, src: &str) {
    let mut comment: Vec<&str> = Vec::new();
    let mut off = 0;
    for line in src.split_inclusive('\n') {
        let t = line.trim();
        if let Some(c) = t.strip_prefix("//") {
            comment.push(c.trim());
        } else if let Some(rest) = t
            .strip_prefix("fn ")
            .or_else(|| t.strip_prefix("private fn "))
        {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let sig = rest.split('{').next().unwrap_or(rest).trim();
            let start = off + line.find(&name).unwrap_or(0);
            let doc = format!("**helper** `{sig}`\n\n{}", comment.join(" "));
            push(
                ix,
                Kind::Helper,
                &name,
                "",
                file,
                start..start + name.len(),
                doc,
            );
            comment.clear();
        } else if !t.is_empty() {
            comment.clear();
        }
        off += line.len();
    }
}
