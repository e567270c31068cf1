//! Kling's callback: the bare task object, posted on every status change;
//! an envelope around it (`{code, data: task}`) is read too. Unsigned, so
//! only a hint the dispatcher confirms by polling.

use serde::Deserialize;
use serde_json::Value;

use super::tasks::WireTask;
use crate::{CallbackHint, ProviderError};

/// Reads a callback body into the hint it carries.
///
/// # Errors
/// [`ProviderError::Rejected`] when the body is not a Kling task object.
pub(super) fn parse(body: &[u8]) -> Result<CallbackHint, ProviderError> {
    let refuse = |why: &str| ProviderError::Rejected {
        code: "not_a_callback".to_owned(),
        message: format!("not a kling callback: {why}"),
    };
    let value: Value = serde_json::from_slice(body).map_err(|_| refuse("not JSON"))?;
    let task_value = match value.get("data") {
        Some(data) if value.get("task_id").is_none() && data.is_object() => data,
        _ => &value,
    };
    // (serde would read an array positionally into the struct)
    if !task_value.is_object() {
        return Err(refuse("not a JSON object"));
    }
    let task = WireTask::deserialize(task_value).map_err(|_| refuse("not a task object"))?;
    let id = task
        .task_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| refuse("no task_id"))?;
    let status = task.task_status.ok_or_else(|| refuse("no task_status"))?;
    Ok(CallbackHint {
        provider_task_id: id,
        finished: matches!(status.as_str(), "succeed" | "succeeded" | "failed"),
    })
}
