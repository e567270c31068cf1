//! One user's backlog does not starve another user.

use std::time::Duration;

use gengate_config::DurRange;

use crate::helpers::*;

#[tokio::test]
async fn a_single_task_of_user_b_is_not_stuck_behind_user_a_s_500() {
    let app = spawn_app_with(|cfg| {
        let sim = cfg.providers.get_mut("sim").unwrap();
        sim.concurrency = 1;
        sim.latency = DurRange(Duration::from_millis(40), Duration::from_millis(40));
    })
    .await;
    let a = app.key_for("user-a").await;
    let b = app.key_for("user-b").await;
    for i in 0..500 {
        let r = app.post_task_as(&a, &prompt(&format!("a{i}")), None).await;
        assert_eq!(r.status, 202);
    }
    let b_task = app.post_task_as(&b, &prompt("b"), None).await;
    let b_id = b_task.id();
    let b_created = b_task.body["created_at"].as_str().unwrap().to_owned();
    assert!(
        b_task.body["queue_position"].as_u64().unwrap() <= 2,
        "B is told it is next: {}",
        b_task.body
    );

    let b_started = app
        .task_when_as(&b, &b_id, "B's task to start", |t| {
            t.body["started_at"].is_string()
        })
        .await
        .body["started_at"]
        .as_str()
        .unwrap()
        .to_owned();
    // Count A's tasks that started after B was queued and before B started.
    let mut before = 0;
    let mut cursor = String::new();
    loop {
        let page = app
            .get_as(&a, &format!("/v1/tasks?limit=100{cursor}"))
            .await;
        for t in page.body["data"].as_array().unwrap() {
            if t["started_at"]
                .as_str()
                .is_some_and(|s| s > b_created.as_str() && s < b_started.as_str())
            {
                before += 1;
            }
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(
        before <= 2,
        "B started after {before} of A's tasks, not within the next slot or two"
    );
}
