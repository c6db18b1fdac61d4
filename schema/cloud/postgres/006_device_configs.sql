-- 006_device_configs.sql (PostgreSQL dialect) - versioned per-device
-- configuration (issue 4, docs/SYNC.md "Down: configuration").
-- schema/cloud/sqlite/006_device_configs.sql is the same in SQLite's dialect.
-- Self-contained: it only creates its own table, so it can be renumbered when
-- merged.
--
-- Every PUT /api/devices/{id}/config adds a row with the next version of that
-- device (1, 2, ...); the newest row is the device's configuration. Rows are
-- never updated, so an edge that pulled version N can always be told whether
-- it is current. body is the JSON object of the sections the cloud manages
-- (buses, carts, rules, revoked_tokens), shape-checked by the API.
CREATE TABLE device_configs (
    device_id  uuid NOT NULL REFERENCES devices(id),
    version    bigint NOT NULL CHECK (version >= 1),
    body       jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object'),
    created_by uuid REFERENCES staff_users(id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, version)
);
