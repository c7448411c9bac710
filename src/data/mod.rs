//! Data loading: a dataset folder becomes typed, columnar tables checked against the policy
//! set's schema. Every input row is either loaded or rejected with file, row, column and
//! reason; references between tables are resolved to row numbers.

pub mod cache;
mod load;
pub mod parse;
pub mod source;

use chrono::{NaiveDate, NaiveDateTime};
use indexmap::IndexMap;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

pub use load::{Focus, FocusInfo, LoadOptions, LoadedTables, RowFilter, load, load_focused};
pub use source::{Chunking, Encoding};

/// An interned id (`M001`, `C03`): cheap to compare and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(pub u32);

impl Sym {
    /// No id: an empty id cell.
    pub const NONE: Sym = Sym(u32::MAX);
    /// Whether this is [`Sym::NONE`].
    pub fn is_none(self) -> bool {
        self == Sym::NONE
    }
}

/// All ids of a dataset, interned once.
///
/// The ids' text is kept end to end in one buffer (no allocation per id). Ids that are a
/// short prefix and a run of digits (`M00000001`, `CM000175`: nearly all) are looked up by
/// their number in a table of symbols per prefix and width (`Dense`), without hashing; a
/// million members take 4 MB there, against 64 MB of hash table, and a lookup reads one
/// entry of it. Other ids of up to 15 bytes are looked up by their bytes packed into one
/// integer, which is much faster to hash and compare than a string; longer ones by text.
#[derive(Debug, Default)]
pub struct Interner {
    dense: Dense,
    short: FxHashMap<u128, Sym>,
    long: FxHashMap<Box<str>, Sym>,
    /// The ids' text, in id order.
    buf: String,
    /// Where each id's text ends in `buf`.
    ends: Vec<usize>,
}

/// The bytes of a short string and its length in one integer.
#[inline]
pub(crate) fn pack(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() > 15 {
        return None;
    }
    // Byte i at bits 8i.., the length in the top byte. Read as whole words, overlapping
    // where the length is not one (a copy into an array and reading it back stalls: the
    // processor cannot forward a variable-length copy to the wider read).
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            b[at..at + 4].try_into().unwrap_or_default(),
        ))
    };
    let (lo, hi) = match n {
        // Bytes 8.. are the last 8 bytes with the ones before 8 shifted out.
        8..=15 => (
            word(0),
            if n == 8 {
                0
            } else {
                word(n - 8) >> (8 * (16 - n))
            },
        ),
        // Bytes n-4..4 are read twice, the same both times.
        4..=7 => (half(0) | half(n - 4) << (8 * (n - 4)), 0),
        _ => (b.iter().rev().fold(0u64, |k, &x| k << 8 | u64::from(x)), 0),
    };
    Some(u128::from(hi | (n as u64) << 56) << 64 | u128::from(lo))
}

/// Symbols of ids that are a prefix of up to [`Dense::PREFIX`] bytes and a run of up to 9
/// digits, indexed by that number, one table per prefix and width (at most
/// [`Dense::PATTERNS`] of them). The width is part of the pattern, so `M01` and `M1` are
/// told apart. An id goes here only if its table stays at least a quarter full; the rest go
/// to the hash maps.
#[derive(Debug, Default)]
struct Dense {
    /// Per pattern: the prefix's bytes, its length and the width, packed ([`Dense::split`]).
    keys: Vec<u64>,
    /// Per pattern: the symbol of each number ([`Sym::NONE`]: none such).
    syms: Vec<Vec<Sym>>,
    /// Per pattern: how many ids it holds.
    counts: Vec<usize>,
}

impl Dense {
    const PREFIX: usize = 6;
    const PATTERNS: usize = 8;

    /// An id's pattern and number, if it has that form.
    #[inline]
    fn split(s: &[u8]) -> Option<(u64, usize)> {
        let digits = s.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        let prefix = s.len() - digits;
        if digits == 0 || digits > 9 || prefix > Self::PREFIX {
            return None;
        }
        // The prefix's bytes from bit 0, its length at bit 48, the width at bit 56.
        let key = s[..prefix]
            .iter()
            .rev()
            .fold(0u64, |k, &b| k << 8 | u64::from(b))
            | (prefix as u64) << 48
            | (digits as u64) << 56;
        let number = s[prefix..]
            .iter()
            .fold(0usize, |n, b| n * 10 + usize::from(b - b'0'));
        Some((key, number))
    }

    #[inline]
    fn get(&self, s: &[u8]) -> Option<Sym> {
        if self.keys.is_empty() {
            return None;
        }
        let (key, number) = Self::split(s)?;
        let p = self.keys.iter().position(|&k| k == key)?;
        let sym = *self.syms[p].get(number)?;
        (!sym.is_none()).then_some(sym)
    }

    /// Record `id` for `s`, which is not interned; `false` if it does not belong here.
    fn insert(&mut self, s: &[u8], id: Sym) -> bool {
        let Some((key, number)) = Self::split(s) else {
            return false;
        };
        let p = match self.keys.iter().position(|&k| k == key) {
            Some(p) => p,
            None if self.keys.len() < Self::PATTERNS => {
                self.keys.push(key);
                self.syms.push(Vec::new());
                self.counts.push(0);
                self.keys.len() - 1
            }
            None => return false,
        };
        let syms = &mut self.syms[p];
        if number >= syms.len() {
            // At least a quarter full, counting this id (the first 4096 numbers are free).
            if number >= 4 * (self.counts[p] + 1024) {
                return false;
            }
            syms.resize(number + 1, Sym::NONE);
        }
        syms[number] = id;
        self.counts[p] += 1;
        true
    }
}

impl Interner {
    /// The symbol of `s`, interning it if it is new.
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(id) = self.get(s) {
            return id;
        }
        self.insert(s)
    }

    /// Room for `n` more ids.
    pub fn reserve(&mut self, n: usize) {
        self.ends.reserve(n);
    }

    /// Room for `n` more bytes of id text.
    pub fn reserve_text(&mut self, n: usize) {
        self.buf.reserve(n);
    }

    /// Intern `s`, which must be new: `None` (nothing interned) if it is not.
    pub fn intern_new(&mut self, s: &str) -> Option<Sym> {
        match self.get(s) {
            Some(_) => None,
            None => Some(self.insert(s)),
        }
    }

    /// Intern `s`, known not to be interned.
    fn insert(&mut self, s: &str) -> Sym {
        let id = Sym(self.ends.len() as u32);
        if !self.dense.insert(s.as_bytes(), id) {
            match pack(s) {
                Some(k) => self.short.insert(k, id),
                None => self.long.insert(s.into(), id),
            };
        }
        self.buf.push_str(s);
        self.ends.push(self.buf.len());
        id
    }

    /// The interned ids, in id order.
    pub fn strings(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.ends.len()).map(|i| self.text(i))
    }

    /// The text of id number `i`.
    #[inline]
    fn text(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    /// Number of ids interned.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no id is interned.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The symbol of `s`, if it is interned (never interns).
    #[inline]
    pub fn get(&self, s: &str) -> Option<Sym> {
        if let Some(sym) = self.dense.get(s.as_bytes()) {
            return Some(sym);
        }
        match pack(s) {
            Some(k) => self.short.get(&k).copied(),
            None => self.long.get(s).copied(),
        }
    }

    /// The id a symbol stands for; empty for [`Sym::NONE`].
    pub fn resolve(&self, id: Sym) -> &str {
        if id.is_none() {
            ""
        } else {
            self.text(id.0 as usize)
        }
    }
}

/// Text cells stored end to end in one buffer (no allocation per cell).
///
/// Where each cell ends is kept in 4 bytes: the low 32 bits of the end offset per row, and,
/// for text past 4 GiB, the rows from which the high bits change (nearly always none).
#[derive(Debug, Clone, Default)]
pub struct TextColumn {
    buf: String,
    /// Low 32 bits of the end offset of each row's text.
    ends: Vec<u32>,
    /// (first row, high 32 bits of the end offsets from that row on), by row; empty while
    /// the text is under 4 GiB.
    highs: Vec<(u32, u32)>,
}

impl TextColumn {
    /// Where the text of row `row` ends in the buffer.
    #[inline]
    fn end(&self, row: usize) -> usize {
        let low = self.ends[row] as usize;
        if self.highs.is_empty() {
            return low;
        }
        let r = row as u32;
        let i = self.highs.partition_point(|h| h.0 <= r);
        let high = if i == 0 { 0 } else { self.highs[i - 1].1 };
        (((high as u64) << 32) | low as u64) as usize
    }

    /// The text of row `row` (empty for an empty cell).
    #[inline]
    pub fn get(&self, row: usize) -> &str {
        let start = if row == 0 { 0 } else { self.end(row - 1) };
        &self.buf[start..self.end(row)]
    }

    /// Record that a row ends at the buffer's present length.
    #[inline]
    fn push_end(&mut self, end: usize) {
        let high = (end as u64 >> 32) as u32;
        if high != self.highs.last().map_or(0, |h| h.1) {
            self.highs.push((self.ends.len() as u32, high));
        }
        self.ends.push(end as u32);
    }

    /// Add a row holding `s`.
    #[inline]
    pub fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        self.push_end(self.buf.len());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of text held.
    pub fn bytes_len(&self) -> usize {
        self.buf.len()
    }

    fn reserve_bytes(&mut self, n: usize) {
        self.buf.reserve(n);
    }

    /// The text of each row, in row order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|r| self.get(r))
    }

    fn truncate(&mut self, n: usize) {
        if n < self.ends.len() {
            let end = if n == 0 { 0 } else { self.end(n - 1) };
            self.ends.truncate(n);
            self.highs.retain(|h| (h.0 as usize) < n);
            self.buf.truncate(end);
        }
    }

    /// Move the rows of `other` here (it keeps its buffers, empty, for reuse).
    fn append(&mut self, other: &mut TextColumn) {
        let base = self.buf.len();
        self.buf.push_str(&other.buf);
        if other.highs.is_empty() && (self.buf.len() as u64) < 1 << 32 {
            // Every end stays under 4 GiB: the low bits are the offsets.
            self.ends
                .extend(other.ends.iter().map(|&e| e + base as u32));
        } else {
            self.ends.reserve(other.ends.len());
            for r in 0..other.ends.len() {
                self.push_end(base + other.end(r));
            }
        }
        other.buf.clear();
        other.ends.clear();
        other.highs.clear();
    }

    fn retain(&mut self, keep: &[bool]) {
        let mut out = TextColumn::default();
        for (r, k) in keep.iter().enumerate() {
            if *k {
                out.push(self.get(r));
            }
        }
        *self = out;
    }
}

impl<S: AsRef<str>> FromIterator<S> for TextColumn {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut c = TextColumn::default();
        for s in iter {
            c.push(s.as_ref());
        }
        c
    }
}

/// Local date-times, narrow: whole seconds since 1970-01-01 00:00:00 in a `u32` (4 bytes a
/// cell instead of chrono's 12) while every value lies between 1970 and 2106; a column with a
/// value outside that range is widened to `i64` seconds. Loaded date-times are always whole
/// seconds (fractions are dropped when read), so nothing is lost.
#[derive(Debug, Clone)]
pub enum DateTimes {
    /// Seconds since 1970-01-01 00:00:00; `u32::MAX` for an empty cell.
    Narrow(Vec<u32>),
    /// Seconds since 1970-01-01 00:00:00; `i64::MIN` for an empty cell.
    Wide(Vec<i64>),
}

impl Default for DateTimes {
    fn default() -> Self {
        DateTimes::Narrow(Vec::new())
    }
}

/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
const UNIX_DAYS_FROM_CE: i64 = 719_163;

/// Days from 1970-01-01 to `d`.
#[inline]
pub(crate) fn unix_day(d: NaiveDate) -> i64 {
    use chrono::Datelike;
    i64::from(d.num_days_from_ce()) - UNIX_DAYS_FROM_CE
}

/// Seconds since 1970-01-01 00:00:00 of a date-time (whole seconds).
#[inline]
pub fn datetime_secs(d: NaiveDateTime) -> i64 {
    use chrono::{Datelike, Timelike};
    (i64::from(d.date().num_days_from_ce()) - UNIX_DAYS_FROM_CE) * 86_400
        + i64::from(d.time().num_seconds_from_midnight())
}

/// The date-time `secs` seconds after 1970-01-01 00:00:00.
#[inline]
pub fn secs_datetime(secs: i64) -> Option<NaiveDateTime> {
    let days = secs.div_euclid(86_400) + UNIX_DAYS_FROM_CE;
    let sod = secs.rem_euclid(86_400) as u32;
    let date = NaiveDate::from_num_days_from_ce_opt(i32::try_from(days).ok()?)?;
    let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(sod, 0)?;
    Some(NaiveDateTime::new(date, time))
}

/// The dates of the narrow range (1970-01-01 on, 49,711 days), by day number: turning a
/// stored date-time back into a chrono value is then one lookup, not a calendar computation
/// (aggregates read millions of them).
#[inline]
fn narrow_days() -> &'static [NaiveDate] {
    static DAYS: std::sync::OnceLock<Vec<NaiveDate>> = std::sync::OnceLock::new();
    DAYS.get_or_init(|| {
        let n = (u32::MAX / 86_400) as usize + 1;
        let first = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        first.iter_days().take(n).collect()
    })
}

/// The date `days` days after 1970-01-01: a lookup for 1970–2106, else a calendar
/// computation.
#[inline]
pub(crate) fn unix_day_date(days: i64) -> Option<NaiveDate> {
    match usize::try_from(days)
        .ok()
        .and_then(|d| narrow_days().get(d))
    {
        Some(&d) => Some(d),
        None => NaiveDate::from_num_days_from_ce_opt(i32::try_from(days + UNIX_DAYS_FROM_CE).ok()?),
    }
}

impl DateTimes {
    /// The date-time of row `row`; `None` for an empty cell.
    #[inline]
    pub fn get(&self, row: usize) -> Option<NaiveDateTime> {
        match self {
            DateTimes::Narrow(v) => {
                let x = v[row];
                if x == u32::MAX {
                    return None;
                }
                let date = *narrow_days().get((x / 86_400) as usize)?;
                let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(x % 86_400, 0)?;
                Some(NaiveDateTime::new(date, time))
            }
            DateTimes::Wide(_) => self.secs(row).and_then(secs_datetime),
        }
    }

    /// The date of row `row`; `None` for an empty cell.
    #[inline]
    pub fn date(&self, row: usize) -> Option<NaiveDate> {
        match self {
            DateTimes::Narrow(v) => {
                let x = v[row];
                if x == u32::MAX {
                    return None;
                }
                narrow_days().get((x / 86_400) as usize).copied()
            }
            DateTimes::Wide(_) => self.get(row).map(|d| d.date()),
        }
    }

    /// Seconds since 1970-01-01 00:00:00 of row `row` (ordered like the date-times);
    /// `None` for an empty cell.
    #[inline]
    pub fn secs(&self, row: usize) -> Option<i64> {
        match self {
            DateTimes::Narrow(v) => {
                let x = v[row];
                (x != u32::MAX).then_some(i64::from(x))
            }
            DateTimes::Wide(v) => {
                let x = v[row];
                (x != i64::MIN).then_some(x)
            }
        }
    }

    /// Add a row.
    #[inline]
    pub fn push(&mut self, d: Option<NaiveDateTime>) {
        self.push_secs(d.map(datetime_secs));
    }

    /// Add a row given as seconds since 1970-01-01 00:00:00.
    #[inline]
    pub fn push_secs(&mut self, secs: Option<i64>) {
        if let DateTimes::Narrow(v) = self {
            match secs {
                None => return v.push(u32::MAX),
                Some(x) if (0..i64::from(u32::MAX)).contains(&x) => return v.push(x as u32),
                Some(_) => self.widen(),
            }
        }
        if let DateTimes::Wide(v) = self {
            v.push(secs.unwrap_or(i64::MIN));
        }
    }

    /// Add rows given as seconds since 1970-01-01 00:00:00, none empty.
    pub fn extend_secs(&mut self, secs: &[i64]) {
        if let DateTimes::Narrow(v) = self
            && secs.iter().all(|&x| (0..i64::from(u32::MAX)).contains(&x))
        {
            v.extend(secs.iter().map(|&x| x as u32));
            return;
        }
        secs.iter().for_each(|&x| self.push_secs(Some(x)));
    }

    /// Switch to `i64` seconds (a value outside 1970–2106 came).
    fn widen(&mut self) {
        if let DateTimes::Narrow(v) = self {
            let mut w = Vec::with_capacity(v.capacity().max(v.len() + 1));
            w.extend(v.iter().map(|&x| {
                if x == u32::MAX {
                    i64::MIN
                } else {
                    i64::from(x)
                }
            }));
            *self = DateTimes::Wide(w);
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            DateTimes::Narrow(v) => v.len(),
            DateTimes::Wide(v) => v.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The date-time of each row, in row order.
    pub fn iter(&self) -> impl Iterator<Item = Option<NaiveDateTime>> + '_ {
        (0..self.len()).map(|r| self.get(r))
    }

    /// The latest date-time of the column.
    pub fn max(&self) -> Option<NaiveDateTime> {
        let m = match self {
            DateTimes::Narrow(v) => v
                .iter()
                .filter(|&&x| x != u32::MAX)
                .max()
                .map(|&x| i64::from(x)),
            DateTimes::Wide(v) => v.iter().filter(|&&x| x != i64::MIN).max().copied(),
        };
        m.and_then(secs_datetime)
    }

    fn reserve(&mut self, n: usize) {
        match self {
            DateTimes::Narrow(v) => v.reserve(n),
            DateTimes::Wide(v) => v.reserve(n),
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            DateTimes::Narrow(v) => v.truncate(n),
            DateTimes::Wide(v) => v.truncate(n),
        }
    }

    /// Move the rows of `other` here (it keeps its buffers, empty, for reuse).
    fn append(&mut self, other: &mut DateTimes) {
        if matches!(other, DateTimes::Wide(_)) {
            self.widen();
        }
        match (self, other) {
            (DateTimes::Narrow(a), DateTimes::Narrow(b)) => a.append(b),
            (DateTimes::Wide(a), DateTimes::Wide(b)) => a.append(b),
            (DateTimes::Wide(a), DateTimes::Narrow(b)) => {
                a.extend(b.iter().map(|&x| {
                    if x == u32::MAX {
                        i64::MIN
                    } else {
                        i64::from(x)
                    }
                }));
                b.clear();
            }
            (DateTimes::Narrow(_), DateTimes::Wide(_)) => {}
        }
    }

    fn retain(&mut self, keep: &[bool]) {
        match self {
            DateTimes::Narrow(v) => retain_rows(v, keep),
            DateTimes::Wide(v) => retain_rows(v, keep),
        }
    }
}

impl FromIterator<Option<NaiveDateTime>> for DateTimes {
    fn from_iter<I: IntoIterator<Item = Option<NaiveDateTime>>>(iter: I) -> Self {
        let mut c = DateTimes::default();
        for d in iter {
            c.push(d);
        }
        c
    }
}

/// Keep only the rows where `keep` is true.
fn retain_rows<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut i = 0;
    v.retain(|_| {
        let k = keep[i];
        i += 1;
        k
    });
}

/// Numbers, 8 bytes a cell: loaded numbers are always finite, so NaN marks an empty cell.
#[derive(Debug, Clone, Default)]
pub struct Numbers(Vec<f64>);

impl Numbers {
    /// The number of row `row`; `None` for an empty cell.
    #[inline]
    pub fn get(&self, row: usize) -> Option<f64> {
        let x = self.0[row];
        (!x.is_nan()).then_some(x)
    }

    /// Add a row (`None`, or a NaN: an empty cell).
    #[inline]
    pub fn push(&mut self, x: Option<f64>) {
        self.0.push(x.unwrap_or(f64::NAN));
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of each row, in row order.
    pub fn iter(&self) -> impl Iterator<Item = Option<f64>> + '_ {
        (0..self.len()).map(|r| self.get(r))
    }
}

impl FromIterator<Option<f64>> for Numbers {
    fn from_iter<I: IntoIterator<Item = Option<f64>>>(iter: I) -> Self {
        Numbers(iter.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}

/// The line (CSV) or row (XLSX) number of each loaded row of a table.
///
/// Rows are nearly always on consecutive lines, so they are kept as runs (the first row of
/// each run and its line); a table whose rows are scattered (many blank or rejected lines
/// between them) keeps one number per row.
#[derive(Debug, Clone)]
pub enum Lines {
    /// Runs of rows on consecutive lines: (first row, its line), by row; `len` rows in all.
    Runs {
        /// The first row of each run and its line, in row order.
        starts: Vec<(u32, u32)>,
        /// Number of rows.
        len: u32,
    },
    /// The line of each row.
    Each(Vec<u32>),
}

impl Default for Lines {
    fn default() -> Self {
        Lines::Runs {
            starts: Vec::new(),
            len: 0,
        }
    }
}

impl Lines {
    /// The line of row `row`.
    #[inline]
    pub fn get(&self, row: usize) -> u32 {
        match self {
            Lines::Each(v) => v[row],
            Lines::Runs { starts, .. } => {
                let row = row as u32;
                let i = starts.partition_point(|s| s.0 <= row).saturating_sub(1);
                let (r0, l0) = starts[i];
                l0 + (row - r0)
            }
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Lines::Each(v) => v.len(),
            Lines::Runs { len, .. } => *len as usize,
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The line of each row, in row order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|r| self.get(r))
    }

    /// Add a row on line `line`.
    #[inline]
    pub fn push(&mut self, line: u32) {
        let Lines::Runs { starts, len } = self else {
            if let Lines::Each(v) = self {
                v.push(line);
            }
            return;
        };
        if let Some(&(r0, l0)) = starts.last()
            && l0.checked_add(*len - r0) == Some(line)
        {
            *len += 1;
            return;
        }
        if starts.len() < 64 || starts.len() * 4 <= *len as usize {
            starts.push((*len, line));
            *len += 1;
            return;
        }
        // Scattered rows: one number each is smaller than a run each.
        let mut v: Vec<u32> = Vec::with_capacity(*len as usize * 2);
        v.extend(self.iter());
        v.push(line);
        *self = Lines::Each(v);
    }

    /// Move the rows of `other` here (it is left empty).
    pub fn append(&mut self, other: &mut Lines) {
        match std::mem::take(other) {
            Lines::Each(mut v) => {
                v.iter().for_each(|&l| self.push(l));
                v.clear();
                *other = Lines::Each(v);
            }
            Lines::Runs { starts, len } => {
                for (i, &(r0, l0)) in starts.iter().enumerate() {
                    let end = starts.get(i + 1).map_or(len, |s| s.0);
                    self.push_run(l0, end - r0);
                }
            }
        }
    }

    /// Add rows on these lines, in order (runs of consecutive lines are taken whole).
    pub fn extend_from_slice(&mut self, lines: &[u32]) {
        let mut rest = lines;
        while let Some(&first) = rest.first() {
            let n = rest
                .iter()
                .zip(0u32..)
                .take_while(|&(&l, i)| first.checked_add(i) == Some(l))
                .count();
            self.push_run(first, n as u32);
            rest = &rest[n..];
        }
    }

    /// Add `n` rows on consecutive lines from `line`.
    pub(crate) fn push_run(&mut self, line: u32, n: u32) {
        if n == 0 {
            return;
        }
        self.push(line);
        match self {
            Lines::Runs { len, .. } => *len += n - 1,
            Lines::Each(v) => v.extend((1..n).map(|i| line + i)),
        }
    }

    /// Drop rows from `n` on.
    pub fn truncate(&mut self, n: usize) {
        match self {
            Lines::Each(v) => v.truncate(n),
            Lines::Runs { starts, len } => {
                if n < *len as usize {
                    starts.retain(|s| (s.0 as usize) < n);
                    *len = n as u32;
                }
            }
        }
    }

    /// Keep only the rows where `keep` is true.
    pub fn retain(&mut self, keep: &[bool]) {
        let mut out = Lines::default();
        for (r, k) in keep.iter().enumerate() {
            if *k {
                out.push(self.get(r));
            }
        }
        *self = out;
    }

    fn reserve(&mut self, n: usize) {
        if let Lines::Each(v) = self {
            v.reserve(n);
        }
    }
}

impl FromIterator<u32> for Lines {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut l = Lines::default();
        for x in iter {
            l.push(x);
        }
        l
    }
}

/// The values of one column.
#[derive(Debug, Clone)]
pub enum ColumnData {
    /// Interned ids; [`Sym::NONE`] for an empty cell.
    Id(Vec<Sym>),
    /// Text; an empty cell is empty text.
    Text(TextColumn),
    /// Dates; `None` for an empty cell.
    Date(Vec<Option<NaiveDate>>),
    /// Local date-times (whole seconds, stored narrow: see [`DateTimes`]).
    DateTime(DateTimes),
    /// Booleans; `None` for an empty cell.
    Bool(Vec<Option<bool>>),
    /// Numbers (8 bytes a cell: see [`Numbers`]).
    Number(Numbers),
    /// Index into the column's enum values.
    Enum(Vec<Option<u8>>),
}

impl ColumnData {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Id(v) => v.len(),
            ColumnData::Text(v) => v.len(),
            ColumnData::Date(v) => v.len(),
            ColumnData::DateTime(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Number(v) => v.len(),
            ColumnData::Enum(v) => v.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room for `n` more rows.
    fn reserve(&mut self, n: usize) {
        match self {
            ColumnData::Id(v) => v.reserve(n),
            ColumnData::Text(v) => v.ends.reserve(n),
            ColumnData::Date(v) => v.reserve(n),
            ColumnData::DateTime(v) => v.reserve(n),
            ColumnData::Bool(v) => v.reserve(n),
            ColumnData::Number(v) => v.0.reserve(n),
            ColumnData::Enum(v) => v.reserve(n),
        }
    }

    /// Drop rows from `n` on.
    fn truncate(&mut self, n: usize) {
        match self {
            ColumnData::Id(v) => v.truncate(n),
            ColumnData::Text(v) => v.truncate(n),
            ColumnData::Date(v) => v.truncate(n),
            ColumnData::DateTime(v) => v.truncate(n),
            ColumnData::Bool(v) => v.truncate(n),
            ColumnData::Number(v) => v.0.truncate(n),
            ColumnData::Enum(v) => v.truncate(n),
        }
    }

    /// Add the rows of `other` (a column of the same type).
    /// Move the rows of `other` (a column of the same type) here; `other` keeps its
    /// buffers, empty, for reuse.
    fn append(&mut self, other: &mut ColumnData) {
        match (self, other) {
            (ColumnData::Id(a), ColumnData::Id(b)) => a.append(b),
            (ColumnData::Text(a), ColumnData::Text(b)) => a.append(b),
            (ColumnData::Date(a), ColumnData::Date(b)) => a.append(b),
            (ColumnData::DateTime(a), ColumnData::DateTime(b)) => a.append(b),
            (ColumnData::Bool(a), ColumnData::Bool(b)) => a.append(b),
            (ColumnData::Number(a), ColumnData::Number(b)) => a.0.append(&mut b.0),
            (ColumnData::Enum(a), ColumnData::Enum(b)) => a.append(b),
            _ => debug_assert!(false, "columns of one table keep their types"),
        }
    }

    /// Keep only the rows where `keep` is true.
    fn retain(&mut self, keep: &[bool]) {
        match self {
            ColumnData::Id(v) => retain_rows(v, keep),
            ColumnData::Text(v) => v.retain(keep),
            ColumnData::Date(v) => retain_rows(v, keep),
            ColumnData::DateTime(v) => v.retain(keep),
            ColumnData::Bool(v) => retain_rows(v, keep),
            ColumnData::Number(v) => retain_rows(&mut v.0, keep),
            ColumnData::Enum(v) => retain_rows(v, keep),
        }
    }

    /// The date of a date or date-time cell.
    #[inline]
    pub fn date(&self, row: usize) -> Option<NaiveDate> {
        match self {
            ColumnData::Date(v) => v[row],
            ColumnData::DateTime(v) => v.date(row),
            _ => None,
        }
    }
}

/// A loaded table: typed columns in schema order, plus where each row came from.
#[derive(Debug)]
pub struct Table {
    /// The table's name in the schema (`members`).
    pub name: String,
    /// The file (and sheet) the rows came from; empty for an absent optional table.
    pub file: String,
    /// Line (CSV) or row (XLSX) number of each loaded row.
    pub lines: Lines,
    /// One column per column of the table's schema, in schema order; one value per loaded row.
    pub columns: Vec<ColumnData>,
    /// For tables with a key: the row of each key, by symbol number (`u32::MAX`: no row;
    /// see [`Table::row_of`], and [`RefRows`] to follow references); symbols added after
    /// this table loaded are past its end.
    pub row_by_sym: Vec<u32>,
}

/// The rows a reference column points at in the table it references, found from the ids
/// (each loaded reference is a key of that table; the row number is not stored per row).
#[derive(Debug, Clone, Copy)]
pub struct RefRows<'a> {
    ids: &'a [Sym],
    by_sym: &'a [u32],
}

impl<'a> RefRows<'a> {
    /// Column `ci` of `table` as references into `target` (the table it references);
    /// `None` when the column does not hold ids.
    pub fn new(table: &'a Table, ci: usize, target: &'a Table) -> Option<RefRows<'a>> {
        match &table.columns[ci] {
            ColumnData::Id(ids) => Some(RefRows {
                ids,
                by_sym: &target.row_by_sym,
            }),
            _ => None,
        }
    }

    /// The row of the referenced table that row `row` points at (`u32::MAX`: none).
    #[inline]
    pub fn get(&self, row: usize) -> u32 {
        self.by_sym
            .get(self.ids[row].0 as usize)
            .copied()
            .unwrap_or(u32::MAX)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The row each row points at, in row order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|r| self.get(r))
    }
}

impl Table {
    /// The row whose key is `key` (tables with a key).
    #[inline]
    pub fn row_of(&self, key: Sym) -> Option<u32> {
        self.row_by_sym
            .get(key.0 as usize)
            .copied()
            .filter(|r| *r != u32::MAX)
    }

    /// The latest date in the table's date and date-time columns.
    pub fn latest_date(&self) -> Option<NaiveDate> {
        self.columns
            .iter()
            .filter_map(|c| match c {
                ColumnData::Date(v) => v.iter().flatten().max().copied(),
                ColumnData::DateTime(v) => v.max().map(|d| d.date()),
                _ => None,
            })
            .max()
    }

    /// Number of loaded rows.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no row loaded.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// A row that could not be loaded, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    /// The table's name in the schema.
    pub table: String,
    /// The file (and sheet) the row is in.
    pub file: String,
    /// Line (CSV) or row (XLSX) number of the row.
    pub line: u32,
    /// Column (English name and label) the problem is in, if one.
    pub column: Option<String>,
    /// The offending value as read, if the problem is one value.
    pub value: Option<String>,
    /// Why the row was rejected, for people.
    pub reason: String,
    /// The row's fields as read.
    #[serde(skip)]
    pub raw: Vec<String>,
}

/// Something worth knowing that did not stop a row (exact duplicate, ignored column).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Warning {
    /// The file (and sheet) it is about.
    pub file: String,
    /// Line (CSV) or row (XLSX) number; `None` when it is about the file as a whole.
    pub line: Option<u32>,
    /// What was found, for people.
    pub message: String,
}

/// Rows read, loaded and rejected for one table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableStats {
    /// The table's name in the schema.
    pub table: String,
    /// The file (and sheet) read; `(absent, optional)` for an optional table with no file.
    pub file: String,
    /// How the file was decoded: `UTF-8`, `GB18030` or `XLSX`; empty when there was no file.
    pub encoding: String,
    /// Data rows read (the header and skipped title lines not counted).
    pub read: u64,
    /// Rows loaded into the table.
    pub loaded: u64,
    /// Rows rejected (each listed in [`Dataset::rejects`]).
    pub rejected: u64,
}

/// A table that could not be read at all: the run stops.
#[derive(Debug, Clone)]
pub struct FatalError {
    /// The file (and sheet), or the data folder, that could not be read.
    pub file: String,
    /// What is wrong, for people.
    pub message: String,
}

impl std::fmt::Display for FatalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// A dataset that cannot be loaded: the problems that stop it, one per table (or one for the
/// data folder).
///
/// Displayed as `rulebook` lists them: one `file: message` line per problem (the command
/// prefixes each with `error: `), then the line with their count.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", show_problems(.problems))]
pub struct Error {
    /// The problems, in the order they were found.
    pub problems: Vec<FatalError>,
}

impl Error {
    /// The number of problems.
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    /// Whether there are no problems (never so for an error a load returns).
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, FatalError> {
        self.problems.iter()
    }
}

impl From<Vec<FatalError>> for Error {
    fn from(problems: Vec<FatalError>) -> Self {
        Error { problems }
    }
}

impl<'a> IntoIterator for &'a Error {
    type Item = &'a FatalError;
    type IntoIter = std::slice::Iter<'a, FatalError>;

    fn into_iter(self) -> Self::IntoIter {
        self.problems.iter()
    }
}

/// [`Error`]'s text: each problem on a line, then how many there are.
fn show_problems(problems: &[FatalError]) -> String {
    let mut out = String::new();
    for p in problems {
        out.push_str(&format!("{p}\n"));
    }
    out.push_str(&format!(
        "the data cannot be evaluated: {} file problem(s)",
        problems.len()
    ));
    out
}

/// A loaded dataset.
#[derive(Debug)]
pub struct Dataset {
    /// The loaded tables by schema name.
    pub tables: IndexMap<String, Table>,
    /// The ids in the id columns of every table, interned once for the whole dataset (a key
    /// column that is not looked up by id is kept as text, see `TableSchema::indexed`).
    pub ids: Interner,
    /// Rows read, loaded and rejected, per table.
    pub stats: Vec<TableStats>,
    /// Every row that could not be loaded.
    pub rejects: Vec<Reject>,
    /// Things worth knowing that did not stop a row.
    pub warnings: Vec<Warning>,
    /// Set when the dataset was loaded for one subject ([`load_focused`]): some tables hold
    /// only the rows that matter to it.
    pub focus: Option<FocusInfo>,
}

impl Dataset {
    /// The latest date anywhere in the loaded data (the default `--as-of`). For a dataset
    /// loaded for one subject, with the rows left out (when that was asked for).
    pub fn latest_date(&self) -> Option<NaiveDate> {
        debug_assert!(self.focus.as_ref().is_none_or(|f| f.latest_known));
        let mut best: Option<NaiveDate> = self.focus.as_ref().and_then(|f| f.latest_left_out);
        for m in self.tables.values().filter_map(Table::latest_date) {
            best = Some(best.map_or(m, |b| b.max(m)));
        }
        best
    }

    /// Column `ci` of table `table`, a reference to table `target`, as the rows it points
    /// at; `None` when either table is not loaded or the column holds no ids.
    pub fn ref_rows(&self, table: &str, ci: usize, target: &str) -> Option<RefRows<'_>> {
        RefRows::new(self.tables.get(table)?, ci, self.tables.get(target)?)
    }

    /// Data rows read, all tables together.
    pub fn total_read(&self) -> u64 {
        self.stats.iter().map(|s| s.read).sum()
    }
    /// Rows loaded, all tables together.
    pub fn total_loaded(&self) -> u64 {
        self.stats.iter().map(|s| s.loaded).sum()
    }
    /// Rows rejected, all tables together.
    pub fn total_rejected(&self) -> u64 {
        self.stats.iter().map(|s| s.rejected).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        crate::dates::parse_datetime(s).unwrap()
    }

    /// `pack` gives each length's bytes at bits 8i and the length in the top byte.
    #[test]
    fn pack_puts_bytes_and_length_in_place() {
        let ascii = "M0123456789abcdefg";
        let wide = "甲乙丙丁戊己";
        let texts = (0..=ascii.len())
            .map(|n| &ascii[..n])
            .chain((1..=6).map(|c| &wide[..3 * c]));
        for s in texts {
            let n = s.len();
            let want = (n <= 15).then(|| {
                let mut k = [0u8; 16];
                k[..n].copy_from_slice(s.as_bytes());
                k[15] = n as u8;
                u128::from_le_bytes(k)
            });
            assert_eq!(pack(s), want, "{s}");
        }
    }

    /// Every id comes back as itself and is interned once, whichever way it is kept: by
    /// number (a prefix and digits, dense enough), packed, or as text.
    #[test]
    fn ids_are_interned_once_in_every_form() {
        let mut ids = Interner::default();
        let mut all: Vec<String> = Vec::new();
        // Members in order, a far-off number (kept hashed), zero-padded widths told apart,
        // a long prefix, ten digits, a non-ASCII prefix, a long id, no digits.
        all.extend((1..=3000).map(|i| format!("M{i:08}")));
        all.extend(
            [
                "M90000000",
                "M1",
                "M01",
                "M001",
                "ABCDEFG1",
                "X1234567890",
                "甲01",
            ]
            .map(String::from),
        );
        all.push("CM-branch-0000000000000001".into());
        all.extend(["UB", "1", "007"].map(String::from));
        // More prefixes than the dense tables hold.
        all.extend((0..12).map(|p| format!("P{p}x{p:03}")));
        for (i, id) in all.iter().enumerate() {
            assert_eq!(ids.intern(id), Sym(i as u32), "{id}");
        }
        // Once the members' table has grown, the far-off number is still found (in the
        // hash), not interned again.
        let before = all.len();
        all.extend((3001..=30000).map(|i| format!("M{i:08}")));
        for id in &all[before..] {
            ids.intern(id);
        }
        assert_eq!(ids.intern("M90000000"), Sym(3000));
        assert_eq!(ids.intern_new("M90000000"), None);
        assert_eq!(ids.len(), all.len());
        for (i, id) in all.iter().enumerate() {
            assert_eq!(ids.get(id), Some(Sym(i as u32)), "{id}");
            assert_eq!(ids.intern_new(id), None, "{id}");
            assert_eq!(ids.resolve(Sym(i as u32)), id);
        }
        assert!(ids.strings().eq(all.iter().map(String::as_str)));
        for absent in [
            "M00000000",
            "M00030001",
            "M0000001",
            "M000000001",
            "m00000001",
            "",
            "P99x099",
        ] {
            assert_eq!(ids.get(absent), None, "{absent}");
        }
        assert_eq!(ids.dense.keys.len(), Dense::PATTERNS);
        // The members by number (30,000 of them), the far-off one hashed.
        assert_eq!(ids.dense.counts[0], 30000);
        assert!(ids.short.contains_key(&pack("M90000000").unwrap()));
    }

    #[test]
    fn datetimes_narrow_and_wide() {
        let mut c = DateTimes::default();
        c.push(Some(dt("2020-02-07 09:30:15")));
        c.push(None);
        c.push(Some(dt("1970-01-01 00:00:00")));
        assert!(matches!(c, DateTimes::Narrow(_)));
        assert_eq!(c.get(0), Some(dt("2020-02-07 09:30:15")));
        assert_eq!(c.get(1), None);
        assert_eq!(c.get(2), Some(dt("1970-01-01 00:00:00")));
        // A date-time outside 1970–2106 widens the column; nothing changes.
        let mut other = DateTimes::default();
        other.push(Some(dt("1969-12-31 23:59:59")));
        other.push(Some(dt("9999-12-31 23:59:59")));
        other.push(None);
        assert!(matches!(other, DateTimes::Wide(_)));
        c.append(&mut other);
        assert!(matches!(c, DateTimes::Wide(_)));
        let all: Vec<_> = c.iter().collect();
        assert_eq!(
            all,
            vec![
                Some(dt("2020-02-07 09:30:15")),
                None,
                Some(dt("1970-01-01 00:00:00")),
                Some(dt("1969-12-31 23:59:59")),
                Some(dt("9999-12-31 23:59:59")),
                None
            ]
        );
        assert_eq!(c.max(), Some(dt("9999-12-31 23:59:59")));
        assert!(c.secs(3) < c.secs(2));
        c.retain(&[true, false, true, true, false, true]);
        assert_eq!(c.len(), 4);
        assert_eq!(c.get(2), Some(dt("1969-12-31 23:59:59")));
        c.truncate(1);
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            vec![Some(dt("2020-02-07 09:30:15"))]
        );
        let mut n = DateTimes::default();
        for secs in [0, 86_399, 86_400, 951_782_400, 4_294_967_294] {
            n.push_secs(Some(secs));
            let want = secs_datetime(secs);
            assert_eq!(n.get(n.len() - 1), want, "{secs}");
            assert_eq!(n.date(n.len() - 1), want.map(|d| d.date()), "{secs}");
        }
        for s in [
            "0000-01-01 00:00:00",
            "2106-02-07 06:28:14",
            "2106-02-07 06:28:15",
        ] {
            let d = dt(s);
            assert_eq!(secs_datetime(datetime_secs(d)), Some(d), "{s}");
        }
    }

    #[test]
    fn lines_as_runs_or_each() {
        let mut l = Lines::default();
        for x in [2, 3, 4, 6, 7] {
            l.push(x);
        }
        assert!(matches!(&l, Lines::Runs { starts, .. } if starts.len() == 2));
        let mut more: Lines = [8, 9, 20].into_iter().collect();
        l.append(&mut more);
        assert!(more.is_empty());
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![2, 3, 4, 6, 7, 8, 9, 20]);
        l.truncate(4);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![2, 3, 4, 6]);
        l.retain(&[false, true, true, true]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![3, 4, 6]);
        // Scattered rows: one number each.
        let scattered: Lines = (0..1000u32).map(|i| 3 * i + 2).collect();
        assert!(matches!(scattered, Lines::Each(_)));
        assert_eq!(scattered.get(999), 2999);
        let mut runs: Lines = (2..10).collect();
        let mut s2 = scattered.clone();
        runs.append(&mut s2);
        assert_eq!(runs.len(), 1008);
        assert_eq!(runs.get(7), 9);
        assert_eq!(runs.get(8), 2);
    }

    /// Lines taken a slice at a time are the lines pushed one at a time.
    #[test]
    fn lines_from_a_slice() {
        let near_end = [u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1];
        let scattered: Vec<u32> = (0..1000u32).map(|i| 3 * i + 2).collect();
        let cases: [&[u32]; 6] = [
            &[],
            &[5],
            &[2, 3, 4, 6, 7, 7, 8, 1],
            &near_end,
            &scattered,
            &[9, 10, 11, 12, 13, 40, 41],
        ];
        for first in cases {
            for second in cases {
                let mut one: Lines = first.iter().copied().collect();
                second.iter().for_each(|&l| one.push(l));
                let mut bulk = Lines::default();
                bulk.extend_from_slice(first);
                bulk.extend_from_slice(second);
                assert_eq!(
                    bulk.iter().collect::<Vec<_>>(),
                    one.iter().collect::<Vec<_>>()
                );
                assert_eq!(
                    matches!(bulk, Lines::Each(_)),
                    matches!(one, Lines::Each(_))
                );
            }
        }
    }

    /// Date-times taken a slice at a time stay narrow while they can, and widen when not.
    #[test]
    fn date_times_from_a_slice() {
        let mut d = DateTimes::default();
        d.extend_secs(&[0, 86_400, i64::from(u32::MAX) - 1]);
        assert!(matches!(d, DateTimes::Narrow(_)));
        d.extend_secs(&[5, -1, i64::from(u32::MAX)]);
        assert!(matches!(d, DateTimes::Wide(_)));
        let secs: Vec<_> = (0..d.len()).map(|r| d.secs(r)).collect();
        let want = [
            0,
            86_400,
            i64::from(u32::MAX) - 1,
            5,
            -1,
            i64::from(u32::MAX),
        ];
        assert_eq!(secs, want.map(Some));
    }

    /// A day number's date is chrono's, inside the looked-up range and outside it.
    #[test]
    fn dates_of_day_numbers() {
        for days in [
            -800_000, -719_163, -1, 0, 1, 18_262, 49_709, 49_710, 49_711, 2_000_000,
        ] {
            let want = NaiveDate::from_num_days_from_ce_opt(
                i32::try_from(days + UNIX_DAYS_FROM_CE).unwrap(),
            );
            assert_eq!(unix_day_date(days), want, "{days}");
        }
        assert_eq!(unix_day_date(i64::MAX / 2), None);
    }

    #[test]
    fn text_and_numbers() {
        let mut t: TextColumn = ["a", "", "bc"].into_iter().collect();
        let mut u: TextColumn = ["d", "ef"].into_iter().collect();
        t.append(&mut u);
        assert_eq!(t.iter().collect::<Vec<_>>(), vec!["a", "", "bc", "d", "ef"]);
        t.truncate(3);
        assert_eq!(t.get(2), "bc");
        assert_eq!(t.bytes_len(), 3);
        let n: Numbers = [Some(1.5), None, Some(-0.0)].into_iter().collect();
        assert_eq!(
            n.iter().collect::<Vec<_>>(),
            vec![Some(1.5), None, Some(-0.0)]
        );
    }

    #[test]
    fn packed_ids() {
        for s in ["", "M", "M00000042", "CM000175", "123456789012345", "社区"] {
            let mut k = (s.len() as u128) << 120;
            for (i, &c) in s.as_bytes().iter().enumerate() {
                k |= u128::from(c) << (8 * i);
            }
            assert_eq!(pack(s), Some(k), "{s}");
        }
        assert_eq!(pack("1234567890123456"), None);
    }

    #[test]
    fn narrow_cells() {
        assert_eq!(std::mem::size_of::<Option<NaiveDate>>(), 4);
        assert_eq!(std::mem::size_of::<Option<bool>>(), 1);
    }
}
