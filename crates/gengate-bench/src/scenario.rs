//! What each connection sends: the raw scenario (GETs to the URL as given),
//! one gengate route at a time (`health`, `get-task`, `list`, `gallery`,
//! `create`), or `mixed`, virtual users that behave like people in the app.
//! Also the setup those need on the target: detecting a gengate, making users
//! and keys through the admin API, seeding tasks.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::HeaderMap;
use hyper::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, HOST};
pub use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use rand::Rng as _;
use serde_json::{Value, json};

use crate::client::{self, Body};
use crate::schedule::{Drive, Load, Session, paced};

/// A scenario by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Raw,
    Health,
    GetTask,
    List,
    Gallery,
    Create,
    Mixed,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Raw,
        Scenario::Health,
        Scenario::GetTask,
        Scenario::List,
        Scenario::Gallery,
        Scenario::Create,
        Scenario::Mixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Raw => "raw",
            Scenario::Health => "health",
            Scenario::GetTask => "get-task",
            Scenario::List => "list",
            Scenario::Gallery => "gallery",
            Scenario::Create => "create",
            Scenario::Mixed => "mixed",
        }
    }

    /// Whether it needs users and keys made through the admin API.
    pub fn needs_users(self) -> bool {
        matches!(
            self,
            Scenario::GetTask | Scenario::List | Scenario::Create | Scenario::Mixed
        )
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {s:?}; one of {}", names.join(", "))
            })
    }
}

/// Where the load goes: `http://host:port/path?query`.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    /// The `Host` header.
    pub authority: String,
    pub path_and_query: String,
}

impl Target {
    /// # Errors
    /// For a URL that is not `http://…` or a host that does not resolve.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!(
                "{other}:// is not supported; bench speaks plain http:// (put it next to the server, or behind the TLS proxy)"
            ),
            None => bail!("{url:?} needs a scheme: http://host:port/"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{url:?} has no host"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let addr = (authority.host(), port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", authority.host()))?
            .next()
            .with_context(|| format!("{} has no address", authority.host()))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
            authority: authority.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// The same server, another path.
    pub fn at(&self, path: &str) -> Target {
        Target {
            url: format!("http://{}{path}", self.authority),
            path_and_query: path.to_owned(),
            ..self.clone()
        }
    }
}

/// The weights of a virtual user's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub create: u32,
    pub get: u32,
    pub list: u32,
    pub gallery: u32,
}

impl Default for Mix {
    /// A person in the app mostly browses: one creation in ten actions.
    fn default() -> Self {
        Mix {
            create: 1,
            get: 2,
            list: 3,
            gallery: 4,
        }
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `create=1,get=2,list=3,gallery=4` (missing names weigh 0).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut mix = Mix {
            create: 0,
            get: 0,
            list: 0,
            gallery: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: write it like create=1"))?;
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
            match name.trim() {
                "create" => mix.create = w,
                "get" => mix.get = w,
                "list" => mix.list = w,
                "gallery" => mix.gallery = w,
                other => {
                    return Err(format!(
                        "unknown action {other:?}; use create, get, list, gallery"
                    ));
                }
            }
        }
        if mix.total() == 0 {
            return Err("the weights add up to 0".into());
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "create={},get={},list={},gallery={}",
            self.create, self.get, self.list, self.gallery
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Get,
    List,
    Gallery,
}

impl Mix {
    fn total(&self) -> u32 {
        self.create + self.get + self.list + self.gallery
    }

    fn pick(&self, roll: u32) -> Action {
        let mut r = roll % self.total();
        for (w, a) in [
            (self.create, Action::Create),
            (self.get, Action::Get),
            (self.list, Action::List),
        ] {
            if r < w {
                return a;
            }
            r -= w;
        }
        Action::Gallery
    }
}

/// How a virtual user follows a task it created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// `GET /v1/tasks/{id}` every poll interval.
    Poll,
    /// Long polls: `GET /v1/tasks/{id}?wait=30`.
    Wait,
    /// `GET /v1/tasks/{id}/events` until the final state.
    Sse,
}

impl FromStr for Follow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "poll" => Ok(Follow::Poll),
            "wait" => Ok(Follow::Wait),
            "sse" => Ok(Follow::Sse),
            _ => Err(format!("{s:?}: one of poll, wait, sse")),
        }
    }
}

/// How virtual users (and the gengate scenarios) behave.
#[derive(Debug, Clone)]
pub struct UserOptions {
    pub mix: Mix,
    /// Mean pause between a virtual user's actions (exponentially
    /// distributed, capped at 4× the mean).
    pub think: Duration,
    pub follow: Follow,
    pub poll_interval: Duration,
    /// A created task not finished by then counts as unfinished.
    pub result_timeout: Duration,
    /// The model created tasks use.
    pub model: String,
}

impl Default for UserOptions {
    fn default() -> Self {
        UserOptions {
            mix: Mix::default(),
            think: Duration::from_secs(2),
            follow: Follow::Poll,
            poll_interval: Duration::from_secs(1),
            result_timeout: Duration::from_secs(600),
            model: "sim-image".into(),
        }
    }
}

/// A prepared scenario: everything the connections need, shared by all.
pub struct Plan {
    pub scenario: Scenario,
    target: Target,
    headers: Vec<(HeaderName, HeaderValue)>,
    load: Load,
    /// One user key per virtual user (reused round robin beyond).
    keys: Vec<UserKey>,
    user: UserOptions,
    /// Makes the prompts of this run unique.
    tag: String,
}

/// The parts of a request that do not change between sends.
struct Template {
    method: Method,
    uri: hyper::Uri,
    headers: HeaderMap,
}

impl Template {
    fn build(&self, body: Option<Bytes>) -> Request<Full<Bytes>> {
        let mut headers = self.headers.clone();
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let mut req = Request::new(Full::new(body.unwrap_or_default()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = headers;
        req
    }
}

/// A provisioned user: its key and one task it owns.
#[derive(Debug, Clone)]
pub struct UserKey {
    pub key: String,
    pub task_id: Option<String>,
}

const FINAL: &[&str] = &["\"succeeded\"", "\"failed\"", "\"canceled\""];

impl Plan {
    /// # Errors
    /// When the scenario needs users and none were given.
    pub fn new(
        scenario: Scenario,
        target: Target,
        headers: Vec<(HeaderName, HeaderValue)>,
        load: Load,
        keys: Vec<UserKey>,
        user: UserOptions,
    ) -> anyhow::Result<Plan> {
        if scenario.needs_users() && keys.is_empty() {
            bail!(
                "the {scenario} scenario needs users: give an admin key (--admin-key or -H 'Authorization: Bearer …') so bench can make them"
            );
        }
        if scenario == Scenario::Mixed && matches!(load, Load::Open { .. }) {
            bail!(
                "the mixed scenario is virtual users with think time; pace it with -c (users) and --think, not --rate"
            );
        }
        let tag = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        Ok(Plan {
            scenario,
            target,
            headers,
            load,
            keys,
            user,
            tag,
        })
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        compressed: bool,
        body: Option<Vec<u8>>,
    ) -> Request<Full<Bytes>> {
        self.template(method, path, key, compressed)
            .build(body.map(Bytes::from))
    }

    /// A request's fixed parts, built once for the single-route scenarios.
    fn template(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        compressed: bool,
    ) -> Template {
        let mut headers = HeaderMap::new();
        if let Ok(host) = HeaderValue::from_str(&self.target.authority) {
            headers.insert(HOST, host);
        }
        for (k, v) in &self.headers {
            if key.is_some() && k == AUTHORIZATION {
                continue;
            }
            headers.append(k, v.clone());
        }
        if let Some(v) = key.and_then(|k| HeaderValue::from_str(&format!("Bearer {k}")).ok()) {
            headers.insert(AUTHORIZATION, v);
        }
        if compressed && !headers.contains_key(ACCEPT_ENCODING) {
            // What a browser sends: browse pages come back compressed.
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, br"));
        }
        Template {
            method,
            uri: path
                .parse()
                .unwrap_or_else(|_| hyper::Uri::from_static("/")),
            headers,
        }
    }

    fn create_body(&self, who: usize, i: u64) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "model": self.user.model,
            "input": {"prompt": format!("bench {} user {who} task {i}: a lighthouse at dusk", self.tag)},
            "public": true,
        }))
        .unwrap_or_default()
    }

    fn key(&self, index: usize) -> Option<&UserKey> {
        (!self.keys.is_empty()).then(|| &self.keys[index % self.keys.len()])
    }

    /// A person in the app: acts, thinks, acts again; waits for what they
    /// create to finish.
    async fn virtual_user(&self, s: &mut Session) {
        let Some(user) = self.key(s.index).cloned() else {
            return;
        };
        let key = Some(user.key.as_str());
        let mut latest = user.task_id.clone();
        let think = self.user.think;
        // People do not all arrive at the same instant.
        let first = think.mul_f64(s.rng.r#gen::<f64>());
        if !s.sleep(first).await {
            return;
        }
        let mut i = 0u64;
        while s.running() {
            let action = self.user.mix.pick(s.rng.r#gen());
            match action {
                Action::Create => {
                    let body = self.create_body(s.index, i);
                    i += 1;
                    let req = self.request(Method::POST, "/v1/tasks", key, false, Some(body));
                    let sent = Instant::now();
                    if let Some(a) = s.request("create", req, Body::Keep, sent, false).await
                        && a.status.as_u16() == 202
                        && let Some(id) = a.body.as_deref().and_then(|b| field(b, "id"))
                    {
                        s.stats().tasks_created += 1;
                        self.follow(s, key, &id, sent).await;
                        latest = Some(id);
                    }
                }
                Action::Get => {
                    if let Some(id) = &latest {
                        let req =
                            self.request(Method::GET, &format!("/v1/tasks/{id}"), key, false, None);
                        s.request("get-task", req, Body::Discard, Instant::now(), false)
                            .await;
                    }
                }
                Action::List => {
                    let req = self.request(Method::GET, "/v1/tasks?limit=20", key, true, None);
                    s.request("list", req, Body::Discard, Instant::now(), false)
                        .await;
                }
                Action::Gallery => {
                    let req = self.request(Method::GET, "/v1/gallery?limit=20", None, true, None);
                    s.request("gallery", req, Body::Discard, Instant::now(), false)
                        .await;
                }
            }
            let pause = think.mul_f64((-(1.0 - s.rng.r#gen::<f64>()).ln()).min(4.0));
            if !s.sleep(pause).await {
                break;
            }
        }
    }

    /// Follows a created task to its final state and records the time to
    /// result from `created`.
    async fn follow(&self, s: &mut Session, key: Option<&str>, id: &str, created: Instant) {
        let give_up = created + self.user.result_timeout;
        loop {
            if Instant::now() >= give_up || !s.running() {
                s.stats().tasks_unfinished += 1;
                return;
            }
            let answer = match self.user.follow {
                Follow::Poll => {
                    if !s.sleep(self.user.poll_interval).await {
                        s.stats().tasks_unfinished += 1;
                        return;
                    }
                    let req =
                        self.request(Method::GET, &format!("/v1/tasks/{id}"), key, false, None);
                    s.request("poll", req, Body::Keep, Instant::now(), false)
                        .await
                }
                Follow::Wait => {
                    let req = self.request(
                        Method::GET,
                        &format!("/v1/tasks/{id}?wait=30"),
                        key,
                        false,
                        None,
                    );
                    s.request("long-poll", req, Body::Keep, Instant::now(), true)
                        .await
                }
                Follow::Sse => {
                    let req = self.request(
                        Method::GET,
                        &format!("/v1/tasks/{id}/events"),
                        key,
                        false,
                        None,
                    );
                    s.request("events", req, Body::Until(FINAL), Instant::now(), true)
                        .await
                }
            };
            let Some(answer) = answer else { continue };
            let text = answer
                .body
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let status = match self.user.follow {
                Follow::Sse => FINAL
                    .iter()
                    .find(|f| text.contains(*f))
                    .map(|f| f.trim_matches('"').to_owned()),
                _ => field(text.as_bytes(), "status"),
            };
            match status.as_deref() {
                Some("succeeded") => return s.stats().task_result(true, created.elapsed()),
                Some("failed" | "canceled") => {
                    return s.stats().task_result(false, created.elapsed());
                }
                _ if answer.status.as_u16() >= 400 => {
                    // Not ours to follow any more (e.g. the key was revoked).
                    s.stats().tasks_unfinished += 1;
                    return;
                }
                _ => {}
            }
        }
    }
}

impl Drive for Plan {
    /// What connection `s.index` does for the whole run.
    async fn drive(&self, s: &mut Session) {
        let user = self.key(s.index).cloned();
        let key = user.as_ref().map(|u| u.key.as_str());
        match self.scenario {
            Scenario::Mixed => self.virtual_user(s).await,
            Scenario::Raw => {
                let t = self.template(Method::GET, &self.target.path_and_query, None, false);
                paced(s, self.load, |_, _| ("raw", t.build(None))).await;
            }
            Scenario::Health => {
                let t = self.template(Method::GET, "/healthz", None, false);
                paced(s, self.load, |_, _| ("health", t.build(None))).await;
            }
            Scenario::Gallery => {
                let t = self.template(Method::GET, "/v1/gallery?limit=20", None, false);
                paced(s, self.load, |_, _| ("gallery", t.build(None))).await;
            }
            Scenario::List => {
                let t = self.template(Method::GET, "/v1/tasks?limit=20", key, false);
                paced(s, self.load, |_, _| ("list", t.build(None))).await;
            }
            Scenario::GetTask => {
                let path = format!(
                    "/v1/tasks/{}",
                    user.as_ref()
                        .and_then(|u| u.task_id.as_deref())
                        .unwrap_or("tsk_missing")
                );
                let t = self.template(Method::GET, &path, key, false);
                paced(s, self.load, |_, _| ("get-task", t.build(None))).await;
            }
            Scenario::Create => {
                let t = self.template(Method::POST, "/v1/tasks", key, false);
                paced(s, self.load, |s, i| {
                    ("create", t.build(Some(self.create_body(s.index, i).into())))
                })
                .await;
            }
        }
    }
}

fn field(json: &[u8], name: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(json).ok()?;
    v.get(name)?.as_str().map(str::to_owned)
}

/// Setup work on a gengate target, outside any measurement.
pub struct Setup {
    target: Target,
    admin_key: Option<String>,
    model: String,
    tag: String,
    /// Users made so far by this setup.
    pub users: Vec<UserKey>,
}

impl Setup {
    pub fn new(target: &Target, admin_key: Option<String>, model: &str) -> Setup {
        Setup {
            target: target.clone(),
            admin_key,
            model: model.to_owned(),
            tag: format!("{:x}", std::process::id()),
            users: Vec::new(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.target.authority);
        if let Some(k) = key {
            b = b.header(AUTHORIZATION, format!("Bearer {k}"));
        }
        let body = match body {
            Some(v) => {
                b = b.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(serde_json::to_vec(&v)?))
            }
            None => Full::new(Bytes::new()),
        };
        let (status, bytes) = client::once(self.target.addr, b.body(body)?).await?;
        Ok((
            status.as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Whether the target answers like a gengate (`/healthz` and `/v1/models`).
    pub async fn is_gengate(&self) -> bool {
        let health = self.call(Method::GET, "/healthz", None, None).await;
        let models = self.call(Method::GET, "/v1/models", None, None).await;
        matches!(health, Ok((200, ref v)) if v["status"] == "ok")
            && matches!(models, Ok((200, ref v)) if v.is_object() || v.is_array())
    }

    /// Makes users until there are `n`, each with a key and, `with_task`,
    /// one task of its own (for the scenarios that read one).
    ///
    /// # Errors
    /// Without an admin key, or when the target refuses.
    pub async fn ensure_users(&mut self, n: usize, with_task: bool) -> anyhow::Result<()> {
        let Some(admin) = self.admin_key.clone() else {
            bail!(
                "making bench users needs an admin key: --admin-key or -H 'Authorization: Bearer …'"
            );
        };
        while self.users.len() < n {
            let name = format!("bench-{}-{}", self.tag, self.users.len());
            let (status, v) = self
                .call(
                    Method::POST,
                    "/v1/admin/keys",
                    Some(&admin),
                    Some(json!({"user": name})),
                )
                .await?;
            if status != 201 {
                bail!("POST /v1/admin/keys answered {status}: {v}");
            }
            let key = v["key"]
                .as_str()
                .context("no key in the answer")?
                .to_owned();
            if !with_task {
                self.users.push(UserKey { key, task_id: None });
                continue;
            }
            let (status, t) = self
                .call(
                    Method::POST,
                    "/v1/tasks",
                    Some(&key),
                    Some(json!({"model": self.model, "input": {"prompt": format!("bench seed for {name}")}, "public": true})),
                )
                .await?;
            if status != 202 {
                bail!(
                    "POST /v1/tasks with model {:?} answered {status}: {t}",
                    self.model
                );
            }
            self.users.push(UserKey {
                key,
                task_id: t["id"].as_str().map(str::to_owned),
            });
        }
        Ok(())
    }

    /// Creates `n` public tasks spread over the users made so far (the
    /// gallery and the lists then have something to show once they finish).
    ///
    /// # Errors
    /// When the target refuses.
    pub async fn seed(&self, n: u64) -> anyhow::Result<()> {
        for i in 0..n {
            let Some(u) = self.users.get(i as usize % self.users.len().max(1)) else {
                bail!("seeding needs users; give an admin key");
            };
            let (status, v) = self
                .call(
                    Method::POST,
                    "/v1/tasks",
                    Some(&u.key),
                    Some(json!({"model": self.model, "input": {"prompt": format!("seeded {i}: a red fox in the snow")}, "public": true})),
                )
                .await?;
            if status != 202 {
                bail!("seeding: POST /v1/tasks answered {status}: {v}");
            }
        }
        Ok(())
    }

    /// The catalog: each model's name and provider.
    pub async fn models(&self) -> Vec<(String, String)> {
        let Ok((200, v)) = self.call(Method::GET, "/v1/models", None, None).await else {
            return Vec::new();
        };
        v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| {
                        Some((
                            m["name"].as_str()?.to_owned(),
                            m["provider"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `GET /v1/admin/stats` (admin key needed).
    ///
    /// # Errors
    /// When the target refuses.
    pub async fn admin_stats(&self) -> anyhow::Result<Value> {
        let admin = self
            .admin_key
            .as_deref()
            .context("admin stats need an admin key")?;
        let (status, v) = self
            .call(Method::GET, "/v1/admin/stats", Some(admin), None)
            .await?;
        if status != 200 {
            bail!("GET /v1/admin/stats answered {status}: {v}");
        }
        Ok(v)
    }
}

/// Waits for `f` within a fresh `current_thread` runtime (setup work runs
/// outside the load threads).
///
/// # Errors
/// When the runtime cannot start, or `f` fails.
pub fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Parses `-H 'Name: value'`.
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: write it like 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name, value))
}

/// The bearer token in `-H 'Authorization: Bearer …'`, if any.
pub fn bearer_in(headers: &[(HeaderName, HeaderValue)]) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == AUTHORIZATION)
        .and_then(|(_, v)| {
            let v = v.to_str().ok()?;
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_pick_by_weight() {
        let m: Mix = "create=1,gallery=3".parse().unwrap();
        assert_eq!((m.create, m.get, m.list, m.gallery), (1, 0, 0, 3));
        let picks: Vec<_> = (0..4).map(|r| m.pick(r)).collect();
        assert_eq!(
            picks,
            [
                Action::Create,
                Action::Gallery,
                Action::Gallery,
                Action::Gallery
            ]
        );
        assert!("create=x".parse::<Mix>().is_err());
        assert!("browse=1".parse::<Mix>().is_err());
        assert!("create=0".parse::<Mix>().is_err());
    }

    #[test]
    fn targets_and_headers_parse() {
        let t = Target::parse("http://127.0.0.1:8080/v1/gallery?limit=5").unwrap();
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/v1/gallery?limit=5");
        assert_eq!(
            Target::parse("http://127.0.0.1:9").unwrap().path_and_query,
            "/"
        );
        assert!(Target::parse("https://127.0.0.1/").is_err());
        let h = parse_header("Authorization: Bearer gg_abc").unwrap();
        assert_eq!(bearer_in(&[h]).as_deref(), Some("gg_abc"));
        assert!(parse_header("no colon").is_err());
    }
}
