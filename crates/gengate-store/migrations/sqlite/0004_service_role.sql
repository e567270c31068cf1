-- A key may have the role `service`: it acts for the app's end users, named
-- in each request. SQLite cannot change a CHECK constraint in place, so the
-- table is rebuilt (nothing references api_keys).
CREATE TABLE api_keys_v2 (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    prefix      TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('user', 'admin', 'service')),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
INSERT INTO api_keys_v2 (id, user_id, prefix, key_hash, role, created_at, revoked_at)
    SELECT id, user_id, prefix, key_hash, role, created_at, revoked_at FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_v2 RENAME TO api_keys;
