//! Shared set-up of the fuzz targets: the shipped policy set's schema, a small valid dataset
//! in a temporary folder (one table of which a target replaces with its input), and the
//! accounting invariants every load must keep.

use rulebook::data::{Dataset, LoadOptions};
use rulebook::policy::{PolicySet, Schema};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The project root (two folders up from this crate).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped policy set, loaded once.
pub fn policy() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| rulebook::policy::load(&root().join("policies")).expect("policies load"))
}

pub fn schema() -> &'static Schema {
    &policy().schema
}

/// The contract's tables, their headers and a few valid rows (two communities, one unit
/// branch, two members), as in `tests/common/mod.rs`.
pub const TABLES: [(&str, &str, &str); 10] = [
    (
        "communities",
        "community_id,name,district",
        "C1,水果湖社区,武昌区\nC2,东亭社区,武昌区\n",
    ),
    (
        "organizations",
        "org_id,name,kind,community_id",
        "B1,省直某厅第一党支部,unit_branch,C1\nCO1,水果湖社区党委,community,C1\nCO2,东亭社区党委,community,C2\n",
    ),
    (
        "members",
        "member_id,name,branch_id,residence_community_id,employment",
        "M1,张三,B1,C1,in_service\nM2,李四,B1,C2,in_service\n",
    ),
    (
        "reports",
        "member_id,community_id,reported_on,campaign",
        "M1,C1,2020-02-08,epidemic\nM2,C1,2020-07-20,dual_registration\n",
    ),
    (
        "filings",
        "member_id,branch_id,filed_on",
        "M2,B1,2020-07-25\n",
    ),
    (
        "assignments",
        "member_id,community_id,grid_id,team,assigned_on",
        "M1,C1,G1,work_team,2020-02-09\n",
    ),
    (
        "services",
        "service_id,member_id,community_id,start,end,category,tasked_by,verified",
        "S1,M1,C1,2020-08-01 08:00,2020-08-01 10:00,patrol,community,true\n",
    ),
    (
        "checkins",
        "member_id,community_id,at",
        "M1,C1,2020-02-11 08:00\n",
    ),
    ("unit_attendance", "member_id,date", "M1,2020-02-12\n"),
    (
        "org_registrations",
        "org_id,community_id,registered_on",
        "B1,C1,2020-07-30\n",
    ),
];

/// A temporary dataset folder holding the small valid dataset, made once per process.
pub fn base_dataset() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        for (table, header, rows) in TABLES {
            std::fs::write(
                dir.path().join(format!("{table}.csv")),
                format!("{header}\n{rows}"),
            )
            .expect("write table");
        }
        dir
    })
    .path()
}

/// Restore every table file of the base dataset and remove anything a target added.
pub fn reset(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    for (table, header, rows) in TABLES {
        std::fs::write(
            dir.join(format!("{table}.csv")),
            format!("{header}\n{rows}"),
        )
        .expect("write table");
    }
}

/// Load `dir` and check the promises every load keeps, whatever the input:
/// - a file problem names a file and says something;
/// - per table, read = loaded + rejected, the table holds `loaded` rows, and the reject
///   list holds `rejected` rows of that table, each with a line number from 1 on.
pub fn load_and_check(dir: &Path) -> Option<Dataset> {
    match rulebook::data::load(dir, schema(), &LoadOptions::default()) {
        Ok(ds) => {
            for s in &ds.stats {
                assert_eq!(s.read, s.loaded + s.rejected, "accounting of {}", s.table);
                if let Some(t) = ds.tables.get(&s.table) {
                    assert_eq!(t.len() as u64, s.loaded, "rows of {}", s.table);
                    for c in &t.columns {
                        assert_eq!(c.len(), t.len(), "column length in {}", s.table);
                    }
                }
                let rejected = ds.rejects.iter().filter(|r| r.table == s.table).count();
                assert_eq!(
                    rejected as u64, s.rejected,
                    "rejects listed for {}",
                    s.table
                );
            }
            for r in &ds.rejects {
                assert!(r.line >= 1, "reject without a line: {r:?}");
                assert!(!r.reason.is_empty(), "reject without a reason: {r:?}");
                assert!(!r.file.is_empty(), "reject without a file: {r:?}");
            }
            Some(ds)
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed load must say why");
            for e in &errors {
                assert!(!e.file.is_empty() && !e.message.is_empty(), "{e}");
            }
            None
        }
    }
}

/// The table a selector byte stands for.
pub fn table_of(selector: u8) -> &'static str {
    TABLES[selector as usize % TABLES.len()].0
}
