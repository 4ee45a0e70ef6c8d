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

-- Text columns (varchar and char columns use it through their cast to text).
CREATE OPERATOR CLASS hybrid_text_ops DEFAULT FOR TYPE text USING hybrid AS
    OPERATOR 1 @@@ (text, text);

-- Key columns: no operator, the index only stores the value.
CREATE OPERATOR CLASS hybrid_int2_ops DEFAULT FOR TYPE int2 USING hybrid AS STORAGE int2;
CREATE OPERATOR CLASS hybrid_int4_ops DEFAULT FOR TYPE int4 USING hybrid AS STORAGE int4;
CREATE OPERATOR CLASS hybrid_int8_ops DEFAULT FOR TYPE int8 USING hybrid AS STORAGE int8;
CREATE OPERATOR CLASS hybrid_uuid_ops DEFAULT FOR TYPE uuid USING hybrid AS STORAGE uuid;
