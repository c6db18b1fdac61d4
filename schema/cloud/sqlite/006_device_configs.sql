-- 006_device_configs.sql (SQLite dialect) - the counterpart of
-- schema/cloud/postgres/006_device_configs.sql (see there for the why):
-- versioned per-device configuration, one row per version, newest = current.
CREATE TABLE device_configs (
    device_id  TEXT NOT NULL REFERENCES devices(id),
    version    INTEGER NOT NULL CHECK (version >= 1),
    body       TEXT NOT NULL CHECK (json_valid(body) AND json_type(body) = 'object'),
    created_by TEXT REFERENCES staff_users(id),
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, version)
) WITHOUT ROWID;
