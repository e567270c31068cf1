//! A user's own account: browser tokens, the balance and the ledger.

use std::sync::Arc;
use std::time::Duration;

use gengate_core::Role;
use gengate_store::{Caller, LedgerEntry, Store};

use super::auth::{AuthService, TOKEN_TTL_DEFAULT, TOKEN_TTL_MAX};
use super::tasks::{DEFAULT_LIMIT, MAX_LIMIT, TaskService};
use super::{ServiceError, key_only, may_list};
use crate::now_ms;

/// A balance as its owner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    /// Free to spend.
    pub balance: i64,
    /// Held by unfinished tasks.
    pub held: i64,
}

/// One page of ledger entries, newest first.
#[derive(Debug, Clone)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntry>,
    pub next_cursor: Option<String>,
}

#[derive(Clone)]
pub struct AccountService {
    store: Arc<dyn Store>,
    auth: AuthService,
    tasks: TaskService,
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        code: "invalid_request",
        field: field.to_owned(),
        message: message.into(),
    }
}

/// The page size asked for, checked.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, ServiceError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(invalid(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ))
    }
}

/// A cursor made of an id (`next_cursor` of an earlier page).
pub(crate) fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, ServiceError> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("cursor", "cursor must be a next_cursor of an earlier page"))
        })
        .transpose()
}

impl AccountService {
    pub fn new(store: Arc<dyn Store>, auth: AuthService, tasks: TaskService) -> Self {
        Self { store, auth, tasks }
    }

    /// A browser token for the caller (a user key, or a service key's end
    /// user): read-only, for `ttl_seconds` (default 15 min, at most 24 h)
    /// and, with `task_id`, for that one of their tasks alone.
    ///
    /// # Errors
    /// A browser token or an admin key asking (403), a bad TTL (422), a
    /// task the caller cannot see (404).
    pub async fn issue_token(
        &self,
        caller: &Caller,
        task_id: Option<String>,
        ttl_seconds: Option<u64>,
    ) -> Result<(String, i64), ServiceError> {
        key_only(caller)?;
        if caller.role == Role::Admin {
            return Err(ServiceError::TokenScope(
                "browser tokens are made for users and end users, not admins",
            ));
        }
        let ttl = match ttl_seconds {
            None => TOKEN_TTL_DEFAULT,
            Some(s) if (1..=TOKEN_TTL_MAX.as_secs()).contains(&s) => Duration::from_secs(s),
            Some(_) => {
                return Err(invalid(
                    "ttl_seconds",
                    format!(
                        "ttl_seconds must be between 1 and {}",
                        TOKEN_TTL_MAX.as_secs()
                    ),
                ));
            }
        };
        if let Some(id) = &task_id {
            self.tasks.get(caller, id).await?;
        }
        self.auth.issue_token(caller, task_id, ttl, now_ms()).await
    }

    /// The caller's balance and held credits.
    ///
    /// # Errors
    /// A token for one task (403), a store failure.
    pub async fn balance(&self, caller: &Caller) -> Result<Balance, ServiceError> {
        may_list(caller)?;
        let account = self.store.accounts().account(caller.user_id).await?;
        Ok(account.map_or(
            Balance {
                balance: 0,
                held: 0,
            },
            |a| Balance {
                balance: a.balance,
                held: a.held,
            },
        ))
    }

    /// The caller's ledger, newest first.
    ///
    /// # Errors
    /// A bad cursor or limit (422), a token for one task (403).
    pub async fn ledger(
        &self,
        caller: &Caller,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<LedgerPage, ServiceError> {
        may_list(caller)?;
        ledger_page(&*self.store, Some(caller.user_id), cursor, limit).await
    }
}

/// One page of the ledger of `user` (everyone's with `None`).
pub(crate) async fn ledger_page(
    store: &dyn Store,
    user: Option<i64>,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<LedgerPage, ServiceError> {
    let limit = page_limit(limit)?;
    let before = id_cursor(cursor)?;
    let mut entries = store.accounts().ledger(user, before, limit + 1).await?;
    let next_cursor = (entries.len() > limit as usize).then(|| {
        entries.truncate(limit as usize);
        entries
            .last()
            .map_or_else(String::new, |e| e.id.to_string())
    });
    Ok(LedgerPage {
        entries,
        next_cursor,
    })
}
