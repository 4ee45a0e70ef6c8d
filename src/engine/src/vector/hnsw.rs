//! HNSW construction (Malkov & Yashunin, 2016/2018) directly into the flattened layout of the
//! `.hvec` file, as hnswlib builds: the graph is a few flat arrays of node ids, every node has
//! a lock, and threads insert points in parallel.
//!
//! Why not hnsw_rs, which built our graphs before: its graph is a web of `Arc`s (one
//! allocation and two atomic reference counts per candidate of every search, a hash map of
//! visited points per layer search, a reader-writer lock per neighbour list), and its
//! distances are scalar. Measured on GloVe-50 (100k, cosine, m 16, ef_construction 64, 2
//! threads), see `examples/vector_build.rs` and the report in `graph.rs`.
//!
//! The algorithm is hnswlib's:
//! - levels are drawn up front, `floor(-ln(u) / ln(m))` from a hash of the node number (so
//!   the layout of the upper lists is known before anything is inserted, and a build is
//!   reproducible up to thread scheduling);
//! - a point is inserted by a greedy descent from the entry point to its own top layer, then,
//!   layer by layer, a beam search of `ef_construction` candidates, from which the neighbour
//!   heuristic (keep a candidate only if it is nearer to the point than to every neighbour
//!   kept so far) selects its list; the heuristic's width is `m` on the upper layers and `2m`
//!   on layer 0, as hnsw_rs did (hnswlib selects `m` everywhere; the wider layer 0 keeps the
//!   recall hnsw_rs graphs had at a given `ef`);
//! - each selected neighbour gets a link back; a full list is pruned by the same heuristic
//!   (hnsw_rs simply dropped the farthest, which keeps only nearby links and is what makes
//!   hnswlib's graphs navigable with fewer distance computations).
//!
//! Concurrency: a node's lists are written only under its lock; they are read without it, as
//! relaxed atomics, so a search may see a list half rewritten: a mix of old and new valid ids,
//! which at worst costs the search a detour. The entry point changes under a global lock held
//! for the whole insertion of a point that raises the top layer (rare: about one in `m^L`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use rayon::prelude::*;

use crate::vector::graph::FlatGraph;
use crate::vector::search::{Scored, VisitedSet};
use crate::vector::segment::NO_NEIGHBOUR;

/// Highest layer drawn (with m >= 2 the chance of a point above it is below 2^-16 per point;
/// hnsw_rs had the same cap).
const MAX_LEVEL: u8 = 15;

/// Points inserted one by one before the parallel insertion: with two threads inserting into
/// a graph of a handful of points, each sees few of the other's points, and the first lists
/// are poorly connected.
const SERIAL_SEED: usize = 256;

/// splitmix64 of the node number: a uniform draw in (0, 1] per node, independent of threads.
fn uniform(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

/// The top layer of each of `n` points for a graph of `m` links per node.
fn draw_levels(n: usize, m: usize) -> Vec<u8> {
    let mult = 1.0 / (m as f64).ln();
    (0..n).map(|i| ((-uniform(0x5eed, i as u64).ln() * mult).floor() as u64).min(u64::from(MAX_LEVEL)) as u8).collect()
}

/// Per-thread scratch space of insertions.
struct Scratch {
    visited: VisitedSet,
    candidates: BinaryHeap<Reverse<Scored>>,
    results: BinaryHeap<Scored>,
    found: Vec<Scored>,
    selected: Vec<Scored>,
    list: Vec<u32>,
    /// The full list being pruned by `link_back`, and what it keeps.
    prune: Vec<Scored>,
    kept: Vec<Scored>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            visited: VisitedSet::default(),
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
            found: Vec::new(),
            selected: Vec::new(),
            list: Vec::new(),
            prune: Vec::new(),
            kept: Vec::new(),
        }
    }
}

/// A graph being built (see the module comment).
struct Builder<'a, D> {
    data: &'a [f32],
    dims: usize,
    n: usize,
    m: usize,
    ef_construction: usize,
    dist: D,
    levels: Vec<u8>,
    /// Index of the first upper list of each node (`NO_NEIGHBOUR` for nodes of layer 0 only).
    upper_start: Vec<u32>,
    /// `n x 2m`, padded with `NO_NEIGHBOUR`.
    layer0: Vec<AtomicU32>,
    /// `m` per upper list.
    upper: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
    /// Entry point and top layer.
    entry: Mutex<Option<(u32, u8)>>,
    /// Held through the insertion of a point that raises the top layer.
    grow: Mutex<()>,
}

impl<'a, D: Fn(&[f32], &[f32]) -> f32 + Sync> Builder<'a, D> {
    fn new(data: &'a [f32], dims: usize, m: usize, ef_construction: usize, dist: D) -> Builder<'a, D> {
        let n = data.len() / dims;
        let levels = draw_levels(n, m);
        let mut upper_start = vec![NO_NEIGHBOUR; n];
        let mut lists = 0usize;
        for (i, l) in levels.iter().enumerate() {
            if *l > 0 {
                upper_start[i] = lists as u32;
                lists += usize::from(*l);
            }
        }
        let atomics = |len: usize| (0..len).map(|_| AtomicU32::new(NO_NEIGHBOUR)).collect::<Vec<_>>();
        Builder {
            data,
            dims,
            n,
            m,
            ef_construction,
            dist,
            levels,
            upper_start,
            layer0: atomics(n * 2 * m),
            upper: atomics(lists * m),
            locks: (0..n).map(|_| Mutex::new(())).collect(),
            entry: Mutex::new(None),
            grow: Mutex::new(()),
        }
    }

    #[inline]
    fn vector(&self, i: u32) -> &[f32] {
        let i = i as usize * self.dims;
        &self.data[i..i + self.dims]
    }

    #[inline]
    fn width(&self, layer: u8) -> usize {
        if layer == 0 {
            2 * self.m
        } else {
            self.m
        }
    }

    /// The slots of the list of `node` on `layer` (`layer` <= the node's level).
    #[inline]
    fn slots(&self, node: u32, layer: u8) -> &[AtomicU32] {
        if layer == 0 {
            let w = 2 * self.m;
            &self.layer0[node as usize * w..(node as usize + 1) * w]
        } else {
            let at = (self.upper_start[node as usize] as usize + usize::from(layer) - 1) * self.m;
            &self.upper[at..at + self.m]
        }
    }

    /// Copies the list of `node` on `layer` into `out` (without the lock: see the module comment).
    #[inline]
    fn read_list(&self, node: u32, layer: u8, out: &mut Vec<u32>) {
        out.clear();
        for s in self.slots(node, layer) {
            let x = s.load(Ordering::Relaxed);
            if x == NO_NEIGHBOUR {
                break;
            }
            out.push(x);
        }
    }

    /// Replaces the list of `node` on `layer`; the caller holds the node's lock.
    fn write_list(&self, node: u32, layer: u8, list: impl Iterator<Item = u32>) {
        let slots = self.slots(node, layer);
        let mut k = 0;
        for x in list.take(slots.len()) {
            slots[k].store(x, Ordering::Relaxed);
            k += 1;
        }
        for s in &slots[k..] {
            s.store(NO_NEIGHBOUR, Ordering::Relaxed);
        }
    }

    /// Greedy walk on `layer` from `cur` towards `q`: the nearest node found.
    fn greedy(&self, q: &[f32], mut cur: Scored, layer: u8, list: &mut Vec<u32>) -> Scored {
        loop {
            let mut moved = false;
            self.read_list(cur.id, layer, list);
            for &nb in list.iter() {
                let d = (self.dist)(q, self.vector(nb));
                if d < cur.d {
                    cur = Scored { d, id: nb };
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// Beam search of `ef` on `layer` from `entry`; leaves the nodes found in `s.found`, nearest
    /// first. `skip` (the point being inserted) is never a result.
    fn search_layer(&self, q: &[f32], entry: Scored, layer: u8, skip: u32, s: &mut Scratch) {
        let ef = self.ef_construction;
        s.visited.reset(self.n);
        s.visited.insert(skip);
        s.visited.insert(entry.id);
        s.candidates.clear();
        s.results.clear();
        s.candidates.push(Reverse(entry));
        s.results.push(entry);
        while let Some(Reverse(c)) = s.candidates.pop() {
            if s.results.len() >= ef && s.results.peek().is_some_and(|w| c.d > w.d) {
                break;
            }
            self.read_list(c.id, layer, &mut s.list);
            for &nb in &s.list {
                if !s.visited.insert(nb) {
                    continue;
                }
                let d = (self.dist)(q, self.vector(nb));
                if s.results.len() < ef || s.results.peek().is_some_and(|w| d < w.d) {
                    let x = Scored { d, id: nb };
                    s.candidates.push(Reverse(x));
                    s.results.push(x);
                    if s.results.len() > ef {
                        s.results.pop();
                    }
                }
            }
        }
        s.found.clear();
        s.found.extend(s.results.drain());
        s.found.sort_unstable();
    }

    /// hnswlib's neighbour heuristic: from `candidates` (nearest first, distances to the point
    /// concerned), keeps up to `k`, each nearer to the point than to any kept before it.
    fn select(&self, candidates: &[Scored], k: usize, out: &mut Vec<Scored>) {
        out.clear();
        if candidates.len() <= k {
            out.extend_from_slice(candidates);
            return;
        }
        for c in candidates {
            if out.len() >= k {
                break;
            }
            let v = self.vector(c.id);
            if out.iter().all(|r| (self.dist)(v, self.vector(r.id)) >= c.d) {
                out.push(*c);
            }
        }
    }

    /// Adds a link from `node` to `new` on `layer` (its distance to `node` is `d`), pruning a
    /// full list with the heuristic.
    fn link_back(&self, node: u32, new: u32, d: f32, layer: u8, s: &mut Scratch) {
        let _guard = self.locks[node as usize].lock();
        let slots = self.slots(node, layer);
        let mut len = 0;
        for slot in slots {
            let x = slot.load(Ordering::Relaxed);
            if x == NO_NEIGHBOUR {
                break;
            }
            if x == new {
                return;
            }
            len += 1;
        }
        if len < slots.len() {
            slots[len].store(new, Ordering::Relaxed);
            return;
        }
        let v = self.vector(node);
        s.prune.clear();
        s.prune.extend(slots.iter().map(|slot| {
            let x = slot.load(Ordering::Relaxed);
            Scored { d: (self.dist)(v, self.vector(x)), id: x }
        }));
        s.prune.push(Scored { d, id: new });
        s.prune.sort_unstable();
        self.select(&s.prune, slots.len(), &mut s.kept);
        self.write_list(node, layer, s.kept.iter().map(|x| x.id));
    }

    fn insert(&self, node: u32, s: &mut Scratch) {
        let level = self.levels[node as usize];
        let q = self.vector(node);
        let mut current = *self.entry.lock();
        let _grow = match current {
            Some((_, top)) if level <= top => None,
            _ => {
                let g = self.grow.lock();
                current = *self.entry.lock();
                Some(g)
            }
        };
        let Some((entry, top)) = current else {
            // The first point.
            *self.entry.lock() = Some((node, level));
            return;
        };
        let mut cur = Scored { d: (self.dist)(q, self.vector(entry)), id: entry };
        for layer in (level.saturating_add(1)..=top).rev() {
            cur = self.greedy(q, cur, layer, &mut s.list);
        }
        for layer in (0..=level.min(top)).rev() {
            self.search_layer(q, cur, layer, node, s);
            let found = std::mem::take(&mut s.found);
            let mut selected = std::mem::take(&mut s.selected);
            self.select(&found, self.width(layer), &mut selected);
            {
                let _guard = self.locks[node as usize].lock();
                self.write_list(node, layer, selected.iter().map(|x| x.id));
            }
            for x in &selected {
                self.link_back(x.id, node, x.d, layer, s);
            }
            if let Some(first) = found.first() {
                cur = *first;
            }
            s.found = found;
            s.selected = selected;
        }
        if level > top {
            *self.entry.lock() = Some((node, level));
        }
    }

    fn into_flat(self) -> FlatGraph {
        let (entry, max_level) = self.entry.lock().expect("at least one point");
        let load = |v: Vec<AtomicU32>| v.into_iter().map(AtomicU32::into_inner).collect::<Vec<u32>>();
        FlatGraph {
            m: self.m as u32,
            max_level: u32::from(max_level),
            entry,
            node_doc: Vec::new(),
            levels: self.levels,
            upper_start: self.upper_start,
            layer0: load(self.layer0),
            upper: load(self.upper),
        }
    }
}

/// Builds the graph of the `data.len() / dims` vectors of `data` with `dist`, inserting in
/// parallel on the current rayon pool when `parallel`. Node `i` is vector `i`; `node_doc` is
/// left empty. `n >= 1`, `2 <= m`, `ef_construction >= 1`.
pub(crate) fn build<D>(
    data: &[f32],
    dims: usize,
    m: usize,
    ef_construction: usize,
    dist: D,
    parallel: bool,
) -> FlatGraph
where
    D: Fn(&[f32], &[f32]) -> f32 + Sync,
{
    let b = Builder::new(data, dims, m, ef_construction, dist);
    let n = b.n;
    let mut scratch = Scratch::new();
    let seed = if parallel { n.min(SERIAL_SEED) } else { n };
    for i in 0..seed {
        b.insert(i as u32, &mut scratch);
    }
    if seed < n {
        (seed..n).into_par_iter().with_min_len(64).for_each_init(Scratch::new, |s, i| b.insert(i as u32, s));
    }
    b.into_flat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_hnsw_distribution() {
        let n = 200_000;
        let levels = draw_levels(n, 16);
        let above = |l: u8| levels.iter().filter(|x| **x >= l).count() as f64 / n as f64;
        // P(level >= l) = m^-l.
        assert!((above(1) - 1.0 / 16.0).abs() < 0.005, "{}", above(1));
        assert!((above(2) - 1.0 / 256.0).abs() < 0.001, "{}", above(2));
        assert_eq!(levels, draw_levels(n, 16), "levels do not depend on anything but n and m");
        assert!(draw_levels(10_000, 2).iter().all(|l| *l <= MAX_LEVEL));
    }

    #[test]
    fn lists_hold_no_self_links_duplicates_or_lower_nodes() {
        let dims = 8;
        let mut s = 1u64;
        let data: Vec<f32> = (0..5000 * dims)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 24) as f32
            })
            .collect();
        let l2 = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let g = pool.install(|| build(&data, dims, 6, 32, l2, true));
        let m = 6;
        for node in 0..5000usize {
            let mut lists = vec![&g.layer0[node * 2 * m..(node + 1) * 2 * m]];
            for l in 0..usize::from(g.levels[node]) {
                let at = (g.upper_start[node] as usize + l) * m;
                lists.push(&g.upper[at..at + m]);
            }
            for (layer, list) in lists.into_iter().enumerate() {
                let ids: Vec<u32> = list.iter().copied().take_while(|x| *x != NO_NEIGHBOUR).collect();
                assert!(list[ids.len()..].iter().all(|x| *x == NO_NEIGHBOUR), "padding only at the end");
                assert!(!ids.is_empty() || g.levels.iter().filter(|l| usize::from(**l) >= layer).count() == 1);
                for (k, x) in ids.iter().enumerate() {
                    assert_ne!(*x as usize, node);
                    assert!(!ids[..k].contains(x));
                    assert!(usize::from(g.levels[*x as usize]) >= layer);
                }
            }
        }
        assert_eq!(u32::from(g.levels[g.entry as usize]), g.max_level);
    }
}
