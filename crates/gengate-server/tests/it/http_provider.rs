//! gengate against the sim mock over HTTP: back-pressure, reconciliation of a
//! task whose submission answer was lost, and an unreachable provider.

use std::time::Duration;

use gengate_config::Dur;
use gengate_core::task::NewTask;
use gengate_core::{Event, Role, apply};
use gengate_mock::sim::Behavior;
use gengate_mock::{MockConfig, serve_sim};
use gengate_server::now_ms;
use gengate_testkit::wait_until;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// The simulator's HTTP mock on loopback, until dropped.
pub(crate) struct Mock {
    pub(crate) url: String,
    _stop: tokio_util::sync::DropGuard,
}

pub(crate) async fn spawn_mock(concurrency: usize, latency_ms: u64) -> Mock {
    spawn_failing_mock(concurrency, latency_ms, 0.0).await
}

async fn spawn_failing_mock(concurrency: usize, latency_ms: u64, fail_rate: f64) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let behavior = Behavior {
        latency_min: Duration::from_millis(latency_ms),
        latency_max: Duration::from_millis(latency_ms * 2),
        fail_rate,
    };
    let cfg = MockConfig::new(behavior, concurrency, &url, "");
    let stop = CancellationToken::new();
    tokio::spawn(serve_sim(listener, cfg, stop.clone()));
    Mock {
        url,
        _stop: stop.drop_guard(),
    }
}

async fn mock_stats(mock: &Mock) -> Value {
    reqwest::get(format!("{}/_mock/stats", mock.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn account_back_pressure_keeps_tasks_queued_without_spending_attempts() {
    let mock = spawn_mock(2, 100).await;
    let url = mock.url.clone();
    let app = spawn_app_with(move |cfg| {
        let sim = cfg.providers.get_mut("sim").unwrap();
        sim.base_url = Some(http_url(&url));
        sim.concurrency = 4; // more than the account allows: the mock refuses with 429
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(app.post_task(&prompt(&format!("bp{i}"))).await.id());
    }
    app.dispatch_until_idle().await;
    for id in &ids {
        let t = app.get_task(id).await;
        assert_eq!(t.status_text(), "succeeded", "{}", t.body);
        assert_eq!(
            t.body["attempts"], 1,
            "a refused submission is not an attempt: {}",
            t.body
        );
        let url = t.body["outputs"][0]["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/media/t/{id}/", app.base)),
            "the output is copied to gengate's own media: {url}"
        );
    }
    let stats = mock_stats(&mock).await;
    assert_eq!(stats["submissions"], 12);
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert!(stats["peak_concurrency"].as_u64().unwrap() <= 2, "{stats}");
    assert!(
        stats["refused"].as_u64().unwrap() > 0,
        "the account limit was exercised: {stats}"
    );
    // The mock serves a real PNG for the output.
    let t = app.get_task(&ids[0]).await;
    let bytes = app
        .client
        .get(t.body["outputs"][0]["url"].as_str().unwrap())
        .bearer_auth(&app.user_key)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..4], b"\x89PNG");
}

#[tokio::test]
async fn a_task_caught_in_submitting_is_found_by_reference_not_submitted_again() {
    let mock = spawn_mock(8, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config().finish().unwrap();
    cfg.server.data_dir = dir.path().to_owned();
    cfg.providers.get_mut("sim").unwrap().base_url = Some(http_url(&mock.url));
    let store = gengate_store::open(&cfg.store_url()).await.unwrap();

    // A task whose submission reached the provider, but the process died
    // before storing the provider's answer.
    let key = make_key(&*store, "crashy", Role::User).await;
    let caller = store
        .find_key(&gengate_server::keys::hash(&key))
        .await
        .unwrap()
        .unwrap();
    let now = now_ms();
    let input = json!({"prompt": "lost answer", "size": "512x512"});
    let new = NewTask {
        id: gengate_core::id::task_id(now, 7),
        user_id: caller.user_id,
        model: "sim-image".into(),
        provider: "sim".into(),
        input: input.clone(),
        public: false,
        priority: 0,
        max_attempts: 3,
        deadline_at: now + 600_000,
        created_at: now,
        webhook_url: None,
        billing: None,
        limits: Default::default(),
    };
    let task = store.create_task(new, None).await.unwrap().task;
    let (mut claimed, _) = apply(&task, Event::Claim, now).unwrap();
    claimed.version = task.version + 1;
    assert!(
        store
            .update_task(&claimed, gengate_store::Fence::Lease)
            .await
            .unwrap()
    );
    let sent = reqwest::Client::new()
        .post(format!("{}/v1/jobs", mock.url))
        .json(
            &json!({"model": "sim-image", "kind": "image", "input": input, "external_id": format!("{}.1", task.id)}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);

    let app = spawn_on(cfg, store, dir).await;
    app.dispatch_until_idle().await;
    let done = app.get_as(&key, &format!("/v1/tasks/{}", task.id)).await;
    assert_eq!(done.status_text(), "succeeded", "{}", done.body);
    assert_eq!(done.body["attempts"], 1);
    let stats = mock_stats(&mock).await;
    assert_eq!(
        (stats["submissions"].as_u64(), stats["duplicates"].as_u64()),
        (Some(1), Some(0)),
        "never submitted twice: {stats}"
    );
}

/// Nothing can reach a provider that cannot be connected to, so no attempt
/// is spent: the task waits in the queue (the circuit breaker spacing the
/// tries) until its deadline, and the admin stats say why.
#[tokio::test]
async fn an_unreachable_provider_keeps_the_task_queued_without_spending_attempts() {
    // A port with nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(move |cfg| {
        let sim = cfg.providers.get_mut("sim").unwrap();
        sim.base_url = Some(http_url(&url));
        // One failure opens the circuit until after the deadline: no
        // further try can race the reads below.
        sim.breaker_failures = 1;
        sim.breaker_cooldown = Dur(Duration::from_secs(60));
        cfg.models.get_mut("sim-image").unwrap().deadline = Dur(Duration::from_secs(3));
        cfg.dispatch.retry_base = Dur(Duration::from_millis(20));
    })
    .await;
    let id = app.post_task(&prompt("nobody home")).await.id();
    let health = wait_until(
        "the provider's error in admin stats",
        Duration::from_secs(10),
        || async {
            let stats = app.get_as(&app.admin_key, "/v1/admin/stats").await;
            let health = stats.body["providers"][0]["health"].clone();
            health["last_error"]["message"]
                .is_string()
                .then_some(health)
        },
    )
    .await;
    let message = health["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("connection refused"), "{health}");
    assert!(health["last_error"]["fix"].is_string(), "{health}");
    // The health is noted as the answer comes back, before the task is
    // handed back to the queue.
    let t = app
        .task_when(&id, "the failed submission to be stored", |t| {
            t.status_text() != "submitting"
        })
        .await;
    assert_eq!(t.status_text(), "queued", "{}", t.body);
    assert_eq!(t.body["attempts"], 0, "{}", t.body);
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    assert_eq!(t.status_text(), "failed", "{}", t.body);
    assert_eq!(t.body["error"]["code"], "deadline_exceeded");
    assert_eq!(t.body["attempts"], 0, "never submitted: {}", t.body);
}

#[tokio::test]
async fn each_retry_is_a_new_job_at_the_provider_never_the_failed_one_again() {
    let mock = spawn_failing_mock(4, 30, 1.0).await;
    let url = mock.url.clone();
    let app = spawn_app_with(move |cfg| {
        cfg.providers.get_mut("sim").unwrap().base_url = Some(http_url(&url));
    })
    .await;
    let id = app.post_task(&prompt("always fails")).await.id();
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    assert_eq!(t.status_text(), "failed", "{}", t.body);
    assert_eq!(t.body["error"]["code"], "worker_failed");
    assert_eq!(t.body["attempts"], 3);
    let stats = mock_stats(&mock).await;
    assert_eq!(
        (stats["submissions"].as_u64(), stats["duplicates"].as_u64()),
        (Some(3), Some(0)),
        "{stats}"
    );
}
