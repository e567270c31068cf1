//! The one error type of the HTTP API. It alone decides the status code and
//! writes the body `{"error":{"code","message","field"}}`; a 5xx is logged
//! here, once, and the client sees only a generic message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::ServiceError;

/// An API failure.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// The cause of a 5xx, for the log only.
    pub internal: Option<anyhow::Error>,
    /// Seconds to wait, sent as `Retry-After`.
    pub retry_after: Option<u64>,
    /// The `RateLimit-Policy` and `RateLimit` headers of a limit hit
    /// (draft-ietf-httpapi-ratelimit-headers).
    pub rate_limit: Option<Box<(String, String)>>,
    /// The balance and price of a create refused for its credits.
    pub credits: Option<Box<(i64, i64)>>,
}

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_input`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one (e.g. `input.prompt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `insufficient_credits`: the balance, and what the task costs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            internal: None,
            retry_after: None,
            rate_limit: None,
            credits: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self {
            internal: Some(err.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::NotFound(_) => ApiError::not_found(message),
            ServiceError::Invalid { code, field, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
            }
            ServiceError::Conflict { code, .. } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ServiceError::IdempotencyMismatch => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                message,
            )
            .with_field("Idempotency-Key"),
            ServiceError::IdempotencyInProgress => {
                ApiError::new(StatusCode::CONFLICT, "idempotency_key_in_progress", message)
                    .with_field("Idempotency-Key")
            }
            ServiceError::Unauthenticated => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            ServiceError::Forbidden => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            ServiceError::TokenScope(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "token_scope", message)
            }
            ServiceError::Refused(why) => refused(&why, message),
            ServiceError::Store(gengate_store::StoreError::Unavailable(m)) => {
                tracing::error!(error = %m, "store unavailable");
                ApiError::unavailable("the store is unavailable; retry shortly")
            }
            ServiceError::Store(other) => ApiError::internal(other),
        }
    }
}

/// A create refused by the user's limits or credits: `402` with the
/// balance, `403` for a disabled user, otherwise `429` with `Retry-After`
/// and the `RateLimit-Policy` / `RateLimit` headers naming the limit hit.
fn refused(why: &gengate_core::Refusal, message: String) -> ApiError {
    use gengate_core::Refusal;
    let limited = |policy: String, left: String, wait: u64| ApiError {
        retry_after: Some(wait),
        rate_limit: Some(Box::new((policy, left))),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            message.clone(),
        )
    };
    match *why {
        Refusal::Disabled => ApiError::new(StatusCode::FORBIDDEN, "user_disabled", message),
        Refusal::InsufficientCredits { balance, price } => ApiError {
            credits: Some(Box::new((balance, price))),
            ..ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_credits",
                message,
            )
        },
        // A slot frees when a task finishes: no time is known, so clients
        // are told to look again in a few seconds.
        Refusal::TooManyActive { limit } => ApiError {
            code: "too_many_active_tasks",
            ..limited(format!("\"active\";q={limit}"), "\"active\";r=0".into(), 5)
        },
        Refusal::RateLimited {
            limit,
            retry_after_ms,
        } => {
            let t = crate::service::secs(retry_after_ms);
            limited(
                format!("\"minute\";q={limit};w=60"),
                format!("\"minute\";r=0;t={t}"),
                t,
            )
        }
        Refusal::DailyLimit {
            limit,
            retry_after_ms,
        } => {
            let t = crate::service::secs(retry_after_ms);
            ApiError {
                code: "daily_limit",
                ..limited(
                    format!("\"day\";q={limit};w=86400"),
                    format!("\"day\";r=0;t={t}"),
                    t,
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(err) = &self.internal {
            tracing::error!(error = ?err, "request failed"); // the one place a 5xx cause is logged
        }
        let status = self.status;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
                balance: self.credits.as_deref().map(|c| c.0),
                price: self.credits.as_deref().map(|c| c.1),
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some((policy, left)) = self.rate_limit.as_deref()
            && let (Ok(p), Ok(l)) = (HeaderValue::from_str(policy), HeaderValue::from_str(left))
        {
            resp.headers_mut().insert("ratelimit-policy", p);
            resp.headers_mut().insert("ratelimit", l);
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
