//! The checks' judgements on given facts, without a database.

use gengate_config::Config;
use gengate_store::DbFacts;

use super::finding::{Finding, Level, Options, redact};
use super::run::render;
use super::store::check_store;
use crate::now_ms;

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
