-- The control plane of pg_hybrid: catalog tables in schema hybrid.

CREATE SCHEMA IF NOT EXISTS hybrid;
COMMENT ON SCHEMA hybrid IS 'pg_hybrid: catalog, search functions and administration';
-- Everyone may call the search functions; what they can search is decided by table privileges
-- and row-level security, as for any query.
GRANT USAGE ON SCHEMA hybrid TO PUBLIC;

-- One row per hybrid index, written in the transaction that builds the index (a failed build
-- leaves no row) and removed in the transaction that drops it (whatever drops it: DROP INDEX,
-- a cascade, ALTER COLUMN TYPE, REINDEX CONCURRENTLY). Names and tables are not stored but read
-- live through the view hybrid.indexes (tenants.sql), so renames never leave them stale.
CREATE TABLE hybrid.index_registry (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    index_oid   oid         NOT NULL UNIQUE,
    tenant      text        NOT NULL DEFAULT 'default',
    -- The effective configuration: key field and, per text field, its analysis.
    settings    jsonb       NOT NULL,
    state       text        NOT NULL DEFAULT 'ready',
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE hybrid.index_registry IS 'pg_hybrid: identity, tenant and settings of each hybrid index (read it through hybrid.indexes)';

