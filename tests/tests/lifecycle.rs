//! Sidecar folders over the life of an index (invariant 5): one folder per index, named by its
//! relfilenode; rebuilds move to a new folder and remove the old one only at commit; aborted
//! builds and every kind of DROP leave nothing behind; `hybrid.indexes` follows; files are
//! private to the server's OS user.

use std::path::PathBuf;
use std::time::Duration;

use pg_hybrid_tests::*;

fn names(dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter().map(|d| d.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

/// Panics unless the database's sidecar holds exactly the folder of `index`'s relfilenode.
/// Returns that relfilenode.
fn assert_single_folder(cluster: &TestCluster, c: &mut Client, index: &str, when: &str) -> u32 {
    let node = relfilenode(c, index);
    let dirs = cluster.sidecar_dirs(TEST_DB);
    assert_eq!(names(&dirs), vec![node.to_string()], "{when}: expected only the folder of {index}'s relfilenode");
    node
}

fn assert_no_folder(cluster: &TestCluster, when: &str) {
    let dirs = cluster.sidecar_dirs(TEST_DB);
    assert!(dirs.is_empty(), "{when}: folders left behind: {dirs:?}");
}

fn catalog_rows(c: &mut Client) -> i64 {
    count(c, "SELECT count(*) FROM hybrid.indexes")
}

fn setup(name: &str) -> (TestCluster, Client) {
    let cluster = TestCluster::new(name);
    let mut c = cluster.connect();
    create_docs(&mut c);
    insert_docs(&mut c, &(1..=200).collect::<Vec<_>>());
    force_index(&mut c);
    (cluster, c)
}

fn assert_searchable(c: &mut Client, ids: std::ops::RangeInclusive<i64>, when: &str) {
    let expected: std::collections::BTreeSet<i64> = ids.collect();
    assert_eq!(search_ids(c, COMMON_WORD), expected, "{when}");
    if let Some(first) = expected.iter().next() {
        assert_eq!(search_ids(c, &token(*first)), [*first].into_iter().collect(), "{when}");
    }
}

#[test]
fn create_reindex_truncate_vacuum_full_each_leave_one_new_folder() {
    let (cluster, mut c) = setup("rebuilds");
    let mut node = assert_single_folder(&cluster, &mut c, "docs_search", "after CREATE INDEX");
    assert_searchable(&mut c, 1..=200, "after CREATE INDEX");

    let rebuilds = [
        ("REINDEX INDEX docs_search", true),
        ("REINDEX TABLE docs", true),
        ("VACUUM FULL docs", true),
        ("CLUSTER docs USING docs_pkey", true),
        ("TRUNCATE docs", false),
    ];
    for (sql, keeps_rows) in rebuilds {
        c.batch_execute(sql).unwrap();
        let new_node = assert_single_folder(&cluster, &mut c, "docs_search", &format!("after {sql}"));
        assert_ne!(new_node, node, "{sql} should build into a new relfilenode");
        node = new_node;
        if keeps_rows {
            assert_searchable(&mut c, 1..=200, &format!("after {sql}"));
        } else {
            assert!(search_ids(&mut c, COMMON_WORD).is_empty(), "after {sql}");
        }
        assert_eq!(catalog_rows(&mut c), 1, "after {sql}: one hybrid.indexes row");
    }
    // The index built by TRUNCATE takes new rows.
    insert_docs(&mut c, &(1000..=1010).collect::<Vec<_>>());
    assert_searchable(&mut c, 1000..=1010, "after TRUNCATE and new inserts");
    assert_verify_ok(&mut c, "docs_search");

    // A TRUNCATE in the transaction that created the table takes another path in Postgres.
    c.batch_execute(&format!(
        "BEGIN; CREATE TABLE t2 (id bigint PRIMARY KEY, body text);
         CREATE INDEX t2_search ON t2 USING hybrid (id, body) WITH (key_field = 'id');
         INSERT INTO t2 VALUES (1, 'one {COMMON_WORD}'); TRUNCATE t2;
         INSERT INTO t2 VALUES (2, 'two {COMMON_WORD}'); COMMIT;"
    ))
    .unwrap();
    let t2 = relfilenode(&mut c, "t2_search");
    let mut expected = vec![node.to_string(), t2.to_string()];
    expected.sort();
    assert_eq!(names(&cluster.sidecar_dirs(TEST_DB)), expected, "after CREATE TABLE + TRUNCATE in one transaction");
    assert_eq!(id_set(&mut c, "SELECT id FROM t2 WHERE body @@@ 'common'"), [2].into_iter().collect());
    cluster.assert_no_backend_crash();
}

#[test]
fn rolled_back_rebuilds_keep_the_old_folder_working() {
    let (cluster, mut c) = setup("rebuild_rollback");
    let node = assert_single_folder(&cluster, &mut c, "docs_search", "after CREATE INDEX");

    for sql in ["REINDEX INDEX docs_search", "REINDEX TABLE docs", "TRUNCATE docs"] {
        c.batch_execute(&format!("BEGIN; {sql}")).unwrap();
        let during = relfilenode(&mut c, "docs_search");
        assert_ne!(during, node, "{sql} inside the transaction");
        c.batch_execute("ROLLBACK").unwrap();
        assert_eq!(assert_single_folder(&cluster, &mut c, "docs_search", &format!("after {sql}; ROLLBACK")), node);
        assert_searchable(&mut c, 1..=200, &format!("after {sql}; ROLLBACK"));

        c.batch_execute(&format!("BEGIN; SAVEPOINT s; {sql}; ROLLBACK TO SAVEPOINT s; COMMIT")).unwrap();
        assert_eq!(
            assert_single_folder(&cluster, &mut c, "docs_search", &format!("after {sql} in a rolled-back savepoint")),
            node
        );
        assert_searchable(&mut c, 1..=200, &format!("after {sql} in a rolled-back savepoint"));
    }
    // The old folder still takes writes.
    c.batch_execute(&format!("INSERT INTO docs VALUES (500, 't', 'survivor {COMMON_WORD}', 'en')")).unwrap();
    assert_eq!(search_ids(&mut c, "survivor"), [500].into_iter().collect());
    assert_eq!(catalog_rows(&mut c), 1);
    assert_verify_ok(&mut c, "docs_search");

    // REINDEX in a released savepoint of a committed transaction does move.
    c.batch_execute("BEGIN; SAVEPOINT s; REINDEX INDEX docs_search; RELEASE SAVEPOINT s; COMMIT").unwrap();
    let moved = assert_single_folder(&cluster, &mut c, "docs_search", "after a committed REINDEX in a savepoint");
    assert_ne!(moved, node);
    assert_eq!(search_ids(&mut c, "survivor"), [500].into_iter().collect());
    cluster.assert_no_backend_crash();
}

#[test]
fn aborted_create_index_leaves_no_folder_and_no_catalog_row() {
    let cluster = TestCluster::new("create_abort");
    let mut c = cluster.connect();
    c.batch_execute(DOCS_TABLE).unwrap();
    insert_docs(&mut c, &(1..=300).collect::<Vec<_>>());

    c.batch_execute(&format!("BEGIN; {DOCS_INDEX}")).unwrap();
    assert_eq!(cluster.sidecar_dirs(TEST_DB).len(), 1, "the build writes a folder");
    assert_eq!(catalog_rows(&mut c), 1);
    c.batch_execute("ROLLBACK").unwrap();
    assert_no_folder(&cluster, "after CREATE INDEX; ROLLBACK");
    assert_eq!(catalog_rows(&mut c), 0, "after CREATE INDEX; ROLLBACK");

    c.batch_execute(&format!("BEGIN; SAVEPOINT s; {DOCS_INDEX}; ROLLBACK TO SAVEPOINT s; COMMIT")).unwrap();
    assert_no_folder(&cluster, "after CREATE INDEX in a rolled-back savepoint");
    assert_eq!(catalog_rows(&mut c), 0, "after CREATE INDEX in a rolled-back savepoint");

    // A build that fails half-way (an error after the folder was made) leaves nothing either.
    c.batch_execute(
        "CREATE TABLE nokey (id bigint, body text);
         INSERT INTO nokey SELECT i, 'word ' || i FROM generate_series(1, 100) i;
         INSERT INTO nokey VALUES (NULL, 'no key here');",
    )
    .unwrap();
    let err =
        sqlstate(c.batch_execute("CREATE INDEX nokey_search ON nokey USING hybrid (id, body) WITH (key_field = 'id')"));
    assert_eq!(err, "23502");
    // The backend sends the error before it aborts the transaction (and removes the folder):
    // the next statement's answer is what guarantees the abort has run.
    assert_eq!(catalog_rows(&mut c), 0, "after a failed CREATE INDEX");
    assert_no_folder(&cluster, "after a failed CREATE INDEX");

    // An aborted build inside a transaction that then creates the index for real.
    c.batch_execute(&format!(
        "BEGIN; SAVEPOINT a; {DOCS_INDEX}; ROLLBACK TO SAVEPOINT a; SAVEPOINT b; {DOCS_INDEX}; RELEASE SAVEPOINT b; COMMIT"
    ))
    .unwrap();
    assert_single_folder(&cluster, &mut c, "docs_search", "after abort-then-create in one transaction");
    assert_eq!(catalog_rows(&mut c), 1);
    force_index(&mut c);
    assert_searchable(&mut c, 1..=300, "after abort-then-create in one transaction");
    cluster.assert_no_backend_crash();
}

#[test]
fn drops_leave_no_folder_and_no_catalog_row() {
    let cluster = TestCluster::new("drops");
    let mut c = cluster.connect();
    force_index(&mut c);
    let make = |c: &mut Client| {
        create_docs(c);
        insert_docs(c, &(1..=100).collect::<Vec<_>>());
        assert_eq!(cluster.sidecar_dirs(TEST_DB).len(), 1);
        assert_eq!(catalog_rows(c), 1);
    };

    // DROP INDEX rolled back keeps everything; committed removes everything.
    make(&mut c);
    let node = relfilenode(&mut c, "docs_search");
    c.batch_execute("BEGIN; DROP INDEX docs_search; ROLLBACK").unwrap();
    assert_eq!(assert_single_folder(&cluster, &mut c, "docs_search", "after DROP INDEX; ROLLBACK"), node);
    assert_searchable(&mut c, 1..=100, "after DROP INDEX; ROLLBACK");
    assert_eq!(catalog_rows(&mut c), 1, "after DROP INDEX; ROLLBACK");
    c.batch_execute("BEGIN; SAVEPOINT s; DROP TABLE docs; ROLLBACK TO SAVEPOINT s; COMMIT").unwrap();
    assert_eq!(
        assert_single_folder(&cluster, &mut c, "docs_search", "after DROP TABLE in a rolled-back savepoint"),
        node
    );
    assert_searchable(&mut c, 1..=100, "after DROP TABLE in a rolled-back savepoint");

    c.batch_execute("DROP INDEX docs_search").unwrap();
    assert_no_folder(&cluster, "after DROP INDEX");
    assert_eq!(catalog_rows(&mut c), 0, "after DROP INDEX");
    c.batch_execute("DROP TABLE docs").unwrap();

    // DROP TABLE, with two hybrid indexes on it.
    make(&mut c);
    c.batch_execute("CREATE INDEX docs_title ON docs USING hybrid (id, title) WITH (key_field = 'id')").unwrap();
    assert_eq!(cluster.sidecar_dirs(TEST_DB).len(), 2);
    assert_eq!(catalog_rows(&mut c), 2);
    c.batch_execute("DROP TABLE docs").unwrap();
    assert_no_folder(&cluster, "after DROP TABLE");
    assert_eq!(catalog_rows(&mut c), 0, "after DROP TABLE");

    // DROP SCHEMA ... CASCADE.
    c.batch_execute("CREATE SCHEMA app; SET search_path = app, public").unwrap();
    make(&mut c);
    c.batch_execute("RESET search_path; DROP SCHEMA app CASCADE").unwrap();
    assert_no_folder(&cluster, "after DROP SCHEMA CASCADE");
    assert_eq!(catalog_rows(&mut c), 0, "after DROP SCHEMA CASCADE");

    // DROP OWNED BY drops the tables (and indexes) a role owns; the role needs no privilege
    // on pg_hybrid's catalog to create an index.
    c.batch_execute("CREATE ROLE owner_role; GRANT CREATE ON SCHEMA public TO owner_role; SET ROLE owner_role")
        .unwrap();
    make(&mut c);
    c.batch_execute("RESET ROLE; DROP OWNED BY owner_role").unwrap();
    assert_no_folder(&cluster, "after DROP OWNED BY");
    assert_eq!(catalog_rows(&mut c), 0, "after DROP OWNED BY");

    // DROP EXTENSION ... CASCADE drops the indexes (and the catalog with them).
    make(&mut c);
    c.batch_execute("DROP EXTENSION pg_hybrid CASCADE").unwrap();
    assert_no_folder(&cluster, "after DROP EXTENSION CASCADE");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM pg_class WHERE relname = 'docs_search'"),
        0,
        "the index went with the extension"
    );
    // And everything works again after re-creating it.
    c.batch_execute("CREATE EXTENSION pg_hybrid").unwrap();
    assert_eq!(catalog_rows(&mut c), 0, "hybrid.indexes after re-creating the extension");
    c.batch_execute(DOCS_INDEX).unwrap();
    assert_single_folder(&cluster, &mut c, "docs_search", "after re-creating the extension and the index");
    assert_eq!(catalog_rows(&mut c), 1);
    assert_searchable(&mut c, 1..=100, "after re-creating the extension and the index");
    cluster.assert_no_backend_crash();
}

#[test]
fn drop_database_leaves_no_folder() {
    let cluster = TestCluster::new("drop_db");
    cluster.create_database("victim");
    let oid = cluster.db_oid("victim");
    let mut v = cluster.connect_db("victim");
    create_docs(&mut v);
    insert_docs(&mut v, &(1..=100).collect::<Vec<_>>());
    assert_eq!(cluster.sidecar_dirs_of_oid(oid).len(), 1);
    assert!(cluster.sidecar_db_dir(oid).exists());

    // A DROP DATABASE that fails (the database is in use) removes nothing.
    let mut admin = cluster.connect_db("postgres");
    assert_eq!(sqlstate(admin.batch_execute("DROP DATABASE victim")), "55006");
    assert_eq!(cluster.sidecar_dirs_of_oid(oid).len(), 1, "after a failed DROP DATABASE");
    force_index(&mut v);
    assert_searchable(&mut v, 1..=100, "after a failed DROP DATABASE");
    drop(v);

    // Wait for the victim's backend to exit, then drop it.
    assert!(
        wait_until(Duration::from_secs(10), || count(
            &mut admin,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'victim'"
        ) == 0),
        "session on victim did not end"
    );
    admin.batch_execute("DROP DATABASE victim").unwrap();
    assert!(!cluster.sidecar_db_dir(oid).exists(), "pg_hybrid/{oid} left behind by DROP DATABASE");
    // Other databases' folders are untouched.
    let mut t = cluster.connect();
    create_docs(&mut t);
    admin.batch_execute("CREATE DATABASE other").unwrap();
    admin.batch_execute("DROP DATABASE other").unwrap();
    assert_eq!(cluster.sidecar_dirs(TEST_DB).len(), 1, "DROP DATABASE of another database");
    cluster.assert_no_backend_crash();
}

#[test]
fn temporary_table_index_folder_goes_with_the_session() {
    let cluster = TestCluster::new("temp");
    let mut s = cluster.connect();
    s.batch_execute(&format!(
        "CREATE TEMP TABLE tdocs (id bigint PRIMARY KEY, body text);
         CREATE INDEX tdocs_search ON tdocs USING hybrid (id, body) WITH (key_field = 'id');
         INSERT INTO tdocs SELECT i, 'temp word {COMMON_WORD} tok' || i FROM generate_series(1, 50) i;
         SET enable_seqscan = off;"
    ))
    .unwrap();
    assert_eq!(id_set(&mut s, "SELECT id FROM tdocs WHERE body @@@ 'tok7'"), [7].into_iter().collect());
    let dirs = cluster.sidecar_dirs(TEST_DB);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let node = relfilenode(&mut s, "tdocs_search");
    let name = names(&dirs).remove(0);
    assert!(name.starts_with('t') && name.ends_with(&format!("_{node}")), "temporary index folder named {name}");
    drop(s);
    assert!(
        wait_until(Duration::from_secs(15), || cluster.sidecar_dirs(TEST_DB).is_empty()),
        "folder of a temporary table's index left after its session ended: {:?}",
        cluster.sidecar_dirs(TEST_DB)
    );
    cluster.assert_no_backend_crash();
}

#[test]
fn hybrid_indexes_has_one_row_per_index() {
    let cluster = TestCluster::new("catalog");
    let mut c = cluster.connect();
    create_docs(&mut c);
    c.batch_execute(
        r#"CREATE TABLE notes (code text PRIMARY KEY, note varchar(200));
           CREATE INDEX notes_search ON notes USING hybrid (code, note)
               WITH (key_field = 'code', fields = '{"note": {"tokenizer": "whitespace"}}');"#,
    )
    .unwrap();
    c.batch_execute("REINDEX INDEX docs_search").unwrap();
    let rows: Vec<(String, String, String, String)> = c
        .query(
            "SELECT name, settings->>'key_field', index_oid::text, table_oid::text FROM hybrid.indexes ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("docs_search".into(), "id".into(), "docs_search".into(), "docs".into()),
            ("notes_search".into(), "code".into(), "notes_search".into(), "notes".into()),
        ]
    );
    assert_eq!(count(&mut c, "SELECT count(DISTINCT id) FROM hybrid.indexes"), 2);
    let mut names = cluster
        .sidecar_dirs(TEST_DB)
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    names.sort();
    let mut nodes =
        vec![relfilenode(&mut c, "docs_search").to_string(), relfilenode(&mut c, "notes_search").to_string()];
    nodes.sort();
    assert_eq!(names, nodes);
    cluster.assert_no_backend_crash();
}

#[test]
fn sidecar_files_are_private_to_the_server_user() {
    let (cluster, mut c) = setup("modes");
    c.batch_execute("UPDATE docs SET body = body || ' more' WHERE id % 2 = 0; DELETE FROM docs WHERE id % 5 = 0")
        .unwrap();
    c.batch_execute("VACUUM docs").unwrap();
    c.batch_execute("BEGIN; SET LOCAL hybrid.pending_limit = '1MB'").unwrap();
    insert_docs(&mut c, &(10_000..=12_000).collect::<Vec<_>>());
    c.batch_execute("COMMIT; REINDEX INDEX docs_search").unwrap();
    insert_docs(&mut c, &(20_000..=20_010).collect::<Vec<_>>());

    assert_sidecar_private(&cluster, |paths| assert!(paths.len() > 5, "expected index files: {paths:?}"));
}

/// Rebuilds that make a new index (new OID) rather than a new relfilenode of the same one:
/// ALTER COLUMN TYPE, REINDEX CONCURRENTLY, CREATE INDEX CONCURRENTLY; and per-partition
/// indexes of a partitioned table.
#[test]
fn concurrent_and_alter_table_rebuilds_leave_one_folder_per_index() {
    let (cluster, mut c) = setup("rebuilds_new_oid");
    let node = assert_single_folder(&cluster, &mut c, "docs_search", "after CREATE INDEX");

    c.batch_execute("ALTER TABLE docs ALTER COLUMN body TYPE varchar(500)").unwrap();
    let node2 = assert_single_folder(&cluster, &mut c, "docs_search", "after ALTER COLUMN TYPE");
    assert_ne!(node2, node);
    assert_searchable(&mut c, 1..=200, "after ALTER COLUMN TYPE");

    c.batch_execute("REINDEX INDEX CONCURRENTLY docs_search").unwrap();
    let node3 = assert_single_folder(&cluster, &mut c, "docs_search", "after REINDEX CONCURRENTLY");
    assert_ne!(node3, node2);
    assert_searchable(&mut c, 1..=200, "after REINDEX CONCURRENTLY");

    c.batch_execute("DROP INDEX docs_search").unwrap();
    c.batch_execute(
        "CREATE INDEX CONCURRENTLY docs_search ON docs USING hybrid (id, title, body) WITH (key_field = 'id')",
    )
    .unwrap();
    assert_single_folder(&cluster, &mut c, "docs_search", "after CREATE INDEX CONCURRENTLY");
    assert_searchable(&mut c, 1..=200, "after CREATE INDEX CONCURRENTLY");
    assert_verify_ok(&mut c, "docs_search");

    // A partitioned table: one folder per partition's index, all gone with the table.
    c.batch_execute(&format!(
        "CREATE TABLE parts (id bigint, body text) PARTITION BY RANGE (id);
         CREATE TABLE parts_a PARTITION OF parts FOR VALUES FROM (0) TO (100);
         CREATE TABLE parts_b PARTITION OF parts FOR VALUES FROM (100) TO (200);
         CREATE INDEX parts_search ON parts USING hybrid (id, body) WITH (key_field = 'id');
         INSERT INTO parts SELECT i, 'part tok' || i || ' {COMMON_WORD}' FROM generate_series(1, 199) i;"
    ))
    .unwrap();
    assert_eq!(cluster.sidecar_dirs(TEST_DB).len(), 3, "docs_search plus one folder per partition");
    assert_eq!(id_set(&mut c, "SELECT id FROM parts WHERE body @@@ 'tok5 OR tok150'"), [5, 150].into_iter().collect());
    c.batch_execute("CREATE TABLE parts_c PARTITION OF parts FOR VALUES FROM (200) TO (300)").unwrap();
    assert_eq!(cluster.sidecar_dirs(TEST_DB).len(), 4, "a new partition gets its index");
    c.batch_execute("ALTER TABLE parts DETACH PARTITION parts_c; DROP TABLE parts_c").unwrap();
    assert_eq!(cluster.sidecar_dirs(TEST_DB).len(), 3, "after dropping a detached partition");
    c.batch_execute("DROP TABLE parts").unwrap();
    assert_single_folder(&cluster, &mut c, "docs_search", "after DROP TABLE of a partitioned table");
    cluster.assert_no_backend_crash();
}

/// `hybrid.indexes` keeps exactly one row per existing index, with its current name, through
/// the commands that rename an index or replace it by a new one.
#[test]
fn hybrid_indexes_follows_rename_alter_type_and_reindex_concurrently() {
    let (cluster, mut c) = setup("catalog_follows");
    let check = |c: &mut Client, when: &str| {
        let rows: Vec<(String, String, String)> = c
            .query("SELECT name, index_oid::text, settings->>'key_field' FROM hybrid.indexes ORDER BY name", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let live: Vec<String> = c
            .query(
                "SELECT c.relname::text FROM pg_class c JOIN pg_am a ON a.oid = c.relam
                  WHERE a.amname = 'hybrid' AND c.relkind = 'i' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expected: Vec<(String, String, String)> =
            live.iter().map(|n| (n.clone(), n.clone(), "id".to_string())).collect();
        assert_eq!(rows, expected, "{when}: hybrid.indexes (name, index, key_field) vs the hybrid indexes that exist");
    };
    check(&mut c, "after CREATE INDEX");
    c.batch_execute("ALTER TABLE docs ALTER COLUMN body TYPE varchar(500)").unwrap();
    check(&mut c, "after ALTER TABLE ... ALTER COLUMN TYPE");
    c.batch_execute("REINDEX INDEX CONCURRENTLY docs_search").unwrap();
    check(&mut c, "after REINDEX INDEX CONCURRENTLY");
    c.batch_execute("ALTER INDEX docs_search RENAME TO docs_fts").unwrap();
    check(&mut c, "after ALTER INDEX ... RENAME");
    cluster.assert_no_backend_crash();
}
