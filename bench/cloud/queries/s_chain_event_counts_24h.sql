-- NOT an endpoint (the API has no telemetry stats yet): chain-wide events by type over the
-- last 24 hours, what a chain dashboard's telemetry stats would run.
EXPLAIN (ANALYZE, BUFFERS)
SELECT event_type, count(*) FROM telemetry
WHERE chain_id = :chain::uuid AND "timestamp" >= to_timestamp((:t_end_ms - extract(epoch from interval '24 hours') * 1000) / 1000.0)
  AND "timestamp" < to_timestamp(:t_end_ms / 1000.0)
GROUP BY event_type;
