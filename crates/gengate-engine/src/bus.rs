//! The event channel between nodes sharing a store: every committed change
//! of a task reaches every node, so that event streams, long polls and
//! cached reads on one node see what another node did, and a node lets go
//! of a task taken from it.
//!
//! What carries the changes, best first: Redis pub/sub when configured (each
//! node publishes its own changes), else PostgreSQL's LISTEN/NOTIFY (the
//! store notifies inside each writing transaction), else a short poll of
//! recently changed tasks (MySQL without Redis). A change names the task and
//! its version; a node that cares reads the task from the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gengate_store::{Change, Store};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use futures_util::StreamExt as _;

use crate::dispatch::Dispatcher;
use crate::hub::Hub;
use crate::redis::{self, Redis};

/// The Redis channel of task changes.
pub const CHANNEL: &str = "gengate:tasks";
/// Store reads of changed tasks under way at once.
const MAX_FETCHES: usize = 32;
/// How far back a poll looks beyond the newest change seen: writers stamp
/// changes with their own clocks, which may differ a little.
const POLL_OVERLAP_MS: i64 = 3_000;
/// A subscription silent this long is pinged, and dropped if the ping is
/// not answered as long again.
const SUBSCRIBER_IDLE: Duration = Duration::from_secs(15);
/// A batch of publishes (and a connection attempt) not answered in this
/// time drops the connection.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Changes read per query.
const POLL_PAGE: u32 = 2_000;

/// What carries changes between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Notify,
    Poll,
}

/// Starts the event channel for a shared store; returns what carries it, or
/// `None` for a store no other node shares.
///
/// # Errors
/// When the store cannot subscribe.
pub async fn start(
    store: Arc<dyn Store>,
    redis: Option<Arc<Redis>>,
    poll: Duration,
    hub: Arc<Hub>,
    dispatcher: Dispatcher,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<Kind>> {
    if !store.shared() {
        return Ok(None);
    }
    let (tx, rx) = mpsc::channel::<Change>(4096);
    let kind = if let Some(redis) = redis {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        hub.set_outbox(store.node_id().to_owned(), out_tx);
        tokio::spawn(publish_loop(redis.clone(), out_rx, shutdown.clone()));
        tokio::spawn(subscribe_loop(redis, tx, hub.clone(), shutdown.clone()));
        Kind::Redis
    } else if let Some(mut notified) = store.subscribe().await? {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    c = notified.recv() => match c {
                        Some(c) => if tx.send(c).await.is_err() { return },
                        None => return,
                    },
                }
            }
        });
        Kind::Notify
    } else {
        tokio::spawn(poll_loop(store.clone(), poll, tx, shutdown.clone()));
        Kind::Poll
    };
    tokio::spawn(apply_loop(store, rx, hub, dispatcher, shutdown));
    tracing::info!(carrier = ?kind, "task events between nodes go by {kind:?}");
    Ok(Some(kind))
}

/// Applies changes as they arrive.
async fn apply_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Change>,
    hub: Arc<Hub>,
    dispatcher: Dispatcher,
    shutdown: CancellationToken,
) {
    let fetches = Arc::new(Semaphore::new(MAX_FETCHES));
    loop {
        let change = tokio::select! {
            () = shutdown.cancelled() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
        };
        if change.is_gap() {
            // Changes may have been missed: cached tasks are read again, and
            // the lanes look for work.
            hub.clear();
            dispatcher.wake_all();
            continue;
        }
        // A change this node already knows of (its own, echoed back, or an
        // older one arriving late) changes nothing here.
        let known = hub
            .get(&change.task_id)
            .is_some_and(|t| t.version >= change.version);
        if known {
            continue;
        }
        dispatcher.on_change(&change);
        hub.invalidate_pages(change.user_id, change.status);
        if !hub.wants(&change.task_id, change.user_id) {
            continue;
        }
        let Ok(permit) = fetches.clone().acquire_owned().await else {
            return;
        };
        let (store, hub) = (store.clone(), hub.clone());
        tokio::spawn(async move {
            match store.get_task(&change.task_id).await {
                Ok(Some(task)) => hub.publish_remote(&task),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(task.id = %change.task_id, error = %e, "reading task {} after a change elsewhere failed: {e}", change.task_id)
                }
            }
            drop(permit);
        });
    }
}

/// Publishes this node's changes to Redis, pipelined on the shared
/// command connection (reconnected as needed). Changes made while Redis is
/// away are dropped (after a warning): other nodes clear their caches when
/// they reconnect.
async fn publish_loop(
    redis: Arc<Redis>,
    mut rx: mpsc::UnboundedReceiver<Change>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(256);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            n = rx.recv_many(&mut batch, 256) => if n == 0 { return },
        }
        let mut pipe = ::redis::pipe();
        for change in &batch {
            pipe.cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(change.encode())
                .ignore();
        }
        if let Err(e) = redis.pipeline(&pipe).await {
            tracing::warn!(error = %e, "publishing {} task events to redis failed: {e}", batch.len());
        }
        batch.clear();
    }
}

/// Receives other nodes' changes from Redis. After a reconnect, changes may
/// have been missed: the cache is cleared so reads go to the store.
async fn subscribe_loop(
    redis: Arc<Redis>,
    tx: mpsc::Sender<Change>,
    hub: Arc<Hub>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    let mut first = true;
    loop {
        let run = async {
            let mut sub = redis.subscribe(CHANNEL).await?;
            if !first {
                hub.clear();
            }
            first = false;
            delay = Duration::from_millis(100);
            loop {
                // A silent connection is pinged; one that does not answer is
                // dead (a blackholed Redis would otherwise look like a quiet
                // one for ever).
                let next = tokio::time::timeout(SUBSCRIBER_IDLE, sub.on_message().next()).await;
                let msg = match next {
                    Ok(Some(msg)) => msg,
                    Ok(None) => return Err(redis::Error::Redis("subscription closed".into())),
                    Err(_) => {
                        tokio::time::timeout(SUBSCRIBER_IDLE, sub.ping::<::redis::Value>())
                            .await
                            .map_err(|_| redis::Error::Timeout(SUBSCRIBER_IDLE))??;
                        continue;
                    }
                };
                if let Some(change) = std::str::from_utf8(msg.get_payload_bytes())
                    .ok()
                    .and_then(Change::decode)
                    && tx.send(change).await.is_err()
                {
                    return Ok::<(), redis::Error>(());
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = run => match r {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "the redis event subscription failed: {e}; reconnecting"),
            },
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Reads recent changes from the store every `every` (MySQL without Redis).
async fn poll_loop(
    store: Arc<dyn Store>,
    every: Duration,
    tx: mpsc::Sender<Change>,
    shutdown: CancellationToken,
) {
    let mut newest = crate::now_ms();
    // Versions already passed on, for changes the overlap reads again.
    let mut seen: HashMap<String, (i64, i64)> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let mut from = newest - POLL_OVERLAP_MS;
        // Page through a burst: a full page continues where it ended.
        loop {
            let changes = match store.changes_since(from, POLL_PAGE).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "reading recent task changes failed: {e}");
                    break;
                }
            };
            let full = changes.len() == POLL_PAGE as usize;
            let last = changes.last().map(|(_, at)| *at);
            for (change, at) in changes {
                newest = newest.max(at);
                let fresh = seen
                    .get(&change.task_id)
                    .is_none_or(|(v, _)| *v < change.version);
                if fresh {
                    seen.insert(change.task_id.clone(), (change.version, at));
                    if tx.send(change).await.is_err() {
                        return;
                    }
                }
            }
            match last {
                // (A page of changes all in one millisecond cannot advance.)
                Some(at) if full && at > from => from = at,
                _ => break,
            }
        }
        let keep_from = newest - POLL_OVERLAP_MS;
        seen.retain(|_, (_, at)| *at >= keep_from);
    }
}
