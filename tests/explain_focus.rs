//! `rulebook explain` for one subject loads only the rows that can matter to it and computes
//! only its aggregates. Differential tests: for every subject of several datasets, the
//! explanation (text and JSON) and the findings must be exactly those of the whole dataset
//! and a full run — with and without `--as-of`, with the samples, their Chinese/XLSX export,
//! a generated dataset, and datasets whose data problems (duplicate keys, rejected rows
//! holding the latest date, quoted CSV) a focused load must get right or give up on.

mod common;

use chrono::NaiveDate;
use common::*;
use rulebook::data::{self, Dataset, LoadOptions};
use rulebook::eval;
use rulebook::policy::PolicySet;
use std::collections::BTreeMap;
use std::path::Path;

fn date(s: &str) -> Option<NaiveDate> {
    Some(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
}

/// How the subjects of a dataset were loaded.
#[derive(Debug, Default)]
struct Seen {
    subjects: usize,
    /// Loaded in part (some tables kept only the subject's rows).
    partial: usize,
    /// The focused load gave up and the whole dataset was loaded.
    whole: Vec<String>,
}

/// The ids of every subject (subject tables' keys), in table order.
fn subject_ids(set: &PolicySet, ds: &Dataset) -> Vec<String> {
    let mut ids = Vec::new();
    for sk in set.subjects.values() {
        let ts = &set.schema.tables[sk.table.as_str()];
        let t = &ds.tables[sk.table.as_str()];
        if let data::ColumnData::Id(v) = &t.columns[ts.key.unwrap()] {
            ids.extend(v.iter().map(|s| ds.ids.resolve(*s).to_string()));
        }
    }
    ids
}

/// Explanations (text, JSON) and findings for `id` from the fast path, as `explain` does it.
fn fast(
    set: &PolicySet,
    dir: &Path,
    as_of: Option<NaiveDate>,
    id: &str,
    seen: &mut Seen,
) -> Option<(String, String, Vec<String>)> {
    let ds = eval::focus::load_for_subject(dir, set, &LoadOptions::default(), id, as_of.is_none())
        .unwrap();
    match &ds.focus {
        Some(f) if !f.partial.is_empty() => seen.partial += 1,
        Some(_) => {}
        None => seen.whole.push(id.to_string()),
    }
    let run = eval::prepare_subject(set, &ds, as_of, id).unwrap()?;
    let e = run.explain(id, None)?;
    let mut findings = Vec::new();
    run.for_each_finding(|f| {
        findings.push(serde_json::to_string(&f)?);
        Ok(())
    })
    .unwrap();
    Some((
        eval::explain::render(&e),
        serde_json::to_string_pretty(&e).unwrap(),
        findings,
    ))
}

/// Every subject of `dir` (and an unknown one): the fast path equals the whole dataset.
fn check(set: &PolicySet, dir: &Path, as_of: Option<NaiveDate>) -> Seen {
    let ds = data::load(dir, &set.schema, &LoadOptions::default()).unwrap();
    let run = eval::prepare(set, &ds, as_of).unwrap();
    let mut findings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    run.for_each_finding(|f| {
        findings
            .entry(f.subject_id.clone())
            .or_default()
            .push(serde_json::to_string(&f)?);
        Ok(())
    })
    .unwrap();
    let mut seen = Seen::default();
    let mut ids = subject_ids(set, &ds);
    ids.push("NOPE".into());
    for id in &ids {
        let expected = run.explain(id, None).map(|e| {
            (
                eval::explain::render(&e),
                serde_json::to_string_pretty(&e).unwrap(),
                findings.get(id).cloned().unwrap_or_default(),
            )
        });
        let got = fast(set, dir, as_of, id, &mut seen);
        let what = format!("{} {id} as of {as_of:?}", dir.display());
        match (&expected, &got) {
            (Some(a), Some(b)) => {
                assert_eq!(a.0, b.0, "text of {what}");
                assert_eq!(a.1, b.1, "JSON of {what}");
                assert_eq!(a.2, b.2, "findings of {what}");
                assert!(!b.2.is_empty(), "{what} has findings");
            }
            (None, None) => assert_eq!(id, "NOPE"),
            _ => panic!("{what}: found by one path only"),
        }
        seen.subjects += 1;
    }
    seen
}

fn shipped() -> PolicySet {
    rulebook::policy::load(&policies()).unwrap_or_else(|_| panic!("policies"))
}

#[test]
fn every_sample_subject_explains_as_the_whole_dataset_does() {
    let set = shipped();
    let dir = root().join("samples/hubei-2020");
    for as_of in [None, date("2020-12-31"), date("2020-04-01")] {
        let seen = check(&set, &dir, as_of);
        assert_eq!(
            seen.subjects, 72,
            "60 members, 11 organizations, one unknown"
        );
        // Every subject's services, check-ins … were loaded in part.
        assert_eq!(seen.partial, 72, "{seen:?}");
        assert!(seen.whole.is_empty(), "{seen:?}");
    }
    // The Chinese export: GB18030 CSV with Chinese headers, services from an XLSX sheet.
    let seen = check(&set, &root().join("samples/hubei-2020-export"), None);
    assert_eq!((seen.subjects, seen.partial), (72, 72), "{seen:?}");
}

#[test]
fn every_generated_subject_explains_as_the_whole_dataset_does() {
    let dir = tempfile::tempdir().unwrap();
    rulebook::r#gen::generate(&rulebook::r#gen::GenOptions {
        members: 200,
        seed: 5,
        out: dir.path().to_path_buf(),
        year: 2020,
    })
    .unwrap();
    let set = shipped();
    for as_of in [None, date("2020-09-30")] {
        let seen = check(&set, dir.path(), as_of);
        assert!(seen.subjects > 200, "{seen:?}");
        assert_eq!(seen.partial, seen.subjects, "{seen:?}");
    }
}

/// A change to the lines of a file.
type Edit<'a> = &'a dyn Fn(Vec<String>) -> Vec<String>;

/// The samples with `edit` applied to the lines of some files.
fn samples_with(edits: &[(&str, Edit)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("samples/hubei-2020"), dir.path());
    for (file, edit) in edits {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = edit(text.lines().map(String::from).collect());
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    dir
}

/// The line of `lines` whose first field is `key`.
fn line_of(lines: &[String], key: &str) -> String {
    lines
        .iter()
        .find(|l| l.split(',').next() == Some(key))
        .unwrap()
        .clone()
}

#[test]
fn duplicate_keys_and_rejected_rows_are_right_or_the_whole_dataset_is_loaded() {
    let set = shipped();
    let services = |mut l: Vec<String>| {
        // M001's service S0163 (line 164) duplicated by an earlier row of M005: M001's row
        // is the duplicate, and is rejected.
        let s0163 = line_of(&l, "S0163").replace(",M001,", ",M005,");
        l.insert(1, s0163);
        // An earlier row with M002's key S0200 that is itself rejected (bad date), so
        // M002's row loads.
        let s0200 = line_of(&l, "S0200");
        let bad = s0200.split(',').map(String::from).collect::<Vec<_>>();
        let bad = format!(
            "{},M007,{},2020-13-45 09:00,{}",
            bad[0],
            bad[2],
            bad[4..].join(",")
        );
        l.insert(1, bad);
        // A duplicate of S0001 at the end, with the latest date of all: rejected, so it
        // must not become the default --as-of.
        let s0001 = line_of(&l, "S0001");
        let f: Vec<&str> = s0001.split(',').collect();
        l.push(format!(
            "S0001,M010,{},2021-06-01 09:00:00,2021-06-01 10:00:00,{}",
            f[2],
            f[5..].join(",")
        ));
        // A row that is too long, and one of an unknown member, both late.
        l.push("S9001,M003,C01,2021-07-01 09:00,2021-07-01 10:00,epidemic,community,true,x".into());
        l.push("S9002,M999,C01,2021-07-02 09:00,2021-07-02 10:00,epidemic,community,true".into());
        l
    };
    let checkins = |mut l: Vec<String>| {
        // A late check-in in an unknown community (rejected), and a quoted field (the rest of
        // the file is read by the csv crate).
        l.push("M004,C99,2021-08-01 09:00".into());
        l.push("\"M004\",C01,2020-12-30 09:00".into());
        l
    };
    let dir = samples_with(&[("services.csv", &services), ("checkins.csv", &checkins)]);
    for as_of in [None, date("2020-12-31")] {
        let seen = check(&set, dir.path(), as_of);
        assert_eq!(seen.subjects, 72);
        if as_of.is_none() {
            // The rejected duplicate holds the latest date: it cannot be shown not to load
            // without its key, so every subject but M010 (whose own row it is) falls back,
            // and M010 for its own duplicate.
            assert_eq!(seen.whole.len(), 72, "{seen:?}");
        } else {
            // Only subjects whose own row shares a key with an earlier row left out.
            assert_eq!(seen.whole, ["M001", "M010", "M028"], "{seen:?}");
            assert_eq!(seen.partial, 69, "{seen:?}");
        }
    }
}

#[test]
fn a_latest_date_in_rows_left_out_is_found() {
    let set = shipped();
    // A member's unit attendance on 2021-01-15 (valid): the default --as-of for everyone;
    // later dates only in rows that are rejected (bad date, unknown member, too many fields).
    let attendance = |mut l: Vec<String>| {
        l.push("M020,2021-01-15".into());
        l.push("M020,2021-02-30".into());
        l.push("M998,2021-03-01".into());
        l.push("M021,2021-03-02,x".into());
        l
    };
    let dir = samples_with(&[("unit_attendance.csv", &attendance)]);
    let seen = check(&set, dir.path(), None);
    assert_eq!((seen.subjects, seen.partial), (72, 72), "{seen:?}");
    let ds = data::load(dir.path(), &set.schema, &LoadOptions::default()).unwrap();
    assert_eq!(ds.latest_date(), date("2021-01-15"));
    let focused =
        eval::focus::load_for_subject(dir.path(), &set, &LoadOptions::default(), "M001", true)
            .unwrap();
    assert_eq!(focused.latest_date(), date("2021-01-15"));
    assert_eq!(
        focused.tables["unit_attendance"].len(),
        4,
        "M001's rows only"
    );
}

#[test]
fn a_policy_without_evidence_explains_the_same() {
    // Rules that keep no lineage for a kind (no aggregate in any rule's evidence).
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&policies(), dir.path());
    for e in std::fs::read_dir(dir.path().join("directives")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("evidence ="))
            .collect();
        std::fs::write(&p, kept.join("\n")).unwrap();
    }
    let set = rulebook::policy::load(dir.path()).unwrap_or_else(|_| panic!("policies"));
    let seen = check(&set, &root().join("samples/hubei-2020"), None);
    assert_eq!(seen.partial, 72, "{seen:?}");
}

#[test]
fn explain_prints_what_the_whole_dataset_gives() {
    let set = shipped();
    let dir = root().join("samples/hubei-2020");
    let ds = data::load(&dir, &set.schema, &LoadOptions::default()).unwrap();
    let run = eval::prepare(&set, &ds, None).unwrap();
    for (id, format) in [("M017", "text"), ("B05", "json"), ("M001", "text")] {
        let e = run.explain(id, None).unwrap();
        let expected = match format {
            "text" => eval::explain::render(&e),
            _ => serde_json::to_string_pretty(&e).unwrap() + "\n",
        };
        let out = rulebook()
            .args(["explain", "--data", "samples/hubei-2020", "--subject", id])
            .args(["--format", format])
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stdout, expected, "{id}");
    }
    // With --rejects every row is read (to list every reject): the same explanation.
    let rejects = tempfile::NamedTempFile::new().unwrap();
    let out = rulebook()
        .args([
            "explain",
            "--data",
            "samples/hubei-2020",
            "--subject",
            "M017",
        ])
        .arg("--rejects")
        .arg(rejects.path())
        .output()
        .unwrap();
    assert_eq!(
        texts(&out).0,
        eval::explain::render(&run.explain("M017", None).unwrap())
    );
}

#[test]
fn a_focused_load_keeps_only_the_subjects_rows() {
    let set = shipped();
    let dir = root().join("samples/hubei-2020");
    let whole = data::load(&dir, &set.schema, &LoadOptions::default()).unwrap();
    let load = |id: &str| {
        eval::focus::load_for_subject(&dir, &set, &LoadOptions::default(), id, true).unwrap()
    };
    let count = |table: &str, col: usize, ids: &[&str]| {
        let text = std::fs::read_to_string(dir.join(format!("{table}.csv"))).unwrap();
        text.lines()
            .skip(1)
            .filter(|l| ids.contains(&l.split(',').nth(col).unwrap()))
            .count()
    };
    let m = load("M017");
    let f = m.focus.as_ref().unwrap();
    let mut partial = f.partial.clone();
    partial.sort();
    // Organization registrations load beside the members, before the subject is known.
    assert_eq!(
        partial,
        [
            "assignments",
            "checkins",
            "filings",
            "reports",
            "services",
            "unit_attendance"
        ]
    );
    for t in [
        "communities",
        "organizations",
        "members",
        "org_registrations",
    ] {
        assert_eq!(m.tables[t].len(), whole.tables[t].len(), "{t} whole");
    }
    assert_eq!(m.tables["services"].len(), count("services", 1, &["M017"]));
    assert_eq!(m.tables["checkins"].len(), count("checkins", 0, &["M017"]));
    assert_eq!(
        m.tables["unit_attendance"].len(),
        count("unit_attendance", 0, &["M017"])
    );
    // An organization: its members' grid assignments and its own registrations; no services.
    let o = load("B05");
    let members: Vec<String> = std::fs::read_to_string(dir.join("members.csv"))
        .unwrap()
        .lines()
        .filter(|l| l.split(',').nth(2) == Some("B05"))
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    let members: Vec<&str> = members.iter().map(|s| s.as_str()).collect();
    assert!(!members.is_empty());
    assert_eq!(
        o.tables["assignments"].len(),
        count("assignments", 0, &members)
    );
    assert_eq!(o.tables["services"].len(), 0);
    assert_eq!(o.latest_date(), whole.latest_date());
}
