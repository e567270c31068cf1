//! Loading: defaults, then the file, then the environment; and what the
//! rest of gengate reads off a loaded configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gengate_core::ModelSpec;
use serde_json::json;

use crate::env::{Env, env_overlay};
use crate::error::{ConfigError, invalid};
use crate::types::Config;

impl Config {
    /// Loads defaults, then `file` (if any), then `GENGATE_*` variables.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or key at fault.
    pub fn load(file: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        let warnings = env_overlay(&mut table, env)?;
        let mut cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                invalid(
                    if key == "." {
                        "(top level)".to_owned()
                    } else {
                        key
                    },
                    e.into_inner().to_string(),
                )
            })?;
        cfg.warnings = warnings;
        cfg.finish()
    }

    /// The store URL, defaulting to SQLite in the data dir.
    pub fn store_url(&self) -> String {
        self.store.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.server.data_dir.join("gengate.db").display()
            )
        })
    }

    /// Where local media lives.
    pub fn media_dir(&self) -> PathBuf {
        self.server.data_dir.join("media")
    }

    /// The public base URL, given the address actually bound.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.server.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{bound}"),
        }
    }

    /// The model catalog as domain objects.
    pub fn catalog(&self) -> Vec<ModelSpec> {
        self.models
            .iter()
            .map(|(name, m)| ModelSpec {
                name: name.clone(),
                provider: m.provider.clone(),
                kind: m.kind,
                description: m.description.clone(),
                max_attempts: m.max_attempts,
                deadline_ms: m.deadline.0.as_millis() as i64,
                expected_seconds: (m.expected.0 + m.expected.1).as_secs_f64() / 2.0,
                expected_range: (m.expected.0.as_secs_f64(), m.expected.1.as_secs_f64()),
                fields: m.input.clone(),
                endpoint: m.endpoint.clone(),
                params: m.params.as_ref().map_or_else(
                    || serde_json::Value::Object(Default::default()),
                    toml_to_json,
                ),
                failover: m.failover.clone(),
                price: m.price.clone(),
                refund_on: m.refund_on.as_ref().map_or_else(Default::default, |names| {
                    gengate_core::RefundOn::from_names(names.iter().map(String::as_str))
                        .expect("refund_on was validated")
                }),
            })
            .collect()
    }
}

/// A TOML table as JSON (templates are written in TOML, sent as JSON).
pub(crate) fn toml_to_json(t: &toml::Table) -> serde_json::Value {
    fn conv(v: &toml::Value) -> serde_json::Value {
        match v {
            toml::Value::String(s) => json!(s),
            toml::Value::Integer(i) => json!(i),
            toml::Value::Float(f) => json!(f),
            toml::Value::Boolean(b) => json!(b),
            toml::Value::Datetime(d) => json!(d.to_string()),
            toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(conv).collect()),
            toml::Value::Table(t) => toml_to_json(t),
        }
    }
    serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), conv(v))).collect())
}
