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

/// One shard of the task cache.
#[derive(Default)]
struct Shard {
    map: HashMap<TaskId, Arc<Entry>>,
    /// Publishes into this shard so far: a read that missed the cache
    /// notes it first, and may only fill the cache if it is unchanged (an
    /// evicted newer state must not be replaced by an older read).
    published: u64,
}

/// The event side: sequence, replay ring and topics change together under
/// one lock, so subscribers see events in sequence order and a resume can
/// never fall between the ring and the live stream.
#[derive(Default)]
struct Events {
    seq: u64,
    ring: VecDeque<Arc<TaskEvent>>,
    topics: HashMap<Topic, broadcast::Sender<Arc<TaskEvent>>>,
    /// Topic count after the last pruning, to prune only when it doubled.
    pruned_len: usize,
}

/// See the module documentation.
pub struct Hub {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    events: Mutex<Events>,
    ring_len: usize,
    epoch: i64,
    /// Bumped whenever the gallery's content changes (a public task
    /// succeeded), so cached gallery pages know they are stale.
    gallery_generation: AtomicU64,
    /// The same per bucket of users (`user_id % USER_BUCKETS`) for listings.
    user_generations: Vec<AtomicU64>,
    /// Where this node's changes go to reach other nodes, when something
    /// has to carry them (Redis); with the node's id, the lease holder of
    /// the changes it makes.
    outbox: OnceLock<(
        String,
        tokio::sync::mpsc::UnboundedSender<gengate_store::Change>,
    )>,
}

impl Hub {
    /// A hub caching up to `capacity` tasks and replaying up to `ring_len`
    /// recent events. `epoch` should be the process start time.
    pub fn new(capacity: usize, ring_len: usize, epoch: i64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            events: Mutex::default(),
            ring_len: ring_len.max(1),
            epoch,
            gallery_generation: AtomicU64::new(0),
            user_generations: (0..USER_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            outbox: OnceLock::new(),
        }
    }

    fn shard(&self, id: &str) -> &Mutex<Shard> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    fn insert(&self, shard: &mut Shard, task: Arc<Task>) {
        if !shard.map.contains_key(&task.id) && shard.map.len() >= self.per_shard {
            // Evict an arbitrary eighth: cheap, and recently used tasks come
            // straight back on their next read.
            let drop_n = (self.per_shard / 8).max(1);
            let victims: Vec<TaskId> = shard.map.keys().take(drop_n).cloned().collect();
            for v in victims {
                shard.map.remove(&v);
            }
        }
        shard.map.insert(
            task.id.clone(),
            Arc::new(Entry {
                task,
                serialized: OnceLock::new(),
            }),
        );
    }

    /// The listing generation of `user`'s bucket.
    fn user_generation(&self, user: UserId) -> &AtomicU64 {
        &self.user_generations[(user.unsigned_abs() % USER_BUCKETS as u64) as usize]
    }

    /// The generation of the pages of `user` (`None`: the gallery). Read it
    /// before querying the store; a page is current while it is unchanged.
    pub fn page_generation(&self, user: Option<UserId>) -> u64 {
        match user {
            None => self.gallery_generation.load(Ordering::Acquire),
            Some(u) => self.user_generation(u).load(Ordering::Acquire),
        }
    }

    /// The cached state of a task, if cached.
    pub fn get(&self, id: &str) -> Option<Arc<Task>> {
        self.shard(id)
            .lock()
            .expect("hub shard lock")
            .map
            .get(id)
            .map(|e| e.task.clone())
    }

    /// The cache entry of a task, with room for its serialized form.
    pub fn entry(&self, id: &str) -> Option<Arc<Entry>> {
        self.shard(id)
            .lock()
            .expect("hub shard lock")
            .map
            .get(id)
            .cloned()
    }

    /// Note this before reading a task from the store after a cache miss,
    /// and hand it to [`Hub::remember`].
    pub fn read_mark(&self, id: &str) -> u64 {
        self.shard(id).lock().expect("hub shard lock").published
    }

    /// Caches a task read from the store after a miss, unless something was
    /// published into its shard since `mark` (the read may be older than
    /// that) or a newer version is cached. Returns the newest state known.
    pub fn remember(&self, task: Task, mark: u64) -> Arc<Task> {
        let mut shard = self.shard(&task.id).lock().expect("hub shard lock");
        if let Some(cached) = shard.map.get(&task.id)
            && cached.task.version >= task.version
        {
            return cached.task.clone();
        }
        let task = Arc::new(task);
        if shard.published == mark {
            self.insert(&mut shard, task.clone());
        }
        task
    }

    /// Sends every change published here from now on to `tx` too, as made
    /// by node `node`.
    pub fn set_outbox(
        &self,
        node: String,
        tx: tokio::sync::mpsc::UnboundedSender<gengate_store::Change>,
    ) {
        let _ = self.outbox.set((node, tx));
    }

    /// Records a change this node committed: [`Hub::publish_remote`], and
    /// out to the other nodes.
    pub fn publish(&self, task: &Task) {
        self.publish_remote(task);
        if let Some((node, tx)) = self.outbox.get() {
            let _ = tx.send(gengate_store::Change {
                task_id: task.id.clone(),
                version: task.version,
                user_id: task.user_id,
                status: task.status,
                // Only the lease holder writes a status that holds a lease.
                owner: gengate_store::holds_lease(task.status).then(|| node.clone()),
            });
        }
    }

    /// Whether anyone here cares about changes of this task: it is cached,
    /// or someone streams its events or its owner's.
    pub fn wants(&self, id: &str, user: UserId) -> bool {
        if self.get(id).is_some() {
            return true;
        }
        let ev = self.events.lock().expect("hub events lock");
        [Topic::Task(id.to_owned()), Topic::User(user)]
            .iter()
            .any(|t| ev.topics.get(t).is_some_and(|tx| tx.receiver_count() > 0))
    }

    /// Marks the cached pages a change elsewhere may appear on as stale:
    /// its owner's listings, and the gallery when a task succeeded (whether
    /// it is public is not known without reading it).
    pub fn invalidate_pages(&self, user: UserId, status: gengate_core::Status) {
        self.user_generation(user).fetch_add(1, Ordering::AcqRel);
        if status == gengate_core::Status::Succeeded {
            self.gallery_generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Empties the cache (after changes from other nodes may have been
    /// missed): later reads go to the store.
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = shard.lock().expect("hub shard lock");
            shard.published += 1;
            shard.map.clear();
        }
        for g in &self.user_generations {
            g.fetch_add(1, Ordering::AcqRel);
        }
        self.gallery_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a committed change (this node's or another's): updates the
    /// cache, marks cached pages it may appear on as stale, and tells
    /// subscribers.
    pub fn publish_remote(&self, task: &Task) {
        // Generations first, then the change becomes visible: a page read
        // after this point is labelled with the new generation.
        self.user_generation(task.user_id)
            .fetch_add(1, Ordering::AcqRel);
        // A gallery task, or a finished one changed since (taken out of the
        // gallery by an admin: it may be on a cached gallery page).
        let changed_after = task.finished_at.is_some_and(|f| task.updated_at > f);
        if task.status == gengate_core::Status::Succeeded && (task.public || changed_after) {
            self.gallery_generation.fetch_add(1, Ordering::AcqRel);
        }
        let task = {
            let mut shard = self.shard(&task.id).lock().expect("hub shard lock");
            shard.published += 1;
            match shard.map.get(&task.id) {
                Some(cached) if cached.task.version >= task.version => cached.task.clone(),
                _ => {
                    let task = Arc::new(task.clone());
                    self.insert(&mut shard, task.clone());
                    task
                }
            }
        };
        let mut ev = self.events.lock().expect("hub events lock");
        ev.seq += 1;
        let event = Arc::new(TaskEvent { seq: ev.seq, task });
        if ev.ring.len() >= self.ring_len {
            ev.ring.pop_front();
        }
        ev.ring.push_back(event.clone());
        for topic in [
            Topic::Task(event.task.id.clone()),
            Topic::User(event.task.user_id),
        ] {
            if let Some(tx) = ev.topics.get(&topic)
                && tx.send(event.clone()).is_err()
            {
                // Everyone left: forget the topic.
                ev.topics.remove(&topic);
            }
        }
    }

    /// Records a deleted task: drops it from the cache and marks the pages
    /// it may appear on (its owner's and the gallery) as stale.
    pub fn forget(&self, task: &Task) {
        self.user_generation(task.user_id)
            .fetch_add(1, Ordering::AcqRel);
        self.gallery_generation.fetch_add(1, Ordering::AcqRel);
        let mut shard = self.shard(&task.id).lock().expect("hub shard lock");
        shard.published += 1;
        shard.map.remove(&task.id);
    }

    /// Live events of one task from now on, and the sequence number they
    /// start after.
    pub fn subscribe_task(&self, id: &str) -> (broadcast::Receiver<Arc<TaskEvent>>, u64) {
        self.subscribe(Topic::Task(id.to_owned()), 16)
    }

    /// Live events of all of one user's tasks from now on, and the sequence
    /// number they start after.
    pub fn subscribe_user(&self, user: UserId) -> (broadcast::Receiver<Arc<TaskEvent>>, u64) {
        self.subscribe(Topic::User(user), 256)
    }

    fn subscribe(
        &self,
        topic: Topic,
        capacity: usize,
    ) -> (broadcast::Receiver<Arc<TaskEvent>>, u64) {
        let mut ev = self.events.lock().expect("hub events lock");
        if ev.topics.len() > 4096 && ev.topics.len() > 2 * ev.pruned_len {
            // Drop topics whose subscribers all left without an event since;
            // only when the map doubled, so the cost stays amortised.
            ev.topics.retain(|_, tx| tx.receiver_count() > 0);
            ev.pruned_len = ev.topics.len();
        }
        let rx = ev
            .topics
            .entry(topic)
            .or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe();
        (rx, ev.seq)
    }

    /// Events after `seq`, if the ring still holds all of them.
    pub fn since(&self, seq: u64) -> Option<Vec<Arc<TaskEvent>>> {
        let ev = self.events.lock().expect("hub events lock");
        if seq >= ev.seq {
            return Some(Vec::new());
        }
        let oldest = ev.ring.front()?.seq;
        if seq + 1 < oldest {
            return None;
        }
        Some(ev.ring.iter().filter(|e| e.seq > seq).cloned().collect())
    }

    /// The last event's sequence number (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.events.lock().expect("hub events lock").seq
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
            billing: None,
            limits: Default::default(),
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
        assert_eq!(hub.remember(task("a", 0), hub.read_mark("a")).version, 2);
        for i in 0..100 {
            hub.publish(&task(&format!("t{i}"), 0));
        }
        let cached = (0..100)
            .filter(|i| hub.get(&format!("t{i}")).is_some())
            .count();
        assert!(cached <= 16 + SHARDS, "bounded: {cached}");
    }

    #[test]
    fn a_read_older_than_a_publish_never_refills_the_cache() {
        let hub = Hub::new(SHARDS, 8, 7);
        hub.publish(&task("a", 1));
        let mark = hub.read_mark("a"); // a reader misses... (say, after eviction)
        hub.publish(&task("a", 2)); // ...the task moves on...
        for i in 0..200 {
            hub.publish(&task(&format!("x{i}"), 0)); // ...and is evicted.
        }
        let read = hub.remember(task("a", 1), mark); // the reader's older copy
        assert_eq!(read.version, 1);
        assert!(
            hub.get("a").is_none_or(|t| t.version == 2),
            "the stale read was not cached"
        );
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
