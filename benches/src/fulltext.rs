//! Full-text workloads: pg_hybrid (`@@@` + `hybrid.score` top-10) against Postgres' own
//! full-text search (a stored `tsvector` column + GIN, `ORDER BY ts_rank_cd(...) DESC LIMIT 10`)
//! on the same table, the same rows and the same words.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use pg_hybrid_tests::{Client, Rng, TestCluster};
use serde::Serialize;

use crate::stats::Summary;

/// One document of a corpus.
pub struct Doc {
    pub id: i64,
    pub title: String,
    pub body: String,
}

/// Reads `DIR/<corpus>/docs.jsonl`, fetching it with the project's script if missing.
pub fn load_corpus(data_dir: &Path, corpus: &str) -> Vec<Doc> {
    let file = data_dir.join(corpus).join("docs.jsonl");
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
            }
        })
        .collect()
}

/// English stop words of Postgres' `english` configuration: a tsquery of only these is empty,
/// so the query generator avoids them.
const STOP: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "did", "do", "does",
    "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he",
    "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its",
    "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once",
    "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some",
    "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they",
    "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "you", "your", "yours", "yourself",
    "yourselves", "also", "may", "one", "use", "used", "using",
];

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_lowercase()) && !STOP.contains(w))
        .map(str::to_string)
        .collect()
}

/// A query in both languages.
#[derive(Debug, Clone, Serialize)]
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
    let common: Vec<String> = by_df.iter().filter(|(_, c)| f64::from(*c) > n * 0.02).take(60).map(|(w, _)| (*w).clone()).collect();
    let rare: Vec<String> = by_df.iter().filter(|(_, c)| (2..=5).contains(c)).map(|(w, _)| (*w).clone()).collect();
    let medium: Vec<String> =
        by_df.iter().filter(|(_, c)| f64::from(*c) > n * 0.001 && f64::from(*c) < n * 0.02).map(|(w, _)| (*w).clone()).collect();
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
        let ws: Vec<String> = words(&d.body).into_iter().filter(|w| medium.contains(w)).collect();
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
    let mut long = Vec::new();
    while long.len() < per_class {
        let d = &docs[rng.below(docs.len() as u64) as usize];
        let mut ws = words(&d.title.to_lowercase());
        ws.dedup();
        if ws.len() >= 4 {
            long.push(Query { hybrid: ws.join(" OR "), tsquery: ws.join(" | ") });
        }
    }
    classes.push(("long OR (synopsis)", long));
    classes
}

/// Measured results of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassResult {
    pub class: String,
    pub queries: usize,
    pub hybrid: Summary,
    pub gin: Summary,
    /// Average number of matching rows (hybrid, GIN): the two analyses differ a little.
    pub matches_hybrid: f64,
    pub matches_gin: f64,
}

/// Build measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Build {
    pub rows: usize,
    pub copy_s: f64,
    pub gin_tsvector_s: f64,
    pub gin_index_s: f64,
    pub gin_bytes: i64,
    pub hybrid_index_s: f64,
    pub hybrid_bytes: i64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub corpus: String,
    pub build: Build,
    pub classes: Vec<ClassResult>,
}

const HYBRID_TOP10: &str = "SELECT id FROM docs WHERE body @@@ $1 ORDER BY hybrid.score(id) DESC LIMIT 10";
const GIN_TOP10: &str = "SELECT id FROM docs WHERE tsv @@ to_tsquery('english', $1) \
                         ORDER BY ts_rank_cd(tsv, to_tsquery('english', $1)) DESC LIMIT 10";

pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64())
}

pub fn load(c: &mut Client, docs: &[Doc]) -> f64 {
    c.batch_execute("CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text)").unwrap();
    let ((), secs) = timed(|| {
        let mut w = c.copy_in("COPY docs (id, title, body) FROM STDIN").unwrap();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r");
        for d in docs {
            writeln!(w, "{}\t{}\t{}", d.id, esc(&d.title), esc(&d.body)).unwrap();
        }
        w.finish().unwrap();
    });
    c.batch_execute("VACUUM ANALYZE docs").unwrap();
    secs
}

/// Runs the full-text comparison on `docs`.
pub fn run(corpus: &str, docs: &[Doc], per_class: usize, repeats: usize) -> Report {
    let cluster = TestCluster::with_settings(
        "bench",
        &[
            "shared_buffers = 2GB",
            "maintenance_work_mem = 1GB",
            "work_mem = 64MB",
            "max_wal_size = 8GB",
            "checkpoint_timeout = 30min",
            "statement_timeout = 0",
            "jit = off",
            "max_parallel_maintenance_workers = 2",
        ],
    );
    let mut c = cluster.connect();
    let copy_s = load(&mut c, docs);
    // The anchor: what Postgres users have today.
    let (_, gin_tsvector_s) = timed(|| {
        c.batch_execute("ALTER TABLE docs ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', coalesce(body, ''))) STORED")
            .unwrap()
    });
    let (_, gin_index_s) = timed(|| c.batch_execute("CREATE INDEX docs_gin ON docs USING gin (tsv)").unwrap());
    let (_, hybrid_index_s) = timed(|| {
        c.batch_execute("CREATE INDEX docs_search ON docs USING hybrid (id, body) WITH (key_field = 'id')").unwrap()
    });
    c.batch_execute("VACUUM ANALYZE docs").unwrap();
    let gin_bytes: i64 = c.query_one("SELECT pg_relation_size('docs_gin')", &[]).unwrap().get(0);
    let hybrid_bytes: i64 = c.query_one("SELECT bytes FROM hybrid.index_info('docs_search')", &[]).unwrap().get(0);
    let build = Build { rows: docs.len(), copy_s, gin_tsvector_s, gin_index_s, gin_bytes, hybrid_index_s, hybrid_bytes };

    let hybrid_stmt = c.prepare(HYBRID_TOP10).unwrap();
    let gin_stmt = c.prepare(GIN_TOP10).unwrap();
    let mut classes = Vec::new();
    for (name, queries) in query_classes(docs, per_class, 42) {
        let (mut th, mut tg) = (Vec::new(), Vec::new());
        let (mut mh, mut mg) = (0usize, 0usize);
        for q in &queries {
            mh += c.query_one("SELECT count(*) FROM docs WHERE body @@@ $1", &[&q.hybrid]).unwrap().get::<_, i64>(0) as usize;
            mg += c
                .query_one("SELECT count(*) FROM docs WHERE tsv @@ to_tsquery('english', $1)", &[&q.tsquery])
                .unwrap()
                .get::<_, i64>(0) as usize;
            // One warm-up each, then alternate the two systems so drift hits both alike.
            c.query(&hybrid_stmt, &[&q.hybrid]).unwrap();
            c.query(&gin_stmt, &[&q.tsquery]).unwrap();
            for _ in 0..repeats {
                let t = Instant::now();
                c.query(&hybrid_stmt, &[&q.hybrid]).unwrap();
                th.push(t.elapsed());
                let t = Instant::now();
                c.query(&gin_stmt, &[&q.tsquery]).unwrap();
                tg.push(t.elapsed());
            }
        }
        classes.push(ClassResult {
            class: name.to_string(),
            queries: queries.len(),
            hybrid: Summary::of(&th),
            gin: Summary::of(&tg),
            matches_hybrid: mh as f64 / queries.len() as f64,
            matches_gin: mg as f64 / queries.len() as f64,
        });
    }
    Report { corpus: corpus.to_string(), build, classes }
}

/// Prints a report as a table.
pub fn print(r: &Report) {
    let b = &r.build;
    println!("corpus {}: {} rows", r.corpus, b.rows);
    println!(
        "build: COPY {:.1}s | GIN: tsvector {:.1}s + index {:.1}s = {:.1}s, {} MB | hybrid: CREATE INDEX {:.1}s ({:.0} rows/s), {} MB | hybrid/GIN time {:.2}x",
        b.copy_s,
        b.gin_tsvector_s,
        b.gin_index_s,
        b.gin_tsvector_s + b.gin_index_s,
        b.gin_bytes >> 20,
        b.hybrid_index_s,
        b.rows as f64 / b.hybrid_index_s,
        b.hybrid_bytes >> 20,
        b.hybrid_index_s / (b.gin_tsvector_s + b.gin_index_s)
    );
    println!(
        "{:<20} {:>7} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10}",
        "top-10 query", "queries", "hyb p50ms", "hyb p95ms", "GIN p50ms", "GIN p95ms", "p50 gain", "p95 gain", "hyb QPS", "GIN QPS"
    );
    for c in &r.classes {
        println!(
            "{:<20} {:>7} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>8.1}x {:>8.1}x {:>10.0} {:>10.0}",
            c.class,
            c.queries,
            c.hybrid.p50_ms,
            c.hybrid.p95_ms,
            c.gin.p50_ms,
            c.gin.p95_ms,
            c.gin.p50_ms / c.hybrid.p50_ms,
            c.gin.p95_ms / c.hybrid.p95_ms,
            c.hybrid.qps,
            c.gin.qps
        );
    }
    let _ = Duration::ZERO;
}
