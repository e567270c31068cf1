//! A mock account's settings: which provider it speaks, how its jobs
//! behave, its concurrency and credentials, and the faults it injects.

use std::time::Duration;

use crate::sim::Behavior;

/// Which provider a mock speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockKind {
    /// gengate's own simple protocol (see [`crate::sim_server`]).
    Sim,
    Runninghub,
    Hunyuan,
    Kling,
}

/// Faults a mock injects, each a probability from 0 to 1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Share of callbacks that are never sent.
    pub drop_webhooks: f64,
    /// Share of API answers held back for `slow_delay` (after the request
    /// took effect: a slow answer to a create is a job the client may not
    /// know about).
    pub slow_rate: f64,
    pub slow_delay: Duration,
    /// Share of API answers replaced by a 200 with an HTML body.
    pub garbage_rate: f64,
    /// Share of API requests answered 502 without reaching the account.
    pub error_rate: f64,
}

/// A mock account's settings.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub behavior: Behavior,
    /// Slots the account has: jobs unfinished at once (an image job at
    /// Kling holds `n` of them).
    pub concurrency: usize,
    /// Base URL clients use to reach this server (for output URLs).
    pub public_url: String,
    /// What the mock accepts: the RunningHub apiKey, the Tencent
    /// `SecretId:SecretKey`, or the Kling `AccessKey:SecretKey`.
    pub credentials: String,
    pub faults: Faults,
    /// Output URLs stop working this long after the job finished (`None`:
    /// the provider's own lifetime, or never).
    pub url_ttl: Option<Duration>,
}

impl MockConfig {
    /// A well-behaved account: no faults, output URLs that do not expire.
    pub fn new(
        behavior: Behavior,
        concurrency: usize,
        public_url: &str,
        credentials: &str,
    ) -> Self {
        Self {
            behavior,
            concurrency,
            public_url: public_url.trim_end_matches('/').to_owned(),
            credentials: credentials.to_owned(),
            faults: Faults::default(),
            url_ttl: None,
        }
    }
}
