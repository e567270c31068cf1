//! The RunningHub adapter against its mock, over real HTTP on loopback.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use gengate_core::ModelKind;
use gengate_mock::{Faults, MockConfig, MockKind};
use gengate_providers::runninghub::{RunningHub, RunningHubSettings};
use gengate_providers::{FollowRef, JobState, Provider, ProviderError, SubmitRequest};
use gengate_testkit::mock::{MockProvider, behavior, client};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const WORKFLOW_ID: &str = "1904136902449209346";
const RETRY_AFTER: Duration = Duration::from_secs(7);

/// A RunningHub mock account with `concurrency` slots and jobs of
/// 200–350 ms, over HTTPS; `tweak` adjusts its configuration.
async fn start_mock(
    concurrency: usize,
    fail_rate: f64,
    tweak: impl FnOnce(&mut MockConfig),
) -> MockProvider {
    let mut cfg = MockConfig::new(behavior((200, 350), fail_rate), concurrency, "", KEY);
    tweak(&mut cfg);
    MockProvider::https(MockKind::Runninghub, cfg).await
}

async fn ok_mock() -> MockProvider {
    start_mock(4, 0.0, |_| {}).await
}

/// The adapter of a mock's account.
trait Account {
    fn adapter(&self) -> RunningHub;
}

impl Account for MockProvider {
    fn adapter(&self) -> RunningHub {
        adapter_at(&self.url, KEY, Duration::from_secs(5))
    }
}

fn adapter_at(url: &str, key: &str, timeout: Duration) -> RunningHub {
    RunningHub::new(
        "runninghub",
        RunningHubSettings {
            base_url: url.to_owned(),
            api_key: key.to_owned(),
            client: client(timeout),
            retry_after: RETRY_AFTER,
        },
    )
    .unwrap()
}

fn workflow_params(prompt: &str) -> Value {
    json!({
        "workflowId": WORKFLOW_ID,
        "nodeInfoList": [
            {"nodeId": "6", "fieldName": "text", "fieldValue": prompt},
            {"nodeId": "3", "fieldName": "seed", "fieldValue": 42}
        ],
        "instanceType": "default"
    })
}

fn input() -> Value {
    json!({"prompt": "a red fox"})
}

fn request<'a>(
    input: &'a Value,
    params: &'a Value,
    callback_url: Option<&'a str>,
) -> SubmitRequest<'a> {
    SubmitRequest {
        task_id: "t_1",
        reference: "t_1.1",
        model: "flux-workflow",
        kind: ModelKind::Image,
        input,
        endpoint: None,
        params,
        callback_url,
    }
}

fn follow(provider_task_id: &str) -> FollowRef<'_> {
    FollowRef {
        task_id: "t_1",
        provider_task_id,
    }
}

/// Polls until the task leaves `Pending`; returns the states seen.
async fn poll_until_done(rh: &RunningHub, id: &str) -> Vec<JobState> {
    crate::poll_until_done(rh, follow(id)).await
}

async fn submit_ok(rh: &RunningHub, params: &Value) -> String {
    let input = input();
    rh.submit(request(&input, params, None)).await.unwrap()
}

async fn submit_err(rh: &RunningHub, params: &Value) -> ProviderError {
    let input = input();
    rh.submit(request(&input, params, None)).await.unwrap_err()
}

#[tokio::test]
async fn workflow_runs_from_submit_to_fetchable_outputs() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    let params = workflow_params("a red fox");
    let id = submit_ok(&rh, &params).await;
    assert_eq!(id.len(), 19, "task id {id}");
    assert!(id.bytes().all(|b| b.is_ascii_digit()));

    let seen = poll_until_done(&rh, &id).await;
    assert!(matches!(seen[0], JobState::Pending { .. }), "{seen:?}");
    let JobState::Succeeded { outputs } = seen.last().unwrap() else {
        panic!("expected success, saw {seen:?}");
    };
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert_eq!(out.content_type, "image/png");
    // RunningHub states no lifetime for its output URLs.
    assert_eq!(out.expires_at, None);
    let file = mock.http.get(&out.url).send().await.unwrap();
    assert_eq!(file.status(), 200);
    let bytes = file.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"\x89PNG");

    // What went over the wire: the params, plus the key; no webhook when
    // no callback URL was given.
    let jobs = mock.jobs().await;
    assert_eq!(jobs.len(), 1);
    let sent = &jobs[0]["request"];
    assert_eq!(sent["apiKey"], KEY);
    assert_eq!(sent["workflowId"], WORKFLOW_ID);
    assert_eq!(sent["nodeInfoList"], params["nodeInfoList"]);
    assert_eq!(sent["instanceType"], "default");
    assert!(sent.get("webhookUrl").is_none());
    let stats = mock.stats().await;
    assert_eq!(stats["submissions"], 1);
    assert_eq!(stats["auth_failures"], 0);
    assert!(stats["polls"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn queued_task_is_pending_at_zero_then_halfway_while_running() {
    // Long enough that the queued tenth (813) is seen reliably.
    let mock = start_mock(4, 0.0, |cfg| {
        cfg.behavior.latency_min = Duration::from_millis(1000);
        cfg.behavior.latency_max = Duration::from_millis(1000);
    })
    .await;
    let rh = mock.adapter();
    let id = submit_ok(&rh, &workflow_params("a fox")).await;
    let seen = poll_until_done(&rh, &id).await;
    let queued = seen
        .iter()
        .position(|s| *s == JobState::Pending { progress: 0.0 });
    let running = seen
        .iter()
        .position(|s| *s == JobState::Pending { progress: 0.5 });
    assert!(
        matches!((queued, running), (Some(q), Some(r)) if q < r),
        "expected 813 then 804: {seen:?}"
    );
    assert!(matches!(seen.last(), Some(JobState::Succeeded { .. })));
}

#[tokio::test]
async fn numeric_workflow_id_is_sent_as_a_string() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    let params = json!({"workflowId": 1_904_136_902_449_209_346_u64,
                        "nodeInfoList": [{"nodeId": "6", "fieldName": "text", "fieldValue": "x"}]});
    submit_ok(&rh, &params).await;
    assert_eq!(mock.jobs().await[0]["request"]["workflowId"], WORKFLOW_ID);
}

#[tokio::test]
async fn app_endpoint_runs_the_webapp_with_its_id_as_given() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    let params = json!({"webappId": 1_877_265_245_566_922_800_u64,
                        "nodeInfoList": [{"nodeId": "52", "fieldName": "prompt", "fieldValue": "a fox"}]});
    let input = input();
    let req = SubmitRequest {
        endpoint: Some("app"),
        ..request(&input, &params, None)
    };
    let id = rh.submit(req).await.unwrap();
    let jobs = mock.jobs().await;
    assert_eq!(jobs[0]["family"], "app");
    assert_eq!(
        jobs[0]["request"]["webappId"],
        1_877_265_245_566_922_800_u64
    );
    assert!(matches!(
        poll_until_done(&rh, &id).await.last(),
        Some(JobState::Succeeded { .. })
    ));
}

#[tokio::test]
async fn video_outputs_get_a_video_content_type() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    let params = json!({"workflowId": WORKFLOW_ID, "nodeInfoList": [
        {"nodeId": "6", "fieldName": "text", "fieldValue": "a fox running"},
        {"nodeId": "12", "fieldName": "fps", "fieldValue": 24}]});
    let id = submit_ok(&rh, &params).await;
    let Some(JobState::Succeeded { outputs }) = poll_until_done(&rh, &id).await.pop() else {
        panic!("expected success");
    };
    assert_eq!(outputs[0].content_type, "video/x-msvideo");
}

#[tokio::test]
async fn missing_workflow_or_app_id_is_a_config_rejection_without_any_request() {
    // Nothing listens on port 9: a request would come back Transient.
    let rh = adapter_at("http://127.0.0.1:9", KEY, Duration::from_secs(1));
    let input = input();
    let params = json!({"nodeInfoList": []});
    let err = rh.submit(request(&input, &params, None)).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { code, .. } if code == "config"),
        "{err:?}"
    );
    let params = workflow_params("x");
    let app = SubmitRequest {
        endpoint: Some("app"),
        ..request(&input, &params, None)
    };
    assert!(matches!(rh.submit(app).await,
        Err(ProviderError::Rejected { code, .. }) if code == "config"));
    let other = SubmitRequest {
        endpoint: Some("text2video"),
        ..request(&input, &params, None)
    };
    assert!(matches!(rh.submit(other).await,
        Err(ProviderError::Rejected { code, .. }) if code == "config"));
    let not_object = json!(["workflowId"]);
    assert!(
        matches!(rh.submit(request(&input, &not_object, None)).await,
        Err(ProviderError::Rejected { code, .. }) if code == "config")
    );
}

#[tokio::test]
async fn concurrency_full_is_back_pressure_not_failure() {
    let mock = start_mock(1, 0.0, |_| {}).await;
    let rh = mock.adapter();
    let params = workflow_params("a fox");
    let first = submit_ok(&rh, &params).await;
    let err = submit_err(&rh, &params).await;
    let ProviderError::BackPressure {
        retry_after,
        message,
    } = err
    else {
        panic!("expected back pressure, got {err:?}");
    };
    assert_eq!(retry_after, RETRY_AFTER);
    assert!(message.contains("421"), "{message}");
    let stats = mock.stats().await;
    assert_eq!(stats["submissions"], 1, "the refused one is not recorded");
    assert_eq!(stats["refused"], 1);

    // Once the first task is done the slot is free again.
    poll_until_done(&rh, &first).await;
    submit_ok(&rh, &params).await;
}

#[tokio::test]
async fn injected_business_codes_map_to_what_the_dispatcher_does_next() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    let params = workflow_params("a fox");
    for code in ["421", "415", "814", "1011", "1520"] {
        mock.inject(code).await;
        let err = submit_err(&rh, &params).await;
        assert!(
            matches!(&err, ProviderError::BackPressure { retry_after, .. } if *retry_after == RETRY_AFTER),
            "{code}: {err:?}"
        );
    }
    mock.inject("1003").await;
    let err = submit_err(&rh, &params).await;
    assert!(
        matches!(&err, ProviderError::RateLimited { retry_after, .. } if *retry_after == RETRY_AFTER),
        "1003 is a rate limit, not a full account: {err:?}"
    );
    for code in ["812", "801"] {
        mock.inject(code).await;
        let err = submit_err(&rh, &params).await;
        assert!(
            matches!(&err, ProviderError::AccountExhausted { code: c, .. } if c == code),
            "{code}: {err:?}"
        );
    }
    for code in ["802", "806", "811"] {
        mock.inject(code).await;
        let err = submit_err(&rh, &params).await;
        assert!(
            matches!(&err, ProviderError::Unauthorized { code: c, .. } if c == code),
            "{code}: {err:?}"
        );
    }
    for code in ["301", "380", "433", "803", "809", "901", "999"] {
        mock.inject(code).await;
        let err = submit_err(&rh, &params).await;
        assert!(
            matches!(&err, ProviderError::Rejected { code: c, .. } if c == code),
            "{code}: {err:?}"
        );
    }
    mock.inject("500").await;
    let err = submit_err(&rh, &params).await;
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    assert_eq!(mock.stats().await["submissions"], 0);
}

#[tokio::test]
async fn task_created_as_failed_is_rejected_with_the_validation_details() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    mock.inject("FAILED").await;
    let err = submit_err(&rh, &workflow_params("a fox")).await;
    let ProviderError::Rejected { code, message } = err else {
        panic!("expected a rejection, got {err:?}");
    };
    assert_eq!(code, "task_failed");
    assert!(
        message.contains("node 6 (CLIPTextEncode): Required input is missing: text"),
        "{message}"
    );
}

#[tokio::test]
async fn node_errors_on_a_queued_task_are_a_rejection() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    mock.inject("node_errors").await;
    let err = submit_err(&rh, &workflow_params("a fox")).await;
    assert!(
        matches!(&err, ProviderError::Rejected { code, message }
            if code == "node_errors" && message.contains("CLIPTextEncode")),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_params_are_refused_by_the_provider_and_rejected() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    let cases = [
        // A nodeInfoList item without fieldValue.
        (
            json!({"workflowId": WORKFLOW_ID, "nodeInfoList": [{"nodeId": "6", "fieldName": "text"}]}),
            None,
            "803",
        ),
        // Not a workflow id.
        (json!({"workflowId": "my-workflow"}), None, "380"),
        // An app run needs its nodeInfoList.
        (
            json!({"webappId": "1877265245566922800"}),
            Some("app"),
            "301",
        ),
        // A field RunningHub does not take.
        (
            json!({"workflowId": WORKFLOW_ID, "instanceTyp": "plus"}),
            None,
            "301",
        ),
    ];
    let input = input();
    for (params, endpoint, want) in cases {
        let req = SubmitRequest {
            endpoint,
            ..request(&input, &params, None)
        };
        let err = rh.submit(req).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Rejected { code, .. } if code == want),
            "{params}: {err:?}"
        );
    }
    let stats = mock.stats().await;
    assert_eq!(stats["submissions"], 0);
    assert_eq!(stats["auth_failures"], 0);
}

#[tokio::test]
async fn wrong_key_is_refused_everywhere_and_unauthorized() {
    let mock = ok_mock().await;
    let good = mock.adapter();
    let id = submit_ok(&good, &workflow_params("a fox")).await;
    let bad = adapter_at(
        &mock.url,
        "ffffffffffffffffffffffffffffffff",
        Duration::from_secs(5),
    );

    let unauthorized = |r: Result<(), ProviderError>| {
        assert!(
            matches!(&r, Err(ProviderError::Unauthorized { code, .. }) if code == "802"),
            "{r:?}"
        );
    };
    unauthorized(Err(submit_err(&bad, &workflow_params("a fox")).await));
    unauthorized(bad.poll(follow(&id)).await.map(|_| ()));
    unauthorized(bad.cancel(follow(&id)).await);
    unauthorized(bad.check_account().await);
    assert_eq!(mock.stats().await["auth_failures"], 4);
}

#[tokio::test]
async fn check_account_passes_with_the_lowercase_apikey() {
    let mock = ok_mock().await;
    mock.adapter().check_account().await.unwrap();
    assert_eq!(mock.stats().await["auth_failures"], 0);
}

#[tokio::test]
async fn failed_task_reports_its_failed_reason() {
    let mock = start_mock(4, 1.0, |_| {}).await;
    let rh = mock.adapter();
    let id = submit_ok(&rh, &workflow_params("a fox")).await;
    let Some(JobState::Failed { error }) = poll_until_done(&rh, &id).await.pop() else {
        panic!("expected failure");
    };
    assert_eq!(error.code, "provider_failed");
    assert!(
        error
            .message
            .starts_with("node 3 (KSampler): torch.OutOfMemoryError"),
        "{}",
        error.message
    );
    // Out of GPU memory depends on the machine: another run may pass.
    assert!(error.retryable);
}

#[tokio::test]
async fn finished_task_without_outputs_is_a_permanent_failure() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    mock.inject("no_outputs").await;
    let id = submit_ok(&rh, &workflow_params("a fox")).await;
    let Some(JobState::Failed { error }) = poll_until_done(&rh, &id).await.pop() else {
        panic!("expected failure");
    };
    assert_eq!(error.code, "no_outputs");
    assert!(!error.retryable);
}

#[tokio::test]
async fn cancel_stops_a_task_and_unknown_tasks_are_not_found() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    let id = submit_ok(&rh, &workflow_params("a fox")).await;
    rh.cancel(follow(&id)).await.unwrap();
    let state = rh.poll(follow(&id)).await.unwrap();
    let JobState::Failed { error } = state else {
        panic!("expected the canceled task to be over, got {state:?}");
    };
    assert_eq!(error.code, "provider_canceled");
    assert!(!error.retryable);
    assert_eq!(mock.jobs().await[0]["canceled"], true);

    let unknown = "1910246754753899999";
    assert_eq!(
        rh.cancel(follow(unknown)).await,
        Err(ProviderError::NotFound)
    );
    assert_eq!(rh.poll(follow(unknown)).await, Err(ProviderError::NotFound));
}

#[tokio::test]
async fn lookup_by_reference_is_unsupported() {
    let rh = adapter_at("http://127.0.0.1:9", KEY, Duration::from_secs(1));
    let (input, params) = (input(), workflow_params("x"));
    assert_eq!(
        rh.find_by_reference(request(&input, &params, None)).await,
        Err(ProviderError::Unsupported)
    );
}

/// A callback receiver on loopback: every body it gets, in order.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Bytes>, CancellationToken) {
    async fn take(State(tx): State<mpsc::UnboundedSender<Bytes>>, body: Bytes) -> &'static str {
        let _ = tx.send(body);
        "ok"
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/callbacks/runninghub/tok",
        listener.local_addr().unwrap()
    );
    let app = Router::new()
        .route("/callbacks/runninghub/tok", post(take))
        .with_state(tx);
    let stop = CancellationToken::new();
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    (url, rx, stop)
}

async fn next_callback(rx: &mut mpsc::UnboundedReceiver<Bytes>) -> Bytes {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no callback arrived")
        .expect("receiver closed")
}

#[tokio::test]
async fn webhook_arrives_at_the_end_repeated_and_parse_callback_reads_it() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    assert!(rh.supports_callbacks());
    let (url, mut rx, stop) = receiver().await;
    let (input, params) = (input(), workflow_params("a fox"));
    let id = rh
        .submit(request(&input, &params, Some(&url)))
        .await
        .unwrap();
    assert_eq!(mock.jobs().await[0]["request"]["webhookUrl"], url.as_str());

    for _ in 0..2 {
        let body = next_callback(&mut rx).await;
        let hint = rh.parse_callback(&body).unwrap();
        assert_eq!(hint.provider_task_id, id);
        assert!(hint.finished);
        assert!(hint.is_about(&id));
        // eventData is the outputs answer, encoded as a string.
        let raw: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(raw["event"], "TASK_END");
        let event: Value = serde_json::from_str(raw["eventData"].as_str().unwrap()).unwrap();
        assert_eq!(event["code"], 0);
        assert!(event["data"][0]["fileUrl"].as_str().is_some());
    }
    // The hint is confirmed by polling.
    assert!(matches!(
        rh.poll(follow(&id)).await,
        Ok(JobState::Succeeded { .. })
    ));
    assert_eq!(mock.stats().await["callbacks_sent"], 2);
    stop.cancel();
}

#[tokio::test]
async fn failure_webhook_carries_805_and_the_failed_reason() {
    let mock = start_mock(4, 1.0, |_| {}).await;
    let rh = mock.adapter();
    let (url, mut rx, stop) = receiver().await;
    let (input, params) = (input(), workflow_params("a fox"));
    let id = rh
        .submit(request(&input, &params, Some(&url)))
        .await
        .unwrap();
    let body = next_callback(&mut rx).await;
    assert_eq!(rh.parse_callback(&body).unwrap().provider_task_id, id);
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let event: Value = serde_json::from_str(raw["eventData"].as_str().unwrap()).unwrap();
    assert_eq!(event["code"], 805);
    assert_eq!(event["data"]["failedReason"]["node_name"], "KSampler");
    stop.cancel();
}

#[tokio::test]
async fn canceled_task_gets_no_webhook() {
    let mock = ok_mock().await;
    let rh = mock.adapter();
    let (url, mut rx, stop) = receiver().await;
    let (input, params) = (input(), workflow_params("a fox"));
    let id = rh
        .submit(request(&input, &params, Some(&url)))
        .await
        .unwrap();
    rh.cancel(follow(&id)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_millis(900), rx.recv()).await;
    assert!(got.is_err(), "a canceled task posted a webhook");
    stop.cancel();
}

#[tokio::test]
async fn garbage_answer_to_a_create_is_ambiguous() {
    let mock = start_mock(4, 0.0, |cfg| {
        cfg.faults = Faults {
            garbage_rate: 1.0,
            ..Faults::default()
        };
    })
    .await;
    let rh = mock.adapter();
    let err = submit_err(&rh, &workflow_params("a fox")).await;
    assert!(matches!(err, ProviderError::Ambiguous(_)), "{err:?}");
    // The create took effect: that is why it must not be repeated blindly.
    assert_eq!(mock.stats().await["submissions"], 1);
    // For a query, garbage is only transient.
    let err = rh.poll(follow("1910246754753896451")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    let err = rh.check_account().await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn bad_gateway_is_transient() {
    let mock = start_mock(4, 0.0, |cfg| {
        cfg.faults = Faults {
            error_rate: 1.0,
            ..Faults::default()
        };
    })
    .await;
    let rh = mock.adapter();
    let err = submit_err(&rh, &workflow_params("a fox")).await;
    assert!(
        matches!(&err, ProviderError::Transient(m) if m.contains("502")),
        "{err:?}"
    );
    let err = rh.poll(follow("1910246754753896451")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    assert_eq!(mock.stats().await["submissions"], 0);
}

#[tokio::test]
async fn timeout_after_sending_a_create_is_ambiguous() {
    let mock = start_mock(4, 0.0, |cfg| {
        cfg.faults = Faults {
            slow_rate: 1.0,
            slow_delay: Duration::from_millis(1500),
            ..Faults::default()
        };
    })
    .await;
    let rh = adapter_at(&mock.url, KEY, Duration::from_millis(400));
    let err = submit_err(&rh, &workflow_params("a fox")).await;
    assert!(matches!(err, ProviderError::Ambiguous(_)), "{err:?}");
    let err = rh.poll(follow("1910246754753896451")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn expired_output_urls_are_refused_by_the_file_host() {
    let mock = start_mock(4, 0.0, |cfg| {
        cfg.url_ttl = Some(Duration::from_millis(1500))
    })
    .await;
    let rh = mock.adapter();
    let id = submit_ok(&rh, &workflow_params("a fox")).await;
    let Some(JobState::Succeeded { outputs }) = poll_until_done(&rh, &id).await.pop() else {
        panic!("expected success");
    };
    // The lifetime is the mock's setting, not something RunningHub states.
    assert_eq!(outputs[0].expires_at, None);
    assert_eq!(
        mock.http
            .get(&outputs[0].url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        mock.http
            .get(&outputs[0].url)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

/// A scripted server: answers each request with the next body, in order,
/// and records the paths asked.
struct Script {
    url: String,
    paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: CancellationToken,
}

impl Drop for Script {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn script(answers: Vec<Value>) -> Script {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    type Shared = (Arc<Mutex<VecDeque<Value>>>, Arc<Mutex<Vec<String>>>);
    async fn answer(
        State((answers, paths)): State<Shared>,
        uri: axum::http::Uri,
    ) -> axum::Json<Value> {
        paths.lock().unwrap().push(uri.path().to_owned());
        axum::Json(answers.lock().unwrap().pop_front().unwrap_or(Value::Null))
    }
    let paths = Arc::new(Mutex::new(Vec::new()));
    let state: Shared = (Arc::new(Mutex::new(answers.into())), paths.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(answer).with_state(state);
    let stop = CancellationToken::new();
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Script { url, paths, stop }
}

#[tokio::test]
async fn wobbly_answers_are_read_defensively() {
    let s = script(vec![
        // Success as 200 [3p], the task id as a number.
        json!({"code": 200, "msg": "ok", "data": {"taskId": 1_910_246_754_753_896_451_u64,
               "taskStatus": "QUEUED", "promptTips": null}}),
        // Success without a task: the create may have happened.
        json!({"code": 0, "msg": "success", "data": null}),
        // The code as a string, taskCostTime as a number, no fileType.
        json!({"code": "0", "msg": "success", "data": [{"fileUrl": "https://rh.example/out/a.jpg?v=1",
               "taskCostTime": 78, "nodeId": 9}]}),
        // A code outputs is not documented to give: asked again by status.
        json!({"code": 1234, "msg": "SOMETHING_NEW", "data": null}),
        json!({"code": 0, "msg": "success", "data": "RUNNING"}),
        json!({"code": 1234, "msg": "SOMETHING_NEW", "data": null}),
        json!({"code": 0, "msg": "success", "data": "CANCELLED"}),
        // The failed reason as a JSON string.
        json!({"code": 805, "msg": "APIKEY_TASK_STATUS_ERROR", "data": {"failedReason":
               "{\"node_id\":\"12\",\"exception_type\":\"ValueError\",\"exception_message\":\"bad size\"}"}}),
    ])
    .await;
    let rh = adapter_at(&s.url, KEY, Duration::from_secs(2));
    assert_eq!(
        submit_ok(&rh, &workflow_params("x")).await,
        "1910246754753896451"
    );
    let err = submit_err(&rh, &workflow_params("x")).await;
    assert!(matches!(err, ProviderError::Ambiguous(_)), "{err:?}");
    let id = "1910246754753896451";
    let Ok(JobState::Succeeded { outputs }) = rh.poll(follow(id)).await else {
        panic!("expected success");
    };
    assert_eq!(outputs[0].content_type, "image/jpeg");
    assert_eq!(
        rh.poll(follow(id)).await,
        Ok(JobState::Pending { progress: 0.5 })
    );
    let Ok(JobState::Failed { error }) = rh.poll(follow(id)).await else {
        panic!("expected the canceled task to be over");
    };
    assert_eq!(error.code, "provider_canceled");
    let Ok(JobState::Failed { error }) = rh.poll(follow(id)).await else {
        panic!("expected failure");
    };
    assert_eq!(error.message, "node 12: ValueError: bad size");
    assert!(!error.retryable);
    let paths = s.paths.lock().unwrap().clone();
    assert_eq!(
        paths,
        [
            "/task/openapi/create",
            "/task/openapi/create",
            "/task/openapi/outputs",
            "/task/openapi/outputs",
            "/task/openapi/status",
            "/task/openapi/outputs",
            "/task/openapi/status",
            "/task/openapi/outputs",
        ]
    );
}
