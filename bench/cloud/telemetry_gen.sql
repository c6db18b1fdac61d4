-- telemetry_gen.sql - fills a migrated cartwise-cloud PostgreSQL database
-- with the fleet of the telemetry benchmark (bench/cloud/run-cloud.sh):
-- 3 chains, 30 branches (10 a chain), 300 devices (10 a branch), 1500 carts,
-- :rows telemetry rows (default 10 million) spread evenly over the 90 days
-- before :'t_end', and one rental row per 10 telemetry rows (1 million).
-- Rows are inserted in time order, as a fleet would deliver them.
--
-- Run with psql -v rows=10000000 -v t_end="'2026-11-28 00:00:00+00'".
-- Loading speed is not what is measured: the foreign-key triggers are
-- skipped (session_replication_role = replica, the generator produces
-- consistent keys) and the telemetry/rental indexes of 001 are dropped
-- before the load and rebuilt after it with the same definitions.
\set ON_ERROR_STOP 1
SET session_replication_role = replica;
SET maintenance_work_mem = '1GB';
SET max_parallel_maintenance_workers = 2;

CREATE TEMP TABLE gen_dev AS
SELECT k,
       gen_random_uuid() AS id,
       ((k - 1) / 10) + 1 AS branch_no,
       ((k - 1) / 100) + 1 AS chain_no
FROM generate_series(1, 300) k;

INSERT INTO chains (id, name, slug)
SELECT gen_random_uuid(), 'Bench chain ' || c, 'bench-chain-' || c FROM generate_series(1, 3) c;
CREATE TEMP TABLE gen_chain AS
SELECT row_number() OVER (ORDER BY slug) AS chain_no, id FROM chains WHERE slug LIKE 'bench-chain-%';

CREATE TEMP TABLE gen_branch AS
SELECT b AS branch_no, gen_random_uuid() AS id, ((b - 1) / 10) + 1 AS chain_no
FROM generate_series(1, 30) b;
INSERT INTO branches (id, chain_id, code, name)
SELECT gb.id, gc.id, 'BR-' || lpad(gb.branch_no::text, 3, '0'), 'Bench branch ' || gb.branch_no
FROM gen_branch gb JOIN gen_chain gc USING (chain_no);

INSERT INTO devices (id, branch_id, device_name, mac_address, status, last_heartbeat)
SELECT d.id, gb.id, 'bench-' || d.k,
       '02:be:00:00:' || lpad(to_hex(d.k / 256), 2, '0') || ':' || lpad(to_hex(d.k % 256), 2, '0'),
       'online', now()
FROM gen_dev d JOIN gen_branch gb USING (branch_no);

-- 50 carts a branch
INSERT INTO carts (id, branch_id, cart_number, locker_id, status)
SELECT gen_random_uuid(), gb.id, n, n - 1,
       (ARRAY['available','available','available','rented','maintenance'])[1 + n % 5]
FROM gen_branch gb, generate_series(1, 50) n;

DROP INDEX IF EXISTS telemetry_device_ts, telemetry_branch_ts, telemetry_chain_ts;

-- ceil(:rows / 300) rows a device; device k's n-th event at t_end - 90 days + n * step + k * step / 300
CREATE TEMP TABLE gen_map AS
SELECT d.k, d.id AS device_id, gb.id AS branch_id, gc.id AS chain_id
FROM gen_dev d JOIN gen_branch gb USING (branch_no) JOIN gen_chain gc ON gc.chain_no = d.chain_no;

INSERT INTO telemetry (device_id, branch_id, chain_id, seq, event_type, event_data, "timestamp",
                       received_at)
SELECT m.device_id, m.branch_id, m.chain_id, g.n,
       -- faults are rare (0.1 % each), the rest is routine
       CASE WHEN (g.n + m.k) % 1000 = 0 THEN 'lock_fault'
            WHEN (g.n + m.k) % 1000 = 500 THEN 'board_offline'
            ELSE (ARRAY['heartbeat','heartbeat','heartbeat','unlock','lock','rental_started',
                        'rental_ended','door_open'])[1 + (g.n * 7 + m.k) % 8] END,
       jsonb_build_object('locker', (g.n + m.k) % 24, 'board', 1 + (g.n % 4)),
       ts.t, ts.t + interval '2 seconds'
FROM generate_series(0, ((:rows + 299) / 300) - 1) g(n)
CROSS JOIN LATERAL (SELECT * FROM gen_map) m
CROSS JOIN LATERAL (SELECT (:t_end::timestamptz - interval '90 days')
                   + (g.n + m.k / 300.0) * (interval '90 days' / ((:rows + 299) / 300)) AS t) ts;

CREATE INDEX telemetry_device_ts ON telemetry (device_id, "timestamp");
CREATE INDEX telemetry_branch_ts ON telemetry (branch_id, "timestamp");
CREATE INDEX telemetry_chain_ts ON telemetry (chain_id, "timestamp");

-- rentals: one per 10 telemetry rows, 45 minutes each, the last 2 hours still open
DROP INDEX IF EXISTS rentals_branch_status, rentals_branch_start, rentals_cart;
CREATE TEMP TABLE gen_cart AS
SELECT row_number() OVER (ORDER BY c.branch_id, c.cart_number) AS cn, c.id, c.branch_id
FROM carts c JOIN gen_branch gb ON gb.id = c.branch_id;
INSERT INTO rentals (id, cart_id, branch_id, user_phone, start_time, expected_return,
                     actual_return, status, duration_minutes, created_at, updated_at)
SELECT gen_random_uuid(), c.id, c.branch_id, '+4670' || lpad((r % 100000)::text, 7, '0'),
       st, st + interval '2 hours',
       CASE WHEN st > :t_end::timestamptz - interval '2 hours' THEN NULL ELSE st + interval '45 minutes' END,
       CASE WHEN st > :t_end::timestamptz - interval '2 hours' THEN 'active'
            WHEN r % 50 = 0 THEN 'returned-late' ELSE 'returned' END,
       45, st, st
FROM generate_series(0, (:rows / 10) - 1) r
JOIN gen_cart c ON c.cn = 1 + (r % 1500)
CROSS JOIN LATERAL (SELECT (:t_end::timestamptz - interval '90 days')
                   + r * (interval '90 days' / (:rows / 10)) AS st) s;
CREATE INDEX rentals_branch_status ON rentals (branch_id, status, start_time);
CREATE INDEX rentals_branch_start ON rentals (branch_id, start_time);
CREATE INDEX rentals_cart ON rentals (cart_id, start_time);

RESET session_replication_role;
VACUUM (ANALYZE) telemetry;
VACUUM (ANALYZE) rentals;
ANALYZE;
