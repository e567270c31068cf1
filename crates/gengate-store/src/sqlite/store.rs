//! [`Store`] for [`SqliteStore`]: reads on the reader connections, writes
//! as jobs of the writer thread's next transaction (one savepoint each).
//! One node owns every task, so there are no leases and no fences.

use async_trait::async_trait;
use gengate_core::task::NewTask;
use gengate_core::{Role, Task, UserId};
use rusqlite::params;

use super::accounts::{account_in, admit_in, close_in, grant_in, ledger_in, patch_in};
use super::conn::SqliteStore;
use super::error::db_err;
use super::migrate::MIGRATIONS;
use super::queries::{
    ACTIVE_TASKS, CHANGES_SINCE, DUE_DELIVERIES, IDEMPOTENCY_RECORD, INSERT_DELIVERY,
    INSERT_IDEMPOTENCY, INSERT_TASK, OVERDUE_TASKS, STATUS_COUNTS, TASK_DELIVERIES, UPDATE_TASK,
    list_sql, task_by_id,
};
use super::rows::{all, first};
use crate::account_rows::{account_from, audit_from, drift_from};
use crate::accounts::{
    self, ACCOUNT_COLUMNS, AUDIT_COLUMNS, Account, AccountPatch, AuditEntry, Drift, LedgerEntry,
    drift_sql, spending_sql,
};
use crate::rows::{
    KEY_SELECT, args, caller_from, change_from, delivery_from, key_from, status_count_from,
    task_args, task_from, task_update_args,
};
use crate::store::{
    Accounts, Caller, Change, Created, DbFacts, Delivery, Fence, IdempotencyKey, KeyInfo,
    ListQuery, Result, StatusCount, Store, StoreError,
};

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        // Both paths: a reader connection, and the writer thread (a store that
        // can be read but not written is not ready).
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err))
            .await?;
        self.write(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err))
            .await
    }

    async fn create_key(
        &self,
        user_name: &str,
        role: Role,
        key_hash: &str,
        prefix: &str,
        now: i64,
    ) -> Result<KeyInfo> {
        let (user_name, key_hash, prefix) =
            (user_name.to_owned(), key_hash.to_owned(), prefix.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO users (name, created_at) VALUES (?1, ?2)",
                params![user_name, now],
            )
            .map_err(db_err)?;
            let user_id: i64 = c
                .query_row("SELECT id FROM users WHERE name = ?1", [&user_name], |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            c.execute(
                "INSERT INTO api_keys (user_id, prefix, key_hash, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user_id, prefix, key_hash, role.as_str(), now],
            )
            .map_err(db_err)?;
            let id = c.last_insert_rowid();
            Ok(KeyInfo {
                id,
                user_id,
                user_name,
                role,
                prefix,
                created_at: now,
                revoked_at: None,
            })
        })
        .await
    }

    async fn user_named(&self, name: &str, now: i64) -> Result<UserId> {
        let owned = name.to_owned();
        // Known users (nearly every call) cost a read, not a write.
        let known = self
            .read(move |c| {
                first(c, "SELECT id FROM users WHERE name = ?1", [&owned], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .await?;
        if let Some(id) = known {
            return Ok(id);
        }
        let name = name.to_owned();
        self.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO users (name, created_at) VALUES (?1, ?2)",
                params![name, now],
            )
            .map_err(db_err)?;
            c.query_row("SELECT id FROM users WHERE name = ?1", [&name], |r| {
                r.get(0)
            })
            .map_err(db_err)
        })
        .await
    }

    async fn find_key(&self, key_hash: &str) -> Result<Option<Caller>> {
        let key_hash = key_hash.to_owned();
        self.read(move |c| {
            let sql = format!("{KEY_SELECT} WHERE k.key_hash = ?1 AND k.revoked_at IS NULL");
            first(c, &sql, [&key_hash], |r| caller_from(r))
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.read(|c| {
            all(c, &format!("{KEY_SELECT} ORDER BY k.id"), [], |r| {
                key_from(r)
            })
        })
        .await
    }

    async fn revoke_key(&self, id_or_prefix: &str, now: i64) -> Result<bool> {
        let needle = id_or_prefix.to_owned();
        self.write(move |c| {
            let by_id = needle.parse::<i64>().ok();
            let n = c
                .execute(
                    "UPDATE api_keys SET revoked_at = ?1 WHERE revoked_at IS NULL AND (id = ?2 OR prefix = ?3)",
                    params![now, by_id, needle],
                )
                .map_err(db_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn count_keys(&self) -> Result<u64> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM api_keys", [], |r| r.get(0))
                .map_err(db_err)
        })
        .await
    }

    async fn create_task(
        &self,
        new: NewTask,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Created> {
        self.write(move |c| {
            if let Some(idem) = &idempotency {
                let prior: Option<(String, String, i64)> =
                    first(c, IDEMPOTENCY_RECORD, params![new.user_id, idem.key], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
                match prior {
                    Some((hash, task_id, created)) if created >= idem.not_before => {
                        if hash != idem.request_hash {
                            return Err(StoreError::IdempotencyMismatch);
                        }
                        let task = task_by_id(c, &task_id)?.ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "idempotency key names missing task {task_id}"
                            ))
                        })?;
                        return Ok(Created {
                            task,
                            replayed: true,
                        });
                    }
                    Some(_) => {
                        c.execute(
                            "DELETE FROM idempotency_keys WHERE user_id = ?1 AND key = ?2",
                            params![new.user_id, idem.key],
                        )
                        .map_err(db_err)?;
                    }
                    None => {}
                }
            }
            let limits = new.limits;
            let task = new.into_task();
            admit_in(c, &task, limits)?;
            c.prepare_cached(INSERT_TASK)
                .and_then(|mut st| st.execute(rusqlite::params_from_iter(task_args(&task))))
                .map_err(db_err)?;
            if let Some(idem) = &idempotency {
                c.prepare_cached(INSERT_IDEMPOTENCY)
                    .and_then(|mut st| {
                        st.execute(params![
                            task.user_id,
                            idem.key,
                            idem.request_hash,
                            task.id,
                            task.created_at
                        ])
                    })
                    .map_err(db_err)?;
            }
            Ok(Created {
                task,
                replayed: false,
            })
        })
        .await
    }

    async fn get_task(&self, id: &str) -> Result<Option<Task>> {
        let id = id.to_owned();
        self.read(move |c| task_by_id(c, &id)).await
    }

    async fn list_tasks(&self, q: &ListQuery) -> Result<Vec<Task>> {
        let q = q.clone();
        self.read(move |c| {
            let (sql, params) = list_sql(&q);
            all(c, &sql, rusqlite::params_from_iter(params.iter()), |r| {
                task_from(r)
            })
        })
        .await
    }

    async fn update_task(&self, t: &Task, _fence: Fence) -> Result<bool> {
        let t = t.clone();
        self.write(move |c| {
            let n = c
                .prepare_cached(UPDATE_TASK)
                .and_then(|mut st| {
                    let mut args = task_update_args(&t);
                    args.extend(args![t.id.as_str(), t.version - 1]);
                    st.execute(rusqlite::params_from_iter(args))
                })
                .map_err(db_err)?;
            // The result's webhook is queued in the same transaction as the
            // result itself: it can be neither lost nor sent for a state that
            // was never stored.
            if n == 1
                && t.status.is_terminal()
                && let Some(url) = &t.webhook_url
            {
                let event = format!("task.{}", t.status.as_str());
                c.prepare_cached(INSERT_DELIVERY)
                    .and_then(|mut st| {
                        st.execute(params![t.id, t.user_id, url, event, t.updated_at])
                    })
                    .map_err(db_err)?;
            }
            if n == 1 && t.status.is_terminal() {
                close_in(c, &t)?;
            }
            Ok(n == 1)
        })
        .await
    }

    fn accounts(&self) -> &dyn Accounts {
        self
    }

    async fn webhook_secret(&self, user_id: i64, candidate: &str) -> Result<String> {
        let candidate = candidate.to_owned();
        self.write(move |c| {
            c.execute(
                "UPDATE users SET webhook_secret = ?2 WHERE id = ?1 AND webhook_secret IS NULL",
                params![user_id, candidate],
            )
            .map_err(db_err)?;
            c.query_row(
                "SELECT webhook_secret FROM users WHERE id = ?1",
                [user_id],
                |r| r.get(0),
            )
            .map_err(db_err)
        })
        .await
    }

    async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<Delivery>> {
        self.read(move |c| all(c, DUE_DELIVERIES, params![now, limit], |r| delivery_from(r)))
            .await
    }

    async fn record_delivery(&self, d: &Delivery) -> Result<()> {
        let d = d.clone();
        self.write(move |c| {
            c.execute(
                "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_status = ?5, \
                 last_error = ?6, delivered_at = ?7 WHERE id = ?1",
                params![d.id, d.status, d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.delivered_at],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn task_deliveries(&self, task_id: &str) -> Result<Vec<Delivery>> {
        let task_id = task_id.to_owned();
        self.read(move |c| all(c, TASK_DELIVERIES, [task_id], |r| delivery_from(r)))
            .await
    }

    async fn overdue_tasks(&self, now: i64, limit: u32) -> Result<Vec<Task>> {
        self.read(move |c| all(c, OVERDUE_TASKS, params![now, limit], |r| task_from(r)))
            .await
    }

    async fn changes_since(&self, since: i64, limit: u32) -> Result<Vec<(Change, i64)>> {
        self.read(move |c| all(c, CHANGES_SINCE, params![since, limit], |r| change_from(r)))
            .await
    }

    async fn active_tasks(&self) -> Result<Vec<Task>> {
        self.read(|c| all(c, ACTIVE_TASKS, [], |r| task_from(r)))
            .await
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        self.read(|c| all(c, STATUS_COUNTS, [], |r| status_count_from(r)))
            .await
    }

    async fn delete_task(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            // One job is one savepoint: all three deletes or none.
            let n = c
                .execute(
                    "DELETE FROM tasks WHERE id = ?1 AND status IN ('succeeded', 'failed', 'canceled')",
                    [&id],
                )
                .map_err(db_err)?;
            if n > 0 {
                c.execute("DELETE FROM webhook_deliveries WHERE task_id = ?1", [&id])
                    .map_err(db_err)?;
                c.execute("DELETE FROM idempotency_keys WHERE task_id = ?1", [&id])
                    .map_err(db_err)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn facts(&self) -> Result<DbFacts> {
        self.read(|c| {
            let version: String = c
                .query_row("SELECT sqlite_version()", [], |r| r.get(0))
                .map_err(db_err)?;
            let schema: i64 = c
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    [],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            Ok(DbFacts {
                engine: format!("SQLite {version}"),
                schema_version: schema,
                latest_version: MIGRATIONS.len() as i64,
                now_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
                ..Default::default()
            })
        })
        .await
    }

    async fn purge_idempotency(&self, before: i64) -> Result<u64> {
        self.write(move |c| {
            let n = c
                .execute(
                    "DELETE FROM idempotency_keys WHERE created_at < ?1",
                    [before],
                )
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }
}

#[async_trait]
impl Accounts for SqliteStore {
    async fn account(&self, user_id: UserId) -> Result<Option<Account>> {
        self.read(move |c| account_in(c, user_id)).await
    }

    async fn account_named(&self, name: &str) -> Result<Option<Account>> {
        let name = name.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE name = ?1");
            first(c, &sql, [name], |r| account_from(r))
        })
        .await
    }

    async fn accounts(&self, after: Option<UserId>, limit: u32) -> Result<Vec<Account>> {
        self.read(move |c| {
            let sql =
                format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE id > ?1 ORDER BY id LIMIT ?2");
            all(c, &sql, params![after.unwrap_or(0), limit], |r| {
                account_from(r)
            })
        })
        .await
    }

    async fn patch_account(&self, user_id: UserId, patch: &AccountPatch) -> Result<bool> {
        let patch = patch.clone();
        self.write(move |c| patch_in(c, user_id, &patch)).await
    }

    async fn grant(
        &self,
        user_id: UserId,
        amount: i64,
        reason: &str,
        actor: &str,
        now: i64,
    ) -> Result<LedgerEntry> {
        let (reason, actor) = (reason.to_owned(), actor.to_owned());
        self.write(move |c| grant_in(c, user_id, amount, &reason, &actor, now))
            .await
    }

    async fn ledger(
        &self,
        user_id: Option<UserId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>> {
        self.read(move |c| ledger_in(c, user_id, before, limit))
            .await
    }

    async fn ledger_drift(&self) -> Result<Vec<Drift>> {
        self.read(|c| all(c, &drift_sql("BIGINT"), [], |r| drift_from(r)))
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
        self.write(move |c| {
            c.prepare_cached(accounts::sql::INSERT_AUDIT)
                .and_then(|mut st| st.execute(rusqlite::params_from_iter(row)))
                .map_err(db_err)
                .map(drop)
        })
        .await
    }

    async fn audit(&self, before: Option<i64>, limit: u32) -> Result<Vec<AuditEntry>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE (?1 IS NULL OR id < ?1) \
                 ORDER BY id DESC LIMIT ?2"
            );
            all(c, &sql, params![before, limit], |r| audit_from(r))
        })
        .await
    }

    async fn provider_spending(&self, provider: &str, since: i64) -> Result<i64> {
        let provider = provider.to_owned();
        self.read(move |c| {
            c.query_row(&spending_sql("BIGINT"), params![provider, since], |r| {
                r.get(0)
            })
            .map_err(db_err)
        })
        .await
    }

    async fn setting(&self, name: &str, init: Option<&str>) -> Result<Option<String>> {
        let name = name.to_owned();
        let Some(init) = init.map(str::to_owned) else {
            return self
                .read(move |c| {
                    first(
                        c,
                        "SELECT value FROM settings WHERE name = ?1",
                        [name],
                        |r| r.get(0),
                    )
                })
                .await;
        };
        self.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO settings (name, value) VALUES (?1, ?2)",
                params![name, init],
            )
            .map_err(db_err)?;
            first(
                c,
                "SELECT value FROM settings WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn set_setting(&self, name: &str, value: Option<&str>) -> Result<()> {
        let (name, value) = (name.to_owned(), value.map(str::to_owned));
        self.write(move |c| {
            match value {
                Some(v) => c.execute(
                    "INSERT INTO settings (name, value) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    params![name, v],
                ),
                None => c.execute("DELETE FROM settings WHERE name = ?1", [name]),
            }
            .map_err(db_err)
            .map(drop)
        })
        .await
    }
}
