//! One provider account as the dispatcher drives it: its configuration, and
//! the state its loops share under one lock (slots held, the tasks it
//! follows and their poll timers, observed latency, health).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use gengate_core::policy::{FairQueue, QueueEntry};
use gengate_core::{Task, TaskId};
use gengate_providers::Provider;
use rand::Rng;
use tokio::sync::{Notify, Semaphore};

use super::health::{Health, HealthSettings};

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
    /// Credits of tasks it may be sent per UTC day; then its tasks wait.
    pub daily_credits: Option<i64>,
}

/// Where a provider's callbacks go and the key that makes their tokens.
#[derive(Clone)]
pub struct CallbackTarget {
    /// `https://…/v1/callbacks/{provider}`.
    pub url: String,
    pub key: Vec<u8>,
}

/// Polls under way at once per provider; more wait for the next round.
pub(super) const MAX_CONCURRENT_POLLS: usize = 64;

/// Weight of the newest observation in the latency average.
pub(super) const LATENCY_EWMA_ALPHA: f64 = 0.2;

/// "No such task" answers in a row before a running task's attempt counts
/// as lost (and is retried as a new, paid submission).
pub(super) const NOT_FOUND_STRIKES: u8 = 3;

/// Progress changes smaller than this are not written to the store.
pub(super) const PROGRESS_STEP: f32 = 0.1;

/// Recent run times of one model, to time polls.
#[derive(Default)]
pub(super) struct LatencyWindow {
    pub(super) recent: std::collections::VecDeque<f64>,
    /// (10th, 90th) percentile of `recent`, refreshed as it fills.
    pub(super) p10_p90: Option<(f64, f64)>,
    pub(super) since_refresh: u32,
}

/// Observations kept per model.
pub(super) const LATENCY_WINDOW: usize = 256;

/// Observations needed before they replace the configured expectation.
pub(super) const LATENCY_MIN_SAMPLES: usize = 8;

impl LatencyWindow {
    pub(super) fn observe(&mut self, secs: f64) {
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

pub(super) struct Follow {
    pub(super) provider_task_id: String,
    pub(super) model: String,
    /// "No such task" answers in a row: one could be a proxy's 404 or a
    /// provider's overloaded error code; a retry would pay twice.
    pub(super) not_found: u8,
    /// A callback came while a poll was under way: poll again right after.
    pub(super) poke: bool,
    pub(super) accepted_at: i64,
    pub(super) interval_ms: u64,
    pub(super) next_at: i64,
    pub(super) stored_progress: f32,
}

/// A lane's controls as last read (see `controls.rs`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Controls {
    pub(super) paused: bool,
    /// Credits held by tasks sent to the provider today (UTC).
    pub(super) spent_today: i64,
}

impl Controls {
    /// Whether the lane may hand out work, given its cap.
    pub(super) fn stopped(&self, cap: Option<i64>) -> bool {
        self.paused || cap.is_some_and(|cap| self.spent_today >= cap)
    }
}

pub(super) struct LaneState {
    pub(super) queue: FairQueue,
    /// Slots this node holds: its tasks submitting or running at this
    /// provider. A set, so a slot is given back once however many paths
    /// (a cancel, a lost lease, the task's end) report it.
    pub(super) held: HashSet<TaskId>,
    pub(super) following: HashMap<TaskId, Follow>,
    /// Poll timers; an entry is stale unless it matches `following[id].next_at`.
    pub(super) timers: BinaryHeap<Reverse<(i64, TaskId)>>,
    /// Observed seconds from acceptance to result.
    pub(super) latency_ewma: Option<f64>,
    /// Per model: recent run times, to time polls.
    pub(super) latency: HashMap<String, LatencyWindow>,
    pub(super) health: Health,
    /// When the next status query may go, Unix ms (queries are spread
    /// evenly).
    pub(super) next_poll_slot: f64,
    /// Callbacks received (and accepted) for this provider.
    pub(super) callbacks: u64,
    /// An admin's pause and the day's spending, as last read.
    pub(super) controls: Controls,
}

pub(super) struct Lane {
    pub(super) name: String,
    pub(super) provider: Arc<dyn Provider>,
    pub(super) limit: usize,
    pub(super) resubmit_unknown: bool,
    /// Milliseconds between two status queries at least.
    pub(super) poll_gap_ms: f64,
    pub(super) callbacks: Option<CallbackTarget>,
    pub(super) daily_credits: Option<i64>,
    pub(super) state: Mutex<LaneState>,
    /// Wakes the slot loop: a slot freed or a task was queued.
    pub(super) wake: Notify,
    /// Wakes the poll loop: a timer earlier than its sleep was added.
    pub(super) follow_wake: Notify,
    pub(super) polls: Semaphore,
}

impl LaneState {
    /// Stops working on task `id` here (its slot and its polls); whether
    /// this node was working on it.
    pub(super) fn let_go(&mut self, id: &str) -> bool {
        let held = self.held.remove(id);
        self.following.remove(id).is_some() || held
    }
}

impl Lane {
    pub(super) fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().expect("lane state lock poisoned")
    }
}

pub(super) fn entry_of(task: &Task) -> QueueEntry {
    QueueEntry {
        task_id: task.id.clone(),
        user_id: task.user_id,
        priority: task.priority,
        not_before: task.not_before,
    }
}

/// A factor in 0.9..1.1 that spreads timers apart.
pub(super) fn jitter() -> f64 {
    rand::thread_rng().gen_range(0.9..1.1)
}
