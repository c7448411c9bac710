//! Hardening: a killed run never leaves half a file. (Row-order independence and
//! byte-identical re-evaluation are property tests in tests/properties.rs.)

mod common;

use common::*;

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
