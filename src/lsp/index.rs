//! The symbol index of a policy folder: every declaration (parameters, aggregates, periods,
//! clauses, helper functions, tables, columns, subjects, directives, a rule's `let`s) with the
//! place of its name and a description for hovers, every use of one (in fields such as
//! `table = "services"` and `$param.NAME`, and inside Rhai expressions in TOML strings), and
//! every expression string with the names in scope there.
//!
//! It is built from a lenient parse of each file's text (as the editor has it), so it works
//! while the policy set has errors.

use super::text::{Ident, TomlStr, idents};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

mod docs;

/// What a name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A dated parameter (`[parameters.NAME]`).
    Param,
    /// A per-subject aggregate (`[aggregates.NAME]`).
    Aggregate,
    /// A named span of dates (`[periods.NAME]`).
    Period,
    /// A clause of a directive (`[directive.clauses.KEY]`); owner: the directive's key.
    Clause,
    /// A helper function (`helpers/*.rhai`).
    Helper,
    /// A table of the data schema.
    Table,
    /// A column of a table; owner: the table.
    Column,
    /// A kind of subject (`[subjects.NAME]`).
    Subject,
    /// A directive (`[directive] key`).
    Directive,
    /// A rule's intermediate value (`[rule.let]`); owner: the rule.
    Let,
}

/// A declared name, or a use of one: what it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// What it is.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The name it belongs to (a column's table, a clause's directive, a `let`'s rule).
    pub owner: String,
}

/// A declaration.
#[derive(Debug, Clone)]
pub struct Def {
    /// What is declared.
    pub target: Target,
    /// The file it is declared in.
    pub file: PathBuf,
    /// Byte range of its name there.
    pub span: Range<usize>,
    /// Markdown describing it (hovers).
    pub doc: String,
}

/// A use of a declared name.
#[derive(Debug, Clone)]
pub struct Ref {
    /// What it names.
    pub target: Target,
    /// The file.
    pub file: PathBuf,
    /// Byte range of the name.
    pub span: Range<usize>,
}

/// What a string holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteKind {
    /// A Rhai expression.
    Expr,
    /// A message with `{expression}` placeholders.
    Template,
    /// A column name of a table (`where = [{ column = "…" }]`).
    Column,
}

/// The names in scope in an expression.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The kind of subject (a rule's or a grade's); `None` in a period's bounds.
    pub subject: Option<String>,
    /// The table whose columns are in scope (the subject's, or a filter's table).
    pub table: Option<String>,
    /// `let`s in scope, with the rule they belong to.
    pub lets: Vec<String>,
    /// The rule (owner of its `let`s).
    pub rule: String,
}

/// A string whose content the editor can complete and look into.
#[derive(Debug, Clone)]
pub struct Site {
    /// The file.
    pub file: PathBuf,
    /// Byte range of the string token (with its quotes).
    pub token: Range<usize>,
    /// What it holds.
    pub kind: SiteKind,
    /// The names in scope.
    pub scope: Scope,
}

/// The index of a policy folder.
#[derive(Debug, Default)]
pub struct Index {
    /// Every declaration.
    pub defs: Vec<Def>,
    /// Every use of a declared name.
    pub refs: Vec<Ref>,
    /// Every expression, message and column string.
    pub sites: Vec<Site>,
    /// Each subject kind's table.
    pub subject_table: HashMap<String, String>,
    /// Each aggregate's subject kind.
    pub agg_subject: HashMap<String, String>,
}

type Table<'i> = DeTable<'i>;
type Value<'i> = Spanned<DeValue<'i>>;

/// The entries of a TOML table, by name.
fn entries<'a, 'i>(
    t: &'a Table<'i>,
) -> impl Iterator<Item = (&'a str, Range<usize>, &'a Value<'i>)> {
    t.iter().map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
}

/// The value of `key` in table `t`.
fn get<'a, 'i>(t: &'a Table<'i>, key: &str) -> Option<&'a Value<'i>> {
    t.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
}

/// The table value of `key` in `t`.
fn sub<'a, 'i>(t: &'a Table<'i>, key: &str) -> Option<&'a Table<'i>> {
    match get(t, key).map(|v| v.get_ref()) {
        Some(DeValue::Table(x)) => Some(x),
        _ => None,
    }
}

/// The text of a string value.
fn text<'a>(v: &'a Value<'_>) -> Option<&'a str> {
    match v.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        _ => None,
    }
}

/// The tables of an array of tables (`[[rule]]`), or of one table.
fn tables<'a, 'i>(v: Option<&'a Value<'i>>) -> Vec<&'a Table<'i>> {
    match v.map(|v| v.get_ref()) {
        Some(DeValue::Array(a)) => a
            .iter()
            .filter_map(|x| match x.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            })
            .collect(),
        Some(DeValue::Table(t)) => vec![t],
        _ => Vec::new(),
    }
}

/// The items of a list value (or the value itself when it is not a list).
fn items<'a, 'i>(v: &'a Value<'i>) -> Vec<&'a Value<'i>> {
    match v.get_ref() {
        DeValue::Array(a) => a.iter().collect(),
        _ => vec![v],
    }
}

impl Target {
    fn new(kind: Kind, name: &str, owner: &str) -> Target {
        Target {
            kind,
            name: name.to_string(),
            owner: owner.to_string(),
        }
    }
}

/// The files of a policy folder, with their texts.
pub type Files = [(PathBuf, String)];

impl Index {
    /// Index the files of a policy folder (TOML and Rhai; others are skipped).
    pub fn build(files: &Files) -> Index {
        let mut ix = Index::default();
        let parsed: Vec<(&Path, &str, Spanned<Table>)> = files
            .iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "toml"))
            .map(|(p, t)| (p.as_path(), t.as_str(), DeTable::parse_recoverable(t).0))
            .collect();
        for (path, text, doc) in &parsed {
            docs::declarations(&mut ix, path, text, doc.get_ref());
        }
        for (path, text) in files {
            if path.extension().is_some_and(|e| e == "rhai") {
                docs::helpers(&mut ix, path, text);
            }
        }
        for (path, text, doc) in &parsed {
            Uses {
                ix: &mut ix,
                file: path,
                text,
            }
            .file(doc.get_ref());
        }
        ix
    }

    /// The declaration or use at byte `at` of `file`.
    pub fn target_at(&self, file: &Path, at: usize) -> Option<Target> {
        let hit = |f: &Path, s: &Range<usize>| f == file && s.start <= at && at <= s.end;
        self.refs
            .iter()
            .find(|r| hit(&r.file, &r.span))
            .map(|r| r.target.clone())
            .or_else(|| {
                self.defs
                    .iter()
                    .find(|d| hit(&d.file, &d.span))
                    .map(|d| d.target.clone())
            })
    }

    /// The declaration of `t`.
    pub fn def(&self, t: &Target) -> Option<&Def> {
        self.defs.iter().find(|d| d.target == *t)
    }

    /// Every use of `t`.
    pub fn refs_of<'a>(&'a self, t: &'a Target) -> impl Iterator<Item = &'a Ref> {
        self.refs.iter().filter(move |r| r.target == *t)
    }

    /// The expression, message or column string around byte `at` of `file`, decoded.
    pub fn site_at(&self, file: &Path, text: &str, at: usize) -> Option<(&Site, TomlStr)> {
        let site = self
            .sites
            .iter()
            .find(|s| s.file == file && s.token.start < at && at < s.token.end)?;
        let s = TomlStr::decode(text, &site.token)?;
        Some((site, s))
    }

    /// Whether a declaration of `kind` has `name`.
    pub fn has(&self, kind: Kind, name: &str) -> bool {
        self.defs
            .iter()
            .any(|d| d.target.kind == kind && d.target.name == name)
    }

    /// What identifier `id` of an expression names, with `scope` in force.
    pub fn resolve(&self, scope: &Scope, id: &Ident) -> Option<Target> {
        let n = id.name.as_str();
        if id.call {
            return self
                .has(Kind::Helper, n)
                .then(|| Target::new(Kind::Helper, n, ""));
        }
        if id.after_dot {
            return None;
        }
        if scope.lets.iter().any(|l| l == n) {
            return Some(Target::new(Kind::Let, n, &scope.rule));
        }
        for kind in [Kind::Param, Kind::Aggregate] {
            if self.has(kind, n) {
                return Some(Target::new(kind, n, ""));
            }
        }
        let table = scope.table.as_deref()?;
        self.defs
            .iter()
            .any(|d| d.target.kind == Kind::Column && d.target.owner == table && d.target.name == n)
            .then(|| Target::new(Kind::Column, n, table))
    }
}

/// Records the uses of names in one file.
struct Uses<'a> {
    ix: &'a mut Index,
    file: &'a Path,
    text: &'a str,
}

impl Uses<'_> {
    fn add(&mut self, kind: Kind, name: &str, owner: &str, span: Range<usize>) {
        self.ix.refs.push(Ref {
            target: Target::new(kind, name, owner),
            file: self.file.to_path_buf(),
            span,
        });
    }

    /// A string value naming a declaration: the name inside its quotes.
    fn name(&mut self, kind: Kind, owner: &str, v: Option<&Value>) {
        for v in v.map(items).unwrap_or_default() {
            if let (Some(s), Some(t)) = (text(v), TomlStr::decode(self.text, &v.span())) {
                let span = t.file_range(&(0..t.value.len()));
                self.add(kind, s, owner, span);
            }
        }
    }

    /// A `$param.NAME`, `$agg.NAME` or `$subject.COLUMN` reference, if `v` is one.
    fn dollar(&mut self, v: &Value, subject_table: Option<&str>) -> bool {
        let (Some(s), Some(t)) = (text(v), TomlStr::decode(self.text, &v.span())) else {
            return false;
        };
        let Some((head, name)) = s.strip_prefix('$').and_then(|r| r.split_once('.')) else {
            return s.starts_with('$');
        };
        let (kind, owner) = match head {
            "param" => (Kind::Param, ""),
            "agg" => (Kind::Aggregate, ""),
            "subject" => (Kind::Column, subject_table.unwrap_or("")),
            _ => return true,
        };
        let start = head.len() + 2;
        let span = t.file_range(&(start..start + name.len()));
        self.add(kind, name, owner, span);
        true
    }

    /// An expression (or message) string: a site, and the names it uses.
    fn expr(&mut self, v: Option<&Value>, kind: SiteKind, scope: &Scope) {
        let Some(v) = v.filter(|v| text(v).is_some()) else {
            return;
        };
        self.ix.sites.push(Site {
            file: self.file.to_path_buf(),
            token: v.span(),
            kind,
            scope: scope.clone(),
        });
        let Some(t) = TomlStr::decode(self.text, &v.span()) else {
            return;
        };
        let pieces = match kind {
            SiteKind::Template => placeholders(&t.value),
            _ => std::iter::once(0..t.value.len()).collect(),
        };
        for r in pieces {
            for mut id in idents(&t.value[r.clone()]) {
                id.span = id.span.start + r.start..id.span.end + r.start;
                if let Some(target) = self.ix.resolve(scope, &id) {
                    let span = t.file_range(&id.span);
                    self.ix.refs.push(Ref {
                        target,
                        file: self.file.to_path_buf(),
                        span,
                    });
                }
            }
        }
    }

    fn file(&mut self, doc: &Table) {
        if let Some(subjects) = sub(doc, "subjects") {
            for (_, _, s) in entries(subjects) {
                if let DeValue::Table(s) = s.get_ref() {
                    self.name(Kind::Table, "", get(s, "table"));
                }
            }
        }
        if let Some(t) = sub(doc, "tables") {
            self.tables(t);
        }
        if let Some(a) = sub(doc, "aggregates") {
            for (_, _, a) in entries(a) {
                if let DeValue::Table(a) = a.get_ref() {
                    self.aggregate(a);
                }
            }
        }
        if let Some(p) = sub(doc, "periods") {
            for (_, _, p) in entries(p) {
                if let DeValue::Table(p) = p.get_ref() {
                    for key in ["start", "end", "not_before", "not_after"] {
                        if let Some(v) = get(p, key)
                            && !self.dollar(v, None)
                        {
                            self.expr(Some(v), SiteKind::Expr, &Scope::default());
                        }
                    }
                }
            }
        }
        self.name(Kind::Period, "", get(doc, "run_period"));
        if let Some(c) = sub(doc, "calendar") {
            for key in ["work_start", "work_end"] {
                if let Some(v) = get(c, key) {
                    self.dollar(v, None);
                }
            }
        }
        let directive = sub(doc, "directive")
            .and_then(|d| get(d, "key"))
            .and_then(text)
            .unwrap_or("")
            .to_string();
        for (i, r) in tables(get(doc, "rule")).into_iter().enumerate() {
            self.rule(r, &directive, i);
        }
        if let Some(a) = sub(doc, "assessment") {
            self.assessment(a);
        }
    }

    fn tables(&mut self, t: &Table) {
        for (name, _, tv) in entries(t) {
            let DeValue::Table(tv) = tv.get_ref() else {
                continue;
            };
            self.name(Kind::Column, name, get(tv, "key"));
            let Some(cols) = sub(tv, "columns") else {
                continue;
            };
            for (_, _, c) in entries(cols) {
                if let DeValue::Table(c) = c.get_ref() {
                    self.name(Kind::Table, "", get(c, "references"));
                    self.name(Kind::Column, name, get(c, "after"));
                }
            }
        }
    }

    fn aggregate(&mut self, a: &Table) {
        let table = get(a, "table").and_then(text).unwrap_or("").to_string();
        let subject = get(a, "subject").and_then(text).unwrap_or("").to_string();
        let subject_table = self.ix.subject_table.get(&subject).cloned();
        self.name(Kind::Subject, "", get(a, "subject"));
        self.name(Kind::Table, "", get(a, "table"));
        if let Some(by) = get(a, "by") {
            // The first step of the path is a column of the aggregate's table.
            self.name(Kind::Column, &table, items(by).first().copied());
        }
        for key in ["column", "end_column", "pick"] {
            self.name(Kind::Column, &table, get(a, key));
        }
        self.name(Kind::Aggregate, "", get(a, "except_days"));
        for f in tables(get(a, "where")) {
            if let Some(c) = get(f, "column") {
                self.ix.sites.push(Site {
                    file: self.file.to_path_buf(),
                    token: c.span(),
                    kind: SiteKind::Column,
                    scope: Scope {
                        table: Some(table.clone()),
                        ..Scope::default()
                    },
                });
                self.name(Kind::Column, &table, Some(c));
            }
            self.name(Kind::Period, "", get(f, "within"));
            self.name(Kind::Column, &table, get(f, "end"));
            for (_, _, v) in entries(f) {
                for v in items(v) {
                    self.dollar(v, subject_table.as_deref());
                }
            }
        }
    }

    fn rule(&mut self, r: &Table, directive: &str, i: usize) {
        let subject = get(r, "subject").and_then(text).map(str::to_string);
        let id = get(r, "id").and_then(text).unwrap_or("");
        let mut scope = Scope {
            table: subject
                .as_ref()
                .and_then(|s| self.ix.subject_table.get(s).cloned()),
            subject,
            lets: Vec::new(),
            rule: rule_owner(self.file, id, i),
        };
        self.name(Kind::Subject, "", get(r, "subject"));
        self.name(Kind::Clause, directive, get(r, "clause"));
        self.name(Kind::Period, "", get(r, "period"));
        self.expr(get(r, "applies"), SiteKind::Expr, &scope);
        let lets: Vec<(String, &Value)> = sub(r, "let")
            .map(|l| entries(l).map(|(n, _, v)| (n.to_string(), v)).collect())
            .unwrap_or_default();
        for (name, v) in &lets {
            self.expr(Some(v), SiteKind::Expr, &scope);
            scope.lets.push(name.clone());
        }
        for c in tables(get(r, "case")) {
            self.expr(get(c, "when"), SiteKind::Expr, &scope);
            self.expr(get(c, "message"), SiteKind::Template, &scope);
        }
        if let Some(ev) = get(r, "evidence") {
            for v in items(ev) {
                if let (Some(s), Some(t)) = (text(v), TomlStr::decode(self.text, &v.span())) {
                    let id = Ident {
                        span: 0..s.len(),
                        name: s.to_string(),
                        after_dot: false,
                        call: false,
                    };
                    if let Some(target) = self.ix.resolve(&scope, &id) {
                        let span = t.file_range(&id.span);
                        self.add(target.kind, &target.name, &target.owner, span);
                    }
                }
            }
        }
    }

    fn assessment(&mut self, a: &Table) {
        self.name(Kind::Period, "", get(a, "period"));
        self.name(Kind::Aggregate, "", get(a, "hours"));
        self.name(Kind::Directive, "", get(a, "directives"));
        for kind in ["member", "organization"] {
            let scope = Scope {
                table: self.ix.subject_table.get(kind).cloned(),
                subject: Some(kind.to_string()),
                ..Scope::default()
            };
            for g in tables(get(a, kind)) {
                self.expr(get(g, "when"), SiteKind::Expr, &scope);
            }
        }
    }
}

/// The owner of a rule's `let`s: the rule's file, id and place in the file.
pub fn rule_owner(file: &Path, id: &str, i: usize) -> String {
    format!("{}#{id}#{i}", file.display())
}

/// Byte ranges of the `{…}` placeholders' insides in a message (`{{` and `}}` are braces).
pub fn placeholders(src: &str) -> Vec<Range<usize>> {
    (crate::policy::message_pieces(src).into_iter())
        .filter_map(|p| match p {
            crate::policy::Piece::Expr(r) => Some(r),
            // While typing: the rest of the text after an unclosed `{`.
            crate::policy::Piece::Unclosed(i) => Some(i + 1..src.len()),
            crate::policy::Piece::Text(_) => None,
        })
        .collect()
}

/// The names an expression may use in `scope`, each with what it is (for completion):
/// `let`s, parameters, aggregates of the subject, the subject's columns.
pub fn names_in_scope(ix: &Index, scope: &Scope) -> Vec<(String, Kind, String)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for l in &scope.lets {
        if seen.insert(l.clone()) {
            out.push((l.clone(), Kind::Let, "let".to_string()));
        }
    }
    for d in &ix.defs {
        let t = &d.target;
        let keep = match t.kind {
            Kind::Param => true,
            Kind::Aggregate => match (&scope.subject, ix.agg_subject.get(&t.name)) {
                (Some(s), Some(a)) => s == a,
                _ => false,
            },
            Kind::Column => scope.table.as_deref() == Some(t.owner.as_str()),
            _ => false,
        };
        if keep && seen.insert(t.name.clone()) {
            out.push((
                t.name.clone(),
                t.kind,
                d.doc.lines().next().unwrap_or("").to_string(),
            ));
        }
    }
    out
}
