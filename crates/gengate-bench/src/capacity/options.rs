//! What `gengate capacity` is told, as the command line hands it over.

use std::path::PathBuf;
use std::time::Duration;

use crate::scenario::{HeaderName, HeaderValue, Scenario, UserOptions};
use crate::units::{ServerSpec, Slo};

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
