//! The adapter's pieces without a server: signatures against Tencent's
//! published example, error codes, job states, URL expiries, task ids and
//! settings.

use std::time::Duration;

use gengate_core::TaskError;
use serde::Deserialize;
use serde_json::Value;

use super::client::Target;
use super::codes::{Call, classify_code, job_error_retryable};
use super::family::Family;
use super::jobs::{ImageJob, image_state, output};
use super::{Hunyuan, HunyuanSettings, sign};
use crate::{JobState, ProviderError};

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
    let cos =
        "https://b.cos.ap-guangzhou.myqcloud.com/a.png?q-sign-algorithm=sha1&q-sign-time=100;200";
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
