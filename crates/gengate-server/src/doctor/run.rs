//! Running every check, and the report.

use std::time::Duration;

use gengate_config::Config;
use gengate_net::Outbound;
use gengate_store::{OpenOptions, StoreError};

use super::finding::{Finding, Level, Options, redact};
use super::host::{check_disk, check_open_files, check_video_tools};
use super::services::{check_media, check_providers, check_redis};
use super::store::{check_ledger, check_store};

/// Runs every check.
pub async fn run(cfg: &Config, opts: &Options) -> Vec<Finding> {
    let mut out = Vec::new();
    let net = match crate::app::outbound(cfg) {
        Ok(net) => {
            out.push(Finding::pass(
                "tls trust",
                format!("outbound TLS trusts {}", net.trust().describe()),
            ));
            net
        }
        Err(e) => {
            out.push(Finding::new(
                "tls trust",
                Level::Fail,
                format!("{e:#}"),
                "point tls.ca_file at a readable PEM file of CA certificates, or remove it",
            ));
            Outbound::default()
        }
    };
    let url = cfg.store_url();
    let open = OpenOptions {
        node_id: format!("doctor-{}", std::process::id()),
        lease: cfg.cluster.lease.0,
        pool_size: 2,
        pool_timeout: Duration::from_secs(5),
        migrate: false,
        ca_file: cfg.tls.ca_file.clone(),
    };
    let store = match gengate_store::open_with(&url, &open).await {
        Ok(s) => Some(s),
        Err(StoreError::Config(m)) if m.contains("gengate migrate") => {
            out.push(Finding::new(
                "store migrated",
                Level::Fail,
                m,
                "run `gengate migrate` once (with the same config) before starting the nodes",
            ));
            None
        }
        Err(e) => {
            out.push(Finding::new(
                "store reachable",
                Level::Fail,
                format!("{}: {e}", redact(&url)),
                "check store.url (host, port, user, password, database) and that the database server runs and accepts this host",
            ));
            None
        }
    };
    if let Some(store) = &store {
        match store.facts().await {
            Ok(facts) => {
                check_store(cfg, opts, &facts, &mut out);
                out.push(check_ledger(&**store).await);
            }
            Err(e) => out.push(Finding::new(
                "store reachable",
                Level::Fail,
                e.to_string(),
                "check the database server and its logs",
            )),
        }
    }
    out.push(check_open_files(cfg, opts));
    out.push(check_disk(&cfg.server.data_dir));
    out.push(check_video_tools());
    out.push(check_media(cfg, &net).await);
    if let Some(url) = &cfg.cluster.redis_url {
        out.push(check_redis(url, &net).await);
    }
    if !opts.skip_providers {
        check_providers(cfg, &net, &mut out).await;
    }
    out
}

/// The findings as text, one line each with its fix below.
pub fn render(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        let tag = match f.level {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        s.push_str(&format!("{tag}  {:<22} {}\n", f.check, f.detail));
        if !f.fix.is_empty() {
            s.push_str(&format!("      {:<22} fix: {}\n", "", f.fix));
        }
    }
    let worst = findings
        .iter()
        .map(|f| f.level)
        .max()
        .unwrap_or(Level::Pass);
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    s.push_str(&format!(
        "\n{} passed, {} warnings, {} failed{}\n",
        count(Level::Pass),
        count(Level::Warn),
        count(Level::Fail),
        if worst == Level::Fail {
            ": fix the failures before serving"
        } else {
            ""
        }
    ));
    s
}
