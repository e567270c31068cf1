//! What gengate trusts when it opens a TLS connection: Mozilla's roots
//! (webpki-roots, so a minimal container with no CA bundle still reaches
//! the providers), the system's store (so an operator's added CA works as
//! it does for curl), and the certificates of `tls.ca_file` (a private CA
//! for MinIO, a TLS-inspecting proxy, a test CA).
//!
//! [`Trust`] is loaded once at start and shared by every client
//! ([`crate::Outbound`]); the store and Redis reach the same roots through
//! [`Trust::ca_file`] and [`Trust::pem_bundle`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why `tls.ca_file` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("tls.ca_file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls.ca_file {}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)", path.display())]
    Empty { path: PathBuf },
    #[error("tls.ca_file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The roots every outbound TLS connection is verified against. Cheap to
/// clone.
#[derive(Clone)]
pub struct Trust(Arc<Inner>);

struct Inner {
    config: rustls::ClientConfig,
    ca_file: Option<PathBuf>,
    /// The certificates of `ca_file`, as read.
    extra: Vec<CertificateDer<'static>>,
    system: usize,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The system's roots, read once per process (a few hundred files).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() && !found.errors.is_empty() {
            tracing::debug!(
                errors = found.errors.len(),
                "no system CA certificates readable; Mozilla's roots and tls.ca_file are trusted"
            );
        }
        found.certs
    })
}

/// The crypto every client (and the mocks' servers) uses: ring (no C
/// toolchain beyond ring's own, no OpenSSL).
#[expect(
    deprecated,
    reason = "rustls deprecates ring's provider for lacking post-quantum key exchange; \
              aws-lc-rs would add a CMake and C build, and no provider needs it"
)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Trust {
    /// Mozilla's and the system's roots, plus the certificates of
    /// `ca_file` when given.
    ///
    /// # Errors
    /// When `ca_file` cannot be read or holds no usable certificate.
    pub fn load(ca_file: Option<&Path>) -> Result<Self, TrustError> {
        match ca_file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| TrustError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::with_pem(&bytes, Some(path))
            }
            None => Self::with_pem(&[], None),
        }
    }

    /// Mozilla's and the system's roots, plus the CA certificates in `pem`
    /// (read from `ca_file`, which names them in errors and `describe`).
    ///
    /// # Errors
    /// When `pem` holds no usable certificate.
    pub fn with_pem(pem: &[u8], ca_file: Option<&Path>) -> Result<Self, TrustError> {
        let path = ca_file.map_or_else(|| PathBuf::from("(PEM)"), Path::to_owned);
        let extra = if pem.is_empty() && ca_file.is_none() {
            Vec::new()
        } else {
            parse_pem(pem, &path)?
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let (system, _) = roots.add_parsable_certificates(system_roots().iter().cloned());
        for cert in &extra {
            roots.add(cert.clone()).map_err(|e| TrustError::Invalid {
                path: path.clone(),
                message: format!("a certificate is not a usable CA: {e}"),
            })?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        // gengate's clients speak HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self(Arc::new(Inner {
            config,
            ca_file: ca_file.map(Path::to_owned),
            extra,
            system,
        })))
    }

    /// Mozilla's and the system's roots only, shared by the process (tools,
    /// tests and clients built before any config is read).
    pub fn public() -> Self {
        static PUBLIC: OnceLock<Trust> = OnceLock::new();
        PUBLIC
            .get_or_init(|| Trust::load(None).expect("no ca_file to fail on"))
            .clone()
    }

    /// A rustls configuration with these roots, for one client.
    pub fn client_config(&self) -> rustls::ClientConfig {
        self.0.config.clone()
    }

    /// `tls.ca_file`, when set (the store passes it to its TLS driver).
    pub fn ca_file(&self) -> Option<&Path> {
        self.0.ca_file.as_deref()
    }

    /// With `tls.ca_file` set: its certificates and the system's as one PEM
    /// document, for drivers that take their roots as PEM (Redis). `None`
    /// when the driver's own roots (the system's and Mozilla's) suffice.
    pub fn pem_bundle(&self) -> Option<Vec<u8>> {
        if self.0.extra.is_empty() {
            return None;
        }
        let mut pem = Vec::new();
        for cert in self.0.extra.iter().chain(system_roots()) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
            pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
            for line in b64.as_bytes().chunks(64) {
                pem.extend_from_slice(line);
                pem.push(b'\n');
            }
            pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
        }
        Some(pem)
    }

    /// What is trusted, for the log and `doctor`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "Mozilla's {} roots and {} from the system store",
            webpki_roots::TLS_SERVER_ROOTS.len(),
            self.0.system
        );
        match &self.0.ca_file {
            Some(path) => s.push_str(&format!(
                ", plus {} from tls.ca_file {}",
                self.0.extra.len(),
                path.display()
            )),
            None if !self.0.extra.is_empty() => {
                s.push_str(&format!(", plus {} given", self.0.extra.len()));
            }
            None => {}
        }
        s
    }
}

fn parse_pem(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustError::Invalid {
            path: path.to_owned(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TrustError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_with_its_path() {
        let e = Trust::load(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let e = Trust::load(Some(&empty)).unwrap_err();
        assert!(matches!(e, TrustError::Empty { .. }), "{e}");
    }

    #[test]
    fn public_roots_include_mozillas() {
        let t = Trust::public();
        assert!(t.describe().starts_with("Mozilla's"), "{}", t.describe());
        assert!(t.ca_file().is_none() && t.pem_bundle().is_none());
        assert_eq!(t.client_config().alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
