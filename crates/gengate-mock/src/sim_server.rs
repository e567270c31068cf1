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
//! - `GET /files/{id}-0.{png|avi}` → the output file, rendered from the prompt.

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

use crate::account::{Account, Job, Phase, SharedAccount};
use crate::config::MockConfig;
use crate::routes::with_common_routes;
use crate::sim::now_ms;

fn job_json(account: &Account, job: &Job, now: i64) -> Value {
    let phase = job.phase(now);
    let status = match phase {
        Phase::Queued => "queued",
        Phase::Running => "running",
        Phase::Succeeded => "succeeded",
        Phase::Failed => "failed",
        Phase::Canceled => "canceled",
    };
    let outputs = if phase == Phase::Succeeded {
        let ct = match job.kind {
            ModelKind::Image => "image/png",
            ModelKind::Video => "video/x-msvideo",
        };
        json!([{"url": account.output_url(job, 0), "content_type": ct}])
    } else {
        json!([])
    };
    let error = (phase == Phase::Failed).then(|| {
        json!({"code": "worker_failed", "message": "simulated worker failure", "retryable": true})
    });
    json!({"id": job.id, "status": status, "progress": job.progress(now), "outputs": outputs,
           "error": error, "external_id": job.external_id})
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
    State(account): State<SharedAccount>,
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
    let mut l = account.ledger();
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
    if !l.admit(now, 1, account.cfg.concurrency) {
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
    let id = l.next_id(|n| format!("job_{n}"));
    let request = json!({"model": body.model, "kind": body.kind, "input": body.input, "external_id": body.external_id});
    let mut job = account.draw_job(id, kind, &body.kind, body.input, request, now);
    job.external_id = body.external_id;
    let out = job_json(&account, &job, now);
    l.add(job);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn get_job(State(account): State<SharedAccount>, Path(id): Path<String>) -> Response {
    let mut l = account.ledger();
    l.polls += 1;
    match l.jobs.get(&id) {
        Some(job) => Json(job_json(&account, job, now_ms())).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such job"),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    external_id: Option<String>,
}

async fn list_jobs(State(account): State<SharedAccount>, Query(q): Query<ListQuery>) -> Response {
    let l = account.ledger();
    let now = now_ms();
    let jobs: Vec<Value> = q
        .external_id
        .and_then(|ext| l.by_external.get(&ext))
        .and_then(|id| l.jobs.get(id))
        .map(|j| job_json(&account, j, now))
        .into_iter()
        .collect();
    Json(json!({"jobs": jobs})).into_response()
}

async fn cancel_job(State(account): State<SharedAccount>, Path(id): Path<String>) -> Response {
    let mut l = account.ledger();
    let now = now_ms();
    l.cancel(&id, now);
    match l.jobs.get(&id) {
        Some(job) => Json(job_json(&account, job, now)).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such job"),
    }
}

/// The mock's HTTP routes.
pub fn sim_router(cfg: MockConfig) -> Router {
    let account = Account::new(cfg);
    let api = Router::new()
        .route("/v1/jobs", post(submit).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job));
    with_common_routes(api, account)
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
