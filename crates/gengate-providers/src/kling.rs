//! The Kling (可灵) adapter: text→video, image→video and image generation
//! on Kling's `/v1` REST API (providers.md §3).
//!
//! It owns the wire format: the HS256 JWT it signs every request with (cached
//! and re-minted before it runs out), the `{code, message, request_id, data}`
//! envelope, the operation family a task belongs to (kept in the provider task
//! id, `<family>:<task_id>`, because a task can only be queried under the path
//! it was created on), and the classification of Kling's error codes into what
//! the dispatcher does next. Rendering the request fields is the model
//! template's job: `req.params` is sent as is, plus `external_task_id` and
//! `callback_url`, which this adapter owns.
//!
//! Kling answers errors with a non-2xx status *and* a `code`; the code
//! decides (1102 "resource pack used up" and 1303 "concurrency full" are both
//! HTTP 429), the status only when the code is unknown.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gengate_core::{ModelKind, Output, TaskError};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::{self, lenient_string, read_answer, snippet};
use crate::{
    CallbackHint, FollowRef, JobState, Provider, ProviderError, SubmitRequest, classify_query,
    classify_reqwest, default_client,
};

/// Kling's global API host (the older `https://api.klingai.com` still works;
/// the China site is `https://api-beijing.klingai.com`).
pub const DEFAULT_BASE_URL: &str = "https://api-singapore.klingai.com";

/// Outputs are deleted this long after the task was created (§3.9).
const OUTPUT_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;
/// The largest page the list endpoint serves (§3.4).
const LIST_PAGE_SIZE: usize = 500;
/// Pages `find_by_reference` scans before it gives up without an answer: a
/// lost submission is among the account's most recent tasks.
const LIST_MAX_PAGES: usize = 10;
/// The least a rate or concurrency refusal makes us wait (§3.8: "back off ≥1 s").
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// `nbf` is set this far in the past so a server clock slightly behind ours
/// still accepts a fresh token (§3.2).
const NOT_BEFORE_SKEW_SECS: i64 = 5;

/// How to reach one Kling account.
#[derive(Clone)]
pub struct KlingSettings {
    /// API base URL, e.g. [`DEFAULT_BASE_URL`].
    pub base_url: String,
    /// The AccessKey: the JWT's `iss`.
    pub access_key: String,
    /// The SecretKey the JWT is signed with.
    pub secret_key: String,
    /// The client every call goes through (`gengate_net::Outbound::provider`).
    pub client: reqwest::Client,
    /// How long to wait after a rate or concurrency refusal (at least 1 s).
    pub retry_after: Duration,
    /// Lifetime of the JWTs we mint (30 minutes in Kling's example; whether
    /// longer is accepted is unconfirmed).
    pub token_ttl: Duration,
}

impl KlingSettings {
    /// Settings for the global site with the defaults: 60 s requests (the
    /// public TLS roots), 2 s back-off after a refusal, 30-minute tokens.
    pub fn new(access_key: &str, secret_key: &str) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            client: default_client(Duration::from_secs(60)),
            retry_after: Duration::from_secs(2),
            token_ttl: Duration::from_secs(30 * 60),
        }
    }
}

impl fmt::Debug for KlingSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KlingSettings")
            .field("base_url", &self.base_url)
            .field("access_key", &wire::masked(&self.access_key))
            .field("secret_key", &"***")
            .field("retry_after", &self.retry_after)
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

/// The operation a task was created with; it must be queried under the same
/// collection path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Text2Video,
    Image2Video,
    Image,
}

impl Family {
    const ALL: [Family; 3] = [Family::Text2Video, Family::Image2Video, Family::Image];

    /// The endpoint name in model configs, and the prefix of our task ids.
    fn name(self) -> &'static str {
        match self {
            Family::Text2Video => "text2video",
            Family::Image2Video => "image2video",
            Family::Image => "image",
        }
    }

    /// The collection path: POST creates, GET lists, GET `/{task_id}` queries.
    fn path(self) -> &'static str {
        match self {
            Family::Text2Video => "/v1/videos/text2video",
            Family::Image2Video => "/v1/videos/image2video",
            Family::Image => "/v1/images/generations",
        }
    }

    fn parse(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    fn of(endpoint: Option<&str>, kind: ModelKind) -> Result<Family, ProviderError> {
        match endpoint {
            None => Ok(match kind {
                ModelKind::Image => Family::Image,
                ModelKind::Video => Family::Text2Video,
            }),
            Some(name) => Family::parse(name).ok_or(ProviderError::Unsupported),
        }
    }

    fn tag(self, task_id: &str) -> String {
        format!("{}:{task_id}", self.name())
    }

    fn untag(provider_task_id: &str) -> Option<(Family, &str)> {
        let (family, id) = provider_task_id.split_once(':')?;
        Some((Family::parse(family)?, id)).filter(|(_, id)| !id.is_empty())
    }
}

/// What a request does, which decides how an unusable answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// Creates a task: an unreadable answer may hide a task we pay for.
    Create,
    /// Queries one task by id: "task not found" codes mean [`ProviderError::NotFound`].
    Query,
    /// Any other read (lists, lookups by reference).
    Read,
}

struct Token {
    value: String,
    /// Unix seconds.
    exp: i64,
}

/// The Kling adapter for one account.
pub struct Kling {
    name: String,
    base_url: String,
    access_key: String,
    secret_key: String,
    retry_after: Duration,
    token_ttl_secs: i64,
    client: reqwest::Client,
    /// The JWT in use, shared by all requests until it nears expiry.
    token: Mutex<Option<Token>>,
}

impl fmt::Debug for Kling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kling")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("access_key", &wire::masked(&self.access_key))
            .field("secret_key", &"***")
            .field("retry_after", &self.retry_after)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Kling {
    /// # Errors
    /// When a setting is unusable (empty key, base URL that is not http(s),
    /// token lifetime under 10 s).
    pub fn new(name: &str, settings: KlingSettings) -> Result<Self, String> {
        let base_url = settings.base_url.trim_end_matches('/').to_owned();
        match Url::parse(&base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(format!("kling base_url {base_url:?} is not an http(s) URL")),
        }
        if settings.access_key.trim().is_empty() || settings.secret_key.trim().is_empty() {
            return Err("kling access_key and secret_key must not be empty".to_owned());
        }
        if settings.token_ttl < Duration::from_secs(10) {
            return Err("kling token_ttl must be at least 10s".to_owned());
        }
        Ok(Self {
            name: name.to_owned(),
            base_url,
            access_key: settings.access_key,
            secret_key: settings.secret_key,
            retry_after: settings.retry_after.max(MIN_RETRY_AFTER),
            token_ttl_secs: i64::try_from(settings.token_ttl.as_secs()).unwrap_or(i64::MAX / 2),
            client: settings.client,
            token: Mutex::new(None),
        })
    }

    /// The bearer token: the cached one while more than a sixth of its
    /// lifetime (at most 5 minutes) remains, otherwise a fresh one.
    fn bearer(&self, fresh: bool) -> String {
        let now = unix_secs();
        let margin = (self.token_ttl_secs / 6).min(300);
        let mut cached = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = cached.as_ref().filter(|t| !fresh && t.exp - now > margin) {
            return t.value.clone();
        }
        let value = mint_jwt(&self.access_key, &self.secret_key, now, self.token_ttl_secs);
        *cached = Some(Token {
            value: value.clone(),
            exp: now + self.token_ttl_secs,
        });
        value
    }

    fn url(&self, path: &str, task_id: Option<&str>) -> Result<Url, ProviderError> {
        let mut url = Url::parse(&format!("{}{path}", self.base_url))
            .map_err(|e| ProviderError::Transient(format!("bad kling URL: {e}")))?;
        if let Some(id) = task_id {
            url.path_segments_mut()
                .map_err(|()| ProviderError::Transient("bad kling base URL".to_owned()))?
                .push(id);
        }
        Ok(url)
    }

    /// Sends one request and returns the envelope's `data`. A refused token
    /// (401 with 1000–1004) is re-minted and the request sent once more:
    /// a refusal at the door never took effect, so repeating it is safe.
    async fn call(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&Value>,
        call: Call,
    ) -> Result<Value, ProviderError> {
        let mut fresh = false;
        loop {
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .bearer_auth(self.bearer(fresh));
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let resp = request.send().await.map_err(|e| match call {
                Call::Create => classify_reqwest(&e),
                Call::Query | Call::Read => classify_query(&e),
            })?;
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let (status, bytes) = read_answer(resp).await.map_err(|e| match (call, e) {
                (Call::Query | Call::Read, ProviderError::Ambiguous(m)) => {
                    ProviderError::Transient(m)
                }
                (_, e) => e,
            })?;
            let retry_after = retry_after.unwrap_or_default().max(self.retry_after);
            match interpret(status, &bytes, call, retry_after) {
                Err(ProviderError::Unauthorized { code, .. }) if !fresh && is_token_code(&code) => {
                    tracing::debug!(provider = %self.name, code, "kling refused our token; minting a fresh one");
                    fresh = true;
                }
                other => return other,
            }
        }
    }

    /// Page `page` (from 1, newest first) of `family`'s task list.
    async fn list_page(
        &self,
        family: Family,
        page: usize,
        size: usize,
    ) -> Result<Vec<Value>, ProviderError> {
        let query = [
            ("pageNum", page.to_string()),
            ("pageSize", size.to_string()),
        ];
        let data = self
            .call(
                Method::GET,
                self.url(family.path(), None)?,
                &query,
                None,
                Call::Read,
            )
            .await?;
        match data {
            Value::Array(items) => Ok(items),
            // Not even `null` is read as "no tasks": a lookup that answers
            // "none" makes the dispatcher submit again.
            _ => Err(ProviderError::Transient(
                "kling task list is not an array".to_owned(),
            )),
        }
    }
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
}

/// An HS256 JWT as Kling wants it (§3.2): `iss` = AccessKey, valid from five
/// seconds ago for `ttl_secs`, signed with the SecretKey.
fn mint_jwt(access_key: &str, secret_key: &str, now_secs: i64, ttl_secs: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "iss": access_key,
        "exp": now_secs + ttl_secs,
        "nbf": now_secs - NOT_BEFORE_SKEW_SECS,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let signature = wire::hmac_sha256(secret_key.as_bytes(), signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Codes a fresh token may cure (auth failed, empty, invalid, not yet valid,
/// expired).
fn is_token_code(code: &str) -> bool {
    matches!(code, "1000" | "1001" | "1002" | "1003" | "1004")
}

/// The envelope's code (a number; a numeric string is taken too), message
/// and data, or `None` when the body is not Kling's envelope.
fn envelope(body: &[u8]) -> Option<(i64, String, Value)> {
    let Value::Object(mut obj) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let code = match obj.get("code")? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let message = obj
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let data = obj.remove("data").unwrap_or(Value::Null);
    Some((code, message, data))
}

/// Reads an answer: `data` on success, otherwise the classified failure.
fn interpret(
    status: u16,
    body: &[u8],
    call: Call,
    retry_after: Duration,
) -> Result<Value, ProviderError> {
    let success = (200..300).contains(&status);
    match envelope(body) {
        Some((0, _, data)) if success => Ok(data),
        Some((code, message, _)) if code != 0 => {
            Err(classify_code(code, message, status, call, retry_after))
        }
        // Not Kling's envelope (a proxy's page, a truncated body) or an
        // envelope that contradicts its status.
        _ => {
            let what = format!("kling answered HTTP {status}: {}", snippet(body));
            Err(if status == 429 {
                ProviderError::BackPressure {
                    retry_after,
                    message: what,
                }
            } else if call == Call::Create && (success || status == 504) {
                // A 2xx we cannot read, or a gateway that gave up waiting,
                // may stand for a task that was created.
                ProviderError::Ambiguous(what)
            } else {
                ProviderError::Transient(what)
            })
        }
    }
}

/// Kling's business codes (§3.8) by what the dispatcher does next.
fn classify_code(
    code: i64,
    message: String,
    status: u16,
    call: Call,
    retry_after: Duration,
) -> ProviderError {
    let code_s = code.to_string();
    match code {
        // Auth failed / empty / invalid / not yet valid / expired (after
        // the one re-mint), and the IP whitelist: an operator must act.
        1000..=1004 | 1304 => ProviderError::Unauthorized {
            code: code_s,
            message,
        },
        // Account exception, arrears, resource pack used up or expired.
        1100..=1102 => ProviderError::AccountExhausted {
            code: code_s,
            message,
        },
        // "Task not found" ([3p] 1201; 1203 "resource missing") on a
        // single-task query.
        1201 | 1203 if call == Call::Query => ProviderError::NotFound,
        // The account already has a task with this external_task_id: our
        // own earlier submission, whose answer was lost. Reconcile by
        // reference instead of failing the task.
        1201 if call == Call::Create && is_duplicate_reference(&message) => {
            ProviderError::Ambiguous(format!(
                "kling already has a task with this external_task_id ({code}: {message})"
            ))
        }
        // No permission for the API/model, bad parameters, wrong method,
        // missing model, platform policy, content safety: permanent for this
        // request.
        1103 | 1200..=1203 | 1300 | 1301 => ProviderError::Rejected {
            code: code_s,
            message,
        },
        // Rate limit; concurrency over the resource pack's limit.
        1303 => ProviderError::BackPressure {
            retry_after,
            message: format!("{code}: {message}"),
        },
        1302 => ProviderError::RateLimited {
            retry_after,
            message: format!("{code}: {message}"),
        },
        // Internal error, maintenance, backlog timeout.
        5000..=5002 => ProviderError::Transient(format!("kling {code}: {message}")),
        _ => match status {
            401 => ProviderError::Unauthorized {
                code: code_s,
                message,
            },
            429 => ProviderError::BackPressure {
                retry_after,
                message: format!("{code}: {message}"),
            },
            400..=499 if call == Call::Query && status == 404 => ProviderError::NotFound,
            400..=499 => ProviderError::Rejected {
                code: code_s,
                message,
            },
            _ => ProviderError::Transient(format!("kling HTTP {status} code {code}: {message}")),
        },
    }
}

/// Whether a 1201 says the external_task_id is taken (rather than invalid).
fn is_duplicate_reference(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("external_task_id")
        && ["exist", "duplicat", "already", "repeat", "unique", "used"]
            .iter()
            .any(|w| m.contains(w))
}

#[derive(Deserialize)]
struct WireTask {
    #[serde(default, deserialize_with = "lenient_string")]
    task_id: Option<String>,
    #[serde(default)]
    task_status: Option<String>,
    #[serde(default)]
    task_status_msg: Option<String>,
    #[serde(default)]
    task_info: Option<WireTaskInfo>,
    #[serde(default, deserialize_with = "lenient_string")]
    created_at: Option<String>,
    #[serde(default)]
    task_result: Option<WireResult>,
}

#[derive(Deserialize)]
struct WireTaskInfo {
    #[serde(default, deserialize_with = "lenient_string")]
    external_task_id: Option<String>,
}

#[derive(Deserialize)]
struct WireResult {
    #[serde(default)]
    videos: Option<Vec<WireFile>>,
    #[serde(default)]
    images: Option<Vec<WireFile>>,
}

#[derive(Deserialize)]
struct WireFile {
    #[serde(default)]
    url: Option<String>,
}

/// Where a queried task is.
fn job_state(task: WireTask) -> Result<JobState, ProviderError> {
    let status = task.task_status.unwrap_or_default();
    match status.as_str() {
        "submitted" => Ok(JobState::Pending { progress: 0.0 }),
        "processing" => Ok(JobState::Pending { progress: 0.5 }),
        // `succeed` is the /v1 spelling; `succeeded` is the newer API's,
        // taken too in case a /v1 path starts answering in it.
        "succeed" | "succeeded" => {
            let expires_at = task
                .created_at
                .and_then(|c| c.trim().parse::<i64>().ok())
                // A seconds timestamp would put the expiry in 1970.
                .map(|c| {
                    if c < 100_000_000_000 {
                        c.saturating_mul(1000)
                    } else {
                        c
                    }
                })
                .map(|c| c.saturating_add(OUTPUT_LIFETIME_MS));
            let result = task.task_result.unwrap_or(WireResult {
                videos: None,
                images: None,
            });
            let files = |list: Option<Vec<WireFile>>, default: &'static str| {
                list.unwrap_or_default()
                    .into_iter()
                    .filter_map(|f| f.url.filter(|u| !u.is_empty()))
                    .map(move |url| Output {
                        content_type: content_type_of(&url, default).to_owned(),
                        url,
                        bytes: None,
                        expires_at,
                        key: None,
                        sha256: None,
                        thumbnail_url: None,
                    })
            };
            let outputs: Vec<Output> = files(result.videos, "video/mp4")
                .chain(files(result.images, "image/png"))
                .collect();
            if outputs.is_empty() {
                return Ok(JobState::Failed {
                    error: TaskError::new(
                        "provider_no_outputs",
                        "kling reported success without any output",
                        true,
                    ),
                });
            }
            Ok(JobState::Succeeded { outputs })
        }
        "failed" => {
            let message = task
                .task_status_msg
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| "kling reported a failure without a reason".to_owned());
            let policy = is_policy_failure(&message);
            let code = if policy {
                "provider_content_policy"
            } else {
                "provider_failed"
            };
            Ok(JobState::Failed {
                error: TaskError::new(code, message, !policy),
            })
        }
        other => Err(ProviderError::Transient(format!(
            "unknown kling task status {other:?}"
        ))),
    }
}

/// Whether a failure reason is a content or policy verdict, which a new
/// submission of the same request would get again. Kling states no codes for
/// task failures, only text, so this reads the text; anything else is taken
/// as a worker failure worth another attempt.
fn is_policy_failure(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "risk",
        "policy",
        "safety",
        "sensitive",
        "moderation",
        "violat",
        "inappropriate",
        "illegal",
        "prohibit",
        "censor",
        "违规",
        "敏感",
        "审核",
        "风控",
        "安全",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// A content type from the URL's extension, or `default`.
fn content_type_of(url: &str, default: &'static str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let ext = file
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "avi" => "video/x-msvideo",
        _ => default,
    }
}

/// The task id of the task in `data` (one task or a list of them) whose
/// `task_info.external_task_id` is `reference`; no other task is trusted.
fn pick_reference(data: &Value, reference: &str) -> Option<String> {
    let matches = |task: &Value| -> Option<String> {
        let task = WireTask::deserialize(task).ok()?;
        let ext = task.task_info?.external_task_id?;
        (ext == reference)
            .then_some(task.task_id?)
            .filter(|id| !id.is_empty())
    };
    match data {
        Value::Array(items) => items.iter().find_map(matches),
        Value::Object(_) => matches(data),
        _ => None,
    }
}

/// Slots `params` holds: an image job one per image (`n`, 1–9).
fn image_slots(params: &Value) -> usize {
    let n = match params.get("n") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    n.map_or(1, |n| usize::try_from(n.clamp(1, 9)).unwrap_or(1))
}

#[async_trait]
impl Provider for Kling {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, req: SubmitRequest<'_>) -> Result<String, ProviderError> {
        let family = Family::of(req.endpoint, req.kind)?;
        let Value::Object(mut body) = req.params.clone() else {
            return Err(ProviderError::Rejected {
                code: "invalid_params".to_owned(),
                message: "the rendered kling request is not a JSON object".to_owned(),
            });
        };
        body.insert("external_task_id".to_owned(), json!(req.reference));
        match req.callback_url {
            Some(url) => body.insert("callback_url".to_owned(), json!(url)),
            None => body.remove("callback_url"),
        };
        let body = Value::Object(body);
        tracing::debug!(provider = %self.name, task.id = %req.task_id, family = family.name(), "submitting task {} to kling", req.task_id);
        let data = self
            .call(
                Method::POST,
                self.url(family.path(), None)?,
                &[],
                Some(&body),
                Call::Create,
            )
            .await?;
        let task = WireTask::deserialize(&data)
            .map_err(|e| ProviderError::Ambiguous(format!("unreadable kling task: {e}")))?;
        match task.task_id.filter(|id| !id.is_empty()) {
            Some(id) => Ok(family.tag(&id)),
            None => Err(ProviderError::Ambiguous(
                "kling accepted the task without a task_id".to_owned(),
            )),
        }
    }

    async fn poll(&self, task: FollowRef<'_>) -> Result<JobState, ProviderError> {
        let Some((family, id)) = Family::untag(task.provider_task_id) else {
            // Not an id this adapter made; it cannot be queried, and
            // answering NotFound would resubmit a task that may exist.
            return Err(ProviderError::Rejected {
                code: "bad_task_id".to_owned(),
                message: format!(
                    "{:?} is not a kling task id (<family>:<task_id>)",
                    task.provider_task_id
                ),
            });
        };
        let data = self
            .call(
                Method::GET,
                self.url(family.path(), Some(id))?,
                &[],
                None,
                Call::Query,
            )
            .await?;
        let wire = WireTask::deserialize(&data)
            .map_err(|e| ProviderError::Transient(format!("unreadable kling task: {e}")))?;
        if wire.task_id.as_deref().is_some_and(|got| got != id) {
            return Err(ProviderError::Transient(
                "kling answered a query with another task".to_owned(),
            ));
        }
        job_state(wire)
    }

    /// Kling has no cancel API: stopping only stops our polling.
    async fn cancel(&self, _task: FollowRef<'_>) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported)
    }

    /// How `external_task_id` travels on a query is undocumented, so every
    /// reading is covered: the filtered query may answer one task, a list, or
    /// a page that ignores the filter; only a task carrying our reference is
    /// trusted. Without one, the family's list is scanned (newest pages
    /// first) and `Ok(None)` — "resubmit" — is only answered once the list
    /// has ended without it. Anything less certain is an error.
    async fn find_by_reference(
        &self,
        req: SubmitRequest<'_>,
    ) -> Result<Option<String>, ProviderError> {
        let family = Family::of(req.endpoint, req.kind)?;
        let query = [("external_task_id", req.reference.to_owned())];
        match self
            .call(
                Method::GET,
                self.url(family.path(), None)?,
                &query,
                None,
                Call::Read,
            )
            .await
        {
            Ok(data) => {
                if let Some(id) = pick_reference(&data, req.reference) {
                    return Ok(Some(family.tag(&id)));
                }
            }
            // "Not found", or the parameter is not taken on this path:
            // either way the list decides.
            Err(ProviderError::Rejected { .. } | ProviderError::NotFound) => {}
            Err(e) => return Err(e),
        }
        for page in 1..=LIST_MAX_PAGES {
            let items = self.list_page(family, page, LIST_PAGE_SIZE).await?;
            let ended = items.len() < LIST_PAGE_SIZE;
            if let Some(id) = pick_reference(&Value::Array(items), req.reference) {
                return Ok(Some(family.tag(&id)));
            }
            if ended {
                return Ok(None);
            }
        }
        Err(ProviderError::Transient(format!(
            "no kling task with this reference among the {} newest; cannot tell whether it exists",
            LIST_MAX_PAGES * LIST_PAGE_SIZE
        )))
    }

    fn slots(&self, req: &SubmitRequest<'_>) -> usize {
        match Family::of(req.endpoint, req.kind) {
            Ok(Family::Image) => image_slots(req.params),
            _ => 1,
        }
    }

    fn supports_callbacks(&self) -> bool {
        true
    }

    /// Kling posts the bare task object on every status change; an envelope
    /// around it (`{code, data: task}`) is read too.
    fn parse_callback(&self, body: &[u8]) -> Result<CallbackHint, ProviderError> {
        let refuse = |why: &str| ProviderError::Rejected {
            code: "not_a_callback".to_owned(),
            message: format!("not a kling callback: {why}"),
        };
        let value: Value = serde_json::from_slice(body).map_err(|_| refuse("not JSON"))?;
        let task_value = match value.get("data") {
            Some(data) if value.get("task_id").is_none() && data.is_object() => data,
            _ => &value,
        };
        // (serde would read an array positionally into the struct)
        if !task_value.is_object() {
            return Err(refuse("not a JSON object"));
        }
        let task = WireTask::deserialize(task_value).map_err(|_| refuse("not a task object"))?;
        let id = task
            .task_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| refuse("no task_id"))?;
        let status = task.task_status.ok_or_else(|| refuse("no task_status"))?;
        Ok(CallbackHint {
            provider_task_id: id,
            finished: matches!(status.as_str(), "succeed" | "succeeded" | "failed"),
        })
    }

    /// Lists one text→video task: authenticated, free, and outside the 1 QPS
    /// limit of the resource-pack endpoint. An account that may not use the
    /// video API (1103) is tried on the image list.
    async fn check_account(&self) -> Result<(), ProviderError> {
        match self.list_page(Family::Text2Video, 1, 1).await {
            Err(ProviderError::Rejected { code, .. }) if code == "1103" => {
                self.list_page(Family::Image, 1, 1).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn token_is_an_hs256_jwt_kling_accepts() {
        let jwt = mint_jwt("ak-1", "sk-1", 1_700_000_000, 1800);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(decode(parts[0]), json!({"alg": "HS256", "typ": "JWT"}));
        assert_eq!(
            decode(parts[1]),
            json!({"iss": "ak-1", "exp": 1_700_001_800, "nbf": 1_699_999_995})
        );
        let signature = wire::hmac_sha256(b"sk-1", format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert_eq!(parts[2], URL_SAFE_NO_PAD.encode(signature));
        assert!(!jwt.contains('=') && !jwt.contains('+') && !jwt.contains('/'));
    }

    fn adapter(ttl: Duration) -> Kling {
        let mut s = KlingSettings::new("ak", "sk");
        s.base_url = "http://127.0.0.1:9".to_owned();
        s.token_ttl = ttl;
        Kling::new("kling", s).unwrap()
    }

    #[test]
    fn token_is_reused_until_a_sixth_of_its_life_remains() {
        let k = adapter(Duration::from_secs(1800));
        let first = k.bearer(false);
        assert_eq!(k.bearer(false), first);
        let claims = decode(first.split('.').nth(1).unwrap());
        let now = unix_secs();
        let exp = claims["exp"].as_i64().unwrap();
        assert!((now + 1795..=now + 1800).contains(&exp));
        // Close to expiry: replaced.
        k.token.lock().unwrap().as_mut().unwrap().exp = now + 299;
        let second = k.bearer(false);
        assert_ne!(second, "");
        assert!(k.token.lock().unwrap().as_ref().unwrap().exp >= now + 1800);
        // A fresh one on demand.
        k.token.lock().unwrap().as_mut().unwrap().value = "old".to_owned();
        assert_ne!(k.bearer(true), "old");
    }

    #[test]
    fn settings_print_masked() {
        let s = KlingSettings::new("AKabcdefgh", "very-secret");
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("AKabcdefgh"));
        assert!(shown.contains(&wire::masked("AKabcdefgh")) && shown.contains("sha256 "));
        let k = Kling::new("kling", s).unwrap();
        assert!(!format!("{k:?}").contains("very-secret"));
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut s = KlingSettings::new("ak", "");
        assert!(Kling::new("k", s.clone()).is_err());
        s.secret_key = "sk".to_owned();
        s.base_url = "ftp://x".to_owned();
        assert!(Kling::new("k", s.clone()).is_err());
        s.base_url = DEFAULT_BASE_URL.to_owned();
        s.token_ttl = Duration::from_secs(1);
        assert!(Kling::new("k", s).is_err());
    }

    fn err(status: u16, code: i64, message: &str, call: Call) -> ProviderError {
        let body = json!({"code": code, "message": message, "request_id": "r", "data": null});
        interpret(
            status,
            body.to_string().as_bytes(),
            call,
            Duration::from_secs(1),
        )
        .unwrap_err()
    }

    #[test]
    fn codes_decide_not_statuses() {
        assert!(matches!(
            err(429, 1102, "pack used up", Call::Create),
            ProviderError::AccountExhausted { .. }
        ));
        assert!(matches!(
            err(429, 1303, "parallel", Call::Create),
            ProviderError::BackPressure { .. }
        ));
        assert_eq!(
            err(400, 1201, "task not found", Call::Query),
            ProviderError::NotFound
        );
        assert_eq!(
            err(404, 1203, "not found", Call::Query),
            ProviderError::NotFound
        );
        assert!(matches!(
            err(400, 1201, "external_task_id already exists", Call::Create),
            ProviderError::Ambiguous(_)
        ));
        assert!(matches!(
            err(400, 1201, "external_task_id too long", Call::Create),
            ProviderError::Rejected { .. }
        ));
        assert!(matches!(
            err(400, 1201, "bad", Call::Read),
            ProviderError::Rejected { .. }
        ));
        assert!(matches!(
            err(503, 5001, "maintenance", Call::Create),
            ProviderError::Transient(_)
        ));
        assert!(matches!(
            err(401, 1099, "new auth code", Call::Create),
            ProviderError::Unauthorized { .. }
        ));
    }

    #[test]
    fn unreadable_answers_depend_on_what_was_asked() {
        let html = b"<html>maintenance</html>";
        let d = Duration::from_secs(1);
        assert!(matches!(
            interpret(200, html, Call::Create, d),
            Err(ProviderError::Ambiguous(_))
        ));
        assert!(matches!(
            interpret(200, html, Call::Query, d),
            Err(ProviderError::Transient(_))
        ));
        assert!(matches!(
            interpret(502, html, Call::Create, d),
            Err(ProviderError::Transient(_))
        ));
        assert!(matches!(
            interpret(504, html, Call::Create, d),
            Err(ProviderError::Ambiguous(_))
        ));
        assert!(matches!(
            interpret(429, html, Call::Create, d),
            Err(ProviderError::BackPressure { .. })
        ));
        let ok = json!({"code": 0, "message": "SUCCEED", "data": {"task_id": "1"}});
        assert_eq!(
            interpret(200, ok.to_string().as_bytes(), Call::Create, d).unwrap(),
            json!({"task_id": "1"})
        );
    }

    #[test]
    fn reference_is_trusted_only_on_a_task_that_carries_it() {
        let task =
            |id: &str, ext: &str| json!({"task_id": id, "task_info": {"external_task_id": ext}});
        // One task object.
        assert_eq!(
            pick_reference(&task("7", "ref-a"), "ref-a").as_deref(),
            Some("7")
        );
        assert_eq!(pick_reference(&task("7", "ref-b"), "ref-a"), None);
        // A filtered list, or a page of recent tasks that ignored the filter.
        let page = json!([task("1", "x"), task("2", "ref-a"), task("3", "y")]);
        assert_eq!(pick_reference(&page, "ref-a").as_deref(), Some("2"));
        assert_eq!(pick_reference(&json!([task("1", "x")]), "ref-a"), None);
        assert_eq!(
            pick_reference(&json!([{"task_id": "9", "task_info": {}}]), "ref-a"),
            None
        );
        assert_eq!(pick_reference(&Value::Null, "ref-a"), None);
    }

    #[test]
    fn task_states_follow_the_v1_spelling() {
        let state = |v: Value| job_state(serde_json::from_value(v).unwrap());
        assert_eq!(
            state(json!({"task_status": "submitted"})).unwrap(),
            JobState::Pending { progress: 0.0 }
        );
        assert_eq!(
            state(json!({"task_status": "processing"})).unwrap(),
            JobState::Pending { progress: 0.5 }
        );
        let done = state(json!({"task_status": "succeed", "created_at": 1_700_000_000_000i64,
            "task_result": {"videos": [{"id": "v", "url": "https://x/a.mp4?sig=1", "duration": "5"}]}}))
        .unwrap();
        assert_eq!(
            done,
            JobState::Succeeded {
                outputs: vec![Output {
                    url: "https://x/a.mp4?sig=1".to_owned(),
                    content_type: "video/mp4".to_owned(),
                    bytes: None,
                    expires_at: Some(1_700_000_000_000 + OUTPUT_LIFETIME_MS),
                    key: None,
                    sha256: None,
                    thumbnail_url: None,
                }]
            }
        );
        let images = state(json!({"task_status": "succeeded", "created_at": "1700000000000",
            "task_result": {"images": [{"index": 0, "url": "https://x/a.jpg"}, {"index": 1, "url": "https://x/b"}]}}))
        .unwrap();
        let JobState::Succeeded { outputs } = images else {
            panic!("not a success")
        };
        assert_eq!(outputs[0].content_type, "image/jpeg");
        assert_eq!(outputs[1].content_type, "image/png");
        let JobState::Failed { error } =
            state(json!({"task_status": "failed", "task_status_msg": "Failure to pass the risk control system"})).unwrap()
        else {
            panic!("not a failure")
        };
        assert!(!error.retryable);
        let JobState::Failed { error } =
            state(json!({"task_status": "failed", "task_status_msg": "internal error"})).unwrap()
        else {
            panic!("not a failure")
        };
        assert!(error.retryable);
        assert!(matches!(
            state(json!({"task_status": "paused"})),
            Err(ProviderError::Transient(_))
        ));
    }

    #[test]
    fn callbacks_are_bare_task_objects() {
        let k = adapter(Duration::from_secs(1800));
        let hint = k
            .parse_callback(br#"{"task_id":"88","task_status":"processing","task_info":{}}"#)
            .unwrap();
        assert_eq!(hint.provider_task_id, "88");
        assert!(!hint.finished);
        assert!(hint.is_about("text2video:88"));
        assert!(
            k.parse_callback(br#"{"task_id":"88","task_status":"succeed"}"#)
                .unwrap()
                .finished
        );
        assert!(
            k.parse_callback(br#"{"code":0,"data":{"task_id":"88","task_status":"failed"}}"#)
                .unwrap()
                .finished
        );
        for foreign in [
            &br#"{"event":"TASK_END","taskId":"1","eventData":"{}"}"#[..],
            b"not json",
            b"[1,2]",
            br#"{"task_id":"","task_status":"succeed"}"#,
        ] {
            assert!(matches!(
                k.parse_callback(foreign),
                Err(ProviderError::Rejected { .. })
            ));
        }
    }

    #[test]
    fn ids_carry_their_family() {
        assert_eq!(
            Family::untag("image2video:abc"),
            Some((Family::Image2Video, "abc"))
        );
        assert_eq!(Family::untag("abc"), None);
        assert_eq!(Family::untag("video:abc"), None);
        assert_eq!(Family::untag("image:"), None);
        assert_eq!(
            Family::of(None, ModelKind::Video).unwrap(),
            Family::Text2Video
        );
        assert_eq!(Family::of(None, ModelKind::Image).unwrap(), Family::Image);
        assert_eq!(
            Family::of(Some("lipsync"), ModelKind::Video),
            Err(ProviderError::Unsupported)
        );
    }

    #[test]
    fn image_jobs_hold_one_slot_per_image() {
        assert_eq!(image_slots(&json!({"n": 4})), 4);
        assert_eq!(image_slots(&json!({"n": "3"})), 3);
        assert_eq!(image_slots(&json!({"n": 40})), 9);
        assert_eq!(image_slots(&json!({})), 1);
    }
}
