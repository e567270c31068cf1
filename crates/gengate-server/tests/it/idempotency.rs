//! Idempotency-Key as the IETF draft and Stripe do it: scoped to the caller,
//! same key + same body = same task, another body = 422, in progress = 409.

use std::sync::Arc;

use async_trait::async_trait;
use gengate_core::task::NewTask;
use gengate_core::{Role, Task};
use gengate_store::{Caller, Created, IdempotencyKey, KeyInfo, ListQuery, StatusCount, Store};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::helpers::*;

#[tokio::test]
async fn same_key_same_body_returns_the_same_task() {
    let app = spawn_app().await;
    let body = prompt("once");
    let a = app
        .post_task_as(&app.user_key, &body, Some("order-42"))
        .await;
    let b = app
        .post_task_as(&app.user_key, &body, Some("order-42"))
        .await;
    assert_eq!((a.status, b.status), (202, 202));
    assert_eq!(a.id(), b.id());
    assert_eq!(a.header("idempotent-replayed"), None);
    assert_eq!(b.header("idempotent-replayed"), Some("true"));
    // Key order in the JSON does not matter.
    let reordered = json!({"input": {"size": "512x512", "prompt": "once"}, "model": "sim-image"});
    assert_eq!(
        app.post_task_as(&app.user_key, &reordered, Some("order-42"))
            .await
            .id(),
        a.id()
    );
    let listed = app.get_as(&app.user_key, "/v1/tasks").await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_task_as(&app.user_key, &prompt("one"), Some("k"))
            .await
            .status,
        202
    );
    let r = app
        .post_task_as(&app.user_key, &prompt("two"), Some("k"))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.error(),
        (
            "idempotency_key_reused".to_owned(),
            Some("Idempotency-Key".to_owned())
        )
    );
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller() {
    let app = spawn_app().await;
    let bob = app.key_for("bob").await;
    let a = app
        .post_task_as(&app.user_key, &prompt("x"), Some("shared"))
        .await;
    let b = app.post_task_as(&bob, &prompt("x"), Some("shared")).await;
    assert_eq!((a.status, b.status), (202, 202));
    assert_ne!(a.id(), b.id());
}

#[tokio::test]
async fn bad_idempotency_keys_are_refused() {
    let app = spawn_app().await;
    let long = "k".repeat(256);
    for key in ["", long.as_str()] {
        let r = app
            .post_task_as(&app.user_key, &prompt("x"), Some(key))
            .await;
        assert_eq!(r.status, 422, "{key:?}");
        assert_eq!(r.error().0, "invalid_idempotency_key");
    }
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_exactly_one_task() {
    let app = Arc::new(spawn_app().await);
    let mut handles = Vec::new();
    for _ in 0..20 {
        let app = app.clone();
        handles.push(tokio::spawn(async move {
            app.post_task_as(&app.user_key, &prompt("race"), Some("race-1"))
                .await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for h in handles {
        let r = h.await.unwrap();
        match r.status {
            202 => {
                ids.insert(r.id());
            }
            409 => assert_eq!(r.error().0, "idempotency_key_in_progress"),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(ids.len(), 1, "every accepted answer names the same task");
    let listed = app.get_as(&app.user_key, "/v1/tasks").await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
}

/// A store whose `create_task` waits for a permit, to hold a request "in progress".
struct GatedStore {
    inner: Arc<dyn Store>,
    gate: Arc<Semaphore>,
    entered: Arc<Notify>,
}

#[async_trait]
impl Store for GatedStore {
    async fn ping(&self) -> gengate_store::Result<()> {
        self.inner.ping().await
    }
    async fn create_key(
        &self,
        u: &str,
        r: Role,
        h: &str,
        p: &str,
        now: i64,
    ) -> gengate_store::Result<KeyInfo> {
        self.inner.create_key(u, r, h, p, now).await
    }
    async fn user_named(&self, name: &str, now: i64) -> gengate_store::Result<i64> {
        self.inner.user_named(name, now).await
    }
    async fn find_key(&self, h: &str) -> gengate_store::Result<Option<Caller>> {
        self.inner.find_key(h).await
    }
    async fn list_keys(&self) -> gengate_store::Result<Vec<KeyInfo>> {
        self.inner.list_keys().await
    }
    async fn revoke_key(&self, k: &str, now: i64) -> gengate_store::Result<bool> {
        self.inner.revoke_key(k, now).await
    }
    async fn count_keys(&self) -> gengate_store::Result<u64> {
        self.inner.count_keys().await
    }
    async fn create_task(
        &self,
        t: NewTask,
        i: Option<IdempotencyKey>,
    ) -> gengate_store::Result<Created> {
        self.entered.notify_one();
        let _permit = self.gate.acquire().await.expect("gate open");
        self.inner.create_task(t, i).await
    }
    async fn get_task(&self, id: &str) -> gengate_store::Result<Option<Task>> {
        self.inner.get_task(id).await
    }
    async fn list_tasks(&self, q: &ListQuery) -> gengate_store::Result<Vec<Task>> {
        self.inner.list_tasks(q).await
    }
    async fn update_task(&self, t: &Task, f: gengate_store::Fence) -> gengate_store::Result<bool> {
        self.inner.update_task(t, f).await
    }
    async fn facts(&self) -> gengate_store::Result<gengate_store::DbFacts> {
        self.inner.facts().await
    }
    async fn active_tasks(&self) -> gengate_store::Result<Vec<Task>> {
        self.inner.active_tasks().await
    }
    async fn status_counts(&self) -> gengate_store::Result<Vec<StatusCount>> {
        self.inner.status_counts().await
    }
    async fn delete_task(&self, id: &str) -> gengate_store::Result<bool> {
        self.inner.delete_task(id).await
    }
    async fn purge_idempotency(&self, before: i64) -> gengate_store::Result<u64> {
        self.inner.purge_idempotency(before).await
    }
    fn accounts(&self) -> &dyn gengate_store::Accounts {
        self.inner.accounts()
    }
    async fn webhook_secret(&self, user: i64, candidate: &str) -> gengate_store::Result<String> {
        self.inner.webhook_secret(user, candidate).await
    }
    async fn due_deliveries(
        &self,
        now: i64,
        limit: u32,
    ) -> gengate_store::Result<Vec<gengate_store::Delivery>> {
        self.inner.due_deliveries(now, limit).await
    }
    async fn record_delivery(&self, d: &gengate_store::Delivery) -> gengate_store::Result<()> {
        self.inner.record_delivery(d).await
    }
    async fn task_deliveries(
        &self,
        task_id: &str,
    ) -> gengate_store::Result<Vec<gengate_store::Delivery>> {
        self.inner.task_deliveries(task_id).await
    }
}

#[tokio::test]
async fn a_retry_while_the_first_request_is_in_progress_is_409() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config().finish().unwrap();
    cfg.server.data_dir = dir.path().to_owned();
    let inner = gengate_store::open(&cfg.store_url()).await.unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let entered = Arc::new(Notify::new());
    let store: Arc<dyn Store> = Arc::new(GatedStore {
        inner,
        gate: gate.clone(),
        entered: entered.clone(),
    });
    let app = Arc::new(spawn_on(cfg, store, dir).await);

    let first = tokio::spawn({
        let app = app.clone();
        async move {
            app.post_task_as(&app.user_key, &prompt("slow"), Some("held"))
                .await
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(10), entered.notified())
        .await
        .expect("first request reached the store");
    let retry = app
        .post_task_as(&app.user_key, &prompt("slow"), Some("held"))
        .await;
    assert_eq!(retry.status, 409, "{}", retry.body);
    assert_eq!(
        retry.error(),
        (
            "idempotency_key_in_progress".to_owned(),
            Some("Idempotency-Key".to_owned())
        )
    );
    gate.add_permits(1000);
    let first = first.await.unwrap();
    assert_eq!(first.status, 202);
    let again = app
        .post_task_as(&app.user_key, &prompt("slow"), Some("held"))
        .await;
    assert_eq!((again.status, again.id()), (202, first.id()));
}
