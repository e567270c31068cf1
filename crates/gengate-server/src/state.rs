//! What the HTTP handlers share: the services (the only thing they call)
//! and the HTTP settings. One `Arc`, since every extractor of every request
//! clones it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gengate_engine::metrics::Metrics;

use crate::service::accounts::AccountService;
use crate::service::admin::AdminService;
use crate::service::auth::AuthService;
use crate::service::callbacks::CallbackService;
use crate::service::events::EventService;
use crate::service::tasks::TaskService;
use crate::service::uploads::UploadService;
use crate::service::webhooks::WebhookService;

/// The handlers' state.
#[derive(Clone)]
pub struct App(Arc<AppState>);

impl App {
    pub fn new(state: AppState) -> Self {
        App(Arc::new(state))
    }
}

impl std::ops::Deref for App {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.0
    }
}

/// What [`App`] shares.
pub struct AppState {
    pub tasks: TaskService,
    pub uploads: UploadService,
    pub events: EventService,
    pub admin: AdminService,
    pub accounts: AccountService,
    pub callbacks: CallbackService,
    pub webhooks: WebhookService,
    pub auth: AuthService,
    /// Request counts and latencies, kept by the request middleware.
    pub metrics: Arc<Metrics>,
    /// Where local media is served from (`media.backend = "local"`).
    pub media_dir: PathBuf,
    pub body_limit: usize,
    /// How long a request may take (a long poll adds its wait; event
    /// streams have no limit).
    pub request_timeout: Duration,
    /// Web origins allowed to call the API from a browser.
    pub cors_origins: Vec<String>,
}
