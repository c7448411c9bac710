//! Reports for a part of the data and bundled for printing: `--scope` (branch, community,
//! district, member; unknown ids with close matches), `--bundle branch|community` (one PDF
//! per branch or community with its report, every member form, a table of contents,
//! bookmarks and page numbers per report), batches, and `--resume`.

mod common;

use common::*;
use std::path::Path;

fn text_of(pdf: &Path) -> String {
    let bytes = std::fs::read(pdf).unwrap();
    let text = pdf_extract::extract_text_from_mem(&bytes).unwrap();
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Run `rulebook report` on the 2020 sample into `out` with `args`; (status ok, stdout,
/// stderr).
fn report(out: &Path, args: &[&str]) -> (bool, String, String) {
    let o = rulebook()
        .args([
            "report",
            "--data",
            "samples/hubei-2020",
            "--findings",
            "none",
        ])
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&o);
    (o.status.success(), stdout, stderr)
}

/// Every file under `dir` (relative paths, sorted), without the resume journal.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap();
            rel.to_string_lossy().replace('\\', "/")
        })
        .filter(|p| p != rulebook::report::JOURNAL)
        .collect();
    v.sort();
    v
}

/// The members of branch B01 in the 2020 sample, by id.
const B01: [(&str, &str); 12] = [
    ("M001", "张喆"),
    ("M002", "李静"),
    ("M003", "王建国"),
    ("M004", "刘玥"),
    ("M005", "陈志强"),
    ("M006", "杨帆"),
    ("M007", "赵敏"),
    ("M008", "黄堃"),
    ("M009", "周文斌"),
    ("M010", "吴晓燕"),
    ("M011", "徐德明"),
    ("M012", "孙昇"),
];

#[test]
fn a_branch_bundle_holds_its_report_and_every_member_form() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = report(
        dir.path(),
        &["--scope", "branch:B01", "--bundle", "branch", "--quiet"],
    );
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        files(dir.path()),
        ["bundles/B01-省直机关某厅第一党支部.pdf", "summary.pdf"]
    );
    let pdf = dir.path().join("bundles/B01-省直机关某厅第一党支部.pdf");
    let text = text_of(&pdf);
    assert!(text.contains("党支部考核材料汇编"));
    assert!(text.contains("党支部下沉社区工作考核报告"));
    assert_eq!(text.matches("下沉党员社区服务个人考核表").count(), 12);
    for (id, name) in B01 {
        assert!(text.contains(&format!("党员编号{id}")), "{id}");
        assert!(text.contains(name), "{name}");
    }
    // The appendix once, at the end.
    assert_eq!(text.matches("附录：评价依据与数据说明").count(), 1);
    // Page numbers count within each report: cover, branch report, 12 forms, appendix.
    assert!(text.matches("第1页，共").count() >= 15);

    // Bookmarks: the cover's contents, the branch report, each member form, the appendix.
    let doc = lopdf::Document::load(&pdf).unwrap();
    let toc = doc.get_toc().unwrap();
    let titles: Vec<&str> = toc.toc.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles.len(), 14, "{titles:?}");
    assert!(titles[0].contains("党支部下沉工作考核报告"), "{titles:?}");
    for (i, (id, name)) in B01.iter().enumerate() {
        let t = titles[i + 1];
        assert!(t.contains(id) && t.contains(name), "{t}");
    }
    assert!(titles[13].contains("附录"));
    // Each bookmark points at a later page than the one before.
    let pages: Vec<usize> = toc.toc.iter().map(|t| t.page).collect();
    assert!(pages.windows(2).all(|w| w[0] < w[1]), "{pages:?}");

    // The summary covers the branch only, and says so.
    let summary = text_of(&dir.path().join("summary.pdf"));
    assert!(
        summary.contains("范围：党支部省直机关某厅第一党支部（B01）"),
        "{summary}"
    );
    assert!(summary.contains("党员人数12"), "{summary}");
}

#[test]
fn scopes_limit_the_reports_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    // C05 (万松园社区): its residents, the branch paired with it (B04) and B04's members.
    let (ok, stdout, stderr) = report(dir.path(), &["--scope", "community:C05", "--quiet"]);
    assert!(ok, "{stdout}{stderr}");
    let all = files(dir.path());
    assert!(
        all.contains(&"communities/C05-万松园社区.pdf".to_string()),
        "{all:?}"
    );
    assert!(all.contains(&"branches/B04-省直机关某委机关第一党支部.pdf".to_string()));
    assert!(
        all.contains(&"members/M009-周文斌.pdf".to_string()),
        "a resident of C05"
    );
    assert_eq!(
        all.iter().filter(|f| f.starts_with("communities/")).count(),
        1
    );
    assert_eq!(all.iter().filter(|f| f.starts_with("branches/")).count(), 1);

    // A district is its communities; scopes add up.
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = report(
        dir.path(),
        &[
            "--scope",
            "district:洪山区",
            "--scope",
            "member:M001",
            "--level",
            "community",
            "--quiet",
        ],
    );
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        files(dir.path()),
        [
            "communities/C03-卓刀泉社区.pdf",
            "communities/C04-关山社区.pdf"
        ]
    );

    // One member: one form and a summary of one member.
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = report(dir.path(), &["--scope", "member:M017", "--quiet"]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        files(dir.path()),
        ["members/M017-何雪梅.pdf", "summary.pdf"]
    );
    let summary = text_of(&dir.path().join("summary.pdf"));
    assert!(summary.contains("党员人数1"), "{summary}");
    assert!(summary.contains("单位党支部0"), "{summary}");
}

#[test]
fn unknown_scopes_say_what_is_close() {
    let dir = tempfile::tempdir().unwrap();
    for (scope, expect) in [
        (
            "branch:B1",
            "no unit branch `B1` in the data; did you mean B01",
        ),
        ("branch:CO01", "no unit branch `CO01`"),
        ("member:M0177", "did you mean M017"),
        ("community:C7", "no community `C7`"),
        ("district:洪山", "did you mean 洪山区"),
    ] {
        let (ok, _, stderr) = report(dir.path(), &["--scope", scope, "--quiet"]);
        assert!(!ok, "{scope}");
        assert!(stderr.contains(expect), "{scope}: {stderr}");
    }
    let (ok, _, stderr) = report(dir.path(), &["--scope", "B01"]);
    assert!(!ok && stderr.contains("KIND:ID"), "{stderr}");
    assert_eq!(files(dir.path()), Vec::<String>::new(), "nothing written");
}

#[test]
fn community_bundles_hold_their_residents() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = report(
        dir.path(),
        &[
            "--bundle",
            "community",
            "--level",
            "member",
            "--batch",
            "1",
            "--quiet",
        ],
    );
    assert!(ok, "{stdout}{stderr}");
    let all = files(dir.path());
    assert_eq!(all.len(), 6, "{all:?}");
    assert!(all.iter().all(|f| f.starts_with("bundles/C0")), "{all:?}");
    // Every member's form is in exactly one bundle.
    let text: String = all.iter().map(|f| text_of(&dir.path().join(f))).collect();
    assert_eq!(text.matches("下沉党员社区服务个人考核表").count(), 60);
    assert_eq!(text.matches("社区下沉党员服务情况报告").count(), 6);
}

#[test]
fn bundles_need_member_forms() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = report(dir.path(), &["--bundle", "branch", "--level", "summary"]);
    assert!(!ok);
    assert!(stderr.contains("--level all or --level member"), "{stderr}");
}

#[test]
fn resume_keeps_finished_reports_and_redoes_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--scope", "branch:B02", "--level", "member"];
    let (ok, stdout, stderr) = report(dir.path(), &args);
    assert!(ok, "{stdout}{stderr}");
    let all = files(dir.path());
    assert!(all.len() > 3);
    let form = dir.path().join(&all[0]);
    let before = std::fs::metadata(&form).unwrap().modified().unwrap();
    // A report that was never finished (deleted) and one damaged (cut short).
    std::fs::remove_file(dir.path().join(&all[1])).unwrap();
    let whole = std::fs::read(dir.path().join(&all[2])).unwrap();
    std::fs::write(dir.path().join(&all[2]), &whole[..whole.len() / 2]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));

    let resumed = [&args[..], &["--resume"]].concat();
    let (ok, stdout, stderr) = report(dir.path(), &resumed);
    assert!(ok, "{stdout}{stderr}");
    let n = all.len() - 2;
    assert!(
        stdout.contains(&format!("{n} PDFs ({n} reports) already finished")),
        "{stdout}"
    );
    assert_eq!(files(dir.path()), all);
    assert_eq!(
        std::fs::metadata(&form).unwrap().modified().unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(dir.path().join(&all[2])).unwrap(),
        whole,
        "redone whole"
    );

    // Another evaluation date: nothing is current.
    let other = [&resumed[..], &["--as-of", "2020-12-30"]].concat();
    let (ok, stdout, stderr) = report(dir.path(), &other);
    assert!(ok, "{stdout}{stderr}");
    assert!(!stdout.contains("already finished"), "{stdout}");
}

#[test]
fn batches_do_not_change_the_pdfs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let args = ["--scope", "branch:B03", "--bundle", "branch", "--quiet"];
    let (ok, _, stderr) = report(a.path(), &[&args[..], &["--batch", "1"]].concat());
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = report(b.path(), &[&args[..], &["--batch", "1000"]].concat());
    assert!(ok, "{stderr}");
    let names = files(a.path());
    assert_eq!(names, files(b.path()));
    for f in names {
        assert_eq!(
            std::fs::read(a.path().join(&f)).unwrap(),
            std::fs::read(b.path().join(&f)).unwrap(),
            "{f}"
        );
    }
}
