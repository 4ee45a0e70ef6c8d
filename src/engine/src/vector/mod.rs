//! Vector search: HNSW graphs and exact scans over vectors stored per tantivy segment.
//!
//! Vectors live in the same segments as the text: a tantivy segment plugin (`plugin`) writes,
//! next to each segment's text files, one `<segment>.hvec` file holding every vector field of
//! the segment's documents (by tantivy doc id) and, for segments large enough, an HNSW graph
//! built with hnsw_rs and flattened into a layout searched in place, mmap'd (`segment`,
//! `search`). Deletes are tantivy's (the same alive bitsets), merges are tantivy's (the plugin
//! rebuilds the graph of the merged segment), snapshots copy the files like any other.

pub mod distance;
