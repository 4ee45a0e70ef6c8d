//! Searching one vector field of one segment in place: the HNSW walk over the flattened graph
//! and the exact scan.
//!
//! Both take an `accept(doc)` predicate — the segment's alive bitset, and the filter of a
//! filtered search. In the graph walk it is applied *inside* the walk, as hnswlib does: a
//! rejected node is still a stepping stone (its neighbours are explored) but never a result,
//! and the walk does not stop until it holds `ef` accepted nodes or runs out of candidates.
//! Filtering the results of an unfiltered walk instead would return almost nothing at low
//! selectivity.
//!
//! Distances are ranked with `distance::rank_distance` (squared L2, no square root) and
//! returned as `distance::distance`, i.e. what the SQL operators compute: `<->` Euclidean
//! distance, `<=>` 1 - cosine similarity, `<#>` negative inner product.

use std::borrow::Cow;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use tantivy::DocId;

use crate::error::{Error, Result};
use crate::vector::distance::{self, Metric};
use crate::vector::segment::{FieldView, NO_NEIGHBOUR};

/// A distance ordered totally (NaN, which only damaged data can produce, sorts last), then by
/// id, so heaps never panic and ties break deterministically.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub(crate) d: f32,
    pub(crate) id: u32,
}

impl PartialEq for Scored {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}

/// The set of nodes a walk has visited, reusable across walks: a stamp per node, and a new
/// stamp per walk, so starting a walk costs nothing (2 bytes per node; cleared once every
/// 65,535 walks).
#[derive(Debug, Default)]
pub struct VisitedSet {
    stamps: Vec<u16>,
    current: u16,
}

impl VisitedSet {
    /// Starts a walk over `n` nodes.
    pub fn reset(&mut self, n: usize) {
        if self.stamps.len() < n {
            self.stamps.resize(n, 0);
        }
        self.current = self.current.wrapping_add(1);
        if self.current == 0 {
            self.stamps.iter_mut().for_each(|s| *s = 0);
            self.current = 1;
        }
    }

    /// Marks `node`; false if it was already marked in this walk. `node` < the `n` of `reset`.
    #[inline]
    pub fn insert(&mut self, node: u32) -> bool {
        let s = &mut self.stamps[node as usize];
        if *s == self.current {
            false
        } else {
            *s = self.current;
            true
        }
    }
}

/// What a graph walk found.
#[derive(Debug, Clone, Default)]
pub struct GraphOutcome {
    /// Up to `k` accepted documents as (distance, doc id), nearest first.
    pub hits: Vec<(f32, DocId)>,
    /// Distances computed (nodes visited), upper layers included.
    pub visited: usize,
    /// The walk stopped because it reached its visit budget, not because it converged.
    pub budget_exhausted: bool,
}

/// Checks a query against a field and returns it in the stored form: unit-normalised for
/// cosine (so `1 - dot` is the cosine distance).
pub fn prepare_query<'q>(metric: Metric, dims: usize, query: &'q [f32]) -> Result<Cow<'q, [f32]>> {
    if query.len() != dims {
        return Err(Error::InvalidParameter {
            message: format!("query vector has {} dimensions, the indexed column has {dims}", query.len()),
            hint: Some(format!("give a vector of {dims} elements")),
        });
    }
    if query.iter().any(|x| !x.is_finite()) {
        return Err(Error::InvalidParameter {
            message: "query vector has a NaN or infinite element".into(),
            hint: None,
        });
    }
    if metric == Metric::Cosine {
        return match normalized(query) {
            Some(v) => Ok(Cow::Owned(v)),
            None => Err(Error::InvalidParameter {
                message: "cosine distance is undefined for a zero query vector".into(),
                hint: Some("give a vector with at least one non-zero element, or use <-> or <#>".into()),
            }),
        };
    }
    Ok(Cow::Borrowed(query))
}

/// `v / |v|`, computed in f64 so that the same input always gives the same bits (stored vectors
/// and queries are normalised by this one function); `None` for the zero vector.
pub fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    Some(v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

/// Searches the graph of `field` for the `k` nearest accepted documents to `query` (already
/// prepared by [`prepare_query`]), with a candidate list of `ef` (at least `k`). `budget`
/// bounds the number of distances computed on layer 0. Fails with `Error::Corrupt` if the
/// walk meets an id out of range; returns no hits if the field has no graph.
pub fn search_graph(
    field: &FieldView<'_>,
    query: &[f32],
    k: usize,
    ef: usize,
    budget: Option<usize>,
    accept: &mut dyn FnMut(DocId) -> bool,
    visited: &mut VisitedSet,
) -> Result<GraphOutcome> {
    let mut out = GraphOutcome::default();
    let Some(g) = field.graph() else { return Ok(out) };
    if k == 0 || query.len() != field.dims() {
        return Ok(out);
    }
    let metric = field.metric();
    let n = g.num_nodes() as u32;
    let dist = |node: u32| distance::rank_distance(metric, query, field.vector_unchecked(g.doc(node)));
    let check = |nb: u32, layer: u32, from: u32| -> Result<()> {
        if nb >= n {
            Err(field.corrupt(format!("graph node {from}: neighbour {nb} out of range on layer {layer}")))
        } else {
            Ok(())
        }
    };

    // Greedy descent through the upper layers.
    let mut cur = g.entry();
    let mut cur_d = dist(cur);
    out.visited += 1;
    for layer in (1..=g.max_level()).rev() {
        loop {
            let mut moved = false;
            let list = g.upper(cur, layer).map_err(|e| field.corrupt(e))?;
            for &nb in list {
                if nb == NO_NEIGHBOUR {
                    break;
                }
                check(nb, layer, cur)?;
                let d = dist(nb);
                out.visited += 1;
                if d < cur_d {
                    cur = nb;
                    cur_d = d;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }

    // Beam search on layer 0, the filter applied inside the walk.
    let ef = ef.max(k);
    visited.reset(n as usize);
    visited.insert(cur);
    let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 4);
    let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
    candidates.push(Reverse(Scored { d: cur_d, id: cur }));
    if accept(g.doc(cur)) {
        results.push(Scored { d: cur_d, id: cur });
    }
    let mut spent = 0usize;
    'walk: while let Some(Reverse(c)) = candidates.pop() {
        if results.len() >= ef {
            if let Some(worst) = results.peek() {
                if c.d.total_cmp(&worst.d) == Ordering::Greater {
                    break;
                }
            }
        }
        for &nb in g.layer0(c.id) {
            if nb == NO_NEIGHBOUR {
                break;
            }
            check(nb, 0, c.id)?;
            if !visited.insert(nb) {
                continue;
            }
            if budget.is_some_and(|b| spent >= b) {
                out.budget_exhausted = true;
                break 'walk;
            }
            spent += 1;
            out.visited += 1;
            let d = dist(nb);
            let s = Scored { d, id: nb };
            let worth = results.len() < ef || results.peek().is_some_and(|w| s < *w);
            if worth {
                candidates.push(Reverse(s));
                if accept(g.doc(nb)) {
                    results.push(s);
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
    }
    let mut hits = results.into_sorted_vec();
    hits.truncate(k);
    out.hits = hits.into_iter().map(|s| (distance::from_rank(metric, s.d), g.doc(s.id))).collect();
    Ok(out)
}

/// Keeps the `k` smallest (distance, doc) pairs seen.
struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    #[inline]
    fn offer(&mut self, d: f32, doc: DocId) {
        let s = Scored { d, id: doc };
        if self.heap.len() < self.k {
            self.heap.push(s);
        } else if self.heap.peek().is_some_and(|w| s < *w) {
            self.heap.pop();
            self.heap.push(s);
        }
    }

    fn finish(self, metric: Metric) -> Vec<(f32, DocId)> {
        self.heap.into_sorted_vec().into_iter().map(|s| (distance::from_rank(metric, s.d), s.id)).collect()
    }
}

/// The `k` nearest accepted documents by exact scan of every document with a vector, as
/// (distance, doc id), nearest first (ties by doc id).
pub fn exact(
    field: &FieldView<'_>,
    query: &[f32],
    k: usize,
    accept: &mut dyn FnMut(DocId) -> bool,
) -> Vec<(f32, DocId)> {
    if k == 0 || query.len() != field.dims() {
        return Vec::new();
    }
    let metric = field.metric();
    let mut top = TopK::new(k);
    for doc in field.present_docs() {
        if accept(doc) {
            top.offer(distance::rank_distance(metric, query, field.vector_unchecked(doc)), doc);
        }
    }
    top.finish(metric)
}

/// Like [`exact`], over the given documents only (those without a vector are skipped).
pub fn exact_docs(
    field: &FieldView<'_>,
    query: &[f32],
    k: usize,
    docs: &mut dyn Iterator<Item = DocId>,
) -> Vec<(f32, DocId)> {
    if k == 0 || query.len() != field.dims() {
        return Vec::new();
    }
    let metric = field.metric();
    let mut top = TopK::new(k);
    for doc in docs {
        if field.has_vector(doc) {
            top.offer(distance::rank_distance(metric, query, field.vector_unchecked(doc)), doc);
        }
    }
    top.finish(metric)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tantivy::directory::OwnedBytes;

    use super::*;
    use crate::config::VectorFieldConfig;
    use crate::vector::graph::{build_graph, BuildOptions};
    use crate::vector::segment::{encode_segment_file, FieldData, VectorSegment};

    fn gaussian(n: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n * dims)
            .map(|_| ((-2.0 * next().ln()).sqrt() * (2.0 * std::f64::consts::PI * next()).cos()) as f32)
            .collect()
    }

    fn segment(metric: Metric, n: usize, dims: usize) -> (VectorSegment, Vec<f32>) {
        let mut v = gaussian(n, dims, 3);
        if metric == Metric::Cosine {
            v = v.chunks_exact(dims).flat_map(|c| normalized(c).unwrap()).collect();
        }
        let docs: Vec<u32> = (0..n as u32).collect();
        let g = build_graph(&BuildOptions { metric, m: 12, ef_construction: 64, threads: 2 }, dims, &docs, &v).unwrap();
        let bytes =
            encode_segment_file(n as u32, &[FieldData { dims, metric, docs: &docs, vectors: &v, graph: Some(&g) }])
                .unwrap();
        let cfg = VectorFieldConfig { name: "v".into(), dimensions: dims, metric, m: 12, ef_construction: 64 };
        (VectorSegment::from_bytes(OwnedBytes::new(bytes), &[cfg], PathBuf::from("t.hvec")).unwrap(), v)
    }

    #[test]
    fn exact_matches_brute_force_in_sql_semantics() {
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let dims = 9;
            let raw = gaussian(500, dims, 11);
            let stored: Vec<f32> = if metric == Metric::Cosine {
                raw.chunks_exact(dims).flat_map(|c| normalized(c).unwrap()).collect()
            } else {
                raw.clone()
            };
            let docs: Vec<u32> = (0..500).collect();
            let bytes =
                encode_segment_file(500, &[FieldData { dims, metric, docs: &docs, vectors: &stored, graph: None }])
                    .unwrap();
            let cfg = VectorFieldConfig { name: "v".into(), dimensions: dims, metric, m: 8, ef_construction: 32 };
            let seg = VectorSegment::from_bytes(OwnedBytes::new(bytes), &[cfg], PathBuf::new()).unwrap();
            let f = seg.field(0).unwrap();
            let q_raw = gaussian(1, dims, 99);
            let q = prepare_query(metric, dims, &q_raw).unwrap();
            let got = exact(&f, &q, 500, &mut |_| true);
            // The SQL operators' definitions, in f64 on the raw vectors.
            let sql = |x: &[f32]| -> f64 {
                let dot: f64 = x.iter().zip(&q_raw).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                let nx: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
                let nq: f64 = q_raw.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
                match metric {
                    Metric::L2 => {
                        x.iter().zip(&q_raw).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum::<f64>().sqrt()
                    }
                    Metric::Cosine => 1.0 - (dot / (nx * nq)).clamp(-1.0, 1.0),
                    Metric::InnerProduct => -dot,
                }
            };
            let mut want: Vec<(f64, u32)> =
                raw.chunks_exact(dims).enumerate().map(|(i, x)| (sql(x), i as u32)).collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(got.len(), 500);
            for (g, w) in got.iter().zip(&want) {
                assert!((f64::from(g.0) - w.0).abs() < 1e-4, "{metric:?}: {} vs {}", g.0, w.0);
            }
            // Same order, except where two distances are within rounding.
            for (i, (g, w)) in got.iter().zip(&want).enumerate().take(50) {
                if g.1 != w.1 {
                    assert!((want[i].0 - sql(&raw[g.1 as usize * dims..(g.1 as usize + 1) * dims])).abs() < 1e-5);
                }
            }
            assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
        }
    }

    #[test]
    fn queries_are_checked() {
        assert!(matches!(prepare_query(Metric::L2, 3, &[1.0, 2.0]), Err(Error::InvalidParameter { .. })));
        assert!(matches!(prepare_query(Metric::L2, 2, &[1.0, f32::NAN]), Err(Error::InvalidParameter { .. })));
        assert!(matches!(prepare_query(Metric::Cosine, 2, &[0.0, 0.0]), Err(Error::InvalidParameter { .. })));
        assert!(prepare_query(Metric::InnerProduct, 2, &[0.0, 0.0]).is_ok());
        let q = prepare_query(Metric::Cosine, 2, &[3.0, 4.0]).unwrap();
        assert_eq!(&*q, &[0.6, 0.8]);
    }

    fn recall(got: &[(f32, u32)], want: &[(f32, u32)]) -> f64 {
        let w: std::collections::HashSet<u32> = want.iter().map(|x| x.1).collect();
        got.iter().filter(|x| w.contains(&x.1)).count() as f64 / want.len().max(1) as f64
    }

    #[test]
    fn graph_walk_finds_the_nearest_and_respects_the_filter() {
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let (seg, _) = segment(metric, 4000, 16);
            let f = seg.field(0).unwrap();
            let mut visited = VisitedSet::default();
            let queries = gaussian(50, 16, 1234);
            let (mut r_all, mut r_10, mut r_1) = (0.0, 0.0, 0.0);
            for q in queries.chunks_exact(16) {
                let q = prepare_query(metric, 16, q).unwrap();
                let want = exact(&f, &q, 10, &mut |_| true);
                let got = search_graph(&f, &q, 10, 64, None, &mut |_| true, &mut visited).unwrap();
                assert!(!got.budget_exhausted);
                r_all += recall(&got.hits, &want);
                // Distances are the exact ones.
                for (d, doc) in &got.hits {
                    let e = distance::distance(metric, &q, f.vector(*doc).unwrap());
                    assert_eq!(
                        *d,
                        distance::from_rank(metric, distance::rank_distance(metric, &q, f.vector(*doc).unwrap()))
                    );
                    assert!((d - e).abs() < 1e-5);
                }
                for (sel, acc) in [(10u32, &mut r_10), (100u32, &mut r_1)] {
                    let mut ok = |d: u32| d.wrapping_mul(2654435761) % sel == 0;
                    let want = exact(&f, &q, 10, &mut ok);
                    let got = search_graph(&f, &q, 10, 64, None, &mut ok, &mut visited).unwrap();
                    assert!(got.hits.iter().all(|(_, d)| ok(*d)), "a rejected document was returned");
                    *acc += recall(&got.hits, &want);
                }
            }
            let n = 50.0;
            assert!(r_all / n >= 0.95, "{metric:?} recall {}", r_all / n);
            assert!(r_10 / n >= 0.95, "{metric:?} filtered 10% recall {}", r_10 / n);
            assert!(r_1 / n >= 0.95, "{metric:?} filtered 1% recall {}", r_1 / n);
        }
    }

    #[test]
    fn budget_stops_the_walk() {
        let (seg, _) = segment(Metric::L2, 2000, 8);
        let f = seg.field(0).unwrap();
        let mut visited = VisitedSet::default();
        let q = gaussian(1, 8, 5);
        // A filter nothing passes makes the walk explore everything reachable...
        let all = search_graph(&f, &q, 10, 32, None, &mut |_| false, &mut visited).unwrap();
        assert!(all.hits.is_empty() && !all.budget_exhausted);
        assert!(all.visited >= 1900, "{}", all.visited);
        // ...unless a budget stops it.
        let some = search_graph(&f, &q, 10, 32, Some(100), &mut |_| false, &mut visited).unwrap();
        assert!(some.budget_exhausted);
        assert!(some.visited <= 100 + 1 + 8 * 20);
        // k larger than the accepted set returns all of it.
        let few = search_graph(&f, &q, 10, 32, None, &mut |d| d < 3, &mut visited).unwrap();
        assert_eq!(few.hits.len(), 3);
    }

    #[test]
    fn visited_set_wraps() {
        let mut v = VisitedSet::default();
        for _ in 0..70_000 {
            v.reset(4);
            assert!(v.insert(3));
            assert!(!v.insert(3));
        }
    }
}
