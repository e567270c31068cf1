//! The model applied to a planned server: each resource's limit in users and
//! the binding one, the answer for the number of users asked about, and what
//! each upgrade would change. Pure: it takes what was measured.

use serde::Serialize;

use super::model;
use super::sizes::{kib, mib};
use crate::report::thousands;
use crate::units::ServerSpec;

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
