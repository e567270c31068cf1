//! The `sim` mock: gengate's own simple protocol, for tests and capacity
//! runs that need a provider over HTTP without any provider's quirks.
//!
//! The `sim` wire protocol (JSON):
//! - `POST /v1/jobs` `{model, kind: "image"|"video", input, external_id?}` →
//!   `201` job; `409 {"error":{code:"duplicate_external_id"},"id":…}` when a job
//!   with that `external_id` exists; `429` + `Retry-After` when the account's
//!   concurrency is full (the submission is not recorded).
//! - `GET /v1/jobs/{id}` → job `{id, status: queued|running|succeeded|failed|canceled,
//!   progress, outputs:[{url, content_type, bytes}], error:{code,message,retryable}|null}`.
//! - `GET /v1/jobs?external_id=…` → `{"jobs":[job…]}`.
//! - `POST /v1/jobs/{id}/cancel` → job.
//! - `GET /files/{id}.{png|avi}` → the output file, rendered from the prompt.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gengate_core::ModelKind;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::MockConfig;
use crate::render;
use crate::sim::{media_file, now_ms, prompt_of};

#[derive(Debug, Clone)]
struct Job {
    id: String,
    external_id: Option<String>,
    kind: ModelKind,
    seed: u64,
    caption: String,
    input: Value,
    start_ms: i64,
    done_ms: i64,
    fails: bool,
    canceled: bool,
}

impl Job {
    fn finished(&self, now: i64) -> bool {
        self.canceled || now >= self.done_ms
    }

    fn status(&self, now: i64) -> &'static str {
        if self.canceled {
            "canceled"
        } else if now >= self.done_ms {
            if self.fails { "failed" } else { "succeeded" }
        } else if (now - self.start_ms) * 10 < (self.done_ms - self.start_ms) {
            "queued"
        } else {
            "running"
        }
    }
}

#[derive(Default)]
struct Ledger {
    jobs: HashMap<String, Job>,
    by_external: HashMap<String, String>,
    /// Unfinished jobs by end time, to count in-flight jobs cheaply.
    active: BTreeMap<(i64, String), ()>,
    submissions: u64,
    refused: u64,
    /// Submissions refused because their `external_id` was taken: a client
    /// that resubmits what the provider already has.
    duplicates: u64,
    /// Status queries received (`GET /v1/jobs/{id}`).
    polls: u64,
    peak: usize,
    next_id: u64,
}

impl Ledger {
    fn expire(&mut self, now: i64) {
        while let Some(((done, _), ())) = self.active.first_key_value() {
            if *done > now {
                break;
            }
            self.active.pop_first();
        }
    }
}

#[derive(Clone)]
struct Mock {
    cfg: Arc<MockConfig>,
    ledger: Arc<Mutex<Ledger>>,
}

impl Mock {
    fn job_json(&self, job: &Job, now: i64) -> Value {
        let status = job.status(now);
        let span = (job.done_ms - job.start_ms).max(1) as f64;
        let progress = ((now - job.start_ms) as f64 / span).clamp(0.0, 1.0);
        let outputs = if status == "succeeded" {
            let (ext, ct) = match job.kind {
                ModelKind::Image => ("png", "image/png"),
                ModelKind::Video => ("avi", "video/x-msvideo"),
            };
            json!([{"url": format!("{}/files/{}.{ext}", self.cfg.public_url, job.id), "content_type": ct}])
        } else {
            json!([])
        };
        let error = (status == "failed").then(|| {
            json!({"code": "worker_failed", "message": "simulated worker failure", "retryable": true})
        });
        json!({"id": job.id, "status": status, "progress": progress, "outputs": outputs, "error": error,
               "external_id": job.external_id})
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SubmitBody {
    model: String,
    kind: String,
    input: Value,
    #[serde(default)]
    external_id: Option<String>,
}

async fn submit(
    State(m): State<Mock>,
    body: Result<Json<SubmitBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body must be a job request",
        );
    };
    let kind = match body.kind.as_str() {
        "image" => ModelKind::Image,
        "video" => ModelKind::Video,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_kind",
                "kind must be image or video",
            );
        }
    };
    if body.model.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_model",
            "model is required",
        );
    }
    let now = now_ms();
    let mut l = m.ledger.lock().expect("mock ledger lock");
    if let Some(id) = body
        .external_id
        .as_ref()
        .and_then(|e| l.by_external.get(e))
        .cloned()
    {
        l.duplicates += 1;
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": {"code": "duplicate_external_id", "message": "a job with this external_id exists"}, "id": id})),
        )
            .into_response();
    }
    l.expire(now);
    if l.active.len() >= m.cfg.concurrency {
        l.refused += 1;
        drop(l);
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "concurrency_limit",
            "the account's concurrency limit is reached",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return resp;
    }
    let (latency, fails) = m.cfg.behavior.draw(&mut rand::thread_rng());
    l.next_id += 1;
    let job = Job {
        id: format!("job_{}", l.next_id),
        external_id: body.external_id,
        kind,
        seed: render::seed_from_prompt(prompt_of(&body.input)),
        caption: prompt_of(&body.input).to_owned(),
        input: body.input.clone(),
        start_ms: now,
        done_ms: now + latency.as_millis() as i64,
        fails,
        canceled: false,
    };
    l.submissions += 1;
    l.active.insert((job.done_ms, job.id.clone()), ());
    l.peak = l.peak.max(l.active.len());
    if let Some(ext) = &job.external_id {
        l.by_external.insert(ext.clone(), job.id.clone());
    }
    let out = m.job_json(&job, now);
    l.jobs.insert(job.id.clone(), job);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn get_job(State(m): State<Mock>, Path(id): Path<String>) -> Response {
    let mut l = m.ledger.lock().expect("mock ledger lock");
    l.polls += 1;
    match l.jobs.get(&id) {
        Some(job) => Json(m.job_json(job, now_ms())).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such job"),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    external_id: Option<String>,
}

async fn list_jobs(State(m): State<Mock>, Query(q): Query<ListQuery>) -> Response {
    let l = m.ledger.lock().expect("mock ledger lock");
    let now = now_ms();
    let jobs: Vec<Value> = match q.external_id {
        Some(ext) => l
            .by_external
            .get(&ext)
            .and_then(|id| l.jobs.get(id))
            .map(|j| m.job_json(j, now))
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    Json(json!({"jobs": jobs})).into_response()
}

async fn cancel_job(State(m): State<Mock>, Path(id): Path<String>) -> Response {
    let mut l = m.ledger.lock().expect("mock ledger lock");
    let now = now_ms();
    let Some(job) = l.jobs.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such job");
    };
    if !job.finished(now) {
        job.canceled = true;
        let key = (job.done_ms, job.id.clone());
        l.active.remove(&key);
    }
    let job = l.jobs.get(&id).cloned();
    drop(l);
    job.map_or_else(
        || error(StatusCode::NOT_FOUND, "not_found", "no such job"),
        |j| Json(m.job_json(&j, now)).into_response(),
    )
}

async fn file(State(m): State<Mock>, Path(name): Path<String>) -> Response {
    let id = name.rsplit_once('.').map_or(name.as_str(), |(id, _)| id);
    let job = m
        .ledger
        .lock()
        .expect("mock ledger lock")
        .jobs
        .get(id)
        .cloned();
    let Some(job) = job.filter(|j| j.status(now_ms()) == "succeeded") else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such file");
    };
    let rendered = tokio::task::spawn_blocking(move || {
        media_file(job.kind, job.seed, &job.caption, &job.input)
    })
    .await;
    match rendered {
        Ok((bytes, _, content_type)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "render_failed",
            "rendering failed",
        ),
    }
}

async fn stats(State(m): State<Mock>) -> Json<Value> {
    let mut l = m.ledger.lock().expect("mock ledger lock");
    l.expire(now_ms());
    Json(json!({
        "submissions": l.submissions,
        "in_flight": l.active.len(),
        "peak_concurrency": l.peak,
        "refused": l.refused,
        "duplicates": l.duplicates,
        "polls": l.polls,
        "concurrency_limit": m.cfg.concurrency,
    }))
}

/// The mock's HTTP routes.
pub fn sim_router(cfg: MockConfig) -> Router {
    let mock = Mock {
        cfg: Arc::new(cfg),
        ledger: Arc::default(),
    };
    Router::new()
        .route("/v1/jobs", post(submit).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/files/{name}", get(file))
        .route("/_mock/stats", get(stats))
        .with_state(mock)
}

/// Serves the sim mock on `listener` until `shutdown` fires.
///
/// # Errors
/// When the server fails.
pub async fn serve_sim(
    listener: TcpListener,
    cfg: MockConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, sim_router(cfg))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
