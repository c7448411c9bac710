//! The dataset both benchmarks use: 20,000 generated members (about 1 million rows) in a
//! temporary folder, and the shipped policy set.

use std::path::{Path, PathBuf};

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub data: PathBuf,
    pub policy: rulebook::policy::PolicySet,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary folder");
    let data = dir.path().join("m20000");
    rulebook::r#gen::generate(&rulebook::r#gen::GenOptions {
        members: 20_000,
        seed: 42,
        out: data.clone(),
        year: 2020,
    })
    .expect("generate the dataset");
    let policy = rulebook::policy::load(Path::new("policies")).expect("the shipped policy set");
    Fixture {
        _dir: dir,
        data,
        policy,
    }
}
