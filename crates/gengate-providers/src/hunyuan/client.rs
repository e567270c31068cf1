//! The adapter and one signed call: where each family's requests go, the
//! TC3 headers, Tencent's `{"Response": …}` envelope, and the query every
//! poll and probe makes.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::codes::{Call, classify_code};
use super::family::Family;
use super::settings::{DEFAULT_REGION, HunyuanSettings, mask};
use super::signing::sign;
use crate::wire::{self, snippet};
use crate::{ProviderError, classify_reqwest};

/// The `Content-Type` every request is sent and signed with.
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Where one family's requests go.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) url: String,
    /// The `Host` header sent and signed: the URL's host, and its port when
    /// it is not the scheme's default.
    pub(super) host: String,
}

impl Target {
    pub(super) fn parse(url: &str) -> Result<Target, String> {
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

/// The Tencent Hunyuan adapter.
pub struct Hunyuan {
    pub(super) name: String,
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
pub(super) enum Answer {
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
    pub(super) async fn call(
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
    pub(super) fn classify(&self, call: Call, code: &str, message: &str) -> ProviderError {
        classify_code(call, code, message, self.retry_after)
    }

    /// Queries job `job_id` of `family`; every failure is retryable
    /// (`Transient`), since a query changes nothing.
    pub(super) async fn query(&self, family: Family, job_id: &str) -> Result<Value, ProviderError> {
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
