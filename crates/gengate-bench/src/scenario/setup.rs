//! Work on a gengate target before a measurement, through its public and
//! admin API: detecting a gengate, making users and keys, seeding tasks,
//! reading the catalog and the admin stats.

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use serde_json::{Value, json};

use super::target::Target;
use crate::client;

/// A provisioned user: its key and one task it owns.
#[derive(Debug, Clone)]
pub struct UserKey {
    pub key: String,
    pub task_id: Option<String>,
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
            // A load test measures the server, not the per-user limits an
            // app sets for people: lifted for bench users (a gengate from
            // before limits has no such route, which is fine).
            let lifted = json!({"max_active": 0, "creates_per_minute": 0, "tasks_per_day": 0});
            let (status, v) = self
                .call(
                    Method::PATCH,
                    &format!("/v1/admin/users/{name}"),
                    Some(&admin),
                    Some(lifted),
                )
                .await?;
            if !matches!(status, 200 | 404 | 405) {
                bail!("PATCH /v1/admin/users/{name} answered {status}: {v}");
            }
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
