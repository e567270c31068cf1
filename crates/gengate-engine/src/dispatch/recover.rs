//! Picking up after a restart: every unfinished task resumes from what is
//! stored, and a submission whose answer was lost is settled by asking the
//! provider (by the client reference it was sent with), never by sending it
//! again where the provider can be asked.

use std::sync::Arc;
use std::time::Duration;

use gengate_core::{Event, Status, Task, TaskError};
use gengate_providers::ProviderError;
use tracing::{Instrument, error, info, info_span, warn};

use super::dispatcher::Dispatcher;
use super::lane::{Lane, entry_of};
use super::submit::Submission;

impl Dispatcher {
    /// Loads every unfinished task: queued ones are queued again, running
    /// ones followed by their stored provider id, and ones caught mid-
    /// submission reconciled. Must finish before requests are served, so a
    /// cancel cannot race the rebuilt slot counts.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn recover(&self) -> anyhow::Result<()> {
        self.inner.source.recover(self).await
    }

    /// Recovery on one node: the store's unfinished tasks are all this
    /// node's, and what they need comes back from what is stored.
    pub(super) async fn recover_local(&self) -> anyhow::Result<()> {
        let tasks = self.inner.store.active_tasks().await?;
        let now = self.now();
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

    /// Settles a task whose submission outcome is unknown, without ever
    /// submitting it twice where the provider lets us look it up.
    pub(super) async fn reconcile(&self, lane: &Arc<Lane>, task: Task) {
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
                        not_before: self.now(),
                    };
                }
                Err(ProviderError::Unsupported) if lane.resubmit_unknown => {
                    break Event::Fail {
                        error: TaskError::new(
                            "submission_unknown",
                            "the submission's outcome was lost; submitting again",
                            true,
                        ),
                        retry_at: self.now(),
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
}
