//! Scheduling policy: which queued task a free provider slot goes to, when a
//! failed attempt is retried, and what queue position and ETA to show.
//!
//! Ordering, per provider:
//! 1. higher `priority` first (only admins may raise it above 0, so users can
//!    only push their own background work down);
//! 2. among equal priority, the user with the fewest tasks in flight at this
//!    provider, so one user's 1,000 tasks cannot starve another user's one;
//! 3. then the user served longest ago (round robin);
//! 4. within a user, oldest first.
//!
//! The queue lives in memory and is rebuilt from the store at start; the store
//! stays the system of record (a claim is a conditional update there).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::task::{TaskId, UserId};

/// One task waiting for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub task_id: TaskId,
    pub user_id: UserId,
    pub priority: i32,
    /// Not to be handed out before this time (Unix ms).
    pub not_before: i64,
}

/// One user's ready tasks: a queue per priority class, each sorted by id
/// (creation time), so the head is found in O(1) and a task's rank by
/// binary search.
#[derive(Debug, Default)]
struct UserQueue {
    classes: BTreeMap<Reverse<i32>, VecDeque<TaskId>>,
    len: usize,
    last_served: u64,
}

impl UserQueue {
    fn insert(&mut self, priority: i32, id: TaskId) {
        let class = self.classes.entry(Reverse(priority)).or_default();
        // New tasks arrive in id order; only retries land in the middle.
        match class.back() {
            Some(last) if *last > id => {
                let at = class.partition_point(|x| *x < id);
                class.insert(at, id);
            }
            _ => class.push_back(id),
        }
        self.len += 1;
    }

    fn remove(&mut self, priority: i32, id: &str) -> bool {
        let Some(class) = self.classes.get_mut(&Reverse(priority)) else {
            return false;
        };
        let Ok(at) = class.binary_search_by(|x| x.as_str().cmp(id)) else {
            return false;
        };
        class.remove(at);
        if class.is_empty() {
            self.classes.remove(&Reverse(priority));
        }
        self.len -= 1;
        true
    }

    fn head_priority(&self) -> Option<i32> {
        self.classes.keys().next().map(|Reverse(p)| *p)
    }

    fn pop(&mut self) -> Option<(i32, TaskId)> {
        let mut entry = self.classes.first_entry()?;
        let Reverse(priority) = *entry.key();
        let id = entry.get_mut().pop_front()?;
        if entry.get().is_empty() {
            entry.remove();
        }
        self.len -= 1;
        Some((priority, id))
    }

    /// Tasks of a higher priority than `priority`, and of exactly it.
    fn counts_around(&self, priority: i32) -> (u64, u64) {
        let higher = self
            .classes
            .range(..Reverse(priority))
            .map(|(_, c)| c.len() as u64)
            .sum();
        let same = self
            .classes
            .get(&Reverse(priority))
            .map_or(0, |c| c.len() as u64);
        (higher, same)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The per-provider fair queue. Pushes, removals and pops are O(log n) plus
/// O(users with ready tasks) for the pick; [`FairQueue::position`] is
/// O(users × priority classes + log n).
#[derive(Debug, Default)]
pub struct FairQueue {
    users: HashMap<UserId, UserQueue>,
    /// Where each queued task is, to remove it on cancel.
    index: HashMap<TaskId, (UserId, i32, i64)>,
    /// Entries whose `not_before` is in the future, by due time.
    delayed: BTreeSet<(i64, TaskId)>,
    /// Tasks each user has in flight at this provider.
    in_flight: HashMap<UserId, u32>,
    serve_clock: u64,
}

impl FairQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or re-adds) a task. Adding a task already queued moves it.
    pub fn push(&mut self, e: QueueEntry, now: i64) {
        self.remove(&e.task_id);
        self.index
            .insert(e.task_id.clone(), (e.user_id, e.priority, e.not_before));
        if e.not_before > now {
            self.delayed.insert((e.not_before, e.task_id));
        } else {
            self.users
                .entry(e.user_id)
                .or_default()
                .insert(e.priority, e.task_id);
        }
    }

    /// Removes a task; returns whether it was queued.
    pub fn remove(&mut self, task_id: &str) -> bool {
        let Some((user, prio, not_before)) = self.index.remove(task_id) else {
            return false;
        };
        if !self.delayed.remove(&(not_before, task_id.to_owned()))
            && let Some(q) = self.users.get_mut(&user)
        {
            q.remove(prio, task_id);
            if q.is_empty() && self.in_flight.get(&user).copied().unwrap_or(0) == 0 {
                self.users.remove(&user);
            }
        }
        true
    }

    /// Number of queued tasks, ready or delayed.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, task_id: &str) -> bool {
        self.index.contains_key(task_id)
    }

    /// The queued tasks' ids, in no particular order.
    pub fn task_ids(&self) -> impl Iterator<Item = &TaskId> {
        self.index.keys()
    }

    /// Whether a task may be popped at `now`.
    pub fn has_ready(&mut self, now: i64) -> bool {
        self.promote_due(now);
        self.index.len() > self.delayed.len()
    }

    /// When the earliest delayed task becomes ready, if any.
    pub fn next_due(&self) -> Option<i64> {
        self.delayed.first().map(|(at, _)| *at)
    }

    fn promote_due(&mut self, now: i64) {
        while let Some((at, _)) = self.delayed.first() {
            if *at > now {
                break;
            }
            let Some((_, id)) = self.delayed.pop_first() else {
                break;
            };
            if let Some(&(user, prio, _)) = self.index.get(&id) {
                self.users.entry(user).or_default().insert(prio, id);
            }
        }
    }

    /// Takes the next task to dispatch and counts it in flight for its user.
    /// The caller reports the end of that flight with [`FairQueue::finished`].
    pub fn pop(&mut self, now: i64) -> Option<QueueEntry> {
        self.promote_due(now);
        let user = self
            .users
            .iter()
            .filter_map(|(user, q)| {
                let prio = q.head_priority()?;
                let flying = self.in_flight.get(user).copied().unwrap_or(0);
                Some(((Reverse(prio), flying, q.last_served, *user), *user))
            })
            .min()
            .map(|(_, user)| user)?;
        self.serve_clock += 1;
        let q = self.users.get_mut(&user)?;
        q.last_served = self.serve_clock;
        let (priority, task_id) = q.pop()?;
        let (_, _, not_before) = self.index.remove(&task_id)?;
        *self.in_flight.entry(user).or_default() += 1;
        Some(QueueEntry {
            task_id,
            user_id: user,
            priority,
            not_before,
        })
    }

    /// Counts a task as in flight for its user without it passing through the
    /// queue (tasks found running or submitting at start).
    pub fn started(&mut self, user_id: UserId) {
        *self.in_flight.entry(user_id).or_default() += 1;
    }

    /// A task of `user_id` left flight (finished, failed, deferred, canceled).
    pub fn finished(&mut self, user_id: UserId) {
        if let Some(n) = self.in_flight.get_mut(&user_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(&user_id);
                if self.users.get(&user_id).is_some_and(UserQueue::is_empty) {
                    self.users.remove(&user_id);
                }
            }
        }
    }

    /// 1-based position of a ready task in dispatch order (1 = next), an
    /// estimate from the current turn order: users take turns, so a user
    /// whose turn comes before ours (fewer in flight, or served longer ago)
    /// contributes up to `rank + 1` tasks ahead of ours, any other up to
    /// `rank`, and every task of higher priority is ahead. It is exact when
    /// all ready tasks share one priority and nothing is in flight; otherwise
    /// in-flight counts change as tasks start, which only an O(position)
    /// simulation would follow. Delayed tasks (waiting for a retry time)
    /// have no position.
    pub fn position(&self, task_id: &str) -> Option<u64> {
        let &(user, prio, _) = self.index.get(task_id)?;
        let q = self.users.get(&user)?;
        let class = q.classes.get(&Reverse(prio))?;
        let at = class.binary_search_by(|x| x.as_str().cmp(task_id)).ok()? as u64;
        let (higher_own, _) = q.counts_around(prio);
        let rank = higher_own + at;
        let turn = |u: &UserId, uq: &UserQueue| {
            (
                self.in_flight.get(u).copied().unwrap_or(0),
                uq.last_served,
                *u,
            )
        };
        let ours = turn(&user, q);
        let others: u64 = self
            .users
            .iter()
            .filter(|(u, _)| **u != user)
            .map(|(u, oq)| {
                let (higher, same) = oq.counts_around(prio);
                let turns = rank + u64::from(turn(u, oq) < ours);
                higher + same.min(turns)
            })
            .sum();
        Some(rank + others + 1)
    }
}

/// Delay before retry number `attempt` (1-based): exponential from `base_ms`,
/// capped at `max_ms`, with "equal jitter" (half fixed, half random) so that a
/// burst of failures does not come back as a burst. `jitter` is in `0.0..1.0`.
pub fn backoff_ms(attempt: u32, base_ms: u64, max_ms: u64, jitter: f64) -> u64 {
    let exp = base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
        .min(max_ms);
    let half = exp / 2;
    half + (half as f64 * jitter.clamp(0.0, 1.0)) as u64
}

/// Seconds until a task is likely done.
///
/// A queued task at `position` (1-based) waits for `ceil(position / slots)`
/// rounds of `latency_s` before its own run; a running task needs what is left
/// of one `latency_s` after `elapsed_s`.
pub fn eta_seconds(
    position: Option<u64>,
    slots: u32,
    latency_s: f64,
    elapsed_s: Option<f64>,
) -> u64 {
    let latency = latency_s.max(0.0);
    let secs = match (position, elapsed_s) {
        (Some(pos), _) => {
            let rounds = pos.div_ceil(u64::from(slots.max(1)));
            rounds as f64 * latency + latency
        }
        (None, Some(elapsed)) => (latency - elapsed).max(1.0),
        (None, None) => latency,
    };
    secs.ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, user: UserId, priority: i32) -> QueueEntry {
        QueueEntry {
            task_id: id.into(),
            user_id: user,
            priority,
            not_before: 0,
        }
    }

    #[test]
    fn one_users_backlog_does_not_starve_another() {
        let mut q = FairQueue::new();
        for i in 0..500 {
            q.push(entry(&format!("a{i:03}"), 1, 0), 0);
        }
        let first = q.pop(0).unwrap();
        assert_eq!(first.user_id, 1);
        q.push(entry("b000", 2, 0), 0);
        assert_eq!(q.position("b000"), Some(1));
        let next = q.pop(0).unwrap();
        assert_eq!(next.task_id, "b000", "B has nothing in flight, A has one");
    }

    #[test]
    fn users_alternate_and_tasks_stay_in_order_within_a_user() {
        let mut q = FairQueue::new();
        for i in 0..3 {
            q.push(entry(&format!("a{i}"), 1, 0), 0);
            q.push(entry(&format!("b{i}"), 2, 0), 0);
        }
        let mut order = Vec::new();
        while let Some(e) = q.pop(0) {
            order.push(e.task_id.clone());
            q.finished(e.user_id);
        }
        assert_eq!(order.len(), 6);
        let a: Vec<_> = order.iter().filter(|s| s.starts_with('a')).collect();
        assert_eq!(a, ["a0", "a1", "a2"]);
        for pair in order.chunks(2) {
            assert_ne!(
                pair[0].as_bytes()[0],
                pair[1].as_bytes()[0],
                "users alternate: {order:?}"
            );
        }
    }

    #[test]
    fn higher_priority_goes_first_and_delayed_tasks_wait() {
        let mut q = FairQueue::new();
        q.push(entry("low", 1, -5), 0);
        q.push(
            QueueEntry {
                not_before: 100,
                ..entry("later", 2, 9)
            },
            0,
        );
        q.push(entry("high", 3, 5), 0);
        assert_eq!(q.pop(0).unwrap().task_id, "high");
        assert_eq!(q.next_due(), Some(100));
        assert_eq!(q.position("later"), None);
        assert_eq!(q.pop(100).unwrap().task_id, "later");
        assert_eq!(q.pop(100).unwrap().task_id, "low");
        assert!(q.pop(100).is_none() && q.is_empty());
    }

    #[test]
    fn remove_takes_ready_and_delayed_tasks_out() {
        let mut q = FairQueue::new();
        q.push(entry("x", 1, 0), 0);
        q.push(
            QueueEntry {
                not_before: 50,
                ..entry("y", 1, 0)
            },
            0,
        );
        assert!(q.remove("x") && q.remove("y") && !q.remove("y"));
        assert!(q.is_empty() && q.pop(100).is_none());
    }

    proptest::proptest! {
        #[test]
        fn position_is_exact_for_equal_priorities_and_nothing_in_flight(
            users in proptest::collection::vec(1i64..6, 1..80),
        ) {
            // The case the estimate is exact for: one priority, nothing in flight.
            let mut q = FairQueue::new();
            for (i, user) in users.iter().enumerate() {
                q.push(entry(&format!("t{i:03}"), *user, 0), 0);
            }
            let tasks = &users;
            let predicted: HashMap<String, u64> =
                (0..tasks.len()).map(|i| format!("t{i:03}")).map(|id| (id.clone(), q.position(&id).unwrap())).collect();
            let mut n = 0;
            while let Some(e) = q.pop(0) {
                n += 1;
                proptest::prop_assert_eq!(predicted[&e.task_id], n, "task {}", e.task_id);
            }
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff_ms(1, 1000, 60_000, 0.0), 500);
        assert_eq!(backoff_ms(1, 1000, 60_000, 1.0), 1000);
        assert_eq!(backoff_ms(3, 1000, 60_000, 1.0), 4000);
        assert_eq!(backoff_ms(40, 1000, 60_000, 1.0), 60_000);
    }

    #[test]
    fn eta_counts_rounds_of_observed_latency() {
        assert_eq!(eta_seconds(Some(1), 4, 10.0, None), 20);
        assert_eq!(eta_seconds(Some(9), 4, 10.0, None), 40);
        assert_eq!(eta_seconds(None, 4, 10.0, Some(4.0)), 6);
        assert_eq!(eta_seconds(None, 4, 10.0, Some(30.0)), 1);
    }
}
