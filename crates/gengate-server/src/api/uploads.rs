//! `POST /v1/uploads`: an input file as the raw body (its `Content-Type`)
//! or as the `file` part of a `multipart/form-data` form, within
//! `media.upload_max_bytes` (not the JSON limit). Its answer's `url` goes
//! into any `url` input of a task.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use gengate_core::time::rfc3339;
use gengate_engine::media::upload::{UPLOAD_TYPES, declared_type};
use gengate_store::Caller;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::read_body;
use super::limit::bounded;
use crate::state::App;

/// A request gets this long at least: an upload of 20 MB over a 3 Mbps
/// link takes about a minute.
const UPLOAD_TIME: Duration = Duration::from_secs(600);

pub(super) fn router(limit: Duration) -> Router<App> {
    Router::new().route("/v1/uploads", bounded(post(upload), limit.max(UPLOAD_TIME)))
}

/// A stored upload.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UploadView {
    /// `upl_…`.
    id: String,
    /// Put this in a task's `url` input. On this server's own media it is
    /// signed and works until `expires_at` without a key.
    url: String,
    /// The type its bytes were found to be (the declared one).
    content_type: String,
    bytes: u64,
    /// Pixels, for images.
    width: Option<u32>,
    height: Option<u32>,
    /// When `url` stops working (null: it does not expire).
    expires_at: Option<String>,
}

/// Upload an input file: PNG, JPEG, WebP, GIF, MP4, MOV, MP3 or WAV, as the
/// raw body with its `Content-Type`, or as the part named `file` of a
/// `multipart/form-data` body. The type is read from the bytes and must be
/// the declared one; images are bounded in pixels.
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads",
    request_body(description = "The file's bytes (or a multipart form with a `file` part).",
        content((String = "image/png"), (String = "image/jpeg"), (String = "image/webp"),
                (String = "image/gif"), (String = "video/mp4"), (String = "video/quicktime"),
                (String = "audio/mpeg"), (String = "audio/wav"), (String = "multipart/form-data"))),
    responses((status = 201, body = UploadView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn upload(
    State(app): State<App>,
    caller: Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let rules = app.uploads.rules();
    let declared_header = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let limit = usize::try_from(rules.max_bytes).unwrap_or(usize::MAX);
    // A multipart form carries a little more than its file.
    let boundary = multipart_boundary(&declared_header);
    let slack = if boundary.is_some() { 16 << 10 } else { 0 };
    if boundary.is_none() && declared_type(&declared_header).is_none() {
        return Err(unsupported(&declared_header));
    }
    let body = read_body(req, limit.saturating_add(slack)).await?;
    let (declared, file) = match &boundary {
        Some(b) => {
            let (part_type, range) = file_part(&body, b).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_multipart",
                    "the form has no part named `file` (with its Content-Type)",
                )
            })?;
            let declared = declared_type(&part_type).ok_or_else(|| unsupported(&part_type))?;
            (declared, body.slice(range))
        }
        None => (
            declared_type(&declared_header).ok_or_else(|| unsupported(&declared_header))?,
            body,
        ),
    };
    if file.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the file must be at most {limit} bytes"),
        ));
    }
    let now = gengate_engine::now_ms();
    let up = app
        .uploads
        .upload(&caller, declared, &file, app.auth.media_urls(), now)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadView {
            id: up.id,
            url: up.url,
            content_type: up.content_type.to_owned(),
            bytes: up.bytes,
            width: up.width,
            height: up.height,
            expires_at: up.expires_at.map(rfc3339),
        }),
    )
        .into_response())
}

fn unsupported(given: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "uploads take {} (or multipart/form-data with a `file` part), not {given:?}",
            UPLOAD_TYPES.join(", ")
        ),
    )
}

/// The boundary of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    if !parts
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty() && v.len() <= 70)
            .then(|| v.to_owned())
    })
}

/// The declared type and byte range of the part named `file` of a
/// multipart body (RFC 7578).
fn file_part(body: &[u8], boundary: &str) -> Option<(String, std::ops::Range<usize>)> {
    let delimiter = format!("--{boundary}");
    let find = |from: usize, needle: &[u8]| {
        body.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let mut at = find(0, delimiter.as_bytes())? + delimiter.len();
    loop {
        // After a delimiter: `--` ends the body, CRLF starts a part.
        if body.get(at..at + 2)? == b"--" {
            return None;
        }
        let head_start = at + 2;
        let head_end = find(head_start, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&body[head_start..head_end]).ok()?;
        let data_start = head_end + 4;
        let next = find(data_start, format!("\r\n{delimiter}").as_bytes())?;
        let mut is_file = false;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("content-disposition") {
                is_file = value
                    .split(';')
                    .any(|p| matches!(p.trim().split_once('='), Some((k, v)) if k.trim() == "name" && v.trim().trim_matches('"') == "file"));
            } else if name.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim().to_owned());
            }
        }
        if is_file {
            return Some((content_type?, data_start..next));
        }
        at = next + 2 + delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_part_of_a_form_is_found() {
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n\
--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\
Content-Type: image/png\r\n\r\n\x89PNG\r\n--xy\r\n--xyz--\r\n";
        let b = multipart_boundary("multipart/form-data; boundary=\"xyz\"").unwrap();
        let (t, r) = file_part(body, &b).unwrap();
        assert_eq!(
            (t.as_str(), &body[r]),
            ("image/png", &b"\x89PNG\r\n--xy"[..])
        );
        assert_eq!(file_part(b"--xyz--\r\n", "xyz"), None);
        assert_eq!(file_part(b"--xyz\r\nbroken", "xyz"), None);
        assert_eq!(multipart_boundary("image/png"), None);
    }
}
