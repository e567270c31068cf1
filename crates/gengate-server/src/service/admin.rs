//! Operations: readiness, metrics, the admin's figures and keys.

use std::sync::Arc;
use std::time::Duration;

use gengate_core::{Limits, Role, Status, Task};
use gengate_engine::dispatch::{Dispatcher, LaneStats};
use gengate_engine::metrics::Metrics;
use gengate_store::{
    Account, AccountPatch, AuditEntry, Caller, KeyInfo, LedgerEntry, ListQuery, StatusCount, Store,
};

use super::ServiceError;
use super::accounts::{id_cursor, page_limit};
use super::auth::AuthService;
use super::tasks::{CreateTask, ListParams, Placed, TaskService};
use crate::now_ms;

/// How long readiness waits for the store to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this node can serve.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub store_ok: bool,
    pub dispatcher_ok: bool,
}

impl Readiness {
    pub fn ready(self) -> bool {
        self.store_ok && self.dispatcher_ok
    }
}

/// What an admin sees of the whole deployment.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Live dispatcher figures per provider.
    pub providers: Vec<LaneStats>,
    /// Stored task counts per provider and status.
    pub tasks: Vec<StatusCount>,
}

/// One page of users, by id.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<Account>,
    pub next_cursor: Option<String>,
}

/// One line of the audit trail: an admin's action, or a movement of
/// credits (a task's hold, settlement or refund, an admin's grant).
#[derive(Debug, Clone)]
pub enum AuditItem {
    Action(AuditEntry),
    Credits(LedgerEntry),
}

impl AuditItem {
    pub fn at(&self) -> i64 {
        match self {
            AuditItem::Action(a) => a.created_at,
            AuditItem::Credits(l) => l.created_at,
        }
    }
}

/// One page of the audit trail, newest first.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub items: Vec<AuditItem>,
    pub next_cursor: Option<String>,
}

/// Longest reason of a grant, in characters.
pub const MAX_REASON: usize = 500;
/// Most credits one grant moves.
pub const MAX_GRANT: i64 = 1_000_000_000_000;

#[derive(Clone)]
pub struct AdminService {
    store: Arc<dyn Store>,
    dispatcher: Dispatcher,
    metrics: Arc<Metrics>,
    auth: AuthService,
    tasks: TaskService,
    /// Every user's limits unless set for them.
    limits: Limits,
}

/// Which tasks an admin searches or acts on: any of the filters, across
/// users.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// The owner's name.
    pub user: Option<String>,
    pub status: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    /// Created at or after, and before (Unix ms).
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
}

/// What a bulk cancel did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkCancel {
    pub canceled: u64,
    /// Matched but finished before the cancel reached them.
    pub finished: u64,
}

/// Most tasks one bulk cancel goes through.
pub const MAX_BULK: u32 = 10_000;

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        code: "invalid_request",
        field: field.to_owned(),
        message: message.into(),
    }
}

impl AdminService {
    pub fn new(
        store: Arc<dyn Store>,
        dispatcher: Dispatcher,
        metrics: Arc<Metrics>,
        auth: AuthService,
        tasks: TaskService,
    ) -> Self {
        Self {
            store,
            dispatcher,
            metrics,
            auth,
            tasks,
            limits: Limits::default(),
        }
    }

    /// The store query of `filter`, checked (`user` is resolved to its id).
    async fn task_query(
        &self,
        filter: &TaskFilter,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<ListQuery, ServiceError> {
        let params = ListParams {
            status: filter.status.clone(),
            model: filter.model.clone(),
            limit,
            cursor,
        };
        let mut q = self.tasks.page_query(&params)?;
        q.limit -= 1;
        if let Some(name) = &filter.user {
            q.user_id = Some(self.user(name).await?.user_id);
        }
        if let Some(p) = &filter.provider
            && !self.dispatcher.stats().iter().any(|l| &l.provider == p)
        {
            return Err(ServiceError::NotFound(format!("no provider entry {p:?}")));
        }
        q.provider.clone_from(&filter.provider);
        q.created_from = filter.created_from;
        q.created_to = filter.created_to;
        Ok(q)
    }

    /// Tasks of every user matching `filter`, newest first.
    ///
    /// # Errors
    /// A bad filter, cursor or limit (422), an unknown user or provider
    /// (404).
    pub async fn search_tasks(
        &self,
        filter: &TaskFilter,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> Result<(Vec<Task>, Option<String>), ServiceError> {
        let q = self.task_query(filter, cursor, limit).await?;
        self.tasks.search(q).await
    }

    /// Cancels every unfinished task matching `filter` (up to [`MAX_BULK`]);
    /// audited. Each is refunded as its model says.
    ///
    /// # Errors
    /// As [`AdminService::search_tasks`].
    pub async fn cancel_tasks(
        &self,
        admin: &Caller,
        filter: &TaskFilter,
        detail: serde_json::Value,
    ) -> Result<BulkCancel, ServiceError> {
        let mut q = self.task_query(filter, None, Some(100)).await?;
        let mut done = BulkCancel::default();
        let mut seen = 0;
        loop {
            let (page, next) = self.tasks.search(q.clone()).await?;
            for t in page.iter().filter(|t| !t.status.is_terminal()) {
                match self.tasks.cancel(admin, &t.id).await {
                    Ok(_) => done.canceled += 1,
                    Err(ServiceError::Conflict { .. } | ServiceError::NotFound(_)) => {
                        done.finished += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
            seen += page.len() as u32;
            match next {
                Some(cursor) if seen < MAX_BULK => q.before = Some(cursor),
                _ => break,
            }
        }
        let mut detail = detail;
        detail["canceled"] = done.canceled.into();
        self.audit_action(admin, "tasks.cancel", "tasks", detail)
            .await?;
        Ok(done)
    }

    /// Takes a task out of the gallery; audited.
    ///
    /// # Errors
    /// `NotFound` for no such task.
    pub async fn hide_task(&self, admin: &Caller, id: &str) -> Result<Task, ServiceError> {
        let task = self.tasks.hide(id).await?;
        self.audit_action(admin, "task.hide", id, serde_json::json!({}))
            .await?;
        Ok(task)
    }

    /// Runs a failed or canceled task again as a new task of its owner (a
    /// new attempt with its model, input and settings), held and limited as
    /// any create; retrying the same task again answers the same new task.
    /// Audited.
    ///
    /// # Errors
    /// `NotFound` for no such task, `Conflict` for one that did not fail or
    /// was not canceled, and the owner's credits or limits as a create.
    pub async fn retry_task(&self, admin: &Caller, id: &str) -> Result<Placed, ServiceError> {
        let task = self.tasks.get(admin, id).await?;
        if !matches!(task.status, Status::Failed | Status::Canceled) {
            return Err(ServiceError::Conflict {
                code: "task_not_failed",
                message: format!(
                    "task {id} is {}; only failed or canceled tasks are retried",
                    task.status.as_str()
                ),
            });
        }
        let owner = self
            .store
            .accounts()
            .account(task.user_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("the owner of task {id}")))?;
        let as_owner = Caller {
            key_id: admin.key_id,
            user_id: owner.user_id,
            user_name: owner.name,
            role: Role::User,
            token: None,
        };
        let req = CreateTask {
            model: task.model.clone(),
            input: task.input.clone(),
            public: task.public,
            priority: task.priority.min(super::tasks::MAX_USER_PRIORITY),
            webhook: task.webhook_url.clone(),
        };
        let placed = self
            .tasks
            .create(&as_owner, Some(format!("gengate-retry:{id}")), req)
            .await?;
        if !placed.replayed {
            let detail = serde_json::json!({"new_task": placed.task.id});
            self.audit_action(admin, "task.retry", id, detail).await?;
        }
        Ok(placed)
    }

    /// Copies again the outputs of a task that failed only because they
    /// could not be copied (`output_copy_failed`: storage was down, say):
    /// the provider's result is still on the task, and the task goes back to
    /// `storing`, then `succeeded` once they are in storage. Its credits were
    /// refunded when it failed and are not taken again: the failure was the
    /// operator's. Audited.
    ///
    /// # Errors
    /// `NotFound` for no such task; `Conflict` for any other task.
    pub async fn recopy_task(&self, admin: &Caller, id: &str) -> Result<Task, ServiceError> {
        let task = self.tasks.get(admin, id).await?;
        let outcome = self
            .dispatcher
            .transition(id, Some((*task).clone()), |t| {
                (t.status == Status::Failed).then_some(gengate_core::Event::Recopy)
            })
            .await?;
        let Some(storing) = outcome.stored() else {
            return Err(ServiceError::Conflict {
                code: "task_not_recopyable",
                message: format!(
                    "task {id} is {}; only a task that failed with output_copy_failed, its \
                     provider's outputs still on it, is copied again",
                    task.status.as_str()
                ),
            });
        };
        self.audit_action(admin, "task.recopy", id, serde_json::json!({}))
            .await?;
        Ok(storing)
    }

    /// Pauses or resumes a provider entry on every node; audited.
    ///
    /// # Errors
    /// `NotFound` for no such entry.
    pub async fn pause_provider(
        &self,
        admin: &Caller,
        name: &str,
        paused: bool,
    ) -> Result<(), ServiceError> {
        if !self.dispatcher.set_paused(name, paused).await? {
            return Err(ServiceError::NotFound(format!(
                "no provider entry {name:?}"
            )));
        }
        let action = if paused {
            "provider.pause"
        } else {
            "provider.resume"
        };
        self.audit_action(admin, action, name, serde_json::json!({}))
            .await
    }

    /// The configured limits, shown beside each user's own.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    async fn audit_action(
        &self,
        admin: &Caller,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<(), ServiceError> {
        self.store
            .accounts()
            .record_audit(
                &admin.user_name,
                action,
                target,
                &detail.to_string(),
                now_ms(),
            )
            .await?;
        Ok(())
    }

    /// Users by id.
    ///
    /// # Errors
    /// A bad cursor or limit, a store failure.
    pub async fn users(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<UserPage, ServiceError> {
        let limit = page_limit(limit)?;
        let after = id_cursor(cursor)?;
        let mut users = self.store.accounts().accounts(after, limit + 1).await?;
        let next_cursor = (users.len() > limit as usize).then(|| {
            users.truncate(limit as usize);
            users
                .last()
                .map_or_else(String::new, |u| u.user_id.to_string())
        });
        Ok(UserPage { users, next_cursor })
    }

    /// A user by name.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] when there is none.
    pub async fn user(&self, name: &str) -> Result<Account, ServiceError> {
        self.store
            .accounts()
            .account_named(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no user {name:?}")))
    }

    /// Disables or enables a user, or sets their own limits; audited.
    ///
    /// # Errors
    /// As [`AdminService::user`].
    pub async fn patch_user(
        &self,
        admin: &Caller,
        name: &str,
        patch: AccountPatch,
        detail: serde_json::Value,
    ) -> Result<Account, ServiceError> {
        let user = self.user(name).await?;
        self.store
            .accounts()
            .patch_account(user.user_id, &patch)
            .await?;
        self.audit_action(admin, "user.patch", name, detail).await?;
        self.user(name).await
    }

    /// Adds (or, negative, takes) credits; the ledger entry names the admin.
    ///
    /// # Errors
    /// A zero or huge amount, a missing reason (422), no such user (404),
    /// a balance that would go below zero (409).
    pub async fn grant(
        &self,
        admin: &Caller,
        name: &str,
        amount: i64,
        reason: &str,
    ) -> Result<LedgerEntry, ServiceError> {
        if amount == 0 || amount.abs() > MAX_GRANT {
            return Err(invalid(
                "amount",
                format!(
                    "amount must be a non-zero number of credits, at most {MAX_GRANT} either way"
                ),
            ));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Err(invalid(
                "reason",
                format!("reason must say why, in 1..{MAX_REASON} characters"),
            ));
        }
        let user = self.user(name).await?;
        self.store
            .accounts()
            .grant(user.user_id, amount, reason, &admin.user_name, now_ms())
            .await
            .map_err(|e| match e {
                gengate_store::StoreError::Conflict { .. } => ServiceError::Conflict {
                    code: "insufficient_credits",
                    message: format!(
                        "taking {} credits would leave {name:?} below zero (balance {})",
                        -amount, user.balance
                    ),
                },
                other => other.into(),
            })
    }

    /// Every key (never a secret).
    ///
    /// # Errors
    /// A store failure.
    pub async fn keys(&self) -> Result<Vec<KeyInfo>, ServiceError> {
        Ok(self.store.list_keys().await?)
    }

    /// Revokes a key by id or prefix; audited.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] when no live key matches.
    pub async fn revoke_key(&self, admin: &Caller, key: &str) -> Result<(), ServiceError> {
        if !self.store.revoke_key(key, now_ms()).await? {
            return Err(ServiceError::NotFound(format!("no live key {key:?}")));
        }
        self.audit_action(admin, "key.revoke", key, serde_json::json!({}))
            .await
    }

    /// The audit trail, newest first: admins' actions and every movement of
    /// credits, merged by time. The cursor holds where each of the two
    /// stopped (`<action id>.<ledger id>`).
    ///
    /// # Errors
    /// A bad cursor or limit, a store failure.
    pub async fn audit(
        &self,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<AuditPage, ServiceError> {
        let limit = page_limit(limit)?;
        let bad = || invalid("cursor", "cursor must be a next_cursor of an earlier page");
        let (actions_before, ledger_before) = match cursor {
            None => (None, None),
            Some(c) => {
                let (a, l) = c.split_once('.').ok_or_else(bad)?;
                (
                    id_cursor(Some(a)).map_err(|_| bad())?,
                    id_cursor(Some(l)).map_err(|_| bad())?,
                )
            }
        };
        let accounts = self.store.accounts();
        let actions = accounts.audit(actions_before, limit).await?;
        let ledger = accounts.ledger(None, ledger_before, limit).await?;
        let (mut a, mut l) = (
            actions.into_iter().peekable(),
            ledger.into_iter().peekable(),
        );
        let mut items = Vec::new();
        let (mut last_a, mut last_l) = (actions_before, ledger_before);
        while items.len() < limit as usize {
            let take_action = match (a.peek(), l.peek()) {
                (Some(x), Some(y)) => x.created_at >= y.created_at,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_action {
                let x = a.next().expect("peeked");
                last_a = Some(x.id);
                items.push(AuditItem::Action(x));
            } else {
                let y = l.next().expect("peeked");
                last_l = Some(y.id);
                items.push(AuditItem::Credits(y));
            }
        }
        let more = a.peek().is_some() || l.peek().is_some() || items.len() == limit as usize;
        let next_cursor = more.then(|| {
            format!(
                "{}.{}",
                last_a.unwrap_or(i64::MAX),
                last_l.unwrap_or(i64::MAX)
            )
        });
        Ok(AuditPage { items, next_cursor })
    }

    /// The store answers (within 2 s) and the dispatcher runs.
    pub async fn readiness(&self) -> Readiness {
        let store_ok = matches!(
            tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await,
            Ok(Ok(()))
        );
        Readiness {
            store_ok,
            dispatcher_ok: self.dispatcher.is_running(),
        }
    }

    /// The Prometheus text of this node's metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics
            .render(&self.dispatcher.gauges(), &self.store.pool_stats())
    }

    /// Queues, in-flight tasks and latency per provider; stored task counts.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn stats(&self) -> Result<Stats, ServiceError> {
        let tasks = self.store.status_counts().await?;
        Ok(Stats {
            providers: self.dispatcher.stats(),
            tasks,
        })
    }

    /// Makes an API key for `user` (created on first use); the secret is
    /// returned only here. Audited.
    ///
    /// # Errors
    /// An invalid user name, or a store failure.
    pub async fn create_key(
        &self,
        admin: &Caller,
        user: &str,
        role: Role,
    ) -> Result<(KeyInfo, String), ServiceError> {
        let made = self.auth.create_key(user, role).await?;
        let detail =
            serde_json::json!({"id": made.0.id, "prefix": made.0.prefix, "role": role.as_str()});
        self.audit_action(admin, "key.create", user, detail).await?;
        Ok(made)
    }
}
