-- Accounts and money. Each user has a balance of credits, what its
-- unfinished tasks hold of it, and the counters its limits are checked
-- against, all changed in the same transaction as the task they count:
-- `active` (tasks not finished), the UTC day's creates (`day_start`,
-- `day_count`) and the creates-per-minute bucket as the theoretical time
-- of the next create in microseconds (`rate_tat`, GCRA). The limit columns are an admin's
-- override of the configured defaults (NULL: the default).
ALTER TABLE users ADD COLUMN balance INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN day_start INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN day_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN rate_tat INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN max_active INTEGER;
ALTER TABLE users ADD COLUMN creates_per_minute INTEGER;
ALTER TABLE users ADD COLUMN tasks_per_day INTEGER;
-- A task's price as fixed at its creation (JSON, NULL: free), and whether
-- its end was accounted for (its user's `active` and held credits given
-- back): exactly once, whoever writes its final state.
ALTER TABLE tasks ADD COLUMN billing TEXT;
ALTER TABLE tasks ADD COLUMN closed INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET closed = 1 WHERE status IN ('succeeded', 'failed', 'canceled');
UPDATE users SET active = (SELECT COUNT(*) FROM tasks t WHERE t.user_id = users.id AND t.closed = 0);
-- Every movement of credits, append-only. A user's balance is the sum of
-- their entries; a task has at most one entry of each kind (its hold, then
-- its settlement or its refund), which no retry, replay, crash or second
-- node can write twice.
CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    task_id     TEXT,
    kind        TEXT NOT NULL CHECK (kind IN ('hold', 'settle', 'refund', 'grant')),
    amount      INTEGER NOT NULL,
    balance     INTEGER NOT NULL,
    actor       TEXT,
    reason      TEXT,
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX ledger_once ON ledger (task_id, kind);
CREATE INDEX ledger_by_user ON ledger (user_id, id);
-- What admins did: who, what, to what, when.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
-- Shared settings: the browser tokens' signing key, paused providers.
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
