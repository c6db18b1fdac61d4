/* cw_engine.c - the rental engine: the state machine of BRIEF.md §4, sensor
 * input, reconciliation, overdue/timeouts and the transactional outbox.
 *
 * Rules of this file (docs/RENTALS.md describes the behaviour):
 *  - every slot state change goes through cwe_cart_transition() and every rental
 *    state change through cwe_rental_transition(): the only two places that check
 *    from -> to against the tables below;
 *  - every change and its outbox entry are written in one BEGIN IMMEDIATE
 *    transaction; any failure rolls the whole transaction back;
 *  - the engine mutex guards the connection and is never held while the
 *    hardware releases a lock (hw.unlock), because the bus worker calls back
 *    into the engine with sensor status while it works. */
#include "cw_engine_int.h"
#include "cw_engine_test.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_uuid.h"


/* ------------------------------------------------------------------ time */

/* Test hook: shifts both clocks of every engine in the process. */
static _Atomic int64_t test_offset_ms;

void cw_engine_test_advance_clock(int64_t ms)
{
	atomic_fetch_add(&test_offset_ms, ms);
}

int64_t cw_engine_now_wall(void)
{
	return cw_wall_ms() + atomic_load(&test_offset_ms);
}

int64_t cw_engine_now_mono(void)
{
	return cw_mono_ms() + atomic_load(&test_offset_ms);
}


/* The kernel's clock when it is NTP-synchronised; otherwise, once the cloud
 * told us the time over verified TLS (cw_engine_server_time), the kernel's
 * clock corrected by the offset measured then (docs/SYNC.md "Commands"). */
void cwe_stamp_now(struct cw_engine *e, struct stamp *s)
{
	bool kernel = cw_wall_trusted();

	s->wall = cw_engine_now_wall();
	s->mono = cw_engine_now_mono();
	s->trusted = kernel;
	if (!kernel && atomic_load(&e->server_synced)) {
		s->wall += atomic_load(&e->server_offset_ms);
		s->trusted = true;
	}
}

/* Within this, the kernel clock and the cloud's agree (a round trip on a
 * slow link); beyond it the kernel clock is corrected. */
#define SERVER_SKEW_TOLERANCE_MS 2000

void cw_engine_server_time(struct cw_engine *e, int64_t wall_ms, int64_t mono_ms)
{
	int64_t local, skew, prev;

	if (!e || wall_ms <= 0)
		return;
	/* The kernel's wall clock at the moment the answer arrived. */
	local = cw_engine_now_wall() - (cw_engine_now_mono() - mono_ms);
	skew = wall_ms - local;
	if (skew > -SERVER_SKEW_TOLERANCE_MS && skew < SERVER_SKEW_TOLERANCE_MS)
		skew = 0;
	prev = atomic_load(&e->server_offset_ms);
	/* logged when it starts or moves, not at every heartbeat */
	if (!atomic_load(&e->server_synced) || skew - prev >= SERVER_SKEW_TOLERANCE_MS ||
	    prev - skew >= SERVER_SKEW_TOLERANCE_MS) {
		if (skew != 0)
			cw_warn("engine.clock_skew", "skew_ms=%lld kernel_synced=%d note=\"records "
				"use the cloud's time while the kernel clock is not synchronised\"",
				(long long)skew, cw_wall_trusted() ? 1 : 0);
		else
			cw_info("engine.clock_from_cloud", "skew_ms=0");
	}
	atomic_store(&e->server_offset_ms, skew);
	atomic_store(&e->server_synced, true);
}

bool cw_engine_clock_trusted(struct cw_engine *e)
{
	return cw_wall_trusted() || (e && atomic_load(&e->server_synced));
}

void cwe_unlock(struct cw_engine *e)
{
	void (*fn)(void *) = e->outbox_hook;
	void *ctx = e->outbox_hook_ctx;
	bool fire = e->notify_pending;

	e->notify_pending = false;
	pthread_mutex_unlock(&e->mu);
	if (fire && fn)
		fn(ctx);
}

void cwe_outbox_written(struct cw_engine *e)
{
	e->outbox_written = true;
}

void cw_engine_set_outbox_hook(struct cw_engine *e, void (*fn)(void *ctx), void *ctx)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	e->outbox_hook = fn;
	e->outbox_hook_ctx = ctx;
	e->notify_pending = false;
	pthread_mutex_unlock(&e->mu);
}

/* Milliseconds since an instant recorded as (wall, mono, boot). Monotonic
 * when the instant was taken during this boot (trusted), else the wall clock
 * difference, trusted only if the clock was trusted at both ends. */
int64_t cwe_elapsed_ms(const struct cw_engine *e, const struct stamp *now, int64_t wall0,
			  int64_t mono0, const char *boot0, bool trusted0, bool *trusted)
{
	int64_t d;
	bool t;

	if (boot0 && strcmp(boot0, e->boot) == 0) {
		d = now->mono - mono0;
		t = true;
	} else {
		d = now->wall - wall0;
		t = trusted0 && now->trusted;
	}
	if (d < 0) {
		d = 0;
		t = false;
	}
	if (trusted)
		*trusted = t;
	return d;
}

static void read_boot_id(char out[40])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	size_t n = 0;

	if (f) {
		if (fgets(out, 40, f))
			n = strcspn(out, "\r\n");
		fclose(f);
	}
	out[n] = '\0';
	if (n < 8) {
		/* No boot id (not Linux /proc): a random one makes monotonic times of a
		 * previous process incomparable, so restarts fall back to wall time. */
		if (cw_uuid_v7(out) != CW_OK)
			snprintf(out, 40, "unknown");
	}
}

/* ------------------------------------------------------------------- SQL */

int cw_eq_vprepare(struct cw_engine *e, sqlite3_stmt **st, const char *sql, const char *types,
		   va_list ap)
{
	int rc;

	*st = NULL;
	rc = sqlite3_prepare_v2(e->h, sql, -1, st, NULL);
	if (rc != SQLITE_OK) {
		cw_error("engine.sql", "rc=%d msg=\"%s\" sql=\"%.80s\"", rc, sqlite3_errmsg(e->h), sql);
		return CW_ERR_DB;
	}
	for (int i = 0; types && types[i]; i++) {
		if (types[i] == 'i') {
			rc = sqlite3_bind_int64(*st, i + 1, va_arg(ap, int64_t));
		} else if (types[i] == 't') {
			const char *s = va_arg(ap, const char *);
			rc = s ? sqlite3_bind_text(*st, i + 1, s, -1, SQLITE_TRANSIENT)
			       : sqlite3_bind_null(*st, i + 1);
		} else {
			rc = SQLITE_MISUSE;
		}
		if (rc != SQLITE_OK) {
			cw_error("engine.sql", "msg=\"bind %d failed\" sql=\"%.80s\"", i + 1, sql);
			sqlite3_finalize(*st);
			*st = NULL;
			return CW_ERR_DB;
		}
	}
	return CW_OK;
}

int cw_eq_prepare(struct cw_engine *e, sqlite3_stmt **st, const char *sql, const char *types, ...)
{
	va_list ap;
	int rc;

	va_start(ap, types);
	rc = cw_eq_vprepare(e, st, sql, types, ap);
	va_end(ap);
	return rc;
}

int cw_eq_exec(struct cw_engine *e, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;
	int rc;

	va_start(ap, types);
	rc = cw_eq_vprepare(e, &st, sql, types, ap);
	va_end(ap);
	if (rc != CW_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		cw_error("engine.sql", "rc=%d msg=\"%s\" sql=\"%.80s\"", rc, sqlite3_errmsg(e->h), sql);
		sqlite3_finalize(st);
		return CW_ERR_DB;
	}
	sqlite3_finalize(st);
	return CW_OK;
}

int cw_eq_int(struct cw_engine *e, int64_t *out, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;
	int rc;

	*out = 0;
	va_start(ap, types);
	rc = cw_eq_vprepare(e, &st, sql, types, ap);
	va_end(ap);
	if (rc != CW_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = CW_OK;
	} else if (rc == SQLITE_DONE) {
		rc = CW_OK;
	} else {
		cw_error("engine.sql", "rc=%d msg=\"%s\" sql=\"%.80s\"", rc, sqlite3_errmsg(e->h), sql);
		rc = CW_ERR_DB;
	}
	sqlite3_finalize(st);
	return rc;
}

int cwe_step(struct cw_engine *e, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return CW_OK;
	if (rc == SQLITE_DONE)
		return CW_ERR_NOTFOUND;
	cw_error("engine.sql", "rc=%d msg=\"%s\" sql=\"%.80s\"", rc, sqlite3_errmsg(e->h),
		 sqlite3_sql(st));
	return CW_ERR_DB;
}

/* Savepoints nest (SQLite keeps a stack), so one name serves every level. */
int cwe_savepoint(struct cw_engine *e)
{
	return cw_eq_exec(e, "SAVEPOINT cwe_item", "");
}

int cwe_savepoint_end(struct cw_engine *e, int rc)
{
	if (rc == CW_OK)
		return cw_eq_exec(e, "RELEASE cwe_item", "");
	/* Fails when SQLite already rolled the whole transaction back (I/O
	 * error, disk full): then the caller must give up as well. */
	rc = cw_eq_exec(e, "ROLLBACK TO cwe_item", "");
	if (rc == CW_OK)
		rc = cw_eq_exec(e, "RELEASE cwe_item", "");
	return rc;
}

void cwe_col_text(sqlite3_stmt *st, int i, char *buf, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	snprintf(buf, cap, "%s", t ? (const char *)t : "");
}

/* ------------------------------------------------------- state machines */

static const char *const cart_st_name[CS_N] = {"available", "rented", "awaiting-return",
					       "maintenance", "fault"};
/* Allowed slot transitions (BRIEF.md §4; docs/RENTALS.md "Slot states"). */
static const bool cart_edge[CS_N][CS_N] = {
	[CS_AVAILABLE] = {[CS_RENTED] = true, [CS_AWAITING] = true, [CS_MAINT] = true,
			  [CS_FAULT] = true},
	[CS_RENTED] = {[CS_AVAILABLE] = true, [CS_AWAITING] = true, [CS_FAULT] = true},
	[CS_AWAITING] = {[CS_AVAILABLE] = true, [CS_RENTED] = true},
	[CS_MAINT] = {[CS_AVAILABLE] = true},
	[CS_FAULT] = {[CS_AVAILABLE] = true, [CS_MAINT] = true},
};

static const char *const rental_st_name[RS_N] = {"active", "overdue", "returned",
						 "returned-late", "cancelled"};
/* Allowed rental transitions. An overdue rental stays open: it can still be
 * returned (always as returned-late) and still blocks its phone. */
static const bool rental_edge[RS_N][RS_N] = {
	[RS_ACTIVE] = {[RS_OVERDUE] = true, [RS_RETURNED] = true, [RS_LATE] = true,
		       [RS_CANCELLED] = true},
	[RS_OVERDUE] = {[RS_LATE] = true, [RS_CANCELLED] = true},
};

int cwe_parse_state(const char *s, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}


void cwe_cart_from_row(sqlite3_stmt *st, struct cart_row *c)
{
	char s[24];

	memset(c, 0, sizeof(*c));
	cwe_col_text(st, 0, c->id, sizeof(c->id));
	c->number = sqlite3_column_int(st, 1);
	c->bus = sqlite3_column_int(st, 2);
	c->board = sqlite3_column_int(st, 3);
	c->lock = sqlite3_column_int(st, 4);
	cwe_col_text(st, 5, s, sizeof(s));
	c->st = cwe_parse_state(s, cart_st_name, CS_N);
	c->present = sqlite3_column_int(st, 6) != 0;
	c->hook = sqlite3_column_int(st, 7) != 0;
	c->online = sqlite3_column_int(st, 8) != 0;
	c->removed = sqlite3_column_int(st, 9) != 0;
	cwe_col_text(st, 10, c->reserved, sizeof(c->reserved));
	c->res_wall = sqlite3_column_int64(st, 11);
	c->res_mono = sqlite3_column_int64(st, 12);
	cwe_col_text(st, 13, c->res_boot, sizeof(c->res_boot));
}

/* where is a literal SQL condition. CW_OK, CW_ERR_NOTFOUND or CW_ERR_DB. */
int cwe_cart_load(struct cw_engine *e, struct cart_row *c, const char *where, const char *types,
		     ...)
{
	char sql[512];
	sqlite3_stmt *st = NULL;
	va_list ap;
	int rc;

	snprintf(sql, sizeof(sql), "SELECT " CART_COLS " FROM carts WHERE %s", where);
	va_start(ap, types);
	rc = cw_eq_vprepare(e, &st, sql, types, ap);
	va_end(ap);
	if (rc != CW_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		cwe_cart_from_row(st, c);
		rc = CW_OK;
	} else {
		rc = rc == SQLITE_DONE ? CW_ERR_NOTFOUND : CW_ERR_DB;
	}
	sqlite3_finalize(st);
	return rc;
}


int cwe_rental_load(struct cw_engine *e, struct rental_row *r, const char *where,
		       const char *types, ...)
{
	char sql[512];
	char s[24];
	sqlite3_stmt *st = NULL;
	va_list ap;
	int rc;

	snprintf(sql, sizeof(sql), "SELECT " RENTAL_COLS " FROM rentals WHERE %s", where);
	va_start(ap, types);
	rc = cw_eq_vprepare(e, &st, sql, types, ap);
	va_end(ap);
	if (rc != CW_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? CW_ERR_NOTFOUND : CW_ERR_DB;
		goto out;
	}
	memset(r, 0, sizeof(*r));
	cwe_col_text(st, 0, r->id, sizeof(r->id));
	cwe_col_text(st, 1, r->cart_id, sizeof(r->cart_id));
	cwe_col_text(st, 2, r->phone, sizeof(r->phone));
	cwe_col_text(st, 3, s, sizeof(s));
	r->st = cwe_parse_state(s, rental_st_name, RS_N);
	r->start_wall = sqlite3_column_int64(st, 4);
	r->start_trusted = sqlite3_column_int(st, 5) != 0;
	r->start_mono = sqlite3_column_int64(st, 6);
	cwe_col_text(st, 7, r->boot, sizeof(r->boot));
	r->allowed_ms = sqlite3_column_int64(st, 8);
	r->grace_ms = sqlite3_column_int64(st, 9);
	r->release_confirmed = sqlite3_column_int(st, 10) != 0;
	r->rel_wall = sqlite3_column_int64(st, 11);
	r->rel_mono = sqlite3_column_int64(st, 12);
	cwe_col_text(st, 13, r->rel_boot, sizeof(r->rel_boot));
	r->taken = sqlite3_column_int(st, 14) != 0;
	cwe_col_text(st, 15, r->return_slot, sizeof(r->return_slot));
	rc = CW_OK;
out:
	sqlite3_finalize(st);
	return rc;
}

bool cwe_rental_open(const struct rental_row *r)
{
	return r->st == RS_ACTIVE || r->st == RS_OVERDUE;
}

/* ---------------------------------------------------------------- outbox */

/* Each outbox payload is a snapshot of the entity after the change, built by
 * SQLite from the row inside the same transaction (docs/RENTALS.md "Outbox"). */
int cwe_outbox_rental(struct cw_engine *e, const struct stamp *now, const char *rental_id,
			 const char *kind)
{
	static const char sql[] =
		"INSERT INTO outbox(kind, entity_type, entity_id, payload, created_wall_ms, "
		"clock_trusted) SELECT ?1, 'rental', r.id, json_object('v', 1, 'event', ?1, "
		"'chain_id', ?2, 'branch_id', r.branch_id, 'device_id', ?3, 'at', ?4, "
		"'clock_trusted', json(CASE WHEN ?5 THEN 'true' ELSE 'false' END), "
		"'rental', json_object('id', r.id, 'cart_id', r.cart_id, 'cart_number', c.cart_number, "
		"'user_phone', r.user_phone, 'status', r.status, 'start_time', r.start_time, "
		"'start_trusted', r.start_trusted, 'expected_return', r.expected_return, "
		"'actual_return', r.actual_return, 'return_trusted', r.return_trusted, "
		"'duration_s', r.duration_s, 'duration_trusted', r.duration_trusted, "
		"'release_confirmed', r.release_confirmed, 'unlock_latency_ms', r.unlock_latency_ms, "
		"'taken', r.taken, 'return_slot', r.return_slot, 'returned_to', r.returned_to, "
		"'end_reason', r.end_reason, 'notes', r.notes, 'clock_trusted', r.clock_trusted, "
		"'updated', r.updated_wall_ms)), ?4, ?5 "
		"FROM rentals r JOIN carts c ON c.id = r.cart_id WHERE r.id = ?6";
	int rc = cw_eq_exec(e, sql, "tttiit", kind, e->chain_id, e->device_id, now->wall,
			    I64(now->trusted), rental_id);
	if (rc == CW_OK)
		cwe_outbox_written(e);
	return rc;
}

int cwe_outbox_cart(struct cw_engine *e, const struct stamp *now, const char *cart_id,
		       const char *kind)
{
	static const char sql[] =
		"INSERT INTO outbox(kind, entity_type, entity_id, payload, created_wall_ms, "
		"clock_trusted) SELECT ?1, 'cart', c.id, json_object('v', 1, 'event', ?1, "
		"'chain_id', ?2, 'branch_id', c.branch_id, 'device_id', ?3, 'at', ?4, "
		"'clock_trusted', json(CASE WHEN ?5 THEN 'true' ELSE 'false' END), "
		"'cart', json_object('id', c.id, 'cart_number', c.cart_number, 'status', c.status, "
		"'board_online', c.board_online, 'cart_present', c.cart_present, "
		"'hook_closed', c.hook_closed, 'is_locked', c.is_locked, 'bus_index', c.bus_index, "
		"'board_index', c.board_index, 'lock_index', c.lock_index, 'removed', c.removed, "
		"'fault_reason', c.fault_reason, 'maintenance_notes', c.maintenance_notes, "
		"'reserved_for_rental', c.reserved_for_rental, 'last_used', c.last_used_wall_ms, "
		"'updated', c.updated_wall_ms, 'controller_id', c.controller_id, "
		/* the board, so that the cloud can upsert its controllers row
		 * (docs/SYNC.md); null for a cart without one */
		"'controller', json(CASE WHEN k.id IS NULL THEN NULL ELSE json_object('id', k.id, "
		"'address', k.address, 'protocol', k.protocol, 'bus_name', k.bus_name, "
		"'bus_index', k.bus_index, 'board_index', k.board_index) END))), ?4, ?5 "
		"FROM carts c LEFT JOIN controllers k ON k.id = c.controller_id WHERE c.id = ?6";
	int rc = cw_eq_exec(e, sql, "tttiit", kind, e->chain_id, e->device_id, now->wall,
			    I64(now->trusted), cart_id);
	if (rc == CW_OK)
		cwe_outbox_written(e);
	return rc;
}

/* Records a telemetry event and its outbox entry. data is consumed (may be NULL). */
int cwe_telemetry(struct cw_engine *e, const struct stamp *now, const char *type,
		     const char *cart_id, const char *rental_id, cJSON *data)
{
	static const char ins[] = "INSERT INTO telemetry(event_type, cart_id, rental_id, event_data, "
				  "wall_ms, clock_trusted) VALUES (?, ?, ?, ?, ?, ?)";
	static const char box[] =
		"INSERT INTO outbox(kind, entity_type, entity_id, payload, created_wall_ms, "
		"clock_trusted) SELECT 'telemetry', 'telemetry', CAST(t.id AS TEXT), "
		"json_object('v', 1, 'event', 'telemetry', 'chain_id', ?1, 'branch_id', ?2, "
		"'device_id', ?3, 'at', t.wall_ms, 'clock_trusted', "
		"json(CASE WHEN t.clock_trusted THEN 'true' ELSE 'false' END), "
		"'telemetry', json_object('id', t.id, 'event_type', t.event_type, "
		"'cart_id', t.cart_id, 'rental_id', t.rental_id, 'event_data', json(t.event_data), "
		"'wall_ms', t.wall_ms, 'clock_trusted', t.clock_trusted)), t.wall_ms, t.clock_trusted "
		"FROM telemetry t WHERE t.id = ?4";
	char *txt = NULL;
	int rc;

	if (!data)
		data = cJSON_CreateObject();
	txt = data ? cJSON_PrintUnformatted(data) : NULL;
	cJSON_Delete(data);
	if (!txt)
		return CW_ERR_NOMEM;
	rc = cw_eq_exec(e, ins, "ttttii", type, cart_id, rental_id, txt, now->wall,
			I64(now->trusted));
	free(txt);
	if (rc != CW_OK)
		return rc;
	rc = cw_eq_exec(e, box, "ttti", e->chain_id, e->branch_id, e->device_id,
			I64(sqlite3_last_insert_rowid(e->h)));
	if (rc == CW_OK)
		cwe_outbox_written(e);
	if (rc == CW_OK)
		cw_info("engine.event", "type=%s cart=%s rental=%s", type, cart_id ? cart_id : "-",
			rental_id ? rental_id : "-");
	return rc;
}

/* Small builder for telemetry data: pairs of key, string value. */
cJSON *cwe_jdata(const char *k1, const char *v1, const char *k2, const char *v2)
{
	cJSON *o = cJSON_CreateObject();

	if (o && k1)
		cJSON_AddStringToObject(o, k1, v1 ? v1 : "");
	if (o && k2)
		cJSON_AddStringToObject(o, k2, v2 ? v2 : "");
	return o;
}

/* ------------------------------------------------------- transitions */

/* The one place a slot changes state. arg: rental id for awaiting-return,
 * note for maintenance, reason for fault. Writes the outbox entry. */
int cwe_cart_transition(struct cw_engine *e, const struct stamp *now, const char *cart_id,
			   int to, const char *arg)
{
	static const char sql[] =
		"UPDATE carts SET status = ?1, "
		"reserved_for_rental = CASE WHEN ?1 = 'awaiting-return' THEN ?2 END, "
		"reserved_wall_ms = CASE WHEN ?1 = 'awaiting-return' THEN ?3 END, "
		"reserved_mono_ms = CASE WHEN ?1 = 'awaiting-return' THEN ?4 END, "
		"reserved_boot = CASE WHEN ?1 = 'awaiting-return' THEN ?5 END, "
		"maintenance_notes = CASE WHEN ?1 = 'maintenance' THEN ?2 ELSE maintenance_notes END, "
		"fault_reason = CASE WHEN ?1 = 'fault' THEN ?2 WHEN ?1 = 'available' THEN NULL "
		"ELSE fault_reason END, "
		"last_used_wall_ms = CASE WHEN ?1 = 'rented' THEN ?3 ELSE last_used_wall_ms END, "
		"updated_wall_ms = ?3 WHERE id = ?6";
	struct cart_row c;
	int rc;

	rc = cwe_cart_load(e, &c, "id = ?1", "t", cart_id);
	if (rc != CW_OK)
		return rc;
	if (c.st < 0 || to < 0 || to >= CS_N || !cart_edge[c.st][to]) {
		cw_warn("engine.transition", "what=cart cart=%d from=%s to=%s msg=\"not allowed\"",
			c.number, c.st >= 0 ? cart_st_name[c.st] : "?",
			to >= 0 && to < CS_N ? cart_st_name[to] : "?");
		return CW_ERR_STATE;
	}
	rc = cw_eq_exec(e, sql, "ttiitt", cart_st_name[to], arg, now->wall, now->mono, e->boot,
			cart_id);
	if (rc != CW_OK)
		return rc;
	cw_info("cart.state", "cart=%d from=%s to=%s", c.number, cart_st_name[c.st],
		cart_st_name[to]);
	return cwe_outbox_cart(e, now, cart_id, "cart.updated");
}

/* The one place a rental changes state. For terminal states the return time
 * and the duration are computed here; returned_to may be NULL. */
int cwe_rental_transition(struct cw_engine *e, const struct stamp *now,
			     const struct rental_row *r, int to, const char *reason,
			     const char *returned_to, const char *note)
{
	static const char upd_open[] =
		"UPDATE rentals SET status = ?1, updated_wall_ms = ?2 WHERE id = ?3";
	static const char upd_close[] =
		"UPDATE rentals SET status = ?1, updated_wall_ms = ?2, actual_return = ?2, "
		"return_trusted = ?3, duration_s = ?4, duration_trusted = ?5, returned_to = ?6, "
		"end_reason = ?7, notes = CASE WHEN ?8 IS NULL THEN notes "
		"ELSE coalesce(notes || '; ', '') || ?8 END WHERE id = ?9";
	char kind[40];
	int rc;

	if (r->st < 0 || to < 0 || to >= RS_N || !rental_edge[r->st][to]) {
		cw_warn("engine.transition", "what=rental rental=%s from=%s to=%s msg=\"not allowed\"",
			r->id, r->st >= 0 ? rental_st_name[r->st] : "?",
			to >= 0 && to < RS_N ? rental_st_name[to] : "?");
		return CW_ERR_STATE;
	}
	if (to == RS_OVERDUE) {
		rc = cw_eq_exec(e, upd_open, "tit", rental_st_name[to], now->wall, r->id);
	} else {
		bool dt = false;
		int64_t d = cwe_elapsed_ms(e, now, r->start_wall, r->start_mono, r->boot,
				       r->start_trusted, &dt);
		rc = cw_eq_exec(e, upd_close, "tiiiitttt", rental_st_name[to], now->wall,
				I64(now->trusted), (d + 500) / 1000, I64(dt), returned_to, reason,
				note, r->id);
	}
	if (rc != CW_OK)
		return rc;
	cw_info("rental.state", "rental=%s from=%s to=%s reason=\"%s\"", r->id,
		rental_st_name[r->st], rental_st_name[to], reason ? reason : "");
	snprintf(kind, sizeof(kind), "rental.%s", rental_st_name[to]);
	return cwe_outbox_rental(e, now, r->id, kind);
}

/* Is this rental past expected return + grace? */
bool cwe_rental_late(const struct cw_engine *e, const struct stamp *now,
			const struct rental_row *r)
{
	int64_t el = cwe_elapsed_ms(e, now, r->start_wall, r->start_mono, r->boot, r->start_trusted,
				NULL);
	return r->st == RS_OVERDUE || el > r->allowed_ms + r->grace_ms;
}

/* Frees the slots a closing rental held: its own slot (rented, or
 * awaiting-return reserved for it) and its designated return slot (only while
 * it is still awaiting-return reserved for this rental: a slot rented or
 * reserved by anybody else meanwhile is never touched) go back to available,
 * or to fault_reason's fault for the own slot when the release failed. */
int cwe_release_slots(struct cw_engine *e, const struct stamp *now, const struct rental_row *r,
			 const char *fault_reason)
{
	const char *ids[2] = {r->cart_id, r->return_slot[0] ? r->return_slot : NULL};
	int rc;

	for (int i = 0; i < 2; i++) {
		struct cart_row c;
		if (!ids[i] || (i == 1 && strcmp(ids[1], ids[0]) == 0))
			continue;
		rc = cwe_cart_load(e, &c, "id = ?1", "t", ids[i]);
		if (rc == CW_ERR_NOTFOUND)
			continue;
		if (rc != CW_OK)
			return rc;
		if (c.st == CS_AWAITING && strcmp(c.reserved, r->id) != 0)
			continue; /* reserved for someone else meanwhile */
		if (c.st != CS_AWAITING && (i == 1 || c.st != CS_RENTED))
			continue; /* the return slot is ours only while reserved for us */
		if (i == 0 && fault_reason && c.st == CS_RENTED)
			rc = cwe_cart_transition(e, now, c.id, CS_FAULT, fault_reason);
		else
			rc = cwe_cart_transition(e, now, c.id, CS_AVAILABLE, NULL);
		if (rc != CW_OK)
			return rc;
	}
	return CW_OK;
}

/* Closes an open rental as returned / returned-late into slot_id (NULL for a
 * staff force return), freeing every slot it held. */
int cwe_close_returned(struct cw_engine *e, const struct stamp *now, const struct rental_row *r,
			  const char *slot_id, const char *reason, const char *note)
{
	int to = cwe_rental_late(e, now, r) ? RS_LATE : RS_RETURNED;
	int rc;

	rc = cwe_rental_transition(e, now, r, to, reason, slot_id, note);
	if (rc != CW_OK)
		return rc;
	rc = cwe_release_slots(e, now, r, NULL);
	if (rc != CW_OK)
		return rc;
	/* slot_id is the rental's own slot (rule 1) or its designated slot,
	 * both freed just above; a force return (NULL) frees the same two. */
	return CW_OK;
}

int cwe_cancel_rental(struct cw_engine *e, const struct stamp *now, const struct rental_row *r,
			 const char *reason, const char *fault_reason)
{
	int rc = cwe_rental_transition(e, now, r, RS_CANCELLED, reason, NULL, NULL);
	if (rc != CW_OK)
		return rc;
	return cwe_release_slots(e, now, r, fault_reason);
}

/* Marks the release of an open rental confirmed (by the bus, or by the
 * sensors: the cart left the slot). */
int cwe_confirm_release(struct cw_engine *e, const struct stamp *now, const struct rental_row *r,
			   int64_t latency_ms, bool has_latency)
{
	int rc = cw_eq_exec(e,
			    "UPDATE rentals SET release_confirmed = 1, released_wall_ms = ?1, "
			    "released_mono_ms = ?2, released_boot = ?3, "
			    "unlock_latency_ms = CASE WHEN ?4 < 0 THEN NULL ELSE ?4 END, "
			    "updated_wall_ms = ?1 WHERE id = ?5",
			    "iitit", now->wall, now->mono, e->boot,
			    has_latency ? latency_ms : I64(-1), r->id);
	if (rc == CW_OK)
		rc = cw_eq_exec(e, "UPDATE carts SET is_locked = 0, updated_wall_ms = ?1 WHERE id = ?2 "
				   "AND is_locked = 1", "it", now->wall, r->cart_id);
	if (rc == CW_OK && sqlite3_changes(e->h) > 0)
		rc = cwe_outbox_cart(e, now, r->cart_id, "cart.updated");
	if (rc == CW_OK)
		rc = cwe_outbox_rental(e, now, r->id, "rental.released");
	return rc;
}

int cwe_mark_taken(struct cw_engine *e, const struct stamp *now, const struct rental_row *r)
{
	int rc = cw_eq_exec(e,
			    "UPDATE rentals SET taken = 1, taken_wall_ms = ?1, updated_wall_ms = ?1 "
			    "WHERE id = ?2",
			    "it", now->wall, r->id);
	if (rc == CW_OK)
		rc = cwe_outbox_rental(e, now, r->id, "rental.taken");
	return rc;
}

/* ------------------------------------------------------------ helpers */

struct cw_eboard *cwe_board_find(struct cw_engine *e, int bus, int board)
{
	for (int i = 0; i < e->nboards; i++)
		if (e->boards[i].bus_index == bus && e->boards[i].board_index == board)
			return &e->boards[i];
	return NULL;
}

bool cwe_board_usable(struct cw_engine *e, int bus, int board)
{
	struct cw_eboard *b = cwe_board_find(e, bus, board);
	return b && !b->need_reconcile;
}

uint64_t cwe_inflight_begin(struct cw_engine *e, struct cw_eboard *b, int lock)
{
	uint64_t t = ++e->next_token;

	if (t == 0)
		t = ++e->next_token;
	b->inflight |= 1u << lock;
	b->inflight_owner[lock] = t;
	return t;
}

void cwe_inflight_end(struct cw_eboard *b, int lock, uint64_t token)
{
	/* Someone else's release of this lock (cannot start while ours runs, but
	 * a stale clear must never wipe a later owner's flag). */
	if (b->inflight_owner[lock] != token)
		return;
	b->inflight &= ~(1u << lock);
	b->inflight_owner[lock] = 0;
}

bool cwe_inflight(const struct cw_eboard *b, int lock)
{
	return (b->inflight & (1u << lock)) != 0;
}

/* Sets board_online of a board's configured slots (bus < 0: every slot) and
 * writes a cart.updated snapshot for each slot that changed, so the cloud
 * sees each board transition once; *changed gets their number. */
int cwe_set_online(struct cw_engine *e, const struct stamp *now, int bus, int board, bool online,
		   int *changed)
{
	sqlite3_stmt *st = NULL;
	char(*ids)[40] = NULL;
	int n = 0, cap = 0, rc;

	*changed = 0;
	rc = cw_eq_prepare(e, &st,
			   "SELECT id FROM carts WHERE board_online = ?1 AND (?2 < 0 OR "
			   "(bus_index = ?2 AND board_index = ?3 AND removed = 0))",
			   "iii", I64(!online), I64(bus), I64(board));
	while (rc == CW_OK && (rc = cwe_step(e, st)) == CW_OK) {
		if (n == cap) {
			int ncap = cap ? cap * 2 : 32;
			char(*p)[40] = realloc(ids, (size_t)ncap * sizeof(*p));
			if (!p) {
				rc = CW_ERR_NOMEM;
				break;
			}
			ids = p;
			cap = ncap;
		}
		cwe_col_text(st, 0, ids[n], 40);
		n++;
	}
	sqlite3_finalize(st);
	if (rc == CW_ERR_NOTFOUND)
		rc = CW_OK;
	for (int i = 0; rc == CW_OK && i < n; i++) {
		rc = cw_eq_exec(e, "UPDATE carts SET board_online = ?, updated_wall_ms = ? WHERE id = ?",
				"iit", I64(online), now->wall, ids[i]);
		if (rc == CW_OK)
			rc = cwe_outbox_cart(e, now, ids[i], "cart.updated");
	}
	if (rc == CW_OK)
		*changed = n;
	free(ids);
	return rc;
}

/* Digits with an optional leading '+', 7..15 digits (E.164 length). Full
 * normalisation comes with customer sign-in (issue 5). */
bool cwe_phone_valid(const char *p)
{
	size_t n = 0;

	if (!p)
		return false;
	if (*p == '+')
		p++;
	for (; *p; p++, n++)
		if (!isdigit((unsigned char)*p) || n > 15)
			return false;
	return n >= 7 && n <= 15;
}

int cwe_begin(struct cw_engine *e)
{
	e->outbox_written = false;
	return cw_edb_begin(e->db);
}

/* Commits, or rolls back when rc says the work failed. Returns rc or the
 * commit's failure. */
int cwe_finish(struct cw_engine *e, int rc)
{
	if (rc == CW_OK) {
		rc = cw_edb_commit(e->db);
		if (rc == CW_OK) {
			if (e->outbox_written)
				e->notify_pending = true;
			e->outbox_written = false;
			return CW_OK;
		}
	}
	e->outbox_written = false;
	cw_edb_rollback(e->db);
	return rc;
}

/* ------------------------------------------------------------- lifecycle */

void cw_rules_defaults(struct cw_rules *r)
{
	r->rental_minutes = 120;
	r->one_per_phone = true;
	r->grace_minutes = 10;
	r->take_timeout_s = 60;
	r->return_timeout_s = 600;
}

static int validate_config(const struct cw_engine_config *cfg)
{
	const struct cw_rules *r = &cfg->rules;

	if (!cfg->db_path[0] || !cfg->chain_id[0] || !cfg->branch_id[0] || !cfg->device_id[0]) {
		cw_error("engine.config", "msg=\"db_path, chain_id, branch_id and device_id are "
					  "required\"");
		return CW_ERR_CONFIG;
	}
	if (r->rental_minutes < 1 || r->rental_minutes > 7 * 24 * 60 || r->grace_minutes < 0 ||
	    r->grace_minutes > 24 * 60 || r->take_timeout_s < 1 || r->take_timeout_s > 3600 ||
	    r->return_timeout_s < 1 || r->return_timeout_s > 24 * 3600) {
		cw_error("engine.config", "msg=\"rental rules out of range\"");
		return CW_ERR_CONFIG;
	}
	if (cfg->ncarts < 0 || (cfg->ncarts > 0 && !cfg->carts)) {
		cw_error("engine.config", "msg=\"bad cart list\"");
		return CW_ERR_CONFIG;
	}
	for (int i = 0; i < cfg->ncarts; i++) {
		const struct cw_cart_map *a = &cfg->carts[i];
		if (a->number < 1 || a->bus_index < 0 || a->board_index < 0 ||
		    a->board_index >= CW_MAX_BOARDS_PER_BUS || a->lock < 0 ||
		    a->lock >= CW_MAX_LOCKS_PER_BOARD) {
			cw_error("engine.config", "msg=\"cart out of range\" cart=%d", a->number);
			return CW_ERR_CONFIG;
		}
		for (int j = 0; j < i; j++) {
			const struct cw_cart_map *b = &cfg->carts[j];
			if (a->number == b->number ||
			    (a->bus_index == b->bus_index && a->board_index == b->board_index &&
			     a->lock == b->lock)) {
				cw_error("engine.config",
					 "msg=\"two carts with one number or one lock\" cart=%d other=%d",
					 a->number, b->number);
				return CW_ERR_CONFIG;
			}
		}
	}
	return CW_OK;
}

static int sync_identity(struct cw_engine *e, const struct stamp *now)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = cw_eq_prepare(e, &st, "SELECT chain_id, branch_id, device_id FROM device_identity", "");
	if (rc != CW_OK)
		return rc;
	rc = cwe_step(e, st);
	if (rc == CW_OK) {
		char c[64], b[64], d[64];
		cwe_col_text(st, 0, c, sizeof(c));
		cwe_col_text(st, 1, b, sizeof(b));
		cwe_col_text(st, 2, d, sizeof(d));
		sqlite3_finalize(st);
		if (strcmp(c, e->chain_id) == 0 && strcmp(b, e->branch_id) == 0 &&
		    strcmp(d, e->device_id) == 0)
			return CW_OK;
		cw_warn("engine.identity_changed", "old_branch=%s new_branch=%s old_device=%s "
			"new_device=%s", b, e->branch_id, d, e->device_id);
		rc = cw_eq_exec(e, "UPDATE device_identity SET chain_id = ?, branch_id = ?, "
				   "device_id = ?, updated_wall_ms = ? WHERE id = 1",
				"ttti", e->chain_id, e->branch_id, e->device_id, now->wall);
		if (rc == CW_OK)
			rc = cwe_telemetry(e, now, "device.identity_changed", NULL, NULL,
				       cwe_jdata("old_branch_id", b, "old_device_id", d));
		return rc;
	}
	sqlite3_finalize(st);
	if (rc != CW_ERR_NOTFOUND)
		return rc;
	return cw_eq_exec(e, "INSERT INTO device_identity(id, chain_id, branch_id, device_id, "
			     "created_wall_ms, updated_wall_ms) VALUES (1, ?, ?, ?, ?, ?)",
			  "tttii", e->chain_id, e->branch_id, e->device_id, now->wall, now->wall);
}

static int ensure_controller(struct cw_engine *e, int bus, int board, char id[40])
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = cw_eq_prepare(e, &st, "SELECT id FROM controllers WHERE bus_index = ? AND "
				   "board_index = ?", "ii", I64(bus), I64(board));
	if (rc != CW_OK)
		return rc;
	rc = cwe_step(e, st);
	if (rc == CW_OK)
		cwe_col_text(st, 0, id, 40);
	sqlite3_finalize(st);
	if (rc != CW_ERR_NOTFOUND)
		return rc;
	if (cw_uuid_v7(id) != CW_OK)
		return CW_ERR_INTERNAL;
	return cw_eq_exec(e, "INSERT INTO controllers(id, bus_index, board_index) VALUES (?, ?, ?)",
			  "tii", id, I64(bus), I64(board));
}

/* Brings the carts table in line with the configured carts. */
static int sync_carts(struct cw_engine *e, const struct cw_engine_config *cfg,
		      const struct stamp *now)
{
	int rc;

	/* Everything removed first, then each configured cart restored: two carts
	 * may swap locks without tripping the one-lock-one-cart index. */
	rc = cw_eq_exec(e, "CREATE TEMP TABLE IF NOT EXISTS was_removed(id TEXT PRIMARY KEY)", "");
	if (rc == CW_OK)
		rc = cw_eq_exec(e, "DELETE FROM temp.was_removed", "");
	if (rc == CW_OK)
		rc = cw_eq_exec(e, "INSERT INTO temp.was_removed SELECT id FROM carts WHERE removed = 1",
				"");
	if (rc == CW_OK)
		rc = cw_eq_exec(e, "UPDATE carts SET removed = 1 WHERE removed = 0", "");
	for (int i = 0; rc == CW_OK && i < cfg->ncarts; i++) {
		const struct cw_cart_map *m = &cfg->carts[i];
		char ctl[40], id[40];
		struct cart_row c;

		rc = ensure_controller(e, m->bus_index, m->board_index, ctl);
		if (rc != CW_OK)
			break;
		rc = cwe_cart_load(e, &c, "cart_number = ?1", "i", I64(m->number));
		if (rc == CW_OK) {
			bool moved = c.bus != m->bus_index || c.board != m->board_index ||
				     c.lock != m->lock;
			rc = cw_eq_exec(e, "UPDATE carts SET removed = 0, bus_index = ?, board_index = ?, "
					   "lock_index = ?, controller_id = ?, branch_id = ? WHERE id = ?",
					"iiittt", I64(m->bus_index), I64(m->board_index), I64(m->lock),
					ctl, e->branch_id, c.id);
			if (rc == CW_OK && moved) {
				/* A slot that moved to another lock: its sensed state is unknown. */
				rc = cw_eq_exec(e, "UPDATE carts SET cart_present = 0, hook_closed = 0, "
						   "updated_wall_ms = ? WHERE id = ?", "it", now->wall, c.id);
				if (rc == CW_OK)
					rc = cwe_outbox_cart(e, now, c.id, "cart.updated");
			}
		} else if (rc == CW_ERR_NOTFOUND) {
			if (cw_uuid_v7(id) != CW_OK) {
				rc = CW_ERR_INTERNAL;
				break;
			}
			rc = cw_eq_exec(e, "INSERT INTO carts(id, branch_id, cart_number, controller_id, "
					   "bus_index, board_index, lock_index, created_wall_ms, "
					   "updated_wall_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
					"ttitiiiii", id, e->branch_id, I64(m->number), ctl,
					I64(m->bus_index), I64(m->board_index), I64(m->lock), now->wall,
					now->wall);
			if (rc == CW_OK)
				rc = cwe_outbox_cart(e, now, id, "cart.created");
		}
	}
	/* Carts that just became removed: tell the cloud. */
	if (rc == CW_OK) {
		sqlite3_stmt *st = NULL;
		rc = cw_eq_prepare(e, &st, "SELECT id, cart_number FROM carts WHERE removed = 1 AND "
					   "id NOT IN (SELECT id FROM temp.was_removed)", "");
		while (rc == CW_OK && (rc = cwe_step(e, st)) == CW_OK) {
			char id[40];
			cwe_col_text(st, 0, id, sizeof(id));
			cw_warn("engine.cart_removed", "cart=%d", sqlite3_column_int(st, 1));
			rc = cwe_outbox_cart(e, now, id, "cart.removed");
		}
		sqlite3_finalize(st);
		if (rc == CW_ERR_NOTFOUND)
			rc = CW_OK;
	}
	/* Sensor state is unknown until each board's first status. */
	if (rc == CW_OK) {
		int n = 0;
		rc = cwe_set_online(e, now, -1, -1, false, &n);
	}
	if (rc == CW_OK)
		rc = cw_eq_exec(e, "UPDATE controllers SET status = 'unknown'", "");
	return rc;
}

static int build_boards(struct cw_engine *e, const struct cw_engine_config *cfg)
{
	e->boards = calloc((size_t)(cfg->ncarts > 0 ? cfg->ncarts : 1), sizeof(*e->boards));
	if (!e->boards)
		return CW_ERR_NOMEM;
	for (int i = 0; i < cfg->ncarts; i++) {
		const struct cw_cart_map *m = &cfg->carts[i];
		if (cwe_board_find(e, m->bus_index, m->board_index))
			continue;
		e->boards[e->nboards].bus_index = m->bus_index;
		e->boards[e->nboards].board_index = m->board_index;
		e->boards[e->nboards].need_reconcile = true;
		e->nboards++;
	}
	return CW_OK;
}

int cw_engine_new(const struct cw_engine_config *cfg, const struct cw_engine_hw *hw,
		  struct cw_engine **out)
{
	struct cw_engine *e = NULL;
	struct stamp now;
	int rc;

	if (!out)
		return CW_ERR_INVAL;
	*out = NULL;
	if (!cfg || !hw || !hw->unlock)
		return CW_ERR_INVAL;
	rc = validate_config(cfg);
	if (rc != CW_OK)
		return rc;
	e = calloc(1, sizeof(*e));
	if (!e)
		return CW_ERR_NOMEM;
	pthread_mutex_init(&e->mu, NULL);
	e->hw = *hw;
	e->rules = cfg->rules;
	snprintf(e->chain_id, sizeof(e->chain_id), "%s", cfg->chain_id);
	snprintf(e->branch_id, sizeof(e->branch_id), "%s", cfg->branch_id);
	snprintf(e->device_id, sizeof(e->device_id), "%s", cfg->device_id);
	read_boot_id(e->boot);
	rc = build_boards(e, cfg);
	if (rc != CW_OK)
		goto out;
	rc = cw_edb_open(cfg->db_path, &e->db);
	if (rc != CW_OK)
		goto out;
	e->h = cw_edb_handle(e->db);
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		goto out;
	rc = sync_identity(e, &now);
	if (rc == CW_OK)
		rc = cwe_db_created_init(e, &now);
	/* before sync_carts, so the carts' last sensed state is reported */
	if (rc == CW_OK)
		rc = cwe_commands_interrupted(e, &now);
	if (rc == CW_OK)
		rc = sync_carts(e, cfg, &now);
	if (rc == CW_OK)
		rc = cwe_telemetry(e, &now, "engine.start", NULL, NULL, cwe_jdata("boot", e->boot, NULL, NULL));
	rc = cwe_finish(e, rc);
	if (rc != CW_OK)
		goto out;
	cw_info("engine.start", "carts=%d boards=%d schema=%d", cfg->ncarts, e->nboards,
		cw_edb_schema_version(e->db));
	*out = e;
	e = NULL;
out:
	cw_engine_free(e);
	return rc;
}

void cw_engine_free(struct cw_engine *e)
{
	if (!e)
		return;
	cw_edb_free(e->db);
	free(e->boards);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

const char *cw_engine_branch_id(const struct cw_engine *e)
{
	return e ? e->branch_id : "";
}

int cw_engine_set_controller_info(struct cw_engine *e, int bus_index, int board_index,
				  const char *bus_name, int address, const char *protocol)
{
	struct stamp now;
	int64_t n = 0;
	int rc;

	if (!e)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&e->mu);
	rc = cw_eq_int(e, &n, "SELECT count(*) FROM controllers WHERE bus_index = ? AND "
			      "board_index = ?", "ii", I64(bus_index), I64(board_index));
	if (rc == CW_OK && n == 0)
		rc = CW_ERR_NOTFOUND;
	if (rc != CW_OK)
		goto unlock;
	cwe_stamp_now(e, &now);
	rc = cwe_begin(e);
	if (rc != CW_OK)
		goto unlock;
	rc = cw_eq_exec(e, "UPDATE controllers SET bus_name = coalesce(?1, bus_name), address = ?2, "
			   "protocol = coalesce(?3, protocol) WHERE bus_index = ?4 AND board_index = ?5 "
			   "AND (bus_name IS NOT coalesce(?1, bus_name) OR address IS NOT ?2 OR "
			   "protocol IS NOT coalesce(?3, protocol))",
			"titii", bus_name, I64(address), protocol, I64(bus_index), I64(board_index));
	/* Changed: the cloud learns it with a snapshot of each of its carts. */
	if (rc == CW_OK && sqlite3_changes(e->h) > 0) {
		char(*ids)[40] = NULL;
		int nids = 0, cap = 0;
		sqlite3_stmt *st = NULL;

		rc = cw_eq_prepare(e, &st, "SELECT id FROM carts WHERE bus_index = ? AND "
					   "board_index = ? AND removed = 0", "ii", I64(bus_index),
				   I64(board_index));
		while (rc == CW_OK && (rc = cwe_step(e, st)) == CW_OK) {
			if (nids == cap) {
				int ncap = cap ? cap * 2 : 16;
				char(*p)[40] = realloc(ids, (size_t)ncap * sizeof(*p));
				if (!p) {
					rc = CW_ERR_NOMEM;
					break;
				}
				ids = p;
				cap = ncap;
			}
			cwe_col_text(st, 0, ids[nids++], 40);
		}
		sqlite3_finalize(st);
		if (rc == CW_ERR_NOTFOUND)
			rc = CW_OK;
		for (int i = 0; rc == CW_OK && i < nids; i++)
			rc = cwe_outbox_cart(e, &now, ids[i], "cart.updated");
		free(ids);
	}
	rc = cwe_finish(e, rc);
unlock:
	cwe_unlock(e);
	return rc;
}


void cw_engine_boards(struct cw_engine *e, int *online, int *total)
{
	*online = 0;
	*total = 0;
	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	for (int i = 0; i < e->nboards; i++)
		*online += e->boards[i].online;
	*total = e->nboards;
	pthread_mutex_unlock(&e->mu);
}

struct cw_edb *cw_engine_edb(struct cw_engine *e)
{
	return e ? e->db : NULL;
}

void cw_engine_lock(struct cw_engine *e)
{
	pthread_mutex_lock(&e->mu);
}

void cw_engine_unlock(struct cw_engine *e)
{
	cwe_unlock(e);
}
