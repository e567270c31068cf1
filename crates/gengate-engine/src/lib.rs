//! gengate's engine: everything that moves a task once it is stored, and
//! nothing that speaks HTTP to clients.
//!
//! - [`dispatch`]: the dispatcher, which hands tasks to provider accounts
//!   within their limits, follows them by polls and callbacks, copies their
//!   results and recovers after a crash, on one node or several;
//! - [`media`]: the media step (copying outputs into the operator's storage)
//!   and its backends;
//! - [`webhooks`]: client webhooks, sent from the store's outbox;
//! - [`hub`]: the in-process cache of recent tasks and the fan-out of their
//!   changes to event streams and long polls;
//! - [`bus`]: the channel that carries changes between nodes, over
//!   [`redis`], PostgreSQL's NOTIFY or a poll;
//! - [`metrics`]: the counters `/metrics` shows;
//! - [`clock`]: the time the dispatcher reads, injectable for tests.
//!
//! The server crate builds an engine from the configuration and calls it
//! from its services; outbound HTTP goes through `gengate_net`.

pub mod bus;
pub mod clock;
pub mod dispatch;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod redis;
pub mod webhooks;

pub use clock::Clock;

/// Now, in Unix milliseconds, by the system's clock: for the parts outside
/// the dispatcher (the dispatcher reads its [`Clock`]).
pub fn now_ms() -> i64 {
    clock::system_ms()
}
