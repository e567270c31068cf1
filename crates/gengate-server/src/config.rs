//! Configuration: one typed tree with built-in defaults, overlaid by an
//! optional TOML file, overlaid by `GENGATE_SECTION__KEY` environment
//! variables (command-line flags, applied by the binary, win over all).
//!
//! Every key has a default, so `gengate serve` runs with no file at all:
//! SQLite and media under `./data`, the in-process `sim` provider and a demo
//! model catalog. Unknown keys and bad values are refused at load with a
//! message naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gengate_core::model::{FieldSpec, FieldType};
use gengate_core::units;
use gengate_core::{ModelKind, ModelSpec};
use serde::{Deserialize, Deserializer};
use serde_json::json;

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A duration written as `30s`, `500ms`, `10m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        units::parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// A duration range written as `2s..6s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurRange(pub Duration, pub Duration);

impl<'de> Deserialize<'de> for DurRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        units::parse_duration_range(&s)
            .map(|(a, b)| DurRange(a, b))
            .map_err(serde::de::Error::custom)
    }
}

/// A byte size written as `64KiB` or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Bytes(n)),
            Raw::S(s) => units::parse_bytes(&s)
                .map(Bytes)
                .map_err(serde::de::Error::custom),
        }
    }
}

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// How clients reach this server (for URLs of media it serves). Defaults
    /// to `http://<listen address>`.
    pub public_url: Option<String>,
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

/// Per-user limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Tasks one user may create per minute (0: no limit). Counted in Redis
    /// when `cluster.redis_url` is set, so the limit holds across nodes;
    /// otherwise per node.
    pub creates_per_minute: u32,
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
            s3: S3Config::default(),
        }
    }
}

/// An S3-compatible bucket: Tencent COS, Aliyun OSS, AWS S3, MinIO.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// e.g. `https://cos.ap-guangzhou.myqcloud.com`.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
    pub path_style: bool,
    pub access_key: Secret,
    pub secret_key: Secret,
    /// Prepended to every key, e.g. `gengate/`.
    pub prefix: String,
    /// Where users fetch objects (the CDN), e.g. `https://cdn.example.com`.
    pub public_base_url: Option<String>,
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

/// A secret from config: never printed.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
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
    pub base_url: Option<String>,
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
    pub proxy: Option<String>,
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
    pub callback_base_url: Option<String>,
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
}

fn default_max_attempts() -> u32 {
    3
}
fn default_deadline() -> Dur {
    Dur(Duration::from_secs(30 * 60))
}
fn default_expected() -> DurRange {
    DurRange(Duration::from_secs(10), Duration::from_secs(10))
}

fn field(ty: FieldType) -> FieldSpec {
    FieldSpec::new(ty)
}

fn prompt_fields() -> BTreeMap<String, FieldSpec> {
    let mut f = BTreeMap::new();
    f.insert(
        "prompt".into(),
        FieldSpec {
            required: true,
            min_length: Some(1),
            max_length: Some(2000),
            description: Some("What to generate.".into()),
            ..field(FieldType::String)
        },
    );
    f.insert(
        "negative_prompt".into(),
        FieldSpec {
            max_length: Some(2000),
            description: Some("What to avoid.".into()),
            ..field(FieldType::String)
        },
    );
    f.insert(
        "seed".into(),
        FieldSpec {
            minimum: Some(0.0),
            maximum: Some(4_294_967_295.0),
            ..field(FieldType::Integer)
        },
    );
    f
}

/// The demo catalog used when the config declares no models.
fn demo_models() -> BTreeMap<String, ModelConfig> {
    let mut image = prompt_fields();
    image.insert(
        "size".into(),
        FieldSpec {
            values: vec![
                json!("512x512"),
                json!("768x768"),
                json!("1024x1024"),
                json!("768x1024"),
                json!("1024x768"),
            ],
            default: Some(json!("1024x1024")),
            ..field(FieldType::Enum)
        },
    );
    image.insert(
        "steps".into(),
        FieldSpec {
            minimum: Some(1.0),
            maximum: Some(50.0),
            default: Some(json!(20)),
            ..field(FieldType::Integer)
        },
    );
    let mut video = prompt_fields();
    video.insert(
        "duration".into(),
        FieldSpec {
            values: vec![json!("5"), json!("10")],
            default: Some(json!("5")),
            ..field(FieldType::Enum)
        },
    );
    video.insert(
        "image_url".into(),
        FieldSpec {
            description: Some("Optional first frame.".into()),
            ..field(FieldType::Url)
        },
    );
    let mut m = BTreeMap::new();
    m.insert(
        "sim-image".into(),
        ModelConfig {
            provider: "sim".into(),
            kind: ModelKind::Image,
            description: "Simulated text-to-image model (PNG).".into(),
            max_attempts: default_max_attempts(),
            deadline: default_deadline(),
            expected: DurRange(Duration::from_secs(4), Duration::from_secs(4)),
            input: image,
            endpoint: None,
            params: None,
            failover: None,
        },
    );
    m.insert(
        "sim-video".into(),
        ModelConfig {
            provider: "sim".into(),
            kind: ModelKind::Video,
            description: "Simulated text/image-to-video model (AVI).".into(),
            max_attempts: default_max_attempts(),
            deadline: default_deadline(),
            expected: DurRange(Duration::from_secs(4), Duration::from_secs(4)),
            input: video,
            endpoint: None,
            params: None,
            failover: None,
        },
    );
    m
}

fn default_sim() -> ProviderConfig {
    toml::from_str("kind = \"sim\"").expect("the default sim provider parses")
}

/// Environment variables are read through this, so tests can pass their own.
pub trait Env {
    fn vars(&self) -> Vec<(String, String)>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

impl Env for Vec<(String, String)> {
    fn vars(&self) -> Vec<(String, String)> {
        self.clone()
    }
}

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "GENGATE_";

/// Applies `GENGATE_*` variables; returns which dotted key each one set.
fn env_overlay(
    table: &mut toml::Table,
    env: &dyn Env,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut set = Vec::new();
    for (name, raw) in env.vars() {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Err(invalid(
                name.clone(),
                "empty key segment in environment variable name",
            ));
        }
        // A value that parses as a TOML scalar (number, bool, array) is taken
        // as one; anything else is a string.
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut cur = &mut *table;
        for key in &keys[..keys.len() - 1] {
            let entry = cur
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = entry.as_table_mut().ok_or_else(|| {
                invalid(
                    keys.join("."),
                    format!("{name} sets a key inside a value that is not a table"),
                )
            })?;
        }
        cur.insert(keys[keys.len() - 1].clone(), value);
        set.push((keys.join("."), name));
    }
    Ok(set)
}

impl Config {
    /// Loads defaults, then `file` (if any), then `GENGATE_*` variables.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or key at fault.
    pub fn load(file: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        env_overlay(&mut table, env)?;
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                invalid(
                    if key == "." {
                        "(top level)".to_owned()
                    } else {
                        key
                    },
                    e.into_inner().to_string(),
                )
            })?;
        cfg.finish()
    }

    /// Fills defaults that depend on other keys and checks cross-key rules.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn finish(mut self) -> Result<Config, ConfigError> {
        if self.providers.is_empty() {
            self.providers.insert("sim".into(), default_sim());
        }
        // The demo catalog runs on the simulator; an operator who configured
        // only real providers gets no demo models pointing at a missing one.
        if self.models.is_empty()
            && self
                .providers
                .get("sim")
                .is_some_and(|p| p.kind == ProviderKind::Sim)
        {
            self.models = demo_models();
        }
        if self.store.pool_size == 0 {
            return Err(invalid("store.pool_size", "must be at least 1"));
        }
        if self.cluster.lease.0 < Duration::from_secs(1) {
            return Err(invalid(
                "cluster.lease",
                "must be at least 1s (heartbeats go every third of it)",
            ));
        }
        if let Some(url) = &self.cluster.redis_url
            && let Err(why) = crate::redis::check_url(url)
        {
            return Err(invalid("cluster.redis_url", why));
        }
        for (name, p) in &self.providers {
            if p.concurrency == 0 {
                return Err(invalid(
                    format!("providers.{name}.concurrency"),
                    "must be at least 1",
                ));
            }
            if !(0.0..=1.0).contains(&p.fail_rate) {
                return Err(invalid(
                    format!("providers.{name}.fail_rate"),
                    "must be between 0 and 1",
                ));
            }
            for (key, url) in [
                ("base_url", &p.base_url),
                ("callback_base_url", &p.callback_base_url),
            ] {
                if let Some(url) = url
                    && !(url.starts_with("http://") || url.starts_with("https://"))
                {
                    return Err(invalid(
                        format!("providers.{name}.{key}"),
                        "must be an http:// or https:// URL",
                    ));
                }
            }
            if let Some(proxy) = &p.proxy {
                match reqwest::Url::parse(proxy) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
                    _ => {
                        return Err(invalid(
                            format!("providers.{name}.proxy"),
                            "must be an http:// or https:// proxy URL, e.g. http://10.0.0.2:3128",
                        ));
                    }
                }
            }
            if p.callback_base_url
                .as_ref()
                .is_some_and(|u| u.contains(['?', '#']))
            {
                return Err(invalid(
                    format!("providers.{name}.callback_base_url"),
                    "must be a base URL without a query or fragment (gengate appends its own path and query)",
                ));
            }
            if !(p.poll_rate > 0.0 && p.poll_rate.is_finite()) {
                return Err(invalid(
                    format!("providers.{name}.poll_rate"),
                    "must be a positive number of requests per second",
                ));
            }
            if p.breaker_failures == 0 {
                return Err(invalid(
                    format!("providers.{name}.breaker_failures"),
                    "must be at least 1",
                ));
            }
            let required: &[(&str, &Secret)] = match p.kind {
                ProviderKind::Sim => &[],
                ProviderKind::Runninghub => &[("api_key", &p.api_key)],
                ProviderKind::Hunyuan => {
                    &[("secret_id", &p.secret_id), ("secret_key", &p.secret_key)]
                }
                ProviderKind::Kling => {
                    &[("access_key", &p.access_key), ("secret_key", &p.secret_key)]
                }
            };
            for (key, value) in required {
                if value.expose().trim().is_empty() {
                    return Err(invalid(
                        format!("providers.{name}.{key}"),
                        format!("a {} provider needs its {key}", p.kind.as_str()),
                    ));
                }
            }
        }
        for (name, m) in &self.models {
            if !self.providers.contains_key(&m.provider) {
                let known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
                return Err(invalid(
                    format!("models.{name}.provider"),
                    format!(
                        "no provider named {:?}; configured: {}",
                        m.provider,
                        known.join(", ")
                    ),
                ));
            }
            if m.max_attempts == 0 {
                return Err(invalid(
                    format!("models.{name}.max_attempts"),
                    "must be at least 1",
                ));
            }
            for (field, spec) in &m.input {
                spec.check()
                    .map_err(|msg| invalid(format!("models.{name}.input.{field}"), msg))?;
            }
            if let Some(params) = &m.params {
                let template = toml_to_json(params);
                for used in gengate_core::mapping::placeholders(&template) {
                    if !m.input.contains_key(&used) {
                        return Err(invalid(
                            format!("models.{name}.params"),
                            format!("refers to {{{{{used}}}}}, which is not an input of the model"),
                        ));
                    }
                }
            }
            if let Some(endpoint) = &m.endpoint {
                let kind = self.providers[&m.provider].kind;
                let known: &[&str] = match kind {
                    ProviderKind::Sim => &[],
                    ProviderKind::Runninghub => &["workflow", "app"],
                    ProviderKind::Hunyuan => &["image", "video"],
                    ProviderKind::Kling => &["text2video", "image2video", "image"],
                };
                if !known.contains(&endpoint.as_str()) {
                    return Err(invalid(
                        format!("models.{name}.endpoint"),
                        format!(
                            "{} has no endpoint {endpoint:?}; it has: {}",
                            kind.as_str(),
                            known.join(", ")
                        ),
                    ));
                }
            }
            if let Some(f) = &m.failover {
                let Some(fp) = self.providers.get(f) else {
                    return Err(invalid(
                        format!("models.{name}.failover"),
                        format!("no provider named {f:?}"),
                    ));
                };
                if f == &m.provider || fp.kind != self.providers[&m.provider].kind {
                    return Err(invalid(
                        format!("models.{name}.failover"),
                        "must name another provider entry of the same kind (its request template is reused)",
                    ));
                }
            }
        }
        if let Some(url) = &self.server.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "server.public_url",
                "must be an http:// or https:// URL",
            ));
        }
        if self.dispatch.poll_initial.0 > self.dispatch.poll_max.0 {
            return Err(invalid(
                "dispatch.poll_initial",
                "must not be longer than dispatch.poll_max",
            ));
        }
        let m = &self.media;
        if m.concurrency == 0 {
            return Err(invalid("media.concurrency", "must be at least 1"));
        }
        if m.max_attempts == 0 {
            return Err(invalid("media.max_attempts", "must be at least 1"));
        }
        if m.backend == MediaBackend::S3 {
            let s3 = &m.s3;
            match &s3.endpoint {
                None => {
                    return Err(invalid(
                        "media.s3.endpoint",
                        "the s3 backend needs an endpoint",
                    ));
                }
                Some(u) if reqwest::Url::parse(u).is_err() || !u.starts_with("http") => {
                    return Err(invalid(
                        "media.s3.endpoint",
                        "must be an http:// or https:// URL",
                    ));
                }
                Some(_) => {}
            }
            if s3.bucket.trim().is_empty() {
                return Err(invalid("media.s3.bucket", "the s3 backend needs a bucket"));
            }
            for (key, v) in [
                ("access_key", &s3.access_key),
                ("secret_key", &s3.secret_key),
            ] {
                if v.expose().trim().is_empty() {
                    return Err(invalid(
                        format!("media.s3.{key}"),
                        "the s3 backend needs it",
                    ));
                }
            }
            match &s3.public_base_url {
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
                Some(_) => {
                    return Err(invalid(
                        "media.s3.public_base_url",
                        "must be an http:// or https:// URL",
                    ));
                }
                None => {
                    return Err(invalid(
                        "media.s3.public_base_url",
                        "the s3 backend needs the public (CDN) base URL of the bucket",
                    ));
                }
            }
            if s3.part_size.0 < 5 << 20 || s3.part_size.0 > 512 << 20 {
                return Err(invalid(
                    "media.s3.part_size",
                    "must be between 5MiB and 512MiB",
                ));
            }
        }
        if self.server.body_limit.0 < 1024 {
            return Err(invalid("server.body_limit", "must be at least 1KiB"));
        }
        Ok(self)
    }

    /// The store URL, defaulting to SQLite in the data dir.
    pub fn store_url(&self) -> String {
        self.store.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.server.data_dir.join("gengate.db").display()
            )
        })
    }

    /// Where local media lives.
    pub fn media_dir(&self) -> PathBuf {
        self.server.data_dir.join("media")
    }

    /// The public base URL, given the address actually bound.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The model catalog as domain objects.
    pub fn catalog(&self) -> Vec<ModelSpec> {
        self.models
            .iter()
            .map(|(name, m)| ModelSpec {
                name: name.clone(),
                provider: m.provider.clone(),
                kind: m.kind,
                description: m.description.clone(),
                max_attempts: m.max_attempts,
                deadline_ms: m.deadline.0.as_millis() as i64,
                expected_seconds: (m.expected.0 + m.expected.1).as_secs_f64() / 2.0,
                expected_range: (m.expected.0.as_secs_f64(), m.expected.1.as_secs_f64()),
                fields: m.input.clone(),
                endpoint: m.endpoint.clone(),
                params: m.params.as_ref().map_or_else(
                    || serde_json::Value::Object(Default::default()),
                    toml_to_json,
                ),
                failover: m.failover.clone(),
            })
            .collect()
    }
}

/// A TOML table as JSON (templates are written in TOML, sent as JSON).
fn toml_to_json(t: &toml::Table) -> serde_json::Value {
    fn conv(v: &toml::Value) -> serde_json::Value {
        match v {
            toml::Value::String(s) => json!(s),
            toml::Value::Integer(i) => json!(i),
            toml::Value::Float(f) => json!(f),
            toml::Value::Boolean(b) => json!(b),
            toml::Value::Datetime(d) => json!(d.to_string()),
            toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(conv).collect()),
            toml::Value::Table(t) => toml_to_json(t),
        }
    }
    serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), conv(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml_text: &str, env: Vec<(&str, &str)>) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("gengate-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.toml", toml_text.len() ^ env.len()));
        std::fs::write(&path, toml_text).unwrap();
        let env: Vec<(String, String)> =
            env.into_iter().map(|(a, b)| (a.into(), b.into())).collect();
        Config::load(Some(&path), &env)
    }

    #[test]
    fn provider_and_model_mistakes_name_the_key() {
        let cases = [
            (
                "[providers.k]\nkind = \"kling\"\naccess_key = \"a\"\n",
                "providers.k.secret_key",
            ),
            (
                "[providers.r]\nkind = \"runninghub\"\n",
                "providers.r.api_key",
            ),
            (
                "[providers.r]\nkind = \"runninghub\"\napi_key = \"x\"\npoll_rate = 0\n",
                "providers.r.poll_rate",
            ),
            (
                "[providers.r]\nkind = \"runninghub\"\napi_key = \"x\"\n[models.m]\nprovider = \"r\"\nkind = \"image\"\nendpoint = \"text2video\"\n",
                "models.m.endpoint",
            ),
            (
                "[providers.r]\nkind = \"runninghub\"\napi_key = \"x\"\n[models.m]\nprovider = \"r\"\nkind = \"image\"\n[models.m.params]\nworkflowId = \"1\"\ntext = \"{{prompt}}\"\n",
                "models.m.params",
            ),
            (
                "[providers.r]\nkind = \"runninghub\"\napi_key = \"x\"\n[providers.s]\nkind = \"sim\"\n[models.m]\nprovider = \"r\"\nkind = \"image\"\nfailover = \"s\"\n",
                "models.m.failover",
            ),
        ];
        for (text, key) in cases {
            let e = load_str(text, vec![]).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
        let shown = format!(
            "{:?}",
            load_str(
                "[providers.r]\nkind = \"runninghub\"\napi_key = \"sekrit\"\n",
                vec![]
            )
            .unwrap()
            .providers["r"]
        );
        assert!(!shown.contains("sekrit"), "secrets never print: {shown}");
    }

    /// The README's TOML examples.
    fn readme_toml_blocks() -> Vec<&'static str> {
        include_str!("../../../README.md")
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect()
    }

    /// The README's example for each real provider is a config that loads.
    #[test]
    fn readme_provider_examples_load() {
        let blocks = readme_toml_blocks();
        for kind in ["runninghub", "hunyuan", "kling"] {
            let block = blocks
                .iter()
                .find(|b| b.contains(&format!("[providers.{kind}]")))
                .unwrap_or_else(|| panic!("README has no {kind} example"));
            let cfg = load_str(block, vec![])
                .unwrap_or_else(|e| panic!("README's {kind} example does not load: {e}"));
            assert_eq!(cfg.providers[kind].kind.as_str(), kind);
            assert!(cfg.models.values().all(|m| m.provider == kind));
            for spec in cfg.catalog() {
                assert!(spec.params.is_object(), "{kind}: {spec:?}");
            }
        }
    }

    /// The README's full configuration and its several-servers example load.
    #[test]
    fn readme_configuration_examples_load() {
        let blocks = readme_toml_blocks();
        for marker in [
            "[limits]",
            "redis_url = \"redis://10.0.0.5:6379\"",
            "ca_file = \"/etc/gengate/ca.pem\"   # PEM",
            "proxy = \"http://10.0.0.2:3128\"   # every request",
            "redis_url = \"rediss://",
        ] {
            let block = blocks
                .iter()
                .find(|b| b.contains(marker))
                .unwrap_or_else(|| panic!("README has no example with {marker}"));
            load_str(block, vec![])
                .unwrap_or_else(|e| panic!("README's example with {marker} does not load: {e}"));
        }
    }

    #[test]
    fn no_file_gives_working_defaults() {
        let cfg = Config::load(None, &Vec::new()).unwrap();
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.store_url(), "sqlite://./data/gengate.db");
        assert!(cfg.providers.contains_key("sim"));
        assert!(cfg.models.contains_key("sim-image") && cfg.models.contains_key("sim-video"));
    }

    #[test]
    fn env_overrides_file_and_names_keys() {
        let cfg = load_str(
            "[server]\nlisten = \"127.0.0.1:9000\"\n",
            vec![
                ("GENGATE_SERVER__LISTEN", "0.0.0.0:7000"),
                ("GENGATE_SERVER__BODY_LIMIT", "128KiB"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.server.listen.to_string(), "0.0.0.0:7000");
        assert_eq!(cfg.server.body_limit, Bytes(128 * 1024));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = load_str("[server]\nlisen = \"x\"\n", vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server") && e.contains("lisen"), "{e}");
        let e = load_str("[server]\nrequest_timeout = \"soon\"\n", vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.request_timeout"), "{e}");
        let e = load_str("", vec![("GENGATE_DISPATCH__POLL_MAX", "fast")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("dispatch.poll_max"), "{e}");
        let e = load_str(
            "[models.m]\nprovider = \"nope\"\nkind = \"image\"\n",
            vec![],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("models.m.provider"), "{e}");
        let e = load_str("[providers.sim]\nkind = \"sim\"\nconcurrency = 0\n", vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("providers.sim.concurrency"), "{e}");
        let e = load_str("[server\n", vec![]).unwrap_err().to_string();
        assert!(e.contains("not valid TOML"), "{e}");
    }
}
