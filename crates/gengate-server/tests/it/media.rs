//! The media step: outputs copied into gengate's own storage (local or S3)
//! and served with ranges and ETags; refusals of what must not be fetched;
//! deletion. All traffic stays on 127.0.0.1: refusals of other addresses
//! come from an injected resolver, and are checked to happen before any
//! connection is opened.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gengate_config::{Bytes, MediaBackend};
use gengate_core::task::NewTask;
use gengate_core::{Output, Task};
use gengate_engine::media::{self, Backend, CopyError, Media, S3Settings};
use gengate_mock::sim::Behavior;
use gengate_mock::{MockConfig, serve_sim};
use gengate_net::{Lookup, Outbound};
use serde_json::json;
use sha2::Digest;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

const PNG_HEAD: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

fn png(len: usize) -> Vec<u8> {
    let mut v = PNG_HEAD.to_vec();
    v.resize(len, 7);
    v
}

fn mp4(len: usize) -> Vec<u8> {
    let mut v = b"\0\0\0\x20ftypisom\0\0\x02\0".to_vec();
    v.extend((0..len.saturating_sub(v.len())).map(|i| (i % 251) as u8));
    v
}

#[derive(serde::Deserialize)]
struct To {
    to: String,
}

/// A file server on loopback standing in for a provider's CDN.
pub(crate) struct Origin {
    pub(crate) url: String,
    connections: Arc<AtomicUsize>,
    _stop: tokio_util::sync::DropGuard,
}

pub(crate) async fn origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new()
        .route(
            "/img.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], png(70_000)) }),
        )
        .route(
            "/big.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], png(3 << 20)) }),
        )
        .route(
            "/clip.mp4",
            get(|| async { ([(header::CONTENT_TYPE, "video/mp4")], mp4(12 << 20)) }),
        )
        .route(
            "/fake.png",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    "<!doctype html><html>hi</html>",
                )
            }),
        )
        .route(
            "/stream.png",
            get(|| async {
                // Chunked: no length declared up front.
                let chunks = png(70_000)
                    .chunks(8192)
                    .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>();
                axum::body::Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/gone.png",
            get(|| async { (StatusCode::FORBIDDEN, "Request has expired") }),
        )
        .route(
            "/hop",
            get(|q: Query<To>| async move {
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, q.0.to)
                    .body(axum::body::Body::empty())
                    .unwrap()
                    .into_response()
            }),
        );
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        loop {
            let (sock, _) = tokio::select! {
                r = listener.accept() => r.unwrap(),
                () = stopped.cancelled() => return,
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let svc = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    Origin {
        url,
        connections,
        _stop: stop.drop_guard(),
    }
}

/// Answers every name with fixed addresses, as a hostile DNS would.
struct FixedLookup(Vec<IpAddr>);

impl Lookup for FixedLookup {
    fn lookup(
        &self,
        _host: String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<IpAddr>>> + Send + 'static>,
    > {
        let addrs = self.0.clone();
        Box::pin(async move { Ok(addrs) })
    }
}

pub(crate) fn settings(allow_private: bool, allowed_hosts: &[&str]) -> media::Settings {
    media::Settings {
        concurrency: 2,
        max_bytes: 1 << 20,
        max_attempts: 2,
        retry_base: Duration::from_millis(10),
        allow_private,
        allowed_hosts: allowed_hosts.iter().map(|s| (*s).to_owned()).collect(),
        provider_hosts: Default::default(),
        fetch_timeout: Duration::from_secs(10),
        in_place_providers: Vec::new(),
    }
}

fn local_media(dir: &std::path::Path, s: media::Settings, lookup: Vec<IpAddr>) -> Media {
    Media::new(
        Backend::Local {
            dir: dir.to_owned(),
            base_url: "http://gg.test/media".into(),
        },
        s,
        dir.to_owned(),
        "http://gg.test/media".into(),
        &Outbound::default().with_lookup(Arc::new(FixedLookup(lookup))),
    )
    .unwrap()
}

pub(crate) fn task_with(url: &str, content_type: &str, expires_at: Option<i64>) -> Task {
    let mut t = NewTask {
        id: "tsk_01TEST".into(),
        user_id: 1,
        model: "m".into(),
        provider: "p".into(),
        input: json!({}),
        public: false,
        priority: 0,
        max_attempts: 1,
        deadline_at: i64::MAX,
        created_at: 0,
        webhook_url: None,
        billing: None,
        limits: Default::default(),
    }
    .into_task();
    t.outputs = vec![Output {
        expires_at,
        ..Output::new(url, content_type)
    }];
    t
}

async fn copy(m: &Media, url: &str, content_type: &str) -> Result<Output, CopyError> {
    let t = task_with(url, content_type, None);
    m.copy_one(&t, 0, &t.outputs[0]).await
}

#[tokio::test]
async fn outputs_from_an_http_provider_are_copied_and_served_with_ranges_and_etags() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_url = format!("http://{}", listener.local_addr().unwrap());
    let behavior = Behavior {
        latency_min: Duration::from_millis(50),
        latency_max: Duration::from_millis(100),
        fail_rate: 0.0,
    };
    let stop = CancellationToken::new();
    tokio::spawn(serve_sim(
        listener,
        MockConfig::new(behavior, 4, &mock_url, ""),
        stop.clone(),
    ));
    let _stop = stop.drop_guard();
    let url = mock_url.clone();
    let app = spawn_app_with(move |cfg| {
        cfg.providers.get_mut("sim").unwrap().base_url = Some(http_url(&url));
    })
    .await;
    let id = app.post_task(&prompt("a lighthouse")).await.id();
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    assert_eq!(t.status_text(), "succeeded", "{}", t.body);
    let out = &t.body["outputs"][0];
    let signed = out["url"].as_str().unwrap();
    assert!(
        signed.starts_with(&format!("{}/media/t/{id}/0.", app.base)),
        "{signed}"
    );
    let size = out["bytes"].as_u64().unwrap();
    let sha = out["sha256"].as_str().unwrap().to_owned();

    // The task is private: its files are its owner's, or open with the
    // signed link its view gives.
    let (url, query) = signed
        .split_once('?')
        .expect("a private output's link is signed");
    assert!(
        query.starts_with("exp=") && query.contains("&sig="),
        "{query}"
    );
    let anonymous = app.client.get(url).send().await.unwrap();
    assert_eq!(anonymous.status(), 404);
    let r = app.client.get(signed).send().await.unwrap();
    assert_eq!(r.status(), 200, "the signed link opens it");
    let secs: i64 = r.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .strip_prefix("private, max-age=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=3600).contains(&secs),
        "kept no longer than it works: {secs}"
    );
    let r = app
        .client
        .get(url)
        .bearer_auth(&app.user_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(
        h[header::CONTENT_TYPE],
        out["content_type"].as_str().unwrap()
    );
    assert_eq!(h[header::CACHE_CONTROL], "private, max-age=3600");
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    assert_eq!(h[header::CONTENT_LENGTH], size.to_string().as_str());
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len() as u64, size);
    let digest: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, sha, "the recorded SHA-256 is the file's");
    let etag = h[header::ETAG].to_str().unwrap().to_owned();

    let r = app
        .client
        .get(url)
        .bearer_auth(&app.user_key)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let r = app
        .client
        .get(url)
        .bearer_auth(&app.user_key)
        .header(header::RANGE, "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()[header::CONTENT_RANGE],
        format!("bytes 0-9/{size}").as_str()
    );
    assert_eq!(r.bytes().await.unwrap(), body.slice(0..10));

    let r = app
        .client
        .get(url)
        .bearer_auth(&app.user_key)
        .header(header::RANGE, "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), body.slice(body.len() - 5..));

    let r = app
        .client
        .get(url)
        .bearer_auth(&app.user_key)
        .header(header::RANGE, format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()[header::CONTENT_RANGE],
        format!("bytes */{size}").as_str()
    );

    for escape in [
        "/media/../gengate.db",
        "/media/%2e%2e/gengate.db",
        "/media/t/..%2fx",
    ] {
        let r = app.client.get(app.url(escape)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{escape}");
    }
}

#[tokio::test]
async fn in_process_sim_outputs_are_recorded_in_place_with_a_thumbnail() {
    let app = spawn_app().await;
    let id = app
        .post_task(&json!({"model": "sim-image", "input": {"prompt": "a fox"}, "public": true}))
        .await
        .id();
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    assert_eq!(t.status_text(), "succeeded", "{}", t.body);
    let out = &t.body["outputs"][0];
    assert!(out["sha256"].as_str().unwrap().len() == 64, "{out}");
    assert!(
        out["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/media/t/{id}/0.", app.base)),
        "linked under the task's key, whose rules serve it: {out}"
    );
    assert!(
        out["width"].as_u64() > Some(0) && out["height"].as_u64() > Some(0),
        "an image's size: {out}"
    );
    let r = app
        .client
        .get(out["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap().len() as u64,
        out["bytes"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn a_video_output_gets_a_poster_and_its_size_and_duration() {
    if !gengate_engine::media::video::available() {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "CI must check video posters: install ffmpeg"
        );
        eprintln!("skipped: ffmpeg is not installed");
        return;
    }
    let app = spawn_app().await;
    let id = app
        .post_task(&json!({"model": "sim-video", "input": {"prompt": "a river"}}))
        .await
        .id();
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    assert_eq!(t.status_text(), "succeeded", "{}", t.body);
    let out = &t.body["outputs"][0];
    assert!(out["width"].as_u64() > Some(0), "{out}");
    assert!(out["height"].as_u64() > Some(0), "{out}");
    assert!(out["duration_s"].as_f64() > Some(0.0), "{out}");
    let poster = out["thumbnail_url"].as_str().unwrap();
    let r = app.client.get(poster).send().await.unwrap();
    assert_eq!(r.status(), 200, "{poster}");
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/jpeg");
    let jpeg = r.bytes().await.unwrap();
    assert!(jpeg.starts_with(b"\xff\xd8"), "a JPEG of its first frame");
}

#[tokio::test]
async fn private_and_link_local_addresses_are_refused_before_any_connection() {
    let o = origin().await;
    let port = o.url.rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    for answer in [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.10",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fd00::5",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ] {
        let m = local_media(
            dir.path(),
            settings(false, &[]),
            vec![answer.parse().unwrap()],
        );
        let err = copy(
            &m,
            &format!("http://cdn.provider.test:{port}/img.png"),
            "image/png",
        )
        .await
        .unwrap_err();
        assert!(matches!(err, CopyError::Refused(_)), "{answer}: {err:?}");
        assert!(err.to_string().contains("private or special"), "{err}");
    }
    // Literal addresses in every spelling never reach a resolver.
    let m = local_media(dir.path(), settings(false, &[]), vec![]);
    for host in [
        "127.0.0.1",
        "[::1]",
        "[::ffff:7f00:1]",
        "2130706433",
        "0x7f.0.0.1",
    ] {
        let err = copy(&m, &format!("http://{host}:{port}/img.png"), "image/png")
            .await
            .unwrap_err();
        assert!(matches!(err, CopyError::Refused(_)), "{host}: {err:?}");
    }
    assert_eq!(
        o.connections.load(Ordering::SeqCst),
        0,
        "no connection was opened"
    );
}

#[tokio::test]
async fn redirects_are_checked_hop_by_hop() {
    let o = origin().await;
    let dir = tempfile::tempdir().unwrap();
    // Loopback allowed (the origin is there) but only the origin's host.
    let m = local_media(dir.path(), settings(true, &["127.0.0.1"]), vec![]);
    let ok = copy(&m, &format!("{}/hop?to=/img.png", o.url), "image/png")
        .await
        .unwrap();
    assert_eq!(ok.bytes, Some(70_000));
    let before = o.connections.load(Ordering::SeqCst);
    for to in [
        "http://169.254.169.254/latest/meta-data",
        "http://metadata.internal/x.png",
        "http://[::ffff:a9fe:a9fe]/x.png",
        "file:///etc/passwd",
    ] {
        let err = copy(&m, &format!("{}/hop?to={to}", o.url), "image/png")
            .await
            .unwrap_err();
        assert!(matches!(err, CopyError::Refused(_)), "{to}: {err:?}");
    }
    // Each refused hop cost only the request to the origin itself.
    assert!(o.connections.load(Ordering::SeqCst) - before <= 4);
    // Without private addresses allowed, a literal one is refused up front.
    let m = local_media(
        dir.path(),
        settings(false, &[]),
        vec!["93.184.216.34".parse().unwrap()],
    );
    let err = copy(&m, "http://[::ffff:192.168.1.1]/x.png", "image/png")
        .await
        .unwrap_err();
    assert!(matches!(err, CopyError::Refused(_)), "{err:?}");
}

#[tokio::test]
async fn oversize_mismatched_and_expired_outputs_are_refused() {
    let o = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let m = local_media(dir.path(), settings(true, &[]), vec![]);

    let err = copy(&m, &format!("{}/big.png", o.url), "image/png")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_bytes"), "{err}");

    let err = copy(&m, &format!("{}/fake.png", o.url), "image/png")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a recognized image or video"),
        "{err}"
    );

    let err = copy(&m, &format!("{}/img.png", o.url), "video/mp4")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the video/mp4"), "{err}");

    // Past its expiry, a 403 means the URL is gone for good.
    let t = task_with(&format!("{}/gone.png", o.url), "image/png", Some(1));
    let e = m.copy_all(&t).await.unwrap_err();
    assert_eq!(e.code, "output_expired", "{e:?}");
    // Refusals fail the task with the cause.
    let t = task_with(&format!("{}/fake.png", o.url), "image/png", None);
    let e = m.copy_all(&t).await.unwrap_err();
    assert_eq!(e.code, "output_copy_failed");
    assert!(e.message.contains("not a recognized"), "{}", e.message);
    // Nothing refused was stored, and no temp file is left behind.
    assert_eq!(walk(dir.path()), Vec::<String>::new());
    // A file that grows past the cap while streaming (no length declared up
    // front) is cut off and its temp file removed.
    let mut small = settings(true, &[]);
    small.max_bytes = 50_000;
    let m = local_media(dir.path(), small, vec![]);
    let err = copy(&m, &format!("{}/stream.png", o.url), "image/png")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_bytes"), "{err}");
    assert_eq!(walk(dir.path()), Vec::<String>::new());
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_copy_that_keeps_failing_fails_the_task_with_output_copy_failed() {
    let app = spawn_app_with(|cfg| {
        // Every output of the simulator is larger than this.
        cfg.media.max_bytes = Bytes(16);
    })
    .await;
    let id = app.post_task(&prompt("a big fox")).await.id();
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    assert_eq!(t.status_text(), "failed", "{}", t.body);
    assert_eq!(t.body["error"]["code"], "output_copy_failed", "{}", t.body);
}

#[tokio::test]
async fn delete_removes_a_finished_task_and_its_media() {
    let app = spawn_app().await;
    let r = app
        .post_task(&json!({"model": "sim-image", "input": {"prompt": "a crane"}, "public": true}))
        .await;
    let id = r.id();
    let bob = app.key_for("bob").await;
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    assert_eq!(t.status_text(), "succeeded");
    let url = t.body["outputs"][0]["url"].as_str().unwrap().to_owned();
    let gallery = app.get_as(&app.user_key, "/v1/gallery").await;
    assert_eq!(
        gallery.body["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        gallery.body
    );

    let del = |key: String, id: String| {
        let c = app.client.clone();
        let u = app.url(&format!("/v1/tasks/{id}"));
        async move { c.delete(u).bearer_auth(key).send().await.unwrap().status() }
    };
    assert_eq!(del(bob, id.clone()).await, 404, "another user's task");
    assert_eq!(del(app.user_key.clone(), id.clone()).await, 204);
    assert_eq!(app.get_task(&id).await.status, 404);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 404);
    let thumb = t.body["outputs"][0]["thumbnail_url"].as_str().unwrap();
    assert_eq!(app.client.get(thumb).send().await.unwrap().status(), 404);
    let gallery = app.get_as(&app.user_key, "/v1/gallery").await;
    assert_eq!(
        gallery.body["data"].as_array().map(Vec::len),
        Some(0),
        "{}",
        gallery.body
    );
    let mine = app.get_as(&app.user_key, "/v1/tasks").await;
    assert_eq!(
        mine.body["data"].as_array().map(Vec::len),
        Some(0),
        "{}",
        mine.body
    );
    assert_eq!(
        del(app.user_key.clone(), id.clone()).await,
        404,
        "already gone"
    );

    // Unfinished tasks are refused.
    let slow = app.post_task(&prompt("slow")).await.id();
    assert_eq!(del(app.user_key.clone(), slow).await, 409);
    app.dispatch_until_idle().await;
}

/// The S3 server the tests use: `TEST_S3_URL` (moto, started by `.ci/run`).
fn s3_url() -> Option<String> {
    gengate_testkit::service_url("TEST_S3_URL")
}

async fn make_bucket(s3: &str, bucket: &str) {
    let r = reqwest::Client::new()
        .put(format!("{s3}/{bucket}"))
        .send()
        .await
        .expect("the S3 server answers");
    assert!(
        r.status().is_success() || r.status() == 409,
        "{}",
        r.status()
    );
}

pub(crate) fn s3_settings(s3: &str, bucket: &str) -> S3Settings {
    S3Settings {
        endpoint: s3.parse().unwrap(),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        path_style: true,
        access_key: "testing".into(),
        secret_key: "testing".into(),
        prefix: "gg/".into(),
        public_base_url: "https://cdn.example.com/".into(),
        part_size: 5 << 20,
    }
}

#[tokio::test]
async fn s3_backend_stores_objects_by_key_with_type_and_size_and_cdn_urls() {
    let Some(s3) = s3_url() else { return };
    let bucket = format!("gg-{}", rand_suffix());
    make_bucket(&s3, &bucket).await;
    let o = origin().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(true, &[]);
    s.max_bytes = 64 << 20;
    let m = Media::new(
        Backend::s3(s3_settings(&s3, &bucket), &Outbound::default()).unwrap(),
        s,
        dir.path().to_owned(),
        "http://gg.test/media".into(),
        &Outbound::default(),
    )
    .unwrap();
    // 12 MiB: three parts of a multipart upload; and a small single PUT.
    let video = copy(&m, &format!("{}/clip.mp4", o.url), "video/mp4")
        .await
        .unwrap();
    let image = copy(&m, &format!("{}/img.png", o.url), "image/png")
        .await
        .unwrap();
    assert_eq!(video.key.as_deref(), Some("t/tsk_01TEST/0.mp4"));
    assert_eq!(video.url, "https://cdn.example.com/gg/t/tsk_01TEST/0.mp4");
    assert_eq!(video.bytes, Some(12 << 20));
    for (out, ct, len) in [
        (&video, "video/mp4", 12u64 << 20),
        (&image, "image/png", 70_000),
    ] {
        let r = reqwest::get(signed_get(
            &s3,
            &bucket,
            &format!("gg/{}", out.key.as_ref().unwrap()),
        ))
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], ct);
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len() as u64, len);
        let digest: String = sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(Some(digest), out.sha256);
    }
    let mut keys = m.backend.list("t/").await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["t/tsk_01TEST/0.mp4", "t/tsk_01TEST/0.png"]);
    m.delete_outputs(&[video]).await.unwrap();
    assert_eq!(
        m.backend.list("t/").await.unwrap(),
        vec!["t/tsk_01TEST/0.png"]
    );
}

#[tokio::test]
async fn s3_backend_end_to_end_through_the_api() {
    let Some(s3) = s3_url() else { return };
    let bucket = format!("gg-{}", rand_suffix());
    make_bucket(&s3, &bucket).await;
    let (s3c, b) = (s3.clone(), bucket.clone());
    let app = spawn_app_with(move |cfg| {
        cfg.media.backend = MediaBackend::S3;
        let c = &mut cfg.media.s3;
        c.endpoint = Some(http_url(&s3c));
        c.bucket = b;
        c.path_style = true;
        c.access_key = "testing".into();
        c.secret_key = "testing".into();
        c.prefix = "p/".into();
        c.public_base_url = Some(http_url("https://cdn.example.com"));
    })
    .await;
    let id = app.post_task(&prompt("a heron")).await.id();
    app.dispatch_until_idle().await;
    let t = app.get_task(&id).await;
    assert_eq!(t.status_text(), "succeeded", "{}", t.body);
    let out = &t.body["outputs"][0];
    let url = out["url"].as_str().unwrap();
    let key = url
        .strip_prefix("https://cdn.example.com/")
        .expect("a CDN URL");
    assert!(key.starts_with(&format!("p/t/{id}/0.")), "{key}");
    let r = reqwest::get(signed_get(&s3, &bucket, key)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        out["content_type"].as_str().unwrap()
    );
    assert_eq!(
        r.bytes().await.unwrap().len() as u64,
        out["bytes"].as_u64().unwrap()
    );
}

/// A signed GET of an object (buckets are private).
fn signed_get(s3: &str, bucket: &str, key: &str) -> reqwest::Url {
    use rusty_s3::S3Action;
    let b = rusty_s3::Bucket::new(
        s3.parse().unwrap(),
        rusty_s3::UrlStyle::Path,
        bucket.to_owned(),
        "us-east-1".to_owned(),
    )
    .unwrap();
    let creds = rusty_s3::Credentials::new("testing", "testing");
    b.get_object(Some(&creds), key)
        .sign(Duration::from_secs(600))
}

pub(crate) fn rand_suffix() -> String {
    format!("{:x}", rand::random::<u64>())
}

#[tokio::test]
async fn only_the_in_process_simulator_may_name_files_of_our_own_media() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("t/tsk_01OTHER")).unwrap();
    std::fs::write(dir.path().join("t/tsk_01OTHER/0.png"), png(1000)).unwrap();
    let url = "http://gg.test/media/t/tsk_01OTHER/0.png";
    // Provider "p" is a remote one: its URL is fetched like any other (and
    // gg.test resolves to nothing allowed here), never read from disk.
    let m = local_media(dir.path(), settings(false, &[]), vec![]);
    let err = copy(&m, url, "image/png").await.unwrap_err();
    assert!(
        matches!(err, CopyError::Refused(_) | CopyError::Transient(_)),
        "{err:?}"
    );
    let mut s = settings(false, &[]);
    s.in_place_providers = vec!["p".into()];
    let m = local_media(dir.path(), s, vec![]);
    let out = copy(&m, url, "image/png").await.unwrap();
    let key = out.key.unwrap();
    assert!(
        key.starts_with("t/") && key.ends_with("/0.png") && key != "t/tsk_01OTHER/0.png",
        "linked under the copying task's own key: {key}"
    );
    assert_eq!(
        std::fs::read(dir.path().join(&key)).unwrap(),
        png(1000),
        "the same file"
    );
}

#[tokio::test]
async fn a_task_left_storing_by_a_crash_is_copied_again_at_start() {
    let o = origin().await;
    let out = Output::new(format!("{}/img.png", o.url), "image/png");
    let (cfg, store, dir, task, _) = prepared_task(
        7,
        None,
        vec![
            gengate_core::Event::Claim,
            gengate_core::Event::Accept {
                provider_task_id: "gone-from-memory".into(),
            },
            gengate_core::Event::Succeed { outputs: vec![out] },
        ],
    )
    .await;
    // The crash interrupted the copy: a torn object under the key and a
    // temp file beside it.
    let key_dir = dir.path().join(format!("media/t/{}", task.id));
    std::fs::create_dir_all(&key_dir).unwrap();
    std::fs::write(key_dir.join("0.png"), b"\x89PNG torn").unwrap();
    std::fs::write(key_dir.join(".0.png.1.tmp"), b"partial").unwrap();

    let app = spawn_on(cfg, store, dir).await;
    app.dispatch_until_idle().await;
    let t = app
        .get_as(&app.admin_key, &format!("/v1/tasks/{}", task.id))
        .await;
    assert_eq!(t.status_text(), "succeeded", "{}", t.body);
    assert_eq!(t.body["outputs"][0]["bytes"], 70_000);
    let r = app
        .client
        .get(t.body["outputs"][0]["url"].as_str().unwrap())
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.bytes().await.unwrap().len(),
        70_000,
        "the torn object was replaced"
    );
    assert_eq!(t.body["attempts"], 1, "never submitted again");
}

#[tokio::test]
async fn an_admin_recopies_a_result_whose_copy_failed_and_it_is_not_charged_again() {
    let o = origin().await;
    let out = Output::new(format!("{}/img.png", o.url), "image/png");
    // The provider finished; storage refused the copy until it gave up.
    let billing = gengate_core::Billing {
        held: 4,
        per_output: None,
        refund_on: Default::default(),
    };
    let (cfg, store, dir, task, alice) = prepared_task(
        9,
        Some(billing),
        vec![
            gengate_core::Event::Claim,
            gengate_core::Event::Accept {
                provider_task_id: "p-1".into(),
            },
            gengate_core::Event::Succeed { outputs: vec![out] },
            gengate_core::Event::Fail {
                error: gengate_core::TaskError::new(
                    "output_copy_failed",
                    "503 from the bucket",
                    true,
                ),
                retry_at: 0,
            },
        ],
    )
    .await;
    let balance = |store: Arc<dyn gengate_store::Store>| async move {
        let a = store.accounts().account(alice).await.unwrap().unwrap();
        (a.balance, a.held)
    };
    assert_eq!(
        balance(store.clone()).await,
        (10, 0),
        "refunded at the failure"
    );

    let app = spawn_on(cfg, store.clone(), dir).await;
    let path = format!("/v1/admin/tasks/{}/recopy", task.id);
    let post = |key: String| {
        let req = app.client.post(app.url(&path)).bearer_auth(key);
        async move { read(req.send().await.unwrap()).await }
    };
    assert_eq!(post(app.user_key.clone()).await.status, 403, "admins only");
    let r = post(app.admin_key.clone()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.status_text(), "storing");
    let done = app
        .task_when_as(&app.admin_key, &task.id, "the recopy", |t| {
            t.status_text() == "succeeded"
        })
        .await;
    assert_eq!(done.body["outputs"][0]["bytes"], 70_000);
    assert!(done.body["error"].is_null());
    assert_eq!(balance(store.clone()).await, (10, 0), "not charged again");
    let again = post(app.admin_key.clone()).await;
    assert_eq!(
        again.status, 409,
        "a succeeded task is not recopied: {}",
        again.body
    );
    assert!(store.accounts().ledger_drift().await.unwrap().is_empty());
}

/// A store prepared before the server starts, as a crash or an outage left
/// it: alice (with 10 credits) and her task `n`, holding `billing`, moved
/// through `events`. Returns the config, the store, its folder, the task
/// and alice's id.
async fn prepared_task(
    n: u128,
    billing: Option<gengate_core::Billing>,
    events: Vec<gengate_core::Event>,
) -> (
    gengate_config::Config,
    Arc<dyn gengate_store::Store>,
    tempfile::TempDir,
    Task,
    i64,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config().finish().unwrap();
    cfg.server.data_dir = dir.path().to_owned();
    let store = gengate_store::open(&cfg.store_url()).await.unwrap();
    let alice = store
        .create_key("alice", gengate_core::Role::User, "h-alice", "gg_alice", 1)
        .await
        .unwrap()
        .user_id;
    store
        .accounts()
        .grant(alice, 10, "test", "root", 1)
        .await
        .unwrap();
    let now = gengate_server::now_ms();
    let mut task = store
        .create_task(
            NewTask {
                id: gengate_core::id::task_id(now, n),
                user_id: alice,
                model: "sim-image".into(),
                provider: "sim".into(),
                input: json!({"prompt": "p"}),
                public: false,
                priority: 0,
                max_attempts: 1,
                deadline_at: now + 600_000,
                created_at: now,
                webhook_url: None,
                billing,
                limits: Default::default(),
            },
            None,
        )
        .await
        .unwrap()
        .task;
    for e in events {
        let (mut next, _) = gengate_core::apply(&task, e, gengate_server::now_ms()).unwrap();
        next.version = task.version + 1;
        assert!(
            store
                .update_task(&next, gengate_store::Fence::Lease)
                .await
                .unwrap()
        );
        task = next;
    }
    (cfg, store, dir, task, alice)
}
