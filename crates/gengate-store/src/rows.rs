//! The rows every backend reads and writes, described once: the columns of
//! each row type, its decoder, and a task's values in column order. The
//! decoders read through [`Columns`], which the SQLite rows and the sqlx rows
//! (PostgreSQL, MySQL) implement, so a column added to a row type is decoded
//! the same way everywhere. The statements stay with each backend.

use std::borrow::Cow;

use gengate_core::{Billing, Output, Role, Status, Task, TaskError};

use crate::store::{Caller, Change, Delivery, KeyInfo, NodeInfo, StatusCount};

/// The columns of a task row, in the order [`task_from`] reads them. A
/// macro so that statements can be built with `concat!` at compile time.
macro_rules! task_columns {
    () => {
        "id, user_id, model, provider, status, input, outputs, error, public, priority, attempts, \
         max_attempts, provider_task_id, progress, not_before, deadline_at, created_at, started_at, \
         finished_at, updated_at, version, webhook_url, billing"
    };
}
pub(crate) use task_columns;

/// The columns of a webhook delivery row, in the order [`delivery_from`]
/// reads them.
macro_rules! delivery_columns {
    () => {
        "id, task_id, user_id, url, event, status, attempts, next_attempt_at, last_status, \
         last_error, created_at, delivered_at"
    };
}
pub(crate) use delivery_columns;

/// What a task update writes (everything that may change after a create),
/// as `SET` assignments with their values in [`task_update_args`].
macro_rules! task_updates {
    () => {
        "provider = ?, status = ?, outputs = ?, error = ?, attempts = ?, provider_task_id = ?, \
         progress = ?, not_before = ?, started_at = ?, finished_at = ?, updated_at = ?, \
         version = ?, public = ?"
    };
}
pub(crate) use task_updates;

/// The key rows [`key_from`] reads, with their user's name; callers append
/// their own `WHERE` or `ORDER BY`.
pub(crate) const KEY_SELECT: &str = "SELECT k.id, k.user_id, u.name, k.role, k.prefix, k.created_at, k.revoked_at \
     FROM api_keys k JOIN users u ON u.id = k.user_id";

/// One statement parameter, whatever the driver. Integers are all bound as
/// 64-bit: every engine assigns them to narrower columns, and it keeps one
/// variant per kind.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
    Bool(bool),
    Text(String),
    OptText(Option<String>),
}

macro_rules! arg_from {
    ($($t:ty => $v:ident $(via $conv:path)?),* $(,)?) => {$(
        impl From<$t> for Arg {
            fn from(v: $t) -> Self {
                Arg::$v($($conv)?(v))
            }
        }
    )*};
}
arg_from! {
    i64 => Int,
    i32 => Int via i64::from,
    u32 => Int via i64::from,
    Option<i64> => OptInt,
    f64 => Float,
    bool => Bool,
    String => Text,
    Option<String> => OptText,
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}

impl From<Cow<'_, str>> for Arg {
    fn from(v: Cow<'_, str>) -> Self {
        Arg::Text(v.into_owned())
    }
}

/// A `Vec<Arg>` of the values given, each converted with [`Arg::from`].
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$($crate::rows::Arg::from($a)),*] };
}
pub(crate) use args;

/// A task field as stored in its JSON column.
pub(crate) fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("task fields always serialize")
}

/// A task's values in the order of [`task_columns!`], for its insert.
pub(crate) fn task_args(t: &Task) -> Vec<Arg> {
    args![
        t.id.as_str(),
        t.user_id,
        t.model.as_str(),
        t.provider.as_str(),
        t.status.as_str(),
        json(&t.input),
        json(&t.outputs),
        t.error.as_ref().map(json),
        t.public,
        t.priority,
        t.attempts,
        t.max_attempts,
        t.provider_task_id.clone(),
        f64::from(t.progress),
        t.not_before,
        t.deadline_at,
        t.created_at,
        t.started_at,
        t.finished_at,
        t.updated_at,
        t.version,
        t.webhook_url.clone(),
        t.billing.as_ref().map(json),
    ]
}

/// A task's values for the assignments of [`task_updates!`].
pub(crate) fn task_update_args(t: &Task) -> Vec<Arg> {
    args![
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
    ]
}

/// A result row read by column position: what the decoders below need of a
/// driver's row. `Error` is the driver's own, so that a decoder can run
/// inside the driver's row callbacks.
pub(crate) trait Columns {
    type Error;

    fn text(&self, i: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error>;
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, Self::Error>;
    /// An `INTEGER` column (PostgreSQL will not widen it to 64 bits itself).
    fn int32(&self, i: usize) -> Result<i32, Self::Error>;
    fn opt_int32(&self, i: usize) -> Result<Option<i32>, Self::Error>;
    fn float(&self, i: usize) -> Result<f64, Self::Error>;
    fn boolean(&self, i: usize) -> Result<bool, Self::Error>;
    /// The error for a stored value no row may hold (a bug or tampering),
    /// which the backend reports as [`crate::StoreError::Corrupt`].
    fn corrupt(what: String) -> Self::Error;
}

fn from_json<T: serde::de::DeserializeOwned, R: Columns>(
    text: &str,
    what: &str,
) -> Result<T, R::Error> {
    serde_json::from_str(text).map_err(|e| R::corrupt(format!("{what}: {e}")))
}

fn unsigned<T: TryFrom<i32>, R: Columns>(v: i32, what: &str) -> Result<T, R::Error> {
    T::try_from(v).map_err(|_| R::corrupt(format!("{what} out of range: {v}")))
}

fn status<R: Columns>(r: &R, i: usize) -> Result<Status, R::Error> {
    let status = r.text(i)?;
    Status::parse(&status).ok_or_else(|| R::corrupt(format!("status {status:?}")))
}

/// A row of [`task_columns!`].
pub(crate) fn task_from<R: Columns>(r: &R) -> Result<Task, R::Error> {
    Ok(Task {
        id: r.text(0)?,
        user_id: r.int(1)?,
        model: r.text(2)?,
        provider: r.text(3)?,
        status: status(r, 4)?,
        input: from_json::<_, R>(&r.text(5)?, "input")?,
        outputs: from_json::<Vec<Output>, R>(&r.text(6)?, "outputs")?,
        error: r
            .opt_text(7)?
            .map(|e| from_json::<TaskError, R>(&e, "error"))
            .transpose()?,
        public: r.boolean(8)?,
        priority: r.int32(9)?,
        attempts: unsigned::<_, R>(r.int32(10)?, "attempts")?,
        max_attempts: unsigned::<_, R>(r.int32(11)?, "max_attempts")?,
        provider_task_id: r.opt_text(12)?,
        progress: r.float(13)? as f32,
        not_before: r.int(14)?,
        deadline_at: r.int(15)?,
        created_at: r.int(16)?,
        started_at: r.opt_int(17)?,
        finished_at: r.opt_int(18)?,
        updated_at: r.int(19)?,
        version: r.int(20)?,
        webhook_url: r.opt_text(21)?,
        billing: r
            .opt_text(22)?
            .map(|b| from_json::<Billing, R>(&b, "billing"))
            .transpose()?,
    })
}

/// A row of [`KEY_SELECT`].
pub(crate) fn key_from<R: Columns>(r: &R) -> Result<KeyInfo, R::Error> {
    let role = r.text(3)?;
    Ok(KeyInfo {
        id: r.int(0)?,
        user_id: r.int(1)?,
        user_name: r.text(2)?,
        role: Role::parse(&role).ok_or_else(|| R::corrupt(format!("role {role:?}")))?,
        prefix: r.text(4)?,
        created_at: r.int(5)?,
        revoked_at: r.opt_int(6)?,
    })
}

/// A row of [`KEY_SELECT`], as the caller its key authenticates.
pub(crate) fn caller_from<R: Columns>(r: &R) -> Result<Caller, R::Error> {
    let k = key_from(r)?;
    Ok(Caller {
        key_id: k.id,
        user_id: k.user_id,
        user_name: k.user_name,
        role: k.role,
        token: None,
    })
}

/// A row of [`delivery_columns!`].
pub(crate) fn delivery_from<R: Columns>(r: &R) -> Result<Delivery, R::Error> {
    Ok(Delivery {
        id: r.int(0)?,
        task_id: r.text(1)?,
        user_id: r.int(2)?,
        url: r.text(3)?,
        event: r.text(4)?,
        status: r.text(5)?,
        attempts: unsigned::<_, R>(r.int32(6)?, "attempts")?,
        next_attempt_at: r.int(7)?,
        last_status: r
            .opt_int32(8)?
            .map(|s| unsigned::<_, R>(s, "last_status"))
            .transpose()?,
        last_error: r.opt_text(9)?,
        created_at: r.int(10)?,
        delivered_at: r.opt_int(11)?,
    })
}

/// `provider, status, COUNT(*)`.
pub(crate) fn status_count_from<R: Columns>(r: &R) -> Result<StatusCount, R::Error> {
    Ok(StatusCount {
        provider: r.text(0)?,
        status: status(r, 1)?,
        count: r.int(2)?.unsigned_abs(),
    })
}

/// `id, version, user_id, status, lease_owner, updated_at` of a task: the
/// change and when it was made.
pub(crate) fn change_from<R: Columns>(r: &R) -> Result<(Change, i64), R::Error> {
    Ok((
        Change {
            task_id: r.text(0)?,
            version: r.int(1)?,
            user_id: r.int(2)?,
            status: status(r, 3)?,
            owner: r.opt_text(4)?,
        },
        r.int(5)?,
    ))
}

/// `id, seen_at, clock_offset_ms, started_at` of a node.
pub(crate) fn node_from<R: Columns>(r: &R) -> Result<NodeInfo, R::Error> {
    Ok(NodeInfo {
        id: r.text(0)?,
        seen_at: r.int(1)?,
        clock_offset_ms: r.int(2)?,
        started_at: r.int(3)?,
    })
}
