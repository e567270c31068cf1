//! Prometheus metrics, kept in process and rendered as text at `/metrics`.
//!
//! A small registry of our own rather than a metrics framework: the label sets
//! are few and known, and the hot path is a read lock plus atomic adds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Upper bounds (seconds) of latency histogram buckets.
const HTTP_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const PROVIDER_BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0];

#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, secs: f64) {
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// A family of series keyed by their rendered label set.
#[derive(Debug)]
struct Family<T> {
    series: RwLock<BTreeMap<String, Arc<T>>>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Self {
            series: RwLock::default(),
        }
    }
}

impl<T> Family<T> {
    fn get(&self, labels: &str, make: impl FnOnce() -> T) -> Arc<T> {
        if let Some(s) = self.series.read().expect("metrics lock").get(labels) {
            return s.clone();
        }
        self.series
            .write()
            .expect("metrics lock")
            .entry(labels.to_owned())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }
}

/// Gauges read at render time from the dispatcher.
#[derive(Debug, Clone, Default)]
pub struct ProviderGauges {
    pub provider: String,
    pub queued: u64,
    pub in_flight: u64,
    pub limit: u64,
}

/// One route's request counts (by method and status) and latency.
#[derive(Debug)]
struct RouteStats {
    counts: RwLock<Vec<(String, u16, AtomicU64)>>,
    latency: Histogram,
}

/// All of gengate's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// By route template. The request path does no allocation once a
    /// route/method/status has been seen: a read lock and atomic adds.
    http: RwLock<BTreeMap<String, Arc<RouteStats>>>,
    transitions: Family<AtomicU64>,
    provider_latency: Family<Histogram>,
    provider_errors: Family<AtomicU64>,
    callbacks: Family<AtomicU64>,
    /// Tasks this node stopped working on because it no longer held their
    /// lease (it stalled past it, or another node took the task over).
    leases_lost: AtomicU64,
    /// Tasks this node took over from nodes whose lease expired.
    takeovers: AtomicU64,
    /// Writes refused because this node no longer held the task's lease.
    fenced_writes: AtomicU64,
    /// Task creations refused by the per-user rate limit.
    rate_limited: AtomicU64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// One HTTP request, by route template (never the raw path).
    pub fn http(&self, route: &str, method: &str, status: u16, secs: f64) {
        let found = self.http.read().expect("metrics lock").get(route).cloned();
        let stats = found.unwrap_or_else(|| {
            let mut map = self.http.write().expect("metrics lock");
            map.entry(route.to_owned())
                .or_insert_with(|| {
                    Arc::new(RouteStats {
                        counts: RwLock::default(),
                        latency: Histogram::new(&HTTP_BUCKETS),
                    })
                })
                .clone()
        });
        stats.latency.observe(secs);
        let counts = stats.counts.read().expect("metrics lock");
        if let Some((_, _, n)) = counts.iter().find(|(m, s, _)| *s == status && m == method) {
            n.fetch_add(1, Ordering::Relaxed);
            return;
        }
        drop(counts);
        let mut counts = stats.counts.write().expect("metrics lock");
        match counts.iter().find(|(m, s, _)| *s == status && m == method) {
            Some((_, _, n)) => {
                n.fetch_add(1, Ordering::Relaxed);
            }
            None => counts.push((method.to_owned(), status, AtomicU64::new(1))),
        }
    }

    /// One stored lifecycle transition.
    pub fn transition(&self, from: &str, to: &str) {
        self.transitions
            .get(&format!("from=\"{from}\",to=\"{to}\""), || {
                AtomicU64::new(0)
            })
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Time from provider acceptance to a finished result.
    pub fn provider_latency(&self, provider: &str, secs: f64) {
        self.provider_latency
            .get(&format!("provider=\"{}\"", escape(provider)), || {
                Histogram::new(&PROVIDER_BUCKETS)
            })
            .observe(secs);
    }

    /// A failed provider call, by kind (`back_pressure`, `transient`, …).
    pub fn provider_error(&self, provider: &str, kind: &str) {
        self.provider_errors
            .get(
                &format!("provider=\"{}\",kind=\"{kind}\"", escape(provider)),
                || AtomicU64::new(0),
            )
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A provider callback received; `checking` when it names a task we
    /// follow (others are late or repeated).
    pub fn callback(&self, provider: &str, checking: bool) {
        self.callbacks
            .get(
                &format!("provider=\"{}\",followed=\"{checking}\"", escape(provider)),
                || AtomicU64::new(0),
            )
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn leases_lost(&self, n: u64) {
        self.leases_lost.fetch_add(n, Ordering::Relaxed);
    }

    pub fn took_over(&self) {
        self.takeovers.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fenced_write(&self) {
        self.fenced_writes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: &[ProviderGauges], pool: &gengate_store::PoolStats) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let http = self.http.read().expect("metrics lock");
        let _ = writeln!(
            out,
            "# HELP gengate_http_requests_total HTTP requests by route, method and status.\n# TYPE gengate_http_requests_total counter"
        );
        for (route, stats) in http.iter() {
            for (method, status, n) in stats.counts.read().expect("metrics lock").iter() {
                let _ = writeln!(
                    out,
                    "gengate_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {}",
                    escape(route),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        let name = "gengate_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request latency by route.\n# TYPE {name} histogram"
        );
        for (route, stats) in http.iter() {
            stats
                .latency
                .render(&mut out, name, &format!("route=\"{}\"", escape(route)));
        }
        drop(http);
        counter_family(
            &mut out,
            "gengate_task_transitions_total",
            "Stored task state transitions.",
            &self.transitions,
        );
        hist_family(
            &mut out,
            "gengate_provider_task_duration_seconds",
            "Time from provider acceptance to a finished result.",
            &self.provider_latency,
        );
        counter_family(
            &mut out,
            "gengate_provider_errors_total",
            "Failed provider calls by kind.",
            &self.provider_errors,
        );
        counter_family(
            &mut out,
            "gengate_provider_callbacks_total",
            "Provider callbacks received, by whether they named a followed task.",
            &self.callbacks,
        );
        for (name, help, value) in [
            (
                "gengate_leases_lost_total",
                "Tasks this node stopped working on because it lost their lease.",
                &self.leases_lost,
            ),
            (
                "gengate_takeovers_total",
                "Tasks taken over from nodes whose lease expired.",
                &self.takeovers,
            ),
            (
                "gengate_fenced_writes_total",
                "Task writes refused because this node no longer held the lease.",
                &self.fenced_writes,
            ),
            (
                "gengate_rate_limited_total",
                "Task creations refused by the per-user rate limit.",
                &self.rate_limited,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        // The pool must never be the bottleneck silently: its wait time and
        // timeouts are here beside its size.
        for (name, kind, help, value) in [
            (
                "gengate_store_pool_connections",
                "gauge",
                "Open store connections.",
                u64::from(pool.size),
            ),
            (
                "gengate_store_pool_max_connections",
                "gauge",
                "Store connections the pool may open.",
                u64::from(pool.max),
            ),
            (
                "gengate_store_pool_idle_connections",
                "gauge",
                "Open, unused store connections.",
                u64::from(pool.idle),
            ),
            (
                "gengate_store_pool_acquires_total",
                "counter",
                "Store connections handed out.",
                pool.acquires,
            ),
            (
                "gengate_store_pool_wait_seconds_total",
                "counter",
                "Time spent waiting for a store connection.",
                pool.wait_micros_total,
            ),
            (
                "gengate_store_pool_wait_seconds_max",
                "gauge",
                "Longest wait for a store connection.",
                pool.wait_micros_max,
            ),
            (
                "gengate_store_pool_timeouts_total",
                "counter",
                "Waits for a store connection that timed out.",
                pool.timeouts,
            ),
        ] {
            let value = if name.contains("seconds") {
                format!("{}", value as f64 / 1e6)
            } else {
                value.to_string()
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        for (name, help, pick) in [
            (
                "gengate_queue_depth",
                "Tasks queued for a provider.",
                (|g: &ProviderGauges| g.queued) as fn(&ProviderGauges) -> u64,
            ),
            (
                "gengate_in_flight",
                "Tasks submitting or running at a provider.",
                |g| g.in_flight,
            ),
            (
                "gengate_provider_concurrency_limit",
                "Configured concurrency of a provider account.",
                |g| g.limit,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for g in gauges {
                let _ = writeln!(
                    out,
                    "{name}{{provider=\"{}\"}} {}",
                    escape(&g.provider),
                    pick(g)
                );
            }
        }
        out
    }
}

fn counter_family(out: &mut String, name: &str, help: &str, f: &Family<AtomicU64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in f.series.read().expect("metrics lock").iter() {
        let _ = writeln!(out, "{name}{{{labels}}} {}", v.load(Ordering::Relaxed));
    }
}

fn hist_family(out: &mut String, name: &str, help: &str, f: &Family<Histogram>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, h) in f.series.read().expect("metrics lock").iter() {
        h.render(out, name, labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.http("/v1/tasks/{id}", "GET", 200, 0.002);
        m.http("/v1/tasks/{id}", "GET", 200, 0.2);
        m.transition("queued", "submitting");
        let text = m.render(
            &[ProviderGauges {
                provider: "sim".into(),
                queued: 3,
                in_flight: 1,
                limit: 4,
            }],
            &gengate_store::PoolStats {
                acquires: 7,
                wait_micros_total: 1_500_000,
                ..Default::default()
            },
        );
        assert!(text.contains("gengate_store_pool_acquires_total 7"));
        assert!(text.contains("gengate_store_pool_wait_seconds_total 1.5"));
        assert!(text.contains(
            "gengate_http_requests_total{route=\"/v1/tasks/{id}\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "gengate_http_request_duration_seconds_bucket{route=\"/v1/tasks/{id}\",le=\"0.0025\"} 1"
        ));
        assert!(
            text.contains(
                "gengate_http_request_duration_seconds_count{route=\"/v1/tasks/{id}\"} 2"
            )
        );
        assert!(
            text.contains("gengate_task_transitions_total{from=\"queued\",to=\"submitting\"} 1")
        );
        assert!(text.contains("gengate_queue_depth{provider=\"sim\"} 3"));
    }
}
