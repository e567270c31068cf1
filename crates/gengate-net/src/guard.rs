//! Where a guarded client may connect: the address rules and the resolver
//! that enforces them where connections are made.
//!
//! Output URLs come from providers and webhook URLs from users, so neither
//! may make gengate reach the operator's own network. Names are resolved by
//! the clients' resolver ([`crate::Outbound`]), which drops every forbidden
//! address before a connection is opened (so DNS rebinding cannot slip one
//! in); literal-IP URLs never reach a resolver and are checked by
//! [`check_url`]. Callers follow redirects by hand and check each hop again.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;

/// A destination refused by policy (never retried). Says which setting
/// would permit it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused: {0}")]
pub struct Forbidden(pub String);

/// Which addresses a client may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destinations {
    /// Any address: destinations the operator configured (provider APIs,
    /// object storage, proxies).
    Any,
    /// Public addresses only: destinations that come from providers or
    /// users. `key` names the setting that would allow private ones, for
    /// the refusal's message.
    Public { key: &'static str },
}

impl Destinations {
    /// Public-only unless `allow_private`.
    pub fn guarded(allow_private: bool, key: &'static str) -> Self {
        if allow_private {
            Destinations::Any
        } else {
            Destinations::Public { key }
        }
    }

    /// Whether `ip` may be connected to.
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            Destinations::Any => true,
            Destinations::Public { .. } => is_public(ip),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Destinations::Public { key } => key,
            Destinations::Any => "nothing",
        }
    }

    /// The refusal of a literal address.
    pub(crate) fn refuse_address(self, ip: IpAddr) -> Forbidden {
        Forbidden(format!(
            "{ip} is not a public address (private or special); {} permits it",
            self.key()
        ))
    }

    /// The refusal of a name that resolves to no allowed address.
    pub(crate) fn refuse_name(self, host: &str) -> Forbidden {
        Forbidden(format!(
            "{host} resolves only to private or special addresses, not a public address; {} permits them",
            self.key()
        ))
    }
}

/// Looks names up. Production uses the system resolver; tests inject
/// answers, so no test ever resolves or reaches a real non-loopback host.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>>;
}

/// The system resolver (getaddrinfo on a blocking thread).
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Whether an address is on the public internet: not loopback, private,
/// shared (CGNAT), link-local, documentation, benchmarking, multicast,
/// broadcast or reserved, nor an IPv6 form that embeds or tunnels to an
/// IPv4 address (mapped, compatible, translated, NAT64, 6to4, Teredo).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(a == 0 // "this network"
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    if let Some(v4) = v6.to_ipv4_mapped() {
        // ::ffff:a.b.c.d is the IPv4 host itself.
        return is_public_v4(v4);
    }
    !(v6.is_unspecified()
        || v6.is_loopback()
        || s[..6] == [0; 6] // IPv4-compatible (::a.b.c.d), deprecated
        || s[..4] == [0, 0, 0, 0] && s[4] == 0xffff // IPv4-translated (::ffff:0:a.b.c.d)
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 (64:ff9b::/96 and 64:ff9b:1::/48)
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only
        || (s[0] == 0x2001 && s[1] < 0x200) // IETF protocol assignments: Teredo, benchmarking, ORCHID
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        || s[0] == 0x2002 // 6to4
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00) // multicast
}

/// Checks a URL before it is requested: the scheme, the host allowlist, and
/// a literal IP (in any spelling the URL parser accepts: decimal, octal,
/// hex, IPv4-mapped) against `destinations`.
///
/// `allowed_hosts` empty allows any host; otherwise the host must equal an
/// entry or, for `*.example.com`, end with `.example.com`.
///
/// # Errors
/// [`Forbidden`] naming the reason.
pub fn check_url(
    url: &url::Url,
    allowed_hosts: &[String],
    destinations: Destinations,
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
        && !destinations.allows(ip)
    {
        return Err(destinations.refuse_address(ip));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    const MEDIA: Destinations = Destinations::Public {
        key: "media.allow_private",
    };

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
            let err = check_url(&url(u), &[], MEDIA).unwrap_err();
            assert!(err.0.contains("private or special"), "{u}: {err}");
            assert!(err.0.contains("media.allow_private"), "{u}: {err}");
            check_url(&url(u), &[], Destinations::Any).expect("allowed when private addresses are");
        }
        check_url(&url("https://93.184.216.34/a.png"), &[], MEDIA).unwrap();
        check_url(&url("https://[2606:4700::1]/a.png"), &[], MEDIA).unwrap();
    }

    #[test]
    fn hosts_must_be_on_the_allowlist_when_there_is_one() {
        let allow = vec!["cdn.example.com".to_owned(), "*.myqcloud.com".to_owned()];
        check_url(&url("https://cdn.example.com/a.png"), &allow, MEDIA).unwrap();
        check_url(
            &url("https://b-1.cos.ap-guangzhou.myqcloud.com/a"),
            &allow,
            MEDIA,
        )
        .unwrap();
        for u in [
            "https://evil.example.com/a.png",
            "https://myqcloud.com/a.png",
            "https://myqcloud.com.evil.net/a.png",
        ] {
            assert!(check_url(&url(u), &allow, MEDIA).is_err(), "{u}");
        }
        assert!(check_url(&url("file:///etc/passwd"), &[], Destinations::Any).is_err());
        assert!(check_url(&url("ftp://x/a"), &[], Destinations::Any).is_err());
    }

    #[test]
    fn special_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.0.8",
            "192.88.99.1",
            "198.18.0.1",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "192.0.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
