-- CW_SQL_TELEMETRY_CHAIN_TYPE of src/cloud/cw_store_pg.c (macros expanded), prepared like the
-- server prepares it; parameters: 1 chain, 2 from ms, 3 to ms, 4 event_type, 5 cursor id,
-- 6 limit + 1, 7 manager id (branch managers only).
-- the same with the generic plan (PostgreSQL may switch a prepared statement to it after 5 runs)
SET plan_cache_mode = force_generic_plan;
PREPARE q AS SELECT t.id, t.device_id, t.branch_id, t.chain_id, t.seq, t.event_type, t.event_data::text, (extract(epoch from t."timestamp") * 1000)::bigint, t.clock_trusted, (extract(epoch from t.received_at) * 1000)::bigint FROM telemetry t WHERE t.chain_id = $1::uuid AND t."timestamp" >= to_timestamp($2::bigint / 1000.0) AND t."timestamp" < to_timestamp($3::bigint / 1000.0) AND t.event_type = $4::text AND $5::bigint IS NULL AND ($7::uuid IS NULL OR t.branch_id IN (SELECT branch_id FROM user_branches WHERE user_id = $7::uuid)) ORDER BY t."timestamp" DESC, t.id DESC LIMIT $6::bigint;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q(:chain, 0, 253402300799999, 'lock_fault', NULL, 51, NULL);
