//! Helpers shared by the vector test files (`vectors.rs`, `vector_recall.rs`): the GloVe-50 data
//! set, distances computed independently of pg_hybrid (f64, straight from the definitions of
//! the SQL operators), brute-force nearest neighbours, recall, loading rows with COPY, and
//! deterministic synthetic vectors.
//!
//! The reference distances are computed here, in the test process, never by the extension:
//! ground truth must not share code (or bugs) with what it checks.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use pg_hybrid_tests::{Client, Rng};

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// A vector field's metric, as in `WITH (fields = '{"v": {"metric": ...}}')`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Cosine,
    L2,
    Ip,
}

impl Metric {
    /// The option value.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Ip => "ip",
        }
    }

    /// The SQL operator that orders by this metric.
    pub fn op(self) -> &'static str {
        match self {
            Metric::Cosine => "<=>",
            Metric::L2 => "<->",
            Metric::Ip => "<#>",
        }
    }

    /// The distance as the SQL operator defines it: 1 - cosine similarity, Euclidean distance,
    /// negative inner product. In f64.
    pub fn dist(self, a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        match self {
            Metric::Cosine => pg_hybrid_tests::cosine_distance(a, b),
            Metric::L2 => a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>().sqrt(),
            Metric::Ip => -a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum::<f64>(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Brute force and recall
// ---------------------------------------------------------------------------------------------

/// The exact `k` nearest rows to `q` among `rows` (id, vector) that pass `keep`, as
/// (distance, id), nearest first, ties by id.
pub fn brute_force(
    rows: &[(i64, Vec<f32>)],
    q: &[f32],
    k: usize,
    metric: Metric,
    keep: impl Fn(i64) -> bool,
) -> Vec<(f64, i64)> {
    let mut all: Vec<(f64, i64)> =
        rows.iter().filter(|(id, _)| keep(*id)).map(|(id, v)| (metric.dist(q, v), *id)).collect();
    let k = k.min(all.len());
    if k == 0 {
        return Vec::new();
    }
    all.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all
}

/// Slack when comparing distances computed in f32 (the index) and f64 (here).
pub fn eps(d: f64) -> f64 {
    1e-5 * d.abs().max(1.0)
}

/// Recall@k of `got` (ids) against the exact top-k `truth`, by distance (as ann-benchmarks
/// does): a returned row counts if its true distance is within the k-th true distance, so
/// rows tied at the cut-off (GloVe has duplicate vectors) are not counted as misses. Each id
/// counts once; at most k.
pub fn recall(got: &[i64], truth: &[(f64, i64)], q: &[f32], vectors: &HashMap<i64, &[f32]>, metric: Metric) -> f64 {
    let k = truth.len();
    if k == 0 {
        return 1.0;
    }
    let cutoff = truth[k - 1].0 + eps(truth[k - 1].0);
    let mut seen = std::collections::HashSet::new();
    let hits = got
        .iter()
        .filter(|id| seen.insert(**id))
        .filter(|id| vectors.get(id).is_some_and(|v| metric.dist(q, v) <= cutoff))
        .count();
    hits.min(k) as f64 / k as f64
}

// ---------------------------------------------------------------------------------------------
// GloVe-50
// ---------------------------------------------------------------------------------------------

/// `$PGH_DATA_DIR/glove50` (default `/var/tmp/pg_hybrid/data`), fetched with
/// `scripts/fetch-data.sh DIR glove50` if missing.
pub fn glove_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("PGH_DATA_DIR").unwrap_or_else(|_| "/var/tmp/pg_hybrid/data".into()));
    let glove = dir.join("glove50");
    if !glove.join("groundtruth.ivecs").exists() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/fetch-data.sh");
        let ok = std::process::Command::new(script).arg(&dir).arg("glove50").status().expect("run fetch-data.sh");
        assert!(ok.success(), "fetching GloVe-50 failed");
    }
    glove
}

/// The first `limit` rows of an .fvecs/.ivecs file: each row is a little-endian int32
/// dimension, then that many 4-byte little-endian values (returned as raw u32 bits).
fn read_vecs(path: &std::path::Path, limit: usize) -> Vec<Vec<u32>> {
    let mut f =
        std::io::BufReader::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let mut out = Vec::new();
    let mut word = [0u8; 4];
    while out.len() < limit {
        match f.read_exact(&mut word) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("{}: {e}", path.display()),
        }
        let dim = i32::from_le_bytes(word);
        assert!((1..=100_000).contains(&dim), "{}: bad dimension {dim} in row {}", path.display(), out.len());
        let mut buf = vec![0u8; dim as usize * 4];
        f.read_exact(&mut buf).unwrap_or_else(|e| panic!("{}: truncated row {}: {e}", path.display(), out.len()));
        out.push(buf.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
    }
    out
}

/// The first `limit` vectors of an .fvecs file.
pub fn read_fvecs(path: &std::path::Path, limit: usize) -> Vec<Vec<f32>> {
    read_vecs(path, limit).into_iter().map(|r| r.into_iter().map(f32::from_bits).collect()).collect()
}

/// The first `limit` rows of an .ivecs file.
pub fn read_ivecs(path: &std::path::Path, limit: usize) -> Vec<Vec<i32>> {
    read_vecs(path, limit).into_iter().map(|r| r.into_iter().map(|x| x as i32).collect()).collect()
}

/// A subset of GloVe-50: every `stride`-th base vector (id = its row in base.fvecs + 1) and the
/// first `n_query` queries.
///
/// A uniform sample, not a prefix: base.fvecs is in word-frequency order, while the queries are
/// a uniform random sample of the whole vocabulary. A prefix keeps only frequent words, so most
/// queries (rare words) fall outside the subset's distribution and every HNSW implementation loses
/// recall on them (hnswlib with the same m 16 / ef_construction 64 / ef 100: recall@10 0.91 on
/// the first 50k rows, 0.975 on every 8th row; pg_hybrid measures the same on both).
pub struct Glove {
    pub base: Vec<(i64, Vec<f32>)>,
    pub queries: Vec<Vec<f32>>,
}

impl Glove {
    pub fn load(stride: usize, n_query: usize) -> Glove {
        let dir = glove_dir();
        let all = read_fvecs(&dir.join("base.fvecs"), usize::MAX);
        assert!(all.len() > 390_000, "base.fvecs has ~399k vectors, found {}", all.len());
        assert!(all.iter().all(|v| v.len() == 50), "GloVe-50 vectors have 50 dimensions");
        let base: Vec<(i64, Vec<f32>)> =
            all.into_iter().enumerate().step_by(stride).map(|(i, v)| (i as i64 + 1, v)).collect();
        let queries = read_fvecs(&dir.join("query.fvecs"), n_query);
        assert_eq!(queries.len(), n_query);
        Glove { base, queries }
    }

    /// id -> vector.
    pub fn by_id(&self) -> HashMap<i64, &[f32]> {
        self.base.iter().map(|(id, v)| (*id, v.as_slice())).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------

/// The SQLSTATE, message, detail and hint of a database error (`Display` only says "db error").
pub fn db_msg(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {} (detail: {:?}, hint: {:?})", d.code().code(), d.message(), d.detail(), d.hint()),
        None => e.to_string(),
    }
}

/// A `real[]` literal whose values read back as exactly these f32 (Rust prints the shortest
/// text that round-trips).
pub fn vec_literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("{{{}}}", parts.join(","))
}

/// The `items` table of the brief, and its index with the given vector options.
pub fn create_items(c: &mut Client, table: &str, dims: usize, metric: Metric) {
    c.batch_execute(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY, body text, lang text, embedding real[])"))
        .unwrap();
    create_items_index(c, table, dims, metric);
}

/// `CREATE INDEX <table>_search ...` on an existing items-like table.
pub fn create_items_index(c: &mut Client, table: &str, dims: usize, metric: Metric) {
    c.batch_execute(&format!(
        "CREATE INDEX {table}_search ON {table} USING hybrid (id, body, lang, embedding)
           WITH (key_field = 'id', fields = '{{\"lang\": {{\"tokenizer\": \"raw\"}},
             \"embedding\": {{\"dimensions\": {dims}, \"metric\": \"{}\", \"m\": 16, \"ef_construction\": 64}}}}')",
        metric.name()
    ))
    .unwrap_or_else(|e| panic!("create index on {table}: {}", db_msg(&e)));
}

/// One row of an items-like table.
pub struct Item<'a> {
    pub id: i64,
    pub body: String,
    pub lang: &'a str,
    pub embedding: Option<&'a [f32]>,
}

/// COPY rows into `table (id, body, lang, embedding)`.
pub fn copy_items<'a>(c: &mut Client, table: &str, rows: impl IntoIterator<Item = Item<'a>>) {
    let mut w = c.copy_in(&format!("COPY {table} (id, body, lang, embedding) FROM STDIN")).unwrap();
    let mut buf = String::new();
    for r in rows {
        let emb = r.embedding.map_or_else(|| "\\N".to_string(), vec_literal);
        buf.push_str(&format!("{}\t{}\t{}\t{}\n", r.id, r.body, r.lang, emb));
        if buf.len() > 1 << 20 {
            w.write_all(buf.as_bytes()).unwrap();
            buf.clear();
        }
    }
    w.write_all(buf.as_bytes()).unwrap();
    w.finish().unwrap();
}

/// Runs a kNN query whose only parameter is the query vector; the first column must be the
/// id and the second the distance (`SELECT id, embedding <=> $1 ...`).
pub fn knn(c: &mut Client, stmt: &postgres::Statement, q: &[f32]) -> Vec<(i64, f64)> {
    let q: Vec<f32> = q.to_vec();
    c.query(stmt, &[&q])
        .unwrap_or_else(|e| panic!("kNN query: {}", db_msg(&e)))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Like [`knn`], for answers that may hold rows without a vector (NULL distance).
pub fn knn_nullable(c: &mut Client, stmt: &postgres::Statement, q: &[f32]) -> Vec<(i64, Option<f64>)> {
    let q: Vec<f32> = q.to_vec();
    c.query(stmt, &[&q])
        .unwrap_or_else(|e| panic!("kNN query: {}", db_msg(&e)))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Panics unless the distances are in nondecreasing order.
pub fn assert_ordered(got: &[(i64, f64)], what: &str) {
    for w in got.windows(2) {
        assert!(w[0].1 <= w[1].1 + eps(w[1].1), "{what}: rows out of distance order: {w:?} in {got:?}");
    }
}

/// Panics unless `got` (id, distance), as returned by an exact search, is the exact answer
/// `truth` (distance, id): the same distances at every rank (within f32 rounding) and the same
/// ids, except that rows tied at the cut-off distance may be exchanged.
pub fn assert_exact(got: &[(i64, f64)], truth: &[(f64, i64)], what: &str) {
    assert_eq!(got.len(), truth.len(), "{what}: {} rows, expected {}: {got:?} vs {truth:?}", got.len(), truth.len());
    for (i, ((gid, gd), (td, tid))) in got.iter().zip(truth).enumerate() {
        assert!((gd - td).abs() <= eps(*td), "{what}: rank {i}: row {gid} at {gd}, expected row {tid} at {td}");
    }
    if let Some(&(cut, _)) = truth.last() {
        let below = |ids: Vec<i64>| -> std::collections::BTreeSet<i64> { ids.into_iter().collect() };
        let g = below(got.iter().filter(|(_, d)| *d < cut - eps(cut)).map(|(id, _)| *id).collect());
        let t = below(truth.iter().filter(|(d, _)| *d < cut - eps(cut)).map(|(_, id)| *id).collect());
        assert_eq!(g, t, "{what}: different rows below the cut-off distance {cut}");
    }
}

/// hybrid.vector_info of one index's only vector field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorInfo {
    pub dimensions: i32,
    pub metric: String,
    pub m: i32,
    pub ef_construction: i32,
    pub vectors: i64,
    pub deleted_vectors: i64,
    pub graph_segments: i32,
    pub exact_segments: i32,
}

pub fn vector_info(c: &mut Client, index: &str) -> VectorInfo {
    let rows = c
        .query(
            "SELECT dimensions, metric, m, ef_construction, vectors, deleted_vectors, graph_segments, exact_segments
               FROM hybrid.vector_info($1::text::regclass)",
            &[&index],
        )
        .unwrap_or_else(|e| panic!("hybrid.vector_info({index}): {e}"));
    assert_eq!(rows.len(), 1, "one vector field");
    let r = &rows[0];
    VectorInfo {
        dimensions: r.get(0),
        metric: r.get(1),
        m: r.get(2),
        ef_construction: r.get(3),
        vectors: r.get(4),
        deleted_vectors: r.get(5),
        graph_segments: r.get(6),
        exact_segments: r.get(7),
    }
}

/// The vector columns of hybrid.index_info: (vectors, deleted_vectors, vector_graph_segments,
/// vector_bytes).
pub fn index_vector_info(c: &mut Client, index: &str) -> (i64, i64, i32, i64) {
    let r = c
        .query_one(
            "SELECT vectors, deleted_vectors, vector_graph_segments, vector_bytes FROM hybrid.index_info($1::text::regclass)",
            &[&index],
        )
        .unwrap_or_else(|e| panic!("hybrid.index_info({index}): {e}"));
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

// ---------------------------------------------------------------------------------------------
// Synthetic vectors
// ---------------------------------------------------------------------------------------------

/// A deterministic vector of `dims` standard normal values for `seed` (Box-Muller over
/// [`Rng`]): distinct seeds give distinct vectors, none all zeros.
pub fn gaussian(seed: u64, dims: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xA5A5);
    let mut unit = || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (0..dims)
        .map(|_| {
            let (u1, u2) = (unit(), unit());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect()
}

/// A well-mixed 64-bit hash of `x` (to assign filters independently of the id's residues).
pub fn mix(x: u64) -> u64 {
    Rng::new(x).next_u64()
}
