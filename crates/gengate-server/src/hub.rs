//! The hub: the latest state of recently used tasks (a write-through cache)
//! and the stream of their changes (for long polls and server-sent events).
//!
//! Every stored change of a task in this process passes through
//! [`Hub::publish`] right after its commit, so the cache is exact for a single
//! node: a read never sees an older state than the last committed one. (With
//! several nodes on one database, other nodes' writes arrive through the
//! cross-node event channel, which must publish here too.) Entries only move
//! forward by version, so two writers finishing out of order cannot put an
//! older state back.
//!
//! Events carry ids `<epoch>-<seq>`: `seq` counts changes in this process and
//! `epoch` is the process's start time, so an id from before a restart is
//! recognised as such and never mistaken for a recent one.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use gengate_core::{Task, TaskId, UserId};
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Topic {
    Task(TaskId),
    User(UserId),
}

/// A cached task, and its serialized form once made (used for finished
/// tasks only: their answer never changes).
#[derive(Debug)]
pub struct Entry {
    pub task: Arc<Task>,
    pub serialized: OnceLock<(bytes::Bytes, String)>,
}

/// One stored change of a task.
#[derive(Debug)]
pub struct TaskEvent {
    pub seq: u64,
    pub task: Arc<Task>,
}

const SHARDS: usize = 16;
/// Buckets of users sharing a listing generation: a change of one user's
/// task makes the cached pages of the others in its bucket miss once, which
/// is cheaper than a map of every user.
const USER_BUCKETS: usize = 256;

/// See the module documentation.
pub struct Hub {
    shards: Vec<Mutex<HashMap<TaskId, Arc<Entry>>>>,
    per_shard: usize,
    /// Subscribers by topic, so an event wakes only those who want it.
    topics: Mutex<HashMap<Topic, broadcast::Sender<Arc<TaskEvent>>>>,
    /// Recent events, oldest first, for `Last-Event-ID` resumption.
    ring: Mutex<VecDeque<Arc<TaskEvent>>>,
    ring_len: usize,
    seq: AtomicU64,
    epoch: i64,
    /// Bumped whenever the gallery's content changes (a public task
    /// succeeded), so cached gallery pages know they are stale.
    gallery_generation: AtomicU64,
    /// The same per bucket of users (`user_id % USER_BUCKETS`) for listings.
    user_generations: Vec<AtomicU64>,
}

impl Hub {
    /// A hub caching up to `capacity` tasks and replaying up to `ring_len`
    /// recent events. `epoch` should be the process start time.
    pub fn new(capacity: usize, ring_len: usize, epoch: i64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            topics: Mutex::default(),
            ring: Mutex::new(VecDeque::with_capacity(ring_len.min(1 << 16))),
            ring_len: ring_len.max(1),
            seq: AtomicU64::new(0),
            epoch,
            gallery_generation: AtomicU64::new(0),
            user_generations: (0..USER_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn shard(&self, id: &str) -> &Mutex<HashMap<TaskId, Arc<Entry>>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// Keeps `task` unless a newer version is cached; returns what is cached.
    fn put(&self, task: Arc<Task>) -> Arc<Task> {
        let mut shard = self.shard(&task.id).lock().expect("hub shard lock");
        if let Some(cached) = shard.get(&task.id) {
            if cached.task.version >= task.version {
                return cached.task.clone();
            }
        } else if shard.len() >= self.per_shard {
            // Evict an arbitrary eighth: cheap, and recently used tasks come
            // straight back on their next read.
            let drop_n = (self.per_shard / 8).max(1);
            let victims: Vec<TaskId> = shard.keys().take(drop_n).cloned().collect();
            for v in victims {
                shard.remove(&v);
            }
        }
        shard.insert(
            task.id.clone(),
            Arc::new(Entry {
                task: task.clone(),
                serialized: OnceLock::new(),
            }),
        );
        task
    }

    /// The generation of the pages of `user` (`None`: the gallery). Read it
    /// before querying the store; a page is current while it is unchanged.
    pub fn page_generation(&self, user: Option<UserId>) -> u64 {
        match user {
            None => self.gallery_generation.load(Ordering::Acquire),
            Some(u) => self.user_generations[(u.unsigned_abs() % USER_BUCKETS as u64) as usize]
                .load(Ordering::Acquire),
        }
    }

    /// The cached state of a task, if cached.
    pub fn get(&self, id: &str) -> Option<Arc<Task>> {
        self.shard(id)
            .lock()
            .expect("hub shard lock")
            .get(id)
            .map(|e| e.task.clone())
    }

    /// The cache entry of a task, with room for its serialized form.
    pub fn entry(&self, id: &str) -> Option<Arc<Entry>> {
        self.shard(id)
            .lock()
            .expect("hub shard lock")
            .get(id)
            .cloned()
    }

    /// Caches a task read from the store (a cache miss).
    pub fn remember(&self, task: Task) -> Arc<Task> {
        self.put(Arc::new(task))
    }

    /// Records a committed change: updates the cache, marks cached pages it
    /// may appear on as stale, and tells subscribers.
    pub fn publish(&self, task: &Task) {
        // Generations first, then the change becomes visible: a page read
        // after this point is labelled with the new generation.
        self.user_generations[(task.user_id.unsigned_abs() % USER_BUCKETS as u64) as usize]
            .fetch_add(1, Ordering::AcqRel);
        if task.public && task.status == gengate_core::Status::Succeeded {
            self.gallery_generation.fetch_add(1, Ordering::AcqRel);
        }
        let task = self.put(Arc::new(task.clone()));
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let event = Arc::new(TaskEvent { seq, task });
        {
            let mut ring = self.ring.lock().expect("hub ring lock");
            if ring.len() >= self.ring_len {
                ring.pop_front();
            }
            ring.push_back(event.clone());
        }
        let mut topics = self.topics.lock().expect("hub topics lock");
        for topic in [
            Topic::Task(event.task.id.clone()),
            Topic::User(event.task.user_id),
        ] {
            if let Some(tx) = topics.get(&topic)
                && tx.send(event.clone()).is_err()
            {
                // Everyone left: forget the topic.
                topics.remove(&topic);
            }
        }
    }

    /// Live events of one task from now on.
    pub fn subscribe_task(&self, id: &str) -> broadcast::Receiver<Arc<TaskEvent>> {
        self.subscribe(Topic::Task(id.to_owned()), 16)
    }

    /// Live events of all of one user's tasks from now on.
    pub fn subscribe_user(&self, user: UserId) -> broadcast::Receiver<Arc<TaskEvent>> {
        self.subscribe(Topic::User(user), 256)
    }

    fn subscribe(&self, topic: Topic, capacity: usize) -> broadcast::Receiver<Arc<TaskEvent>> {
        let mut topics = self.topics.lock().expect("hub topics lock");
        if topics.len() > 4096 {
            // Drop topics whose subscribers all left without an event since.
            topics.retain(|_, tx| tx.receiver_count() > 0);
        }
        topics
            .entry(topic)
            .or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe()
    }

    /// Events after `seq`, if the ring still holds all of them.
    pub fn since(&self, seq: u64) -> Option<Vec<Arc<TaskEvent>>> {
        let ring = self.ring.lock().expect("hub ring lock");
        let current = self.seq.load(Ordering::Relaxed);
        if seq >= current {
            return Some(Vec::new());
        }
        let oldest = ring.front()?.seq;
        if seq + 1 < oldest {
            return None;
        }
        Some(ring.iter().filter(|e| e.seq > seq).cloned().collect())
    }

    /// The last event's sequence number (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// The id an event is sent with.
    pub fn event_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }

    /// The sequence number in an event id from this process, or `None` for
    /// an id from another process (before a restart) or a malformed one.
    pub fn parse_event_id(&self, id: &str) -> Option<u64> {
        let (epoch, seq) = id.trim().split_once('-')?;
        (epoch.parse::<i64>().ok()? == self.epoch)
            .then(|| seq.parse().ok())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gengate_core::task::NewTask;
    use serde_json::json;

    fn task(id: &str, version: i64) -> Task {
        let mut t = NewTask {
            id: id.into(),
            user_id: 1,
            model: "m".into(),
            provider: "p".into(),
            input: json!({}),
            public: false,
            priority: 0,
            max_attempts: 1,
            deadline_at: 0,
            created_at: 0,
            webhook_url: None,
        }
        .into_task();
        t.version = version;
        t
    }

    #[test]
    fn the_cache_only_moves_forward_and_evicts_when_full() {
        let hub = Hub::new(16, 8, 7);
        hub.publish(&task("a", 2));
        hub.publish(&task("a", 1));
        assert_eq!(
            hub.get("a").unwrap().version,
            2,
            "an older state never replaces a newer one"
        );
        assert_eq!(hub.remember(task("a", 0)).version, 2);
        for i in 0..100 {
            hub.publish(&task(&format!("t{i}"), 0));
        }
        let cached = (0..100)
            .filter(|i| hub.get(&format!("t{i}")).is_some())
            .count();
        assert!(cached <= 16 + SHARDS, "bounded: {cached}");
    }

    #[test]
    fn events_replay_from_an_id_while_the_ring_holds_them() {
        let hub = Hub::new(16, 4, 99);
        for v in 0..6 {
            hub.publish(&task("a", v));
        }
        assert_eq!(hub.last_seq(), 6);
        let id = hub.event_id(4);
        assert_eq!(id, "99-4");
        let seq = hub.parse_event_id(&id).unwrap();
        let replay: Vec<u64> = hub.since(seq).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(replay, [5, 6]);
        assert!(hub.since(1).is_none(), "events 2.. are gone from the ring");
        assert_eq!(hub.since(6).unwrap().len(), 0);
        assert_eq!(hub.parse_event_id("98-4"), None, "another process's id");
        assert_eq!(hub.parse_event_id("junk"), None);
    }
}
