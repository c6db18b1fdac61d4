/* cw_api.c - the edge's local HTTP API on libmicrohttpd.
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION): a rent blocks
 * for up to a few seconds while the lock release is confirmed by sensor, and
 * must not stall other requests. At most CW_API_MAX_CONNECTIONS connections.
 *
 * Order of checks for every request (docs/OPERATIONS.md "Local API"):
 *   route (404) -> method (405) -> token (401) -> branch (404) ->
 *   body size (413) -> body / query shape (400) -> engine (mapped cw_err).
 * The first four are decided on MHD's first call, before any body is read.
 * A path outside /api/ is the kiosk page: GET or HEAD from cw_static (else
 * 405), no token, same log line.
 *
 * Errors are always {"error": {"code": cw_errname(err), "message": text}}.
 * One log line per request: method, path (no query string), status, ms.
 * Never the token, never the body (phone numbers are personal data). */
#include "cw_api.h"
#include "cw_api_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_phone.h"
#include "cw_static.h"
#include "cw_sync.h"
#include "cw_uuid.h"
#include "cw_version.h"


/* ---- responses ---- */

int cwa_status_of(int err)
{
	switch (err) {
	case CW_ERR_INVAL:
		return MHD_HTTP_BAD_REQUEST;
	case CW_ERR_NOTFOUND:
		return MHD_HTTP_NOT_FOUND;
	case CW_ERR_CONFLICT:
	case CW_ERR_NOCART:
	case CW_ERR_STATE:
		return MHD_HTTP_CONFLICT;
	/* A lock that did not open, or a board that does not answer: the
	 * service (that slot) is unavailable right now; the customer may retry. */
	case CW_ERR_FAULT:
	case CW_ERR_OFFLINE:
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	case CW_ERR_TOOBIG:
		return MHD_HTTP_CONTENT_TOO_LARGE;
	case CW_ERR_AUTH:
		return MHD_HTTP_UNAUTHORIZED;
	case CW_ERR_LIMIT:
		return MHD_HTTP_TOO_MANY_REQUESTS;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

/* Copies the URL path for the log, replacing anything that could forge a
 * log field or line (spaces, '=', control bytes, non-ASCII) with '?'. */
static void log_safe(const char *in, char *out, size_t cap)
{
	size_t i = 0;

	for (; in && *in && i + 1 < cap; in++) {
		unsigned char ch = (unsigned char)*in;
		out[i++] = (ch > 0x20 && ch < 0x7f && ch != '=' && ch != '"') ? (char)ch : '?';
	}
	out[i] = '\0';
}

static void log_request(const struct req *r, int status)
{
	cw_info("api.request", "method=%s path=%s status=%d ms=%lld", r->method, r->logpath, status,
		(long long)(cw_mono_ms() - r->t0));
}

enum MHD_Result cwa_send_raw(struct MHD_Connection *c, struct req *r, int status, cJSON *body,
				const char *hname, const char *hval)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text;

	text = body ? cJSON_PrintUnformatted(body) : NULL;
	cJSON_Delete(body);
	if (!text) {
		static const char oom[] =
			"{\"error\":{\"code\":\"no_memory\",\"message\":\"out of memory\"}}";
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		resp = MHD_create_response_from_buffer(sizeof(oom) - 1, (void *)oom,
						       MHD_RESPMEM_PERSISTENT);
	} else {
		resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
		if (!resp)
			free(text);
	}
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (hname)
		MHD_add_response_header(resp, hname, hval);
	ret = MHD_queue_response(c, (unsigned int)status, resp);
	MHD_destroy_response(resp);
	log_request(r, status);
	return ret;
}

enum MHD_Result cwa_send_json(struct MHD_Connection *c, struct req *r, int status, cJSON *body)
{
	return cwa_send_raw(c, r, status, body, NULL, NULL);
}

enum MHD_Result cwa_send_err_h(struct MHD_Connection *c, struct req *r, int status, int err,
				  const char *hname, const char *hval, const char *fmt, ...)
{
	cJSON *root = cJSON_CreateObject(), *e;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (root && (e = cJSON_AddObjectToObject(root, "error"))) {
		cJSON_AddStringToObject(e, "code", cw_errname(err));
		cJSON_AddStringToObject(e, "message", msg);
	}
	return cwa_send_raw(c, r, status, root, hname, hval);
}


/* Error from the engine with a message for the people who will read it. */
enum MHD_Result cwa_send_engine_err(struct MHD_Connection *c, struct req *r, int err,
				       const char *what)
{
	const char *text;

	switch (err) {
	case CW_ERR_NOCART:
		text = "no cart or slot is free right now";
		break;
	case CW_ERR_FAULT:
		text = "the lock did not open (no sensor confirmed the release)";
		break;
	case CW_ERR_OFFLINE:
		text = "the lock board does not answer";
		break;
	case CW_ERR_CONFLICT:
		text = "conflicts with the current state (for a rent: this phone already has an "
		       "open rental)";
		break;
	case CW_ERR_STATE:
		text = "not allowed in the current state";
		break;
	default:
		text = cw_strerror(err);
		break;
	}
	if (cwa_status_of(err) >= 500 && err != CW_ERR_FAULT && err != CW_ERR_OFFLINE)
		cw_warn("api.engine_error", "op=%s err=%s", what, cw_errname(err));
	return cwa_send_err(c, r, err, "%s: %s", what, text);
}

/* ---- request input ---- */

/* True if the body holds a NUL byte or a \u0000 escape: cJSON would cut the
 * string there, so "0501234567\u0000junk" would pass as another value. */
static bool has_nul(const char *b, size_t n)
{
	if (memchr(b, '\0', n))
		return true;
	for (size_t i = 0; i + 1 < n; i++) {
		if (b[i] != '\\')
			continue;
		if (b[i + 1] == 'u' && i + 5 < n && memcmp(b + i + 2, "0000", 4) == 0)
			return true;
		i++; /* skip the escaped character (handles "\\u0000" as text) */
	}
	return false;
}

/* Parses the body as a JSON object with only the allowed keys. An empty body
 * is {} when empty_ok. On failure queues a 400 and returns NULL with *sent. */
cJSON *cwa_body_object(struct MHD_Connection *c, struct req *r, const char *const *allowed,
			  bool empty_ok, enum MHD_Result *sent)
{
	const char *end = NULL;
	cJSON *root, *it;

	*sent = MHD_YES;
	if (r->len == 0) {
		if (empty_ok)
			return cJSON_CreateObject();
		*sent = cwa_send_err(c, r, CW_ERR_INVAL, "a JSON object body is required");
		return NULL;
	}
	r->body[r->len] = '\0';
	if (has_nul(r->body, r->len)) {
		*sent = cwa_send_err(c, r, CW_ERR_INVAL, "body: NUL characters are not allowed");
		return NULL;
	}
	root = cJSON_ParseWithLengthOpts(r->body, r->len, &end, 0);
	if (root && end) {
		while ((size_t)(end - r->body) < r->len && strchr(" \t\r\n", *end))
			end++;
		if ((size_t)(end - r->body) < r->len) {
			cJSON_Delete(root);
			*sent = cwa_send_err(c, r, CW_ERR_INVAL, "body: text after the JSON object");
			return NULL;
		}
	}
	if (!root) {
		size_t off = end && end >= r->body ? (size_t)(end - r->body) : 0;
		*sent = cwa_send_err(c, r, CW_ERR_INVAL, "body is not valid JSON (near byte %zu)", off);
		return NULL;
	}
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		*sent = cwa_send_err(c, r, CW_ERR_INVAL, "body must be a JSON object");
		return NULL;
	}
	cJSON_ArrayForEach(it, root) {
		bool ok = false;
		for (const char *const *k = allowed; *k; k++)
			ok = ok || strcmp(*k, it->string) == 0;
		for (const cJSON *p = root->child; ok && p != it; p = p->next)
			ok = strcmp(p->string, it->string) != 0;
		if (!ok) {
			char key[48];
			log_safe(it->string, key, sizeof(key));
			cJSON_Delete(root);
			*sent = cwa_send_err(c, r, CW_ERR_INVAL, "body: unknown or repeated field \"%s\"",
					 key);
			return NULL;
		}
	}
	return root;
}

/* Optional string field of at most max bytes, no control characters.
 * Returns 0 ok (out = NULL if absent), else CW_ERR_INVAL. */
int cwa_opt_string(const cJSON *obj, const char *key, size_t max, const char **out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	*out = NULL;
	if (!it)
		return CW_OK;
	if (!cJSON_IsString(it) || !it->valuestring || strlen(it->valuestring) > max)
		return CW_ERR_INVAL;
	for (const unsigned char *s = (const unsigned char *)it->valuestring; *s; s++) {
		if (*s < 0x20 || *s == 0x7f)
			return CW_ERR_INVAL;
	}
	*out = it->valuestring;
	return CW_OK;
}

/* A JSON number that is an integer in min..max. The range is checked on the
 * double before converting: casting an out-of-range double (1e300) to int is
 * undefined behaviour (C11 6.3.1.4). NaN fails the range check too. */
static bool json_int(const cJSON *it, int min, int max, int *out)
{
	double v;

	if (!cJSON_IsNumber(it))
		return false;
	v = it->valuedouble;
	if (!(v >= (double)min && v <= (double)max))
		return false;
	if (v != (double)(int)v) /* in range now, so the cast is defined */
		return false;
	*out = (int)v;
	return true;
}

static bool parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s || !*s || strlen(s) > 12)
		return false;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
	}
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

struct qcheck {
	const char *const *allowed;
	char bad[48];
};

static enum MHD_Result query_key_cb(void *cls, enum MHD_ValueKind kind, const char *key,
				    const char *value)
{
	struct qcheck *q = cls;

	(void)kind;
	(void)value;
	for (const char *const *k = q->allowed; k && *k; k++) {
		if (strcmp(*k, key) == 0)
			return MHD_YES;
	}
	log_safe(key, q->bad, sizeof(q->bad));
	return MHD_NO;
}

/* 400 when the query string has a parameter not in allowed (NULL = none). */
static bool query_ok(struct MHD_Connection *c, struct req *r, const char *const *allowed,
		     enum MHD_Result *sent)
{
	struct qcheck q = {.allowed = allowed};

	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_key_cb, &q);
	if (q.bad[0]) {
		*sent = cwa_send_err(c, r, CW_ERR_INVAL, "unknown query parameter \"%s\"", q.bad);
		return false;
	}
	return true;
}

static bool cart_number_seg(const char *s, int *out)
{
	long v;

	if (!parse_int(s, 1, 99999, &v))
		return false;
	*out = (int)v;
	return true;
}

/* Cart id segment: a number or a UUID. */
static bool id_seg_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 36)
		return false;
	for (; *s; s++) {
		char ch = *s;
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
		      ch == '-'))
			return false;
	}
	return true;
}

/* ---- handlers ---- */

static bool token_ok(const struct cw_api *a, struct MHD_Connection *c);

/* Public for load balancers and monitoring. Which branch the device serves
 * is told only to a caller with the admin token (cartwisectl asks here). */
static enum MHD_Result h_health(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "status", "ok");
	cJSON_AddStringToObject(o, "version", CW_VERSION);
	if (token_ok(a, c))
		cJSON_AddStringToObject(o, "branch_id", a->branch);
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_carts(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	cJSON *o = cw_engine_carts_json(a->e);

	if (!o)
		return cwa_send_engine_err(c, r, CW_ERR_DB, "list carts");
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_cart(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	const char *id = r->seg[4];
	int err = CW_ERR_NOTFOUND;
	cJSON *o;

	if (!id_seg_ok(id))
		return cwa_send_err(c, r, CW_ERR_NOTFOUND, "no such cart (expected a number or a UUID)");
	o = cw_engine_cart_json(a->e, id, &err);
	if (!o)
		return cwa_send_engine_err(c, r, err ? err : CW_ERR_NOTFOUND, "cart");
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static int phone_field(const cJSON *body, const char **phone)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "phone");

	if (!cJSON_IsString(p) || !p->valuestring || !*p->valuestring ||
	    strlen(p->valuestring) > CW_API_MAX_PHONE)
		return CW_ERR_INVAL;
	*phone = p->valuestring;
	return CW_OK;
}

cJSON *cwa_rent_json(const struct cw_rent_result *res)
{
	cJSON *o = cJSON_CreateObject();
	char when[32];

	if (!o)
		return NULL;
	cw_wall_format(res->expected_return_wall_ms, when);
	cJSON_AddStringToObject(o, "rental_id", res->rental_id);
	cJSON_AddNumberToObject(o, "cart_number", res->cart_number);
	cJSON_AddStringToObject(o, "expected_return", when);
	cJSON_AddNumberToObject(o, "unlock_latency_ms", (double)res->unlock_latency_ms);
	return o;
}

static enum MHD_Result h_assign(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	char canon[CW_PHONE_INPUT_MAX + 1];
	static const char *const keys[] = {"phone", NULL};
	struct cw_rent_result res;
	const char *phone = NULL;
	enum MHD_Result sent;
	cJSON *body;
	int err;

	if (r->customer)
		return cwa_kiosk_assign(a, c, r);
	if (!(body = cwa_body_object(c, r, keys, false, &sent)))
		return sent;
	if (phone_field(body, &phone)) {
		cJSON_Delete(body);
		return cwa_send_err(c, r, CW_ERR_INVAL, "phone: expected a string of 1-%d characters",
				CW_API_MAX_PHONE);
	}
	memset(&res, 0, sizeof(res));
	cw_phone_canon(phone, canon); /* phone_field: at most CW_API_MAX_PHONE */
	err = cw_engine_rent(a->e, canon, &res);
	cJSON_Delete(body);
	if (err == CW_ERR_FAULT)
		return cwa_send_err(c, r, err, "assign: the lock did not open; no rental was started "
					   "and the slot is marked faulty. Please try again");
	if (err)
		return cwa_send_engine_err(c, r, err, "assign");
	return cwa_send_json(c, r, MHD_HTTP_CREATED, cwa_rent_json(&res));
}

static enum MHD_Result h_return(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	char canon[CW_PHONE_INPUT_MAX + 1];
	static const char *const keys[] = {"phone", NULL};
	struct cw_return_result res;
	const char *phone = NULL;
	enum MHD_Result sent;
	cJSON *body, *o;
	int err;

	if (!(body = cwa_body_object(c, r, keys, false, &sent)))
		return sent;
	if (phone_field(body, &phone)) {
		cJSON_Delete(body);
		return cwa_send_err(c, r, CW_ERR_INVAL, "phone: expected a string of 1-%d characters",
				CW_API_MAX_PHONE);
	}
	memset(&res, 0, sizeof(res));
	cw_phone_canon(phone, canon);
	err = cw_engine_return_begin(a->e, canon, &res);
	cJSON_Delete(body);
	if (err == CW_ERR_NOTFOUND)
		return cwa_send_err(c, r, err, "return: no open rental for this phone");
	if (err)
		return cwa_send_engine_err(c, r, err, "return");
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "rental_id", res.rental_id);
	cJSON_AddNumberToObject(o, "slot_number", res.slot_number);
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_active(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	cJSON *o = cw_engine_rentals_active_json(a->e);

	if (!o)
		return cwa_send_engine_err(c, r, CW_ERR_DB, "active rentals");
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_history(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	char canon[CW_PHONE_INPUT_MAX + 1];
	const char *ls, *cursor, *phone;
	long limit = CW_API_HISTORY_DEFAULT;
	int err = CW_OK;
	cJSON *o;

	ls = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	cursor = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cursor");
	phone = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "phone");
	if (ls && !parse_int(ls, 1, CW_API_HISTORY_MAX, &limit))
		return cwa_send_err(c, r, CW_ERR_INVAL, "limit: expected an integer 1..%d",
				CW_API_HISTORY_MAX);
	if (cursor && (!*cursor || strlen(cursor) > CW_API_MAX_CURSOR))
		return cwa_send_err(c, r, CW_ERR_INVAL, "cursor: expected 1-%d characters",
				CW_API_MAX_CURSOR);
	if (phone && (!*phone || strlen(phone) > CW_API_MAX_PHONE))
		return cwa_send_err(c, r, CW_ERR_INVAL, "phone: expected 1-%d characters",
				CW_API_MAX_PHONE);
	if (phone)
		cw_phone_canon(phone, canon);
	o = cw_engine_rentals_history_json_ex(a->e, (int)limit, cursor, phone ? canon : NULL, &err);
	if (!o && err == CW_ERR_INVAL)
		return cwa_send_err(c, r, err, "history: malformed cursor or phone filter");
	if (!o)
		return cwa_send_engine_err(c, r, err ? err : CW_ERR_INTERNAL, "history");
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_stats(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	cJSON *o = cw_engine_rentals_stats_json(a->e);

	if (!o)
		return cwa_send_engine_err(c, r, CW_ERR_DB, "stats");
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_admin_status(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	cJSON *o = NULL, *eng, *buses = NULL, *res = NULL;

	eng = cw_engine_status_json(a->e);
	if (!eng)
		return cwa_send_engine_err(c, r, CW_ERR_DB, "status");
	if (a->hooks.buses_json)
		buses = a->hooks.buses_json(a->hooks.ctx);
	if (!buses)
		buses = cJSON_CreateArray();
	o = cJSON_CreateObject();
	if (!o || !buses || !cJSON_AddStringToObject(o, "version", CW_VERSION) ||
	    !cJSON_AddStringToObject(o, "branch_id", a->branch))
		goto out;
	if (!cJSON_AddItemToObject(o, "engine", eng))
		goto out;
	eng = NULL; /* o owns it now */
	if (!cJSON_AddNumberToObject(o, "outbox_depth", (double)cw_engine_outbox_depth(a->e)))
		goto out;
	if (!cJSON_AddItemToObject(o, "buses", buses))
		goto out;
	buses = NULL;
	{
		cJSON *cloud = a->hooks.cloud_json ? a->hooks.cloud_json(a->hooks.ctx) : NULL;
		if (!cloud)
			cloud = cJSON_CreateNull();
		if (!cJSON_AddItemToObject(o, "cloud", cloud)) {
			cJSON_Delete(cloud);
			goto out;
		}
	}
	res = o;
	o = NULL;
out:
	cJSON_Delete(eng);
	cJSON_Delete(buses);
	cJSON_Delete(o);
	/* res NULL (out of memory): cwa_send_json answers 500 no_memory */
	return cwa_send_json(c, r, MHD_HTTP_OK, res);
}

static enum MHD_Result h_admin_unlock(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const char *const keys[] = {NULL};
	int64_t latency = 0;
	enum MHD_Result sent;
	cJSON *body, *o;
	int n, err;

	if (!cart_number_seg(r->seg[3], &n))
		return cwa_send_err(c, r, CW_ERR_INVAL, "cart number: expected an integer 1..99999");
	if (!(body = cwa_body_object(c, r, keys, true, &sent)))
		return sent;
	cJSON_Delete(body);
	err = cw_engine_maintenance_unlock(a->e, n, &latency);
	if (err)
		return cwa_send_engine_err(c, r, err, "unlock");
	cw_info("api.admin_unlock", "cart=%d latency_ms=%lld", n, (long long)latency);
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "cart_number", n);
	cJSON_AddNumberToObject(o, "unlock_latency_ms", (double)latency);
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_admin_maint(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const char *const keys[] = {"on", "note", NULL};
	const char *note = NULL;
	enum MHD_Result sent;
	const cJSON *on;
	cJSON *body, *o;
	int n, err;
	bool v;

	if (!cart_number_seg(r->seg[3], &n))
		return cwa_send_err(c, r, CW_ERR_INVAL, "cart number: expected an integer 1..99999");
	if (!(body = cwa_body_object(c, r, keys, false, &sent)))
		return sent;
	on = cJSON_GetObjectItemCaseSensitive(body, "on");
	if (!cJSON_IsBool(on)) {
		cJSON_Delete(body);
		return cwa_send_err(c, r, CW_ERR_INVAL, "on: expected true or false");
	}
	v = cJSON_IsTrue(on);
	if (cwa_opt_string(body, "note", CW_API_MAX_NOTE, &note)) {
		cJSON_Delete(body);
		return cwa_send_err(c, r, CW_ERR_INVAL, "note: expected a string of at most %d bytes",
				CW_API_MAX_NOTE);
	}
	err = cw_engine_set_maintenance(a->e, n, v, note);
	cJSON_Delete(body);
	if (err)
		return cwa_send_engine_err(c, r, err, "maintenance");
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "cart_number", n);
	cJSON_AddBoolToObject(o, "maintenance", v);
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_admin_return(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const char *const keys[] = {"note", NULL};
	const char *id = r->seg[3], *note = NULL;
	enum MHD_Result sent;
	cJSON *body, *o;
	int err;

	if (!cw_uuid_valid(id))
		return cwa_send_err(c, r, CW_ERR_INVAL, "rental id: expected a UUID");
	if (!(body = cwa_body_object(c, r, keys, true, &sent)))
		return sent;
	if (cwa_opt_string(body, "note", CW_API_MAX_NOTE, &note)) {
		cJSON_Delete(body);
		return cwa_send_err(c, r, CW_ERR_INVAL, "note: expected a string of at most %d bytes",
				CW_API_MAX_NOTE);
	}
	err = cw_engine_force_return(a->e, id, note);
	cJSON_Delete(body);
	if (err == CW_ERR_NOTFOUND)
		return cwa_send_err(c, r, err, "return: no such rental");
	if (err)
		return cwa_send_engine_err(c, r, err, "return");
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "rental_id", id);
	cJSON_AddBoolToObject(o, "returned", true);
	return cwa_send_json(c, r, MHD_HTTP_OK, o);
}

static enum MHD_Result h_admin_scan(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const char *const keys[] = {"first", "last", NULL};
	const char *bus = r->seg[3];
	const cJSON *jf, *jl;
	int first = -1, last = -1, err;
	cJSON *body, *res = NULL;
	enum MHD_Result sent;

	if (!(body = cwa_body_object(c, r, keys, true, &sent)))
		return sent;
	jf = cJSON_GetObjectItemCaseSensitive(body, "first");
	jl = cJSON_GetObjectItemCaseSensitive(body, "last");
	if (!jf != !jl) {
		cJSON_Delete(body);
		return cwa_send_err(c, r, CW_ERR_INVAL, "give both first and last, or neither");
	}
	if (jf) {
		/* 0..247 covers Kerong boards (0-15) and Modbus slave ids (1-247);
		 * the bus refuses addresses its protocol cannot have. */
		const char *bad = NULL;

		if (!json_int(jf, 0, 247, &first))
			bad = "first";
		else if (!json_int(jl, 0, 247, &last))
			bad = "last";
		if (bad || first > last) {
			cJSON_Delete(body);
			return cwa_send_err(c, r, CW_ERR_INVAL,
					"%s: expected integers 0..247 with first <= last",
					bad ? bad : "first, last");
		}
	}
	cJSON_Delete(body);
	if (!a->hooks.scan)
		return cwa_send_err(c, r, CW_ERR_NOTFOUND, "bus scan is not available here");
	err = a->hooks.scan(a->hooks.ctx, bus, first, last, &res);
	if (err == CW_ERR_NOTFOUND)
		return cwa_send_err(c, r, err, "no bus with that name");
	if (err == CW_ERR_INVAL)
		return cwa_send_err(c, r, err, "scan: range not valid for this bus's protocol "
					   "(modbus 1..247, kerong 0..15)");
	if (err) {
		cJSON_Delete(res);
		return cwa_send_engine_err(c, r, err, "scan");
	}
	/* a bare array, like the other list routes */
	return cwa_send_json(c, r, MHD_HTTP_OK, res ? res : cJSON_CreateArray());
}

/* POST /api/admin/cloud/enroll {"code"?}: re-enrollment by an operator
 * (docs/OPERATIONS.md "cartwisectl enroll"). The code is a secret: it is
 * never logged nor echoed. */
static enum MHD_Result h_admin_enroll(struct cw_api *a, struct MHD_Connection *c, struct req *r)
{
	static const char *const keys[] = {"code", NULL};
	const cJSON *jc;
	cJSON *body, *o;
	enum MHD_Result sent;
	int err;

	if (!(body = cwa_body_object(c, r, keys, true, &sent)))
		return sent;
	jc = cJSON_GetObjectItemCaseSensitive(body, "code");
	if (jc && (!cJSON_IsString(jc) || !jc->valuestring[0] ||
		   strlen(jc->valuestring) >= CW_SYNC_CODE_MAX)) {
		cJSON_Delete(body);
		return cwa_send_err(c, r, CW_ERR_INVAL, "code: expected a string of 1..%d characters",
				CW_SYNC_CODE_MAX - 1);
	}
	err = a->hooks.cloud_enroll ? a->hooks.cloud_enroll(a->hooks.ctx,
							    jc ? jc->valuestring : NULL)
				    : CW_ERR_NOTFOUND;
	cJSON_Delete(body);
	if (err == CW_ERR_NOTFOUND)
		return cwa_send_err(c, r, err, "no cloud section in the configuration");
	if (err == CW_ERR_CONFIG)
		return cwa_send_err(c, r, CW_ERR_INVAL, "no code given and no cloud.enrollment_code in "
						    "the configuration");
	if (err)
		return cwa_send_engine_err(c, r, err, "enroll");
	o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "reenrolling", true);
	return cwa_send_json(c, r, MHD_HTTP_ACCEPTED, o);
}

static const char *const history_query[] = {"limit", "cursor", "phone", NULL};

static const struct route routes[] = {
	{.pattern = {"api", "health"},
	 .method = "GET", .is_public = true, .fn = h_health},
	{.pattern = {"api", "branches", "*", "carts"},
	 .method = "GET", .branch = true, .fn = h_carts},
	{.pattern = {"api", "branches", "*", "carts", "assign"},
	 .method = "POST", .branch = true, .customer = true, .fn = h_assign},
	{.pattern = {"api", "branches", "*", "carts", "return"},
	 .method = "POST", .branch = true, .fn = h_return},
	{.pattern = {"api", "branches", "*", "carts", "*"},
	 .method = "GET", .branch = true, .fn = h_cart},
	{.pattern = {"api", "branches", "*", "rentals", "active"},
	 .method = "GET", .branch = true, .fn = h_active},
	{.pattern = {"api", "branches", "*", "rentals", "history"},
	 .method = "GET", .branch = true, .fn = h_history, .query = history_query},
	{.pattern = {"api", "branches", "*", "rentals", "stats"},
	 .method = "GET", .branch = true, .fn = h_stats},
	{.pattern = {"api", "admin", "status"},
	 .method = "GET", .fn = h_admin_status},
	{.pattern = {"api", "admin", "carts", "*", "unlock"},
	 .method = "POST", .fn = h_admin_unlock},
	{.pattern = {"api", "admin", "carts", "*", "maintenance"},
	 .method = "POST", .fn = h_admin_maint},
	{.pattern = {"api", "admin", "rentals", "*", "return"},
	 .method = "POST", .fn = h_admin_return},
	{.pattern = {"api", "admin", "buses", "*", "scan"},
	 .method = "POST", .fn = h_admin_scan},
	{.pattern = {"api", "admin", "cloud", "enroll"},
	 .method = "POST", .fn = h_admin_enroll},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* The staff routes, then the kiosk's (cw_api_kiosk.c), as one list. */
static const struct route *route_at(size_t i)
{
	return i < NROUTES ? &routes[i] : &cwa_kiosk_routes[i - NROUTES];
}

/* Number of wildcards when rt matches r's path, -1 when it does not. */
static int route_match(const struct route *rt, const struct req *r)
{
	int n = 0, wild = 0;

	while (n < CW_API_MAX_SEGS && rt->pattern[n])
		n++;
	if (n != r->nseg)
		return -1;
	for (int i = 0; i < n; i++) {
		if (strcmp(rt->pattern[i], "*") == 0)
			wild++;
		else if (strcmp(rt->pattern[i], r->seg[i]) != 0)
			return -1;
	}
	return wild;
}

static bool same_pattern(const struct route *a, const struct route *b)
{
	for (int i = 0; i < CW_API_MAX_SEGS; i++) {
		if (!a->pattern[i] || !b->pattern[i])
			return a->pattern[i] == b->pattern[i];
		if (strcmp(a->pattern[i], b->pattern[i]) != 0)
			return false;
	}
	return true;
}

/* Splits "/a/b/c" into r->seg. False if too long, too deep, or has an empty
 * segment ("//", trailing "/"). The URL is already percent-decoded by MHD. */
static bool split_url(const char *url, struct req *r)
{
	size_t n = strlen(url);
	char *p;

	r->nseg = 0;
	if (n == 0 || url[0] != '/' || n >= sizeof(r->segbuf))
		return false;
	memcpy(r->segbuf, url + 1, n);
	for (p = r->segbuf;;) {
		char *slash = strchr(p, '/');
		if (r->nseg == CW_API_MAX_SEGS || *p == '/' || *p == '\0')
			return false;
		r->seg[r->nseg++] = p;
		if (!slash)
			break;
		*slash = '\0';
		p = slash + 1;
	}
	return true;
}

static bool token_ok(const struct cw_api *a, struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
	size_t n;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	n = strlen(h);
	while (n > 0 && h[n - 1] == ' ')
		n--;
	/* Length first (its leak is harmless), then constant time. */
	if (n != a->token_len)
		return false;
	return sodium_memcmp(h, a->token, n) == 0;
}

/* Content-Length is at most CW_API_MAX_BODY. Digits are accumulated in a
 * size_t and stop as soon as the limit is passed, so any length of header
 * works the same with a 32-bit long (armhf) as with a 64-bit one. Anything
 * that is not a plain decimal number is refused too (MHD rejects most of
 * those before we see them). */
static bool content_length_ok(const char *s)
{
	size_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (size_t)(*s - '0');
		if (v > CW_API_MAX_BODY)
			return false;
	}
	return true;
}

/* Anything not under /api/: the kiosk page's files (cw_static.h). */
static enum MHD_Result send_static(struct cw_api *a, struct MHD_Connection *c, struct req *r,
				   const char *url, const char *method)
{
	struct MHD_Response *resp;
	unsigned status = 0;
	enum MHD_Result ret;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return cwa_send_err_h(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, CW_ERR_INVAL,
				      MHD_HTTP_HEADER_ALLOW, "GET, HEAD",
				      "method not allowed here; use GET");
	resp = cw_static_response(a->web_root, url, &status);
	if (!resp)
		return MHD_NO;
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	log_request(r, (int)status);
	return ret;
}

/* First call of a request: everything decidable from the request line and
 * headers. Returns true when a response was queued. */
static bool early_checks(struct cw_api *a, struct MHD_Connection *c, const char *url,
			 const char *method, struct req *r, enum MHD_Result *ret)
{
	const struct route *path_match = NULL;
	const char *cl;
	char allow[16] = "";

	if (strncmp(url, "/api/", 5) != 0 && strcmp(url, "/api") != 0) {
		*ret = send_static(a, c, r, url, method);
		return true;
	}
	if (split_url(url, r)) {
		/* The most literal pattern wins ("carts/assign" over "carts/{id}"),
		 * whatever the method; then the method picks among equal ones. */
		int best = -1;
		for (size_t i = 0; i < NROUTES + cwa_kiosk_nroutes; i++) {
			const struct route *rt = route_at(i);
			int w = route_match(rt, r);
			if (w >= 0 && (!path_match || w < best)) {
				path_match = rt;
				best = w;
			}
		}
		for (size_t i = 0; path_match && i < NROUTES + cwa_kiosk_nroutes; i++) {
			const struct route *rt = route_at(i);
			if (same_pattern(rt, path_match) && strcmp(rt->method, method) == 0)
				r->route = rt;
		}
		if (path_match)
			snprintf(allow, sizeof(allow), "%s", path_match->method);
	}
	if (!r->route && path_match) {
		*ret = cwa_send_err_h(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, CW_ERR_INVAL,
				  MHD_HTTP_HEADER_ALLOW, allow, "method not allowed here; use %s",
				  allow);
		return true;
	}
	if (!r->route) {
		*ret = cwa_send_err(c, r, CW_ERR_NOTFOUND, "no such route");
		return true;
	}
	if (r->route->customer && !token_ok(a, c) && cwa_customer_auth(a, c, r) != CW_OK) {
		*ret = cwa_kiosk_signin_required(c, r);
		return true;
	}
	if (!r->route->is_public && !r->route->customer && !token_ok(a, c)) {
		*ret = cwa_send_err_h(c, r, MHD_HTTP_UNAUTHORIZED, CW_ERR_AUTH,
				  MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer",
				  "missing or wrong admin token (Authorization: Bearer ...)");
		return true;
	}
	if (r->route->branch && strcmp(r->seg[2], a->branch) != 0) {
		*ret = cwa_send_err(c, r, CW_ERR_NOTFOUND, "no such branch on this device");
		return true;
	}
	cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl && !content_length_ok(cl)) {
		*ret = cwa_send_err(c, r, CW_ERR_TOOBIG, "body larger than %d bytes", CW_API_MAX_BODY);
		return true;
	}
	return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct cw_api *a = cls;
	struct req *r = *con_cls;
	enum MHD_Result ret = MHD_NO;

	(void)version;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->t0 = cw_mono_ms();
		log_safe(method, r->method, sizeof(r->method));
		log_safe(url, r->logpath, sizeof(r->logpath));
		*con_cls = r;
		if (early_checks(a, c, url, method, r, &ret)) {
			r->answered = true;
			return ret;
		}
		return MHD_YES;
	}
	if (r->answered) {
		*upload_data_size = 0; /* body of a refused request: discarded */
		return MHD_YES;
	}
	if (*upload_data_size) {
		/* Chunked bodies have no Content-Length: count here, keep
		 * reading (MHD cannot answer mid-upload) but store nothing more. */
		if (r->too_big || *upload_data_size > CW_API_MAX_BODY - r->len) {
			r->too_big = true;
		} else {
			memcpy(r->body + r->len, upload_data, *upload_data_size);
			r->len += *upload_data_size;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	r->answered = true;
	if (r->too_big)
		return cwa_send_err(c, r, CW_ERR_TOOBIG, "body larger than %d bytes", CW_API_MAX_BODY);
	if (!query_ok(c, r, r->route->query, &ret))
		return ret;
	return r->route->fn(a, c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	free(*con_cls);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256], safe[256];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	/* keep it one line; quotes would end the field */
	for (size_t i = 0; i <= n; i++)
		safe[i] = (msg[i] == '"' || msg[i] == '\n' || msg[i] == '\r') ? '\'' : msg[i];
	cw_warn("api.mhd", "msg=\"%s\"", safe);
}

int cw_api_new(const char *bind_addr, int port, const char *admin_token, struct cw_engine *e,
	       const struct cw_api_hooks *hooks, struct cw_api **out)
{
	struct sockaddr_in6 sa6;
	struct sockaddr_in sa4;
	struct sockaddr *sa;
	const union MHD_DaemonInfo *info;
	unsigned int flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD |
			     MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
	struct cw_api *a = NULL;
	const char *branch;
	int rc;

	*out = NULL;
	if (!bind_addr || !admin_token || !e || port < 0 || port > 65535) {
		rc = CW_ERR_INVAL;
		goto out;
	}
	branch = cw_engine_branch_id(e);
	if (strlen(admin_token) < 16 || strlen(admin_token) >= sizeof(a->token) || !branch) {
		rc = CW_ERR_INVAL;
		goto out;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	a->e = e;
	if (hooks)
		a->hooks = *hooks;
	if ((size_t)snprintf(a->web_root, sizeof(a->web_root), "%s",
			     a->hooks.web_root ? a->hooks.web_root
			     : a->hooks.kiosk  ? cw_kiosk_config(a->hooks.kiosk)->web_root
					       : CW_KIOSK_WEB_ROOT) >= sizeof(a->web_root)) {
		rc = CW_ERR_INVAL;
		goto out;
	}
	a->token_len = strlen(admin_token);
	memcpy(a->token, admin_token, a->token_len + 1);
	snprintf(a->branch, sizeof(a->branch), "%s", branch);

	memset(&sa4, 0, sizeof(sa4));
	memset(&sa6, 0, sizeof(sa6));
	if (inet_pton(AF_INET, bind_addr, &sa4.sin_addr) == 1) {
		sa4.sin_family = AF_INET;
		sa4.sin_port = htons((uint16_t)port);
		sa = (struct sockaddr *)&sa4;
	} else if (inet_pton(AF_INET6, bind_addr, &sa6.sin6_addr) == 1) {
		sa6.sin6_family = AF_INET6;
		sa6.sin6_port = htons((uint16_t)port);
		sa = (struct sockaddr *)&sa6;
		flags |= MHD_USE_IPv6;
	} else {
		cw_error("api.bad_bind", "bind=%s", bind_addr);
		rc = CW_ERR_INVAL;
		goto out;
	}
	/* The logger must be the first option, or MHD prints to stderr first. */
	a->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, a,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
				MHD_OPTION_SOCK_ADDR, sa,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CW_API_MAX_CONNECTIONS,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CW_API_CONN_TIMEOUT_S,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
				MHD_OPTION_END);
	if (!a->d) {
		cw_error("api.start_failed", "bind=%s port=%d hint=\"address in use or not local?\"",
			 bind_addr, port);
		rc = CW_ERR_IO;
		goto out;
	}
	info = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
	a->port = info && info->port ? info->port : port;
	*out = a;
	a = NULL;
	rc = CW_OK;
out:
	cw_api_free(a);
	return rc;
}

int cw_api_port(const struct cw_api *api)
{
	return api ? api->port : 0;
}

void cw_api_free(struct cw_api *api)
{
	if (!api)
		return;
	if (api->d)
		MHD_stop_daemon(api->d);
	sodium_memzero(api->token, sizeof(api->token));
	free(api);
}
