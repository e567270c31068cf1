//! The dispatcher: moves tasks through their lifecycle at the providers.
//!
//! Per provider account there is one *lane*: a fair queue of ready tasks, a
//! count of slots in use (never above the account's concurrency), a timer heap
//! of the tasks it follows, and two loops, one handing free slots to queued
//! tasks and one polling running tasks when their timers fire.
//!
//! Every change goes the same way: read the task, compute the next state with
//! [`gengate_core::apply`], store it conditionally on the version read, and
//! only then carry out the effects. A crash between any two steps leaves a
//! stored state that [`Dispatcher::run`] recovers at start: queued tasks are
//! queued again, running tasks are followed by their stored provider id (never
//! submitted again), and tasks caught in `submitting` are reconciled through
//! the provider's client reference where it has one.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gengate_core::policy::{self, FairQueue, QueueEntry};
use gengate_core::{Effect, Event, ModelSpec, Status, Task, TaskError, TaskId, UserId, apply};
use gengate_providers::{FollowRef, JobState, Provider, ProviderError, SubmitRequest};
use gengate_store::{Fence, Store, StoreError, holds_lease};
use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::hub::Hub;
use crate::media::Media;
use crate::metrics::{Metrics, ProviderGauges};
use crate::now_ms;

mod cluster;
mod health;

pub use health::{AccountProblem, HealthSettings, HealthView, LastErrorView};
use health::{Gate, Health};

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
}

/// One provider account as the dispatcher drives it.
pub struct LaneConfig {
    pub provider: Arc<dyn Provider>,
    pub concurrency: usize,
    /// Whether a submission of unknown outcome may be repeated.
    pub resubmit_unknown: bool,
    pub health: HealthSettings,
    /// Status queries per second at most.
    pub poll_rate: f64,
    /// Where the provider posts callbacks, when they are in use.
    pub callbacks: Option<CallbackTarget>,
}

/// Where a provider's callbacks go and the key that makes their tokens.
#[derive(Clone)]
pub struct CallbackTarget {
    /// `https://…/v1/callbacks/{provider}`.
    pub url: String,
    pub key: Vec<u8>,
}

/// The token a callback URL carries for one task: an HMAC of the provider
/// entry and task id, so a callback is bound to a task we submitted and
/// nobody can forge one for another task.
pub fn callback_token(key: &[u8], provider: &str, task_id: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(provider.as_bytes());
    mac.update(b"\n");
    mac.update(task_id.as_bytes());
    let tag = mac.finalize().into_bytes();
    crate::keys::hex(&tag[..16])
}

/// Recent run times of one model, to time polls.
#[derive(Default)]
struct LatencyWindow {
    recent: std::collections::VecDeque<f64>,
    /// (10th, 90th) percentile of `recent`, refreshed as it fills.
    p10_p90: Option<(f64, f64)>,
    since_refresh: u32,
}

/// Observations kept per model.
const LATENCY_WINDOW: usize = 256;
/// Observations needed before they replace the configured expectation.
const LATENCY_MIN_SAMPLES: usize = 8;

impl LatencyWindow {
    fn observe(&mut self, secs: f64) {
        if self.recent.len() == LATENCY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(secs);
        self.since_refresh += 1;
        if self.recent.len() >= LATENCY_MIN_SAMPLES
            && (self.p10_p90.is_none() || self.since_refresh >= 16)
        {
            let mut v: Vec<f64> = self.recent.iter().copied().collect();
            v.sort_by(f64::total_cmp);
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            self.p10_p90 = Some((at(0.1), at(0.9)));
            self.since_refresh = 0;
        }
    }
}

/// Polls under way at once per provider; more wait for the next round.
const MAX_CONCURRENT_POLLS: usize = 64;
/// Weight of the newest observation in the latency average.
const LATENCY_EWMA_ALPHA: f64 = 0.2;
/// "No such task" answers in a row before a running task's attempt counts
/// as lost (and is retried as a new, paid submission).
const NOT_FOUND_STRIKES: u8 = 3;
/// Progress changes smaller than this are not written to the store.
const PROGRESS_STEP: f32 = 0.1;

struct Follow {
    provider_task_id: String,
    model: String,
    /// "No such task" answers in a row: one could be a proxy's 404 or a
    /// provider's overloaded error code; a retry would pay twice.
    not_found: u8,
    /// A callback came while a poll was under way: poll again right after.
    poke: bool,
    accepted_at: i64,
    interval_ms: u64,
    next_at: i64,
    stored_progress: f32,
}

struct LaneState {
    queue: FairQueue,
    /// Slots this node holds: its tasks submitting or running at this
    /// provider. A set, so a slot is given back once however many paths
    /// (a cancel, a lost lease, the task's end) report it.
    held: HashSet<TaskId>,
    following: HashMap<TaskId, Follow>,
    /// Poll timers; an entry is stale unless it matches `following[id].next_at`.
    timers: BinaryHeap<Reverse<(i64, TaskId)>>,
    /// Observed seconds from acceptance to result.
    latency_ewma: Option<f64>,
    /// Per model: recent run times, to time polls.
    latency: HashMap<String, LatencyWindow>,
    health: Health,
    /// When the next status query may go, Unix ms (queries are spread
    /// evenly).
    next_poll_slot: f64,
    /// Callbacks received (and accepted) for this provider.
    callbacks: u64,
}

struct Lane {
    name: String,
    provider: Arc<dyn Provider>,
    limit: usize,
    resubmit_unknown: bool,
    /// Milliseconds between two status queries at least.
    poll_gap_ms: f64,
    callbacks: Option<CallbackTarget>,
    state: Mutex<LaneState>,
    /// Wakes the slot loop: a slot freed or a task was queued.
    wake: Notify,
    /// Wakes the poll loop: a timer earlier than its sleep was added.
    follow_wake: Notify,
    polls: Semaphore,
}

impl LaneState {
    /// Stops working on task `id` here (its slot and its polls); whether
    /// this node was working on it.
    fn let_go(&mut self, id: &str) -> bool {
        let held = self.held.remove(id);
        self.following.remove(id).is_some() || held
    }
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().expect("lane state lock poisoned")
    }
}

struct Inner {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    lanes: HashMap<String, Arc<Lane>>,
    models: HashMap<String, ModelSpec>,
    settings: Settings,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Signalled after every change, for [`Dispatcher::wait_idle`].
    changed: Notify,
    /// Deadlines of unfinished tasks.
    deadlines: Mutex<BTreeSet<(i64, TaskId)>>,
    deadline_wake: Notify,
    running: AtomicBool,
    /// Copies outputs of tasks in `storing`.
    media: Arc<Media>,
    /// Bounds the copies under way (`media.concurrency`).
    copy_slots: Arc<Semaphore>,
    /// Copy jobs started and not yet stored (for [`Dispatcher::is_idle`]).
    copying: Mutex<HashSet<TaskId>>,
    /// See [`Settings::lease`].
    lease: Duration,
    /// Fired once the work under way at shutdown is done (ends heartbeats).
    stopped: CancellationToken,
    /// Cancelled when this node lets go of every task (it stalled past its
    /// leases): submissions and lookups under way stop with it, so nothing
    /// started under a lost lease goes on beside the task's new holder.
    lease_epoch: Mutex<CancellationToken>,
}

/// Why a provider callback is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackRefusal {
    /// No such provider entry, or it does not use callbacks.
    UnknownProvider,
    /// The token does not belong to this provider entry and task.
    BadToken,
    /// The body is not this provider's callback.
    Malformed(String),
}

/// Queue position and ETA of one task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueInfo {
    pub position: Option<u64>,
    pub eta_seconds: Option<u64>,
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
}

/// The dispatcher handle. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

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
                    }),
                    wake: Notify::new(),
                    follow_wake: Notify::new(),
                    polls: Semaphore::new(MAX_CONCURRENT_POLLS),
                };
                (name, Arc::new(lane))
            })
            .collect();
        let models = models.iter().map(|m| (m.name.clone(), m.clone())).collect();
        Self {
            inner: Arc::new(Inner {
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
        let clustered = self.clustered();
        for lane in self.inner.lanes.values() {
            if clustered {
                self.inner
                    .tracker
                    .spawn(self.clone().claim_loop(lane.clone()));
            } else {
                self.inner
                    .tracker
                    .spawn(self.clone().slot_loop(lane.clone()));
            }
            self.inner
                .tracker
                .spawn(self.clone().poll_loop(lane.clone()));
        }
        self.inner.tracker.spawn(self.clone().deadline_loop());
        if clustered {
            self.inner.tracker.spawn(self.clone().takeover_loop());
        }
        self.inner.tracker.spawn(self.clone().housekeeping_loop());
        // Heartbeats go on through the shutdown grace, while submissions and
        // polls under way finish: a lease must not run out under live work.
        let heartbeats = clustered.then(|| tokio::spawn(self.clone().lease_loop()));
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

    /// Loads every unfinished task: queued ones are queued again, running
    /// ones followed by their stored provider id, and ones caught mid-
    /// submission reconciled. Must finish before requests are served, so a
    /// cancel cannot race the rebuilt slot counts.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn recover(&self) -> anyhow::Result<()> {
        if self.clustered() {
            // Other nodes' tasks are theirs while their leases last; this
            // node's tasks from before a restart are taken over once their
            // leases expire (by whichever node looks first).
            info!(
                node = self.inner.store.node_id(),
                "sharing the store with other nodes: work is claimed and taken over through it"
            );
            return Ok(());
        }
        let tasks = self.inner.store.active_tasks().await?;
        let now = now_ms();
        let (mut queued, mut running, mut submitting, mut storing) = (0, 0, 0, 0);
        for task in tasks {
            if task.status == Status::Storing {
                // The provider is done: no lane needed, only the copy.
                self.track_deadline(&task);
                self.start_copy(task.id.clone());
                storing += 1;
                continue;
            }
            let Some(lane) = self.inner.lanes.get(&task.provider).cloned() else {
                error!(task.id = %task.id, provider = %task.provider, "task {} names provider {} which is not configured; it will expire at its deadline", task.id, task.provider);
                self.track_deadline(&task);
                continue;
            };
            self.track_deadline(&task);
            let mut st = lane.lock();
            match task.status {
                Status::Queued => {
                    st.queue.push(entry_of(&task), now);
                    queued += 1;
                }
                Status::Running => {
                    st.held.insert(task.id.clone());
                    st.queue.started(task.user_id);
                    let pid = task.provider_task_id.clone().unwrap_or_default();
                    self.follow_locked(&mut st, &task, pid, task.updated_at, now);
                    running += 1;
                }
                Status::Submitting => {
                    st.held.insert(task.id.clone());
                    st.queue.started(task.user_id);
                    drop(st);
                    submitting += 1;
                    let this = self.clone();
                    let span = info_span!("reconcile", task.id = %task.id);
                    self.inner
                        .tracker
                        .spawn(async move { this.reconcile(&lane, task).await }.instrument(span));
                }
                _ => {}
            }
        }
        info!(
            queued,
            running,
            submitting,
            storing,
            "recovered {queued} queued, {running} running, {submitting} submitting and {storing} storing tasks"
        );
        Ok(())
    }

    /// Hands a newly created task to its lane.
    pub fn enqueue(&self, task: &Task) {
        self.track_deadline(task);
        if let Some(lane) = self.inner.lanes.get(&task.provider) {
            // On a shared store the queue is the store's: the lane claims.
            if !self.clustered() {
                lane.lock().queue.push(entry_of(task), now_ms());
            }
            lane.wake.notify_one();
        }
        self.inner.changed.notify_waiters();
    }

    fn track_deadline(&self, task: &Task) {
        let mut d = self.inner.deadlines.lock().expect("deadlines lock");
        let first = d.first().map(|(at, _)| *at);
        d.insert((task.deadline_at, task.id.clone()));
        if first.is_none_or(|f| task.deadline_at < f) {
            self.inner.deadline_wake.notify_one();
        }
    }

    /// Queue position (1 = next) and ETA of a task, from the live queue and
    /// the provider's observed latency.
    pub fn queue_info(&self, task: &Task) -> QueueInfo {
        let Some(lane) = self.inner.lanes.get(&task.provider) else {
            return QueueInfo::default();
        };
        let expected = self.expected_seconds(&task.model);
        let st = lane.lock();
        let latency = st.latency_ewma.unwrap_or(expected);
        match task.status {
            Status::Queued => {
                let position = st.queue.position(&task.id);
                let eta = match position {
                    Some(_) => policy::eta_seconds(position, lane.limit as u32, latency, None),
                    // Waiting for a retry time: that wait, then a run.
                    None => ((task.not_before - now_ms()).max(0) as f64 / 1000.0 + latency).ceil()
                        as u64,
                };
                QueueInfo {
                    position,
                    eta_seconds: Some(eta),
                }
            }
            Status::Submitting => QueueInfo {
                position: None,
                eta_seconds: Some(latency.ceil() as u64),
            },
            Status::Running => {
                let elapsed = st
                    .following
                    .get(&task.id)
                    .map_or(0.0, |f| (now_ms() - f.accepted_at).max(0) as f64 / 1000.0);
                QueueInfo {
                    position: None,
                    eta_seconds: Some(policy::eta_seconds(None, 1, latency, Some(elapsed))),
                }
            }
            _ => QueueInfo::default(),
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
                    health: st.health.view(now_ms()),
                    callbacks_received: st.callbacks,
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

    /// Applies the event `make` produces for the current task, storing it
    /// conditionally and carrying out its effects. Starts from `hint` when
    /// given (saving a read) and re-reads on a version conflict.
    /// Returns the stored task, or `None` when the event did not apply.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn transition(
        &self,
        id: &str,
        hint: Option<Task>,
        mut make: impl FnMut(&Task) -> Option<Event>,
    ) -> Result<Option<Task>, StoreError> {
        let mut hint = hint;
        for attempt in 0..16 {
            let first = attempt == 0;
            // First try: the caller's copy or the cached state (exact on one
            // node); a stale one only costs a failed conditional update,
            // after which the store is read.
            let task = match hint.take().or_else(|| {
                first
                    .then(|| self.inner.hub.get(id))
                    .flatten()
                    .map(|t| (*t).clone())
            }) {
                Some(t) => t,
                None => match self.inner.store.get_task(id).await? {
                    Some(t) => t,
                    None => return Ok(None),
                },
            };
            let Some(event) = make(&task) else {
                return Ok(None);
            };
            let event_name = event.name();
            let (mut next, effects) = match apply(&task, event, now_ms()) {
                Ok(r) => r,
                Err(illegal) => {
                    debug!(task.id = %id, "ignored: {illegal}");
                    return Ok(None);
                }
            };
            next.version = task.version + 1;
            let fence = fence_of(event_name);
            if !self.inner.store.update_task(&next, fence).await? {
                if fence == Fence::Lease && self.clustered() {
                    // Refused at the version read: then the lease is gone.
                    match self.inner.store.get_task(id).await? {
                        Some(now) if now.version == task.version => {
                            self.lost_lease(&now);
                            return Ok(None);
                        }
                        Some(now) => hint = Some(now),
                        None => return Ok(None),
                    }
                }
                continue;
            }
            {
                self.inner.hub.publish(&next);
                debug!(task.id = %id, event = event_name, "task {id} {} -> {}", task.status.as_str(), next.status.as_str());
                self.inner
                    .metrics
                    .transition(task.status.as_str(), next.status.as_str());
                if next.status.is_terminal() && !task.status.is_terminal() {
                    info!(task.id = %id, status = next.status.as_str(), attempts = next.attempts, "task {id} {}", next.status.as_str());
                }
                self.run_effects(&next, &effects);
                return Ok(Some(next));
            }
        }
        warn!(task.id = %id, "task {id} kept changing under us; event dropped");
        Ok(None)
    }

    fn run_effects(&self, task: &Task, effects: &[Effect]) {
        if task.status.is_terminal() {
            self.inner
                .deadlines
                .lock()
                .expect("deadlines lock")
                .remove(&(task.deadline_at, task.id.clone()));
        }
        if effects.contains(&Effect::CopyOutputs) {
            self.start_copy(task.id.clone());
        }
        let Some(lane) = self.inner.lanes.get(&task.provider) else {
            return;
        };
        // A moved task leaves the old lane's queue first, under that lane's
        // lock alone: two lanes are never locked at once.
        for effect in effects {
            if let Effect::MoveFrom { provider } = effect
                && let Some(old) = self.inner.lanes.get(provider)
            {
                old.lock().queue.remove(&task.id);
            }
        }
        let now = now_ms();
        let clustered = self.clustered();
        let mut st = lane.lock();
        for effect in effects {
            match effect {
                Effect::Enqueue => {
                    if !clustered {
                        st.queue.push(entry_of(task), now);
                    }
                    lane.wake.notify_one();
                }
                Effect::Dequeue => {
                    st.queue.remove(&task.id);
                }
                Effect::ReleaseSlot => {
                    // (On a shared store the slot may be held by another
                    // node; that node hears of the change and lets go.)
                    if st.held.remove(&task.id) {
                        st.queue.finished(task.user_id);
                    }
                    st.following.remove(&task.id);
                    lane.wake.notify_one();
                }
                Effect::Follow => {
                    let pid = task.provider_task_id.clone().unwrap_or_default();
                    let first = self.first_poll_ms(lane, &st, &task.model);
                    self.follow_locked(&mut st, task, pid, now, now + first);
                    lane.follow_wake.notify_one();
                }
                Effect::MoveFrom { .. } => {
                    if !clustered {
                        st.queue.push(entry_of(task), now);
                    }
                    lane.wake.notify_one();
                }
                Effect::CopyOutputs => {} // started above: it needs no lane
                Effect::CancelAtProvider { provider_task_id } => {
                    let (lane, id, pid) = (lane.clone(), task.id.clone(), provider_task_id.clone());
                    self.inner.tracker.spawn(async move {
                        if let Err(e) = lane.provider.cancel(FollowRef { task_id: &id, provider_task_id: &pid }).await {
                            warn!(task.id = %id, error = %e, "cancel of task {id} at provider {} failed: {e}", lane.name);
                        }
                    });
                }
            }
        }
        drop(st);
        self.inner.changed.notify_waiters();
    }

    /// Copies a storing task's outputs in the background (bounded by
    /// `media.concurrency`), then stores the result: `succeeded` with the
    /// stored outputs, or `failed`. Safe to repeat: keys are per task and
    /// output, and a task no longer storing is left alone.
    fn start_copy(&self, id: TaskId) {
        if !self
            .inner
            .copying
            .lock()
            .expect("copying lock")
            .insert(id.clone())
        {
            return; // already under way
        }
        let this = self.clone();
        let span = info_span!("store_outputs", task.id = %id);
        self.inner.tracker.spawn(
            async move {
                tokio::select! {
                    () = this.inner.shutdown.cancelled() => {
                        // Left in `storing`; the next start copies it again.
                    }
                    () = this.copy_task(&id) => {}
                }
                this.inner.copying.lock().expect("copying lock").remove(&id);
                this.inner.changed.notify_waiters();
            }
            .instrument(span),
        );
    }

    async fn copy_task(&self, id: &str) {
        let Ok(_permit) = self.inner.copy_slots.clone().acquire_owned().await else {
            return;
        };
        // The cached state is exact on one node; the store when it is not
        // cached, retried (a task must not sit in `storing` until a restart).
        let mut delay = Duration::from_millis(100);
        let task = loop {
            let read = match self.inner.hub.get(id) {
                Some(t) => Ok(Some((*t).clone())),
                None => self.inner.store.get_task(id).await,
            };
            match read {
                Ok(Some(t)) if t.status == Status::Storing => break t,
                Ok(_) => return,
                Err(e) => {
                    error!(task.id = %id, error = %e, "reading task {id} to store its outputs failed: {e}; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        };
        let started = std::time::Instant::now();
        let outcome = self.inner.media.copy_all(&task).await;
        let event = match outcome {
            Ok(outputs) => Event::Stored { outputs },
            Err(error) => {
                warn!(task.id = %id, code = %error.code, "storing the outputs of task {id} failed: {}", error.message);
                Event::Fail {
                    error,
                    retry_at: now_ms(),
                }
            }
        };
        // The copy is done and paid for in time: its result is stored
        // whatever it takes (a store failure is retried, not forgotten).
        let stored = self
            .transition_retrying(id, None, |t| {
                (t.status == Status::Storing).then(|| event.clone())
            })
            .await;
        if let Some(t) = stored.filter(|t| t.status == Status::Succeeded) {
            let duration_ms = started.elapsed().as_millis() as u64;
            info!(task.id = %id, duration_ms, outputs = t.outputs.len(), "stored {} outputs of task {id}", t.outputs.len());
        }
    }

    fn follow_locked(
        &self,
        st: &mut LaneState,
        task: &Task,
        pid: String,
        accepted_at: i64,
        first_poll_at: i64,
    ) {
        st.following.insert(
            task.id.clone(),
            Follow {
                provider_task_id: pid,
                model: task.model.clone(),
                not_found: 0,
                poke: false,
                accepted_at,
                interval_ms: self.inner.settings.poll_initial.as_millis() as u64,
                next_at: first_poll_at,
                stored_progress: 0.0,
            },
        );
        st.timers.push(Reverse((first_poll_at, task.id.clone())));
    }

    /// The run-time window (10th and 90th percentile, seconds) of `model`
    /// at this lane: observed, or else the configured expectation.
    fn latency_window(&self, st: &LaneState, model: &str) -> (f64, f64) {
        if let Some(w) = st.latency.get(model).and_then(|w| w.p10_p90) {
            return w;
        }
        let (lo, hi) = self
            .inner
            .models
            .get(model)
            .map_or((10.0, 10.0), |m| m.expected_range);
        if hi > lo {
            (lo, hi)
        } else {
            (lo * 0.5, lo * 1.5)
        }
    }

    /// How long after acceptance the first status query goes. Without
    /// callbacks: when the quickest tasks finish, since asking earlier only
    /// costs queries. With callbacks the poll is the fallback for a lost
    /// one: when nearly all tasks have finished.
    fn first_poll_ms(&self, lane: &Lane, st: &LaneState, model: &str) -> i64 {
        let (lo, hi) = self.latency_window(st, model);
        let at = if lane.callbacks.is_some() { hi } else { lo };
        // Spread after the mark, never before it: a query before the
        // quickest task can finish is wasted.
        let spread: f64 = rand::thread_rng().gen_range(1.0..1.2);
        ((at * 1000.0 * spread) as i64).max(self.inner.settings.poll_initial.as_millis() as i64)
    }

    fn expected_seconds(&self, model: &str) -> f64 {
        self.inner
            .models
            .get(model)
            .map_or(10.0, |m| m.expected_seconds)
    }

    fn backoff_at(&self, attempts: u32) -> i64 {
        let s = &self.inner.settings;
        let jitter: f64 = rand::thread_rng().r#gen();
        now_ms()
            + policy::backoff_ms(
                attempts,
                s.retry_base.as_millis() as u64,
                s.retry_max.as_millis() as u64,
                jitter,
            ) as i64
    }

    /// Gives back a slot taken for a task that then could not be claimed.
    fn release_unclaimed(&self, lane: &Lane, id: &str, user: UserId) {
        let mut st = lane.lock();
        st.health.abandon_probe();
        if st.held.remove(id) {
            st.queue.finished(user);
        }
        drop(st);
        lane.wake.notify_one();
        self.inner.changed.notify_waiters();
    }

    /// While `lane` takes no work (circuit open, account paused), moves its
    /// queued tasks whose model names a failover provider that does take
    /// work there.
    fn fail_over(&self, lane: &Arc<Lane>) {
        let targets = self.failover_targets(lane);
        if targets.is_empty() {
            return;
        }
        // Ids first, models after the lane lock is released (the cache has
        // locks of its own).
        let queued: Vec<TaskId> = lane.lock().queue.task_ids().cloned().collect();
        let moves: Vec<(TaskId, String)> = queued
            .into_iter()
            .filter_map(|id| {
                let task = self.inner.hub.get(&id)?;
                let to = targets.get(task.model.as_str())?;
                Some((id, to.clone()))
            })
            .collect();
        self.move_tasks(lane, moves);
    }

    /// Per model served by `lane`: the failover provider it names, if that
    /// one takes work now.
    fn failover_targets(&self, lane: &Lane) -> HashMap<String, String> {
        let now = now_ms();
        self.inner
            .models
            .values()
            .filter(|m| m.provider == lane.name)
            .filter_map(|m| Some((m.name.clone(), m.failover.clone()?)))
            .filter(|(_, to)| {
                self.inner
                    .lanes
                    .get(to)
                    .is_some_and(|l| l.lock().health.available(now))
            })
            .collect()
    }

    /// Moves queued tasks of `lane` to other providers (`moves`: task, to).
    fn move_tasks(&self, lane: &Lane, moves: Vec<(TaskId, String)>) {
        for (id, to) in moves {
            let (this, from) = (self.clone(), lane.name.clone());
            self.inner.tracker.spawn(async move {
                let moved = this
                    .transition(&id, None, |t| {
                        (t.status == Status::Queued && t.provider == from).then(|| Event::Reroute {
                            provider: to.clone(),
                        })
                    })
                    .await;
                match moved {
                    Ok(Some(_)) => info!(task.id = %id, "task {id} fails over from {from} to {to}"),
                    Ok(None) => {}
                    Err(e) => {
                        warn!(task.id = %id, error = %e, "moving task {id} to {to} failed: {e}")
                    }
                }
            });
        }
    }

    async fn slot_loop(self, lane: Arc<Lane>) {
        loop {
            loop {
                let next = {
                    let mut st = lane.lock();
                    let now = now_ms();
                    let in_flight = st.held.len();
                    // (Readiness first: the gate may hand out the one probe.)
                    if !st.queue.has_ready(now) || st.health.gate(now, in_flight) == Gate::Closed {
                        None
                    } else {
                        let e = st.queue.pop(now);
                        if let Some(e) = &e {
                            st.held.insert(e.task_id.clone());
                        }
                        e
                    }
                };
                let Some(entry) = next else { break };
                let span = info_span!("submit", task.id = %entry.task_id, provider = %lane.name);
                self.inner
                    .tracker
                    .spawn(self.clone().submit(lane.clone(), entry).instrument(span));
            }
            let (due, blocked) = {
                let st = lane.lock();
                (st.queue.next_due(), st.health.blocked_until(now_ms()))
            };
            if blocked.is_some() {
                self.fail_over(&lane);
            }
            let wait_ms = due
                .max(blocked)
                .map_or(1000, |d| (d - now_ms()).clamp(1, 1000));
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = lane.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
    }

    /// Applies an event that must not be lost: a store failure is retried
    /// with backoff until it works or shutdown comes (the next start then
    /// recovers the task from what is stored).
    async fn transition_retrying(
        &self,
        id: &str,
        hint: Option<Task>,
        make: impl Fn(&Task) -> Option<Event>,
    ) -> Option<Task> {
        let mut hint = hint;
        let mut delay = Duration::from_millis(100);
        loop {
            match self.transition(id, hint.take(), &make).await {
                Ok(r) => return r,
                Err(e) => {
                    error!(task.id = %id, error = %e, "storing a change of task {id} failed: {e}; retrying");
                    tokio::select! {
                        () = self.inner.shutdown.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Fails a task whose handling panicked, so the panic costs that task
    /// and not its slot or the process.
    async fn fail_after_panic(&self, id: &str) {
        error!(task.id = %id, "handling task {id} panicked; the task fails");
        let error = TaskError::new(
            "internal_error",
            "gengate hit an internal error while handling this task",
            false,
        );
        self.transition_retrying(id, None, |t| {
            t.status.holds_slot().then(|| Event::Fail {
                error: error.clone(),
                retry_at: 0,
            })
        })
        .await;
    }

    async fn submit(self, lane: Arc<Lane>, entry: QueueEntry) {
        let id = entry.task_id.clone();
        let claimed = self
            .transition(&id, None, |t| {
                // A task moved to another provider meanwhile is not ours.
                (t.status == Status::Queued && t.provider == lane.name).then_some(Event::Claim)
            })
            .await;
        let task = match claimed {
            Ok(Some(t)) => t,
            Ok(None) => return self.release_unclaimed(&lane, &id, entry.user_id),
            Err(e) => {
                // Could not even claim: put it back and try later.
                error!(task.id = %id, error = %e, "claiming task {id} failed: {e}");
                self.release_unclaimed(&lane, &id, entry.user_id);
                lane.lock().queue.push(
                    QueueEntry {
                        not_before: now_ms() + 1000,
                        ..entry
                    },
                    now_ms(),
                );
                return;
            }
        };
        self.run_claimed(lane, task, None).await;
    }

    /// Submits a claimed task and stores what the provider answered. The
    /// provider call and what follows run in their own task, so a panic in
    /// an adapter fails this task instead of leaking its slot.
    /// `epoch`, on a shared store: the lease epoch the task was claimed in;
    /// the work stops if it ends.
    async fn run_claimed(self, lane: Arc<Lane>, task: Task, epoch: Option<CancellationToken>) {
        let id = task.id.clone();
        let (this, lane2) = (self.clone(), lane.clone());
        let run = tokio::spawn(
            async move {
                let work = this.submit_claimed(&lane2, task);
                match epoch {
                    Some(epoch) => {
                        tokio::select! {
                            () = epoch.cancelled() => {}
                            () = work => {}
                        }
                    }
                    None => work.await,
                }
            }
            .in_current_span(),
        );
        if run.await.is_err_and(|e| e.is_panic()) {
            lane.lock().health.abandon_probe();
            self.fail_after_panic(&id).await;
        }
    }

    async fn submit_claimed(&self, lane: &Arc<Lane>, task: Task) {
        let Some(model) = self.inner.models.get(&task.model) else {
            let error = TaskError::new(
                "model_not_configured",
                format!("model {} is no longer configured", task.model),
                false,
            );
            lane.lock().health.abandon_probe();
            let id = task.id.clone();
            self.transition_retrying(&id, Some(task), |_| {
                Some(Event::Fail {
                    error: error.clone(),
                    retry_at: 0,
                })
            })
            .await;
            return;
        };
        let submission = Submission::new(lane, &task, model);
        let req = submission.request(&task);
        let result = lane.provider.submit(req).await;
        self.after_submit(lane, task, result).await;
    }

    async fn after_submit(
        &self,
        lane: &Arc<Lane>,
        task: Task,
        result: Result<String, ProviderError>,
    ) {
        let id = task.id.clone();
        self.record_outcome(lane, &result);
        match result {
            Ok(pid) => {
                info!(task.id = %id, provider_task_id = %pid, "task {id} accepted by {}", lane.name);
                self.store_acceptance(lane, task, pid).await;
            }
            Err(
                ProviderError::AccountExhausted { code, message }
                | ProviderError::Unauthorized { code, message },
            ) => {
                // The account, not the task, is the problem: the task waits
                // in the queue, its attempt refunded.
                debug!(task.id = %id, "provider {} cannot take task {id}: {code}: {message}", lane.name);
                let not_before = now_ms();
                self.transition_retrying(&id, Some(task), |t| {
                    (t.status == Status::Submitting).then_some(Event::Defer { not_before })
                })
                .await;
            }
            Err(
                ProviderError::BackPressure {
                    retry_after,
                    message,
                }
                | ProviderError::RateLimited {
                    retry_after,
                    message,
                },
            ) => {
                debug!(task.id = %id, "provider {} at capacity: {message}", lane.name);
                let not_before = now_ms() + retry_after.as_millis() as i64;
                self.transition_retrying(&id, Some(task), |t| {
                    (t.status == Status::Submitting).then_some(Event::Defer { not_before })
                })
                .await;
            }
            Err(ProviderError::Ambiguous(msg)) => {
                warn!(task.id = %id, "submission of task {id} has an unknown outcome ({msg}); reconciling");
                self.reconcile(lane, task).await;
            }
            Err(ProviderError::Unreachable { message, fix }) => {
                // Nothing reached the provider: the task waits in the queue
                // with its attempt refunded (until its deadline), and the
                // circuit breaker, which counted the failure, spaces out
                // the tries.
                let fix = fix.map_or(String::new(), |f| format!("; fix: {f}"));
                warn!(task.id = %id, provider = %lane.name, "cannot reach provider {} for task {id}: {message}{fix}", lane.name);
                let not_before = self.backoff_at(1);
                self.transition_retrying(&id, Some(task), |t| {
                    (t.status == Status::Submitting).then_some(Event::Defer { not_before })
                })
                .await;
            }
            Err(e) => {
                let (_, error) = classify_failure(&e);
                warn!(task.id = %id, error = %e, "submission of task {id} to {} failed: {e}", lane.name);
                let retry_at = self.backoff_at(task.attempts);
                self.transition_retrying(&id, Some(task), |t| {
                    (t.status == Status::Submitting).then(|| Event::Fail {
                        error: error.clone(),
                        retry_at,
                    })
                })
                .await;
            }
        }
    }

    /// Tells the lane's health what a submission's answer says about the
    /// account, and counts provider errors.
    fn record_outcome(&self, lane: &Lane, result: &Result<String, ProviderError>) {
        let now = now_ms();
        let Err(e) = result else {
            lane.lock().health.on_accepted();
            return;
        };
        let (kind, _) = classify_failure(e);
        self.inner.metrics.provider_error(&lane.name, kind);
        let mut st = lane.lock();
        match e {
            ProviderError::BackPressure { .. } => {
                // This task still holds a slot; the others are what the
                // account really runs.
                let others = st.held.len().saturating_sub(1);
                if st.health.on_full(now, others) {
                    info!(provider = %lane.name, "provider {} says the account is full; using {} slots until it recovers", lane.name, others.max(1));
                }
            }
            // Too fast, not too many: wait (the task was deferred) and keep
            // the slots.
            ProviderError::RateLimited { .. } => st.health.on_answer(),
            ProviderError::AccountExhausted { code, message } => {
                st.health.on_account_problem(
                    now,
                    AccountProblem::Exhausted,
                    format!("{code}: {message}"),
                );
                error!(provider = %lane.name, "provider {} account cannot take work ({code}: {message}); dispatching to it pauses", lane.name);
            }
            ProviderError::Unauthorized { code, message } => {
                st.health.on_account_problem(
                    now,
                    AccountProblem::Unauthorized,
                    format!("{code}: {message}"),
                );
                error!(provider = %lane.name, "provider {} refused gengate's credentials ({code}: {message}); dispatching to it pauses", lane.name);
            }
            ProviderError::Unreachable { message, fix } => {
                st.health.note_error(now, message, *fix);
                if st.health.on_failure(now) {
                    warn!(provider = %lane.name, "provider {} cannot be reached; its circuit opens", lane.name);
                }
            }
            ProviderError::Transient(m) | ProviderError::Ambiguous(m) => {
                st.health.note_error(now, m, None);
                if st.health.on_failure(now) {
                    warn!(provider = %lane.name, "provider {} keeps failing; its circuit opens", lane.name);
                }
            }
            ProviderError::Rejected { .. }
            | ProviderError::NotFound
            | ProviderError::Unsupported => {
                st.health.on_answer();
            }
        }
    }

    /// Tells the lane's health what a status query's answer says.
    fn record_poll(&self, lane: &Lane, result: &Result<JobState, ProviderError>) {
        let failure = match result {
            Err(ProviderError::Unreachable { message, fix }) => Some((message, *fix)),
            Err(ProviderError::Transient(m) | ProviderError::Ambiguous(m)) => Some((m, None)),
            _ => None,
        };
        let mut st = lane.lock();
        let now = now_ms();
        match failure {
            None => st.health.on_poll_answer(),
            Some((message, fix)) => {
                st.health.note_error(now, message, fix);
                if st.health.on_poll_failure(now) {
                    warn!(provider = %lane.name, "provider {} keeps failing ({message}); its circuit opens", lane.name);
                }
            }
        }
    }

    /// Stores the provider's id for an accepted task. The provider is running
    /// (and charging for) it now, so a store failure is retried, never
    /// answered with a cancel; a restart finds the task by reference.
    async fn store_acceptance(&self, lane: &Arc<Lane>, task: Task, pid: String) {
        let id = task.id.clone();
        let accepted = self
            .transition_retrying(&id, Some(task), |t| {
                (t.status == Status::Submitting).then(|| Event::Accept {
                    provider_task_id: pid.clone(),
                })
            })
            .await;
        if accepted.is_none()
            && !self.inner.shutdown.is_cancelled()
            && self.superseded(&id, &pid).await
        {
            // Canceled or expired while the provider was accepting it, or
            // already following another job: stop this one there too, so it
            // does not run (and bill) unwanted. (A task still in
            // `submitting` belongs to the node that took it over, which
            // finds this job by reference.)
            if let Err(e) = lane
                .provider
                .cancel(FollowRef {
                    task_id: &id,
                    provider_task_id: &pid,
                })
                .await
            {
                warn!(task.id = %id, error = %e, "cancel of task {id} at {} failed: {e}", lane.name);
            }
        }
    }

    /// Whether provider job `pid` of task `id` is not the one the task
    /// follows: the task reached a final state or follows another job
    /// (read from the store; `true` when it cannot be read, as on one node).
    async fn superseded(&self, id: &str, pid: &str) -> bool {
        if !self.clustered() {
            return true;
        }
        match self.inner.store.get_task(id).await {
            Ok(Some(t)) if t.status == Status::Submitting => false,
            Ok(Some(t)) if !t.status.is_terminal() => t.provider_task_id.as_deref() != Some(pid),
            _ => true,
        }
    }

    /// Settles a task whose submission outcome is unknown, without ever
    /// submitting it twice where the provider lets us look it up.
    async fn reconcile(&self, lane: &Arc<Lane>, task: Task) {
        let id = task.id.clone();
        let Some(model) = self.inner.models.get(&task.model) else {
            let error = TaskError::new(
                "model_not_configured",
                format!(
                    "model {} is no longer configured; its submission cannot be looked up",
                    task.model
                ),
                false,
            );
            self.transition_retrying(&id, Some(task), |t| {
                (t.status == Status::Submitting).then(|| Event::Fail {
                    error: error.clone(),
                    retry_at: 0,
                })
            })
            .await;
            return;
        };
        let submission = Submission::new(lane, &task, model);
        let mut delay = Duration::from_millis(500);
        // Lookups left once the task is no longer ours to settle (canceled or
        // expired meanwhile): enough to find and stop a job the provider has.
        let mut after_settled = 3;
        let event = loop {
            match lane
                .provider
                .find_by_reference(submission.request(&task))
                .await
            {
                Ok(Some(pid)) => {
                    info!(task.id = %id, provider_task_id = %pid, "task {id} found at {} by reference", lane.name);
                    return self.store_acceptance(lane, task, pid).await;
                }
                // The provider never got it: queue again, attempt refunded.
                Ok(None) => {
                    break Event::Defer {
                        not_before: now_ms(),
                    };
                }
                Err(ProviderError::Unsupported) if lane.resubmit_unknown => {
                    break Event::Fail {
                        error: TaskError::new(
                            "submission_unknown",
                            "the submission's outcome was lost; submitting again",
                            true,
                        ),
                        retry_at: now_ms(),
                    };
                }
                Err(ProviderError::Unsupported) => {
                    warn!(task.id = %id, "task {id} may or may not be at {}; not resubmitted (resubmit_unknown = false)", lane.name);
                    break Event::Fail {
                        error: TaskError::new(
                            "submission_unknown",
                            "the provider may have received this task but cannot be asked; it was not submitted again to avoid paying twice",
                            false,
                        ),
                        retry_at: 0,
                    };
                }
                Err(e) => {
                    warn!(task.id = %id, error = %e, "looking up task {id} at {} failed: {e}; retrying", lane.name);
                    tokio::select! {
                        // Left in `submitting`; the next start reconciles it.
                        () = self.inner.shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                    let settled = matches!(self.inner.store.get_task(&id).await, Ok(Some(t)) if t.status != Status::Submitting);
                    if settled {
                        if after_settled == 0 {
                            return;
                        }
                        after_settled -= 1;
                    }
                }
            }
        };
        self.transition_retrying(&id, Some(task), |t| {
            (t.status == Status::Submitting).then(|| event.clone())
        })
        .await;
    }

    async fn poll_loop(self, lane: Arc<Lane>) {
        loop {
            let now = now_ms();
            let mut due = Vec::new();
            let next_at = {
                let mut st = lane.lock();
                // An open circuit postpones queries too; they resume, spread
                // out, when it half-opens.
                let blocked = st.health.polls_blocked_until(now);
                while let Some(Reverse((at, _))) = st.timers.peek() {
                    if blocked.is_some() {
                        break;
                    }
                    if *at > now || due.len() >= MAX_CONCURRENT_POLLS {
                        break;
                    }
                    let Some(Reverse((at, id))) = st.timers.pop() else {
                        break;
                    };
                    if let Some(f) = st.following.get(&id).filter(|f| f.next_at == at) {
                        due.push((id, f.provider_task_id.clone()));
                    }
                }
                st.timers
                    .peek()
                    .map(|Reverse((at, _))| (*at).max(blocked.unwrap_or(0)))
            };
            for (id, pid) in due {
                let Ok(permit) = lane.polls.acquire().await else {
                    return;
                };
                permit.forget();
                // Queries to one provider are spread evenly at its rate.
                let wait_ms = {
                    let mut st = lane.lock();
                    let now = now_ms() as f64;
                    let slot = st.next_poll_slot.max(now);
                    st.next_poll_slot = slot + lane.poll_gap_ms;
                    slot - now
                };
                if wait_ms >= 1.0 {
                    tokio::select! {
                        () = self.inner.shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_micros((wait_ms * 1000.0) as u64)) => {}
                    }
                }
                let span = info_span!("poll", task.id = %id, provider = %lane.name);
                let (this, lane2) = (self.clone(), lane.clone());
                self.inner.tracker.spawn(
                    async move {
                        let run = tokio::spawn({
                            let (this, lane, id) = (this.clone(), lane2.clone(), id.clone());
                            async move { this.poll_one(&lane, &id, &pid).await }.in_current_span()
                        });
                        if run.await.is_err_and(|e| e.is_panic()) {
                            this.fail_after_panic(&id).await;
                        }
                        lane2.polls.add_permits(1);
                    }
                    .instrument(span),
                );
            }
            let wait_ms = next_at.map_or(1000, |at| (at - now_ms()).clamp(1, 1000));
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = lane.follow_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
    }

    /// Counts a "no such task" answer for `id`; returns the count in a row.
    fn count_not_found(&self, lane: &Lane, id: &str) -> u8 {
        let mut st = lane.lock();
        st.following.get_mut(id).map_or(NOT_FOUND_STRIKES, |f| {
            f.not_found = f.not_found.saturating_add(1);
            f.not_found
        })
    }

    fn reschedule(&self, lane: &Lane, id: &str, progress: Option<f32>) {
        let mut st = lane.lock();
        let (poll_initial, poll_max) = (
            self.inner.settings.poll_initial.as_millis() as u64,
            self.inner.settings.poll_max.as_millis() as u64,
        );
        let Some(model) = st.following.get(id).map(|f| f.model.clone()) else {
            return;
        };
        let (lo, hi) = self.latency_window(&st, &model);
        let Some(f) = st.following.get_mut(id) else {
            return;
        };
        // Grow by half each time, to at least half the spread of run times
        // (so a task that outlives the quickest is found within two or three
        // queries) and a quarter of the task's age (a task far beyond the
        // usual is asked rarely); never beyond `poll_max`. Jitter keeps
        // tasks accepted together from being polled together.
        let now = now_ms();
        let age_ms = (now - f.accepted_at).max(0) as u64;
        let spread_ms = ((hi - lo).max(0.0) * 500.0) as u64;
        f.interval_ms = (f.interval_ms * 3 / 2)
            .max(spread_ms)
            .max(age_ms / 4)
            .clamp(poll_initial.max(1), poll_max.max(1));
        f.next_at = if std::mem::take(&mut f.poke) {
            now + 50
        } else {
            now + (f.interval_ms as f64 * jitter()) as i64
        };
        if let Some(p) = progress {
            f.stored_progress = p;
        }
        let at = f.next_at;
        st.timers.push(Reverse((at, id.to_owned())));
        drop(st);
        lane.follow_wake.notify_one();
    }

    /// Takes a provider callback for task `task_id` carrying `token`: checks
    /// the token, reads the body with the provider's adapter, and polls the
    /// task now if it is one we follow under the id the callback names.
    /// Returns whether a poll was scheduled (`false`: a late or repeated
    /// callback, or one for a task not yet accepted; nothing to do).
    ///
    /// # Errors
    /// [`CallbackRefusal`] says why the callback is refused.
    pub fn callback(
        &self,
        provider: &str,
        task_id: &str,
        token: &str,
        body: &[u8],
    ) -> Result<bool, CallbackRefusal> {
        let lane = self
            .inner
            .lanes
            .get(provider)
            .ok_or(CallbackRefusal::UnknownProvider)?;
        let target = lane
            .callbacks
            .as_ref()
            .ok_or(CallbackRefusal::UnknownProvider)?;
        let expected = callback_token(&target.key, provider, task_id);
        let matches = expected.len() == token.len()
            && expected
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !matches {
            warn!(provider, "refused a {provider} callback with a bad token");
            return Err(CallbackRefusal::BadToken);
        }
        let hint = lane
            .provider
            .parse_callback(body)
            .map_err(|e| CallbackRefusal::Malformed(e.to_string()))?;
        let checking = self.poke(provider, task_id, &hint);
        debug!(task.id = %task_id, checking, finished = hint.finished, "callback from {provider} for task {task_id}");
        Ok(checking)
    }

    /// A callback says task `id` at `provider` changed: poll it now (it only
    /// tells us to look; the poll decides). Returns whether the callback
    /// names a task we follow under that provider task id.
    pub fn poke(&self, provider: &str, id: &str, hint: &gengate_providers::CallbackHint) -> bool {
        let Some(lane) = self.inner.lanes.get(provider) else {
            return false;
        };
        let mut st = lane.lock();
        let now = now_ms();
        let Some(f) = st.following.get_mut(id) else {
            return false;
        };
        if !hint.is_about(&f.provider_task_id) {
            return false;
        }
        // Only a finished task is worth asking about now (Kling also posts
        // "submitted" and "processing"). Repeated callbacks coalesce; one
        // that comes while a poll is under way gets another poll after it,
        // since that poll may have asked too early.
        if hint.finished {
            if f.next_at > now + 200 {
                f.next_at = now;
                st.timers.push(Reverse((now, id.to_owned())));
            } else {
                f.poke = true;
            }
        }
        st.callbacks += 1;
        drop(st);
        lane.follow_wake.notify_one();
        true
    }

    /// Fails the attempt `pid` of a running task (retried if it may be).
    async fn fail_attempt(&self, id: &str, pid: &str, error: TaskError) -> Result<(), StoreError> {
        self.transition(id, None, |t| {
            (t.status == Status::Running && t.provider_task_id.as_deref() == Some(pid)).then(|| {
                Event::Fail {
                    error: error.clone(),
                    retry_at: self.backoff_at(t.attempts),
                }
            })
        })
        .await
        .map(|_| ())
    }

    async fn poll_one(&self, lane: &Arc<Lane>, id: &str, pid: &str) {
        let state = lane
            .provider
            .poll(FollowRef {
                task_id: id,
                provider_task_id: pid,
            })
            .await;
        self.record_poll(lane, &state);
        let same_attempt =
            |t: &Task| t.status == Status::Running && t.provider_task_id.as_deref() == Some(pid);
        let result = match state {
            Ok(JobState::Pending { progress }) => {
                let stored = lane.lock().following.get_mut(id).map_or(0.0, |f| {
                    f.not_found = 0;
                    f.stored_progress
                });
                if progress - stored >= PROGRESS_STEP {
                    let r = self
                        .transition(id, None, |t| {
                            same_attempt(t).then_some(Event::Progress { progress })
                        })
                        .await;
                    self.reschedule(lane, id, Some(progress));
                    r.map(|_| ())
                } else {
                    self.reschedule(lane, id, None);
                    Ok(())
                }
            }
            Ok(JobState::Succeeded { outputs }) => {
                let accepted_at = lane
                    .lock()
                    .following
                    .get(id)
                    .map(|f| (f.accepted_at, f.model.clone()));
                let r = self
                    .transition(id, None, |t| {
                        same_attempt(t).then(|| Event::Succeed {
                            outputs: outputs.clone(),
                        })
                    })
                    .await;
                if let (Ok(Some(_)), Some((at, model))) = (&r, accepted_at) {
                    let secs = (now_ms() - at).max(0) as f64 / 1000.0;
                    self.inner.metrics.provider_latency(&lane.name, secs);
                    let mut st = lane.lock();
                    st.latency.entry(model).or_default().observe(secs);
                    st.latency_ewma = Some(
                        st.latency_ewma
                            .map_or(secs, |l| l + LATENCY_EWMA_ALPHA * (secs - l)),
                    );
                }
                r.map(|_| ())
            }
            Ok(JobState::Failed { mut error }) => {
                // The provider's reason goes to the task's owner: without
                // the queries of any URLs it names.
                error.message = gengate_net::redact_text(&error.message);
                info!(task.id = %id, code = %error.code, "task {id} failed at {}: {}", lane.name, error.message);
                self.fail_attempt(id, pid, error).await
            }
            Err(ProviderError::NotFound) if self.count_not_found(lane, id) < NOT_FOUND_STRIKES => {
                self.inner.metrics.provider_error(&lane.name, "not_found");
                warn!(task.id = %id, "provider {} says it does not know task {id}; asking again", lane.name);
                self.reschedule(lane, id, None);
                Ok(())
            }
            Err(ProviderError::NotFound) => {
                self.inner.metrics.provider_error(&lane.name, "not_found");
                warn!(task.id = %id, "provider {} no longer knows task {id}", lane.name);
                let error = TaskError::new(
                    "provider_lost_task",
                    "the provider no longer knows this task",
                    true,
                );
                self.fail_attempt(id, pid, error).await
            }
            Err(e) => {
                let (kind, _) = classify_failure(&e);
                self.inner.metrics.provider_error(&lane.name, kind);
                debug!(task.id = %id, error = %e, "polling task {id} failed: {e}");
                self.reschedule(lane, id, None);
                Ok(())
            }
        };
        if let Err(e) = result {
            error!(task.id = %id, error = %e, "storing the poll result of task {id} failed: {e}");
            // Keep following; the next poll tries again.
            self.reschedule(lane, id, None);
        }
    }

    async fn deadline_loop(self) {
        loop {
            let now = now_ms();
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
                    Ok(Some(_)) => warn!(task.id = %id, "task {id} passed its deadline"),
                    Ok(None) => {}
                    Err(e) => {
                        error!(task.id = %id, error = %e, "expiring task {id} failed: {e}; trying again shortly");
                        self.inner
                            .deadlines
                            .lock()
                            .expect("deadlines lock")
                            .insert((now_ms() + 1000, id.clone()));
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
            let wait_ms = next.map_or(1000, |at| (at - now_ms()).clamp(1, 1000));
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = self.inner.deadline_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
    }

    async fn housekeeping_loop(self) {
        let ttl = self.inner.settings.idempotency_ttl.as_millis() as i64;
        loop {
            match self.inner.store.purge_idempotency(now_ms() - ttl).await {
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

/// How the store guards a change made by an event: changes made on anyone's
/// behalf (a cancel, an expiry, a move) need no lease; the rest are the work
/// of the node holding the task's lease.
fn fence_of(event: &str) -> Fence {
    match event {
        "cancel" | "expire" | "reroute" => Fence::Version,
        _ => Fence::Lease,
    }
}

/// A factor in 0.9..1.1 that spreads timers apart.
fn jitter() -> f64 {
    rand::thread_rng().gen_range(0.9..1.1)
}

/// What one submission of a task sends, owned so that a lost answer can be
/// looked up with exactly what was sent.
struct Submission {
    /// The client reference: one per attempt, so a retry is a new job at the
    /// provider while a lost answer can still be looked up.
    reference: String,
    kind: gengate_core::ModelKind,
    endpoint: Option<String>,
    params: serde_json::Value,
    callback_url: Option<String>,
}

impl Submission {
    fn new(lane: &Lane, task: &Task, model: &ModelSpec) -> Self {
        let callback_url = lane.callbacks.as_ref().map(|c| {
            format!(
                "{}?task={}&token={}",
                c.url,
                task.id,
                callback_token(&c.key, &lane.name, &task.id)
            )
        });
        Self {
            reference: format!("{}.{}", task.id, task.attempts),
            kind: model.kind,
            endpoint: model.endpoint.clone(),
            params: gengate_core::mapping::render(&model.params, &task.input),
            callback_url,
        }
    }

    fn request<'a>(&'a self, task: &'a Task) -> SubmitRequest<'a> {
        SubmitRequest {
            task_id: &task.id,
            reference: &self.reference,
            model: &task.model,
            kind: self.kind,
            input: &task.input,
            endpoint: self.endpoint.as_deref(),
            params: &self.params,
            callback_url: self.callback_url.as_deref(),
        }
    }
}

fn entry_of(task: &Task) -> QueueEntry {
    QueueEntry {
        task_id: task.id.clone(),
        user_id: task.user_id,
        priority: task.priority,
        not_before: task.not_before,
    }
}

/// A metric label and the task error for a provider failure.
fn classify_failure(e: &ProviderError) -> (&'static str, TaskError) {
    let (kind, mut error) = failure_of(e);
    // Provider texts can name URLs; the task's owner sees none's query.
    error.message = gengate_net::redact_text(&error.message);
    (kind, error)
}

fn failure_of(e: &ProviderError) -> (&'static str, TaskError) {
    match e {
        ProviderError::Unreachable { message, .. } => (
            "unreachable",
            TaskError::new("provider_unreachable", message.clone(), true),
        ),
        ProviderError::Transient(m) => (
            "transient",
            TaskError::new("provider_unavailable", m.clone(), true),
        ),
        ProviderError::Ambiguous(m) => (
            "ambiguous",
            TaskError::new("provider_unavailable", m.clone(), true),
        ),
        ProviderError::BackPressure { message, .. } => (
            "back_pressure",
            TaskError::new("provider_busy", message.clone(), true),
        ),
        ProviderError::Rejected { code, message } => (
            "rejected",
            TaskError::new("provider_rejected", format!("{code}: {message}"), false),
        ),
        ProviderError::RateLimited { message, .. } => (
            "rate_limited",
            TaskError::new("provider_busy", message.clone(), true),
        ),
        ProviderError::AccountExhausted { code, message } => (
            "account_exhausted",
            TaskError::new(
                "provider_account_exhausted",
                format!("{code}: {message}"),
                true,
            ),
        ),
        ProviderError::Unauthorized { code, message } => (
            "unauthorized",
            TaskError::new("provider_unauthorized", format!("{code}: {message}"), true),
        ),
        ProviderError::NotFound => (
            "not_found",
            TaskError::new("provider_lost_task", e.to_string(), true),
        ),
        ProviderError::Unsupported => (
            "unsupported",
            TaskError::new("provider_unsupported", e.to_string(), false),
        ),
    }
}
