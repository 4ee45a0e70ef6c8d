//! Catching an index folder up with its table: after a restore from a snapshot (which misses
//! what changed since), or when a folder cannot be trusted to match the heap (a data directory
//! restored to an earlier point in time, a base backup taken without the sidecar).
//!
//! Every entry records its tuple id and a hash of the row's indexed values
//! ([`Document::content_hash`](super::Document::content_hash)). The caller scans the table, and
//! for each row asks [`Entries::confirm`] whether the index already holds exactly that row at
//! that tuple id. Rows it does not confirm are indexed again; entries nobody confirmed (their
//! tuple is gone, or now holds other values) are deleted. Whatever the folder held before, the
//! result indexes exactly the rows scanned, each once.

use std::path::Path;

use tantivy::SegmentReader;

use crate::error::Result;
use crate::manifest::Manifest;
use crate::schema::{CTID_FIELD, HASH_FIELD};
use crate::text::maintenance::{open_at, tantivy_segment};

/// The live entries of an index, by tuple id, and which of them the table confirmed.
#[derive(Debug, Default)]
pub struct Entries {
    /// (tuple id, content hash), sorted.
    items: Vec<(u64, u64)>,
    confirmed: Vec<bool>,
}

impl Entries {
    /// Reads the tuple id and content hash of every live entry of the index in `dir`. About 16
    /// bytes per entry. `progress` is called every few thousand entries (the caller checks for
    /// cancellation there).
    pub fn read(dir: &Path, progress: &mut dyn FnMut(u64)) -> Result<Entries> {
        let m = Manifest::read(dir)?;
        let index = open_at(dir, &m)?;
        let mut items = Vec::with_capacity(m.num_docs() as usize);
        for e in &m.segments {
            let reader = SegmentReader::open(&tantivy_segment(&index, e))?;
            let ctids = reader.fast_fields().u64(CTID_FIELD)?;
            let hashes = reader.fast_fields().u64(HASH_FIELD)?;
            for doc in 0..reader.max_doc() {
                if reader.is_deleted(doc) {
                    continue;
                }
                if let Some(ctid) = ctids.first(doc) {
                    // An entry without a hash (none are written so) never matches a row.
                    items.push((ctid, hashes.first(doc).unwrap_or(0)));
                }
                if items.len() % 4096 == 0 {
                    progress(items.len() as u64);
                }
            }
        }
        items.sort_unstable();
        let confirmed = vec![false; items.len()];
        Ok(Entries { items, confirmed })
    }

    /// Live entries read.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the index has no live entry.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the index holds exactly one entry at `ctid` and it has `hash`; if so, it is kept.
    /// Otherwise the row must be indexed again (and any entries at `ctid` go).
    pub fn confirm(&mut self, ctid: u64, hash: u64) -> bool {
        let start = self.items.partition_point(|(c, _)| *c < ctid);
        let end = start + self.items[start..].partition_point(|(c, _)| *c == ctid);
        if end - start == 1 && self.items[start].1 == hash {
            self.confirmed[start] = true;
            true
        } else {
            false
        }
    }

    /// Tuple ids whose entries were not all confirmed, sorted and unique: delete every entry
    /// at these (see [`crate::text::maintenance::bulk_delete`]).
    pub fn unconfirmed(&self) -> Vec<u64> {
        let mut out: Vec<u64> =
            self.items.iter().zip(&self.confirmed).filter(|(_, ok)| !**ok).map(|((c, _), _)| *c).collect();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(items: &[(u64, u64)]) -> Entries {
        let mut items = items.to_vec();
        items.sort_unstable();
        Entries { confirmed: vec![false; items.len()], items }
    }

    #[test]
    fn confirms_only_a_single_matching_entry() {
        let mut e = entries(&[(1, 10), (2, 20), (2, 20), (3, 30), (5, 50)]);
        assert!(e.confirm(1, 10), "one entry, same hash");
        assert!(!e.confirm(2, 20), "two entries at one tuple id must be replaced by one");
        assert!(!e.confirm(3, 31), "another row now lives at this tuple id");
        assert!(!e.confirm(4, 40), "a row the index lacks");
        // 5 was never confirmed: its tuple is gone.
        assert_eq!(e.unconfirmed(), vec![2, 3, 5]);
    }
}
