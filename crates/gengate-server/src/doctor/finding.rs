//! What a check finds, and what the checks assume beyond the config.

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
    pub(super) fn new(
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

    pub(super) fn pass(check: &'static str, detail: impl Into<String>) -> Self {
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
pub(super) const ADMIN_CONNECTIONS: u64 = 5;

/// A URL with its password, if any, hidden.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

pub(super) fn fmt_bytes(b: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    if b as f64 >= GIB {
        format!("{:.1} GiB", b as f64 / GIB)
    } else {
        format!("{} MiB", b / (1024 * 1024))
    }
}
