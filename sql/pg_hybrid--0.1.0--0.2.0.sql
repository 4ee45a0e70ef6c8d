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
-- pg_dump keeps the tenants and their limits (the default tenant comes with the extension).
SELECT pg_catalog.pg_extension_config_dump('hybrid.tenants', $$WHERE name <> 'default'$$);

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

-- hybrid.search finds its index's settings through hybrid.index_settings (table privileges),
-- not the tenant-filtered view hybrid.indexes.
CREATE FUNCTION hybrid."index_settings"("index" regclass) RETURNS jsonb
STRICT STABLE LANGUAGE c AS 'MODULE_PATHNAME', 'index_settings_wrapper';
CREATE OR REPLACE FUNCTION hybrid.search(
    index          regclass,
    query          text             DEFAULT NULL,
    vector         real[]           DEFAULT NULL,
    k              integer          DEFAULT 10,
    window_size    integer          DEFAULT 100,
    rank_constant  integer          DEFAULT 60,
    text_weight    double precision DEFAULT 1.0,
    vector_weight  double precision DEFAULT 1.0,
    text_field     text             DEFAULT NULL,
    vector_field   text             DEFAULT NULL
) RETURNS TABLE (key text, score double precision, text_rank integer, vector_rank integer)
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    tbl      regclass;
    settings jsonb;
    keycol   text;
    tcol     text;
    vcol     text;
    op       text;
    parts    text[] := '{}';
    lists    text;
BEGIN
    -- Raises 42809 for anything but a hybrid index, 42501 without SELECT on its table. (Not
    -- hybrid.indexes: that view shows only the caller's tenant, and searching is governed by
    -- table privileges, as for @@@.)
    settings := hybrid.index_settings(index);
    SELECT i.indrelid INTO tbl FROM pg_catalog.pg_index i WHERE i.indexrelid = index;
    IF query IS NULL AND vector IS NULL THEN
        RAISE EXCEPTION 'hybrid.search() needs a query, a vector, or both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF k IS NULL OR k < 1 OR window_size IS NULL OR window_size < 1 OR rank_constant IS NULL OR rank_constant < 0 THEN
        RAISE EXCEPTION 'k and window_size must be positive and rank_constant not negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF text_weight IS NULL OR vector_weight IS NULL OR text_weight < 0 OR vector_weight < 0 THEN
        RAISE EXCEPTION 'weights must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    window_size := greatest(window_size, k);
    keycol := settings->>'key_field';

    IF query IS NOT NULL THEN
        tcol := coalesce(text_field, settings->'text_fields'->0->>'name');
        IF tcol IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(settings->'text_fields') f WHERE f->>'name' = tcol) THEN
            RAISE EXCEPTION 'index "%" has no text field "%"', index, coalesce(tcol, '')
                USING ERRCODE = 'undefined_column';
        END IF;
        parts := parts || format(
            $q$SELECT key, row_number() OVER (ORDER BY s DESC, key) AS r, 't' AS list
                 FROM (SELECT %1$I AS key, hybrid.score(%1$I) AS s FROM %2$s
                        WHERE %3$I OPERATOR(@extschema@.@@@) $1 ORDER BY hybrid.score(%1$I) DESC LIMIT $3) l$q$,
            keycol, tbl, tcol);
    END IF;
    IF vector IS NOT NULL THEN
        SELECT f->>'name', CASE f->>'metric' WHEN 'l2' THEN '<->' WHEN 'cosine' THEN '<=>' ELSE '<#>' END
          INTO vcol, op
          FROM jsonb_array_elements(coalesce(settings->'vector_fields', '[]')) f
         WHERE vector_field IS NULL OR f->>'name' = vector_field
         LIMIT 1;
        IF vcol IS NULL THEN
            RAISE EXCEPTION 'index "%" has no vector field%', index, coalesce(' "' || vector_field || '"', '')
                USING ERRCODE = 'undefined_column';
        END IF;
        parts := parts || format(
            $q$SELECT key, row_number() OVER (ORDER BY d, key) AS r, 'v' AS list
                 FROM (SELECT %1$I AS key, %3$I OPERATOR(@extschema@.%4$s) $2 AS d FROM %2$s
                        WHERE %3$I IS NOT NULL ORDER BY %3$I OPERATOR(@extschema@.%4$s) $2 LIMIT $3) l$q$,
            keycol, tbl, vcol, op);
    END IF;
    lists := array_to_string(parts, ' UNION ALL ');
    RETURN QUERY EXECUTE format(
        $q$SELECT key::text,
                  sum(CASE list WHEN 't' THEN $5 ELSE $6 END / ($4 + r))::double precision,
                  min(r) FILTER (WHERE list = 't')::integer,
                  min(r) FILTER (WHERE list = 'v')::integer
             FROM (%s) lists
            GROUP BY key
            ORDER BY 2 DESC, 1
            LIMIT $7$q$, lists)
    USING query, vector, window_size, rank_constant, text_weight, vector_weight, k;
END
$fn$;
