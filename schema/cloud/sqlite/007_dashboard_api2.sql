-- 007_dashboard_api2.sql (SQLite dialect) - the counterpart of
-- schema/cloud/postgres/007_dashboard_api2.sql (see there for the why): the
-- rentals of a branch by return time, for the utilisation's rentals started
-- before the range and returned after its start. SQLite has no INCLUDE: the
-- columns the statement reads are key columns.
CREATE INDEX rentals_branch_return ON rentals (branch_id, actual_return_ms, start_ms, status);
