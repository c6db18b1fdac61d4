-- NOT an endpoint: what rental counts in GET /api/chains/{id}/stats would cost - rentals by
-- status for a chain over 90 days (rentals has no chain_id: joins branches; the chain's
-- 10 branches each read through rentals_branch_start of 002, an index-only scan).
PREPARE cr AS SELECT r.status, count(*) FROM rentals r JOIN branches b ON b.id = r.branch_id WHERE b.chain_id = $1::uuid AND r.start_time >= to_timestamp($2::bigint / 1000.0) AND r.start_time < to_timestamp($3::bigint / 1000.0) GROUP BY 1;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE cr(:chain, :t_end_ms - 90 * 86400000::bigint, :t_end_ms);
