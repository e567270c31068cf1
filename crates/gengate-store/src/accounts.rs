//! Users' accounts: their credits, the counters their limits are checked
//! against, the ledger and the admins' audit trail. The rules are plain
//! functions ([`admit`], [`closing`]) and the statements plain SQL shared by
//! every backend; each backend runs them inside the transaction that
//! creates or finishes the task they concern, so a task and its money never
//! disagree.

use gengate_core::{LedgerKind, Limits, Refusal, Task, UserId};

/// A user's account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: UserId,
    pub name: String,
    pub created_at: i64,
    /// Credits free to spend (their sum of ledger entries).
    pub balance: i64,
    /// Credits held by unfinished tasks (already out of `balance`).
    pub held: i64,
    /// Tasks not finished.
    pub active: i64,
    pub disabled: bool,
    /// The admin's overrides of the configured limits.
    pub limits: LimitOverrides,
    /// Start (Unix ms) of the UTC day `day_count` counts creates of.
    pub day_start: i64,
    pub day_count: i64,
    /// The creates-per-minute bucket's theoretical time of the next create
    /// (GCRA), in Unix microseconds: it is full when this is in the past.
    pub rate_tat: i64,
}

/// Per-user overrides of [`Limits`] (`None`: the configured default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    pub max_active: Option<u32>,
    pub creates_per_minute: Option<u32>,
    pub tasks_per_day: Option<u32>,
}

impl LimitOverrides {
    /// The limits that apply, given the defaults.
    pub fn over(&self, defaults: Limits) -> Limits {
        Limits {
            max_active: self.max_active.unwrap_or(defaults.max_active),
            creates_per_minute: self
                .creates_per_minute
                .unwrap_or(defaults.creates_per_minute),
            tasks_per_day: self.tasks_per_day.unwrap_or(defaults.tasks_per_day),
        }
    }
}

/// What an admin changes of a user. For each limit: `Some(None)` goes back
/// to the default, `Some(Some(n))` sets the user's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountPatch {
    pub disabled: Option<bool>,
    pub max_active: Option<Option<u32>>,
    pub creates_per_minute: Option<Option<u32>>,
    pub tasks_per_day: Option<Option<u32>>,
}

/// One movement of credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: i64,
    pub user_id: UserId,
    pub task_id: Option<String>,
    pub kind: LedgerKind,
    /// Credits added to the balance (negative: taken).
    pub amount: i64,
    /// The balance after this entry.
    pub balance: i64,
    /// Who moved them: an admin's name for grants, otherwise none.
    pub actor: Option<String>,
    pub reason: Option<String>,
    pub created_at: i64,
}

/// One admin action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    /// The admin's user name.
    pub actor: String,
    /// What was done, e.g. `credits`, `user.patch`, `key.revoke`.
    pub action: String,
    /// To what: a user, key, task or provider.
    pub target: String,
    /// The request's particulars (JSON).
    pub detail: String,
    pub created_at: i64,
}

/// A user whose stored balance or held credits disagree with the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub user_id: UserId,
    pub name: String,
    pub balance: i64,
    pub ledger_sum: i64,
    pub held: i64,
    /// Sum of the holds of unfinished tasks.
    pub open_holds: i64,
}

/// The columns [`crate::account_rows::account_from`] reads.
pub(crate) const ACCOUNT_COLUMNS: &str = "id, name, created_at, balance, held, active, disabled, \
     max_active, creates_per_minute, tasks_per_day, day_start, day_count, rate_tat";

pub(crate) const LEDGER_COLUMNS: &str =
    "id, user_id, task_id, kind, amount, balance, actor, reason, created_at";

pub(crate) const AUDIT_COLUMNS: &str = "id, actor, action, target, detail, created_at";

/// Statements every backend runs as they are (`?` placeholders).
pub(crate) mod sql {
    /// After [`super::admit`]: the create's counters (the row is locked or,
    /// in SQLite, the writer is alone).
    pub(crate) const ADMIT: &str = "UPDATE users SET active = active + 1, \
         balance = balance - ?, held = held + ?, day_start = ?, day_count = ?, rate_tat = ? \
         WHERE id = ?";
    /// Marks a finished task's end as accounted for, once.
    pub(crate) const CLOSE_TASK: &str =
        "UPDATE tasks SET closed = TRUE WHERE id = ? AND NOT closed";
    /// Gives a finished task's slot and hold back.
    pub(crate) const CLOSE_ACCOUNT: &str =
        "UPDATE users SET active = active - 1, held = held - ?, balance = balance + ? WHERE id = ?";
    pub(crate) const BALANCE: &str = "SELECT balance FROM users WHERE id = ?";
    pub(crate) const GRANT: &str =
        "UPDATE users SET balance = balance + ? WHERE id = ? AND balance + ? >= 0";
    pub(crate) const INSERT_LEDGER: &str = "INSERT INTO ledger \
         (user_id, task_id, kind, amount, balance, actor, reason, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
    pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit \
         (actor, action, target, detail, created_at) VALUES (?, ?, ?, ?, ?)";
}

/// See [`crate::Accounts::provider_spending`]; `int` is the engine's 64-bit
/// integer type for `CAST`.
pub(crate) fn spending_sql(int: &str) -> String {
    format!(
        "SELECT CAST(COALESCE(-SUM(l.amount), 0) AS {int}) FROM ledger l \
         JOIN tasks t ON t.id = l.task_id \
         WHERE l.kind = 'hold' AND t.provider = ? AND t.started_at >= ?"
    )
}

/// Users whose balance is not their ledger's sum, or whose held credits are
/// not what their unfinished tasks hold (a hold is negative in the ledger).
pub(crate) fn drift_sql(int: &str) -> String {
    format!(
        "SELECT id, name, balance, sum_, held, open_ FROM (SELECT u.id, u.name, u.balance, \
     CAST(COALESCE((SELECT SUM(l.amount) FROM ledger l WHERE l.user_id = u.id), 0) AS {int}) AS sum_, \
     u.held, \
     CAST(COALESCE((SELECT -SUM(l.amount) FROM ledger l JOIN tasks t ON t.id = l.task_id \
               WHERE l.user_id = u.id AND l.kind = 'hold' AND NOT t.closed), 0) AS {int}) AS open_ \
     FROM users u) d WHERE balance <> sum_ OR held <> open_ ORDER BY id"
    )
}

/// The account columns a create writes once admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admitted {
    pub day_start: i64,
    pub day_count: i64,
    pub rate_tat: i64,
}

const DAY_MS: i64 = 86_400_000;

/// The start of the UTC day of `now` (Unix ms).
pub(crate) fn day_start(now: i64) -> i64 {
    now.div_euclid(DAY_MS) * DAY_MS
}
/// A minute in microseconds, the GCRA bucket's unit.
pub(crate) const MINUTE_US: i64 = 60_000_000;

/// Whether `account` may create a task costing `price` at `now`, and if so
/// its counters after it. Checked in this order: disabled, credits, tasks
/// queued or running, the day's creates, the minute's bucket (credits first:
/// a user who cannot pay is told so, not told to wait).
pub(crate) fn admit(
    account: &Account,
    defaults: Limits,
    price: i64,
    now: i64,
) -> Result<Admitted, Refusal> {
    let limits = account.limits.over(defaults);
    if account.disabled {
        return Err(Refusal::Disabled);
    }
    if account.balance < price {
        return Err(Refusal::InsufficientCredits {
            balance: account.balance,
            price,
        });
    }
    if limits.max_active > 0 && account.active >= i64::from(limits.max_active) {
        return Err(Refusal::TooManyActive {
            limit: limits.max_active,
        });
    }
    let today = day_start(now);
    let day_count = if account.day_start == today {
        account.day_count
    } else {
        0
    };
    if limits.tasks_per_day > 0 && day_count >= i64::from(limits.tasks_per_day) {
        return Err(Refusal::DailyLimit {
            limit: limits.tasks_per_day,
            retry_after_ms: today + DAY_MS - now,
        });
    }
    // GCRA: a bucket of a minute's worth of creates, one back every
    // `interval`; `rate_tat` is when it would be full again. In
    // microseconds, so that even a million a minute is exact.
    let rate_tat = match limits.creates_per_minute {
        0 => 0,
        per_minute => {
            let now_us = now.saturating_mul(1000);
            let interval = (MINUTE_US / i64::from(per_minute)).max(1);
            let tolerance = MINUTE_US - interval;
            if account.rate_tat - now_us > tolerance {
                let wait_us = account.rate_tat - tolerance - now_us;
                return Err(Refusal::RateLimited {
                    limit: per_minute,
                    retry_after_ms: (wait_us + 999) / 1000,
                });
            }
            account.rate_tat.max(now_us) + interval
        }
    };
    Ok(Admitted {
        day_start: today,
        day_count: day_count + 1,
        rate_tat,
    })
}

/// How a finished task's hold ends: the ledger entry to write (kind and
/// credits back) when it is priced, and the held credits released.
pub(crate) fn closing(task: &Task) -> (Option<(LedgerKind, i64)>, i64) {
    match &task.billing {
        Some(b) if b.held > 0 => (task.ending().map(|e| b.close(e)), b.held),
        _ => (None, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account {
            user_id: 1,
            name: "u".into(),
            created_at: 0,
            balance: 100,
            held: 0,
            active: 0,
            disabled: false,
            limits: LimitOverrides::default(),
            day_start: 0,
            day_count: 0,
            rate_tat: 0,
        }
    }

    fn limits(max_active: u32, creates_per_minute: u32, tasks_per_day: u32) -> Limits {
        Limits {
            max_active,
            creates_per_minute,
            tasks_per_day,
        }
    }

    /// Admits creates one after another at `now`, as the store would.
    fn burst(a: &mut Account, l: Limits, now: i64, n: usize) -> Vec<Result<(), Refusal>> {
        (0..n)
            .map(|_| {
                let ok = admit(a, l, 0, now)?;
                a.active += 1;
                a.day_start = ok.day_start;
                a.day_count = ok.day_count;
                a.rate_tat = ok.rate_tat;
                Ok(())
            })
            .collect()
    }

    #[test]
    fn credits_are_checked_before_limits() {
        let mut a = account();
        a.active = 50;
        a.balance = 3;
        assert_eq!(
            admit(&a, limits(10, 0, 0), 5, 0),
            Err(Refusal::InsufficientCredits {
                balance: 3,
                price: 5
            })
        );
        a.disabled = true;
        assert_eq!(admit(&a, limits(10, 0, 0), 5, 0), Err(Refusal::Disabled));
    }

    #[test]
    fn the_active_cap_and_its_override() {
        let mut a = account();
        let results = burst(&mut a, limits(3, 0, 0), 0, 5);
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
        assert_eq!(results[4], Err(Refusal::TooManyActive { limit: 3 }));
        a.limits.max_active = Some(0);
        assert!(admit(&a, limits(3, 0, 0), 0, 0).is_ok(), "0 lifts the cap");
    }

    #[test]
    fn the_minute_bucket_holds_a_minute_and_refills_evenly() {
        let mut a = account();
        let now = 1_000_000;
        let l = limits(0, 6, 0);
        let results = burst(&mut a, l, now, 7);
        assert!(results[..6].iter().all(Result::is_ok));
        assert_eq!(
            results[6],
            Err(Refusal::RateLimited {
                limit: 6,
                retry_after_ms: 10_000
            })
        );
        assert!(admit(&a, l, 0, now + 9_999).is_err());
        assert!(admit(&a, l, 0, now + 10_000).is_ok(), "one token back");
        let results = burst(&mut a, l, now + 60_000, 7);
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 6);
    }

    #[test]
    fn the_day_count_resets_at_utc_midnight() {
        let mut a = account();
        let l = limits(0, 0, 2);
        let late = 5 * DAY_MS - 1_000;
        let results = burst(&mut a, l, late, 3);
        assert_eq!(
            results[2],
            Err(Refusal::DailyLimit {
                limit: 2,
                retry_after_ms: 1_000
            })
        );
        assert!(admit(&a, l, 0, 5 * DAY_MS).is_ok());
    }
}
