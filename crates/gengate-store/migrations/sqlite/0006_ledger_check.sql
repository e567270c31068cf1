-- The ledger's kind is checked with comparisons, not `IN (…)`: SQLite
-- builds a throwaway index for an IN list of more than two values on every
-- row it checks, which made the hold written by every priced create cost
-- nearly twice a plain insert. SQLite cannot change a CHECK constraint in
-- place, so the table is rebuilt (nothing references the ledger).
CREATE TABLE ledger_v2 (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    task_id     TEXT,
    kind        TEXT NOT NULL
                CHECK (kind = 'hold' OR kind = 'settle' OR kind = 'refund' OR kind = 'grant'),
    amount      INTEGER NOT NULL,
    balance     INTEGER NOT NULL,
    actor       TEXT,
    reason      TEXT,
    created_at  INTEGER NOT NULL
);
INSERT INTO ledger_v2 (id, user_id, task_id, kind, amount, balance, actor, reason, created_at)
    SELECT id, user_id, task_id, kind, amount, balance, actor, reason, created_at FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_v2 RENAME TO ledger;
CREATE UNIQUE INDEX ledger_once ON ledger (task_id, kind);
CREATE INDEX ledger_by_user ON ledger (user_id, id);
