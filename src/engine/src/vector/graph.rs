//! Building the HNSW graph of one field of one segment with hnsw_rs, and flattening it into the
//! fixed-width layout of the `.hvec` file (see `segment`).
//!
//! hnsw_rs's graph is a web of `Arc`s private to the building process; only its adjacency lists
//! are kept. Searches run on the flattened copy (`search`), so hnsw_rs's own search and its
//! in-memory structures never reach a backend that only reads.
//!
//! hnsw_rs is called defensively, because its failure modes are process-wide: it calls
//! `process::exit` for more than 256 connections, panics on a NaN distance (its heaps order with
//! `partial_cmp().unwrap()`), and asserts that distances are never negative. So: `m` is checked,
//! every value is checked finite, the distances handed to it are ours and clamped to `[0, MAX]`
//! (a rounding error can make `1 - dot` of two unit vectors -1e-7), and the whole build runs
//! under `catch_unwind` so that a bug there is an error, not a crash.

use std::panic::{catch_unwind, AssertUnwindSafe};

use hnsw_rs::prelude::{Distance, Hnsw};

use crate::error::{Error, Result};
use crate::vector::distance::{self, Metric};
use crate::vector::segment::NO_NEIGHBOUR;

/// A graph in the file's layout (see `segment`). Node `i` is the `i`-th document having a vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatGraph {
    /// Neighbours per node on the upper layers; `2 m` on layer 0.
    pub m: u32,
    /// The top layer.
    pub max_level: u32,
    /// A node of the top layer, where searches start.
    pub entry: u32,
    /// Doc id of each node, strictly increasing.
    pub node_doc: Vec<u32>,
    /// Top layer of each node.
    pub levels: Vec<u8>,
    /// Index of the first upper list of each node (`NO_NEIGHBOUR` for nodes of layer 0 only).
    pub upper_start: Vec<u32>,
    /// `n x 2m` layer-0 neighbours, padded with `NO_NEIGHBOUR`.
    pub layer0: Vec<u32>,
    /// Upper lists of `m` entries each, padded with `NO_NEIGHBOUR`.
    pub upper: Vec<u32>,
}

impl FlatGraph {
    /// Number of upper-layer lists.
    pub fn num_upper_lists(&self) -> usize {
        if self.m == 0 {
            0
        } else {
            self.upper.len() / self.m as usize
        }
    }

    /// Checks that the arrays agree with each other and with `docs` (the writer refuses to write
    /// a graph the reader would call corrupt).
    pub(crate) fn check_shape(&self, docs: &[u32]) -> std::result::Result<(), String> {
        let n = self.node_doc.len();
        let m = self.m as usize;
        let ok = n > 0
            && self.node_doc == docs
            && self.levels.len() == n
            && self.upper_start.len() == n
            && m > 0
            && self.layer0.len() == n * 2 * m
            && self.upper.len().is_multiple_of(m)
            && (self.entry as usize) < n
            && u32::from(self.levels[self.entry as usize]) == self.max_level
            && self.levels.iter().all(|l| u32::from(*l) <= self.max_level);
        if ok {
            Ok(())
        } else {
            Err("graph arrays are inconsistent".into())
        }
    }
}

/// How to build a graph.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    /// The field's metric (decides the build distance, see [`build_graph`]).
    pub metric: Metric,
    /// HNSW `m`: 2 to 255.
    pub m: usize,
    /// Candidate list size while inserting.
    pub ef_construction: usize,
    /// Threads inserting in parallel (1 = on the calling thread).
    pub threads: usize,
}

/// Largest `m` given to hnsw_rs: it exits the process above 256, and stores the connection
/// count as a `u8` in places.
pub const HNSW_MAX_M: usize = 255;

/// Squared Euclidean distance: orders exactly like the Euclidean distance, and hnsw_rs only
/// ever compares distances (its neighbour heuristic compares two distances of the same kind),
/// so the square root is not needed.
struct BuildL2;

/// `1 - dot`: the cosine distance of unit vectors; for inner product, of vectors scaled into
/// the unit ball (see [`build_graph`]).
struct BuildDot;

/// Keeps hnsw_rs's invariants: never negative, never NaN (which could only come from values
/// overflowing, already excluded; mapped to "far").
#[inline]
fn sanitize(d: f32) -> f32 {
    if d > 0.0 {
        d
    } else if d.is_nan() {
        f32::MAX
    } else {
        0.0
    }
}

impl Distance<f32> for BuildL2 {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        sanitize(distance::l2sq(a, b))
    }
}

impl Distance<f32> for BuildDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        sanitize(1.0 - distance::dot(a, b))
    }
}

/// Number of points inserted one by one before the parallel insertion: hnsw_rs gives no
/// neighbours to points inserted concurrently while its entry point is still unset, and a
/// graph seeded serially is better connected.
const SERIAL_SEED: usize = 256;

/// Builds the graph of `docs` (strictly increasing doc ids) whose vectors are `vectors`
/// (`docs.len() x dims`, in the stored form: unit-normalised under cosine).
///
/// The build distance per metric:
/// - L2: squared Euclidean distance.
/// - cosine: `1 - dot` on the stored unit vectors.
/// - inner product is not a metric (a point need not be its own nearest neighbour) and `-x·y`
///   is negative, which hnsw_rs does not allow. Two graphs are built and their layer-0 lists
///   interleaved (`m` entries from each, so the layout is unchanged):
///   - an inner-product graph, as hnswlib's "ip" space and ip-NSW (Morozov & Babenko, NeurIPS
///     2018): with `M` the largest norm in the segment, the build distance of `x` and `y` is
///     `1 - (x/M)·(y/M)`, which orders pairs as `-x·y` does and is never negative
///     (Cauchy-Schwarz: the scaled vectors lie in the unit ball);
///   - an angular graph (cosine on the unit-normalised vectors), whose upper layers are used.
///
/// Searches rank by the true `-q·x` throughout. Measured recall@10 (20k x 32, m 16,
/// ef_construction 64; ef 64 / ef 100), gaussian then clustered data:
/// inner-product graph alone 0.96 / 0.99 and 0.77 / 0.83 (it plateaus at 0.89 on clusters:
/// every list points at the same few large-norm hubs); angular graph alone 0.86 / 0.95 and
/// 0.98 / 1.00; both interleaved 0.95 / 0.99 and 1.00 / 1.00. The MIPS-to-Euclidean
/// reduction (append `sqrt(M² - |x|²)`, build with L2) gave 0.46 / 0.56 on gaussian data,
/// a plain L2 graph 0.43 / 0.50.
///
/// For L2 and inner product the build copy is scaled by `1 / M`: both orders are invariant
/// under a common positive scale, and values of any magnitude then stay far from overflow.
pub fn build_graph(opts: &BuildOptions, dims: usize, docs: &[u32], vectors: &[f32]) -> Result<FlatGraph> {
    let n = docs.len();
    if !(2..=HNSW_MAX_M).contains(&opts.m) {
        return Err(Error::invalid_parameter(
            format!("HNSW parameter m = {} is out of range", opts.m),
            format!("use a value from 2 to {}", crate::config::MAX_M),
        ));
    }
    if dims == 0 || vectors.len() != n * dims || n == 0 || n > u32::MAX as usize - 1 {
        return Err(Error::InvalidValue {
            message: format!("cannot build a graph of {n} vectors from {} values of {dims} dimensions", vectors.len()),
            hint: None,
        });
    }
    if docs.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::InvalidValue { message: "graph documents are not in increasing order".into(), hint: None });
    }
    if let Some(i) = vectors.iter().position(|x| !x.is_finite()) {
        return Err(Error::InvalidValue {
            message: format!("vector of document {} has a non-finite element", docs[i / dims]),
            hint: Some("NaN and infinity cannot be indexed".into()),
        });
    }
    let ef_construction = opts.ef_construction.max(opts.m);

    // The build copy (hnsw_rs copies every point anyway).
    let data: Vec<f32> = match opts.metric {
        Metric::Cosine => vectors.to_vec(),
        Metric::L2 | Metric::InnerProduct => {
            let max = vectors
                .chunks_exact(dims)
                .map(|v| v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt())
                .fold(0.0f64, f64::max);
            let scale = if max > 0.0 { 1.0 / max } else { 1.0 };
            // Both orders are invariant under a common positive scale (see above).
            vectors.iter().map(|x| (f64::from(*x) * scale) as f32).collect()
        }
    };

    let built = catch_unwind(AssertUnwindSafe(|| match opts.metric {
        Metric::Cosine => run_hnsw(BuildDot, opts, ef_construction, dims, &data),
        Metric::L2 => run_hnsw(BuildL2, opts, ef_construction, dims, &data),
        Metric::InnerProduct => {
            let ip = run_hnsw(BuildDot, opts, ef_construction, dims, &data)?;
            // Unit vectors for the angular graph (a zero vector stays zero: distance 1 to all).
            let unit: Vec<f32> = vectors
                .chunks_exact(dims)
                .flat_map(|v| crate::vector::search::normalized(v).unwrap_or_else(|| vec![0.0; dims]))
                .collect();
            let angular = run_hnsw(BuildDot, opts, ef_construction, dims, &unit)?;
            Ok(interleave(angular, &ip, n, 2 * opts.m))
        }
    }));
    let mut graph = match built {
        Ok(g) => g?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            return Err(Error::Tantivy(format!("building the HNSW graph failed: {what}")));
        }
    };
    graph.node_doc = docs.to_vec();
    Ok(graph)
}

fn run_hnsw<D: Distance<f32> + Send + Sync>(
    dist: D,
    opts: &BuildOptions,
    ef_construction: usize,
    dims: usize,
    data: &[f32],
) -> Result<FlatGraph> {
    // Everything runs on a pool of our own, dropped at the end: hnsw_rs inserts with rayon's
    // `par_iter` and also frees its graph with `into_par_iter`, which outside `install` would
    // start rayon's global pool and leave its threads running in the backend for good. The
    // pool's threads only compute distances and never call Postgres.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .thread_name(|i| format!("hybrid-hnsw-{i}"))
        .start_handler(|_| block_signals())
        .build()
        .map_err(|e| Error::Tantivy(format!("could not start graph building threads: {e}")))?;
    pool.install(|| {
        let n = data.len() / dims;
        let m = opts.m;
        // 16 layers is hnsw_rs's maximum; with m >= 2 the probability of needing more is nil.
        let hnsw: Hnsw<f32, D> = Hnsw::new(m, n, 16, ef_construction, dist);
        let points: Vec<(&[f32], usize)> = data.chunks_exact(dims).enumerate().map(|(i, v)| (v, i)).collect();
        let seed = n.min(SERIAL_SEED);
        for p in &points[..seed] {
            hnsw.insert_slice(*p);
        }
        let rest = points[seed..].to_vec();
        if opts.threads > 1 {
            hnsw.parallel_insert_slice(&rest);
        } else {
            for p in &rest {
                hnsw.insert_slice(*p);
            }
        }
        let flat = flatten(&hnsw, n, m);
        drop(hnsw);
        flat
    })
}

/// Blocks every signal in the calling thread, so that the signals Postgres sends a backend
/// (cancel, terminate, latch wake-ups) are always handled by the backend's own thread, never by
/// a helper thread that happens to be running when they arrive.
fn block_signals() {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// The angular graph with each layer-0 list replaced by the angular and inner-product lists of
/// the node interleaved, nearest first from each, without duplicates, `width` in all.
fn interleave(mut angular: FlatGraph, ip: &FlatGraph, n: usize, width: usize) -> FlatGraph {
    let mut merged = Vec::with_capacity(width);
    for i in 0..n {
        let a = &angular.layer0[i * width..(i + 1) * width];
        let b = &ip.layer0[i * width..(i + 1) * width];
        merged.clear();
        for j in 0..width {
            for x in [a[j], b[j]] {
                if x != NO_NEIGHBOUR && merged.len() < width && !merged.contains(&x) {
                    merged.push(x);
                }
            }
        }
        let out = &mut angular.layer0[i * width..(i + 1) * width];
        out.fill(NO_NEIGHBOUR);
        out[..merged.len()].copy_from_slice(&merged);
    }
    // Dropping the tail of lists may have cut a node off.
    repair_reachability(&mut angular.layer0, n, width, angular.entry);
    angular
}

/// Copies hnsw_rs's adjacency lists into the fixed-width layout.
fn flatten<D: Distance<f32> + Send + Sync>(hnsw: &Hnsw<f32, D>, n: usize, m: usize) -> Result<FlatGraph> {
    let pi = hnsw.get_point_indexation();
    if pi.get_nb_point() != n {
        return Err(Error::Tantivy(format!("HNSW build holds {} points, expected {n}", pi.get_nb_point())));
    }
    let max_level = u32::from(hnsw.get_max_level_observed());
    let mut levels = vec![u8::MAX; n];
    let mut lists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    for point in pi {
        let id = point.get_origin_id();
        let level = point.get_point_id().0;
        if id >= n || levels[id] != u8::MAX {
            return Err(Error::Tantivy(format!("HNSW build returned a bad point id {id}")));
        }
        levels[id] = level;
        // hnsw_rs also records projections of layers above a point's own level; only the
        // point's own layers 0..=level are part of the graph.
        let hood = point.get_neighborhood_id();
        lists[id] = hood.into_iter().take(usize::from(level) + 1).map(|l| l.into_iter().map(|nb| nb.get_origin_id() as u32).collect()).collect();
    }
    if levels.contains(&u8::MAX) {
        return Err(Error::Tantivy("HNSW build lost points".into()));
    }
    // Any node of the top layer can start a search; hnsw_rs's entry point is one of them.
    let entry = levels
        .iter()
        .position(|l| u32::from(*l) == max_level)
        .ok_or_else(|| Error::Tantivy("HNSW build has no entry point".into()))? as u32;
    let mut layer0 = vec![NO_NEIGHBOUR; n * 2 * m];
    let mut upper_start = vec![NO_NEIGHBOUR; n];
    let mut upper = Vec::new();
    let mut seen: Vec<u32> = Vec::with_capacity(2 * m);
    for (id, node_lists) in lists.into_iter().enumerate() {
        let level = levels[id];
        for (l, list) in node_lists.into_iter().enumerate() {
            let width = if l == 0 { 2 * m } else { m };
            seen.clear();
            for nb in list {
                // Drop self-loops, duplicates and links to nodes that do not reach this layer.
                if nb as usize >= n || nb as usize == id || usize::from(levels[nb as usize]) < l || seen.contains(&nb) {
                    continue;
                }
                seen.push(nb);
                if seen.len() == width {
                    break;
                }
            }
            if l == 0 {
                layer0[id * 2 * m..id * 2 * m + seen.len()].copy_from_slice(&seen);
            } else {
                if l == 1 {
                    upper_start[id] = (upper.len() / m) as u32;
                }
                let start = upper.len();
                upper.resize(start + m, NO_NEIGHBOUR);
                upper[start..start + seen.len()].copy_from_slice(&seen);
            }
        }
        // A node always has all its lists, even if hnsw_rs gave it fewer.
        let have = if level > 0 && upper_start[id] != NO_NEIGHBOUR { upper.len() / m - upper_start[id] as usize } else { 0 };
        if level > 0 && upper_start[id] == NO_NEIGHBOUR {
            upper_start[id] = (upper.len() / m) as u32;
        }
        for _ in have..usize::from(level) {
            upper.resize(upper.len() + m, NO_NEIGHBOUR);
        }
    }
    repair_reachability(&mut layer0, n, 2 * m, entry);
    Ok(FlatGraph { m: m as u32, max_level, entry, node_doc: Vec::new(), levels, upper_start, layer0, upper })
}

/// Marks everything reachable on layer 0 from `from` (adding to `reach`), counting in
/// `reach_in` the links leaving newly reached nodes.
fn mark_reachable(layer0: &[u32], width: usize, from: u32, reach: &mut [bool], reach_in: &mut [u32], stack: &mut Vec<u32>) {
    if reach[from as usize] {
        return;
    }
    reach[from as usize] = true;
    stack.push(from);
    while let Some(x) = stack.pop() {
        for &nb in &layer0[x as usize * width..(x as usize + 1) * width] {
            if nb == NO_NEIGHBOUR {
                break;
            }
            reach_in[nb as usize] += 1;
            if !reach[nb as usize] {
                reach[nb as usize] = true;
                stack.push(nb);
            }
        }
    }
}

/// Rounds of repair before giving up on the last few nodes (each round recomputes what is
/// reachable; one or two rounds are the rule).
const REPAIR_ROUNDS: usize = 8;

/// Makes every node reachable from the entry point on layer 0.
///
/// hnsw_rs's pruning can leave nodes that no list names: rare with L2 and cosine, common with
/// inner product, where a vector of small norm is nobody's best neighbour. Such a vector is
/// seldom a top result without a filter, but with one it can be the nearest accepted document,
/// and a walk could never reach it. Each such node is linked from the nearest node of its own
/// list that is reachable, into a free slot or in place of an entry whose node has another
/// link from a reachable node. That can still cut off a node reachable only through the one
/// replaced, so each round recomputes reachability from scratch; the last round only uses free
/// slots, which cannot cut anything off.
fn repair_reachability(layer0: &mut [u32], n: usize, width: usize, entry: u32) {
    let mut stack = Vec::new();
    for round in 0..REPAIR_ROUNDS {
        let last = round + 1 == REPAIR_ROUNDS;
        let mut reach = vec![false; n];
        let mut reach_in = vec![0u32; n];
        mark_reachable(layer0, width, entry, &mut reach, &mut reach_in, &mut stack);
        if reach.iter().all(|r| *r) {
            return;
        }
        for u in 0..n as u32 {
            if reach[u as usize] {
                continue;
            }
            let own: Vec<u32> = layer0[u as usize * width..(u as usize + 1) * width]
                .iter()
                .copied()
                .take_while(|x| *x != NO_NEIGHBOUR)
                .filter(|v| reach[*v as usize])
                .collect();
            let mut linked = false;
            for v in own {
                let l = &mut layer0[v as usize * width..(v as usize + 1) * width];
                let slot = l.iter().position(|x| *x == NO_NEIGHBOUR).or_else(|| {
                    if last {
                        None
                    } else {
                        (0..width).rev().find(|i| reach_in[l[*i] as usize] > 1)
                    }
                });
                if let Some(slot) = slot {
                    if l[slot] != NO_NEIGHBOUR {
                        reach_in[l[slot] as usize] -= 1;
                    }
                    l[slot] = u;
                    linked = true;
                    break;
                }
            }
            if !linked && last {
                // Any reachable node with a free slot will do.
                if let Some(v) = (0..n).find(|v| reach[*v] && layer0[(v + 1) * width - 1] == NO_NEIGHBOUR) {
                    let l = &mut layer0[v * width..(v + 1) * width];
                    if let Some(slot) = l.iter().position(|x| *x == NO_NEIGHBOUR) {
                        l[slot] = u;
                        linked = true;
                    }
                }
            }
            if linked {
                reach_in[u as usize] += 1;
                mark_reachable(layer0, width, u, &mut reach, &mut reach_in, &mut stack);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, dims: usize) -> Vec<f32> {
        let mut s = 7u64;
        (0..n * dims)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn refuses_what_hnsw_rs_would_crash_on() {
        let docs: Vec<u32> = (0..10).collect();
        let mut v = data(10, 4);
        let o = BuildOptions { metric: Metric::L2, m: 300, ef_construction: 64, threads: 1 };
        assert!(matches!(build_graph(&o, 4, &docs, &v), Err(Error::InvalidParameter { .. })));
        let o = BuildOptions { m: 1, ..o };
        assert!(matches!(build_graph(&o, 4, &docs, &v), Err(Error::InvalidParameter { .. })));
        let o = BuildOptions { m: 8, ..o };
        v[7] = f32::NAN;
        assert!(matches!(build_graph(&o, 4, &docs, &v), Err(Error::InvalidValue { .. })));
        v[7] = f32::INFINITY;
        assert!(matches!(build_graph(&o, 4, &docs, &v), Err(Error::InvalidValue { .. })));
        v[7] = 0.0;
        assert!(build_graph(&o, 4, &docs, &v).is_ok());
        assert!(build_graph(&o, 4, &docs[..9], &v).is_err());
        // Huge but finite values do not overflow the build.
        let big: Vec<f32> = v.iter().map(|x| x * 1e37).collect();
        assert!(build_graph(&BuildOptions { metric: Metric::InnerProduct, ..o }, 4, &docs, &big).is_ok());
        assert!(build_graph(&o, 4, &docs, &big).is_ok());
    }

    #[test]
    fn flattened_graph_is_well_formed_and_connected() {
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let n = 3000;
            let dims = 8;
            let mut v = data(n, dims);
            if metric == Metric::Cosine {
                for c in v.chunks_exact_mut(dims) {
                    let norm = distance::norm(c);
                    c.iter_mut().for_each(|x| *x /= norm);
                }
            }
            let docs: Vec<u32> = (0..n as u32).map(|i| i * 2 + 1).collect();
            let g = build_graph(&BuildOptions { metric, m: 8, ef_construction: 40, threads: 2 }, dims, &docs, &v).unwrap();
            g.check_shape(&docs).unwrap();
            assert!(g.max_level >= 1, "3000 points with m = 8 have upper layers");
            // Every node is reachable from the entry point on layer 0.
            let mut seen = vec![false; n];
            let mut stack = vec![g.entry];
            seen[g.entry as usize] = true;
            while let Some(x) = stack.pop() {
                for &nb in &g.layer0[x as usize * 16..x as usize * 16 + 16] {
                    if nb != NO_NEIGHBOUR && !seen[nb as usize] {
                        seen[nb as usize] = true;
                        stack.push(nb);
                    }
                }
            }
            let reached = seen.iter().filter(|s| **s).count();
            assert_eq!(reached, n, "{metric:?}: every node is reachable");
            // Upper lists exist for exactly the nodes above layer 0.
            let lists: usize = g.levels.iter().map(|l| usize::from(*l)).sum();
            assert_eq!(lists, g.num_upper_lists());
        }
    }
}
