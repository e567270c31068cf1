//! Providers: the [`Provider`] trait through which the dispatcher submits,
//! follows and cancels tasks at an external AI service, its adapters, and
//! mock servers that speak each provider's wire protocol for tests and
//! capacity runs.
//!
//! Adapters classify every failure by what the dispatcher should do next
//! ([`ProviderError`]); they never log request or response bodies.

use std::time::Duration;

use async_trait::async_trait;
use gengate_core::{ModelKind, Output, TaskError};
use serde_json::Value;

pub mod mock;
pub mod render;
pub mod sim;

/// What the dispatcher hands a provider to submit.
#[derive(Debug, Clone, Copy)]
pub struct SubmitRequest<'a> {
    /// Our task id.
    pub task_id: &'a str,
    /// The client reference of this submission (unique per attempt), for
    /// providers that keep one: a submission whose answer was lost is found
    /// again by it, while a retry is a new job.
    pub reference: &'a str,
    pub model: &'a str,
    pub kind: ModelKind,
    /// The validated input.
    pub input: &'a Value,
}

/// A task the dispatcher follows.
#[derive(Debug, Clone, Copy)]
pub struct FollowRef<'a> {
    pub task_id: &'a str,
    pub provider_task_id: &'a str,
}

/// Where a provider task is.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Queued or running at the provider.
    Pending {
        progress: f32,
    },
    Succeeded {
        outputs: Vec<Output>,
    },
    /// The provider gave up on the task; `error.retryable` says whether a new
    /// submission may succeed.
    Failed {
        error: TaskError,
    },
}

/// A provider call that did not work, classified by what to do next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The account is at its concurrency limit (or rate limited): keep the
    /// task queued, do not spend an attempt, try again after `retry_after`.
    #[error("provider is at capacity: {message}")]
    BackPressure {
        retry_after: Duration,
        message: String,
    },
    /// The request certainly did not take effect (connection refused, 5xx
    /// answer): retry with backoff.
    #[error("provider unavailable: {0}")]
    Transient(String),
    /// The request may or may not have taken effect (timeout after sending,
    /// unreadable answer). A submission in this state must be reconciled,
    /// never blindly repeated.
    #[error("provider outcome unknown: {0}")]
    Ambiguous(String),
    /// The provider refused the request for good (bad parameters, content
    /// policy, unknown model). `code` is the provider's.
    #[error("provider rejected the request ({code}): {message}")]
    Rejected { code: String, message: String },
    /// The provider does not know this task.
    #[error("provider does not know the task")]
    NotFound,
    /// The provider has no such operation.
    #[error("operation not supported by this provider")]
    Unsupported,
}

/// An external AI generation service.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The provider's configured name (`sim`, `runninghub`, …).
    fn name(&self) -> &str;

    /// Submits a task; returns the provider's id for it.
    async fn submit(&self, req: SubmitRequest<'_>) -> Result<String, ProviderError>;

    /// Asks where a submitted task is.
    async fn poll(&self, task: FollowRef<'_>) -> Result<JobState, ProviderError>;

    /// Asks the provider to stop a task. Best effort.
    async fn cancel(&self, task: FollowRef<'_>) -> Result<(), ProviderError>;

    /// Finds the provider task submitted with `reference` (see
    /// [`SubmitRequest::reference`]), for a submission whose answer was lost.
    /// `Err(Unsupported)` when the provider keeps no client reference.
    async fn find_by_reference(&self, _reference: &str) -> Result<Option<String>, ProviderError> {
        Err(ProviderError::Unsupported)
    }
}

/// Classifies a transport error of a request that was (possibly) sent.
pub(crate) fn classify_reqwest(e: &reqwest::Error) -> ProviderError {
    if e.is_connect() || e.is_builder() {
        ProviderError::Transient(format!("cannot reach provider: {e}"))
    } else {
        ProviderError::Ambiguous(format!("no usable answer from provider: {e}"))
    }
}
