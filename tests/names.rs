//! Every lawful name prints (issue 16): names with CJK Extension A and B ideographs and an
//! ideographic variation selector survive GB18030 CSV (four-byte sequences), UTF-8 CSV and
//! XLSX loading, the findings (JSON, CSV) and the PDFs, and the shipped fonts print them with
//! no missing-glyph warning.

mod common;

use common::*;
use std::path::Path;

/// Names from four-byte GB18030 sequences and beyond the BMP: 䶮 (Ext A, a GB18030 two-byte
/// code), 㑊 (Ext A, four bytes, not in the GBK font), 𠮷 and 𪚥 (Ext B, four bytes), and 葛
/// with the variation selector U+E0100 (four bytes too).
const NAMES: [(&str, &str); 4] = [
    ("M3", "刘䶮"),
    ("M4", "陈㑊"),
    ("M5", "张𠮷"),
    ("M6", "葛\u{E0100}𪚥"),
];

/// The test dataset with the rare-named members in branch B1, living in and serving C1.
fn rare_dataset(dir: &Path) -> std::path::PathBuf {
    let members: Vec<String> = NAMES
        .iter()
        .map(|(id, name)| format!("{id},{name},B1,C1,in_service"))
        .collect();
    let services: Vec<String> = NAMES
        .iter()
        .enumerate()
        .map(|(i, (id, _))| {
            format!(
                "S{i},{id},C1,2020-08-0{} 08:00,2020-08-0{} 12:00,patrol,community,true",
                i + 1,
                i + 1
            )
        })
        .collect();
    let mut rows: Vec<(&str, &str)> = members.iter().map(|m| ("members", m.as_str())).collect();
    rows.extend(services.iter().map(|s| ("services", s.as_str())));
    dataset(dir, &rows)
}

/// Every CSV of `data` written again in GB18030.
fn to_gb18030(data: &Path) {
    for e in std::fs::read_dir(data).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "csv") {
            let text = std::fs::read_to_string(&p).unwrap();
            let (bytes, _, unmappable) = encoding_rs::GB18030.encode(&text);
            assert!(!unmappable);
            std::fs::write(&p, bytes).unwrap();
        }
    }
}

/// The text of a PDF as `pdf_extract` gives it, without whitespace.
fn text_of(pdf: &Path) -> String {
    let bytes = std::fs::read(pdf).unwrap();
    let text = pdf_extract::extract_text_from_mem(&bytes).unwrap();
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The text of a PDF as poppler's `pdftotext` gives it, without whitespace; `None` where
/// pdftotext is not installed (CI checks with `pdf_extract` only).
fn pdftotext(pdf: &Path) -> Option<String> {
    let out = std::process::Command::new("pdftotext")
        .arg(pdf)
        .arg("-")
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "pdftotext failed on {}",
        pdf.display()
    );
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    )
}

/// The one PDF in `dir` whose file name starts with `prefix`.
fn pdf_starting(dir: &Path, prefix: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no report {prefix}* in {}", dir.display()))
}

/// Each PDF gives back `names` exactly (with pdf_extract, and with pdftotext where installed).
fn assert_pdf_names(pdf: &Path, names: &[&str]) {
    let extracted = text_of(pdf);
    let poppler = pdftotext(pdf);
    for name in names {
        assert!(
            extracted.contains(name),
            "pdf_extract: {name:?} not in {}: {extracted}",
            pdf.display()
        );
        if let Some(text) = &poppler {
            assert!(
                text.contains(name),
                "pdftotext: {name:?} not in {}: {text}",
                pdf.display()
            );
        }
    }
}

/// `rulebook report` at `level`; panics with stderr on failure.
fn report(data: &Path, out: &Path, level: &str, extra: &[&str]) -> (String, String) {
    let run = rulebook()
        .args([
            "report",
            "--level",
            level,
            "--as-of",
            "2020-12-31",
            "--quiet",
        ])
        .args(extra)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&run);
    assert!(run.status.success(), "{stderr}");
    (stdout, stderr)
}

/// The names as the findings files hold them: the member findings' `subject_name`s.
fn assert_findings_names(out: &Path) {
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("findings.json")).unwrap()).unwrap();
    let csv = std::fs::read_to_string(out.join("findings.csv")).unwrap();
    for (id, name) in NAMES {
        let f = json
            .iter()
            .find(|f| f["subject_id"] == id)
            .unwrap_or_else(|| panic!("no finding for {id}"));
        assert_eq!(f["subject_name"], name, "findings.json");
        assert!(
            csv.contains(&format!(",{name},")),
            "findings.csv lacks {name:?}"
        );
    }
}

/// Issue 16's "done": a GB18030 export whose members are named with Extension A and B
/// characters renders member, branch and community reports with no missing-glyph warning,
/// and the PDFs give the names back exactly.
#[test]
fn a_gb18030_export_with_rare_names_prints_every_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = rare_dataset(dir.path());
    to_gb18030(&data);
    let members = std::fs::read(data.join("members.csv")).unwrap();
    assert!(std::str::from_utf8(&members).is_err(), "GB18030, not UTF-8");
    // 𠮷 U+20BB7 and the selector U+E0100 are GB18030 four-byte sequences; 䶮 is two bytes.
    for (bytes, what) in [
        (&[0x95, 0x34, 0xB2, 0x35][..], "𠮷"),
        (&[0xD3, 0x36, 0xAF, 0x34][..], "U+E0100"),
        (&[0x81, 0x39, 0xF6, 0x32][..], "㑊"),
        (&[0xFE, 0x9F][..], "䶮"),
    ] {
        assert!(
            members.windows(bytes.len()).any(|w| w == bytes),
            "{what} is not encoded as {bytes:02X?}"
        );
    }
    let out = dir.path().join("out");
    let (_, stderr) = report(&data, &out, "all", &["--strict"]);
    assert!(!stderr.contains("no font can print"), "{stderr}");
    let names: Vec<&str> = NAMES.iter().map(|(_, n)| *n).collect();
    for (id, name) in NAMES {
        assert_pdf_names(
            &pdf_starting(&out.join("members"), &format!("{id}-")),
            &[name],
        );
    }
    assert_pdf_names(&pdf_starting(&out.join("branches"), "B1-"), &names);
    assert_pdf_names(&pdf_starting(&out.join("communities"), "C1-"), &names);
    assert_findings_names(&out);
    // Told the encoding, the loader reads the same.
    let out2 = dir.path().join("out2");
    report(&data, &out2, "member", &["--encoding", "gb18030"]);
    assert_eq!(
        std::fs::read(out.join("findings.json")).unwrap(),
        std::fs::read(out2.join("findings.json")).unwrap()
    );
}

/// UTF-8 CSV: supplementary-plane characters and the selector reach `eval`'s JSON and CSV
/// findings unchanged.
#[test]
fn utf8_names_survive_the_findings() {
    let dir = tempfile::tempdir().unwrap();
    let data = rare_dataset(dir.path());
    let json = eval_json(&policies(), &data, Some("2020-12-31"));
    let csv = rulebook()
        .args([
            "eval",
            "--format",
            "csv",
            "--quiet",
            "--as-of",
            "2020-12-31",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let csv = String::from_utf8(csv.stdout).unwrap();
    for (id, name) in NAMES {
        let f = json.iter().find(|f| f["subject_id"] == id).unwrap();
        assert_eq!(f["subject_name"], name);
        assert!(csv.contains(&format!(",{name},")), "CSV lacks {name:?}");
    }
}

/// XLSX: names read from a workbook's cells print in the PDFs and reach the findings.
#[test]
fn xlsx_names_survive_loading_findings_and_pdfs() {
    let dir = tempfile::tempdir().unwrap();
    let data = rare_dataset(dir.path());
    let csv = std::fs::read_to_string(data.join("members.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    std::fs::remove_file(data.join("members.csv")).unwrap();
    std::fs::write(data.join("members.xlsx"), workbook("members", &rows)).unwrap();
    let out = dir.path().join("out");
    let (_, stderr) = report(&data, &out, "all", &["--strict"]);
    assert!(!stderr.contains("no font can print"), "{stderr}");
    for (id, name) in NAMES {
        assert_pdf_names(
            &pdf_starting(&out.join("members"), &format!("{id}-")),
            &[name],
        );
    }
    assert_findings_names(&out);
}

/// A character no shipped font has (CJK Extension H) is named with its code point, and the
/// rest of the name prints.
#[test]
fn a_character_no_font_has_is_named_with_its_code_point() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(
        dir.path(),
        &[("members", "M3,张\u{31350}𠮷,B1,C1,in_service")],
    );
    let out = dir.path().join("out");
    let run = rulebook()
        .args([
            "report",
            "--level",
            "member",
            "--as-of",
            "2020-12-31",
            "--quiet",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let (_, stderr) = texts(&run);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: member M3: field member.name \"张\u{31350}𠮷\" has 1 character no font can print: \u{31350} (U+31350)"
        ),
        "{stderr}"
    );
}
