//! Hovers: what a declared name is (from the [`index`](super::index)), a rule function's
//! signature and doc, a built-in name, and the `check --explain` text of a diagnostic.

use super::Server;
use super::text::idents;
use crate::script::builtin_doc;
use lsp_types::{Hover, HoverContents, HoverParams, MarkupContent, MarkupKind};

/// What the built-in names of an expression hold.
const BUILTIN_NAME_DOCS: &[(&str, &str)] = &[
    ("as_of", "the evaluation date (`--as-of`), `\"YYYY-MM-DD\"`"),
    ("period_start", "the first day of the rule's period"),
    ("period_end", "the last day of the rule's period"),
    ("subject_id", "the key of the subject the rule is checking"),
];

/// The hover at a position, if there is something to say.
pub fn hover(s: &Server, p: &HoverParams) -> Option<Hover> {
    let (file, at) = s.locate(&p.text_document_position_params)?;
    let mut parts: Vec<String> = Vec::new();
    let ix = s.index();
    if let Some(d) = ix.target_at(&file, at).and_then(|t| ix.def(&t)) {
        parts.push(d.doc.clone());
    } else if let Some(text) = s.text(&file)
        && let Some((_, str_)) = ix.site_at(&file, text, at)
        && let Some(v) = str_.value_offset(at)
        && let Some(id) = idents(&str_.value)
            .into_iter()
            .find(|i| i.span.start <= v && v <= i.span.end)
    {
        if id.call
            && let Some((sig, doc)) = builtin_doc(&id.name)
        {
            parts.push(format!("**function** `{sig}`\n\n{doc}"));
        } else if let Some((n, doc)) = BUILTIN_NAME_DOCS.iter().find(|(n, _)| *n == id.name) {
            parts.push(format!("**built-in** `{n}`: {doc}"));
        }
    }
    for code in s.codes_at(&file, at) {
        if let Some(text) = crate::policy::codes::explain(code) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: parts.join("\n\n---\n\n"),
        }),
        range: None,
    })
}
