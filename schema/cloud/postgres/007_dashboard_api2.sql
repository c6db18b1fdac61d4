-- 007_dashboard_api2.sql (PostgreSQL dialect) - an index for the branch
-- utilisation of GET /api/branches/{id}/rentals/stats (issue 7).
-- schema/cloud/sqlite/007_dashboard_api2.sql is the same in SQLite's dialect.
-- Self-contained (one index), so it can be renumbered when merged.
--
-- Utilisation counts the rentals that overlap the range, also those started
-- before it and returned after its start. Found through rentals_branch_start,
-- those are every rental of the branch started before the range (the
-- branch's whole history): 0.45-1 s for 315 000 rentals of one branch; by
-- return time, only the ones returned after the range's start: 7-9 ms
-- (docs/CLOUD.md "Decisions"). start_time and status ride along for an
-- index-only scan.
CREATE INDEX rentals_branch_return ON rentals (branch_id, actual_return)
    INCLUDE (start_time, status);
