//! The caller's webhook signing secret, and the delivery record of a task's
//! webhook.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use gengate_core::time::rfc3339;
use gengate_store::Caller;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::respond::{PRIVATE, cached_json};
use crate::state::App;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/v1/webhooks/secret", get(secret))
        .route("/v1/tasks/{id}/webhooks", get(deliveries))
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SecretView {
    /// `whsec_…`: verify `webhook-signature` with it (Standard Webhooks).
    secret: String,
}

/// Your webhook signing secret (made on first use).
#[utoipa::path(get, path = "/v1/webhooks/secret", tag = "webhooks",
    responses((status = 200, body = SecretView), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub(super) async fn secret(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = app.webhooks.secret(&caller).await?;
    Ok(cached_json(&headers, &SecretView { secret }, PRIVATE))
}

/// One delivery of a task's webhook and how its attempts went.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeliveryView {
    /// The `webhook-id` header it is sent with (the same on every attempt).
    id: String,
    url: String,
    event: String,
    /// pending, delivered or failed (given up).
    status: String,
    attempts: u32,
    last_status: Option<u16>,
    last_error: Option<String>,
    next_attempt_at: Option<String>,
    created_at: String,
    delivered_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeliveryList {
    data: Vec<DeliveryView>,
}

/// The webhook deliveries of one of your tasks.
#[utoipa::path(get, path = "/v1/tasks/{id}/webhooks", tag = "webhooks",
    params(("id" = String, Path, description = "Task id (tsk_…)")),
    responses((status = 200, body = DeliveryList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn deliveries(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let list = app.webhooks.deliveries(&caller, &id).await?;
    let data = list
        .into_iter()
        .map(|d| DeliveryView {
            id: format!("msg_{}", d.id),
            next_attempt_at: (d.status == "pending").then(|| rfc3339(d.next_attempt_at)),
            url: d.url,
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: rfc3339(d.created_at),
            delivered_at: d.delivered_at.map(rfc3339),
        })
        .collect();
    Ok(cached_json(&headers, &DeliveryList { data }, PRIVATE))
}
