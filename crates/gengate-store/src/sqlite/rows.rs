//! rusqlite's rows and parameters for what the backends share: rows read
//! through [`Columns`], so the decoders of [`crate::rows`] serve SQLite too,
//! and [`Arg`] bound as a parameter.

use rusqlite::types::{ToSqlOutput, Type};
use rusqlite::{Connection, Params, Row, ToSql};

use super::error::db_err;
use crate::rows::{Arg, Columns};
use crate::store::Result;

impl Columns for Row<'_> {
    type Error = rusqlite::Error;

    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn opt_int(&self, i: usize) -> rusqlite::Result<Option<i64>> {
        self.get(i)
    }
    fn int32(&self, i: usize) -> rusqlite::Result<i32> {
        self.get(i)
    }
    fn opt_int32(&self, i: usize) -> rusqlite::Result<Option<i32>> {
        self.get(i)
    }
    fn float(&self, i: usize) -> rusqlite::Result<f64> {
        self.get(i)
    }
    fn boolean(&self, i: usize) -> rusqlite::Result<bool> {
        self.get(i)
    }
    /// Reported as [`crate::StoreError::Corrupt`] by [`db_err`].
    fn corrupt(what: String) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(0, Type::Text, what.into())
    }
}

impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Arg::Int(v) => v.to_sql(),
            Arg::OptInt(v) => v.to_sql(),
            Arg::Float(v) => v.to_sql(),
            Arg::Bool(v) => v.to_sql(),
            Arg::Text(v) => v.to_sql(),
            Arg::OptText(v) => v.to_sql(),
        }
    }
}

/// The rows `sql` selects, each read with `decode`. The statement is
/// prepared once per connection.
pub(super) fn all<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    decode: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut st = c.prepare_cached(sql).map_err(db_err)?;
    let rows = st.query_map(params, decode).map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

/// The one row `sql` selects, if any, read with `decode`.
pub(super) fn first<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    decode: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    use rusqlite::OptionalExtension as _;
    c.prepare_cached(sql)
        .and_then(|mut st| st.query_row(params, decode).optional())
        .map_err(db_err)
}
