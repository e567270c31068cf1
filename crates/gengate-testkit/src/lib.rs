//! What gengate's tests share, so that no suite writes it again:
//!
//! - [`service_url`]: the URL of a real service (PostgreSQL, MariaDB, Redis,
//!   S3) a test needs, skipped when it is not set, except under CI, where a
//!   missing service is a failure;
//! - [`wait_until`]: waiting for a condition with a deadline, in place of
//!   hand-written poll loops and fixed sleeps;
//! - [`db`]: a fresh database per test on the PostgreSQL and MariaDB test
//!   servers;
//! - [`mock`]: a mock provider of any kind on loopback, over HTTP or HTTPS
//!   with a test CA its clients trust, and its ledger.
//!
//! A dev-dependency only: nothing here is ever built into gengate.

pub mod db;
pub mod mock;

use std::future::Future;
use std::time::Duration;

/// The URL of a service a test needs, from the environment variable `var`.
///
/// `None` (the test skips itself, with a note on stderr) when it is unset or
/// empty, except under CI (`CI=true`), where a missing service panics: CI
/// must run every test against the real service.
pub fn service_url(var: &str) -> Option<String> {
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

/// How often [`wait_until`] checks its condition.
pub const POLL: Duration = Duration::from_millis(20);

/// Checks `check` every [`POLL`] until it gives `Some`, and returns that;
/// panics naming `what` once `timeout` has passed.
///
/// The condition is checked once more after the deadline, so a slow machine
/// that wakes late still sees the last state.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until_every(what, timeout, POLL, check).await
}

/// [`wait_until`] checking every `every`: for a check that costs much, such
/// as one that starts a database client process.
pub async fn wait_until_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        if tokio::time::Instant::now() >= deadline {
            if let Some(found) = check().await {
                return found;
            }
            panic!("gave up after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// [`wait_until`] for a condition that is a plain `bool`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until(what, timeout, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}
