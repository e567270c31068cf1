//! The store conformance suite: the whole `Store` API, written against the
//! trait so every backend runs the same checks. SQLite always runs.

use std::sync::Arc;

use gengate_core::task::NewTask;
use gengate_core::{Event, Role, Status, apply};
use gengate_store::{IdempotencyKey, ListQuery, Store, StoreError};
use serde_json::json;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (gengate_store::open(&url).await.unwrap(), dir)
}

fn new_task(id_n: u128, user: i64, created_at: i64) -> NewTask {
    NewTask {
        id: gengate_core::id::task_id(created_at, id_n),
        user_id: user,
        model: "sim-image".into(),
        provider: "sim".into(),
        input: json!({"prompt": "p"}),
        public: id_n.is_multiple_of(2),
        priority: 0,
        max_attempts: 3,
        deadline_at: created_at + 60_000,
        created_at,
        webhook_url: None,
    }
}

async fn user(store: &dyn Store, name: &str) -> i64 {
    store
        .create_key(
            name,
            Role::User,
            &format!("hash-{name}"),
            &format!("gg_{name}"),
            1,
        )
        .await
        .unwrap()
        .user_id
}

#[tokio::test]
async fn sqlite_keys_are_created_found_listed_and_revoked() {
    let (store, _dir) = sqlite().await;
    assert_eq!(store.count_keys().await.unwrap(), 0);
    let a = store
        .create_key("ann", Role::Admin, "h1", "gg_aaaa", 10)
        .await
        .unwrap();
    let b = store
        .create_key("ann", Role::User, "h2", "gg_bbbb", 11)
        .await
        .unwrap();
    assert_eq!(a.user_id, b.user_id, "one user, two keys");
    let found = store.find_key("h1").await.unwrap().unwrap();
    assert_eq!((found.user_name.as_str(), found.role), ("ann", Role::Admin));
    assert!(store.find_key("nope").await.unwrap().is_none());
    assert!(matches!(
        store
            .create_key("bob", Role::User, "h1", "gg_cccc", 12)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.list_keys().await.unwrap().len(), 2);
    assert!(store.revoke_key("gg_aaaa", 20).await.unwrap());
    assert!(store.revoke_key(&b.id.to_string(), 21).await.unwrap());
    assert!(
        !store.revoke_key("gg_aaaa", 22).await.unwrap(),
        "already revoked"
    );
    assert!(store.find_key("h1").await.unwrap().is_none());
    assert_eq!(store.list_keys().await.unwrap()[0].revoked_at, Some(20));
}

#[tokio::test]
async fn sqlite_updates_are_conditional_on_the_version() {
    let (store, _dir) = sqlite().await;
    let u = user(&*store, "u").await;
    let task = store
        .create_task(new_task(1, u, 100), None)
        .await
        .unwrap()
        .task;
    let (mut claimed, _) = apply(&task, Event::Claim, 200).unwrap();
    claimed.version = task.version + 1;
    assert!(
        store
            .update_task(&claimed, gengate_store::Fence::Lease)
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_task(&claimed, gengate_store::Fence::Lease)
            .await
            .unwrap(),
        "a stale writer cannot win"
    );
    let stored = store.get_task(&task.id).await.unwrap().unwrap();
    assert_eq!(stored, claimed);
    assert_eq!(store.active_tasks().await.unwrap().len(), 1);
    let counts = store.status_counts().await.unwrap();
    assert_eq!((counts[0].status, counts[0].count), (Status::Submitting, 1));
}

/// Moves a stored task through `events`, storing each step.
async fn drive(
    store: &dyn Store,
    mut task: gengate_core::Task,
    events: Vec<Event>,
) -> gengate_core::Task {
    for (i, e) in events.into_iter().enumerate() {
        let (mut next, _) = apply(&task, e, 1000 + i as i64).unwrap();
        next.version = task.version + 1;
        assert!(
            store
                .update_task(&next, gengate_store::Fence::Lease)
                .await
                .unwrap()
        );
        task = next;
    }
    task
}

#[tokio::test]
async fn sqlite_storing_tasks_are_active_with_their_outputs_and_finished_ones_can_be_deleted() {
    let (store, _dir) = sqlite().await;
    let u = user(&*store, "u").await;
    let created = store
        .create_task(
            new_task(1, u, 100),
            Some(IdempotencyKey {
                key: "k".into(),
                request_hash: "h".into(),
                not_before: 0,
            }),
        )
        .await
        .unwrap()
        .task;
    let out = gengate_core::Output::new("https://provider/x.png", "image/png");
    let storing = drive(
        &*store,
        created,
        vec![
            Event::Claim,
            Event::Accept {
                provider_task_id: "p1".into(),
            },
            Event::Succeed {
                outputs: vec![out.clone()],
            },
        ],
    )
    .await;
    assert_eq!(storing.status, Status::Storing);
    let active = store.active_tasks().await.unwrap();
    assert_eq!(active.len(), 1, "recovery finds storing tasks");
    assert_eq!(
        active[0].outputs,
        vec![out.clone()],
        "with the provider's outputs"
    );
    assert!(
        !store.delete_task(&storing.id).await.unwrap(),
        "unfinished tasks stay"
    );

    let stored = gengate_core::Output {
        key: Some("t/x/0.png".into()),
        sha256: Some("ab".repeat(32)),
        thumbnail_url: Some("https://cdn/t/x/0.png.thumb.jpg".into()),
        bytes: Some(5),
        ..out
    };
    let done = drive(
        &*store,
        storing,
        vec![Event::Stored {
            outputs: vec![stored.clone()],
        }],
    )
    .await;
    let read = store.get_task(&done.id).await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.outputs.clone()),
        (Status::Succeeded, vec![stored])
    );
    assert!(store.active_tasks().await.unwrap().is_empty());

    assert!(store.delete_task(&done.id).await.unwrap());
    assert!(store.get_task(&done.id).await.unwrap().is_none());
    assert!(!store.delete_task(&done.id).await.unwrap(), "already gone");
    // The idempotency key went with it: the same key makes a new task.
    let again = store
        .create_task(
            new_task(2, u, 200),
            Some(IdempotencyKey {
                key: "k".into(),
                request_hash: "h".into(),
                not_before: 0,
            }),
        )
        .await
        .unwrap();
    assert!(!again.replayed);
}

#[tokio::test]
async fn sqlite_idempotency_replays_refuses_mismatches_and_expires() {
    let (store, _dir) = sqlite().await;
    let u = user(&*store, "u").await;
    let key = |hash: &str, not_before| IdempotencyKey {
        key: "k1".into(),
        request_hash: hash.into(),
        not_before,
    };
    let first = store
        .create_task(new_task(1, u, 1000), Some(key("h", 0)))
        .await
        .unwrap();
    assert!(!first.replayed);
    let again = store
        .create_task(new_task(2, u, 1001), Some(key("h", 0)))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.task.id, first.task.id);
    assert!(matches!(
        store
            .create_task(new_task(3, u, 1002), Some(key("other", 0)))
            .await,
        Err(StoreError::IdempotencyMismatch)
    ));
    // Past retention the key is free again.
    let later = store
        .create_task(new_task(4, u, 5000), Some(key("other", 2000)))
        .await
        .unwrap();
    assert!(!later.replayed);
    assert_eq!(store.purge_idempotency(10_000).await.unwrap(), 1);
}

#[tokio::test]
async fn sqlite_lists_newest_first_with_filters_cursor_and_gallery() {
    let (store, _dir) = sqlite().await;
    let a = user(&*store, "a").await;
    let b = user(&*store, "b").await;
    for i in 0..10u128 {
        store
            .create_task(
                new_task(i, if i < 7 { a } else { b }, 1000 + i as i64),
                None,
            )
            .await
            .unwrap();
    }
    let q = |user_id, before: Option<String>, limit| ListQuery {
        user_id,
        before,
        limit,
        ..Default::default()
    };
    let page = store.list_tasks(&q(Some(a), None, 4)).await.unwrap();
    assert_eq!(page.len(), 4);
    assert!(page.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let rest = store
        .list_tasks(&q(Some(a), Some(page[3].id.clone()), 10))
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    assert!(
        store
            .list_tasks(&q(Some(b), None, 10))
            .await
            .unwrap()
            .iter()
            .all(|t| t.user_id == b)
    );
    let gallery = ListQuery {
        gallery: true,
        limit: 10,
        ..Default::default()
    };
    assert!(
        store.list_tasks(&gallery).await.unwrap().is_empty(),
        "nothing succeeded yet"
    );
    let status = ListQuery {
        status: Some(Status::Queued),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.list_tasks(&status).await.unwrap().len(), 10);
}

#[tokio::test]
async fn sqlite_concurrent_creates_are_all_durable_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = gengate_store::open(&url).await.unwrap();
    let u = user(&*store, "u").await;
    let mut handles = Vec::new();
    for i in 0..500u128 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store.create_task(new_task(i, u, 1000), None).await.unwrap()
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    drop(store);
    let reopened = gengate_store::open(&url).await.unwrap();
    assert_eq!(reopened.active_tasks().await.unwrap().len(), 500);
}

#[tokio::test]
async fn unknown_and_not_yet_available_store_urls_are_refused_clearly() {
    for url in ["redis://x", "postgres://localhost/test", "nonsense"] {
        let Err(err) = gengate_store::open(url).await else {
            panic!("{url} opened")
        };
        assert!(matches!(err, StoreError::Config(_)), "{url}: {err}");
    }
}

/// The plans of the queries the API issues: each uses an index and none
/// scans the table or sorts in a temporary B-tree.
#[tokio::test]
async fn sqlite_api_queries_use_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = gengate_store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let plan = |sql: &str, params: &[rusqlite::types::Value]| -> String {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = st
            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join(" | ")
    };
    let cursor = Some("tsk_01M8C1ZESCAG39D4DQZP05YJPX".to_owned());
    let cases = [
        (
            ListQuery {
                user_id: Some(1),
                limit: 21,
                ..Default::default()
            },
            "tasks_by_user",
        ),
        (
            ListQuery {
                user_id: Some(1),
                before: cursor.clone(),
                limit: 21,
                ..Default::default()
            },
            "tasks_by_user",
        ),
        (
            ListQuery {
                user_id: Some(1),
                status: Some(Status::Running),
                model: Some("m".into()),
                limit: 21,
                ..Default::default()
            },
            "tasks_by_user",
        ),
        (
            ListQuery {
                gallery: true,
                limit: 21,
                ..Default::default()
            },
            "tasks_gallery",
        ),
        (
            ListQuery {
                gallery: true,
                before: cursor,
                model: Some("m".into()),
                limit: 21,
                ..Default::default()
            },
            "tasks_gallery",
        ),
    ];
    for (q, index) in cases {
        let (sql, params) = gengate_store::sqlite::list_sql(&q);
        let p = plan(&sql, &params);
        assert!(p.contains(index), "{q:?} should use {index}: {p}");
        // "SCAN tasks USING INDEX tasks_gallery" walks the small partial index
        // in id order and stops at the limit; a SCAN without an index reads
        // the table.
        assert!(
            p.split(" | ")
                .all(|step| !step.starts_with("SCAN") || step.contains("USING")),
            "{q:?} scans the table: {p}"
        );
        assert!(!p.contains("TEMP B-TREE"), "{q:?} sorts: {p}");
    }
    let by_id = plan(
        "SELECT * FROM tasks WHERE id = ?",
        &[rusqlite::types::Value::Text("x".into())],
    );
    assert!(
        by_id.contains("PRIMARY KEY") || by_id.contains("USING INDEX"),
        "{by_id}"
    );
    let key = plan(
        "SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
        &[rusqlite::types::Value::Text("h".into())],
    );
    assert!(key.contains("USING INDEX"), "{key}");
    let active = plan(
        "SELECT * FROM tasks WHERE status IN ('queued', 'submitting', 'running', 'storing') ORDER BY id",
        &[],
    );
    assert!(active.contains("tasks_active"), "{active}");
}
