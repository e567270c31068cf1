//! Cluster checks: several store instances (nodes) on one database, as
//! several gengate processes would share it.

pub(crate) use crate::money::concurrent_creates_on_three_nodes_share_one_balance;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gengate_core::{Event, Status, Task};
use gengate_store::{Fence, IdempotencyKey, Store, StoreError};

use crate::db::{self, Db};
use crate::{new_task, next, user};

/// Long enough to outlast a test, short enough to expire in one.
const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(300);

fn accept() -> Event {
    Event::Accept {
        provider_task_id: "p1".into(),
    }
}

/// Moves a claimed task on as its node would: accepted, then done at the
/// provider (which gives its slot back).
async fn run_to_storing(store: &dyn Store, claimed: &Task, now: i64) {
    let running = next(claimed, accept(), now);
    assert!(store.update_task(&running, Fence::Lease).await.unwrap());
    let storing = next(&running, Event::Succeed { outputs: vec![] }, now);
    assert!(store.update_task(&storing, Fence::Lease).await.unwrap());
}

async fn nodes(db: &Db, n: usize, lease: Duration) -> Vec<Arc<dyn Store>> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.push(db.open_as(&format!("n{i}"), lease).await);
    }
    out
}

/// Queued tasks of `user` for provider "sim", created at `created..`.
async fn queue(store: &dyn Store, user: i64, n: u128, created: i64) -> Vec<Task> {
    let mut out = Vec::new();
    for i in 0..n {
        let t = new_task(created as u128 * 1000 + i, user, created + i as i64);
        out.push(store.create_task(t, None).await.unwrap().task);
    }
    out
}

pub(crate) async fn claims_never_exceed_the_limit_across_nodes(db: Db) {
    const LIMIT: u64 = 5;
    const TASKS: usize = 40;
    let nodes = nodes(&db, 3, LONG).await;
    let u = user(&*nodes[0], "u").await;
    queue(&*nodes[0], u, TASKS as u128, 1000).await;
    let now = 10_000;

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (store, done) = (nodes[0].clone(), done.clone());
        tokio::spawn(async move {
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                let busy: u64 = store
                    .status_counts()
                    .await
                    .unwrap()
                    .iter()
                    .filter(|c| c.provider == "sim" && c.status.holds_slot())
                    .map(|c| c.count)
                    .sum();
                assert!(
                    busy <= LIMIT,
                    "{busy} tasks hold slots; the limit is {LIMIT}"
                );
                most = most.max(busy);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            most
        })
    };
    let mut workers = Vec::new();
    for (i, store) in nodes.iter().enumerate() {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim_tasks("sim", LIMIT as u32, 3, now)
                    .await
                    .unwrap();
                assert!(claimed.len() <= 3, "at most max per claim");
                if claimed.is_empty() {
                    let counts = store.status_counts().await.unwrap();
                    if !counts.iter().any(|c| c.status == Status::Queued) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                for t in claimed {
                    assert_eq!(t.status, Status::Submitting);
                    mine.push(t.id.clone());
                    // Work on it a little, then give the slot back.
                    tokio::time::sleep(Duration::from_millis(1 + i as u64 * 2)).await;
                    run_to_storing(&*store, &t, now).await;
                }
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    let most = watcher.await.unwrap();
    assert_eq!(claimed.len(), TASKS, "every task was claimed");
    assert_eq!(
        claimed.iter().collect::<HashSet<_>>().len(),
        TASKS,
        "and none twice"
    );
    assert!(most >= 1, "the watcher saw the work");
    let counts = nodes[0].status_counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(
        (counts[0].status, counts[0].count),
        (Status::Storing, TASKS as u64)
    );
}

pub(crate) async fn one_claim_takes_turns_across_users_after_priority(db: Db) {
    let store = db.open().await;
    let a = user(&*store, "a").await;
    let b = user(&*store, "b").await;
    let a_tasks = queue(&*store, a, 6, 1000).await;
    let b_tasks = queue(&*store, b, 3, 2000).await;
    let mut urgent = new_task(9, b, 3000);
    urgent.priority = 5;
    let urgent = store.create_task(urgent, None).await.unwrap().task;

    let claimed = store.claim_tasks("sim", 100, 5, 10_000).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            urgent.id.as_str(),
            a_tasks[0].id.as_str(),
            b_tasks[0].id.as_str(),
            a_tasks[1].id.as_str(),
            b_tasks[1].id.as_str(),
        ]
    );
    for t in &claimed {
        assert_eq!(
            (t.status, t.attempts, t.version),
            (Status::Submitting, 1, 1)
        );
        assert_eq!(store.get_task(&t.id).await.unwrap().as_ref(), Some(t));
    }
    // Not due yet (a task's `not_before` is its creation), or past the
    // deadline: not claimed.
    let due = store.claim_tasks("sim", 100, 100, 1500).await.unwrap();
    assert_eq!(due.len(), 4, "a's other tasks, created by 1500");
    assert!(
        store
            .claim_tasks("sim", 100, 100, 1_000_000)
            .await
            .unwrap()
            .is_empty(),
        "the rest are past their deadline"
    );
}

pub(crate) async fn a_node_that_lost_its_lease_writes_nothing_while_cancels_go_through(db: Db) {
    let nodes = nodes(&db, 2, SHORT).await;
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let u = user(&**n1, "u").await;
    queue(&**n1, u, 1, 1000).await;
    let claimed = n1
        .claim_tasks("sim", 10, 1, 10_000)
        .await
        .unwrap()
        .remove(0);
    assert!(
        n2.take_over(10).await.unwrap().is_empty(),
        "n1's lease is live"
    );

    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    let running = next(&claimed, accept(), 10_001);
    assert!(
        !n1.update_task(&running, Fence::Lease).await.unwrap(),
        "n1 stalled past its lease: its write is refused before anyone took over"
    );
    let taken = n2.take_over(10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].version, claimed.version + 1);
    assert!(
        !n1.update_task(&running, Fence::Lease).await.unwrap(),
        "nor after"
    );
    let n1_retry = next(&taken[0], accept(), 10_002);
    assert!(
        !n1.update_task(&n1_retry, Fence::Lease).await.unwrap(),
        "n1 cannot write over n2's lease even with the current version"
    );
    let n2_accept = next(&taken[0], accept(), 10_003);
    assert!(n2.update_task(&n2_accept, Fence::Lease).await.unwrap());
    let cancel = next(&n2_accept, Event::Cancel, 10_004);
    assert!(
        n1.update_task(&cancel, Fence::Version).await.unwrap(),
        "a cancel needs only the version"
    );
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert!(
        n1.take_over(10).await.unwrap().is_empty(),
        "a canceled task holds no lease"
    );
    assert_eq!(
        n1.get_task(&claimed.id).await.unwrap().unwrap().status,
        Status::Canceled
    );
}

pub(crate) async fn take_over_bumps_the_version_and_moves_the_lease(db: Db) {
    let nodes = nodes(&db, 2, SHORT).await;
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let u = user(&**n1, "u").await;
    queue(&**n1, u, 3, 1000).await;
    let claimed = n1.claim_tasks("sim", 10, 3, 10_000).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let ids: Vec<String> = claimed.iter().map(|t| t.id.clone()).collect();
    assert_eq!(n1.renew_leases(10_000, &ids).await.unwrap(), 3);
    assert_eq!(
        n2.renew_leases(10_000, &ids).await.unwrap(),
        0,
        "a node renews only its own leases"
    );
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert_eq!(
        n1.renew_leases(10_000, &ids).await.unwrap(),
        0,
        "expired leases are lost, not renewed"
    );
    let first = n2.take_over(2).await.unwrap();
    assert_eq!(first.len(), 2, "at most max");
    let rest = n2.take_over(10).await.unwrap();
    assert_eq!(rest.len(), 1);
    for t in first.iter().chain(&rest) {
        let before = claimed.iter().find(|c| c.id == t.id).unwrap();
        assert_eq!(t.version, before.version + 1);
        assert!(t.updated_at >= before.updated_at);
        assert_eq!(
            Task {
                version: before.version,
                updated_at: before.updated_at,
                ..t.clone()
            },
            *before,
            "only the version and the time of the change changed"
        );
        assert_eq!(n2.get_task(&t.id).await.unwrap().as_ref(), Some(t));
    }
    assert_eq!(
        n2.renew_leases(10_000, &ids).await.unwrap(),
        3,
        "n2 holds them now"
    );
    assert!(n1.take_over(10).await.unwrap().is_empty());
}

pub(crate) async fn released_leases_are_taken_over_at_once_and_unlisted_ones_run_out(db: Db) {
    let nodes = nodes(&db, 2, SHORT * 4).await;
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let u = user(&**n1, "u").await;
    queue(&**n1, u, 2, 1000).await;
    let claimed = n1.claim_tasks("sim", 10, 2, 10_000).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let mut ids: Vec<_> = claimed.iter().map(|t| t.id.clone()).collect();
    ids.sort_unstable();
    assert_eq!(n1.leased_here().await.unwrap(), ids);
    assert!(n2.leased_here().await.unwrap().is_empty());
    assert!(
        n2.take_over(10).await.unwrap().is_empty(),
        "both leases live"
    );
    // n1 works on the first only: the second's lease is not renewed.
    for _ in 0..6 {
        tokio::time::sleep(SHORT).await;
        n1.renew_leases(10_000, std::slice::from_ref(&claimed[0].id))
            .await
            .unwrap();
    }
    let taken = n2.take_over(10).await.unwrap();
    assert_eq!(
        taken.iter().map(|t| &t.id).collect::<Vec<_>>(),
        [&claimed[1].id],
        "a lease its node does not renew runs out"
    );
    assert_eq!(n1.leased_here().await.unwrap(), [claimed[0].id.clone()]);
    assert_eq!(n1.release_leases().await.unwrap(), 1);
    let taken = n2.take_over(10).await.unwrap();
    assert_eq!(
        taken.iter().map(|t| &t.id).collect::<Vec<_>>(),
        [&claimed[0].id],
        "a released lease is taken over at once"
    );
    assert!(n1.leased_here().await.unwrap().is_empty());
    let mut ids: Vec<_> = claimed.iter().map(|t| t.id.clone()).collect();
    ids.sort_unstable();
    assert_eq!(n2.leased_here().await.unwrap(), ids);
}

pub(crate) async fn renewed_leases_outlive_their_ttl(db: Db) {
    let nodes = nodes(&db, 2, SHORT).await;
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let u = user(&**n1, "u").await;
    queue(&**n1, u, 1, 1000).await;
    let claimed = n1
        .claim_tasks("sim", 10, 1, 10_000)
        .await
        .unwrap()
        .remove(0);
    for _ in 0..6 {
        tokio::time::sleep(SHORT / 2).await;
        assert_eq!(
            n1.renew_leases(10_000, std::slice::from_ref(&claimed.id))
                .await
                .unwrap(),
            1
        );
    }
    assert!(
        n2.take_over(10).await.unwrap().is_empty(),
        "renewed for {:?}, three times the lease",
        SHORT * 3
    );
    let running = next(&claimed, accept(), 10_001);
    assert!(n1.update_task(&running, Fence::Lease).await.unwrap());
    // A write of the holder renews its lease too; then it lapses.
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    let taken = n2.take_over(10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].status, Status::Running);
}

pub(crate) async fn concurrent_creates_with_one_key_make_one_task_across_nodes(db: Db) {
    let nodes = nodes(&db, 3, LONG).await;
    let u = user(&*nodes[0], "u").await;
    let key = |hash: &str| IdempotencyKey {
        key: "same".into(),
        request_hash: hash.into(),
        not_before: 0,
    };
    let mut racers = Vec::new();
    for i in 0..50u128 {
        let store = nodes[i as usize % 3].clone();
        let key = key("h");
        racers.push(tokio::spawn(async move {
            store
                .create_task(new_task(i, u, 1000 + i as i64), Some(key))
                .await
                .unwrap()
        }));
    }
    let mut made = Vec::new();
    let mut ids = HashSet::new();
    for r in racers {
        let created = r.await.unwrap();
        ids.insert(created.task.id.clone());
        if !created.replayed {
            made.push(created.task);
        }
    }
    assert_eq!(made.len(), 1, "exactly one request made the task");
    assert_eq!(ids.len(), 1, "the others replayed it");
    assert_eq!(nodes[1].active_tasks().await.unwrap(), made);
    assert!(matches!(
        nodes[2]
            .create_task(new_task(99, u, 2000), Some(key("other")))
            .await,
        Err(StoreError::IdempotencyMismatch)
    ));

    // The same race with two bodies: one wins, each other request replays
    // it or is told its body differs.
    let mut racers = Vec::new();
    for i in 0..30u128 {
        let store = nodes[i as usize % 3].clone();
        let mut k = key(if i % 2 == 0 { "x" } else { "y" });
        k.key = "two-bodies".into();
        racers.push(tokio::spawn(async move {
            (
                i % 2,
                store.create_task(new_task(100 + i, u, 3000), Some(k)).await,
            )
        }));
    }
    let mut winners = HashSet::new();
    let mut outcomes = Vec::new();
    for r in racers {
        let (body, outcome) = r.await.unwrap();
        match outcome {
            Ok(c) => {
                winners.insert(c.task.id.clone());
                outcomes.push((body, true));
            }
            Err(StoreError::IdempotencyMismatch) => outcomes.push((body, false)),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let winning_body = outcomes.iter().find(|(_, ok)| *ok).unwrap().0;
    assert!(
        outcomes
            .iter()
            .all(|&(body, ok)| ok == (body == winning_body))
    );
}

pub(crate) async fn unmigrated_and_newer_databases_are_refused_and_migrate_is_idempotent(db: Db) {
    let latest = db.open().await.facts().await.unwrap().latest_version;
    let raw = Db::fresh(db.kind, false).await.unwrap();
    let opts = db::options("n1", LONG);
    let Err(err) = gengate_store::open_with(&raw.url, &opts).await else {
        panic!("an unmigrated database opened")
    };
    assert!(
        matches!(&err, StoreError::Config(m) if m.contains("gengate migrate")),
        "{err}"
    );
    // Several runs at once take turns.
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let (url, opts) = (raw.url.clone(), opts.clone());
            tokio::spawn(async move { gengate_store::migrate(&url, &opts).await.unwrap() })
        })
        .collect();
    let mut froms = Vec::new();
    for r in runs {
        let (from, to) = r.await.unwrap();
        assert_eq!(to, latest);
        froms.push(from);
    }
    froms.sort_unstable();
    assert_eq!(
        froms,
        [0, latest, latest],
        "one run migrated, the others found it done"
    );
    assert_eq!(
        gengate_store::migrate(&raw.url, &opts).await.unwrap(),
        (latest, latest)
    );
    let store = gengate_store::open_with(&raw.url, &opts).await.unwrap();
    store.ping().await.unwrap();
    drop(store);

    db::execute(
        raw.kind,
        &raw.url,
        "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)",
    )
    .await;
    for outcome in [
        gengate_store::open_with(&raw.url, &opts).await.map(drop),
        gengate_store::migrate(&raw.url, &opts).await.map(drop),
    ] {
        let Err(err) = outcome else {
            panic!("a newer database was accepted")
        };
        assert!(
            matches!(&err, StoreError::Config(m) if m.contains("newer")),
            "{err}"
        );
    }
    let migrating = gengate_store::OpenOptions {
        migrate: true,
        ..opts.clone()
    };
    let fresh = Db::fresh(db.kind, false).await.unwrap();
    let store = gengate_store::open_with(&fresh.url, &migrating)
        .await
        .unwrap();
    assert_eq!(
        store.facts().await.unwrap().schema_version,
        latest,
        "opened with migrate"
    );
    drop(store);
    raw.drop().await;
    fresh.drop().await;
}

pub(crate) async fn subscribers_hear_changes_made_through_other_nodes(db: Db) {
    let nodes = nodes(&db, 2, LONG).await;
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let Some(mut changes) = n1.subscribe().await.unwrap() else {
        assert_eq!(db.kind, db::Kind::MySql, "only MySQL pushes nothing");
        return;
    };
    let u = user(&**n2, "u").await;
    let made = queue(&**n2, u, 1, 1000).await.remove(0);
    let claimed = n2.claim_tasks("sim", 1, 1, 10_000).await.unwrap().remove(0);
    let canceled = next(&claimed, Event::Cancel, 10_001);
    assert!(n2.update_task(&canceled, Fence::Version).await.unwrap());
    let mut heard = Vec::new();
    while heard.len() < 3 {
        let change = tokio::time::timeout(Duration::from_secs(10), changes.recv())
            .await
            .expect("a change within 10 s")
            .expect("the feed is open");
        heard.push((change.task_id, change.version));
    }
    assert_eq!(
        heard,
        [
            (made.id.clone(), 0),
            (made.id.clone(), 1),
            (made.id.clone(), 2)
        ],
        "the create, the claim and the cancel, in order"
    );

    // The server drops the listening connection: the feed listens again.
    db::execute(
        db.kind,
        &db.url,
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                          WHERE datname = current_database() AND query LIKE 'LISTEN%') \
           THEN RAISE EXCEPTION 'no listening connection'; END IF; \
         END $$",
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut made_after = HashSet::new();
    for n in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed stayed down"
        );
        // What is announced while it is down is lost: keep making changes.
        made_after.insert(queue(&**n2, u, 1, 5000 + n).await.remove(0).id);
        if let Ok(Some(change)) =
            tokio::time::timeout(Duration::from_millis(300), changes.recv()).await
        {
            if change.is_gap() {
                continue; // only a marker
            }
            assert!(
                made_after.contains(&change.task_id),
                "a change made after the drop arrives: {change:?}"
            );
            break;
        }
    }
}

pub(crate) async fn facts_report_the_server_and_the_nodes_that_renewed(db: Db) {
    let nodes = nodes(&db, 2, LONG).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for n in &nodes {
        n.renew_leases(now, &[]).await.unwrap();
    }
    nodes[0].renew_leases(now + 1000, &[]).await.unwrap();
    let facts = nodes[1].facts().await.unwrap();
    assert!(facts.max_connections.is_some_and(|n| n > 0), "{facts:?}");
    assert!(!facts.memory.is_empty(), "{facts:?}");
    assert!(
        facts.memory.iter().all(|(_, bytes)| *bytes > 0),
        "{facts:?}"
    );
    let ids: Vec<&str> = facts.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["n1", "n2"]);
    for n in &facts.nodes {
        assert!(n.seen_at >= n.started_at);
        assert!((n.seen_at - facts.now_ms).abs() < 60_000);
        assert!(
            n.clock_offset_ms.abs() < 5_000,
            "same machine, same clock: {n:?}"
        );
    }
    let n1 = &facts.nodes[0];
    let n2 = &facts.nodes[1];
    assert!(
        n1.clock_offset_ms > n2.clock_offset_ms + 500,
        "n1 said its clock was a second ahead: {n1:?} {n2:?}"
    );
}

pub(crate) async fn pool_stats_count_acquisitions(db: Db) {
    let store = db.open().await;
    let before = store.pool_stats();
    for _ in 0..5 {
        store.ping().await.unwrap();
    }
    let after = store.pool_stats();
    assert_eq!(after.max, db::POOL);
    assert!(after.size >= 1 && after.size <= db::POOL, "{after:?}");
    assert!(after.idle <= after.size, "{after:?}");
    assert_eq!(after.acquires, before.acquires + 5, "{after:?}");
    assert!(
        after.wait_micros_max <= after.wait_micros_total,
        "{after:?}"
    );
    assert_eq!(after.timeouts, 0);
}

/// Six workers on three nodes claim and finish 300 tasks while each node
/// heartbeats and looks for leases to take over, as live nodes do: nothing
/// fails (no deadlock comes back to the caller), and every task is worked
/// on once.
pub(crate) async fn busy_nodes_claim_renew_and_take_over_without_errors(db: Db) {
    const TASKS: usize = 300;
    let nodes = nodes(&db, 3, LONG).await;
    let u = user(&*nodes[0], "u").await;
    queue(&*nodes[0], u, TASKS as u128, 1000).await;
    let now = 10_000;
    let stop = Arc::new(AtomicBool::new(false));
    // What each node works on, as its heartbeat renews it.
    let held: Vec<Arc<std::sync::Mutex<Vec<String>>>> =
        nodes.iter().map(|_| Arc::default()).collect();
    let mut heartbeats = Vec::new();
    for (n, held) in nodes.iter().zip(&held) {
        let (n, stop, held) = (n.clone(), stop.clone(), held.clone());
        heartbeats.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ids = held.lock().unwrap().clone();
                n.renew_leases(now, &ids).await.unwrap();
                assert!(n.take_over(5).await.unwrap().is_empty(), "no lease expired");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    let mut workers = Vec::new();
    for (store, held) in nodes.iter().zip(&held).cycle().take(6) {
        let (store, held) = (store.clone(), held.clone());
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim_tasks("sim", 8, 3, now).await.unwrap();
                if claimed.is_empty() {
                    let counts = store.status_counts().await.unwrap();
                    if !counts.iter().any(|c| c.status == Status::Queued) {
                        break;
                    }
                    continue;
                }
                for t in claimed {
                    mine.push(t.id.clone());
                    held.lock().unwrap().push(t.id.clone());
                    run_to_storing(&*store, &t, now).await;
                }
            }
            mine
        }));
    }
    let mut worked = Vec::new();
    for w in workers {
        worked.extend(w.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for h in heartbeats {
        h.await.unwrap();
    }
    assert_eq!(worked.len(), TASKS);
    assert_eq!(worked.iter().collect::<HashSet<_>>().len(), TASKS);
}

/// Every node sends from one outbox: a due delivery one node read is not
/// handed to another until the first has had time to attempt it.
pub(crate) async fn a_due_delivery_goes_to_one_node_at_a_time(db: Db) {
    let nodes = nodes(&db, 2, LONG).await;
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let u = user(&**n1, "u").await;
    let mut new = new_task(1, u, 100);
    new.webhook_url = Some("https://hooks.example/x".into());
    let task = n1.create_task(new, None).await.unwrap().task;
    let claimed = n1.claim_tasks("sim", 4, 1, 200).await.unwrap().remove(0);
    assert_eq!(claimed.id, task.id);
    let failed = next(
        &claimed,
        Event::Fail {
            error: gengate_core::TaskError::new("provider_error", "no", false),
            retry_at: 0,
        },
        300,
    );
    assert!(n1.update_task(&failed, Fence::Lease).await.unwrap());
    let (a, b) = tokio::join!(n1.due_deliveries(1000, 10), n2.due_deliveries(1000, 10));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 1, "read by one node: {a:?} {b:?}");
    assert!(
        n2.due_deliveries(2000, 10).await.unwrap().is_empty()
            && n1.due_deliveries(2000, 10).await.unwrap().is_empty(),
        "claimed while its node attempts it"
    );
    let again = n2.due_deliveries(1000 + 61_000, 10).await.unwrap();
    assert_eq!(
        again.len(),
        1,
        "due again once the claim ran out (its node died)"
    );
}
