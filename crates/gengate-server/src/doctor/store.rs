//! The store: reachable, migrated, and sized for every node's pool.

use gengate_config::{Config, MediaBackend};
use gengate_store::DbFacts;

use super::finding::{ADMIN_CONNECTIONS, Finding, Level, Options, fmt_bytes};
use super::host::mem_total;
use crate::now_ms;

pub(super) fn check_store(cfg: &Config, opts: &Options, f: &DbFacts, out: &mut Vec<Finding>) {
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

/// Every user's balance is the sum of their ledger, and what they hold is
/// what their unfinished tasks hold.
pub(super) async fn check_ledger(store: &dyn gengate_store::Store) -> Finding {
    match store.accounts().ledger_drift().await {
        Ok(drift) if drift.is_empty() => Finding::pass(
            "credits ledger",
            "every balance equals its ledger's sum, every hold an unfinished task's",
        ),
        Ok(drift) => {
            let shown: Vec<String> = drift
                .iter()
                .take(5)
                .map(|d| {
                    format!(
                        "{} (balance {} vs ledger {}, held {} vs open holds {})",
                        d.name, d.balance, d.ledger_sum, d.held, d.open_holds
                    )
                })
                .collect();
            Finding::new(
                "credits ledger",
                Level::Fail,
                format!(
                    "{} users disagree with the ledger: {}",
                    drift.len(),
                    shown.join("; ")
                ),
                "the ledger is the record: look for manual edits of users.balance or held; \
                 the audit trail (GET /v1/admin/audit) shows every movement",
            )
        }
        Err(e) => Finding::new(
            "credits ledger",
            Level::Fail,
            e.to_string(),
            "check the database server and its logs",
        ),
    }
}
