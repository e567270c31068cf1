//! Configuration: one typed tree with built-in defaults, overlaid by an
//! optional TOML file, overlaid by `GENGATE_SECTION__KEY` environment
//! variables (command-line flags, applied by the binary, win over all).
//!
//! Every key has a default, so `gengate serve` runs with no file at all:
//! SQLite and media under `./data`, the in-process `sim` provider and a demo
//! model catalog ([`demo`]). Unknown keys and bad values are refused at load
//! with a message naming the key: by their types ([`units`]: durations,
//! sizes, URLs) as the file is read, then by the rules across keys
//! ([`validate`]).
//!
//! - [`types`]: every section and key, with its default;
//! - [`units`]: the value types;
//! - [`env`]: the environment overlay;
//! - [`load`]: defaults, file, environment, and what the rest of gengate
//!   reads off a configuration;
//! - [`validate`]: the cross-key rules;
//! - [`demo`]: the built-in demo provider and models;
//! - [`error`]: what goes wrong, as a `ConfigError`.

pub mod demo;
pub mod env;
pub mod error;
pub mod load;
pub mod types;
pub mod units;
pub mod validate;

pub use env::{ENV_PREFIX, Env, ProcessEnv};
pub use error::ConfigError;
pub use types::*;
pub use units::{Bytes, Dur, DurRange, HttpUrl, Secret};
