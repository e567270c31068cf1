//! The RunningHub mock: the legacy task API (`providers.md` §1) as one
//! account sees it.
//!
//! - Every answer is HTTP 200 with `{"code", "msg", "data"}` (fault
//!   injection aside). The key is checked in the body, `apiKey` everywhere
//!   and `apikey` on `/uc/openapi/accountStatus`; `Authorization` is ignored.
//!   A wrong or missing key answers `802 APIKEY_UNAUTHORIZED`.
//! - `POST /task/openapi/create` (`workflowId`, a string of digits, else
//!   `380`) and `POST /task/openapi/ai-app/run` (`webappId`, an int64 as a
//!   number or a string of digits, else `901`; `nodeInfoList` required).
//!   Unknown body fields and wrong types answer `301 PARAMS_INVALID`
//!   (stricter than the real service, to catch adapter typos);
//!   `nodeInfoList` items without `nodeId`/`fieldName`/`fieldValue` answer
//!   `803`. A full account answers `421 TASK_QUEUE_MAXED` (not recorded).
//!   Task ids are 19-digit numbers (`1910246754753896450` + sequence), sent
//!   as strings.
//! - `POST /task/openapi/outputs`: `813` queued, `804` running, `0` + list
//!   (`fileUrl`, `fileType`, `taskCostTime` as a string, `nodeId`), `805` +
//!   `data.failedReason` for a failed task (a CUDA out-of-memory error) and
//!   for a canceled one (ComfyUI's `InterruptProcessingException`).
//! - `POST /task/openapi/status`: `data` is a bare `QUEUED`, `RUNNING`,
//!   `SUCCESS`, `FAILED`, or `CANCELED` after a cancel (as some clients see
//!   it).
//! - `POST /task/openapi/cancel`: `0` with `data: null` (also for a task
//!   that already finished: nothing to stop); `807` for an unknown task.
//! - `POST /uc/openapi/accountStatus`: `remainCoins`, `currentTaskCounts`
//!   as strings.
//! - Webhook: when `webhookUrl` was given, `{"event":"TASK_END","taskId",
//!   "eventData"}` with `eventData` the outputs answer as a JSON string
//!   (`taskCostTime` a number there, as in the docs), posted at the task's
//!   end and **always delivered twice** (the repeat 300 ms later), as the
//!   docs warn receivers to expect repeats. Each delivery is dropped on its
//!   own by `--drop-webhooks`. None for a canceled task.
//! - `POST /_mock/inject {"code"}` answers the next submission with that
//!   business code. Besides the numeric codes, `FAILED` answers code 0 with
//!   `taskStatus: FAILED` and validation errors in `promptTips`,
//!   `node_errors` answers code 0 with a queued task whose `promptTips`
//!   carry node errors, and `no_outputs` makes the next task succeed with an
//!   empty outputs list (a workflow without an API-visible save node).
//!   Outputs are images, or videos when a `nodeInfoList` field name is
//!   video-like (`frame_rate`, `fps`, `num_frames`, `video_length`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, http::StatusCode};
use gengate_core::ModelKind;
use gengate_providers::wire;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::account::{Account, Job, Phase, SharedAccount};
use crate::config::MockConfig;
use crate::routes::with_common_routes;
use crate::sim::now_ms;

/// The first task id; each task adds its sequence number.
const FIRST_TASK_ID: u64 = 1_910_246_754_753_896_450;
/// When the repeated webhook follows the first one.
const REPEAT_WEBHOOK_MS: i64 = 300;

/// The mock's HTTP routes.
pub fn router(cfg: MockConfig) -> Router {
    let account = Account::new(cfg);
    let api = Router::new()
        .route("/task/openapi/create", post(create_workflow))
        .route("/task/openapi/ai-app/run", post(run_app))
        .route("/task/openapi/status", post(status))
        .route("/task/openapi/outputs", post(outputs))
        .route("/task/openapi/cancel", post(cancel))
        .route("/uc/openapi/accountStatus", post(account_status));
    with_common_routes(api, account)
}

/// An answer in RunningHub's envelope (always HTTP 200).
fn envelope(code: i64, msg: &str, data: Value) -> Response {
    let mut body = Map::new();
    body.insert("code".to_owned(), code.into());
    body.insert("msg".to_owned(), msg.into());
    body.insert("data".to_owned(), data);
    (StatusCode::OK, Json(Value::Object(body))).into_response()
}

/// A refused request: a business code and its message, `data: null`.
#[derive(Debug)]
struct Refusal {
    code: i64,
    msg: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        envelope(self.code, &self.msg, Value::Null)
    }
}

/// The documented name of a business code, used as its `msg`.
fn code_name(code: i64) -> &'static str {
    match code {
        0 => "success",
        301 => "PARAMS_INVALID",
        380 => "WORKFLOW_NOT_EXISTS",
        415 => "TASK_INSTANCE_MAXED",
        421 => "TASK_QUEUE_MAXED",
        423 => "TASK_NOT_FOUNED",
        433 => "VALIDATE_PROMPT_FAILED",
        500 => "UNKNOWN_ERROR",
        801 => "APIKEY_UNSUPPORTED_FREE_USER",
        802 => "APIKEY_UNAUTHORIZED",
        803 => "APIKEY_INVALID_NODE_INFO",
        804 => "APIKEY_TASK_IS_RUNNING",
        805 => "APIKEY_TASK_STATUS_ERROR",
        806 => "APIKEY_USER_NOT_FOUND",
        807 => "APIKEY_TASK_NOT_FOUND",
        808 => "APIKEY_UPLOAD_FAILED",
        809 => "APIKEY_FILE_SIZE_EXCEEDED",
        811 => "CORPAPIKEY_INVALID",
        812 => "CORPAPIKEY_INSUFFICIENT_FUNDS",
        813 => "APIKEY_TASK_IS_QUEUED",
        814 => "PERSONAL_QUEUE_COUNT_LIMIT",
        901 => "WEBAPP_NOT_EXISTS",
        _ => "error",
    }
}

fn refuse(code: i64) -> Refusal {
    Refusal {
        code,
        msg: code_name(code).to_owned(),
    }
}

fn params_invalid(why: &str) -> Refusal {
    Refusal {
        code: 301,
        msg: format!("PARAMS_INVALID: {why}"),
    }
}

/// The body as a JSON object; anything else is a params error.
fn object(body: &Bytes) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(params_invalid("body must be a JSON object")),
    }
}

/// Checks the key in `field` of the body, counting a refusal.
fn authorize(account: &Account, body: &Map<String, Value>, field: &str) -> Result<(), Refusal> {
    let given = body.get(field).and_then(Value::as_str).unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(account.cfg.credentials.as_bytes())) {
        Ok(())
    } else {
        account.ledger().auth_failures += 1;
        Err(refuse(802))
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Workflow,
    App,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Workflow => "workflow",
            Family::App => "app",
        }
    }

    /// The body fields the operation takes.
    fn fields(self) -> &'static [&'static str] {
        match self {
            Family::Workflow => &[
                "apiKey",
                "workflowId",
                "nodeInfoList",
                "webhookUrl",
                "addMetadata",
                "workflow",
                "instanceType",
                "usePersonalQueue",
            ],
            Family::App => &[
                "apiKey",
                "webappId",
                "nodeInfoList",
                "webhookUrl",
                "instanceType",
                "usePersonalQueue",
                "accessPassword",
            ],
        }
    }
}

/// What a valid create asks for.
struct Create {
    node_info: Vec<Value>,
    webhook_url: Option<String>,
}

/// Validates a create body the way RunningHub answers bad ones.
fn validate(family: Family, body: &Map<String, Value>) -> Result<Create, Refusal> {
    if let Some(unknown) = body.keys().find(|k| !family.fields().contains(&k.as_str())) {
        return Err(params_invalid(&format!("unknown field {unknown}")));
    }
    match family {
        Family::Workflow => match body.get("workflowId") {
            Some(Value::String(id)) if is_digits(id) => {}
            Some(Value::String(_)) => return Err(refuse(380)),
            _ => return Err(params_invalid("workflowId must be a string")),
        },
        Family::App => match body.get("webappId") {
            Some(Value::Number(n)) if n.is_u64() => {}
            Some(Value::String(id)) if is_digits(id) => {}
            Some(Value::String(_) | Value::Number(_)) => return Err(refuse(901)),
            _ => return Err(params_invalid("webappId is required")),
        },
    }
    let string = |k: &str| -> Result<Option<String>, Refusal> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(params_invalid(&format!("{k} must be a string"))),
        }
    };
    let webhook_url = string("webhookUrl")?;
    if webhook_url
        .as_deref()
        .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(params_invalid("webhookUrl must be an http(s) URL"));
    }
    string("workflow")?;
    string("accessPassword")?;
    match string("instanceType")?.as_deref() {
        None | Some("default" | "plus") => {}
        Some(_) => return Err(params_invalid("instanceType must be default or plus")),
    }
    for flag in ["addMetadata", "usePersonalQueue"] {
        if !matches!(body.get(flag), None | Some(Value::Null | Value::Bool(_))) {
            return Err(params_invalid(&format!("{flag} must be a boolean")));
        }
    }
    let node_info = match body.get("nodeInfoList") {
        None | Some(Value::Null) if family == Family::Workflow => Vec::new(),
        None | Some(Value::Null) => return Err(params_invalid("nodeInfoList is required")),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(params_invalid("nodeInfoList must be a list")),
    };
    let valid_item = |item: &Value| {
        let node_id = match item.get("nodeId") {
            Some(Value::String(s)) => !s.is_empty(),
            Some(n) => n.is_u64(),
            None => false,
        };
        let field_name = matches!(item.get("fieldName"), Some(Value::String(s)) if !s.is_empty());
        let field_value = item.get("fieldValue").is_some_and(|v| !v.is_null());
        node_id && field_name && field_value
    };
    if !node_info.iter().all(valid_item) {
        return Err(refuse(803));
    }
    Ok(Create {
        node_info,
        webhook_url,
    })
}

/// The text a mock output is rendered from: the first text-like field.
fn prompt_of(node_info: &[Value]) -> String {
    node_info
        .iter()
        .find(|i| {
            matches!(
                i.get("fieldName").and_then(Value::as_str),
                Some("text" | "prompt" | "positive")
            )
        })
        .and_then(|i| i.get("fieldValue")?.as_str())
        .unwrap_or("")
        .to_owned()
}

fn kind_of(node_info: &[Value]) -> ModelKind {
    let video = node_info.iter().any(|i| {
        matches!(
            i.get("fieldName").and_then(Value::as_str),
            Some("frame_rate" | "fps" | "num_frames" | "video_length")
        )
    });
    if video {
        ModelKind::Video
    } else {
        ModelKind::Image
    }
}

/// A `promptTips` string as ComfyUI's validation returns it.
fn prompt_tips(ok: bool) -> String {
    let tips = if ok {
        json!({"result": true, "error": null, "outputs_to_execute": ["9"], "node_errors": {}})
    } else {
        json!({"result": false,
               "error": {"type": "prompt_outputs_failed_validation",
                         "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
               "outputs_to_execute": [],
               "node_errors": {"6": {"errors": [{"type": "required_input_missing",
                   "message": "Required input is missing", "details": "text", "extra_info": {}}],
                   "dependent_outputs": ["9"], "class_type": "CLIPTextEncode"}}})
    };
    tips.to_string()
}

fn client_id(account: &Account, task_id: &str) -> String {
    let mac = wire::hmac_sha256(account.cfg.credentials.as_bytes(), task_id.as_bytes());
    hex::encode(&mac[..16])
}

async fn create_workflow(State(account): State<SharedAccount>, body: Bytes) -> Response {
    create(&account, Family::Workflow, &body)
}

async fn run_app(State(account): State<SharedAccount>, body: Bytes) -> Response {
    create(&account, Family::App, &body)
}

fn create(account: &SharedAccount, family: Family, raw: &Bytes) -> Response {
    let forced = account.ledger().take_forced();
    let mut no_outputs = false;
    match forced.as_deref() {
        None => {}
        Some("no_outputs") => no_outputs = true,
        Some(forced @ ("FAILED" | "node_errors")) => {
            // A task that failed validation: answered, never run.
            let id = account
                .ledger()
                .next_id(|n| (FIRST_TASK_ID + n).to_string());
            let status = if forced == "FAILED" {
                "FAILED"
            } else {
                "QUEUED"
            };
            return envelope(
                0,
                "success",
                json!({"taskId": id, "taskStatus": status, "clientId": client_id(account, &id),
                       "netWssUrl": null, "promptTips": prompt_tips(false)}),
            );
        }
        Some(code) => return refuse(code.parse().unwrap_or(500)).into_response(),
    }
    let body = match object(raw) {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = authorize(account, &body, "apiKey") {
        return refusal.into_response();
    }
    let create = match validate(family, &body) {
        Ok(c) => c,
        Err(refusal) => return refusal.into_response(),
    };
    let now = now_ms();
    let job = {
        let mut l = account.ledger();
        if !l.admit(now, 1, account.cfg.concurrency) {
            return refuse(421).into_response();
        }
        let id = l.next_id(|n| (FIRST_TASK_ID + n).to_string());
        let input = json!({"prompt": prompt_of(&create.node_info)});
        let mut job = account.draw_job(
            id,
            kind_of(&create.node_info),
            family.name(),
            input,
            Value::Object(body),
            now,
        );
        job.outputs = usize::from(!no_outputs);
        job.callback_url.clone_from(&create.webhook_url);
        l.add(job.clone());
        job
    };
    if let Some(url) = &job.callback_url {
        for at in [job.done_ms, job.done_ms + REPEAT_WEBHOOK_MS] {
            let sender = account.clone();
            account.post_at(job.id.clone(), url.clone(), at, move |job, now| {
                webhook(&sender, job, now)
            });
        }
    }
    envelope(
        0,
        "success",
        json!({"taskId": job.id, "taskStatus": "QUEUED", "clientId": client_id(account, &job.id),
               "netWssUrl": null, "promptTips": prompt_tips(true)}),
    )
}

/// The `TASK_END` webhook of a finished job; none for a canceled one.
fn webhook(account: &Account, job: &Job, now: i64) -> Option<Value> {
    let event = match job.phase(now) {
        Phase::Succeeded => {
            json!({"code": 0, "msg": "success", "data": output_list(account, job, true)})
        }
        Phase::Failed => {
            json!({"code": 805, "msg": code_name(805), "data": {"failedReason": failed_reason(job)}})
        }
        Phase::Queued | Phase::Running | Phase::Canceled => return None,
    };
    Some(json!({"event": "TASK_END", "taskId": job.id, "eventData": event.to_string()}))
}

/// A finished job's outputs list; `taskCostTime` is a string on `outputs`
/// and a number in the webhook, as in the docs' examples.
fn output_list(account: &Account, job: &Job, cost_as_number: bool) -> Value {
    let secs = (job.done_ms - job.start_ms) / 1000;
    let cost = if cost_as_number {
        json!(secs)
    } else {
        json!(secs.to_string())
    };
    Value::Array(
        (0..job.outputs)
            .map(|i| {
                let url = account.output_url(job, i);
                let file_type = match job.kind {
                    ModelKind::Image => "png",
                    ModelKind::Video => "avi",
                };
                json!({"fileUrl": url, "fileType": file_type, "taskCostTime": cost, "nodeId": "9"})
            })
            .collect(),
    )
}

fn failed_reason(job: &Job) -> Value {
    if job.canceled_at.is_some() {
        json!({"node_id": "3", "node_name": "KSampler",
               "exception_type": "comfy.model_management.InterruptProcessingException",
               "exception_message": "", "traceback": [], "current_inputs": {}, "current_outputs": {}})
    } else {
        json!({"node_id": "3", "node_name": "KSampler",
               "exception_type": "torch.OutOfMemoryError",
               "exception_message": "CUDA out of memory. Tried to allocate 2.00 GiB",
               "traceback": ["  File \"execution.py\", line 323, in execute\n"],
               "current_inputs": {}, "current_outputs": {}})
    }
}

/// The job a task query names, after the key check; counts the query.
fn queried_job(account: &Account, raw: &Bytes, poll: bool) -> Result<Job, Refusal> {
    let body = object(raw)?;
    authorize(account, &body, "apiKey")?;
    let id = match body.get("taskId") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(params_invalid("taskId is required")),
    };
    let mut l = account.ledger();
    if poll {
        l.polls += 1;
    }
    l.jobs.get(&id).cloned().ok_or_else(|| refuse(807))
}

async fn status(State(account): State<SharedAccount>, raw: Bytes) -> Response {
    let job = match queried_job(&account, &raw, true) {
        Ok(j) => j,
        Err(refusal) => return refusal.into_response(),
    };
    let status = match job.phase(now_ms()) {
        Phase::Queued => "QUEUED",
        Phase::Running => "RUNNING",
        Phase::Succeeded => "SUCCESS",
        Phase::Failed => "FAILED",
        Phase::Canceled => "CANCELED",
    };
    envelope(0, "success", json!(status))
}

async fn outputs(State(account): State<SharedAccount>, raw: Bytes) -> Response {
    let job = match queried_job(&account, &raw, true) {
        Ok(j) => j,
        Err(refusal) => return refusal.into_response(),
    };
    match job.phase(now_ms()) {
        Phase::Queued => refuse(813).into_response(),
        Phase::Running => refuse(804).into_response(),
        Phase::Succeeded => envelope(0, "success", output_list(&account, &job, false)),
        Phase::Failed | Phase::Canceled => envelope(
            805,
            code_name(805),
            json!({"failedReason": failed_reason(&job)}),
        ),
    }
}

async fn cancel(State(account): State<SharedAccount>, raw: Bytes) -> Response {
    let job = match queried_job(&account, &raw, false) {
        Ok(j) => j,
        Err(refusal) => return refusal.into_response(),
    };
    account.ledger().cancel(&job.id, now_ms());
    envelope(0, "success", Value::Null)
}

async fn account_status(State(account): State<SharedAccount>, raw: Bytes) -> Response {
    let body = match object(&raw) {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = authorize(&account, &body, "apikey") {
        return refusal.into_response();
    }
    let running = account.ledger().in_flight(now_ms());
    envelope(
        0,
        "success",
        json!({"remainCoins": "177814", "currentTaskCounts": running.to_string(),
               "remainMoney": null, "currency": null, "apiType": "NORMAL"}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_info_items_need_all_three_fields() {
        let body = |items: Value| {
            json!({"apiKey": "k", "workflowId": "1904136902449209346", "nodeInfoList": items})
                .as_object()
                .cloned()
                .unwrap()
        };
        let good = json!([{"nodeId": "6", "fieldName": "text", "fieldValue": "a fox"}]);
        assert!(validate(Family::Workflow, &body(good)).is_ok());
        for bad in [
            json!([{"nodeId": "6", "fieldName": "text"}]),
            json!([{"fieldName": "text", "fieldValue": 1}]),
            json!([{"nodeId": "6", "fieldValue": 1}]),
        ] {
            assert!(validate(Family::Workflow, &body(bad)).is_err());
        }
    }

    #[test]
    fn shared_task_ids_are_nineteen_digits() {
        assert_eq!((FIRST_TASK_ID + 1).to_string().len(), 19);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let body = json!({"apiKey": "k", "workflowId": "1", "webhookURL": "http://x"});
        assert!(validate(Family::Workflow, body.as_object().unwrap()).is_err());
    }
}
