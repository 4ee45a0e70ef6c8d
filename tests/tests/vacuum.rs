//! VACUUM and merges (invariants 1-3): entries of dead rows stay until VACUUM, which removes them
//! durably before the heap frees their tuple ids and compacts segments so that the index
//! follows the live data.

use std::collections::BTreeSet;

use pg_hybrid_tests::*;

fn setup(name: &str, rows: i64) -> (TestCluster, Client) {
    let cluster = TestCluster::new(name);
    let mut c = cluster.connect();
    create_docs(&mut c);
    // Statements of 500 rows: many segments, some merged at commit.
    insert_docs(&mut c, &(1..=rows).collect::<Vec<_>>());
    force_index(&mut c);
    (cluster, c)
}

#[test]
fn vacuum_removes_entries_of_deleted_rows_and_compacts() {
    let (cluster, mut c) = setup("vacuum_delete", 10_000);
    let info0 = index_info(&mut c, "docs_search");
    assert_eq!((info0.documents, info0.deleted_documents), (10_000, 0));

    c.batch_execute("DELETE FROM docs WHERE id % 2 = 0").unwrap();
    let live: BTreeSet<i64> = (1..=10_000).filter(|i| i % 2 == 1).collect();
    let info1 = index_info(&mut c, "docs_search");
    assert_eq!(info1.documents, 10_000, "entries of deleted rows remain until VACUUM: {info1:?}");
    let v = verify(&mut c, "docs_search");
    assert_eq!((v.missing, v.gone, v.not_visible, v.visible_rows), (0, 0, 5_000, 5_000), "{v:?}");
    for_each_scan_kind(&mut c, |s, kind| {
        assert_eq!(search_ids(s, COMMON_WORD), live, "{kind:?}: before VACUUM");
        assert!(search_ids(s, "tok4000").is_empty());
    });

    c.batch_execute("VACUUM docs").unwrap();
    let info2 = index_info(&mut c, "docs_search");
    assert_eq!(info2.documents, 5_000, "after VACUUM: {info2:?}");
    let total = info2.documents + info2.deleted_documents;
    assert!(
        info2.deleted_documents * 5 <= total,
        "VACUUM should compact segments that are mostly deleted entries: {info2:?}"
    );
    assert!(info2.bytes < info1.bytes, "disk use should follow live data: {} -> {} bytes", info1.bytes, info2.bytes);
    assert!(info2.generation > info1.generation);
    for_each_scan_kind(&mut c, |s, kind| {
        assert_eq!(search_ids(s, COMMON_WORD), live, "{kind:?}: after VACUUM");
        assert!(search_ids(s, "tok4000").is_empty());
        assert_eq!(search_ids(s, "tok4001"), [4001].into_iter().collect());
        for word in ORACLE_WORDS {
            let by_regex = id_set(s, &format!("SELECT id FROM docs WHERE body ~ '\\m{word}\\M'"));
            assert_eq!(search_ids(s, word), by_regex, "{kind:?}: {word}");
        }
    });
    let v = assert_verify_ok(&mut c, "docs_search");
    assert_eq!((v.visible_rows, v.index_entries, v.not_visible), (5_000, 5_000, 0), "{v:?}");

    // A second VACUUM with nothing to do changes nothing.
    c.batch_execute("VACUUM docs").unwrap();
    assert_eq!(index_info(&mut c, "docs_search").documents, 5_000);
    cluster.assert_no_backend_crash();
}

#[test]
fn vacuum_after_updates_keeps_only_the_new_versions() {
    let (cluster, mut c) = setup("vacuum_update", 2_000);
    c.batch_execute("UPDATE docs SET body = 'fresh ' || body || ' renewed' WHERE id <= 1000").unwrap();
    assert_eq!(index_info(&mut c, "docs_search").documents, 3_000, "old versions keep their entries until VACUUM");
    c.batch_execute("VACUUM docs").unwrap();
    assert_eq!(index_info(&mut c, "docs_search").documents, 2_000);
    for_each_scan_kind(&mut c, |s, kind| {
        assert_eq!(search_ids(s, "renewed"), (1..=1000).collect(), "{kind:?}");
        assert_eq!(search_ids(s, COMMON_WORD), (1..=2000).collect(), "{kind:?}");
        assert_eq!(count(s, "SELECT count(*) FROM docs WHERE body @@@ 'tok10'"), 1, "{kind:?}: one row per match");
    });
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

/// After VACUUM frees the tuple ids of deleted rows, new rows take them: the old rows' words
/// must not find the new rows.
#[test]
fn tuple_ids_freed_by_vacuum_and_reused_never_match_old_text() {
    let cluster = TestCluster::new("vacuum_reuse");
    let mut c = cluster.connect();
    create_docs(&mut c);
    force_index(&mut c);
    c.batch_execute(&format!(
        "INSERT INTO docs SELECT i, 'old', 'oldword tok' || i || ' {COMMON_WORD}', 'en' FROM generate_series(1, 1000) i"
    ))
    .unwrap();
    let old_tids: BTreeSet<String> =
        c.query("SELECT ctid::text FROM docs", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    c.batch_execute("DELETE FROM docs").unwrap();
    c.batch_execute("VACUUM docs").unwrap();
    c.batch_execute(&format!(
        "INSERT INTO docs SELECT i, 'new', 'newword tok' || i || ' {COMMON_WORD}', 'en' FROM generate_series(2001, 3000) i"
    ))
    .unwrap();
    let new_tids: BTreeSet<String> =
        c.query("SELECT ctid::text FROM docs", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let reused = old_tids.intersection(&new_tids).count();
    assert!(reused > 500, "test precondition: new rows should reuse freed tuple ids ({reused} reused)");
    for_each_scan_kind(&mut c, |s, kind| {
        assert!(
            search_ids(s, "oldword").is_empty(),
            "{kind:?}: deleted rows' words match the rows that took their tids"
        );
        assert!(search_ids(s, "tok5").is_empty(), "{kind:?}");
        assert_eq!(search_ids(s, "newword"), (2001..=3000).collect(), "{kind:?}");
    });
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}

#[test]
fn force_merge_leaves_one_segment_and_the_same_answers() {
    let (cluster, mut c) = setup("force_merge", 5_000);
    c.batch_execute("SET hybrid.inline_merge = off").unwrap();
    for i in 0..10i64 {
        insert_docs(&mut c, &[10_000 + i]);
    }
    c.batch_execute("DELETE FROM docs WHERE id % 7 = 0").unwrap();
    assert!(index_info(&mut c, "docs_search").segments > 1);
    let before: Vec<BTreeSet<i64>> = ORACLE_WORDS.iter().map(|w| search_ids(&mut c, w)).collect();
    let merged: bool = c.query_one("SELECT hybrid.force_merge('docs_search')", &[]).unwrap().get(0);
    assert!(merged);
    let info = index_info(&mut c, "docs_search");
    assert_eq!(info.segments, 1, "{info:?}");
    let after: Vec<BTreeSet<i64>> = ORACLE_WORDS.iter().map(|w| search_ids(&mut c, w)).collect();
    assert_eq!(before, after);
    assert_eq!(search_ids(&mut c, "tok10009"), [10_009].into_iter().collect());
    c.batch_execute("VACUUM docs").unwrap();
    let live = count(&mut c, "SELECT count(*) FROM docs");
    assert_eq!(index_info(&mut c, "docs_search").documents, live);
    assert_verify_ok(&mut c, "docs_search");
    cluster.assert_no_backend_crash();
}
