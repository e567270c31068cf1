-- A key may have the role `service`: it acts for the app's end users, named
-- in each request. MariaDB keeps a column's CHECK with the column, so
-- redefining the column replaces it. (MySQL 8 keeps it as a table constraint
-- of its own, which gengate drops by name before running this; see
-- mysql.rs.) Running it again changes nothing.
ALTER TABLE api_keys MODIFY role VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL
    CHECK (role IN ('user', 'admin', 'service'));
