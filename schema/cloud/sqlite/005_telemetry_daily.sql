-- 005_telemetry_daily.sql (SQLite dialect) - the counterpart of
-- schema/cloud/postgres/005_telemetry_daily.sql (read its header: why, the key,
-- the retention decision). Daily telemetry counts per (chain, UTC day, branch,
-- event type), kept exact by triggers in the inserting transaction. SQLite has
-- no statement-level triggers: these are row triggers with an upsert (one
-- b-tree update per telemetry row, in the same write transaction).
--
-- day = floor(ts_ms / 86400000) (UTC days since 1970-01-01); SQLite's integer
-- division truncates towards zero, hence the CASE for times before 1970.

CREATE TABLE telemetry_daily (
    chain_id   TEXT NOT NULL,
    day        INTEGER NOT NULL,
    branch_id  TEXT NOT NULL,
    event_type TEXT NOT NULL,
    n          INTEGER NOT NULL CHECK (n >= 0),
    PRIMARY KEY (chain_id, day, branch_id, event_type)
) WITHOUT ROWID;

CREATE TRIGGER telemetry_daily_ins AFTER INSERT ON telemetry
BEGIN
    INSERT INTO telemetry_daily (chain_id, day, branch_id, event_type, n)
    VALUES (NEW.chain_id,
            CASE WHEN NEW.ts_ms >= 0 THEN NEW.ts_ms / 86400000
                 ELSE -((-NEW.ts_ms - 1) / 86400000) - 1 END,
            NEW.branch_id, NEW.event_type, 1)
    ON CONFLICT (chain_id, day, branch_id, event_type) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER telemetry_daily_del AFTER DELETE ON telemetry
BEGIN
    UPDATE telemetry_daily SET n = n - 1
    WHERE chain_id = OLD.chain_id AND branch_id = OLD.branch_id
      AND event_type = OLD.event_type
      AND day = CASE WHEN OLD.ts_ms >= 0 THEN OLD.ts_ms / 86400000
                     ELSE -((-OLD.ts_ms - 1) / 86400000) - 1 END;
    DELETE FROM telemetry_daily
    WHERE chain_id = OLD.chain_id AND branch_id = OLD.branch_id
      AND event_type = OLD.event_type AND n = 0
      AND day = CASE WHEN OLD.ts_ms >= 0 THEN OLD.ts_ms / 86400000
                     ELSE -((-OLD.ts_ms - 1) / 86400000) - 1 END;
END;

CREATE TRIGGER telemetry_daily_upd AFTER UPDATE OF chain_id, branch_id, event_type, ts_ms
ON telemetry
BEGIN
    UPDATE telemetry_daily SET n = n - 1
    WHERE chain_id = OLD.chain_id AND branch_id = OLD.branch_id
      AND event_type = OLD.event_type
      AND day = CASE WHEN OLD.ts_ms >= 0 THEN OLD.ts_ms / 86400000
                     ELSE -((-OLD.ts_ms - 1) / 86400000) - 1 END;
    INSERT INTO telemetry_daily (chain_id, day, branch_id, event_type, n)
    VALUES (NEW.chain_id,
            CASE WHEN NEW.ts_ms >= 0 THEN NEW.ts_ms / 86400000
                 ELSE -((-NEW.ts_ms - 1) / 86400000) - 1 END,
            NEW.branch_id, NEW.event_type, 1)
    ON CONFLICT (chain_id, day, branch_id, event_type) DO UPDATE SET n = n + 1;
    DELETE FROM telemetry_daily WHERE n = 0;
END;

-- backfill (the migration runs in one write transaction: no insert in between)
INSERT INTO telemetry_daily (chain_id, day, branch_id, event_type, n)
SELECT chain_id,
       CASE WHEN ts_ms >= 0 THEN ts_ms / 86400000 ELSE -((-ts_ms - 1) / 86400000) - 1 END,
       branch_id, event_type, count(*)
FROM telemetry GROUP BY 1, 2, 3, 4;
