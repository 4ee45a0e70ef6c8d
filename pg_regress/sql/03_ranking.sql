-- BM25 ranking: hybrid.score, ORDER BY score LIMIT k as an index top-k, snippets, EXPLAIN.
CREATE EXTENSION IF NOT EXISTS pg_hybrid;
CREATE TABLE docs (id int PRIMARY KEY, title text, body text, lang text);
INSERT INTO docs VALUES
  (1, 'PostgreSQL', 'PostgreSQL is an object-relational database system; it also does hybrid search', 'en'),
  (2, 'Rust', 'Rust is a systems programming language focused on safety and speed', 'en'),
  (3, 'pgrx', 'pgrx lets you write Postgres extensions in Rust, including an index access method', 'en'),
  (4, 'tantivy', 'tantivy ist eine Suchmaschine in Rust fuer hybrid search', 'de'),
  (5, 'Hybrid', 'hybrid search fuses BM25 ranking with vector search: hybrid search everywhere', 'en'),
  (6, 'Search', 'search search search', 'en');
CREATE INDEX docs_search ON docs USING hybrid (id, title, body) WITH (key_field = 'id');

-- The query of the issue: top-k by BM25 with another predicate.
EXPLAIN (COSTS OFF)
SELECT id, title, hybrid.score(id) AS score, hybrid.snippet(body) AS snippet
  FROM docs WHERE body @@@ 'hybrid search' AND lang = 'en'
 ORDER BY hybrid.score(id) DESC LIMIT 10;
SELECT id, title, round(hybrid.score(id)::numeric, 4) AS score, hybrid.snippet(body) AS snippet
  FROM docs WHERE body @@@ 'hybrid search' AND lang = 'en'
 ORDER BY hybrid.score(id) DESC LIMIT 10;

-- LIMIT smaller than the matches: exactly k rows, best first; the filter never shortens them.
SELECT id FROM docs WHERE body @@@ 'search' AND lang = 'en' ORDER BY hybrid.score(id) DESC LIMIT 2;
SELECT id FROM docs WHERE body @@@ 'search OR rust' AND id % 2 = 1 ORDER BY hybrid.score(id) DESC LIMIT 3;
-- OFFSET pages through the same order.
SELECT id FROM docs WHERE body @@@ 'search OR rust' ORDER BY hybrid.score(id) DESC LIMIT 2 OFFSET 2;
-- Rows invisible to the snapshot are skipped and the top-k keeps fetching.
DELETE FROM docs WHERE id = 5;
SELECT id FROM docs WHERE body @@@ 'hybrid' ORDER BY hybrid.score(id) DESC LIMIT 2;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM docs WHERE body @@@ 'hybrid' ORDER BY hybrid.score(id) DESC LIMIT 2;
INSERT INTO docs VALUES (5, 'Hybrid', 'hybrid search fuses BM25 ranking with vector search: hybrid search everywhere', 'en');

-- Scores without ORDER BY, in a join, and with a different sort.
SELECT id, round(hybrid.score(id)::numeric, 4) FROM docs WHERE body @@@ 'rust' ORDER BY id;
SELECT d.id, round(hybrid.score(d.id)::numeric, 4) AS score, v.tag
  FROM docs d JOIN (VALUES (2, 'b'), (3, 'c')) v(id, tag) ON v.id = d.id
 WHERE d.body @@@ 'rust' ORDER BY score DESC;
SELECT lang, count(*), round(max(hybrid.score(id))::numeric, 4) FROM docs WHERE body @@@ 'search' GROUP BY lang ORDER BY lang;
-- Snippet options: tags and length; without a match, the start of the text.
SELECT id, hybrid.snippet(body, '[', ']', 30) FROM docs WHERE body @@@ 'rust' ORDER BY id;
SELECT id, hybrid.snippet(title) FROM docs WHERE body @@@ 'speed' ORDER BY id;
-- Read your own writes, ranked.
BEGIN;
INSERT INTO docs VALUES (7, 'New', 'rust rust rust rust', 'en');
SELECT id FROM docs WHERE body @@@ 'rust' ORDER BY hybrid.score(id) DESC LIMIT 1;
ROLLBACK;
SELECT id FROM docs WHERE body @@@ 'rust' ORDER BY hybrid.score(id) DESC LIMIT 1;
-- Prepared statements with the query as a parameter.
PREPARE top(text, int) AS SELECT id FROM docs WHERE body @@@ $1 ORDER BY hybrid.score(id) DESC LIMIT $2;
EXECUTE top('rust', 1);
EXECUTE top('hybrid search', 2);
EXPLAIN (COSTS OFF) EXECUTE top('x', 1);
DEALLOCATE top;

-- score() and snippet() need a search in the same query.
SELECT hybrid.score(id) FROM docs;
SELECT hybrid.snippet(body) FROM docs;

-- Scores do not depend on how the index is segmented: one build vs a segment per transaction
-- vs rows in the pending log (searched from memory) and a segment.
CREATE TABLE built (LIKE docs);
INSERT INTO built SELECT * FROM docs;
CREATE INDEX built_search ON built USING hybrid (id, title, body) WITH (key_field = 'id');
CREATE TABLE inserted (LIKE docs);
CREATE INDEX inserted_search ON inserted USING hybrid (id, title, body) WITH (key_field = 'id');
SET hybrid.log_max_rows = 0;
INSERT INTO inserted SELECT * FROM docs WHERE id <= 2;
INSERT INTO inserted SELECT * FROM docs WHERE id > 2 AND id <= 4;
INSERT INTO inserted SELECT * FROM docs WHERE id > 4;
SELECT segments > 1 AS several_segments FROM hybrid.index_info('inserted_search');
CREATE TABLE logged (LIKE docs);
CREATE INDEX logged_search ON logged USING hybrid (id, title, body) WITH (key_field = 'id');
INSERT INTO logged SELECT * FROM docs WHERE id <= 3;
RESET hybrid.log_max_rows;
INSERT INTO logged SELECT * FROM docs WHERE id > 3;
SELECT documents, segments FROM hybrid.index_info('logged_search');
SELECT a.id, round(a.s::numeric, 4) AS built, round(b.s::numeric, 4) AS inserted, round(c.s::numeric, 4) AS logged
  FROM (SELECT id, hybrid.score(id) AS s FROM built WHERE body @@@ 'hybrid OR rust OR search') a
  FULL JOIN (SELECT id, hybrid.score(id) AS s FROM inserted WHERE body @@@ 'hybrid OR rust OR search') b USING (id)
  FULL JOIN (SELECT id, hybrid.score(id) AS s FROM logged WHERE body @@@ 'hybrid OR rust OR search') c USING (id)
 ORDER BY id;
-- NULL text never matches, not even a query of exclusions.
INSERT INTO docs VALUES (8, 'No body', NULL, 'en');
SELECT id FROM docs WHERE body @@@ 'NOT rust' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'title:body' ORDER BY id;
SELECT id FROM docs WHERE title @@@ 'body' ORDER BY id;
DROP TABLE docs, built, inserted, logged;
