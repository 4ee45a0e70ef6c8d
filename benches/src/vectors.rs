//! Vector workloads on GloVe-50 (399k x 50, cosine): pg_hybrid's nearest-neighbour search through
//! SQL, measured in one run next to three anchors:
//!
//! - the exact answer Postgres computes without the index (`enable_indexscan = off`: a sequential
//!   scan computing `embedding <=> q` for every row, then a top-10 sort);
//! - pg_hybrid's engine in-process: `hybrid_engine` opening the same index folder read-only and
//!   running `Snapshot::knn` as `src/am/scan.rs` does, i.e. the SQL path minus Postgres;
//! - hnsw_rs in-process (the library that builds our graphs), with its own graph of the same
//!   vectors, the same m / ef_construction, the same parallel insertion, and its own search.
//!
//! Measured: COPY and CREATE INDEX (time, CPU, size); recall@10 against exact ground truth and
//! latency for a sweep of `hybrid.ef_search` (single client), the same sweep in-process for the
//! engine and hnsw_rs, and the latency of each at equal recall; QPS with several clients; filtered
//! kNN at exactly 10% and 1% selectivity (a raw `tag` field evaluated inside the index; ground
//! truth computed here over the filtered rows); and the memory of each searching backend
//! (`/proc/<pid>/smaps_rollup`) on a ~100k-row index and on the full one, to show that what a
//! backend holds privately does not grow with the index (the vector files are mmap'd and shared
//! through the page cache).
//!
//! Recall@10 is counted by distance as ann-benchmarks does (and as `tests/tests/vector_recall.rs`
//! does, whose GloVe reader, f64 distances and recall this module shares): a returned row counts
//! when its true distance is within the 10th true distance, so GloVe's duplicate vectors tied at
//! the cut-off are not misses.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hnsw_rs::prelude::{Distance, Hnsw};
use hybrid_engine::text::reader::TextIndex;
use hybrid_engine::vector::search::normalized;
use pg_hybrid_tests::{index_info, Client, TestCluster};
use serde::Serialize;

use crate::stats::Summary;

// The tests' GloVe-50 reader, reference distances (f64, from the operators' definitions, never
// the extension's code), brute force and recall: the benchmark counts recall exactly as the
// recall tests do.
#[path = "../../tests/tests/vecutil/mod.rs"]
mod vecutil;
use vecutil::{brute_force, read_ivecs, recall, vec_literal, vector_info, Glove, Metric};

/// Neighbours asked for.
const K: usize = 10;
/// The ~100k-row index of the memory comparison: every 4th row of the table.
const SMALL_EVERY: usize = 4;
/// hnsw_rs gives no neighbours to points inserted concurrently while its entry point is still
/// unset, so the first points go in one by one, as `hybrid_engine::vector::graph` does.
const SERIAL_SEED: usize = 256;

/// What to run.
pub struct Options {
    /// Every `stride`-th base vector (1: all 399k).
    pub stride: usize,
    /// Queries of the sweeps (at most 1,000).
    pub queries: usize,
    /// Queries timed through the exact sequential scan (slow: a subset).
    pub exact_queries: usize,
    /// Clients of the concurrent runs.
    pub clients: usize,
    /// The `hybrid.ef_search` sweep.
    pub efs: Vec<usize>,
    /// If set, `perf record -g` of the backend during CREATE INDEX and the default-ef SQL run,
    /// written to this folder.
    pub perf_dir: Option<PathBuf>,
}

impl Options {
    /// `--stride N --queries N --exact-queries N --clients N --ef 10,20,... --perf DIR`.
    pub fn from_args(args: &[String]) -> Options {
        let num = |name: &str, default: usize| crate::arg(args, name).map_or(default, |v| v.parse().expect(name));
        Options {
            stride: num("--stride", 1),
            queries: num("--queries", 1000),
            exact_queries: num("--exact-queries", 100),
            clients: num("--clients", 8),
            efs: crate::arg(args, "--ef").map_or_else(
                || vec![10, 20, 40, 64, 100, 150, 200, 400],
                |v| v.split(',').map(|x| x.trim().parse().expect("--ef 10,20,...")).collect(),
            ),
            perf_dir: crate::arg(args, "--perf").map(PathBuf::from),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// The machine and software of the run (the machine is shared: load averages say how busy).
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub date_utc: String,
    pub cpu: String,
    pub cores: usize,
    pub mem_gib: f64,
    pub kernel: String,
    pub postgres: String,
    pub commit: String,
    pub load_avg_start: String,
    pub load_avg_end: String,
}

/// Loading and building.
#[derive(Debug, Clone, Serialize)]
pub struct Build {
    pub rows: usize,
    pub dims: usize,
    pub m: i32,
    pub ef_construction: i32,
    pub copy_s: f64,
    /// `CREATE INDEX ... USING hybrid (id, embedding)`.
    pub create_index_s: f64,
    /// CPU seconds of the backend and its build threads during CREATE INDEX.
    pub create_index_cpu_s: f64,
    /// Threads the index builds its graph with (cores, at most 8).
    pub graph_threads: usize,
    pub index_bytes: i64,
    pub vector_bytes: i64,
    pub segments: i32,
    pub graph_segments: i32,
    /// The filtered-search index `(id, tag, embedding)`, tag a raw text field.
    pub create_tag_index_s: f64,
    pub hnsw_rs_build_s: f64,
    pub hnsw_rs_build_cpu_s: f64,
    pub hnsw_rs_threads: usize,
}

/// One point of an ef sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub ef: usize,
    pub recall: f64,
    pub min_recall: f64,
    pub latency: Summary,
    /// CPU milliseconds per query of the backend (SQL path only).
    pub backend_cpu_ms: Option<f64>,
    /// Distances computed per query (engine in-process only).
    pub visited: Option<f64>,
}

/// The exact-scan anchor.
#[derive(Debug, Clone, Serialize)]
pub struct ExactAnchor {
    pub queries: usize,
    pub recall: f64,
    pub latency: Summary,
    /// The scan node of its plan.
    pub plan: String,
}

/// Latency of each path at one recall, interpolated on its sweep: mean ms per query (what QPS
/// is made of) and median (less sensitive to the other work of a shared machine).
#[derive(Debug, Clone, Serialize)]
pub struct AtRecall {
    pub recall: f64,
    pub sql_ms: Option<f64>,
    pub engine_ms: Option<f64>,
    pub hnsw_rs_ms: Option<f64>,
    pub sql_over_hnsw_rs: Option<f64>,
    pub sql_over_engine: Option<f64>,
    pub sql_p50_ms: Option<f64>,
    pub engine_p50_ms: Option<f64>,
    pub hnsw_rs_p50_ms: Option<f64>,
    pub sql_over_hnsw_rs_p50: Option<f64>,
}

/// Several clients searching at once.
#[derive(Debug, Clone, Serialize)]
pub struct Concurrent {
    pub table: String,
    pub rows: usize,
    pub clients: usize,
    pub ef: usize,
    pub queries: usize,
    pub seconds: f64,
    pub qps: f64,
    pub latency: Summary,
}

/// Memory of one backend, kB (`/proc/<pid>/smaps_rollup`; `index_*`: the mappings of files in
/// the index folder, from `/proc/<pid>/smaps`).
#[derive(Debug, Clone, Serialize)]
pub struct BackendMem {
    pub pid: i32,
    pub rss_kb: u64,
    pub pss_kb: u64,
    /// Private_Clean + Private_Dirty.
    pub private_kb: u64,
    pub pss_anon_kb: u64,
    pub shared_kb: u64,
    pub index_rss_kb: u64,
    pub index_pss_kb: u64,
    pub index_maps: usize,
}

/// Memory of the backends of one concurrent run, sampled half-way through it.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub rows: usize,
    pub index_bytes: i64,
    pub searching: Vec<BackendMem>,
    /// A backend connected to the same database that never searched.
    pub idle: BackendMem,
    pub mean_rss_kb: f64,
    pub mean_pss_kb: f64,
    pub mean_private_kb: f64,
    pub mean_index_rss_kb: f64,
    pub mean_index_pss_kb: f64,
    pub concurrent: Concurrent,
}

/// A filtered kNN workload.
#[derive(Debug, Clone, Serialize)]
pub struct Filtered {
    pub filter: String,
    pub selectivity_pct: f64,
    pub matching_rows: usize,
    pub recall: f64,
    pub min_recall: f64,
    pub latency: Summary,
    /// How the engine answers it (asked in-process once): Graph, Exact, ...
    pub strategy: String,
    /// EXPLAIN shows the filter inside the kNN index scan.
    pub plan_ok: bool,
}

/// A target of the issue, met or not.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub value: String,
    pub ok: bool,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub data: String,
    pub queries: usize,
    pub default_ef: usize,
    pub machine: Machine,
    pub build: Build,
    pub sql: Vec<SweepPoint>,
    pub engine: Vec<SweepPoint>,
    pub hnsw_rs: Vec<SweepPoint>,
    pub exact: ExactAnchor,
    pub at_recall: Vec<AtRecall>,
    pub concurrent: Concurrent,
    pub filtered: Vec<Filtered>,
    pub memory: Vec<Memory>,
    pub targets: Vec<Target>,
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

/// CPU seconds (user + system, all threads) of process `pid` so far.
fn cpu_secs(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the command name.
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / tick
}

/// Fields of /proc/<pid>/smaps_rollup, in kB.
fn smaps_rollup(pid: i32) -> HashMap<String, u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kb = v.trim().strip_suffix(" kB")?.trim().parse().ok()?;
            Some((k.trim().to_string(), kb))
        })
        .collect()
}

/// Rss and Pss (kB) of the mappings of `pid` whose file is under `dir`, and how many there are.
fn mapped_under(pid: i32, dir: &str) -> (u64, u64, usize) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut rss, mut pss, mut maps) = (0, 0, 0);
    let mut inside = false;
    for l in text.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = l.split_whitespace().nth(5).is_some_and(|p| p.starts_with(dir));
            if inside {
                maps += 1;
            }
            continue;
        }
        if inside {
            let kb = |v: &str| v.trim().trim_end_matches(" kB").trim().parse::<u64>().unwrap_or(0);
            if let Some(v) = l.strip_prefix("Rss:") {
                rss += kb(v);
            } else if let Some(v) = l.strip_prefix("Pss:") {
                pss += kb(v);
            }
        }
    }
    (rss, pss, maps)
}

fn backend_mem(pid: i32, dir: &str) -> BackendMem {
    let m = smaps_rollup(pid);
    let g = |k: &str| m.get(k).copied().unwrap_or(0);
    let (index_rss_kb, index_pss_kb, index_maps) = mapped_under(pid, dir);
    BackendMem {
        pid,
        rss_kb: g("Rss"),
        pss_kb: g("Pss"),
        private_kb: g("Private_Clean") + g("Private_Dirty"),
        pss_anon_kb: g("Pss_Anon"),
        shared_kb: g("Shared_Clean") + g("Shared_Dirty"),
        index_rss_kb,
        index_pss_kb,
        index_maps,
    }
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine(c: &mut Client) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0.0);
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut commit = shell("git", &["-C", repo, "rev-parse", "--short", "HEAD"]);
    if !shell("git", &["-C", repo, "status", "--porcelain", "--untracked-files=no"]).is_empty() {
        commit.push_str(" + uncommitted changes");
    }
    Machine {
        date_utc: shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mem_gib: (mem_kb / (1 << 20) as f64 * 10.0).round() / 10.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        postgres: c.query_one("SHOW server_version", &[]).map(|r| r.get::<_, String>(0)).unwrap_or_default(),
        commit,
        load_avg_start: load_avg(),
        load_avg_end: String::new(),
    }
}

/// `perf record -g` of one process while a step runs (if asked for).
struct Perf(Option<Child>);

impl Perf {
    fn start(dir: Option<&Path>, name: &str, pid: i32) -> Perf {
        let Some(dir) = dir else { return Perf(None) };
        std::fs::create_dir_all(dir).expect("create the perf folder");
        let child = Command::new("perf")
            .args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o"])
            .arg(dir.join(format!("{name}.perf.data")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run perf record");
        std::thread::sleep(Duration::from_millis(500));
        Perf(Some(child))
    }

    fn stop(self) {
        if let Some(mut child) = self.0 {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data and ground truth
// ---------------------------------------------------------------------------------------------

/// Maps `f` over `items` on every core (the ground truth of 1,000 queries is a few billion flops).
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> =
            items.chunks(chunk).map(|part| s.spawn(|| part.iter().map(&f).collect::<Vec<R>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("ground truth thread")).collect()
    })
}

/// The exact top-10 (distance, id) of every query among the rows passing `keep`.
fn exact_truth(data: &Glove, keep: &(dyn Fn(i64) -> bool + Sync)) -> Vec<Vec<(f64, i64)>> {
    par_map(&data.queries, |q| brute_force(&data.base, q, K, Metric::Cosine, keep))
}

/// The exact top-10 of every query over the whole base: from groundtruth.ivecs when the base is
/// the full file (its top 20, distances recomputed in f64 and sorted, so rounding in the file's
/// own order cannot shift the cut-off; checked against brute force on a few queries), otherwise
/// by brute force.
fn unfiltered_truth(data: &Glove, stride: usize, by_id: &HashMap<i64, &[f32]>) -> Vec<Vec<(f64, i64)>> {
    if stride != 1 {
        return exact_truth(data, &|_| true);
    }
    let gt = read_ivecs(&vecutil::glove_dir().join("groundtruth.ivecs"), data.queries.len());
    let truth: Vec<Vec<(f64, i64)>> = data
        .queries
        .iter()
        .zip(&gt)
        .map(|(q, g)| {
            let mut t: Vec<(f64, i64)> = g
                .iter()
                .take(2 * K)
                .map(|x| {
                    let id = i64::from(*x) + 1;
                    (Metric::Cosine.dist(q, by_id[&id]), id)
                })
                .collect();
            t.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            t.truncate(K);
            t
        })
        .collect();
    for (i, q) in data.queries.iter().enumerate().take(5) {
        let bf = brute_force(&data.base, q, K, Metric::Cosine, |_| true);
        assert!(
            (bf[K - 1].0 - truth[i][K - 1].0).abs() <= vecutil::eps(bf[K - 1].0),
            "groundtruth.ivecs disagrees with brute force on query {i}: {bf:?} vs {:?}",
            truth[i]
        );
    }
    truth
}

/// `tag` of every row: the rows ranked by a hash of their id, the first tenth 'ten', the next
/// hundredth 'one', the rest 'other'; so `tag = 'ten'` keeps exactly 10% of the rows and
/// `tag = 'one'` exactly 1%, spread uniformly over the vectors.
fn tags(base: &[(i64, Vec<f32>)]) -> HashMap<i64, &'static str> {
    let mut ids: Vec<i64> = base.iter().map(|(id, _)| *id).collect();
    ids.sort_by_key(|id| (vecutil::mix(*id as u64 ^ 0x7a67), *id));
    let (ten, one) = (ids.len() / 10, ids.len() / 100);
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            (
                *id,
                if i < ten {
                    "ten"
                } else if i < ten + one {
                    "one"
                } else {
                    "other"
                },
            )
        })
        .collect()
}

fn copy_rows(c: &mut Client, table: &str, rows: &[&(i64, Vec<f32>)], tag: &HashMap<i64, &str>) {
    let mut w = c.copy_in(&format!("COPY {table} (id, tag, embedding) FROM STDIN")).unwrap();
    let mut buf = String::with_capacity(2 << 20);
    for (id, v) in rows {
        buf.push_str(&format!("{id}\t{}\t{}\n", tag[id], vec_literal(v)));
        if buf.len() > 1 << 20 {
            w.write_all(buf.as_bytes()).unwrap();
            buf.clear();
        }
    }
    w.write_all(buf.as_bytes()).unwrap();
    w.finish().unwrap();
}

fn create_table(c: &mut Client, table: &str) {
    c.batch_execute(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY, tag text, embedding real[])")).unwrap();
}

/// The statement of the issue: the index's defaults (m 16, ef_construction 64).
fn create_vector_index(c: &mut Client, index: &str, table: &str) {
    c.batch_execute(&format!(
        "CREATE INDEX {index} ON {table} USING hybrid (id, embedding) \
         WITH (key_field = 'id', fields = '{{\"embedding\": {{\"dimensions\": 50, \"metric\": \"cosine\"}}}}')"
    ))
    .unwrap_or_else(|e| panic!("CREATE INDEX {index}: {}", vecutil::db_msg(&e)));
}

// ---------------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------------

/// Runs every query through `sql` (parameter: the query vector; first column: id); latency per
/// query and recall against `truth`.
fn sql_run(
    c: &mut Client,
    sql: &str,
    queries: &[Vec<f32>],
    truth: &[Vec<(f64, i64)>],
    by_id: &HashMap<i64, &[f32]>,
    pid: i32,
    ef: usize,
) -> SweepPoint {
    let stmt = c.prepare(sql).unwrap_or_else(|e| panic!("prepare {sql}: {}", vecutil::db_msg(&e)));
    let mut times = Vec::with_capacity(queries.len());
    let (mut sum, mut min) = (0.0, 1.0f64);
    let cpu = cpu_secs(pid);
    for (q, t) in queries.iter().zip(truth) {
        let start = Instant::now();
        let rows = c.query(&stmt, &[q]).unwrap_or_else(|e| panic!("{sql}: {}", vecutil::db_msg(&e)));
        times.push(start.elapsed());
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let r = recall(&ids, t, q, by_id, Metric::Cosine);
        sum += r;
        min = min.min(r);
    }
    let cpu_ms = (cpu_secs(pid) - cpu) * 1e3 / queries.len() as f64;
    SweepPoint {
        ef,
        recall: sum / queries.len() as f64,
        min_recall: min,
        latency: Summary::of(&times),
        backend_cpu_ms: Some(cpu_ms),
        visited: None,
    }
}

/// The engine in-process: the index folder opened read-only, `Snapshot::knn` as the kNN scan
/// calls it (same `exact_below`), one thread.
fn engine_sweep(
    dir: &Path,
    ctid_to_id: &HashMap<u64, i64>,
    efs: &[usize],
    data: &Glove,
    truth: &[Vec<(f64, i64)>],
    by_id: &HashMap<i64, &[f32]>,
    exact_below: usize,
) -> Vec<SweepPoint> {
    let index = TextIndex::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    let snap = index.snapshot();
    // Warm-up: opens the vector files, faults the pages in.
    for q in &data.queries {
        snap.knn(0, q, K, 100, None, exact_below).expect("knn");
    }
    efs.iter()
        .map(|&ef| {
            let mut times = Vec::with_capacity(data.queries.len());
            let (mut sum, mut min, mut visited) = (0.0, 1.0f64, 0u64);
            for (q, t) in data.queries.iter().zip(truth) {
                let start = Instant::now();
                let res = snap.knn(0, q, K, ef, None, exact_below).expect("knn");
                times.push(start.elapsed());
                visited += res.visited;
                let ids: Vec<i64> = res.hits.iter().map(|(_, ctid)| ctid_to_id[ctid]).collect();
                let r = recall(&ids, t, q, by_id, Metric::Cosine);
                sum += r;
                min = min.min(r);
            }
            let n = data.queries.len() as f64;
            SweepPoint {
                ef,
                recall: sum / n,
                min_recall: min,
                latency: Summary::of(&times),
                backend_cpu_ms: None,
                visited: Some(visited as f64 / n),
            }
        })
        .collect()
}

/// The build distance the engine hands hnsw_rs under cosine: `1 - dot` of unit vectors with the
/// engine's SIMD kernel, clamped to hnsw_rs's invariants (never negative: GloVe has duplicate
/// vectors, and hnsw_rs's own `DistDot` asserts on the -1e-7 their rounding gives). So the
/// comparison measures graph building, not two different distance kernels.
struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = 1.0 - hybrid_engine::vector::distance::dot(a, b);
        if d > 0.0 {
            d
        } else {
            0.0
        }
    }
}

/// hnsw_rs in-process: builds its graph of the same unit vectors with the same m and
/// ef_construction, in parallel on `threads` threads, then searches it with the sweep.
fn hnsw_rs_anchor(
    data: &Glove,
    m: usize,
    ef_construction: usize,
    threads: usize,
    efs: &[usize],
    truth: &[Vec<(f64, i64)>],
    by_id: &HashMap<i64, &[f32]>,
) -> (f64, f64, Vec<SweepPoint>) {
    let unit: Vec<Vec<f32>> = data.base.iter().map(|(_, v)| normalized(v).expect("GloVe has no zero vector")).collect();
    let queries: Vec<Vec<f32>> = data.queries.iter().map(|q| normalized(q).expect("non-zero query")).collect();
    let n = unit.len();
    // A pool of our own, as the engine does, so both build on the same number of threads.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool");
    pool.install(|| {
        let me = std::process::id() as i32;
        let (cpu0, t0) = (cpu_secs(me), Instant::now());
        let hnsw: Hnsw<f32, UnitDot> = Hnsw::new(m, n, 16, ef_construction, UnitDot);
        let points: Vec<(&[f32], usize)> = unit.iter().enumerate().map(|(i, v)| (v.as_slice(), i)).collect();
        for p in &points[..n.min(SERIAL_SEED)] {
            hnsw.insert_slice(*p);
        }
        hnsw.parallel_insert_slice(&points[n.min(SERIAL_SEED)..].to_vec());
        let (build_s, build_cpu) = (t0.elapsed().as_secs_f64(), cpu_secs(me) - cpu0);
        let sweep = efs
            .iter()
            .map(|&ef| {
                let mut times = Vec::with_capacity(queries.len());
                let (mut sum, mut min) = (0.0, 1.0f64);
                for ((q, raw), t) in queries.iter().zip(&data.queries).zip(truth) {
                    let start = Instant::now();
                    let found = hnsw.search(q, K, ef);
                    times.push(start.elapsed());
                    let ids: Vec<i64> = found.iter().map(|nb| data.base[nb.d_id].0).collect();
                    let r = recall(&ids, t, raw, by_id, Metric::Cosine);
                    sum += r;
                    min = min.min(r);
                }
                SweepPoint {
                    ef,
                    recall: sum / queries.len() as f64,
                    min_recall: min,
                    latency: Summary::of(&times),
                    backend_cpu_ms: None,
                    visited: None,
                }
            })
            .collect();
        drop(hnsw);
        (build_s, build_cpu, sweep)
    })
}

/// `clients` sessions each run every query (starting at different offsets) at the default ef;
/// half-way through, the memory of each backend is read, and of one idle backend.
fn concurrent_run(
    cluster: &TestCluster,
    table: &str,
    rows: usize,
    queries: &[Vec<f32>],
    clients: usize,
    ef: usize,
    dir: &str,
) -> (Concurrent, Vec<BackendMem>, BackendMem) {
    let sql = format!("SELECT id FROM {table} ORDER BY embedding <=> $1 LIMIT {K}");
    let barrier = Barrier::new(clients + 1);
    let done = AtomicUsize::new(0);
    let total = clients * queries.len();
    let mut idle = cluster.connect();
    let idle_pid: i32 = idle.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let (pids_tx, pids_rx) = std::sync::mpsc::channel();
    let (results, wall, sampled) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let (barrier, done, sql, pids_tx) = (&barrier, &done, &sql, pids_tx.clone());
                s.spawn(move || {
                    let mut c = cluster.connect();
                    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
                    pids_tx.send(pid).unwrap();
                    let stmt = c.prepare(sql).unwrap();
                    for q in queries.iter().take(20) {
                        c.query(&stmt, &[q]).unwrap();
                    }
                    barrier.wait();
                    let offset = i * queries.len() / clients;
                    let mut times = Vec::with_capacity(queries.len());
                    for j in 0..queries.len() {
                        let q = &queries[(offset + j) % queries.len()];
                        let t = Instant::now();
                        c.query(&stmt, &[q]).unwrap();
                        times.push(t.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    (times, Instant::now())
                })
            })
            .collect();
        drop(pids_tx);
        let pids: Vec<i32> = pids_rx.iter().take(clients).collect();
        barrier.wait();
        let start = Instant::now();
        while done.load(Ordering::Relaxed) < total / 2 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let sampled: Vec<BackendMem> = pids.iter().map(|p| backend_mem(*p, dir)).collect();
        let results: Vec<(Vec<Duration>, Instant)> = handles.into_iter().map(|h| h.join().expect("client")).collect();
        let end = results.iter().map(|r| r.1).max().expect("clients");
        (results, end.duration_since(start), sampled)
    });
    let idle_mem = backend_mem(idle_pid, dir);
    idle.batch_execute("SELECT 1").unwrap();
    let times: Vec<Duration> = results.into_iter().flat_map(|r| r.0).collect();
    let seconds = wall.as_secs_f64();
    let conc = Concurrent {
        table: table.to_string(),
        rows,
        clients,
        ef,
        queries: total,
        seconds,
        qps: total as f64 / seconds,
        latency: Summary::of(&times),
    };
    (conc, sampled, idle_mem)
}

fn memory_of(
    rows: usize,
    index_bytes: i64,
    searching: Vec<BackendMem>,
    idle: BackendMem,
    concurrent: Concurrent,
) -> Memory {
    let mean =
        |f: fn(&BackendMem) -> u64| searching.iter().map(|b| f(b) as f64).sum::<f64>() / searching.len().max(1) as f64;
    Memory {
        rows,
        index_bytes,
        mean_rss_kb: mean(|b| b.rss_kb),
        mean_pss_kb: mean(|b| b.pss_kb),
        mean_private_kb: mean(|b| b.private_kb),
        mean_index_rss_kb: mean(|b| b.index_rss_kb),
        mean_index_pss_kb: mean(|b| b.index_pss_kb),
        searching,
        idle,
        concurrent,
    }
}

/// Mean latency (ms) at recall `r`, interpolated linearly between the two sweep points around
/// it (sweeps are in increasing ef); the first point's if it already reaches `r`; `None` if no
/// point does.
fn ms_at_recall(sweep: &[SweepPoint], r: f64, ms: fn(&Summary) -> f64) -> Option<f64> {
    let i = sweep.iter().position(|p| p.recall >= r)?;
    if i == 0 {
        return Some(ms(&sweep[0].latency));
    }
    let (a, b) = (&sweep[i - 1], &sweep[i]);
    let f = if b.recall > a.recall { (r - a.recall) / (b.recall - a.recall) } else { 1.0 };
    Some(ms(&a.latency) + f * (ms(&b.latency) - ms(&a.latency)))
}

fn ctid_map(c: &mut Client, table: &str) -> HashMap<u64, i64> {
    c.query(&format!("SELECT ctid::text, id FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| {
            let t: String = r.get(0);
            let (b, o) = t.trim_matches(|c| c == '(' || c == ')').split_once(',').expect("ctid");
            let (b, o): (u64, u64) = (b.parse().expect("block"), o.parse().expect("offset"));
            ((b << 16) | o, r.get(1))
        })
        .collect()
}

fn show(c: &mut Client, setting: &str) -> usize {
    let v: String = c.query_one(&format!("SHOW {setting}"), &[]).unwrap().get(0);
    v.parse().unwrap_or_else(|_| panic!("{setting} = {v}"))
}

fn plan(c: &mut Client, sql: &str, q: &[f32]) -> String {
    let sql = sql.replace("$1", &format!("'{}'::real[]", vec_literal(q)));
    c.query(&format!("EXPLAIN {sql}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[vectors {}] {}", shell("date", &["+%H:%M:%S"]), msg.as_ref());
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

pub fn run(opts: &Options) -> Report {
    assert!(opts.queries >= 1 && opts.queries <= 1000, "--queries 1..1000");
    let data = Glove::load(opts.stride, opts.queries);
    let by_id = data.by_id();
    let n = data.base.len();
    let label = if opts.stride == 1 {
        format!("GloVe-50 ({n} x 50, cosine)")
    } else {
        format!("GloVe-50, every {}th vector ({n} x 50, cosine)", opts.stride)
    };
    log(format!("{label}: ground truth of {} queries", data.queries.len()));
    let truth = unfiltered_truth(&data, opts.stride, &by_id);
    let tag = tags(&data.base);

    let cluster = TestCluster::with_settings(
        "bench_vec",
        &[
            "shared_buffers = 1GB",
            "maintenance_work_mem = 1GB",
            "work_mem = 64MB",
            "max_wal_size = 8GB",
            "checkpoint_timeout = 30min",
            "statement_timeout = 0",
            "jit = off",
        ],
    );
    let mut c = cluster.connect();
    let mut machine = machine(&mut c);
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let default_ef = show(&mut c, "hybrid.ef_search");
    let exact_below = show(&mut c, "hybrid.exact_search_threshold");

    // Load, build.
    log("COPY");
    create_table(&mut c, "items");
    let all: Vec<&(i64, Vec<f32>)> = data.base.iter().collect();
    let ((), copy_s) = timed(|| copy_rows(&mut c, "items", &all, &tag));
    c.batch_execute("VACUUM ANALYZE items").unwrap();
    log(format!("COPY {copy_s:.1} s; CREATE INDEX"));
    let perf = Perf::start(opts.perf_dir.as_deref(), "create_index", pid);
    let cpu0 = cpu_secs(pid);
    let ((), create_index_s) = timed(|| create_vector_index(&mut c, "items_vec", "items"));
    let create_index_cpu_s = cpu_secs(pid) - cpu0;
    perf.stop();
    let vi = vector_info(&mut c, "items_vec");
    let info = index_info(&mut c, "items_vec");
    let (_, _, graph_segments, vector_bytes) = vecutil::index_vector_info(&mut c, "items_vec");
    assert_eq!(vi.vectors, n as i64, "every vector indexed");
    log(format!(
        "CREATE INDEX {create_index_s:.1} s ({create_index_cpu_s:.1} s CPU), {} MiB, {} segments; m {} ef_construction {}",
        info.bytes >> 20,
        info.segments,
        vi.m,
        vi.ef_construction
    ));

    // Single client, SQL, ef sweep.
    let sql = format!("SELECT id FROM items ORDER BY embedding <=> $1 LIMIT {K}");
    let p = plan(&mut c, &sql, &data.queries[0]);
    assert!(p.contains("Index Scan using items_vec"), "the kNN query should scan items_vec:\n{p}");
    log("SQL warm-up");
    sql_run(&mut c, &sql, &data.queries, &truth, &by_id, pid, default_ef);
    let mut sql_sweep = Vec::new();
    for &ef in &opts.efs {
        c.batch_execute(&format!("SET hybrid.ef_search = {ef}")).unwrap();
        let perf = if ef == default_ef { Perf::start(opts.perf_dir.as_deref(), "knn_sql", pid) } else { Perf(None) };
        let point = sql_run(&mut c, &sql, &data.queries, &truth, &by_id, pid, ef);
        perf.stop();
        log(format!("SQL ef {ef}: recall {:.4}, {:.0} QPS", point.recall, point.latency.qps));
        sql_sweep.push(point);
    }
    c.batch_execute("RESET hybrid.ef_search").unwrap();

    // Several clients at the default ef, and their memory, on the full index.
    log(format!("{} clients", opts.clients));
    let (concurrent, searching, idle) =
        concurrent_run(&cluster, "items", n, &data.queries, opts.clients, default_ef, &info.directory);
    log(format!("{} clients: {:.0} QPS", opts.clients, concurrent.qps));
    let mem_full = memory_of(n, info.bytes, searching, idle, concurrent.clone());

    // The exact answer without the index.
    log("exact scan");
    c.batch_execute("SET enable_indexscan = off; SET enable_bitmapscan = off").unwrap();
    let p = plan(&mut c, &sql, &data.queries[0]);
    let scan_node =
        p.lines().find(|l| l.contains("Scan")).unwrap_or("").trim().trim_start_matches("->").trim().to_string();
    let nq = opts.exact_queries.min(data.queries.len());
    let ex = sql_run(&mut c, &sql, &data.queries[..nq], &truth[..nq], &by_id, pid, 0);
    c.batch_execute("RESET enable_indexscan; RESET enable_bitmapscan").unwrap();
    let exact = ExactAnchor { queries: nq, recall: ex.recall, latency: ex.latency, plan: scan_node };
    log(format!("exact: recall {:.4}, {:.1} QPS ({})", exact.recall, exact.latency.qps, exact.plan));

    // The engine in-process, on the same folder.
    log("engine in-process");
    let ctids = ctid_map(&mut c, "items");
    let engine = engine_sweep(Path::new(&info.directory), &ctids, &opts.efs, &data, &truth, &by_id, exact_below);

    // hnsw_rs in-process, same threads as the index's graph build.
    let graph_threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    log(format!("hnsw_rs build on {graph_threads} threads"));
    let (hnsw_rs_build_s, hnsw_rs_build_cpu_s, hnsw_sweep) =
        hnsw_rs_anchor(&data, vi.m as usize, vi.ef_construction as usize, graph_threads, &opts.efs, &truth, &by_id);
    log(format!("hnsw_rs build {hnsw_rs_build_s:.1} s"));

    // Filtered kNN: the index again with the tag as a raw field, evaluated inside the search.
    log("filtered: CREATE INDEX with tag");
    c.batch_execute("DROP INDEX items_vec").unwrap();
    let ((), create_tag_index_s) = timed(|| {
        c.batch_execute(
            "CREATE INDEX items_search ON items USING hybrid (id, tag, embedding) \
             WITH (key_field = 'id', fields = '{\"tag\": {\"tokenizer\": \"raw\"}, \
                                                \"embedding\": {\"dimensions\": 50, \"metric\": \"cosine\"}}')",
        )
        .unwrap_or_else(|e| panic!("CREATE INDEX items_search: {}", vecutil::db_msg(&e)))
    });
    let tag_dir = index_info(&mut c, "items_search").directory;
    let tag_index = TextIndex::open(Path::new(&tag_dir)).expect("open items_search");
    let tag_snap = tag_index.snapshot();
    let tag_field = tag_snap.config().text_fields.iter().position(|f| f.name == "tag").expect("tag field");
    let mut filtered = Vec::new();
    for value in ["ten", "one"] {
        let keep = |id: i64| tag[&id] == value;
        let matching = data.base.iter().filter(|(id, _)| keep(*id)).count();
        let ftruth = exact_truth(&data, &keep);
        let fsql = format!("SELECT id FROM items WHERE tag = '{value}' ORDER BY embedding <=> $1 LIMIT {K}");
        let p = plan(&mut c, &fsql, &data.queries[0]);
        let plan_ok =
            p.contains("Index Scan using items_search") && p.contains(&format!("Index Cond: (tag = '{value}'"));
        if !plan_ok {
            log(format!("unexpected plan for {fsql}:\n{p}"));
        }
        let (fq, _) = tag_snap.equality(tag_field, value);
        let strategy = format!(
            "{:?}",
            tag_snap.knn(0, &data.queries[0], K, default_ef, Some(&*fq), exact_below).expect("knn").strategy
        );
        sql_run(&mut c, &fsql, &data.queries[..data.queries.len().min(100)], &ftruth, &by_id, pid, default_ef);
        let point = sql_run(&mut c, &fsql, &data.queries, &ftruth, &by_id, pid, default_ef);
        let f = Filtered {
            filter: format!("tag = '{value}'"),
            selectivity_pct: 100.0 * matching as f64 / n as f64,
            matching_rows: matching,
            recall: point.recall,
            min_recall: point.min_recall,
            latency: point.latency,
            strategy,
            plan_ok,
        };
        log(format!(
            "{}: {:.2}% recall {:.4}, {:.0} QPS, {}",
            f.filter, f.selectivity_pct, f.recall, f.latency.qps, f.strategy
        ));
        filtered.push(f);
    }
    drop(tag_snap);
    drop(tag_index);

    // Memory on a quarter of the rows, for comparison with the full index.
    log("memory on a quarter of the rows");
    create_table(&mut c, "items_small");
    let small: Vec<&(i64, Vec<f32>)> = data.base.iter().step_by(SMALL_EVERY).collect();
    copy_rows(&mut c, "items_small", &small, &tag);
    c.batch_execute("VACUUM ANALYZE items_small").unwrap();
    create_vector_index(&mut c, "items_small_vec", "items_small");
    let small_info = index_info(&mut c, "items_small_vec");
    let (conc_small, searching, idle) = concurrent_run(
        &cluster,
        "items_small",
        small.len(),
        &data.queries,
        opts.clients,
        default_ef,
        &small_info.directory,
    );
    let mem_small = memory_of(small.len(), small_info.bytes, searching, idle, conc_small);
    cluster.assert_no_backend_crash();
    machine.load_avg_end = load_avg();

    let build = Build {
        rows: n,
        dims: 50,
        m: vi.m,
        ef_construction: vi.ef_construction,
        copy_s,
        create_index_s,
        create_index_cpu_s,
        graph_threads,
        index_bytes: info.bytes,
        vector_bytes,
        segments: info.segments,
        graph_segments,
        create_tag_index_s,
        hnsw_rs_build_s,
        hnsw_rs_build_cpu_s,
        hnsw_rs_threads: graph_threads,
    };
    let at_recall: Vec<AtRecall> = [0.90, 0.95, 0.98, 0.99]
        .iter()
        .map(|&r| {
            let mean = |s: &Summary| s.mean_ms;
            let p50 = |s: &Summary| s.p50_ms;
            let (s, e, h) =
                (ms_at_recall(&sql_sweep, r, mean), ms_at_recall(&engine, r, mean), ms_at_recall(&hnsw_sweep, r, mean));
            let (s50, e50, h50) =
                (ms_at_recall(&sql_sweep, r, p50), ms_at_recall(&engine, r, p50), ms_at_recall(&hnsw_sweep, r, p50));
            AtRecall {
                recall: r,
                sql_ms: s,
                engine_ms: e,
                hnsw_rs_ms: h,
                sql_over_hnsw_rs: s.zip(h).map(|(s, h)| s / h),
                sql_over_engine: s.zip(e).map(|(s, e)| s / e),
                sql_p50_ms: s50,
                engine_p50_ms: e50,
                hnsw_rs_p50_ms: h50,
                sql_over_hnsw_rs_p50: s50.zip(h50).map(|(s, h)| s / h),
            }
        })
        .collect();
    let mut report = Report {
        data: label,
        queries: data.queries.len(),
        default_ef,
        machine,
        build,
        sql: sql_sweep,
        engine,
        hnsw_rs: hnsw_sweep,
        exact,
        at_recall,
        concurrent,
        filtered,
        memory: vec![mem_small, mem_full],
        targets: Vec::new(),
    };
    report.targets = targets(&report);
    report
}

fn targets(r: &Report) -> Vec<Target> {
    let b = &r.build;
    let mut t = Vec::new();
    let mut add = |name: &str, value: String, ok: bool| t.push(Target { name: name.to_string(), value, ok });
    add("CREATE INDEX <= 50 s", format!("{:.1} s", b.create_index_s), b.create_index_s <= 50.0);
    let ratio = b.create_index_s / b.hnsw_rs_build_s;
    add(
        "CREATE INDEX <= 1.2x hnsw_rs parallel build",
        format!("{:.1} s / {:.1} s = {ratio:.2}x", b.create_index_s, b.hnsw_rs_build_s),
        ratio <= 1.2,
    );
    match r.at_recall.iter().find(|a| a.recall == 0.95) {
        Some(AtRecall { sql_ms: Some(s), hnsw_rs_ms: Some(h), sql_over_hnsw_rs: Some(x), .. }) => {
            add("SQL <= 1.3x hnsw_rs latency at recall 0.95", format!("{s:.3} ms / {h:.3} ms = {x:.2}x"), *x <= 1.3)
        }
        _ => add("SQL <= 1.3x hnsw_rs latency at recall 0.95", "recall 0.95 not reached".into(), false),
    }
    let best = r.sql.iter().filter(|p| p.recall >= 0.95).max_by(|a, b| a.latency.qps.total_cmp(&b.latency.qps));
    match best {
        Some(p) => add(
            ">= 500 QPS at recall >= 0.95, single client",
            format!("{:.0} QPS at ef {} (recall {:.4})", p.latency.qps, p.ef, p.recall),
            p.latency.qps >= 500.0,
        ),
        None => add(">= 500 QPS at recall >= 0.95, single client", "recall 0.95 not reached".into(), false),
    }
    if let Some(f) = r.filtered.iter().find(|f| f.filter.contains("'one'")) {
        add("filtered recall >= 0.95 at 1%", format!("{:.4}", f.recall), f.recall >= 0.95);
    }
    if let [small, full] = &r.memory[..] {
        let growth = full.mean_private_kb - small.mean_private_kb;
        add(
            "private memory per backend flat as the index grows",
            format!(
                "{:.1} MiB at {} rows, {:.1} MiB at {} rows (index {} -> {} MiB)",
                small.mean_private_kb / 1024.0,
                small.rows,
                full.mean_private_kb / 1024.0,
                full.rows,
                small.index_bytes >> 20,
                full.index_bytes >> 20
            ),
            // Flat: grows by less than a tenth of what the index grew.
            growth * 1024.0 < (full.index_bytes - small.index_bytes) as f64 / 10.0,
        );
    }
    t
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

fn opt_ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.3}"))
}

/// Prints a report as tables.
pub fn print(r: &Report) {
    let m = &r.machine;
    let b = &r.build;
    println!("{}; {} queries, recall@10 against exact ground truth", r.data, r.queries);
    println!(
        "machine: {}, {} cores, {} GiB, Linux {}, PostgreSQL {}, {} ({}); load average {} -> {}",
        m.cpu, m.cores, m.mem_gib, m.kernel, m.postgres, m.commit, m.date_utc, m.load_avg_start, m.load_avg_end
    );
    println!(
        "build: COPY {:.1}s | CREATE INDEX (m {}, ef_construction {}) {:.1}s, {:.1}s CPU on {} graph threads, {} MiB ({} MiB vectors+graph), {} segment(s) | \
         with a raw tag field {:.1}s | hnsw_rs parallel build {:.1}s ({:.1}s CPU, {} threads) | CREATE INDEX / hnsw_rs {:.2}x",
        b.copy_s,
        b.m,
        b.ef_construction,
        b.create_index_s,
        b.create_index_cpu_s,
        b.graph_threads,
        b.index_bytes >> 20,
        b.vector_bytes >> 20,
        b.segments,
        b.create_tag_index_s,
        b.hnsw_rs_build_s,
        b.hnsw_rs_build_cpu_s,
        b.hnsw_rs_threads,
        b.create_index_s / b.hnsw_rs_build_s
    );
    println!("kNN top-10, one client; ms = mean per query, p50/p95 = percentiles; CPU ms = backend CPU per query");
    println!(
        "{:>9} | {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} | {:>8} {:>7} {:>7} {:>7} | {:>8} {:>7} {:>7}",
        "ef_search",
        "SQL rec",
        "QPS",
        "ms",
        "p50",
        "p95",
        "CPU ms",
        "eng rec",
        "ms",
        "p50",
        "visited",
        "hnsw rec",
        "ms",
        "p50"
    );
    for ((s, e), h) in r.sql.iter().zip(&r.engine).zip(&r.hnsw_rs) {
        println!(
            "{:>9} | {:>8.4} {:>7.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3} | {:>8.4} {:>7.3} {:>7.3} {:>7.0} | {:>8.4} {:>7.3} {:>7.3}",
            s.ef,
            s.recall,
            s.latency.qps,
            s.latency.mean_ms,
            s.latency.p50_ms,
            s.latency.p95_ms,
            s.backend_cpu_ms.unwrap_or(0.0),
            e.recall,
            e.latency.mean_ms,
            e.latency.p50_ms,
            e.visited.unwrap_or(0.0),
            h.recall,
            h.latency.mean_ms,
            h.latency.p50_ms
        );
    }
    println!(
        "exact (no index: {}): {} queries, recall {:.4}, {:.1} QPS, {:.1} ms/query",
        r.exact.plan, r.exact.queries, r.exact.recall, r.exact.latency.qps, r.exact.latency.mean_ms
    );
    let ratio = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.2}x"));
    println!("latency at equal recall (interpolated on each sweep): SQL vs engine in-process vs hnsw_rs in-process");
    println!(
        "{:>9} | {:>7} {:>7} {:>7} {:>9} {:>8} | {:>7} {:>7} {:>7} {:>9}",
        "recall", "SQL ms", "eng ms", "hnsw ms", "SQL/hnsw", "SQL/eng", "SQL p50", "eng p50", "hnsw p50", "SQL/hnsw"
    );
    for a in &r.at_recall {
        println!(
            "{:>9.2} | {:>7} {:>7} {:>7} {:>9} {:>8} | {:>7} {:>7} {:>7} {:>9}",
            a.recall,
            opt_ms(a.sql_ms),
            opt_ms(a.engine_ms),
            opt_ms(a.hnsw_rs_ms),
            ratio(a.sql_over_hnsw_rs),
            ratio(a.sql_over_engine),
            opt_ms(a.sql_p50_ms),
            opt_ms(a.engine_p50_ms),
            opt_ms(a.hnsw_rs_p50_ms),
            ratio(a.sql_over_hnsw_rs_p50)
        );
    }
    for c in r.memory.iter().map(|m| &m.concurrent) {
        println!(
            "{} clients on {} ({} rows), ef {}: {:.0} QPS, p50 {:.3} ms, p95 {:.3} ms",
            c.clients, c.table, c.rows, c.ef, c.qps, c.latency.p50_ms, c.latency.p95_ms
        );
    }
    for f in &r.filtered {
        println!(
            "filtered {} ({:.2}%, {} rows{}): recall {:.4} (min {:.2}), {:.0} QPS, p50 {:.3} ms, engine strategy {}",
            f.filter,
            f.selectivity_pct,
            f.matching_rows,
            if f.plan_ok { ", inside the kNN scan" } else { ", UNEXPECTED PLAN" },
            f.recall,
            f.min_recall,
            f.latency.qps,
            f.latency.p50_ms,
            f.strategy
        );
    }
    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>12}",
        "rows", "index MiB", "Rss MiB", "Pss MiB", "Priv MiB", "idx Rss", "idx Pss", "idle Priv"
    );
    for mem in &r.memory {
        println!(
            "{:>8} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>12.1}",
            mem.rows,
            mem.index_bytes >> 20,
            mem.mean_rss_kb / 1024.0,
            mem.mean_pss_kb / 1024.0,
            mem.mean_private_kb / 1024.0,
            mem.mean_index_rss_kb / 1024.0,
            mem.mean_index_pss_kb / 1024.0,
            mem.idle.private_kb as f64 / 1024.0
        );
    }
    println!(
        "(memory: mean of the {} searching backends, read half-way through the concurrent run)",
        r.concurrent.clients
    );
    for t in &r.targets {
        println!("target {}: {} [{}]", t.name, t.value, if t.ok { "met" } else { "NOT met" });
    }
}
