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

use crate::dates::{DateText, DateTimeText};
use crate::script::builtin;
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use rhai::{Dynamic, ImmutableString};
use std::collections::HashMap;

mod lower;

#[cfg(test)]
mod differential;
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

/// A lowered expression.
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
    /// A statement block in an expression (`if … { } else { }`): its last statement's value.
    Block(Block),
}

/// A lowered statement.
#[derive(Debug, Clone)]
enum Stmt {
    Let(u16, Node),
    Expr(Node),
    /// Condition, then-block, else-block (empty when there is no `else`).
    If(Node, Block, Block),
    Return(Option<Node>),
}

/// Statements with their own scope; the value is the last statement's (`()` when empty).
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
    /// Lower the helper functions Rhai compiled (`helpers`) for native calls. A function whose
    /// body is outside the subset stays `None` (calls of it are left to Rhai).
    pub fn new(
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
        // First the signatures, then the bodies, which may call any helper.
        let defs: Vec<_> = helpers.iter_fn_def().collect();
        for (i, f) in defs.iter().enumerate() {
            p.fn_index.insert((f.name.to_string(), f.params.len()), i);
        }
        p.fns = defs
            .iter()
            .map(|f| lower::function(&p, helpers, f.as_ref()))
            .collect();
        p
    }

    /// Compile a rule expression (its Rhai AST; helper functions in it are ignored);
    /// `resolve` finds the slot of a variable. `None` when the expression is outside the
    /// subset.
    pub fn compile(&self, ast: &rhai::AST, resolve: &dyn Fn(&str) -> Option<Slot>) -> Option<Node> {
        lower::expression(self, ast, resolve)
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
    /// The block ended with this value.
    Done(V<'r>),
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
                    Flow::Return(v) | Flow::Done(v) => v,
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
            Node::Block(b) => match self.block(prog, b, f, lb)? {
                Flow::Done(v) => v,
                // A `return` inside an `if` expression.
                Flow::Return(_) => return Err(Bail),
            },
        })
    }

    fn block(
        &mut self,
        prog: &'r Program,
        b: &'r Block,
        f: &Frame<'_, 'r>,
        lb: usize,
    ) -> R<Flow<'r>> {
        let mut last = V::Unit;
        for s in &b.0 {
            self.steps += 1;
            last = match s {
                Stmt::Let(slot, e) => {
                    let v = self.node(prog, e, f, lb)?;
                    *self.locals.get_mut(lb + *slot as usize).ok_or(Bail)? = v;
                    V::Unit
                }
                Stmt::Expr(e) => self.node(prog, e, f, lb)?,
                Stmt::If(c, t, e) => {
                    let V::Bool(cond) = self.node(prog, c, f, lb)? else {
                        return Err(Bail);
                    };
                    match self.block(prog, if cond { t } else { e }, f, lb)? {
                        Flow::Done(v) => v,
                        ret => return Ok(ret),
                    }
                }
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
            .with_text(crate::dates::parse_date_text)
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
                builtin::max_of(a, b)
            } else {
                builtin::min_of(a, b)
            }),
            _ => return Err(Bail),
        },
        Native::RoundTo => match (x, y) {
            (V::Float(v), V::Int(places)) => V::Float(builtin::round_to(v, places)),
            (V::Int(v), V::Int(_)) => V::Float(v as f64),
            _ => return Err(Bail),
        },
        Native::Ratio => match (x, y) {
            (V::Float(a), V::Float(b)) => V::Float(builtin::ratio(a, b)),
            (V::Int(a), V::Int(b)) => V::Float(builtin::ratio_int(a, b)),
            _ => return Err(Bail),
        },
        Native::DaysBetween => {
            if x.ty() != Ty::Str || y.ty() != Ty::Str {
                return Err(Bail);
            }
            V::Int(builtin::days_between(date_arg(&x)?, date_arg(&y)?))
        }
        Native::Year | Native::Month => {
            if x.ty() != Ty::Str {
                return Err(Bail);
            }
            let d = date_arg(&x)?;
            V::Int(if f == Native::Year {
                builtin::year(d)
            } else {
                builtin::month(d)
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
        let p = Program::new(&ast, words, &engine);
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
        let native = p.compile(&ast, &resolve).and_then(|n| {
            let mut m = Machine::default();
            let f = Frame {
                base: &[],
                vars: &vars,
                lets: &[],
            };
            let n: &'static Node = Box::leak(Box::new(n));
            m.eval(p, n, &f).ok().map(|v| debug_dynamic(&v))
        });
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
        for src in ["x / 0", "x + 9223372036854775807", "loopy(3)", "s - d"] {
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
