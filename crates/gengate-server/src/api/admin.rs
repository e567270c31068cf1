//! Admin routes (admin keys only; user keys get 403).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use gengate_core::Role;
use gengate_core::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, AppJson};
use super::respond::{PRIVATE, cached_json};
use crate::state::App;
use gengate_engine::dispatch::LaneStats;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/v1/admin/stats", get(stats))
        .route("/v1/admin/keys", post(create_key))
}

/// A key to make: for whom, with which role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateKeyRequest {
    /// The user's name (created on first use): 1..64 of letters, digits, `-_.@`.
    user: String,
    /// `user` (default) or `admin`.
    #[serde(default)]
    role: Option<String>,
}

/// A new key. `key` is the secret and is shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CreatedKeyView {
    id: i64,
    user: String,
    role: &'static str,
    prefix: String,
    key: String,
    created_at: String,
}

/// Create an API key for a user (e.g. to provision load-test users).
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKeyView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create_key(
    State(app): State<App>,
    _admin: Admin,
    AppJson(req): AppJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKeyView>), ApiError> {
    let role = match req.role.as_deref() {
        None => Role::User,
        Some(r) => Role::parse(r).ok_or_else(|| crate::service::ServiceError::Invalid {
            code: "invalid_request",
            field: "role".into(),
            message: "role must be \"user\" or \"admin\"".into(),
        })?,
    };
    let (info, secret) = app.admin.create_key(&req.user, role).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyView {
            id: info.id,
            user: info.user_name,
            role: info.role.as_str(),
            prefix: info.prefix,
            key: secret,
            created_at: rfc3339(info.created_at),
        }),
    ))
}

/// Stored tasks of one provider in one status.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StatusCountView {
    provider: String,
    status: &'static str,
    count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AdminStats {
    /// Live dispatcher figures per provider.
    providers: Vec<LaneStats>,
    /// Stored task counts per provider and status.
    tasks: Vec<StatusCountView>,
}

/// Queues, in-flight tasks and latency per provider; task counts by status.
#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin",
    responses((status = 200, body = AdminStats), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn stats(
    State(app): State<App>,
    _admin: Admin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let stats = app.admin.stats().await?;
    let stats = AdminStats {
        providers: stats.providers,
        tasks: stats
            .tasks
            .into_iter()
            .map(|c| StatusCountView {
                provider: c.provider,
                status: c.status.as_str(),
                count: c.count,
            })
            .collect(),
    };
    Ok(cached_json(&headers, &stats, PRIVATE))
}
