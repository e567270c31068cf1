//! The account writes of [`crate::accounts`], run in the writer thread's
//! transaction: a create's admission and hold, a finished task's settlement
//! or refund, an admin's grant, and the account reads.

use std::sync::LazyLock;

use gengate_core::{Limits, Task};
use rusqlite::{Connection, params, params_from_iter};

use super::error::db_err;
use super::rows::{all, first};
use crate::account_rows::{
    account_from, admit_args, close_entry, grant_entry, hold_entry, ledger_from, patch_statement,
};
use crate::accounts::{
    ACCOUNT_COLUMNS, Account, AccountPatch, LEDGER_COLUMNS, LedgerEntry, admit, closing, sql,
};
use crate::rows::Arg;
use crate::store::{Result, StoreError};

fn exec(c: &Connection, sql: &str, args: Vec<Arg>) -> Result<usize> {
    c.prepare_cached(sql)
        .and_then(|mut st| st.execute(params_from_iter(args)))
        .map_err(db_err)
}

/// A user's account (the statement built once: it runs at every create).
pub(super) fn account_in(c: &Connection, user_id: i64) -> Result<Option<Account>> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE id = ?1"));
    first(c, &SQL, [user_id], |r| account_from(r))
}

/// A user's balance (the statement prepared once per connection: it runs
/// at every priced task's end).
fn balance_in(c: &Connection, user_id: i64) -> Result<i64> {
    first(c, sql::BALANCE, [user_id], |r| r.get(0))?
        .ok_or_else(|| StoreError::Corrupt(format!("no user {user_id}")))
}

/// Admits a create of `task` (counted, its price held) or refuses it.
pub(super) fn admit_in(c: &Connection, task: &Task, limits: Limits) -> Result<()> {
    let account = account_in(c, task.user_id)?
        .ok_or_else(|| StoreError::Corrupt(format!("task of missing user {}", task.user_id)))?;
    let price = task.billing.map_or(0, |b| b.held);
    let ok = admit(&account, limits, price, task.created_at).map_err(StoreError::Refused)?;
    exec(c, sql::ADMIT, admit_args(&ok, price, task.user_id))?;
    if price > 0 {
        exec(
            c,
            sql::INSERT_LEDGER,
            hold_entry(task, account.balance, price),
        )?;
    }
    Ok(())
}

/// Ends a finished task's hold and frees its place, once.
pub(super) fn close_in(c: &Connection, t: &Task) -> Result<()> {
    if exec(c, sql::CLOSE_TASK, crate::rows::args![t.id.as_str()])? != 1 {
        return Ok(());
    }
    let (entry, held) = closing(t);
    let back = entry.map_or(0, |(_, back)| back);
    exec(
        c,
        sql::CLOSE_ACCOUNT,
        crate::rows::args![held, back, t.user_id],
    )?;
    if let Some((kind, back)) = entry {
        let balance = balance_in(c, t.user_id)?;
        exec(c, sql::INSERT_LEDGER, close_entry(t, kind, back, balance))?;
    }
    Ok(())
}

/// An admin's grant (the ledger entry, with its actor, is its audit).
pub(super) fn grant_in(
    c: &Connection,
    user_id: i64,
    amount: i64,
    reason: &str,
    actor: &str,
    now: i64,
) -> Result<LedgerEntry> {
    let changed = exec(c, sql::GRANT, crate::rows::args![amount, user_id, amount])?;
    if changed != 1 {
        return Err(StoreError::Conflict {
            constraint: "balance".into(),
        });
    }
    let balance = balance_in(c, user_id)?;
    exec(
        c,
        sql::INSERT_LEDGER,
        grant_entry(user_id, amount, balance, actor, reason, now),
    )?;
    let id = c.last_insert_rowid();
    let sql = format!("SELECT {LEDGER_COLUMNS} FROM ledger WHERE id = ?1");
    first(c, &sql, [id], |r| ledger_from(r))?
        .ok_or_else(|| StoreError::Corrupt("a ledger entry vanished".into()))
}

pub(super) fn patch_in(c: &Connection, user_id: i64, p: &AccountPatch) -> Result<bool> {
    match patch_statement(p, user_id) {
        Some((sql, args)) => Ok(exec(c, &sql, args)? == 1),
        None => Ok(account_in(c, user_id)?.is_some()),
    }
}

/// Ledger entries newest first.
pub(super) fn ledger_in(
    c: &Connection,
    user_id: Option<i64>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<LedgerEntry>> {
    let sql = format!(
        "SELECT {LEDGER_COLUMNS} FROM ledger WHERE (?1 IS NULL OR user_id = ?1) \
         AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
    );
    all(c, &sql, params![user_id, before, limit], |r| ledger_from(r))
}
