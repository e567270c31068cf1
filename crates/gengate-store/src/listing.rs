//! The task listing every backend runs: newest first, with only the
//! filters given, so that each filter combination can use its index
//! (`tasks_by_user` for a user's tasks, `tasks_gallery` for the gallery)
//! and start at the cursor instead of scanning. One statement text per
//! filter combination, each prepared once per connection.

use crate::rows::{Arg, task_columns};
use crate::store::ListQuery;

/// The listing's SQL (`?` placeholders) and its parameters. `public` is
/// how the engine writes "the task is public" as its gallery index states
/// it; `cursor` makes the cursor comparable with the id column.
pub(crate) fn list_query(
    q: &ListQuery,
    public: &str,
    cursor: impl FnOnce(&str) -> Arg,
) -> (String, Vec<Arg>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    if let Some(user) = q.user_id {
        clauses.push("user_id = ?".into());
        args.push(user.into());
    }
    if q.gallery {
        clauses.push(format!("{public} AND status = 'succeeded'"));
    }
    if let Some(status) = q.status {
        clauses.push("status = ?".into());
        args.push(status.as_str().into());
    }
    if let Some(model) = &q.model {
        clauses.push("model = ?".into());
        args.push(model.as_str().into());
    }
    if let Some(provider) = &q.provider {
        clauses.push("provider = ?".into());
        args.push(provider.as_str().into());
    }
    if let Some(from) = q.created_from {
        clauses.push("created_at >= ?".into());
        args.push(from.into());
    }
    if let Some(to) = q.created_to {
        clauses.push("created_at < ?".into());
        args.push(to.into());
    }
    if let Some(before) = &q.before {
        clauses.push("id < ?".into());
        args.push(cursor(before));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    args.push(q.limit.into());
    (
        format!(
            "SELECT {} FROM tasks{filter} ORDER BY id DESC LIMIT ?",
            task_columns!()
        ),
        args,
    )
}
