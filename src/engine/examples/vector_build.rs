//! Vector index build time: the engine's bulk build (`IndexBuilder` with one vector field,
//! text included, the final merge that builds the graph) next to a plain hnsw_rs parallel build
//! of the same vectors with the same parameters, and the recall@10 of both.
//!
//! ```text
//! cargo run --release -p hybrid_engine --example vector_build -- [options]
//!   --n N            vectors (default 100000; 0 = the whole file)
//!   --data PATH      an .fvecs file (default /var/tmp/pg_hybrid/data/glove50/base.fvecs;
//!                    gaussian vectors of --dims dimensions if it is missing)
//!   --queries PATH   query .fvecs (default: query.fvecs beside --data)
//!   --metric M       cosine (default), l2 or ip
//!   --m M --ef-construction EF   (default 16 / 64, as the issue's measurement)
//!   --threads T      graph and indexing threads (default: cores, at most 8)
//!   --what LIST      engine,graph,hnsw_rs (default engine,hnsw_rs); graph = build_graph alone
//!   --recall         recall@10 against brute force over the same vectors (1000 queries)
//! ```
//! It exists because build time is dominated by the graph, and the graph builder is worth
//! comparing against the library it would otherwise be: a regression shows as the ratio.

use std::path::{Path, PathBuf};

// The benchmarks' data helpers (.fvecs reading, generated vectors).
#[path = "../benches/common/mod.rs"]
mod common;
use std::time::{Duration, Instant};

use hnsw_rs::prelude::{Distance, Hnsw};
use hybrid_engine::config::{ColumnKind, ColumnSpec, IndexConfig};
use hybrid_engine::manifest::Identity;
use hybrid_engine::text::reader::TextIndex;
use hybrid_engine::text::writer::IndexBuilder;
use hybrid_engine::text::{pack_ctid, Document, KeyValue};
use hybrid_engine::vector::distance::{self, Metric};
use hybrid_engine::vector::graph::{build_graph, BuildOptions};
use hybrid_engine::vector::search::normalized;

/// The distance given to hnsw_rs: the engine's kernels (so the comparison is of graph
/// building, not of two distance kernels), clamped to hnsw_rs's invariant (never negative:
/// GloVe has duplicate vectors, and hnsw_rs's own `DistDot` asserts on the -1e-7 their
/// rounding gives). `1 - dot` of unit vectors (cosine; ip scaled into the unit ball), or
/// squared L2. As `benches/src/vectors.rs` anchors CREATE INDEX.
struct EngineDist(Metric);

impl Distance<f32> for EngineDist {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = match self.0 {
            Metric::L2 => distance::l2sq(a, b),
            _ => 1.0 - distance::dot(a, b),
        };
        if d > 0.0 {
            d
        } else {
            0.0
        }
    }
}

/// Points hnsw_rs gets one by one before the parallel insertion (it gives no neighbours to
/// points inserted concurrently while its entry point is unset), as the engine did with it.
const SERIAL_SEED: usize = 256;

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills a plain struct.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Elapsed and CPU time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (t, c) = (Instant::now(), cpu_time());
    let out = f();
    (out, t.elapsed(), cpu_time() - c)
}

/// Up to `limit` vectors of an `.fvecs` file (0: all of them).
fn read_fvecs(path: &Path, limit: usize) -> Vec<Vec<f32>> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    common::read_fvecs(path, limit).unwrap_or_else(|| panic!("{}: cannot read it as .fvecs", path.display()))
}

struct Args {
    n: usize,
    data: PathBuf,
    queries: Option<PathBuf>,
    dims: usize,
    metric: Metric,
    m: usize,
    ef_construction: usize,
    threads: usize,
    what: Vec<String>,
    recall: bool,
}

fn args() -> Args {
    let mut a = Args {
        n: 100_000,
        data: PathBuf::from("/var/tmp/pg_hybrid/data/glove50/base.fvecs"),
        queries: None,
        dims: 50,
        metric: Metric::Cosine,
        m: 16,
        ef_construction: 64,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()).min(8),
        what: vec!["engine".into(), "hnsw_rs".into()],
        recall: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--n" => a.n = v().parse().unwrap(),
            "--data" => a.data = v().into(),
            "--queries" => a.queries = Some(v().into()),
            "--dims" => a.dims = v().parse().unwrap(),
            "--metric" => a.metric = Metric::parse(&v()).expect("metric"),
            "--m" => a.m = v().parse().unwrap(),
            "--ef-construction" => a.ef_construction = v().parse().unwrap(),
            "--threads" => a.threads = v().parse().unwrap(),
            "--what" => a.what = v().split(',').map(String::from).collect(),
            "--recall" => a.recall = true,
            // cargo bench passes --bench to every target.
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    a
}

fn config(dims: usize, a: &Args) -> IndexConfig {
    IndexConfig::from_create_index(
        &[
            ColumnSpec { name: "id".into(), kind: ColumnKind::Integer },
            ColumnSpec { name: "word".into(), kind: ColumnKind::Text },
            ColumnSpec { name: "emb".into(), kind: ColumnKind::Vector },
        ],
        Some("id"),
        Some(&format!(
            r#"{{"emb": {{"dimensions": {dims}, "metric": "{}", "m": {}, "ef_construction": {}}}}}"#,
            a.metric.name(),
            a.m,
            a.ef_construction
        )),
    )
    .unwrap()
}

/// Brute-force top 10 (indexes into `base`) of each query, by the metric's SQL distance.
fn ground_truth(metric: Metric, base: &[Vec<f32>], queries: &[Vec<f32>], usable: &[bool]) -> Vec<Vec<usize>> {
    let prep = |v: &[f32]| {
        if metric == Metric::Cosine {
            normalized(v).unwrap_or_else(|| vec![0.0; v.len()])
        } else {
            v.to_vec()
        }
    };
    let stored: Vec<Vec<f32>> = base.iter().map(|v| prep(v)).collect();
    queries
        .iter()
        .map(|q| {
            let q = prep(q);
            let mut all: Vec<(f32, usize)> = stored
                .iter()
                .enumerate()
                .filter(|(i, _)| usable[*i])
                .map(|(i, x)| (distance::distance(metric, &q, x), i))
                .collect();
            all.select_nth_unstable_by(10, |a, b| a.0.total_cmp(&b.0));
            all.truncate(10);
            all.into_iter().map(|x| x.1).collect()
        })
        .collect()
}

fn recall(got: &[usize], want: &[usize]) -> f64 {
    got.iter().filter(|g| want.contains(g)).count() as f64 / want.len() as f64
}

const EFS: [usize; 4] = [16, 32, 64, 128];

fn main() {
    let a = args();
    let (base, queries) = if a.data.exists() {
        let q = a.queries.clone().unwrap_or_else(|| a.data.with_file_name("query.fvecs"));
        (read_fvecs(&a.data, a.n), if a.recall { read_fvecs(&q, 1000) } else { Vec::new() })
    } else {
        eprintln!("{} not found: gaussian vectors", a.data.display());
        let n = if a.n == 0 { 100_000 } else { a.n };
        (common::gaussian(n, a.dims, 1), common::gaussian(1000, a.dims, 2))
    };
    let n = base.len();
    let dims = base[0].len();
    // GloVe has a few all-zero rows, which have no cosine distance: NULL for the engine.
    let usable: Vec<bool> = base.iter().map(|v| a.metric != Metric::Cosine || v.iter().any(|x| *x != 0.0)).collect();
    println!(
        "{n} vectors x {dims}, {} m={} ef_construction={} threads={}",
        a.metric.name(),
        a.m,
        a.ef_construction,
        a.threads
    );
    let truth = if a.recall && !queries.is_empty() {
        let (t, e, _) = timed(|| ground_truth(a.metric, &base, &queries, &usable));
        println!("ground truth of {} queries in {e:.2?}", queries.len());
        Some(t)
    } else {
        None
    };
    let mut times: Vec<(String, Duration)> = Vec::new();

    for what in &a.what {
        match what.as_str() {
            "engine" => {
                let root = std::env::temp_dir().join(format!("hybrid-vector-build-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&root);
                std::fs::create_dir_all(&root).unwrap();
                let dir = root.join("index");
                let cfg = config(dims, &a);
                hybrid_engine::vector::plugin::set_default_build_threads(a.threads);
                let (_, el, cpu) = timed(|| {
                    let mut b = IndexBuilder::create(
                        &dir,
                        &cfg,
                        &Identity { index_oid: 1, created_xid: 2 },
                        a.threads,
                        64 << 20,
                    )
                    .unwrap();
                    for (i, v) in base.iter().enumerate() {
                        b.add(&Document {
                            ctid: pack_ctid((i / 200) as u32 + 1, (i % 200) as u16 + 1),
                            key: KeyValue::I64(i as i64),
                            texts: vec![Some(format!("w{i}"))],
                            vectors: vec![usable[i].then(|| v.clone())],
                        })
                        .unwrap();
                    }
                    b.finish().unwrap()
                });
                println!("engine   build: {el:>8.2?} elapsed, {cpu:>8.2?} cpu");
                times.push(("engine".into(), el));
                if let Some(truth) = &truth {
                    let snap = TextIndex::open(&dir).unwrap().snapshot();
                    for ef in EFS {
                        let t = Instant::now();
                        let mut r = 0.0;
                        for (q, want) in queries.iter().zip(truth) {
                            let res = snap.knn(0, q, 10, ef, None, 0).unwrap();
                            // ctid back to row number.
                            let got: Vec<usize> = res
                                .hits
                                .iter()
                                .map(|(_, c)| (((c >> 16) - 1) * 200 + ((c & 0xffff) - 1)) as usize)
                                .collect();
                            r += recall(&got, want);
                        }
                        println!(
                            "engine   ef={ef:>3}: recall@10 {:.4}, {:.0?}/query",
                            r / queries.len() as f64,
                            t.elapsed() / queries.len() as u32
                        );
                    }
                }
                let _ = std::fs::remove_dir_all(&root);
            }
            "graph" => {
                // build_graph alone, on the stored form: what the final merge spends on vectors.
                let docs: Vec<u32> = (0..n as u32).filter(|i| usable[*i as usize]).collect();
                let values: Vec<f32> = docs
                    .iter()
                    .flat_map(|i| {
                        let v = &base[*i as usize];
                        if a.metric == Metric::Cosine {
                            normalized(v).unwrap()
                        } else {
                            v.clone()
                        }
                    })
                    .collect();
                let o =
                    BuildOptions { metric: a.metric, m: a.m, ef_construction: a.ef_construction, threads: a.threads };
                let (g, el, cpu) = timed(|| build_graph(&o, dims, &docs, &values).unwrap());
                println!("graph    build: {el:>8.2?} elapsed, {cpu:>8.2?} cpu (max level {})", g.max_level);
                times.push(("graph".into(), el));
            }
            "hnsw_rs" => {
                // For ip, scaled into the unit ball as the engine does (so 1 - dot is never negative).
                let max = base.iter().map(|v| distance::norm(v)).fold(0.0f32, f32::max).max(f32::MIN_POSITIVE);
                let data: Vec<Vec<f32>> = base
                    .iter()
                    .map(|v| match a.metric {
                        Metric::Cosine => normalized(v).unwrap_or_else(|| vec![0.0; dims]),
                        Metric::L2 => v.clone(),
                        Metric::InnerProduct => v.iter().map(|x| x / max).collect(),
                    })
                    .collect();
                let pool = rayon::ThreadPoolBuilder::new().num_threads(a.threads).build().unwrap();
                let points: Vec<(&[f32], usize)> =
                    data.iter().enumerate().filter(|(i, _)| usable[*i]).map(|(i, v)| (v.as_slice(), i)).collect();
                let (h, el, cpu) = timed(|| {
                    pool.install(|| {
                        let h = Hnsw::new(a.m, n, 16, a.ef_construction, EngineDist(a.metric));
                        let seed = points.len().min(SERIAL_SEED);
                        for p in &points[..seed] {
                            h.insert_slice(*p);
                        }
                        h.parallel_insert_slice(&points[seed..].to_vec());
                        h
                    })
                });
                println!("hnsw_rs  build: {el:>8.2?} elapsed, {cpu:>8.2?} cpu");
                times.push(("hnsw_rs".into(), el));
                if let Some(truth) = &truth {
                    for ef in EFS {
                        let t = Instant::now();
                        let mut r = 0.0;
                        for (q, want) in queries.iter().zip(truth) {
                            let q = match a.metric {
                                Metric::Cosine => normalized(q).unwrap(),
                                Metric::L2 => q.clone(),
                                // The order by q·x does not depend on |q|.
                                Metric::InnerProduct => normalized(q).unwrap(),
                            };
                            let got: Vec<usize> = h.search(&q, 10, ef).iter().map(|x| x.d_id).collect();
                            r += recall(&got, want);
                        }
                        println!(
                            "hnsw_rs  ef={ef:>3}: recall@10 {:.4}, {:.0?}/query",
                            r / queries.len() as f64,
                            t.elapsed() / queries.len() as u32
                        );
                    }
                }
                pool.install(|| drop(h));
            }
            other => panic!("unknown --what {other}"),
        }
    }
    if let (Some(e), Some(h)) = (times.iter().find(|t| t.0 == "engine"), times.iter().find(|t| t.0 == "hnsw_rs")) {
        println!("engine / hnsw_rs elapsed: {:.2}", e.1.as_secs_f64() / h.1.as_secs_f64());
    }
}
