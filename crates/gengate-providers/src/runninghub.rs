//! RunningHub (ComfyUI workflow cloud) through its legacy task API
//! (`/task/openapi/*`, `/uc/openapi/*`): submitting workflow and AI-app runs,
//! following them by their outputs, cancelling them, reading the `TASK_END`
//! webhook and checking the account.
//!
//! Wire facts (see `providers.md` §1): every answer is HTTP 200 with a
//! `{code, msg, data}` envelope whose types wobble (numbers as strings), the
//! key travels in the body as `apiKey` (`apikey` on the account call), and
//! "still queued/running" comes back as the business codes `813`/`804` on
//! `outputs`. The adapter classifies every answer by what the dispatcher does
//! next ([`ProviderError`]); it never logs bodies, prompts or the key.
//!
//! Operations ([`SubmitRequest::endpoint`]): `workflow` (the default for both
//! kinds) runs `params.workflowId` through `/task/openapi/create`; `app` runs
//! `params.webappId` through `/task/openapi/ai-app/run`. The provider task id
//! is RunningHub's bare `taskId` (a 19-digit number, always carried as a
//! string). RunningHub keeps no client reference, so a lost submission
//! cannot be looked up ([`Provider::find_by_reference`] is unsupported).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use gengate_core::{Output, TaskError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::wire::{self, lenient_string, read_answer, snippet};
use crate::{
    CallbackHint, FollowRef, JobState, Provider, ProviderError, SubmitRequest, classify_reqwest,
};

/// The China site; the international one is `https://www.runninghub.ai`
/// (keys belong to one site).
pub const DEFAULT_BASE_URL: &str = "https://www.runninghub.cn";

const CREATE_WORKFLOW: &str = "/task/openapi/create";
const RUN_APP: &str = "/task/openapi/ai-app/run";
const STATUS: &str = "/task/openapi/status";
const OUTPUTS: &str = "/task/openapi/outputs";
const CANCEL: &str = "/task/openapi/cancel";
const ACCOUNT_STATUS: &str = "/uc/openapi/accountStatus";

/// Longest provider text (failure reasons, validation errors) kept in an
/// error message.
const MAX_REASON_CHARS: usize = 400;

/// How to reach one RunningHub account.
#[derive(Clone)]
pub struct RunningHubSettings {
    /// [`DEFAULT_BASE_URL`] or the international site.
    pub base_url: String,
    /// The account's 32-character API key.
    pub api_key: String,
    /// The client every call goes through (`gengate_net::Outbound::provider`:
    /// its timeout, TLS roots and proxy).
    pub client: reqwest::Client,
    /// How long a task waits after the account said it is full (`421`,
    /// `415`, rate limits) before it is tried again.
    pub retry_after: Duration,
}

impl fmt::Debug for RunningHubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningHubSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &wire::masked(&self.api_key))
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

/// The RunningHub adapter.
pub struct RunningHub {
    name: String,
    base_url: String,
    api_key: String,
    retry_after: Duration,
    client: reqwest::Client,
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

/// Which RunningHub operation runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Workflow,
    App,
}

impl Operation {
    fn from_endpoint(endpoint: Option<&str>) -> Result<Self, ProviderError> {
        match endpoint {
            None | Some("workflow") => Ok(Self::Workflow),
            Some("app") => Ok(Self::App),
            Some(other) => Err(config_error(format!(
                "unknown RunningHub endpoint {other:?} (expected \"workflow\" or \"app\")"
            ))),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Workflow => CREATE_WORKFLOW,
            Self::App => RUN_APP,
        }
    }

    /// The params field naming what runs.
    fn id_field(self) -> &'static str {
        match self {
            Self::Workflow => "workflowId",
            Self::App => "webappId",
        }
    }
}

fn config_error(message: String) -> ProviderError {
    ProviderError::Rejected {
        code: "config".to_owned(),
        message,
    }
}

/// Whether a call may have changed something at the provider: an unusable
/// answer to it is ambiguous, while for a query it is only transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
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
struct Answer {
    code: i64,
    msg: String,
    data: Value,
}

impl Answer {
    /// `0` is success; some clients also see `200` [3p]. Whatever else the
    /// answer must carry (a `taskId`, a list) is checked by the caller, so
    /// a `200` that means something else still cannot pass as success.
    fn ok(&self) -> bool {
        self.code == 0 || self.code == 200
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCreated {
    #[serde(default, deserialize_with = "lenient_string")]
    task_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    task_status: Option<String>,
    /// ComfyUI's validation result, a JSON document as a string.
    #[serde(default)]
    prompt_tips: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOutput {
    #[serde(default, deserialize_with = "lenient_string")]
    file_url: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    file_type: Option<String>,
}

/// Business codes (`providers.md` §1.9).
mod code {
    pub(super) const UNKNOWN_ERROR: i64 = 500;
    pub(super) const TASK_INSTANCE_MAXED: i64 = 415;
    pub(super) const TASK_QUEUE_MAXED: i64 = 421;
    pub(super) const TASK_NOT_FOUNED: i64 = 423;
    pub(super) const APIKEY_UNSUPPORTED_FREE_USER: i64 = 801;
    pub(super) const APIKEY_TASK_IS_RUNNING: i64 = 804;
    pub(super) const APIKEY_TASK_STATUS_ERROR: i64 = 805;
    pub(super) const APIKEY_TASK_NOT_FOUND: i64 = 807;
    pub(super) const CORPAPIKEY_INSUFFICIENT_FUNDS: i64 = 812;
    pub(super) const APIKEY_TASK_IS_QUEUED: i64 = 813;
    pub(super) const PERSONAL_QUEUE_COUNT_LIMIT: i64 = 814;
}

/// What a business code means for the dispatcher, where the code is known.
fn classify_code(code: i64, msg: &str, retry_after: Duration) -> Option<ProviderError> {
    let message = format!("{code} {msg}");
    Some(match code {
        // Account concurrency full (shared pool, dedicated machines, the
        // dedicated queue), rate limits and busy models [3p]: the task stays
        // queued.
        code::TASK_QUEUE_MAXED
        | code::TASK_INSTANCE_MAXED
        | code::PERSONAL_QUEUE_COUNT_LIMIT
        | 1011
        | 1520 => ProviderError::BackPressure {
            retry_after,
            message,
        },
        // A request-rate limit [3p]: wait, but the account's slots are fine.
        1003 => ProviderError::RateLimited {
            retry_after,
            message,
        },
        // Out of money, or a free account (the API needs a paid membership:
        // paying fixes it, as with a used-up balance).
        code::CORPAPIKEY_INSUFFICIENT_FUNDS | code::APIKEY_UNSUPPORTED_FREE_USER => {
            ProviderError::AccountExhausted {
                code: code.to_string(),
                message,
            }
        }
        // Bad or expired key, unknown user, invalid enterprise key.
        802 | 806 | 811 => ProviderError::Unauthorized {
            code: code.to_string(),
            message,
        },
        // Bad params, unknown workflow/app, failed validation, bad node
        // info, file too large, upload failed, cancel not allowed [3p].
        301 | 380 | 433 | 803 | 808 | 809 | 817 | 901 => ProviderError::Rejected {
            code: code.to_string(),
            message,
        },
        code::UNKNOWN_ERROR => ProviderError::Transient(message),
        code::APIKEY_TASK_NOT_FOUND | code::TASK_NOT_FOUNED => ProviderError::NotFound,
        _ => return None,
    })
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
    async fn call(
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

    /// The create body: the rendered params plus the fields the adapter
    /// owns (`apiKey`, `webhookUrl`).
    fn create_body(&self, op: Operation, req: &SubmitRequest<'_>) -> Result<Value, ProviderError> {
        let Some(params) = req.params.as_object() else {
            return Err(config_error(format!(
                "params of model {} must be an object",
                req.model
            )));
        };
        let mut body: Map<String, Value> = params.clone();
        let field = op.id_field();
        let id = match body.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.trim().to_owned()),
            // `workflowId` is a string on the wire; `webappId` is an int64
            // that official examples send either way, so it stays as given.
            Some(Value::Number(n)) => match op {
                Operation::Workflow => Value::String(n.to_string()),
                Operation::App => Value::Number(n.clone()),
            },
            _ => {
                return Err(config_error(format!(
                    "params of model {} lack {field} (endpoint {:?})",
                    req.model,
                    req.endpoint.unwrap_or("workflow")
                )));
            }
        };
        body.insert(field.to_owned(), id);
        body.insert("apiKey".to_owned(), Value::String(self.api_key.clone()));
        match req.callback_url {
            Some(url) => {
                body.insert("webhookUrl".to_owned(), Value::String(url.to_owned()));
            }
            None => {
                body.remove("webhookUrl");
            }
        }
        Ok(Value::Object(body))
    }

    fn task_body(&self, task_id: &str) -> Value {
        json!({"apiKey": self.api_key, "taskId": task_id})
    }

    /// The error for a business code outside the happy path; an unknown
    /// code is a refusal that names the code, so that it shows up and can
    /// be mapped.
    fn code_error(&self, answer: &Answer) -> ProviderError {
        classify_code(answer.code, &answer.msg, self.retry_after).unwrap_or_else(|| {
            ProviderError::Rejected {
                code: answer.code.to_string(),
                message: answer.msg.clone(),
            }
        })
    }

    /// `/task/openapi/status`: `QUEUED`, `RUNNING`, `SUCCESS`, `FAILED`
    /// (or `CANCELED`/`CANCELLED` after a cancel [3p]), upper-cased.
    async fn status(&self, task_id: &str) -> Result<String, ProviderError> {
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
    fn state_from_status(status: &str) -> Result<JobState, ProviderError> {
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
    async fn confirm_empty_outputs(&self, task_id: &str) -> Result<JobState, ProviderError> {
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

/// A JSON document that may arrive encoded as a string.
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
fn prompt_problems(tips: &Value) -> Option<String> {
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
fn failure(data: &Value, msg: &str) -> TaskError {
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
fn content_type(file_type: Option<&str>, url: &str) -> String {
    if let Some(t) = file_type.filter(|t| t.contains('/')) {
        return t.trim().to_ascii_lowercase();
    }
    let from_ext = |ext: &str| -> Option<&'static str> {
        Some(
            match ext
                .trim()
                .trim_start_matches('.')
                .to_ascii_lowercase()
                .as_str()
            {
                "png" => "image/png",
                "jpg" | "jpeg" => "image/jpeg",
                "webp" => "image/webp",
                "gif" => "image/gif",
                "bmp" => "image/bmp",
                "tif" | "tiff" => "image/tiff",
                "mp4" => "video/mp4",
                "webm" => "video/webm",
                "mov" => "video/quicktime",
                "avi" => "video/x-msvideo",
                "mkv" => "video/x-matroska",
                "mp3" => "audio/mpeg",
                "wav" => "audio/wav",
                "flac" => "audio/flac",
                "txt" => "text/plain",
                "json" => "application/json",
                "zip" => "application/zip",
                "glb" => "model/gltf-binary",
                _ => return None,
            },
        )
    };
    let path = url.split(['?', '#']).next().unwrap_or("");
    let url_ext = path
        .rsplit('/')
        .next()
        .and_then(|file| file.rsplit_once('.'))
        .map(|(_, ext)| ext);
    file_type
        .and_then(from_ext)
        .or_else(|| url_ext.and_then(from_ext))
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// The outputs of a finished task. The lifetime of RunningHub's output URLs
/// is not documented, so `expires_at` stays unknown (the media step copies
/// them right away).
fn outputs_of(data: &Value) -> Result<Vec<Output>, ProviderError> {
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
            })
        })
        .collect())
}

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
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct WireCallback {
            #[serde(default, deserialize_with = "lenient_string")]
            event: Option<String>,
            #[serde(default, deserialize_with = "lenient_string")]
            task_id: Option<String>,
        }
        let not_ours = |why: &str| ProviderError::Rejected {
            code: "callback".to_owned(),
            message: format!("not a RunningHub callback: {why}"),
        };
        // Through a Value: serde would read an array positionally into the
        // struct.
        let cb: WireCallback = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .filter(serde_json::Value::is_object)
            .and_then(|v| WireCallback::deserialize(v).ok())
            .ok_or_else(|| not_ours("not a JSON object"))?;
        let event = cb.event.ok_or_else(|| not_ours("no event"))?;
        let task_id = cb
            .task_id
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| not_ours("no taskId"))?;
        Ok(CallbackHint {
            provider_task_id: task_id,
            finished: event.eq_ignore_ascii_case("TASK_END"),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter() -> RunningHub {
        RunningHub::new(
            "rh",
            RunningHubSettings {
                base_url: "http://127.0.0.1:9/".to_owned(),
                api_key: "0123456789abcdef0123456789abcdef".to_owned(),
                client: crate::default_client(Duration::from_secs(1)),
                retry_after: Duration::from_secs(3),
            },
        )
        .unwrap()
    }

    #[test]
    fn debug_output_masks_the_key() {
        let rh = adapter();
        let printed = format!("{rh:?}");
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(printed.contains("***"), "{printed}");
    }

    #[test]
    fn settings_are_validated() {
        let s = RunningHubSettings {
            base_url: "ftp://x".to_owned(),
            api_key: "k".to_owned(),
            client: crate::default_client(Duration::from_secs(1)),
            retry_after: Duration::from_secs(1),
        };
        assert!(RunningHub::new("rh", s.clone()).is_err());
        let s = RunningHubSettings {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: " ".to_owned(),
            ..s
        };
        assert!(RunningHub::new("rh", s).is_err());
    }

    #[test]
    fn content_types_come_from_file_type_then_url() {
        assert_eq!(content_type(Some("png"), "https://x/a"), "image/png");
        assert_eq!(content_type(Some("MP4"), "https://x/a"), "video/mp4");
        assert_eq!(content_type(None, "https://x/a.webp?sig=1"), "image/webp");
        assert_eq!(content_type(Some("weird"), "https://x/a.jpg"), "image/jpeg");
        assert_eq!(
            content_type(None, "https://x/a"),
            "application/octet-stream"
        );
    }

    #[test]
    fn prompt_tips_with_node_errors_are_summarized() {
        let ok = json!(
            "{\"result\": true, \"error\": null, \"outputs_to_execute\": [\"9\"], \"node_errors\": {}}"
        );
        assert_eq!(prompt_problems(&ok), None);
        let bad = json!({"result": false, "error": {"type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation"},
            "node_errors": {"6": {"class_type": "CLIPTextEncode",
                "errors": [{"message": "Required input is missing", "details": "text"}]}}});
        let text = prompt_problems(&Value::String(bad.to_string())).unwrap();
        assert!(text.contains("Prompt outputs failed validation"), "{text}");
        assert!(
            text.contains("node 6 (CLIPTextEncode): Required input is missing: text"),
            "{text}"
        );
        assert_eq!(prompt_problems(&json!("not json")), None);
    }

    #[test]
    fn failures_are_retryable_only_for_resource_accidents() {
        let oom = json!({"failedReason": {"node_id": "3", "node_name": "KSampler",
            "exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory"}});
        let e = failure(&oom, "APIKEY_TASK_STATUS_ERROR");
        assert!(e.retryable);
        assert_eq!(e.code, "provider_failed");
        assert!(
            e.message
                .starts_with("node 3 (KSampler): torch.OutOfMemoryError")
        );
        let bad = json!({"failedReason": "{\"exception_type\": \"ValueError\", \"exception_message\": \"bad seed\"}"});
        let e = failure(&bad, "");
        assert!(!e.retryable);
        assert_eq!(e.message, "ValueError: bad seed");
        let interrupted = json!({"failedReason": {"exception_type":
            "comfy.model_management.InterruptProcessingException", "exception_message": ""}});
        assert_eq!(failure(&interrupted, "").code, "provider_canceled");
        assert_eq!(
            failure(&Value::Null, "APIKEY_TASK_STATUS_ERROR").message,
            "APIKEY_TASK_STATUS_ERROR"
        );
    }

    #[test]
    fn callbacks_accept_string_and_object_event_data() {
        let rh = adapter();
        let hint = rh
            .parse_callback(br#"{"event":"TASK_END","taskId":"1904163390028185602","eventData":"{\"code\":0,\"msg\":\"success\",\"data\":[]}"}"#)
            .unwrap();
        assert_eq!(hint.provider_task_id, "1904163390028185602");
        assert!(hint.finished);
        let hint = rh
            .parse_callback(
                br#"{"event":"TASK_END","taskId":1904163390028185602,"eventData":{"code":805}}"#,
            )
            .unwrap();
        assert_eq!(hint.provider_task_id, "1904163390028185602");
        for body in [
            &br#"{"taskId":"1"}"#[..],
            br#"{"event":"TASK_END"}"#,
            b"<html>",
            br#"[1]"#,
        ] {
            assert!(matches!(
                rh.parse_callback(body),
                Err(ProviderError::Rejected { .. })
            ));
        }
    }

    #[test]
    fn business_codes_are_classified_by_what_happens_next() {
        let r = Duration::from_secs(3);
        for c in [421, 415, 814, 1011, 1520] {
            assert!(matches!(
                classify_code(c, "", r),
                Some(ProviderError::BackPressure { .. })
            ));
        }
        for c in [812, 801] {
            assert!(matches!(
                classify_code(c, "", r),
                Some(ProviderError::AccountExhausted { .. })
            ));
        }
        for c in [802, 806, 811] {
            assert!(matches!(
                classify_code(c, "", r),
                Some(ProviderError::Unauthorized { .. })
            ));
        }
        for c in [301, 380, 433, 803, 809, 901] {
            assert!(matches!(
                classify_code(c, "", r),
                Some(ProviderError::Rejected { .. })
            ));
        }
        assert!(matches!(
            classify_code(500, "", r),
            Some(ProviderError::Transient(_))
        ));
        assert_eq!(classify_code(807, "", r), Some(ProviderError::NotFound));
        assert_eq!(classify_code(423, "", r), Some(ProviderError::NotFound));
        assert_eq!(classify_code(999, "", r), None);
    }
}
