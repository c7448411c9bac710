//! The terminal summary of a run: findings counted by directive × status ([`Summary`]) and
//! the table [`render_summary`] prints after `rulebook eval` (rows read per table, then the
//! counts).

use super::{Finding, Status};
use crate::data::TableStats;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Counts by directive × status, in directive order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Per directive key, the number of findings per status (statuses with none left out).
    pub counts: BTreeMap<String, BTreeMap<Status, u64>>,
    /// Subjects failing each directive (a subject fails when any of its findings fails).
    pub failing_subjects: BTreeMap<String, u64>,
    /// Findings counted, all directives together.
    pub total: u64,
    #[serde(skip)]
    failed: std::collections::HashSet<(Arc<str>, Arc<str>, String)>,
}

impl Summary {
    /// Count one finding.
    pub fn add(&mut self, f: &Finding) {
        *self
            .counts
            .entry(f.directive.to_string())
            .or_default()
            .entry(f.status)
            .or_default() += 1;
        self.total += 1;
        if f.status == Status::Fail
            && self.failed.insert((
                f.directive.clone(),
                f.subject_kind.clone(),
                f.subject_id.clone(),
            ))
        {
            *self
                .failing_subjects
                .entry(f.directive.to_string())
                .or_default() += 1;
        }
    }

    /// Add the findings of one rule counted elsewhere: `counts` by status (in the order of
    /// the [`Status`] variants) and the subjects that fail `directive` for the first time
    /// (the caller keeps track of them; do not mix with [`Summary::add`] for a directive).
    pub fn add_counts(&mut self, directive: &str, counts: &[u64; 6], newly_failing: u64) {
        let n: u64 = counts.iter().sum();
        if n > 0 {
            let m = self.counts.entry(directive.to_string()).or_default();
            for (i, &c) in counts.iter().enumerate() {
                if c > 0 {
                    *m.entry(Status::ALL_IN_ORDER[i]).or_default() += c;
                }
            }
            self.total += n;
        }
        if newly_failing > 0 {
            *self
                .failing_subjects
                .entry(directive.to_string())
                .or_default() += newly_failing;
        }
    }

    /// Findings with `status`, all directives together.
    pub fn count(&self, status: Status) -> u64 {
        self.counts.values().filter_map(|m| m.get(&status)).sum()
    }
}

/// The terminal summary: rows per table, then findings by directive × status.
///
/// `notes` are printed last, a line each (directives not in force, what grades cover).
pub fn render_summary(
    summary: &Summary,
    stats: &[TableStats],
    as_of: &str,
    policy: &str,
    notes: &[String],
) -> String {
    let mut s = String::new();
    s.push_str(&format!("policy set {policy}, as of {as_of}\n\n"));
    s.push_str(&format!(
        "{:<20} {:<28} {:>9} {:>9} {:>9}\n",
        "table", "file", "read", "loaded", "rejected"
    ));
    for t in stats {
        s.push_str(&format!(
            "{:<20} {} {:>9} {:>9} {:>9}\n",
            t.table,
            pad(&truncate(&t.file, 28), 28),
            t.read,
            t.loaded,
            t.rejected
        ));
    }
    let (r, l, j) = stats.iter().fold((0, 0, 0), |(r, l, j), t| {
        (r + t.read, l + t.loaded, j + t.rejected)
    });
    s.push_str(&format!(
        "{:<20} {:<28} {:>9} {:>9} {:>9}\n\n",
        "total", "", r, l, j
    ));
    let cols = Status::ALL;
    s.push_str(&format!("{:<34}", "directive"));
    for c in cols {
        s.push_str(&format!(" {:>8}", short(c)));
    }
    s.push_str(&format!(" {:>16}\n", "failing subjects"));
    for (d, m) in &summary.counts {
        s.push_str(&format!("{:<34}", truncate(d, 34)));
        for c in cols {
            s.push_str(&format!(" {:>8}", m.get(&c).copied().unwrap_or(0)));
        }
        s.push_str(&format!(
            " {:>16}\n",
            summary.failing_subjects.get(d).copied().unwrap_or(0)
        ));
    }
    s.push_str(&format!("{:<34}", "total"));
    for c in cols {
        s.push_str(&format!(" {:>8}", summary.count(c)));
    }
    s.push_str(&format!(
        "\n{} findings (a subject fails a directive when any of its findings under it fails)\n",
        summary.total
    ));
    for n in notes {
        s.push_str(n);
        s.push('\n');
    }
    s
}

/// Pad to a display width (CJK characters are two columns wide).
fn pad(s: &str, width: usize) -> String {
    let w = unicode_width::UnicodeWidthStr::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

fn short(s: Status) -> &'static str {
    match s {
        Status::NotApplicable => "n/a",
        other => other.name(),
    }
}

fn truncate(s: &str, n: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    if unicode_width::UnicodeWidthStr::width(s) <= n {
        return s.to_string();
    }
    let mut t = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > n {
            break;
        }
        w += cw;
        t.push(c);
    }
    t.push('…');
    t
}
