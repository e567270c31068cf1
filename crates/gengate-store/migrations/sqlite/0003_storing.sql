-- Results are copied to the operator's storage before a task succeeds: the
-- new `storing` status sits between the provider's success and ours. SQLite
-- cannot change a CHECK constraint in place, so the table is rebuilt (no
-- other table references it).
CREATE TABLE tasks_new (
    id                TEXT PRIMARY KEY,
    user_id           INTEGER NOT NULL REFERENCES users(id),
    model             TEXT NOT NULL,
    provider          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('queued','submitting','running','storing','succeeded','failed','canceled')),
    input             TEXT NOT NULL,
    outputs           TEXT NOT NULL,
    error             TEXT,
    public            INTEGER NOT NULL,
    priority          INTEGER NOT NULL,
    attempts          INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL,
    provider_task_id  TEXT,
    progress          REAL NOT NULL,
    not_before        INTEGER NOT NULL,
    deadline_at       INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    updated_at        INTEGER NOT NULL,
    version           INTEGER NOT NULL,
    webhook_url       TEXT
) WITHOUT ROWID;
INSERT INTO tasks_new (id, user_id, model, provider, status, input, outputs, error, public, priority, attempts,
    max_attempts, provider_task_id, progress, not_before, deadline_at, created_at, started_at, finished_at,
    updated_at, version, webhook_url)
SELECT id, user_id, model, provider, status, input, outputs, error, public, priority, attempts,
    max_attempts, provider_task_id, progress, not_before, deadline_at, created_at, started_at, finished_at,
    updated_at, version, webhook_url FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;

CREATE INDEX tasks_by_user ON tasks (user_id, id);
CREATE INDEX tasks_active ON tasks (status) WHERE status IN ('queued', 'submitting', 'running', 'storing');
CREATE INDEX tasks_gallery ON tasks (id) WHERE public = 1 AND status = 'succeeded';
-- retention of originals: finished tasks by age.
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
