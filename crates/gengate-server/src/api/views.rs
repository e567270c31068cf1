//! Response bodies: separate from domain types so the wire format is
//! stable and deliberate, and described in `/openapi.json`.

use gengate_core::time::rfc3339;
use gengate_core::{ModelSpec, Task};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::service::media_urls::MediaUrls;
use crate::service::tasks::{CreateTask, ListParams};
use gengate_engine::dispatch::QueueInfo;

/// `POST /v1/tasks` body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    /// A model name from `GET /v1/models`.
    pub model: String,
    /// The model's input, checked against its schema.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Show the result in the public gallery once it succeeds.
    #[serde(default)]
    pub public: bool,
    /// -10..=10, default 0; higher runs first. Only admin keys may go above 0.
    #[serde(default)]
    pub priority: i32,
    /// An http(s) URL to POST the result to when the task finishes, signed
    /// the Standard Webhooks way (see `GET /v1/webhooks/secret`).
    #[serde(default)]
    pub webhook: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutputView {
    pub url: String,
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Hex SHA-256 of the stored file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A small preview (images) or a poster (videos: their first frame,
    /// or the provider's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// Pixels, where known (images; videos where ffprobe is installed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// A video's length in seconds, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskErrorView {
    pub code: String,
    pub message: String,
}

/// A task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    pub model: String,
    /// queued, submitting, running, storing (outputs being copied to the
    /// operator's storage), succeeded, failed or canceled.
    pub status: &'static str,
    #[schema(value_type = Object)]
    pub input: Value,
    pub outputs: Vec<OutputView>,
    /// Why the task failed, or why its last attempt did while it is retried.
    pub error: Option<TaskErrorView>,
    /// 1 = next to start; null unless queued and ready.
    pub queue_position: Option<u64>,
    /// Estimated seconds until done, from the live queue and observed latency.
    pub eta_seconds: Option<u64>,
    pub progress: f32,
    pub provider: String,
    pub attempts: u32,
    pub public: bool,
    pub priority: i32,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Where the result is posted, if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// A task's outputs as shown. Unless the task is in the gallery, URLs of
/// this server's media are signed (see [`MediaUrls`]), so that the view's
/// links open without a key.
fn outputs(task: &Task, urls: Option<&MediaUrls>) -> Vec<OutputView> {
    let sign = urls.filter(|_| !task.in_gallery());
    let now = gengate_engine::now_ms();
    let shown = |url: &str| match sign {
        Some(urls) => urls.sign_for_view(url, now),
        None => url.to_owned(),
    };
    task.outputs
        .iter()
        .map(|o| OutputView {
            url: shown(&o.url),
            content_type: o.content_type.clone(),
            bytes: o.bytes,
            sha256: o.sha256.clone(),
            thumbnail_url: o.thumbnail_url.as_deref().map(shown),
            width: o.width,
            height: o.height,
            duration_s: o.duration_s,
        })
        .collect()
}

impl TaskView {
    /// `urls` signs the outputs' links of a task outside the gallery.
    pub fn new(task: &Task, q: QueueInfo, urls: Option<&MediaUrls>) -> Self {
        Self {
            id: task.id.clone(),
            model: task.model.clone(),
            status: task.status.as_str(),
            input: task.input.clone(),
            outputs: outputs(task, urls),
            error: task.error.as_ref().map(|e| TaskErrorView {
                code: e.code.clone(),
                message: e.message.clone(),
            }),
            queue_position: q.position,
            eta_seconds: q.eta_seconds,
            progress: (task.progress * 100.0).round() / 100.0,
            provider: task.provider.clone(),
            attempts: task.attempts,
            public: task.public,
            priority: task.priority,
            created_at: rfc3339(task.created_at),
            started_at: task.started_at.map(rfc3339),
            finished_at: task.finished_at.map(rfc3339),
            webhook: task.webhook_url.clone(),
        }
    }
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub data: Vec<TaskView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A gallery entry: only what a gallery page shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct GalleryItem {
    pub id: String,
    pub model: String,
    pub prompt: Option<String>,
    pub outputs: Vec<OutputView>,
    pub finished_at: Option<String>,
}

impl GalleryItem {
    pub fn new(task: &Task) -> Self {
        Self {
            id: task.id.clone(),
            model: task.model.clone(),
            prompt: task
                .input
                .get("prompt")
                .and_then(Value::as_str)
                .map(str::to_owned),
            outputs: outputs(task, None),
            finished_at: task.finished_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GalleryPage {
    pub data: Vec<GalleryItem>,
    pub next_cursor: Option<String>,
}

/// A model of the catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    pub name: String,
    /// image or video.
    #[schema(value_type = String)]
    pub kind: gengate_core::ModelKind,
    pub provider: String,
    pub description: String,
    /// The input as a JSON Schema (draft 2020-12) object schema: `type`,
    /// `enum`, `default`, `minimum`/`maximum`, `minLength`/`maxLength`,
    /// `format: uri`, `required`; no other fields. Also in `/openapi.json`
    /// as the component `ModelInput.{name}`.
    #[schema(value_type = Object)]
    pub input: Value,
}

impl ModelView {
    pub fn new(m: &ModelSpec) -> Self {
        Self {
            name: m.name.clone(),
            kind: m.kind,
            provider: m.provider.clone(),
            description: m.description.clone(),
            input: m.input_schema(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub data: Vec<ModelView>,
}

/// Query of `GET /v1/tasks/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetTaskQuery {
    /// Long-poll: seconds to wait for a status change.
    pub wait: Option<u64>,
}

/// Query of `GET /v1/tasks`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTasksQuery {
    /// Only tasks in this status.
    pub status: Option<String>,
    /// Only tasks of this model.
    pub model: Option<String>,
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Query of `GET /v1/gallery`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GalleryQuery {
    pub model: Option<String>,
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl From<CreateTaskRequest> for CreateTask {
    fn from(r: CreateTaskRequest) -> Self {
        Self {
            model: r.model,
            input: r.input,
            public: r.public,
            priority: r.priority,
            webhook: r.webhook,
        }
    }
}

impl From<ListTasksQuery> for ListParams {
    fn from(q: ListTasksQuery) -> Self {
        Self {
            status: q.status,
            model: q.model,
            limit: q.limit,
            cursor: q.cursor,
        }
    }
}

impl From<GalleryQuery> for ListParams {
    fn from(q: GalleryQuery) -> Self {
        Self {
            status: None,
            model: q.model,
            limit: q.limit,
            cursor: q.cursor,
        }
    }
}
