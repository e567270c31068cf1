//! Answers read into what the dispatcher needs: ComfyUI's validation
//! problems, a failed task's reason (and whether another run may pass), and
//! a finished task's files with their content types.

use gengate_core::{Output, TaskError, mime};
use serde::Deserialize;
use serde_json::Value;

use crate::ProviderError;
use crate::wire::lenient_string;

/// Longest provider text (failure reasons, validation errors) kept in an
/// error message.
const MAX_REASON_CHARS: usize = 400;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireCreated {
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) task_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) task_status: Option<String>,
    /// ComfyUI's validation result, a JSON document as a string.
    #[serde(default)]
    pub(super) prompt_tips: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOutput {
    #[serde(default, deserialize_with = "lenient_string")]
    file_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    file_type: Option<String>,
}

fn decoded(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn clipped(s: &str) -> String {
    if s.chars().count() <= MAX_REASON_CHARS {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX_REASON_CHARS).collect();
        out.push('…');
        out
    }
}

/// What ComfyUI's validation (`promptTips`) found wrong, if anything: a
/// failed `result` or non-empty `node_errors`. Unreadable tips say nothing.
pub(super) fn prompt_problems(tips: &Value) -> Option<String> {
    let tips = decoded(tips)?;
    let mut problems = Vec::new();
    if tips.get("result") == Some(&Value::Bool(false)) {
        let error = tips.get("error");
        let message = error
            .and_then(|e| text_of(e.get("message")).or_else(|| text_of(e.get("type"))))
            .or_else(|| text_of(error))
            .unwrap_or_else(|| "validation failed".to_owned());
        problems.push(message);
    }
    if let Some(nodes) = tips.get("node_errors").and_then(Value::as_object) {
        for (node, info) in nodes {
            let class = text_of(info.get("class_type")).unwrap_or_else(|| "?".to_owned());
            let errors: Vec<String> = info
                .get("errors")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|e| {
                            let message = text_of(e.get("message"))?;
                            Some(match text_of(e.get("details")) {
                                Some(d) => format!("{message}: {d}"),
                                None => message,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            problems.push(format!("node {node} ({class}): {}", errors.join("; ")));
        }
    }
    (!problems.is_empty()).then(|| clipped(&problems.join("; ")))
}

/// The task error of a failed task (`805`, or a failure webhook), from its
/// `failedReason`.
///
/// Retryable only when the exception looks like a resource accident (out of
/// GPU memory, a timeout): those depend on the machine and the moment, so a
/// new submission may pass. Anything else (a node raising on bad inputs, a
/// missing model) fails the same way again. An interrupted run is a cancel.
pub(super) fn failure(data: &Value, msg: &str) -> TaskError {
    let reason = data.get("failedReason").and_then(decoded);
    let field = |k: &str| reason.as_ref().and_then(|r| text_of(r.get(k)));
    let (kind, message) = (field("exception_type"), field("exception_message"));
    let node = match (field("node_id"), field("node_name")) {
        (Some(id), Some(name)) => format!("node {id} ({name}): "),
        (Some(id), None) => format!("node {id}: "),
        (None, Some(name)) => format!("{name}: "),
        (None, None) => String::new(),
    };
    let text = match (&kind, &message) {
        (Some(k), Some(m)) => format!("{node}{k}: {m}"),
        (Some(x), None) | (None, Some(x)) => format!("{node}{x}"),
        (None, None) if msg.is_empty() => "task failed without a reason".to_owned(),
        (None, None) => format!("{node}{msg}"),
    };
    let haystack = format!(
        "{} {}",
        kind.as_deref().unwrap_or(""),
        message.as_deref().unwrap_or("")
    )
    .to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| haystack.contains(n));
    if any(&["interruptprocessing", "interrupted", "cancel"]) {
        return TaskError::new("provider_canceled", clipped(&text), false);
    }
    let oom_word = haystack
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == "oom");
    let retryable = oom_word
        || any(&[
            "outofmemory",
            "out of memory",
            "allocation on device",
            "timeout",
            "timed out",
            "time out",
        ]);
    TaskError::new("provider_failed", clipped(&text), retryable)
}

/// The content type of an output, from RunningHub's `fileType` or, failing
/// that, the URL's extension.
pub(super) fn content_type(file_type: Option<&str>, url: &str) -> String {
    if let Some(t) = file_type.filter(|t| t.contains('/')) {
        return t.trim().to_ascii_lowercase();
    }
    file_type
        .and_then(mime::of_extension)
        .or_else(|| mime::of_url(url))
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// The outputs of a finished task. The lifetime of RunningHub's output URLs
/// is not documented, so `expires_at` stays unknown (the media step copies
/// them right away).
pub(super) fn outputs_of(data: &Value) -> Result<Vec<Output>, ProviderError> {
    let items: Vec<WireOutput> = match data {
        Value::Null => Vec::new(),
        Value::Array(_) => serde_json::from_value(data.clone())
            .map_err(|e| ProviderError::Transient(format!("unreadable outputs list: {e}")))?,
        _ => {
            return Err(ProviderError::Transient(
                "outputs answer is not a list".to_owned(),
            ));
        }
    };
    Ok(items
        .into_iter()
        .filter_map(|item| {
            let url = item.file_url.filter(|u| !u.trim().is_empty())?;
            Some(Output {
                content_type: content_type(item.file_type.as_deref(), &url),
                url,
                bytes: None,
                expires_at: None,
                key: None,
                sha256: None,
                thumbnail_url: None,
                width: None,
                height: None,
                duration_s: None,
            })
        })
        .collect())
}
