//! The media step: a task in `storing` has its outputs copied into the
//! operator's storage ([`crate::media`]), then becomes `succeeded` (or
//! `failed`). Safe to repeat after a crash.

use std::time::Duration;

use gengate_core::{Event, Status, TaskId};
use tracing::{Instrument, error, info, info_span, warn};

use super::dispatcher::Dispatcher;

impl Dispatcher {
    /// Copies a storing task's outputs in the background (bounded by
    /// `media.concurrency`), then stores the result: `succeeded` with the
    /// stored outputs, or `failed`. Safe to repeat: keys are per task and
    /// output, and a task no longer storing is left alone.
    pub(super) fn start_copy(&self, id: TaskId) {
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

    pub(super) async fn copy_task(&self, id: &str) {
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
                    retry_at: self.now(),
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
}
