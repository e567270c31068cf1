//! Each adapter against its wire-compatible mock, over real HTTP on loopback.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gengate_mock::tls::{Leaf, ThrowawayCa};
use gengate_mock::{self as mock, MockConfig, MockKind};
use gengate_net::{Outbound, Trust};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod hunyuan;
mod kling;
mod runninghub;
mod transport;

/// The mocks serve HTTPS, as the providers do, with a certificate from a CA
/// this test binary makes; the adapters' clients trust it as gengate would
/// trust it through `tls.ca_file`.
pub(crate) struct TestTls {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) trust: Trust,
}

pub(crate) fn tls() -> &'static TestTls {
    static TLS: OnceLock<TestTls> = OnceLock::new();
    TLS.get_or_init(|| {
        let ca = ThrowawayCa::new().expect("a CA");
        TestTls {
            server: ca
                .server_config(&Leaf::for_names(&["127.0.0.1", "localhost"]))
                .expect("a leaf certificate"),
            trust: Trust::with_pem(ca.pem().as_bytes(), None).expect("the CA's PEM"),
        }
    })
}

/// A provider client as gengate builds one (no proxy), trusting the mocks'
/// CA.
pub(crate) fn client(timeout: Duration) -> reqwest::Client {
    Outbound::new(tls().trust.clone())
        .provider(timeout, None)
        .expect("client builds")
}

/// Serves the mock of `kind` over HTTPS on 127.0.0.1 until `shutdown`;
/// returns its `https://` base URL. `tweak` adjusts its configuration (the
/// public URL is set).
pub(crate) async fn serve_mock(
    kind: MockKind,
    mut cfg: MockConfig,
    shutdown: CancellationToken,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    cfg.public_url = url.clone();
    tokio::spawn(mock::serve(
        kind,
        listener,
        cfg,
        Some(tls().server.clone()),
        shutdown,
    ));
    url
}
