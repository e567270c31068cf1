//! Mock providers and the simulated provider, for tests, capacity runs and
//! a gengate that runs without any provider account.
//!
//! - Mock providers: HTTP servers that behave like a provider account
//!   (`gengate mock-provider --kind …`). Each speaks its provider's wire
//!   protocol strictly (paths, envelopes, auth, status progression, error
//!   codes, callbacks), refuses work beyond the account's concurrency the way
//!   the real service does, and keeps a ledger at `GET /_mock/stats` so a
//!   test can prove that no task was submitted twice and that the account's
//!   limit held. They serve HTTP, or HTTPS with a throwaway CA ([`tls`]).
//! - [`sim`]: the simulated provider `gengate serve` runs on by default, in
//!   process or as a client of the `sim` mock.
//! - [`render`]: the real, decodable media both of them hand back.
//!
//! The adapters these mocks stand in front of, and the [`Provider`] trait,
//! are `gengate-providers`'; nothing there depends on this crate.
//!
//! [`Provider`]: gengate_providers::Provider

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod account;
mod config;
mod routes;

pub mod hunyuan;
pub mod kling;
pub mod render;
pub mod runninghub;
pub mod sim;
pub mod sim_server;
pub mod tls;

pub use config::{Faults, MockConfig, MockKind};
pub use sim::{Behavior, HttpSim, InProcessSim};
pub use sim_server::{serve_sim, sim_router};

/// The router of a mock of `kind`.
pub fn router(kind: MockKind, cfg: MockConfig) -> Router {
    match kind {
        MockKind::Sim => sim_router(cfg),
        MockKind::Runninghub => runninghub::router(cfg),
        MockKind::Hunyuan => hunyuan::router(cfg),
        MockKind::Kling => kling::router(cfg),
    }
}

/// Serves a mock of `kind` on `listener` until `shutdown` fires: over TLS
/// with `tls` (its `public_url` then an `https://` one), else plain HTTP.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    kind: MockKind,
    listener: TcpListener,
    cfg: MockConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    match tls {
        Some(config) => tls::serve_tls(listener, router(kind, cfg), config, shutdown).await,
        None => {
            axum::serve(listener, router(kind, cfg))
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    }
}
