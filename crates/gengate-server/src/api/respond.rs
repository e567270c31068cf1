//! Answers in JSON with an `ETag`, `304` when the client has them, and kept
//! once rendered where their content is final.

use std::hash::{Hash, Hasher};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use crate::service::tasks::Page;

/// `Cache-Control` of per-user data: any cache must revalidate (ETag) and
/// shared caches must not keep it.
pub const PRIVATE: &str = "private, no-cache";

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
    page: &Page,
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
