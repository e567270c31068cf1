//! Admin routes (admin keys only; user keys get 403).

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::Admin;
use super::{PRIVATE, cached_json};
use crate::app::App;
use crate::dispatch::LaneStats;

pub(super) fn router() -> Router<App> {
    Router::new().route("/v1/admin/stats", get(stats))
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
    let counts = app
        .store
        .status_counts()
        .await
        .map_err(crate::service::ServiceError::from)?;
    let tasks = counts
        .into_iter()
        .map(|c| StatusCountView {
            provider: c.provider,
            status: c.status.as_str(),
            count: c.count,
        })
        .collect();
    let stats = AdminStats {
        providers: app.tasks.dispatcher().stats(),
        tasks,
    };
    Ok(cached_json(&headers, &stats, PRIVATE))
}
