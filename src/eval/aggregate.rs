//! Native, per-subject aggregates: rows of a table are grouped by subject once (following
//! references, e.g. a service → its member → the member's branch), then each declared
//! aggregate is one pass over the subject's rows with its filters.

use super::value::{Scalar, Values};
use crate::calendar::Calendar;
use crate::data::{ColumnData, Dataset, DateTimes, RefRows, Sym, Table, datetime_secs};
use crate::policy::model::AggOp;
use crate::policy::{Aggregate, Cond, PolicySet, ValueRef};
use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

/// Rows of a table grouped by subject: `rows[offsets[s - first]..offsets[s - first + 1]]`
/// belong to subject `s`. All subjects (`first` 0) or one (`rulebook explain`).
pub struct Groups {
    pub first: usize,
    pub offsets: Vec<u32>,
    pub rows: Vec<u32>,
}

impl Groups {
    pub fn of(&self, subject: usize) -> &[u32] {
        let s = subject - self.first;
        &self.rows[self.offsets[s] as usize..self.offsets[s + 1] as usize]
    }
}

/// The reference columns `group` follows from a row of `start` along the `by` path to the
/// subject, as the target rows they point at (`u32::MAX`: no row). A row reaches the
/// subject row given by applying them in turn; with none, a row's own number is the subject
/// row. `None` when a table on the way is not at hand (`table` gives the loaded tables).
pub fn path_chain<'t>(
    schema: &crate::policy::Schema,
    table: &dyn Fn(&str) -> Option<&'t Table>,
    start: &str,
    by: &[String],
    subject_table: &str,
) -> Option<Vec<RefRows<'t>>> {
    let mut chain = Vec::new();
    let mut cur_name = start;
    for step in by {
        let ts = schema.tables.get(cur_name)?;
        let Some(ci) = ts.column(step) else { break };
        if cur_name == subject_table && ts.key == Some(ci) {
            break;
        }
        let cur = table(cur_name)?;
        let Some((next, _)) = ts.columns[ci]
            .references
            .as_deref()
            .and_then(|n| schema.tables.get_key_value(n))
        else {
            break;
        };
        let Some(refs) = RefRows::new(cur, ci, table(next.as_str())?) else {
            break;
        };
        chain.push(refs);
        cur_name = next.as_str();
    }
    Some(chain)
}

/// The row a row `r` reaches through `chain` (`u32::MAX`: none).
#[inline]
pub fn follow(chain: &[RefRows<'_>], r: u32) -> u32 {
    let mut s = r;
    for refs in chain {
        if s == u32::MAX {
            break;
        }
        s = refs.get(s as usize);
    }
    s
}

fn chain_of<'d>(
    data: &'d Dataset,
    policy: &PolicySet,
    agg: &Aggregate,
    subject_table: &str,
) -> Vec<RefRows<'d>> {
    path_chain(
        &policy.schema,
        &|n| data.tables.get(n),
        &agg.table,
        &agg.by,
        subject_table,
    )
    .expect("every table of the schema is loaded")
}

/// Group the rows of `table` by the subject reached through the `by` path.
pub fn group(
    data: &Dataset,
    policy: &PolicySet,
    agg: &Aggregate,
    subject_table: &str,
    n_subjects: usize,
) -> Groups {
    let table = &data.tables[agg.table.as_str()];
    let chain = chain_of(data, policy, agg, subject_table);
    let subject_of: Vec<u32> = (0..table.len() as u32).map(|r| follow(&chain, r)).collect();
    let mut counts = vec![0u32; n_subjects + 1];
    for &s in &subject_of {
        if (s as usize) < n_subjects {
            counts[s as usize + 1] += 1;
        }
    }
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    let mut fill = counts.clone();
    let mut rows = vec![0u32; counts[n_subjects] as usize];
    for (r, &s) in subject_of.iter().enumerate() {
        if (s as usize) < n_subjects {
            rows[fill[s as usize] as usize] = r as u32;
            fill[s as usize] += 1;
        }
    }
    Groups {
        first: 0,
        offsets: counts,
        rows,
    }
}

/// The rows of `table` that reach subject row `subject` through the `by` path, as
/// [`group`] finds them, without grouping the rest: from the subject back along the path,
/// the rows of each table that lead to it.
pub fn group_one(
    data: &Dataset,
    policy: &PolicySet,
    agg: &Aggregate,
    subject_table: &str,
    n_subjects: usize,
    subject: usize,
) -> Groups {
    let table = &data.tables[agg.table.as_str()];
    let chain = chain_of(data, policy, agg, subject_table);
    let rows = if subject >= n_subjects {
        Vec::new()
    } else {
        // `wanted[x]`: row x of the current level leads to the subject.
        let mut wanted = Bits::one(subject);
        for refs in chain.iter().rev() {
            let mut w = Bits::default();
            for (x, t) in refs.iter().enumerate() {
                if t != u32::MAX && wanted.get(t as usize) {
                    w.set(x);
                }
            }
            wanted = w;
        }
        (0..table.len())
            .filter(|&r| wanted.get(r))
            .map(|r| r as u32)
            .collect()
    };
    Groups {
        first: subject,
        offsets: vec![0, rows.len() as u32],
        rows,
    }
}

/// A growable set of row numbers.
#[derive(Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn one(i: usize) -> Bits {
        let mut b = Bits::default();
        b.set(i);
        b
    }
    fn set(&mut self, i: usize) {
        if self.0.len() <= i / 64 {
            self.0.resize(i / 64 + 1, 0);
        }
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// A filter value resolved as far as possible before the subjects are known.
#[derive(Debug, Clone)]
pub enum PVal {
    Fixed(Scalar),
    Subject(usize),
    Agg(usize),
}

#[derive(Debug, Clone)]
pub enum Test {
    Is(PVal),
    IsNot(PVal),
    In(Vec<PVal>),
    NotIn(Vec<PVal>),
    Within(usize),
    From(PVal),
    Until(PVal),
    Weekday(u8),
    TimeFrom(NaiveTime),
    TimeBefore(NaiveTime),
    Present(bool),
    WorkingDay(bool),
    /// The span from the column to column `end` overlaps working hours (or not).
    WorkingTime {
        overlaps: bool,
        end: usize,
    },
}

#[derive(Debug, Clone)]
pub struct PFilter {
    pub col: usize,
    pub test: Test,
    /// Index of the filter in the aggregate's `where` list.
    pub src: usize,
    /// The test on the column's own representation, when it is the same for every subject.
    pub fast: Option<Fast>,
}

/// A test decided on a column's stored representation, exactly as the general test decides it
/// on cells: an enum cell by a set of its value numbers, an id by its symbol, a date or a
/// narrow date-time by a range of days or seconds. Aggregates run it on tens of millions of
/// rows; the general test builds a value per row and compares enum values by their text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fast {
    /// No row passes.
    Never,
    /// Every row passes.
    Always,
    /// An enum cell whose value number is in the set, or an empty cell when `none`.
    Enum { set: [u64; 4], none: bool },
    /// A yes/no cell: passes when it is yes and `yes`, no and `no`, or empty and `none`.
    Bool { yes: bool, no: bool, none: bool },
    /// An id cell holding this symbol.
    IdIs(Sym),
    /// An id cell not holding this symbol (an empty cell passes).
    IdIsNot(Sym),
    /// A date cell from the first to the last day, both included.
    Days(NaiveDate, NaiveDate),
    /// A narrow date-time cell with stored seconds in `lo..hi` (an empty cell is `u32::MAX`,
    /// never below `hi`).
    Secs(u32, u32),
}

/// An aggregate ready to run: filters resolved, columns as indexes.
pub struct Prepared {
    pub op: AggOp,
    pub table: usize,
    pub filters: Vec<PFilter>,
    pub column: Option<usize>,
    pub end_column: Option<usize>,
    pub pick: Option<usize>,
    pub except_days: Option<usize>,
    /// Time covered by overlapping rows counts once.
    pub merge_overlaps: bool,
    pub lineage: bool,
    /// The working calendar and the working hours of the run (`None`: no working time).
    pub calendar: std::sync::Arc<crate::calendar::Calendar>,
    pub work_hours: Option<(NaiveTime, NaiveTime)>,
}

impl Prepared {
    /// Everything the aggregate's values depend on besides its rows, as text (see
    /// [`super::reuse`]): two equal keys on one dataset give equal values.
    pub fn key(&self) -> String {
        // Every field, so that a new one cannot be forgotten here.
        let Prepared {
            op,
            table,
            filters,
            column,
            end_column,
            pick,
            except_days,
            merge_overlaps,
            lineage,
            calendar,
            work_hours,
        } = self;
        format!(
            "{op:?} {table} {filters:?} {column:?} {end_column:?} {pick:?} {except_days:?} \
             {merge_overlaps} {lineage} {work_hours:?} {}",
            calendar.digest()
        )
    }
}

/// A period for one subject: inclusive dates, `None` when it cannot be known (empty).
pub type Span = Option<(NaiveDate, NaiveDate)>;

/// The value of one aggregate for one subject.
#[derive(Debug, Clone, Default)]
pub enum AggValue {
    #[default]
    Unit,
    Scalar(Scalar),
    // The lists behind one thin pointer, so that a value is 16 bytes (every subject holds
    // one per aggregate).
    Days(Box<Box<[NaiveDate]>>),
    Rows(Box<Box<[u32]>>),
}

// Every subject holds one value per aggregate of its kind: keep them small.
const _: () = assert!(std::mem::size_of::<AggValue>() == 16);

impl AggValue {
    pub fn scalar(&self) -> Scalar {
        match self {
            AggValue::Scalar(s) => s.clone(),
            _ => Scalar::None,
        }
    }
}

pub struct SubjectCtx<'a> {
    pub subject_row: usize,
    pub subject_table: &'a Table,
    pub subject_table_idx: usize,
    /// Aggregate values computed so far for this subject (by global aggregate index).
    pub values: &'a [AggValue],
    /// Period spans for this subject (by period index).
    pub periods: &'a [Span],
}

fn resolve(v: &PVal, cx: &SubjectCtx) -> Scalar {
    match v {
        PVal::Fixed(s) => s.clone(),
        PVal::Subject(c) => {
            Values::cell(cx.subject_table, cx.subject_table_idx, *c, cx.subject_row)
        }
        PVal::Agg(a) => cx.values[*a].scalar(),
    }
}

/// Buffers [`compute`] fills for each subject and aggregate, kept from one to the next
/// (it runs millions of times).
#[derive(Default)]
pub struct Scratch {
    /// The rows that pass the filters tested so far.
    pass: Vec<u32>,
    used: Vec<u32>,
}

impl Scratch {
    /// The rows the last [`compute`] used.
    pub fn used(&self) -> &[u32] {
        &self.used
    }
}

/// Compute one aggregate for one subject over its rows; returns the value, and puts the
/// rows it used in `scratch` (see [`Scratch::used`]).
pub fn compute<'p>(
    p: &'p Prepared,
    table: &'p Table,
    rows: &[u32],
    cx: &SubjectCtx,
    vals: &Values,
    scratch: &mut Scratch,
) -> AggValue {
    let Scratch { pass, used } = scratch;
    used.clear();
    let except: &[NaiveDate] = match p.except_days.map(|i| &cx.values[i]) {
        Some(AggValue::Days(d)) => d,
        _ => &[],
    };
    // The rows that pass, a filter at a time (each a loop of one kind of test), in row
    // order; a filter's values for this subject are resolved only when rows are left.
    pass.clear();
    pass.extend_from_slice(rows);
    for f in &p.filters {
        if pass.is_empty() {
            break;
        }
        let column = &table.columns[f.col];
        match f.fast {
            Some(fast) => retain_fast(column, pass, fast),
            None => match rtest(f, cx, table, p, vals) {
                RTest::Fast(fast) => retain_fast(column, pass, fast),
                t => pass.retain(|&r| slow_test(column, r as usize, &t, vals, p.table, f.col)),
            },
        }
    }
    let mut acc = Acc::default();
    for &r in pass.iter() {
        if acc.add(p, table, r as usize, vals, except) && (p.lineage || p.op == AggOp::Records) {
            used.push(r);
        }
    }
    acc.finish(p, table, vals, used)
}

/// What an aggregate has gathered from the rows that passed its conditions.
#[derive(Default)]
struct Acc {
    count: i64,
    sum: f64,
    distinct: Vec<Scalar>,
    /// Whole seconds, added exactly: 3 × 6 h 40 min is 20 h, not 19.999….
    seconds: i64,
    /// Spans (seconds since 1970) kept to merge overlaps before they are summed.
    spans: Vec<(i64, i64)>,
    days: Vec<NaiveDate>,
    /// The smallest or largest value so far, and its row.
    best: Option<(Scalar, u32)>,
}

impl Acc {
    /// Take row `r` into the aggregate; whether it counts as a row the value used (a row
    /// without the value, or a min/max candidate, does not).
    #[inline]
    fn add(
        &mut self,
        p: &Prepared,
        table: &Table,
        r: usize,
        vals: &Values,
        except: &[NaiveDate],
    ) -> bool {
        match p.op {
            AggOp::Count | AggOp::Exists | AggOp::Records => self.count += 1,
            AggOp::CountDistinct => {
                let Some(c) = p.column else { return false };
                let v = Values::cell(table, p.table, c, r);
                if matches!(v, Scalar::None) {
                    return false;
                }
                self.distinct.push(v);
            }
            AggOp::SumWorkingHours => {
                if let (
                    Some(ColumnData::DateTime(s)),
                    Some(ColumnData::DateTime(e)),
                    Some((ws, we)),
                ) = (
                    p.column.map(|c| &table.columns[c]),
                    p.end_column.map(|c| &table.columns[c]),
                    p.work_hours,
                ) && let (Some(s), Some(e)) = (s.secs(r), e.secs(r))
                {
                    if p.merge_overlaps {
                        self.spans.push((s, e));
                    } else {
                        self.seconds += working_secs(&p.calendar, (s, e), (ws, we));
                    }
                }
            }
            AggOp::CountDays | AggOp::Days => {
                let Some(d) = p.column.and_then(|c| table.columns[c].date(r)) else {
                    return false;
                };
                if except.binary_search(&d).is_ok() {
                    return false;
                }
                self.days.push(d);
            }
            AggOp::Sum => {
                if let Some(ColumnData::Number(v)) = p.column.map(|c| &table.columns[c])
                    && let Some(x) = v.get(r)
                {
                    self.sum += x;
                }
            }
            AggOp::SumHours => {
                if let (Some(ColumnData::DateTime(s)), Some(ColumnData::DateTime(e))) = (
                    p.column.map(|c| &table.columns[c]),
                    p.end_column.map(|c| &table.columns[c]),
                ) && let (Some(s), Some(e)) = (s.secs(r), e.secs(r))
                {
                    if p.merge_overlaps {
                        self.spans.push((s, e));
                    } else {
                        self.seconds += e - s;
                    }
                }
            }
            AggOp::Min | AggOp::Max => {
                let Some(c) = p.column else { return false };
                let v = Values::cell(table, p.table, c, r);
                if matches!(v, Scalar::None) {
                    return false;
                }
                let better = match &self.best {
                    None => true,
                    Some((b, _)) => {
                        let o = vals.compare(&v, b);
                        if p.op == AggOp::Min {
                            o == Some(std::cmp::Ordering::Less)
                        } else {
                            o == Some(std::cmp::Ordering::Greater)
                        }
                    }
                };
                if better {
                    self.best = Some((v, r as u32));
                }
                return false;
            }
        }
        true
    }

    /// The aggregate's value; a min/max adds its row to `used` (when rows are kept).
    fn finish(
        mut self,
        p: &Prepared,
        table: &Table,
        vals: &Values,
        used: &mut Vec<u32>,
    ) -> AggValue {
        match p.op {
            AggOp::Count => AggValue::Scalar(Scalar::Int(self.count)),
            AggOp::CountDistinct => {
                let d = &mut self.distinct;
                d.sort_by(|a, b| vals.compare(a, b).unwrap_or(std::cmp::Ordering::Equal));
                d.dedup_by(|a, b| vals.equal(a, b));
                AggValue::Scalar(Scalar::Int(d.len() as i64))
            }
            AggOp::Exists => AggValue::Scalar(Scalar::Bool(self.count > 0)),
            AggOp::Records => AggValue::Rows(Box::new(used.clone().into_boxed_slice())),
            AggOp::Sum => AggValue::Scalar(Scalar::Num(self.sum)),
            AggOp::SumHours | AggOp::SumWorkingHours => {
                let mut seconds = self.seconds;
                for (s, e) in merge_spans(self.spans) {
                    seconds += match (p.op, p.work_hours) {
                        (AggOp::SumWorkingHours, Some(hours)) => {
                            working_secs(&p.calendar, (s, e), hours)
                        }
                        (AggOp::SumWorkingHours, None) => 0,
                        _ => e - s,
                    };
                }
                AggValue::Scalar(Scalar::Num(seconds as f64 / 3600.0))
            }
            AggOp::CountDays | AggOp::Days => {
                let mut days = self.days;
                days.sort_unstable();
                days.dedup();
                if p.op == AggOp::CountDays {
                    AggValue::Scalar(Scalar::Int(days.len() as i64))
                } else {
                    AggValue::Days(Box::new(days.into_boxed_slice()))
                }
            }
            AggOp::Min | AggOp::Max => match self.best {
                None => AggValue::Unit,
                Some((v, r)) => {
                    if p.lineage {
                        used.push(r);
                    }
                    match p.pick {
                        Some(c) => AggValue::Scalar(Values::cell(table, p.table, c, r as usize)),
                        None => AggValue::Scalar(v),
                    }
                }
            },
        }
    }
}

/// Overlapping or touching spans joined into one (empty input: empty output).
fn merge_spans<T: Ord + Copy>(mut spans: Vec<(T, T)>) -> Vec<(T, T)> {
    spans.sort_unstable();
    let mut kept = 0;
    for i in 0..spans.len() {
        let (s, e) = spans[i];
        if kept > 0 && s <= spans[kept - 1].1 {
            spans[kept - 1].1 = spans[kept - 1].1.max(e);
        } else {
            spans[kept] = (s, e);
            kept += 1;
        }
    }
    spans.truncate(kept);
    spans
}

/// The seconds of span `(start, end)` (seconds since 1970) inside the working hours on
/// working days.
#[inline]
fn working_secs(calendar: &Calendar, (s, e): (i64, i64), (ws, we): (NaiveTime, NaiveTime)) -> i64 {
    calendar.working_secs(
        s,
        e,
        ws.num_seconds_from_midnight(),
        we.num_seconds_from_midnight(),
    )
}

/// A test with its values resolved for one subject.
enum RTest<'p> {
    Is(Scalar),
    IsNot(Scalar),
    In(Vec<Scalar>),
    NotIn(Vec<Scalar>),
    Within(Span),
    /// A test on the column's own representation.
    Fast(Fast),
    From(Scalar),
    Until(Scalar),
    Weekday(u8),
    TimeFrom(NaiveTime),
    TimeBefore(NaiveTime),
    Present(bool),
    WorkingDay(bool, &'p crate::calendar::Calendar),
    WorkingTime {
        overlaps: bool,
        end: &'p ColumnData,
        calendar: &'p crate::calendar::Calendar,
        hours: Option<(NaiveTime, NaiveTime)>,
    },
}

/// Filter `f` resolved for the subject of `cx`, on the column's own representation where
/// it can be.
fn rtest<'p>(
    f: &PFilter,
    cx: &SubjectCtx,
    table: &'p Table,
    p: &'p Prepared,
    vals: &Values,
) -> RTest<'p> {
    if let Some(fast) = f.fast {
        return RTest::Fast(fast);
    }
    let col = &table.columns[f.col];
    let t = match &f.test {
        Test::Within(i) => return within(cx.periods[*i], col),
        Test::Is(v) => RTest::Is(resolve(v, cx)),
        Test::IsNot(v) => RTest::IsNot(resolve(v, cx)),
        Test::In(vs) => RTest::In(vs.iter().map(|v| resolve(v, cx)).collect()),
        Test::NotIn(vs) => RTest::NotIn(vs.iter().map(|v| resolve(v, cx)).collect()),
        Test::From(v) => RTest::From(resolve(v, cx)),
        Test::Until(v) => RTest::Until(resolve(v, cx)),
        Test::Weekday(m) => RTest::Weekday(*m),
        Test::TimeFrom(t) => RTest::TimeFrom(*t),
        Test::TimeBefore(t) => RTest::TimeBefore(*t),
        Test::Present(b) => RTest::Present(*b),
        Test::WorkingDay(b) => RTest::WorkingDay(*b, &p.calendar),
        Test::WorkingTime { overlaps, end } => RTest::WorkingTime {
            overlaps: *overlaps,
            end: &table.columns[*end],
            calendar: &p.calendar,
            hours: p.work_hours,
        },
    };
    // Per subject only what is cheap to find (an enum's set takes a test per value).
    match fast(&t, col, vals, (p.table, f.col), false) {
        Some(fast) => RTest::Fast(fast),
        None => t,
    }
}

/// Test `t` on column `col` (column `ci` of table `tidx`) as a [`Fast`] test deciding every
/// cell as [`test`] does, when there is one; enum columns only when `enums`.
fn fast(
    t: &RTest,
    col: &ColumnData,
    vals: &Values,
    (tidx, ci): (usize, usize),
    enums: bool,
) -> Option<Fast> {
    match (col, t) {
        // Tests that look at more than the cell's value are left alone (`test_scalar`: None).
        (ColumnData::Enum(_), _) if enums => {
            let (_, ts) = vals.policy.schema.tables.get_index(tidx)?;
            let n = ts.columns.get(ci)?.values.len().min(256);
            let mut set = [0u64; 4];
            for i in 0..n {
                if test_scalar(&Scalar::Enum(tidx as u16, ci as u16, i as u8), t, vals)? {
                    set[i / 64] |= 1 << (i % 64);
                }
            }
            let none = test_scalar(&Scalar::None, t, vals)?;
            Some(Fast::Enum { set, none })
        }
        (ColumnData::Bool(_), _) => Some(Fast::Bool {
            yes: test_scalar(&Scalar::Bool(true), t, vals)?,
            no: test_scalar(&Scalar::Bool(false), t, vals)?,
            none: test_scalar(&Scalar::None, t, vals)?,
        }),
        (ColumnData::Id(_), RTest::Is(v)) => match v {
            Scalar::Id(x) => Some(Fast::IdIs(*x)),
            Scalar::None => Some(Fast::Never),
            _ => None,
        },
        (ColumnData::Id(_), RTest::IsNot(v)) => match v {
            Scalar::Id(x) => Some(Fast::IdIsNot(*x)),
            Scalar::None => Some(Fast::Always),
            _ => None,
        },
        (ColumnData::Date(_), RTest::From(v) | RTest::Until(v) | RTest::Is(v)) => {
            // A date compares with a date-time by the date-time's day.
            let d = match v {
                Scalar::Date(d) => *d,
                Scalar::DateTime(dt) => dt.date(),
                Scalar::None => return Some(Fast::Never),
                _ => return None,
            };
            Some(match t {
                RTest::From(_) => Fast::Days(d, NaiveDate::MAX),
                RTest::Until(_) => Fast::Days(NaiveDate::MIN, d),
                _ => Fast::Days(d, d),
            })
        }
        (ColumnData::DateTime(DateTimes::Narrow(_)), RTest::From(v) | RTest::Until(v)) => {
            // A date-time compares with a date by its day, with a date-time exactly.
            let (first, after) = match v {
                Scalar::Date(d) => (day_secs(*d), day_secs(*d) + 86_400),
                Scalar::DateTime(dt) => (datetime_secs(*dt), datetime_secs(*dt) + 1),
                Scalar::None => return Some(Fast::Never),
                _ => return None,
            };
            Some(match t {
                RTest::From(_) => Fast::Secs(narrow(first), u32::MAX),
                _ => Fast::Secs(0, narrow(after)),
            })
        }
        _ => None,
    }
}

/// Seconds since 1970-01-01 00:00:00 at which day `d` starts.
fn day_secs(d: NaiveDate) -> i64 {
    datetime_secs(d.and_time(NaiveTime::MIN))
}

/// Seconds since 1970 as a bound on narrow date-times' stored seconds (clamped to their range).
fn narrow(x: i64) -> u32 {
    x.clamp(0, i64::from(u32::MAX)) as u32
}

/// `Within` a period: on narrow date-times, a comparison of the stored seconds with the
/// seconds the period's first day starts and its last day ends (no date is built per row);
/// on dates, a comparison with the first and last day.
fn within<'p>(span: Span, col: &ColumnData) -> RTest<'p> {
    match (span, col) {
        (Some((s, e)), ColumnData::DateTime(DateTimes::Narrow(_))) => {
            // The empty cell is u32::MAX, never below `hi`.
            RTest::Fast(Fast::Secs(
                narrow(day_secs(s)),
                narrow(day_secs(e) + 86_400),
            ))
        }
        (Some((s, e)), ColumnData::Date(_)) => RTest::Fast(Fast::Days(s, e)),
        _ => RTest::Within(span),
    }
}

/// Whether row `r` of `col` is in the period of a `Within` test.
#[inline]
fn in_period(col: &ColumnData, r: usize, t: &RTest) -> bool {
    match (t, col) {
        (RTest::Fast(f), _) => fast_test(col, r, *f),
        (RTest::Within(Some((s, e))), _) => col.date(r).is_some_and(|d| *s <= d && d <= *e),
        _ => false,
    }
}

/// A [`Fast`] test on row `r` of `col`.
#[inline]
fn fast_test(col: &ColumnData, r: usize, f: Fast) -> bool {
    match (f, col) {
        (Fast::Never, _) => false,
        (Fast::Always, _) => true,
        (Fast::Enum { set, none }, ColumnData::Enum(v)) => match v[r] {
            Some(i) => set[usize::from(i >> 6)] & (1 << (i & 63)) != 0,
            None => none,
        },
        (Fast::Bool { yes, no, none }, ColumnData::Bool(v)) => match v[r] {
            Some(true) => yes,
            Some(false) => no,
            None => none,
        },
        (Fast::IdIs(x), ColumnData::Id(v)) => v[r] == x,
        (Fast::IdIsNot(x), ColumnData::Id(v)) => v[r] != x,
        (Fast::Days(lo, hi), ColumnData::Date(v)) => v[r].is_some_and(|d| lo <= d && d <= hi),
        (Fast::Secs(lo, hi), ColumnData::DateTime(DateTimes::Narrow(v))) => {
            (lo..hi).contains(&v[r])
        }
        // Not built for other columns.
        _ => false,
    }
}

/// Keep the rows of `rows` whose cell of `col` passes `f` (as [`fast_test`] decides), the
/// kind of test and column found once for all of them.
fn retain_fast(col: &ColumnData, rows: &mut Vec<u32>, f: Fast) {
    match (f, col) {
        (Fast::Always, _) => {}
        (Fast::Enum { set, none }, ColumnData::Enum(v)) => rows.retain(|&r| match v[r as usize] {
            Some(i) => set[usize::from(i >> 6)] & (1 << (i & 63)) != 0,
            None => none,
        }),
        (Fast::Bool { yes, no, none }, ColumnData::Bool(v)) => {
            rows.retain(|&r| match v[r as usize] {
                Some(true) => yes,
                Some(false) => no,
                None => none,
            })
        }
        (Fast::IdIs(x), ColumnData::Id(v)) => rows.retain(|&r| v[r as usize] == x),
        (Fast::IdIsNot(x), ColumnData::Id(v)) => rows.retain(|&r| v[r as usize] != x),
        (Fast::Days(lo, hi), ColumnData::Date(v)) => {
            rows.retain(|&r| v[r as usize].is_some_and(|d| lo <= d && d <= hi))
        }
        (Fast::Secs(lo, hi), ColumnData::DateTime(DateTimes::Narrow(v))) => {
            rows.retain(|&r| (lo..hi).contains(&v[r as usize]))
        }
        // `Never`, and (as in `fast_test`) a test not built for the column.
        _ => rows.clear(),
    }
}

/// A test that looks at the cell's value only, on that value (`None`: the test needs the row).
fn test_scalar(c: &Scalar, t: &RTest, vals: &Values) -> Option<bool> {
    use std::cmp::Ordering::*;
    Some(match t {
        RTest::Is(v) => vals.equal(c, v),
        RTest::IsNot(v) => !vals.equal(c, v),
        RTest::In(vs) => vs.iter().any(|v| vals.equal(c, v)),
        RTest::NotIn(vs) => !vs.iter().any(|v| vals.equal(c, v)),
        RTest::From(v) => matches!(vals.compare(c, v), Some(Greater | Equal)),
        RTest::Until(v) => matches!(vals.compare(c, v), Some(Less | Equal)),
        RTest::Present(want) => !matches!(c, Scalar::None) == *want,
        _ => return None,
    })
}

#[inline]
fn test(col: &ColumnData, r: usize, t: &RTest, vals: &Values, table: usize, ci: usize) -> bool {
    match t {
        RTest::Fast(f) => fast_test(col, r, *f),
        _ => slow_test(col, r, t, vals, table, ci),
    }
}

/// [`test`] for the tests that are not [`Fast`].
#[inline(never)]
fn slow_test(
    col: &ColumnData,
    r: usize,
    t: &RTest,
    vals: &Values,
    table: usize,
    ci: usize,
) -> bool {
    match t {
        RTest::Fast(f) => fast_test(col, r, *f),
        RTest::Is(_)
        | RTest::IsNot(_)
        | RTest::In(_)
        | RTest::NotIn(_)
        | RTest::From(_)
        | RTest::Until(_)
        | RTest::Present(_) => {
            test_scalar(&Values::cell_of(col, table, ci, r), t, vals).unwrap_or(false)
        }
        RTest::Within(_) => in_period(col, r, t),
        RTest::Weekday(mask) => col
            .date(r)
            .is_some_and(|d| mask & (1 << d.weekday().number_from_monday()) != 0),
        RTest::TimeFrom(t) => match col {
            ColumnData::DateTime(v) => v.get(r).is_some_and(|d| d.time() >= *t),
            _ => false,
        },
        RTest::TimeBefore(t) => match col {
            ColumnData::DateTime(v) => v.get(r).is_some_and(|d| {
                let tt = d.time();
                tt.num_seconds_from_midnight() < t.num_seconds_from_midnight()
            }),
            _ => false,
        },
        RTest::WorkingDay(want, cal) => col.date(r).is_some_and(|d| cal.is_working_day(d) == *want),
        RTest::WorkingTime {
            overlaps,
            end,
            calendar,
            hours,
        } => match (col, end, hours) {
            (ColumnData::DateTime(s), ColumnData::DateTime(e), Some(hours)) => {
                match (s.secs(r), e.secs(r)) {
                    (Some(s), Some(e)) => (working_secs(calendar, (s, e), *hours) > 0) == *overlaps,
                    _ => false,
                }
            }
            _ => false,
        },
    }
}

/// What resolving an aggregate's filters reads from the run.
pub struct PrepareCx<'a> {
    pub policy: &'a PolicySet,
    pub data: &'a Dataset,
    pub as_of: NaiveDate,
    /// The subject kind's table.
    pub subject_table: &'a str,
    /// An aggregate's local index in the subject kind (`None`: not one of the kind's).
    pub agg_index: &'a dyn Fn(&str) -> Option<usize>,
    /// A period's index in the policy set.
    pub period_index: &'a dyn Fn(&str) -> Option<usize>,
    /// A parameter's value on `as_of` as a cell of the given column's type.
    pub param_scalar: &'a dyn Fn(&str, &crate::policy::ColumnSchema) -> Scalar,
    /// A parameter's value on `as_of` as written (`None` before it has one).
    pub param_raw: &'a dyn Fn(&str) -> Option<toml::Value>,
}

/// Resolve an aggregate's filters against the run (literals, parameters, `--as-of`).
/// `table_idx`: its table's index in the schema; `lineage`: keep the rows it used.
pub fn prepare(agg: &Aggregate, table_idx: usize, lineage: bool, cx: &PrepareCx) -> Prepared {
    let PrepareCx {
        policy,
        data,
        as_of,
        subject_table,
        agg_index,
        period_index,
        param_scalar,
        param_raw,
    } = *cx;
    let ts = &policy.schema.tables[agg.table.as_str()];
    let subj = &policy.schema.tables[subject_table];
    let col = |n: &Option<String>| n.as_deref().and_then(|n| ts.column(n));
    let pval = |r: &ValueRef, cs: &crate::policy::ColumnSchema| -> PVal {
        match r {
            ValueRef::Lit(v) => PVal::Fixed(Values::literal(v, cs, &data.ids)),
            ValueRef::Subject(c) => subj
                .column(c)
                .map(PVal::Subject)
                .unwrap_or(PVal::Fixed(Scalar::None)),
            ValueRef::Param(p) => PVal::Fixed(param_scalar(p, cs)),
            ValueRef::Agg(a) => agg_index(a)
                .map(PVal::Agg)
                .unwrap_or(PVal::Fixed(Scalar::None)),
            ValueRef::AsOf => PVal::Fixed(Scalar::Date(as_of)),
        }
    };
    let param_value = |r: &ValueRef| -> Option<toml::Value> {
        match r {
            ValueRef::Lit(v) => Some(v.clone()),
            ValueRef::Param(p) => param_raw(p),
            _ => None,
        }
    };
    let vals = Values::new(data, policy);
    let mut filters = Vec::new();
    for (src, f) in agg.filters.iter().enumerate() {
        let Some(ci) = ts.column(&f.column) else {
            continue;
        };
        let cs = &ts.columns[ci];
        let test = match &f.cond {
            Cond::Is(r) => Test::Is(pval(r, cs)),
            Cond::IsNot(r) => Test::IsNot(pval(r, cs)),
            Cond::In(rs) => Test::In(rs.iter().map(|r| pval(r, cs)).collect()),
            Cond::NotIn(rs) => Test::NotIn(rs.iter().map(|r| pval(r, cs)).collect()),
            Cond::Within(p) => match period_index(p) {
                Some(i) => Test::Within(i),
                None => continue,
            },
            Cond::From(r) => Test::From(pval(r, cs)),
            Cond::Until(r) => Test::Until(pval(r, cs)),
            Cond::Weekday(r) => match param_value(r) {
                Some(days) => match crate::policy::weekdays(&days) {
                    Some(days) => Test::Weekday(days.iter().fold(0u8, |m, d| m | (1 << d))),
                    None => Test::Weekday(0),
                },
                None => Test::Weekday(0),
            },
            Cond::TimeFrom(r) => match param_value(r).as_ref().and_then(crate::policy::time_of_day)
            {
                Some(t) => Test::TimeFrom(t),
                None => Test::Present(false),
            },
            Cond::TimeBefore(r) => {
                match param_value(r).as_ref().and_then(crate::policy::time_of_day) {
                    Some(t) => Test::TimeBefore(t),
                    None => Test::Present(false),
                }
            }
            Cond::Present(b) => Test::Present(*b),
            Cond::WorkingDay(b) => Test::WorkingDay(*b),
            Cond::WorkingTime { overlaps, end } => match ts.column(end) {
                Some(e) => Test::WorkingTime {
                    overlaps: *overlaps,
                    end: e,
                },
                None => continue,
            },
        };
        // A test the same for every subject is turned into a fast one here, once.
        let fixed = |v: &PVal| match v {
            PVal::Fixed(s) => Some(s.clone()),
            _ => None,
        };
        let fixed_all = |vs: &[PVal]| vs.iter().map(fixed).collect::<Option<Vec<_>>>();
        let general = match &test {
            Test::Is(v) => fixed(v).map(RTest::Is),
            Test::IsNot(v) => fixed(v).map(RTest::IsNot),
            Test::In(vs) => fixed_all(vs).map(RTest::In),
            Test::NotIn(vs) => fixed_all(vs).map(RTest::NotIn),
            Test::From(v) => fixed(v).map(RTest::From),
            Test::Until(v) => fixed(v).map(RTest::Until),
            Test::Present(b) => Some(RTest::Present(*b)),
            _ => None,
        };
        let fast = general.and_then(|t| {
            let col = &data.tables[agg.table.as_str()].columns[ci];
            fast(&t, col, &vals, (table_idx, ci), true)
        });
        filters.push(PFilter {
            col: ci,
            test,
            src,
            fast,
        });
    }
    Prepared {
        op: agg.op,
        table: table_idx,
        filters,
        column: col(&agg.column),
        end_column: col(&agg.end_column),
        pick: col(&agg.pick),
        except_days: agg.except_days.as_deref().and_then(agg_index),
        merge_overlaps: agg.merge_overlaps,
        lineage,
        calendar: policy.calendar.clone(),
        work_hours: policy.work_hours.as_ref().and_then(|(a, b)| {
            let t = |r: &ValueRef| param_value(r).as_ref().and_then(crate::policy::time_of_day);
            t(a).zip(t(b))
        }),
    }
}

/// For `explain`: each row of the subject with the index (in `where`) of the first condition
/// it fails, or `None` when it passes every condition.
pub fn trace_rows(
    p: &Prepared,
    table: &Table,
    rows: &[u32],
    cx: &SubjectCtx,
    vals: &Values,
) -> Vec<(u32, Option<usize>)> {
    let filters: Vec<(usize, usize, RTest)> = p
        .filters
        .iter()
        .map(|f| (f.col, f.src, rtest(f, cx, table, p, vals)))
        .collect();
    rows.iter()
        .map(|&r| {
            let failed = filters
                .iter()
                .find(|(col, _, t)| !test(&table.columns[*col], r as usize, t, vals, p.table, *col))
                .map(|(_, src, _)| *src);
            (r, failed)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// `within` on narrow date-times keeps exactly the rows whose date is in the period,
    /// as the test by date does (first and last second of a day, empty cells, 1970, 2106).
    #[test]
    fn within_by_seconds_is_within_by_date() {
        use crate::data::{ColumnData, DateTimes};
        use chrono::NaiveDate;
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let mut times = DateTimes::default();
        for t in [
            "1970-01-01 00:00:00",
            "2020-01-31 23:59:59",
            "2020-02-01 00:00:00",
            "2020-02-29 23:59:59",
            "2020-03-01 00:00:00",
            "2106-02-07 06:28:14",
        ] {
            times.push(Some(
                chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").unwrap(),
            ));
        }
        times.push(None);
        let col = ColumnData::DateTime(times);
        let spans = [
            None,
            Some((day(2020, 2, 1), day(2020, 2, 29))),
            Some((day(2020, 3, 1), day(2020, 2, 1))),
            Some((day(1960, 1, 1), day(1970, 1, 1))),
            Some((day(2106, 2, 7), day(2200, 1, 1))),
            Some((day(1900, 1, 1), day(2300, 1, 1))),
        ];
        for span in spans {
            let fast = super::within(span, &col);
            assert!(span.is_none() || matches!(fast, super::RTest::Fast(super::Fast::Secs(..))));
            for r in 0..col.len() {
                let by_date = match (span, col.date(r)) {
                    (Some((s, e)), Some(d)) => s <= d && d <= e,
                    _ => false,
                };
                assert_eq!(
                    super::in_period(&col, r, &fast),
                    by_date,
                    "{span:?} row {r}"
                );
            }
        }
    }

    /// Every fast test decides each cell as the general test does: enum, id, date and
    /// date-time columns of the sample data (with an empty cell added), against values of
    /// each kind, missing values and bounds outside the narrow range.
    #[test]
    fn fast_tests_decide_as_the_general_test() {
        use super::{RTest, Scalar, fast, fast_test, test_scalar};
        use crate::data::{ColumnData, Sym};
        use std::path::Path;
        let set = crate::policy::load(Path::new("policies")).unwrap();
        let ds = crate::data::load(
            Path::new("samples/hubei-2020"),
            &set.schema,
            &Default::default(),
        )
        .unwrap();
        let vals = super::Values::new(&ds, &set);
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let at = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        let str = Scalar::str;
        let c01 = Scalar::Id(ds.ids.get("C01").unwrap());
        let mut made = 0;
        let cases: Vec<(&str, &str, Vec<RTest>)> = vec![
            ("reports", "campaign", {
                let mut v = Vec::new();
                for x in [
                    str("epidemic"),
                    str("nope"),
                    str("e"),
                    Scalar::None,
                    Scalar::Int(1),
                ] {
                    v.extend([
                        RTest::Is(x.clone()),
                        RTest::IsNot(x.clone()),
                        RTest::From(x.clone()),
                        RTest::Until(x.clone()),
                    ]);
                }
                v.extend([
                    RTest::In(vec![str("epidemic"), str("dual_registration")]),
                    RTest::NotIn(vec![str("epidemic"), Scalar::None]),
                    RTest::In(vec![]),
                    RTest::Present(true),
                    RTest::Present(false),
                ]);
                v
            }),
            ("reports", "community_id", {
                let mut v = Vec::new();
                for x in [c01.clone(), str("C01"), str("nope"), Scalar::None] {
                    v.extend([RTest::Is(x.clone()), RTest::IsNot(x.clone())]);
                }
                v
            }),
            ("reports", "reported_on", {
                let mut v = Vec::new();
                for x in [
                    Scalar::Date(day("2020-02-08")),
                    Scalar::DateTime(at("2020-02-08 12:00:00")),
                    Scalar::Date(day("1900-01-01")),
                    Scalar::None,
                    str("2020-02-08"),
                ] {
                    v.extend([
                        RTest::Is(x.clone()),
                        RTest::From(x.clone()),
                        RTest::Until(x.clone()),
                    ]);
                }
                v
            }),
            ("services", "start", {
                let mut v = Vec::new();
                for x in [
                    Scalar::Date(day("2020-02-13")),
                    Scalar::DateTime(at("2020-02-13 08:30:00")),
                    Scalar::DateTime(at("2020-02-13 08:29:59")),
                    Scalar::Date(day("1960-01-01")),
                    Scalar::Date(day("2200-01-01")),
                    Scalar::None,
                ] {
                    v.extend([RTest::From(x.clone()), RTest::Until(x.clone())]);
                }
                v
            }),
        ];
        for (table, column, tests) in cases {
            let tidx = set.schema.tables.get_index_of(table).unwrap();
            let ci = set.schema.tables[table].column(column).unwrap();
            let mut col = ds.tables[table].columns[ci].clone();
            // An empty cell, and cells at the edges of the bounds' days.
            match &mut col {
                ColumnData::Enum(v) => v.push(None),
                ColumnData::Id(v) => v.push(Sym::NONE),
                ColumnData::Date(v) => {
                    v.extend(["2020-02-07", "2020-02-08", "2020-02-09"].map(|d| Some(day(d))));
                    v.push(None)
                }
                ColumnData::DateTime(v) => {
                    for t in [
                        "2020-02-12 23:59:59",
                        "2020-02-13 00:00:00",
                        "2020-02-13 08:29:59",
                        "2020-02-13 08:30:00",
                        "2020-02-13 08:30:01",
                        "2020-02-13 23:59:59",
                        "2020-02-14 00:00:00",
                    ] {
                        v.push(Some(at(t)));
                    }
                    v.push(None)
                }
                _ => unreachable!(),
            }
            for t in &tests {
                let Some(f) = fast(t, &col, &vals, (tidx, ci), true) else {
                    continue;
                };
                made += 1;
                for r in 0..col.len() {
                    let cell = super::Values::cell_of(&col, tidx, ci, r);
                    assert_eq!(
                        fast_test(&col, r, f),
                        test_scalar(&cell, t, &vals).unwrap(),
                        "{table}.{column} row {r} ({cell:?}), {f:?}"
                    );
                }
                // A filter at a time over rows (some twice, out of order) keeps the rows
                // the row-at-a-time test passes, in their order.
                let n = col.len() as u32;
                let rows: Vec<u32> = (0..n).rev().chain(0..n).step_by(3).collect();
                let mut kept = rows.clone();
                super::retain_fast(&col, &mut kept, f);
                let want: Vec<u32> = rows
                    .iter()
                    .copied()
                    .filter(|&r| fast_test(&col, r as usize, f))
                    .collect();
                assert_eq!(kept, want, "{table}.{column}, {f:?}");
            }
        }
        // Enum: 25 tests; id: 4 (not the text values); date: 12; date-time: 12.
        assert_eq!(made, 53);
    }

    #[test]
    fn overlapping_spans_count_once() {
        let t = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        let merged = super::merge_spans(vec![
            (t("2020-07-04 10:00"), t("2020-07-04 12:00")),
            (t("2020-07-05 08:00"), t("2020-07-05 09:00")),
            (t("2020-07-04 08:00"), t("2020-07-04 11:00")),
            (t("2020-07-04 09:00"), t("2020-07-04 09:30")),
            (t("2020-07-04 12:00"), t("2020-07-04 13:00")),
            (t("2020-07-05 09:01"), t("2020-07-05 10:00")),
        ]);
        assert_eq!(
            merged,
            vec![
                (t("2020-07-04 08:00"), t("2020-07-04 13:00")),
                (t("2020-07-05 08:00"), t("2020-07-05 09:00")),
                (t("2020-07-05 09:01"), t("2020-07-05 10:00")),
            ]
        );
        assert!(super::merge_spans::<i64>(vec![]).is_empty());
    }

    /// Millions of subjects × every aggregate: the value must stay small.
    #[test]
    fn aggregate_values_stay_small() {
        assert!(std::mem::size_of::<super::AggValue>() <= 24);
    }
}
