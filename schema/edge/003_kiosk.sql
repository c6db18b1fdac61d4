-- 003_kiosk.sql - customer sign-in at the kiosk (issue 5, src/edge/cw_kiosk.c,
-- docs/KIOSK.md).

-- The one pending one-time code of a phone, as a keyed hash only (never the
-- code). A new request replaces the row; the per-phone failure count lives in
-- kiosk_limits, so a new code never resets it.
CREATE TABLE otp_codes (
    phone      TEXT PRIMARY KEY CHECK (length(phone) BETWEEN 2 AND 16),
    code_hash  TEXT NOT NULL CHECK (length(code_hash) = 64), -- hex,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0)
) WITHOUT ROWID;

-- One row per counted event for the sliding-window rate limits:
-- otp_request_phone / otp_request_kiosk / otp_fail_phone / otp_fail_kiosk / pin_fail_kiosk /
-- kiosk_action (subject: the phone or the kiosk's address). Rows older than
-- the longest window are pruned.
CREATE TABLE kiosk_limits (
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX kiosk_limits_by_subject ON kiosk_limits(kind, subject, at_ms);

-- The audit trail of sign-ins and what they were used for: who (phone, and
-- the staff member for an offline sign-in), which token, which rental, from
-- which kiosk, when, and whether the clock was trusted then. Never a code,
-- never a token.
CREATE TABLE kiosk_audit (
    id            INTEGER PRIMARY KEY,
    at_ms         INTEGER NOT NULL,
    clock_trusted INTEGER NOT NULL CHECK (clock_trusted IN (0, 1)),
    event         TEXT NOT NULL,
    phone         TEXT,
    kiosk         TEXT,
    staff_id      TEXT,
    token_id      TEXT,
    rental_id     TEXT,
    detail        TEXT
);
CREATE INDEX kiosk_audit_by_phone ON kiosk_audit(phone, at_ms);
