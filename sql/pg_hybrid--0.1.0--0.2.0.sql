-- pg_hybrid 0.1.0 -> 0.2.0
-- Frozen once released: later changes go into a new upgrade script. The test
-- tests/tests/upgrade.rs checks that a fresh 0.2.0 install and an upgraded 0.1.0 one have the
-- same SQL schema.
\echo Use "ALTER EXTENSION pg_hybrid UPDATE TO '0.2.0'" to load this file. \quit

-- Tenancy functions (src/api/tenancy.rs).
CREATE FUNCTION hybrid."assign_tenant"("role" TEXT, "tenant" TEXT) RETURNS bool
STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'assign_tenant_wrapper';
CREATE FUNCTION hybrid."current_tenant"() RETURNS TEXT
STRICT STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'current_tenant_wrapper';
CREATE FUNCTION hybrid."can_see_tenant"("tenant" TEXT) RETURNS bool
STRICT STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'can_see_tenant_wrapper';
CREATE FUNCTION hybrid."index_usage"() RETURNS TABLE ("index_oid" oid, "documents" bigint, "bytes" bigint)
STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'index_usage_wrapper';

-- Tenants, quotas and what each role may see of the catalog.

-- Administrators of pg_hybrid (tenants, quotas, any index's maintenance). Roles are shared by
-- all databases of the cluster and outlive the extension, so it is created only if missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'hybrid_admin') THEN
        CREATE ROLE hybrid_admin NOLOGIN;
    END IF;
END
$$;

CREATE TABLE hybrid.tenants (
    name          text        PRIMARY KEY,
    -- NULL: no limit.
    max_indexes   integer     CHECK (max_indexes >= 0),
    max_documents bigint      CHECK (max_documents >= 0),
    max_bytes     bigint      CHECK (max_bytes >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Bumped by every quota check of the tenant: concurrent checks of one tenant conflict on
    -- this row, which makes them race-free at every isolation level (see catalog/tenants.rs).
    quota_checks  bigint      NOT NULL DEFAULT 0
);
COMMENT ON TABLE hybrid.tenants IS 'pg_hybrid tenants and their limits (NULL: unlimited)';
INSERT INTO hybrid.tenants (name) VALUES ('default');

CREATE TABLE hybrid.role_tenants (
    role_oid oid  PRIMARY KEY,
    tenant   text NOT NULL REFERENCES hybrid.tenants (name) ON UPDATE CASCADE
);
COMMENT ON TABLE hybrid.role_tenants IS 'the tenant of each role (hybrid.assign_tenant); roles not listed belong to "default"';

ALTER TABLE hybrid.index_registry
    ADD CONSTRAINT index_registry_tenant_fkey FOREIGN KEY (tenant) REFERENCES hybrid.tenants (name) ON UPDATE CASCADE;

-- Only administrators change tenants and their limits.
REVOKE ALL ON hybrid.tenants, hybrid.role_tenants, hybrid.index_registry FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON hybrid.tenants TO hybrid_admin;
GRANT SELECT, DELETE ON hybrid.role_tenants TO hybrid_admin;

-- Each role sees the indexes of its own tenant; administrators see all.
CREATE OR REPLACE VIEW hybrid.indexes AS
SELECT r.id,
       r.index_oid::regclass AS index_oid,
       i.indrelid::regclass  AS table_oid,
       c.relname::text       AS name,
       r.tenant,
       r.settings,
       r.state,
       r.created_at
  FROM hybrid.index_registry r
  JOIN pg_catalog.pg_index i ON i.indexrelid = r.index_oid
  JOIN pg_catalog.pg_class c ON c.oid = r.index_oid
 WHERE hybrid.can_see_tenant(r.tenant);
COMMENT ON VIEW hybrid.indexes IS 'pg_hybrid indexes of this database: identity, table, tenant and effective settings';
GRANT SELECT ON hybrid.indexes TO PUBLIC;

-- What each tenant uses against its limits (its own row; administrators see all).
CREATE VIEW hybrid.tenant_usage AS
SELECT t.name AS tenant,
       coalesce(u.indexes, 0)   AS indexes,
       t.max_indexes,
       coalesce(u.documents, 0) AS documents,
       t.max_documents,
       coalesce(u.bytes, 0)     AS bytes,
       t.max_bytes
  FROM hybrid.tenants t
  LEFT JOIN (SELECT r.tenant, count(*) AS indexes, sum(x.documents)::bigint AS documents, sum(x.bytes)::bigint AS bytes
               FROM hybrid.index_usage() x
               JOIN hybrid.index_registry r ON r.index_oid = x.index_oid
              GROUP BY r.tenant) u ON u.tenant = t.name
 WHERE hybrid.can_see_tenant(t.name);
COMMENT ON VIEW hybrid.tenant_usage IS 'indexes, documents and bytes of each tenant against its limits';
GRANT SELECT ON hybrid.tenant_usage TO PUBLIC;

-- Snapshots, restores and workers (src/api/snapshots.rs).
CREATE FUNCTION hybrid."snapshot_now"("index" regclass) RETURNS bigint
STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'snapshot_now_wrapper';
CREATE FUNCTION hybrid."restore"("index" regclass) RETURNS TABLE (
    "source" TEXT, "snapshot_generation" bigint, "generation" bigint, "rows_kept" bigint,
    "rows_added" bigint, "entries_removed" bigint, "bytes_downloaded" bigint, "seconds" double precision)
STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'restore_wrapper';
CREATE FUNCTION hybrid."worker_status"() RETURNS TABLE (
    "pid" INT, "database_oid" oid, "kind" TEXT, "activity" TEXT,
    "started_at" timestamp with time zone, "last_run" timestamp with time zone, "runs" bigint,
    "errors" bigint, "last_error" TEXT, "last_error_at" timestamp with time zone,
    "next_run_after" timestamp with time zone)
STRICT VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'worker_status_wrapper';

-- Snapshots in object storage, and the background workers that take them.

-- One row per snapshot an index has in a snapshot store, written once the snapshot's manifest
-- is in the store; pruned with the store's retention; removed with the index.
CREATE TABLE hybrid.snapshot_log (
    index_id       uuid        NOT NULL REFERENCES hybrid.index_registry (id) ON DELETE CASCADE,
    store_url      text        NOT NULL,
    -- The snapshot's number among the index's snapshots in that store (its manifest's name).
    sequence       bigint      NOT NULL,
    -- The index folder generation it holds.
    generation     bigint      NOT NULL,
    files          integer     NOT NULL,
    bytes_total    bigint      NOT NULL,
    -- What this snapshot actually sent (the other files were in the store already).
    files_uploaded integer     NOT NULL,
    bytes_uploaded bigint      NOT NULL,
    -- Every change committed before this WAL position is in the snapshot.
    wal_position   pg_lsn      NOT NULL,
    manifest_key   text        NOT NULL,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL,
    PRIMARY KEY (index_id, store_url, sequence)
);
COMMENT ON TABLE hybrid.snapshot_log IS 'pg_hybrid: the snapshots of each index in object storage (read it through hybrid.snapshots)';
REVOKE ALL ON hybrid.snapshot_log FROM PUBLIC;

CREATE VIEW hybrid.snapshots AS
SELECT r.index_oid::regclass AS index,
       r.tenant,
       s.generation,
       s.sequence,
       s.files,
       s.bytes_total,
       s.files_uploaded,
       s.bytes_uploaded,
       s.wal_position,
       s.store_url,
       s.manifest_key,
       s.started_at,
       s.finished_at
  FROM hybrid.snapshot_log s
  JOIN hybrid.index_registry r ON r.id = s.index_id
 WHERE hybrid.can_see_tenant(r.tenant);
COMMENT ON VIEW hybrid.snapshots IS 'pg_hybrid snapshots of each index: generation, files, bytes total and uploaded, when';
GRANT SELECT ON hybrid.snapshots TO PUBLIC;

CREATE VIEW hybrid.workers AS
SELECT w.pid,
       d.datname AS database,
       w.kind,
       CASE WHEN w.pid IS NULL THEN 'sleeping' ELSE 'running' END AS state,
       w.activity,
       w.started_at,
       w.last_run,
       w.runs,
       w.errors,
       w.last_error,
       w.last_error_at,
       w.next_run_after
  FROM hybrid.worker_status() w
  LEFT JOIN pg_catalog.pg_database d ON d.oid = w.database_oid;
COMMENT ON VIEW hybrid.workers IS 'pg_hybrid background workers: what each is doing, its last run and last error';
GRANT SELECT ON hybrid.workers TO PUBLIC;
