//! The command line: one clap-derive tree; every flag documented, bad values
//! refused by clap with the flag named.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gengate_bench::Scenario;
use gengate_bench::scenario::{Follow, HeaderName, HeaderValue, Mix};
use gengate_bench::units::{ServerSpec, Slo};
use gengate_core::Role;

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
    /// Apply the store's pending schema migrations (PostgreSQL, MySQL; SQLite
    /// migrates itself). Idempotent, and safe to run from several hosts at
    /// once: runners take a database lock. Run it before starting (or
    /// upgrading) the nodes; `serve` refuses an unmigrated shared store.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check a deployment: store reachable and migrated, pool size × nodes
    /// within the database's max_connections, database memory against RAM,
    /// open-file limit, disk space, clock skew, media backend writable,
    /// Redis, and each provider's credentials. Prints PASS/WARN/FAIL with
    /// the fix for each; exits 1 when anything fails.
    Doctor(DoctorArgs),
    /// Run a mock provider that speaks a provider's wire protocol, keeps a
    /// ledger at GET /_mock/stats and refuses work beyond its concurrency.
    MockProvider(MockArgs),
    /// Load-test a gengate (or any HTTP URL): closed loop (-c connections as
    /// fast as they go) or open loop (--rate, latency corrected for
    /// coordinated omission); HDR percentiles, status codes, errors, bytes
    /// per response and, for created tasks, time to result.
    Bench(Box<BenchArgs>),
    /// Find how many concurrent users a server carries: ramps virtual users
    /// of the mixed scenario until the SLO breaks, measures CPU, memory,
    /// bytes, store writes and provider throughput, names the binding limit
    /// for the server you describe, and answers "N users at once?".
    Capacity(Box<CapacityArgs>),
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
    /// This node's name among nodes sharing a store [default: cluster.node_name, or the host name].
    #[arg(long, value_name = "NAME")]
    pub(crate) node_name: Option<String>,
    /// Restart without refusing a request: if a gengate serves at this Unix
    /// socket, take its listening socket over (it drains and exits);
    /// then serve takeovers here for the next restart. SIGUSR2 makes a
    /// running gengate start its own successor this way.
    #[arg(long, value_name = "PATH")]
    pub(crate) handoff: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Nodes that will share the store [default: those seen recently, or 1].
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) nodes: u32,
    /// Client connections one node should hold at once (for the open-file check).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub(crate) connections: u64,
    /// Do not call the providers to check their credentials.
    #[arg(long)]
    pub(crate) skip_providers: bool,
    /// Print the findings as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key for a user (created on first use) and print it once.
    Create {
        /// The user's name.
        #[arg(long, value_name = "NAME", value_parser = parse_user)]
        user: String,
        /// The key's role: `user` (its own tasks), `admin` (everything) or
        /// `service` (an app's backend, acting for the end user each request
        /// names in `X-Gengate-User`).
        #[arg(long, value_name = "ROLE", value_parser = parse_role, default_value = "user",
            conflicts_with = "admin")]
        role: Role,
        /// The same as --role admin.
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
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fail_rate)]
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
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fail_rate)]
    pub(crate) drop_webhooks: f64,
    /// Share of API answers held back for --slow-delay after the request took
    /// effect, 0 to 1.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fail_rate)]
    pub(crate) slow: f64,
    /// How long a slow answer is held back.
    #[arg(long, value_name = "DURATION", default_value = "35s", value_parser = parse_duration)]
    pub(crate) slow_delay: Duration,
    /// Share of API answers replaced by an HTML page with status 200, 0 to 1.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fail_rate)]
    pub(crate) garbage: f64,
    /// Share of API requests answered 502 without taking effect, 0 to 1.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fail_rate)]
    pub(crate) error_rate: f64,
    /// Output URLs stop working this long after their job finished.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) url_ttl: Option<Duration>,
    /// Serve every route (output URLs included) over HTTPS, with a
    /// certificate from a throwaway CA made at start (or --tls-cert/--tls-key).
    #[arg(long)]
    pub(crate) tls: bool,
    /// Write the throwaway CA's certificate (PEM) here, for the client to
    /// trust (gengate's `tls.ca_file`).
    #[arg(
        long,
        value_name = "PATH",
        requires = "tls",
        conflicts_with = "tls_cert"
    )]
    pub(crate) tls_ca_out: Option<std::path::PathBuf>,
    /// Serve this certificate chain (PEM) instead of a throwaway one.
    #[arg(long, value_name = "PATH", requires_all = ["tls", "tls_key"])]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", requires_all = ["tls", "tls_cert"])]
    pub(crate) tls_key: Option<std::path::PathBuf>,
}

/// Rules across flags that clap cannot express; a breach exits 2 with
/// clap's usage error, naming the flag.
pub(crate) fn check(cli: &Cli) {
    use clap::CommandFactory;
    if let Command::MockProvider(args) = &cli.command
        && matches!(args.kind, MockKind::Hunyuan | MockKind::Kling)
        && !args
            .credentials
            .as_deref()
            .and_then(|c| c.split_once(':'))
            .is_some_and(|(id, secret)| !id.is_empty() && !secret.is_empty())
    {
        Cli::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                "--credentials for hunyuan and kling must be ID:SECRET (SecretId:SecretKey, AccessKey:SecretKey)",
            )
            .exit();
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    gengate_core::units::parse_duration(s)
}

/// The load and what to send, shared by `bench` and `capacity`.
#[derive(Debug, Clone, Args)]
pub(crate) struct UserArgs {
    /// Weights of a virtual user's actions in the mixed scenario.
    #[arg(
        long,
        value_name = "MIX",
        default_value = "create=1,get=2,list=3,gallery=4"
    )]
    pub(crate) mix: Mix,
    /// Mean think time between a virtual user's actions (exponential, capped at 4x).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub(crate) think: Duration,
    /// How a virtual user follows a task it created until it finishes.
    #[arg(long, value_name = "HOW", default_value = "poll")]
    pub(crate) follow: Follow,
    /// Pause between polls when following by polling.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub(crate) poll_interval: Duration,
    /// Give up following a created task after this long (counted unfinished).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub(crate) result_timeout: Duration,
    /// The model of the tasks bench creates.
    #[arg(long, value_name = "MODEL", default_value = "sim-image")]
    pub(crate) model: String,
    /// Admin API key used to make bench users and keys on the target (or
    /// give it as -H 'Authorization: Bearer …').
    #[arg(long, value_name = "KEY")]
    pub(crate) admin_key: Option<String>,
    /// Request timeout: a request without a full answer by then is a timeout error.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// OS threads generating load [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The server: a gengate's base URL, or any http:// URL for the raw scenario.
    #[arg(long, value_name = "URL")]
    pub(crate) target: String,
    /// Another node of the same cluster (sharing --target's store): the
    /// connections are spread round-robin over --target and these.
    #[arg(long, value_name = "URL")]
    pub(crate) also: Vec<String>,
    /// What to send [default: raw for a URL with a path or a server that is
    /// not a gengate; on a gengate, mixed with an admin key, else gallery].
    #[arg(short = 's', long, value_name = "NAME", value_parser = parse_scenario)]
    pub(crate) scenario: Option<Scenario>,
    /// Connections (closed loop), or virtual users in the mixed scenario.
    #[arg(short = 'c', long, value_name = "N", default_value = "50", value_parser = parse_connections)]
    pub(crate) connections: usize,
    /// Open loop: this many requests per second in total, at constant
    /// intervals, latency measured from each request's planned time (e.g. 5000, 2k).
    #[arg(short = 'R', long, value_name = "R", value_parser = parse_rate, conflicts_with = "connections")]
    pub(crate) rate: Option<f64>,
    /// Connections that carry the open-loop rate.
    #[arg(long, value_name = "N", default_value = "64", requires = "rate", value_parser = parse_connections)]
    pub(crate) rate_connections: usize,
    /// Stop after this long [default: 10s unless --requests is given].
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Stop after this many requests (e.g. 100000, 100k).
    #[arg(short = 'n', long, value_name = "N", value_parser = parse_count)]
    pub(crate) requests: Option<u64>,
    /// Add a header to every request, like curl: -H 'Accept-Encoding: gzip'.
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// Print the result as JSON on stdout instead of the readable summary.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the result to FILE.md (Markdown) or FILE.html.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Closed loop: pause this long between a connection's requests (0: as
    /// fast as possible). The mixed scenario uses --think.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub(crate) pause: Duration,
    /// Distinct users to make on the target [default: one per connection, at most 1000].
    #[arg(long, value_name = "N", value_parser = parse_connections)]
    pub(crate) users: Option<usize>,
    /// Create this many public tasks before the run (data for list and gallery).
    #[arg(long, value_name = "N", default_value = "0", value_parser = parse_seed)]
    pub(crate) seed: u64,
    #[command(flatten)]
    pub(crate) user: UserArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CapacityArgs {
    /// The gengate to measure (its admin key with --admin-key).
    #[arg(long, value_name = "URL", required_unless_present = "spawn")]
    pub(crate) target: Option<String>,
    /// Start a fresh gengate (this binary, sim provider, temporary data dir)
    /// and measure it; its pid is known, so CPU and memory are measured.
    #[arg(long, conflicts_with_all = ["target", "server_pid"])]
    pub(crate) spawn: bool,
    /// With --spawn: tasks in flight the simulated provider account allows
    /// (set it to your real account's limit).
    #[arg(long, value_name = "N", default_value = "4", requires = "spawn", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) provider_concurrency: u32,
    /// With --spawn: how long the simulated provider takes per task.
    #[arg(long, value_name = "RANGE", default_value = "2s..6s", requires = "spawn", value_parser = parse_latency_text)]
    pub(crate) provider_latency: String,
    /// The server you plan for: cpus, memory, bandwidth, and the memory the
    /// OS and the database keep (os=, db=).
    #[arg(long, value_name = "SPEC", default_value = "cpus=4,memory=4GiB,bandwidth=3Mbps", value_parser = parse_server)]
    pub(crate) server: ServerSpec,
    /// What must hold: a latency percentile and the share of failed requests.
    #[arg(long, value_name = "SLO", default_value = "p95=200ms,errors=0.1%", value_parser = parse_slo)]
    pub(crate) slo: (Slo, String),
    /// The question: can this many users use it at once?
    #[arg(long, value_name = "N", default_value = "100", value_parser = parse_connections)]
    pub(crate) users: usize,
    /// Confine the server to cores 0..N-1 (taskset) to rehearse a smaller
    /// box; the load generator takes the remaining cores.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) pin_cpus: Option<u16>,
    /// The pid of the --target server, to read its CPU and memory from /proc
    /// (and to pin it with --pin-cpus).
    #[arg(long, value_name = "PID")]
    pub(crate) server_pid: Option<u32>,
    /// Virtual users at the first step; each step doubles them until the SLO breaks.
    #[arg(long, value_name = "N", default_value = "10", value_parser = parse_connections)]
    pub(crate) start_users: usize,
    /// Stop ramping at this many users.
    #[arg(long, value_name = "N", default_value = "2000", value_parser = parse_connections)]
    pub(crate) max_users: usize,
    /// How long each step of the ramp runs.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) step: Duration,
    /// Ramp these scenarios too (comma-separated; mixed is the one the limits use).
    #[arg(long, value_name = "NAMES", default_value = "mixed", value_delimiter = ',', value_parser = parse_scenario)]
    pub(crate) scenarios: Vec<Scenario>,
    /// Skip the probes after the ramp (idle connections, a burst of creates).
    #[arg(long)]
    pub(crate) no_probes: bool,
    /// Write the report to FILE.md (Markdown) or FILE.html (with SVG
    /// charts); repeat for both.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Vec<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Add a header to every request: -H 'Name: value'.
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    #[command(flatten)]
    pub(crate) user: UserArgs,
}

fn parse_latency_text(s: &str) -> Result<String, String> {
    parse_latency(s).map(|_| s.to_owned())
}

fn parse_server(s: &str) -> Result<ServerSpec, String> {
    gengate_bench::units::parse_server(s)
}

fn parse_slo(s: &str) -> Result<(Slo, String), String> {
    gengate_bench::units::parse_slo(s).map(|slo| (slo, s.to_owned()))
}

fn parse_count(s: &str) -> Result<u64, String> {
    gengate_bench::units::parse_count(s)
}

fn parse_seed(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        Ok(0)
    } else {
        parse_count(s)
    }
}

fn parse_connections(s: &str) -> Result<usize, String> {
    let n = parse_count(s)?;
    if n > 1_000_000 {
        return Err("at most 1M".into());
    }
    Ok(n as usize)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    gengate_bench::units::parse_rate(s)
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    s.parse()
}

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    gengate_bench::scenario::parse_header(s)
}

fn parse_latency(s: &str) -> Result<(Duration, Duration), String> {
    gengate_core::units::parse_duration_range(s)
}

fn parse_fail_rate(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err("must be between 0 and 1".into())
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?} is not a role: user, admin or service"))
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
    fn bench_flags_read_like_wrk_and_oha() {
        let cli = Cli::try_parse_from([
            "gengate",
            "bench",
            "--target",
            "http://127.0.0.1:8080/",
            "-R",
            "2k",
            "-d",
            "30s",
            "-n",
            "10k",
            "-H",
            "Accept-Encoding: gzip",
            "--json",
        ])
        .unwrap();
        let Command::Bench(b) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(b.rate, Some(2000.0));
        assert_eq!(b.duration, Some(Duration::from_secs(30)));
        assert_eq!(b.requests, Some(10_000));
        assert_eq!(b.headers.len(), 1);
        assert!(b.json);
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
            vec![
                "gengate",
                "bench",
                "--target",
                "http://x/",
                "-c",
                "4",
                "-R",
                "10",
            ],
            vec!["gengate", "bench", "--target", "http://x/", "-n", "0"],
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
