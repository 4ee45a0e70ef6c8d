//! Search functions: the `@@@` operator's function and the query builders.

use pgrx::prelude::*;

#[pg_schema]
mod hybrid {
    use hybrid_engine::config::TextFieldConfig;
    use hybrid_engine::query::eval::matches_text;
    use pgrx::prelude::*;

    use pgrx::{AnyElement, PgSqlErrorCode};

    use hybrid_engine::query::ast::{FieldRef, Occur, Query, Span};
    use hybrid_engine::query::DefaultOperator;

    use crate::error::{raise_with, OrRaise};
    use crate::layout;
    use crate::scan::registry;

    /// The relation (range-table index) and column a score()/snippet() argument comes from.
    unsafe fn arg_column(fcinfo: pg_sys::FunctionCallInfo) -> registry::ArgColumn {
        let flinfo = (*fcinfo).flinfo;
        if flinfo.is_null() || (*flinfo).fn_expr.is_null() {
            return None;
        }
        let expr = (*flinfo).fn_expr;
        if (*expr).type_ != pg_sys::NodeTag::T_FuncExpr {
            return None;
        }
        let args = pgrx::PgList::<pg_sys::Node>::from_pg((*(expr as *mut pg_sys::FuncExpr)).args);
        let mut arg = args.get_ptr(0)?;
        while (*arg).type_ == pg_sys::NodeTag::T_RelabelType {
            arg = (*(arg as *mut pg_sys::RelabelType)).arg as *mut pg_sys::Node;
        }
        if (*arg).type_ != pg_sys::NodeTag::T_Var {
            return None;
        }
        let var = arg as *mut pg_sys::Var;
        // Above a join or a sort the Var points at the child's output (OUTER_VAR...), but its
        // "syntactic" identity still names the scanned relation and column.
        ((*var).varnosyn > 0).then(|| ((*var).varnosyn, (*var).varattnosyn))
    }

    fn no_search() -> ! {
        raise_with(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "hybrid.score() and hybrid.snippet() need a @@@ search on the same table in the query",
            Some("add a condition such as WHERE body @@@ 'words' on a column of a hybrid index, on the table whose key you pass".into()),
        )
    }

    /// The BM25 score of the row with this key in the `@@@` search of the same query.
    /// `ORDER BY hybrid.score(key) DESC LIMIT k` runs as a top-k search inside the index.
    #[pg_extern(stable, strict, parallel_unsafe)]
    fn score(key: AnyElement, fcinfo: pg_sys::FunctionCallInfo) -> f32 {
        // SAFETY: fcinfo is this call's; the key datum is of the type the AnyElement says.
        unsafe {
            let column = arg_column(fcinfo);
            let key = layout::key_value(key.datum(), key.oid());
            match registry::score_of(column, &key) {
                Some(s) => s,
                None if registry::any_active() => raise_with(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "hybrid.score() was given a key the search did not return",
                    Some("pass the key column of the searched table, e.g. hybrid.score(id)".into()),
                ),
                None => no_search(),
            }
        }
    }

    /// An excerpt of `doc` with the words the query matched wrapped in `start_tag`/`end_tag`,
    /// at most about `max_chars` characters (the start of the text if nothing matched).
    #[pg_extern(stable, strict, parallel_unsafe)]
    fn snippet(
        doc: &str,
        start_tag: default!(&str, "'<b>'"),
        end_tag: default!(&str, "'</b>'"),
        max_chars: default!(i32, 150),
        fcinfo: pg_sys::FunctionCallInfo,
    ) -> String {
        // SAFETY: fcinfo is this call's.
        let column = unsafe { arg_column(fcinfo) };
        match registry::snippet_of(column, doc, start_tag, end_tag, max_chars) {
            Some(r) => r.or_raise(),
            None => no_search(),
        }
    }

    /// `col @@@ 'query'` evaluated on one value, for a column the planner did not search
    /// through a hybrid index. The value is analysed with the default analysis.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn search_text(doc: &str, query: &str) -> bool {
        matches_text(query, doc, &TextFieldConfig::default_for("")).or_raise_in(query)
    }

    // Query builders: they return query text, correctly escaped, for `col @@@ ...`. Handy when
    // the words come from users (no syntax to escape by hand) and for building queries in code.

    fn field_ref(field: Option<&str>) -> Option<FieldRef> {
        field.map(|name| FieldRef { name: name.to_string(), span: Span::default() })
    }

    /// Any (or, with `conjunction => 'and'`, all) of the words of `words`, in `field` (or the
    /// column searched, if NULL).
    #[pg_extern(immutable, parallel_safe, name = "match")]
    fn match_words(field: Option<&str>, words: &str, conjunction: default!(&str, "'or'")) -> String {
        let occur = match conjunction.to_ascii_lowercase().as_str() {
            "or" => Occur::Should,
            "and" => Occur::Must,
            other => raise_with(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("conjunction must be 'or' or 'and', not '{other}'"),
                None,
            ),
        };
        let clauses: Vec<(Occur, Query)> = words
            .split_whitespace()
            .map(|w| (occur, Query::Term { field: field_ref(field), text: w.to_string(), span: Span::default() }))
            .collect();
        match clauses.len() {
            0 => raise_with(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "hybrid.match() needs at least one word",
                None,
            ),
            1 => clauses[0].1.to_string(),
            _ => Query::Boolean { clauses }.to_string(),
        }
    }

    /// The words of `words` next to each other in this order (up to `slop` moves apart).
    #[pg_extern(immutable, parallel_safe)]
    fn phrase(field: Option<&str>, words: &str, slop: default!(i32, 0)) -> String {
        if slop < 0 {
            raise_with(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "slop must not be negative", None);
        }
        Query::Phrase {
            field: field_ref(field),
            text: words.to_string(),
            slop: slop as u32,
            prefix: false,
            span: Span::default(),
        }
        .to_string()
    }

    /// Words starting with `prefix`.
    #[pg_extern(immutable, parallel_safe)]
    fn prefix(field: Option<&str>, prefix: &str) -> String {
        Query::Prefix { field: field_ref(field), text: prefix.to_string(), span: Span::default() }.to_string()
    }

    /// Words within `distance` edits (0 to 2; a swap of two letters is one edit) of `word`.
    #[pg_extern(immutable, parallel_safe)]
    fn fuzzy(field: Option<&str>, word: &str, distance: default!(i32, 1)) -> String {
        if !(0..=2).contains(&distance) {
            raise_with(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("fuzzy distance must be 0, 1 or 2, not {distance}"),
                Some("larger distances match too many words to be useful".into()),
            );
        }
        Query::Fuzzy {
            field: field_ref(field),
            text: word.to_string(),
            distance: distance as u8,
            span: Span::default(),
        }
        .to_string()
    }

    /// Combines queries: all of `must`, none of `must_not`, and (if there is no `must`) at least
    /// one of `should`; `should` matches raise the score.
    #[pg_extern(immutable, parallel_safe)]
    fn boolean(
        must: default!(Vec<String>, "'{}'"),
        should: default!(Vec<String>, "'{}'"),
        must_not: default!(Vec<String>, "'{}'"),
    ) -> String {
        let mut parts = Vec::new();
        for (prefix, list) in [("+", &must), ("", &should), ("-", &must_not)] {
            for q in list {
                hybrid_engine::query::parse(q, DefaultOperator::Or).or_raise_in(q);
                parts.push(format!("{prefix}({q})"));
            }
        }
        if parts.is_empty() || (must.is_empty() && should.is_empty()) {
            if parts.is_empty() {
                raise_with(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    "hybrid.boolean() needs at least one query",
                    None,
                );
            }
            parts.insert(0, "*".into());
        }
        parts.join(" ")
    }

    /// `query` with its score multiplied by `factor`.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn boost(query: &str, factor: f32) -> String {
        if !(factor.is_finite() && factor > 0.0) {
            raise_with(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("boost must be a positive number, not {factor}"),
                None,
            );
        }
        hybrid_engine::query::parse(query, DefaultOperator::Or).or_raise_in(query);
        format!("({query})^{factor}")
    }
}
