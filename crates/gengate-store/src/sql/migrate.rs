//! Migrations of the shared stores: the schema version a database is at,
//! and `gengate migrate`, which applies what this build knows under the
//! engine's migration lock.

use sqlx::{ConnectOptions, Connection, Database};

use super::engine::{Engine, Options};
use super::error::db_err;
use super::pool::connect_options;
use super::queries::scalar;
use crate::rows::args;
use crate::store::{OpenOptions, Result, StoreError};

/// The schema version recorded in the database (0 when it has none).
pub(super) async fn schema_version<E: Engine>(c: &mut E::Connection) -> sqlx::Result<i64> {
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

pub(super) fn latest<E: Engine>() -> i64 {
    E::MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

pub(super) fn newer_schema<E: Engine>(version: i64) -> StoreError {
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

pub(super) async fn migrate_with<E: Engine>(options: &Options<E>) -> Result<(i64, i64)> {
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
}
