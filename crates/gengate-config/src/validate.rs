//! Validation: the rules across keys that their types cannot say, checked
//! once at load, each failure naming its key.

use std::time::Duration;

use crate::demo::{default_sim, demo_models};
use crate::error::{ConfigError, invalid};
use crate::load::toml_to_json;
use crate::types::{Config, MediaBackend, ProviderKind};
use crate::units::{HttpUrl, Secret};

impl Config {
    /// Fills defaults that depend on other keys and checks cross-key rules.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn finish(mut self) -> Result<Config, ConfigError> {
        if self.providers.is_empty() {
            self.providers.insert("sim".into(), default_sim());
        }
        // The demo catalog runs on the simulator; an operator who configured
        // only real providers gets no demo models pointing at a missing one.
        if self.models.is_empty()
            && self
                .providers
                .get("sim")
                .is_some_and(|p| p.kind == ProviderKind::Sim)
        {
            self.models = demo_models();
        }
        for (i, origin) in self.server.cors_origins.iter().enumerate() {
            check_origin(origin)
                .map_err(|why| invalid(format!("server.cors_origins[{i}]"), why))?;
        }
        if self.store.pool_size == 0 {
            return Err(invalid("store.pool_size", "must be at least 1"));
        }
        if self.cluster.lease.0 < Duration::from_secs(1) {
            return Err(invalid(
                "cluster.lease",
                "must be at least 1s (heartbeats go every third of it)",
            ));
        }
        if let Some(url) = &self.cluster.redis_url
            && let Err(why) = check_redis_url(url)
        {
            return Err(invalid("cluster.redis_url", why));
        }
        for (name, p) in &self.providers {
            if p.concurrency == 0 {
                return Err(invalid(
                    format!("providers.{name}.concurrency"),
                    "must be at least 1",
                ));
            }
            if p.daily_credits.is_some_and(|c| c < 0) {
                return Err(invalid(
                    format!("providers.{name}.daily_credits"),
                    "must not be negative",
                ));
            }
            if !(0.0..=1.0).contains(&p.fail_rate) {
                return Err(invalid(
                    format!("providers.{name}.fail_rate"),
                    "must be between 0 and 1",
                ));
            }
            if p.callback_base_url
                .as_ref()
                .is_some_and(HttpUrl::has_query_or_fragment)
            {
                return Err(invalid(
                    format!("providers.{name}.callback_base_url"),
                    "must be a base URL without a query or fragment (gengate appends its own path and query)",
                ));
            }
            if !(p.poll_rate > 0.0 && p.poll_rate.is_finite()) {
                return Err(invalid(
                    format!("providers.{name}.poll_rate"),
                    "must be a positive number of requests per second",
                ));
            }
            if p.breaker_failures == 0 {
                return Err(invalid(
                    format!("providers.{name}.breaker_failures"),
                    "must be at least 1",
                ));
            }
            let required: &[(&str, &Secret)] = match p.kind {
                ProviderKind::Sim => &[],
                ProviderKind::Runninghub => &[("api_key", &p.api_key)],
                ProviderKind::Hunyuan => {
                    &[("secret_id", &p.secret_id), ("secret_key", &p.secret_key)]
                }
                ProviderKind::Kling => {
                    &[("access_key", &p.access_key), ("secret_key", &p.secret_key)]
                }
            };
            for (key, value) in required {
                if value.expose().trim().is_empty() {
                    return Err(invalid(
                        format!("providers.{name}.{key}"),
                        format!("a {} provider needs its {key}", p.kind.as_str()),
                    ));
                }
            }
        }
        for (name, m) in &self.models {
            if !self.providers.contains_key(&m.provider) {
                let known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
                return Err(invalid(
                    format!("models.{name}.provider"),
                    format!(
                        "no provider named {:?}; configured: {}",
                        m.provider,
                        known.join(", ")
                    ),
                ));
            }
            if m.max_attempts == 0 {
                return Err(invalid(
                    format!("models.{name}.max_attempts"),
                    "must be at least 1",
                ));
            }
            if let Some(names) = &m.refund_on {
                gengate_core::RefundOn::from_names(names.iter().map(String::as_str))
                    .map_err(|why| invalid(format!("models.{name}.refund_on"), why))?;
            }
            if let Some(price) = &m.price {
                check_price(price, &m.input)
                    .map_err(|why| invalid(format!("models.{name}.price"), why))?;
            }
            for (field, spec) in &m.input {
                spec.check()
                    .map_err(|msg| invalid(format!("models.{name}.input.{field}"), msg))?;
            }
            if let Some(params) = &m.params {
                let template = toml_to_json(params);
                for used in gengate_core::mapping::placeholders(&template) {
                    if !m.input.contains_key(&used) {
                        return Err(invalid(
                            format!("models.{name}.params"),
                            format!("refers to {{{{{used}}}}}, which is not an input of the model"),
                        ));
                    }
                }
            }
            if let Some(endpoint) = &m.endpoint {
                let kind = self.providers[&m.provider].kind;
                let known: &[&str] = match kind {
                    ProviderKind::Sim => &[],
                    ProviderKind::Runninghub => &["workflow", "app"],
                    ProviderKind::Hunyuan => &["image", "video"],
                    ProviderKind::Kling => &["text2video", "image2video", "image"],
                };
                if !known.contains(&endpoint.as_str()) {
                    return Err(invalid(
                        format!("models.{name}.endpoint"),
                        format!(
                            "{} has no endpoint {endpoint:?}; it has: {}",
                            kind.as_str(),
                            known.join(", ")
                        ),
                    ));
                }
            }
            if let Some(f) = &m.failover {
                let Some(fp) = self.providers.get(f) else {
                    return Err(invalid(
                        format!("models.{name}.failover"),
                        format!("no provider named {f:?}"),
                    ));
                };
                if f == &m.provider || fp.kind != self.providers[&m.provider].kind {
                    return Err(invalid(
                        format!("models.{name}.failover"),
                        "must name another provider entry of the same kind (its request template is reused)",
                    ));
                }
            }
        }
        if self.dispatch.poll_initial.0 > self.dispatch.poll_max.0 {
            return Err(invalid(
                "dispatch.poll_initial",
                "must not be longer than dispatch.poll_max",
            ));
        }
        let m = &self.media;
        if m.concurrency == 0 {
            return Err(invalid("media.concurrency", "must be at least 1"));
        }
        if m.max_attempts == 0 {
            return Err(invalid("media.max_attempts", "must be at least 1"));
        }
        if m.backend == MediaBackend::S3 {
            let s3 = &m.s3;
            if s3.endpoint.is_none() {
                return Err(invalid(
                    "media.s3.endpoint",
                    "the s3 backend needs an endpoint",
                ));
            }
            if s3.bucket.trim().is_empty() {
                return Err(invalid("media.s3.bucket", "the s3 backend needs a bucket"));
            }
            for (key, v) in [
                ("access_key", &s3.access_key),
                ("secret_key", &s3.secret_key),
            ] {
                if v.expose().trim().is_empty() {
                    return Err(invalid(
                        format!("media.s3.{key}"),
                        "the s3 backend needs it",
                    ));
                }
            }
            if s3.public_base_url.is_none() {
                return Err(invalid(
                    "media.s3.public_base_url",
                    "the s3 backend needs the public (CDN) base URL of the bucket",
                ));
            }
            if s3.part_size.0 < 5 << 20 || s3.part_size.0 > 512 << 20 {
                return Err(invalid(
                    "media.s3.part_size",
                    "must be between 5MiB and 512MiB",
                ));
            }
        }
        if self.server.body_limit.0 < 1024 {
            return Err(invalid("server.body_limit", "must be at least 1KiB"));
        }
        Ok(self)
    }
}

/// A Redis URL gengate can use: `redis://` or `rediss://` (TLS), a host, and
/// at most a database number for a path.
fn check_redis_url(text: &str) -> Result<(), String> {
    const FORM: &str = "must be redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB]";
    let url = url::Url::parse(text).map_err(|_| FORM.to_owned())?;
    if !matches!(url.scheme(), "redis" | "rediss") || !url.has_host() {
        return Err(FORM.to_owned());
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("{FORM}: the path is a database number, not {db:?}"));
    }
    Ok(())
}

/// A price is not negative and names only inputs the model has.
fn check_price(
    price: &gengate_core::Price,
    input: &std::collections::BTreeMap<String, gengate_core::FieldSpec>,
) -> Result<(), String> {
    use gengate_core::Price;
    let (amount, field) = match price {
        Price::Flat(n) => (*n, None),
        Price::PerOutput { per_output, input } => (*per_output, input.as_deref()),
        Price::PerSecond { per_second, input } => (*per_second, Some(input.as_str())),
    };
    if amount < 0 {
        return Err("must not be negative".into());
    }
    match field {
        Some(f) if !input.contains_key(f) => Err(format!(
            "prices by input.{f}, which is not an input of the model"
        )),
        _ => Ok(()),
    }
}

/// A web origin as browsers send it: `scheme://host[:port]`, nothing more.
fn check_origin(origin: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{origin:?} is not an origin like https://app.example.com (no path, no trailing slash)"
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    let host_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if !matches!(scheme, "http" | "https") || !host_ok {
        return Err(bad());
    }
    Ok(())
}
