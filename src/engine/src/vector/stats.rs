//! What the vector part of an index holds, for `hybrid.index_info` and `hybrid.vector_info`.

use crate::error::Result;
use crate::text::reader::Snapshot;

/// Counts of one vector field over all segments of a snapshot.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldStats {
    /// Live rows with a vector.
    pub vectors: u64,
    /// Vectors of deleted rows still stored (removed by merges).
    pub deleted: u64,
    /// Segments searched through an HNSW graph.
    pub graph_segments: u32,
    /// Segments too small for a graph, searched exactly (recent, unmerged writes).
    pub exact_segments: u32,
}

/// Per-field counts of a snapshot's vector fields, in config order, and the bytes of its
/// vector files.
pub fn field_stats(snap: &Snapshot) -> Result<(Vec<FieldStats>, u64)> {
    let n = snap.config().vector_fields.len();
    let mut out = vec![FieldStats::default(); n];
    let mut bytes = 0u64;
    for (ord, reader) in snap.searcher().segment_readers().iter().enumerate() {
        let Some(seg) = snap.vector_segment(ord)? else { continue };
        bytes += seg.byte_len() as u64;
        for (i, stats) in out.iter_mut().enumerate() {
            let Some(view) = seg.field(i) else { continue };
            let mut present = 0u64;
            let mut dead = 0u64;
            for doc in view.present_docs() {
                if reader.is_deleted(doc) {
                    dead += 1;
                } else {
                    present += 1;
                }
            }
            stats.vectors += present;
            stats.deleted += dead;
            if view.has_graph() {
                stats.graph_segments += 1;
            } else if present + dead > 0 {
                stats.exact_segments += 1;
            }
        }
    }
    Ok((out, bytes))
}
