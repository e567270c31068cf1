//! `spawn_app`: the real server on 127.0.0.1:0 with a fresh SQLite store in a
//! temporary directory, fast simulated providers, and a client per test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gengate_config::{Config, Dur, DurRange, HttpUrl, ProviderConfig, ProviderKind};
use gengate_core::Role;
use gengate_engine::dispatch::Dispatcher;
use gengate_server::app::{self, Server};
use gengate_server::{keys, now_ms};
use gengate_store::Store;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A URL for a config's URL key (a test's own, so known to be good).
pub(crate) fn http_url(url: &str) -> HttpUrl {
    HttpUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    pub(crate) admin_key: String,
    pub(crate) user_key: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) dispatcher: Dispatcher,
    /// The configuration the server runs with.
    pub(crate) config: Config,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// A response with its body read.
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
}

impl Resp {
    pub(crate) fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .expect("response has an id")
            .to_owned()
    }

    pub(crate) fn status_text(&self) -> &str {
        self.body["status"].as_str().unwrap_or("")
    }

    /// Asserts the API's error shape and returns `(code, field)`.
    pub(crate) fn error(&self) -> (String, Option<String>) {
        let e = &self.body["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without message: {}",
            self.body
        );
        (
            e["code"]
                .as_str()
                .unwrap_or_else(|| panic!("not an error body: {}", self.body))
                .to_owned(),
            e["field"].as_str().map(str::to_owned),
        )
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A provider entry of `kind` with every default.
pub(crate) fn provider_config(kind: ProviderKind) -> ProviderConfig {
    toml::from_str(&format!("kind = {:?}", kind.as_str())).expect("a bare provider entry parses")
}

/// A test configuration: fast sim, fast timers.
pub(crate) fn test_config() -> Config {
    let mut cfg = Config::default();
    let mut sim = provider_config(ProviderKind::Sim);
    sim.concurrency = 4;
    sim.latency = DurRange(Duration::from_millis(50), Duration::from_millis(150));
    sim.timeout = Dur(Duration::from_secs(5));
    cfg.providers.insert("sim".into(), sim);
    cfg.dispatch.poll_initial = Dur(Duration::from_millis(20));
    cfg.dispatch.poll_max = Dur(Duration::from_millis(50));
    cfg.dispatch.retry_base = Dur(Duration::from_millis(40));
    cfg.dispatch.retry_max = Dur(Duration::from_millis(200));
    cfg.server.shutdown_grace = Dur(Duration::from_secs(2));
    // Tests queue hundreds of tasks per user; those of the limits set
    // their own.
    cfg.limits.max_active = 0;
    // The mocks serve outputs on loopback.
    cfg.media.allow_private = true;
    cfg.media.retry_base = Dur(Duration::from_millis(20));
    cfg
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub(crate) async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = test_config().finish().expect("test config is valid");
    cfg.server.data_dir = dir.path().to_owned();
    tweak(&mut cfg);
    let cfg = cfg.finish().expect("tweaked test config is valid");
    let store = gengate_store::open(&cfg.store_url())
        .await
        .expect("store opens");
    spawn_on(cfg, store, dir).await
}

/// Starts the server on an existing store (e.g. one a test prepared).
pub(crate) async fn spawn_on(
    mut cfg: Config,
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
) -> TestApp {
    init_test_log();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    // As a deployment says where it is reachable (provider callbacks).
    cfg.server.public_url.get_or_insert_with(|| http_url(&base));
    let shutdown = CancellationToken::new();
    let server: Server =
        app::build(&cfg, store.clone(), &base, shutdown.clone()).expect("server builds");
    let config = cfg.clone();
    let dispatcher = server.dispatcher.clone();
    let handle = tokio::spawn(app::serve(listener, server, shutdown.clone()));
    let admin_key = make_key(&*store, "root", Role::Admin).await;
    let user_key = make_key(&*store, "alice", Role::User).await;
    let app = TestApp {
        base,
        client: reqwest::Client::new(),
        admin_key,
        user_key,
        store,
        dispatcher,
        config,
        shutdown,
        handle: Some(handle),
        _dir: dir,
    };
    assert!(
        app.dispatcher.wait_idle(Duration::from_secs(10)).await || !app.dispatcher.is_idle(),
        "dispatcher starts"
    );
    app
}

pub(crate) async fn make_key(store: &dyn Store, user: &str, role: Role) -> String {
    let key = keys::generate();
    store
        .create_key(user, role, &key.hash, &key.prefix, now_ms())
        .await
        .expect("key created");
    key.secret
}

fn init_test_log() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
    }
}

pub(crate) async fn read(resp: reqwest::Response) -> Resp {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Resp {
        status,
        headers,
        body,
    }
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn key_for(&self, user: &str) -> String {
        make_key(&*self.store, user, Role::User).await
    }

    pub(crate) async fn post_task(&self, body: &Value) -> Resp {
        self.post_task_as(&self.user_key, body, None).await
    }

    pub(crate) async fn post_task_as(
        &self,
        key: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Resp {
        let mut req = self
            .client
            .post(self.url("/v1/tasks"))
            .bearer_auth(key)
            .json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        read(req.send().await.expect("request sent")).await
    }

    pub(crate) async fn get_as(&self, key: &str, path: &str) -> Resp {
        read(
            self.client
                .get(self.url(path))
                .bearer_auth(key)
                .send()
                .await
                .expect("request sent"),
        )
        .await
    }

    /// A GET whose body is left unread (event streams), optionally resuming
    /// after `last_event_id`.
    pub(crate) async fn open_as(
        &self,
        key: &str,
        path: &str,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.get(self.url(path)).bearer_auth(key);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.expect("request sent")
    }

    pub(crate) async fn get_task(&self, id: &str) -> Resp {
        self.get_as(&self.user_key, &format!("/v1/tasks/{id}"))
            .await
    }

    pub(crate) async fn cancel_as(&self, key: &str, id: &str) -> Resp {
        read(
            self.client
                .post(self.url(&format!("/v1/tasks/{id}/cancel")))
                .bearer_auth(key)
                .send()
                .await
                .expect("sent"),
        )
        .await
    }

    /// Reads task `id` (as `key`) until `ok` holds for it, and returns it;
    /// panics naming `what` after 30 s.
    pub(crate) async fn task_when_as(
        &self,
        key: &str,
        id: &str,
        what: &str,
        ok: impl Fn(&Resp) -> bool,
    ) -> Resp {
        let path = format!("/v1/tasks/{id}");
        gengate_testkit::wait_until(what, Duration::from_secs(30), || async {
            let t = self.get_as(key, &path).await;
            ok(&t).then_some(t)
        })
        .await
    }

    /// [`TestApp::task_when_as`] with the test user's key.
    pub(crate) async fn task_when(&self, id: &str, what: &str, ok: impl Fn(&Resp) -> bool) -> Resp {
        self.task_when_as(&self.user_key.clone(), id, what, ok)
            .await
    }

    /// Waits until nothing is queued or in flight (bounded; never sleeps and hopes).
    pub(crate) async fn dispatch_until_idle(&self) {
        assert!(
            self.dispatcher.wait_idle(Duration::from_secs(30)).await,
            "dispatcher did not become idle"
        );
    }

    /// Stops the server gracefully and waits for it.
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server ran cleanly");
        }
    }
}

impl TestApp {
    /// Panics if the dispatcher lost track of a slot or a task: its own
    /// audit, and, once it is idle on a store of its own, no task left
    /// unfinished in the store (nothing would ever pick it up).
    fn check_nothing_stuck(&self) {
        let found = self.dispatcher.audit();
        assert!(found.is_empty(), "left stuck by the test: {found:?}");
        if self.store.shared() || !self.dispatcher.is_idle() {
            return;
        }
        // Drop cannot await: read the store from a runtime of its own.
        let store = self.store.clone();
        let active = std::thread::scope(|s| {
            s.spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime")
                    .block_on(store.active_tasks())
            })
            .join()
            .expect("the store read")
        })
        .expect("the store answers");
        let stuck: Vec<String> = active
            .iter()
            .map(|t| format!("{} ({})", t.id, t.status.as_str()))
            .collect();
        assert!(
            stuck.is_empty(),
            "the dispatcher is idle but these tasks are unfinished: {stuck:?}"
        );
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.check_nothing_stuck();
        }
        self.shutdown.cancel();
    }
}

/// The CA behind the HTTPS mocks' certificates: one per test binary, with
/// one certificate for 127.0.0.1 and localhost.
pub(crate) struct TestCa {
    pub(crate) pem: String,
    pub(crate) server: Arc<rustls::ServerConfig>,
}

pub(crate) fn test_ca() -> &'static TestCa {
    static CA: std::sync::OnceLock<TestCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        use gengate_mock::tls::{Leaf, ThrowawayCa};
        let ca = ThrowawayCa::new().expect("a CA");
        TestCa {
            pem: ca.pem(),
            server: ca
                .server_config(&Leaf::for_names(&["127.0.0.1", "localhost"]))
                .expect("a certificate"),
        }
    })
}

/// A client that trusts the test CA (for the HTTPS mocks' own routes).
pub(crate) fn ca_client() -> reqwest::Client {
    let trust = gengate_net::Trust::with_pem(test_ca().pem.as_bytes(), None).expect("CA");
    gengate_net::Outbound::new(trust).tool(Duration::from_secs(10))
}

/// Makes the server trust the test CA, as an operator does with
/// `tls.ca_file` (its PEM is written into the test's data dir).
pub(crate) fn trust_test_ca(cfg: &mut Config) {
    let path = cfg.server.data_dir.join("test-ca.pem");
    std::fs::write(&path, &test_ca().pem).expect("CA file written");
    cfg.tls.ca_file = Some(path);
}

pub(crate) fn prompt(p: &str) -> Value {
    serde_json::json!({"model": "sim-image", "input": {"prompt": p, "size": "512x512"}})
}
