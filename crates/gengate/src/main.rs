//! The `gengate` binary: parses the command line, sets up logging, builds the
//! runtime and runs the chosen subcommand. Exit code 0 on success, 1 on error
//! (with the cause chain on stderr), 2 for bad usage (from clap).

mod cli;
mod handoff;

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use gengate_config::{Config, LogFormat, ProcessEnv};
use gengate_core::Role;
use gengate_core::time::rfc3339;
use gengate_mock::sim::Behavior;
use gengate_mock::{self as mock, Faults, MockConfig};
use gengate_server::doctor::redact as redact_url;
use gengate_server::{app, keys, now_ms};
use gengate_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use cli::{
    BenchArgs, CapacityArgs, Cli, Command, KeysCommand, LogFormatArg, MediaCommand, MockKind,
    StoreArgs, UserArgs,
};
use gengate_bench::BenchOptions;
use gengate_bench::capacity::{CapacityOptions, SpawnOptions};
use gengate_bench::report;
use gengate_bench::scenario::UserOptions;

fn main() {
    let cli = Cli::parse();
    cli::check(&cli);
    // The load generator runs its own runtimes, one per load thread.
    let cli = match cli.command {
        Command::Bench(args) => exit_with(bench(*args)),
        Command::Capacity(args) => exit_with(capacity(*args)),
        command => Cli { command },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn exit_with(result: anyhow::Result<()>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn user_options(u: &UserArgs) -> UserOptions {
    UserOptions {
        mix: u.mix,
        think: u.think,
        follow: u.follow,
        poll_interval: u.poll_interval,
        result_timeout: u.result_timeout,
        model: u.model.clone(),
    }
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let opts = BenchOptions {
        target: args.target,
        also: args.also,
        scenario: args.scenario,
        connections: if args.rate.is_some() {
            args.rate_connections
        } else {
            args.connections
        },
        rate: args.rate,
        duration: args.duration,
        requests: args.requests,
        headers: args.headers,
        admin_key: args.user.admin_key.clone(),
        threads: args.user.threads.map(usize::from),
        timeout: args.user.timeout,
        think: args.pause,
        user: user_options(&args.user),
        users: args.users,
        seed: args.seed,
        progress: !args.json,
    };
    let summary = gengate_bench::bench(&opts)?;
    let stdout = std::io::stdout();
    if args.json {
        report::json(&summary, stdout.lock())?;
    } else {
        report::terminal(&summary, stdout.lock())?;
    }
    if let Some(path) = &args.report {
        report::write_file(
            path,
            |w| report::markdown(&summary, w),
            |w| report::html(&summary, w),
        )
        .with_context(|| format!("writing the report {}", path.display()))?;
    }
    Ok(())
}

fn capacity(args: CapacityArgs) -> anyhow::Result<()> {
    let spawn = if args.spawn {
        Some(SpawnOptions {
            exe: std::env::current_exe().context("finding the gengate binary to start")?,
            provider_concurrency: args.provider_concurrency,
            provider_latency: args.provider_latency.clone(),
        })
    } else {
        None
    };
    let opts = CapacityOptions {
        target: args.target,
        spawn,
        server: args.server,
        slo: args.slo.0,
        slo_text: args.slo.1,
        pin_cpus: args.pin_cpus.map(usize::from),
        server_pid: args.server_pid,
        users: args.users,
        start_users: args.start_users,
        max_users: args.max_users,
        step: args.step,
        tolerance: 0.1,
        scenarios: args.scenarios,
        user: user_options(&args.user),
        admin_key: args.user.admin_key.clone(),
        headers: args.headers,
        threads: args.user.threads.map(usize::from),
        timeout: args.user.timeout,
        probes: !args.no_probes,
    };
    let report = gengate_bench::capacity::run(&opts)?;
    let stdout = std::io::stdout();
    if args.json {
        report.json(stdout.lock())?;
    } else {
        report.terminal(stdout.lock())?;
    }
    for path in &args.report {
        report::write_file(path, |w| report.markdown(w), |w| report.html(w))
            .with_context(|| format!("writing the report {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let mut cfg = load_config(&args.store)?;
            if let Some(listen) = args.listen {
                cfg.server.listen = listen;
            }
            if let Some(name) = args.node_name {
                cfg.cluster.node_name = Some(name);
            }
            if let Some(f) = args.log_format {
                cfg.log.format = match f {
                    LogFormatArg::Text => LogFormat::Text,
                    LogFormatArg::Json => LogFormat::Json,
                };
            }
            init_logging(cfg.log.format, &cfg.log.level)?;
            report_warnings(&cfg);
            serve(cfg, args.handoff).await
        }
        Command::Keys { command } => {
            init_logging(LogFormat::Text, "warn")?;
            keys_command(command).await
        }
        Command::Media { command } => {
            init_logging(LogFormat::Text, "warn")?;
            media_command(command).await
        }
        Command::MockProvider(args) => {
            init_logging(LogFormat::Text, "info")?;
            mock_provider(args).await
        }
        Command::Migrate { store } => {
            init_logging(LogFormat::Text, "warn")?;
            migrate(&load_config(&store)?).await
        }
        Command::Doctor(args) => {
            init_logging(LogFormat::Text, "error")?;
            doctor(args).await
        }
        Command::Bench(_) | Command::Capacity(_) => {
            unreachable!("bench and capacity run before the runtime starts")
        }
    }
}

fn load_config(args: &StoreArgs) -> anyhow::Result<Config> {
    let mut cfg = Config::load(args.config.as_deref(), &ProcessEnv)?;
    if let Some(dir) = &args.data_dir {
        cfg.server.data_dir.clone_from(dir);
    }
    if let Some(url) = &args.store_url {
        cfg.store.url = Some(url.clone());
    }
    // (`serve` sets up logging after loading, and reports them then.)
    if tracing::dispatcher::has_been_set() {
        report_warnings(&cfg);
    }
    Ok(cfg)
}

/// Logs what loading the configuration ignored.
fn report_warnings(cfg: &Config) {
    for warning in &cfg.warnings {
        tracing::warn!("{warning}");
    }
}

fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter =
        Targets::from_str(level).map_err(|e| anyhow::anyhow!("config key `log.level`: {e}"))?;
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(layer).try_init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// How this process opens its store: pool and lease from the config, and a
/// node id that is the configured name (or the host name) plus this
/// process's own suffix.
fn open_options(cfg: &Config, migrate: bool) -> gengate_store::OpenOptions {
    let name = cfg.cluster.node_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".to_owned())
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    gengate_store::OpenOptions {
        node_id: format!("{name}-{}-{:04x}", std::process::id(), nanos & 0xffff),
        lease: cfg.cluster.lease.0,
        pool_size: cfg.store.pool_size,
        pool_timeout: cfg.store.pool_timeout.0,
        migrate,
        ca_file: cfg.tls.ca_file.clone(),
    }
}

async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&cfg.server.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.server.data_dir.display()))?;
    let url = cfg.store_url();
    gengate_store::open_with(&url, &open_options(cfg, false))
        .await
        .with_context(|| format!("opening store {}", redact_url(&url)))
}

async fn migrate(cfg: &Config) -> anyhow::Result<()> {
    let url = cfg.store_url();
    if url.starts_with("sqlite://") {
        std::fs::create_dir_all(&cfg.server.data_dir).with_context(|| {
            format!("creating data directory {}", cfg.server.data_dir.display())
        })?;
    }
    let (from, to) = gengate_store::migrate(&url, &open_options(cfg, true))
        .await
        .with_context(|| format!("migrating store {}", redact_url(&url)))?;
    if from == to {
        println!(
            "store {} is up to date (schema version {to})",
            redact_url(&url)
        );
    } else {
        println!(
            "store {} migrated from schema version {from} to {to}",
            redact_url(&url)
        );
    }
    Ok(())
}

async fn doctor(args: cli::DoctorArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.store)?;
    let opts = gengate_server::doctor::Options {
        nodes: args.nodes,
        connections: args.connections,
        skip_providers: args.skip_providers,
    };
    let findings = gengate_server::doctor::run(&cfg, &opts).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        print!("{}", gengate_server::doctor::render(&findings));
    }
    if findings
        .iter()
        .any(|f| f.level == gengate_server::doctor::Level::Fail)
    {
        std::process::exit(1);
    }
    Ok(())
}

/// On SIGUSR2, starts a successor with this process's own command line; it
/// takes the listening socket over (`--handoff`), and this process drains.
/// (systemd: `ExecReload=/bin/kill -USR2 $MAINPID`.)
async fn respawn_on_usr2() {
    let Ok(mut usr2) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
    else {
        return;
    };
    while usr2.recv().await.is_some() {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => {
                tracing::error!(error = %e, "cannot find this binary to restart: {e}");
                continue;
            }
        };
        match std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => tracing::info!(
                pid = child.id(),
                "SIGUSR2: started a successor (pid {})",
                child.id()
            ),
            Err(e) => tracing::error!(error = %e, "SIGUSR2: starting a successor failed: {e}"),
        }
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

async fn serve(cfg: Config, handoff: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let taken = match &handoff {
        Some(path) => handoff::take(path).await?,
        None => None,
    };
    let took_over = taken.is_some();
    let (listener, predecessor) = match taken {
        Some((listener, pred)) => {
            let listener = TcpListener::from_std(listener)?;
            tracing::info!(address = %listener.local_addr()?, "took the listening socket over from the running process");
            (listener, Some(pred))
        }
        None => (
            TcpListener::bind(cfg.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.server.listen))?,
            None,
        ),
    };
    let addr = listener.local_addr()?;
    // Everything that can fail comes before the predecessor is told to go:
    // if this process cannot start, the predecessor goes on serving.
    let store = open_store(&cfg).await?;
    if let Some(secret) = app::ensure_first_admin_key(&*store).await? {
        println!(
            "First start: created an admin API key. It is shown only this once; keep it safe:\n\n    {secret}\n"
        );
    }
    let shutdown = CancellationToken::new();
    let public_url = cfg.public_url(addr);
    let shared = store.shared();
    let server = app::build(&cfg, store, &public_url, shutdown.clone())?;
    if let Some(mut pred) = predecessor {
        pred.go()?;
        if !shared {
            // One dispatcher per SQLite store: the predecessor's stops
            // first. Connections wait in the socket's queue meanwhile.
            pred.wait_done(cfg.server.shutdown_grace.0 + std::time::Duration::from_secs(30))
                .await;
        }
    }
    let successor = Arc::new(std::sync::Mutex::new(None));
    if let Some(path) = &handoff {
        use std::os::fd::AsFd as _;
        let fd = listener.as_fd().try_clone_to_owned()?;
        handoff::offer(path, fd, shutdown.clone(), successor.clone(), took_over)?;
        tokio::spawn(respawn_on_usr2());
    }
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutdown requested; draining");
            shutdown.cancel();
        }
    });
    tracing::info!(address = %addr, "gengate listening on http://{addr} (store {})", redact_url(&cfg.store_url()));
    println!("gengate listening on http://{addr}");
    handoff::notify_ready();
    app::serve(listener, server, shutdown).await?;
    handoff::done(&successor);
    tracing::info!("gengate stopped");
    Ok(())
}

async fn keys_command(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            user,
            role,
            admin,
            store,
        } => {
            let store = open_store(&load_config(&store)?).await?;
            let key = keys::generate();
            let role = if admin { Role::Admin } else { role };
            let info = store
                .create_key(&user, role, &key.hash, &key.prefix, now_ms())
                .await?;
            println!("{}", key.secret);
            eprintln!(
                "created key {} ({}) for user {} with role {}; the key is shown only this once",
                info.id,
                info.prefix,
                info.user_name,
                role.as_str()
            );
        }
        KeysCommand::List { store } => {
            let store = open_store(&load_config(&store)?).await?;
            println!(
                "{:<6} {:<20} {:<7} {:<12} {:<25} REVOKED",
                "ID", "USER", "ROLE", "PREFIX", "CREATED"
            );
            for k in store.list_keys().await? {
                println!(
                    "{:<6} {:<20} {:<7} {:<12} {:<25} {}",
                    k.id,
                    k.user_name,
                    k.role.as_str(),
                    k.prefix,
                    rfc3339(k.created_at),
                    k.revoked_at.map_or_else(|| "-".to_owned(), rfc3339)
                );
            }
        }
        KeysCommand::Revoke { key, store } => {
            let store = open_store(&load_config(&store)?).await?;
            if !store.revoke_key(&key, now_ms()).await? {
                anyhow::bail!("no live key has id or prefix {key:?}; see `gengate keys list`");
            }
            eprintln!("revoked key {key}");
        }
    }
    Ok(())
}

async fn media_command(command: MediaCommand) -> anyhow::Result<()> {
    match command {
        MediaCommand::Gc { dry_run, store } => {
            let cfg = load_config(&store)?;
            let db = open_store(&cfg).await?;
            let public_url = cfg.public_url(cfg.server.listen);
            let media = app::media(&cfg, &public_url, &app::outbound(&cfg)?)?;
            let retention_ms = cfg.media.retention.map(|d| d.0.as_millis() as i64);
            let report =
                gengate_engine::media::gc::collect(&*db, &media, retention_ms, now_ms(), dry_run)
                    .await?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            for key in &report.orphaned {
                println!("{verb} orphan {key}");
            }
            for key in &report.expired {
                println!("{verb} expired original {key}");
            }
            println!(
                "scanned {} objects: {} orphaned, {} past retention{}",
                report.scanned,
                report.orphaned.len(),
                report.expired.len(),
                if report.failed > 0 {
                    format!(", {} could not be deleted", report.failed)
                } else {
                    String::new()
                }
            );
            if report.failed > 0 {
                anyhow::bail!("{} objects could not be deleted", report.failed);
            }
            Ok(())
        }
    }
}

async fn mock_provider(args: cli::MockArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let tls = if args.tls {
        Some(mock_tls(&args, addr)?)
    } else {
        None
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let behavior = Behavior {
        latency_min: args.latency.0,
        latency_max: args.latency.1,
        fail_rate: args.fail_rate,
    };
    let mut cfg = MockConfig::new(
        behavior,
        args.concurrency as usize,
        &format!("{scheme}://{addr}"),
        args.credentials.as_deref().unwrap_or(""),
    );
    cfg.faults = Faults {
        drop_webhooks: args.drop_webhooks,
        slow_rate: args.slow,
        slow_delay: args.slow_delay,
        garbage_rate: args.garbage,
        error_rate: args.error_rate,
    };
    cfg.url_ttl = args.url_ttl;
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    let (kind, name) = match args.kind {
        MockKind::Sim => (mock::MockKind::Sim, "sim"),
        MockKind::Runninghub => (mock::MockKind::Runninghub, "runninghub"),
        MockKind::Hunyuan => (mock::MockKind::Hunyuan, "hunyuan"),
        MockKind::Kling => (mock::MockKind::Kling, "kling"),
    };
    tracing::info!(address = %addr, "mock provider ({name}) listening on {scheme}://{addr}");
    println!("mock-provider {name} listening on {scheme}://{addr}");
    mock::serve(kind, listener, cfg, tls, shutdown)
        .await
        .context("mock provider failed")?;
    Ok(())
}

/// The mock's TLS: the given certificate, or one for its address (and
/// `localhost`) from a throwaway CA whose PEM goes to `--tls-ca-out`.
fn mock_tls(
    args: &cli::MockArgs,
    addr: std::net::SocketAddr,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use gengate_mock::tls::{Leaf, ThrowawayCa, server_config_from_files};
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return server_config_from_files(cert, key).map_err(|e| anyhow::anyhow!(e));
    }
    let ca = ThrowawayCa::new().map_err(|e| anyhow::anyhow!(e))?;
    let mut names = vec![addr.ip().to_string(), "localhost".to_owned()];
    if addr.ip().is_unspecified() {
        names.push("127.0.0.1".to_owned());
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let config = ca
        .server_config(&Leaf::for_names(&names))
        .map_err(|e| anyhow::anyhow!(e))?;
    match &args.tls_ca_out {
        Some(path) => std::fs::write(path, ca.pem())
            .with_context(|| format!("writing the CA certificate to {}", path.display()))?,
        None => eprintln!(
            "mock-provider: the throwaway CA's certificate (trust it with tls.ca_file):\n{}",
            ca.pem()
        ),
    }
    Ok(config)
}
