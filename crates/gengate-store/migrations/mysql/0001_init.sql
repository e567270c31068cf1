-- gengate schema v1 (MySQL 8, MariaDB 10.11): the SQLite schema as of its
-- migration 3, plus what nodes sharing the database need: task leases, a
-- lock row per provider for claims, and the nodes' heartbeats. Times are
-- Unix milliseconds.
--
-- Text compares byte by byte (utf8mb4_bin), as in SQLite: names and ids are
-- case-sensitive. Ids, keys and hashes are ASCII (ascii_bin), which keeps
-- their indexes small. JSON is kept as text, read back exactly as written.
-- MySQL cannot roll back DDL, so every statement can be run again after a
-- failed run (IF NOT EXISTS), and indexes are declared with their tables.
CREATE TABLE IF NOT EXISTS users (
    id              BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name            VARCHAR(255) NOT NULL,
    created_at      BIGINT NOT NULL,
    webhook_secret  TEXT NULL,
    UNIQUE KEY users_by_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Keys are stored as the hex SHA-256 of the whole key; `prefix` is the
-- non-secret start of the key, shown in listings to tell keys apart.
CREATE TABLE IF NOT EXISTS api_keys (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id     BIGINT NOT NULL,
    prefix      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    key_hash    VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    role        VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL CHECK (role IN ('user', 'admin')),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT NULL,
    UNIQUE KEY api_keys_by_hash (key_hash),
    CONSTRAINT api_keys_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A task in submitting, running or storing is leased to the node working
-- on it until lease_until (the database's clock).
CREATE TABLE IF NOT EXISTS tasks (
    id                VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    user_id           BIGINT NOT NULL,
    model             VARCHAR(255) NOT NULL,
    provider          VARCHAR(255) NOT NULL,
    status            VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL
                      CHECK (status IN ('queued', 'submitting', 'running', 'storing', 'succeeded', 'failed', 'canceled')),
    input             MEDIUMTEXT NOT NULL,
    outputs           MEDIUMTEXT NOT NULL,
    error             MEDIUMTEXT NULL,
    public            BOOLEAN NOT NULL,
    priority          INT NOT NULL,
    attempts          INT NOT NULL,
    max_attempts      INT NOT NULL,
    provider_task_id  TEXT NULL,
    progress          DOUBLE NOT NULL,
    not_before        BIGINT NOT NULL,
    deadline_at       BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    started_at        BIGINT NULL,
    finished_at       BIGINT NULL,
    updated_at        BIGINT NOT NULL,
    version           BIGINT NOT NULL,
    webhook_url       TEXT NULL,
    lease_owner       VARCHAR(255) NULL,
    lease_until       BIGINT NULL,
    -- "my tasks, newest first": ids sort by creation time.
    KEY tasks_by_user (user_id, id),
    -- the public gallery, newest first.
    KEY tasks_gallery (public, status, id),
    -- recovery at start: every unfinished task.
    KEY tasks_active (status, id),
    -- retention of originals: finished tasks by age.
    KEY tasks_finished (finished_at),
    -- claims: a provider's queued tasks in claim order, and its slots in use.
    KEY tasks_claims (provider, status, priority DESC, id),
    -- take-over of expired leases, renewal of a node's own.
    KEY tasks_leases (status, lease_until),
    -- expiry: unfinished tasks by deadline.
    KEY tasks_deadlines (status, deadline_at),
    -- the change feed for nodes that poll for it.
    KEY tasks_changes (updated_at),
    CONSTRAINT tasks_user FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The key column is `idem_key`: KEY is a reserved word here.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id       BIGINT NOT NULL,
    idem_key      VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    request_hash  VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    task_id       VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (user_id, idem_key),
    KEY idempotency_keys_by_age (created_at),
    -- deleting a task deletes its record.
    KEY idempotency_keys_by_task (task_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Outbound client webhooks (Standard Webhooks): the outbox of deliveries,
-- queued in the same transaction as the result they announce.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id               BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    task_id          VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_id          BIGINT NOT NULL,
    url              TEXT NOT NULL,
    event            VARCHAR(64) NOT NULL,
    status           VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    last_status      INT NULL,
    last_error       TEXT NULL,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT NULL,
    KEY webhook_deliveries_due (status, next_attempt_at),
    KEY webhook_deliveries_by_task (task_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per provider, locked by each claim: claims for a provider run one
-- at a time across every node, so its concurrency limit holds cluster-wide.
CREATE TABLE IF NOT EXISTS provider_locks (
    provider  VARCHAR(255) NOT NULL PRIMARY KEY
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Each node's heartbeat (the database's clock) and how far its own clock is
-- from the database's, for `gengate doctor`.
CREATE TABLE IF NOT EXISTS nodes (
    id               VARCHAR(255) NOT NULL PRIMARY KEY,
    started_at       BIGINT NOT NULL,
    seen_at          BIGINT NOT NULL,
    clock_offset_ms  BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
