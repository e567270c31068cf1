//! The store conformance suite: the whole `Store` API, written against the
//! trait so that every backend runs the same checks. Each check is written
//! once and run by `sqlite::…`, `postgres::…` and `mysql::…` tests (see
//! [`db`] for where the databases come from); the cluster checks in
//! [`shared`] run on the shared backends only.

mod db;
mod money;
mod shared;
mod tls;

use db::Db;
use gengate_core::task::NewTask;
use gengate_core::{Event, Output, Role, Status, Task, TaskError, apply};
use gengate_store::{Fence, IdempotencyKey, ListQuery, Store, StoreError};
use money::{
    a_balance_changed_behind_the_ledgers_back_is_found,
    a_short_balance_or_a_full_cap_refuses_and_stores_nothing, concurrent_creates_never_overdraw,
    credits_are_held_then_settled_or_refunded_once, grants_settings_and_the_audit_trail,
    the_minute_bucket_and_the_day_count_hold_in_the_store,
};
use serde_json::json;

/// Generates one `#[tokio::test]` per backend for each check: the checks in
/// `all` on every backend, those in `shared` on PostgreSQL and MySQL.
macro_rules! suite {
    (all: [$($check:ident),* $(,)?], shared: [$($cluster:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                crate::db::run(crate::db::Kind::Sqlite, crate::$check).await;
            })*
        }
        suite!(@shared postgres, Postgres, [$($check),*], [$($cluster),*]);
        suite!(@shared mysql, MySql, [$($check),*], [$($cluster),*]);
    };
    (@shared $module:ident, $kind:ident, [$($check:ident),*], [$($cluster:ident),*]) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                crate::db::run(crate::db::Kind::$kind, crate::$check).await;
            })*
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $cluster() {
                crate::db::run(crate::db::Kind::$kind, crate::shared::$cluster).await;
            })*
        }
    };
}

suite! {
    all: [
        keys_are_created_found_listed_and_revoked,
        service_keys_are_stored_and_end_users_made_once,
        updates_are_conditional_on_the_version,
        racing_writers_of_one_version_have_one_winner,
        a_reroute_stores_the_new_provider,
        storing_tasks_are_active_with_their_outputs_and_finished_ones_can_be_deleted,
        idempotency_replays_refuses_mismatches_and_expires,
        lists_newest_first_with_filters_cursor_and_gallery,
        concurrent_creates_are_all_durable_after_reopening,
        terminal_updates_queue_their_webhook_in_the_same_write,
        overdue_tasks_come_by_deadline_and_changes_by_time,
        lookups_of_ids_no_task_can_have_find_nothing,
        facts_name_the_engine_and_the_schema,
        credits_are_held_then_settled_or_refunded_once,
        a_short_balance_or_a_full_cap_refuses_and_stores_nothing,
        concurrent_creates_never_overdraw,
        grants_settings_and_the_audit_trail,
        a_balance_changed_behind_the_ledgers_back_is_found,
        the_minute_bucket_and_the_day_count_hold_in_the_store,
    ],
    shared: [
        claims_never_exceed_the_limit_across_nodes,
        one_claim_takes_turns_across_users_after_priority,
        a_node_that_lost_its_lease_writes_nothing_while_cancels_go_through,
        take_over_bumps_the_version_and_moves_the_lease,
        released_leases_are_taken_over_at_once_and_unlisted_ones_run_out,
        renewed_leases_outlive_their_ttl,
        concurrent_creates_with_one_key_make_one_task_across_nodes,
        unmigrated_and_newer_databases_are_refused_and_migrate_is_idempotent,
        subscribers_hear_changes_made_through_other_nodes,
        facts_report_the_server_and_the_nodes_that_renewed,
        pool_stats_count_acquisitions,
        busy_nodes_claim_renew_and_take_over_without_errors,
        a_due_delivery_goes_to_one_node_at_a_time,
        concurrent_creates_on_three_nodes_share_one_balance,
    ],
}

pub(crate) fn new_task(id_n: u128, user: i64, created_at: i64) -> NewTask {
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
        billing: None,
        limits: Default::default(),
    }
}

pub(crate) async fn user(store: &dyn Store, name: &str) -> i64 {
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

/// `event` applied to `task` at `now`, as the next version.
pub(crate) fn next(task: &Task, event: Event, now: i64) -> Task {
    let (mut next, _) = apply(task, event, now).unwrap();
    next.version = task.version + 1;
    next
}

/// Moves a stored task through `events`, storing each step.
pub(crate) async fn drive(store: &dyn Store, mut task: Task, events: Vec<Event>) -> Task {
    for (i, e) in events.into_iter().enumerate() {
        let next = next(&task, e, 1000 + i as i64);
        assert!(store.update_task(&next, Fence::Lease).await.unwrap());
        task = next;
    }
    task
}

fn accept() -> Event {
    Event::Accept {
        provider_task_id: "p1".into(),
    }
}

async fn keys_are_created_found_listed_and_revoked(db: Db) {
    let store = db.open().await;
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
    assert_ne!(a.id, b.id);
    let other = store
        .create_key("Ann", Role::User, "h3", "gg_cccc", 12)
        .await
        .unwrap();
    assert_ne!(other.user_id, a.user_id, "user names are case-sensitive");
    let found = store.find_key("h1").await.unwrap().unwrap();
    assert_eq!((found.user_name.as_str(), found.role), ("ann", Role::Admin));
    assert_eq!((found.key_id, found.user_id), (a.id, a.user_id));
    assert!(store.find_key("nope").await.unwrap().is_none());
    assert!(
        store.find_key("H1").await.unwrap().is_none(),
        "hashes are exact"
    );
    assert!(matches!(
        store
            .create_key("bob", Role::User, "h1", "gg_dddd", 13)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.list_keys().await.unwrap().len(), 3);
    assert_eq!(store.count_keys().await.unwrap(), 3);
    assert!(store.revoke_key("gg_aaaa", 20).await.unwrap());
    assert!(store.revoke_key(&b.id.to_string(), 21).await.unwrap());
    assert!(
        !store.revoke_key("gg_aaaa", 22).await.unwrap(),
        "already revoked"
    );
    assert!(!store.revoke_key("gg_none", 22).await.unwrap());
    assert!(store.find_key("h1").await.unwrap().is_none());
    let keys = store.list_keys().await.unwrap();
    assert_eq!(keys[0].revoked_at, Some(20));
    assert_eq!(
        (keys[0].prefix.as_str(), keys[0].created_at),
        ("gg_aaaa", 10)
    );
    assert_eq!(keys[2].revoked_at, None);
}

async fn service_keys_are_stored_and_end_users_made_once(db: Db) {
    let store = db.open().await;
    let shop = store
        .create_key("shop", Role::Service, "hs", "gg_ssss", 10)
        .await
        .unwrap();
    let found = store.find_key("hs").await.unwrap().unwrap();
    assert_eq!(
        (found.user_name.as_str(), found.role),
        ("shop", Role::Service)
    );
    assert_eq!(store.list_keys().await.unwrap()[0].role, Role::Service);

    let alice = store.user_named("shop/alice", 20).await.unwrap();
    assert_eq!(store.user_named("shop/alice", 30).await.unwrap(), alice);
    let bob = store.user_named("shop/bob", 40).await.unwrap();
    assert_ne!(alice, bob);
    assert_ne!(alice, shop.user_id);
    assert_eq!(
        store.user_named("shop", 50).await.unwrap(),
        shop.user_id,
        "a key's user is found by name too"
    );
    // Many requests naming a new end user at once make one user.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = store.clone();
        racers.spawn(async move { store.user_named("shop/carol", 60 + i).await.unwrap() });
    }
    let ids = racers.join_all().await;
    assert!(ids.iter().all(|&id| id == ids[0]), "{ids:?}");
}

async fn updates_are_conditional_on_the_version(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "u").await;
    let task = store
        .create_task(new_task(1, u, 100), None)
        .await
        .unwrap()
        .task;
    assert_eq!(store.get_task(&task.id).await.unwrap().unwrap(), task);
    let claimed = next(&task, Event::Claim, 200);
    assert!(store.update_task(&claimed, Fence::Lease).await.unwrap());
    assert!(
        !store.update_task(&claimed, Fence::Lease).await.unwrap(),
        "a stale writer cannot win"
    );
    assert!(
        !store.update_task(&claimed, Fence::Version).await.unwrap(),
        "nor with the version fence"
    );
    let stored = store.get_task(&task.id).await.unwrap().unwrap();
    assert_eq!(stored, claimed);
    assert_eq!(store.active_tasks().await.unwrap().len(), 1);
    let counts = store.status_counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(
        (
            counts[0].provider.as_str(),
            counts[0].status,
            counts[0].count
        ),
        ("sim", Status::Submitting, 1)
    );
    assert!(
        store.get_task("tsk_missing").await.unwrap().is_none(),
        "unknown ids are not found"
    );
}

async fn racing_writers_of_one_version_have_one_winner(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "u").await;
    let task = store
        .create_task(new_task(1, u, 100), None)
        .await
        .unwrap()
        .task;
    let mut racers = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        let attempt = next(&task, Event::Claim, 200 + i);
        racers.push(tokio::spawn(async move {
            store.update_task(&attempt, Fence::Version).await.unwrap()
        }));
    }
    let mut winners = 0;
    for r in racers {
        winners += usize::from(r.await.unwrap());
    }
    assert_eq!(winners, 1);
    assert_eq!(store.get_task(&task.id).await.unwrap().unwrap().version, 1);
}

async fn a_reroute_stores_the_new_provider(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "u").await;
    let task = store
        .create_task(new_task(1, u, 100), None)
        .await
        .unwrap()
        .task;
    let moved = next(
        &task,
        Event::Reroute {
            provider: "backup".into(),
        },
        200,
    );
    assert!(store.update_task(&moved, Fence::Version).await.unwrap());
    let stored = store.get_task(&task.id).await.unwrap().unwrap();
    assert_eq!(stored.provider, "backup");
    assert_eq!(stored, moved);
}

async fn storing_tasks_are_active_with_their_outputs_and_finished_ones_can_be_deleted(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "u").await;
    let key = || IdempotencyKey {
        key: "k".into(),
        request_hash: "h".into(),
        not_before: 0,
    };
    let created = store
        .create_task(new_task(1, u, 100), Some(key()))
        .await
        .unwrap()
        .task;
    let out = Output::new("https://provider/x.png", "image/png");
    let storing = drive(
        &*store,
        created,
        vec![
            Event::Claim,
            accept(),
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

    let stored = Output {
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
    assert_eq!(read, done, "every field round-trips");
    assert!(store.active_tasks().await.unwrap().is_empty());

    assert!(store.delete_task(&done.id).await.unwrap());
    assert!(store.get_task(&done.id).await.unwrap().is_none());
    assert!(!store.delete_task(&done.id).await.unwrap(), "already gone");
    // The idempotency key went with it: the same key makes a new task.
    let again = store
        .create_task(new_task(2, u, 200), Some(key()))
        .await
        .unwrap();
    assert!(!again.replayed);
}

async fn idempotency_replays_refuses_mismatches_and_expires(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "u").await;
    let v = user(&*store, "v").await;
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
    assert_eq!(again.task, first.task);
    assert!(matches!(
        store
            .create_task(new_task(3, u, 1002), Some(key("other", 0)))
            .await,
        Err(StoreError::IdempotencyMismatch)
    ));
    let others = store
        .create_task(new_task(5, v, 1003), Some(key("other", 0)))
        .await
        .unwrap();
    assert!(!others.replayed, "keys are per user");
    // Past retention the key is free again.
    let later = store
        .create_task(new_task(4, u, 5000), Some(key("other", 2000)))
        .await
        .unwrap();
    assert!(!later.replayed);
    let replay = store
        .create_task(new_task(6, u, 5001), Some(key("other", 2000)))
        .await
        .unwrap();
    assert_eq!(
        (replay.replayed, replay.task.id),
        (true, later.task.id.clone()),
        "the key now names the new task"
    );
    assert_eq!(store.purge_idempotency(1500).await.unwrap(), 1, "v's key");
    assert_eq!(store.purge_idempotency(10_000).await.unwrap(), 1, "u's key");
    assert_eq!(
        store.active_tasks().await.unwrap().len(),
        3,
        "tasks outlive their keys"
    );
}

async fn lists_newest_first_with_filters_cursor_and_gallery(db: Db) {
    let store = db.open().await;
    let a = user(&*store, "a").await;
    let b = user(&*store, "b").await;
    let mut made = Vec::new();
    for i in 0..10u128 {
        let mut t = new_task(i, if i < 7 { a } else { b }, 1000 + i as i64);
        if i == 9 {
            t.model = "sim-video".into();
        }
        made.push(store.create_task(t, None).await.unwrap().task);
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
    assert_eq!(page[0].id, made[6].id);
    let rest = store
        .list_tasks(&q(Some(a), Some(page[3].id.clone()), 10))
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    assert!(rest[0].id < page[3].id);
    assert!(
        store
            .list_tasks(&q(Some(b), None, 10))
            .await
            .unwrap()
            .iter()
            .all(|t| t.user_id == b)
    );
    assert_eq!(
        store.list_tasks(&q(None, None, 100)).await.unwrap().len(),
        10
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
    // Task 0 is public, task 1 is not: only 0 reaches the gallery.
    for t in &made[..2] {
        drive(
            &*store,
            t.clone(),
            vec![
                Event::Claim,
                accept(),
                Event::Succeed { outputs: vec![] },
                Event::Stored { outputs: vec![] },
            ],
        )
        .await;
    }
    let shown = store.list_tasks(&gallery).await.unwrap();
    assert_eq!(
        shown.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [made[0].id.as_str()]
    );
    let status = ListQuery {
        status: Some(Status::Queued),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.list_tasks(&status).await.unwrap().len(), 8);
    let model = ListQuery {
        model: Some("sim-video".into()),
        limit: 100,
        ..Default::default()
    };
    let videos = store.list_tasks(&model).await.unwrap();
    assert_eq!(videos.len(), 1);
    assert_eq!(videos[0].id, made[9].id);
}

async fn concurrent_creates_are_all_durable_after_reopening(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "u").await;
    let mut handles = Vec::new();
    for i in 0..300u128 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store.create_task(new_task(i, u, 1000), None).await.unwrap()
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    drop(store);
    let reopened = db.open().await;
    assert_eq!(reopened.active_tasks().await.unwrap().len(), 300);
}

async fn terminal_updates_queue_their_webhook_in_the_same_write(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "u").await;
    assert_eq!(store.webhook_secret(u, "s1").await.unwrap(), "s1");
    assert_eq!(
        store.webhook_secret(u, "s2").await.unwrap(),
        "s1",
        "the first secret stays"
    );
    let mut new = new_task(1, u, 100);
    new.webhook_url = Some("https://hooks.example/x".into());
    let task = store.create_task(new, None).await.unwrap().task;
    let running = drive(&*store, task, vec![Event::Claim, accept()]).await;
    assert!(
        store.task_deliveries(&running.id).await.unwrap().is_empty(),
        "nothing to announce before the end"
    );
    let failed = next(
        &running,
        Event::Fail {
            error: TaskError::new("provider_error", "no", false),
            retry_at: 0,
        },
        5000,
    );
    assert!(store.update_task(&failed, Fence::Lease).await.unwrap());
    assert!(
        !store.update_task(&failed, Fence::Lease).await.unwrap(),
        "a refused write queues nothing"
    );
    let queued = store.task_deliveries(&failed.id).await.unwrap();
    assert_eq!(queued.len(), 1);
    let d = &queued[0];
    assert_eq!(
        (
            d.event.as_str(),
            d.status.as_str(),
            d.url.as_str(),
            d.user_id,
            d.attempts,
            d.next_attempt_at,
            d.created_at
        ),
        (
            "task.failed",
            "pending",
            "https://hooks.example/x",
            u,
            0,
            5000,
            5000
        )
    );
    assert!(store.due_deliveries(4999, 10).await.unwrap().is_empty());
    assert_eq!(store.due_deliveries(5000, 10).await.unwrap(), queued);
    let mut retry = d.clone();
    retry.attempts = 1;
    retry.next_attempt_at = 9000;
    retry.last_status = Some(503);
    retry.last_error = Some("unavailable".into());
    store.record_delivery(&retry).await.unwrap();
    assert!(store.due_deliveries(8999, 10).await.unwrap().is_empty());
    let mut done = retry.clone();
    done.status = "delivered".into();
    done.attempts = 2;
    done.last_status = Some(200);
    done.last_error = None;
    done.delivered_at = Some(9001);
    store.record_delivery(&done).await.unwrap();
    assert!(store.due_deliveries(i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(store.task_deliveries(&failed.id).await.unwrap(), vec![done]);
    assert!(store.delete_task(&failed.id).await.unwrap());
    assert!(
        store.task_deliveries(&failed.id).await.unwrap().is_empty(),
        "deliveries go with their task"
    );
}

async fn overdue_tasks_come_by_deadline_and_changes_by_time(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "u").await;
    let make = |n: u128, created: i64, deadline: i64| {
        let mut t = new_task(n, u, created);
        t.deadline_at = deadline;
        t
    };
    let late = store
        .create_task(make(1, 1000, 5000), None)
        .await
        .unwrap()
        .task;
    let later = store
        .create_task(make(2, 1001, 3000), None)
        .await
        .unwrap()
        .task;
    let _fine = store
        .create_task(make(3, 1002, 100_000), None)
        .await
        .unwrap();
    let ended = store
        .create_task(make(4, 1003, 2000), None)
        .await
        .unwrap()
        .task;
    let canceled = next(&ended, Event::Cancel, 2500);
    assert!(store.update_task(&canceled, Fence::Version).await.unwrap());

    let overdue = store.overdue_tasks(6000, 10).await.unwrap();
    assert_eq!(
        overdue.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [later.id.as_str(), late.id.as_str()],
        "unfinished ones, earliest deadline first"
    );
    assert_eq!(store.overdue_tasks(6000, 1).await.unwrap()[0].id, later.id);
    assert!(store.overdue_tasks(2999, 10).await.unwrap().is_empty());

    let changes = store.changes_since(1500, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            changes[0].0.task_id.as_str(),
            changes[0].0.version,
            changes[0].1
        ),
        (ended.id.as_str(), 1, 2500)
    );
    let first = store.changes_since(0, 2).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|(c, at)| (c.task_id.as_str(), *at))
            .collect::<Vec<_>>(),
        [(late.id.as_str(), 1000), (later.id.as_str(), 1001)]
    );
    assert_eq!(
        store.changes_since(2500, 10).await.unwrap().len(),
        1,
        "inclusive"
    );
}

async fn lookups_of_ids_no_task_can_have_find_nothing(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "u").await;
    let task = store
        .create_task(new_task(1, u, 100), None)
        .await
        .unwrap()
        .task;
    let padded = format!("{} ", task.id);
    for id in ["tsk_ünïcödé", "tsk_😀", "", "TSK_", padded.as_str()] {
        assert!(store.get_task(id).await.unwrap().is_none(), "{id:?}");
        assert!(!store.delete_task(id).await.unwrap(), "{id:?}");
        assert!(
            store.task_deliveries(id).await.unwrap().is_empty(),
            "{id:?}"
        );
        assert!(store.find_key(id).await.unwrap().is_none(), "{id:?}");
        assert!(!store.revoke_key(id, 5).await.unwrap(), "{id:?}");
    }
    // A cursor past every id lists everything; one before all, nothing.
    let before = |cursor: &str| ListQuery {
        before: Some(cursor.into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list_tasks(&before("tsk_ü")).await.unwrap().len(), 1);
    assert_eq!(store.list_tasks(&before("tsk_ZZZ")).await.unwrap().len(), 1);
    assert!(store.list_tasks(&before("tsk_")).await.unwrap().is_empty());
    assert_eq!(store.get_task(&task.id).await.unwrap().unwrap(), task);
}

async fn facts_name_the_engine_and_the_schema(db: Db) {
    let store = db.open().await;
    let facts = store.facts().await.unwrap();
    let engine = match db.kind {
        db::Kind::Sqlite => "SQLite",
        db::Kind::Postgres => "PostgreSQL",
        db::Kind::MySql => {
            if facts.engine.contains("MariaDB") {
                "MariaDB"
            } else {
                "MySQL"
            }
        }
    };
    assert!(facts.engine.starts_with(engine), "{}", facts.engine);
    assert!(facts.latest_version >= 1);
    assert_eq!(facts.schema_version, facts.latest_version);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (facts.now_ms - now).abs() < 60_000,
        "the database's clock: {} vs {now}",
        facts.now_ms
    );
    assert_eq!(store.shared(), db.shared());
    if !db.shared() {
        assert!(matches!(
            store.claim_tasks("sim", 1, 1, 0).await,
            Err(StoreError::Config(_))
        ));
    }
}

#[tokio::test]
async fn unknown_and_unreachable_store_urls_are_refused_clearly() {
    for url in ["redis://x", "nonsense", "sqlite:/x"] {
        let Err(err) = gengate_store::open(url).await else {
            panic!("{url} opened")
        };
        assert!(matches!(err, StoreError::Config(_)), "{url}: {err}");
    }
    // Nobody listens on port 1: connecting is retried until the pool's
    // timeout, then refused as unavailable.
    let opts = gengate_store::OpenOptions {
        pool_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    for url in [
        "postgres://gengate@127.0.0.1:1/x",
        "mariadb://gengate@127.0.0.1:1/x",
    ] {
        let Err(err) = gengate_store::open_with(url, &opts).await else {
            panic!("{url} opened")
        };
        assert!(matches!(err, StoreError::Unavailable(_)), "{url}: {err}");
    }
    assert!(matches!(
        gengate_store::migrate("mysql://[bad", &opts).await,
        Err(StoreError::Config(_))
    ));
}

/// A database made before keys could have the role `service` keeps its keys
/// and users through the migration that allows it (SQLite rebuilds the
/// table to change its CHECK).
#[tokio::test]
async fn sqlite_keys_survive_the_service_role_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(concat!(
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0002_webhooks.sql"),
            include_str!("../../migrations/sqlite/0003_storing.sql"),
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0), (2, 0), (3, 0);
             INSERT INTO users (id, name, created_at) VALUES (7, 'ann', 1);
             INSERT INTO api_keys (id, user_id, prefix, key_hash, role, created_at, revoked_at)
                 VALUES (3, 7, 'gg_aaaa', 'h1', 'admin', 2, NULL), (4, 7, 'gg_bbbb', 'h2', 'user', 3, 9);"
        ))
        .unwrap();
        assert!(
            conn.execute(
                "INSERT INTO api_keys (user_id, prefix, key_hash, role, created_at) VALUES (7, 'p', 'h3', 'service', 4)",
                []
            )
            .is_err(),
            "schema 3 refuses the role"
        );
    }
    let store = gengate_store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let ann = store.find_key("h1").await.unwrap().unwrap();
    assert_eq!((ann.key_id, ann.user_id, ann.role), (3, 7, Role::Admin));
    let keys = store.list_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[1].id, keys[1].revoked_at), (4, Some(9)));
    let shop = store
        .create_key("ann", Role::Service, "h3", "gg_cccc", 4)
        .await
        .unwrap();
    assert_eq!((shop.id, shop.user_id), (5, 7));
    assert!(
        matches!(
            store
                .create_key("bob", Role::User, "h1", "gg_dddd", 5)
                .await,
            Err(StoreError::Conflict { .. })
        ),
        "key hashes are still unique"
    );
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
