//! The account writes of [`crate::accounts`] in the caller's transaction
//! on a shared store: a create's admission and hold (under the user's row
//! lock, so concurrent creates on any node are counted one after another),
//! a finished task's settlement or refund, and an admin's grant.

use gengate_core::{LedgerKind, Limits, Refusal, Task};

use super::engine::Engine;
use super::error::corrupt;
use super::queries::scalar;
use crate::accounts::{
    ACCOUNT_COLUMNS, Account, LEDGER_COLUMNS, LedgerEntry, account_from, admit, closing,
    ledger_args, ledger_from, sql,
};
use crate::rows::args;

/// Admits a create of `task` (counted, its price held), or says why not.
pub(super) async fn admit_in<E: Engine>(
    c: &mut E::Connection,
    task: &Task,
    limits: Limits,
) -> sqlx::Result<Result<(), Refusal>> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE id = ? FOR UPDATE");
    let account: Account = match E::row(c, &sql, args![task.user_id]).await? {
        Some(r) => account_from(&r)?,
        None => return Err(corrupt(format!("task of missing user {}", task.user_id))),
    };
    let price = task.billing.map_or(0, |b| b.held);
    let ok = match admit(&account, limits, price, task.created_at) {
        Ok(ok) => ok,
        Err(why) => return Ok(Err(why)),
    };
    E::exec(c, sql::ADMIT, ok.args(price, task.user_id)).await?;
    if price > 0 {
        let entry = ledger_args(
            task.user_id,
            Some(&task.id),
            LedgerKind::Hold,
            -price,
            account.balance - price,
            None,
            None,
            task.created_at,
        );
        E::exec(c, sql::INSERT_LEDGER, entry).await?;
    }
    Ok(Ok(()))
}

/// Ends a finished task's hold and frees its place, once: whichever node
/// or retry writes its final state first.
pub(super) async fn close_in<E: Engine>(c: &mut E::Connection, t: &Task) -> sqlx::Result<()> {
    if E::exec(c, sql::CLOSE_TASK, args![t.id.as_str()]).await? != 1 {
        return Ok(());
    }
    let (entry, held) = closing(t);
    let back = entry.map_or(0, |(_, back)| back);
    E::exec(c, sql::CLOSE_ACCOUNT, args![held, back, t.user_id]).await?;
    if let Some((kind, back)) = entry {
        let balance = scalar::<E>(c, sql::BALANCE, args![t.user_id]).await?;
        let entry = ledger_args(
            t.user_id,
            Some(&t.id),
            kind,
            back,
            balance,
            None,
            None,
            t.updated_at,
        );
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
    let entry = ledger_args(
        user_id,
        None,
        LedgerKind::Grant,
        amount,
        balance,
        Some(actor),
        Some(reason),
        now,
    );
    let id = E::insert_id(c, sql::INSERT_LEDGER, entry).await?;
    let sql = format!("SELECT {LEDGER_COLUMNS} FROM ledger WHERE id = ?");
    let row = E::row(c, &sql, args![id])
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    ledger_from(&row).map(Some)
}
