//! The create body of a workflow or AI-app run: the model's rendered params
//! plus the fields the adapter owns.

use serde_json::{Map, Value};

use super::api::{CREATE_WORKFLOW, RUN_APP};
use super::client::RunningHub;
use crate::{ProviderError, SubmitRequest};

/// Which RunningHub operation runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    Workflow,
    App,
}

impl Operation {
    pub(super) fn from_endpoint(endpoint: Option<&str>) -> Result<Self, ProviderError> {
        match endpoint {
            None | Some("workflow") => Ok(Self::Workflow),
            Some("app") => Ok(Self::App),
            Some(other) => Err(config_error(format!(
                "unknown RunningHub endpoint {other:?} (expected \"workflow\" or \"app\")"
            ))),
        }
    }

    pub(super) fn path(self) -> &'static str {
        match self {
            Self::Workflow => CREATE_WORKFLOW,
            Self::App => RUN_APP,
        }
    }

    /// The params field naming what runs.
    fn id_field(self) -> &'static str {
        match self {
            Self::Workflow => "workflowId",
            Self::App => "webappId",
        }
    }
}

fn config_error(message: String) -> ProviderError {
    ProviderError::Rejected {
        code: "config".to_owned(),
        message,
    }
}

impl RunningHub {
    /// The create body: the rendered params plus the fields the adapter
    /// owns (`apiKey`, `webhookUrl`).
    pub(super) fn create_body(
        &self,
        op: Operation,
        req: &SubmitRequest<'_>,
    ) -> Result<Value, ProviderError> {
        let Some(params) = req.params.as_object() else {
            return Err(config_error(format!(
                "params of model {} must be an object",
                req.model
            )));
        };
        let mut body: Map<String, Value> = params.clone();
        let field = op.id_field();
        let id = match body.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.trim().to_owned()),
            // `workflowId` is a string on the wire; `webappId` is an int64
            // that official examples send either way, so it stays as given.
            Some(Value::Number(n)) => match op {
                Operation::Workflow => Value::String(n.to_string()),
                Operation::App => Value::Number(n.clone()),
            },
            _ => {
                return Err(config_error(format!(
                    "params of model {} lack {field} (endpoint {:?})",
                    req.model,
                    req.endpoint.unwrap_or("workflow")
                )));
            }
        };
        body.insert(field.to_owned(), id);
        body.insert("apiKey".to_owned(), Value::String(self.api_key.clone()));
        match req.callback_url {
            Some(url) => {
                body.insert("webhookUrl".to_owned(), Value::String(url.to_owned()));
            }
            None => {
                body.remove("webhookUrl");
            }
        }
        Ok(Value::Object(body))
    }
}
