//! Differential test: expressions generated from the grammar the native evaluator supports,
//! over hostile values (unit, integers at the limits, NaN and infinities, empty strings,
//! dates in year 0 and 9999), must give the same value natively as with Rhai, or fall back
//! cleanly (the native evaluator gives up and Rhai decides).

use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Helper functions the generated expressions call (shapes the shipped helpers use).
const HELPERS: &str = r#"
fn hours_text(h) {
    if h == () { return "0 小时"; }
    let r = round_to(h, 2);
    if r == r.floor() { `${r.to_int()} 小时` } else { `${r} 小时` }
}
fn days_after(from, to) {
    if from == () || to == () { return (); }
    days_between(from, to)
}
fn share(part, whole) {
    if whole == 0 { return 0.0; }
    to_float(part) / to_float(whole)
}
fn pick(c, a, b) { let x = a; if c { x } else { let x = b; x } }
fn no_value(a) { if a == () { return; } }
"#;

/// The variables: name, the native value, and the value Rhai sees.
fn variables() -> Vec<(&'static str, V<'static>, Dynamic)> {
    let s = |t: &str| Dynamic::from(ImmutableString::from(t));
    let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let days: &'static [NaiveDate] = Box::leak(Box::new([
        date(2020, 2, 10),
        date(2020, 2, 29),
        date(9999, 12, 31),
    ]));
    let list: &'static Dynamic = Box::leak(Box::new(Dynamic::from_array(vec![
        s("in_service"),
        s("2020-02-07"),
        s(""),
    ])));
    let dt = NaiveDate::from_ymd_opt(2020, 2, 29)
        .unwrap()
        .and_hms_opt(23, 59, 59)
        .unwrap();
    let mut v = vec![
        ("u", V::Unit, Dynamic::UNIT),
        ("t", V::Bool(true), Dynamic::from(true)),
        ("f", V::Bool(false), Dynamic::from(false)),
        ("i0", V::Int(0), Dynamic::from(0_i64)),
        ("i7", V::Int(7), Dynamic::from(7_i64)),
        ("ineg", V::Int(-1), Dynamic::from(-1_i64)),
        ("imax", V::Int(i64::MAX), Dynamic::from(i64::MAX)),
        ("imin", V::Int(i64::MIN), Dynamic::from(i64::MIN)),
        ("x0", V::Float(0.0), Dynamic::from(0.0_f64)),
        ("xneg0", V::Float(-0.0), Dynamic::from(-0.0_f64)),
        ("xh", V::Float(2.5), Dynamic::from(2.5_f64)),
        ("xbig", V::Float(1e300), Dynamic::from(1e300_f64)),
        ("xnan", V::Float(f64::NAN), Dynamic::from(f64::NAN)),
        (
            "xinf",
            V::Float(f64::INFINITY),
            Dynamic::from(f64::INFINITY),
        ),
        ("se", V::Str(""), s("")),
        ("sw", V::Str("in_service"), s("in_service")),
        ("sd", V::Str("2020-02-29"), s("2020-02-29")),
        ("sbad", V::Str("2020-13-01"), s("2020-13-01")),
        ("dt", V::DateTime(dt), s("2020-02-29 23:59:59")),
        ("days", V::Days(days), Dynamic::UNIT),
        ("l", V::Dyn(list), list.clone()),
    ];
    for (name, d) in [
        ("d0", date(0, 1, 1)),
        ("d9", date(9999, 12, 31)),
        ("dl", date(2020, 2, 29)),
    ] {
        v.push((name, V::Date(d), s(DateText::of(d).as_str())));
    }
    // Rhai sees the list of days as an array of their texts.
    for e in v.iter_mut() {
        if let V::Days(ds) = e.1 {
            e.2 = Dynamic::from_array(ds.iter().map(|d| s(DateText::of(*d).as_str())).collect());
        }
    }
    v
}

/// Expressions of the subset, as text.
fn expr() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> = variables().iter().map(|v| v.0).collect();
    let leaf = prop_oneof![
        4 => proptest::sample::select(names).prop_map(str::to_string),
        1 => proptest::sample::select(vec![
            "0", "1", "-1", "20", "9223372036854775807", "-9223372036854775807", "0.0", "1.5",
            "-2.25", "1e-7", "1.5e10", "\"\"", "\"2020-02-07\"", "\"in_service\"", "\"a\"",
            "true", "false", "()",
        ])
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        let ops = proptest::sample::select(vec![
            "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "in",
        ]);
        let f1 = proptest::sample::select(vec![
            "present",
            "missing",
            "to_float",
            "to_int",
            "floor",
            "len",
            "zh",
            "year",
            "month",
            "hours_text",
            "no_value",
        ]);
        let f2 = proptest::sample::select(vec![
            "max_of",
            "min_of",
            "round_to",
            "ratio",
            "days_between",
            "join",
            "days_after",
            "share",
        ]);
        let m1 = proptest::sample::select(vec!["len", "to_float", "to_int", "floor"]);
        prop_oneof![
            4 => (inner.clone(), ops, inner.clone()).prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            1 => inner.clone().prop_map(|a| format!("!({a})")),
            1 => inner.clone().prop_map(|a| format!("-({a})")),
            2 => (f1, inner.clone()).prop_map(|(f, a)| format!("{f}({a})")),
            2 => (f2, inner.clone(), inner.clone()).prop_map(|(f, a, b)| format!("{f}({a}, {b})")),
            1 => (inner.clone(), m1).prop_map(|(a, m)| format!("({a}).{m}()")),
            1 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("`<${{{a}}}|${{{b}}}>`")),
            1 => (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("if {c} {{ {a} }} else {{ {b} }}")),
            1 => (inner.clone(), inner.clone(), inner)
                .prop_map(|(c, a, b)| format!("pick({c}, {a}, {b})")),
        ]
    })
}

/// A value as Rhai shows it, with its type.
fn shown(d: &Dynamic) -> String {
    format!("{}:{d}", d.type_name())
}

fn native_shown(v: &V, vars: &[(&str, V, Dynamic)]) -> String {
    let d = match v {
        V::Unit => Dynamic::UNIT,
        V::Bool(b) => (*b).into(),
        V::Int(i) => (*i).into(),
        V::Float(x) => (*x).into(),
        V::Dyn(d) => (*d).clone(),
        V::Days(_) => vars.iter().find(|e| e.0 == "days").unwrap().2.clone(),
        V::Rows(..) => return "rows".into(),
        other => Dynamic::from(ImmutableString::from(
            other.with_text(|t| t.to_string()).unwrap(),
        )),
    };
    shown(&d)
}

#[test]
fn native_equals_rhai_on_generated_expressions() {
    let mut engine = crate::script::engine(&crate::script::Limits::default());
    let mut words = HashMap::new();
    words.insert("in_service".to_string(), "在职".to_string());
    let w = words.clone();
    // As `policy::validate` registers it.
    engine.register_fn("zh", move |v: Dynamic| -> Dynamic {
        match v.clone().into_immutable_string() {
            Ok(s) => w
                .get(s.as_str())
                .map_or(v, |w| Dynamic::from(ImmutableString::from(w.as_str()))),
            Err(_) => v,
        }
    });
    let helpers = engine.compile(HELPERS).unwrap();
    let prog: &'static Program = Box::leak(Box::new(Program::new(&helpers, words, &engine)));
    assert_eq!(prog.fns.iter().filter(|f| f.is_some()).count(), 5);
    let vars = variables();
    let values: Vec<V<'static>> = vars.iter().map(|v| v.1.clone()).collect();
    let resolve = |n: &str| {
        vars.iter()
            .position(|v| v.0 == n)
            .map(|i| Slot::Var(i as u16))
    };

    let (native_runs, total) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let rhai_ok = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 4000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&expr(), |src| {
            let mut scope = rhai::Scope::new();
            for (n, _, d) in &vars {
                scope.push_dynamic(*n, d.clone());
            }
            // Some generated text is not valid Rhai (for example `-` before a string literal
            // that Rhai folds); neither side evaluates it.
            let Ok(ast) = engine.compile_with_scope(&scope, &src) else {
                return Ok(());
            };
            let ast = helpers.merge(&ast);
            total.set(total.get() + 1);
            crate::script::start_clock();
            let rhai = match engine.eval_ast_with_scope::<Dynamic>(&mut scope, &ast) {
                Ok(v) => {
                    rhai_ok.set(rhai_ok.get() + 1);
                    shown(&v)
                }
                Err(e) => format!("error: {e}"),
            };
            let Some(node) = prog.compile(&ast, &resolve) else {
                return Ok(());
            };
            let node: &'static Node = Box::leak(Box::new(node));
            let frame = Frame {
                base: &[],
                vars: &values,
                lets: &[],
            };
            if let Ok(v) = Machine::default().eval(prog, node, &frame) {
                native_runs.set(native_runs.get() + 1);
                prop_assert_eq!(native_shown(&v, &vars), rhai, "{}", src);
            }
            Ok(())
        })
        .unwrap();
    // The test means something only when most expressions run natively.
    let (native_runs, total, rhai_ok) = (native_runs.get(), total.get(), rhai_ok.get());
    let report = format!(
        "{total} expressions, {rhai_ok} with a value in Rhai, {native_runs} of them natively"
    );
    eprintln!("{report}");
    assert!(total > 3000 && native_runs * 2 > rhai_ok, "{report}");
}
