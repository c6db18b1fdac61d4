-- c_chain_stats_90d with max_parallel_workers_per_gather = 0: on a busy 2-core machine the
-- launch of parallel workers cost more than the scans they share (../chain_stats.sql).
SET max_parallel_workers_per_gather = 0;
\set range_days 90
\set is_manager false
\ir ../chain_stats.sql
