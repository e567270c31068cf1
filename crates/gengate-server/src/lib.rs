//! gengate's server: the HTTP API ([`api`]), the rules behind it
//! ([`service`]), the dispatcher that drives tasks through the providers
//! ([`dispatch`]), configuration ([`config`]) and metrics.
//!
//! [`app::serve`] takes a listener that is already bound and a shutdown
//! token, so tests run exactly the server production runs.

pub mod api;
pub mod app;
pub mod config;
pub mod dispatch;
pub mod hub;
pub mod keys;
pub mod media;
pub mod metrics;
pub mod service;
pub mod webhooks;

/// Now, in Unix milliseconds: the one clock read of the server.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
