//! Task rules: create (validated, idempotent, durable before it returns),
//! read and list (owner only; others' tasks do not exist), cancel, gallery.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gengate_core::task::NewTask;
use gengate_core::{Event, ModelSpec, Role, Status, Task, id};
use gengate_store::{Caller, IdempotencyKey, ListQuery, Store, StoreError};
use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ServiceError;
use crate::now_ms;
use gengate_engine::dispatch::{Dispatcher, QueueInfo};
use gengate_engine::hub::{Entry, Hub};
use gengate_engine::media::Media;

/// Priorities users may set; only admins may go above [`MAX_USER_PRIORITY`].
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -10..=10;
pub const MAX_USER_PRIORITY: i32 = 0;
/// Page sizes of list endpoints.
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A validated-by-shape create request.
#[derive(Debug, Clone)]
pub struct CreateTask {
    pub model: String,
    pub input: Value,
    pub public: bool,
    pub priority: i32,
    /// URL the result is posted to (Standard Webhooks), if any.
    pub webhook: Option<String>,
}

/// Filters of a task listing, as the client gave them.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub status: Option<String>,
    pub model: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// One page of tasks and the cursor of the next page, if any.
#[derive(Debug, Clone)]
pub struct Page {
    /// The page's serialized form and its tag, once made; kept only for
    /// pages whose content is final (every task finished), as others carry
    /// live queue figures.
    pub serialized: std::sync::OnceLock<(bytes::Bytes, String)>,
    pub tasks: Vec<Arc<Task>>,
    pub next_cursor: Option<String>,
}

/// Listing pages kept in memory (each a few KB).
const MAX_CACHED_PAGES: usize = 4096;

/// Cached pages with the generation they were read at.
type PageCache = HashMap<PageKey, (u64, Arc<Page>)>;

/// What identifies a cached page.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PageKey {
    /// The user listed, or `None` for the gallery.
    scope: Option<gengate_core::UserId>,
    status: Option<Status>,
    model: Option<String>,
    before: Option<String>,
    limit: u32,
}

/// The model catalog, by name.
pub type Catalog = BTreeMap<String, ModelSpec>;

/// Removes an idempotency key from the in-progress set when the request ends,
/// however it ends.
struct InProgress {
    set: Arc<Mutex<HashSet<(i64, String)>>>,
    key: (i64, String),
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.set.lock().expect("idempotency lock").remove(&self.key);
    }
}

/// A task the caller may see, with where it stands in its queue.
#[derive(Debug, Clone)]
pub struct Found {
    pub task: Arc<Task>,
    pub queue: QueueInfo,
}

/// A task just created (or found again by its idempotency key).
#[derive(Debug, Clone)]
pub struct Placed {
    pub task: Task,
    pub queue: QueueInfo,
    /// Answered from an earlier request with the same idempotency key.
    pub replayed: bool,
}

#[derive(Clone)]
pub struct TaskService {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    dispatcher: Dispatcher,
    /// Where outputs are stored (and deleted from).
    media: Arc<Media>,
    catalog: Arc<Catalog>,
    in_progress: Arc<Mutex<HashSet<(i64, String)>>>,
    ids: Arc<Mutex<id::IdGen>>,
    pages: Arc<Mutex<PageCache>>,
    idempotency_ttl: Duration,
    /// Every user's limits, unless an admin set a user's own.
    limits: gengate_core::Limits,
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        code: "invalid_request",
        field: field.to_owned(),
        message: message.into(),
    }
}

impl TaskService {
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        dispatcher: Dispatcher,
        media: Arc<Media>,
        catalog: Arc<Catalog>,
        idempotency_ttl: Duration,
    ) -> Self {
        Self {
            store,
            hub,
            dispatcher,
            media,
            catalog,
            in_progress: Arc::default(),
            ids: Arc::default(),
            pages: Arc::default(),
            idempotency_ttl,
            limits: gengate_core::Limits::default(),
        }
    }

    /// Limits every user's tasks (queued or running, per minute, per day).
    #[must_use]
    pub fn with_limits(mut self, limits: gengate_core::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Queue position and ETA of `task`, from the live queue and the
    /// provider's observed latency.
    pub fn queue_info(&self, task: &Task) -> QueueInfo {
        self.dispatcher.queue_info(task)
    }

    /// The cache entry of a finished task as it is now, where its rendered
    /// answer is kept once made (it never changes).
    pub fn finished_entry(&self, task: &Task) -> Option<Arc<Entry>> {
        if !task.status.is_terminal() {
            return None;
        }
        self.hub
            .entry(&task.id)
            .filter(|e| e.task.version == task.version)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Creates a task, durably, and queues it.
    ///
    /// With an idempotency key: the same key and body return the task the
    /// first request made (`replayed`), also after a crash between commit and
    /// answer; the same key with another body is refused; a retry while the
    /// first request is still being processed is refused as in progress.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] naming the field, the idempotency errors, or
    /// a store failure.
    pub async fn create(
        &self,
        caller: &Caller,
        idempotency_key: Option<String>,
        req: CreateTask,
    ) -> Result<Placed, ServiceError> {
        let model = self
            .catalog
            .get(&req.model)
            .ok_or_else(|| ServiceError::Invalid {
                code: "unknown_model",
                field: "model".into(),
                message: format!(
                    "unknown model {:?}; GET /v1/models lists the models",
                    req.model
                ),
            })?;
        let input = model.validate_input(&req.input)?;
        if !PRIORITY_RANGE.contains(&req.priority) {
            return Err(invalid(
                "priority",
                format!(
                    "priority must be between {} and {}",
                    PRIORITY_RANGE.start(),
                    PRIORITY_RANGE.end()
                ),
            ));
        }
        if req
            .webhook
            .as_deref()
            .is_some_and(|u| !gengate_core::model::is_http_url(u))
        {
            return Err(invalid(
                "webhook",
                "webhook must be an absolute http(s) URL of at most 2048 characters",
            ));
        }
        if req.priority > MAX_USER_PRIORITY && caller.role != Role::Admin {
            return Err(invalid(
                "priority",
                format!("priority above {MAX_USER_PRIORITY} needs an admin key"),
            ));
        }
        let billing = model.billing(&input)?;
        let mut guard = None;
        let idempotency = match idempotency_key {
            Some(key) => {
                if key.is_empty()
                    || key.len() > MAX_IDEMPOTENCY_KEY_LEN
                    || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                {
                    return Err(ServiceError::Invalid {
                        code: "invalid_idempotency_key",
                        field: "Idempotency-Key".into(),
                        message: format!(
                            "Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"
                        ),
                    });
                }
                let slot = (caller.user_id, key.clone());
                if !self
                    .in_progress
                    .lock()
                    .expect("idempotency lock")
                    .insert(slot.clone())
                {
                    return Err(ServiceError::IdempotencyInProgress);
                }
                guard = Some(InProgress {
                    set: self.in_progress.clone(),
                    key: slot,
                });
                // The hash covers what the client sent, not what defaults
                // made of it, so a later catalog change does not break replays.
                let canonical = json!({"model": req.model, "input": req.input, "public": req.public,
                                       "priority": req.priority, "webhook": req.webhook});
                let request_hash = hex::encode(Sha256::digest(canonical.to_string().as_bytes()));
                let not_before = now_ms() - self.idempotency_ttl.as_millis() as i64;
                Some(IdempotencyKey {
                    key,
                    request_hash,
                    not_before,
                })
            }
            None => None,
        };
        let now = now_ms();
        let new = NewTask {
            id: self
                .ids
                .lock()
                .expect("id generator lock")
                .next(now, rand::thread_rng().r#gen()),
            user_id: caller.user_id,
            model: model.name.clone(),
            provider: model.provider.clone(),
            input,
            public: req.public,
            priority: req.priority,
            max_attempts: model.max_attempts,
            deadline_at: now + model.deadline_ms,
            created_at: now,
            webhook_url: req.webhook,
            billing,
            limits: self.limits,
        };
        // The write and the enqueue run in their own task: if the client
        // disconnects or the request times out after the write was sent, the
        // task is still queued (and the in-progress guard held until then).
        let (store, dispatcher, hub) = (
            self.store.clone(),
            self.dispatcher.clone(),
            self.hub.clone(),
        );
        let work = tokio::spawn(async move {
            let _guard = guard;
            let created = store.create_task(new, idempotency).await?;
            // A replay's task may be older than what the cache holds; reads
            // fill the cache safely, so only new tasks are published here.
            if !created.replayed {
                hub.publish(&created.task);
                tracing::info!(task.id = %created.task.id, model = %created.task.model, "task {} created", created.task.id);
                dispatcher.enqueue(&created.task);
            }
            Ok::<_, StoreError>(created)
        });
        let created = work
            .await
            .map_err(|e| {
                ServiceError::Store(StoreError::Unavailable(format!("create task failed: {e}")))
            })?
            .map_err(|e| match e {
                StoreError::IdempotencyMismatch => ServiceError::IdempotencyMismatch,
                StoreError::Refused(why) => ServiceError::Refused(why),
                other => ServiceError::Store(other),
            })?;
        Ok(Placed {
            queue: self.queue_info(&created.task),
            task: created.task,
            replayed: created.replayed,
        })
    }

    /// A task the caller may see: their own, or any for an admin.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for a missing task or someone else's.
    pub async fn get(&self, caller: &Caller, task_id: &str) -> Result<Arc<Task>, ServiceError> {
        let task = self.lookup(task_id).await?;
        if !caller.may_read(task.user_id, &task.id) {
            return Err(ServiceError::NotFound(format!("no task {task_id}")));
        }
        Ok(task)
    }

    /// A task by id, whoever owns it (from the cache, else the store).
    async fn lookup(&self, task_id: &str) -> Result<Arc<Task>, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("no task {task_id}"));
        if !id::is_task_id(task_id) {
            return Err(not_found());
        }
        Ok(match self.hub.get(task_id) {
            Some(t) => t,
            None => {
                let mark = self.hub.read_mark(task_id);
                let stored = self.store.get_task(task_id).await?.ok_or_else(not_found)?;
                self.hub.remember(stored, mark)
            }
        })
    }

    /// Whether the media of task `task_id` may be served: to anyone
    /// (`Ok(true)`) when the task is in the public gallery, otherwise
    /// (`Ok(false)`) only to a caller who may read the task.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for a missing task, or a private one the
    /// caller may not read (or with no caller).
    pub async fn media_access(
        &self,
        caller: Option<&Caller>,
        task_id: &str,
    ) -> Result<bool, ServiceError> {
        let task = self.lookup(task_id).await?;
        if task.in_gallery() {
            return Ok(true);
        }
        match caller {
            Some(c) if c.may_read(task.user_id, &task.id) => Ok(false),
            _ => Err(ServiceError::NotFound("no such file".into())),
        }
    }

    /// Like [`TaskService::get`], but if the task is unfinished, waits up
    /// to `wait` for its status to change and answers with the state then
    /// (or the current one when nothing changed in time), with its queue
    /// position and ETA.
    ///
    /// # Errors
    /// As for `get`.
    pub async fn get_wait(
        &self,
        caller: &Caller,
        task_id: &str,
        wait: Duration,
    ) -> Result<Found, ServiceError> {
        let task = self.wait_for_change(caller, task_id, wait).await?;
        Ok(Found {
            queue: self.queue_info(&task),
            task,
        })
    }

    async fn wait_for_change(
        &self,
        caller: &Caller,
        task_id: &str,
        wait: Duration,
    ) -> Result<Arc<Task>, ServiceError> {
        if wait.is_zero() {
            return self.get(caller, task_id).await;
        }
        // Subscribe before reading, so a change in between is not missed.
        let (mut changes, _) = self.hub.subscribe_task(task_id);
        let task = self.get(caller, task_id).await?;
        if task.status.is_terminal() {
            return Ok(task);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_) => return Ok(self.hub.get(task_id).unwrap_or(task)),
                Ok(Ok(event)) if event.task.status != task.status => return Ok(event.task.clone()),
                Ok(Ok(_)) => {}
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    let now = self.get(caller, task_id).await?;
                    if now.status != task.status {
                        return Ok(now);
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return Ok(task),
            }
        }
    }

    pub(crate) fn page_query(&self, params: &ListParams) -> Result<ListQuery, ServiceError> {
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(invalid(
                "limit",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let status = params
            .status
            .as_deref()
            .map(|s| {
                Status::parse(s).ok_or_else(|| {
                    invalid("status", "status must be one of queued, submitting, running, succeeded, failed, canceled")
                })
            })
            .transpose()?;
        if let Some(m) = &params.model
            && !self.catalog.contains_key(m)
        {
            return Err(ServiceError::Invalid {
                code: "unknown_model",
                field: "model".into(),
                message: format!("unknown model {m:?}; GET /v1/models lists the models"),
            });
        }
        if let Some(c) = &params.cursor
            && !id::is_task_id(c)
        {
            return Err(invalid(
                "cursor",
                "cursor must be a next_cursor value from a previous page",
            ));
        }
        Ok(ListQuery {
            user_id: None,
            status,
            model: params.model.clone(),
            gallery: false,
            before: params.cursor.clone(),
            limit: limit + 1,
            ..ListQuery::default()
        })
    }

    /// One page, from the page cache while its generation is current, else
    /// from the store. Exact: the generation is read before the store, and
    /// every commit bumps it after it is visible.
    async fn page(&self, query: ListQuery) -> Result<Arc<Page>, ServiceError> {
        let scope = if query.gallery { None } else { query.user_id };
        let key = PageKey {
            scope,
            status: query.status,
            model: query.model.clone(),
            before: query.before.clone(),
            limit: query.limit,
        };
        let generation = self.hub.page_generation(scope);
        if let Some((g, page)) = self.pages.lock().expect("page cache lock").get(&key)
            && *g == generation
        {
            return Ok(page.clone());
        }
        let want = (query.limit - 1) as usize;
        let mut tasks = self.store.list_tasks(&query).await?;
        // One extra row tells whether another page exists without a COUNT.
        let next_cursor = if tasks.len() > want {
            tasks.truncate(want);
            tasks.last().map(|t| t.id.clone())
        } else {
            None
        };
        let page = Arc::new(Page {
            serialized: std::sync::OnceLock::new(),
            tasks: tasks.into_iter().map(Arc::new).collect(),
            next_cursor,
        });
        let mut pages = self.pages.lock().expect("page cache lock");
        if pages.len() >= MAX_CACHED_PAGES {
            pages.clear();
        }
        pages.insert(key, (generation, page.clone()));
        Ok(page)
    }

    /// The caller's tasks, newest first.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for a bad filter, limit or cursor.
    pub async fn list(
        &self,
        caller: &Caller,
        params: &ListParams,
    ) -> Result<Arc<Page>, ServiceError> {
        super::may_list(caller)?;
        let mut q = self.page_query(params)?;
        q.user_id = Some(caller.user_id);
        self.page(q).await
    }

    /// Public, succeeded tasks of everyone, newest first.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for a bad filter, limit or cursor.
    pub async fn gallery(&self, params: &ListParams) -> Result<Arc<Page>, ServiceError> {
        let mut q = self.page_query(&ListParams {
            status: None,
            ..params.clone()
        })?;
        q.gallery = true;
        self.page(q).await
    }

    /// Cancels a task that has not finished (at the provider too, where it can).
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] as for `get`; [`ServiceError::Conflict`] when
    /// the task already finished.
    /// Deletes a finished task: it leaves listings and the gallery, and its
    /// stored media is removed from storage (objects that cannot be removed
    /// now are left to `gengate media gc`).
    ///
    /// # Errors
    /// `NotFound` for another user's task, `Conflict` for an unfinished one.
    pub async fn delete(&self, caller: &Caller, task_id: &str) -> Result<(), ServiceError> {
        let task = self.get(caller, task_id).await?;
        if !task.status.is_terminal() {
            return Err(ServiceError::Conflict {
                code: "task_unfinished",
                message: format!(
                    "task {} is {}; cancel it first, only finished tasks can be deleted",
                    task.id,
                    task.status.as_str()
                ),
            });
        }
        if !self.store.delete_task(task_id).await? {
            return Err(ServiceError::NotFound(format!("no task {task_id}")));
        }
        self.hub.forget(&task);
        if let Err(e) = self.media.delete_outputs(&task.outputs).await {
            tracing::warn!(task.id = %task.id, error = %e, "media of deleted task {} not removed: {e}; `gengate media gc` removes it", task.id);
        }
        tracing::info!(task.id = %task.id, "task {} deleted", task.id);
        Ok(())
    }

    /// Takes a task out of the gallery (an admin's moderation): stored as
    /// private, conditional on its version like every write.
    ///
    /// # Errors
    /// `NotFound` for no such task; `Conflict` when it kept changing.
    pub async fn hide(&self, task_id: &str) -> Result<Task, ServiceError> {
        for _ in 0..5 {
            let task = self
                .store
                .get_task(task_id)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("no task {task_id}")))?;
            if !task.public {
                return Ok(task);
            }
            let hidden = Task {
                public: false,
                version: task.version + 1,
                updated_at: now_ms().max(task.updated_at),
                ..task
            };
            if self
                .store
                .update_task(&hidden, gengate_core::Fence::Version)
                .await?
            {
                self.hub.publish(&hidden);
                return Ok(hidden);
            }
        }
        Err(ServiceError::Conflict {
            code: "task_busy",
            message: format!("task {task_id} is changing too fast to hide; retry"),
        })
    }

    /// Tasks of every user matching `query` (its `before` is the cursor),
    /// newest first, read from the store (admin search is never cached).
    ///
    /// # Errors
    /// A store failure.
    pub async fn search(
        &self,
        mut query: ListQuery,
    ) -> Result<(Vec<Task>, Option<String>), ServiceError> {
        let limit = query.limit;
        query.limit = limit + 1;
        let mut tasks = self.store.list_tasks(&query).await?;
        let next = (tasks.len() > limit as usize).then(|| {
            tasks.truncate(limit as usize);
            tasks.last().map_or_else(String::new, |t| t.id.clone())
        });
        Ok((tasks, next))
    }

    pub async fn cancel(&self, caller: &Caller, task_id: &str) -> Result<Task, ServiceError> {
        let task = self.get(caller, task_id).await?;
        let finished = |t: &Task| ServiceError::Conflict {
            code: "task_finished",
            message: format!(
                "task {} already {}; only unfinished tasks can be canceled",
                t.id,
                t.status.as_str()
            ),
        };
        if task.status.is_terminal() {
            return Err(finished(&task));
        }
        // In its own task, so a dropped request cannot store the cancel and
        // skip its effects (the slot release, the cancel at the provider).
        let dispatcher = self.dispatcher.clone();
        let id = task_id.to_owned();
        let (canceled, last) = tokio::spawn(async move {
            let mut last = None;
            let canceled = dispatcher
                .transition(&id, Some((*task).clone()), |t| {
                    last = Some(t.clone());
                    (!t.status.is_terminal()).then_some(Event::Cancel)
                })
                .await;
            (canceled, last)
        })
        .await
        .map_err(|e| ServiceError::Store(StoreError::Unavailable(format!("cancel failed: {e}"))))?;
        let canceled = canceled?.stored();
        match (canceled, last) {
            (Some(t), _) => {
                tracing::info!(task.id = %t.id, "task {} canceled", t.id);
                Ok(t)
            }
            (None, Some(t)) if t.status.is_terminal() => Err(finished(&t)),
            (None, _) => Err(ServiceError::Conflict {
                code: "task_busy",
                message: format!("task {task_id} is changing too fast to cancel; retry"),
            }),
        }
    }
}
