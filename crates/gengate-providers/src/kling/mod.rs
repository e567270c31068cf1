//! The Kling (可灵) adapter: text→video, image→video and image generation
//! on Kling's `/v1` REST API (providers.md §3).
//!
//! It owns the wire format: the HS256 JWT it signs every request with (cached
//! and re-minted before it runs out), the `{code, message, request_id, data}`
//! envelope, the operation family a task belongs to (kept in the provider task
//! id, `<family>:<task_id>`, because a task can only be queried under the path
//! it was created on), and the classification of Kling's error codes into what
//! the dispatcher does next. Rendering the request fields is the model
//! template's job: `req.params` is sent as is, plus `external_task_id` and
//! `callback_url`, which this adapter owns.
//!
//! Kling answers errors with a non-2xx status *and* a `code`; the code
//! decides (1102 "resource pack used up" and 1303 "concurrency full" are both
//! HTTP 429), the status only when the code is unknown.
//!
//! Files by job: `settings` (how to reach an account), `jwt` (the token),
//! `family` (the operation a task belongs to), `client` (one call, its token
//! and its envelope), `codes` (answers and codes by what happens next),
//! `tasks` (task objects read into states and outputs), `callback` (the
//! posted task) and `provider` (the [`Provider`](crate::Provider)
//! implementation).

mod callback;
mod client;
mod codes;
mod family;
mod jwt;
mod provider;
mod settings;
mod tasks;

#[cfg(test)]
mod tests;

pub use client::Kling;
pub use settings::{DEFAULT_BASE_URL, KlingSettings};
