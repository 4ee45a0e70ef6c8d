//! Distance kernels, the hot loop of every vector search.
//!
//! Written as eight independent accumulators over chunks of eight so the compiler emits wide
//! SIMD; compiled twice, for the baseline target and for AVX2+FMA, and picked once at run time
//! (the release build cannot assume the CPU it will run on).

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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_generic(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
    l2sq_generic(a, b)
}

type Kernel = fn(&[f32], &[f32]) -> f32;

struct Kernels {
    dot: Kernel,
    l2sq: Kernel,
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected on this CPU.
            return Kernels { dot: |a, b| unsafe { dot_avx2(a, b) }, l2sq: |a, b| unsafe { l2sq_avx2(a, b) } };
        }
        Kernels { dot: dot_generic, l2sq: l2sq_generic }
    })
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
}
