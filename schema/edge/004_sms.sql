-- 004_sms.sql - the durable queue of text messages (src/edge/cw_sms.c).
--
-- A row is a message not yet sent: the text holds a one-time code, so the
-- row is DELETED once it is sent or expired (the connection runs with
-- PRAGMA secure_delete=ON, which zeroes deleted content in the file).
-- Times are wall-clock milliseconds since the Unix epoch.
CREATE TABLE sms_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: cw_sms_wait asks by id
    "to"            TEXT    NOT NULL,                  -- E.164, "+972521234567"
    text            TEXT    NOT NULL,
    created         INTEGER NOT NULL,
    expires_wall_ms INTEGER NOT NULL,                  -- not sent after this
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_try        INTEGER NOT NULL,                  -- due from this time on
    state           TEXT    NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'failing')),
    last_error      TEXT    NOT NULL DEFAULT ''        -- never the text, never a secret
);
CREATE INDEX sms_outbox_due ON sms_outbox (next_try, id);
