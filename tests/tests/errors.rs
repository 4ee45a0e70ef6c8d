//! Bad input is a Postgres ERROR with a real SQLSTATE, never a crash (invariant 7): after each
//! error the session goes on working, no backend died, and a failed CREATE INDEX leaves no
//! folder and no catalog row.

use pg_hybrid_tests::*;

/// Runs `sql`, expects SQLSTATE `code`, then checks that the session still works and that a
/// search through the index still answers correctly.
fn expect_error(cluster: &TestCluster, c: &mut Client, sql: &str, code: &str) {
    let result = c.batch_execute(sql);
    let err = match &result {
        Ok(()) => panic!("expected SQLSTATE {code} from `{sql}`, it succeeded"),
        Err(e) => e.as_db_error().unwrap_or_else(|| panic!("`{sql}`: not a database error: {e}")).clone(),
    };
    assert_eq!(err.code().code(), code, "`{sql}` failed with {}: {}", err.code().code(), err.message());
    assert!(!err.message().is_empty());
    c.batch_execute("SELECT 1").unwrap_or_else(|e| panic!("session unusable after `{sql}`: {e}"));
    let found = search_ids(c, "tok3");
    assert_eq!(found, [3].into_iter().collect(), "search after `{sql}`");
    cluster.assert_no_backend_crash();
}

fn setup(name: &str) -> (TestCluster, Client) {
    let cluster = TestCluster::new(name);
    let mut c = cluster.connect();
    create_docs(&mut c);
    insert_docs(&mut c, &(1..=50).collect::<Vec<_>>());
    force_index(&mut c);
    (cluster, c)
}

#[test]
fn bad_search_queries_are_errors_with_sqlstates() {
    let (cluster, mut c) = setup("query_errors");
    assert_uses_index(&mut c, "SELECT id FROM docs WHERE body @@@ 'harbor AND'", "docs_search");
    let deep = format!("{}harbor{}", "(".repeat(2_000), ")".repeat(2_000));
    let nots = format!("{}harbor", "NOT ".repeat(2_000));
    let cases: Vec<(String, &str)> = vec![
        ("harbor AND".into(), "42601"),
        ("AND harbor".into(), "42601"),
        ("(harbor".into(), "42601"),
        ("harbor)".into(), "42601"),
        ("\"unterminated phrase".into(), "42601"),
        ("".into(), "42601"),
        ("   ".into(), "42601"),
        ("title:".into(), "42601"),
        (deep, "42601"),
        (nots, "42601"),
        ("nosuchfield:harbor".into(), "42703"),
        ("harbor OR missing_field:lantern".into(), "42703"),
    ];
    for kind in ScanKind::ALL {
        set_scan_kind(&mut c, kind);
        for (query, code) in &cases {
            let sql = format!("SELECT id FROM docs WHERE body @@@ '{}'", query.replace('\'', "''"));
            expect_error(&cluster, &mut c, &sql, code);
            // The same through a parameter.
            let r = c.query("SELECT id FROM docs WHERE body @@@ $1", &[query]);
            assert_eq!(sqlstate(r), *code, "{kind:?} parameter {query:?}");
            c.batch_execute("SELECT 1").unwrap();
        }
    }
    // An error inside a transaction aborts it like any other error.
    c.batch_execute("BEGIN").unwrap();
    c.batch_execute("INSERT INTO docs VALUES (999, 't', 'inflight common', 'en')").unwrap();
    assert_eq!(sqlstate(c.batch_execute("SELECT id FROM docs WHERE body @@@ 'harbor AND'")), "42601");
    assert_eq!(sqlstate(c.batch_execute("SELECT 1")), "25P02");
    c.batch_execute("ROLLBACK").unwrap();
    assert!(search_ids(&mut c, "inflight").is_empty());

    // Valid edge cases are not errors.
    assert!(c.query("SELECT id FROM docs WHERE body @@@ NULL", &[]).unwrap().is_empty());
    let title_hits = id_set(
        &mut c,
        &format!("SELECT id FROM docs WHERE body @@@ 'title:{}'", title_of(3).split(' ').next().unwrap()),
    );
    assert!(title_hits.contains(&3));
    cluster.assert_no_backend_crash();
}

#[test]
fn bad_queries_without_an_index_are_errors_too() {
    let cluster = TestCluster::new("seqscan_errors");
    let mut c = cluster.connect();
    c.batch_execute("CREATE TABLE plain (id int, body text); INSERT INTO plain VALUES (3, 'harbor tok3')").unwrap();
    for (query, code) in [("harbor AND", "42601"), ("(harbor", "42601"), ("", "42601")] {
        let sql = format!("SELECT id FROM plain WHERE body @@@ '{query}'");
        assert_eq!(sqlstate(c.batch_execute(&sql)), code, "{sql}");
        assert_eq!(sqlstate(c.batch_execute(&format!("SELECT hybrid.search_text('harbor', '{query}')"))), code);
        c.batch_execute("SELECT 1").unwrap();
    }
    let n = count(&mut c, "SELECT count(*) FROM plain WHERE body @@@ 'harbor'");
    assert_eq!(n, 1, "the operator works on a column without an index");
    cluster.assert_no_backend_crash();
}

#[test]
fn bad_index_definitions_are_errors_and_leave_nothing() {
    let (cluster, mut c) = setup("ddl_errors");
    c.batch_execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, code text, n int, body text, created timestamptz);
         INSERT INTO t SELECT i, 'c' || i, i, 'body ' || i, now() FROM generate_series(1, 20) i;
         CREATE UNLOGGED TABLE u (id bigint PRIMARY KEY, body text);",
    )
    .unwrap();
    let before_dirs = cluster.sidecar_dirs(TEST_DB);
    let cases: &[(&str, &str)] = &[
        // key_field missing.
        ("CREATE INDEX e ON t USING hybrid (id, body)", "22023"),
        // key_field not among the indexed columns.
        ("CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'code')", "42703"),
        ("CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'nosuch')", "42703"),
        // fields: not JSON, not an object, unknown tokenizer, unknown option, bad value.
        ("CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'id', fields = '{bad')", "22023"),
        ("CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'id', fields = '[1, 2]')", "22023"),
        (
            r#"CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'id', fields = '{"body": {"tokenizer": "klingon"}}')"#,
            "22023",
        ),
        (
            r#"CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'id', fields = '{"body": {"tokeniser": "raw"}}')"#,
            "22023",
        ),
        (
            r#"CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'id', fields = '{"body": {"stemmer": "klingon"}}')"#,
            "22023",
        ),
        (
            r#"CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'id', fields = '{"body": {"tokenizer": "ngram", "min_gram": 5, "max_gram": 2}}')"#,
            "22023",
        ),
        (r#"CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'id', fields = '{"body": "raw"}')"#, "22023"),
        // fields names a column that is not indexed.
        (
            r#"CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'id', fields = '{"code": {"tokenizer": "raw"}}')"#,
            "42703",
        ),
        // A non-text column that is not the key.
        ("CREATE INDEX e ON t USING hybrid (id, n) WITH (key_field = 'id')", "42804"),
        ("CREATE INDEX e ON t USING hybrid (id, body, n) WITH (key_field = 'id')", "42804"),
        // Only the key.
        ("CREATE INDEX e ON t USING hybrid (id) WITH (key_field = 'id')", "22023"),
        // An option the access method does not know (Postgres' own check).
        ("CREATE INDEX e ON t USING hybrid (id, body) WITH (key_field = 'id', colour = 'blue')", "22023"),
        // Unlogged tables are not supported.
        ("CREATE INDEX e ON u USING hybrid (id, body) WITH (key_field = 'id')", "0A000"),
    ];
    for (sql, code) in cases {
        expect_error(&cluster, &mut c, sql, code);
        assert_eq!(cluster.sidecar_dirs(TEST_DB), before_dirs, "`{sql}` left a folder");
        assert_eq!(count(&mut c, "SELECT count(*) FROM hybrid.indexes"), 1, "`{sql}` left a catalog row");
    }
    // The same table takes a correct index afterwards.
    c.batch_execute("CREATE INDEX e ON t USING hybrid (id, body, code) WITH (key_field = 'id')").unwrap();
    assert_eq!(id_set(&mut c, "SELECT id::int8 FROM t WHERE body @@@ '7'"), [7].into_iter().collect());
    cluster.assert_no_backend_crash();
}

#[test]
fn null_keys_are_not_null_violations() {
    let (cluster, mut c) = setup("null_key");
    c.batch_execute(
        "CREATE TABLE k (id bigint, body text);
         INSERT INTO k VALUES (1, 'first tok1 common');
         CREATE INDEX k_search ON k USING hybrid (id, body) WITH (key_field = 'id');",
    )
    .unwrap();
    expect_error(&cluster, &mut c, "INSERT INTO k VALUES (NULL, 'no key')", "23502");
    expect_error(&cluster, &mut c, "INSERT INTO k VALUES (2, 'second'), (NULL, 'no key'), (3, 'third')", "23502");
    expect_error(&cluster, &mut c, "UPDATE k SET id = NULL WHERE id = 1", "23502");
    // In a transaction: the error aborts it, and nothing it wrote is found.
    c.batch_execute("BEGIN; INSERT INTO k VALUES (4, 'fourth common')").unwrap();
    assert_eq!(sqlstate(c.batch_execute("INSERT INTO k VALUES (NULL, 'no key')")), "23502");
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(id_set(&mut c, "SELECT id FROM k WHERE body @@@ 'common'"), [1].into_iter().collect());
    assert_eq!(count(&mut c, "SELECT count(*) FROM k"), 1);
    // A NULL key in the table fails the build (tested with its folder in lifecycle.rs).
    c.batch_execute("DROP INDEX k_search; INSERT INTO k VALUES (NULL, 'orphan')").unwrap();
    expect_error(
        &cluster,
        &mut c,
        "CREATE INDEX k_search ON k USING hybrid (id, body) WITH (key_field = 'id')",
        "23502",
    );
    c.batch_execute("VACUUM k").unwrap();
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

#[test]
fn admin_functions_reject_other_relations() {
    let (cluster, mut c) = setup("admin_errors");
    for f in ["hybrid.index_info", "hybrid.verify", "hybrid.force_merge"] {
        expect_error(&cluster, &mut c, &format!("SELECT * FROM {f}('docs_pkey')"), "42809");
        expect_error(&cluster, &mut c, &format!("SELECT * FROM {f}('docs')"), "42809");
    }
    cluster.assert_no_backend_crash();
}
