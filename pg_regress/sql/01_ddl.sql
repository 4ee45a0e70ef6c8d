-- CREATE INDEX ... USING hybrid: options, the catalog row, rebuilds and drops.
CREATE EXTENSION IF NOT EXISTS pg_hybrid;
CREATE TABLE articles (id bigint PRIMARY KEY, title varchar(200), body text, code text, lang text, n int);
INSERT INTO articles VALUES
  (1, 'Hybrid search in Postgres', 'Full text and vector search fused in one index', 'PG-001', 'en', 1),
  (2, 'Rust for databases', 'Writing extensions in Rust with pgrx is pleasant', 'RS-002', 'en', 2),
  (3, 'Die Suche', 'Volltextsuche mit Postgres', 'DE-003', 'de', 3);

-- Defaults: Unicode words, lowercased, English stems; the key column is stored, not searched.
CREATE INDEX articles_search ON articles USING hybrid (id, title, body) WITH (key_field = 'id');
SELECT name, table_oid, tenant, state, settings->>'key_field' AS key_field,
       jsonb_path_query_array(settings, '$.text_fields[*].name') AS fields
  FROM hybrid.indexes ORDER BY name;
SELECT jsonb_pretty(settings->'text_fields'->0) FROM hybrid.indexes WHERE name = 'articles_search';

-- Per-field options, and a keyword twin for exact filters.
CREATE INDEX articles_code ON articles USING hybrid (id, code, title)
  WITH (key_field = 'id', fields = '{"code": {"tokenizer": "raw"},
                                     "title": {"tokenizer": "whitespace", "stopwords": "english", "keyword": true}}');
SELECT settings->'text_fields' FROM hybrid.indexes WHERE name = 'articles_code';
CREATE TABLE parts (id int PRIMARY KEY, label text);
INSERT INTO parts VALUES (1, 'Extension cord'), (2, 'Textbook'), (3, 'Screwdriver');
CREATE INDEX parts_ngram ON parts USING hybrid (id, label)
  WITH (key_field = 'id', fields = '{"label": {"tokenizer": "ngram", "min_gram": 3, "max_gram": 3}}');
SELECT id FROM parts WHERE label @@@ 'ext' ORDER BY id;
SELECT id FROM parts WHERE label @@@ 'xtb' ORDER BY id;
DROP TABLE parts;

-- Bad definitions are refused with a clear error and leave nothing behind.
CREATE INDEX bad ON articles USING hybrid (id, title);
CREATE INDEX bad ON articles USING hybrid (id, title) WITH (key_field = 'nope');
CREATE INDEX bad ON articles USING hybrid (id, title) WITH (key_field = 'id', fields = '{"title": {"tokenizer": "klingon"}}');
CREATE INDEX bad ON articles USING hybrid (id, title) WITH (key_field = 'id', fields = '{"title": {"stemmer": "elvish"}}');
CREATE INDEX bad ON articles USING hybrid (id, title) WITH (key_field = 'id', fields = '{"title": {"colour": "red"}}');
CREATE INDEX bad ON articles USING hybrid (id, title) WITH (key_field = 'id', fields = '{"body": {}}');
CREATE INDEX bad ON articles USING hybrid (id, title) WITH (key_field = 'id', fields = 'not json');
CREATE INDEX bad ON articles USING hybrid (id, title) WITH (key_field = 'id', fields = '{"title": {"min_gram": 2}}');
CREATE INDEX bad ON articles USING hybrid (id, title, n) WITH (key_field = 'id');
CREATE INDEX bad ON articles USING hybrid (id) WITH (key_field = 'id');
CREATE INDEX bad ON articles USING hybrid (id, title) WITH (key_field = 'id', colour = 'red');
SELECT count(*) FROM hybrid.indexes WHERE name = 'bad';

-- A NULL key cannot identify a row.
CREATE TABLE nokey (k text, body text);
CREATE INDEX nokey_search ON nokey USING hybrid (k, body) WITH (key_field = 'k');
INSERT INTO nokey VALUES (NULL, 'orphan words');
INSERT INTO nokey VALUES ('a', 'words with a key');
SELECT k FROM nokey WHERE body @@@ 'words';

-- Unlogged tables would be emptied by a crash while the index still named their rows.
CREATE UNLOGGED TABLE scratch (id int, body text);
CREATE INDEX scratch_search ON scratch USING hybrid (id, body) WITH (key_field = 'id');

-- Rebuilds keep the catalog row (same id) and update nothing else.
SELECT id AS first_id FROM hybrid.indexes WHERE name = 'articles_search' \gset
REINDEX INDEX articles_search;
TRUNCATE nokey;
VACUUM FULL articles;
SELECT id = :'first_id' AS same_row FROM hybrid.indexes WHERE name = 'articles_search';
SELECT id, title FROM articles WHERE body @@@ 'postgres' ORDER BY id;

-- Dropping removes the catalog rows.
DROP INDEX articles_code;
DROP TABLE nokey;
SELECT name FROM hybrid.indexes ORDER BY name;
DROP TABLE articles, scratch;
SELECT count(*) FROM hybrid.indexes;
