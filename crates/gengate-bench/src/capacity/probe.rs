//! Probes outside the ramp: the server's memory per idle keep-alive
//! connection.

use std::time::Duration;

use anyhow::Context as _;

use super::process::rss_bytes;
use super::sizes::mib;
use crate::scenario::Target;

/// Opens `n` keep-alive connections, makes one request on each, and
/// returns the server's RSS growth per connection while they are open.
pub(super) fn probe_connections(target: &Target, pid: u32, n: usize) -> anyhow::Result<f64> {
    use crate::client::{Body, Conn};
    let before = rss_bytes(pid).context("no RSS")?;
    let addr = target.addr;
    let authority = target.authority.clone();
    let after = crate::scenario::block_on(async move {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let mut conns = Vec::with_capacity(n);
                for _ in 0..n {
                    let Ok(mut c) = Conn::open(addr).await else {
                        break;
                    };
                    let req = hyper::Request::get("/healthz")
                        .header(hyper::header::HOST, &authority)
                        .body(http_body_util::Full::new(bytes::Bytes::new()))?;
                    if c.send(req, Body::Discard).await.is_ok() {
                        conns.push(c);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                let after = rss_bytes(pid).unwrap_or(before);
                let opened = conns.len();
                drop(conns);
                Ok((after, opened))
            })
            .await
    })?;
    let (after, opened) = after;
    eprintln!(
        "  {opened} idle connections: RSS {} → {}",
        mib(before as f64),
        mib(after as f64)
    );
    Ok((after as f64 - before as f64).max(0.0) / opened.max(1) as f64)
}
