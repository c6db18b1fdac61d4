-- 002_revoked_tokens.sql - ids (jti) of customer tokens the chain revoked,
-- from the cloud's configuration (issue 4, docs/SYNC.md "Down:
-- configuration"). The kiosk (issue 5) refuses a token whose jti is here,
-- also offline. The whole table is replaced with each applied configuration
-- (and at start from <data_dir>/cloud-config.json), in one transaction.
CREATE TABLE revoked_tokens (
    jti            TEXT PRIMARY KEY CHECK (length(jti) BETWEEN 1 AND 64),
    config_version INTEGER NOT NULL CHECK (config_version >= 1)
) WITHOUT ROWID;
