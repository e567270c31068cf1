//! The RunningHub adapter against its mock, over real HTTP on loopback.

use std::time::{Duration, Instant};

use gengate_core::ModelKind;
use gengate_providers::mock::{MockConfig, MockKind, serve};
use gengate_providers::runninghub::{RunningHub, RunningHubSettings};
use gengate_providers::sim::Behavior;
use gengate_providers::{FollowRef, JobState, Provider, SubmitRequest};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const WORKFLOW_ID: &str = "1904136902449209346";
const RETRY_AFTER: Duration = Duration::from_secs(7);

/// A mock account on loopback, stopped when dropped.
struct Mock {
    url: String,
    stop: CancellationToken,
    http: reqwest::Client,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Mock {
    async fn start(
        concurrency: usize,
        fail_rate: f64,
        tweak: impl FnOnce(&mut MockConfig),
    ) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let behavior = Behavior {
            latency_min: Duration::from_millis(200),
            latency_max: Duration::from_millis(350),
            fail_rate,
        };
        let mut cfg = MockConfig::new(behavior, concurrency, &url, KEY);
        tweak(&mut cfg);
        let stop = CancellationToken::new();
        tokio::spawn(serve(MockKind::Runninghub, listener, cfg, stop.clone()));
        Mock {
            url,
            stop,
            http: reqwest::Client::new(),
        }
    }

    async fn ok() -> Mock {
        Mock::start(4, 0.0, |_| {}).await
    }

    fn adapter(&self) -> RunningHub {
        adapter_at(&self.url, KEY, Duration::from_secs(5))
    }

    async fn stats(&self) -> Value {
        let url = format!("{}/_mock/stats", self.url);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn jobs(&self) -> Vec<Value> {
        let url = format!("{}/_mock/jobs", self.url);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn adapter_at(url: &str, key: &str, timeout: Duration) -> RunningHub {
    RunningHub::new(
        "runninghub",
        RunningHubSettings {
            base_url: url.to_owned(),
            api_key: key.to_owned(),
            timeout,
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
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let state = rh.poll(follow(id)).await.unwrap();
        let done = !matches!(state, JobState::Pending { .. });
        seen.push(state);
        if done {
            return seen;
        }
        assert!(Instant::now() < deadline, "task {id} never finished");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

async fn submit_ok(rh: &RunningHub, params: &Value) -> String {
    let input = input();
    rh.submit(request(&input, params, None)).await.unwrap()
}

#[tokio::test]
async fn workflow_runs_from_submit_to_fetchable_outputs() {
    let mock = Mock::ok().await;
    let rh = mock.adapter();
    let params = workflow_params("a red fox");
    let id = submit_ok(&rh, &params).await;
    assert_eq!(id.len(), 19, "task id {id}");
    assert!(id.bytes().all(|b| b.is_ascii_digit()));

    let seen = poll_until_done(&rh, &id).await;
    assert_eq!(seen[0], JobState::Pending { progress: 0.0 }, "queued first");
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
async fn running_task_is_pending_halfway() {
    let mock = Mock::ok().await;
    let rh = mock.adapter();
    let id = submit_ok(&rh, &workflow_params("a fox")).await;
    let seen = poll_until_done(&rh, &id).await;
    assert!(
        seen.contains(&JobState::Pending { progress: 0.5 }),
        "running (804) never seen: {seen:?}"
    );
}

#[tokio::test]
async fn numeric_workflow_id_is_sent_as_a_string() {
    let mock = Mock::ok().await;
    let rh = mock.adapter();
    let params = json!({"workflowId": 1_904_136_902_449_209_346_u64,
                        "nodeInfoList": [{"nodeId": "6", "fieldName": "text", "fieldValue": "x"}]});
    submit_ok(&rh, &params).await;
    assert_eq!(mock.jobs().await[0]["request"]["workflowId"], WORKFLOW_ID);
}

#[tokio::test]
async fn app_endpoint_runs_the_webapp_with_its_id_as_given() {
    let mock = Mock::ok().await;
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
    let mock = Mock::ok().await;
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
