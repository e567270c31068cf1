//! Kling's `{code, message, request_id, data}` envelope and its business
//! codes (§3.8), read by what the dispatcher does next: the code decides,
//! the HTTP status only when the code is unknown.

use std::time::Duration;

use serde_json::Value;

use crate::ProviderError;
use crate::wire::snippet;

/// What a request does, which decides how an unusable answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    /// Creates a task: an unreadable answer may hide a task we pay for.
    Create,
    /// Queries one task by id: "task not found" codes mean [`ProviderError::NotFound`].
    Query,
    /// Any other read (lists, lookups by reference).
    Read,
}

/// The envelope's code (a number; a numeric string is taken too), message
/// and data, or `None` when the body is not Kling's envelope.
fn envelope(body: &[u8]) -> Option<(i64, String, Value)> {
    let Value::Object(mut obj) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let code = match obj.get("code")? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let message = obj
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let data = obj.remove("data").unwrap_or(Value::Null);
    Some((code, message, data))
}

/// Reads an answer: `data` on success, otherwise the classified failure.
pub(super) fn interpret(
    status: u16,
    body: &[u8],
    call: Call,
    retry_after: Duration,
) -> Result<Value, ProviderError> {
    let success = (200..300).contains(&status);
    match envelope(body) {
        Some((0, _, data)) if success => Ok(data),
        Some((code, message, _)) if code != 0 => {
            Err(classify_code(code, message, status, call, retry_after))
        }
        // Not Kling's envelope (a proxy's page, a truncated body) or an
        // envelope that contradicts its status.
        _ => {
            let what = format!("kling answered HTTP {status}: {}", snippet(body));
            Err(if status == 429 {
                ProviderError::BackPressure {
                    retry_after,
                    message: what,
                }
            } else if call == Call::Create && (success || status == 504) {
                // A 2xx we cannot read, or a gateway that gave up waiting,
                // may stand for a task that was created.
                ProviderError::Ambiguous(what)
            } else {
                ProviderError::Transient(what)
            })
        }
    }
}

/// Kling's business codes (§3.8) by what the dispatcher does next.
fn classify_code(
    code: i64,
    message: String,
    status: u16,
    call: Call,
    retry_after: Duration,
) -> ProviderError {
    let code_s = code.to_string();
    match code {
        // Auth failed / empty / invalid / not yet valid / expired (after
        // the one re-mint), and the IP whitelist: an operator must act.
        1000..=1004 | 1304 => ProviderError::Unauthorized {
            code: code_s,
            message,
        },
        // Account exception, arrears, resource pack used up or expired.
        1100..=1102 => ProviderError::AccountExhausted {
            code: code_s,
            message,
        },
        // "Task not found" ([3p] 1201; 1203 "resource missing") on a
        // single-task query.
        1201 | 1203 if call == Call::Query => ProviderError::NotFound,
        // The account already has a task with this external_task_id: our
        // own earlier submission, whose answer was lost. Reconcile by
        // reference instead of failing the task.
        1201 if call == Call::Create && is_duplicate_reference(&message) => {
            ProviderError::Ambiguous(format!(
                "kling already has a task with this external_task_id ({code}: {message})"
            ))
        }
        // No permission for the API/model, bad parameters, wrong method,
        // missing model, platform policy, content safety: permanent for this
        // request.
        1103 | 1200..=1203 | 1300 | 1301 => ProviderError::Rejected {
            code: code_s,
            message,
        },
        // Rate limit; concurrency over the resource pack's limit.
        1303 => ProviderError::BackPressure {
            retry_after,
            message: format!("{code}: {message}"),
        },
        1302 => ProviderError::RateLimited {
            retry_after,
            message: format!("{code}: {message}"),
        },
        // Internal error, maintenance, backlog timeout.
        5000..=5002 => ProviderError::Transient(format!("kling {code}: {message}")),
        _ => match status {
            401 => ProviderError::Unauthorized {
                code: code_s,
                message,
            },
            429 => ProviderError::BackPressure {
                retry_after,
                message: format!("{code}: {message}"),
            },
            400..=499 if call == Call::Query && status == 404 => ProviderError::NotFound,
            400..=499 => ProviderError::Rejected {
                code: code_s,
                message,
            },
            _ => ProviderError::Transient(format!("kling HTTP {status} code {code}: {message}")),
        },
    }
}

/// Whether a 1201 says the external_task_id is taken (rather than invalid).
fn is_duplicate_reference(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("external_task_id")
        && ["exist", "duplicat", "already", "repeat", "unique", "used"]
            .iter()
            .any(|w| m.contains(w))
}
