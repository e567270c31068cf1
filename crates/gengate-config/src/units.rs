//! The value types of configuration keys: durations, byte sizes, secrets
//! and URLs, each parsed (and refused, with its reason) at load.

use std::time::Duration;

use gengate_core::units;
use serde::{Deserialize, Deserializer};

/// A duration written as `30s`, `500ms`, `10m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        units::parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// A duration range written as `2s..6s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurRange(pub Duration, pub Duration);

impl<'de> Deserialize<'de> for DurRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        units::parse_duration_range(&s)
            .map(|(a, b)| DurRange(a, b))
            .map_err(serde::de::Error::custom)
    }
}

/// A byte size written as `64KiB` or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Bytes(n)),
            Raw::S(s) => units::parse_bytes(&s)
                .map(Bytes)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A secret from config: never printed.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// An `http://` or `https://` URL with a host, checked at load. Kept as
/// written (so a base URL keeps its path), and read as a `&str`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl(String);

impl HttpUrl {
    /// Checks `text` is an absolute http(s) URL with a host.
    ///
    /// # Errors
    /// Why it is not.
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        match url::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                Ok(HttpUrl(text.to_owned()))
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") => Err(format!("{text:?} has no host")),
            Ok(u) => Err(format!(
                "must be an http:// or https:// URL, not {}:",
                u.scheme()
            )),
            Err(e) => Err(format!("must be an http:// or https:// URL ({e})")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it carries a query or a fragment.
    pub fn has_query_or_fragment(&self) -> bool {
        self.0.contains(['?', '#'])
    }
}

impl std::ops::Deref for HttpUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl std::str::FromStr for HttpUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        HttpUrl::parse(s)
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HttpUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}
