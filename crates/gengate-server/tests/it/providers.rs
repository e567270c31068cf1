//! gengate against the wire-compatible RunningHub, Hunyuan and Kling mocks
//! over real HTTP: callbacks first with polling as the fallback, the polling
//! budget, account back-pressure, an account out of balance, and failover
//! while a provider's circuit is open.

use std::time::Duration;

use gengate_config::{Config, Dur, ModelConfig, ProviderKind};
use gengate_mock::sim::Behavior;
use gengate_mock::{self as mock, Faults, MockConfig, MockKind};
use gengate_testkit::db::{Engine, FreshDb};
use gengate_testkit::wait_until;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::helpers::*;

pub(crate) const KLING_CREDENTIALS: (&str, &str) = ("ak-test", "sk-test");
pub(crate) const RH_KEY: &str = "0123456789abcdef0123456789abcdef";
pub(crate) const HUNYUAN_CREDENTIALS: (&str, &str) = ("AKIDtestHunyuan", "hunyuan-secret");

pub(crate) struct Mock {
    pub(crate) url: String,
    _stop: DropGuard,
}

impl Mock {
    pub(crate) async fn stats(&self) -> Value {
        ca_client()
            .get(format!("{}/_mock/stats", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn inject(&self, code: &str, count: usize) {
        let r = ca_client()
            .post(format!("{}/_mock/inject", self.url))
            .json(&json!({"code": code, "count": count}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

pub(crate) async fn spawn_mock(
    kind: MockKind,
    credentials: &str,
    latency_ms: (u64, u64),
    concurrency: usize,
    faults: Faults,
) -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Over HTTPS, as the real providers are; the server trusts the test
    // CA through tls.ca_file (see `add_provider`).
    let url = format!("https://{}", listener.local_addr().unwrap());
    let behavior = Behavior {
        latency_min: Duration::from_millis(latency_ms.0),
        latency_max: Duration::from_millis(latency_ms.1),
        fail_rate: 0.0,
    };
    let mut cfg = MockConfig::new(behavior, concurrency, &url, credentials);
    cfg.faults = faults;
    let stop = CancellationToken::new();
    tokio::spawn(mock::serve(
        kind,
        listener,
        cfg,
        Some(test_ca().server.clone()),
        stop.clone(),
    ));
    Mock {
        url,
        _stop: stop.drop_guard(),
    }
}

async fn kling_mock(latency_ms: (u64, u64), concurrency: usize, faults: Faults) -> Mock {
    let creds = format!("{}:{}", KLING_CREDENTIALS.0, KLING_CREDENTIALS.1);
    spawn_mock(MockKind::Kling, &creds, latency_ms, concurrency, faults).await
}

/// Adds provider entry `name` of `kind` at `url` and model `model` on it.
pub(crate) fn add_provider(
    cfg: &mut Config,
    name: &str,
    kind: ProviderKind,
    url: &str,
    model_toml: &str,
) {
    trust_test_ca(cfg);
    let mut p = provider_config(kind);
    p.base_url = Some(http_url(url));
    p.concurrency = 8;
    p.timeout = Dur(Duration::from_secs(5));
    p.poll_rate = 500.0;
    p.retry_after = Dur(Duration::from_millis(100));
    p.breaker_cooldown = Dur(Duration::from_secs(60));
    match kind {
        ProviderKind::Kling => {
            p.access_key = KLING_CREDENTIALS.0.into();
            p.secret_key = KLING_CREDENTIALS.1.into();
        }
        ProviderKind::Runninghub => p.api_key = RH_KEY.into(),
        ProviderKind::Hunyuan => {
            p.secret_id = HUNYUAN_CREDENTIALS.0.into();
            p.secret_key = HUNYUAN_CREDENTIALS.1.into();
        }
        ProviderKind::Sim => {}
    }
    cfg.providers.insert(name.to_owned(), p);
    let model: ModelConfig = toml::from_str(model_toml).expect("model config parses");
    cfg.models.insert(format!("{name}-model"), model);
}

pub(crate) fn kling_model(provider: &str, expected: &str) -> String {
    format!(
        r#"provider = "{provider}"
kind = "video"
expected = "{expected}"
[input.prompt]
type = "string"
required = true
[params]
model_name = "kling-v1-6"
prompt = "{{{{prompt}}}}"
duration = "5"
"#
    )
}

pub(crate) fn task(model: &str, prompt: &str) -> Value {
    json!({"model": model, "input": {"prompt": prompt}})
}

/// Creates `n` tasks of `model` (prompts `"{prefix} {i}"`), each answered 202.
async fn create_tasks(app: &TestApp, model: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let r = app.post_task(&task(model, &format!("{prefix} {i}"))).await;
        assert_eq!(r.status, 202, "{}", r.body);
        ids.push(r.id());
    }
    ids
}

/// A RunningHub image model on provider entry `provider`: one workflow
/// whose node 6 takes the prompt.
pub(crate) fn runninghub_model(provider: &str, expected: &str) -> String {
    format!(
        r#"provider = "{provider}"
kind = "image"
expected = "{expected}"
[input.prompt]
type = "string"
required = true
[params]
workflowId = "1904136902449209346"
nodeInfoList = [{{nodeId = "6", fieldName = "text", fieldValue = "{{{{prompt}}}}"}}]
"#
    )
}

/// Waits until every task in `ids` is finished; returns them.
pub(crate) async fn wait_finished(app: &TestApp, ids: &[String], within: Duration) -> Vec<Value> {
    wait_until("every task to finish", within, || async {
        let mut all = Vec::new();
        for id in ids {
            let t = app.get_task(id).await;
            if !matches!(t.status_text(), "succeeded" | "failed" | "canceled") {
                return None;
            }
            all.push(t.body);
        }
        Some(all)
    })
    .await
}

pub(crate) async fn admin_stats(app: &TestApp, provider: &str) -> Value {
    let stats = app.get_as(&app.admin_key, "/v1/admin/stats").await;
    stats.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == provider)
        .cloned()
        .unwrap_or_else(|| panic!("no stats for {provider}: {}", stats.body))
}

#[tokio::test]
async fn kling_callbacks_finish_tasks_long_before_the_first_poll() {
    let mock = kling_mock((200, 400), 8, Faults::default()).await;
    let url = mock.url.clone();
    // Expected 20..30 s: with callbacks the fallback poll waits ~30 s, so
    // only a callback can finish these tasks within the test's 10 s.
    let app = spawn_app_with(move |cfg| {
        add_provider(
            cfg,
            "kling",
            ProviderKind::Kling,
            &url,
            &kling_model("kling", "20s..30s"),
        );
        cfg.dispatch.poll_max = Dur(Duration::from_secs(30));
    })
    .await;
    let ids = create_tasks(&app, "kling-model", "boat", 3).await;
    for t in wait_finished(&app, &ids, Duration::from_secs(10)).await {
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["provider"], "kling");
        assert!(
            t["outputs"][0]["url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}/media/t/", app.base)),
            "the output is copied to gengate's own media: {t}"
        );
    }
    let stats = admin_stats(&app, "kling").await;
    assert!(
        stats["callbacks_received"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    let ledger = mock.stats().await;
    assert_eq!(ledger["submissions"], 3, "{ledger}");
    // Each finish was confirmed by a query, and nothing more was asked.
    let polls = ledger["polls"].as_u64().unwrap();
    assert!((3..=9).contains(&polls), "{ledger}");
}

#[tokio::test]
async fn with_every_callback_dropped_tasks_still_finish_by_polling() {
    let faults = Faults {
        drop_webhooks: 1.0,
        ..Faults::default()
    };
    let mock = kling_mock((100, 300), 8, faults).await;
    let url = mock.url.clone();
    let app = spawn_app_with(move |cfg| {
        add_provider(
            cfg,
            "kling",
            ProviderKind::Kling,
            &url,
            &kling_model("kling", "100ms..300ms"),
        );
    })
    .await;
    let ids = create_tasks(&app, "kling-model", "lost", 5).await;
    for t in wait_finished(&app, &ids, Duration::from_secs(20)).await {
        assert_eq!(t["status"], "succeeded", "{t}");
    }
    let ledger = mock.stats().await;
    assert_eq!(ledger["callbacks_sent"], 0, "{ledger}");
    assert!(
        ledger["callbacks_dropped"].as_u64().unwrap() >= 5,
        "{ledger}"
    );
    assert_eq!(admin_stats(&app, "kling").await["callbacks_received"], 0);
}

#[tokio::test]
async fn callbacks_are_bound_to_their_task_and_refused_otherwise() {
    let mock = kling_mock(
        (100, 200),
        8,
        Faults {
            drop_webhooks: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let url = mock.url.clone();
    let app = spawn_app_with(move |cfg| {
        add_provider(
            cfg,
            "kling",
            ProviderKind::Kling,
            &url,
            &kling_model("kling", "100ms..200ms"),
        );
    })
    .await;
    let id = app.post_task(&task("kling-model", "bound")).await.id();
    let done = wait_finished(&app, std::slice::from_ref(&id), Duration::from_secs(20)).await;
    let body =
        json!({"task_id": "999", "task_status": "succeed", "task_info": {}, "task_result": {}});
    let post = |path: String, body: Value| {
        let client = app.client.clone();
        async move { read(client.post(path).json(&body).send().await.unwrap()).await }
    };
    // No token, a wrong token, another task's token: refused.
    let r = post(
        app.url(&format!("/v1/callbacks/kling?task={id}&token=00")),
        body.clone(),
    )
    .await;
    assert_eq!(
        (r.status, r.error().0.as_str()),
        (401, "invalid_callback_token")
    );
    let r = post(
        app.url(&format!("/v1/callbacks/kling?task={id}")),
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(app.url("/v1/callbacks/nope?task=x&token=y"), body.clone()).await;
    assert_eq!((r.status, r.error().0.as_str()), (404, "not_found"));
    let r = post(app.url("/v1/callbacks/sim?task=x&token=y"), body.clone()).await;
    assert_eq!(r.status, 404, "a provider without callbacks takes none");
    // A late callback with the right token changes nothing.
    let key = gengate_server::app::callback_key(&app.config.providers["kling"]);
    let token = gengate_engine::dispatch::callback_token(&key, "kling", &id);
    let r = post(
        app.url(&format!("/v1/callbacks/kling?task={id}&token={token}")),
        json!({"task_id": "999", "task_status": "failed"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["checking"], false);
    let r = post(
        app.url(&format!("/v1/callbacks/kling?task={id}&token={token}")),
        json!(["not", "a", "callback"]),
    )
    .await;
    assert_eq!((r.status, r.error().0.as_str()), (400, "invalid_callback"));
    assert_eq!(app.get_task(&id).await.body, done[0], "nothing changed");
}

#[tokio::test]
async fn an_account_full_answer_lowers_the_slots_used_and_spends_no_attempt() {
    let mock = spawn_mock(
        MockKind::Runninghub,
        RH_KEY,
        (150, 300),
        2,
        Faults::default(),
    )
    .await;
    let url = mock.url.clone();
    let app = spawn_app_with(move |cfg| {
        add_provider(
            cfg,
            "rh",
            ProviderKind::Runninghub,
            &url,
            &runninghub_model("rh", "150ms..300ms"),
        );
        cfg.providers.get_mut("rh").unwrap().concurrency = 6;
    })
    .await;
    let ids = create_tasks(&app, "rh-model", "full", 12).await;
    for t in wait_finished(&app, &ids, Duration::from_secs(30)).await {
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["attempts"], 1, "back-pressure is not an attempt: {t}");
    }
    let ledger = mock.stats().await;
    assert_eq!(ledger["submissions"], 12, "{ledger}");
    assert!(
        ledger["peak_concurrency"].as_u64().unwrap() <= 2,
        "{ledger}"
    );
    let refused = ledger["refused"].as_u64().unwrap();
    assert!(refused > 0, "the account limit was reached: {ledger}");
    // After the first "full", gengate keeps to what the account takes
    // instead of hammering it for every task.
    assert!(refused < 12, "{ledger}");
    let stats = admin_stats(&app, "rh").await;
    assert!(
        stats["health"]["effective_limit"].as_u64().unwrap() < 6,
        "{stats}"
    );
}

#[tokio::test]
async fn an_account_out_of_balance_stops_dispatching_and_shows_in_admin_stats() {
    let mock = kling_mock((100, 200), 8, Faults::default()).await;
    mock.inject("1102", 1).await;
    let url = mock.url.clone();
    let app = spawn_app_with(move |cfg| {
        add_provider(
            cfg,
            "kling",
            ProviderKind::Kling,
            &url,
            &kling_model("kling", "100ms..200ms"),
        );
    })
    .await;
    let first = app.post_task(&task("kling-model", "no money")).await.id();
    let stats = wait_until(
        "the account problem in admin stats",
        Duration::from_secs(10),
        || async {
            let stats = admin_stats(&app, "kling").await;
            (stats["health"]["account_problem"] == "exhausted").then_some(stats)
        },
    )
    .await;
    assert!(
        stats["health"]["account_message"]
            .as_str()
            .unwrap()
            .contains("1102"),
        "{stats}"
    );
    let second = app
        .post_task(&task("kling-model", "still no money"))
        .await
        .id();
    // Nothing may happen here: give a wrongly dispatching lane the time to
    // show itself (an absence has no event to wait for).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in [&first, &second] {
        let t = app.get_task(id).await;
        assert_eq!(
            t.status_text(),
            "queued",
            "waits for the account: {}",
            t.body
        );
        assert_eq!(t.body["attempts"], 0, "{}", t.body);
    }
    assert_eq!(mock.stats().await["submissions"], 0);
}

#[tokio::test]
async fn a_model_fails_over_to_its_secondary_provider_while_the_primary_circuit_is_open() {
    fails_over(None).await;
}

/// The same on a shared store (PostgreSQL), where the queue is the store's
/// and every node's dispatcher claims from it.
#[tokio::test]
async fn on_a_shared_store_a_model_fails_over_while_the_primary_circuit_is_open() {
    let Some(db) = FreshDb::create(Engine::Postgres, "gg_failover") else {
        return;
    };
    let url = db.url;
    gengate_store::migrate(&url, &gengate_store::OpenOptions::default())
        .await
        .unwrap();
    fails_over(Some(url)).await;
}

async fn fails_over(store_url: Option<String>) {
    let broken = kling_mock(
        (100, 200),
        8,
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    )
    .await;
    let backup = kling_mock((100, 200), 8, Faults::default()).await;
    let (broken_url, backup_url) = (broken.url.clone(), backup.url.clone());
    let app = spawn_app_with(move |cfg| {
        add_provider(
            cfg,
            "kling-a",
            ProviderKind::Kling,
            &broken_url,
            &kling_model("kling-a", "100ms..200ms"),
        );
        add_provider(
            cfg,
            "kling-b",
            ProviderKind::Kling,
            &backup_url,
            &kling_model("kling-b", "100ms..200ms"),
        );
        cfg.providers.get_mut("kling-a").unwrap().breaker_failures = 2;
        cfg.models.get_mut("kling-a-model").unwrap().failover = Some("kling-b".into());
        cfg.models.get_mut("kling-a-model").unwrap().max_attempts = 5;
        if store_url.is_some() {
            cfg.store.url = store_url;
        }
    })
    .await;
    let ids = create_tasks(&app, "kling-a-model", "fail over", 6).await;
    for t in wait_finished(&app, &ids, Duration::from_secs(30)).await {
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["provider"], "kling-b", "{t}");
    }
    let stats = admin_stats(&app, "kling-a").await;
    assert_eq!(stats["health"]["circuit"], "open", "{stats}");
    assert_eq!(broken.stats().await["submissions"], 0);
    assert_eq!(backup.stats().await["submissions"], 6);
}
