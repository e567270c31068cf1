//! Persistence: the [`Store`] trait (`store.rs`), the one place the rest of
//! gengate reads and writes durable state, and its backends: SQLite for one
//! node (`sqlite/`), PostgreSQL and MySQL/MariaDB for several sharing a
//! database (one implementation, `sql/`, over what differs between the two).
//! Each backend owns its SQL and its migrations (`migrations/<db>/`); the
//! rows they share are decoded once (`rows.rs`). Callers see only the trait
//! and [`StoreError`], whose variants name what the caller can do about
//! them; this file picks the backend a URL names.

use std::sync::Arc;

mod account_rows;
pub mod accounts;
mod listing;
mod mysql;
mod postgres;
mod rows;
mod sql;
pub mod sqlite;
mod store;

pub use accounts::{Account, AccountPatch, AuditEntry, Drift, LedgerEntry, LimitOverrides};
pub use store::{
    Accounts, Caller, Change, Created, DbFacts, Delivery, Fence, IdempotencyKey, KeyInfo,
    ListQuery, NodeInfo, OpenOptions, PoolStats, Result, StatusCount, Store, StoreError,
    TokenScope, fair_pick, holds_lease,
};

/// Opens the store a URL names with default options.
///
/// # Errors
/// As [`open_with`].
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, &OpenOptions::default()).await
}

/// Opens the store a URL names: `sqlite://PATH` (relative paths are relative
/// to the working directory, migrated on open), `postgres://…` or
/// `mysql://…` (MySQL 8 or MariaDB 10.11, also as `mariadb://…`; migrated by
/// `gengate migrate`).
///
/// # Errors
/// [`StoreError::Config`] for an unknown scheme or an unmigrated shared
/// store, [`StoreError::Unavailable`] when the database cannot be reached.
pub async fn open_with(url: &str, opts: &OpenOptions) -> Result<Arc<dyn Store>> {
    match backend(url)? {
        Backend::Sqlite(path) => {
            let store =
                sqlite::SqliteStore::open(std::path::Path::new(path), sqlite::Options::default())
                    .await?;
            Ok(Arc::new(store))
        }
        Backend::Postgres(url) => Ok(Arc::new(postgres::PostgresStore::open(url, opts).await?)),
        Backend::MySql(url) => Ok(Arc::new(mysql::MySqlStore::open(&url, opts).await?)),
    }
}

/// Applies the migrations this build knows to the store a URL names, and
/// returns the schema version before and after. Safe to run again, and from
/// several processes at once (they take turns). SQLite migrates on every
/// open, so for it this only opens the file.
///
/// # Errors
/// [`StoreError::Config`] for an unknown scheme or a schema newer than this
/// build, [`StoreError::Unavailable`] when the database cannot be reached or
/// a migration fails.
pub async fn migrate(url: &str, opts: &OpenOptions) -> Result<(i64, i64)> {
    match backend(url)? {
        Backend::Sqlite(path) => sqlite::migrate_file(std::path::Path::new(path)).await,
        Backend::Postgres(url) => sql::migrate::<sqlx::Postgres>(url, opts).await,
        Backend::MySql(url) => sql::migrate::<sqlx::MySql>(&url, opts).await,
    }
}

enum Backend<'a> {
    Sqlite(&'a str),
    Postgres(&'a str),
    /// With the `mysql://` scheme the driver expects, also for MariaDB.
    MySql(String),
}

fn backend(url: &str) -> Result<Backend<'_>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Backend::Sqlite(path));
    }
    let (scheme, rest) = url.split_once("://").unwrap_or((url, ""));
    match scheme {
        "postgres" | "postgresql" => Ok(Backend::Postgres(url)),
        "mysql" | "mariadb" => Ok(Backend::MySql(format!("mysql://{rest}"))),
        _ => Err(StoreError::Config(format!(
            "unknown store URL scheme in {url:?}; expected sqlite://PATH, postgres://… or mysql://…"
        ))),
    }
}
