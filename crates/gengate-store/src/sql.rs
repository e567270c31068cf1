//! The shared-store backends (PostgreSQL, MySQL/MariaDB): one [`Store`]
//! implementation, written once over [`Engine`], which each backend
//! implements for its sqlx driver with the little that differs between the
//! two (placeholders, the clock expression, insert-if-absent, read locks,
//! migration locks, sizing facts, pushed changes).
//!
//! Statements are written with `?` placeholders; PostgreSQL numbers them.
//! Every task write is conditional on the version its writer read and, for
//! a node's own work, on that node's lease. Lease times are the database's
//! clock, so nodes whose clocks disagree still agree on who holds what.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use gengate_core::task::NewTask;
use gengate_core::{Event, Output, Role, Status, Task, TaskError, TaskId};
use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::{ColumnIndex, ConnectOptions, Connection, Database, Decode, Pool, Row, Type};
use tokio::sync::mpsc;

use crate::{
    Caller, Change, Created, DbFacts, Delivery, Fence, IdempotencyKey, KeyInfo, ListQuery,
    NodeInfo, OpenOptions, PoolStats, Result, StatusCount, Store, StoreError, delivery_columns,
    holds_lease, task_columns,
};

/// One statement parameter. Integers are all bound as 64-bit: both engines
/// assign them to narrower columns, and it keeps one variant per kind.
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

macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$(Arg::from($a)),*] };
}

/// Binds `args` in order: the one place the parameter kinds meet a driver.
pub(crate) fn bind<'q, DB>(
    mut q: sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    i64: sqlx::Encode<'q, DB> + Type<DB>,
    f64: sqlx::Encode<'q, DB> + Type<DB>,
    bool: sqlx::Encode<'q, DB> + Type<DB>,
    String: sqlx::Encode<'q, DB> + Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB>,
    Option<String>: sqlx::Encode<'q, DB>,
{
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(v),
            Arg::OptInt(v) => q.bind(v),
            Arg::Float(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
        };
    }
    q
}

/// Typed column reads, so that the row decoders below serve both engines.
pub(crate) trait Cols {
    fn text(&self, i: usize) -> sqlx::Result<String>;
    fn opt_text(&self, i: usize) -> sqlx::Result<Option<String>>;
    fn int(&self, i: usize) -> sqlx::Result<i64>;
    fn opt_int(&self, i: usize) -> sqlx::Result<Option<i64>>;
    /// An `INTEGER` column (PostgreSQL will not widen it to 64 bits itself).
    fn int32(&self, i: usize) -> sqlx::Result<i32>;
    fn opt_int32(&self, i: usize) -> sqlx::Result<Option<i32>>;
    fn float(&self, i: usize) -> sqlx::Result<f64>;
    fn boolean(&self, i: usize) -> sqlx::Result<bool>;
}

/// How an engine's rows hold text (the one column type the drivers decode
/// differently).
pub(crate) trait TextCol {
    fn text_at(&self, i: usize) -> sqlx::Result<Option<String>>;
}

impl<R> Cols for R
where
    R: Row + TextCol,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, i: usize) -> sqlx::Result<String> {
        self.text_at(i)?
            .ok_or_else(|| corrupt(format!("column {i} is NULL")))
    }
    fn opt_text(&self, i: usize) -> sqlx::Result<Option<String>> {
        self.text_at(i)
    }
    fn int(&self, i: usize) -> sqlx::Result<i64> {
        self.try_get(i)
    }
    fn opt_int(&self, i: usize) -> sqlx::Result<Option<i64>> {
        self.try_get(i)
    }
    fn int32(&self, i: usize) -> sqlx::Result<i32> {
        self.try_get(i)
    }
    fn opt_int32(&self, i: usize) -> sqlx::Result<Option<i32>> {
        self.try_get(i)
    }
    fn float(&self, i: usize) -> sqlx::Result<f64> {
        self.try_get(i)
    }
    fn boolean(&self, i: usize) -> sqlx::Result<bool> {
        self.try_get(i)
    }
}

/// What sizes a database, as an engine reports it.
pub(crate) struct ServerFacts {
    pub(crate) engine: String,
    pub(crate) max_connections: Option<u64>,
    pub(crate) memory: Vec<(String, u64)>,
}

/// What differs between the engines. Implemented for the sqlx drivers'
/// database types; everything else is written once, in this module.
#[async_trait]
pub(crate) trait Engine: Database<Row: Cols> {
    /// The database's clock in Unix milliseconds, as a `BIGINT` expression.
    const DB_NOW: &'static str;
    /// Appended to a `SELECT` to hold read locks on its rows until commit.
    const SHARE_LOCK: &'static str;
    /// The schema this build knows, one script per version.
    const MIGRATIONS: &'static [(i64, &'static str)];
    /// The schema (database) that `schema_migrations` lives in.
    const CURRENT_SCHEMA: &'static str;
    /// Run on each new connection: READ COMMITTED, whatever the server's
    /// default. Every statement then sees what committed before it, which
    /// claims and replays rely on, and InnoDB takes no gap locks, which
    /// otherwise make heartbeats, claims and writes deadlock each other.
    const SESSION_SETUP: &'static [&'static str];
    /// The URL parameter that names a CA file (`sslrootcert`, `ssl-ca`).
    const CA_PARAM: &'static str;

    /// `options` trusting the CA certificates in `path` as well.
    fn trust_ca(options: Options<Self>, path: &std::path::Path) -> Options<Self>
    where
        Self: Sized;

    /// An insert that does nothing when the row exists (reporting 0 rows);
    /// `rest` is `table (columns) VALUES (…)`.
    fn insert_ignore(rest: &str) -> String;
    /// Records a heartbeat: parameters node id, the node's clock.
    fn upsert_node() -> String;
    /// `s` made comparable with an ASCII-only column.
    fn lookup(s: &str) -> Cow<'_, str> {
        Cow::Borrowed(s)
    }

    async fn rows(
        c: &mut Self::Connection,
        sql: &str,
        args: Vec<Arg>,
    ) -> sqlx::Result<Vec<Self::Row>>;
    async fn row(
        c: &mut Self::Connection,
        sql: &str,
        args: Vec<Arg>,
    ) -> sqlx::Result<Option<Self::Row>>;
    /// Runs a statement; returns the rows it matched.
    async fn exec(c: &mut Self::Connection, sql: &str, args: Vec<Arg>) -> sqlx::Result<u64>;
    /// Runs an insert; returns the `id` the database generated.
    async fn insert_id(c: &mut Self::Connection, sql: &str, args: Vec<Arg>) -> sqlx::Result<i64>;
    /// Announces a committed task change to the other nodes, if the engine
    /// can (in the same transaction as the change).
    async fn notify(c: &mut Self::Connection, change: &Change) -> sqlx::Result<()> {
        let _ = (c, change);
        Ok(())
    }

    /// Serializes migration runs across processes (held by the connection).
    async fn lock_migrations(c: &mut Self::Connection) -> Result<()>;
    async fn unlock_migrations(c: &mut Self::Connection) -> Result<()>;
    /// Applies one migration script and records its version, in one
    /// transaction where the engine's DDL allows it.
    async fn apply_migration(c: &mut Self::Connection, version: i64, sql: &str) -> Result<()>;

    async fn server_facts(c: &mut Self::Connection) -> sqlx::Result<ServerFacts>;
    /// Changes pushed by the database, where it can push them; listening
    /// before it returns, so that no change committed after it is missed.
    async fn subscribe(pool: &Pool<Self>) -> Result<Option<mpsc::Receiver<Change>>> {
        let _ = pool;
        Ok(None)
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(what.to_string().into())
}

/// Maps a driver error to what the caller can do about it.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    use sqlx::error::ErrorKind;
    match e {
        sqlx::Error::Database(d) => match d.kind() {
            ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation => StoreError::Conflict {
                constraint: d
                    .constraint()
                    .map_or_else(|| d.message().to_owned(), str::to_owned),
            },
            _ => StoreError::Unavailable(d.to_string()),
        },
        sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
        sqlx::Error::Configuration(_) => StoreError::Config(e.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// A deadlock or serialization failure: the transaction was rolled back
/// and running it again may well succeed.
/// A deadlock victim, a serialization failure or a lock wait that timed
/// out (PostgreSQL 55P03, MySQL 1205 as SQLSTATE HY000 with that number):
/// the same transaction may well go through when run again.
fn retryable(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    matches!(d.code().as_deref(), Some("40001" | "40P01" | "55P03"))
        || d.message().contains("Lock wait timeout exceeded")
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("task fields always serialize")
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> sqlx::Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("{what}: {e}")))
}

fn unsigned<T: TryFrom<i32>>(v: i32, what: &str) -> sqlx::Result<T> {
    T::try_from(v).map_err(|_| corrupt(format!("{what} out of range: {v}")))
}

pub(crate) fn task_from_row(r: &impl Cols) -> sqlx::Result<Task> {
    let status = r.text(4)?;
    Ok(Task {
        id: r.text(0)?,
        user_id: r.int(1)?,
        model: r.text(2)?,
        provider: r.text(3)?,
        status: Status::parse(&status).ok_or_else(|| corrupt(format!("status {status:?}")))?,
        input: from_json(&r.text(5)?, "input")?,
        outputs: from_json::<Vec<Output>>(&r.text(6)?, "outputs")?,
        error: r
            .opt_text(7)?
            .map(|e| from_json::<TaskError>(&e, "error"))
            .transpose()?,
        public: r.boolean(8)?,
        priority: r.int32(9)?,
        attempts: unsigned(r.int32(10)?, "attempts")?,
        max_attempts: unsigned(r.int32(11)?, "max_attempts")?,
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
    })
}

fn key_from_row(r: &impl Cols) -> sqlx::Result<KeyInfo> {
    let role = r.text(3)?;
    Ok(KeyInfo {
        id: r.int(0)?,
        user_id: r.int(1)?,
        user_name: r.text(2)?,
        role: Role::parse(&role).ok_or_else(|| corrupt(format!("role {role:?}")))?,
        prefix: r.text(4)?,
        created_at: r.int(5)?,
        revoked_at: r.opt_int(6)?,
    })
}

fn delivery_from_row(r: &impl Cols) -> sqlx::Result<Delivery> {
    Ok(Delivery {
        id: r.int(0)?,
        task_id: r.text(1)?,
        user_id: r.int(2)?,
        url: r.text(3)?,
        event: r.text(4)?,
        status: r.text(5)?,
        attempts: unsigned(r.int32(6)?, "attempts")?,
        next_attempt_at: r.int(7)?,
        last_status: r
            .opt_int32(8)?
            .map(|s| unsigned(s, "last_status"))
            .transpose()?,
        last_error: r.opt_text(9)?,
        created_at: r.int(10)?,
        delivered_at: r.opt_int(11)?,
    })
}

fn task_args(t: &Task) -> Vec<Arg> {
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
    ]
}

const INSERT_TASK: &str = concat!(
    "INSERT INTO tasks (",
    task_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);
const TASK_BY_ID: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ?");
const ACTIVE_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE status IN ('queued', 'submitting', 'running', 'storing') ORDER BY id"
);
const OVERDUE_TASKS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE status IN ('queued', 'submitting', 'running', 'storing') \
     AND deadline_at <= ? ORDER BY deadline_at LIMIT ?"
);
const CLAIM_CANDIDATES: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE provider = ? AND status = 'queued' AND not_before <= ? AND deadline_at > ? \
     ORDER BY priority DESC, id LIMIT ? FOR UPDATE SKIP LOCKED"
);
const KEY_SELECT: &str = "SELECT k.id, k.user_id, u.name, k.role, k.prefix, k.created_at, k.revoked_at \
     FROM api_keys k JOIN users u ON u.id = k.user_id";
const INSERT_DELIVERY: &str = "INSERT INTO webhook_deliveries \
     (task_id, user_id, url, event, status, attempts, next_attempt_at, created_at) \
     VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)";
const DUE_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? \
     ORDER BY next_attempt_at LIMIT ?"
);
const TASK_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhook_deliveries WHERE task_id = ? ORDER BY id"
);
/// The tasks holding one of a provider's slots (`Status::holds_slot`).
const SLOTS_IN_USE: &str =
    "SELECT COUNT(*) FROM tasks WHERE provider = ? AND status IN ('submitting', 'running')";
const LEASED: &str = "status IN ('submitting', 'running', 'storing')";
/// Leases renewed per statement.
const RENEW_BATCH: usize = 256;

/// The SQL of a listing, with only the filters given, so that each filter
/// combination can use its index (`tasks_by_user`, `tasks_gallery`).
fn list_sql<E: Engine>(q: &ListQuery) -> (String, Vec<Arg>) {
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
fn update_sql<E: Engine>(t: &Task, fence: Fence, me: &str, lease_ms: i64) -> (String, Vec<Arg>) {
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

async fn tasks<E: Engine>(
    c: &mut E::Connection,
    sql: &str,
    args: Vec<Arg>,
) -> sqlx::Result<Vec<Task>> {
    E::rows(c, sql, args)
        .await?
        .iter()
        .map(task_from_row)
        .collect()
}

async fn task_by_id<E: Engine>(c: &mut E::Connection, id: &str) -> sqlx::Result<Option<Task>> {
    E::row(c, TASK_BY_ID, args![E::lookup(id)])
        .await?
        .as_ref()
        .map(task_from_row)
        .transpose()
}

async fn scalar<E: Engine>(c: &mut E::Connection, sql: &str, args: Vec<Arg>) -> sqlx::Result<i64> {
    E::row(c, sql, args)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?
        .int(0)
}

/// Writes `t` as [`update_sql`] says; when it was written, queues its
/// webhook (in the same transaction as the result itself: it can be neither
/// lost nor sent for a state that was never stored) and announces it.
async fn update_in<E: Engine>(
    c: &mut E::Connection,
    t: &Task,
    fence: Fence,
    me: &str,
    lease_ms: i64,
) -> sqlx::Result<bool> {
    let (sql, args) = update_sql::<E>(t, fence, me, lease_ms);
    if E::exec(c, &sql, args).await? != 1 {
        return Ok(false);
    }
    if t.status.is_terminal()
        && let Some(url) = &t.webhook_url
    {
        let event = format!("task.{}", t.status.as_str());
        E::exec(
            c,
            INSERT_DELIVERY,
            args![
                t.id.as_str(),
                t.user_id,
                url.as_str(),
                event,
                t.updated_at,
                t.updated_at
            ],
        )
        .await?;
    }
    // The lease after the write, as `update_sql` leaves it.
    let owner = (crate::holds_lease(t.status) && fence == Fence::Lease).then(|| me.to_owned());
    E::notify(c, &change_of(t, owner)).await?;
    Ok(true)
}

fn change_of(t: &Task, owner: Option<String>) -> Change {
    Change {
        task_id: t.id.clone(),
        version: t.version,
        user_id: t.user_id,
        status: t.status,
        owner,
    }
}

/// How one try at a create ended.
enum Creation {
    Done(Box<Created>),
    /// The key is taken by a request with another body.
    Mismatch,
    /// The key's record changed between two statements (purged, deleted,
    /// or taken over by another request): try again.
    Changed,
}

/// One try at a create, in the caller's transaction. The idempotency record
/// is inserted before the task so that concurrent requests with one key,
/// on any node, queue on its row: the first makes the task and the others,
/// once it committed, replay it.
async fn create_in<E: Engine>(
    c: &mut E::Connection,
    new: &NewTask,
    idem: Option<&IdempotencyKey>,
) -> sqlx::Result<Creation> {
    let task = new.clone().into_task();
    if let Some(idem) = idem {
        // Not through `E::lookup`: distinct keys must stay distinct (the API
        // only takes printable ASCII keys).
        let key = idem.key.as_str();
        let inserted = E::exec(
            c,
            &E::insert_ignore(
                "idempotency_keys (user_id, idem_key, request_hash, task_id, created_at) VALUES (?, ?, ?, ?, ?)",
            ),
            args![task.user_id, key, idem.request_hash.as_str(), task.id.as_str(), task.created_at],
        )
        .await?
            == 1;
        if !inserted {
            // Read under a shared lock, and write only when the record
            // expired: the many requests waiting on one fresh record then
            // all replay it, none asking to upgrade its lock (which is
            // where InnoDB's waiters deadlock each other).
            let sql = format!(
                "SELECT request_hash, task_id, created_at FROM idempotency_keys \
                 WHERE user_id = ? AND idem_key = ?{}",
                E::SHARE_LOCK
            );
            let Some(prior) = E::row(c, &sql, args![task.user_id, key]).await? else {
                return Ok(Creation::Changed);
            };
            if prior.int(2)? >= idem.not_before {
                if prior.text(0)? != idem.request_hash {
                    return Ok(Creation::Mismatch);
                }
                let id = prior.text(1)?;
                let task = task_by_id::<E>(c, &id)
                    .await?
                    .ok_or_else(|| corrupt(format!("idempotency key names missing task {id}")))?;
                return Ok(Creation::Done(Box::new(Created {
                    task,
                    replayed: true,
                })));
            }
            // Older than `not_before`, the record counts as absent: this
            // request takes it over, unless another one just did.
            let taken_over = E::exec(
                c,
                "UPDATE idempotency_keys SET request_hash = ?, task_id = ?, created_at = ? \
                 WHERE user_id = ? AND idem_key = ? AND created_at < ?",
                args![
                    idem.request_hash.as_str(),
                    task.id.as_str(),
                    task.created_at,
                    task.user_id,
                    key,
                    idem.not_before,
                ],
            )
            .await?
                == 1;
            if !taken_over {
                return Ok(Creation::Changed);
            }
        }
    }
    E::exec(c, INSERT_TASK, task_args(&task)).await?;
    E::notify(c, &change_of(&task, None)).await?;
    Ok(Creation::Done(Box::new(Created {
        task,
        replayed: false,
    })))
}

/// Creates a key (and its user on first use) in the caller's transaction;
/// returns the key's id and the user's.
async fn create_key_in<E: Engine>(
    c: &mut E::Connection,
    user_name: &str,
    role: Role,
    key_hash: &str,
    prefix: &str,
    now: i64,
) -> sqlx::Result<(i64, i64)> {
    E::exec(
        c,
        &E::insert_ignore("users (name, created_at) VALUES (?, ?)"),
        args![user_name, now],
    )
    .await?;
    let user_id = scalar::<E>(c, "SELECT id FROM users WHERE name = ?", args![user_name]).await?;
    let id = E::insert_id(
        c,
        "INSERT INTO api_keys (user_id, prefix, key_hash, role, created_at) VALUES (?, ?, ?, ?, ?)",
        args![user_id, prefix, key_hash, role.as_str(), now],
    )
    .await?;
    Ok((id, user_id))
}

/// Deletes a finished task with its deliveries and idempotency record, in
/// the caller's transaction.
async fn delete_in<E: Engine>(c: &mut E::Connection, id: &str) -> sqlx::Result<bool> {
    let n = E::exec(
        c,
        "DELETE FROM tasks WHERE id = ? AND status IN ('succeeded', 'failed', 'canceled')",
        args![id],
    )
    .await?;
    if n > 0 {
        for sql in [
            "DELETE FROM webhook_deliveries WHERE task_id = ?",
            "DELETE FROM idempotency_keys WHERE task_id = ?",
        ] {
            E::exec(c, sql, args![id]).await?;
        }
    }
    Ok(n > 0)
}

/// Sets the user's webhook secret if it has none, and reads it back, in the
/// caller's transaction.
async fn webhook_secret_in<E: Engine>(
    c: &mut E::Connection,
    user_id: i64,
    candidate: &str,
) -> sqlx::Result<String> {
    E::exec(
        c,
        "UPDATE users SET webhook_secret = ? WHERE id = ? AND webhook_secret IS NULL",
        args![candidate, user_id],
    )
    .await?;
    E::row(
        c,
        "SELECT webhook_secret FROM users WHERE id = ?",
        args![user_id],
    )
    .await?
    .ok_or(sqlx::Error::RowNotFound)?
    .text(0)
}

/// Claims in the caller's transaction (see [`Store::claim_tasks`]). The
/// provider's row in `provider_locks` is locked first, so claims for one
/// provider run one at a time across every node and each one counts the
/// slots in use after the previous one committed.
async fn claim_in<E: Engine>(
    c: &mut E::Connection,
    provider: &str,
    limit: u32,
    max: u32,
    now: i64,
    me: &str,
    lease_ms: i64,
) -> sqlx::Result<Vec<Task>> {
    let lock = "SELECT provider FROM provider_locks WHERE provider = ? FOR UPDATE";
    if E::row(c, lock, args![provider]).await?.is_none() {
        // Made outside the transaction before; only a manual delete gets here.
        E::exec(
            c,
            &E::insert_ignore("provider_locks (provider) VALUES (?)"),
            args![provider],
        )
        .await?;
        E::row(c, lock, args![provider]).await?;
    }
    let busy = scalar::<E>(c, SLOTS_IN_USE, args![provider]).await?;
    let free = i64::from(limit) - busy;
    if free <= 0 {
        return Ok(Vec::new());
    }
    let n = free.min(i64::from(max));
    // Four times as many candidates as slots, so that round-robin over users
    // has more than the oldest user's tasks to choose from.
    let candidates = tasks::<E>(c, CLAIM_CANDIDATES, args![provider, now, now, n * 4]).await?;
    let mut claimed = Vec::new();
    for t in crate::fair_pick(candidates, n as usize) {
        let Ok((mut next, _)) = gengate_core::apply(&t, Event::Claim, now) else {
            continue;
        };
        next.version = t.version + 1;
        if update_in::<E>(c, &next, Fence::Lease, me, lease_ms).await? {
            claimed.push(next);
        }
    }
    Ok(claimed)
}

/// Takes over expired leases in the caller's transaction.
async fn take_over_in<E: Engine>(
    c: &mut E::Connection,
    max: u32,
    me: &str,
    lease_ms: i64,
) -> sqlx::Result<Vec<Task>> {
    let now = E::DB_NOW;
    let sql = format!(
        "SELECT {} FROM tasks WHERE {LEASED} AND (lease_until IS NULL OR lease_until <= {now}) \
         ORDER BY lease_until LIMIT ? FOR UPDATE SKIP LOCKED",
        task_columns!()
    );
    let found = tasks::<E>(c, &sql, args![max]).await?;
    if found.is_empty() {
        return Ok(found);
    }
    // One statement for the batch, not one per task: a dead node may have
    // held hundreds, and the promise is to resume them within a heartbeat.
    let marks = vec!["?"; found.len()].join(", ");
    let mut bump_args = args![me, lease_ms];
    bump_args.extend(found.iter().map(|t| Arg::from(t.id.as_str())));
    E::exec(
        c,
        &format!(
            "UPDATE tasks SET lease_owner = ?, lease_until = {now} + ?, version = version + 1, \
             updated_at = {now} WHERE id IN ({marks})"
        ),
        bump_args,
    )
    .await?;
    // As stored (their `updated_at` is the database's clock now, so the
    // change poll of a MySQL cluster sees takeovers too).
    let taken = tasks::<E>(
        c,
        &format!(
            "SELECT {} FROM tasks WHERE id IN ({marks})",
            task_columns!()
        ),
        found.iter().map(|t| Arg::from(t.id.as_str())).collect(),
    )
    .await?;
    for t in &taken {
        E::notify(c, &change_of(t, Some(me.to_owned()))).await?;
    }
    Ok(taken)
}

/// How long a node has to attempt the deliveries it read before another
/// node may (longer than any delivery attempt's timeout).
const DELIVERY_CLAIM_MS: i64 = 60_000;

async fn claim_deliveries_in<E: Engine>(
    c: &mut E::Connection,
    now: i64,
    limit: u32,
) -> sqlx::Result<Vec<Delivery>> {
    let sql = format!("{DUE_DELIVERIES} FOR UPDATE SKIP LOCKED");
    let due = E::rows(c, &sql, args![now, limit])
        .await?
        .iter()
        .map(delivery_from_row)
        .collect::<sqlx::Result<Vec<_>>>()?;
    for d in &due {
        E::exec(
            c,
            "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?",
            args![now + DELIVERY_CLAIM_MS, d.id],
        )
        .await?;
    }
    Ok(due)
}

/// The schema version recorded in the database (0 when it has none).
async fn schema_version<E: Engine>(c: &mut E::Connection) -> sqlx::Result<i64> {
    let has_table = scalar::<E>(
        c,
        &format!(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {} \
             AND table_name = 'schema_migrations'",
            E::CURRENT_SCHEMA
        ),
        args![],
    )
    .await?;
    if has_table == 0 {
        return Ok(0);
    }
    scalar::<E>(
        c,
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        args![],
    )
    .await
}

fn latest<E: Engine>() -> i64 {
    E::MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

fn newer_schema<E: Engine>(version: i64) -> StoreError {
    StoreError::Config(format!(
        "the {} database is at schema version {version}, newer than this build of gengate knows \
         ({}); upgrade gengate, or point it at another database",
        <E as Database>::NAME,
        latest::<E>()
    ))
}

/// Records that `version` was applied (part of each engine's
/// [`Engine::apply_migration`]).
pub(crate) async fn record_migration<E: Engine>(
    c: &mut E::Connection,
    version: i64,
) -> sqlx::Result<()> {
    let sql = format!(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, {})",
        E::DB_NOW
    );
    E::exec(c, &sql, args![version]).await.map(drop)
}

/// The statements of a migration script, to run one at a time (as prepared
/// statements, which hold one each): each ends with `;` at the end of a
/// line, and lines starting with `--` are comments.
pub(crate) fn statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

pub(crate) fn migration_failed(version: i64, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("migration {version} failed: {e}"))
}

pub(crate) type Options<E> = <<E as Database>::Connection as Connection>::Options;

/// The connection options of `url`, trusting `ca_file` for TLS unless the
/// URL names its own CA.
fn connect_options<E: Engine>(url: &str, ca_file: Option<&std::path::Path>) -> Result<Options<E>> {
    let options = Options::<E>::from_str(url)
        .map_err(|e| StoreError::Config(format!("invalid {} URL: {e}", <E as Database>::NAME)))?;
    let names_ca = url
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with(E::CA_PARAM)));
    Ok(match ca_file {
        Some(path) if !names_ca => E::trust_ca(options, path),
        _ => options,
    })
}

/// Applies the pending migrations on a connection of its own, holding the
/// engine's migration lock, so that several `gengate migrate` runs (or
/// nodes opened with `migrate`) take turns instead of racing.
///
/// # Errors
/// [`StoreError::Config`] when the database is newer than this build,
/// [`StoreError::Unavailable`] when it cannot be reached or a script fails.
pub(crate) async fn migrate<E: Engine>(url: &str, opts: &OpenOptions) -> Result<(i64, i64)> {
    migrate_with::<E>(&connect_options::<E>(url, opts.ca_file.as_deref())?).await
}

async fn migrate_with<E: Engine>(options: &Options<E>) -> Result<(i64, i64)> {
    let mut conn = options.connect().await.map_err(db_err)?;
    E::lock_migrations(&mut conn).await?;
    let outcome = run_migrations::<E>(&mut conn).await;
    let unlocked = E::unlock_migrations(&mut conn).await;
    let _ = conn.close().await;
    let outcome = outcome?;
    unlocked?;
    Ok(outcome)
}

async fn run_migrations<E: Engine>(c: &mut E::Connection) -> Result<(i64, i64)> {
    E::exec(
        c,
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        args![],
    )
    .await
    .map_err(db_err)?;
    let from = schema_version::<E>(c).await.map_err(db_err)?;
    let to = latest::<E>();
    if from > to {
        return Err(newer_schema::<E>(from));
    }
    for (version, sql) in E::MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        E::apply_migration(c, *version, sql).await?;
        tracing::info!(
            migration.version = version,
            "applied {} migration {version}",
            <E as Database>::NAME
        );
    }
    Ok((from, to))
}

/// A connection pool that times every acquisition, for [`PoolStats`].
pub(crate) struct TimedPool<DB: Database> {
    pool: Pool<DB>,
    acquires: AtomicU64,
    wait_micros_total: AtomicU64,
    wait_micros_max: AtomicU64,
    timeouts: AtomicU64,
}

impl<DB: Database> TimedPool<DB> {
    fn new(pool: Pool<DB>) -> Self {
        Self {
            pool,
            acquires: AtomicU64::new(0),
            wait_micros_total: AtomicU64::new(0),
            wait_micros_max: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    pub(crate) async fn acquire(&self) -> Result<PoolConnection<DB>> {
        let start = Instant::now();
        let conn = self.pool.acquire().await;
        let waited = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.acquires.fetch_add(1, Ordering::Relaxed);
        self.wait_micros_total.fetch_add(waited, Ordering::Relaxed);
        self.wait_micros_max.fetch_max(waited, Ordering::Relaxed);
        if matches!(conn, Err(sqlx::Error::PoolTimedOut)) {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        conn.map_err(db_err)
    }

    fn stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            max: self.pool.options().get_max_connections(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            acquires: self.acquires.load(Ordering::Relaxed),
            wait_micros_total: self.wait_micros_total.load(Ordering::Relaxed),
            wait_micros_max: self.wait_micros_max.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }
}

/// A store in a database that several gengate nodes share.
pub(crate) struct SqlStore<E: Engine> {
    pool: TimedPool<E>,
    node_id: String,
    lease_ms: i64,
}

impl<E: Engine> SqlStore<E> {
    /// Sets `set` on this node's leases of the tasks `ids` (sorted) that
    /// match `extra`, by id in batches: one UPDATE ranging over the lease
    /// index while it moves entries in it deadlocks with other nodes doing
    /// the same (InnoDB). Returns the rows matched (both drivers report
    /// matched rows; sqlx asks MySQL for CLIENT_FOUND_ROWS).
    async fn update_leases_by_id(
        &self,
        ids: &[String],
        set: &str,
        extra: &str,
        set_args: Vec<Arg>,
    ) -> Result<u64> {
        let mut matched = 0;
        for batch in ids.chunks(RENEW_BATCH) {
            // Padded to a power of two with the last id, so that a few
            // statement texts serve every batch size.
            let size = batch.len().next_power_of_two();
            let marks = vec!["?"; size].join(", ");
            let mut args = set_args.clone();
            args.push(Arg::from(self.node_id.as_str()));
            args.extend(
                batch
                    .iter()
                    .chain(std::iter::repeat(&batch[batch.len() - 1]))
                    .take(size)
                    .map(|id| Arg::from(id.as_str())),
            );
            matched += self
                .exec(
                    &format!(
                        "UPDATE tasks SET {set} WHERE lease_owner = ? {extra} AND {LEASED} AND id IN ({marks})"
                    ),
                    args,
                )
                .await?;
        }
        Ok(matched)
    }

    /// Connects, migrating first when `opts.migrate` says so; otherwise
    /// refuses a database whose schema is not the one this build knows.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a bad URL or a schema mismatch,
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    pub(crate) async fn open(url: &str, opts: &OpenOptions) -> Result<Self> {
        let options = connect_options::<E>(url, opts.ca_file.as_deref())?;
        if opts.migrate {
            migrate_with::<E>(&options).await?;
        }
        let pool = PoolOptions::<E>::new()
            .max_connections(opts.pool_size.max(1))
            .acquire_timeout(opts.pool_timeout)
            .after_connect(|c, _| {
                Box::pin(async move {
                    for statement in E::SESSION_SETUP {
                        E::exec(c, statement, Vec::new()).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db_err)?;
        let store = Self {
            pool: TimedPool::new(pool),
            node_id: opts.node_id.clone(),
            lease_ms: i64::try_from(opts.lease.as_millis()).unwrap_or(i64::MAX),
        };
        let version = {
            let mut c = store.pool.acquire().await?;
            schema_version::<E>(&mut c).await.map_err(db_err)?
        };
        let latest = latest::<E>();
        if version > latest {
            return Err(newer_schema::<E>(version));
        }
        if version < latest {
            return Err(StoreError::Config(format!(
                "the {} database is at schema version {version} and this build of gengate needs \
                 {latest}: run `gengate migrate` first",
                <E as Database>::NAME
            )));
        }
        Ok(store)
    }

    async fn read_tasks(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Task>> {
        let mut c = self.pool.acquire().await?;
        tasks::<E>(&mut c, sql, args).await.map_err(db_err)
    }

    async fn read_deliveries(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Delivery>> {
        let mut c = self.pool.acquire().await?;
        let rows = E::rows(&mut c, sql, args).await.map_err(db_err)?;
        rows.iter()
            .map(delivery_from_row)
            .collect::<sqlx::Result<_>>()
            .map_err(db_err)
    }

    /// Runs one statement (its own transaction), again after a deadlock.
    async fn exec(&self, sql: &str, args: Vec<Arg>) -> Result<u64> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut c = self.pool.acquire().await?;
            match E::exec(&mut c, sql, args.clone()).await {
                Err(e) if retryable(&e) && attempt < TRIES => pause(attempt).await,
                outcome => return outcome.map_err(db_err),
            }
        }
    }
}

/// How many times a statement or transaction runs when the database keeps
/// rolling it back to break a deadlock (InnoDB does under load; both
/// engines may, and then running it again is safe: nothing of it stayed).
const TRIES: u32 = 3;

/// A short, uneven pause before try `attempt + 1`, so that the
/// transactions that deadlocked do not meet again at once.
async fn pause(attempt: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 5_000);
    tokio::time::sleep(std::time::Duration::from_micros(u64::from(
        attempt * 2_000 + jitter,
    )))
    .await;
}

/// Runs `$body`, an expression of the connection `$c` that returns a
/// future of a `sqlx::Result`, in a transaction: committed when it succeeds,
/// run again when the database rolled it back for a deadlock.
macro_rules! in_tx {
    ($store:expr, |$c:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = $store.pool.acquire().await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db_err)?;
            let outcome = {
                let $c: &mut E::Connection = &mut tx;
                $body.await
            };
            let outcome = match outcome {
                Ok(v) => tx.commit().await.map(|()| v),
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if retryable(&e) && attempt < TRIES => pause(attempt).await,
                outcome => break outcome.map_err(db_err),
            }
        }
    }};
}

#[async_trait]
impl<E: Engine> Store for SqlStore<E> {
    async fn ping(&self) -> Result<()> {
        self.exec("SELECT 1", args![]).await.map(drop)
    }

    async fn create_key(
        &self,
        user_name: &str,
        role: Role,
        key_hash: &str,
        prefix: &str,
        now: i64,
    ) -> Result<KeyInfo> {
        let (id, user_id) = in_tx!(self, |c| create_key_in::<E>(
            c, user_name, role, key_hash, prefix, now
        ))?;
        Ok(KeyInfo {
            id,
            user_id,
            user_name: user_name.to_owned(),
            role,
            prefix: prefix.to_owned(),
            created_at: now,
            revoked_at: None,
        })
    }

    async fn find_key(&self, key_hash: &str) -> Result<Option<Caller>> {
        let mut c = self.pool.acquire().await?;
        let sql = format!("{KEY_SELECT} WHERE k.key_hash = ? AND k.revoked_at IS NULL");
        let row = E::row(&mut c, &sql, args![E::lookup(key_hash)])
            .await
            .map_err(db_err)?;
        let info = row.as_ref().map(key_from_row).transpose().map_err(db_err)?;
        Ok(info.map(|k| Caller {
            key_id: k.id,
            user_id: k.user_id,
            user_name: k.user_name,
            role: k.role,
        }))
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let mut c = self.pool.acquire().await?;
        let rows = E::rows(&mut c, &format!("{KEY_SELECT} ORDER BY k.id"), args![])
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(key_from_row)
            .collect::<sqlx::Result<_>>()
            .map_err(db_err)
    }

    async fn revoke_key(&self, id_or_prefix: &str, now: i64) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND (id = ? OR prefix = ?)",
                args![now, id_or_prefix.parse::<i64>().ok(), E::lookup(id_or_prefix)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn count_keys(&self) -> Result<u64> {
        let mut c = self.pool.acquire().await?;
        let n = scalar::<E>(&mut c, "SELECT COUNT(*) FROM api_keys", args![])
            .await
            .map_err(db_err)?;
        Ok(n.unsigned_abs())
    }

    async fn create_task(
        &self,
        new: NewTask,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created> {
        // Concurrent requests with one key can still deadlock on its row
        // (when its first writer rolls back, InnoDB's waiters all hold
        // shared locks and ask to insert): such a try runs again.
        for attempt in 1..=TRIES {
            if attempt > 1 {
                pause(attempt - 1).await;
            }
            let mut conn = self.pool.acquire().await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db_err)?;
            let last = attempt == TRIES;
            match create_in::<E>(&mut tx, &new, idempotency.as_ref()).await {
                Ok(Creation::Done(created)) => match tx.commit().await {
                    Ok(()) => return Ok(*created),
                    Err(e) if retryable(&e) && !last => {}
                    Err(e) => return Err(db_err(e)),
                },
                Ok(Creation::Mismatch) => {
                    let _ = tx.rollback().await;
                    return Err(StoreError::IdempotencyMismatch);
                }
                Ok(Creation::Changed) if !last => {}
                Ok(Creation::Changed) => {
                    return Err(StoreError::Unavailable(
                        "the idempotency record kept changing during the request; try again".into(),
                    ));
                }
                Err(e) if retryable(&e) && !last => {
                    tracing::debug!(error = %e, "create_task runs again after a deadlock");
                }
                Err(e) => return Err(db_err(e)),
            }
        }
        unreachable!("the last try returns")
    }

    async fn get_task(&self, id: &str) -> Result<Option<Task>> {
        let mut c = self.pool.acquire().await?;
        task_by_id::<E>(&mut c, id).await.map_err(db_err)
    }

    async fn list_tasks(&self, q: &ListQuery) -> Result<Vec<Task>> {
        let (sql, args) = list_sql::<E>(q);
        self.read_tasks(&sql, args).await
    }

    async fn update_task(&self, t: &Task, fence: Fence) -> Result<bool> {
        in_tx!(self, |c| update_in::<E>(
            c,
            t,
            fence,
            &self.node_id,
            self.lease_ms
        ))
    }

    async fn active_tasks(&self) -> Result<Vec<Task>> {
        self.read_tasks(ACTIVE_TASKS, args![]).await
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        let mut c = self.pool.acquire().await?;
        let rows = E::rows(
            &mut c,
            "SELECT provider, status, COUNT(*) FROM tasks GROUP BY provider, status",
            args![],
        )
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let status = r.text(1)?;
                Ok(StatusCount {
                    provider: r.text(0)?,
                    status: Status::parse(&status)
                        .ok_or_else(|| corrupt(format!("status {status:?}")))?,
                    count: r.int(2)?.unsigned_abs(),
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(db_err)
    }

    async fn delete_task(&self, id: &str) -> Result<bool> {
        let id = E::lookup(id);
        in_tx!(self, |c| delete_in::<E>(c, &id))
    }

    async fn purge_idempotency(&self, before: i64) -> Result<u64> {
        self.exec(
            "DELETE FROM idempotency_keys WHERE created_at < ?",
            args![before],
        )
        .await
    }

    fn shared(&self) -> bool {
        true
    }

    fn node_id(&self) -> &str {
        &self.node_id
    }

    async fn claim_tasks(
        &self,
        provider: &str,
        limit: u32,
        max: u32,
        now: i64,
    ) -> Result<Vec<Task>> {
        if limit == 0 || max == 0 {
            return Ok(Vec::new());
        }
        // The lock row is made in a transaction of its own: made inside the
        // claim, the first claims of two nodes would deadlock on it.
        self.exec(
            &E::insert_ignore("provider_locks (provider) VALUES (?)"),
            args![provider],
        )
        .await?;
        in_tx!(self, |c| claim_in::<E>(
            c,
            provider,
            limit,
            max,
            now,
            &self.node_id,
            self.lease_ms
        ))
    }

    async fn renew_leases(&self, now: i64, held: &[TaskId]) -> Result<u64> {
        self.exec(&E::upsert_node(), args![self.node_id.as_str(), now])
            .await?;
        let mut ids = held.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let db_now = E::DB_NOW;
        self.update_leases_by_id(
            &ids,
            &format!("lease_until = {db_now} + ?"),
            &format!("AND lease_until > {db_now}"),
            args![self.lease_ms],
        )
        .await
    }

    async fn release_leases(&self) -> Result<u64> {
        let ids: Vec<String> = {
            let mut c = self.pool.acquire().await?;
            let sql =
                format!("SELECT id FROM tasks WHERE {LEASED} AND lease_owner = ? ORDER BY id");
            let rows = E::rows(&mut c, &sql, args![self.node_id.as_str()])
                .await
                .map_err(db_err)?;
            rows.iter()
                .map(|r| r.text(0))
                .collect::<sqlx::Result<_>>()
                .map_err(db_err)?
        };
        self.update_leases_by_id(&ids, "lease_until = 0", "", args![])
            .await
    }

    async fn take_over(&self, max: u32) -> Result<Vec<Task>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        in_tx!(self, |c| take_over_in::<E>(
            c,
            max,
            &self.node_id,
            self.lease_ms
        ))
    }

    async fn overdue_tasks(&self, now: i64, limit: u32) -> Result<Vec<Task>> {
        self.read_tasks(OVERDUE_TASKS, args![now, limit]).await
    }

    async fn changes_since(&self, since: i64, limit: u32) -> Result<Vec<(Change, i64)>> {
        let mut c = self.pool.acquire().await?;
        let rows = E::rows(
            &mut c,
            "SELECT id, version, user_id, status, lease_owner, updated_at FROM tasks \
             WHERE updated_at >= ? ORDER BY updated_at LIMIT ?",
            args![since, limit],
        )
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let status = r.text(3)?;
                Ok((
                    Change {
                        task_id: r.text(0)?,
                        version: r.int(1)?,
                        user_id: r.int(2)?,
                        status: Status::parse(&status).ok_or_else(|| {
                            sqlx::Error::Decode(format!("unknown status {status:?}").into())
                        })?,
                        owner: r.opt_text(4)?,
                    },
                    r.int(5)?,
                ))
            })
            .collect::<sqlx::Result<_>>()
            .map_err(db_err)
    }

    async fn subscribe(&self) -> Result<Option<mpsc::Receiver<Change>>> {
        E::subscribe(&self.pool.pool).await
    }

    fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    async fn facts(&self) -> Result<DbFacts> {
        let mut c = self.pool.acquire().await?;
        let server = E::server_facts(&mut c).await.map_err(db_err)?;
        let schema_version = schema_version::<E>(&mut c).await.map_err(db_err)?;
        let now_ms = scalar::<E>(&mut c, &format!("SELECT {}", E::DB_NOW), args![])
            .await
            .map_err(db_err)?;
        let rows = E::rows(
            &mut c,
            "SELECT id, seen_at, clock_offset_ms, started_at FROM nodes WHERE seen_at >= ? ORDER BY id",
            args![now_ms - 60_000],
        )
        .await
        .map_err(db_err)?;
        let nodes = rows
            .iter()
            .map(|r| {
                Ok(NodeInfo {
                    id: r.text(0)?,
                    seen_at: r.int(1)?,
                    clock_offset_ms: r.int(2)?,
                    started_at: r.int(3)?,
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(db_err)?;
        Ok(DbFacts {
            engine: server.engine,
            schema_version,
            latest_version: latest::<E>(),
            max_connections: server.max_connections,
            memory: server.memory,
            now_ms,
            nodes,
        })
    }

    async fn webhook_secret(&self, user_id: i64, candidate: &str) -> Result<String> {
        in_tx!(self, |c| webhook_secret_in::<E>(c, user_id, candidate))
    }

    async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        // Every node sends from the same outbox: what one node reads is
        // claimed (its next attempt moved out by DELIVERY_CLAIM_MS) in the
        // same transaction, so no other node sends it meanwhile. If the
        // node dies mid-send, the delivery comes due again after the claim.
        in_tx!(self, |c| claim_deliveries_in::<E>(c, now, limit))
    }

    async fn record_delivery(&self, d: &Delivery) -> Result<()> {
        self.exec(
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status = ?, \
             last_error = ?, delivered_at = ? WHERE id = ?",
            args![
                d.status.as_str(),
                d.attempts,
                d.next_attempt_at,
                d.last_status.map(i64::from),
                d.last_error.clone(),
                d.delivered_at,
                d.id,
            ],
        )
        .await
        .map(drop)
    }

    async fn task_deliveries(&self, task_id: &str) -> Result<Vec<Delivery>> {
        self.read_deliveries(TASK_DELIVERIES, args![E::lookup(task_id)])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_into_statements_without_comment_lines() {
        let s = statements(
            "-- a; comment\nCREATE TABLE a (\n  x INT -- inline\n);\n\nCREATE TABLE b (y INT);\nSELECT 1",
        );
        assert_eq!(s.len(), 3);
        assert!(s[0].starts_with("CREATE TABLE a"));
        assert!(s[1].starts_with("CREATE TABLE b"));
        assert_eq!(s[2].trim(), "SELECT 1");
    }

    #[test]
    fn store_errors_keep_their_meaning() {
        assert!(matches!(
            db_err(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(db_err(corrupt("bad")), StoreError::Corrupt(_)));
        assert!(!retryable(&sqlx::Error::PoolTimedOut));
    }
}
