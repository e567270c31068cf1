//! Local media: files under `<data_dir>/media`, served at `/media/…` when the
//! local backend is in use. Names are unique per output, so responses are
//! cacheable for a year. A task's files (`t/<task id>/…`) are public while
//! the task is in the gallery; otherwise, like a user's uploads
//! (`u/<user id>/…`), they are served only with a valid signature
//! (`?exp=&sig=`, see [`crate::service::media_urls`]: `403` once expired or
//! when forged), or to their owner (a key, or a browser token as
//! `?access_token=`) or an admin, and caches keep them private. The
//! simulator's files (`sim/…`) are public, as a provider's own output URLs
//! are.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gengate_core::mime;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use gengate_store::Caller;

use super::error::ApiError;
use crate::service::media_urls::Signature;
use crate::state::App;

/// How long a browser may keep a private file (its owner's, or a signed
/// link's until it expires).
const PRIVATE_MAX_AGE: i64 = 3600;

pub(super) fn router() -> Router<App> {
    Router::new().route("/media/{*path}", get(media))
}

fn content_type(path: &str) -> &'static str {
    mime::of_path(path).unwrap_or("application/octet-stream")
}

/// A byte range of a file of `len` bytes, from a `Range` header: `Ok(None)`
/// for the whole file (no header, or one we do not honor, such as several
/// ranges), `Err(())` when it cannot be satisfied (416).
fn parse_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 || len == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len - 1)
        }
        (s, "") => (s.parse().map_err(|_| ())?, len.saturating_sub(1)),
        (s, e) => {
            let (s, e): (u64, u64) = (s.parse().map_err(|_| ())?, e.parse().map_err(|_| ())?);
            if e < s {
                return Err(());
            }
            (s, e.min(len.saturating_sub(1)))
        }
    };
    if start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn media(
    State(app): State<App>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    caller: Option<Caller>,
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
    let now = gengate_engine::now_ms();
    let signature = app
        .auth
        .media_urls()
        .map_or(Signature::Absent, |u| u.check(&path, query.as_deref(), now));
    // How long a private answer may be kept (`None`: public).
    let private_for = match signature {
        Signature::Valid(exp) => Some((exp - now / 1000).clamp(0, PRIVATE_MAX_AGE)),
        Signature::Expired => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "signature_expired",
                "this link has expired; read the task again for a fresh one",
            ));
        }
        Signature::Invalid => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "bad_signature",
                "this link's signature is not valid",
            ));
        }
        Signature::Absent => {
            // The simulated provider's own files (`sim/…`) stand in for a
            // provider's CDN: public, as its URLs are.
            let public = match path.split_once('/') {
                Some(("t", rest)) => {
                    let task_id = rest.split('/').next().unwrap_or_default();
                    app.tasks.media_access(caller.as_ref(), task_id).await?
                }
                // A user's uploads: theirs (or an admin's) to read.
                Some(("u", rest)) => {
                    let owner = rest.split('/').next().and_then(|u| u.parse().ok());
                    match (caller.as_ref(), owner) {
                        (Some(c), Some(owner)) if c.may_list() && c.may_read(owner, "") => false,
                        _ => return Err(ApiError::not_found("no such file")),
                    }
                }
                _ => true,
            };
            (!public).then_some(PRIVATE_MAX_AGE)
        }
    };
    let full = app.media_dir.join(&path);
    let mut file = tokio::fs::File::open(&full)
        .await
        .map_err(|_| ApiError::not_found("no such file"))?;
    let meta = file
        .metadata()
        .await
        .map_err(|_| ApiError::not_found("no such file"))?;
    if !meta.is_file() {
        return Err(ApiError::not_found("no such file"));
    }
    let len = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{len:x}-{mtime:x}\"");
    let etag_value = HeaderValue::from_str(&etag).expect("hex etag is a valid header");
    let cache = match private_for {
        None => HeaderValue::from_static("public, max-age=31536000, immutable"),
        Some(secs) => HeaderValue::from_str(&format!("private, max-age={secs}")).expect("digits"),
    };
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    // A Range applies only while the file is the one the client has.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let range = if if_range_ok {
        parse_range(
            headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
            len,
        )
    } else {
        Ok(None)
    };
    let common = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&path)),
        ),
        (header::ETAG, etag_value),
        (header::CACHE_CONTROL, cache),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ];
    match range {
        Err(()) => Ok((
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("digits"),
            )],
        )
            .into_response()),
        Ok(None) => {
            let body = Body::from_stream(ReaderStream::new(file));
            Ok((
                common,
                [(header::CONTENT_LENGTH, HeaderValue::from(len))],
                body,
            )
                .into_response())
        }
        Ok(Some((start, end))) => {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(ApiError::internal)?;
            let n = end - start + 1;
            let body = Body::from_stream(ReaderStream::new(file.take(n)));
            Ok((
                StatusCode::PARTIAL_CONTENT,
                common,
                [
                    (
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                            .expect("digits"),
                    ),
                    (header::CONTENT_LENGTH, HeaderValue::from(n)),
                ],
                body,
            )
                .into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(parse_range(Some("bytes=-40"), 10), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
    }
}
