//! The statements of the shared store and the small reads every call is
//! made of: the text of each statement (`?` placeholders, which the
//! PostgreSQL engine numbers), the listing and the conditional task update
//! built from their filters, and reads of tasks and single values.

use gengate_core::Task;

use super::engine::Engine;
use crate::rows::{Arg, Columns, args, delivery_columns, json, task_columns, task_from};
use crate::store::{Change, Fence, ListQuery, holds_lease};

pub(super) const INSERT_TASK: &str = concat!(
    "INSERT INTO tasks (",
    task_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);
pub(super) const TASK_BY_ID: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ?");
pub(super) const ACTIVE_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE status IN ('queued', 'submitting', 'running', 'storing') ORDER BY id"
);
pub(super) const OVERDUE_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE status IN ('queued', 'submitting', 'running', 'storing') \
     AND deadline_at <= ? ORDER BY deadline_at LIMIT ?"
);
pub(super) const CLAIM_CANDIDATES: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE provider = ? AND status = 'queued' AND not_before <= ? AND deadline_at > ? \
     ORDER BY priority DESC, id LIMIT ? FOR UPDATE SKIP LOCKED"
);
pub(super) const INSERT_DELIVERY: &str = "INSERT INTO webhook_deliveries \
     (task_id, user_id, url, event, status, attempts, next_attempt_at, created_at) \
     VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)";
pub(super) const DUE_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? \
     ORDER BY next_attempt_at LIMIT ?"
);
pub(super) const TASK_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE task_id = ? ORDER BY id"
);
/// The tasks holding one of a provider's slots (`Status::holds_slot`).
pub(super) const SLOTS_IN_USE: &str =
    "SELECT COUNT(*) FROM tasks WHERE provider = ? AND status IN ('submitting', 'running')";
pub(super) const LEASED: &str = "status IN ('submitting', 'running', 'storing')";
/// Leases renewed per statement.
pub(super) const RENEW_BATCH: usize = 256;

/// The SQL of a listing, with only the filters given, so that each filter
/// combination can use its index (`tasks_by_user`, `tasks_gallery`).
pub(super) fn list_sql<E: Engine>(q: &ListQuery) -> (String, Vec<Arg>) {
    let mut clauses: Vec<&str> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    if let Some(user) = q.user_id {
        clauses.push("user_id = ?");
        args.push(user.into());
    }
    if q.gallery {
        clauses.push("public = TRUE AND status = 'succeeded'");
    }
    if let Some(status) = q.status {
        clauses.push("status = ?");
        args.push(status.as_str().into());
    }
    if let Some(model) = &q.model {
        clauses.push("model = ?");
        args.push(model.as_str().into());
    }
    if let Some(before) = &q.before {
        clauses.push("id < ?");
        args.push(E::lookup(before).into());
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    args.push(q.limit.into());
    (
        format!(
            "SELECT {} FROM tasks{filter} ORDER BY id DESC LIMIT ?",
            task_columns!()
        ),
        args,
    )
}

/// The conditional write of a task: its version, and for [`Fence::Lease`]
/// this node's unexpired lease (or none). The lease follows the status:
/// taken or renewed by the node's own writes, kept by others' writes while
/// the task still holds one, and dropped when it no longer does.
pub(super) fn update_sql<E: Engine>(
    t: &Task,
    fence: Fence,
    me: &str,
    lease_ms: i64,
) -> (String, Vec<Arg>) {
    let now = E::DB_NOW;
    let mut args = args![
        t.provider.as_str(),
        t.status.as_str(),
        json(&t.outputs),
        t.error.as_ref().map(json),
        t.attempts,
        t.provider_task_id.clone(),
        f64::from(t.progress),
        t.not_before,
        t.started_at,
        t.finished_at,
        t.updated_at,
        t.version,
        t.public,
    ];
    let lease = match (holds_lease(t.status), fence) {
        (true, Fence::Lease) => {
            args.extend(args![me, lease_ms]);
            format!(", lease_owner = ?, lease_until = {now} + ?")
        }
        (true, Fence::Version) => String::new(),
        (false, _) => ", lease_owner = NULL, lease_until = NULL".to_owned(),
    };
    args.extend(args![t.id.as_str(), t.version - 1]);
    let guard = if fence == Fence::Lease {
        args.push(me.into());
        format!(" AND (lease_owner IS NULL OR (lease_owner = ? AND lease_until > {now}))")
    } else {
        String::new()
    };
    (
        format!(
            "UPDATE tasks SET provider = ?, status = ?, outputs = ?, error = ?, attempts = ?, \
             provider_task_id = ?, progress = ?, not_before = ?, started_at = ?, finished_at = ?, \
             updated_at = ?, version = ?, public = ?{lease} WHERE id = ? AND version = ?{guard}"
        ),
        args,
    )
}

/// The tasks a statement of [`task_columns!`] selects.
pub(super) async fn tasks<E: Engine>(
    c: &mut E::Connection,
    sql: &str,
    args: Vec<Arg>,
) -> sqlx::Result<Vec<Task>> {
    E::rows(c, sql, args).await?.iter().map(task_from).collect()
}

/// The task with this id, if there is one.
pub(super) async fn task_by_id<E: Engine>(
    c: &mut E::Connection,
    id: &str,
) -> sqlx::Result<Option<Task>> {
    E::row(c, TASK_BY_ID, args![E::lookup(id)])
        .await?
        .as_ref()
        .map(task_from)
        .transpose()
}

/// The integer in the first column of the one row a statement selects.
pub(super) async fn scalar<E: Engine>(
    c: &mut E::Connection,
    sql: &str,
    args: Vec<Arg>,
) -> sqlx::Result<i64> {
    E::row(c, sql, args)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?
        .int(0)
}

/// The change a write of `t` makes, leaving its lease with `owner`.
pub(super) fn change_of(t: &Task, owner: Option<String>) -> Change {
    Change {
        task_id: t.id.clone(),
        version: t.version,
        user_id: t.user_id,
        status: t.status,
        owner,
    }
}
