//! One step of the ramp: what it measured, and whether that met the SLO.

use serde::Serialize;

use crate::collect::Summary;
use crate::units::Slo;

/// The outcome of one step of the ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub users: usize,
    pub rps: f64,
    pub latency_ms: crate::collect::Percentiles,
    pub error_rate: f64,
    pub bytes_per_response: f64,
    /// Tasks created per second in this step.
    pub creates_per_s: f64,
    /// Largest resident memory of the server during the step.
    pub rss_bytes: Option<u64>,
    /// Server CPU time spent in the step, in seconds.
    pub cpu_s: Option<f64>,
    pub duration_s: f64,
    pub requests: u64,
    /// Median time to result of the tasks created in the step, in seconds.
    pub time_to_result_s: Option<f64>,
    pub meets_slo: bool,
}

/// Whether a step's summary meets the SLO.
pub fn meets(slo: &Slo, s: &Summary) -> bool {
    let l = &s.latency_ms;
    let p = match slo.percentile {
        x if x >= 99.9 => l.p999,
        x if x >= 99.0 => l.p99,
        x if x >= 95.0 => l.p95,
        x if x >= 90.0 => l.p90,
        _ => l.p50,
    };
    s.requests > 0 && p <= slo.latency.as_secs_f64() * 1000.0 && s.error_rate() <= slo.errors
}
