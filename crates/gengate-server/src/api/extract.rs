//! Extractors that refuse bad input in the API's one error shape: JSON bodies
//! (content type, size, syntax, types, each with its own status), query
//! strings, and the caller's API key.

use std::error::Error as _;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::service::{ServiceError, auth};
use crate::state::App;
use gengate_core::Role;
use gengate_store::Caller;

/// Reads a request body of at most `limit` bytes: `413` beyond it.
///
/// # Errors
/// `413` when the body is too large, `400` when it cannot be read.
pub async fn read_body(req: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must be at most {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let mut source = e.source();
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                source = s.source();
            }
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_read_failed",
                "the request body could not be read",
            )
        })
}

/// A JSON body: `415` for another content type, `413` over the body limit,
/// `400` for malformed JSON, `422` naming the field for wrong types or
/// unknown fields.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<App> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/")
                        && mime.to_ascii_lowercase().ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = read_body(req, app.body_limit).await?;
        let malformed = |e: &dyn std::fmt::Display| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {e}"),
            )
        };
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_data() {
                let err = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    inner.to_string(),
                );
                if path == "." {
                    err
                } else {
                    err.with_field(path)
                }
            } else {
                malformed(&inner)
            }
        })?;
        de.end().map_err(|e| malformed(&e))?;
        Ok(AppJson(value))
    }
}

/// An optional JSON body: `None` when the request has none (no
/// `Content-Type` and no length), otherwise as [`AppJson`].
impl<T: DeserializeOwned> axum::extract::OptionalFromRequest<App> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Option<Self>, Self::Rejection> {
        let headers = req.headers();
        let empty = headers.get(header::CONTENT_TYPE).is_none()
            && headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        if empty {
            return Ok(None);
        }
        <Self as FromRequest<App>>::from_request(req, app)
            .await
            .map(Some)
    }
}

/// A query string: `400` naming the parameter when it does not parse.
/// `access_token` is authentication's ([`Caller`]), never a route's.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        // Re-encoded without the token only when it is there (rarely: the
        // hot reads of API clients carry none).
        let without_token;
        let query = if query.contains(ACCESS_TOKEN) {
            without_token = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != ACCESS_TOKEN),
                )
                .finish();
            without_token.as_str()
        } else {
            query
        };
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(AppQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let err = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("invalid query string: {}", e.into_inner()),
                );
                if path == "." {
                    err
                } else {
                    err.with_field(path)
                }
            })
    }
}

/// The query parameter a browser sends its token in, where it cannot set
/// a header (`EventSource`, `<img src>`).
pub const ACCESS_TOKEN: &str = "access_token";

fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// `?access_token=`, on a request that only reads.
fn query_token(parts: &Parts) -> Option<String> {
    if !reads_only(parts) {
        return None;
    }
    form_urlencoded::parse(parts.uri.query()?.as_bytes())
        .find(|(k, _)| k == ACCESS_TOKEN)
        .map(|(_, v)| v.into_owned())
}

fn reads_only(parts: &Parts) -> bool {
    parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD
}

/// The caller: the key's user, or, for a service key that names one in
/// `X-Gengate-User`, that end user. `401` without a valid key; `400` for an
/// end-user id that is empty, too long or not printable ASCII; `403` when a
/// key other than a service key names an end user (it cannot act for one,
/// and acting as itself instead would be a surprise).
impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let secret = match (bearer(parts), query_token(parts)) {
            (Some(secret), _) => secret,
            // A key in a URL ends up in logs and browser history: only
            // short-lived, read-only tokens travel there.
            (None, Some(token)) if token.starts_with(auth::TOKEN_PREFIX) => token,
            (None, Some(_)) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "access_token takes a browser token (POST /v1/tokens), never an API key",
                )
                .with_field(ACCESS_TOKEN));
            }
            (None, None) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this route needs an API key: send Authorization: Bearer <key>",
                ));
            }
        };
        let caller = app.auth.authenticate(&secret).await?;
        if caller.token.is_some() && !reads_only(parts) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "token_read_only",
                "a browser token only reads; this route needs an API key",
            ));
        }
        let Some(named) = parts.headers.get(auth::END_USER_HEADER) else {
            return Ok(caller);
        };
        let id = named
            .to_str()
            .ok()
            .filter(|id| auth::valid_end_user(id))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_end_user",
                    format!(
                        "X-Gengate-User must be 1..{} printable ASCII characters without spaces",
                        auth::END_USER_MAX
                    ),
                )
                .with_field("X-Gengate-User")
            })?;
        if caller.role != Role::Service {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "end_user_not_allowed",
                "only a service key may act for an end user (X-Gengate-User)",
            )
            .with_field("X-Gengate-User"));
        }
        Ok(app.auth.end_user(&caller, id).await?)
    }
}

/// The caller if the request carries a key or token (`None` without
/// either; a bad one is still refused).
impl axum::extract::OptionalFromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &App,
    ) -> Result<Option<Self>, Self::Rejection> {
        if bearer(parts).is_none() && query_token(parts).is_none() {
            return Ok(None);
        }
        <Caller as FromRequestParts<App>>::from_request_parts(parts, app)
            .await
            .map(Some)
    }
}

/// A caller with the admin role (`403` for a user key).
pub struct Admin(pub Caller);

impl FromRequestParts<App> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, app).await?;
        if caller.role != Role::Admin {
            return Err(ServiceError::Forbidden.into());
        }
        Ok(Admin(caller))
    }
}

/// The `Idempotency-Key` header, if sent.
pub struct IdempotencyKeyHeader(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get("idempotency-key") {
            None => Ok(IdempotencyKeyHeader(None)),
            Some(v) => v
                .to_str()
                .map(|s| IdempotencyKeyHeader(Some(s.to_owned())))
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_idempotency_key",
                        "Idempotency-Key must be printable ASCII",
                    )
                    .with_field("Idempotency-Key")
                }),
        }
    }
}
