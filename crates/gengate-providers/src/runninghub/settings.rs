//! How to reach one RunningHub account, printed with its key masked.

use std::fmt;
use std::time::Duration;

use crate::wire;

/// The China site; the international one is `https://www.runninghub.ai`
/// (keys belong to one site).
pub const DEFAULT_BASE_URL: &str = "https://www.runninghub.cn";

/// How to reach one RunningHub account.
#[derive(Clone)]
pub struct RunningHubSettings {
    /// [`DEFAULT_BASE_URL`] or the international site.
    pub base_url: String,
    /// The account's 32-character API key.
    pub api_key: String,
    /// The client every call goes through (`gengate_net::Outbound::provider`:
    /// its timeout, TLS roots and proxy).
    pub client: reqwest::Client,
    /// How long a task waits after the account said it is full (`421`,
    /// `415`, rate limits) before it is tried again.
    pub retry_after: Duration,
}

impl fmt::Debug for RunningHubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningHubSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &wire::masked(&self.api_key))
            .field("retry_after", &self.retry_after)
            .finish()
    }
}
