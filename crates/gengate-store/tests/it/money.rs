//! Credits and limits: holds at create, one settlement or refund per
//! finished task whoever writes it, no overdraft and no cap passed under
//! concurrent creates (across nodes on a shared store), grants, patches,
//! the audit trail and the drift check.

use std::sync::Arc;
use std::time::Duration;

use gengate_core::{Billing, Event, LedgerKind, Limits, Output, RefundOn, Refusal, Status};
use gengate_store::{AccountPatch, Fence, IdempotencyKey, Store, StoreError};

use crate::db::Db;
use crate::{accept, drive, new_task, next, user};

fn priced(n: u128, user: i64, held: i64) -> gengate_core::task::NewTask {
    gengate_core::task::NewTask {
        billing: Some(Billing {
            held,
            per_output: None,
            refund_on: RefundOn::default(),
        }),
        ..new_task(n, user, 1_000 + n as i64)
    }
}

async fn balance(store: &dyn Store, user: i64) -> (i64, i64, i64) {
    let a = store.accounts().account(user).await.unwrap().unwrap();
    (a.balance, a.held, a.active)
}

/// The user's ledger, oldest first, as (task, kind, amount).
async fn entries(store: &dyn Store, user: i64) -> Vec<(Option<String>, LedgerKind, i64)> {
    let mut all = store
        .accounts()
        .ledger(Some(user), None, 1000)
        .await
        .unwrap();
    all.reverse();
    all.into_iter()
        .map(|e| (e.task_id, e.kind, e.amount))
        .collect()
}

async fn no_drift(store: &dyn Store) {
    let drift = store.accounts().ledger_drift().await.unwrap();
    assert!(
        drift.is_empty(),
        "balances disagree with the ledger: {drift:?}"
    );
}

pub(crate) async fn credits_are_held_then_settled_or_refunded_once(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "payer").await;
    let accounts = store.accounts();
    accounts.grant(u, 100, "welcome", "admin", 5).await.unwrap();

    // Held at create, settled on success.
    let t = store
        .create_task(priced(1, u, 10), None)
        .await
        .unwrap()
        .task;
    assert_eq!(balance(&*store, u).await, (90, 10, 1));
    let done = drive(
        &*store,
        t.clone(),
        vec![
            Event::Claim,
            accept(),
            Event::Succeed {
                outputs: vec![Output::new("https://x/1.png", "image/png")],
            },
            Event::Stored {
                outputs: vec![Output::new("https://x/1.png", "image/png")],
            },
        ],
    )
    .await;
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(balance(&*store, u).await, (90, 0, 0));
    // A later write of the finished task (hidden from the gallery) moves no
    // money and frees no second place.
    let hidden = gengate_core::Task {
        public: false,
        version: done.version + 1,
        ..done.clone()
    };
    assert!(store.update_task(&hidden, Fence::Lease).await.unwrap());
    assert_eq!(balance(&*store, u).await, (90, 0, 0));

    // Refunded on failure; a cancel the model does not refund is settled.
    let f = store
        .create_task(priced(2, u, 20), None)
        .await
        .unwrap()
        .task;
    let failed = drive(
        &*store,
        f.clone(),
        vec![
            Event::Claim,
            Event::Fail {
                error: gengate_core::TaskError::new("provider_error", "no", false),
                retry_at: 0,
            },
        ],
    )
    .await;
    assert_eq!(failed.status, Status::Failed);
    let mut keep = priced(3, u, 30);
    keep.billing.as_mut().unwrap().refund_on.cancel = false;
    let c = store.create_task(keep, None).await.unwrap().task;
    assert!(
        store
            .update_task(&next(&c, Event::Cancel, 2_100), Fence::Lease)
            .await
            .unwrap()
    );
    assert_eq!(balance(&*store, u).await, (60, 0, 0));

    // A per-output price charges for what was made, never above the hold.
    let mut per = priced(4, u, 15);
    per.billing.as_mut().unwrap().per_output = Some(5);
    let p = store.create_task(per, None).await.unwrap().task;
    drive(
        &*store,
        p.clone(),
        vec![
            Event::Claim,
            accept(),
            Event::Succeed {
                outputs: vec![Output::new("https://x/a.png", "image/png")],
            },
            Event::Stored {
                outputs: vec![Output::new("https://x/a.png", "image/png")],
            },
        ],
    )
    .await;
    assert_eq!(balance(&*store, u).await, (55, 0, 0));

    let id = |t: &gengate_core::Task| Some(t.id.clone());
    assert_eq!(
        entries(&*store, u).await,
        [
            (None, LedgerKind::Grant, 100),
            (id(&t), LedgerKind::Hold, -10),
            (id(&t), LedgerKind::Settle, 0),
            (id(&f), LedgerKind::Hold, -20),
            (id(&f), LedgerKind::Refund, 20),
            (id(&c), LedgerKind::Hold, -30),
            (id(&c), LedgerKind::Settle, 0),
            (id(&p), LedgerKind::Hold, -15),
            (id(&p), LedgerKind::Settle, 10),
        ]
    );
    no_drift(&*store).await;
}

pub(crate) async fn a_short_balance_or_a_full_cap_refuses_and_stores_nothing(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "short").await;
    store.accounts().grant(u, 5, "", "admin", 1).await.unwrap();
    let refused = store.create_task(priced(1, u, 6), None).await.unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Refused(Refusal::InsufficientCredits {
                balance: 5,
                price: 6
            })
        ),
        "{refused:?}"
    );
    let capped = |n| gengate_core::task::NewTask {
        limits: Limits {
            max_active: 2,
            ..Limits::default()
        },
        ..new_task(n, u, 2_000)
    };
    let first = store.create_task(capped(2), None).await.unwrap().task;
    store.create_task(capped(3), None).await.unwrap();
    assert!(matches!(
        store.create_task(capped(4), None).await,
        Err(StoreError::Refused(Refusal::TooManyActive { limit: 2 }))
    ));
    // A replay is not a new create: it is answered, not counted.
    let key = IdempotencyKey {
        key: "k".into(),
        request_hash: "h".into(),
        not_before: 0,
    };
    assert!(
        store
            .update_task(&next(&first, Event::Cancel, 3_000), Fence::Lease)
            .await
            .unwrap()
    );
    let made = store
        .create_task(capped(5), Some(key.clone()))
        .await
        .unwrap();
    let again = store.create_task(capped(6), Some(key)).await.unwrap();
    assert!(again.replayed && again.task.id == made.task.id);
    assert_eq!(balance(&*store, u).await, (5, 0, 2));
    assert_eq!(store.active_tasks().await.unwrap().len(), 2);
    // An admin's override lifts the cap; a disabled user creates nothing.
    let accounts = store.accounts();
    let patch = AccountPatch {
        max_active: Some(Some(0)),
        ..AccountPatch::default()
    };
    assert!(accounts.patch_account(u, &patch).await.unwrap());
    store.create_task(capped(7), None).await.unwrap();
    let off = AccountPatch {
        disabled: Some(true),
        ..AccountPatch::default()
    };
    assert!(accounts.patch_account(u, &off).await.unwrap());
    assert!(matches!(
        store.create_task(capped(8), None).await,
        Err(StoreError::Refused(Refusal::Disabled))
    ));
    assert!(!accounts.patch_account(u + 1000, &off).await.unwrap());
    no_drift(&*store).await;
}

/// 100 creates at once from `stores` (one per node): a balance of 10 pays
/// for exactly 10, and the balance ends at 0, equal to the ledger.
async fn race_for_the_balance(stores: &[Arc<dyn Store>]) {
    let u = user(&*stores[0], "racer").await;
    stores[0]
        .accounts()
        .grant(u, 10, "", "admin", 1)
        .await
        .unwrap();
    let mut racers = Vec::new();
    for n in 0..100u128 {
        let store = stores[n as usize % stores.len()].clone();
        racers.push(tokio::spawn(async move {
            let new = gengate_core::task::NewTask {
                limits: Limits::default(),
                ..priced(n, u, 1)
            };
            store.create_task(new, None).await
        }));
    }
    let (mut made, mut short) = (0, 0);
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => made += 1,
            Err(StoreError::Refused(Refusal::InsufficientCredits { .. })) => short += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((made, short), (10, 90));
    assert_eq!(balance(&*stores[1 % stores.len()], u).await, (0, 10, 10));
    no_drift(&*stores[0]).await;
}

pub(crate) async fn concurrent_creates_never_overdraw(db: Db) {
    let store = db.open().await;
    race_for_the_balance(&[store]).await;
}

pub(crate) async fn concurrent_creates_on_three_nodes_share_one_balance(db: Db) {
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(db.open_as(&format!("n{i}"), Duration::from_secs(30)).await);
    }
    race_for_the_balance(&nodes).await;
}

pub(crate) async fn grants_settings_and_the_audit_trail(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "granted").await;
    let a = store.accounts();
    let e = a.grant(u, 7, "promo", "root", 10).await.unwrap();
    assert_eq!((e.amount, e.balance, e.kind), (7, 7, LedgerKind::Grant));
    assert_eq!(e.actor.as_deref(), Some("root"));
    assert!(matches!(
        a.grant(u, -8, "too much", "root", 11).await,
        Err(StoreError::Conflict { .. })
    ));
    a.grant(u, -7, "back", "root", 12).await.unwrap();
    a.record_audit("root", "provider.pause", "sim", "{}", 13)
        .await
        .unwrap();
    a.record_audit("root", "user.patch", "granted", "{}", 14)
        .await
        .unwrap();
    let audit = a.audit(None, 10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["user.patch", "provider.pause"]);
    assert_eq!(
        a.audit(Some(audit[0].id), 1).await.unwrap()[0].id,
        audit[1].id
    );
    let by_name = a.account_named("granted").await.unwrap().unwrap();
    assert_eq!((by_name.user_id, by_name.balance), (u, 0));
    let listed = a.accounts(None, 10).await.unwrap();
    assert!(listed.iter().any(|x| x.user_id == u));
    assert!(
        a.accounts(Some(u), 10)
            .await
            .unwrap()
            .iter()
            .all(|x| x.user_id > u)
    );

    assert_eq!(a.setting("k", None).await.unwrap(), None);
    assert_eq!(
        a.setting("k", Some("one")).await.unwrap().as_deref(),
        Some("one")
    );
    assert_eq!(
        a.setting("k", Some("two")).await.unwrap().as_deref(),
        Some("one")
    );
    a.set_setting("k", Some("three")).await.unwrap();
    assert_eq!(
        a.setting("k", None).await.unwrap().as_deref(),
        Some("three")
    );
    a.set_setting("k", None).await.unwrap();
    assert_eq!(a.setting("k", None).await.unwrap(), None);
    no_drift(&*store).await;
}

pub(crate) async fn a_balance_changed_behind_the_ledgers_back_is_found(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "tampered").await;
    store.accounts().grant(u, 9, "", "admin", 1).await.unwrap();
    store.create_task(priced(1, u, 4), None).await.unwrap();
    no_drift(&*store).await;
    crate::db::execute(
        db.kind,
        &db.url,
        "UPDATE users SET balance = balance + 5 WHERE name = 'tampered'",
    )
    .await;
    let drift = store.accounts().ledger_drift().await.unwrap();
    assert_eq!(drift.len(), 1, "{drift:?}");
    let d = &drift[0];
    assert_eq!(
        (d.user_id, d.balance, d.ledger_sum, d.held, d.open_holds),
        (u, 10, 5, 4, 4)
    );
}

pub(crate) async fn the_minute_bucket_and_the_day_count_hold_in_the_store(db: Db) {
    let store = db.open().await;
    let u = user(&*store, "bursty").await;
    let limited = |n: u128, at: i64| gengate_core::task::NewTask {
        limits: Limits {
            creates_per_minute: 2,
            tasks_per_day: 3,
            ..Limits::default()
        },
        ..new_task(n, u, at)
    };
    let t0 = 1_000_000_000;
    store.create_task(limited(1, t0), None).await.unwrap();
    store.create_task(limited(2, t0 + 1), None).await.unwrap();
    match store.create_task(limited(3, t0 + 2), None).await {
        Err(StoreError::Refused(Refusal::RateLimited {
            limit: 2,
            retry_after_ms,
        })) => assert!(
            (29_000..=30_000).contains(&retry_after_ms),
            "{retry_after_ms}"
        ),
        other => panic!("{other:?}"),
    }
    // Half a minute later one token is back; the day allows a third.
    store
        .create_task(limited(4, t0 + 30_001), None)
        .await
        .unwrap();
    assert!(matches!(
        store.create_task(limited(5, t0 + 90_000), None).await,
        Err(StoreError::Refused(Refusal::DailyLimit { limit: 3, .. }))
    ));
    let a = store.accounts().account(u).await.unwrap().unwrap();
    assert_eq!((a.active, a.day_count), (3, 3));
}
