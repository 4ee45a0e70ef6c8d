//! Full-text workloads on a real corpus, in one cluster, on the same rows and the same words:
//!
//! - the anchor, Postgres' own full-text search: a stored `tsvector` column + GIN,
//!   `ORDER BY ts_rank_cd(...) DESC LIMIT 10`;
//! - pg_hybrid through SQL: `@@@` + `ORDER BY hybrid.score(id) DESC LIMIT 10`;
//! - tantivy searching the very same index files in this process, without Postgres: the index
//!   folder opened read-only with the engine's `TextIndex`, each query compiled and run with the
//!   engine functions the search scan uses (`Snapshot::compile`, `Snapshot::top_ctids` for the
//!   LIMIT plus `hybrid.topk_headroom`). The physical limit of the stack: what SQL costs on top.
//!
//! Query classes: one common term, one rare term, two-term AND, three-term OR, a phrase, a long
//! OR query (a Debian package's one-line synopsis, every word optional). Latency percentiles and
//! throughput with one client and with N clients (N threads, each its own connection; tantivy:
//! N threads sharing the index), build time and size of both indexes, bulk COPY into an empty
//! indexed table, and N-client single-row INSERT throughput with pgbench.
//!
//! The cluster is kept between runs ([`crate::cluster`]): the corpus table and its two indexes are
//! reused when the corpus file has the size and mtime recorded when they were built (`--fresh`
//! rebuilds everything); the build timings shown are then those of that build.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hybrid_engine::query::compile::conjunction;
use hybrid_engine::query::DefaultOperator;
use hybrid_engine::text::reader::TextIndex;
use pg_hybrid_tests::{Client, NoTls, Rng, PG_BIN};
use serde::{Deserialize, Serialize};

use crate::cluster::{self, BenchCluster, Machine};
use crate::stats::Summary;

/// One document of a corpus.
pub struct Doc {
    pub id: i64,
    pub title: String,
    pub body: String,
    /// A Debian package description (its title is the package's one-line synopsis); otherwise a
    /// dictionary entry (its title is the headword).
    pub package: bool,
}

/// The corpus file `DIR/<corpus>/docs.jsonl`.
pub fn corpus_file(data_dir: &Path, corpus: &str) -> PathBuf {
    data_dir.join(corpus).join("docs.jsonl")
}

/// Reads `DIR/<corpus>/docs.jsonl`, fetching it with the project's script if missing.
pub fn load_corpus(data_dir: &Path, corpus: &str) -> Vec<Doc> {
    let file = corpus_file(data_dir, corpus);
    if !file.exists() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/fetch-data.sh");
        let ok = std::process::Command::new(script).arg(data_dir).arg(corpus).status().expect("run fetch-data.sh");
        assert!(ok.success(), "fetching {corpus} failed");
    }
    let f = std::io::BufReader::new(std::fs::File::open(&file).expect("corpus file"));
    f.lines()
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(&line.expect("line")).expect("json line");
            Doc {
                id: i as i64 + 1,
                title: v["title"].as_str().unwrap_or("").to_string(),
                body: v["body"].as_str().unwrap_or("").to_string(),
                package: !v["id"].as_str().unwrap_or("").contains(':'),
            }
        })
        .collect()
}

/// English stop words of Postgres' `english` configuration: a tsquery of only these is empty,
/// so the query generator avoids them.
const STOP: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "also",
    "may",
    "one",
    "use",
    "used",
    "using",
];

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_lowercase()) && !STOP.contains(w))
        .map(str::to_string)
        .collect()
}

/// A query in both languages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Query {
    pub hybrid: String,
    pub tsquery: String,
}

/// Query classes of the benchmark, each a list of queries drawn from the corpus.
pub fn query_classes(docs: &[Doc], per_class: usize, seed: u64) -> Vec<(&'static str, Vec<Query>)> {
    let mut df: HashMap<String, u32> = HashMap::new();
    for d in docs {
        let mut seen: Vec<String> = words(&d.body);
        seen.sort();
        seen.dedup();
        for w in seen {
            *df.entry(w).or_default() += 1;
        }
    }
    let n = docs.len() as f64;
    let mut by_df: Vec<(&String, u32)> = df.iter().map(|(w, c)| (w, *c)).collect();
    by_df.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let common: Vec<String> =
        by_df.iter().filter(|(_, c)| f64::from(*c) > n * 0.02).take(60).map(|(w, _)| (*w).clone()).collect();
    let rare: Vec<String> = by_df.iter().filter(|(_, c)| (2..=5).contains(c)).map(|(w, _)| (*w).clone()).collect();
    let medium: Vec<String> = by_df
        .iter()
        .filter(|(_, c)| f64::from(*c) > n * 0.001 && f64::from(*c) < n * 0.02)
        .map(|(w, _)| (*w).clone())
        .collect();
    let medium_set: HashSet<&str> = medium.iter().map(String::as_str).collect();
    let mut rng = Rng::new(seed);
    let pick = |rng: &mut Rng, v: &[String]| v[rng.below(v.len() as u64) as usize].clone();
    let mut classes = Vec::new();

    let single = |w: String| Query { hybrid: w.clone(), tsquery: w };
    classes.push(("common term", (0..per_class).map(|_| single(pick(&mut rng, &common))).collect()));
    classes.push(("rare term", (0..per_class).map(|_| single(pick(&mut rng, &rare))).collect()));

    // Two terms that occur together somewhere.
    let mut and2 = Vec::new();
    while and2.len() < per_class {
        let d = &docs[rng.below(docs.len() as u64) as usize];
        let ws: Vec<String> = words(&d.body).into_iter().filter(|w| medium_set.contains(w.as_str())).collect();
        if ws.len() >= 2 && ws[0] != ws[ws.len() - 1] {
            let (a, b) = (ws[0].clone(), ws[ws.len() - 1].clone());
            and2.push(Query { hybrid: format!("{a} AND {b}"), tsquery: format!("{a} & {b}") });
        }
    }
    classes.push(("two-term AND", and2));
    classes.push((
        "three-term OR",
        (0..per_class)
            .map(|_| {
                let (a, b, c) = (pick(&mut rng, &common), pick(&mut rng, &medium), pick(&mut rng, &common));
                Query { hybrid: format!("{a} OR {b} OR {c}"), tsquery: format!("{a} | {b} | {c}") }
            })
            .collect(),
    ));
    let mut phrases = Vec::new();
    while phrases.len() < per_class {
        let d = &docs[rng.below(docs.len() as u64) as usize];
        let toks: Vec<&str> = d.body.split_whitespace().collect();
        if toks.len() < 4 {
            continue;
        }
        let i = rng.below(toks.len() as u64 - 1) as usize;
        let (a, b) = (toks[i], toks[i + 1]);
        let clean = |w: &str| w.chars().all(|c| c.is_ascii_lowercase()) && w.len() >= 3 && !STOP.contains(&w);
        if clean(a) && clean(b) {
            phrases.push(Query { hybrid: format!("\"{a} {b}\""), tsquery: format!("{a} <-> {b}") });
        }
    }
    classes.push(("phrase", phrases));
    // A package's one-line synopsis searched against the corpus, every word optional.
    let packages: Vec<&Doc> = docs.iter().filter(|d| d.package).collect();
    assert!(!packages.is_empty(), "the corpus has no Debian package descriptions");
    let mut long = Vec::new();
    while long.len() < per_class {
        let d = packages[rng.below(packages.len() as u64) as usize];
        let mut ws = words(&d.title.to_lowercase());
        ws.dedup();
        if ws.len() >= 4 {
            long.push(Query { hybrid: ws.join(" OR "), tsquery: ws.join(" | ") });
        }
    }
    classes.push(("long OR (synopsis)", long));
    classes
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/// The three systems measured on one load.
#[derive(Debug, Clone, Serialize)]
pub struct Trio {
    /// Postgres tsvector + GIN, `ts_rank_cd` top-10.
    pub gin: Summary,
    /// pg_hybrid through SQL.
    pub hybrid: Summary,
    /// tantivy in this process on the same index files.
    pub tantivy: Summary,
}

/// Measured results of one query class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassResult {
    pub class: String,
    pub queries: Vec<Query>,
    /// One client: every query `repeats` times, one after the other.
    pub single: Trio,
    /// `clients` clients for `duration_s` each; `qps` is the total throughput.
    pub multi: Trio,
    /// Average number of matching rows (hybrid, GIN): the two analyses differ a little.
    pub matches_hybrid: f64,
    pub matches_gin: f64,
    /// Queries whose top-10 (tuple ids, in order) is the same through SQL and in-process.
    pub same_top10: usize,
}

/// Building the corpus table and its indexes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Build {
    pub rows: usize,
    /// Whether this run reused tables built by an earlier run (the timings are that build's).
    #[serde(default)]
    pub reused: bool,
    #[serde(default)]
    pub built_at: String,
    /// COPY of the rows into the bare table.
    pub copy_s: f64,
    /// `ALTER TABLE ADD COLUMN tsv ... GENERATED ALWAYS AS (to_tsvector(...)) STORED`.
    pub gin_tsvector_s: f64,
    /// `CREATE INDEX ... USING gin (tsv)`.
    pub gin_index_s: f64,
    pub gin_bytes: i64,
    /// What the stored tsvector column takes (sum of `pg_column_size`).
    pub tsvector_bytes: i64,
    /// `CREATE INDEX ... USING hybrid (id, body)`.
    pub hybrid_index_s: f64,
    pub hybrid_bytes: i64,
    pub hybrid_segments: i32,
    /// The table (heap + TOAST) with the tsvector column.
    pub table_bytes: i64,
}

/// Bulk COPY of the corpus into an empty table that already has its index.
#[derive(Debug, Clone, Serialize)]
pub struct CopyResult {
    pub rows: usize,
    pub gin_s: f64,
    pub gin_rows_per_s: f64,
    pub hybrid_s: f64,
    pub hybrid_rows_per_s: f64,
    /// Segments of the hybrid index right after the COPY.
    pub hybrid_segments: i32,
}

/// One pgbench run.
#[derive(Debug, Clone, Serialize)]
pub struct Pgbench {
    pub tps: f64,
    pub transactions: u64,
    pub failed: u64,
    pub latency_avg_ms: f64,
}

/// Single-row autocommit INSERTs from several clients (pgbench, custom script).
#[derive(Debug, Clone, Serialize)]
pub struct InsertResult {
    pub command: String,
    pub script: String,
    pub gin: Pgbench,
    pub hybrid: Pgbench,
    /// Segments of the hybrid index after the run (each commit publishes one; merges follow).
    pub hybrid_segments_after: i32,
}

/// One of the project's targets, checked against this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub goal: String,
    pub measured: String,
    pub holds: bool,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub suite: String,
    pub date: String,
    pub corpus: String,
    pub machine: Machine,
    pub clients: usize,
    pub repeats: usize,
    pub duration_s: f64,
    pub topk_headroom: i32,
    pub build: Build,
    pub classes: Vec<ClassResult>,
    pub copy: CopyResult,
    pub inserts: InsertResult,
    /// The same INSERTs from one client.
    pub inserts_one_client: InsertResult,
    /// A prepared primary-key lookup of one row through SQL, one client: what any query costs.
    pub sql_floor: Summary,
    pub targets: Vec<Target>,
    pub total_s: f64,
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// What `pg_hybrid_bench fulltext` was asked to do.
pub struct Options {
    pub corpus: String,
    pub data: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    pub fresh: bool,
    pub per_class: usize,
    pub repeats: usize,
    pub clients: usize,
    pub duration: Duration,
    pub pgbench_s: u64,
    pub json: PathBuf,
}

pub const USAGE: &str = "pg_hybrid_bench fulltext [--corpus debian|large] [--data DIR] [--dir CLUSTER_DIR] [--port N] \
[--fresh] [--queries N] [--repeats N] [--clients N] [--duration SECONDS] [--pgbench-seconds N] [--json FILE]";

impl Options {
    pub fn from_args(args: &[String], data: &Path) -> Options {
        let num = |name: &str, default: u64| -> u64 {
            crate::arg(args, name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        };
        let corpus = crate::arg(args, "--corpus").unwrap_or_else(|| "debian".into());
        assert!(
            !corpus.is_empty() && corpus.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "--corpus: a name of lowercase letters and digits"
        );
        let json = crate::arg(args, "--json").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench-results"))
                .join(format!("fulltext-{}.json", cluster::today()))
        });
        Options {
            corpus,
            data: data.to_path_buf(),
            dir: crate::arg(args, "--dir").map_or_else(|| PathBuf::from(cluster::DEFAULT_DIR), PathBuf::from),
            port: num("--port", u64::from(cluster::DEFAULT_PORT)) as u16,
            fresh: args.iter().any(|a| a == "--fresh"),
            per_class: num("--queries", 20) as usize,
            repeats: num("--repeats", 5) as usize,
            clients: num("--clients", 8) as usize,
            duration: Duration::from_secs_f64(
                crate::arg(args, "--duration").map_or(10.0, |v| v.parse().expect("--duration takes seconds")),
            ),
            pgbench_s: num("--pgbench-seconds", 30),
            json,
        }
    }
}

/// `pg_hybrid_bench fulltext ...`: runs the suite, prints the tables, writes the JSON.
pub fn cli(args: &[String], data: &Path) {
    let opts = Options::from_args(args, data);
    let report = run(&opts);
    print(&report);
    if let Some(parent) = opts.json.parent() {
        std::fs::create_dir_all(parent).expect("create the results folder");
    }
    std::fs::write(&opts.json, serde_json::to_string_pretty(&report).expect("json")).expect("write json");
    println!("\nresults written to {}", opts.json.display());
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

/// COPY text format of the rows (id, title, body).
fn copy_payload(docs: &[Doc]) -> Vec<u8> {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r");
    let mut out = Vec::with_capacity(docs.iter().map(|d| d.title.len() + d.body.len() + 24).sum());
    for d in docs {
        writeln!(out, "{}\t{}\t{}", d.id, esc(&d.title), esc(&d.body)).unwrap();
    }
    out
}

/// COPYs `payload` into `table (id, title, body)`; returns the seconds it took (commit included).
fn copy_into(c: &mut Client, table: &str, payload: &[u8]) -> f64 {
    let ((), secs) = timed(|| {
        let mut w = c.copy_in(&format!("COPY {table} (id, title, body) FROM STDIN")).unwrap();
        for chunk in payload.chunks(1 << 20) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap();
    });
    secs
}

/// Creates table `docs` and COPYs the corpus into it (the snapshots benchmark's table).
pub fn load(c: &mut Client, docs: &[Doc]) -> f64 {
    c.batch_execute("CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text)").unwrap();
    let secs = copy_into(c, "docs", &copy_payload(docs));
    c.batch_execute("VACUUM ANALYZE docs").unwrap();
    secs
}

/// Names of the objects of one corpus.
struct Names {
    table: String,
    gin: String,
    search: String,
}

impl Names {
    fn of(corpus: &str) -> Names {
        let table = format!("ft_{corpus}");
        Names { gin: format!("{table}_gin"), search: format!("{table}_search"), table }
    }
}

/// Size and modification time of the corpus file: what the loaded table was built from.
fn fingerprint(file: &Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(file).expect("stat the corpus file");
    (md.size() as i64, md.mtime() * 1_000_000_000 + md.mtime_nsec())
}

fn scalar_i64(c: &mut Client, sql: &str) -> Option<i64> {
    c.query_one(sql, &[]).ok().and_then(|r| r.try_get::<_, i64>(0).ok())
}

/// Loads the corpus table and builds both indexes, unless an earlier run did so from the same
/// corpus file and everything is still there.
fn prepare(c: &mut Client, n: &Names, corpus: &str, docs: &[Doc], fp: (i64, i64), fresh: bool) -> Build {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS bench_fulltext_builds (corpus text PRIMARY KEY, file_size bigint NOT NULL,
           file_mtime_ns bigint NOT NULL, rows bigint NOT NULL, build text NOT NULL, built_at timestamptz NOT NULL DEFAULT now())",
    )
    .unwrap();
    let rows = docs.len() as i64;
    if !fresh {
        let recorded = c
            .query_opt(
                "SELECT build, to_char(built_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI UTC') FROM bench_fulltext_builds
                  WHERE corpus = $1 AND file_size = $2 AND file_mtime_ns = $3 AND rows = $4",
                &[&corpus, &fp.0, &fp.1, &rows],
            )
            .unwrap();
        if let Some(r) = recorded {
            let in_table = scalar_i64(c, &format!("SELECT count(*) FROM {}", n.table));
            let in_index = scalar_i64(c, &format!("SELECT documents FROM hybrid.index_info('{}')", n.search));
            let gin = scalar_i64(c, &format!("SELECT count(*) FROM pg_class WHERE relname = '{}'", n.gin));
            if in_table == Some(rows) && in_index == Some(rows) && gin == Some(1) {
                let mut b: Build = serde_json::from_str(r.get::<_, &str>(0)).expect("recorded build");
                b.reused = true;
                b.built_at = r.get(1);
                eprintln!("bench: reusing {} ({} rows, built {})", n.table, rows, b.built_at);
                return b;
            }
        }
    }
    eprintln!("bench: loading {} rows into {} and building both indexes", rows, n.table);
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {} CASCADE; DELETE FROM bench_fulltext_builds WHERE corpus = '{corpus}'",
        n.table
    ))
    .unwrap();
    c.batch_execute(&format!("CREATE TABLE {} (id bigint PRIMARY KEY, title text, body text)", n.table)).unwrap();
    let copy_s = copy_into(c, &n.table, &copy_payload(docs));
    c.batch_execute(&format!("VACUUM ANALYZE {}", n.table)).unwrap();
    c.batch_execute("CHECKPOINT").unwrap();
    // The anchor: what Postgres users have today.
    let (_, gin_tsvector_s) = timed(|| {
        c.batch_execute(&format!(
            "ALTER TABLE {} ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', coalesce(body, ''))) STORED",
            n.table
        ))
        .unwrap()
    });
    let (_, gin_index_s) =
        timed(|| c.batch_execute(&format!("CREATE INDEX {} ON {} USING gin (tsv)", n.gin, n.table)).unwrap());
    c.batch_execute("CHECKPOINT").unwrap();
    let (_, hybrid_index_s) = timed(|| {
        c.batch_execute(&format!(
            "CREATE INDEX {} ON {} USING hybrid (id, body) WITH (key_field = 'id')",
            n.search, n.table
        ))
        .unwrap()
    });
    c.batch_execute(&format!("VACUUM ANALYZE {}", n.table)).unwrap();
    c.batch_execute("CHECKPOINT").unwrap();
    let gin_bytes = scalar_i64(c, &format!("SELECT pg_relation_size('{}')", n.gin)).unwrap();
    let tsvector_bytes = scalar_i64(c, &format!("SELECT sum(pg_column_size(tsv))::int8 FROM {}", n.table)).unwrap();
    let table_bytes = scalar_i64(c, &format!("SELECT pg_table_size('{}')", n.table)).unwrap();
    let info = c.query_one(&format!("SELECT bytes, segments FROM hybrid.index_info('{}')", n.search), &[]).unwrap();
    let b = Build {
        rows: docs.len(),
        reused: false,
        built_at: String::new(),
        copy_s,
        gin_tsvector_s,
        gin_index_s,
        gin_bytes,
        tsvector_bytes,
        hybrid_index_s,
        hybrid_bytes: info.get(0),
        hybrid_segments: info.get(1),
        table_bytes,
    };
    c.execute(
        "INSERT INTO bench_fulltext_builds (corpus, file_size, file_mtime_ns, rows, build) VALUES ($1, $2, $3, $4, $5)",
        &[&corpus, &fp.0, &fp.1, &rows, &serde_json::to_string(&b).unwrap()],
    )
    .unwrap();
    let mut b = b;
    b.built_at = "this run".into();
    b
}

/// Brings the table and both indexes into memory, as they are after a while of serving:
/// pg_prewarm for the heap, its TOAST table and the GIN index; the hybrid folder's files read
/// once (they are mmap'd from the page cache).
fn prewarm(c: &mut Client, n: &Names, index_dir: &Path) {
    c.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm").unwrap();
    c.batch_execute(&format!(
        "SELECT pg_prewarm(r) FROM (SELECT '{t}'::regclass AS r UNION ALL SELECT '{g}'::regclass
           UNION ALL SELECT reltoastrelid::regclass FROM pg_class WHERE oid = '{t}'::regclass AND reltoastrelid <> 0) s",
        t = n.table,
        g = n.gin
    ))
    .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for e in std::fs::read_dir(index_dir).expect("read the index folder").flatten() {
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            if let Ok(mut f) = std::fs::File::open(e.path()) {
                use std::io::Read;
                while matches!(f.read(&mut buf), Ok(k) if k > 0) {}
            }
        }
    }
}

fn hybrid_sql(t: &str) -> String {
    format!("SELECT id FROM {t} WHERE body @@@ $1 ORDER BY hybrid.score(id) DESC LIMIT 10")
}

fn gin_sql(t: &str) -> String {
    format!("SELECT id FROM {t} WHERE tsv @@ to_tsquery('english', $1) ORDER BY ts_rank_cd(tsv, to_tsquery('english', $1)) DESC LIMIT 10")
}

/// One in-process top-k search: what the search scan does for `ORDER BY hybrid.score LIMIT 10`
/// (snapshot of the current generation, compile, top `10 + headroom`), without Postgres.
fn tantivy_top(index: &TextIndex, query: &str, window: usize) -> Vec<u64> {
    let snap = index.snapshot();
    let q = snap.compile(query, Some(0), DefaultOperator::Or).expect("compile");
    let q = conjunction(vec![q]);
    snap.top_ctids(&*q, window, 0).expect("top_ctids").into_iter().map(|(_, c)| c).collect()
}

fn parse_tid(s: &str) -> u64 {
    let (b, o) = s.trim_matches(|c| c == '(' || c == ')').split_once(',').expect("tid");
    (b.parse::<u64>().expect("block") << 16) | o.parse::<u64>().expect("offset")
}

/// Runs `one(client_no, i)` from `clients` threads for `duration`, each thread starting at a
/// different query; returns the latencies (qps: total throughput over the wall time).
fn load_test<S>(
    clients: usize,
    duration: Duration,
    queries: usize,
    setup: impl Fn(usize) -> S + Sync,
    one: impl Fn(&mut S, usize) + Sync,
) -> Summary {
    let barrier = Barrier::new(clients);
    let (samples, wall) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|t| {
                let (barrier, setup, one) = (&barrier, &setup, &one);
                s.spawn(move || {
                    let mut state = setup(t);
                    barrier.wait();
                    let start = Instant::now();
                    let mut lat = Vec::new();
                    let mut i = t * queries / clients.max(1);
                    while start.elapsed() < duration {
                        let q = Instant::now();
                        one(&mut state, i % queries);
                        lat.push(q.elapsed());
                        i += 1;
                    }
                    (lat, start.elapsed())
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut wall = Duration::ZERO;
        for h in handles {
            let (lat, w) = h.join().expect("client thread");
            all.extend(lat);
            wall = wall.max(w);
        }
        (all, wall)
    });
    let mut s = Summary::of(&samples);
    s.qps = samples.len() as f64 / wall.as_secs_f64();
    s
}

fn pgbench(
    cluster: &BenchCluster,
    table: &str,
    src: &str,
    rows: usize,
    clients: usize,
    seconds: u64,
) -> (Pgbench, String, String) {
    let script = format!(
        "\\set id random(1000000000, 999999999999)\n\\set src random(1, {rows})\n\
         INSERT INTO {table} (id, title, body) SELECT :id, title, body FROM {src} WHERE id = :src;\n"
    );
    let path = std::env::temp_dir().join(format!("pg_hybrid_bench_insert_{}_{table}.sql", std::process::id()));
    std::fs::write(&path, &script).expect("write the pgbench script");
    let threads = (clients / 4).max(1);
    let mut cmd = std::process::Command::new(format!("{PG_BIN}/pgbench"));
    cmd.args(["-n", "-c", &clients.to_string(), "-j", &threads.to_string(), "-T", &seconds.to_string(), "-f"])
        .arg(&path)
        .args(["-h", "127.0.0.1", "-p", &cluster.port().to_string(), "-U", "postgres", cluster::BENCH_DB]);
    let shown = format!("pgbench -n -c {clients} -j {threads} -T {seconds} -f insert.sql");
    let out = cmd.output().expect("run pgbench");
    let _ = std::fs::remove_file(&path);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pgbench failed:\n{text}");
    let field = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.trim().split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let r = Pgbench {
        tps: field("tps =").expect("tps in pgbench output"),
        transactions: field("number of transactions actually processed:").unwrap_or(0.0) as u64,
        failed: field("number of failed transactions:").unwrap_or(0.0) as u64,
        latency_avg_ms: field("latency average =").unwrap_or(0.0),
    };
    (r, shown, script.replace(&format!("{src} "), "<corpus table> ").replace(table, "<table>"))
}

/// Runs the full-text suite.
pub fn run(o: &Options) -> Report {
    let started = Instant::now();
    let docs = load_corpus(&o.data, &o.corpus);
    let fp = fingerprint(&corpus_file(&o.data, &o.corpus));
    eprintln!("bench: corpus {}: {} documents", o.corpus, docs.len());
    let mut cluster = BenchCluster::start(&o.dir, o.port, &[], o.fresh);
    let mut c = cluster.connect();
    let machine = cluster::machine(&mut c);
    let n = Names::of(&o.corpus);
    let build = prepare(&mut c, &n, &o.corpus, &docs, fp, o.fresh);
    let index_dir: String =
        c.query_one(&format!("SELECT directory FROM hybrid.index_info('{}')", n.search), &[]).unwrap().get(0);
    let index_dir = PathBuf::from(index_dir);
    prewarm(&mut c, &n, &index_dir);
    let headroom: i32 = c.query_one("SELECT current_setting('hybrid.topk_headroom')::int4", &[]).unwrap().get(0);
    let window = 10 + headroom.max(0) as usize;

    let classes = query_classes(&docs, o.per_class, 42);
    let hybrid_q = hybrid_sql(&n.table);
    let gin_q = gin_sql(&n.table);
    let hybrid_stmt = c.prepare(&hybrid_q).unwrap();
    let gin_stmt = c.prepare(&gin_q).unwrap();

    // One client, through SQL: query by query, each system runs it `repeats` times in a row
    // after one warm-up (so one system's run does not evict the other's data from the CPU
    // caches between two timings); the systems alternate query by query, so drift hits both.
    struct Single {
        hybrid: Vec<Duration>,
        gin: Vec<Duration>,
        mh: f64,
        mg: f64,
        sql_top: Vec<Vec<i64>>,
    }
    let timed_runs = |c: &mut Client, stmt: &postgres::Statement, text: &str, out: &mut Vec<Duration>| {
        c.query(stmt, &[&text]).unwrap();
        for _ in 0..o.repeats {
            let t = Instant::now();
            c.query(stmt, &[&text]).unwrap();
            out.push(t.elapsed());
        }
    };
    let mut singles = Vec::new();
    for (name, queries) in &classes {
        eprintln!("bench: {name}: one client, SQL");
        let (mut th, mut tg) = (Vec::new(), Vec::new());
        let (mut mh, mut mg) = (0i64, 0i64);
        let mut sql_top = Vec::new();
        for q in queries {
            mh += c
                .query_one(&format!("SELECT count(*) FROM {} WHERE body @@@ $1", n.table), &[&q.hybrid])
                .unwrap()
                .get::<_, i64>(0);
            mg += c
                .query_one(
                    &format!("SELECT count(*) FROM {} WHERE tsv @@ to_tsquery('english', $1)", n.table),
                    &[&q.tsquery],
                )
                .unwrap()
                .get::<_, i64>(0);
            sql_top.push(c.query(&hybrid_stmt, &[&q.hybrid]).unwrap().iter().map(|r| r.get::<_, i64>(0)).collect());
            timed_runs(&mut c, &hybrid_stmt, &q.hybrid, &mut th);
            timed_runs(&mut c, &gin_stmt, &q.tsquery, &mut tg);
        }
        let k = queries.len() as f64;
        singles.push(Single { hybrid: th, gin: tg, mh: mh as f64 / k, mg: mg as f64 / k, sql_top });
    }

    // The floor of any query through SQL on this connection: a prepared primary-key lookup of
    // one row, timed the same way (protocol, executor start-up and shutdown, one index probe).
    let floor_stmt = c.prepare(&format!("SELECT id FROM {} WHERE id = $1", n.table)).unwrap();
    let mut floor = Vec::new();
    let mut rng = Rng::new(7);
    for _ in 0..o.per_class * o.repeats {
        let id = 1 + rng.below(docs.len() as u64) as i64;
        c.query(&floor_stmt, &[&id]).unwrap();
        let t = Instant::now();
        c.query(&floor_stmt, &[&id]).unwrap();
        floor.push(t.elapsed());
    }
    let sql_floor = Summary::of(&floor);

    // One client, in process, while the cluster is idle: the same folder, read-only.
    let mut index = TextIndex::open(&index_dir).expect("open the index folder in process");
    let ids_of_tids = format!("SELECT ctid::text, id FROM {} WHERE ctid = ANY($1::text[]::tid[])", n.table);
    let mut tantivy_single = Vec::new();
    let mut same_top10 = Vec::new();
    for ((name, queries), single) in classes.iter().zip(&singles) {
        eprintln!("bench: {name}: one client, tantivy in process");
        let mut same = 0;
        for (q, sql) in queries.iter().zip(&single.sql_top) {
            let top: Vec<u64> = tantivy_top(&index, &q.hybrid, window).into_iter().take(10).collect();
            let tids: Vec<String> = top.iter().map(|t| format!("({},{})", t >> 16, t & 0xffff)).collect();
            let ids: HashMap<u64, i64> = c
                .query(&ids_of_tids, &[&tids])
                .unwrap()
                .iter()
                .map(|r| (parse_tid(r.get(0)), r.get::<_, i64>(1)))
                .collect();
            if top.iter().map(|t| ids.get(t).copied().unwrap_or(-1)).eq(sql.iter().copied()) {
                same += 1;
            }
        }
        let mut tt = Vec::new();
        for q in queries {
            std::hint::black_box(tantivy_top(&index, &q.hybrid, window));
            for _ in 0..o.repeats {
                let t = Instant::now();
                // As a backend does before each scan: one stat of the manifest.
                index.refresh().expect("refresh");
                std::hint::black_box(tantivy_top(&index, &q.hybrid, window));
                tt.push(t.elapsed());
            }
        }
        tantivy_single.push(tt);
        same_top10.push(same);
    }

    // N clients: each system alone for the same time.
    let mut multi = Vec::new();
    for (name, queries) in &classes {
        eprintln!("bench: {name}: {} clients", o.clients);
        let conn = cluster.conn_str(cluster::BENCH_DB);
        let sql_load = |sql: &str, texts: Vec<String>| {
            load_test(
                o.clients,
                o.duration,
                texts.len(),
                |_| {
                    let mut cl = Client::connect(&conn, NoTls).expect("connect");
                    let st = cl.prepare(sql).unwrap();
                    (cl, st)
                },
                |(cl, st), i| {
                    cl.query(&*st, &[&texts[i]]).unwrap();
                },
            )
        };
        let gin = sql_load(&gin_q, queries.iter().map(|q| q.tsquery.clone()).collect());
        let hybrid = sql_load(&hybrid_q, queries.iter().map(|q| q.hybrid.clone()).collect());
        let index = &index;
        let tantivy = load_test(
            o.clients,
            o.duration,
            queries.len(),
            |_| (),
            |_, i| {
                std::hint::black_box(tantivy_top(index, &queries[i].hybrid, window));
            },
        );
        multi.push(Trio { gin, hybrid, tantivy });
    }
    drop(index);

    let class_results: Vec<ClassResult> = classes
        .iter()
        .zip(singles)
        .zip(tantivy_single)
        .zip(multi)
        .zip(same_top10)
        .map(|(((((name, queries), s), tt), m), same)| ClassResult {
            class: name.to_string(),
            queries: queries.clone(),
            single: Trio { gin: Summary::of(&s.gin), hybrid: Summary::of(&s.hybrid), tantivy: Summary::of(&tt) },
            multi: m,
            matches_hybrid: s.mh,
            matches_gin: s.mg,
            same_top10: same,
        })
        .collect();

    // Bulk COPY into an empty table that already has its index; then INSERTs into them.
    eprintln!("bench: bulk COPY into indexed tables");
    let (tg, th) = (format!("{}_copy_gin", n.table), format!("{}_copy_hybrid", n.table));
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {tg}, {th};
         CREATE TABLE {tg} (id bigint PRIMARY KEY, title text, body text,
                            tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', coalesce(body, ''))) STORED);
         CREATE INDEX {tg}_idx ON {tg} USING gin (tsv);
         CREATE TABLE {th} (id bigint PRIMARY KEY, title text, body text);
         CREATE INDEX {th}_idx ON {th} USING hybrid (id, body) WITH (key_field = 'id');"
    ))
    .unwrap();
    let payload = copy_payload(&docs);
    c.batch_execute("CHECKPOINT").unwrap();
    let gin_s = copy_into(&mut c, &tg, &payload);
    c.batch_execute("CHECKPOINT").unwrap();
    let hybrid_s = copy_into(&mut c, &th, &payload);
    drop(payload);
    let segs = |c: &mut Client| -> i32 {
        c.query_one(&format!("SELECT segments FROM hybrid.index_info('{th}_idx')"), &[]).unwrap().get(0)
    };
    let copy = CopyResult {
        rows: docs.len(),
        gin_s,
        gin_rows_per_s: docs.len() as f64 / gin_s,
        hybrid_s,
        hybrid_rows_per_s: docs.len() as f64 / hybrid_s,
        hybrid_segments: segs(&mut c),
    };
    for sql in [format!("VACUUM ANALYZE {tg}"), format!("VACUUM ANALYZE {th}"), "CHECKPOINT".into()] {
        c.batch_execute(&sql).unwrap();
    }

    eprintln!("bench: {}-client INSERTs (pgbench, {} s each)", o.clients, o.pgbench_s);
    let (gin_pg, command, script) = pgbench(&cluster, &tg, &n.table, docs.len(), o.clients, o.pgbench_s);
    c.batch_execute("CHECKPOINT").unwrap();
    let (hybrid_pg, _, _) = pgbench(&cluster, &th, &n.table, docs.len(), o.clients, o.pgbench_s);
    let inserts = InsertResult { command, script, gin: gin_pg, hybrid: hybrid_pg, hybrid_segments_after: segs(&mut c) };
    // One client: the latency of a single-row commit, without waiting for other sessions.
    let short = (o.pgbench_s / 3).max(5);
    c.batch_execute("CHECKPOINT").unwrap();
    let (gin_1, command_1, _) = pgbench(&cluster, &tg, &n.table, docs.len(), 1, short);
    c.batch_execute("CHECKPOINT").unwrap();
    let (hybrid_1, _, _) = pgbench(&cluster, &th, &n.table, docs.len(), 1, short);
    let inserts_one_client = InsertResult {
        command: command_1,
        script: inserts.script.clone(),
        gin: gin_1,
        hybrid: hybrid_1,
        hybrid_segments_after: segs(&mut c),
    };
    c.batch_execute(&format!("DROP TABLE {tg}, {th}")).unwrap();
    drop(c);
    cluster.stop();

    let mut report = Report {
        suite: "fulltext".into(),
        date: cluster::today(),
        corpus: o.corpus.clone(),
        machine,
        clients: o.clients,
        repeats: o.repeats,
        duration_s: o.duration.as_secs_f64(),
        topk_headroom: headroom,
        build,
        classes: class_results,
        copy,
        inserts,
        inserts_one_client,
        sql_floor,
        targets: Vec::new(),
        total_s: started.elapsed().as_secs_f64(),
    };
    report.targets = targets(&report);
    report
}

fn targets(r: &Report) -> Vec<Target> {
    let mut t = Vec::new();
    let class = |name: &str| r.classes.iter().find(|c| c.class == name);
    for name in ["common term", "three-term OR"] {
        if let Some(c) = class(name) {
            let (g50, g95) =
                (c.single.gin.p50_ms / c.single.hybrid.p50_ms, c.single.gin.p95_ms / c.single.hybrid.p95_ms);
            t.push(Target {
                name: format!("top-10 {name} vs GIN"),
                goal: "≥ 20x faster, p50 and p95".into(),
                measured: format!("p50 {g50:.1}x, p95 {g95:.1}x"),
                holds: g50 >= 20.0 && g95 >= 20.0,
            });
        }
    }
    if let Some(c) = class("rare term") {
        let (h, g) = (&c.single.hybrid, &c.single.gin);
        t.push(Target {
            name: "rare term vs GIN".into(),
            goal: "no slower (p50 and p95)".into(),
            measured: format!("p50 {:.3} vs {:.3} ms, p95 {:.3} vs {:.3} ms", h.p50_ms, g.p50_ms, h.p95_ms, g.p95_ms),
            holds: h.p50_ms <= g.p50_ms && h.p95_ms <= g.p95_ms,
        });
    }
    let ratios: Vec<String> = r
        .classes
        .iter()
        .map(|c| format!("{} {:.2}x", c.class, c.single.hybrid.p50_ms / c.single.tantivy.p50_ms))
        .collect();
    let beyond_floor: Vec<String> = r
        .classes
        .iter()
        .map(|c| {
            format!(
                "{} {:.2}x",
                c.class,
                (c.single.hybrid.p50_ms - r.sql_floor.p50_ms).max(0.0) / c.single.tantivy.p50_ms
            )
        })
        .collect();
    t.push(Target {
        name: "SQL path vs tantivy in process".into(),
        goal: "≤ 1.5x latency (p50, one client, every class)".into(),
        measured: format!(
            "{}; without the {} ms any SQL query takes here (a primary-key lookup): {}",
            ratios.join(", "),
            ms(r.sql_floor.p50_ms),
            beyond_floor.join(", ")
        ),
        holds: r.classes.iter().all(|c| c.single.hybrid.p50_ms <= 1.5 * c.single.tantivy.p50_ms),
    });
    let b = &r.build;
    let gin_build = b.gin_tsvector_s + b.gin_index_s;
    t.push(Target {
        name: "CREATE INDEX vs tsvector + GIN".into(),
        goal: "≤ 0.5x the time".into(),
        measured: format!("{:.1} s vs {:.1} s = {:.2}x", b.hybrid_index_s, gin_build, b.hybrid_index_s / gin_build),
        holds: b.hybrid_index_s <= 0.5 * gin_build,
    });
    let cp = &r.copy;
    t.push(Target {
        name: "bulk COPY into an indexed table".into(),
        goal: "≥ the GIN table's rows/s".into(),
        measured: format!(
            "{:.0} vs {:.0} rows/s = {:.2}x",
            cp.hybrid_rows_per_s,
            cp.gin_rows_per_s,
            cp.hybrid_rows_per_s / cp.gin_rows_per_s
        ),
        holds: cp.hybrid_rows_per_s >= cp.gin_rows_per_s,
    });
    let i = &r.inserts;
    t.push(Target {
        name: format!("{}-client INSERT TPS", r.clients),
        goal: "≥ 0.5x the GIN table's".into(),
        measured: format!("{:.0} vs {:.0} TPS = {:.2}x", i.hybrid.tps, i.gin.tps, i.hybrid.tps / i.gin.tps),
        holds: i.hybrid.tps >= 0.5 * i.gin.tps,
    });
    t
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

fn mb(bytes: i64) -> f64 {
    bytes as f64 / 1e6
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn qps(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Prints a report as Markdown tables (pasted as is into README.md).
pub fn print(r: &Report) {
    let m = &r.machine;
    let b = &r.build;
    println!("\n### Full-text search: {} corpus, {} documents ({})\n", r.corpus, b.rows, r.date);
    println!(
        "Machine: {}, {} cores, {:.1} GB RAM, Linux {}; {}; pg_hybrid {} at {}.",
        m.cpu,
        m.cores,
        m.ram_gb,
        m.kernel,
        m.postgres.split(" on ").next().unwrap_or(&m.postgres),
        m.pg_hybrid,
        m.git_commit
    );
    println!("Settings: {}.", m.settings.join(", "));
    println!(
        "Top-10 queries; one client: {} queries per class x {} runs each; {} clients: {:.0} s per class and system \
         (tantivy: {} threads sharing the index). Times in ms; gain = GIN time / pg_hybrid time; \
         SQL/tantivy = pg_hybrid through SQL / tantivy in process.\n",
        r.classes.first().map_or(0, |c| c.queries.len()),
        r.repeats,
        r.clients,
        r.duration_s,
        r.clients
    );
    println!("| query class | clients | GIN p50 | GIN p95 | GIN QPS | pg_hybrid p50 | pg_hybrid p95 | pg_hybrid QPS | tantivy p50 | tantivy p95 | tantivy QPS | gain p50 | gain p95 | SQL/tantivy p50 |");
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for c in &r.classes {
        for (clients, t) in [(1, &c.single), (r.clients, &c.multi)] {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1}x | {:.1}x | {:.2}x |",
                c.class,
                clients,
                ms(t.gin.p50_ms),
                ms(t.gin.p95_ms),
                qps(t.gin.qps),
                ms(t.hybrid.p50_ms),
                ms(t.hybrid.p95_ms),
                qps(t.hybrid.qps),
                ms(t.tantivy.p50_ms),
                ms(t.tantivy.p95_ms),
                qps(t.tantivy.qps),
                t.gin.p50_ms / t.hybrid.p50_ms,
                t.gin.p95_ms / t.hybrid.p95_ms,
                t.hybrid.p50_ms / t.tantivy.p50_ms
            );
        }
    }
    println!("\nAverage matching rows per query (pg_hybrid / GIN; the two analyses differ a little), and queries whose top-10 through SQL is the in-process top-10:");
    println!(
        "{}.",
        r.classes
            .iter()
            .map(|c| format!(
                "{} {:.0} / {:.0}, {}/{}",
                c.class,
                c.matches_hybrid,
                c.matches_gin,
                c.same_top10,
                c.queries.len()
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let gin_build = b.gin_tsvector_s + b.gin_index_s;
    let built = if b.reused { format!(" (built {}, reused)", b.built_at) } else { String::new() };
    println!("\n| build and write{built} | GIN (tsvector column + GIN) | pg_hybrid | pg_hybrid / GIN |");
    println!("|---|--:|--:|--:|");
    println!(
        "| index build ({} rows) | {:.1} s (tsvector {:.1} s + GIN {:.1} s) | {:.1} s ({:.0} rows/s) | {:.2}x |",
        b.rows,
        gin_build,
        b.gin_tsvector_s,
        b.gin_index_s,
        b.hybrid_index_s,
        b.rows as f64 / b.hybrid_index_s,
        b.hybrid_index_s / gin_build
    );
    println!(
        "| index size | GIN {:.1} MB + tsvector column {:.1} MB | {:.1} MB ({} segment{}) | {:.2}x of GIN, {:.2}x of GIN + tsvector |",
        mb(b.gin_bytes),
        mb(b.tsvector_bytes),
        mb(b.hybrid_bytes),
        b.hybrid_segments,
        if b.hybrid_segments == 1 { "" } else { "s" },
        b.hybrid_bytes as f64 / b.gin_bytes as f64,
        b.hybrid_bytes as f64 / (b.gin_bytes + b.tsvector_bytes) as f64
    );
    let cp = &r.copy;
    println!(
        "| bulk COPY into an empty indexed table | {:.0} rows/s ({:.1} s) | {:.0} rows/s ({:.1} s, {} segments after) | {:.2}x |",
        cp.gin_rows_per_s,
        cp.gin_s,
        cp.hybrid_rows_per_s,
        cp.hybrid_s,
        cp.hybrid_segments,
        cp.hybrid_rows_per_s / cp.gin_rows_per_s
    );
    let i = &r.inserts;
    println!(
        "| {}-client single-row INSERT (`{}`) | {:.0} TPS ({:.1} ms avg, {} failed) | {:.0} TPS ({:.1} ms avg, {} failed; {} segments after) | {:.2}x |",
        r.clients,
        i.command,
        i.gin.tps,
        i.gin.latency_avg_ms,
        i.gin.failed,
        i.hybrid.tps,
        i.hybrid.latency_avg_ms,
        i.hybrid.failed,
        i.hybrid_segments_after,
        i.hybrid.tps / i.gin.tps
    );
    let i1 = &r.inserts_one_client;
    println!(
        "| 1-client single-row INSERT (`{}`) | {:.0} TPS ({:.2} ms avg) | {:.0} TPS ({:.2} ms avg) | {:.2}x |",
        i1.command,
        i1.gin.tps,
        i1.gin.latency_avg_ms,
        i1.hybrid.tps,
        i1.hybrid.latency_avg_ms,
        i1.hybrid.tps / i1.gin.tps
    );
    println!(
        "\nSQL floor (a prepared primary-key lookup of one row, one client): p50 {} ms, p95 {} ms.",
        ms(r.sql_floor.p50_ms),
        ms(r.sql_floor.p95_ms)
    );
    println!(
        "\nCOPY of the bare table (no index): {:.1} s; table with tsvector column: {:.1} MB.",
        b.copy_s,
        mb(b.table_bytes)
    );
    println!("\n| target | goal | measured | holds |");
    println!("|---|---|---|---|");
    for t in &r.targets {
        println!("| {} | {} | {} | {} |", t.name, t.goal, t.measured, if t.holds { "yes" } else { "**no**" });
    }
    println!("\nsuite time {:.0} s", r.total_s);
}
