//! Parsing of cell text into booleans and numbers per data contract v1 (dates are in
//! [`crate::dates`]).

/// `true`/`false`, `1`/`0`, `yes`/`no`, `是`/`否` (and `y`/`n`, `t`/`f`), any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" => return Some(true),
        "false" => return Some(false),
        _ => {}
    }
    let s = s.trim();
    let is = |w: &[&str]| w.iter().any(|x| s.eq_ignore_ascii_case(x));
    if is(&["true", "1", "yes", "y", "t", "是", "1.0"]) {
        Some(true)
    } else if is(&["false", "0", "no", "n", "f", "否", "0.0"]) {
        Some(false)
    } else {
        None
    }
}

/// A finite decimal number.
pub fn parse_number(s: &str) -> Option<f64> {
    let x: f64 = s.trim().parse().ok()?;
    x.is_finite().then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_and_numbers() {
        for t in ["true", "TRUE", "1", "yes", "是"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "0", "No", "否"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_number("6.5"), Some(6.5));
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number("inf"), None);
    }
}
