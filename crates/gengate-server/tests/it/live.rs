//! Live updates: long polls and server-sent events with resumption.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

/// Reads server-sent events until `stop` says so or the stream ends.
/// Returns (event name, id, data) triples and whether the stream ended.
async fn read_events(
    resp: &mut reqwest::Response,
    mut stop: impl FnMut(&[(String, String, Value)]) -> bool,
) -> (Vec<(String, String, Value)>, bool) {
    let mut buf = String::new();
    let mut events = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(Duration::from_secs(20), resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return (events, true),
            Ok(Err(e)) => panic!("stream failed: {e}"),
            Err(_) => panic!("no event within 20 s; got {events:?}"),
        };
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut name, mut id, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if name.is_empty() {
                continue; // keep-alive comment
            }
            events.push((name, id, serde_json::from_str(&data).unwrap_or(Value::Null)));
            if stop(&events) {
                return (events, false);
            }
        }
    }
}

#[tokio::test]
async fn a_long_poll_returns_when_the_status_changes_and_not_before() {
    let app = spawn_app_with(|cfg| {
        cfg.providers.get_mut("sim").unwrap().latency =
            gengate_config::DurRange(Duration::from_millis(400), Duration::from_millis(400));
    })
    .await;
    let created = app.post_task(&prompt("wait for me")).await;
    let id = created.id();
    let mut status = created.status_text().to_owned();
    let mut seen = vec![status.clone()];
    while status != "succeeded" {
        let started = Instant::now();
        let r = app
            .get_as(&app.user_key, &format!("/v1/tasks/{id}?wait=20"))
            .await;
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "answered on the change, not at the timeout"
        );
        assert_ne!(
            r.status_text(),
            status,
            "a long poll answers with a new status"
        );
        status = r.status_text().to_owned();
        seen.push(status.clone());
    }
    assert_eq!(seen.last().map(String::as_str), Some("succeeded"));
    // Finished tasks answer at once.
    let started = Instant::now();
    assert_eq!(
        app.get_as(&app.user_key, &format!("/v1/tasks/{id}?wait=30"))
            .await
            .status_text(),
        "succeeded"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let bad = app
        .get_as(&app.user_key, &format!("/v1/tasks/{id}?wait=61"))
        .await;
    assert_eq!((bad.status, bad.error().1.as_deref()), (422, Some("wait")));
}

#[tokio::test]
async fn a_long_poll_with_nothing_happening_answers_at_its_timeout_with_the_same_state() {
    let app = spawn_app_with(|cfg| {
        cfg.providers.get_mut("sim").unwrap().concurrency = 1;
        cfg.providers.get_mut("sim").unwrap().latency =
            gengate_config::DurRange(Duration::from_secs(30), Duration::from_secs(30));
    })
    .await;
    app.post_task(&prompt("hog")).await;
    let queued = app.post_task(&prompt("stuck behind")).await.id();
    let started = Instant::now();
    let r = app
        .get_as(&app.user_key, &format!("/v1/tasks/{queued}?wait=1"))
        .await;
    assert_eq!((r.status, r.status_text()), (200, "queued"));
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn task_events_stream_every_change_end_at_the_result_and_resume() {
    let app = spawn_app().await;
    let id = app.post_task(&prompt("stream me")).await.id();
    let mut resp = app
        .open_as(&app.user_key, &format!("/v1/tasks/{id}/events"), None)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (events, ended) = read_events(&mut resp, |_| false).await;
    assert!(ended, "the stream ends after the task finishes");
    let statuses: Vec<&str> = events
        .iter()
        .map(|(_, _, d)| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.last(), Some(&"succeeded"), "{statuses:?}");
    assert!(statuses.contains(&"running"), "{statuses:?}");
    let ids: Vec<&str> = events.iter().map(|(_, id, _)| id.as_str()).collect();
    let seqs: Vec<u64> = ids
        .iter()
        .map(|i| i.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {ids:?}"
    );

    // Resuming after the last event of a finished task: nothing more (204).
    let last = ids.last().unwrap().to_string();
    let again = app
        .open_as(
            &app.user_key,
            &format!("/v1/tasks/{id}/events"),
            Some(&last),
        )
        .await;
    assert_eq!(again.status(), 204);
    // Resuming from the first event replays the rest.
    let mut resumed = app
        .open_as(
            &app.user_key,
            &format!("/v1/tasks/{id}/events"),
            Some(ids[0]),
        )
        .await;
    let (replayed, ended) = read_events(&mut resumed, |_| false).await;
    assert!(ended);
    assert_eq!(replayed.len(), events.len() - 1);
    // Others' tasks stay invisible.
    let bob = app.key_for("bob").await;
    let r = app
        .open_as(&bob, &format!("/v1/tasks/{id}/events"), None)
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_callers_event_stream_carries_all_their_tasks_and_only_theirs() {
    let app = spawn_app().await;
    let mut resp = app.open_as(&app.user_key, "/v1/events", None).await;
    assert_eq!(resp.status(), 200);
    let bob = app.key_for("bob").await;
    app.post_task_as(&bob, &prompt("not yours"), None).await;
    let a = app.post_task(&prompt("one")).await.id();
    let b = app.post_task(&prompt("two")).await.id();
    let done = |evs: &[(String, String, Value)]| {
        [&a, &b].iter().all(|id| {
            evs.iter()
                .any(|(_, _, d)| d["id"] == id.as_str() && d["status"] == "succeeded")
        })
    };
    let (events, _) = read_events(&mut resp, done).await;
    assert!(
        events
            .iter()
            .all(|(name, _, d)| name == "task" && (d["id"] == a.as_str() || d["id"] == b.as_str()))
    );

    // Resume from the middle: the rest is replayed.
    let mid = &events[events.len() / 2].1;
    let mut resumed = app.open_as(&app.user_key, "/v1/events", Some(mid)).await;
    let want = events.len() - events.len() / 2 - 1;
    let (replayed, _) = read_events(&mut resumed, |evs| evs.len() >= want).await;
    assert_eq!(
        replayed.iter().map(|e| &e.1).collect::<Vec<_>>(),
        events[events.len() / 2 + 1..]
            .iter()
            .map(|e| &e.1)
            .collect::<Vec<_>>()
    );

    // An id from another process (before a restart) cannot be resumed: reset.
    let mut stale = app.open_as(&app.user_key, "/v1/events", Some("1-5")).await;
    let (first, _) = read_events(&mut stale, |evs| !evs.is_empty()).await;
    assert_eq!(first[0].0, "reset");
}

#[tokio::test]
async fn open_event_streams_do_not_hold_up_shutdown() {
    let app = spawn_app().await;
    let resp = app.open_as(&app.user_key, "/v1/events", None).await;
    assert_eq!(resp.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("shutdown finished with a stream open");
    drop(resp);
}
