//! [`Engine`]: what differs between PostgreSQL and MySQL, implemented for
//! the sqlx drivers' database types (`postgres.rs`, `mysql.rs`). Everything
//! else of the shared store is written once, over this trait.

use std::borrow::Cow;

use async_trait::async_trait;
use sqlx::{Connection, Database, Pool};
use tokio::sync::mpsc;

use crate::rows::{Arg, Columns};
use crate::store::{Change, Result};

/// The connection options of an engine's driver.
pub(crate) type Options<E> = <<E as Database>::Connection as Connection>::Options;

/// What sizes a database, as an engine reports it.
pub(crate) struct ServerFacts {
    pub(crate) engine: String,
    pub(crate) max_connections: Option<u64>,
    pub(crate) memory: Vec<(String, u64)>,
}

/// What differs between the engines.
#[async_trait]
pub(crate) trait Engine: Database<Row: Columns<Error = sqlx::Error>> {
    /// The database's clock in Unix milliseconds, as a `BIGINT` expression.
    const DB_NOW: &'static str;
    /// Appended to a `SELECT` to hold read locks on its rows until commit.
    const SHARE_LOCK: &'static str;
    /// The type a `CAST` makes a 64-bit integer with (a `SUM` is wider).
    const INT_CAST: &'static str;
    /// Whether a `WITH` may hold writes whose rows the statement returns
    /// (PostgreSQL): several writes of one transaction then cost one round
    /// trip. Otherwise (MySQL) they go one statement at a time.
    const WRITES_IN_CTE: bool;
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
