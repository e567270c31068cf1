//! `gengate capacity`: ramps virtual users until the SLO breaks, measures what
//! the server spends per request, per user and per task, and turns those
//! measurements into the number of users each resource of the planned
//! server carries. The smallest is the binding limit.
//!
//! - [`ramp`] is the search, independent of what a step runs.
//! - [`model`] is pure arithmetic on measured numbers, unit-tested.
//! - [`run`] drives a target (or a gengate it starts itself, optionally
//!   confined to N cores with `taskset`), and [`Report`] renders the answer
//!   as text, Markdown, self-contained HTML with SVG charts, or JSON.
//!
//! Memory and CPU are read from `/proc/PID` of the server, so they need its
//! pid: known when capacity starts the server (`--spawn`), or given with
//! `--server-pid`. Without it those two limits are left out, and said so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::collect::Summary;
use crate::report::{esc, html_page, markdown_to_html, ms, thousands};
use crate::scenario::{HeaderName, HeaderValue, Scenario, Setup, Target, UserOptions};
use crate::units::{ServerSpec, Slo};
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

/// The result of a ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Ramp {
    /// In the order they ran.
    pub steps: Vec<Step>,
    /// The most users that met the SLO (0: not even the first step did).
    pub best: usize,
    /// The fewest users that broke it, if any did.
    pub first_failing: Option<usize>,
    /// True when the ramp hit the user cap without breaking the SLO.
    pub capped: bool,
}

/// Doubles the users from `start` until a step fails the SLO (or `max` is
/// reached), then bisects between the last good and the first bad number
/// until they are within `tolerance` (a share of the good number) or 1.
///
/// # Errors
/// When a step fails to run.
pub fn ramp(
    start: usize,
    max: usize,
    tolerance: f64,
    mut step: impl FnMut(usize) -> anyhow::Result<Step>,
) -> anyhow::Result<Ramp> {
    let mut steps = Vec::new();
    let mut good = 0usize;
    let mut bad: Option<usize> = None;
    let mut users = start.clamp(1, max.max(1));
    loop {
        let s = step(users)?;
        let ok = s.meets_slo;
        steps.push(s);
        if ok {
            good = users;
            if users >= max {
                break;
            }
            users = (users * 2).min(max);
        } else {
            bad = Some(users);
            break;
        }
    }
    if let Some(mut hi) = bad {
        loop {
            let gap = hi - good;
            let enough = (good as f64 * tolerance).max(1.0);
            if gap as f64 <= enough {
                break;
            }
            let mid = good + gap / 2;
            if mid == good || mid == hi {
                break;
            }
            let s = step(mid)?;
            let ok = s.meets_slo;
            steps.push(s);
            if ok {
                good = mid;
            } else {
                hi = mid;
            }
        }
        bad = Some(hi);
    }
    Ok(Ramp {
        steps,
        best: good,
        first_failing: bad,
        capped: bad.is_none(),
    })
}

/// The capacity model: arithmetic on measured numbers, nothing else.
pub mod model {
    /// Responses per second a link carries: bits per second ÷ 8 ÷ bytes per
    /// response (downstream; requests are small and go the other way).
    pub fn link_rps(bandwidth_bps: f64, bytes_per_response: f64) -> f64 {
        if bytes_per_response <= 0.0 {
            return f64::INFINITY;
        }
        bandwidth_bps / 8.0 / bytes_per_response
    }

    /// Tasks per minute a provider account finishes: slots ÷ seconds per task.
    pub fn provider_tasks_per_min(concurrency: f64, latency_s: f64) -> f64 {
        if latency_s <= 0.0 {
            return f64::INFINITY;
        }
        concurrency / latency_s * 60.0
    }

    /// How long the `nth` of users who all create a task at the same moment
    /// waits in the queue before a provider slot is free for it: full rounds
    /// of `concurrency` tasks ahead of it, each taking `latency_s`.
    pub fn queue_wait_s(nth: usize, concurrency: usize, latency_s: f64) -> f64 {
        if nth == 0 || concurrency == 0 {
            return 0.0;
        }
        ((nth - 1) / concurrency) as f64 * latency_s
    }

    /// The `nth` user's time to result: the queue, then the provider.
    pub fn time_to_result_s(nth: usize, concurrency: usize, latency_s: f64) -> f64 {
        queue_wait_s(nth, concurrency, latency_s) + latency_s
    }

    /// Users a resource carries when each user needs `per_user` of what it
    /// delivers `capacity` of (per second).
    pub fn users(capacity: f64, per_user: f64) -> f64 {
        if per_user <= 0.0 {
            return f64::INFINITY;
        }
        capacity / per_user
    }

    /// Users that fit in memory: what is left after the OS, the database and
    /// the server's own baseline, divided by each user's share.
    pub fn memory_users(memory: f64, os: f64, db: f64, base: f64, per_user: f64) -> f64 {
        users((memory - os - db - base).max(0.0), per_user)
    }

    /// Requests per second `cpus` cores serve when one request costs
    /// `cpu_s_per_request` seconds of CPU.
    pub fn cpu_rps(cpus: f64, cpu_s_per_request: f64) -> f64 {
        users(cpus, cpu_s_per_request)
    }

    /// Least-squares slope of y over x (`None` with fewer than two distinct x).
    pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
        let n = points.len() as f64;
        if points.len() < 2 {
            return None;
        }
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        if sxx == 0.0 {
            return None;
        }
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        Some(sxy / sxx)
    }
}

/// A provider account as the target reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderMeasure {
    pub name: String,
    pub concurrency: usize,
    /// Observed seconds per task (the target's own average), else the
    /// bench's median time to result.
    pub latency_s: f64,
    /// Whether the mixed scenario's model runs on it.
    pub used: bool,
}

/// Everything measured that the model needs.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// Cores the server had during the ramp (pinned, or the machine's).
    pub cpus: f64,
    pub per_user_rps: f64,
    pub per_user_creates_per_s: f64,
    pub bytes_per_response: f64,
    pub cpu_s_per_request: Option<f64>,
    pub idle_rss_bytes: Option<u64>,
    /// Slope of the server's RSS over users, across the ramp.
    pub rss_per_user_bytes: Option<f64>,
    /// RSS per idle keep-alive connection (probe).
    pub rss_per_connection_bytes: Option<f64>,
    /// RSS per queued task (probe).
    pub rss_per_task_bytes: Option<f64>,
    /// Durable creates per second reached (probe, else the ramp's best).
    pub store_writes_per_s: f64,
    /// On-disk store bytes per task (spawned servers only).
    pub store_bytes_per_task: Option<f64>,
    pub providers: Vec<ProviderMeasure>,
    /// The most users that met the SLO on this box, and whether the ramp
    /// stopped at its cap before the SLO broke.
    pub slo_users: usize,
    pub slo_capped: bool,
}

/// One resource and the users it carries on the planned server.
#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    pub name: String,
    /// Users it carries (infinite: not a limit at all).
    pub users: f64,
    /// How the number was computed, with the measured inputs.
    pub basis: String,
}

/// The model evaluated for one server.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub limits: Vec<Limit>,
    /// Index into `limits` of the smallest.
    pub binding: usize,
}

impl Evaluation {
    pub fn users(&self) -> f64 {
        self.limits.get(self.binding).map_or(0.0, |l| l.users)
    }

    pub fn binding_name(&self) -> &str {
        self.limits
            .get(self.binding)
            .map_or("none", |l| l.name.as_str())
    }
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / f64::from(1u32 << 20))
}

fn kib(b: f64) -> String {
    format!("{:.1} KiB", b / 1024.0)
}

/// Applies the model to a server: every limit in users.
pub fn evaluate(m: &Measured, server: &ServerSpec, provider_scale: f64, nodes: f64) -> Evaluation {
    use model::*;
    let mut limits = Vec::new();
    let per_user = m.per_user_rps.max(1e-9);
    if let Some(cpu) = m.cpu_s_per_request {
        let rps = cpu_rps(server.cpus * nodes, cpu);
        limits.push(Limit {
            name: "CPU".into(),
            users: users(rps, per_user),
            basis: format!(
                "{:.0} µs of CPU per request (measured) → {} req/s on {} cores ÷ {:.3} req/s per user",
                cpu * 1e6,
                thousands(rps),
                server.cpus * nodes,
                m.per_user_rps
            ),
        });
    }
    if !m.slo_capped && m.slo_users > 0 {
        let scaled = m.slo_users as f64 * server.cpus * nodes / m.cpus;
        limits.push(Limit {
            name: "latency SLO".into(),
            users: scaled,
            basis: format!(
                "{} users met the SLO on {} core(s) here, scaled to {} cores",
                m.slo_users,
                m.cpus,
                server.cpus * nodes
            ),
        });
    }
    if let (Some(base), Some(per)) = (m.idle_rss_bytes, m.rss_per_user_bytes.filter(|p| *p > 0.0)) {
        let u = memory_users(
            server.memory_bytes as f64 * nodes,
            server.os_bytes as f64 * nodes,
            server.db_bytes as f64,
            base as f64 * nodes,
            per,
        );
        limits.push(Limit {
            name: "memory".into(),
            users: u,
            basis: format!(
                "{} RAM − {} OS − {} database − {} gengate at rest, ÷ {} per user (measured)",
                mib(server.memory_bytes as f64 * nodes),
                mib(server.os_bytes as f64 * nodes),
                mib(server.db_bytes as f64),
                mib(base as f64 * nodes),
                kib(per)
            ),
        });
    }
    let link = link_rps(server.bandwidth_bps * nodes, m.bytes_per_response);
    limits.push(Limit {
        name: "bandwidth".into(),
        users: users(link, per_user),
        basis: format!(
            "{:.1} Mbps ÷ {:.0} B per response (measured mix) = {} req/s ÷ {:.3} req/s per user",
            server.bandwidth_bps * nodes / 1e6,
            m.bytes_per_response,
            thousands(link),
            m.per_user_rps
        ),
    });
    if m.per_user_creates_per_s > 0.0 {
        limits.push(Limit {
            name: "store writes".into(),
            users: users(m.store_writes_per_s, m.per_user_creates_per_s),
            basis: format!(
                "{} durable creates/s reached ÷ {:.4} creates/s per user",
                thousands(m.store_writes_per_s),
                m.per_user_creates_per_s
            ),
        });
        for p in m.providers.iter().filter(|p| p.used) {
            let slots = p.concurrency as f64 * provider_scale;
            let per_min = provider_tasks_per_min(slots, p.latency_s);
            limits.push(Limit {
                name: format!("provider {}", p.name),
                users: users(per_min / 60.0, m.per_user_creates_per_s),
                basis: format!(
                    "{slots} slots ÷ {:.1} s per task = {:.1} tasks/min ÷ {:.2} tasks/min per user",
                    p.latency_s,
                    per_min,
                    m.per_user_creates_per_s * 60.0
                ),
            });
        }
    }
    let binding = limits
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.users.total_cmp(&b.1.users))
        .map_or(0, |(i, _)| i);
    Evaluation { limits, binding }
}

/// What one upgrade would change.
#[derive(Debug, Clone, Serialize)]
pub struct Upgrade {
    pub what: String,
    pub users: f64,
    pub binding: String,
    /// The limit that would bind next, and at how many users.
    pub next: Option<(String, f64)>,
}

/// Each upgrade in turn, evaluated with the same model.
pub fn upgrades(m: &Measured, server: &ServerSpec) -> Vec<Upgrade> {
    let mut out = Vec::new();
    let mut eval = |what: String, s: &ServerSpec, provider: f64, nodes: f64| {
        let e = evaluate(m, s, provider, nodes);
        let next = e
            .limits
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != e.binding)
            .min_by(|a, b| a.1.users.total_cmp(&b.1.users))
            .map(|(_, l)| (l.name.clone(), l.users));
        out.push(Upgrade {
            what,
            users: e.users(),
            binding: e.binding_name().to_owned(),
            next,
        });
    };
    eval("as stated".into(), server, 1.0, 1.0);
    let mut s = server.clone();
    s.cpus *= 2.0;
    eval(format!("{} cores", s.cpus), &s, 1.0, 1.0);
    let mut s = server.clone();
    s.memory_bytes *= 2;
    eval(
        format!("{} memory", mib(s.memory_bytes as f64)),
        &s,
        1.0,
        1.0,
    );
    let mut s = server.clone();
    s.bandwidth_bps *= 2.0;
    eval(format!("{:.0} Mbps", s.bandwidth_bps / 1e6), &s, 1.0, 1.0);
    eval("2× provider concurrency".into(), server, 2.0, 1.0);
    eval(
        "a second node (shared store and provider accounts)".into(),
        server,
        1.0,
        2.0,
    );
    out
}

/// The answer for the number of users asked about.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub users: usize,
    pub fits: bool,
    /// Limits that `users` exceeds.
    pub exceeded: Vec<String>,
    /// Requests per second those users make.
    pub rps: f64,
    /// If they all create a task at the same moment: the last one's queue
    /// wait and time to result, per provider used.
    pub burst: Vec<(String, f64, f64)>,
}

pub fn answer(m: &Measured, e: &Evaluation, n: usize) -> Answer {
    let exceeded: Vec<String> = e
        .limits
        .iter()
        .filter(|l| (n as f64) > l.users)
        .map(|l| l.name.clone())
        .collect();
    Answer {
        users: n,
        fits: exceeded.is_empty(),
        exceeded,
        rps: n as f64 * m.per_user_rps,
        burst: m
            .providers
            .iter()
            .filter(|p| p.used)
            .map(|p| {
                (
                    p.name.clone(),
                    model::queue_wait_s(n, p.concurrency, p.latency_s),
                    model::time_to_result_s(n, p.concurrency, p.latency_s),
                )
            })
            .collect(),
    }
}

/// The whole capacity report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub server: ServerDescription,
    pub slo: String,
    pub pinned_cpus: Option<usize>,
    pub scenario: String,
    /// Think time and mix of the virtual users.
    pub users_behave: String,
    pub ramps: BTreeMap<String, Ramp>,
    pub measured: Measured,
    pub evaluation: Evaluation,
    pub answer: Answer,
    pub upgrades: Vec<Upgrade>,
    pub notes: Vec<String>,
}

/// The stated server, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct ServerDescription {
    pub cpus: f64,
    pub memory_bytes: u64,
    pub bandwidth_bps: f64,
    pub os_bytes: u64,
    pub db_bytes: u64,
}

impl From<&ServerSpec> for ServerDescription {
    fn from(s: &ServerSpec) -> Self {
        ServerDescription {
            cpus: s.cpus,
            memory_bytes: s.memory_bytes,
            bandwidth_bps: s.bandwidth_bps,
            os_bytes: s.os_bytes,
            db_bytes: s.db_bytes,
        }
    }
}

fn users_text(u: f64) -> String {
    if u.is_infinite() {
        "unbounded".into()
    } else {
        thousands(u.floor())
    }
}

fn next_text(next: Option<&(String, f64)>) -> String {
    next.map_or_else(|| "-".into(), |(n, v)| format!("{n} at {}", users_text(*v)))
}

impl Report {
    fn server_text(&self) -> String {
        format!(
            "{} cores, {} RAM ({} for the OS, {} for the database), {:.1} Mbps",
            self.server.cpus,
            mib(self.server.memory_bytes as f64),
            mib(self.server.os_bytes as f64),
            mib(self.server.db_bytes as f64),
            self.server.bandwidth_bps / 1e6
        )
    }

    /// The report in Markdown (the HTML report carries the same text plus charts).
    pub fn markdown_body(&self, charts: bool) -> String {
        let mut o = String::new();
        let e = &self.evaluation;
        let a = &self.answer;
        let _ = writeln!(
            o,
            "Target `{}`; planned server: {}; SLO {}.",
            self.target,
            self.server_text(),
            self.slo
        );
        if let Some(n) = self.pinned_cpus {
            let _ = writeln!(
                o,
                "\nThe server was confined to {n} core(s) during the measurement (a rehearsal of a small server)."
            );
        }
        let _ = writeln!(o, "\n## {} users at once?\n", a.users);
        let verdict = if a.fits {
            format!(
                "**Yes.** {} users fit; the binding limit is **{}** at about {} users.",
                a.users,
                e.binding_name(),
                users_text(e.users())
            )
        } else {
            format!(
                "**No.** {} users exceed: {}. The binding limit is **{}** at about {} users.",
                a.users,
                a.exceeded.join(", "),
                e.binding_name(),
                users_text(e.users())
            )
        };
        let _ = writeln!(o, "{verdict}");
        let _ = writeln!(
            o,
            "\nThey make about {} req/s ({}).",
            thousands(a.rps),
            self.users_behave
        );
        for (p, wait, ttr) in &a.burst {
            let _ = writeln!(
                o,
                "\nIf all {} create a task at the same moment, the last one waits {:.0} s in the queue for provider `{p}` and has its result after {:.0} s.",
                a.users, wait, ttr
            );
        }
        let _ = writeln!(o, "\n## Limits\n\n| limit | users | from |\n|---|---:|---|");
        for (i, l) in e.limits.iter().enumerate() {
            let name = if i == e.binding {
                format!("**{}** (binding)", l.name)
            } else {
                l.name.clone()
            };
            let _ = writeln!(o, "| {name} | {} | {} |", users_text(l.users), l.basis);
        }
        let _ = writeln!(
            o,
            "\n## Upgrades\n\n| upgrade | users | bound by | next limit |\n|---|---:|---|---|"
        );
        for u in &self.upgrades {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                u.what,
                users_text(u.users),
                u.binding,
                next_text(u.next.as_ref())
            );
        }
        let m = &self.measured;
        let _ = writeln!(o, "\n## Measured\n\n| quantity | value |\n|---|---:|");
        let _ = writeln!(o, "| requests per user | {:.3} req/s |", m.per_user_rps);
        let _ = writeln!(
            o,
            "| tasks created per user | {:.2} per minute |",
            m.per_user_creates_per_s * 60.0
        );
        let _ = writeln!(
            o,
            "| bytes per response (mix, headers included) | {:.0} B |",
            m.bytes_per_response
        );
        if let Some(c) = m.cpu_s_per_request {
            let _ = writeln!(o, "| server CPU per request | {:.0} µs |", c * 1e6);
        }
        if let Some(r) = m.idle_rss_bytes {
            let _ = writeln!(o, "| server RSS at rest | {} |", mib(r as f64));
        }
        if let Some(r) = m.rss_per_user_bytes {
            let _ = writeln!(
                o,
                "| RSS per virtual user (slope over the ramp) | {} |",
                kib(r)
            );
        }
        if let Some(r) = m.rss_per_connection_bytes {
            let _ = writeln!(o, "| RSS per idle keep-alive connection | {} |", kib(r));
        }
        if let Some(r) = m.rss_per_task_bytes {
            let _ = writeln!(o, "| RSS per queued task | {} |", kib(r));
        }
        let _ = writeln!(
            o,
            "| durable creates reached | {} /s |",
            thousands(m.store_writes_per_s)
        );
        if let Some(b) = m.store_bytes_per_task {
            let _ = writeln!(o, "| store on disk per task | {} |", kib(b));
        }
        for p in &m.providers {
            let _ = writeln!(
                o,
                "| provider `{}` | {} slots, {:.1} s per task{} |",
                p.name,
                p.concurrency,
                p.latency_s,
                if p.used { "" } else { " (not used by the mix)" }
            );
        }
        for (scenario, r) in &self.ramps {
            let best = if r.capped {
                format!("at least {} (the ramp's cap; the SLO never broke)", r.best)
            } else {
                format!(
                    "{} (first failing: {})",
                    r.best,
                    r.first_failing.unwrap_or(0)
                )
            };
            let _ = writeln!(
                o,
                "\n## Ramp: {scenario}\n\nMost concurrent users meeting the SLO here: **{best}**.\n"
            );
            if charts {
                let _ = writeln!(o, "{}", latency_chart(r, self.slo_ms(), &e.limits));
                let _ = writeln!(o, "{}", throughput_chart(r));
            }
            let _ = writeln!(
                o,
                "| users | req/s | p50 | p95 | p99 | errors | B/resp | RSS | CPU s | SLO |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
            );
            let mut steps = r.steps.clone();
            steps.sort_by_key(|s| s.users);
            for s in &steps {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {:.2}% | {:.0} | {} | {} | {} |",
                    s.users,
                    thousands(s.rps),
                    ms(s.latency_ms.p50),
                    ms(s.latency_ms.p95),
                    ms(s.latency_ms.p99),
                    s.error_rate * 100.0,
                    s.bytes_per_response,
                    s.rss_bytes.map_or("-".into(), |b| mib(b as f64)),
                    s.cpu_s.map_or("-".into(), |c| format!("{c:.2}")),
                    if s.meets_slo { "met" } else { "**broken**" }
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o, "\n## Notes\n");
            for n in &self.notes {
                let _ = writeln!(o, "- {n}");
            }
        }
        o
    }

    fn slo_ms(&self) -> Option<f64> {
        let (_, v) = self.slo.split_once('=')?;
        let v = v.split(',').next()?;
        gengate_core::units::parse_duration(v)
            .ok()
            .map(|d| d.as_secs_f64() * 1000.0)
    }

    /// # Errors
    /// When writing fails.
    pub fn markdown(&self, mut w: impl io::Write) -> io::Result<()> {
        writeln!(w, "# gengate capacity\n")?;
        w.write_all(self.markdown_body(false).as_bytes())
    }

    /// Self-contained HTML: inline style and SVG, no external assets.
    ///
    /// # Errors
    /// When writing fails.
    pub fn html(&self, mut w: impl io::Write) -> io::Result<()> {
        let body = format!(
            "<h1>gengate capacity</h1>\n{}",
            markdown_to_html(&self.markdown_body(true))
        );
        w.write_all(html_page("gengate capacity", &body).as_bytes())
    }

    /// # Errors
    /// When writing fails.
    pub fn json(&self, mut w: impl io::Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut w, self)?;
        writeln!(w)
    }

    /// The short answer printed on the terminal.
    ///
    /// # Errors
    /// When writing fails.
    pub fn terminal(&self, mut w: impl io::Write) -> io::Result<()> {
        let e = &self.evaluation;
        let a = &self.answer;
        writeln!(
            w,
            "planned server: {}; SLO {}",
            self.server_text(),
            self.slo
        )?;
        for (scenario, r) in &self.ramps {
            writeln!(
                w,
                "{scenario}: {} users met the SLO here{}",
                r.best,
                if r.capped {
                    " (the ramp's cap; it never broke)"
                } else {
                    ""
                }
            )?;
        }
        writeln!(w, "limits on the planned server (users):")?;
        for (i, l) in e.limits.iter().enumerate() {
            writeln!(
                w,
                "  {:<20} {:>10}  {}{}",
                l.name,
                users_text(l.users),
                l.basis,
                if i == e.binding { "  <- binding" } else { "" }
            )?;
        }
        writeln!(
            w,
            "{} users at once: {} (about {} req/s){}",
            a.users,
            if a.fits { "yes" } else { "no" },
            thousands(a.rps),
            if a.fits {
                String::new()
            } else {
                format!("; exceeds {}", a.exceeded.join(", "))
            }
        )?;
        for (p, wait, ttr) in &a.burst {
            writeln!(
                w,
                "  all {} creating at once on {p}: the last waits {wait:.0} s, result after {ttr:.0} s",
                a.users
            )?;
        }
        writeln!(w, "upgrades:")?;
        for u in &self.upgrades {
            writeln!(
                w,
                "  {:<52} {:>10} users  (bound by {}; next: {})",
                u.what,
                users_text(u.users),
                u.binding,
                next_text(u.next.as_ref())
            )?;
        }
        Ok(())
    }
}

/// A named, coloured line of (x, y) points.
pub type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart in SVG: series of (x, y) points, and vertical marker lines.
pub fn svg_chart(
    title: &str,
    y_label: &str,
    series: &[Series<'_>],
    hlines: &[(String, f64)],
    vlines: &[(String, f64)],
) -> String {
    let (w, h, l, r, t, b) = (720.0, 300.0, 70.0, 20.0, 30.0, 40.0);
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .collect();
    let x_max = xs.iter().copied().fold(1.0f64, f64::max);
    let x_max_all = vlines
        .iter()
        .map(|v| v.1)
        .filter(|v| *v <= x_max * 1.5)
        .fold(x_max, f64::max);
    let y_max = ys
        .iter()
        .copied()
        .chain(hlines.iter().map(|h| h.1))
        .fold(1e-9f64, f64::max)
        * 1.1;
    let px = |x: f64| l + (x / x_max_all) * (w - l - r);
    let py = |y: f64| h - b - (y / y_max) * (h - t - b);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-size=\"11\" font-family=\"sans-serif\">"
    );
    let _ = write!(
        s,
        "<text x=\"{l}\" y=\"18\" font-size=\"13\">{}</text>",
        esc(title)
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>",
        h - b,
        w - r,
        h - b
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"#888\"/>",
        h - b
    );
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            l - 4.0,
            py(y) + 4.0,
            if y_max >= 20.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.2}")
            }
        );
        let x = x_max_all * f64::from(i) / 4.0;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{:.0}</text>",
            px(x),
            h - b + 14.0,
            x
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">users</text>",
        (l + w - r) / 2.0,
        h - 6.0
    );
    let _ = write!(
        s,
        "<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">{}</text>",
        h / 2.0,
        h / 2.0,
        esc(y_label)
    );
    for (name, y) in hlines {
        let _ = write!(
            s,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#c00\" stroke-dasharray=\"4 3\"/><text x=\"{}\" y=\"{:.1}\" fill=\"#c00\">{}</text>",
            w - r,
            py(*y),
            py(*y),
            l + 4.0,
            py(*y) - 3.0,
            esc(name)
        );
    }
    for (i, (name, x)) in vlines.iter().enumerate() {
        if *x > x_max_all || !x.is_finite() {
            continue;
        }
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{t}\" y2=\"{}\" stroke=\"#d60\" stroke-dasharray=\"2 3\"/><text x=\"{:.1}\" y=\"{}\" fill=\"#d60\">{}</text>",
            px(*x),
            px(*x),
            h - b,
            px(*x) + 3.0,
            t + 12.0 + 12.0 * i as f64,
            esc(name)
        );
    }
    for (_, color, points) in series {
        let mut pts = points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for (x, y) in &pts {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"/>",
                px(*x),
                py(*y)
            );
        }
    }
    for (i, (name, color, _)) in series.iter().enumerate() {
        // A legend in the top-right corner, one line per series.
        let y = t + 12.0 + 14.0 * i as f64;
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"3\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>",
            w - r - 70.0,
            y - 4.0,
            w - r - 56.0,
            y,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

fn latency_chart(r: &Ramp, slo_ms: Option<f64>, limits: &[Limit]) -> String {
    let pick = |f: fn(&Step) -> f64| {
        r.steps
            .iter()
            .map(|s| (s.users as f64, f(s)))
            .collect::<Vec<_>>()
    };
    let h: Vec<(String, f64)> = slo_ms.map(|v| ("SLO".to_owned(), v)).into_iter().collect();
    let v: Vec<(String, f64)> = limits.iter().map(|l| (l.name.clone(), l.users)).collect();
    svg_chart(
        "latency percentiles vs users (limits of the planned server as lines)",
        "ms",
        &[
            ("p50", "#27c", pick(|s| s.latency_ms.p50)),
            ("p95", "#e80", pick(|s| s.latency_ms.p95)),
            ("p99", "#c22", pick(|s| s.latency_ms.p99)),
        ],
        &h,
        &v,
    )
}

fn throughput_chart(r: &Ramp) -> String {
    let pts = r
        .steps
        .iter()
        .map(|s| (s.users as f64, s.rps))
        .collect::<Vec<_>>();
    svg_chart(
        "throughput vs users",
        "req/s",
        &[("req/s", "#2a2", pts)],
        &[],
        &[],
    )
}

/// What `gengate capacity` is told.
#[derive(Debug, Clone)]
pub struct CapacityOptions {
    /// An existing server, or `None` to start one (`spawn` must be set).
    pub target: Option<String>,
    /// Start a gengate and a mock provider to measure (`--spawn`).
    pub spawn: Option<SpawnOptions>,
    pub server: ServerSpec,
    pub slo: Slo,
    pub slo_text: String,
    pub pin_cpus: Option<usize>,
    pub server_pid: Option<u32>,
    /// The number of users the question is about.
    pub users: usize,
    pub start_users: usize,
    pub max_users: usize,
    pub step: Duration,
    pub tolerance: f64,
    pub scenarios: Vec<Scenario>,
    pub user: UserOptions,
    pub admin_key: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub threads: Option<usize>,
    pub timeout: Duration,
    /// Measure RSS per connection and per queued task, and the store's
    /// write rate, after the ramp.
    pub probes: bool,
}

/// The server under test when capacity starts it, and the mock provider it
/// calls over HTTP (so the simulator's rendering is not billed to the
/// server, as a real provider's work is not): both killed on drop.
struct Spawned {
    child: Child,
    provider: Option<Child>,
    dir: PathBuf,
    url: String,
    admin_key: Option<String>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for c in [Some(&mut self.child), self.provider.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cpu_list(from: usize, to: usize) -> String {
    if from + 1 == to {
        from.to_string()
    } else {
        format!("{from}-{}", to - 1)
    }
}

/// How the spawned server's provider account behaves.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// The gengate binary.
    pub exe: PathBuf,
    /// Tasks in flight the account allows.
    pub provider_concurrency: u32,
    /// Seconds a task takes at the provider: `2s..6s`.
    pub provider_latency: String,
}

/// Starts `exe ARGS…` (under `taskset -c CPUS` when given) and returns it
/// with the URL it prints and an admin key if it prints one.
fn start(
    exe: &std::path::Path,
    args: &[&std::ffi::OsStr],
    cpus: Option<&str>,
    quiet: bool,
) -> anyhow::Result<(Child, String, Option<String>)> {
    let mut cmd = match cpus {
        Some(list) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(list).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        });
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "starting {}{}",
            exe.display(),
            if cpus.is_some() { " under taskset" } else { "" }
        )
    })?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut key = None;
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            bail!("{} did not say where it listens within 30 s", exe.display());
        };
        if let Some(k) = line.split_whitespace().find(|w| w.starts_with("gg_")) {
            key = Some(k.to_owned());
        }
        if let Some(at) = line.find("http://") {
            return Ok((child, line[at..].trim().to_owned(), key));
        }
    }
}

fn spawn_server(o: &SpawnOptions, pin: Option<usize>, ncpu: usize) -> anyhow::Result<Spawned> {
    let dir = std::env::temp_dir().join(format!("gengate-capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let others = pin.filter(|n| *n < ncpu).map(|n| cpu_list(n, ncpu));
    let concurrency = o.provider_concurrency.to_string();
    let mock_slots = (o.provider_concurrency * 2).to_string();
    let (provider, provider_url, _) = start(
        &o.exe,
        &[
            "mock-provider",
            "--kind",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--latency",
            &o.provider_latency,
            "--concurrency",
            &mock_slots,
        ]
        .map(std::ffi::OsStr::new),
        others.as_deref(),
        true,
    )?;
    let cfg = dir.join("gengate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\ndata_dir = \"{}\"\n[log]\nlevel = \"warn\"\n[providers.sim]\nkind = \"sim\"\nconcurrency = {concurrency}\nbase_url = \"{provider_url}\"\n",
            dir.join("data").display()
        ),
    )?;
    let mut spawned = Spawned {
        child: provider,
        provider: None,
        dir,
        url: String::new(),
        admin_key: None,
    };
    let (child, url, key) = start(
        &o.exe,
        &[
            std::ffi::OsStr::new("serve"),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--config".as_ref(),
            cfg.as_os_str(),
        ],
        pin.map(|n| cpu_list(0, n)).as_deref(),
        false,
    )?;
    // The server is the child measured; the mock rides along.
    spawned.provider = Some(std::mem::replace(&mut spawned.child, child));
    spawned.url = url;
    spawned.admin_key = key;
    Ok(spawned)
}

fn pin_pid(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} {pid} failed");
    }
    Ok(())
}

/// Resident memory of a process (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU time a process has used (user + system), in seconds.
pub fn cpu_seconds(pid: u32, ticks: f64) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// Samples a process's RSS in the background and keeps the largest.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(r) = rss_bytes(pid) {
                        peak.fetch_max(r, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        RssPeak {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Runs the whole capacity measurement and builds the report. Progress goes
/// to stderr.
///
/// # Errors
/// When the server cannot be started, pinned or prepared, or a step fails.
pub fn run(opts: &CapacityOptions) -> anyhow::Result<Report> {
    let mut notes = Vec::new();
    let ncpu = crate::default_threads();
    if let Some(n) = opts.pin_cpus
        && n > ncpu
    {
        bail!("--pin-cpus {n}: this machine has {ncpu} cores");
    }
    let spawned = match &opts.spawn {
        Some(o) => Some(spawn_server(o, opts.pin_cpus, ncpu)?),
        None => None,
    };
    let url = match (&spawned, &opts.target) {
        (Some(s), _) => s.url.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => bail!("give --target URL, or --spawn to start a gengate to measure"),
    };
    let target = Target::parse(&url)?;
    let pid = spawned.as_ref().map(|s| s.child.id()).or(opts.server_pid);
    let pinned = match (opts.pin_cpus, pid) {
        (Some(n), Some(pid)) => {
            if spawned.is_none() {
                pin_pid(pid, &cpu_list(0, n))?;
            }
            if n < ncpu {
                // The load generator takes the other cores, so it does not
                // compete with the server it measures.
                pin_pid(std::process::id(), &cpu_list(n, ncpu))?;
            } else {
                notes.push("the load generator shared the server's cores".into());
            }
            Some(n)
        }
        (Some(_), None) => {
            bail!("--pin-cpus needs the server's pid: use --spawn, or --server-pid PID")
        }
        (None, _) => None,
    };
    let measured_cpus = pinned.map_or(ncpu as f64, |n| n as f64);
    let load_threads = opts
        .threads
        .unwrap_or_else(|| pinned.map_or(ncpu, |n| ncpu.saturating_sub(n).max(1)));
    if pid.is_none() {
        notes.push(
            "no server pid (--spawn or --server-pid): CPU and memory were not measured".into(),
        );
    }
    let admin_key = opts
        .admin_key
        .clone()
        .or_else(|| spawned.as_ref().and_then(|s| s.admin_key.clone()))
        .or_else(|| crate::scenario::bearer_in(&opts.headers));
    let mut setup = Setup::new(&target, admin_key.clone(), &opts.user.model);
    if !crate::scenario::block_on(async { Ok(setup.is_gengate().await) })? {
        bail!("{url} does not answer like a gengate (GET /healthz and /v1/models)");
    }
    if admin_key.is_none() {
        bail!("capacity makes users through the admin API: give --admin-key (or use --spawn)");
    }
    let ticks = clock_ticks();
    // Let the server settle before its memory at rest is read.
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss = pid.and_then(rss_bytes);
    // Before the ramp: afterwards the allocator would hand the probe memory
    // the ramp's connections freed, and the growth would read as nothing.
    let rss_per_connection = match pid {
        Some(pid) if opts.probes => probe_connections(&target, pid, 1000).ok(),
        _ => None,
    };
    let mut ramps = BTreeMap::new();
    for &scenario in &opts.scenarios {
        eprintln!(
            "ramping {scenario}: steps of {:?} from {} users, SLO {}",
            opts.step, opts.start_users, opts.slo_text
        );
        let r = ramp(opts.start_users, opts.max_users, opts.tolerance, |users| {
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
                threads: load_threads,
                load,
                duration: Some(opts.step),
                requests: None,
                timeout: opts.timeout,
                progress: false,
            };
            let cpu_before = pid.and_then(|p| cpu_seconds(p, ticks));
            let peak = pid.map(RssPeak::start);
            let s = measure(&spec, &plan, &target)?;
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
        })?;
        ramps.insert(scenario.name().to_owned(), r);
    }
    let main = ramps
        .get("mixed")
        .or_else(|| ramps.values().next())
        .context("no scenario ramped")?
        .clone();

    // Per-user rates from the steps that met the SLO (unsaturated).
    let good: Vec<&Step> = main.steps.iter().filter(|s| s.meets_slo).collect();
    let basis: Vec<&Step> = if good.is_empty() {
        main.steps.iter().collect()
    } else {
        good
    };
    let per_user_rps =
        basis.iter().map(|s| s.rps / s.users as f64).sum::<f64>() / basis.len() as f64;
    let per_user_creates = basis
        .iter()
        .map(|s| s.creates_per_s / s.users as f64)
        .sum::<f64>()
        / basis.len() as f64;
    let biggest = basis.iter().max_by_key(|s| s.users).copied();
    let bytes_per_response = biggest.map_or(0.0, |s| s.bytes_per_response);
    let (cpu_total, req_total) = main
        .steps
        .iter()
        .filter_map(|s| s.cpu_s.map(|c| (c, s.requests)))
        .fold((0.0, 0u64), |a, (c, r)| (a.0 + c, a.1 + r));
    let cpu_s_per_request =
        (req_total > 0 && cpu_total > 0.0).then(|| cpu_total / req_total as f64);
    let rss_points: Vec<(f64, f64)> = main
        .steps
        .iter()
        .filter_map(|s| s.rss_bytes.map(|r| (s.users as f64, r as f64)))
        .collect();
    let rss_per_user = model::slope(&rss_points).map(|s| s.max(0.0));
    let mut store_writes = main
        .steps
        .iter()
        .map(|s| s.creates_per_s)
        .fold(0.0, f64::max);

    // The providers: their limits, and the latency they showed.
    let stats = crate::scenario::block_on(setup.admin_stats())?;
    let models = crate::scenario::block_on(async { Ok(setup.models().await) })?;
    let used_provider = models
        .iter()
        .find(|(m, _)| *m == opts.user.model)
        .map(|(_, p)| p.clone());
    // When the target has observed no latency yet, the bench's own median
    // time to result at the lightest step (the least queueing) stands in.
    let ttr_median = main
        .steps
        .iter()
        .filter(|s| s.time_to_result_s.is_some())
        .min_by_key(|s| s.users)
        .and_then(|s| s.time_to_result_s);
    let providers: Vec<ProviderMeasure> = stats["providers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let name = p["provider"].as_str()?.to_owned();
                    Some(ProviderMeasure {
                        used: used_provider.as_deref() == Some(name.as_str()),
                        concurrency: p["concurrency_limit"].as_u64()? as usize,
                        latency_s: p["latency_seconds"].as_f64().or(ttr_median)?,
                        name,
                    })
                })
                .collect()
        })
        .unwrap_or_default();

    let mut rss_per_task = None;
    let mut store_bytes_per_task = None;
    if opts.probes {
        eprintln!(
            "probing the store: durable creates for {:?}",
            opts.step.min(Duration::from_secs(5))
        );
        let before = pid.and_then(rss_bytes);
        let plan = Arc::new(Plan::new(
            Scenario::Create,
            target.clone(),
            opts.headers.clone(),
            Load::Closed {
                think: Duration::ZERO,
            },
            setup.users.iter().take(32).cloned().collect(),
            opts.user.clone(),
        )?);
        let spec = RunSpec {
            addrs: vec![target.addr],
            connections: 32,
            threads: load_threads,
            load: Load::Closed {
                think: Duration::ZERO,
            },
            duration: Some(opts.step.min(Duration::from_secs(5))),
            requests: None,
            timeout: opts.timeout,
            progress: false,
        };
        let s = measure(&spec, &plan, &target)?;
        let accepted = s.status_counts.get("202").copied().unwrap_or(0);
        store_writes = store_writes.max(accepted as f64 / s.duration_s);
        eprintln!("  {} creates/s", thousands(accepted as f64 / s.duration_s));
        std::thread::sleep(Duration::from_millis(500));
        if let (Some(b), Some(a)) = (before, pid.and_then(rss_bytes))
            && accepted > 0
        {
            rss_per_task = Some((a as f64 - b as f64).max(0.0) / accepted as f64);
        }
        if let Some(sp) = &spawned {
            let db: u64 = ["gengate.db", "gengate.db-wal"]
                .iter()
                .filter_map(|f| std::fs::metadata(sp.dir.join("data").join(f)).ok())
                .map(|m| m.len())
                .sum();
            let total: u64 = crate::scenario::block_on(setup.admin_stats())?["tasks"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c["count"].as_u64()).sum())
                .unwrap_or(0);
            if total > 0 {
                store_bytes_per_task = Some(db as f64 / total as f64);
            }
        }
        notes.push(format!(
            "the store probe's {accepted} creates stayed queued on the throwaway server; its memory and disk per task come from them"
        ));
    } else {
        notes.push("the store's write rate is the highest the ramp reached: the create burst that finds the store's own limit runs only on a server capacity starts itself (--spawn), never on a target whose tasks would reach real providers".into());
    }

    let measured = Measured {
        cpus: measured_cpus,
        per_user_rps,
        per_user_creates_per_s: per_user_creates,
        bytes_per_response,
        cpu_s_per_request,
        idle_rss_bytes: idle_rss,
        rss_per_user_bytes: rss_per_user,
        rss_per_connection_bytes: rss_per_connection,
        rss_per_task_bytes: rss_per_task,
        store_writes_per_s: store_writes,
        store_bytes_per_task,
        providers,
        slo_users: main.best,
        slo_capped: main.capped,
    };
    notes.push("CPU scales with cores in the model (linear); the measured CPU time per request includes everything the server did meanwhile (dispatcher, provider polling)".into());
    let evaluation = evaluate(&measured, &opts.server, 1.0, 1.0);
    let answer = answer(&measured, &evaluation, opts.users);
    let upgrades = upgrades(&measured, &opts.server);
    let u = &opts.user;
    Ok(Report {
        target: url,
        server: (&opts.server).into(),
        slo: opts.slo_text.clone(),
        pinned_cpus: pinned,
        scenario: opts
            .scenarios
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        users_behave: format!(
            "each user: mix {}, think {:?} on average, follows created tasks {}",
            u.mix,
            u.think,
            match u.follow {
                crate::scenario::Follow::Poll => format!("by polling every {:?}", u.poll_interval),
                crate::scenario::Follow::Wait => "by long polls".into(),
                crate::scenario::Follow::Sse => "by event stream".into(),
            }
        ),
        ramps,
        measured,
        evaluation,
        answer,
        upgrades,
        notes,
    })
}

/// Opens `n` keep-alive connections, makes one request on each, and
/// returns the server's RSS growth per connection while they are open.
fn probe_connections(target: &Target, pid: u32, n: usize) -> anyhow::Result<f64> {
    use crate::client::{Body, Conn};
    let before = rss_bytes(pid).context("no RSS")?;
    let addr = target.addr;
    let authority = target.authority.clone();
    let after = crate::scenario::block_on(async move {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let mut conns = Vec::with_capacity(n);
                for _ in 0..n {
                    let Ok(mut c) = Conn::open(addr).await else {
                        break;
                    };
                    let req = hyper::Request::get("/healthz")
                        .header(hyper::header::HOST, &authority)
                        .body(http_body_util::Full::new(bytes::Bytes::new()))?;
                    if c.send(req, Body::Discard).await.is_ok() {
                        conns.push(c);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                let after = rss_bytes(pid).unwrap_or(before);
                let opened = conns.len();
                drop(conns);
                Ok((after, opened))
            })
            .await
    })?;
    let (after, opened) = after;
    eprintln!(
        "  {opened} idle connections: RSS {} → {}",
        mib(before as f64),
        mib(after as f64)
    );
    Ok((after as f64 - before as f64).max(0.0) / opened.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::model::*;
    use super::*;

    #[test]
    fn the_analysis_numbers_come_out_of_the_model() {
        // "bandwidth caps us at 187 req/s": 3 Mbps, 2 KB responses.
        let rps = link_rps(3e6, 2000.0);
        assert!((rps - 187.5).abs() < 1e-9, "{rps}");
        // A 4-slot account at 4 s per task finishes 60 tasks a minute.
        assert_eq!(provider_tasks_per_min(4.0, 4.0), 60.0);
        // The 10th of 10 users creating at once on 4 slots waits two rounds.
        assert_eq!(queue_wait_s(10, 4, 4.0), 8.0);
        assert_eq!(time_to_result_s(10, 4, 4.0), 12.0);
        assert_eq!(queue_wait_s(4, 4, 4.0), 0.0);
        assert_eq!(queue_wait_s(5, 4, 4.0), 4.0);
        // 187.5 req/s carries 375 users making 0.5 req/s each.
        assert_eq!(users(rps, 0.5), 375.0);
        assert_eq!(memory_users(4096.0, 512.0, 512.0, 72.0, 3.0), 1000.0);
        assert_eq!(cpu_rps(4.0, 0.0001), 40_000.0);
        assert_eq!(
            slope(&[(10.0, 100.0), (20.0, 120.0), (40.0, 160.0)]),
            Some(2.0)
        );
        assert_eq!(slope(&[(1.0, 1.0)]), None);
    }

    fn measured() -> Measured {
        Measured {
            cpus: 1.0,
            per_user_rps: 0.5,
            per_user_creates_per_s: 1.0 / 60.0,
            bytes_per_response: 2000.0,
            cpu_s_per_request: Some(0.0001),
            idle_rss_bytes: Some(20 << 20),
            rss_per_user_bytes: Some(64.0 * 1024.0),
            rss_per_connection_bytes: None,
            rss_per_task_bytes: None,
            store_writes_per_s: 5000.0,
            store_bytes_per_task: None,
            providers: vec![ProviderMeasure {
                name: "sim".into(),
                concurrency: 4,
                latency_s: 4.0,
                used: true,
            }],
            slo_users: 2000,
            slo_capped: true,
        }
    }

    #[test]
    fn the_binding_limit_is_the_smallest_and_upgrades_move_it() {
        let m = measured();
        let e = evaluate(&m, &ServerSpec::default(), 1.0, 1.0);
        // Provider: 60 tasks/min ÷ 1 task/min per user = 60 users.
        assert_eq!(e.binding_name(), "provider sim");
        assert!((e.users() - 60.0).abs() < 1e-9);
        let bw = e.limits.iter().find(|l| l.name == "bandwidth").unwrap();
        assert!((bw.users - 375.0).abs() < 1e-9);
        let a = answer(&m, &e, 100);
        assert!(!a.fits && a.exceeded == ["provider sim"]);
        assert_eq!(a.burst[0].1, 96.0); // (100-1)/4 = 24 rounds of 4 s
        let ups = upgrades(&m, &ServerSpec::default());
        let provider2 = ups.iter().find(|u| u.what.contains("provider")).unwrap();
        assert!((provider2.users - 120.0).abs() < 1e-9);
        let cores = ups.iter().find(|u| u.what.contains("cores")).unwrap();
        assert_eq!(cores.binding, "provider sim");
    }

    #[test]
    fn the_reports_carry_the_answer_and_charts_without_external_assets() {
        let m = measured();
        let e = evaluate(&m, &ServerSpec::default(), 1.0, 1.0);
        let step = |users: usize, p95: f64| Step {
            users,
            rps: users as f64 * 0.5,
            latency_ms: crate::collect::Percentiles {
                p50: p95 / 2.0,
                p95,
                p99: p95 * 1.5,
                ..Default::default()
            },
            error_rate: 0.0,
            bytes_per_response: 2000.0,
            creates_per_s: 0.1,
            rss_bytes: Some(30 << 20),
            cpu_s: Some(0.5),
            duration_s: 10.0,
            requests: 100,
            time_to_result_s: None,
            meets_slo: p95 <= 200.0,
        };
        let ramp = Ramp {
            steps: vec![step(10, 5.0), step(20, 300.0)],
            best: 10,
            first_failing: Some(20),
            capped: false,
        };
        let r = Report {
            target: "http://127.0.0.1:8080".into(),
            server: (&ServerSpec::default()).into(),
            slo: "p95=200ms,errors=0.1%".into(),
            pinned_cpus: Some(1),
            scenario: "mixed".into(),
            users_behave: "test".into(),
            ramps: [("mixed".to_owned(), ramp)].into(),
            answer: answer(&m, &e, 100),
            upgrades: upgrades(&m, &ServerSpec::default()),
            measured: m,
            evaluation: e,
            notes: vec!["a note".into()],
        };
        let mut md = Vec::new();
        r.markdown(&mut md).unwrap();
        let md = String::from_utf8(md).unwrap();
        assert!(
            md.contains("## 100 users at once?")
                && md.contains("**No.**")
                && md.contains("provider sim"),
            "{md}"
        );
        let mut html = Vec::new();
        r.html(&mut html).unwrap();
        let html = String::from_utf8(html).unwrap();
        assert!(html.contains("<svg") && html.contains("<polyline") && html.contains("<table>"));
        assert!(
            !html.contains("src=") && !html.contains("href="),
            "self-contained"
        );
        let mut json = Vec::new();
        r.json(&mut json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["answer"]["fits"], false);
        assert_eq!(v["ramps"]["mixed"]["best"], 10);
    }
}
