//! Admin routes (admin keys only; user keys get 403).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use gengate_core::Role;
use gengate_core::time::rfc3339;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::{LedgerEntryView, PageQuery};
use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, AppJson, AppQuery};
use super::respond::{PRIVATE, cached_json};
use super::views::TaskView;
use crate::service::admin::{AuditItem, TaskFilter};
use crate::state::App;
use gengate_engine::dispatch::LaneStats;
use gengate_store::{Account, AccountPatch};

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/v1/admin/stats", get(stats))
        .route("/v1/admin/keys", post(create_key).get(list_keys))
        .route("/v1/admin/keys/{key}", delete(revoke_key))
        .route("/v1/admin/users", get(list_users))
        .route("/v1/admin/users/{user}", get(get_user).patch(patch_user))
        .route("/v1/admin/users/{user}/credits", post(grant))
        .route("/v1/admin/audit", get(audit))
        .route("/v1/admin/tasks", get(search_tasks))
        .route("/v1/admin/tasks/cancel", post(cancel_tasks))
        .route("/v1/admin/tasks/{id}/hide", post(hide_task))
        .route("/v1/admin/tasks/{id}/retry", post(retry_task))
        .route("/v1/admin/tasks/{id}/recopy", post(recopy_task))
        .route("/v1/admin/providers/{name}/pause", post(pause_provider))
        .route("/v1/admin/providers/{name}/resume", post(resume_provider))
}

/// A key to make: for whom, with which role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateKeyRequest {
    /// The user's name (created on first use): 1..64 of letters, digits, `-_.@`.
    user: String,
    /// `user` (default), `admin`, or `service` (an app's backend, acting
    /// for the end user its `X-Gengate-User` header names).
    #[serde(default)]
    role: Option<String>,
}

/// A new key. `key` is the secret and is shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CreatedKeyView {
    id: i64,
    user: String,
    role: &'static str,
    prefix: String,
    key: String,
    created_at: String,
}

/// Create an API key for a user (e.g. to provision load-test users).
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKeyView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create_key(
    State(app): State<App>,
    Admin(admin): Admin,
    AppJson(req): AppJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKeyView>), ApiError> {
    let role = match req.role.as_deref() {
        None => Role::User,
        Some(r) => Role::parse(r).ok_or_else(|| crate::service::ServiceError::Invalid {
            code: "invalid_request",
            field: "role".into(),
            message: "role must be \"user\", \"admin\" or \"service\"".into(),
        })?,
    };
    let (info, secret) = app.admin.create_key(&admin, &req.user, role).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyView {
            id: info.id,
            user: info.user_name,
            role: info.role.as_str(),
            prefix: info.prefix,
            key: secret,
            created_at: rfc3339(info.created_at),
        }),
    ))
}

/// Stored tasks of one provider in one status.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StatusCountView {
    provider: String,
    status: &'static str,
    count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AdminStats {
    /// Live dispatcher figures per provider.
    providers: Vec<LaneStats>,
    /// Stored task counts per provider and status.
    tasks: Vec<StatusCountView>,
}

/// Queues, in-flight tasks and latency per provider; task counts by status.
#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin",
    responses((status = 200, body = AdminStats), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn stats(
    State(app): State<App>,
    _admin: Admin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let stats = app.admin.stats().await?;
    let stats = AdminStats {
        providers: stats.providers,
        tasks: stats
            .tasks
            .into_iter()
            .map(|c| StatusCountView {
                provider: c.provider,
                status: c.status.as_str(),
                count: c.count,
            })
            .collect(),
    };
    Ok(cached_json(&headers, &stats, PRIVATE))
}

/// A user's limits (0: none).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct LimitsView {
    max_active: u32,
    creates_per_minute: u32,
    tasks_per_day: u32,
}

/// A user as an admin sees them.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserView {
    id: i64,
    name: String,
    created_at: String,
    disabled: bool,
    balance: i64,
    held: i64,
    /// Tasks queued or running now.
    active: i64,
    /// The limits that apply (the user's own where set, else the configured).
    limits: LimitsView,
    /// Which of them are the user's own.
    own_limits: Vec<&'static str>,
}

fn user_view(a: Account, defaults: gengate_core::Limits) -> UserView {
    let l = a.limits.over(defaults);
    let own = [
        ("max_active", a.limits.max_active.is_some()),
        ("creates_per_minute", a.limits.creates_per_minute.is_some()),
        ("tasks_per_day", a.limits.tasks_per_day.is_some()),
    ];
    UserView {
        id: a.user_id,
        name: a.name,
        created_at: rfc3339(a.created_at),
        disabled: a.disabled,
        balance: a.balance,
        held: a.held,
        active: a.active,
        limits: LimitsView {
            max_active: l.max_active,
            creates_per_minute: l.creates_per_minute,
            tasks_per_day: l.tasks_per_day,
        },
        own_limits: own.into_iter().filter(|o| o.1).map(|o| o.0).collect(),
    }
}

/// A page of users, by id.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserPageView {
    users: Vec<UserView>,
    next_cursor: Option<String>,
}

/// Every user, by id.
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", params(PageQuery),
    responses((status = 200, body = UserPageView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list_users(
    State(app): State<App>,
    _admin: Admin,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<UserPageView>, ApiError> {
    let page = app.admin.users(q.cursor.as_deref(), q.limit).await?;
    let defaults = app.admin.limits();
    Ok(Json(UserPageView {
        users: page
            .users
            .into_iter()
            .map(|a| user_view(a, defaults))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One user, by name (an end user's is `<app>/<id>`, its `/` sent as `%2F`).
#[utoipa::path(get, path = "/v1/admin/users/{user}", tag = "admin",
    params(("user" = String, Path, description = "The user's name")),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn get_user(
    State(app): State<App>,
    _admin: Admin,
    Path(user): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let account = app.admin.user(&user).await?;
    Ok(Json(user_view(account, app.admin.limits())))
}

/// What to change of a user. Each limit: a number sets the user's own (0:
/// none), `null` goes back to the configured one; an absent field is kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchUserRequest {
    /// A disabled user's creates are refused (403 `user_disabled`); reads,
    /// cancels and running tasks go on.
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<u32>)]
    max_active: Option<Option<u32>>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<u32>)]
    creates_per_minute: Option<Option<u32>>,
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<u32>)]
    tasks_per_day: Option<Option<u32>>,
}

/// A present field, `null` included (`Some(None)`).
fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

/// Disable or enable a user, or set their own limits.
#[utoipa::path(patch, path = "/v1/admin/users/{user}", tag = "admin", request_body = PatchUserRequest,
    params(("user" = String, Path, description = "The user's name")),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn patch_user(
    State(app): State<App>,
    Admin(admin): Admin,
    Path(user): Path<String>,
    AppJson(req): AppJson<PatchUserRequest>,
) -> Result<Json<UserView>, ApiError> {
    let detail = serde_json::json!({
        "disabled": req.disabled,
        "max_active": req.max_active,
        "creates_per_minute": req.creates_per_minute,
        "tasks_per_day": req.tasks_per_day,
    });
    let patch = AccountPatch {
        disabled: req.disabled,
        max_active: req.max_active,
        creates_per_minute: req.creates_per_minute,
        tasks_per_day: req.tasks_per_day,
    };
    let account = app.admin.patch_user(&admin, &user, patch, detail).await?;
    Ok(Json(user_view(account, app.admin.limits())))
}

/// Credits to add (negative: to take).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreditsRequest {
    amount: i64,
    /// Why, for the ledger and the audit trail (1..500 characters).
    reason: String,
}

/// Add or take credits; the ledger entry names the admin.
#[utoipa::path(post, path = "/v1/admin/users/{user}/credits", tag = "admin", request_body = CreditsRequest,
    params(("user" = String, Path, description = "The user's name")),
    responses((status = 201, body = LedgerEntryView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn grant(
    State(app): State<App>,
    Admin(admin): Admin,
    Path(user): Path<String>,
    AppJson(req): AppJson<CreditsRequest>,
) -> Result<(StatusCode, Json<LedgerEntryView>), ApiError> {
    let entry = app
        .admin
        .grant(&admin, &user, req.amount, &req.reason)
        .await?;
    Ok((StatusCode::CREATED, Json(entry.into())))
}

/// An API key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct KeyView {
    id: i64,
    user: String,
    role: &'static str,
    prefix: String,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

/// Every API key.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    responses((status = 200, body = Vec<KeyView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn list_keys(
    State(app): State<App>,
    _admin: Admin,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    let keys = app.admin.keys().await?;
    Ok(Json(
        keys.into_iter()
            .map(|k| KeyView {
                id: k.id,
                user: k.user_name,
                role: k.role.as_str(),
                prefix: k.prefix,
                created_at: rfc3339(k.created_at),
                revoked_at: k.revoked_at.map(rfc3339),
            })
            .collect(),
    ))
}

/// Revoke a key by id or prefix (within a second on every node).
#[utoipa::path(delete, path = "/v1/admin/keys/{key}", tag = "admin",
    params(("key" = String, Path, description = "The key's id or prefix")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn revoke_key(
    State(app): State<App>,
    Admin(admin): Admin,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.admin.revoke_key(&admin, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One line of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditView {
    /// `action` (an admin's) or `credits` (a movement of credits).
    source: &'static str,
    /// Who: the admin, or for a task's credits the user.
    actor: String,
    /// What: e.g. `user.patch`, `key.revoke`, `credits.hold`, `credits.grant`.
    action: String,
    /// To what: a user, key, task or provider.
    target: String,
    detail: serde_json::Value,
    at: String,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditPageView {
    entries: Vec<AuditView>,
    next_cursor: Option<String>,
}

/// Every admin action and every movement of credits, newest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", params(PageQuery),
    responses((status = 200, body = AuditPageView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn audit(
    State(app): State<App>,
    _admin: Admin,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<AuditPageView>, ApiError> {
    let page = app.admin.audit(q.cursor.as_deref(), q.limit).await?;
    let entries = page
        .items
        .into_iter()
        .map(|item| {
            let at = rfc3339(item.at());
            match item {
                AuditItem::Action(a) => AuditView {
                    source: "action",
                    actor: a.actor,
                    action: a.action,
                    target: a.target,
                    detail: serde_json::from_str(&a.detail).unwrap_or(serde_json::Value::Null),
                    at,
                },
                AuditItem::Credits(l) => AuditView {
                    source: "credits",
                    actor: l
                        .actor
                        .clone()
                        .unwrap_or_else(|| format!("user {}", l.user_id)),
                    action: format!("credits.{}", l.kind.as_str()),
                    target: l
                        .task_id
                        .clone()
                        .unwrap_or_else(|| format!("user {}", l.user_id)),
                    detail: serde_json::json!({
                        "user_id": l.user_id, "amount": l.amount, "balance": l.balance,
                        "reason": l.reason,
                    }),
                    at,
                },
            }
        })
        .collect();
    Ok(Json(AuditPageView {
        entries,
        next_cursor: page.next_cursor,
    }))
}

/// Which tasks, across users (every filter optional).
#[derive(Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TaskFilterQuery {
    /// The owner's name.
    user: Option<String>,
    status: Option<String>,
    model: Option<String>,
    /// The provider entry.
    provider: Option<String>,
    /// Created at or after this time (RFC 3339).
    created_from: Option<String>,
    /// Created before this time (RFC 3339).
    created_to: Option<String>,
    /// Page size, 1..=100 (default 20); searches only.
    #[serde(default)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page; searches only.
    #[serde(default)]
    cursor: Option<String>,
}

impl TaskFilterQuery {
    fn filter(&self) -> Result<TaskFilter, ApiError> {
        let time = |field: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
            v.as_deref()
                .map(|s| {
                    gengate_core::time::parse_rfc3339(s).ok_or_else(|| {
                        ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "invalid_request",
                            format!(
                                "{field} must be an RFC 3339 time such as 2026-12-06T00:00:00Z"
                            ),
                        )
                        .with_field(field)
                    })
                })
                .transpose()
        };
        Ok(TaskFilter {
            user: self.user.clone(),
            status: self.status.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            created_from: time("created_from", &self.created_from)?,
            created_to: time("created_to", &self.created_to)?,
        })
    }
}

/// A task with its owner, as an admin sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AdminTaskView {
    user_id: i64,
    #[serde(flatten)]
    task: TaskView,
}

/// A page of tasks across users, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AdminTaskPage {
    data: Vec<AdminTaskView>,
    next_cursor: Option<String>,
}

/// Search tasks across users by owner, status, model, provider and time.
#[utoipa::path(get, path = "/v1/admin/tasks", tag = "admin", params(TaskFilterQuery),
    responses((status = 200, body = AdminTaskPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn search_tasks(
    State(app): State<App>,
    _admin: Admin,
    AppQuery(q): AppQuery<TaskFilterQuery>,
) -> Result<Json<AdminTaskPage>, ApiError> {
    let filter = q.filter()?;
    let (tasks, next_cursor) = app
        .admin
        .search_tasks(&filter, q.cursor.clone(), q.limit)
        .await?;
    Ok(Json(AdminTaskPage {
        data: tasks
            .iter()
            .map(|t| AdminTaskView {
                user_id: t.user_id,
                task: TaskView::new(t, app.tasks.queue_info(t), app.auth.media_urls()),
            })
            .collect(),
        next_cursor,
    }))
}

/// What a bulk cancel did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BulkCancelView {
    canceled: u64,
    /// Matched, but finished before the cancel reached them.
    already_finished: u64,
}

/// Cancel every unfinished task matching the filter (at most 10,000);
/// each is refunded as its model says. The body's filters are those of the
/// search; at least one is required.
#[utoipa::path(post, path = "/v1/admin/tasks/cancel", tag = "admin", request_body = TaskFilterQuery,
    responses((status = 200, body = BulkCancelView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn cancel_tasks(
    State(app): State<App>,
    Admin(admin): Admin,
    AppJson(q): AppJson<TaskFilterQuery>,
) -> Result<Json<BulkCancelView>, ApiError> {
    if q.limit.is_some() || q.cursor.is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "a bulk cancel takes filters only, no limit or cursor",
        ));
    }
    let filter = q.filter()?;
    let detail = serde_json::json!({
        "user": q.user, "status": q.status, "model": q.model, "provider": q.provider,
        "created_from": q.created_from, "created_to": q.created_to,
    });
    if detail
        .as_object()
        .is_some_and(|o| o.values().all(serde_json::Value::is_null))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "name at least one filter: cancelling every task takes one filter per provider",
        ));
    }
    let done = app.admin.cancel_tasks(&admin, &filter, detail).await?;
    Ok(Json(BulkCancelView {
        canceled: done.canceled,
        already_finished: done.finished,
    }))
}

/// Take a task out of the public gallery.
#[utoipa::path(post, path = "/v1/admin/tasks/{id}/hide", tag = "admin",
    params(("id" = String, Path, description = "Task id (tsk_…)")),
    responses((status = 200, body = AdminTaskView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn hide_task(
    State(app): State<App>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<AdminTaskView>, ApiError> {
    let t = app.admin.hide_task(&admin, &id).await?;
    Ok(Json(AdminTaskView {
        user_id: t.user_id,
        task: TaskView::new(&t, app.tasks.queue_info(&t), app.auth.media_urls()),
    }))
}

/// Run a failed or canceled task again as a new task of its owner (held and
/// limited as any create). Retrying the same task again answers the same
/// new task.
#[utoipa::path(post, path = "/v1/admin/tasks/{id}/retry", tag = "admin",
    params(("id" = String, Path, description = "Task id (tsk_…)")),
    responses((status = 201, body = AdminTaskView), (status = 200, body = AdminTaskView, description = "Retried before: the same new task"),
        (status = 401, body = ErrorBody), (status = 402, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn retry_task(
    State(app): State<App>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<AdminTaskView>), ApiError> {
    let placed = app.admin.retry_task(&admin, &id).await?;
    let status = if placed.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(AdminTaskView {
            user_id: placed.task.user_id,
            task: TaskView::new(&placed.task, placed.queue, app.auth.media_urls()),
        }),
    ))
}

/// Copy again the outputs of a task that failed with `output_copy_failed`
/// (the provider's result is still on it): it goes back to `storing`, then
/// `succeeded`. Not charged again: its credits were refunded when it failed.
#[utoipa::path(post, path = "/v1/admin/tasks/{id}/recopy", tag = "admin",
    params(("id" = String, Path, description = "Task id (tsk_…)")),
    responses((status = 202, body = AdminTaskView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn recopy_task(
    State(app): State<App>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<AdminTaskView>), ApiError> {
    let t = app.admin.recopy_task(&admin, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AdminTaskView {
            user_id: t.user_id,
            task: TaskView::new(&t, app.tasks.queue_info(&t), app.auth.media_urls()),
        }),
    ))
}

/// Pause a provider entry on every node: its queued tasks wait (running
/// ones go on) until it is resumed.
#[utoipa::path(post, path = "/v1/admin/providers/{name}/pause", tag = "admin",
    params(("name" = String, Path, description = "The provider entry")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn pause_provider(
    State(app): State<App>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.admin.pause_provider(&admin, &name, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resume a paused provider entry.
#[utoipa::path(post, path = "/v1/admin/providers/{name}/resume", tag = "admin",
    params(("name" = String, Path, description = "The provider entry")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn resume_provider(
    State(app): State<App>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.admin.pause_provider(&admin, &name, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
