//! The legacy task API's paths and business codes (`providers.md` §1.9),
//! and what each code means for the dispatcher.

use std::time::Duration;

use crate::ProviderError;

pub(super) const CREATE_WORKFLOW: &str = "/task/openapi/create";
pub(super) const RUN_APP: &str = "/task/openapi/ai-app/run";
pub(super) const STATUS: &str = "/task/openapi/status";
pub(super) const OUTPUTS: &str = "/task/openapi/outputs";
pub(super) const CANCEL: &str = "/task/openapi/cancel";
pub(super) const ACCOUNT_STATUS: &str = "/uc/openapi/accountStatus";

pub(super) mod code {
    pub(crate) const UNKNOWN_ERROR: i64 = 500;
    pub(crate) const TASK_INSTANCE_MAXED: i64 = 415;
    pub(crate) const TASK_QUEUE_MAXED: i64 = 421;
    pub(crate) const TASK_NOT_FOUNED: i64 = 423;
    pub(crate) const APIKEY_UNSUPPORTED_FREE_USER: i64 = 801;
    pub(crate) const APIKEY_TASK_IS_RUNNING: i64 = 804;
    pub(crate) const APIKEY_TASK_STATUS_ERROR: i64 = 805;
    pub(crate) const APIKEY_TASK_NOT_FOUND: i64 = 807;
    pub(crate) const CORPAPIKEY_INSUFFICIENT_FUNDS: i64 = 812;
    pub(crate) const APIKEY_TASK_IS_QUEUED: i64 = 813;
    pub(crate) const PERSONAL_QUEUE_COUNT_LIMIT: i64 = 814;
}

/// What a business code means for the dispatcher, where the code is known.
pub(super) fn classify_code(code: i64, msg: &str, retry_after: Duration) -> Option<ProviderError> {
    let message = format!("{code} {msg}");
    Some(match code {
        // Account concurrency full (shared pool, dedicated machines, the
        // dedicated queue), rate limits and busy models [3p]: the task stays
        // queued.
        code::TASK_QUEUE_MAXED
        | code::TASK_INSTANCE_MAXED
        | code::PERSONAL_QUEUE_COUNT_LIMIT
        | 1011
        | 1520 => ProviderError::BackPressure {
            retry_after,
            message,
        },
        // A request-rate limit [3p]: wait, but the account's slots are fine.
        1003 => ProviderError::RateLimited {
            retry_after,
            message,
        },
        // Out of money, or a free account (the API needs a paid membership:
        // paying fixes it, as with a used-up balance).
        code::CORPAPIKEY_INSUFFICIENT_FUNDS | code::APIKEY_UNSUPPORTED_FREE_USER => {
            ProviderError::AccountExhausted {
                code: code.to_string(),
                message,
            }
        }
        // Bad or expired key, unknown user, invalid enterprise key.
        802 | 806 | 811 => ProviderError::Unauthorized {
            code: code.to_string(),
            message,
        },
        // Bad params, unknown workflow/app, failed validation, bad node
        // info, file too large, upload failed, cancel not allowed [3p].
        301 | 380 | 433 | 803 | 808 | 809 | 817 | 901 => ProviderError::Rejected {
            code: code.to_string(),
            message,
        },
        code::UNKNOWN_ERROR => ProviderError::Transient(message),
        code::APIKEY_TASK_NOT_FOUND | code::TASK_NOT_FOUNED => ProviderError::NotFound,
        _ => return None,
    })
}
