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

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d` (which must be valid).
#[inline]
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether `y-m-d` is a date of the proleptic Gregorian calendar (`m`, `d` from 1).
#[inline]
fn valid_ymd(y: u32, m: u32, d: u32) -> bool {
    let leap = y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// `'0'` in every byte.
const ZEROS: u64 = 0x3030_3030_3030_3030;

/// Whether the bytes of `x` that `mask` selects (whole bytes) are all ASCII digits.
#[inline(always)]
fn all_digits(x: u64, mask: u64) -> bool {
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    let x = x & mask;
    // `0`–`9` are 0x30–0x39: the high half-byte is 3, and stays 3 when 6 is added.
    x & HIGH == ZEROS & mask && (x + (0x0606_0606_0606_0606 & mask)) & HIGH == ZEROS & mask
}

/// The common `YYYY-MM-DD HH:MM[:SS]` (also with `T`) as seconds since 1970-01-01 00:00:00,
/// read by position without building a chrono value; `None` for any other text (which
/// [`parse_datetime`] may still read). Gives exactly [`parse_datetime`]'s value.
#[inline]
pub fn iso_datetime_secs(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if !(b.len() == 16 || b.len() == 19) || (b.len() == 19 && b[16] != b':') {
        return None;
    }
    // The first sixteen bytes as two words, `YYYY-MM-` and `DD HH:MM`, checked and read
    // eight bytes at a time.
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
    let (lo, hi) = (word(0), word(8));
    const LO_DIGITS: u64 = 0x00ff_ff00_ffff_ffff;
    const HI_DIGITS: u64 = 0xffff_00ff_ff00_ffff;
    if lo & 0xff00_00ff_0000_0000 != 0x2d00_002d_0000_0000
        || hi & 0x0000_ff00_0000_0000 != 0x0000_3a00_0000_0000
        || !matches!((hi >> 16) as u8, b' ' | b'T')
        || !all_digits(lo, LO_DIGITS)
        || !all_digits(hi, HI_DIGITS)
    {
        return None;
    }
    let (lo, hi) = (
        (lo & LO_DIGITS) - (ZEROS & LO_DIGITS),
        (hi & HI_DIGITS) - (ZEROS & HI_DIGITS),
    );
    let at = |w: u64, i: u32| ((w >> (8 * i)) & 0xff) as u32;
    let y = at(lo, 0) * 1000 + at(lo, 1) * 100 + at(lo, 2) * 10 + at(lo, 3);
    let (m, d) = (at(lo, 5) * 10 + at(lo, 6), at(hi, 0) * 10 + at(hi, 1));
    let (h, mi) = (at(hi, 3) * 10 + at(hi, 4), at(hi, 6) * 10 + at(hi, 7));
    let sec = if b.len() == 19 { digits(b, 17, 2)? } else { 0 };
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = match month_start(y, m) {
        // The common years: the month's first day and length by lookup.
        Some((first, len)) => {
            if d == 0 || d > len {
                return None;
            }
            first + i64::from(d) - 1
        }
        None if valid_ymd(y, m, d) => days_from_civil(i64::from(y), m, d),
        None => return None,
    };
    Some(days * 86_400 + i64::from(h * 3600 + mi * 60 + sec))
}

/// First year of [`month_start`]'s table.
const TABLE_FROM: u32 = 1900;
/// Years in [`month_start`]'s table (1900–2199).
const TABLE_YEARS: u32 = 300;

/// For a month of 1900–2199 (`m` from 1): days from 1970-01-01 to its first day, and its
/// length. Loading reads tens of millions of dates; this is one lookup instead of the
/// calendar arithmetic.
#[inline]
fn month_start(y: u32, m: u32) -> Option<(i64, u32)> {
    static STARTS: std::sync::OnceLock<Vec<i32>> = std::sync::OnceLock::new();
    let starts = STARTS.get_or_init(|| {
        (0..=TABLE_YEARS * 12)
            .map(|i| days_from_civil(i64::from(TABLE_FROM + i / 12), i % 12 + 1, 1) as i32)
            .collect()
    });
    if !(1..=12).contains(&m) {
        return None;
    }
    let i = (y.checked_sub(TABLE_FROM)? * 12 + m - 1) as usize;
    let (&first, &next) = (starts.get(i)?, starts.get(i + 1)?);
    Some((i64::from(first), (next - first) as u32))
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
    fn iso_datetime_secs_matches_chrono() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
            .unwrap()
            .and_time(NaiveTime::MIN);
        let mut texts = vec![
            "0000-01-01 00:00".to_string(),
            "1900-02-29 00:00".into(),
            "2000-02-29 12:00:59".into(),
            "2020-02-30 09:00".into(),
            "2020-13-01 09:00".into(),
            "2020-00-10 09:00".into(),
            "2020-01-01 24:00".into(),
            "2020-01-01 23:60".into(),
            "2020-01-01T23:59:60".into(),
            "9999-12-31T23:59:59".into(),
            "2020-1-01 09:00:00".into(),
        ];
        for y in [
            1899, 1900, 1969, 1970, 1999, 2000, 2020, 2021, 2100, 2106, 2199, 2200,
        ] {
            for m in 1..=12 {
                for d in [1, 28, 29, 30, 31] {
                    texts.push(format!("{y:04}-{m:02}-{d:02} 07:08:09"));
                    texts.push(format!("{y:04}-{m:02}-{d:02}T23:59"));
                }
            }
        }
        // Every byte of a valid text replaced by bytes around the digits and separators:
        // what the fast reading gives, the general parser gives (it reads more, such as
        // `2020-02-2  23:59`).
        let good = "2020-02-29 23:59:58";
        let mut read = 0;
        for i in 0..good.len() {
            for c in [
                b'/', b'0', b'9', b':', b';', b'-', b' ', b'T', b'@', b'\x7f',
            ] {
                let mut t = good.as_bytes().to_vec();
                t[i] = c;
                for t in [&t[..], &t[..16]] {
                    let t = std::str::from_utf8(t).unwrap();
                    if let Some(fast) = iso_datetime_secs(t) {
                        let want = parse_datetime(t).map(|d| (d - epoch).num_seconds());
                        assert_eq!(Some(fast), want, "{t}");
                        read += 1;
                    }
                }
            }
        }
        assert_eq!(read, 76, "mutated texts the fast reading takes");
        for t in &texts {
            let want = parse_datetime(t).map(|d| (d - epoch).num_seconds());
            let fast = iso_datetime_secs(t);
            let b = t.as_bytes();
            let fixed = (b.len() == 16 || b.len() == 19) && b[4] == b'-' && b[7] == b'-';
            if fast.is_some() || fixed {
                assert_eq!(fast, want, "{t}");
            }
        }
    }

    #[test]
    fn excel_serials() {
        let d = excel_serial_date("43868").unwrap();
        assert_eq!(d.date(), NaiveDate::from_ymd_opt(2020, 2, 7).unwrap());
    }
}
