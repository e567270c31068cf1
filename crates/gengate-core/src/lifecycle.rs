//! The task state machine: `apply(&Task, Event, now) -> (Task, Vec<Effect>)`.
//!
//! ```text
//! queued ──claim──▶ submitting ──accept──▶ running ──succeed──▶ storing ──stored──▶ succeeded
//!   ▲  │               │   │                  │  └──fail──────▶ failed ◀──fail──┘
//!   │  └──cancel──▶ canceled ◀──cancel────────┘         (storing: cancel / expire too)
//!   └── defer (back-pressure, refunded) / fail (retryable, attempts left) ◀┘
//! ```
//!
//! `storing` sits between the provider's success and ours: the provider is
//! done (its slot is given back on entry) and its outputs are recorded on
//! the task, so a restart copies them again. A failure there is final: the
//! provider's work is paid for, and submitting again would pay twice.
//!
//! The function is pure: the caller persists the returned task (conditionally
//! on the old `version`) and only then carries out the effects, so a crash
//! between the two leaves a state from which recovery can redo the effects.
//! Anything not listed is an [`IllegalTransition`]: a late webhook or poll for
//! a finished task changes nothing.

use crate::task::{Output, Status, Task, TaskError};

/// Something that happened to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A dispatcher took the task, holding one provider slot, to submit it.
    Claim,
    /// The provider accepted the submission under this id.
    Accept { provider_task_id: String },
    /// The provider reports progress (0.0..=1.0) on a running task.
    Progress { progress: f32 },
    /// The provider finished the task with these outputs.
    Succeed { outputs: Vec<Output> },
    /// Every output of a storing task is in the operator's storage.
    Stored { outputs: Vec<Output> },
    /// The attempt failed. Retried at `retry_at` when the error is retryable
    /// and attempts remain; otherwise the task fails.
    Fail { error: TaskError, retry_at: i64 },
    /// The provider never took the submission (its account is full, or
    /// recovery found no trace of it): back to the queue, attempt refunded.
    Defer { not_before: i64 },
    /// The owner or an admin canceled the task.
    Cancel,
    /// The task's deadline passed.
    Expire,
    /// A queued task moves to another provider entry (failover while its
    /// provider's circuit is open).
    Reroute { provider: String },
    /// An admin asks to copy again the outputs of a task that failed only
    /// because they could not be copied (`output_copy_failed`): the
    /// provider's result is still on the task. The one way out of a
    /// terminal state.
    Recopy,
}

impl Event {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Claim => "claim",
            Event::Accept { .. } => "accept",
            Event::Progress { .. } => "progress",
            Event::Succeed { .. } => "succeed",
            Event::Stored { .. } => "stored",
            Event::Fail { .. } => "fail",
            Event::Defer { .. } => "defer",
            Event::Cancel => "cancel",
            Event::Expire => "expire",
            Event::Reroute { .. } => "reroute",
            Event::Recopy => "recopy",
        }
    }

    /// How the store guards the change this event makes. Changes made on
    /// anyone's behalf (a cancel, an expiry, a move) need no lease; the rest
    /// are the work of the node holding the task's lease. Exhaustive: a new
    /// event must say which it is.
    pub fn fence(&self) -> Fence {
        match self {
            Event::Claim
            | Event::Accept { .. }
            | Event::Progress { .. }
            | Event::Succeed { .. }
            | Event::Stored { .. }
            | Event::Fail { .. }
            | Event::Defer { .. }
            | Event::Recopy => Fence::Lease,
            Event::Cancel | Event::Expire | Event::Reroute { .. } => Fence::Version,
        }
    }
}

/// How a task update is guarded beyond its version, on a shared store.
///
/// A task in `submitting`, `running` or `storing` is *leased* to the node
/// working on it: `lease_owner` and `lease_until` (the database's clock) in
/// its row. The holder renews its leases by heartbeat; a lease not renewed in
/// time expires and another node takes the task over, bumping its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// Written by the node working on the task (a submission's answer, a
    /// poll's result, a copy): the write needs this node's unexpired lease
    /// on the task (or no lease on it), and renews it while the new status
    /// holds one. A node that stalled past its lease writes nothing.
    Lease,
    /// Written on anyone's behalf (a cancel, an expiry, a move to another
    /// provider): the version alone guards it. Such writes end the lease.
    Version,
}

/// Work the dispatcher must do after the new state is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Put the task (back) into the scheduling queue.
    Enqueue,
    /// Remove the task from the scheduling queue.
    Dequeue,
    /// Start following the provider task (poll timers / webhooks).
    Follow,
    /// Give the provider slot the task held back.
    ReleaseSlot,
    /// Ask the provider to stop this task (best effort).
    CancelAtProvider { provider_task_id: String },
    /// Take the task out of `provider`'s queue and put it into the queue of
    /// the provider it now names.
    MoveFrom { provider: String },
    /// Copy the task's outputs into the operator's storage.
    CopyOutputs,
}

/// An event that does not apply to the task's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event} does not apply to a {from} task")]
pub struct IllegalTransition {
    pub from: &'static str,
    pub event: &'static str,
}

/// Applies `event` to `task` at time `now` (Unix ms).
///
/// # Errors
/// [`IllegalTransition`] when the event has no meaning in the task's state;
/// the task is then left exactly as it was.
pub fn apply(
    task: &Task,
    event: Event,
    now: i64,
) -> Result<(Task, Vec<Effect>), IllegalTransition> {
    let illegal = IllegalTransition {
        from: task.status.as_str(),
        event: event.name(),
    };
    let mut next = task.clone();
    next.updated_at = now;
    let mut effects = Vec::new();
    match (task.status, event) {
        (Status::Queued, Event::Claim) if task.attempts < task.max_attempts => {
            next.status = Status::Submitting;
            next.attempts += 1;
            next.started_at.get_or_insert(now);
        }
        (Status::Submitting, Event::Accept { provider_task_id }) => {
            next.status = Status::Running;
            next.provider_task_id = Some(provider_task_id);
            effects.push(Effect::Follow);
        }
        (Status::Running, Event::Progress { progress }) => {
            // Providers and their webhooks can report out of order; progress
            // only moves forward.
            next.progress = clamp_progress(progress).max(task.progress);
        }
        (Status::Running, Event::Succeed { outputs }) => {
            next.status = Status::Storing;
            next.outputs = outputs;
            next.progress = 1.0;
            next.error = None;
            effects.extend([Effect::ReleaseSlot, Effect::CopyOutputs]);
        }
        (Status::Storing, Event::Stored { outputs }) => {
            next.status = Status::Succeeded;
            next.outputs = outputs;
            next.finished_at = Some(now);
        }
        (Status::Failed, Event::Recopy)
            if !task.outputs.is_empty()
                && task
                    .error
                    .as_ref()
                    .is_some_and(|e| e.code == "output_copy_failed") =>
        {
            next.status = Status::Storing;
            next.error = None;
            next.finished_at = None;
            effects.push(Effect::CopyOutputs);
        }
        (Status::Storing, Event::Fail { error, .. }) => {
            // Never retried at the provider: its work is done and paid for.
            next.status = Status::Failed;
            next.error = Some(TaskError {
                retryable: false,
                ..error
            });
            next.finished_at = Some(now);
        }
        (Status::Submitting | Status::Running, Event::Fail { error, retry_at }) => {
            effects.push(Effect::ReleaseSlot);
            if error.retryable && task.attempts < task.max_attempts {
                next.status = Status::Queued;
                next.not_before = retry_at.max(now);
                next.provider_task_id = None;
                next.progress = 0.0;
                effects.push(Effect::Enqueue);
            } else {
                next.status = Status::Failed;
                next.finished_at = Some(now);
            }
            next.error = Some(error);
        }
        (Status::Queued, Event::Reroute { provider }) if provider != task.provider => {
            next.provider = provider;
            effects.push(Effect::MoveFrom {
                provider: task.provider.clone(),
            });
        }
        (Status::Submitting, Event::Defer { not_before }) => {
            next.status = Status::Queued;
            next.attempts = task.attempts.saturating_sub(1);
            next.not_before = not_before.max(now);
            effects.extend([Effect::ReleaseSlot, Effect::Enqueue]);
        }
        (status, event @ (Event::Cancel | Event::Expire)) if !status.is_terminal() => {
            if event == Event::Cancel {
                next.status = Status::Canceled;
            } else {
                next.status = Status::Failed;
                next.error = Some(TaskError::new(
                    "deadline_exceeded",
                    "the task did not finish before its deadline",
                    false,
                ));
            }
            next.finished_at = Some(now);
            match status {
                Status::Queued => effects.push(Effect::Dequeue),
                // The provider is done and its slot already given back; a
                // copy under way finds the task finished and stops, and what
                // it stored is left to `media gc`.
                Status::Storing => {}
                _ => {
                    if let Some(id) = &task.provider_task_id {
                        effects.push(Effect::CancelAtProvider {
                            provider_task_id: id.clone(),
                        });
                    }
                    effects.push(Effect::ReleaseSlot);
                }
            }
        }
        _ => return Err(illegal),
    }
    Ok((next, effects))
}

fn clamp_progress(p: f32) -> f32 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::NewTask;
    use proptest::prelude::*;
    use serde_json::json;

    fn new_task(max_attempts: u32) -> Task {
        NewTask {
            id: "tsk_01".into(),
            user_id: 1,
            model: "sim-image".into(),
            provider: "sim".into(),
            input: json!({"prompt": "a fox"}),
            public: false,
            priority: 0,
            max_attempts,
            deadline_at: 1_000_000,
            created_at: 0,
            webhook_url: None,
            billing: None,
            limits: Default::default(),
        }
        .into_task()
    }

    fn retryable() -> TaskError {
        TaskError::new("provider_unavailable", "503", true)
    }

    #[test]
    fn happy_path_reaches_succeeded_and_releases_the_slot() {
        let t = new_task(3);
        let (t, fx) = apply(&t, Event::Claim, 1).unwrap();
        assert_eq!((t.status, t.attempts, fx.len()), (Status::Submitting, 1, 0));
        let (t, fx) = apply(
            &t,
            Event::Accept {
                provider_task_id: "p1".into(),
            },
            2,
        )
        .unwrap();
        assert_eq!(fx, vec![Effect::Follow]);
        let (t, _) = apply(&t, Event::Progress { progress: 0.5 }, 3).unwrap();
        let (t, _) = apply(&t, Event::Progress { progress: 0.2 }, 4).unwrap();
        assert_eq!(t.progress, 0.5, "progress never goes back");
        let out = Output::new("u", "image/png");
        let (t, fx) = apply(
            &t,
            Event::Succeed {
                outputs: vec![out.clone()],
            },
            5,
        )
        .unwrap();
        assert_eq!(
            (t.status, t.finished_at, fx),
            (
                Status::Storing,
                None,
                vec![Effect::ReleaseSlot, Effect::CopyOutputs]
            )
        );
        assert_eq!(t.outputs, vec![out.clone()], "recorded for recovery");
        let stored = Output {
            key: Some("k".into()),
            ..out
        };
        let (t, fx) = apply(
            &t,
            Event::Stored {
                outputs: vec![stored.clone()],
            },
            6,
        )
        .unwrap();
        assert_eq!(
            (t.status, t.finished_at, fx),
            (Status::Succeeded, Some(6), vec![])
        );
        assert_eq!(t.outputs, vec![stored]);
    }

    #[test]
    fn a_failed_copy_fails_the_task_for_good() {
        let t = new_task(3);
        let (t, _) = apply(&t, Event::Claim, 1).unwrap();
        let (t, _) = apply(
            &t,
            Event::Accept {
                provider_task_id: "p".into(),
            },
            2,
        )
        .unwrap();
        let (t, _) = apply(&t, Event::Succeed { outputs: vec![] }, 3).unwrap();
        let (t, fx) = apply(
            &t,
            Event::Fail {
                error: TaskError::new("output_copy_failed", "503 from the bucket", true),
                retry_at: 9,
            },
            4,
        )
        .unwrap();
        assert_eq!((t.status, fx), (Status::Failed, vec![]));
        assert!(!t.error.unwrap().retryable);
    }

    #[test]
    fn late_webhook_for_finished_task_changes_nothing() {
        let t = new_task(1);
        let (t, _) = apply(&t, Event::Claim, 1).unwrap();
        let (t, _) = apply(&t, Event::Cancel, 2).unwrap();
        let err = apply(&t, Event::Succeed { outputs: vec![] }, 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event succeed does not apply to a canceled task"
        );
    }

    #[test]
    fn retryable_failure_requeues_until_attempts_run_out() {
        let mut t = new_task(2);
        for attempt in 1..=2 {
            t = apply(&t, Event::Claim, 1).unwrap().0;
            let (n, fx) = apply(
                &t,
                Event::Fail {
                    error: retryable(),
                    retry_at: 100,
                },
                2,
            )
            .unwrap();
            t = n;
            if attempt == 1 {
                assert_eq!((t.status, t.not_before), (Status::Queued, 100));
                assert_eq!(fx, vec![Effect::ReleaseSlot, Effect::Enqueue]);
            }
        }
        assert_eq!(t.status, Status::Failed);
        assert_eq!(t.error.unwrap().code, "provider_unavailable");
    }

    #[test]
    fn back_pressure_refunds_the_attempt() {
        let t = new_task(1);
        let (t, _) = apply(&t, Event::Claim, 1).unwrap();
        let (t, fx) = apply(&t, Event::Defer { not_before: 50 }, 2).unwrap();
        assert_eq!(
            (t.status, t.attempts, t.not_before),
            (Status::Queued, 0, 50)
        );
        assert_eq!(fx, vec![Effect::ReleaseSlot, Effect::Enqueue]);
        assert!(
            apply(&t, Event::Claim, 60).is_ok(),
            "the refunded attempt can be used"
        );
    }

    #[test]
    fn cancel_of_running_task_cancels_at_provider() {
        let t = new_task(1);
        let (t, _) = apply(&t, Event::Claim, 1).unwrap();
        let (t, _) = apply(
            &t,
            Event::Accept {
                provider_task_id: "p9".into(),
            },
            2,
        )
        .unwrap();
        let (t, fx) = apply(&t, Event::Cancel, 3).unwrap();
        assert_eq!(t.status, Status::Canceled);
        assert_eq!(
            fx,
            vec![
                Effect::CancelAtProvider {
                    provider_task_id: "p9".into()
                },
                Effect::ReleaseSlot
            ]
        );
    }

    #[test]
    fn expiry_fails_with_deadline_exceeded() {
        let (t, fx) = apply(&new_task(1), Event::Expire, 9).unwrap();
        assert_eq!((t.status, fx), (Status::Failed, vec![Effect::Dequeue]));
        assert_eq!(t.error.unwrap().code, "deadline_exceeded");
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Claim),
            "[a-z]{1,4}".prop_map(|id| Event::Accept {
                provider_task_id: id
            }),
            (-1.0f32..2.0).prop_map(|p| Event::Progress { progress: p }),
            (0usize..2).prop_map(|n| Event::Succeed {
                outputs: vec![crate::Output::new("https://p/x.png", "image/png"); n]
            }),
            Just(Event::Stored { outputs: vec![] }),
            (any::<bool>(), any::<bool>(), 0i64..1000).prop_map(|(r, copy, at)| Event::Fail {
                error: TaskError::new(if copy { "output_copy_failed" } else { "x" }, "y", r),
                retry_at: at
            }),
            Just(Event::Recopy),
            (0i64..1000).prop_map(|nb| Event::Defer { not_before: nb }),
            Just(Event::Cancel),
            Just(Event::Expire),
            "[a-c]".prop_map(|p| Event::Reroute { provider: p }),
        ]
    }

    /// The much simpler model: which status an event may lead to from which.
    fn allowed(from: Status, to: Status) -> bool {
        use Status::*;
        from == to && matches!(from, Running | Queued)
            || matches!(
                (from, to),
                (Queued, Submitting | Canceled | Failed)
                    | (Submitting, Running | Queued | Failed | Canceled)
                    | (Running, Storing | Failed | Queued | Canceled)
                    | (Storing, Succeeded | Failed | Canceled)
                    | (Failed, Storing)
            )
    }

    proptest! {
        #[test]
        fn no_event_sequence_breaks_the_invariants(
            max_attempts in 1u32..4,
            events in proptest::collection::vec(any_event(), 0..40),
        ) {
            let mut task = new_task(max_attempts);
            let mut slots_held = 0i32;
            let mut submissions = 0u32;
            let mut queued_entries = 1i32; // created tasks start enqueued
            let mut copies = 0i32; // copy jobs started and not yet ended
            for (step, event) in events.into_iter().enumerate() {
                let now = step as i64 + 10;
                let is_claim = event == Event::Claim;
                let is_recopy = event == Event::Recopy;
                match apply(&task, event, now) {
                    Ok((next, effects)) => {
                        prop_assert!(allowed(task.status, next.status), "{:?} -> {:?}", task.status, next.status);
                        // Terminal states refuse all but an admin's recopy
                        // of a result whose copy failed.
                        prop_assert!(!task.status.is_terminal() || is_recopy);
                        if is_recopy {
                            prop_assert_eq!(task.error.as_ref().map(|e| e.code.as_str()), Some("output_copy_failed"));
                            prop_assert!(!task.outputs.is_empty());
                        }
                        if is_claim {
                            slots_held += 1;
                            submissions += 1;
                            queued_entries -= 1;
                            prop_assert!(task.provider_task_id.is_none(), "a task with a provider id is never submitted again");
                        }
                        for e in &effects {
                            match e {
                                Effect::ReleaseSlot => slots_held -= 1,
                                Effect::Enqueue => queued_entries += 1,
                                Effect::Dequeue => queued_entries -= 1,
                                Effect::CancelAtProvider { .. } => prop_assert!(task.provider_task_id.is_some()),
                                Effect::Follow => prop_assert_eq!(next.status, Status::Running),
                                Effect::CopyOutputs => {
                                    prop_assert_eq!(next.status, Status::Storing);
                                    copies += 1;
                                }
                                Effect::MoveFrom { provider } => {
                                    prop_assert_eq!(next.status, Status::Queued);
                                    prop_assert_ne!(provider, &next.provider);
                                }
                            }
                        }
                        if task.status == Status::Storing {
                            copies -= 1; // whatever ended it, the copy has nothing left to do
                        }
                        if next.status == Status::Queued && task.status == Status::Submitting && next.attempts < task.attempts {
                            submissions -= 1; // deferred: the provider never took it
                        }
                        task = next;
                    }
                    Err(_) => {
                        // Refused events leave nothing changed.
                    }
                }
                prop_assert_eq!(slots_held, i32::from(task.status.holds_slot()));
                prop_assert_eq!(queued_entries, i32::from(task.status == Status::Queued));
                prop_assert_eq!(copies, i32::from(task.status == Status::Storing));
                if task.status == Status::Succeeded {
                    prop_assert!(task.provider_task_id.is_some(), "only a provider's result is stored");
                }
                prop_assert!(task.attempts <= task.max_attempts);
                prop_assert_eq!(submissions, task.attempts);
                prop_assert!((0.0..=1.0).contains(&task.progress));
                prop_assert_eq!(task.status.is_terminal(), task.finished_at.is_some());
                if task.status == Status::Running {
                    prop_assert!(task.provider_task_id.is_some());
                }
                if task.status == Status::Failed {
                    prop_assert!(task.error.is_some());
                }
            }
        }
    }
}
