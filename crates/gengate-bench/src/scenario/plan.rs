//! A prepared scenario and what each connection sends during a run: one
//! fixed request paced by the load, or a virtual user's actions. When they
//! are sent is the schedule's business.

use std::time::Instant;

use anyhow::bail;
use bytes::Bytes;
use http_body_util::Full;
use hyper::HeaderMap;
use hyper::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request};
use rand::Rng as _;
use serde_json::{Value, json};

use super::kind::Scenario;
use super::setup::UserKey;
use super::target::Target;
use super::user::{Action, Follow, UserOptions};
use crate::client::Body;
use crate::schedule::{Drive, Load, Session, paced};

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

/// A task's final states as they appear, quoted, in an answer or an event
/// stream: seeing one ends the following.
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
