/* cw_store_pg.c - PostgreSQL backend of the cloud store (libpq).
 *
 * A small pool of connections (pool_size), each with every statement of the
 * table below prepared once after it connects (PQprepare), run with
 * PQexecPrepared: parameters always travel apart from the SQL. A connection
 * that breaks (server restarted, network) is dropped and reconnected the
 * next time it is taken from the pool, so the server recovers by itself;
 * while PostgreSQL is unreachable every call is CW_ERR_OFFLINE (HTTP 503).
 *
 * Migrations (schema/cloud/postgres/NNN_*.sql) run in one transaction under
 * pg_advisory_xact_lock, so several aggregators starting together against one
 * database apply each migration exactly once; the ledger is
 * cw_schema_migrations. Times are timestamptz in the database and
 * milliseconds since the epoch in the code (converted in the SQL). */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_migration.h"
#include "cw_store_int.h"

extern const struct cw_migration cw_cloud_pg_migrations[];
extern const int cw_cloud_pg_migrations_count;

#define PG_POOL_MAX 64
#define PG_CONNECT_TIMEOUT_S "3"
#define PG_DEFAULT_ACQUIRE_MS 5000
/* The channel of change notifications between instances (docs/CLOUD.md
 * "Live updates"), and the listener's reconnect backoff. */
#define PG_CHANNEL "cartwise_events"
#define PG_LISTEN_BACKOFF_MIN_MS 250
#define PG_LISTEN_BACKOFF_MAX_MS 10000
/* Arbitrary but fixed: the advisory lock key of our migrations ("CWMG"). */
#define PG_MIGRATE_LOCK_KEY "1129793351"

/* ms since the epoch <-> timestamptz */
#define MS(col) "(extract(epoch from " col ") * 1000)::bigint"
#define TS(p) "to_timestamp(" p "::bigint / 1000.0)"

#define CHAIN_COLS "id, name, slug, active, " MS("created_at") ", " MS("updated_at")
#define BRANCH_COLS                                                                       \
	"b.id, b.chain_id, b.code, b.name, b.address, b.city, b.latitude, b.longitude, "  \
	"b.active, " MS("b.created_at") ", " MS("b.updated_at")
#define USER_COLS "id, email, password_hash, role, chain_id, active, " MS("created_at")
#define DEVICE_COLS                                                                       \
	"d.id, d.branch_id, b.chain_id, d.device_name, d.mac_address, d.serial_number, "  \
	"d.status, " MS("d.last_heartbeat") ", d.firmware_version, d.health::text, "      \
	MS("d.created_at") ", " MS("d.updated_at")
#define COMMAND_COLS                                                                      \
	"c.id, c.device_id, c.branch_id, b.chain_id, c.action, c.args::text, c.state, "   \
	"c.created_by, " MS("c.created_at") ", " MS("c.expires_at") ", c.result::text"
#define ENROLL_COLS                                                                       \
	"e.id, e.branch_id, b.chain_id, e.created_by, " MS("e.created_at") ", "            \
	MS("e.expires_at") ", e.uses_left"

#define CART_COLS                                                                          \
	"c.id, c.branch_id, b.chain_id, ctl.device_id, c.controller_id, c.cart_number, "   \
	"c.locker_id, c.status, c.is_locked, " MS("c.last_used") ", c.maintenance_notes, " \
	MS("c.updated_at") ", ctl.bus_index, ctl.controller_address, ctl.status"
#define CART_FROM                                                                          \
	" FROM carts c JOIN branches b ON b.id = c.branch_id "                             \
	"LEFT JOIN controllers ctl ON ctl.id = c.controller_id "
#define RENTAL_COLS                                                                        \
	"r.id, r.cart_id, r.branch_id, r.device_id, c.cart_number, r.user_phone, "         \
	MS("r.start_time") ", " MS("r.expected_return") ", " MS("r.actual_return") ", "     \
	"r.clock_trusted, r.status, r.duration_minutes, r.notes, " MS("r.created_at")
#define RENTAL_FROM " FROM rentals r JOIN carts c ON c.id = r.cart_id "
#define TELEMETRY_COLS                                                                     \
	"t.id, t.device_id, t.branch_id, t.chain_id, t.seq, t.event_type, t.event_data::text, " \
	MS("t.\"timestamp\"") ", t.clock_trusted, " MS("t.received_at")
/* newest first; the cursor row is looked up within the same key, so an id of
 * another tenant positions nothing. Four variants a key (cw_store_int.h): a
 * parameter a variant does not use is still named ("$4 IS NULL", a one-time
 * filter) so that every variant takes the same parameters. */
#define TELEMETRY_SQL(key, type, after)                                                    \
	"SELECT " TELEMETRY_COLS " FROM telemetry t WHERE t." key " = $1::uuid "           \
	"AND t.\"timestamp\" >= " TS("$2") " AND t.\"timestamp\" < " TS("$3") " " type after
#define T_ANY "AND $4::text IS NULL "
#define T_ONE "AND t.event_type = $4::text "
#define C_NONE "AND $5::bigint IS NULL "
#define C_AFTER(key)                                                                       \
	"AND (t.\"timestamp\", t.id) < (SELECT \"timestamp\", id FROM telemetry "            \
	"WHERE id = $5::bigint AND " key " = $1::uuid) "
#define TELEMETRY_4(first, key, tail)                                                      \
	[first] = TELEMETRY_SQL(key, T_ANY, C_NONE) tail,                                  \
	[first + 1] = TELEMETRY_SQL(key, T_ONE, C_NONE) tail,                              \
	[first + 2] = TELEMETRY_SQL(key, T_ANY, C_AFTER(key)) tail,                        \
	[first + 3] = TELEMETRY_SQL(key, T_ONE, C_AFTER(key)) tail
#define LATE(now) "(r.status IN ('overdue', 'returned-late') OR " \
	"(r.status = 'active' AND r.expected_return < " TS(now) "))"
#define FINISHED "(r.status IN ('returned', 'returned-late') AND r.actual_return IS NOT NULL)"
/* The rental stats compute per row in double precision: extract() returns
 * numeric since PostgreSQL 14, which is slow per row (date_part() is still
 * double). Only the average is turned into numeric, once per group, so that
 * round() keeps numeric's half-away-from-zero rounding (the float8 -> numeric
 * cast keeps 15 significant digits, which also absorbs the double's error on
 * an average that is exactly .5). */
#define DURATION_MS "date_part('epoch', r.actual_return - r.start_time) * 1000"
#define AVG_DURATION_MS "round((avg(" DURATION_MS ") FILTER (WHERE " FINISHED "))::numeric)"

/* Telemetry of a chain by UTC day and event type (GET /api/chains/{id}/stats):
 * whole days [$6, $7) from the telemetry_daily rollup of migration 003, the
 * partial first day [$2, $3) and last day [$4, $5) (ms) from telemetry, so the
 * sum is exact. Two statements, without and with a branch manager's filter
 * ($8): in a generic plan "($8 IS NULL OR branch_id IN ...)" cannot be folded
 * away and the partial days would read branch_id from the heap instead of an
 * index-only scan of telemetry_chain_ts. date_part, not extract: double
 * precision, not numeric, per row. */
#define CHAIN_STATS_MANAGER(col)                                                           \
	"AND " col " IN (SELECT branch_id FROM user_branches WHERE user_id = $8::uuid) "
#define CHAIN_STATS_PARTIAL(from, to, filter)                                              \
	"SELECT floor(date_part('epoch', t.\"timestamp\") / 86400)::int AS day, "           \
	"t.event_type, count(*) AS n FROM telemetry t WHERE t.chain_id = $1::uuid "        \
	"AND t.\"timestamp\" >= " TS(from) " AND t.\"timestamp\" < " TS(to) " "           \
	filter "GROUP BY 1, 2"
#define CHAIN_STATS_SQL(daily_filter, tel_filter)                                          \
	"SELECT x.day, x.event_type, sum(x.n)::bigint FROM (SELECT d.day, d.event_type, d.n " \
	"FROM telemetry_daily d WHERE d.chain_id = $1::uuid AND d.day >= $6::int "         \
	"AND d.day < $7::int " daily_filter "UNION ALL "                                    \
	CHAIN_STATS_PARTIAL("$2", "$3", tel_filter) " UNION ALL "                          \
	CHAIN_STATS_PARTIAL("$4", "$5", tel_filter) ") x GROUP BY 1, 2 ORDER BY 1, 2"

/* A chain's branches compared (GET /api/chains/{id}/branch-stats): 1 chain,
 * 2..3 rental start range (ms), 4 now (overdue), 5 online after, 6 manager
 * (the _MANAGER statement only: in a generic plan "($6 IS NULL OR ...)"
 * would not fold away, see CHAIN_STATS_MANAGER). One statement: each branch
 * of the chain, and LATERAL over its rentals_branch_start range
 * (index-only), its carts and its devices. */
#define COMPARE_MANAGER \
	"AND b.id IN (SELECT branch_id FROM user_branches WHERE user_id = $6::uuid) "
#define BRANCH_COMPARE_SQL(filter)                                                         \
	"SELECT b.id, b.code, b.name, b.active, r.n, r.open, r.overdue, r.late, "           \
	"r.cancelled, r.finished, coalesce(r.avg_ms, 0), c.n, d.n, d.online "              \
	"FROM branches b CROSS JOIN LATERAL (SELECT count(*) AS n, "                        \
	"count(*) FILTER (WHERE r.status IN ('active', 'overdue')) AS open, "              \
	"count(*) FILTER (WHERE r.status = 'overdue' OR (r.status = 'active' "             \
	"AND r.expected_return < " TS("$4") ")) AS overdue, "                              \
	"count(*) FILTER (WHERE r.status = 'returned-late') AS late, "                     \
	"count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled, "                    \
	"count(*) FILTER (WHERE " FINISHED ") AS finished, "                               \
	AVG_DURATION_MS "::bigint AS avg_ms FROM rentals r WHERE r.branch_id = b.id "     \
	"AND r.start_time >= " TS("$2") " AND r.start_time < " TS("$3") ") r "             \
	"CROSS JOIN LATERAL (SELECT count(*) AS n FROM carts WHERE branch_id = b.id) c "  \
	"CROSS JOIN LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE last_heartbeat " \
	">= " TS("$5") " AND status <> 'offline') AS online FROM devices "                 \
	"WHERE branch_id = b.id) d WHERE b.chain_id = $1::uuid " filter                    \
	"ORDER BY b.code, b.id"

/* Same statements, same parameter numbers as cw_store_sqlite.c. Every
 * parameter has an explicit type so that the server never has to guess. */
static const char *const pg_sql[CW_SQL_COUNT] = {
	[CW_SQL_BEGIN] = "BEGIN",
	/* READ COMMITTED would give each statement its own snapshot */
	[CW_SQL_BEGIN_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
	[CW_SQL_COMMIT] = "COMMIT",
	[CW_SQL_ROLLBACK] = "ROLLBACK",
	[CW_SQL_PING] = "SELECT 1",
	[CW_SQL_USER_INSERT] =
		"INSERT INTO staff_users (id, email, password_hash, role, chain_id, active, "
		"created_at, updated_at) VALUES ($1::uuid, $2::text, $3::text, $4::text, $5::uuid, "
		"$6::boolean, " TS("$7") ", " TS("$7") ")",
	[CW_SQL_USER_GET] = "SELECT " USER_COLS " FROM staff_users WHERE id = $1::uuid",
	[CW_SQL_USER_GET_BY_EMAIL] = "SELECT " USER_COLS " FROM staff_users WHERE email = $1::text",
	[CW_SQL_USER_BRANCH_INSERT] =
		"INSERT INTO user_branches (user_id, branch_id) SELECT u.id, b.id "
		"FROM staff_users u, branches b WHERE u.id = $1::uuid AND b.id = $2::uuid "
		"AND u.role = 'branch-manager' AND u.chain_id = b.chain_id "
		"ON CONFLICT DO NOTHING",
	[CW_SQL_USER_MANAGES] =
		"SELECT 1 FROM user_branches WHERE user_id = $1::uuid AND branch_id = $2::uuid",
	[CW_SQL_CHAIN_INSERT] =
		"INSERT INTO chains (id, name, slug, active, created_at, updated_at) VALUES "
		"($1::uuid, $2::text, $3::text, $4::boolean, " TS("$5") ", " TS("$5") ")",
	[CW_SQL_CHAIN_GET] = "SELECT " CHAIN_COLS " FROM chains WHERE id = $1::uuid",
	[CW_SQL_CHAIN_UPDATE] = "UPDATE chains SET name = $2::text, slug = $3::text, "
				"active = $4::boolean, updated_at = " TS("$5") " WHERE id = $1::uuid",
	[CW_SQL_CHAIN_DELETE] = "DELETE FROM chains WHERE id = $1::uuid",
	[CW_SQL_CHAIN_LIST] = "SELECT " CHAIN_COLS " FROM chains "
			      "WHERE ($1::uuid IS NULL OR id > $1::uuid) "
			      "AND ($2::uuid IS NULL OR id = $2::uuid) ORDER BY id LIMIT $3::bigint",
	[CW_SQL_BRANCH_INSERT] =
		"INSERT INTO branches (id, chain_id, code, name, address, city, latitude, longitude, "
		"active, created_at, updated_at) VALUES ($1::uuid, $2::uuid, $3::text, $4::text, "
		"$5::text, $6::text, $7::numeric, $8::numeric, $9::boolean, " TS("$10") ", " TS("$10") ")",
	[CW_SQL_BRANCH_GET] = "SELECT " BRANCH_COLS " FROM branches b WHERE b.id = $1::uuid",
	[CW_SQL_BRANCH_LIST] =
		"SELECT " BRANCH_COLS " FROM branches b "
		"WHERE ($1::uuid IS NULL OR b.id > $1::uuid) "
		"AND ($2::uuid IS NULL OR b.chain_id = $2::uuid) "
		"AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM user_branches ub "
		"WHERE ub.user_id = $3::uuid AND ub.branch_id = b.id)) "
		"ORDER BY b.id LIMIT $4::bigint",
	[CW_SQL_BRANCH_STATS_CARTS] =
		"SELECT count(*), count(*) FILTER (WHERE status = 'available'), "
		"count(*) FILTER (WHERE status IN ('rented', 'awaiting-return')), "
		"count(*) FILTER (WHERE status = 'maintenance'), "
		"count(*) FILTER (WHERE status = 'fault') FROM carts WHERE branch_id = $1::uuid",
	[CW_SQL_BRANCH_STATS_RENTALS] =
		"SELECT count(*) FILTER (WHERE status IN ('active', 'overdue')), "
		"count(*) FILTER (WHERE status = 'overdue'), "
		"count(*) FILTER (WHERE start_time >= " TS("$2") ") "
		"FROM rentals WHERE branch_id = $1::uuid",
	[CW_SQL_BRANCH_STATS_DEVICES] =
		"SELECT count(*), count(*) FILTER (WHERE last_heartbeat >= " TS("$2") " "
		"AND status <> 'offline') FROM devices WHERE branch_id = $1::uuid",
	[CW_SQL_ENROLL_INSERT] =
		"INSERT INTO enrollment_codes (id, branch_id, code_hash, created_by, created_at, "
		"expires_at, uses_left) VALUES ($1::uuid, $2::uuid, $3::text, $4::uuid, " TS("$5") ", "
		TS("$6") ", $7::int)",
	[CW_SQL_ENROLL_CONSUME] =
		"UPDATE enrollment_codes SET uses_left = uses_left - 1 "
		"WHERE code_hash = $1::text AND uses_left > 0 AND expires_at > " TS("$3") " "
		"AND branch_id IN (SELECT id FROM branches WHERE code = $2::text AND active) "
		"RETURNING branch_id",
	[CW_SQL_DEVICE_UPSERT] =
		"INSERT INTO devices (id, branch_id, device_name, mac_address, serial_number, "
		"status, created_at, updated_at) VALUES ($1::uuid, $2::uuid, $3::text, $4::text, "
		"$5::text, 'offline', " TS("$6") ", " TS("$6") ") "
		"ON CONFLICT (mac_address) DO UPDATE SET device_name = excluded.device_name, "
		"serial_number = excluded.serial_number, updated_at = excluded.updated_at "
		"WHERE devices.branch_id = excluded.branch_id RETURNING id",
	[CW_SQL_DEVICE_GET] = "SELECT " DEVICE_COLS " FROM devices d "
			      "JOIN branches b ON b.id = d.branch_id WHERE d.id = $1::uuid",
	[CW_SQL_DEVICE_HEARTBEAT] =
		"UPDATE devices SET status = $2::text, "
		"firmware_version = coalesce($3::text, firmware_version), "
		"health = coalesce($4::jsonb, health), last_heartbeat = " TS("$5") ", "
		"updated_at = " TS("$5") " WHERE id = $1::uuid RETURNING branch_id",
	[CW_SQL_TOKENS_REVOKE] = "UPDATE device_tokens SET revoked = true, revoked_at = " TS("$2") " "
				 "WHERE device_id = $1::uuid AND NOT revoked",
	[CW_SQL_TOKEN_INSERT] = "INSERT INTO device_tokens (jti, device_id, issued_at, expires_at) "
				"VALUES ($1::uuid, $2::uuid, " TS("$3") ", " TS("$4") ")",
	[CW_SQL_TOKEN_CHECK] = "SELECT 1 FROM device_tokens "
			       "WHERE jti = $1::uuid AND device_id = $2::uuid AND NOT revoked",
	[CW_SQL_COMMAND_INSERT] =
		"INSERT INTO commands (id, device_id, branch_id, action, args, state, created_by, "
		"created_at, expires_at) SELECT $1::uuid, d.id, d.branch_id, $3::text, $4::jsonb, "
		"'pending', $5::uuid, " TS("$6") ", " TS("$7") " FROM devices d WHERE d.id = $2::uuid",
	[CW_SQL_COMMAND_GET] = "SELECT " COMMAND_COLS " FROM commands c "
			       "JOIN branches b ON b.id = c.branch_id WHERE c.id = $1::uuid",
	[CW_SQL_COMMANDS_EXPIRE] =
		"UPDATE commands SET state = 'expired', finished_at = " TS("$2") " "
		"WHERE device_id = $1::uuid AND state IN ('pending', 'delivered') "
		"AND expires_at <= " TS("$2"),
	[CW_SQL_COMMANDS_FOR_DEVICE] =
		"SELECT " COMMAND_COLS " FROM commands c JOIN branches b ON b.id = c.branch_id "
		"WHERE c.device_id = $1::uuid AND c.state IN ('pending', 'delivered') "
		"AND c.expires_at > " TS("$2") " ORDER BY c.id LIMIT $3::bigint",
	[CW_SQL_COMMANDS_MARK_DELIVERED] =
		"UPDATE commands SET state = 'delivered', delivered_at = " TS("$2") " "
		"WHERE device_id = $1::uuid AND state = 'pending' AND expires_at > " TS("$2") " "
		"AND id <= $3::uuid",
	[CW_SQL_TOKEN_REVOKE_ONE] = "UPDATE device_tokens SET revoked = true, revoked_at = " TS("$3") " "
				    "WHERE jti = $1::uuid AND device_id = $2::uuid AND NOT revoked",
	[CW_SQL_DEVICES_MQTT] = "SELECT d.id FROM devices d WHERE EXISTS (SELECT 1 FROM "
				"device_tokens t WHERE t.device_id = d.id AND NOT t.revoked "
				"AND t.expires_at > " TS("$1") ") ORDER BY d.id",
	[CW_SQL_DEVICES_ONLINE] = "SELECT count(*) FROM devices "
				  "WHERE last_heartbeat >= " TS("$1") " AND status <> 'offline'",
	[CW_SQL_CART_LIST] =
		"SELECT " CART_COLS CART_FROM "WHERE c.branch_id = $1::uuid "
		"AND ($2::text IS NULL OR c.status = $2::text) "
		"AND ($3::uuid IS NULL OR c.cart_number > (SELECT cart_number FROM carts "
		"WHERE id = $3::uuid AND branch_id = $1::uuid)) ORDER BY c.cart_number LIMIT $4::bigint",
	[CW_SQL_CART_GET] = "SELECT " CART_COLS CART_FROM "WHERE c.id = $1::uuid",
	[CW_SQL_RENTALS_ACTIVE] =
		"SELECT " RENTAL_COLS RENTAL_FROM "WHERE r.branch_id = $1::uuid "
		"AND r.status IN ('active', 'overdue') "
		"AND ($2::uuid IS NULL OR (r.expected_return, r.id) > (SELECT expected_return, id "
		"FROM rentals WHERE id = $2::uuid AND branch_id = $1::uuid)) "
		"ORDER BY r.expected_return, r.id LIMIT $3::bigint",
	[CW_SQL_RENTALS_HISTORY] =
		"SELECT " RENTAL_COLS RENTAL_FROM "WHERE r.branch_id = $1::uuid "
		"AND r.start_time >= " TS("$2") " AND r.start_time < " TS("$3") " "
		"AND ($4::text IS NULL OR r.user_phone = $4::text) "
		"AND ($5::text IS NULL OR r.status = $5::text) "
		"AND ($6::uuid IS NULL OR (r.start_time, r.id) < (SELECT start_time, id FROM rentals "
		"WHERE id = $6::uuid AND branch_id = $1::uuid)) "
		"ORDER BY r.start_time DESC, r.id DESC LIMIT $7::bigint",
	[CW_SQL_RENTAL_STATS] =
		"SELECT count(*), "
		"count(*) FILTER (WHERE r.status = 'active' AND r.expected_return >= " TS("$4") "), "
		"count(*) FILTER (WHERE r.status = 'overdue' OR "
		"(r.status = 'active' AND r.expected_return < " TS("$4") ")), "
		"count(*) FILTER (WHERE r.status = 'returned'), "
		"count(*) FILTER (WHERE r.status = 'returned-late'), "
		"count(*) FILTER (WHERE r.status = 'cancelled'), "
		"count(*) FILTER (WHERE " FINISHED "), "
		"coalesce(" AVG_DURATION_MS "::bigint, 0) "
		"FROM rentals r WHERE r.branch_id = $1::uuid AND r.start_time >= " TS("$2") " "
		"AND r.start_time < " TS("$3"),
	[CW_SQL_RENTAL_STATS_DAYS] =
		"SELECT floor(date_part('epoch', r.start_time) / 86400)::bigint AS day, count(*), "
		"count(*) FILTER (WHERE " LATE("$4") "), count(*) FILTER (WHERE " FINISHED "), "
		AVG_DURATION_MS "::bigint "
		"FROM rentals r WHERE r.branch_id = $1::uuid AND r.start_time >= " TS("$2") " "
		"AND r.start_time < " TS("$3") " GROUP BY 1 ORDER BY 1",
	TELEMETRY_4(CW_SQL_TELEMETRY_DEVICE, "device_id",
		    "ORDER BY t.\"timestamp\" DESC, t.id DESC LIMIT $6::bigint"),
	TELEMETRY_4(CW_SQL_TELEMETRY_BRANCH, "branch_id",
		    "ORDER BY t.\"timestamp\" DESC, t.id DESC LIMIT $6::bigint"),
	/* the manager filter stays optional: either way the walk is the chain's
	 * index, the filter only skips rows */
	TELEMETRY_4(CW_SQL_TELEMETRY_CHAIN, "chain_id",
		    "AND ($7::uuid IS NULL OR t.branch_id IN (SELECT branch_id "
		    "FROM user_branches WHERE user_id = $7::uuid)) "
		    "ORDER BY t.\"timestamp\" DESC, t.id DESC LIMIT $6::bigint"),
	[CW_SQL_USER_LIST] =
		"SELECT u.id, u.email, u.password_hash, u.role, u.chain_id, u.active, "
		MS("u.created_at") ", (SELECT string_agg(branch_id::text, ',' ORDER BY branch_id) "
		"FROM user_branches WHERE user_id = u.id) FROM staff_users u "
		"WHERE ($1::uuid IS NULL OR u.id > $1::uuid) AND ($2::uuid IS NULL OR u.chain_id = $2::uuid) "
		"ORDER BY u.id LIMIT $3::bigint",
	[CW_SQL_USER_UPDATE] =
		"UPDATE staff_users SET email = $2::text, password_hash = $3::text, role = $4::text, "
		"chain_id = $5::uuid, active = $6::boolean, updated_at = " TS("$7") " WHERE id = $1::uuid",
	[CW_SQL_USER_BRANCHES_CLEAR] = "DELETE FROM user_branches WHERE user_id = $1::uuid",
	[CW_SQL_USER_BRANCHES_GET] =
		"SELECT branch_id FROM user_branches WHERE user_id = $1::uuid ORDER BY branch_id",
	/* 1 key, 2 oldest live window start (now - window) */
	[CW_SQL_LOGIN_FAILURES_GET] =
		"SELECT failures, " MS("window_start") " FROM login_failures "
		"WHERE key_hash = $1::text AND window_start > " TS("$2"),
	/* 1 key, 2 now, 3 oldest live window start: one atomic upsert; the
	 * CASEs see the row as it was, so an expired window restarts at now
	 * with one failure (no read-modify-write between instances) */
	[CW_SQL_LOGIN_FAILURE_ADD] =
		"INSERT INTO login_failures AS f (key_hash, window_start, failures) "
		"VALUES ($1::text, " TS("$2") ", 1) ON CONFLICT (key_hash) DO UPDATE SET "
		"failures = CASE WHEN f.window_start > " TS("$3") " THEN f.failures + 1 ELSE 1 END, "
		"window_start = CASE WHEN f.window_start > " TS("$3") " THEN f.window_start "
		"ELSE excluded.window_start END "
		"RETURNING failures, " MS("window_start"),
	[CW_SQL_LOGIN_FAILURES_CLEAR] = "DELETE FROM login_failures WHERE key_hash = $1::text",
	/* 1 oldest live window start, 2 at most this many rows; SKIP LOCKED:
	 * instances pruning at once take different rows instead of waiting.
	 * ctid = ANY (ARRAY(...)), not key_hash IN (...): the generic plan
	 * does not know the LIMIT is small and joined the IN against a
	 * sequential scan of the whole table (676 ms at 200 000 rows); this way
	 * the rows found by the window index are deleted by TID (0.16 ms). The
	 * rows stay locked from the subquery to the delete, so their TIDs hold. */
	[CW_SQL_LOGIN_FAILURES_PRUNE] =
		"DELETE FROM login_failures WHERE ctid = ANY (ARRAY(SELECT ctid "
		"FROM login_failures WHERE window_start <= " TS("$1") " ORDER BY window_start "
		"LIMIT $2::bigint FOR UPDATE SKIP LOCKED))",
	/* edge -> cloud sync (issue 4): parameter numbers in cw_store.c. The
	 * upsert of the high-water row takes its row lock: a second batch of
	 * the same device waits for the first to commit and then reads the new
	 * mark (READ COMMITTED re-checks the conflicting row). */
	[CW_SQL_SYNC_HW_LOCK] =
		"INSERT INTO device_sync (device_id, high_water, updated_at) "
		"VALUES ($1::uuid, 0, " TS("$2") ") "
		"ON CONFLICT (device_id) DO UPDATE SET device_id = excluded.device_id "
		"RETURNING high_water",
	[CW_SQL_SYNC_HW_SET] = "UPDATE device_sync SET high_water = $2::bigint, "
			       "updated_at = " TS("$3") " WHERE device_id = $1::uuid",
	[CW_SQL_SYNC_HW_GET] = "SELECT high_water FROM device_sync WHERE device_id = $1::uuid",
	[CW_SQL_SYNC_CONTROLLER_UPSERT] =
		"INSERT INTO controllers (id, device_id, controller_address, bus_index, status, "
		"updated_at) VALUES ($1::uuid, $2::uuid, $4::int, $3::int, $5::text, " TS("$6") ") "
		"ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
		"updated_at = excluded.updated_at WHERE controllers.device_id = excluded.device_id",
	[CW_SQL_SYNC_CART_UPSERT] =
		"INSERT INTO carts (id, branch_id, cart_number, locker_id, controller_id, status, "
		"is_locked, last_used, maintenance_notes, updated_at) "
		"VALUES ($1::uuid, $2::uuid, $3::int, $4::int, $5::uuid, $6::text, $7::boolean, "
		TS("$8") ", $9::text, " TS("$10") ") "
		"ON CONFLICT (id) DO UPDATE SET cart_number = excluded.cart_number, "
		"locker_id = excluded.locker_id, controller_id = excluded.controller_id, "
		"status = excluded.status, is_locked = excluded.is_locked, "
		"last_used = excluded.last_used, maintenance_notes = excluded.maintenance_notes, "
		"updated_at = excluded.updated_at WHERE carts.branch_id = excluded.branch_id "
		"AND (carts.controller_id IS NULL OR carts.controller_id IN "
		"(SELECT id FROM controllers WHERE device_id = $11::uuid))",
	[CW_SQL_SYNC_CART_MINE] =
		"SELECT 1 FROM carts c JOIN controllers ctl ON ctl.id = c.controller_id "
		"WHERE c.id = $1::uuid AND c.branch_id = $2::uuid AND ctl.device_id = $3::uuid",
	[CW_SQL_SYNC_RENTAL_UPSERT] =
		"INSERT INTO rentals (id, cart_id, branch_id, device_id, user_phone, start_time, "
		"expected_return, actual_return, clock_trusted, status, duration_minutes, notes, "
		"created_at, updated_at) "
		"SELECT $1::uuid, c.id, $3::uuid, $4::uuid, $5::text, " TS("$6") ", " TS("$7") ", "
		TS("$8") ", $9::boolean, $10::text, $11::int, $12::text, " TS("$13") ", " TS("$14") " "
		"FROM carts c JOIN controllers ctl ON ctl.id = c.controller_id "
		"WHERE c.id = $2::uuid AND c.branch_id = $3::uuid AND ctl.device_id = $4::uuid "
		"ON CONFLICT (id) DO UPDATE SET cart_id = excluded.cart_id, "
		"user_phone = excluded.user_phone, start_time = excluded.start_time, "
		"expected_return = excluded.expected_return, actual_return = excluded.actual_return, "
		"clock_trusted = excluded.clock_trusted, status = excluded.status, "
		"duration_minutes = excluded.duration_minutes, notes = excluded.notes, "
		"updated_at = excluded.updated_at "
		"WHERE rentals.device_id = excluded.device_id AND rentals.branch_id = excluded.branch_id",
	[CW_SQL_SYNC_TELEMETRY_DETACH] =
		"UPDATE telemetry SET seq = NULL WHERE device_id = $1::uuid AND seq > $2::bigint",
	[CW_SQL_SYNC_TELEMETRY_INSERT] =
		"INSERT INTO telemetry (device_id, branch_id, chain_id, seq, event_type, event_data, "
		"\"timestamp\", clock_trusted, received_at) VALUES ($1::uuid, $2::uuid, $3::uuid, "
		"$4::bigint, $5::text, $6::jsonb, " TS("$7") ", $8::boolean, " TS("$9") ") "
		"ON CONFLICT (device_id, seq) DO NOTHING",
	[CW_SQL_SYNC_DEVICE_HEALTH] = "UPDATE devices SET health = $2::jsonb, "
				      "updated_at = " TS("$3") " WHERE id = $1::uuid",
	[CW_SQL_SYNC_COMMAND_RESULT] =
		"UPDATE commands SET state = $3::text, result = $4::jsonb, finished_at = " TS("$5") " "
		"WHERE id = $1::uuid AND device_id = $2::uuid "
		"AND state IN ('pending', 'delivered', 'expired')",
	[CW_SQL_CHAIN_EVENT_COUNTS] = CHAIN_STATS_SQL("", ""),
	[CW_SQL_CHAIN_EVENT_COUNTS_MANAGER] =
		CHAIN_STATS_SQL(CHAIN_STATS_MANAGER("d.branch_id"), CHAIN_STATS_MANAGER("t.branch_id")),
	/* 1 device: a pending or delivered command (expired or not) exists */
	/* the next version of the device in the insert itself; two PUTs at once
	 * may both compute it: the primary key refuses the second (409) */
	[CW_SQL_DEVICE_CONFIG_INSERT] =
		"INSERT INTO device_configs (device_id, version, body, created_by, created_at) "
		"SELECT $1::uuid, coalesce(max(version), 0) + 1, $2::jsonb, $3::uuid, " TS("$4") " "
		"FROM device_configs WHERE device_id = $1::uuid RETURNING version",
	[CW_SQL_DEVICE_CONFIG_GET] = "SELECT version, body::text FROM device_configs "
				     "WHERE device_id = $1::uuid ORDER BY version DESC LIMIT 1",
	[CW_SQL_DEVICE_CONFIG_VERSION] = "SELECT coalesce(max(version), 0) FROM device_configs "
					 "WHERE device_id = $1::uuid",
	[CW_SQL_COMMANDS_ANY_OPEN] = "SELECT 1 FROM commands WHERE device_id = $1::uuid "
				     "AND state IN ('pending', 'delivered') LIMIT 1",
	/* dashboards (issue 7): parameter numbers in cw_store.c */
	[CW_SQL_DEVICE_LIST] =
		"SELECT " DEVICE_COLS " FROM devices d JOIN branches b ON b.id = d.branch_id "
		"WHERE ($1::uuid IS NULL OR d.id > $1::uuid) "
		"AND ($2::uuid IS NULL OR b.chain_id = $2::uuid) "
		"AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM user_branches ub "
		"WHERE ub.user_id = $3::uuid AND ub.branch_id = d.branch_id)) "
		"ORDER BY d.id LIMIT $4::bigint",
	/* a branch's devices: devices_branch (branch_id, id) in id order */
	[CW_SQL_DEVICE_LIST_BRANCH] =
		"SELECT " DEVICE_COLS " FROM devices d JOIN branches b ON b.id = d.branch_id "
		"WHERE d.branch_id = $1::uuid AND ($2::uuid IS NULL OR d.id > $2::uuid) "
		"ORDER BY d.id LIMIT $3::bigint",
	[CW_SQL_BRANCH_UPDATE] =
		"UPDATE branches SET code = $2::text, name = $3::text, address = $4::text, "
		"city = $5::text, latitude = $6::numeric, longitude = $7::numeric, "
		"active = $8::boolean, updated_at = " TS("$9") " WHERE id = $1::uuid",
	[CW_SQL_ENROLL_LIST] =
		"SELECT " ENROLL_COLS " FROM enrollment_codes e JOIN branches b ON b.id = e.branch_id "
		"WHERE e.branch_id = $1::uuid AND ($2::uuid IS NULL OR e.id > $2::uuid) "
		"ORDER BY e.id LIMIT $3::bigint",
	[CW_SQL_ENROLL_GET] =
		"SELECT " ENROLL_COLS " FROM enrollment_codes e JOIN branches b ON b.id = e.branch_id "
		"WHERE e.id = $1::uuid",
	[CW_SQL_ENROLL_REVOKE] = "UPDATE enrollment_codes SET uses_left = 0 WHERE id = $1::uuid",
	[CW_SQL_BRANCH_COMPARE] = BRANCH_COMPARE_SQL(""),
	[CW_SQL_BRANCH_COMPARE_MANAGER] = BRANCH_COMPARE_SQL(COMPARE_MANAGER),

	/* branch analytics (issue 7): parameter numbers in cw_store.c */
	[CW_SQL_RENTAL_STATS_HOURS] =
		"SELECT floor(date_part('epoch', r.start_time) / 3600)::bigint, count(*) "
		"FROM rentals r WHERE r.branch_id = $1::uuid AND r.start_time >= " TS("$2") " "
		"AND r.start_time < " TS("$3") " GROUP BY 1 ORDER BY 1",
	[CW_SQL_RENTAL_DURATIONS] =
		"SELECT " CW_DURATION_COUNTS("(" DURATION_MS ")", "$4::bigint", "$5::bigint",
					     "$6::bigint", "$7::bigint", "$8::bigint") " "
		"FROM rentals r WHERE r.branch_id = $1::uuid AND r.start_time >= " TS("$2") " "
		"AND r.start_time < " TS("$3") " AND " FINISHED,
	/* the sum of the intervals, exact (microseconds), in ms at the end */
	[CW_SQL_RENTAL_RENTED_MS] =
		"SELECT coalesce(round(date_part('epoch', sum(least(x.e, " TS("$3") ") - "
		"greatest(x.s, " TS("$2") "))) * 1000)::bigint, 0) FROM (" CW_RENTED_SPANS(
			"$1::uuid", "r.start_time", "r.actual_return", TS("$2"), TS("$3"), TS("$4"))
		") x WHERE least(x.e, " TS("$3") ") > greatest(x.s, " TS("$2") ")",
	[CW_SQL_BRANCH_CARTS_IN_USE] =
		"SELECT count(*) FROM carts WHERE branch_id = $1::uuid AND status <> 'offline'",
	/* ->> is NULL for an event_data that is not an object; the cart's id is
	 * compared as text, so a cart_id that is no UUID matches nothing
	 * instead of failing the cast */
	[CW_SQL_BRANCH_FAULTS] =
		"SELECT c.id, c.cart_number, x.f, x.o FROM (SELECT "
		"t.event_data->>'cart_id' AS cart_id, " CW_FAULT_COUNTS " "
		"FROM telemetry t WHERE t.branch_id = $1::uuid AND " CW_FAULT_TYPES " "
		"AND t.\"timestamp\" >= " TS("$2") " AND t.\"timestamp\" < " TS("$3") " GROUP BY 1) x "
		"JOIN carts c ON c.branch_id = $1::uuid AND c.id::text = x.cart_id "
		"ORDER BY x.f + x.o DESC, c.cart_number, c.id LIMIT $4::bigint",
};

struct pg_conn {
	PGconn *c;
	bool busy;   /* taken from the pool */
	bool broken; /* reconnect before the next use */
	bool prepared[CW_SQL_COUNT];
	int pid; /* the server process: our own notifications are not news */
};

struct pg_store {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	int n;
	int acquire_ms;
	char *conninfo;
	struct pg_conn conns[PG_POOL_MAX];
	/* the LISTEN connection's thread (cw_store_listen) */
	pthread_t listener;
	bool listening;
	int stop_pipe[2];
	cw_store_notify_fn listen_fn;
	void *listen_ctx;
};

static int pg_latest_version(void)
{
	return cw_cloud_pg_migrations_count;
}

/* libpq's message on one log line: first line only, double quotes made
 * single so that the key="value" format stays parseable. */
static void one_line(char *dst, size_t cap, const char *msg)
{
	snprintf(dst, cap, "%s", msg ? msg : "");
	dst[strcspn(dst, "\r\n")] = '\0';
	for (char *p = dst; *p; p++)
		if (*p == '"')
			*p = '\'';
}

/* SQLSTATE classes (PostgreSQL manual, appendix A). */
static int pg_map_state(const char *state)
{
	if (!state)
		return CW_ERR_OFFLINE; /* no server answer at all */
	if (strcmp(state, "23505") == 0 || strcmp(state, "23503") == 0)
		return CW_ERR_CONFLICT; /* unique_violation, foreign_key_violation */
	if (strcmp(state, "23514") == 0 || strcmp(state, "23502") == 0 ||
	    strncmp(state, "22", 2) == 0)
		return CW_ERR_INVAL; /* check, not null, data exceptions */
	if (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
	    strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0)
		return CW_ERR_OFFLINE; /* connection exceptions, shutdown, cannot connect now */
	return CW_ERR_DB;
}

/* Prepares statement id on this connection the first time it is used (a
 * statement cannot be prepared before the migration created its tables). */
static int pg_prepare(struct pg_conn *pc, enum cw_sql id, const char *name)
{
	PGresult *r;
	bool ok;

	if (pc->prepared[id])
		return CW_OK;
	r = PQprepare(pc->c, name, pg_sql[id], 0, NULL);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok && PQstatus(pc->c) == CONNECTION_OK)
		cw_error("store.prepare", "backend=postgres stmt=%d msg=\"%s\"", (int)id,
			 PQresultErrorMessage(r));
	PQclear(r);
	if (!ok)
		return PQstatus(pc->c) == CONNECTION_OK ? CW_ERR_INTERNAL : CW_ERR_OFFLINE;
	pc->prepared[id] = true;
	return CW_OK;
}

/* Connects one pool slot. The connection string may carry a password: it
 * is never logged; errors are logged with libpq's message only. */
static int pg_connect(struct pg_store *s, struct pg_conn *pc)
{
	/* Session settings for an API of short statements (docs/ARCHITECTURE.md
	 * "PostgreSQL session: no JIT, no parallel workers"), and TCP
	 * keepalives and a TCP user timeout so that a call on a dead server's
	 * connection fails in about a minute ("PostgreSQL: keepalives"). Before
	 * dbname: a conninfo that sets its own keys overrides them (libpq keeps
	 * the last value of a repeated key). */
	const char *keys[] = {"options", "keepalives", "keepalives_idle", "keepalives_interval",
			      "keepalives_count", "tcp_user_timeout", "dbname", "connect_timeout",
			      "application_name", NULL};
	const char *vals[] = {"-c jit=off -c max_parallel_workers_per_gather=0", "1", "30", "10",
			      "3", "60000", s->conninfo, PG_CONNECT_TIMEOUT_S, "cartwise-cloud", NULL};

	if (pc->c)
		PQfinish(pc->c);
	/* expand_dbname=1: the first value is a whole conninfo string, and the
	 * PG* environment fills in what it does not say. */
	pc->c = PQconnectdbParams(keys, vals, 1);
	if (!pc->c)
		return CW_ERR_NOMEM;
	if (PQstatus(pc->c) != CONNECTION_OK) {
		char msg[256];
		one_line(msg, sizeof(msg), PQerrorMessage(pc->c));
		cw_warn("store.connect", "backend=postgres msg=\"%s\"", msg);
		PQfinish(pc->c);
		pc->c = NULL;
		pc->broken = true;
		pc->pid = 0;
		return CW_ERR_OFFLINE;
	}
	memset(pc->prepared, 0, sizeof(pc->prepared));
	pc->broken = false;
	pthread_mutex_lock(&s->lock);
	pc->pid = PQbackendPID(pc->c);
	pthread_mutex_unlock(&s->lock);
	return CW_OK;
}

static void pg_close(void *be)
{
	struct pg_store *s = be;

	if (!s)
		return;
	for (int i = 0; i < s->n; i++)
		if (s->conns[i].c)
			PQfinish(s->conns[i].c);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->freed);
	free(s->conninfo);
	free(s);
}

static int pg_open(const struct cw_store_config *cfg, void **be)
{
	struct pg_store *s;
	pthread_condattr_t ca;
	int rc;

	*be = NULL;
	if (cfg->pool_size < 1 || cfg->pool_size > PG_POOL_MAX || !cfg->conninfo)
		return CW_ERR_CONFIG;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CW_ERR_NOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->freed, &ca);
	pthread_condattr_destroy(&ca);
	s->n = cfg->pool_size;
	s->acquire_ms = cfg->acquire_timeout_ms > 0 ? cfg->acquire_timeout_ms : PG_DEFAULT_ACQUIRE_MS;
	s->conninfo = strdup(cfg->conninfo);
	if (!s->conninfo) {
		pg_close(s);
		return CW_ERR_NOMEM;
	}
	for (int i = 0; i < s->n; i++) {
		s->conns[i].broken = true; /* connected lazily */
	}
	/* Connect one now so that a wrong conninfo is reported at start. */
	rc = pg_connect(s, &s->conns[0]);
	if (rc != CW_OK) {
		pg_close(s);
		return rc;
	}
	*be = s;
	return CW_OK;
}

/* Every connection serves reads and writes alike: use does not matter. */
static int pg_conn_get(void *be, enum cw_conn_use use, void **conn)
{
	struct pg_store *s = be;
	struct pg_conn *pc = NULL;
	struct timespec deadline;
	int rc = CW_OK;

	(void)use;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += s->acquire_ms / 1000;
	deadline.tv_nsec += (long)(s->acquire_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->lock);
	while (!pc) {
		/* prefer a healthy connection; take a broken one only if none is */
		for (int i = 0; i < s->n && !pc; i++)
			if (!s->conns[i].busy && !s->conns[i].broken)
				pc = &s->conns[i];
		for (int i = 0; i < s->n && !pc; i++)
			if (!s->conns[i].busy)
				pc = &s->conns[i];
		if (pc)
			break;
		if (pthread_cond_timedwait(&s->freed, &s->lock, &deadline) == ETIMEDOUT) {
			pthread_mutex_unlock(&s->lock);
			cw_warn("store.pool_exhausted", "backend=postgres pool=%d", s->n);
			return CW_ERR_OFFLINE;
		}
	}
	pc->busy = true;
	pthread_mutex_unlock(&s->lock);
	/* reconnect outside the pool lock: it can take connect_timeout */
	if (pc->broken || !pc->c || PQstatus(pc->c) != CONNECTION_OK) {
		rc = pg_connect(s, pc);
		if (rc == CW_OK)
			cw_info("store.connected", "backend=postgres");
	}
	if (rc != CW_OK) {
		pthread_mutex_lock(&s->lock);
		pc->busy = false;
		pthread_cond_signal(&s->freed);
		pthread_mutex_unlock(&s->lock);
		return rc;
	}
	*conn = pc;
	return CW_OK;
}

static void pg_conn_put(void *be, void *conn)
{
	struct pg_store *s = be;
	struct pg_conn *pc = conn;

	/* a connection left inside a transaction (a bug or a lost COMMIT) is
	 * not given to the next caller as it is */
	if (pc->c && PQtransactionStatus(pc->c) != PQTRANS_IDLE)
		pc->broken = true;
	pthread_mutex_lock(&s->lock);
	pc->busy = false;
	pthread_cond_signal(&s->freed);
	pthread_mutex_unlock(&s->lock);
}

static int pg_exec(void *conn, enum cw_sql id, const struct cw_param *p, int np, cw_row_fn fn,
		   void *ctx, int64_t *changes)
{
	struct pg_conn *pc = conn;
	char bufs[CW_MAX_PARAMS][32];
	const char *vals[CW_MAX_PARAMS];
	const char *cols[32];
	char name[16];
	PGresult *r;
	ExecStatusType st;
	int rc = CW_OK;

	if (id < 0 || id >= CW_SQL_COUNT || np > CW_MAX_PARAMS)
		return CW_ERR_INTERNAL;
	for (int i = 0; i < np; i++) {
		switch (p[i].t) {
		case CW_P_TEXT:
			vals[i] = p[i].s;
			break;
		case CW_P_INT:
			snprintf(bufs[i], sizeof(bufs[i]), "%lld", (long long)p[i].i);
			vals[i] = bufs[i];
			break;
		case CW_P_BOOL:
			vals[i] = p[i].i ? "true" : "false";
			break;
		case CW_P_REAL:
			snprintf(bufs[i], sizeof(bufs[i]), "%.10f", p[i].d);
			vals[i] = bufs[i];
			break;
		default:
			vals[i] = NULL;
			break;
		}
	}
	snprintf(name, sizeof(name), "cw%d", (int)id);
	rc = pg_prepare(pc, id, name);
	if (rc == CW_ERR_OFFLINE)
		pc->broken = true;
	if (rc != CW_OK)
		return rc;
	r = PQexecPrepared(pc->c, name, np, vals, NULL, NULL, 0);
	st = PQresultStatus(r);
	if (st == PGRES_TUPLES_OK) {
		int rows = PQntuples(r), ncols = PQnfields(r);
		if (ncols > (int)(sizeof(cols) / sizeof(cols[0]))) {
			rc = CW_ERR_INTERNAL;
			goto out;
		}
		for (int row = 0; row < rows && fn && rc == CW_OK; row++) {
			for (int i = 0; i < ncols; i++)
				cols[i] = PQgetisnull(r, row, i) ? NULL : PQgetvalue(r, row, i);
			rc = fn(ctx, ncols, cols);
		}
	} else if (st != PGRES_COMMAND_OK) {
		const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
		rc = pg_map_state(state);
		if (rc == CW_ERR_OFFLINE || PQstatus(pc->c) != CONNECTION_OK) {
			pc->broken = true;
			rc = CW_ERR_OFFLINE;
			cw_warn("store.offline", "backend=postgres stmt=%d", (int)id);
		} else if (rc == CW_ERR_DB) {
			char msg[256];
			one_line(msg, sizeof(msg), PQresultErrorMessage(r));
			cw_error("store.postgres", "stmt=%d sqlstate=%s msg=\"%s\"", (int)id,
				 state ? state : "-", msg);
		}
		goto out;
	}
	if (changes) {
		const char *t = PQcmdTuples(r);
		*changes = (t && *t) ? strtoll(t, NULL, 10) : 0;
	}
out:
	PQclear(r);
	return rc;
}

/* Runs one static script (a whole migration file) on c: PQexec, because a
 * migration holds several statements and has no parameters. */
static int pg_script(PGconn *c, const char *sql, const char *what)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	int rc = CW_OK;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		char msg[256];
		rc = pg_map_state(r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL);
		one_line(msg, sizeof(msg), PQresultErrorMessage(r));
		if (rc == CW_ERR_OFFLINE)
			cw_warn("store.offline", "backend=postgres what=%s", what);
		else
			cw_error("store.migrate", "backend=postgres what=%s msg=\"%s\"", what, msg);
		if (rc != CW_ERR_OFFLINE)
			rc = CW_ERR_DB;
	}
	PQclear(r);
	return rc;
}

static int pg_read_version(PGconn *c, int *out)
{
	PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM cw_schema_migrations");
	int rc = CW_ERR_DB;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		*out = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
		rc = CW_OK;
	}
	PQclear(r);
	return rc;
}

static int pg_migrate(void *be, int *version)
{
	struct pg_store *s = be;
	struct pg_conn *pc = NULL;
	int cur = 0, rc;

	rc = pg_conn_get(s, CW_CONN_WRITE, (void **)&pc);
	if (rc != CW_OK)
		return rc;
	/* The transaction-level advisory lock serialises every migrating
	 * instance; the others wait, then see the new version and do nothing. */
	if ((rc = pg_script(pc->c, "BEGIN", "migrate.begin")) != CW_OK)
		goto out;
	if ((rc = pg_script(pc->c, "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK_KEY ")",
			    "migrate.lock")) != CW_OK ||
	    (rc = pg_script(pc->c,
			    "CREATE TABLE IF NOT EXISTS cw_schema_migrations ("
			    "version int PRIMARY KEY, name text NOT NULL, "
			    "applied_at timestamptz NOT NULL DEFAULT now())",
			    "migrate.ledger")) != CW_OK ||
	    (rc = pg_read_version(pc->c, &cur)) != CW_OK)
		goto fail;
	if (cur > cw_cloud_pg_migrations_count) {
		cw_error("store.too_new", "backend=postgres schema=%d known=%d msg=\"database was "
			 "written by a newer cartwise-cloud\"",
			 cur, cw_cloud_pg_migrations_count);
		rc = CW_ERR_DB;
		goto fail;
	}
	for (int i = cur; i < cw_cloud_pg_migrations_count; i++) {
		const struct cw_migration *m = &cw_cloud_pg_migrations[i];
		const char *vals[2];
		char num[16];
		PGresult *r;
		bool ok;

		if (m->version != i + 1) {
			rc = CW_ERR_INTERNAL;
			goto fail;
		}
		if ((rc = pg_script(pc->c, m->sql, m->name)) != CW_OK)
			goto fail;
		snprintf(num, sizeof(num), "%d", m->version);
		vals[0] = num;
		vals[1] = m->name;
		r = PQexecParams(pc->c, "INSERT INTO cw_schema_migrations (version, name) "
				 "VALUES ($1::int, $2::text)", 2, NULL, vals, NULL, NULL, 0);
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		if (!ok) {
			rc = CW_ERR_DB;
			goto fail;
		}
		cw_info("store.migrated", "backend=postgres version=%d file=%s", m->version, m->name);
		cur = m->version;
	}
	if ((rc = pg_script(pc->c, "COMMIT", "migrate.commit")) != CW_OK)
		goto out;
	if (version)
		*version = cur;
	goto out;
fail:
	PQclear(PQexec(pc->c, "ROLLBACK"));
out:
	pg_conn_put(s, pc);
	return rc;
}

static void pg_pool_stats(void *be, int *total, int *in_use)
{
	struct pg_store *s = be;
	int n = 0;

	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->n; i++)
		n += s->conns[i].busy ? 1 : 0;
	pthread_mutex_unlock(&s->lock);
	*total = s->n;
	*in_use = n;
}

/* ---- change notifications between instances ---- */

static int pg_notify(void *be, const char *payload)
{
	const char *vals[] = {payload};
	struct pg_conn *pc;
	PGresult *r;
	void *conn;
	int rc = pg_conn_get(be, CW_CONN_WRITE, &conn);

	if (rc != CW_OK)
		return rc;
	pc = conn;
	r = PQexecParams(pc->c, "SELECT pg_notify('" PG_CHANNEL "', $1::text)", 1, NULL, vals,
			 NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = PQstatus(pc->c) == CONNECTION_OK ? CW_ERR_DB : CW_ERR_OFFLINE;
		if (rc == CW_ERR_OFFLINE)
			pc->broken = true;
	}
	PQclear(r);
	pg_conn_put(be, conn);
	return rc;
}

/* Whether pid is the server process of one of our pool's connections. */
static bool pg_own_pid(struct pg_store *s, int pid)
{
	bool own = false;

	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->n && !own; i++)
		own = s->conns[i].pid == pid;
	pthread_mutex_unlock(&s->lock);
	return own;
}

/* Sleeps ms or until unlisten: true when told to stop. */
static bool pg_listen_wait(struct pg_store *s, int ms)
{
	struct pollfd pf = {.fd = s->stop_pipe[0], .events = POLLIN};

	return poll(&pf, 1, ms) != 0;
}

/* The listener: LISTEN on its own connection, then wait on its socket (and
 * the stop pipe) with poll; PQconsumeInput + PQnotifies hand each
 * notification to listen_fn. A lost connection is reconnected with backoff,
 * and listen_fn(NULL) says that notifications may have been missed. */
static void *pg_listen_main(void *arg)
{
	struct pg_store *s = arg;
	struct pg_conn lc;
	int backoff = PG_LISTEN_BACKOFF_MIN_MS;
	bool had_one = false, stop = false;

	memset(&lc, 0, sizeof(lc));
	while (!stop) {
		PGresult *r;
		bool ok;

		if (pg_connect(s, &lc) != CW_OK) {
			stop = pg_listen_wait(s, backoff);
			backoff = backoff * 2 > PG_LISTEN_BACKOFF_MAX_MS ? PG_LISTEN_BACKOFF_MAX_MS
									  : backoff * 2;
			continue;
		}
		r = PQexec(lc.c, "LISTEN " PG_CHANNEL);
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		if (!ok) {
			char msg[256];
			one_line(msg, sizeof(msg), PQerrorMessage(lc.c));
			cw_warn("store.listen", "backend=postgres msg=\"%s\"", msg);
			PQfinish(lc.c);
			lc.c = NULL;
			stop = pg_listen_wait(s, backoff);
			continue;
		}
		backoff = PG_LISTEN_BACKOFF_MIN_MS;
		cw_info("store.listening", "backend=postgres channel=" PG_CHANNEL " reconnect=%s",
			had_one ? "yes" : "no");
		if (had_one)
			s->listen_fn(s->listen_ctx, NULL);
		had_one = true;
		while (!stop) {
			struct pollfd pf[2] = {{.fd = PQsocket(lc.c), .events = POLLIN},
					       {.fd = s->stop_pipe[0], .events = POLLIN}};
			PGnotify *n;
			if (poll(pf, 2, -1) < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			if (pf[1].revents) {
				stop = true;
				break;
			}
			if (!PQconsumeInput(lc.c))
				break;
			while ((n = PQnotifies(lc.c))) {
				if (!pg_own_pid(s, n->be_pid))
					s->listen_fn(s->listen_ctx, n->extra);
				PQfreemem(n);
			}
			if (PQstatus(lc.c) != CONNECTION_OK)
				break;
		}
		if (!stop)
			cw_warn("store.listen_lost", "backend=postgres msg=\"reconnecting; every live "
				"stream gets a full refresh\"");
		PQfinish(lc.c);
		lc.c = NULL;
		if (!stop)
			stop = pg_listen_wait(s, PG_LISTEN_BACKOFF_MIN_MS);
	}
	return NULL;
}

static int pg_listen(void *be, cw_store_notify_fn fn, void *ctx)
{
	struct pg_store *s = be;

	if (s->listening)
		return CW_ERR_STATE;
	if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		return CW_ERR_IO;
	s->listen_fn = fn;
	s->listen_ctx = ctx;
	if (pthread_create(&s->listener, NULL, pg_listen_main, s) != 0) {
		close(s->stop_pipe[0]);
		close(s->stop_pipe[1]);
		return CW_ERR_NOMEM;
	}
	s->listening = true;
	return CW_OK;
}

static void pg_unlisten(void *be)
{
	struct pg_store *s = be;
	ssize_t w;

	if (!s->listening)
		return;
	w = write(s->stop_pipe[1], "x", 1);
	(void)w; /* a full pipe already says stop */
	pthread_join(s->listener, NULL);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
	s->listening = false;
}

const struct cw_store_backend cw_store_pg_backend = {
	.name = "postgres",
	.open = pg_open,
	.close = pg_close,
	.migrate = pg_migrate,
	.latest_version = pg_latest_version,
	.conn_get = pg_conn_get,
	.conn_put = pg_conn_put,
	.exec = pg_exec,
	.pool_stats = pg_pool_stats,
	.notify = pg_notify,
	.listen = pg_listen,
	.unlisten = pg_unlisten,
};
