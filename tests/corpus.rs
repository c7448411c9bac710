//! The bad-input corpus (`tests/corpus/`): each case's files are laid over a copy of the
//! sample dataset and the real CLI evaluates it; `tests/corpus/cases.toml` says what must
//! happen (exit code, messages naming file, line and column, rejected rows, counts). Every
//! case also checks that nothing panics and that every row is accounted for.

mod common;

use common::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    generate: Option<String>,
    #[serde(default)]
    remove: Vec<String>,
    exit: i32,
    #[serde(default)]
    stderr: Vec<String>,
    #[serde(default)]
    rejects: Vec<ExpectedReject>,
    #[serde(default)]
    counts: BTreeMap<String, [u64; 3]>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedReject {
    file: String,
    line: u32,
    column: String,
    says: String,
}

fn corpus() -> PathBuf {
    root().join("tests/corpus")
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(corpus().join("cases.toml")).unwrap();
    toml::from_str::<Cases>(&text).unwrap().case
}

/// Files too big to commit, or zips: built here, named by a case's `generate`.
fn generate(what: &str, data: &Path) {
    match what {
        // A 3 MiB field (the reader's limit is 1 MiB) in the second line.
        "huge-field" => {
            let huge = "x".repeat(3 << 20);
            std::fs::write(
                data.join("checkins.csv"),
                format!(
                    "member_id,community_id,at\nM005,{huge},2020-02-10 13:46:00\nM005,C03,2020-02-12 08:00\n"
                ),
            )
            .unwrap();
        }
        // A well-formed zip that holds a text file, not a workbook.
        "zip-of-text" => {
            let f = std::fs::File::create(data.join("服务记录.xlsx")).unwrap();
            let mut z = zip::ZipWriter::new(f);
            z.start_file("notes.txt", zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all("这不是一个 Excel 工作簿 / not a workbook\n".as_bytes())
                .unwrap();
            z.finish().unwrap();
        }
        // A real workbook whose sheet `服务记录` has one good row and two bad ones.
        "xlsx-bad-rows" => {
            let rows = [
                "service_id,member_id,community_id,start,end,category,tasked_by,verified",
                "S9001,M001,C01,2020-08-01 08:00,2020-08-01 10:00,patrol,community,true",
                "S9002,M001,C01,2020-08-01 10:00,2020-08-01 09:00,patrol,community,true",
                "S9003,M999,C01,2020-08-01 08:00,2020-08-01 10:00,patrol,community,true",
            ];
            let rows: Vec<Vec<&str>> = rows.iter().map(|r| r.split(',').collect()).collect();
            std::fs::write(data.join("services.xlsx"), workbook("服务记录", &rows)).unwrap();
        }
        // Workbooks whose second row's first cell has a reference no spreadsheet can have:
        // past u32 (8 letters), far past Excel's 16,384 columns (6 letters), or past its
        // 1,048,576 rows.
        "xlsx-cell-column-overflow" => bad_reference(data, "AAAAAAAA2"),
        "xlsx-cell-far-column" => bad_reference(data, "ZZZZZZ2"),
        "xlsx-cell-far-row" => bad_reference(data, "A4000000000"),
        other => panic!("cases.toml: unknown generator `{other}`"),
    }
}

/// `services.xlsx` with one good row whose first cell claims to be at `reference`.
fn bad_reference(data: &Path, reference: &str) {
    let header = "service_id,member_id,community_id,start,end,category,tasked_by,verified";
    let row = "S9001,M001,C01,2020-08-01 08:00,2020-08-01 10:00,patrol,community,true";
    let rows = vec![header.split(',').collect(), row.split(',').collect()];
    std::fs::write(
        data.join("services.xlsx"),
        workbook_with("services", &rows, &|r, c| {
            if (r, c) == (1, 0) {
                reference.to_string()
            } else {
                cell_ref(r, c)
            }
        }),
    )
    .unwrap();
}

/// The per-table lines of eval's summary: table → [read, loaded, rejected].
fn summary_counts(stdout: &str) -> BTreeMap<String, [u64; 3]> {
    let mut out = BTreeMap::new();
    let mut in_tables = false;
    for line in stdout.lines() {
        if line.starts_with("table ") {
            in_tables = true;
            continue;
        }
        if !in_tables {
            continue;
        }
        if line.trim().is_empty() || line.starts_with("total ") {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let n: Vec<u64> = words[words.len() - 3..]
            .iter()
            .map(|w| {
                w.parse()
                    .unwrap_or_else(|_| panic!("summary line `{line}`"))
            })
            .collect();
        out.insert(words[0].to_string(), [n[0], n[1], n[2]]);
    }
    out
}

/// Run one case; the problems found, if any.
fn run(case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir(root().join("samples/hubei-2020")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "csv") {
            std::fs::copy(&p, data.join(p.file_name().unwrap())).unwrap();
        }
    }
    for f in &case.remove {
        std::fs::remove_file(data.join(f))
            .unwrap_or_else(|e| panic!("{}: remove {f}: {e}", case.name));
    }
    let own = corpus().join(&case.name);
    if own.is_dir() {
        for e in std::fs::read_dir(&own).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, data.join(p.file_name().unwrap())).unwrap();
        }
    } else if case.generate.is_none() {
        problems.push(format!("no folder tests/corpus/{}", case.name));
    }
    if let Some(g) = &case.generate {
        generate(g, &data);
    }

    let rejects_file = tmp.path().join("rejects.csv");
    // Under a 4 GiB address-space limit, so that input which makes the loader allocate
    // without bound fails fast instead of taking the machine's memory.
    let bin = assert_cmd::cargo::cargo_bin("rulebook");
    let out = std::process::Command::new("sh")
        .current_dir(root())
        .arg("-c")
        .arg("ulimit -v 4194304 && exec \"$0\" \"$@\"")
        .arg(&bin)
        .args(["eval", "--as-of", "2020-12-31", "--data"])
        .arg(&data)
        .arg("--rejects")
        .arg(&rejects_file)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    let code = out.status.code().unwrap_or(-1);
    let mut fail = |m: String| problems.push(m);

    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        if stderr.contains(bad) || stdout.contains(bad) {
            fail(format!("`{bad}` in the output:\n{stderr}"));
        }
    }
    if code != case.exit {
        fail(format!("exit {code}, want {}:\n{stderr}", case.exit));
    }
    for s in &case.stderr {
        if !stderr.contains(s.as_str()) {
            fail(format!("stderr lacks `{s}`:\n{stderr}"));
        }
    }
    if code != 0 {
        if !case.rejects.is_empty() || !case.counts.is_empty() {
            fail("cases.toml: a failed run has no rejects or counts to check".into());
        }
        return problems;
    }

    // The run went on: the accounting holds.
    let counts = summary_counts(&stdout);
    if counts.is_empty() {
        fail(format!("no table summary in stdout:\n{stdout}"));
    }
    let rows: Vec<csv::StringRecord> = match csv::Reader::from_path(&rejects_file) {
        Ok(mut r) => r.records().map(|r| r.unwrap()).collect(),
        Err(e) => {
            fail(format!("no rejects file: {e}"));
            Vec::new()
        }
    };
    for (table, [read, loaded, rejected]) in &counts {
        if read != &(loaded + rejected) {
            fail(format!(
                "{table}: read {read} != loaded {loaded} + rejected {rejected}"
            ));
        }
        let listed = rows.iter().filter(|r| &r[0] == table).count() as u64;
        if listed != *rejected {
            fail(format!(
                "{table}: {rejected} rejected in the summary, {listed} in the rejects file"
            ));
        }
    }
    let total: u64 = counts.values().map(|c| c[2]).sum();
    if total != rows.len() as u64 {
        fail(format!(
            "{total} rejected in the summary, {} rows in the rejects file",
            rows.len()
        ));
    }
    for (table, want) in &case.counts {
        match counts.get(table) {
            Some(got) if got == want => {}
            got => fail(format!("{table}: counts {got:?}, want {want:?}")),
        }
    }

    // Exactly the expected rejects, each with file, line, column and reason.
    if rows.len() != case.rejects.len() {
        fail(format!(
            "{} rows rejected, want {}: {rows:?}",
            rows.len(),
            case.rejects.len()
        ));
    }
    for want in &case.rejects {
        let line = want.line.to_string();
        let Some(r) = rows.iter().find(|r| r[1] == want.file && r[2] == line) else {
            fail(format!(
                "{}:{} not rejected: {rows:?}",
                want.file, want.line
            ));
            continue;
        };
        let column_ok = if want.column.is_empty() {
            r[3].is_empty()
        } else {
            r[3].starts_with(want.column.as_str())
        };
        if !column_ok {
            fail(format!(
                "{}:{}: column `{}`, want `{}`",
                want.file, want.line, &r[3], want.column
            ));
        }
        if !r[5].contains(want.says.as_str()) {
            fail(format!(
                "{}:{}: reason `{}` lacks `{}`",
                want.file, want.line, &r[5], want.says
            ));
        }
        let mut shown = format!("rejected: {}:{}:", want.file, want.line);
        if !want.column.is_empty() {
            shown.push_str(&format!(" column {}", want.column));
        }
        if !stderr.contains(&shown) {
            fail(format!("stderr lacks `{shown}`:\n{stderr}"));
        }
    }
    problems
}

#[test]
fn every_corpus_case_behaves_as_cases_toml_says() {
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        for p in run(case) {
            failures.push(format!("[{}] {p}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_corpus_folder_is_a_case_and_the_readme_lists_every_case() {
    let cases = cases();
    let readme = std::fs::read_to_string(corpus().join("README.md")).unwrap();
    for e in std::fs::read_dir(corpus()).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                cases.iter().any(|c| c.name == name),
                "tests/corpus/{name} has no [[case]] in cases.toml"
            );
        }
    }
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(names.insert(&c.name), "case `{}` twice", c.name);
        assert!(
            readme.contains(&format!("`{}`", c.name)),
            "tests/corpus/README.md does not list `{}`",
            c.name
        );
    }
}
