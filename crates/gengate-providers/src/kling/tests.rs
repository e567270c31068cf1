//! The adapter's pieces without a server: the JWT and its cache, settings,
//! codes and unreadable answers, references, task states, callbacks, task
//! ids and slots.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gengate_core::{ModelKind, Output};
use serde_json::{Value, json};

use super::codes::{Call, interpret};
use super::family::Family;
use super::jwt::{mint_jwt, unix_secs};
use super::tasks::{OUTPUT_LIFETIME_MS, image_slots, job_state, pick_reference};
use super::{DEFAULT_BASE_URL, Kling, KlingSettings};
use crate::wire;
use crate::{JobState, Provider, ProviderError};

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
    let task = |id: &str, ext: &str| json!({"task_id": id, "task_info": {"external_task_id": ext}});
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
    let done = state(
        json!({"task_status": "succeed", "created_at": 1_700_000_000_000i64,
        "task_result": {"videos": [{"id": "v", "url": "https://x/a.mp4?sig=1", "duration": "5"}]}}),
    )
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
                width: None,
                height: None,
                duration_s: None,
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
