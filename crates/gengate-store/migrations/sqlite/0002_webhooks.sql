-- Outbound client webhooks (Standard Webhooks): where a task's result goes,
-- each user's signing secret, and the outbox of deliveries with their record.
ALTER TABLE tasks ADD COLUMN webhook_url TEXT;
ALTER TABLE users ADD COLUMN webhook_secret TEXT;

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    task_id          TEXT NOT NULL,
    user_id          INTEGER NOT NULL,
    url              TEXT NOT NULL,
    event            TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_task ON webhook_deliveries (task_id);
