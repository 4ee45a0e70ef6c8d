-- The access method, its operator and its operator classes.

CREATE ACCESS METHOD hybrid TYPE INDEX HANDLER hybrid_handler;
COMMENT ON ACCESS METHOD hybrid IS 'BM25 full-text search index (tantivy), with vector search';

-- col @@@ 'query': true when the column's text matches the search query. Answered by a hybrid
-- index on the column (with that index's analysis); on a column without one, the value is
-- analysed with the default analysis (Unicode words, lowercased, English stems).
CREATE OPERATOR @@@ (
    LEFTARG = text,
    RIGHTARG = text,
    FUNCTION = hybrid.search_text,
    RESTRICT = contsel,
    JOIN = contjoinsel
);
COMMENT ON OPERATOR @@@ (text, text) IS 'matches a pg_hybrid search query';

-- Text columns (varchar columns use it through their cast to text). Equality lets the index
-- evaluate `col = 'value'` too, e.g. as the filter of a nearest-neighbour search: exactly on a
-- keyword twin or a raw field, as a superset rechecked by Postgres otherwise.
CREATE OPERATOR CLASS hybrid_text_ops DEFAULT FOR TYPE text USING hybrid AS
    OPERATOR 1 @@@ (text, text),
    OPERATOR 2 = (text, text);

-- Key columns: no operator, the index only stores the value.
CREATE OPERATOR CLASS hybrid_int2_ops DEFAULT FOR TYPE int2 USING hybrid AS STORAGE int2;
CREATE OPERATOR CLASS hybrid_int4_ops DEFAULT FOR TYPE int4 USING hybrid AS STORAGE int4;
CREATE OPERATOR CLASS hybrid_int8_ops DEFAULT FOR TYPE int8 USING hybrid AS STORAGE int8;
CREATE OPERATOR CLASS hybrid_uuid_ops DEFAULT FOR TYPE uuid USING hybrid AS STORAGE uuid;

-- Vector distances on real[], with pgvector's meaning. They order
-- ORDER BY embedding <=> $1 LIMIT k through a hybrid index whose field has that metric.
CREATE OPERATOR <-> (LEFTARG = real[], RIGHTARG = real[], FUNCTION = hybrid.l2_distance, COMMUTATOR = '<->');
CREATE OPERATOR <=> (LEFTARG = real[], RIGHTARG = real[], FUNCTION = hybrid.cosine_distance, COMMUTATOR = '<=>');
CREATE OPERATOR <#> (LEFTARG = real[], RIGHTARG = real[], FUNCTION = hybrid.negative_inner_product, COMMUTATOR = '<#>');
COMMENT ON OPERATOR <-> (real[], real[]) IS 'Euclidean distance';
COMMENT ON OPERATOR <=> (real[], real[]) IS 'cosine distance (1 - cosine similarity)';
COMMENT ON OPERATOR <#> (real[], real[]) IS 'negative inner product';

-- Vector columns. Which operator a field answers is its "metric" option.
CREATE OPERATOR CLASS hybrid_vector_ops DEFAULT FOR TYPE real[] USING hybrid AS
    OPERATOR 1 <-> (real[], real[]) FOR ORDER BY float_ops,
    OPERATOR 2 <=> (real[], real[]) FOR ORDER BY float_ops,
    OPERATOR 3 <#> (real[], real[]) FOR ORDER BY float_ops;
