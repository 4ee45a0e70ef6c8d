-- The query language of col @@@ 'query', answered by plain and bitmap index scans.
CREATE EXTENSION IF NOT EXISTS pg_hybrid;
CREATE TABLE docs (id int PRIMARY KEY, title text, body text, lang text);
INSERT INTO docs VALUES
  (1, 'PostgreSQL', 'PostgreSQL is an object-relational database system written in C', 'en'),
  (2, 'Rust', 'Rust is a systems programming language focused on safety and speed', 'en'),
  (3, 'pgrx', 'pgrx lets you write Postgres extensions in Rust, including an index access method', 'en'),
  (4, 'tantivy', 'tantivy is a full-text search engine library written in Rust', 'en'),
  (5, 'Hybrid search', 'hybrid search fuses BM25 ranking with vector similarity search', 'en'),
  (6, 'GIN', 'GIN is the generalized inverted index of Postgres used for full text search', 'en'),
  (7, 'Bloom', 'the bloom contrib module is a small index access method for Postgres', 'en'),
  (8, 'Laufen', 'Runners run and keep running through databases', 'de'),
  (9, 'Café', 'Un café à Paris', 'fr'),
  (10, 'Empty', NULL, 'en');
CREATE INDEX docs_search ON docs USING hybrid (id, title, body)
  WITH (key_field = 'id', fields = '{"title": {"keyword": true}}');
SET enable_seqscan = off;

-- Both scan kinds answer the operator.
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE body @@@ 'rust';
SET enable_indexscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE body @@@ 'rust';
SELECT id FROM docs WHERE body @@@ 'rust' ORDER BY id;
RESET enable_indexscan;
SET enable_bitmapscan = off;
SELECT id FROM docs WHERE body @@@ 'rust' ORDER BY id;
RESET enable_bitmapscan;

-- Words are analysed like the indexed text: case, stems.
SELECT id FROM docs WHERE body @@@ 'RUST' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'run' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'database' ORDER BY id;
-- Boolean operators, parentheses, default OR, +/- prefixes.
SELECT id FROM docs WHERE body @@@ 'postgres AND (rust OR "index access method")' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'postgres rust' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'postgres AND NOT rust' ORDER BY id;
SELECT id FROM docs WHERE body @@@ '+postgres -gin' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'NOT search' ORDER BY id;
-- Phrases, with slop.
SELECT id FROM docs WHERE body @@@ '"full text"' ORDER BY id;
SELECT id FROM docs WHERE body @@@ '"index method"' ORDER BY id;
SELECT id FROM docs WHERE body @@@ '"index method"~1' ORDER BY id;
-- Fields of the same index, and the keyword twin.
SELECT id FROM docs WHERE body @@@ 'title:rust' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'title:search AND body:vector' ORDER BY id;
SELECT id FROM docs WHERE title @@@ 'title__kw:"Hybrid search"' ORDER BY id;
SELECT id FROM docs WHERE title @@@ 'title__kw:hybrid' ORDER BY id;
-- Prefixes, fuzzy terms, boosts.
SELECT id FROM docs WHERE body @@@ 'postgre*' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'ext*' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'langauge~1' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'langauge~0' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'rust^4 OR bloom' ORDER BY id;
SELECT id FROM docs WHERE body @@@ '*' ORDER BY id;
-- Accents are kept unless ascii_folding is on; NULL text matches nothing.
SELECT id FROM docs WHERE body @@@ 'café' ORDER BY id;
SELECT id FROM docs WHERE body @@@ 'cafe' ORDER BY id;
SELECT id FROM docs WHERE body @@@ NULL;

-- Composes with other predicates, joins and subqueries.
SELECT id FROM docs WHERE body @@@ 'postgres' AND lang = 'en' AND id > 2 ORDER BY id;
SELECT d.id, o.note FROM docs d JOIN (VALUES (3, 'three'), (4, 'four'), (6, 'six')) o(id, note) USING (id)
  WHERE d.body @@@ 'rust' ORDER BY d.id;
SELECT count(*) FROM docs WHERE body @@@ 'search' AND id IN (SELECT id FROM docs WHERE title @@@ 'hybrid OR gin');
-- Two conditions on the same index are both applied.
SELECT id FROM docs WHERE body @@@ 'postgres' AND title @@@ 'pgrx' ORDER BY id;
-- Parameters of prepared statements.
PREPARE find(text) AS SELECT id FROM docs WHERE body @@@ $1 ORDER BY id;
EXECUTE find('rust');
EXECUTE find('"access method"');
DEALLOCATE find;

-- Query builders return escaped query text.
SELECT hybrid.match('body', 'hybrid search'), hybrid.match(NULL, 'a b', 'and');
SELECT hybrid.phrase('title', 'say "hi"', 2), hybrid.prefix(NULL, 'pos'), hybrid.fuzzy('body', 'databse');
SELECT hybrid.boolean(must => ARRAY['rust'], must_not => ARRAY['title:tantivy']), hybrid.boost('rust', 2);
SELECT id FROM docs WHERE body @@@ hybrid.boolean(must => ARRAY['rust'], must_not => ARRAY['title:tantivy']) ORDER BY id;
SELECT id FROM docs WHERE body @@@ hybrid.match(NULL, 'C: (weird) "input"') ORDER BY id;
SELECT hybrid.fuzzy('body', 'x', 3);
SELECT hybrid.match('body', '   ');

-- Without an index on the column, @@@ analyses the value with the default analysis.
SELECT 'Running fast' @@@ 'run', 'hello world' @@@ 'bye', 'hello world' @@@ '"hello world"';
SELECT 'hello' @@@ 'title:hello';
RESET enable_seqscan;
DROP TABLE docs;
