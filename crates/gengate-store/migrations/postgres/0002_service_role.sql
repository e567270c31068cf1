-- A key may have the role `service`: it acts for the app's end users, named
-- in each request. (api_keys_role_check is the name PostgreSQL gave the
-- column's CHECK in migration 1.)
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN ('user', 'admin', 'service'));
