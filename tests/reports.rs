//! PDF reports: snapshots of the rendered Typst source, the Chinese text extracted from the
//! PDFs, hostile names printed literally, byte-identical output, the glyph check, and clear
//! errors from broken templates.

mod common;

use common::*;
use rulebook::report::{self, Level};
use std::path::Path;

fn text_of(pdf: &Path) -> String {
    let bytes = std::fs::read(pdf).unwrap();
    let text = pdf_extract::extract_text_from_mem(&bytes).unwrap();
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn jobs_for(data: &Path) -> (Vec<report::Job>, tera::Tera) {
    let set = rulebook::policy::load(&policies()).unwrap();
    let ds = rulebook::data::load(data, &set.schema, &Default::default()).unwrap();
    let run = rulebook::eval::prepare(&set, &ds, None).unwrap();
    let outcomes = run.outcomes().unwrap();
    let model = report::Model::new(&run, &outcomes);
    let mut jobs = model.jobs(Level::All);
    // The hash changes with every policy edit; keep snapshots about the content.
    for j in jobs.iter_mut() {
        j.context["policy"]["hash"] = "HASH".into();
        j.context["policy"]["short_hash"] = "HASH".into();
    }
    (
        jobs,
        report::templates(&root().join("report-templates")).unwrap(),
    )
}

#[test]
fn typst_source_snapshots() {
    let (jobs, tera) = jobs_for(&root().join("samples/hubei-2020"));
    for (kind, id, name) in [
        ("member", "M017", "member_M017"),
        ("branch", "B02", "branch_B02"),
        ("community", "C02", "community_C02"),
        ("summary", "summary", "summary"),
    ] {
        let job = jobs.iter().find(|j| j.kind == kind && j.id == id).unwrap();
        let src = report::render_typst(&tera, job).unwrap();
        insta::assert_snapshot!(name, src);
    }
}

#[test]
fn pdfs_contain_the_chinese_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = rulebook()
        .args(["report", "--data", "samples/hubei-2020", "--quiet", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    for sub in ["members", "branches", "communities"] {
        assert!(
            dir.path().join(sub).read_dir().unwrap().count() > 0,
            "{sub}"
        );
    }
    assert_eq!(dir.path().join("members").read_dir().unwrap().count(), 60);
    assert_eq!(dir.path().join("branches").read_dir().unwrap().count(), 5);
    assert_eq!(
        dir.path().join("communities").read_dir().unwrap().count(),
        6
    );
    assert!(
        dir.path().join("findings.json").is_file() && dir.path().join("findings.csv").is_file()
    );

    let member = text_of(&dir.path().join("members/M017-何雪梅.pdf"));
    for s in [
        "下沉党员社区服务个人考核表",
        "何雪梅",
        "基本合格",
        "党员每年在社区服务20小时",
        "还需6.5小时",
        "以每年为一周期",
        "附录",
    ] {
        assert!(member.contains(s), "member PDF lacks {s}");
    }
    let rare = text_of(&dir.path().join("members/M001-张喆.pdf"));
    assert!(rare.contains("张喆"), "rare given-name characters print");
    let branch = text_of(&dir.path().join("branches/B02-省直机关某厅第二党支部.pdf"));
    for s in ["党支部下沉社区工作考核报告", "何雪梅", "达标率", "合格"] {
        assert!(branch.contains(s), "branch PDF lacks {s}");
    }
    let community = text_of(&dir.path().join("communities/C02-东亭社区.pdf"));
    for s in ["社区下沉党员服务情况报告", "东亭社区", "服务类别"] {
        assert!(community.contains(s), "community PDF lacks {s}");
    }
    let summary = text_of(&dir.path().join("summary.pdf"));
    for s in [
        "下沉党员社区服务考核汇总报告",
        "各项要求达标情况",
        "单位党支部排名",
        "鄂直工发〔2020〕1号",
        "参数与假设",
    ] {
        assert!(summary.contains(s), "summary PDF lacks {s}");
    }
}

/// A second year: the summary says which period and directives the grades cover and lists
/// the epidemic notices as not in force; a member's form shows the hours the grade used.
#[test]
fn a_second_year_report_says_what_it_grades_and_what_ended() {
    let dir = tempfile::tempdir().unwrap();
    let out = rulebook()
        .args([
            "report",
            "--data",
            "samples/hubei-2021",
            "--quiet",
            "--findings",
            "none",
            "--level",
            "summary",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    let summary = text_of(&dir.path().join("summary.pdf"));
    for s in [
        "考核周期2021-01-01至2021-12-31",
        "计入等次的文件：机关企事业单位党组织和党员干部“双报到”制度、党员每年在社区服务20小时",
        "不在本次考核年度施行期内的文件（无评价结果）",
        "（2020-02-07至2020-05-01）",
        "工作日历",
    ] {
        assert!(summary.contains(s), "summary PDF lacks {s}: {summary}");
    }
}

#[test]
fn pdfs_are_byte_identical_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for i in 0..2 {
        let out_dir = dir.path().join(format!("r{i}"));
        let out = rulebook()
            .args([
                "report",
                "--data",
                "samples/hubei-2020",
                "--quiet",
                "--level",
                "branch",
                "--out",
            ])
            .arg(&out_dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(&out_dir)
            .sort_by_file_name()
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                (
                    e.path()
                        .strip_prefix(&out_dir)
                        .unwrap()
                        .display()
                        .to_string(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        runs.push(files);
    }
    // Five branch reports, the two findings files and the journal `--resume` reads.
    assert_eq!(runs[0].len(), 5 + 2 + 1);
    assert_eq!(runs[0], runs[1]);
}

const HOSTILE: [&str; 4] = [
    "#read(\"/etc/passwd\")",
    "*王*_[1]",
    "$x$ @ref <lbl> \\ ] [ // #import \"x\"",
    "../../evil",
];

#[test]
fn hostile_names_print_literally_and_stay_in_the_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, n)| format!("H{i},\"{}\",B1,C1,in_service", n.replace('"', "\"\"")))
        .collect();
    let mut spec: Vec<(&str, &str)> = rows.iter().map(|r| ("members", r.as_str())).collect();
    spec.push(("reports", "H0,C1,2020-02-10,epidemic"));
    let data = dataset(dir.path(), &spec);
    std::fs::write(data.join("members.csv"), {
        let mut t = std::fs::read_to_string(data.join("members.csv")).unwrap();
        t.push_str("../../x,\"路径\",B1,C1,in_service\n");
        t
    })
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = rulebook()
        .args([
            "report",
            "--quiet",
            "--level",
            "member",
            "--as-of",
            "2020-12-31",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    let files: Vec<_> = walkdir::WalkDir::new(dir.path())
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pdf"))
        .collect();
    for f in &files {
        assert!(
            f.path().starts_with(out_dir.join("members")),
            "{} escaped",
            f.path().display()
        );
    }
    assert_eq!(files.len(), 2 + HOSTILE.len() + 1);
    for (i, name) in HOSTILE.iter().enumerate() {
        let pdf = std::fs::read_dir(out_dir.join("members"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("H{i}-"))
            })
            .unwrap();
        let text = text_of(&pdf);
        let want: String = name.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(
            text.contains(&want),
            "{name} not printed literally in {}",
            pdf.display()
        );
        assert!(!text.contains("root:"), "file contents leaked");
    }
}

#[test]
fn characters_without_glyphs_are_reported_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    // CJK Extension H: no shipped font has it (Extensions A-F print, see tests/names.rs).
    let data = dataset(
        dir.path(),
        &[("members", "M3,王\u{31350},B1,C1,in_service")],
    );
    let run = |strict: bool, bundle: bool| {
        let mut c = rulebook();
        c.args([
            "report",
            "--level",
            "member",
            "--as-of",
            "2020-12-31",
            "--quiet",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("out"));
        if strict {
            c.arg("--strict");
        }
        if bundle {
            // The form inside a branch's bundle is checked like a lone one.
            c.args(["--bundle", "branch"]);
        }
        c.output().unwrap()
    };
    for bundle in [false, true] {
        let out = run(false, bundle);
        let (_, stderr) = texts(&out);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("member M3")
                && stderr.contains("member.name")
                && stderr.contains("U+31350"),
            "bundle {bundle}: {stderr}"
        );
        let out = run(true, bundle);
        assert_eq!(out.status.code(), Some(1));
        assert!(texts(&out).1.contains("--strict"));
    }
}

#[test]
fn broken_templates_name_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    copy_dir(&root().join("report-templates"), &templates);
    let member = templates.join("member.typ.tera");
    let text = std::fs::read_to_string(&member).unwrap();
    std::fs::write(
        &member,
        text.replacen(
            "{% for d in member.directives %}",
            "{% for d in member.directives",
            1,
        ),
    )
    .unwrap();
    let out = rulebook()
        .args([
            "report",
            "--data",
            "samples/hubei-2020",
            "--level",
            "member",
            "--quiet",
            "--templates",
        ])
        .arg(&templates)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("member.typ.tera"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn templates_cannot_read_outside_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    copy_dir(&root().join("report-templates"), &templates);
    std::fs::write(dir.path().join("secret.txt"), "top secret").unwrap();
    let summary = templates.join("summary.typ.tera");
    let text = std::fs::read_to_string(&summary).unwrap();
    std::fs::write(&summary, format!("{text}\n#read(\"../secret.txt\")\n")).unwrap();
    let out = rulebook()
        .args([
            "report",
            "--data",
            "samples/hubei-2020",
            "--level",
            "summary",
            "--quiet",
            "--templates",
        ])
        .arg(&templates)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("summary"), "{stderr}");
    assert!(!dir.path().join("out/summary.pdf").exists());
}

/// Reports grade from the run's outcomes and make a subject's findings again when they show
/// them: both must agree with the findings of a full run, for every subject.
#[test]
fn outcomes_and_remade_findings_match_the_full_run() {
    let set = rulebook::policy::load(&policies()).unwrap();
    let mut checked = 0;
    for data in ["samples/hubei-2020", "samples/hubei-2020-export"] {
        let ds =
            rulebook::data::load(&root().join(data), &set.schema, &Default::default()).unwrap();
        let run = rulebook::eval::prepare(&set, &ds, None).unwrap();
        let all = run.findings();
        let outcomes = run.outcomes().unwrap();
        assert_eq!(outcomes.total(), all.len() as u64);
        let rules: Vec<String> = run.rules().map(|r| r.id.clone()).collect();
        let mut by_subject: std::collections::BTreeMap<(String, String), Vec<serde_json::Value>> =
            Default::default();
        let mut first_fail: std::collections::HashMap<usize, String> = Default::default();
        for f in &all {
            let ri = rules.iter().position(|r| **r == *f.rule).unwrap();
            let row = run.subject_row(&f.subject_kind, &f.subject_id).unwrap();
            assert_eq!(
                outcomes.status(ri, row),
                f.status,
                "{} {}",
                f.rule,
                f.subject_id
            );
            if f.status == rulebook::findings::Status::Fail {
                first_fail.entry(ri).or_insert(f.subject_id.clone());
            }
            by_subject
                .entry((f.subject_kind.to_string(), f.subject_id.clone()))
                .or_default()
                .push(serde_json::to_value(f).unwrap());
        }
        for (ri, id) in &first_fail {
            let row = outcomes.first_fail(*ri).unwrap();
            assert_eq!(run.rule_finding(*ri, row).unwrap().subject_id, *id);
        }
        for ((kind, id), expected) in &by_subject {
            let row = run.subject_row(kind, id).unwrap();
            let remade: Vec<serde_json::Value> = run
                .subject_findings(kind, row)
                .iter()
                .map(|f| serde_json::to_value(f).unwrap())
                .collect();
            assert_eq!(&remade, expected, "{kind} {id}");
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
}

#[test]
fn findings_files_are_chosen_with_findings() {
    let dir = tempfile::tempdir().unwrap();
    let out = rulebook()
        .args([
            "report",
            "--data",
            "samples/hubei-2020",
            "--level",
            "summary",
        ])
        .args(["--findings", "none", "--quiet", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != report::JOURNAL)
        .collect();
    names.sort();
    assert_eq!(names, ["summary.pdf"]);

    let out = rulebook()
        .args([
            "report",
            "--data",
            "samples/hubei-2020",
            "--level",
            "summary",
        ])
        .args(["--findings", "jsonl", "--quiet", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    let jsonl = std::fs::read_to_string(dir.path().join("findings.jsonl")).unwrap();
    let eval = rulebook()
        .args([
            "eval",
            "--data",
            "samples/hubei-2020",
            "--format",
            "jsonl",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(jsonl, texts(&eval).0);
    assert!(!dir.path().join("findings.json").exists());

    let out = rulebook()
        .args([
            "report",
            "--data",
            "samples/hubei-2020",
            "--findings",
            "none,csv",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        texts(&out).1.contains("--findings none"),
        "{}",
        texts(&out).1
    );
}

/// A waived finding is listed in the appendix of every report, with its reason.
#[test]
fn waivers_are_listed_in_the_appendix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(&root().join("samples/hubei-2020"), &data);
    std::fs::write(
        data.join("waivers.csv"),
        "subject_id,directive,rule,reason,approved_by,valid_from,valid_until\n\
         M026,dual-registration-2020-07,,长期病休,区委组织部,2020-01-01,\n",
    )
    .unwrap();
    let out = rulebook()
        .args([
            "report",
            "--level",
            "summary",
            "--keep-typst",
            "--quiet",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    let typ = std::fs::read_to_string(dir.path().join("out/summary.typ")).unwrap();
    assert!(
        typ.contains("长期病休") && typ.contains("区委组织部"),
        "{typ}"
    );
    assert!(text_of(&dir.path().join("out/summary.pdf")).contains("长期病休"));
}

/// With more than 60 branches the summary ranks the first and last 30 and says how many
/// were left out.
#[test]
fn a_long_branch_ranking_shows_its_ends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = rulebook()
        .args(["gen", "--members", "3000", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    let out = rulebook()
        .args(["report", "--level", "summary", "--keep-typst", "--quiet"])
        .args(["--findings", "none", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);
    let typ = std::fs::read_to_string(dir.path().join("out/summary.typ")).unwrap();
    let branches = std::fs::read_to_string(data.join("organizations.csv"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(",unit_branch,"))
        .count();
    assert!(branches > 60, "{branches}");
    let gap = format!("第 31 至 {} 名略（共 {branches} 个党支部", branches - 30);
    assert!(typ.contains(&gap), "{typ}");
    for rank in [1, 30, branches - 29, branches] {
        assert!(typ.contains(&format!("\n  [{rank}], [")), "rank {rank}");
    }
    for rank in [31, branches - 30] {
        assert!(!typ.contains(&format!("\n  [{rank}], [")), "rank {rank}");
    }
}

/// A run prepared for one subject (`explain`) makes findings for that subject only; asking
/// for another is empty, not a panic.
#[test]
fn a_run_for_one_subject_makes_findings_for_it_only() {
    let set = rulebook::policy::load(&policies()).unwrap();
    let ds = rulebook::data::load(
        &root().join("samples/hubei-2020"),
        &set.schema,
        &Default::default(),
    )
    .unwrap();
    let run = rulebook::eval::prepare_subject(&set, &ds, None, "M017")
        .unwrap()
        .unwrap();
    let row = run.subject_row("member", "M017").unwrap();
    assert!(!run.subject_findings("member", row).is_empty());
    let other = run.subject_row("member", "M018").unwrap();
    assert!(run.subject_findings("member", other).is_empty());
    assert!(run.rule_finding(0, other).is_none());
    assert!(run.rule_finding(0, row).is_some());
}

/// A grade expression that fails at run time: the first problems are warnings and printed
/// in the summary, the rest counted, and the reports still render.
#[test]
fn grading_problems_are_shown_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let policies = policies_copy(dir.path());
    let path = policies.join("assessment.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let broken = text.replace(
        "when = \"critical_fails > 0 || fails >= grade_fail_count\"",
        "when = \"critical_fails > 0 || fails / 0 >= grade_fail_count\"",
    );
    assert_ne!(broken, text);
    std::fs::write(&path, broken).unwrap();
    let out = rulebook()
        .args([
            "report",
            "--data",
            "samples/hubei-2020",
            "--level",
            "summary",
        ])
        .args([
            "--findings",
            "none",
            "--keep-typst",
            "--quiet",
            "--policies",
        ])
        .arg(&policies)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    // Every member without a critical failure hits the division: 60 members, 20 shown.
    let shown = stderr.matches("Division by zero").count();
    assert_eq!(shown, 20, "{stderr}");
    let more: usize = stderr
        .split("warning: grading: ")
        .last()
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        more > 0 && stderr.contains(" more problems like these"),
        "{stderr}"
    );
    let typ = std::fs::read_to_string(dir.path().join("out/summary.typ")).unwrap();
    assert!(typ.contains("评定时出错") && typ.contains(&format!("另有 {more} 处同类问题")));
}
