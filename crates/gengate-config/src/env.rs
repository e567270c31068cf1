//! The environment overlay: `GENGATE_SECTION__KEY=value` sets
//! `section.key`, over the file.
//!
//! A variable with no `__` that names no section (`GENGATE_BIN`, set by a
//! user's shell for something else) is not gengate's: it is ignored, with a
//! warning, instead of stopping gengate. Every other `GENGATE_*` variable
//! names a key, and a key that does not exist is refused as in the file.

use crate::error::{ConfigError, invalid};
use crate::types::SECTIONS;

/// Environment variables are read through this, so tests can pass their own.
pub trait Env {
    fn vars(&self) -> Vec<(String, String)>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

impl Env for Vec<(String, String)> {
    fn vars(&self) -> Vec<(String, String)> {
        self.clone()
    }
}

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "GENGATE_";

/// Applies `GENGATE_*` variables to `table`; returns a warning for each
/// variable ignored.
pub(crate) fn env_overlay(
    table: &mut toml::Table,
    env: &dyn Env,
) -> Result<Vec<String>, ConfigError> {
    let mut ignored = Vec::new();
    for (name, raw) in env.vars() {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !path.contains("__") && !SECTIONS.contains(&path.to_ascii_lowercase().as_str()) {
            ignored.push(format!(
                "ignored environment variable {name}: it names no configuration key \
                 (a key is set by {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}SERVER__LISTEN)"
            ));
            continue;
        }
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Err(invalid(
                name.clone(),
                "empty key segment in environment variable name",
            ));
        }
        // A value that parses as a TOML scalar (number, bool, array) is taken
        // as one; anything else is a string.
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut cur = &mut *table;
        for key in &keys[..keys.len() - 1] {
            let entry = cur
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = entry.as_table_mut().ok_or_else(|| {
                invalid(
                    keys.join("."),
                    format!("{name} sets a key inside a value that is not a table"),
                )
            })?;
        }
        cur.insert(keys[keys.len() - 1].clone(), value);
    }
    Ok(ignored)
}
