//! `gengate media gc`: removes stored objects nothing refers to any more
//! (deleted tasks whose objects could not be removed at the time, copies of
//! tasks that were canceled or failed while storing) and, when
//! `media.retention` is set, the originals of tasks finished longer ago
//! (their thumbnails stay, so galleries keep working).
//!
//! Objects of unfinished tasks are never touched: a copy may be writing
//! them right now.

use std::collections::HashMap;

use gengate_core::Task;
use gengate_store::Store;

use super::{Media, thumb_key};

/// What a collection found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Objects looked at.
    pub scanned: u64,
    /// Objects of no task, or not among their finished task's outputs.
    pub orphaned: Vec<String>,
    /// Originals past `media.retention`.
    pub expired: Vec<String>,
    /// Objects that could not be deleted (they are tried again next time).
    pub failed: u64,
}

/// Collects garbage under the task keys (`t/…`).
///
/// # Errors
/// When the storage cannot be listed or the store read.
pub async fn collect(
    store: &dyn Store,
    media: &Media,
    retention_ms: Option<i64>,
    now_ms: i64,
    dry_run: bool,
) -> anyhow::Result<GcReport> {
    let keys = media.backend.list("t/").await?;
    let mut report = GcReport {
        scanned: keys.len() as u64,
        ..GcReport::default()
    };
    let mut tasks: HashMap<String, Option<Task>> = HashMap::new();
    for key in keys {
        let Some(task_id) = key.split('/').nth(1).map(str::to_owned) else {
            continue;
        };
        if !tasks.contains_key(&task_id) {
            let t = store.get_task(&task_id).await?;
            tasks.insert(task_id.clone(), t);
        }
        match &tasks[&task_id] {
            None => report.orphaned.push(key),
            Some(t) if !t.status.is_terminal() => {}
            Some(t) => {
                let original = t.outputs.iter().any(|o| o.key.as_deref() == Some(&key));
                let thumb = t
                    .outputs
                    .iter()
                    .any(|o| o.key.as_deref().map(thumb_key).as_deref() == Some(&key));
                if !original && !thumb {
                    report.orphaned.push(key);
                } else if original
                    && let (Some(keep), Some(done)) = (retention_ms, t.finished_at)
                    && done + keep < now_ms
                {
                    report.expired.push(key);
                }
            }
        }
    }
    if !dry_run {
        for key in report.orphaned.iter().chain(&report.expired) {
            if let Err(e) = media.backend.delete(key).await {
                tracing::warn!(key = %key, error = %e, "deleting {key} failed: {e}");
                report.failed += 1;
            }
        }
    }
    Ok(report)
}
