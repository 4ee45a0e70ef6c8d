//! Helpers shared by the tenancy, security and upgrade tests: sessions of other roles, tenants,
//! errors with their SQLSTATE and message, transactions at an isolation level with retries.

#![allow(dead_code)]

use pg_hybrid_tests::*;

/// A new session in [`TEST_DB`] logged in as `role` (the clusters trust local TCP logins).
pub fn connect_as(cluster: &TestCluster, role: &str) -> Client {
    connect_db_as(cluster, TEST_DB, role)
}

/// A new session in database `db` logged in as `role`.
pub fn connect_db_as(cluster: &TestCluster, db: &str, role: &str) -> Client {
    let conn = format!("host=127.0.0.1 port={} user={role} dbname={db} connect_timeout=30", cluster.port());
    Client::connect(&conn, NoTls).unwrap_or_else(|e| panic!("connect as {role} to {db}: {e}"))
}

/// Connection string of `role` in [`TEST_DB`] (for threads).
pub fn conn_str_as(cluster: &TestCluster, role: &str) -> String {
    format!("host=127.0.0.1 port={} user={role} dbname={TEST_DB} connect_timeout=30", cluster.port())
}

/// SQLSTATE and message of a database error; panics on anything else.
pub fn db_error(e: &postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => panic!("expected a database error, got: {e}"),
    }
}

/// Runs `sql` and returns the SQLSTATE and message it fails with; panics if it succeeds.
pub fn expect_err(c: &mut Client, sql: &str) -> (String, String) {
    match c.batch_execute(sql) {
        Ok(()) => panic!("expected `{sql}` to fail, it succeeded"),
        Err(e) => {
            sync(c);
            db_error(&e)
        }
    }
}

/// A round trip: the client returns an error as soon as the server reports it, before the
/// server has finished aborting the transaction (and run its abort callbacks). The next
/// message is only answered after that.
pub fn sync(c: &mut Client) {
    let _ = c.batch_execute("");
}

/// Asserts that `sql` fails with SQLSTATE `code`; returns the message.
pub fn assert_code(c: &mut Client, sql: &str, code: &str, who: &str) -> String {
    let (got, msg) = expect_err(c, sql);
    assert_eq!(got, code, "{who}: `{sql}` failed with {got} ({msg}), expected {code}");
    msg
}

/// Creates a LOGIN role that may create tables in schema public.
pub fn create_login_role(su: &mut Client, role: &str) {
    su.batch_execute(&format!("CREATE ROLE {role} LOGIN; GRANT CREATE ON SCHEMA public TO {role};"))
        .unwrap_or_else(|e| panic!("create role {role}: {e}"));
}

/// Limits of a tenant (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_indexes: Option<i64>,
    pub max_documents: Option<i64>,
    pub max_bytes: Option<i64>,
}

fn sql_opt(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "NULL".into())
}

/// Creates tenant `tenant` with `limits` (as a superuser).
pub fn create_tenant(su: &mut Client, tenant: &str, limits: Limits) {
    su.batch_execute(&format!(
        "INSERT INTO hybrid.tenants (name, max_indexes, max_documents, max_bytes) VALUES ('{tenant}', {}, {}, {})",
        sql_opt(limits.max_indexes),
        sql_opt(limits.max_documents),
        sql_opt(limits.max_bytes)
    ))
    .unwrap_or_else(|e| panic!("create tenant {tenant}: {e}"));
}

/// Creates LOGIN role `role` and assigns it to tenant `tenant` (which must exist).
pub fn create_tenant_role(su: &mut Client, role: &str, tenant: &str) {
    create_login_role(su, role);
    su.query_one("SELECT hybrid.assign_tenant($1, $2)", &[&role, &tenant])
        .unwrap_or_else(|e| panic!("assign {role} to {tenant}: {e}"));
}

/// Sets a tenant's limits.
pub fn set_limits(su: &mut Client, tenant: &str, limits: Limits) {
    su.batch_execute(&format!(
        "UPDATE hybrid.tenants SET max_indexes = {}, max_documents = {}, max_bytes = {} WHERE name = '{tenant}'",
        sql_opt(limits.max_indexes),
        sql_opt(limits.max_documents),
        sql_opt(limits.max_bytes)
    ))
    .unwrap_or_else(|e| panic!("set limits of {tenant}: {e}"));
}

/// What `hybrid.tenant_usage` says about a tenant, as seen by the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub indexes: i64,
    pub documents: i64,
    pub bytes: i64,
}

/// The usage of `tenant` (panics if the session cannot see it).
pub fn usage(c: &mut Client, tenant: &str) -> Usage {
    let r = c
        .query_one("SELECT indexes, documents, bytes FROM hybrid.tenant_usage WHERE tenant = $1", &[&tenant])
        .unwrap_or_else(|e| panic!("usage of {tenant}: {e}"));
    Usage { indexes: r.get(0), documents: r.get(1), bytes: r.get(2) }
}

/// The isolation levels of Postgres, with the SQL that starts a transaction at each.
pub const LEVELS: [(&str, &str); 3] = [
    ("read_committed", "BEGIN ISOLATION LEVEL READ COMMITTED"),
    ("repeatable_read", "BEGIN ISOLATION LEVEL REPEATABLE READ"),
    ("serializable", "BEGIN ISOLATION LEVEL SERIALIZABLE"),
];

/// How a transaction that was retried on serialization failures ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// Failed with this SQLSTATE and message (never 40001: those are retried).
    Failed(String, String),
}

/// Runs `begin`, each of `statements`, then COMMIT; on a serialization failure (40001) rolls
/// back and starts again, at most `max_tries` times. `before_first`
/// runs once, after the first `begin` and a statement that takes the snapshot (to line
/// concurrent sessions up). Returns the outcome and how many serialization failures were retried.
pub fn run_retrying(
    c: &mut Client,
    begin: &str,
    statements: &[String],
    max_tries: usize,
    mut before_first: impl FnMut(),
) -> (Outcome, usize) {
    let mut retries = 0;
    for attempt in 0..max_tries {
        let result = (|| -> Result<(), postgres::Error> {
            c.batch_execute(begin)?;
            // Takes the snapshot (REPEATABLE READ and SERIALIZABLE keep it).
            c.batch_execute("SELECT 1")?;
            if attempt == 0 {
                before_first();
            }
            for s in statements {
                c.batch_execute(s)?;
            }
            c.batch_execute("COMMIT")?;
            Ok(())
        })();
        match result {
            Ok(()) => return (Outcome::Committed, retries),
            Err(e) => {
                let (code, msg) = db_error(&e);
                // After an error in the block the transaction is aborted; after a failed COMMIT
                // it is already over (ROLLBACK then only warns).
                let _ = c.batch_execute("ROLLBACK");
                if code == "40001" {
                    retries += 1;
                    continue;
                }
                return (Outcome::Failed(code, msg), retries);
            }
        }
    }
    panic!("still failing with serialization errors after {max_tries} tries: {statements:?}");
}
