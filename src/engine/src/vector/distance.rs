//! Distance kernels, the hot loop of every vector search.
//!
//! Two implementations, picked once at run time (the release build cannot assume the CPU it
//! will run on): AVX2+FMA intrinsics, and portable code written as eight independent
//! accumulators over chunks of eight so that the compiler emits SIMD for the baseline target.

use std::sync::OnceLock;

/// How two vectors are compared. Smaller is nearer for all three, as in pgvector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Euclidean distance, `<->`.
    L2,
    /// 1 - cosine similarity, `<=>`.
    Cosine,
    /// Negative inner product, `<#>`.
    InnerProduct,
}

impl Metric {
    /// The name used in options and messages.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::InnerProduct => "ip",
        }
    }

    /// The SQL operator of this metric.
    pub fn operator(self) -> &'static str {
        match self {
            Metric::L2 => "<->",
            Metric::Cosine => "<=>",
            Metric::InnerProduct => "<#>",
        }
    }

    /// Parses an option value.
    pub fn parse(s: &str) -> Option<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Some(Metric::L2),
            "cosine" | "cos" => Some(Metric::Cosine),
            "ip" | "inner_product" | "dot" => Some(Metric::InnerProduct),
            _ => None,
        }
    }
}

#[inline(always)]
fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        s += a[i] * b[i];
    }
    s
}

#[inline(always)]
fn l2sq_generic(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        let d = a[i] - b[i];
        s += d * d;
    }
    s
}

/// AVX2+FMA kernels, written with intrinsics: the portable code compiled for AVX2 keeps one
/// 8-lane accumulator (Rust never fuses or reorders float operations on its own), so every
/// iteration waits for the previous add. Four accumulators with fused multiply-adds keep the
/// FMA units busy: measured 2.4x (50 dims) to 4x (768 dims) faster (`benches/distance.rs`).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Sum of the 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// `sum(f(a[i], b[i]))` where `step(acc, x, y)` adds one 8-lane block into `acc`: 32
    /// elements per round in four accumulators, then 8 at a time, then the scalar tail.
    #[inline(always)]
    unsafe fn reduce(
        a: &[f32],
        b: &[f32],
        step: impl Fn(__m256, __m256, __m256) -> __m256,
        tail: impl Fn(f32, f32) -> f32,
    ) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (all loads): i + 8 <= n on every load, and n is within both slices.
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let j = i + 8 * k;
                *acc = step(*acc, _mm256_loadu_ps(pa.add(j)), _mm256_loadu_ps(pb.add(j)));
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = step(acc[0], _mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
        while i < n {
            s += tail(a[i], b[i]);
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this function's features are enabled here.
        unsafe { reduce(a, b, |acc, x, y| _mm256_fmadd_ps(x, y, acc), |x, y| x * y) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe {
            reduce(
                a,
                b,
                |acc, x, y| {
                    let d = _mm256_sub_ps(x, y);
                    _mm256_fmadd_ps(d, d, acc)
                },
                |x, y| (x - y) * (x - y),
            )
        }
    }
}

/// The portable kernels, which CPUs without AVX2 and FMA run. Public so that the benchmarks can
/// compare them with the kernels picked at run time (`benches/distance.rs`).
#[doc(hidden)]
pub mod portable {
    /// Inner product, baseline target.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_generic(a, b)
    }

    /// Squared Euclidean distance, baseline target.
    pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        super::l2sq_generic(a, b)
    }
}

type Kernel = fn(&[f32], &[f32]) -> f32;

struct Kernels {
    dot: Kernel,
    l2sq: Kernel,
    name: &'static str,
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected on this CPU.
            return Kernels {
                dot: |a, b| unsafe { avx2::dot(a, b) },
                l2sq: |a, b| unsafe { avx2::l2sq(a, b) },
                name: "avx2+fma",
            };
        }
        Kernels { dot: dot_generic, l2sq: l2sq_generic, name: "portable" }
    })
}

/// Which kernels this CPU runs ("avx2+fma" or "portable"), for benchmark reports.
pub fn kernel_name() -> &'static str {
    kernels().name
}

/// The inner-product kernel of this CPU, for loops that call it many times (one lookup).
pub(crate) fn dot_kernel() -> fn(&[f32], &[f32]) -> f32 {
    kernels().dot
}

/// The squared-Euclidean kernel of this CPU (see [`dot_kernel`]).
pub(crate) fn l2sq_kernel() -> fn(&[f32], &[f32]) -> f32 {
    kernels().l2sq
}

/// Inner product.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

/// Squared Euclidean distance.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2sq)(a, b)
}

/// Euclidean norm.
pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// The distance of `metric` between a query and a stored vector. For cosine, stored vectors
/// are unit-normalised when written and queries when prepared, so it is `1 - dot`, kept in
/// [0, 2] as pgvector keeps it (it clamps the similarity to [-1, 1]; rounding can otherwise
/// give -1e-7 for a vector and itself).
#[inline]
pub fn distance(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    match metric {
        Metric::L2 => l2sq(q, v).sqrt(),
        Metric::Cosine => (1.0 - dot(q, v)).clamp(0.0, 2.0),
        Metric::InnerProduct => -dot(q, v),
    }
}

/// A distance that orders like `distance` but is cheaper (no square root for L2).
#[inline]
pub fn rank_distance(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    match metric {
        Metric::L2 => l2sq(q, v),
        _ => distance(metric, q, v),
    }
}

/// Converts a rank distance back to the metric's distance.
#[inline]
pub fn from_rank(metric: Metric, d: f32) -> f32 {
    match metric {
        Metric::L2 => d.max(0.0).sqrt(),
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_the_definition() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let d: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let l: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((dot(&a, &b) - d).abs() < 1e-4);
        assert!((l2sq(&a, &b) - l).abs() < 1e-4);
        assert!((dot_generic(&a, &b) - d).abs() < 1e-4);
        assert_eq!(distance(Metric::InnerProduct, &a, &b), -dot(&a, &b));
        assert!((distance(Metric::L2, &a, &b) - l.sqrt()).abs() < 1e-4);
        // Cosine of unit vectors stays in [0, 2] whatever the rounding.
        let n = norm(&a);
        let u: Vec<f32> = a.iter().map(|x| x / n).collect();
        let neg: Vec<f32> = u.iter().map(|x| -x).collect();
        assert!(distance(Metric::Cosine, &u, &u) >= 0.0);
        assert!(distance(Metric::Cosine, &u, &u) < 1e-6);
        assert!(distance(Metric::Cosine, &u, &neg) <= 2.0);
        assert!(distance(Metric::Cosine, &u, &neg) > 2.0 - 1e-6);
    }

    #[test]
    fn runtime_kernels_agree_with_the_portable_ones_at_every_length() {
        // Every path of the AVX2 kernels: blocks of 32, of 8, and the scalar tail.
        for n in 0..=100 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let tol = 1e-5 * (n as f32 + 1.0);
            assert!((dot(&a, &b) - portable::dot(&a, &b)).abs() < tol, "dot, {n} dims");
            assert!((l2sq(&a, &b) - portable::l2sq(&a, &b)).abs() < tol, "l2sq, {n} dims");
            // Slices of different lengths use the shorter one.
            assert_eq!(dot(&a, &b[..n / 2]), dot(&a[..n / 2], &b[..n / 2]));
        }
        assert!(["avx2+fma", "portable"].contains(&kernel_name()));
    }
}
