//! `/openapi.json`, generated from the handlers' annotations and the view
//! types, so it cannot drift from the code.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::App;

#[derive(OpenApi)]
#[openapi(
    info(title = "gengate", description = "Self-hosted AI generation task gateway, HTTP API v1."),
    paths(
        super::health::healthz, super::health::readyz, super::health::metrics,
        super::tasks::create_task, super::tasks::get_task, super::tasks::list_tasks, super::tasks::cancel_task, super::tasks::delete_task,
        super::events::task_events, super::events::user_events,
        super::webhooks::secret, super::webhooks::deliveries,
        super::catalog::list_models, super::catalog::gallery,
        super::admin::stats, super::admin::create_key, super::callbacks::callback,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub(super) fn router() -> Router<App> {
    Router::new().route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
