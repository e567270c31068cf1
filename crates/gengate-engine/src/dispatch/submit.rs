//! Submission: a claimed task goes to its provider, and the answer decides
//! what happens to the task (running, back to the queue with its attempt
//! refunded, retried, failed, or reconciled when the outcome is unknown) and
//! what it says about the account (full, rate limited, out of credit,
//! refusing the credentials, unreachable).

use std::sync::Arc;

use gengate_core::policy::{self, QueueEntry};
use gengate_core::{Event, ModelSpec, Status, Task, TaskError, UserId};
use gengate_providers::{FollowRef, ProviderError, SubmitRequest};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use super::callbacks::callback_token;
use super::dispatcher::Dispatcher;
use super::health::AccountProblem;
use super::lane::Lane;
use super::transition::Outcome;

impl Dispatcher {
    pub(super) async fn submit(self, lane: Arc<Lane>, entry: QueueEntry) {
        let id = entry.task_id.clone();
        let claimed = self
            .transition(&id, None, |t| {
                // A task moved to another provider meanwhile is not ours.
                (t.status == Status::Queued && t.provider == lane.name).then_some(Event::Claim)
            })
            .await;
        let task = match claimed {
            Ok(Outcome::Stored(t)) => t,
            Ok(_) => return self.release_unclaimed(&lane, &id, entry.user_id),
            Err(e) => {
                // Could not even claim: put it back and try later.
                error!(task.id = %id, error = %e, "claiming task {id} failed: {e}");
                self.release_unclaimed(&lane, &id, entry.user_id);
                lane.lock().queue.push(
                    QueueEntry {
                        not_before: self.now() + 1000,
                        ..entry
                    },
                    self.now(),
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
    pub(super) async fn run_claimed(
        self,
        lane: Arc<Lane>,
        task: Task,
        epoch: Option<CancellationToken>,
    ) {
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

    pub(super) async fn submit_claimed(&self, lane: &Arc<Lane>, task: Task) {
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

    pub(super) async fn after_submit(
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
                let not_before = self.now();
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
                let not_before = self.now() + retry_after.as_millis() as i64;
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
    pub(super) fn record_outcome(&self, lane: &Lane, result: &Result<String, ProviderError>) {
        let now = self.now();
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

    /// Stores the provider's id for an accepted task. The provider is running
    /// (and charging for) it now, so a store failure is retried, never
    /// answered with a cancel; a restart finds the task by reference.
    pub(super) async fn store_acceptance(&self, lane: &Arc<Lane>, task: Task, pid: String) {
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
    pub(super) async fn superseded(&self, id: &str, pid: &str) -> bool {
        if !self.inner.source.leased() {
            return true;
        }
        match self.inner.store.get_task(id).await {
            Ok(Some(t)) if t.status == Status::Submitting => false,
            Ok(Some(t)) if !t.status.is_terminal() => t.provider_task_id.as_deref() != Some(pid),
            _ => true,
        }
    }

    pub(super) fn backoff_at(&self, attempts: u32) -> i64 {
        let s = &self.inner.settings;
        let jitter: f64 = rand::thread_rng().r#gen();
        self.now()
            + policy::backoff_ms(
                attempts,
                s.retry_base.as_millis() as u64,
                s.retry_max.as_millis() as u64,
                jitter,
            ) as i64
    }

    /// Gives back a slot taken for a task that then could not be claimed.
    pub(super) fn release_unclaimed(&self, lane: &Lane, id: &str, user: UserId) {
        let mut st = lane.lock();
        st.health.abandon_probe();
        if st.held.remove(id) {
            st.queue.finished(user);
        }
        drop(st);
        lane.wake.notify_one();
        self.inner.changed.notify_waiters();
    }
}

/// What one submission of a task sends, owned so that a lost answer can be
/// looked up with exactly what was sent.
pub(super) struct Submission {
    /// The client reference: one per attempt, so a retry is a new job at the
    /// provider while a lost answer can still be looked up.
    pub(super) reference: String,
    pub(super) kind: gengate_core::ModelKind,
    pub(super) endpoint: Option<String>,
    pub(super) params: serde_json::Value,
    pub(super) callback_url: Option<String>,
}

impl Submission {
    pub(super) fn new(lane: &Lane, task: &Task, model: &ModelSpec) -> Self {
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

    pub(super) fn request<'a>(&'a self, task: &'a Task) -> SubmitRequest<'a> {
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

/// A metric label and the task error for a provider failure.
pub(super) fn classify_failure(e: &ProviderError) -> (&'static str, TaskError) {
    let (kind, mut error) = failure_of(e);
    // Provider texts can name URLs; the task's owner sees none's query.
    error.message = gengate_net::redact_text(&error.message);
    (kind, error)
}

pub(super) fn failure_of(e: &ProviderError) -> (&'static str, TaskError) {
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
