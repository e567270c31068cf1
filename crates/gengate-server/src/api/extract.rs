//! Extractors that refuse bad input in the API's one error shape: JSON bodies
//! (content type, size, syntax, types, each with its own status), query
//! strings, and the caller's API key.

use std::error::Error as _;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::service::ServiceError;
use crate::state::App;
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

/// A query string: `400` naming the parameter when it does not parse.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
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

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(secret) = bearer(parts) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route needs an API key: send Authorization: Bearer <key>",
            ));
        };
        Ok(app.auth.authenticate(secret).await?)
    }
}

/// A caller with the admin role (`403` for a user key).
pub struct Admin(pub Caller);

impl FromRequestParts<App> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, app).await?;
        if caller.role != gengate_core::Role::Admin {
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
