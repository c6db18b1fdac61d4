-- 003_login_failures.sql (PostgreSQL dialect) - the login rate limiter's
-- counters, in the database so that every cartwise-cloud instance behind a
-- load balancer shares them (issue 3: an in-memory counter per instance gave
-- an attacker max_attempts per instance). schema/cloud/sqlite/
-- 003_login_failures.sql is the SQLite counterpart. Self-contained: it only
-- creates its own table, so it can be renumbered when merged.
--
-- One row per (email, client address) with failed logins in the current
-- window. The key is a hex BLAKE2b-256 of (lower-cased email, address),
-- keyed with a subkey of the signing key that all instances share
-- (cw_cloud_api.c, login_key): no email or IP address is stored in clear.
-- A failure is one upsert that restarts an expired window in the same
-- statement (no read-modify-write between instances); a success deletes the
-- row; failures prune a few expired rows through the window_start index, so
-- a spray of random emails cannot grow the table past the rows of one window.
CREATE TABLE login_failures (
    key_hash     text PRIMARY KEY CHECK (length(key_hash) = 64),
    window_start timestamptz NOT NULL,
    failures     int NOT NULL CHECK (failures >= 1)
);
CREATE INDEX login_failures_window ON login_failures (window_start);
