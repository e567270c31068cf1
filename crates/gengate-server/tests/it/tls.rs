//! gengate over real TLS on loopback: each provider's mock served over HTTPS
//! with a certificate from a test CA, which the server trusts through
//! `tls.ca_file`, or does not; a provider that redirects; and errors that
//! never carry a signed URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gengate_config::{Dur, ProviderKind};
use gengate_mock::Faults;
use gengate_testkit::wait_until;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::helpers::*;
use crate::providers::{
    HUNYUAN_CREDENTIALS, KLING_CREDENTIALS, RH_KEY, add_provider, admin_stats, kling_model,
    runninghub_model, spawn_mock, task, wait_finished,
};

fn hunyuan_model(provider: &str) -> String {
    format!(
        r#"provider = "{provider}"
kind = "image"
endpoint = "image"
expected = "200ms..400ms"
[input.prompt]
type = "string"
required = true
[params]
Prompt = "{{{{prompt}}}}"
"#
    )
}

/// Waits until `provider`'s health in the admin stats reports an error;
/// returns that health.
async fn reported_error(app: &TestApp, provider: &str) -> Value {
    let what = format!("{provider} to report an error");
    wait_until(&what, Duration::from_secs(15), || async {
        let health = admin_stats(app, provider).await["health"].clone();
        health["last_error"]["message"]
            .is_string()
            .then_some(health)
    })
    .await
}

/// Task `id` once its submission's answer is stored: health notes the
/// answer as it arrives, a moment before the task leaves `submitting`.
async fn settled(app: &TestApp, id: &str) -> Resp {
    app.task_when(id, "the submission's outcome to be stored", |t| {
        t.status_text() != "submitting"
    })
    .await
}

#[tokio::test]
async fn each_provider_runs_tasks_end_to_end_over_https() {
    let kling_creds = format!("{}:{}", KLING_CREDENTIALS.0, KLING_CREDENTIALS.1);
    let hy_creds = format!("{}:{}", HUNYUAN_CREDENTIALS.0, HUNYUAN_CREDENTIALS.1);
    let rh = spawn_mock(
        gengate_mock::MockKind::Runninghub,
        RH_KEY,
        (200, 400),
        4,
        Faults::default(),
    )
    .await;
    let hy = spawn_mock(
        gengate_mock::MockKind::Hunyuan,
        &hy_creds,
        (200, 400),
        4,
        Faults::default(),
    )
    .await;
    let kl = spawn_mock(
        gengate_mock::MockKind::Kling,
        &kling_creds,
        (200, 400),
        4,
        Faults::default(),
    )
    .await;
    assert!(rh.url.starts_with("https://") && kl.url.starts_with("https://"));
    let (rh_url, hy_url, kl_url) = (rh.url.clone(), hy.url.clone(), kl.url.clone());
    let app = spawn_app_with(move |cfg| {
        add_provider(
            cfg,
            "rh",
            ProviderKind::Runninghub,
            &rh_url,
            &runninghub_model("rh", "200ms..400ms"),
        );
        add_provider(
            cfg,
            "hy",
            ProviderKind::Hunyuan,
            &hy_url,
            &hunyuan_model("hy"),
        );
        add_provider(
            cfg,
            "kl",
            ProviderKind::Kling,
            &kl_url,
            &kling_model("kl", "200ms..400ms"),
        );
    })
    .await;
    for (provider, mock) in [("rh", &rh), ("hy", &hy), ("kl", &kl)] {
        let id = app
            .post_task(&task(&format!("{provider}-model"), "a harbor at dawn"))
            .await
            .id();
        let done = wait_finished(&app, std::slice::from_ref(&id), Duration::from_secs(20)).await;
        let t = &done[0];
        assert_eq!(t["status"], "succeeded", "{provider}: {t}");
        assert_eq!(t["attempts"], 1, "{provider}: {t}");
        let out = &t["outputs"][0];
        assert!(
            out["url"].as_str().unwrap().starts_with(&app.base),
            "{provider}: the https output was copied to gengate's media: {t}"
        );
        assert!(out["sha256"].is_string(), "{provider}: {t}");
        let ledger = mock.stats().await;
        assert_eq!(ledger["submissions"], 1, "{provider}: {ledger}");
        assert_eq!(ledger["auth_failures"], 0, "{provider}: {ledger}");
    }
    // RunningHub and Kling post callbacks (to gengate's http URL) and
    // gengate takes them; Hunyuan has none.
    for provider in ["rh", "kl"] {
        let stats = admin_stats(&app, provider).await;
        assert!(
            stats["callbacks_received"].as_u64().unwrap() >= 1,
            "{provider}: {stats}"
        );
        assert!(stats["health"]["last_error"].is_null(), "{stats}");
    }
}

/// A certificate from a CA nobody told gengate about: nothing reaches the
/// provider, the task waits with no attempt spent, the stats and `doctor`
/// name the problem and its fix; once the CA is trusted and gengate
/// restarted, the task runs, submitted exactly once.
#[tokio::test]
async fn an_untrusted_certificate_submits_nothing_until_its_ca_is_trusted() {
    let mock = spawn_mock(
        gengate_mock::MockKind::Runninghub,
        RH_KEY,
        (200, 400),
        4,
        Faults::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config();
    cfg.server.data_dir = dir.path().to_owned();
    add_provider(
        &mut cfg,
        "rh",
        ProviderKind::Runninghub,
        &mock.url,
        &runninghub_model("rh", "200ms..400ms"),
    );
    let trusted = cfg.tls.ca_file.take().expect("add_provider trusts the CA");
    // One failure opens the circuit for long: no further try can race the
    // reads below (a try holds the task in `submitting` for a moment).
    let rh = cfg.providers.get_mut("rh").unwrap();
    rh.breaker_failures = 1;
    rh.breaker_cooldown = Dur(Duration::from_secs(120));
    let cfg = cfg.finish().unwrap();
    let store = gengate_store::open(&cfg.store_url()).await.unwrap();
    let app = spawn_on(cfg.clone(), store, tempfile::tempdir().unwrap()).await;
    let id = app.post_task(&task("rh-model", "a lighthouse")).await.id();
    let health = reported_error(&app, "rh").await;
    let message = health["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("certificate not trusted (UnknownIssuer)"),
        "{health}"
    );
    assert!(
        health["last_error"]["fix"]
            .as_str()
            .unwrap()
            .contains("tls.ca_file"),
        "{health}"
    );
    let t = settled(&app, &id).await;
    assert_eq!(
        (t.status_text(), t.body["attempts"].as_u64()),
        ("queued", Some(0)),
        "{}",
        t.body
    );
    assert_eq!(mock.stats().await["submissions"], 0);

    let findings = gengate_server::doctor::run(
        &cfg,
        &gengate_server::doctor::Options {
            connections: 10,
            ..Default::default()
        },
    )
    .await;
    let f = findings
        .iter()
        .find(|f| f.check == "provider reachable")
        .unwrap_or_else(|| panic!("no reachability finding: {findings:?}"));
    assert_eq!(f.level, gengate_server::doctor::Level::Fail, "{f:?}");
    assert!(f.detail.contains("certificate not trusted"), "{f:?}");
    assert!(f.fix.contains("tls.ca_file"), "{f:?}");

    let key = app.user_key.clone();
    app.stop().await;
    let mut cfg = cfg;
    cfg.tls.ca_file = Some(trusted);
    let store = gengate_store::open(&cfg.store_url()).await.unwrap();
    let app = spawn_on(cfg, store, dir).await;
    let t = app
        .task_when_as(&key, &id, "the task to succeed once trusted", |t| {
            t.status_text() == "succeeded"
        })
        .await;
    assert_eq!(t.body["attempts"], 1, "{}", t.body);
    assert_eq!(
        mock.stats().await["submissions"],
        1,
        "exactly one submission"
    );
}

/// A listener that counts the connections it is offered and answers none.
async fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (format!("http://{addr}"), count)
}

/// RunningHub sends its key in the body: a 307 followed would hand it to
/// whoever the provider (or someone between) names.
#[tokio::test]
async fn a_provider_redirect_is_refused_and_its_target_receives_nothing() {
    let (elsewhere, offered) = counting_listener().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = format!("http://{}", listener.local_addr().unwrap());
    let location = format!("{elsewhere}/task/openapi/create?apiKey=stolen");
    let router = axum::Router::new().fallback(move || {
        let location = location.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, location)],
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    let url = redirector.clone();
    let app = spawn_app_with(move |cfg| {
        add_provider(
            cfg,
            "rh",
            ProviderKind::Runninghub,
            &url,
            &runninghub_model("rh", "200ms..400ms"),
        );
        // One try, then the circuit stays open: nothing races the reads.
        let rh = cfg.providers.get_mut("rh").unwrap();
        rh.breaker_failures = 1;
        rh.breaker_cooldown = Dur(Duration::from_secs(120));
    })
    .await;
    let id = app.post_task(&task("rh-model", "a fox")).await.id();
    let health = reported_error(&app, "rh").await;
    let message = health["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("307"), "{health}");
    assert!(
        message.contains(&format!("{elsewhere}/task/openapi/create")),
        "names the Location: {health}"
    );
    assert!(
        !message.contains("stolen"),
        "the query is redacted: {health}"
    );
    let t = settled(&app, &id).await;
    assert_eq!(t.status_text(), "queued", "{}", t.body);
    assert_eq!(t.body["attempts"], 0, "{}", t.body);
    assert_eq!(
        offered.load(Ordering::SeqCst),
        0,
        "nothing followed the redirect"
    );
}

/// A provider entry with `proxy` reaches its API through it: here the
/// proxy is the mock itself (it takes the absolute-form request), and the
/// API's host does not even resolve.
#[tokio::test]
async fn a_provider_entry_reaches_its_api_through_its_proxy() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_url = format!("http://{}", listener.local_addr().unwrap());
    let behavior = gengate_mock::sim::Behavior {
        latency_min: Duration::from_millis(50),
        latency_max: Duration::from_millis(100),
        fail_rate: 0.0,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(gengate_mock::serve_sim(
        listener,
        gengate_mock::MockConfig::new(behavior, 4, &mock_url, ""),
        stop.clone(),
    ));
    let _stop = stop.drop_guard();
    let proxy = mock_url.clone();
    let app = spawn_app_with(move |cfg| {
        let sim = cfg.providers.get_mut("sim").unwrap();
        sim.base_url = Some(http_url("http://sim-provider.invalid"));
        sim.proxy = Some(http_url(&proxy));
    })
    .await;
    let id = app.post_task(&prompt("through the proxy")).await.id();
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    assert_eq!(t.status_text(), "succeeded", "{}", t.body);
}

/// Object storage over HTTPS with a private CA (MinIO's case): copies work
/// once the CA is in `tls.ca_file`, and fail, saying why, until then.
#[tokio::test]
async fn the_s3_backend_stores_over_https_trusting_tls_ca_file() {
    use gengate_engine::media::{Backend, CopyError, Media};
    let (Some(s3), Some(ca)) = (
        gengate_testkit::service_url("TEST_S3_TLS_URL"),
        gengate_testkit::service_url("TEST_TLS_CA"),
    ) else {
        return;
    };
    let trust = gengate_net::Trust::load(Some(std::path::Path::new(&ca))).unwrap();
    let net = gengate_net::Outbound::new(trust);
    let bucket = format!("gg-tls-{}", crate::media::rand_suffix());
    let r = net
        .storage(Duration::from_secs(10))
        .unwrap()
        .put(format!("{s3}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let o = crate::media::origin().await;
    let dir = tempfile::tempdir().unwrap();
    let media = |net: &gengate_net::Outbound| {
        Media::new(
            Backend::s3(crate::media::s3_settings(&s3, &bucket), net).unwrap(),
            crate::media::settings(true, &[]),
            dir.path().to_owned(),
            "http://gg.test/media".into(),
            net,
        )
        .unwrap()
    };
    let task = crate::media::task_with(&format!("{}/img.png", o.url), "image/png", None);
    let out = media(&net)
        .copy_one(&task, 0, &task.outputs[0])
        .await
        .unwrap();
    assert_eq!(out.key.as_deref(), Some("t/tsk_01TEST/0.png"));
    let err = media(&gengate_net::Outbound::default())
        .copy_one(&task, 0, &task.outputs[0])
        .await
        .unwrap_err();
    assert!(matches!(err, CopyError::Transient(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("certificate not trusted"), "{text}");
    assert!(!text.contains("X-Amz-") && !text.contains('?'), "{text}");
}

/// A failed upload's error reaches the task's owner: it must not carry the
/// presigned URL (signature and credential in its query).
#[tokio::test]
async fn an_s3_failure_puts_no_signed_url_in_the_tasks_error() {
    // Nothing listens at the endpoint: every PutObject fails to connect.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(move |cfg| {
        cfg.media.backend = gengate_config::MediaBackend::S3;
        let s3 = &mut cfg.media.s3;
        s3.endpoint = Some(http_url(&endpoint));
        s3.bucket = "results".into();
        s3.path_style = true;
        s3.access_key = "AKIAEXAMPLE".into();
        s3.secret_key = "secret".into();
        s3.public_base_url = Some(http_url("https://cdn.example.com"));
        cfg.media.max_attempts = 2;
    })
    .await;
    let id = app.post_task(&prompt("signed")).await.id();
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    assert_eq!(t.status_text(), "failed", "{}", t.body);
    assert_eq!(t.body["error"]["code"], "output_copy_failed");
    let message = t.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("connection refused"), "{message}");
    for leak in ["X-Amz-", "Signature", "Credential", "?"] {
        assert!(!message.contains(leak), "{leak} in {message}");
    }
}
