//! The sandboxed Rhai engine that evaluates rule expressions: limits, the built-in date and
//! number functions policy staff may call, and conversions between Rhai values and JSON.
//!
//! Dates are `YYYY-MM-DD` strings (they compare correctly with `<`, `>=`), date-times
//! `YYYY-MM-DD HH:MM:SS`, a missing value is `()`. Scripts cannot read files, the
//! environment or the clock: no module resolver, no `eval`, no time package, output dropped.

use chrono::{Datelike, NaiveDate};
use rhai::packages::{
    BasicArrayPackage, BasicMapPackage, BasicMathPackage, BitFieldPackage, CorePackage,
    LogicPackage, MoreStringPackage, Package,
};
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString};
use std::time::{Duration, Instant};

/// Resource limits for one evaluation of one expression.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rhai operations per expression evaluation.
    pub max_operations: u64,
    /// Nested function calls.
    pub max_call_levels: usize,
    /// Nesting depth of expressions (global, inside functions).
    pub max_expr_depth: usize,
    /// Characters in one string.
    pub max_string_size: usize,
    /// Items in one array or map.
    pub max_array_size: usize,
    /// Wall-clock time for one evaluation.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 200_000,
            max_call_levels: 32,
            max_expr_depth: 64,
            max_string_size: 64 * 1024,
            max_array_size: 100_000,
            max_time: Duration::from_millis(500),
        }
    }
}

/// Build the sandboxed engine with the rulebook function library.
pub fn engine(limits: &Limits) -> Engine {
    let mut e = Engine::new_raw();
    for module in [
        CorePackage::new().as_shared_module(),
        BitFieldPackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
    ] {
        e.register_global_module(module);
    }
    e.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    e.disable_symbol("eval");
    e.on_print(|_| {});
    e.on_debug(|_, _, _| {});
    e.set_strict_variables(true);
    e.set_max_operations(limits.max_operations);
    e.set_max_call_levels(limits.max_call_levels);
    e.set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth);
    e.set_max_string_size(limits.max_string_size);
    e.set_max_array_size(limits.max_array_size);
    e.set_max_map_size(limits.max_array_size);
    e.set_max_variables(1_000);
    e.set_max_functions(1_000);
    e.set_max_modules(0);
    // Wall-clock guard: checked every 4096 operations; each thread keeps its own start time.
    let max_time = limits.max_time;
    e.on_progress(move |ops| {
        if ops % 4096 == 0 && started().elapsed() > max_time {
            Some(Dynamic::from("time limit exceeded"))
        } else {
            None
        }
    });
    register_functions(&mut e);
    e
}

thread_local! {
    static STARTED: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Mark the start of one evaluation on this thread (for the time limit).
pub fn start_clock() {
    STARTED.with(|s| s.set(Some(Instant::now())));
}

fn started() -> Instant {
    STARTED.with(|s| match s.get() {
        Some(t) => t,
        None => {
            let now = Instant::now();
            s.set(Some(now));
            now
        }
    })
}

type Res<T> = Result<T, Box<EvalAltResult>>;

fn parse_date(s: &str) -> Res<NaiveDate> {
    crate::dates::parse_date_text(s).ok_or_else(|| format!("not a date: '{s}'").into())
}

fn date_str(d: NaiveDate) -> ImmutableString {
    crate::dates::date_text(d).into()
}

/// The rule functions, each written once: Rhai calls them through `register_functions` and
/// the native evaluator (`eval::native`) calls them directly.
pub mod builtin {
    use chrono::{Datelike, NaiveDate};

    /// `days_between(a, b)`: days from `a` to `b`.
    pub fn days_between(a: NaiveDate, b: NaiveDate) -> i64 {
        (b - a).num_days()
    }
    /// `year(d)`.
    pub fn year(d: NaiveDate) -> i64 {
        d.year() as i64
    }
    /// `month(d)`.
    pub fn month(d: NaiveDate) -> i64 {
        d.month() as i64
    }
    /// `round_to(x, places)`, places clamped to 0–9.
    pub fn round_to(x: f64, places: i64) -> f64 {
        let f = 10f64.powi(places.clamp(0, 9) as i32);
        (x * f).round() / f
    }
    /// `ratio(a, b)`: `a / b`, or 0 when `b` is 0.
    pub fn ratio(a: f64, b: f64) -> f64 {
        if b == 0.0 { 0.0 } else { a / b }
    }
    /// `ratio(a, b)` of integers.
    pub fn ratio_int(a: i64, b: i64) -> f64 {
        if b == 0 { 0.0 } else { a as f64 / b as f64 }
    }
    /// `max_of(a, b)`.
    pub fn max_of(a: f64, b: f64) -> f64 {
        a.max(b)
    }
    /// `min_of(a, b)`.
    pub fn min_of(a: f64, b: f64) -> f64 {
        a.min(b)
    }
}

/// The rule functions for people: name, signature and what each does (editor hovers and
/// completion). A test checks that every function [`engine`] registers is listed here.
pub const BUILTIN_DOCS: &[(&str, &str, &str)] = &[
    (
        "days_between",
        "days_between(a, b) -> int",
        "Days from date `a` to date `b` (negative when `b` is earlier).",
    ),
    (
        "add_days",
        "add_days(d, n) -> date",
        "The date `n` days after `d` (before it when `n` is negative).",
    ),
    (
        "date",
        "date(y, m, d) -> date",
        "The date of year `y`, month `m`, day `d` as `\"YYYY-MM-DD\"` text.",
    ),
    (
        "date_of",
        "date_of(d) -> date",
        "The date part of a date or date-time.",
    ),
    ("year", "year(d) -> int", "The year of a date."),
    ("month", "month(d) -> int", "The month of a date (1–12)."),
    (
        "weekday",
        "weekday(d) -> int",
        "The ISO weekday of a date (1 = Monday … 7 = Sunday).",
    ),
    (
        "year_start",
        "year_start(d) -> date",
        "1 January of the year of `d`.",
    ),
    (
        "year_end",
        "year_end(d) -> date",
        "31 December of the year of `d`.",
    ),
    (
        "max_date",
        "max_date(a, b) -> date",
        "The later of two dates.",
    ),
    (
        "min_date",
        "min_date(a, b) -> date",
        "The earlier of two dates.",
    ),
    (
        "present",
        "present(x) -> bool",
        "Whether `x` has a value (is not `()`).",
    ),
    (
        "missing",
        "missing(x) -> bool",
        "Whether `x` has no value (is `()`).",
    ),
    (
        "round_to",
        "round_to(x, n) -> float",
        "`x` rounded to `n` decimal places.",
    ),
    (
        "to_float",
        "to_float(n) -> float",
        "An integer as a decimal number.",
    ),
    (
        "ratio",
        "ratio(a, b) -> float",
        "`a / b` as a decimal number, 0 when `b` is 0.",
    ),
    (
        "max_of",
        "max_of(a, b) -> float",
        "The larger of two numbers.",
    ),
    (
        "min_of",
        "min_of(a, b) -> float",
        "The smaller of two numbers.",
    ),
    (
        "join",
        "join(list, sep) -> text",
        "The items of a list as text, separated by `sep`.",
    ),
    (
        "zh",
        "zh(value) -> text",
        "The Chinese word for an enumerated value (its first alias), for messages.",
    ),
    (
        "is_working_day",
        "is_working_day(d) -> bool",
        "Whether `d` is a working day of the working calendar (`[calendar]`; Monday to Friday without one).",
    ),
    (
        "working_hours_between",
        "working_hours_between(start, end, from, to) -> float",
        "Hours of `start..end` that fall inside working hours `from`–`to` (`\"HH:MM\"`) on working days.",
    ),
];

/// Signature and doc of the rule function `name`, if it is one.
pub fn builtin_doc(name: &str) -> Option<(&'static str, &'static str)> {
    BUILTIN_DOCS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, sig, doc)| (*sig, *doc))
}

fn register_functions(e: &mut Engine) {
    // Dates.
    e.register_fn("days_between", |a: &str, b: &str| -> Res<i64> {
        Ok(builtin::days_between(parse_date(a)?, parse_date(b)?))
    });
    e.register_fn("add_days", |d: &str, n: i64| -> Res<ImmutableString> {
        let d = parse_date(d)?;
        d.checked_add_signed(chrono::Duration::days(n))
            .map(date_str)
            .ok_or_else(|| "date out of range".into())
    });
    e.register_fn("date", |y: i64, m: i64, d: i64| -> Res<ImmutableString> {
        NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
            .map(date_str)
            .ok_or_else(|| format!("no such date: {y}-{m}-{d}").into())
    });
    e.register_fn("date_of", |d: &str| -> Res<ImmutableString> {
        Ok(date_str(parse_date(d)?))
    });
    e.register_fn("year", |d: &str| -> Res<i64> {
        Ok(builtin::year(parse_date(d)?))
    });
    e.register_fn("month", |d: &str| -> Res<i64> {
        Ok(builtin::month(parse_date(d)?))
    });
    e.register_fn("weekday", |d: &str| -> Res<i64> {
        Ok(parse_date(d)?.weekday().number_from_monday() as i64)
    });
    e.register_fn("year_start", |d: &str| -> Res<ImmutableString> {
        let y = parse_date(d)?.year();
        Ok(date_str(
            NaiveDate::from_ymd_opt(y, 1, 1).unwrap_or_default(),
        ))
    });
    e.register_fn("year_end", |d: &str| -> Res<ImmutableString> {
        let y = parse_date(d)?.year();
        Ok(date_str(
            NaiveDate::from_ymd_opt(y, 12, 31).unwrap_or_default(),
        ))
    });
    e.register_fn("max_date", |a: &str, b: &str| -> Res<ImmutableString> {
        Ok(date_str(parse_date(a)?.max(parse_date(b)?)))
    });
    e.register_fn("min_date", |a: &str, b: &str| -> Res<ImmutableString> {
        Ok(date_str(parse_date(a)?.min(parse_date(b)?)))
    });
    // Presence.
    e.register_fn("present", |v: Dynamic| !v.is_unit());
    e.register_fn("missing", |v: Dynamic| v.is_unit());
    // Numbers.
    e.register_fn("round_to", builtin::round_to);
    e.register_fn("round_to", |x: i64, _places: i64| x as f64);
    e.register_fn("to_float", |x: i64| x as f64);
    e.register_fn("ratio", builtin::ratio);
    e.register_fn("ratio", builtin::ratio_int);
    e.register_fn("max_of", builtin::max_of);
    e.register_fn("min_of", builtin::min_of);
    // Text.
    e.register_fn("join", |a: rhai::Array, sep: &str| {
        a.iter().map(display).collect::<Vec<_>>().join(sep)
    });
    // The working calendar (Monday to Friday until the policy set's calendar is registered).
    register_calendar(
        e,
        std::sync::Arc::new(crate::calendar::Calendar::weekdays_only()),
    );
}

/// The calendar functions, reading `cal`: `is_working_day(d)` and
/// `working_hours_between(start, end, work_start, work_end)` (hours of `start..end` inside
/// `work_start..work_end` on working days).
pub fn register_calendar(e: &mut Engine, cal: std::sync::Arc<crate::calendar::Calendar>) {
    let c = cal.clone();
    e.register_fn("is_working_day", move |d: &str| -> Res<bool> {
        Ok(c.is_working_day(parse_date(d)?))
    });
    e.register_fn(
        "working_hours_between",
        move |start: &str, end: &str, from: &str, to: &str| -> Res<f64> {
            let at = |s: &str| {
                crate::dates::parse_datetime(s).ok_or_else(|| -> Box<EvalAltResult> {
                    format!("not a date-time: '{s}'").into()
                })
            };
            let time = |s: &str| {
                chrono::NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(
                    |_| -> Box<EvalAltResult> { format!("not a time of day: '{s}'").into() },
                )
            };
            let secs = cal.working_seconds(at(start)?, at(end)?, time(from)?, time(to)?);
            Ok(secs as f64 / 3600.0)
        },
    );
}

/// A number as people read it: `20`, `6.5`, `13.33`.
pub fn format_number(x: f64) -> String {
    let mut s = String::new();
    push_number(&mut s, x);
    s
}

/// [`format_number`], appended to `out`.
pub fn push_number(out: &mut String, x: f64) {
    use std::fmt::Write;
    if !x.is_finite() {
        let _ = write!(out, "{x}");
        return;
    }
    let r = (x * 100.0).round() / 100.0;
    if r == r.trunc() {
        let _ = write!(out, "{}", r as i64);
    } else {
        let start = out.len();
        let _ = write!(out, "{r:.2}");
        let kept = out[start..].trim_end_matches('0').len();
        out.truncate(start + kept);
    }
}

/// A Rhai value as text in a Chinese message.
pub fn display(v: &Dynamic) -> String {
    if v.is_unit() {
        "无".to_string()
    } else if let Some(x) = v.clone().try_cast::<f64>() {
        format_number(x)
    } else if let Some(b) = v.clone().try_cast::<bool>() {
        if b { "是".into() } else { "否".into() }
    } else if let Some(a) = v.read_lock::<rhai::Array>() {
        a.iter().map(display).collect::<Vec<_>>().join("、")
    } else {
        v.to_string()
    }
}

/// A Rhai value as JSON (evidence).
pub fn to_json(v: &Dynamic) -> serde_json::Value {
    use serde_json::Value as J;
    if v.is_unit() {
        J::Null
    } else if let Some(b) = v.clone().try_cast::<bool>() {
        J::Bool(b)
    } else if let Some(i) = v.clone().try_cast::<i64>() {
        J::from(i)
    } else if let Some(x) = v.clone().try_cast::<f64>() {
        let r = (x * 1e6).round() / 1e6;
        serde_json::Number::from_f64(r)
            .map(J::Number)
            .unwrap_or(J::Null)
    } else if let Some(a) = v.read_lock::<rhai::Array>() {
        J::Array(a.iter().map(to_json).collect())
    } else if let Some(m) = v.read_lock::<rhai::Map>() {
        let mut keys: Vec<_> = m.keys().collect();
        keys.sort();
        J::Object(
            keys.into_iter()
                .map(|k| (k.to_string(), to_json(&m[k])))
                .collect(),
        )
    } else {
        J::String(v.to_string())
    }
}

/// A TOML value as a Rhai value (parameters).
pub fn from_toml(v: &toml::Value) -> Dynamic {
    match v {
        toml::Value::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        toml::Value::Integer(i) => Dynamic::from(*i),
        toml::Value::Float(f) => Dynamic::from(*f),
        toml::Value::Boolean(b) => Dynamic::from(*b),
        toml::Value::Datetime(d) => Dynamic::from(ImmutableString::from(d.to_string())),
        toml::Value::Array(a) => Dynamic::from_array(a.iter().map(from_toml).collect()),
        toml::Value::Table(t) => {
            let mut m = rhai::Map::new();
            for (k, v) in t {
                m.insert(k.as_str().into(), from_toml(v));
            }
            Dynamic::from_map(m)
        }
    }
}

/// A short, human description of a Rhai runtime error.
pub fn describe_error(err: &EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorTooManyOperations(_) => {
            "运算次数超过上限（可能是死循环）/ operation limit exceeded".to_string()
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            "调用层数超过上限 / call depth limit exceeded".into()
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            format!("数据超过大小上限 / {what} exceeds the size limit")
        }
        EvalAltResult::ErrorTerminated(_, _) => "运行时间超过上限 / time limit exceeded".into(),
        other => {
            let text = other.to_string();
            text.replace('\n', " ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::Scope;

    fn eval(src: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let e = engine(&Limits::default());
        let mut scope = Scope::new();
        start_clock();
        e.eval_with_scope::<Dynamic>(&mut scope, src)
    }

    #[test]
    fn every_registered_function_has_a_doc() {
        let e = engine(&Limits::default());
        for sig in e.gen_fn_signatures(false) {
            let name = sig.split('(').next().unwrap_or("").trim();
            assert!(
                builtin_doc(name).is_some(),
                "no BUILTIN_DOCS entry for {sig}"
            );
        }
    }

    #[test]
    fn date_functions() {
        assert_eq!(
            eval(r#"days_between("2020-02-07", "2020-02-17")"#)
                .unwrap()
                .as_int()
                .unwrap(),
            10
        );
        assert_eq!(
            eval(r#"add_days("2020-12-31", 1)"#).unwrap().to_string(),
            "2021-01-01"
        );
        assert!(
            eval(r#""2020-02-07" < "2020-02-17""#)
                .unwrap()
                .as_bool()
                .unwrap()
        );
        assert_eq!(
            eval(r#"year_start("2022-05-03")"#).unwrap().to_string(),
            "2022-01-01"
        );
    }

    #[test]
    fn mixed_int_float_comparison() {
        assert!(eval("13.5 < 20").unwrap().as_bool().unwrap());
        assert_eq!(
            format_number(eval("20 - 13.5").unwrap().as_float().unwrap()),
            "6.5"
        );
    }

    #[test]
    fn sandbox_stops_loops_and_growth() {
        let err = eval("let x = 0; loop { x += 1; }").unwrap_err();
        assert!(
            matches!(*err, EvalAltResult::ErrorTooManyOperations(_)),
            "{err}"
        );
        let err = eval(r#"let s = "a"; loop { s += s; }"#).unwrap_err();
        assert!(
            matches!(*err, EvalAltResult::ErrorDataTooLarge(..)),
            "{err}"
        );
        let err = eval("fn f(n) { f(n + 1) } f(0)").unwrap_err();
        assert!(
            matches!(*err, EvalAltResult::ErrorStackOverflow(_)),
            "{err}"
        );
        assert!(eval(r#"import "x" as y; 1"#).is_err());
        assert!(eval(r#"eval("1")"#).is_err());
        assert!(eval("timestamp()").is_err());
    }

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(format_number(20.0), "20");
        assert_eq!(format_number(6.5), "6.5");
        assert_eq!(format_number(1.0 / 3.0), "0.33");
    }
}
