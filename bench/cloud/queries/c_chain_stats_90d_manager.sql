-- GET /api/chains/{id}/stats (CW_SQL_CHAIN_EVENT_COUNTS_MANAGER; needs 003) by a branch manager of 1 of the
-- chain's 10 branches, 90 days: ../chain_stats.sql has the statement.
\set range_days 90
\set is_manager true
\ir ../chain_stats.sql
