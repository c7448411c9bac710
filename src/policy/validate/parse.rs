//! Reading one policy file into its serde shape (`policy::model`) with every mistake
//! of the file reported, not only the first one serde stops at.
//!
//! The text is parsed once into a spanned TOML tree (`toml::de::DeTable`); a TOML syntax
//! error stops there (it is the one error of the file: what follows it cannot be read
//! reliably). The tree is then read into the file's shape; after each mistake the entry the
//! mistake's span points at is repaired and the tree read again ("blank and retry"):
//!
//! - an unknown field is removed;
//! - a value of the wrong kind (or an unknown word) is removed, or, when its field is
//!   required, replaced with a stand-in of a kind that reads (`""`, the first allowed word,
//!   `0`, `false`, `[]`, `{}`);
//! - a missing field gets such a stand-in;
//! - when nothing of that helps, the table holding the mistake is removed.
//!
//! Stand-ins carry spans past the end of the text, so a mistake about a stand-in is known
//! for what it is and the next stand-in is tried; removing a required field is not kept
//! either (it would only be reported as missing). No mistake that only follows from a
//! repair is reported, nor a required field missing after a field that looks like its
//! misspelling (`titel` for `title`). Reading stops after [`MAX_ERRORS`] mistakes.
//!
//! A file with a mistake makes loading fail, but the rest of it is still checked: each
//! `[[rule]]`, parameter, aggregate or period that had a mistake of its own is left out of the
//! later checks, and the names of declarations left out go to `Ctx::broken`, so that their
//! uses are not reported again. A mistake anywhere else (the `[directive]` or `[assessment]`
//! table, a data table, the manifest's own fields) leaves the whole file out of the later
//! checks, as a syntax error does; the names it declares (parameters, aggregates, periods,
//! the directive's key) then go to `Ctx::broken`.

use super::Ctx;
use crate::diag::{Code, Diag, FileId, Loc, did_you_mean, suggest};
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue, Error};

/// Mistakes reported for one file at most; the file is then left out.
const MAX_ERRORS: usize = 50;

/// Readings of one file at most (a repair may try several stand-ins).
const MAX_READS: usize = 1000;

/// Sections whose entries are declarations with global names, left out one by one.
const DECL_SECTIONS: &[&str] = &["parameters", "aggregates", "periods"];

/// The array of rules of a directive file, whose entries are left out one by one.
const RULES: &str = "rule";

type Node<'i> = Spanned<DeValue<'i>>;
type Root<'i> = Spanned<DeTable<'i>>;

/// One step from a table or array to an entry of it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// What a mistake belongs to, and so what is left out of the later checks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Owner {
    /// A `[[rule]]`, by the span of its table.
    Rule(Range<usize>),
    /// A declaration: its section and name.
    Decl(String, String),
    /// Anything else: the whole file.
    File,
}

/// An entry an error's span points at: its path, and whether the span is its key's.
struct Hit {
    path: Vec<Step>,
    key: bool,
}

/// Parse TOML into `T`, reporting every mistake of the file (see the module documentation):
/// the value when the file, less the parts with mistakes, can be checked further.
pub(super) fn parse_toml<T: DeserializeOwned>(cx: &mut Ctx, file: FileId, text: &str) -> Option<T> {
    let name = cx.sources.name(file);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            cx.err(toml_diag(
                e.message(),
                e.span().map(|s| Loc::new(file, s)),
                &name,
            ));
            // What can be read of the file still declares its names.
            let (partial, _) = DeTable::parse_recoverable(text);
            cx.broken.extend(declared_names(partial.get_ref()));
            return None;
        }
    };
    let names = declared_names(root.get_ref());
    let mut fixer = Fixer {
        root,
        end: text.len(),
        next_fake: text.len() + 1,
        reads: 0,
        owners: HashSet::new(),
        misspelt: Vec::new(),
    };
    let mut diags: Vec<Diag> = Vec::new();
    let mut reading = fixer.read::<T>();
    let value = loop {
        let e = match reading {
            Ok(v) => break Some(v),
            Err(e) => e,
        };
        if e.span().is_some_and(|s| fixer.is_stand_in(&s)) {
            break None;
        }
        if !fixer.follows_from_misspelling(&e) {
            diags.push(toml_diag(
                e.message(),
                e.span().map(|s| Loc::new(file, s)),
                &name,
            ));
        }
        if diags.len() >= MAX_ERRORS {
            if let Some(last) = diags.pop() {
                diags.push(last.help(format!(
                    "reading of this file stopped after {MAX_ERRORS} mistakes; fix these and check again"
                )));
            }
            break None;
        }
        match fixer.repair::<T>(&e) {
            Some(next) => reading = next,
            None => break None,
        }
    };
    let had_errors = !diags.is_empty();
    diags.sort_by_key(|d| d.loc.as_ref().map_or(usize::MAX, |l| l.span.start));
    for d in diags {
        cx.err(d);
    }
    let kept = match value {
        Some(v) if !had_errors => return Some(v),
        Some(_) if !fixer.owners.contains(&Owner::File) => {
            fixer.leave_out(&mut cx.broken);
            fixer.read::<T>().ok()
        }
        _ => None,
    };
    if kept.is_none() {
        // The file is left out: uses of what it declares are not reported again.
        cx.broken.extend(names);
    }
    kept
}

/// The names a file declares: its parameters, aggregates and periods, and its directive's
/// key.
fn declared_names(root: &DeTable) -> Vec<String> {
    let mut names: Vec<String> = DECL_SECTIONS
        .iter()
        .filter_map(|s| root.get(*s))
        .filter_map(|v| v.get_ref().as_table())
        .flat_map(|t| t.keys().map(|k| k.get_ref().to_string()))
        .collect();
    if let Some(key) = root
        .get("directive")
        .and_then(|d| d.get_ref().get("key"))
        .and_then(|k| k.get_ref().as_str())
    {
        names.push(key.to_string());
    }
    names
}

/// The diagnostic for a TOML or serde error: its message, place and a hint.
fn toml_diag(msg: &str, loc: Option<Loc>, file_name: &str) -> Diag {
    let msg = msg.trim().to_string();
    let mut d = if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("").to_string();
        let expected = expected_words(rest);
        let mut d = Diag::error(Code::RB0002, format!("unknown field `{field}`"))
            .at(loc)
            .label("not a field here");
        if let Some(s) = did_you_mean(&field, expected.iter().map(|s| s.as_str())) {
            d = d.help(s);
        }
        if !expected.is_empty() {
            d = d.help(format!("fields allowed here: {}", expected.join(", ")));
        }
        d
    } else if msg.starts_with("missing field") {
        Diag::error(Code::RB0003, msg.clone())
            .at(loc)
            .label("this table needs it")
            .help(
                "add the field; see the README section \"Writing rule files\" for each table's fields",
            )
    } else if msg.starts_with("unknown variant") {
        let word = msg.split('`').nth(1).unwrap_or("").to_string();
        let expected = expected_words(&msg);
        let mut d = Diag::error(Code::RB0003, format!("`{word}` is not allowed here"))
            .at(loc)
            .label("unknown word");
        if let Some(s) = did_you_mean(&word, expected.iter().map(|s| s.as_str())) {
            d = d.help(s);
        }
        if !expected.is_empty() {
            d = d.help(format!("allowed: {}", expected.join(", ")));
        }
        d
    } else if msg.starts_with("invalid type")
        || msg.starts_with("invalid value")
        || msg.starts_with("invalid length")
    {
        Diag::error(Code::RB0003, msg.clone())
            .at(loc)
            .label("wrong kind of value")
    } else {
        Diag::error(Code::RB0001, format!("TOML syntax error: {msg}"))
            .at(loc)
            .label("here")
            .help("check quotes, brackets and `=` on this line; strings need matching quotes")
    };
    if d.loc.is_none() {
        d = d.help(format!("in {file_name}"));
    }
    d
}

/// The words serde lists after "expected" in `msg` (each in backticks): the fields or
/// values allowed.
fn expected_words(msg: &str) -> Vec<String> {
    msg.split("expected ")
        .nth(1)
        .map(|x| {
            x.split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The field a "missing field `x`" error names.
fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.split('`').next()
}

/// The tree of one file being repaired, and what the repairs touched.
struct Fixer<'i> {
    root: Root<'i>,
    /// Length of the text: spans past it are stand-ins'.
    end: usize,
    /// Start of the next stand-in's span.
    next_fake: usize,
    reads: usize,
    /// What the mistakes belong to.
    owners: HashSet<Owner>,
    /// Fields removed as unknown that look like a misspelling: the span of their table and
    /// the field they were likely meant to be, which is then not reported missing as well.
    misspelt: Vec<(Range<usize>, String)>,
}

impl<'i> Fixer<'i> {
    fn read<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        self.reads += 1;
        T::deserialize(toml::de::Deserializer::from(self.root.clone()))
    }

    fn is_stand_in(&self, span: &Range<usize>) -> bool {
        span.start > self.end
    }

    /// A new span past the end of the text, for a stand-in.
    fn fake_span(&mut self) -> Range<usize> {
        let start = self.next_fake;
        self.next_fake += 1;
        start..start + 1
    }

    /// Whether `e` says a field is missing that a field removed as unknown was likely meant
    /// to be (`titel` for `title`): fixing the spelling fixes both.
    fn follows_from_misspelling(&self, e: &Error) -> bool {
        let (Some(field), Some(span)) = (missing_field(e.message()), e.span()) else {
            return false;
        };
        self.misspelt.iter().any(|(s, f)| *s == span && f == field)
    }

    /// Repair the tree after the mistake `e`; the reading of the repaired tree, or `None`
    /// when nothing helps.
    fn repair<T: DeserializeOwned>(&mut self, e: &Error) -> Option<Result<T, Error>> {
        let span = e.span()?;
        let msg = e.message();
        let mut hits = Vec::new();
        find(self.root.get_ref(), &span, &mut Vec::new(), &mut hits);
        if let Some(field) = missing_field(msg) {
            // The deepest table at the span that lacks the field; the root last.
            let mut tables: Vec<Vec<Step>> = hits
                .into_iter()
                .filter(|h| !h.key)
                .map(|h| h.path)
                .filter(|p| table_at(&self.root, p).is_some_and(|t| !t.contains_key(field)))
                .collect();
            tables.sort_by_key(|p| std::cmp::Reverse(p.len()));
            if self.root.span() == span && !self.root.get_ref().contains_key(field) {
                tables.push(Vec::new());
            }
            for table in &tables {
                let mut path = table.clone();
                path.push(Step::Key(field.to_string()));
                if let Some(r) = self.try_stand_ins(&path) {
                    return Some(r);
                }
            }
            return self.drop_up(tables.first()?);
        }
        let want_key = msg.starts_with("unknown field");
        let hit = hits
            .iter()
            .filter(|h| h.key == want_key)
            .max_by_key(|h| h.path.len())
            .or_else(|| hits.iter().max_by_key(|h| h.path.len()))?;
        let path = hit.path.clone();
        if hit.key {
            if let Some(rest) = msg.strip_prefix("unknown field `")
                && let Some(table_span) = self.span_of(&path[..path.len() - 1])
            {
                let field = rest.split('`').next().unwrap_or("");
                let expected = expected_words(rest);
                if let Some(meant) = suggest(field, expected.iter().map(|s| s.as_str())) {
                    self.misspelt.push((table_span, meant));
                }
            }
            return self.drop_up(&path);
        }
        if let Some(r) = self.try_remove(&path) {
            return Some(r);
        }
        if let Some(r) = self.try_stand_ins(&path) {
            return Some(r);
        }
        self.drop_up(&path[..path.len() - 1])
    }

    /// Remove the entry at `path`, or failing that the nearest entry holding it.
    fn drop_up<T: DeserializeOwned>(&mut self, path: &[Step]) -> Option<Result<T, Error>> {
        (1..=path.len())
            .rev()
            .find_map(|depth| self.try_remove(&path[..depth]))
    }

    /// Remove the entry at `path` unless the tree then only lacks it (a required field).
    fn try_remove<T: DeserializeOwned>(&mut self, path: &[Step]) -> Option<Result<T, Error>> {
        let (last, parent) = path.split_last()?;
        let parent_span = self.span_of(parent)?;
        let mut tree = self.root.clone();
        remove(&mut tree, path)?;
        let required = |e: &Error| {
            matches!(last, Step::Key(k) if missing_field(e.message()) == Some(k.as_str()))
                && e.span() == Some(parent_span.clone())
        };
        self.try_read(tree, path, required).ok()
    }

    /// Put stand-ins of each kind at `path` until one reads; that reading.
    fn try_stand_ins<T: DeserializeOwned>(&mut self, path: &[Step]) -> Option<Result<T, Error>> {
        let mut kinds: Vec<DeValue<'i>> = vec![
            DeValue::String(Cow::Borrowed("")),
            DeValue::Integer(Default::default()),
            DeValue::Boolean(false),
            DeValue::Array(DeArray::new()),
            DeValue::Table(DeTable::new()),
        ];
        let mut i = 0;
        while i < kinds.len() {
            let value = Spanned::new(self.fake_span(), kinds[i].clone());
            let mut tree = self.root.clone();
            put(&mut tree, path, value)?;
            match self.try_read(tree, path, |_| false) {
                Ok(reading) => return Some(reading),
                Err(None) => return None,
                // An enum: its first word comes next.
                Err(Some(e)) => {
                    if e.message().starts_with("unknown variant")
                        && let Some(w) = expected_words(e.message()).into_iter().next()
                        && !kinds.iter().any(|k| k.as_str() == Some(w.as_str()))
                    {
                        kinds.insert(i + 1, DeValue::String(Cow::Owned(w)));
                    }
                }
            }
            i += 1;
        }
        None
    }

    /// Read `tree`, the tree changed at `path`. A mistake about a stand-in, or for which
    /// `refuse` holds, refuses the change (`Err` with it; `Err(None)` when the readings are
    /// used up); otherwise the change is kept, what `path` belongs to is noted, and the
    /// reading returned.
    fn try_read<T: DeserializeOwned>(
        &mut self,
        tree: Root<'i>,
        path: &[Step],
        refuse: impl Fn(&Error) -> bool,
    ) -> Result<Result<T, Error>, Option<Error>> {
        if self.reads >= MAX_READS {
            return Err(None);
        }
        self.reads += 1;
        let reading = T::deserialize(toml::de::Deserializer::from(tree.clone()));
        if let Err(e) = &reading
            && (e.span().is_some_and(|s| self.is_stand_in(&s)) || refuse(e))
        {
            return Err(Some(e.clone()));
        }
        let owner = self.owner(path);
        self.owners.insert(owner);
        self.root = tree;
        Ok(reading)
    }

    /// The span of the value at `path` (the root's for an empty path).
    fn span_of(&self, path: &[Step]) -> Option<Range<usize>> {
        if path.is_empty() {
            Some(self.root.span())
        } else {
            node_at(&self.root, path).map(|n| n.span())
        }
    }

    /// What the entry at `path` belongs to (asked before it is changed).
    fn owner(&self, path: &[Step]) -> Owner {
        match path {
            [Step::Key(k), Step::Index(_), ..] if k == RULES => {
                node_at(&self.root, &path[..2]).map_or(Owner::File, |n| Owner::Rule(n.span()))
            }
            [Step::Key(s), Step::Key(name), ..] if DECL_SECTIONS.contains(&s.as_str()) => {
                Owner::Decl(s.clone(), name.clone())
            }
            _ => Owner::File,
        }
    }

    /// Take the rules and declarations with mistakes out of the tree; the names of the
    /// declarations go to `broken`.
    fn leave_out(&mut self, broken: &mut HashSet<String>) {
        let end = self.end;
        let rules: Vec<&Range<usize>> = self
            .owners
            .iter()
            .filter_map(|o| match o {
                Owner::Rule(s) => Some(s),
                _ => None,
            })
            .collect();
        if let Some(node) = self.root.get_mut().get_mut(RULES)
            && let DeValue::Array(a) = node.get_mut()
        {
            *a = std::mem::replace(a, DeArray::new())
                .into_iter()
                .filter(|r| r.span().start <= end && !rules.contains(&&r.span()))
                .collect();
        }
        for o in &self.owners {
            if let Owner::Decl(section, name) = o {
                if let Some(node) = self.root.get_mut().get_mut(section.as_str())
                    && let DeValue::Table(t) = node.get_mut()
                {
                    t.remove(name.as_str());
                }
                broken.insert(name.clone());
            }
        }
    }
}

/// Every entry of `table` (under `path`) whose key or value has the span `span`.
fn find(table: &DeTable, span: &Range<usize>, path: &mut Vec<Step>, out: &mut Vec<Hit>) {
    for (k, v) in table.iter() {
        path.push(Step::Key(k.get_ref().to_string()));
        if k.span() == *span {
            out.push(Hit {
                path: path.clone(),
                key: true,
            });
        }
        find_in_value(v, span, path, out);
        path.pop();
    }
}

fn find_in_value(v: &Node, span: &Range<usize>, path: &mut Vec<Step>, out: &mut Vec<Hit>) {
    if v.span() == *span {
        out.push(Hit {
            path: path.clone(),
            key: false,
        });
    }
    match v.get_ref() {
        DeValue::Table(t) => find(t, span, path, out),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                path.push(Step::Index(i));
                find_in_value(e, span, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The value at `path` (not empty).
fn node_at<'a, 'i>(root: &'a Root<'i>, path: &[Step]) -> Option<&'a Node<'i>> {
    let (first, rest) = path.split_first()?;
    let Step::Key(k) = first else { return None };
    let mut node = root.get_ref().get(k.as_str())?;
    for step in rest {
        node = match (node.get_ref(), step) {
            (DeValue::Table(t), Step::Key(k)) => t.get(k.as_str())?,
            (DeValue::Array(a), Step::Index(i)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// The table at `path` (the root for an empty path).
fn table_at<'a, 'i>(root: &'a Root<'i>, path: &[Step]) -> Option<&'a DeTable<'i>> {
    if path.is_empty() {
        return Some(root.get_ref());
    }
    match node_at(root, path)?.get_ref() {
        DeValue::Table(t) => Some(t),
        _ => None,
    }
}

/// The value at `path` (not empty), to change.
fn node_at_mut<'a, 'i>(root: &'a mut Root<'i>, path: &[Step]) -> Option<&'a mut Node<'i>> {
    let (first, rest) = path.split_first()?;
    let Step::Key(k) = first else { return None };
    let mut node = root.get_mut().get_mut(k.as_str())?;
    for step in rest {
        node = match (node.get_mut(), step) {
            (DeValue::Table(t), Step::Key(k)) => t.get_mut(k.as_str())?,
            (DeValue::Array(a), Step::Index(i)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// The table or array holding the entry at `path`, and the step to the entry.
enum Parent<'a, 'i> {
    Table(&'a mut DeTable<'i>, &'a str),
    Array(&'a mut DeArray<'i>, usize),
}

fn parent_of<'a, 'i>(root: &'a mut Root<'i>, path: &'a [Step]) -> Option<Parent<'a, 'i>> {
    let (last, parent) = path.split_last()?;
    if parent.is_empty() {
        return match last {
            Step::Key(k) => Some(Parent::Table(root.get_mut(), k)),
            Step::Index(_) => None,
        };
    }
    match (node_at_mut(root, parent)?.get_mut(), last) {
        (DeValue::Table(t), Step::Key(k)) => Some(Parent::Table(t, k)),
        (DeValue::Array(a), Step::Index(i)) => Some(Parent::Array(a, *i)),
        _ => None,
    }
}

/// Remove the entry at `path`.
fn remove(root: &mut Root, path: &[Step]) -> Option<()> {
    match parent_of(root, path)? {
        Parent::Table(t, k) => t.remove(k).map(|_| ()),
        Parent::Array(a, i) => {
            if i >= a.len() {
                return None;
            }
            *a = std::mem::replace(a, DeArray::new())
                .into_iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, v)| v)
                .collect();
            Some(())
        }
    }
}

/// Set the entry at `path` to `value` (adding it to its table if it is not there).
fn put<'i>(root: &mut Root<'i>, path: &[Step], value: Node<'i>) -> Option<()> {
    match parent_of(root, path)? {
        Parent::Table(t, k) => {
            match t.get_mut(k) {
                Some(v) => *v = value,
                None => {
                    let key = Spanned::new(value.span(), Cow::Owned(k.to_string()));
                    t.insert(key, value);
                }
            }
            Some(())
        }
        Parent::Array(a, i) => {
            *a.get_mut(i)? = value;
            Some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Sources;
    use crate::policy::model::DirectiveFile;

    /// Parse `text` as a directive file: the value, and each diagnostic as
    /// `line:col message`.
    fn parse(text: &str) -> (Option<DirectiveFile>, Vec<String>, HashSet<String>) {
        let mut sources = Sources::default();
        let file = sources.add("d.toml".into(), text.into());
        let engine = rhai::Engine::new();
        let mut cx = Ctx {
            sources: &sources,
            diags: Vec::new(),
            engine: &engine,
            functions: HashSet::new(),
            broken: HashSet::new(),
        };
        let v = parse_toml::<DirectiveFile>(&mut cx, file, text);
        let diags = cx
            .diags
            .iter()
            .map(|d| {
                let (l, c) = d
                    .loc
                    .as_ref()
                    .map_or((0, 0), |loc| sources.line_col(file, loc.span.start));
                format!("{l}:{c} {}", d.message)
            })
            .collect();
        (v, diags, cx.broken)
    }

    const HEAD: &str = "[directive]\nkey = \"k\"\ntitle = \"t\"\n";

    fn rule(id: &str, extra: &str) -> String {
        format!(
            "\n[[rule]]\nid = \"{id}\"\nversion = 1\ntitle = \"t\"\nsubject = \"member\"\nclause = \"c\"\n{extra}\n[[rule.case]]\nstatus = \"pass\"\nmessage = \"ok\"\n"
        )
    }

    fn ids(v: &DirectiveFile) -> Vec<&str> {
        v.rules
            .iter()
            .map(|r| r.get_ref().id.get_ref().as_str())
            .collect()
    }

    #[test]
    fn a_file_without_mistakes_reads_as_before() {
        let text = format!(
            "{HEAD}{}{}",
            rule("a", ""),
            rule("b", "severity = \"minor\"")
        );
        let (v, diags, broken) = parse(&text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(ids(&v.unwrap()), ["a", "b"]);
        assert!(broken.is_empty());
    }

    #[test]
    fn each_rule_with_a_mistake_is_left_out_and_the_others_kept() {
        let text = format!(
            "{HEAD}{}{}{}{}{}",
            rule("a", "aplies = \"x\""),
            rule("b", ""),
            rule("c", "evidence = [\"x\", 5]"),
            rule("d", "severity = 3"),
            rule("e", "").replace("clause = \"c\"\n", ""),
        );
        let (v, diags, broken) = parse(&text);
        assert_eq!(
            diags,
            [
                "11:1 unknown field `aplies`",
                "33:18 invalid type: integer `5`, expected a string",
                // Serde's words for an enum given a number; reported as before.
                "44:12 TOML syntax error: wanted string or table",
                "49:1 missing field `clause`",
            ],
            "{text}"
        );
        assert_eq!(ids(&v.unwrap()), ["b"]);
        assert!(broken.is_empty(), "rule ids are not names: {broken:?}");
    }

    #[test]
    fn a_misspelt_required_field_is_not_reported_missing_too() {
        let text = format!("{HEAD}{}", rule("a", "").replace("status", "staus"));
        let (v, diags, _) = parse(&text);
        assert_eq!(diags, ["13:1 unknown field `staus`"]);
        assert!(ids(&v.unwrap()).is_empty());
    }

    #[test]
    fn a_declaration_with_a_mistake_is_left_out_and_its_name_broken() {
        let text = format!(
            "{HEAD}[parameters.p]\nbasis = \"sourse\"\nvalues = []\n[parameters.q]\nbasis = \"source\"\nvalues = []\n"
        );
        let (v, diags, broken) = parse(&text);
        assert_eq!(diags, ["5:9 `sourse` is not allowed here"]);
        let v = v.unwrap();
        assert_eq!(v.parameters.keys().collect::<Vec<_>>(), ["q"]);
        assert_eq!(broken, HashSet::from(["p".to_string()]));
    }

    #[test]
    fn a_mistake_outside_rules_and_declarations_leaves_the_file_out() {
        let text = format!(
            "{}[parameters.p]\nbasis = \"source\"\nvalues = []\n{}",
            HEAD.replace("title", "titel"),
            rule("a", "aplies = \"x\"")
        );
        let (v, diags, broken) = parse(&text);
        assert_eq!(
            diags,
            ["3:1 unknown field `titel`", "14:1 unknown field `aplies`"]
        );
        assert!(v.is_none());
        // Its directive and parameter are not reported unknown where other files use them.
        assert!(broken.contains("k") && broken.contains("p"), "{broken:?}");
    }

    #[test]
    fn a_missing_table_is_one_error() {
        let text = rule("a", "aplies = \"x\"");
        let (v, diags, _) = parse(&text);
        assert_eq!(
            diags,
            [
                "1:1 missing field `directive`",
                "8:1 unknown field `aplies`"
            ]
        );
        assert!(v.is_none());
    }

    #[test]
    fn a_section_of_the_wrong_kind_leaves_the_file_out() {
        let (v, diags, _) = parse(&format!("rule = 5\n{HEAD}"));
        assert_eq!(
            diags,
            ["1:8 invalid type: integer `5`, expected a sequence"]
        );
        assert!(v.is_none());
    }

    #[test]
    fn a_syntax_error_stops_the_file_and_its_names_are_broken() {
        let text = format!(
            "{HEAD}[parameters.p]\nbasis = \"source\nvalues = []\n{}",
            rule("a", "aplies = \"x\"")
        );
        let (v, diags, broken) = parse(&text);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].contains("TOML syntax error"), "{diags:?}");
        assert!(v.is_none());
        assert!(broken.contains("k") && broken.contains("p"), "{broken:?}");
    }

    #[test]
    fn reading_stops_after_the_most_mistakes_a_file_reports() {
        let extra: String = (0..MAX_ERRORS + 10)
            .map(|i| format!("x{i} = 1\n"))
            .collect();
        let (v, diags, _) = parse(&format!("{HEAD}{}", rule("a", &extra)));
        assert_eq!(diags.len(), MAX_ERRORS);
        assert!(v.is_none());
    }
}
