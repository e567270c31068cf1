//! Server-sent events: one task's changes (`/v1/tasks/{id}/events`) and all
//! of the caller's tasks (`/v1/events`). Each event is `event: task` with the
//! task object as data and an id that `Last-Event-ID` resumes from; when the
//! events in between are no longer held, the stream says `event: reset` (refetch
//! what you show) instead of silently skipping them.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream};
use gengate_store::Caller;

use super::error::{ApiError, ErrorBody};
use super::views::TaskView;
use crate::service::events::{Feed, FeedItem, TaskFeed};
use crate::service::media_urls::MediaUrls;
use crate::state::App;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/v1/tasks/{id}/events", get(task_events))
        .route("/v1/events", get(user_events))
}

/// An event stream of `feed`, kept alive every 15 s; `urls` signs the
/// media links of the tasks shown.
fn stream(feed: Feed, urls: Option<MediaUrls>) -> Response {
    let s: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> = Box::pin(
        stream::unfold((feed, urls), |(mut feed, urls)| async move {
            let item = feed.next().await?;
            Some((Ok(event(item, urls.as_ref())), (feed, urls)))
        }),
    );
    Sse::new(s)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn event(item: FeedItem, urls: Option<&MediaUrls>) -> Event {
    match item {
        FeedItem::Task {
            event_id,
            task,
            queue,
        } => Event::default()
            .id(event_id)
            .event("task")
            .json_data(TaskView::new(&task, queue, urls))
            .unwrap_or_else(|_| {
                Event::default()
                    .event("error")
                    .data("cannot serialize the task")
            }),
        FeedItem::Reset => Event::default()
            .event("reset")
            .data(r#"{"reason":"events were missed; refetch the tasks you show"}"#),
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
    match app
        .events
        .task(&caller, &id, last_event_id(&headers))
        .await?
    {
        // Tells EventSource to stop reconnecting.
        TaskFeed::Finished => Ok(StatusCode::NO_CONTENT.into_response()),
        TaskFeed::Live(feed) => Ok(stream(*feed, app.auth.media_urls().cloned())),
    }
}

/// Server-sent events of all of the caller's tasks, from now on (or, with
/// `Last-Event-ID`, from after that event; `event: reset` when those events
/// are no longer held).
#[utoipa::path(get, path = "/v1/events", tag = "tasks",
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "text/event-stream of `task` and `reset` events", content_type = "text/event-stream"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn user_events(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    crate::service::may_list(&caller)?;
    Ok(stream(
        app.events.user(&caller, last_event_id(&headers)),
        app.auth.media_urls().cloned(),
    ))
}
