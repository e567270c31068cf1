//! Providers: the [`Provider`] trait through which the dispatcher submits,
//! follows and cancels tasks at an external AI service, and the adapters of
//! RunningHub, Hunyuan and Kling.
//!
//! Adapters classify every failure by what the dispatcher should do next
//! ([`ProviderError`]); they never log request or response bodies. The mock
//! servers that speak each provider's wire protocol, and the simulated
//! provider, live in `gengate-mock`, which builds on this crate.

use std::time::Duration;

use async_trait::async_trait;
use gengate_core::{ModelKind, Output, TaskError};
use serde_json::Value;

pub mod hunyuan;
pub mod kling;
pub mod runninghub;
pub mod wire;

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
    /// Which of the provider's operations runs this model, as configured
    /// (`workflow`/`app` at RunningHub, `image`/`video` at Hunyuan,
    /// `text2video`/`image2video`/`image` at Kling); `None` picks the
    /// provider's default for `kind`.
    pub endpoint: Option<&'a str>,
    /// The provider-specific request fields: the model's configured template
    /// rendered against `input` (see [`gengate_core::mapping`]). An object.
    pub params: &'a Value,
    /// Where the provider should post its callback for this task (it carries
    /// a token that binds it to the task), when callbacks are in use.
    pub callback_url: Option<&'a str>,
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
    /// The provider refuses requests this fast (a rate limit, not the
    /// account's concurrency): wait `retry_after`, keep the task queued,
    /// spend no attempt, use the same number of slots.
    #[error("provider rate limit: {message}")]
    RateLimited {
        retry_after: Duration,
        message: String,
    },
    /// The request never reached the provider, so it cannot have taken
    /// effect: no such host, connection refused, connect timeout, a TLS
    /// handshake that failed (an untrusted certificate), or a redirect away
    /// from the configured address. The task stays queued with no attempt
    /// spent; the circuit breaker counts it. `fix` says what an operator
    /// can do.
    #[error("cannot reach provider: {message}")]
    Unreachable {
        message: String,
        fix: Option<&'static str>,
    },
    /// The request reached the provider and certainly did not take effect
    /// (a 5xx answer, an unusable answer to a query): retry with backoff.
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
    /// The account cannot pay for more work (out of balance, resource pack
    /// used up, in arrears): stop dispatching to it until it recovers; the
    /// task stays queued and no attempt is spent.
    #[error("provider account cannot take work: {message}")]
    AccountExhausted { code: String, message: String },
    /// The provider refused our credentials (bad key, bad signature after a
    /// fresh one, key not allowed): an operator must act. The task stays
    /// queued; dispatching to the account pauses.
    #[error("provider refused our credentials ({code}): {message}")]
    Unauthorized { code: String, message: String },
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

    /// Finds the provider task made by the submission `req` (by its
    /// [`SubmitRequest::reference`]), for a submission whose answer was lost.
    /// `Ok(None)` when the provider certainly has no such task.
    /// `Err(Unsupported)` when the provider keeps no client reference.
    async fn find_by_reference(
        &self,
        _req: SubmitRequest<'_>,
    ) -> Result<Option<String>, ProviderError> {
        Err(ProviderError::Unsupported)
    }

    /// Account slots a submission holds while it runs (a Kling image job
    /// holds one per image asked for).
    fn slots(&self, _req: &SubmitRequest<'_>) -> usize {
        1
    }

    /// Whether this provider posts callbacks (so the dispatcher passes a
    /// [`SubmitRequest::callback_url`] and polls only as a fallback).
    fn supports_callbacks(&self) -> bool {
        false
    }

    /// Reads an inbound callback body. Providers do not sign their
    /// callbacks, so what it says is only a hint: the dispatcher confirms it
    /// with [`Provider::poll`] before the task moves on.
    ///
    /// # Errors
    /// [`ProviderError::Rejected`] when the body is not this provider's
    /// callback; [`ProviderError::Unsupported`] when it sends none.
    fn parse_callback(&self, _body: &[u8]) -> Result<CallbackHint, ProviderError> {
        Err(ProviderError::Unsupported)
    }

    /// A cheap authenticated call that proves the credentials work (account
    /// status, a list of one). `Err(Unsupported)` when there is none.
    async fn check_account(&self) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported)
    }
}

/// What a provider callback claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackHint {
    /// The provider's task id as the callback names it (bare: without any
    /// prefix an adapter adds to the ids it hands the dispatcher).
    pub provider_task_id: String,
    /// Whether the callback says the task finished (success or failure).
    pub finished: bool,
}

impl CallbackHint {
    /// Whether the hint is about `stored`, the provider task id the
    /// dispatcher keeps for the task. Adapters may store ids as
    /// `family:id` (the operation family a query must use).
    pub fn is_about(&self, stored: &str) -> bool {
        stored == self.provider_task_id
            || stored
                .rsplit_once(':')
                .is_some_and(|(_, bare)| bare == self.provider_task_id)
    }
}

/// A provider client with the public TLS roots and no proxy, for settings
/// built without a configuration (examples, tests).
pub(crate) fn default_client(timeout: Duration) -> reqwest::Client {
    gengate_net::Outbound::default()
        .provider(timeout, None)
        .expect("a client without a proxy builds")
}

/// Classifies a transport error of a request that changes state at the
/// provider: one that never reached it is [`ProviderError::Unreachable`];
/// one that may have reached it is ambiguous. Public for providers built
/// outside this crate (the HTTP sim client in `gengate-mock`).
pub fn classify_reqwest(e: &reqwest::Error) -> ProviderError {
    let failure = gengate_net::Failure::of(e);
    if failure.before_sending() || e.is_builder() {
        ProviderError::Unreachable {
            fix: failure.fix(),
            message: failure.to_string(),
        }
    } else {
        ProviderError::Ambiguous(format!("no usable answer from provider: {failure}"))
    }
}

/// Classifies a transport error of a query (asking again changes nothing):
/// unreachable, or a transient failure.
pub fn classify_query(e: &reqwest::Error) -> ProviderError {
    match classify_reqwest(e) {
        ProviderError::Ambiguous(m) => ProviderError::Transient(m),
        other => other,
    }
}
