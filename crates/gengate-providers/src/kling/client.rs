//! The adapter and one call: its URL, the cached bearer token (re-minted
//! once when Kling refuses it), the answer read and classified, and a page of
//! a family's task list.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::Value;

use super::codes::{Call, interpret};
use super::family::Family;
use super::jwt::{Token, is_token_code, mint_jwt, unix_secs};
use super::settings::KlingSettings;
use crate::wire::{self, read_answer};
use crate::{ProviderError, classify_query, classify_reqwest};

/// The least a rate or concurrency refusal makes us wait (§3.8: "back off ≥1 s").
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The Kling adapter for one account.
pub struct Kling {
    pub(super) name: String,
    base_url: String,
    access_key: String,
    secret_key: String,
    retry_after: Duration,
    token_ttl_secs: i64,
    client: reqwest::Client,
    /// The JWT in use, shared by all requests until it nears expiry.
    pub(super) token: Mutex<Option<Token>>,
}

impl fmt::Debug for Kling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kling")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("access_key", &wire::masked(&self.access_key))
            .field("secret_key", &"***")
            .field("retry_after", &self.retry_after)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Kling {
    /// # Errors
    /// When a setting is unusable (empty key, base URL that is not http(s),
    /// token lifetime under 10 s).
    pub fn new(name: &str, settings: KlingSettings) -> Result<Self, String> {
        let base_url = settings.base_url.trim_end_matches('/').to_owned();
        match Url::parse(&base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(format!("kling base_url {base_url:?} is not an http(s) URL")),
        }
        if settings.access_key.trim().is_empty() || settings.secret_key.trim().is_empty() {
            return Err("kling access_key and secret_key must not be empty".to_owned());
        }
        if settings.token_ttl < Duration::from_secs(10) {
            return Err("kling token_ttl must be at least 10s".to_owned());
        }
        Ok(Self {
            name: name.to_owned(),
            base_url,
            access_key: settings.access_key,
            secret_key: settings.secret_key,
            retry_after: settings.retry_after.max(MIN_RETRY_AFTER),
            token_ttl_secs: i64::try_from(settings.token_ttl.as_secs()).unwrap_or(i64::MAX / 2),
            client: settings.client,
            token: Mutex::new(None),
        })
    }

    /// The bearer token: the cached one while more than a sixth of its
    /// lifetime (at most 5 minutes) remains, otherwise a fresh one.
    pub(super) fn bearer(&self, fresh: bool) -> String {
        let now = unix_secs();
        let margin = (self.token_ttl_secs / 6).min(300);
        let mut cached = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = cached.as_ref().filter(|t| !fresh && t.exp - now > margin) {
            return t.value.clone();
        }
        let value = mint_jwt(&self.access_key, &self.secret_key, now, self.token_ttl_secs);
        *cached = Some(Token {
            value: value.clone(),
            exp: now + self.token_ttl_secs,
        });
        value
    }

    pub(super) fn url(&self, path: &str, task_id: Option<&str>) -> Result<Url, ProviderError> {
        let mut url = Url::parse(&format!("{}{path}", self.base_url))
            .map_err(|e| ProviderError::Transient(format!("bad kling URL: {e}")))?;
        if let Some(id) = task_id {
            url.path_segments_mut()
                .map_err(|()| ProviderError::Transient("bad kling base URL".to_owned()))?
                .push(id);
        }
        Ok(url)
    }

    /// Sends one request and returns the envelope's `data`. A refused token
    /// (401 with 1000–1004) is re-minted and the request sent once more:
    /// a refusal at the door never took effect, so repeating it is safe.
    pub(super) async fn call(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&Value>,
        call: Call,
    ) -> Result<Value, ProviderError> {
        let mut fresh = false;
        loop {
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .bearer_auth(self.bearer(fresh));
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let resp = request.send().await.map_err(|e| match call {
                Call::Create => classify_reqwest(&e),
                Call::Query | Call::Read => classify_query(&e),
            })?;
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let (status, bytes) = read_answer(resp).await.map_err(|e| match (call, e) {
                (Call::Query | Call::Read, ProviderError::Ambiguous(m)) => {
                    ProviderError::Transient(m)
                }
                (_, e) => e,
            })?;
            let retry_after = retry_after.unwrap_or_default().max(self.retry_after);
            match interpret(status, &bytes, call, retry_after) {
                Err(ProviderError::Unauthorized { code, .. }) if !fresh && is_token_code(&code) => {
                    tracing::debug!(provider = %self.name, code, "kling refused our token; minting a fresh one");
                    fresh = true;
                }
                other => return other,
            }
        }
    }

    /// Page `page` (from 1, newest first) of `family`'s task list.
    pub(super) async fn list_page(
        &self,
        family: Family,
        page: usize,
        size: usize,
    ) -> Result<Vec<Value>, ProviderError> {
        let query = [
            ("pageNum", page.to_string()),
            ("pageSize", size.to_string()),
        ];
        let data = self
            .call(
                Method::GET,
                self.url(family.path(), None)?,
                &query,
                None,
                Call::Read,
            )
            .await?;
        match data {
            Value::Array(items) => Ok(items),
            // Not even `null` is read as "no tasks": a lookup that answers
            // "none" makes the dispatcher submit again.
            _ => Err(ProviderError::Transient(
                "kling task list is not an array".to_owned(),
            )),
        }
    }
}
