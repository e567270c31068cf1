//! The shared-store backends (PostgreSQL, MySQL/MariaDB): one [`Store`]
//! implementation ([`SqlStore`]), written once over [`Engine`], which each
//! backend implements for its sqlx driver with the little that differs
//! between the two (placeholders, the clock expression, insert-if-absent,
//! read locks, migration locks, sizing facts, pushed changes).
//!
//! By job: `bind` (parameters to sqlx), `rows` (sqlx rows for the shared
//! decoders of [`crate::rows`]), `queries` (statement texts and reads),
//! `writes` (the transactions of each write), `migrate`, `pool`
//! (connecting), `error` (what failures mean, retries) and `store` (the
//! [`Store`] implementation). Statements are written with `?`
//! placeholders; PostgreSQL numbers them. Every task write is conditional
//! on the version its writer read and, for a node's own work, on that
//! node's lease.
//!
//! [`Store`]: crate::Store

mod accounts;
mod bind;
mod engine;
mod error;
mod migrate;
mod pool;
mod queries;
mod rows;
mod store;
mod writes;

pub(crate) use bind::bind;
pub(crate) use engine::{Engine, ServerFacts};
pub(crate) use error::{corrupt, db_err};
pub(crate) use migrate::{migrate, migration_failed, record_migration, statements};
pub(crate) use rows::TextCol;
pub(crate) use store::SqlStore;
