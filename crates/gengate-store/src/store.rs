//! The [`Store`] trait, the one place the rest of gengate reads and writes
//! durable state, with the types of its calls and [`StoreError`], whose
//! variants name what the caller can do about a failure. A leaf that every
//! backend imports; `lib.rs` re-exports it and picks the backend.

use async_trait::async_trait;
use gengate_core::task::NewTask;
use gengate_core::{Role, Status, Task, TaskId, UserId};

use crate::accounts::{Account, AccountPatch, AuditEntry, Drift, LedgerEntry};

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
    /// A create the user's credits or limits do not allow; nothing was
    /// stored.
    #[error("refused: {0:?}")]
    Refused(gengate_core::Refusal),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The authenticated owner of an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: i64,
    pub user_id: UserId,
    pub user_name: String,
    pub role: Role,
    /// `Some` for a browser token: read-only and, when it names a task,
    /// limited to that task.
    pub token: Option<TokenScope>,
}

/// What a browser token was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScope {
    /// The one task it may read, if it names one.
    pub task_id: Option<TaskId>,
    /// When it stops being accepted (Unix ms).
    pub expires_at: i64,
}

impl Caller {
    /// Whether this caller may read task `id` of user `owner`: their own
    /// (and, with a task token, only that task), or any as an admin.
    pub fn may_read(&self, owner: UserId, id: &str) -> bool {
        if self.role == Role::Admin {
            return true;
        }
        owner == self.user_id
            && self
                .token
                .as_ref()
                .and_then(|t| t.task_id.as_deref())
                .is_none_or(|only| only == id)
    }

    /// Whether this caller may see more than one task (not a token for a
    /// single task).
    pub fn may_list(&self) -> bool {
        self.token.as_ref().is_none_or(|t| t.task_id.is_none())
    }
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
    /// Only tasks of this provider entry.
    pub provider: Option<String>,
    /// Only tasks created at or after, and before, these times (Unix ms).
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
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

/// How a task update is guarded beyond its version (the event decides:
/// [`gengate_core::Event::fence`]).
pub use gengate_core::Fence;

/// Whether `status` keeps its task leased to a node.
pub fn holds_lease(status: Status) -> bool {
    matches!(
        status,
        Status::Submitting | Status::Running | Status::Storing
    )
}

/// Connection pool figures of a networked store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, and the most the pool may open.
    pub size: u32,
    pub max: u32,
    /// Open and unused now.
    pub idle: u32,
    /// Acquisitions so far, and the total and longest time they waited.
    pub acquires: u64,
    pub wait_micros_total: u64,
    pub wait_micros_max: u64,
    /// Acquisitions that gave up after the pool's timeout.
    pub timeouts: u64,
}

/// One gengate process that shares the store, as its heartbeat recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    /// Last heartbeat, by the database's clock (Unix ms).
    pub seen_at: i64,
    /// The node's own clock minus the database's at that heartbeat (ms).
    pub clock_offset_ms: i64,
    pub started_at: i64,
}

/// What `gengate doctor` reads off the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbFacts {
    /// Engine and version, as the server reports it.
    pub engine: String,
    /// Migrations applied, and the latest this build knows.
    pub schema_version: i64,
    pub latest_version: i64,
    /// The server's connection limit, if it has one.
    pub max_connections: Option<u64>,
    /// Memory settings that matter for sizing (name, bytes).
    pub memory: Vec<(String, u64)>,
    /// The database's clock (Unix ms) when read.
    pub now_ms: i64,
    /// Nodes that sent a heartbeat recently.
    pub nodes: Vec<NodeInfo>,
}

/// A task changed (for the cross-node event channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub task_id: TaskId,
    pub version: i64,
    pub user_id: UserId,
    pub status: Status,
    /// The node holding the task's lease after the change, if any.
    pub owner: Option<String>,
}

impl Change {
    /// A marker a feed sends when changes may have been missed (its
    /// connection was lost): whoever caches tasks should read them again.
    pub fn gap() -> Self {
        Self {
            task_id: String::new(),
            version: -1,
            user_id: 0,
            status: Status::Queued,
            owner: None,
        }
    }

    /// Whether this is [`Change::gap`].
    pub fn is_gap(&self) -> bool {
        self.task_id.is_empty()
    }

    /// The wire form: `id version user status [owner]`, one line.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.task_id,
            self.version,
            self.user_id,
            self.status.as_str(),
            self.owner.as_deref().unwrap_or("-")
        )
    }

    /// Reads [`Change::encode`]'s form; `None` for anything else.
    pub fn decode(s: &str) -> Option<Self> {
        let mut it = s.split_ascii_whitespace();
        let task_id = it.next()?.to_owned();
        let version = it.next()?.parse().ok()?;
        let user_id = it.next()?.parse().ok()?;
        let status = Status::parse(it.next()?)?;
        let owner = it.next().filter(|o| *o != "-").map(str::to_owned);
        Some(Self {
            task_id,
            version,
            user_id,
            status,
            owner,
        })
    }
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
    /// The id of the user named `name`, created at `now` if there is none
    /// yet (an app's end user, the first time its service key names it).
    async fn user_named(&self, name: &str, now: i64) -> Result<UserId>;
    /// The live (not revoked) key with this hash.
    async fn find_key(&self, key_hash: &str) -> Result<Option<Caller>>;
    async fn list_keys(&self) -> Result<Vec<KeyInfo>>;
    /// Revokes a key by numeric id or by prefix; `false` if none matched.
    async fn revoke_key(&self, id_or_prefix: &str, now: i64) -> Result<bool>;
    async fn count_keys(&self) -> Result<u64>;

    /// Stores a new task, durably, before returning. With an idempotency key,
    /// a replay of the same request returns the task the first one made
    /// (and is not counted again). Otherwise, in the same transaction, the
    /// owner's limits (`task.limits` unless an admin set their own) are
    /// checked and counted and the task's price is held: taken from the
    /// balance and written to the ledger.
    ///
    /// # Errors
    /// [`StoreError::IdempotencyMismatch`] when the key was used with another
    /// body; [`StoreError::Refused`] when the credits or limits do not allow it.
    async fn create_task(
        &self,
        task: NewTask,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created>;
    async fn get_task(&self, id: &str) -> Result<Option<Task>>;
    async fn list_tasks(&self, query: &ListQuery) -> Result<Vec<Task>>;
    /// Writes `task` if the stored version is still `task.version - 1` and,
    /// on a shared store, `fence` allows it. Returns `false` (and writes
    /// nothing) if someone else changed it first or this node lost its lease.
    /// The first write of a final state also ends the task's hold (settled
    /// or refunded, in the ledger) and frees its place among the owner's
    /// tasks, in the same transaction.
    async fn update_task(&self, task: &Task, fence: Fence) -> Result<bool>;
    /// Every task not yet in a terminal state (recovery at start).
    async fn active_tasks(&self) -> Result<Vec<Task>>;
    async fn status_counts(&self) -> Result<Vec<StatusCount>>;
    /// Deletes a finished task with its webhook deliveries and idempotency
    /// record; `false` when there is no such finished task.
    async fn delete_task(&self, id: &str) -> Result<bool>;
    /// Deletes idempotency records created before `before`; returns how many.
    async fn purge_idempotency(&self, before: i64) -> Result<u64>;

    /// Whether several gengate processes may share this store (PostgreSQL,
    /// MySQL). The dispatcher then claims work through the store and holds
    /// leases on what it works on; otherwise it owns every task in memory.
    fn shared(&self) -> bool {
        false
    }
    /// The id this process holds leases under.
    fn node_id(&self) -> &str {
        "local"
    }
    /// Claims up to `max` queued tasks of `provider` that are due by `now`
    /// (higher priority first, then round-robin over users, oldest first),
    /// without letting the provider's tasks in `submitting` or `running`
    /// exceed `limit` across every node. Each claimed task is stored as
    /// `apply(Claim)` makes it, leased to this node, and returned.
    async fn claim_tasks(
        &self,
        provider: &str,
        limit: u32,
        max: u32,
        now: i64,
    ) -> Result<Vec<Task>> {
        let _ = (provider, limit, max, now);
        Err(StoreError::Config(
            "this store does not hand out claims".into(),
        ))
    }
    /// Extends this node's unexpired leases on the tasks in `held` (those it
    /// works on) and records its heartbeat (with its own clock, `now`).
    /// Expired leases are not renewed: they are lost. Returns how many
    /// leases were renewed.
    async fn renew_leases(&self, now: i64, held: &[TaskId]) -> Result<u64> {
        let _ = (now, held);
        Ok(0)
    }
    /// The tasks this node holds a lease on, expired or not, by id.
    async fn leased_here(&self) -> Result<Vec<TaskId>> {
        Ok(Vec::new())
    }
    /// Ends every lease this node holds at once (after it stalled past a
    /// heartbeat and no longer knows which of its leases are still good):
    /// its tasks are taken over right away, by any node.
    async fn release_leases(&self) -> Result<u64> {
        Ok(0)
    }
    /// Takes over up to `max` tasks whose lease expired (their node died or
    /// stalled): leased to this node, version bumped so that the former
    /// holder's writes fail.
    async fn take_over(&self, max: u32) -> Result<Vec<Task>> {
        let _ = max;
        Ok(Vec::new())
    }
    /// Unfinished tasks whose deadline passed by `now`, oldest deadline first.
    async fn overdue_tasks(&self, now: i64, limit: u32) -> Result<Vec<Task>> {
        let _ = (now, limit);
        Ok(Vec::new())
    }
    /// Tasks changed at or after `since` (Unix ms, by the writers' clocks),
    /// oldest change first: the cross-node event channel when nothing
    /// pushes changes (MySQL without Redis).
    async fn changes_since(&self, since: i64, limit: u32) -> Result<Vec<(Change, i64)>> {
        let _ = (since, limit);
        Ok(Vec::new())
    }
    /// Changes pushed by the database itself (PostgreSQL's LISTEN/NOTIFY),
    /// when it can.
    async fn subscribe(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Change>>> {
        Ok(None)
    }
    /// The connection pool's figures (zeros for an embedded store).
    fn pool_stats(&self) -> PoolStats {
        PoolStats::default()
    }
    /// Engine, schema and sizing facts for `gengate doctor`.
    async fn facts(&self) -> Result<DbFacts>;

    /// Users' accounts, the ledger, the audit trail and shared settings.
    fn accounts(&self) -> &dyn Accounts;

    /// The user's webhook signing secret, set to `candidate` if it has none.
    async fn webhook_secret(&self, user_id: UserId, candidate: &str) -> Result<String>;
    /// Pending webhook deliveries due by `now`, oldest first.
    async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>>;
    /// Stores the outcome of a delivery attempt (status, attempts, next try).
    async fn record_delivery(&self, delivery: &Delivery) -> Result<()>;
    /// Every delivery of a task's webhooks, oldest first.
    async fn task_deliveries(&self, task_id: &str) -> Result<Vec<Delivery>>;
}

/// Users' accounts, the ledger, the admins' audit trail and settings shared
/// by every node ([`Store::accounts`]). The money a task moves is
/// written by the store's own create and update, never through here.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// A user's account, by id.
    async fn account(&self, user_id: UserId) -> Result<Option<Account>>;
    /// A user's account, by name.
    async fn account_named(&self, name: &str) -> Result<Option<Account>>;
    /// Accounts by id, after `after` (the cursor).
    async fn accounts(&self, after: Option<UserId>, limit: u32) -> Result<Vec<Account>>;
    /// Changes a user's flags and limits; `false` when there is no such user.
    async fn patch_account(&self, user_id: UserId, patch: &AccountPatch) -> Result<bool>;
    /// Adds `amount` credits (negative: takes them) to a user's balance with
    /// its ledger entry (naming the admin, `actor`), in one transaction.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the balance would go below zero.
    async fn grant(
        &self,
        user_id: UserId,
        amount: i64,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<LedgerEntry>;
    /// Ledger entries newest first: one user's or everyone's, with ids
    /// below `before`.
    async fn ledger(
        &self,
        user_id: Option<UserId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>>;
    /// Every user whose balance is not the sum of their ledger, or whose
    /// held credits are not what their unfinished tasks hold.
    async fn ledger_drift(&self) -> Result<Vec<Drift>>;
    /// Records an admin action.
    async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        now: i64,
    ) -> Result<()>;
    /// Admin actions newest first, with ids below `before`.
    async fn audit(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>>;
    /// Credits held by tasks of `provider` sent to it since `since` (Unix
    /// ms): what its daily spending cap is checked against.
    async fn provider_spending(&self, provider: &str, since: i64) -> Result<i64>;
    /// A shared setting; with `init`, set to it first if it has none.
    async fn setting(&self, name: &str, init: Option<&str>) -> Result<Option<String>>;
    /// Sets (`Some`) or removes (`None`) a shared setting.
    async fn set_setting(&self, name: &str, value: Option<&str>) -> Result<()>;
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

/// How to open a store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// This process's id among the nodes sharing a store.
    pub node_id: String,
    /// How long a lease lasts without a heartbeat.
    pub lease: std::time::Duration,
    /// Connections at most (networked stores).
    pub pool_size: u32,
    /// How long a call waits for a pooled connection before it fails.
    pub pool_timeout: std::time::Duration,
    /// Apply pending migrations. SQLite always does; a shared store only
    /// when asked (`gengate migrate`), and otherwise refuses to open an
    /// unmigrated database, so that nodes never race to change the schema.
    pub migrate: bool,
    /// Extra CA certificates (PEM) to verify the database's TLS certificate
    /// with (`tls.ca_file`), unless the URL names its own (`sslrootcert`,
    /// `ssl-ca`). Mozilla's roots are trusted either way. Whether TLS is used
    /// and verified is the URL's `sslmode` / `ssl-mode`.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self {
            node_id: format!("node-{}-{nanos:08x}", std::process::id()),
            lease: std::time::Duration::from_secs(15),
            pool_size: 16,
            pool_timeout: std::time::Duration::from_secs(5),
            migrate: false,
            ca_file: None,
        }
    }
}

/// Picks up to `n` of `candidates` (sorted by priority, highest first, then
/// id): the highest priority first, and within a priority round-robin over
/// users in the order of their oldest task, so that one user's burst does
/// not hold back everyone else's tasks.
pub fn fair_pick(candidates: Vec<Task>, n: usize) -> Vec<Task> {
    use std::collections::VecDeque;
    let mut out = Vec::with_capacity(n.min(candidates.len()));
    let mut rest = candidates.into_iter().peekable();
    while out.len() < n {
        let Some(priority) = rest.peek().map(|t| t.priority) else {
            break;
        };
        let mut users: Vec<(UserId, VecDeque<Task>)> = Vec::new();
        while let Some(t) = rest.next_if(|t| t.priority == priority) {
            match users.iter_mut().find(|(u, _)| *u == t.user_id) {
                Some((_, q)) => q.push_back(t),
                None => users.push((t.user_id, VecDeque::from([t]))),
            }
        }
        'class: loop {
            let mut took = false;
            for (_, q) in &mut users {
                if out.len() == n {
                    break 'class;
                }
                if let Some(t) = q.pop_front() {
                    out.push(t);
                    took = true;
                }
            }
            if !took {
                break;
            }
        }
    }
    out
}
