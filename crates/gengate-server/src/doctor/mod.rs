//! `gengate doctor`: checks a deployment the way a careful operator's
//! checklist would, and says for each finding how to fix it.
//!
//! Every check is independent: one failing (an unreachable store, say) does
//! not hide the others. The checks build what `serve` would build (the
//! outbound clients, the media backend, the provider adapters) through
//! [`crate::app`], so what doctor checks is what runs.

mod finding;
mod host;
mod run;
mod services;
mod store;
#[cfg(test)]
mod tests;

pub use finding::{Finding, Level, Options, redact};
pub use run::{render, run};
