-- 004_sync.sql (PostgreSQL dialect) - edge -> cloud sync (issue 4, docs/SYNC.md).
-- schema/cloud/sqlite/004_sync.sql is the same in SQLite's dialect.
--
-- A cart's command target is the device of its controller (carts.controller_id
-- -> controllers.device_id). The sync creates one controllers row per (device,
-- bus, board) of the carts a device reports, with an id derived from those
-- three (UUIDv8 of a BLAKE2b hash, src/cloud/cw_store.c), so a retried batch
-- upserts the same row. bus_index records the bus (controller_address is the
-- board's address on it); the unique index keeps one row per lock board even
-- if the id derivation ever changed.
ALTER TABLE controllers ADD COLUMN bus_index int CHECK (bus_index BETWEEN 0 AND 255);
CREATE UNIQUE INDEX controllers_device_bus_board ON controllers (device_id, bus_index, controller_address)
    WHERE bus_index IS NOT NULL;

-- Rentals of a device (the sync checks that a rental id is this device's).
CREATE INDEX rentals_device ON rentals (device_id);
