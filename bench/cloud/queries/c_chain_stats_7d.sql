-- GET /api/chains/{id}/stats (CW_SQL_CHAIN_EVENT_COUNTS; needs 003, run-cloud.sh times c_* files
-- only after applying it), a platform or chain admin, the 7d before the run's hour
-- (so the first and the last day are partial): ../chain_stats.sql has the statement.
\set range_days 7
\set is_manager false
\ir ../chain_stats.sql
