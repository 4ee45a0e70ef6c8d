-- The control plane of pg_hybrid: catalog tables in schema hybrid.

CREATE SCHEMA IF NOT EXISTS hybrid;
COMMENT ON SCHEMA hybrid IS 'pg_hybrid: catalog, search functions and administration';
-- Everyone may call the search functions; what they can search is decided by table privileges
-- and row-level security, as for any query.
GRANT USAGE ON SCHEMA hybrid TO PUBLIC;

-- One row per hybrid index, written in the transaction that builds the index (a failed build
-- leaves no row) and removed with the index.
CREATE TABLE hybrid.indexes (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    index_oid   regclass    NOT NULL UNIQUE,
    table_oid   regclass    NOT NULL,
    name        text        NOT NULL,
    tenant      text        NOT NULL DEFAULT 'default',
    -- The effective configuration: key field and, per text field, its analysis.
    settings    jsonb       NOT NULL,
    state       text        NOT NULL DEFAULT 'ready',
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE hybrid.indexes IS 'pg_hybrid indexes of this database: identity, tenant and effective settings';
GRANT SELECT ON hybrid.indexes TO PUBLIC;

-- Removes catalog rows of dropped indexes (DROP INDEX, DROP TABLE, DROP SCHEMA, ... CASCADE).
-- Their files are removed by the extension's object-access hook once the transaction commits.
CREATE FUNCTION hybrid._forget_dropped_indexes() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM hybrid.indexes i
     USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objid = i.index_oid::oid;
END
$$;
CREATE EVENT TRIGGER hybrid_forget_dropped_indexes ON sql_drop
    EXECUTE FUNCTION hybrid._forget_dropped_indexes();
