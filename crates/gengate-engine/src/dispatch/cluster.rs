//! The dispatcher on a shared store (PostgreSQL, MySQL): any number of nodes
//! work the same tasks.
//!
//! - **Claims** go through the store, which counts every node's tasks in
//!   flight at a provider under a per-provider row lock, so the provider's
//!   limit holds across the cluster. A node claims when woken (a task was
//!   created or a slot freed, here or elsewhere) and every
//!   [`CLAIM_INTERVAL`] anyway.
//! - **Leases**: a claimed task is leased to its node until it leaves
//!   `submitting`, `running` and `storing`. The node renews its leases every
//!   third of the lease period; every write it makes for the task is fenced
//!   on that lease, so a node that stalled (paused, partitioned) past it
//!   writes nothing once it wakes.
//! - **Takeover**: every node looks for expired leases every heartbeat
//!   period (beside its heartbeats, never delaying them) and resumes what
//!   it finds the way a restart does: running tasks are polled
//!   by their stored provider id, tasks caught in `submitting` reconciled by
//!   reference, storing tasks copied again. Nothing is submitted twice.
//! - **Changes made elsewhere** (a cancel, a takeover) arrive through the
//!   event channel ([`crate::bus`]); a node lets go of a task it no longer
//!   holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gengate_core::{Event, Status, Task};
use gengate_store::Change;
use tracing::{Instrument, debug, error, info, info_span, warn};

use tokio::task::JoinHandle;

use super::dispatcher::{BoxFuture, Dispatcher, WorkSource};
use super::health::Gate;
use super::lane::{Lane, LaneState};
use super::transition::Outcome;

/// Claims made at most per store call.
pub(super) const CLAIM_BATCH: u32 = 16;
/// How often a lane claims when nothing wakes it (tasks created on a node
/// without an event channel, retry times passing).
pub(super) const CLAIM_INTERVAL: Duration = Duration::from_millis(500);
/// After a claim that found no more work (or no free slot), the next one
/// waits at least this long, however often the lane is woken: under a burst
/// of creations on every node, claims stay a few per second per lane instead
/// of one per task, all queuing for the provider's row lock.
pub(super) const CLAIM_MIN_GAP: Duration = Duration::from_millis(50);
/// How long after taking over a task caught in `submitting` its provider is
/// asked whether the submission arrived.
pub(super) const RECONCILE_DELAY: Duration = Duration::from_secs(2);
/// Tasks taken over per store call.
pub(super) const TAKEOVER_BATCH: u32 = 256;

/// A shared store: the queue is the store's, claims count every node's
/// slots, and leases fence each node's writes.
pub(super) struct StoreClaims;

impl WorkSource for StoreClaims {
    fn feed(&self, dispatcher: Dispatcher, lane: Arc<Lane>) -> BoxFuture<'static, ()> {
        Box::pin(dispatcher.claim_loop(lane))
    }

    fn start(&self, dispatcher: &Dispatcher) -> Option<JoinHandle<()>> {
        dispatcher
            .inner
            .tracker
            .spawn(dispatcher.clone().takeover_loop());
        Some(tokio::spawn(dispatcher.clone().lease_loop()))
    }

    fn recover<'a>(&'a self, dispatcher: &'a Dispatcher) -> BoxFuture<'a, anyhow::Result<()>> {
        // Other nodes' tasks are theirs while their leases last; this node's
        // tasks from before a restart are taken over once their leases
        // expire (by whichever node looks first).
        info!(
            node = dispatcher.inner.store.node_id(),
            "sharing the store with other nodes: work is claimed and taken over through it"
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn ready(&self, _: &mut LaneState, _: &Task, _: i64) {
        // The store's queue holds it already: a lane claims it from there.
    }

    fn leased(&self) -> bool {
        true
    }
}

impl Dispatcher {
    /// The slot loop on a shared store: claims through the store, within the
    /// lane's health, and runs what it claimed.
    pub(super) async fn claim_loop(self, lane: Arc<Lane>) {
        loop {
            let (gate, limit, blocked) = {
                let mut st = lane.lock();
                let now = self.now();
                // Slots are counted by the store across nodes; the gate only
                // says whether the account takes work (and hands out the one
                // probe of a blocked account).
                let gate = if st.controls.stopped(lane.daily_credits) {
                    Gate::Closed
                } else {
                    st.health.gate(now, 0)
                };
                (gate, st.health.effective(), st.health.blocked_until(now))
            };
            let max = match gate {
                Gate::Closed => 0,
                Gate::Probe => 1,
                Gate::Open => CLAIM_BATCH,
            };
            let mut full_batch = false;
            if max > 0 {
                match self
                    .inner
                    .store
                    .claim_tasks(&lane.name, limit as u32, max, self.now())
                    .await
                {
                    Ok(tasks) => {
                        if tasks.is_empty() && gate == Gate::Probe {
                            lane.lock().health.abandon_probe();
                        }
                        full_batch = tasks.len() == max as usize;
                        for task in tasks {
                            self.start_claimed(&lane, task);
                        }
                    }
                    Err(e) => {
                        if gate == Gate::Probe {
                            lane.lock().health.abandon_probe();
                        }
                        warn!(provider = %lane.name, error = %e, "claiming tasks for {} failed: {e}", lane.name);
                    }
                }
            }
            if full_batch {
                continue;
            }
            if blocked.is_some() {
                self.fail_over_shared(&lane).await;
            }
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(CLAIM_MIN_GAP) => {}
            }
            let wait = blocked.map_or(CLAIM_INTERVAL, |until| {
                Duration::from_millis((until - self.now()).clamp(1, 1000) as u64)
                    .min(CLAIM_INTERVAL)
            });
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = lane.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Runs a task this node just claimed.
    fn start_claimed(&self, lane: &Arc<Lane>, task: Task) {
        self.inner.hub.publish(&task);
        self.inner
            .metrics
            .transition(Status::Queued.as_str(), task.status.as_str());
        self.track_deadline(&task);
        lane.lock().held.insert(task.id.clone());
        let span = info_span!("submit", task.id = %task.id, provider = %lane.name);
        let (this, lane, epoch) = (self.clone(), lane.clone(), self.lease_epoch());
        self.inner
            .tracker
            .spawn(async move { this.run_claimed(lane, task, Some(epoch)).await }.instrument(span));
        self.inner.changed.notify_waiters();
    }

    /// The current lease epoch (see `Inner::lease_epoch`).
    fn lease_epoch(&self) -> tokio_util::sync::CancellationToken {
        self.inner.lease_epoch.lock().expect("epoch lock").clone()
    }

    /// Renews this node's leases, and lets go of everything when it stalled
    /// past them. At shutdown it goes on renewing until the work under way
    /// is done. Nothing else runs in a heartbeat: a renewal that waited
    /// behind other work would let leases run out.
    pub(super) async fn lease_loop(self) {
        let lease = self.inner.lease;
        let beat = lease / 3;
        let mut last_renewed = Instant::now();
        // Beats keep their schedule however long one takes (a slow store).
        let mut ticks = tokio::time::interval(beat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        while !self.inner.stopped.is_cancelled() {
            // Past this, some lease may have run out before the renewal
            // below: nothing held can be trusted any more.
            let stalled = last_renewed.elapsed() + beat / 2 >= lease;
            if stalled {
                self.let_go_all().await;
            }
            let held = self.held_ids();
            let started = Instant::now();
            match self.inner.store.renew_leases(self.now(), &held).await {
                Ok(_) => last_renewed = Instant::now(),
                Err(e) => warn!(error = %e, "renewing this node's leases failed: {e}"),
            }
            if started.elapsed() > beat / 2 {
                warn!(
                    renew_ms = started.elapsed().as_millis() as u64,
                    "renewing {} leases took {:?}; the store is slow",
                    held.len(),
                    started.elapsed()
                );
            }
            tokio::select! {
                () = self.inner.stopped.cancelled() => return,
                _ = ticks.tick() => {}
            }
        }
    }

    /// Every heartbeat period: takes over tasks whose node died (all of
    /// them, batch after batch) and expires overdue tasks nobody follows.
    /// Runs beside the heartbeats, never in their way.
    pub(super) async fn takeover_loop(self) {
        let beat = self.inner.lease / 3;
        let mut ticks = tokio::time::interval(beat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            self.take_over_expired().await;
            self.expire_overdue().await;
        }
    }

    /// Every task this node works on: submitting or running at a provider,
    /// or having its results copied. Only these leases are renewed, so a
    /// lease the node holds without working on the task (after any slip)
    /// runs out and the task is taken over.
    fn held_ids(&self) -> Vec<gengate_core::TaskId> {
        let mut ids: Vec<_> = self
            .inner
            .copying
            .lock()
            .expect("copying lock")
            .iter()
            .cloned()
            .collect();
        for lane in self.inner.lanes.values() {
            ids.extend(lane.lock().held.iter().cloned());
        }
        ids
    }

    /// Forgets every task this node works on and ends its leases in the
    /// store, so that they are taken over (possibly by this node again).
    async fn let_go_all(&self) {
        // Stop what was started under the lost leases (submissions, lookups).
        let old = std::mem::take(&mut *self.inner.lease_epoch.lock().expect("epoch lock"));
        old.cancel();
        let mut dropped = 0;
        for lane in self.inner.lanes.values() {
            let mut st = lane.lock();
            dropped += st.held.len();
            st.held.clear();
            st.following.clear();
            drop(st);
            lane.wake.notify_one();
        }
        self.inner.metrics.leases_lost(dropped as u64);
        warn!(
            tasks = dropped,
            "this node stalled past its lease period; it lets go of its {dropped} tasks and ends its leases"
        );
        if let Err(e) = self.inner.store.release_leases().await {
            warn!(error = %e, "ending this node's leases failed: {e}; they expire on their own");
        }
        self.inner.changed.notify_waiters();
    }

    /// Takes over expired leases, in batches, until none is left.
    async fn take_over_expired(&self) {
        loop {
            if self.inner.shutdown.is_cancelled() {
                return;
            }
            let tasks = match self.inner.store.take_over(TAKEOVER_BATCH).await {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = %e, "looking for tasks of dead nodes failed: {e}");
                    return;
                }
            };
            let n = tasks.len();
            for task in tasks {
                self.adopt(task);
            }
            if n < TAKEOVER_BATCH as usize {
                return;
            }
        }
    }

    /// Resumes a task taken over from a node whose lease expired, the way a
    /// restart resumes its own.
    fn adopt(&self, task: Task) {
        info!(task.id = %task.id, status = task.status.as_str(), "took over task {} ({}) from a node whose lease expired", task.id, task.status.as_str());
        self.inner.metrics.took_over();
        self.inner.hub.publish(&task);
        self.track_deadline(&task);
        if task.status == Status::Storing {
            self.start_copy(task.id.clone());
            return;
        }
        let Some(lane) = self.inner.lanes.get(&task.provider).cloned() else {
            error!(task.id = %task.id, provider = %task.provider, "task {} names provider {} which is not configured on this node", task.id, task.provider);
            return;
        };
        let mut st = lane.lock();
        st.held.insert(task.id.clone());
        match task.status {
            Status::Running => {
                let pid = task.provider_task_id.clone().unwrap_or_default();
                // How long it ran under the dead node is unknown: ask now.
                let now = self.now();
                self.follow_locked(&mut st, &task, pid, task.started_at.unwrap_or(now), now);
                drop(st);
                lane.follow_wake.notify_one();
            }
            Status::Submitting => {
                drop(st);
                let (this, epoch) = (self.clone(), self.lease_epoch());
                let span = info_span!("reconcile", task.id = %task.id);
                self.inner.tracker.spawn(
                    async move {
                        // A submission sent just before its node died (or
                        // stalled) may still be landing: look it up after it
                        // has, or it would look absent and go out again.
                        tokio::select! {
                            () = epoch.cancelled() => {}
                            () = async {
                                tokio::time::sleep(RECONCILE_DELAY).await;
                                this.reconcile(&lane, task).await;
                            } => {}
                        }
                    }
                    .instrument(span),
                );
            }
            _ => {
                st.held.remove(&task.id);
            }
        }
        self.inner.changed.notify_waiters();
    }

    /// Expires unfinished tasks past their deadline that no node tracks
    /// (queued on a node that died, say).
    async fn expire_overdue(&self) {
        let overdue = match self.inner.store.overdue_tasks(self.now(), 100).await {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "looking for overdue tasks failed: {e}");
                return;
            }
        };
        for task in overdue {
            let id = task.id.clone();
            match self
                .transition(&id, Some(task), |t| {
                    (!t.status.is_terminal()).then_some(Event::Expire)
                })
                .await
            {
                Ok(Outcome::Stored(_)) => warn!(task.id = %id, "task {id} passed its deadline"),
                Ok(_) => {}
                Err(e) => warn!(task.id = %id, error = %e, "expiring task {id} failed: {e}"),
            }
        }
    }

    /// A change stored by another node (or by this one, echoed back):
    /// lets go of a task this node no longer holds, and wakes the lanes
    /// when work or a slot may have appeared.
    pub fn on_change(&self, change: &Change) {
        let me = self.inner.store.node_id();
        let ours = change.owner.as_deref() == Some(me);
        for lane in self.inner.lanes.values() {
            if !ours && lane.lock().let_go(&change.task_id) {
                if gengate_store::holds_lease(change.status) {
                    // Taken over: this node had lost it.
                    self.inner.metrics.leases_lost(1);
                }
                debug!(task.id = %change.task_id, "task {} changed elsewhere ({}); this node lets go of it", change.task_id, change.status.as_str());
            }
            // New work, or a slot freed somewhere.
            if matches!(
                change.status,
                Status::Queued
                    | Status::Storing
                    | Status::Succeeded
                    | Status::Failed
                    | Status::Canceled
            ) {
                lane.wake.notify_one();
            }
        }
        self.inner.changed.notify_waiters();
    }

    /// Wakes every lane (to claim): after the event channel had a gap.
    pub fn wake_all(&self) {
        for lane in self.inner.lanes.values() {
            lane.wake.notify_one();
        }
    }

    /// After a write this node was refused although the task's version was
    /// still the one it read: its lease is gone (it stalled, or the task
    /// was taken over). It stops working on the task.
    pub(super) fn lost_lease(&self, task: &Task) {
        self.inner.metrics.fenced_write();
        warn!(task.id = %task.id, "this node no longer holds the lease of task {}; it stops working on it", task.id);
        if let Some(lane) = self.inner.lanes.get(&task.provider) {
            lane.lock().let_go(&task.id);
            lane.wake.notify_one();
        }
    }
}
