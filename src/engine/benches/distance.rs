//! Distance kernels: the kernels picked at run time (AVX2+FMA where the CPU has them) against
//! the portable fallback, per metric, at the dimensions of common embeddings.
//!
//! Each iteration compares 256 different pairs (the vectors stay in cache, as the hot part
//! of a graph walk does, but no single pair is kept in registers); throughput is in pairs.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hybrid_engine::vector::distance::{self, portable, Metric};

const PAIRS: usize = 256;

/// The metric's distance with the portable kernels (as `distance::distance` computes it).
fn portable_distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L2 => portable::l2sq(a, b).sqrt(),
        Metric::Cosine => (1.0 - portable::dot(a, b)).clamp(0.0, 2.0),
        Metric::InnerProduct => -portable::dot(a, b),
    }
}

fn distances(c: &mut Criterion) {
    println!("runtime kernels: {}", distance::kernel_name());
    let mut g = c.benchmark_group("distance");
    g.throughput(Throughput::Elements(PAIRS as u64));
    for dims in [50, 384, 768] {
        let a: Vec<f32> = common::gaussian(PAIRS, dims, 1).concat();
        let b: Vec<f32> = common::gaussian(PAIRS, dims, 2).concat();
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            g.bench_with_input(BenchmarkId::new(format!("{}/runtime", metric.name()), dims), &dims, |bench, &d| {
                bench.iter(|| {
                    let mut s = 0.0f32;
                    for (x, y) in a.chunks_exact(d).zip(b.chunks_exact(d)) {
                        s += distance::distance(metric, black_box(x), black_box(y));
                    }
                    s
                })
            });
            g.bench_with_input(BenchmarkId::new(format!("{}/portable", metric.name()), dims), &dims, |bench, &d| {
                bench.iter(|| {
                    let mut s = 0.0f32;
                    for (x, y) in a.chunks_exact(d).zip(b.chunks_exact(d)) {
                        s += portable_distance(metric, black_box(x), black_box(y));
                    }
                    s
                })
            });
        }
    }
    g.finish();
}

criterion_group! { name = benches; config = common::quick(); targets = distances }
criterion_main!(benches);
