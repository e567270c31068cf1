//! Connecting: the driver's options for a URL (with `tls.ca_file`), and the
//! connection pool that times its acquisitions for [`PoolStats`].

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

use super::engine::{Engine, Options};
use super::error::db_err;
use crate::store::{PoolStats, Result, StoreError};

/// The connection options of `url`, trusting `ca_file` for TLS unless the
/// URL names its own CA.
pub(super) fn connect_options<E: Engine>(
    url: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<Options<E>> {
    let options = Options::<E>::from_str(url)
        .map_err(|e| StoreError::Config(format!("invalid {} URL: {e}", <E as Database>::NAME)))?;
    let names_ca = url
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with(E::CA_PARAM)));
    Ok(match ca_file {
        Some(path) if !names_ca => E::trust_ca(options, path),
        _ => options,
    })
}

/// A connection pool that times every acquisition, for [`PoolStats`].
pub(crate) struct TimedPool<DB: Database> {
    pub(super) pool: Pool<DB>,
    acquires: AtomicU64,
    wait_micros_total: AtomicU64,
    wait_micros_max: AtomicU64,
    timeouts: AtomicU64,
}

impl<DB: Database> TimedPool<DB> {
    pub(super) fn new(pool: Pool<DB>) -> Self {
        Self {
            pool,
            acquires: AtomicU64::new(0),
            wait_micros_total: AtomicU64::new(0),
            wait_micros_max: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    pub(crate) async fn acquire(&self) -> Result<PoolConnection<DB>> {
        let start = Instant::now();
        let conn = self.pool.acquire().await;
        let waited = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.acquires.fetch_add(1, Ordering::Relaxed);
        self.wait_micros_total.fetch_add(waited, Ordering::Relaxed);
        self.wait_micros_max.fetch_max(waited, Ordering::Relaxed);
        if matches!(conn, Err(sqlx::Error::PoolTimedOut)) {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        conn.map_err(db_err)
    }

    pub(super) fn stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            max: self.pool.options().get_max_connections(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            acquires: self.acquires.load(Ordering::Relaxed),
            wait_micros_total: self.wait_micros_total.load(Ordering::Relaxed),
            wait_micros_max: self.wait_micros_max.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }
}
