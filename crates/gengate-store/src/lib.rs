//! Persistence: the [`Store`] trait, the one place the rest of gengate reads
//! and writes durable state, and its backends. Each backend owns its SQL and
//! its migrations (`migrations/<db>/`); callers see only the trait and
//! [`StoreError`], whose variants name what the caller can do about them.

use std::sync::Arc;

use async_trait::async_trait;
use gengate_core::task::NewTask;
use gengate_core::{Role, Status, Task, UserId};

pub mod sqlite;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The idempotency key was used before with a different request body.
    #[error("idempotency key was already used with a different request")]
    IdempotencyMismatch,
    /// A uniqueness rule was violated (e.g. the same key created twice).
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    /// The database could not be reached or refused the operation; retrying
    /// later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded: a bug or manual tampering.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store URL or its options are wrong.
    #[error("invalid store configuration: {0}")]
    Config(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The authenticated owner of an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: i64,
    pub user_id: UserId,
    pub user_name: String,
    pub role: Role,
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: i64,
    pub user_id: UserId,
    pub user_name: String,
    pub role: Role,
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// The idempotency part of a create.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    /// Hash of the canonical request body; a replay must match it.
    pub request_hash: String,
    /// Older records are treated as absent.
    pub not_before: i64,
}

/// The result of a create.
#[derive(Debug, Clone)]
pub struct Created {
    pub task: Task,
    /// `true` when an earlier request with the same idempotency key made it.
    pub replayed: bool,
}

/// Which tasks to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this user's tasks; `None` lists everyone's (admin, gallery).
    pub user_id: Option<UserId>,
    pub status: Option<Status>,
    pub model: Option<String>,
    /// Only public, succeeded tasks (the gallery).
    pub gallery: bool,
    /// Only tasks with ids below this one (the cursor).
    pub before: Option<String>,
    pub limit: u32,
}

/// How many tasks a provider has in each status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    pub provider: String,
    pub status: Status,
    pub count: u64,
}

/// Durable state. Every method is one transaction; every task update is
/// conditional on the version the caller read, so racing writers (a cancel
/// and a poll, two nodes) cannot both win.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks the database answers.
    async fn ping(&self) -> Result<()>;

    /// Creates a key for `user_name` (creating the user on first use).
    async fn create_key(
        &self,
        user_name: &str,
        role: Role,
        key_hash: &str,
        prefix: &str,
        now: i64,
    ) -> Result<KeyInfo>;
    /// The live (not revoked) key with this hash.
    async fn find_key(&self, key_hash: &str) -> Result<Option<Caller>>;
    async fn list_keys(&self) -> Result<Vec<KeyInfo>>;
    /// Revokes a key by numeric id or by prefix; `false` if none matched.
    async fn revoke_key(&self, id_or_prefix: &str, now: i64) -> Result<bool>;
    async fn count_keys(&self) -> Result<u64>;

    /// Stores a new task, durably, before returning. With an idempotency key,
    /// a replay of the same request returns the task the first one made.
    ///
    /// # Errors
    /// [`StoreError::IdempotencyMismatch`] when the key was used with another body.
    async fn create_task(
        &self,
        task: NewTask,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created>;
    async fn get_task(&self, id: &str) -> Result<Option<Task>>;
    async fn list_tasks(&self, query: &ListQuery) -> Result<Vec<Task>>;
    /// Writes `task` if the stored version is still `task.version - 1`.
    /// Returns `false` (and writes nothing) if someone else changed it first.
    async fn update_task(&self, task: &Task) -> Result<bool>;
    /// Every task not yet in a terminal state (recovery at start).
    async fn active_tasks(&self) -> Result<Vec<Task>>;
    async fn status_counts(&self) -> Result<Vec<StatusCount>>;
    /// Deletes a finished task with its webhook deliveries and idempotency
    /// record; `false` when there is no such finished task.
    async fn delete_task(&self, id: &str) -> Result<bool>;
    /// Deletes idempotency records created before `before`; returns how many.
    async fn purge_idempotency(&self, before: i64) -> Result<u64>;

    /// The user's webhook signing secret, set to `candidate` if it has none.
    async fn webhook_secret(&self, user_id: UserId, candidate: &str) -> Result<String>;
    /// Pending webhook deliveries due by `now`, oldest first.
    async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>>;
    /// Stores the outcome of a delivery attempt (status, attempts, next try).
    async fn record_delivery(&self, delivery: &Delivery) -> Result<()>;
    /// Every delivery of a task's webhooks, oldest first.
    async fn task_deliveries(&self, task_id: &str) -> Result<Vec<Delivery>>;
}

/// One webhook delivery: queued with a task's final state (in the same
/// transaction), then attempted until delivered or given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub task_id: String,
    pub user_id: UserId,
    pub url: String,
    /// `task.succeeded`, `task.failed` or `task.canceled`.
    pub event: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: i64,
    /// HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// Opens the store a URL names and applies pending migrations.
///
/// `sqlite://PATH` (relative paths are relative to the working directory).
/// MySQL/MariaDB and PostgreSQL URLs are recognized and refused until their
/// backends exist.
///
/// # Errors
/// [`StoreError::Config`] for an unknown scheme, [`StoreError::Unavailable`]
/// when the database cannot be opened or migrated.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store =
            sqlite::SqliteStore::open(std::path::Path::new(path), sqlite::Options::default())
                .await?;
        return Ok(Arc::new(store));
    }
    let scheme = url.split("://").next().unwrap_or(url);
    match scheme {
        "mysql" | "mariadb" | "postgres" | "postgresql" => Err(StoreError::Config(format!(
            "the {scheme} backend is not available in this build; use sqlite://PATH"
        ))),
        _ => Err(StoreError::Config(format!(
            "unknown store URL scheme in {url:?}; expected sqlite://PATH"
        ))),
    }
}
