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
