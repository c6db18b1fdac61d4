/* cw_engine_query.c - the engine's read side for the local API: carts,
 * rentals, history, statistics, status. Every function returns a new cJSON
 * tree (caller frees with cJSON_Delete) or NULL on failure. Phone numbers
 * are returned in full: the local API is admin-authorised (masking for other
 * roles comes with customer sign-in). Formats: docs/RENTALS.md "Read side". */
#include "cw_engine_int.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cw_clock.h"
#include "cw_edb.h"
#include "cw_uuid.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_uuid.h"

#define HISTORY_DEFAULT 50
#define HISTORY_MAX 200

/* key = RFC 3339 text and key_ms = integer, or both null. */
static void add_time(cJSON *o, const char *key, sqlite3_stmt *st, int col)
{
	char k[48];

	snprintf(k, sizeof(k), "%s_ms", key);
	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		cJSON_AddNullToObject(o, key);
		cJSON_AddNullToObject(o, k);
	} else {
		char buf[32];
		int64_t ms = sqlite3_column_int64(st, col);
		cw_wall_format(ms, buf);
		cJSON_AddStringToObject(o, key, buf);
		cJSON_AddNumberToObject(o, k, (double)ms);
	}
}

static void add_text(cJSON *o, const char *key, sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);
	if (t)
		cJSON_AddStringToObject(o, key, (const char *)t);
	else
		cJSON_AddNullToObject(o, key);
}

static void add_int(cJSON *o, const char *key, sqlite3_stmt *st, int col)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		cJSON_AddNullToObject(o, key);
	else
		cJSON_AddNumberToObject(o, key, (double)sqlite3_column_int64(st, col));
}

static void add_bool(cJSON *o, const char *key, sqlite3_stmt *st, int col)
{
	cJSON_AddBoolToObject(o, key, sqlite3_column_int(st, col) != 0);
}

/* ---------------------------------------------------------------- carts */

#define CART_SELECT                                                                          \
	"SELECT c.id, c.cart_number, c.status, c.board_online, c.cart_present, c.hook_closed, " \
	"c.is_locked, c.bus_index, c.board_index, c.lock_index, c.fault_reason, "             \
	"c.maintenance_notes, c.reserved_for_rental, c.last_used_wall_ms, "                    \
	"(SELECT r.id FROM rentals r WHERE r.cart_id = c.id AND "                             \
	"r.status IN ('active', 'overdue')), c.updated_wall_ms FROM carts c "

static cJSON *cart_obj(sqlite3_stmt *st)
{
	cJSON *o = cJSON_CreateObject();
	bool online = sqlite3_column_int(st, 3) != 0;

	if (!o)
		return NULL;
	add_text(o, "id", st, 0);
	add_int(o, "cart_number", st, 1);
	/* "offline" when the board does not answer; the stored state is kept. */
	if (online)
		add_text(o, "status", st, 2);
	else
		cJSON_AddStringToObject(o, "status", "offline");
	add_text(o, "state", st, 2);
	add_bool(o, "board_online", st, 3);
	add_bool(o, "cart_present", st, 4);
	add_bool(o, "hook_closed", st, 5);
	add_bool(o, "is_locked", st, 6);
	add_int(o, "bus", st, 7);
	add_int(o, "board", st, 8);
	add_int(o, "lock", st, 9);
	add_text(o, "fault_reason", st, 10);
	add_text(o, "maintenance_notes", st, 11);
	add_text(o, "reserved_for_rental", st, 12);
	add_time(o, "last_used", st, 13);
	add_text(o, "rental_id", st, 14);
	add_time(o, "updated", st, 15);
	return o;
}

cJSON *cw_engine_carts_json(struct cw_engine *e)
{
	sqlite3_stmt *st = NULL;
	cJSON *arr = NULL;
	int rc;

	if (!e)
		return NULL;
	pthread_mutex_lock(&e->mu);
	rc = cw_eq_prepare(e, &st, CART_SELECT "WHERE c.removed = 0 ORDER BY c.cart_number", "");
	if (rc != CW_OK)
		goto out;
	arr = cJSON_CreateArray();
	while (arr && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		cJSON *o = cart_obj(st);
		if (!o) {
			cJSON_Delete(arr);
			arr = NULL;
			break;
		}
		cJSON_AddItemToArray(arr, o);
	}
	if (arr && rc != SQLITE_DONE) {
		cJSON_Delete(arr);
		arr = NULL;
	}
out:
	sqlite3_finalize(st);
	cwe_unlock(e);
	return arr;
}

static bool all_digits(const char *s, size_t max)
{
	size_t n = 0;
	for (; *s; s++, n++)
		if (!isdigit((unsigned char)*s) || n >= max)
			return false;
	return n > 0;
}

cJSON *cw_engine_cart_json(struct cw_engine *e, const char *id, int *err)
{
	sqlite3_stmt *st = NULL;
	cJSON *o = NULL;
	int rc, dummy;

	if (!err)
		err = &dummy;
	*err = CW_ERR_NOTFOUND;
	if (!e || !id)
		return NULL;
	pthread_mutex_lock(&e->mu);
	if (cw_uuid_valid(id)) {
		rc = cw_eq_prepare(e, &st, CART_SELECT "WHERE c.removed = 0 AND c.id = ?", "t", id);
	} else if (all_digits(id, 9)) {
		rc = cw_eq_prepare(e, &st, CART_SELECT "WHERE c.removed = 0 AND c.cart_number = ?", "i",
				   (int64_t)strtol(id, NULL, 10));
	} else {
		goto out; /* neither a UUID nor a number: no such cart */
	}
	if (rc != CW_OK) {
		*err = rc;
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		o = cart_obj(st);
		*err = o ? CW_OK : CW_ERR_NOMEM;
	} else if (rc != SQLITE_DONE) {
		*err = CW_ERR_DB;
	}
out:
	sqlite3_finalize(st);
	cwe_unlock(e);
	return o;
}

/* -------------------------------------------------------------- rentals */

#define RENTAL_SELECT                                                                        \
	"SELECT r.id, r.cart_id, c.cart_number, r.user_phone, r.status, r.start_time, "         \
	"r.expected_return, r.actual_return, r.duration_s, r.duration_trusted, "               \
	"r.clock_trusted, r.release_confirmed, r.taken, rs.cart_number, rt.cart_number, "      \
	"r.end_reason, r.notes, r.unlock_latency_ms, r.start_mono_ms, r.mono_boot, "           \
	"r.start_trusted FROM rentals r JOIN carts c ON c.id = r.cart_id "                     \
	"LEFT JOIN carts rs ON rs.id = r.return_slot LEFT JOIN carts rt ON rt.id = r.returned_to "

static cJSON *rental_obj(struct cw_engine *e, const struct stamp *now, sqlite3_stmt *st)
{
	cJSON *o = cJSON_CreateObject();
	const unsigned char *status = sqlite3_column_text(st, 4);

	if (!o)
		return NULL;
	add_text(o, "id", st, 0);
	add_text(o, "cart_id", st, 1);
	add_int(o, "cart_number", st, 2);
	add_text(o, "user_phone", st, 3);
	add_text(o, "status", st, 4);
	add_time(o, "start_time", st, 5);
	add_time(o, "expected_return", st, 6);
	add_time(o, "actual_return", st, 7);
	add_int(o, "duration_s", st, 8);
	if (sqlite3_column_type(st, 9) == SQLITE_NULL)
		cJSON_AddNullToObject(o, "duration_trusted");
	else
		add_bool(o, "duration_trusted", st, 9);
	add_bool(o, "clock_trusted", st, 10);
	add_bool(o, "release_confirmed", st, 11);
	add_bool(o, "taken", st, 12);
	add_int(o, "return_slot", st, 13);
	add_int(o, "returned_to", st, 14);
	add_text(o, "end_reason", st, 15);
	add_text(o, "notes", st, 16);
	add_int(o, "unlock_latency_ms", st, 17);
	if (status && (strcmp((const char *)status, "active") == 0 ||
		       strcmp((const char *)status, "overdue") == 0)) {
		bool trusted = false;
		int64_t el = cwe_elapsed_ms(e, now, sqlite3_column_int64(st, 5),
					    sqlite3_column_int64(st, 18),
					    (const char *)sqlite3_column_text(st, 19),
					    sqlite3_column_int(st, 20) != 0, &trusted);
		cJSON_AddNumberToObject(o, "elapsed_s", (double)(el / 1000));
		cJSON_AddBoolToObject(o, "elapsed_trusted", trusted);
	}
	return o;
}

/* Appends every row of st to arr; returns the number of rows or <0. */
static int rows_to_array(struct cw_engine *e, sqlite3_stmt *st, cJSON *arr, int max,
			 bool *more)
{
	struct stamp now;
	int n = 0, rc;

	cwe_stamp_now(e, &now);
	if (more)
		*more = false;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		cJSON *o;
		if (max >= 0 && n == max) {
			if (more)
				*more = true;
			return n;
		}
		o = rental_obj(e, &now, st);
		if (!o)
			return CW_ERR_NOMEM;
		cJSON_AddItemToArray(arr, o);
		n++;
	}
	return rc == SQLITE_DONE ? n : CW_ERR_DB;
}

cJSON *cw_engine_rentals_active_json(struct cw_engine *e)
{
	sqlite3_stmt *st = NULL;
	cJSON *arr = NULL;

	if (!e)
		return NULL;
	pthread_mutex_lock(&e->mu);
	/* Overdue first: those are the ones staff must chase. */
	if (cw_eq_prepare(e, &st,
			  RENTAL_SELECT "WHERE r.status IN ('active', 'overdue') "
					"ORDER BY r.status = 'overdue' DESC, r.start_time, r.id",
			  "") != CW_OK)
		goto out;
	arr = cJSON_CreateArray();
	if (arr && rows_to_array(e, st, arr, -1, NULL) < 0) {
		cJSON_Delete(arr);
		arr = NULL;
	}
out:
	sqlite3_finalize(st);
	cwe_unlock(e);
	return arr;
}

/* Cursor "<start_ms>.<rental uuid>": the last row of the previous page. */
static int parse_cursor(const char *c, int64_t *start, char id[40])
{
	const char *dot;
	char *end = NULL;
	long long v;

	if (strlen(c) > 64)
		return CW_ERR_INVAL;
	dot = strchr(c, '.');
	if (!dot || dot == c || !cw_uuid_valid(dot + 1))
		return CW_ERR_INVAL;
	for (const char *p = c; p < dot; p++)
		if (!isdigit((unsigned char)*p))
			return CW_ERR_INVAL;
	errno = 0;
	v = strtoll(c, &end, 10);
	if (errno || end != dot || v < 0)
		return CW_ERR_INVAL;
	*start = v;
	snprintf(id, 40, "%s", dot + 1);
	return CW_OK;
}

static bool phone_filter_valid(const char *p)
{
	size_t n = strlen(p);
	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)p[i]) && !(i == 0 && p[i] == '+'))
			return false;
	return true;
}

cJSON *cw_engine_rentals_history_json_ex(struct cw_engine *e, int limit, const char *cursor,
					 const char *phone, int *err)
{
	sqlite3_stmt *st = NULL;
	cJSON *res = NULL, *arr = NULL;
	int64_t cstart = INT64_MAX;
	char cid[40] = "ffffffff-ffff-ffff-ffff-ffffffffffff";
	bool more = false;
	int n, dummy;

	if (!err)
		err = &dummy;
	*err = CW_ERR_INVAL;
	if (!e)
		return NULL;
	if (limit <= 0)
		limit = HISTORY_DEFAULT;
	if (limit > HISTORY_MAX)
		limit = HISTORY_MAX;
	if (cursor && *cursor && parse_cursor(cursor, &cstart, cid) != CW_OK)
		return NULL;
	if (phone && *phone && !phone_filter_valid(phone))
		return NULL;
	if (phone && !*phone)
		phone = NULL;
	pthread_mutex_lock(&e->mu);
	*err = CW_ERR_DB;
	/* Keyset pagination on (start_time, id), both descending: stable while
	 * new rentals arrive, and uses the rentals_history index. */
	if (cw_eq_prepare(e, &st,
			  RENTAL_SELECT "WHERE (r.start_time < ?1 OR (r.start_time = ?1 AND r.id < ?2)) "
					"AND (?3 IS NULL OR r.user_phone = ?3) "
					"ORDER BY r.start_time DESC, r.id DESC LIMIT ?4",
			  "itti", cstart, cid, phone,
			  (int64_t)limit + 1) != CW_OK)
		goto out;
	res = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(res, "rentals");
	if (!res || !arr) {
		*err = CW_ERR_NOMEM;
		goto fail;
	}
	n = rows_to_array(e, st, arr, limit, &more);
	if (n < 0) {
		*err = n;
		goto fail;
	}
	if (more && n > 0) {
		cJSON *last = cJSON_GetArrayItem(arr, n - 1);
		char next[80];
		snprintf(next, sizeof(next), "%.0f.%s",
			 cJSON_GetNumberValue(cJSON_GetObjectItem(last, "start_time_ms")),
			 cJSON_GetStringValue(cJSON_GetObjectItem(last, "id")));
		cJSON_AddStringToObject(res, "next_cursor", next);
	} else {
		cJSON_AddNullToObject(res, "next_cursor");
	}
	*err = CW_OK;
	goto out;
fail:
	cJSON_Delete(res);
	res = NULL;
out:
	sqlite3_finalize(st);
	cwe_unlock(e);
	return res;
}

cJSON *cw_engine_rental_json(struct cw_engine *e, const char *id, int *err)
{
	sqlite3_stmt *st = NULL;
	cJSON *o = NULL;
	struct stamp now;
	int rc, dummy;

	if (!err)
		err = &dummy;
	*err = CW_ERR_INVAL;
	if (!e || !id || !cw_uuid_valid(id))
		return NULL;
	pthread_mutex_lock(&e->mu);
	*err = CW_ERR_DB;
	if (cw_eq_prepare(e, &st, RENTAL_SELECT "WHERE r.id = ?1", "t", id) != CW_OK)
		goto out;
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		*err = CW_ERR_NOTFOUND;
		goto out;
	}
	if (rc != SQLITE_ROW)
		goto out;
	cwe_stamp_now(e, &now);
	o = rental_obj(e, &now, st);
	*err = o ? CW_OK : CW_ERR_NOMEM;
out:
	sqlite3_finalize(st);
	cwe_unlock(e);
	return o;
}

cJSON *cw_engine_rentals_history_json(struct cw_engine *e, int limit, const char *cursor,
				      const char *phone)
{
	return cw_engine_rentals_history_json_ex(e, limit, cursor, phone, NULL);
}

/* ------------------------------------------------------ stats and status */

/* {"available": n, ..., "offline": n, "total": n}; every state present. */
static cJSON *cart_counts(struct cw_engine *e)
{
	static const char *const states[] = {"available", "rented", "awaiting-return",
					     "maintenance", "fault", "offline"};
	sqlite3_stmt *st = NULL;
	cJSON *o = cJSON_CreateObject();
	int total = 0, rc;

	if (!o)
		return NULL;
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		cJSON_AddNumberToObject(o, states[i], 0);
	if (cw_eq_prepare(e, &st,
			  "SELECT CASE WHEN board_online = 0 THEN 'offline' ELSE status END AS s, "
			  "count(*) FROM carts WHERE removed = 0 GROUP BY s",
			  "") != CW_OK) {
		cJSON_Delete(o);
		return NULL;
	}
	while ((rc = cwe_step(e, st)) == CW_OK) {
		const char *s = (const char *)sqlite3_column_text(st, 0);
		int n = sqlite3_column_int(st, 1);
		cJSON *item = cJSON_GetObjectItem(o, s ? s : "");
		if (item)
			cJSON_SetNumberValue(item, n);
		total += n;
	}
	sqlite3_finalize(st);
	if (rc != CW_ERR_NOTFOUND) {
		/* A failed step is not the end of the rows: no partial counts. */
		cJSON_Delete(o);
		return NULL;
	}
	cJSON_AddNumberToObject(o, "total", total);
	return o;
}

static int64_t local_midnight_ms(int64_t wall_ms)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	tm.tm_hour = 0;
	tm.tm_min = 0;
	tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return (int64_t)mktime(&tm) * 1000;
}

cJSON *cw_engine_rentals_stats_json(struct cw_engine *e)
{
	sqlite3_stmt *st = NULL;
	cJSON *o = NULL, *rentals, *carts;
	int64_t today = local_midnight_ms(cw_engine_now_wall());
	int64_t n_today = 0;

	if (!e)
		return NULL;
	pthread_mutex_lock(&e->mu);
	o = cJSON_CreateObject();
	if (!o)
		goto out;
	carts = cart_counts(e);
	if (!carts)
		goto fail;
	cJSON_AddItemToObject(o, "carts", carts);
	rentals = cJSON_AddObjectToObject(o, "rentals");
	if (cw_eq_prepare(e, &st,
			  "SELECT count(*), "
			  "count(*) FILTER (WHERE status = 'active'), "
			  "count(*) FILTER (WHERE status = 'overdue'), "
			  "count(*) FILTER (WHERE status = 'returned'), "
			  "count(*) FILTER (WHERE status = 'returned-late'), "
			  "count(*) FILTER (WHERE status = 'cancelled'), "
			  "avg(duration_s) FILTER (WHERE status IN ('returned', 'returned-late')) "
			  "FROM rentals",
			  "") != CW_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		goto fail;
	{
		int64_t total = sqlite3_column_int64(st, 0);
		int64_t active = sqlite3_column_int64(st, 1);
		int64_t overdue = sqlite3_column_int64(st, 2);
		int64_t returned = sqlite3_column_int64(st, 3);
		int64_t late = sqlite3_column_int64(st, 4);
		int64_t cancelled = sqlite3_column_int64(st, 5);
		/* Rentals where a cart actually went out (cancelled ones never did). */
		int64_t given = active + overdue + returned + late;

		cJSON_AddNumberToObject(rentals, "total", (double)total);
		cJSON_AddNumberToObject(rentals, "active", (double)active);
		cJSON_AddNumberToObject(rentals, "overdue", (double)overdue);
		cJSON_AddNumberToObject(rentals, "returned", (double)returned);
		cJSON_AddNumberToObject(rentals, "returned_late", (double)late);
		cJSON_AddNumberToObject(rentals, "cancelled", (double)cancelled);
		if (sqlite3_column_type(st, 6) == SQLITE_NULL)
			cJSON_AddNullToObject(o, "average_duration_s");
		else
			cJSON_AddNumberToObject(o, "average_duration_s", sqlite3_column_double(st, 6));
		/* Share of rentals that ran (or are running) past their time + grace. */
		if (given > 0)
			cJSON_AddNumberToObject(o, "overdue_rate", (double)(overdue + late) / (double)given);
		else
			cJSON_AddNullToObject(o, "overdue_rate");
	}
	sqlite3_finalize(st);
	st = NULL;
	if (cw_eq_int(e, &n_today, "SELECT count(*) FROM rentals WHERE start_time >= ?", "i",
		      today) != CW_OK)
		goto fail;
	cJSON_AddNumberToObject(o, "rentals_today", (double)n_today);
	goto out;
fail:
	cJSON_Delete(o);
	o = NULL;
out:
	sqlite3_finalize(st);
	cwe_unlock(e);
	return o;
}

static int64_t outbox_depth_locked(struct cw_engine *e)
{
	int64_t n = 0;
	if (cw_eq_int(e, &n, "SELECT count(*) FROM outbox WHERE acked = 0", "") != CW_OK)
		return CW_ERR_DB;
	return n;
}

int64_t cw_engine_outbox_depth(struct cw_engine *e)
{
	int64_t n;

	if (!e)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&e->mu);
	n = outbox_depth_locked(e);
	cwe_unlock(e);
	return n;
}

cJSON *cw_engine_status_json(struct cw_engine *e)
{
	cJSON *o = NULL, *carts;
	int64_t open = 0, overdue = 0, depth;

	if (!e)
		return NULL;
	pthread_mutex_lock(&e->mu);
	o = cJSON_CreateObject();
	carts = o ? cart_counts(e) : NULL;
	if (!carts)
		goto fail;
	cJSON_AddStringToObject(o, "chain_id", e->chain_id);
	cJSON_AddStringToObject(o, "branch_id", e->branch_id);
	cJSON_AddStringToObject(o, "device_id", e->device_id);
	cJSON_AddNumberToObject(o, "schema_version", cw_edb_schema_version(e->db));
	cJSON_AddItemToObject(o, "carts", carts);
	if (cw_eq_int(e, &open, "SELECT count(*) FROM rentals WHERE status IN ('active', 'overdue')",
		      "") != CW_OK ||
	    cw_eq_int(e, &overdue, "SELECT count(*) FROM rentals WHERE status = 'overdue'", "") !=
		    CW_OK)
		goto fail;
	depth = outbox_depth_locked(e);
	if (depth < 0)
		goto fail;
	/* active_rentals counts every open rental: overdue ones are still open. */
	cJSON_AddNumberToObject(o, "active_rentals", (double)open);
	cJSON_AddNumberToObject(o, "overdue_rentals", (double)overdue);
	cJSON_AddNumberToObject(o, "outbox_depth", (double)depth);
	cJSON_AddBoolToObject(o, "clock_trusted", cw_wall_trusted());
	goto out;
fail:
	cJSON_Delete(o);
	o = NULL;
out:
	cwe_unlock(e);
	return o;
}
