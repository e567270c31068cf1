//! [`Provider`] for Hunyuan: submit, poll by family, no cancel, and an
//! account check by a query for a job that cannot exist.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::client::{Answer, Hunyuan};
use super::codes::Call;
use super::family::Family;
use super::jobs::{ImageJob, SubmitAnswer, VideoJob, image_state, video_state};
use crate::{FollowRef, JobState, Provider, ProviderError, SubmitRequest};

#[async_trait]
impl Provider for Hunyuan {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, req: SubmitRequest<'_>) -> Result<String, ProviderError> {
        let Some(family) = Family::from_endpoint(req.endpoint, req.kind) else {
            return Err(ProviderError::Rejected {
                code: "unknown_endpoint".to_owned(),
                message: format!(
                    "hunyuan has no endpoint {:?} (it has \"image\" and \"video\")",
                    req.endpoint.unwrap_or_default()
                ),
            });
        };
        if !req.params.is_object() {
            return Err(ProviderError::Rejected {
                code: "invalid_params".to_owned(),
                message: "the rendered request for hunyuan must be a JSON object".to_owned(),
            });
        }
        let body = serde_json::to_vec(req.params)
            .map_err(|e| ProviderError::Transient(format!("encoding the request failed: {e}")))?;
        let action = family.submit_action();
        tracing::debug!(task.id = %req.task_id, action, "submitting task {} to hunyuan", req.task_id);
        let (status, answer) = self.call(family, action, body).await?;
        match answer {
            Answer::Ok(fields) => match SubmitAnswer::deserialize(&fields) {
                Ok(SubmitAnswer {
                    job_id: Some(job_id),
                }) if !job_id.is_empty() => Ok(family.task_id(&job_id)),
                // The action ran (no Error) but we cannot tell which job it
                // made: reconcile, never resubmit blindly.
                _ => Err(ProviderError::Ambiguous(format!(
                    "{action} succeeded without a JobId"
                ))),
            },
            Answer::Error { code, message } => Err(self.classify(Call::Submit, &code, &message)),
            // A gateway timeout may come after Tencent ran the action.
            Answer::Unusable(what) if (200..300).contains(&status) || status == 504 => {
                Err(ProviderError::Ambiguous(format!(
                    "{action} answered without Tencent's envelope: {what}"
                )))
            }
            // A gateway's error page: the action was not run.
            Answer::Unusable(what) => Err(ProviderError::Transient(format!(
                "{action} was refused before reaching Tencent: {what}"
            ))),
        }
    }

    async fn poll(&self, task: FollowRef<'_>) -> Result<JobState, ProviderError> {
        let Some((family, job_id)) = Family::parse_task_id(task.provider_task_id) else {
            return Err(ProviderError::Rejected {
                code: "invalid_task_id".to_owned(),
                message: format!(
                    "{:?} is not a hunyuan task id (image:<JobId> or video:<JobId>)",
                    task.provider_task_id
                ),
            });
        };
        let fields = self.query(family, job_id).await?;
        let now = crate::wire::now_ms();
        let unreadable = |e: serde_json::Error| {
            ProviderError::Transient(format!("unreadable {}: {e}", family.query_action()))
        };
        match family {
            Family::Image => image_state(ImageJob::deserialize(&fields).map_err(unreadable)?, now),
            Family::Video => video_state(VideoJob::deserialize(&fields).map_err(unreadable)?, now),
        }
    }

    /// Tencent has no cancel for these jobs; the dispatcher just stops
    /// polling (and the job still holds the account's slot until it ends).
    async fn cancel(&self, _task: FollowRef<'_>) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported)
    }

    /// A query for a job that cannot exist. `FailedOperation.JobNotFound`
    /// (or a parameter complaint about the id) proves the signature and key
    /// were accepted; `AuthFailure.*` is `Unauthorized`. When the image
    /// service says the account cannot take work (not activated, in
    /// arrears), the video service is asked too: an account may buy only
    /// one of them.
    async fn check_account(&self) -> Result<(), ProviderError> {
        let image = probe(
            self.query(Family::Image, "0-0-00000000-0000-0000-0000-000000000000-0")
                .await,
        );
        match image {
            Err(ProviderError::AccountExhausted { .. }) => {
                probe(self.query(Family::Video, "0").await).or(image)
            }
            other => other,
        }
    }
}

/// Whether a probe query's outcome proves the credentials work.
fn probe(outcome: Result<Value, ProviderError>) -> Result<(), ProviderError> {
    match outcome {
        Ok(_) | Err(ProviderError::NotFound) => Ok(()),
        Err(ProviderError::Rejected { code, .. })
            if code.starts_with("InvalidParameter") || code.starts_with("FailedOperation.Job") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}
