//! How to reach one Tencent Cloud account, printed with its secrets masked.

use std::fmt;
use std::time::Duration;

use crate::default_client;

/// The region Hunyuan image generation is sold in (the only one, per its
/// API docs), used when the settings leave it empty.
pub const DEFAULT_REGION: &str = "ap-guangzhou";

/// How to reach one Tencent Cloud account.
#[derive(Clone)]
pub struct HunyuanSettings {
    /// `None`: Tencent's own hosts (`hunyuan.tencentcloudapi.com` for images,
    /// `vclm.tencentcloudapi.com` for videos). `Some(url)`: every action goes
    /// to that URL (a mock, a proxy); the signature still names each action's
    /// service, and covers the `Host` actually sent.
    pub base_url: Option<String>,
    pub secret_id: String,
    pub secret_key: String,
    /// Empty means [`DEFAULT_REGION`].
    pub region: String,
    /// The client every call goes through (`gengate_net::Outbound::provider`).
    pub client: reqwest::Client,
    /// How long the dispatcher waits after the account said it is full or
    /// rate limited.
    pub retry_after: Duration,
}

impl HunyuanSettings {
    /// Settings for Tencent's own hosts in [`DEFAULT_REGION`], with a 30 s
    /// timeout, the public TLS roots and a 5 s back-off when the account is
    /// full.
    pub fn new(secret_id: &str, secret_key: &str) -> Self {
        Self {
            base_url: None,
            secret_id: secret_id.to_owned(),
            secret_key: secret_key.to_owned(),
            region: DEFAULT_REGION.to_owned(),
            client: default_client(Duration::from_secs(30)),
            retry_after: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for HunyuanSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HunyuanSettings")
            .field("base_url", &self.base_url)
            .field("secret_id", &mask(&self.secret_id))
            .field("secret_key", &"***")
            .field("region", &self.region)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

/// A SecretId shows its first four characters, enough to tell keys apart in
/// logs.
pub(super) fn mask(secret_id: &str) -> String {
    let head: String = secret_id.chars().take(4).collect();
    format!("{head}***")
}
