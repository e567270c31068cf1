//! The adapter's pieces without a server: settings, masking, content types,
//! validation problems, failure reasons, callbacks and business codes.

use std::time::Duration;

use serde_json::{Value, json};

use super::api::classify_code;
use super::outputs::{content_type, failure, prompt_problems};
use super::{DEFAULT_BASE_URL, RunningHub, RunningHubSettings};
use crate::{Provider, ProviderError};

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
