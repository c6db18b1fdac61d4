/* cw_store_sqlite.c - SQLite backend of the cloud store (embedded default).
 *
 * One writer connection behind a mutex, plus a pool of read-only
 * connections (cfg->pool_size, one per server thread). SQLite admits one
 * writer at a time anyway, and a mutex hands the writer over without the
 * busy handler's sleeps or WAL's SQLITE_BUSY_SNAPSHOT; WAL lets the readers
 * read beside the writer, each in a snapshot of what was committed when its
 * read transaction began. Every statement that writes and every write
 * transaction runs on the writer; a statement that only reads, or a
 * read-only transaction, on a reader (cw_store_int.h: cw_conn_use). A
 * reader refuses any statement that is not sqlite3_stmt_readonly(), so a
 * write can never land there. Each connection prepares its own statements
 * on first use and keeps them.
 *
 * WAL so that readers never block the writer nor it them;
 * synchronous=FULL because an acknowledged sync batch must survive a power
 * cut (the edge deletes what the cloud acknowledged). An in-memory database
 * (":memory:") is private to its connection: no WAL, no readers, everything
 * on the one connection. Migrations are schema/cloud/sqlite/NNN_*.sql,
 * applied on the writer like the edge's (cw_edb.c). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_migration.h"
#include "cw_store_int.h"

extern const struct cw_migration cw_cloud_sqlite_migrations[];
extern const int cw_cloud_sqlite_migrations_count;

#define SQ_BUSY_TIMEOUT_MS 5000
#define SQ_OPEN_WAIT_MS 30000 /* the WAL switch of a new file, see sq_open */
#define SQ_READERS_MAX 64		/* the PostgreSQL pool's bound */
#define SQ_DEFAULT_ACQUIRE_MS 5000	/* wait for a free reader, then 503 */

#define CHAIN_COLS "id, name, slug, active, created_ms, updated_ms"
#define BRANCH_COLS                                                                          \
	"id, chain_id, code, name, address, city, latitude, longitude, active, created_ms, " \
	"updated_ms"
#define USER_COLS "id, email, password_hash, role, chain_id, active, created_ms"
#define DEVICE_COLS                                                                         \
	"d.id, d.branch_id, b.chain_id, d.device_name, d.mac_address, d.serial_number, "    \
	"d.status, d.last_heartbeat_ms, d.firmware_version, d.health, d.created_ms, "       \
	"d.updated_ms"
#define COMMAND_COLS                                                                       \
	"c.id, c.device_id, c.branch_id, b.chain_id, c.action, c.args, c.state, "          \
	"c.created_by, c.created_ms, c.expires_ms, c.result"
#define ENROLL_COLS \
	"e.id, e.branch_id, b.chain_id, e.created_by, e.created_ms, e.expires_ms, e.uses_left"

#define CART_COLS                                                                          \
	"c.id, c.branch_id, b.chain_id, ctl.device_id, c.controller_id, c.cart_number, "   \
	"c.locker_id, c.status, c.is_locked, c.last_used_ms, c.maintenance_notes, "        \
	"c.updated_ms, ctl.bus_index, ctl.controller_address, ctl.status"
#define CART_FROM                                                                          \
	" FROM carts c JOIN branches b ON b.id = c.branch_id "                             \
	"LEFT JOIN controllers ctl ON ctl.id = c.controller_id "
#define RENTAL_COLS                                                                        \
	"r.id, r.cart_id, r.branch_id, r.device_id, c.cart_number, r.user_phone, "         \
	"r.start_ms, r.expected_return_ms, r.actual_return_ms, r.clock_trusted, r.status, " \
	"r.duration_minutes, r.notes, r.created_ms"
#define RENTAL_FROM " FROM rentals r JOIN carts c ON c.id = r.cart_id "
#define TELEMETRY_COLS                                                                     \
	"t.id, t.device_id, t.branch_id, t.chain_id, t.seq, t.event_type, t.event_data, "  \
	"t.ts_ms, t.clock_trusted, t.received_ms"
/* newest first; the cursor row is looked up within the same key, so an id of
 * another tenant positions nothing. Four variants a key (cw_store_int.h; the
 * planner can use the type index only when the condition is not optional). */
#define TELEMETRY_SQL(key, type, after)                                                    \
	"SELECT " TELEMETRY_COLS " FROM telemetry t WHERE t." key " = ?1 "                 \
	"AND t.ts_ms >= ?2 AND t.ts_ms < ?3 " type after
#define T_ANY "AND ?4 IS NULL "
#define T_ONE "AND t.event_type = ?4 "
#define C_NONE "AND ?5 IS NULL "
#define C_AFTER(key)                                                                       \
	"AND (t.ts_ms, t.id) < (SELECT ts_ms, id FROM telemetry WHERE id = ?5 AND " key " = ?1) "
#define TELEMETRY_4(first, key, tail)                                                      \
	[first] = TELEMETRY_SQL(key, T_ANY, C_NONE) tail,                                  \
	[first + 1] = TELEMETRY_SQL(key, T_ONE, C_NONE) tail,                              \
	[first + 2] = TELEMETRY_SQL(key, T_ANY, C_AFTER(key)) tail,                        \
	[first + 3] = TELEMETRY_SQL(key, T_ONE, C_AFTER(key)) tail
/* an active rental past its expected return is overdue (BRIEF.md §4) */
#define LATE(now) "(r.status IN ('overdue', 'returned-late') OR " \
	"(r.status = 'active' AND r.expected_return_ms < " now "))"
#define FINISHED "(r.status IN ('returned', 'returned-late') AND r.actual_return_ms IS NOT NULL)"

/* Parameter numbers (?N) are those documented in cw_store.c for each statement. */
/* Telemetry of a chain by UTC day and event type: whole days [?6, ?7) from
 * the telemetry_daily rollup (migration 003), the partial first day [?2, ?3)
 * and last day [?4, ?5) from telemetry; the _MANAGER statement keeps only the
 * branches of manager ?8 (two statements like cw_store_pg.c's). Times are not
 * before 1970 (CW_TIME_MIN_MS), so ts_ms / 86400000 is the floor. */
#define CHAIN_STATS_MANAGER(col)                                                           \
	"AND " col " IN (SELECT branch_id FROM user_branches WHERE user_id = ?8) "
#define CHAIN_STATS_PARTIAL(from, to, filter)                                              \
	"SELECT t.ts_ms / 86400000, t.event_type, count(*) FROM telemetry t "              \
	"WHERE t.chain_id = ?1 AND t.ts_ms >= " from " AND t.ts_ms < " to " "              \
	filter "GROUP BY 1, 2"
#define CHAIN_STATS_SQL(daily_filter, tel_filter)                                          \
	"SELECT x.day, x.event_type, sum(x.n) FROM (SELECT d.day AS day, "                 \
	"d.event_type AS event_type, d.n AS n FROM telemetry_daily d "                     \
	"WHERE d.chain_id = ?1 AND d.day >= ?6 AND d.day < ?7 " daily_filter "UNION ALL "  \
	CHAIN_STATS_PARTIAL("?2", "?3", tel_filter) " UNION ALL "                          \
	CHAIN_STATS_PARTIAL("?4", "?5", tel_filter) ") x GROUP BY 1, 2 ORDER BY 1, 2"

/* A chain's branches compared (GET /api/chains/{id}/branch-stats): 1 chain,
 * 2..3 rental start range, 4 now (overdue), 5 online after, 6 manager (the
 * _MANAGER statement only). The rentals of the chain's branches are counted
 * in one pass over rentals_branch_start (a range per branch, covering),
 * grouped by branch; carts and devices by their branch indexes. */
#define COMPARE_MANAGER(col) \
	"AND " col " IN (SELECT branch_id FROM user_branches WHERE user_id = ?6) "
#define BRANCH_COMPARE_SQL(filter_b, filter_r)                                             \
	"SELECT b.id, b.code, b.name, b.active, coalesce(r.n, 0), coalesce(r.open, 0), "    \
	"coalesce(r.overdue, 0), coalesce(r.late, 0), coalesce(r.cancelled, 0), "          \
	"coalesce(r.finished, 0), coalesce(r.avg_ms, 0), "                                 \
	"(SELECT count(*) FROM carts c WHERE c.branch_id = b.id), "                        \
	"(SELECT count(*) FROM devices d WHERE d.branch_id = b.id), "                      \
	"(SELECT count(*) FROM devices d WHERE d.branch_id = b.id "                        \
	"AND d.last_heartbeat_ms >= ?5 AND d.status <> 'offline') "                        \
	"FROM branches b LEFT JOIN (SELECT r.branch_id AS branch_id, count(*) AS n, "      \
	"count(*) FILTER (WHERE r.status IN ('active', 'overdue')) AS open, "              \
	"count(*) FILTER (WHERE r.status = 'overdue' OR "                                  \
	"(r.status = 'active' AND r.expected_return_ms < ?4)) AS overdue, "                \
	"count(*) FILTER (WHERE r.status = 'returned-late') AS late, "                     \
	"count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled, "                    \
	"count(*) FILTER (WHERE " FINISHED ") AS finished, "                               \
	"CAST(avg(r.actual_return_ms - r.start_ms) FILTER (WHERE " FINISHED ") "           \
	"AS INTEGER) AS avg_ms FROM rentals r WHERE r.branch_id IN (SELECT id FROM "       \
	"branches WHERE chain_id = ?1 " filter_r ") AND r.start_ms >= ?2 "                 \
	"AND r.start_ms < ?3 GROUP BY r.branch_id) r ON r.branch_id = b.id "               \
	"WHERE b.chain_id = ?1 " filter_b "ORDER BY b.code, b.id"

static const char *const sq_sql[CW_SQL_COUNT] = {
	[CW_SQL_BEGIN] = "BEGIN IMMEDIATE",
	[CW_SQL_BEGIN_READ] = "BEGIN",
	[CW_SQL_COMMIT] = "COMMIT",
	[CW_SQL_ROLLBACK] = "ROLLBACK",
	[CW_SQL_PING] = "SELECT 1",
	[CW_SQL_USER_INSERT] =
		"INSERT INTO staff_users (id, email, password_hash, role, chain_id, active, "
		"created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
	[CW_SQL_USER_GET] = "SELECT " USER_COLS " FROM staff_users WHERE id = ?1",
	[CW_SQL_USER_GET_BY_EMAIL] = "SELECT " USER_COLS " FROM staff_users WHERE email = ?1",
	[CW_SQL_USER_BRANCH_INSERT] =
		"INSERT INTO user_branches (user_id, branch_id) SELECT u.id, b.id "
		"FROM staff_users u, branches b WHERE u.id = ?1 AND b.id = ?2 "
		"AND u.role = 'branch-manager' AND u.chain_id = b.chain_id "
		"ON CONFLICT DO NOTHING",
	[CW_SQL_USER_MANAGES] =
		"SELECT 1 FROM user_branches WHERE user_id = ?1 AND branch_id = ?2",
	[CW_SQL_CHAIN_INSERT] = "INSERT INTO chains (" CHAIN_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
	[CW_SQL_CHAIN_GET] = "SELECT " CHAIN_COLS " FROM chains WHERE id = ?1",
	[CW_SQL_CHAIN_UPDATE] =
		"UPDATE chains SET name = ?2, slug = ?3, active = ?4, updated_ms = ?5 WHERE id = ?1",
	[CW_SQL_CHAIN_DELETE] = "DELETE FROM chains WHERE id = ?1",
	[CW_SQL_CHAIN_LIST] = "SELECT " CHAIN_COLS " FROM chains "
			      "WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR id = ?2) "
			      "ORDER BY id LIMIT ?3",
	[CW_SQL_BRANCH_INSERT] = "INSERT INTO branches (" BRANCH_COLS ") "
				 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
	[CW_SQL_BRANCH_GET] = "SELECT " BRANCH_COLS " FROM branches WHERE id = ?1",
	[CW_SQL_BRANCH_LIST] =
		"SELECT " BRANCH_COLS " FROM branches b "
		"WHERE (?1 IS NULL OR b.id > ?1) AND (?2 IS NULL OR b.chain_id = ?2) "
		"AND (?3 IS NULL OR EXISTS (SELECT 1 FROM user_branches ub "
		"WHERE ub.user_id = ?3 AND ub.branch_id = b.id)) "
		"ORDER BY b.id LIMIT ?4",
	[CW_SQL_BRANCH_STATS_CARTS] =
		"SELECT count(*), count(*) FILTER (WHERE status = 'available'), "
		"count(*) FILTER (WHERE status IN ('rented', 'awaiting-return')), "
		"count(*) FILTER (WHERE status = 'maintenance'), "
		"count(*) FILTER (WHERE status = 'fault') FROM carts WHERE branch_id = ?1",
	[CW_SQL_BRANCH_STATS_RENTALS] =
		"SELECT count(*) FILTER (WHERE status IN ('active', 'overdue')), "
		"count(*) FILTER (WHERE status = 'overdue'), "
		"count(*) FILTER (WHERE start_ms >= ?2) FROM rentals WHERE branch_id = ?1",
	[CW_SQL_BRANCH_STATS_DEVICES] =
		"SELECT count(*), count(*) FILTER (WHERE last_heartbeat_ms >= ?2 "
		"AND status <> 'offline') FROM devices WHERE branch_id = ?1",
	[CW_SQL_ENROLL_INSERT] =
		"INSERT INTO enrollment_codes (id, branch_id, code_hash, created_by, created_ms, "
		"expires_ms, uses_left) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[CW_SQL_ENROLL_CONSUME] =
		"UPDATE enrollment_codes SET uses_left = uses_left - 1 "
		"WHERE code_hash = ?1 AND uses_left > 0 AND expires_ms > ?3 "
		"AND branch_id IN (SELECT id FROM branches WHERE code = ?2 AND active = 1) "
		"RETURNING branch_id",
	[CW_SQL_DEVICE_UPSERT] =
		"INSERT INTO devices (id, branch_id, device_name, mac_address, serial_number, "
		"status, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'offline', ?6, ?6) "
		"ON CONFLICT (mac_address) DO UPDATE SET device_name = excluded.device_name, "
		"serial_number = excluded.serial_number, updated_ms = excluded.updated_ms "
		"WHERE devices.branch_id = excluded.branch_id RETURNING id",
	[CW_SQL_DEVICE_GET] = "SELECT " DEVICE_COLS " FROM devices d "
			      "JOIN branches b ON b.id = d.branch_id WHERE d.id = ?1",
	[CW_SQL_DEVICE_HEARTBEAT] =
		"UPDATE devices SET status = ?2, firmware_version = coalesce(?3, firmware_version), "
		"health = coalesce(?4, health), last_heartbeat_ms = ?5, updated_ms = ?5 "
		"WHERE id = ?1 RETURNING branch_id",
	[CW_SQL_TOKENS_REVOKE] = "UPDATE device_tokens SET revoked = 1, revoked_ms = ?2 "
				 "WHERE device_id = ?1 AND revoked = 0",
	[CW_SQL_TOKEN_INSERT] = "INSERT INTO device_tokens (jti, device_id, issued_ms, expires_ms) "
				"VALUES (?1, ?2, ?3, ?4)",
	[CW_SQL_TOKEN_CHECK] = "SELECT 1 FROM device_tokens "
			       "WHERE jti = ?1 AND device_id = ?2 AND revoked = 0",
	[CW_SQL_COMMAND_INSERT] =
		"INSERT INTO commands (id, device_id, branch_id, action, args, state, created_by, "
		"created_ms, expires_ms) SELECT ?1, d.id, d.branch_id, ?3, ?4, 'pending', ?5, ?6, ?7 "
		"FROM devices d WHERE d.id = ?2",
	[CW_SQL_COMMAND_GET] = "SELECT " COMMAND_COLS " FROM commands c "
			       "JOIN branches b ON b.id = c.branch_id WHERE c.id = ?1",
	[CW_SQL_COMMANDS_EXPIRE] =
		"UPDATE commands SET state = 'expired', finished_ms = ?2 WHERE device_id = ?1 "
		"AND state IN ('pending', 'delivered') AND expires_ms <= ?2",
	[CW_SQL_COMMANDS_FOR_DEVICE] =
		"SELECT " COMMAND_COLS " FROM commands c JOIN branches b ON b.id = c.branch_id "
		"WHERE c.device_id = ?1 AND c.state IN ('pending', 'delivered') "
		"AND c.expires_ms > ?2 ORDER BY c.id LIMIT ?3",
	[CW_SQL_COMMANDS_MARK_DELIVERED] =
		"UPDATE commands SET state = 'delivered', delivered_ms = ?2 WHERE device_id = ?1 "
		"AND state = 'pending' AND expires_ms > ?2 AND id <= ?3",
	[CW_SQL_TOKEN_REVOKE_ONE] = "UPDATE device_tokens SET revoked = 1, revoked_ms = ?3 "
				    "WHERE jti = ?1 AND device_id = ?2 AND revoked = 0",
	[CW_SQL_DEVICES_MQTT] = "SELECT d.id FROM devices d WHERE EXISTS (SELECT 1 FROM "
				"device_tokens t WHERE t.device_id = d.id AND t.revoked = 0 "
				"AND t.expires_ms > ?1) ORDER BY d.id",
	[CW_SQL_DEVICES_ONLINE] = "SELECT count(*) FROM devices "
				  "WHERE last_heartbeat_ms >= ?1 AND status <> 'offline'",
	[CW_SQL_CART_LIST] =
		"SELECT " CART_COLS CART_FROM "WHERE c.branch_id = ?1 AND (?2 IS NULL OR c.status = ?2) "
		"AND (?3 IS NULL OR c.cart_number > (SELECT cart_number FROM carts "
		"WHERE id = ?3 AND branch_id = ?1)) ORDER BY c.cart_number LIMIT ?4",
	[CW_SQL_CART_GET] = "SELECT " CART_COLS CART_FROM "WHERE c.id = ?1",
	[CW_SQL_RENTALS_ACTIVE] =
		"SELECT " RENTAL_COLS RENTAL_FROM "WHERE r.branch_id = ?1 "
		"AND r.status IN ('active', 'overdue') "
		"AND (?2 IS NULL OR (r.expected_return_ms, r.id) > (SELECT expected_return_ms, id "
		"FROM rentals WHERE id = ?2 AND branch_id = ?1)) "
		"ORDER BY r.expected_return_ms, r.id LIMIT ?3",
	[CW_SQL_RENTALS_HISTORY] =
		"SELECT " RENTAL_COLS RENTAL_FROM "WHERE r.branch_id = ?1 "
		"AND r.start_ms >= ?2 AND r.start_ms < ?3 AND (?4 IS NULL OR r.user_phone = ?4) "
		"AND (?5 IS NULL OR r.status = ?5) "
		"AND (?6 IS NULL OR (r.start_ms, r.id) < (SELECT start_ms, id FROM rentals "
		"WHERE id = ?6 AND branch_id = ?1)) "
		"ORDER BY r.start_ms DESC, r.id DESC LIMIT ?7",
	[CW_SQL_RENTAL_STATS] =
		"SELECT count(*), "
		"count(*) FILTER (WHERE r.status = 'active' AND r.expected_return_ms >= ?4), "
		"count(*) FILTER (WHERE r.status = 'overdue' OR "
		"(r.status = 'active' AND r.expected_return_ms < ?4)), "
		"count(*) FILTER (WHERE r.status = 'returned'), "
		"count(*) FILTER (WHERE r.status = 'returned-late'), "
		"count(*) FILTER (WHERE r.status = 'cancelled'), "
		"count(*) FILTER (WHERE " FINISHED "), "
		"coalesce(CAST(avg(r.actual_return_ms - r.start_ms) FILTER (WHERE " FINISHED ") "
		"AS INTEGER), 0) "
		"FROM rentals r WHERE r.branch_id = ?1 AND r.start_ms >= ?2 AND r.start_ms < ?3",
	[CW_SQL_RENTAL_STATS_DAYS] =
		"SELECT r.start_ms / 86400000, count(*), count(*) FILTER (WHERE " LATE("?4") "), "
		"count(*) FILTER (WHERE " FINISHED "), "
		"CAST(avg(r.actual_return_ms - r.start_ms) FILTER (WHERE " FINISHED ") AS INTEGER) "
		"FROM rentals r WHERE r.branch_id = ?1 AND r.start_ms >= ?2 AND r.start_ms < ?3 "
		"GROUP BY 1 ORDER BY 1",
	TELEMETRY_4(CW_SQL_TELEMETRY_DEVICE, "device_id", "ORDER BY t.ts_ms DESC, t.id DESC LIMIT ?6"),
	TELEMETRY_4(CW_SQL_TELEMETRY_BRANCH, "branch_id", "ORDER BY t.ts_ms DESC, t.id DESC LIMIT ?6"),
	TELEMETRY_4(CW_SQL_TELEMETRY_CHAIN, "chain_id",
		    "AND (?7 IS NULL OR t.branch_id IN (SELECT branch_id "
		    "FROM user_branches WHERE user_id = ?7)) ORDER BY t.ts_ms DESC, t.id DESC LIMIT ?6"),
	[CW_SQL_USER_LIST] =
		"SELECT u.id, u.email, u.password_hash, u.role, u.chain_id, u.active, u.created_ms, "
		"(SELECT group_concat(branch_id, ',') FROM (SELECT branch_id FROM user_branches "
		"WHERE user_id = u.id ORDER BY branch_id)) FROM staff_users u "
		"WHERE (?1 IS NULL OR u.id > ?1) AND (?2 IS NULL OR u.chain_id = ?2) "
		"ORDER BY u.id LIMIT ?3",
	[CW_SQL_USER_UPDATE] =
		"UPDATE staff_users SET email = ?2, password_hash = ?3, role = ?4, chain_id = ?5, "
		"active = ?6, updated_ms = ?7 WHERE id = ?1",
	[CW_SQL_USER_BRANCHES_CLEAR] = "DELETE FROM user_branches WHERE user_id = ?1",
	[CW_SQL_USER_BRANCHES_GET] =
		"SELECT branch_id FROM user_branches WHERE user_id = ?1 ORDER BY branch_id",
	/* the login rate limiter: see cw_store_pg.c for the parameters; SET
	 * expressions see the row as it was, as in PostgreSQL */
	[CW_SQL_LOGIN_FAILURES_GET] =
		"SELECT failures, window_start_ms FROM login_failures "
		"WHERE key_hash = ?1 AND window_start_ms > ?2",
	[CW_SQL_LOGIN_FAILURE_ADD] =
		"INSERT INTO login_failures (key_hash, window_start_ms, failures) VALUES (?1, ?2, 1) "
		"ON CONFLICT (key_hash) DO UPDATE SET "
		"failures = CASE WHEN window_start_ms > ?3 THEN failures + 1 ELSE 1 END, "
		"window_start_ms = CASE WHEN window_start_ms > ?3 THEN window_start_ms "
		"ELSE excluded.window_start_ms END "
		"RETURNING failures, window_start_ms",
	[CW_SQL_LOGIN_FAILURES_CLEAR] = "DELETE FROM login_failures WHERE key_hash = ?1",
	[CW_SQL_LOGIN_FAILURES_PRUNE] =
		"DELETE FROM login_failures WHERE key_hash IN (SELECT key_hash FROM login_failures "
		"WHERE window_start_ms <= ?1 ORDER BY window_start_ms LIMIT ?2)",
	/* edge -> cloud sync (issue 4): parameter numbers in cw_store.c */
	[CW_SQL_SYNC_HW_LOCK] =
		"INSERT INTO device_sync (device_id, high_water, updated_ms) VALUES (?1, 0, ?2) "
		"ON CONFLICT (device_id) DO UPDATE SET device_id = excluded.device_id "
		"RETURNING high_water",
	[CW_SQL_SYNC_HW_SET] =
		"UPDATE device_sync SET high_water = ?2, updated_ms = ?3 WHERE device_id = ?1",
	[CW_SQL_SYNC_HW_GET] = "SELECT high_water FROM device_sync WHERE device_id = ?1",
	[CW_SQL_SYNC_CONTROLLER_UPSERT] =
		"INSERT INTO controllers (id, device_id, controller_address, bus_index, status, "
		"updated_ms) VALUES (?1, ?2, ?4, ?3, ?5, ?6) "
		"ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
		"updated_ms = excluded.updated_ms WHERE controllers.device_id = excluded.device_id",
	/* a cart of another branch, or of another device's controller, is left
	 * alone (0 rows changed: the store refuses the entry) */
	[CW_SQL_SYNC_CART_UPSERT] =
		"INSERT INTO carts (id, branch_id, cart_number, locker_id, controller_id, status, "
		"is_locked, last_used_ms, maintenance_notes, updated_ms) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
		"ON CONFLICT (id) DO UPDATE SET cart_number = excluded.cart_number, "
		"locker_id = excluded.locker_id, controller_id = excluded.controller_id, "
		"status = excluded.status, is_locked = excluded.is_locked, "
		"last_used_ms = excluded.last_used_ms, maintenance_notes = excluded.maintenance_notes, "
		"updated_ms = excluded.updated_ms WHERE carts.branch_id = excluded.branch_id "
		"AND (carts.controller_id IS NULL OR carts.controller_id IN "
		"(SELECT id FROM controllers WHERE device_id = ?11))",
	[CW_SQL_SYNC_CART_MINE] =
		"SELECT 1 FROM carts c JOIN controllers ctl ON ctl.id = c.controller_id "
		"WHERE c.id = ?1 AND c.branch_id = ?2 AND ctl.device_id = ?3",
	/* only a rental of one of this device's carts; an existing rental of
	 * another device is left alone */
	[CW_SQL_SYNC_RENTAL_UPSERT] =
		"INSERT INTO rentals (id, cart_id, branch_id, device_id, user_phone, start_ms, "
		"expected_return_ms, actual_return_ms, clock_trusted, status, duration_minutes, "
		"notes, created_ms, updated_ms) "
		"SELECT ?1, c.id, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14 "
		"FROM carts c JOIN controllers ctl ON ctl.id = c.controller_id "
		"WHERE c.id = ?2 AND c.branch_id = ?3 AND ctl.device_id = ?4 "
		"ON CONFLICT (id) DO UPDATE SET cart_id = excluded.cart_id, "
		"user_phone = excluded.user_phone, start_ms = excluded.start_ms, "
		"expected_return_ms = excluded.expected_return_ms, "
		"actual_return_ms = excluded.actual_return_ms, clock_trusted = excluded.clock_trusted, "
		"status = excluded.status, duration_minutes = excluded.duration_minutes, "
		"notes = excluded.notes, updated_ms = excluded.updated_ms "
		"WHERE rentals.device_id = excluded.device_id AND rentals.branch_id = excluded.branch_id",
	[CW_SQL_SYNC_TELEMETRY_INSERT] =
		"INSERT INTO telemetry (device_id, branch_id, chain_id, seq, event_type, event_data, "
		"ts_ms, clock_trusted, received_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
		"ON CONFLICT (device_id, seq) DO NOTHING",
	/* a reset mark (cw_store_sync_reset): rows above it are kept, without
	 * the seq the device will use again */
	[CW_SQL_SYNC_TELEMETRY_DETACH] =
		"UPDATE telemetry SET seq = NULL WHERE device_id = ?1 AND seq > ?2",
	[CW_SQL_SYNC_DEVICE_HEALTH] =
		"UPDATE devices SET health = ?2, updated_ms = ?3 WHERE id = ?1",
	/* a result finishes a command once; expired ones too (the device ran it
	 * before its expiry by its clock, and that is what happened) */
	[CW_SQL_SYNC_COMMAND_RESULT] =
		"UPDATE commands SET state = ?3, result = ?4, finished_ms = ?5 WHERE id = ?1 "
		"AND device_id = ?2 AND state IN ('pending', 'delivered', 'expired')",
	[CW_SQL_CHAIN_EVENT_COUNTS] = CHAIN_STATS_SQL("", ""),
	[CW_SQL_CHAIN_EVENT_COUNTS_MANAGER] =
		CHAIN_STATS_SQL(CHAIN_STATS_MANAGER("d.branch_id"), CHAIN_STATS_MANAGER("t.branch_id")),
	[CW_SQL_DEVICE_CONFIG_INSERT] =
		"INSERT INTO device_configs (device_id, version, body, created_by, created_ms) "
		"SELECT ?1, coalesce(max(version), 0) + 1, ?2, ?3, ?4 "
		"FROM device_configs WHERE device_id = ?1 RETURNING version",
	[CW_SQL_DEVICE_CONFIG_GET] = "SELECT version, body FROM device_configs "
				     "WHERE device_id = ?1 ORDER BY version DESC LIMIT 1",
	[CW_SQL_DEVICE_CONFIG_VERSION] = "SELECT coalesce(max(version), 0) FROM device_configs "
					 "WHERE device_id = ?1",
	[CW_SQL_COMMANDS_ANY_OPEN] = "SELECT 1 FROM commands WHERE device_id = ?1 "
				     "AND state IN ('pending', 'delivered') LIMIT 1",
	/* dashboards (issue 7): parameter numbers in cw_store.c */
	[CW_SQL_DEVICE_LIST] =
		"SELECT " DEVICE_COLS " FROM devices d JOIN branches b ON b.id = d.branch_id "
		"WHERE (?1 IS NULL OR d.id > ?1) AND (?2 IS NULL OR b.chain_id = ?2) "
		"AND (?3 IS NULL OR EXISTS (SELECT 1 FROM user_branches ub "
		"WHERE ub.user_id = ?3 AND ub.branch_id = d.branch_id)) ORDER BY d.id LIMIT ?4",
	[CW_SQL_DEVICE_LIST_BRANCH] =
		"SELECT " DEVICE_COLS " FROM devices d JOIN branches b ON b.id = d.branch_id "
		"WHERE d.branch_id = ?1 AND (?2 IS NULL OR d.id > ?2) ORDER BY d.id LIMIT ?3",
	[CW_SQL_BRANCH_UPDATE] =
		"UPDATE branches SET code = ?2, name = ?3, address = ?4, city = ?5, latitude = ?6, "
		"longitude = ?7, active = ?8, updated_ms = ?9 WHERE id = ?1",
	[CW_SQL_ENROLL_LIST] =
		"SELECT " ENROLL_COLS " FROM enrollment_codes e JOIN branches b ON b.id = e.branch_id "
		"WHERE e.branch_id = ?1 AND (?2 IS NULL OR e.id > ?2) ORDER BY e.id LIMIT ?3",
	[CW_SQL_ENROLL_GET] =
		"SELECT " ENROLL_COLS " FROM enrollment_codes e JOIN branches b ON b.id = e.branch_id "
		"WHERE e.id = ?1",
	[CW_SQL_ENROLL_REVOKE] = "UPDATE enrollment_codes SET uses_left = 0 WHERE id = ?1",
	[CW_SQL_BRANCH_COMPARE] = BRANCH_COMPARE_SQL("", ""),
	[CW_SQL_BRANCH_COMPARE_MANAGER] =
		BRANCH_COMPARE_SQL(COMPARE_MANAGER("b.id"), COMPARE_MANAGER("id")),

	/* branch analytics (issue 7): parameter numbers in cw_store.c */
	[CW_SQL_RENTAL_STATS_HOURS] =
		"SELECT r.start_ms / 3600000, count(*) FROM rentals r WHERE r.branch_id = ?1 "
		"AND r.start_ms >= ?2 AND r.start_ms < ?3 GROUP BY 1 ORDER BY 1",
	[CW_SQL_RENTAL_DURATIONS] =
		"SELECT " CW_DURATION_COUNTS("(r.actual_return_ms - r.start_ms)", "?4", "?5", "?6",
					     "?7", "?8") " FROM rentals r WHERE r.branch_id = ?1 "
		"AND r.start_ms >= ?2 AND r.start_ms < ?3 AND " FINISHED,
	[CW_SQL_RENTAL_RENTED_MS] =
		"SELECT coalesce(sum(min(x.e, ?3) - max(x.s, ?2)), 0) FROM (" CW_RENTED_SPANS(
			"?1", "r.start_ms", "r.actual_return_ms", "?2", "?3", "?4") ") x "
		"WHERE min(x.e, ?3) > max(x.s, ?2)",
	[CW_SQL_BRANCH_CARTS_IN_USE] =
		"SELECT count(*) FROM carts WHERE branch_id = ?1 AND status <> 'offline'",
	[CW_SQL_BRANCH_FAULTS] =
		"SELECT c.id, c.cart_number, x.f, x.o FROM (SELECT "
		"json_extract(t.event_data, '$.cart_id') AS cart_id, " CW_FAULT_COUNTS " "
		"FROM telemetry t WHERE t.branch_id = ?1 AND " CW_FAULT_TYPES " "
		"AND t.ts_ms >= ?2 AND t.ts_ms < ?3 GROUP BY 1) x "
		"JOIN carts c ON c.id = x.cart_id AND c.branch_id = ?1 "
		"ORDER BY x.f + x.o DESC, c.cart_number, c.id LIMIT ?4",
};

/* What SQLite said of a statement's text the first time a connection
 * prepared it (sqlite3_stmt_readonly). */
enum sq_kind { SQ_UNKNOWN, SQ_READS, SQ_WRITES };

struct sq_store;

struct sq_conn {
	struct sq_store *s;
	sqlite3 *h;
	bool reader; /* opened SQLITE_OPEN_READONLY; refuses writing statements */
	bool busy;   /* readers: taken (under rlock) */
	bool read_use; /* the writer, taken for reading (no readers): refuses writes too */
	sqlite3_stmt *st[CW_SQL_COUNT]; /* prepared on first use, kept */
};

struct sq_store {
	struct sq_conn w; /* the writer: migrations, writes, write transactions */
	pthread_mutex_t wlock;
	_Atomic int w_in_use; /* for /metrics */
	int nr;               /* readers; 0 = everything on the writer */
	int acquire_ms;
	pthread_mutex_t rlock;
	pthread_cond_t rfreed;
	int r_in_use;
	_Atomic unsigned char kind[CW_SQL_COUNT]; /* enum sq_kind of each statement */
	struct sq_conn r[SQ_READERS_MAX];
};

static int sq_map(sqlite3 *h, int rc, const char *what)
{
	int ext = sqlite3_extended_errcode(h);

	switch (ext) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return CW_ERR_CONFLICT;
	case SQLITE_CONSTRAINT_CHECK:
	case SQLITE_CONSTRAINT_NOTNULL:
		return CW_ERR_INVAL;
	default:
		break;
	}
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
		cw_warn("store.busy", "backend=sqlite what=%s", what);
		return CW_ERR_OFFLINE;
	}
	cw_error("store.sqlite", "what=%s rc=%d msg=\"%s\"", what, ext, sqlite3_errmsg(h));
	return CW_ERR_DB;
}

static int sq_exec_text(sqlite3 *h, const char *sql, const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(h, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		cw_error("store.sqlite", "what=%s rc=%d msg=\"%s\"", what, rc,
			 msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return CW_ERR_DB;
	}
	return CW_OK;
}

/* The first column of the first row of sql, as text, into out. */
static int sq_query_text(sqlite3 *h, const char *sql, char *out, size_t cap)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *v;
	int rc = CW_ERR_DB;

	if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && (v = sqlite3_column_text(st, 0))) {
		snprintf(out, cap, "%s", (const char *)v);
		rc = CW_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

static int sq_user_version(sqlite3 *h, int *out)
{
	sqlite3_stmt *st = NULL;
	int rc = CW_ERR_DB;

	if (sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		*out = sqlite3_column_int(st, 0);
		rc = CW_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

static int sq_latest_version(void)
{
	return cw_cloud_sqlite_migrations_count;
}

/* On the writer only: the readers see the new schema at their next
 * statement (SQLite re-prepares a statement whose schema changed). */
static int sq_migrate(void *be, int *version)
{
	struct sq_store *s = be;
	sqlite3 *h = s->w.h;
	int cur = 0, rc = CW_OK;

	pthread_mutex_lock(&s->wlock);
	for (int i = 0; i < cw_cloud_sqlite_migrations_count; i++) {
		const struct cw_migration *m = &cw_cloud_sqlite_migrations[i];
		char pragma[64];

		if (m->version != i + 1) {
			rc = CW_ERR_INTERNAL;
			goto out;
		}
		/* BEGIN IMMEDIATE, then re-read user_version inside the
		 * transaction: two processes never both apply a migration. */
		if ((rc = sq_exec_text(h, "BEGIN IMMEDIATE", "migrate.begin")) != CW_OK)
			goto out;
		if ((rc = sq_user_version(h, &cur)) != CW_OK)
			goto fail;
		if (cur > cw_cloud_sqlite_migrations_count) {
			cw_error("store.too_new", "backend=sqlite schema=%d known=%d msg=\"database "
				 "was written by a newer cartwise-cloud\"",
				 cur, cw_cloud_sqlite_migrations_count);
			rc = CW_ERR_DB;
			goto fail;
		}
		if (cur >= m->version) {
			sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
			continue;
		}
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
		if ((rc = sq_exec_text(h, m->sql, m->name)) != CW_OK ||
		    (rc = sq_exec_text(h, pragma, "migrate.version")) != CW_OK ||
		    (rc = sq_exec_text(h, "COMMIT", "migrate.commit")) != CW_OK)
			goto fail;
		cw_info("store.migrated", "backend=sqlite version=%d file=%s", m->version, m->name);
	}
	rc = sq_user_version(h, &cur);
	if (rc == CW_OK && version)
		*version = cur;
	goto out;
fail:
	sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
out:
	pthread_mutex_unlock(&s->wlock);
	return rc;
}

static void sq_conn_close(struct sq_conn *c)
{
	for (int i = 0; i < CW_SQL_COUNT; i++) {
		sqlite3_finalize(c->st[i]);
		c->st[i] = NULL;
	}
	sqlite3_close(c->h);
	c->h = NULL;
}

static void sq_close(void *be)
{
	struct sq_store *s = be;

	if (!s)
		return;
	/* readers first: the last connection to close checkpoints the WAL and
	 * removes it, which only the writer can do */
	for (int i = 0; i < s->nr; i++)
		sq_conn_close(&s->r[i]);
	sq_conn_close(&s->w);
	pthread_mutex_destroy(&s->wlock);
	pthread_mutex_destroy(&s->rlock);
	pthread_cond_destroy(&s->rfreed);
	free(s);
}

/* Opens one connection with the settings every connection has. */
static int sq_conn_open(struct sq_store *s, struct sq_conn *c, const char *path, bool reader)
{
	int flags = reader ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

	c->s = s;
	c->reader = reader;
	if (sqlite3_open_v2(path, &c->h, flags | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		cw_error("store.open", "backend=sqlite path=%s reader=%d msg=\"%s\"", path, reader,
			 c->h ? sqlite3_errmsg(c->h) : "out of memory");
		return CW_ERR_DB;
	}
	sqlite3_extended_result_codes(c->h, 1);
	/* readers too: a WAL reader can meet SQLITE_BUSY while the WAL index
	 * is being recovered or reset */
	sqlite3_busy_timeout(c->h, SQ_BUSY_TIMEOUT_MS);
	return CW_OK;
}

static int sq_open(const struct cw_store_config *cfg, void **be)
{
	struct sq_store *s;
	pthread_condattr_t ca;
	char mode[16] = "";
	const char *file;
	bool in_memory;
	int rc = CW_ERR_DB;

	*be = NULL;
	if (!cfg->path || !*cfg->path || cfg->pool_size < 0 || cfg->pool_size > SQ_READERS_MAX)
		return CW_ERR_CONFIG;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CW_ERR_NOMEM;
	pthread_mutex_init(&s->wlock, NULL);
	pthread_mutex_init(&s->rlock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->rfreed, &ca);
	pthread_condattr_destroy(&ca);
	s->acquire_ms = cfg->acquire_timeout_ms > 0 ? cfg->acquire_timeout_ms : SQ_DEFAULT_ACQUIRE_MS;
	if (sq_conn_open(s, &s->w, cfg->path, false) != CW_OK)
		goto out;
	/* "" for an in-memory or temporary database: private to the writer */
	file = sqlite3_db_filename(s->w.h, "main");
	in_memory = !file || !*file;
	/* journal_mode answers the mode it ended in: insist on WAL (an
	 * in-memory database can only be "memory") */
	/* Switching a new file to WAL needs the file to itself: instances that
	 * start together against a fresh database (one migrates while the
	 * others open) may each wait their busy timeout, so a locked database
	 * is tried again for up to SQ_OPEN_WAIT_MS before giving up. */
	for (int64_t until = cw_mono_ms() + SQ_OPEN_WAIT_MS;;) {
		int qrc = sq_query_text(s->w.h, "PRAGMA journal_mode=WAL", mode, sizeof(mode));
		int ec = sqlite3_errcode(s->w.h);
		if (qrc == CW_OK || (ec != SQLITE_BUSY && ec != SQLITE_LOCKED) ||
		    cw_mono_ms() >= until)
			break;
		mode[0] = '\0';
		struct timespec pause = {.tv_sec = 0, .tv_nsec = 50 * 1000000L};
		nanosleep(&pause, NULL);
	}
	if (strcmp(mode, in_memory ? "memory" : "wal") != 0) {
		cw_error("store.open", "backend=sqlite path=%s msg=\"cannot enable WAL: %s\"",
			 cfg->path, sqlite3_errmsg(s->w.h));
		goto out;
	}
	if (sq_exec_text(s->w.h, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", "pragmas") !=
	    CW_OK)
		goto out;
	/* the readers open the file the writer opened (its full name) after it
	 * is in WAL mode, so they never see a rollback journal */
	for (int i = 0; !in_memory && i < cfg->pool_size; i++) {
		s->nr = i + 1; /* closed by sq_close even if the open fails */
		if (sq_conn_open(s, &s->r[i], file, true) != CW_OK)
			goto out;
		if (sq_query_text(s->r[i].h, "PRAGMA journal_mode", mode, sizeof(mode)) != CW_OK ||
		    strcmp(mode, "wal") != 0) {
			cw_error("store.open", "backend=sqlite path=%s msg=\"reader not in WAL mode: "
				 "%s\"", cfg->path, mode);
			goto out;
		}
	}
	rc = CW_OK;
	*be = s;
	s = NULL;
out:
	sq_close(s);
	return rc;
}

/* The writer behind its mutex (no timeout: a write waits its turn, as it
 * would in SQLite's own lock), or a free reader, waiting for one at most
 * acquire_ms (then CW_ERR_OFFLINE, 503, like the PostgreSQL pool). Without
 * readers (in-memory database, pool_size 0) a read takes the writer. */
static int sq_conn_get(void *be, enum cw_conn_use use, void **conn)
{
	struct sq_store *s = be;
	struct sq_conn *c = NULL;
	struct timespec deadline;

	if (use != CW_CONN_READ || s->nr == 0) {
		pthread_mutex_lock(&s->wlock);
		s->w_in_use = 1;
		s->w.read_use = use == CW_CONN_READ;
		*conn = &s->w;
		return CW_OK;
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += s->acquire_ms / 1000;
	deadline.tv_nsec += (long)(s->acquire_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->rlock);
	while (!c) {
		for (int i = 0; i < s->nr && !c; i++)
			if (!s->r[i].busy)
				c = &s->r[i];
		if (c)
			break;
		if (pthread_cond_timedwait(&s->rfreed, &s->rlock, &deadline) == ETIMEDOUT) {
			pthread_mutex_unlock(&s->rlock);
			cw_warn("store.pool_exhausted", "backend=sqlite readers=%d", s->nr);
			return CW_ERR_OFFLINE;
		}
	}
	c->busy = true;
	s->r_in_use++;
	pthread_mutex_unlock(&s->rlock);
	*conn = c;
	return CW_OK;
}

static void sq_conn_put(void *be, void *conn)
{
	struct sq_store *s = be;
	struct sq_conn *c = conn;

	/* a transaction left open (a bug) would hold the write lock, or keep a
	 * reader on an old snapshot: never hand it on like that */
	if (!sqlite3_get_autocommit(c->h)) {
		cw_error("store.open_transaction", "backend=sqlite reader=%d", c->reader);
		sqlite3_exec(c->h, "ROLLBACK", NULL, NULL, NULL);
	}
	if (!c->reader) {
		c->read_use = false;
		s->w_in_use = 0;
		pthread_mutex_unlock(&s->wlock);
		return;
	}
	pthread_mutex_lock(&s->rlock);
	c->busy = false;
	s->r_in_use--;
	pthread_cond_signal(&s->rfreed);
	pthread_mutex_unlock(&s->rlock);
}

/* Known to only read once some connection has prepared it: until then a
 * statement runs on the writer, which is right for anything. */
static bool sq_stmt_reads_only(void *be, enum cw_sql id)
{
	struct sq_store *s = be;

	return id >= 0 && id < CW_SQL_COUNT && atomic_load(&s->kind[id]) == SQ_READS;
}

static int sq_bind(sqlite3_stmt *st, const struct cw_param *p, int np)
{
	for (int i = 0; i < np; i++) {
		int rc;
		switch (p[i].t) {
		case CW_P_TEXT:
			rc = p[i].s ? sqlite3_bind_text(st, i + 1, p[i].s, -1, SQLITE_TRANSIENT)
				    : sqlite3_bind_null(st, i + 1);
			break;
		case CW_P_INT:
			rc = sqlite3_bind_int64(st, i + 1, p[i].i);
			break;
		case CW_P_BOOL:
			rc = sqlite3_bind_int(st, i + 1, p[i].i ? 1 : 0);
			break;
		case CW_P_REAL:
			rc = sqlite3_bind_double(st, i + 1, p[i].d);
			break;
		default:
			rc = sqlite3_bind_null(st, i + 1);
			break;
		}
		if (rc != SQLITE_OK)
			return rc;
	}
	return SQLITE_OK;
}

static int sq_exec(void *conn, enum cw_sql id, const struct cw_param *p, int np, cw_row_fn fn,
		   void *ctx, int64_t *changes)
{
	struct sq_conn *c = conn;
	const char *cols[32];
	sqlite3_stmt *st;
	int rc, step;

	if (id < 0 || id >= CW_SQL_COUNT || !sq_sql[id] || np > CW_MAX_PARAMS)
		return CW_ERR_INTERNAL;
	if (!c->st[id]) {
		if (sqlite3_prepare_v3(c->h, sq_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id],
				       NULL) != SQLITE_OK) {
			cw_error("store.prepare", "backend=sqlite stmt=%d msg=\"%s\"", (int)id,
				 sqlite3_errmsg(c->h));
			return CW_ERR_INTERNAL;
		}
		atomic_store(&c->s->kind[id],
			     sqlite3_stmt_readonly(c->st[id]) ? SQ_READS : SQ_WRITES);
	}
	st = c->st[id];
	/* the guard: a statement that may write never runs on a connection
	 * taken for reading (a reader is read-only as well, but BEGIN
	 * IMMEDIATE would pass; the writer standing in for readers would not
	 * refuse at all) */
	if ((c->reader || c->read_use) && !sqlite3_stmt_readonly(st)) {
		cw_error("store.write_on_reader", "backend=sqlite stmt=%d", (int)id);
		return CW_ERR_INTERNAL;
	}
	if (sq_bind(st, p, np) != SQLITE_OK) {
		rc = CW_ERR_INTERNAL;
		goto out;
	}
	rc = CW_OK;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		int n = sqlite3_column_count(st);
		if (n > (int)(sizeof(cols) / sizeof(cols[0]))) {
			rc = CW_ERR_INTERNAL;
			goto out;
		}
		for (int i = 0; i < n; i++)
			cols[i] = (const char *)sqlite3_column_text(st, i);
		if (fn && rc == CW_OK)
			rc = fn(ctx, n, cols);
		/* keep stepping: an UPDATE ... RETURNING completes only when run to the end */
	}
	if (step != SQLITE_DONE) {
		rc = sq_map(c->h, step, sq_sql[id]);
		goto out;
	}
	if (changes)
		*changes = sqlite3_changes64(c->h);
out:
	/* reset ends an autocommit statement's read transaction: the reader's
	 * next statement starts a new snapshot and sees every commit before it */
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

static void sq_pool_stats(void *be, int *total, int *in_use)
{
	struct sq_store *s = be;

	*total = 1 + s->nr;
	pthread_mutex_lock(&s->rlock);
	*in_use = s->w_in_use + s->r_in_use;
	pthread_mutex_unlock(&s->rlock);
}

const struct cw_store_backend cw_store_sqlite_backend = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.migrate = sq_migrate,
	.latest_version = sq_latest_version,
	.conn_get = sq_conn_get,
	.conn_put = sq_conn_put,
	.stmt_reads_only = sq_stmt_reads_only,
	.exec = sq_exec,
	.pool_stats = sq_pool_stats,
};
