//! Hardening: findings do not depend on the order of input rows, and a killed run never
//! leaves half a file.

mod common;

use common::*;
use std::path::Path;

/// A small deterministic shuffle (xorshift), so the test needs no extra crate.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

fn shuffled_copy(from: &Path, to: &Path, seed: u64) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "csv") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        let header = lines.remove(0);
        shuffle(&mut lines, seed);
        let mut out = format!("{header}\n");
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
        std::fs::write(to.join(p.file_name().unwrap()), out).unwrap();
    }
}

/// Findings without lineage (line numbers move when rows move).
fn verdicts(findings: &[serde_json::Value]) -> Vec<String> {
    findings
        .iter()
        .map(|f| {
            let mut ev = f["evidence"].clone();
            if let Some(o) = ev.as_object_mut() {
                o.remove("records");
            }
            format!(
                "{} {} {} {} {}",
                f["rule"], f["subject_id"], f["status"], f["message"], ev
            )
        })
        .collect()
}

#[test]
fn findings_do_not_depend_on_the_order_of_rows() {
    let base = eval_json(&policies(), &root().join("samples/hubei-2020"), None);
    let want = verdicts(&base);
    for seed in [1u64, 7, 2020] {
        let dir = tempfile::tempdir().unwrap();
        shuffled_copy(&root().join("samples/hubei-2020"), dir.path(), seed);
        let got = eval_json(&policies(), dir.path(), None);
        assert_eq!(verdicts(&got), want, "seed {seed}");
    }
}

#[test]
fn evaluating_the_findings_again_is_stable() {
    // eval → findings → eval again on the same inputs gives the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    for p in [&a, &b] {
        let out = rulebook()
            .args([
                "eval",
                "--data",
                "samples/hubei-2020-export",
                "--quiet",
                "--format",
                "jsonl",
                "--out",
            ])
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn a_killed_run_leaves_the_old_file_or_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = rulebook()
        .args(["gen", "--members", "5000", "--seed", "3", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let target = dir.path().join("findings.json");
    std::fs::write(&target, b"OLD").unwrap();
    // A complete run, to know what the new file looks like.
    let complete = dir.path().join("complete.json");
    let out = rulebook()
        .args(["eval", "--quiet", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&complete)
        .output()
        .unwrap();
    assert!(out.status.success());
    let new = std::fs::read(&complete).unwrap();
    for delay_ms in [200u64, 1500, 2500, 3500] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rulebook"))
            .current_dir(root())
            .args(["eval", "--quiet", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&target)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let now = std::fs::read(&target).unwrap();
        assert!(
            now == b"OLD" || now == new,
            "half-written file after {delay_ms} ms ({} bytes)",
            now.len()
        );
        std::fs::write(&target, b"OLD").unwrap();
    }
}
