//! Tenants and quotas (DESIGN.md "Control plane and quotas"): limits on indexes, documents and
//! bytes per tenant, and an index's own `max_documents`, enforced race-free at every isolation
//! level with real concurrent sessions; a refused CREATE INDEX leaves no folder and no catalog
//! row; rebuilds of an existing index are not new indexes.

mod tenantutil;

use std::collections::BTreeSet;
use std::sync::{Barrier, Mutex};

use pg_hybrid_tests::*;
use tenantutil::*;

const TENANT: &str = "acme_corp";
const ROLE: &str = "acme_user";
const SESSIONS: usize = 16;

/// A cluster with tenant [`TENANT`] (`limits`) and its role [`ROLE`]; returns a superuser session.
fn setup(name: &str, limits: Limits) -> (TestCluster, Client) {
    let cluster = TestCluster::new(name);
    let mut su = cluster.connect();
    create_tenant(&mut su, TENANT, limits);
    create_tenant_role(&mut su, ROLE, TENANT);
    (cluster, su)
}

/// Creates table `t (id bigint primary key, body text)` with rows `ids`.
fn create_table(c: &mut Client, t: &str, ids: std::ops::RangeInclusive<i64>) {
    c.batch_execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, body text);
         INSERT INTO {t} SELECT i, 'row ' || i || ' tok' || i || ' common' FROM generate_series({}, {}) i",
        ids.start(),
        ids.end()
    ))
    .unwrap_or_else(|e| panic!("create table {t}: {e}"));
}

fn index_sql(t: &str) -> String {
    format!("CREATE INDEX {t}_search ON {t} USING hybrid (id, body) WITH (key_field = 'id')")
}

/// Names of the hybrid indexes in the catalog (read through the table, as a superuser).
fn registry_names(su: &mut Client) -> BTreeSet<String> {
    su.query("SELECT index_oid::regclass::text FROM hybrid.index_registry", &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// Folder names under `$PGDATA/pg_hybrid/<test db>/` (hidden ones included).
fn folder_names(cluster: &TestCluster) -> BTreeSet<String> {
    cluster.sidecar_dirs(TEST_DB).iter().map(|d| d.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

/// Relfilenodes of the hybrid indexes that exist: the folders there must be.
fn expected_folders(su: &mut Client) -> BTreeSet<String> {
    su.query(
        "SELECT pg_relation_filenode(c.oid)::text FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'hybrid'",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect()
}

/// Nothing half-created: exactly one folder per hybrid index and one catalog row per index.
fn assert_nothing_half_created(cluster: &TestCluster, su: &mut Client, when: &str) {
    assert_eq!(folder_names(cluster), expected_folders(su), "{when}: folders vs. hybrid indexes");
    let in_pg_class: BTreeSet<String> = su
        .query(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'hybrid'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    assert_eq!(registry_names(su), in_pg_class, "{when}: catalog rows vs. hybrid indexes");
}

/// A quota message names the tenant, the limit, the usage and what is limited.
fn assert_quota_message(msg: &str, what: &str, limit: i64, usage: i64) {
    assert!(msg.contains(TENANT), "message does not name the tenant {TENANT}: {msg}");
    assert!(msg.contains(what), "message does not say what is limited ({what}): {msg}");
    assert!(msg.contains(&limit.to_string()), "message does not give the limit {limit}: {msg}");
    assert!(msg.contains(&usage.to_string()), "message does not give the usage {usage}: {msg}");
}

// ---------------------------------------------------------------------------------------------
// max_indexes
// ---------------------------------------------------------------------------------------------

#[test]
fn create_index_beyond_max_indexes_is_refused_and_leaves_nothing() {
    let (cluster, mut su) = setup("quota_indexes", Limits { max_indexes: Some(2), ..Default::default() });
    let mut a = connect_as(&cluster, ROLE);
    for t in ["t1", "t2", "t3", "t4"] {
        create_table(&mut a, t, 1..=30);
    }
    a.batch_execute(&index_sql("t1")).unwrap();
    a.batch_execute(&index_sql("t2")).unwrap();
    assert_eq!(usage(&mut a, TENANT).indexes, 2);

    let msg = assert_code(&mut a, &index_sql("t3"), "53400", "third index");
    assert_quota_message(&msg, "indexes", 2, 2);
    assert_nothing_half_created(&cluster, &mut su, "after a refused CREATE INDEX");
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_class WHERE relname = 't3_search'"), 0);

    // Inside a transaction, under a savepoint: the transaction goes on and commits.
    a.batch_execute("BEGIN; INSERT INTO t1 VALUES (1000, 'in the transaction'); SAVEPOINT s").unwrap();
    assert_code(&mut a, &index_sql("t3"), "53400", "under a savepoint");
    a.batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT").unwrap();
    assert_eq!(count(&mut a, "SELECT count(*) FROM t1 WHERE body @@@ 'transaction'"), 1);
    assert_nothing_half_created(&cluster, &mut su, "after a refused CREATE INDEX under a savepoint");

    // A limit lowered below the usage: the message shows both.
    set_limits(&mut su, TENANT, Limits { max_indexes: Some(1), ..Default::default() });
    let msg = assert_code(&mut a, &index_sql("t3"), "53400", "limit lowered to 1");
    assert_quota_message(&msg, "indexes", 1, 2);

    // Raising it lets the index in; dropping one frees a place.
    set_limits(&mut su, TENANT, Limits { max_indexes: Some(3), ..Default::default() });
    a.batch_execute(&index_sql("t3")).unwrap();
    assert_code(&mut a, &index_sql("t4"), "53400", "fourth index");
    a.batch_execute("DROP INDEX t1_search").unwrap();
    a.batch_execute(&index_sql("t4")).unwrap();
    assert_eq!(usage(&mut a, TENANT).indexes, 3);
    assert_eq!(count(&mut a, "SELECT count(*) FROM t4 WHERE body @@@ 'common'"), 30);
    assert_nothing_half_created(&cluster, &mut su, "at the end");

    // Other tenants are not affected: the superuser's indexes go to "default".
    create_table(&mut su, "s1", 1..=5);
    su.batch_execute(&index_sql("s1")).unwrap();
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM hybrid.indexes WHERE name = 's1_search' AND tenant = 'default'"),
        1
    );
    cluster.assert_no_backend_crash();
}

/// REINDEX (plain and CONCURRENTLY), VACUUM FULL, TRUNCATE and ALTER COLUMN TYPE rebuild an
/// existing index: a tenant at its limit may do all of them, and the index stays in its tenant
/// whoever runs the rebuild.
#[test]
fn rebuilds_at_the_limit_are_not_new_indexes_and_keep_their_tenant() {
    let (cluster, mut su) = setup("quota_rebuilds", Limits { max_indexes: Some(2), ..Default::default() });
    let mut a = connect_as(&cluster, ROLE);
    a.batch_execute("CREATE TABLE r1 (id int PRIMARY KEY, body text); INSERT INTO r1 SELECT i, 'common row' FROM generate_series(1, 40) i")
        .unwrap();
    a.batch_execute("CREATE INDEX r1_search ON r1 USING hybrid (id, body) WITH (key_field = 'id')").unwrap();
    create_table(&mut a, "r2", 1..=40);
    a.batch_execute(&index_sql("r2")).unwrap();
    let tenants_ok = |su: &mut Client, when: &str| {
        let rows = su.query("SELECT name, tenant FROM hybrid.indexes ORDER BY name", &[]).unwrap();
        let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            got,
            vec![("r1_search".to_string(), TENANT.to_string()), ("r2_search".to_string(), TENANT.to_string())],
            "{when}"
        );
    };
    let mut failures = Vec::new();
    for sql in [
        "REINDEX INDEX r1_search",
        "REINDEX TABLE r2",
        "VACUUM FULL r1",
        "TRUNCATE r2",
        "REINDEX INDEX CONCURRENTLY r1_search",
        "ALTER TABLE r1 ALTER COLUMN id TYPE bigint",
    ] {
        if let Err(e) = a.batch_execute(sql) {
            failures.push(format!("{sql} (as the tenant's role): {e:?}"));
        }
    }
    // A superuser (tenant "default") rebuilding the tenant's index.
    if let Err(e) = su.batch_execute("REINDEX INDEX CONCURRENTLY r2_search") {
        failures.push(format!("REINDEX CONCURRENTLY as a superuser: {e:?}"));
    }
    if let Err(e) = su.batch_execute("ALTER TABLE r1 ALTER COLUMN id TYPE int") {
        failures.push(format!("ALTER COLUMN TYPE as a superuser: {e:?}"));
    }
    assert!(failures.is_empty(), "rebuilds of existing indexes refused at the limit:\n{}", failures.join("\n"));
    tenants_ok(&mut su, "after the rebuilds");
    assert_eq!(usage(&mut su, TENANT).indexes, 2);
    assert_eq!(count(&mut a, "SELECT count(*) FROM r1 WHERE body @@@ 'common'"), 40);
    assert_nothing_half_created(&cluster, &mut su, "after the rebuilds");
    cluster.assert_no_backend_crash();
}

/// 16 sessions race to create the last index a tenant may have, at one isolation level: exactly
/// one succeeds; every other ends with 53400 (after retrying serialization failures).
fn race_for_the_last_index(level: usize) {
    let (name, begin) = LEVELS[level];
    const LIMIT: i64 = 4;
    let (cluster, mut su) =
        setup(&format!("race_idx_{name}"), Limits { max_indexes: Some(LIMIT), ..Default::default() });
    let mut a = connect_as(&cluster, ROLE);
    for i in 0..LIMIT - 1 {
        let t = format!("pre{i}");
        create_table(&mut a, &t, 1..=20);
        a.batch_execute(&index_sql(&t)).unwrap();
    }
    for s in 0..SESSIONS {
        create_table(&mut a, &format!("race{s}"), 1..=20);
    }
    assert_eq!(usage(&mut a, TENANT).indexes, LIMIT - 1);

    let barrier = Barrier::new(SESSIONS);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for s in 0..SESSIONS {
            let (barrier, results) = (&barrier, &results);
            let conn = conn_str_as(&cluster, ROLE);
            scope.spawn(move || {
                let mut c = Client::connect(&conn, NoTls).expect("session connects");
                let sql = vec![index_sql(&format!("race{s}"))];
                let r = run_retrying(&mut c, begin, &sql, 100, || {
                    barrier.wait();
                });
                results.lock().unwrap().push((s, r));
            });
        }
    });
    let results = results.into_inner().unwrap();
    let winners: Vec<usize> = results.iter().filter(|(_, (o, _))| *o == Outcome::Committed).map(|(s, _)| *s).collect();
    let retries: usize = results.iter().map(|(_, (_, r))| r).sum();
    eprintln!("{name}: winners {winners:?}, serialization failures retried: {retries}");
    assert_eq!(winners.len(), 1, "{name}: exactly one session may create the last index: {results:?}");
    if level == 0 {
        assert_eq!(retries, 0, "READ COMMITTED: the quota check waits for the tenant's lock, it does not fail");
    }
    for (s, (o, _)) in &results {
        if let Outcome::Failed(code, msg) = o {
            assert_eq!(code, "53400", "{name}: session {s} failed with {code}: {msg}");
            assert_quota_message(msg, "indexes", LIMIT, LIMIT);
        }
    }
    let w = winners[0];
    assert_eq!(usage(&mut su, TENANT).indexes, LIMIT, "{name}");
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM hybrid.indexes WHERE tenant = '{TENANT}'")), LIMIT);
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_class WHERE relname LIKE 'race%_search'"), 1);
    assert_eq!(count(&mut a, &format!("SELECT count(*) FROM race{w} WHERE body @@@ 'common'")), 20);
    assert_nothing_half_created(&cluster, &mut su, name);
    cluster.assert_no_backend_crash();
}

#[test]
fn sixteen_sessions_race_for_the_last_index_read_committed() {
    race_for_the_last_index(0);
}

#[test]
fn sixteen_sessions_race_for_the_last_index_repeatable_read() {
    race_for_the_last_index(1);
}

#[test]
fn sixteen_sessions_race_for_the_last_index_serializable() {
    race_for_the_last_index(2);
}

// ---------------------------------------------------------------------------------------------
// max_documents and max_bytes
// ---------------------------------------------------------------------------------------------

#[test]
fn max_documents_refuses_builds_and_commits_beyond_it() {
    let (cluster, mut su) = setup("quota_docs", Limits { max_documents: Some(50), ..Default::default() });
    let mut a = connect_as(&cluster, ROLE);
    create_table(&mut a, "d1", 1..=40);
    a.batch_execute(&index_sql("d1")).unwrap();
    assert_eq!(usage(&mut a, TENANT).documents, 40);

    // A build that would take the tenant beyond its limit.
    create_table(&mut a, "d2", 1..=20);
    let msg = assert_code(&mut a, &index_sql("d2"), "53400", "build beyond max_documents");
    assert_quota_message(&msg, "documents", 50, 40);
    assert_nothing_half_created(&cluster, &mut su, "after a refused build");

    // Commits: up to the limit, not beyond. The refused transaction's rows are not in the table.
    a.batch_execute("INSERT INTO d1 SELECT i, 'more common' FROM generate_series(41, 48) i").unwrap();
    let msg = assert_code(
        &mut a,
        "INSERT INTO d1 SELECT i, 'more common' FROM generate_series(49, 53) i",
        "53400",
        "5 rows at 48",
    );
    assert_quota_message(&msg, "documents", 50, 48);
    a.batch_execute("BEGIN; INSERT INTO d1 VALUES (49, 'x common'); INSERT INTO d1 VALUES (50, 'y common')").unwrap();
    a.batch_execute("COMMIT").unwrap();
    assert_code(&mut a, "INSERT INTO d1 VALUES (51, 'one too many')", "53400", "51st");
    // Rows the index does not hold (a table without a hybrid index) are not counted.
    a.batch_execute("CREATE TABLE plain (id int); INSERT INTO plain SELECT generate_series(1, 100)").unwrap();
    assert_eq!(count(&mut a, "SELECT count(*) FROM d1"), 50);
    assert_eq!(usage(&mut a, TENANT).documents, 50);
    assert_eq!(count(&mut a, "SELECT count(*) FROM d1 WHERE body @@@ 'common'"), 50);

    // Deleted rows stop counting once VACUUM removed their entries.
    a.batch_execute("DELETE FROM d1 WHERE id <= 10").unwrap();
    su.batch_execute("VACUUM d1").unwrap();
    a.batch_execute("INSERT INTO d1 SELECT i, 'refill common' FROM generate_series(101, 110) i").unwrap();
    assert_code(&mut a, "INSERT INTO d1 VALUES (111, 'again too many')", "53400", "after the refill");
    assert_eq!(usage(&mut a, TENANT).documents, 50);
    assert_verify_ok(&mut su, "d1_search");
    assert_nothing_half_created(&cluster, &mut su, "at the end");
    cluster.assert_no_backend_crash();
}

/// Rows a transaction publishes before it commits (a search of its own, `hybrid.index_info`)
/// count against the quota like any other.
#[test]
fn rows_published_before_commit_count_against_max_documents() {
    let (cluster, mut su) = setup("quota_early", Limits { max_documents: Some(20), ..Default::default() });
    let mut a = connect_as(&cluster, ROLE);
    create_table(&mut a, "e1", 1..=20);
    a.batch_execute(&index_sql("e1")).unwrap();
    assert_eq!(usage(&mut a, TENANT).documents, 20);
    let mut escaped = Vec::new();
    for (what, sql) in [
        // Read your own writes publishes the transaction's rows before the commit.
        (
            "a row published by the transaction's own search",
            "BEGIN; INSERT INTO e1 VALUES (21, 'own search common'); SELECT count(*) FROM e1 WHERE body @@@ 'common'; COMMIT",
        ),
        // So does hybrid.index_info.
        (
            "a row published by hybrid.index_info",
            "BEGIN; INSERT INTO e1 VALUES (22, 'info common'); SELECT * FROM hybrid.index_info('e1_search'); COMMIT",
        ),
    ] {
        match a.batch_execute(sql) {
            Ok(()) => escaped.push(what),
            Err(e) => {
                let _ = a.batch_execute("ROLLBACK");
                assert_eq!(db_error(&e).0, "53400", "{what}: {e}");
            }
        }
    }
    let rows = count(&mut su, "SELECT count(*) FROM e1");
    let docs = usage(&mut su, TENANT).documents;
    assert!(
        escaped.is_empty() && rows <= 20,
        "max_documents = 20 exceeded: {rows} rows committed ({docs} documents); commits that got through: {escaped:?}"
    );
    cluster.assert_no_backend_crash();
}

/// A transaction that outgrows `hybrid.pending_limit` publishes segments as it goes: the quota
/// must stop it there, not only at its commit, or one transaction can fill the disk however
/// small the tenant's max_bytes.
#[test]
fn a_big_transaction_is_stopped_at_max_bytes_not_after_writing() {
    let (cluster, mut su) = setup("quota_big_xact", Limits::default());
    let mut a = connect_as(&cluster, ROLE);
    create_table(&mut a, "g1", 1..=10);
    a.batch_execute(&index_sql("g1")).unwrap();
    let limit = usage(&mut a, TENANT).bytes + 256 * 1024;
    set_limits(&mut su, TENANT, Limits { max_bytes: Some(limit), ..Default::default() });
    // About 8 MB of distinct words, published in segments of about 1 MB.
    let (code, msg) = expect_err(
        &mut a,
        "BEGIN; SET LOCAL hybrid.pending_limit = '1MB';
         INSERT INTO g1 SELECT i, (SELECT string_agg(md5((i * 100 + j)::text), ' ') FROM generate_series(1, 30) j)
           FROM generate_series(1000, 9000) i;
         COMMIT",
    );
    let _ = a.batch_execute("ROLLBACK");
    assert_eq!(code, "53400", "{msg}");
    assert_eq!(count(&mut a, "SELECT count(*) FROM g1"), 10);
    let used = usage(&mut su, TENANT);
    assert!(
        used.bytes <= limit,
        "a refused transaction left the tenant at {} bytes on disk, beyond its max_bytes of {limit} ({used:?})",
        used.bytes
    );
    cluster.assert_no_backend_crash();
}

#[test]
fn max_bytes_refuses_builds_and_commits_beyond_it() {
    let (cluster, mut su) = setup("quota_bytes", Limits::default());
    let mut a = connect_as(&cluster, ROLE);
    create_table(&mut a, "b1", 1..=10);
    a.batch_execute(&index_sql("b1")).unwrap();
    let small = usage(&mut a, TENANT).bytes;
    assert!(small > 0, "an index takes some bytes");
    let limit = small + 64 * 1024;
    set_limits(&mut su, TENANT, Limits { max_bytes: Some(limit), ..Default::default() });

    // About 1 MB of distinct words: far more than 64 kB of index.
    a.batch_execute(
        "CREATE TABLE big (id bigint PRIMARY KEY, body text);
         INSERT INTO big SELECT i, (SELECT string_agg(md5((i * 100 + j)::text), ' ') FROM generate_series(1, 30) j)
           FROM generate_series(1, 1000) i",
    )
    .unwrap();
    let msg = assert_code(&mut a, &index_sql("big"), "53400", "build beyond max_bytes");
    assert_quota_message(&msg, "bytes", limit, small);
    assert_nothing_half_created(&cluster, &mut su, "after a refused build");

    // A commit that would go beyond it.
    let msg = assert_code(&mut a, "INSERT INTO b1 SELECT id + 100, body FROM big", "53400", "insert beyond max_bytes");
    assert!(msg.contains(TENANT) && msg.contains("bytes"), "{msg}");
    assert_eq!(count(&mut a, "SELECT count(*) FROM b1"), 10);
    // Small commits still fit.
    a.batch_execute("INSERT INTO b1 VALUES (11, 'small common')").unwrap();
    assert_eq!(count(&mut a, "SELECT count(*) FROM b1 WHERE body @@@ 'common'"), 11);
    let u = usage(&mut a, TENANT);
    assert!(u.bytes <= limit, "{u:?} beyond {limit}");
    assert_nothing_half_created(&cluster, &mut su, "at the end");
    cluster.assert_no_backend_crash();
}

/// Sessions insert concurrently into two indexes of a tenant with max_documents, at one
/// isolation level, each until refused: the tenant never holds more than its limit, every
/// session ends with 53400, and what was committed is exactly what the indexes hold.
fn race_for_the_last_documents(level: usize) {
    let (name, begin) = LEVELS[level];
    const LIMIT: i64 = 100;
    const BATCH: i64 = 3;
    let (cluster, mut su) =
        setup(&format!("race_docs_{name}"), Limits { max_documents: Some(LIMIT), ..Default::default() });
    let mut a = connect_as(&cluster, ROLE);
    for t in ["w0", "w1"] {
        create_table(&mut a, t, 1..=20);
        a.batch_execute(&index_sql(t)).unwrap();
    }
    assert_eq!(usage(&mut a, TENANT).documents, 40);

    let barrier = Barrier::new(SESSIONS);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for s in 0..SESSIONS {
            let (barrier, results) = (&barrier, &results);
            let conn = conn_str_as(&cluster, ROLE);
            scope.spawn(move || {
                let mut c = Client::connect(&conn, NoTls).expect("session connects");
                let table = format!("w{}", s % 2);
                let (mut committed, mut retries, mut first) = (0i64, 0usize, true);
                for batch in 0.. {
                    let first_id = 1_000 * (s as i64 + 1) + batch * BATCH;
                    let sql = vec![format!(
                        "INSERT INTO {table} SELECT i, 'session {s} common' FROM generate_series({first_id}, {}) i",
                        first_id + BATCH - 1
                    )];
                    let (o, r) = run_retrying(&mut c, begin, &sql, 500, || {
                        if first {
                            barrier.wait();
                        }
                    });
                    first = false;
                    retries += r;
                    match o {
                        Outcome::Committed => committed += BATCH,
                        Outcome::Failed(code, msg) => {
                            results.lock().unwrap().push((s, committed, retries, code, msg));
                            return;
                        }
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    let committed: i64 = results.iter().map(|r| r.1).sum();
    let retries: usize = results.iter().map(|r| r.2).sum();
    eprintln!("{name}: {committed} rows committed by {SESSIONS} sessions, {retries} serialization failures retried");
    for (s, _, _, code, msg) in &results {
        assert_eq!(code, "53400", "{name}: session {s} ended with {code}: {msg}");
    }
    if level == 0 {
        assert_eq!(retries, 0, "READ COMMITTED: the quota check waits for the tenant's lock, it does not fail");
    }
    let rows = count(&mut su, "SELECT (SELECT count(*) FROM w0) + (SELECT count(*) FROM w1)");
    let docs = usage(&mut su, TENANT).documents;
    assert!(rows <= LIMIT && docs <= LIMIT, "{name}: limit {LIMIT} exceeded: {rows} rows, {docs} documents");
    assert_eq!(rows, 40 + committed, "{name}: rows vs. commits");
    assert_eq!(docs, rows, "{name}: documents vs. rows");
    // Every session was refused only when another batch no longer fit.
    assert!(rows > LIMIT - BATCH, "{name}: sessions refused while {rows} of {LIMIT} documents were used");
    for t in ["w0", "w1"] {
        assert_verify_ok(&mut su, &format!("{t}_search"));
    }
    assert_eq!(
        count(&mut a, "SELECT count(*) FROM w0 WHERE body @@@ 'common'")
            + count(&mut a, "SELECT count(*) FROM w1 WHERE body @@@ 'common'"),
        rows
    );
    cluster.assert_no_backend_crash();
}

#[test]
fn sixteen_sessions_race_for_the_last_documents_read_committed() {
    race_for_the_last_documents(0);
}

#[test]
fn sixteen_sessions_race_for_the_last_documents_repeatable_read() {
    race_for_the_last_documents(1);
}

#[test]
fn sixteen_sessions_race_for_the_last_documents_serializable() {
    race_for_the_last_documents(2);
}

// ---------------------------------------------------------------------------------------------
// An index's own max_documents
// ---------------------------------------------------------------------------------------------

#[test]
fn index_max_documents_option_limits_commits() {
    let cluster = TestCluster::new("index_max_docs");
    let mut c = cluster.connect();
    c.batch_execute(
        "CREATE TABLE m (id bigint PRIMARY KEY, body text);
         CREATE INDEX m_search ON m USING hybrid (id, body) WITH (key_field = 'id', max_documents = 10);
         INSERT INTO m SELECT i, 'common ' || i FROM generate_series(1, 8) i",
    )
    .unwrap();
    let (code, msg) = expect_err(&mut c, "INSERT INTO m SELECT i, 'common' FROM generate_series(9, 11) i");
    assert_eq!(code, "53400", "{msg}");
    assert!(msg.contains("max_documents") && msg.contains("10") && msg.contains('8'), "{msg}");
    c.batch_execute("INSERT INTO m VALUES (9, 'common'), (10, 'common')").unwrap();
    assert_code(&mut c, "INSERT INTO m VALUES (11, 'common')", "53400", "11th row");
    assert_eq!(count(&mut c, "SELECT count(*) FROM m"), 10);
    assert_eq!(index_info(&mut c, "m_search").documents, 10);
    // Other hybrid indexes of the tenant are not limited by it.
    c.batch_execute(
        "CREATE TABLE n (id bigint PRIMARY KEY, body text);
         CREATE INDEX n_search ON n USING hybrid (id, body) WITH (key_field = 'id');
         INSERT INTO n SELECT i, 'common' FROM generate_series(1, 50) i",
    )
    .unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) FROM n WHERE body @@@ 'common'"), 50);
    cluster.assert_no_backend_crash();
}

/// An index built over more rows than its own max_documents is refused like one that would
/// grow beyond it, and leaves nothing behind.
#[test]
fn index_max_documents_option_limits_the_build() {
    let cluster = TestCluster::new("index_max_docs_build");
    let mut c = cluster.connect();
    create_table(&mut c, "mb", 1..=20);
    let (code, msg) = expect_err(
        &mut c,
        "CREATE INDEX mb_search ON mb USING hybrid (id, body) WITH (key_field = 'id', max_documents = 10)",
    );
    assert_eq!(code, "53400", "building 20 rows into an index with max_documents = 10: {code} {msg}");
    assert!(cluster.sidecar_dirs(TEST_DB).is_empty());
    assert_eq!(count(&mut c, "SELECT count(*) FROM hybrid.index_registry"), 0);
    cluster.assert_no_backend_crash();
}

/// Sessions insert concurrently into one index with its own max_documents: it never holds
/// more than that.
#[test]
fn sixteen_sessions_race_for_an_index_own_max_documents() {
    const LIMIT: i64 = 60;
    const BATCH: i64 = 2;
    let cluster = TestCluster::new("race_index_max_docs");
    let mut c = cluster.connect();
    c.batch_execute(&format!(
        "CREATE TABLE m (id bigint PRIMARY KEY, body text);
         CREATE INDEX m_search ON m USING hybrid (id, body) WITH (key_field = 'id', max_documents = {LIMIT})"
    ))
    .unwrap();
    for (name, begin) in LEVELS {
        c.batch_execute("DELETE FROM m").unwrap();
        c.batch_execute("VACUUM m").unwrap();
        assert_eq!(index_info(&mut c, "m_search").documents, 0);
        let barrier = Barrier::new(SESSIONS);
        let ends = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for s in 0..SESSIONS {
                let (barrier, ends) = (&barrier, &ends);
                let conn = cluster.conn_str(TEST_DB);
                scope.spawn(move || {
                    let mut c = Client::connect(&conn, NoTls).expect("session connects");
                    let mut first = true;
                    for batch in 0.. {
                        let id = 1_000 * (s as i64 + 1) + batch * BATCH;
                        let sql = vec![format!(
                            "INSERT INTO m SELECT i, 'common' FROM generate_series({id}, {}) i",
                            id + BATCH - 1
                        )];
                        let (o, _) = run_retrying(&mut c, begin, &sql, 500, || {
                            if first {
                                barrier.wait();
                            }
                        });
                        first = false;
                        if let Outcome::Failed(code, msg) = o {
                            ends.lock().unwrap().push((s, code, msg));
                            return;
                        }
                    }
                });
            }
        });
        for (s, code, msg) in ends.into_inner().unwrap() {
            assert_eq!(code, "53400", "{name}: session {s}: {msg}");
        }
        let rows = count(&mut c, "SELECT count(*) FROM m");
        let docs = index_info(&mut c, "m_search").documents;
        assert!(
            rows <= LIMIT && docs <= LIMIT,
            "{name}: the index's max_documents = {LIMIT} exceeded: {rows} rows, {docs} documents"
        );
    }
    cluster.assert_no_backend_crash();
}
