//! The Kling adapter against the Kling mock, over real HTTP on loopback.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gengate_core::ModelKind;
use gengate_mock::{MockConfig, MockKind};
use gengate_providers::kling::{Kling, KlingSettings};
use gengate_providers::{FollowRef, JobState, Provider, ProviderError, SubmitRequest};
use gengate_testkit::mock::{MockProvider, behavior, client};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;

const ACCESS_KEY: &str = "AKtest0001";
const SECRET_KEY: &str = "SKtest-secret-0001";
const DAY_MS: i64 = 24 * 3600 * 1000;

/// A Kling mock account over HTTPS with `concurrency` slots, jobs taking
/// `latency_ms` and failing with probability `fail_rate`; `tweak` adjusts
/// its configuration.
async fn spawn_mock_with(
    concurrency: usize,
    latency_ms: (u64, u64),
    fail_rate: f64,
    tweak: impl FnOnce(&mut MockConfig),
) -> MockProvider {
    let mut cfg = MockConfig::new(
        behavior(latency_ms, fail_rate),
        concurrency,
        "",
        &format!("{ACCESS_KEY}:{SECRET_KEY}"),
    );
    tweak(&mut cfg);
    MockProvider::https(MockKind::Kling, cfg).await
}

async fn spawn_mock(concurrency: usize, latency_ms: (u64, u64)) -> MockProvider {
    spawn_mock_with(concurrency, latency_ms, 0.0, |_| {}).await
}

/// The adapter of a mock's account, and requests it never sends.
trait Account {
    fn adapter_with(&self, access_key: &str, secret_key: &str) -> Kling;
    fn adapter(&self) -> Kling;
    async fn get_raw(&self, path: &str, authorization: Option<String>) -> (u16, Value);
}

impl Account for MockProvider {
    fn adapter_with(&self, access_key: &str, secret_key: &str) -> Kling {
        let mut settings = KlingSettings::new(access_key, secret_key);
        settings.base_url = self.url.clone();
        settings.client = client(Duration::from_secs(5));
        settings.retry_after = Duration::from_secs(1);
        Kling::new("kling", settings).unwrap()
    }

    fn adapter(&self) -> Kling {
        self.adapter_with(ACCESS_KEY, SECRET_KEY)
    }

    /// A raw GET with `authorization` (if any): status and body.
    async fn get_raw(&self, path: &str, authorization: Option<String>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }
}

/// A JWT signed like Kling wants, with the claims given.
fn jwt(secret_key: &str, claims: &Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn bearer(claims: &Value) -> Option<String> {
    Some(format!("Bearer {}", jwt(SECRET_KEY, claims)))
}

fn valid_claims() -> Value {
    json!({"iss": ACCESS_KEY, "exp": now_secs() + 600, "nbf": now_secs() - 5})
}

static NO_INPUT: Value = Value::Null;

fn request<'a>(
    reference: &'a str,
    kind: ModelKind,
    endpoint: Option<&'a str>,
    params: &'a Value,
    callback_url: Option<&'a str>,
) -> SubmitRequest<'a> {
    SubmitRequest {
        task_id: reference,
        reference,
        model: "kling-test",
        kind,
        input: &NO_INPUT,
        endpoint,
        params,
        callback_url,
    }
}

fn follow(provider_task_id: &str) -> FollowRef<'_> {
    FollowRef {
        task_id: "t",
        provider_task_id,
    }
}

/// Polls until the task leaves Pending; returns every state seen.
async fn poll_until_done(kling: &Kling, id: &str) -> Vec<JobState> {
    crate::poll_until_done(kling, follow(id)).await
}

fn video_params(prompt: &str) -> Value {
    json!({"model_name": "kling-v1-6", "prompt": prompt, "duration": "5", "aspect_ratio": "16:9", "mode": "std"})
}

#[tokio::test]
async fn text_to_video_runs_from_submit_to_a_fetchable_output_that_lives_30_days() {
    let mock = spawn_mock(2, (300, 400)).await;
    let kling = mock.adapter();
    let params = video_params("a red fox in snow");
    let before = now_ms();
    let id = kling
        .submit(request("ref-happy", ModelKind::Video, None, &params, None))
        .await
        .unwrap();
    let after = now_ms();
    assert!(id.starts_with("text2video:"), "{id}");

    let states = poll_until_done(&kling, &id).await;
    assert!(matches!(states[0], JobState::Pending { .. }), "{states:?}");
    let JobState::Succeeded { outputs } = states.last().unwrap() else {
        panic!("not a success: {states:?}");
    };
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    // Outputs are deleted 30 days after the task was created.
    let expires = out.expires_at.unwrap();
    assert!((before + 30 * DAY_MS..=after + 30 * DAY_MS).contains(&expires));
    assert!(out.content_type.starts_with("video/"));
    let file = mock.http.get(&out.url).send().await.unwrap();
    assert_eq!(file.status(), 200);
    assert!(!file.bytes().await.unwrap().is_empty());

    // What Kling received: the template's fields as rendered, plus ours.
    let jobs = mock.jobs().await;
    assert_eq!(jobs.len(), 1);
    let sent = &jobs[0]["request"];
    assert_eq!(sent["prompt"], "a red fox in snow");
    assert_eq!(sent["duration"], "5");
    assert_eq!(sent["external_task_id"], "ref-happy");
    assert!(sent.get("callback_url").is_none());
    let stats = mock.stats().await;
    assert_eq!(stats["submissions"], 1);
    assert_eq!(stats["auth_failures"], 0);
    assert!(stats["polls"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn image_jobs_hold_n_slots_and_return_n_images() {
    // Long enough that the second submission surely meets the first running.
    let mock = spawn_mock(3, (800, 900)).await;
    let kling = mock.adapter();
    let params =
        json!({"model_name": "kling-v2", "prompt": "three cats", "n": 3, "aspect_ratio": "1:1"});
    let req = request("ref-img", ModelKind::Image, None, &params, None);
    assert_eq!(kling.slots(&req), 3);
    let id = kling.submit(req).await.unwrap();
    assert!(id.starts_with("image:"), "{id}");

    // Three slots held: a one-image job does not fit next to it.
    let one = json!({"prompt": "one more"});
    let refused = kling
        .submit(request(
            "ref-img-2",
            ModelKind::Image,
            Some("image"),
            &one,
            None,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ProviderError::BackPressure { .. }),
        "{refused:?}"
    );

    let states = poll_until_done(&kling, &id).await;
    let JobState::Succeeded { outputs } = states.last().unwrap() else {
        panic!("not a success: {states:?}");
    };
    assert_eq!(outputs.len(), 3);
    for out in outputs {
        assert_eq!(out.content_type, "image/png");
        let file = mock.http.get(&out.url).send().await.unwrap();
        assert_eq!(file.status(), 200);
    }
    assert_eq!(mock.stats().await["peak_concurrency"], 3);
}

#[tokio::test]
async fn image_to_video_tasks_are_queried_under_their_own_family() {
    let mock = spawn_mock(2, (200, 300)).await;
    let kling = mock.adapter();
    let params = json!({"model_name": "kling-v1-6", "image": "https://example.invalid/a.png", "duration": "10"});
    let id = kling
        .submit(request(
            "ref-i2v",
            ModelKind::Video,
            Some("image2video"),
            &params,
            None,
        ))
        .await
        .unwrap();
    let bare = id.strip_prefix("image2video:").unwrap();
    // The same task asked for under another family is unknown there.
    assert_eq!(
        kling
            .poll(follow(&format!("text2video:{bare}")))
            .await
            .unwrap_err(),
        ProviderError::NotFound
    );
    let states = poll_until_done(&kling, &id).await;
    assert!(matches!(states.last(), Some(JobState::Succeeded { .. })));
}

#[tokio::test]
async fn concurrency_full_is_back_pressure_not_failure() {
    let mock = spawn_mock(1, (1500, 1500)).await;
    let kling = mock.adapter();
    let params = video_params("first");
    kling
        .submit(request("ref-c1", ModelKind::Video, None, &params, None))
        .await
        .unwrap();
    let err = kling
        .submit(request("ref-c2", ModelKind::Video, None, &params, None))
        .await
        .unwrap_err();
    let ProviderError::BackPressure { retry_after, .. } = err else {
        panic!("not back pressure: {err:?}");
    };
    assert!(retry_after >= Duration::from_secs(1));
    let stats = mock.stats().await;
    assert_eq!(stats["submissions"], 1);
    assert_eq!(stats["refused"], 1);
}

#[tokio::test]
async fn every_mapped_code_reaches_the_right_provider_error() {
    let mock = spawn_mock(8, (100, 200)).await;
    let kling = mock.adapter();
    let params = video_params("codes");
    let kind = |e: &ProviderError| match e {
        ProviderError::BackPressure { retry_after, .. } => {
            assert!(*retry_after >= Duration::from_secs(1));
            "back_pressure"
        }
        ProviderError::RateLimited { retry_after, .. } => {
            assert!(*retry_after >= Duration::from_secs(1));
            "rate_limited"
        }
        ProviderError::Unreachable { .. } => "unreachable",
        ProviderError::Transient(_) => "transient",
        ProviderError::Ambiguous(_) => "ambiguous",
        ProviderError::Rejected { .. } => "rejected",
        ProviderError::AccountExhausted { .. } => "account_exhausted",
        ProviderError::Unauthorized { .. } => "unauthorized",
        ProviderError::NotFound => "not_found",
        ProviderError::Unsupported => "unsupported",
    };
    let table = [
        ("1000", "unauthorized"),
        ("1001", "unauthorized"),
        ("1002", "unauthorized"),
        ("1003", "unauthorized"),
        ("1004", "unauthorized"),
        ("1100", "account_exhausted"),
        ("1101", "account_exhausted"),
        ("1102", "account_exhausted"),
        ("1103", "rejected"),
        ("1200", "rejected"),
        ("1201", "rejected"),
        ("1202", "rejected"),
        ("1203", "rejected"),
        ("1300", "rejected"),
        ("1301", "rejected"),
        ("1302", "rate_limited"),
        ("1303", "back_pressure"),
        ("1304", "unauthorized"),
        ("5000", "transient"),
        ("5001", "transient"),
        ("5002", "transient"),
    ];
    for (i, (code, want)) in table.into_iter().enumerate() {
        // Token codes are answered twice: the adapter re-mints once.
        let count = if code.starts_with("100") { 2 } else { 1 };
        mock.inject_many(code, count).await;
        let reference = format!("ref-code-{i}");
        let err = kling
            .submit(request(&reference, ModelKind::Video, None, &params, None))
            .await
            .unwrap_err();
        assert_eq!(kind(&err), want, "code {code}: {err:?}");
        if let ProviderError::Rejected { code: got, .. }
        | ProviderError::Unauthorized { code: got, .. }
        | ProviderError::AccountExhausted { code: got, .. } = &err
        {
            assert_eq!(got, code);
        }
    }
    // Nothing was left queued, and nothing was recorded.
    let stats = mock.stats().await;
    assert_eq!(stats["submissions"], 0);
    kling
        .submit(request(
            "ref-code-after",
            ModelKind::Video,
            None,
            &params,
            None,
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refused_token_is_reminted_once_and_the_request_sent_again() {
    let mock = spawn_mock(2, (100, 200)).await;
    let kling = mock.adapter();
    let params = video_params("retry");
    mock.inject_many("1004", 1).await;
    let id = kling
        .submit(request("ref-remint", ModelKind::Video, None, &params, None))
        .await
        .unwrap();
    assert!(id.starts_with("text2video:"));
    assert_eq!(mock.stats().await["submissions"], 1);
}

#[tokio::test]
async fn wrong_credentials_are_refused_in_klings_shape_and_unauthorized() {
    let mock = spawn_mock(2, (100, 200)).await;
    let params = video_params("nope");
    for kling in [
        mock.adapter_with(ACCESS_KEY, "wrong-secret"),
        mock.adapter_with("AKunknown", SECRET_KEY),
    ] {
        let err = kling
            .submit(request(
                "ref-bad-key",
                ModelKind::Video,
                None,
                &params,
                None,
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::Unauthorized { code, .. } if code == "1000"),
            "{err:?}"
        );
        assert!(matches!(
            kling.check_account().await,
            Err(ProviderError::Unauthorized { .. })
        ));
    }
    // Each refused call was tried once more with a fresh token.
    let stats = mock.stats().await;
    assert_eq!(stats["auth_failures"], 8);
    assert_eq!(stats["submissions"], 0);

    // The refusal itself, as Kling shapes it.
    let (status, body) = mock.get_raw("/v1/videos/text2video/1", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], 1001);
    assert!(body["message"].is_string() && body["request_id"].is_string());
    let (status, body) = mock
        .get_raw(
            "/v1/videos/text2video/1",
            Some(format!("Bearer {}", jwt("wrong", &valid_claims()))),
        )
        .await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(1000)));
}

#[tokio::test]
async fn tokens_outside_their_window_are_refused_with_their_own_codes() {
    let mock = spawn_mock(2, (100, 200)).await;
    let path = "/v1/videos/text2video?pageNum=1&pageSize=1";
    let now = now_secs();
    let cases = [
        (bearer(&valid_claims()), 200, 0),
        (
            bearer(&json!({"iss": ACCESS_KEY, "exp": now - 1, "nbf": now - 100})),
            401,
            1004,
        ),
        (
            bearer(&json!({"iss": ACCESS_KEY, "exp": now + 600, "nbf": now + 60})),
            401,
            1003,
        ),
        (
            bearer(&json!({"iss": ACCESS_KEY, "nbf": now - 5})),
            401,
            1002,
        ),
        (Some("Bearer not.a.jwt".to_owned()), 401, 1002),
        (
            Some(format!("Token {}", jwt(SECRET_KEY, &valid_claims()))),
            401,
            1002,
        ),
        (None, 401, 1001),
    ];
    for (auth, status, code) in cases {
        let (got_status, body) = mock.get_raw(path, auth.clone()).await;
        assert_eq!(
            (got_status, body["code"].as_i64().unwrap()),
            (status, code),
            "{auth:?}"
        );
    }
    assert_eq!(mock.stats().await["auth_failures"], 6);
}

#[tokio::test]
async fn every_request_the_adapter_sends_passes_strict_verification() {
    let mock = spawn_mock(4, (100, 200)).await;
    let kling = mock.adapter();
    kling.check_account().await.unwrap();
    let params = video_params("verified");
    let req = request("ref-verified", ModelKind::Video, None, &params, None);
    let id = kling.submit(req).await.unwrap();
    assert_eq!(
        kling.find_by_reference(req).await.unwrap(),
        Some(id.clone())
    );
    poll_until_done(&kling, &id).await;
    let unknown = request("ref-never-sent", ModelKind::Video, None, &params, None);
    assert_eq!(kling.find_by_reference(unknown).await.unwrap(), None);
    assert_eq!(mock.stats().await["auth_failures"], 0);
}

#[tokio::test]
async fn missing_prompt_and_numeric_duration_are_rejected_as_bad_params() {
    let mock = spawn_mock(2, (100, 200)).await;
    let kling = mock.adapter();
    for (i, params) in [
        json!({"model_name": "kling-v1-6", "duration": "5"}),
        json!({"model_name": "kling-v1-6", "prompt": "x", "duration": 5}),
        json!({"model_name": "kling-v1-6", "prompt": "x", "frames": 5}),
    ]
    .iter()
    .enumerate()
    {
        let reference = format!("ref-bad-{i}");
        let err = kling
            .submit(request(&reference, ModelKind::Video, None, params, None))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::Rejected { code, .. } if code == "1201"),
            "{params}: {err:?}"
        );
    }
    let i2v = json!({"prompt": "no image"});
    let err = kling
        .submit(request(
            "ref-bad-i2v",
            ModelKind::Video,
            Some("image2video"),
            &i2v,
            None,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
    let err = kling
        .submit(request(
            "ref-bad-op",
            ModelKind::Video,
            Some("lipsync"),
            &i2v,
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::Unsupported);
    assert_eq!(mock.stats().await["submissions"], 0);
}

#[tokio::test]
async fn a_duplicate_reference_is_ambiguous_and_found_by_reference() {
    let mock = spawn_mock(4, (500, 600)).await;
    let kling = mock.adapter();
    let params = video_params("twice");
    let req = request("ref-dup", ModelKind::Video, None, &params, None);
    let id = kling.submit(req).await.unwrap();
    let err = kling.submit(req).await.unwrap_err();
    assert!(matches!(err, ProviderError::Ambiguous(_)), "{err:?}");
    assert_eq!(kling.find_by_reference(req).await.unwrap(), Some(id));
    let stats = mock.stats().await;
    assert_eq!(stats["submissions"], 1);
    assert_eq!(stats["duplicates"], 1);
}

#[tokio::test]
async fn an_unknown_reference_is_none_only_after_the_list_was_scanned() {
    let mock = spawn_mock(4, (100, 200)).await;
    let kling = mock.adapter();
    // Tasks at the account under other references and in other families.
    let params = video_params("others");
    kling
        .submit(request("ref-other", ModelKind::Video, None, &params, None))
        .await
        .unwrap();
    let image = json!({"prompt": "elsewhere"});
    kling
        .submit(request("ref-lost", ModelKind::Image, None, &image, None))
        .await
        .unwrap();
    let polls_before = mock.stats().await["polls"].as_u64().unwrap();
    let lost = request("ref-lost", ModelKind::Video, None, &params, None);
    assert_eq!(kling.find_by_reference(lost).await.unwrap(), None);
    // The lookup by reference, then the list.
    let polls_after = mock.stats().await["polls"].as_u64().unwrap();
    assert_eq!(polls_after - polls_before, 2);

    // The list pages as Kling's does, newest first.
    let (status, page) = mock
        .get_raw(
            "/v1/videos/text2video?pageNum=1&pageSize=500",
            bearer(&valid_claims()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let (status, page) = mock
        .get_raw(
            "/v1/videos/text2video?pageNum=1&pageSize=501",
            bearer(&valid_claims()),
        )
        .await;
    assert_eq!((status, page["code"].as_i64()), (400, Some(1201)));
}

#[tokio::test]
async fn a_lookup_survives_an_account_answering_errors() {
    let mock = spawn_mock_with(2, (100, 200), 0.0, |cfg| {
        cfg.faults.error_rate = 1.0;
    })
    .await;
    let kling = mock.adapter();
    let params = video_params("x");
    let req = request("ref-down", ModelKind::Video, None, &params, None);
    // Never "not found" when the provider could not be asked.
    assert!(matches!(
        kling.find_by_reference(req).await,
        Err(ProviderError::Transient(_))
    ));
}

#[tokio::test]
async fn callbacks_arrive_on_each_status_change_and_read_as_hints() {
    let mock = spawn_mock(2, (400, 400)).await;
    let kling = mock.adapter();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let params = video_params("called back");
    let id = kling
        .submit(request(
            "ref-hook",
            ModelKind::Video,
            None,
            &params,
            Some(&hook),
        ))
        .await
        .unwrap();
    assert!(kling.supports_callbacks());
    assert_eq!(mock.jobs().await[0]["request"]["callback_url"], hook);

    let mut statuses = HashMap::new();
    let finished = loop {
        let body = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("callbacks stopped")
            .unwrap();
        let task: Value = serde_json::from_slice(&body).unwrap();
        // Bare task object, no envelope.
        assert!(task.get("code").is_none() && task.get("data").is_none());
        assert_eq!(task["task_info"]["external_task_id"], "ref-hook");
        let hint = kling.parse_callback(&body).unwrap();
        assert!(hint.is_about(&id), "{hint:?} {id}");
        statuses.insert(
            task["task_status"].as_str().unwrap().to_owned(),
            hint.finished,
        );
        if hint.finished {
            break task;
        }
    };
    assert_eq!(statuses.get("submitted"), Some(&false));
    assert_eq!(statuses.get("processing"), Some(&false));
    assert_eq!(finished["task_status"], "succeed");
    assert!(finished["task_result"]["videos"][0]["url"].is_string());
    // The hint is confirmed by polling.
    assert!(matches!(
        kling.poll(follow(&id)).await.unwrap(),
        JobState::Succeeded { .. }
    ));
    assert_eq!(mock.stats().await["callbacks_sent"], 3);
}

#[tokio::test]
async fn a_failed_job_reports_its_reason() {
    let mock = spawn_mock_with(2, (100, 200), 1.0, |_| {}).await;
    let kling = mock.adapter();
    let params = video_params("doomed");
    let id = kling
        .submit(request("ref-fail", ModelKind::Video, None, &params, None))
        .await
        .unwrap();
    let states = poll_until_done(&kling, &id).await;
    let JobState::Failed { error } = states.last().unwrap() else {
        panic!("not a failure: {states:?}");
    };
    assert!(!error.message.is_empty());
    // A content verdict is final; a worker failure is worth another try.
    assert_eq!(error.retryable, !error.message.contains("risk control"));
}

#[tokio::test]
async fn cancel_is_unsupported_and_unknown_tasks_are_not_found() {
    let mock = spawn_mock(2, (100, 200)).await;
    let kling = mock.adapter();
    assert_eq!(
        kling.cancel(follow("text2video:1")).await,
        Err(ProviderError::Unsupported)
    );
    assert_eq!(
        kling.poll(follow("text2video:999")).await,
        Err(ProviderError::NotFound)
    );
    assert!(matches!(
        kling.poll(follow("999")).await,
        Err(ProviderError::Rejected { .. })
    ));
}

#[tokio::test]
async fn garbage_answer_to_a_create_is_ambiguous_and_to_a_query_transient() {
    let mock = spawn_mock_with(2, (100, 200), 0.0, |cfg| {
        cfg.faults.garbage_rate = 1.0;
    })
    .await;
    let kling = mock.adapter();
    let params = video_params("garbage");
    let err = kling
        .submit(request(
            "ref-garbage",
            ModelKind::Video,
            None,
            &params,
            None,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Ambiguous(_)), "{err:?}");
    // The job was made: the garbage hid a real answer.
    assert_eq!(mock.stats().await["submissions"], 1);
    let err = kling.poll(follow("text2video:1")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn bad_gateway_is_transient() {
    let mock = spawn_mock_with(2, (100, 200), 0.0, |cfg| {
        cfg.faults.error_rate = 1.0;
    })
    .await;
    let kling = mock.adapter();
    let params = video_params("gateway");
    let err = kling
        .submit(request("ref-502", ModelKind::Video, None, &params, None))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    assert!(matches!(
        kling.poll(follow("text2video:1")).await,
        Err(ProviderError::Transient(_))
    ));
    assert_eq!(mock.stats().await["submissions"], 0);
}

#[tokio::test]
async fn unreachable_provider_is_unreachable_and_says_why() {
    // Bind then drop: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut settings = KlingSettings::new(ACCESS_KEY, SECRET_KEY);
    settings.base_url = format!("http://{addr}");
    let kling = Kling::new("kling", settings).unwrap();
    let params = video_params("nobody");
    let err = kling
        .submit(request("ref-down", ModelKind::Video, None, &params, None))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unreachable { message, .. } if message.contains("connection refused")),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired_output_urls_are_refused() {
    let mock = spawn_mock_with(2, (100, 150), 0.0, |cfg| {
        cfg.url_ttl = Some(Duration::from_millis(1000));
    })
    .await;
    let kling = mock.adapter();
    let params = json!({"prompt": "short lived"});
    let id = kling
        .submit(request("ref-ttl", ModelKind::Image, None, &params, None))
        .await
        .unwrap();
    let states = poll_until_done(&kling, &id).await;
    let JobState::Succeeded { outputs } = states.last().unwrap() else {
        panic!("not a success: {states:?}");
    };
    let url = &outputs[0].url;
    assert_eq!(mock.http.get(url).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(mock.http.get(url).send().await.unwrap().status(), 403);
}

/// How a stand-in Kling answers `?external_task_id=` — the readings §3.4
/// leaves open.
#[derive(Clone, Copy)]
enum Reading {
    /// The parameter is ignored: the first page of the list comes back.
    Ignored,
    /// A filtered list (possibly empty).
    Array,
    /// One task, or 400 1201 when there is none.
    Object,
}

/// A stand-in for Kling's list endpoint with `total` text→video tasks,
/// newest first; the one at `ours` (if any) carries `ref-ours`.
async fn spawn_list_stub(reading: Reading, total: usize, ours: Option<usize>) -> String {
    use axum::extract::Query;
    let task = move |i: usize| {
        let ext = if Some(i) == ours {
            "ref-ours".to_owned()
        } else {
            format!("ref-{i}")
        };
        json!({"task_id": format!("t{i}"), "task_status": "succeed", "task_info": {"external_task_id": ext}})
    };
    let app = axum::Router::new().route(
        "/v1/videos/text2video",
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| async move {
            let page = |num: usize, size: usize| -> Vec<Value> {
                ((num - 1) * size..(num * size).min(total)).map(task).collect()
            };
            let envelope = |data: Value| {
                axum::Json(json!({"code": 0, "message": "SUCCEED", "request_id": "r", "data": data}))
            };
            let refused = || {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"code": 1201, "message": "task not found", "request_id": "r", "data": null})),
                )
            };
            use axum::response::IntoResponse;
            match (q.get("external_task_id"), reading) {
                (Some(_), Reading::Ignored) | (None, _) => {
                    let num = q.get("pageNum").map_or(1, |v| v.parse().unwrap());
                    let size = q.get("pageSize").map_or(30, |v| v.parse().unwrap());
                    envelope(Value::Array(page(num, size))).into_response()
                }
                (Some(ext), Reading::Array) => envelope(Value::Array(
                    (0..total).map(task).filter(|t| t["task_info"]["external_task_id"] == **ext).collect(),
                ))
                .into_response(),
                (Some(ext), Reading::Object) => match (0..total)
                    .map(task)
                    .find(|t| t["task_info"]["external_task_id"] == **ext)
                {
                    Some(t) => envelope(t).into_response(),
                    None => refused().into_response(),
                },
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn lookups_by_reference_hold_under_every_reading_of_the_filter() {
    let params = video_params("x");
    let req = request("ref-ours", ModelKind::Video, None, &params, None);
    let adapter = |url: String| {
        let mut settings = KlingSettings::new(ACCESS_KEY, SECRET_KEY);
        settings.base_url = url;
        Kling::new("kling", settings).unwrap()
    };
    for reading in [Reading::Ignored, Reading::Array, Reading::Object] {
        // Found on the second page of the list, whatever the filter did.
        let kling = adapter(spawn_list_stub(reading, 1200, Some(700)).await);
        assert_eq!(
            kling.find_by_reference(req).await.unwrap().as_deref(),
            Some("text2video:t700")
        );
        // Not there, and the list ended: certainly not submitted.
        let kling = adapter(spawn_list_stub(reading, 1200, None).await);
        assert_eq!(kling.find_by_reference(req).await.unwrap(), None);
    }
    // A list longer than the pages scanned: no verdict rather than a wrong one.
    let kling = adapter(spawn_list_stub(Reading::Ignored, 6000, None).await);
    assert!(matches!(
        kling.find_by_reference(req).await,
        Err(ProviderError::Transient(_))
    ));
    // Beyond the scanned pages, but the filter found it.
    let kling = adapter(spawn_list_stub(Reading::Object, 6000, Some(5999)).await);
    assert_eq!(
        kling.find_by_reference(req).await.unwrap().as_deref(),
        Some("text2video:t5999")
    );
}
