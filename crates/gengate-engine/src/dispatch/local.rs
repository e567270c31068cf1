//! The work source of one node ([`LocalQueue`]): each lane keeps a fair
//! queue in memory, filled from the store at start and by every task created
//! or made ready here; its slot loop pops it. (On a shared store,
//! [`StoreClaims`](super::cluster::StoreClaims) claims instead.)

use std::sync::Arc;
use std::time::Duration;

use gengate_core::Task;
use tokio::task::JoinHandle;
use tracing::{Instrument, info_span};

use super::dispatcher::{BoxFuture, Dispatcher, WorkSource};
use super::health::Gate;
use super::lane::{Lane, LaneState, entry_of};

/// One node: the lanes' queues are in memory.
pub(super) struct LocalQueue;

impl WorkSource for LocalQueue {
    fn feed(&self, dispatcher: Dispatcher, lane: Arc<Lane>) -> BoxFuture<'static, ()> {
        Box::pin(dispatcher.slot_loop(lane))
    }

    fn start(&self, _: &Dispatcher) -> Option<JoinHandle<()>> {
        None
    }

    fn recover<'a>(&'a self, dispatcher: &'a Dispatcher) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(dispatcher.recover_local())
    }

    fn ready(&self, lane: &mut LaneState, task: &Task, now: i64) {
        lane.queue.push(entry_of(task), now);
    }

    fn leased(&self) -> bool {
        false
    }
}

impl Dispatcher {
    /// The slot loop of one node: hands the lane's free slots to the ready
    /// tasks of its fair queue, within the account's health.
    pub(super) async fn slot_loop(self, lane: Arc<Lane>) {
        loop {
            loop {
                let next = {
                    let mut st = lane.lock();
                    let now = self.now();
                    let in_flight = st.held.len();
                    // (Readiness first: the gate may hand out the one probe.)
                    if !st.queue.has_ready(now)
                        || st.controls.stopped(lane.daily_credits)
                        || st.health.gate(now, in_flight) == Gate::Closed
                    {
                        None
                    } else {
                        let e = st.queue.pop(now);
                        if let Some(e) = &e {
                            st.held.insert(e.task_id.clone());
                        }
                        e
                    }
                };
                let Some(entry) = next else { break };
                let span = info_span!("submit", task.id = %entry.task_id, provider = %lane.name);
                self.inner
                    .tracker
                    .spawn(self.clone().submit(lane.clone(), entry).instrument(span));
            }
            let (due, blocked) = {
                let st = lane.lock();
                (st.queue.next_due(), st.health.blocked_until(self.now()))
            };
            if blocked.is_some() {
                self.fail_over(&lane);
            }
            let wait_ms = due
                .max(blocked)
                .map_or(1000, |d| (d - self.now()).clamp(1, 1000));
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = lane.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
    }
}
