//! Mock providers and the simulated provider, for tests, capacity runs and
//! a gengate that runs without any provider account.
//!
//! - Mock providers: HTTP servers that behave like a provider account
//!   (`gengate mock-provider --kind …`). Each speaks its provider's wire
//!   protocol strictly (paths, envelopes, auth, status progression, error
//!   codes, callbacks), refuses work beyond the account's concurrency the way
//!   the real service does, and keeps a ledger at `GET /_mock/stats` so a
//!   test can prove that no task was submitted twice and that the account's
//!   limit held. They serve HTTP, or HTTPS with a throwaway CA ([`tls`]).
//! - [`sim`]: the simulated provider `gengate serve` runs on by default, in
//!   process or as a client of the `sim` mock.
//! - [`render`]: the real, decodable media both of them hand back.
//!
//! The adapters these mocks stand in front of, and the [`Provider`] trait,
//! are `gengate-providers`'; nothing there depends on this crate.
//!
//! [`Provider`]: gengate_providers::Provider

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gengate_core::ModelKind;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::sim::{media_file, now_ms, prompt_of};

pub mod hunyuan;
pub mod kling;
pub mod render;
pub mod runninghub;
pub mod sim;
pub mod sim_server;
pub mod tls;

pub use sim::{Behavior, HttpSim, InProcessSim};
pub use sim_server::{serve_sim, sim_router};

/// Which provider a mock speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockKind {
    /// gengate's own simple protocol (see [`sim_server`]).
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

/// Where a mock job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl Phase {
    pub(crate) fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Canceled)
    }
}

/// One job at a mock account.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) external_id: Option<String>,
    pub(crate) kind: ModelKind,
    /// The provider operation that made it (Kling's `text2video`, …).
    pub(crate) family: String,
    pub(crate) seed: u64,
    pub(crate) caption: String,
    pub(crate) input: Value,
    /// The request body as received, for tests that check the mapping.
    pub(crate) request: Value,
    pub(crate) start_ms: i64,
    pub(crate) done_ms: i64,
    pub(crate) fails: bool,
    pub(crate) canceled_at: Option<i64>,
    /// Account slots it holds while unfinished.
    pub(crate) slots: usize,
    /// Outputs it makes when it succeeds.
    pub(crate) outputs: usize,
    pub(crate) callback_url: Option<String>,
}

impl Job {
    pub(crate) fn phase(&self, now: i64) -> Phase {
        if self.canceled_at.is_some() {
            Phase::Canceled
        } else if now >= self.done_ms {
            if self.fails {
                Phase::Failed
            } else {
                Phase::Succeeded
            }
        } else if (now - self.start_ms) * 10 < (self.done_ms - self.start_ms) {
            Phase::Queued
        } else {
            Phase::Running
        }
    }

    /// When the job moves from queued to running.
    pub(crate) fn running_at(&self) -> i64 {
        self.start_ms + (self.done_ms - self.start_ms + 9) / 10
    }

    pub(crate) fn progress(&self, now: i64) -> f64 {
        let span = (self.done_ms - self.start_ms).max(1) as f64;
        ((now - self.start_ms) as f64 / span).clamp(0.0, 1.0)
    }
}

/// The account's books.
#[derive(Default)]
pub(crate) struct Ledger {
    pub(crate) jobs: HashMap<String, Job>,
    pub(crate) by_external: HashMap<String, String>,
    /// Unfinished jobs by end time, and the slots each holds.
    active: BTreeMap<(i64, String), usize>,
    active_slots: usize,
    pub(crate) submissions: u64,
    /// Submissions refused because the account was full.
    pub(crate) refused: u64,
    /// Submissions refused because their external id was taken.
    pub(crate) duplicates: u64,
    /// Status queries received.
    pub(crate) polls: u64,
    pub(crate) callbacks_sent: u64,
    pub(crate) callbacks_dropped: u64,
    /// Requests refused for bad credentials or signatures.
    pub(crate) auth_failures: u64,
    peak_slots: usize,
    next_id: u64,
    /// Errors a test asked for (`POST /_mock/inject`), in the provider's own
    /// terms (its error code), answered to the next submissions in order.
    forced: VecDeque<String>,
}

impl Ledger {
    fn expire(&mut self, now: i64) {
        while let Some(((done, _), slots)) = self.active.first_key_value() {
            if *done > now {
                break;
            }
            self.active_slots -= *slots;
            self.active.pop_first();
        }
    }

    /// Whether `slots` more fit in the account now; counts a refusal if not.
    pub(crate) fn admit(&mut self, now: i64, slots: usize, limit: usize) -> bool {
        self.expire(now);
        if self.active_slots + slots > limit {
            self.refused += 1;
            return false;
        }
        true
    }

    /// A fresh job id: `next` makes it from the sequence number.
    pub(crate) fn next_id(&mut self, make: impl FnOnce(u64) -> String) -> String {
        self.next_id += 1;
        make(self.next_id)
    }

    /// Records an admitted job.
    pub(crate) fn add(&mut self, job: Job) {
        self.submissions += 1;
        self.active.insert((job.done_ms, job.id.clone()), job.slots);
        self.active_slots += job.slots;
        self.peak_slots = self.peak_slots.max(self.active_slots);
        if let Some(ext) = &job.external_id {
            self.by_external.insert(ext.clone(), job.id.clone());
        }
        self.jobs.insert(job.id.clone(), job);
    }

    /// Cancels an unfinished job; `false` when it had finished already.
    pub(crate) fn cancel(&mut self, id: &str, now: i64) -> bool {
        let Some(job) = self.jobs.get_mut(id) else {
            return false;
        };
        if job.phase(now).is_final() {
            return false;
        }
        job.canceled_at = Some(now);
        if let Some(slots) = self.active.remove(&(job.done_ms, job.id.clone())) {
            self.active_slots -= slots;
        }
        true
    }

    /// The next error a test injected, if any: the provider's error code.
    pub(crate) fn take_forced(&mut self) -> Option<String> {
        self.forced.pop_front()
    }

    pub(crate) fn in_flight(&mut self, now: i64) -> usize {
        self.expire(now);
        self.active.len()
    }
}

/// A mock account: its settings, books and the client it posts callbacks
/// with.
pub(crate) struct Account {
    pub(crate) cfg: MockConfig,
    ledger: Mutex<Ledger>,
    http: reqwest::Client,
}

pub(crate) type SharedAccount = Arc<Account>;

impl Account {
    pub(crate) fn new(cfg: MockConfig) -> SharedAccount {
        let http = gengate_net::Outbound::default().tool(Duration::from_secs(5));
        Arc::new(Account {
            cfg,
            ledger: Mutex::default(),
            http,
        })
    }

    pub(crate) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("mock ledger lock")
    }

    /// A new job's timing and fate, drawn from the account's behaviour.
    pub(crate) fn draw_job(
        &self,
        id: String,
        kind: ModelKind,
        family: &str,
        input: Value,
        request: Value,
        now: i64,
    ) -> Job {
        let (latency, fails) = self.cfg.behavior.draw(&mut rand::thread_rng());
        let caption = prompt_of(&input).to_owned();
        Job {
            id,
            external_id: None,
            kind,
            family: family.to_owned(),
            seed: render::seed_from_prompt(&caption),
            caption,
            input,
            request,
            start_ms: now,
            done_ms: now + latency.as_millis() as i64,
            fails,
            canceled_at: None,
            slots: 1,
            outputs: 1,
            callback_url: None,
        }
    }

    /// The URL of output `index` of a finished job, with its expiry when the
    /// account's URLs expire.
    pub(crate) fn output_url(&self, job: &Job, index: usize) -> String {
        let ext = match job.kind {
            ModelKind::Image => "png",
            ModelKind::Video => "avi",
        };
        let base = format!("{}/files/{}-{index}.{ext}", self.cfg.public_url, job.id);
        match self.cfg.url_ttl {
            Some(ttl) => format!("{base}?expires={}", job.done_ms + ttl.as_millis() as i64),
            None => base,
        }
    }

    /// Posts `body` to `url` at `at_ms` unless the job was canceled by then
    /// (or the callback is dropped by fault injection). `body` is built at
    /// send time from the job as it is then.
    pub(crate) fn post_at(
        self: &Arc<Self>,
        job_id: String,
        url: String,
        at_ms: i64,
        body: impl FnOnce(&Job, i64) -> Option<Value> + Send + 'static,
    ) {
        let account = self.clone();
        tokio::spawn(async move {
            let wait = (at_ms - now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let now = now_ms();
            let payload = {
                let mut l = account.ledger();
                let Some(job) = l.jobs.get(&job_id).cloned() else {
                    return;
                };
                let Some(payload) = body(&job, now) else {
                    return;
                };
                if rand::thread_rng().gen_bool(account.cfg.faults.drop_webhooks.clamp(0.0, 1.0)) {
                    l.callbacks_dropped += 1;
                    return;
                }
                l.callbacks_sent += 1;
                payload
            };
            // One retry, as the real services retry a receiver that fails.
            for delay in [0u64, 1000] {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                match account.http.post(&url).json(&payload).send().await {
                    Ok(r) if r.status().is_success() => return,
                    _ => {}
                }
            }
        });
    }

    /// The ledger as `/_mock/stats` shows it.
    pub(crate) fn stats(&self) -> Value {
        let mut l = self.ledger();
        let in_flight = l.in_flight(now_ms());
        json!({
            "submissions": l.submissions,
            "in_flight": in_flight,
            "slots_in_use": l.active_slots,
            "peak_concurrency": l.peak_slots,
            "refused": l.refused,
            "duplicates": l.duplicates,
            "polls": l.polls,
            "callbacks_sent": l.callbacks_sent,
            "callbacks_dropped": l.callbacks_dropped,
            "auth_failures": l.auth_failures,
            "concurrency_limit": self.cfg.concurrency,
        })
    }
}

#[derive(Deserialize)]
struct FileQuery {
    expires: Option<i64>,
}

/// `GET /files/{job}-{index}.{ext}`: an output, rendered from the prompt.
/// An expired URL answers 403, like an object store's signed URL.
async fn file(
    State(account): State<SharedAccount>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
) -> Response {
    let now = now_ms();
    if q.expires.is_some_and(|exp| now > exp) {
        return (StatusCode::FORBIDDEN, "Request has expired").into_response();
    }
    let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
    let id = stem.rsplit_once('-').map_or(stem, |(id, _)| id);
    let job = account.ledger().jobs.get(id).cloned();
    let Some(job) = job.filter(|j| j.phase(now) == Phase::Succeeded) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let rendered = tokio::task::spawn_blocking(move || {
        media_file(job.kind, job.seed, &job.caption, &job.input)
    })
    .await;
    match rendered {
        Ok((bytes, _, content_type)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed").into_response(),
    }
}

async fn stats(State(account): State<SharedAccount>) -> Json<Value> {
    Json(account.stats())
}

/// `GET /_mock/jobs`: every job with the request that made it, oldest
/// first, so tests can check what an adapter sent.
async fn jobs(State(account): State<SharedAccount>) -> Json<Value> {
    let l = account.ledger();
    let mut jobs: Vec<&Job> = l.jobs.values().collect();
    jobs.sort_by_key(|j| (j.start_ms, j.id.clone()));
    Json(Value::Array(
        jobs.into_iter()
            .map(|j| {
                json!({"id": j.id, "external_id": j.external_id, "family": j.family,
                       "request": j.request, "canceled": j.canceled_at.is_some()})
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
struct Inject {
    /// The provider's error code, e.g. `1303`, `421` or
    /// `RequestLimitExceeded.JobNumExceed`.
    code: String,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

/// `POST /_mock/inject {"code": …, "count": N}`: the next N submissions are
/// answered with that provider error, in the provider's own shape.
async fn inject(State(account): State<SharedAccount>, Json(req): Json<Inject>) -> StatusCode {
    let mut l = account.ledger();
    for _ in 0..req.count {
        l.forced.push_back(req.code.clone());
    }
    StatusCode::NO_CONTENT
}

/// Fault injection in front of a mock's API routes.
async fn faults(State(account): State<SharedAccount>, req: Request, next: Next) -> Response {
    let f = account.cfg.faults;
    let (error, garbage, slow) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen_bool(f.error_rate.clamp(0.0, 1.0)),
            rng.gen_bool(f.garbage_rate.clamp(0.0, 1.0)),
            rng.gen_bool(f.slow_rate.clamp(0.0, 1.0)),
        )
    };
    if error {
        return (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response();
    }
    let resp = next.run(req).await;
    if slow {
        tokio::time::sleep(f.slow_delay).await;
    }
    if garbage {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>upstream maintenance</body></html>",
        )
            .into_response();
    }
    resp
}

/// Wraps a mock's API routes with fault injection and adds the shared
/// routes (`/files/…`, `/_mock/stats`, `/_mock/jobs`, `/_mock/inject`).
pub(crate) fn with_common_routes(api: Router<SharedAccount>, account: SharedAccount) -> Router {
    api.layer(axum::middleware::from_fn_with_state(
        account.clone(),
        faults,
    ))
    .route("/files/{name}", get(file))
    .route("/_mock/stats", get(stats))
    .route("/_mock/jobs", get(jobs))
    .route("/_mock/inject", axum::routing::post(inject))
    .with_state(account)
}

/// The router of a mock of `kind`.
pub fn router(kind: MockKind, cfg: MockConfig) -> Router {
    match kind {
        MockKind::Sim => sim_router(cfg),
        MockKind::Runninghub => runninghub::router(cfg),
        MockKind::Hunyuan => hunyuan::router(cfg),
        MockKind::Kling => kling::router(cfg),
    }
}

/// Serves a mock of `kind` on `listener` until `shutdown` fires: over TLS
/// with `tls` (its `public_url` then an `https://` one), else plain HTTP.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    kind: MockKind,
    listener: TcpListener,
    cfg: MockConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    match tls {
        Some(config) => tls::serve_tls(listener, router(kind, cfg), config, shutdown).await,
        None => {
            axum::serve(listener, router(kind, cfg))
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    }
}
