//! What an operator decides about a provider entry beyond its limits: an
//! admin's pause, and its daily spending cap in credits. Both live in the
//! store, so every node obeys them: the pause as the shared setting
//! `paused.<provider>`, the spending as the holds of the tasks sent to the
//! provider since UTC midnight. Each node reads them every second (and at
//! once after its own admin call); while a lane is stopped its queued tasks
//! wait, neither failing nor moving to a failover entry.

use std::time::Duration;

use tracing::warn;

use super::dispatcher::Dispatcher;
use super::lane::{Controls, Lane};

/// How often each node reads the pauses and the day's spending.
const REFRESH: Duration = Duration::from_secs(1);
const DAY_MS: i64 = 86_400_000;

/// The shared setting that pauses `provider`.
fn pause_setting(provider: &str) -> String {
    format!("paused.{provider}")
}

impl Dispatcher {
    /// Pauses or resumes a provider entry on every node; `false` when there
    /// is no such entry.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub async fn set_paused(&self, provider: &str, paused: bool) -> gengate_store::Result<bool> {
        let Some(lane) = self.inner.lanes.get(provider) else {
            return Ok(false);
        };
        let value = paused.then_some("1");
        self.inner
            .store
            .accounts()
            .set_setting(&pause_setting(provider), value)
            .await?;
        self.refresh_lane(lane).await;
        Ok(true)
    }

    /// Reads the pauses and spending of every lane.
    pub(super) async fn refresh_controls(&self) {
        for lane in self.inner.lanes.values() {
            self.refresh_lane(lane).await;
        }
    }

    /// Re-reads the pauses and spending of every lane, every second.
    pub(super) async fn controls_loop(self) {
        loop {
            self.refresh_controls().await;
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(REFRESH) => {}
            }
        }
    }

    async fn refresh_lane(&self, lane: &Lane) {
        let accounts = self.inner.store.accounts();
        let paused = match accounts.setting(&pause_setting(&lane.name), None).await {
            Ok(v) => v.is_some(),
            Err(e) => {
                warn!(provider = %lane.name, error = %e, "reading whether {} is paused failed: {e}", lane.name);
                return;
            }
        };
        let mut spent_today = 0;
        if lane.daily_credits.is_some() {
            let today = self.now().div_euclid(DAY_MS) * DAY_MS;
            match accounts.provider_spending(&lane.name, today).await {
                Ok(n) => spent_today = n,
                Err(e) => {
                    warn!(provider = %lane.name, error = %e, "reading what {} spent today failed: {e}", lane.name);
                    return;
                }
            }
        }
        let was_stopped = {
            let mut st = lane.lock();
            let was = st.controls.stopped(lane.daily_credits);
            st.controls = Controls {
                paused,
                spent_today,
            };
            was
        };
        if was_stopped && !lane.lock().controls.stopped(lane.daily_credits) {
            lane.wake.notify_one();
        }
    }
}
