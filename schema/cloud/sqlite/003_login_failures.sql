-- 003_login_failures.sql (SQLite dialect) - the counterpart of
-- schema/cloud/postgres/003_login_failures.sql (see there for the why): the
-- login rate limiter's counters, shared by every process on this database.
-- key_hash: hex BLAKE2b-256 of (lower-cased email, client address), keyed
-- with a subkey of the shared signing key; window_start_ms: wall-clock ms of
-- the window's first failure.
CREATE TABLE login_failures (
    key_hash        TEXT PRIMARY KEY CHECK (length(key_hash) = 64),
    window_start_ms INTEGER NOT NULL,
    failures        INTEGER NOT NULL CHECK (failures >= 1)
) WITHOUT ROWID;
CREATE INDEX login_failures_window ON login_failures (window_start_ms);
