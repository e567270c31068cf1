//! [`Columns`] for the sqlx rows of both engines, so that the shared row
//! decoders of [`crate::rows`] read them. Only text differs between the
//! drivers ([`TextCol`], implemented next to each engine).

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::error::corrupt;
use crate::rows::Columns;

/// How an engine's rows hold text (the one column type the drivers decode
/// differently).
pub(crate) trait TextCol {
    fn text_at(&self, i: usize) -> sqlx::Result<Option<String>>;
}

impl<R> Columns for R
where
    R: Row + TextCol,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    type Error = sqlx::Error;

    fn text(&self, i: usize) -> sqlx::Result<String> {
        self.text_at(i)?
            .ok_or_else(|| corrupt(format!("column {i} is NULL")))
    }
    fn opt_text(&self, i: usize) -> sqlx::Result<Option<String>> {
        self.text_at(i)
    }
    fn int(&self, i: usize) -> sqlx::Result<i64> {
        self.try_get(i)
    }
    fn opt_int(&self, i: usize) -> sqlx::Result<Option<i64>> {
        self.try_get(i)
    }
    fn int32(&self, i: usize) -> sqlx::Result<i32> {
        self.try_get(i)
    }
    fn opt_int32(&self, i: usize) -> sqlx::Result<Option<i32>> {
        self.try_get(i)
    }
    fn float(&self, i: usize) -> sqlx::Result<f64> {
        self.try_get(i)
    }
    fn boolean(&self, i: usize) -> sqlx::Result<bool> {
        self.try_get(i)
    }
    fn corrupt(what: String) -> sqlx::Error {
        corrupt(what)
    }
}
