//! Public read routes: the model catalog and the gallery. Neither needs a
//! key (both show only what the operator or the task owners made public).

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;

use super::error::{ApiError, ErrorBody};
use super::extract::AppQuery;
use super::respond::{cached_json, page_json};
use super::views::{GalleryItem, GalleryPage, GalleryQuery, ModelList, ModelView};
use crate::state::App;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/gallery", get(gallery))
}

/// The models the operator configured, with their input schemas.
#[utoipa::path(get, path = "/v1/models", tag = "catalog", responses((status = 200, body = ModelList)))]
pub(super) async fn list_models(State(app): State<App>, headers: HeaderMap) -> Response {
    let data = app.tasks.catalog().values().map(ModelView::new).collect();
    cached_json(&headers, &ModelList { data }, "public, max-age=60")
}

/// Public, succeeded tasks, newest first.
#[utoipa::path(get, path = "/v1/gallery", tag = "catalog", params(GalleryQuery),
    responses((status = 200, body = GalleryPage), (status = 304, description = "Not modified"),
              (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn gallery(
    State(app): State<App>,
    AppQuery(q): AppQuery<GalleryQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let page = app.tasks.gallery(&q.into()).await?;
    // Shared caches (a CDN) may keep a page a few seconds.
    Ok(page_json(&headers, &page, "public, max-age=5", || {
        GalleryPage {
            data: page.tasks.iter().map(|t| GalleryItem::new(t)).collect(),
            next_cursor: page.next_cursor.clone(),
        }
    }))
}
