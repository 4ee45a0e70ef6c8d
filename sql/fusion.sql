-- Hybrid search: a BM25 list and a nearest-neighbour list of one hybrid index, fused by
-- reciprocal rank fusion (score = sum of weight / (rank_constant + rank) over the lists a row is
-- in; rank_constant 60 by default, as in the RRF paper and Elasticsearch).
--
-- It is written in SQL on purpose: both lists come from ordinary queries on the table, run as the
-- caller, so table privileges and row-level security apply exactly as for any query (a function
-- that fetched rows itself would have to re-implement them), and every row returned is visible to
-- the caller's snapshot. Each list is an index top-k (the search scan for BM25, the kNN index scan
-- for vectors), so the cost follows window_size, not the table.
CREATE FUNCTION hybrid.search(
    index          regclass,
    query          text             DEFAULT NULL,
    vector         real[]           DEFAULT NULL,
    k              integer          DEFAULT 10,
    window_size    integer          DEFAULT 100,
    rank_constant  integer          DEFAULT 60,
    text_weight    double precision DEFAULT 1.0,
    vector_weight  double precision DEFAULT 1.0,
    text_field     text             DEFAULT NULL,
    vector_field   text             DEFAULT NULL
) RETURNS TABLE (key text, score double precision, text_rank integer, vector_rank integer)
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    tbl      regclass;
    settings jsonb;
    keycol   text;
    tcol     text;
    vcol     text;
    op       text;
    parts    text[] := '{}';
    lists    text;
BEGIN
    -- Raises 42809 for anything but a hybrid index, 42501 without SELECT on its table. (Not
    -- hybrid.indexes: that view shows only the caller's tenant, and searching is governed by
    -- table privileges, as for @@@.)
    settings := hybrid.index_settings(index);
    SELECT i.indrelid INTO tbl FROM pg_catalog.pg_index i WHERE i.indexrelid = index;
    IF query IS NULL AND vector IS NULL THEN
        RAISE EXCEPTION 'hybrid.search() needs a query, a vector, or both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF k IS NULL OR k < 1 OR window_size IS NULL OR window_size < 1 OR rank_constant IS NULL OR rank_constant < 0 THEN
        RAISE EXCEPTION 'k and window_size must be positive and rank_constant not negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF text_weight IS NULL OR vector_weight IS NULL OR text_weight < 0 OR vector_weight < 0 THEN
        RAISE EXCEPTION 'weights must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    window_size := greatest(window_size, k);
    keycol := settings->>'key_field';

    IF query IS NOT NULL THEN
        tcol := coalesce(text_field, settings->'text_fields'->0->>'name');
        IF tcol IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(settings->'text_fields') f WHERE f->>'name' = tcol) THEN
            RAISE EXCEPTION 'index "%" has no text field "%"', index, coalesce(tcol, '')
                USING ERRCODE = 'undefined_column';
        END IF;
        parts := parts || format(
            $q$SELECT key, row_number() OVER (ORDER BY s DESC, key) AS r, 't' AS list
                 FROM (SELECT %1$I AS key, hybrid.score(%1$I) AS s FROM %2$s
                        WHERE %3$I OPERATOR(@extschema@.@@@) $1 ORDER BY hybrid.score(%1$I) DESC LIMIT $3) l$q$,
            keycol, tbl, tcol);
    END IF;
    IF vector IS NOT NULL THEN
        SELECT f->>'name', CASE f->>'metric' WHEN 'l2' THEN '<->' WHEN 'cosine' THEN '<=>' ELSE '<#>' END
          INTO vcol, op
          FROM jsonb_array_elements(coalesce(settings->'vector_fields', '[]')) f
         WHERE vector_field IS NULL OR f->>'name' = vector_field
         LIMIT 1;
        IF vcol IS NULL THEN
            RAISE EXCEPTION 'index "%" has no vector field%', index, coalesce(' "' || vector_field || '"', '')
                USING ERRCODE = 'undefined_column';
        END IF;
        parts := parts || format(
            $q$SELECT key, row_number() OVER (ORDER BY d, key) AS r, 'v' AS list
                 FROM (SELECT %1$I AS key, %3$I OPERATOR(@extschema@.%4$s) $2 AS d FROM %2$s
                        WHERE %3$I IS NOT NULL ORDER BY %3$I OPERATOR(@extschema@.%4$s) $2 LIMIT $3) l$q$,
            keycol, tbl, vcol, op);
    END IF;
    lists := array_to_string(parts, ' UNION ALL ');
    RETURN QUERY EXECUTE format(
        $q$SELECT key::text,
                  sum(CASE list WHEN 't' THEN $5 ELSE $6 END / ($4 + r))::double precision,
                  min(r) FILTER (WHERE list = 't')::integer,
                  min(r) FILTER (WHERE list = 'v')::integer
             FROM (%s) lists
            GROUP BY key
            ORDER BY 2 DESC, 1
            LIMIT $7$q$, lists)
    USING query, vector, window_size, rank_constant, text_weight, vector_weight, k;
END
$fn$;
COMMENT ON FUNCTION hybrid.search IS 'BM25 and nearest-neighbour results of a hybrid index fused by reciprocal rank fusion';
