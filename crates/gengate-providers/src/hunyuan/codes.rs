//! Tencent's error codes by what the dispatcher does next, for calls and for
//! jobs that failed.

use std::time::Duration;

use super::signing::MAX_CLOCK_SKEW_SECS;
use crate::ProviderError;

/// Which call an error code came back to: the same code means different
/// things to a submission and to a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Submit,
    Query,
}

/// Codes that mean the account cannot pay for more work.
const ACCOUNT_CODES: &[&str] = &[
    "FailedOperation.ResourcePackExhausted",
    "FailedOperation.FreeResourcePackExhausted",
    "FailedOperation.ServiceNotActivated",
    "FailedOperation.ServiceStopArrears",
    "ResourceInsufficient.ChargeResourceExhaust",
    "ResourceUnavailable.InArrears",
    "ResourceUnavailable.LowBalance",
    "ResourceUnavailable.StopUsing",
    "ResourceUnavailable.NotExist",
    "ResourcesSoldOut.ChargeStatusException",
];

/// Codes of failures on Tencent's side that a later attempt may not meet.
const TRANSIENT_CODES: &[&str] = &[
    "FailedOperation.EngineRequestTimeout",
    "FailedOperation.EngineServerError",
    "FailedOperation.EngineServerLimitExceeded",
    "ResourceUnavailable.IsOpening",
    "InternalError",
];

/// Tencent's error code → what the dispatcher does next. Codes we do not
/// know are refusals (`Rejected`): an `Error` in the envelope means the
/// action did not run, and retrying what we do not understand could loop.
pub(super) fn classify_code(
    call: Call,
    code: &str,
    message: &str,
    retry_after: Duration,
) -> ProviderError {
    let message = message.to_owned();
    let code_owned = code.to_owned();
    if code == "RequestLimitExceeded" || code.starts_with("RequestLimitExceeded.") {
        // `.JobNumExceed` is the account's concurrency; the bare code and the
        // other suffixes are request-rate limits. Either way: wait, retry;
        // only the first says the account runs fewer jobs than we thought.
        let message = format!("{code}: {message}");
        return if code == "RequestLimitExceeded.JobNumExceed" {
            ProviderError::BackPressure {
                retry_after,
                message,
            }
        } else {
            ProviderError::RateLimited {
                retry_after,
                message,
            }
        };
    }
    if code.starts_with("AuthFailure") || code == "UnauthorizedOperation" {
        let message = if code == "AuthFailure.SignatureExpire" {
            format!(
                "{message} (the signature's timestamp is more than {MAX_CLOCK_SKEW_SECS} s from \
                 Tencent's clock: the host clock must be synced to within 5 minutes)"
            )
        } else {
            message
        };
        return ProviderError::Unauthorized {
            code: code_owned,
            message,
        };
    }
    if ACCOUNT_CODES.contains(&code) {
        return ProviderError::AccountExhausted {
            code: code_owned,
            message,
        };
    }
    if TRANSIENT_CODES.contains(&code) || code.starts_with("InternalError.") {
        return ProviderError::Transient(format!("{code}: {message}"));
    }
    if call == Call::Query
        && matches!(
            code,
            "FailedOperation.JobNotFound" | "FailedOperation.JobNotExist"
        )
    {
        return ProviderError::NotFound;
    }
    // Content moderation (`OperationDenied.*IllegalDetected`,
    // `FailedOperation.ModerationFailed`), bad or missing parameters
    // (`InvalidParameter*`, `MissingParameter`, `UnknownParameter`), wrong
    // region, action or version, and everything not listed above.
    ProviderError::Rejected {
        code: code_owned,
        message,
    }
}

/// Whether a job that failed at Tencent (its `JobErrorCode`/`ErrorCode`)
/// may succeed when submitted again: not after content moderation or a
/// parameter problem; yes after engine errors, timeouts and downloads that
/// failed, and after codes we do not know (the job had passed the
/// submission's checks).
pub(super) fn job_error_retryable(code: &str) -> bool {
    let permanent = code.contains("IllegalDetected")
        || code.contains("Moderation")
        || code.starts_with("OperationDenied")
        || code.starts_with("InvalidParameter")
        || code.starts_with("MissingParameter")
        || code.starts_with("UnknownParameter");
    !permanent
}
