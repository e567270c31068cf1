//! Tencent Cloud Hunyuan: image generation (`SubmitHunyuanImageJob` /
//! `QueryHunyuanImageJob`, service `hunyuan`) and video generation
//! (`SubmitHunyuanToVideoJob` / `DescribeHunyuanToVideoJob`, service `vclm`),
//! both signed with TC3-HMAC-SHA256.
//!
//! This module owns the wire format, the signature and the classification
//! of Tencent's error codes. What a model sends (`Prompt`, `Resolution`,
//! `Style`, `Image`, `LogoAdd`, …) is the model's rendered template, sent as
//! is; retries, slots and storage of results are the dispatcher's.
//!
//! Tencent has no cancel, no client reference and no callbacks for these
//! actions: a task is followed by polling only, "cancel" just stops our
//! polling, and a submission whose answer was lost cannot be found again.
//!
//! Provider task ids are `image:<JobId>` and `video:<JobId>`: the query
//! action (and service) depends on which submit made the job.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use gengate_core::{ModelKind, Output, TaskError};
use serde::Deserialize;
use serde_json::Value;

use crate::wire::{self, hex, hmac_sha256, lenient_string, sha256_hex, snippet};
use crate::{
    FollowRef, JobState, Provider, ProviderError, SubmitRequest, classify_reqwest, default_client,
};

/// The region Hunyuan image generation is sold in (the only one, per its
/// API docs), used when the settings leave it empty.
pub const DEFAULT_REGION: &str = "ap-guangzhou";

/// The `Content-Type` every request is sent and signed with.
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Tencent rejects signatures whose timestamp is further than this from its
/// clock (`AuthFailure.SignatureExpire`).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// How to reach one Tencent Cloud account.
#[derive(Clone)]
pub struct HunyuanSettings {
    /// `None`: Tencent's own hosts (`hunyuan.tencentcloudapi.com` for images,
    /// `vclm.tencentcloudapi.com` for videos). `Some(url)`: every action goes
    /// to that URL (a mock, a proxy); the signature still names each action's
    /// service, and covers the `Host` actually sent.
    pub base_url: Option<String>,
    pub secret_id: String,
    pub secret_key: String,
    /// Empty means [`DEFAULT_REGION`].
    pub region: String,
    /// The client every call goes through (`gengate_net::Outbound::provider`).
    pub client: reqwest::Client,
    /// How long the dispatcher waits after the account said it is full or
    /// rate limited.
    pub retry_after: Duration,
}

impl HunyuanSettings {
    /// Settings for Tencent's own hosts in [`DEFAULT_REGION`], with a 30 s
    /// timeout, the public TLS roots and a 5 s back-off when the account is
    /// full.
    pub fn new(secret_id: &str, secret_key: &str) -> Self {
        Self {
            base_url: None,
            secret_id: secret_id.to_owned(),
            secret_key: secret_key.to_owned(),
            region: DEFAULT_REGION.to_owned(),
            client: default_client(Duration::from_secs(30)),
            retry_after: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for HunyuanSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HunyuanSettings")
            .field("base_url", &self.base_url)
            .field("secret_id", &mask(&self.secret_id))
            .field("secret_key", &"***")
            .field("region", &self.region)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

/// A SecretId shows its first four characters, enough to tell keys apart in
/// logs.
fn mask(secret_id: &str) -> String {
    let head: String = secret_id.chars().take(4).collect();
    format!("{head}***")
}

/// The two operation families: which actions, service, version and host a
/// job's requests use, and how long its result URLs live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Image,
    Video,
}

impl Family {
    fn from_endpoint(endpoint: Option<&str>, kind: ModelKind) -> Option<Family> {
        match endpoint {
            None => Some(match kind {
                ModelKind::Image => Family::Image,
                ModelKind::Video => Family::Video,
            }),
            Some("image") => Some(Family::Image),
            Some("video") => Some(Family::Video),
            Some(_) => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Image => "image",
            Family::Video => "video",
        }
    }

    fn service(self) -> &'static str {
        match self {
            Family::Image => "hunyuan",
            Family::Video => "vclm",
        }
    }

    fn version(self) -> &'static str {
        match self {
            Family::Image => "2023-09-01",
            Family::Video => "2024-05-23",
        }
    }

    fn submit_action(self) -> &'static str {
        match self {
            Family::Image => "SubmitHunyuanImageJob",
            Family::Video => "SubmitHunyuanToVideoJob",
        }
    }

    fn query_action(self) -> &'static str {
        match self {
            Family::Image => "QueryHunyuanImageJob",
            Family::Video => "DescribeHunyuanToVideoJob",
        }
    }

    /// How long a result URL lives, per the API docs (image 1 h, video 24 h).
    fn url_lifetime(self) -> Duration {
        match self {
            Family::Image => Duration::from_secs(3600),
            Family::Video => Duration::from_secs(24 * 3600),
        }
    }

    /// The provider task id of job `job_id` of this family.
    fn task_id(self, job_id: &str) -> String {
        format!("{}:{job_id}", self.name())
    }

    /// Splits a provider task id into its family and Tencent's `JobId`.
    fn parse_task_id(id: &str) -> Option<(Family, &str)> {
        let (family, job_id) = id.split_once(':')?;
        let family = match family {
            "image" => Family::Image,
            "video" => Family::Video,
            _ => return None,
        };
        (!job_id.is_empty()).then_some((family, job_id))
    }
}

/// Where one family's requests go.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    /// The `Host` header sent and signed: the URL's host, and its port when
    /// it is not the scheme's default.
    host: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("hunyuan: bad base_url {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("hunyuan: base_url {url:?} must be http or https"));
        }
        let Some(host) = parsed.host_str() else {
            return Err(format!("hunyuan: base_url {url:?} has no host"));
        };
        let host = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Target {
            url: parsed.to_string(),
            host,
        })
    }
}

/// What a TC3-HMAC-SHA256 signature is made of, each step kept so the
/// published example can be checked step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tc3Signature {
    /// Hex SHA-256 of the exact body bytes.
    pub payload_hash: String,
    /// Hex SHA-256 of the canonical request.
    pub canonical_request_hash: String,
    /// `YYYY-MM-DD/service/tc3_request`.
    pub credential_scope: String,
    /// The signed header names, lower case, sorted, joined with `;`.
    pub signed_headers: String,
    /// The final signature, lower-case hex.
    pub signature: String,
}

impl Tc3Signature {
    /// The `Authorization` header value for `secret_id`.
    pub fn authorization(&self, secret_id: &str) -> String {
        format!(
            "TC3-HMAC-SHA256 Credential={secret_id}/{}, SignedHeaders={}, Signature={}",
            self.credential_scope, self.signed_headers, self.signature
        )
    }
}

/// Signs a `POST /` request the TC3-HMAC-SHA256 way (Tencent Cloud API 3.0):
/// `headers` are the signed headers as sent (name, value; they must include
/// `content-type` and `host`), `payload` the exact body bytes, `timestamp`
/// the `X-TC-Timestamp` sent. The credential date is the UTC date of
/// `timestamp`, never local time.
pub fn sign(
    secret_key: &str,
    service: &str,
    timestamp: i64,
    headers: &[(&str, &str)],
    payload: &[u8],
) -> Tc3Signature {
    let mut canonical: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
        .collect();
    canonical.sort();
    let canonical_headers: String = canonical
        .iter()
        .map(|(k, v)| format!("{k}:{v}\n"))
        .collect();
    let signed_headers = canonical
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let payload_hash = sha256_hex(payload);
    let canonical_request =
        format!("POST\n/\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
    let canonical_request_hash = sha256_hex(canonical_request.as_bytes());
    let date = gengate_core::time::utc_date(timestamp);
    let credential_scope = format!("{date}/{service}/tc3_request");
    let string_to_sign =
        format!("TC3-HMAC-SHA256\n{timestamp}\n{credential_scope}\n{canonical_request_hash}");
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    let signature = hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()));
    Tc3Signature {
        payload_hash,
        canonical_request_hash,
        credential_scope,
        signed_headers,
        signature,
    }
}

/// The Tencent Hunyuan adapter.
pub struct Hunyuan {
    name: String,
    secret_id: String,
    secret_key: String,
    region: String,
    retry_after: Duration,
    image: Target,
    video: Target,
    client: reqwest::Client,
}

impl fmt::Debug for Hunyuan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hunyuan")
            .field("name", &self.name)
            .field("secret_id", &mask(&self.secret_id))
            .field("secret_key", &"***")
            .field("region", &self.region)
            .field("image_url", &self.image.url)
            .field("video_url", &self.video.url)
            .finish_non_exhaustive()
    }
}

/// One answer of the Tencent API, read far enough to tell success from
/// failure.
enum Answer {
    /// `Response` without `Error`: the action's fields.
    Ok(Value),
    /// `Response.Error`.
    Error { code: String, message: String },
    /// Not Tencent's envelope (an HTML error page, a truncated body): what
    /// it was, for the error message.
    Unusable(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Response")]
    response: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireError {
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SubmitAnswer {
    /// A string per the docs; a number is accepted too (video ids are
    /// numeric strings).
    #[serde(default, deserialize_with = "lenient_string")]
    job_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImageJob {
    /// A string ("5") per the docs; a number is accepted too, so a change of
    /// type cannot make a finished job look unknown forever.
    #[serde(default, deserialize_with = "lenient_string")]
    job_status_code: Option<String>,
    #[serde(default)]
    job_error_code: Option<String>,
    #[serde(default)]
    job_error_msg: Option<String>,
    /// The SDK types these as arrays of nullable strings, and the arrays
    /// themselves may be null.
    #[serde(default)]
    result_image: Option<Vec<Option<String>>>,
    #[serde(default)]
    result_details: Option<Vec<Option<String>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VideoJob {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    result_video_url: Option<String>,
}

/// Which call an error code came back to: the same code means different
/// things to a submission and to a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Submit,
    Query,
}

impl Hunyuan {
    /// # Errors
    /// When a setting is unusable (empty credentials, a bad `base_url`).
    pub fn new(name: &str, settings: HunyuanSettings) -> Result<Self, String> {
        if settings.secret_id.trim().is_empty() || settings.secret_key.trim().is_empty() {
            return Err("hunyuan: secret_id and secret_key are required".to_owned());
        }
        let (image, video) = match settings.base_url.as_deref() {
            Some(url) => {
                let target = Target::parse(url)?;
                (target.clone(), target)
            }
            None => (
                Target::parse("https://hunyuan.tencentcloudapi.com/")?,
                Target::parse("https://vclm.tencentcloudapi.com/")?,
            ),
        };
        let region = match settings.region.trim() {
            "" => DEFAULT_REGION.to_owned(),
            r => r.to_owned(),
        };
        Ok(Self {
            name: name.to_owned(),
            secret_id: settings.secret_id,
            secret_key: settings.secret_key,
            region,
            retry_after: settings.retry_after,
            image,
            video,
            client: settings.client,
        })
    }

    fn target(&self, family: Family) -> &Target {
        match family {
            Family::Image => &self.image,
            Family::Video => &self.video,
        }
    }

    /// Sends `action` of `family` with `body` (the exact bytes signed) and
    /// reads the answer. Transport errors are classified as for a request
    /// that may have taken effect; the caller relaxes that for queries.
    async fn call(
        &self,
        family: Family,
        action: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Answer), ProviderError> {
        let target = self.target(family);
        let timestamp = now_secs();
        let signature = sign(
            &self.secret_key,
            family.service(),
            timestamp,
            &[
                ("content-type", CONTENT_TYPE),
                ("host", &target.host),
                ("x-tc-action", action),
            ],
            &body,
        );
        let resp = self
            .client
            .post(&target.url)
            .header(reqwest::header::HOST, &target.host)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(
                reqwest::header::AUTHORIZATION,
                signature.authorization(&self.secret_id),
            )
            .header("X-TC-Action", action)
            .header("X-TC-Version", family.version())
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region)
            .body(body)
            .send()
            .await
            .map_err(|e| classify_reqwest(&e))?;
        let (status, bytes) = wire::read_answer(resp).await?;
        Ok((status, read_envelope(status, &bytes)))
    }

    /// Maps one of Tencent's error codes to what the dispatcher does next.
    fn classify(&self, call: Call, code: &str, message: &str) -> ProviderError {
        classify_code(call, code, message, self.retry_after)
    }

    /// Queries job `job_id` of `family`; every failure is retryable
    /// (`Transient`), since a query changes nothing.
    async fn query(&self, family: Family, job_id: &str) -> Result<Value, ProviderError> {
        let body = serde_json::to_vec(&serde_json::json!({ "JobId": job_id }))
            .map_err(|e| ProviderError::Transient(format!("encoding the query failed: {e}")))?;
        let (status, answer) = self
            .call(family, family.query_action(), body)
            .await
            .map_err(relax)?;
        match answer {
            Answer::Ok(fields) => Ok(fields),
            Answer::Error { code, message } => Err(self.classify(Call::Query, &code, &message)),
            Answer::Unusable(what) => Err(ProviderError::Transient(format!(
                "{} answered HTTP {status} without Tencent's envelope: {what}",
                family.query_action()
            ))),
        }
    }
}

/// For a request that changes nothing, an unknown outcome is just a failed
/// attempt.
fn relax(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Ambiguous(msg) => ProviderError::Transient(msg),
        other => other,
    }
}

fn now_secs() -> i64 {
    crate::wire::now_ms().div_euclid(1000)
}

/// Reads Tencent's `{"Response": {...}}` envelope.
fn read_envelope(status: u16, body: &[u8]) -> Answer {
    let Ok(Envelope { response }) = serde_json::from_slice::<Envelope>(body) else {
        return Answer::Unusable(format!("HTTP {status}: {:?}", snippet(body)));
    };
    match response.get("Error") {
        Some(error) => match WireError::deserialize(error) {
            Ok(e) => Answer::Error {
                code: e.code,
                message: e.message,
            },
            Err(_) => Answer::Unusable(format!("HTTP {status}: malformed Response.Error")),
        },
        None if response.is_object() => Answer::Ok(response),
        None => Answer::Unusable(format!("HTTP {status}: Response is not an object")),
    }
}

/// Codes that mean the account cannot pay for more work.
const ACCOUNT_CODES: &[&str] = &[
    "FailedOperation.ResourcePackExhausted",
    "FailedOperation.FreeResourcePackExhausted",
    "FailedOperation.ServiceNotActivated",
    "FailedOperation.ServiceStopArrears",
    "ResourceInsufficient.ChargeResourceExhaust",
    "ResourceUnavailable.InArrears",
    "ResourceUnavailable.LowBalance",
    "ResourceUnavailable.StopUsing",
    "ResourceUnavailable.NotExist",
    "ResourcesSoldOut.ChargeStatusException",
];

/// Codes of failures on Tencent's side that a later attempt may not meet.
const TRANSIENT_CODES: &[&str] = &[
    "FailedOperation.EngineRequestTimeout",
    "FailedOperation.EngineServerError",
    "FailedOperation.EngineServerLimitExceeded",
    "ResourceUnavailable.IsOpening",
    "InternalError",
];

/// Tencent's error code → what the dispatcher does next. Codes we do not
/// know are refusals (`Rejected`): an `Error` in the envelope means the
/// action did not run, and retrying what we do not understand could loop.
fn classify_code(call: Call, code: &str, message: &str, retry_after: Duration) -> ProviderError {
    let message = message.to_owned();
    let code_owned = code.to_owned();
    if code == "RequestLimitExceeded" || code.starts_with("RequestLimitExceeded.") {
        // `.JobNumExceed` is the account's concurrency; the bare code and the
        // other suffixes are request-rate limits. Either way: wait, retry;
        // only the first says the account runs fewer jobs than we thought.
        let message = format!("{code}: {message}");
        return if code == "RequestLimitExceeded.JobNumExceed" {
            ProviderError::BackPressure {
                retry_after,
                message,
            }
        } else {
            ProviderError::RateLimited {
                retry_after,
                message,
            }
        };
    }
    if code.starts_with("AuthFailure") || code == "UnauthorizedOperation" {
        let message = if code == "AuthFailure.SignatureExpire" {
            format!(
                "{message} (the signature's timestamp is more than {MAX_CLOCK_SKEW_SECS} s from \
                 Tencent's clock: the host clock must be synced to within 5 minutes)"
            )
        } else {
            message
        };
        return ProviderError::Unauthorized {
            code: code_owned,
            message,
        };
    }
    if ACCOUNT_CODES.contains(&code) {
        return ProviderError::AccountExhausted {
            code: code_owned,
            message,
        };
    }
    if TRANSIENT_CODES.contains(&code) || code.starts_with("InternalError.") {
        return ProviderError::Transient(format!("{code}: {message}"));
    }
    if call == Call::Query
        && matches!(
            code,
            "FailedOperation.JobNotFound" | "FailedOperation.JobNotExist"
        )
    {
        return ProviderError::NotFound;
    }
    // Content moderation (`OperationDenied.*IllegalDetected`,
    // `FailedOperation.ModerationFailed`), bad or missing parameters
    // (`InvalidParameter*`, `MissingParameter`, `UnknownParameter`), wrong
    // region, action or version, and everything not listed above.
    ProviderError::Rejected {
        code: code_owned,
        message,
    }
}

/// Whether a job that failed at Tencent (its `JobErrorCode`/`ErrorCode`)
/// may succeed when submitted again: not after content moderation or a
/// parameter problem; yes after engine errors, timeouts and downloads that
/// failed, and after codes we do not know (the job had passed the
/// submission's checks).
fn job_error_retryable(code: &str) -> bool {
    let permanent = code.contains("IllegalDetected")
        || code.contains("Moderation")
        || code.starts_with("OperationDenied")
        || code.starts_with("InvalidParameter")
        || code.starts_with("MissingParameter")
        || code.starts_with("UnknownParameter");
    !permanent
}

fn job_failed(code: Option<String>, message: Option<String>) -> JobState {
    let code = code
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "provider_failed".to_owned());
    let message = message
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "the provider reported a failure without a reason".to_owned());
    let retryable = job_error_retryable(&code);
    JobState::Failed {
        error: TaskError::new(&code, message, retryable),
    }
}

/// An output as the dispatcher needs it. `expires_at` is the earlier of
/// `now` + the documented lifetime (the docs do not say from when it
/// counts, so it is counted from when we first see the URL) and an expiry
/// the URL states itself (COS `q-sign-time`, or an `expires` parameter).
fn output(family: Family, url: &str, now_ms: i64) -> Output {
    let documented = now_ms + family.url_lifetime().as_millis() as i64;
    let expires_at = stated_expiry_ms(url).map_or(documented, |stated| stated.min(documented));
    Output {
        url: url.to_owned(),
        content_type: content_type(family, url).to_owned(),
        bytes: None,
        expires_at: Some(expires_at),
        key: None,
        sha256: None,
        thumbnail_url: None,
    }
}

/// The expiry a signed URL carries in its query, in Unix ms: the end of a
/// COS `q-sign-time=<start>;<end>` (seconds), or an `expires`/`Expires`
/// parameter (seconds, or milliseconds when it is that large).
fn stated_expiry_ms(url: &str) -> Option<i64> {
    let parsed = reqwest::Url::parse(url).ok()?;
    parsed.query_pairs().find_map(|(k, v)| {
        if k == "q-sign-time" {
            let end: i64 = v.split_once(';')?.1.parse().ok()?;
            Some(end.saturating_mul(1000))
        } else if k.eq_ignore_ascii_case("expires") {
            let n: i64 = v.parse().ok()?;
            Some(if n < 100_000_000_000 {
                n.saturating_mul(1000)
            } else {
                n
            })
        } else {
            None
        }
    })
}

/// The content type of a result, from its URL's extension, else the usual
/// one of its family.
fn content_type(family: Family, url: &str) -> &'static str {
    let path = reqwest::Url::parse(url).map_or_else(|_| url.to_owned(), |u| u.path().to_owned());
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "avi" => "video/x-msvideo",
        _ => match family {
            Family::Image => "image/png",
            Family::Video => "video/mp4",
        },
    }
}

fn image_state(job: ImageJob, now_ms: i64) -> Result<JobState, ProviderError> {
    match job.job_status_code.as_deref() {
        Some("1") => Ok(JobState::Pending { progress: 0.0 }),
        Some("2") => Ok(JobState::Pending { progress: 0.5 }),
        Some("4") => Ok(job_failed(job.job_error_code, job.job_error_msg)),
        Some("5") => {
            let images: Vec<String> = job
                .result_image
                .unwrap_or_default()
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect();
            let details: Vec<String> = job
                .result_details
                .unwrap_or_default()
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect();
            // `ResultDetails` says per image "Success" or why it is missing.
            // Whether `ResultImage` keeps a place for a missing image is not
            // documented: only when both arrays are as long is a detail
            // taken to speak for the URL at its index; otherwise every URL
            // given is kept.
            let aligned = images.len() == details.len();
            let outputs: Vec<Output> = images
                .iter()
                .enumerate()
                .filter(|(i, url)| {
                    !url.is_empty()
                        && (!aligned
                            || details
                                .get(*i)
                                .is_none_or(|d| matches!(d.as_str(), "" | "Success")))
                })
                .map(|(_, url)| output(Family::Image, url, now_ms))
                .collect();
            if outputs.is_empty() {
                let reason = details
                    .iter()
                    .find(|d| !d.is_empty() && d.as_str() != "Success")
                    .cloned()
                    .unwrap_or_else(|| "the job finished without any image".to_owned());
                return Ok(JobState::Failed {
                    error: TaskError::new("provider_no_outputs", reason, true),
                });
            }
            Ok(JobState::Succeeded { outputs })
        }
        // A status we do not know: keep polling rather than guess.
        other => Err(ProviderError::Transient(format!(
            "unknown JobStatusCode {other:?}"
        ))),
    }
}

fn video_state(job: VideoJob, now_ms: i64) -> Result<JobState, ProviderError> {
    match job.status.as_deref() {
        Some("WAIT") => Ok(JobState::Pending { progress: 0.0 }),
        Some("RUN") => Ok(JobState::Pending { progress: 0.5 }),
        Some("FAIL") => Ok(job_failed(job.error_code, job.error_message)),
        Some("DONE") => match job.result_video_url.filter(|u| !u.is_empty()) {
            Some(url) => Ok(JobState::Succeeded {
                outputs: vec![output(Family::Video, &url, now_ms)],
            }),
            None => Ok(JobState::Failed {
                error: TaskError::new(
                    "provider_no_outputs",
                    "the job finished without ResultVideoUrl",
                    true,
                ),
            }),
        },
        // A status we do not know: keep polling rather than guess.
        other => Err(ProviderError::Transient(format!(
            "unknown Status {other:?}"
        ))),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Tencent's published example for TC3-HMAC-SHA256 (API 3.0 signing
    /// docs), checked at each step.
    #[test]
    fn signature_matches_tencents_published_example() {
        let body = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
        let sig = sign(
            "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
            "cvm",
            1_551_113_065,
            &[
                ("Content-Type", "application/json; charset=utf-8"),
                ("Host", "cvm.tencentcloudapi.com"),
            ],
            body,
        );
        assert_eq!(
            sig.payload_hash,
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            sig.canonical_request_hash,
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(sig.credential_scope, "2019-02-25/cvm/tc3_request");
        assert_eq!(sig.signed_headers, "content-type;host");
        assert_eq!(
            sig.signature,
            "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        assert_eq!(
            sig.authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/\
             tc3_request, SignedHeaders=content-type;host, \
             Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn signature_date_is_the_utc_date_of_the_timestamp() {
        // 2024-01-01 23:30 UTC is already January 2nd in Beijing.
        let sig = sign(
            "k",
            "hunyuan",
            1_704_151_800,
            &[("host", "h"), ("content-type", "c")],
            b"{}",
        );
        assert_eq!(sig.credential_scope, "2024-01-01/hunyuan/tc3_request");
    }

    fn code_of(e: &ProviderError) -> &'static str {
        match e {
            ProviderError::BackPressure { .. } => "back_pressure",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Unreachable { .. } => "unreachable",
            ProviderError::Transient(_) => "transient",
            ProviderError::Ambiguous(_) => "ambiguous",
            ProviderError::Rejected { .. } => "rejected",
            ProviderError::AccountExhausted { .. } => "account",
            ProviderError::Unauthorized { .. } => "unauthorized",
            ProviderError::NotFound => "not_found",
            ProviderError::Unsupported => "unsupported",
        }
    }

    #[test]
    fn error_codes_map_to_what_the_dispatcher_does_next() {
        let table = [
            ("RequestLimitExceeded.JobNumExceed", "back_pressure"),
            ("RequestLimitExceeded", "rate_limited"),
            ("RequestLimitExceeded.UinLimitExceeded", "rate_limited"),
            ("AuthFailure.SignatureFailure", "unauthorized"),
            ("AuthFailure.SignatureExpire", "unauthorized"),
            ("AuthFailure.SecretIdNotFound", "unauthorized"),
            ("AuthFailure.UnauthorizedOperation", "unauthorized"),
            ("FailedOperation.ResourcePackExhausted", "account"),
            ("FailedOperation.FreeResourcePackExhausted", "account"),
            ("ResourceInsufficient.ChargeResourceExhaust", "account"),
            ("ResourceUnavailable.InArrears", "account"),
            ("ResourceUnavailable.LowBalance", "account"),
            ("ResourceUnavailable.StopUsing", "account"),
            ("ResourceUnavailable.NotExist", "account"),
            ("FailedOperation.ServiceNotActivated", "account"),
            ("FailedOperation.ServiceStopArrears", "account"),
            ("ResourcesSoldOut.ChargeStatusException", "account"),
            ("FailedOperation.EngineRequestTimeout", "transient"),
            ("FailedOperation.EngineServerError", "transient"),
            ("FailedOperation.EngineServerLimitExceeded", "transient"),
            ("InternalError", "transient"),
            ("ResourceUnavailable.IsOpening", "transient"),
            ("OperationDenied.TextIllegalDetected", "rejected"),
            ("OperationDenied.ImageIllegalDetected", "rejected"),
            ("FailedOperation.ModerationFailed", "rejected"),
            ("InvalidParameter", "rejected"),
            ("InvalidParameterValue.InvalidImageFormat", "rejected"),
            ("MissingParameter", "rejected"),
            ("UnknownParameter", "rejected"),
            ("UnsupportedRegion", "rejected"),
            ("InvalidAction", "rejected"),
            ("RequestSizeLimitExceeded", "rejected"),
            ("FailedOperation.JobNotFound", "rejected"),
        ];
        for (code, want) in table {
            let got = classify_code(Call::Submit, code, "m", Duration::from_secs(1));
            assert_eq!(code_of(&got), want, "{code} on submit");
        }
        for code in ["FailedOperation.JobNotFound", "FailedOperation.JobNotExist"] {
            let got = classify_code(Call::Query, code, "m", Duration::from_secs(1));
            assert_eq!(got, ProviderError::NotFound, "{code} on query");
        }
        let expired = classify_code(
            Call::Submit,
            "AuthFailure.SignatureExpire",
            "m",
            Duration::ZERO,
        );
        assert!(expired.to_string().contains("5 minutes"), "{expired}");
    }

    #[test]
    fn job_failures_are_retryable_unless_moderation_or_parameters() {
        for code in [
            "FailedOperation.EngineServerError",
            "FailedOperation.EngineRequestTimeout",
            "FailedOperation.DownloadError",
            "FailedOperation.ImageDownloadError",
            "FailedOperation.GenerateImageFailed",
        ] {
            assert!(job_error_retryable(code), "{code}");
        }
        for code in [
            "OperationDenied.ImageIllegalDetected",
            "OperationDenied.TextIllegalDetected",
            "FailedOperation.ModerationFailed",
            "InvalidParameterValue.InvalidImageSize",
        ] {
            assert!(!job_error_retryable(code), "{code}");
        }
    }

    #[test]
    fn image_status_codes_are_strings_and_unknown_ones_keep_polling() {
        let job = |v: Value| ImageJob::deserialize(&v).unwrap();
        assert_eq!(
            image_state(job(serde_json::json!({"JobStatusCode": "1"})), 0),
            Ok(JobState::Pending { progress: 0.0 })
        );
        assert_eq!(
            image_state(job(serde_json::json!({"JobStatusCode": 2})), 0),
            Ok(JobState::Pending { progress: 0.5 })
        );
        assert!(matches!(
            image_state(job(serde_json::json!({"JobStatusCode": "3"})), 0),
            Err(ProviderError::Transient(_))
        ));
        let failed = image_state(
            job(serde_json::json!({"JobStatusCode": "4",
                "JobErrorCode": "OperationDenied.ImageIllegalDetected", "JobErrorMsg": "no"})),
            0,
        );
        assert_eq!(
            failed,
            Ok(JobState::Failed {
                error: TaskError::new("OperationDenied.ImageIllegalDetected", "no", false)
            })
        );
        let done = image_state(
            job(serde_json::json!({"JobStatusCode": "5",
                "ResultImage": ["https://x/a.jpg", "", "https://x/c.png"],
                "ResultDetails": ["Success", "blocked", "Success"]})),
            1000,
        )
        .unwrap();
        let JobState::Succeeded { outputs } = done else {
            panic!("{done:?}")
        };
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[0].content_type, "image/jpeg");
        assert_eq!(outputs[1].content_type, "image/png");
        assert_eq!(outputs[0].expires_at, Some(1000 + 3_600_000));

        // Only the URLs that made it, with a detail for every image asked
        // for: the details cannot be matched to URLs, so all URLs are kept.
        let compact = image_state(
            job(
                serde_json::json!({"JobStatusCode": "5", "ResultImage": ["https://x/b.png"],
                "ResultDetails": ["blocked", "Success"], "JobErrorCode": null}),
            ),
            0,
        );
        assert!(
            matches!(&compact, Ok(JobState::Succeeded { outputs }) if outputs.len() == 1),
            "{compact:?}"
        );
        let nothing = image_state(
            job(
                serde_json::json!({"JobStatusCode": "5", "ResultImage": [null],
                "ResultDetails": ["blocked"]}),
            ),
            0,
        );
        assert_eq!(
            nothing,
            Ok(JobState::Failed {
                error: TaskError::new("provider_no_outputs", "blocked", true)
            })
        );
        let null_arrays = image_state(
            job(
                serde_json::json!({"JobStatusCode": "5", "ResultImage": null,
                "ResultDetails": null}),
            ),
            0,
        );
        assert!(
            matches!(null_arrays, Ok(JobState::Failed { .. })),
            "{null_arrays:?}"
        );
    }

    #[test]
    fn a_url_that_states_an_earlier_expiry_wins() {
        let cos = "https://b.cos.ap-guangzhou.myqcloud.com/a.png?q-sign-algorithm=sha1&q-sign-time=100;200";
        assert_eq!(output(Family::Image, cos, 0).expires_at, Some(200_000));
        let ms = "http://127.0.0.1:1/files/j-0.png?expires=1700000000000";
        assert_eq!(
            output(Family::Image, ms, 1_699_999_000_000).expires_at,
            Some(1_700_000_000_000)
        );
        let late = "http://h/v.mp4?Expires=99999999999";
        assert_eq!(
            output(Family::Video, late, 0).expires_at,
            Some(24 * 3_600_000)
        );
        assert_eq!(output(Family::Video, late, 0).content_type, "video/mp4");
    }

    #[test]
    fn task_ids_carry_the_family() {
        assert_eq!(Family::Image.task_id("1-2-3-0"), "image:1-2-3-0");
        assert_eq!(
            Family::parse_task_id("video:1234"),
            Some((Family::Video, "1234"))
        );
        assert_eq!(Family::parse_task_id("1234"), None);
        assert_eq!(Family::parse_task_id("audio:1"), None);
        assert_eq!(Family::parse_task_id("image:"), None);
    }

    #[test]
    fn debug_output_masks_the_secrets() {
        let mut settings = HunyuanSettings::new("AKIDsecretid", "verysecretkey");
        settings.base_url = Some("http://127.0.0.1:9/".to_owned());
        let shown = format!(
            "{settings:?} {:?}",
            Hunyuan::new("h", settings.clone()).unwrap()
        );
        assert!(!shown.contains("verysecretkey"), "{shown}");
        assert!(!shown.contains("AKIDsecretid"), "{shown}");
        assert!(shown.contains("AKID***"), "{shown}");
    }

    #[test]
    fn base_url_sets_the_signed_host() {
        let t = Target::parse("http://127.0.0.1:8123").unwrap();
        assert_eq!(t.host, "127.0.0.1:8123");
        let t = Target::parse("https://hunyuan.tencentcloudapi.com/").unwrap();
        assert_eq!(t.host, "hunyuan.tencentcloudapi.com");
        assert!(Target::parse("ftp://x").is_err());
    }
}
