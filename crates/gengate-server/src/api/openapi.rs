//! `/openapi.json`, generated from the handlers' annotations and the view
//! types, so it cannot drift from the code.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use gengate_core::ModelSpec;
use serde_json::{Value, json};
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
        super::catalog::list_models, super::catalog::gallery, super::uploads::upload,
        super::accounts::create_token, super::accounts::balance, super::accounts::ledger,
        super::admin::stats, super::admin::create_key, super::admin::list_keys, super::admin::revoke_key,
        super::admin::list_users, super::admin::get_user, super::admin::patch_user, super::admin::grant,
        super::admin::audit, super::admin::search_tasks, super::admin::cancel_tasks, super::admin::hide_task,
        super::admin::retry_task, super::admin::recopy_task, super::admin::pause_provider, super::admin::resume_provider,
        super::callbacks::callback,
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
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key, or a browser token (`ggt_…`, from POST /v1/tokens: \
                         read-only, one user and optionally one task; also accepted as \
                         `?access_token=` on GET routes). A key with the role `service` acts \
                         for the end user its `X-Gengate-User` header names (1..128 printable \
                         ASCII characters, created on first use), or for itself without one; \
                         any other key sending that header gets 403 `end_user_not_allowed`.",
                    ))
                    .build(),
            ),
        );
    }
}

pub(super) fn router() -> Router<App> {
    Router::new().route(
        "/openapi.json",
        get(|State(app): State<App>| async move { Json(document(app.tasks.catalog().values())) }),
    )
}

/// The document with the configured models' inputs: each one's JSON Schema
/// as the component `ModelInput.{name}`, and a create's body as one of
/// them, chosen by its `model`, so that a client generated from it (or a
/// fuzzer) builds inputs the server accepts.
pub(super) fn document<'a>(models: impl Iterator<Item = &'a ModelSpec>) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let mut branches = Vec::new();
    for m in models {
        let name = format!("ModelInput.{}", component_name(&m.name));
        let mut schema = m.input_schema();
        if let Some(o) = schema.as_object_mut() {
            o.remove("$schema");
        }
        branches.push(json!({
            "properties": {
                "model": {"const": m.name},
                "input": {"$ref": format!("#/components/schemas/{name}")},
            },
        }));
        doc["components"]["schemas"][name] = schema;
    }
    if !branches.is_empty() {
        doc["components"]["schemas"]["CreateTaskRequest"]["oneOf"] = Value::Array(branches);
    }
    doc
}

/// `name` as OpenAPI allows a component's name (`[A-Za-z0-9._-]`).
fn component_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
