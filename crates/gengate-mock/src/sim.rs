//! The simulated provider, `sim`: what `gengate serve` uses out of the box.
//!
//! Two forms behind the same [`Provider`] trait:
//! - [`InProcessSim`] (the default) keeps no state at all: the provider task id
//!   encodes when the job started, when it ends, whether it fails and the seed
//!   of its picture, so tasks survive a restart of gengate like tasks at a real
//!   provider would. Finished outputs are rendered into the media directory and
//!   served by gengate itself.
//! - [`HttpSim`] talks to `gengate mock-provider --kind sim` over HTTP (see
//!   [`crate::sim_server`] for the wire protocol), which keeps a ledger of
//!   submissions and enforces a concurrency limit like a real account.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use gengate_core::{ModelKind, Output, TaskError};
use gengate_providers::wire::read_answer;
use gengate_providers::{
    FollowRef, JobState, Provider, ProviderError, SubmitRequest, classify_query, classify_reqwest,
};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use crate::render;

/// How simulated jobs behave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behavior {
    /// Each job takes a uniformly random time in `min..=max`.
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Probability that a job fails (retryably, like a provider worker crash).
    pub fail_rate: f64,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            latency_min: Duration::from_secs(2),
            latency_max: Duration::from_secs(6),
            fail_rate: 0.0,
        }
    }
}

impl Behavior {
    /// Draws one job's duration and fate.
    pub fn draw(&self, rng: &mut impl Rng) -> (Duration, bool) {
        let (lo, hi) = (
            self.latency_min.as_millis() as u64,
            self.latency_max.as_millis() as u64,
        );
        let ms = if hi > lo { rng.gen_range(lo..=hi) } else { lo };
        (
            Duration::from_millis(ms),
            rng.gen_bool(self.fail_rate.clamp(0.0, 1.0)),
        )
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The text a picture is rendered from.
pub(crate) fn prompt_of(input: &serde_json::Value) -> &str {
    input.get("prompt").and_then(|p| p.as_str()).unwrap_or("")
}

/// The file a simulated output is, by kind: `(bytes, extension, content type)`.
/// Images honour an input `size` of `WxH` (capped at 1024 per side).
pub fn media_file(
    kind: ModelKind,
    seed: u64,
    caption: &str,
    input: &serde_json::Value,
) -> (Vec<u8>, &'static str, &'static str) {
    match kind {
        ModelKind::Image => {
            let (w, h) = input
                .get("size")
                .and_then(|s| s.as_str())
                .and_then(|s| s.split_once('x'))
                .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                .unwrap_or((512, 512));
            (
                render::render_png(seed, caption, w.min(1024), h.min(1024)),
                "png",
                "image/png",
            )
        }
        ModelKind::Video => (
            render::render_avi(seed, 160, 96, 24, 12),
            "avi",
            "video/x-msvideo",
        ),
    }
}

fn extension(kind: ModelKind) -> (&'static str, &'static str) {
    match kind {
        ModelKind::Image => ("png", "image/png"),
        ModelKind::Video => ("avi", "video/x-msvideo"),
    }
}

/// The in-process simulated provider.
#[derive(Debug, Clone)]
pub struct InProcessSim {
    name: String,
    behavior: Behavior,
    /// Where finished outputs are written (`<media>/sim/…`).
    media_dir: PathBuf,
    /// Public URL of `media_dir`, e.g. `http://127.0.0.1:8080/media`.
    media_url: String,
}

/// What an in-process job id carries, so no state is needed to answer polls.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SimJob {
    kind: ModelKind,
    start_ms: i64,
    done_ms: i64,
    fails: bool,
    seed: u64,
}

impl SimJob {
    fn encode(&self) -> String {
        let kind = match self.kind {
            ModelKind::Image => "img",
            ModelKind::Video => "vid",
        };
        format!(
            "sim-{kind}-{}-{}-{}-{:016x}",
            self.start_ms,
            self.done_ms,
            u8::from(self.fails),
            self.seed
        )
    }

    fn decode(id: &str) -> Option<SimJob> {
        let mut parts = id.strip_prefix("sim-")?.split('-');
        let kind = match parts.next()? {
            "img" => ModelKind::Image,
            "vid" => ModelKind::Video,
            _ => return None,
        };
        let job = SimJob {
            kind,
            start_ms: parts.next()?.parse().ok()?,
            done_ms: parts.next()?.parse().ok()?,
            fails: parts.next()? == "1",
            seed: u64::from_str_radix(parts.next()?, 16).ok()?,
        };
        parts.next().is_none().then_some(job)
    }
}

impl InProcessSim {
    pub fn new(name: &str, behavior: Behavior, media_dir: PathBuf, media_url: &str) -> Self {
        Self {
            name: name.to_owned(),
            behavior,
            media_dir,
            media_url: media_url.trim_end_matches('/').to_owned(),
        }
    }
}

#[async_trait]
impl Provider for InProcessSim {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, req: SubmitRequest<'_>) -> Result<String, ProviderError> {
        let (latency, fails) = self.behavior.draw(&mut rand::thread_rng());
        let start_ms = now_ms();
        let prompt = prompt_of(req.input).to_owned();
        let seed = render::seed_from_prompt(&prompt);
        let job = SimJob {
            kind: req.kind,
            start_ms,
            done_ms: start_ms + latency.as_millis() as i64,
            fails,
            seed,
        };
        let id = job.encode();
        if !fails {
            // Rendered now, while the prompt and size are at hand; the URL is
            // only revealed once the job "finishes".
            let (dir, file, input) = (self.media_dir.join("sim"), id.clone(), req.input.clone());
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let (bytes, ext, _) = media_file(job.kind, job.seed, &prompt, &input);
                std::fs::create_dir_all(&dir)?;
                let file = format!("{file}.{ext}");
                // Write then rename, so a crash never leaves a torn file under
                // the final name.
                let tmp = dir.join(format!(".{file}.tmp"));
                std::fs::write(&tmp, &bytes)?;
                std::fs::rename(&tmp, dir.join(&file))
            })
            .await
            .map_err(|e| ProviderError::Transient(format!("render task failed: {e}")))?
            .map_err(|e| ProviderError::Transient(format!("writing simulated output: {e}")))?;
        }
        Ok(id)
    }

    async fn poll(&self, task: FollowRef<'_>) -> Result<JobState, ProviderError> {
        let job = SimJob::decode(task.provider_task_id).ok_or(ProviderError::NotFound)?;
        let now = now_ms();
        if now < job.done_ms {
            let span = (job.done_ms - job.start_ms).max(1) as f32;
            return Ok(JobState::Pending {
                progress: (now - job.start_ms) as f32 / span,
            });
        }
        if job.fails {
            return Ok(JobState::Failed {
                error: TaskError::new("provider_failed", "simulated worker failure", true),
            });
        }
        let (ext, content_type) = extension(job.kind);
        let file = format!("{}.{ext}", task.provider_task_id);
        // A missing file means the media directory lost it: the provider
        // "lost" the result, like an expired output URL.
        let bytes = tokio::fs::metadata(self.media_dir.join("sim").join(&file))
            .await
            .map_err(|_| ProviderError::NotFound)?
            .len();
        Ok(JobState::Succeeded {
            outputs: vec![Output {
                url: format!("{}/sim/{file}", self.media_url),
                content_type: content_type.to_owned(),
                bytes: Some(bytes),
                expires_at: None,
                key: None,
                sha256: None,
                thumbnail_url: None,
                width: None,
                height: None,
                duration_s: None,
            }],
        })
    }

    async fn cancel(&self, _task: FollowRef<'_>) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// A client of the HTTP sim protocol served by `gengate mock-provider --kind sim`.
#[derive(Debug, Clone)]
pub struct HttpSim {
    name: String,
    base_url: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct WireJob {
    id: String,
    status: String,
    #[serde(default)]
    progress: f32,
    #[serde(default)]
    outputs: Vec<Output>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireError {
    code: String,
    message: String,
    #[serde(default)]
    retryable: bool,
}

#[derive(Deserialize)]
struct WireErrorBody {
    error: WireError,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct WireJobList {
    jobs: Vec<WireJob>,
}

impl HttpSim {
    /// `client`: built by `gengate_net::Outbound::provider`.
    ///
    /// # Errors
    /// Never today; kept for settings that may be refused.
    pub fn new(name: &str, base_url: &str, client: reqwest::Client) -> Result<Self, ProviderError> {
        Ok(Self {
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            client,
        })
    }

    /// The provider error an answer other than success means.
    fn error_from(status: u16, retry_after: Option<Duration>, body: &[u8]) -> ProviderError {
        let (code, message) = serde_json::from_slice::<WireErrorBody>(body).map_or_else(
            |_| (status.to_string(), String::new()),
            |b| (b.error.code, b.error.message),
        );
        match status {
            429 => ProviderError::BackPressure {
                retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
                message,
            },
            404 => ProviderError::NotFound,
            500..=599 => ProviderError::Transient(format!("HTTP {status}: {message}")),
            _ => ProviderError::Rejected { code, message },
        }
    }

    /// Sends `req` and reads its answer (capped, redirects refused):
    /// `(status, Retry-After, body)`.
    async fn exchange(
        req: reqwest::RequestBuilder,
        effect: Effect,
    ) -> Result<(u16, Option<Duration>, bytes::Bytes), ProviderError> {
        let resp = req.send().await.map_err(|e| match effect {
            Effect::Mutation => classify_reqwest(&e),
            Effect::Query => classify_query(&e),
        })?;
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let (status, body) = read_answer(resp).await.map_err(|e| match (effect, e) {
            (Effect::Query, ProviderError::Ambiguous(m)) => ProviderError::Transient(m),
            (_, e) => e,
        })?;
        Ok((status, retry_after, body))
    }
}

/// Whether a request changes state at the provider (a lost answer is then
/// ambiguous) or only asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Mutation,
    Query,
}

fn job_state(job: WireJob) -> Result<JobState, ProviderError> {
    Ok(match job.status.as_str() {
        "queued" | "running" => JobState::Pending {
            progress: job.progress,
        },
        "succeeded" => JobState::Succeeded {
            outputs: job.outputs,
        },
        "failed" => JobState::Failed {
            error: job.error.map_or_else(
                || {
                    TaskError::new(
                        "provider_failed",
                        "the provider reported a failure without a reason",
                        false,
                    )
                },
                |e| TaskError::new(&e.code, e.message, e.retryable),
            ),
        },
        "canceled" => JobState::Failed {
            error: TaskError::new("provider_canceled", "canceled at the provider", false),
        },
        other => {
            return Err(ProviderError::Transient(format!(
                "unknown job status {other:?}"
            )));
        }
    })
}

#[async_trait]
impl Provider for HttpSim {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, req: SubmitRequest<'_>) -> Result<String, ProviderError> {
        let kind = match req.kind {
            ModelKind::Image => "image",
            ModelKind::Video => "video",
        };
        let body = json!({"model": req.model, "kind": kind, "input": req.input, "external_id": req.reference});
        let (status, retry_after, bytes) = Self::exchange(
            self.client
                .post(format!("{}/v1/jobs", self.base_url))
                .json(&body),
            Effect::Mutation,
        )
        .await?;
        let unreadable =
            |e: serde_json::Error| ProviderError::Ambiguous(format!("unreadable answer: {e}"));
        match status {
            200 | 201 => Ok(serde_json::from_slice::<WireJob>(&bytes)
                .map_err(unreadable)?
                .id),
            // The provider already has a job for this task: adopt it instead
            // of submitting twice.
            409 => serde_json::from_slice::<WireErrorBody>(&bytes)
                .map_err(unreadable)?
                .id
                .ok_or_else(|| ProviderError::Ambiguous("duplicate without an id".into())),
            _ => Err(Self::error_from(status, retry_after, &bytes)),
        }
    }

    async fn poll(&self, task: FollowRef<'_>) -> Result<JobState, ProviderError> {
        let (status, retry_after, bytes) = Self::exchange(
            self.client.get(format!(
                "{}/v1/jobs/{}",
                self.base_url, task.provider_task_id
            )),
            Effect::Query,
        )
        .await?;
        if !(200..300).contains(&status) {
            return Err(Self::error_from(status, retry_after, &bytes));
        }
        let job: WireJob = serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::Transient(format!("unreadable answer: {e}")))?;
        job_state(job)
    }

    async fn cancel(&self, task: FollowRef<'_>) -> Result<(), ProviderError> {
        let (status, retry_after, bytes) = Self::exchange(
            self.client.post(format!(
                "{}/v1/jobs/{}/cancel",
                self.base_url, task.provider_task_id
            )),
            Effect::Mutation,
        )
        .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(Self::error_from(status, retry_after, &bytes))
        }
    }

    async fn find_by_reference(
        &self,
        req: SubmitRequest<'_>,
    ) -> Result<Option<String>, ProviderError> {
        let (status, retry_after, bytes) = Self::exchange(
            self.client
                .get(format!("{}/v1/jobs", self.base_url))
                .query(&[("external_id", req.reference)]),
            Effect::Query,
        )
        .await?;
        if !(200..300).contains(&status) {
            return Err(Self::error_from(status, retry_after, &bytes));
        }
        let list: WireJobList = serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::Transient(format!("unreadable answer: {e}")))?;
        Ok(list.jobs.into_iter().next().map(|j| j.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip() {
        let job = SimJob {
            kind: ModelKind::Video,
            start_ms: 5,
            done_ms: 900,
            fails: true,
            seed: 0xabc,
        };
        assert_eq!(SimJob::decode(&job.encode()), Some(job));
        assert_eq!(SimJob::decode("sim-img-1-2-0"), None);
        assert_eq!(SimJob::decode("other"), None);
    }
}
