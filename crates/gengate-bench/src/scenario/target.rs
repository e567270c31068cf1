//! Where the load goes: a plain `http://` URL, resolved once.

use std::net::{SocketAddr, ToSocketAddrs as _};

use anyhow::{Context as _, bail};

/// Where the load goes: `http://host:port/path?query`.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    /// The `Host` header.
    pub authority: String,
    pub path_and_query: String,
}

impl Target {
    /// # Errors
    /// For a URL that is not `http://…` or a host that does not resolve.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!(
                "{other}:// is not supported; bench speaks plain http:// (put it next to the server, or behind the TLS proxy)"
            ),
            None => bail!("{url:?} needs a scheme: http://host:port/"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{url:?} has no host"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let addr = (authority.host(), port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", authority.host()))?
            .next()
            .with_context(|| format!("{} has no address", authority.host()))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
            authority: authority.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// The same server, another path.
    pub fn at(&self, path: &str) -> Target {
        Target {
            url: format!("http://{}{path}", self.authority),
            path_and_query: path.to_owned(),
            ..self.clone()
        }
    }
}
