//! The writer thread: it owns the one writing connection and commits the
//! writes queued meanwhile together (group commit). Each write runs in a
//! savepoint of the batch's transaction, so one failing or panicking write
//! is undone alone; every writer hears back only after `COMMIT` returned,
//! which is what makes "durable before 202" true.

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::error::unavailable;
use crate::store::Result;

/// How many writes one transaction may carry. Larger batches amortize the
/// fsync further but make each writer wait longer for the slowest job.
pub(super) const MAX_BATCH: usize = 512;

/// Tells a writer how its write ended once the batch was committed.
pub(super) type Reply = Box<dyn FnOnce(Result<()>) + Send>;
/// A write: run with the connection inside the batch's transaction, or with
/// `None` when there is no transaction to run in (it then only reports that).
pub(super) type Job = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

/// Runs one statement without parameters, prepared once per connection.
pub(super) fn run_cached(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut st| st.execute([]))
        .map(|_| ())
        .map_err(unavailable)
}

/// Runs batches of jobs until every sender is gone.
pub(super) fn run_writer(conn: &Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "sqlite write transaction could not begin");
            for job in batch.drain(..) {
                job(None)(Err(unavailable(&e)));
            }
            continue;
        }
        // Set when SQLite rolled the whole transaction back under us (disk
        // full, I/O error): what ran is undone, and what follows must not run
        // in autocommit mode, where each job would commit on its own.
        let mut aborted = false;
        for job in batch.drain(..) {
            if aborted {
                replies.push(job(None));
                continue;
            }
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(conn)))) {
                Ok(reply) => replies.push(reply),
                Err(_) => {
                    // The job's reply went with it: its caller sees the write
                    // fail. Undo what it did and carry on with the batch.
                    tracing::error!("a sqlite write job panicked; its changes are rolled back");
                    let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                }
            }
            aborted = conn.is_autocommit();
        }
        let committed = if aborted {
            Err(unavailable(
                "the transaction was rolled back by the database",
            ))
        } else {
            conn.execute_batch("COMMIT").map_err(unavailable)
        };
        if committed.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies.drain(..) {
            reply(match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(unavailable(e)),
            });
        }
    }
}
