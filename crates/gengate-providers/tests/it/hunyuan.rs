//! The Hunyuan adapter against the Hunyuan mock over real HTTP on loopback:
//! signatures the mock verifies strictly, status progressions, expiring
//! result URLs, every mapped error code, and transport faults.

use std::time::Duration;

use gengate_core::ModelKind;
use gengate_mock::{Faults, MockConfig, MockKind};
use gengate_providers::hunyuan::{Hunyuan, HunyuanSettings, sign};
use gengate_providers::{FollowRef, JobState, Provider, ProviderError, SubmitRequest};
use gengate_testkit::mock::{MockProvider, behavior, client};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const SECRET_ID: &str = "AKIDmockHunyuan0001";
const SECRET_KEY: &str = "mockHunyuanSecretKey";

/// A Hunyuan mock account over HTTPS, jobs taking `latency_ms`, with
/// `concurrency` slots; `tweak` adjusts its configuration.
async fn start_mock(
    latency_ms: (u64, u64),
    concurrency: usize,
    tweak: impl FnOnce(&mut MockConfig),
) -> MockProvider {
    let mut cfg = MockConfig::new(
        behavior(latency_ms, 0.0),
        concurrency,
        "",
        &format!("{SECRET_ID}:{SECRET_KEY}"),
    );
    tweak(&mut cfg);
    MockProvider::https(MockKind::Hunyuan, cfg).await
}

async fn quick_mock() -> MockProvider {
    start_mock((200, 300), 4, |_| {}).await
}

/// The adapter of a mock's account, and requests it never sends.
trait Account {
    fn settings(&self) -> HunyuanSettings;
    fn adapter(&self) -> Hunyuan;
    fn adapter_with(&self, tweak: impl FnOnce(&mut HunyuanSettings)) -> Hunyuan;
    async fn raw(
        &self,
        action: &str,
        version: &str,
        service: &str,
        timestamp: i64,
        body: &str,
    ) -> Value;
}

impl Account for MockProvider {
    fn settings(&self) -> HunyuanSettings {
        let mut s = HunyuanSettings::new(SECRET_ID, SECRET_KEY);
        s.base_url = Some(self.url.clone());
        s.client = client(Duration::from_secs(5));
        s.retry_after = Duration::from_millis(1500);
        s
    }

    fn adapter(&self) -> Hunyuan {
        Hunyuan::new("hunyuan", self.settings()).unwrap()
    }

    fn adapter_with(&self, tweak: impl FnOnce(&mut HunyuanSettings)) -> Hunyuan {
        let mut s = self.settings();
        tweak(&mut s);
        Hunyuan::new("hunyuan", s).unwrap()
    }

    /// Sends `action` signed by hand, for what the adapter never does
    /// (stale timestamps, another service's scope).
    async fn raw(
        &self,
        action: &str,
        version: &str,
        service: &str,
        timestamp: i64,
        body: &str,
    ) -> Value {
        let host = self.url.trim_start_matches("https://").to_owned();
        let content_type = "application/json; charset=utf-8";
        let sig = sign(
            SECRET_KEY,
            service,
            timestamp,
            &[("content-type", content_type), ("host", &host)],
            body.as_bytes(),
        );
        let resp = self
            .http
            .post(format!("{}/", self.url))
            .header("Content-Type", content_type)
            .header("Authorization", sig.authorization(SECRET_ID))
            .header("X-TC-Action", action)
            .header("X-TC-Version", version)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", "ap-guangzhou")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "Tencent answers errors with HTTP 200");
        resp.json().await.unwrap()
    }
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn submission<'a>(
    kind: ModelKind,
    endpoint: Option<&'a str>,
    params: &'a Value,
) -> SubmitRequest<'a> {
    SubmitRequest {
        task_id: "tsk_hunyuan_1",
        reference: "tsk_hunyuan_1-1",
        model: "hunyuan-test",
        kind,
        input: params,
        endpoint,
        params,
        callback_url: None,
    }
}

fn follow(id: &str) -> FollowRef<'_> {
    FollowRef {
        task_id: "tsk_hunyuan_1",
        provider_task_id: id,
    }
}

/// Polls until the job leaves `Pending`; returns every state seen.
async fn poll_until_done(provider: &Hunyuan, id: &str) -> Vec<JobState> {
    crate::poll_until_done(provider, follow(id)).await
}

fn expires_param(url: &str) -> i64 {
    let (_, q) = url.split_once("expires=").expect("a URL with its expiry");
    q.parse().unwrap()
}

#[tokio::test]
async fn image_job_runs_from_pending_to_succeeded_with_urls_that_expire_after_an_hour() {
    let mock = quick_mock().await;
    let provider = mock.adapter();
    let params = json!({"Prompt": "一只狐狸 in the snow", "Resolution": "768:1024", "Num": 2,
                        "Style": "riman", "LogoAdd": 0});
    let submitted_ms = now_ms();
    let id = provider
        .submit(submission(ModelKind::Image, None, &params))
        .await
        .unwrap();
    assert!(id.starts_with("image:"), "{id}");

    let states = poll_until_done(&provider, &id).await;
    assert!(
        states
            .iter()
            .any(|s| matches!(s, JobState::Pending { progress } if *progress == 0.5)),
        "the job was seen running: {states:?}"
    );
    let Some(JobState::Succeeded { outputs }) = states.last() else {
        panic!("{states:?}")
    };
    assert_eq!(outputs.len(), 2, "Num images");
    for out in outputs {
        assert_eq!(out.content_type, "image/png");
        // The URL states its own expiry (an hour after the job ended);
        // the adapter keeps the earlier of that and an hour from now.
        let stated = expires_param(&out.url);
        assert_eq!(out.expires_at, Some(stated));
        assert!(stated >= submitted_ms + 3_600_000 && stated <= now_ms() + 3_600_000);
        let file = mock.http.get(&out.url).send().await.unwrap();
        assert_eq!(file.status(), 200);
        assert_eq!(file.headers()["content-type"], "image/png");
        assert!(file.bytes().await.unwrap().starts_with(b"\x89PNG"));
    }

    // The body went out as rendered, and every request passed the mock's
    // signature check.
    let jobs = mock.jobs().await;
    assert_eq!(jobs[0]["request"], params);
    assert_eq!(jobs[0]["family"], "image");
    let stats = mock.stats().await;
    assert_eq!(stats["submissions"], 1);
    assert_eq!(stats["auth_failures"], 0);
    assert_eq!(stats["polls"], states.len() as u64);
}

#[tokio::test]
async fn video_job_runs_wait_run_done_with_a_url_good_for_24_hours() {
    let mock = quick_mock().await;
    let provider = mock.adapter();
    let params = json!({"Prompt": "a fox runs", "Image": {"Url": "https://example.com/first.png"},
                        "Resolution": "720p"});
    let id = provider
        .submit(submission(ModelKind::Video, None, &params))
        .await
        .unwrap();
    let (family, job_id) = id.split_once(':').unwrap();
    assert_eq!(family, "video");
    assert!(job_id.chars().all(|c| c.is_ascii_digit()), "{job_id}");

    let states = poll_until_done(&provider, &id).await;
    let Some(JobState::Succeeded { outputs }) = states.last() else {
        panic!("{states:?}")
    };
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert_eq!(
        out.content_type, "video/x-msvideo",
        "from the URL's extension"
    );
    let expires_at = out.expires_at.unwrap();
    assert_eq!(expires_at, expires_param(&out.url));
    assert!((expires_at - now_ms() - 24 * 3_600_000).abs() < 10_000);
    assert_eq!(mock.http.get(&out.url).send().await.unwrap().status(), 200);
    assert_eq!(mock.stats().await["auth_failures"], 0);
}

#[tokio::test]
async fn endpoint_names_pick_the_action_family() {
    let mock = quick_mock().await;
    let provider = mock.adapter();
    let params = json!({"Prompt": "a fox"});
    let id = provider
        .submit(submission(ModelKind::Video, Some("image"), &params))
        .await
        .unwrap();
    assert!(id.starts_with("image:"), "{id}");
    let err = provider
        .submit(submission(ModelKind::Image, Some("audio"), &params))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { code, .. } if code == "unknown_endpoint"),
        "{err:?}"
    );
}

#[tokio::test]
async fn result_urls_die_when_the_account_says_and_expires_at_says_so() {
    let mock = start_mock((100, 150), 4, |cfg| {
        cfg.url_ttl = Some(Duration::from_millis(600));
    })
    .await;
    let provider = mock.adapter();
    let params = json!({"Prompt": "a fox"});
    let id = provider
        .submit(submission(ModelKind::Image, Some("image"), &params))
        .await
        .unwrap();
    let states = poll_until_done(&provider, &id).await;
    let Some(JobState::Succeeded { outputs }) = states.last() else {
        panic!("{states:?}")
    };
    let expires_at = outputs[0].expires_at.unwrap();
    assert!(expires_at < now_ms() + 1000, "the URL's own expiry wins");
    tokio::time::sleep(Duration::from_millis(
        (expires_at - now_ms()).max(0) as u64 + 50,
    ))
    .await;
    let file = mock.http.get(&outputs[0].url).send().await.unwrap();
    assert_eq!(file.status(), 403);
}

#[tokio::test]
async fn failed_jobs_are_failed_with_the_providers_code_and_retryable() {
    let mock = start_mock((100, 150), 4, |cfg| cfg.behavior.fail_rate = 1.0).await;
    let provider = mock.adapter();
    let params = json!({"Prompt": "a fox"});
    for (kind, code) in [
        (ModelKind::Image, "FailedOperation.GenerateImageFailed"),
        (ModelKind::Video, "FailedOperation.EngineServerError"),
    ] {
        let id = provider
            .submit(submission(kind, None, &params))
            .await
            .unwrap();
        let states = poll_until_done(&provider, &id).await;
        let Some(JobState::Failed { error }) = states.last() else {
            panic!("{states:?}")
        };
        assert_eq!(error.code, code);
        assert!(error.retryable, "{error:?}");
    }
}

#[tokio::test]
async fn concurrency_full_is_back_pressure_not_failure() {
    let mock = start_mock((2000, 2000), 1, |_| {}).await;
    let provider = mock.adapter();
    let params = json!({"Prompt": "a fox"});
    provider
        .submit(submission(ModelKind::Image, None, &params))
        .await
        .unwrap();
    let err = provider
        .submit(submission(ModelKind::Video, None, &params))
        .await
        .unwrap_err();
    let ProviderError::BackPressure {
        retry_after,
        message,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        retry_after,
        Duration::from_millis(1500),
        "the configured wait"
    );
    assert!(
        message.contains("RequestLimitExceeded.JobNumExceed"),
        "{message}"
    );
    let stats = mock.stats().await;
    assert_eq!(
        stats["submissions"], 1,
        "a refused submission is not recorded"
    );
    assert_eq!(stats["refused"], 1);
}

#[tokio::test]
async fn wrong_secret_key_is_unauthorized_with_signature_failure() {
    let mock = quick_mock().await;
    let provider = mock.adapter_with(|s| s.secret_key = "not-the-key".to_owned());
    let params = json!({"Prompt": "a fox"});
    let err = provider
        .submit(submission(ModelKind::Image, None, &params))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unauthorized { code, .. } if code == "AuthFailure.SignatureFailure"),
        "{err:?}"
    );
    let err = provider.poll(follow("image:1-2-3-0")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized { .. }), "{err:?}");
    let err = provider.check_account().await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized { .. }), "{err:?}");
    let stats = mock.stats().await;
    assert_eq!(stats["auth_failures"], 3);
    assert_eq!(stats["submissions"], 0);
}

#[tokio::test]
async fn unknown_secret_id_is_unauthorized_with_secret_id_not_found() {
    let mock = quick_mock().await;
    let provider = mock.adapter_with(|s| s.secret_id = "AKIDsomeoneelse".to_owned());
    let params = json!({"Prompt": "a fox"});
    let err = provider
        .submit(submission(ModelKind::Video, None, &params))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unauthorized { code, .. } if code == "AuthFailure.SecretIdNotFound"),
        "{err:?}"
    );
    assert_eq!(mock.stats().await["auth_failures"], 1);
}

#[tokio::test]
async fn check_account_passes_with_good_credentials() {
    let mock = quick_mock().await;
    mock.adapter().check_account().await.unwrap();
    let stats = mock.stats().await;
    assert_eq!(stats["auth_failures"], 0);
    assert_eq!(stats["submissions"], 0, "the probe submits nothing");
}

#[tokio::test]
async fn mock_refuses_stale_timestamps_and_another_services_scope() {
    let mock = quick_mock().await;
    let body = r#"{"JobId": "1"}"#;
    let stale = mock
        .raw(
            "QueryHunyuanImageJob",
            "2023-09-01",
            "hunyuan",
            now_secs() - 301,
            body,
        )
        .await;
    assert_eq!(
        stale["Response"]["Error"]["Code"],
        "AuthFailure.SignatureExpire"
    );
    assert!(stale["Response"]["RequestId"].is_string());
    let scope = mock
        .raw(
            "QueryHunyuanImageJob",
            "2023-09-01",
            "vclm",
            now_secs(),
            body,
        )
        .await;
    assert_eq!(
        scope["Response"]["Error"]["Code"],
        "AuthFailure.SignatureFailure"
    );
    let version = mock
        .raw(
            "DescribeHunyuanToVideoJob",
            "2023-09-01",
            "vclm",
            now_secs(),
            body,
        )
        .await;
    assert_eq!(version["Response"]["Error"]["Code"], "NoSuchVersion");
    let action = mock
        .raw("DescribeInstances", "2017-03-12", "cvm", now_secs(), body)
        .await;
    assert_eq!(action["Response"]["Error"]["Code"], "InvalidAction");
    // Signed with only content-type;host, a fresh request passes.
    let fine = mock
        .raw(
            "DescribeHunyuanToVideoJob",
            "2024-05-23",
            "vclm",
            now_secs(),
            body,
        )
        .await;
    assert_eq!(
        fine["Response"]["Error"]["Code"],
        "FailedOperation.JobNotExist"
    );
    assert_eq!(mock.stats().await["auth_failures"], 2);
}

#[tokio::test]
async fn signature_expired_says_to_fix_the_host_clock() {
    let mock = quick_mock().await;
    mock.inject("AuthFailure.SignatureExpire").await;
    let params = json!({"Prompt": "a fox"});
    let err = mock
        .adapter()
        .submit(submission(ModelKind::Image, None, &params))
        .await
        .unwrap_err();
    let ProviderError::Unauthorized { code, message } = err else {
        panic!("{err:?}")
    };
    assert_eq!(code, "AuthFailure.SignatureExpire");
    assert!(message.contains("clock"), "{message}");
}

#[tokio::test]
async fn bad_parameters_are_rejected_with_tencents_codes_and_not_recorded() {
    let mock = quick_mock().await;
    let provider = mock.adapter();
    let cases = [
        (
            ModelKind::Image,
            json!({"Resolution": "1024:1024"}),
            "MissingParameter",
        ),
        (
            ModelKind::Image,
            json!({"Prompt": "x", "Colour": "red"}),
            "UnknownParameter",
        ),
        (
            ModelKind::Image,
            json!({"Prompt": "x", "Num": "2"}),
            "InvalidParameter",
        ),
        (
            ModelKind::Image,
            json!({"Prompt": "x", "Resolution": "1000:1000"}),
            "InvalidParameterValue",
        ),
        (
            ModelKind::Image,
            json!({"Prompt": "x", "Num": 5}),
            "InvalidParameterValue",
        ),
        (
            ModelKind::Video,
            json!({"Prompt": "x", "Resolution": "1080p"}),
            "InvalidParameterValue",
        ),
        (
            ModelKind::Video,
            json!({"Prompt": "x", "Style": "riman"}),
            "UnknownParameter",
        ),
        (
            ModelKind::Video,
            json!({"Prompt": "x".repeat(201)}),
            "InvalidParameterValue",
        ),
    ];
    for (kind, params, want) in cases {
        let err = provider
            .submit(submission(kind, None, &params))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::Rejected { code, .. } if code == want),
            "{params}: {err:?}"
        );
    }
    let not_object = json!(["Prompt"]);
    let err = provider
        .submit(submission(ModelKind::Image, None, &not_object))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
    assert_eq!(mock.stats().await["submissions"], 0);
}

#[tokio::test]
async fn another_region_is_rejected_as_unsupported_region() {
    let mock = quick_mock().await;
    let provider = mock.adapter_with(|s| s.region = "ap-singapore".to_owned());
    let params = json!({"Prompt": "a fox"});
    let err = provider
        .submit(submission(ModelKind::Image, None, &params))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { code, .. } if code == "UnsupportedRegion"),
        "{err:?}"
    );
}

#[tokio::test]
async fn each_injected_error_code_maps_to_its_provider_error() {
    let mock = quick_mock().await;
    let provider = mock.adapter();
    let params = json!({"Prompt": "a fox"});
    let table = [
        ("RequestLimitExceeded.JobNumExceed", "back_pressure"),
        ("RequestLimitExceeded", "rate_limited"),
        ("AuthFailure.SignatureFailure", "unauthorized"),
        ("AuthFailure.SecretIdNotFound", "unauthorized"),
        ("AuthFailure.SignatureExpire", "unauthorized"),
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
        ("UnsupportedRegion", "rejected"),
        ("InvalidAction", "rejected"),
    ];
    for (code, want) in table {
        mock.inject(code).await;
        let err = provider
            .submit(submission(ModelKind::Image, None, &params))
            .await
            .unwrap_err();
        let got = match &err {
            ProviderError::BackPressure { .. } => "back_pressure",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Unauthorized { code: c, .. } => {
                assert_eq!(c, code);
                "unauthorized"
            }
            ProviderError::AccountExhausted { code: c, .. } => {
                assert_eq!(c, code);
                "account"
            }
            ProviderError::Transient(m) => {
                assert!(m.contains(code), "{m}");
                "transient"
            }
            ProviderError::Rejected { code: c, .. } => {
                assert_eq!(c, code);
                "rejected"
            }
            other => panic!("{code}: {other:?}"),
        };
        assert_eq!(got, want, "{code}");
    }
    assert_eq!(mock.stats().await["submissions"], 0);
}

#[tokio::test]
async fn unknown_jobs_are_not_found_and_malformed_ids_are_rejected() {
    let mock = quick_mock().await;
    let provider = mock.adapter();
    for id in [
        "image:1300000000-1-deadbeef-0000-4000-8000-000000000000-0",
        "video:42",
    ] {
        assert_eq!(
            provider.poll(follow(id)).await,
            Err(ProviderError::NotFound),
            "{id}"
        );
    }
    let err = provider.poll(follow("42")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
}

#[tokio::test]
async fn cancel_references_and_callbacks_are_unsupported() {
    let mock = quick_mock().await;
    let provider = mock.adapter();
    let params = json!({"Prompt": "a fox"});
    let id = provider
        .submit(submission(ModelKind::Image, None, &params))
        .await
        .unwrap();
    assert_eq!(
        provider.cancel(follow(&id)).await,
        Err(ProviderError::Unsupported)
    );
    assert_eq!(
        provider
            .find_by_reference(submission(ModelKind::Image, None, &params))
            .await,
        Err(ProviderError::Unsupported)
    );
    assert!(!provider.supports_callbacks());
    assert_eq!(
        provider.parse_callback(br#"{"JobId":"1","Status":"DONE"}"#),
        Err(ProviderError::Unsupported)
    );
    // The job runs on: polling is the only way to follow it.
    let states = poll_until_done(&provider, &id).await;
    assert!(matches!(states.last(), Some(JobState::Succeeded { .. })));
}

#[tokio::test]
async fn garbage_answer_to_a_submission_is_ambiguous_and_to_a_query_transient() {
    let mock = start_mock((200, 300), 4, |cfg| {
        cfg.faults = Faults {
            garbage_rate: 1.0,
            ..Faults::default()
        };
    })
    .await;
    let provider = mock.adapter();
    let params = json!({"Prompt": "a fox"});
    let err = provider
        .submit(submission(ModelKind::Image, None, &params))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Ambiguous(_)), "{err:?}");
    assert_eq!(
        mock.stats().await["submissions"],
        1,
        "the job exists though its answer was lost"
    );
    let err = provider.poll(follow("video:1")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn bad_gateway_is_transient() {
    let mock = start_mock((200, 300), 4, |cfg| {
        cfg.faults = Faults {
            error_rate: 1.0,
            ..Faults::default()
        };
    })
    .await;
    let provider = mock.adapter();
    let params = json!({"Prompt": "a fox"});
    let err = provider
        .submit(submission(ModelKind::Video, None, &params))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    let err = provider.poll(follow("image:1")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    let err = provider.check_account().await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    assert_eq!(mock.stats().await["submissions"], 0);
}

#[tokio::test]
async fn answer_lost_to_a_timeout_is_ambiguous() {
    let mock = start_mock((200, 300), 4, |cfg| {
        cfg.faults = Faults {
            slow_rate: 1.0,
            slow_delay: Duration::from_millis(1500),
            ..Faults::default()
        };
    })
    .await;
    let provider = mock.adapter_with(|s| s.client = client(Duration::from_millis(400)));
    let params = json!({"Prompt": "a fox"});
    let err = provider
        .submit(submission(ModelKind::Image, None, &params))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Ambiguous(_)), "{err:?}");
    let err = provider.poll(follow("image:1")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn unreachable_provider_is_unreachable_and_says_why() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut settings = HunyuanSettings::new(SECRET_ID, SECRET_KEY);
    settings.base_url = Some(format!("http://{addr}"));
    settings.client = client(Duration::from_secs(2));
    let provider = Hunyuan::new("hunyuan", settings).unwrap();
    let params = json!({"Prompt": "a fox"});
    let err = provider
        .submit(submission(ModelKind::Image, None, &params))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unreachable { message, .. } if message.contains("connection refused")),
        "{err:?}"
    );
    let err = provider.poll(follow("image:1")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");
}

#[test]
fn settings_without_credentials_or_with_a_bad_url_are_refused() {
    assert!(Hunyuan::new("h", HunyuanSettings::new("", "k")).is_err());
    let mut s = HunyuanSettings::new("id", "k");
    s.base_url = Some("not a url".to_owned());
    assert!(Hunyuan::new("h", s).is_err());
    let mut s = HunyuanSettings::new("id", "k");
    s.region = String::new();
    assert!(
        format!("{:?}", Hunyuan::new("h", s).unwrap()).contains("ap-guangzhou"),
        "an empty region means the default"
    );
}

#[test]
fn signature_matches_tencents_published_example() {
    let body = br#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
    let sig = sign(
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        "cvm",
        1_551_113_065,
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("host", "cvm.tencentcloudapi.com"),
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
    assert_eq!(
        sig.signature,
        "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    );
}
