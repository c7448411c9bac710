//! A native evaluator for the common shapes of rule expressions, so that most findings need
//! no Rhai call at all.
//!
//! It understands a small, strict subset of Rhai: literals, variables, `! -`, `* / %`,
//! `+ -`, comparisons, `&& ||`, interpolated strings, `if … else …`, calls of a few
//! built-in functions (`present`, `days_between`, `len` …) and of helper functions whose
//! bodies stay inside the subset (`let`, `if`, `return`). Everything it does follows Rhai's
//! own rules for the value types involved (Rhai's built-in operators, including their
//! tolerance when comparing floating-point numbers).
//!
//! Whenever it meets anything else (a construct it does not parse, a type combination it does
//! not know, a value that would make Rhai report an error, data near a size limit) it gives
//! up with [`Bail`] and the caller evaluates the expression with Rhai instead, with every
//! Rhai limit in force. Evaluation here has no side effects, so giving up half-way is safe.

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use rhai::{Dynamic, ImmutableString};
use std::collections::HashMap;
use std::fmt::Write as _;

/// The native evaluator gives up; evaluate with Rhai.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bail;

type R<T> = Result<T, Bail>;

/// A value as a rule expression sees it (what Rhai would hold, without building it).
#[derive(Debug, Clone)]
pub enum V<'r> {
    Unit,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string borrowed from the data or the policy.
    Str(&'r str),
    /// A string made while evaluating.
    Own(ImmutableString),
    /// A date; Rhai sees `YYYY-MM-DD`.
    Date(NaiveDate),
    /// A date-time; Rhai sees `YYYY-MM-DD HH:MM:SS`.
    DateTime(NaiveDateTime),
    /// An array of dates (as strings).
    Days(&'r [NaiveDate]),
    /// An aggregate's rows (an array of maps): aggregate local index and rows.
    Rows(usize, &'r [u32]),
    /// Any other Rhai value (array or map parameters).
    Dyn(&'r Dynamic),
}

/// Rhai's type of a value, as far as operators care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Unit,
    Bool,
    Int,
    Float,
    Str,
    Array,
    Map,
    Other,
}

impl V<'_> {
    fn ty(&self) -> Ty {
        match self {
            V::Unit => Ty::Unit,
            V::Bool(_) => Ty::Bool,
            V::Int(_) => Ty::Int,
            V::Float(_) => Ty::Float,
            V::Str(_) | V::Own(_) | V::Date(_) | V::DateTime(_) => Ty::Str,
            V::Days(_) | V::Rows(..) => Ty::Array,
            V::Dyn(d) => {
                if d.is_array() {
                    Ty::Array
                } else if d.is_map() {
                    Ty::Map
                } else {
                    Ty::Other
                }
            }
        }
    }

    pub fn is_unit(&self) -> bool {
        matches!(self, V::Unit)
    }

    /// Call `f` with the text of a string value.
    fn with_text<T>(&self, f: impl FnOnce(&str) -> T) -> Option<T> {
        match self {
            V::Str(s) => Some(f(s)),
            V::Own(s) => Some(f(s.as_str())),
            V::Date(d) => {
                let t = DateText::of(*d);
                Some(f(t.as_str()))
            }
            V::DateTime(d) => {
                let t = DateTimeText::of(*d);
                Some(f(t.as_str()))
            }
            _ => None,
        }
    }
}

/// `YYYY-MM-DD` without allocating (years 0–9999; others fall back to a `String`).
pub enum DateText {
    Short([u8; 10]),
    Long(String),
}

impl DateText {
    pub fn of(d: NaiveDate) -> DateText {
        let y = d.year();
        if (0..=9999).contains(&y) {
            let (y, m, dd) = (y as u32, d.month(), d.day());
            let b = [
                b'0' + (y / 1000) as u8,
                b'0' + (y / 100 % 10) as u8,
                b'0' + (y / 10 % 10) as u8,
                b'0' + (y % 10) as u8,
                b'-',
                b'0' + (m / 10) as u8,
                b'0' + (m % 10) as u8,
                b'-',
                b'0' + (dd / 10) as u8,
                b'0' + (dd % 10) as u8,
            ];
            DateText::Short(b)
        } else {
            DateText::Long(crate::data::parse::date_text(d))
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Only ASCII digits and dashes.
            DateText::Short(b) => std::str::from_utf8(b).unwrap_or(""),
            DateText::Long(s) => s,
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` without allocating (years 0–9999).
pub enum DateTimeText {
    Short([u8; 19]),
    Long(String),
}

impl DateTimeText {
    pub fn of(d: NaiveDateTime) -> DateTimeText {
        use chrono::Timelike;
        match DateText::of(d.date()) {
            DateText::Short(b) => {
                let mut o = [0u8; 19];
                o[..10].copy_from_slice(&b);
                let (h, m, s) = (d.hour(), d.minute(), d.second());
                o[10] = b' ';
                o[11] = b'0' + (h / 10 % 10) as u8;
                o[12] = b'0' + (h % 10) as u8;
                o[13] = b':';
                o[14] = b'0' + (m / 10 % 10) as u8;
                o[15] = b'0' + (m % 10) as u8;
                o[16] = b':';
                o[17] = b'0' + (s / 10 % 10) as u8;
                o[18] = b'0' + (s % 10) as u8;
                DateTimeText::Short(o)
            }
            DateText::Long(_) => DateTimeText::Long(crate::data::parse::datetime_text(d)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            DateTimeText::Short(b) => std::str::from_utf8(b).unwrap_or(""),
            DateTimeText::Long(s) => s,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Compiled expressions
// ---------------------------------------------------------------------------------------

/// Where a variable lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `as_of` and the parameters (the same for every subject).
    Base(u16),
    /// A variable of the rule: subject id, subject column, aggregate, period bound.
    Var(u16),
    /// An earlier `let` of the rule.
    Let(u16),
    /// A parameter or `let` inside a helper function.
    Local(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `x in list`: Rhai's `contains(list, x)`.
    In,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Native {
    Present,
    Missing,
    ToFloat,
    ToInt,
    Floor,
    MaxOf,
    MinOf,
    RoundTo,
    Ratio,
    DaysBetween,
    Len,
    Zh,
    Join,
    Year,
    Month,
}

impl Native {
    fn of(name: &str, arity: usize) -> Option<Native> {
        Some(match (name, arity) {
            ("present", 1) => Native::Present,
            ("missing", 1) => Native::Missing,
            ("to_float", 1) => Native::ToFloat,
            ("to_int", 1) => Native::ToInt,
            ("floor", 1) => Native::Floor,
            ("max_of", 2) => Native::MaxOf,
            ("min_of", 2) => Native::MinOf,
            ("round_to", 2) => Native::RoundTo,
            ("ratio", 2) => Native::Ratio,
            ("days_between", 2) => Native::DaysBetween,
            ("len", 1) => Native::Len,
            ("zh", 1) => Native::Zh,
            ("join", 2) => Native::Join,
            ("year", 1) => Native::Year,
            ("month", 1) => Native::Month,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub enum Node {
    Unit,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
    Var(Slot),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    Call(Native, Vec<Node>),
    Script(usize, Vec<Node>),
    Interp(Vec<Node>),
    If(Box<Node>, Block, Option<Block>),
}

#[derive(Debug, Clone)]
enum Stmt {
    Let(u16, Node),
    /// An expression; `true` when a `;` follows it.
    Expr(Node, bool),
    If(Node, Block, Option<Block>),
    Return(Option<Node>),
}

#[derive(Debug, Clone, Default)]
pub struct Block(Vec<Stmt>);

#[derive(Debug, Clone)]
struct ScriptFn {
    locals: u16,
    body: Block,
}

/// Helper functions and the tables natives need.
pub struct Program {
    /// Helper functions by (name, arity); `None` where the body is outside the subset.
    fns: Vec<Option<ScriptFn>>,
    fn_index: HashMap<(String, usize), usize>,
    /// Names of every helper function (a call of a native by one of these names, with any
    /// number of arguments, is left to Rhai).
    fn_names: std::collections::HashSet<String>,
    /// `zh`: enum value → its Chinese word.
    words: HashMap<String, String>,
    max_string: usize,
    max_array: usize,
    max_depth: usize,
    /// Steps per evaluation; far below Rhai's operation limit.
    max_steps: u32,
}

impl Program {
    /// Parse the helper files of the policy set. `helpers` are the functions Rhai compiled;
    /// when what this parser finds differs from them, helper calls are all left to Rhai.
    pub fn new(
        helper_sources: &[&str],
        helpers: &rhai::AST,
        words: HashMap<String, String>,
        engine: &rhai::Engine,
    ) -> Program {
        let mut p = Program {
            fns: Vec::new(),
            fn_index: HashMap::new(),
            fn_names: helpers
                .iter_functions()
                .map(|f| f.name.to_string())
                .collect(),
            words,
            max_string: engine.max_string_size(),
            max_array: engine.max_array_size(),
            max_depth: engine.max_call_levels().min(64) / 4,
            max_steps: match engine.max_operations() {
                0 => 20_000,
                n => (n / 8).min(20_000) as u32,
            },
        };
        // First the signatures (later files replace earlier definitions, as AST::merge does),
        // then the bodies, which may call any helper.
        let mut defs: Vec<FnSource> = Vec::new();
        let mut ok = true;
        for src in helper_sources {
            match split_fns(src) {
                Some(fs) => defs.extend(fs),
                None => ok = false,
            }
        }
        let mut expected: Vec<(String, usize)> = helpers
            .iter_functions()
            .map(|f| (f.name.to_string(), f.params.len()))
            .collect();
        expected.sort();
        expected.dedup();
        let mut found: Vec<(String, usize)> = defs
            .iter()
            .map(|(n, ps, _)| (n.clone(), ps.len()))
            .collect();
        found.sort();
        found.dedup();
        if !ok || found != expected {
            return p;
        }
        let mut bodies: Vec<(Vec<String>, Vec<Tok>)> = Vec::new();
        for (name, params, body) in defs {
            let key = (name, params.len());
            match p.fn_index.get(&key) {
                Some(&i) => bodies[i] = (params, body),
                None => {
                    p.fn_index.insert(key, bodies.len());
                    bodies.push((params, body));
                }
            }
        }
        let compiled: Vec<Option<ScriptFn>> = bodies
            .iter()
            .map(|(params, toks)| {
                let mut ps = Parser {
                    toks,
                    pos: 0,
                    prog: &p,
                    names: NameScope::Local {
                        vars: params
                            .iter()
                            .enumerate()
                            .map(|(i, n)| (n.clone(), i as u16))
                            .collect(),
                        next: params.len() as u16,
                    },
                };
                let body = ps.block_body()?;
                if ps.pos != toks.len() {
                    return None;
                }
                let NameScope::Local { next, .. } = ps.names else {
                    return None;
                };
                Some(ScriptFn { locals: next, body })
            })
            .collect();
        p.fns = compiled;
        p
    }

    /// Compile a rule expression; `resolve` finds the slot of a variable. `None` when the
    /// expression is outside the subset.
    pub fn compile(&self, src: &str, resolve: &dyn Fn(&str) -> Option<Slot>) -> Option<Node> {
        let toks = tokenize(src)?;
        let mut ps = Parser {
            toks: &toks,
            pos: 0,
            prog: self,
            names: NameScope::Rule(resolve),
        };
        let node = ps.expr()?;
        (ps.pos == toks.len()).then_some(node)
    }
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    /// A back-quoted string: literal text and `${…}` code, alternating.
    Tmpl(Vec<(bool, String)>),
    P(&'static str),
    /// Something outside the subset (the parser rejects it).
    Bad,
}

fn tokenize(src: &str) -> Option<Vec<Tok>> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0usize;
            loop {
                if i + 1 >= b.len() {
                    return None;
                }
                if b[i] == b'/' && b[i + 1] == b'*' {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b[i + 1] == b'/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(src[s..i].to_string()));
            continue;
        }
        if c.is_ascii_digit() {
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let mut float = false;
            if i < b.len() && b[i] == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                float = true;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                // `1e3`, `1_000`, `0x1f`, `1.abs()`: not ours.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Bad);
                continue;
            }
            let text = &src[s..i];
            let t = if float {
                text.parse().ok().map(Tok::Float)
            } else {
                text.parse().ok().map(Tok::Int)
            };
            out.push(t.unwrap_or(Tok::Bad));
            continue;
        }
        if c == b'"' || c == b'\'' {
            let s = i + 1;
            i += 1;
            let mut plain = c == b'"';
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' {
                    plain = false;
                    i += 1;
                } else if b[i] == b'\n' || b[i] == b'\r' {
                    plain = false;
                }
                i += 1;
            }
            if i >= b.len() {
                return None;
            }
            out.push(if plain {
                Tok::Str(src[s..i].to_string())
            } else {
                Tok::Bad
            });
            i += 1;
            continue;
        }
        if c == b'`' {
            i += 1;
            let mut parts = Vec::new();
            let mut lit = String::new();
            let mut s = i;
            let mut bad = false;
            loop {
                if i >= b.len() {
                    return None;
                }
                match b[i] {
                    b'`' => {
                        if b.get(i + 1) == Some(&b'`') {
                            return None;
                        }
                        lit.push_str(&src[s..i]);
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        bad = true;
                        i += 1;
                    }
                    b'$' if b.get(i + 1) == Some(&b'{') => {
                        lit.push_str(&src[s..i]);
                        parts.push((false, std::mem::take(&mut lit)));
                        i += 2;
                        let cs = i;
                        let mut depth = 1;
                        while i < b.len() {
                            match b[i] {
                                b'{' => depth += 1,
                                b'}' => {
                                    depth -= 1;
                                    if depth == 0 {
                                        break;
                                    }
                                }
                                b'"' | b'`' | b'\'' => bad = true,
                                _ => {}
                            }
                            i += 1;
                        }
                        if i >= b.len() {
                            return None;
                        }
                        parts.push((true, src[cs..i].to_string()));
                        i += 1;
                        s = i;
                    }
                    _ => i += 1,
                }
            }
            parts.push((false, lit));
            out.push(if bad { Tok::Bad } else { Tok::Tmpl(parts) });
            continue;
        }
        let two = b.get(i + 1).copied().unwrap_or(0);
        let p2 = match (c, two) {
            (b'=', b'=') => Some("=="),
            (b'!', b'=') => Some("!="),
            (b'<', b'=') => Some("<="),
            (b'>', b'=') => Some(">="),
            (b'&', b'&') => Some("&&"),
            (b'|', b'|') => Some("||"),
            _ => None,
        };
        if let Some(p) = p2 {
            // `===`, `!==`, `<<=` … are not ours.
            out.push(if matches!(b.get(i + 2), Some(b'=')) {
                Tok::Bad
            } else {
                Tok::P(p)
            });
            i += 2;
            continue;
        }
        let p1 = match c {
            b'(' => "(",
            b')' => ")",
            b'{' => "{",
            b'}' => "}",
            b',' => ",",
            b';' => ";",
            b'.' => ".",
            b'<' => "<",
            b'>' => ">",
            b'!' => "!",
            b'+' => "+",
            b'-' => "-",
            b'*' => "*",
            b'/' => "/",
            b'%' => "%",
            b'=' => "=",
            _ => {
                out.push(Tok::Bad);
                i += src[i..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
        };
        // Compound operators (`+=`, `**`, `..`, `<<`, `->`, `=>` …) are not ours.
        let next = b.get(i + 1).copied().unwrap_or(0);
        let compound = match p1 {
            "+" | "-" | "*" | "/" | "%" => next == b'=' || next == c || (c == b'-' && next == b'>'),
            "<" | ">" => next == c,
            "." => next == b'.' || next == b'?',
            "=" => next == b'>',
            _ => false,
        };
        if compound {
            out.push(Tok::Bad);
            i += 2;
            continue;
        }
        out.push(Tok::P(p1));
        i += 1;
    }
    Some(out)
}

/// Split a helper file into functions: (name, parameters, body tokens without the braces).
/// A helper function: name, parameters, body tokens.
type FnSource = (String, Vec<String>, Vec<Tok>);

fn split_fns(src: &str) -> Option<Vec<FnSource>> {
    let toks = tokenize(src)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i] != Tok::Ident("fn".into()) {
            return None;
        }
        let Some(Tok::Ident(name)) = toks.get(i + 1) else {
            return None;
        };
        if toks.get(i + 2) != Some(&Tok::P("(")) {
            return None;
        }
        i += 3;
        let mut params = Vec::new();
        while toks.get(i) != Some(&Tok::P(")")) {
            let Some(Tok::Ident(p)) = toks.get(i) else {
                return None;
            };
            params.push(p.clone());
            i += 1;
            match toks.get(i) {
                Some(Tok::P(",")) => i += 1,
                Some(Tok::P(")")) => {}
                _ => return None,
            }
        }
        i += 1;
        if toks.get(i) != Some(&Tok::P("{")) {
            return None;
        }
        let start = i + 1;
        let mut depth = 1;
        i += 1;
        while i < toks.len() {
            match &toks[i] {
                Tok::P("{") => depth += 1,
                Tok::P("}") => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if i >= toks.len() {
            return None;
        }
        out.push((name.clone(), params, toks[start..i].to_vec()));
        i += 1;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------

enum NameScope<'a> {
    /// A rule expression: variables come from the rule.
    Rule(&'a dyn Fn(&str) -> Option<Slot>),
    /// A helper function body: its parameters and `let`s (innermost last).
    Local { vars: Vec<(String, u16)>, next: u16 },
}

/// Words that are never variable or function names of ours.
const KEYWORDS: &[&str] = &[
    "true",
    "false",
    "if",
    "else",
    "return",
    "let",
    "const",
    "fn",
    "private",
    "while",
    "loop",
    "for",
    "in",
    "do",
    "until",
    "switch",
    "break",
    "continue",
    "throw",
    "try",
    "catch",
    "import",
    "export",
    "as",
    "global",
    "this",
    "is",
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "eval",
    "is_def_var",
    "is_def_fn",
    "is_shared",
    "var",
    "static",
    "shared",
    "sync",
    "spawn",
    "thread",
    "go",
    "async",
    "await",
    "yield",
    "match",
    "case",
    "public",
    "protected",
    "new",
    "use",
    "with",
    "module",
    "package",
    "super",
    "default",
    "void",
    "null",
    "nil",
];

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    prog: &'a Program,
    names: NameScope<'a>,
}

fn prec(t: &Tok) -> Option<(u8, Option<Op>)> {
    Some(match t {
        Tok::P("||") => (30, None),
        Tok::P("&&") => (60, None),
        Tok::P("==") => (90, Some(Op::Eq)),
        Tok::P("!=") => (90, Some(Op::Ne)),
        Tok::P("<") => (130, Some(Op::Lt)),
        Tok::P("<=") => (130, Some(Op::Le)),
        Tok::P(">") => (130, Some(Op::Gt)),
        Tok::P(">=") => (130, Some(Op::Ge)),
        Tok::P("+") => (150, Some(Op::Add)),
        Tok::P("-") => (150, Some(Op::Sub)),
        Tok::P("*") => (180, Some(Op::Mul)),
        Tok::P("/") => (180, Some(Op::Div)),
        Tok::P("%") => (180, Some(Op::Rem)),
        // Rhai's precedence for `in` (between equality and comparison).
        Tok::Ident(w) if w == "in" => (110, Some(Op::In)),
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::P(x)) if *x == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(x)) if x == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Node> {
        self.binary(0)
    }

    fn binary(&mut self, min: u8) -> Option<Node> {
        let mut lhs = self.unary()?;
        while let Some((p, op)) = self.peek().and_then(prec) {
            if p < min {
                break;
            }
            let tok = self.toks[self.pos].clone();
            // `in` calls `contains`, which a helper function could redefine.
            if op == Some(Op::In) && self.prog.fn_names.contains("contains") {
                return None;
            }
            self.pos += 1;
            let rhs = self.binary(p + 1)?;
            lhs = match (op, tok) {
                (Some(op), _) => Node::Bin(op, Box::new(lhs), Box::new(rhs)),
                (None, Tok::P("&&")) => Node::And(Box::new(lhs), Box::new(rhs)),
                (None, _) => Node::Or(Box::new(lhs), Box::new(rhs)),
            };
        }
        Some(lhs)
    }

    fn unary(&mut self) -> Option<Node> {
        if self.eat("!") {
            return Some(Node::Not(Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return Some(match self.unary()? {
                // Rhai folds a minus before a literal into the literal.
                Node::Int(i) => Node::Int(i.checked_neg()?),
                Node::Float(f) => Node::Float(-f),
                other => Node::Neg(Box::new(other)),
            });
        }
        if matches!(self.peek(), Some(Tok::P("+"))) {
            return None;
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Option<Node> {
        let mut e = self.primary()?;
        while self.eat(".") {
            let Some(Tok::Ident(name)) = self.peek().cloned() else {
                return None;
            };
            self.pos += 1;
            if !self.eat("(") {
                // Property access (a getter) is not ours.
                return None;
            }
            // A helper function called as a method would see its object as `this`.
            if self.prog.fn_names.contains(&name) {
                return None;
            }
            let mut args = vec![e];
            args.extend(self.args()?);
            e = self.call(&name, args)?;
        }
        Some(e)
    }

    /// Arguments after `(`, through `)`.
    fn args(&mut self) -> Option<Vec<Node>> {
        let mut args = Vec::new();
        if self.eat(")") {
            return Some(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(")") {
                return Some(args);
            }
            if !self.eat(",") {
                return None;
            }
        }
    }

    fn call(&self, name: &str, args: Vec<Node>) -> Option<Node> {
        if self.prog.fn_names.contains(name) {
            // Helper functions come before built-ins in Rhai.
            let i = *self.prog.fn_index.get(&(name.to_string(), args.len()))?;
            self.prog.fns.get(i)?.as_ref()?;
            return Some(Node::Script(i, args));
        }
        Some(Node::Call(Native::of(name, args.len())?, args))
    }

    fn primary(&mut self) -> Option<Node> {
        let t = self.peek()?.clone();
        self.pos += 1;
        match t {
            Tok::Int(i) => Some(Node::Int(i)),
            Tok::Float(f) => Some(Node::Float(f)),
            Tok::Str(s) => Some(Node::Str(s.into())),
            Tok::Tmpl(parts) => {
                let mut nodes = Vec::new();
                for (code, text) in parts {
                    if code {
                        let toks = tokenize(&text)?;
                        let mut sub = Parser {
                            toks: &toks,
                            pos: 0,
                            prog: self.prog,
                            names: match &self.names {
                                NameScope::Rule(r) => NameScope::Rule(*r),
                                NameScope::Local { vars, next } => NameScope::Local {
                                    vars: vars.clone(),
                                    next: *next,
                                },
                            },
                        };
                        let n = sub.expr()?;
                        if sub.pos != toks.len() {
                            return None;
                        }
                        nodes.push(n);
                    } else if !text.is_empty() {
                        nodes.push(Node::Str(text.into()));
                    }
                }
                Some(Node::Interp(nodes))
            }
            Tok::P("(") => {
                if self.eat(")") {
                    return Some(Node::Unit);
                }
                let e = self.expr()?;
                self.eat(")").then_some(e)
            }
            Tok::Ident(w) if w == "true" => Some(Node::Bool(true)),
            Tok::Ident(w) if w == "false" => Some(Node::Bool(false)),
            Tok::Ident(w) if w == "if" => {
                let (c, t, e) = self.if_rest()?;
                Some(Node::If(Box::new(c), t, e))
            }
            Tok::Ident(name) => {
                if KEYWORDS.contains(&name.as_str()) {
                    return None;
                }
                if self.eat("(") {
                    let args = self.args()?;
                    return self.call(&name, args);
                }
                self.var(&name).map(Node::Var)
            }
            _ => None,
        }
    }

    fn var(&self, name: &str) -> Option<Slot> {
        match &self.names {
            NameScope::Rule(r) => r(name),
            NameScope::Local { vars, .. } => vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, i)| Slot::Local(*i)),
        }
    }

    /// After `if`: condition, then-block, optional else (a block or another `if`).
    fn if_rest(&mut self) -> Option<(Node, Block, Option<Block>)> {
        let c = self.expr()?;
        let t = self.block()?;
        let e = if self.eat_word("else") {
            if self.eat_word("if") {
                let (c2, t2, e2) = self.if_rest()?;
                Some(Block(vec![Stmt::If(c2, t2, e2)]))
            } else {
                Some(self.block()?)
            }
        } else {
            None
        };
        Some((c, t, e))
    }

    /// `{ statements }` with its own scope for `let`.
    fn block(&mut self) -> Option<Block> {
        if !self.eat("{") {
            return None;
        }
        let saved = match &self.names {
            NameScope::Local { vars, .. } => vars.len(),
            // Blocks (in `if` expressions) may not declare variables in rule expressions.
            NameScope::Rule(_) => 0,
        };
        let b = self.stmts(true)?;
        if let NameScope::Local { vars, .. } = &mut self.names {
            vars.truncate(saved);
        }
        self.eat("}").then_some(b)
    }

    /// A function body: statements to the end of the tokens.
    fn block_body(&mut self) -> Option<Block> {
        self.stmts(false)
    }

    fn stmts(&mut self, until_brace: bool) -> Option<Block> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None if !until_brace => return Some(Block(out)),
                None => return None,
                Some(Tok::P("}")) if until_brace => return Some(Block(out)),
                _ => {}
            }
            if self.eat_word("let") {
                let Some(Tok::Ident(name)) = self.peek().cloned() else {
                    return None;
                };
                if KEYWORDS.contains(&name.as_str()) {
                    return None;
                }
                self.pos += 1;
                if !self.eat("=") {
                    return None;
                }
                let e = self.expr()?;
                if !self.eat(";") {
                    return None;
                }
                let NameScope::Local { vars, next } = &mut self.names else {
                    return None;
                };
                let slot = *next;
                *next += 1;
                vars.push((name, slot));
                out.push(Stmt::Let(slot, e));
            } else if self.eat_word("return") {
                if self.eat(";") {
                    out.push(Stmt::Return(None));
                } else {
                    let e = self.expr()?;
                    // `return x` may end a block without `;`.
                    if !self.eat(";") && !matches!(self.peek(), Some(Tok::P("}")) | None) {
                        return None;
                    }
                    out.push(Stmt::Return(Some(e)));
                }
            } else if self.eat_word("if") {
                let (c, t, e) = self.if_rest()?;
                if matches!(self.peek(), Some(Tok::P(";"))) {
                    return None;
                }
                out.push(Stmt::If(c, t, e));
            } else {
                let e = self.expr()?;
                let semi = self.eat(";");
                if !semi && !matches!(self.peek(), Some(Tok::P("}")) | None) {
                    return None;
                }
                out.push(Stmt::Expr(e, semi));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// The variables of one rule evaluation.
pub struct Frame<'f, 'r> {
    pub base: &'f [V<'r>],
    pub vars: &'f [V<'r>],
    pub lets: &'f [V<'r>],
}

/// Per-thread evaluation state.
#[derive(Default)]
pub struct Machine<'r> {
    locals: Vec<V<'r>>,
    steps: u32,
    depth: usize,
}

enum Flow<'r> {
    /// The block ended; its value when known.
    Done(Option<V<'r>>),
    Return(V<'r>),
}

impl<'r> Machine<'r> {
    /// Evaluate a compiled rule expression.
    pub fn eval(&mut self, prog: &'r Program, n: &'r Node, f: &Frame<'_, 'r>) -> R<V<'r>> {
        self.steps = 0;
        self.depth = 0;
        self.locals.clear();
        self.node(prog, n, f, 0)
    }

    fn node(&mut self, prog: &'r Program, n: &'r Node, f: &Frame<'_, 'r>, lb: usize) -> R<V<'r>> {
        self.steps += 1;
        if self.steps > prog.max_steps {
            return Err(Bail);
        }
        Ok(match n {
            Node::Unit => V::Unit,
            Node::Bool(b) => V::Bool(*b),
            Node::Int(i) => V::Int(*i),
            Node::Float(x) => V::Float(*x),
            Node::Str(s) => V::Str(s),
            Node::Var(slot) => match slot {
                Slot::Base(i) => f.base.get(*i as usize).ok_or(Bail)?.clone(),
                Slot::Var(i) => f.vars.get(*i as usize).ok_or(Bail)?.clone(),
                Slot::Let(i) => f.lets.get(*i as usize).ok_or(Bail)?.clone(),
                Slot::Local(i) => self.locals.get(lb + *i as usize).ok_or(Bail)?.clone(),
            },
            Node::Not(x) => match self.node(prog, x, f, lb)? {
                V::Bool(b) => V::Bool(!b),
                _ => return Err(Bail),
            },
            Node::Neg(x) => match self.node(prog, x, f, lb)? {
                V::Int(i) => V::Int(i.checked_neg().ok_or(Bail)?),
                V::Float(x) => V::Float(-x),
                _ => return Err(Bail),
            },
            Node::And(a, b) => {
                let V::Bool(x) = self.node(prog, a, f, lb)? else {
                    return Err(Bail);
                };
                if !x {
                    return Ok(V::Bool(false));
                }
                let V::Bool(y) = self.node(prog, b, f, lb)? else {
                    return Err(Bail);
                };
                V::Bool(y)
            }
            Node::Or(a, b) => {
                let V::Bool(x) = self.node(prog, a, f, lb)? else {
                    return Err(Bail);
                };
                if x {
                    return Ok(V::Bool(true));
                }
                let V::Bool(y) = self.node(prog, b, f, lb)? else {
                    return Err(Bail);
                };
                V::Bool(y)
            }
            Node::Bin(op, a, b) => {
                let x = self.node(prog, a, f, lb)?;
                let y = self.node(prog, b, f, lb)?;
                binary(prog, *op, x, y)?
            }
            Node::Call(nat, args) => {
                let mut vals: [V<'r>; 2] = [V::Unit, V::Unit];
                for (i, a) in args.iter().enumerate() {
                    vals[i] = self.node(prog, a, f, lb)?;
                }
                let [x, y] = vals;
                native(prog, *nat, x, y)?
            }
            Node::Script(i, args) => {
                let func = prog.fns[*i].as_ref().ok_or(Bail)?;
                if self.depth >= prog.max_depth {
                    return Err(Bail);
                }
                let new_lb = self.locals.len();
                for a in args {
                    let v = self.node(prog, a, f, lb)?;
                    self.locals.push(v);
                }
                self.locals.resize(new_lb + func.locals as usize, V::Unit);
                self.depth += 1;
                let r = self.block(prog, &func.body, f, new_lb);
                self.depth -= 1;
                self.locals.truncate(new_lb);
                match r? {
                    Flow::Return(v) => v,
                    Flow::Done(Some(v)) => v,
                    Flow::Done(None) => return Err(Bail),
                }
            }
            Node::Interp(parts) => {
                let mut s = String::new();
                for p in parts {
                    let v = self.node(prog, p, f, lb)?;
                    to_string_into(&v, &mut s)?;
                    if s.len() > prog.max_string {
                        return Err(Bail);
                    }
                }
                V::Own(s.into())
            }
            Node::If(c, t, e) => match self.if_(prog, c, t, e.as_ref(), f, lb)? {
                Flow::Done(Some(v)) => v,
                // A `return` inside an `if` expression, or an unknown value.
                _ => return Err(Bail),
            },
        })
    }

    fn if_(
        &mut self,
        prog: &'r Program,
        c: &'r Node,
        t: &'r Block,
        e: Option<&'r Block>,
        f: &Frame<'_, 'r>,
        lb: usize,
    ) -> R<Flow<'r>> {
        let V::Bool(cond) = self.node(prog, c, f, lb)? else {
            return Err(Bail);
        };
        if cond {
            self.block(prog, t, f, lb)
        } else if let Some(e) = e {
            self.block(prog, e, f, lb)
        } else {
            Ok(Flow::Done(Some(V::Unit)))
        }
    }

    fn block(
        &mut self,
        prog: &'r Program,
        b: &'r Block,
        f: &Frame<'_, 'r>,
        lb: usize,
    ) -> R<Flow<'r>> {
        let mut last = None;
        for s in &b.0 {
            self.steps += 1;
            last = match s {
                Stmt::Let(slot, e) => {
                    let v = self.node(prog, e, f, lb)?;
                    *self.locals.get_mut(lb + *slot as usize).ok_or(Bail)? = v;
                    None
                }
                Stmt::Expr(e, semi) => {
                    let v = self.node(prog, e, f, lb)?;
                    (!semi).then_some(v)
                }
                Stmt::If(c, t, e) => match self.if_(prog, c, t, e.as_ref(), f, lb)? {
                    Flow::Return(v) => return Ok(Flow::Return(v)),
                    Flow::Done(v) => v,
                },
                Stmt::Return(e) => {
                    let v = match e {
                        Some(e) => self.node(prog, e, f, lb)?,
                        None => V::Unit,
                    };
                    return Ok(Flow::Return(v));
                }
            };
        }
        Ok(Flow::Done(last))
    }
}

/// What Rhai's `to_string` gives for a value inside an interpolated string.
fn to_string_into(v: &V, s: &mut String) -> R<()> {
    match v {
        V::Unit => {}
        V::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        V::Int(i) => {
            let _ = write!(s, "{i}");
        }
        V::Float(x) => rhai_float(*x, s),
        other => {
            other.with_text(|t| s.push_str(t)).ok_or(Bail)?;
        }
    }
    Ok(())
}

/// A float as Rhai prints it (`FloatWrapper`'s `Display`).
pub fn rhai_float(x: f64, s: &mut String) {
    let abs = x.abs();
    let max = f64::from(10_000_000_000_000.0_f32);
    let min = f64::from(0.000_000_000_000_1_f32);
    if abs == 0.0 {
        s.push_str("0.0");
    } else if abs > max || abs < min {
        let _ = write!(s, "{x:e}");
    } else {
        let _ = write!(s, "{x}");
        if abs.fract() == 0.0 {
            s.push_str(".0");
        }
    }
}

fn as_f64(v: &V) -> f64 {
    match v {
        V::Int(i) => *i as f64,
        V::Float(x) => *x,
        _ => 0.0,
    }
}

/// Rhai's built-in binary operators (`get_builtin_binary_op_fn`, checked build).
fn binary<'r>(prog: &Program, op: Op, x: V<'r>, y: V<'r>) -> R<V<'r>> {
    use std::cmp::Ordering;
    if op == Op::In {
        return contains_text(&x, &y);
    }
    let (tx, ty) = (x.ty(), y.ty());
    let cmp = |o: Ordering| -> R<V<'r>> {
        Ok(V::Bool(match op {
            Op::Eq => o == Ordering::Equal,
            Op::Ne => o != Ordering::Equal,
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Gt => o == Ordering::Greater,
            Op::Ge => o != Ordering::Less,
            _ => return Err(Bail),
        }))
    };
    match (tx, ty) {
        (Ty::Int, Ty::Int) => {
            let (V::Int(a), V::Int(b)) = (&x, &y) else {
                return Err(Bail);
            };
            let (a, b) = (*a, *b);
            match op {
                Op::Add => Ok(V::Int(a.checked_add(b).ok_or(Bail)?)),
                Op::Sub => Ok(V::Int(a.checked_sub(b).ok_or(Bail)?)),
                Op::Mul => Ok(V::Int(a.checked_mul(b).ok_or(Bail)?)),
                Op::Div => Ok(V::Int(a.checked_div(b).ok_or(Bail)?)),
                Op::Rem => Ok(V::Int(a.checked_rem(b).ok_or(Bail)?)),
                _ => cmp(a.cmp(&b)),
            }
        }
        (Ty::Bool, Ty::Bool) => {
            let (V::Bool(a), V::Bool(b)) = (&x, &y) else {
                return Err(Bail);
            };
            cmp(a.cmp(b))
        }
        (Ty::Str, Ty::Str) => {
            if op == Op::Add {
                let mut s = String::new();
                x.with_text(|t| s.push_str(t));
                y.with_text(|t| s.push_str(t));
                if s.len() > prog.max_string {
                    return Err(Bail);
                }
                return Ok(V::Own(s.into()));
            }
            if op == Op::Sub || op == Op::Mul || op == Op::Div || op == Op::Rem {
                return Err(Bail);
            }
            let o = match (&x, &y) {
                (V::Date(a), V::Date(b))
                    if (0..=9999).contains(&a.year()) && (0..=9999).contains(&b.year()) =>
                {
                    a.cmp(b)
                }
                _ => x
                    .with_text(|a| y.with_text(|b| a.cmp(b)))
                    .flatten()
                    .ok_or(Bail)?,
            };
            cmp(o)
        }
        (Ty::Unit, Ty::Unit) => match op {
            Op::Eq => Ok(V::Bool(true)),
            Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => Ok(V::Bool(false)),
            _ => Err(Bail),
        },
        (Ty::Float | Ty::Int, Ty::Float | Ty::Int) => {
            let (a, b) = (as_f64(&x), as_f64(&y));
            let eps = f64::EPSILON;
            let max = if a * b == 0.0 {
                1.0
            } else {
                a.abs().max(b.abs())
            };
            Ok(match op {
                Op::Add => V::Float(a + b),
                Op::Sub => V::Float(a - b),
                Op::Mul => V::Float(a * b),
                Op::Div => V::Float(a / b),
                Op::Rem => V::Float(a % b),
                Op::Eq => V::Bool(max == 0.0 || (a - b).abs() / max <= eps),
                Op::Ne => V::Bool(max != 0.0 && (a - b).abs() / max > eps),
                Op::Gt => V::Bool(max != 0.0 && (a - b) / max > eps),
                Op::Ge => V::Bool(max == 0.0 || (a - b) / max > -eps),
                Op::Lt => V::Bool(max != 0.0 && (b - a) / max > eps),
                Op::Le => V::Bool(max == 0.0 || (b - a) / max > -eps),
                Op::In => return Err(Bail),
            })
        }
        (Ty::Unit, Ty::Str) | (Ty::Str, Ty::Unit) => match op {
            Op::Add => Ok(if tx == Ty::Str { x } else { y }),
            Op::Eq | Op::Lt | Op::Le | Op::Gt | Op::Ge => Ok(V::Bool(false)),
            Op::Ne => Ok(V::Bool(true)),
            _ => Err(Bail),
        },
        (a, b) if a != b && a != Ty::Other && b != Ty::Other => match op {
            // Different types, at least one not a number (both numbers is handled above).
            Op::Eq | Op::Lt | Op::Le | Op::Gt | Op::Ge => Ok(V::Bool(false)),
            Op::Ne => Ok(V::Bool(true)),
            _ => Err(Bail),
        },
        _ => Err(Bail),
    }
}

/// `x in list` for a text `x` and a list of strings (a list parameter), as Rhai's array
/// `contains` gives it; anything else is left to Rhai.
fn contains_text<'r>(x: &V<'r>, y: &V<'r>) -> R<V<'r>> {
    let V::Dyn(d) = y else { return Err(Bail) };
    let arr = d.read_lock::<rhai::Array>().ok_or(Bail)?;
    x.with_text(|t| {
        let mut found = false;
        for e in arr.iter() {
            found |= e.read_lock::<ImmutableString>()?.as_str() == t;
        }
        Some(V::Bool(found))
    })
    .flatten()
    .ok_or(Bail)
}

/// The text of a string value as Rhai's `parse_date` in `script` reads it.
fn date_arg(v: &V) -> R<NaiveDate> {
    match v {
        V::Date(d) if (0..=9999).contains(&d.year()) => Ok(*d),
        V::DateTime(d) if (0..=9999).contains(&d.year()) => Ok(d.date()),
        other => other
            .with_text(crate::script::parse_date_text)
            .flatten()
            .ok_or(Bail),
    }
}

/// The functions `script::engine` registers (and the Rhai packages' `len`, `floor`,
/// `to_int`, `to_float`), for the argument types they accept.
fn native<'r>(prog: &'r Program, f: Native, x: V<'r>, y: V<'r>) -> R<V<'r>> {
    Ok(match f {
        Native::Present => V::Bool(!x.is_unit()),
        Native::Missing => V::Bool(x.is_unit()),
        Native::ToFloat => match x {
            V::Int(i) => V::Float(i as f64),
            V::Float(v) => V::Float(v),
            _ => return Err(Bail),
        },
        Native::ToInt => match x {
            V::Int(i) => V::Int(i),
            V::Float(v) => {
                if v > i64::MAX as f64 || v < i64::MIN as f64 || v.is_nan() {
                    return Err(Bail);
                }
                V::Int(v.trunc() as i64)
            }
            _ => return Err(Bail),
        },
        Native::Floor => match x {
            V::Float(v) => V::Float(v.floor()),
            _ => return Err(Bail),
        },
        Native::MaxOf | Native::MinOf => match (x, y) {
            (V::Float(a), V::Float(b)) => V::Float(if f == Native::MaxOf {
                a.max(b)
            } else {
                a.min(b)
            }),
            _ => return Err(Bail),
        },
        Native::RoundTo => match (x, y) {
            (V::Float(v), V::Int(places)) => {
                let m = 10f64.powi(places.clamp(0, 9) as i32);
                V::Float((v * m).round() / m)
            }
            (V::Int(v), V::Int(_)) => V::Float(v as f64),
            _ => return Err(Bail),
        },
        Native::Ratio => match (x, y) {
            (V::Float(a), V::Float(b)) => V::Float(if b == 0.0 { 0.0 } else { a / b }),
            (V::Int(a), V::Int(b)) => V::Float(if b == 0 { 0.0 } else { a as f64 / b as f64 }),
            _ => return Err(Bail),
        },
        Native::DaysBetween => {
            if x.ty() != Ty::Str || y.ty() != Ty::Str {
                return Err(Bail);
            }
            let (a, b) = (date_arg(&x)?, date_arg(&y)?);
            V::Int((b - a).num_days())
        }
        Native::Year | Native::Month => {
            if x.ty() != Ty::Str {
                return Err(Bail);
            }
            let d = date_arg(&x)?;
            V::Int(if f == Native::Year {
                d.year() as i64
            } else {
                d.month() as i64
            })
        }
        Native::Len => match x {
            V::Days(d) if d.len() <= prog.max_array => V::Int(d.len() as i64),
            V::Str(_) | V::Own(_) | V::Date(_) | V::DateTime(_) => {
                V::Int(x.with_text(|t| t.chars().count() as i64).ok_or(Bail)?)
            }
            _ => return Err(Bail),
        },
        Native::Zh => {
            let word = x
                .with_text(|t| prog.words.get(t).map(|w| w.as_str()))
                .flatten();
            match word {
                Some(w) => V::Str(w),
                None => x,
            }
        }
        Native::Join => match (&x, &y) {
            (V::Days(days), sep) if sep.ty() == Ty::Str && days.len() <= prog.max_array => {
                let mut s = String::new();
                sep.with_text(|sep| {
                    for (i, d) in days.iter().enumerate() {
                        if i > 0 {
                            s.push_str(sep);
                        }
                        s.push_str(DateText::of(*d).as_str());
                    }
                });
                if s.len() > prog.max_string {
                    return Err(Bail);
                }
                V::Own(s.into())
            }
            _ => return Err(Bail),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(helpers: &str) -> (&'static Program, rhai::Engine, rhai::AST) {
        let mut engine = crate::script::engine(&crate::script::Limits::default());
        let ast = engine.compile(helpers).unwrap();
        let mut words = HashMap::new();
        words.insert("2020-03-01".to_string(), "三月一日".to_string());
        // As `policy::validate` registers it.
        let w = words.clone();
        engine.register_fn("zh", move |v: Dynamic| -> Dynamic {
            match v.clone().into_immutable_string() {
                Ok(s) => w.get(s.as_str()).map_or(v, |w| {
                    Dynamic::from(rhai::ImmutableString::from(w.as_str()))
                }),
                Err(_) => v,
            }
        });
        let p = Program::new(&[helpers], &ast, words, &engine);
        (Box::leak(Box::new(p)), engine, ast)
    }

    /// Evaluate `src` natively and with Rhai, with `x`, `y`, `s`, `d`, `u` as variables.
    fn both(
        p: &'static Program,
        engine: &rhai::Engine,
        helpers: &rhai::AST,
        src: &str,
    ) -> (Option<String>, String) {
        let names = ["x", "y", "s", "d", "u", "days", "l"];
        let resolve = |n: &str| {
            names
                .iter()
                .position(|m| *m == n)
                .map(|i| Slot::Var(i as u16))
        };
        let days: &'static [NaiveDate] = Box::leak(Box::new([
            NaiveDate::from_ymd_opt(2020, 2, 10).unwrap(),
            NaiveDate::from_ymd_opt(2020, 2, 11).unwrap(),
        ]));
        let list = || {
            Dynamic::from_array(vec![
                Dynamic::from(ImmutableString::from("in_service")),
                Dynamic::from(ImmutableString::from("2020-02-07")),
            ])
        };
        let l: &'static Dynamic = Box::leak(Box::new(list()));
        let vars = [
            V::Int(7),
            V::Float(2.5),
            V::Str("2020-03-01"),
            V::Date(NaiveDate::from_ymd_opt(2020, 2, 7).unwrap()),
            V::Unit,
            V::Days(days),
            V::Dyn(l),
        ];
        let native = p.compile(src, &resolve).and_then(|n| {
            let mut m = Machine::default();
            let f = Frame {
                base: &[],
                vars: &vars,
                lets: &[],
            };
            let n: &'static Node = Box::leak(Box::new(n));
            m.eval(p, n, &f).ok().map(|v| debug_dynamic(&v))
        });
        let mut scope = rhai::Scope::new();
        scope.push("x", 7_i64);
        scope.push("y", 2.5_f64);
        scope.push("s", ImmutableString::from("2020-03-01"));
        scope.push("d", ImmutableString::from("2020-02-07"));
        scope.push_dynamic("u", Dynamic::UNIT);
        scope.push_dynamic(
            "days",
            Dynamic::from_array(vec![
                Dynamic::from(ImmutableString::from("2020-02-10")),
                Dynamic::from(ImmutableString::from("2020-02-11")),
            ]),
        );
        scope.push_dynamic("l", list());
        let ast = helpers.merge(&engine.compile_with_scope(&scope, src).unwrap());
        crate::script::start_clock();
        let r = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast);
        let rhai = match r {
            Ok(v) => format!("{}:{v}", v.type_name()),
            Err(e) => format!("error: {e}"),
        };
        (native, rhai)
    }

    fn debug_dynamic(v: &V) -> String {
        let d: Dynamic = match v {
            V::Unit => Dynamic::UNIT,
            V::Bool(b) => (*b).into(),
            V::Int(i) => (*i).into(),
            V::Float(x) => (*x).into(),
            V::Days(_) | V::Rows(..) | V::Dyn(_) => return "array".into(),
            other => Dynamic::from(ImmutableString::from(
                other.with_text(|t| t.to_string()).unwrap(),
            )),
        };
        format!("{}:{d}", d.type_name())
    }

    const HELPERS: &str = r#"
// comment
fn hours_text(h) {
    if h == () { return "0 小时"; }
    let r = round_to(h, 2);
    if r == r.floor() { `${r.to_int()} 小时` } else { `${r} 小时` }
}
/* block /* nested */ comment */
fn days_after(from, to) {
    if from == () || to == () { return (); }
    days_between(from, to)
}
fn share(part, whole) {
    if whole == 0 { return 0.0; }
    to_float(part) / to_float(whole)
}
fn date_list(days) {
    if days == () { return ""; }
    join(days, "、")
}
fn loopy(n) { let i = 0; while i < n { i += 1; } i }
"#;

    #[test]
    fn native_results_equal_rhai() {
        let (p, engine, ast) = program(HELPERS);
        assert!(p.fns.iter().filter(|f| f.is_some()).count() == 4);
        let cases = [
            "x > 3",
            "x >= 7 && y < 3",
            "x == 7.0",
            "y == 2.5000000000000001",
            "x / 2",
            "x % 4",
            "y * 2 - x",
            "-x + 1",
            "!(x > 3) || u == ()",
            "present(u) || missing(u)",
            "s > d",
            "d <= \"2020-02-07\"",
            "d == ()",
            "u != d",
            "u < 3",
            "s == 3",
            "days == ()",
            "days.len()",
            "s.len()",
            "days_between(d, s)",
            "days_after(d, s)",
            "days_after(u, s)",
            "share(x, 3)",
            "share(x, 0)",
            "share(y, 2)",
            "hours_text(y)",
            "hours_text(20.0)",
            "hours_text(x)",
            "hours_text(u)",
            "hours_text(13.3333)",
            "date_list(days)",
            "date_list(u)",
            "max_of(to_float(x) - y, 0.0)",
            "round_to(y, 0)",
            "ratio(x, 2)",
            "`a${x}b${y}c${u}d${s}`",
            "if x > 3 { \"big\" } else { \"small\" }",
            "if x > 30 { 1 }",
            "year(d) + month(s)",
            "d + s",
            "s + u",
            "x.to_float() / 0.0",
            "to_int(y * 3.0)",
            "zh(s)",
            "1.5e10",
            "x + 9223372036854775807",
            "x / 0",
            "loopy(3)",
            "hours_text(1234567890123456.0)",
            "`${0.0000000000000001}`",
            "s in l",
            "d in l",
            "\"in_service\" in l",
            "\"in_service\" in l && x > 3",
            "x > 3 && \"retired\" in l",
            "u in l",
            "x in l",
            "s in days",
        ];
        for src in cases {
            let (native, rhai) = both(p, &engine, &ast, src);
            if let Some(n) = native {
                assert_eq!(n, rhai, "{src}");
            } else {
                eprintln!("{src}: left to Rhai ({rhai})");
            }
        }
        // These must run natively.
        for src in [
            "hours_text(y)",
            "date_list(days)",
            "days_after(d, s)",
            "x > 3 && present(s)",
            "d in l",
            "\"in_service\" in l && x > 3",
        ] {
            assert!(both(p, &engine, &ast, src).0.is_some(), "{src}");
        }
        // These must not.
        for src in [
            "x / 0",
            "x + 9223372036854775807",
            "loopy(3)",
            "1.5e10",
            "s - d",
        ] {
            assert!(both(p, &engine, &ast, src).0.is_none(), "{src}");
        }
    }

    #[test]
    fn float_text_matches_rhai() {
        for x in [
            0.0,
            -0.0,
            1.0,
            6.5,
            1.0 / 3.0,
            1e13,
            9999999827968.0,
            1e14,
            1e-13,
            1e-14,
            -2.5,
        ] {
            let mut s = String::new();
            rhai_float(x, &mut s);
            assert_eq!(s, Dynamic::from(x).to_string(), "{x}");
        }
    }
}
