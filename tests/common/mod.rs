//! Shared helpers for the integration tests: run the built `rulebook` binary, build small
//! datasets in temporary folders, copy the shipped policy set.

#![allow(dead_code)]

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped policy folder.
pub fn policies() -> PathBuf {
    root().join("policies")
}

/// A command running the built binary.
pub fn rulebook() -> Command {
    let mut c = Command::cargo_bin("rulebook").expect("binary built");
    c.current_dir(root());
    c
}

/// Copy a folder recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A copy of the shipped policies in a temporary folder.
pub fn policies_copy(tmp: &Path) -> PathBuf {
    let p = tmp.join("policies");
    copy_dir(&policies(), &p);
    p
}

/// Headers of the contract's tables, in contract order.
pub const HEADERS: [(&str, &str); 10] = [
    ("communities", "community_id,name,district"),
    ("organizations", "org_id,name,kind,community_id"),
    (
        "members",
        "member_id,name,branch_id,residence_community_id,employment",
    ),
    ("reports", "member_id,community_id,reported_on,campaign"),
    ("filings", "member_id,branch_id,filed_on"),
    (
        "assignments",
        "member_id,community_id,grid_id,team,assigned_on",
    ),
    (
        "services",
        "service_id,member_id,community_id,start,end,category,tasked_by,verified",
    ),
    ("checkins", "member_id,community_id,at"),
    ("unit_attendance", "member_id,date"),
    ("org_registrations", "org_id,community_id,registered_on"),
];

/// A small dataset: two communities, one unit branch (contact C1), the community
/// organizations, and members M1 (lives in C1) and M2 (lives in C2), both in service.
/// `rows` adds data rows (without header) per table; other tables get only a header.
pub fn dataset(dir: &Path, rows: &[(&str, &str)]) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (table, header) in HEADERS {
        let mut text = format!("{header}\n");
        let defaults = match table {
            "communities" => "C1,水果湖社区,武昌区\nC2,东亭社区,武昌区\n",
            "organizations" => {
                "B1,省直某厅第一党支部,unit_branch,C1\nCO1,水果湖社区党委,community,C1\nCO2,东亭社区党委,community,C2\n"
            }
            "members" => "M1,张三,B1,C1,in_service\nM2,李四,B1,C2,in_service\n",
            _ => "",
        };
        let extra: String = rows
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, r)| format!("{}\n", r.trim()))
            .collect();
        if table == "members" && rows.iter().any(|(t, _)| *t == "members!") {
            // replace default members
            let own: String = rows
                .iter()
                .filter(|(t, _)| *t == "members!")
                .map(|(_, r)| format!("{}\n", r.trim()))
                .collect();
            text.push_str(&own);
        } else {
            text.push_str(defaults);
        }
        text.push_str(&extra);
        std::fs::write(data.join(format!("{table}.csv")), text).unwrap();
    }
    data
}

/// Run `eval --format json` and parse the findings; panics with stderr on failure.
pub fn eval_json(policies: &Path, data: &Path, as_of: Option<&str>) -> Vec<Value> {
    let mut cmd = rulebook();
    cmd.args(["eval", "--format", "json", "--quiet"])
        .arg("--policies")
        .arg(policies)
        .arg("--data")
        .arg(data);
    if let Some(d) = as_of {
        cmd.args(["--as-of", d]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The finding of `rule` for `subject`.
pub fn finding<'a>(findings: &'a [Value], rule: &str, subject: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["rule"] == rule && f["subject_id"] == subject)
        .unwrap_or_else(|| panic!("no finding for {rule} / {subject}"))
}

/// The status of `rule` for `subject`.
pub fn status(findings: &[Value], rule: &str, subject: &str) -> String {
    finding(findings, rule, subject)["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Text of stdout and stderr of a finished command.
pub fn texts(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `A1`-style reference of a 0-based row and column (columns up to Z).
pub fn cell_ref(row: usize, col: usize) -> String {
    format!("{}{}", (b'A' + col as u8) as char, row + 1)
}

/// A minimal .xlsx with one sheet of inline-string cells.
pub fn workbook(sheet: &str, rows: &[Vec<&str>]) -> Vec<u8> {
    workbook_with(sheet, rows, &cell_ref)
}

/// A minimal .xlsx with one sheet of inline-string cells, at the references `at` gives.
pub fn workbook_with(
    sheet: &str,
    rows: &[Vec<&str>],
    at: &dyn Fn(usize, usize) -> String,
) -> Vec<u8> {
    fn xml_escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
    let head = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#;
    let main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    let rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let pkg = "http://schemas.openxmlformats.org/package/2006/relationships";
    let mut cells = String::new();
    for (i, row) in rows.iter().enumerate() {
        cells.push_str(&format!(r#"<row r="{}">"#, i + 1));
        for (j, v) in row.iter().enumerate() {
            cells.push_str(&format!(
                r#"<c r="{}" t="inlineStr"><is><t>{}</t></is></c>"#,
                at(i, j),
                xml_escape(v)
            ));
        }
        cells.push_str("</row>");
    }
    let files = [
        (
            "[Content_Types].xml",
            format!(
                r#"{head}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#
            ),
        ),
        (
            "_rels/.rels",
            format!(
                r#"{head}<Relationships xmlns="{pkg}"><Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
            ),
        ),
        (
            "xl/workbook.xml",
            format!(
                r#"{head}<workbook xmlns="{main}" xmlns:r="{rel}"><sheets><sheet name="{}" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
                xml_escape(sheet)
            ),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            format!(
                r#"{head}<Relationships xmlns="{pkg}"><Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#
            ),
        ),
        (
            "xl/worksheets/sheet1.xml",
            format!(
                r#"{head}<worksheet xmlns="{main}"><sheetData>{cells}</sheetData></worksheet>"#
            ),
        ),
    ];
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, body) in files {
        z.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut z, body.as_bytes()).unwrap();
    }
    z.finish().unwrap().into_inner()
}
