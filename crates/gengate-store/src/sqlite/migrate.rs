//! The SQLite schema: its migrations, applied on every open by the writer
//! connection before anything else uses the database.

use rusqlite::{Connection, OptionalExtension};

use super::error::unavailable;
use crate::store::Result;

/// The schema this build knows, one script per version.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_webhooks.sql")),
    (3, include_str!("../../migrations/sqlite/0003_storing.sql")),
    (
        4,
        include_str!("../../migrations/sqlite/0004_service_role.sql"),
    ),
    (5, include_str!("../../migrations/sqlite/0005_credits.sql")),
    (
        6,
        include_str!("../../migrations/sqlite/0006_ledger_check.sql"),
    ),
];

/// Applies the migrations `conn`'s database has not had yet, each in a
/// transaction of its own.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
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
