//! Data shared by the benchmarks: real data where the project's fetch script put it
//! (`scripts/fetch-data.sh`), generated data of the same shape otherwise, so that the
//! benchmarks always run.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use criterion::Criterion;

/// Where `scripts/fetch-data.sh` puts the data sets.
pub const DATA: &str = "/var/tmp/pg_hybrid/data";

/// Settings that keep the whole suite to a few minutes on a shared 2-core machine: a short
/// warm-up, a short measurement and fewer samples than criterion's 100 (what `--quick` trades
/// too, but fixed here so that `cargo bench` alone is quick).
pub fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
        .configure_from_args()
}

/// Reads up to `limit` vectors of an `.fvecs` file (each: i32 dimensions, then the floats).
pub fn read_fvecs(path: &Path, limit: usize) -> Option<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).ok()?;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() && out.len() < limit {
        let d = i32::from_le_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        at += 4;
        if at + 4 * d > bytes.len() {
            break;
        }
        out.push((0..d).map(|j| f32::from_le_bytes(bytes[at + 4 * j..at + 4 * j + 4].try_into().unwrap())).collect());
        at += 4 * d;
    }
    Some(out)
}

/// `n` vectors of `dims` standard normal values (a fixed seed: the same data every run).
pub fn gaussian(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            (0..dims)
                .map(|_| ((-2.0 * next().ln()).sqrt() * (2.0 * std::f64::consts::PI * next()).cos()) as f32)
                .collect()
        })
        .collect()
}
