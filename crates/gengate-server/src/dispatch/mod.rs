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
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gengate_core::policy::{self, FairQueue, QueueEntry};
use gengate_core::{Effect, Event, ModelSpec, Status, Task, TaskError, TaskId, UserId, apply};
use gengate_providers::{FollowRef, JobState, Provider, ProviderError, SubmitRequest};
use gengate_store::{Store, StoreError};
use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::hub::Hub;
use crate::metrics::{Metrics, ProviderGauges};
use crate::now_ms;

/// Timing knobs of the dispatcher.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub poll_initial: Duration,
    pub poll_max: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub idempotency_ttl: Duration,
}

/// One provider account as the dispatcher drives it.
pub struct LaneConfig {
    pub provider: Arc<dyn Provider>,
    pub concurrency: usize,
    /// Whether a submission of unknown outcome may be repeated.
    pub resubmit_unknown: bool,
}

/// Polls under way at once per provider; more wait for the next round.
const MAX_CONCURRENT_POLLS: usize = 64;
/// Weight of the newest observation in the latency average.
const LATENCY_EWMA_ALPHA: f64 = 0.2;
/// Progress changes smaller than this are not written to the store.
const PROGRESS_STEP: f32 = 0.1;

struct Follow {
    provider_task_id: String,
    accepted_at: i64,
    interval_ms: u64,
    next_at: i64,
    stored_progress: f32,
}

#[derive(Default)]
struct LaneState {
    queue: FairQueue,
    /// Slots in use: tasks submitting or running at this provider.
    in_flight: usize,
    following: HashMap<TaskId, Follow>,
    /// Poll timers; an entry is stale unless it matches `following[id].next_at`.
    timers: BinaryHeap<Reverse<(i64, TaskId)>>,
    /// Observed seconds from acceptance to result.
    latency_ewma: Option<f64>,
}

struct Lane {
    name: String,
    provider: Arc<dyn Provider>,
    limit: usize,
    resubmit_unknown: bool,
    state: Mutex<LaneState>,
    /// Wakes the slot loop: a slot freed or a task was queued.
    wake: Notify,
    /// Wakes the poll loop: a timer earlier than its sleep was added.
    follow_wake: Notify,
    polls: Semaphore,
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
}

/// The dispatcher handle. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        lanes: HashMap<String, LaneConfig>,
        models: &[ModelSpec],
        settings: Settings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        let lanes = lanes
            .into_iter()
            .map(|(name, c)| {
                let lane = Lane {
                    name: name.clone(),
                    provider: c.provider,
                    limit: c.concurrency.max(1),
                    resubmit_unknown: c.resubmit_unknown,
                    state: Mutex::default(),
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
        for lane in self.inner.lanes.values() {
            self.inner
                .tracker
                .spawn(self.clone().slot_loop(lane.clone()));
            self.inner
                .tracker
                .spawn(self.clone().poll_loop(lane.clone()));
        }
        self.inner.tracker.spawn(self.clone().deadline_loop());
        self.inner.tracker.spawn(self.clone().housekeeping_loop());
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
        let tasks = self.inner.store.active_tasks().await?;
        let now = now_ms();
        let (mut queued, mut running, mut submitting) = (0, 0, 0);
        for task in tasks {
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
                    st.in_flight += 1;
                    st.queue.started(task.user_id);
                    let pid = task.provider_task_id.clone().unwrap_or_default();
                    self.follow_locked(&mut st, &task.id, pid, task.updated_at, now);
                    running += 1;
                }
                Status::Submitting => {
                    st.in_flight += 1;
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
            "recovered {queued} queued, {running} running and {submitting} submitting tasks"
        );
        Ok(())
    }

    /// Hands a newly created task to its lane.
    pub fn enqueue(&self, task: &Task) {
        self.track_deadline(task);
        if let Some(lane) = self.inner.lanes.get(&task.provider) {
            lane.lock().queue.push(entry_of(task), now_ms());
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
                    in_flight: st.in_flight,
                    queued: st.queue.len(),
                    following: st.following.len(),
                    latency_seconds: st.latency_ewma.map(|l| (l * 100.0).round() / 100.0),
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

    /// Whether nothing is queued or in flight anywhere.
    pub fn is_idle(&self) -> bool {
        self.inner.lanes.values().all(|l| {
            let st = l.lock();
            st.queue.is_empty() && st.in_flight == 0
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
            if self.inner.store.update_task(&next).await? {
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
        let Some(lane) = self.inner.lanes.get(&task.provider) else {
            return;
        };
        let now = now_ms();
        let mut st = lane.lock();
        for effect in effects {
            match effect {
                Effect::Enqueue => {
                    st.queue.push(entry_of(task), now);
                    lane.wake.notify_one();
                }
                Effect::Dequeue => {
                    st.queue.remove(&task.id);
                }
                Effect::ReleaseSlot => {
                    st.in_flight = st.in_flight.saturating_sub(1);
                    st.queue.finished(task.user_id);
                    st.following.remove(&task.id);
                    lane.wake.notify_one();
                }
                Effect::Follow => {
                    let pid = task.provider_task_id.clone().unwrap_or_default();
                    // No point asking before about half the expected run
                    // time has passed: a 60 s model is not polled each second.
                    let expected_ms = (st
                        .latency_ewma
                        .unwrap_or_else(|| self.expected_seconds(&task.model))
                        * 500.0) as i64;
                    // (max/min, not clamp: a bad pair of settings must not panic
                    // while the lane is locked.)
                    let first = expected_ms
                        .max(self.inner.settings.poll_initial.as_millis() as i64)
                        .min(self.inner.settings.poll_max.as_millis() as i64);
                    self.follow_locked(&mut st, &task.id, pid, now, now + first);
                    lane.follow_wake.notify_one();
                }
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

    fn follow_locked(
        &self,
        st: &mut LaneState,
        id: &str,
        pid: String,
        accepted_at: i64,
        first_poll_at: i64,
    ) {
        st.following.insert(
            id.to_owned(),
            Follow {
                provider_task_id: pid,
                accepted_at,
                interval_ms: self.inner.settings.poll_initial.as_millis() as u64,
                next_at: first_poll_at,
                stored_progress: 0.0,
            },
        );
        st.timers.push(Reverse((first_poll_at, id.to_owned())));
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
    fn release_unclaimed(&self, lane: &Lane, user: UserId) {
        let mut st = lane.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        st.queue.finished(user);
        drop(st);
        lane.wake.notify_one();
        self.inner.changed.notify_waiters();
    }

    async fn slot_loop(self, lane: Arc<Lane>) {
        loop {
            loop {
                let next = {
                    let mut st = lane.lock();
                    if st.in_flight >= lane.limit {
                        None
                    } else {
                        let e = st.queue.pop(now_ms());
                        if e.is_some() {
                            st.in_flight += 1;
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
            let due = lane.lock().queue.next_due();
            let wait_ms = due.map_or(1000, |d| (d - now_ms()).clamp(1, 1000));
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
                (t.status == Status::Queued).then_some(Event::Claim)
            })
            .await;
        let task = match claimed {
            Ok(Some(t)) => t,
            Ok(None) => return self.release_unclaimed(&lane, entry.user_id),
            Err(e) => {
                // Could not even claim: put it back and try later.
                error!(task.id = %id, error = %e, "claiming task {id} failed: {e}");
                self.release_unclaimed(&lane, entry.user_id);
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
        // The provider call and what follows run in their own task, so a
        // panic in an adapter fails this task instead of leaking its slot.
        let this = self.clone();
        let run =
            tokio::spawn(async move { this.submit_claimed(&lane, task).await }.in_current_span());
        if run.await.is_err_and(|e| e.is_panic()) {
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
        let submission = Submission::new(&task, model);
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
        match result {
            Ok(pid) => {
                info!(task.id = %id, provider_task_id = %pid, "task {id} accepted by {}", lane.name);
                self.store_acceptance(lane, task, pid).await;
            }
            Err(ProviderError::BackPressure {
                retry_after,
                message,
            }) => {
                self.inner
                    .metrics
                    .provider_error(&lane.name, "back_pressure");
                debug!(task.id = %id, "provider {} at capacity: {message}", lane.name);
                let not_before = now_ms() + retry_after.as_millis() as i64;
                self.transition_retrying(&id, Some(task), |t| {
                    (t.status == Status::Submitting).then_some(Event::Defer { not_before })
                })
                .await;
            }
            Err(ProviderError::Ambiguous(msg)) => {
                self.inner.metrics.provider_error(&lane.name, "ambiguous");
                warn!(task.id = %id, "submission of task {id} has an unknown outcome ({msg}); reconciling");
                self.reconcile(lane, task).await;
            }
            Err(e) => {
                let (kind, error) = classify_failure(&e);
                self.inner.metrics.provider_error(&lane.name, kind);
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
        if accepted.is_none() && !self.inner.shutdown.is_cancelled() {
            // Canceled or expired while the provider was accepting it: stop
            // it there too, so it does not run unwanted.
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
        let submission = Submission::new(&task, model);
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
                while let Some(Reverse((at, _))) = st.timers.peek() {
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
                st.timers.peek().map(|Reverse((at, _))| *at)
            };
            for (id, pid) in due {
                let Ok(permit) = lane.polls.acquire().await else {
                    return;
                };
                permit.forget();
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

    fn reschedule(&self, lane: &Lane, id: &str, progress: Option<f32>) {
        let mut st = lane.lock();
        let poll_max = self.inner.settings.poll_max.as_millis() as u64;
        let Some(f) = st.following.get_mut(id) else {
            return;
        };
        // Grow by half each time, and to at least a quarter of the task's
        // age: long tasks are asked rarely, short ones promptly.
        let now = now_ms();
        let age_ms = (now - f.accepted_at).max(0) as u64;
        f.interval_ms = (f.interval_ms * 3 / 2)
            .max(age_ms / 4)
            .clamp(1, poll_max.max(1));
        f.next_at = now + f.interval_ms as i64;
        if let Some(p) = progress {
            f.stored_progress = p;
        }
        let at = f.next_at;
        st.timers.push(Reverse((at, id.to_owned())));
        drop(st);
        lane.follow_wake.notify_one();
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
        let same_attempt =
            |t: &Task| t.status == Status::Running && t.provider_task_id.as_deref() == Some(pid);
        let result = match state {
            Ok(JobState::Pending { progress }) => {
                let stored = lane
                    .lock()
                    .following
                    .get(id)
                    .map_or(0.0, |f| f.stored_progress);
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
                let accepted_at = lane.lock().following.get(id).map(|f| f.accepted_at);
                let r = self
                    .transition(id, None, |t| {
                        same_attempt(t).then(|| Event::Succeed {
                            outputs: outputs.clone(),
                        })
                    })
                    .await;
                if let (Ok(Some(_)), Some(at)) = (&r, accepted_at) {
                    let secs = (now_ms() - at).max(0) as f64 / 1000.0;
                    self.inner.metrics.provider_latency(&lane.name, secs);
                    let mut st = lane.lock();
                    st.latency_ewma = Some(
                        st.latency_ewma
                            .map_or(secs, |l| l + LATENCY_EWMA_ALPHA * (secs - l)),
                    );
                }
                r.map(|_| ())
            }
            Ok(JobState::Failed { error }) => {
                info!(task.id = %id, code = %error.code, "task {id} failed at {}: {}", lane.name, error.message);
                self.fail_attempt(id, pid, error).await
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
    fn new(task: &Task, model: &ModelSpec) -> Self {
        Self {
            reference: format!("{}.{}", task.id, task.attempts),
            kind: model.kind,
            endpoint: model.endpoint.clone(),
            params: gengate_core::mapping::render(&model.params, &task.input),
            callback_url: None,
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
    match e {
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
