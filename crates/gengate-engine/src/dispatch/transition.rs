//! The one funnel every change of a task goes through: apply the event to
//! the current state, write the result conditionally, publish it, then carry
//! out its effects. Nothing else writes a task's state.

use gengate_core::{Effect, Event, Fence, Task, TaskError, apply};
use gengate_providers::FollowRef;
use gengate_store::StoreError;
use std::time::Duration;
use tracing::{debug, error, info, warn};

use super::dispatcher::Dispatcher;

/// Conflicting writes (someone else changed the task between our read and
/// our write) after which an event is given up.
pub(super) const MAX_CONFLICTS: u32 = 16;

/// What became of an event [`Dispatcher::transition`] was asked to apply.
#[derive(Debug)]
#[must_use]
#[expect(
    clippy::large_enum_variant,
    reason = "returned and taken apart at once, never stored; boxing would cost an allocation per change"
)]
pub enum Outcome {
    /// Stored: the task as it is now.
    Stored(Task),
    /// There is no such task.
    NoTask,
    /// The caller found nothing to do in the task's current state.
    NotWanted,
    /// The lifecycle refuses the event in the task's current state (a late
    /// poll or callback for a finished task, say).
    Illegal,
    /// This node no longer holds the task's lease: another node took it
    /// over, and this one let go of it.
    LeaseLost,
    /// The task kept changing under us; the event was dropped.
    Contended,
}

impl Outcome {
    /// The stored task, if the event was stored.
    pub fn stored(self) -> Option<Task> {
        match self {
            Outcome::Stored(task) => Some(task),
            _ => None,
        }
    }
}

impl Dispatcher {
    /// Applies the event `make` produces for the current task: computes the
    /// next state ([`apply`]), stores it conditionally on the version read
    /// (and on this node's lease when the event is its own work:
    /// [`Event::fence`]), publishes it, then carries out its effects.
    /// Starts from `hint` when given (saving a read) and re-reads on a
    /// version conflict. The [`Outcome`] says what was stored, or why
    /// nothing was.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn transition(
        &self,
        id: &str,
        hint: Option<Task>,
        mut make: impl FnMut(&Task) -> Option<Event>,
    ) -> Result<Outcome, StoreError> {
        let mut hint = hint;
        for attempt in 0..MAX_CONFLICTS {
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
                    None => return Ok(Outcome::NoTask),
                },
            };
            let Some(event) = make(&task) else {
                return Ok(Outcome::NotWanted);
            };
            let (event_name, fence) = (event.name(), event.fence());
            let (mut next, effects) = match apply(&task, event, self.now()) {
                Ok(r) => r,
                Err(illegal) => {
                    debug!(task.id = %id, "ignored: {illegal}");
                    return Ok(Outcome::Illegal);
                }
            };
            next.version = task.version + 1;
            if !self.inner.store.update_task(&next, fence).await? {
                if fence == Fence::Lease && self.inner.source.leased() {
                    // Refused at the version read: then the lease is gone.
                    match self.inner.store.get_task(id).await? {
                        Some(now) if now.version == task.version => {
                            self.lost_lease(&now);
                            return Ok(Outcome::LeaseLost);
                        }
                        Some(now) => hint = Some(now),
                        None => return Ok(Outcome::NoTask),
                    }
                }
                continue;
            }
            self.inner.hub.publish(&next);
            debug!(task.id = %id, event = event_name, "task {id} {} -> {}", task.status.as_str(), next.status.as_str());
            self.inner
                .metrics
                .transition(task.status.as_str(), next.status.as_str());
            if next.status.is_terminal() && !task.status.is_terminal() {
                info!(task.id = %id, status = next.status.as_str(), attempts = next.attempts, "task {id} {}", next.status.as_str());
            }
            self.run_effects(&next, &effects);
            return Ok(Outcome::Stored(next));
        }
        warn!(task.id = %id, "task {id} kept changing under us; event dropped");
        Ok(Outcome::Contended)
    }

    /// Applies an event that must not be lost: a store failure is retried
    /// with backoff until it works or shutdown comes (the next start then
    /// recovers the task from what is stored).
    pub(super) async fn transition_retrying(
        &self,
        id: &str,
        hint: Option<Task>,
        make: impl Fn(&Task) -> Option<Event>,
    ) -> Option<Task> {
        let mut hint = hint;
        let mut delay = Duration::from_millis(100);
        loop {
            match self.transition(id, hint.take(), &make).await {
                Ok(r) => return r.stored(),
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

    pub(super) fn run_effects(&self, task: &Task, effects: &[Effect]) {
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
        let now = self.now();
        let mut st = lane.lock();
        for effect in effects {
            match effect {
                Effect::Enqueue => {
                    self.inner.source.ready(&mut st, task, now);
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
                    self.inner.source.ready(&mut st, task, now);
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

    /// Fails a task whose handling panicked, so the panic costs that task
    /// and not its slot or the process.
    pub(super) async fn fail_after_panic(&self, id: &str) {
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
}
