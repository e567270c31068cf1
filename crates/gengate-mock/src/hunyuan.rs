//! The Tencent Cloud Hunyuan mock: one account that serves the Hunyuan
//! image actions (service `hunyuan`, version `2023-09-01`) and the Hunyuan
//! video actions (service `vclm`, version `2024-05-23`) on `POST /`, routed
//! on `X-TC-Action`, the way Tencent Cloud API 3.0 does.
//!
//! Strict where the real service is: every request must carry a valid
//! TC3-HMAC-SHA256 signature over the exact bytes and headers received
//! (`AuthFailure.SecretIdNotFound`, `.SignatureFailure`, `.SignatureExpire`
//! beyond 300 s of skew, `.InvalidAuthorization`), the credential scope must
//! name the action's service, the version header must be the action's
//! (`NoSuchVersion`), the region must be `ap-guangzhou`
//! (`UnsupportedRegion`), unknown actions are `InvalidAction`, unknown
//! fields `UnknownParameter`, a missing `Prompt` is `MissingParameter`, and
//! values out of range are `InvalidParameterValue`. A submission beyond the
//! account's concurrency is refused with `RequestLimitExceeded.JobNumExceed`
//! and not recorded. Answers are always HTTP 200 with
//! `{"Response": {..., "RequestId"}}`, errors as `Response.Error{Code, Message}`.
//!
//! Image jobs report `JobStatusCode` as strings (`"1"` waiting, `"2"`
//! running, `"4"` failed, `"5"` done) with `ResultImage` URLs that expire an
//! hour after the job ends; video jobs report `Status` `WAIT`/`RUN`/`FAIL`/
//! `DONE` with a `ResultVideoUrl` that lives 24 hours (`url_ttl` shortens
//! both). There is no cancel and no callback, as at Tencent.
//!
//! Image and video jobs share the one account's concurrency.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use gengate_core::ModelKind;
use gengate_providers::hunyuan::{MAX_CLOCK_SKEW_SECS, sign};
use rand::Rng;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::account::{Account, Job, Phase, SharedAccount};
use crate::config::MockConfig;
use crate::routes::with_common_routes;
use crate::sim::now_ms;

/// The only region Hunyuan image generation is sold in.
const REGION: &str = "ap-guangzhou";

/// Tencent takes POST bodies up to 10 MB with TC3 signatures.
const MAX_BODY_BYTES: usize = 10 << 20;

const IMAGE_RESOLUTIONS: &[&str] = &[
    "768:768",
    "768:1024",
    "1024:768",
    "1024:1024",
    "720:1280",
    "1280:720",
    "768:1280",
    "1280:768",
];

/// The mock's HTTP routes.
pub fn router(cfg: MockConfig) -> Router {
    let account = Account::new(cfg);
    let api = Router::new()
        .route("/", post(api))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    with_common_routes(api, account)
}

/// A Tencent error: its code and message.
type TcError = (Cow<'static, str>, String);

/// The actions the mock knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    SubmitImage,
    QueryImage,
    SubmitVideo,
    DescribeVideo,
}

impl Action {
    fn parse(name: &str) -> Option<Action> {
        Some(match name {
            "SubmitHunyuanImageJob" => Action::SubmitImage,
            "QueryHunyuanImageJob" => Action::QueryImage,
            "SubmitHunyuanToVideoJob" => Action::SubmitVideo,
            "DescribeHunyuanToVideoJob" => Action::DescribeVideo,
            _ => return None,
        })
    }

    fn kind(self) -> ModelKind {
        match self {
            Action::SubmitImage | Action::QueryImage => ModelKind::Image,
            Action::SubmitVideo | Action::DescribeVideo => ModelKind::Video,
        }
    }

    fn service(self) -> &'static str {
        match self.kind() {
            ModelKind::Image => "hunyuan",
            ModelKind::Video => "vclm",
        }
    }

    fn version(self) -> &'static str {
        match self.kind() {
            ModelKind::Image => "2023-09-01",
            ModelKind::Video => "2024-05-23",
        }
    }
}

/// A uuid-like `RequestId`, as Tencent returns with every answer.
fn request_id() -> String {
    let mut rng = rand::thread_rng();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        rng.r#gen::<u32>(),
        rng.r#gen::<u16>(),
        rng.gen_range(0..0x1000u16),
        rng.gen_range(0x8000..0xc000u16),
        rng.r#gen::<u64>() & 0xffff_ffff_ffff
    )
}

/// An answer in Tencent's envelope; always HTTP 200.
fn answer(mut fields: Map<String, Value>) -> Response {
    fields.insert("RequestId".to_owned(), Value::String(request_id()));
    Json(json!({ "Response": fields })).into_response()
}

fn error((code, message): TcError) -> Response {
    let mut fields = Map::new();
    fields.insert(
        "Error".to_owned(),
        json!({"Code": code, "Message": message}),
    );
    answer(fields)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn missing(name: &str) -> TcError {
    (
        "MissingParameter".into(),
        format!("The request is missing a required parameter `{name}`."),
    )
}

/// `POST /`: every action.
async fn api(
    State(account): State<SharedAccount>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        return error((
            "RequestSizeLimitExceeded".into(),
            format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        ));
    };
    match handle(&account, &headers, &body) {
        Ok(fields) => answer(fields),
        Err(e) => error(e),
    }
}

fn handle(
    account: &SharedAccount,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, TcError> {
    let name = header(headers, "x-tc-action").ok_or_else(|| missing("Action"))?;
    let action = Action::parse(name).ok_or_else(|| {
        (
            "InvalidAction".into(),
            format!("The action `{name}` is not found in this service."),
        )
    })?;
    let version = header(headers, "x-tc-version").ok_or_else(|| missing("Version"))?;
    if version != action.version() {
        return Err((
            "NoSuchVersion".into(),
            format!("The version `{version}` of action `{name}` does not exist."),
        ));
    }
    if let Err(e) = verify_signature(&account.cfg, headers, body, action.service()) {
        if e.0.starts_with("AuthFailure") {
            account.ledger().auth_failures += 1;
        }
        return Err(e);
    }
    let region = header(headers, "x-tc-region").ok_or_else(|| missing("Region"))?;
    if region != REGION {
        return Err((
            "UnsupportedRegion".into(),
            format!("The action `{name}` is not supported in region `{region}`."),
        ));
    }
    match action {
        Action::SubmitImage | Action::SubmitVideo => submit(account, action, body),
        Action::QueryImage | Action::DescribeVideo => query(account, action, body),
    }
}

/// Checks a TC3-HMAC-SHA256 signature against the bytes and headers
/// received, as Tencent does.
fn verify_signature(
    cfg: &MockConfig,
    headers: &HeaderMap,
    body: &[u8],
    service: &str,
) -> Result<(), TcError> {
    let invalid = |why: &str| {
        (
            "AuthFailure.InvalidAuthorization".into(),
            format!("Authorization header is invalid: {why}."),
        )
    };
    let bad_signature = |why: &str| {
        (
            "AuthFailure.SignatureFailure".into(),
            format!("The provided credentials could not be validated: {why}."),
        )
    };
    let (secret_id, secret_key) = cfg
        .credentials
        .split_once(':')
        .unwrap_or((cfg.credentials.as_str(), ""));
    let auth = header(headers, "authorization").ok_or_else(|| invalid("missing"))?;
    let rest = auth
        .strip_prefix("TC3-HMAC-SHA256 ")
        .ok_or_else(|| invalid("the algorithm must be TC3-HMAC-SHA256"))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(", ") {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(invalid("unexpected part")),
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(invalid(
            "Credential, SignedHeaders and Signature are required",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [id, date, scope_service, terminator] = scope[..] else {
        return Err(invalid(
            "Credential must be SecretId/Date/service/tc3_request",
        ));
    };
    if id != secret_id {
        return Err((
            "AuthFailure.SecretIdNotFound".into(),
            "The SecretId is not found, please ensure that your SecretId is correct.".to_owned(),
        ));
    }
    let timestamp: i64 = header(headers, "x-tc-timestamp")
        .ok_or_else(|| missing("Timestamp"))?
        .parse()
        .map_err(|_| {
            (
                "InvalidParameter".into(),
                "The parameter `Timestamp` must be Unix seconds.".to_owned(),
            )
        })?;
    let now = now_ms().div_euclid(1000);
    if (now - timestamp).abs() > MAX_CLOCK_SKEW_SECS {
        return Err((
            "AuthFailure.SignatureExpire".into(),
            format!(
                "Signature expired, timestamp {timestamp} is more than {MAX_CLOCK_SKEW_SECS} s \
                 from the server time {now}."
            ),
        ));
    }
    if terminator != "tc3_request" {
        return Err(bad_signature(
            "the credential scope must end in tc3_request",
        ));
    }
    if scope_service != service {
        return Err(bad_signature("the credential scope names another service"));
    }
    if date != gengate_core::time::utc_date(timestamp) {
        return Err(bad_signature(
            "the credential date is not the UTC date of X-TC-Timestamp",
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"content-type") || !names.contains(&"host") {
        return Err(bad_signature("content-type and host must be signed"));
    }
    let mut signed = Vec::with_capacity(names.len());
    for name in names {
        let value = header(headers, name)
            .ok_or_else(|| bad_signature(&format!("signed header {name} was not sent")))?;
        signed.push((name, value));
    }
    let content_type = header(headers, "content-type").unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err((
            "InvalidParameter".into(),
            format!("Content-Type `{content_type}` is not supported, use application/json."),
        ));
    }
    let expected = sign(secret_key, service, timestamp, &signed, body);
    if expected.signed_headers != signed_headers
        || !bool::from(expected.signature.as_bytes().ct_eq(signature.as_bytes()))
    {
        return Err(bad_signature("the signature does not match"));
    }
    Ok(())
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, TcError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err((
            "InvalidParameter".into(),
            "The request body must be a JSON object.".to_owned(),
        )),
    }
}

/// The type a known field must have.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Obj,
    StrOrObj,
}

fn fields_of(action: Action) -> &'static [(&'static str, Ty)] {
    match action {
        Action::SubmitImage => &[
            ("Prompt", Ty::Str),
            ("NegativePrompt", Ty::Str),
            ("Style", Ty::Str),
            ("Resolution", Ty::Str),
            ("Num", Ty::Int),
            ("Clarity", Ty::Str),
            ("ContentImage", Ty::StrOrObj),
            ("Revise", Ty::Int),
            ("Seed", Ty::Int),
            ("LogoAdd", Ty::Int),
            ("LogoParam", Ty::Obj),
        ],
        Action::SubmitVideo => &[
            ("Prompt", Ty::Str),
            ("Image", Ty::Obj),
            ("Resolution", Ty::Str),
            ("LogoAdd", Ty::Int),
            ("LogoParam", Ty::Obj),
        ],
        Action::QueryImage | Action::DescribeVideo => &[("JobId", Ty::Str)],
    }
}

/// Refuses unknown fields and fields of the wrong type, as Tencent does.
fn check_fields(action: Action, body: &Map<String, Value>) -> Result<(), TcError> {
    let known = fields_of(action);
    for (name, value) in body {
        let Some((_, ty)) = known.iter().find(|(k, _)| k == name) else {
            return Err((
                "UnknownParameter".into(),
                format!("The parameter `{name}` is not recognized."),
            ));
        };
        let ok = match ty {
            Ty::Str => value.is_string(),
            Ty::Int => value.is_i64() || value.is_u64(),
            Ty::Obj => value.is_object(),
            Ty::StrOrObj => value.is_string() || value.is_object(),
        };
        if !ok {
            return Err((
                "InvalidParameter".into(),
                format!("The type of parameter `{name}` is invalid."),
            ));
        }
    }
    Ok(())
}

fn bad_value(name: &str, why: &str) -> TcError {
    (
        "InvalidParameterValue".into(),
        format!("The value of parameter `{name}` is invalid: {why}."),
    )
}

/// A forced error's message, so the answer reads like Tencent's.
fn forced(code: String) -> TcError {
    let message = format!("Injected error {code}.");
    (code.into(), message)
}

fn submit(
    account: &SharedAccount,
    action: Action,
    body: &[u8],
) -> Result<Map<String, Value>, TcError> {
    if let Some(code) = account.ledger().take_forced() {
        return Err(forced(code));
    }
    let request = body_object(body)?;
    check_fields(action, &request)?;
    let prompt = request
        .get("Prompt")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("Prompt"))?;
    let max_prompt = if action == Action::SubmitImage {
        1024
    } else {
        200
    };
    if prompt.trim().is_empty() {
        return Err(bad_value("Prompt", "it must not be empty"));
    }
    if prompt.trim().chars().count() > max_prompt {
        return Err(bad_value(
            "Prompt",
            &format!("it is longer than {max_prompt} characters"),
        ));
    }
    let kind = action.kind();
    let (input, outputs) = match kind {
        ModelKind::Image => {
            let resolution = match request.get("Resolution").and_then(Value::as_str) {
                None => "1024:1024",
                Some(r) if IMAGE_RESOLUTIONS.contains(&r) => r,
                Some(_) => {
                    return Err(bad_value("Resolution", "unsupported resolution"));
                }
            };
            let num = request.get("Num").and_then(Value::as_i64).unwrap_or(1);
            if !(1..=4).contains(&num) {
                return Err(bad_value("Num", "it must be from 1 to 4"));
            }
            let size = resolution.replace(':', "x");
            (json!({"prompt": prompt, "size": size}), num as usize)
        }
        ModelKind::Video => {
            if request
                .get("Resolution")
                .and_then(Value::as_str)
                .is_some_and(|r| r != "720p")
            {
                return Err(bad_value("Resolution", "only 720p is supported"));
            }
            if let Some(image) = request.get("Image") {
                let has = |k: &str| image.get(k).is_some_and(Value::is_string);
                if !has("Url") && !has("Base64") {
                    return Err(bad_value("Image", "it needs Url or Base64"));
                }
            }
            (json!({"prompt": prompt}), 1)
        }
    };
    let now = now_ms();
    let mut l = account.ledger();
    if !l.admit(now, 1, account.cfg.concurrency) {
        return Err((
            "RequestLimitExceeded.JobNumExceed".into(),
            "The number of concurrent jobs exceeds the limit of the account.".to_owned(),
        ));
    }
    let id = l.next_id(|n| match kind {
        ModelKind::Image => format!(
            "1300000000-{}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}-0",
            now.div_euclid(1000),
            n,
            n & 0xffff,
            0x4000 | (n & 0xfff),
            0x8000 | (n & 0x3fff),
            n
        ),
        ModelKind::Video => format!("{}", 1_300_000_000_000_000_000u64 + n),
    });
    let family = match kind {
        ModelKind::Image => "image",
        ModelKind::Video => "video",
    };
    let mut job = account.draw_job(id.clone(), kind, family, input, Value::Object(request), now);
    job.outputs = outputs;
    l.add(job);
    let mut fields = Map::new();
    fields.insert("JobId".to_owned(), Value::String(id));
    Ok(fields)
}

/// A result URL with its expiry: `url_ttl` after the job ended when set,
/// else the provider's own lifetime (image 1 h, video 24 h).
fn result_url(account: &Account, job: &Job, index: usize) -> String {
    let lifetime = match job.kind {
        ModelKind::Image => Duration::from_secs(3600),
        ModelKind::Video => Duration::from_secs(24 * 3600),
    };
    let ttl = account.cfg.url_ttl.unwrap_or(lifetime);
    let url = account.output_url(job, index);
    let base = url.split_once('?').map_or(url.as_str(), |(b, _)| b);
    format!("{base}?expires={}", job.done_ms + ttl.as_millis() as i64)
}

fn query(
    account: &SharedAccount,
    action: Action,
    body: &[u8],
) -> Result<Map<String, Value>, TcError> {
    let job = {
        let mut l = account.ledger();
        l.polls += 1;
        let request = body_object(body)?;
        check_fields(action, &request)?;
        let job_id = request
            .get("JobId")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("JobId"))?;
        l.jobs
            .get(job_id)
            .filter(|j| j.kind == action.kind())
            .cloned()
    };
    let Some(job) = job else {
        return Err(match action.kind() {
            ModelKind::Image => (
                "FailedOperation.JobNotFound".into(),
                "The job is not found.".to_owned(),
            ),
            ModelKind::Video => (
                "FailedOperation.JobNotExist".into(),
                "The job does not exist.".to_owned(),
            ),
        });
    };
    let phase = job.phase(now_ms());
    let mut f = Map::new();
    match job.kind {
        ModelKind::Image => {
            let (code, msg) = match phase {
                Phase::Queued => ("1", "排队中"),
                Phase::Running => ("2", "处理中"),
                Phase::Failed | Phase::Canceled => ("4", "处理失败"),
                Phase::Succeeded => ("5", "处理完成"),
            };
            let failed = code == "4";
            let done = code == "5";
            let images: Vec<Value> = if done {
                (0..job.outputs)
                    .map(|i| Value::String(result_url(account, &job, i)))
                    .collect()
            } else {
                Vec::new()
            };
            let details: Vec<Value> = images.iter().map(|_| json!("Success")).collect();
            let revised: Vec<Value> = if done {
                vec![Value::String(job.caption.clone())]
            } else {
                Vec::new()
            };
            f.insert("JobStatusCode".to_owned(), json!(code));
            f.insert("JobStatusMsg".to_owned(), json!(msg));
            f.insert(
                "JobErrorCode".to_owned(),
                json!(if failed {
                    "FailedOperation.GenerateImageFailed"
                } else {
                    ""
                }),
            );
            f.insert(
                "JobErrorMsg".to_owned(),
                json!(if failed {
                    "Generating the image failed."
                } else {
                    ""
                }),
            );
            f.insert("ResultImage".to_owned(), Value::Array(images));
            f.insert("ResultDetails".to_owned(), Value::Array(details));
            f.insert("RevisedPrompt".to_owned(), Value::Array(revised));
        }
        ModelKind::Video => {
            let status = match phase {
                Phase::Queued => "WAIT",
                Phase::Running => "RUN",
                Phase::Failed | Phase::Canceled => "FAIL",
                Phase::Succeeded => "DONE",
            };
            let failed = status == "FAIL";
            let url = if status == "DONE" {
                result_url(account, &job, 0)
            } else {
                String::new()
            };
            f.insert("Status".to_owned(), json!(status));
            f.insert(
                "ErrorCode".to_owned(),
                json!(if failed {
                    "FailedOperation.EngineServerError"
                } else {
                    ""
                }),
            );
            f.insert(
                "ErrorMessage".to_owned(),
                json!(if failed {
                    "The generation engine failed."
                } else {
                    ""
                }),
            );
            f.insert("ResultVideoUrl".to_owned(), json!(url));
        }
    }
    Ok(f)
}
