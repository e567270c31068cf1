//! What a failed connection is called, tried against real peers on
//! loopback: an untrusted CA, a certificate for another host, an expired
//! one, a plain-HTTP server at an `https` URL, nothing listening, a name
//! that does not resolve, a resolver that never answers. Each is a
//! failure before anything was sent, and says so in words.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use gengate_mock::tls::{Leaf, ThrowawayCa};
use gengate_net::{Cause, Failure, Lookup, Outbound, Trust};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves a trivial router over TLS with `leaf`; returns its port.
async fn tls_server(ca: &ThrowawayCa, leaf: &Leaf, stop: CancellationToken) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = axum::Router::new().fallback(|| async { "ok" });
    let config = ca.server_config(leaf).unwrap();
    tokio::spawn(gengate_mock::tls::serve_tls(listener, router, config, stop));
    port
}

async fn failure(client: &reqwest::Client, url: &str) -> Failure {
    let e = client.get(url).send().await.unwrap_err();
    let f = Failure::of(&e);
    assert!(f.before_sending(), "{f}");
    assert!(
        !f.to_string().contains("secret"),
        "the query is redacted: {f}"
    );
    f
}

/// Answers every name with nothing, or never.
struct Lookups {
    hang: bool,
}

impl Lookup for Lookups {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>> {
        let hang = self.hang;
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Err(std::io::Error::other(format!(
                "failed to lookup address information: {host}: Name or service not known"
            )))
        })
    }
}

#[tokio::test]
async fn each_connection_failure_is_named_by_its_cause() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let ca = ThrowawayCa::new().unwrap();
    let trusting = Outbound::new(Trust::with_pem(ca.pem().as_bytes(), None).unwrap())
        .tool(Duration::from_secs(5));

    let good = tls_server(&ca, &Leaf::for_names(&["127.0.0.1"]), stop.clone()).await;
    let ok = trusting
        .get(format!("https://127.0.0.1:{good}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "ok", "trusted: it works");

    let untrusting = Outbound::default().tool(Duration::from_secs(5));
    let f = failure(
        &untrusting,
        &format!("https://127.0.0.1:{good}/?token=secret"),
    )
    .await;
    assert_eq!(f.cause, Cause::Untrusted("UnknownIssuer".into()), "{f}");
    assert!(
        f.to_string()
            .contains("certificate not trusted (UnknownIssuer)"),
        "{f}"
    );
    assert!(f.fix().unwrap().contains("tls.ca_file"));

    let other = tls_server(&ca, &Leaf::for_names(&["other.example"]), stop.clone()).await;
    let f = failure(
        &trusting,
        &format!("https://127.0.0.1:{other}/?token=secret"),
    )
    .await;
    assert_eq!(f.cause, Cause::WrongHost, "{f}");
    assert!(
        f.to_string().contains("certificate is for another host"),
        "{f}"
    );

    let expired = Leaf {
        expired: true,
        ..Leaf::for_names(&["127.0.0.1"])
    };
    let old = tls_server(&ca, &expired, stop.clone()).await;
    let f = failure(&trusting, &format!("https://127.0.0.1:{old}/?token=secret")).await;
    assert_eq!(f.cause, Cause::Expired, "{f}");

    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    tokio::spawn(
        axum::serve(plain, axum::Router::new().fallback(|| async { "plain" })).into_future(),
    );
    let f = failure(
        &trusting,
        &format!("https://127.0.0.1:{plain_port}/?token=secret"),
    )
    .await;
    assert_eq!(f.cause, Cause::NotTls, "{f}");

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let f = failure(
        &trusting,
        &format!("https://127.0.0.1:{closed_port}/?token=secret"),
    )
    .await;
    assert_eq!(f.cause, Cause::Refused, "{f}");
    assert!(f.to_string().contains("connection refused"), "{f}");

    let nxdomain = Outbound::default()
        .with_lookup(Arc::new(Lookups { hang: false }))
        .tool(Duration::from_secs(5));
    let f = failure(&nxdomain, "https://api.provider.invalid/x?token=secret").await;
    assert_eq!(f.cause, Cause::NoSuchHost, "{f}");
    assert!(f.to_string().contains("no such host"), "{f}");

    let silent = Outbound::default()
        .with_lookup(Arc::new(Lookups { hang: true }))
        .tool(Duration::from_millis(300));
    let f = failure(&silent, "https://api.provider.invalid/x?token=secret").await;
    assert_eq!(f.cause, Cause::ConnectTimeout, "{f}");
}
