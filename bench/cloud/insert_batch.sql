-- insert_batch.sql - the cost of migration 003's insert trigger on a telemetry batch
-- (bench/cloud/run-cloud.sh, part 2): one device of :branch delivers 500 events of
-- the last 500 s before :t_end_ms (mixed types, as the sync of issue 4 would insert
-- them), timed with EXPLAIN ANALYZE (Execution Time includes the AFTER triggers:
-- the 3 foreign-key checks a row and, with :with_trigger true, telemetry_daily_ins).
-- Without it the trigger is dropped inside the transaction (a disabled trigger with a
-- transition table would still make PostgreSQL collect the transition table), and
-- everything is rolled back, so each batch finds the same table.
\set ON_ERROR_STOP 1
BEGIN;
\if :with_trigger
\else
DROP TRIGGER telemetry_daily_ins ON telemetry;
\endif
EXPLAIN (ANALYZE)
INSERT INTO telemetry (device_id, branch_id, chain_id, seq, event_type, event_data, "timestamp",
                       received_at)
SELECT d.id, d.branch_id, b.chain_id, 1000000000 + g,
       (ARRAY['heartbeat','heartbeat','heartbeat','unlock','lock','rental_started',
              'rental_ended','door_open'])[1 + g % 8],
       jsonb_build_object('locker', g % 24, 'board', 1 + g % 4),
       to_timestamp((:t_end_ms - 500000 + g * 1000::bigint) / 1000.0), now()
FROM (SELECT id, branch_id FROM devices WHERE branch_id = :branch::uuid ORDER BY id LIMIT 1) d
JOIN branches b ON b.id = d.branch_id
CROSS JOIN generate_series(0, 499) g;
ROLLBACK;
