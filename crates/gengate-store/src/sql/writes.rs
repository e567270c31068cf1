//! The transactions of the shared store's writes, each run in the caller's
//! transaction (the store commits it, and runs it again after a deadlock):
//! creates with their idempotency records, conditional task updates with
//! their webhooks, claims, takeovers, key and delivery bookkeeping.

use gengate_core::task::NewTask;
use gengate_core::{Event, Role, Task};

use super::engine::Engine;
use super::error::corrupt;
use super::queries::{
    CLAIM_CANDIDATES, DUE_DELIVERIES, INSERT_DELIVERY, LEASED, SLOTS_IN_USE, change_of, scalar,
    task_by_id, tasks, update_sql,
};
use crate::rows::{Arg, Columns, args, delivery_from, task_columns};
use crate::store::{Created, Delivery, Fence, IdempotencyKey};

/// Writes `t` as [`update_sql`] says; when it was written, queues its
/// webhook (in the same transaction as the result itself: it can be neither
/// lost nor sent for a state that was never stored) and announces it.
pub(super) async fn update_in<E: Engine>(
    c: &mut E::Connection,
    t: &Task,
    fence: Fence,
    me: &str,
    lease_ms: i64,
) -> sqlx::Result<bool> {
    let written = if E::WRITES_IN_CTE && t.status.is_terminal() {
        // The write and the end of the task's hold in one round trip.
        let (sql, args) = update_sql::<E>(t, fence, me, lease_ms, true);
        super::accounts::update_closing_in::<E>(c, t, &sql, args).await?
    } else {
        let (sql, args) = update_sql::<E>(t, fence, me, lease_ms, false);
        E::exec(c, &sql, args).await? == 1
    };
    if !written {
        return Ok(false);
    }
    if t.status.is_terminal() && !E::WRITES_IN_CTE {
        super::accounts::close_in::<E>(c, t).await?;
    }
    if t.status.is_terminal()
        && let Some(url) = &t.webhook_url
    {
        let event = format!("task.{}", t.status.as_str());
        E::exec(
            c,
            INSERT_DELIVERY,
            args![
                t.id.as_str(),
                t.user_id,
                url.as_str(),
                event,
                t.updated_at,
                t.updated_at
            ],
        )
        .await?;
    }
    // The lease after the write, as `update_sql` leaves it.
    let owner =
        (crate::store::holds_lease(t.status) && fence == Fence::Lease).then(|| me.to_owned());
    E::notify(c, &change_of(t, owner)).await?;
    Ok(true)
}

/// How one try at a create ended.
pub(super) enum Creation {
    Done(Box<Created>),
    /// The key is taken by a request with another body.
    Mismatch,
    /// The key's record changed between two statements (purged, deleted,
    /// or taken over by another request): try again.
    Changed,
    /// The user's credits or limits do not allow it.
    Refused(gengate_core::Refusal),
}

/// One try at a create, in the caller's transaction. The idempotency record
/// is inserted before the task so that concurrent requests with one key,
/// on any node, queue on its row: the first makes the task and the others,
/// once it committed, replay it.
pub(super) async fn create_in<E: Engine>(
    c: &mut E::Connection,
    new: &NewTask,
    idem: Option<&IdempotencyKey>,
) -> sqlx::Result<Creation> {
    let task = new.clone().into_task();
    if let Some(idem) = idem {
        // Not through `E::lookup`: distinct keys must stay distinct (the API
        // only takes printable ASCII keys).
        let key = idem.key.as_str();
        let inserted = E::exec(
            c,
            &E::insert_ignore(
                "idempotency_keys (user_id, idem_key, request_hash, task_id, created_at) VALUES (?, ?, ?, ?, ?)",
            ),
            args![task.user_id, key, idem.request_hash.as_str(), task.id.as_str(), task.created_at],
        )
        .await?
            == 1;
        if !inserted {
            // Read under a shared lock, and write only when the record
            // expired: the many requests waiting on one fresh record then
            // all replay it, none asking to upgrade its lock (which is
            // where InnoDB's waiters deadlock each other).
            let sql = format!(
                "SELECT request_hash, task_id, created_at FROM idempotency_keys \
                 WHERE user_id = ? AND idem_key = ?{}",
                E::SHARE_LOCK
            );
            let Some(prior) = E::row(c, &sql, args![task.user_id, key]).await? else {
                return Ok(Creation::Changed);
            };
            if prior.int(2)? >= idem.not_before {
                if prior.text(0)? != idem.request_hash {
                    return Ok(Creation::Mismatch);
                }
                let id = prior.text(1)?;
                let task = task_by_id::<E>(c, &id)
                    .await?
                    .ok_or_else(|| corrupt(format!("idempotency key names missing task {id}")))?;
                return Ok(Creation::Done(Box::new(Created {
                    task,
                    replayed: true,
                })));
            }
            // Older than `not_before`, the record counts as absent: this
            // request takes it over, unless another one just did.
            let taken_over = E::exec(
                c,
                "UPDATE idempotency_keys SET request_hash = ?, task_id = ?, created_at = ? \
                 WHERE user_id = ? AND idem_key = ? AND created_at < ?",
                args![
                    idem.request_hash.as_str(),
                    task.id.as_str(),
                    task.created_at,
                    task.user_id,
                    key,
                    idem.not_before,
                ],
            )
            .await?
                == 1;
            if !taken_over {
                return Ok(Creation::Changed);
            }
        }
    }
    if let Err(why) = super::accounts::admit_and_insert_in::<E>(c, &task, new.limits).await? {
        return Ok(Creation::Refused(why));
    }
    E::notify(c, &change_of(&task, None)).await?;
    Ok(Creation::Done(Box::new(Created {
        task,
        replayed: false,
    })))
}

/// Creates a key (and its user on first use) in the caller's transaction;
/// returns the key's id and the user's.
pub(super) async fn create_key_in<E: Engine>(
    c: &mut E::Connection,
    user_name: &str,
    role: Role,
    key_hash: &str,
    prefix: &str,
    now: i64,
) -> sqlx::Result<(i64, i64)> {
    let user_id = user_in::<E>(c, user_name, now).await?;
    let id = E::insert_id(
        c,
        "INSERT INTO api_keys (user_id, prefix, key_hash, role, created_at) VALUES (?, ?, ?, ?, ?)",
        args![user_id, prefix, key_hash, role.as_str(), now],
    )
    .await?;
    Ok((id, user_id))
}

/// The id of the user named `name`, created at `now` if needed, in the
/// caller's transaction.
pub(super) async fn user_in<E: Engine>(
    c: &mut E::Connection,
    name: &str,
    now: i64,
) -> sqlx::Result<i64> {
    E::exec(
        c,
        &E::insert_ignore("users (name, created_at) VALUES (?, ?)"),
        args![name, now],
    )
    .await?;
    scalar::<E>(c, "SELECT id FROM users WHERE name = ?", args![name]).await
}

/// Deletes a finished task with its deliveries and idempotency record, in
/// the caller's transaction.
pub(super) async fn delete_in<E: Engine>(c: &mut E::Connection, id: &str) -> sqlx::Result<bool> {
    let n = E::exec(
        c,
        "DELETE FROM tasks WHERE id = ? AND status IN ('succeeded', 'failed', 'canceled')",
        args![id],
    )
    .await?;
    if n > 0 {
        for sql in [
            "DELETE FROM webhook_deliveries WHERE task_id = ?",
            "DELETE FROM idempotency_keys WHERE task_id = ?",
        ] {
            E::exec(c, sql, args![id]).await?;
        }
    }
    Ok(n > 0)
}

/// Sets the user's webhook secret if it has none, and reads it back, in the
/// caller's transaction.
pub(super) async fn webhook_secret_in<E: Engine>(
    c: &mut E::Connection,
    user_id: i64,
    candidate: &str,
) -> sqlx::Result<String> {
    E::exec(
        c,
        "UPDATE users SET webhook_secret = ? WHERE id = ? AND webhook_secret IS NULL",
        args![candidate, user_id],
    )
    .await?;
    E::row(
        c,
        "SELECT webhook_secret FROM users WHERE id = ?",
        args![user_id],
    )
    .await?
    .ok_or(sqlx::Error::RowNotFound)?
    .text(0)
}

/// Claims in the caller's transaction (see [`crate::Store::claim_tasks`]). The
/// provider's row in `provider_locks` is locked first, so claims for one
/// provider run one at a time across every node and each one counts the
/// slots in use after the previous one committed.
pub(super) async fn claim_in<E: Engine>(
    c: &mut E::Connection,
    provider: &str,
    limit: u32,
    max: u32,
    now: i64,
    me: &str,
    lease_ms: i64,
) -> sqlx::Result<Vec<Task>> {
    let lock = "SELECT provider FROM provider_locks WHERE provider = ? FOR UPDATE";
    if E::row(c, lock, args![provider]).await?.is_none() {
        // Made outside the transaction before; only a manual delete gets here.
        E::exec(
            c,
            &E::insert_ignore("provider_locks (provider) VALUES (?)"),
            args![provider],
        )
        .await?;
        E::row(c, lock, args![provider]).await?;
    }
    let busy = scalar::<E>(c, SLOTS_IN_USE, args![provider]).await?;
    let free = i64::from(limit) - busy;
    if free <= 0 {
        return Ok(Vec::new());
    }
    let n = free.min(i64::from(max));
    // Four times as many candidates as slots, so that round-robin over users
    // has more than the oldest user's tasks to choose from.
    let candidates = tasks::<E>(c, CLAIM_CANDIDATES, args![provider, now, now, n * 4]).await?;
    let mut claimed = Vec::new();
    for t in crate::store::fair_pick(candidates, n as usize) {
        let Ok((mut next, _)) = gengate_core::apply(&t, Event::Claim, now) else {
            continue;
        };
        next.version = t.version + 1;
        if update_in::<E>(c, &next, Fence::Lease, me, lease_ms).await? {
            claimed.push(next);
        }
    }
    Ok(claimed)
}

/// Takes over expired leases in the caller's transaction.
pub(super) async fn take_over_in<E: Engine>(
    c: &mut E::Connection,
    max: u32,
    me: &str,
    lease_ms: i64,
) -> sqlx::Result<Vec<Task>> {
    let now = E::DB_NOW;
    let sql = format!(
        "SELECT {} FROM tasks WHERE {LEASED} AND (lease_until IS NULL OR lease_until <= {now}) \
         ORDER BY lease_until LIMIT ? FOR UPDATE SKIP LOCKED",
        task_columns!()
    );
    let found = tasks::<E>(c, &sql, args![max]).await?;
    if found.is_empty() {
        return Ok(found);
    }
    // One statement for the batch, not one per task: a dead node may have
    // held hundreds, and the promise is to resume them within a heartbeat.
    let marks = vec!["?"; found.len()].join(", ");
    let mut bump_args = args![me, lease_ms];
    bump_args.extend(found.iter().map(|t| Arg::from(t.id.as_str())));
    E::exec(
        c,
        &format!(
            "UPDATE tasks SET lease_owner = ?, lease_until = {now} + ?, version = version + 1, \
             updated_at = {now} WHERE id IN ({marks})"
        ),
        bump_args,
    )
    .await?;
    // As stored (their `updated_at` is the database's clock now, so the
    // change poll of a MySQL cluster sees takeovers too).
    let taken = tasks::<E>(
        c,
        &format!(
            "SELECT {} FROM tasks WHERE id IN ({marks})",
            task_columns!()
        ),
        found.iter().map(|t| Arg::from(t.id.as_str())).collect(),
    )
    .await?;
    for t in &taken {
        E::notify(c, &change_of(t, Some(me.to_owned()))).await?;
    }
    Ok(taken)
}

/// How long a node has to attempt the deliveries it read before another
/// node may (longer than any delivery attempt's timeout).
const DELIVERY_CLAIM_MS: i64 = 60_000;

/// Reads up to `limit` deliveries due by `now` and claims them for this
/// node (their next attempt moved out by [`DELIVERY_CLAIM_MS`]), in the
/// caller's transaction.
pub(super) async fn claim_deliveries_in<E: Engine>(
    c: &mut E::Connection,
    now: i64,
    limit: u32,
) -> sqlx::Result<Vec<Delivery>> {
    let sql = format!("{DUE_DELIVERIES} FOR UPDATE SKIP LOCKED");
    let due = E::rows(c, &sql, args![now, limit])
        .await?
        .iter()
        .map(delivery_from)
        .collect::<sqlx::Result<Vec<_>>>()?;
    for d in &due {
        E::exec(
            c,
            "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?",
            args![now + DELIVERY_CLAIM_MS, d.id],
        )
        .await?;
    }
    Ok(due)
}
