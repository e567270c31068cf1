//! A store that holds tokio's paused clock still while it works.
//!
//! Under a paused clock tokio moves time on whenever the runtime has
//! nothing to do. SQLite's writes run on a thread of their own, so a task
//! awaiting a write looks idle, and the clock would race ahead through every
//! pending timer until the commit lands: a minute of the test's time per
//! millisecond of the disk's, more on a slow disk. [`Steady`] keeps the
//! runtime busy while any call is in flight, so time moves only while every
//! task waits on a timer, and the tests can hold the dispatcher to its
//! timings to the second.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use gengate_core::task::NewTask;
use gengate_core::{Role, Task, TaskId, UserId};
use gengate_store::{
    Caller, Change, Created, DbFacts, Delivery, Fence, IdempotencyKey, KeyInfo, ListQuery,
    PoolStats, Result, StatusCount, Store,
};

pub(crate) struct Steady(pub(crate) Arc<dyn Store>);

/// Awaits `work`, yielding to the runtime meanwhile so that it never parks
/// (a parked runtime is what lets the paused clock jump).
async fn steady<F: Future>(work: F) -> F::Output {
    let spin = async {
        loop {
            tokio::task::yield_now().await;
        }
    };
    tokio::select! {
        biased;
        out = work => out,
        () = spin => unreachable!("the spin never ends"),
    }
}

#[async_trait]
impl Store for Steady {
    async fn ping(&self) -> Result<()> {
        steady(self.0.ping()).await
    }
    async fn create_key(
        &self,
        user_name: &str,
        role: Role,
        key_hash: &str,
        prefix: &str,
        now: i64,
    ) -> Result<KeyInfo> {
        steady(self.0.create_key(user_name, role, key_hash, prefix, now)).await
    }
    async fn user_named(&self, name: &str, now: i64) -> Result<UserId> {
        steady(self.0.user_named(name, now)).await
    }
    async fn find_key(&self, key_hash: &str) -> Result<Option<Caller>> {
        steady(self.0.find_key(key_hash)).await
    }
    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        steady(self.0.list_keys()).await
    }
    async fn revoke_key(&self, id_or_prefix: &str, now: i64) -> Result<bool> {
        steady(self.0.revoke_key(id_or_prefix, now)).await
    }
    async fn count_keys(&self) -> Result<u64> {
        steady(self.0.count_keys()).await
    }
    async fn create_task(
        &self,
        task: NewTask,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created> {
        steady(self.0.create_task(task, idempotency)).await
    }
    async fn get_task(&self, id: &str) -> Result<Option<Task>> {
        steady(self.0.get_task(id)).await
    }
    async fn list_tasks(&self, query: &ListQuery) -> Result<Vec<Task>> {
        steady(self.0.list_tasks(query)).await
    }
    async fn update_task(&self, task: &Task, fence: Fence) -> Result<bool> {
        steady(self.0.update_task(task, fence)).await
    }
    async fn active_tasks(&self) -> Result<Vec<Task>> {
        steady(self.0.active_tasks()).await
    }
    async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        steady(self.0.status_counts()).await
    }
    async fn delete_task(&self, id: &str) -> Result<bool> {
        steady(self.0.delete_task(id)).await
    }
    async fn purge_idempotency(&self, before: i64) -> Result<u64> {
        steady(self.0.purge_idempotency(before)).await
    }
    fn shared(&self) -> bool {
        self.0.shared()
    }
    fn node_id(&self) -> &str {
        self.0.node_id()
    }
    async fn claim_tasks(
        &self,
        provider: &str,
        limit: u32,
        max: u32,
        now: i64,
    ) -> Result<Vec<Task>> {
        steady(self.0.claim_tasks(provider, limit, max, now)).await
    }
    async fn renew_leases(&self, now: i64, held: &[TaskId]) -> Result<u64> {
        steady(self.0.renew_leases(now, held)).await
    }
    async fn leased_here(&self) -> Result<Vec<TaskId>> {
        steady(self.0.leased_here()).await
    }
    async fn release_leases(&self) -> Result<u64> {
        steady(self.0.release_leases()).await
    }
    async fn take_over(&self, max: u32) -> Result<Vec<Task>> {
        steady(self.0.take_over(max)).await
    }
    async fn overdue_tasks(&self, now: i64, limit: u32) -> Result<Vec<Task>> {
        steady(self.0.overdue_tasks(now, limit)).await
    }
    async fn changes_since(&self, since: i64, limit: u32) -> Result<Vec<(Change, i64)>> {
        steady(self.0.changes_since(since, limit)).await
    }
    async fn subscribe(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Change>>> {
        steady(self.0.subscribe()).await
    }
    fn pool_stats(&self) -> PoolStats {
        self.0.pool_stats()
    }
    async fn facts(&self) -> Result<DbFacts> {
        steady(self.0.facts()).await
    }
    fn accounts(&self) -> &dyn gengate_store::Accounts {
        self.0.accounts()
    }
    async fn webhook_secret(&self, user_id: UserId, candidate: &str) -> Result<String> {
        steady(self.0.webhook_secret(user_id, candidate)).await
    }
    async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        steady(self.0.due_deliveries(now, limit)).await
    }
    async fn record_delivery(&self, delivery: &Delivery) -> Result<()> {
        steady(self.0.record_delivery(delivery)).await
    }
    async fn task_deliveries(&self, task_id: &str) -> Result<Vec<Delivery>> {
        steady(self.0.task_deliveries(task_id)).await
    }
}
