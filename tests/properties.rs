//! Property tests (proptest): findings do not depend on the order of input rows or columns;
//! evaluating again gives byte-identical findings; the Typst escapers are safe and lossless
//! for any text; the loader accounts for every row of any bytes.
//!
//! Case counts are small where a case runs the CLI on the samples (16 and 12 cases, well
//! under a second each); the in-process properties run a few hundred cases.

mod common;

#[path = "common/escape.rs"]
mod escape;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::Config;
use rulebook::data::LoadOptions;
use std::path::Path;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------
// Row order

/// The sample tables whose rows and columns the order property permutes.
const TABLES: [&str; 10] = [
    "communities",
    "organizations",
    "members",
    "reports",
    "filings",
    "assignments",
    "services",
    "checkins",
    "unit_attendance",
    "org_registrations",
];

/// A table as text: header and rows.
type TextTable = (Vec<String>, Vec<Vec<String>>);

/// A sample table.
fn sample_table(name: &str) -> TextTable {
    let path = root().join(format!("samples/hubei-2020/{name}.csv"));
    let mut r = csv::Reader::from_path(&path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// The samples' tables, read once.
fn samples() -> &'static Vec<TextTable> {
    static S: OnceLock<Vec<TextTable>> = OnceLock::new();
    S.get_or_init(|| TABLES.iter().map(|t| sample_table(t)).collect())
}

/// One permutation of rows and one of columns per table.
#[derive(Debug, Clone)]
struct Order {
    rows: Vec<Vec<usize>>,
    columns: Vec<Vec<usize>>,
}

fn order() -> impl Strategy<Value = Order> {
    let per_table: Vec<_> = samples()
        .iter()
        .map(|(h, rows)| {
            (
                Just((0..rows.len()).collect::<Vec<usize>>()).prop_shuffle(),
                Just((0..h.len()).collect::<Vec<usize>>()).prop_shuffle(),
            )
        })
        .collect();
    per_table.prop_map(|v| {
        let (rows, columns) = v.into_iter().unzip();
        Order { rows, columns }
    })
}

/// Write the samples in `order` to `dir`.
fn write_permuted(dir: &Path, order: &Order) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, name) in TABLES.iter().enumerate() {
        let (header, rows) = &samples()[i];
        let cols = &order.columns[i];
        let mut w = csv::Writer::from_path(dir.join(format!("{name}.csv"))).unwrap();
        w.write_record(cols.iter().map(|&c| &header[c])).unwrap();
        for &r in &order.rows[i] {
            w.write_record(cols.iter().map(|&c| &rows[r][c])).unwrap();
        }
        w.flush().unwrap();
    }
}

/// Run `eval` and return the findings file's bytes.
fn eval_bytes(data: &Path, format: &str, as_of: Option<&str>, out: &Path) -> Vec<u8> {
    let mut cmd = rulebook();
    cmd.args(["eval", "--quiet", "--format", format, "--data"])
        .arg(data)
        .arg("--out")
        .arg(out);
    if let Some(d) = as_of {
        cmd.args(["--as-of", d]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", texts(&o).1);
    std::fs::read(out).unwrap()
}

/// Findings without lineage (line numbers move when rows move), one string each.
fn verdicts(json: &[u8]) -> Vec<String> {
    let findings: Vec<serde_json::Value> = serde_json::from_slice(json).unwrap();
    findings
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if let Some(ev) = f["evidence"].as_object_mut() {
                ev.remove("records");
            }
            f.to_string()
        })
        .collect()
}

/// The findings of the samples as shipped.
fn baseline() -> &'static Vec<String> {
    static B: OnceLock<Vec<String>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("f.json");
        let data = dir.path().join("data");
        // The samples in file order, written the way the property writes them.
        let identity = Order {
            rows: samples()
                .iter()
                .map(|(_, r)| (0..r.len()).collect())
                .collect(),
            columns: samples()
                .iter()
                .map(|(h, _)| (0..h.len()).collect())
                .collect(),
        };
        write_permuted(&data, &identity);
        let got = verdicts(&eval_bytes(&data, "json", None, &out));
        // The rewrite changes nothing: the same findings as the shipped files.
        let shipped = verdicts(&eval_bytes(
            &root().join("samples/hubei-2020"),
            "json",
            None,
            &out,
        ));
        assert_eq!(got, shipped);
        got
    })
}

proptest! {
    #![proptest_config(Config { cases: 16, ..Config::default() })]

    /// Every table's rows and columns shuffled at once: the same findings (less lineage).
    #[test]
    fn findings_do_not_depend_on_the_order_of_rows_or_columns(order in order()) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        write_permuted(&data, &order);
        let got = verdicts(&eval_bytes(&data, "json", None, &dir.path().join("f.json")));
        let want = baseline();
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want.iter()) {
            prop_assert_eq!(g, w);
        }
    }
}

/// Findings are ordered by directive, rule and subject.
fn assert_ordered(json: &[u8]) {
    let findings: Vec<serde_json::Value> = serde_json::from_slice(json).unwrap();
    let keys: Vec<(String, String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["directive"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap().to_string(),
                f["subject_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        keys, sorted,
        "findings are not in (directive, rule, subject) order"
    );
}

proptest! {
    #![proptest_config(Config { cases: 12, ..Config::default() })]

    /// eval → findings, and eval again on the same input: byte-identical findings in every
    /// format, on any evaluation date, on both samples (the export one is GBK CSV and XLSX;
    /// the other with its rows and columns in any order).
    #[test]
    fn evaluating_again_gives_byte_identical_findings(
        format in prop::sample::select(vec!["json", "jsonl", "csv"]),
        as_of in prop::option::of(prop::sample::select(vec![
            "2020-02-20", "2020-06-30", "2020-09-15", "2020-12-31", "2021-03-01",
        ])),
        order in order(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let permuted = dir.path().join("data");
        write_permuted(&permuted, &order);
        for data in [root().join("samples/hubei-2020-export"), permuted] {
            let a = eval_bytes(&data, format, as_of, &dir.path().join(format!("a.{format}")));
            let b = eval_bytes(&data, format, as_of, &dir.path().join(format!("b.{format}")));
            prop_assert!(!a.is_empty());
            prop_assert!(a == b, "two runs on {} differ ({format}, as of {as_of:?})", data.display());
            if format == "json" {
                assert_ordered(&a);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Typst escaping

/// Text with many markup characters, line breaks of every kind and controls.
fn hostile_text() -> impl Strategy<Value = String> {
    let special: Vec<char> = escape::MARKUP
        .chars()
        .chain("\n\r\t\u{0B}\u{0C}\u{85}\u{2028}\u{2029}\u{0}\u{1B} 　·…—王".chars())
        .collect();
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(special),
            1 => any::<char>(),
            1 => prop::char::range('a', 'z'),
        ],
        0..48,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    /// escape_markup: every markup character escaped, nothing lost, parses as text only
    /// (alone, in strong text, a heading and a content block); see tests/common/escape.rs.
    #[test]
    fn escaped_text_is_only_text(s in prop_oneof![hostile_text(), any::<String>()]) {
        escape::check_markup(&s, &rulebook::report::typst::escape_markup(&s));
    }

    /// string_literal: one Typst string whose value is the text.
    #[test]
    fn string_literals_round_trip(s in prop_oneof![hostile_text(), any::<String>()]) {
        escape::check_literal(&s, &rulebook::report::typst::string_literal(&s));
    }

    /// Escaping is injective: different texts (after the documented line-break and control
    /// mapping) never escape to the same markup.
    #[test]
    fn escaping_is_injective(a in hostile_text(), b in hostile_text()) {
        use rulebook::report::typst::escape_markup;
        if escape::expected_text(&a) != escape::expected_text(&b) {
            prop_assert_ne!(escape_markup(&a), escape_markup(&b));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The CSV reader and loader on any bytes

fn policy() -> &'static rulebook::policy::PolicySet {
    static P: OnceLock<rulebook::policy::PolicySet> = OnceLock::new();
    P.get_or_init(|| rulebook::policy::load(&policies()).unwrap())
}

/// Bytes that look like CSV (header, cells, quotes, separators, line ends, invalid and GBK
/// bytes), or any bytes at all.
fn csv_bytes(header: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let cell = prop_oneof![
        Just(b"M001".to_vec()),
        Just(b"C01".to_vec()),
        Just(b"S0001".to_vec()),
        Just(b"2020-02-10 13:46:00".to_vec()),
        Just(b"2020/2/7".to_vec()),
        Just(b"true".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\"\"".to_vec()),
        Just("疫情防控".as_bytes().to_vec()),
        Just(vec![0xB5, 0xB3, 0xD4, 0xB1]), // 党员 in GBK
        Just(vec![0xFF, 0xFE]),
        Just(b"\xEF\xBB\xBF".to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
        "[a-z0-9 ]{0,8}".prop_map(String::into_bytes),
    ];
    let sep = prop_oneof![
        4 => Just(b",".to_vec()),
        2 => Just(b"\n".to_vec()),
        1 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => Just(b";".to_vec()),
    ];
    let body = prop::collection::vec((cell, sep), 0..80).prop_map(|v| {
        v.into_iter()
            .flat_map(|(c, s)| c.into_iter().chain(s))
            .collect::<Vec<u8>>()
    });
    prop_oneof![
        3 => (any::<bool>(), body.clone()).prop_map(move |(lf, b)| {
            let mut out = header.as_bytes().to_vec();
            out.extend_from_slice(if lf { b"\n" } else { b"\r\n" });
            out.extend(b);
            out
        }),
        1 => body,
        1 => prop::collection::vec(any::<u8>(), 0..600),
    ]
}

/// One table of the small dataset (tests/common) replaced by `bytes`; the loader must not
/// panic, and must account for every row of every table.
fn check_loader(table: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(
        dir.path(),
        &[
            ("reports", "M1,C1,2020-02-10,epidemic"),
            ("checkins", "M2,C1,2020-02-11 08:00"),
            (
                "services",
                "S1,M1,C1,2020-08-01 08:00,2020-08-01 10:00,patrol,community,true",
            ),
        ],
    );
    std::fs::write(data.join(format!("{table}.csv")), bytes).unwrap();
    let ds = match rulebook::data::load(&data, &policy().schema, &LoadOptions::default()) {
        Ok(ds) => ds,
        Err(errors) => {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                prop_assert!(!e.file.is_empty() && !e.message.is_empty());
            }
            return Ok(());
        }
    };
    for s in &ds.stats {
        prop_assert_eq!(s.read, s.loaded + s.rejected, "accounting of {}", s.table);
        let listed = ds.rejects.iter().filter(|r| r.table == s.table).count() as u64;
        prop_assert_eq!(listed, s.rejected, "rejects listed for {}", s.table);
        if let Some(t) = ds.tables.get(&s.table) {
            prop_assert_eq!(t.len() as u64, s.loaded, "rows of {}", s.table);
        }
    }
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    for r in ds.rejects.iter().filter(|r| r.table == table) {
        prop_assert!(
            r.line >= 1 && r.line <= lines,
            "line {} of {lines}: {:?}",
            r.line,
            r
        );
        prop_assert!(!r.reason.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 96, ..Config::default() })]

    #[test]
    fn any_checkins_bytes_are_accounted_for(b in csv_bytes(HEADERS[7].1)) {
        check_loader("checkins", &b)?;
    }

    #[test]
    fn any_services_bytes_are_accounted_for(b in csv_bytes(HEADERS[6].1)) {
        check_loader("services", &b)?;
    }

    /// A key table: its rejected rows make dependent rows of other tables rejected too.
    #[test]
    fn any_members_bytes_are_accounted_for(b in csv_bytes(HEADERS[2].1)) {
        check_loader("members", &b)?;
    }
}
