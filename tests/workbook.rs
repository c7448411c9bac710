//! The findings workbook (`--format xlsx`, `--findings xlsx`), read back with calamine:
//! sheet names, headers, a known failing member's row, the list's rows against the fail and
//! warn findings of findings.json, Excel dates, continuation sheets past the row limit, and
//! byte-identical output.

mod common;

use calamine::{Data, DataType, Reader, Xlsx, open_workbook};
use common::*;
use rulebook::report::workbook::{self, LIST_SHEET, Options};
use std::path::Path;

const HEADERS: [&str; 14] = [
    "党员/组织编号",
    "姓名/名称",
    "党支部",
    "社区",
    "要求",
    "状态",
    "说明",
    "整改期限",
    "依据",
    "证据",
    "期间起",
    "期间止",
    "严重程度",
    "规则",
];

fn open(path: &Path) -> Xlsx<std::io::BufReader<std::fs::File>> {
    open_workbook(path).unwrap()
}

fn rows(wb: &mut Xlsx<std::io::BufReader<std::fs::File>>, sheet: &str) -> Vec<Vec<Data>> {
    let range = wb.worksheet_range(sheet).unwrap();
    range.rows().map(|r| r.to_vec()).collect()
}

fn text(d: &Data) -> String {
    match d {
        Data::String(s) => s.clone(),
        Data::Empty => String::new(),
        other => other.to_string(),
    }
}

fn eval_to(out: &Path) {
    let o = rulebook()
        .args(["eval", "--data", "samples/hubei-2020", "--quiet", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", texts(&o).1);
}

#[test]
fn eval_writes_the_findings_workbook() {
    let dir = tempfile::tempdir().unwrap();
    let xlsx = dir.path().join("findings.xlsx");
    let json = dir.path().join("findings.json");
    eval_to(&xlsx);
    eval_to(&json);
    let findings: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let mut wb = open(&xlsx);
    let names = wb.sheet_names();
    assert_eq!(names.first().map(String::as_str), Some(LIST_SHEET));
    assert_eq!(&names[names.len() - 2..], ["汇总", "说明"]);
    // One sheet per directive: the five of the shipped set, all in force in 2020.
    assert_eq!(names.len(), 1 + 5 + 2, "{names:?}");
    assert!(names.contains(&"党员每年在社区服务 20 小时".to_string()));

    let list = rows(&mut wb, LIST_SHEET);
    let header: Vec<String> = list[0].iter().map(text).collect();
    assert_eq!(header, HEADERS);
    let failing = findings
        .iter()
        .filter(|f| f["status"] == "fail" || f["status"] == "warn")
        .count();
    assert!(failing > 20);
    assert_eq!(list.len() - 1, failing);

    // M024 (谢婷): 17 verified hours in the cycle, 4 unverified.
    let row = list
        .iter()
        .find(|r| text(&r[0]) == "M024" && text(&r[13]).starts_with("hours.yearly"))
        .expect("M024 hours.yearly in the list");
    assert_eq!(text(&row[1]), "谢婷");
    assert_eq!(text(&row[2]), "省直机关某厅第二党支部");
    assert_eq!(text(&row[3]), "万松园社区");
    assert_eq!(text(&row[4]), "年度社区服务时长");
    assert_eq!(text(&row[5]), "不符合");
    assert!(
        text(&row[6]).contains("还需 3 小时，截止 2020-12-31"),
        "{row:?}"
    );
    assert_eq!(row[7], Data::Empty, "findings carry no deadline");
    assert!(
        text(&row[8]).contains("要求每位党员在社区服务 20小时"),
        "{row:?}"
    );
    let evidence = text(&row[9]);
    assert!(
        evidence
            .contains("本周期已核实服务时长（小时）：17（services.csv 第 334、391、442、467 行）"),
        "{evidence}"
    );
    assert!(!evidence.contains('{'), "{evidence}");
    // Dates are Excel dates.
    for (cell, day) in [(&row[10], "2020-07-01"), (&row[11], "2020-12-31")] {
        assert!(matches!(cell, Data::DateTime(_)), "{cell:?}");
        assert_eq!(cell.as_date().unwrap().to_string(), day);
    }
    assert_eq!(text(&row[12]), "重要");

    // The directive's sheet holds every finding of it, all statuses.
    let hours = rows(&mut wb, "党员每年在社区服务 20 小时");
    let of_directive = findings
        .iter()
        .filter(|f| f["directive"] == "service-hours-20")
        .count();
    assert_eq!(hours.len() - 1, of_directive);
    assert!(hours.iter().any(|r| text(&r[5]) == "符合"));

    // 汇总: a row per rule with numbers, and the total.
    let summary = rows(&mut wb, "汇总");
    assert_eq!(text(&summary[0][0]), "文件");
    let yearly = summary
        .iter()
        .find(|r| text(&r[1]) == "hours.yearly")
        .unwrap();
    assert_eq!(yearly[4], Data::Float(60.0));
    assert_eq!(yearly[8], Data::Float(6.0), "{yearly:?}");
    assert_eq!(yearly[12], Data::Float(0.9));
    let total = summary.iter().find(|r| text(&r[0]) == "合计").unwrap();
    assert_eq!(total[4], Data::Float(findings.len() as f64));

    // 说明: the policy set and its assumptions.
    let about = rows(&mut wb, "说明");
    let flat: Vec<String> = about.iter().flatten().map(text).collect();
    let hash = findings[0]["policy_hash"].as_str().unwrap();
    for s in [
        "hubei-sinking-members",
        "1.0.0",
        hash,
        "working_hours_start",
        "假设",
    ] {
        assert!(flat.iter().any(|c| c == s), "{s} in 说明");
    }
    let as_of = about.iter().find(|r| text(&r[0]) == "评估日期").unwrap();
    assert_eq!(as_of[1].as_date().unwrap().to_string(), "2020-12-31");
}

#[test]
fn the_workbook_is_byte_identical_on_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.xlsx"), dir.path().join("b.xlsx"));
    eval_to(&a);
    eval_to(&b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // No temporary files are left beside it.
    assert_eq!(dir.path().read_dir().unwrap().count(), 2);
}

#[test]
fn report_writes_the_workbook_beside_the_reports() {
    let dir = tempfile::tempdir().unwrap();
    let o = rulebook()
        .args([
            "report",
            "--data",
            "samples/hubei-2020",
            "--level",
            "summary",
            "--findings",
            "xlsx",
            "--quiet",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", texts(&o).1);
    assert!(dir.path().join("findings.xlsx").is_file());
    assert!(!dir.path().join("findings.json").exists());
    let wb = open(&dir.path().join("findings.xlsx"));
    assert_eq!(wb.sheet_names()[0], LIST_SHEET);
}

#[test]
fn xlsx_needs_an_output_file() {
    let o = rulebook()
        .args([
            "eval",
            "--data",
            "samples/hubei-2020",
            "--quiet",
            "--format",
            "xlsx",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(texts(&o).1.contains("--out"), "{}", texts(&o).1);
}

#[test]
fn full_sheets_go_on_in_continuation_sheets() {
    let set = rulebook::policy::load(&policies()).unwrap();
    let ds = rulebook::data::load(
        &root().join("samples/hubei-2020"),
        &set.schema,
        &Default::default(),
    )
    .unwrap();
    let run = rulebook::eval::prepare(&set, &ds, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.xlsx");
    let opts = Options {
        max_rows: 10,
        ..Options::new(run.as_of.and_time(chrono::NaiveTime::MIN))
    };
    let mut summary = rulebook::findings::Summary::default();
    let mut file = std::fs::File::create(&path).unwrap();
    let written = workbook::write(&run, &mut file, &opts, &mut summary).unwrap();
    drop(file);
    let expected = summary.count(rulebook::findings::Status::Fail)
        + summary.count(rulebook::findings::Status::Warn);
    assert_eq!(written.listed, expected);
    assert_eq!(written.findings, summary.total);

    let mut wb = open(&path);
    let names = wb.sheet_names();
    let pages: Vec<&String> = names.iter().filter(|n| n.starts_with(LIST_SHEET)).collect();
    // 8 findings a page (header and note rows besides).
    assert_eq!(pages.len() as u64, expected.div_ceil(8));
    assert_eq!(pages[1], &format!("{LIST_SHEET} (2)"));
    let mut listed = 0;
    for (i, name) in pages.iter().enumerate() {
        let r = rows(&mut wb, name);
        assert!(r.len() <= 10);
        assert_eq!(text(&r[0][0]), HEADERS[0]);
        let last = text(&r[r.len() - 1][0]);
        if i + 1 < pages.len() {
            assert_eq!(r.len(), 10);
            assert!(last.contains(&format!("续见工作表「{LIST_SHEET} ({})」", i + 2)));
            listed += r.len() - 2;
        } else {
            listed += r.len() - 1;
        }
    }
    assert_eq!(listed as u64, expected);
    // The directive sheets continue too, named after their first page.
    assert!(names.iter().any(|n| n == "党员每年在社区服务 20 小时 (2)"));
    let about: Vec<String> = rows(&mut wb, "说明").iter().flatten().map(text).collect();
    assert!(about.iter().any(|c| c.contains("整改清单 (2)")));
}
