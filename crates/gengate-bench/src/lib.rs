//! gengate's load generator and capacity report.
//!
//! - [`client`]: one keep-alive HTTP/1.1 connection that counts bytes on the wire.
//! - [`schedule`]: closed and open loop (coordinated omission corrected), threads.
//! - [`collect`]: per-thread HDR histograms and counters, merged into a [`collect::Summary`].
//! - [`scenario`]: what the connections send, and setup on a gengate target.
//! - [`report`]: terminal, JSON, Markdown and HTML writers.
//! - [`capacity`]: the user ramp and the model that names the binding limit.
//!
//! It depends only on HTTP: any gengate, any URL for the raw scenario.

pub mod capacity;
pub mod client;
pub mod collect;
pub mod report;
pub mod scenario;
pub mod schedule;
pub mod units;

use std::sync::Arc;

pub use collect::Summary;
pub use scenario::{Plan, Scenario, Target};
pub use schedule::{Load, RunSpec};

/// Runs one measurement and summarises it.
///
/// # Errors
/// When a load thread cannot start.
pub fn measure(spec: &RunSpec, plan: &Arc<Plan>, target: &Target) -> anyhow::Result<Summary> {
    let (stats, elapsed) = schedule::run(spec, plan)?;
    let rate = match spec.load {
        Load::Open { rate } => Some(rate),
        Load::Closed { .. } => None,
    };
    Ok(Summary::new(
        target.url.clone(),
        plan.scenario.name().to_owned(),
        spec.connections,
        rate,
        &stats,
        elapsed,
    ))
}

use std::time::Duration;

use anyhow::Context as _;
use hyper::header::{HeaderName, HeaderValue};
use scenario::{Setup, UserOptions};

/// Everything `gengate bench` is told.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub target: String,
    /// More servers to spread the connections over (nodes sharing the
    /// target's store); setup happens on `target`.
    pub also: Vec<String>,
    /// `None`: raw for a URL with a path or a server that is not a gengate;
    /// on a gengate, mixed with an admin key and gallery without.
    pub scenario: Option<Scenario>,
    pub connections: usize,
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub admin_key: Option<String>,
    pub threads: Option<usize>,
    pub timeout: Duration,
    /// Think time of the closed loop (single-route scenarios); mixed uses `user.think`.
    pub think: Duration,
    pub user: UserOptions,
    /// Distinct users to make (default: one per connection, at most 1000).
    pub users: Option<usize>,
    /// Public tasks to create before the run.
    pub seed: u64,
    pub progress: bool,
}

/// The number of OS threads to generate load with by default: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Prepares the target as the scenario needs and runs one measurement.
///
/// # Errors
/// For a bad target, a refused setup, or a scenario that cannot run there.
pub fn bench(opts: &BenchOptions) -> anyhow::Result<Summary> {
    let target = Target::parse(&opts.target)?;
    let admin_key = opts
        .admin_key
        .clone()
        .or_else(|| scenario::bearer_in(&opts.headers));
    let mut setup = Setup::new(&target, admin_key.clone(), &opts.user.model);
    let scenario = match opts.scenario {
        Some(s) => s,
        None if target.path_and_query != "/" => Scenario::Raw,
        None => {
            if scenario::block_on(async { Ok(setup.is_gengate().await) })? {
                if admin_key.is_some() {
                    Scenario::Mixed
                } else {
                    Scenario::Gallery
                }
            } else {
                Scenario::Raw
            }
        }
    };
    if scenario.needs_users() || opts.seed > 0 {
        let n = opts.users.unwrap_or(opts.connections.min(1000)).max(1);
        scenario::block_on(async {
            setup.ensure_users(n, scenario == Scenario::GetTask).await?;
            setup.seed(opts.seed).await
        })
        .with_context(|| format!("preparing {} for the {scenario} scenario", target.url))?;
    }
    let load = match opts.rate {
        Some(rate) => Load::Open { rate },
        None => Load::Closed { think: opts.think },
    };
    // Headers given for the admin are not sent with the users' requests.
    let headers = opts.headers.clone();
    let plan = Arc::new(Plan::new(
        scenario,
        target.clone(),
        headers,
        load,
        setup.users.clone(),
        opts.user.clone(),
    )?);
    let duration = match (opts.duration, opts.requests) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    let mut addrs = vec![target.addr];
    for url in &opts.also {
        addrs.push(Target::parse(url)?.addr);
    }
    let spec = RunSpec {
        addrs,
        connections: opts.connections,
        threads: opts.threads.unwrap_or_else(default_threads),
        load,
        duration,
        requests: opts.requests,
        timeout: opts.timeout,
        progress: opts.progress,
    };
    measure(&spec, &plan, &target)
}
