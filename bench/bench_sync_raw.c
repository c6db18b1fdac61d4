/* bench_sync_raw.c - the ceiling of the backlog drain of bench/run-sync.sh:
 * the same database doing the writes of the cloud's sync apply directly.
 *
 * It reads a range of an edge's outbox (the backlog the drain sends), turns
 * every entry into the row values the cloud's POST /api/devices/{id}/sync
 * would write (src/cloud/cw_cloud_api.c sync_entry: a cart snapshot's fields,
 * a telemetry event with cart_id/rental_id folded into event_data, ...), all
 * before the clock starts. Then, timed, in transactions of --batch entries,
 * it runs the statements of cw_store_sync_apply (src/cloud/cw_store.c):
 *   DEVICE_GET, SYNC_HW_LOCK, per entry CONTROLLER_UPSERT + CART_UPSERT (cart),
 *   RENTAL_UPSERT (rental) or TELEMETRY_INSERT (+ DEVICE_HEALTH for
 *   device.health), then SYNC_HW_SET and COMMIT,
 * as prepared statements (SQLite: sqlite3_prepare_v2 with the pragmas of
 * sq_open - WAL, synchronous=FULL, foreign_keys=ON, BEGIN IMMEDIATE;
 * PostgreSQL: PQprepare/PQexecPrepared, READ COMMITTED like the server).
 * The SQL texts are copies of cw_store_sqlite.c / cw_store_pg.c (keep them in
 * step when the store's statements change).
 *
 * The rows go to another device (--device, in its own branch, registered
 * through the API): cart and rental ids are those of the outbox with their
 * last 12 hex digits replaced by the device id's, so they do not meet the
 * rows the drain writes. The controller id is a fixed function of device,
 * bus and board (the server hashes them with BLAKE2b: no database work).
 *
 * Prints one line of key=value figures; never passes or fails on time.
 * Exit 1 when it cannot read the outbox or a statement fails.
 *
 * Usage: bench_sync_raw --edge-db FILE --after SEQ --device ID
 *            (--sqlite FILE | --pg CONNINFO) [--upto SEQ] [--batch 500] */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <malloc.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "cw_error.h"

#define UUID_LEN 36
#define MAX_PARAMS 14

enum op { OP_CART, OP_RENTAL, OP_TELEMETRY, OP_HEALTH };

/* statements of one batch; parameter numbers as in cw_store.c */
enum { S_DEVICE_GET, S_HW_LOCK, S_HW_SET, S_CONTROLLER, S_CART, S_RENTAL, S_TELEMETRY,
       S_HEALTH, S_N };

/* Copies of cw_store_sqlite.c's sq_sql[] entries (DEVICE_COLS expanded). */
static const char *const sq_sql[S_N] = {
	[S_DEVICE_GET] = "SELECT d.id, d.branch_id, b.chain_id, d.device_name, d.mac_address, "
			 "d.serial_number, d.status, d.last_heartbeat_ms, d.firmware_version, "
			 "d.health, d.created_ms, d.updated_ms FROM devices d "
			 "JOIN branches b ON b.id = d.branch_id WHERE d.id = ?1",
	[S_HW_LOCK] =
		"INSERT INTO device_sync (device_id, high_water, updated_ms) VALUES (?1, 0, ?2) "
		"ON CONFLICT (device_id) DO UPDATE SET device_id = excluded.device_id "
		"RETURNING high_water",
	[S_HW_SET] = "UPDATE device_sync SET high_water = ?2, updated_ms = ?3 WHERE device_id = ?1",
	[S_CONTROLLER] =
		"INSERT INTO controllers (id, device_id, controller_address, bus_index, status, "
		"updated_ms) VALUES (?1, ?2, ?4, ?3, ?5, ?6) "
		"ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
		"updated_ms = excluded.updated_ms WHERE controllers.device_id = excluded.device_id",
	[S_CART] =
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
	[S_RENTAL] =
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
	[S_TELEMETRY] =
		"INSERT INTO telemetry (device_id, branch_id, chain_id, seq, event_type, event_data, "
		"ts_ms, clock_trusted, received_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
		"ON CONFLICT (device_id, seq) DO NOTHING",
	[S_HEALTH] = "UPDATE devices SET health = ?2, updated_ms = ?3 WHERE id = ?1",
};

#define TS(p) "to_timestamp(" p "::bigint / 1000.0)"
#define MS(col) "(extract(epoch from " col ") * 1000)::bigint"
/* Copies of cw_store_pg.c's pg_sql[] entries (DEVICE_COLS expanded). */
static const char *const pg_sql[S_N] = {
	[S_DEVICE_GET] = "SELECT d.id, d.branch_id, b.chain_id, d.device_name, d.mac_address, "
			 "d.serial_number, d.status, " MS("d.last_heartbeat") ", d.firmware_version, "
			 "d.health::text, " MS("d.created_at") ", " MS("d.updated_at") " "
			 "FROM devices d JOIN branches b ON b.id = d.branch_id WHERE d.id = $1::uuid",
	[S_HW_LOCK] = "INSERT INTO device_sync (device_id, high_water, updated_at) "
		      "VALUES ($1::uuid, 0, " TS("$2") ") "
		      "ON CONFLICT (device_id) DO UPDATE SET device_id = excluded.device_id "
		      "RETURNING high_water",
	[S_HW_SET] = "UPDATE device_sync SET high_water = $2::bigint, "
		     "updated_at = " TS("$3") " WHERE device_id = $1::uuid",
	[S_CONTROLLER] =
		"INSERT INTO controllers (id, device_id, controller_address, bus_index, status, "
		"updated_at) VALUES ($1::uuid, $2::uuid, $4::int, $3::int, $5::text, " TS("$6") ") "
		"ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
		"updated_at = excluded.updated_at WHERE controllers.device_id = excluded.device_id",
	[S_CART] =
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
	[S_RENTAL] =
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
	[S_TELEMETRY] =
		"INSERT INTO telemetry (device_id, branch_id, chain_id, seq, event_type, event_data, "
		"\"timestamp\", clock_trusted, received_at) VALUES ($1::uuid, $2::uuid, $3::uuid, "
		"$4::bigint, $5::text, $6::jsonb, " TS("$7") ", $8::boolean, " TS("$9") ") "
		"ON CONFLICT (device_id, seq) DO NOTHING",
	[S_HEALTH] = "UPDATE devices SET health = $2::jsonb, "
		     "updated_at = " TS("$3") " WHERE id = $1::uuid",
};

/* One outbox entry as the values the cloud writes. Strings owned. */
struct row {
	enum op op;
	int64_t seq;
	char id[UUID_LEN + 1], cart_id[UUID_LEN + 1];
	char *status, *notes, *phone, *event_type, *data;
	int64_t cart_number, locker_id, bus, board, last_used_ms, updated_ms;
	int64_t start_ms, expected_ms, actual_ms, duration_min, ts_ms;
	bool is_locked, board_online, clock_trusted;
};

/* A statement parameter: text (NULL = SQL NULL), integer or boolean. */
struct param {
	enum { P_NULL, P_TEXT, P_INT, P_BOOL } t;
	const char *s;
	int64_t i;
};
static struct param PT(const char *s)
{
	return (struct param){.t = s ? P_TEXT : P_NULL, .s = s};
}

static struct param PI(int64_t i)
{
	return (struct param){.t = P_INT, .i = i};
}

/* a time that is 0 when absent: NULL then */
static struct param PI_OPT(int64_t i)
{
	return i > 0 ? PI(i) : PT(NULL);
}

static struct param PB(bool b)
{
	return (struct param){.t = P_BOOL, .i = b ? 1 : 0};
}

struct db {
	sqlite3 *sq;
	sqlite3_stmt *st[S_N];
	PGconn *pg;
	int64_t hw; /* what SYNC_HW_LOCK returned last */
};

struct opts {
	const char *edge_db, *device, *sqlite, *pg;
	int64_t after, upto; /* entries after .. upto (0 = all) */
	int batch;
};

/* CPU time of this process (user + system), microseconds */
static int64_t cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
	       ru.ru_stime.tv_usec;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the outbox, read and converted before the clock starts ---- */

static bool jbool(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsTrue(v) || (cJSON_IsNumber(v) && v->valuedouble != 0);
}

static int64_t jint(const cJSON *o, const char *key, int64_t dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

static char *jstr(const cJSON *o, const char *key)
{
	const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return v ? strdup(v) : NULL;
}

/* An outbox id as the raw device's: its last 12 hex digits replaced by the
 * device id's (the random part of a UUIDv7; the first ones are a time). */
static int remap_id(const char *in, const char *device, char out[UUID_LEN + 1])
{
	if (!in || strlen(in) != UUID_LEN)
		return CW_ERR_INVAL;
	memcpy(out, in, UUID_LEN + 1);
	memcpy(out + UUID_LEN - 12, device + UUID_LEN - 12, 12);
	return CW_OK;
}

static int row_cart(struct row *r, const char *kind, const cJSON *pl, const char *device)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(pl, "cart");

	r->op = OP_CART;
	if (remap_id(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "id")), device,
		     r->id) != CW_OK)
		return CW_ERR_INVAL;
	r->cart_number = jint(o, "cart_number", 0);
	r->status = jstr(o, "status");
	r->is_locked = jbool(o, "is_locked");
	r->board_online = jbool(o, "board_online");
	r->bus = jint(o, "bus_index", 0);
	r->board = jint(o, "board_index", 0);
	r->locker_id = jint(o, "lock_index", 0);
	r->notes = jstr(o, "maintenance_notes");
	if (!r->notes && r->status && strcmp(r->status, "fault") == 0)
		r->notes = jstr(o, "fault_reason");
	r->last_used_ms = jint(o, "last_used", 0);
	r->updated_ms = jint(o, "updated", 0);
	if (jbool(o, "removed") || strcmp(kind, "cart.removed") == 0) {
		free(r->status);
		free(r->notes);
		r->status = strdup("offline");
		r->notes = strdup("removed from the device's configuration");
	}
	return r->status ? CW_OK : CW_ERR_INVAL;
}

static int row_rental(struct row *r, const cJSON *pl, const char *device)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(pl, "rental");
	int64_t dur = jint(o, "duration_s", -1);

	r->op = OP_RENTAL;
	if (remap_id(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "id")), device,
		     r->id) != CW_OK ||
	    remap_id(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "cart_id")), device,
		     r->cart_id) != CW_OK)
		return CW_ERR_INVAL;
	r->phone = jstr(o, "user_phone");
	r->status = jstr(o, "status");
	r->start_ms = jint(o, "start_time", 0);
	r->expected_ms = jint(o, "expected_return", 0);
	r->actual_ms = jint(o, "actual_return", 0);
	r->duration_min = dur >= 0 ? (dur + 30) / 60 : -1;
	r->notes = jstr(o, "notes");
	r->clock_trusted = jbool(o, "clock_trusted");
	r->updated_ms = jint(o, "updated", 0);
	return r->phone && r->status ? CW_OK : CW_ERR_INVAL;
}

/* telemetry: cart_id/rental_id folded into event_data as the cloud does */
static int row_telemetry(struct row *r, const cJSON *pl)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(pl, "telemetry");
	const cJSON *ed = cJSON_GetObjectItemCaseSensitive(o, "event_data");
	const char *cart = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "cart_id"));
	const char *rental =
		cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "rental_id"));
	cJSON *data = cJSON_IsObject(ed) ? cJSON_Duplicate(ed, 1) : cJSON_CreateObject();

	r->op = OP_TELEMETRY;
	r->event_type = jstr(o, "event_type");
	r->ts_ms = jint(o, "wall_ms", 0);
	r->clock_trusted = jbool(o, "clock_trusted");
	if (data && cart && !cJSON_GetObjectItemCaseSensitive(data, "cart_id"))
		cJSON_AddStringToObject(data, "cart_id", cart);
	if (data && rental && !cJSON_GetObjectItemCaseSensitive(data, "rental_id"))
		cJSON_AddStringToObject(data, "rental_id", rental);
	r->data = data ? cJSON_PrintUnformatted(data) : NULL;
	cJSON_Delete(data);
	return r->event_type && r->data ? CW_OK : CW_ERR_INVAL;
}

static int row_from(struct row *r, const char *kind, const char *payload, int64_t created,
		    bool trusted, const char *device)
{
	cJSON *pl = cJSON_Parse(payload);
	int rc;

	if (!cJSON_IsObject(pl)) {
		cJSON_Delete(pl);
		return CW_ERR_INVAL;
	}
	r->ts_ms = created;
	r->clock_trusted = trusted;
	if (strncmp(kind, "rental.", 7) == 0) {
		rc = row_rental(r, pl, device);
	} else if (strncmp(kind, "cart.", 5) == 0) {
		rc = row_cart(r, kind, pl, device);
	} else if (strcmp(kind, "telemetry") == 0) {
		rc = row_telemetry(r, pl);
	} else if (strcmp(kind, "device.health") == 0) {
		r->op = OP_HEALTH;
		r->event_type = strdup(kind);
		r->data = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(pl, "health"));
		rc = r->event_type && r->data ? CW_OK : CW_ERR_INVAL;
	} else {
		/* command.result and unknown kinds: a telemetry row of the kind
		 * (command.result is an UPDATE of one command on the server; the
		 * backlog of the benchmark has none) */
		r->op = OP_TELEMETRY;
		r->event_type = strdup(kind);
		r->data = cJSON_PrintUnformatted(pl);
		rc = r->event_type && r->data ? CW_OK : CW_ERR_NOMEM;
	}
	cJSON_Delete(pl);
	return rc;
}

static void rows_free(struct row *rows, int n)
{
	for (int i = 0; rows && i < n; i++) {
		free(rows[i].status);
		free(rows[i].notes);
		free(rows[i].phone);
		free(rows[i].event_type);
		free(rows[i].data);
	}
	free(rows);
}

static int outbox_read(const struct opts *o, struct row **out, int *n, int counts[4])
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	struct row *rows = NULL;
	int cap = 0, rc = CW_OK, src;

	*n = 0;
	if (sqlite3_open_v2(o->edge_db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(h, 5000) != SQLITE_OK ||
	    sqlite3_prepare_v2(h,
			       "SELECT seq, kind, payload, created_wall_ms, clock_trusted "
			       "FROM outbox WHERE seq > ?1 AND (?2 = 0 OR seq <= ?2) ORDER BY seq",
			       -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "bench_sync_raw: %s: %s\n", o->edge_db, sqlite3_errmsg(h));
		rc = CW_ERR_IO;
		goto out;
	}
	sqlite3_bind_int64(st, 1, o->after);
	sqlite3_bind_int64(st, 2, o->upto);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *kind = (const char *)sqlite3_column_text(st, 1);
		struct row *r;
		if (*n == cap) {
			int ncap = cap ? cap * 2 : 4096;
			struct row *g = realloc(rows, (size_t)ncap * sizeof(*rows));
			if (!g) {
				rc = CW_ERR_NOMEM;
				goto out;
			}
			rows = g;
			cap = ncap;
		}
		r = &rows[*n];
		memset(r, 0, sizeof(*r));
		r->seq = sqlite3_column_int64(st, 0);
		(*n)++;
		rc = row_from(r, kind ? kind : "", (const char *)sqlite3_column_text(st, 2),
			      sqlite3_column_int64(st, 3), sqlite3_column_int(st, 4) != 0,
			      o->device);
		if (rc != CW_OK) {
			fprintf(stderr, "bench_sync_raw: outbox seq %" PRId64 " (%s): not usable\n",
				r->seq, kind ? kind : "?");
			goto out;
		}
		counts[r->op]++;
	}
	if (src != SQLITE_DONE) {
		fprintf(stderr, "bench_sync_raw: reading the outbox: %s\n", sqlite3_errmsg(h));
		rc = CW_ERR_IO;
	}
out:
	sqlite3_finalize(st);
	sqlite3_close(h);
	if (rc != CW_OK) {
		rows_free(rows, *n);
		rows = NULL;
		*n = 0;
	}
	*out = rows;
	return rc;
}

/* ---- the database, both backends behind one exec ---- */

static int db_open(struct db *d, const struct opts *o)
{
	if (o->sqlite) {
		if (sqlite3_open_v2(o->sqlite, &d->sq, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
		    sqlite3_busy_timeout(d->sq, 5000) != SQLITE_OK ||
		    sqlite3_exec(d->sq,
				 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
				 "PRAGMA foreign_keys=ON",
				 NULL, NULL, NULL) != SQLITE_OK) {
			fprintf(stderr, "bench_sync_raw: %s: %s\n", o->sqlite, sqlite3_errmsg(d->sq));
			return CW_ERR_IO;
		}
		for (int i = 0; i < S_N; i++) {
			if (sqlite3_prepare_v2(d->sq, sq_sql[i], -1, &d->st[i], NULL) != SQLITE_OK) {
				fprintf(stderr, "bench_sync_raw: statement %d: %s\n", i,
					sqlite3_errmsg(d->sq));
				return CW_ERR_INTERNAL;
			}
		}
		return CW_OK;
	}
	d->pg = PQconnectdb(o->pg);
	if (PQstatus(d->pg) != CONNECTION_OK) {
		fprintf(stderr, "bench_sync_raw: %s", PQerrorMessage(d->pg));
		return CW_ERR_IO;
	}
	for (int i = 0; i < S_N; i++) {
		char name[16];
		PGresult *r;
		snprintf(name, sizeof(name), "s%d", i);
		r = PQprepare(d->pg, name, pg_sql[i], 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fprintf(stderr, "bench_sync_raw: statement %d: %s", i,
				PQerrorMessage(d->pg));
			PQclear(r);
			return CW_ERR_INTERNAL;
		}
		PQclear(r);
	}
	return CW_OK;
}

static void db_close(struct db *d)
{
	for (int i = 0; i < S_N; i++)
		sqlite3_finalize(d->st[i]);
	sqlite3_close(d->sq);
	PQfinish(d->pg);
}

static int sq_exec(struct db *d, int id, const struct param *p, int np, int64_t *rows_out)
{
	sqlite3_stmt *st = d->st[id];
	int src;

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	for (int i = 0; i < np; i++) {
		if (p[i].t == P_TEXT)
			sqlite3_bind_text(st, i + 1, p[i].s, -1, SQLITE_STATIC);
		else if (p[i].t == P_INT || p[i].t == P_BOOL)
			sqlite3_bind_int64(st, i + 1, p[i].i);
	}
	while ((src = sqlite3_step(st)) == SQLITE_ROW)
		if (id == S_HW_LOCK)
			d->hw = sqlite3_column_int64(st, 0);
	if (src != SQLITE_DONE) {
		fprintf(stderr, "bench_sync_raw: statement %d: %s\n", id, sqlite3_errmsg(d->sq));
		return CW_ERR_IO;
	}
	if (rows_out)
		*rows_out = sqlite3_changes(d->sq);
	return CW_OK;
}

static int pg_exec(struct db *d, int id, const struct param *p, int np, int64_t *rows_out)
{
	char bufs[MAX_PARAMS][24], name[16];
	const char *vals[MAX_PARAMS];
	PGresult *r;
	ExecStatusType st;
	int rc = CW_OK;

	for (int i = 0; i < np; i++) {
		vals[i] = NULL;
		if (p[i].t == P_TEXT) {
			vals[i] = p[i].s;
		} else if (p[i].t == P_INT) {
			snprintf(bufs[i], sizeof(bufs[i]), "%lld", (long long)p[i].i);
			vals[i] = bufs[i];
		} else if (p[i].t == P_BOOL) {
			vals[i] = p[i].i ? "true" : "false";
		}
	}
	snprintf(name, sizeof(name), "s%d", id);
	r = PQexecPrepared(d->pg, name, np, vals, NULL, NULL, 0);
	st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fprintf(stderr, "bench_sync_raw: statement %d: %s", id, PQerrorMessage(d->pg));
		rc = CW_ERR_IO;
	} else {
		if (id == S_HW_LOCK && PQntuples(r) == 1)
			d->hw = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		if (rows_out)
			*rows_out = strtoll(PQcmdTuples(r), NULL, 10);
	}
	PQclear(r);
	return rc;
}

static int db_exec(struct db *d, int id, const struct param *p, int np, int64_t *rows_out)
{
	return d->sq ? sq_exec(d, id, p, np, rows_out) : pg_exec(d, id, p, np, rows_out);
}

static int db_script(struct db *d, const char *sql)
{
	PGresult *r;
	int rc = CW_OK;

	if (d->sq) {
		if (sqlite3_exec(d->sq, sql, NULL, NULL, NULL) == SQLITE_OK)
			return CW_OK;
		fprintf(stderr, "bench_sync_raw: %s: %s\n", sql, sqlite3_errmsg(d->sq));
		return CW_ERR_IO;
	}
	r = PQexec(d->pg, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "bench_sync_raw: %s: %s", sql, PQerrorMessage(d->pg));
		rc = CW_ERR_IO;
	}
	PQclear(r);
	return rc;
}

/* ---- one batch: the statements of cw_store_sync_apply ---- */

struct target {
	char device[UUID_LEN + 1], branch[UUID_LEN + 1], chain[UUID_LEN + 1];
};

static int apply_one(struct db *d, const struct target *t, const struct row *x, int64_t now)
{
	int64_t changes = 0;
	int rc;

	switch (x->op) {
	case OP_CART: {
		char ctl[UUID_LEN + 1];
		/* the server's id is a hash of (device, bus, board) */
		snprintf(ctl, sizeof(ctl), "%04x%04x-0000-8000-8000-%.12s",
			 (unsigned)(x->bus & 0xffff), (unsigned)(x->board & 0xffff),
			 t->device + UUID_LEN - 12);
		struct param pc[] = {PT(ctl),	   PT(t->device),
				     PI(x->bus),   PI(x->board),
				     PT(x->board_online ? "online" : "offline"), PI(now)};
		struct param pk[] = {PT(x->id),		 PT(t->branch),	     PI(x->cart_number),
				     PI(x->locker_id),	 PT(ctl),	     PT(x->status),
				     PB(x->is_locked),	 PI_OPT(x->last_used_ms), PT(x->notes),
				     PI(x->updated_ms), PT(t->device)};
		rc = db_exec(d, S_CONTROLLER, pc, 6, NULL);
		if (rc == CW_OK)
			rc = db_exec(d, S_CART, pk, 11, &changes);
		return rc == CW_OK && changes != 1 ? CW_ERR_INVAL : rc;
	}
	case OP_RENTAL: {
		struct param p[] = {PT(x->id),
				    PT(x->cart_id),
				    PT(t->branch),
				    PT(t->device),
				    PT(x->phone),
				    PI(x->start_ms),
				    PI(x->expected_ms),
				    PI_OPT(x->actual_ms),
				    PB(x->clock_trusted),
				    PT(x->status),
				    x->duration_min >= 0 ? PI(x->duration_min) : PT(NULL),
				    PT(x->notes),
				    PI(now),
				    PI(x->updated_ms)};
		rc = db_exec(d, S_RENTAL, p, 14, &changes);
		return rc == CW_OK && changes != 1 ? CW_ERR_INVAL : rc;
	}
	case OP_TELEMETRY:
	case OP_HEALTH: {
		struct param p[] = {PT(t->device),	   PT(t->branch), PT(t->chain),
				    PI(x->seq),		   PT(x->event_type), PT(x->data),
				    PI(x->ts_ms),	   PB(x->clock_trusted), PI(now)};
		rc = db_exec(d, S_TELEMETRY, p, 9, NULL);
		if (rc == CW_OK && x->op == OP_HEALTH) {
			struct param ph[] = {PT(t->device), PT(x->data), PI(now)};
			rc = db_exec(d, S_HEALTH, ph, 3, NULL);
		}
		return rc;
	}
	}
	return CW_ERR_INTERNAL;
}

static int apply_batch(struct db *d, const struct target *t, const struct row *rows, int n)
{
	int64_t now = wall_ms();
	struct param pd[] = {PT(t->device)};
	struct param pl[] = {PT(t->device), PI(now)};
	struct param ps[] = {PT(t->device), PI(rows[n - 1].seq), PI(now)};
	int rc = db_script(d, d->sq ? "BEGIN IMMEDIATE" : "BEGIN");

	if (rc != CW_OK)
		return rc;
	d->hw = -1;
	rc = db_exec(d, S_DEVICE_GET, pd, 1, NULL);
	if (rc == CW_OK)
		rc = db_exec(d, S_HW_LOCK, pl, 2, NULL);
	if (rc == CW_OK && d->hw < 0)
		rc = CW_ERR_INTERNAL;
	for (int i = 0; rc == CW_OK && i < n; i++) {
		rc = apply_one(d, t, &rows[i], now);
		if (rc == CW_ERR_INVAL)
			fprintf(stderr, "bench_sync_raw: seq %" PRId64 " wrote no row\n", rows[i].seq);
	}
	if (rc == CW_OK)
		rc = db_exec(d, S_HW_SET, ps, 3, NULL);
	if (rc == CW_OK)
		return db_script(d, "COMMIT");
	db_script(d, "ROLLBACK");
	return rc;
}

/* branch and chain of the target device (not timed) */
static int target_load(struct db *d, struct target *t, const char *device)
{
	static const char *const sq = "SELECT d.branch_id, b.chain_id FROM devices d "
				      "JOIN branches b ON b.id = d.branch_id WHERE d.id = ?1";
	static const char *const pg = "SELECT d.branch_id, b.chain_id FROM devices d "
				      "JOIN branches b ON b.id = d.branch_id WHERE d.id = $1::uuid";
	int rc = CW_ERR_NOTFOUND;

	snprintf(t->device, sizeof(t->device), "%s", device);
	if (d->sq) {
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(d->sq, sq, -1, &st, NULL) == SQLITE_OK &&
		    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC) == SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW) {
			snprintf(t->branch, sizeof(t->branch), "%s", sqlite3_column_text(st, 0));
			snprintf(t->chain, sizeof(t->chain), "%s", sqlite3_column_text(st, 1));
			rc = CW_OK;
		}
		sqlite3_finalize(st);
	} else {
		const char *v[] = {device};
		PGresult *r = PQexecParams(d->pg, pg, 1, NULL, v, NULL, NULL, 0);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
			snprintf(t->branch, sizeof(t->branch), "%s", PQgetvalue(r, 0, 0));
			snprintf(t->chain, sizeof(t->chain), "%s", PQgetvalue(r, 0, 1));
			rc = CW_OK;
		}
		PQclear(r);
	}
	if (rc != CW_OK)
		fprintf(stderr, "bench_sync_raw: device %s is not in the database\n", device);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_sync_raw --edge-db FILE --after SEQ [--upto SEQ] --device ID\n"
		   "         (--sqlite FILE | --pg CONNINFO) [--batch N (500)]\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	int after = 0, upto = 0;

	memset(o, 0, sizeof(*o));
	o->batch = 500;
	for (int i = 1; i < argc; i++) {
		const char *a;
		char *v;
		int rc = cw_bench_next_opt(argc, argv, &i, "bench_sync_raw", NULL, usage, &a, &v);

		if (rc != CW_OK)
			return rc;
		if (strcmp(a, "--edge-db") == 0) {
			o->edge_db = v;
		} else if (strcmp(a, "--device") == 0) {
			o->device = v;
			if (strlen(v) != UUID_LEN)
				rc = CW_ERR_INVAL;
		} else if (strcmp(a, "--sqlite") == 0) {
			o->sqlite = v;
		} else if (strcmp(a, "--pg") == 0) {
			o->pg = v;
		} else if (strcmp(a, "--after") == 0) {
			rc = cw_bench_parse_int(v, 0, 2000000000, &after);
		} else if (strcmp(a, "--upto") == 0) {
			rc = cw_bench_parse_int(v, 1, 2000000000, &upto);
		} else if (strcmp(a, "--batch") == 0) {
			rc = cw_bench_parse_int(v, 1, 1000, &o->batch);
		} else {
			fprintf(stderr, "bench_sync_raw: unknown option %s\n", a);
			usage(stderr);
			return CW_ERR_INVAL;
		}
		if (rc != CW_OK) {
			fprintf(stderr, "bench_sync_raw: bad value for %s: %s\n", a, v);
			return rc;
		}
	}
	o->after = after;
	o->upto = upto;
	if (!o->edge_db || !o->device || !o->sqlite == !o->pg) {
		usage(stderr);
		return CW_ERR_INVAL;
	}
	return CW_OK;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct db d = {0};
	struct target t;
	struct row *rows = NULL;
	int n = 0, counts[4] = {0}, batches = 0, rc, status = 1;
	int64_t t0, t1, c0, c1;

	if (parse_args(argc, argv, &o) != CW_OK)
		return 2;
	/* SQLite mallocs and frees a block of ~85 KiB around each statement; in
	 * a single-threaded process glibc then gives the heap's top back to the
	 * kernel (trim threshold 128 KiB) and faults it in again each time: 2 ms
	 * a statement, a cost of malloc, not of the database. The server does
	 * not pay it (glibc raises the threshold after freeing its first
	 * mmap'd block, a request body), so the ceiling must not either. */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	if (outbox_read(&o, &rows, &n, counts) != CW_OK)
		goto out;
	if (n == 0) {
		fprintf(stderr, "bench_sync_raw: no outbox entries after seq %" PRId64 "\n", o.after);
		goto out;
	}
	if (db_open(&d, &o) != CW_OK || target_load(&d, &t, o.device) != CW_OK)
		goto out;
	t0 = cw_bench_now_us();
	c0 = cpu_us();
	for (int i = 0; i < n; i += o.batch, batches++) {
		rc = apply_batch(&d, &t, rows + i, n - i < o.batch ? n - i : o.batch);
		if (rc != CW_OK) {
			fprintf(stderr, "bench_sync_raw: batch %d failed: %s\n", batches,
				cw_strerror(rc));
			goto out;
		}
	}
	t1 = cw_bench_now_us();
	c1 = cpu_us();
	printf("backend=%s entries=%d carts=%d rentals=%d telemetry=%d health=%d batch=%d "
	       "batches=%d seconds=%.3f entries_per_s=%.0f ms_per_batch=%.2f cpu_ms_per_batch=%.2f\n",
	       d.sq ? "sqlite" : "postgres", n, counts[OP_CART], counts[OP_RENTAL],
	       counts[OP_TELEMETRY], counts[OP_HEALTH], o.batch, batches,
	       (double)(t1 - t0) / 1e6, (double)n * 1e6 / (double)(t1 - t0),
	       (double)(t1 - t0) / 1000.0 / batches, (double)(c1 - c0) / 1000.0 / batches);
	status = 0;
out:
	db_close(&d);
	rows_free(rows, n);
	return status;
}
