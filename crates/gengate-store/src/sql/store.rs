//! [`SqlStore`]: the [`Store`] of the shared backends, over [`Engine`].
//! Each call takes a pooled connection and runs one statement, or one of
//! the transactions of [`super::writes`], again when the database rolled it
//! back to break a deadlock. Lease times are the database's clock, so nodes
//! whose clocks disagree still agree on who holds what.

use async_trait::async_trait;
use gengate_core::task::NewTask;
use gengate_core::{Role, Task, TaskId, UserId};
use sqlx::Database;
use sqlx::pool::PoolOptions;
use tokio::sync::mpsc;

use super::accounts::grant_in;
use super::engine::Engine;
use super::error::{TRIES, db_err, pause, retryable};
use super::migrate::{latest, migrate_with, newer_schema, schema_version};
use super::pool::{TimedPool, connect_options};
use super::queries::{
    ACTIVE_TASKS, LEASED, OVERDUE_TASKS, RENEW_BATCH, TASK_DELIVERIES, list_sql, scalar, task_by_id,
};
use super::writes::{
    Creation, claim_deliveries_in, claim_in, create_in, create_key_in, delete_in, take_over_in,
    update_in, user_in, webhook_secret_in,
};
use crate::account_rows::{account_from, audit_from, drift_from, ledger_from, patch_statement};
use crate::accounts::{
    self, ACCOUNT_COLUMNS, AUDIT_COLUMNS, Account, AccountPatch, AuditEntry, Drift, LEDGER_COLUMNS,
    LedgerEntry, drift_sql, spending_sql,
};
use crate::rows::{
    Arg, Columns, KEY_SELECT, args, caller_from, change_from, delivery_from, key_from, node_from,
    status_count_from, task_from,
};
use crate::store::{
    Accounts, Caller, Change, Created, DbFacts, Delivery, Fence, IdempotencyKey, KeyInfo,
    ListQuery, OpenOptions, PoolStats, Result, StatusCount, Store, StoreError,
};

/// A store in a database that several gengate nodes share.
pub(crate) struct SqlStore<E: Engine> {
    pool: TimedPool<E>,
    node_id: String,
    lease_ms: i64,
}

impl<E: Engine> SqlStore<E> {
    /// Sets `set` on this node's leases of the tasks `ids` (sorted) that
    /// match `extra`, by id in batches: one UPDATE ranging over the lease
    /// index while it moves entries in it deadlocks with other nodes doing
    /// the same (InnoDB). Returns the rows matched (both drivers report
    /// matched rows; sqlx asks MySQL for CLIENT_FOUND_ROWS).
    async fn update_leases_by_id(
        &self,
        ids: &[String],
        set: &str,
        extra: &str,
        set_args: Vec<Arg>,
    ) -> Result<u64> {
        let mut matched = 0;
        for batch in ids.chunks(RENEW_BATCH) {
            // Padded to a power of two with the last id, so that a few
            // statement texts serve every batch size.
            let size = batch.len().next_power_of_two();
            let marks = vec!["?"; size].join(", ");
            let mut args = set_args.clone();
            args.push(Arg::from(self.node_id.as_str()));
            args.extend(
                batch
                    .iter()
                    .chain(std::iter::repeat(&batch[batch.len() - 1]))
                    .take(size)
                    .map(|id| Arg::from(id.as_str())),
            );
            matched += self
                .exec(
                    &format!(
                        "UPDATE tasks SET {set} WHERE lease_owner = ? {extra} AND {LEASED} AND id IN ({marks})"
                    ),
                    args,
                )
                .await?;
        }
        Ok(matched)
    }

    /// Connects, migrating first when `opts.migrate` says so; otherwise
    /// refuses a database whose schema is not the one this build knows.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a bad URL or a schema mismatch,
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    pub(crate) async fn open(url: &str, opts: &OpenOptions) -> Result<Self> {
        let options = connect_options::<E>(url, opts.ca_file.as_deref())?;
        if opts.migrate {
            migrate_with::<E>(&options).await?;
        }
        let pool = PoolOptions::<E>::new()
            .max_connections(opts.pool_size.max(1))
            .acquire_timeout(opts.pool_timeout)
            .after_connect(|c, _| {
                Box::pin(async move {
                    for statement in E::SESSION_SETUP {
                        E::exec(c, statement, Vec::new()).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db_err)?;
        let store = Self {
            pool: TimedPool::new(pool),
            node_id: opts.node_id.clone(),
            lease_ms: i64::try_from(opts.lease.as_millis()).unwrap_or(i64::MAX),
        };
        let version = {
            let mut c = store.pool.acquire().await?;
            schema_version::<E>(&mut c).await.map_err(db_err)?
        };
        let latest = latest::<E>();
        if version > latest {
            return Err(newer_schema::<E>(version));
        }
        if version < latest {
            return Err(StoreError::Config(format!(
                "the {} database is at schema version {version} and this build of gengate needs \
                 {latest}: run `gengate migrate` first",
                <E as Database>::NAME
            )));
        }
        Ok(store)
    }

    /// The rows a statement selects, each read with `decode`.
    async fn read<T>(
        &self,
        sql: &str,
        args: Vec<Arg>,
        decode: impl Fn(&E::Row) -> sqlx::Result<T> + Send,
    ) -> Result<Vec<T>> {
        let mut c = self.pool.acquire().await?;
        let rows = E::rows(&mut c, sql, args).await.map_err(db_err)?;
        rows.iter()
            .map(decode)
            .collect::<sqlx::Result<_>>()
            .map_err(db_err)
    }

    /// Runs one statement (its own transaction), again after a deadlock.
    async fn exec(&self, sql: &str, args: Vec<Arg>) -> Result<u64> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut c = self.pool.acquire().await?;
            match E::exec(&mut c, sql, args.clone()).await {
                Err(e) if retryable(&e) && attempt < TRIES => pause(attempt).await,
                outcome => return outcome.map_err(db_err),
            }
        }
    }
}

/// Runs `$body`, an expression of the connection `$c` that returns a
/// future of a `sqlx::Result`, in a transaction: committed when it succeeds,
/// run again when the database rolled it back for a deadlock.
macro_rules! in_tx {
    ($store:expr, |$c:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = $store.pool.acquire().await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db_err)?;
            let outcome = {
                let $c: &mut E::Connection = &mut tx;
                $body.await
            };
            let outcome = match outcome {
                Ok(v) => tx.commit().await.map(|()| v),
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if retryable(&e) && attempt < TRIES => pause(attempt).await,
                outcome => break outcome.map_err(db_err),
            }
        }
    }};
}

#[async_trait]
impl<E: Engine> Store for SqlStore<E> {
    async fn ping(&self) -> Result<()> {
        self.exec("SELECT 1", args![]).await.map(drop)
    }

    async fn create_key(
        &self,
        user_name: &str,
        role: Role,
        key_hash: &str,
        prefix: &str,
        now: i64,
    ) -> Result<KeyInfo> {
        let (id, user_id) = in_tx!(self, |c| create_key_in::<E>(
            c, user_name, role, key_hash, prefix, now
        ))?;
        Ok(KeyInfo {
            id,
            user_id,
            user_name: user_name.to_owned(),
            role,
            prefix: prefix.to_owned(),
            created_at: now,
            revoked_at: None,
        })
    }

    async fn user_named(&self, name: &str, now: i64) -> Result<UserId> {
        // Known users (nearly every call) cost a read, not a transaction.
        let known = self
            .read("SELECT id FROM users WHERE name = ?", args![name], |r| {
                r.int(0)
            })
            .await?;
        match known.first() {
            Some(&id) => Ok(id),
            None => in_tx!(self, |c| user_in::<E>(c, name, now)),
        }
    }

    async fn find_key(&self, key_hash: &str) -> Result<Option<Caller>> {
        let mut c = self.pool.acquire().await?;
        let sql = format!("{KEY_SELECT} WHERE k.key_hash = ? AND k.revoked_at IS NULL");
        let row = E::row(&mut c, &sql, args![E::lookup(key_hash)])
            .await
            .map_err(db_err)?;
        row.as_ref().map(caller_from).transpose().map_err(db_err)
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.read(&format!("{KEY_SELECT} ORDER BY k.id"), args![], key_from)
            .await
    }

    async fn revoke_key(&self, id_or_prefix: &str, now: i64) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND (id = ? OR prefix = ?)",
                args![now, id_or_prefix.parse::<i64>().ok(), E::lookup(id_or_prefix)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn count_keys(&self) -> Result<u64> {
        let mut c = self.pool.acquire().await?;
        let n = scalar::<E>(&mut c, "SELECT COUNT(*) FROM api_keys", args![])
            .await
            .map_err(db_err)?;
        Ok(n.unsigned_abs())
    }

    async fn create_task(
        &self,
        new: NewTask,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created> {
        // Concurrent requests with one key can still deadlock on its row
        // (when its first writer rolls back, InnoDB's waiters all hold
        // shared locks and ask to insert): such a try runs again.
        for attempt in 1..=TRIES {
            if attempt > 1 {
                pause(attempt - 1).await;
            }
            let mut conn = self.pool.acquire().await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(db_err)?;
            let last = attempt == TRIES;
            match create_in::<E>(&mut tx, &new, idempotency.as_ref()).await {
                Ok(Creation::Done(created)) => match tx.commit().await {
                    Ok(()) => return Ok(*created),
                    Err(e) if retryable(&e) && !last => {}
                    Err(e) => return Err(db_err(e)),
                },
                Ok(Creation::Mismatch) => {
                    let _ = tx.rollback().await;
                    return Err(StoreError::IdempotencyMismatch);
                }
                Ok(Creation::Refused(why)) => {
                    let _ = tx.rollback().await;
                    return Err(StoreError::Refused(why));
                }
                Ok(Creation::Changed) if !last => {}
                Ok(Creation::Changed) => {
                    return Err(StoreError::Unavailable(
                        "the idempotency record kept changing during the request; try again".into(),
                    ));
                }
                Err(e) if retryable(&e) && !last => {
                    tracing::debug!(error = %e, "create_task runs again after a deadlock");
                }
                Err(e) => return Err(db_err(e)),
            }
        }
        unreachable!("the last try returns")
    }

    async fn get_task(&self, id: &str) -> Result<Option<Task>> {
        let mut c = self.pool.acquire().await?;
        task_by_id::<E>(&mut c, id).await.map_err(db_err)
    }

    async fn list_tasks(&self, q: &ListQuery) -> Result<Vec<Task>> {
        let (sql, args) = list_sql::<E>(q);
        self.read(&sql, args, task_from).await
    }

    async fn update_task(&self, t: &Task, fence: Fence) -> Result<bool> {
        in_tx!(self, |c| update_in::<E>(
            c,
            t,
            fence,
            &self.node_id,
            self.lease_ms
        ))
    }

    async fn active_tasks(&self) -> Result<Vec<Task>> {
        self.read(ACTIVE_TASKS, args![], task_from).await
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        self.read(
            "SELECT provider, status, COUNT(*) FROM tasks GROUP BY provider, status",
            args![],
            status_count_from,
        )
        .await
    }

    async fn delete_task(&self, id: &str) -> Result<bool> {
        let id = E::lookup(id);
        in_tx!(self, |c| delete_in::<E>(c, &id))
    }

    async fn purge_idempotency(&self, before: i64) -> Result<u64> {
        self.exec(
            "DELETE FROM idempotency_keys WHERE created_at < ?",
            args![before],
        )
        .await
    }

    fn shared(&self) -> bool {
        true
    }

    fn node_id(&self) -> &str {
        &self.node_id
    }

    async fn claim_tasks(
        &self,
        provider: &str,
        limit: u32,
        max: u32,
        now: i64,
    ) -> Result<Vec<Task>> {
        if limit == 0 || max == 0 {
            return Ok(Vec::new());
        }
        // The lock row is made in a transaction of its own: made inside the
        // claim, the first claims of two nodes would deadlock on it.
        self.exec(
            &E::insert_ignore("provider_locks (provider) VALUES (?)"),
            args![provider],
        )
        .await?;
        in_tx!(self, |c| claim_in::<E>(
            c,
            provider,
            limit,
            max,
            now,
            &self.node_id,
            self.lease_ms
        ))
    }

    async fn renew_leases(&self, now: i64, held: &[TaskId]) -> Result<u64> {
        self.exec(&E::upsert_node(), args![self.node_id.as_str(), now])
            .await?;
        let mut ids = held.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let db_now = E::DB_NOW;
        self.update_leases_by_id(
            &ids,
            &format!("lease_until = {db_now} + ?"),
            &format!("AND lease_until > {db_now}"),
            args![self.lease_ms],
        )
        .await
    }

    async fn leased_here(&self) -> Result<Vec<TaskId>> {
        self.read(
            &format!("SELECT id FROM tasks WHERE {LEASED} AND lease_owner = ? ORDER BY id"),
            args![self.node_id.as_str()],
            |r| r.text(0),
        )
        .await
    }

    async fn release_leases(&self) -> Result<u64> {
        let ids = self.leased_here().await?;
        self.update_leases_by_id(&ids, "lease_until = 0", "", args![])
            .await
    }

    async fn take_over(&self, max: u32) -> Result<Vec<Task>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        in_tx!(self, |c| take_over_in::<E>(
            c,
            max,
            &self.node_id,
            self.lease_ms
        ))
    }

    async fn overdue_tasks(&self, now: i64, limit: u32) -> Result<Vec<Task>> {
        self.read(OVERDUE_TASKS, args![now, limit], task_from).await
    }

    async fn changes_since(&self, since: i64, limit: u32) -> Result<Vec<(Change, i64)>> {
        self.read(
            "SELECT id, version, user_id, status, lease_owner, updated_at FROM tasks \
             WHERE updated_at >= ? ORDER BY updated_at LIMIT ?",
            args![since, limit],
            change_from,
        )
        .await
    }

    async fn subscribe(&self) -> Result<Option<mpsc::Receiver<Change>>> {
        E::subscribe(&self.pool.pool).await
    }

    fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    async fn facts(&self) -> Result<DbFacts> {
        let mut c = self.pool.acquire().await?;
        let server = E::server_facts(&mut c).await.map_err(db_err)?;
        let schema_version = schema_version::<E>(&mut c).await.map_err(db_err)?;
        let now_ms = scalar::<E>(&mut c, &format!("SELECT {}", E::DB_NOW), args![])
            .await
            .map_err(db_err)?;
        let rows = E::rows(
            &mut c,
            "SELECT id, seen_at, clock_offset_ms, started_at FROM nodes WHERE seen_at >= ? ORDER BY id",
            args![now_ms - 60_000],
        )
        .await
        .map_err(db_err)?;
        let nodes = rows
            .iter()
            .map(node_from)
            .collect::<sqlx::Result<_>>()
            .map_err(db_err)?;
        Ok(DbFacts {
            engine: server.engine,
            schema_version,
            latest_version: latest::<E>(),
            max_connections: server.max_connections,
            memory: server.memory,
            now_ms,
            nodes,
        })
    }

    async fn webhook_secret(&self, user_id: i64, candidate: &str) -> Result<String> {
        in_tx!(self, |c| webhook_secret_in::<E>(c, user_id, candidate))
    }

    fn accounts(&self) -> &dyn Accounts {
        self
    }

    async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        // Every node sends from the same outbox: what one node reads is
        // claimed (its next attempt moved out by DELIVERY_CLAIM_MS) in the
        // same transaction, so no other node sends it meanwhile. If the
        // node dies mid-send, the delivery comes due again after the claim.
        in_tx!(self, |c| claim_deliveries_in::<E>(c, now, limit))
    }

    async fn record_delivery(&self, d: &Delivery) -> Result<()> {
        self.exec(
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status = ?, \
             last_error = ?, delivered_at = ? WHERE id = ?",
            args![
                d.status.as_str(),
                d.attempts,
                d.next_attempt_at,
                d.last_status.map(i64::from),
                d.last_error.clone(),
                d.delivered_at,
                d.id,
            ],
        )
        .await
        .map(drop)
    }

    async fn task_deliveries(&self, task_id: &str) -> Result<Vec<Delivery>> {
        self.read(TASK_DELIVERIES, args![E::lookup(task_id)], delivery_from)
            .await
    }
}

#[async_trait]
impl<E: Engine> Accounts for SqlStore<E> {
    async fn account(&self, user_id: UserId) -> Result<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE id = ?");
        Ok(self.read(&sql, args![user_id], account_from).await?.pop())
    }

    async fn account_named(&self, name: &str) -> Result<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE name = ?");
        Ok(self.read(&sql, args![name], account_from).await?.pop())
    }

    async fn accounts(&self, after: Option<UserId>, limit: u32) -> Result<Vec<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE id > ? ORDER BY id LIMIT ?");
        self.read(&sql, args![after.unwrap_or(0), limit], account_from)
            .await
    }

    async fn patch_account(&self, user_id: UserId, patch: &AccountPatch) -> Result<bool> {
        match patch_statement(patch, user_id) {
            // MySQL counts only rows it changed: look the user up instead.
            Some((sql, args)) => {
                self.exec(&sql, args).await?;
                Ok(self.account(user_id).await?.is_some())
            }
            None => Ok(self.account(user_id).await?.is_some()),
        }
    }

    async fn grant(
        &self,
        user_id: UserId,
        amount: i64,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<LedgerEntry> {
        in_tx!(self, |c| grant_in::<E>(
            c, user_id, amount, reason, actor, now
        ))?
        .ok_or_else(|| StoreError::Conflict {
            constraint: "balance".into(),
        })
    }

    async fn ledger(
        &self,
        user_id: Option<UserId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>> {
        let mut filter = Vec::new();
        let mut values = Vec::new();
        if let Some(u) = user_id {
            filter.push("user_id = ?");
            values.push(Arg::Int(u));
        }
        if let Some(b) = before {
            filter.push("id < ?");
            values.push(Arg::Int(b));
        }
        let filter = if filter.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", filter.join(" AND "))
        };
        values.push(Arg::from(limit));
        let sql = format!("SELECT {LEDGER_COLUMNS} FROM ledger {filter} ORDER BY id DESC LIMIT ?");
        self.read(&sql, values, ledger_from).await
    }

    async fn ledger_drift(&self) -> Result<Vec<Drift>> {
        self.read(&drift_sql(E::INT_CAST), args![], drift_from)
            .await
    }

    async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        now: i64,
    ) -> Result<()> {
        let row = args![actor, action, target, detail, now];
        self.exec(accounts::sql::INSERT_AUDIT, row).await.map(drop)
    }

    async fn audit(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?");
        self.read(&sql, args![before.unwrap_or(i64::MAX), limit], audit_from)
            .await
    }

    async fn provider_spending(&self, provider: &str, since: i64) -> Result<i64> {
        let sql = spending_sql(E::INT_CAST);
        let spent = self
            .read(&sql, args![provider, since], |r| r.int(0))
            .await?;
        Ok(spent.first().copied().unwrap_or(0))
    }

    async fn setting(&self, name: &str, init: Option<&str>) -> Result<Option<String>> {
        let read = "SELECT value FROM settings WHERE name = ?";
        if let Some(init) = init {
            let insert = E::insert_ignore("settings (name, value) VALUES (?, ?)");
            self.exec(&insert, args![name, init]).await?;
        }
        Ok(self.read(read, args![name], |r| r.text(0)).await?.pop())
    }

    async fn set_setting(&self, name: &str, value: Option<&str>) -> Result<()> {
        in_tx!(self, |c| async move {
            E::exec(c, "DELETE FROM settings WHERE name = ?", args![name]).await?;
            if let Some(v) = value {
                E::exec(
                    c,
                    "INSERT INTO settings (name, value) VALUES (?, ?)",
                    args![name, v],
                )
                .await?;
            }
            Ok::<_, sqlx::Error>(())
        })
    }
}
