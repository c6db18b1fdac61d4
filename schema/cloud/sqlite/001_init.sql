-- 001_init.sql (SQLite dialect) - the cloud aggregator's database: the seed's
-- schema (chains, branches, devices, controllers, carts, rentals, telemetry)
-- plus staff accounts, enrollment codes, device tokens, commands and the
-- per-device sync state. schema/cloud/postgres/001_init.sql is the same
-- schema in PostgreSQL's dialect: keep the two in step (same tables,
-- columns, constraints and indexes).
--
-- Conventions:
--  * ids are UUIDv7 text (time-ordered, so ORDER BY id is creation order and
--    "id > cursor" paginates);
--  * times are INTEGER milliseconds since the Unix epoch (*_ms);
--  * booleans are INTEGER 0/1 with a CHECK; JSON is TEXT with json_valid();
--  * every list is scoped to a tenant: the indexes lead with chain_id or
--    branch_id, then the ordering key.
-- Applied in one transaction by src/cloud/cw_store_sqlite.c, which sets
-- PRAGMA user_version.

CREATE TABLE chains (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    slug        TEXT NOT NULL UNIQUE CHECK (length(slug) BETWEEN 1 AND 100),
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

-- code: what a technician types into the edge's config ("BRANCH-001");
-- unique within its chain (device registration also names an enrollment
-- code, which is unique everywhere and fixes the chain).
CREATE TABLE branches (
    id          TEXT PRIMARY KEY,
    chain_id    TEXT NOT NULL REFERENCES chains(id),
    code        TEXT NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    address     TEXT,
    city        TEXT CHECK (city IS NULL OR length(city) <= 100),
    latitude    REAL CHECK (latitude IS NULL OR latitude BETWEEN -90 AND 90),
    longitude   REAL CHECK (longitude IS NULL OR longitude BETWEEN -180 AND 180),
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    UNIQUE (chain_id, code)
);
CREATE INDEX branches_chain ON branches (chain_id, id);

-- The seed's device_token column is gone on purpose: tokens are never
-- stored, only their jti (device_tokens) so that they can be revoked.
CREATE TABLE devices (
    id                TEXT PRIMARY KEY,
    branch_id         TEXT NOT NULL REFERENCES branches(id),
    device_name       TEXT NOT NULL CHECK (length(device_name) BETWEEN 1 AND 100),
    mac_address       TEXT NOT NULL UNIQUE CHECK (length(mac_address) = 17),
    serial_number     TEXT CHECK (serial_number IS NULL OR length(serial_number) <= 100),
    status            TEXT NOT NULL DEFAULT 'offline'
                      CHECK (status IN ('offline', 'online', 'degraded', 'maintenance')),
    last_heartbeat_ms INTEGER,
    firmware_version  TEXT CHECK (firmware_version IS NULL OR length(firmware_version) <= 20),
    health            TEXT CHECK (health IS NULL OR json_valid(health)),
    created_ms        INTEGER NOT NULL,
    updated_ms        INTEGER NOT NULL
);
CREATE INDEX devices_branch ON devices (branch_id, id);

CREATE TABLE controllers (
    id                 TEXT PRIMARY KEY,
    device_id          TEXT NOT NULL REFERENCES devices(id),
    controller_address INTEGER NOT NULL CHECK (controller_address BETWEEN 0 AND 255),
    port               TEXT CHECK (port IS NULL OR length(port) <= 50),
    protocol           TEXT NOT NULL DEFAULT 'modbus' CHECK (protocol IN ('modbus', 'kerong')),
    baudrate           INTEGER NOT NULL DEFAULT 19200 CHECK (baudrate > 0),
    status             TEXT NOT NULL DEFAULT 'inactive'
                       CHECK (status IN ('inactive', 'online', 'offline')),
    updated_ms         INTEGER NOT NULL
);
CREATE INDEX controllers_device ON controllers (device_id);

CREATE TABLE carts (
    id                TEXT PRIMARY KEY,
    branch_id         TEXT NOT NULL REFERENCES branches(id),
    cart_number       INTEGER NOT NULL CHECK (cart_number >= 1),
    locker_id         INTEGER NOT NULL CHECK (locker_id >= 0),
    controller_id     TEXT REFERENCES controllers(id),
    status            TEXT NOT NULL DEFAULT 'available'
                      CHECK (status IN ('available', 'rented', 'awaiting-return',
                                        'maintenance', 'fault', 'offline')),
    is_locked         INTEGER NOT NULL DEFAULT 1 CHECK (is_locked IN (0, 1)),
    last_used_ms      INTEGER,
    maintenance_notes TEXT,
    updated_ms        INTEGER NOT NULL,
    UNIQUE (branch_id, cart_number)
);

-- Rentals are born on the edge (UUIDv7 from the device) and arrive by sync.
-- Times carry whether the device's wall clock was trusted (no RTC on a Pi).
CREATE TABLE rentals (
    id                 TEXT PRIMARY KEY,
    cart_id            TEXT NOT NULL REFERENCES carts(id),
    branch_id          TEXT NOT NULL REFERENCES branches(id),
    device_id          TEXT REFERENCES devices(id),
    user_phone         TEXT NOT NULL CHECK (length(user_phone) BETWEEN 1 AND 20),
    start_ms           INTEGER NOT NULL,
    expected_return_ms INTEGER NOT NULL,
    actual_return_ms   INTEGER,
    clock_trusted      INTEGER NOT NULL DEFAULT 1 CHECK (clock_trusted IN (0, 1)),
    status             TEXT NOT NULL DEFAULT 'active'
                       CHECK (status IN ('active', 'overdue', 'returned', 'returned-late',
                                         'cancelled')),
    duration_minutes   INTEGER,
    notes              TEXT,
    created_ms         INTEGER NOT NULL,
    updated_ms         INTEGER NOT NULL
);
-- "active" lists treat overdue as still open (BRIEF.md §4): (branch, status).
CREATE INDEX rentals_branch_status ON rentals (branch_id, status, start_ms);
CREATE INDEX rentals_branch_start ON rentals (branch_id, start_ms);
CREATE INDEX rentals_cart ON rentals (cart_id, start_ms);

-- Telemetry carries branch_id and chain_id copied from its device so that
-- branch- and chain-wide queries need no join (devices never change chain).
-- (device_id, seq) comes from the edge's outbox: a replayed entry is refused.
CREATE TABLE telemetry (
    id            INTEGER PRIMARY KEY,
    device_id     TEXT NOT NULL REFERENCES devices(id),
    branch_id     TEXT NOT NULL REFERENCES branches(id),
    chain_id      TEXT NOT NULL REFERENCES chains(id),
    seq           INTEGER,
    event_type    TEXT NOT NULL CHECK (length(event_type) BETWEEN 1 AND 50),
    event_data    TEXT CHECK (event_data IS NULL OR json_valid(event_data)),
    ts_ms         INTEGER NOT NULL,
    clock_trusted INTEGER NOT NULL DEFAULT 1 CHECK (clock_trusted IN (0, 1)),
    received_ms   INTEGER NOT NULL,
    UNIQUE (device_id, seq)
);
CREATE INDEX telemetry_device_ts ON telemetry (device_id, ts_ms);
CREATE INDEX telemetry_branch_ts ON telemetry (branch_id, ts_ms);
CREATE INDEX telemetry_chain_ts ON telemetry (chain_id, ts_ms);

-- Staff. email is stored lower-case (the code normalises it) so UNIQUE is
-- case-insensitive. password_hash is crypto_pwhash_str (Argon2id) output.
-- A platform admin belongs to no chain; everyone else to exactly one.
CREATE TABLE staff_users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 254
                                             AND email = lower(email)),
    password_hash TEXT NOT NULL CHECK (length(password_hash) BETWEEN 1 AND 128),
    role          TEXT NOT NULL CHECK (role IN ('platform-admin', 'chain-admin', 'branch-manager')),
    chain_id      TEXT REFERENCES chains(id),
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    CHECK ((role = 'platform-admin') = (chain_id IS NULL))
);
CREATE INDEX staff_users_chain ON staff_users (chain_id, id);

-- The branches a branch manager manages.
CREATE TABLE user_branches (
    user_id   TEXT NOT NULL REFERENCES staff_users(id) ON DELETE CASCADE,
    branch_id TEXT NOT NULL REFERENCES branches(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, branch_id)
) WITHOUT ROWID;
CREATE INDEX user_branches_branch ON user_branches (branch_id);

-- Enrollment codes: only a keyed BLAKE2b hash of the code is stored
-- (crypto_generichash with the server's key), hex, so a database dump does
-- not enrol devices.
CREATE TABLE enrollment_codes (
    id          TEXT PRIMARY KEY,
    branch_id   TEXT NOT NULL REFERENCES branches(id),
    code_hash   TEXT NOT NULL UNIQUE CHECK (length(code_hash) = 64),
    created_by  TEXT REFERENCES staff_users(id),
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    uses_left   INTEGER NOT NULL CHECK (uses_left >= 0)
);
CREATE INDEX enrollment_codes_branch ON enrollment_codes (branch_id, id);

-- Device tokens are JWTs; only their jti is kept, to revoke them.
CREATE TABLE device_tokens (
    jti        TEXT PRIMARY KEY,
    device_id  TEXT NOT NULL REFERENCES devices(id),
    issued_ms  INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    revoked_ms INTEGER
);
CREATE INDEX device_tokens_device ON device_tokens (device_id);

-- Commands to a device (cart assign/return, unlock, maintenance). Never
-- deleted when fetched (BRIEF.md §4): the state moves pending -> delivered
-- -> succeeded | failed, or -> expired.
CREATE TABLE commands (
    id          TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    branch_id   TEXT NOT NULL REFERENCES branches(id),
    action      TEXT NOT NULL CHECK (length(action) BETWEEN 1 AND 50),
    args        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(args)),
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'succeeded', 'failed', 'expired')),
    created_by  TEXT REFERENCES staff_users(id),
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    delivered_ms INTEGER,
    finished_ms INTEGER,
    result      TEXT CHECK (result IS NULL OR json_valid(result))
);
CREATE INDEX commands_device_state ON commands (device_id, state, id);
CREATE INDEX commands_branch ON commands (branch_id, id);

-- Sync (issue 4): the highest outbox sequence applied per device; a batch
-- applies in one transaction together with the update of this row.
CREATE TABLE device_sync (
    device_id  TEXT PRIMARY KEY REFERENCES devices(id),
    high_water INTEGER NOT NULL DEFAULT 0 CHECK (high_water >= 0),
    updated_ms INTEGER NOT NULL
);
