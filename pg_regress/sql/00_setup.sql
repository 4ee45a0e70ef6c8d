-- Smoke test: the extension installs, a hybrid index builds, and @@@ finds rows through it.
-- Runs first; the extension stays installed for the tests that follow.
CREATE EXTENSION pg_hybrid;
CREATE TABLE smoke (id bigint PRIMARY KEY, title text, body text);
INSERT INTO smoke VALUES
    (1, 'PostgreSQL', 'The world''s most advanced open source relational database'),
    (2, 'tantivy', 'A full-text search engine library written in Rust'),
    (3, 'pgrx', 'Build Postgres extensions with Rust'),
    (4, 'SQLite', 'A small, fast, self-contained SQL database engine');
CREATE INDEX smoke_search ON smoke USING hybrid (id, title, body) WITH (key_field = 'id');
-- Four rows would be read by a sequential scan: make the planner go through the index.
SET enable_seqscan = off;
SELECT id, title FROM smoke WHERE body @@@ 'databases OR (rust AND NOT extensions)' ORDER BY id;
RESET enable_seqscan;
DROP TABLE smoke;
