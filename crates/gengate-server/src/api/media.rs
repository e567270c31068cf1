//! Local media: files under `<data_dir>/media`, served at `/media/…` when the
//! local backend is in use. Names are unique per output, so responses are
//! cacheable for a year.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use crate::app::App;

pub(super) fn router() -> Router<App> {
    Router::new().route("/media/{*path}", get(media))
}

fn content_type(path: &str) -> &'static str {
    match path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("avi") => "video/x-msvideo",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        _ => "application/octet-stream",
    }
}

async fn media(
    State(app): State<App>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let safe = !path.is_empty()
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != ".." && seg != "." && !seg.starts_with('.'))
        && !path.contains('\\');
    if !safe {
        return Err(ApiError::not_found("no such file"));
    }
    let full = app.media_dir.join(&path);
    let meta = tokio::fs::metadata(&full)
        .await
        .map_err(|_| ApiError::not_found("no such file"))?;
    if !meta.is_file() {
        return Err(ApiError::not_found("no such file"));
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{:x}-{:x}\"", meta.len(), mtime);
    let etag_value = HeaderValue::from_str(&etag).expect("hex etag is a valid header");
    let cache = HeaderValue::from_static("public, max-age=31536000, immutable");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    let bytes = tokio::fs::read(&full)
        .await
        .map_err(|_| ApiError::not_found("no such file"))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&path)),
            ),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}
