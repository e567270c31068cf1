//! Outbound client webhooks, signed the Standard Webhooks way.
//!
//! A task created with a `webhook` URL gets one delivery when it finishes;
//! the store queues it in the same transaction as the final state (an
//! outbox), and this module's loop sends it: `POST` of
//! `{"type":"task.succeeded","timestamp":…,"data":<task>}` (the task as
//! [`TaskPayload`] shows it) with the headers
//! `webhook-id` (stable across retries, for deduplication),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 over "id.timestamp.body">` keyed by the owner's
//! `whsec_` secret from `GET /v1/webhooks/secret`). A non-2xx answer or a
//! network error is retried with growing delays; every attempt is recorded
//! and visible at `GET /v1/tasks/{id}/webhooks`.
//!
//! Destinations on loopback, private, link-local and other non-public
//! addresses are refused unless the operator allows them: a webhook URL is
//! user input, and must not become a way into the operator's network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gengate_core::time::rfc3339;
use gengate_core::{Task, UserId};
use gengate_net::{Destinations, Failure, Outbound, check_url};
use gengate_store::{Delivery, Store, StoreError};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::now_ms;

/// The task as a webhook delivers it: what a receiver needs to act on a
/// finished task (the API's task view without the queue position and ETA,
/// which a finished task has not). Its own type, not the API's view, so
/// that changing one cannot silently change the other.
#[derive(Debug, serde::Serialize)]
struct TaskPayload<'a> {
    id: &'a str,
    model: &'a str,
    status: &'static str,
    input: &'a serde_json::Value,
    outputs: Vec<OutputPayload<'a>>,
    error: Option<ErrorPayload<'a>>,
    progress: f32,
    provider: &'a str,
    attempts: u32,
    public: bool,
    priority: i32,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<&'a str>,
}

#[derive(Debug, serde::Serialize)]
struct OutputPayload<'a> {
    url: &'a str,
    content_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thumbnail_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_s: Option<f64>,
}

#[derive(Debug, serde::Serialize)]
struct ErrorPayload<'a> {
    code: &'a str,
    message: &'a str,
}

impl<'a> TaskPayload<'a> {
    fn new(task: &'a Task) -> Self {
        Self {
            id: &task.id,
            model: &task.model,
            status: task.status.as_str(),
            input: &task.input,
            outputs: task
                .outputs
                .iter()
                .map(|o| OutputPayload {
                    url: &o.url,
                    content_type: &o.content_type,
                    bytes: o.bytes,
                    sha256: o.sha256.as_deref(),
                    thumbnail_url: o.thumbnail_url.as_deref(),
                    width: o.width,
                    height: o.height,
                    duration_s: o.duration_s,
                })
                .collect(),
            error: task.error.as_ref().map(|e| ErrorPayload {
                code: &e.code,
                message: &e.message,
            }),
            progress: (task.progress * 100.0).round() / 100.0,
            provider: &task.provider,
            attempts: task.attempts,
            public: task.public,
            priority: task.priority,
            created_at: rfc3339(task.created_at),
            started_at: task.started_at.map(rfc3339),
            finished_at: task.finished_at.map(rfc3339),
            webhook: task.webhook_url.as_deref(),
        }
    }
}

/// Webhook settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Allow destinations on loopback and private networks.
    pub allow_private: bool,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// The first retry delay; each next one is five times longer, capped at 6 h.
    pub retry_base: Duration,
    /// Timeout of one attempt.
    pub timeout: Duration,
}

/// How often the outbox is checked for due deliveries.
const OUTBOX_INTERVAL: Duration = Duration::from_millis(250);
/// Deliveries sent at once.
const BATCH: u32 = 32;

/// Makes a new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("whsec_{}", B64.encode(key))
}

/// The `webhook-signature` value for a message.
///
/// # Errors
/// When the secret is not a `whsec_` base64 secret.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = B64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| format!("bad webhook secret: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// The outbox sender.
#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    /// Public addresses only, unless `webhooks.allow_private`.
    destinations: Destinations,
    settings: Settings,
    secrets: Arc<Mutex<HashMap<UserId, String>>>,
}

impl Webhooks {
    /// Deliveries go through a guarded client of `net`: no redirects
    /// followed, no proxy, only allowed addresses connected to.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(store: Arc<dyn Store>, settings: Settings, net: &Outbound) -> anyhow::Result<Self> {
        let destinations = Destinations::guarded(settings.allow_private, "webhooks.allow_private");
        let client = net.guarded(destinations, settings.timeout)?;
        Ok(Self {
            store,
            client,
            destinations,
            settings,
            secrets: Arc::default(),
        })
    }

    /// The user's signing secret, made on first use.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn secret(&self, user: UserId) -> Result<String, StoreError> {
        if let Some(s) = self.secrets.lock().expect("secrets lock").get(&user) {
            return Ok(s.clone());
        }
        let secret = self.store.webhook_secret(user, &new_secret()).await?;
        self.secrets
            .lock()
            .expect("secrets lock")
            .insert(user, secret.clone());
        Ok(secret)
    }

    /// Sends due deliveries until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.store.due_deliveries(now_ms(), BATCH).await {
                Ok(due) if !due.is_empty() => {
                    let sends: Vec<_> = due
                        .into_iter()
                        .map(|d| tokio::spawn(self.clone().deliver(d)))
                        .collect();
                    let mut recorded = true;
                    for s in sends {
                        recorded &= s.await.unwrap_or(false);
                    }
                    // A batch whose outcome could not be stored would come
                    // straight back: wait before reading the outbox again.
                    if recorded {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reading the webhook outbox failed: {e}"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(OUTBOX_INTERVAL) => {}
            }
        }
    }

    /// Checks a literal address; names are checked where they are resolved
    /// for the connection, so a second lookup cannot answer differently.
    fn allowed(&self, url: &reqwest::Url) -> Result<(), String> {
        check_url(url, &[], self.destinations).map_err(|f| f.0)
    }

    fn body(task: &Task, event: &str, now: i64) -> Vec<u8> {
        let data = TaskPayload::new(task);
        serde_json::to_vec(
            &serde_json::json!({"type": event, "timestamp": rfc3339(now), "data": data}),
        )
        .expect("a task view always serializes")
    }

    async fn attempt(&self, d: &Delivery) -> Result<u16, (Option<u16>, String, bool)> {
        let url =
            reqwest::Url::parse(&d.url).map_err(|e| (None, format!("bad URL: {e}"), false))?;
        self.allowed(&url).map_err(|e| (None, e, false))?;
        let task = match self.store.get_task(&d.task_id).await {
            Ok(Some(t)) => t,
            Ok(None) => return Err((None, "the task no longer exists".into(), false)),
            Err(e) => return Err((None, format!("store: {e}"), true)),
        };
        let secret = self
            .secret(d.user_id)
            .await
            .map_err(|e| (None, format!("store: {e}"), true))?;
        let now = now_ms();
        let body = Self::body(&task, &d.event, now);
        let msg_id = format!("msg_{}", d.id);
        let timestamp = now / 1000;
        let signature = sign(&secret, &msg_id, timestamp, &body).map_err(|e| (None, e, false))?;
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| (None, format!("request failed: {}", Failure::of(&e)), true))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            Ok(status)
        } else {
            // 4xx other than 408/429 means the receiver refuses this message
            // for good; anything else may pass later.
            let retry = !(400..500).contains(&status) || status == 408 || status == 429;
            Err((Some(status), format!("receiver answered {status}"), retry))
        }
    }

    /// One attempt; returns whether its outcome was stored.
    async fn deliver(self, mut d: Delivery) -> bool {
        let outcome = self.attempt(&d).await;
        let now = now_ms();
        d.attempts += 1;
        match outcome {
            Ok(status) => {
                d.status = "delivered".into();
                d.last_status = Some(status);
                d.last_error = None;
                d.delivered_at = Some(now);
                tracing::info!(task.id = %d.task_id, webhook.id = d.id, "webhook for task {} delivered", d.task_id);
            }
            Err((status, error, retry)) => {
                d.last_status = status;
                d.last_error = Some(error.clone());
                if retry && d.attempts < self.settings.max_attempts {
                    let factor = 5u32.saturating_pow(d.attempts - 1);
                    let delay = self
                        .settings
                        .retry_base
                        .saturating_mul(factor)
                        .min(Duration::from_secs(6 * 3600));
                    d.next_attempt_at = now + delay.as_millis() as i64;
                } else {
                    d.status = "failed".into();
                }
                tracing::warn!(task.id = %d.task_id, webhook.id = d.id, attempts = d.attempts,
                    "webhook for task {} not delivered ({error}); {}", d.task_id,
                    if d.status == "failed" { "giving up" } else { "will retry" });
            }
        }
        match self.store.record_delivery(&d).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, webhook.id = d.id, "recording a webhook attempt failed: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        // The example of the Standard Webhooks specification's test suite.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
