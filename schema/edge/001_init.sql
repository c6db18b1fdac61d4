-- 001_init.sql - the edge database: the seed's tables as they live on ONE
-- device, plus what the rental engine needs (outbox, command log, settings).
--
-- Conventions (see docs/RENTALS.md):
--  * ids are UUIDv7 text, born on this device;
--  * wall times are INTEGER milliseconds since the Unix epoch, each with a
--    *_trusted / clock_trusted flag (the Pi has no RTC, BRIEF.md §4);
--  * monotonic times (*_mono_ms) are only comparable when mono_boot equals
--    the current /proc/sys/kernel/random/boot_id;
--  * booleans are INTEGER 0/1 with a CHECK.
-- Applied in one transaction by src/edge/cw_edb.c, which sets user_version.

-- Key/value settings of this device (rules pushed by the cloud later, etc.).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- The device's identity: exactly one row (seed: chains/branches/devices).
CREATE TABLE device_identity (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    chain_id        TEXT NOT NULL,
    branch_id       TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    created_wall_ms INTEGER NOT NULL,
    updated_wall_ms INTEGER NOT NULL
);

-- One row per lock board (seed: controllers). bus_index/board_index are the
-- positions in the daemon's configuration; the rest is descriptive.
CREATE TABLE controllers (
    id                TEXT PRIMARY KEY,
    bus_index         INTEGER NOT NULL CHECK (bus_index >= 0),
    board_index       INTEGER NOT NULL CHECK (board_index >= 0),
    bus_name          TEXT NOT NULL DEFAULT '',
    address           INTEGER,
    protocol          TEXT,
    status            TEXT NOT NULL DEFAULT 'unknown'
                      CHECK (status IN ('unknown', 'online', 'offline')),
    last_seen_wall_ms INTEGER,
    UNIQUE (bus_index, board_index)
);

-- One row per docking slot (seed: carts). The slot is "the cart" of the API.
CREATE TABLE carts (
    id                  TEXT PRIMARY KEY,
    branch_id           TEXT NOT NULL,
    cart_number         INTEGER NOT NULL UNIQUE CHECK (cart_number >= 1),
    controller_id       TEXT REFERENCES controllers(id),
    bus_index           INTEGER NOT NULL,
    board_index         INTEGER NOT NULL,
    lock_index          INTEGER NOT NULL CHECK (lock_index BETWEEN 0 AND 31),
    status              TEXT NOT NULL DEFAULT 'available'
                        CHECK (status IN ('available', 'rented', 'awaiting-return',
                                          'maintenance', 'fault')),
    -- last sensed state; a new slot is "empty, hook open" until its board reports
    cart_present        INTEGER NOT NULL DEFAULT 0 CHECK (cart_present IN (0, 1)),
    hook_closed         INTEGER NOT NULL DEFAULT 0 CHECK (hook_closed IN (0, 1)),
    board_online        INTEGER NOT NULL DEFAULT 0 CHECK (board_online IN (0, 1)),
    is_locked           INTEGER NOT NULL DEFAULT 1 CHECK (is_locked IN (0, 1)),
    last_used_wall_ms   INTEGER,
    maintenance_notes   TEXT,
    fault_reason        TEXT,
    removed             INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1)),
    -- return designation (status awaiting-return): which rental, since when
    reserved_for_rental TEXT REFERENCES rentals(id),
    reserved_wall_ms    INTEGER,
    reserved_mono_ms    INTEGER,
    reserved_boot       TEXT,
    created_wall_ms     INTEGER NOT NULL,
    updated_wall_ms     INTEGER NOT NULL,
    CHECK ((status = 'awaiting-return') = (reserved_for_rental IS NOT NULL))
);
-- Two configured slots never share one lock (removed slots are history).
CREATE UNIQUE INDEX carts_lock_unique ON carts(bus_index, board_index, lock_index)
    WHERE removed = 0;
CREATE INDEX carts_board ON carts(bus_index, board_index);
CREATE INDEX carts_status ON carts(status);

-- Rentals (seed: rentals). Open = active OR overdue, everywhere.
CREATE TABLE rentals (
    id                 TEXT PRIMARY KEY,
    cart_id            TEXT NOT NULL REFERENCES carts(id),
    branch_id          TEXT NOT NULL,
    user_phone         TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'active'
                       CHECK (status IN ('active', 'overdue', 'returned', 'returned-late',
                                         'cancelled')),
    start_time         INTEGER NOT NULL,          -- wall ms
    start_trusted      INTEGER NOT NULL CHECK (start_trusted IN (0, 1)),
    start_mono_ms      INTEGER NOT NULL,
    mono_boot          TEXT NOT NULL,
    allowed_ms         INTEGER NOT NULL CHECK (allowed_ms > 0),
    grace_ms           INTEGER NOT NULL CHECK (grace_ms >= 0),
    expected_return    INTEGER NOT NULL,          -- wall ms = start_time + allowed_ms
    release_confirmed  INTEGER NOT NULL DEFAULT 0 CHECK (release_confirmed IN (0, 1)),
    released_wall_ms   INTEGER,
    released_mono_ms   INTEGER,
    released_boot      TEXT,
    unlock_latency_ms  INTEGER,
    taken              INTEGER NOT NULL DEFAULT 0 CHECK (taken IN (0, 1)),
    taken_wall_ms      INTEGER,
    return_slot        TEXT REFERENCES carts(id), -- designated free slot
    returned_to        TEXT REFERENCES carts(id), -- slot the cart was docked in
    actual_return      INTEGER,                   -- wall ms
    return_trusted     INTEGER CHECK (return_trusted IN (0, 1)),
    duration_s         INTEGER,
    duration_trusted   INTEGER CHECK (duration_trusted IN (0, 1)),
    end_reason         TEXT,
    notes              TEXT,
    clock_trusted      INTEGER NOT NULL CHECK (clock_trusted IN (0, 1)),
    created_wall_ms    INTEGER NOT NULL,
    updated_wall_ms    INTEGER NOT NULL
);
-- One open rental per slot, enforced by the database.
CREATE UNIQUE INDEX rentals_open_cart ON rentals(cart_id)
    WHERE status IN ('active', 'overdue');
-- One open rental per phone is a rule (one_per_phone), checked in code with this index.
CREATE INDEX rentals_open_phone ON rentals(user_phone)
    WHERE status IN ('active', 'overdue');
CREATE INDEX rentals_status ON rentals(status);
CREATE INDEX rentals_history ON rentals(start_time DESC, id DESC);
CREATE INDEX rentals_phone_history ON rentals(user_phone, start_time DESC, id DESC);

-- Events (seed: telemetry); device_id is implicit on the edge.
CREATE TABLE telemetry (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type    TEXT NOT NULL,
    cart_id       TEXT,
    rental_id     TEXT,
    event_data    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(event_data)),
    wall_ms       INTEGER NOT NULL,
    clock_trusted INTEGER NOT NULL CHECK (clock_trusted IN (0, 1))
);
CREATE INDEX telemetry_type ON telemetry(event_type, id);

-- Transactional outbox: seq is the per-device sequence number (AUTOINCREMENT:
-- never reused, even after acknowledged rows are pruned). Written in the same
-- transaction as the change it describes. payload = snapshot of the entity.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,         -- e.g. rental.created, cart.updated, telemetry
    entity_type     TEXT NOT NULL CHECK (entity_type IN ('rental', 'cart', 'telemetry',
                                                          'command', 'device')),
    entity_id       TEXT NOT NULL,
    payload         TEXT NOT NULL CHECK (json_valid(payload)),
    created_wall_ms INTEGER NOT NULL,
    clock_trusted   INTEGER NOT NULL CHECK (clock_trusted IN (0, 1)),
    attempts        INTEGER NOT NULL DEFAULT 0,
    sent_wall_ms    INTEGER,               -- last send attempt (issue 4)
    acked           INTEGER NOT NULL DEFAULT 0 CHECK (acked IN (0, 1)),
    acked_wall_ms   INTEGER
);
CREATE INDEX outbox_unacked ON outbox(seq) WHERE acked = 0;

-- Commands from the cloud, for at-most-once execution (issue 4): the row is
-- written (state received/executing) before anything moves, so a crash in the
-- middle never runs a command twice.
CREATE TABLE command_log (
    id               TEXT PRIMARY KEY,      -- command id chosen by the cloud
    action           TEXT NOT NULL,
    args             TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(args)),
    issued_wall_ms   INTEGER,
    expires_wall_ms  INTEGER,
    received_wall_ms INTEGER NOT NULL,
    received_trusted INTEGER NOT NULL CHECK (received_trusted IN (0, 1)),
    state            TEXT NOT NULL DEFAULT 'received'
                     CHECK (state IN ('received', 'executing', 'done', 'failed', 'refused',
                                      'expired')),
    result           TEXT CHECK (result IS NULL OR json_valid(result)),
    updated_wall_ms  INTEGER NOT NULL
);
CREATE INDEX command_log_state ON command_log(state);
