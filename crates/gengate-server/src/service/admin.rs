//! Operations: readiness, metrics, the admin's figures and keys.

use std::sync::Arc;
use std::time::Duration;

use gengate_core::Role;
use gengate_engine::dispatch::{Dispatcher, LaneStats};
use gengate_engine::metrics::Metrics;
use gengate_store::{KeyInfo, StatusCount, Store};

use super::ServiceError;
use super::auth::AuthService;

/// How long readiness waits for the store to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this node can serve.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub store_ok: bool,
    pub dispatcher_ok: bool,
}

impl Readiness {
    pub fn ready(self) -> bool {
        self.store_ok && self.dispatcher_ok
    }
}

/// What an admin sees of the whole deployment.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Live dispatcher figures per provider.
    pub providers: Vec<LaneStats>,
    /// Stored task counts per provider and status.
    pub tasks: Vec<StatusCount>,
}

#[derive(Clone)]
pub struct AdminService {
    store: Arc<dyn Store>,
    dispatcher: Dispatcher,
    metrics: Arc<Metrics>,
    auth: AuthService,
}

impl AdminService {
    pub fn new(
        store: Arc<dyn Store>,
        dispatcher: Dispatcher,
        metrics: Arc<Metrics>,
        auth: AuthService,
    ) -> Self {
        Self {
            store,
            dispatcher,
            metrics,
            auth,
        }
    }

    /// The store answers (within 2 s) and the dispatcher runs.
    pub async fn readiness(&self) -> Readiness {
        let store_ok = matches!(
            tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await,
            Ok(Ok(()))
        );
        Readiness {
            store_ok,
            dispatcher_ok: self.dispatcher.is_running(),
        }
    }

    /// The Prometheus text of this node's metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics
            .render(&self.dispatcher.gauges(), &self.store.pool_stats())
    }

    /// Queues, in-flight tasks and latency per provider; stored task counts.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn stats(&self) -> Result<Stats, ServiceError> {
        let tasks = self.store.status_counts().await?;
        Ok(Stats {
            providers: self.dispatcher.stats(),
            tasks,
        })
    }

    /// Makes an API key for `user` (created on first use); the secret is
    /// returned only here.
    ///
    /// # Errors
    /// An invalid user name, or a store failure.
    pub async fn create_key(
        &self,
        user: &str,
        role: Role,
    ) -> Result<(KeyInfo, String), ServiceError> {
        self.auth.create_key(user, role).await
    }
}
