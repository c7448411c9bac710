//! The columnar cache and Parquet input, through the real CLI: a second run reads the cache
//! and writes the same bytes; a changed data file (even one whose size and mtime are kept)
//! is a miss, a touched one a hit; a damaged cache file is rebuilt, never trusted;
//! `--cache DIR` and `--no-cache`; `explain` from the cache; and a dataset of Parquet files gives the same findings as the
//! same rows in CSV, with rejects numbered by Parquet row index.

mod common;

use arrow_array::TimestampSecondArray;
use arrow_array::{ArrayRef, BooleanArray, Date32Array, Int64Array, RecordBatch, StringArray};
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A copy of the 2020 sample in a temporary folder, with one row that is rejected.
fn sample(tmp: &Path) -> PathBuf {
    let data = tmp.join("data");
    copy_dir(&root().join("samples/hubei-2020"), &data);
    let _ = std::fs::remove_dir_all(data.join(".rulebook-cache"));
    let services = data.join("services.csv");
    let mut text = std::fs::read_to_string(&services).unwrap();
    text.push_str(
        "S9999,M001,C01,2020-13-45 10:00:00,2020-02-10 12:00:00,epidemic,community,true\n",
    );
    std::fs::write(&services, text).unwrap();
    data
}

/// `eval` writing JSON Lines findings and the rejects; (findings, rejects, stderr).
fn eval(data: &Path, out: &Path, extra: &[&str]) -> (Vec<u8>, Vec<u8>, String) {
    let findings = out.join("findings.jsonl");
    let rejects = out.join("rejects.csv");
    let o = rulebook()
        .args(["eval", "--timings", "--data"])
        .arg(data)
        .arg("--out")
        .arg(&findings)
        .arg("--rejects")
        .arg(&rejects)
        .args(extra)
        .output()
        .unwrap();
    let (_, err) = texts(&o);
    assert!(o.status.success(), "{err}");
    (
        std::fs::read(&findings).unwrap(),
        std::fs::read(&rejects).unwrap(),
        err,
    )
}

/// The cache's line of `--timings`.
fn cache_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("cache"))
        .unwrap_or_else(|| panic!("no cache line in:\n{stderr}"))
}

/// The Arrow files of the one cache entry under `root`.
fn entry_files(root: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn second_run_reads_the_cache_and_writes_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample(tmp.path());
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    for d in [&a, &b, &c] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (f1, r1, e1) = eval(&data, &a, &[]);
    assert!(cache_line(&e1).contains("cache: written"), "{e1}");
    assert!(data.join(".rulebook-cache").is_dir());
    let (f2, r2, e2) = eval(&data, &b, &[]);
    assert!(cache_line(&e2).contains("cache: hit"), "{e2}");
    let (f3, r3, e3) = eval(&data, &c, &["--no-cache"]);
    assert!(cache_line(&e3).contains("cache: none"), "{e3}");
    assert!(!f1.is_empty() && String::from_utf8_lossy(&r1).contains("2020-13-45"));
    assert_eq!(f1, f2, "findings from the cache differ");
    assert_eq!(f1, f3, "findings without the cache differ");
    assert_eq!(r1, r2, "rejects from the cache differ");
    assert_eq!(r1, r3, "rejects without the cache differ");
    // The same summary on stdout too (rows read, loaded and rejected per table).
    let summary = |extra: &[&str]| {
        let o = rulebook()
            .args(["eval", "--data"])
            .arg(&data)
            .args(extra)
            .output()
            .unwrap();
        texts(&o).0
    };
    assert_eq!(summary(&[]), summary(&["--no-cache"]));
}

#[test]
fn a_changed_data_file_is_a_miss() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    eval(&data, &out, &[]);
    // A member moves branch: same size, and the file's mtime is put back.
    let members = data.join("members.csv");
    let mtime = std::fs::metadata(&members).unwrap().modified().unwrap();
    let text = std::fs::read_to_string(&members).unwrap();
    let changed = text.replacen("M001,张喆,B01", "M001,张喆,B02", 1);
    assert_ne!(text, changed);
    assert_eq!(text.len(), changed.len());
    std::fs::write(&members, &changed).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&members)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        std::fs::metadata(&members).unwrap().modified().unwrap(),
        mtime
    );
    let (f, r, e) = eval(&data, &out, &[]);
    assert!(
        cache_line(&e).contains("rebuilt (the data files changed)"),
        "{e}"
    );
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let (f0, r0, _) = eval(&data, &fresh, &["--no-cache"]);
    assert_eq!(f, f0);
    assert_eq!(r, r0);
    // And then it is current again.
    let (_, _, e) = eval(&data, &out, &[]);
    assert!(cache_line(&e).contains("cache: hit"), "{e}");
    // A new row: a miss too.
    let mut text = changed;
    text.push_str("M999,新党员,B01,C01,in_service\n");
    std::fs::write(&members, text).unwrap();
    let (_, _, e) = eval(&data, &out, &[]);
    assert!(cache_line(&e).contains("rebuilt"), "{e}");
}

#[test]
fn a_touched_data_file_is_still_a_hit_and_its_new_stamps_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (f0, r0, _) = eval(&data, &out, &[]);
    let members = data.join("members.csv");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&members)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let (f, r, e) = eval(&data, &out, &[]);
    assert!(cache_line(&e).contains("cache: hit"), "{e}");
    assert_eq!((f, r), (f0, r0));
    // The manifest now records the new mtime (so the next run need not hash the file).
    let manifest = entry_files(&data.join(".rulebook-cache"), "json").remove(0);
    let text = std::fs::read_to_string(&manifest).unwrap();
    let (_, body) = text.split_once('\n').unwrap();
    let m: serde_json::Value = serde_json::from_str(body).unwrap();
    let ns = later
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let recorded = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "members.csv")
        .unwrap()["mtime_ns"]
        .as_u64()
        .map(u128::from);
    assert_eq!(
        recorded.map(|r| r / 1_000_000),
        Some(ns / 1_000_000),
        "{body}"
    );
}

#[test]
fn a_damaged_cache_file_is_rebuilt_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (f0, r0, _) = eval(&data, &out, &[]);
    let cache = data.join(".rulebook-cache");
    let arrow = entry_files(&cache, "arrow");
    assert!(arrow.len() >= 11, "{arrow:?}"); // ten tables and the ids
    // One byte of a table file changed (its structure still reads as Arrow).
    for victim in [arrow[arrow.len() / 2].clone(), arrow[0].clone()] {
        let mut bytes = std::fs::read(&victim).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x20;
        std::fs::write(&victim, bytes).unwrap();
        let (f, r, e) = eval(&data, &out, &[]);
        assert!(cache_line(&e).contains("damaged"), "{e}");
        assert!(e.contains("warning: the data cache"), "{e}");
        assert_eq!((f, r), (f0.clone(), r0.clone()));
        let (_, _, e) = eval(&data, &out, &[]);
        assert!(cache_line(&e).contains("cache: hit"), "{e}");
    }
    // The manifest cut short, then a table file removed.
    let manifest = entry_files(&cache, "json").remove(0);
    let text = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let (f, _, e) = eval(&data, &out, &[]);
    assert!(cache_line(&e).contains("damaged"), "{e}");
    assert_eq!(f, f0);
    std::fs::remove_file(&entry_files(&cache, "arrow")[3]).unwrap();
    let (f, _, e) = eval(&data, &out, &[]);
    assert!(cache_line(&e).contains("damaged"), "{e}");
    assert_eq!(f, f0);
}

#[test]
fn cache_folder_option_and_explain_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = sample(tmp.path());
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let arg = cache.to_str().unwrap();
    let (_, _, e) = eval(&data, &out, &["--cache", arg]);
    assert!(cache_line(&e).contains("cache: written"), "{e}");
    assert!(!data.join(".rulebook-cache").exists());
    assert!(entry_files(&cache, "arrow").len() >= 11);
    let (_, _, e) = eval(&data, &out, &["--cache", arg]);
    assert!(cache_line(&e).contains("cache: hit"), "{e}");
    let explain = |subject: &str, extra: &[&str]| {
        let o = rulebook()
            .args(["explain", "--subject", subject, "--data"])
            .arg(&data)
            .args(extra)
            .output()
            .unwrap();
        let (out, err) = texts(&o);
        assert!(!err.contains("panicked"), "{err}");
        // (The rejects shown on stderr are the whole dataset's from the cache, the kept
        // rows' from a focused load of the files.)
        (o.status.code(), out)
    };
    let (code, from_cache) = explain("M005", &["--cache", arg]);
    assert_eq!(code, Some(0));
    assert!(from_cache.contains("M005"), "{from_cache}");
    // The cache is read for the subject's rows only: members, branches, communities, and
    // with or without `--as-of` (the latest date then comes from the manifest), as the
    // files say.
    for subject in ["M001", "M005", "M010", "B01", "B02", "C01", "NOBODY"] {
        for as_of in [&[][..], &["--as-of", "2020-03-01"][..]] {
            let cached = explain(subject, &[&["--cache", arg][..], as_of].concat());
            let files = explain(subject, &[&["--no-cache"][..], as_of].concat());
            assert_eq!(cached, files, "{subject} {as_of:?}");
        }
    }
    // `--no-cache` and `--cache` together make no sense.
    let o = rulebook()
        .args(["eval", "--no-cache", "--cache", arg, "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!o.status.success());
}

/// The cells of a CSV column as the Arrow array a Parquet export would hold: dates, date-times,
/// booleans and integers typed, the rest text; empty cells null.
fn typed(values: &[&str]) -> ArrayRef {
    let cells: Vec<Option<&str>> = values
        .iter()
        .map(|v| (!v.is_empty()).then_some(*v))
        .collect();
    let all = |f: &dyn Fn(&str) -> bool| {
        cells.iter().flatten().all(|v| f(v)) && cells.iter().any(|c| c.is_some())
    };
    let date = |v: &str| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok();
    let datetime = |v: &str| chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S").ok();
    if all(&|v| date(v).is_some()) {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        Arc::new(Date32Array::from_iter(cells.iter().map(|c| {
            c.map(|v| (date(v).unwrap() - epoch).num_days() as i32)
        })))
    } else if all(&|v| datetime(v).is_some()) {
        Arc::new(TimestampSecondArray::from_iter(
            cells
                .iter()
                .map(|c| c.map(|v| datetime(v).unwrap().and_utc().timestamp())),
        ))
    } else if all(&|v| v == "true" || v == "false") {
        Arc::new(BooleanArray::from_iter(
            cells.iter().map(|c| c.map(|v| v == "true")),
        ))
    } else if all(&|v| v.parse::<i64>().is_ok()) {
        Arc::new(Int64Array::from_iter(
            cells.iter().map(|c| c.map(|v| v.parse::<i64>().unwrap())),
        ))
    } else {
        Arc::new(StringArray::from_iter(cells.iter().copied()))
    }
}

/// Write `csv` as a Parquet file with typed columns.
fn csv_to_parquet(csv: &Path, parquet: &Path) {
    let mut rdr = csv::Reader::from_path(csv).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let columns: Vec<ArrayRef> = (0..header.len())
        .map(|i| {
            typed(
                &rows
                    .iter()
                    .map(|r| r.get(i).unwrap_or(""))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let batch = RecordBatch::try_from_iter(header.iter().cloned().zip(columns)).unwrap();
    let file = std::fs::File::create(parquet).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Findings without the files and lines their evidence cites: the verdicts, messages and
/// evidence values, whatever files the rows came from.
fn verdicts(jsonl: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(jsonl)
        .lines()
        .map(|l| {
            let mut f: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(e) = f["evidence"].as_object_mut() {
                e.remove("records");
            }
            f.to_string()
        })
        .collect()
}

#[test]
fn parquet_input_gives_the_findings_of_the_same_rows_in_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let csv_dir = tmp.path().join("csv");
    copy_dir(&root().join("samples/hubei-2020"), &csv_dir);
    let _ = std::fs::remove_dir_all(csv_dir.join(".rulebook-cache"));
    let pq_dir = tmp.path().join("parquet");
    std::fs::create_dir_all(&pq_dir).unwrap();
    for e in std::fs::read_dir(&csv_dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "csv") {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
            csv_to_parquet(&p, &pq_dir.join(format!("{stem}.parquet")));
        }
    }
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (f_csv, _, _) = eval(&csv_dir, &a, &["--no-cache"]);
    let (f_pq, _, e) = eval(&pq_dir, &b, &["--no-cache"]);
    assert!(!f_pq.is_empty(), "{e}");
    assert_eq!(verdicts(&f_csv), verdicts(&f_pq));
    // Evidence cites the Parquet file and its row index.
    assert!(String::from_utf8_lossy(&f_pq).contains("services.parquet"));
    // The cache works on Parquet input too.
    let (f1, _, e1) = eval(&pq_dir, &b, &[]);
    let (f2, _, e2) = eval(&pq_dir, &b, &[]);
    assert!(cache_line(&e1).contains("cache: written"), "{e1}");
    assert!(cache_line(&e2).contains("cache: hit"), "{e2}");
    assert_eq!(f1, f_pq);
    assert_eq!(f2, f_pq);
}

#[test]
fn parquet_rows_are_checked_and_counted_like_csv_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&root().join("samples/hubei-2020"), &data);
    let _ = std::fs::remove_dir_all(data.join(".rulebook-cache"));
    // services as Parquet, with text cells so that a bad date can be in it.
    let csv = data.join("services.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    let rows_before = text.lines().count() - 1;
    text.push_str(
        "S9999,M001,C01,2020-13-45 10:00:00,2020-02-10 12:00:00,epidemic,community,true\n",
    );
    text.push_str(
        "S9998,M404,C01,2020-02-10 10:00:00,2020-02-10 12:00:00,epidemic,community,true\n",
    );
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let columns: Vec<ArrayRef> = (0..header.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.get(i).unwrap()),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_from_iter(header.iter().cloned().zip(columns)).unwrap();
    std::fs::remove_file(&csv).unwrap();
    let file = std::fs::File::create(data.join("services.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (_, rejects, _) = eval(&data, &out, &["--no-cache"]);
    let rejects = String::from_utf8(rejects).unwrap();
    // Row index from 0: the rows after the sample's are rows_before and rows_before + 1.
    let bad_date = rejects
        .lines()
        .find(|l| l.contains("2020-13-45"))
        .unwrap_or_else(|| panic!("{rejects}"));
    assert!(bad_date.contains("services.parquet"), "{bad_date}");
    assert!(bad_date.contains(&format!(",{rows_before},")), "{bad_date}");
    let unknown = rejects
        .lines()
        .find(|l| l.contains("M404"))
        .unwrap_or_else(|| panic!("{rejects}"));
    assert!(
        unknown.contains(&format!(",{},", rows_before + 1)),
        "{unknown}"
    );
    // Every row is accounted for in the summary.
    let o = rulebook()
        .args(["eval", "--no-cache", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let (stdout, _) = texts(&o);
    let line = stdout
        .lines()
        .find(|l| l.contains("services.parquet"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(&(rows_before + 2).to_string()), "{line}");
    // A damaged Parquet file stops the run with its name.
    std::fs::write(
        data.join("services.parquet"),
        b"PAR1 not really parquet PAR1",
    )
    .unwrap();
    let o = rulebook()
        .args(["eval", "--no-cache", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let (_, err) = texts(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("services.parquet") && err.contains("Parquet"),
        "{err}"
    );
}
