//! The time the engine reads.
//!
//! Everything the dispatcher decides by the time (deadlines, retry
//! backoff, poll timers, the circuit breaker, leases) reads it from the
//! [`Clock`] in its settings, and waits with tokio's timers. In production
//! that clock is the system's; a test uses [`Clock::tokio`], which moves
//! with tokio's clock, so under `tokio::time::pause()` an hour of deadlines
//! and polls passes in milliseconds, and exactly as the timers say.

use tokio::time::Instant;

/// Where the engine reads the time, in Unix milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// Wall time that moves with tokio's clock: `wall_ms` at `at`.
    Tokio { wall_ms: i64, at: Instant },
}

impl Clock {
    /// A clock that reads the system's time now and then follows tokio's
    /// clock (paused or not).
    pub fn tokio() -> Self {
        Self::Tokio {
            wall_ms: system_ms(),
            at: Instant::now(),
        }
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self {
            Self::System => system_ms(),
            Self::Tokio { wall_ms, at } => wall_ms + at.elapsed().as_millis() as i64,
        }
    }
}

/// The system's time, in Unix milliseconds.
pub(crate) fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time_only() {
        let clock = Clock::tokio();
        let start = clock.now_ms();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now_ms() - start, 3_600_000);
    }
}
