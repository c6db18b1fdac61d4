/* cw_store_int.h - the storage backend interface (private to src/cloud).
 *
 * A backend (libmodbus's pattern: a table of function pointers filled with
 * designated initialisers) gives connections, runs statements by number and
 * reports rows as text. Each backend holds one SQL text per enum cw_sql in
 * its own dialect; all of them are prepared, parameters are always bound.
 * The operations of cw_store.h are written once on top of this in
 * cw_store.c, so both backends run the same logic and the same tests. */
#ifndef CW_STORE_INT_H
#define CW_STORE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "cw_store.h"

/* Every statement the store runs. Each backend's table must have all of them. */
enum cw_sql {
	CW_SQL_BEGIN,
	CW_SQL_BEGIN_READ, /* a read-only transaction: one snapshot for its statements */
	CW_SQL_COMMIT,
	CW_SQL_ROLLBACK,
	CW_SQL_PING,
	CW_SQL_USER_INSERT,
	CW_SQL_USER_GET,
	CW_SQL_USER_GET_BY_EMAIL,
	CW_SQL_USER_BRANCH_INSERT,
	CW_SQL_USER_MANAGES,
	CW_SQL_CHAIN_INSERT,
	CW_SQL_CHAIN_GET,
	CW_SQL_CHAIN_UPDATE,
	CW_SQL_CHAIN_DELETE,
	CW_SQL_CHAIN_LIST,
	CW_SQL_BRANCH_INSERT,
	CW_SQL_BRANCH_GET,
	CW_SQL_BRANCH_LIST,
	CW_SQL_BRANCH_STATS_CARTS,
	CW_SQL_BRANCH_STATS_RENTALS,
	CW_SQL_BRANCH_STATS_DEVICES,
	CW_SQL_ENROLL_INSERT,
	CW_SQL_ENROLL_CONSUME,
	CW_SQL_DEVICE_UPSERT,
	CW_SQL_DEVICE_GET,
	CW_SQL_DEVICE_HEARTBEAT,
	CW_SQL_TOKENS_REVOKE,
	CW_SQL_TOKEN_INSERT,
	CW_SQL_TOKEN_CHECK,
	CW_SQL_COMMAND_INSERT,
	CW_SQL_COMMAND_GET,
	CW_SQL_COMMANDS_EXPIRE,
	CW_SQL_COMMANDS_FOR_DEVICE,
	CW_SQL_COMMANDS_MARK_DELIVERED,
	CW_SQL_DEVICES_ONLINE,
	CW_SQL_TOKEN_REVOKE_ONE,
	CW_SQL_CART_LIST,
	CW_SQL_CART_GET,
	CW_SQL_RENTALS_ACTIVE,
	CW_SQL_RENTALS_HISTORY,
	CW_SQL_RENTAL_STATS,
	CW_SQL_RENTAL_STATS_DAYS,
	/* Each telemetry list comes in four variants, in this order: any type, one
	 * type, any type after a cursor, one type after a cursor (the statement
	 * id is the first + 1 for a type + 2 for a cursor). Separate statements,
	 * not "($4 IS NULL OR event_type = $4)": PostgreSQL's generic plan of a
	 * prepared statement cannot use an index for an optional condition, and
	 * a type no row has then walks a whole chain (2.1 s at 10 M rows,
	 * docs/BENCHMARKS-CLOUD.md). */
	CW_SQL_TELEMETRY_DEVICE,
	CW_SQL_TELEMETRY_DEVICE_TYPE,
	CW_SQL_TELEMETRY_DEVICE_AFTER,
	CW_SQL_TELEMETRY_DEVICE_TYPE_AFTER,
	CW_SQL_TELEMETRY_BRANCH,
	CW_SQL_TELEMETRY_BRANCH_TYPE,
	CW_SQL_TELEMETRY_BRANCH_AFTER,
	CW_SQL_TELEMETRY_BRANCH_TYPE_AFTER,
	CW_SQL_TELEMETRY_CHAIN,
	CW_SQL_TELEMETRY_CHAIN_TYPE,
	CW_SQL_TELEMETRY_CHAIN_AFTER,
	CW_SQL_TELEMETRY_CHAIN_TYPE_AFTER,
	CW_SQL_USER_LIST,
	CW_SQL_USER_UPDATE,
	CW_SQL_USER_BRANCHES_CLEAR,
	CW_SQL_USER_BRANCHES_GET,
	/* the login rate limiter (cw_store_login_*) */
	CW_SQL_LOGIN_FAILURES_GET,
	CW_SQL_LOGIN_FAILURE_ADD,
	CW_SQL_LOGIN_FAILURES_CLEAR,
	CW_SQL_LOGIN_FAILURES_PRUNE,
	/* edge -> cloud sync (issue 4, docs/SYNC.md) */
	CW_SQL_SYNC_HW_LOCK,
	CW_SQL_SYNC_HW_SET,
	CW_SQL_SYNC_HW_GET,
	CW_SQL_SYNC_CONTROLLER_UPSERT,
	CW_SQL_SYNC_CART_UPSERT,
	CW_SQL_SYNC_CART_MINE,
	CW_SQL_SYNC_RENTAL_UPSERT,
	CW_SQL_SYNC_TELEMETRY_INSERT,
	CW_SQL_SYNC_DEVICE_HEALTH,
	CW_SQL_SYNC_COMMAND_RESULT,
	CW_SQL_SYNC_TELEMETRY_DETACH,
	CW_SQL_CHAIN_EVENT_COUNTS,
	CW_SQL_CHAIN_EVENT_COUNTS_MANAGER,
	CW_SQL_COMMANDS_ANY_OPEN, /* the heartbeat's first look: any command to hand out or expire? */
	CW_SQL_DEVICES_MQTT, /* devices with a live token: the broker's password file */
	/* versioned device configuration (issue 4, "Down: configuration") */
	CW_SQL_DEVICE_CONFIG_INSERT,
	CW_SQL_DEVICE_CONFIG_GET,
	CW_SQL_DEVICE_CONFIG_VERSION,
	/* dashboards (issue 7): lists and edits of the web app */
	CW_SQL_DEVICE_LIST,        /* scope: chain and manager optional */
	CW_SQL_DEVICE_LIST_BRANCH, /* one branch (authorised by the caller) */
	CW_SQL_BRANCH_UPDATE,
	CW_SQL_ENROLL_LIST,
	CW_SQL_ENROLL_GET,
	CW_SQL_ENROLL_REVOKE,
	/* a chain's branches compared; two statements, not "($6 IS NULL OR
	 * ...)", like CW_SQL_CHAIN_EVENT_COUNTS */
	CW_SQL_BRANCH_COMPARE,
	CW_SQL_BRANCH_COMPARE_MANAGER,

	/* branch analytics (issue 7: the branch dashboard) */
	CW_SQL_RENTAL_STATS_HOURS,
	CW_SQL_RENTAL_DURATIONS,
	CW_SQL_RENTAL_RENTED_MS,
	CW_SQL_BRANCH_CARTS_IN_USE,
	CW_SQL_BRANCH_FAULTS,
	CW_SQL_COUNT /* keep last */
};

/* One bound parameter. NULL is CW_P_NULL (a NULL text is also NULL). */
enum cw_ptype { CW_P_NULL, CW_P_TEXT, CW_P_INT, CW_P_BOOL, CW_P_REAL };
struct cw_param {
	enum cw_ptype t;
	const char *s;
	int64_t i;
	double d;
};
#define CW_MAX_PARAMS 16

/* Called once per result row; cols[i] is the text of column i, NULL for SQL
 * NULL (booleans come as "0"/"1" or "t"/"f"). Return non-zero to stop with
 * that error. */
typedef int (*cw_row_fn)(void *ctx, int ncols, const char *const *cols);

/* What a connection is taken for. cw_store.c chooses, never an operation:
 * a statement run alone asks stmt_reads_only(); a transaction is a write
 * transaction (CW_SQL_BEGIN) unless it only reads (CW_SQL_BEGIN_READ). A
 * CW_CONN_READ connection refuses any statement that would write. */
enum cw_conn_use {
	CW_CONN_WRITE, /* anything: a write transaction or a statement that may write */
	CW_CONN_READ,  /* statements that only read, alone or in a read transaction */
};

struct cw_store_backend {
	const char *name;
	int (*open)(const struct cw_store_config *cfg, void **be);
	void (*close)(void *be);
	/* Applies migrations with the backend's own locking (SQLite: BEGIN
	 * IMMEDIATE + user_version; PostgreSQL: advisory lock + ledger). */
	int (*migrate)(void *be, int *version);
	int (*latest_version)(void);
	/* A connection for one operation, for use (SQLite: CW_CONN_WRITE is
	 * the one writer connection behind its mutex, CW_CONN_READ one of the
	 * read-only connections; PostgreSQL: any connection of the pool,
	 * reconnected if it was broken). */
	int (*conn_get)(void *be, enum cw_conn_use use, void **conn);
	void (*conn_put)(void *be, void *conn);
	/* Whether statement id is known to only read, so that a statement run
	 * alone may go to a CW_CONN_READ connection. NULL: never. */
	bool (*stmt_reads_only)(void *be, enum cw_sql id);
	/* Runs statement id with params; fn (may be NULL) sees every row;
	 * *changes (may be NULL) gets the number of rows changed. */
	int (*exec)(void *conn, enum cw_sql id, const struct cw_param *p, int np, cw_row_fn fn,
		    void *ctx, int64_t *changes);
	/* Connections in total and taken right now (for /metrics). */
	void (*pool_stats)(void *be, int *total, int *in_use);
	/* Change notifications between instances (cw_store_notify,
	 * cw_store_listen): NULL when the backend has one instance only. */
	int (*notify)(void *be, const char *payload);
	int (*listen)(void *be, cw_store_notify_fn fn, void *ctx);
	void (*unlisten)(void *be);
};

/* SQL shared by both backends' statement tables (each passes its own column
 * names and parameter spellings). Branch analytics (issue 7):
 *
 * The (s, e) = (start, end) of every rental of branch that may overlap
 * [from, end): started in it (an open one ends at now), started before and
 * returned after from, or started before and still open; never a cancelled
 * one (its cart did not leave). Three disjoint parts, each an index range of
 * its own (started in the range: rentals_branch_start; returned after from:
 * rentals_branch_return of migration 007; still open: that index's NULLs or
 * rentals_branch_status), so that none walks the branch's history. */
#define CW_RENTED_SPANS(branch, start, ret, from, end, now)                                \
	"SELECT " start " AS s, coalesce(" ret ", " now ") AS e FROM rentals r "           \
	"WHERE r.branch_id = " branch " AND " start " >= " from " AND " start " < " end " " \
	"AND r.status <> 'cancelled' AND (" ret " IS NOT NULL OR r.status IN ('active', "  \
	"'overdue')) UNION ALL SELECT " start ", " ret " FROM rentals r "                   \
	"WHERE r.branch_id = " branch " AND " start " < " from " AND " ret " > " from " "   \
	"AND r.status <> 'cancelled' UNION ALL SELECT " start ", " now " FROM rentals r "  \
	"WHERE r.branch_id = " branch " AND r.status IN ('active', 'overdue') "            \
	"AND " start " < " from " AND " ret " IS NULL"
/* Six counts of rentals by duration dur (ms), at the edges e1..e5 (ms: the
 * parameters carry cw_store.h's CW_DURATION_EDGES_MIN): [0, e1), [e1, e2),
 * ..., [e5, inf); a negative duration (a clock set back) counts in the first. */
#define CW_DUR_IN(dur, lo, hi) "count(*) FILTER (WHERE " dur " >= " lo " AND " dur " < " hi ")"
#define CW_DURATION_COUNTS(dur, e1, e2, e3, e4, e5)                                         \
	"count(*) FILTER (WHERE " dur " < " e1 "), " CW_DUR_IN(dur, e1, e2) ", "              \
	CW_DUR_IN(dur, e2, e3) ", " CW_DUR_IN(dur, e3, e4) ", " CW_DUR_IN(dur, e4, e5) ", " \
	"count(*) FILTER (WHERE " dur " >= " e5 ")"
/* Telemetry lock.fault / lock.offline (an index range each of the
 * (branch_id, event_type, time) index of migration 002) counted apart. */
#define CW_FAULT_TYPES "t.event_type IN ('lock.fault', 'lock.offline')"
#define CW_FAULT_COUNTS                                                                    \
	"count(*) FILTER (WHERE t.event_type = 'lock.fault') AS f, "                       \
	"count(*) FILTER (WHERE t.event_type = 'lock.offline') AS o"

extern const struct cw_store_backend cw_store_sqlite_backend;
extern const struct cw_store_backend cw_store_pg_backend;

#endif
