-- Administration: index_info, verify, force_merge; transactions seen through them.
CREATE EXTENSION IF NOT EXISTS pg_hybrid;
CREATE TABLE docs (id int PRIMARY KEY, body text);
CREATE INDEX docs_search ON docs USING hybrid (id, body) WITH (key_field = 'id');
SELECT documents, deleted_documents, segments, bytes > 0 AS has_bytes, generation FROM hybrid.index_info('docs_search');
-- Transactions of at most hybrid.log_max_rows rows append them to the index's pending log: no
-- segment, but the documents count, and a search finds them.
INSERT INTO docs SELECT i, 'row number ' || i || CASE WHEN i % 10 = 0 THEN ' tenth' ELSE '' END FROM generate_series(1, 100) i;
INSERT INTO docs VALUES (101, 'one more row');
BEGIN;
INSERT INTO docs VALUES (102, 'rolled back row');
ROLLBACK;
BEGIN;
INSERT INTO docs VALUES (103, 'kept row');
SAVEPOINT s;
INSERT INTO docs VALUES (104, 'row of a rolled back savepoint');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT documents, deleted_documents, segments FROM hybrid.index_info('docs_search');
SELECT count(*) FROM docs WHERE body @@@ 'row';
SELECT count(*) FROM docs WHERE body @@@ 'savepoint OR rolled';
SELECT visible_rows, index_entries, missing, gone, not_visible, ok FROM hybrid.verify('docs_search');
-- Bigger transactions write a segment each.
SET hybrid.log_max_rows = 1;
INSERT INTO docs VALUES (105, 'a row'), (106, 'another row');
RESET hybrid.log_max_rows;
DELETE FROM docs WHERE id IN (105, 106);
SELECT documents, segments FROM hybrid.index_info('docs_search');
-- Deleted rows stay in the index until VACUUM removes them (and merges compact the segments).
DELETE FROM docs WHERE body @@@ 'tenth';
SELECT documents FROM hybrid.index_info('docs_search');
SELECT visible_rows, index_entries, not_visible, ok FROM hybrid.verify('docs_search');
VACUUM docs;
SELECT documents, deleted_documents FROM hybrid.index_info('docs_search');
SELECT visible_rows, index_entries, missing, gone, not_visible, ok FROM hybrid.verify('docs_search');
-- Updates: the old text stops matching, the new one matches.
UPDATE docs SET body = 'changed text' WHERE id = 1;
SELECT id FROM docs WHERE body @@@ 'changed' ORDER BY id;
SELECT count(*) FROM docs WHERE body @@@ '"number 1"';
-- force_merge leaves one segment with the live documents only.
SELECT hybrid.force_merge('docs_search');
VACUUM docs;
SELECT hybrid.force_merge('docs_search');
SELECT documents, deleted_documents, segments FROM hybrid.index_info('docs_search');
SELECT visible_rows, missing, gone, ok FROM hybrid.verify('docs_search');
DROP TABLE docs;
