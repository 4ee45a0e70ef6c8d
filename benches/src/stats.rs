//! Latency statistics.

use std::time::Duration;

/// Percentiles and throughput of a set of timed runs.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Summary {
    pub runs: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub mean_ms: f64,
    /// Queries per second of one client running the queries back to back.
    pub qps: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        let pick = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
        let total: f64 = ms.iter().sum();
        Summary {
            runs: ms.len(),
            p50_ms: pick(0.5),
            p95_ms: pick(0.95),
            mean_ms: total / ms.len() as f64,
            qps: ms.len() as f64 / (total / 1e3),
        }
    }
}
