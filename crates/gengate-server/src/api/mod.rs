//! The HTTP API v1: routes, the request middleware (metrics, tracing,
//! timeout), cacheable JSON responses, and the fallbacks that keep every
//! error in one shape. Each area's `router()` sits next to its handlers.

pub mod error;
pub mod extract;
pub mod views;

mod admin;
mod callbacks;
mod catalog;
mod events;
mod health;
mod media;
mod openapi;
mod tasks;
mod webhooks;

use std::hash::{Hash, Hasher};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tracing::Instrument;

use crate::app::App;
use error::ApiError;

pub use openapi::ApiDoc;

/// `Cache-Control` of per-user data: any cache must revalidate (ETag) and
/// shared caches must not keep it.
pub const PRIVATE: &str = "private, no-cache";

/// The whole API.
pub fn router(app: App) -> Router {
    Router::new()
        .merge(health::router())
        .merge(tasks::router())
        .merge(events::router())
        .merge(webhooks::router())
        .merge(catalog::router())
        .merge(admin::router())
        .merge(callbacks::router())
        .merge(media::router())
        .merge(openapi::router())
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(compression())
        .layer(middleware::from_fn_with_state(app.clone(), track))
        .with_state(app)
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

/// Metrics, a tracing span with the route template, and the request timeout.
async fn track(State(app): State<App>, req: Request, next: Next) -> Response {
    // The route template (an `Arc<str>` inside), never the raw path.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    let span = tracing::debug_span!("request", method = %method, route = %route);
    // Event streams live as long as the client wants (they end at shutdown);
    // a long poll may take its `wait` on top of the normal limit.
    let limit = if route.ends_with("/events") {
        None
    } else {
        let wait = req
            .uri()
            .query()
            .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "wait"))
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0)
            .min(tasks::MAX_WAIT_SECS);
        Some(app.request_timeout + std::time::Duration::from_secs(wait))
    };
    let started = Instant::now();
    let run = next.run(req).instrument(span);
    let resp = match limit {
        None => run.await,
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(resp) => resp,
            Err(_) => ApiError::unavailable("the request took too long").into_response(),
        },
    };
    let secs = started.elapsed().as_secs_f64();
    app.metrics
        .http(route, method.as_str(), resp.status().as_u16(), secs);
    tracing::debug!(method = %method, route = %route, status = resp.status().as_u16(), duration_ms = secs * 1000.0, "request done");
    resp
}

/// A JSON body and its ETag, ready to answer with (and to keep: finished
/// tasks and gallery pages never change, so they are rendered once).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub body: bytes::Bytes,
    pub etag: HeaderValue,
}

impl Rendered {
    /// Serializes `value` and tags it.
    ///
    /// # Errors
    /// When `value` does not serialize.
    pub fn new<T: Serialize>(value: &T) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        // Weak: the same tag stands for the identity and the compressed forms.
        let etag = HeaderValue::from_str(&format!("W/\"{:016x}\"", hasher.finish()))
            .expect("hex etag is a valid header");
        Ok(Self {
            body: body.into(),
            etag,
        })
    }

    /// `304` when the client already has it, else the body.
    pub fn respond(&self, req: &HeaderMap, cache_control: &'static str) -> Response {
        let tag = self
            .etag
            .to_str()
            .unwrap_or_default()
            .trim_start_matches("W/");
        let matches = req
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',').any(|t| {
                    let t = t.trim();
                    t == "*" || t.trim_start_matches("W/") == tag
                })
            });
        let cache = HeaderValue::from_static(cache_control);
        if matches {
            return (
                StatusCode::NOT_MODIFIED,
                [
                    (header::ETAG, self.etag.clone()),
                    (header::CACHE_CONTROL, cache),
                ],
            )
                .into_response();
        }
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::ETAG, self.etag.clone()),
                (header::CACHE_CONTROL, cache),
            ],
            self.body.clone(),
        )
            .into_response()
    }
}

/// Answers with a page's serialized form, made once for pages whose content
/// is final; other pages are rendered by `render` each time.
pub fn page_json<T: Serialize>(
    req: &HeaderMap,
    page: &crate::service::tasks::Page,
    cache_control: &'static str,
    render: impl FnOnce() -> T,
) -> Response {
    if !page.tasks.iter().all(|t| t.status.is_terminal()) {
        return cached_json(req, &render(), cache_control);
    }
    let serialized = match page.serialized.get() {
        Some(s) => s,
        None => match Rendered::new(&render()) {
            Ok(r) => page
                .serialized
                .get_or_init(|| (r.body, r.etag.to_str().unwrap_or_default().to_owned())),
            Err(e) => return e.into_response(),
        },
    };
    match HeaderValue::from_str(&serialized.1) {
        Ok(etag) => Rendered {
            body: serialized.0.clone(),
            etag,
        }
        .respond(req, cache_control),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// A JSON response with an `ETag` computed from its bytes, answered `304`
/// when the client already has it.
pub fn cached_json<T: Serialize>(
    req: &HeaderMap,
    value: &T,
    cache_control: &'static str,
) -> Response {
    match Rendered::new(value) {
        Ok(r) => r.respond(req, cache_control),
        Err(e) => e.into_response(),
    }
}
