//! What each connection sends: the raw scenario (GETs to the URL as given),
//! one gengate route at a time (`health`, `get-task`, `list`, `gallery`,
//! `create`), or `mixed`, virtual users that behave like people in the app.
//! Also the setup those need on the target: detecting a gengate, making users
//! and keys through the admin API, seeding tasks.
//!
//! - `kind`: the scenarios by name.
//! - `target`: where the load goes.
//! - `user`: how virtual users behave (their mix of actions, how they follow
//!   the tasks they create).
//! - `plan`: a prepared scenario, and what each connection sends in a run.
//! - `setup`: work on the target before a run (users, keys, seed tasks).
//! - `headers`: `-H` headers, and the admin key among them.
//!
//! This file only declares and re-exports; the parts name each other
//! directly, so none of them imports this file back.

mod headers;
mod kind;
mod plan;
mod setup;
mod target;
mod user;

pub use headers::{bearer_in, parse_header};
pub use hyper::header::{HeaderName, HeaderValue};
pub use kind::Scenario;
pub use plan::Plan;
pub use setup::{Setup, UserKey, block_on};
pub use target::Target;
pub use user::{Follow, Mix, UserOptions};

#[cfg(test)]
mod tests;
