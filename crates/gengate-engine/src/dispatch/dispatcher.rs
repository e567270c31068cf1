//! The dispatcher's handle and what its parts share: the [`WorkSource`]
//! trait (where a lane's work comes from), starting and stopping the loops,
//! handing it new tasks, and its figures.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gengate_core::{ModelSpec, Task, TaskId};
use gengate_store::Store;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::health::HealthView;
use super::lane::{Lane, LaneState};
use crate::Clock;
use crate::hub::Hub;
use crate::media::Media;
use crate::metrics::{Metrics, ProviderGauges};

/// Timing knobs of the dispatcher.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub poll_initial: Duration,
    pub poll_max: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub idempotency_ttl: Duration,
    /// How long a task stays leased to its node without a heartbeat (shared
    /// stores only).
    pub lease: Duration,
    /// Where the dispatcher reads the time (the system's, but in tests).
    pub clock: Clock,
}

/// What every part of the dispatcher shares.
pub(super) struct Inner {
    /// Where the lanes' work comes from: the local queue or store claims.
    pub(super) source: Box<dyn WorkSource>,
    pub(super) store: Arc<dyn Store>,
    pub(super) hub: Arc<Hub>,
    pub(super) lanes: HashMap<String, Arc<Lane>>,
    pub(super) models: HashMap<String, ModelSpec>,
    pub(super) settings: Settings,
    pub(super) metrics: Arc<Metrics>,
    pub(super) tracker: TaskTracker,
    pub(super) shutdown: CancellationToken,
    /// Signalled after every change, for [`Dispatcher::wait_idle`].
    pub(super) changed: Notify,
    /// Deadlines of unfinished tasks.
    pub(super) deadlines: Mutex<BTreeSet<(i64, TaskId)>>,
    pub(super) deadline_wake: Notify,
    pub(super) running: AtomicBool,
    /// Copies outputs of tasks in `storing`.
    pub(super) media: Arc<Media>,
    /// Bounds the copies under way (`media.concurrency`).
    pub(super) copy_slots: Arc<Semaphore>,
    /// Copy jobs started and not yet stored (for [`Dispatcher::is_idle`]).
    pub(super) copying: Mutex<HashSet<TaskId>>,
    /// See [`Settings::lease`].
    pub(super) lease: Duration,
    /// Fired once the work under way at shutdown is done (ends heartbeats).
    pub(super) stopped: CancellationToken,
    /// Cancelled when this node lets go of every task (it stalled past its
    /// leases): submissions and lookups under way stop with it, so nothing
    /// started under a lost lease goes on beside the task's new holder.
    pub(super) lease_epoch: Mutex<CancellationToken>,
}

/// What `/v1/admin/stats` shows of one provider.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LaneStats {
    pub provider: String,
    pub concurrency_limit: usize,
    pub in_flight: usize,
    pub queued: usize,
    pub following: usize,
    /// Average seconds from acceptance to result, recent tasks weighted most.
    pub latency_seconds: Option<f64>,
    /// Circuit breaker, usable slots and account problems.
    pub health: HealthView,
    /// Provider callbacks received and accepted.
    pub callbacks_received: u64,
    /// Paused by an admin: its queued tasks wait.
    pub paused: bool,
    /// Credits of the tasks sent to it today (UTC), and its daily cap.
    pub spent_today: i64,
    pub daily_credits: Option<i64>,
}

/// The dispatcher handle. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    pub(super) inner: Arc<Inner>,
}

impl Dispatcher {
    /// Whether recovery finished and the loops run.
    pub fn is_running(&self) -> bool {
        self.inner.running.load(Ordering::Acquire)
    }

    /// Runs every lane until shutdown (after [`Dispatcher::recover`]), then
    /// waits (up to `grace`) for submissions and polls under way to be stored.
    ///
    /// # Errors
    /// When the store cannot be read at start.
    pub async fn run(self, grace: Duration) -> anyhow::Result<()> {
        for lane in self.inner.lanes.values() {
            let feed = self.inner.source.feed(self.clone(), lane.clone());
            self.inner.tracker.spawn(feed);
            self.inner
                .tracker
                .spawn(self.clone().poll_loop(lane.clone()));
        }
        self.inner.tracker.spawn(self.clone().deadline_loop());
        self.inner.tracker.spawn(self.clone().housekeeping_loop());
        // Other nodes' pauses, and spending, are read from the store; a
        // lone node without caps learns of its own pauses as they are made.
        // A pause outlives a restart: read once at start in any case.
        let capped = self.inner.lanes.values().any(|l| l.daily_credits.is_some());
        if self.inner.store.shared() || capped {
            self.inner.tracker.spawn(self.clone().controls_loop());
        } else {
            self.refresh_controls().await;
        }
        // Heartbeats (on a shared store) go on through the shutdown grace,
        // while submissions and polls under way finish: a lease must not run
        // out under live work.
        let heartbeats = self.inner.source.start(&self);
        self.inner.running.store(true, Ordering::Release);
        self.inner.changed.notify_waiters();
        self.inner.shutdown.cancelled().await;
        self.inner.running.store(false, Ordering::Release);
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            warn!("dispatcher work still under way after {grace:?}; it resumes at next start");
        }
        self.inner.stopped.cancel();
        if let Some(h) = heartbeats {
            let _ = h.await;
        }
        Ok(())
    }

    /// Hands a newly created task to its lane.
    pub fn enqueue(&self, task: &Task) {
        self.track_deadline(task);
        if let Some(lane) = self.inner.lanes.get(&task.provider) {
            self.inner.source.ready(&mut lane.lock(), task, self.now());
            lane.wake.notify_one();
        }
        self.inner.changed.notify_waiters();
    }

    pub(super) fn track_deadline(&self, task: &Task) {
        let mut d = self.inner.deadlines.lock().expect("deadlines lock");
        let first = d.first().map(|(at, _)| *at);
        d.insert((task.deadline_at, task.id.clone()));
        if first.is_none_or(|f| task.deadline_at < f) {
            self.inner.deadline_wake.notify_one();
        }
    }

    /// Per-provider figures for the admin API.
    pub fn stats(&self) -> Vec<LaneStats> {
        let mut out: Vec<LaneStats> = self
            .inner
            .lanes
            .values()
            .map(|lane| {
                let st = lane.lock();
                LaneStats {
                    provider: lane.name.clone(),
                    concurrency_limit: lane.limit,
                    in_flight: st.held.len(),
                    queued: st.queue.len(),
                    following: st.following.len(),
                    latency_seconds: st.latency_ewma.map(|l| (l * 100.0).round() / 100.0),
                    health: st.health.view(self.now()),
                    callbacks_received: st.callbacks,
                    paused: st.controls.paused,
                    spent_today: st.controls.spent_today,
                    daily_credits: lane.daily_credits,
                }
            })
            .collect();
        out.sort_by(|a, b| a.provider.cmp(&b.provider));
        out
    }

    /// Gauges for `/metrics`.
    pub fn gauges(&self) -> Vec<ProviderGauges> {
        self.stats()
            .into_iter()
            .map(|s| ProviderGauges {
                provider: s.provider,
                queued: s.queued as u64,
                in_flight: s.in_flight as u64,
                limit: s.concurrency_limit as u64,
            })
            .collect()
    }

    /// Whether nothing is queued, in flight or being stored anywhere.
    pub fn is_idle(&self) -> bool {
        self.inner.copying.lock().expect("copying lock").is_empty()
            && self.inner.lanes.values().all(|l| {
                let st = l.lock();
                st.queue.is_empty() && st.held.is_empty()
            })
    }

    /// Now, in Unix milliseconds, by the dispatcher's clock.
    pub fn now(&self) -> i64 {
        self.inner.settings.clock.now_ms()
    }

    /// What the dispatcher can tell by itself of a slot or a task it has
    /// lost track of; empty when all is well. Tests check it when they are
    /// done (a test app's drop).
    ///
    /// - every task a lane follows holds one of its slots (a followed task
    ///   without one would let a lane take more work than its account
    ///   allows);
    /// - a lane holds no task that is also in its queue (a task is either
    ///   waiting or under way).
    pub fn audit(&self) -> Vec<String> {
        let mut found = Vec::new();
        for lane in self.inner.lanes.values() {
            let st = lane.lock();
            for id in st.following.keys() {
                if !st.held.contains(id) {
                    found.push(format!(
                        "{}: task {id} is followed without a slot",
                        lane.name
                    ));
                }
            }
            for id in &st.held {
                if st.queue.contains(id) {
                    found.push(format!(
                        "{}: task {id} holds a slot and waits in the queue",
                        lane.name
                    ));
                }
            }
        }
        found
    }

    /// Waits until the dispatcher is running and idle; `false` on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.inner.changed.notified();
            if self.is_running() && self.is_idle() {
                return true;
            }
            // A change wakes us; the short sleep covers tasks whose retry time
            // passes without any change being signalled.
            let wait = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                () = changed => {}
                () = wait => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
        }
    }
}

/// A future a [`WorkSource`] hands back.
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a lane's work comes from, and what that implies.
pub(super) trait WorkSource: Send + Sync {
    /// Runs until shutdown, handing the lane's free slots to ready tasks.
    fn feed(&self, dispatcher: Dispatcher, lane: Arc<Lane>) -> BoxFuture<'static, ()>;

    /// Starts what the node runs beside its lanes, in the dispatcher's
    /// tracker; returns the heartbeats, if any, which must outlive the
    /// tracker's work (they end when it is done).
    fn start(&self, dispatcher: &Dispatcher) -> Option<JoinHandle<()>>;

    /// Picks up the unfinished work at start, before requests are served.
    fn recover<'a>(&'a self, dispatcher: &'a Dispatcher) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Task `task` became ready at this lane (created, retried, deferred or
    /// moved here).
    fn ready(&self, lane: &mut LaneState, task: &Task, now: i64);

    /// Whether the store fences this node's writes with leases, so a refused
    /// write may mean the node lost the task, and the task may move on
    /// without this node knowing.
    fn leased(&self) -> bool;
}
