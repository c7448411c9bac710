//! Micro-benchmarks of evaluation on a generated dataset (20,000 members): computing every
//! aggregate per subject, and running all rules (about 200,000 findings).
//!
//! `cargo bench --bench eval` (the dataset is generated once into a temporary folder).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rulebook::data::{self, LoadOptions};
use std::hint::black_box;
mod common;

fn eval(c: &mut Criterion) {
    let common::Fixture {
        data: out, policy, ..
    } = &common::fixture();
    let ds = data::load(out, &policy.schema, &LoadOptions::default()).expect("loads");
    let as_of = chrono::NaiveDate::from_ymd_opt(2020, 12, 31);
    let mut g = c.benchmark_group("eval");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ds.total_read()));
    g.bench_function("aggregates 20k members", |b| {
        b.iter(|| black_box(rulebook::eval::prepare(policy, &ds, as_of).expect("prepares")))
    });
    let run = rulebook::eval::prepare(policy, &ds, as_of).expect("prepares");
    g.throughput(Throughput::Elements(run.finding_count() as u64));
    g.bench_function("rules 20k members", |b| {
        b.iter(|| {
            let mut n = 0u64;
            run.for_each_finding(|f| {
                n += black_box(f.status) as u64;
                Ok(())
            })
            .expect("evaluates");
            n
        })
    });
    g.finish();
}

criterion_group!(benches, eval);
criterion_main!(benches);
