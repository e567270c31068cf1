//! The dispatcher: moves tasks through their lifecycle at the providers.
//!
//! Per provider account there is one *lane* ([`lane`]): a count of slots in
//! use (never above the account's concurrency), a timer heap of the tasks it
//! follows, the account's health, and two loops, one handing free slots to
//! ready tasks and one polling running tasks when their timers fire.
//!
//! Every change goes the same way ([`transition`]): read the task, compute
//! the next state with [`gengate_core::apply`], store it conditionally on
//! the version read (and, for the node's own work, on its lease), publish
//! it, and only then carry out the effects. A crash between any two steps
//! leaves a stored state that recovery picks up: queued tasks are queued
//! again, running tasks are followed by their stored provider id (never
//! submitted again), and tasks caught in `submitting` are reconciled through
//! the provider's client reference where it has one.
//!
//! The files, by job:
//! - [`dispatcher`]: the handle and what the parts share, among it
//!   [`dispatcher::WorkSource`], where a lane's work comes from: the local
//!   fair queue on one node ([`local`]), claims through the store on several
//!   ([`cluster`], which also owns leases and takeover);
//! - [`start`]: building it, and the loops beside the lanes (deadlines,
//!   housekeeping);
//! - [`lane`]: one provider account's configuration and shared state;
//! - [`transition`]: the one funnel every change goes through;
//! - [`submit`]: handing a claimed task to its provider, and what its answer
//!   means for the task and the account;
//! - [`follow`]: polling running tasks; [`callbacks`]: the provider's
//!   callbacks, which only tell a poll to go now;
//! - [`copy`]: the media step of a task in `storing`;
//! - [`recover`]: picking up after a restart, and settling submissions
//!   whose answer was lost;
//! - [`failover`]: moving queued tasks off an account that takes no work;
//! - [`eta`]: queue position and expected times;
//! - [`health`]: each account's circuit breaker, slots and problems.

mod callbacks;
mod cluster;
mod controls;
mod copy;
mod dispatcher;
mod eta;
mod failover;
mod follow;
mod health;
mod lane;
mod local;
mod recover;
mod start;
mod submit;
mod transition;

pub use callbacks::{CallbackRefusal, callback_token};
pub use dispatcher::{Dispatcher, LaneStats, Settings};
pub use eta::QueueInfo;
pub use health::{AccountProblem, HealthSettings, HealthView, LastErrorView};
pub use lane::{CallbackTarget, LaneConfig};
pub use transition::Outcome;
