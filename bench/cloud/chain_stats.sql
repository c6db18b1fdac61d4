-- chain_stats.sql - included (\ir) by queries/c_chain_stats_*.sql: times
-- CW_SQL_CHAIN_EVENT_COUNTS (:is_manager false) or CW_SQL_CHAIN_EVENT_COUNTS_MANAGER
-- (true, for :manager) of src/cloud/cw_store_pg.c (macros expanded; needs migration
-- 003), GET /api/chains/{id}/stats, over the :range_days days before :t_end_ms.
-- Parameters: 1 chain, 2..3 first partial range (ms), 4..5 last partial range,
-- 6..7 whole UTC days [lo, hi) read from telemetry_daily, 8 manager. Computed like
-- cw_store_chain_event_counts().
SELECT :t_end_ms - :range_days * 86400000::bigint AS f, :t_end_ms::bigint AS t \gset
SELECT (:f + 86399999) / 86400000 AS lo, :t / 86400000 AS hi \gset
SELECT :f AS h0,
       CASE WHEN :lo < :hi THEN :lo * 86400000::bigint ELSE :t END AS h1,
       CASE WHEN :lo < :hi THEN :hi * 86400000::bigint ELSE :t END AS t0,
       :t AS t1,
       CASE WHEN :lo < :hi THEN :lo ELSE 0 END AS dlo,
       CASE WHEN :lo < :hi THEN :hi ELSE 0 END AS dhi \gset
\if :is_manager
PREPARE csm AS SELECT x.day, x.event_type, sum(x.n)::bigint FROM (SELECT d.day, d.event_type, d.n FROM telemetry_daily d WHERE d.chain_id = $1::uuid AND d.day >= $6::int AND d.day < $7::int AND d.branch_id IN (SELECT branch_id FROM user_branches WHERE user_id = $8::uuid) UNION ALL SELECT floor(date_part('epoch', t."timestamp") / 86400)::int AS day, t.event_type, count(*) AS n FROM telemetry t WHERE t.chain_id = $1::uuid AND t."timestamp" >= to_timestamp($2::bigint / 1000.0) AND t."timestamp" < to_timestamp($3::bigint / 1000.0) AND t.branch_id IN (SELECT branch_id FROM user_branches WHERE user_id = $8::uuid) GROUP BY 1, 2 UNION ALL SELECT floor(date_part('epoch', t."timestamp") / 86400)::int AS day, t.event_type, count(*) AS n FROM telemetry t WHERE t.chain_id = $1::uuid AND t."timestamp" >= to_timestamp($4::bigint / 1000.0) AND t."timestamp" < to_timestamp($5::bigint / 1000.0) AND t.branch_id IN (SELECT branch_id FROM user_branches WHERE user_id = $8::uuid) GROUP BY 1, 2) x GROUP BY 1, 2 ORDER BY 1, 2;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE csm(:chain, :h0, :h1, :t0, :t1, :dlo, :dhi, :manager);
\else
PREPARE cs AS SELECT x.day, x.event_type, sum(x.n)::bigint FROM (SELECT d.day, d.event_type, d.n FROM telemetry_daily d WHERE d.chain_id = $1::uuid AND d.day >= $6::int AND d.day < $7::int UNION ALL SELECT floor(date_part('epoch', t."timestamp") / 86400)::int AS day, t.event_type, count(*) AS n FROM telemetry t WHERE t.chain_id = $1::uuid AND t."timestamp" >= to_timestamp($2::bigint / 1000.0) AND t."timestamp" < to_timestamp($3::bigint / 1000.0) GROUP BY 1, 2 UNION ALL SELECT floor(date_part('epoch', t."timestamp") / 86400)::int AS day, t.event_type, count(*) AS n FROM telemetry t WHERE t.chain_id = $1::uuid AND t."timestamp" >= to_timestamp($4::bigint / 1000.0) AND t."timestamp" < to_timestamp($5::bigint / 1000.0) GROUP BY 1, 2) x GROUP BY 1, 2 ORDER BY 1, 2;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE cs(:chain, :h0, :h1, :t0, :t1, :dlo, :dhi);
\endif
