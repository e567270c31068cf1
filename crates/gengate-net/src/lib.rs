//! gengate's outbound network: every HTTP client it uses is built here
//! ([`Outbound`]), for a purpose (a provider API, object storage, URLs that
//! come from providers and users, gengate's own tools), with one set of TLS
//! roots ([`Trust`]), one resolver, one address policy for untrusted
//! destinations ([`guard`]) and one way to say what went wrong
//! ([`Failure`]), URLs redacted ([`redact`]).
//!
//! It is a crate of its own because the provider adapters, below the engine
//! in the dependency order, use it too.

mod body;
mod client;
mod failure;
pub mod guard;
pub mod redact;
mod tls;

pub use body::{ReadError, read_capped};
pub use client::{BuildError, Outbound};
pub use failure::{Cause, Failure, NoSuchHost, forbidden_in};
pub use guard::{Destinations, Forbidden, Lookup, SystemLookup, check_url, is_public};
pub use redact::{redact_text, redact_url};
pub use tls::{Trust, TrustError, crypto_provider};
