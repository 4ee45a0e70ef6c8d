//! k-nearest-neighbour search over all segments of a snapshot, optionally filtered by a tantivy
//! query.
//!
//! Per segment the search picks a strategy by selectivity (DESIGN.md, "Read path"):
//! - no graph (a small segment), a filter matching at most `exact_below` live documents, or a
//!   walk predicted to cost more than the scan (about `ef * m / selectivity` distances against
//!   the number of matching documents): score exactly the matching documents (only those
//!   vectors are read);
//! - otherwise walk the graph with the filter (and the alive bitset) applied inside the walk,
//!   with a visit budget equal to what the exact scan would cost; if the budget runs out or the
//!   walk returns fewer than `k` hits while more exist, score exactly instead. So a walk never
//!   costs more than about twice the exact scan, and a filter never silently loses results.
//!
//! Per-segment top-k lists are merged into the global top-k (ties broken by ctid, so results do
//! not depend on how the index is segmented).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tantivy::index::SegmentId;
use tantivy::query::{EnableScoring, Query};
use tantivy::{DocId, SegmentReader};

use crate::config::IndexConfig;
use crate::error::{Error, Result};
use crate::text::reader::Snapshot;
use crate::vector::search::{exact, exact_docs, prepare_query, search_graph, VisitedSet};
use crate::vector::segment::VectorSegment;

/// How a search (or one segment of it) was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnnStrategy {
    /// No segment had a vector to search.
    Empty,
    /// Exact scan.
    Exact,
    /// HNSW graph walk.
    Graph,
    /// Graph walk, then an exact scan because the walk ran out of budget or came up short.
    GraphThenExact,
    /// Segments were answered differently (see the per-strategy counts).
    Mixed,
}

/// The result of [`Snapshot::knn`].
#[derive(Debug, Clone)]
pub struct KnnResult {
    /// Up to `k` hits as (distance, ctid), nearest first; distances as the SQL operator computes
    /// them.
    pub hits: Vec<(f32, u64)>,
    /// Which strategy ran (`Mixed` if segments differed).
    pub strategy: KnnStrategy,
    /// Distances computed, graph walks and exact scans together.
    pub visited: u64,
    /// Segments answered by exact scan alone.
    pub exact_segments: usize,
    /// Segments answered by a graph walk alone.
    pub graph_segments: usize,
    /// Segments where a graph walk fell back to an exact scan.
    pub fallback_segments: usize,
}

/// The open vector files of an index, by segment, shared by the snapshots of one `TextIndex`
/// (each is opened once, on first use, and dropped when its segment leaves the index).
#[derive(Default)]
pub struct VectorCache {
    segments: Mutex<HashMap<SegmentId, Arc<VectorSegment>>>,
}

impl VectorCache {
    /// The vector file of a segment, opened on first use.
    pub(crate) fn get(&self, reader: &SegmentReader, config: &IndexConfig) -> Result<Option<Arc<VectorSegment>>> {
        if config.vector_fields.is_empty() {
            return Ok(None);
        }
        let id = reader.segment_id();
        if let Some(s) = self.segments.lock().get(&id) {
            return Ok(Some(s.clone()));
        }
        // Opened outside the lock; two threads racing here both open it, one copy is kept.
        let seg = Arc::new(VectorSegment::open_fields(reader, &config.vector_fields)?);
        Ok(Some(self.segments.lock().entry(id).or_insert(seg).clone()))
    }

    /// Forgets the segments not in `live`.
    pub(crate) fn retain(&self, live: &[SegmentId]) {
        self.segments.lock().retain(|id, _| live.contains(id));
    }
}

thread_local! {
    /// One visited set per thread, reused by every walk (a backend is one thread).
    static VISITED: RefCell<VisitedSet> = RefCell::new(VisitedSet::default());
}

fn with_visited<R>(f: impl FnOnce(&mut VisitedSet) -> R) -> R {
    VISITED.with(|v| match v.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        // Re-entered (a filter callback searching again): use a private set.
        Err(_) => f(&mut VisitedSet::default()),
    })
}

/// A set of doc ids of one segment, for the filter check inside a walk.
struct DocBits(Vec<u64>);

impl DocBits {
    fn new(max_doc: u32, docs: &[DocId]) -> DocBits {
        let mut w = vec![0u64; (max_doc as usize).div_ceil(64)];
        for d in docs {
            if let Some(word) = w.get_mut(*d as usize / 64) {
                *word |= 1 << (d % 64);
            }
        }
        DocBits(w)
    }

    #[inline]
    fn contains(&self, d: DocId) -> bool {
        self.0.get(d as usize / 64).is_some_and(|w| w & (1 << (d % 64)) != 0)
    }
}

impl Snapshot {
    /// The vector file of segment `ord` of this snapshot (`None` if the index has no vector
    /// field).
    pub fn vector_segment(&self, ord: usize) -> Result<Option<Arc<VectorSegment>>> {
        let reader = self
            .searcher()
            .segment_readers()
            .get(ord)
            .ok_or_else(|| Error::Tantivy(format!("no segment {ord} in this snapshot")))?;
        self.vector_cache().get(reader, self.config())
    }

    /// The `k` documents nearest to `query` in vector field `field` (position in
    /// `IndexConfig::vector_fields`) among live documents matching `filter`, as (distance, ctid),
    /// nearest first. `ef_search` is the candidate list size of graph walks (at least `k` is
    /// used); a segment where the filter matches at most `exact_below` documents is scored
    /// exactly, as is one where a walk is predicted to cost more than that (see the module
    /// comment). To page further, ask again with a larger `k`.
    pub fn knn(
        &self,
        field: usize,
        query: &[f32],
        k: usize,
        ef_search: usize,
        filter: Option<&dyn Query>,
        exact_below: usize,
    ) -> Result<KnnResult> {
        let cfg = self.config().vector_fields.get(field).ok_or_else(|| Error::UnknownField {
            message: format!("the index has no vector field number {field}"),
            hint: Some(format!("it has {} vector fields", self.config().vector_fields.len())),
            position: None,
        })?;
        cfg.check(query, "query vector")?;
        let q = prepare_query(cfg.metric, cfg.dimensions, query)?;
        let mut out = KnnResult {
            hits: Vec::new(),
            strategy: KnnStrategy::Empty,
            visited: 0,
            exact_segments: 0,
            graph_segments: 0,
            fallback_segments: 0,
        };
        if k == 0 {
            return Ok(out);
        }
        let searcher = self.searcher();
        let weight = match filter {
            Some(f) => Some(f.weight(EnableScoring::disabled_from_searcher(searcher))?),
            None => None,
        };
        let mut all: Vec<(f32, u64)> = Vec::new();
        for (ord, reader) in searcher.segment_readers().iter().enumerate() {
            if reader.num_docs() == 0 {
                continue;
            }
            let Some(seg) = self.vector_segment(ord)? else { continue };
            let view = seg.field(field).ok_or_else(|| Error::Corrupt {
                path: seg.path().to_path_buf(),
                detail: format!("vector file has no field {field}"),
            })?;
            if view.num_vectors() == 0 {
                continue;
            }
            let alive = reader.alive_bitset();
            let is_alive = |d: DocId| alive.is_none_or(|a| a.is_alive(d));

            // The documents the filter allows, if there is a filter.
            let matches: Option<Vec<DocId>> = match &weight {
                None => None,
                Some(w) => {
                    let mut docs = Vec::new();
                    w.for_each_no_score(reader, &mut |block| {
                        docs.extend(block.iter().copied().filter(|d| is_alive(*d) && view.has_vector(*d)));
                    })?;
                    if docs.is_empty() {
                        continue;
                    }
                    Some(docs)
                }
            };
            let candidates = matches.as_ref().map_or(view.num_vectors(), Vec::len);
            // A walk whose filter passes a fraction s of the nodes costs about ef * m / s
            // distances (measured: ~10k at s = 10% and ~19k at 1% with ef 100, m 16), the
            // exact scan `candidates`: walk only where it is predicted cheaper.
            let predicted_walk = view.graph().map_or(u128::MAX, |g| {
                (ef_search.max(k) as u128) * (g.m() as u128) * (view.num_vectors() as u128)
                    / (candidates.max(1) as u128)
            });
            let use_graph = view.has_graph()
                && (matches.is_none() || candidates > exact_below)
                && predicted_walk < candidates as u128;
            let (hits, strategy) = if !use_graph {
                out.visited += candidates as u64;
                let hits = match &matches {
                    Some(docs) => exact_docs(&view, &q, k, &mut docs.iter().copied()),
                    None => exact(&view, &q, k, &mut |d| is_alive(d)),
                };
                (hits, KnnStrategy::Exact)
            } else {
                let bits = matches.as_ref().map(|docs| DocBits::new(reader.max_doc(), docs));
                let mut accept = |d: DocId| is_alive(d) && bits.as_ref().is_none_or(|b| b.contains(d));
                // The walk may cost what the exact scan of the candidates would, no more.
                let budget = candidates.max(64);
                let walk = with_visited(|v| search_graph(&view, &q, k, ef_search, Some(budget), &mut accept, v))?;
                out.visited += walk.visited as u64;
                if walk.budget_exhausted || walk.hits.len() < k.min(candidates) {
                    out.visited += candidates as u64;
                    let hits = match &matches {
                        Some(docs) => exact_docs(&view, &q, k, &mut docs.iter().copied()),
                        None => exact(&view, &q, k, &mut |d| is_alive(d)),
                    };
                    (hits, KnnStrategy::GraphThenExact)
                } else {
                    (walk.hits, KnnStrategy::Graph)
                }
            };
            match strategy {
                KnnStrategy::Exact => out.exact_segments += 1,
                KnnStrategy::Graph => out.graph_segments += 1,
                _ => out.fallback_segments += 1,
            }
            out.strategy = match out.strategy {
                KnnStrategy::Empty => strategy,
                s if s == strategy => s,
                _ => KnnStrategy::Mixed,
            };
            let ctids = self.ctid_column(ord as u32);
            all.extend(hits.into_iter().filter_map(|(d, doc)| ctids.first(doc).map(|c| (d, c))));
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.truncate(k);
        out.hits = all;
        Ok(out)
    }
}
