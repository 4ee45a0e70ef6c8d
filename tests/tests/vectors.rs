//! Vector columns in a hybrid index, through SQL: a fresh build agrees with a row-by-row one,
//! transactions (invariants 1, 2 and 4 for kNN), `kill -9` (invariant 3), rebuilds and drops
//! (invariant 5), bad input (invariant 7), and `hybrid.search` fusion with privileges and
//! row-level security.
//!
//! The answers are checked against distances computed in this process (`vecutil`), never by
//! the extension. Tables below ~2,400 vectors per segment are searched exactly by the index
//! (a segment under 1,024 vectors has no graph; over it, the walk is predicted to cost
//! `ef_search * m` = 2,400 distances at the default ef_search of 150, more than scanning), so most tests here can demand the
//! exact answer. A row whose vector is NULL has no distance and comes after every row that has
//! one (ORDER BY puts NULLs last). The recall of graph walks is measured in `vector_recall.rs` and in
//! `fresh_build_and_row_by_row_inserts_agree`.

mod vecutil;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pg_hybrid_tests::*;
use vecutil::*;

/// Dimensions of the synthetic vectors.
const DIM: usize = 50;

/// The synthetic vector of row `id` (version `v`: an UPDATE gives a row another vector).
fn vec_of(id: i64, v: u64) -> Vec<f32> {
    gaussian((id as u64).wrapping_mul(7919) ^ (v << 40), DIM)
}

/// A query vector no row has.
fn query_vec(n: u64) -> Vec<f32> {
    gaussian(0xFEED_0000 + n, DIM)
}

/// Creates `items` (the brief's layout) with its cosine index `items_search`.
fn create_items_table(c: &mut Client) {
    create_items(c, "items", DIM, Metric::Cosine);
}

/// Inserts rows `ids` (body: a few words, `common` and the row's token; lang 'en'; vector
/// `vec_of(id, 0)`) with COPY.
fn copy_rows(c: &mut Client, table: &str, ids: impl IntoIterator<Item = i64>) {
    let vs: Vec<(i64, Vec<f32>)> = ids.into_iter().map(|id| (id, vec_of(id, 0))).collect();
    copy_items(
        c,
        table,
        vs.iter().map(|(id, v)| Item { id: *id, body: body_of(*id, 0), lang: "en", embedding: Some(v.as_slice()) }),
    );
}

/// The table's rows with a vector, read back from the table itself (id -> vector).
fn table_vectors(c: &mut Client, table: &str) -> Vec<(i64, Vec<f32>)> {
    c.query(&format!("SELECT id, embedding FROM {table} WHERE embedding IS NOT NULL ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<f32>>(1)))
        .collect()
}

fn knn_stmt(c: &mut Client, table: &str, limit: usize) -> postgres::Statement {
    c.prepare(&format!("SELECT id, embedding <=> $1 FROM {table} ORDER BY embedding <=> $1 LIMIT {limit}")).unwrap()
}

/// The first `k` rows of `table` nearest to `q` through the index.
fn nearest(c: &mut Client, table: &str, q: &[f32], k: usize) -> Vec<(i64, f64)> {
    let stmt = knn_stmt(c, table, k);
    knn(c, &stmt, q)
}

fn ids_of(rows: &[(i64, f64)]) -> Vec<i64> {
    rows.iter().map(|(id, _)| *id).collect()
}

fn ids_of_opt(rows: &[(i64, Option<f64>)]) -> Vec<i64> {
    rows.iter().map(|(id, _)| *id).collect()
}

/// Panics unless the kNN of `q` through the index is exactly the brute-force answer over the
/// rows the table shows this session (read back from the table).
fn assert_knn_exact(c: &mut Client, table: &str, q: &[f32], k: usize, what: &str) {
    let rows = table_vectors(c, table);
    let truth = brute_force(&rows, q, k, Metric::Cosine, |_| true);
    let got = nearest(c, table, q, k);
    assert_exact(&got, &truth, what);
}

/// Panics unless row `id` is the first hit of a kNN on `v`, at distance ~0.
fn assert_first_hit(c: &mut Client, stmt: &postgres::Statement, id: i64, v: &[f32], what: &str) {
    let got = knn(c, stmt, v);
    assert!(
        got.first().is_some_and(|(first, d)| *first == id && d.abs() < 1e-6),
        "{what}: row {id} should be the first hit of a search for its own vector, got {got:?}"
    );
}

fn assert_index_plan(c: &mut Client, table: &str) {
    let q = vec_literal(&query_vec(0));
    let plan = plan_of(c, &format!("SELECT id FROM {table} ORDER BY embedding <=> '{q}' LIMIT 10"));
    assert!(
        plan.contains(&format!("Index Scan using {table}_search")) && plan.contains("Order By"),
        "expected a kNN scan of {table}_search:\n{plan}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. A fresh build and row-by-row inserts agree
// ---------------------------------------------------------------------------------------------

/// The same GloVe vectors, (A) loaded and then indexed by CREATE INDEX, (B) inserted into an
/// indexed table in many small transactions, then merged by VACUUM (and `hybrid.force_merge`).
///
/// What "identical" means for HNSW: graphs are built by parallel insertion (hnsw_rs), and B's
/// graph comes from merges of other segments, so two indexes of the same rows have different
/// graphs and approximate answers may differ slightly; both must reach the recall target. When
/// the search is exact — every segment too small for a graph, or `hybrid.ef_search` so high that
/// the index scans every vector instead of walking — the answers must agree exactly: the same
/// rows at the same distances, rank by rank (rows tied at the 10th distance may be exchanged),
/// and equal to brute force.
#[test]
fn fresh_build_and_row_by_row_inserts_agree() {
    // Every 80th GloVe vector: 4,988 rows (see vecutil::Glove for why a sample, not a prefix).
    let data = Glove::load(80, 100);
    let by_id = data.by_id();
    let n = data.base.len() as i64;
    let cluster = TestCluster::new("vec_build_vs_rows");
    let mut c = cluster.connect();
    force_index(&mut c);
    let item = |(id, v): &(i64, Vec<f32>)| (*id, v.clone());
    let rows: Vec<(i64, Vec<f32>)> = data.base.iter().map(item).collect();

    // A: COPY, then CREATE INDEX.
    c.batch_execute("CREATE TABLE fresh (id bigint PRIMARY KEY, body text, lang text, embedding real[])").unwrap();
    copy_items(
        &mut c,
        "fresh",
        rows.iter().map(|(id, v)| Item { id: *id, body: format!("w{id}"), lang: "en", embedding: Some(v) }),
    );
    create_items_index(&mut c, "fresh", 50, Metric::Cosine);
    let a = vector_info(&mut c, "fresh_search");
    assert_eq!((a.vectors, a.deleted_vectors, a.exact_segments), (n, 0, 0), "fresh build: {a:?}");
    assert!(a.graph_segments >= 1, "fresh build of {n} rows has a graph: {a:?}");

    // B: CREATE INDEX, then 25 rows per transaction.
    create_items(&mut c, "rowwise", 50, Metric::Cosine);
    let insert = c.prepare("INSERT INTO rowwise (id, body, lang, embedding) VALUES ($1, $2, 'en', $3)").unwrap();
    for chunk in rows.chunks(25) {
        let mut t = c.transaction().unwrap();
        for (id, v) in chunk {
            t.execute(&insert, &[id, &format!("w{id}"), v]).unwrap();
        }
        t.commit().unwrap();
    }
    let before = vector_info(&mut c, "rowwise_search");
    assert_eq!(before.vectors, n, "row by row: {before:?}");
    c.batch_execute("VACUUM rowwise").unwrap();
    let after_vacuum = vector_info(&mut c, "rowwise_search");
    eprintln!("row by row: {before:?}\n  after VACUUM: {after_vacuum:?}");
    assert_eq!((after_vacuum.vectors, after_vacuum.deleted_vectors), (n, 0));
    // Merges at commit (and VACUUM's) have turned the small segments into graph segments.
    assert!(after_vacuum.graph_segments >= 1, "row by row, after VACUUM: no graph segment: {after_vacuum:?}");
    assert_verify_ok(&mut c, "rowwise_search");

    let recall_of = |c: &mut Client, table: &str| -> f64 {
        let stmt = knn_stmt(c, table, 10);
        let mut sum = 0.0;
        for q in &data.queries {
            let got = knn(c, &stmt, q);
            assert_ordered(&got, table);
            let truth = brute_force(&data.base, q, 10, Metric::Cosine, |_| true);
            sum += recall(&ids_of(&got), &truth, q, &by_id, Metric::Cosine);
        }
        sum / data.queries.len() as f64
    };
    let exact_agree = |c: &mut Client, what: &str| {
        c.batch_execute("SET hybrid.ef_search = 10000").unwrap();
        let (fs, rs) = (knn_stmt(c, "fresh", 10), knn_stmt(c, "rowwise", 10));
        for (i, q) in data.queries.iter().enumerate() {
            let truth = brute_force(&data.base, q, 10, Metric::Cosine, |_| true);
            let f = knn(c, &fs, q);
            let r = knn(c, &rs, q);
            assert_exact(&f, &truth, &format!("{what}: fresh build, exact search, query {i}"));
            assert_exact(&r, &truth, &format!("{what}: row by row, exact search, query {i}"));
            assert_exact(&r, &f.iter().map(|(id, d)| (*d, *id)).collect::<Vec<_>>(), &format!("{what}: query {i}"));
        }
        c.batch_execute("RESET hybrid.ef_search").unwrap();
    };

    let (ra, rb) = (recall_of(&mut c, "fresh"), recall_of(&mut c, "rowwise"));
    eprintln!("recall@10 at the default ef_search: fresh build {ra:.4}, row by row + VACUUM {rb:.4}");
    assert!(ra >= 0.95 && rb >= 0.95, "recall@10: fresh build {ra:.4}, row by row + VACUUM {rb:.4} (want >= 0.95)");
    exact_agree(&mut c, "after VACUUM");

    // Merged into one segment: one graph, same answers.
    c.query_one("SELECT hybrid.force_merge('rowwise_search')", &[]).unwrap();
    let merged = vector_info(&mut c, "rowwise_search");
    assert_eq!((merged.vectors, merged.deleted_vectors, merged.graph_segments, merged.exact_segments), (n, 0, 1, 0));
    let rm = recall_of(&mut c, "rowwise");
    eprintln!("recall@10 after force_merge: {rm:.4}");
    assert!(rm >= 0.95, "recall@10 after force_merge {rm:.4}");
    exact_agree(&mut c, "after force_merge");

    // Below 1,024 rows there is no graph at all: both ways give exactly the brute-force answer
    // at default settings.
    c.batch_execute(
        "CREATE TABLE small_fresh AS SELECT * FROM fresh WHERE id <= 80 * 1000;
         CREATE TABLE small_rows (LIKE small_fresh);",
    )
    .unwrap();
    create_items_index(&mut c, "small_fresh", 50, Metric::Cosine);
    create_items_index(&mut c, "small_rows", 50, Metric::Cosine);
    let small_ids: Vec<i64> = id_set(&mut c, "SELECT id FROM small_fresh").into_iter().collect();
    assert!((900..1024).contains(&small_ids.len()), "{} small rows", small_ids.len());
    for chunk in small_ids.chunks(10) {
        c.batch_execute(&format!(
            "INSERT INTO small_rows SELECT * FROM fresh WHERE id IN ({})",
            chunk.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        ))
        .unwrap();
    }
    for t in ["small_fresh", "small_rows"] {
        let v = vector_info(&mut c, &format!("{t}_search"));
        assert_eq!((v.vectors, v.graph_segments), (small_ids.len() as i64, 0), "{t}: {v:?}");
    }
    let small: Vec<(i64, Vec<f32>)> =
        data.base.iter().filter(|(id, _)| small_ids.binary_search(id).is_ok()).map(item).collect();
    let (fs, rs) = (knn_stmt(&mut c, "small_fresh", 10), knn_stmt(&mut c, "small_rows", 10));
    for (i, q) in data.queries.iter().enumerate() {
        let truth = brute_force(&small, q, 10, Metric::Cosine, |_| true);
        let f = knn(&mut c, &fs, q);
        let r = knn(&mut c, &rs, q);
        assert_exact(&f, &truth, &format!("small, fresh build, query {i}"));
        assert_exact(&r, &truth, &format!("small, row by row, query {i}"));
        assert_eq!(ids_of(&f), ids_of(&r), "small: query {i}: the same rows in the same order");
    }
    cluster.assert_no_backend_crash();
}

// ---------------------------------------------------------------------------------------------
// 2. Transactions
// ---------------------------------------------------------------------------------------------

#[test]
fn knn_follows_commit_abort_savepoints_updates_and_deletes() {
    let cluster = TestCluster::new("vec_tx");
    let mut c = cluster.connect();
    force_index(&mut c);
    create_items_table(&mut c);
    copy_rows(&mut c, "items", 1..=300);
    assert_index_plan(&mut c, "items");
    let mut other = cluster.connect();
    force_index(&mut other);
    let stmt1 = knn_stmt(&mut c, "items", 1);
    let other1 = knn_stmt(&mut other, "items", 1);
    let insert =
        c.prepare("INSERT INTO items (id, body, lang, embedding) VALUES ($1, 'new common', 'en', $2)").unwrap();
    let target = |n: u64| query_vec(100 + n);

    // Aborted after a search of its own published the row to the index.
    c.batch_execute("BEGIN").unwrap();
    c.execute(&insert, &[&10_001i64, &target(1)]).unwrap();
    assert_first_hit(&mut c, &stmt1, 10_001, &target(1), "own uncommitted insert (read your own writes)");
    assert_ne!(ids_of(&knn(&mut other, &other1, &target(1))), vec![10_001], "another session sees an uncommitted row");
    c.batch_execute("ROLLBACK").unwrap();
    // Aborted with its row only buffered.
    c.batch_execute("BEGIN").unwrap();
    c.execute(&insert, &[&10_002i64, &target(2)]).unwrap();
    c.batch_execute("ROLLBACK").unwrap();
    // Aborted by an error.
    c.batch_execute("BEGIN").unwrap();
    c.execute(&insert, &[&10_003i64, &target(3)]).unwrap();
    assert_eq!(sqlstate(c.batch_execute("SELECT 1/0")), "22012");
    c.batch_execute("ROLLBACK").unwrap();
    let (entries, _, _, _) = index_vector_info(&mut c, "items_search");
    assert!(entries >= 301, "test precondition: the first aborted row has an index entry ({entries} vectors)");

    for s in [&mut c, &mut other] {
        for n in 1..=3u64 {
            let got = nearest(s, "items", &target(n), 10);
            assert!(got.iter().all(|(id, _)| *id <= 300), "aborted row returned: {got:?}");
            assert_knn_exact(s, "items", &target(n), 10, &format!("after aborts, query {n}"));
        }
    }

    // Savepoints: rolled-back rows are never returned, even to the transaction itself; released
    // and outer rows are.
    c.batch_execute("BEGIN").unwrap();
    c.execute(&insert, &[&10_011i64, &target(11)]).unwrap();
    c.batch_execute("SAVEPOINT s1").unwrap();
    c.execute(&insert, &[&10_012i64, &target(12)]).unwrap();
    assert_first_hit(&mut c, &stmt1, 10_012, &target(12), "savepoint row before rollback");
    c.batch_execute("ROLLBACK TO SAVEPOINT s1").unwrap();
    assert_ne!(
        ids_of(&nearest(&mut c, "items", &target(12), 1)),
        vec![10_012],
        "rolled-back savepoint row, same transaction"
    );
    c.batch_execute("SAVEPOINT s2").unwrap();
    c.execute(&insert, &[&10_013i64, &target(13)]).unwrap(); // rolled back while only buffered
    c.batch_execute("ROLLBACK TO SAVEPOINT s2; SAVEPOINT s3").unwrap();
    c.execute(&insert, &[&10_014i64, &target(14)]).unwrap();
    c.batch_execute("RELEASE SAVEPOINT s3").unwrap();
    assert_first_hit(&mut c, &stmt1, 10_011, &target(11), "row before the savepoints, inside the transaction");
    assert_first_hit(&mut c, &stmt1, 10_014, &target(14), "row of a released savepoint, inside the transaction");
    c.batch_execute("COMMIT").unwrap();
    for (s, st) in [(&mut c, &stmt1), (&mut other, &other1)] {
        assert_first_hit(s, st, 10_011, &target(11), "committed row");
        assert_first_hit(s, st, 10_014, &target(14), "committed row of a released savepoint");
        for n in [12u64, 13] {
            let got = nearest(s, "items", &target(n), 10);
            assert!(got.iter().all(|(id, _)| *id != 10_000 + n as i64), "rolled-back savepoint row returned: {got:?}");
            assert_knn_exact(s, "items", &target(n), 10, &format!("after savepoints, query {n}"));
        }
    }

    // UPDATE of the embedding moves the row; other sessions see the move at commit.
    let old5 = vec_of(5, 0);
    let new5 = target(50);
    assert_first_hit(&mut c, &stmt1, 5, &old5, "row 5 before the update");
    c.batch_execute("BEGIN").unwrap();
    c.execute("UPDATE items SET embedding = $1 WHERE id = 5", &[&new5]).unwrap();
    assert_first_hit(&mut c, &stmt1, 5, &new5, "own update, before commit");
    let got = nearest(&mut c, "items", &old5, 10);
    assert!(
        got.iter().all(|(id, d)| *id != 5 || *d > 1e-3),
        "own update: row 5 still found at its old vector: {got:?}"
    );
    assert_first_hit(&mut other, &other1, 5, &old5, "another session before the update commits");
    c.batch_execute("COMMIT").unwrap();
    for (s, st) in [(&mut c, &stmt1), (&mut other, &other1)] {
        assert_first_hit(s, st, 5, &new5, "updated row at its new vector");
        let got = nearest(s, "items", &old5, 10);
        assert!(got.iter().all(|(id, d)| *id != 5 || *d > 1e-3), "row 5 still found at its old vector: {got:?}");
        assert_knn_exact(s, "items", &old5, 10, "the old vector's neighbours after the update");
    }
    // An UPDATE that does not touch the vector (HOT or not) keeps the row findable.
    c.batch_execute("UPDATE items SET body = 'edited common' WHERE id = 7").unwrap();
    assert_first_hit(&mut c, &stmt1, 7, &vec_of(7, 0), "row 7 after an update of its text");
    // UPDATE to NULL: the row has no distance any more; it comes after every row with a
    // vector, as ORDER BY puts NULLs last.
    c.batch_execute("UPDATE items SET embedding = NULL WHERE id = 8").unwrap();
    let with_vectors = count(&mut c, "SELECT count(*) FROM items WHERE embedding IS NOT NULL") as usize;
    let all = knn_stmt(&mut c, "items", 1000);
    let got = knn_nullable(&mut c, &all, &vec_of(8, 0));
    assert_eq!(
        got.len() as i64,
        count(&mut c, "SELECT count(*) FROM items"),
        "every row comes out of an unlimited kNN"
    );
    assert!(got[..with_vectors].iter().all(|(id, d)| *id != 8 && d.is_some()), "rows with a vector come first");
    assert_eq!(
        got[with_vectors..].to_vec(),
        vec![(8, None)],
        "the row without a vector comes last: {:?}",
        &got[with_vectors - 2..]
    );
    assert!(!ids_of(&nearest(&mut c, "items", &vec_of(8, 0), 10)).contains(&8));

    // DELETE removes it.
    c.batch_execute("DELETE FROM items WHERE id IN (6, 9)").unwrap();
    for s in [&mut c, &mut other] {
        for id in [6, 9] {
            let got = nearest(s, "items", &vec_of(id, 0), 10);
            assert!(!ids_of(&got).contains(&id), "deleted row {id} returned: {got:?}");
            assert_knn_exact(s, "items", &vec_of(id, 0), 10, &format!("after deleting {id}"));
        }
    }

    // VACUUM removes the entries of aborted, rolled-back, updated-away and deleted rows: the
    // index's vectors are then exactly the table's.
    let live = count(&mut c, "SELECT count(*) FROM items WHERE embedding IS NOT NULL");
    let (vectors_before, deleted_before, _, _) = index_vector_info(&mut c, "items_search");
    assert!(
        vectors_before > live,
        "before VACUUM the index still counts dead rows' vectors ({vectors_before} vs {live} live)"
    );
    c.batch_execute("VACUUM items").unwrap();
    let (vectors, deleted, _, _) = index_vector_info(&mut c, "items_search");
    eprintln!("vectors/deleted_vectors: before VACUUM {vectors_before}/{deleted_before}, after {vectors}/{deleted}; live {live}");
    assert_eq!(vectors, live, "after VACUUM, vectors = live rows with a vector");
    assert_eq!(vector_info(&mut c, "items_search").vectors, live);
    assert_verify_ok(&mut c, "items_search");
    c.query_one("SELECT hybrid.force_merge('items_search')", &[]).unwrap();
    let (vectors, deleted, _, _) = index_vector_info(&mut c, "items_search");
    assert_eq!((vectors, deleted), (live, 0), "after force_merge no tombstone is left");
    for n in [1u64, 12, 13] {
        assert_knn_exact(&mut c, "items", &target(n), 10, &format!("after VACUUM, query {n}"));
    }
    assert_first_hit(&mut c, &stmt1, 5, &new5, "after VACUUM");
    cluster.assert_no_backend_crash();
}

/// Deletes from a graph segment: VACUUM turns them into tombstones (`deleted_vectors`), the
/// graph walk skips them, and merges drop them.
#[test]
fn vacuum_counts_and_drops_tombstones_of_a_graph_segment() {
    let cluster = TestCluster::new("vec_vacuum");
    let mut c = cluster.connect();
    force_index(&mut c);
    c.batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, body text, lang text, embedding real[])").unwrap();
    copy_rows(&mut c, "items", 1..=3000);
    create_items_index(&mut c, "items", DIM, Metric::Cosine);
    let v = vector_info(&mut c, "items_search");
    assert_eq!((v.vectors, v.deleted_vectors, v.graph_segments, v.exact_segments), (3000, 0, 1, 0), "{v:?}");

    // 5% deleted: under the 20% that makes VACUUM rewrite a segment.
    c.batch_execute("DELETE FROM items WHERE id % 20 = 0").unwrap();
    assert_eq!(vector_info(&mut c, "items_search").deleted_vectors, 0, "the index learns of deletes at VACUUM");
    c.batch_execute("VACUUM items").unwrap();
    let v = vector_info(&mut c, "items_search");
    assert_eq!((v.vectors, v.deleted_vectors), (2850, 150), "after VACUUM: {v:?}");
    let stmt = knn_stmt(&mut c, "items", 10);
    for id in (20..=3000).step_by(20).take(30) {
        let got = knn(&mut c, &stmt, &vec_of(id, 0));
        assert!(!ids_of(&got).contains(&id), "deleted row {id} returned: {got:?}");
        assert_eq!(got.len(), 10);
    }
    let stmt1 = knn_stmt(&mut c, "items", 1);
    for id in (1..=3000).filter(|i| i % 20 != 0).step_by(97) {
        assert_first_hit(&mut c, &stmt1, id, &vec_of(id, 0), "live row of a graph segment");
    }

    // 30% more deleted: VACUUM rewrites the segment without them.
    c.batch_execute("DELETE FROM items WHERE id % 10 IN (1, 2, 3)").unwrap();
    c.batch_execute("VACUUM items").unwrap();
    let live = count(&mut c, "SELECT count(*) FROM items");
    let v = vector_info(&mut c, "items_search");
    eprintln!("after deleting 35% and VACUUM: {v:?} ({live} live)");
    assert_eq!(v.vectors, live);
    assert_eq!(v.deleted_vectors, 0, "a segment with over 20% deleted entries is rewritten by VACUUM: {v:?}");
    assert!(v.graph_segments >= 1, "the rewritten segment has a graph: {v:?}");
    assert_verify_ok(&mut c, "items_search");
    c.batch_execute("SET hybrid.ef_search = 10000").unwrap();
    for n in 0..10 {
        assert_knn_exact(&mut c, "items", &query_vec(n), 10, &format!("after rewrite, query {n}"));
    }
    cluster.assert_no_backend_crash();
}

// ---------------------------------------------------------------------------------------------
// 3. Crash
// ---------------------------------------------------------------------------------------------

fn stream_vector_inserts(
    conn: String,
    first: i64,
    recorded: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
) -> Option<String> {
    let mut c = Client::connect(&conn, NoTls).expect("writer connects");
    let insert = c.prepare("INSERT INTO items (id, body, lang, embedding) VALUES ($1, $2, 'en', $3)").expect("prepare");
    for id in first..first + 100_000 {
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        match c.execute(&insert, &[&id, &body_of(id, 0), &vec_of(id, 0)]) {
            Ok(_) => recorded.lock().unwrap().push(id),
            Err(e) => return Some(e.to_string()),
        }
    }
    None
}

#[test]
fn committed_vectors_survive_kill9_mid_stream() {
    let mut cluster = TestCluster::new("vec_crash");
    let mut c = cluster.connect();
    c.batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, body text, lang text, embedding real[])").unwrap();
    copy_rows(&mut c, "items", 1..=2000);
    create_items_index(&mut c, "items", DIM, Metric::Cosine);
    drop(c);

    let recorded = kill9_during_writes(&mut cluster, stream_vector_inserts, 400);

    let mut c = cluster.connect();
    force_index(&mut c);
    assert_index_plan(&mut c, "items");
    let in_table: BTreeSet<i64> = id_set(&mut c, "SELECT id FROM items");
    for id in &recorded {
        assert!(in_table.contains(id), "row {id} committed before the crash is not in the table");
    }
    let info = vector_info(&mut c, "items_search");
    eprintln!("{} rows committed before the crash, {} in the table; {info:?}", recorded.len(), in_table.len());
    // Every row in the table (committed before the crash, or whose commit was in flight and
    // made it) is the first hit of a search for its own vector.
    let stmt = knn_stmt(&mut c, "items", 1);
    let mut missing = Vec::new();
    for &id in &in_table {
        let got = knn(&mut c, &stmt, &vec_of(id, 0));
        if !got.first().is_some_and(|(first, d)| *first == id && d.abs() < 1e-6) {
            missing.push((id, got));
        }
    }
    assert!(
        missing.is_empty(),
        "{} rows not found by their own vector after the crash, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );

    // INDEX_CLEANUP ON: a row whose transaction was in flight at the crash may have left its
    // entry (its WAL, and its log record's, flushed by others' commits) for a tuple that is now
    // dead; with as few dead tuples as that, a plain VACUUM skips the indexes (Postgres' bypass
    // below 2% of pages) and the entry would stay until the next one (seen once: 2,440 vectors
    // for 2,439 rows, `verify` clean since the tuple id is still taken).
    c.batch_execute("VACUUM (INDEX_CLEANUP ON) items").unwrap();
    let v = assert_verify_ok(&mut c, "items_search");
    assert_eq!(v.visible_rows, in_table.len() as i64);
    assert_eq!(vector_info(&mut c, "items_search").vectors, in_table.len() as i64, "after VACUUM");
    // Writes go on after recovery.
    c.execute(
        "INSERT INTO items (id, body, lang, embedding) VALUES (999999, 'after crash', 'en', $1)",
        &[&query_vec(5)],
    )
    .unwrap();
    assert_first_hit(&mut c, &stmt, 999_999, &query_vec(5), "row inserted after recovery");
    cluster.assert_no_backend_crash();
}

// ---------------------------------------------------------------------------------------------
// 4. Rebuilds and drops
// ---------------------------------------------------------------------------------------------

fn folder_names(dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter().map(|d| d.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

fn assert_single_folder(cluster: &TestCluster, c: &mut Client, index: &str, when: &str) -> u32 {
    let node = relfilenode(c, index);
    assert_eq!(
        folder_names(&cluster.sidecar_dirs(TEST_DB)),
        vec![node.to_string()],
        "{when}: expected only the folder of {index}'s relfilenode"
    );
    node
}

/// kNN after a rebuild: the graph exists, rows are found by their own vectors through the
/// graph, and exact searches give the brute-force answer.
fn assert_knn_correct(c: &mut Client, expected_rows: i64, when: &str) {
    let v = vector_info(c, "items_search");
    assert_eq!(v.vectors, expected_rows, "{when}: {v:?}");
    if expected_rows >= 2000 && when != "after CREATE INDEX" {
        assert_eq!(
            (v.graph_segments, v.exact_segments, v.deleted_vectors),
            (1, 0, 0),
            "{when}: a rebuild makes one graph segment: {v:?}"
        );
    }
    let stmt = knn_stmt(c, "items", 1);
    let rows = table_vectors(c, "items");
    for (id, vec) in rows.iter().step_by((rows.len() / 40).max(1)) {
        assert_first_hit(c, &stmt, *id, vec, when);
    }
    c.batch_execute("SET hybrid.ef_search = 10000").unwrap();
    for n in 0..5 {
        let truth = brute_force(&rows, &query_vec(n), 10, Metric::Cosine, |_| true);
        assert_exact(&nearest(c, "items", &query_vec(n), 10), &truth, &format!("{when}: exact query {n}"));
    }
    c.batch_execute("RESET hybrid.ef_search").unwrap();
}

#[test]
fn rebuilds_move_to_one_new_folder_and_knn_stays_correct() {
    let cluster = TestCluster::new("vec_rebuilds");
    let mut c = cluster.connect();
    force_index(&mut c);
    c.batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, body text, lang text, embedding real[])").unwrap();
    copy_rows(&mut c, "items", 1..=2500);
    create_items_index(&mut c, "items", DIM, Metric::Cosine);
    // Holes, so that VACUUM FULL moves rows to other tuple ids.
    c.batch_execute("DELETE FROM items WHERE id % 5 = 0").unwrap();
    c.batch_execute("VACUUM items").unwrap();
    let mut node = assert_single_folder(&cluster, &mut c, "items_search", "after CREATE INDEX");
    assert_knn_correct(&mut c, 2000, "after CREATE INDEX");

    let ctid_of_2499 =
        |c: &mut Client| -> String { c.query_one("SELECT ctid::text FROM items WHERE id = 2499", &[]).unwrap().get(0) };
    let before = ctid_of_2499(&mut c);
    for sql in
        ["REINDEX INDEX items_search", "REINDEX TABLE items", "VACUUM FULL items", "CLUSTER items USING items_pkey"]
    {
        c.batch_execute(sql).unwrap();
        let new_node = assert_single_folder(&cluster, &mut c, "items_search", &format!("after {sql}"));
        assert_ne!(new_node, node, "{sql} builds into a new relfilenode");
        node = new_node;
        assert_knn_correct(&mut c, 2000, &format!("after {sql}"));
        assert_verify_ok(&mut c, "items_search");
    }
    assert_ne!(ctid_of_2499(&mut c), before, "test precondition: VACUUM FULL moved rows to other tuple ids");

    // A rolled-back REINDEX keeps the old folder, which still answers.
    c.batch_execute("BEGIN; REINDEX INDEX items_search; ROLLBACK").unwrap();
    assert_eq!(assert_single_folder(&cluster, &mut c, "items_search", "after REINDEX; ROLLBACK"), node);
    assert_knn_correct(&mut c, 2000, "after REINDEX; ROLLBACK");

    c.batch_execute("TRUNCATE items").unwrap();
    let new_node = assert_single_folder(&cluster, &mut c, "items_search", "after TRUNCATE");
    assert_ne!(new_node, node);
    assert!(nearest(&mut c, "items", &query_vec(0), 10).is_empty(), "kNN on a truncated table");
    assert_eq!(vector_info(&mut c, "items_search").vectors, 0);
    copy_rows(&mut c, "items", 5001..=5100);
    assert_knn_correct(&mut c, 100, "after TRUNCATE and new rows");

    c.batch_execute("DROP INDEX items_search").unwrap();
    assert!(cluster.sidecar_dirs(TEST_DB).is_empty(), "after DROP INDEX: {:?}", cluster.sidecar_dirs(TEST_DB));
    create_items_index(&mut c, "items", DIM, Metric::Cosine);
    assert_single_folder(&cluster, &mut c, "items_search", "after CREATE INDEX again");
    assert_knn_correct(&mut c, 100, "after CREATE INDEX again");
    c.batch_execute("DROP TABLE items").unwrap();
    assert!(cluster.sidecar_dirs(TEST_DB).is_empty(), "after DROP TABLE: {:?}", cluster.sidecar_dirs(TEST_DB));
    assert_eq!(count(&mut c, "SELECT count(*) FROM hybrid.indexes"), 0);
    cluster.assert_no_backend_crash();
}

// ---------------------------------------------------------------------------------------------
// 5. Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_vectors_and_options_are_errors_with_sqlstates() {
    let cluster = TestCluster::new("vec_errors");
    let mut c = cluster.connect();
    force_index(&mut c);
    c.batch_execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, body text, lang text, embedding real[]);
         CREATE INDEX items_search ON items USING hybrid (id, body, lang, embedding)
           WITH (key_field = 'id', fields = '{\"embedding\": {\"dimensions\": 3}}');
         CREATE TABLE l2items (id bigint PRIMARY KEY, body text, embedding real[]);
         CREATE INDEX l2items_search ON l2items USING hybrid (id, body, embedding)
           WITH (key_field = 'id', fields = '{\"embedding\": {\"dimensions\": 3, \"metric\": \"l2\"}}');
         INSERT INTO items VALUES (1, 'one', 'en', '{1,2,3}'), (2, 'two', 'en', '{3,2,1}');
         INSERT INTO l2items VALUES (1, 'one', '{0,0,0}');",
    )
    .unwrap();

    // Each error leaves the session working, the index answering, and no backend crashed.
    let check = |c: &mut Client, sql: &str, code: &str| {
        let e = match c.batch_execute(sql) {
            Ok(()) => panic!("expected SQLSTATE {code} from `{sql}`, it succeeded"),
            Err(e) => e.as_db_error().unwrap_or_else(|| panic!("`{sql}`: not a database error: {e}")).clone(),
        };
        assert_eq!(e.code().code(), code, "`{sql}` failed with {}: {}", e.code().code(), e.message());
        let got: Vec<i64> = c
            .query("SELECT id FROM items ORDER BY embedding <=> '{1,2,3.5}' LIMIT 1", &[])
            .unwrap_or_else(|e| panic!("session unusable after `{sql}`: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, vec![1], "kNN after `{sql}`");
        cluster.assert_no_backend_crash();
    };
    let knn_sql = |v: &str| format!("SELECT id FROM items ORDER BY embedding <=> '{v}' LIMIT 5");
    let cases: Vec<(String, &str)> = vec![
        // Stored vectors.
        ("INSERT INTO items VALUES (10, 'x', 'en', '{1,2}')".into(), "22000"),
        ("INSERT INTO items VALUES (10, 'x', 'en', '{1,2,3,4}')".into(), "22000"),
        ("INSERT INTO items VALUES (10, 'x', 'en', '{1,NaN,3}')".into(), "22000"),
        ("INSERT INTO items VALUES (10, 'x', 'en', '{1,Infinity,3}')".into(), "22000"),
        ("INSERT INTO items VALUES (10, 'x', 'en', '{-Infinity,1,3}')".into(), "22000"),
        ("INSERT INTO items VALUES (10, 'x', 'en', '{0,0,0}')".into(), "22000"),
        ("INSERT INTO items VALUES (10, 'x', 'en', '{1,NULL,3}')".into(), "22004"),
        ("INSERT INTO items VALUES (10, 'x', 'en', '{}')".into(), "22000"),
        ("UPDATE items SET embedding = '{1,2}' WHERE id = 1".into(), "22000"),
        ("UPDATE items SET embedding = '{0,0,0}' WHERE id = 1".into(), "22000"),
        ("INSERT INTO items SELECT 10 + i, 'x', 'en', ARRAY[i, 1, 1]::real[] FROM generate_series(0, 5) i
            UNION ALL SELECT 99, 'x', 'en', '{1,2}'".into(), "22000"),
        // Query vectors, through the index.
        (knn_sql("{1,2}"), "22000"),
        (knn_sql("{1,2,3,4}"), "22000"),
        (knn_sql("{1,NaN,3}"), "22000"),
        (knn_sql("{1,Infinity,3}"), "22000"),
        (knn_sql("{0,0,0}"), "22000"),
        (knn_sql("{1,NULL,3}"), "22004"),
        (knn_sql("{}"), "22000"),
        ("SELECT id FROM items WHERE lang = 'en' ORDER BY embedding <=> '{1,2}' LIMIT 5".into(), "22000"),
        ("SELECT * FROM hybrid.search('items_search', vector => '{1,2}')".into(), "22000"),
        ("SELECT * FROM hybrid.search('items_search', query => 'one', vector => '{1,NaN,3}')".into(), "22000"),
        // The operators themselves, without an index.
        ("SELECT '{1,2}'::real[] <=> '{1,2,3}'::real[]".into(), "22000"),
        ("SELECT '{1,NULL}'::real[] <-> '{1,2}'::real[]".into(), "22004"),
        // Options.
        (r#"CREATE INDEX bad ON items USING hybrid (id, body, embedding) WITH (key_field = 'id', fields = '{"embedding": {"dimensions": 3, "m": 300}}')"#.into(), "22023"),
        (r#"CREATE INDEX bad ON items USING hybrid (id, body, embedding) WITH (key_field = 'id', fields = '{"embedding": {"dimensions": 3, "m": 16, "ef_construction": 31}}')"#.into(), "22023"),
        (r#"CREATE INDEX bad ON items USING hybrid (id, body, embedding) WITH (key_field = 'id', fields = '{"embedding": {"dimensions": 0}}')"#.into(), "22023"),
        (r#"CREATE INDEX bad ON items USING hybrid (id, body, embedding) WITH (key_field = 'id', fields = '{"embedding": {"dimensions": -3}}')"#.into(), "22023"),
        (r#"CREATE INDEX bad ON items USING hybrid (id, body, embedding) WITH (key_field = 'id', fields = '{"embedding": {"dimensions": 3, "metric": "manhattan"}}')"#.into(), "22023"),
        (r#"CREATE INDEX bad ON items USING hybrid (id, body, embedding) WITH (key_field = 'id', fields = '{"embedding": {"dimensions": 3, "ef_construction": 100000}}')"#.into(), "22023"),
        ("CREATE INDEX bad ON items USING hybrid (id, body, embedding) WITH (key_field = 'id')".into(), "22023"),
        (r#"CREATE INDEX bad ON items USING hybrid (id, body, embedding) WITH (key_field = 'embedding', fields = '{"embedding": {"dimensions": 3}}')"#.into(), "42804"),
        (r#"CREATE INDEX bad ON items USING hybrid (embedding, body) WITH (key_field = 'embedding', fields = '{"embedding": {"dimensions": 3}}')"#.into(), "42804"),
        // The existing rows violate the new index's dimensions: the build fails.
        (r#"CREATE INDEX bad ON items USING hybrid (id, body, embedding) WITH (key_field = 'id', fields = '{"embedding": {"dimensions": 4}}')"#.into(), "22000"),
    ];
    for (sql, code) in &cases {
        check(&mut c, sql, code);
    }
    assert_eq!(cluster.sidecar_dirs(TEST_DB).len(), 2, "failed CREATE INDEX leaves no folder");
    assert_eq!(count(&mut c, "SELECT count(*) FROM hybrid.indexes"), 2);

    // Query vectors as parameters.
    let stmt = c.prepare("SELECT id FROM items ORDER BY embedding <=> $1 LIMIT 5").unwrap();
    for (v, code) in
        [(vec![1.0f32, 2.0], "22000"), (vec![1.0, f32::NAN, 3.0], "22000"), (vec![0.0; 3], "22000"), (vec![], "22000")]
    {
        assert_eq!(sqlstate(c.query(&stmt, &[&v])), code, "parameter {v:?}");
    }
    let with_null: Vec<Option<f32>> = vec![Some(1.0), None, Some(3.0)];
    assert_eq!(sqlstate(c.query(&stmt, &[&with_null])), "22004");

    // All zeros is fine under l2.
    let got: Vec<i64> = c
        .query("SELECT id FROM l2items ORDER BY embedding <-> '{0,0,0}' LIMIT 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, vec![1]);

    // A NULL vector is allowed: the row is stored, has no distance, and comes after the rows
    // that have one (as a sort puts NULLs last, so the index and a sort agree).
    c.batch_execute("INSERT INTO items VALUES (3, 'three', 'en', NULL)").unwrap();
    let ordered = |c: &mut Client, limit: i64| -> Vec<(i64, Option<f64>)> {
        c.query("SELECT id, embedding <=> '{1,2,3}' FROM items ORDER BY embedding <=> '{1,2,3}' LIMIT $1", &[&limit])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let plan = plan_of(&mut c, "SELECT id FROM items ORDER BY embedding <=> '{1,2,3}' LIMIT 10");
    assert!(plan.contains("Index Scan using items_search"), "{plan}");
    let through_index = ordered(&mut c, 10);
    assert_eq!(ids_of_opt(&through_index), vec![1, 2, 3], "{through_index:?}");
    assert_eq!(through_index[2].1, None);
    assert_eq!(ids_of_opt(&ordered(&mut c, 2)), vec![1, 2], "LIMIT 2 never reaches the row without a vector");
    c.batch_execute("SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_seqscan = on").unwrap();
    assert_eq!(ordered(&mut c, 10), through_index, "a sort gives the same answer");
    c.batch_execute("RESET enable_indexscan; RESET enable_bitmapscan; SET enable_seqscan = off").unwrap();
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM items WHERE body @@@ 'three'"),
        1,
        "the row is in the index for text"
    );
    // ORDER BY a NULL query vector: every distance is NULL, every row comes.
    let got = c.query("SELECT id FROM items ORDER BY embedding <=> $1 LIMIT 10", &[&None::<Vec<f32>>]).unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(vector_info(&mut c, "items_search").vectors, 2);
    assert_verify_ok(&mut c, "items_search");
    cluster.assert_no_backend_crash();
}

// ---------------------------------------------------------------------------------------------
// 6. Fusion
// ---------------------------------------------------------------------------------------------

/// One row of hybrid.search.
#[derive(Debug, Clone, PartialEq)]
struct Fused {
    key: String,
    score: f64,
    text_rank: Option<i32>,
    vector_rank: Option<i32>,
}

fn hybrid_search(c: &mut Client, args: &str, q: &[f32]) -> Vec<Fused> {
    let q = q.to_vec();
    c.query(&format!("SELECT key, score, text_rank, vector_rank FROM hybrid.search('items_search', {args})"), &[&q])
        .unwrap_or_else(|e| panic!("hybrid.search({args}): {e}"))
        .iter()
        .map(|r| Fused { key: r.get(0), score: r.get(1), text_rank: r.get(2), vector_rank: r.get(3) })
        .collect()
}

/// The text list: matches of `query`, best BM25 score first, ties by key.
fn text_list(c: &mut Client, query: &str) -> Vec<i64> {
    let mut rows: Vec<(f32, i64)> = c
        .query(
            "SELECT hybrid.score(id), id FROM items WHERE body @@@ $1 ORDER BY hybrid.score(id) DESC LIMIT 100",
            &[&query],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    rows.into_iter().map(|(_, id)| id).collect()
}

/// The vector list: nearest first, ties by key.
fn vector_list(c: &mut Client, q: &[f32]) -> Vec<i64> {
    let q = q.to_vec();
    let mut rows: Vec<(f64, i64)> = c
        .query(
            "SELECT embedding <=> $1, id FROM items WHERE embedding IS NOT NULL ORDER BY embedding <=> $1 LIMIT 100",
            &[&q],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    rows.into_iter().map(|(_, id)| id).collect()
}

/// Checks `got` against reciprocal rank fusion of `text` and `vector` (rank constant 60,
/// weights as given), computed here.
fn assert_fusion(got: &[Fused], text: &[i64], vector: &[i64], k: usize, tw: f64, vw: f64, what: &str) {
    let mut expected: BTreeMap<i64, (f64, Option<i32>, Option<i32>)> = BTreeMap::new();
    for (r, id) in text.iter().enumerate() {
        let e = expected.entry(*id).or_insert((0.0, None, None));
        e.0 += tw / (60.0 + (r + 1) as f64);
        e.1 = Some(r as i32 + 1);
    }
    for (r, id) in vector.iter().enumerate() {
        let e = expected.entry(*id).or_insert((0.0, None, None));
        e.0 += vw / (60.0 + (r + 1) as f64);
        e.2 = Some(r as i32 + 1);
    }
    let mut order: Vec<(i64, f64)> = expected.iter().map(|(id, e)| (*id, e.0)).collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.to_string().cmp(&b.0.to_string())));
    assert_eq!(got.len(), k.min(order.len()), "{what}: {} rows", got.len());
    for w in got.windows(2) {
        assert!(w[0].score >= w[1].score, "{what}: scores not descending: {w:?}");
    }
    for (i, f) in got.iter().enumerate() {
        let id: i64 = f.key.parse().unwrap_or_else(|_| panic!("{what}: key {:?} is not an id", f.key));
        let e = expected.get(&id).unwrap_or_else(|| panic!("{what}: key {id} is in neither list"));
        assert_eq!((f.text_rank, f.vector_rank), (e.1, e.2), "{what}: ranks of key {id}");
        assert!((f.score - e.0).abs() < 1e-12, "{what}: score of key {id}: {} vs {}", f.score, e.0);
        // The same keys as the expected top-k, up to ties in score.
        let (eid, escore) = order[i];
        assert!(eid == id || (escore - f.score).abs() < 1e-12, "{what}: rank {i}: key {id}, expected {eid}");
    }
}

#[test]
fn hybrid_search_fuses_text_and_knn_with_privileges_and_rls() {
    let cluster = TestCluster::new("vec_fusion");
    let mut c = cluster.connect();
    create_items_table(&mut c);
    // Bodies: generated text; 'harbor' is in about 5% of the rows (its matches fit in the
    // 100-row window, so text ranks are defined by the whole match list).
    copy_rows(&mut c, "items", 1..=600);
    c.batch_execute("INSERT INTO items VALUES (601, 'harbor harbor harbor harbor', 'en', NULL)").unwrap();
    let matches = count(&mut c, "SELECT count(*) FROM items WHERE body @@@ 'harbor'");
    assert!((10..100).contains(&matches), "test precondition: {matches} rows match 'harbor'");
    assert!(!c
        .query("SELECT 1 FROM hybrid.search('items_search', query => 'harbor') LIMIT 1", &[])
        .unwrap()
        .is_empty());

    for n in 0..5u64 {
        let q = query_vec(n);
        let (t, v) = (text_list(&mut c, "harbor"), vector_list(&mut c, &q));
        assert_eq!(t.len() as i64, matches);
        let got = hybrid_search(&mut c, "query => 'harbor', vector => $1, k => 10", &q);
        assert_fusion(&got, &t, &v, 10, 1.0, 1.0, &format!("query {n}"));
        let all: BTreeSet<i64> = id_set(&mut c, "SELECT id FROM items");
        assert!(got.iter().all(|f| all.contains(&f.key.parse().unwrap())), "keys exist");
        // Weights: vector_weight 0 gives the text order, text_weight 0 the vector order.
        let text_only = hybrid_search(&mut c, "query => 'harbor', vector => $1, k => 10, vector_weight => 0", &q);
        assert_eq!(
            text_only.iter().map(|f| f.key.parse::<i64>().unwrap()).collect::<Vec<_>>(),
            t[..10].to_vec(),
            "vector_weight 0"
        );
        let vec_only = hybrid_search(&mut c, "query => 'harbor', vector => $1, k => 10, text_weight => 0", &q);
        assert_eq!(
            vec_only.iter().map(|f| f.key.parse::<i64>().unwrap()).collect::<Vec<_>>(),
            v[..10].to_vec(),
            "text_weight 0"
        );
        let weighted = hybrid_search(
            &mut c,
            "query => 'harbor', vector => $1, k => 25, text_weight => 0.3, vector_weight => 2",
            &q,
        );
        assert_fusion(&weighted, &t, &v, 25, 0.3, 2.0, &format!("weighted query {n}"));
        // One list alone.
        let alone = hybrid_search(&mut c, "vector => $1, k => 10", &q);
        assert_eq!(alone.iter().map(|f| f.key.parse::<i64>().unwrap()).collect::<Vec<_>>(), v[..10].to_vec());
        assert!(alone.iter().all(|f| f.text_rank.is_none()));
    }

    // A deleted row disappears from both lists.
    let q = query_vec(0);
    let top: i64 = hybrid_search(&mut c, "query => 'harbor', vector => $1, k => 1", &q)[0].key.parse().unwrap();
    c.execute("DELETE FROM items WHERE id = $1", &[&top]).unwrap();
    let got = hybrid_search(&mut c, "query => 'harbor', vector => $1, k => 50", &q);
    assert!(got.iter().all(|f| f.key != top.to_string()), "deleted row {top} returned");
    let (t, v) = (text_list(&mut c, "harbor"), vector_list(&mut c, &q));
    assert_fusion(&got, &t, &v, 50, 1.0, 1.0, "after a delete");

    // Row-level security: a role that sees only even ids never gets an odd one, from either list.
    c.batch_execute(
        "ALTER TABLE items ENABLE ROW LEVEL SECURITY;
         CREATE POLICY even_only ON items FOR SELECT USING (id % 2 = 0);
         CREATE ROLE reader; GRANT SELECT ON items TO reader;
         CREATE ROLE outsider;",
    )
    .unwrap();
    let mut r = cluster.connect();
    r.batch_execute("SET ROLE reader").unwrap();
    for n in 0..5u64 {
        let q = query_vec(n);
        let got = hybrid_search(&mut r, "query => 'harbor', vector => $1, k => 40", &q);
        assert!(!got.is_empty());
        for f in &got {
            assert_eq!(f.key.parse::<i64>().unwrap() % 2, 0, "RLS: hidden row {} returned to reader", f.key);
        }
        // And it is the fusion of what the reader's own queries see.
        let (t, v) = (text_list(&mut r, "harbor"), vector_list(&mut r, &q));
        assert!(t.iter().chain(&v).all(|id| id % 2 == 0), "RLS applies to the reader's own queries");
        assert_fusion(&got, &t, &v, 40, 1.0, 1.0, &format!("RLS query {n}"));
    }

    // Without SELECT on the table: 42501, from hybrid.search and from a plain kNN query.
    let mut o = cluster.connect();
    o.batch_execute("SET ROLE outsider").unwrap();
    let q = query_vec(1);
    for sql in [
        "SELECT * FROM hybrid.search('items_search', query => 'harbor', vector => $1)",
        "SELECT * FROM hybrid.search('items_search', vector => $1)",
        "SELECT id FROM items ORDER BY embedding <=> $1 LIMIT 5",
    ] {
        assert_eq!(sqlstate(o.query(sql, &[&q])), "42501", "{sql}");
    }
    assert_eq!(sqlstate(o.query("SELECT * FROM hybrid.search('items_search', query => 'harbor')", &[])), "42501");
    cluster.assert_no_backend_crash();
}

/// A row is found exactly once per search whatever mix of segments holds it: a row updated
/// many times (each version in another small segment) appears once in kNN results.
#[test]
fn rows_updated_many_times_appear_once() {
    let cluster = TestCluster::new("vec_versions");
    let mut c = cluster.connect();
    force_index(&mut c);
    create_items_table(&mut c);
    copy_rows(&mut c, "items", 1..=200);
    let q = query_vec(7);
    for i in 0..20u64 {
        // Row 1 moves closer and closer to q; each UPDATE commits a new segment.
        let v: Vec<f32> = q.iter().zip(vec_of(1, i)).map(|(a, b)| a + b / (i as f32 + 1.0)).collect();
        c.execute("UPDATE items SET embedding = $1 WHERE id = 1", &[&v]).unwrap();
    }
    let got = nearest(&mut c, "items", &q, 50);
    let ids: Vec<i64> = ids_of(&got);
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a row returned twice: {got:?}");
    assert_eq!(ids[0], 1);
    assert_knn_exact(&mut c, "items", &q, 50, "after 20 updates");
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for id in ids_of(&nearest(&mut c, "items", &q, 1000)) {
        *seen.entry(id).or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "every row once: {seen:?}");
    assert_eq!(seen.len(), 200);
    cluster.assert_no_backend_crash();
}
