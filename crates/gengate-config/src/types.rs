//! The configuration's shape: every section and key, with its default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gengate_core::ModelKind;
use gengate_core::model::FieldSpec;
use serde::Deserialize;

use crate::units::{Bytes, Dur, DurRange, HttpUrl, Secret};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub cluster: ClusterConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub dispatch: DispatchConfig,
    pub webhooks: WebhooksConfig,
    pub media: MediaConfig,
    pub tls: TlsConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    /// What loading ignored and the operator should hear of (logged at
    /// start): environment variables that name no key.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// The top-level keys of [`Config`] (a test keeps it in step).
pub const SECTIONS: &[&str] = &[
    "server",
    "store",
    "cluster",
    "limits",
    "log",
    "dispatch",
    "webhooks",
    "media",
    "tls",
    "providers",
    "models",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How clients reach this server (for URLs of media it serves). Defaults
    /// to `http://<listen address>`.
    pub public_url: Option<HttpUrl>,
    /// Where the SQLite database and local media live.
    pub data_dir: PathBuf,
    /// Largest request body accepted.
    pub body_limit: Bytes,
    /// A request taking longer is answered 503.
    pub request_timeout: Dur,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Dur,
    /// A connection that sends no complete request head for this long is
    /// closed: slow clients and idle keep-alive connections alike.
    pub idle_timeout: Dur,
    /// Tasks kept in memory for fast reads (their latest state, exact).
    pub task_cache: usize,
    /// Recent task events kept so an event stream can resume (Last-Event-ID).
    pub event_replay: usize,
    /// Web origins (`https://app.example.com`) whose pages may call the API
    /// from the browser (CORS). Empty: none.
    pub cors_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            data_dir: PathBuf::from("./data"),
            body_limit: Bytes(64 * 1024),
            request_timeout: Dur(Duration::from_secs(30)),
            shutdown_grace: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(60)),
            task_cache: 100_000,
            event_replay: 16_384,
            cors_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (the default: `sqlite://<data_dir>/gengate.db`),
    /// `postgres://USER@HOST/DB` or `mysql://USER:PASS@HOST/DB` (MySQL 8,
    /// MariaDB 10.11). Several nodes may share a PostgreSQL or MySQL store.
    pub url: Option<String>,
    /// Connections per node at most (PostgreSQL, MySQL). Every node opens
    /// up to this many: `pool_size` × nodes must stay within the
    /// database's `max_connections` (`gengate doctor` checks).
    pub pool_size: u32,
    /// A call waiting longer than this for a connection fails (503).
    pub pool_timeout: Dur,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
            pool_timeout: Dur(Duration::from_secs(5)),
        }
    }
}

/// Several nodes on one shared store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's name in leases and `gengate doctor` (the host name by
    /// default). Each process adds its own suffix, so a restarted node
    /// never mistakes its previous life's leases for its own.
    pub node_name: Option<String>,
    /// How long a task stays leased to its node without a heartbeat: a dead
    /// node's tasks are taken over after at most this long.
    pub lease: Dur,
    /// `redis://HOST:PORT[/DB]`: task events between nodes (pub/sub) and
    /// shared per-user rate limits. Without it, PostgreSQL stores use
    /// LISTEN/NOTIFY and MySQL stores a short poll of recent changes.
    pub redis_url: Option<String>,
    /// How often a MySQL store without Redis is asked for recent changes.
    pub event_poll: Dur,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_name: None,
            lease: Dur(Duration::from_secs(15)),
            redis_url: None,
            event_poll: Dur(Duration::from_millis(250)),
        }
    }
}

/// Per-user limits, the defaults of every user (an admin may set a user's
/// own through `PATCH /v1/admin/users/{user}`). 0 means no limit. Each is
/// checked in the same transaction as the create, so they hold across
/// nodes sharing a store and an idempotent replay never counts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Tasks one user may have queued or running at once.
    pub max_active: u32,
    /// Tasks one user may create per minute: a token bucket holding a
    /// minute's worth, refilled evenly.
    pub creates_per_minute: u32,
    /// Tasks one user may create per UTC day.
    pub tasks_per_day: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_active: 10,
            creates_per_minute: 0,
            tasks_per_day: 0,
        }
    }
}

impl LimitsConfig {
    /// As the store checks them.
    pub fn limits(&self) -> gengate_core::Limits {
        gengate_core::Limits {
            max_active: self.max_active,
            creates_per_minute: self.creates_per_minute,
            tasks_per_day: self.tasks_per_day,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `info`, `debug`, or per-target directives like `info,gengate_server=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// First poll of a running task comes this long after it was accepted.
    pub poll_initial: Dur,
    /// Polls slow down (x1.5 each, and to at least a quarter of the task's
    /// age) up to this interval. The first poll waits half the expected run
    /// time (observed, or the model's `expected`).
    pub poll_max: Dur,
    /// Retry backoff: base and cap of the exponential delay.
    pub retry_base: Dur,
    pub retry_max: Dur,
    /// How long idempotency keys are remembered.
    pub idempotency_ttl: Dur,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            poll_initial: Dur(Duration::from_millis(500)),
            poll_max: Dur(Duration::from_secs(15)),
            retry_base: Dur(Duration::from_secs(2)),
            retry_max: Dur(Duration::from_secs(300)),
            idempotency_ttl: Dur(Duration::from_secs(24 * 3600)),
        }
    }
}

/// Outbound client webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Allow webhook destinations on loopback and private networks (off:
    /// webhook URLs are user input and must not reach the operator's network).
    pub allow_private: bool,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// First retry delay; each next one is 5x longer (capped at 6 h).
    pub retry_base: Dur,
    /// Timeout of one delivery attempt.
    pub timeout: Dur,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            max_attempts: 8,
            retry_base: Dur(Duration::from_secs(5)),
            timeout: Dur(Duration::from_secs(10)),
        }
    }
}

/// Where results are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    /// A directory under the data dir, served by gengate at `/media/…`.
    Local,
    /// An S3-compatible bucket (`[media.s3]`).
    S3,
}

/// Copying results into the operator's storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    pub backend: MediaBackend,
    /// Copies under way at once.
    pub concurrency: usize,
    /// Largest output accepted.
    pub max_bytes: Bytes,
    /// Tries per output before the task fails with `output_copy_failed`.
    pub max_attempts: u32,
    /// First retry delay of a copy (doubled each try).
    pub retry_base: Dur,
    /// Timeout of one download, first byte to last.
    pub fetch_timeout: Dur,
    /// Fetch outputs from loopback and private addresses (local mocks).
    pub allow_private: bool,
    /// Hosts outputs may come from (`cdn.example.com`, `*.myqcloud.com`),
    /// besides each provider's API host. Empty: any public host.
    pub allowed_hosts: Vec<String>,
    /// How long stored originals are kept after their task finished;
    /// `media gc` deletes older ones (thumbnails stay). Unset: forever.
    pub retention: Option<Dur>,
    /// Largest upload (`POST /v1/uploads`), separate from the JSON limit.
    pub upload_max_bytes: Bytes,
    /// Most pixels (width × height) of an uploaded image.
    pub upload_max_pixels: u64,
    /// How long the signed URL of an upload stays valid (it must outlive
    /// the tasks that use it: a provider fetches it when the task runs).
    pub upload_url_ttl: Dur,
    pub s3: S3Config,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            backend: MediaBackend::Local,
            concurrency: 4,
            max_bytes: Bytes(1 << 30),
            max_attempts: 4,
            retry_base: Dur(Duration::from_secs(2)),
            fetch_timeout: Dur(Duration::from_secs(600)),
            allow_private: false,
            allowed_hosts: Vec::new(),
            retention: None,
            upload_max_bytes: Bytes(20 << 20),
            upload_max_pixels: 40_000_000,
            upload_url_ttl: Dur(Duration::from_secs(24 * 60 * 60)),
            s3: S3Config::default(),
        }
    }
}

/// An S3-compatible bucket: Tencent COS, Aliyun OSS, AWS S3, MinIO.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// e.g. `https://cos.ap-guangzhou.myqcloud.com`.
    pub endpoint: Option<HttpUrl>,
    pub region: String,
    pub bucket: String,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
    pub path_style: bool,
    pub access_key: Secret,
    pub secret_key: Secret,
    /// Prepended to every key, e.g. `gengate/`.
    pub prefix: String,
    /// Where users fetch objects (the CDN), e.g. `https://cdn.example.com`.
    pub public_base_url: Option<HttpUrl>,
    /// Multipart part size (at least 5MiB).
    pub part_size: Bytes,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".into(),
            bucket: String::new(),
            path_style: false,
            access_key: Secret::default(),
            secret_key: Secret::default(),
            prefix: String::new(),
            public_base_url: None,
            part_size: Bytes(8 << 20),
        }
    }
}

/// What outbound TLS connections trust (providers, media, object storage,
/// webhooks, the store, Redis): Mozilla's roots and the system's store
/// always, plus the CAs of `ca_file`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// A PEM file of extra CA certificates: a private CA (MinIO, a
    /// database), a TLS-inspecting proxy.
    pub ca_file: Option<PathBuf>,
}

/// Which adapter a provider entry uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Sim,
    Runninghub,
    Hunyuan,
    Kling,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Sim => "sim",
            ProviderKind::Runninghub => "runninghub",
            ProviderKind::Hunyuan => "hunyuan",
            ProviderKind::Kling => "kling",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// The provider's API base URL. `sim`: unset runs the simulator
    /// in-process; set, gengate talks to `gengate mock-provider --kind sim`.
    /// RunningHub and Kling default to their public endpoints; Hunyuan
    /// defaults to Tencent's per-service hosts, and when set sends every
    /// action to this URL (a proxy or a mock).
    #[serde(default)]
    pub base_url: Option<HttpUrl>,
    /// RunningHub: the account's API key.
    #[serde(default)]
    pub api_key: Secret,
    /// Tencent Cloud: SecretId and SecretKey. Kling: `secret_key` with
    /// `access_key`.
    #[serde(default)]
    pub secret_id: Secret,
    #[serde(default)]
    pub secret_key: Secret,
    #[serde(default)]
    pub access_key: Secret,
    /// Tencent Cloud region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Tasks gengate keeps in flight at this provider account at once. When
    /// the provider says the account is full, gengate uses fewer slots until
    /// it recovers.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// In-process sim only: how long a job takes.
    #[serde(default = "default_latency")]
    pub latency: DurRange,
    /// In-process sim only: share of jobs that fail (retryably).
    #[serde(default)]
    pub fail_rate: f64,
    /// Timeout of one HTTP request to the provider.
    #[serde(default = "default_provider_timeout")]
    pub timeout: Dur,
    /// An HTTP proxy every request to this provider goes through
    /// (`http://host:port`, credentials as `http://user:pw@host:port`).
    /// Environment variables (`HTTPS_PROXY`, …) are never used.
    #[serde(default)]
    pub proxy: Option<HttpUrl>,
    /// Whether a submission whose outcome is unknown (and that the provider
    /// cannot look up by our reference) may be submitted again. Each
    /// submission may cost money, so only the simulator defaults to yes.
    #[serde(default)]
    pub resubmit_unknown: Option<bool>,
    /// Ask the provider to post callbacks (where it can); polling stays on
    /// as the fallback that catches lost ones. Needs a public URL
    /// (`callback_base_url` or `server.public_url`).
    #[serde(default = "default_true")]
    pub callbacks: bool,
    /// Base URL the provider posts callbacks to (e.g. `https://api.example.com`);
    /// defaults to `server.public_url`.
    #[serde(default)]
    pub callback_base_url: Option<HttpUrl>,
    /// Status queries per second at most, spread evenly (Tencent allows 20).
    #[serde(default = "default_poll_rate")]
    pub poll_rate: f64,
    /// Wait before retrying after the provider said the account is full.
    #[serde(default = "default_retry_after")]
    pub retry_after: Dur,
    /// Consecutive failed calls (unreachable, 5xx, timeouts) that open the
    /// circuit: no calls for `breaker_cooldown`, then one probe.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown: Dur,
    /// How long dispatching pauses after the account ran out of balance or
    /// refused our credentials, before one task probes it again.
    #[serde(default = "default_account_pause")]
    pub account_pause: Dur,
    /// Credits of tasks it may be sent per UTC day (the holds of the tasks
    /// submitted to it); once reached, its tasks wait for the next day.
    /// Counted across nodes. Unset: no cap.
    #[serde(default)]
    pub daily_credits: Option<i64>,
}

fn default_region() -> String {
    "ap-guangzhou".into()
}
fn default_true() -> bool {
    true
}
fn default_poll_rate() -> f64 {
    20.0
}
fn default_retry_after() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_account_pause() -> Dur {
    Dur(Duration::from_secs(300))
}

fn default_concurrency() -> u32 {
    4
}
fn default_latency() -> DurRange {
    DurRange(Duration::from_secs(2), Duration::from_secs(6))
}
fn default_provider_timeout() -> Dur {
    Dur(Duration::from_secs(30))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub provider: String,
    pub kind: ModelKind,
    #[serde(default)]
    pub description: String,
    /// Submissions per task, first one included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// A task not finished this long after creation fails.
    #[serde(default = "default_deadline")]
    pub deadline: Dur,
    /// Typical run time (`40s`) or range (`30s..60s`), used for ETAs and to
    /// time the first polls until real run times are observed.
    #[serde(default = "default_expected")]
    pub expected: DurRange,
    /// The input schema, field by field.
    #[serde(default)]
    pub input: BTreeMap<String, FieldSpec>,
    /// The provider operation that runs it: `workflow` or `app`
    /// (RunningHub), `image` or `video` (Hunyuan), `text2video`,
    /// `image2video` or `image` (Kling). Default: by `kind`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The provider request's own fields, as a template over the input:
    /// `"{{prompt}}"` is the input `prompt` with its type, `"{{n|string}}"`
    /// the same as text, and members whose input is absent are left out.
    #[serde(default)]
    pub params: Option<toml::Table>,
    /// Another provider entry that runs this model while this one's circuit
    /// is open (same kind of provider: another account or region).
    #[serde(default)]
    pub failover: Option<String>,
    /// What a task costs in credits: `10`, `{ per_output = 5 }` (optionally
    /// `input = "n"`, the field giving how many outputs are asked for), or
    /// `{ per_second = 2, input = "duration" }`. Fixed on each task when it
    /// is created. Unset: free.
    #[serde(default)]
    pub price: Option<gengate_core::Price>,
    /// Which endings give a task's credits back: any of `failure`,
    /// `cancel`, `expiry`. Default: all three.
    #[serde(default)]
    pub refund_on: Option<Vec<String>>,
}

pub(crate) fn default_max_attempts() -> u32 {
    3
}
pub(crate) fn default_deadline() -> Dur {
    Dur(Duration::from_secs(30 * 60))
}
fn default_expected() -> DurRange {
    DurRange(Duration::from_secs(10), Duration::from_secs(10))
}
