//! gengate's server: the HTTP API ([`api`]) and the rules behind it
//! ([`service`]), over the engine (`gengate_engine`) that moves tasks;
//! and the assembly of both from the configuration (`gengate_config`) in
//! [`app`].
//!
//! [`app::serve`] takes a listener that is already bound and a shutdown
//! token, so tests run exactly the server production runs.

pub mod api;
pub mod app;
pub mod doctor;
pub mod keys;
pub mod service;
pub mod state;

pub use gengate_engine::now_ms;
