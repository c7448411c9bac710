//! The working calendar of a policy set: which days are working days (the usual week, less
//! statutory holidays, plus the weekend days worked in exchange, 调休), and how much of a
//! span of time falls inside working hours on working days.
//!
//! The days come from a CSV file shipped with the policy set (`[calendar]` in `policy.toml`);
//! only days that differ from the usual week are listed.

use crate::data::{datetime_secs, unix_day, unix_day_date};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use std::collections::HashMap;

/// How a listed day differs from the usual week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// A rest day (a statutory holiday, or a weekday given off).
    Holiday,
    /// A working day (a weekend day worked in exchange for a holiday).
    Workday,
}

impl DayKind {
    /// The kind from a word of the calendar file (English or Chinese).
    pub fn parse(word: &str) -> Option<DayKind> {
        match word.trim() {
            "holiday" | "休" | "放假" | "节假日" | "休息日" => Some(DayKind::Holiday),
            "workday" | "班" | "上班" | "调休上班" | "工作日" => Some(DayKind::Workday),
            _ => None,
        }
    }
}

/// A working calendar: listed days, the usual weekend, and the years the list covers.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    /// Name for people (the policy's `label`, else `工作日历`), shown in reports.
    pub label: String,
    /// The file, as the policy set names it.
    pub file: String,
    /// Where the dates come from.
    pub source: String,
    /// Years the list covers completely.
    pub years: Vec<i32>,
    /// Bit `d` set: ISO weekday `d` is a rest day (unless listed as a working day).
    weekend: u8,
    days: HashMap<NaiveDate, (DayKind, String)>,
    /// Whether each day from day `first` (days since 1970-01-01) on is a working day, for the
    /// span the list covers (millions of services ask; a lookup here is an index, not a hash).
    first: Option<i64>,
    working: Vec<bool>,
}

impl Calendar {
    /// An empty calendar: Monday to Friday are working days.
    pub fn weekdays_only() -> Calendar {
        Calendar {
            weekend: (1 << 6) | (1 << 7),
            ..Calendar::default()
        }
    }

    /// A calendar with `weekend` (ISO weekdays) as rest days and `days` listed.
    pub fn new(
        label: String,
        file: String,
        source: String,
        years: Vec<i32>,
        weekend: &[u32],
        days: impl IntoIterator<Item = (NaiveDate, DayKind, String)>,
    ) -> Calendar {
        let mut c = Calendar {
            label,
            file,
            source,
            years,
            weekend: weekend
                .iter()
                .filter(|d| (1..=7).contains(*d))
                .fold(0, |m, d| m | (1 << d)),
            days: days.into_iter().map(|(d, k, n)| (d, (k, n))).collect(),
            first: None,
            working: Vec::new(),
        };
        // The covered years (or the listed days) as a dense table.
        let listed = c.days.keys().copied();
        let from_years = c
            .years
            .iter()
            .filter_map(|y| NaiveDate::from_ymd_opt(*y, 1, 1));
        let to_years = c
            .years
            .iter()
            .filter_map(|y| NaiveDate::from_ymd_opt(*y, 12, 31));
        let first = listed.clone().chain(from_years).min();
        let last = listed.chain(to_years).max();
        if let (Some(first), Some(last)) = (first, last)
            && (last - first).num_days() < 366 * 200
        {
            c.working = first
                .iter_days()
                .take_while(|d| *d <= last)
                .map(|d| c.lookup(d))
                .collect();
            c.first = Some(unix_day(first));
        }
        c
    }

    /// Everything the calendar says, as text in a fixed order (its days sorted): two
    /// calendars with the same digest answer every question the same way. `diff` uses it to
    /// tell whether what a rule or an aggregate reads changed between two policy sets.
    pub fn digest(&self) -> String {
        let Calendar {
            label,
            file,
            source,
            years,
            weekend,
            days,
            // Derived from the fields above.
            first: _,
            working: _,
        } = self;
        let mut listed: Vec<_> = days.iter().collect();
        listed.sort_by_key(|(d, _)| **d);
        format!("{label:?} {file:?} {source:?} {years:?} {weekend} {listed:?}")
    }

    /// Whether `d` is a working day.
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        self.in_table(unix_day(d)).unwrap_or_else(|| self.lookup(d))
    }

    /// Whether day `day` (days since 1970-01-01) is a working day.
    fn is_working_unix_day(&self, day: i64) -> bool {
        self.in_table(day)
            .unwrap_or_else(|| unix_day_date(day).is_some_and(|d| self.lookup(d)))
    }

    /// The dense table's answer for day `day` (days since 1970-01-01), if it covers the day.
    fn in_table(&self, day: i64) -> Option<bool> {
        let i = usize::try_from(day - self.first?).ok()?;
        self.working.get(i).copied()
    }

    fn lookup(&self, d: NaiveDate) -> bool {
        match self.days.get(&d) {
            Some((DayKind::Holiday, _)) => false,
            Some((DayKind::Workday, _)) => true,
            None => self.weekend & (1 << d.weekday().number_from_monday()) == 0,
        }
    }

    /// The name of a listed day (`国庆节`), if the file gives one.
    pub fn day_name(&self, d: NaiveDate) -> Option<&str> {
        self.days
            .get(&d)
            .map(|(_, n)| n.as_str())
            .filter(|n| !n.is_empty())
    }

    /// Whether the list covers year `y` (outside it, only the weekend decides).
    pub fn covers(&self, y: i32) -> bool {
        self.years.contains(&y)
    }

    /// Seconds of `[start, end)` that fall within `[work_start, work_end)` on working days.
    pub fn working_seconds(
        &self,
        start: NaiveDateTime,
        end: NaiveDateTime,
        work_start: NaiveTime,
        work_end: NaiveTime,
    ) -> i64 {
        self.working_secs(
            datetime_secs(start),
            datetime_secs(end),
            work_start.num_seconds_from_midnight(),
            work_end.num_seconds_from_midnight(),
        )
    }

    /// [`Calendar::working_seconds`] on whole seconds since 1970-01-01 00:00:00, with the
    /// working hours as seconds from midnight (aggregates call it on millions of rows).
    pub fn working_secs(&self, start: i64, end: i64, work_start: u32, work_end: u32) -> i64 {
        if end <= start || work_end <= work_start {
            return 0;
        }
        let (ws, we) = (i64::from(work_start), i64::from(work_end));
        let (first, last) = (start.div_euclid(86_400), end.div_euclid(86_400));
        let mut total = 0;
        for day in first..=last {
            if self.is_working_unix_day(day) {
                let base = day * 86_400;
                let from = (base + ws).max(start);
                let to = (base + we).min(end);
                total += (to - from).max(0);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn cal() -> Calendar {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        Calendar::new(
            "t".into(),
            "t.csv".into(),
            "t".into(),
            vec![2020],
            &[6, 7],
            [
                (d("2020-10-01"), DayKind::Holiday, "国庆节".to_string()),
                (d("2020-10-10"), DayKind::Workday, "国庆节调休".to_string()),
            ],
        )
    }

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn holidays_and_adjusted_working_days() {
        let c = cal();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(c.is_working_day(d("2020-10-14"))); // Wednesday
        assert!(!c.is_working_day(d("2020-10-01"))); // Thursday, holiday
        assert!(c.is_working_day(d("2020-10-10"))); // Saturday, worked
        assert!(!c.is_working_day(d("2020-10-11"))); // Sunday
        assert_eq!(c.day_name(d("2020-10-01")), Some("国庆节"));
    }

    #[test]
    fn the_day_table_agrees_with_the_list_inside_and_outside_its_years() {
        let c = cal();
        let mut d = NaiveDate::from_ymd_opt(2018, 6, 1).unwrap();
        while d.year() < 2023 {
            assert_eq!(c.is_working_day(d), c.lookup(d), "{d}");
            d += Duration::days(1);
        }
        assert!(c.first.is_some() && c.working.len() == 366);
    }

    /// Working seconds counted on seconds agree with counting day by day on chrono values
    /// (the way it was first written): spans within a day, across midnight, over holidays
    /// and worked weekends, and outside the years the list covers.
    #[test]
    fn working_seconds_by_seconds_agree_with_day_by_day() {
        let c = cal();
        let by_day = |start: NaiveDateTime, end: NaiveDateTime, ws: NaiveTime, we: NaiveTime| {
            if end <= start || we <= ws {
                return 0;
            }
            let mut total = 0;
            let mut day = start.date();
            while day <= end.date() {
                if c.is_working_day(day) {
                    let from = day.and_time(ws).max(start);
                    let to = day.and_time(we).min(end);
                    if to > from {
                        total += (to - from).num_seconds();
                    }
                }
                day += Duration::days(1);
            }
            total
        };
        let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M:%S").unwrap();
        let hours = [
            (t("09:00:00"), t("17:00:00")),
            (t("00:00:00"), t("23:59:59")),
            (t("17:00:00"), t("09:00:00")),
        ];
        // A simple generator: starts every 7 h 13 min 7 s from 2019-12-25 to 2021-01-05,
        // lengths from 0 to 3 days.
        let mut start = at("2019-12-25 00:00");
        let mut n = 0u64;
        let mut checked = 0;
        while start < at("2021-01-05 00:00") {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = Duration::seconds((n >> 33) as i64 % (3 * 86_400));
            for (ws, we) in hours {
                for end in [start + len, start, start - Duration::seconds(1)] {
                    assert_eq!(
                        c.working_seconds(start, end, ws, we),
                        by_day(start, end, ws, we),
                        "{start} – {end}, {ws}–{we}"
                    );
                    checked += 1;
                }
            }
            start += Duration::seconds(7 * 3600 + 13 * 60 + 7);
        }
        assert!(checked > 10_000, "{checked}");
    }

    #[test]
    fn overlap_with_working_hours() {
        let c = cal();
        let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        let (ws, we) = (t("09:00"), t("17:00"));
        // Wednesday 08:00-18:00: 8 working hours.
        let w = c.working_seconds(at("2020-10-14 08:00"), at("2020-10-14 18:00"), ws, we);
        assert_eq!(w, 8 * 3600);
        // Evening: none.
        assert_eq!(
            c.working_seconds(at("2020-10-14 18:30"), at("2020-10-14 20:30"), ws, we),
            0
        );
        // The holiday: none; the worked Saturday: all.
        assert_eq!(
            c.working_seconds(at("2020-10-01 09:00"), at("2020-10-01 12:00"), ws, we),
            0
        );
        assert_eq!(
            c.working_seconds(at("2020-10-10 09:00"), at("2020-10-10 12:00"), ws, we),
            3 * 3600
        );
        // Across midnight into a working morning: 16:00-17:00 and 09:00-10:00.
        assert_eq!(
            c.working_seconds(at("2020-10-13 16:00"), at("2020-10-14 10:00"), ws, we),
            2 * 3600
        );
        // Ending exactly when work starts: none.
        assert_eq!(
            c.working_seconds(at("2020-10-14 07:00"), at("2020-10-14 09:00"), ws, we),
            0
        );
    }
}
