//! The capacity report's data, as the JSON report carries it; the other
//! formats are written from it by `render`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::evaluation::{Answer, Evaluation, Measured, Upgrade};
use super::ramp::Ramp;
use crate::units::ServerSpec;

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
