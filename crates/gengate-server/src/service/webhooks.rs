//! Client webhooks as their owner sees them: the signing secret, and each
//! task's deliveries.

use std::sync::Arc;

use gengate_engine::webhooks::Webhooks;
use gengate_store::{Caller, Delivery, Store};

use super::ServiceError;
use super::tasks::TaskService;

#[derive(Clone)]
pub struct WebhookService {
    webhooks: Webhooks,
    store: Arc<dyn Store>,
    tasks: TaskService,
}

impl WebhookService {
    pub fn new(webhooks: Webhooks, store: Arc<dyn Store>, tasks: TaskService) -> Self {
        Self {
            webhooks,
            store,
            tasks,
        }
    }

    /// The caller's signing secret (made on first use).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn secret(&self, caller: &Caller) -> Result<String, ServiceError> {
        super::key_only(caller)?;
        Ok(self.webhooks.secret(caller.user_id).await?)
    }

    /// The deliveries of one of the caller's tasks.
    ///
    /// # Errors
    /// As [`TaskService::get`]: a missing task and someone else's alike.
    pub async fn deliveries(
        &self,
        caller: &Caller,
        task_id: &str,
    ) -> Result<Vec<Delivery>, ServiceError> {
        self.tasks.get(caller, task_id).await?;
        Ok(self.store.task_deliveries(task_id).await?)
    }
}
