//! How to reach one Kling account, printed with its keys masked.

use std::fmt;
use std::time::Duration;

use crate::{default_client, wire};

/// Kling's global API host (the older `https://api.klingai.com` still works;
/// the China site is `https://api-beijing.klingai.com`).
pub const DEFAULT_BASE_URL: &str = "https://api-singapore.klingai.com";

/// How to reach one Kling account.
#[derive(Clone)]
pub struct KlingSettings {
    /// API base URL, e.g. [`DEFAULT_BASE_URL`].
    pub base_url: String,
    /// The AccessKey: the JWT's `iss`.
    pub access_key: String,
    /// The SecretKey the JWT is signed with.
    pub secret_key: String,
    /// The client every call goes through (`gengate_net::Outbound::provider`).
    pub client: reqwest::Client,
    /// How long to wait after a rate or concurrency refusal (at least 1 s).
    pub retry_after: Duration,
    /// Lifetime of the JWTs we mint (30 minutes in Kling's example; whether
    /// longer is accepted is unconfirmed).
    pub token_ttl: Duration,
}

impl KlingSettings {
    /// Settings for the global site with the defaults: 60 s requests (the
    /// public TLS roots), 2 s back-off after a refusal, 30-minute tokens.
    pub fn new(access_key: &str, secret_key: &str) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            client: default_client(Duration::from_secs(60)),
            retry_after: Duration::from_secs(2),
            token_ttl: Duration::from_secs(30 * 60),
        }
    }
}

impl fmt::Debug for KlingSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KlingSettings")
            .field("base_url", &self.base_url)
            .field("access_key", &wire::masked(&self.access_key))
            .field("secret_key", &"***")
            .field("retry_after", &self.retry_after)
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}
