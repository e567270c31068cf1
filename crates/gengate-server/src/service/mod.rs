//! Services: the rules of the API (ownership, idempotency, validation,
//! authentication), independent of HTTP. Handlers call one method each and map
//! the result; [`ServiceError`] says what went wrong in terms a caller can act on.

pub mod admin;
pub mod auth;
pub mod callbacks;
pub mod events;
pub mod tasks;
pub mod webhooks;

use gengate_store::StoreError;

/// Why a service call was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The thing does not exist, or belongs to someone else (never told apart).
    #[error("{0}")]
    NotFound(String),
    /// A field of the request is invalid.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        field: String,
        message: String,
    },
    /// The request conflicts with the current state (e.g. cancel a finished task).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The idempotency key was used before with a different body.
    #[error("Idempotency-Key was already used with a different request body")]
    IdempotencyMismatch,
    /// A request with this idempotency key is still being processed.
    #[error("a request with this Idempotency-Key is still in progress; retry later")]
    IdempotencyInProgress,
    #[error("missing or invalid API key")]
    Unauthenticated,
    /// The caller created too many tasks in the current minute.
    #[error("too many tasks created this minute; retry in {retry_after}s")]
    RateLimited { retry_after: u64 },
    #[error("this route needs an admin key")]
    Forbidden,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<gengate_core::InputError> for ServiceError {
    fn from(e: gengate_core::InputError) -> Self {
        ServiceError::Invalid {
            code: "invalid_input",
            field: e.field,
            message: e.message,
        }
    }
}
