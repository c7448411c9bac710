//! Bad data: every kind of broken row or file gets a clear message with file, row and
//! column; nothing panics; every row is either loaded or listed as rejected. The file-level
//! cases (empty, header-only, garbage, invalid bytes, truncated quotes, huge fields, broken
//! workbooks, missing and extra columns, encodings) are in the corpus: tests/corpus.rs.

mod common;

use common::*;
use std::path::Path;

/// Run eval with `--rejects`; returns (exit code, stdout, stderr, rejects CSV rows).
fn eval(data: &Path) -> (i32, String, String, Vec<csv::StringRecord>) {
    let rej = data.parent().unwrap().join("rejects.csv");
    let out = rulebook()
        .args(["eval", "--as-of", "2020-12-31", "--data"])
        .arg(data)
        .arg("--rejects")
        .arg(&rej)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "panic: {stderr}"
    );
    let rows = if rej.exists() {
        csv::Reader::from_path(&rej)
            .unwrap()
            .records()
            .map(|r| r.unwrap())
            .collect()
    } else {
        Vec::new()
    };
    (out.status.code().unwrap_or(-1), stdout, stderr, rows)
}

/// The summary line of a table: (read, loaded, rejected).
fn counts(stdout: &str, table: &str) -> (u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{table} ")))
        .unwrap_or_else(|| panic!("no {table} in {stdout}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .rev()
        .take(3)
        .map(|x| x.parse().unwrap())
        .collect();
    (n[2], n[1], n[0])
}

fn with(rows: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), rows);
    (dir, data)
}

#[test]
fn bad_rows_are_rejected_with_file_line_column_and_reason() {
    let (_d, data) = with(&[
        (
            "services",
            "S1,M1,C1,2020-08-01 08:00,2020-08-01 10:00,patrol,community,true",
        ),
        (
            "services",
            "S2,M1,C1,2020-13-01 08:00,2020-08-01 10:00,patrol,community,true",
        ), // bad date
        (
            "services",
            "S3,M1,C1,2020-08-01 10:00,2020-08-01 08:00,patrol,community,true",
        ), // end before start
        (
            "services",
            "S4,M1,C1,2020-08-01 10:00,2020-08-01 10:00,patrol,community,true",
        ), // zero duration
        (
            "services",
            "S5,M9,C1,2020-08-01 08:00,2020-08-01 10:00,patrol,community,true",
        ), // unknown member
        (
            "services",
            "S1,M1,C1,2020-08-02 08:00,2020-08-02 10:00,patrol,community,true",
        ), // duplicate key
        (
            "services",
            "S6,M1,C1,2020-08-01 08:00,2020-08-01 10:00,sleeping,community,true",
        ), // bad enum
        (
            "services",
            "S7,M1,C1,2020-08-01 08:00,2020-08-01 10:00,patrol,community,maybe",
        ), // bad bool
        ("services", "S8,M1,C1,2020-08-01 08:00"), // too few fields
        ("reports", "M1,C1,2020-02-30,epidemic"),  // bad date
        ("members", "M1,重复,B1,C1,in_service"),   // duplicate member key
    ]);
    let (code, stdout, stderr, rejects) = eval(&data);
    assert_eq!(code, 0, "{stderr}");
    let expect = [
        ("services.csv", "3", "start", "2020-13-01 08:00"),
        ("services.csv", "4", "end", "not after"),
        ("services.csv", "5", "end", "not after"),
        ("services.csv", "6", "member_id", "M9"),
        ("services.csv", "7", "service_id", "already on line 2"),
        ("services.csv", "8", "category", "sleeping"),
        ("services.csv", "9", "verified", "maybe"),
        ("services.csv", "10", "end", "fields"),
        ("reports.csv", "2", "reported_on", "2020-02-30"),
        ("members.csv", "4", "member_id", "already on line 2"),
    ];
    for (file, line, col, text) in expect {
        let r = rejects
            .iter()
            .find(|r| &r[1] == file && &r[2] == line)
            .unwrap_or_else(|| panic!("{file}:{line} not rejected: {rejects:?}"));
        assert!(
            r[3].starts_with(col),
            "{file}:{line}: column {} (want {col})",
            &r[3]
        );
        assert!(
            r[5].contains(text) || r[4].contains(text),
            "{file}:{line}: {r:?}"
        );
        assert!(
            stderr.contains(&format!("{file}:{line}:")),
            "stderr names {file}:{line}: {stderr}"
        );
    }
    assert_eq!(rejects.len(), expect.len());
    // Accounting: read = loaded + rejected.
    assert_eq!(counts(&stdout, "services"), (9, 1, 8));
    assert_eq!(counts(&stdout, "members"), (3, 2, 1));
    assert_eq!(counts(&stdout, "reports"), (1, 0, 1));
}

#[test]
fn rows_of_a_rejected_member_are_rejected_with_the_reason() {
    let (_d, data) = with(&[
        ("members", "M3,王五,B9,C1,in_service"), // unknown branch
        ("reports", "M3,C1,2020-02-10,epidemic"),
    ]);
    let (_, stdout, _, rejects) = eval(&data);
    let r = rejects
        .iter()
        .find(|r| &r[1] == "reports.csv")
        .expect("report of M3 rejected");
    assert!(r[5].contains("was rejected (members.csv line 4)"), "{r:?}");
    assert_eq!(counts(&stdout, "reports"), (1, 0, 1));
}

#[test]
fn missing_table_file_is_named() {
    let (_d, data) = with(&[]);
    std::fs::remove_file(data.join("filings.csv")).unwrap();
    let (code, _, stderr, _) = eval(&data);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no file for table `filings`") && stderr.contains("报备记录.csv"),
        "{stderr}"
    );
}

#[test]
fn gbk_csv_with_chinese_headers_and_slash_dates_loads() {
    let (_d, data) = with(&[]);
    let text = "党员编号,报到社区编号,报到日期,报到类型\r\nM1,C1,2020/2/7,疫情防控\r\nM2,C2,2020/2/8,疫情防控\r\n";
    let (bytes, _, _) = encoding_rs::GBK.encode(text);
    std::fs::remove_file(data.join("reports.csv")).unwrap();
    std::fs::write(data.join("报到记录.csv"), &bytes).unwrap();
    let (code, stdout, stderr, _) = eval(&data);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(counts(&stdout, "reports"), (2, 2, 0));
    let f = eval_json(&policies(), &data, None);
    assert_eq!(status(&f, "epidemic.report-residence", "M1"), "pass");
    assert_eq!(status(&f, "epidemic.report-residence", "M2"), "pass");
}

#[test]
fn bad_as_of_and_missing_folder_are_usage_errors() {
    let out = rulebook()
        .args([
            "eval",
            "--data",
            "samples/hubei-2020",
            "--as-of",
            "2020-13-01",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(texts(&out).1.contains("not a date"));
    let out = rulebook()
        .args(["eval", "--data", "no/such/folder"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        texts(&out).1.contains("no/such/folder"),
        "{}",
        texts(&out).1
    );
}

#[test]
fn a_title_line_above_the_header_is_skipped_with_a_warning() {
    let (_d, data) = with(&[]);
    let text = "党员报到情况表（2020年）\r\n,,,\r\n党员编号,报到社区编号,报到日期,报到类型\r\nM1,C1,2020年2月7日,疫情防控\r\nM2,C2,2020.2.8,疫情防控\r\n";
    let (bytes, _, _) = encoding_rs::GBK.encode(text);
    std::fs::remove_file(data.join("reports.csv")).unwrap();
    std::fs::write(data.join("报到记录.csv"), &bytes).unwrap();
    let (code, stdout, stderr, rejects) = eval(&data);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("报到记录.csv:1: line before the header skipped"),
        "{stderr}"
    );
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(counts(&stdout, "reports"), (2, 2, 0));
}

#[test]
fn any_rejected_key_row_explains_its_dependents() {
    // M3 has an extra field: rejected; its report then says why it cannot be evaluated.
    let (_d, data) = with(&[
        ("members", "M3,王五,B1,C1,in_service,extra"),
        ("reports", "M3,C1,2020-02-10,epidemic"),
    ]);
    let (_, _, _, rejects) = eval(&data);
    let r = rejects
        .iter()
        .find(|r| &r[1] == "reports.csv")
        .expect("report of M3 rejected");
    assert!(r[5].contains("was rejected (members.csv line 4)"), "{r:?}");
}
