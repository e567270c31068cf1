//! The `TASK_END` webhook read into a hint: the task id and whether the
//! task ended (see `Provider::parse_callback` for RunningHub).

use serde::Deserialize;

use crate::wire::lenient_string;
use crate::{CallbackHint, ProviderError};

/// Reads a callback body into the hint it carries.
///
/// # Errors
/// [`ProviderError::Rejected`] when the body is not a RunningHub callback.
pub(super) fn parse(body: &[u8]) -> Result<CallbackHint, ProviderError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct WireCallback {
        #[serde(default, deserialize_with = "lenient_string")]
        event: Option<String>,
        #[serde(default, deserialize_with = "lenient_string")]
        task_id: Option<String>,
    }
    let not_ours = |why: &str| ProviderError::Rejected {
        code: "callback".to_owned(),
        message: format!("not a RunningHub callback: {why}"),
    };
    // Through a Value: serde would read an array positionally into the
    // struct.
    let cb: WireCallback = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(serde_json::Value::is_object)
        .and_then(|v| WireCallback::deserialize(v).ok())
        .ok_or_else(|| not_ours("not a JSON object"))?;
    let event = cb.event.ok_or_else(|| not_ours("no event"))?;
    let task_id = cb
        .task_id
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| not_ours("no taskId"))?;
    Ok(CallbackHint {
        provider_task_id: task_id,
        finished: event.eq_ignore_ascii_case("TASK_END"),
    })
}
