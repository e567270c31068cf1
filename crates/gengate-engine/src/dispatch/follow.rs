//! Following running tasks: each lane polls its tasks when their timers
//! fire, spread at the provider's query rate, with intervals that grow with
//! the task's age and the spread of observed run times.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use gengate_core::{Event, Status, Task, TaskError};
use gengate_providers::{FollowRef, JobState, ProviderError};
use gengate_store::StoreError;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::dispatcher::Dispatcher;
use super::lane::{
    Follow, LATENCY_EWMA_ALPHA, Lane, LaneState, MAX_CONCURRENT_POLLS, NOT_FOUND_STRIKES,
    PROGRESS_STEP, jitter,
};
use super::submit::classify_failure;
use super::transition::Outcome;

impl Dispatcher {
    pub(super) fn follow_locked(
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

    pub(super) async fn poll_loop(self, lane: Arc<Lane>) {
        loop {
            let now = self.now();
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
                    let now = self.now() as f64;
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
            let wait_ms = next_at.map_or(1000, |at| (at - self.now()).clamp(1, 1000));
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = lane.follow_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
    }

    /// Counts a "no such task" answer for `id`; returns the count in a row.
    pub(super) fn count_not_found(&self, lane: &Lane, id: &str) -> u8 {
        let mut st = lane.lock();
        st.following.get_mut(id).map_or(NOT_FOUND_STRIKES, |f| {
            f.not_found = f.not_found.saturating_add(1);
            f.not_found
        })
    }

    pub(super) fn reschedule(&self, lane: &Lane, id: &str, progress: Option<f32>) {
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
        let now = self.now();
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

    pub(super) async fn poll_one(&self, lane: &Arc<Lane>, id: &str, pid: &str) {
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
                if let (Ok(Outcome::Stored(_)), Some((at, model))) = (&r, accepted_at) {
                    let secs = (self.now() - at).max(0) as f64 / 1000.0;
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

    /// Fails the attempt `pid` of a running task (retried if it may be).
    pub(super) async fn fail_attempt(
        &self,
        id: &str,
        pid: &str,
        error: TaskError,
    ) -> Result<(), StoreError> {
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

    /// Tells the lane's health what a status query's answer says.
    pub(super) fn record_poll(&self, lane: &Lane, result: &Result<JobState, ProviderError>) {
        let failure = match result {
            Err(ProviderError::Unreachable { message, fix }) => Some((message, *fix)),
            Err(ProviderError::Transient(m) | ProviderError::Ambiguous(m)) => Some((m, None)),
            _ => None,
        };
        let mut st = lane.lock();
        let now = self.now();
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
}
