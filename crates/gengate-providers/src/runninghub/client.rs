//! The adapter and one call to the API: the POST, its transport and HTTP
//! failures, the `{code, msg, data}` envelope, and the `status` query that
//! places a task when `outputs` cannot.

use std::fmt;
use std::time::Duration;

use gengate_core::TaskError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{STATUS, classify_code};
use super::settings::RunningHubSettings;
use crate::wire::{self, lenient_string, read_answer, snippet};
use crate::{JobState, ProviderError, classify_reqwest};

/// The RunningHub adapter.
pub struct RunningHub {
    pub(super) name: String,
    pub(super) base_url: String,
    pub(super) api_key: String,
    pub(super) retry_after: Duration,
    pub(super) client: reqwest::Client,
}

impl fmt::Debug for RunningHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningHub")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &wire::masked(&self.api_key))
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

/// Whether a call may have changed something at the provider: an unusable
/// answer to it is ambiguous, while for a query it is only transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    Mutation,
    Query,
}

/// The `{code, msg, data}` envelope as sent (lenient types).
#[derive(Deserialize)]
struct WireEnvelope {
    #[serde(default, deserialize_with = "lenient_string")]
    code: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    msg: Option<String>,
    #[serde(default)]
    data: Value,
}

/// A readable envelope.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) code: i64,
    pub(super) msg: String,
    pub(super) data: Value,
}

impl Answer {
    /// `0` is success; some clients also see `200` [3p]. Whatever else the
    /// answer must carry (a `taskId`, a list) is checked by the caller, so
    /// a `200` that means something else still cannot pass as success.
    pub(super) fn ok(&self) -> bool {
        self.code == 0 || self.code == 200
    }
}

impl RunningHub {
    /// # Errors
    /// When a setting is unusable (empty key, a base URL that is not
    /// http(s)).
    pub fn new(name: &str, settings: RunningHubSettings) -> Result<Self, String> {
        let RunningHubSettings {
            base_url,
            api_key,
            client,
            retry_after,
        } = settings;
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(format!(
                "provider {name}: base_url must start with http:// or https://"
            ));
        }
        let api_key = api_key.trim().to_owned();
        if api_key.is_empty() {
            return Err(format!("provider {name}: api_key is empty"));
        }
        Ok(Self {
            name: name.to_owned(),
            base_url,
            api_key,
            retry_after,
            client,
        })
    }

    /// POSTs `body` to `path` and reads the envelope. Transport failures and
    /// unreadable answers are classified here; business codes are left to
    /// the caller.
    pub(super) async fn call(
        &self,
        path: &str,
        body: &Value,
        effect: Effect,
    ) -> Result<Answer, ProviderError> {
        let result = self.call_once(path, body, effect).await;
        match (result, effect) {
            // Nothing changes by asking again: a lost answer to a query is
            // only a reason to ask again later.
            (Err(ProviderError::Ambiguous(m)), Effect::Query) => Err(ProviderError::Transient(m)),
            (r, _) => r,
        }
    }

    async fn call_once(
        &self,
        path: &str,
        body: &Value,
        effect: Effect,
    ) -> Result<Answer, ProviderError> {
        let resp = self
            .client
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .map_err(|e| classify_reqwest(&e))?;
        let (status, bytes) = read_answer(resp).await?;
        match status {
            200 => {}
            429 => {
                return Err(ProviderError::RateLimited {
                    retry_after: self.retry_after,
                    message: format!("HTTP 429 from {path}"),
                });
            }
            401 | 403 => {
                return Err(ProviderError::Unauthorized {
                    code: format!("http_{status}"),
                    message: format!("HTTP {status} from {path}: {}", snippet(&bytes)),
                });
            }
            // A gateway timeout may come after the service acted on a create.
            504 if effect == Effect::Mutation => {
                return Err(ProviderError::Ambiguous(format!(
                    "HTTP 504 from {path}: {}",
                    snippet(&bytes)
                )));
            }
            500..=599 => {
                return Err(ProviderError::Transient(format!(
                    "HTTP {status} from {path}: {}",
                    snippet(&bytes)
                )));
            }
            _ => {
                return Err(ProviderError::Rejected {
                    code: format!("http_{status}"),
                    message: format!("HTTP {status} from {path}: {}", snippet(&bytes)),
                });
            }
        }
        let unreadable = || {
            ProviderError::Ambiguous(format!(
                "unreadable HTTP 200 answer from {path}: {}",
                snippet(&bytes)
            ))
        };
        let envelope: WireEnvelope = serde_json::from_slice(&bytes).map_err(|_| unreadable())?;
        let code = envelope
            .code
            .as_deref()
            .and_then(|c| c.trim().parse::<i64>().ok())
            .ok_or_else(unreadable)?;
        Ok(Answer {
            code,
            msg: envelope.msg.unwrap_or_default(),
            data: envelope.data,
        })
    }

    pub(super) fn task_body(&self, task_id: &str) -> Value {
        json!({"apiKey": self.api_key, "taskId": task_id})
    }

    /// The error for a business code outside the happy path; an unknown
    /// code is a refusal that names the code, so that it shows up and can
    /// be mapped.
    pub(super) fn code_error(&self, answer: &Answer) -> ProviderError {
        classify_code(answer.code, &answer.msg, self.retry_after).unwrap_or_else(|| {
            ProviderError::Rejected {
                code: answer.code.to_string(),
                message: answer.msg.clone(),
            }
        })
    }

    /// `/task/openapi/status`: `QUEUED`, `RUNNING`, `SUCCESS`, `FAILED`
    /// (or `CANCELED`/`CANCELLED` after a cancel [3p]), upper-cased.
    pub(super) async fn status(&self, task_id: &str) -> Result<String, ProviderError> {
        let answer = self
            .call(STATUS, &self.task_body(task_id), Effect::Query)
            .await?;
        if !answer.ok() {
            return Err(
                match classify_code(answer.code, &answer.msg, self.retry_after) {
                    Some(e) => e,
                    None => ProviderError::Transient(format!(
                        "status answered {} {}",
                        answer.code, answer.msg
                    )),
                },
            );
        }
        // A bare string per the docs; an object carrying it is read too.
        let status = match &answer.data {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => ["taskStatus", "status"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str).map(str::to_owned)),
            _ => None,
        };
        status
            .map(|s| s.trim().to_ascii_uppercase())
            .ok_or_else(|| ProviderError::Transient("status answer without a status".to_owned()))
    }

    /// Where a task is by its status alone (no outputs known).
    pub(super) fn state_from_status(status: &str) -> Result<JobState, ProviderError> {
        Ok(match status {
            "QUEUED" => JobState::Pending { progress: 0.0 },
            "RUNNING" => JobState::Pending { progress: 0.5 },
            "FAILED" => JobState::Failed {
                error: TaskError::new(
                    "provider_failed",
                    "RunningHub reports the task failed",
                    false,
                ),
            },
            "CANCELED" | "CANCELLED" => JobState::Failed {
                error: TaskError::new("provider_canceled", "canceled at RunningHub", false),
            },
            other => {
                return Err(ProviderError::Transient(format!(
                    "unknown task status {other:?}"
                )));
            }
        })
    }

    /// `outputs` said the task finished without any output: confirm with
    /// `status`. A successful task without outputs is a workflow without an
    /// API-visible save node, which no retry fixes.
    pub(super) async fn confirm_empty_outputs(
        &self,
        task_id: &str,
    ) -> Result<JobState, ProviderError> {
        let status = self.status(task_id).await?;
        if status == "SUCCESS" {
            return Ok(JobState::Failed {
                error: TaskError::new(
                    "no_outputs",
                    format!(
                        "task {task_id} succeeded without outputs: the workflow has no save node the API returns"
                    ),
                    false,
                ),
            });
        }
        Self::state_from_status(&status)
    }
}
