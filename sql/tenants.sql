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
CREATE VIEW hybrid.indexes AS
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
