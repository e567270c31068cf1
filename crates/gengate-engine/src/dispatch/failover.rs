//! Failover: while an account takes no work (its circuit is open, it is
//! paused for an account problem), its queued tasks whose model names a
//! failover provider that does take work move there.

use std::collections::HashMap;
use std::sync::Arc;

use gengate_core::{Event, Status, TaskId};
use tracing::{info, warn};

use super::dispatcher::Dispatcher;
use super::lane::Lane;
use super::transition::Outcome;

/// Queued tasks moved to a failover provider per model and pass (shared
/// store).
pub(super) const FAILOVER_BATCH: u32 = 100;

impl Dispatcher {
    /// While `lane` takes no work (circuit open, account paused), moves its
    /// queued tasks whose model names a failover provider that does take
    /// work there.
    pub(super) fn fail_over(&self, lane: &Arc<Lane>) {
        let targets = self.failover_targets(lane);
        if targets.is_empty() {
            return;
        }
        // Ids first, models after the lane lock is released (the cache has
        // locks of its own).
        let queued: Vec<TaskId> = lane.lock().queue.task_ids().cloned().collect();
        let moves: Vec<(TaskId, String)> = queued
            .into_iter()
            .filter_map(|id| {
                let task = self.inner.hub.get(&id)?;
                let to = targets.get(task.model.as_str())?;
                Some((id, to.clone()))
            })
            .collect();
        self.move_tasks(lane, moves);
    }

    /// Per model served by `lane`: the failover provider it names, if that
    /// one takes work now.
    pub(super) fn failover_targets(&self, lane: &Lane) -> HashMap<String, String> {
        let now = self.now();
        self.inner
            .models
            .values()
            .filter(|m| m.provider == lane.name)
            .filter_map(|m| Some((m.name.clone(), m.failover.clone()?)))
            .filter(|(_, to)| {
                self.inner
                    .lanes
                    .get(to)
                    .is_some_and(|l| l.lock().health.available(now))
            })
            .collect()
    }

    /// Moves queued tasks of `lane` to other providers (`moves`: task, to).
    pub(super) fn move_tasks(&self, lane: &Lane, moves: Vec<(TaskId, String)>) {
        for (id, to) in moves {
            let (this, from) = (self.clone(), lane.name.clone());
            self.inner.tracker.spawn(async move {
                let moved = this
                    .transition(&id, None, |t| {
                        (t.status == Status::Queued && t.provider == from).then(|| Event::Reroute {
                            provider: to.clone(),
                        })
                    })
                    .await;
                match moved {
                    Ok(Outcome::Stored(_)) => {
                        info!(task.id = %id, "task {id} fails over from {from} to {to}")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(task.id = %id, error = %e, "moving task {id} to {to} failed: {e}")
                    }
                }
            });
        }
    }

    /// While `lane` takes no work, moves its queued tasks (the store's queue,
    /// which every node shares) whose model names a failover provider that
    /// takes work: the shared-store form of the single node's failover.
    pub(super) async fn fail_over_shared(&self, lane: &Arc<Lane>) {
        for (model, to) in self.failover_targets(lane) {
            let query = gengate_store::ListQuery {
                status: Some(Status::Queued),
                model: Some(model),
                limit: FAILOVER_BATCH,
                ..Default::default()
            };
            match self.inner.store.list_tasks(&query).await {
                Ok(tasks) => {
                    let moves = tasks
                        .into_iter()
                        .filter(|t| t.provider == lane.name)
                        .map(|t| (t.id, to.clone()))
                        .collect();
                    self.move_tasks(lane, moves);
                }
                Err(e) => {
                    warn!(provider = %lane.name, error = %e, "listing tasks to fail over from {} failed: {e}", lane.name)
                }
            }
        }
    }
}
