//! HTTPS for the mocks: a throwaway certificate authority made at start
//! (its PEM handed to whoever must trust it), leaf certificates for the
//! addresses a mock listens on, and an accept loop that serves a router
//! over TLS. Real providers are reached over HTTPS, so their mocks are too.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A certificate authority that lives as long as the mock (or test) that
/// made it.
pub struct ThrowawayCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for ThrowawayCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThrowawayCa")
    }
}

/// How a leaf certificate is made: for which names, and whether it is
/// already expired (to test what a client says about one).
#[derive(Debug, Clone, Default)]
pub struct Leaf {
    /// IP addresses and DNS names it is valid for.
    pub names: Vec<String>,
    /// Valid only in 2020: expired.
    pub expired: bool,
}

impl Leaf {
    /// A certificate for these names (IP addresses or DNS names).
    pub fn for_names(names: &[&str]) -> Self {
        Self {
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            expired: false,
        }
    }
}

fn tls_error(e: impl std::fmt::Display) -> String {
    format!("TLS setup: {e}")
}

impl ThrowawayCa {
    /// A new CA with a fresh key.
    ///
    /// # Errors
    /// When the key or certificate cannot be made.
    pub fn new() -> Result<Self, String> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gengate mock provider CA (throwaway)");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(tls_error)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(tls_error)?;
        Ok(Self { issuer })
    }

    /// The CA's certificate, PEM: what a client adds to its roots
    /// (`tls.ca_file`).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server configuration presenting a certificate this CA signed.
    ///
    /// # Errors
    /// When a name is not a valid DNS name or IP address.
    pub fn server_config(&self, leaf: &Leaf) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut params = CertificateParams::new(leaf.names.clone()).map_err(tls_error)?;
        params.distinguished_name.push(
            DnType::CommonName,
            leaf.names.first().map_or("mock", String::as_str),
        );
        if leaf.expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().map_err(tls_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(tls_error)?;
        let chain = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        server_config(chain, key)
    }
}

/// A server configuration from PEM files: a certificate chain and its key.
///
/// # Errors
/// When a file cannot be read or parsed.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    server_config(chain, key)
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(gengate_net::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Longest wait for a client's TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on `listener` until `shutdown` fires. A client
/// that fails the handshake (it does not trust the CA, say) is dropped; the
/// router never sees it.
///
/// # Errors
/// When accepting fails for good.
pub async fn serve_tls(
    listener: TcpListener,
    router: axum::Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, _) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "mock: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}
