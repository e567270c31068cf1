//! Proxies from the environment are never used: `HTTPS_PROXY` set for some
//! other program would let the proxy resolve what a guarded client fetches
//! (a provider's output URL, a user's webhook), and the address policy
//! would never see the address. The real binary, with every proxy variable
//! pointing at a listener that counts what it is offered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::process::{Proc, create_key, get_json, serve_args, start_mock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_reach_no_media_fetch_and_no_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    // The "proxy": counts connections, answers none.
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let offered = Arc::new(AtomicUsize::new(0));
    let seen = offered.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = proxy.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    // The webhook receiver: counts deliveries.
    let hooks = Arc::new(AtomicUsize::new(0));
    let got = hooks.clone();
    let receiver = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", receiver.local_addr().unwrap());
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            got.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }),
    );
    tokio::spawn(async move { axum::serve(receiver, router).await });

    let mock = start_mock(cwd, "sim", "100ms..200ms", &[]);
    let config = cwd.join("gengate.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.sim]\nkind = \"sim\"\nbase_url = \"{}\"\n\n[media]\nallow_private = true\n\n[webhooks]\nallow_private = true\n",
            mock.url
        ),
    )
    .unwrap();
    let data = cwd.join("data");
    let common = [
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let key = create_key(cwd, &common, "pia");
    let args = serve_args(&common);
    let env: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ]
    .into_iter()
    .map(|name| (name, proxy_url.as_str()))
    .chain([("NO_PROXY", ""), ("no_proxy", "")])
    .collect();
    let server = Proc::start_with_env(&args, cwd, &env);

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = client
        .post(format!("{}/v1/tasks", server.url))
        .bearer_auth(&key)
        .json(&json!({"model": "sim-image", "input": {"prompt": "no proxy", "size": "512x512"}, "webhook": hook_url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{}/v1/tasks/{id}", server.url);
    let t = gengate_testkit::wait_until(
        "the task and its webhook",
        Duration::from_secs(30),
        || async {
            let t = get_json(&client, &url, Some(&key)).await;
            assert_ne!(t["status"], "failed", "{t}");
            (t["status"] == "succeeded" && hooks.load(Ordering::SeqCst) == 1).then_some(t)
        },
    )
    .await;
    assert!(
        t["outputs"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with(&server.url),
        "the output was fetched and stored: {t}"
    );
    assert_eq!(offered.load(Ordering::SeqCst), 0, "the proxy saw nothing");
}
