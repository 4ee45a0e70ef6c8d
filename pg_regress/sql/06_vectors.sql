-- Vector fields: options, operators, nearest-neighbour scans, filters, fusion, errors.
CREATE EXTENSION IF NOT EXISTS pg_hybrid;
CREATE TABLE items (id int PRIMARY KEY, body text, lang text, embedding real[]);
-- 2,000 points on a spiral: neighbours of a point are its neighbours on the spiral.
INSERT INTO items
SELECT i,
       'item ' || i || CASE WHEN i % 10 = 0 THEN ' round' ELSE '' END,
       CASE WHEN i % 100 = 0 THEN 'de' WHEN i % 10 = 0 THEN 'fr' ELSE 'en' END,
       ARRAY[cos(i / 50.0) * (1 + i / 2000.0), sin(i / 50.0) * (1 + i / 2000.0), i / 2000.0]::real[]
  FROM generate_series(1, 2000) i;
INSERT INTO items VALUES (2001, 'no vector', 'en', NULL);
CREATE INDEX items_search ON items USING hybrid (id, body, lang, embedding)
  WITH (key_field = 'id', fields = '{"lang": {"tokenizer": "raw"}, "embedding": {"dimensions": 3, "metric": "l2"}}');
SELECT field, dimensions, metric, m, ef_construction, vectors, graph_segments FROM hybrid.vector_info('items_search');
SELECT vectors, deleted_vectors, vector_graph_segments FROM hybrid.index_info('items_search');

-- The operators, as plain functions of two arrays.
SELECT '{1,2,3}'::real[] <-> '{4,6,3}'::real[] AS l2,
       round(('{1,0}'::real[] <=> '{0,1}'::real[])::numeric, 6) AS cosine,
       '{1,2,3}'::real[] <#> '{4,5,6}'::real[] AS negative_ip;
SELECT '{1,2}'::real[] <-> '{1,2,3}'::real[];

-- Nearest neighbours through the index, by increasing distance.
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 5;
SELECT id, round((embedding <-> '{0.5,0.8,0.5}')::numeric, 4) AS d FROM items ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 5;
-- The same answer without the index.
SET enable_indexscan = off;
SELECT id, round((embedding <-> '{0.5,0.8,0.5}')::numeric, 4) AS d FROM items ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 5;
RESET enable_indexscan;
-- A field indexed for l2 does not answer cosine ordering: Postgres sorts instead.
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding <=> '{0.5,0.8,0.5}' LIMIT 5;

-- Filters evaluated inside the index: an equality on a raw field, a text search.
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE lang = 'de' ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 3;
SELECT id FROM items WHERE lang = 'de' ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 3;
SELECT id FROM items WHERE body @@@ 'round' ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 3;
-- A filter the index cannot evaluate: the scan keeps going until enough rows pass.
SELECT id FROM items WHERE id % 97 = 0 ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 3;
-- Rows invisible to the snapshot are skipped, never shortening the answer.
BEGIN;
DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 3);
SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 5) s;
ROLLBACK;
-- New rows are found at once (read your own writes), and by others after commit.
BEGIN;
INSERT INTO items VALUES (3000, 'new', 'en', '{0.5,0.8,0.5}');
SELECT id, embedding <-> '{0.5,0.8,0.5}' AS d FROM items ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 1;
ROLLBACK;
SELECT id FROM items ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 1;

-- Fusion of the BM25 list and the nearest-neighbour list.
SELECT key, round(score::numeric, 5) AS score, text_rank, vector_rank
  FROM hybrid.search('items_search', query => '10 OR 20 OR 30', vector => '{0.5,0.8,0.5}', k => 5, window_size => 20);
SELECT key FROM hybrid.search('items_search', vector => '{0.5,0.8,0.5}', k => 3);
SELECT count(*) FROM hybrid.search('items_search', query => 'round', k => 500);
SELECT * FROM hybrid.search('items_search');
SELECT * FROM hybrid.search('items_search', query => 'x', k => 0);
SELECT * FROM hybrid.search('items', query => 'x');

-- Bad vectors: the row is refused, the session goes on.
INSERT INTO items VALUES (4000, 'x', 'en', '{1,2}');
INSERT INTO items VALUES (4000, 'x', 'en', '{1,NaN,2}');
INSERT INTO items VALUES (4000, 'x', 'en', '{1,Infinity,2}');
INSERT INTO items VALUES (4000, 'x', 'en', '{1,NULL,2}');
INSERT INTO items VALUES (4000, 'x', 'en', '{}');
SELECT id FROM items ORDER BY embedding <-> '{1,2}' LIMIT 1;
-- Rows without a vector come last, as a sort puts NULL distances; a NULL query vector makes
-- every distance NULL: all rows, in no particular order.
SELECT id, round((embedding <-> '{0.5,0.8,0.5}')::numeric, 4) AS d FROM items WHERE lang = 'en' AND body @@@ 'vector OR 1999 OR 1998' ORDER BY embedding <-> '{0.5,0.8,0.5}' LIMIT 5;
SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding <-> NULL LIMIT 10) s;
SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding <-> NULL) s;
CREATE TABLE cos (id int PRIMARY KEY, v real[]);
CREATE INDEX cos_search ON cos USING hybrid (id, v) WITH (key_field = 'id', fields = '{"v": {"dimensions": 2}}');
INSERT INTO cos VALUES (1, '{0,0}');
INSERT INTO cos VALUES (1, '{3,4}'), (2, '{4,3}');
SELECT id FROM cos ORDER BY v <=> '{0,0}' LIMIT 1;
SELECT id, round((v <=> '{1,1}')::numeric, 4) FROM cos ORDER BY v <=> '{1,1}' LIMIT 2;
-- The operators refuse what an index refuses, so a query fails the same whatever the plan.
SELECT '{1,2}'::real[] <-> '{{1,2},{3,4}}'::real[];
SELECT '{1,NaN}'::real[] <-> '{1,2}'::real[];
SELECT '{0,0}'::real[] <=> '{1,2}'::real[];
INSERT INTO cos VALUES (1000, '{{1,2},{3,4}}');
-- Bad options.
CREATE INDEX bad ON cos USING hybrid (id, v) WITH (key_field = 'id');
CREATE INDEX bad ON cos USING hybrid (id, v) WITH (key_field = 'id', fields = '{"v": {"dimensions": 2, "m": 300}}');
CREATE INDEX bad ON cos USING hybrid (id, v) WITH (key_field = 'id', fields = '{"v": {"dimensions": 2, "m": 16, "ef_construction": 8}}');
CREATE INDEX bad ON cos USING hybrid (id, v) WITH (key_field = 'id', fields = '{"v": {"dimensions": 2, "metric": "hamming"}}');
CREATE INDEX bad ON cos USING hybrid (id, v) WITH (key_field = 'v', fields = '{"v": {"dimensions": 2}}');
DROP TABLE items, cos;
-- Other array types (pgvector's vector too) through an expression index on a cast to real[].
CREATE TABLE dv (id int PRIMARY KEY, emb float8[]);
INSERT INTO dv SELECT i, ARRAY[cos(i / 10.0), sin(i / 10.0)] FROM generate_series(1, 300) i;
CREATE INDEX dv_search ON dv USING hybrid (id, (emb::real[]))
  WITH (key_field = 'id', fields = '{"emb": {"dimensions": 2, "metric": "l2"}}');
EXPLAIN (COSTS OFF) SELECT id FROM dv ORDER BY emb::real[] <-> '{1,0}' LIMIT 3;
SELECT id FROM dv ORDER BY emb::real[] <-> '{1,0}' LIMIT 3;
DROP TABLE dv;
