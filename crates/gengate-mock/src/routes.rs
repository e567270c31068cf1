//! The routes every mock has besides its provider's API: output files
//! (rendered from the prompt, with expiring URLs), the ledger
//! (`/_mock/stats`, `/_mock/jobs`), injected errors (`/_mock/inject`), and
//! the fault injection in front of the API.

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::account::{Job, Phase, SharedAccount};
use crate::sim::{media_file, now_ms};

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
    account.ledger().force(&req.code, req.count);
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
