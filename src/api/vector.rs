//! Vector distance functions and their operators, with pgvector's meaning:
//! `<->` Euclidean distance, `<=>` cosine distance (1 - cosine similarity), `<#>` negative inner
//! product. On `real[]`; they order `ORDER BY embedding <=> $1 LIMIT k` through a hybrid index.

use pgrx::prelude::*;

#[pg_schema]
mod hybrid {
    use pgrx::prelude::*;
    use pgrx::PgSqlErrorCode;

    use crate::error::raise_with;

    /// The elements of a vector argument, refused as an index refuses them (so that a query
    /// answers the same, or fails the same, whichever plan runs it).
    fn values(a: Array<'_, f32>, which: &str) -> Vec<f32> {
        if a.contains_nulls() {
            raise_with(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                format!("{which} vector contains NULL elements"),
                Some("vectors must be arrays of numbers without NULLs".into()),
            );
        }
        let v: Vec<f32> = a.iter_deny_null().collect();
        // SAFETY: the detoasted array the Array wrapped; only its header is read.
        let ndim = unsafe { (*a.into_array_type()).ndim };
        if ndim > 1 {
            raise_with(
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!("{which} vector is an array of {ndim} dimensions"),
                Some("a vector is a one-dimensional array of numbers, such as '{0.1,0.2,0.3}'".into()),
            );
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            raise_with(
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!("{which} vector has a non-finite value ({}) at position {}", v[i], i + 1),
                Some("NaN and infinity have no distance; replace them with finite numbers".into()),
            );
        }
        v
    }

    fn pair(a: Array<'_, f32>, b: Array<'_, f32>) -> (Vec<f32>, Vec<f32>) {
        let (x, y) = (values(a, "first"), values(b, "second"));
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

    /// Cosine distance, 1 - cosine similarity (`<=>`); an all-zero vector has none (an error,
    /// as in a cosine index).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn cosine_distance(a: Array<'_, f32>, b: Array<'_, f32>) -> f64 {
        let (x, y) = pair(a, b);
        for (v, which) in [(&x, "first"), (&y, "second")] {
            if v.iter().all(|e| *e == 0.0) {
                raise_with(
                    PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                    format!("{which} vector is all zeros, which has no cosine distance"),
                    Some("use a non-zero vector, or the l2 distance <->".into()),
                );
            }
        }
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
