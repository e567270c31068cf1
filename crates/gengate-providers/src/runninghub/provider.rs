//! [`Provider`] for RunningHub: submit (and stop a task whose workflow
//! failed validation), poll by outputs, cancel, callbacks, account check.

use async_trait::async_trait;
use serde_json::json;

use super::api::{ACCOUNT_STATUS, CANCEL, OUTPUTS, classify_code, code};
use super::callback;
use super::client::{Effect, RunningHub};
use super::outputs::{WireCreated, failure, outputs_of, prompt_problems};
use super::request::Operation;
use crate::{CallbackHint, FollowRef, JobState, Provider, ProviderError, SubmitRequest};

#[async_trait]
impl Provider for RunningHub {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, req: SubmitRequest<'_>) -> Result<String, ProviderError> {
        let op = Operation::from_endpoint(req.endpoint)?;
        let body = self.create_body(op, &req)?;
        let answer = self.call(op.path(), &body, Effect::Mutation).await?;
        if !answer.ok() {
            return Err(self.code_error(&answer));
        }
        let created: WireCreated = serde_json::from_value(answer.data).map_err(|_| {
            ProviderError::Ambiguous(format!("{} answered success without task data", op.path()))
        })?;
        let task_id = created
            .task_id
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                ProviderError::Ambiguous(format!("{} answered success without a taskId", op.path()))
            })?;
        let problems = prompt_problems(&created.prompt_tips);
        let dead = created
            .task_status
            .as_deref()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case("FAILED"));
        if dead {
            return Err(ProviderError::Rejected {
                code: "task_failed".to_owned(),
                message: format!(
                    "RunningHub created task {task_id} as FAILED: {}",
                    problems.as_deref().unwrap_or("no validation details")
                ),
            });
        }
        if let Some(problems) = problems {
            // Validation found errors although the task was queued: it cannot
            // produce what we asked for, so stop it rather than pay for it.
            if let Err(e) = self
                .cancel(FollowRef {
                    task_id: req.task_id,
                    provider_task_id: &task_id,
                })
                .await
            {
                tracing::warn!(task.id = %req.task_id, provider_task_id = %task_id, error = %e,
                    "cancel of invalid RunningHub task {task_id} failed: {e}");
            }
            return Err(ProviderError::Rejected {
                code: "node_errors".to_owned(),
                message: format!("workflow validation failed: {problems}"),
            });
        }
        Ok(task_id)
    }

    async fn poll(&self, task: FollowRef<'_>) -> Result<JobState, ProviderError> {
        let id = task.provider_task_id;
        let answer = self
            .call(OUTPUTS, &self.task_body(id), Effect::Query)
            .await?;
        if answer.ok() {
            let outputs = outputs_of(&answer.data)?;
            if outputs.is_empty() {
                return self.confirm_empty_outputs(id).await;
            }
            return Ok(JobState::Succeeded { outputs });
        }
        match answer.code {
            code::APIKEY_TASK_IS_QUEUED => Ok(JobState::Pending { progress: 0.0 }),
            code::APIKEY_TASK_IS_RUNNING => Ok(JobState::Pending { progress: 0.5 }),
            code::APIKEY_TASK_STATUS_ERROR => Ok(JobState::Failed {
                error: failure(&answer.data, &answer.msg),
            }),
            c => match classify_code(c, &answer.msg, self.retry_after) {
                Some(e) => Err(e),
                // A code `outputs` is not documented to give: the lighter
                // `status` call may still say where the task is.
                None => match self.status(id).await {
                    Ok(s) if s != "SUCCESS" => Self::state_from_status(&s),
                    _ => Err(ProviderError::Transient(format!(
                        "outputs answered {c} {}",
                        answer.msg
                    ))),
                },
            },
        }
    }

    async fn cancel(&self, task: FollowRef<'_>) -> Result<(), ProviderError> {
        let answer = self
            .call(
                CANCEL,
                &self.task_body(task.provider_task_id),
                Effect::Mutation,
            )
            .await?;
        if answer.ok() {
            Ok(())
        } else {
            Err(self.code_error(&answer))
        }
    }

    /// RunningHub keeps no client reference: a task whose create answer was
    /// lost cannot be found again.
    async fn find_by_reference(
        &self,
        _req: SubmitRequest<'_>,
    ) -> Result<Option<String>, ProviderError> {
        Err(ProviderError::Unsupported)
    }

    fn supports_callbacks(&self) -> bool {
        true
    }
    /// `{"event":"TASK_END","taskId":…,"eventData":"<outputs answer as a
    /// JSON string>"}`. Only the task id and the event matter: the callback
    /// is unsigned, so the dispatcher confirms it with [`Provider::poll`].
    /// `eventData` is not required (an object is accepted as well as the
    /// documented string); deliveries may repeat.
    fn parse_callback(&self, body: &[u8]) -> Result<CallbackHint, ProviderError> {
        callback::parse(body)
    }
    /// `/uc/openapi/accountStatus`, whose body key is `apikey` (lower-case).
    async fn check_account(&self) -> Result<(), ProviderError> {
        let answer = self
            .call(
                ACCOUNT_STATUS,
                &json!({"apikey": self.api_key}),
                Effect::Query,
            )
            .await?;
        if answer.ok() {
            Ok(())
        } else {
            Err(self.code_error(&answer))
        }
    }
}
