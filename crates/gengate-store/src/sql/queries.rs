//! The statements of the shared store and the small reads every call is
//! made of: the text of each statement (`?` placeholders, which the
//! PostgreSQL engine numbers), the listing and the conditional task update
//! built from their filters, and reads of tasks and single values.

use gengate_core::Task;

use super::engine::Engine;
use crate::listing::list_query;
use crate::rows::{
    Arg, Columns, args, delivery_columns, task_columns, task_from, task_update_args, task_updates,
};
use crate::store::{Change, Fence, ListQuery, holds_lease};

pub(super) const INSERT_TASK: &str = concat!(
    "INSERT INTO tasks (",
    task_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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

/// The listing of [`crate::listing`]; PostgreSQL's gallery index is on
/// `public`, MySQL's on `(public, status, id)`.
pub(super) fn list_sql<E: Engine>(q: &ListQuery) -> (String, Vec<Arg>) {
    list_query(q, "public = TRUE", |before| E::lookup(before).into())
}

/// The conditional write of a task: its version, and for [`Fence::Lease`]
/// this node's unexpired lease (or none). The lease follows the status:
/// taken or renewed by the node's own writes, kept by others' writes while
/// the task still holds one, and dropped when it no longer does. With
/// `close`, it also marks the task's end as accounted for (`closed`).
pub(super) fn update_sql<E: Engine>(
    t: &Task,
    fence: Fence,
    me: &str,
    lease_ms: i64,
    close: bool,
) -> (String, Vec<Arg>) {
    let now = E::DB_NOW;
    let mut args = task_update_args(t);
    let closed = if close { ", closed = TRUE" } else { "" };
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
            "UPDATE tasks SET {}{closed}{lease} WHERE id = ? AND version = ?{guard}",
            task_updates!()
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
