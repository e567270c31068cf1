//! Mock providers for tests: a mock of any kind (`gengate-mock`) served on
//! loopback over HTTP or HTTPS, provider clients that trust the test CA the
//! way gengate trusts `tls.ca_file`, and the mock's ledger (`/_mock/stats`,
//! `/_mock/jobs`) and error injection (`/_mock/inject`).
//!
//! One CA per test binary, made on first use, signs a certificate for
//! `127.0.0.1` and `localhost`; every HTTPS mock presents it, and every
//! client from [`client`] trusts it. A mock stops when its [`MockProvider`]
//! is dropped.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gengate_mock::tls::{Leaf, ThrowawayCa};
use gengate_mock::{Behavior, MockConfig, MockKind};
use gengate_net::{Outbound, Trust};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How a mock is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    /// With the test CA's certificate, as real providers are reached.
    Https,
}

/// The test binary's CA: what HTTPS mocks present and clients trust.
struct TestCa {
    pem: String,
    server: Arc<rustls::ServerConfig>,
    trust: Trust,
}

fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = ThrowawayCa::new().expect("a CA");
        TestCa {
            server: ca
                .server_config(&Leaf::for_names(&["127.0.0.1", "localhost"]))
                .expect("a leaf certificate"),
            trust: Trust::with_pem(ca.pem().as_bytes(), None).expect("the CA's PEM"),
            pem: ca.pem(),
        }
    })
}

/// The test CA's certificate, PEM: what a gengate under test would be given
/// as `tls.ca_file` to trust the HTTPS mocks.
pub fn ca_pem() -> &'static str {
    &test_ca().pem
}

/// A provider client as gengate builds one (`Outbound::provider`, no proxy)
/// with `timeout`, trusting the test CA.
pub fn client(timeout: Duration) -> reqwest::Client {
    Outbound::new(test_ca().trust.clone())
        .provider(timeout, None)
        .expect("a provider client builds")
}

/// Simulated jobs that take `latency_ms` (lowest, highest) and fail with
/// probability `fail_rate`.
pub fn behavior(latency_ms: (u64, u64), fail_rate: f64) -> Behavior {
    Behavior {
        latency_min: Duration::from_millis(latency_ms.0),
        latency_max: Duration::from_millis(latency_ms.1),
        fail_rate,
    }
}

/// A mock provider account on 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub struct MockProvider {
    /// Its base URL (`http://` or `https://`), also the public URL its
    /// output URLs start with.
    pub url: String,
    /// A client for the mock's own routes (output files, the ledger): trusts
    /// the test CA, 10 s timeout.
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl MockProvider {
    /// Serves a mock of `kind` with `cfg` (its public URL is set here) on a
    /// free port of 127.0.0.1.
    pub async fn start(kind: MockKind, mut cfg: MockConfig, scheme: Scheme) -> MockProvider {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let (url, tls) = match scheme {
            Scheme::Http => (format!("http://{addr}"), None),
            Scheme::Https => (format!("https://{addr}"), Some(test_ca().server.clone())),
        };
        cfg.public_url = url.clone();
        let stop = CancellationToken::new();
        tokio::spawn(gengate_mock::serve(kind, listener, cfg, tls, stop.clone()));
        MockProvider {
            url,
            http: client(Duration::from_secs(10)),
            stop,
        }
    }

    /// [`MockProvider::start`] over HTTPS.
    pub async fn https(kind: MockKind, cfg: MockConfig) -> MockProvider {
        Self::start(kind, cfg, Scheme::Https).await
    }

    /// GETs `path` (from `/`) and reads its JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    /// The ledger's counters (`/_mock/stats`).
    pub async fn stats(&self) -> Value {
        self.get_json("/_mock/stats").await
    }

    /// Every job with the request that made it, oldest first (`/_mock/jobs`).
    pub async fn jobs(&self) -> Vec<Value> {
        match self.get_json("/_mock/jobs").await {
            Value::Array(jobs) => jobs,
            other => panic!("/_mock/jobs is not a list: {other}"),
        }
    }

    /// Answers the next submission with the provider's error `code`.
    pub async fn inject(&self, code: &str) {
        self.inject_many(code, 1).await;
    }

    /// Answers the next `count` submissions with the provider's error `code`.
    pub async fn inject_many(&self, code: &str, count: usize) {
        let resp = self
            .http
            .post(format!("{}/_mock/inject", self.url))
            .json(&json!({"code": code, "count": count}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("inject {code}: {e}"));
        assert!(
            resp.status().is_success(),
            "inject {code}: {}",
            resp.status()
        );
    }
}
