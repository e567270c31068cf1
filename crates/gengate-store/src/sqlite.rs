//! The SQLite backend (the default): WAL mode, one writer thread that commits
//! concurrent writes together (group commit), and a small pool of reader
//! connections. Replies to writers are sent only after `COMMIT` returns, which
//! is what makes "durable before 202" true.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gengate_core::task::NewTask;
use gengate_core::{Output, Role, Status, Task, TaskError};
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{
    Caller, Created, Delivery, IdempotencyKey, KeyInfo, ListQuery, Result, StatusCount, Store,
    StoreError,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_webhooks.sql")),
    (3, include_str!("../migrations/sqlite/0003_storing.sql")),
];

/// How many writes one transaction may carry. Larger batches amortize the
/// fsync further but make each writer wait longer for the slowest job.
const MAX_BATCH: usize = 512;

/// Tuning of the SQLite backend.
#[derive(Debug, Clone)]
pub struct Options {
    /// Reader connections (reads run on tokio's blocking pool).
    pub readers: usize,
    /// `PRAGMA synchronous`: `FULL` survives power loss; `NORMAL` survives a
    /// process crash (`kill -9`) but may lose the last commits on power loss.
    pub synchronous_full: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            readers: 4,
            synchronous_full: true,
        }
    }
}

type Reply = Box<dyn FnOnce(Result<()>) + Send>;
/// A write: run with the connection inside the batch's transaction, or with
/// `None` when there is no transaction to run in (it then only reports that).
type Job = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_permits: Arc<Semaphore>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn open_connection(path: &Path, opts: &Options) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| unavailable(format!("opening {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(unavailable)?;
    let sync = if opts.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
    ))
    .map_err(unavailable)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(unavailable)?;
    for (version, sql) in MIGRATIONS {
        let applied: Option<i64> = conn
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)?;
        if applied.is_some() {
            continue;
        }
        let tx = conn.unchecked_transaction().map_err(unavailable)?;
        tx.execute_batch(sql)
            .map_err(|e| unavailable(format!("migration {version}: {e}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s','now') * 1000)",
            [version],
        )
        .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        tracing::info!(
            migration.version = version,
            "applied sqlite migration {version}"
        );
    }
    Ok(())
}

/// The schema version of the database at `path` (0 when it has none yet),
/// migrated by opening it: `gengate migrate` for a SQLite store.
pub(crate) async fn migrate_file(path: &Path) -> Result<(i64, i64)> {
    let version = |path: &Path| -> Result<i64> {
        if !path.exists() {
            return Ok(0);
        }
        let conn = Connection::open(path).map_err(unavailable)?;
        let has_table: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
                [],
                |r| r.get(0),
            )
            .map_err(unavailable)?;
        if !has_table {
            return Ok(0);
        }
        conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)
    };
    let owned = path.to_owned();
    let from = tokio::task::spawn_blocking(move || version(&owned))
        .await
        .map_err(unavailable)??;
    drop(SqliteStore::open(path, Options::default()).await?);
    Ok((from, MIGRATIONS.len() as i64))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened or migrated.
    pub async fn open(path: &Path, opts: Options) -> Result<Self> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, &opts))
            .await
            .map_err(unavailable)?
    }

    fn open_blocking(path: &Path, opts: &Options) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        let writer_conn = open_connection(path, opts)?;
        migrate(&writer_conn)?;
        let readers = (0..opts.readers.max(1))
            .map(|_| open_connection(path, opts))
            .collect::<Result<Vec<_>>>()?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("gengate-sqlite-writer".into())
            .spawn(move || run_writer(&writer_conn, rx))
            .map_err(unavailable)?;
        Ok(Self {
            writer: tx,
            reader_permits: Arc::new(Semaphore::new(readers.len())),
            readers: Arc::new(Mutex::new(readers)),
        })
    }

    /// Runs `f` in the next write transaction and answers once it committed.
    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn: Option<&Connection>| {
            let outcome = match conn {
                // Each job runs in a savepoint so one failing job does not
                // undo the others in its batch.
                // (Prepared once per connection: these run twice per write.)
                Some(conn) => match run_cached(conn, "SAVEPOINT job") {
                    Ok(()) => {
                        let r = f(conn);
                        let end = if r.is_ok() {
                            run_cached(conn, "RELEASE job")
                        } else {
                            conn.execute_batch("ROLLBACK TO job; RELEASE job")
                                .map_err(unavailable)
                        };
                        end.and(r)
                    }
                    Err(e) => Err(e),
                },
                None => Err(unavailable("the write transaction could not be started")),
            };
            Box::new(move |committed: Result<()>| {
                let _ = tx.send(committed.and(outcome));
            })
        });
        self.writer
            .send(job)
            .map_err(|_| unavailable("the sqlite writer thread has stopped"))?;
        rx.await
            .map_err(|_| unavailable("the sqlite writer thread has stopped"))?
    }

    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let permit = self
            .reader_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(unavailable)?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers
                .lock()
                .map_err(unavailable)?
                .pop()
                .ok_or_else(|| unavailable("no reader"))?;
            let r = f(&conn);
            readers.lock().map_err(unavailable)?.push(conn);
            drop(permit);
            r
        })
        .await
        .map_err(unavailable)?
    }
}

fn run_cached(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.execute([]))
        .map(|_| ())
        .map_err(unavailable)
}

fn run_writer(conn: &Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "sqlite write transaction could not begin");
            for job in batch.drain(..) {
                job(None)(Err(unavailable(&e)));
            }
            continue;
        }
        // Set when SQLite rolled the whole transaction back under us (disk
        // full, I/O error): what ran is undone, and what follows must not run
        // in autocommit mode, where each job would commit on its own.
        let mut aborted = false;
        for job in batch.drain(..) {
            if aborted {
                replies.push(job(None));
                continue;
            }
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(conn)))) {
                Ok(reply) => replies.push(reply),
                Err(_) => {
                    // The job's reply went with it: its caller sees the write
                    // fail. Undo what it did and carry on with the batch.
                    tracing::error!("a sqlite write job panicked; its changes are rolled back");
                    let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                }
            }
            aborted = conn.is_autocommit();
        }
        let committed = if aborted {
            Err(unavailable(
                "the transaction was rolled back by the database",
            ))
        } else {
            conn.execute_batch("COMMIT").map_err(unavailable)
        };
        if committed.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies.drain(..) {
            reply(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(unavailable(e)),
            });
        }
    }
}

/// The SQL of a listing, with only the filters given, so that SQLite can
/// use `tasks_by_user` (user listings) or `tasks_gallery` (the gallery) and
/// start at the cursor instead of scanning. One statement text per filter
/// combination, each prepared once per connection.
pub fn list_sql(q: &ListQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut clauses: Vec<&str> = Vec::new();
    let mut params: Vec<V> = Vec::new();
    if let Some(user) = q.user_id {
        clauses.push("user_id = ?");
        params.push(V::Integer(user));
    }
    if q.gallery {
        clauses.push("public = 1 AND status = 'succeeded'");
    }
    if let Some(status) = q.status {
        clauses.push("status = ?");
        params.push(V::Text(status.as_str().to_owned()));
    }
    if let Some(model) = &q.model {
        clauses.push("model = ?");
        params.push(V::Text(model.clone()));
    }
    if let Some(before) = &q.before {
        clauses.push("id < ?");
        params.push(V::Text(before.clone()));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    params.push(V::Integer(i64::from(q.limit)));
    (
        format!("SELECT {TASK_COLUMNS} FROM tasks{filter} ORDER BY id DESC LIMIT ?"),
        params,
    )
}

const TASK_COLUMNS: &str = crate::rows::task_columns!();

fn corrupt(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {e}").into(),
    )
}

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    let status: String = r.get(4)?;
    let input: String = r.get(5)?;
    let outputs: String = r.get(6)?;
    let error: Option<String> = r.get(7)?;
    Ok(Task {
        id: r.get(0)?,
        user_id: r.get(1)?,
        model: r.get(2)?,
        provider: r.get(3)?,
        status: Status::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        input: serde_json::from_str(&input).map_err(|e| corrupt("input", e))?,
        outputs: serde_json::from_str::<Vec<Output>>(&outputs)
            .map_err(|e| corrupt("outputs", e))?,
        error: error
            .map(|e| serde_json::from_str::<TaskError>(&e))
            .transpose()
            .map_err(|e| corrupt("error", e))?,
        public: r.get(8)?,
        priority: r.get(9)?,
        attempts: r.get(10)?,
        max_attempts: r.get(11)?,
        provider_task_id: r.get(12)?,
        progress: r.get::<_, f64>(13)? as f32,
        not_before: r.get(14)?,
        deadline_at: r.get(15)?,
        created_at: r.get(16)?,
        started_at: r.get(17)?,
        finished_at: r.get(18)?,
        updated_at: r.get(19)?,
        version: r.get(20)?,
        webhook_url: r.get(21)?,
    })
}

fn db_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, inner) => {
            StoreError::Corrupt(inner.to_string())
        }
        rusqlite::Error::SqliteFailure(f, msg)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict {
                constraint: msg.unwrap_or_else(|| "unique constraint".into()),
            }
        }
        other => unavailable(other),
    }
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("task fields always serialize")
}

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<KeyInfo> {
    let role: String = r.get(3)?;
    Ok(KeyInfo {
        id: r.get(0)?,
        user_id: r.get(1)?,
        user_name: r.get(2)?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
        prefix: r.get(4)?,
        created_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

const DELIVERY_COLUMNS: &str = crate::rows::delivery_columns!();

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        task_id: r.get(1)?,
        user_id: r.get(2)?,
        url: r.get(3)?,
        event: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt_at: r.get(7)?,
        last_status: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
        delivered_at: r.get(11)?,
    })
}

const KEY_SELECT: &str = "SELECT k.id, k.user_id, u.name, k.role, k.prefix, k.created_at, k.revoked_at \
     FROM api_keys k JOIN users u ON u.id = k.user_id";

fn get_task_in(conn: &Connection, id: &str) -> Result<Option<Task>> {
    conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))
        .and_then(|mut st| st.query_row([id], task_from_row).optional())
        .map_err(db_err)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        // Both paths: a reader connection, and the writer thread (a store that
        // can be read but not written is not ready).
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err))
            .await?;
        self.write(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err))
            .await
    }

    async fn create_key(
        &self,
        user_name: &str,
        role: Role,
        key_hash: &str,
        prefix: &str,
        now: i64,
    ) -> Result<KeyInfo> {
        let (user_name, key_hash, prefix) =
            (user_name.to_owned(), key_hash.to_owned(), prefix.to_owned());
        self.write(move |c| {
            c.execute("INSERT OR IGNORE INTO users (name, created_at) VALUES (?1, ?2)", params![user_name, now])
                .map_err(db_err)?;
            let user_id: i64 =
                c.query_row("SELECT id FROM users WHERE name = ?1", [&user_name], |r| r.get(0)).map_err(db_err)?;
            c.execute(
                "INSERT INTO api_keys (user_id, prefix, key_hash, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user_id, prefix, key_hash, role.as_str(), now],
            )
            .map_err(db_err)?;
            let id = c.last_insert_rowid();
            Ok(KeyInfo { id, user_id, user_name, role, prefix, created_at: now, revoked_at: None })
        })
        .await
    }

    async fn find_key(&self, key_hash: &str) -> Result<Option<Caller>> {
        let key_hash = key_hash.to_owned();
        self.read(move |c| {
            let info = c
                .prepare_cached(&format!(
                    "{KEY_SELECT} WHERE k.key_hash = ?1 AND k.revoked_at IS NULL"
                ))
                .and_then(|mut st| st.query_row([&key_hash], key_from_row).optional())
                .map_err(db_err)?;
            Ok(info.map(|k| Caller {
                key_id: k.id,
                user_id: k.user_id,
                user_name: k.user_name,
                role: k.role,
            }))
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.read(|c| {
            let mut st = c
                .prepare(&format!("{KEY_SELECT} ORDER BY k.id"))
                .map_err(db_err)?;
            let rows = st.query_map([], key_from_row).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn revoke_key(&self, id_or_prefix: &str, now: i64) -> Result<bool> {
        let needle = id_or_prefix.to_owned();
        self.write(move |c| {
            let by_id = needle.parse::<i64>().ok();
            let n = c
                .execute(
                    "UPDATE api_keys SET revoked_at = ?1 WHERE revoked_at IS NULL AND (id = ?2 OR prefix = ?3)",
                    params![now, by_id, needle],
                )
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn count_keys(&self) -> Result<u64> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM api_keys", [], |r| r.get(0))
                .map_err(db_err)
        })
        .await
    }

    async fn create_task(
        &self,
        new: NewTask,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created> {
        self.write(move |c| {
            if let Some(idem) = &idempotency {
                let prior: Option<(String, String, i64)> = c
                    .prepare_cached(
                        "SELECT request_hash, task_id, created_at FROM idempotency_keys WHERE user_id = ?1 AND key = ?2",
                    )
                    .and_then(|mut st| {
                        st.query_row(params![new.user_id, idem.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                            .optional()
                    })
                    .map_err(db_err)?;
                match prior {
                    Some((hash, task_id, created)) if created >= idem.not_before => {
                        if hash != idem.request_hash {
                            return Err(StoreError::IdempotencyMismatch);
                        }
                        let task = get_task_in(c, &task_id)?
                            .ok_or_else(|| StoreError::Corrupt(format!("idempotency key names missing task {task_id}")))?;
                        return Ok(Created { task, replayed: true });
                    }
                    Some(_) => {
                        c.execute(
                            "DELETE FROM idempotency_keys WHERE user_id = ?1 AND key = ?2",
                            params![new.user_id, idem.key],
                        )
                        .map_err(db_err)?;
                    }
                    None => {}
                }
            }
            let task = new.into_task();
            c.prepare_cached(&format!(
                "INSERT INTO tasks ({TASK_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    task.id,
                    task.user_id,
                    task.model,
                    task.provider,
                    task.status.as_str(),
                    json(&task.input),
                    json(&task.outputs),
                    task.error.as_ref().map(json),
                    task.public,
                    task.priority,
                    task.attempts,
                    task.max_attempts,
                    task.provider_task_id,
                    f64::from(task.progress),
                    task.not_before,
                    task.deadline_at,
                    task.created_at,
                    task.started_at,
                    task.finished_at,
                    task.updated_at,
                    task.version,
                    task.webhook_url,
                ])
            })
            .map_err(db_err)?;
            if let Some(idem) = &idempotency {
                c.prepare_cached(
                    "INSERT INTO idempotency_keys (user_id, key, request_hash, task_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut st| st.execute(params![task.user_id, idem.key, idem.request_hash, task.id, task.created_at]))
                .map_err(db_err)?;
            }
            Ok(Created { task, replayed: false })
        })
        .await
    }

    async fn get_task(&self, id: &str) -> Result<Option<Task>> {
        let id = id.to_owned();
        self.read(move |c| get_task_in(c, &id)).await
    }

    async fn list_tasks(&self, q: &ListQuery) -> Result<Vec<Task>> {
        let q = q.clone();
        self.read(move |c| {
            let (sql, params) = list_sql(&q);
            let mut st = c.prepare_cached(&sql).map_err(db_err)?;
            let rows = st
                .query_map(rusqlite::params_from_iter(params.iter()), task_from_row)
                .map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn update_task(&self, t: &Task, _fence: crate::Fence) -> Result<bool> {
        let t = t.clone();
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE tasks SET status = ?2, outputs = ?3, error = ?4, attempts = ?5, provider_task_id = ?6, \
                     progress = ?7, not_before = ?8, started_at = ?9, finished_at = ?10, updated_at = ?11, \
                     version = ?12, public = ?13, provider = ?14 WHERE id = ?1 AND version = ?12 - 1",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        t.id,
                        t.status.as_str(),
                        json(&t.outputs),
                        t.error.as_ref().map(json),
                        t.attempts,
                        t.provider_task_id,
                        f64::from(t.progress),
                        t.not_before,
                        t.started_at,
                        t.finished_at,
                        t.updated_at,
                        t.version,
                        t.public,
                        t.provider,
                    ])
                })
                .map_err(db_err)?;
            // The result's webhook is queued in the same transaction as the
            // result itself: it can be neither lost nor sent for a state that
            // was never stored.
            if n == 1
                && t.status.is_terminal()
                && let Some(url) = &t.webhook_url
            {
                c.prepare_cached(
                    "INSERT INTO webhook_deliveries (task_id, user_id, url, event, status, attempts, next_attempt_at, created_at) \
                     VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)",
                )
                .and_then(|mut st| {
                    st.execute(params![t.id, t.user_id, url, format!("task.{}", t.status.as_str()), t.updated_at])
                })
                .map_err(db_err)?;
            }
            Ok(n == 1)
        })
        .await
    }

    async fn webhook_secret(&self, user_id: i64, candidate: &str) -> Result<String> {
        let candidate = candidate.to_owned();
        self.write(move |c| {
            c.execute(
                "UPDATE users SET webhook_secret = ?2 WHERE id = ?1 AND webhook_secret IS NULL",
                params![user_id, candidate],
            )
            .map_err(db_err)?;
            c.query_row(
                "SELECT webhook_secret FROM users WHERE id = ?1",
                [user_id],
                |r| r.get(0),
            )
            .map_err(db_err)
        })
        .await
    }

    async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        self.read(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?1 \
                     ORDER BY next_attempt_at LIMIT ?2"
                ))
                .map_err(db_err)?;
            let rows = st.query_map(params![now, limit], delivery_from_row).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn record_delivery(&self, d: &Delivery) -> Result<()> {
        let d = d.clone();
        self.write(move |c| {
            c.execute(
                "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_status = ?5, \
                 last_error = ?6, delivered_at = ?7 WHERE id = ?1",
                params![d.id, d.status, d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.delivered_at],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn task_deliveries(&self, task_id: &str) -> Result<Vec<Delivery>> {
        let task_id = task_id.to_owned();
        self.read(move |c| {
            let mut st = c
                .prepare_cached(&format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE task_id = ?1 ORDER BY id"))
                .map_err(db_err)?;
            let rows = st.query_map([task_id], delivery_from_row).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn overdue_tasks(&self, now: i64, limit: u32) -> Result<Vec<Task>> {
        self.read(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE status IN ('queued', 'submitting', 'running', 'storing') \
                     AND deadline_at <= ?1 ORDER BY deadline_at LIMIT ?2"
                ))
                .map_err(db_err)?;
            let rows = st.query_map(params![now, limit], task_from_row).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn changes_since(&self, since: i64, limit: u32) -> Result<Vec<(crate::Change, i64)>> {
        self.read(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, version, user_id, status, updated_at FROM tasks WHERE updated_at >= ?1 ORDER BY updated_at LIMIT ?2",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![since, limit], |r| {
                    let status: String = r.get(3)?;
                    Ok((
                        crate::Change {
                            task_id: r.get(0)?,
                            version: r.get(1)?,
                            user_id: r.get(2)?,
                            status: Status::parse(&status).ok_or_else(|| corrupt("status", &status))?,
                            owner: None,
                        },
                        r.get(4)?,
                    ))
                })
                .map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn active_tasks(&self) -> Result<Vec<Task>> {
        self.read(|c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE status IN ('queued', 'submitting', 'running', 'storing') ORDER BY id"
                ))
                .map_err(db_err)?;
            let rows = st.query_map([], task_from_row).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        self.read(|c| {
            let mut st = c
                .prepare("SELECT provider, status, COUNT(*) FROM tasks GROUP BY provider, status")
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| {
                    let status: String = r.get(1)?;
                    Ok(StatusCount {
                        provider: r.get(0)?,
                        status: Status::parse(&status).ok_or_else(|| corrupt("status", &status))?,
                        count: r.get(2)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn delete_task(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            // One job is one savepoint: all three deletes or none.
            let n = c
                .execute(
                    "DELETE FROM tasks WHERE id = ?1 AND status IN ('succeeded', 'failed', 'canceled')",
                    [&id],
                )
                .map_err(db_err)?;
            if n > 0 {
                c.execute("DELETE FROM webhook_deliveries WHERE task_id = ?1", [&id])
                    .map_err(db_err)?;
                c.execute("DELETE FROM idempotency_keys WHERE task_id = ?1", [&id])
                    .map_err(db_err)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn facts(&self) -> Result<crate::DbFacts> {
        self.read(|c| {
            let version: String = c
                .query_row("SELECT sqlite_version()", [], |r| r.get(0))
                .map_err(db_err)?;
            let schema: i64 = c
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    [],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            Ok(crate::DbFacts {
                engine: format!("SQLite {version}"),
                schema_version: schema,
                latest_version: MIGRATIONS.len() as i64,
                now_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
                ..Default::default()
            })
        })
        .await
    }

    async fn purge_idempotency(&self, before: i64) -> Result<u64> {
        self.write(move |c| {
            let n = c
                .execute(
                    "DELETE FROM idempotency_keys WHERE created_at < ?1",
                    [before],
                )
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_writer_lives_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), Options::default())
            .await
            .unwrap();
        let ok = store.write(|c| {
            c.execute("INSERT INTO users (name, created_at) VALUES ('a', 1)", [])
                .map_err(db_err)
        });
        let boom = store.write(|c| -> Result<()> {
            c.execute("INSERT INTO users (name, created_at) VALUES ('b', 1)", [])
                .map_err(db_err)?;
            panic!("a bug in a write job");
        });
        let (ok, boom) = tokio::join!(ok, boom);
        assert!(ok.is_ok());
        assert!(
            boom.is_err(),
            "the panicking job's caller is told it failed"
        );
        let names: Vec<String> = store
            .read(|c| {
                let mut st = c
                    .prepare("SELECT name FROM users ORDER BY name")
                    .map_err(db_err)?;
                let rows = st.query_map([], |r| r.get(0)).map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await
            .unwrap();
        assert_eq!(
            names,
            ["a"],
            "the panicking job's insert was rolled back, the other kept"
        );
        store.ping().await.expect("the writer still works");
    }
}
