//! Health, readiness, metrics, OpenAPI, the model catalog and admin stats.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn health_ready_metrics_and_stats_answer() {
    let app = spawn_app().await;
    let h = read(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(
        (h.status, h.body.clone()),
        (200, serde_json::json!({"status": "ok"}))
    );
    let r = read(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ready")));

    app.post_task(&prompt("count me")).await;
    app.dispatch_until_idle().await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "gengate_http_requests_total{route=\"/v1/tasks\",method=\"POST\",status=\"202\"} 1",
        "gengate_http_request_duration_seconds_bucket{route=\"/v1/tasks\"",
        "gengate_task_transitions_total{from=\"running\",to=\"storing\"} 1",
        "gengate_task_transitions_total{from=\"storing\",to=\"succeeded\"} 1",
        "gengate_queue_depth{provider=\"sim\"} 0",
        "gengate_in_flight{provider=\"sim\"} 0",
        "gengate_provider_task_duration_seconds_count{provider=\"sim\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    let stats = app.get_as(&app.admin_key, "/v1/admin/stats").await;
    assert_eq!(stats.status, 200);
    let sim = &stats.body["providers"][0];
    assert_eq!(
        (sim["provider"].as_str(), sim["concurrency_limit"].as_u64()),
        (Some("sim"), Some(4))
    );
    assert!(
        sim["latency_seconds"].as_f64().is_some(),
        "latency observed: {sim}"
    );
    let succeeded = stats.body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "succeeded")
        .unwrap();
    assert_eq!(succeeded["count"], 1);
}

#[tokio::test]
async fn openapi_describes_every_route_and_models_list_their_schema() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/v1/tasks", "post"),
        ("/v1/tasks", "get"),
        ("/v1/tasks/{id}", "get"),
        ("/v1/tasks/{id}/cancel", "post"),
        ("/v1/models", "get"),
        ("/v1/gallery", "get"),
        ("/v1/admin/stats", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from openapi.json"
        );
    }
    assert!(doc["components"]["schemas"]["TaskView"].is_object());

    let models = read(app.client.get(app.url("/v1/models")).send().await.unwrap()).await;
    let names: Vec<&str> = models.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sim-image", "sim-video"]);
    let schema = &models.body["data"][0]["input"];
    let prompt = &schema["properties"]["prompt"];
    assert_eq!(
        (
            schema["$schema"].as_str(),
            prompt["type"].as_str(),
            prompt["maxLength"].as_u64(),
            schema["required"]
                .as_array()
                .map(|r| r.contains(&"prompt".into())),
        ),
        (
            Some("https://json-schema.org/draft/2020-12/schema"),
            Some("string"),
            Some(2000),
            Some(true)
        )
    );
    assert_eq!(
        doc["components"]["schemas"]["ModelInput.sim-image"]["properties"], schema["properties"],
        "the document carries the same schema"
    );
}

/// The models' input schemas, checked by an independent validator (Python's
/// `jsonschema`, draft 2020-12), accept exactly the inputs the server takes.
#[tokio::test]
async fn model_schemas_accept_what_the_server_accepts() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import jsonschema"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "CI must check the schemas: pip install jsonschema"
        );
        eprintln!("skipped: python3 with jsonschema is not installed");
        return;
    }
    let app = spawn_app().await;
    let models = read(app.client.get(app.url("/v1/models")).send().await.unwrap()).await;
    let long = "x".repeat(2001);
    let inputs = [
        serde_json::json!({"prompt": "a cat"}),
        serde_json::json!({"prompt": "a cat", "size": "512x512", "steps": 50}),
        serde_json::json!({"prompt": "a cat", "steps": null, "seed": 7}),
        serde_json::json!({"prompt": "a cat", "duration": "10", "image_url": "https://example.com/a.png"}),
        serde_json::json!({}),
        serde_json::json!({"prompt": null}),
        serde_json::json!({"prompt": 5}),
        serde_json::json!({"prompt": ""}),
        serde_json::json!({"prompt": long}),
        serde_json::json!({"prompt": "a", "size": "1x1"}),
        serde_json::json!({"prompt": "a", "steps": 0}),
        serde_json::json!({"prompt": "a", "steps": "5"}),
        serde_json::json!({"prompt": "a", "seed": -1}),
        serde_json::json!({"prompt": "a", "image_url": "ftp://example.com/a.png"}),
        serde_json::json!({"prompt": "a", "image_url": "https://"}),
        serde_json::json!({"prompt": "a", "image_url": "https://a b"}),
        serde_json::json!({"prompt": "a", "nope": 1}),
        serde_json::json!([1]),
    ];
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
job = json.load(sys.stdin)
Draft202012Validator.check_schema(job["schema"])
v = Draft202012Validator(job["schema"])
print(json.dumps([v.is_valid(i) for i in job["inputs"]]))
"#;
    let mut checked = 0;
    for model in models.body["data"].as_array().unwrap() {
        let job = serde_json::json!({"schema": model["input"], "inputs": inputs});
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(job.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "the schema of {model} is not valid");
        let valid: Vec<bool> = serde_json::from_slice(&out.stdout).unwrap();
        for (input, valid) in inputs.iter().zip(valid) {
            let body = serde_json::json!({"model": model["name"], "input": input});
            let r = app.post_task(&body).await;
            assert_eq!(
                (r.status == 202, r.status == 202 || r.status == 422),
                (valid, true),
                "{body}: the schema says valid={valid}, the server {} {}",
                r.status,
                r.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 2 * inputs.len(), "both models checked");
}

#[tokio::test]
async fn large_json_is_compressed_as_the_client_asks_small_bodies_and_media_are_not() {
    let app = spawn_app().await;
    for i in 0..20 {
        app.post_task(&prompt(&format!("compress me please, task number {i}")))
            .await;
    }
    app.dispatch_until_idle().await;
    let get = |path: String, enc: &'static str| {
        let req = app
            .client
            .get(app.url(&path))
            .bearer_auth(&app.user_key)
            .header("accept-encoding", enc);
        async move { req.send().await.unwrap() }
    };
    let plain = get("/v1/tasks?limit=20".into(), "identity").await;
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_len = plain.bytes().await.unwrap().len();
    for enc in ["gzip", "br", "zstd"] {
        let r = get("/v1/tasks?limit=20".into(), enc).await;
        assert_eq!(r.headers()["content-encoding"], enc);
        assert!(
            r.headers()["etag"].to_str().unwrap().starts_with("W/"),
            "weak ETag across encodings"
        );
        let len = r.bytes().await.unwrap().len();
        assert!(
            len * 3 < plain_len,
            "{enc}: {len} bytes vs {plain_len} plain"
        );
    }
    let small = get("/healthz".into(), "gzip").await;
    assert!(
        small.headers().get("content-encoding").is_none(),
        "tiny bodies stay as they are"
    );
    let task: serde_json::Value = app.get_as(&app.user_key, "/v1/tasks?limit=1").await.body;
    let image_url = task["data"][0]["outputs"][0]["url"]
        .as_str()
        .unwrap()
        .replace(&app.base, "");
    let image = get(image_url, "gzip").await;
    assert_eq!(image.headers()["content-type"], "image/png");
    assert!(
        image.headers().get("content-encoding").is_none(),
        "media is never recompressed"
    );
}

#[tokio::test]
async fn silent_and_slow_connections_are_closed_at_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|cfg| {
        cfg.server.idle_timeout = gengate_config::Dur(std::time::Duration::from_millis(300))
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap(); // never finishes
    let started = std::time::Instant::now();
    let mut buf = [0u8; 512];
    for conn in [&mut silent, &mut slow] {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let mut total = 0;
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        })
        .await
        .expect("the server closed the connection");
        let _ = n;
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // A normal keep-alive client is unaffected while it keeps talking.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_admin_makes_a_user_key_over_http_and_it_works_once_shown() {
    let app = spawn_app().await;
    let post = |key: &str, body: Value| {
        app.client
            .post(app.url("/v1/admin/keys"))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    let made = read(
        post(&app.admin_key, serde_json::json!({"user": "bench-1"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["user"], "bench-1");
    assert_eq!(made.body["role"], "user");
    let key = made.body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(made.body["prefix"].as_str().unwrap()));
    let created = app
        .post_task_as(&key, &prompt("from a new key"), None)
        .await;
    assert_eq!(created.status, 202);
    let stats = app.get_as(&key, "/v1/admin/stats").await;
    assert_eq!(stats.status, 403, "a user key is not an admin key");

    let refused = read(
        post(&key, serde_json::json!({"user": "mallory"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (refused.status, refused.error().0.as_str()),
        (403, "forbidden")
    );
    let bad = read(
        post(&app.admin_key, serde_json::json!({"user": "a b"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((bad.status, bad.error().1.as_deref()), (422, Some("user")));
    let bad = read(
        post(
            &app.admin_key,
            serde_json::json!({"user": "ok", "role": "root"}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((bad.status, bad.error().1.as_deref()), (422, Some("role")));
}
