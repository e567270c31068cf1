//! The Kling mock: Kling's `/v1` API as one account sees it (providers.md §3),
//! strict enough that an adapter which passes against it speaks Kling.
//!
//! - Auth: `Authorization: Bearer <JWT>`, HS256, `iss` = the AccessKey,
//!   signed with the SecretKey (`cfg.credentials` = `AccessKey:SecretKey`).
//!   Missing → 1001, malformed → 1002, unknown `iss` or bad signature → 1000,
//!   `nbf` in the future → 1003, `exp` passed → 1004; all HTTP 401, counted
//!   in `auth_failures`.
//! - `POST /v1/videos/text2video` (needs `prompt`), `/v1/videos/image2video`
//!   (needs `image` or `image_tail`), `/v1/images/generations` (needs
//!   `prompt`; holds `n` slots). Unknown fields and wrong types are refused
//!   with 1201 (`duration` must be the string "5"/"10"), an unreadable body
//!   with 1200, a model that is not `kling-…` with 404 1203. A taken
//!   `external_task_id` → 400 1201 "external_task_id already exists"; a full
//!   account → 429 1303 (not recorded).
//! - `GET <collection>/{task_id}`: the task, only under the family that made
//!   it; unknown → 400 1201 "task not found" (the \[3p\] reading of §3.8).
//! - `GET <collection>?pageNum=&pageSize=` (1–1000, 1–500): the family's
//!   tasks, newest first. `GET <collection>?external_task_id=` takes the
//!   "single-task query by own id" reading of §3.4: `data` is the one task,
//!   unknown → 400 1201.
//! - Status `submitted` (first tenth of the job) → `processing` → `succeed` |
//!   `failed`; the bare task object is POSTed to `callback_url` at each of
//!   the three moments.
//! - Wrong method → 404 1202; unknown path → 404 1203.
//! - Every GET of a task or list counts in `polls`.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gengate_core::ModelKind;
use gengate_providers::wire;
use rand::RngCore;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::account::{Account, Job, Phase, SharedAccount};
use crate::config::MockConfig;
use crate::routes::with_common_routes;
use crate::sim::now_ms;

/// One of Kling's task families: where it is created and queried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Family {
    name: &'static str,
    path: &'static str,
    kind: ModelKind,
}

const FAMILIES: [Family; 3] = [
    Family {
        name: "text2video",
        path: "/v1/videos/text2video",
        kind: ModelKind::Video,
    },
    Family {
        name: "image2video",
        path: "/v1/videos/image2video",
        kind: ModelKind::Video,
    },
    Family {
        name: "image",
        path: "/v1/images/generations",
        kind: ModelKind::Image,
    },
];

/// The HTTP status Kling answers a business code with (§3.8).
fn status_of(code: u32) -> StatusCode {
    match code {
        1000..=1004 => StatusCode::UNAUTHORIZED,
        1103 => StatusCode::FORBIDDEN,
        1100..=1102 | 1302..=1304 => StatusCode::TOO_MANY_REQUESTS,
        1202 | 1203 => StatusCode::NOT_FOUND,
        5000 => StatusCode::INTERNAL_SERVER_ERROR,
        5001 => StatusCode::SERVICE_UNAVAILABLE,
        5002 => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn default_message(code: u32) -> &'static str {
    match code {
        1000 => "Authentication failed",
        1001 => "Authorization is empty",
        1002 => "Authorization is invalid",
        1003 => "Authorization is not yet valid",
        1004 => "Authorization has expired",
        1100 => "Account exception",
        1101 => "Account in arrears",
        1102 => "Resource pack depleted or expired",
        1103 => "Unauthorized access to requested resource",
        1200 => "Invalid request parameters",
        1201 => "Invalid parameters",
        1202 => "Invalid request method",
        1203 => "Requested resource does not exist",
        1300 => "Trigger platform strategy",
        1301 => "Trigger content security policy",
        1302 => "Request rate exceeds the limit",
        1303 => "Concurrency or QPS exceeds the prepaid resource package limit",
        1304 => "Trigger IP whitelist policy",
        5000 => "Server internal error",
        5001 => "Server temporarily unavailable (maintenance)",
        5002 => "Server internal timeout (backlog)",
        _ => "Error",
    }
}

fn request_id() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Kling's error answer: its status and envelope.
fn error(code: u32, message: &str) -> Response {
    (
        status_of(code),
        axum::Json(
            json!({"code": code, "message": message, "request_id": request_id(), "data": null}),
        ),
    )
        .into_response()
}

fn ok(data: Value) -> Response {
    let mut body = json!({"code": 0, "message": "SUCCEED", "request_id": request_id()});
    body["data"] = data;
    axum::Json(body).into_response()
}

/// Verifies the bearer JWT (§3.2) against the account's keys; the refusal
/// when it does not pass.
fn auth_refusal(account: &Account, headers: &HeaderMap) -> Option<Response> {
    verify(account, headers).err()
}

#[expect(
    clippy::result_large_err,
    reason = "the refusal is answered right away, never carried around"
)]
fn verify(account: &Account, headers: &HeaderMap) -> Result<(), Response> {
    let refuse = |code: u32, message: &str| {
        account.ledger().auth_failures += 1;
        error(code, message)
    };
    let (access_key, secret_key) = account
        .cfg
        .credentials
        .split_once(':')
        .unwrap_or((account.cfg.credentials.as_str(), ""));
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(refuse(1001, "Authorization is empty"));
    };
    let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return Err(refuse(1002, "Authorization is invalid"));
    };
    if token.is_empty() {
        return Err(refuse(1001, "Authorization is empty"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let decode = |part: &str| -> Option<Map<String, Value>> {
        match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        }
    };
    let (Some(head), Some(claims), Ok(signature)) = (
        parts.first().and_then(|p| decode(p)),
        parts.get(1).and_then(|p| decode(p)),
        URL_SAFE_NO_PAD.decode(parts.get(2).copied().unwrap_or_default()),
    ) else {
        return Err(refuse(1002, "Authorization is invalid"));
    };
    if parts.len() != 3 || head.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(refuse(1002, "Authorization is invalid"));
    }
    if claims.get("iss").and_then(Value::as_str) != Some(access_key) {
        return Err(refuse(1000, "Authentication failed: unknown access key"));
    }
    let expected = wire::hmac_sha256(
        secret_key.as_bytes(),
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
    );
    if !bool::from(expected.ct_eq(&signature)) {
        return Err(refuse(1000, "Authentication failed: signature mismatch"));
    }
    let now = now_ms() / 1000;
    let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
        return Err(refuse(1002, "Authorization is invalid: no exp"));
    };
    match claims.get("nbf") {
        None => {}
        Some(nbf) => match nbf.as_i64() {
            Some(nbf) if nbf <= now => {}
            Some(_) => return Err(refuse(1003, "Authorization is not yet valid")),
            None => return Err(refuse(1002, "Authorization is invalid: bad nbf")),
        },
    }
    if exp <= now {
        return Err(refuse(1004, "Authorization has expired"));
    }
    Ok(())
}

/// A field's allowed shape.
enum Shape {
    Str(&'static [&'static str]),
    Unit,
    Slots,
    Object,
    Array,
}

const VIDEO_RATIOS: &[&str] = &["16:9", "9:16", "1:1"];
const IMAGE_RATIOS: &[&str] = &["16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9"];

fn shape(family: &str, field: &str) -> Option<Shape> {
    let video = family != "image";
    Some(match field {
        "model_name" | "prompt" | "negative_prompt" | "callback_url" | "external_task_id" => {
            Shape::Str(&[])
        }
        "watermark_info" => Shape::Object,
        "aspect_ratio" if video => Shape::Str(VIDEO_RATIOS),
        "aspect_ratio" => Shape::Str(IMAGE_RATIOS),
        "mode" if video => Shape::Str(&["std", "pro"]),
        "duration" if video => Shape::Str(&[]),
        "cfg_scale" if video => Shape::Unit,
        "camera_control" if video => Shape::Object,
        "sound" if video => Shape::Str(&["on", "off"]),
        "image" if family != "text2video" => Shape::Str(&[]),
        "image_tail" | "static_mask" if family == "image2video" => Shape::Str(&[]),
        "dynamic_masks" if family == "image2video" => Shape::Array,
        "image_reference" if !video => Shape::Str(&["subject", "face"]),
        "image_fidelity" | "human_fidelity" if !video => Shape::Unit,
        "resolution" if !video => Shape::Str(&["1k", "2k"]),
        "n" if !video => Shape::Slots,
        _ => return None,
    })
}

/// Checks a create body as Kling would: an `Err` is the code and message.
fn validate(family: Family, body: &Map<String, Value>) -> Result<(), (u32, String)> {
    let bad = |m: String| Err((1201, m));
    for (field, value) in body {
        let Some(shape) = shape(family.name, field) else {
            return bad(format!("Invalid parameter: unknown field {field}"));
        };
        let fits = match shape {
            Shape::Str(allowed) => value
                .as_str()
                .is_some_and(|s| allowed.is_empty() || allowed.contains(&s)),
            Shape::Unit => value.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)),
            Shape::Slots => value.as_u64().is_some_and(|n| (1..=9).contains(&n)),
            Shape::Object => value.is_object(),
            Shape::Array => value.is_array(),
        };
        if !fits {
            return bad(format!(
                "Invalid parameter: {field} has a wrong type or value"
            ));
        }
    }
    let text = |f: &str| body.get(f).and_then(Value::as_str);
    let model = text("model_name").unwrap_or("kling-v1");
    if let Some(d) = text("duration") {
        let fits = if model.starts_with("kling-v3") {
            d.parse::<u32>().is_ok_and(|d| (3..=15).contains(&d))
        } else {
            d == "5" || d == "10"
        };
        if !fits {
            return bad(format!(
                "Invalid parameter: duration {d:?} is not supported"
            ));
        }
    }
    for f in ["prompt", "negative_prompt"] {
        if text(f).is_some_and(|p| p.chars().count() > 2500) {
            return bad(format!(
                "Invalid parameter: {f} is longer than 2500 characters"
            ));
        }
    }
    if text("external_task_id") == Some("") {
        return bad("Invalid parameter: external_task_id is empty".to_owned());
    }
    let required_missing = match family.name {
        "image2video" => text("image").is_none() && text("image_tail").is_none(),
        _ => text("prompt").is_none_or(|p| p.trim().is_empty()),
    };
    if required_missing {
        let what = if family.name == "image2video" {
            "image"
        } else {
            "prompt"
        };
        return bad(format!("Invalid parameter: {what} is required"));
    }
    if !model.starts_with("kling-") {
        return Err((1203, format!("model {model} does not exist")));
    }
    Ok(())
}

/// Why a failing job failed; content verdicts and worker faults both occur.
fn failure_reason(job: &Job) -> &'static str {
    if job.seed.is_multiple_of(2) {
        "Failure to pass the risk control system"
    } else {
        "Internal error during generation, please try again"
    }
}

/// The task object as Kling shows it at `at` (ms): in query answers (inside
/// the envelope) and in callbacks (bare).
fn task_json(account: &Account, job: &Job, at: i64) -> Value {
    let (status, updated_at) = match job.phase(at) {
        Phase::Queued => ("submitted", job.start_ms),
        Phase::Running => ("processing", job.running_at()),
        Phase::Succeeded => ("succeed", job.done_ms),
        Phase::Failed => ("failed", job.done_ms),
        Phase::Canceled => ("failed", job.canceled_at.unwrap_or(job.done_ms)),
    };
    let task_info = match &job.external_id {
        Some(ext) => json!({"external_task_id": ext}),
        None => json!({}),
    };
    let mut task = json!({
        "task_id": job.id,
        "task_status": status,
        "task_status_msg": "",
        "task_info": task_info,
        "created_at": job.start_ms,
        "updated_at": updated_at,
    });
    match status {
        "failed" => task["task_status_msg"] = json!(failure_reason(job)),
        "succeed" => {
            task["final_unit_deduction"] = json!(job.outputs.to_string());
            task["task_result"] = match job.kind {
                ModelKind::Video => {
                    let duration = job
                        .request
                        .get("duration")
                        .and_then(Value::as_str)
                        .unwrap_or("5");
                    json!({"videos": (0..job.outputs).map(|i| json!({
                        "id": format!("{}-v{i}", job.id),
                        "url": account.output_url(job, i),
                        "duration": duration,
                    })).collect::<Vec<_>>()})
                }
                ModelKind::Image => {
                    json!({"images": (0..job.outputs).map(|i| json!({
                        "index": i,
                        "url": account.output_url(job, i),
                    })).collect::<Vec<_>>()})
                }
            };
        }
        _ => {}
    }
    task
}

/// A forced error (`/_mock/inject`), answered as Kling would.
fn forced(code: &str) -> Response {
    match code.trim().parse::<u32>() {
        Ok(code) => error(code, default_message(code)),
        Err(_) => error(5000, "Server internal error"),
    }
}

async fn create(
    account: SharedAccount,
    headers: HeaderMap,
    body: Bytes,
    family: Family,
) -> Response {
    let forced_code = account.ledger().take_forced();
    if let Some(code) = forced_code {
        return forced(&code);
    }
    if let Some(refusal) = auth_refusal(&account, &headers) {
        return refusal;
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            1200,
            "Invalid request parameters: the body is not a JSON object",
        );
    };
    if let Err((code, message)) = validate(family, &body) {
        return error(code, &message);
    }
    let text = |f: &str| body.get(f).and_then(Value::as_str).map(str::to_owned);
    let external_id = text("external_task_id");
    let callback_url = text("callback_url");
    let slots = match family.kind {
        ModelKind::Image => body
            .get("n")
            .and_then(Value::as_u64)
            .map_or(1, |n| n as usize),
        ModelKind::Video => 1,
    };
    let request = Value::Object(body);
    let now = now_ms();
    let (job_id, data, schedule) = {
        let mut l = account.ledger();
        if external_id
            .as_ref()
            .is_some_and(|e| l.by_external.contains_key(e))
        {
            l.duplicates += 1;
            drop(l);
            return error(1201, "external_task_id already exists");
        }
        if !l.admit(now, slots, account.cfg.concurrency) {
            drop(l);
            return error(
                1303,
                "parallel task over resource pack limit: concurrency exceeds the prepaid resource package limit",
            );
        }
        let id = l.next_id(|n| (780_000_000_000_000_000u64 + n).to_string());
        let mut job = account.draw_job(
            id.clone(),
            family.kind,
            family.name,
            request.clone(),
            request,
            now,
        );
        job.external_id = external_id;
        job.slots = slots;
        job.outputs = slots;
        job.callback_url = callback_url.clone();
        // The create answer is the short form (§3.5): no status message.
        let mut data = task_json(&account, &job, now);
        if let Some(task) = data.as_object_mut() {
            task.remove("task_status_msg");
        }
        let schedule = [job.start_ms, job.running_at(), job.done_ms];
        l.add(job);
        (id, data, schedule)
    };
    if let Some(url) = callback_url {
        let mut last = None;
        for at in schedule {
            // One callback per status change: a job too short to be seen
            // running changes status only twice.
            if last == Some(at) {
                continue;
            }
            last = Some(at);
            let acc = account.clone();
            account.post_at(job_id.clone(), url.clone(), at, move |job, _now| {
                Some(task_json(&acc, job, at))
            });
        }
    }
    ok(data)
}

async fn query(
    account: SharedAccount,
    headers: HeaderMap,
    task_id: String,
    family: Family,
) -> Response {
    if let Some(refusal) = auth_refusal(&account, &headers) {
        return refusal;
    }
    let mut l = account.ledger();
    l.polls += 1;
    let task = l
        .jobs
        .get(&task_id)
        .filter(|j| j.family == family.name)
        .map(|j| task_json(&account, j, now_ms()));
    drop(l);
    match task {
        Some(task) => ok(task),
        None => error(1201, "task not found"),
    }
}

async fn list(
    account: SharedAccount,
    headers: HeaderMap,
    q: HashMap<String, String>,
    family: Family,
) -> Response {
    if let Some(refusal) = auth_refusal(&account, &headers) {
        return refusal;
    }
    let mut l = account.ledger();
    l.polls += 1;
    let now = now_ms();
    if let Some(ext) = q.get("external_task_id") {
        let task = l
            .by_external
            .get(ext)
            .and_then(|id| l.jobs.get(id))
            .filter(|j| j.family == family.name)
            .map(|j| task_json(&account, j, now));
        drop(l);
        return match task {
            Some(task) => ok(task),
            None => error(1201, "task not found"),
        };
    }
    let number = |key: &str, default: usize, max: usize| match q.get(key) {
        None => Some(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=max).contains(n)),
    };
    let (Some(page), Some(size)) = (number("pageNum", 1, 1000), number("pageSize", 30, 500)) else {
        drop(l);
        return error(
            1201,
            "Invalid parameters: pageNum must be 1-1000 and pageSize 1-500",
        );
    };
    let mut jobs: Vec<&Job> = l
        .jobs
        .values()
        .filter(|j| j.family == family.name)
        .collect();
    jobs.sort_by(|a, b| (b.start_ms, &b.id).cmp(&(a.start_ms, &a.id)));
    let tasks: Vec<Value> = jobs
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|j| task_json(&account, j, now))
        .collect();
    drop(l);
    ok(Value::Array(tasks))
}

/// The mock's HTTP routes.
pub fn router(cfg: MockConfig) -> Router {
    let account = Account::new(cfg);
    let mut api: Router<SharedAccount> = Router::new();
    for family in FAMILIES {
        api = api
            .route(
                family.path,
                post(
                    move |State(a): State<SharedAccount>, headers: HeaderMap, body: Bytes| {
                        create(a, headers, body, family)
                    },
                )
                .get(
                    move |State(a): State<SharedAccount>,
                          headers: HeaderMap,
                          Query(q): Query<HashMap<String, String>>| {
                        list(a, headers, q, family)
                    },
                ),
            )
            .route(
                &format!("{}/{{task_id}}", family.path),
                get(
                    move |State(a): State<SharedAccount>,
                          headers: HeaderMap,
                          Path(id): Path<String>| {
                        query(a, headers, id, family)
                    },
                ),
            );
    }
    let api = api
        .fallback(|| async { error(1203, "Requested resource does not exist") })
        .method_not_allowed_fallback(|| async { error(1202, "Invalid request method") });
    with_common_routes(api, account)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fam(name: &str) -> Family {
        FAMILIES.into_iter().find(|f| f.name == name).unwrap()
    }

    fn check(name: &str, body: &Value) -> Result<(), (u32, String)> {
        validate(fam(name), body.as_object().unwrap())
    }

    #[test]
    fn create_bodies_are_checked_like_kling() {
        assert!(check("text2video", &json!({"model_name": "kling-v1-6", "prompt": "a fox", "duration": "10", "mode": "pro"})).is_ok());
        assert_eq!(
            check("text2video", &json!({"duration": "5"}))
                .unwrap_err()
                .0,
            1201
        );
        assert_eq!(
            check("text2video", &json!({"prompt": "a", "duration": 5}))
                .unwrap_err()
                .0,
            1201
        );
        assert_eq!(
            check("text2video", &json!({"prompt": "a", "duration": "7"}))
                .unwrap_err()
                .0,
            1201
        );
        assert!(
            check(
                "text2video",
                &json!({"model_name": "kling-v3", "prompt": "a", "duration": "7"})
            )
            .is_ok()
        );
        assert_eq!(
            check("text2video", &json!({"prompt": "a", "promt": "b"}))
                .unwrap_err()
                .0,
            1201
        );
        assert_eq!(
            check("text2video", &json!({"prompt": "a", "image": "x"}))
                .unwrap_err()
                .0,
            1201
        );
        assert_eq!(
            check("text2video", &json!({"prompt": "a", "model_name": "sora"}))
                .unwrap_err()
                .0,
            1203
        );
        assert!(check("image2video", &json!({"image": "https://x/a.png"})).is_ok());
        assert_eq!(
            check("image2video", &json!({"prompt": "a"})).unwrap_err().0,
            1201
        );
        assert!(check("image", &json!({"prompt": "a", "n": 4, "resolution": "2k"})).is_ok());
        assert_eq!(
            check("image", &json!({"prompt": "a", "n": 10}))
                .unwrap_err()
                .0,
            1201
        );
        assert_eq!(
            check("image", &json!({"prompt": "a", "n": "2"}))
                .unwrap_err()
                .0,
            1201
        );
    }

    #[test]
    fn error_codes_come_with_klings_statuses() {
        assert_eq!(status_of(1102), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status_of(1303), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status_of(1004), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(1103), StatusCode::FORBIDDEN);
        assert_eq!(status_of(1203), StatusCode::NOT_FOUND);
        assert_eq!(status_of(5001), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(request_id().len(), 36);
    }
}
