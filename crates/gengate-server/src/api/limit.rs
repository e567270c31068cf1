//! Each route's time limit. A request that takes longer is answered `503`
//! (its work, a create say, may still finish: the client retries with its
//! `Idempotency-Key`). The limit belongs to the route: most take
//! `server.request_timeout`, a long poll adds its wait, and event streams
//! have none.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use super::error::ApiError;
use crate::state::App;

/// `route`, answered `503` when it takes longer than `limit`.
pub(super) fn bounded(route: MethodRouter<App>, limit: Duration) -> MethodRouter<App> {
    route.layer(middleware::from_fn_with_state(limit, limit_request))
}

/// The middleware of [`bounded`] (and of whole routers, as a route layer).
pub(super) async fn limit_request(
    State(limit): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => timed_out().into_response(),
    }
}

/// The answer to a request that ran out of time.
pub(super) fn timed_out() -> ApiError {
    ApiError::unavailable("the request took too long")
}
