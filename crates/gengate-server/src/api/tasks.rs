//! Task routes: create, read, list, cancel.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use gengate_engine::dispatch::QueueInfo;
use gengate_store::Caller;

use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, AppQuery, IdempotencyKeyHeader};
use super::limit::{bounded, timed_out};
use super::respond::{PRIVATE, Rendered, cached_json, page_json};
use super::views::{CreateTaskRequest, GetTaskQuery, ListTasksQuery, TaskPage, TaskView};
use crate::state::App;

/// Longest long-poll a client may ask for.
const MAX_WAIT_SECS: u64 = 60;

/// The task routes, each within `limit` but the read, which bounds itself
/// (a long poll adds its wait to the limit).
pub(super) fn router(limit: Duration) -> Router<App> {
    Router::new()
        .route(
            "/v1/tasks",
            bounded(post(create_task).get(list_tasks), limit),
        )
        .route(
            "/v1/tasks/{id}",
            get(get_task).merge(bounded(delete(delete_task), limit)),
        )
        .route("/v1/tasks/{id}/cancel", bounded(post(cancel_task), limit))
}

/// Create a task.
///
/// The task is stored durably before the answer is sent. With an
/// `Idempotency-Key`, repeating the request returns the same task.
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = CreateTaskRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key and body, same task (kept 24 h).")),
    responses(
        (status = 202, description = "Accepted and queued", body = TaskView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No or bad API key", body = ErrorBody),
        (status = 409, description = "Same Idempotency-Key still in progress", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field, unknown model, or Idempotency-Key reused with another body", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn create_task(
    State(app): State<App>,
    caller: Caller,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    AppJson(req): AppJson<CreateTaskRequest>,
) -> Result<Response, ApiError> {
    let created = app.tasks.create(&caller, key, req.into()).await?;
    let mut resp = (
        StatusCode::ACCEPTED,
        Json(TaskView::new(
            &created.task,
            created.queue,
            app.auth.media_urls(),
        )),
    )
        .into_response();
    if created.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// Get a task (yours, or any with an admin key).
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id (tsk_…)"),
           ("wait" = Option<u64>, Query, description = "Long-poll: wait up to this many seconds (0..=60) for the status to change"),
           ("If-None-Match" = Option<String>, Header, description = "ETag of a copy you have; 304 if unchanged")),
    responses((status = 200, body = TaskView), (status = 304, description = "Not modified"),
              (status = 401, body = ErrorBody), (status = 404, description = "No such task, or not yours", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn get_task(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    AppQuery(q): AppQuery<GetTaskQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("wait must be 0..={MAX_WAIT_SECS} seconds"),
        )
        .with_field("wait"));
    }
    // A long poll may take its wait on top of the normal limit.
    let limit = app.request_timeout + Duration::from_secs(wait);
    let found = tokio::time::timeout(
        limit,
        app.tasks.get_wait(&caller, &id, Duration::from_secs(wait)),
    )
    .await
    .map_err(|_| timed_out())??;
    let task = &found.task;
    // A finished task's answer never changes: render it once, unless it
    // carries signed links, which expire.
    let signed = !task.outputs.is_empty() && !task.in_gallery();
    if let Some(entry) = app.tasks.finished_entry(task).filter(|_| !signed) {
        let serialized = match entry.serialized.get() {
            Some(s) => s,
            None => {
                let r = Rendered::new(&TaskView::new(
                    task,
                    QueueInfo::default(),
                    app.auth.media_urls(),
                ))?;
                entry
                    .serialized
                    .get_or_init(|| (r.body, r.etag.to_str().unwrap_or_default().to_owned()))
            }
        };
        let etag = HeaderValue::from_str(&serialized.1).map_err(ApiError::internal)?;
        return Ok(Rendered {
            body: serialized.0.clone(),
            etag,
        }
        .respond(&headers, PRIVATE));
    }
    Ok(cached_json(
        &headers,
        &TaskView::new(task, found.queue, app.auth.media_urls()),
        PRIVATE,
    ))
}

/// List your tasks, newest first.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(ListTasksQuery),
    responses((status = 200, body = TaskPage), (status = 304, description = "Not modified"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list_tasks(
    State(app): State<App>,
    caller: Caller,
    AppQuery(q): AppQuery<ListTasksQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let page = app.tasks.list(&caller, &q.into()).await?;
    Ok(page_json(&headers, &page, PRIVATE, || TaskPage {
        data: page
            .tasks
            .iter()
            .map(|t| TaskView::new(t, app.tasks.queue_info(t), app.auth.media_urls()))
            .collect(),
        next_cursor: page.next_cursor.clone(),
    }))
}

/// Delete a finished task: it leaves listings and the gallery, and its
/// stored media is removed.
#[utoipa::path(delete, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id (tsk_…)")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "Not finished yet", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn delete_task(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.tasks.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancel a task that has not finished (at the provider too, where it can).
#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", tag = "tasks",
    params(("id" = String, Path, description = "Task id (tsk_…)")),
    responses((status = 200, body = TaskView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "Already finished", body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn cancel_task(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let task = app.tasks.cancel(&caller, &id).await?;
    Ok(Json(TaskView::new(
        &task,
        Default::default(),
        app.auth.media_urls(),
    )))
}
