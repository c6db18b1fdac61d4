-- 002_telemetry_indexes.sql (PostgreSQL dialect) - indexes for the chain- and
-- branch-wide telemetry lists and the rental stats, chosen with the
-- 10-million-row benchmark (bench/cloud/run-cloud.sh, docs/BENCHMARKS-CLOUD.md
-- has the before/after figures). schema/cloud/sqlite/002_telemetry_indexes.sql
-- is the SQLite counterpart.
--
-- Not partitioned by time: the sync of issue 4 relies on UNIQUE (device_id,
-- seq), which a table partitioned by "timestamp" cannot enforce (a unique
-- constraint of a partitioned table must contain the partition key), and every
-- list is already an index range scan that reads only the rows of its page.
-- Revisit with a retention policy (dropping old partitions is cheaper than
-- DELETE) once the sync carries its own dedupe table.
--
-- Plain CREATE INDEX (not CONCURRENTLY: migrations run in one transaction):
-- on an existing large table it blocks telemetry inserts while it builds
-- (47 s for this whole file on 10 million telemetry rows, 2 cores).

-- 1. Lists filtered by event type (?event_type=): without these the newest-first
--    walk of (chain_id, "timestamp") fetches and discards every row of other
--    types, all the rows of the range when the type is rare or absent.
CREATE INDEX telemetry_chain_type_ts ON telemetry (chain_id, event_type, "timestamp", id);
CREATE INDEX telemetry_branch_type_ts ON telemetry (branch_id, event_type, "timestamp", id);

-- 2. The chain index gets id as a key column (ORDER BY "timestamp" DESC, id
--    DESC and the (timestamp, id) < cursor keyset come straight from the
--    index, no incremental sort) and event_type as a payload, so that counting
--    a chain's events by type over a range is an index-only scan.
DROP INDEX telemetry_chain_ts;
CREATE INDEX telemetry_chain_ts ON telemetry (chain_id, "timestamp", id) INCLUDE (event_type);

-- 3. Rental stats and history of a branch over a time range: the columns the
--    stats statements read ride in the index (index-only scan), and id is the
--    tie-break of the history's (start_time, id) keyset.
DROP INDEX rentals_branch_start;
CREATE INDEX rentals_branch_start ON rentals (branch_id, start_time, id)
    INCLUDE (status, expected_return, actual_return);
