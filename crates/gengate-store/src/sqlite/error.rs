//! What a SQLite failure means for the caller.

use crate::store::StoreError;

/// The database could not do what was asked; later may work.
pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Maps a driver error to what the caller can do about it.
pub(super) fn db_err(e: rusqlite::Error) -> StoreError {
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
