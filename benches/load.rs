//! Micro-benchmarks of loading: cell parsers, and a whole generated dataset (20,000 members,
//! about 1 million rows) read, checked and indexed.
//!
//! `cargo bench --bench load` (the dataset is generated once into a temporary folder).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rulebook::data::{self, LoadOptions};
use std::hint::black_box;
mod common;

fn parsers(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.bench_function("datetime iso", |b| {
        b.iter(|| rulebook::dates::parse_datetime(black_box("2020-02-10 14:30:00")))
    });
    g.bench_function("datetime slashes", |b| {
        b.iter(|| rulebook::dates::parse_datetime(black_box("2020/2/10 9:30")))
    });
    g.bench_function("date chinese", |b| {
        b.iter(|| rulebook::dates::parse_date(black_box("2020年8月1日")))
    });
    g.finish();
}

fn dataset(c: &mut Criterion) {
    let common::Fixture {
        data: out, policy, ..
    } = &common::fixture();
    let bytes: u64 = std::fs::read_dir(out)
        .expect("dataset folder")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("20k members", |b| {
        b.iter(|| {
            let ds = data::load(out, &policy.schema, &LoadOptions::default()).expect("loads");
            black_box(ds.total_read())
        })
    });
    g.finish();
}

criterion_group!(benches, parsers, dataset);
criterion_main!(benches);
