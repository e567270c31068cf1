//! What a driver error means for the caller ([`db_err`]), and which ones
//! are worth running the same transaction again for ([`retryable`],
//! [`TRIES`], [`pause`]).

use crate::store::StoreError;

/// A stored value no row may hold, as sqlx reports a decoding failure.
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

/// A deadlock victim, a serialization failure or a lock wait that timed
/// out (PostgreSQL 55P03, MySQL 1205 as SQLSTATE HY000 with that number):
/// the transaction was rolled back and running it again may well succeed.
pub(crate) fn retryable(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    matches!(d.code().as_deref(), Some("40001" | "40P01" | "55P03"))
        || d.message().contains("Lock wait timeout exceeded")
}

/// How many times a statement or transaction runs when the database keeps
/// rolling it back to break a deadlock (InnoDB does under load; both
/// engines may, and then running it again is safe: nothing of it stayed).
pub(crate) const TRIES: u32 = 3;

/// A short, uneven pause before try `attempt + 1`, so that the
/// transactions that deadlocked do not meet again at once.
pub(crate) async fn pause(attempt: u32) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 5_000);
    tokio::time::sleep(std::time::Duration::from_micros(u64::from(
        attempt * 2_000 + jitter,
    )))
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

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
