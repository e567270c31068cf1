//! Outbound webhooks: signed, retried, recorded, and never sent into the
//! operator's own network unless allowed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use gengate_config::Dur;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::*;

/// Requests received: headers and body.
type Received = Vec<(HeaderMap, Vec<u8>)>;

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Received>>,
    /// Status codes to answer, in order; 200 once they run out.
    script: Arc<Mutex<Vec<u16>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    r.got.lock().unwrap().push((headers, body.to_vec()));
    let next = r.script.lock().unwrap().pop();
    StatusCode::from_u16(next.unwrap_or(200)).unwrap()
}

async fn spawn_receiver(script: Vec<u16>) -> (String, Receiver) {
    let r = Receiver {
        got: Arc::default(),
        script: Arc::new(Mutex::new(script.into_iter().rev().collect())),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, r)
}

async fn deliveries_when_settled(app: &TestApp, id: &str) -> Value {
    let what = format!("the webhook of {id} to settle");
    gengate_testkit::wait_until(&what, Duration::from_secs(10), || async {
        let d = app
            .get_as(&app.user_key, &format!("/v1/tasks/{id}/webhooks"))
            .await;
        d.body["data"]
            .as_array()
            .is_some_and(|l| !l.is_empty() && l.iter().all(|x| x["status"] != "pending"))
            .then_some(d.body)
    })
    .await
}

#[tokio::test]
async fn the_result_is_posted_signed_and_retried_until_accepted() {
    let (hook, receiver) = spawn_receiver(vec![500]).await;
    let app = spawn_app_with(|cfg| {
        cfg.webhooks.allow_private = true;
        cfg.webhooks.retry_base = Dur(Duration::from_millis(50));
    })
    .await;
    let created = app
        .post_task(&json!({"model": "sim-image", "input": {"prompt": "tell me"}, "webhook": hook}))
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    assert_eq!(created.body["webhook"], hook.as_str());
    let id = created.id();
    app.dispatch_until_idle().await;
    let record = deliveries_when_settled(&app, &id).await;
    let d = &record["data"][0];
    assert_eq!(
        (
            d["status"].as_str(),
            d["attempts"].as_u64(),
            d["last_status"].as_u64()
        ),
        (Some("delivered"), Some(2), Some(200))
    );
    assert_eq!(d["event"], "task.succeeded");

    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one failed attempt, one accepted");
    assert_eq!(
        got[0].0["webhook-id"], got[1].0["webhook-id"],
        "retries keep the message id"
    );
    assert_eq!(
        got[1].0["webhook-id"].to_str().unwrap(),
        d["id"].as_str().unwrap()
    );
    let secret = app.get_as(&app.user_key, "/v1/webhooks/secret").await.body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    let key = base64::engine::general_purpose::STANDARD
        .decode(&secret["whsec_".len()..])
        .unwrap();
    for (headers, body) in &got {
        let msg_id = headers["webhook-id"].to_str().unwrap();
        let ts = headers["webhook-timestamp"].to_str().unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{msg_id}.{ts}.").as_bytes());
        mac.update(body);
        let expected = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(headers["webhook-signature"].to_str().unwrap(), expected);
        let ts: i64 = ts.parse().unwrap();
        assert!((ts - gengate_server::now_ms() / 1000).abs() < 60);
    }
    let payload: Value = serde_json::from_slice(&got[1].1).unwrap();
    assert_eq!(payload["type"], "task.succeeded");
    assert_eq!(payload["data"]["id"], id.as_str());
    assert_eq!(payload["data"]["status"], "succeeded");
    assert!(payload["data"]["outputs"][0]["url"].is_string());
}

#[tokio::test]
async fn webhooks_into_private_networks_are_refused_by_default() {
    let (hook, receiver) = spawn_receiver(vec![]).await;
    let app = spawn_app().await;
    let id = app
        .post_task(&json!({"model": "sim-image", "input": {"prompt": "x"}, "webhook": hook}))
        .await
        .id();
    app.dispatch_until_idle().await;
    let record = deliveries_when_settled(&app, &id).await;
    let d = &record["data"][0];
    assert_eq!(d["status"], "failed");
    assert!(
        d["last_error"]
            .as_str()
            .unwrap()
            .contains("not a public address"),
        "{d}"
    );
    assert!(receiver.got.lock().unwrap().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_receiver_that_refuses_for_good_is_not_retried_and_bad_urls_are_refused() {
    let (hook, receiver) = spawn_receiver(vec![410]).await;
    let app = spawn_app_with(|cfg| cfg.webhooks.allow_private = true).await;
    let id = app
        .post_task(&json!({"model": "sim-image", "input": {"prompt": "x"}, "webhook": hook}))
        .await
        .id();
    app.dispatch_until_idle().await;
    let record = deliveries_when_settled(&app, &id).await;
    assert_eq!(
        (
            record["data"][0]["status"].as_str(),
            record["data"][0]["attempts"].as_u64()
        ),
        (Some("failed"), Some(1))
    );
    assert_eq!(receiver.got.lock().unwrap().len(), 1);
    let bad = app.post_task(&json!({"model": "sim-image", "input": {"prompt": "x"}, "webhook": "ftp://example.com/x"})).await;
    assert_eq!(
        (bad.status, bad.error().1.as_deref()),
        (422, Some("webhook"))
    );
    // Tasks without a webhook have no deliveries.
    let plain = app.post_task(&prompt("quiet")).await.id();
    app.dispatch_until_idle().await;
    assert_eq!(
        app.get_as(&app.user_key, &format!("/v1/tasks/{plain}/webhooks"))
            .await
            .body["data"],
        json!([])
    );
}
