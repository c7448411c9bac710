//! Checks of the Typst escapers, shared by `tests/properties.rs` (proptest) and the fuzz
//! target `tests/fuzz/fuzz_targets/typst_escape.rs` (included there with `#[path]`).
//!
//! `escape_markup(s)` must:
//! - leave no character with a markup meaning unescaped, and escape nothing else;
//! - be undone by dropping the backslashes: the result is `s` with every line break (what
//!   Typst counts as one) and tab turned into a space and other control characters dropped;
//! - parse, alone and inside markup (`*…*`, `= …`, `#text[…]`), as text, spaces and escapes
//!   only: no syntax error, no code, no line or paragraph break, nothing closes the
//!   surrounding element early.
//!
//! `string_literal(s)` must parse as one Typst string whose value is `s` without its control
//! characters other than `\n`, `\r` and `\t`.

#![allow(dead_code)]

use typst::syntax::ast::AstNode;
use typst::syntax::{SyntaxKind, SyntaxNode, is_newline};

/// Characters `escape_markup` escapes with a backslash.
pub const MARKUP: &str = "\\#$*_`<>@[]~/=-+.:'\"{}();,!?%&|^";

/// What `escape_markup(s)` stands for once its backslashes are removed.
pub fn expected_text(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            if c == '\t' || is_newline(c) {
                Some(' ')
            } else if c.is_control() {
                None
            } else {
                Some(c)
            }
        })
        .collect()
}

/// Check `escaped == escape_markup(original)` (see the module doc); panics with the reason.
pub fn check_markup(original: &str, escaped: &str) {
    // Lexically: every markup character is escaped; nothing else is; no control characters.
    let mut plain = String::with_capacity(original.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars
                .next()
                .unwrap_or_else(|| panic!("dangling backslash in {escaped:?}"));
            assert!(
                MARKUP.contains(next),
                "needless escape of {next:?} in {escaped:?}"
            );
            plain.push(next);
        } else {
            assert!(
                !MARKUP.contains(c),
                "unescaped {c:?} in {escaped:?} (from {original:?})"
            );
            assert!(
                !c.is_control() && !is_newline(c),
                "control or line break {c:?} left in {escaped:?}"
            );
            plain.push(c);
        }
    }
    assert_eq!(
        plain,
        expected_text(original),
        "escaping lost or changed text"
    );

    // Syntactically, as Typst parses it, alone and in three surroundings.
    let alone = typst::syntax::parse(escaped);
    assert_only_text(&alone, escaped);
    for (open, close, kind) in [
        ("*", "*", SyntaxKind::Strong),
        ("= ", "", SyntaxKind::Heading),
        ("#text[", "]", SyntaxKind::FuncCall),
    ] {
        // A space keeps `*` from touching a word (`*a*b` is not strong in Typst) and `=`
        // from eating the text's first space.
        let src = format!("{open}x{escaped}x{close}");
        let root = typst::syntax::parse(&src);
        assert!(
            !root.diagnosis().errors,
            "{src:?} does not parse: {:?}",
            root.errors_and_warnings().0
        );
        let top: Vec<SyntaxKind> = root.children().map(|n| n.kind()).collect();
        let want: &[SyntaxKind] = match kind {
            SyntaxKind::FuncCall => &[SyntaxKind::Hash, SyntaxKind::FuncCall],
            _ => &[kind],
        };
        assert_eq!(top, want, "{src:?} parses as {root:?}");
        let element = root.children().find(|n| n.kind() == kind).unwrap();
        // The element's own markup: everything inside it is text.
        let inner = find(element, SyntaxKind::Markup)
            .unwrap_or_else(|| panic!("no markup inside {src:?}: {element:?}"));
        assert_only_text(inner, &src);
        assert_eq!(
            inner.full_text().trim(),
            format!("x{escaped}x").trim(),
            "the element of {src:?} holds only part of the text"
        );
    }
}

/// The first node of `kind` under `node` (depth first).
fn find(node: &SyntaxNode, kind: SyntaxKind) -> Option<&SyntaxNode> {
    for c in node.children() {
        if c.kind() == kind {
            return Some(c);
        }
        if let Some(n) = find(c, kind) {
            return Some(n);
        }
    }
    None
}

/// Markup that holds only text, spaces without line breaks, and escapes.
fn assert_only_text(markup: &SyntaxNode, src: &str) {
    assert!(
        !markup.diagnosis().errors,
        "{src:?} does not parse: {:?}",
        markup.errors_and_warnings().0
    );
    for c in markup.children() {
        match c.kind() {
            SyntaxKind::Text | SyntaxKind::Escape => {}
            SyntaxKind::Space => assert!(
                !c.leaf_text().chars().any(is_newline),
                "a line break in {src:?}"
            ),
            other => panic!("{other:?} node `{}` in {src:?}", c.full_text()),
        }
    }
}

/// Check `literal == string_literal(original)`; panics with the reason.
pub fn check_literal(original: &str, literal: &str) {
    let root = typst::syntax::parse_code(literal);
    assert!(
        !root.diagnosis().errors,
        "{literal:?} does not parse: {:?}",
        root.errors_and_warnings().0
    );
    let nodes: Vec<&SyntaxNode> = root.children().collect();
    assert_eq!(nodes.len(), 1, "{literal:?} parses as {nodes:?}");
    let s = typst::syntax::ast::Str::from_untyped(nodes[0])
        .unwrap_or_else(|| panic!("{literal:?} is not a string: {nodes:?}"));
    let want: String = original
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        .collect();
    assert_eq!(s.get().as_str(), want, "string literal of {original:?}");
}
