//! Security (DESIGN.md "Security", "Control plane and quotas"): searching needs the privileges
//! of reading the table, on every search path; row-level security hides rows from every search
//! path; each role sees only its own tenant in the catalog views; maintenance needs the index's
//! owner or hybrid_admin; only administrators assign tenants, never their own; the tenancy
//! tables are closed to ordinary roles; catalog work the extension does as its owner cannot be
//! hijacked through the caller's search_path; vector and merged files are private to the
//! server's OS user (text index files: lifecycle.rs, `sidecar_files_are_private_to_the_server_user`).

mod tenantutil;

use std::collections::{BTreeMap, BTreeSet};

use pg_hybrid_tests::*;
use postgres::types::ToSql;
use tenantutil::*;

// ---------------------------------------------------------------------------------------------
// The items table
// ---------------------------------------------------------------------------------------------

const ROWS: i64 = 60;
/// The query vector; hidden rows lie right next to it.
const Q: [f32; 4] = [1.0, 0.0, 0.0, 0.0];

/// Rows with `secret` are the ones row-level security hides (every third).
fn is_secret(id: i64) -> bool {
    id % 3 == 0
}

/// Hidden rows repeat "harbor" and say "classified"; some visible rows say "harbor" once, with
/// texts of different lengths so that their scores differ.
fn body(id: i64) -> String {
    if is_secret(id) {
        format!("harbor harbor harbor classified common tok{id}")
    } else if id % 2 == 0 {
        format!("harbor common tok{id} {}", "filler ".repeat((id % 11) as usize))
    } else {
        format!("common tok{id} {}", "meadow ".repeat((id % 5) as usize))
    }
}

/// Hidden rows are the nearest to [`Q`].
fn embedding(id: i64) -> Vec<f32> {
    if is_secret(id) {
        vec![1.0, 0.001 * id as f32, 0.0, 0.0]
    } else {
        let a = id as f32 * 0.37;
        vec![a.cos(), a.sin(), 0.5 + (id % 7) as f32 / 7.0, 0.25]
    }
}

/// The `k` visible rows nearest to `q` among those passing `keep`, nearest first.
fn nearest_visible(q: &[f32], k: usize, keep: impl Fn(i64) -> bool) -> Vec<i64> {
    let mut all: Vec<(f64, i64)> = (1..=ROWS)
        .filter(|id| !is_secret(*id) && keep(*id))
        .map(|id| (cosine_distance(q, &embedding(id)), id))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

fn visible_with(word: &str) -> BTreeSet<i64> {
    (1..=ROWS).filter(|id| !is_secret(*id) && body(*id).split(' ').any(|w| w == word)).collect()
}

/// Role `owner_role` creates `items` and its hybrid index (text and a 4-dimensional cosine
/// vector field) and fills it.
fn create_items(c: &mut Client) {
    c.batch_execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, body text, secret bool NOT NULL, embedding real[]);
         CREATE INDEX items_search ON items USING hybrid (id, body, embedding)
           WITH (key_field = 'id', fields = '{\"embedding\": {\"dimensions\": 4, \"metric\": \"cosine\"}}');",
    )
    .unwrap();
    let insert = c.prepare("INSERT INTO items VALUES ($1, $2, $3, $4)").unwrap();
    for id in 1..=ROWS {
        c.execute(&insert, &[&id, &body(id), &is_secret(id), &embedding(id)]).unwrap();
    }
}

/// A cluster where LOGIN role `alice` (tenant "default") owns `items`; returns a superuser
/// session and alice's.
fn setup(name: &str) -> (TestCluster, Client, Client) {
    let cluster = TestCluster::new(name);
    let mut su = cluster.connect();
    create_login_role(&mut su, "alice");
    let mut alice = connect_as(&cluster, "alice");
    create_items(&mut alice);
    (cluster, su, alice)
}

/// The SQLSTATE `sql` fails with, or "ok".
fn outcome(c: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> String {
    match c.query(sql, params) {
        Ok(_) => "ok".into(),
        Err(e) => {
            sync(c);
            db_error(&e).0
        }
    }
}

/// Every way of searching `items`, each with its parameters.
fn search_paths() -> Vec<(&'static str, bool)> {
    // (SQL, takes the query vector as $1)
    vec![
        ("SELECT id FROM items WHERE body @@@ 'harbor'", false),
        ("SELECT count(*) FROM items WHERE body @@@ 'harbor'", false),
        (
            "SELECT id, hybrid.score(id) FROM items WHERE body @@@ 'harbor' ORDER BY hybrid.score(id) DESC LIMIT 5",
            false,
        ),
        ("SELECT id, hybrid.score(id), hybrid.snippet(body) FROM items WHERE body @@@ 'harbor'", false),
        ("SELECT id FROM items ORDER BY embedding <=> $1 LIMIT 5", true),
        ("SELECT id FROM items WHERE body @@@ 'harbor' ORDER BY embedding <=> $1 LIMIT 5", true),
        ("SELECT * FROM hybrid.search('items_search', query => 'harbor', vector => $1)", true),
        ("SELECT * FROM hybrid.search('items_search', query => 'harbor')", false),
        ("SELECT * FROM hybrid.search('items_search', vector => $1)", true),
        ("SELECT * FROM hybrid.index_info('items_search')", false),
        ("SELECT * FROM hybrid.vector_info('items_search')", false),
    ]
}

/// What each search path gives `c`: "ok" or a SQLSTATE.
fn outcomes(c: &mut Client) -> BTreeMap<&'static str, String> {
    let q = Q.to_vec();
    search_paths()
        .into_iter()
        .map(|(sql, vector)| {
            let params: Vec<&(dyn ToSql + Sync)> = if vector { vec![&q] } else { vec![] };
            (sql, outcome(c, sql, &params))
        })
        .collect()
}

fn assert_all(got: &BTreeMap<&'static str, String>, expected: &str, who: &str) {
    let wrong: Vec<_> = got.iter().filter(|(_, v)| v.as_str() != expected).collect();
    assert!(wrong.is_empty(), "{who}: expected {expected} from every search path; these differ: {wrong:#?}");
}

// ---------------------------------------------------------------------------------------------
// Privileges
// ---------------------------------------------------------------------------------------------

#[test]
fn searching_without_select_on_the_table_is_refused_on_every_path() {
    let (cluster, mut su, mut alice) = setup("sec_privileges");
    for r in ["reader", "nosel", "idonly"] {
        create_login_role(&mut su, r);
    }
    alice.batch_execute("GRANT SELECT ON items TO reader; GRANT SELECT (id) ON items TO idonly").unwrap();

    // The paths really are the index's: the search scan, the kNN index scan.
    let mut reader = connect_as(&cluster, "reader");
    let plan = plan_of(&mut reader, search_paths()[2].0);
    assert!(plan.contains("Hybrid Search"), "ranked search should use the search scan:\n{plan}");
    let plan = plan_of(&mut reader, "SELECT id FROM items ORDER BY embedding <=> '{1,0,0,0}' LIMIT 5");
    assert!(plan.contains("Index Scan using items_search"), "kNN should use the index:\n{plan}");

    assert_all(&outcomes(&mut reader), "ok", "a role with SELECT");
    assert_all(&outcomes(&mut alice), "ok", "the owner");
    let mut nosel = connect_as(&cluster, "nosel");
    assert_all(&outcomes(&mut nosel), "42501", "a role without SELECT");
    // SELECT on the key column only: every path reads other columns too.
    let mut idonly = connect_as(&cluster, "idonly");
    assert_all(&outcomes(&mut idonly), "42501", "a role with SELECT on id only");
    // Revoking takes effect at once, also for a session that searched before.
    alice.batch_execute("REVOKE SELECT ON items FROM reader").unwrap();
    assert_all(&outcomes(&mut reader), "42501", "a role whose SELECT was revoked");
    cluster.assert_no_backend_crash();
}

/// Tenants partition the catalog, not table privileges: a role of another tenant that may read
/// the table searches it on every path (hybrid.search too), and without SELECT gets 42501 on
/// every path, like anyone else.
#[test]
fn a_role_of_another_tenant_searches_by_table_privileges() {
    let (cluster, mut su, mut alice) = setup("sec_other_tenant");
    create_tenant(&mut su, "globex", Limits::default());
    create_tenant_role(&mut su, "globex_reader", "globex");
    create_tenant_role(&mut su, "globex_nosel", "globex");
    alice.batch_execute("GRANT SELECT ON items TO globex_reader").unwrap();
    let mut r = connect_as(&cluster, "globex_reader");
    let mut n = connect_as(&cluster, "globex_nosel");
    let (got_r, got_n) = (outcomes(&mut r), outcomes(&mut n));
    let wrong_r: Vec<_> = got_r.iter().filter(|(_, v)| v.as_str() != "ok").collect();
    let wrong_n: Vec<_> = got_n.iter().filter(|(_, v)| v.as_str() != "42501").collect();
    assert!(
        wrong_r.is_empty() && wrong_n.is_empty(),
        "roles of another tenant: with SELECT, expected ok but got {wrong_r:#?}\nwithout SELECT, expected 42501 but got {wrong_n:#?}"
    );
    cluster.assert_no_backend_crash();
}

// ---------------------------------------------------------------------------------------------
// Row-level security
// ---------------------------------------------------------------------------------------------

/// Adds the policy (hidden: `secret`) and a LOGIN role `reader` with SELECT.
fn enable_rls(cluster: &TestCluster, su: &mut Client, alice: &mut Client) -> Client {
    create_login_role(su, "reader");
    alice
        .batch_execute(
            "ALTER TABLE items ENABLE ROW LEVEL SECURITY;
             CREATE POLICY not_secret ON items FOR SELECT USING (NOT secret);
             GRANT SELECT ON items TO reader;",
        )
        .unwrap();
    connect_as(cluster, "reader")
}

fn ids(c: &mut Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<i64> {
    c.query(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}")).iter().map(|r| r.get::<_, i64>(0)).collect()
}

fn assert_none_hidden(got: &[i64], what: &str) {
    let hidden: Vec<_> = got.iter().filter(|id| is_secret(**id)).collect();
    assert!(hidden.is_empty(), "{what}: rows hidden by row-level security returned: {hidden:?} (of {got:?})");
}

#[test]
fn row_level_security_hides_rows_from_every_search_path() {
    let (cluster, mut su, mut alice) = setup("sec_rls");
    let mut reader = enable_rls(&cluster, &mut su, &mut alice);
    let harbor = visible_with("harbor");
    let visible = (1..=ROWS).filter(|id| !is_secret(*id)).count() as i64;
    assert!(harbor.len() >= 8);
    let q = Q.to_vec();

    // The owner (not subject to the policy) sees everything: the hidden rows are in the index.
    assert_eq!(count(&mut alice, "SELECT count(*) FROM items WHERE body @@@ 'classified'"), ROWS / 3);

    // @@@ as a filter: through the search scan (what the planner picks under RLS), and with it
    // off (the operator evaluated row by row after the policy).
    let plan = plan_of(&mut reader, "SELECT id FROM items WHERE body @@@ 'harbor'");
    assert!(plan.contains("Hybrid Search"), "expected the search scan under RLS:\n{plan}");
    for setting in ["SET hybrid.enable_search_scan = on", "SET hybrid.enable_search_scan = off"] {
        reader.batch_execute(setting).unwrap();
        let got: BTreeSet<i64> =
            ids(&mut reader, "SELECT id FROM items WHERE body @@@ 'harbor'", &[]).into_iter().collect();
        assert_eq!(got, harbor, "{setting}");
        assert_eq!(
            ids(&mut reader, "SELECT id FROM items WHERE body @@@ 'classified'", &[]),
            Vec::<i64>::new(),
            "{setting}"
        );
        assert_eq!(count(&mut reader, "SELECT count(*) FROM items WHERE body @@@ 'common'"), visible, "{setting}");
        assert_eq!(
            count(&mut reader, "SELECT count(*) FROM items WHERE body @@@ 'common' AND id < 1000"),
            visible,
            "{setting}"
        );
    }
    reader.batch_execute("RESET hybrid.enable_search_scan").unwrap();

    // Ranked top-k: the hidden rows score best, yet only visible rows come, k of them, with the
    // scores the owner sees for them.
    let all_scores: BTreeMap<i64, f32> = alice
        .query("SELECT id, hybrid.score(id) FROM items WHERE body @@@ 'harbor'", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut best_visible: Vec<(f32, i64)> =
        all_scores.iter().filter(|(id, _)| !is_secret(**id)).map(|(id, s)| (*s, *id)).collect();
    best_visible.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for k in [1usize, 5, 100] {
        let rows: Vec<(i64, f32)> = reader
            .query(
                &format!("SELECT id, hybrid.score(id) FROM items WHERE body @@@ 'harbor' ORDER BY hybrid.score(id) DESC LIMIT {k}"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let got: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_none_hidden(&got, &format!("top-{k}"));
        assert_eq!(rows.len(), k.min(harbor.len()), "top-{k} returns k visible rows: {rows:?}");
        let scores: Vec<f32> = rows.iter().map(|r| r.1).collect();
        let expected: Vec<f32> = best_visible.iter().take(k).map(|r| r.0).collect();
        assert_eq!(scores, expected, "top-{k}: scores of the best visible rows");
        for (id, s) in &rows {
            assert_eq!(Some(s), all_scores.get(id), "score of row {id}");
        }
    }
    // Snippets only of visible rows.
    let snippets: Vec<(i64, String)> = reader
        .query("SELECT id, hybrid.snippet(body) FROM items WHERE body @@@ 'harbor OR classified'", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_none_hidden(&snippets.iter().map(|s| s.0).collect::<Vec<_>>(), "snippets");
    assert!(snippets.iter().all(|(_, s)| !s.contains("classified")), "{snippets:?}");

    // kNN: the hidden rows are the nearest, yet only visible rows come, k of them.
    let plan = plan_of(&mut reader, "SELECT id FROM items ORDER BY embedding <=> '{1,0,0,0}' LIMIT 5");
    assert!(plan.contains("Index Scan using items_search"), "kNN should use the index under RLS:\n{plan}");
    for k in [1usize, 5, 100] {
        let got = ids(&mut reader, &format!("SELECT id FROM items ORDER BY embedding <=> $1 LIMIT {k}"), &[&q]);
        assert_eq!(got, nearest_visible(&Q, k, |_| true), "kNN top-{k}");
        let got = ids(
            &mut reader,
            &format!("SELECT id FROM items WHERE body @@@ 'harbor' ORDER BY embedding <=> $1 LIMIT {k}"),
            &[&q],
        );
        assert_eq!(got, nearest_visible(&Q, k, |id| harbor.contains(&id)), "filtered kNN top-{k}");
    }

    // hybrid.search: only visible rows, ranked among visible rows only.
    let fused: Vec<(String, f64, Option<i32>, Option<i32>)> = reader
        .query("SELECT key, score, text_rank, vector_rank FROM hybrid.search('items_search', query => 'harbor', vector => $1, k => 100)", &[&q])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let keys: Vec<i64> = fused.iter().map(|f| f.0.parse().unwrap()).collect();
    assert_none_hidden(&keys, "hybrid.search");
    assert_eq!(keys.len() as i64, visible, "every visible row is in the vector list, so in the fusion");
    let mut text_ranks: Vec<(i32, i64)> = fused.iter().filter_map(|f| f.2.map(|r| (r, f.0.parse().unwrap()))).collect();
    text_ranks.sort();
    let expected_text: Vec<(i32, i64)> =
        best_visible.iter().enumerate().map(|(i, (_, id))| (i as i32 + 1, *id)).collect();
    assert_eq!(text_ranks, expected_text, "text ranks count visible rows only");
    let mut vector_ranks: Vec<(i32, i64)> =
        fused.iter().filter_map(|f| f.3.map(|r| (r, f.0.parse().unwrap()))).collect();
    vector_ranks.sort();
    let expected_vector: Vec<(i32, i64)> =
        nearest_visible(&Q, 100, |_| true).into_iter().enumerate().map(|(i, id)| (i as i32 + 1, id)).collect();
    assert_eq!(vector_ranks, expected_vector, "vector ranks count visible rows only");
    for (key, score, t, v) in &fused {
        let expected = t.map_or(0.0, |r| 1.0 / (60.0 + f64::from(r))) + v.map_or(0.0, |r| 1.0 / (60.0 + f64::from(r)));
        assert!((score - expected).abs() < 1e-9, "fused score of {key}: {score} vs {expected}");
    }
    let none: Vec<String> = reader
        .query("SELECT key FROM hybrid.search('items_search', query => 'classified')", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(none.is_empty(), "hybrid.search for a word only hidden rows have: {none:?}");
    cluster.assert_no_backend_crash();
}

/// `hybrid.score()` given a key that is not the scanned row's (a constant, an expression) must
/// not reveal the score, hence the existence, of a row the policy hides.
#[test]
fn hybrid_score_never_reveals_a_row_hidden_by_row_level_security() {
    let (cluster, mut su, mut alice) = setup("sec_rls_score");
    let mut reader = enable_rls(&cluster, &mut su, &mut alice);
    let hidden = 3i64;
    assert!(is_secret(hidden));
    let mut leaks = Vec::new();
    for sql in [
        format!("SELECT hybrid.score({hidden}::bigint) FROM items WHERE body @@@ 'harbor' ORDER BY hybrid.score(id) DESC LIMIT 1"),
        format!("SELECT hybrid.score(id * 0 + {hidden}) FROM items WHERE body @@@ 'harbor' ORDER BY hybrid.score(id) DESC LIMIT 1"),
        format!(
            "SELECT hybrid.score(k.id) FROM items, (VALUES ({hidden}::bigint)) k(id)
              WHERE items.body @@@ 'harbor' ORDER BY hybrid.score(items.id) DESC LIMIT 1"
        ),
    ] {
        match reader.query(&sql, &[]) {
            Ok(rows) => {
                let got: Vec<Option<f32>> = rows.iter().map(|r| r.get(0)).collect();
                if got.iter().any(|s| s.is_some()) {
                    leaks.push(format!("{sql}\n  -> {got:?}"));
                }
            }
            Err(e) => {
                sync(&mut reader);
                let (code, _) = db_error(&e);
                assert_ne!(code, "XX000", "{sql}: {e}");
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "scores of the hidden row {hidden} returned to a role that may not see it:\n{}",
        leaks.join("\n")
    );
    cluster.assert_no_backend_crash();
}

// ---------------------------------------------------------------------------------------------
// Tenants in the catalog views
// ---------------------------------------------------------------------------------------------

fn names(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).iter().map(|r| r.get::<_, String>(0)).collect()
}

#[test]
fn catalog_views_show_each_role_its_own_tenant() {
    let cluster = TestCluster::new("sec_views");
    let mut su = cluster.connect();
    create_tenant(&mut su, "acme_corp", Limits { max_indexes: Some(5), ..Default::default() });
    create_tenant(&mut su, "globex", Limits::default());
    create_tenant_role(&mut su, "acme_user", "acme_corp");
    create_tenant_role(&mut su, "globex_user", "globex");
    create_login_role(&mut su, "plain_user");
    create_login_role(&mut su, "admin_user");
    su.batch_execute("GRANT hybrid_admin TO admin_user").unwrap();
    let make = |c: &mut Client, t: &str, n: i64| {
        c.batch_execute(&format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, body text);
             INSERT INTO {t} SELECT i, 'common' FROM generate_series(1, {n}) i;
             CREATE INDEX {t}_search ON {t} USING hybrid (id, body) WITH (key_field = 'id')"
        ))
        .unwrap()
    };
    let mut acme = connect_as(&cluster, "acme_user");
    make(&mut acme, "a1", 10);
    make(&mut acme, "a2", 5);
    let mut globex = connect_as(&cluster, "globex_user");
    make(&mut globex, "g1", 7);
    make(&mut su, "d1", 3);
    let mut plain = connect_as(&cluster, "plain_user");
    let mut admin = connect_as(&cluster, "admin_user");

    let indexes = "SELECT name || ':' || tenant FROM hybrid.indexes ORDER BY 1";
    let usage_rows = "SELECT tenant || ':' || indexes || ':' || documents FROM hybrid.tenant_usage ORDER BY 1";
    let all_indexes = vec!["a1_search:acme_corp", "a2_search:acme_corp", "d1_search:default", "g1_search:globex"];
    let all_usage = vec!["acme_corp:2:15", "default:1:3", "globex:1:7"];
    let cases: Vec<(&str, &mut Client, Vec<&str>, Vec<&str>, &str)> = vec![
        (
            "acme_user",
            &mut acme,
            vec!["a1_search:acme_corp", "a2_search:acme_corp"],
            vec!["acme_corp:2:15"],
            "acme_corp",
        ),
        ("globex_user", &mut globex, vec!["g1_search:globex"], vec!["globex:1:7"], "globex"),
        ("plain_user", &mut plain, vec!["d1_search:default"], vec!["default:1:3"], "default"),
        ("admin_user", &mut admin, all_indexes.clone(), all_usage.clone(), "default"),
        ("superuser", &mut su, all_indexes.clone(), all_usage.clone(), "default"),
    ];
    for (who, c, want_indexes, want_usage, tenant) in cases {
        assert_eq!(names(c, indexes), want_indexes, "{who}: hybrid.indexes");
        assert_eq!(names(c, usage_rows), want_usage, "{who}: hybrid.tenant_usage");
        assert_eq!(names(c, "SELECT hybrid.current_tenant()"), vec![tenant], "{who}: current_tenant");
        let usage_fn = count(c, "SELECT count(*) FROM hybrid.index_usage()");
        assert_eq!(usage_fn, want_indexes.len() as i64, "{who}: hybrid.index_usage()");
    }
    cluster.assert_no_backend_crash();
}

// ---------------------------------------------------------------------------------------------
// Administration
// ---------------------------------------------------------------------------------------------

#[test]
fn admin_functions_need_the_index_owner_or_hybrid_admin() {
    let (cluster, mut su, mut alice) = setup("sec_admin");
    for r in ["bob", "carol", "dave"] {
        create_login_role(&mut su, r);
    }
    su.batch_execute("GRANT hybrid_admin TO carol").unwrap();
    alice.batch_execute("GRANT SELECT ON items TO bob").unwrap();
    // Several segments, so that a merge has something to do.
    for id in 100..105i64 {
        alice.execute("INSERT INTO items VALUES ($1, 'late common', false, NULL)", &[&id]).unwrap();
    }
    let merge = "SELECT hybrid.force_merge('items_search')";
    let verify = "SELECT * FROM hybrid.verify('items_search')";
    let info = "SELECT * FROM hybrid.index_info('items_search')";
    let mut bob = connect_as(&cluster, "bob");
    let mut dave = connect_as(&cluster, "dave");
    let mut carol = connect_as(&cluster, "carol");
    let got: Vec<(&str, &str, String, &str)> = vec![
        ("bob (SELECT, not owner)", merge, outcome(&mut bob, merge, &[]), "42501"),
        ("bob (SELECT, not owner)", verify, outcome(&mut bob, verify, &[]), "42501"),
        ("bob (SELECT, not owner)", info, outcome(&mut bob, info, &[]), "ok"),
        ("dave (nothing)", merge, outcome(&mut dave, merge, &[]), "42501"),
        ("dave (nothing)", verify, outcome(&mut dave, verify, &[]), "42501"),
        ("dave (nothing)", info, outcome(&mut dave, info, &[]), "42501"),
        ("alice (owner)", merge, outcome(&mut alice, merge, &[]), "ok"),
        ("alice (owner)", verify, outcome(&mut alice, verify, &[]), "ok"),
        ("carol (hybrid_admin)", merge, outcome(&mut carol, merge, &[]), "ok"),
        ("carol (hybrid_admin)", verify, outcome(&mut carol, verify, &[]), "ok"),
        ("superuser", merge, outcome(&mut su, merge, &[]), "ok"),
        ("superuser", verify, outcome(&mut su, verify, &[]), "ok"),
    ];
    let wrong: Vec<_> = got.iter().filter(|g| g.2 != g.3).collect();
    assert!(wrong.is_empty(), "(who, what, got, expected): {wrong:#?}");
    assert_verify_ok(&mut su, "items_search");
    assert_eq!(index_info(&mut su, "items_search").segments, 1, "the merges ran");
    cluster.assert_no_backend_crash();
}

#[test]
fn assign_tenant_is_for_administrators_and_not_for_oneself() {
    let cluster = TestCluster::new("sec_assign");
    let mut su = cluster.connect();
    create_tenant(&mut su, "acme_corp", Limits::default());
    for r in ["bob", "carol", "alice"] {
        create_login_role(&mut su, r);
    }
    su.batch_execute("GRANT hybrid_admin TO carol").unwrap();
    let tenant_of = |su: &mut Client, role: &str| -> String {
        su.query_one(
            "SELECT coalesce((SELECT tenant FROM hybrid.role_tenants WHERE role_oid = $1::text::regrole), 'default')",
            &[&role],
        )
        .unwrap()
        .get(0)
    };
    let mut bob = connect_as(&cluster, "bob");
    let mut carol = connect_as(&cluster, "carol");
    assert_code(&mut bob, "SELECT hybrid.assign_tenant('bob', 'acme_corp')", "42501", "bob moving himself");
    assert_code(&mut bob, "SELECT hybrid.assign_tenant('alice', 'acme_corp')", "42501", "bob moving alice");
    assert_code(&mut carol, "SELECT hybrid.assign_tenant('carol', 'acme_corp')", "42501", "carol moving herself");
    assert_eq!(tenant_of(&mut su, "bob"), "default");
    assert_eq!(tenant_of(&mut su, "alice"), "default");
    assert_eq!(tenant_of(&mut su, "carol"), "default");
    assert_eq!(names(&mut bob, "SELECT hybrid.current_tenant()"), vec!["default"]);

    // An administrator moves others; the move shows at once.
    carol.batch_execute("SELECT hybrid.assign_tenant('bob', 'acme_corp')").unwrap();
    assert_eq!(tenant_of(&mut su, "bob"), "acme_corp");
    assert_eq!(names(&mut bob, "SELECT hybrid.current_tenant()"), vec!["acme_corp"]);
    carol.batch_execute("SELECT hybrid.assign_tenant('bob', 'default')").unwrap();
    assert_eq!(tenant_of(&mut su, "bob"), "default");
    // A superuser may move itself.
    su.batch_execute("SELECT hybrid.assign_tenant('postgres', 'acme_corp')").unwrap();
    assert_eq!(names(&mut su, "SELECT hybrid.current_tenant()"), vec!["acme_corp"]);
    su.batch_execute("SELECT hybrid.assign_tenant('postgres', 'default')").unwrap();
    // Unknown tenants and roles.
    assert_code(&mut carol, "SELECT hybrid.assign_tenant('bob', 'no_such_tenant')", "23503", "unknown tenant");
    assert_code(&mut carol, "SELECT hybrid.assign_tenant('no_such_role', 'acme_corp')", "42704", "unknown role");
    cluster.assert_no_backend_crash();
}

/// The rule "nobody but a superuser moves themselves" holds however the administrator
/// presents itself: through SET ROLE to hybrid_admin (which it is a member of) it is still
/// moving its own login role.
#[test]
fn an_administrator_cannot_move_itself_through_set_role() {
    let cluster = TestCluster::new("sec_assign_set_role");
    let mut su = cluster.connect();
    create_tenant(&mut su, "acme_corp", Limits::default());
    create_login_role(&mut su, "carol");
    su.batch_execute("GRANT hybrid_admin TO carol").unwrap();
    let mut carol = connect_as(&cluster, "carol");
    carol.batch_execute("SET ROLE hybrid_admin").unwrap();
    let r = carol.batch_execute("SELECT hybrid.assign_tenant('carol', 'acme_corp')");
    sync(&mut carol);
    carol.batch_execute("RESET ROLE").unwrap();
    let tenant = names(&mut carol, "SELECT hybrid.current_tenant()");
    assert!(
        r.is_err() && tenant == ["default"],
        "carol moved herself to another tenant through SET ROLE hybrid_admin: {r:?}, now in {tenant:?}"
    );
    assert_eq!(db_error(&r.unwrap_err()).0, "42501");
    cluster.assert_no_backend_crash();
}

#[test]
fn tenancy_tables_are_closed_to_ordinary_roles() {
    let cluster = TestCluster::new("sec_tables");
    let mut su = cluster.connect();
    create_tenant(&mut su, "acme_corp", Limits { max_documents: Some(10), ..Default::default() });
    create_tenant_role(&mut su, "acme_user", "acme_corp");
    create_login_role(&mut su, "carol");
    su.batch_execute("GRANT hybrid_admin TO carol").unwrap();
    let mut acme = connect_as(&cluster, "acme_user");
    acme.batch_execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, body text);
         CREATE INDEX t_search ON t USING hybrid (id, body) WITH (key_field = 'id')",
    )
    .unwrap();

    // (statement, SQLSTATEs that refuse it: views that are not updatable may be refused by
    // the rewriter before privileges are checked)
    let statements: [(&str, &[&str]); 19] = [
        ("SELECT * FROM hybrid.tenants", &["42501"]),
        ("INSERT INTO hybrid.tenants (name) VALUES ('mine')", &["42501"]),
        ("UPDATE hybrid.tenants SET max_documents = NULL WHERE name = 'acme_corp'", &["42501"]),
        ("DELETE FROM hybrid.tenants WHERE name = 'acme_corp'", &["42501"]),
        ("TRUNCATE hybrid.tenants CASCADE", &["42501"]),
        ("SELECT * FROM hybrid.role_tenants", &["42501"]),
        ("INSERT INTO hybrid.role_tenants VALUES ('acme_user'::regrole, 'default')", &["42501"]),
        ("UPDATE hybrid.role_tenants SET tenant = 'default'", &["42501"]),
        ("DELETE FROM hybrid.role_tenants", &["42501"]),
        ("TRUNCATE hybrid.role_tenants", &["42501"]),
        ("SELECT * FROM hybrid.index_registry", &["42501"]),
        ("INSERT INTO hybrid.index_registry (index_oid, settings) VALUES (1, '{}')", &["42501"]),
        ("UPDATE hybrid.index_registry SET tenant = 'default'", &["42501"]),
        ("DELETE FROM hybrid.index_registry", &["42501"]),
        ("TRUNCATE hybrid.index_registry", &["42501"]),
        ("INSERT INTO hybrid.indexes (name) VALUES ('x')", &["42501", "55000"]),
        ("UPDATE hybrid.indexes SET tenant = 'default'", &["42501", "55000"]),
        ("DELETE FROM hybrid.indexes", &["42501", "55000"]),
        ("UPDATE hybrid.tenant_usage SET max_documents = NULL", &["42501", "55000"]),
    ];
    let mut wrong = Vec::new();
    for (s, refused) in statements {
        let got = outcome(&mut acme, s, &[]);
        if !refused.contains(&got.as_str()) {
            wrong.push(format!("acme_user: {s} -> {got}"));
        }
    }
    // Administrators manage tenants, but assign roles only through hybrid.assign_tenant and
    // never write the index registry.
    let mut carol = connect_as(&cluster, "carol");
    for (s, expected) in [
        ("SELECT * FROM hybrid.tenants", "ok"),
        ("UPDATE hybrid.tenants SET max_documents = 20 WHERE name = 'acme_corp'", "ok"),
        ("INSERT INTO hybrid.tenants (name) VALUES ('initech')", "ok"),
        ("SELECT * FROM hybrid.role_tenants", "ok"),
        ("INSERT INTO hybrid.role_tenants VALUES ('carol'::regrole, 'initech')", "42501"),
        ("UPDATE hybrid.role_tenants SET tenant = 'initech'", "42501"),
        ("INSERT INTO hybrid.index_registry (index_oid, settings) VALUES (1, '{}')", "42501"),
        ("UPDATE hybrid.index_registry SET tenant = 'initech'", "42501"),
        ("DELETE FROM hybrid.index_registry", "42501"),
    ] {
        let got = outcome(&mut carol, s, &[]);
        if got != expected {
            wrong.push(format!("carol (hybrid_admin): {s} -> {got}, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The limits the tenant's role could not lift still hold (raised to 20 by the admin).
    acme.batch_execute("INSERT INTO t SELECT i, 'x' FROM generate_series(1, 20) i").unwrap();
    assert_code(&mut acme, "INSERT INTO t VALUES (21, 'x')", "53400", "the 21st document");
    assert_eq!(names(&mut acme, "SELECT tenant FROM hybrid.indexes"), vec!["acme_corp"]);
    cluster.assert_no_backend_crash();
}

/// The extension runs its catalog queries as the extension owner (a superuser). Those queries
/// must not resolve operators or functions through the caller's search_path: a role that puts
/// its own schema first, with its own `=` operators, would otherwise run code as a superuser.
#[test]
fn catalog_work_done_as_the_extension_owner_ignores_the_callers_search_path() {
    let cluster = TestCluster::new("sec_search_path");
    let mut su = cluster.connect();
    create_tenant(
        &mut su,
        "mall",
        Limits { max_indexes: Some(10), max_documents: Some(1000), max_bytes: Some(1 << 30) },
    );
    create_tenant_role(&mut su, "mallory", "mall");
    su.batch_execute("CREATE SCHEMA mallory AUTHORIZATION mallory").unwrap();
    let mut m = connect_as(&cluster, "mallory");
    m.batch_execute(
        r#"CREATE TABLE mallory.seen (who text, what text);
           CREATE FUNCTION mallory.oideq(a oid, b oid) RETURNS bool LANGUAGE plpgsql AS $$
           BEGIN
               INSERT INTO mallory.seen VALUES (current_user, 'oid = oid');
               RETURN a OPERATOR(pg_catalog.=) b;
           END $$;
           CREATE FUNCTION mallory.texteq(a text, b text) RETURNS bool LANGUAGE plpgsql AS $$
           BEGIN
               INSERT INTO mallory.seen VALUES (current_user, 'text = text');
               RETURN a OPERATOR(pg_catalog.=) b;
           END $$;
           CREATE OPERATOR mallory.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = mallory.oideq);
           CREATE OPERATOR mallory.= (LEFTARG = text, RIGHTARG = text, FUNCTION = mallory.texteq);
           SET search_path = mallory, pg_catalog, public;"#,
    )
    .unwrap();
    // The operators are live in mallory's session: they run (as mallory) for her own queries.
    m.batch_execute("SELECT 1::oid = 1::oid, 'a'::text = 'a'::text").unwrap();
    assert_eq!(count(&mut m, "SELECT count(*) FROM mallory.seen WHERE who = 'mallory'"), 2);
    m.batch_execute("DELETE FROM mallory.seen").unwrap();

    let mut failed = Vec::new();
    for sql in [
        "SELECT hybrid.current_tenant()",
        "SELECT * FROM hybrid.indexes",
        "SELECT * FROM hybrid.tenant_usage",
        "CREATE TABLE public.mt (id bigint PRIMARY KEY, body text)",
        "CREATE INDEX mt_search ON public.mt USING hybrid (id, body) WITH (key_field = 'id')",
        "INSERT INTO public.mt VALUES (1, 'common')",
        "SELECT hybrid.force_merge('public.mt_search')",
        "DROP INDEX public.mt_search",
    ] {
        if let Err(e) = m.batch_execute(sql) {
            sync(&mut m);
            failed.push(format!("{sql}: {e}"));
        }
    }
    let seen: Vec<String> = names(&mut su, "SELECT DISTINCT who || ' ran ' || what FROM mallory.seen ORDER BY 1");
    let escalated: Vec<&String> = seen.iter().filter(|s| !s.starts_with("mallory ")).collect();
    assert!(
        escalated.is_empty(),
        "functions of role mallory ran as another role through her search_path: {escalated:?}"
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_roles WHERE rolname = 'mallory' AND rolsuper"), 0);
    cluster.assert_no_backend_crash();
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// lifecycle.rs checks the modes of text index files; this adds what vectors, graph segments,
/// merges and quota-refused work leave: every path under `$PGDATA/pg_hybrid` is private to the
/// server's OS user (0600 files, 0700 folders).
#[test]
fn vector_graph_and_merged_files_are_private_to_the_server_user() {
    let cluster = TestCluster::new("sec_file_modes");
    let mut c = cluster.connect();
    c.batch_execute(
        "CREATE TABLE v (id bigint PRIMARY KEY, body text, embedding real[]);
         INSERT INTO v SELECT i, 'common ' || i, ARRAY[cos(i), sin(i), cos(i * 0.7), sin(i * 1.3) + 2]::real[]
           FROM generate_series(1, 1500) i;
         CREATE INDEX v_search ON v USING hybrid (id, body, embedding)
           WITH (key_field = 'id', fields = '{\"embedding\": {\"dimensions\": 4, \"metric\": \"l2\"}}');
         INSERT INTO v VALUES (2001, 'late', '{1,2,3,4}'), (2002, 'later', '{4,3,2,1}');
         DELETE FROM v WHERE id % 10 = 0;",
    )
    .unwrap();
    c.batch_execute("VACUUM v").unwrap();
    c.batch_execute("SELECT hybrid.force_merge('v_search')").unwrap();
    assert!(
        c.query_one("SELECT max(graph_segments) FROM hybrid.vector_info('v_search')", &[]).unwrap().get::<_, i32>(0)
            >= 1,
        "expected a segment with an HNSW graph"
    );
    // Work refused by a quota leaves nothing readable behind either.
    c.batch_execute("INSERT INTO hybrid.tenants (name, max_indexes) VALUES ('tiny', 0)").unwrap();
    create_tenant_role(&mut c, "tiny_user", "tiny");
    let mut t = connect_as(&cluster, "tiny_user");
    t.batch_execute("CREATE TABLE w (id bigint PRIMARY KEY, body text); INSERT INTO w VALUES (1, 'x')").unwrap();
    assert_code(
        &mut t,
        "CREATE INDEX w_search ON w USING hybrid (id, body) WITH (key_field = 'id')",
        "53400",
        "max_indexes 0",
    );

    assert_sidecar_private(&cluster, |paths| {
        assert!(paths.iter().any(|p| p.to_string_lossy().ends_with(".hvec")), "no vector files: {paths:?}");
    });
}
