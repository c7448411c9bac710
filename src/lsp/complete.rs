//! Completion inside expressions (the names in scope for that rule: `let`s, parameters,
//! aggregates of the rule's subject, subject columns, built-in names, rule and helper
//! functions) and inside `where` lists (the columns of the aggregate's table).

use super::Server;
use super::index::{Kind, SiteKind, names_in_scope};
use crate::policy::BUILTIN_NAMES;
use crate::script::BUILTIN_DOCS;
use lsp_types::{CompletionItem, CompletionItemKind, CompletionParams, CompletionResponse};

fn item(label: &str, kind: CompletionItemKind, detail: &str) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail: (!detail.is_empty()).then(|| detail.to_string()),
        ..CompletionItem::default()
    }
}

fn kind_of(k: Kind) -> CompletionItemKind {
    match k {
        Kind::Param => CompletionItemKind::CONSTANT,
        Kind::Column => CompletionItemKind::FIELD,
        Kind::Helper => CompletionItemKind::FUNCTION,
        _ => CompletionItemKind::VARIABLE,
    }
}

/// The completions at a position inside an expression, message or `where` column string.
pub fn complete(s: &Server, p: &CompletionParams) -> Option<CompletionResponse> {
    let (file, at) = s.locate(&p.text_document_position)?;
    let text = s.text(&file)?;
    let ix = s.index();
    let (site, _) = ix.site_at(&file, text, at)?;
    let mut items = Vec::new();
    match site.kind {
        SiteKind::Column => {
            let table = site.scope.table.as_deref().unwrap_or("");
            for d in &ix.defs {
                if d.target.kind == Kind::Column && d.target.owner == table {
                    let detail = d.doc.lines().next().unwrap_or("");
                    items.push(item(&d.target.name, CompletionItemKind::FIELD, detail));
                }
            }
        }
        SiteKind::Expr | SiteKind::Template => {
            for (name, kind, detail) in names_in_scope(ix, &site.scope) {
                items.push(item(&name, kind_of(kind), &detail));
            }
            let builtins: &[&str] = if site.scope.subject.is_some() {
                BUILTIN_NAMES
            } else {
                &["as_of"]
            };
            for n in builtins {
                items.push(item(n, CompletionItemKind::VARIABLE, "built-in"));
            }
            for (name, sig, _) in BUILTIN_DOCS {
                items.push(item(name, CompletionItemKind::FUNCTION, sig));
            }
            for d in ix.defs.iter().filter(|d| d.target.kind == Kind::Helper) {
                let detail = d.doc.lines().next().unwrap_or("");
                items.push(item(&d.target.name, CompletionItemKind::FUNCTION, detail));
            }
        }
    }
    Some(CompletionResponse::Array(items))
}
