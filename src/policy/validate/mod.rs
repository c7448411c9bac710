//! Turns parsed policy files into a checked [`PolicySet`]: resolves names, checks types,
//! dates and versions, compiles Rhai, and reports every problem with its place.

use super::model::{self, AggOp, ColumnType, DirectiveFile, FilterDef, ManifestFile};
use super::*;
use crate::diag::{Code, Diag, FileId, Loc, Sources, did_you_mean};
use rhai::{AST, Dynamic, Engine, Scope};
use std::collections::{BTreeMap, HashMap, HashSet};
use toml::Spanned;

mod aggregates;
mod parse;
mod roles;
use aggregates::build_aggregates;
use parse::parse_toml;

/// Names every rule expression can use besides parameters, aggregates and subject columns.
pub const BUILTIN_NAMES: &[&str] = &["as_of", "period_start", "period_end", "subject_id"];

struct Ctx<'a> {
    sources: &'a Sources,
    diags: Vec<Diag>,
    engine: &'a Engine,
    /// Names of every function an expression may call (built-in, registered, helpers).
    functions: HashSet<String>,
    /// Names declared but left out after an error of their own (an aggregate on an unknown
    /// table, a parameter with a mistake in its file): a use of one is not reported again as
    /// an unknown name.
    broken: HashSet<String>,
}

/// Rhai keywords and built-ins that look like calls but are not registered functions.
const CALL_KEYWORDS: &[&str] = &[
    "if",
    "while",
    "for",
    "loop",
    "switch",
    "fn",
    "return",
    "let",
    "const",
    "in",
    "do",
    "until",
    "catch",
    "try",
    "throw",
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "is_def_var",
    "is_def_fn",
    "is_shared",
    "zh",
];

/// Function names callable from expressions: the engine's (with its packages) and helpers'.
fn function_names(engine: &Engine, helpers: &AST) -> HashSet<String> {
    let mut out: HashSet<String> = engine
        .gen_fn_signatures(true)
        .iter()
        .filter_map(|sig| {
            sig.split('(').next().map(|n| {
                n.trim()
                    .trim_start_matches("get$")
                    .trim_start_matches("set$")
                    .to_string()
            })
        })
        .filter(|n| {
            n.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
        })
        .collect();
    out.extend(helpers.iter_functions().map(|f| f.name.to_string()));
    out.extend(CALL_KEYWORDS.iter().map(|s| s.to_string()));
    out
}

/// What an expression (its own statements, not helper functions) reads and calls: the
/// variables it names, and each function it calls by name (not operators) with the byte
/// offset of the name in `src`. Both come from Rhai's parser.
pub(crate) fn names_in(ast: &AST, src: &str) -> (Vec<String>, Vec<(String, usize)>) {
    use rhai::{ASTNode, Expr as RExpr, Stmt as RStmt};
    let mut vars = Vec::new();
    let mut calls = Vec::new();
    let mut path = Vec::new();
    let mut on_node = |p: &[ASTNode]| {
        let (call, pos) = match p.last() {
            Some(ASTNode::Expr(RExpr::Variable(x, _, _))) if x.2.is_empty() => {
                vars.push(x.1.to_string());
                return true;
            }
            Some(ASTNode::Expr(RExpr::FnCall(f, pos) | RExpr::MethodCall(f, pos)))
            | Some(ASTNode::Stmt(RStmt::FnCall(f, pos))) => (f, *pos),
            _ => return true,
        };
        if !call.is_operator_call()
            && let (Some(line), Some(col)) = (pos.line(), pos.position())
        {
            calls.push((call.name.to_string(), offset_of_line_col(src, 0, line, col)));
        }
        true
    };
    for s in ast.statements() {
        s.walk(&mut path, &mut on_node);
    }
    vars.sort();
    vars.dedup();
    calls.sort_by_key(|c| c.1);
    calls.dedup();
    (vars, calls)
}

impl Ctx<'_> {
    fn err(&mut self, d: Diag) {
        self.diags.push(d);
    }
    fn loc<T>(&self, file: FileId, s: &Spanned<T>) -> Option<Loc> {
        Some(Loc::new(file, s.span()))
    }
}

type BuildResult = Result<PolicySet, (Vec<Diag>, Sources)>;

pub(super) fn build(
    root: &Path,
    hash: String,
    sources: Sources,
    texts: Vec<(PathBuf, FileId)>,
    engine: Engine,
    diags: Vec<Diag>,
) -> BuildResult {
    let mut cx = Ctx {
        sources: &sources,
        diags,
        engine: &engine,
        functions: HashSet::new(),
        broken: HashSet::new(),
    };

    // 1. Parse every file.
    let Parsed {
        manifest,
        mut directive_files,
        helper_files,
        mut assessment_file,
    } = parse_files(&mut cx, root, &texts);
    let Some((mut manifest, manifest_file)) = manifest else {
        let diags = std::mem::take(&mut cx.diags);
        return Err((
            ensure_error(diags, "policy.toml could not be read"),
            sources,
        ));
    };

    // 2. Helpers.
    let helpers = compile_helpers(&mut cx, &helper_files);
    let helper_source: String = helper_files
        .iter()
        .map(|&f| cx.sources.text(f))
        .collect::<Vec<_>>()
        .join("\n");
    cx.functions = function_names(&engine, &helpers);

    // 3. Gather declarations from all files, names global.
    let mut decls: Vec<(model::Declarations, FileId)> =
        vec![(manifest.take_decls(), manifest_file)];
    for (d, id) in directive_files.iter_mut() {
        decls.push((d.take_decls(), *id));
    }
    if let Some((a, id)) = assessment_file.as_mut() {
        decls.push((a.take_decls(), *id));
    }
    let mut schema = build_schema(&mut cx, &decls);
    let subjects = build_subjects(&mut cx, &manifest, manifest_file, &schema);
    // Community reports look communities up by id.
    let communities = (manifest.roles.as_ref().map(|r| r.communities.resolve()))
        .unwrap_or_default()
        .table;
    mark_indexed(&mut schema, &subjects, &communities);
    let params = build_params(&mut cx, &decls);
    let periods_raw = gather_periods(&mut cx, &decls);
    let aggregates = build_aggregates(&mut cx, &decls, &schema, &subjects, &params, &periods_raw);
    let periods = build_periods(&mut cx, &periods_raw, &params, &aggregates, &helpers);
    check_agg_periods(&mut cx, &aggregates, &periods);
    check_agg_cycles(&mut cx, &aggregates, &periods);

    // 4. Directives and rules, and the grades.
    let declared = Declared {
        subjects: &subjects,
        schema: &schema,
        params: &params,
        aggregates: &aggregates,
        periods: &periods,
        helpers: &helpers,
    };
    let (directives, rules) = build_directives(&mut cx, &directive_files, &declared);
    check_rule_versions(&mut cx, &rules);
    let directive_keys: Vec<&str> = directives.iter().map(|d| d.key.as_str()).collect();
    let assessment = assessment_file
        .as_ref()
        .map(|(a, file)| build_assessment(&mut cx, a, *file, &declared, &directive_keys));
    let run_period = manifest
        .run_period
        .as_ref()
        .and_then(|p| fixed_period(&mut cx, &periods, p, manifest_file, "`run_period`"));
    let (calendar, work_hours) = match &manifest.calendar {
        Some(c) => build_calendar(&mut cx, root, c, manifest_file, &params),
        None => (crate::calendar::Calendar::weekdays_only(), None),
    };
    let calendar = std::sync::Arc::new(calendar);
    if manifest.calendar.is_none() {
        require_calendar_for_working_time(&mut cx, &aggregates);
    }
    let roles = roles::check_roles(&mut cx, &manifest, manifest_file, &schema, &subjects);
    // Names used outside rules: the run period, the grading period and hours, directive ends
    // and working hours.
    let mut used_elsewhere: Vec<String> = Vec::new();
    used_elsewhere.extend(run_period.clone());
    if let Some(a) = &assessment {
        used_elsewhere.extend(a.period.clone());
        used_elsewhere.extend(a.hours.clone());
    }
    used_elsewhere.extend(directives.iter().filter_map(|d| d.until_param.clone()));
    for r in work_hours.iter().flat_map(|(a, b)| [a, b]) {
        if let ValueRef::Param(p) = r {
            used_elsewhere.push(p.clone());
        }
    }
    warn_unused(
        &mut cx,
        &declared,
        &users_of_names(&rules, assessment.as_ref()),
        &used_elsewhere,
    );

    let has_errors = cx
        .diags
        .iter()
        .any(|d| d.level == crate::diag::Level::Error);
    let diags = std::mem::take(&mut cx.diags);
    let mut engine = engine;
    register_labels(&mut engine, &schema);
    script::register_calendar(&mut engine, calendar.clone());
    if has_errors {
        return Err((diags, sources));
    }
    Ok(PolicySet {
        root: root.to_path_buf(),
        name: manifest.name.get_ref().clone(),
        title: manifest
            .title
            .clone()
            .unwrap_or_else(|| manifest.name.get_ref().clone()),
        version: manifest.version.get_ref().clone(),
        source: manifest.source.clone(),
        hash,
        sources,
        subjects,
        schema,
        params,
        aggregates,
        periods,
        directives,
        rules,
        assessment,
        run_period,
        calendar,
        roles,
        work_hours,
        helpers,
        helper_source,
        engine,
        warnings: diags,
    })
}

/// The declarations rules and grades are checked against.
#[derive(Clone, Copy)]
struct Declared<'a> {
    subjects: &'a IndexMap<String, SubjectKind>,
    schema: &'a Schema,
    params: &'a IndexMap<String, Param>,
    aggregates: &'a IndexMap<String, Aggregate>,
    periods: &'a IndexMap<String, Period>,
    helpers: &'a AST,
}

/// The files of a policy set, parsed (each kept only when it parses).
struct Parsed {
    manifest: Option<(ManifestFile, FileId)>,
    directive_files: Vec<(DirectiveFile, FileId)>,
    helper_files: Vec<FileId>,
    assessment_file: Option<(model::AssessmentFile, FileId)>,
}

/// Parse every file by its place: `policy.toml` and `assessment.toml` at the root, helpers
/// (`.rhai`), data (`.csv`, read later) and directive files.
fn parse_files(cx: &mut Ctx, root: &Path, texts: &[(PathBuf, FileId)]) -> Parsed {
    let mut out = Parsed {
        manifest: None,
        directive_files: Vec::new(),
        helper_files: Vec::new(),
        assessment_file: None,
    };
    for (path, id) in texts {
        let text = cx.sources.text(*id);
        let at_root = |name: &str| {
            path.file_name().is_some_and(|n| n == name) && path.parent().is_some_and(|p| p == root)
        };
        if path.extension().is_some_and(|e| e == "rhai") {
            out.helper_files.push(*id);
        } else if path.extension().is_some_and(|e| e == "csv") {
            // Data shipped with the set (the working calendar), read with the manifest.
        } else if at_root("assessment.toml") {
            if let Some(a) = parse_toml::<model::AssessmentFile>(cx, *id, text) {
                out.assessment_file = Some((a, *id));
            }
        } else if at_root("policy.toml") {
            if let Some(m) = parse_toml::<ManifestFile>(cx, *id, text) {
                out.manifest = Some((m, *id));
            }
        } else if let Some(d) = parse_toml::<DirectiveFile>(cx, *id, text) {
            out.directive_files.push((d, *id));
        }
    }
    out
}

/// Keys that are looked up by id: subject tables, referenced tables and the communities
/// table of `[roles]`.
fn mark_indexed(schema: &mut Schema, subjects: &IndexMap<String, SubjectKind>, communities: &str) {
    let referenced: Vec<String> = schema
        .tables
        .values()
        .flat_map(|t| t.columns.iter().filter_map(|c| c.references.clone()))
        .chain(subjects.values().map(|s| s.table.clone()))
        .chain([communities.to_string()])
        .collect();
    for name in referenced {
        if let Some(t) = schema.tables.get_mut(&name) {
            t.indexed = true;
        }
    }
}

/// Every declared period with its file (names checked unique).
fn gather_periods(
    cx: &mut Ctx,
    decls: &[(model::Declarations, FileId)],
) -> Vec<(String, Spanned<model::PeriodDef>, FileId)> {
    let mut periods_raw = Vec::new();
    for (d, file) in decls {
        for (name, p) in &d.periods {
            periods_raw.push((name.clone(), p.clone(), *file));
        }
    }
    check_unique(
        cx,
        decls
            .iter()
            .flat_map(|(d, f)| d.periods.iter().map(move |(n, p)| (n, p.span(), *f))),
        "period",
    );
    periods_raw
}

/// Directives (keys unique) with their rules; directives in the order they were issued.
fn build_directives(
    cx: &mut Ctx,
    directive_files: &[(DirectiveFile, FileId)],
    declared: &Declared,
) -> (Vec<Directive>, Vec<Rule>) {
    let mut directives = Vec::new();
    let mut rules = Vec::new();
    let mut keys: HashMap<String, Loc> = HashMap::new();
    for (df, file) in directive_files {
        let d = df.directive.get_ref();
        let key = d.key.get_ref().clone();
        let loc = Loc::new(*file, d.key.span());
        if let Some(prev) = keys.get(&key) {
            let (l, c) = cx.sources.line_col(prev.file, prev.span.start);
            cx.err(
                Diag::error(Code::RB0101, format!("directive key `{key}` is used twice"))
                    .at(Some(loc.clone()))
                    .label("second use")
                    .help(format!(
                        "first used at {}:{l}:{c}; each directive needs its own key",
                        cx.sources.name(prev.file)
                    )),
            );
        }
        keys.insert(key.clone(), loc);
        let directive = build_directive(cx, df, *file, declared.params);
        for r in &df.rules {
            if let Some(rule) = build_rule(cx, r, *file, &directive, declared) {
                rules.push(rule);
            }
        }
        directives.push(directive);
    }
    directives.sort_by(|a, b| {
        (a.issued_on.or(a.effective_from), &a.key).cmp(&(b.issued_on.or(b.effective_from), &b.key))
    });
    (directives, rules)
}

/// Working time needs working hours, which only a `[calendar]` declares.
fn require_calendar_for_working_time(cx: &mut Ctx, aggregates: &IndexMap<String, Aggregate>) {
    for agg in aggregates.values() {
        let uses = agg.op == AggOp::SumWorkingHours
            || agg
                .filters
                .iter()
                .any(|f| matches!(f.cond, Cond::WorkingTime { .. }));
        if uses {
            cx.err(
                Diag::error(
                    Code::RB0110,
                    format!("aggregate `{}`: working time needs working hours, and the policy set declares no `[calendar]`", agg.name),
                )
                .at(Some(agg.loc.clone()))
                .help("declare `[calendar]` in policy.toml with `file`, `source`, `years`, `work_start` and `work_end`"),
            );
        }
    }
}

/// The rules, and the grades as rules (a grade's condition counts as a use of the
/// parameters and aggregates it names).
fn users_of_names(rules: &[Rule], assessment: Option<&Assessment>) -> Vec<Rule> {
    let mut users: Vec<Rule> = rules.to_vec();
    if let (Some(a), Some(first)) = (assessment, rules.first()) {
        for g in a.member.iter().chain(&a.organization) {
            if let Some(w) = &g.when {
                let mut r = first.clone();
                r.applies = Some(w.clone());
                r.lets.clear();
                r.cases.clear();
                r.evidence.clear();
                users.push(r);
            }
        }
    }
    users
}

/// The Chinese word for each enum value (its first alias; the first table that has the value
/// wins), as `zh(value)` gives it.
pub fn enum_words(schema: &Schema) -> HashMap<String, String> {
    let mut words: HashMap<String, String> = HashMap::new();
    for t in schema.tables.values() {
        for c in &t.columns {
            for (k, aliases) in &c.values {
                if let Some(a) = aliases.first() {
                    words.entry(k.clone()).or_insert_with(|| a.clone());
                }
            }
        }
    }
    words
}

/// `zh(value)`: the Chinese word for an enum value (its first alias), for messages.
fn register_labels(engine: &mut Engine, schema: &Schema) {
    let words = enum_words(schema);
    engine.register_fn("zh", move |v: Dynamic| -> Dynamic {
        match v.clone().into_immutable_string() {
            Ok(s) => words.get(s.as_str()).map_or(v, |w| {
                Dynamic::from(rhai::ImmutableString::from(w.as_str()))
            }),
            Err(_) => v,
        }
    });
}

fn ensure_error(mut diags: Vec<Diag>, msg: &str) -> Vec<Diag> {
    if !diags.iter().any(|d| d.level == crate::diag::Level::Error) {
        diags.push(Diag::error(Code::RB0004, msg));
    }
    diags
}

fn compile_helpers(cx: &mut Ctx, files: &[FileId]) -> AST {
    let mut all = AST::empty();
    for &file in files {
        let text = cx.sources.text(file).to_string();
        match cx.engine.compile(&text) {
            Ok(ast) => {
                if let Some(line) = top_level_code(&text) {
                    cx.err(
                        Diag::error(
                            Code::RB0403,
                            "helper files may only define functions (`fn name(args) { … }`)",
                        )
                        .at(Some(Loc::new(file, line..line + 1)))
                        .label("code outside a function")
                        .help("move statements into a function"),
                    );
                }
                all = all.merge(&ast.clone_functions_only());
            }
            Err(e) => {
                let pos = e.position();
                let offset = offset_of_line_col(
                    &text,
                    0,
                    pos.line().unwrap_or(1),
                    pos.position().unwrap_or(1),
                );
                cx.err(
                    Diag::error(Code::RB0401, format!("Rhai syntax error: {}", e.err_type()))
                        .at(Some(Loc::new(file, offset..offset + 1)))
                        .label("here"),
                );
            }
        }
    }
    all
}

/// Byte offset of the first code outside `fn` definitions in a helper file, if any.
fn top_level_code(text: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut off = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if depth == 0
            && !t.is_empty()
            && !t.starts_with("//")
            && !t.starts_with("fn ")
            && !t.starts_with("private fn ")
            && !t.starts_with('}')
            && !t.starts_with('{')
        {
            return Some(off + (line.len() - line.trim_start().len()));
        }
        let code = t.split("//").next().unwrap_or("");
        depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
        off += line.len();
    }
    None
}

fn check_unique<'a>(
    cx: &mut Ctx,
    items: impl Iterator<Item = (&'a String, std::ops::Range<usize>, FileId)>,
    what: &str,
) {
    let mut seen: HashMap<&str, (FileId, usize)> = HashMap::new();
    for (name, span, file) in items {
        if let Some((pf, ps)) = seen.get(name.as_str()) {
            let (l, c) = cx.sources.line_col(*pf, *ps);
            let first = format!("{}:{l}:{c}", cx.sources.name(*pf));
            cx.err(
                Diag::error(Code::RB0101, format!("{what} `{name}` is declared twice"))
                    .at(Some(Loc::new(file, span)))
                    .label("second declaration")
                    .help(format!("first declared at {first}; rename one of them")),
            );
        } else {
            seen.insert(name, (file, span.start));
        }
    }
}

fn build_schema(cx: &mut Ctx, decls: &[(model::Declarations, FileId)]) -> Schema {
    check_unique(
        cx,
        decls
            .iter()
            .flat_map(|(d, f)| d.tables.iter().map(move |(n, t)| (n, t.span(), *f))),
        "table",
    );
    let mut tables = IndexMap::new();
    let all_tables: HashSet<&str> = decls
        .iter()
        .flat_map(|(d, _)| d.tables.keys().map(|s| s.as_str()))
        .collect();
    for (d, file) in decls {
        for (name, t) in &d.tables {
            let table = build_table(cx, name, t.get_ref(), *file, &all_tables);
            tables.insert(name.clone(), table);
        }
    }
    // References must point at tables with a key.
    let schema = Schema { tables };
    for (d, file) in decls {
        for (name, t) in &d.tables {
            for (cname, c) in &t.get_ref().columns {
                if let Some(r) = &c.get_ref().references
                    && let Some(target) = schema.tables.get(r.get_ref())
                    && target.key.is_none()
                {
                    cx.err(
                        Diag::error(
                            Code::RB0112,
                            format!(
                                "`{name}.{cname}` references `{}`, which has no key",
                                r.get_ref()
                            ),
                        )
                        .at(cx.loc(*file, r))
                        .help(format!("add `key = \"…\"` to table `{}`", r.get_ref())),
                    );
                }
            }
        }
    }
    schema
}

/// One table of the schema: its columns (types, aliases, references to known tables),
/// `after` orderings, header words that must not be ambiguous, and its key.
fn build_table(
    cx: &mut Ctx,
    name: &str,
    t: &model::TableDef,
    file: FileId,
    all_tables: &HashSet<&str>,
) -> TableSchema {
    let mut columns = Vec::new();
    for (cname, c) in &t.columns {
        let cdef = c.get_ref();
        if cdef.ty == ColumnType::Enum && cdef.values.is_empty() {
            cx.err(
                Diag::error(
                    Code::RB0110,
                    format!("enum column `{name}.{cname}` lists no values"),
                )
                .at(cx.loc(file, c))
                .help("add `values = { english_name = [\"中文别名\"] }`"),
            );
        }
        // Loaded cells keep the value's index in one byte.
        if matches!(cdef.ty, ColumnType::Enum | ColumnType::Bool) && cdef.values.len() > 256 {
            cx.err(
                Diag::error(
                    Code::RB0110,
                    format!(
                        "column `{name}.{cname}` lists {} values; at most 256 are allowed",
                        cdef.values.len()
                    ),
                )
                .at(cx.loc(file, c))
                .help("make it a `text` column, or an `id` column that references a table of the values"),
            );
        }
        if let Some(r) = &cdef.references
            && !all_tables.contains(r.get_ref().as_str())
        {
            let mut d = Diag::error(
                Code::RB0102,
                format!(
                    "column `{name}.{cname}` references unknown table `{}`",
                    r.get_ref()
                ),
            )
            .at(cx.loc(file, r))
            .label("no such table");
            if let Some(s) = did_you_mean(r.get_ref(), all_tables.iter().copied()) {
                d = d.help(s);
            }
            cx.err(d);
        }
        columns.push(ColumnSchema {
            name: cname.clone(),
            label: cdef.label.clone().unwrap_or_default(),
            ty: cdef.ty,
            aliases: cdef.aliases.clone(),
            required: cdef.required,
            references: cdef.references.as_ref().map(|r| r.get_ref().clone()),
            values: cdef
                .values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            after: None,
        });
    }
    // `after` and aliases need all columns.
    for (i, (cname, c)) in t.columns.iter().enumerate() {
        if let Some(a) = &c.get_ref().after {
            match t.columns.get_index_of(a.get_ref()) {
                Some(j) => columns[i].after = Some(j),
                None => {
                    let mut d = Diag::error(
                        Code::RB0103,
                        format!(
                            "column `{name}.{cname}`: `after` names unknown column `{}`",
                            a.get_ref()
                        ),
                    )
                    .at(cx.loc(file, a));
                    if let Some(s) = did_you_mean(a.get_ref(), t.columns.keys().map(|s| s.as_str()))
                    {
                        d = d.help(s);
                    }
                    cx.err(d);
                }
            }
        }
    }
    let mut header_words: HashMap<String, &str> = HashMap::new();
    for (cname, c) in &t.columns {
        for w in std::iter::once(cname).chain(c.get_ref().aliases.iter()) {
            let key = w.trim().to_lowercase();
            if let Some(other) = header_words.get(&key)
                && *other != cname.as_str()
            {
                cx.err(
                    Diag::error(
                        Code::RB0101,
                        format!(
                            "header `{w}` would mean both `{other}` and `{cname}` in table `{name}`"
                        ),
                    )
                    .at(cx.loc(file, c))
                    .help("each header alias must belong to one column of a table"),
                );
            }
            header_words.insert(key, cname);
        }
    }
    let key = match &t.key {
        Some(k) => match t.columns.get_index_of(k.get_ref()) {
            Some(i) => Some(i),
            None => {
                let mut d = Diag::error(
                    Code::RB0103,
                    format!(
                        "table `{name}`: key `{}` is not one of its columns",
                        k.get_ref()
                    ),
                )
                .at(cx.loc(file, k));
                if let Some(s) = did_you_mean(k.get_ref(), t.columns.keys().map(|s| s.as_str())) {
                    d = d.help(s);
                }
                cx.err(d);
                None
            }
        },
        None => None,
    };
    TableSchema {
        name: name.to_string(),
        label: t.label.clone().unwrap_or_else(|| name.to_string()),
        aliases: t.aliases.clone(),
        key,
        optional: t.optional,
        columns,
        indexed: false,
    }
}

fn build_subjects(
    cx: &mut Ctx,
    m: &ManifestFile,
    file: FileId,
    schema: &Schema,
) -> IndexMap<String, SubjectKind> {
    let mut out = IndexMap::new();
    if m.subjects.is_empty() {
        cx.err(
            Diag::error(Code::RB0104, "policy.toml declares no subjects")
                .at(Some(Loc::new(file, 0..0)))
                .help("add `[subjects.member]` with `table = \"members\"`"),
        );
    }
    for (name, s) in &m.subjects {
        let table = s.get_ref().table.get_ref();
        match schema.tables.get(table) {
            None => {
                let mut d = Diag::error(
                    Code::RB0102,
                    format!("subject `{name}` uses unknown table `{table}`"),
                )
                .at(cx.loc(file, &s.get_ref().table));
                if let Some(h) = did_you_mean(table, schema.tables.keys().map(|s| s.as_str())) {
                    d = d.help(h);
                }
                cx.err(d);
            }
            Some(t) if t.key.is_none() => cx.err(
                Diag::error(
                    Code::RB0112,
                    format!("subject `{name}`: table `{table}` has no key"),
                )
                .at(cx.loc(file, &s.get_ref().table)),
            ),
            Some(_) => {}
        }
        out.insert(
            name.clone(),
            SubjectKind {
                name: name.clone(),
                table: table.clone(),
                label: s.get_ref().label.clone().unwrap_or_else(|| name.clone()),
                name_column: (s.get_ref().name.as_ref())
                    .map_or_else(|| "name".to_string(), |n| n.get_ref().clone()),
            },
        );
    }
    out
}

fn build_params(cx: &mut Ctx, decls: &[(model::Declarations, FileId)]) -> IndexMap<String, Param> {
    check_unique(
        cx,
        decls
            .iter()
            .flat_map(|(d, f)| d.parameters.iter().map(move |(n, p)| (n, p.span(), *f))),
        "parameter",
    );
    let mut out = IndexMap::new();
    for (d, file) in decls {
        for (name, p) in &d.parameters {
            let loc = Loc::new(*file, p.span());
            let pd = p.get_ref();
            match pd.basis {
                Basis::Source if pd.quote.as_deref().is_none_or(|q| q.trim().is_empty()) => cx.err(
                    Diag::error(Code::RB0202, format!("parameter `{name}` says `basis = \"source\"` but quotes nothing"))
                        .at(Some(loc.clone()))
                        .help("add `quote = \"…\"` with the words of the source that fix this value"),
                ),
                Basis::Assumption if pd.reason.as_deref().is_none_or(|q| q.trim().is_empty()) => cx.err(
                    Diag::error(Code::RB0202, format!("parameter `{name}` is an assumption but gives no reason"))
                        .at(Some(loc.clone()))
                        .help("add `reason = \"…\"`: why this value, since the source does not fix it"),
                ),
                _ => {}
            }
            let mut values: Vec<(NaiveDate, toml::Value)> = Vec::new();
            let mut seen: BTreeMap<NaiveDate, std::ops::Range<usize>> = BTreeMap::new();
            if pd.values.is_empty() {
                cx.err(
                    Diag::error(Code::RB0201, format!("parameter `{name}` has no values"))
                        .at(Some(loc.clone()))
                        .help("add `values = [{ from = 2020-01-01, value = … }]`"),
                );
            }
            let mut kind: Option<&'static str> = None;
            for v in &pd.values {
                let dv = v.get_ref();
                let text = dv.from.as_text();
                let Some(date) = parse_date(&text) else {
                    cx.err(
                        Diag::error(
                            Code::RB0109,
                            format!("parameter `{name}`: `{text}` is not a date"),
                        )
                        .at(Some(Loc::new(*file, v.span())))
                        .help("write dates as 2020-02-07"),
                    );
                    continue;
                };
                if seen.contains_key(&date) {
                    cx.err(
                        Diag::error(Code::RB0201, format!("parameter `{name}` has two values from {date}"))
                            .at(Some(Loc::new(*file, v.span())))
                            .label("overlaps an earlier value")
                            .help("each value holds from its date until the next one; give each a different `from`"),
                    );
                }
                seen.insert(date, v.span());
                let k = value_kind(&dv.value);
                if let Some(prev) = kind
                    && prev != k
                    && !(matches!(prev, "integer" | "float") && matches!(k, "integer" | "float"))
                {
                    cx.err(
                        Diag::error(
                            Code::RB0203,
                            format!("parameter `{name}`: value is {k} here but {prev} elsewhere"),
                        )
                        .at(Some(Loc::new(*file, v.span())))
                        .help("all values of a parameter must be of one kind"),
                    );
                }
                kind = Some(k);
                values.push((date, dv.value.clone()));
            }
            values.sort_by_key(|(d, _)| *d);
            out.insert(
                name.clone(),
                Param {
                    name: name.clone(),
                    label: pd.label.clone().unwrap_or_else(|| name.clone()),
                    unit: pd.unit.clone(),
                    basis: pd.basis,
                    quote: pd.quote.clone(),
                    reason: pd.reason.clone(),
                    values,
                    loc,
                },
            );
        }
    }
    out
}

fn value_kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "text",
        toml::Value::Integer(_) => "integer",
        toml::Value::Float(_) => "float",
        toml::Value::Boolean(_) => "boolean",
        toml::Value::Datetime(_) => "date",
        toml::Value::Array(_) => "list",
        toml::Value::Table(_) => "table",
    }
}

/// Parse a `$…` reference or literal.
fn value_ref(v: &toml::Value) -> Result<ValueRef, String> {
    if let toml::Value::String(s) = v
        && let Some(r) = s.strip_prefix('$')
    {
        return if r == "as_of" {
            Ok(ValueRef::AsOf)
        } else if let Some(c) = r.strip_prefix("subject.") {
            Ok(ValueRef::Subject(c.to_string()))
        } else if let Some(p) = r.strip_prefix("param.") {
            Ok(ValueRef::Param(p.to_string()))
        } else if let Some(a) = r.strip_prefix("agg.") {
            Ok(ValueRef::Agg(a.to_string()))
        } else {
            Err(format!(
                "`{s}` is not a reference; use $subject.COLUMN, $param.NAME, $agg.NAME or $as_of"
            ))
        };
    }
    Ok(ValueRef::Lit(v.clone()))
}

fn build_periods(
    cx: &mut Ctx,
    raw: &[(String, Spanned<model::PeriodDef>, FileId)],
    params: &IndexMap<String, Param>,
    aggregates: &IndexMap<String, Aggregate>,
    helpers: &AST,
) -> IndexMap<String, Period> {
    let mut out = IndexMap::new();
    let agg_subjects: HashMap<String, String> = aggregates
        .iter()
        .map(|(n, a)| (n.clone(), a.subject.clone()))
        .collect();
    let mut scope_names: Vec<String> = vec!["as_of".into()];
    scope_names.extend(params.keys().cloned());
    for (name, p, file) in raw {
        let pd = p.get_ref();
        let bound = |cx: &mut Ctx, s: &Spanned<String>| -> Option<Bound> {
            let text = s.get_ref().trim();
            let loc = Loc::new(*file, s.span());
            if let Some(d) = parse_date(text) {
                return Some(Bound::Date(d));
            }
            if text.starts_with('$') {
                let r = match value_ref(&toml::Value::String(text.to_string())) {
                    Ok(r) => r,
                    Err(m) => {
                        cx.err(
                            Diag::error(Code::RB0110, format!("period `{name}`: {m}"))
                                .at(Some(loc)),
                        );
                        return None;
                    }
                };
                if let ValueRef::Agg(a) = &r
                    && !agg_subjects.contains_key(a)
                    && !cx.broken.contains(a)
                {
                    let mut d = Diag::error(
                        Code::RB0106,
                        format!("period `{name}`: unknown aggregate `{a}`"),
                    )
                    .at(Some(loc.clone()));
                    if let Some(h) = did_you_mean(a, agg_subjects.keys().map(|s| s.as_str())) {
                        d = d.help(h);
                    }
                    cx.err(d);
                }
                if let ValueRef::Param(pn) = &r
                    && !params.contains_key(pn)
                    && !cx.broken.contains(pn)
                {
                    let mut d = Diag::error(
                        Code::RB0105,
                        format!("period `{name}`: unknown parameter `{pn}`"),
                    )
                    .at(Some(loc.clone()));
                    if let Some(h) = did_you_mean(pn, params.keys().map(|s| s.as_str())) {
                        d = d.help(h);
                    }
                    cx.err(d);
                }
                if let ValueRef::Subject(_) = &r {
                    cx.err(
                        Diag::error(
                            Code::RB0110,
                            format!(
                                "period `{name}`: a period cannot use `$subject`; use an aggregate"
                            ),
                        )
                        .at(Some(loc.clone())),
                    );
                }
                return Some(Bound::Ref(r));
            }
            compile_expr(cx, *file, s, &scope_names, helpers).map(Bound::Script)
        };
        let start = bound(cx, &pd.start);
        let end = bound(cx, &pd.end);
        // `not_before`/`not_after` are the same for every subject.
        let clamp = |cx: &mut Ctx, s: &Option<Spanned<String>>| -> Option<Bound> {
            let s = s.as_ref()?;
            let b = bound(cx, s)?;
            if let Bound::Ref(ValueRef::Agg(_)) = b {
                cx.err(
                    Diag::error(
                        Code::RB0110,
                        format!("period `{name}`: `not_before`/`not_after` must be the same for every subject (a date, `$param.NAME`, `$as_of` or an expression), not an aggregate"),
                    )
                    .at(Some(Loc::new(*file, s.span()))),
                );
                return None;
            }
            Some(b)
        };
        let not_before = clamp(cx, &pd.not_before);
        let not_after = clamp(cx, &pd.not_after);
        if let (Some(start), Some(end)) = (start, end) {
            out.insert(
                name.clone(),
                Period {
                    name: name.clone(),
                    label: pd.label.clone().unwrap_or_else(|| name.clone()),
                    start,
                    end,
                    not_before,
                    not_after,
                },
            );
        }
    }
    out
}

/// A period used by an aggregate may depend on aggregates of the same subject only.
fn check_agg_periods(
    cx: &mut Ctx,
    aggregates: &IndexMap<String, Aggregate>,
    periods: &IndexMap<String, Period>,
) {
    for a in aggregates.values() {
        for f in &a.filters {
            if let Cond::Within(p) = &f.cond
                && let Some(period) = periods.get(p)
            {
                for b in [&period.start, &period.end] {
                    if let Bound::Ref(ValueRef::Agg(dep)) = b
                        && let Some(d) = aggregates.get(dep)
                        && d.subject != a.subject
                    {
                        cx.err(
                            Diag::error(Code::RB0106, format!("aggregate `{}` (for {}) uses period `{p}`, which depends on `{dep}` (for {})", a.name, a.subject, d.subject))
                                .at(Some(a.loc.clone())),
                        );
                    }
                }
            }
        }
    }
}

fn check_agg_cycles(
    cx: &mut Ctx,
    aggregates: &IndexMap<String, Aggregate>,
    periods: &IndexMap<String, Period>,
) {
    // Depth-first search for a cycle.
    fn visit<'a>(
        n: &'a str,
        aggs: &'a IndexMap<String, Aggregate>,
        periods: &IndexMap<String, Period>,
        state: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let pos = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cyc: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
                cyc.push(n.to_string());
                return Some(cyc);
            }
            _ => {}
        }
        let a = aggs.get(n)?;
        state.insert(n, 1);
        stack.push(n);
        for dep in a.dependencies(periods) {
            if let Some((k, _)) = aggs.get_key_value(dep.as_str())
                && let Some(c) = visit(k.as_str(), aggs, periods, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut state = HashMap::new();
    for name in aggregates.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(name, aggregates, periods, &mut state, &mut stack) {
            let a = &aggregates[cycle[0].as_str()];
            cx.err(
                Diag::error(Code::RB0111, format!("aggregates depend on each other in a circle: {}", cycle.join(" → ")))
                    .at(Some(a.loc.clone()))
                    .help("an aggregate cannot use itself, directly or through periods and other aggregates"),
            );
            return;
        }
    }
}

fn date_of(
    cx: &mut Ctx,
    file: FileId,
    d: &Option<model::DateLit>,
    what: &str,
    span: std::ops::Range<usize>,
) -> Option<NaiveDate> {
    let d = d.as_ref()?;
    let text = d.as_text();
    match parse_date(&text) {
        Some(x) => Some(x),
        None => {
            cx.err(
                Diag::error(Code::RB0109, format!("{what}: `{text}` is not a date"))
                    .at(Some(Loc::new(file, span)))
                    .help("write dates as 2020-02-07"),
            );
            None
        }
    }
}

/// A date from a parameter value (a TOML date or `YYYY-MM-DD` text).
fn toml_value_date(v: &toml::Value) -> Option<NaiveDate> {
    match v {
        toml::Value::String(s) => parse_date(s),
        toml::Value::Datetime(d) => parse_date(&d.to_string()),
        _ => None,
    }
}

fn build_directive(
    cx: &mut Ctx,
    df: &DirectiveFile,
    file: FileId,
    params: &IndexMap<String, Param>,
) -> Directive {
    let d = df.directive.get_ref();
    let span = df.directive.span();
    // `effective_until = "$param.NAME"`: the directive ends with a date parameter.
    let until_text = d.effective_until.as_ref().map(|u| u.as_text());
    let until_param = until_text
        .as_deref()
        .and_then(|t| t.trim().strip_prefix("$param."))
        .map(str::to_string);
    if let Some(pn) = &until_param {
        match params.get(pn) {
            None if cx.broken.contains(pn) => {}
            None => {
                let mut diag = Diag::error(
                    Code::RB0105,
                    format!("directive `effective_until`: unknown parameter `{pn}`"),
                )
                .at(Some(Loc::new(file, span.clone())));
                if let Some(h) = did_you_mean(pn, params.keys().map(|s| s.as_str())) {
                    diag = diag.help(h);
                }
                cx.err(diag);
            }
            Some(p) if p.values.iter().any(|(_, v)| toml_value_date(v).is_none()) => cx.err(
                Diag::error(
                    Code::RB0109,
                    format!("directive `effective_until`: parameter `{pn}` is not a date"),
                )
                .at(Some(Loc::new(file, span.clone()))),
            ),
            Some(_) => {}
        }
    }
    let until = if until_param.is_some() {
        None
    } else {
        date_of(
            cx,
            file,
            &d.effective_until,
            "effective_until",
            span.clone(),
        )
    };
    Directive {
        key: d.key.get_ref().clone(),
        title: d.title.clone(),
        issuer: d.issuer.clone(),
        document_number: d.document_number.clone(),
        issued_on: date_of(cx, file, &d.issued_on, "issued_on", span.clone()),
        effective_from: date_of(cx, file, &d.effective_from, "effective_from", span.clone()),
        effective_until: until,
        until_param,
        summary: d.summary.clone(),
        cited_from: d.cited_from.clone(),
        clauses: d
            .clauses
            .iter()
            .map(|(k, c)| Clause {
                key: k.clone(),
                text: c.text.clone(),
                note: c.note.clone(),
            })
            .collect(),
        file,
    }
}

/// Byte offset in `text` of 1-based (`line`, `col`) counted from `start`.
fn offset_of_line_col(text: &str, start: usize, line: usize, col: usize) -> usize {
    let mut off = start;
    let bytes = text.as_bytes();
    let mut l = 1;
    while l < line && off < bytes.len() {
        if bytes[off] == b'\n' {
            l += 1;
        }
        off += 1;
    }
    let rest = &text[off.min(text.len())..];
    let mut it = rest.char_indices();
    let mut c = 1;
    let mut extra = 0;
    while c < col {
        match it.next() {
            Some((_, ch)) if ch != '\n' => {
                extra += ch.len_utf8();
                c += 1;
            }
            _ => break,
        }
    }
    off + extra
}

/// Where the content of a TOML string value starts (after its opening quotes).
fn content_start(text: &str, span: &std::ops::Range<usize>) -> usize {
    let tok = text.get(span.clone()).unwrap_or("");
    if tok.starts_with("\"\"\"") || tok.starts_with("'''") {
        let s = span.start + 3;
        let rest = &text[s.min(text.len())..];
        if rest.starts_with("\r\n") {
            s + 2
        } else if rest.starts_with('\n') {
            s + 1
        } else {
            s
        }
    } else if tok.starts_with('"') || tok.starts_with('\'') {
        span.start + 1
    } else {
        span.start
    }
}

fn compile_scope(names: &[String]) -> Scope<'static> {
    let mut scope = Scope::new();
    for n in names {
        scope.push_dynamic(n.clone(), Dynamic::UNIT);
    }
    scope
}

/// Compile the Rhai in a TOML string at `s`, with `names` as the known variables.
fn compile_expr(
    cx: &mut Ctx,
    file: FileId,
    s: &Spanned<String>,
    names: &[String],
    helpers: &AST,
) -> Option<Expr> {
    let text = cx.sources.text(file);
    let start = content_start(text, &s.span());
    compile_at(cx, file, s.get_ref(), start, names, helpers)
}

fn compile_at(
    cx: &mut Ctx,
    file: FileId,
    src: &str,
    start: usize,
    names: &[String],
    helpers: &AST,
) -> Option<Expr> {
    let scope = compile_scope(names);
    match cx.engine.compile_with_scope(&scope, src) {
        Ok(ast) => {
            let defined: Vec<String> = ast.iter_functions().map(|f| f.name.to_string()).collect();
            let (idents, calls) = names_in(&ast, src);
            for (name, off) in calls {
                if cx.functions.contains(&name) || defined.contains(&name) {
                    continue;
                }
                let mut d = Diag::warning(
                    Code::RB0404,
                    format!("unknown function `{name}` in expression"),
                )
                .at(Some(Loc::new(file, start + off..start + off + name.len())))
                .label("no built-in or helper function has this name");
                if let Some(h) = did_you_mean(&name, cx.functions.iter().map(|s| s.as_str())) {
                    d = d.help(h);
                } else {
                    d = d.help("helper functions are defined in policies/helpers/*.rhai");
                }
                cx.err(d);
            }
            Some(Expr {
                src: src.to_string(),
                loc: Loc::new(file, start..start + src.len()),
                ast: helpers.merge(&ast),
                idents,
            })
        }
        Err(e) => {
            let pos = e.position();
            let text = cx.sources.text(file);
            let off = offset_of_line_col(
                text,
                start,
                pos.line().unwrap_or(1),
                pos.position().unwrap_or(1),
            );
            let loc = Some(Loc::new(file, off..off + 1));
            let d = match e.err_type() {
                // Follows from the error that left the declaration of `v` out.
                rhai::ParseErrorType::VariableUndefined(v) if cx.broken.contains(v) => {
                    return None;
                }
                rhai::ParseErrorType::VariableUndefined(v) => {
                    let mut d = Diag::error(Code::RB0402, format!("unknown name `{v}` in expression"))
                        .at(Some(Loc::new(file, off..off + v.len())))
                        .label("not a parameter, aggregate, subject column or earlier `let`");
                    if let Some(h) = did_you_mean(v, names.iter().map(|s| s.as_str())) {
                        d = d.help(h);
                    }
                    d
                }
                other => Diag::error(Code::RB0401, format!("expression error: {other}"))
                    .at(loc)
                    .label("here")
                    .help("expressions are Rhai: compare with == != < <= > >=, combine with && || !, strings in \"quotes\""),
            };
            cx.err(d);
            None
        }
    }
}

/// Split a message into text and `{expr}` placeholders and compile each placeholder.
fn compile_template(
    cx: &mut Ctx,
    file: FileId,
    s: &Spanned<String>,
    names: &[String],
    helpers: &AST,
) -> Option<Template> {
    let text = cx.sources.text(file).to_string();
    let base = content_start(&text, &s.span());
    let src = s.get_ref();
    let mut parts = Vec::new();
    let mut ok = true;
    for piece in message_pieces(src) {
        match piece {
            Piece::Text(t) => parts.push(Part::Text(t)),
            Piece::Expr(r) => {
                match compile_at(cx, file, &src[r.clone()], base + r.start, names, helpers) {
                    Some(e) => parts.push(Part::Expr(e)),
                    None => ok = false,
                }
            }
            Piece::Unclosed(i) => {
                cx.err(
                    Diag::error(Code::RB0401, "message has a `{` without its `}`")
                        .at(Some(Loc::new(file, base + i..base + i + 1)))
                        .help("placeholders look like {hours}; write {{ for a literal brace"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(Template { parts })
}

fn build_rule(
    cx: &mut Ctx,
    r: &Spanned<model::RuleDef>,
    file: FileId,
    directive: &Directive,
    declared: &Declared,
) -> Option<Rule> {
    let Declared {
        subjects,
        periods,
        helpers,
        ..
    } = *declared;
    let rd = r.get_ref();
    let loc = Loc::new(file, r.span());
    let id = rd.id.get_ref().clone();
    let subject = rd.subject.get_ref().clone();
    let Some(sk) = subjects.get(&subject) else {
        let mut d = Diag::error(
            Code::RB0104,
            format!("rule `{id}`: unknown subject `{subject}`"),
        )
        .at(cx.loc(file, &rd.subject));
        if let Some(h) = did_you_mean(&subject, subjects.keys().map(|s| s.as_str())) {
            d = d.help(h);
        }
        cx.err(d.help(format!(
            "subjects: {}",
            subjects.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
        return None;
    };
    let clause = rule_clause(cx, rd, file, directive);
    if let Some(p) = &rd.period
        && !periods.contains_key(p.get_ref())
        && !cx.broken.contains(p.get_ref())
    {
        let mut d = Diag::error(
            Code::RB0107,
            format!("rule `{id}`: unknown period `{}`", p.get_ref()),
        )
        .at(cx.loc(file, p));
        if let Some(h) = did_you_mean(p.get_ref(), periods.keys().map(|s| s.as_str())) {
            d = d.help(h);
        }
        cx.err(d);
    }
    let (version, eff_from, eff_until) = rule_version_and_dates(cx, rd, file, &loc);

    // Names the rule's expressions may use; they must not collide.
    let mut names = RuleNames::new(&id, &loc);
    for p in declared.params.keys() {
        names.add(cx, p, "parameter".into());
    }
    for a in declared
        .aggregates
        .values()
        .filter(|a| a.subject == subject)
    {
        names.add(cx, &a.name, "aggregate".into());
    }
    if let Some(t) = declared.schema.tables.get(&sk.table) {
        for c in &t.columns {
            names.add(cx, &c.name, format!("column of {}", t.name));
        }
    }
    let applies = rd
        .applies
        .as_ref()
        .and_then(|s| compile_expr(cx, file, s, &names.names, helpers));
    let mut lets = Vec::new();
    for (n, s) in &rd.lets {
        if let Some(e) = compile_expr(cx, file, s, &names.names, helpers) {
            lets.push((n.clone(), e));
        }
        names.add(cx, n, "`let` of this rule".into());
    }
    for e in &rd.evidence {
        if !names.names.contains(e.get_ref()) && !cx.broken.contains(e.get_ref()) {
            let mut d = Diag::error(
                Code::RB0402,
                format!(
                    "rule `{id}`: evidence names unknown value `{}`",
                    e.get_ref()
                ),
            )
            .at(cx.loc(file, e));
            if let Some(h) = did_you_mean(e.get_ref(), names.names.iter().map(|s| s.as_str())) {
                d = d.help(h);
            }
            cx.err(d);
        }
    }
    let cases = rule_cases(cx, rd, file, &loc, &names.names, helpers);
    Some(Rule {
        id,
        version,
        title: rd.title.clone(),
        directive: directive.key.clone(),
        subject,
        effective_from: eff_from,
        effective_until: eff_until,
        clause,
        severity: rd.severity,
        period: rd.period.as_ref().map(|p| p.get_ref().clone()),
        applies,
        not_applicable_message: rd
            .not_applicable_message
            .clone()
            .unwrap_or_else(|| "不适用".to_string()),
        lets,
        evidence: rd.evidence.iter().map(|e| e.get_ref().clone()).collect(),
        cases,
        loc,
    })
}

/// The clause of its directive a rule encodes (an empty one, after an error, when the
/// directive has no such clause).
fn rule_clause(cx: &mut Ctx, rd: &model::RuleDef, file: FileId, directive: &Directive) -> Clause {
    if let Some(c) = directive
        .clauses
        .iter()
        .find(|c| &c.key == rd.clause.get_ref())
    {
        return c.clone();
    }
    let mut d = Diag::error(
        Code::RB0108,
        format!(
            "rule `{}`: directive `{}` has no clause `{}`",
            rd.id.get_ref(),
            directive.key,
            rd.clause.get_ref()
        ),
    )
    .at(cx.loc(file, &rd.clause));
    if let Some(h) = did_you_mean(
        rd.clause.get_ref(),
        directive.clauses.iter().map(|c| c.key.as_str()),
    ) {
        d = d.help(h);
    } else {
        d = d.help("add it under [directive.clauses] with the quoted text");
    }
    cx.err(d);
    Clause {
        key: rd.clause.get_ref().clone(),
        text: String::new(),
        note: None,
    }
}

/// A rule's version (a number or text) and the days it is in force.
fn rule_version_and_dates(
    cx: &mut Ctx,
    rd: &model::RuleDef,
    file: FileId,
    loc: &Loc,
) -> (String, Option<NaiveDate>, Option<NaiveDate>) {
    let id = rd.id.get_ref();
    let version = match rd.version.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        other => {
            cx.err(
                Diag::error(
                    Code::RB0003,
                    format!("rule `{id}`: version must be a number or text, not `{other}`"),
                )
                .at(cx.loc(file, &rd.version)),
            );
            String::new()
        }
    };
    let mut date = |d: &Option<Spanned<model::DateLit>>, what: &str| {
        d.as_ref()
            .and_then(|d| date_of(cx, file, &Some(d.get_ref().clone()), what, d.span()))
    };
    let eff_from = date(&rd.effective_from, "effective_from");
    let eff_until = date(&rd.effective_until, "effective_until");
    if let (Some(f), Some(u)) = (eff_from, eff_until)
        && u < f
    {
        cx.err(
            Diag::error(
                Code::RB0109,
                format!("rule `{id}`: effective_until {u} is before effective_from {f}"),
            )
            .at(Some(loc.clone())),
        );
    }
    (version, eff_from, eff_until)
}

/// The names a rule's expressions may use, each with what it is; a name that is two
/// different things is an error.
struct RuleNames<'a> {
    id: &'a str,
    loc: &'a Loc,
    names: Vec<String>,
    origin: HashMap<String, String>,
}

impl<'a> RuleNames<'a> {
    fn new(id: &'a str, loc: &'a Loc) -> Self {
        RuleNames {
            id,
            loc,
            names: BUILTIN_NAMES.iter().map(|s| s.to_string()).collect(),
            origin: BUILTIN_NAMES
                .iter()
                .map(|s| (s.to_string(), "built-in name".to_string()))
                .collect(),
        }
    }

    fn add(&mut self, cx: &mut Ctx, n: &str, what: String) {
        if let Some(prev) = self.origin.get(n) {
            if *prev != what {
                cx.err(
                    Diag::error(
                        Code::RB0304,
                        format!("rule `{}`: `{n}` is both a {prev} and a {what}", self.id),
                    )
                    .at(Some(self.loc.clone()))
                    .help("rename one of them so expressions are unambiguous"),
                );
            }
        } else {
            self.origin.insert(n.to_string(), what);
            self.names.push(n.to_string());
        }
    }
}

/// A rule's cases: conditions and messages compiled; only the last may omit `when`.
fn rule_cases(
    cx: &mut Ctx,
    rd: &model::RuleDef,
    file: FileId,
    loc: &Loc,
    names: &[String],
    helpers: &AST,
) -> Vec<Case> {
    let id = rd.id.get_ref();
    if rd.cases.is_empty() {
        cx.err(
            Diag::error(Code::RB0302, format!("rule `{id}` has no [[rule.case]]"))
                .at(Some(loc.clone()))
                .help("add cases with `when`, `status` and `message`; the last may omit `when`"),
        );
    }
    let mut cases = Vec::new();
    for (i, c) in rd.cases.iter().enumerate() {
        let cd = c.get_ref();
        if cd.when.is_none() && i + 1 != rd.cases.len() {
            cx.err(
                Diag::error(Code::RB0302, format!("rule `{id}`: a case without `when` must be the last"))
                    .at(Some(Loc::new(file, c.span())))
                    .help("cases are tried in order; one without `when` always holds, so later ones never run"),
            );
        }
        let when = cd
            .when
            .as_ref()
            .and_then(|s| compile_expr(cx, file, s, names, helpers));
        if let Some(message) = compile_template(cx, file, &cd.message, names, helpers) {
            cases.push(Case {
                when,
                status: cd.status,
                message,
            });
        }
    }
    cases
}

fn build_assessment(
    cx: &mut Ctx,
    a: &model::AssessmentFile,
    file: FileId,
    declared: &Declared,
    directive_keys: &[&str],
) -> Assessment {
    let Declared {
        subjects,
        schema,
        params,
        aggregates,
        periods,
        helpers,
    } = *declared;
    let grades = |cx: &mut Ctx,
                  defs: &[Spanned<model::GradeDef>],
                  subject: &str,
                  extra: &[&str]|
     -> Vec<Grade> {
        let mut names: Vec<String> = crate::policy::GRADE_COUNT_NAMES
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        names.push("as_of".into());
        names.push("subject_id".into());
        names.extend(params.keys().cloned());
        names.extend(
            aggregates
                .values()
                .filter(|x| x.subject == subject)
                .map(|x| x.name.clone()),
        );
        if let Some(t) = subjects
            .get(subject)
            .and_then(|s| schema.tables.get(&s.table))
        {
            names.extend(t.columns.iter().map(|c| c.name.clone()));
        }
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for (i, g) in defs.iter().enumerate() {
            let gd = g.get_ref();
            if gd.when.is_none() && i + 1 != defs.len() {
                cx.err(
                    Diag::error(
                        Code::RB0302,
                        format!("grade `{}` has no `when` but is not the last", gd.grade),
                    )
                    .at(Some(Loc::new(file, g.span())))
                    .help("grades are tried in order; put the grade without `when` last"),
                );
            }
            let when = gd
                .when
                .as_ref()
                .and_then(|w| compile_expr(cx, file, w, &names, helpers));
            out.push(Grade {
                name: gd.grade.clone(),
                when,
                description: gd.description.clone(),
                rank: gd.rank,
            });
        }
        out
    };
    let member = grades(cx, &a.assessment.member, "member", &[]);
    let organization = grades(
        cx,
        &a.assessment.organization,
        "organization",
        crate::policy::GRADE_ORG_NAMES,
    );
    let ad = &a.assessment;
    let period = ad
        .period
        .as_ref()
        .and_then(|p| fixed_period(cx, periods, p, file, "assessment `period`"));
    let directives = ad.directives.as_ref().map(|list| {
        list.iter()
            .filter_map(|k| {
                let key = k.get_ref();
                if directive_keys.contains(&key.as_str()) {
                    return Some(key.clone());
                }
                if cx.broken.contains(key) {
                    return None;
                }
                let mut d = Diag::error(
                    Code::RB0101,
                    format!("assessment `directives`: no directive has the key `{key}`"),
                )
                .at(Some(Loc::new(file, k.span())));
                if let Some(h) = did_you_mean(key, directive_keys.iter().copied()) {
                    d = d.help(h);
                }
                cx.err(d);
                None
            })
            .collect()
    });
    let hours = ad.hours.as_ref().and_then(|h| {
        let name = h.get_ref();
        match aggregates.get(name) {
            Some(agg) if agg.subject == "member" => Some(name.clone()),
            None if cx.broken.contains(name) => None,
            _ => {
                let mut d = Diag::error(
                    Code::RB0106,
                    format!("assessment `hours`: no member aggregate `{name}`"),
                )
                .at(Some(Loc::new(file, h.span())));
                if let Some(hint) = did_you_mean(name, aggregates.keys().map(|s| s.as_str())) {
                    d = d.help(hint);
                }
                cx.err(d);
                None
            }
        }
    });
    Assessment {
        title: ad.title.clone().unwrap_or_else(|| "考核评价".into()),
        note: ad.note.clone(),
        period,
        directives,
        hours,
        member,
        organization,
    }
}

/// The period `p` names, which must exist and be the same for every subject (`what` says
/// which setting names it).
fn fixed_period(
    cx: &mut Ctx,
    periods: &IndexMap<String, Period>,
    p: &Spanned<String>,
    file: FileId,
    what: &str,
) -> Option<String> {
    let name = p.get_ref();
    let loc = Loc::new(file, p.span());
    match periods.get(name) {
        Some(per) if !per_subject(per) => Some(name.clone()),
        Some(_) => {
            cx.err(
                Diag::error(
                    Code::RB0110,
                    format!("{what}: period `{name}` depends on each subject; it must be one period for everyone"),
                )
                .at(Some(loc))
                .help("use a period whose start and end are dates, parameters or expressions over as_of"),
            );
            None
        }
        None if cx.broken.contains(name) => None,
        None => {
            let mut d =
                Diag::error(Code::RB0107, format!("{what}: unknown period `{name}`")).at(Some(loc));
            if let Some(h) = did_you_mean(name, periods.keys().map(|s| s.as_str())) {
                d = d.help(h);
            }
            cx.err(d);
            None
        }
    }
}

/// Whether a period's bounds come from each subject's aggregates.
fn per_subject(p: &Period) -> bool {
    [&p.start, &p.end]
        .iter()
        .any(|b| matches!(b, Bound::Ref(ValueRef::Agg(_))))
}

fn check_rule_versions(cx: &mut Ctx, rules: &[Rule]) {
    let mut by_id: BTreeMap<&str, Vec<&Rule>> = BTreeMap::new();
    for r in rules {
        by_id.entry(&r.id).or_default().push(r);
    }
    for (id, mut versions) in by_id {
        versions.sort_by_key(|r| r.effective_from.unwrap_or(NaiveDate::MIN));
        for w in versions.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.directive != b.directive {
                cx.err(
                    Diag::error(
                        Code::RB0101,
                        format!(
                            "rule id `{id}` is used in two directives ({} and {})",
                            a.directive, b.directive
                        ),
                    )
                    .at(Some(b.loc.clone())),
                );
            }
            if a.version == b.version {
                cx.err(
                    Diag::error(
                        Code::RB0303,
                        format!("rule `{id}` has version {} twice", a.version),
                    )
                    .at(Some(b.loc.clone()))
                    .help("give each version its own number"),
                );
            }
            let a_end = a.effective_until.unwrap_or(NaiveDate::MAX);
            let b_start = b.effective_from.unwrap_or(NaiveDate::MIN);
            if a_end < b_start && a_end.succ_opt().is_some_and(|next| next < b_start) {
                cx.err(
                    Diag::warning(
                        Code::RB0504,
                        format!(
                            "no version of rule `{id}` is in force from {} to {}",
                            a_end.succ_opt().unwrap_or(a_end),
                            b_start.pred_opt().unwrap_or(b_start)
                        ),
                    )
                    .at(Some(b.loc.clone()))
                    .help(format!(
                        "if that is not intended, start version {} on {}",
                        b.version,
                        a_end.succ_opt().unwrap_or(a_end)
                    )),
                );
            }
            if a_end >= b_start {
                cx.err(
                    Diag::error(
                        Code::RB0301,
                        format!(
                            "versions {} and {} of rule `{id}` are both in force on {}",
                            a.version,
                            b.version,
                            b_start.max(a.effective_from.unwrap_or(NaiveDate::MIN))
                        ),
                    )
                    .at(Some(b.loc.clone()))
                    .label("overlaps the earlier version")
                    .help(format!(
                        "end version {} the day before version {} starts: effective_until = {}",
                        a.version,
                        b.version,
                        b_start.pred_opt().unwrap_or(b_start)
                    )),
                );
            }
        }
    }
}

/// Warn about parameters, aggregates and periods nothing uses: not `rules` (rules and
/// grades), and not named in `used_elsewhere`.
fn warn_unused(cx: &mut Ctx, declared: &Declared, rules: &[Rule], used_elsewhere: &[String]) {
    // While there are errors, a name that only an erroneous declaration uses (left out of
    // `declared`) would show as unused: these warnings wait until the errors are fixed.
    if cx
        .diags
        .iter()
        .any(|d| d.level == crate::diag::Level::Error)
    {
        return;
    }
    let Declared {
        params,
        aggregates,
        periods,
        ..
    } = *declared;
    let mut used: HashSet<String> = used_elsewhere.iter().cloned().collect();
    for r in rules {
        used.extend(r.idents());
        if let Some(p) = &r.period {
            used.insert(p.clone());
        }
    }
    let refs = |r: &ValueRef, used: &mut HashSet<String>| match r {
        ValueRef::Param(p) | ValueRef::Agg(p) => {
            used.insert(p.clone());
        }
        _ => {}
    };
    for a in aggregates.values() {
        for f in &a.filters {
            f.cond.refs().iter().for_each(|r| refs(r, &mut used));
            if let Cond::Within(p) = &f.cond {
                used.insert(p.clone());
            }
        }
        if let Some(e) = &a.except_days {
            used.insert(e.clone());
        }
    }
    for p in periods.values() {
        for b in [
            Some(&p.start),
            Some(&p.end),
            p.not_before.as_ref(),
            p.not_after.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            match b {
                Bound::Ref(r) => refs(r, &mut used),
                Bound::Script(e) => used.extend(e.idents.iter().cloned()),
                Bound::Date(_) => {}
            }
        }
    }
    for p in params.values() {
        if !used.contains(&p.name) {
            cx.err(
                Diag::warning(
                    Code::RB0501,
                    format!("parameter `{}` is not used by any rule", p.name),
                )
                .at(Some(p.loc.clone()))
                .help("remove it or use it in a rule"),
            );
        }
    }
    for a in aggregates.values() {
        if !used.contains(&a.name) {
            cx.err(
                Diag::warning(
                    Code::RB0502,
                    format!("aggregate `{}` is not used by any rule", a.name),
                )
                .at(Some(a.loc.clone())),
            );
        }
    }
}

/// The working calendar `[calendar]` declares: the listed days from its CSV file (one of the
/// set's `calendar/*.csv`, kept in `sources` so problems point at their line), and the
/// working hours.
fn build_calendar(
    cx: &mut Ctx,
    root: &Path,
    c: &Spanned<model::CalendarDef>,
    manifest_file: FileId,
    params: &IndexMap<String, Param>,
) -> (crate::calendar::Calendar, Option<(ValueRef, ValueRef)>) {
    use crate::calendar::{Calendar, DayKind};
    let cd = c.get_ref();
    let file_loc = Loc::new(manifest_file, cd.file.span());
    let wanted = cd
        .file
        .get_ref()
        .trim()
        .trim_start_matches("./")
        .replace('\\', "/");
    let want_name = super::display_path(root, &root.join(&wanted));
    let source = (0..cx.sources.len()).find(|&id| cx.sources.name(id) == want_name);
    let mut days = Vec::new();
    match source {
        None => cx.err(
            Diag::error(
                Code::RB0004,
                format!("calendar file `{wanted}` not found in the policy folder"),
            )
            .at(Some(file_loc))
            .help("put the calendar CSV in the policy folder's calendar/ and name it as calendar/NAME.csv"),
        ),
        Some(id) => {
            let text = cx.sources.text(id);
            let mut rd = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(text.as_bytes());
            let header: Vec<String> = match rd.headers() {
                Ok(h) => h.iter().map(|x| x.trim().trim_start_matches('\u{feff}').to_string()).collect(),
                Err(e) => {
                    cx.err(Diag::error(Code::RB0004, format!("{want_name}: {e}")));
                    Vec::new()
                }
            };
            let col = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
            let (dc, tc, nc) = (
                col(&["date", "日期"]),
                col(&["type", "类型"]),
                col(&["name", "名称", "节日"]),
            );
            if dc.is_none() || tc.is_none() {
                cx.err(
                    Diag::error(
                        Code::RB0004,
                        format!("{want_name}: the calendar needs the columns `date` and `type` (found: {})", header.join(", ")),
                    )
                    .at(Some(Loc::new(id, 0..text.find('\n').unwrap_or(text.len())))),
                );
            }
            for rec in rd.records() {
                let rec = match rec {
                    Ok(r) => r,
                    Err(e) => {
                        cx.err(Diag::error(Code::RB0004, format!("{want_name}: {e}")));
                        break;
                    }
                };
                let (Some(dc), Some(tc)) = (dc, tc) else { break };
                let pos = rec.position().map_or(0, |p| p.byte() as usize);
                let line_end = text[pos..].find('\n').map_or(text.len(), |e| pos + e);
                let loc = Loc::new(id, pos..line_end);
                let date_text = rec.get(dc).unwrap_or("").trim();
                let Some(date) = parse_date(date_text) else {
                    cx.err(
                        Diag::error(Code::RB0109, format!("{want_name}: `{date_text}` is not a date"))
                            .at(Some(loc))
                            .help("write dates as 2020-10-01"),
                    );
                    continue;
                };
                let word = rec.get(tc).unwrap_or("").trim();
                let Some(kind) = DayKind::parse(word) else {
                    cx.err(
                        Diag::error(Code::RB0109, format!("{want_name}: day type `{word}` is neither `holiday` (休) nor `workday` (班)"))
                            .at(Some(loc)),
                    );
                    continue;
                };
                let name = nc.and_then(|n| rec.get(n)).unwrap_or("").trim().to_string();
                days.push((date, kind, name));
            }
        }
    }
    if let Some(bad) = cd.weekend.iter().find(|d| !(1..=7).contains(*d)) {
        cx.err(
            Diag::error(
                Code::RB0110,
                format!("calendar `weekend`: {bad} is not a weekday (1 = Monday … 7 = Sunday)"),
            )
            .at(Some(Loc::new(manifest_file, c.span()))),
        );
    }
    let hour = |cx: &mut Ctx, s: &Spanned<String>| -> Option<ValueRef> {
        let text = s.get_ref().trim();
        let loc = Loc::new(manifest_file, s.span());
        if let Some(pn) = text.strip_prefix("$param.") {
            match params.get(pn) {
                Some(p) if p.values.iter().all(|(_, v)| time_of_day(v).is_some()) => {
                    Some(ValueRef::Param(pn.to_string()))
                }
                Some(_) => {
                    cx.err(
                        Diag::error(
                            Code::RB0110,
                            format!("calendar: parameter `{pn}` is not a time of day (\"09:00\")"),
                        )
                        .at(Some(loc)),
                    );
                    None
                }
                None if cx.broken.contains(pn) => None,
                None => {
                    let mut d =
                        Diag::error(Code::RB0105, format!("calendar: unknown parameter `{pn}`"))
                            .at(Some(loc));
                    if let Some(h) = did_you_mean(pn, params.keys().map(|s| s.as_str())) {
                        d = d.help(h);
                    }
                    cx.err(d);
                    None
                }
            }
        } else {
            let v = toml::Value::String(text.to_string());
            if time_of_day(&v).is_some() {
                Some(ValueRef::Lit(v))
            } else {
                cx.err(Diag::error(Code::RB0110, format!("calendar: `{text}` is not a time of day (write \"09:00\" or $param.NAME)")).at(Some(loc)));
                None
            }
        }
    };
    let start = hour(cx, &cd.work_start);
    let end = hour(cx, &cd.work_end);
    let cal = Calendar::new(
        cd.label.clone().unwrap_or_else(|| "工作日历".into()),
        wanted,
        cd.source.clone(),
        cd.years.get_ref().iter().map(|y| *y as i32).collect(),
        &cd.weekend,
        days,
    );
    (cal, start.zip(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_offsets_walk_lines_and_chars() {
        let t = "ab\n中文x\n";
        assert_eq!(offset_of_line_col(t, 0, 2, 3), 3 + 6);
        assert_eq!(content_start("k = \"abc\"", &(4..9)), 5);
        assert_eq!(content_start("k = '''\nabc'''", &(4..14)), 8);
    }

    #[test]
    fn names_come_from_rhai() {
        let engine = crate::script::engine(&crate::script::Limits::default());
        let mut scope = Scope::new();
        for n in ["a1", "x", "in_service"] {
            scope.push_dynamic(n, Dynamic::UNIT);
        }
        let src = "a1 >= 20 && b_c(x) || \"in_service\" in x.len_of() || `${f1(1)}` == \"g(x)\"";
        let ast = engine.compile_with_scope(&scope, src).unwrap();
        let (vars, calls) = names_in(&ast, src);
        assert_eq!(vars, vec!["a1", "x"]);
        // Each name with the two characters at its offset (`in` calls `contains`).
        let calls: Vec<(&str, &str)> = calls
            .iter()
            .map(|(n, off)| (n.as_str(), &src[*off..*off + 2]))
            .collect();
        assert_eq!(
            calls,
            vec![
                ("b_c", "b_"),
                ("contains", "in"),
                ("len_of", "le"),
                ("f1", "f1")
            ]
        );
    }
}
