//! Building the HNSW graph of one field of one segment, in the fixed-width layout of the
//! `.hvec` file (see `segment`), and the checks around it.
//!
//! The construction itself is in `hnsw` (hnswlib's algorithm, written for this layout). It
//! replaced hnsw_rs, which we used to build with and flatten afterwards (see `hnsw` for why
//! and by how much; `examples/vector_build.rs` measures both).
//!
//! The build runs under `catch_unwind`, so that a bug there is an error, not a crash of the
//! backend; every value is checked finite first, and the inputs scaled so that no distance
//! overflows.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, Result};
use crate::vector::distance::{self, Metric};
use crate::vector::hnsw;
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

/// Largest `m` accepted (the layout stores levels as `u8`; options are capped lower, at
/// `config::MAX_M`).
pub const HNSW_MAX_M: usize = 255;

/// The build distance of a metric (see [`build_graph`]).
#[derive(Clone, Copy)]
enum BuildDistance {
    /// Squared Euclidean distance: orders exactly like the Euclidean distance, and the build
    /// only ever compares distances, so the square root is not needed.
    L2,
    /// `1 - dot`: the cosine distance of unit vectors; for inner product, of vectors scaled
    /// into the unit ball.
    Dot,
}

/// Builds the graph of `docs` (strictly increasing doc ids) whose vectors are `vectors`
/// (`docs.len() x dims`, in the stored form: unit-normalised under cosine).
///
/// The build distance per metric:
/// - L2: squared Euclidean distance.
/// - cosine: `1 - dot` on the stored unit vectors.
/// - inner product is not a metric (a point need not be its own nearest neighbour) and `-x·y`
///   is negative (hnsw_rs, which built graphs before, refused that; the scaled form below
///   orders every comparison of the build the same way). Two graphs are built and their layer-0 lists
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

    // The build copy.
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
        Metric::Cosine => run_build(BuildDistance::Dot, opts, ef_construction, dims, &data),
        Metric::L2 => run_build(BuildDistance::L2, opts, ef_construction, dims, &data),
        Metric::InnerProduct => {
            let ip = run_build(BuildDistance::Dot, opts, ef_construction, dims, &data)?;
            // Unit vectors for the angular graph (a zero vector stays zero: distance 1 to all).
            let unit: Vec<f32> = vectors
                .chunks_exact(dims)
                .flat_map(|v| crate::vector::search::normalized(v).unwrap_or_else(|| vec![0.0; dims]))
                .collect();
            let angular = run_build(BuildDistance::Dot, opts, ef_construction, dims, &unit)?;
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
    // The neighbour heuristic can leave a node that no list names (and, for inner product,
    // interleaving drops the tail of lists): link every node in before anyone searches.
    repair_reachability(&mut graph.layer0, n, 2 * opts.m, graph.entry);
    graph.node_doc = docs.to_vec();
    Ok(graph)
}

fn run_build(
    kind: BuildDistance,
    opts: &BuildOptions,
    ef_construction: usize,
    dims: usize,
    data: &[f32],
) -> Result<FlatGraph> {
    // The kernels picked for this CPU, called through one pointer (not `distance::dot`, which
    // looks them up on every call).
    let graph = |pool: Option<&rayon::ThreadPool>| -> FlatGraph {
        let parallel = pool.is_some();
        let run = || match kind {
            BuildDistance::L2 => {
                let l2sq = distance::l2sq_kernel();
                hnsw::build(data, dims, opts.m, ef_construction, move |a: &[f32], b: &[f32]| l2sq(a, b), parallel)
            }
            BuildDistance::Dot => {
                let dot = distance::dot_kernel();
                hnsw::build(data, dims, opts.m, ef_construction, move |a: &[f32], b: &[f32]| 1.0 - dot(a, b), parallel)
            }
        };
        match pool {
            Some(p) => p.install(run),
            None => run(),
        }
    };
    if opts.threads <= 1 {
        return Ok(graph(None));
    }
    // A pool of our own, dropped at the end: outside `install`, rayon would start its global
    // pool and leave its threads running in the backend for good. Its threads only compute
    // distances and never call Postgres.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("hybrid-hnsw-{i}"))
        .start_handler(|_| block_signals())
        .build()
        .map_err(|e| Error::Tantivy(format!("could not start graph building threads: {e}")))?;
    Ok(graph(Some(&pool)))
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
    angular
}

/// Marks everything reachable on layer 0 from `from` (adding to `reach`), counting in
/// `reach_in` the links leaving newly reached nodes.
fn mark_reachable(
    layer0: &[u32],
    width: usize,
    from: u32,
    reach: &mut [bool],
    reach_in: &mut [u32],
    stack: &mut Vec<u32>,
) {
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
/// The neighbour heuristic can leave nodes that no list names: rare with L2 and cosine (3 of
/// 3,000 random 8-d points in the unit tests), common with inner product, where a vector of small norm is nobody's best neighbour. Such a vector is
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
    fn refuses_bad_parameters_and_values() {
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
            let g =
                build_graph(&BuildOptions { metric, m: 8, ef_construction: 40, threads: 2 }, dims, &docs, &v).unwrap();
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
