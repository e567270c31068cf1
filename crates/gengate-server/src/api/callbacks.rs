//! Inbound provider callbacks: `POST /v1/callbacks/{provider}?task=…&token=…`.
//!
//! The providers do not sign their callbacks, so the URL gengate hands each
//! submission carries a token bound to the provider entry and the task (see
//! [`gengate_engine::dispatch::callback_token`]). A callback with a valid token only
//! tells the dispatcher to look: the task moves on after a status query to
//! the provider confirms it, so a forged, repeated, late or out-of-order
//! callback changes nothing by itself. The answer is immediate; the query
//! runs in the background.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, ErrorBody};
use super::extract::{AppQuery, read_body};
use crate::state::App;
use gengate_engine::dispatch::CallbackRefusal;

pub(super) fn router() -> Router<App> {
    Router::new().route("/v1/callbacks/{provider}", post(callback))
}

/// Other query parameters are ignored: a provider or proxy may add some.
#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
    task: String,
    token: String,
}

/// A provider's callback about one task; answered at once.
#[utoipa::path(post, path = "/v1/callbacks/{provider}", tag = "callbacks",
    params(("provider" = String, Path, description = "The provider entry's name"),
           ("task" = String, Query, description = "Our task id"),
           ("token" = String, Query, description = "The token gengate put in the callback URL")),
    responses((status = 200, description = "Received; the task is checked with the provider"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn callback(
    State(app): State<App>,
    Path(provider): Path<String>,
    AppQuery(q): AppQuery<CallbackQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let body = read_body(req, app.body_limit).await?;
    let checking = app
        .callbacks
        .receive(&provider, &q.task, &q.token, &body)
        .map_err(|refusal| match refusal {
            CallbackRefusal::UnknownProvider => {
                ApiError::not_found(format!("no provider {provider} takes callbacks here"))
            }
            CallbackRefusal::BadToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_callback_token",
                "the callback token does not match this provider and task",
            ),
            CallbackRefusal::Malformed(message) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_callback",
                format!("the body is not a {provider} callback: {message}"),
            ),
        })?;
    Ok((
        StatusCode::OK,
        axum::Json(json!({"received": true, "checking": checking})),
    )
        .into_response())
}
