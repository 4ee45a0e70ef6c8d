-- Snapshots and restore through SQL, with the default store (a folder in the data directory).
-- The regress cluster's workers take no snapshots of their own (scripts/regress.sh sets
-- hybrid.snapshot_interval = 0), so every snapshot here is one this file asked for.
CREATE EXTENSION IF NOT EXISTS pg_hybrid;
CREATE TABLE snap (id int PRIMARY KEY, body text);
INSERT INTO snap SELECT i, 'snapshot row ' || i FROM generate_series(1, 50) i;
CREATE INDEX snap_search ON snap USING hybrid (id, body) WITH (key_field = 'id');
SET client_min_messages = warning;  -- progress NOTICEs name files and sizes
-- snapshot_now returns the generation it stored.
SELECT hybrid.snapshot_now('snap_search') = (SELECT generation FROM hybrid.index_info('snap_search')) AS current_generation;
SELECT sequence, files > 0 AS has_files, files_uploaded = files AS sent_all, bytes_uploaded = bytes_total AS sent_all_bytes,
       finished_at >= started_at AS timed, store_url LIKE 'file://%' AS default_store
  FROM hybrid.snapshots WHERE index = 'snap_search'::regclass ORDER BY sequence;
-- Nothing changed: the generation is in the store already, no new snapshot is made.
SELECT hybrid.snapshot_now('snap_search') = (SELECT generation FROM hybrid.index_info('snap_search')) AS current_generation;
SELECT count(*) FROM hybrid.snapshots WHERE index = 'snap_search'::regclass;
-- One more row: a new snapshot, and only the new segment's files travel.
INSERT INTO snap VALUES (51, 'snapshot row added later');
SELECT hybrid.snapshot_now('snap_search') = (SELECT generation FROM hybrid.index_info('snap_search')) AS current_generation;
-- (Sequence numbers follow generations, which this file does not pin down: count them instead.)
SELECT row_number() OVER (ORDER BY sequence) AS nth, files_uploaded > 0 AS sent_some, files_uploaded < files AS not_all, bytes_uploaded < bytes_total AS not_all_bytes
  FROM hybrid.snapshots WHERE index = 'snap_search'::regclass ORDER BY sequence;
-- A row committed after the last snapshot: restore takes the snapshot, then catches up.
INSERT INTO snap VALUES (52, 'after the snapshot');
DELETE FROM snap WHERE id = 1;
SELECT source, rows_kept, rows_added, entries_removed, bytes_downloaded > 0 AS downloaded FROM hybrid.restore('snap_search');
SELECT count(*) FROM snap WHERE body @@@ 'snapshot';
SELECT id FROM snap WHERE body @@@ '"after the snapshot"';
SELECT visible_rows, missing, gone, ok FROM hybrid.verify('snap_search');
-- snapshot_on_create: the first snapshot is part of CREATE INDEX (files with the same content
-- as another index's, such as empty ones, are in the store already: blobs are by content).
CREATE TABLE snap2 (id int PRIMARY KEY, body text);
INSERT INTO snap2 VALUES (1, 'first'), (2, 'second');
CREATE INDEX snap2_search ON snap2 USING hybrid (id, body) WITH (key_field = 'id', snapshot_on_create = true);
SELECT index, sequence, generation = (SELECT generation FROM hybrid.index_info('snap2_search')) AS current_generation
  FROM hybrid.snapshots WHERE index = 'snap2_search'::regclass;
RESET client_min_messages;
CREATE INDEX snap2_bad ON snap2 USING hybrid (id, body) WITH (key_field = 'id', snapshot_on_create = 'maybe');
-- Errors.
CREATE INDEX snap_btree ON snap (body);
SELECT hybrid.snapshot_now('snap_btree');
SELECT * FROM hybrid.restore('snap_btree');
SELECT hybrid.snapshot_now('snap');
SELECT hybrid.snapshot_now(NULL);
-- The workers view: the launcher runs when pg_hybrid is preloaded.
SELECT kind, state IN ('running', 'sleeping') AS known_state FROM hybrid.workers WHERE kind = 'launcher';
-- Dropping an index forgets its snapshots.
DROP TABLE snap, snap2;
SELECT count(*) FROM hybrid.snapshots;
