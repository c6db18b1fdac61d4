-- 002_telemetry_indexes.sql (SQLite dialect) - the counterpart of
-- schema/cloud/postgres/002_telemetry_indexes.sql (migrations are numbered per
-- dialect, 1..N without gaps: scripts/embed_sql.py). Same indexes; SQLite has
-- no INCLUDE, and every index of a rowid table already ends with the rowid
-- (telemetry.id), so the chain index stays as it is.

-- lists filtered by event type (?event_type=)
CREATE INDEX telemetry_chain_type_ts ON telemetry (chain_id, event_type, ts_ms);
CREATE INDEX telemetry_branch_type_ts ON telemetry (branch_id, event_type, ts_ms);

-- rental stats and history of a branch over a time range: the columns the
-- stats statements read are in the index (covering), id is the keyset tie-break
DROP INDEX rentals_branch_start;
CREATE INDEX rentals_branch_start ON rentals (branch_id, start_ms, id, status,
    expected_return_ms, actual_return_ms);
