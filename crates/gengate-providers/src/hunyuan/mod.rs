//! Tencent Cloud Hunyuan: image generation (`SubmitHunyuanImageJob` /
//! `QueryHunyuanImageJob`, service `hunyuan`) and video generation
//! (`SubmitHunyuanToVideoJob` / `DescribeHunyuanToVideoJob`, service `vclm`),
//! both signed with TC3-HMAC-SHA256.
//!
//! This module owns the wire format, the signature and the classification
//! of Tencent's error codes. What a model sends (`Prompt`, `Resolution`,
//! `Style`, `Image`, `LogoAdd`, …) is the model's rendered template, sent as
//! is; retries, slots and storage of results are the dispatcher's.
//!
//! Tencent has no cancel, no client reference and no callbacks for these
//! actions: a task is followed by polling only, "cancel" just stops our
//! polling, and a submission whose answer was lost cannot be found again.
//!
//! Provider task ids are `image:<JobId>` and `video:<JobId>`: the query
//! action (and service) depends on which submit made the job.
//!
//! Files by job: `settings` (how to reach an account), `signing` (TC3),
//! `family` (the image and video actions), `client` (one signed call and
//! Tencent's envelope), `codes` (error codes by what happens next), `jobs`
//! (job answers read into states and outputs) and `provider` (the
//! [`Provider`](crate::Provider) implementation).

mod client;
mod codes;
mod family;
mod jobs;
mod provider;
mod settings;
mod signing;

#[cfg(test)]
mod tests;

pub use client::Hunyuan;
pub use settings::{DEFAULT_REGION, HunyuanSettings};
pub use signing::{MAX_CLOCK_SKEW_SECS, Tc3Signature, sign};
