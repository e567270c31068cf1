//! RunningHub (ComfyUI workflow cloud) through its legacy task API
//! (`/task/openapi/*`, `/uc/openapi/*`): submitting workflow and AI-app runs,
//! following them by their outputs, cancelling them, reading the `TASK_END`
//! webhook and checking the account.
//!
//! Wire facts (see `providers.md` §1): every answer is HTTP 200 with a
//! `{code, msg, data}` envelope whose types wobble (numbers as strings), the
//! key travels in the body as `apiKey` (`apikey` on the account call), and
//! "still queued/running" comes back as the business codes `813`/`804` on
//! `outputs`. The adapter classifies every answer by what the dispatcher does
//! next ([`ProviderError`]); it never logs bodies, prompts or the key.
//!
//! Operations ([`SubmitRequest::endpoint`]): `workflow` (the default for both
//! kinds) runs `params.workflowId` through `/task/openapi/create`; `app` runs
//! `params.webappId` through `/task/openapi/ai-app/run`. The provider task id
//! is RunningHub's bare `taskId` (a 19-digit number, always carried as a
//! string). RunningHub keeps no client reference, so a lost submission
//! cannot be looked up ([`Provider::find_by_reference`] is unsupported).
//!
//! Files by job: `settings` (how to reach an account), `api` (paths and
//! business codes), `client` (one call and its envelope), `request` (the
//! create body), `outputs` (answers read into states, failures and files),
//! `callback` (the `TASK_END` webhook) and `provider` (the [`Provider`]
//! implementation that puts them together).
//!
//! [`Provider`]: crate::Provider
//! [`Provider::find_by_reference`]: crate::Provider::find_by_reference
//! [`ProviderError`]: crate::ProviderError
//! [`SubmitRequest::endpoint`]: crate::SubmitRequest::endpoint

mod api;
mod callback;
mod client;
mod outputs;
mod provider;
mod request;
mod settings;

#[cfg(test)]
mod tests;

pub use client::RunningHub;
pub use settings::{DEFAULT_BASE_URL, RunningHubSettings};
