//! The HTTP API v1: routes, the request middleware (metrics, tracing),
//! each route's time limit ([`limit`]), and the fallbacks that keep every
//! error in one shape. Each area's `router()` sits next to its handlers,
//! which call the services ([`crate::service`]) and nothing else.

pub mod error;
pub mod extract;
pub mod respond;
pub mod views;

mod accounts;
mod admin;
mod callbacks;
mod catalog;
mod events;
mod health;
mod limit;
mod media;
mod openapi;
mod tasks;
mod uploads;
mod webhooks;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tracing::Instrument;

use crate::state::App;
use error::ApiError;

pub use openapi::ApiDoc;

/// The whole API.
pub fn router(app: App) -> Router {
    let limit = app.request_timeout;
    let cors = cors(&app.cors_origins);
    let bounded = Router::new()
        .merge(health::router())
        .merge(webhooks::router())
        .merge(catalog::router())
        .merge(admin::router())
        .merge(accounts::router())
        .merge(callbacks::router())
        .merge(media::router())
        .merge(openapi::router())
        .route_layer(middleware::from_fn_with_state(limit, limit::limit_request));
    let api = Router::new()
        .merge(bounded)
        .merge(tasks::router(limit))
        .merge(uploads::router(limit))
        // Event streams live as long as the client wants (they end at
        // shutdown).
        .merge(events::router())
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(compression())
        .layer(middleware::from_fn_with_state(app.clone(), track));
    match cors {
        Some(cors) => api.layer(cors),
        None => api,
    }
    .with_state(app)
}

/// CORS for the configured origins (none: no CORS headers at all, and a
/// browser page of another origin cannot read any answer). Preflights are
/// answered here, before routing; the headers a browser client needs to
/// read (rate limits, retries, caching) are exposed.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([
                header::RETRY_AFTER,
                header::ETAG,
                header::LOCATION,
                HeaderName::from_static("ratelimit"),
                HeaderName::from_static("ratelimit-policy"),
                HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Bodies below this size are sent as they are: compressing them saves
/// less than the encoding costs.
pub const COMPRESS_MIN_BYTES: u16 = 512;

/// gzip, br or zstd, as the client prefers, for JSON and text; never for
/// media (already compressed) or event streams (must flush as they go).
fn compression() -> CompressionLayer<impl Predicate> {
    let predicate = SizeAbove::new(COMPRESS_MIN_BYTES)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::const_new("video/"));
    CompressionLayer::new().compress_when(predicate)
}

async fn fallback() -> ApiError {
    ApiError::not_found("no such route; GET /openapi.json lists the API")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Metrics and a tracing span with the route template.
async fn track(State(app): State<App>, req: Request, next: Next) -> Response {
    // The route template (an `Arc<str>` inside), never the raw path.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    let span = tracing::debug_span!("request", method = %method, route = %route);
    let started = Instant::now();
    let resp = next.run(req).instrument(span).await;
    let secs = started.elapsed().as_secs_f64();
    app.metrics
        .http(route, method.as_str(), resp.status().as_u16(), secs);
    tracing::debug!(method = %method, route = %route, status = resp.status().as_u16(), duration_ms = secs * 1000.0, "request done");
    resp
}
