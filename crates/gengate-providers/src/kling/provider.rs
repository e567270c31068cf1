//! [`Provider`] for Kling: submit with our reference, poll under the
//! task's family, find a lost submission by its reference, slots per image,
//! callbacks and an account check.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::callback;
use super::client::Kling;
use super::codes::Call;
use super::family::Family;
use super::tasks::{WireTask, image_slots, job_state, pick_reference};
use crate::{CallbackHint, FollowRef, JobState, Provider, ProviderError, SubmitRequest};

/// The largest page the list endpoint serves (§3.4).
const LIST_PAGE_SIZE: usize = 500;
/// Pages `find_by_reference` scans before it gives up without an answer: a
/// lost submission is among the account's most recent tasks.
const LIST_MAX_PAGES: usize = 10;

#[async_trait]
impl Provider for Kling {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, req: SubmitRequest<'_>) -> Result<String, ProviderError> {
        let family = Family::of(req.endpoint, req.kind)?;
        let Value::Object(mut body) = req.params.clone() else {
            return Err(ProviderError::Rejected {
                code: "invalid_params".to_owned(),
                message: "the rendered kling request is not a JSON object".to_owned(),
            });
        };
        body.insert("external_task_id".to_owned(), json!(req.reference));
        match req.callback_url {
            Some(url) => body.insert("callback_url".to_owned(), json!(url)),
            None => body.remove("callback_url"),
        };
        let body = Value::Object(body);
        tracing::debug!(provider = %self.name, task.id = %req.task_id, family = family.name(), "submitting task {} to kling", req.task_id);
        let data = self
            .call(
                Method::POST,
                self.url(family.path(), None)?,
                &[],
                Some(&body),
                Call::Create,
            )
            .await?;
        let task = WireTask::deserialize(&data)
            .map_err(|e| ProviderError::Ambiguous(format!("unreadable kling task: {e}")))?;
        match task.task_id.filter(|id| !id.is_empty()) {
            Some(id) => Ok(family.tag(&id)),
            None => Err(ProviderError::Ambiguous(
                "kling accepted the task without a task_id".to_owned(),
            )),
        }
    }

    async fn poll(&self, task: FollowRef<'_>) -> Result<JobState, ProviderError> {
        let Some((family, id)) = Family::untag(task.provider_task_id) else {
            // Not an id this adapter made; it cannot be queried, and
            // answering NotFound would resubmit a task that may exist.
            return Err(ProviderError::Rejected {
                code: "bad_task_id".to_owned(),
                message: format!(
                    "{:?} is not a kling task id (<family>:<task_id>)",
                    task.provider_task_id
                ),
            });
        };
        let data = self
            .call(
                Method::GET,
                self.url(family.path(), Some(id))?,
                &[],
                None,
                Call::Query,
            )
            .await?;
        let wire = WireTask::deserialize(&data)
            .map_err(|e| ProviderError::Transient(format!("unreadable kling task: {e}")))?;
        if wire.task_id.as_deref().is_some_and(|got| got != id) {
            return Err(ProviderError::Transient(
                "kling answered a query with another task".to_owned(),
            ));
        }
        job_state(wire)
    }

    /// Kling has no cancel API: stopping only stops our polling.
    async fn cancel(&self, _task: FollowRef<'_>) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported)
    }

    /// How `external_task_id` travels on a query is undocumented, so every
    /// reading is covered: the filtered query may answer one task, a list, or
    /// a page that ignores the filter; only a task carrying our reference is
    /// trusted. Without one, the family's list is scanned (newest pages
    /// first) and `Ok(None)` — "resubmit" — is only answered once the list
    /// has ended without it. Anything less certain is an error.
    async fn find_by_reference(
        &self,
        req: SubmitRequest<'_>,
    ) -> Result<Option<String>, ProviderError> {
        let family = Family::of(req.endpoint, req.kind)?;
        let query = [("external_task_id", req.reference.to_owned())];
        match self
            .call(
                Method::GET,
                self.url(family.path(), None)?,
                &query,
                None,
                Call::Read,
            )
            .await
        {
            Ok(data) => {
                if let Some(id) = pick_reference(&data, req.reference) {
                    return Ok(Some(family.tag(&id)));
                }
            }
            // "Not found", or the parameter is not taken on this path:
            // either way the list decides.
            Err(ProviderError::Rejected { .. } | ProviderError::NotFound) => {}
            Err(e) => return Err(e),
        }
        for page in 1..=LIST_MAX_PAGES {
            let items = self.list_page(family, page, LIST_PAGE_SIZE).await?;
            let ended = items.len() < LIST_PAGE_SIZE;
            if let Some(id) = pick_reference(&Value::Array(items), req.reference) {
                return Ok(Some(family.tag(&id)));
            }
            if ended {
                return Ok(None);
            }
        }
        Err(ProviderError::Transient(format!(
            "no kling task with this reference among the {} newest; cannot tell whether it exists",
            LIST_MAX_PAGES * LIST_PAGE_SIZE
        )))
    }

    fn slots(&self, req: &SubmitRequest<'_>) -> usize {
        match Family::of(req.endpoint, req.kind) {
            Ok(Family::Image) => image_slots(req.params),
            _ => 1,
        }
    }

    fn supports_callbacks(&self) -> bool {
        true
    }
    /// Kling posts the bare task object on every status change; an envelope
    /// around it (`{code, data: task}`) is read too.
    fn parse_callback(&self, body: &[u8]) -> Result<CallbackHint, ProviderError> {
        callback::parse(body)
    }

    /// Lists one text→video task: authenticated, free, and outside the 1 QPS
    /// limit of the resource-pack endpoint. An account that may not use the
    /// video API (1103) is tried on the image list.
    async fn check_account(&self) -> Result<(), ProviderError> {
        match self.list_page(Family::Text2Video, 1, 1).await {
            Err(ProviderError::Rejected { code, .. }) if code == "1103" => {
                self.list_page(Family::Image, 1, 1).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }
}
