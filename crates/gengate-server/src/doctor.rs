//! `gengate doctor`: checks a deployment the way a careful operator's
//! checklist would, and says for each finding how to fix it.
//!
//! Every check is independent: one failing (an unreachable store, say) does
//! not hide the others.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gengate_net::Outbound;
use gengate_store::{DbFacts, OpenOptions, StoreError};

use crate::config::{Config, MediaBackend};
use crate::now_ms;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

/// One check's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub detail: String,
    /// What to do about it (empty for a pass).
    pub fix: String,
}

impl Finding {
    fn new(
        check: &'static str,
        level: Level,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check,
            level,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    fn pass(check: &'static str, detail: impl Into<String>) -> Self {
        Self::new(check, Level::Pass, detail, "")
    }
}

/// What the checks assume beyond the config.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes that will share the store (the larger of this and the nodes
    /// seen recently is used).
    pub nodes: u32,
    /// Client connections one node is expected to hold at once.
    pub connections: u64,
    /// Skip the providers' credential checks (they call the provider).
    pub skip_providers: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: 1,
            connections: 1000,
            skip_providers: false,
        }
    }
}

/// Connections beyond the nodes' pools: PostgreSQL's LISTEN connection per
/// node is counted with the nodes; this is the margin for `gengate migrate`,
/// `keys`, a restart's overlap and an operator's console.
const ADMIN_CONNECTIONS: u64 = 5;

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
            Ok(facts) => check_store(cfg, opts, &facts, &mut out),
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
    out.push(check_media(cfg, &net).await);
    if let Some(url) = &cfg.cluster.redis_url {
        out.push(check_redis(url, &net).await);
    }
    if !opts.skip_providers {
        check_providers(cfg, &net, &mut out).await;
    }
    out
}

/// A URL with its password, if any, hidden.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

fn check_store(cfg: &Config, opts: &Options, f: &DbFacts, out: &mut Vec<Finding>) {
    out.push(Finding::pass("store reachable", f.engine.clone()));
    out.push(if f.schema_version == f.latest_version {
        Finding::pass(
            "store migrated",
            format!("schema version {}", f.schema_version),
        )
    } else if f.schema_version > f.latest_version {
        Finding::new(
            "store migrated",
            Level::Fail,
            format!(
                "schema version {} is newer than this build knows ({})",
                f.schema_version, f.latest_version
            ),
            "run the newer gengate build on every node",
        )
    } else {
        Finding::new(
            "store migrated",
            Level::Fail,
            format!(
                "schema version {} of {}",
                f.schema_version, f.latest_version
            ),
            "run `gengate migrate`",
        )
    });
    let shared = !cfg.store_url().starts_with("sqlite://");
    if !shared {
        return;
    }
    let nodes = u64::from(opts.nodes).max(f.nodes.len() as u64).max(1);
    let pool = u64::from(cfg.store.pool_size);
    // (+1 per node: the PostgreSQL event listener's own connection.)
    let listener = u64::from(f.engine.starts_with("PostgreSQL"));
    let per_node = pool + listener;
    let need = per_node * nodes + ADMIN_CONNECTIONS;
    let how = if listener > 0 {
        format!("store.pool_size {pool} + 1 listener")
    } else {
        format!("store.pool_size {pool}")
    };
    out.push(match f.max_connections {
        Some(max) if need > max => Finding::new(
            "connections",
            Level::Fail,
            format!(
                "{how} = {per_node} per node × {nodes} nodes + {ADMIN_CONNECTIONS} for tools = {need} > the database's max_connections {max}"
            ),
            format!(
                "lower store.pool_size to at most {} or raise max_connections to at least {need} (and the database's memory with it)",
                (max.saturating_sub(ADMIN_CONNECTIONS) / nodes)
                    .saturating_sub(listener)
                    .max(1)
            ),
        ),
        Some(max) if need * 10 > max * 8 => Finding::new(
            "connections",
            Level::Warn,
            format!("{need} of max_connections {max} would be in use at full pools"),
            "leave headroom: another node or a console session would be refused",
        ),
        Some(max) => Finding::pass(
            "connections",
            format!("{how} = {per_node} per node × {nodes} nodes + {ADMIN_CONNECTIONS} = {need} ≤ max_connections {max}"),
        ),
        None => Finding::new(
            "connections",
            Level::Warn,
            "the database did not report max_connections",
            "check it by hand against store.pool_size × nodes",
        ),
    });
    if cfg.media.backend == MediaBackend::Local {
        out.push(Finding::new(
            "media shared",
            Level::Warn,
            format!(
                "results are stored in {} (media.backend = \"local\")",
                cfg.media_dir().display()
            ),
            "unless every node mounts that same directory, use media.backend = \"s3\": other nodes cannot serve a result stored on one node's disk",
        ));
    }
    let ram = mem_total();
    let colocated = ["127.0.0.1", "localhost", "[::1]", "/var/run", "%2F"]
        .iter()
        .any(|h| cfg.store_url().contains(h));
    for (name, bytes) in &f.memory {
        let main_cache = name == "shared_buffers" || name == "innodb_buffer_pool_size";
        // Another host's memory is not this one's: only a database on this
        // machine is sized against its RAM.
        if !main_cache || !colocated {
            continue;
        }
        let Some(ram) = ram else { break };
        let share = *bytes as f64 / ram as f64;
        let (lo, hi) = if name == "shared_buffers" {
            (0.10, 0.40)
        } else {
            (0.25, 0.75)
        };
        let size = fmt_bytes(*bytes);
        out.push(if *bytes >= ram {
            Finding::new(
                "database memory",
                Level::Fail,
                format!("{name} = {size}, more than this machine's RAM ({})", fmt_bytes(ram)),
                format!("lower {name}: the database would swap or be killed"),
            )
        } else if colocated && share > hi {
            Finding::new(
                "database memory",
                Level::Warn,
                format!("{name} = {size} is {:.0}% of RAM on a machine gengate shares", share * 100.0),
                format!("keep {name} within {:.0}% of RAM when gengate runs beside the database", hi * 100.0),
            )
        } else if share < lo && *bytes < 512 * 1024 * 1024 {
            Finding::new(
                "database memory",
                Level::Warn,
                format!("{name} = {size} is only {:.1}% of RAM ({})", share * 100.0, fmt_bytes(ram)),
                format!(
                    "raise {name} towards {:.0}% of RAM so the task table's working set stays cached",
                    if colocated { lo * 100.0 } else { hi * 100.0 }
                ),
            )
        } else {
            Finding::pass("database memory", format!("{name} = {size} of {} RAM", fmt_bytes(ram)))
        });
    }
    let skew = now_ms() - f.now_ms;
    let mut worst = (skew.abs(), "this machine".to_owned());
    for n in &f.nodes {
        if n.clock_offset_ms.abs() > worst.0 {
            worst = (n.clock_offset_ms.abs(), format!("node {}", n.id));
        }
    }
    out.push(if worst.0 > 5_000 {
        Finding::new(
            "clock skew",
            Level::Fail,
            format!("{}'s clock is {} ms off the database's", worst.1, worst.0),
            "run NTP (chrony or systemd-timesyncd) on every node: retry times and deadlines are set by node clocks",
        )
    } else if worst.0 > 1_000 {
        Finding::new(
            "clock skew",
            Level::Warn,
            format!("{}'s clock is {} ms off the database's", worst.1, worst.0),
            "run NTP on every node",
        )
    } else {
        Finding::pass(
            "clock skew",
            format!(
                "within {} ms of the database's clock ({} nodes seen)",
                worst.0.max(skew.abs()),
                f.nodes.len()
            ),
        )
    });
}

fn fmt_bytes(b: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    if b as f64 >= GIB {
        format!("{:.1} GiB", b as f64 / GIB)
    } else {
        format!("{} MiB", b / (1024 * 1024))
    }
}

/// Total RAM from `/proc/meminfo`.
fn mem_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft open-file limit of this process, from `/proc/self/limits`.
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn check_open_files(cfg: &Config, opts: &Options) -> Finding {
    let need = opts.connections
        + u64::from(cfg.store.pool_size)
        + u64::from(cfg.media.concurrency as u32)
        + 64;
    match open_file_limit() {
        Some(limit) if limit < need => Finding::new(
            "open files",
            Level::Fail,
            format!(
                "the open-file limit is {limit}; {} client connections, the store pool and media copies need about {need}",
                opts.connections
            ),
            "raise it: LimitNOFILE=65536 in the systemd unit (deploy/gengate.service has it), or `ulimit -n 65536` before starting",
        ),
        Some(limit) if limit < need * 2 => Finding::new(
            "open files",
            Level::Warn,
            format!("the open-file limit {limit} leaves little headroom over the ~{need} expected"),
            "raise it to 65536 (LimitNOFILE in the systemd unit)",
        ),
        Some(limit) => Finding::pass("open files", format!("limit {limit} for ~{need} expected")),
        None => Finding::new(
            "open files",
            Level::Warn,
            "cannot read /proc/self/limits",
            "check `ulimit -n` by hand",
        ),
    }
}

/// Free and total bytes of the file system holding `dir`, from `df`.
fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let out = std::process::Command::new("df")
        .args(["-Pk"])
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let fields: Vec<&str> = text.lines().nth(1)?.split_whitespace().collect();
    let total: u64 = fields.get(1)?.parse().ok()?;
    let avail: u64 = fields.get(3)?.parse().ok()?;
    Some((avail * 1024, total * 1024))
}

fn check_disk(dir: &Path) -> Finding {
    let probe = if dir.exists() { dir } else { Path::new(".") };
    match disk_space(probe) {
        Some((free, _)) if free < 100 * 1024 * 1024 => Finding::new(
            "disk space",
            Level::Fail,
            format!("{} free at {}", fmt_bytes(free), dir.display()),
            "free space or move server.data_dir: SQLite, local media and logs stop at a full disk",
        ),
        Some((free, total)) if free < 1024 * 1024 * 1024 || free * 10 < total => Finding::new(
            "disk space",
            Level::Warn,
            format!(
                "{} free of {} at {}",
                fmt_bytes(free),
                fmt_bytes(total),
                dir.display()
            ),
            "free space, or set media.retention and run `gengate media gc` from cron",
        ),
        Some((free, total)) => Finding::pass(
            "disk space",
            format!(
                "{} free of {} at {}",
                fmt_bytes(free),
                fmt_bytes(total),
                dir.display()
            ),
        ),
        None => Finding::new(
            "disk space",
            Level::Warn,
            format!("cannot read free space at {}", dir.display()),
            "check `df -h` by hand",
        ),
    }
}

async fn check_media(cfg: &Config, net: &Outbound) -> Finding {
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

async fn check_redis(url: &str, net: &Outbound) -> Finding {
    let redis = match crate::redis::Redis::open(url, net.trust(), Duration::from_secs(2)) {
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

async fn check_providers(cfg: &Config, net: &Outbound, out: &mut Vec<Finding>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_config(pool: u32) -> Config {
        let mut cfg = Config::default();
        cfg.store.url = Some("postgres://gengate:secret@10.0.0.5/gengate".into());
        cfg.store.pool_size = pool;
        cfg
    }

    fn facts() -> DbFacts {
        DbFacts {
            engine: "PostgreSQL 15".into(),
            schema_version: 1,
            latest_version: 1,
            max_connections: Some(100),
            memory: vec![("shared_buffers".into(), 2 << 30)],
            now_ms: now_ms(),
            nodes: Vec::new(),
        }
    }

    fn find<'a>(out: &'a [Finding], check: &str) -> &'a Finding {
        out.iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check} finding in {out:?}"))
    }

    #[test]
    fn pools_are_checked_against_max_connections_for_every_node() {
        let opts = |nodes| Options {
            nodes,
            ..Options::default()
        };
        let mut out = Vec::new();
        check_store(&shared_config(16), &opts(3), &facts(), &mut out);
        assert_eq!(find(&out, "connections").level, Level::Pass, "{out:?}");
        let mut out = Vec::new();
        check_store(&shared_config(16), &opts(6), &facts(), &mut out);
        let f = find(&out, "connections");
        assert_eq!(f.level, Level::Fail);
        assert!(f.detail.contains("17 per node × 6 nodes"), "{f:?}");
        assert!(f.fix.contains("at most 14"), "{f:?}");
        let mut out = Vec::new();
        check_store(&shared_config(12), &opts(6), &facts(), &mut out);
        assert_eq!(
            find(&out, "connections").level,
            Level::Warn,
            "83 of 100: {out:?}"
        );
    }

    #[test]
    fn schema_behind_or_ahead_fails_and_skew_is_graded() {
        let mut out = Vec::new();
        let behind = DbFacts {
            schema_version: 0,
            ..facts()
        };
        check_store(&shared_config(8), &Options::default(), &behind, &mut out);
        assert_eq!(find(&out, "store migrated").level, Level::Fail);
        assert!(find(&out, "store migrated").fix.contains("gengate migrate"));
        let mut out = Vec::new();
        let skewed = DbFacts {
            nodes: vec![gengate_store::NodeInfo {
                id: "web2-1-ab".into(),
                seen_at: now_ms(),
                clock_offset_ms: -7_000,
                started_at: 0,
            }],
            ..facts()
        };
        check_store(&shared_config(8), &Options::default(), &skewed, &mut out);
        let f = find(&out, "clock skew");
        assert_eq!(f.level, Level::Fail);
        assert!(f.detail.contains("web2-1-ab"), "{f:?}");
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact("mysql://u:pw@db:3306/gg"), "mysql://***@db:3306/gg");
        assert_eq!(
            redact("sqlite://./data/gengate.db"),
            "sqlite://./data/gengate.db"
        );
    }

    #[test]
    fn the_report_says_what_failed_and_how_to_fix_it() {
        let text = render(&[
            Finding::pass("disk space", "70 GiB free"),
            Finding::new(
                "connections",
                Level::Fail,
                "too many",
                "lower store.pool_size",
            ),
        ]);
        assert!(text.contains("PASS  disk space"), "{text}");
        assert!(text.contains("FAIL  connections"), "{text}");
        assert!(text.contains("fix: lower store.pool_size"), "{text}");
        assert!(text.contains("1 passed, 0 warnings, 1 failed"), "{text}");
    }
}
