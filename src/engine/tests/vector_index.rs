//! The vector index end to end, without Postgres: bulk build, segments written by transactions,
//! merges, deletes, filtered and unfiltered kNN, measured against brute force.
//!
//! Recall numbers are printed (`cargo test --release -p hybrid_engine --test vector_index --
//! --nocapture`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hybrid_engine::config::{ColumnKind, ColumnSpec, IndexConfig};
use hybrid_engine::manifest::{Identity, Manifest};
use hybrid_engine::query::DefaultOperator;
use hybrid_engine::schema::CTID_FIELD;
use hybrid_engine::text::maintenance;
use hybrid_engine::text::reader::{Snapshot, TextIndex};
use hybrid_engine::text::writer::{create_index_dir, publish_segments, IndexBuilder, SegmentBuilder};
use hybrid_engine::text::{pack_ctid, Document, KeyValue};
use hybrid_engine::vector::distance::Metric;
use hybrid_engine::vector::search::{search_graph, VisitedSet};
use hybrid_engine::vector::{KnnStrategy, GRAPH_MIN_VECTORS};
use hybrid_engine::Error;

fn tempdir(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("hybrid-vector-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p.join("index")
}

fn config(dims: usize, metric: Metric) -> IndexConfig {
    IndexConfig::from_create_index(
        &[
            ColumnSpec { name: "id".into(), kind: ColumnKind::Integer },
            ColumnSpec { name: "tags".into(), kind: ColumnKind::Text },
            ColumnSpec { name: "emb".into(), kind: ColumnKind::Vector },
        ],
        Some("id"),
        Some(&format!(
            r#"{{"emb": {{"dimensions": {dims}, "metric": "{}", "m": 16, "ef_construction": 64}}}}"#,
            metric.name()
        )),
    )
    .unwrap()
}

/// A small deterministic generator (the engine has no rand dependency).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gaussian(&mut self) -> f32 {
        ((-2.0 * self.uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()) as f32
    }
    fn gaussian_vec(&mut self, dims: usize) -> Vec<f32> {
        (0..dims).map(|_| self.gaussian()).collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum Data {
    Gaussian,
    /// 100 clusters of spread 0.3 around gaussian centres.
    Clustered,
}

/// `n` data vectors and `nq` query vectors from the same distribution (the same clusters).
fn data_and_queries(kind: Data, n: usize, nq: usize, dims: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut all = vectors(kind, n + nq, dims, seed);
    let queries = all.split_off(n);
    (all, queries)
}

fn vectors(kind: Data, n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = Rng(seed);
    match kind {
        Data::Gaussian => (0..n).map(|_| r.gaussian_vec(dims)).collect(),
        Data::Clustered => {
            let centres: Vec<Vec<f32>> = (0..100).map(|_| r.gaussian_vec(dims)).collect();
            (0..n)
                .map(|_| {
                    let c = &centres[(r.next_u64() % 100) as usize];
                    c.iter().map(|x| x + 0.3 * r.gaussian()).collect()
                })
                .collect()
        }
    }
}

fn ctid_of(i: usize) -> u64 {
    pack_ctid((i / 200) as u32 + 1, (i % 200) as u16 + 1)
}

/// Row `i`: tagged `all`, `t10` for 10% of rows and `t1` for 1%, chosen by a hash.
fn tags_of(i: usize) -> String {
    let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    let mut t = String::from("all");
    if h % 10 == 0 {
        t.push_str(" t10");
    }
    if h % 100 == 1 {
        t.push_str(" t1");
    }
    t
}

fn doc(i: usize, v: Option<&Vec<f32>>) -> Document {
    Document {
        ctid: ctid_of(i),
        key: KeyValue::I64(i as i64),
        texts: vec![Some(tags_of(i))],
        vectors: vec![v.cloned()],
    }
}

fn build(dir: &Path, cfg: &IndexConfig, data: &[Vec<f32>], nulls: impl Fn(usize) -> bool) -> Manifest {
    let mut b = IndexBuilder::create(dir, cfg, &Identity { index_oid: 1, created_xid: 2 }, 2, 40 << 20).unwrap();
    for (i, v) in data.iter().enumerate() {
        b.add(&doc(i, (!nulls(i)).then_some(v))).unwrap();
    }
    b.finish().unwrap()
}

/// The SQL operator's value, in f64 on the raw vectors.
fn sql_distance(metric: Metric, q: &[f32], x: &[f32]) -> f64 {
    let dot: f64 = q.iter().zip(x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
    match metric {
        Metric::L2 => q.iter().zip(x).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum::<f64>().sqrt(),
        Metric::Cosine => {
            let nq = q.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
            let nx = x.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
            1.0 - (dot / (nq * nx)).clamp(-1.0, 1.0)
        }
        Metric::InnerProduct => -dot,
    }
}

/// Brute-force top k ctids among rows `keep` accepts.
fn brute(metric: Metric, data: &[Vec<f32>], q: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<(f64, u64)> {
    let mut all: Vec<(f64, u64)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, x)| (sql_distance(metric, q, x), ctid_of(i)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    all
}

fn recall(got: &[(f32, u64)], want: &[(f64, u64)]) -> f64 {
    let w: HashSet<u64> = want.iter().map(|x| x.1).collect();
    if w.is_empty() {
        return 1.0;
    }
    got.iter().filter(|x| w.contains(&x.1)).count() as f64 / w.len() as f64
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn recall_for_every_metric_on_gaussian_and_clustered_data() {
    let (n, dims, nq) = (20_000, 32, 100);
    for kind in [Data::Gaussian, Data::Clustered] {
        let (data, queries) = data_and_queries(kind, n, nq, dims, 1);
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let dir = tempdir(&format!("recall-{kind:?}-{}", metric.name()));
            let cfg = config(dims, metric);
            let t = Instant::now();
            let m = build(&dir, &cfg, &data, |_| false);
            let build_time = t.elapsed();
            assert_eq!(m.segments.len(), 1, "a vector build ends in one segment");
            let snap = TextIndex::open(&dir).unwrap().snapshot();
            assert!(snap.vector_segment(0).unwrap().unwrap().field(0).unwrap().has_graph());
            let wants: Vec<_> = queries.iter().map(|q| brute(metric, &data, q, 10, |_| true)).collect();
            for ef in [40, 64, 100] {
                let (mut r, mut visited) = (0.0, 0);
                let t = Instant::now();
                for (q, want) in queries.iter().zip(&wants) {
                    let res = snap.knn(0, q, 10, ef, None, 0).unwrap();
                    assert_eq!(res.strategy, KnnStrategy::Graph);
                    assert_eq!(res.hits.len(), 10);
                    assert!(res.hits.windows(2).all(|w| w[0].0 <= w[1].0));
                    // Distances are the SQL operator's.
                    for ((d, c), (wd, wc)) in res.hits.iter().zip(want) {
                        if c == wc {
                            assert!((f64::from(*d) - wd).abs() < 1e-3 * wd.abs().max(1.0), "{d} vs {wd}");
                        }
                    }
                    r += recall(&res.hits, want);
                    visited += res.visited;
                }
                let r = r / nq as f64;
                println!(
                    "{kind:?} {:>6} n={n} dims={dims} build={build_time:.2?} ef={ef:>3} recall@10={r:.3} visited/query={} time/query={:.0?}",
                    metric.name(),
                    visited / nq as u64,
                    t.elapsed() / nq as u32
                );
                // Isotropic gaussian data in 32 dimensions is the hardest case for HNSW: with m 16
                // and ef_construction 64, hnsw_rs's own search on its own graph measures the same
                // 0.92 at ef 64 that ours does; 0.95 needs ef 100 there.
                match ef {
                    100 => assert!(r >= 0.95, "{kind:?} {metric:?} ef {ef}: recall {r}"),
                    64 => assert!(r >= 0.90, "{kind:?} {metric:?} ef {ef}: recall {r}"),
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn filtered_search_returns_only_matches_with_high_recall() {
    let (n, dims, nq) = (20_000, 32, 100);
    let (data, queries) = data_and_queries(Data::Gaussian, n, nq, dims, 3);
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let dir = tempdir(&format!("filtered-{}", metric.name()));
        build(&dir, &config(dims, metric), &data, |_| false);
        let snap = TextIndex::open(&dir).unwrap().snapshot();
        // A filter passing every row: the walk is cheaper than scanning them, and is used.
        let all = snap.compile("all", Some(0), DefaultOperator::Or).unwrap();
        let mut r = 0.0;
        for q in &queries {
            let res = snap.knn(0, q, 10, 100, Some(&*all), 0).unwrap();
            assert_eq!(res.strategy, KnnStrategy::Graph);
            r += recall(&res.hits, &brute(metric, &data, q, 10, |_| true));
        }
        assert!(r / nq as f64 >= 0.95, "{metric:?} filter on all rows: recall {}", r / nq as f64);
        for (tag, sel) in [("t10", "10%"), ("t1", "1%")] {
            let allowed: HashSet<u64> =
                (0..n).filter(|i| tags_of(*i).split(' ').any(|t| t == tag)).map(ctid_of).collect();
            let filter = snap.compile(tag, Some(0), DefaultOperator::Or).unwrap();
            // Realistic threshold, and forced graph walks (exact_below 0).
            for exact_below in [1000, 0] {
                let mut r = 0.0;
                let mut strategies = Vec::new();
                let mut visited = 0;
                for q in &queries {
                    let want = brute(metric, &data, q, 10, |i| allowed.contains(&ctid_of(i)));
                    let res = snap.knn(0, q, 10, 100, Some(&*filter), exact_below).unwrap();
                    assert!(res.hits.iter().all(|(_, c)| allowed.contains(c)), "a non-matching row was returned");
                    assert_eq!(res.hits.len(), 10);
                    r += recall(&res.hits, &want);
                    strategies.push(res.strategy);
                    visited += res.visited;
                }
                let r = r / nq as f64;
                let graph = strategies.iter().filter(|s| **s == KnnStrategy::Graph).count();
                println!(
                    "filtered {:>6} {sel:>3} ({} rows) exact_below={exact_below:>4}: recall@10={r:.3}, graph-only {graph}/{nq}, visited/query={}",
                    metric.name(),
                    allowed.len(),
                    visited / nq as u64
                );
                assert!(r >= 0.95, "{metric:?} {sel}: recall {r}");
            }
            // The walk itself (no budget, no fallback): the filter inside the walk keeps recall.
            let reader = snap.searcher().segment_reader(0);
            let ctids = reader.fast_fields().u64(CTID_FIELD).unwrap();
            let seg = snap.vector_segment(0).unwrap().unwrap();
            let view = seg.field(0).unwrap();
            let mut visited = VisitedSet::default();
            let (mut r, mut cost) = (0.0, 0);
            for q in &queries {
                let want = brute(metric, &data, q, 10, |i| allowed.contains(&ctid_of(i)));
                let qn = hybrid_engine::vector::search::prepare_query(metric, dims, q).unwrap();
                let mut accept = |d: u32| ctids.first(d).is_some_and(|c| allowed.contains(&c));
                let out = search_graph(&view, &qn, 10, 100, None, &mut accept, &mut visited).unwrap();
                let hits: Vec<(f32, u64)> = out.hits.iter().map(|(d, doc)| (*d, ctids.first(*doc).unwrap())).collect();
                assert!(hits.iter().all(|(_, c)| allowed.contains(c)));
                r += recall(&hits, &want);
                cost += out.visited;
            }
            let r = r / nq as f64;
            println!("filtered walk {:>6} {sel:>3}: recall@10={r:.3}, visited/query={}", metric.name(), cost / nq);
            assert!(r >= 0.95, "{metric:?} {sel} walk: recall {r}");
        }
    }
}

#[test]
fn deleted_and_null_rows_are_never_returned() {
    let (n, dims) = (5000, 16);
    let (data, queries) = data_and_queries(Data::Clustered, n, 30, dims, 5);
    let dir = tempdir("deletes");
    let is_null = |i: usize| i % 11 == 0;
    build(&dir, &config(dims, Metric::Cosine), &data, is_null);
    let mut idx = TextIndex::open(&dir).unwrap();
    let dead: HashSet<u64> = (0..n).filter(|i| i % 3 == 0).map(ctid_of).collect();
    let _lock = maintenance::lock_maintenance(&dir, || {}).unwrap();
    let stats =
        maintenance::bulk_delete(&dir, &hybrid_engine::text::pending::NoLog, &mut |c| dead.contains(&c), &mut |_| {})
            .unwrap();
    assert_eq!(stats.deleted as usize, dead.len());
    assert!(idx.refresh().unwrap());
    let live = |i: usize| !is_null(i) && !dead.contains(&ctid_of(i));
    let check = |snap: &Snapshot, what: &str| {
        let mut r = 0.0;
        for q in &queries {
            for k in [10, 100] {
                let res = snap.knn(0, q, k, 100, None, 0).unwrap();
                assert!(res.hits.iter().all(|(_, c)| !dead.contains(c)), "{what}: a deleted row was returned");
                assert!(res
                    .hits
                    .iter()
                    .all(|(_, c)| !is_null(((c >> 16) as usize - 1) * 200 + (c & 0xffff) as usize - 1)));
                assert_eq!(res.hits.len(), k);
                if k == 10 {
                    r += recall(&res.hits, &brute(Metric::Cosine, &data, q, 10, live));
                }
            }
            // Exact answers are exact.
            let all = snap.compile("all", Some(0), DefaultOperator::Or).unwrap();
            let res = snap.knn(0, q, 10, 100, Some(&*all), usize::MAX).unwrap();
            assert_eq!(res.strategy, KnnStrategy::Exact);
            let want = brute(Metric::Cosine, &data, q, 10, live);
            assert_eq!(res.hits.iter().map(|h| h.1).collect::<Vec<_>>(), want.iter().map(|h| h.1).collect::<Vec<_>>());
        }
        let r = r / queries.len() as f64;
        println!("{what}: recall@10 {r:.3}");
        assert!(r >= 0.95, "{what}: recall {r}");
    };
    check(&idx.snapshot(), "one third deleted");
    // Compaction drops the deleted rows and rebuilds the graph.
    assert!(maintenance::merge_all(&dir, &hybrid_engine::text::pending::NoLog).unwrap());
    assert!(idx.refresh().unwrap());
    let snap = idx.snapshot();
    assert_eq!(snap.manifest().num_deleted(), 0);
    let seg = snap.vector_segment(0).unwrap().unwrap();
    assert_eq!(seg.field(0).unwrap().num_vectors(), (0..n).filter(|i| live(*i)).count());
    check(&snap, "after merge");
}

/// The same rows as one bulk build, or written segment by segment by transactions and then
/// merged, give the same exact answers and comparable recall.
#[test]
fn bulk_build_and_segment_writes_agree() {
    let (n, dims) = (6000, 24);
    let metric = Metric::L2;
    let (data, queries) = data_and_queries(Data::Gaussian, n, 50, dims, 7);
    let cfg = config(dims, metric);
    let is_null = |i: usize| i % 17 == 5;

    let bulk = tempdir("bulk");
    build(&bulk, &cfg, &data, is_null);

    let seg = tempdir("segmented");
    create_index_dir(&seg, &cfg, &Identity::default()).unwrap();
    // Small transactions (no graph) and one big one (gets its graph when written).
    let chunks: Vec<std::ops::Range<usize>> = (0..9).map(|c| c * 500..(c + 1) * 500).chain([4500..n]).collect();
    for r in &chunks {
        let m = Manifest::read(&seg).unwrap();
        let mut b = SegmentBuilder::new(&seg, &m, 8 << 20).unwrap();
        for i in r.clone() {
            b.add(&doc(i, (!is_null(i)).then_some(&data[i]))).unwrap();
        }
        publish_segments(&seg, vec![b.finish().unwrap().unwrap()]).unwrap();
    }
    let mut seg_idx = TextIndex::open(&seg).unwrap();
    let snap = seg_idx.snapshot();
    assert_eq!(snap.searcher().segment_readers().len(), chunks.len());
    let graphs: Vec<bool> =
        (0..chunks.len()).map(|o| snap.vector_segment(o).unwrap().unwrap().field(0).unwrap().has_graph()).collect();
    assert_eq!(
        graphs.iter().filter(|g| **g).count(),
        1,
        "only the segment of >= {GRAPH_MIN_VECTORS} vectors has a graph"
    );

    let bulk_snap = TextIndex::open(&bulk).unwrap().snapshot();
    let all_b = bulk_snap.compile("all", Some(0), DefaultOperator::Or).unwrap();
    let compare = |snap: &Snapshot, what: &str| {
        let all = snap.compile("all", Some(0), DefaultOperator::Or).unwrap();
        let (mut ra, mut rb) = (0.0, 0.0);
        for q in &queries {
            let ea = snap.knn(0, q, 20, 100, Some(&*all), usize::MAX).unwrap();
            let eb = bulk_snap.knn(0, q, 20, 100, Some(&*all_b), usize::MAX).unwrap();
            assert_eq!(ea.hits, eb.hits, "{what}: exact results differ");
            let want = brute(metric, &data, q, 10, |i| !is_null(i));
            ra += recall(&snap.knn(0, q, 10, 64, None, 0).unwrap().hits, &want);
            rb += recall(&bulk_snap.knn(0, q, 10, 64, None, 0).unwrap().hits, &want);
        }
        let nq = queries.len() as f64;
        println!("{what}: recall@10 at ef 64: segmented {:.3}, bulk {:.3}", ra / nq, rb / nq);
        assert!(ra / nq >= 0.95 && rb / nq >= 0.95);
    };
    compare(&snap, "10 segments");
    let _lock = maintenance::lock_maintenance(&seg, || {}).unwrap();
    assert!(maintenance::merge_all(&seg, &hybrid_engine::text::pending::NoLog).unwrap());
    assert!(seg_idx.refresh().unwrap());
    let snap = seg_idx.snapshot();
    assert_eq!(snap.searcher().segment_readers().len(), 1);
    assert!(snap.vector_segment(0).unwrap().unwrap().field(0).unwrap().has_graph());
    compare(&snap, "merged");
}

#[test]
fn vector_files_follow_segments_and_text_indexes_have_none() {
    let dims = 4;
    let data = vectors(Data::Gaussian, 300, dims, 9);
    let dir = tempdir("files");
    let cfg = config(dims, Metric::InnerProduct);
    let m = build(&dir, &cfg, &data, |i| i % 2 == 0);
    assert_eq!(m.persisted_custom_extensions, vec!["hvec".to_string()]);
    let manifest_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(manifest_json["persisted_custom_extensions"], serde_json::json!(["hvec"]));
    // Every segment has its vector file; nothing else is left over.
    let f = files(&dir);
    for s in &m.segments {
        assert!(f.contains(&format!("{}.hvec", s.file_prefix())), "{f:?}");
    }
    assert_eq!(f.iter().filter(|x| x.ends_with(".hvec")).count(), m.segments.len());
    // A transaction's segment brings its own; merges and garbage collection keep exactly the
    // live ones.
    let mut b = SegmentBuilder::new(&dir, &Manifest::read(&dir).unwrap(), 1 << 20).unwrap();
    b.add(&doc(1000, Some(&vec![1.0, 2.0, 3.0, 4.0]))).unwrap();
    b.add(&doc(1001, None)).unwrap();
    publish_segments(&dir, vec![b.finish().unwrap().unwrap()]).unwrap();
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(files(&dir).iter().filter(|x| x.ends_with(".hvec")).count(), m.segments.len());
    let idx = TextIndex::open(&dir).unwrap();
    let hit = idx.snapshot().knn(0, &[1.0, 2.0, 3.0, 4.0], 1, 10, None, 0).unwrap();
    assert!(hit.hits.iter().any(|h| h.1 == ctid_of(1000)) || hit.hits[0].0 <= -30.0);
    let _lock = maintenance::lock_maintenance(&dir, || {}).unwrap();
    maintenance::merge_all(&dir, &hybrid_engine::text::pending::NoLog).unwrap();
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.segments.len(), 1);
    let hvec: Vec<String> = files(&dir).into_iter().filter(|x| x.ends_with(".hvec")).collect();
    assert_eq!(hvec, vec![format!("{}.hvec", m.segments[0].file_prefix())]);
    // tantivy's checksums cover the vector files too.
    let idx = TextIndex::open(&dir).unwrap();
    assert!(idx.tantivy_index().validate_checksum().unwrap().is_empty());
    assert_eq!(idx.snapshot().knn(0, &[1.0, 2.0, 3.0, 4.0], 500, 10, None, 0).unwrap().hits.len(), 151);
    // A segment whose rows have no vector at all still has its (small) file.
    let mut b = SegmentBuilder::new(&dir, &Manifest::read(&dir).unwrap(), 1 << 20).unwrap();
    b.add(&doc(2000, None)).unwrap();
    let staged = b.finish().unwrap().unwrap();
    let id = staged.entry().file_prefix();
    publish_segments(&dir, vec![staged]).unwrap();
    assert!(dir.join(format!("{id}.hvec")).exists());
    let idx = TextIndex::open(&dir).unwrap();
    assert_eq!(idx.snapshot().knn(0, &[1.0, 2.0, 3.0, 4.0], 500, 10, None, 0).unwrap().hits.len(), 151);

    // An index without vector fields: no plugin, no vector files, the manifest as before.
    let text = tempdir("text-only");
    let tcfg = IndexConfig::from_create_index(
        &[
            ColumnSpec { name: "id".into(), kind: ColumnKind::Integer },
            ColumnSpec { name: "tags".into(), kind: ColumnKind::Text },
        ],
        Some("id"),
        None,
    )
    .unwrap();
    let mut b = IndexBuilder::create(&text, &tcfg, &Identity::default(), 2, 40 << 20).unwrap();
    for i in 0..100 {
        b.add(&Document {
            ctid: ctid_of(i),
            key: KeyValue::I64(i as i64),
            texts: vec![Some(tags_of(i))],
            vectors: vec![],
        })
        .unwrap();
    }
    let m = b.finish().unwrap();
    assert!(m.persisted_custom_extensions.is_empty());
    let json = String::from_utf8(std::fs::read(text.join("meta.json")).unwrap()).unwrap();
    assert!(!json.contains("persisted_custom_extensions"), "{json}");
    assert!(files(&text).iter().all(|f| !f.ends_with(".hvec")));
    let snap = TextIndex::open(&text).unwrap().snapshot();
    assert!(snap.vector_segment(0).unwrap().is_none());
    assert!(matches!(snap.knn(0, &[1.0], 1, 10, None, 0), Err(Error::UnknownField { .. })));
}

#[test]
fn bad_vectors_and_queries_are_errors() {
    let dims = 3;
    let dir = tempdir("errors");
    let cfg = config(dims, Metric::Cosine);
    let mut b = IndexBuilder::create(&dir, &cfg, &Identity::default(), 1, 40 << 20).unwrap();
    for bad in [vec![1.0, 2.0], vec![1.0, f32::NAN, 0.0], vec![0.0, 0.0, 0.0], vec![f32::INFINITY, 0.0, 0.0]] {
        let e = b.add(&doc(0, Some(&bad))).unwrap_err();
        assert!(matches!(e, Error::InvalidValue { .. }), "{e}");
    }
    b.add(&doc(1, Some(&vec![1.0, 0.0, 0.0]))).unwrap();
    b.add(&doc(2, None)).unwrap();
    b.finish().unwrap();
    let snap = TextIndex::open(&dir).unwrap().snapshot();
    for bad in [&[1.0f32, 2.0][..], &[0.0, 0.0, 0.0], &[f32::NAN, 1.0, 1.0]] {
        assert!(snap.knn(0, bad, 5, 10, None, 0).is_err());
    }
    let res = snap.knn(0, &[2.0, 0.0, 0.0], 5, 10, None, 0).unwrap();
    assert_eq!(res.hits, vec![(0.0, ctid_of(1))]);
    assert!(snap.knn(0, &[2.0, 0.0, 0.0], 0, 10, None, 0).unwrap().hits.is_empty());
    // A segment builder refuses them too, before anything is written.
    let mut sb = SegmentBuilder::new(&dir, &Manifest::read(&dir).unwrap(), 1 << 20).unwrap();
    assert!(sb.add(&doc(3, Some(&vec![0.0, 0.0, 0.0]))).is_err());
    assert!(sb.finish().unwrap().is_none());
}
