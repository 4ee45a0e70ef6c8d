//! Search functions: the `@@@` operator's function and the query builders.

use pgrx::prelude::*;

#[pg_schema]
mod hybrid {
    use hybrid_engine::config::TextFieldConfig;
    use hybrid_engine::query::eval::matches_text;
    use pgrx::prelude::*;

    use crate::error::OrRaise;

    /// `col @@@ 'query'` evaluated on one value, for a column the planner did not search
    /// through a hybrid index. The value is analysed with the default analysis.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn search_text(doc: &str, query: &str) -> bool {
        matches_text(query, doc, &TextFieldConfig::default_for("")).or_raise_in(query)
    }
}
