//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::App;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Liveness: the process answers. No I/O.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "{\"status\":\"ok\"}")))]
pub(super) async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// Readiness: the store answers and the dispatcher runs.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready, with the reason")))]
pub(super) async fn readyz(State(app): State<App>) -> Response {
    let r = app.admin.readiness().await;
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if r.ready() { "ready" } else { "not_ready" },
        "store": if r.store_ok { "ok" } else { "unreachable" },
        "dispatcher": if r.dispatcher_ok { "running" } else { "stopped" },
    });
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format")))]
pub(super) async fn metrics(State(app): State<App>) -> Response {
    let text = app.admin.metrics_text();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
