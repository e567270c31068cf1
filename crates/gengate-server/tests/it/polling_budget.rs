//! The polling budget: 10,000 tasks in flight at a provider whose tasks take
//! 30–60 s, followed by polling alone (RunningHub without callbacks).
//!
//! Budget: at most 3 status queries per task on average. With the model's
//! expected run time configured as `30s..60s`, the first query goes when the
//! quickest tasks finish (~30 s) and the next ones every half spread
//! (~15 s): a task is found at ~30, ~45 or ~60 s, 2.5 queries on average for
//! uniformly spread run times, plus jitter. Asking sooner only costs
//! queries; asking later delays results by more than the spread allows.

use std::time::{Duration, Instant};

use gengate_config::{Dur, ModelConfig, ProviderKind};
use gengate_mock::sim::Behavior;
use gengate_mock::{self as mock, MockConfig, MockKind};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

const TASKS: usize = 10_000;
const KEY: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_of_30_to_60_s_cost_at_most_3_polls_each() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_url = format!("http://{}", listener.local_addr().unwrap());
    let behavior = Behavior {
        latency_min: Duration::from_secs(30),
        latency_max: Duration::from_secs(60),
        fail_rate: 0.0,
    };
    let stop = CancellationToken::new();
    tokio::spawn(mock::serve(
        MockKind::Runninghub,
        listener,
        MockConfig::new(behavior, TASKS, &mock_url, KEY),
        None,
        stop.clone(),
    ));
    let _stop = stop.drop_guard();
    let url = mock_url.clone();
    let app = spawn_app_with(move |cfg| {
        let mut p = provider_config(ProviderKind::Runninghub);
        p.base_url = Some(http_url(&url));
        p.api_key = KEY.into();
        p.concurrency = TASKS as u32;
        p.callbacks = false;
        p.poll_rate = 2000.0;
        cfg.providers.insert("rh".into(), p);
        // Outputs are copied after the provider is done; this test is about
        // the provider's side, so copying (which here also renders every
        // file in the mock) is kept from starving the polls.
        cfg.media.concurrency = 1;
        cfg.dispatch.poll_initial = Dur(Duration::from_millis(500));
        cfg.dispatch.poll_max = Dur(Duration::from_secs(15));
        let model: ModelConfig =
            toml::from_str(&crate::providers::runninghub_model("rh", "30s..60s")).unwrap();
        cfg.models.insert("rh-image".into(), model);
    })
    .await;
    let key = app.user_key.clone();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..32 {
        let (client, url, key) = (app.client.clone(), app.url("/v1/tasks"), key.clone());
        workers.spawn(async move {
            let mut made = 0;
            for i in (w..TASKS).step_by(32) {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"model": "rh-image", "input": {"prompt": format!("budget {i}")}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                made += 1;
            }
            made
        });
    }
    let mut created = 0;
    while let Some(made) = workers.join_next().await {
        created += made.unwrap();
    }
    assert_eq!(created, TASKS);
    let deadline = Instant::now() + Duration::from_secs(150);
    let stats = loop {
        let stats = app.get_as(&app.admin_key, "/v1/admin/stats").await.body;
        let succeeded: u64 = stats["tasks"]
            .as_array()
            .unwrap()
            .iter()
            // Done at the provider: storing (outputs being copied) or succeeded.
            .filter(|c| {
                c["provider"] == "rh" && (c["status"] == "succeeded" || c["status"] == "storing")
            })
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        if succeeded == TASKS as u64 {
            break stats;
        }
        assert!(
            Instant::now() < deadline,
            "{succeeded} of {TASKS} succeeded in time: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ledger: Value = reqwest::get(format!("{mock_url}/_mock/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["submissions"], TASKS, "{ledger}");
    let polls = ledger["polls"].as_u64().unwrap() as f64;
    let per_task = polls / TASKS as f64;
    eprintln!("polling budget: {polls} polls for {TASKS} tasks = {per_task:.2} per task; {stats}");
    assert!(per_task <= 3.0, "{per_task:.2} polls per task: {ledger}");
}
