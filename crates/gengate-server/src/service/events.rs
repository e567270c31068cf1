//! Task events: what an event stream sends, independent of how it is sent.
//!
//! A feed is one task's changes (it ends after the task finishes) or all of
//! a user's. It starts from the current state, or resumes after an event id
//! (`Last-Event-ID`); when the events in between are no longer held, it says
//! [`FeedItem::Reset`] (refetch what you show) instead of silently skipping
//! them. Each task in it comes with its queue position and ETA.

use std::collections::VecDeque;
use std::sync::Arc;

use gengate_core::Task;
use gengate_engine::dispatch::QueueInfo;
use gengate_engine::hub::{Hub, TaskEvent};
use gengate_store::Caller;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::ServiceError;
use super::tasks::TaskService;

/// What a feed sends next.
#[derive(Debug)]
pub enum FeedItem {
    /// A task's state, under the event id that resumes after it.
    Task {
        event_id: String,
        task: Arc<Task>,
        queue: QueueInfo,
    },
    /// Events were missed: the client must refetch the tasks it shows.
    Reset,
}

/// How a resumed task feed starts.
pub enum TaskFeed {
    /// The client resumed after the task's last event: nothing more will
    /// come.
    Finished,
    Live(Box<Feed>),
}

/// Subscriptions to task changes, for the callers allowed to see them.
#[derive(Clone)]
pub struct EventService {
    hub: Arc<Hub>,
    tasks: TaskService,
    /// Fired at shutdown: every feed ends.
    shutdown: CancellationToken,
}

impl EventService {
    pub fn new(hub: Arc<Hub>, tasks: TaskService, shutdown: CancellationToken) -> Self {
        Self {
            hub,
            tasks,
            shutdown,
        }
    }

    /// One task's feed: its current state first (or, resuming after
    /// `last_event_id`, the changes since), then each change, ending after
    /// the task finishes.
    ///
    /// # Errors
    /// As [`TaskService::get`]: a missing task and someone else's alike.
    pub async fn task(
        &self,
        caller: &Caller,
        id: &str,
        last_event_id: Option<&str>,
    ) -> Result<TaskFeed, ServiceError> {
        // Subscribe, then note the sequence, then read: whatever changes
        // after the read arrives as an event, and nothing falls in between.
        let (changes, start_seq) = self.hub.subscribe_task(id);
        let task = self.tasks.get(caller, id).await?;
        let mut pending = VecDeque::new();
        let resumed = last_event_id
            .and_then(|h| self.hub.parse_event_id(h))
            .and_then(|seq| self.hub.since(seq));
        match resumed {
            Some(events) => {
                let mine: Vec<_> = events.iter().filter(|e| e.task.id == id).collect();
                if mine.is_empty() && task.status.is_terminal() {
                    return Ok(TaskFeed::Finished);
                }
                pending.extend(mine.into_iter().map(|e| Item::Task(e.seq, e.task.clone())));
            }
            None => pending.push_back(Item::Task(start_seq, task)),
        }
        Ok(TaskFeed::Live(Box::new(self.feed(
            pending,
            changes,
            start_seq,
            Some(id.to_owned()),
        ))))
    }

    /// All of the caller's tasks, from now on (or from after
    /// `last_event_id`, with a [`FeedItem::Reset`] first when those events
    /// are no longer held).
    pub fn user(&self, caller: &Caller, last_event_id: Option<&str>) -> Feed {
        let (changes, start_seq) = self.hub.subscribe_user(caller.user_id);
        let mut pending = VecDeque::new();
        if let Some(header) = last_event_id {
            match self
                .hub
                .parse_event_id(header)
                .and_then(|seq| self.hub.since(seq))
            {
                Some(events) => pending.extend(
                    events
                        .iter()
                        .filter(|e| e.task.user_id == caller.user_id)
                        .map(|e| Item::Task(e.seq, e.task.clone())),
                ),
                None => pending.push_back(Item::Reset),
            }
        }
        self.feed(pending, changes, start_seq, None)
    }

    fn feed(
        &self,
        pending: VecDeque<Item>,
        changes: broadcast::Receiver<Arc<TaskEvent>>,
        start_seq: u64,
        single_task: Option<String>,
    ) -> Feed {
        // Replayed events may reach past the subscription point; their live
        // copies must not be sent again.
        let sent_seq = pending.iter().fold(start_seq, |m, i| match i {
            Item::Task(seq, _) => m.max(*seq),
            Item::Reset => m,
        });
        Feed {
            events: self.clone(),
            pending,
            changes,
            sent_seq,
            single_task,
            done: false,
        }
    }
}

enum Item {
    Task(u64, Arc<Task>),
    Reset,
}

/// One client's feed of task changes.
pub struct Feed {
    events: EventService,
    pending: VecDeque<Item>,
    changes: broadcast::Receiver<Arc<TaskEvent>>,
    /// Events up to this sequence number were sent (or are in `pending`).
    sent_seq: u64,
    /// One task's feed ends after that task's terminal state.
    single_task: Option<String>,
    done: bool,
}

impl Feed {
    /// The next item; `None` when the feed ends (its task finished, or
    /// shutdown).
    pub async fn next(&mut self) -> Option<FeedItem> {
        if self.done {
            return None;
        }
        if let Some(item) = self.pending.pop_front() {
            return Some(self.item(item));
        }
        loop {
            let received = tokio::select! {
                () = self.events.shutdown.cancelled() => return None,
                r = self.changes.recv() => r,
            };
            match received {
                Ok(ev) if ev.seq <= self.sent_seq => {}
                Ok(ev) => {
                    self.sent_seq = ev.seq;
                    return Some(self.item(Item::Task(ev.seq, ev.task.clone())));
                }
                Err(RecvError::Lagged(_)) => {
                    // Too slow a reader: for one task, its current state says
                    // all; for many, the client must refetch.
                    let hub = &self.events.hub;
                    let seq = hub.last_seq();
                    self.sent_seq = seq;
                    let item = match self.single_task.as_deref().and_then(|id| hub.get(id)) {
                        Some(task) => Item::Task(seq, task),
                        None => Item::Reset,
                    };
                    return Some(self.item(item));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    fn item(&mut self, item: Item) -> FeedItem {
        match item {
            Item::Task(seq, task) => {
                if self.single_task.is_some() && task.status.is_terminal() {
                    self.done = true;
                }
                FeedItem::Task {
                    event_id: self.events.hub.event_id(seq),
                    queue: self.events.tasks.queue_info(&task),
                    task,
                }
            }
            Item::Reset => FeedItem::Reset,
        }
    }
}
