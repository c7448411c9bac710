//! Arbitrary bytes as one table's CSV file (the first byte picks the table) in an otherwise
//! valid dataset, through the loader and then the evaluator. Nothing may panic, and every
//! row must be accounted for (see `rulebook_fuzz::load_and_check`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rulebook_fuzz::*;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let dir = base_dataset();
    reset(dir);
    let table = table_of(sel);
    std::fs::write(dir.join(format!("{table}.csv")), bytes).unwrap();
    if let Some(ds) = load_and_check(dir) {
        // Line numbers are lines of the file: never past its last line.
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
        for r in ds.rejects.iter().filter(|r| r.table == table) {
            assert!(
                r.line <= lines,
                "line {} of a {lines}-line file: {r:?}",
                r.line
            );
        }
        // The evaluator must cope with whatever the loader accepted.
        if let Ok(run) = rulebook::eval::prepare(policy(), &ds, None) {
            let _ = run.findings();
        }
    }
});
