//! The PostgreSQL backend: the shared store of [`crate::sql`] on sqlx's
//! PostgreSQL driver. Each task change is also announced with `NOTIFY
//! gengate_tasks` in the transaction that makes it, so that the other nodes
//! hear of it once it commits ([`Store::subscribe`](crate::Store::subscribe))
//! instead of polling for it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgRow};
use sqlx::{Connection, Pool, Postgres};
use tokio::sync::mpsc;

use crate::rows::{Arg, Columns};
use crate::sql::{
    Engine, ServerFacts, SqlStore, TextCol, bind, db_err, migration_failed, record_migration,
    statements,
};
use crate::store::{Change, Result};

/// The store on PostgreSQL.
pub(crate) type PostgresStore = SqlStore<Postgres>;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_service_role.sql"),
    ),
    (3, include_str!("../migrations/postgres/0003_credits.sql")),
];

/// The `pg_advisory_lock` key that serializes migration runs ("gengate" in
/// ASCII, then 1).
const MIGRATION_LOCK: i64 = 0x6765_6e67_6174_6501;

/// Where task changes are announced, as `"<task id> <version>"`.
const CHANNEL: &str = "gengate_tasks";

/// Holds the changes not yet taken by the subscriber; past that, the
/// listener waits (PostgreSQL queues notifications meanwhile).
const CHANGE_BUFFER: usize = 4096;

/// `?` placeholders numbered `$1`, `$2`, … as PostgreSQL wants them. A `?`
/// inside a string literal is left alone.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut quoted = false;
    for ch in sql.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted => {
                n += 1;
                let _ = write!(out, "${n}");
            }
            _ => out.push(ch),
        }
    }
    out
}

/// Bytes in one unit of a `pg_settings` value (`8kB`, `kB`, `MB`, …).
fn unit_bytes(unit: &str) -> u64 {
    let digits = unit
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unit.len());
    let (count, suffix) = unit.split_at(digits);
    let count = count.parse().unwrap_or(1);
    let base = match suffix {
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => 1,
    };
    count * base
}

impl TextCol for PgRow {
    fn text_at(&self, i: usize) -> sqlx::Result<Option<String>> {
        sqlx::Row::try_get(self, i)
    }
}

#[async_trait]
impl Engine for Postgres {
    const CA_PARAM: &'static str = "sslrootcert=";
    const DB_NOW: &'static str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";
    const SHARE_LOCK: &'static str = " FOR SHARE";
    const INT_CAST: &'static str = "BIGINT";
    const WRITES_IN_CTE: bool = true;
    const MIGRATIONS: &'static [(i64, &'static str)] = MIGRATIONS;
    const CURRENT_SCHEMA: &'static str = "current_schema()";
    const SESSION_SETUP: &'static [&'static str] = &[
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
        // A node stalled inside a transaction (paused, cut off) must not hold
        // a provider's claim lock, or a task's row, for longer than a lease:
        // its session is ended, and others' lock waits give up and retry.
        "SET lock_timeout = '10s'",
        "SET idle_in_transaction_session_timeout = '15s'",
    ];

    fn trust_ca(options: PgConnectOptions, path: &std::path::Path) -> PgConnectOptions {
        options.ssl_root_cert(path)
    }

    fn insert_ignore(rest: &str) -> String {
        format!("INSERT INTO {rest} ON CONFLICT DO NOTHING")
    }

    fn upsert_node() -> String {
        let now = Self::DB_NOW;
        format!(
            "INSERT INTO nodes (id, started_at, seen_at, clock_offset_ms) VALUES (?, {now}, {now}, ? - {now}) \
             ON CONFLICT (id) DO UPDATE SET seen_at = EXCLUDED.seen_at, clock_offset_ms = EXCLUDED.clock_offset_ms"
        )
    }

    async fn rows(c: &mut PgConnection, sql: &str, args: Vec<Arg>) -> sqlx::Result<Vec<PgRow>> {
        let sql = numbered(sql);
        bind(sqlx::query(&sql), args).fetch_all(c).await
    }

    async fn row(c: &mut PgConnection, sql: &str, args: Vec<Arg>) -> sqlx::Result<Option<PgRow>> {
        let sql = numbered(sql);
        bind(sqlx::query(&sql), args).fetch_optional(c).await
    }

    async fn exec(c: &mut PgConnection, sql: &str, args: Vec<Arg>) -> sqlx::Result<u64> {
        let sql = numbered(sql);
        Ok(bind(sqlx::query(&sql), args)
            .execute(c)
            .await?
            .rows_affected())
    }

    async fn insert_id(c: &mut PgConnection, sql: &str, args: Vec<Arg>) -> sqlx::Result<i64> {
        let sql = numbered(&format!("{sql} RETURNING id"));
        bind(sqlx::query(&sql), args).fetch_one(c).await?.int(0)
    }

    async fn notify(c: &mut PgConnection, change: &Change) -> sqlx::Result<()> {
        let payload = change.encode();
        Self::exec(
            c,
            &format!("SELECT pg_notify('{CHANNEL}', ?)"),
            vec![Arg::Text(payload)],
        )
        .await
        .map(drop)
    }

    async fn lock_migrations(c: &mut PgConnection) -> Result<()> {
        Self::exec(
            c,
            "SELECT pg_advisory_lock(?)",
            vec![Arg::Int(MIGRATION_LOCK)],
        )
        .await
        .map(drop)
        .map_err(db_err)
    }

    async fn unlock_migrations(c: &mut PgConnection) -> Result<()> {
        Self::exec(
            c,
            "SELECT pg_advisory_unlock(?)",
            vec![Arg::Int(MIGRATION_LOCK)],
        )
        .await
        .map(drop)
        .map_err(db_err)
    }

    async fn apply_migration(c: &mut PgConnection, version: i64, sql: &str) -> Result<()> {
        let failed = |e| migration_failed(version, e);
        let mut tx = c.begin().await.map_err(db_err)?;
        for statement in statements(sql) {
            Self::exec(&mut tx, &statement, Vec::new())
                .await
                .map_err(failed)?;
        }
        record_migration::<Postgres>(&mut tx, version)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)
    }

    async fn server_facts(c: &mut PgConnection) -> sqlx::Result<ServerFacts> {
        let version = Self::row(c, "SELECT version()", Vec::new())
            .await?
            .ok_or(sqlx::Error::RowNotFound)?
            .text(0)?;
        // "PostgreSQL 15.2 (Debian …) on x86_64-pc-linux-gnu, compiled by …"
        let engine = version
            .split_once(", compiled by")
            .map_or(version.as_str(), |(head, _)| head)
            .to_owned();
        let settings = Self::rows(
            c,
            "SELECT name, setting, unit FROM pg_settings WHERE name IN \
             ('max_connections', 'shared_buffers', 'effective_cache_size', 'work_mem') ORDER BY name",
            Vec::new(),
        )
        .await?;
        let mut facts = ServerFacts {
            engine,
            max_connections: None,
            memory: Vec::new(),
        };
        for r in &settings {
            let (name, setting, unit) = (r.text(0)?, r.text(1)?, r.opt_text(2)?);
            let Ok(value) = setting.parse::<u64>() else {
                continue;
            };
            match unit {
                None => facts.max_connections = Some(value),
                Some(unit) => facts.memory.push((name, value * unit_bytes(&unit))),
            }
        }
        Ok(facts)
    }

    async fn subscribe(pool: &Pool<Postgres>) -> Result<Option<mpsc::Receiver<Change>>> {
        let options = pool.connect_options();
        let listener = listen(&options).await.map_err(db_err)?;
        let (tx, rx) = mpsc::channel(CHANGE_BUFFER);
        tokio::spawn(forward(listener, options, tx));
        Ok(Some(rx))
    }
}

/// A listener on [`CHANNEL`], on a connection of its own: it keeps its
/// connection for good, which must not cost the store's pool one.
async fn listen(options: &PgConnectOptions) -> sqlx::Result<PgListener> {
    let pool = PoolOptions::<Postgres>::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Passes notifications on until the subscriber goes away. A lost
/// connection is made again, with backoff; what was announced while it was
/// down is not heard (a node's leases do not depend on it: a task taken over
/// refuses the former holder's writes, and a node renews only what it works
/// on; cached reads may lag until the task changes again).
async fn forward(
    mut listener: PgListener,
    options: Arc<PgConnectOptions>,
    tx: mpsc::Sender<Change>,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let received = tokio::select! {
            () = tx.closed() => return,
            // (`try_recv` says when the connection was lost, where `recv`
            // would reconnect silently and hide the gap.)
            received = listener.try_recv() => received,
        };
        match received {
            Ok(None) => {
                tracing::warn!("lost the PostgreSQL change feed; listening again");
                if tx.send(Change::gap()).await.is_err() {
                    return;
                }
            }
            Ok(Some(n)) => {
                backoff = FIRST_BACKOFF;
                match Change::decode(n.payload()) {
                    Some(change) => {
                        if tx.send(change).await.is_err() {
                            return;
                        }
                    }
                    None => tracing::warn!(
                        payload = n.payload(),
                        "ignoring a malformed {CHANNEL} notification"
                    ),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lost the PostgreSQL change feed; listening again");
                loop {
                    tokio::select! {
                        () = tx.closed() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    match listen(&options).await {
                        Ok(l) => {
                            listener = l;
                            tracing::info!("listening to the PostgreSQL change feed again");
                            if tx.send(Change::gap()).await.is_err() {
                                return;
                            }
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the PostgreSQL change feed cannot listen yet");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_string_literals() {
        assert_eq!(
            numbered("SELECT '?' FROM t WHERE a = ? AND b IN (?, ?)"),
            "SELECT '?' FROM t WHERE a = $1 AND b IN ($2, $3)"
        );
    }

    #[test]
    fn settings_units_are_bytes() {
        assert_eq!(unit_bytes("8kB"), 8192);
        assert_eq!(unit_bytes("kB"), 1024);
        assert_eq!(unit_bytes("MB"), 1 << 20);
        assert_eq!(unit_bytes("B"), 1);
    }

    #[test]
    fn changes_are_parsed_from_their_payload() {
        let change = Change {
            task_id: "tsk_01ABC".into(),
            version: 7,
            user_id: 3,
            status: gengate_core::Status::Running,
            owner: Some("web1-42-beef".into()),
        };
        assert_eq!(Change::decode(&change.encode()), Some(change.clone()));
        let unowned = Change {
            owner: None,
            ..change
        };
        assert_eq!(Change::decode(&unowned.encode()), Some(unowned));
        assert_eq!(Change::decode("tsk_01ABC 7"), None);
        assert_eq!(Change::decode("tsk_01ABC x 3 running -"), None);
        assert_eq!(Change::decode("tsk_01ABC 7 3 sleeping -"), None);
    }
}
