//! Upgrades: `CREATE EXTENSION pg_hybrid VERSION '0.1.0'` then `ALTER EXTENSION pg_hybrid
//! UPDATE` must give exactly the SQL schema of a fresh install of the current version, and an
//! index built under 0.1.0 keeps working after the update (it joins the tenant "default").

mod tenantutil;

use std::collections::BTreeSet;

use pg_hybrid_tests::*;
use tenantutil::*;

/// The first released version (its script is frozen).
const OLD: &str = "0.1.0";

/// One line per property of every member object of the extension in the session's database:
/// functions (definition, owner, ACL, comment), relations (kind, owner, ACL, options, RLS,
/// comment), their columns (position among live columns, type, nullability, default,
/// collation, ACL, comment), constraints, indexes, view definitions, triggers, policies,
/// operators, operator classes and families with their operators and support functions,
/// access methods, types, schemas (owner, ACL, comment), anything else by description, the
/// extension's own properties (schema, relocatable, config tables) and the rows it seeds.
const SCHEMA_SQL: &str = r#"
WITH ext AS (SELECT * FROM pg_extension WHERE extname = 'pg_hybrid'),
m AS (SELECT classid, objid, objsubid FROM pg_depend
       WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e' AND refobjid = (SELECT oid FROM ext)),
rels AS (SELECT c.* FROM m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid)
SELECT line FROM (
  SELECT 'member ' || pg_describe_object(classid, objid, objsubid) AS line FROM m
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure || ' owner=' || p.proowner::regrole || ' acl=' || coalesce(p.proacl::text, '-')
         || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '-') || E'\n'
         || CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_get_functiondef(p.oid) END
    FROM m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
  UNION ALL
  SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' owner=' || c.relowner::regrole
         || ' acl=' || coalesce(c.relacl::text, '-') || ' options=' || coalesce(c.reloptions::text, '-')
         || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity || ' persistence=' || c.relpersistence::text
         || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '-')
    FROM rels c
  UNION ALL
  SELECT 'column ' || c.oid::regclass || '.' || a.attname
         || ' position=' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)
         || ' type=' || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
         || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
         || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
         || ' collation=' || coalesce(nullif(a.attcollation, 0)::regcollation::text, '-')
         || ' acl=' || coalesce(a.attacl::text, '-') || ' comment=' || coalesce(col_description(c.oid, a.attnum), '-')
    FROM rels c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
  UNION ALL
  SELECT 'constraint ' || c.conrelid::regclass || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
         || ' deferrable=' || c.condeferrable || ' validated=' || c.convalidated
    FROM rels r JOIN pg_constraint c ON c.conrelid = r.oid
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM rels r JOIN pg_index i ON i.indrelid = r.oid
  UNION ALL
  SELECT 'view ' || r.oid::regclass || E'\n' || pg_get_viewdef(r.oid) FROM rels r WHERE r.relkind IN ('v', 'm')
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
  UNION ALL
  SELECT 'rule ' || pg_get_ruledef(w.oid) FROM rels r JOIN pg_rewrite w ON w.ev_class = r.oid AND w.rulename <> '_RETURN'
  UNION ALL
  SELECT 'policy ' || p.polrelid::regclass || ' ' || p.polname || ' ' || p.polcmd::text || ' ' || p.polpermissive
         || ' roles=' || p.polroles::regrole[]::text || ' using=' || coalesce(pg_get_expr(p.polqual, p.polrelid), '-')
         || ' check=' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '-')
    FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
  UNION ALL
  SELECT 'operator ' || o.oid::regoperator || ' owner=' || o.oprowner::regrole || ' code=' || o.oprcode::regprocedure
         || ' result=' || o.oprresult::regtype || ' commutator=' || o.oprcom::regoperator || ' negator=' || o.oprnegate::regoperator
         || ' restrict=' || o.oprrest::regproc || ' join=' || o.oprjoin::regproc || ' hashes=' || o.oprcanhash
         || ' merges=' || o.oprcanmerge || ' comment=' || coalesce(obj_description(o.oid, 'pg_operator'), '-')
    FROM m JOIN pg_operator o ON m.classid = 'pg_operator'::regclass AND o.oid = m.objid
  UNION ALL
  SELECT 'opclass ' || pg_describe_object('pg_opclass'::regclass, c.oid, 0) || ' default=' || c.opcdefault
         || ' type=' || c.opcintype::regtype || ' storage=' || coalesce(nullif(c.opckeytype, 0)::regtype::text, '-')
         || ' family=' || pg_describe_object('pg_opfamily'::regclass, c.opcfamily, 0)
    FROM m JOIN pg_opclass c ON m.classid = 'pg_opclass'::regclass AND c.oid = m.objid
  UNION ALL
  SELECT 'amop ' || pg_describe_object('pg_amop'::regclass, ao.oid, 0) || ' purpose=' || ao.amoppurpose::text
         || ' sortfamily=' || coalesce(nullif(ao.amopsortfamily, 0)::text, '-')
    FROM m JOIN pg_amop ao ON m.classid = 'pg_opfamily'::regclass AND ao.amopfamily = m.objid
  UNION ALL
  SELECT 'amproc ' || pg_describe_object('pg_amproc'::regclass, ap.oid, 0)
    FROM m JOIN pg_amproc ap ON m.classid = 'pg_opfamily'::regclass AND ap.amprocfamily = m.objid
  UNION ALL
  SELECT 'access method ' || a.amname || ' type=' || a.amtype::text || ' handler=' || a.amhandler::regprocedure
    FROM m JOIN pg_am a ON m.classid = 'pg_am'::regclass AND a.oid = m.objid
  UNION ALL
  SELECT 'type ' || t.oid::regtype || ' kind=' || t.typtype::text || ' owner=' || t.typowner::regrole || ' acl=' || coalesce(t.typacl::text, '-')
    FROM m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
  UNION ALL
  SELECT 'schema ' || n.nspname || ' owner=' || n.nspowner::regrole || ' acl=' || coalesce(n.nspacl::text, '-')
         || ' comment=' || coalesce(obj_description(n.oid, 'pg_namespace'), '-')
    FROM m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
  UNION ALL
  SELECT 'extension schema=' || e.extnamespace::regnamespace || ' relocatable=' || e.extrelocatable
         || ' config=' || coalesce((SELECT string_agg(c::regclass::text, ',' ORDER BY c::regclass::text) FROM unnest(e.extconfig) c), '-')
         || ' conditions=' || coalesce(e.extcondition::text, '-')
    FROM ext e
  UNION ALL
  SELECT 'tenant row ' || t.name || ' ' || coalesce(t.max_indexes::text, '-') || ' ' || coalesce(t.max_documents::text, '-')
         || ' ' || coalesce(t.max_bytes::text, '-')
    FROM hybrid.tenants t
  UNION ALL
  SELECT 'role ' || r.rolname || ' login=' || r.rolcanlogin || ' super=' || r.rolsuper || ' inherit=' || r.rolinherit
    FROM pg_roles r WHERE r.rolname = 'hybrid_admin'
) lines
ORDER BY 1
"#;

fn schema(c: &mut Client) -> Vec<String> {
    c.query(SCHEMA_SQL, &[]).expect("schema query").iter().map(|r| r.get::<_, String>(0)).collect()
}

fn version(c: &mut Client) -> String {
    c.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_hybrid'", &[]).unwrap().get(0)
}

/// The version a fresh install gets (the control file's default).
fn current_version(c: &mut Client) -> String {
    c.query_one("SELECT default_version FROM pg_available_extensions WHERE name = 'pg_hybrid'", &[]).unwrap().get(0)
}

/// Lines only in `a` and only in `b`, for a readable failure.
fn diff(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let (sa, sb): (BTreeSet<&String>, BTreeSet<&String>) = (a.iter().collect(), b.iter().collect());
    (sa.difference(&sb).map(|s| s.to_string()).collect(), sb.difference(&sa).map(|s| s.to_string()).collect())
}

#[test]
fn fresh_and_upgraded_installs_have_the_same_schema() {
    let cluster = TestCluster::new("upgrade_schema");
    // Start from a cluster where the extension has never been installed (so that the upgrade,
    // not a fresh install, is what creates the role hybrid_admin).
    let mut su = cluster.connect_db("postgres");
    for sql in [
        format!("DROP DATABASE {TEST_DB} WITH (FORCE)"),
        "DROP ROLE IF EXISTS hybrid_admin".into(),
        "CREATE DATABASE upgraded".into(),
        "CREATE DATABASE fresh".into(),
    ] {
        su.batch_execute(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    let mut up = cluster.connect_db("upgraded");
    up.batch_execute(&format!("CREATE EXTENSION pg_hybrid VERSION '{OLD}'")).unwrap();
    assert_eq!(version(&mut up), OLD);
    let current = current_version(&mut up);
    assert_ne!(current, OLD, "the current version must differ from {OLD}");
    up.batch_execute("ALTER EXTENSION pg_hybrid UPDATE").unwrap();
    assert_eq!(version(&mut up), current);

    let mut fresh = cluster.connect_db("fresh");
    fresh.batch_execute("CREATE EXTENSION pg_hybrid").unwrap();
    assert_eq!(version(&mut fresh), current);

    let (f, u) = (schema(&mut fresh), schema(&mut up));
    assert!(f.len() > 50, "the schema query found too little: {f:#?}");
    for what in [
        "function hybrid.assign_tenant",
        "relation hybrid.tenants",
        "view hybrid.indexes",
        "access method hybrid",
        "operator @@@",
    ] {
        assert!(f.iter().any(|l| l.starts_with(what)), "nothing about {what} in the fresh schema");
    }
    let (only_fresh, only_upgraded) = diff(&f, &u);
    assert!(
        only_fresh.is_empty() && only_upgraded.is_empty(),
        "fresh {current} and {OLD} updated to {current} differ.\n--- only in the fresh install:\n{}\n--- only in the updated install:\n{}",
        only_fresh.join("\n"),
        only_upgraded.join("\n")
    );
    // The other order (the role already exists when the upgrade runs) gives the same too.
    su.batch_execute("CREATE DATABASE upgraded2").unwrap();
    let mut up2 = cluster.connect_db("upgraded2");
    up2.batch_execute(&format!("CREATE EXTENSION pg_hybrid VERSION '{OLD}'; ALTER EXTENSION pg_hybrid UPDATE"))
        .unwrap();
    let u2 = schema(&mut up2);
    let (a, b) = diff(&f, &u2);
    assert!(a.is_empty() && b.is_empty(), "second upgrade differs: {a:#?} {b:#?}");
    cluster.assert_no_backend_crash();
}

/// The searches an index answers, as comparable values.
#[derive(Debug, PartialEq)]
struct Answers {
    filter: Vec<i64>,
    ranked: Vec<(i64, f32)>,
    knn: Vec<i64>,
    fused: Vec<(String, Option<i32>, Option<i32>)>,
}

fn answers(c: &mut Client) -> Answers {
    let q: Vec<f32> = vec![1.0, 0.2, 0.0, 0.1];
    let ids = |c: &mut Client, sql: &str, q: &Vec<f32>| -> Vec<i64> {
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = if sql.contains("$1") { vec![q] } else { vec![] };
        c.query(sql, &params).unwrap_or_else(|e| panic!("{sql}: {e}")).iter().map(|r| r.get(0)).collect()
    };
    Answers {
        filter: ids(c, "SELECT id FROM items WHERE body @@@ 'harbor' ORDER BY id", &q),
        ranked: c
            .query("SELECT id, hybrid.score(id) FROM items WHERE body @@@ 'harbor OR meadow' ORDER BY hybrid.score(id) DESC, id LIMIT 10", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
        knn: ids(c, "SELECT id FROM items ORDER BY embedding <=> $1 LIMIT 10", &q),
        fused: c
            .query("SELECT key, text_rank, vector_rank FROM hybrid.search('items_search', query => 'harbor', vector => $1, k => 10)", &[&q])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
    }
}

#[test]
fn an_index_built_under_0_1_0_keeps_working_after_the_update() {
    let cluster = TestCluster::new("upgrade_index");
    cluster.connect_db("postgres").batch_execute("CREATE DATABASE old").unwrap();
    let mut c = cluster.connect_db("old");
    c.batch_execute(&format!("CREATE EXTENSION pg_hybrid VERSION '{OLD}'")).unwrap();
    c.batch_execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, body text, embedding real[]);
         INSERT INTO items
           SELECT i, CASE WHEN i % 3 = 0 THEN 'harbor ' ELSE '' END || CASE WHEN i % 5 = 0 THEN 'meadow ' ELSE '' END
                     || 'common row ' || i || repeat(' filler', i % 7),
                  ARRAY[cos(i * 0.3), sin(i * 0.3), (i % 4) * 0.25, 0.1]::real[]
             FROM generate_series(1, 200) i;
         CREATE INDEX items_search ON items USING hybrid (id, body, embedding)
           WITH (key_field = 'id', fields = '{\"embedding\": {\"dimensions\": 4, \"metric\": \"cosine\"}}');
         INSERT INTO items VALUES (201, 'harbor late row', '{1,0.2,0,0.1}');",
    )
    .unwrap();
    force_index(&mut c);
    let before = answers(&mut c);
    assert!(
        before.filter.len() > 50 && before.ranked.len() == 10 && before.knn.len() == 10 && !before.fused.is_empty()
    );
    assert_eq!(before.knn[0], 201);
    let oid_before: i64 = c.query_one("SELECT 'items_search'::regclass::oid::int8", &[]).unwrap().get(0);
    let db_oid = cluster.db_oid("old");
    let folders_before = cluster.sidecar_dirs_of_oid(db_oid);
    assert_eq!(folders_before.len(), 1);

    // A session opened before the update goes on working through it.
    let mut other = cluster.connect_db("old");
    force_index(&mut other);
    c.batch_execute("ALTER EXTENSION pg_hybrid UPDATE").unwrap();
    assert_eq!(version(&mut c), current_version(&mut c));

    for (who, s) in [("the updating session", &mut c), ("a session opened before", &mut other)] {
        assert_eq!(answers(s), before, "{who}: searches after the update");
    }
    let mut fresh_session = cluster.connect_db("old");
    force_index(&mut fresh_session);
    assert_eq!(answers(&mut fresh_session), before, "a new session: searches after the update");

    // Its catalog row joined the tenant "default", and the tenant's usage counts it.
    let row =
        c.query_one("SELECT name, tenant, index_oid::oid::int8, table_oid::text FROM hybrid.indexes", &[]).unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, i64>(2), row.get::<_, String>(3)),
        ("items_search".to_string(), "default".to_string(), oid_before, "items".to_string())
    );
    let u = usage(&mut c, "default");
    assert_eq!((u.indexes, u.documents), (1, 201), "{u:?}");
    assert!(u.bytes > 0);
    assert_eq!(cluster.sidecar_dirs_of_oid(db_oid), folders_before, "the update does not touch the folder");

    // Writes, VACUUM, verification and maintenance go on.
    c.batch_execute(
        "INSERT INTO items VALUES (202, 'harbor after the update', '{0,1,0,0}'); DELETE FROM items WHERE id = 3",
    )
    .unwrap();
    let harbor = answers(&mut c).filter;
    assert!(harbor.contains(&202) && !harbor.contains(&3), "{harbor:?}");
    c.batch_execute("VACUUM items").unwrap();
    assert_verify_ok(&mut c, "items_search");
    c.batch_execute("SELECT hybrid.force_merge('items_search')").unwrap();
    assert_eq!(usage(&mut c, "default").documents, 201);

    // Quotas of its tenant count it: at max_indexes = 1 no second index, at max_documents no
    // more rows; REINDEX of the old index is still allowed.
    c.batch_execute(
        "UPDATE hybrid.tenants SET max_indexes = 1, max_documents = 201 WHERE name = 'default';
         CREATE TABLE other (id bigint PRIMARY KEY, body text)",
    )
    .unwrap();
    assert_code(
        &mut c,
        "CREATE INDEX other_search ON other USING hybrid (id, body) WITH (key_field = 'id')",
        "53400",
        "second index",
    );
    assert_code(&mut c, "INSERT INTO items VALUES (300, 'one too many', NULL)", "53400", "document beyond the limit");
    c.batch_execute("REINDEX INDEX items_search").unwrap();
    let mut expected: Vec<i64> = before.filter.iter().copied().filter(|id| *id != 3).chain([202]).collect();
    expected.sort();
    assert_eq!(answers(&mut c).filter, expected, "after REINDEX");
    assert_eq!(count(&mut c, "SELECT count(*) FROM hybrid.indexes WHERE tenant = 'default'"), 1);

    // Dropping it removes its row and folder.
    c.batch_execute("DROP INDEX items_search").unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) FROM hybrid.index_registry"), 0);
    assert!(cluster.sidecar_dirs_of_oid(db_oid).is_empty());
    cluster.assert_no_backend_crash();
}
