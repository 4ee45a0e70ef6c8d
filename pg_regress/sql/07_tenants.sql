-- Tenants, quotas and privileges: the catalog a tenant sees and the errors it gets.
CREATE EXTENSION IF NOT EXISTS pg_hybrid;
\set VERBOSITY default
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_acme, regress_globex, regress_admin, regress_outsider;
RESET client_min_messages;
CREATE ROLE regress_acme;
CREATE ROLE regress_globex;
CREATE ROLE regress_admin IN ROLE hybrid_admin;
CREATE ROLE regress_outsider;
CREATE SCHEMA tenancy;
GRANT USAGE, CREATE ON SCHEMA tenancy TO regress_acme, regress_globex, regress_outsider;
GRANT USAGE ON SCHEMA tenancy TO regress_admin;

-- Tenants are rows of hybrid.tenants; roles are assigned by administrators.
INSERT INTO hybrid.tenants (name, max_indexes, max_documents, max_bytes) VALUES ('acme', 2, 100, NULL);
INSERT INTO hybrid.tenants (name, max_indexes) VALUES ('globex', 1);
SELECT hybrid.assign_tenant('regress_acme', 'acme');
SELECT hybrid.assign_tenant('regress_globex', 'globex');
SELECT hybrid.assign_tenant('regress_acme', 'no_such_tenant');
SELECT hybrid.assign_tenant('no_such_role', 'acme');
SELECT name, max_indexes, max_documents, max_bytes FROM hybrid.tenants ORDER BY name;

-- A role may not change its tenant, nor anyone else's, nor the limits.
SET ROLE regress_acme;
SELECT hybrid.current_tenant();
SELECT hybrid.assign_tenant('regress_acme', 'globex');
UPDATE hybrid.tenants SET max_indexes = 100 WHERE name = 'acme';
RESET ROLE;
-- An administrator (member of hybrid_admin) manages other roles, but not itself (a
-- superuser's session may: SET SESSION AUTHORIZATION makes this session regress_admin's own).
SET SESSION AUTHORIZATION regress_admin;
SELECT hybrid.assign_tenant('regress_outsider', 'default');
SELECT hybrid.assign_tenant('regress_admin', 'acme');
RESET SESSION AUTHORIZATION;

-- Indexes belong to their creator's tenant.
SET ROLE regress_acme;
CREATE TABLE tenancy.acme_docs (id int PRIMARY KEY, body text);
CREATE INDEX acme_search ON tenancy.acme_docs USING hybrid (id, body) WITH (key_field = 'id');
CREATE TABLE tenancy.acme_more (id int PRIMARY KEY, body text);
CREATE INDEX acme_more_search ON tenancy.acme_more USING hybrid (id, body) WITH (key_field = 'id');
-- The third is beyond max_indexes: nothing is created.
CREATE TABLE tenancy.acme_third (id int PRIMARY KEY, body text);
CREATE INDEX acme_third_search ON tenancy.acme_third USING hybrid (id, body) WITH (key_field = 'id');
SELECT count(*) FROM pg_class WHERE relname = 'acme_third_search';
-- Documents: 100 fit, the 101st does not, and the failed statement leaves nothing.
INSERT INTO tenancy.acme_docs SELECT i, 'document ' || i FROM generate_series(1, 60) i;
INSERT INTO tenancy.acme_more SELECT i, 'document ' || i FROM generate_series(1, 40) i;
INSERT INTO tenancy.acme_docs VALUES (61, 'one too many');
SELECT count(*) FROM tenancy.acme_docs;
SELECT count(*) FROM tenancy.acme_docs WHERE body @@@ 'document';
-- Deleting (and vacuuming) frees room.
DELETE FROM tenancy.acme_more WHERE id > 30;
RESET ROLE;
VACUUM tenancy.acme_more;
SET ROLE regress_acme;
INSERT INTO tenancy.acme_docs VALUES (61, 'fits now');
SELECT tenant, indexes, max_indexes, documents, max_documents FROM hybrid.tenant_usage ORDER BY tenant;
SELECT name, tenant FROM hybrid.indexes ORDER BY name;
RESET ROLE;

-- globex sees only its own rows; an index's own max_documents applies as well.
SET ROLE regress_globex;
CREATE TABLE tenancy.globex_docs (id int PRIMARY KEY, body text);
CREATE INDEX globex_search ON tenancy.globex_docs USING hybrid (id, body) WITH (key_field = 'id', max_documents = 3);
INSERT INTO tenancy.globex_docs VALUES (1, 'a'), (2, 'b'), (3, 'c');
INSERT INTO tenancy.globex_docs VALUES (4, 'd');
SELECT name, tenant FROM hybrid.indexes ORDER BY name;
SELECT tenant, indexes, max_indexes, documents FROM hybrid.tenant_usage ORDER BY tenant;
-- Searching another tenant's table needs SELECT on it, like any query.
SELECT id FROM tenancy.acme_docs WHERE body @@@ 'document' LIMIT 1;
-- Admin functions need ownership of the index or hybrid_admin.
SELECT hybrid.force_merge('tenancy.acme_search');
SELECT hybrid.snapshot_now('tenancy.acme_search');
SELECT * FROM hybrid.restore('tenancy.acme_search');
SELECT ok FROM hybrid.verify('tenancy.acme_search');
RESET ROLE;
-- Administrators see every tenant.
SET ROLE regress_admin;
SELECT name, tenant FROM hybrid.indexes ORDER BY name;
SELECT tenant, indexes, documents FROM hybrid.tenant_usage ORDER BY tenant;
SELECT hybrid.force_merge('tenancy.acme_search');
RESET ROLE;

-- Settings that carry credentials are the superuser's only.
SET ROLE regress_outsider;
SHOW hybrid.s3_secret_access_key;
SET hybrid.s3_access_key_id = 'AKIA';
SELECT count(*) FROM pg_settings WHERE name = 'hybrid.s3_secret_access_key';
RESET ROLE;

-- A tenant that roles belong to or that owns indexes cannot be deleted.
DELETE FROM hybrid.tenants WHERE name = 'globex';
SELECT hybrid.assign_tenant('regress_globex', 'default');
DELETE FROM hybrid.tenants WHERE name = 'globex';
-- A tenant's name can change: its indexes and roles follow.
UPDATE hybrid.tenants SET name = 'acme_corp' WHERE name = 'acme';
SELECT name, tenant FROM hybrid.indexes ORDER BY name;
SELECT r.rolname, t.tenant FROM hybrid.role_tenants t JOIN pg_roles r ON r.oid = t.role_oid ORDER BY 1;

DROP SCHEMA tenancy CASCADE;
SELECT count(*) FROM hybrid.indexes;
SELECT hybrid.assign_tenant('regress_acme', 'default');
DELETE FROM hybrid.tenants WHERE name IN ('acme_corp', 'globex');
SELECT name FROM hybrid.tenants ORDER BY name;
DROP ROLE regress_acme, regress_globex, regress_admin, regress_outsider;
