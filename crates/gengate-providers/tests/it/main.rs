//! Each adapter against its wire-compatible mock, over real HTTPS on
//! loopback (`gengate_testkit::mock`: the mocks present a certificate from a
//! test CA, which the adapters' clients trust as gengate would through
//! `tls.ca_file`).

use std::sync::Mutex;
use std::time::Duration;

use gengate_providers::{FollowRef, JobState, Provider};
use gengate_testkit::wait_for;

mod hunyuan;
mod kling;
mod runninghub;
mod transport;

/// Polls `task` until it leaves `Pending` (for at most 10 s); returns every
/// state seen, the last one final.
pub(crate) async fn poll_until_done(provider: &dyn Provider, task: FollowRef<'_>) -> Vec<JobState> {
    let seen = Mutex::new(Vec::new());
    let seen_ref = &seen;
    let what = format!("task {} to finish", task.provider_task_id);
    wait_for(&what, Duration::from_secs(10), move || async move {
        let state = provider.poll(task).await.unwrap();
        let done = !matches!(state, JobState::Pending { .. });
        seen_ref.lock().unwrap().push(state);
        done
    })
    .await;
    seen.into_inner().unwrap()
}
