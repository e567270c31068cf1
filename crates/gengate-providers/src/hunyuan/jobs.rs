//! Job answers read into where a job is: image and video status codes, the
//! outputs of a finished job with their content types and expiries, and
//! failures.

use gengate_core::{Output, TaskError, mime};
use serde::Deserialize;

use super::codes::job_error_retryable;
use super::family::Family;
use crate::wire::lenient_string;
use crate::{JobState, ProviderError};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SubmitAnswer {
    /// A string per the docs; a number is accepted too (video ids are
    /// numeric strings).
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) job_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ImageJob {
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
pub(super) struct VideoJob {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    result_video_url: Option<String>,
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
pub(super) fn output(family: Family, url: &str, now_ms: i64) -> Output {
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
        width: None,
        height: None,
        duration_s: None,
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
    mime::of_url(url).unwrap_or(match family {
        Family::Image => "image/png",
        Family::Video => "video/mp4",
    })
}

pub(super) fn image_state(job: ImageJob, now_ms: i64) -> Result<JobState, ProviderError> {
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

pub(super) fn video_state(job: VideoJob, now_ms: i64) -> Result<JobState, ProviderError> {
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
