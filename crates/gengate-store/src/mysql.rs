//! The MySQL backend (MySQL 8, MariaDB 10.11): the shared store of
//! [`crate::sql`] on sqlx's MySQL driver. MySQL pushes no changes, so other
//! nodes learn of them from [`Store::changes_since`](crate::Store::changes_since).
//!
//! Written for both servers: `LOCK IN SHARE MODE` (MariaDB has no
//! `FOR SHARE`), `VALUES()` in upserts (MariaDB has no row alias), and
//! `SKIP LOCKED` (MySQL 8, MariaDB 10.6+). MySQL commits DDL as it goes, so
//! a migration cannot run in a transaction: its statements run one by one,
//! and each script can be run again after a failure. Sessions run READ
//! COMMITTED (see [`Engine::SESSION_SETUP`]), which InnoDB refuses to log as
//! STATEMENT: the binary log must be ROW or MIXED (the servers' defaults).

use std::borrow::Cow;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{MySql, Row};

use crate::rows::{Arg, Columns};
use crate::sql::{
    Engine, ServerFacts, SqlStore, TextCol, bind, corrupt, db_err, migration_failed,
    record_migration, statements,
};
use crate::store::{Result, StoreError};

/// The store on MySQL or MariaDB.
pub(crate) type MySqlStore = SqlStore<MySql>;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/mysql/0001_init.sql")),
    (2, include_str!("../migrations/mysql/0002_service_role.sql")),
    (3, include_str!("../migrations/mysql/0003_credits.sql")),
];

/// How long `gengate migrate` waits for another run to finish (seconds).
const MIGRATION_LOCK_WAIT: i64 = 60;

/// Columns with a binary collation (`utf8mb4_bin`, `ascii_bin`: the schema
/// wants case-sensitive text) are flagged BINARY by the server, and sqlx
/// will not read those as `String`: they are read as bytes and checked here.
impl TextCol for MySqlRow {
    fn text_at(&self, i: usize) -> sqlx::Result<Option<String>> {
        self.try_get::<Option<Vec<u8>>, _>(i)?
            .map(|bytes| String::from_utf8(bytes).map_err(|e| corrupt(format!("column {i}: {e}"))))
            .transpose()
    }
}

#[async_trait]
impl Engine for MySql {
    const CA_PARAM: &'static str = "ssl-ca=";
    const DB_NOW: &'static str = "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)";
    const SHARE_LOCK: &'static str = " LOCK IN SHARE MODE";
    const INT_CAST: &'static str = "SIGNED";
    const WRITES_IN_CTE: bool = false;
    const MIGRATIONS: &'static [(i64, &'static str)] = MIGRATIONS;
    const CURRENT_SCHEMA: &'static str = "DATABASE()";
    const SESSION_SETUP: &'static [&'static str] = &[
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        // UNIX_TIMESTAMP(NOW(3)) reads NOW in the session's zone: in UTC it
        // never repeats or skips an hour (a DST change would otherwise make
        // every lease look expired, or never expire, for an hour).
        "SET time_zone = '+00:00'",
        // A lock held by a stalled node is waited for 10 s, then retried.
        "SET SESSION innodb_lock_wait_timeout = 10",
    ];

    fn trust_ca(
        options: sqlx::mysql::MySqlConnectOptions,
        path: &std::path::Path,
    ) -> sqlx::mysql::MySqlConnectOptions {
        options.ssl_ca(path)
    }

    fn insert_ignore(rest: &str) -> String {
        format!("INSERT IGNORE INTO {rest}")
    }

    fn upsert_node() -> String {
        let now = Self::DB_NOW;
        format!(
            "INSERT INTO nodes (id, started_at, seen_at, clock_offset_ms) VALUES (?, {now}, {now}, ? - {now}) \
             ON DUPLICATE KEY UPDATE seen_at = VALUES(seen_at), clock_offset_ms = VALUES(clock_offset_ms)"
        )
    }

    /// MySQL refuses to compare an ASCII column with a string holding other
    /// characters ("illegal mix of collations") instead of finding nothing,
    /// and its `_bin` collations ignore trailing spaces (`'a' = 'a '`). Each
    /// such character becomes DEL (0x7F), which no id contains and which
    /// sorts after every character ids are made of, so lookups stay exact
    /// and cursors mean what they did.
    fn lookup(s: &str) -> Cow<'_, str> {
        let kept = s.trim_end_matches(' ').len();
        if s.is_ascii() && kept == s.len() {
            return Cow::Borrowed(s);
        }
        let (head, tail) = s.split_at(kept);
        Cow::Owned(
            head.chars()
                .map(|c| if c.is_ascii() { c } else { '\x7f' })
                .chain(tail.chars().map(|_| '\x7f'))
                .collect(),
        )
    }

    async fn rows(
        c: &mut MySqlConnection,
        sql: &str,
        args: Vec<Arg>,
    ) -> sqlx::Result<Vec<MySqlRow>> {
        bind(sqlx::query(sql), args).fetch_all(c).await
    }

    async fn row(
        c: &mut MySqlConnection,
        sql: &str,
        args: Vec<Arg>,
    ) -> sqlx::Result<Option<MySqlRow>> {
        bind(sqlx::query(sql), args).fetch_optional(c).await
    }

    async fn exec(c: &mut MySqlConnection, sql: &str, args: Vec<Arg>) -> sqlx::Result<u64> {
        Ok(bind(sqlx::query(sql), args)
            .execute(c)
            .await?
            .rows_affected())
    }

    async fn insert_id(c: &mut MySqlConnection, sql: &str, args: Vec<Arg>) -> sqlx::Result<i64> {
        let id = bind(sqlx::query(sql), args)
            .execute(c)
            .await?
            .last_insert_id();
        i64::try_from(id).map_err(|_| corrupt(format!("generated id {id}")))
    }

    async fn lock_migrations(c: &mut MySqlConnection) -> Result<()> {
        let got = Self::row(
            c,
            "SELECT GET_LOCK('gengate_migrate', ?)",
            vec![Arg::Int(MIGRATION_LOCK_WAIT)],
        )
        .await
        .and_then(|r| r.ok_or(sqlx::Error::RowNotFound)?.opt_int(0))
        .map_err(db_err)?;
        if got == Some(1) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "another `gengate migrate` held the migration lock for {MIGRATION_LOCK_WAIT} s; try again"
            )))
        }
    }

    async fn unlock_migrations(c: &mut MySqlConnection) -> Result<()> {
        Self::exec(c, "SELECT RELEASE_LOCK('gengate_migrate')", Vec::new())
            .await
            .map(drop)
            .map_err(db_err)
    }

    async fn apply_migration(c: &mut MySqlConnection, version: i64, sql: &str) -> Result<()> {
        if version == 2 {
            drop_mysql_role_checks(c)
                .await
                .map_err(|e| migration_failed(version, e))?;
        }
        for (i, statement) in statements(sql).iter().enumerate() {
            let ran = Self::exec(c, statement, Vec::new()).await;
            if ran.as_ref().is_err_and(already_there) {
                continue;
            }
            ran.map_err(|e| {
                migration_failed(
                    version,
                    format!(
                        "statement {}: {e} (what ran before it stays: MySQL commits DDL at once; \
                             the script can be run again)",
                        i + 1
                    ),
                )
            })?;
        }
        record_migration::<MySql>(c, version)
            .await
            .map_err(|e| migration_failed(version, e))
    }

    async fn server_facts(c: &mut MySqlConnection) -> sqlx::Result<ServerFacts> {
        let r = Self::row(
            c,
            "SELECT VERSION(), CAST(@@max_connections AS SIGNED), \
             CAST(@@innodb_buffer_pool_size AS SIGNED), CAST(@@key_buffer_size AS SIGNED)",
            Vec::new(),
        )
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
        let version = r.text(0)?;
        let engine = if version.contains("MariaDB") {
            format!("MariaDB {version}")
        } else {
            format!("MySQL {version}")
        };
        let setting = |i: usize| -> sqlx::Result<Option<u64>> {
            Ok(r.try_get::<Option<i64>, _>(i)?
                .and_then(|v| u64::try_from(v).ok()))
        };
        let memory = [(2, "innodb_buffer_pool_size"), (3, "key_buffer_size")]
            .into_iter()
            .filter_map(|(i, name)| {
                setting(i)
                    .transpose()
                    .map(|v| v.map(|v| (name.to_owned(), v)))
            })
            .collect::<sqlx::Result<_>>()?;
        Ok(ServerFacts {
            engine,
            max_connections: setting(1)?,
            memory,
        })
    }
}

/// Whether a migration statement failed because a column or index it adds
/// is there already: a run that stopped halfway left it (MySQL commits each
/// DDL statement at once, and has no `ADD COLUMN IF NOT EXISTS`).
fn already_there(e: &sqlx::Error) -> bool {
    // ER_DUP_FIELDNAME, ER_DUP_KEYNAME.
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .is_some_and(|d| matches!(d.number(), 1060 | 1061))
}

/// MySQL 8 keeps a column's CHECK as a table constraint of its own
/// (`api_keys_chk_1`), which redefining the column leaves in place, so
/// migration 2 could not widen the roles; it is dropped by name first.
/// MariaDB keeps the CHECK with the column, and migration 2 replaces it.
async fn drop_mysql_role_checks(c: &mut MySqlConnection) -> sqlx::Result<()> {
    let version = MySql::row(c, "SELECT VERSION()", Vec::new())
        .await?
        .ok_or(sqlx::Error::RowNotFound)?
        .text(0)?;
    if version.contains("MariaDB") {
        return Ok(());
    }
    let checks = MySql::rows(
        c,
        "SELECT CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'api_keys' AND CONSTRAINT_TYPE = 'CHECK'",
        Vec::new(),
    )
    .await?;
    for check in checks {
        let name = check.text(0)?;
        let sql = format!(
            "ALTER TABLE api_keys DROP CHECK `{}`",
            name.replace('`', "``")
        );
        MySql::exec(c, &sql, Vec::new()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_replace_what_an_ascii_column_cannot_hold() {
        assert_eq!(MySql::lookup("tsk_01AB"), "tsk_01AB");
        assert_eq!(MySql::lookup("tsk_ü1"), "tsk_\u{7f}1");
        assert_eq!(MySql::lookup("tsk_1  "), "tsk_1\u{7f}\u{7f}");
        assert_eq!(MySql::lookup("a b"), "a b");
    }

    #[test]
    fn the_first_script_is_its_seven_tables() {
        assert_eq!(statements(MIGRATIONS[0].1).len(), 7);
    }
}
