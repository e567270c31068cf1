//! What went wrong with an outbound request, in words an operator can act
//! on: "certificate not trusted (UnknownIssuer)", "connection refused", "no
//! such host", with the whole cause chain kept and every URL redacted.
//!
//! [`Failure::before_sending`] is what callers decide by: when no byte of
//! the request can have reached the peer (no such host, refused, connect
//! timeout, TLS handshake failed, destination refused by policy), a retry
//! cannot do anything twice.

use std::error::Error;
use std::fmt;

use crate::guard::Forbidden;
use crate::redact::{redact_text, redact_url};

/// The resolver found no address for a host (our resolver's error, so the
/// cause can be told apart from others in the chain).
#[derive(Debug, Clone, thiserror::Error)]
#[error("no such host {host}: {detail}")]
pub struct NoSuchHost {
    pub host: String,
    pub detail: String,
}

/// The class of a failure, by what it means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The name does not resolve.
    NoSuchHost,
    /// Nothing listens at the address.
    Refused,
    /// The TCP connection was not established in time.
    ConnectTimeout,
    /// The certificate chain ends at a CA nobody trusts here (rustls's
    /// reason, e.g. `UnknownIssuer`).
    Untrusted(String),
    /// The certificate is valid, but for another name.
    WrongHost,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet (or this host's clock is behind).
    NotYetValid,
    /// The certificate was refused for another reason.
    BadCertificate(String),
    /// The server does not speak TLS where an `https` URL points.
    NotTls,
    /// The TLS handshake failed otherwise.
    Handshake(String),
    /// The destination is refused by the address policy.
    Forbidden(String),
    /// The connection could not be made for another reason.
    Unreachable,
    /// The request was sent (or may have been) and no answer came in time.
    Timeout,
    /// The connection broke after the request may have been sent.
    Interrupted,
    /// The answer's body could not be read.
    Body,
    /// Anything else.
    Other,
}

/// One failed request, classified, with its redacted URL and cause chain.
#[derive(Debug, Clone)]
pub struct Failure {
    pub cause: Cause,
    /// `scheme://host[:port]/path` of the request.
    pub url: Option<String>,
    /// The cause chain, outermost first, redacted.
    pub chain: String,
}

/// An error and its causes, outermost first. An `io::Error` that wraps
/// another error shows that error's text but hides it from `source()`, so
/// the wrapped error is visited explicitly (rustls's errors arrive as an
/// `io::Error` inside an `io::Error`).
pub(crate) fn chain<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    let mut out: Vec<&'a (dyn Error + 'static)> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        out.push(e);
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &'a (dyn Error + 'static)),
            None => e.source(),
        };
        if out.len() > 16 {
            break;
        }
    }
    out.into_iter()
}

fn tls_cause(e: &rustls::Error) -> Cause {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => Cause::Untrusted("UnknownIssuer".into()),
            C::NotValidForName | C::NotValidForNameContext { .. } => Cause::WrongHost,
            C::Expired | C::ExpiredContext { .. } => Cause::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => Cause::NotYetValid,
            C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => {
                Cause::Untrusted(format!("{c:?}"))
            }
            other => Cause::BadCertificate(format!("{other:?}")),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            Cause::NotTls
        }
        other => Cause::Handshake(other.to_string()),
    }
}

impl Failure {
    /// Classifies a reqwest error.
    pub fn of(e: &reqwest::Error) -> Self {
        let url = e.url().map(|u| redact_url(u.as_str()));
        let mut cause = None;
        let mut texts: Vec<String> = Vec::new();
        for (i, link) in chain(e).enumerate() {
            let text = if i == 0 {
                // reqwest's own text names the URL (with its query); ours
                // is given apart, redacted.
                top_level(e)
            } else {
                link.to_string()
            };
            // An io::Error repeats the text of the error it wraps.
            if !text.is_empty() && texts.last() != Some(&text) {
                texts.push(text);
            }
            if cause.is_some() {
                continue;
            }
            if let Some(f) = link.downcast_ref::<Forbidden>() {
                cause = Some(Cause::Forbidden(f.0.clone()));
            } else if link.downcast_ref::<NoSuchHost>().is_some() {
                cause = Some(Cause::NoSuchHost);
            } else if let Some(t) = link.downcast_ref::<rustls::Error>() {
                cause = Some(tls_cause(t));
            } else if let Some(io) = link.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind as K;
                cause = match io.kind() {
                    K::ConnectionRefused => Some(Cause::Refused),
                    K::TimedOut if e.is_connect() => Some(Cause::ConnectTimeout),
                    K::TimedOut => Some(Cause::Timeout),
                    K::ConnectionReset
                    | K::ConnectionAborted
                    | K::BrokenPipe
                    | K::UnexpectedEof
                        if !e.is_connect() =>
                    {
                        Some(Cause::Interrupted)
                    }
                    _ => None,
                };
            }
        }
        let cause = cause.unwrap_or(if e.is_connect() {
            if e.is_timeout() {
                Cause::ConnectTimeout
            } else {
                Cause::Unreachable
            }
        } else if e.is_timeout() {
            Cause::Timeout
        } else if e.is_body() || e.is_decode() {
            Cause::Body
        } else if e.is_request() {
            Cause::Interrupted
        } else {
            Cause::Other
        });
        Failure {
            cause,
            url,
            chain: redact_text(&texts.join(": ")),
        }
    }

    /// Whether no byte of the request can have reached the peer: the
    /// connection was never made (or never became a TLS session), so a
    /// retry cannot do anything twice.
    pub fn before_sending(&self) -> bool {
        matches!(
            self.cause,
            Cause::NoSuchHost
                | Cause::Refused
                | Cause::ConnectTimeout
                | Cause::Untrusted(_)
                | Cause::WrongHost
                | Cause::Expired
                | Cause::NotYetValid
                | Cause::BadCertificate(_)
                | Cause::NotTls
                | Cause::Handshake(_)
                | Cause::Forbidden(_)
                | Cause::Unreachable
        )
    }

    /// Whether the peer's certificate was the problem.
    pub fn is_certificate(&self) -> bool {
        matches!(
            self.cause,
            Cause::Untrusted(_)
                | Cause::WrongHost
                | Cause::Expired
                | Cause::NotYetValid
                | Cause::BadCertificate(_)
        )
    }

    /// What happened, in a few words.
    pub fn headline(&self) -> String {
        match &self.cause {
            Cause::NoSuchHost => "no such host".into(),
            Cause::Refused => "connection refused".into(),
            Cause::ConnectTimeout => "connection timed out".into(),
            Cause::Untrusted(why) => format!("certificate not trusted ({why})"),
            Cause::WrongHost => "certificate is for another host".into(),
            Cause::Expired => "certificate expired".into(),
            Cause::NotYetValid => "certificate not valid yet".into(),
            Cause::BadCertificate(why) => format!("certificate refused ({why})"),
            Cause::NotTls => "the server does not speak TLS there".into(),
            Cause::Handshake(why) => format!("TLS handshake failed ({why})"),
            Cause::Forbidden(why) => why.clone(),
            Cause::Unreachable => "cannot connect".into(),
            Cause::Timeout => "no answer in time".into(),
            Cause::Interrupted => "the connection broke".into(),
            Cause::Body => "the answer could not be read".into(),
            Cause::Other => "request failed".into(),
        }
    }

    /// What an operator can do about it, when there is something to say.
    pub fn fix(&self) -> Option<&'static str> {
        Some(match self.cause {
            Cause::Untrusted(_) | Cause::BadCertificate(_) => {
                "the server's certificate is not signed by a CA gengate trusts: if it is your own CA (MinIO, a proxy), add it to tls.ca_file; otherwise check the URL points at the right server"
            }
            Cause::WrongHost => {
                "the certificate names another host: check the URL's host name (base_url, endpoint)"
            }
            Cause::Expired | Cause::NotYetValid => {
                "renew the server's certificate, or check this machine's clock (NTP)"
            }
            Cause::NotTls => {
                "check the URL's scheme and port: http:// where the server speaks plain HTTP"
            }
            Cause::NoSuchHost => "check the host name, and this machine's DNS (/etc/resolv.conf)",
            Cause::Refused => "check the host and port, and that the service runs there",
            Cause::ConnectTimeout | Cause::Unreachable => {
                "check this machine's route and firewall to the host; a provider reachable only through a proxy needs providers.NAME.proxy"
            }
            Cause::Handshake(_) => {
                "check the URL points at a TLS server gengate can talk to (TLS 1.2 or 1.3)"
            }
            _ => return None,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.url {
            Some(url) => write!(f, "{url}: {}", self.headline())?,
            None => f.write_str(&self.headline())?,
        }
        if !self.chain.is_empty() {
            write!(f, " ({})", self.chain)?;
        }
        Ok(())
    }
}

/// The [`Forbidden`] somewhere in an error's source chain, if any.
pub fn forbidden_in(err: &(dyn Error + 'static)) -> Option<Forbidden> {
    chain(err).find_map(|e| e.downcast_ref::<Forbidden>().cloned())
}

/// reqwest's own description of the failed step, without the URL it names.
fn top_level(e: &reqwest::Error) -> String {
    if e.is_builder() {
        "building the request"
    } else if e.is_connect() {
        "connecting"
    } else if e.is_timeout() {
        "waiting for the answer"
    } else if e.is_redirect() {
        "following a redirect"
    } else if e.is_status() {
        "an error status"
    } else if e.is_body() {
        "reading the body"
    } else if e.is_decode() {
        "decoding the answer"
    } else {
        "sending the request"
    }
    .to_owned()
}
