//! Dates and date-times: reading them in the forms data contract v1 allows (and Excel serial
//! numbers), and writing them as `YYYY-MM-DD` / `YYYY-MM-DD HH:MM:SS`. Every part of the
//! engine (data loading, the Rhai functions, the native evaluator, reports) uses these.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DD` text of a date (fast; the evaluator formats millions of them).
pub fn date_text(d: NaiveDate) -> String {
    use chrono::Datelike;
    let mut s = String::with_capacity(10);
    push_date(&mut s, d.year(), d.month(), d.day());
    s
}

/// `YYYY-MM-DD HH:MM:SS` text of a date-time.
pub fn datetime_text(d: NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    let mut s = String::with_capacity(19);
    push_date(&mut s, d.year(), d.month(), d.day());
    for (sep, v) in [(' ', d.hour()), (':', d.minute()), (':', d.second())] {
        s.push(sep);
        push2(&mut s, v);
    }
    s
}

fn push2(s: &mut String, v: u32) {
    s.push(char::from(b'0' + (v / 10 % 10) as u8));
    s.push(char::from(b'0' + (v % 10) as u8));
}

fn push_date(s: &mut String, y: i32, m: u32, d: u32) {
    if (0..=9999).contains(&y) {
        let y = y as u32;
        push2(s, y / 100);
        push2(s, y % 100);
    } else {
        s.push_str(&format!("{y:04}"));
    }
    s.push('-');
    push2(s, m);
    s.push('-');
    push2(s, d);
}

/// Digits at `b[i..i + n]` as a number.
#[inline]
fn digits(b: &[u8], i: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(i..i + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// The common `YYYY-MM-DD` exactly (millions of cells), without the general parser.
#[inline]
fn iso_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(b, 0, 4)? as i32, digits(b, 5, 2)?, digits(b, 8, 2)?)
}

/// `YYYY-MM-DD`, `YYYY/M/D` (also `YYYY-M-D`, `YYYY/MM/DD`).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    if s.len() == 10
        && let Some(d) = iso_date(s.as_bytes())
    {
        return Some(d);
    }
    let s = s.trim();
    // `2020年8月1日` (spreadsheets set to Chinese date formats) and `2020.8.1`.
    if s.contains('年') || s.contains('.') {
        let t = s.replace(['年', '月', '.'], "-");
        let t = t.trim_end_matches('日');
        if t != s && !t.contains('.') {
            return parse_date(t);
        }
    }
    let sep = if s.contains('-') { '-' } else { '/' };
    let mut it = s.split(sep);
    let y = it.next()?;
    let m = it.next()?;
    let d = it.next()?;
    if it.next().is_some() || y.len() != 4 {
        return None;
    }
    NaiveDate::from_ymd_opt(num(y)? as i32, num(m)?, num(d)?)
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    let s = s.split('.').next()?; // drop fractional seconds
    let mut it = s.split(':');
    let h = num(it.next()?)?;
    let m = num(it.next()?)?;
    let sec = match it.next() {
        Some(x) => num(x)?,
        None => 0,
    };
    if it.next().is_some() {
        return None;
    }
    NaiveTime::from_hms_opt(h, m, sec)
}

/// `YYYY-MM-DD HH:MM[:SS]`, `YYYY/M/D H:MM[:SS]`, `YYYY-MM-DDTHH:MM[:SS]`.
pub fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    // `YYYY-MM-DD HH:MM[:SS]` exactly, without the general parser.
    let b = s.as_bytes();
    if (b.len() == 16 || b.len() == 19)
        && matches!(b.get(10), Some(b' ' | b'T'))
        && b[13] == b':'
        && (b.len() == 16 || b[16] == b':')
        && let Some(date) = iso_date(b)
    {
        let sec = if b.len() == 19 {
            digits(b, 17, 2)
        } else {
            Some(0)
        };
        if let (Some(h), Some(m), Some(sec)) = (digits(b, 11, 2), digits(b, 14, 2), sec)
            && let Some(t) = NaiveTime::from_hms_opt(h, m, sec)
        {
            return Some(NaiveDateTime::new(date, t));
        }
    }
    let s = s.trim();
    let (d, t) = s.split_once(['T', ' '])?;
    let date = parse_date(d)?;
    let time = parse_time(t.trim())?;
    Some(NaiveDateTime::new(date, time))
}

/// A date, also accepting a date-time at midnight (spreadsheets add `00:00:00`).
pub fn parse_date_lenient(s: &str) -> Option<NaiveDate> {
    parse_date(s).or_else(|| {
        let dt = parse_datetime(s)?;
        (dt.time() == NaiveTime::MIN).then(|| dt.date())
    })
}

/// An Excel serial day number (days since 1899-12-30) as a date.
pub fn excel_serial_date(s: &str) -> Option<NaiveDateTime> {
    let x: f64 = s.trim().parse().ok()?;
    if !(1.0..=2_958_465.0).contains(&x) {
        return None;
    }
    let base = NaiveDate::from_ymd_opt(1899, 12, 30)?.and_time(NaiveTime::MIN);
    let secs = (x * 86_400.0).round() as i64;
    base.checked_add_signed(chrono::Duration::seconds(secs))
}

/// The date the script date functions read from `s`: its first ten characters as
/// `YYYY-MM-DD`.
pub fn parse_date_text(s: &str) -> Option<NaiveDate> {
    let head = s.get(..10).unwrap_or(s);
    NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()
}

/// `YYYY-MM-DD` without allocating (years 0–9999; others fall back to a `String`).
pub enum DateText {
    /// The ten ASCII bytes of `YYYY-MM-DD`, for years 0–9999.
    Short([u8; 10]),
    /// The text from [`date_text`], for years outside 0–9999.
    Long(String),
}

impl DateText {
    /// The `YYYY-MM-DD` text of `d`, on the stack when the year is 0–9999.
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
            DateText::Long(date_text(d))
        }
    }

    /// The text as a string slice.
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
    /// The nineteen ASCII bytes of `YYYY-MM-DD HH:MM:SS`, for years 0–9999.
    Short([u8; 19]),
    /// The text from [`datetime_text`], for years outside 0–9999.
    Long(String),
}

impl DateTimeText {
    /// The `YYYY-MM-DD HH:MM:SS` text of `d`, on the stack when the year is 0–9999.
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
            DateText::Long(_) => DateTimeText::Long(datetime_text(d)),
        }
    }

    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        match self {
            DateTimeText::Short(b) => std::str::from_utf8(b).unwrap_or(""),
            DateTimeText::Long(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_contract_forms() {
        let d = NaiveDate::from_ymd_opt(2020, 8, 1).unwrap();
        assert_eq!(parse_date("2020-08-01"), Some(d));
        assert_eq!(parse_date("2020/8/1"), Some(d));
        assert_eq!(parse_date(" 2020/08/01 "), Some(d));
        assert_eq!(parse_date("2020-02-30"), None);
        assert_eq!(parse_date("20-8-1"), None);
        assert_eq!(parse_date("2020-08-01x"), None);
        assert_eq!(parse_date("2020年8月1日"), Some(d));
        assert_eq!(parse_date("2020.8.1"), Some(d));
        assert_eq!(parse_date(""), None);
        assert_eq!(parse_date_lenient("2020-08-01 00:00:00"), Some(d));
        assert_eq!(parse_date_lenient("2020-08-01 09:00"), None);
    }

    #[test]
    fn datetimes_in_contract_forms() {
        let dt = NaiveDate::from_ymd_opt(2020, 8, 1)
            .unwrap()
            .and_hms_opt(9, 30, 0)
            .unwrap();
        assert_eq!(parse_datetime("2020-08-01 09:30"), Some(dt));
        assert_eq!(parse_datetime("2020-08-01 09:30:00"), Some(dt));
        assert_eq!(parse_datetime("2020/8/1 9:30"), Some(dt));
        assert_eq!(parse_datetime("2020-08-01T09:30:00"), Some(dt));
        assert_eq!(parse_datetime("2020-08-01T09:30:00.000"), Some(dt));
        assert_eq!(parse_datetime("2020-08-01 25:00"), None);
        assert_eq!(parse_datetime("2020-08-01"), None);
    }

    #[test]
    fn fast_date_text_matches_chrono() {
        let dt = NaiveDate::from_ymd_opt(2020, 2, 7)
            .unwrap()
            .and_hms_opt(9, 5, 3)
            .unwrap();
        assert_eq!(
            date_text(dt.date()),
            dt.date().format("%Y-%m-%d").to_string()
        );
        assert_eq!(
            datetime_text(dt),
            dt.format("%Y-%m-%d %H:%M:%S").to_string()
        );
    }

    #[test]
    fn excel_serials() {
        let d = excel_serial_date("43868").unwrap();
        assert_eq!(d.date(), NaiveDate::from_ymd_opt(2020, 2, 7).unwrap());
    }
}
