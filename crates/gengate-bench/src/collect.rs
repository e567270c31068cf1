//! What a run measured. Each load thread keeps its own [`Stats`] (no locks or
//! channels on the request path) and the threads' stats are merged when the
//! run ends; [`Live`] holds the few shared counters the progress line reads.
//! [`Summary`] is the merged result in the units reports use.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::ErrorKind;

/// Latencies are recorded in microseconds, from 1 µs to one hour, with three
/// significant digits (0.1 % error), like wrk2 and HdrHistogram's defaults.
const HIGHEST_US: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("static histogram bounds are valid")
}

/// Measurements of one kind of request (an operation of a scenario).
#[derive(Debug, Clone)]
pub struct OpStats {
    pub latency_us: Histogram<u64>,
    pub wire_bytes: u64,
    pub answers: u64,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            latency_us: histogram(),
            wire_bytes: 0,
            answers: 0,
        }
    }
}

impl OpStats {
    fn merge(&mut self, other: &OpStats) {
        let _ = self.latency_us.add(&other.latency_us);
        self.wire_bytes += other.wire_bytes;
        self.answers += other.answers;
    }
}

/// Everything one load thread measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// All answered requests.
    pub all: OpStats,
    /// Per operation name (`get-task`, `gallery`, `create`, `poll`, …).
    pub ops: BTreeMap<&'static str, OpStats>,
    pub status_counts: BTreeMap<u16, u64>,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Created tasks: from the create request to the answer showing a final
    /// state, in microseconds.
    pub time_to_result_us: Histogram<u64>,
    pub tasks_created: u64,
    pub tasks_succeeded: u64,
    pub tasks_failed: u64,
    /// Created tasks whose result the run did not see before it ended.
    pub tasks_unfinished: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            all: OpStats::default(),
            ops: BTreeMap::new(),
            status_counts: BTreeMap::new(),
            errors: BTreeMap::new(),
            time_to_result_us: histogram(),
            tasks_created: 0,
            tasks_succeeded: 0,
            tasks_failed: 0,
            tasks_unfinished: 0,
        }
    }
}

impl Stats {
    /// Records an answer of `op` with its latency (from the planned time in
    /// open loop) and its size on the wire.
    pub fn answer(&mut self, op: &'static str, status: u16, latency: Duration, wire_bytes: u64) {
        let us = (latency.as_micros() as u64).clamp(1, HIGHEST_US);
        for s in [&mut self.all, self.ops.entry(op).or_default()] {
            s.latency_us.saturating_record(us);
            s.wire_bytes += wire_bytes;
            s.answers += 1;
        }
        *self.status_counts.entry(status).or_default() += 1;
    }

    /// Records an answer that was held open on purpose (a long poll, an
    /// event stream): in its operation and the status counts only, so the
    /// wait the client asked for is not mistaken for server latency.
    pub fn held(&mut self, op: &'static str, status: u16, latency: Duration, wire_bytes: u64) {
        let us = (latency.as_micros() as u64).clamp(1, HIGHEST_US);
        let s = self.ops.entry(op).or_default();
        s.latency_us.saturating_record(us);
        s.wire_bytes += wire_bytes;
        s.answers += 1;
        *self.status_counts.entry(status).or_default() += 1;
    }

    pub fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn task_result(&mut self, succeeded: bool, ttr: Duration) {
        self.time_to_result_us
            .saturating_record((ttr.as_micros() as u64).clamp(1, HIGHEST_US));
        if succeeded {
            self.tasks_succeeded += 1;
        } else {
            self.tasks_failed += 1;
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.all.merge(&other.all);
        for (op, s) in &other.ops {
            self.ops.entry(op).or_default().merge(s);
        }
        for (k, v) in &other.status_counts {
            *self.status_counts.entry(*k).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        let _ = self.time_to_result_us.add(&other.time_to_result_us);
        self.tasks_created += other.tasks_created;
        self.tasks_succeeded += other.tasks_succeeded;
        self.tasks_failed += other.tasks_failed;
        self.tasks_unfinished += other.tasks_unfinished;
    }
}

/// Counters shared by all load threads, read by the progress line.
#[derive(Debug, Default)]
pub struct Live {
    pub answers: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.answers.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One operation in a summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpSummary {
    pub requests: u64,
    pub share: f64,
    pub latency_ms: Percentiles,
    pub bytes_per_response: f64,
}

/// Created tasks in a summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskSummary {
    pub created: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub unfinished: u64,
    /// From create to the final state, end to end (queue and provider included).
    pub time_to_result_ms: Percentiles,
}

/// A run's result, the shape of `--json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub target: String,
    pub scenario: String,
    /// `closed` (connections as fast as they can, or virtual users) or `open` (constant rate).
    pub mode: &'static str,
    pub connections: usize,
    /// Requests per second asked for (open loop).
    pub rate: Option<f64>,
    /// Answered requests (any status).
    pub requests: u64,
    pub duration_s: f64,
    pub rps: f64,
    /// From the planned send time in open loop (coordinated omission corrected).
    pub latency_ms: Percentiles,
    pub status_counts: BTreeMap<String, u64>,
    /// Requests without an HTTP answer, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Share of requests that got a 2xx or 3xx answer.
    pub success_rate: f64,
    /// Bytes the socket read per answer: status line, headers and body.
    pub bytes_per_response: f64,
    pub bytes_total: u64,
    pub operations: BTreeMap<String, OpSummary>,
    pub tasks: Option<TaskSummary>,
}

impl Summary {
    pub fn new(
        target: String,
        scenario: String,
        connections: usize,
        rate: Option<f64>,
        stats: &Stats,
        elapsed: Duration,
    ) -> Summary {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let requests = stats.all.answers;
        let error_total: u64 = stats.errors.values().sum();
        let ok: u64 = stats
            .status_counts
            .iter()
            .filter(|(s, _)| (200..400).contains(*s))
            .map(|(_, n)| n)
            .sum();
        let attempts = stats.status_counts.values().sum::<u64>() + error_total;
        let per = |bytes: u64, n: u64| if n == 0 { 0.0 } else { bytes as f64 / n as f64 };
        let all_answers: u64 = stats.ops.values().map(|o| o.answers).sum();
        let operations = stats
            .ops
            .iter()
            .map(|(name, s)| {
                (
                    (*name).to_owned(),
                    OpSummary {
                        requests: s.answers,
                        share: per(s.answers, all_answers),
                        latency_ms: Percentiles::of(&s.latency_us),
                        bytes_per_response: per(s.wire_bytes, s.answers),
                    },
                )
            })
            .collect();
        let tasks = (stats.tasks_created > 0).then(|| TaskSummary {
            created: stats.tasks_created,
            succeeded: stats.tasks_succeeded,
            failed: stats.tasks_failed,
            unfinished: stats.tasks_unfinished,
            time_to_result_ms: Percentiles::of(&stats.time_to_result_us),
        });
        Summary {
            target,
            scenario,
            mode: if rate.is_some() { "open" } else { "closed" },
            connections,
            rate,
            requests,
            duration_s: secs,
            rps: requests as f64 / secs,
            latency_ms: Percentiles::of(&stats.all.latency_us),
            status_counts: stats
                .status_counts
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: stats
                .errors
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), *v))
                .collect(),
            success_rate: if attempts == 0 {
                0.0
            } else {
                ok as f64 / attempts as f64
            },
            bytes_per_response: per(stats.all.wire_bytes, requests),
            bytes_total: stats.all.wire_bytes,
            operations,
            tasks,
        }
    }

    /// Share of attempts that failed: no answer, or a 4xx/5xx.
    pub fn error_rate(&self) -> f64 {
        1.0 - self.success_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_give_exact_percentiles_and_counts() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for i in 1..=900 {
            a.answer("get", 200, Duration::from_millis(10), 100 + i % 2);
        }
        for _ in 0..100 {
            b.answer("get", 500, Duration::from_millis(50), 100);
        }
        b.error(ErrorKind::Timeout);
        a.merge(&b);
        let s = Summary::new(
            "t".into(),
            "raw".into(),
            1,
            None,
            &a,
            Duration::from_secs(2),
        );
        assert_eq!(s.requests, 1000);
        assert_eq!(s.rps, 500.0);
        assert!((s.latency_ms.p50 - 10.0).abs() < 0.02, "{:?}", s.latency_ms);
        assert!((s.latency_ms.p95 - 50.0).abs() < 0.05, "{:?}", s.latency_ms);
        assert_eq!(s.status_counts["500"], 100);
        assert_eq!(s.errors["timeout"], 1);
        assert!((s.success_rate - 900.0 / 1001.0).abs() < 1e-9);
        assert!((s.bytes_per_response - 100.45).abs() < 1e-9);
    }
}
