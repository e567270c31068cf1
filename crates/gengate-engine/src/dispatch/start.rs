//! Building the dispatcher from its parts, and the loops every node runs
//! beside its lanes: deadlines and housekeeping.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gengate_core::policy::FairQueue;
use gengate_core::{Event, ModelSpec, TaskId};
use gengate_store::Store;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::cluster::StoreClaims;
use super::dispatcher::{Dispatcher, Inner, Settings, WorkSource};
use super::health::Health;
use super::lane::{Lane, LaneConfig, LaneState, MAX_CONCURRENT_POLLS};
use super::local::LocalQueue;
use super::transition::Outcome;
use crate::hub::Hub;
use crate::media::Media;
use crate::metrics::Metrics;

impl Dispatcher {
    #[expect(
        clippy::too_many_arguments,
        reason = "called once, from app::build, with the parts it has built"
    )]
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        lanes: HashMap<String, LaneConfig>,
        models: &[ModelSpec],
        settings: Settings,
        metrics: Arc<Metrics>,
        media: Arc<Media>,
        shutdown: CancellationToken,
    ) -> Self {
        let lanes = lanes
            .into_iter()
            .map(|(name, c)| {
                let limit = c.concurrency.max(1);
                let callbacks = c.callbacks.filter(|_| c.provider.supports_callbacks());
                let lane = Lane {
                    name: name.clone(),
                    provider: c.provider,
                    limit,
                    resubmit_unknown: c.resubmit_unknown,
                    poll_gap_ms: 1000.0 / c.poll_rate.max(0.001),
                    callbacks,
                    daily_credits: c.daily_credits,
                    state: Mutex::new(LaneState {
                        queue: FairQueue::default(),
                        held: HashSet::new(),
                        following: HashMap::new(),
                        timers: BinaryHeap::new(),
                        latency_ewma: None,
                        latency: HashMap::new(),
                        health: Health::new(limit, c.health),
                        next_poll_slot: 0.0,
                        callbacks: 0,
                        controls: Default::default(),
                    }),
                    wake: Notify::new(),
                    follow_wake: Notify::new(),
                    polls: Semaphore::new(MAX_CONCURRENT_POLLS),
                };
                (name, Arc::new(lane))
            })
            .collect();
        let models = models.iter().map(|m| (m.name.clone(), m.clone())).collect();
        let source: Box<dyn WorkSource> = if store.shared() {
            Box::new(StoreClaims)
        } else {
            Box::new(LocalQueue)
        };
        Self {
            inner: Arc::new(Inner {
                source,
                store,
                hub,
                lanes,
                models,
                settings,
                metrics,
                tracker: TaskTracker::new(),
                shutdown,
                changed: Notify::new(),
                deadlines: Mutex::default(),
                deadline_wake: Notify::new(),
                running: AtomicBool::new(false),
                copy_slots: Arc::new(Semaphore::new(media.settings.concurrency.max(1))),
                media,
                copying: Mutex::default(),
                lease: settings.lease,
                stopped: CancellationToken::new(),
                lease_epoch: Mutex::new(CancellationToken::new()),
            }),
        }
    }

    pub(super) async fn deadline_loop(self) {
        loop {
            let now = self.now();
            let expired: Vec<TaskId> = {
                let mut d = self.inner.deadlines.lock().expect("deadlines lock");
                let mut out = Vec::new();
                while d.first().is_some_and(|(at, _)| *at <= now) {
                    if let Some((_, id)) = d.pop_first() {
                        out.push(id);
                    }
                }
                out
            };
            for id in expired {
                match self
                    .transition(&id, None, |t| {
                        (!t.status.is_terminal()).then_some(Event::Expire)
                    })
                    .await
                {
                    Ok(Outcome::Stored(_)) => warn!(task.id = %id, "task {id} passed its deadline"),
                    Ok(_) => {}
                    Err(e) => {
                        error!(task.id = %id, error = %e, "expiring task {id} failed: {e}; trying again shortly");
                        self.inner
                            .deadlines
                            .lock()
                            .expect("deadlines lock")
                            .insert((self.now() + 1000, id.clone()));
                    }
                }
            }
            let next = self
                .inner
                .deadlines
                .lock()
                .expect("deadlines lock")
                .first()
                .map(|(at, _)| *at);
            let wait_ms = next.map_or(1000, |at| (at - self.now()).clamp(1, 1000));
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = self.inner.deadline_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
    }

    pub(super) async fn housekeeping_loop(self) {
        let ttl = self.inner.settings.idempotency_ttl.as_millis() as i64;
        loop {
            match self.inner.store.purge_idempotency(self.now() - ttl).await {
                Ok(0) => {}
                Ok(n) => info!(
                    count = n,
                    "forgot {n} idempotency keys older than the retention period"
                ),
                Err(e) => warn!(error = %e, "purging idempotency keys failed: {e}"),
            }
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(600)) => {}
            }
        }
    }
}
