//! Server-sent events: one task's changes (`/v1/tasks/{id}/events`) and all
//! of the caller's tasks (`/v1/events`). Each event is `event: task` with the
//! task object as data and an id that `Last-Event-ID` resumes from; when the
//! events in between are no longer held, the stream says `event: reset` (refetch
//! what you show) instead of silently skipping them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream};
use gengate_core::Task;
use gengate_store::Caller;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ErrorBody};
use super::views::TaskView;
use crate::app::App;
use crate::hub::TaskEvent;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/v1/tasks/{id}/events", get(task_events))
        .route("/v1/events", get(user_events))
}

enum Item {
    Task(u64, Arc<Task>),
    Reset,
}

struct Feed {
    app: App,
    pending: VecDeque<Item>,
    changes: broadcast::Receiver<Arc<TaskEvent>>,
    /// Events up to this sequence number were sent (or are in `pending`).
    sent_seq: u64,
    /// One task's stream ends after that task's terminal state.
    single_task: Option<String>,
    done: bool,
    shutdown: CancellationToken,
}

impl Feed {
    fn new(
        app: App,
        pending: VecDeque<Item>,
        changes: broadcast::Receiver<Arc<TaskEvent>>,
        start_seq: u64,
        single_task: Option<String>,
    ) -> Self {
        // Replayed events may reach past the subscription point; their live
        // copies must not be sent again.
        let sent_seq = pending.iter().fold(start_seq, |m, i| match i {
            Item::Task(seq, _) => m.max(*seq),
            Item::Reset => m,
        });
        Self {
            shutdown: app.shutdown.clone(),
            app,
            pending,
            changes,
            sent_seq,
            single_task,
            done: false,
        }
    }

    fn event(&mut self, item: Item) -> Event {
        match item {
            Item::Task(seq, task) => {
                if self.single_task.is_some() && task.status.is_terminal() {
                    self.done = true;
                }
                let info = self.app.tasks.dispatcher().queue_info(&task);
                Event::default()
                    .id(self.app.hub.event_id(seq))
                    .event("task")
                    .json_data(TaskView::new(&task, info))
                    .unwrap_or_else(|_| {
                        Event::default()
                            .event("error")
                            .data("cannot serialize the task")
                    })
            }
            Item::Reset => Event::default()
                .event("reset")
                .data(r#"{"reason":"events were missed; refetch the tasks you show"}"#),
        }
    }

    async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        if let Some(item) = self.pending.pop_front() {
            return Some(self.event(item));
        }
        loop {
            let received = tokio::select! {
                () = self.shutdown.cancelled() => return None,
                r = self.changes.recv() => r,
            };
            match received {
                Ok(ev) if ev.seq <= self.sent_seq => {}
                Ok(ev) => {
                    self.sent_seq = ev.seq;
                    return Some(self.event(Item::Task(ev.seq, ev.task.clone())));
                }
                Err(RecvError::Lagged(_)) => {
                    // Too slow a reader: for one task, its current state says
                    // all; for many, the client must refetch.
                    let seq = self.app.hub.last_seq();
                    self.sent_seq = seq;
                    let item = match self
                        .single_task
                        .as_deref()
                        .and_then(|id| self.app.hub.get(id))
                    {
                        Some(task) => Item::Task(seq, task),
                        None => Item::Reset,
                    };
                    return Some(self.event(item));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    fn into_response(self) -> Response {
        let s: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
            Box::pin(stream::unfold(self, |mut feed| async move {
                feed.next().await.map(|e| (Ok(e), feed))
            }));
        Sse::new(s)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response()
    }
}

fn last_event_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("last-event-id").and_then(|v| v.to_str().ok())
}

/// Server-sent events of one task: its current state first (or, with
/// `Last-Event-ID`, the changes since), then each change; the stream ends
/// after the task finishes.
#[utoipa::path(get, path = "/v1/tasks/{id}/events", tag = "tasks",
    params(("id" = String, Path, description = "Task id (tsk_…)"),
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "text/event-stream of `task` events", content_type = "text/event-stream"),
              (status = 204, description = "Resumed after the task's last event: nothing more will come"),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn task_events(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Subscribe, then note the sequence, then read: whatever changes after
    // the read arrives as an event, and nothing falls in between.
    let (changes, start_seq) = app.hub.subscribe_task(&id);
    let task = app.tasks.get(&caller, &id).await?;
    let mut pending = VecDeque::new();
    let resumed = last_event_id(&headers)
        .and_then(|h| app.hub.parse_event_id(h))
        .and_then(|seq| app.hub.since(seq));
    match resumed {
        Some(events) => {
            let mine: Vec<_> = events.iter().filter(|e| e.task.id == id).collect();
            if mine.is_empty() && task.status.is_terminal() {
                // Tells EventSource to stop reconnecting.
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            pending.extend(mine.into_iter().map(|e| Item::Task(e.seq, e.task.clone())));
        }
        None => pending.push_back(Item::Task(start_seq, task)),
    }
    Ok(Feed::new(app, pending, changes, start_seq, Some(id)).into_response())
}

/// Server-sent events of all of the caller's tasks, from now on (or, with
/// `Last-Event-ID`, from after that event; `event: reset` when those events
/// are no longer held).
#[utoipa::path(get, path = "/v1/events", tag = "tasks",
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "text/event-stream of `task` and `reset` events", content_type = "text/event-stream"),
              (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn user_events(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
) -> Response {
    let (changes, start_seq) = app.hub.subscribe_user(caller.user_id);
    let mut pending = VecDeque::new();
    if let Some(header) = last_event_id(&headers) {
        match app
            .hub
            .parse_event_id(header)
            .and_then(|seq| app.hub.since(seq))
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
    Feed::new(app, pending, changes, start_seq, None).into_response()
}
