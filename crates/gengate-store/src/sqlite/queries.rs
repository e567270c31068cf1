//! The statements of the SQLite store, each prepared once per connection,
//! and the listing built from its filters.

use gengate_core::Task;
use rusqlite::Connection;
use rusqlite::types::Value;

use super::rows::first;
use crate::listing::list_query;
use crate::rows::{Arg, delivery_columns, task_columns, task_from, task_updates};
use crate::store::{ListQuery, Result};

pub(super) const TASK_BY_ID: &str =
    concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ?1");
pub(super) const INSERT_TASK: &str = concat!(
    "INSERT INTO tasks (",
    task_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19, ?20, ?21, ?22, ?23)"
);
/// The conditional write of a task: only over the version its writer read.
pub(super) const UPDATE_TASK: &str = concat!(
    "UPDATE tasks SET ",
    task_updates!(),
    " WHERE id = ? AND version = ?"
);
pub(super) const ACTIVE_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE status IN ('queued', 'submitting', 'running', 'storing') ORDER BY id"
);
pub(super) const OVERDUE_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE status IN ('queued', 'submitting', 'running', 'storing') \
     AND deadline_at <= ?1 ORDER BY deadline_at LIMIT ?2"
);
/// The rows [`crate::rows::change_from`] reads; SQLite holds no leases, so
/// no change has an owner.
pub(super) const CHANGES_SINCE: &str = "SELECT id, version, user_id, status, NULL, updated_at \
     FROM tasks WHERE updated_at >= ?1 ORDER BY updated_at LIMIT ?2";
pub(super) const STATUS_COUNTS: &str =
    "SELECT provider, status, COUNT(*) FROM tasks GROUP BY provider, status";
pub(super) const INSERT_DELIVERY: &str = "INSERT INTO webhook_deliveries \
     (task_id, user_id, url, event, status, attempts, next_attempt_at, created_at) \
     VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)";
pub(super) const DUE_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?1 \
     ORDER BY next_attempt_at LIMIT ?2"
);
pub(super) const TASK_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE task_id = ?1 ORDER BY id"
);
pub(super) const IDEMPOTENCY_RECORD: &str = "SELECT request_hash, task_id, created_at \
     FROM idempotency_keys WHERE user_id = ?1 AND key = ?2";
pub(super) const INSERT_IDEMPOTENCY: &str = "INSERT INTO idempotency_keys \
     (user_id, key, request_hash, task_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)";

/// The task with this id, if there is one.
pub(super) fn task_by_id(c: &Connection, id: &str) -> Result<Option<Task>> {
    first(c, TASK_BY_ID, [id], |r| task_from(r))
}

/// The SQL of a listing, with only the filters given, so that SQLite can
/// use `tasks_by_user` (user listings) or `tasks_gallery` (the gallery) and
/// start at the cursor instead of scanning. One statement text per filter
/// combination, each prepared once per connection.
pub fn list_sql(q: &ListQuery) -> (String, Vec<rusqlite::types::Value>) {
    // `public = 1`, as the partial index `tasks_gallery` says it.
    let (sql, args) = list_query(q, "public = 1", |before| Arg::from(before));
    (sql, args.into_iter().map(value).collect())
}

/// A parameter as an owned SQLite value.
fn value(arg: Arg) -> Value {
    match arg {
        Arg::Int(v) => Value::Integer(v),
        Arg::Float(v) => Value::Real(v),
        Arg::Bool(v) => Value::Integer(v.into()),
        Arg::Text(v) => Value::Text(v),
        Arg::OptInt(v) => v.map_or(Value::Null, Value::Integer),
        Arg::OptText(v) => v.map_or(Value::Null, Value::Text),
    }
}
