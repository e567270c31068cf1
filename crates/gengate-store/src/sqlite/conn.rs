//! The SQLite store's connections: opening the database (and migrating it),
//! the reader connections that reads take turns on, and the queue of
//! writes to the writer thread ([`super::writer`]).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::error::unavailable;
use super::migrate::{MIGRATIONS, migrate};
use super::writer::{Job, run_cached, run_writer};
use crate::store::Result;

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

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_permits: Arc<Semaphore>,
}

/// A connection to `path` set up as every connection of the store is.
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
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable) when the file
    /// cannot be opened or migrated.
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
    pub(super) async fn write<R, F>(&self, f: F) -> Result<R>
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

    /// Runs `f` on a reader connection, on tokio's blocking pool.
    pub(super) async fn read<R, F>(&self, f: F) -> Result<R>
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::sqlite::error::db_err;

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
