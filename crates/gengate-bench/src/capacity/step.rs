//! One step of the ramp: running it against the target with the server's
//! CPU and memory sampled, what it measured, and whether that met the SLO.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::options::CapacityOptions;
use super::process::{RssPeak, cpu_seconds};
use crate::collect::Summary;
use crate::report::{ms, thousands};
use crate::scenario::{Scenario, Setup, Target};
use crate::units::Slo;
use crate::{Load, Plan, RunSpec, measure};

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

/// What every step of one measurement shares: where the load goes, how many
/// threads make it, and the server whose CPU and memory are sampled.
pub(super) struct Stepper<'a> {
    pub(super) opts: &'a CapacityOptions,
    pub(super) target: &'a Target,
    pub(super) load_threads: usize,
    /// The server's pid, when known: its CPU time and peak memory are read
    /// around each step.
    pub(super) pid: Option<u32>,
    /// Clock ticks per second, the unit of the CPU times in `/proc/PID/stat`.
    pub(super) ticks: f64,
}

impl Stepper<'_> {
    /// Runs `scenario` with `users` connections for one step, after making
    /// the users it needs, and prints a line about it on stderr.
    ///
    /// # Errors
    /// When the users cannot be made, or the run fails.
    pub(super) fn run(
        &self,
        setup: &mut Setup,
        scenario: Scenario,
        users: usize,
    ) -> anyhow::Result<Step> {
        let (opts, target, pid, ticks) = (self.opts, self.target, self.pid, self.ticks);
        crate::scenario::block_on(
            setup.ensure_users(users.min(1000), scenario == Scenario::GetTask),
        )?;
        let load = Load::Closed {
            think: if scenario == Scenario::Mixed {
                Duration::ZERO
            } else {
                opts.user.think
            },
        };
        let plan = Arc::new(Plan::new(
            scenario,
            target.clone(),
            opts.headers.clone(),
            load,
            setup.users.clone(),
            opts.user.clone(),
        )?);
        let spec = RunSpec {
            addrs: vec![target.addr],
            connections: users,
            threads: self.load_threads,
            load,
            duration: Some(opts.step),
            requests: None,
            timeout: opts.timeout,
            progress: false,
        };
        let cpu_before = pid.and_then(|p| cpu_seconds(p, ticks));
        let peak = pid.map(RssPeak::start);
        let s = measure(&spec, &plan, target)?;
        let rss = peak.map(RssPeak::finish);
        let cpu = match (cpu_before, pid.and_then(|p| cpu_seconds(p, ticks))) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let created = s.operations.get("create").map_or(0, |o| o.requests);
        let step = Step {
            users,
            rps: s.rps,
            latency_ms: s.latency_ms,
            error_rate: s.error_rate(),
            bytes_per_response: s.bytes_per_response,
            creates_per_s: created as f64 / s.duration_s,
            rss_bytes: rss,
            cpu_s: cpu,
            duration_s: s.duration_s,
            requests: s.requests,
            time_to_result_s: s
                .tasks
                .as_ref()
                .filter(|t| t.succeeded > 0)
                .map(|t| t.time_to_result_ms.p50 / 1000.0),
            meets_slo: meets(&opts.slo, &s),
        };
        eprintln!(
            "  {:>6} users  {:>9} req/s  p95 {:>10}  errors {:.2}%  {}",
            users,
            thousands(step.rps),
            ms(step.latency_ms.p95),
            step.error_rate * 100.0,
            if step.meets_slo { "met" } else { "SLO broken" }
        );
        Ok(step)
    }
}
