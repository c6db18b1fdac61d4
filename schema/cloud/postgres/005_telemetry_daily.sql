-- 005_telemetry_daily.sql (PostgreSQL dialect) - daily telemetry counts for the
-- chain-wide stats (GET /api/chains/{id}/stats; issue 3's target: a chain-wide
-- stats query over 10 million telemetry rows <= 100 ms). Counting a chain's
-- rows on demand took 225 ms for 7 days and 2.5 s for 90 days
-- (docs/BENCHMARKS-CLOUD.md, part 2); the stats statement reads whole UTC days
-- from this table and only the partial first and last day from telemetry, so
-- the answer stays exact. schema/cloud/sqlite/005_telemetry_daily.sql is the
-- SQLite counterpart: keep the two in step.
--
-- day = UTC days since 1970-01-01 (floor(epoch seconds / 86400)), an integer in
-- both dialects. The key leads with chain_id and day so that a chain's range is
-- one index range; branch_id follows for the branch-manager filter. No foreign
-- keys: the rows are derived from telemetry, whose own keys hold, and a check
-- per upserted row would only slow the trigger.
--
-- Kept exact by triggers on every change of telemetry, in the same transaction:
--   INSERT   one statement-level trigger with a transition table: a batch of
--            N rows is one upsert per (branch, day, event_type) it touches,
--            not N row triggers (issue 4's sync inserts telemetry in batches).
--   DELETE   the same, subtracting (a retention job that deletes old telemetry
--            removes its days from the counts too; rows that reach 0 go away).
--   UPDATE   subtract the old rows, add the new ones (nothing in the code
--            updates telemetry today; this keeps a manual fix from skewing).
--   TRUNCATE empties the rollup.
-- Retention decision: the counts follow telemetry exactly; keeping long-term
-- counts after deleting raw rows would make a range that straddles the
-- retention horizon disagree with its own partial days. If long-term counts are
-- wanted, copy them to an archive table before deleting.
--
-- Upserts are done in key order so that two concurrent batches that touch the
-- same keys lock them in the same order (no deadlock; the second waits for the
-- first to commit).

CREATE TABLE telemetry_daily (
    chain_id   uuid NOT NULL,
    day        int NOT NULL,
    branch_id  uuid NOT NULL,
    event_type varchar(50) NOT NULL,
    n          bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (chain_id, day, branch_id, event_type)
);

CREATE FUNCTION cw_telemetry_daily_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO telemetry_daily AS d (chain_id, day, branch_id, event_type, n)
    SELECT chain_id, floor(date_part('epoch', "timestamp") / 86400)::int, branch_id,
           event_type, count(*)
    FROM cw_new GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (chain_id, day, branch_id, event_type) DO UPDATE SET n = d.n + excluded.n;
    RETURN NULL;
END $$;

-- subtracts the rows of the transition table cw_old
CREATE FUNCTION cw_telemetry_daily_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH o AS (
        SELECT chain_id, floor(date_part('epoch', "timestamp") / 86400)::int AS day,
               branch_id, event_type, count(*) AS n
        FROM cw_old GROUP BY 1, 2, 3, 4
    )
    UPDATE telemetry_daily d SET n = d.n - o.n FROM o
    WHERE d.chain_id = o.chain_id AND d.day = o.day AND d.branch_id = o.branch_id
      AND d.event_type = o.event_type;
    DELETE FROM telemetry_daily WHERE n = 0;
    RETURN NULL;
END $$;

CREATE FUNCTION cw_telemetry_daily_upd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH o AS (
        SELECT chain_id, floor(date_part('epoch', "timestamp") / 86400)::int AS day,
               branch_id, event_type, count(*) AS n
        FROM cw_old GROUP BY 1, 2, 3, 4
    )
    UPDATE telemetry_daily d SET n = d.n - o.n FROM o
    WHERE d.chain_id = o.chain_id AND d.day = o.day AND d.branch_id = o.branch_id
      AND d.event_type = o.event_type;
    INSERT INTO telemetry_daily AS d (chain_id, day, branch_id, event_type, n)
    SELECT chain_id, floor(date_part('epoch', "timestamp") / 86400)::int, branch_id,
           event_type, count(*)
    FROM cw_new GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (chain_id, day, branch_id, event_type) DO UPDATE SET n = d.n + excluded.n;
    DELETE FROM telemetry_daily WHERE n = 0;
    RETURN NULL;
END $$;

CREATE FUNCTION cw_telemetry_daily_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE telemetry_daily;
    RETURN NULL;
END $$;

CREATE TRIGGER telemetry_daily_ins AFTER INSERT ON telemetry
    REFERENCING NEW TABLE AS cw_new FOR EACH STATEMENT EXECUTE FUNCTION cw_telemetry_daily_ins();
CREATE TRIGGER telemetry_daily_del AFTER DELETE ON telemetry
    REFERENCING OLD TABLE AS cw_old FOR EACH STATEMENT EXECUTE FUNCTION cw_telemetry_daily_del();
CREATE TRIGGER telemetry_daily_upd AFTER UPDATE ON telemetry
    REFERENCING OLD TABLE AS cw_old NEW TABLE AS cw_new
    FOR EACH STATEMENT EXECUTE FUNCTION cw_telemetry_daily_upd();
CREATE TRIGGER telemetry_daily_truncate AFTER TRUNCATE ON telemetry
    FOR EACH STATEMENT EXECUTE FUNCTION cw_telemetry_daily_truncate();

-- Backfill, in the migration's transaction. CREATE TRIGGER above took a lock on
-- telemetry that conflicts with inserts, held until the migration commits: an
-- insert committed before it is seen by this statement (a new snapshot in READ
-- COMMITTED), one that comes later waits and then fires the trigger. So every
-- row is counted once. About 20 s on 10 million rows (inserts wait that long).
INSERT INTO telemetry_daily (chain_id, day, branch_id, event_type, n)
SELECT chain_id, floor(date_part('epoch', "timestamp") / 86400)::int, branch_id, event_type,
       count(*)
FROM telemetry GROUP BY 1, 2, 3, 4;
