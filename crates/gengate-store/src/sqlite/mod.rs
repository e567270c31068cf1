//! The SQLite backend (the default): WAL mode, one writer thread that commits
//! concurrent writes together (group commit), and a small pool of reader
//! connections. Replies to writers are sent only after `COMMIT` returns, which
//! is what makes "durable before 202" true.
//!
//! By job: `conn` (opening, the readers and the write queue), `writer` (the
//! writer thread), `migrate` (the schema), `queries` (statements and the
//! listing), `rows` (rusqlite's rows for the shared decoders of
//! the crate's `rows.rs`), `error` and `store` (the [`Store`](crate::Store)
//! implementation).

mod accounts;
mod conn;
mod error;
mod migrate;
mod queries;
mod rows;
mod store;
mod writer;

pub(crate) use conn::migrate_file;
pub use conn::{Options, SqliteStore};
pub use queries::list_sql;
