//! The account writes of [`crate::accounts`] in the caller's transaction
//! on a shared store: a create's admission and hold (under the user's row
//! lock, so concurrent creates on any node are counted one after another),
//! a finished task's settlement or refund, and an admin's grant. Each is as
//! few round trips as the engine allows: they are on every create's and
//! every finished task's path.

use gengate_core::{Limits, Refusal, Task};

use super::engine::Engine;
use super::error::corrupt;
use super::queries::INSERT_TASK;
use super::queries::scalar;
use crate::account_rows::{
    account_from, admit_args, close_entry, grant_entry, hold_entry, ledger_from,
};
use crate::accounts::{
    ACCOUNT_COLUMNS, Account, LEDGER_COLUMNS, LedgerEntry, MINUTE_US, admit, closing, day_start,
    sql,
};
use crate::rows::{Arg, args, task_args};

/// Admits a create of `task` (counted, its price held) and inserts it, or
/// says why not. On PostgreSQL in one statement: the counters, the hold and
/// the task are written first and the rules checked on the row as it was
/// (a refusal rolls the whole create back); on MySQL the row is read under
/// lock, checked, then written.
pub(super) async fn admit_and_insert_in<E: Engine>(
    c: &mut E::Connection,
    task: &Task,
    limits: Limits,
) -> sqlx::Result<Result<(), Refusal>> {
    let price = task.billing.map_or(0, |b| b.held);
    let missing = || corrupt(format!("task of missing user {}", task.user_id));
    let (account, written) = if E::WRITES_IN_CTE {
        let today = day_start(task.created_at);
        let now_us = task.created_at.saturating_mul(1000);
        // The bucket as `admit` moves it, with the user's own limit or the
        // default.
        let per_minute = format!(
            "COALESCE(creates_per_minute, {})",
            limits.creates_per_minute
        );
        let sql = format!(
            "WITH u AS (UPDATE users SET active = active + 1, balance = balance - ?, \
             held = held + ?, day_count = CASE WHEN day_start = ? THEN day_count + 1 ELSE 1 END, \
             day_start = ?, rate_tat = CASE WHEN {per_minute} = 0 THEN 0 \
             ELSE GREATEST(rate_tat, ?) + GREATEST({MINUTE_US} / {per_minute}, 1) END \
             WHERE id = ? RETURNING {ACCOUNT_COLUMNS}), \
             l AS ({INSERT_LEDGER_FROM} SELECT id, ?, 'hold', ?, balance, NULL, NULL, ? FROM u WHERE ?), \
             t AS ({INSERT_TASK}) \
             SELECT {ACCOUNT_COLUMNS} FROM u"
        );
        let mut a = args![
            price,
            price,
            today,
            today,
            now_us,
            task.user_id,
            task.id.as_str(),
            -price,
            task.created_at,
            price > 0
        ];
        a.extend(task_args(task));
        let after = account_from(&E::row(c, &sql, a).await?.ok_or_else(missing)?)?;
        // The row as it was before this create, as far as `admit` can tell:
        // the bucket's new time is the later of its old one and now, plus
        // one interval, so that later one is what it was.
        let per_minute = after.limits.over(limits).creates_per_minute;
        let before = Account {
            active: after.active - 1,
            balance: after.balance + price,
            held: after.held - price,
            day_count: after.day_count - 1,
            rate_tat: match per_minute {
                0 => after.rate_tat,
                n => after.rate_tat - (MINUTE_US / i64::from(n)).max(1),
            },
            ..after
        };
        (before, Some(after.rate_tat))
    } else {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE id = ? FOR UPDATE");
        let row = E::row(c, &sql, args![task.user_id])
            .await?
            .ok_or_else(missing)?;
        (account_from(&row)?, None)
    };
    let ok = match admit(&account, limits, price, task.created_at) {
        Ok(ok) => ok,
        Err(why) => return Ok(Err(why)),
    };
    if let Some(written) = written {
        debug_assert_eq!(written, ok.rate_tat, "the bucket moved as admit says");
        return Ok(Ok(()));
    }
    E::exec(c, sql::ADMIT, admit_args(&ok, price, task.user_id)).await?;
    if price > 0 {
        let entry = hold_entry(task, account.balance, price);
        E::exec(c, sql::INSERT_LEDGER, entry).await?;
    }
    E::exec(c, INSERT_TASK, task_args(task)).await?;
    Ok(Ok(()))
}

/// The start of [`sql::INSERT_LEDGER`], for an `INSERT … SELECT`.
const INSERT_LEDGER_FROM: &str =
    "INSERT INTO ledger (user_id, task_id, kind, amount, balance, actor, reason, created_at)";

/// Writes the final state of `t` with `update` (its conditional update,
/// setting `closed`) and, in the same statement, ends its hold and frees
/// its place unless its end was accounted for already (a recopied task's);
/// whether the update was written. PostgreSQL only.
pub(super) async fn update_closing_in<E: Engine>(
    c: &mut E::Connection,
    t: &Task,
    update: &str,
    update_args: Vec<Arg>,
) -> sqlx::Result<bool> {
    let (entry, held) = closing(t);
    let back = entry.map_or(0, |(_, back)| back);
    let kind = entry.map_or("settle", |(k, _)| k.as_str());
    // `o` reads the row as the statement found it; a concurrent change
    // since would fail the update's version check.
    let sql = format!(
        "WITH o AS (SELECT closed AS was FROM tasks WHERE id = ?), \
         w AS ({update} RETURNING user_id), \
         u AS (UPDATE users SET active = active - 1, held = held - ?, balance = balance + ? \
               FROM w, o WHERE users.id = w.user_id AND NOT o.was RETURNING users.id, users.balance), \
         l AS ({INSERT_LEDGER_FROM} SELECT id, ?, ?, ?, balance, NULL, NULL, ? FROM u WHERE ?) \
         SELECT COUNT(*) FROM w"
    );
    let mut a = args![t.id.as_str()];
    a.extend(update_args);
    a.extend(args![
        held,
        back,
        t.id.as_str(),
        kind,
        back,
        t.updated_at,
        entry.is_some()
    ]);
    Ok(scalar::<E>(c, &sql, a).await? == 1)
}

/// Ends a finished task's hold and frees its place, once: whichever node
/// or retry writes its final state first. MySQL: one statement flips
/// `closed` and frees the place, and a priced task's entry follows.
pub(super) async fn close_in<E: Engine>(c: &mut E::Connection, t: &Task) -> sqlx::Result<()> {
    let (entry, held) = closing(t);
    let back = entry.map_or(0, |(_, back)| back);
    let sql = "UPDATE tasks t JOIN users u ON u.id = t.user_id SET t.closed = TRUE, \
               u.active = u.active - 1, u.held = u.held - ?, u.balance = u.balance + ? \
               WHERE t.id = ? AND NOT t.closed";
    if E::exec(c, sql, args![held, back, t.id.as_str()]).await? == 0 {
        return Ok(());
    }
    if let Some((kind, back)) = entry {
        let balance = scalar::<E>(c, sql::BALANCE, args![t.user_id]).await?;
        let entry = close_entry(t, kind, back, balance);
        E::exec(c, sql::INSERT_LEDGER, entry).await?;
    }
    Ok(())
}

/// An admin's grant (the ledger entry, with its actor, is its audit); `None` when the balance would go
/// below zero.
pub(super) async fn grant_in<E: Engine>(
    c: &mut E::Connection,
    user_id: i64,
    amount: i64,
    reason: &str,
    actor: &str,
    now: i64,
) -> sqlx::Result<Option<LedgerEntry>> {
    if E::exec(c, sql::GRANT, args![amount, user_id, amount]).await? != 1 {
        return Ok(None);
    }
    let balance = scalar::<E>(c, sql::BALANCE, args![user_id]).await?;
    let entry = grant_entry(user_id, amount, balance, actor, reason, now);
    let id = E::insert_id(c, sql::INSERT_LEDGER, entry).await?;
    let sql = format!("SELECT {LEDGER_COLUMNS} FROM ledger WHERE id = ?");
    let row = E::row(c, &sql, args![id])
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    ledger_from(&row).map(Some)
}
