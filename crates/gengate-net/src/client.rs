//! [`Outbound`]: the one place that builds gengate's HTTP clients, each for
//! a purpose, all with the same TLS roots ([`Trust`]), the same resolver
//! (whose failures are typed, and which enforces [`Destinations`]), no
//! redirects followed by reqwest, and no proxy from the environment.
//!
//! Why no environment proxy: `HTTPS_PROXY` set for some other program would
//! make a guarded client hand the target to the proxy, which resolves it,
//! and the address policy would never see the address. A provider entry
//! that needs a proxy names it (`providers.NAME.proxy`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::failure::NoSuchHost;
use crate::guard::{Destinations, Lookup, SystemLookup};
use crate::tls::Trust;

/// Why a client cannot be built (a bad proxy URL, mostly).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct BuildError(String);

/// Builds outbound clients. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    trust: Trust,
    lookup: Arc<dyn Lookup>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl Default for Outbound {
    /// The public roots and the system resolver.
    fn default() -> Self {
        Self::new(Trust::public())
    }
}

/// Longest wait for a connection (name lookup, TCP, TLS handshake) whatever
/// the request's own timeout. The connect phase also gets at most half the
/// request's timeout, so that it gives up first and the failure is known to
/// have happened before anything was sent.
const MAX_CONNECT: Duration = Duration::from_secs(10);

impl Outbound {
    pub fn new(trust: Trust) -> Self {
        Self {
            trust,
            lookup: Arc::new(SystemLookup),
        }
    }

    /// Resolves names through `lookup` instead of the system (tests inject
    /// answers; nothing then resolves a real name).
    #[must_use]
    pub fn with_lookup(mut self, lookup: Arc<dyn Lookup>) -> Self {
        self.lookup = lookup;
        self
    }

    /// What the clients trust.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    fn builder(&self, destinations: Destinations, timeout: Duration) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.trust.client_config())
            .dns_resolver(Arc::new(Resolver {
                lookup: self.lookup.clone(),
                destinations,
            }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout((timeout / 2).min(MAX_CONNECT))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("gengate/", env!("CARGO_PKG_VERSION")))
    }

    /// A provider API client: one per provider entry, `timeout` per request,
    /// through `proxy` (`http://host:port`, `https://…`, `socks5://…` is not
    /// built in) when the entry names one. Redirects are answers, not hops:
    /// the adapter refuses them (RunningHub sends its key in the body, and a
    /// 307 would hand it to another host).
    ///
    /// # Errors
    /// When `proxy` is not a usable proxy URL.
    pub fn provider(
        &self,
        timeout: Duration,
        proxy: Option<&str>,
    ) -> Result<reqwest::Client, BuildError> {
        let mut b = self.builder(Destinations::Any, timeout);
        if let Some(p) = proxy {
            let proxy = reqwest::Proxy::all(p).map_err(|e| BuildError(format!("proxy: {e}")))?;
            b = b.proxy(proxy);
        }
        b.build().map_err(|e| BuildError(e.to_string()))
    }

    /// A client for URLs that come from providers or users (output files,
    /// input files, client webhooks): only `destinations` are connected to,
    /// checked on every address a name resolves to. The caller checks
    /// literal-IP URLs with [`crate::check_url`] and follows redirects
    /// itself, checking each hop.
    ///
    /// # Errors
    /// Never in practice; reqwest's builder is fallible.
    pub fn guarded(
        &self,
        destinations: Destinations,
        timeout: Duration,
    ) -> Result<reqwest::Client, BuildError> {
        self.builder(destinations, timeout)
            .build()
            .map_err(|e| BuildError(e.to_string()))
    }

    /// The object storage client (S3 and compatible): operator-configured,
    /// any address.
    ///
    /// # Errors
    /// Never in practice; reqwest's builder is fallible.
    pub fn storage(&self, timeout: Duration) -> Result<reqwest::Client, BuildError> {
        self.builder(Destinations::Any, timeout)
            .build()
            .map_err(|e| BuildError(e.to_string()))
    }

    /// A client for gengate's own tools (the mocks' callbacks, probes):
    /// any address, no proxy, no redirects.
    pub fn tool(&self, timeout: Duration) -> reqwest::Client {
        self.builder(Destinations::Any, timeout)
            .build()
            .expect("a client without a proxy builds")
    }
}

/// The resolver of every client: looks names up through [`Lookup`], keeps
/// the allowed addresses, and reports failures as typed errors.
struct Resolver {
    lookup: Arc<dyn Lookup>,
    destinations: Destinations,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (lookup, destinations) = (self.lookup.clone(), self.destinations);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = match lookup.lookup(host.clone()).await {
                Ok(found) if !found.is_empty() => found,
                Ok(_) => {
                    return Err(Box::new(NoSuchHost {
                        host,
                        detail: "no addresses".into(),
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
                Err(e) => {
                    return Err(Box::new(NoSuchHost {
                        host,
                        detail: e.to_string(),
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            };
            let addrs: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| destinations.allows(*ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if addrs.is_empty() {
                let e = destinations.refuse_name(&host);
                return Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
