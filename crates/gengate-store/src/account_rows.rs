//! How account rows are read and account statements' arguments made, for
//! every backend: the decoders of [`crate::accounts`]' columns and the
//! argument lists of its statements.

use gengate_core::{LedgerKind, Task, UserId};

use crate::accounts::{
    Account, AccountPatch, Admitted, AuditEntry, Drift, LedgerEntry, LimitOverrides,
};
use crate::rows::{Arg, Columns, args};

/// A row of [`crate::accounts::ACCOUNT_COLUMNS`].
pub(crate) fn account_from<R: Columns>(r: &R) -> Result<Account, R::Error> {
    let limit = |i: usize| -> Result<Option<u32>, R::Error> {
        r.opt_int32(i)?
            .map(|v| u32::try_from(v).map_err(|_| R::corrupt(format!("limit {v}"))))
            .transpose()
    };
    Ok(Account {
        user_id: r.int(0)?,
        name: r.text(1)?,
        created_at: r.int(2)?,
        balance: r.int(3)?,
        held: r.int(4)?,
        active: r.int(5)?,
        disabled: r.boolean(6)?,
        limits: LimitOverrides {
            max_active: limit(7)?,
            creates_per_minute: limit(8)?,
            tasks_per_day: limit(9)?,
        },
        day_start: r.int(10)?,
        day_count: r.int(11)?,
        rate_tat: r.int(12)?,
    })
}

/// A row of [`crate::accounts::LEDGER_COLUMNS`].
pub(crate) fn ledger_from<R: Columns>(r: &R) -> Result<LedgerEntry, R::Error> {
    let kind = r.text(3)?;
    Ok(LedgerEntry {
        id: r.int(0)?,
        user_id: r.int(1)?,
        task_id: r.opt_text(2)?,
        kind: LedgerKind::parse(&kind).ok_or_else(|| R::corrupt(format!("ledger kind {kind}")))?,
        amount: r.int(4)?,
        balance: r.int(5)?,
        actor: r.opt_text(6)?,
        reason: r.opt_text(7)?,
        created_at: r.int(8)?,
    })
}

/// A row of [`crate::accounts::AUDIT_COLUMNS`].
pub(crate) fn audit_from<R: Columns>(r: &R) -> Result<AuditEntry, R::Error> {
    Ok(AuditEntry {
        id: r.int(0)?,
        actor: r.text(1)?,
        action: r.text(2)?,
        target: r.text(3)?,
        detail: r.text(4)?,
        created_at: r.int(5)?,
    })
}

/// A row of [`crate::accounts::drift_sql`].
pub(crate) fn drift_from<R: Columns>(r: &R) -> Result<Drift, R::Error> {
    Ok(Drift {
        user_id: r.int(0)?,
        name: r.text(1)?,
        balance: r.int(2)?,
        ledger_sum: r.int(3)?,
        held: r.int(4)?,
        open_holds: r.int(5)?,
    })
}

/// The arguments of [`crate::accounts::sql::ADMIT`] for a create admitted as `a`.
pub(crate) fn admit_args(a: &Admitted, price: i64, user: UserId) -> Vec<Arg> {
    args![price, price, a.day_start, a.day_count, a.rate_tat, user]
}

/// The statement and arguments of an [`AccountPatch`] (`None`: it changes
/// nothing).
pub(crate) fn patch_statement(p: &AccountPatch, user: UserId) -> Option<(String, Vec<Arg>)> {
    let mut sets = Vec::new();
    let mut values = Vec::new();
    if let Some(d) = p.disabled {
        sets.push("disabled = ?");
        values.push(Arg::Bool(d));
    }
    for (column, v) in [
        ("max_active = ?", p.max_active),
        ("creates_per_minute = ?", p.creates_per_minute),
        ("tasks_per_day = ?", p.tasks_per_day),
    ] {
        if let Some(v) = v {
            sets.push(column);
            values.push(Arg::OptInt(v.map(i64::from)));
        }
    }
    if sets.is_empty() {
        return None;
    }
    values.push(Arg::Int(user));
    Some((
        format!("UPDATE users SET {} WHERE id = ?", sets.join(", ")),
        values,
    ))
}

/// The ledger entry of `task`'s hold, given its owner's balance before it.
pub(crate) fn hold_entry(task: &Task, balance_before: i64, price: i64) -> Vec<Arg> {
    ledger_args(
        task.user_id,
        Some(&task.id),
        LedgerKind::Hold,
        -price,
        balance_before - price,
        None,
        None,
        task.created_at,
    )
}

/// The ledger entry that ends `task`'s hold, given its owner's balance
/// after it.
pub(crate) fn close_entry(task: &Task, kind: LedgerKind, back: i64, balance: i64) -> Vec<Arg> {
    ledger_args(
        task.user_id,
        Some(&task.id),
        kind,
        back,
        balance,
        None,
        None,
        task.updated_at,
    )
}

/// The ledger entry of an admin's grant, given the balance after it.
pub(crate) fn grant_entry(
    user: UserId,
    amount: i64,
    balance: i64,
    actor: &str,
    reason: &str,
    now: i64,
) -> Vec<Arg> {
    ledger_args(
        user,
        None,
        LedgerKind::Grant,
        amount,
        balance,
        Some(actor),
        Some(reason),
        now,
    )
}

/// The arguments of [`crate::accounts::sql::INSERT_LEDGER`].
#[allow(clippy::too_many_arguments)]
fn ledger_args(
    user: UserId,
    task: Option<&str>,
    kind: LedgerKind,
    amount: i64,
    balance: i64,
    actor: Option<&str>,
    reason: Option<&str>,
    now: i64,
) -> Vec<Arg> {
    args![
        user,
        task.map(str::to_owned),
        kind.as_str(),
        amount,
        balance,
        actor.map(str::to_owned),
        reason.map(str::to_owned),
        now
    ]
}
