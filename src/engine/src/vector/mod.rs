//! Vector search: HNSW graphs and exact scans over vectors stored per tantivy segment.
//!
//! Vectors live in the same segments as the text: a tantivy segment plugin (`plugin`) writes,
//! next to each segment's text files, one `<segment>.hvec` file holding every vector field of
//! the segment's documents (by tantivy doc id) and, for segments large enough, an HNSW graph
//! built with hnsw_rs (`graph`) and flattened into a layout searched in place, mmap'd
//! (`segment`, `search`). Deletes are tantivy's (the same alive bitsets), merges are tantivy's
//! (the plugin rebuilds the graph of the merged segment), snapshots copy the files like any
//! other. `knn` searches all segments of a snapshot.

#![warn(missing_docs)]

pub mod distance;
pub mod graph;
mod hnsw;
pub mod knn;
pub mod plugin;
pub mod search;
pub mod segment;
pub mod stats;

use std::borrow::Cow;

use crate::error::{Error, Result};
use distance::Metric;

pub use knn::{KnnResult, KnnStrategy};
pub use plugin::VectorPlugin;
pub use segment::{VectorSegment, GRAPH_MIN_VECTORS};

/// The form in which a vector is stored: unit-normalised under cosine, as is otherwise.
pub fn stored_form(metric: Metric, v: &[f32]) -> Result<Cow<'_, [f32]>> {
    if metric == Metric::Cosine {
        search::normalized(v)
            .map(Cow::Owned)
            .ok_or_else(|| Error::InvalidValue { message: "a zero vector has no cosine distance".into(), hint: None })
    } else {
        Ok(Cow::Borrowed(v))
    }
}
