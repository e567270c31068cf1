//! Wiring: builds the providers, dispatcher and services from a [`Config`],
//! and runs the HTTP server and the dispatcher together until shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use gengate_core::Role;
use gengate_mock::sim::{Behavior, HttpSim, InProcessSim};
use gengate_net::{Outbound, Trust};
use gengate_providers::Provider;
use gengate_providers::hunyuan::{Hunyuan, HunyuanSettings};
use gengate_providers::kling::{self, Kling, KlingSettings};
use gengate_providers::runninghub::{self, RunningHub, RunningHubSettings};
use gengate_store::Store;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use gengate_config::{Config, MediaBackend, ProviderConfig, ProviderKind};
use gengate_engine::dispatch::{CallbackTarget, Dispatcher, HealthSettings, LaneConfig, Settings};
use gengate_engine::hub::Hub;
use gengate_engine::media::{self, Backend, Media, S3Settings};
use gengate_engine::metrics::Metrics;
use gengate_engine::redis::Redis;
use gengate_engine::webhooks::{self, Webhooks};

use crate::service::accounts::AccountService;
use crate::service::admin::AdminService;
use crate::service::auth::AuthService;
use crate::service::callbacks::CallbackService;
use crate::service::events::EventService;
use crate::service::tasks::TaskService;
use crate::service::uploads::{UploadRules, UploadService};
use crate::service::webhooks::WebhookService;
use crate::state::{App, AppState};
use crate::{api, keys, now_ms};

/// Everything `serve` runs.
pub struct Server {
    /// What the HTTP handlers share.
    pub app: App,
    pub store: Arc<dyn Store>,
    pub dispatcher: Dispatcher,
    pub hub: Arc<Hub>,
    /// Sends client webhooks from the store's outbox.
    pub webhooks: Webhooks,
    /// Carries task changes between nodes (`cluster.redis_url`), and how
    /// often to poll for them when nothing else does.
    pub redis: Option<Arc<Redis>>,
    pub event_poll: Duration,
    pub shutdown_grace: Duration,
    pub idle_timeout: Duration,
}

/// The builder of every outbound client for `cfg`: the TLS roots it
/// trusts (`tls.ca_file` added to Mozilla's and the system's).
///
/// # Errors
/// When `tls.ca_file` cannot be read or holds no certificate.
pub fn outbound(cfg: &Config) -> anyhow::Result<Outbound> {
    Ok(Outbound::new(Trust::load(cfg.tls.ca_file.as_deref())?))
}

/// The provider entries of `cfg`, as the dispatcher drives them.
///
/// # Errors
/// When a provider cannot be set up.
pub fn provider_lanes(
    cfg: &Config,
    public_url: &str,
    net: &Outbound,
) -> anyhow::Result<HashMap<String, LaneConfig>> {
    providers(cfg, &format!("{public_url}/media"), net)
}

fn providers(
    cfg: &Config,
    media_url: &str,
    net: &Outbound,
) -> anyhow::Result<HashMap<String, LaneConfig>> {
    let mut lanes = HashMap::new();
    for (name, p) in &cfg.providers {
        let client = || {
            net.provider(p.timeout.0, p.proxy.as_deref())
                .map_err(|e| anyhow::anyhow!("provider {name}: {e}"))
        };
        let (provider, resubmit_default): (Arc<dyn Provider>, bool) = match p.kind {
            ProviderKind::Sim => match &p.base_url {
                Some(url) => (
                    Arc::new(
                        HttpSim::new(name, url, client()?)
                            .map_err(|e| anyhow::anyhow!("provider {name}: {e}"))?,
                    ),
                    true,
                ),
                None => {
                    let behavior = Behavior {
                        latency_min: p.latency.0,
                        latency_max: p.latency.1,
                        fail_rate: p.fail_rate,
                    };
                    (
                        Arc::new(InProcessSim::new(
                            name,
                            behavior,
                            cfg.media_dir(),
                            media_url,
                        )),
                        true,
                    )
                }
            },
            ProviderKind::Runninghub | ProviderKind::Hunyuan | ProviderKind::Kling => {
                (adapter(name, p, client()?)?, false)
            }
        };
        let callbacks = callback_target(cfg, name, p);
        if p.callbacks && callbacks.is_none() && provider.supports_callbacks() {
            tracing::info!(provider = %name, "provider {name}: no public URL (server.public_url or callback_base_url), so it is followed by polling alone");
        }
        lanes.insert(
            name.clone(),
            LaneConfig {
                provider,
                concurrency: p.concurrency as usize,
                resubmit_unknown: p.resubmit_unknown.unwrap_or(resubmit_default),
                health: HealthSettings {
                    failures: p.breaker_failures,
                    cooldown_ms: p.breaker_cooldown.0.as_millis() as i64,
                    max_cooldown_ms: (p.breaker_cooldown.0.as_millis() as i64 * 16).max(300_000),
                    pause_ms: p.account_pause.0.as_millis() as i64,
                    recover_ms: 60_000,
                    probe_timeout_ms: (p.timeout.0.as_millis() as i64) * 2 + 5_000,
                },
                poll_rate: p.poll_rate,
                callbacks,
                daily_credits: p.daily_credits,
            },
        );
    }
    Ok(lanes)
}

/// The adapter of a real provider entry.
fn adapter(
    name: &str,
    p: &ProviderConfig,
    client: reqwest::Client,
) -> anyhow::Result<Arc<dyn Provider>> {
    let err = |e: String| anyhow::anyhow!("provider {name}: {e}");
    let retry_after = p.retry_after.0;
    Ok(match p.kind {
        ProviderKind::Runninghub => Arc::new(
            RunningHub::new(
                name,
                RunningHubSettings {
                    base_url: p
                        .base_url
                        .as_deref()
                        .unwrap_or(runninghub::DEFAULT_BASE_URL)
                        .to_owned(),
                    api_key: p.api_key.expose().to_owned(),
                    client,
                    retry_after,
                },
            )
            .map_err(err)?,
        ),
        ProviderKind::Hunyuan => Arc::new(
            Hunyuan::new(
                name,
                HunyuanSettings {
                    base_url: p.base_url.as_deref().map(str::to_owned),
                    secret_id: p.secret_id.expose().to_owned(),
                    secret_key: p.secret_key.expose().to_owned(),
                    region: p.region.clone(),
                    client,
                    retry_after,
                },
            )
            .map_err(err)?,
        ),
        ProviderKind::Kling => Arc::new(
            Kling::new(
                name,
                KlingSettings {
                    base_url: p
                        .base_url
                        .as_deref()
                        .unwrap_or(kling::DEFAULT_BASE_URL)
                        .to_owned(),
                    access_key: p.access_key.expose().to_owned(),
                    secret_key: p.secret_key.expose().to_owned(),
                    client,
                    retry_after,
                    token_ttl: Duration::from_secs(1800),
                },
            )
            .map_err(err)?,
        ),
        ProviderKind::Sim => anyhow::bail!("provider {name}: sim has no adapter of this kind"),
    })
}

/// The key of a provider entry's callback tokens: derived from the
/// provider's own secrets, so every node of a cluster and every restart
/// agree without another secret to keep (rotating the provider key
/// invalidates the URLs of tasks in flight; polling still finishes them).
pub fn callback_key(p: &ProviderConfig) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"gengate provider callbacks")
        .expect("HMAC takes keys of any length");
    for secret in [&p.api_key, &p.secret_key, &p.access_key] {
        mac.update(secret.expose().as_bytes());
        mac.update(b"\n");
    }
    mac.finalize().into_bytes().to_vec()
}

/// Where provider `name` posts its callbacks, and the key of their tokens.
fn callback_target(cfg: &Config, name: &str, p: &ProviderConfig) -> Option<CallbackTarget> {
    if !p.callbacks {
        return None;
    }
    let base = p
        .callback_base_url
        .as_deref()
        .or(cfg.server.public_url.as_deref())?;
    let key = callback_key(p);
    Some(CallbackTarget {
        url: format!("{}/v1/callbacks/{name}", base.trim_end_matches('/')),
        key,
    })
}

/// The media step for `cfg`: its backend and fetch rules.
///
/// # Errors
/// When the S3 settings or the HTTP client are unusable.
pub fn media(cfg: &Config, public_url: &str, net: &Outbound) -> anyhow::Result<Media> {
    let m = &cfg.media;
    let backend = match m.backend {
        MediaBackend::Local => Backend::Local {
            dir: cfg.media_dir(),
            base_url: format!("{public_url}/media"),
        },
        MediaBackend::S3 => {
            let s3 = &m.s3;
            Backend::s3(
                S3Settings {
                    endpoint: reqwest::Url::parse(s3.endpoint.as_deref().unwrap_or_default())
                        .context("media.s3.endpoint")?,
                    region: s3.region.clone(),
                    bucket: s3.bucket.clone(),
                    path_style: s3.path_style,
                    access_key: s3.access_key.expose().to_owned(),
                    secret_key: s3.secret_key.expose().to_owned(),
                    prefix: s3.prefix.clone(),
                    public_base_url: s3.public_base_url.as_deref().unwrap_or_default().to_owned(),
                    part_size: s3.part_size.0 as usize,
                },
                net,
            )
            .map_err(|e| anyhow::anyhow!("media.s3: {e}"))?
        }
    };
    let provider_hosts = cfg
        .providers
        .iter()
        .filter_map(|(name, p)| {
            let host = reqwest::Url::parse(p.base_url.as_deref()?)
                .ok()?
                .host_str()?
                .to_owned();
            Some((name.clone(), vec![host]))
        })
        .collect();
    Media::new(
        backend,
        media::Settings {
            concurrency: m.concurrency,
            max_bytes: m.max_bytes.0,
            max_attempts: m.max_attempts,
            retry_base: m.retry_base.0,
            allow_private: m.allow_private,
            allowed_hosts: m.allowed_hosts.clone(),
            provider_hosts,
            fetch_timeout: m.fetch_timeout.0,
            in_place_providers: cfg
                .providers
                .iter()
                .filter(|(_, p)| p.kind == ProviderKind::Sim && p.base_url.is_none())
                .map(|(name, _)| name.clone())
                .collect(),
        },
        cfg.media_dir(),
        format!("{public_url}/media"),
        net,
    )
}

/// Builds the server for `cfg` on an opened store. `public_url` is how
/// clients reach it (for URLs of media it serves).
///
/// # Errors
/// When a provider cannot be set up.
pub fn build(
    cfg: &Config,
    store: Arc<dyn Store>,
    public_url: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<Server> {
    let metrics = Arc::new(Metrics::default());
    let catalog = cfg.catalog();
    let d = &cfg.dispatch;
    let settings = Settings {
        poll_initial: d.poll_initial.0,
        poll_max: d.poll_max.0,
        retry_base: d.retry_base.0,
        retry_max: d.retry_max.0,
        idempotency_ttl: d.idempotency_ttl.0,
        lease: cfg.cluster.lease.0,
        clock: gengate_engine::Clock::System,
    };
    let net = outbound(cfg)?;
    tracing::info!("outbound TLS trusts {}", net.trust().describe());
    let lanes = providers(cfg, &format!("{public_url}/media"), &net)?;
    let hub = Arc::new(Hub::new(
        cfg.server.task_cache,
        cfg.server.event_replay,
        now_ms(),
    ));
    let media = Arc::new(media(cfg, public_url, &net)?);
    let dispatcher = Dispatcher::new(
        store.clone(),
        hub.clone(),
        lanes,
        &catalog,
        settings,
        metrics.clone(),
        media.clone(),
        shutdown.clone(),
    );
    let catalog = Arc::new(catalog.into_iter().map(|m| (m.name.clone(), m)).collect());
    // Redis, when configured: one client for the rate limit (whose checks
    // wait half a second at most) and one for events between nodes.
    let redis = |timeout: Duration| -> anyhow::Result<Option<Redis>> {
        cfg.cluster
            .redis_url
            .as_deref()
            .map(|url| Redis::open(url, net.trust(), timeout))
            .transpose()
            .context("cluster.redis_url")
    };
    let uploads = UploadService::new(
        media.clone(),
        UploadRules {
            max_bytes: cfg.media.upload_max_bytes.0,
            max_pixels: cfg.media.upload_max_pixels,
            url_ttl: cfg.media.upload_url_ttl.0,
        },
    );
    let tasks = TaskService::new(
        store.clone(),
        hub.clone(),
        dispatcher.clone(),
        media,
        catalog,
        settings.idempotency_ttl,
    )
    .with_limits(cfg.limits.limits());
    let w = &cfg.webhooks;
    let webhooks = Webhooks::new(
        store.clone(),
        webhooks::Settings {
            allow_private: w.allow_private,
            max_attempts: w.max_attempts.max(1),
            retry_base: w.retry_base.0,
            timeout: w.timeout.0,
        },
        &net,
    )?;
    let auth = AuthService::new(store.clone()).with_media_base(&format!("{public_url}/media"));
    let app = App::new(AppState {
        events: EventService::new(hub.clone(), tasks.clone(), shutdown),
        admin: AdminService::new(
            store.clone(),
            dispatcher.clone(),
            metrics.clone(),
            auth.clone(),
            tasks.clone(),
        )
        .with_limits(cfg.limits.limits()),
        accounts: AccountService::new(store.clone(), auth.clone(), tasks.clone()),
        callbacks: CallbackService::new(dispatcher.clone(), metrics.clone()),
        webhooks: WebhookService::new(webhooks.clone(), store.clone(), tasks.clone()),
        tasks,
        uploads,
        auth,
        metrics,
        media_dir: cfg.media_dir(),
        body_limit: cfg.server.body_limit.0 as usize,
        request_timeout: cfg.server.request_timeout.0,
        cors_origins: cfg.server.cors_origins.clone(),
    });
    Ok(Server {
        app,
        store,
        dispatcher,
        hub,
        webhooks,
        redis: redis(gengate_engine::bus::PUBLISH_TIMEOUT)?.map(Arc::new),
        event_poll: cfg.cluster.event_poll.0,
        shutdown_grace: cfg.server.shutdown_grace.0,
        idle_timeout: cfg.server.idle_timeout.0,
    })
}

/// Serves the API on `listener` and runs the dispatcher until `shutdown`
/// fires; then stops accepting, drains requests, lets the dispatcher store
/// what is under way, and returns.
///
/// # Errors
/// When the HTTP server or the dispatcher fails.
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Recovery first: requests (a cancel, say) must not race the rebuilt
    // slot counts. Connections wait in the listen backlog meanwhile.
    server
        .dispatcher
        .recover()
        .await
        .context("recovering unfinished tasks")?;
    gengate_engine::bus::start(
        server.store.clone(),
        server.redis.clone(),
        server.event_poll,
        server.hub.clone(),
        server.dispatcher.clone(),
        shutdown.clone(),
    )
    .await
    .context("starting the event channel between nodes")?;
    server
        .app
        .auth
        .init_media_urls()
        .await
        .context("reading the media URLs' signing key")?;
    let store = server.store.clone();
    let dispatcher = tokio::spawn(server.dispatcher.run(server.shutdown_grace));
    let outbox = tokio::spawn(server.webhooks.run(shutdown.clone()));
    let router = api::router(server.app);
    serve_http(
        listener,
        router,
        shutdown,
        server.idle_timeout,
        server.shutdown_grace,
    )
    .await?;
    let _ = outbox.await;
    let stopped = dispatcher.await.context("dispatcher panicked")?;
    if store.shared() {
        // What this node was working on is stored as far as it got; let
        // the other nodes (or a successor) take it over now rather than
        // when the leases run out.
        match store.release_leases().await {
            Ok(n) => tracing::info!(tasks = n, "handed {n} tasks over to the other nodes"),
            Err(e) => {
                tracing::warn!(error = %e, "ending this node's leases failed: {e}; they expire on their own")
            }
        }
    }
    stopped
}

/// How long a stopping server keeps serving connections it already accepted
/// before it closes the idle ones.
const DRAIN_LINGER: Duration = Duration::from_millis(1000);

/// The HTTP/1.1 accept loop. `idle_timeout` bounds how long a connection may
/// sit without sending a complete request head: a slow or silent client,
/// and an idle keep-alive connection alike (hyper starts the same timer for
/// both). At shutdown it stops accepting, lets requests in progress finish
/// (up to `grace`) and closes idle connections.
async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    idle_timeout: Duration,
    grace: Duration,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not exit.
                tracing::warn!(error = %e, "accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are clients going away mid-request; nothing to do.
            let _ = conn.await;
        });
    }
    drop(listener);
    // A connection accepted just before shutdown may not have sent its
    // request yet, and graceful shutdown closes connections without a
    // request in progress: give such clients a moment to be read first
    // (during a handoff the successor accepts everything newer).
    tokio::time::sleep(grace.min(DRAIN_LINGER)).await;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {grace:?}; closing them");
    }
    Ok(())
}

/// On a store with no keys at all (a first start), makes an admin key and
/// returns it so it can be shown once.
///
/// # Errors
/// When the store fails.
pub async fn ensure_first_admin_key(store: &dyn Store) -> anyhow::Result<Option<String>> {
    if store.count_keys().await? > 0 {
        return Ok(None);
    }
    let key = keys::generate();
    store
        .create_key("admin", Role::Admin, &key.hash, &key.prefix, now_ms())
        .await?;
    Ok(Some(key.secret))
}
