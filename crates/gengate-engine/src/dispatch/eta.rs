//! Queue position and expected times: the ETA a task view shows, and when
//! the first status query of a running task goes.

use gengate_core::policy;
use gengate_core::{Status, Task};
use rand::Rng;

use super::dispatcher::Dispatcher;
use super::lane::{Lane, LaneState};

/// Queue position and ETA of one task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueInfo {
    pub position: Option<u64>,
    pub eta_seconds: Option<u64>,
}

impl Dispatcher {
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
                let eta =
                    match position {
                        Some(_) => policy::eta_seconds(position, lane.limit as u32, latency, None),
                        // Waiting for a retry time: that wait, then a run.
                        None => ((task.not_before - self.now()).max(0) as f64 / 1000.0 + latency)
                            .ceil() as u64,
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
                    .map_or(0.0, |f| (self.now() - f.accepted_at).max(0) as f64 / 1000.0);
                QueueInfo {
                    position: None,
                    eta_seconds: Some(policy::eta_seconds(None, 1, latency, Some(elapsed))),
                }
            }
            _ => QueueInfo::default(),
        }
    }

    /// The run-time window (10th and 90th percentile, seconds) of `model`
    /// at this lane: observed, or else the configured expectation.
    pub(super) fn latency_window(&self, st: &LaneState, model: &str) -> (f64, f64) {
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
    pub(super) fn first_poll_ms(&self, lane: &Lane, st: &LaneState, model: &str) -> i64 {
        let (lo, hi) = self.latency_window(st, model);
        let at = if lane.callbacks.is_some() { hi } else { lo };
        // Spread after the mark, never before it: a query before the
        // quickest task can finish is wasted.
        let spread: f64 = rand::thread_rng().gen_range(1.0..1.2);
        ((at * 1000.0 * spread) as i64).max(self.inner.settings.poll_initial.as_millis() as i64)
    }

    pub(super) fn expected_seconds(&self, model: &str) -> f64 {
        self.inner
            .models
            .get(model)
            .map_or(10.0, |m| m.expected_seconds)
    }
}
