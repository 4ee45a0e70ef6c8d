//! Recall of vector search through SQL on real vectors (GloVe 6B, 50 dimensions), against
//! ground truth computed here by brute force.
//!
//! The data comes from `scripts/fetch-data.sh DIR glove50` (DIR = `$PGH_DATA_DIR` or
//! `/var/tmp/pg_hybrid/data`, fetched if missing): base.fvecs (399k x 50), query.fvecs (1,000
//! held-out words) and groundtruth.ivecs (exact cosine top-100 over the full base). The tests use
//! a uniform sample of the base sized for CI (every 8th vector for cosine; see `vecutil::Glove`
//! for why not a prefix), so they compute the exact answers for that subset themselves (f64,
//! straight from the operators' definitions); the file's ground truth is only used to check that
//! computation.
//!
//! Recall@10 is measured by distance, as ann-benchmarks does: a returned row counts when its true
//! distance is within the 10th true distance (GloVe has duplicate vectors, so ties at the
//! cut-off are not misses). Besides recall, every answer must have the rows asked for, in
//! nondecreasing distance order (Postgres trusts the index's order: it does not sort again),
//! all passing the query's filter, with the distances SQL computes. Filtered searches: 10% and 1%
//! selective conditions the index evaluates (`lang = 'x'` on a raw field, `body @@@ 'word'`), and
//! conditions it cannot (`id % 7 = 0`), for which the scan goes on in rounds.
//!
//! Speed and memory (recall@10 against queries per second, build time, the memory of 8
//! backends searching one index) are measured by the benchmarks (`make bench`,
//! `benches/src/vectors.rs`), not here.

mod vecutil;

use std::collections::HashMap;
use std::time::Instant;

use pg_hybrid_tests::*;
use vecutil::*;

/// The cosine subset: every 8th base vector (49,875 rows; see `Glove` for why a sample, not a
/// prefix). Queries asked of every subset.
const STRIDE: usize = 8;
const N_QUERY: usize = 200;
const K: usize = 10;
const MIN_RECALL: f64 = 0.95;
/// Recall demanded when Postgres filters the rows of the kNN scan (a condition the index cannot
/// evaluate): the scan's first round is the `ef_search` (100) nearest rows found with a
/// candidate list of the same size, whose lower ranks are less accurate than its top 10, and
/// only ~1/7 of them pass `id % 7 = 0`. Measured ~0.93 on this subset.
const MIN_RECALL_POSTFILTER: f64 = 0.90;

/// `lang` of row `id`: ~10% 'de', ~1% 'fr', the rest 'en' (by a hash: the ids of a strided
/// subset share residues).
fn lang_of(id: i64) -> &'static str {
    match mix((id as u64).wrapping_mul(31).wrapping_add(7)) % 100 {
        0..=9 => "de",
        10 => "fr",
        _ => "en",
    }
}

/// Whether row `id`'s body has the word `tagten` (~10% of rows) / `tagone` (~1%), by another
/// hash, independent of `lang`.
fn has_tagten(id: i64) -> bool {
    mix(id as u64) % 10 == 0
}
fn has_tagone(id: i64) -> bool {
    mix(id as u64) % 100 == 1
}

fn body_of_item(id: i64) -> String {
    let mut b = format!("w{id} common");
    if has_tagten(id) {
        b.push_str(" tagten");
    }
    if has_tagone(id) {
        b.push_str(" tagone");
    }
    b
}

/// Loads `rows` into a new table `table` (items layout) and builds its index; returns the
/// seconds CREATE INDEX took.
fn load_and_index(c: &mut Client, table: &str, rows: &[(i64, Vec<f32>)], metric: Metric) -> f64 {
    c.batch_execute(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY, body text, lang text, embedding real[])"))
        .unwrap();
    copy_items(
        c,
        table,
        rows.iter().map(|(id, v)| Item { id: *id, body: body_of_item(*id), lang: lang_of(*id), embedding: Some(v) }),
    );
    c.batch_execute(&format!("VACUUM ANALYZE {table}")).unwrap();
    let t = Instant::now();
    create_items_index(c, table, 50, metric);
    let secs = t.elapsed().as_secs_f64();
    let info = vector_info(c, &format!("{table}_search"));
    assert_eq!(
        (info.dimensions, info.metric.as_str(), info.m, info.ef_construction),
        (50, metric.name(), 16, 64),
        "{table}: vector_info reports the options"
    );
    assert_eq!(info.vectors, rows.len() as i64, "{table}: every row's vector is indexed");
    assert_eq!((info.deleted_vectors, info.exact_segments), (0, 0), "{table}: a fresh build: {info:?}");
    assert!(info.graph_segments >= 1, "{table}: a fresh build of {} rows has a graph: {info:?}", rows.len());
    secs
}

/// Outcome of running every query through one SQL statement.
struct Run {
    mean_recall: f64,
    min_recall: f64,
    seconds: f64,
    /// Answers that broke a rule (row count, distance order, filter, distance value), described.
    problems: Vec<String>,
}

/// Runs `sql` (parameter $1: the query vector; columns id, distance) for every query; checks
/// that each answer has `K` rows (or all that match, if fewer), in distance order, all passing
/// `keep`, with the right distances; returns recall against brute force over the rows passing
/// `keep`.
fn run_queries(
    c: &mut Client,
    sql: &str,
    data: &Glove,
    by_id: &HashMap<i64, &[f32]>,
    metric: Metric,
    keep: &dyn Fn(i64) -> bool,
) -> Run {
    run_queries_k(c, sql, data, by_id, metric, keep, K)
}

/// [`run_queries`] for `LIMIT k`.
fn run_queries_k(
    c: &mut Client,
    sql: &str,
    data: &Glove,
    by_id: &HashMap<i64, &[f32]>,
    metric: Metric,
    keep: &dyn Fn(i64) -> bool,
    k: usize,
) -> Run {
    let stmt = c.prepare(sql).unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
    let matching = data.base.iter().filter(|(id, _)| keep(*id)).count();
    let mut sum = 0.0;
    let mut min: f64 = 1.0;
    let mut seconds = 0.0;
    let mut problems = Vec::new();
    for (i, q) in data.queries.iter().enumerate() {
        let t = Instant::now();
        let got = knn(c, &stmt, q);
        seconds += t.elapsed().as_secs_f64();
        let what = format!("`{sql}` query {i}");
        if got.len() != k.min(matching) {
            problems.push(format!("{what}: {} rows, expected {}", got.len(), k.min(matching)));
        }
        if let Some(w) = got.windows(2).find(|w| w[0].1 > w[1].1 + eps(w[1].1)) {
            problems.push(format!(
                "{what}: rows out of distance order: {:?} before {:?}; whole answer {got:?}",
                w[0], w[1]
            ));
        }
        for (id, d) in &got {
            if !keep(*id) {
                problems.push(format!("{what}: row {id} does not pass the filter"));
            }
            let true_d = metric.dist(q, by_id[id]);
            if (d - true_d).abs() > eps(true_d) {
                problems.push(format!("{what}: row {id}: SQL distance {d}, expected {true_d}"));
            }
        }
        let truth = brute_force(&data.base, q, k, metric, keep);
        let ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
        let r = recall(&ids, &truth, q, by_id, metric);
        sum += r;
        min = min.min(r);
    }
    Run { mean_recall: sum / data.queries.len() as f64, min_recall: min, seconds, problems }
}

/// Adds `run`'s problems and a recall below `min_recall` to `failures`.
fn judge(failures: &mut Vec<String>, label: &str, run: &Run, min_recall: f64) {
    if run.mean_recall < min_recall {
        failures.push(format!("{label}: recall@10 {:.4} < {min_recall}", run.mean_recall));
    }
    if !run.problems.is_empty() {
        failures.push(format!(
            "{label}: {} problems in {N_QUERY} queries, e.g.\n  {}",
            run.problems.len(),
            run.problems.iter().take(3).cloned().collect::<Vec<_>>().join("\n  ")
        ));
    }
}

/// Panics listing every failure.
fn assert_no_failures(failures: &[String]) {
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Our brute force agrees with the data set's own ground truth (exact cosine top-100 over the
/// full base), so the recall measured below measures the index, not the oracle.
fn check_oracle_against_groundtruth() {
    let dir = glove_dir();
    let base: Vec<(i64, Vec<f32>)> =
        read_fvecs(&dir.join("base.fvecs"), usize::MAX).into_iter().enumerate().map(|(i, v)| (i as i64, v)).collect();
    assert!(base.len() > 390_000, "base.fvecs has ~399k vectors, found {}", base.len());
    let queries = read_fvecs(&dir.join("query.fvecs"), 3);
    let gt = read_ivecs(&dir.join("groundtruth.ivecs"), 3);
    let by_id: HashMap<i64, &[f32]> = base.iter().map(|(id, v)| (*id, v.as_slice())).collect();
    for (q, g) in queries.iter().zip(&gt) {
        let truth = brute_force(&base, q, K, Metric::Cosine, |_| true);
        let theirs: Vec<i64> = g.iter().take(K).map(|x| i64::from(*x)).collect();
        let r = recall(&theirs, &truth, q, &by_id, Metric::Cosine);
        assert!(r >= 0.999, "brute force disagrees with groundtruth.ivecs: {truth:?} vs {theirs:?}");
    }
}

#[test]
fn cosine_recall_and_filtered_knn_on_glove() {
    check_oracle_against_groundtruth();
    let data = Glove::load(STRIDE, N_QUERY);
    let by_id = data.by_id();
    let n_base = data.base.len();
    let cluster = TestCluster::new("vec_recall_cosine");
    let mut c = cluster.connect();
    let build = load_and_index(&mut c, "items", &data.base, Metric::Cosine);
    eprintln!("cosine: CREATE INDEX on {n_base} x 50: {build:.1} s");

    let q0 = vec_literal(&data.queries[0]);
    let plan = plan_of(&mut c, &format!("SELECT id FROM items ORDER BY embedding <=> '{q0}' LIMIT 10"));
    assert!(
        plan.contains("Index Scan using items_search") && plan.contains("Order By: (embedding <=> "),
        "kNN should be an ordered scan of items_search:\n{plan}"
    );

    let mut failures = Vec::new();
    let all = |_: i64| true;
    let unfiltered = run_queries(
        &mut c,
        "SELECT id, embedding <=> $1 FROM items ORDER BY embedding <=> $1 LIMIT 10",
        &data,
        &by_id,
        Metric::Cosine,
        &all,
    );
    eprintln!(
        "cosine, no filter: recall@10 {:.4} (min {:.2}), {:.0} queries/s",
        unfiltered.mean_recall,
        unfiltered.min_recall,
        N_QUERY as f64 / unfiltered.seconds
    );
    judge(&mut failures, "cosine, no filter", &unfiltered, MIN_RECALL);

    // Deeper than ef_search (100): the scan needs a second round, whose rows must still come
    // after the first round's in distance order.
    let deep = run_queries_k(
        &mut c,
        "SELECT id, embedding <=> $1 FROM items ORDER BY embedding <=> $1 LIMIT 250",
        &data,
        &by_id,
        Metric::Cosine,
        &all,
        250,
    );
    eprintln!(
        "cosine, no filter, LIMIT 250: recall@250 {:.4} (min {:.2}), {} queries broke a rule",
        deep.mean_recall,
        deep.min_recall,
        deep.problems.len()
    );
    judge(&mut failures, "cosine, no filter, LIMIT 250", &deep, MIN_RECALL_POSTFILTER);

    // Filters the index evaluates inside the search (Index Cond): 10% and 1% of the rows.
    // (filter, what EXPLAIN must show, the rows it keeps, expected selectivity in %). The plan
    // must be the kNN scan with the filter inside, except for the last case, where the planner
    // may prefer (rightly, for ~500 rows estimated at ~50) a bitmap scan of the index and a
    // sort: either way the index evaluates both conditions.
    type Case<'a> = (&'a str, &'a str, Box<dyn Fn(i64) -> bool>, f64);
    let cases: Vec<Case> = vec![
        ("lang = 'de'", "Index Cond: (lang = 'de'::text)", Box::new(|id| lang_of(id) == "de"), 10.0),
        ("lang = 'fr'", "Index Cond: (lang = 'fr'::text)", Box::new(|id| lang_of(id) == "fr"), 1.0),
        ("body @@@ 'tagten'", "Index Cond: (body @@@ 'tagten'::text)", Box::new(has_tagten), 10.0),
        ("body @@@ 'tagone'", "Index Cond: (body @@@ 'tagone'::text)", Box::new(has_tagone), 1.0),
        (
            "lang = 'de' AND body @@@ 'tagten'",
            "Index Cond: ((body @@@ 'tagten'::text) AND (lang = 'de'::text))",
            Box::new(|id| lang_of(id) == "de" && has_tagten(id)),
            1.0,
        ),
    ];
    for (filter, cond, keep, pct) in &cases {
        let n = data.base.iter().filter(|(id, _)| keep(*id)).count();
        let got_pct = 100.0 * n as f64 / n_base as f64;
        assert!(
            (got_pct - pct).abs() <= pct * 0.3,
            "test precondition: `{filter}` keeps {got_pct:.2}% of rows, meant {pct}%"
        );
        assert_eq!(
            count(&mut c, &format!("SELECT count(*) FROM items WHERE {filter}")),
            n as i64,
            "`{filter}`: the table and the test agree on the matching rows"
        );
        let sql = format!("SELECT id, embedding <=> $1 FROM items WHERE {filter} ORDER BY embedding <=> $1 LIMIT 10");
        let plan = plan_of(&mut c, &sql.replace("$1", &format!("'{q0}'")));
        let knn_scan = plan.contains("Index Scan using items_search") && plan.contains("Order By");
        assert!(
            plan.contains(cond) && (knn_scan || filter.contains(" AND ")),
            "`{filter}` should be evaluated inside the kNN scan ({cond}):\n{plan}"
        );
        let run = run_queries(&mut c, &sql, &data, &by_id, Metric::Cosine, keep);
        eprintln!(
            "cosine, {filter} ({n} rows, {:.1}%): recall@10 {:.4} (min {:.2})",
            100.0 * n as f64 / n_base as f64,
            run.mean_recall,
            run.min_recall
        );
        judge(&mut failures, &format!("cosine, {filter}"), &run, MIN_RECALL);
    }

    // Filters the index cannot evaluate: Postgres filters the rows the scan returns, and the
    // scan goes on in larger rounds until 10 pass. The rows still come in distance order.
    // (Sequential and bitmap scans off: for the last filter the planner rightly prefers to
    // compute the distance of the ~1,650 rows that pass both conditions and sort them, which is
    // exact but not what is tested here.)
    c.batch_execute("SET enable_bitmapscan = off; SET enable_seqscan = off").unwrap();
    for (filter, keep) in [
        ("id % 7 = 0", Box::new(|id: i64| id % 7 == 0) as Box<dyn Fn(i64) -> bool>),
        ("id % 1009 = 0", Box::new(|id: i64| id % 1009 == 0)),
        ("lang = 'de' AND id % 3 = 0", Box::new(|id: i64| lang_of(id) == "de" && id % 3 == 0)),
    ] {
        let sql = format!("SELECT id, embedding <=> $1 FROM items WHERE {filter} ORDER BY embedding <=> $1 LIMIT 10");
        let plan = plan_of(&mut c, &sql.replace("$1", &format!("'{q0}'")));
        assert!(
            plan.contains("Index Scan using items_search") && plan.contains("Filter: ") && plan.contains("Order By"),
            "`{filter}`: expected the kNN scan with a Filter above it:\n{plan}"
        );
        let run = run_queries(&mut c, &sql, &data, &by_id, Metric::Cosine, &keep);
        eprintln!(
            "cosine, {filter} (not in the index): recall@10 {:.4} (min {:.2}), {} queries broke a rule",
            run.mean_recall,
            run.min_recall,
            run.problems.len()
        );
        judge(&mut failures, &format!("cosine, {filter} (not in the index)"), &run, MIN_RECALL_POSTFILTER);
    }
    cluster.assert_no_backend_crash();
    assert_no_failures(&failures);
}

#[test]
fn l2_and_inner_product_recall_on_glove() {
    let cluster = TestCluster::new("vec_recall_l2_ip");
    let mut c = cluster.connect();
    let mut failures = Vec::new();
    // Smaller subsets than for cosine (time). L2 on GloVe's unnormalised vectors is the hardest
    // of the three: hnswlib with the same parameters reaches recall@10 0.974 at ef 100 on every
    // 40th row but only 0.945 on every 8th; inner product 0.98 on every 20th.
    for (metric, stride) in [(Metric::L2, 40), (Metric::Ip, 20)] {
        let data = Glove::load(stride, N_QUERY);
        let by_id = data.by_id();
        let n = data.base.len();
        let table = format!("items_{}", metric.name());
        let build = load_and_index(&mut c, &table, &data.base, metric);
        let op = metric.op();
        let sql = format!("SELECT id, embedding {op} $1 FROM {table} ORDER BY embedding {op} $1 LIMIT 10");
        let plan = plan_of(&mut c, &sql.replace("$1", &format!("'{}'", vec_literal(&data.queries[0]))));
        assert!(
            plan.contains(&format!("Index Scan using {table}_search"))
                && plan.contains(&format!("Order By: (embedding {op} ")),
            "{op} should be an ordered scan of {table}_search:\n{plan}"
        );
        let run = run_queries(&mut c, &sql, &data, &by_id, metric, &|_| true);
        eprintln!(
            "{}: CREATE INDEX on {n} x 50 {build:.1} s; recall@10 {:.4} (min {:.2})",
            metric.name(),
            run.mean_recall,
            run.min_recall
        );
        judge(&mut failures, metric.name(), &run, MIN_RECALL);

        // The other operators are not what the index is built for: the planner must not use
        // it for them (the answers would be ordered by the wrong distance).
        let other = if metric == Metric::L2 { "<=>" } else { "<->" };
        let q = data.queries[0].clone();
        let plan = plan_of(
            &mut c,
            &format!("SELECT id FROM {table} ORDER BY embedding {other} '{}' LIMIT 10", vec_literal(&q)),
        );
        assert!(
            !plan.contains("Order By"),
            "{table}: {other} must not be ordered by a {} index:\n{plan}",
            metric.name()
        );
    }
    cluster.assert_no_backend_crash();
    assert_no_failures(&failures);
}
