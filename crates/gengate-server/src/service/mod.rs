//! Services: the rules of the API (ownership, idempotency, validation,
//! authentication), independent of HTTP. Handlers call one method each and map
//! the result; [`ServiceError`] says what went wrong in terms a caller can act on.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod callbacks;
pub mod events;
pub mod media_urls;
pub mod tasks;
pub mod uploads;
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
    /// A create over one of the user's limits or credits.
    #[error("{}", refusal_message(.0))]
    Refused(gengate_core::Refusal),
    #[error("this route needs an admin key")]
    Forbidden,
    /// A browser token asked for more than it was issued for.
    #[error("{0}")]
    TokenScope(&'static str),
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

/// Refuses a browser token made for one task where several are read.
///
/// # Errors
/// [`ServiceError::TokenScope`].
pub fn may_list(caller: &gengate_store::Caller) -> Result<(), ServiceError> {
    if caller.may_list() {
        Ok(())
    } else {
        Err(ServiceError::TokenScope(
            "this browser token reads one task only",
        ))
    }
}

/// Refuses every browser token: the route reveals or changes what only an
/// API key may.
///
/// # Errors
/// [`ServiceError::TokenScope`].
pub fn key_only(caller: &gengate_store::Caller) -> Result<(), ServiceError> {
    match caller.token {
        None => Ok(()),
        Some(_) => Err(ServiceError::TokenScope(
            "this route takes an API key, not a browser token",
        )),
    }
}

/// What a refused create tells its caller.
pub fn refusal_message(r: &gengate_core::Refusal) -> String {
    use gengate_core::Refusal;
    match r {
        Refusal::Disabled => "this user is disabled".into(),
        Refusal::InsufficientCredits { balance, price } => {
            format!("this task costs {price} credits and the balance is {balance}")
        }
        Refusal::TooManyActive { limit } => format!(
            "{limit} tasks are already queued or running, the most this user may have; \
             retry when one finishes"
        ),
        Refusal::RateLimited {
            limit,
            retry_after_ms,
        } => format!(
            "more than {limit} tasks created in a minute; retry in {}s",
            secs(*retry_after_ms)
        ),
        Refusal::DailyLimit {
            limit,
            retry_after_ms,
        } => format!(
            "{limit} tasks created today, the most this user may create per day; retry in {}s",
            secs(*retry_after_ms)
        ),
    }
}

/// Whole seconds to wait, at least one.
pub fn secs(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000).max(1)
}
