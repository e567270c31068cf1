use std::time::Duration;

use gengate_config::{Dur, DurRange};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_task_goes_queued_running_succeeded_with_a_real_image() {
    let app = spawn_app().await;
    let created = app
        .post_task(&json!({"model": "sim-image", "input": {"prompt": "a fox", "size": "768x768"}}))
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    assert_eq!(created.status_text(), "queued");
    assert_eq!(
        created.body["input"],
        json!({"prompt": "a fox", "size": "768x768", "steps": 20}),
        "defaults filled in"
    );
    assert!(created.body["eta_seconds"].as_u64().is_some());
    let id = created.id();
    assert!(id.starts_with("tsk_"));

    app.dispatch_until_idle().await;
    let done = app.get_task(&id).await;
    assert_eq!(done.status_text(), "succeeded", "{}", done.body);
    assert_eq!(done.body["attempts"], 1);
    assert_eq!(done.body["progress"], 1.0);
    assert!(
        done.body["finished_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    let out = &done.body["outputs"][0];
    assert_eq!(out["content_type"], "image/png");
    let url = out["url"].as_str().unwrap();
    assert!(
        url.starts_with(&app.base),
        "local media is served by gengate: {url}"
    );

    let file = app.client.get(url).send().await.unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "image/png");
    let bytes = file.bytes().await.unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(out["bytes"].as_u64(), Some(bytes.len() as u64));
    // 768x768 as asked: the IHDR chunk carries width and height.
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 768);
}

#[tokio::test]
async fn a_video_task_yields_a_playable_avi() {
    let app = spawn_app().await;
    let created = app
        .post_task(&json!({"model": "sim-video", "input": {"prompt": "waves"}}))
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    app.dispatch_until_idle().await;
    let done = app.get_task(&created.id()).await;
    assert_eq!(done.status_text(), "succeeded");
    assert_eq!(done.body["outputs"][0]["content_type"], "video/x-msvideo");
    let bytes = app
        .client
        .get(done.body["outputs"][0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"AVI ");
    assert_eq!(
        u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize,
        bytes.len() - 8
    );
}

#[tokio::test]
async fn retryable_provider_failures_are_retried_then_reported() {
    let app = spawn_app_with(|cfg| {
        cfg.providers.get_mut("sim").unwrap().fail_rate = 1.0;
    })
    .await;
    let created = app.post_task(&prompt("doomed")).await;
    app.dispatch_until_idle().await;
    let done = app.get_task(&created.id()).await;
    assert_eq!(done.status_text(), "failed", "{}", done.body);
    assert_eq!(done.body["attempts"], 3, "max_attempts of the model");
    assert_eq!(done.body["error"]["code"], "provider_failed");
    assert_eq!(done.body["error"]["message"], "simulated worker failure");
}

#[tokio::test]
async fn a_task_past_its_deadline_fails_with_deadline_exceeded() {
    let app = spawn_app_with(|cfg| {
        cfg.providers.get_mut("sim").unwrap().latency =
            DurRange(Duration::from_secs(30), Duration::from_secs(30));
        cfg.models.get_mut("sim-image").unwrap().deadline = Dur(Duration::from_millis(300));
    })
    .await;
    let created = app.post_task(&prompt("slow")).await;
    app.dispatch_until_idle().await;
    let done = app.get_task(&created.id()).await;
    assert_eq!(done.status_text(), "failed");
    assert_eq!(done.body["error"]["code"], "deadline_exceeded");
}

#[tokio::test]
async fn cancel_stops_queued_and_running_tasks_and_frees_the_slot() {
    let app = spawn_app_with(|cfg| {
        let sim = cfg.providers.get_mut("sim").unwrap();
        sim.concurrency = 1;
        sim.latency = DurRange(Duration::from_secs(30), Duration::from_secs(30));
    })
    .await;
    let first = app.post_task(&prompt("one")).await.id();
    let second = app.post_task(&prompt("two")).await.id();
    // Wait for the first to be running (it takes the only slot).
    app.task_when(&first, "the first task to run", |t| {
        t.status_text() == "running"
    })
    .await;
    assert_eq!(app.get_task(&second).await.body["queue_position"], 1);

    let c = app.cancel_as(&app.user_key, &second).await;
    assert_eq!((c.status, c.status_text()), (200, "canceled"), "{}", c.body);
    let c = app.cancel_as(&app.user_key, &first).await;
    assert_eq!((c.status, c.status_text()), (200, "canceled"));
    // Both done: nothing queued or in flight.
    app.dispatch_until_idle().await;
    let again = app.cancel_as(&app.user_key, &first).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error().0, "task_finished");
    // The slot is free again: a new task starts.
    let third = app.post_task(&prompt("three")).await.id();
    app.task_when(&third, "the canceled tasks' slot to run a new one", |t| {
        t.status_text() == "running"
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_leaves_everything_durable_and_a_restart_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config();
    cfg.server.data_dir = dir.path().to_owned();
    let sim = cfg.providers.get_mut("sim").unwrap();
    sim.latency = DurRange(Duration::from_millis(300), Duration::from_millis(600));
    sim.concurrency = 2;
    let cfg = cfg.finish().unwrap();
    let store = gengate_store::open(&cfg.store_url()).await.unwrap();
    let app = spawn_on(cfg.clone(), store, tempfile::tempdir().unwrap()).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(app.post_task(&prompt(&format!("p{i}"))).await.id());
    }
    let key = app.user_key.clone();
    app.stop().await;

    let store = gengate_store::open(&cfg.store_url()).await.unwrap();
    let app = spawn_on(cfg, store, dir).await;
    app.dispatch_until_idle().await;
    for id in &ids {
        let t = app.get_as(&key, &format!("/v1/tasks/{id}")).await;
        assert_eq!(t.status_text(), "succeeded", "{}", t.body);
        assert_eq!(t.body["attempts"], 1, "never submitted twice: {}", t.body);
    }
}
