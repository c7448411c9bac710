//! Arbitrary bytes as a directive file (rules, parameters, aggregates, periods) beside the
//! shipped manifest and helpers, through the policy loader and its validation. Loading may
//! fail with diagnostics, but must not panic, and the diagnostics must render.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rulebook_fuzz::root;
use std::path::Path;
use std::sync::OnceLock;

fn folder() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let src = root().join("policies");
        std::fs::copy(src.join("policy.toml"), dir.path().join("policy.toml")).unwrap();
        for sub in ["directives", "helpers"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::copy(
            src.join("helpers/common.rhai"),
            dir.path().join("helpers/common.rhai"),
        )
        .unwrap();
        dir
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let dir = folder();
    std::fs::write(dir.join("directives/fuzz.toml"), data).unwrap();
    match rulebook::policy::load(dir) {
        Ok(set) => {
            let _ = set.render_warnings();
        }
        Err(failure) => {
            let text = failure.render();
            assert!(text.contains("error"), "a failed load must say why: {text}");
        }
    }
});
