//! The task: one generation request from one user, from creation to a
//! terminal state. Only [`crate::lifecycle::apply`] changes a task's status.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::billing::{Billing, Ending, Limits};

/// A task id (`tsk_…`, see [`crate::id`]).
pub type TaskId = String;
/// The numeric id of a user in the store.
pub type UserId = i64;

/// Where a task is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted and durable, waiting for a provider slot (or a retry time).
    Queued,
    /// Claimed by a dispatcher; the provider call is under way. The provider
    /// may or may not have received it, which is why recovery reconciles.
    Submitting,
    /// The provider accepted it and gave us its id; we follow it.
    Running,
    /// The provider finished; its outputs (recorded on the task) are being
    /// copied into the operator's storage. Holds no provider slot.
    Storing,
    /// Finished with outputs.
    Succeeded,
    /// Finished without outputs; `error` says why.
    Failed,
    /// Canceled by its owner or an admin.
    Canceled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Submitting,
        Status::Running,
        Status::Storing,
        Status::Succeeded,
        Status::Failed,
        Status::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Submitting => "submitting",
            Status::Running => "running",
            Status::Storing => "storing",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
        }
    }

    /// Parses the wire/storage name of a status.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Terminal states do not change again, but for an admin's recopy of a
    /// failed copy (`Event::Recopy`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Canceled)
    }

    /// States in which the task holds one of its provider's slots.
    pub fn holds_slot(self) -> bool {
        matches!(self, Status::Submitting | Status::Running)
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Its own tasks.
    User,
    /// Everything, every user's tasks included.
    Admin,
    /// An app's backend: acts for the end user each request names (the
    /// `X-Gengate-User` header), or for the app itself when none is named.
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            "service" => Some(Role::Service),
            _ => None,
        }
    }
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub url: String,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// When the provider stops serving `url` (Unix ms), where it says so:
    /// the media step must copy the file before then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Once stored: the object's key in the operator's storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Once stored: hex SHA-256 of the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A small preview (images), or a poster (videos: the first frame, or
    /// the provider's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// Pixels, once stored (images from their header, videos by ffprobe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Seconds, for videos (by ffprobe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
}

impl Output {
    /// An output as a provider reports it: not stored yet.
    pub fn new(url: impl Into<String>, content_type: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            content_type: content_type.into(),
            bytes: None,
            expires_at: None,
            key: None,
            sha256: None,
            thumbnail_url: None,
            width: None,
            height: None,
            duration_s: None,
        }
    }
}

/// Why a task failed (or why its last attempt did).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    /// Stable machine-readable code, e.g. `provider_error`, `deadline_exceeded`.
    pub code: String,
    /// Human-readable cause; for provider failures, the provider's reason.
    pub message: String,
    /// Whether another attempt may succeed (provider 5xx, timeouts).
    #[serde(default)]
    pub retryable: bool,
}

impl TaskError {
    pub fn new(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            retryable,
        }
    }
}

/// A task as stored. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: TaskId,
    pub user_id: UserId,
    pub model: String,
    pub provider: String,
    pub status: Status,
    /// The model input after validation, with defaults filled in.
    pub input: Value,
    pub outputs: Vec<Output>,
    pub error: Option<TaskError>,
    pub public: bool,
    /// Higher runs first; see [`crate::policy`].
    pub priority: i32,
    /// Submissions made or under way (a refused one is given back).
    pub attempts: u32,
    pub max_attempts: u32,
    /// The provider's id for this task, stored the moment it accepts.
    pub provider_task_id: Option<String>,
    /// 0.0..=1.0 as reported by the provider.
    pub progress: f32,
    /// Not to be claimed before this time (retry backoff, back-pressure).
    pub not_before: i64,
    /// The task fails with `deadline_exceeded` if not finished by then.
    pub deadline_at: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
    /// Incremented by every stored change; updates are conditional on it, so
    /// two writers racing on one task cannot both win.
    pub version: i64,
    /// Where the owner wants the result posted (signed), if anywhere.
    pub webhook_url: Option<String>,
    /// The credits it holds of its owner's balance (`None`: free), fixed
    /// at creation.
    pub billing: Option<Billing>,
}

/// What a new task is made from, once the request has been validated.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: TaskId,
    pub user_id: UserId,
    pub model: String,
    pub provider: String,
    pub input: Value,
    pub public: bool,
    pub priority: i32,
    pub max_attempts: u32,
    pub deadline_at: i64,
    pub created_at: i64,
    pub webhook_url: Option<String>,
    pub billing: Option<Billing>,
    /// The owner's limits, checked in the same transaction as the insert.
    pub limits: Limits,
}

impl Task {
    /// Whether it is in the public gallery (and its media public): its
    /// owner made it public and it succeeded.
    pub fn in_gallery(&self) -> bool {
        self.public && self.status == Status::Succeeded
    }

    /// How it ended, for its credits; `None` while unfinished.
    pub fn ending(&self) -> Option<Ending> {
        Some(match self.status {
            Status::Succeeded => Ending::Succeeded {
                outputs: self.outputs.len(),
            },
            Status::Canceled => Ending::Canceled,
            Status::Failed
                if self
                    .error
                    .as_ref()
                    .is_some_and(|e| e.code == "deadline_exceeded") =>
            {
                Ending::Expired
            }
            Status::Failed => Ending::Failed,
            _ => return None,
        })
    }
}

impl NewTask {
    /// The task as first stored: queued, no attempts yet.
    pub fn into_task(self) -> Task {
        Task {
            id: self.id,
            user_id: self.user_id,
            model: self.model,
            provider: self.provider,
            status: Status::Queued,
            input: self.input,
            outputs: Vec::new(),
            error: None,
            public: self.public,
            priority: self.priority,
            attempts: 0,
            max_attempts: self.max_attempts,
            provider_task_id: None,
            progress: 0.0,
            not_before: self.created_at,
            deadline_at: self.deadline_at,
            created_at: self.created_at,
            started_at: None,
            finished_at: None,
            updated_at: self.created_at,
            version: 0,
            webhook_url: self.webhook_url,
            billing: self.billing,
        }
    }
}
