//! One segment's kNN search: the beam search over the flattened graph (`search_graph`, as
//! backends run it in place on the mapped `.hvec` file) at several `ef`, and the exact scan it
//! replaces. 50,000 GloVe-50 vectors under cosine (gaussian vectors if the data is missing),
//! m 16, ef_construction 64; one query per iteration, cycling through 1,000 queries.
//!
//! The graph is built once before measuring (its build time is printed; build speed has its
//! own driver, `examples/vector_build.rs`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hybrid_engine::config::VectorFieldConfig;
use hybrid_engine::tantivy::directory::OwnedBytes;
use hybrid_engine::vector::distance::Metric;
use hybrid_engine::vector::graph::{build_graph, BuildOptions};
use hybrid_engine::vector::search::{exact, normalized, prepare_query, search_graph, VisitedSet};
use hybrid_engine::vector::segment::{encode_segment_file, FieldData, VectorSegment};

const N: usize = 50_000;
const M: usize = 16;
const EF_CONSTRUCTION: usize = 64;

fn data() -> (&'static str, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let root = Path::new(common::DATA).join("glove50");
    match (common::read_fvecs(&root.join("base.fvecs"), N), common::read_fvecs(&root.join("query.fvecs"), 1000)) {
        (Some(b), Some(q)) if b.len() == N && !q.is_empty() => ("glove50", b, q),
        _ => ("gaussian50", common::gaussian(N, 50, 1), common::gaussian(1000, 50, 2)),
    }
}

fn search(c: &mut Criterion) {
    let (name, base, queries) = data();
    let dims = base[0].len();
    let metric = Metric::Cosine;
    // GloVe has a few all-zero rows, which have no cosine distance: left out, as the index does.
    let docs: Vec<u32> = (0..N as u32).filter(|i| base[*i as usize].iter().any(|x| *x != 0.0)).collect();
    let values: Vec<f32> = docs.iter().flat_map(|i| normalized(&base[*i as usize]).unwrap()).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let t = Instant::now();
    let opts = BuildOptions { metric, m: M, ef_construction: EF_CONSTRUCTION, threads };
    let graph = build_graph(&opts, dims, &docs, &values).expect("graph");
    println!("{name}: graph of {} vectors built in {:.2?} ({threads} threads)", docs.len(), t.elapsed());
    let bytes = encode_segment_file(
        N as u32,
        &[FieldData { dims, metric, docs: &docs, vectors: &values, graph: Some(&graph) }],
    )
    .expect("encode");
    let cfg = VectorFieldConfig { name: "v".into(), dimensions: dims, metric, m: M, ef_construction: EF_CONSTRUCTION };
    let seg = VectorSegment::from_bytes(OwnedBytes::new(bytes), &[cfg], PathBuf::from("bench.hvec")).expect("open");
    let field = seg.field(0).expect("field");
    let queries: Vec<Vec<f32>> = queries.iter().map(|q| prepare_query(metric, dims, q).unwrap().into_owned()).collect();

    let mut g = c.benchmark_group(format!("search/{name}"));
    let mut visited = VisitedSet::default();
    for ef in [16, 64, 256] {
        g.bench_with_input(BenchmarkId::new("graph_k10", ef), &ef, |bench, &ef| {
            let mut i = 0;
            bench.iter(|| {
                i = (i + 1) % queries.len();
                search_graph(&field, &queries[i], 10, ef, None, &mut |_| true, &mut visited).unwrap().hits.len()
            })
        });
    }
    g.bench_function("exact_k10", |bench| {
        let mut i = 0;
        bench.iter(|| {
            i = (i + 1) % queries.len();
            exact(&field, &queries[i], 10, &mut |_| true).len()
        })
    });
    g.finish();
}

criterion_group! { name = benches; config = common::quick(); targets = search }
criterion_main!(benches);
