//! Provider callbacks: checked and handed to the dispatcher, which polls
//! the task now (a callback only says "look").

use std::sync::Arc;

use gengate_engine::dispatch::{CallbackRefusal, Dispatcher};
use gengate_engine::metrics::Metrics;

#[derive(Clone)]
pub struct CallbackService {
    dispatcher: Dispatcher,
    metrics: Arc<Metrics>,
}

impl CallbackService {
    pub fn new(dispatcher: Dispatcher, metrics: Arc<Metrics>) -> Self {
        Self {
            dispatcher,
            metrics,
        }
    }

    /// Takes a callback from `provider` about task `task_id`, carrying
    /// `token`. Returns whether the task is checked now (`false`: a late or
    /// repeated callback, nothing to do).
    ///
    /// # Errors
    /// [`CallbackRefusal`] says why it is refused.
    pub fn receive(
        &self,
        provider: &str,
        task_id: &str,
        token: &str,
        body: &[u8],
    ) -> Result<bool, CallbackRefusal> {
        let checking = self.dispatcher.callback(provider, task_id, token, body)?;
        self.metrics.callback(provider, checking);
        Ok(checking)
    }
}
