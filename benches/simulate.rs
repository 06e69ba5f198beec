//! A week of traffic at one-second steps through every policy (target: under a second on one core).
//! The week is synthetic: the shipped one-hour Azure trace repeated 168 times under a diurnal shape.

use criterion::{Criterion, criterion_group, criterion_main};
use crossover::api::InferencePool;
use crossover::sim::{self, Shape, SimOptions, trace};
use std::hint::black_box;

fn week(c: &mut Criterion) {
    let pool: InferencePool = serde_saphyr::from_str(sim::EXAMPLE_POOL_YAML).expect("example pool");
    let requests =
        trace::parse(sim::EXAMPLE_TRACE_CSV, trace::TraceFormat::AzureCsv).expect("trace");
    let shape = Shape {
        load_scale: 1.0,
        repeat: 168,
        diurnal: true,
    };
    let workload = trace::workload(&requests, shape, "week");
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    group.bench_function("week_all_policies", |b| {
        b.iter(|| {
            sim::simulate(
                black_box(&pool.spec),
                black_box(&workload),
                SimOptions::default(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, week);
criterion_main!(benches);
