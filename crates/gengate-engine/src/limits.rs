//! Per-user limits on task creation: a fixed one-minute window per user,
//! counted in Redis when it is configured (so the limit holds across nodes)
//! and in this process otherwise.
//!
//! Redis is not a system of record: when it cannot be reached, creation is
//! allowed (and the failure logged), since refusing every user's tasks for a
//! cache outage is worse than a limit briefly not enforced.

use std::collections::HashMap;
use std::sync::Mutex;

use gengate_core::UserId;

use crate::redis::Redis;

const WINDOW_MS: i64 = 60_000;

/// Increments the window's counter and sets its expiry on first use, in
/// one step so a crash between the two cannot leave a counter that never
/// expires.
const SCRIPT: &str = "local n = redis.call('INCR', KEYS[1]) \
     if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n";

enum Counter {
    Local(Mutex<HashMap<UserId, (i64, u32)>>),
    Redis(Box<Redis>),
}

/// The creation limit.
pub struct RateLimiter {
    per_minute: u32,
    counter: Counter,
}

impl RateLimiter {
    /// `per_minute` creations per user (0: unlimited), counted in Redis
    /// when `redis` is given (its commands should time out quickly: a check
    /// waits for one).
    pub fn new(per_minute: u32, redis: Option<Redis>) -> Self {
        Self {
            per_minute,
            counter: match redis {
                Some(r) => Counter::Redis(Box::new(r)),
                None => Counter::Local(Mutex::default()),
            },
        }
    }

    /// Counts one creation by `user` at `now`; `Err(seconds)` to wait when
    /// the user is over the limit.
    pub async fn check(&self, user: UserId, now: i64) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let window = now.div_euclid(WINDOW_MS);
        let retry_after = || ((window + 1) * WINDOW_MS - now).max(1000) as u64 / 1000;
        let count = match &self.counter {
            Counter::Local(map) => {
                let mut map = map.lock().expect("rate limit lock");
                if map.len() > 100_000 {
                    map.retain(|_, (w, _)| *w == window);
                }
                let e = map.entry(user).or_insert((window, 0));
                if e.0 != window {
                    *e = (window, 0);
                }
                e.1 += 1;
                u64::from(e.1)
            }
            Counter::Redis(redis) => {
                let key = format!("gengate:rate:{user}:{window}");
                let mut eval = ::redis::cmd("EVAL");
                eval.arg(SCRIPT).arg(1).arg(&key).arg(WINDOW_MS + 5_000);
                match redis.query::<i64>(&eval).await {
                    Ok(n) => n.max(0) as u64,
                    Err(e) => {
                        tracing::warn!(error = %e, "rate limit counter in redis unavailable ({e}); allowing");
                        return Ok(());
                    }
                }
            }
        };
        if count > u64::from(self.per_minute) {
            Err(retry_after())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn local_windows_limit_each_user_and_reset() {
        let l = RateLimiter::new(2, None);
        let t = 120_000;
        assert!(l.check(1, t).await.is_ok());
        assert!(l.check(1, t + 1).await.is_ok());
        assert_eq!(l.check(1, t + 30_000).await, Err(30));
        assert!(l.check(2, t).await.is_ok(), "users are counted apart");
        assert!(l.check(1, t + 60_000).await.is_ok(), "a new window");
        assert!(RateLimiter::new(0, None).check(1, t).await.is_ok());
    }

    #[tokio::test]
    async fn redis_counts_are_shared_between_limiters() {
        let Some(url) = gengate_testkit::service_url("TEST_REDIS_URL") else {
            return;
        };
        let redis = || {
            Redis::open(
                &url,
                &gengate_net::Trust::public(),
                Duration::from_millis(500),
            )
            .unwrap()
        };
        let (a, b) = (
            RateLimiter::new(3, Some(redis())),
            RateLimiter::new(3, Some(redis())),
        );
        // A user id no other run uses, in a window of its own.
        let user = i64::from(std::process::id()) * 1000 + 7;
        let now = crate::now_ms();
        assert!(a.check(user, now).await.is_ok());
        assert!(b.check(user, now).await.is_ok());
        assert!(a.check(user, now).await.is_ok());
        assert!(
            b.check(user, now).await.is_err(),
            "the fourth, on the other node"
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_allows() {
        let redis = Redis::open(
            "redis://127.0.0.1:1",
            &gengate_net::Trust::public(),
            Duration::from_millis(500),
        )
        .unwrap();
        let l = RateLimiter::new(1, Some(redis));
        assert!(l.check(1, 0).await.is_ok());
        assert!(l.check(1, 0).await.is_ok());
    }
}
