//! Lowering Rhai's own AST (its `internals`) to the native evaluator's tree, so that names,
//! operator precedence and literals come from Rhai's parser: there is no second parser.
//!
//! Anything outside the subset the evaluator runs (loops, indexing, arrays, maps, closures,
//! `throw`, module paths, property access, helper functions called as methods) lowers to
//! `None`, and Rhai evaluates that expression.

use super::{Block, Native, Node, Op, Program, ScriptFn, Slot, Stmt};
use rhai::{ASTFlags, Expr, FnCallExpr, Stmt as RStmt};

/// Where names resolve.
enum Names<'a> {
    /// A rule expression: variables come from the rule (no `let` of its own).
    Rule(&'a dyn Fn(&str) -> Option<Slot>),
    /// A helper function body: its parameters and `let`s (innermost last), and the next
    /// free local slot.
    Local { vars: Vec<(String, u16)>, next: u16 },
}

struct Lower<'a> {
    prog: &'a Program,
    names: Names<'a>,
}

/// A rule expression: one statement (an expression, a call or an `if`).
pub(super) fn expression(
    prog: &Program,
    ast: &rhai::AST,
    resolve: &dyn Fn(&str) -> Option<Slot>,
) -> Option<Node> {
    let mut l = Lower {
        prog,
        names: Names::Rule(resolve),
    };
    match ast.statements() {
        [s] => match l.stmt(s)? {
            Stmt::Expr(n) => Some(n),
            s @ Stmt::If(..) => Some(Node::Block(Block(vec![s]))),
            _ => None,
        },
        _ => None,
    }
}

/// A helper function, when its body is inside the subset. `helpers` holds it.
pub(super) fn function(
    prog: &Program,
    helpers: &rhai::AST,
    f: &rhai::ScriptFuncDef,
) -> Option<ScriptFn> {
    if f.this_type.is_some() {
        return None;
    }
    let mut l = Lower {
        prog,
        names: Names::Local {
            vars: f
                .params
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), i as u16))
                .collect(),
            next: u16::try_from(f.params.len()).ok()?,
        },
    };
    // Rhai does not name the type of a function's body; walking an AST that holds just this
    // function visits its body's statements in order (a path of one node each).
    let (name, arity) = (f.name.as_str(), f.params.len());
    let mut only = helpers.clone_functions_only();
    only.retain_functions(|_, _, n, a| n == name && a == arity);
    let mut body = Vec::new();
    let mut ok = true;
    only.walk(&mut |path: &[rhai::ASTNode]| {
        if let [rhai::ASTNode::Stmt(s)] = path {
            match l.stmt(s) {
                Some(s) => body.push(s),
                None => ok = false,
            }
        }
        ok
    });
    let Names::Local { next, .. } = l.names else {
        return None;
    };
    ok.then_some(ScriptFn {
        locals: next,
        body: Block(body),
    })
}

impl Lower<'_> {
    /// Statements with their own scope: `let`s inside are gone after it.
    fn block(&mut self, stmts: &[RStmt]) -> Option<Block> {
        let saved = match &self.names {
            Names::Local { vars, .. } => vars.len(),
            Names::Rule(_) => 0,
        };
        let out = stmts
            .iter()
            .map(|s| self.stmt(s))
            .collect::<Option<Vec<_>>>();
        if let Names::Local { vars, .. } = &mut self.names {
            vars.truncate(saved);
        }
        Some(Block(out?))
    }

    fn stmt(&mut self, s: &RStmt) -> Option<Stmt> {
        Some(match s {
            RStmt::Noop(_) => Stmt::Expr(Node::Unit),
            RStmt::Expr(e) => Stmt::Expr(self.expr(e)?),
            RStmt::FnCall(f, _) => Stmt::Expr(self.call(f)?),
            RStmt::If(fc, _) => Stmt::If(
                self.expr(&fc.expr)?,
                self.block(fc.body.statements())?,
                self.block(fc.branch.statements())?,
            ),
            // `throw` is a `Return` with the BREAK flag.
            RStmt::Return(e, flags, _) if !flags.contains(ASTFlags::BREAK) => {
                Stmt::Return(match e {
                    Some(e) => Some(self.expr(e)?),
                    None => None,
                })
            }
            RStmt::Var(x, flags, _) if !flags.contains(ASTFlags::EXPORTED) => {
                let (ident, value, _) = &**x;
                // The value is read before the new name is in scope.
                let value = self.expr(value)?;
                let Names::Local { vars, next } = &mut self.names else {
                    return None;
                };
                let slot = *next;
                *next = next.checked_add(1)?;
                vars.push((ident.name.to_string(), slot));
                Stmt::Let(slot, value)
            }
            _ => return None,
        })
    }

    fn expr(&mut self, e: &Expr) -> Option<Node> {
        Some(match e {
            Expr::Unit(_) => Node::Unit,
            Expr::BoolConstant(b, _) => Node::Bool(*b),
            Expr::IntegerConstant(i, _) => Node::Int(*i),
            Expr::FloatConstant(x, _) => Node::Float(**x),
            Expr::StringConstant(s, _) => Node::Str(s.as_str().into()),
            Expr::DynamicConstant(d, _) => constant(d)?,
            Expr::InterpolatedString(parts, _) => {
                Node::Interp(parts.iter().map(|p| self.expr(p)).collect::<Option<_>>()?)
            }
            Expr::Variable(x, _, _) => {
                let (_, name, namespace, _) = &**x;
                if !namespace.is_empty() {
                    return None;
                }
                Node::Var(self.var(name)?)
            }
            Expr::And(xs, _) => self.chain_bool(xs, true)?,
            Expr::Or(xs, _) => self.chain_bool(xs, false)?,
            Expr::FnCall(f, _) => self.call(f)?,
            Expr::Dot(x, flags, _) if flags.is_empty() => {
                let obj = self.expr(&x.lhs)?;
                self.method_chain(obj, &x.rhs)?
            }
            Expr::Stmt(b) => Node::Block(self.block(b.statements())?),
            _ => return None,
        })
    }

    /// `a && b && c` (Rhai keeps them in one list), left to right.
    fn chain_bool(&mut self, xs: &[Expr], and: bool) -> Option<Node> {
        let mut it = xs.iter();
        let mut acc = self.expr(it.next()?)?;
        for x in it {
            let rhs = Box::new(self.expr(x)?);
            acc = if and {
                Node::And(Box::new(acc), rhs)
            } else {
                Node::Or(Box::new(acc), rhs)
            };
        }
        Some(acc)
    }

    /// `obj.f(…)` and `obj.f(…).g(…)`: Rhai nests the rest of a chain on the right.
    fn method_chain(&mut self, obj: Node, rhs: &Expr) -> Option<Node> {
        match rhs {
            Expr::MethodCall(f, _) => self.method(obj, f),
            Expr::Dot(x, flags, _) if flags.is_empty() => {
                let first = self.method_chain(obj, &x.lhs)?;
                self.method_chain(first, &x.rhs)
            }
            _ => None,
        }
    }

    fn method(&mut self, obj: Node, f: &FnCallExpr) -> Option<Node> {
        // A helper function called as a method would see its object as `this`.
        if !f.namespace.is_empty() || self.prog.fn_names.contains(f.name.as_str()) {
            return None;
        }
        let mut args = vec![obj];
        for a in f.args.iter() {
            args.push(self.expr(a)?);
        }
        Some(Node::Call(Native::of(&f.name, args.len())?, args))
    }

    fn call(&mut self, f: &FnCallExpr) -> Option<Node> {
        if !f.namespace.is_empty() || f.capture_parent_scope {
            return None;
        }
        let name = f.name.as_str();
        let mut args = f
            .args
            .iter()
            .map(|a| self.expr(a))
            .collect::<Option<Vec<_>>>()?;
        if f.is_operator_call() {
            let op = match (name, args.len()) {
                ("!", 1) => return Some(Node::Not(Box::new(args.pop()?))),
                ("-", 1) => return Some(Node::Neg(Box::new(args.pop()?))),
                ("+", 2) => Op::Add,
                ("-", 2) => Op::Sub,
                ("*", 2) => Op::Mul,
                ("/", 2) => Op::Div,
                ("%", 2) => Op::Rem,
                ("==", 2) => Op::Eq,
                ("!=", 2) => Op::Ne,
                ("<", 2) => Op::Lt,
                ("<=", 2) => Op::Le,
                (">", 2) => Op::Gt,
                (">=", 2) => Op::Ge,
                _ => return None,
            };
            let rhs = args.pop()?;
            let lhs = args.pop()?;
            return Some(Node::Bin(op, Box::new(lhs), Box::new(rhs)));
        }
        if self.prog.fn_names.contains(name) {
            // Helper functions come before built-ins in Rhai.
            let i = *self.prog.fn_index.get(&(name.to_string(), args.len()))?;
            self.prog.fns.get(i)?.as_ref()?;
            return Some(Node::Script(i, args));
        }
        if name == "contains" && args.len() == 2 {
            // `x in list` is Rhai's `contains(list, x)`.
            let x = args.pop()?;
            let list = args.pop()?;
            return Some(Node::Bin(Op::In, Box::new(x), Box::new(list)));
        }
        Some(Node::Call(Native::of(name, args.len())?, args))
    }

    fn var(&self, name: &str) -> Option<Slot> {
        match &self.names {
            Names::Rule(r) => r(name),
            Names::Local { vars, .. } => vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, i)| Slot::Local(*i)),
        }
    }
}

/// A constant Rhai folded (a scalar; arrays and maps are left to Rhai).
fn constant(d: &rhai::Dynamic) -> Option<Node> {
    if d.is_unit() {
        Some(Node::Unit)
    } else if let Ok(b) = d.as_bool() {
        Some(Node::Bool(b))
    } else if let Ok(i) = d.as_int() {
        Some(Node::Int(i))
    } else if let Ok(x) = d.as_float() {
        Some(Node::Float(x))
    } else {
        d.read_lock::<rhai::ImmutableString>()
            .map(|s| Node::Str(s.as_str().into()))
    }
}
