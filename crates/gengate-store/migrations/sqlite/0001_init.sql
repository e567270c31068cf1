-- gengate schema v1 (SQLite). Times are Unix milliseconds.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- Keys are stored as the hex SHA-256 of the whole key; `prefix` is the
-- non-secret start of the key, shown in listings to tell keys apart.
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE tasks (
    id                TEXT PRIMARY KEY,
    user_id           INTEGER NOT NULL REFERENCES users(id),
    model             TEXT NOT NULL,
    provider          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('queued','submitting','running','succeeded','failed','canceled')),
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
    version           INTEGER NOT NULL
) WITHOUT ROWID;

-- "my tasks, newest first": ids sort by creation time.
CREATE INDEX tasks_by_user ON tasks (user_id, id);
-- recovery at start and dispatch bookkeeping touch only unfinished tasks.
CREATE INDEX tasks_active ON tasks (status) WHERE status IN ('queued', 'submitting', 'running');
-- the public gallery, newest first.
CREATE INDEX tasks_gallery ON tasks (id) WHERE public = 1 AND status = 'succeeded';

CREATE TABLE idempotency_keys (
    user_id       INTEGER NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
