//! What the media step may fetch: the address rules and the resolver that
//! enforces them where connections are made.
//!
//! Output URLs come from providers, and a provider (or whoever controls its
//! answers) must not be able to make gengate read the operator's own
//! network. Names are resolved by [`GuardedResolver`], which drops every
//! forbidden address before reqwest connects (so DNS rebinding cannot slip
//! one in); literal-IP URLs never reach a resolver and are checked by
//! [`check_url`]. Redirects are followed by hand, each hop checked again.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::webhooks::is_public;

/// A fetch refused by policy (never retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by media policy: {0}")]
pub struct Forbidden(pub String);

/// Looks names up. Production uses the system resolver; tests inject
/// answers, so no test ever resolves or reaches a real non-loopback host.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>,
    >;
}

/// The system resolver.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>,
    > {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Whether an address may be fetched from.
pub fn address_allowed(ip: IpAddr, allow_private: bool) -> bool {
    allow_private || is_public(ip)
}

/// Resolves through `lookup` and keeps only allowed addresses; an answer
/// with none left is an error carrying [`Forbidden`].
pub struct GuardedResolver {
    pub lookup: Arc<dyn Lookup>,
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (lookup, allow_private) = (self.lookup.clone(), self.allow_private);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = lookup.lookup(host.clone()).await?;
            let addrs: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| address_allowed(*ip, allow_private))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if addrs.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> = Box::new(Forbidden(format!(
                    "{host} resolves only to private or special addresses (media.allow_private permits them)"
                )));
                return Err(e);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks a URL before it is requested: scheme, host allowlist, and a
/// literal IP against the address rules.
///
/// `allowed_hosts` empty allows any host; otherwise the host must equal an
/// entry or, for `*.example.com`, end with `.example.com`.
///
/// # Errors
/// [`Forbidden`] naming the reason.
pub fn check_url(
    url: &reqwest::Url,
    allowed_hosts: &[String],
    allow_private: bool,
) -> Result<(), Forbidden> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Forbidden(format!("scheme {} is not fetched", url.scheme())));
    }
    let ip = match url.host() {
        None => return Err(Forbidden("the URL has no host".into())),
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = ip
        && !address_allowed(ip, allow_private)
    {
        return Err(Forbidden(format!(
            "{ip} is a private or special address (media.allow_private permits it)"
        )));
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.trim_matches(['[', ']']);
    if !allowed_hosts.is_empty() && !allowed_hosts.iter().any(|p| host_matches(p, host)) {
        return Err(Forbidden(format!(
            "host {host} is not one of the task's provider hosts or media.allowed_hosts"
        )));
    }
    Ok(())
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

/// The [`Forbidden`] somewhere in an error's source chain, if any.
pub fn forbidden_in(err: &(dyn std::error::Error + 'static)) -> Option<Forbidden> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(f) = e.downcast_ref::<Forbidden>() {
            return Some(f.clone());
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn literal_private_and_special_addresses_are_refused_in_every_spelling() {
        for u in [
            "http://127.0.0.1/a.png",
            "http://127.1.2.3:8080/a.png",
            "http://0.0.0.0/a.png",
            "http://10.0.0.1/a.png",
            "http://172.16.5.4/a.png",
            "http://192.168.1.1/a.png",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/a.png",
            "http://[::]/a.png",
            "http://[fe80::1]/a.png",
            "http://[fc00::1]/a.png",
            "http://[fd12:3456::1]/a.png",
            "http://[::ffff:127.0.0.1]/a.png",
            "http://[::ffff:169.254.169.254]/a.png",
            "http://[::ffff:10.1.2.3]/a.png",
            "http://[::ffff:a9fe:a9fe]/a.png",
            // Decimal, octal and hex spellings are normalized by the URL parser.
            "http://2130706433/a.png",
            "http://0177.0.0.1/a.png",
            "http://0x7f.1/a.png",
            "http://100.64.0.1/a.png",
        ] {
            let err = check_url(&url(u), &[], false).unwrap_err();
            assert!(err.0.contains("private or special"), "{u}: {err}");
            check_url(&url(u), &[], true).expect("allowed when private addresses are");
        }
        check_url(&url("https://93.184.216.34/a.png"), &[], false).unwrap();
        check_url(&url("https://[2606:4700::1]/a.png"), &[], false).unwrap();
    }

    #[test]
    fn hosts_must_be_on_the_allowlist_when_there_is_one() {
        let allow = vec!["cdn.example.com".to_owned(), "*.myqcloud.com".to_owned()];
        check_url(&url("https://cdn.example.com/a.png"), &allow, false).unwrap();
        check_url(
            &url("https://b-1.cos.ap-guangzhou.myqcloud.com/a"),
            &allow,
            false,
        )
        .unwrap();
        for u in [
            "https://evil.example.com/a.png",
            "https://myqcloud.com/a.png",
            "https://myqcloud.com.evil.net/a.png",
        ] {
            assert!(check_url(&url(u), &allow, false).is_err(), "{u}");
        }
        assert!(check_url(&url("file:///etc/passwd"), &[], true).is_err());
        assert!(check_url(&url("ftp://x/a"), &[], true).is_err());
    }
}
