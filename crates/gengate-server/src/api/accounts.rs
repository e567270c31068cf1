//! A user's account: browser tokens, the balance and the ledger.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use gengate_core::time::rfc3339;
use gengate_store::{Caller, LedgerEntry};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, AppQuery};
use super::respond::{PRIVATE, cached_json};
use crate::service::accounts::LedgerPage;
use crate::state::App;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/v1/tokens", post(create_token))
        .route("/v1/balance", get(balance))
        .route("/v1/ledger", get(ledger))
}

/// What a browser token is for.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTokenRequest {
    /// The one task the token may read (the caller's own); without it, every
    /// task of the caller.
    #[serde(default)]
    task_id: Option<String>,
    /// Its life in seconds: 1..=86400, default 900.
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// A browser token: read-only, sent as `Authorization: Bearer <token>` or
/// as `?access_token=<token>` (for `EventSource` and media links).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TokenView {
    token: String,
    expires_at: String,
}

/// Make a browser token for the caller (a user key, or a service key with
/// `X-Gengate-User`).
#[utoipa::path(post, path = "/v1/tokens", tag = "accounts", request_body = CreateTokenRequest,
    responses((status = 201, body = TokenView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create_token(
    State(app): State<App>,
    caller: Caller,
    body: Option<AppJson<CreateTokenRequest>>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let req = body.map(|AppJson(r)| r).unwrap_or_default();
    let (token, expires_at) = app
        .accounts
        .issue_token(&caller, req.task_id, req.ttl_seconds)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenView {
            token,
            expires_at: rfc3339(expires_at),
        }),
    ))
}

/// Credits free to spend, and credits held by unfinished tasks.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BalanceView {
    balance: i64,
    held: i64,
}

/// The caller's credits.
#[utoipa::path(get, path = "/v1/balance", tag = "accounts",
    responses((status = 200, body = BalanceView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn balance(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let b = app.accounts.balance(&caller).await?;
    let view = BalanceView {
        balance: b.balance,
        held: b.held,
    };
    Ok(cached_json(&headers, &view, PRIVATE))
}

/// One movement of credits.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LedgerEntryView {
    id: i64,
    /// `hold` (a task's price taken at its creation), `settle` (the task
    /// was charged; `amount` is what it held but did not use), `refund`
    /// (all it held came back) or `grant` (an admin's).
    kind: &'static str,
    /// Credits added to the balance; negative when taken.
    amount: i64,
    /// The balance after it.
    balance: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The admin who granted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    created_at: String,
}

impl From<LedgerEntry> for LedgerEntryView {
    fn from(e: LedgerEntry) -> Self {
        Self {
            id: e.id,
            kind: e.kind.as_str(),
            amount: e.amount,
            balance: e.balance,
            task_id: e.task_id,
            reason: e.reason,
            actor: e.actor,
            created_at: rfc3339(e.created_at),
        }
    }
}

/// A page of ledger entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LedgerPageView {
    entries: Vec<LedgerEntryView>,
    next_cursor: Option<String>,
}

impl From<LedgerPage> for LedgerPageView {
    fn from(p: LedgerPage) -> Self {
        Self {
            entries: p.entries.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
        }
    }
}

/// Query of a ledger page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// Page size, 1..=100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The caller's ledger, newest first.
#[utoipa::path(get, path = "/v1/ledger", tag = "accounts", params(PageQuery),
    responses((status = 200, body = LedgerPageView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn ledger(
    State(app): State<App>,
    caller: Caller,
    AppQuery(q): AppQuery<PageQuery>,
) -> Result<Json<LedgerPageView>, ApiError> {
    let page = app
        .accounts
        .ledger(&caller, q.cursor.as_deref(), q.limit)
        .await?;
    Ok(Json(page.into()))
}
