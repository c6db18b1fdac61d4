-- 001_init.sql (PostgreSQL dialect) - the cloud aggregator's database: the
-- seed's schema plus staff accounts, enrollment codes, device tokens,
-- commands and the per-device sync state. schema/cloud/sqlite/001_init.sql
-- is the same schema in SQLite's dialect: keep the two in step.
--
-- Conventions: ids are UUIDv7 (uuid type; time-ordered, so ORDER BY id is
-- creation order and "id > cursor" paginates); times are timestamptz (the
-- code passes and reads milliseconds since the epoch); JSON is jsonb; every
-- list is tenant-scoped and its index leads with chain_id or branch_id.
-- Applied by src/cloud/cw_store_pg.c in one transaction under an advisory
-- lock, recorded in cw_schema_migrations (created by the code).

CREATE TABLE chains (
    id          uuid PRIMARY KEY,
    name        varchar(255) NOT NULL CHECK (length(name) >= 1),
    slug        varchar(100) NOT NULL UNIQUE CHECK (length(slug) >= 1),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE branches (
    id          uuid PRIMARY KEY,
    chain_id    uuid NOT NULL REFERENCES chains(id),
    code        varchar(64) NOT NULL CHECK (length(code) >= 1),
    name        varchar(255) NOT NULL CHECK (length(name) >= 1),
    address     text,
    city        varchar(100),
    latitude    numeric(10, 8) CHECK (latitude BETWEEN -90 AND 90),
    longitude   numeric(11, 8) CHECK (longitude BETWEEN -180 AND 180),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chain_id, code)
);
CREATE INDEX branches_chain ON branches (chain_id, id);

CREATE TABLE devices (
    id               uuid PRIMARY KEY,
    branch_id        uuid NOT NULL REFERENCES branches(id),
    device_name      varchar(100) NOT NULL CHECK (length(device_name) >= 1),
    mac_address      varchar(17) NOT NULL UNIQUE CHECK (length(mac_address) = 17),
    serial_number    varchar(100),
    status           varchar(50) NOT NULL DEFAULT 'offline'
                     CHECK (status IN ('offline', 'online', 'degraded', 'maintenance')),
    last_heartbeat   timestamptz,
    firmware_version varchar(20),
    health           jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_branch ON devices (branch_id, id);

CREATE TABLE controllers (
    id                 uuid PRIMARY KEY,
    device_id          uuid NOT NULL REFERENCES devices(id),
    controller_address int NOT NULL CHECK (controller_address BETWEEN 0 AND 255),
    port               varchar(50),
    protocol           varchar(16) NOT NULL DEFAULT 'modbus' CHECK (protocol IN ('modbus', 'kerong')),
    baudrate           int NOT NULL DEFAULT 19200 CHECK (baudrate > 0),
    status             varchar(50) NOT NULL DEFAULT 'inactive'
                       CHECK (status IN ('inactive', 'online', 'offline')),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX controllers_device ON controllers (device_id);

CREATE TABLE carts (
    id                uuid PRIMARY KEY,
    branch_id         uuid NOT NULL REFERENCES branches(id),
    cart_number       int NOT NULL CHECK (cart_number >= 1),
    locker_id         int NOT NULL CHECK (locker_id >= 0),
    controller_id     uuid REFERENCES controllers(id),
    status            varchar(50) NOT NULL DEFAULT 'available'
                      CHECK (status IN ('available', 'rented', 'awaiting-return',
                                        'maintenance', 'fault', 'offline')),
    is_locked         boolean NOT NULL DEFAULT true,
    last_used         timestamptz,
    maintenance_notes text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (branch_id, cart_number)
);

CREATE TABLE rentals (
    id               uuid PRIMARY KEY,
    cart_id          uuid NOT NULL REFERENCES carts(id),
    branch_id        uuid NOT NULL REFERENCES branches(id),
    device_id        uuid REFERENCES devices(id),
    user_phone       varchar(20) NOT NULL CHECK (length(user_phone) >= 1),
    start_time       timestamptz NOT NULL,
    expected_return  timestamptz NOT NULL,
    actual_return    timestamptz,
    clock_trusted    boolean NOT NULL DEFAULT true,
    status           varchar(50) NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'overdue', 'returned', 'returned-late',
                                       'cancelled')),
    duration_minutes int,
    notes            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rentals_branch_status ON rentals (branch_id, status, start_time);
CREATE INDEX rentals_branch_start ON rentals (branch_id, start_time);
CREATE INDEX rentals_cart ON rentals (cart_id, start_time);

-- Telemetry carries branch_id and chain_id copied from its device so that
-- branch- and chain-wide queries need no join. Partitioning by time is left
-- to the 10-million-row benchmark of issue 3 (it can be added by a later
-- migration without changing the code's queries).
CREATE TABLE telemetry (
    id            bigserial PRIMARY KEY,
    device_id     uuid NOT NULL REFERENCES devices(id),
    branch_id     uuid NOT NULL REFERENCES branches(id),
    chain_id      uuid NOT NULL REFERENCES chains(id),
    seq           bigint,
    event_type    varchar(50) NOT NULL CHECK (length(event_type) >= 1),
    event_data    jsonb,
    "timestamp"   timestamptz NOT NULL,
    clock_trusted boolean NOT NULL DEFAULT true,
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, seq)
);
CREATE INDEX telemetry_device_ts ON telemetry (device_id, "timestamp");
CREATE INDEX telemetry_branch_ts ON telemetry (branch_id, "timestamp");
CREATE INDEX telemetry_chain_ts ON telemetry (chain_id, "timestamp");

CREATE TABLE staff_users (
    id            uuid PRIMARY KEY,
    email         varchar(254) NOT NULL UNIQUE CHECK (length(email) >= 3 AND email = lower(email)),
    password_hash varchar(128) NOT NULL CHECK (length(password_hash) >= 1),
    role          varchar(20) NOT NULL
                  CHECK (role IN ('platform-admin', 'chain-admin', 'branch-manager')),
    chain_id      uuid REFERENCES chains(id),
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'platform-admin') = (chain_id IS NULL))
);
CREATE INDEX staff_users_chain ON staff_users (chain_id, id);

CREATE TABLE user_branches (
    user_id   uuid NOT NULL REFERENCES staff_users(id) ON DELETE CASCADE,
    branch_id uuid NOT NULL REFERENCES branches(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, branch_id)
);
CREATE INDEX user_branches_branch ON user_branches (branch_id);

CREATE TABLE enrollment_codes (
    id          uuid PRIMARY KEY,
    branch_id   uuid NOT NULL REFERENCES branches(id),
    code_hash   char(64) NOT NULL UNIQUE,
    created_by  uuid REFERENCES staff_users(id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    uses_left   int NOT NULL CHECK (uses_left >= 0)
);
CREATE INDEX enrollment_codes_branch ON enrollment_codes (branch_id, id);

CREATE TABLE device_tokens (
    jti        uuid PRIMARY KEY,
    device_id  uuid NOT NULL REFERENCES devices(id),
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked    boolean NOT NULL DEFAULT false,
    revoked_at timestamptz
);
CREATE INDEX device_tokens_device ON device_tokens (device_id);

CREATE TABLE commands (
    id           uuid PRIMARY KEY,
    device_id    uuid NOT NULL REFERENCES devices(id),
    branch_id    uuid NOT NULL REFERENCES branches(id),
    action       varchar(50) NOT NULL CHECK (length(action) >= 1),
    args         jsonb NOT NULL DEFAULT '{}',
    state        varchar(16) NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'delivered', 'succeeded', 'failed', 'expired')),
    created_by   uuid REFERENCES staff_users(id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    delivered_at timestamptz,
    finished_at  timestamptz,
    result       jsonb
);
CREATE INDEX commands_device_state ON commands (device_id, state, id);
CREATE INDEX commands_branch ON commands (branch_id, id);

CREATE TABLE device_sync (
    device_id  uuid PRIMARY KEY REFERENCES devices(id),
    high_water bigint NOT NULL DEFAULT 0 CHECK (high_water >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
