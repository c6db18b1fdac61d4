-- 004_sync.sql (SQLite dialect) - the counterpart of
-- schema/cloud/postgres/004_sync.sql (edge -> cloud sync, issue 4): controllers
-- created by the sync carry the bus of their board; one row per (device, bus,
-- board).
ALTER TABLE controllers ADD COLUMN bus_index INTEGER CHECK (bus_index IS NULL OR bus_index BETWEEN 0 AND 255);
CREATE UNIQUE INDEX controllers_device_bus_board ON controllers (device_id, bus_index, controller_address)
    WHERE bus_index IS NOT NULL;

CREATE INDEX rentals_device ON rentals (device_id);
