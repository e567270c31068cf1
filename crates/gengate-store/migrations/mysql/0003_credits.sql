-- Accounts and money: as SQLite's migration 5 and PostgreSQL's 3 (their
-- comments say what each column is for). MySQL commits DDL at once: a run
-- that stopped halfway is run again, and a column or index it finds
-- already there is skipped (see mysql.rs).
ALTER TABLE users ADD COLUMN balance BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN held BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN active BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN day_start BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN day_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN rate_tat BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN max_active INTEGER NULL;
ALTER TABLE users ADD COLUMN creates_per_minute INTEGER NULL;
ALTER TABLE users ADD COLUMN tasks_per_day INTEGER NULL;
ALTER TABLE tasks ADD COLUMN billing TEXT NULL;
ALTER TABLE tasks ADD COLUMN closed BOOLEAN NOT NULL DEFAULT false;
UPDATE tasks SET closed = true WHERE status IN ('succeeded', 'failed', 'canceled');
UPDATE users SET active = (SELECT COUNT(*) FROM tasks t WHERE t.user_id = users.id AND NOT t.closed);
CREATE TABLE IF NOT EXISTS ledger (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id     BIGINT NOT NULL,
    task_id     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    kind        VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    amount      BIGINT NOT NULL,
    balance     BIGINT NOT NULL,
    actor       VARCHAR(255) NULL,
    reason      TEXT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE KEY ledger_once (task_id, kind),
    KEY ledger_by_user (user_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS audit (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    actor       VARCHAR(255) NOT NULL,
    action      VARCHAR(64) NOT NULL,
    target      VARCHAR(255) NOT NULL,
    detail      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS settings (
    name   VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    value  TEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
