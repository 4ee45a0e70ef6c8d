//! Vector distance functions and their operators, with pgvector's meaning:
//! `<->` Euclidean distance, `<=>` cosine distance (1 - cosine similarity), `<#>` negative inner
//! product. On `real[]`; they order `ORDER BY embedding <=> $1 LIMIT k` through a hybrid index.

use pgrx::prelude::*;

#[pg_schema]
mod hybrid {
    use pgrx::prelude::*;
    use pgrx::PgSqlErrorCode;

    use crate::error::raise_with;

    fn values(a: &Array<'_, f32>, which: &str) -> Vec<f32> {
        if a.contains_nulls() {
            raise_with(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                format!("{which} vector contains NULL elements"),
                Some("vectors must be arrays of numbers without NULLs".into()),
            );
        }
        a.iter_deny_null().collect()
    }

    fn pair(a: Array<'_, f32>, b: Array<'_, f32>) -> (Vec<f32>, Vec<f32>) {
        let (x, y) = (values(&a, "first"), values(&b, "second"));
        if x.len() != y.len() {
            raise_with(
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!("different vector dimensions {} and {}", x.len(), y.len()),
                None,
            );
        }
        (x, y)
    }

    /// Euclidean distance (`<->`).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn l2_distance(a: Array<'_, f32>, b: Array<'_, f32>) -> f64 {
        let (x, y) = pair(a, b);
        x.iter().zip(&y).map(|(p, q)| f64::from(p - q) * f64::from(p - q)).sum::<f64>().sqrt()
    }

    /// Cosine distance, 1 - cosine similarity (`<=>`); NaN when either vector is all zeros.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn cosine_distance(a: Array<'_, f32>, b: Array<'_, f32>) -> f64 {
        let (x, y) = pair(a, b);
        let (mut dot, mut nx, mut ny) = (0f64, 0f64, 0f64);
        for (p, q) in x.iter().zip(&y) {
            dot += f64::from(*p) * f64::from(*q);
            nx += f64::from(*p) * f64::from(*p);
            ny += f64::from(*q) * f64::from(*q);
        }
        let sim = dot / (nx.sqrt() * ny.sqrt());
        1.0 - sim.clamp(-1.0, 1.0)
    }

    /// Negative inner product (`<#>`): smaller is more similar, so that ascending order works.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn negative_inner_product(a: Array<'_, f32>, b: Array<'_, f32>) -> f64 {
        let (x, y) = pair(a, b);
        -x.iter().zip(&y).map(|(p, q)| f64::from(*p) * f64::from(*q)).sum::<f64>()
    }
}
