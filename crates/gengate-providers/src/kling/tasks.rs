//! Kling's task objects read into what the dispatcher needs: where a task
//! is, its outputs (with their 30-day expiry) or why it failed, which task
//! carries our reference, and the slots an image job holds.

use gengate_core::{Output, TaskError, mime};
use serde::Deserialize;
use serde_json::Value;

use crate::wire::lenient_string;
use crate::{JobState, ProviderError};

/// Outputs are deleted this long after the task was created (§3.9).
pub(super) const OUTPUT_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Deserialize)]
pub(super) struct WireTask {
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) task_id: Option<String>,
    #[serde(default)]
    pub(super) task_status: Option<String>,
    #[serde(default)]
    task_status_msg: Option<String>,
    #[serde(default)]
    task_info: Option<WireTaskInfo>,
    #[serde(default, deserialize_with = "lenient_string")]
    created_at: Option<String>,
    #[serde(default)]
    task_result: Option<WireResult>,
}

#[derive(Deserialize)]
struct WireTaskInfo {
    #[serde(default, deserialize_with = "lenient_string")]
    external_task_id: Option<String>,
}

#[derive(Deserialize)]
struct WireResult {
    #[serde(default)]
    videos: Option<Vec<WireFile>>,
    #[serde(default)]
    images: Option<Vec<WireFile>>,
}

#[derive(Deserialize)]
struct WireFile {
    #[serde(default)]
    url: Option<String>,
}

/// Where a queried task is.
pub(super) fn job_state(task: WireTask) -> Result<JobState, ProviderError> {
    let status = task.task_status.unwrap_or_default();
    match status.as_str() {
        "submitted" => Ok(JobState::Pending { progress: 0.0 }),
        "processing" => Ok(JobState::Pending { progress: 0.5 }),
        // `succeed` is the /v1 spelling; `succeeded` is the newer API's,
        // taken too in case a /v1 path starts answering in it.
        "succeed" | "succeeded" => {
            let expires_at = task
                .created_at
                .and_then(|c| c.trim().parse::<i64>().ok())
                // A seconds timestamp would put the expiry in 1970.
                .map(|c| {
                    if c < 100_000_000_000 {
                        c.saturating_mul(1000)
                    } else {
                        c
                    }
                })
                .map(|c| c.saturating_add(OUTPUT_LIFETIME_MS));
            let result = task.task_result.unwrap_or(WireResult {
                videos: None,
                images: None,
            });
            let files = |list: Option<Vec<WireFile>>, default: &'static str| {
                list.unwrap_or_default()
                    .into_iter()
                    .filter_map(|f| f.url.filter(|u| !u.is_empty()))
                    .map(move |url| Output {
                        content_type: content_type_of(&url, default).to_owned(),
                        url,
                        bytes: None,
                        expires_at,
                        key: None,
                        sha256: None,
                        thumbnail_url: None,
                        width: None,
                        height: None,
                        duration_s: None,
                    })
            };
            let outputs: Vec<Output> = files(result.videos, "video/mp4")
                .chain(files(result.images, "image/png"))
                .collect();
            if outputs.is_empty() {
                return Ok(JobState::Failed {
                    error: TaskError::new(
                        "provider_no_outputs",
                        "kling reported success without any output",
                        true,
                    ),
                });
            }
            Ok(JobState::Succeeded { outputs })
        }
        "failed" => {
            let message = task
                .task_status_msg
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| "kling reported a failure without a reason".to_owned());
            let policy = is_policy_failure(&message);
            let code = if policy {
                "provider_content_policy"
            } else {
                "provider_failed"
            };
            Ok(JobState::Failed {
                error: TaskError::new(code, message, !policy),
            })
        }
        other => Err(ProviderError::Transient(format!(
            "unknown kling task status {other:?}"
        ))),
    }
}

/// Whether a failure reason is a content or policy verdict, which a new
/// submission of the same request would get again. Kling states no codes for
/// task failures, only text, so this reads the text; anything else is taken
/// as a worker failure worth another attempt.
fn is_policy_failure(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "risk",
        "policy",
        "safety",
        "sensitive",
        "moderation",
        "violat",
        "inappropriate",
        "illegal",
        "prohibit",
        "censor",
        "违规",
        "敏感",
        "审核",
        "风控",
        "安全",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// A content type from the URL's extension, or `default`.
fn content_type_of(url: &str, default: &'static str) -> &'static str {
    mime::of_url(url).unwrap_or(default)
}

/// The task id of the task in `data` (one task or a list of them) whose
/// `task_info.external_task_id` is `reference`; no other task is trusted.
pub(super) fn pick_reference(data: &Value, reference: &str) -> Option<String> {
    let matches = |task: &Value| -> Option<String> {
        let task = WireTask::deserialize(task).ok()?;
        let ext = task.task_info?.external_task_id?;
        (ext == reference)
            .then_some(task.task_id?)
            .filter(|id| !id.is_empty())
    };
    match data {
        Value::Array(items) => items.iter().find_map(matches),
        Value::Object(_) => matches(data),
        _ => None,
    }
}

/// Slots `params` holds: an image job one per image (`n`, 1–9).
pub(super) fn image_slots(params: &Value) -> usize {
    let n = match params.get("n") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    n.map_or(1, |n| usize::try_from(n.clamp(1, 9)).unwrap_or(1))
}
