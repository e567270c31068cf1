//! The command line: one clap-derive tree; every flag documented, bad values
//! refused by clap with the flag named.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// gengate: a self-hosted AI generation task gateway.
#[derive(Debug, Parser)]
#[command(name = "gengate", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gateway: the HTTP API and the dispatcher. With no config file it
    /// uses SQLite and media under ./data, the in-process simulated provider
    /// and a demo model catalog, and prints an admin key on the first start.
    Serve(ServeArgs),
    /// Create, list and revoke API keys (in the same store `serve` uses).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage stored results (the `[media]` backend).
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
    /// Run a mock provider that speaks a provider's wire protocol, keeps a
    /// ledger at GET /_mock/stats and refuses work beyond its concurrency.
    MockProvider(MockArgs),
}

/// Where the configuration and the store are.
#[derive(Debug, Clone, Args)]
pub(crate) struct StoreArgs {
    /// TOML config file (every key also settable as GENGATE_SECTION__KEY).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Directory of the SQLite database and local media [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Store URL, e.g. sqlite://./data/gengate.db [default: SQLite in the data dir].
    #[arg(long, value_name = "URL")]
    pub(crate) store_url: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Address to listen on [default: 127.0.0.1:8080]; port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key for a user (created on first use) and print it once.
    Create {
        /// The user's name.
        #[arg(long, value_name = "NAME", value_parser = parse_user)]
        user: String,
        /// Give the key the admin role.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List keys (never the secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key, by its id or its prefix as `keys list` shows them.
    Revoke {
        /// Key id (e.g. 3) or prefix (e.g. gg_AbCd1234).
        #[arg(value_name = "KEY")]
        key: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MediaCommand {
    /// Delete stored objects no task refers to (deleted tasks, copies of
    /// tasks canceled while storing) and, with media.retention set,
    /// originals of tasks finished longer ago (thumbnails stay).
    Gc {
        /// List what would be deleted without deleting it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum MockKind {
    /// gengate's simulated provider protocol.
    Sim,
    /// RunningHub's task API (apiKey in the body, HTTP 200 envelopes).
    Runninghub,
    /// Tencent Cloud Hunyuan image and video jobs (TC3-HMAC-SHA256).
    Hunyuan,
    /// Kling's video and image API (HS256 JWT bearer tokens).
    Kling,
}

#[derive(Debug, Args)]
pub(crate) struct MockArgs {
    /// Which provider to mock.
    #[arg(long, value_enum)]
    pub(crate) kind: MockKind,
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9100")]
    pub(crate) listen: SocketAddr,
    /// How long each job takes: a range like 2s..6s or one duration like 500ms.
    #[arg(long, value_name = "RANGE", default_value = "2s..6s", value_parser = parse_latency)]
    pub(crate) latency: (Duration, Duration),
    /// Share of jobs that fail, 0 to 1.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub(crate) fail_rate: f64,
    /// Jobs the mock account runs at once; submissions beyond are refused
    /// with 429 like a real provider's account limit.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) concurrency: u32,
    /// The credentials the mock accepts: the RunningHub apiKey, the Tencent
    /// SecretId:SecretKey, or the Kling AccessKey:SecretKey. Required for
    /// every kind but sim.
    #[arg(long, value_name = "C", required_if_eq_any = [("kind", "runninghub"), ("kind", "hunyuan"), ("kind", "kling")])]
    pub(crate) credentials: Option<String>,
    /// Share of callbacks (webhooks) never sent, 0 to 1.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub(crate) drop_webhooks: f64,
    /// Share of API answers held back for --slow-delay after the request took
    /// effect, 0 to 1.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub(crate) slow: f64,
    /// How long a slow answer is held back.
    #[arg(long, value_name = "DURATION", default_value = "35s", value_parser = parse_duration)]
    pub(crate) slow_delay: Duration,
    /// Share of API answers replaced by an HTML page with status 200, 0 to 1.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub(crate) garbage: f64,
    /// Share of API requests answered 502 without taking effect, 0 to 1.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_rate)]
    pub(crate) error_rate: f64,
    /// Output URLs stop working this long after their job finished.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) url_ttl: Option<Duration>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    gengate_core::units::parse_duration(s)
}

fn parse_latency(s: &str) -> Result<(Duration, Duration), String> {
    gengate_core::units::parse_duration_range(s)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err("must be between 0 and 1".into())
    }
}

fn parse_user(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("1..64 characters of letters, digits, - _ . @".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn media_gc_takes_the_store_flags() {
        let cli = Cli::try_parse_from([
            "gengate",
            "media",
            "gc",
            "--dry-run",
            "--data-dir",
            "/tmp/x",
        ])
        .unwrap();
        let Command::Media {
            command: MediaCommand::Gc { dry_run, store },
        } = cli.command
        else {
            panic!("wrong command")
        };
        assert!(dry_run);
        assert_eq!(
            store.data_dir.as_deref(),
            Some(std::path::Path::new("/tmp/x"))
        );
    }

    #[test]
    fn flags_parse_and_bad_values_are_refused() {
        let cli = Cli::try_parse_from([
            "gengate",
            "mock-provider",
            "--kind",
            "sim",
            "--latency",
            "500ms..1s",
            "--concurrency",
            "8",
        ])
        .unwrap();
        let Command::MockProvider(m) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(
            m.latency,
            (Duration::from_millis(500), Duration::from_secs(1))
        );
        for bad in [
            vec![
                "gengate",
                "mock-provider",
                "--kind",
                "sim",
                "--latency",
                "fast",
            ],
            vec![
                "gengate",
                "mock-provider",
                "--kind",
                "sim",
                "--fail-rate",
                "2",
            ],
            vec![
                "gengate",
                "mock-provider",
                "--kind",
                "sim",
                "--concurrency",
                "0",
            ],
            vec!["gengate", "mock-provider", "--kind", "kling2"],
            vec!["gengate", "serve", "--listen", "nowhere"],
            vec!["gengate", "keys", "create", "--user", "a b"],
            vec!["gengate", "media", "gc", "--dry-run=maybe"],
            vec!["gengate", "media"],
        ] {
            assert!(
                Cli::try_parse_from(&bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
