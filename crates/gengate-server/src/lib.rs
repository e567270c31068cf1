//! gengate's server: the HTTP API ([`api`]), the rules behind it
//! ([`service`]), the dispatcher that drives tasks through the providers
//! ([`dispatch`]), configuration ([`config`]) and metrics.
//!
//! [`app::serve`] takes a listener that is already bound and a shutdown
//! token, so tests run exactly the server production runs.

pub mod api;
pub mod app;
pub mod bus;
pub mod config;
pub mod dispatch;
pub mod doctor;
pub mod hub;
pub mod keys;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod redis;
pub mod service;
pub mod webhooks;

/// Now, in Unix milliseconds: the one clock read of the server.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The URL of a service a test needs, from `var`: `None` (the test is
/// skipped, with a note) when it is unset, except under CI (`CI=true`),
/// where a missing service is a failure.
#[cfg(test)]
pub(crate) fn test_service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set; CI must run this test against the real service")
        }
        _ => {
            eprintln!("skipped: {var} is not set");
            None
        }
    }
}
