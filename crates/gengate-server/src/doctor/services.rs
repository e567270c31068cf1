//! What gengate talks to: the media backend, Redis, and each provider
//! (reachable, and accepting the credentials).

use std::sync::Arc;
use std::time::Duration;

use gengate_config::{Config, MediaBackend};
use gengate_net::Outbound;

use super::finding::{Finding, Level, redact};
use crate::now_ms;

pub(super) async fn check_media(cfg: &Config, net: &Outbound) -> Finding {
    let media = match crate::app::media(cfg, &cfg.public_url(cfg.server.listen), net) {
        Ok(m) => m,
        Err(e) => {
            return Finding::new(
                "media writable",
                Level::Fail,
                format!("{e:#}"),
                "fix the [media] settings",
            );
        }
    };
    let key = format!("doctor/{}-{}.txt", std::process::id(), now_ms());
    let write = async {
        let mut w = media.backend.writer(&key, "text/plain").await?;
        w.write(b"gengate doctor probe\n").await?;
        w.finish().await?;
        media.backend.delete(&key).await
    };
    let backend = match cfg.media.backend {
        MediaBackend::Local => format!("local {}", cfg.media_dir().display()),
        MediaBackend::S3 => format!("s3 bucket {}", cfg.media.s3.bucket),
    };
    match tokio::time::timeout(Duration::from_secs(15), write).await {
        Ok(Ok(())) => Finding::pass(
            "media writable",
            format!("wrote and deleted a probe object ({backend})"),
        ),
        Ok(Err(e)) => Finding::new(
            "media writable",
            Level::Fail,
            format!("{backend}: {e}"),
            "check the media directory's permissions, or the S3 endpoint, bucket and keys",
        ),
        Err(_) => Finding::new(
            "media writable",
            Level::Fail,
            format!("{backend}: no answer in 15 s"),
            "check the S3 endpoint is reachable from this host",
        ),
    }
}

pub(super) async fn check_redis(url: &str, net: &Outbound) -> Finding {
    let redis = match gengate_engine::redis::Redis::open(url, net.trust(), Duration::from_secs(2)) {
        Ok(r) => r,
        Err(e) => {
            return Finding::new(
                "redis",
                Level::Fail,
                format!("cluster.redis_url: {e}"),
                "fix cluster.redis_url (redis://HOST:PORT[/DB] or rediss:// for TLS)",
            );
        }
    };
    match redis.query::<String>(&::redis::cmd("PING")).await {
        Ok(_) => Finding::pass("redis", format!("{} answers", redact(url))),
        Err(e) => Finding::new(
            "redis",
            Level::Fail,
            format!("{}: {e}", redact(url)),
            "start Redis or fix cluster.redis_url (with rediss://, a private CA goes in tls.ca_file): without it, events between nodes and shared rate limits stop",
        ),
    }
}

pub(super) async fn check_providers(cfg: &Config, net: &Outbound, out: &mut Vec<Finding>) {
    let lanes = match crate::app::provider_lanes(cfg, &cfg.public_url(cfg.server.listen), net) {
        Ok(l) => l,
        Err(e) => {
            out.push(Finding::new(
                "provider credentials",
                Level::Fail,
                format!("{e:#}"),
                "fix the [providers] settings",
            ));
            return;
        }
    };
    let mut names: Vec<&String> = lanes.keys().collect();
    names.sort();
    for name in names {
        let provider: Arc<dyn gengate_providers::Provider> = lanes[name].provider.clone();
        let r = tokio::time::timeout(Duration::from_secs(20), provider.check_account()).await;
        out.push(match r {
            Ok(Ok(())) => Finding::pass("provider credentials", format!("{name}: accepted")),
            Ok(Err(gengate_providers::ProviderError::Unsupported)) => Finding::pass(
                "provider credentials",
                format!("{name}: nothing to check (simulated provider)"),
            ),
            Ok(Err(e @ gengate_providers::ProviderError::Unauthorized { .. })) => Finding::new(
                "provider credentials",
                Level::Fail,
                format!("{name}: {e}"),
                format!("fix providers.{name}'s keys (they were refused)"),
            ),
            Ok(Err(e @ gengate_providers::ProviderError::AccountExhausted { .. })) => Finding::new(
                "provider credentials",
                Level::Fail,
                format!("{name}: {e}"),
                format!("top up the {name} account: it accepts the keys but takes no work"),
            ),
            Ok(Err(gengate_providers::ProviderError::Unreachable { message, fix })) => {
                Finding::new(
                    "provider reachable",
                    Level::Fail,
                    format!("{name}: {message}"),
                    fix.map_or_else(
                        || format!("check providers.{name}.base_url and this host's route to the provider"),
                        |f| format!("{f} (providers.{name})"),
                    ),
                )
            }
            Ok(Err(e)) => Finding::new(
                "provider credentials",
                Level::Warn,
                format!("{name}: {e}"),
                format!("check providers.{name}.base_url and this host's route to the provider"),
            ),
            Err(_) => Finding::new(
                "provider reachable",
                Level::Fail,
                format!("{name}: no answer in 20 s"),
                format!("check this host's route to providers.{name}.base_url (a firewall, or a proxy the provider needs: providers.{name}.proxy)"),
            ),
        });
    }
}
