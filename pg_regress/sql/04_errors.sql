-- Bad input is a clear ERROR with a real SQLSTATE, and the session goes on.
CREATE EXTENSION IF NOT EXISTS pg_hybrid;
CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
INSERT INTO docs VALUES (1, 'Rust', 'safe systems programming'), (2, 'SQL', 'relational databases');
CREATE INDEX docs_search ON docs USING hybrid (id, title, body) WITH (key_field = 'id');
-- 42601: malformed queries, with the position in the query.
SELECT id FROM docs WHERE body @@@ 'postgres AND (rust';
SELECT id FROM docs WHERE body @@@ 'rust AND';
SELECT id FROM docs WHERE body @@@ '"unterminated phrase';
SELECT id FROM docs WHERE body @@@ 'word~3';
SELECT id FROM docs WHERE body @@@ 'rust^0';
SELECT id FROM docs WHERE body @@@ '';
SELECT id FROM docs WHERE body @@@ 'naïve AND (café OR';
-- 42703: a field the index does not have.
SELECT id FROM docs WHERE body @@@ 'rust AND colour:red';
SELECT id FROM docs WHERE body @@@ 'title__kw:Rust';
-- The same errors in the ranked scan.
SELECT id, hybrid.score(id) FROM docs WHERE body @@@ 'rust OR (' ORDER BY 2 DESC LIMIT 1;
-- Admin functions check their argument.
SELECT * FROM hybrid.index_info('docs');
SELECT * FROM hybrid.index_info('docs_pkey');
-- The SQLSTATE of each kind of mistake.
CREATE FUNCTION sqlstate_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT stmt, sqlstate_of(stmt) FROM (VALUES
  ($q$SELECT id FROM docs WHERE body @@@ 'a AND (b'$q$),
  ($q$SELECT id FROM docs WHERE body @@@ 'nofield:b'$q$),
  ($q$SELECT hybrid.score(id) FROM docs WHERE body @@@ 'a OR' ORDER BY 1 DESC LIMIT 1$q$),
  ($q$CREATE INDEX x ON docs USING hybrid (id, body)$q$),
  ($q$CREATE INDEX x ON docs USING hybrid (id, body) WITH (key_field = 'id', fields = '{"body": {"tokenizer": 1}}')$q$),
  ($q$CREATE INDEX x ON docs USING hybrid (id, body) WITH (key_field = 'nokey')$q$),
  ($q$CREATE INDEX x ON docs USING hybrid (body, id) WITH (key_field = 'body')$q$),
  ($q$SELECT hybrid.fuzzy('body', 'x', 7)$q$),
  ($q$SELECT * FROM hybrid.verify('docs')$q$),
  ($q$SELECT hybrid.score(id) FROM docs$q$)
) v(stmt);
-- The session still works.
SELECT id FROM docs WHERE body @@@ 'relational' ORDER BY id;
DROP TABLE docs;
