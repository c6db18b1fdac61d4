/* cw_cloud_api.c - the aggregator's HTTP API (see cw_cloud_api.h, docs/CLOUD.md).
 *
 * Authorisation is of the object itself: every handler loads the chain,
 * branch or device named in the path, query or body and checks the caller
 * against *its* chain (and, for a branch manager, its branch) before doing
 * anything. An object the caller may not see is 404, as if it did not exist;
 * an object the caller sees but may not change is 403. Staff tokens and
 * device tokens have different "typ" claims and are verified for exactly
 * the one each endpoint takes, so neither can act as the other.
 *
 * Never logged: Authorization headers, bodies, passwords, codes, keys. The
 * access log names the route pattern, not the raw path. */
#include "cw_cloud_api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "cw_clock.h"
#include "cw_cloud_keys.h"
#include "cw_error.h"
#include "cw_jwt.h"
#include "cw_log.h"
#include "cw_staff.h"
#include "cw_static.h"
#include "cw_uuid.h"

#define PAGE_DEFAULT 50
#define HEARTBEAT_COMMANDS_MAX 16
#define ENROLL_CODE_BYTES 10 /* 80 random bits, 20 hex characters */
#define ENROLL_USES_MAX 1000
#define ENROLL_TTL_MAX_S (90 * 86400)
#define PASSWORD_MAX 1024
#define MAX_SEGS 6
#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define FIRMWARE_COMMAND_TTL_MS (24LL * 3600 * 1000)
/* Cart assign/return commands: short-lived, so that a late command never
 * releases a cart long after the manager gave up on it (BRIEF.md §5). */
#define CART_COMMAND_TTL_S 60
#define CART_COMMAND_TTL_MIN_S 10
#define CART_COMMAND_TTL_MAX_S 3600
#define STATS_DAYS_MAX 366
#define STATS_HOURS_MAX (STATS_DAYS_MAX * 24 + 2) /* a range not on whole hours touches one more */
/* How long a stop waits for the live streams to end by themselves (each
 * writes its last chunk on a pool thread: milliseconds for hundreds, unless
 * the machine is starved or a client does not read); MHD_stop_daemon then
 * closes the rest, which is slower than letting them end. */
#define EVENTS_SHUTDOWN_MS 5000

/* Prometheus metrics (text format 0.0.4), counted in on_completed. */
#define METRIC_ROUTES 48 /* >= number of routes + 2 (unmatched, dashboard) */
static const int metric_status[] = {200, 201, 202, 204, 400, 401, 403, 404, 405,
				    409, 413, 414, 429, 500, 503};
#define METRIC_NSTATUS (sizeof(metric_status) / sizeof(metric_status[0]) + 1) /* + other */
static const double metric_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				   0.1,   0.25,   0.5,   1,    2.5};
#define METRIC_NLE (sizeof(metric_le) / sizeof(metric_le[0]))
#define METRICS_TEXT_MAX (256 * 1024)

/* Counters per route pattern (index in routes[]; the last used one is
 * "unmatched"): requests by status, and a latency histogram. */
struct metrics {
	atomic_ullong requests[METRIC_ROUTES][METRIC_NSTATUS];
	atomic_ullong le[METRIC_ROUTES][METRIC_NLE + 1]; /* per bucket, not cumulative; last = +Inf */
	atomic_ullong sum_us[METRIC_ROUTES], count[METRIC_ROUTES];
};

struct cw_cloud_api {
	struct MHD_Daemon *d;
	struct metrics m;
	struct cw_cloud_config cfg;
	struct cw_store *store;
	struct cw_cloud_mqtt *mqtt; /* may be NULL */
	struct cw_events *events;   /* may be NULL */
	unsigned char sk[crypto_sign_SECRETKEYBYTES];
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	unsigned char enroll_key[crypto_generichash_KEYBYTES];
	/* keys the login rate limiter's hash of (email, address): a subkey of
	 * the signing key, so every instance sharing that key (as they must,
	 * for tokens and enrollment codes) computes the same hash */
	unsigned char login_key[crypto_generichash_KEYBYTES];
	char pk_b64[sodium_base64_ENCODED_LEN(crypto_sign_PUBLICKEYBYTES, B64URL)];
	/* verified against when the email is unknown, so that the answer takes
	 * as long as for a known one */
	char dummy_hash[crypto_pwhash_STRBYTES];
	char *tls_cert, *tls_key;
	int port;
};

struct req {
	char *body;
	size_t len;
	bool too_big;
	size_t body_max; /* CW_CLOUD_BODY_MAX, or more for an authenticated sync batch */
	char ip[INET6_ADDRSTRLEN];
	const char *route; /* pattern, for the access log */
	int route_idx;     /* index in routes[], -1 = none matched, ROUTE_DASHBOARD */
	int status;
	int64_t t0;
	int64_t t0_us;
	char err[256]; /* validation message of the current request */
};

/* The authenticated caller of a staff endpoint. */
struct principal {
	struct cw_user u;
};

typedef enum MHD_Result (*handler_fn)(struct cw_cloud_api *a, struct MHD_Connection *c,
				      struct req *r, const char *method, char **seg, int nseg);

/* ---- responses ---- */

static enum MHD_Result send_json(struct MHD_Connection *c, struct req *r, int status, cJSON *body)
{
	static const char oom[] = "{\"error\":{\"code\":\"no_memory\",\"message\":\"out of memory\"}}";
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text = body ? cJSON_PrintUnformatted(body) : NULL;

	cJSON_Delete(body);
	if (!text) {
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		resp = MHD_create_response_from_buffer(sizeof(oom) - 1, (void *)oom,
						       MHD_RESPMEM_PERSISTENT);
	} else {
		resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	}
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	r->status = status;
	ret = MHD_queue_response(c, (unsigned int)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, struct req *r, int status,
				  const char *code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum MHD_Result send_error(struct MHD_Connection *c, struct req *r, int status,
				  const char *code, const char *fmt, ...)
{
	char msg[320];
	cJSON *root = cJSON_CreateObject(), *e = cJSON_CreateObject();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(e, "code", code);
	cJSON_AddStringToObject(e, "message", msg);
	cJSON_AddItemToObject(root, "error", e);
	return send_json(c, r, status, root);
}

static enum MHD_Result bad_request(struct MHD_Connection *c, struct req *r)
{
	return send_error(c, r, MHD_HTTP_BAD_REQUEST, "invalid", "%s", r->err);
}

static enum MHD_Result not_found(struct MHD_Connection *c, struct req *r, const char *what)
{
	return send_error(c, r, MHD_HTTP_NOT_FOUND, "not_found", "%s not found", what);
}

static enum MHD_Result forbidden(struct MHD_Connection *c, struct req *r)
{
	return send_error(c, r, MHD_HTTP_FORBIDDEN, "forbidden",
			  "your role does not allow this on this object");
}

/* Maps a store error to its status; what names the object for 404/409. */
static enum MHD_Result send_store_err(struct MHD_Connection *c, struct req *r, int err,
				      const char *what)
{
	switch (err) {
	case CW_ERR_NOTFOUND:
		return not_found(c, r, what);
	case CW_ERR_CONFLICT:
		return send_error(c, r, MHD_HTTP_CONFLICT, "conflict",
				  "%s conflicts with an existing one (unique field taken, or still "
				  "referred to)", what);
	case CW_ERR_INVAL:
		return send_error(c, r, MHD_HTTP_BAD_REQUEST, "invalid",
				  "a value of %s is out of its allowed range", what);
	case CW_ERR_OFFLINE:
		return send_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
				  "the database is unavailable, retry later");
	case CW_ERR_AUTH:
		return send_error(c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized", "unauthorized");
	default:
		return send_error(c, r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
				  "internal error (%s)", cw_errname(err));
	}
}

static void add_time(cJSON *o, const char *key, int64_t ms)
{
	char buf[32];

	if (ms <= 0) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	cw_wall_format(ms, buf);
	cJSON_AddStringToObject(o, key, buf);
}

static void add_opt_str(cJSON *o, const char *key, const char *v)
{
	if (v && *v)
		cJSON_AddStringToObject(o, key, v);
	else
		cJSON_AddNullToObject(o, key);
}

/* ---- validation of input ---- */

enum skind {
	S_TEXT,  /* valid UTF-8, no control characters */
	S_SLUG,  /* [a-z0-9-] */
	S_CODE,  /* [A-Za-z0-9_-] */
	S_PRINT, /* printable ASCII without spaces */
	S_UUID,  /* canonical lower-case UUID */
};

static bool kind_ok(const char *s, enum skind k)
{
	const unsigned char *p = (const unsigned char *)s;

	switch (k) {
	case S_TEXT:
		for (; *p; p++)
			if (*p < 0x20 || *p == 0x7f)
				return false;
		return cw_cloud_utf8_ok(s);
	case S_SLUG:
		for (; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
				return false;
		return true;
	case S_CODE:
		for (; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
				return false;
		return true;
	case S_PRINT:
		for (; *p; p++)
			if (*p <= 0x20 || *p >= 0x7f)
				return false;
		return true;
	case S_UUID:
		if (!cw_uuid_valid(s))
			return false;
		for (; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				return false;
		return true;
	}
	return false;
}

static const char *kind_text(enum skind k)
{
	switch (k) {
	case S_SLUG:
		return "lower-case letters, digits and '-'";
	case S_CODE:
		return "letters, digits, '-' and '_'";
	case S_PRINT:
		return "printable ASCII without spaces";
	case S_UUID:
		return "a lower-case UUID";
	default:
		return "text without control characters";
	}
}

/* Reads string field key of o into out. Returns 1 when present and valid,
 * 0 when absent and optional, -1 with r->err set otherwise. Values are never
 * echoed in messages. */
static int field_str(struct req *r, const cJSON *o, const char *key, bool required, size_t min,
		     enum skind k, char *out, size_t cap)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
	size_t n;

	if (!it || cJSON_IsNull(it)) {
		if (!required)
			return 0;
		snprintf(r->err, sizeof(r->err), "%s: missing", key);
		return -1;
	}
	if (!cJSON_IsString(it) || !it->valuestring) {
		snprintf(r->err, sizeof(r->err), "%s: expected a string", key);
		return -1;
	}
	n = strlen(it->valuestring);
	if (n < min || n >= cap) {
		snprintf(r->err, sizeof(r->err), "%s: expected %zu to %zu bytes, got %zu", key, min,
			 cap - 1, n);
		return -1;
	}
	if (!kind_ok(it->valuestring, k)) {
		snprintf(r->err, sizeof(r->err), "%s: only %s", key, kind_text(k));
		return -1;
	}
	memcpy(out, it->valuestring, n + 1);
	return 1;
}

static int field_bool(struct req *r, const cJSON *o, const char *key, bool *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!it)
		return 0;
	if (!cJSON_IsBool(it)) {
		snprintf(r->err, sizeof(r->err), "%s: expected true or false", key);
		return -1;
	}
	*out = cJSON_IsTrue(it);
	return 1;
}

static int field_int(struct req *r, const cJSON *o, const char *key, long min, long max, long *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
	double v;

	if (!it)
		return 0;
	v = cJSON_IsNumber(it) ? it->valuedouble : 0;
	if (!cJSON_IsNumber(it) || v != (double)(long)v || v < (double)min || v > (double)max) {
		snprintf(r->err, sizeof(r->err), "%s: expected an integer %ld..%ld", key, min, max);
		return -1;
	}
	*out = (long)v;
	return 1;
}

static int field_real(struct req *r, const cJSON *o, const char *key, double min, double max,
		      double *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!it || cJSON_IsNull(it))
		return 0;
	if (!cJSON_IsNumber(it) || it->valuedouble < min || it->valuedouble > max) {
		snprintf(r->err, sizeof(r->err), "%s: expected a number %g..%g", key, min, max);
		return -1;
	}
	*out = it->valuedouble;
	return 1;
}

/* Parses the request body as one JSON object with only the allowed keys.
 * NULL with r->err set (400) or r->too_big (413) otherwise. */
static cJSON *body_object(struct req *r, const char *const *allowed)
{
	const char *end = NULL;
	cJSON *o;

	if (!r->body || r->len == 0) {
		snprintf(r->err, sizeof(r->err), "a JSON object body is required");
		return NULL;
	}
	if (strlen(r->body) != r->len) {
		snprintf(r->err, sizeof(r->err), "body contains a NUL byte");
		return NULL;
	}
	o = cJSON_ParseWithLengthOpts(r->body, r->len, &end, 0);
	if (!o) {
		snprintf(r->err, sizeof(r->err), "body is not valid JSON (near byte %zu)",
			 end && end >= r->body ? (size_t)(end - r->body) : (size_t)0);
		return NULL;
	}
	while (end && (size_t)(end - r->body) < r->len && strchr(" \t\r\n", *end))
		end++;
	if (!cJSON_IsObject(o) || (end && (size_t)(end - r->body) != r->len)) {
		snprintf(r->err, sizeof(r->err), "body must be exactly one JSON object");
		cJSON_Delete(o);
		return NULL;
	}
	for (const cJSON *it = o->child; it; it = it->next) {
		bool known = false;
		for (const char *const *k = allowed; *k && !known; k++)
			known = strcmp(*k, it->string) == 0;
		if (!known) {
			/* the key name is the client's own text: bounded, and
			 * only if printable */
			if (kind_ok(it->string, S_CODE) && strlen(it->string) <= 40)
				snprintf(r->err, sizeof(r->err), "unknown field '%s'", it->string);
			else
				snprintf(r->err, sizeof(r->err), "unknown field");
			cJSON_Delete(o);
			return NULL;
		}
		for (const cJSON *p = o->child; p != it; p = p->next) {
			if (strcmp(p->string, it->string) == 0) {
				snprintf(r->err, sizeof(r->err), "a field is given twice");
				cJSON_Delete(o);
				return NULL;
			}
		}
	}
	return o;
}

/* limit (1..CW_PAGE_MAX, default 50) and cursor (a UUID) from the query. */
static int page_args(struct MHD_Connection *c, struct req *r, struct cw_page *pg, char *cursor)
{
	const char *lim = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	const char *cur = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cursor");

	pg->limit = PAGE_DEFAULT;
	pg->after = NULL;
	if (lim) {
		char *end = NULL;
		long v = strtol(lim, &end, 10);
		if (!*lim || *end || v < 1 || v > CW_PAGE_MAX) {
			snprintf(r->err, sizeof(r->err), "limit: expected an integer 1..%d",
				 CW_PAGE_MAX);
			return -1;
		}
		pg->limit = (int)v;
	}
	if (cur && *cur) {
		if (!kind_ok(cur, S_UUID)) {
			snprintf(r->err, sizeof(r->err), "cursor: expected the next_cursor of a "
							 "previous page");
			return -1;
		}
		snprintf(cursor, CW_UUID_STRLEN, "%s", cur);
		pg->after = cursor;
	}
	return 0;
}

/* ---- tokens and callers ---- */

static const char *bearer(struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);

	if (!h || strncmp(h, "Bearer ", 7) != 0)
		return NULL;
	return h + 7;
}

static int verify_token(struct cw_cloud_api *a, struct MHD_Connection *c, const char *typ,
			cJSON **claims)
{
	struct cw_jwt_expect e = {.iss = a->cfg.issuer, .aud = a->cfg.audience, .typ = typ,
				  .leeway_s = -1};
	const char *tok = bearer(c), *why = "missing";
	int rc;

	*claims = NULL;
	if (!tok)
		rc = CW_ERR_AUTH;
	else
		rc = cw_jwt_verify(tok, a->pk, &e, claims, &why);
	if (rc != CW_OK) {
		cw_info("auth.refused", "want=%s reason=%s", typ, why);
		return CW_ERR_AUTH;
	}
	return CW_OK;
}

static const char *claim_str(const cJSON *claims, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(claims, key);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* Authenticates a staff caller: a valid staff token of an active user.
 * Returns MHD_YES with *ok set, or the queued 401/503. */
static enum MHD_Result staff(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
			     struct principal *p, bool *ok)
{
	cJSON *claims = NULL;
	const char *sub;
	int rc;

	*ok = false;
	if (verify_token(a, c, CW_JWT_TYP_STAFF, &claims) != CW_OK)
		return send_error(c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
				  "a valid staff token is required");
	sub = claim_str(claims, "sub");
	rc = sub && kind_ok(sub, S_UUID) ? cw_store_user_get(a->store, sub, &p->u) : CW_ERR_AUTH;
	cJSON_Delete(claims);
	if (rc == CW_ERR_OFFLINE)
		return send_store_err(c, r, rc, "user");
	if (rc != CW_OK || !p->u.active)
		return send_error(c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
				  "a valid staff token is required");
	*ok = true;
	return MHD_YES;
}

/* May the caller see this chain at all? */
static bool sees_chain(const struct principal *p, const char *chain_id)
{
	return p->u.role == CW_ROLE_PLATFORM_ADMIN || strcmp(p->u.chain_id, chain_id) == 0;
}

/* May the caller change this chain's objects (branches, codes, devices)? */
static bool admins_chain(const struct principal *p, const char *chain_id)
{
	return p->u.role == CW_ROLE_PLATFORM_ADMIN ||
	       (p->u.role == CW_ROLE_CHAIN_ADMIN && strcmp(p->u.chain_id, chain_id) == 0);
}

/* May the caller see this branch? *err gets a store error to report. */
static bool sees_branch(struct cw_cloud_api *a, const struct principal *p, const char *branch_id,
			const char *chain_id, int *err)
{
	bool yes = false;

	*err = CW_OK;
	if (!sees_chain(p, chain_id))
		return false;
	if (p->u.role != CW_ROLE_BRANCH_MANAGER)
		return true;
	*err = cw_store_user_manages(a->store, p->u.id, branch_id, &yes);
	return *err == CW_OK && yes;
}

static struct cw_scope scope_of(const struct principal *p)
{
	struct cw_scope s = {NULL, NULL};

	if (p->u.role != CW_ROLE_PLATFORM_ADMIN)
		s.chain_id = p->u.chain_id;
	if (p->u.role == CW_ROLE_BRANCH_MANAGER)
		s.manager_id = p->u.id;
	return s;
}

/* ---- JSON of objects ---- */

static cJSON *chain_json(const struct cw_chain *x)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", x->id);
	cJSON_AddStringToObject(o, "name", x->name);
	cJSON_AddStringToObject(o, "slug", x->slug);
	cJSON_AddBoolToObject(o, "active", x->active);
	add_time(o, "created_at", x->created_ms);
	add_time(o, "updated_at", x->updated_ms);
	return o;
}

static cJSON *branch_json(const struct cw_branch *x)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", x->id);
	cJSON_AddStringToObject(o, "chain_id", x->chain_id);
	cJSON_AddStringToObject(o, "code", x->code);
	cJSON_AddStringToObject(o, "name", x->name);
	add_opt_str(o, "address", x->address);
	add_opt_str(o, "city", x->city);
	if (x->has_location) {
		cJSON_AddNumberToObject(o, "latitude", x->latitude);
		cJSON_AddNumberToObject(o, "longitude", x->longitude);
	} else {
		cJSON_AddNullToObject(o, "latitude");
		cJSON_AddNullToObject(o, "longitude");
	}
	cJSON_AddBoolToObject(o, "active", x->active);
	add_time(o, "created_at", x->created_ms);
	add_time(o, "updated_at", x->updated_ms);
	return o;
}

/* "offline" is reported when the last heartbeat is older than the limit
 * (three missed heartbeats by default), whatever was stored. */
static const char *device_status(const struct cw_cloud_api *a, const struct cw_device *d)
{
	if (d->last_heartbeat_ms <= 0 ||
	    cw_wall_ms() - d->last_heartbeat_ms > (int64_t)a->cfg.offline_after_s * 1000)
		return "offline";
	return d->status;
}

static void add_health(cJSON *o, const char *text)
{
	cJSON *h = text && *text ? cJSON_Parse(text) : NULL;

	if (h)
		cJSON_AddItemToObject(o, "health", h);
	else
		cJSON_AddNullToObject(o, "health");
}

static cJSON *device_json(const struct cw_cloud_api *a, const struct cw_device *d)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", d->id);
	cJSON_AddStringToObject(o, "branch_id", d->branch_id);
	cJSON_AddStringToObject(o, "chain_id", d->chain_id);
	cJSON_AddStringToObject(o, "device_name", d->device_name);
	cJSON_AddStringToObject(o, "mac_address", d->mac_address);
	add_opt_str(o, "serial_number", d->serial_number);
	cJSON_AddStringToObject(o, "status", device_status(a, d));
	cJSON_AddBoolToObject(o, "online", strcmp(device_status(a, d), "offline") != 0);
	add_time(o, "last_heartbeat", d->last_heartbeat_ms);
	add_opt_str(o, "firmware_version", d->firmware_version);
	add_health(o, d->health);
	add_time(o, "created_at", d->created_ms);
	return o;
}

static cJSON *command_json(const struct cw_command *x)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *args = cJSON_Parse(x->args);

	cJSON_AddStringToObject(o, "id", x->id);
	/* a command past its expiry that no device finished reads as expired,
	 * whether or not a heartbeat has swept it yet */
	bool expired = (strcmp(x->state, "pending") == 0 || strcmp(x->state, "delivered") == 0) &&
		       x->expires_ms <= cw_wall_ms();

	cJSON_AddStringToObject(o, "device_id", x->device_id);
	cJSON_AddStringToObject(o, "branch_id", x->branch_id);
	cJSON_AddStringToObject(o, "action", x->action);
	cJSON_AddItemToObject(o, "args", args ? args : cJSON_CreateObject());
	cJSON_AddStringToObject(o, "state", expired ? "expired" : x->state);
	add_time(o, "created_at", x->created_ms);
	add_time(o, "expires_at", x->expires_ms);
	if (x->result[0]) {
		cJSON *res = cJSON_Parse(x->result);
		cJSON_AddItemToObject(o, "result", res ? res : cJSON_CreateNull());
	} else {
		cJSON_AddNullToObject(o, "result");
	}
	return o;
}

static cJSON *page_json(cJSON *items, bool more, const char *last_id)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddItemToObject(o, "items", items);
	if (more && last_id)
		cJSON_AddStringToObject(o, "next_cursor", last_id);
	else
		cJSON_AddNullToObject(o, "next_cursor");
	return o;
}

/* ---- /api/health ---- */

static enum MHD_Result h_health(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				const char *method, char **seg, int nseg)
{
	cJSON *o = cJSON_CreateObject();
	int rc = cw_store_ping(a->store);

	cJSON_AddStringToObject(o, "status", rc == CW_OK ? "ok" : "degraded");
	cJSON_AddStringToObject(o, "database", rc == CW_OK ? "ok" : "unavailable");
	cJSON_AddStringToObject(o, "backend",
				cw_store_backend(a->store) == CW_BACKEND_SQLITE ? "sqlite" : "postgres");
	return send_json(c, r, rc == CW_OK ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, o);
}

/* ---- /api/auth/login ---- */

/* The login rate limiter's key of (email, client address): BLAKE2b-256
 * keyed with login_key, as hex. The counters live in the database
 * (cw_store_login_*), so all instances behind a load balancer share them;
 * only this hash is stored, never the email or the address. email has no
 * NUL, so email + NUL + address is unambiguous. */
static void login_key_hex(const struct cw_cloud_api *a, const char *email, const char *ip,
			  char out[CW_HASH_HEX_MAX])
{
	crypto_generichash_state st;
	unsigned char h[crypto_generichash_BYTES]; /* 32: CW_HASH_HEX_MAX - 1 hex digits */

	unsigned char addr[16];

	crypto_generichash_init(&st, a->login_key, sizeof(a->login_key), sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)email, strlen(email) + 1);
	/* an IPv6 client counts by its /64: one host has a whole /64 to pick
	 * addresses from (IPv4, mapped, stays a whole address) */
	if (cw_cloud_addr_key(ip, addr)) {
		if (!cw_cloud_addr_is_v4(addr))
			memset(addr + 8, 0, 8);
		crypto_generichash_update(&st, addr, sizeof(addr));
	} else {
		crypto_generichash_update(&st, (const unsigned char *)ip, strlen(ip));
	}
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(out, CW_HASH_HEX_MAX, h, sizeof(h));
}

static int sign_token(struct cw_cloud_api *a, const char *typ, const char *sub, const char *jti,
		      int ttl_s, char **tok, int64_t *exp_s)
{
	int64_t now = cw_wall_ms() / 1000;
	cJSON *cl = cJSON_CreateObject();
	int rc;

	*exp_s = now + ttl_s;
	cJSON_AddStringToObject(cl, "iss", a->cfg.issuer);
	cJSON_AddStringToObject(cl, "aud", a->cfg.audience);
	cJSON_AddStringToObject(cl, "typ", typ);
	cJSON_AddStringToObject(cl, "sub", sub);
	if (jti)
		cJSON_AddStringToObject(cl, "jti", jti);
	cJSON_AddNumberToObject(cl, "iat", (double)now);
	cJSON_AddNumberToObject(cl, "exp", (double)*exp_s);
	rc = cw_jwt_sign(cl, a->sk, tok);
	cJSON_Delete(cl);
	return rc;
}

static enum MHD_Result h_login(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
			       const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"email", "password", NULL};
	char email[CW_EMAIL_MAX], *password = NULL, *tok = NULL;
	struct cw_user u;
	const cJSON *pw;
	cJSON *body = body_object(r, keys), *o, *user;
	char key[CW_HASH_HEX_MAX];
	struct cw_login_failures lf;
	int64_t exp_s = 0, now, window_ms = (int64_t)a->cfg.login_window_s * 1000;
	int retry_s = 0, rc;
	bool good;
	enum MHD_Result ret;

	if (!body)
		return bad_request(c, r);
	if (field_str(r, body, "email", true, 3, S_TEXT, email, sizeof(email)) < 0) {
		ret = bad_request(c, r);
		goto out;
	}
	pw = cJSON_GetObjectItemCaseSensitive(body, "password");
	if (!cJSON_IsString(pw) || !pw->valuestring || !*pw->valuestring ||
	    strlen(pw->valuestring) > PASSWORD_MAX) {
		snprintf(r->err, sizeof(r->err), "password: expected a string of 1..%d bytes",
			 PASSWORD_MAX);
		ret = bad_request(c, r);
		goto out;
	}
	password = pw->valuestring;
	for (char *p = email; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	/* Every attempt is counted BEFORE the password is checked (one atomic
	 * upsert that returns the count), and a success clears it: attempts
	 * in flight at the same moment cannot share one free slot. Fail
	 * closed: when the counter cannot be written the login is refused (503
	 * like any other store error; it needs the database to read the user
	 * anyway), never let through unlimited. */
	now = cw_wall_ms();
	login_key_hex(a, email, r->ip, key);
	rc = cw_store_login_failure_add(a->store, key, now, window_ms, &lf);
	if (rc != CW_OK) {
		cw_warn("auth.rate_limit_unavailable", "ip=%s err=%s", r->ip, cw_errname(rc));
		ret = send_store_err(c, r, rc, "login");
		goto out;
	}
	if (lf.failures > a->cfg.login_max_attempts) {
		int64_t left_ms = lf.window_start_ms + window_ms - now;
		retry_s = left_ms > 0 ? (int)(left_ms / 1000) + 1 : 1;
		cw_warn("auth.rate_limited", "ip=%s", r->ip);
		ret = send_error(c, r, MHD_HTTP_TOO_MANY_REQUESTS, "rate_limited",
				 "too many failed logins; retry in %d s", retry_s);
		goto out;
	}
	rc = cw_store_user_get_by_email(a->store, email, &u);
	if (rc != CW_OK && rc != CW_ERR_NOTFOUND) {
		ret = send_store_err(c, r, rc, "user");
		goto out;
	}
	/* Argon2id verification runs for unknown emails too (on a dummy hash):
	 * the answer time does not tell whether an account exists. */
	good = crypto_pwhash_str_verify(rc == CW_OK ? u.password_hash : a->dummy_hash, password,
					strlen(password)) == 0 &&
	       rc == CW_OK && u.active;
	if (!good) { /* counted already, above */
		cw_info("auth.login_failed", "ip=%s", r->ip);
		ret = send_error(c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
				 "wrong email or password");
		goto out;
	}
	/* housekeeping only: a count left behind expires with its window */
	rc = cw_store_login_failures_clear(a->store, key);
	if (rc != CW_OK)
		cw_warn("auth.rate_limit_clear", "err=%s", cw_errname(rc));
	rc = sign_token(a, CW_JWT_TYP_STAFF, u.id, NULL, a->cfg.staff_token_ttl_s, &tok, &exp_s);
	if (rc != CW_OK) {
		ret = send_store_err(c, r, rc, "token");
		goto out;
	}
	cw_info("auth.login", "user=%s role=%s", u.id, cw_role_name(u.role));
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "token", tok);
	cJSON_AddStringToObject(o, "token_type", "Bearer");
	add_time(o, "expires_at", exp_s * 1000);
	user = cJSON_AddObjectToObject(o, "user");
	cJSON_AddStringToObject(user, "id", u.id);
	cJSON_AddStringToObject(user, "email", u.email);
	cJSON_AddStringToObject(user, "role", cw_role_name(u.role));
	add_opt_str(user, "chain_id", u.chain_id);
	ret = send_json(c, r, MHD_HTTP_OK, o);
out:
	free(tok);
	cJSON_Delete(body);
	return ret;
}

/* ---- /api/chains ---- */

static enum MHD_Result h_chains(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"name", "slug", "active", NULL};
	struct principal p;
	bool ok;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	if (strcmp(method, "GET") == 0) {
		struct cw_scope sc = scope_of(&p);
		struct cw_page pg;
		char cursor[CW_UUID_STRLEN];
		struct cw_chain *rows;
		cJSON *items;
		int n = 0, rc;
		bool more = false;

		if (page_args(c, r, &pg, cursor) < 0)
			return bad_request(c, r);
		rows = calloc((size_t)pg.limit, sizeof(*rows));
		if (!rows)
			return send_store_err(c, r, CW_ERR_NOMEM, "chains");
		rc = cw_store_chain_list(a->store, &sc, &pg, rows, &n, &more);
		if (rc != CW_OK) {
			free(rows);
			return send_store_err(c, r, rc, "chains");
		}
		items = cJSON_CreateArray();
		for (int i = 0; i < n; i++)
			cJSON_AddItemToArray(items, chain_json(&rows[i]));
		ret = send_json(c, r, MHD_HTTP_OK, page_json(items, more, n ? rows[n - 1].id : NULL));
		free(rows);
		return ret;
	}
	/* POST: platform admins create chains */
	{
		struct cw_chain ch = {.active = true};
		cJSON *body;
		int rc;

		if (p.u.role != CW_ROLE_PLATFORM_ADMIN)
			return forbidden(c, r);
		body = body_object(r, keys);
		if (!body)
			return bad_request(c, r);
		if (field_str(r, body, "name", true, 1, S_TEXT, ch.name, sizeof(ch.name)) < 0 ||
		    field_str(r, body, "slug", true, 1, S_SLUG, ch.slug, sizeof(ch.slug)) < 0 ||
		    field_bool(r, body, "active", &ch.active) < 0) {
			cJSON_Delete(body);
			return bad_request(c, r);
		}
		cJSON_Delete(body);
		cw_uuid_v7(ch.id);
		rc = cw_store_chain_create(a->store, &ch, cw_wall_ms());
		if (rc == CW_OK)
			rc = cw_store_chain_get(a->store, ch.id, &ch);
		if (rc != CW_OK)
			return send_store_err(c, r, rc, "chain");
		cw_info("chain.created", "chain=%s by=%s", ch.id, p.u.id);
		return send_json(c, r, MHD_HTTP_CREATED, chain_json(&ch));
	}
}

static enum MHD_Result h_chain(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
			       const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"name", "slug", "active", NULL};
	const char *id = seg[2];
	struct cw_chain ch;
	struct principal p;
	bool ok;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	/* a chain the caller may not see does not exist for it */
	if (!kind_ok(id, S_UUID) || !sees_chain(&p, id))
		return not_found(c, r, "chain");
	rc = cw_store_chain_get(a->store, id, &ch);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "chain");
	if (strcmp(method, "GET") == 0)
		return send_json(c, r, MHD_HTTP_OK, chain_json(&ch));
	if (strcmp(method, "DELETE") == 0) {
		if (p.u.role != CW_ROLE_PLATFORM_ADMIN)
			return forbidden(c, r);
		rc = cw_store_chain_delete(a->store, id);
		if (rc != CW_OK)
			return send_store_err(c, r, rc, "chain");
		cw_info("chain.deleted", "chain=%s by=%s", id, p.u.id);
		return send_json(c, r, MHD_HTTP_OK, chain_json(&ch));
	}
	/* PUT: platform admins, and a chain admin for its own chain's name;
	 * slug and active stay the platform's */
	{
		cJSON *body;

		if (!admins_chain(&p, id))
			return forbidden(c, r);
		body = body_object(r, keys);
		if (!body)
			return bad_request(c, r);
		if (field_str(r, body, "name", false, 1, S_TEXT, ch.name, sizeof(ch.name)) < 0 ||
		    field_str(r, body, "slug", false, 1, S_SLUG, ch.slug, sizeof(ch.slug)) < 0 ||
		    field_bool(r, body, "active", &ch.active) < 0) {
			cJSON_Delete(body);
			return bad_request(c, r);
		}
		if (p.u.role != CW_ROLE_PLATFORM_ADMIN &&
		    (cJSON_HasObjectItem(body, "slug") || cJSON_HasObjectItem(body, "active"))) {
			cJSON_Delete(body);
			return forbidden(c, r);
		}
		cJSON_Delete(body);
		rc = cw_store_chain_update(a->store, &ch, cw_wall_ms());
		if (rc == CW_OK)
			rc = cw_store_chain_get(a->store, id, &ch);
		if (rc != CW_OK)
			return send_store_err(c, r, rc, "chain");
		return send_json(c, r, MHD_HTTP_OK, chain_json(&ch));
	}
}

/* ---- /api/branches ---- */

static enum MHD_Result h_branches(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				  const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"chain_id", "code", "name", "address", "city",
					   "latitude", "longitude", "active", NULL};
	struct principal p;
	bool ok;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	if (strcmp(method, "GET") == 0) {
		const char *chain = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "chain_id");
		struct cw_scope sc = scope_of(&p);
		struct cw_page pg;
		char cursor[CW_UUID_STRLEN];
		struct cw_branch *rows;
		cJSON *items;
		int n = 0;
		bool more = false;

		if (page_args(c, r, &pg, cursor) < 0)
			return bad_request(c, r);
		if (chain && *chain) {
			if (!kind_ok(chain, S_UUID)) {
				snprintf(r->err, sizeof(r->err), "chain_id: expected a lower-case UUID");
				return bad_request(c, r);
			}
			if (!sees_chain(&p, chain))
				return not_found(c, r, "chain");
			sc.chain_id = chain;
		}
		rows = calloc((size_t)pg.limit, sizeof(*rows));
		if (!rows)
			return send_store_err(c, r, CW_ERR_NOMEM, "branches");
		rc = cw_store_branch_list(a->store, &sc, &pg, rows, &n, &more);
		if (rc != CW_OK) {
			free(rows);
			return send_store_err(c, r, rc, "branches");
		}
		items = cJSON_CreateArray();
		for (int i = 0; i < n; i++)
			cJSON_AddItemToArray(items, branch_json(&rows[i]));
		ret = send_json(c, r, MHD_HTTP_OK, page_json(items, more, n ? rows[n - 1].id : NULL));
		free(rows);
		return ret;
	}
	{
		struct cw_branch b = {.active = true};
		struct cw_chain ch;
		cJSON *body = body_object(r, keys);
		int has_lat, has_lon;

		if (!body)
			return bad_request(c, r);
		if (field_str(r, body, "chain_id", true, 36, S_UUID, b.chain_id, sizeof(b.chain_id)) < 0 ||
		    field_str(r, body, "code", true, 1, S_CODE, b.code, sizeof(b.code)) < 0 ||
		    field_str(r, body, "name", true, 1, S_TEXT, b.name, sizeof(b.name)) < 0 ||
		    field_str(r, body, "address", false, 0, S_TEXT, b.address, sizeof(b.address)) < 0 ||
		    field_str(r, body, "city", false, 0, S_TEXT, b.city, sizeof(b.city)) < 0 ||
		    (has_lat = field_real(r, body, "latitude", -90, 90, &b.latitude)) < 0 ||
		    (has_lon = field_real(r, body, "longitude", -180, 180, &b.longitude)) < 0 ||
		    field_bool(r, body, "active", &b.active) < 0) {
			cJSON_Delete(body);
			return bad_request(c, r);
		}
		cJSON_Delete(body);
		if (has_lat != has_lon) {
			snprintf(r->err, sizeof(r->err), "latitude and longitude go together");
			return bad_request(c, r);
		}
		b.has_location = has_lat == 1;
		/* the chain named in the body is the object authorised */
		if (!sees_chain(&p, b.chain_id))
			return not_found(c, r, "chain");
		if (!admins_chain(&p, b.chain_id))
			return forbidden(c, r);
		rc = cw_store_chain_get(a->store, b.chain_id, &ch);
		if (rc != CW_OK)
			return send_store_err(c, r, rc, "chain");
		cw_uuid_v7(b.id);
		rc = cw_store_branch_create(a->store, &b, cw_wall_ms());
		if (rc == CW_OK)
			rc = cw_store_branch_get(a->store, b.id, &b);
		if (rc != CW_OK)
			return send_store_err(c, r, rc, "branch");
		cw_info("branch.created", "branch=%s chain=%s by=%s", b.id, b.chain_id, p.u.id);
		return send_json(c, r, MHD_HTTP_CREATED, branch_json(&b));
	}
}

/* Loads the branch of the path and checks that the caller sees it. Returns
 * MHD_YES with *ok, or the queued 404/503. */
static enum MHD_Result load_branch(struct cw_cloud_api *a, struct MHD_Connection *c,
				   struct req *r, const struct principal *p, const char *id,
				   struct cw_branch *b, bool *ok)
{
	int rc, err = CW_OK;

	*ok = false;
	if (!kind_ok(id, S_UUID))
		return not_found(c, r, "branch");
	rc = cw_store_branch_get(a->store, id, b);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "branch");
	if (!sees_branch(a, p, b->id, b->chain_id, &err))
		return err != CW_OK ? send_store_err(c, r, err, "branch") : not_found(c, r, "branch");
	*ok = true;
	return MHD_YES;
}

/* A field of a PUT that may be given as null to clear it: 1 present (value
 * or null: *null says which), 0 absent. */
static int field_given(const cJSON *o, const char *key, bool *null)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);

	*null = it && cJSON_IsNull(it);
	return it ? 1 : 0;
}

/* PUT /api/branches/{id}: platform admins, and a chain admin for its chain's
 * branches: {code?, name?, address?, city?, latitude?, longitude?, active?};
 * address and city null clear them, latitude and longitude go together (both
 * null clear the location). active false deactivates the branch: it stays
 * listed (active: false) and its devices keep syncing, but its enrollment
 * codes no longer register devices. 409 when the code is taken in the chain. */
static enum MHD_Result branch_put(struct cw_cloud_api *a, struct MHD_Connection *c,
				  struct req *r, const struct principal *p, struct cw_branch *b)
{
	static const char *const keys[] = {"code",     "name",	    "address", "city",
					   "latitude", "longitude", "active",  NULL};
	bool null_code, null_name, null_addr, null_city, null_lat, null_lon;
	int has_lat, has_lon, rc;
	cJSON *body;

	if (!admins_chain(p, b->chain_id))
		return forbidden(c, r);
	body = body_object(r, keys);
	if (!body)
		return bad_request(c, r);
	has_lat = field_given(body, "latitude", &null_lat);
	has_lon = field_given(body, "longitude", &null_lon);
	if ((field_given(body, "code", &null_code) && null_code) ||
	    (field_given(body, "name", &null_name) && null_name)) {
		snprintf(r->err, sizeof(r->err), "%s: expected a string", null_code ? "code" : "name");
		goto bad;
	}
	if (has_lat != has_lon || null_lat != null_lon) {
		snprintf(r->err, sizeof(r->err), "latitude and longitude go together");
		goto bad;
	}
	if (field_given(body, "address", &null_addr) && null_addr)
		b->address[0] = '\0';
	if (field_given(body, "city", &null_city) && null_city)
		b->city[0] = '\0';
	if (field_str(r, body, "code", false, 1, S_CODE, b->code, sizeof(b->code)) < 0 ||
	    field_str(r, body, "name", false, 1, S_TEXT, b->name, sizeof(b->name)) < 0 ||
	    field_str(r, body, "address", false, 0, S_TEXT, b->address, sizeof(b->address)) < 0 ||
	    field_str(r, body, "city", false, 0, S_TEXT, b->city, sizeof(b->city)) < 0 ||
	    field_real(r, body, "latitude", -90, 90, &b->latitude) < 0 ||
	    field_real(r, body, "longitude", -180, 180, &b->longitude) < 0 ||
	    field_bool(r, body, "active", &b->active) < 0)
		goto bad;
	if (has_lat)
		b->has_location = !null_lat;
	cJSON_Delete(body);
	rc = cw_store_branch_update(a->store, b, cw_wall_ms());
	if (rc == CW_OK)
		rc = cw_store_branch_get(a->store, b->id, b);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "branch");
	cw_info("branch.updated", "branch=%s chain=%s active=%d by=%s", b->id, b->chain_id,
		b->active ? 1 : 0, p->u.id);
	return send_json(c, r, MHD_HTTP_OK, branch_json(b));
bad:
	cJSON_Delete(body);
	return bad_request(c, r);
}

static enum MHD_Result h_branch(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				const char *method, char **seg, int nseg)
{
	struct cw_branch b;
	struct principal p;
	bool ok;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	if (strcmp(method, "PUT") == 0)
		return branch_put(a, c, r, &p, &b);
	return send_json(c, r, MHD_HTTP_OK, branch_json(&b));
}

static enum MHD_Result h_branch_stats(struct cw_cloud_api *a, struct MHD_Connection *c,
				      struct req *r, const char *method, char **seg, int nseg)
{
	struct cw_branch b;
	struct cw_branch_stats st;
	struct principal p;
	cJSON *o, *x;
	int64_t now = cw_wall_ms();
	int64_t midnight = now - now % 86400000LL; /* UTC day */
	bool ok;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	rc = cw_store_branch_stats(a->store, b.id, midnight,
				   now - (int64_t)a->cfg.offline_after_s * 1000, &st);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "branch");
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "branch_id", b.id);
	x = cJSON_AddObjectToObject(o, "carts");
	cJSON_AddNumberToObject(x, "total", (double)st.carts_total);
	cJSON_AddNumberToObject(x, "available", (double)st.carts_available);
	cJSON_AddNumberToObject(x, "rented", (double)st.carts_rented);
	cJSON_AddNumberToObject(x, "maintenance", (double)st.carts_maintenance);
	cJSON_AddNumberToObject(x, "fault", (double)st.carts_fault);
	x = cJSON_AddObjectToObject(o, "rentals");
	cJSON_AddNumberToObject(x, "open", (double)st.rentals_open);
	cJSON_AddNumberToObject(x, "overdue", (double)st.rentals_overdue);
	cJSON_AddNumberToObject(x, "started_today", (double)st.rentals_since);
	x = cJSON_AddObjectToObject(o, "devices");
	cJSON_AddNumberToObject(x, "total", (double)st.devices_total);
	cJSON_AddNumberToObject(x, "online", (double)st.devices_online);
	return send_json(c, r, MHD_HTTP_OK, o);
}

void cw_enroll_hash(const unsigned char key[crypto_generichash_KEYBYTES], const char *code,
		    char out[65])
{
	unsigned char h[32];

	crypto_generichash(h, sizeof(h), (const unsigned char *)code, strlen(code), key,
			   crypto_generichash_KEYBYTES);
	sodium_bin2hex(out, 65, h, sizeof(h));
}

/* An enrollment code as listed: never the code (only its hash is stored,
 * and that is not shown either). active: it would still register a device. */
static cJSON *enrollment_json(const struct cw_enrollment_row *x, int64_t now)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", x->e.id);
	cJSON_AddStringToObject(o, "branch_id", x->e.branch_id);
	add_time(o, "created_at", x->e.created_ms);
	add_time(o, "expires_at", x->e.expires_ms);
	cJSON_AddNumberToObject(o, "uses_left", x->e.uses_left);
	add_opt_str(o, "created_by", x->e.created_by);
	cJSON_AddBoolToObject(o, "active", x->e.uses_left > 0 && x->e.expires_ms > now);
	return o;
}

static int only_args(struct MHD_Connection *c, struct req *r, const char *const *allowed);

/* GET /api/branches/{id}/enrollment-codes (the caller admins the chain). */
static enum MHD_Result enrollment_list(struct cw_cloud_api *a, struct MHD_Connection *c,
				       struct req *r, const struct cw_branch *b)
{
	static const char *const qargs[] = {"limit", "cursor", NULL};
	struct cw_enrollment_row *rows;
	struct cw_page pg;
	char cursor[CW_UUID_STRLEN];
	int64_t now = cw_wall_ms();
	cJSON *items;
	int n = 0, rc;
	bool more = false;
	enum MHD_Result ret;

	if (only_args(c, r, qargs) < 0 || page_args(c, r, &pg, cursor) < 0)
		return bad_request(c, r);
	rows = calloc((size_t)pg.limit, sizeof(*rows));
	if (!rows)
		return send_store_err(c, r, CW_ERR_NOMEM, "enrollment codes");
	rc = cw_store_enrollment_list(a->store, b->id, &pg, rows, &n, &more);
	if (rc != CW_OK) {
		free(rows);
		return send_store_err(c, r, rc, "enrollment codes");
	}
	items = cJSON_CreateArray();
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(items, enrollment_json(&rows[i], now));
	ret = send_json(c, r, MHD_HTTP_OK, page_json(items, more, n ? rows[n - 1].e.id : NULL));
	free(rows);
	return ret;
}

static enum MHD_Result h_enrollment_codes(struct cw_cloud_api *a, struct MHD_Connection *c,
					  struct req *r, const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"uses", "expires_in_s", NULL};
	unsigned char raw[ENROLL_CODE_BYTES];
	char code[ENROLL_CODE_BYTES * 2 + 1];
	struct cw_enrollment e = {.uses_left = 1};
	struct cw_branch b;
	struct principal p;
	long uses = 1, ttl = 86400;
	cJSON *body, *o;
	bool ok;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	if (!admins_chain(&p, b.chain_id))
		return forbidden(c, r);
	if (strcmp(method, "GET") == 0)
		return enrollment_list(a, c, r, &b);
	/* an empty body takes the defaults */
	if (r->len) {
		body = body_object(r, keys);
		if (!body)
			return bad_request(c, r);
		if (field_int(r, body, "uses", 1, ENROLL_USES_MAX, &uses) < 0 ||
		    field_int(r, body, "expires_in_s", 60, ENROLL_TTL_MAX_S, &ttl) < 0) {
			cJSON_Delete(body);
			return bad_request(c, r);
		}
		cJSON_Delete(body);
	}
	/* the code is shown once, here; only its keyed hash is stored */
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(code, sizeof(code), raw, sizeof(raw));
	cw_uuid_v7(e.id);
	memcpy(e.branch_id, b.id, sizeof(e.branch_id));
	memcpy(e.created_by, p.u.id, sizeof(e.created_by));
	cw_enroll_hash(a->enroll_key, code, e.code_hash);
	e.created_ms = cw_wall_ms();
	e.expires_ms = e.created_ms + ttl * 1000;
	e.uses_left = (int)uses;
	rc = cw_store_enrollment_create(a->store, &e);
	if (rc != CW_OK) {
		sodium_memzero(code, sizeof(code));
		return send_store_err(c, r, rc, "enrollment code");
	}
	cw_info("enrollment.created", "id=%s branch=%s uses=%d by=%s", e.id, b.id, e.uses_left,
		p.u.id);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", e.id);
	cJSON_AddStringToObject(o, "branch_id", b.id);
	cJSON_AddStringToObject(o, "branch_code", b.code);
	cJSON_AddStringToObject(o, "code", code);
	cJSON_AddNumberToObject(o, "uses", e.uses_left);
	add_time(o, "expires_at", e.expires_ms);
	sodium_memzero(code, sizeof(code));
	return send_json(c, r, MHD_HTTP_CREATED, o);
}

/* ---- devices ---- */

/* "aa:bb:cc:dd:ee:ff" or with '-' -> "AA:BB:CC:DD:EE:FF"; false if not a MAC. */
static bool mac_normalise(const char *in, char out[CW_MAC_MAX])
{
	if (strlen(in) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		char ch = in[i];
		if (i % 3 == 2) {
			if (ch != ':' && ch != '-')
				return false;
			out[i] = ':';
			continue;
		}
		if (ch >= 'a' && ch <= 'f')
			ch = (char)(ch - 'a' + 'A');
		if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F')))
			return false;
		out[i] = ch;
	}
	out[17] = '\0';
	return true;
}

/* "mqtt_config" of the registration and token rotation answers
 * (docs/SYNC.md "MQTT"): where the broker is, the device's topic prefix, and
 * its credentials (user = device id, password derived from the signing key),
 * or null without a broker. */
static void add_mqtt_config(struct cw_cloud_api *a, cJSON *o, const struct cw_device *d)
{
	char topic[256], pw[CW_MQTT_PASSWORD_LEN + 1];
	cJSON *m;

	if (!a->cfg.mqtt_host[0]) {
		cJSON_AddNullToObject(o, "mqtt_config");
		return;
	}
	m = cJSON_AddObjectToObject(o, "mqtt_config");
	cJSON_AddStringToObject(m, "broker", a->cfg.mqtt_host);
	cJSON_AddNumberToObject(m, "port", a->cfg.mqtt_port);
	cJSON_AddBoolToObject(m, "tls", a->cfg.mqtt_tls);
	/* seed topic layout: cartwise/{chain}/{branch}/devices/{device} */
	snprintf(topic, sizeof(topic), "cartwise/%s/%s/devices/%s", d->chain_id, d->branch_id,
		 d->id);
	cJSON_AddStringToObject(m, "topic", topic);
	cJSON_AddStringToObject(m, "username", d->id);
	cw_mqtt_device_password(a->sk, d->id, pw);
	cJSON_AddStringToObject(m, "password", pw);
	sodium_memzero(pw, sizeof(pw));
}

static enum MHD_Result h_register(struct cw_cloud_api *a, struct MHD_Connection *c,
				  struct req *r, const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"mac_address", "serial_number", "branch_code",
					   "enrollment_code", "device_name", NULL};
	char mac_in[32], mac[CW_MAC_MAX], serial[CW_SERIAL_MAX] = "", bcode[CW_CODE_MAX];
	char code[64], name[CW_DEVNAME_MAX] = "", hash[65], dev_id[CW_UUID_STRLEN];
	char jti[CW_UUID_STRLEN], *tok = NULL;
	struct cw_device d;
	struct cw_register_req rq;
	int64_t exp_s = 0, now = cw_wall_ms();
	cJSON *body = body_object(r, keys), *o;
	int rc;
	enum MHD_Result ret;

	if (!body)
		return bad_request(c, r);
	if (field_str(r, body, "mac_address", true, 17, S_PRINT, mac_in, sizeof(mac_in)) < 0 ||
	    field_str(r, body, "serial_number", false, 0, S_PRINT, serial, sizeof(serial)) < 0 ||
	    field_str(r, body, "branch_code", true, 1, S_CODE, bcode, sizeof(bcode)) < 0 ||
	    field_str(r, body, "enrollment_code", true, 1, S_CODE, code, sizeof(code)) < 0 ||
	    field_str(r, body, "device_name", false, 1, S_TEXT, name, sizeof(name)) < 0) {
		cJSON_Delete(body);
		return bad_request(c, r);
	}
	cJSON_Delete(body);
	if (!mac_normalise(mac_in, mac)) {
		snprintf(r->err, sizeof(r->err), "mac_address: expected AA:BB:CC:DD:EE:FF");
		return bad_request(c, r);
	}
	if (!name[0])
		snprintf(name, sizeof(name), "%s", serial[0] ? serial : mac);
	for (char *p = code; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	cw_enroll_hash(a->enroll_key, code, hash);
	sodium_memzero(code, sizeof(code));
	cw_uuid_v7(dev_id);
	cw_uuid_v7(jti);
	rq = (struct cw_register_req){.branch_code = bcode,
				      .code_hash = hash,
				      .mac_address = mac,
				      .serial_number = serial,
				      .device_name = name,
				      .new_device_id = dev_id,
				      .token_jti = jti,
				      .now_ms = now,
				      .token_expires_ms = now + (int64_t)a->cfg.device_token_ttl_s * 1000};
	rc = cw_store_device_register(a->store, &rq, &d);
	if (rc == CW_ERR_AUTH) {
		cw_info("device.register_refused", "ip=%s reason=code", r->ip);
		return send_error(c, r, MHD_HTTP_FORBIDDEN, "enrollment_refused",
				  "unknown, expired or used-up enrollment code for this branch code");
	}
	if (rc == CW_ERR_CONFLICT)
		return send_error(c, r, MHD_HTTP_CONFLICT, "conflict",
				  "this MAC address is registered in another branch");
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "device");
	rc = sign_token(a, CW_JWT_TYP_DEVICE, d.id, jti, a->cfg.device_token_ttl_s, &tok, &exp_s);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "token");
	cw_info("device.registered", "device=%s branch=%s chain=%s", d.id, d.branch_id, d.chain_id);
	/* its broker user appears in mqtt.passwd_out */
	cw_cloud_mqtt_devices_changed(a->mqtt);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "device_id", d.id);
	cJSON_AddStringToObject(o, "branch_id", d.branch_id);
	cJSON_AddStringToObject(o, "chain_id", d.chain_id);
	cJSON_AddStringToObject(o, "device_token", tok);
	add_time(o, "token_expires_at", exp_s * 1000);
	cJSON_AddStringToObject(o, "cloud_public_key", a->pk_b64);
	add_mqtt_config(a, o, &d);
	ret = send_json(c, r, MHD_HTTP_CREATED, o);
	free(tok);
	return ret;
}

/* Authenticates a device caller for the device of the path: a valid device
 * token whose subject is that device and whose jti is not revoked. */
static enum MHD_Result device_caller(struct cw_cloud_api *a, struct MHD_Connection *c,
				     struct req *r, const char *path_id, char jti_out[CW_UUID_STRLEN],
				     bool *ok)
{
	cJSON *claims = NULL;
	const char *sub, *jti;
	int rc;

	*ok = false;
	if (verify_token(a, c, CW_JWT_TYP_DEVICE, &claims) != CW_OK)
		return send_error(c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
				  "a valid device token is required");
	sub = claim_str(claims, "sub");
	jti = claim_str(claims, "jti");
	if (!sub || !jti || !kind_ok(sub, S_UUID)) {
		cJSON_Delete(claims);
		return send_error(c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
				  "a valid device token is required");
	}
	if (strcmp(sub, path_id) != 0) {
		cJSON_Delete(claims);
		return send_error(c, r, MHD_HTTP_FORBIDDEN, "forbidden",
				  "a device may only act as itself");
	}
	rc = cw_store_device_token_check(a->store, jti, sub);
	if (rc == CW_OK && jti_out)
		snprintf(jti_out, CW_UUID_STRLEN, "%s", jti);
	cJSON_Delete(claims);
	if (rc == CW_ERR_AUTH) {
		cw_info("auth.refused", "want=device reason=revoked");
		return send_error(c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
				  "this device token was revoked");
	}
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "device");
	*ok = true;
	return MHD_YES;
}

static char *command_token(struct cw_cloud_api *a, const struct cw_command *x);

/* One element of the heartbeat's "commands", which is also the payload of
 * the commands topic (docs/SYNC.md "MQTT"): the plain fields for reading, the
 * token for the edge to verify (docs/SYNC.md "Commands"). A command that
 * cannot be signed is not handed out (NULL). */
static cJSON *command_element(struct cw_cloud_api *a, const struct cw_command *x)
{
	char *tok = command_token(a, x);
	cJSON *cj;

	if (!tok) {
		cw_error("command.sign", "command=%s", x->id);
		return NULL;
	}
	cj = command_json(x);
	cJSON_AddStringToObject(cj, "token", tok);
	free(tok);
	return cj;
}

/* A new command goes out on MQTT at once when the link is up; the heartbeat
 * keeps offering it until a result arrives or it expires. The branch's live
 * streams hear of it either way. */
static void publish_command(struct cw_cloud_api *a, const struct cw_command *x)
{
	cJSON *cj;
	char *text;

	cw_events_publish(a->events, x->branch_id, CW_EVENT_COMMANDS);
	if (!a->mqtt || !(cj = command_element(a, x)))
		return;
	text = cJSON_PrintUnformatted(cj);
	cw_cloud_mqtt_command(a->mqtt, x, text);
	cJSON_free(text);
	cJSON_Delete(cj);
}

static enum MHD_Result h_heartbeat(struct cw_cloud_api *a, struct MHD_Connection *c,
				   struct req *r, const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"status", "firmware_version", "health", NULL};
	char status[CW_STATUS_MAX] = "online", fw[CW_FIRMWARE_MAX] = "", *health = NULL;
	char branch[CW_UUID_STRLEN] = "";
	unsigned kinds = 0; /* what the branch's live streams hear of */
	struct cw_command *cmds = NULL;
	struct cw_heartbeat hb;
	const cJSON *h;
	cJSON *body = NULL, *o, *arr;
	int64_t cfg_version = 0;
	int n = 0, rc;
	bool ok;
	enum MHD_Result ret = device_caller(a, c, r, seg[2], NULL, &ok);

	if (!ok)
		return ret;
	/* an empty body is a plain "I am alive" */
	if (r->len) {
		body = body_object(r, keys);
		if (!body)
			return bad_request(c, r);
	}
	if (body && (field_str(r, body, "status", false, 1, S_CODE, status, sizeof(status)) < 0 ||
		     field_str(r, body, "firmware_version", false, 1, S_PRINT, fw, sizeof(fw)) < 0)) {
		ret = bad_request(c, r);
		goto out;
	}
	if (strcmp(status, "online") != 0 && strcmp(status, "degraded") != 0 &&
	    strcmp(status, "maintenance") != 0) {
		snprintf(r->err, sizeof(r->err), "status: expected online, degraded or maintenance");
		ret = bad_request(c, r);
		goto out;
	}
	h = body ? cJSON_GetObjectItemCaseSensitive(body, "health") : NULL;
	if (h) {
		if (!cJSON_IsObject(h)) {
			snprintf(r->err, sizeof(r->err), "health: expected an object");
			ret = bad_request(c, r);
			goto out;
		}
		health = cJSON_PrintUnformatted(h);
		if (!health || strlen(health) > CW_JSON_IN_MAX) {
			snprintf(r->err, sizeof(r->err), "health: at most %d bytes of JSON",
				 CW_JSON_IN_MAX);
			ret = health ? send_error(c, r, MHD_HTTP_CONTENT_TOO_LARGE, "too_big", "%s",
						  r->err)
				     : send_store_err(c, r, CW_ERR_NOMEM, "health");
			goto out;
		}
	}
	hb = (struct cw_heartbeat){.status = status, .firmware = fw[0] ? fw : NULL,
				   .health = health, .now_ms = cw_wall_ms()};
	rc = cw_store_device_heartbeat(a->store, seg[2], &hb, branch);
	if (rc != CW_OK) {
		ret = send_store_err(c, r, rc, "device");
		goto out;
	}
	kinds = CW_EVENT_DEVICES;
	cmds = calloc(HEARTBEAT_COMMANDS_MAX, sizeof(*cmds));
	if (!cmds) {
		ret = send_store_err(c, r, CW_ERR_NOMEM, "commands");
		goto out;
	}
	rc = cw_store_commands_for_device(a->store, seg[2], hb.now_ms, cmds,
					  HEARTBEAT_COMMANDS_MAX, &n);
	if (rc != CW_OK) {
		ret = send_store_err(c, r, rc, "commands");
		goto out;
	}
	if (n > 0) /* handed out: pending -> delivered */
		kinds |= CW_EVENT_COMMANDS;
	/* the newest configuration version: the edge pulls when it differs
	 * from the one it runs (docs/SYNC.md "Down: configuration") */
	rc = cw_store_device_config_version(a->store, seg[2], &cfg_version);
	if (rc != CW_OK) {
		ret = send_store_err(c, r, rc, "configuration");
		goto out;
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "status", "ok");
	add_time(o, "server_time", hb.now_ms);
	cJSON_AddNumberToObject(o, "config_version", (double)cfg_version);
	arr = cJSON_AddArrayToObject(o, "commands");
	for (int i = 0; i < n; i++) {
		cJSON *cj = command_element(a, &cmds[i]);
		if (cj)
			cJSON_AddItemToArray(arr, cj);
	}
	ret = send_json(c, r, MHD_HTTP_OK, o);
out:
	if (kinds)
		cw_events_publish(a->events, branch, kinds);
	free(cmds);
	cJSON_free(health);
	cJSON_Delete(body);
	return ret;
}

/* POST /api/devices/{id}/token: the device trades its live token for a new
 * one (rotation); the old one and any other stop working at once. */
static enum MHD_Result h_device_token(struct cw_cloud_api *a, struct MHD_Connection *c,
				      struct req *r, const char *method, char **seg, int nseg)
{
	char old[CW_UUID_STRLEN], jti[CW_UUID_STRLEN], *tok = NULL;
	int64_t exp_s = 0, now = cw_wall_ms();
	struct cw_device d;
	cJSON *o;
	bool ok;
	int rc;
	enum MHD_Result ret = device_caller(a, c, r, seg[2], old, &ok);

	if (!ok)
		return ret;
	if (r->len) {
		static const char *const none[] = {NULL};
		cJSON *body = body_object(r, none);
		if (!body)
			return bad_request(c, r);
		cJSON_Delete(body);
	}
	/* read before the rotation: once the old token is revoked, the answer
	 * must not fail for want of the device's chain and branch */
	rc = cw_store_device_get(a->store, seg[2], &d);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "device");
	cw_uuid_v7(jti);
	rc = sign_token(a, CW_JWT_TYP_DEVICE, seg[2], jti, a->cfg.device_token_ttl_s, &tok, &exp_s);
	if (rc == CW_OK)
		rc = cw_store_device_token_rotate(a->store, seg[2], old, jti, now, exp_s * 1000);
	if (rc == CW_ERR_AUTH) {
		free(tok);
		return send_error(c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
				  "this device token was revoked");
	}
	if (rc != CW_OK) {
		free(tok);
		return send_store_err(c, r, rc, "device");
	}
	cw_info("device.token_rotated", "device=%s", seg[2]);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "device_id", seg[2]);
	cJSON_AddStringToObject(o, "device_token", tok);
	add_time(o, "token_expires_at", exp_s * 1000);
	/* a broker configured later, or moved, reaches the device here */
	add_mqtt_config(a, o, &d);
	ret = send_json(c, r, MHD_HTTP_OK, o);
	free(tok);
	return ret;
}

/* Loads the device of the path for a staff caller who sees its branch. */
static enum MHD_Result load_device(struct cw_cloud_api *a, struct MHD_Connection *c,
				   struct req *r, const struct principal *p, const char *id,
				   struct cw_device *d, bool *ok)
{
	int rc, err = CW_OK;

	*ok = false;
	if (!kind_ok(id, S_UUID))
		return not_found(c, r, "device");
	rc = cw_store_device_get(a->store, id, d);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "device");
	if (!sees_branch(a, p, d->branch_id, d->chain_id, &err))
		return err != CW_OK ? send_store_err(c, r, err, "device") : not_found(c, r, "device");
	*ok = true;
	return MHD_YES;
}

static enum MHD_Result h_device(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				const char *method, char **seg, int nseg)
{
	struct cw_device d;
	struct principal p;
	bool ok;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_device(a, c, r, &p, seg[2], &d, &ok);
	if (!ok)
		return ret;
	if (nseg == 4) { /* /status: the live part only */
		cJSON *o = cJSON_CreateObject();
		const char *st = device_status(a, &d);
		cJSON_AddStringToObject(o, "id", d.id);
		cJSON_AddStringToObject(o, "status", st);
		cJSON_AddBoolToObject(o, "online", strcmp(st, "offline") != 0);
		add_time(o, "last_heartbeat", d.last_heartbeat_ms);
		add_opt_str(o, "firmware_version", d.firmware_version);
		add_health(o, d.health);
		return send_json(c, r, MHD_HTTP_OK, o);
	}
	return send_json(c, r, MHD_HTTP_OK, device_json(a, &d));
}

static enum MHD_Result h_device_revoke(struct cw_cloud_api *a, struct MHD_Connection *c,
				       struct req *r, const char *method, char **seg, int nseg)
{
	struct cw_device d;
	struct principal p;
	bool ok;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_device(a, c, r, &p, seg[2], &d, &ok);
	if (!ok)
		return ret;
	if (!admins_chain(&p, d.chain_id))
		return forbidden(c, r);
	if (r->len) {
		static const char *const none[] = {NULL};
		cJSON *body = body_object(r, none);
		if (!body)
			return bad_request(c, r);
		cJSON_Delete(body);
	}
	rc = cw_store_device_tokens_revoke(a->store, d.id, cw_wall_ms());
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "device");
	cw_info("device.tokens_revoked", "device=%s by=%s", d.id, p.u.id);
	/* and its broker user leaves mqtt.passwd_out */
	cw_cloud_mqtt_devices_changed(a->mqtt);
	return send_json(c, r, MHD_HTTP_OK, device_json(a, &d));
}

/* PUT /api/devices/{id}/firmware: asks the device to install a firmware
 * version. Like every action on a device it is a command (202 + its id),
 * handed to the device by heartbeat (and by MQTT, issue 4). */
static enum MHD_Result h_device_firmware(struct cw_cloud_api *a, struct MHD_Connection *c,
					 struct req *r, const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"version", "url", "sha256", NULL};
	char version[CW_FIRMWARE_MAX], url[512] = "", sha[65] = "";
	struct cw_command *cmd = NULL;
	struct cw_device d;
	struct principal p;
	cJSON *body = NULL, *args = NULL;
	char *args_text = NULL;
	bool ok;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_device(a, c, r, &p, seg[2], &d, &ok);
	if (!ok)
		return ret;
	if (!admins_chain(&p, d.chain_id))
		return forbidden(c, r);
	body = body_object(r, keys);
	if (!body)
		return bad_request(c, r);
	if (field_str(r, body, "version", true, 1, S_PRINT, version, sizeof(version)) < 0 ||
	    field_str(r, body, "url", false, 1, S_PRINT, url, sizeof(url)) < 0 ||
	    field_str(r, body, "sha256", false, 64, S_CODE, sha, sizeof(sha)) < 0) {
		ret = bad_request(c, r);
		goto out;
	}
	if (url[0] && strncmp(url, "https://", 8) != 0) {
		snprintf(r->err, sizeof(r->err), "url: only https:// URLs");
		ret = bad_request(c, r);
		goto out;
	}
	if (sha[0] && strspn(sha, "0123456789abcdef") != 64) {
		snprintf(r->err, sizeof(r->err), "sha256: expected 64 lower-case hex characters");
		ret = bad_request(c, r);
		goto out;
	}
	args = cJSON_CreateObject();
	cJSON_AddStringToObject(args, "version", version);
	if (url[0])
		cJSON_AddStringToObject(args, "url", url);
	if (sha[0])
		cJSON_AddStringToObject(args, "sha256", sha);
	args_text = cJSON_PrintUnformatted(args);
	cmd = calloc(1, sizeof(*cmd));
	if (!args_text || !cmd || strlen(args_text) >= sizeof(cmd->args)) {
		ret = send_store_err(c, r, CW_ERR_NOMEM, "command");
		goto out;
	}
	cw_uuid_v7(cmd->id);
	memcpy(cmd->device_id, d.id, sizeof(cmd->device_id));
	snprintf(cmd->action, sizeof(cmd->action), "firmware_update");
	memcpy(cmd->args, args_text, strlen(args_text) + 1);
	memcpy(cmd->created_by, p.u.id, sizeof(cmd->created_by));
	cmd->created_ms = cw_wall_ms();
	cmd->expires_ms = cmd->created_ms + FIRMWARE_COMMAND_TTL_MS;
	rc = cw_store_command_create(a->store, cmd);
	if (rc == CW_OK)
		rc = cw_store_command_get(a->store, cmd->id, cmd);
	if (rc != CW_OK) {
		ret = send_store_err(c, r, rc, "command");
		goto out;
	}
	cw_info("command.created", "command=%s device=%s action=firmware_update by=%s", cmd->id,
		d.id, p.u.id);
	publish_command(a, cmd);
	ret = send_json(c, r, MHD_HTTP_ACCEPTED, command_json(cmd));
out:
	free(cmd);
	cJSON_free(args_text);
	cJSON_Delete(args);
	cJSON_Delete(body);
	return ret;
}

/* privacy.phone_visible_roles: whether the caller's role sees customers'
 * phone numbers in full (docs/CLOUD.md "Decisions": chain admins only, by
 * default). */
static bool sees_phones(const struct cw_cloud_api *a, const struct principal *p)
{
	return (a->cfg.phone_visible_roles >> p->u.role) & 1u;
}

/* A phone as other roles see it: the leading '+' and the last 3 digits
 * kept, every other character '*' ("+972501234567" -> "+*********567"). */
static void phone_mask(const char *in, char out[CW_PHONE_MAX])
{
	size_t n = strnlen(in, CW_PHONE_MAX - 1);
	int keep = 3;

	for (size_t i = n; i-- > 0;) {
		if (i == 0 && in[i] == '+') {
			out[i] = '+';
		} else if (keep > 0 && in[i] >= '0' && in[i] <= '9') {
			out[i] = in[i];
			keep--;
		} else {
			out[i] = '*';
		}
	}
	out[n] = '\0';
}

/* "phone" in full or masked, and "phone_masked" saying which. */
static void add_phone(cJSON *o, const char *phone, bool mask)
{
	char m[CW_PHONE_MAX];

	if (mask)
		phone_mask(phone, m);
	cJSON_AddStringToObject(o, "phone", mask ? m : phone);
	cJSON_AddBoolToObject(o, "phone_masked", mask);
}

/* Masks the string "phone" of an object (a command's args, a telemetry
 * event's data, sent by the edge) and sets "phone_masked": true; the rest
 * is left alone. */
static void mask_phone_key(cJSON *o)
{
	cJSON *phone = cJSON_GetObjectItemCaseSensitive(o, "phone");

	if (!cJSON_IsObject(o) || !cJSON_IsString(phone))
		return;
	cJSON_DetachItemViaPointer(o, phone);
	cJSON_DeleteItemFromObjectCaseSensitive(o, "phone_masked"); /* a device's own, if any */
	add_phone(o, phone->valuestring, true);
	cJSON_Delete(phone);
}

/* A command as a staff member reads it: a cart_assign's phone masked as in
 * rentals for the roles that do not see phones. */
static cJSON *command_json_for(const struct cw_cloud_api *a, const struct principal *p,
			       const struct cw_command *x)
{
	cJSON *o = command_json(x);

	if (!sees_phones(a, p))
		mask_phone_key(cJSON_GetObjectItemCaseSensitive(o, "args"));
	return o;
}

static enum MHD_Result h_command(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				 const char *method, char **seg, int nseg)
{
	struct cw_command *cmd;
	struct principal p;
	bool ok;
	int rc, err = CW_OK;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	if (!kind_ok(seg[2], S_UUID))
		return not_found(c, r, "command");
	cmd = calloc(1, sizeof(*cmd));
	if (!cmd)
		return send_store_err(c, r, CW_ERR_NOMEM, "command");
	rc = cw_store_command_get(a->store, seg[2], cmd);
	if (rc != CW_OK)
		ret = send_store_err(c, r, rc, "command");
	else if (!sees_branch(a, &p, cmd->branch_id, cmd->chain_id, &err))
		ret = err != CW_OK ? send_store_err(c, r, err, "command") : not_found(c, r, "command");
	else
		ret = send_json(c, r, MHD_HTTP_OK, command_json_for(a, &p, cmd));
	free(cmd);
	return ret;
}

/* ---- query arguments: time ranges, filters ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), so that no timegm() or TZ is involved. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* RFC 3339 date-time (section 5.6): YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM),
 * years 1970..9999, into ms since the epoch. A '+' of the offset arrives as
 * a space when the client did not percent-encode it in the query (form
 * encoding), so a space there is read as '+'. */
bool cw_cloud_rfc3339_ms(const char *s, int64_t *out)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec, oh = 0, om = 0, ms = 0, sign = 0;
	const char *p;
	int64_t t;

	if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &sec))
		return false;
	p = s + 19;
	if (*p == '.') {
		int n = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, n++)
			if (n < 3)
				ms = ms * 10 + (*p - '0');
		if (n == 0)
			return false;
		for (; n < 3; n++)
			ms *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-' || *p == ' ') {
		sign = *p == '-' ? -1 : 1;
		if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 ||
		    om > 59)
			return false;
		p += 6;
	} else {
		return false;
	}
	if (*p || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) || h > 23 ||
	    mi > 59 || sec > 60)
		return false;
	if (sec == 60)
		sec = 59; /* a leap second reads as the second before it */
	t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
	t -= (int64_t)sign * (oh * 3600 + om * 60);
	t = t * 1000 + ms;
	if (t < CW_TIME_MIN_MS || t > CW_TIME_MAX_MS)
		return false;
	*out = t;
	return true;
}

/* from / to (RFC 3339) of the query: the range [from, to). Absent: the
 * defaults given. */
static int range_args(struct MHD_Connection *c, struct req *r, int64_t def_from, int64_t def_to,
		      int64_t *from, int64_t *to)
{
	const char *f = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "from");
	const char *t = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "to");

	*from = def_from;
	*to = def_to;
	if (f && !cw_cloud_rfc3339_ms(f, from)) {
		snprintf(r->err, sizeof(r->err), "from: expected an RFC 3339 date-time such as "
						 "2026-01-31T08:00:00Z (years 1970..9999)");
		return -1;
	}
	if (t && !cw_cloud_rfc3339_ms(t, to)) {
		snprintf(r->err, sizeof(r->err), "to: expected an RFC 3339 date-time such as "
						 "2026-01-31T08:00:00Z (years 1970..9999)");
		return -1;
	}
	if (*from > *to) {
		snprintf(r->err, sizeof(r->err), "from: must not be after to");
		return -1;
	}
	return 0;
}

/* A query argument that must be one of a list; NULL when absent. */
static int enum_arg(struct MHD_Connection *c, struct req *r, const char *key,
		    const char *const *allowed, const char **out)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);

	*out = NULL;
	if (!v)
		return 0;
	for (const char *const *a = allowed; *a; a++) {
		if (strcmp(*a, v) == 0) {
			*out = *a;
			return 0;
		}
	}
	snprintf(r->err, sizeof(r->err), "%s: not one of the allowed values", key);
	return -1;
}

/* Only these query arguments are taken; anything else is 400 (a typo such
 * as "stauts" must not silently list everything). */
static int only_args(struct MHD_Connection *c, struct req *r, const char *const *allowed);

struct args_check {
	const char *const *allowed;
	bool bad;
	char name[48];
};

static enum MHD_Result arg_iter(void *cls, enum MHD_ValueKind kind, const char *key,
				const char *value)
{
	struct args_check *ac = cls;
	bool known = false;

	(void)kind;
	(void)value;
	for (const char *const *a = ac->allowed; *a && !known; a++)
		known = strcmp(*a, key) == 0;
	if (!known && !ac->bad) {
		ac->bad = true;
		if (kind_ok(key, S_CODE) && strlen(key) < sizeof(ac->name))
			snprintf(ac->name, sizeof(ac->name), "%s", key);
	}
	return MHD_YES;
}

static int only_args(struct MHD_Connection *c, struct req *r, const char *const *allowed)
{
	struct args_check ac = {.allowed = allowed};

	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, arg_iter, &ac);
	if (!ac.bad)
		return 0;
	if (ac.name[0])
		snprintf(r->err, sizeof(r->err), "unknown query parameter '%s'", ac.name);
	else
		snprintf(r->err, sizeof(r->err), "unknown query parameter");
	return -1;
}

/* A phone number as the kiosk stores it: optional '+', then 4..19 digits. */
static bool phone_ok(const char *s)
{
	size_t n = strlen(s), i = s[0] == '+' ? 1 : 0;

	if (n - i < 4 || n >= CW_PHONE_MAX)
		return false;
	for (; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static const char *const cart_states[] = {"available", "rented",	"awaiting-return",
					  "maintenance", "fault", "offline", NULL};
static const char *const rental_states[] = {"active", "overdue", "returned", "returned-late",
					    "cancelled", NULL};

/* ---- carts (branch-scoped) ---- */

static cJSON *cart_json(const struct cw_cart *x)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", x->id);
	cJSON_AddStringToObject(o, "branch_id", x->branch_id);
	add_opt_str(o, "device_id", x->device_id);
	add_opt_str(o, "controller_id", x->controller_id);
	cJSON_AddNumberToObject(o, "cart_number", (double)x->cart_number);
	cJSON_AddNumberToObject(o, "locker_id", (double)x->locker_id);
	cJSON_AddStringToObject(o, "status", x->status);
	cJSON_AddBoolToObject(o, "is_locked", x->is_locked);
	add_time(o, "last_used", x->last_used_ms);
	add_opt_str(o, "maintenance_notes", x->maintenance_notes);
	add_time(o, "updated_at", x->updated_ms);
	/* the board of the cart grid (device_id -> bus_index, board) */
	if (x->bus_index >= 0)
		cJSON_AddNumberToObject(o, "bus_index", (double)x->bus_index);
	else
		cJSON_AddNullToObject(o, "bus_index");
	if (x->board >= 0)
		cJSON_AddNumberToObject(o, "board", (double)x->board);
	else
		cJSON_AddNullToObject(o, "board");
	if (x->board_online >= 0)
		cJSON_AddBoolToObject(o, "board_online", x->board_online == 1);
	else
		cJSON_AddNullToObject(o, "board_online");
	return o;
}

static enum MHD_Result h_carts(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
			       const char *method, char **seg, int nseg)
{
	static const char *const qargs[] = {"limit", "cursor", "status", NULL};
	struct cw_branch b;
	struct principal p;
	struct cw_page pg;
	char cursor[CW_UUID_STRLEN];
	const char *status = NULL;
	struct cw_cart *rows;
	cJSON *items;
	int n = 0, rc;
	bool ok, more = false;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	if (only_args(c, r, qargs) < 0 || page_args(c, r, &pg, cursor) < 0 ||
	    enum_arg(c, r, "status", cart_states, &status) < 0)
		return bad_request(c, r);
	rows = calloc((size_t)pg.limit, sizeof(*rows));
	if (!rows)
		return send_store_err(c, r, CW_ERR_NOMEM, "carts");
	rc = cw_store_cart_list(a->store, b.id, status, &pg, rows, &n, &more);
	if (rc != CW_OK) {
		free(rows);
		return send_store_err(c, r, rc, "carts");
	}
	items = cJSON_CreateArray();
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(items, cart_json(&rows[i]));
	ret = send_json(c, r, MHD_HTTP_OK, page_json(items, more, n ? rows[n - 1].id : NULL));
	free(rows);
	return ret;
}

/* Loads cart id of branch b: a cart of another branch is not found here. */
static enum MHD_Result load_cart(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				 const struct cw_branch *b, const char *id, struct cw_cart *cart,
				 bool *ok)
{
	int rc;

	*ok = false;
	if (!kind_ok(id, S_UUID))
		return not_found(c, r, "cart");
	rc = cw_store_cart_get(a->store, id, cart);
	if (rc == CW_OK && strcmp(cart->branch_id, b->id) != 0)
		rc = CW_ERR_NOTFOUND;
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "cart");
	*ok = true;
	return MHD_YES;
}

static enum MHD_Result h_cart(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
			      const char *method, char **seg, int nseg)
{
	struct cw_branch b;
	struct cw_cart *cart;
	struct principal p;
	bool ok;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	cart = calloc(1, sizeof(*cart));
	if (!cart)
		return send_store_err(c, r, CW_ERR_NOMEM, "cart");
	ret = load_cart(a, c, r, &b, seg[4], cart, &ok);
	if (ok)
		ret = send_json(c, r, MHD_HTTP_OK, cart_json(cart));
	free(cart);
	return ret;
}

/* POST /api/branches/{branch_id}/carts/assign | return: a command to the
 * device that owns the cart (BRIEF.md §5). Nothing changes here: the device
 * executes it at most once and reports the result; until then the cart's
 * state is what the device last reported. Any staff member who sees the
 * branch may send it (the seed's branch dashboard sends commands). */
static enum MHD_Result h_cart_command(struct cw_cloud_api *a, struct MHD_Connection *c,
				      struct req *r, const char *method, char **seg, int nseg)
{
	static const char *const assign_keys[] = {"cart_id", "phone", "expires_in_s", NULL};
	static const char *const return_keys[] = {"cart_id", "expires_in_s", NULL};
	bool assign = strcmp(seg[4], "assign") == 0;
	char cart_id[CW_UUID_STRLEN], phone[CW_PHONE_MAX] = "";
	struct cw_command *cmd = NULL;
	struct cw_cart *cart = NULL;
	struct cw_branch b;
	struct principal p;
	cJSON *body = NULL, *args = NULL;
	char *args_text = NULL;
	long ttl = CART_COMMAND_TTL_S;
	bool ok;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	body = body_object(r, assign ? assign_keys : return_keys);
	if (!body)
		return bad_request(c, r);
	if (field_str(r, body, "cart_id", true, 36, S_UUID, cart_id, sizeof(cart_id)) < 0 ||
	    (assign && field_str(r, body, "phone", true, 1, S_PRINT, phone, sizeof(phone)) < 0) ||
	    field_int(r, body, "expires_in_s", CART_COMMAND_TTL_MIN_S, CART_COMMAND_TTL_MAX_S,
		      &ttl) < 0) {
		ret = bad_request(c, r);
		goto out;
	}
	if (assign && !phone_ok(phone)) {
		snprintf(r->err, sizeof(r->err), "phone: expected an optional '+' and 4 to %d digits",
			 CW_PHONE_MAX - 1);
		ret = bad_request(c, r);
		goto out;
	}
	cart = calloc(1, sizeof(*cart));
	cmd = calloc(1, sizeof(*cmd));
	if (!cart || !cmd) {
		ret = send_store_err(c, r, CW_ERR_NOMEM, "command");
		goto out;
	}
	ret = load_cart(a, c, r, &b, cart_id, cart, &ok);
	if (!ok)
		goto out;
	if (!cart->device_id[0]) {
		ret = send_error(c, r, MHD_HTTP_CONFLICT, "conflict",
				 "this cart has no device (no controller) to send the command to");
		goto out;
	}
	args = cJSON_CreateObject();
	cJSON_AddStringToObject(args, "cart_id", cart->id);
	cJSON_AddNumberToObject(args, "cart_number", (double)cart->cart_number);
	cJSON_AddNumberToObject(args, "locker_id", (double)cart->locker_id);
	if (assign)
		cJSON_AddStringToObject(args, "phone", phone);
	args_text = cJSON_PrintUnformatted(args);
	if (!args_text || strlen(args_text) > CW_JSON_IN_MAX) {
		ret = send_store_err(c, r, CW_ERR_NOMEM, "command");
		goto out;
	}
	cw_uuid_v7(cmd->id);
	memcpy(cmd->device_id, cart->device_id, sizeof(cmd->device_id));
	snprintf(cmd->action, sizeof(cmd->action), "%s", assign ? "cart_assign" : "cart_return");
	memcpy(cmd->args, args_text, strlen(args_text) + 1);
	memcpy(cmd->created_by, p.u.id, sizeof(cmd->created_by));
	cmd->created_ms = cw_wall_ms();
	cmd->expires_ms = cmd->created_ms + (int64_t)ttl * 1000;
	rc = cw_store_command_create(a->store, cmd);
	if (rc == CW_OK)
		rc = cw_store_command_get(a->store, cmd->id, cmd);
	if (rc != CW_OK) {
		ret = send_store_err(c, r, rc, "command");
		goto out;
	}
	/* no phone in the log: personal data */
	cw_info("command.created", "command=%s device=%s action=%s cart=%s by=%s", cmd->id,
		cmd->device_id, cmd->action, cart->id, p.u.id);
	publish_command(a, cmd);
	ret = send_json(c, r, MHD_HTTP_ACCEPTED, command_json(cmd));
out:
	free(cmd);
	free(cart);
	cJSON_free(args_text);
	cJSON_Delete(args);
	cJSON_Delete(body);
	return ret;
}

/* ---- rentals (branch-scoped) ---- */

static cJSON *rental_json(const struct cw_rental *x, int64_t now, bool mask_phone)
{
	cJSON *o = cJSON_CreateObject();
	/* an active rental past its expected return is overdue (BRIEF.md §4),
	 * whether or not the device has said so yet */
	bool overdue = strcmp(x->status, "overdue") == 0 ||
		       (strcmp(x->status, "active") == 0 && x->expected_return_ms < now);

	cJSON_AddStringToObject(o, "id", x->id);
	cJSON_AddStringToObject(o, "branch_id", x->branch_id);
	cJSON_AddStringToObject(o, "cart_id", x->cart_id);
	cJSON_AddNumberToObject(o, "cart_number", (double)x->cart_number);
	add_opt_str(o, "device_id", x->device_id);
	add_phone(o, x->user_phone, mask_phone);
	cJSON_AddStringToObject(o, "status", overdue ? "overdue" : x->status);
	cJSON_AddBoolToObject(o, "overdue", overdue);
	add_time(o, "start_time", x->start_ms);
	add_time(o, "expected_return", x->expected_return_ms);
	add_time(o, "actual_return", x->actual_return_ms);
	if (x->duration_minutes >= 0)
		cJSON_AddNumberToObject(o, "duration_minutes", (double)x->duration_minutes);
	else if (x->actual_return_ms > 0)
		cJSON_AddNumberToObject(o, "duration_minutes",
					(double)((x->actual_return_ms - x->start_ms) / 60000));
	else
		cJSON_AddNullToObject(o, "duration_minutes");
	cJSON_AddBoolToObject(o, "clock_trusted", x->clock_trusted);
	add_opt_str(o, "notes", x->notes);
	return o;
}

static enum MHD_Result h_rentals(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				 const char *method, char **seg, int nseg)
{
	static const char *const active_args[] = {"limit", "cursor", NULL};
	static const char *const history_args[] = {"limit", "cursor", "from",  "to",
						   "phone", "status", NULL};
	bool active = strcmp(seg[4], "active") == 0;
	struct cw_rental_filter f = {.from_ms = CW_TIME_MIN_MS, .to_ms = CW_TIME_MAX_MS};
	const char *phone_q = NULL;
	char phone[CW_PHONE_MAX] = "";
	struct cw_branch b;
	struct principal p;
	struct cw_page pg;
	char cursor[CW_UUID_STRLEN];
	struct cw_rental *rows;
	int64_t now = cw_wall_ms();
	cJSON *items;
	int n = 0, rc;
	bool ok, more = false;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	if (only_args(c, r, active ? active_args : history_args) < 0 ||
	    page_args(c, r, &pg, cursor) < 0)
		return bad_request(c, r);
	if (!active) {
		if (range_args(c, r, CW_TIME_MIN_MS, CW_TIME_MAX_MS, &f.from_ms, &f.to_ms) < 0 ||
		    enum_arg(c, r, "status", rental_states, &f.status) < 0)
			return bad_request(c, r);
		phone_q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "phone");
		if (phone_q) {
			snprintf(phone, sizeof(phone), "%s", phone_q);
			if (phone[0] == ' ')
				phone[0] = '+'; /* an unencoded '+' in a query is a space */
			if (strlen(phone_q) >= sizeof(phone) || !phone_ok(phone)) {
				snprintf(r->err, sizeof(r->err),
					 "phone: expected an optional '+' and 4 to %d digits",
					 CW_PHONE_MAX - 1);
				return bad_request(c, r);
			}
			f.phone = phone;
			/* an exact search answers whether a number rented here, for
			 * roles that see phones masked too: each one is audited (never
			 * the number itself; docs/CLOUD.md "Decisions") */
			cw_info("rentals.phone_search", "user=%s branch=%s", p.u.id, b.id);
		}
	}
	rows = calloc((size_t)pg.limit, sizeof(*rows));
	if (!rows)
		return send_store_err(c, r, CW_ERR_NOMEM, "rentals");
	rc = active ? cw_store_rentals_active(a->store, b.id, &pg, rows, &n, &more)
		    : cw_store_rentals_history(a->store, b.id, &f, &pg, rows, &n, &more);
	if (rc != CW_OK) {
		free(rows);
		return send_store_err(c, r, rc, "rentals");
	}
	items = cJSON_CreateArray();
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(items, rental_json(&rows[i], now, !sees_phones(a, &p)));
	ret = send_json(c, r, MHD_HTTP_OK, page_json(items, more, n ? rows[n - 1].id : NULL));
	free(rows);
	return ret;
}

static void add_day(cJSON *o, const char *key, int64_t day)
{
	char buf[32];

	cw_wall_format(day * 86400000LL, buf);
	buf[10] = '\0'; /* YYYY-MM-DD of the RFC 3339 time */
	cJSON_AddStringToObject(o, key, buf);
}

/* from / to of a stats route (nothing else in the query): default the last
 * 30 UTC days, today included; at most STATS_DAYS_MAX days. -1 with r->err. */
static int stats_range(struct MHD_Connection *c, struct req *r, int64_t now, int64_t *from,
		       int64_t *to)
{
	static const char *const qargs[] = {"from", "to", NULL};
	int64_t today = now - now % 86400000LL;

	if (only_args(c, r, qargs) < 0 ||
	    range_args(c, r, today - 29 * 86400000LL, today + 86400000LL, from, to) < 0)
		return -1;
	if (*to - *from > (int64_t)STATS_DAYS_MAX * 86400000LL) {
		snprintf(r->err, sizeof(r->err), "from, to: at most %d days apart", STATS_DAYS_MAX);
		return -1;
	}
	return 0;
}

/* An hour as "2026-11-28T08:00:00Z". */
static void add_hour(cJSON *o, const char *key, int64_t hour)
{
	char buf[32];

	cw_wall_format(hour * 3600000LL, buf);
	snprintf(buf + 19, sizeof(buf) - 19, "Z"); /* no ".000" */
	cJSON_AddStringToObject(o, key, buf);
}

/* per_hour, durations and utilisation of the rental stats (issue 7). */
static void add_analytics(cJSON *o, const struct cw_rental_analytics *an,
			  const struct cw_rental_hour *hours, int nhours)
{
	static const int edges[CW_DURATION_BUCKETS] = CW_DURATION_EDGES_MIN;
	cJSON *arr = cJSON_AddArrayToObject(o, "per_hour"), *x;
	double capacity_ms = (double)an->carts * (double)an->range_ms;

	for (int i = 0; i < nhours; i++) {
		cJSON *h = cJSON_CreateObject();
		add_hour(h, "hour", hours[i].hour);
		cJSON_AddNumberToObject(h, "count", (double)hours[i].started);
		cJSON_AddItemToArray(arr, h);
	}
	arr = cJSON_AddArrayToObject(cJSON_AddObjectToObject(o, "durations"), "buckets");
	for (int i = 0; i < CW_DURATION_BUCKETS; i++) {
		cJSON *b = cJSON_CreateObject();
		cJSON_AddNumberToObject(b, "min_minutes", edges[i]);
		if (i + 1 < CW_DURATION_BUCKETS)
			cJSON_AddNumberToObject(b, "max_minutes", edges[i + 1]);
		else
			cJSON_AddNullToObject(b, "max_minutes");
		cJSON_AddNumberToObject(b, "count", (double)an->durations[i]);
		cJSON_AddItemToArray(arr, b);
	}
	/* the share of the carts' time in the range (up to now) spent rented */
	x = cJSON_AddObjectToObject(o, "utilisation");
	cJSON_AddNumberToObject(x, "carts", (double)an->carts);
	cJSON_AddNumberToObject(x, "rented_seconds", (double)an->rented_ms / 1000.0);
	cJSON_AddNumberToObject(x, "range_seconds", (double)an->range_ms / 1000.0);
	if (capacity_ms > 0)
		/* at most 1: rentals of one cart that overlap (clocks set back) */
		cJSON_AddNumberToObject(x, "ratio", (double)an->rented_ms < capacity_ms
							    ? (double)an->rented_ms / capacity_ms
							    : 1.0);
	else
		cJSON_AddNullToObject(x, "ratio");
}

static enum MHD_Result h_rental_stats(struct cw_cloud_api *a, struct MHD_Connection *c,
				      struct req *r, const char *method, char **seg, int nseg)
{
	struct cw_rental_stats st;
	struct cw_rental_day *days = NULL;
	struct cw_rental_analytics an;
	struct cw_rental_hour *hours = NULL;
	struct cw_branch b;
	struct principal p;
	int64_t now = cw_wall_ms(), from, to;
	int ndays = 0, nhours = 0, rc;
	cJSON *o, *x, *arr;
	bool ok;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	if (stats_range(c, r, now, &from, &to) < 0)
		return bad_request(c, r);
	days = calloc(STATS_DAYS_MAX + 1, sizeof(*days));
	hours = calloc(STATS_HOURS_MAX, sizeof(*hours));
	if (!days || !hours) {
		free(days);
		free(hours);
		return send_store_err(c, r, CW_ERR_NOMEM, "rentals");
	}
	rc = cw_store_rental_stats(a->store, b.id, from, to, now, &st, days, STATS_DAYS_MAX + 1,
				   &ndays);
	if (rc == CW_OK)
		rc = cw_store_rental_analytics(a->store, b.id, from, to, now, &an, hours,
					       STATS_HOURS_MAX, &nhours);
	if (rc != CW_OK) {
		free(days);
		free(hours);
		return send_store_err(c, r, rc, "rentals");
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "branch_id", b.id);
	add_time(o, "from", from);
	add_time(o, "to", to);
	x = cJSON_AddObjectToObject(o, "counts");
	cJSON_AddNumberToObject(x, "total", (double)st.total);
	cJSON_AddNumberToObject(x, "active", (double)st.active);
	cJSON_AddNumberToObject(x, "overdue", (double)st.overdue);
	cJSON_AddNumberToObject(x, "returned", (double)st.returned);
	cJSON_AddNumberToObject(x, "returned-late", (double)st.returned_late);
	cJSON_AddNumberToObject(x, "cancelled", (double)st.cancelled);
	cJSON_AddNumberToObject(o, "open", (double)(st.active + st.overdue));
	if (st.finished > 0)
		cJSON_AddNumberToObject(o, "average_duration_minutes",
					(double)st.avg_duration_ms / 60000.0);
	else
		cJSON_AddNullToObject(o, "average_duration_minutes");
	/* overdue rate: rentals that went past their expected return (still
	 * out or returned late) among those that were not cancelled */
	if (st.total - st.cancelled > 0)
		cJSON_AddNumberToObject(o, "overdue_rate",
					(double)(st.overdue + st.returned_late) /
						(double)(st.total - st.cancelled));
	else
		cJSON_AddNullToObject(o, "overdue_rate");
	arr = cJSON_AddArrayToObject(o, "per_day");
	for (int i = 0; i < ndays; i++) {
		cJSON *d = cJSON_CreateObject();
		add_day(d, "date", days[i].day);
		cJSON_AddNumberToObject(d, "started", (double)days[i].started);
		cJSON_AddNumberToObject(d, "late", (double)days[i].late);
		cJSON_AddNumberToObject(d, "finished", (double)days[i].finished);
		if (days[i].finished > 0)
			cJSON_AddNumberToObject(d, "average_duration_minutes",
						(double)days[i].avg_duration_ms / 60000.0);
		else
			cJSON_AddNullToObject(d, "average_duration_minutes");
		cJSON_AddItemToArray(arr, d);
	}
	free(days);
	add_analytics(o, &an, hours, nhours);
	free(hours);
	return send_json(c, r, MHD_HTTP_OK, o);
}

#define FAULT_CARTS_MAX 1000

/* GET /api/branches/{id}/faults?from=&to=: lock.fault and lock.offline
 * telemetry per cart in the range (the stats' defaults and limit), most
 * first; carts without any are not listed. */
static enum MHD_Result h_branch_faults(struct cw_cloud_api *a, struct MHD_Connection *c,
				       struct req *r, const char *method, char **seg, int nseg)
{
	struct cw_cart_faults *rows;
	struct cw_branch b;
	struct principal p;
	int64_t from, to;
	cJSON *o, *items;
	int n = 0, rc;
	bool ok;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	if (stats_range(c, r, cw_wall_ms(), &from, &to) < 0)
		return bad_request(c, r);
	rows = calloc(FAULT_CARTS_MAX, sizeof(*rows));
	if (!rows)
		return send_store_err(c, r, CW_ERR_NOMEM, "telemetry");
	rc = cw_store_branch_faults(a->store, b.id, from, to, rows, FAULT_CARTS_MAX, &n);
	if (rc != CW_OK) {
		free(rows);
		return send_store_err(c, r, rc, "telemetry");
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "branch_id", b.id);
	add_time(o, "from", from);
	add_time(o, "to", to);
	items = cJSON_AddArrayToObject(o, "items");
	for (int i = 0; i < n; i++) {
		cJSON *x = cJSON_CreateObject();
		cJSON_AddStringToObject(x, "cart_id", rows[i].cart_id);
		cJSON_AddNumberToObject(x, "cart_number", (double)rows[i].cart_number);
		cJSON_AddNumberToObject(x, "lock_fault", (double)rows[i].lock_fault);
		cJSON_AddNumberToObject(x, "lock_offline", (double)rows[i].lock_offline);
		cJSON_AddItemToArray(items, x);
	}
	free(rows);
	return send_json(c, r, MHD_HTTP_OK, o);
}

/* ---- telemetry ---- */

/* A telemetry row; mask: the event data's "phone" (kiosk.offline_signin
 * carries the customer's) masked for the roles that do not see phones. */
static cJSON *telemetry_json(const struct cw_telemetry *x, bool mask)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *data = x->event_data[0] ? cJSON_Parse(x->event_data) : NULL;

	if (mask)
		mask_phone_key(data);

	cJSON_AddNumberToObject(o, "id", (double)x->id);
	cJSON_AddStringToObject(o, "device_id", x->device_id);
	cJSON_AddStringToObject(o, "branch_id", x->branch_id);
	cJSON_AddStringToObject(o, "event_type", x->event_type);
	if (data)
		cJSON_AddItemToObject(o, "event_data", data);
	else
		cJSON_AddNullToObject(o, "event_data");
	if (x->event_data_cut)
		cJSON_AddBoolToObject(o, "event_data_too_large", true);
	if (x->seq >= 0)
		cJSON_AddNumberToObject(o, "seq", (double)x->seq);
	else
		cJSON_AddNullToObject(o, "seq");
	add_time(o, "timestamp", x->ts_ms);
	cJSON_AddBoolToObject(o, "clock_trusted", x->clock_trusted);
	add_time(o, "received_at", x->received_ms);
	return o;
}

/* event types: letters, digits and "_.:-", 1..50 */
static bool event_type_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n >= CW_EVENT_TYPE_MAX)
		return false;
	for (const char *q = s; *q; q++)
		if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
		      (*q >= '0' && *q <= '9') || strchr("_.:-", *q)))
			return false;
	return true;
}

/* GET /api/telemetry/{devices|branches|chains}/{id}: the object of the path
 * is authorised first (404 when the caller may not see it); a manager's
 * chain-wide view holds the rows of its own branches only. */
static enum MHD_Result h_telemetry(struct cw_cloud_api *a, struct MHD_Connection *c,
				   struct req *r, const char *method, char **seg, int nseg)
{
	static const char *const qargs[] = {"limit", "cursor", "from", "to", "event_type", NULL};
	struct cw_telemetry_query q = {.from_ms = CW_TIME_MIN_MS, .to_ms = CW_TIME_MAX_MS};
	const char *lim = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	const char *cur = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cursor");
	struct cw_telemetry *rows;
	struct principal p;
	char next[24];
	cJSON *items;
	int n = 0, rc;
	bool ok, more = false;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	if (strcmp(seg[2], "devices") == 0) {
		struct cw_device d;
		ret = load_device(a, c, r, &p, seg[3], &d, &ok);
		if (!ok)
			return ret;
		q.key = CW_TELEMETRY_DEVICE;
	} else if (strcmp(seg[2], "branches") == 0) {
		struct cw_branch b;
		ret = load_branch(a, c, r, &p, seg[3], &b, &ok);
		if (!ok)
			return ret;
		q.key = CW_TELEMETRY_BRANCH;
	} else {
		if (!kind_ok(seg[3], S_UUID) || !sees_chain(&p, seg[3]))
			return not_found(c, r, "chain");
		{
			struct cw_chain ch;
			rc = cw_store_chain_get(a->store, seg[3], &ch);
			if (rc != CW_OK)
				return send_store_err(c, r, rc, "chain");
		}
		q.key = CW_TELEMETRY_CHAIN;
		if (p.u.role == CW_ROLE_BRANCH_MANAGER)
			q.manager_id = p.u.id;
	}
	q.id = seg[3];
	q.limit = PAGE_DEFAULT;
	if (only_args(c, r, qargs) < 0 ||
	    range_args(c, r, CW_TIME_MIN_MS, CW_TIME_MAX_MS, &q.from_ms, &q.to_ms) < 0)
		return bad_request(c, r);
	if (lim) {
		char *end = NULL;
		long v = strtol(lim, &end, 10);
		if (!*lim || *end || v < 1 || v > CW_PAGE_MAX) {
			snprintf(r->err, sizeof(r->err), "limit: expected an integer 1..%d", CW_PAGE_MAX);
			return bad_request(c, r);
		}
		q.limit = (int)v;
	}
	if (cur && *cur) {
		char *end = NULL;
		long long v;
		errno = 0;
		v = strtoll(cur, &end, 10);
		if (*cur < '1' || *cur > '9' || *end || errno || v < 1) {
			snprintf(r->err, sizeof(r->err), "cursor: expected the next_cursor of a "
							 "previous page");
			return bad_request(c, r);
		}
		q.after_id = v;
	}
	q.event_type = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "event_type");
	if (q.event_type && !event_type_ok(q.event_type)) {
		snprintf(r->err, sizeof(r->err), "event_type: 1 to %d letters, digits or _.:-",
			 CW_EVENT_TYPE_MAX - 1);
		return bad_request(c, r);
	}
	rows = calloc((size_t)q.limit, sizeof(*rows));
	if (!rows)
		return send_store_err(c, r, CW_ERR_NOMEM, "telemetry");
	rc = cw_store_telemetry_list(a->store, &q, rows, &n, &more);
	if (rc != CW_OK) {
		free(rows);
		return send_store_err(c, r, rc, "telemetry");
	}
	items = cJSON_CreateArray();
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(items, telemetry_json(&rows[i], !sees_phones(a, &p)));
	if (n)
		snprintf(next, sizeof(next), "%lld", (long long)rows[n - 1].id);
	ret = send_json(c, r, MHD_HTTP_OK, page_json(items, more, n ? next : NULL));
	free(rows);
	return ret;
}

/* ---- chain-wide stats ---- */

struct chain_stats {
	cJSON *total_types; /* event type -> count over the whole range */
	cJSON *per_day;     /* array, oldest first */
	cJSON *day;         /* the per_day entry being filled */
	int64_t day_no, total;
};

/* adds n to the number o[key] (created at 0) */
static int count_add(cJSON *o, const char *key, int64_t n)
{
	cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!x)
		return cJSON_AddNumberToObject(o, key, (double)n) ? CW_OK : CW_ERR_NOMEM;
	cJSON_SetNumberValue(x, x->valuedouble + (double)n);
	return CW_OK;
}

/* rows come ordered by day: a new day starts a new per_day entry */
static int chain_stats_row(void *ctx, int64_t day, const char *event_type, int64_t n)
{
	struct chain_stats *st = ctx;

	if (!st->day || day != st->day_no) {
		cJSON *d = cJSON_CreateObject();
		if (!d)
			return CW_ERR_NOMEM;
		add_day(d, "date", day);
		cJSON_AddNumberToObject(d, "total", 0);
		cJSON_AddObjectToObject(d, "by_event_type");
		cJSON_AddItemToArray(st->per_day, d);
		st->day = d;
		st->day_no = day;
	}
	st->total += n;
	if (count_add(st->day, "total", n) != CW_OK ||
	    count_add(cJSON_GetObjectItemCaseSensitive(st->day, "by_event_type"), event_type, n) !=
		    CW_OK ||
	    count_add(st->total_types, event_type, n) != CW_OK)
		return CW_ERR_NOMEM;
	return CW_OK;
}

/* Loads the chain of the path for a caller who sees it (like load_branch):
 * MHD_YES with *ok, or the queued 404/503. */
static enum MHD_Result load_chain(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				  const struct principal *p, const char *id, struct cw_chain *ch,
				  bool *ok)
{
	int rc;

	*ok = false;
	if (!kind_ok(id, S_UUID) || !sees_chain(p, id))
		return not_found(c, r, "chain");
	rc = cw_store_chain_get(a->store, id, ch);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "chain");
	*ok = true;
	return MHD_YES;
}

/* GET /api/chains/{id}/stats: telemetry events of the chain by type and UTC
 * day over [from, to) (default: the last 30 UTC days, today included; at most
 * STATS_DAYS_MAX days, like the rental stats). Authorised like
 * /api/telemetry/chains/{id}: a platform admin any chain, a chain admin or a
 * branch manager their own chain (404 for another); a manager's counts cover
 * only the branches they manage. Rentals are not counted: rentals has no
 * chain_id, and counting them over the chain's branches is not yet under the
 * 100 ms target at 1 M rentals for long ranges (docs/BENCHMARKS-CLOUD.md). */
static enum MHD_Result h_chain_stats(struct cw_cloud_api *a, struct MHD_Connection *c,
				     struct req *r, const char *method, char **seg, int nseg)
{
	struct chain_stats st = {.day_no = 0};
	struct principal p;
	struct cw_chain ch;
	int64_t from, to;
	cJSON *o = NULL, *tel;
	int rc;
	bool ok;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	(void)method;
	(void)nseg;
	if (!ok)
		return ret;
	ret = load_chain(a, c, r, &p, seg[2], &ch, &ok);
	if (!ok)
		return ret;
	if (stats_range(c, r, cw_wall_ms(), &from, &to) < 0)
		return bad_request(c, r);
	o = cJSON_CreateObject();
	if (!o)
		return send_store_err(c, r, CW_ERR_NOMEM, "chain stats");
	cJSON_AddStringToObject(o, "chain_id", ch.id);
	add_time(o, "from", from);
	add_time(o, "to", to);
	tel = cJSON_AddObjectToObject(o, "telemetry");
	st.total_types = cJSON_CreateObject();
	st.per_day = cJSON_CreateArray();
	if (!tel || !st.total_types || !st.per_day) {
		cJSON_Delete(st.total_types);
		cJSON_Delete(st.per_day);
		cJSON_Delete(o);
		return send_store_err(c, r, CW_ERR_NOMEM, "chain stats");
	}
	rc = cw_store_chain_event_counts(a->store, ch.id,
					 p.u.role == CW_ROLE_BRANCH_MANAGER ? p.u.id : NULL, from,
					 to, chain_stats_row, &st);
	cJSON_AddNumberToObject(tel, "total", (double)st.total);
	cJSON_AddItemToObject(tel, "by_event_type", st.total_types);
	cJSON_AddItemToObject(tel, "per_day", st.per_day);
	if (rc != CW_OK) {
		cJSON_Delete(o);
		return send_store_err(c, r, rc, "telemetry");
	}
	return send_json(c, r, MHD_HTTP_OK, o);
}

/* ---- staff users (platform admins: anyone; chain admins: their chain's
 * users, never a platform admin; branch managers: none) ---- */

#define PASSWORD_MIN 10

static cJSON *user_json(const struct cw_user *u, const struct cw_user_branches *b)
{
	cJSON *o = cJSON_CreateObject(), *arr;

	cJSON_AddStringToObject(o, "id", u->id);
	cJSON_AddStringToObject(o, "email", u->email);
	cJSON_AddStringToObject(o, "role", cw_role_name(u->role));
	add_opt_str(o, "chain_id", u->chain_id);
	arr = cJSON_AddArrayToObject(o, "branch_ids");
	for (int i = 0; b && i < b->n; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(b->ids[i]));
	cJSON_AddBoolToObject(o, "active", u->active);
	add_time(o, "created_at", u->created_ms);
	return o;
}

/* The user-management part of a body: role, chain_id, branch_ids, email,
 * password, active. Fields absent keep the values already in *u (and *br);
 * *set_br says whether branch_ids was given. Returns 0, or -1 with r->err. */
static int user_fields(struct req *r, const cJSON *body, struct cw_user *u,
		       struct cw_user_branches *br, bool *set_br, bool *set_pw)
{
	char role[32] = "", chain[CW_UUID_STRLEN] = "";
	const cJSON *pw = cJSON_GetObjectItemCaseSensitive(body, "password");
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(body, "branch_ids");
	const cJSON *ch = cJSON_GetObjectItemCaseSensitive(body, "chain_id");
	int got;

	*set_br = false;
	*set_pw = false;
	if (field_str(r, body, "email", false, 3, S_TEXT, u->email, sizeof(u->email)) < 0 ||
	    (got = field_str(r, body, "role", false, 1, S_CODE, role, sizeof(role))) < 0 ||
	    field_bool(r, body, "active", &u->active) < 0)
		return -1;
	if (!strchr(u->email, '@')) {
		snprintf(r->err, sizeof(r->err), "email: expected an address with '@'");
		return -1;
	}
	for (char *q = u->email; *q; q++)
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	if (got == 1 && cw_role_parse(role, &u->role) != CW_OK) {
		snprintf(r->err, sizeof(r->err),
			 "role: expected platform-admin, chain-admin or branch-manager");
		return -1;
	}
	if (ch) { /* null = no chain (platform admins) */
		if (!cJSON_IsNull(ch) &&
		    field_str(r, body, "chain_id", true, 36, S_UUID, chain, sizeof(chain)) < 0)
			return -1;
		memcpy(u->chain_id, chain, sizeof(u->chain_id));
	}
	if (pw) {
		if (!cJSON_IsString(pw) || !pw->valuestring ||
		    strlen(pw->valuestring) < PASSWORD_MIN || strlen(pw->valuestring) > PASSWORD_MAX) {
			snprintf(r->err, sizeof(r->err), "password: expected a string of %d..%d bytes",
				 PASSWORD_MIN, PASSWORD_MAX);
			return -1;
		}
		*set_pw = true;
	}
	if (ids) {
		const cJSON *it;
		if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) > CW_USER_BRANCHES_MAX) {
			snprintf(r->err, sizeof(r->err), "branch_ids: expected an array of at most %d "
							 "branch ids", CW_USER_BRANCHES_MAX);
			return -1;
		}
		br->n = 0;
		cJSON_ArrayForEach(it, ids) {
			if (!cJSON_IsString(it) || !kind_ok(it->valuestring, S_UUID)) {
				snprintf(r->err, sizeof(r->err), "branch_ids: expected lower-case UUIDs");
				return -1;
			}
			for (int i = 0; i < br->n; i++) {
				if (strcmp(br->ids[i], it->valuestring) == 0) {
					snprintf(r->err, sizeof(r->err), "branch_ids: a branch is given twice");
					return -1;
				}
			}
			snprintf(br->ids[br->n++], CW_UUID_STRLEN, "%s", it->valuestring);
		}
		*set_br = true;
	}
	/* the schema's rule, said clearly: a platform admin has no chain,
	 * everyone else exactly one; only managers have branches */
	if ((u->role == CW_ROLE_PLATFORM_ADMIN) != (u->chain_id[0] == '\0')) {
		snprintf(r->err, sizeof(r->err), u->role == CW_ROLE_PLATFORM_ADMIN
							 ? "chain_id: a platform admin has no chain"
							 : "chain_id: required for this role");
		return -1;
	}
	if (u->role != CW_ROLE_BRANCH_MANAGER && *set_br && br->n > 0) {
		snprintf(r->err, sizeof(r->err), "branch_ids: only a branch manager has branches");
		return -1;
	}
	return 0;
}

/* Whether the caller may give a user this role and chain: true, or false
 * with the queued 403/404 in *ret. */
static bool may_assign(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
		       const struct principal *p, const struct cw_user *u, enum MHD_Result *ret)
{
	struct cw_chain ch;
	int rc;

	if (u->chain_id[0] && !sees_chain(p, u->chain_id)) {
		*ret = not_found(c, r, "chain");
		return false;
	}
	if (p->u.role != CW_ROLE_PLATFORM_ADMIN && u->role == CW_ROLE_PLATFORM_ADMIN) {
		*ret = forbidden(c, r);
		return false;
	}
	if (u->chain_id[0] && (rc = cw_store_chain_get(a->store, u->chain_id, &ch)) != CW_OK) {
		*ret = send_store_err(c, r, rc, "chain");
		return false;
	}
	return true;
}

static enum MHD_Result user_save_err(struct MHD_Connection *c, struct req *r, int rc)
{
	if (rc == CW_ERR_INVAL)
		return send_error(c, r, MHD_HTTP_BAD_REQUEST, "invalid",
				  "branch_ids: every branch must be a branch of the user's chain");
	if (rc == CW_ERR_CONFLICT)
		return send_error(c, r, MHD_HTTP_CONFLICT, "conflict",
				  "a user with this email exists");
	return send_store_err(c, r, rc, "user");
}

static int hash_password(struct cw_cloud_api *a, const cJSON *body, struct cw_user *u)
{
	const cJSON *pw = cJSON_GetObjectItemCaseSensitive(body, "password");

	return cw_cloud_hash_password(&a->cfg, pw->valuestring, strlen(pw->valuestring),
				      u->password_hash, sizeof(u->password_hash));
}

static enum MHD_Result h_users(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
			       const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"email",    "password",   "role", "chain_id",
					   "branch_ids", "active", NULL};
	static const char *const qargs[] = {"limit", "cursor", "chain_id", NULL};
	struct principal p;
	bool ok;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	if (p.u.role == CW_ROLE_BRANCH_MANAGER)
		return forbidden(c, r);
	if (strcmp(method, "GET") == 0) {
		const char *chain = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "chain_id");
		struct cw_scope sc = scope_of(&p);
		struct cw_user_row *rows;
		struct cw_page pg;
		char cursor[CW_UUID_STRLEN];
		cJSON *items;
		int n = 0;
		bool more = false;

		if (only_args(c, r, qargs) < 0 || page_args(c, r, &pg, cursor) < 0)
			return bad_request(c, r);
		if (chain) {
			if (!kind_ok(chain, S_UUID)) {
				snprintf(r->err, sizeof(r->err), "chain_id: expected a lower-case UUID");
				return bad_request(c, r);
			}
			if (!sees_chain(&p, chain))
				return not_found(c, r, "chain");
			sc.chain_id = chain;
		}
		rows = calloc((size_t)pg.limit, sizeof(*rows));
		if (!rows)
			return send_store_err(c, r, CW_ERR_NOMEM, "users");
		rc = cw_store_user_list(a->store, &sc, &pg, rows, &n, &more);
		if (rc != CW_OK) {
			free(rows);
			return send_store_err(c, r, rc, "users");
		}
		items = cJSON_CreateArray();
		for (int i = 0; i < n; i++)
			cJSON_AddItemToArray(items, user_json(&rows[i].user, &rows[i].branches));
		ret = send_json(c, r, MHD_HTTP_OK,
				page_json(items, more, n ? rows[n - 1].user.id : NULL));
		free(rows);
		return ret;
	}
	{
		struct cw_user u = {.active = true, .role = (enum cw_role)-1};
		struct cw_user_branches *br = calloc(1, sizeof(*br));
		cJSON *body = body_object(r, keys);
		bool set_br = false, set_pw = false;

		if (!br) {
			cJSON_Delete(body);
			return send_store_err(c, r, CW_ERR_NOMEM, "user");
		}
		if (!body) {
			ret = bad_request(c, r);
			goto post_out;
		}
		if (!cJSON_GetObjectItemCaseSensitive(body, "email") ||
		    !cJSON_GetObjectItemCaseSensitive(body, "password") ||
		    !cJSON_GetObjectItemCaseSensitive(body, "role")) {
			snprintf(r->err, sizeof(r->err), "email, password and role are required");
			ret = bad_request(c, r);
			goto post_out;
		}
		if (user_fields(r, body, &u, br, &set_br, &set_pw) < 0) {
			ret = bad_request(c, r);
			goto post_out;
		}
		if (!may_assign(a, c, r, &p, &u, &ret))
			goto post_out;
		if (hash_password(a, body, &u) != CW_OK) {
			ret = send_store_err(c, r, CW_ERR_NOMEM, "user");
			goto post_out;
		}
		cw_uuid_v7(u.id);
		rc = cw_store_user_save(a->store, &u, br, true, cw_wall_ms());
		if (rc == CW_OK)
			rc = cw_store_user_get(a->store, u.id, &u);
		if (rc == CW_OK)
			rc = cw_store_user_branches(a->store, u.id, br);
		if (rc != CW_OK) {
			ret = user_save_err(c, r, rc);
			goto post_out;
		}
		cw_info("user.created", "user=%s role=%s by=%s", u.id, cw_role_name(u.role), p.u.id);
		ret = send_json(c, r, MHD_HTTP_CREATED, user_json(&u, br));
post_out:
		sodium_memzero(u.password_hash, sizeof(u.password_hash));
		free(br);
		cJSON_Delete(body);
		return ret;
	}
}

static enum MHD_Result h_user(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
			      const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"email",    "password",   "role", "chain_id",
					   "branch_ids", "active", NULL};
	struct cw_user old, u;
	struct cw_user_branches *br = NULL;
	struct principal p;
	cJSON *body = NULL;
	bool ok, set_br = false, set_pw = false, self;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	if (p.u.role == CW_ROLE_BRANCH_MANAGER)
		return forbidden(c, r);
	if (!kind_ok(seg[2], S_UUID))
		return not_found(c, r, "user");
	rc = cw_store_user_get(a->store, seg[2], &old);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "user");
	/* a chain admin sees its chain's users only (platform admins have no chain) */
	if (p.u.role != CW_ROLE_PLATFORM_ADMIN && strcmp(old.chain_id, p.u.chain_id) != 0)
		return not_found(c, r, "user");
	u = old;
	br = calloc(1, sizeof(*br));
	if (!br)
		return send_store_err(c, r, CW_ERR_NOMEM, "user");
	rc = cw_store_user_branches(a->store, old.id, br);
	if (rc != CW_OK) {
		ret = send_store_err(c, r, rc, "user");
		goto out;
	}
	if (strcmp(method, "GET") == 0) {
		ret = send_json(c, r, MHD_HTTP_OK, user_json(&old, br));
		goto out;
	}
	self = strcmp(old.id, p.u.id) == 0;
	if (strcmp(method, "DELETE") == 0) {
		u.active = false; /* deactivation: the row stays (commands and codes name it) */
	} else {
		body = body_object(r, keys);
		if (!body) {
			ret = bad_request(c, r);
			goto out;
		}
		if (user_fields(r, body, &u, br, &set_br, &set_pw) < 0) {
			ret = bad_request(c, r);
			goto out;
		}
	}
	/* nobody locks themselves out: no own role, chain or deactivation */
	if (self && (u.role != old.role || strcmp(u.chain_id, old.chain_id) != 0 || !u.active)) {
		ret = send_error(c, r, MHD_HTTP_FORBIDDEN, "forbidden",
				 "you cannot change your own role or chain, or deactivate yourself");
		goto out;
	}
	if (!may_assign(a, c, r, &p, &u, &ret))
		goto out;
	/* a new role or chain invalidates the managed branches not restated */
	if (!set_br && (u.role != old.role || strcmp(u.chain_id, old.chain_id) != 0)) {
		br->n = 0;
		set_br = true;
	}
	if (set_pw && hash_password(a, body, &u) != CW_OK) {
		ret = send_store_err(c, r, CW_ERR_NOMEM, "user");
		goto out;
	}
	rc = cw_store_user_save(a->store, &u, set_br ? br : NULL, false, cw_wall_ms());
	if (rc == CW_OK)
		rc = cw_store_user_get(a->store, u.id, &u);
	if (rc == CW_OK)
		rc = cw_store_user_branches(a->store, u.id, br);
	if (rc != CW_OK) {
		ret = user_save_err(c, r, rc);
		goto out;
	}
	cw_info("user.updated", "user=%s role=%s active=%d by=%s", u.id, cw_role_name(u.role),
		u.active, p.u.id);
	ret = send_json(c, r, MHD_HTTP_OK, user_json(&u, br));
out:
	sodium_memzero(old.password_hash, sizeof(old.password_hash));
	sodium_memzero(u.password_hash, sizeof(u.password_hash));
	free(br);
	cJSON_Delete(body);
	return ret;
}

/* ---- /metrics ---- */

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct sbuf {
	char *p;
	size_t len, cap;
	bool full;
};

static void sb_add(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len)
		b->full = true; /* bounded: never more than METRICS_TEXT_MAX */
	else
		b->len += (size_t)n;
}

static const char *route_pattern(int idx);
static int route_count(void);
/* the metrics' route of the dashboard's files (send_dashboard), whatever
 * their status: after the routes and "unmatched" */
#define ROUTE_DASHBOARD (route_count() + 1)

static enum MHD_Result h_metrics(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				 const char *method, char **seg, int nseg)
{
	struct sbuf b = {.cap = METRICS_TEXT_MAX};
	struct MHD_Response *resp;
	unsigned long long cum = 0;
	int64_t online = 0;
	int total = 0, in_use = 0, db_rc;
	enum MHD_Result ret;

	b.p = malloc(b.cap);
	if (!b.p)
		return send_store_err(c, r, CW_ERR_NOMEM, "metrics");
	sb_add(&b, "# HELP cartwise_http_requests_total HTTP requests by route pattern and status.\n"
		   "# TYPE cartwise_http_requests_total counter\n");
	for (int i = 0; i <= ROUTE_DASHBOARD; i++) {
		for (size_t k = 0; k < METRIC_NSTATUS; k++) {
			unsigned long long v = atomic_load(&a->m.requests[i][k]);
			char st[8];
			if (!v)
				continue;
			if (k < METRIC_NSTATUS - 1)
				snprintf(st, sizeof(st), "%d", metric_status[k]);
			else
				snprintf(st, sizeof(st), "other");
			sb_add(&b, "cartwise_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
			       route_pattern(i), st, v);
		}
	}
	sb_add(&b, "# HELP cartwise_http_request_duration_seconds Time from request to response, "
		   "by route pattern.\n"
		   "# TYPE cartwise_http_request_duration_seconds histogram\n");
	for (int i = 0; i <= ROUTE_DASHBOARD; i++) {
		unsigned long long n = atomic_load(&a->m.count[i]);
		if (!n)
			continue; /* a route never requested has no series yet */
		cum = 0;
		for (size_t k = 0; k < METRIC_NLE; k++) {
			cum += atomic_load(&a->m.le[i][k]);
			sb_add(&b, "cartwise_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
				   "%llu\n", route_pattern(i), metric_le[k], cum);
		}
		cum += atomic_load(&a->m.le[i][METRIC_NLE]);
		sb_add(&b, "cartwise_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
			   "%llu\n", route_pattern(i), cum);
		sb_add(&b, "cartwise_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
		       route_pattern(i), (double)atomic_load(&a->m.sum_us[i]) / 1e6);
		/* the +Inf bucket is the count (Prometheus requires them equal,
		 * and a request finishing during the scrape must not split them) */
		sb_add(&b, "cartwise_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
		       route_pattern(i), cum);
	}
	cw_store_pool_stats(a->store, &total, &in_use);
	sb_add(&b, "# HELP cartwise_db_connections Database connections of this instance.\n"
		   "# TYPE cartwise_db_connections gauge\n"
		   "cartwise_db_connections{state=\"total\"} %d\n"
		   "cartwise_db_connections{state=\"in_use\"} %d\n"
		   "cartwise_db_connections{state=\"idle\"} %d\n", total, in_use, total - in_use);
	db_rc = cw_store_devices_online(a->store, cw_wall_ms() - (int64_t)a->cfg.offline_after_s * 1000,
					&online);
	sb_add(&b, "# HELP cartwise_db_up Whether the last database query of /metrics worked.\n"
		   "# TYPE cartwise_db_up gauge\ncartwise_db_up %d\n", db_rc == CW_OK);
	if (db_rc == CW_OK)
		sb_add(&b, "# HELP cartwise_devices_online Devices with a recent heartbeat, all chains.\n"
			   "# TYPE cartwise_devices_online gauge\ncartwise_devices_online %lld\n",
		       (long long)online);
	resp = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(b.p);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	r->status = MHD_HTTP_OK;
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- edge -> cloud sync (issue 4, docs/SYNC.md "Up") ---- */

#define SYNC_ENTRIES_MAX 1000
#define SYNC_OBJECT_KEYS_MAX 256 /* keeps the duplicate-key check of a batch cheap */
#define SYNC_TEXT_MAX 4096       /* notes, reasons */
#define SYNC_ID_MAX 64           /* entity ids (a telemetry entry's is its edge row id) */
#define SYNC_SEQ_MAX 9007199254740991.0 /* 2^53 - 1: exact in a JSON number */
#define COMMAND_AUD "cartwise-device"

/* Validation of one batch: the message names the entry and field
 * (entries[7].payload.rental.status: ...). Values are never echoed. */
struct sv {
	struct req *r;
	char path[96]; /* entries[i] or entries[i].payload.x */
};

static int sv_fail(struct sv *v, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int sv_fail(struct sv *v, const char *key, const char *fmt, ...)
{
	char msg[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* cut at the buffer if it must: the path and the key come first */
	if (snprintf(v->r->err, sizeof(v->r->err), "%s%s%s: %s", v->path, key ? "." : "",
		     key ? key : "", msg) >= (int)sizeof(v->r->err))
		v->r->err[sizeof(v->r->err) - 1] = '\0';
	return -1;
}

/* The member key of o: absent and JSON null are the same ("none"). Returns 1
 * present, 0 none and allowed, -1 none but required. */
static int sv_get(struct sv *v, const cJSON *o, const char *key, bool required, const cJSON **it)
{
	*it = cJSON_GetObjectItemCaseSensitive(o, key);
	if (*it && !cJSON_IsNull(*it))
		return 1;
	*it = NULL;
	return required ? sv_fail(v, key, "missing") : 0;
}

static int sv_int(struct sv *v, const cJSON *o, const char *key, bool required, double min,
		  double max, int64_t *out)
{
	const cJSON *it;
	int rc = sv_get(v, o, key, required, &it);

	if (rc <= 0)
		return rc;
	if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int64_t)it->valuedouble ||
	    it->valuedouble < min || it->valuedouble > max)
		return sv_fail(v, key, "expected an integer %.0f..%.0f", min, max);
	*out = (int64_t)it->valuedouble;
	return 1;
}

/* true/false, or 0/1 (the edge's SQLite snapshots carry booleans as integers) */
static int sv_bool(struct sv *v, const cJSON *o, const char *key, bool required, bool *out)
{
	const cJSON *it;
	int rc = sv_get(v, o, key, required, &it);

	if (rc <= 0)
		return rc;
	if (cJSON_IsBool(it))
		*out = cJSON_IsTrue(it);
	else if (cJSON_IsNumber(it) && (it->valuedouble == 0 || it->valuedouble == 1))
		*out = it->valuedouble == 1;
	else
		return sv_fail(v, key, "expected true or false");
	return 1;
}

static int sv_str(struct sv *v, const cJSON *o, const char *key, bool required, size_t min,
		  size_t max, enum skind k, const char **out)
{
	const cJSON *it;
	int rc = sv_get(v, o, key, required, &it);
	size_t n;

	*out = NULL;
	if (rc <= 0)
		return rc;
	if (!cJSON_IsString(it) || !it->valuestring)
		return sv_fail(v, key, "expected a string");
	n = strlen(it->valuestring);
	if (n < min || n > max)
		return sv_fail(v, key, "expected %zu to %zu bytes, got %zu", min, max, n);
	if (!kind_ok(it->valuestring, k))
		return sv_fail(v, key, "only %s", kind_text(k));
	*out = it->valuestring;
	return 1;
}

static int sv_enum(struct sv *v, const cJSON *o, const char *key, const char *const *names,
		   const char **out)
{
	int rc = sv_str(v, o, key, true, 1, 32, S_CODE, out);

	if (rc < 0)
		return rc;
	for (const char *const *n = names; *n; n++)
		if (strcmp(*n, *out) == 0)
			return 1;
	return sv_fail(v, key, "not one of the allowed values");
}

static int sv_obj(struct sv *v, const cJSON *o, const char *key, bool required, const cJSON **out)
{
	int rc = sv_get(v, o, key, required, out);

	if (rc > 0 && !cJSON_IsObject(*out))
		return sv_fail(v, key, "expected an object");
	return rc;
}

/* Event names and kinds: what the telemetry event_type column takes. */
static bool event_name_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return *s != '\0';
}

/* Every object of the document: no key twice, at most SYNC_OBJECT_KEYS_MAX
 * keys (cJSON keeps duplicates; the bound keeps this check linear enough). */
static bool json_keys_ok(const cJSON *n)
{
	int count = 0;

	for (const cJSON *it = n ? n->child : NULL; it; it = it->next) {
		if (cJSON_IsObject(n)) {
			if (++count > SYNC_OBJECT_KEYS_MAX)
				return false;
			for (const cJSON *p = n->child; p != it; p = p->next)
				if (strcmp(p->string, it->string) == 0)
					return false;
		}
		if ((cJSON_IsObject(it) || cJSON_IsArray(it)) && !json_keys_ok(it))
			return false;
	}
	return true;
}

/* JSON text of o (caller frees with cJSON_free), at most max bytes. */
static int json_text(struct sv *v, const char *key, const cJSON *o, size_t max, char **out)
{
	*out = cJSON_PrintUnformatted(o);
	if (!*out)
		return CW_ERR_NOMEM;
	if (strlen(*out) > max) {
		cJSON_free(*out);
		*out = NULL;
		sv_fail(v, key, "at most %zu bytes of JSON", max);
		return CW_ERR_TOOBIG;
	}
	return CW_OK;
}

static const char *const sync_entity_types[] = {"rental", "cart", "telemetry", "command",
						"device", NULL};
static const char *const sync_cart_states[] = {"available", "rented", "awaiting-return",
					       "maintenance", "fault", NULL};
static const char *const sync_rental_states[] = {"active", "overdue", "returned",
						 "returned-late", "cancelled", NULL};
/* what the edge's command_log may call a finished command (docs/SYNC.md) */
static const char *const sync_command_states[] = {"succeeded", "failed", "done", "refused",
						  "expired", NULL};

static int sync_rental(struct sv *v, const cJSON *pl, const char *entity_id,
		       struct cw_sync_item *x)
{
	const cJSON *o;
	int64_t dur = -1;
	size_t n = strlen(v->path);

	if (sv_obj(v, pl, "rental", true, &o) < 0)
		return -1;
	snprintf(v->path + n, sizeof(v->path) - n, ".rental");
	x->op = CW_SYNC_RENTAL;
	x->actual_ms = 0;
	if (sv_str(v, o, "id", true, 36, 36, S_UUID, &x->id) < 0 ||
	    sv_str(v, o, "cart_id", true, 36, 36, S_UUID, &x->cart_id) < 0 ||
	    sv_str(v, o, "user_phone", true, 1, CW_PHONE_MAX - 1, S_PRINT, &x->phone) < 0 ||
	    sv_enum(v, o, "status", sync_rental_states, &x->status) < 0 ||
	    sv_int(v, o, "start_time", true, 0, CW_TIME_MAX_MS, &x->start_ms) < 0 ||
	    sv_int(v, o, "expected_return", true, 0, CW_TIME_MAX_MS, &x->expected_ms) < 0 ||
	    sv_int(v, o, "actual_return", false, 1, CW_TIME_MAX_MS, &x->actual_ms) < 0 ||
	    sv_int(v, o, "duration_s", false, 0, 1e12, &dur) < 0 ||
	    sv_str(v, o, "notes", false, 0, SYNC_TEXT_MAX, S_TEXT, &x->notes) < 0 ||
	    sv_bool(v, o, "clock_trusted", true, &x->clock_trusted) < 0 ||
	    sv_int(v, o, "updated", true, 0, CW_TIME_MAX_MS, &x->updated_ms) < 0)
		return -1;
	if (strcmp(x->id, entity_id) != 0)
		return sv_fail(v, "id", "differs from the entry's entity_id");
	/* whole minutes, rounded (the edge counts seconds) */
	x->duration_min = dur >= 0 ? (dur + 30) / 60 : -1;
	return 0;
}

static int sync_cart(struct sv *v, const char *kind, const cJSON *pl, const char *entity_id,
		     struct cw_sync_item *x)
{
	const cJSON *o;
	const char *fault = NULL;
	bool removed = false;
	size_t n = strlen(v->path);

	if (sv_obj(v, pl, "cart", true, &o) < 0)
		return -1;
	snprintf(v->path + n, sizeof(v->path) - n, ".cart");
	x->op = CW_SYNC_CART;
	x->last_used_ms = 0;
	if (sv_str(v, o, "id", true, 36, 36, S_UUID, &x->id) < 0 ||
	    sv_int(v, o, "cart_number", true, 1, 1000000, &x->cart_number) < 0 ||
	    sv_enum(v, o, "status", sync_cart_states, &x->status) < 0 ||
	    sv_bool(v, o, "is_locked", true, &x->is_locked) < 0 ||
	    sv_bool(v, o, "board_online", true, &x->board_online) < 0 ||
	    sv_int(v, o, "bus_index", true, 0, 255, &x->bus) < 0 ||
	    sv_int(v, o, "board_index", true, 0, 255, &x->board) < 0 ||
	    sv_int(v, o, "lock_index", true, 0, 255, &x->locker_id) < 0 ||
	    sv_bool(v, o, "removed", false, &removed) < 0 ||
	    sv_str(v, o, "fault_reason", false, 0, SYNC_TEXT_MAX, S_TEXT, &fault) < 0 ||
	    sv_str(v, o, "maintenance_notes", false, 0, SYNC_TEXT_MAX, S_TEXT, &x->notes) < 0 ||
	    sv_int(v, o, "last_used", false, 1, CW_TIME_MAX_MS, &x->last_used_ms) < 0 ||
	    sv_int(v, o, "updated", true, 0, CW_TIME_MAX_MS, &x->updated_ms) < 0)
		return -1;
	if (strcmp(x->id, entity_id) != 0)
		return sv_fail(v, "id", "differs from the entry's entity_id");
	/* the cloud has one notes column: a fault's reason goes there when there
	 * is no maintenance note; a removed slot is kept (rentals name it) */
	if (!x->notes && strcmp(x->status, "fault") == 0)
		x->notes = fault;
	if (removed || strcmp(kind, "cart.removed") == 0) {
		x->status = "offline";
		x->notes = "removed from the device's configuration";
	}
	return 0;
}

/* Parses and checks one entry into x; JSON texts it makes are added to
 * texts (freed by the caller). -1 with r->err set on a refusal. */
static int sync_entry(struct sv *v, const cJSON *e, int i, int64_t prev_seq,
		      struct cw_sync_item *x, char **text)
{
	static const char *const keys[] = {"seq",	      "kind",	       "entity_type",
					   "entity_id",	      "created_wall_ms", "clock_trusted",
					   "payload",	      NULL};
	const char *kind, *etype, *eid;
	const cJSON *pl, *o;
	int64_t created = 0, ver = 1;
	bool trusted = false;
	int rc;

	snprintf(v->path, sizeof(v->path), "entries[%d]", i);
	if (!cJSON_IsObject(e))
		return sv_fail(v, NULL, "expected an object");
	for (const cJSON *it = e->child; it; it = it->next) {
		bool known = false;
		for (const char *const *k = keys; *k && !known; k++)
			known = strcmp(*k, it->string) == 0;
		if (!known) {
			if (kind_ok(it->string, S_CODE) && strlen(it->string) <= 40)
				return sv_fail(v, NULL, "unknown field '%s'", it->string);
			return sv_fail(v, NULL, "unknown field");
		}
	}
	if (sv_int(v, e, "seq", true, 1, SYNC_SEQ_MAX, &x->seq) < 0 ||
	    sv_str(v, e, "kind", true, 1, CW_EVENT_TYPE_MAX - 1, S_PRINT, &kind) < 0 ||
	    sv_enum(v, e, "entity_type", sync_entity_types, &etype) < 0 ||
	    sv_str(v, e, "entity_id", true, 1, SYNC_ID_MAX, S_PRINT, &eid) < 0 ||
	    sv_int(v, e, "created_wall_ms", true, 0, CW_TIME_MAX_MS, &created) < 0 ||
	    sv_bool(v, e, "clock_trusted", true, &trusted) < 0 ||
	    sv_obj(v, e, "payload", true, &pl) < 0)
		return -1;
	if (i > 0 && x->seq != prev_seq + 1)
		return sv_fail(v, "seq", "expected %lld (one more than the entry before)",
			       (long long)(prev_seq + 1));
	if (!event_name_ok(kind))
		return sv_fail(v, "kind", "only letters, digits, '.', '_' and '-'");
	snprintf(v->path + strlen(v->path), sizeof(v->path) - strlen(v->path), ".payload");
	/* the payload format of the kinds the cloud reads is version 1; other
	 * kinds are stored as they come */
	if ((strncmp(kind, "rental.", 7) == 0 || strncmp(kind, "cart.", 5) == 0 ||
	     strcmp(kind, "telemetry") == 0 || strcmp(kind, "device.health") == 0 ||
	     strcmp(kind, "command.result") == 0) &&
	    sv_int(v, pl, "v", false, 1, 1, &ver) < 0)
		return -1;
	x->ts_ms = created;
	x->clock_trusted = trusted;
#define SAME_TYPE(t)                                                                       \
	do {                                                                               \
		if (strcmp(etype, t) != 0) {                                               \
			snprintf(v->path, sizeof(v->path), "entries[%d]", i);               \
			return sv_fail(v, "entity_type", "expected " t " for this kind");  \
		}                                                                          \
	} while (0)
	if (strncmp(kind, "rental.", 7) == 0) {
		SAME_TYPE("rental");
		return sync_rental(v, pl, eid, x);
	}
	if (strcmp(kind, "cart.created") == 0 || strcmp(kind, "cart.updated") == 0 ||
	    strcmp(kind, "cart.sensors") == 0 || strcmp(kind, "cart.removed") == 0) {
		SAME_TYPE("cart");
		return sync_cart(v, kind, pl, eid, x);
	}
	if (strcmp(kind, "telemetry") == 0) {
		const char *cart = NULL, *rental = NULL;
		cJSON *data;
		SAME_TYPE("telemetry");
		if (sv_obj(v, pl, "telemetry", true, &o) < 0)
			return -1;
		strncat(v->path, ".telemetry", sizeof(v->path) - strlen(v->path) - 1);
		x->op = CW_SYNC_TELEMETRY;
		if (sv_str(v, o, "event_type", true, 1, CW_EVENT_TYPE_MAX - 1, S_PRINT,
			   &x->event_type) < 0 ||
		    sv_obj(v, o, "event_data", false, &pl) < 0 ||
		    sv_str(v, o, "cart_id", false, 1, SYNC_ID_MAX, S_PRINT, &cart) < 0 ||
		    sv_str(v, o, "rental_id", false, 1, SYNC_ID_MAX, S_PRINT, &rental) < 0 ||
		    sv_int(v, o, "wall_ms", true, 0, CW_TIME_MAX_MS, &x->ts_ms) < 0 ||
		    sv_bool(v, o, "clock_trusted", true, &x->clock_trusted) < 0)
			return -1;
		if (!event_name_ok(x->event_type))
			return sv_fail(v, "event_type", "only letters, digits, '.', '_' and '-'");
		/* the cloud's telemetry has no cart or rental column: they ride in
		 * event_data unless it has keys of those names already */
		data = pl ? cJSON_Duplicate(pl, 1) : cJSON_CreateObject();
		if (data && cart && !cJSON_GetObjectItemCaseSensitive(data, "cart_id"))
			cJSON_AddStringToObject(data, "cart_id", cart);
		if (data && rental && !cJSON_GetObjectItemCaseSensitive(data, "rental_id"))
			cJSON_AddStringToObject(data, "rental_id", rental);
		rc = data ? json_text(v, "event_data", data, CW_CLOUD_SYNC_BODY_MAX, text)
			  : CW_ERR_NOMEM;
		cJSON_Delete(data);
		x->data = *text;
		return rc == CW_OK ? 0 : rc == CW_ERR_NOMEM ? sv_fail(v, NULL, "out of memory") : -1;
	}
	if (strcmp(kind, "device.health") == 0) {
		SAME_TYPE("device");
		if (sv_obj(v, pl, "health", true, &o) < 0)
			return -1;
		x->op = CW_SYNC_HEALTH;
		x->event_type = "device.health";
		rc = json_text(v, "health", o, CW_JSON_IN_MAX, text);
		x->data = *text;
		return rc == CW_OK ? 0 : rc == CW_ERR_NOMEM ? sv_fail(v, NULL, "out of memory") : -1;
	}
	if (strcmp(kind, "command.result") == 0) {
		const cJSON *res = NULL;
		SAME_TYPE("command");
		if (sv_obj(v, pl, "command", true, &o) < 0)
			return -1;
		strncat(v->path, ".command", sizeof(v->path) - strlen(v->path) - 1);
		x->op = CW_SYNC_COMMAND_RESULT;
		if (sv_str(v, o, "id", true, 36, 36, S_UUID, &x->id) < 0 ||
		    sv_enum(v, o, "state", sync_command_states, &x->status) < 0 ||
		    sv_obj(v, o, "result", false, &res) < 0 ||
		    sv_int(v, o, "finished_at", false, 0, CW_TIME_MAX_MS, &x->ts_ms) < 0)
			return -1;
		x->status = strcmp(x->status, "succeeded") == 0 || strcmp(x->status, "done") == 0
				    ? "succeeded"
				    : "failed";
		rc = res ? json_text(v, "result", res, CW_JSON_IN_MAX, text) : CW_OK;
		x->data = *text;
		return rc == CW_OK ? 0 : rc == CW_ERR_NOMEM ? sv_fail(v, NULL, "out of memory") : -1;
	}
#undef SAME_TYPE
	/* anything else is kept as a telemetry row named by its kind
	 * (forward compatibility: nothing a newer edge sends is lost) */
	x->op = CW_SYNC_TELEMETRY;
	x->event_type = kind;
	rc = json_text(v, NULL, pl, CW_CLOUD_SYNC_BODY_MAX, text);
	x->data = *text;
	return rc == CW_OK ? 0 : rc == CW_ERR_NOMEM ? sv_fail(v, NULL, "out of memory") : -1;
}

/* What a batch changes, for the live streams (docs/CLOUD.md "Live updates"):
 * a rental also changes its cart's state on the board. */
static unsigned sync_kinds(const struct cw_sync_item *it, int n)
{
	unsigned kinds = 0;

	for (int i = 0; i < n; i++) {
		switch (it[i].op) {
		case CW_SYNC_RENTAL:
			kinds |= CW_EVENT_RENTALS | CW_EVENT_CARTS;
			break;
		case CW_SYNC_CART:
			kinds |= CW_EVENT_CARTS;
			break;
		case CW_SYNC_TELEMETRY:
			kinds |= CW_EVENT_TELEMETRY;
			break;
		case CW_SYNC_HEALTH:
			kinds |= CW_EVENT_TELEMETRY | CW_EVENT_DEVICES;
			break;
		case CW_SYNC_COMMAND_RESULT:
			kinds |= CW_EVENT_COMMANDS;
			break;
		}
	}
	return kinds;
}

static enum MHD_Result h_sync(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
			      const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"entries", NULL};
	struct cw_sync_item *items = NULL;
	struct cw_sync_result res;
	struct sv v = {.r = r};
	char **texts = NULL;
	const cJSON *entries, *e;
	cJSON *body = NULL, *o;
	int n = 0, i = 0, rc;
	bool ok;
	enum MHD_Result ret = device_caller(a, c, r, seg[2], NULL, &ok);

	if (!ok)
		return ret;
	if (strcmp(method, "GET") == 0) {
		int64_t hw = 0;
		if (only_args(c, r, (const char *const[]){NULL}) < 0)
			return bad_request(c, r);
		rc = cw_store_sync_high_water(a->store, seg[2], &hw);
		if (rc != CW_OK)
			return send_store_err(c, r, rc, "device");
		o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "high_water", (double)hw);
		return send_json(c, r, MHD_HTTP_OK, o);
	}
	/* strict before anything is written: one bad entry refuses the batch */
	if (r->body && !cw_cloud_utf8_ok(r->body)) {
		snprintf(r->err, sizeof(r->err), "body is not valid UTF-8");
		return bad_request(c, r);
	}
	body = body_object(r, keys);
	if (!body)
		return bad_request(c, r);
	entries = cJSON_GetObjectItemCaseSensitive(body, "entries");
	if (!cJSON_IsArray(entries)) {
		snprintf(r->err, sizeof(r->err), "entries: expected an array");
		ret = bad_request(c, r);
		goto out;
	}
	n = cJSON_GetArraySize(entries);
	if (n > SYNC_ENTRIES_MAX) {
		snprintf(r->err, sizeof(r->err), "entries: at most %d in one batch",
			 SYNC_ENTRIES_MAX);
		ret = send_error(c, r, MHD_HTTP_CONTENT_TOO_LARGE, "too_big", "%s", r->err);
		goto out;
	}
	if (!json_keys_ok(body)) {
		snprintf(r->err, sizeof(r->err), "an object has a field twice or more than %d fields",
			 SYNC_OBJECT_KEYS_MAX);
		ret = bad_request(c, r);
		goto out;
	}
	items = calloc((size_t)(n > 0 ? n : 1), sizeof(*items));
	texts = calloc((size_t)(n > 0 ? n : 1), sizeof(*texts));
	if (!items || !texts) {
		ret = send_store_err(c, r, CW_ERR_NOMEM, "batch");
		goto out;
	}
	cJSON_ArrayForEach(e, entries) {
		if (sync_entry(&v, e, i, i > 0 ? items[i - 1].seq : 0, &items[i], &texts[i]) < 0) {
			cw_info("sync.invalid", "device=%s entry=%d", seg[2], i);
			ret = bad_request(c, r);
			goto out;
		}
		i++;
	}
	rc = cw_store_sync_apply(a->store, seg[2], items, n, cw_wall_ms(), &res);
	if (rc == CW_ERR_CONFLICT && res.gap) {
		cw_warn("sync.gap", "device=%s high_water=%lld first=%lld", seg[2],
			(long long)res.high_water, (long long)items[0].seq);
		ret = send_error(c, r, MHD_HTTP_CONFLICT, "sequence_gap", "expected seq %lld",
				 (long long)(res.high_water + 1));
		goto out;
	}
	if (rc == CW_ERR_INVAL && res.bad >= 0) {
		cw_warn("sync.refused", "device=%s entry=%d seq=%lld reason=\"%s\"", seg[2],
			res.bad, (long long)items[res.bad].seq, res.why);
		ret = send_error(c, r, MHD_HTTP_BAD_REQUEST, "invalid", "entries[%d]: %s", res.bad,
				 res.why);
		goto out;
	}
	if (rc != CW_OK) {
		ret = send_store_err(c, r, rc, "batch");
		goto out;
	}
	cw_info("sync.applied", "device=%s applied=%d skipped=%d ignored=%d high_water=%lld",
		seg[2], res.applied, res.skipped, res.ignored, (long long)res.high_water);
	if (res.applied > 0) /* committed: the branch's live streams refetch */
		cw_events_publish(a->events, res.branch_id, sync_kinds(items, n));
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "high_water", (double)res.high_water);
	cJSON_AddNumberToObject(o, "applied", res.applied);
	cJSON_AddNumberToObject(o, "skipped", res.skipped);
	ret = send_json(c, r, MHD_HTTP_OK, o);
out:
	for (int k = 0; texts && k < n; k++)
		cJSON_free(texts[k]);
	free(texts);
	free(items);
	cJSON_Delete(body);
	return ret;
}

/* POST /api/devices/{id}/sync/reset {"high_water": N}: an operator lowers
 * a device's high-water mark after its edge database was replaced or
 * restored (docs/SYNC.md "The cloud ahead of the database",
 * docs/OPERATIONS.md). Chain admins of the device's chain and platform
 * admins; logged as an audit line (warn) with who and the marks. */
static enum MHD_Result h_sync_reset(struct cw_cloud_api *a, struct MHD_Connection *c,
				    struct req *r, const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"high_water", NULL};
	struct cw_device d;
	struct principal p;
	long want = -1;
	int64_t prev = 0, detached = 0;
	cJSON *body, *o;
	bool ok;
	int rc, got;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	(void)method;
	(void)nseg;
	if (!ok)
		return ret;
	ret = load_device(a, c, r, &p, seg[2], &d, &ok);
	if (!ok)
		return ret;
	if (!admins_chain(&p, d.chain_id))
		return forbidden(c, r);
	body = body_object(r, keys);
	if (!body)
		return bad_request(c, r);
	got = field_int(r, body, "high_water", 0, 9007199254740991L, &want);
	cJSON_Delete(body);
	if (got == 0)
		snprintf(r->err, sizeof(r->err), "high_water: missing");
	if (got <= 0)
		return bad_request(c, r);
	rc = cw_store_sync_reset(a->store, d.id, want, cw_wall_ms(), &prev, &detached);
	if (rc == CW_ERR_INVAL) {
		snprintf(r->err, sizeof(r->err), "high_water: %ld is above the current mark %lld "
			 "(raising it would skip entries the cloud never got)", want, (long long)prev);
		return bad_request(c, r);
	}
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "device");
	cw_warn("sync.reset", "device=%s by=%s role=%s previous=%lld high_water=%ld "
		"telemetry_detached=%lld", d.id, p.u.id, cw_role_name(p.u.role), (long long)prev,
		want, (long long)detached);
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "high_water", (double)want);
	cJSON_AddNumberToObject(o, "previous", (double)prev);
	cJSON_AddNumberToObject(o, "telemetry_detached", (double)detached);
	return send_json(c, r, MHD_HTTP_OK, o);
}

/* ---- versioned device configuration (docs/SYNC.md "Down: configuration") ---- */

/* The sections of an edge configuration the cloud may manage, and the JSON
 * type each must have. The edge validates their content with its own parser
 * (it knows its hardware); the cloud checks only this shape, except for
 * kiosk_staff, checked in full by the edge's own parser (cw_staff). A new
 * section is one more line here and in the edge's merge. */
static const struct {
	const char *key;
	int type; /* cJSON_Array or cJSON_Object */
} config_sections[] = {
	{"buses", cJSON_Array},
	{"carts", cJSON_Array},
	{"rules", cJSON_Object},
	{"revoked_tokens", cJSON_Array},
	{"kiosk_staff", cJSON_Array},
};
/* Generated by the cloud for the device's chain and added to the device's
 * own pull (docs/SYNC.md "The chain's customer-token key"); never PUT. */
#define CUSTOMER_KEY_SECTION "customer_token_key"
#define CONFIG_SECTIONS (sizeof(config_sections) / sizeof(config_sections[0]))
/* a token id the kiosk will look up: a UUID in practice, bounded anyway */
#define REVOKED_ID_MAX 64

/* Checks the shape of a PUT body (keys already limited to config_sections):
 * r->err names the section or element at fault. */
static int config_shape(struct req *r, const cJSON *body)
{
	for (size_t i = 0; i < CONFIG_SECTIONS; i++) {
		const cJSON *it = cJSON_GetObjectItemCaseSensitive(body, config_sections[i].key);
		const cJSON *el;
		int k = 0;

		if (!it)
			continue;
		if ((it->type & 0xff) != config_sections[i].type) {
			snprintf(r->err, sizeof(r->err), "%s: expected %s", config_sections[i].key,
				 config_sections[i].type == cJSON_Array ? "an array" : "an object");
			return -1;
		}
		if (strcmp(config_sections[i].key, "kiosk_staff") == 0) {
			struct cw_jsoncfg p;
			cw_jsoncfg_init(&p, r->err, sizeof(r->err));
			if (cw_staff_parse(&p, "kiosk_staff", it, NULL, &k) != CW_OK)
				return -1;
			continue;
		}
		if (config_sections[i].type != cJSON_Array)
			continue;
		cJSON_ArrayForEach(el, it) {
			bool is_tokens = strcmp(config_sections[i].key, "revoked_tokens") == 0;
			if (is_tokens && (!cJSON_IsString(el) || !el->valuestring[0] ||
					  strlen(el->valuestring) > REVOKED_ID_MAX ||
					  !kind_ok(el->valuestring, S_CODE))) {
				snprintf(r->err, sizeof(r->err),
					 "revoked_tokens[%d]: expected a token id (1-%d letters, "
					 "digits, '-' and '_')",
					 k, REVOKED_ID_MAX);
				return -1;
			}
			if (!is_tokens && !cJSON_IsObject(el)) {
				snprintf(r->err, sizeof(r->err), "%s[%d]: expected an object",
					 config_sections[i].key, k);
				return -1;
			}
			k++;
		}
	}
	return 0;
}

/* Is the bearer a device token (whatever its subject)? Decides which of the
 * two callers of GET .../config this is; each is then checked in full. */
static bool bearer_is_device(struct cw_cloud_api *a, struct MHD_Connection *c)
{
	struct cw_jwt_expect e = {.iss = a->cfg.issuer, .aud = a->cfg.audience,
				  .typ = CW_JWT_TYP_DEVICE, .leeway_s = -1};
	const char *tok = bearer(c);
	cJSON *claims = NULL;
	bool yes = tok && cw_jwt_verify(tok, a->pk, &e, &claims, NULL) == CW_OK;

	cJSON_Delete(claims);
	return yes;
}

static enum MHD_Result config_put(struct cw_cloud_api *a, struct MHD_Connection *c,
				  struct req *r, const struct principal *p,
				  const struct cw_device *d)
{
	const char *keys[CONFIG_SECTIONS + 2];
	cJSON *body, *o;
	char *text = NULL;
	int64_t version = 0;
	int rc;
	enum MHD_Result ret;

	if (!admins_chain(p, d->chain_id))
		return forbidden(c, r);
	for (size_t i = 0; i < CONFIG_SECTIONS; i++)
		keys[i] = config_sections[i].key;
	keys[CONFIG_SECTIONS] = CUSTOMER_KEY_SECTION; /* known, to be refused clearly */
	keys[CONFIG_SECTIONS + 1] = NULL;
	body = body_object(r, keys);
	if (!body)
		return bad_request(c, r);
	if (cJSON_HasObjectItem(body, CUSTOMER_KEY_SECTION)) {
		snprintf(r->err, sizeof(r->err), CUSTOMER_KEY_SECTION ": generated by the cloud for "
			 "the device's chain and added to the device's own pull; it cannot be set");
		ret = bad_request(c, r);
		goto out;
	}
	if (config_shape(r, body) < 0) {
		ret = bad_request(c, r);
		goto out;
	}
	text = cJSON_PrintUnformatted(body);
	if (!text) {
		ret = send_store_err(c, r, CW_ERR_NOMEM, "configuration");
		goto out;
	}
	if (strlen(text) > CW_DEVICE_CONFIG_MAX) {
		ret = send_error(c, r, MHD_HTTP_CONTENT_TOO_LARGE, "too_big",
				 "a configuration is at most %d bytes of JSON", CW_DEVICE_CONFIG_MAX);
		goto out;
	}
	rc = cw_store_device_config_put(a->store, d->id, text, p->u.id, cw_wall_ms(), &version);
	if (rc != CW_OK) {
		ret = send_store_err(c, r, rc, "configuration");
		goto out;
	}
	cw_info("device.config", "device=%s version=%lld by=%s", d->id, (long long)version,
		p->u.id);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "device_id", d->id);
	cJSON_AddNumberToObject(o, "version", (double)version);
	ret = send_json(c, r, MHD_HTTP_OK, o);
out:
	cJSON_free(text);
	cJSON_Delete(body);
	return ret;
}

/* Adds "customer_token_key": {"seed": base64url}, the device's chain's
 * customer-token key, to the answer of a pull by the device itself: to
 * every answer (a version, none, unchanged), so that a device nobody gave a
 * configuration has it too. Derived at every pull and part of no version:
 * the seed of one chain never changes. */
static int add_customer_key(struct cw_cloud_api *a, const char *device_id, cJSON *answer)
{
	unsigned char seed[CW_CUSTOMER_SEED_BYTES];
	char b64[sodium_base64_ENCODED_LEN(CW_CUSTOMER_SEED_BYTES, B64URL)];
	struct cw_device d;
	cJSON *k;
	int rc = cw_store_device_get(a->store, device_id, &d);

	if (rc != CW_OK)
		return rc;
	cw_customer_token_seed(a->sk, d.chain_id, seed);
	sodium_bin2base64(b64, sizeof(b64), seed, sizeof(seed), B64URL);
	k = cJSON_AddObjectToObject(answer, CUSTOMER_KEY_SECTION);
	rc = k && cJSON_AddStringToObject(k, "seed", b64) ? CW_OK : CW_ERR_NOMEM;
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(b64, sizeof(b64));
	return rc;
}

/* GET /api/devices/{id}/config?have=N: the device itself (device token) or
 * staff who see its branch; PUT: a chain admin of its chain or a platform
 * admin adds the next version. */
static enum MHD_Result h_device_config(struct cw_cloud_api *a, struct MHD_Connection *c,
				       struct req *r, const char *method, char **seg, int nseg)
{
	static const char *const qargs[] = {"have", NULL};
	const char *have;
	long long have_v = -1;
	int64_t version = 0;
	char *text = NULL;
	cJSON *o, *cfg;
	bool ok, is_device = false;
	int rc;
	enum MHD_Result ret;

	if (strcmp(method, "PUT") == 0 || !bearer_is_device(a, c)) {
		struct principal p;
		struct cw_device d;
		ret = staff(a, c, r, &p, &ok);
		if (!ok)
			return ret;
		ret = load_device(a, c, r, &p, seg[2], &d, &ok);
		if (!ok)
			return ret;
		if (strcmp(method, "PUT") == 0) {
			static const char *const none[] = {NULL};
			if (only_args(c, r, none) < 0)
				return bad_request(c, r);
			return config_put(a, c, r, &p, &d);
		}
	} else {
		ret = device_caller(a, c, r, seg[2], NULL, &ok);
		if (!ok)
			return ret;
		is_device = true;
	}
	if (only_args(c, r, qargs) < 0)
		return bad_request(c, r);
	have = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "have");
	if (have) {
		char *end = NULL;
		have_v = strtoll(have, &end, 10);
		if (!*have || *end || have_v < 0 || have[0] == '-' || have[0] == '+') {
			snprintf(r->err, sizeof(r->err), "have: expected a version number >= 0");
			return bad_request(c, r);
		}
	}
	rc = cw_store_device_config_get(a->store, seg[2], &version, &text);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "configuration");
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "version", (double)version);
	if (have_v == version) {
		cJSON_AddBoolToObject(o, "unchanged", true);
	} else if (!text) {
		cJSON_AddNullToObject(o, "config");
	} else {
		cfg = cJSON_Parse(text);
		if (!cfg) {
			free(text);
			cJSON_Delete(o);
			return send_store_err(c, r, CW_ERR_INTERNAL, "configuration");
		}
		cJSON_AddItemToObject(o, "config", cfg);
	}
	free(text);
	/* the chain's signing seed goes to the device itself only: staff who
	 * read the configuration must not be able to mint tokens */
	if (is_device && (rc = add_customer_key(a, seg[2], o)) != CW_OK) {
		cJSON_Delete(o);
		return send_store_err(c, r, rc, "configuration");
	}
	return send_json(c, r, MHD_HTTP_OK, o);
}

/* The signed form of a command handed to a device (docs/SYNC.md "Commands"):
 * a compact JWS of the cloud's Ed25519 key over {typ: command, iss, aud,
 * jti: id, sub: device, act, args, iat, exp}. NULL when it cannot be made. */
static char *command_token(struct cw_cloud_api *a, const struct cw_command *x)
{
	cJSON *cl = cJSON_CreateObject(), *args = cJSON_Parse(x->args);
	char *tok = NULL;

	if (!cl || !args || !cJSON_IsObject(args))
		goto out;
	cJSON_AddStringToObject(cl, "typ", "command");
	cJSON_AddStringToObject(cl, "iss", a->cfg.issuer);
	cJSON_AddStringToObject(cl, "aud", COMMAND_AUD);
	cJSON_AddStringToObject(cl, "jti", x->id);
	cJSON_AddStringToObject(cl, "sub", x->device_id);
	cJSON_AddStringToObject(cl, "act", x->action);
	cJSON_AddItemToObject(cl, "args", args);
	args = NULL;
	cJSON_AddNumberToObject(cl, "iat", (double)(x->created_ms / 1000));
	cJSON_AddNumberToObject(cl, "exp", (double)(x->expires_ms / 1000));
	if (cw_jwt_sign(cl, a->sk, &tok) != CW_OK)
		tok = NULL;
out:
	cJSON_Delete(args);
	cJSON_Delete(cl);
	return tok;
}

#define MAINT_NOTE_MAX 200

/* The maintenance body's on (required) and note (optional, may be ""). */
static int maint_fields(struct req *r, const cJSON *body, bool *on, char *note, size_t cap)
{
	int got = field_bool(r, body, "on", on);

	if (got == 0)
		snprintf(r->err, sizeof(r->err), "on: missing");
	if (got <= 0)
		return -1;
	return field_str(r, body, "note", false, 0, S_TEXT, note, cap) < 0 ? -1 : 0;
}

/* POST /api/branches/{branch_id}/carts/{id}/unlock: a staff release of one
 * cart (the same as `cartwisectl unlock` at the branch), as a command to the
 * cart's device. Authorised like cart assign: staff who see the branch.
 * POST .../carts/{id}/maintenance {on, note?, expires_in_s?}: the same path
 * with a set_maintenance command (docs/RENTALS.md "Commands": the cart's
 * maintenance state on, or off, which also clears a fault). */
static enum MHD_Result h_cart_unlock(struct cw_cloud_api *a, struct MHD_Connection *c,
				     struct req *r, const char *method, char **seg, int nseg)
{
	static const char *const keys[] = {"expires_in_s", NULL};
	static const char *const maint_keys[] = {"on", "note", "expires_in_s", NULL};
	bool maint = strcmp(seg[5], "maintenance") == 0, on = false;
	const char *action = maint ? "set_maintenance" : "unlock";
	char note[MAINT_NOTE_MAX + 1] = "";
	struct cw_command *cmd = NULL;
	struct cw_cart *cart = NULL;
	struct cw_branch b;
	struct principal p;
	cJSON *body = NULL, *args = NULL;
	char *args_text = NULL;
	long ttl = CART_COMMAND_TTL_S;
	bool ok;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	if (r->len || maint) {
		body = body_object(r, maint ? maint_keys : keys);
		if (!body)
			return bad_request(c, r);
		if (field_int(r, body, "expires_in_s", CART_COMMAND_TTL_MIN_S,
			      CART_COMMAND_TTL_MAX_S, &ttl) < 0 ||
		    (maint && maint_fields(r, body, &on, note, sizeof(note)) < 0)) {
			ret = bad_request(c, r);
			goto out;
		}
	}
	cart = calloc(1, sizeof(*cart));
	cmd = calloc(1, sizeof(*cmd));
	if (!cart || !cmd) {
		ret = send_store_err(c, r, CW_ERR_NOMEM, "command");
		goto out;
	}
	ret = load_cart(a, c, r, &b, seg[4], cart, &ok);
	if (!ok)
		goto out;
	if (!cart->device_id[0]) {
		ret = send_error(c, r, MHD_HTTP_CONFLICT, "conflict",
				 "this cart has no device (no controller) to send the command to");
		goto out;
	}
	args = cJSON_CreateObject();
	cJSON_AddStringToObject(args, "cart_id", cart->id);
	cJSON_AddNumberToObject(args, "cart_number", (double)cart->cart_number);
	if (!maint) {
		cJSON_AddNumberToObject(args, "locker_id", (double)cart->locker_id);
	} else {
		cJSON_AddBoolToObject(args, "on", on);
		if (note[0])
			cJSON_AddStringToObject(args, "note", note);
	}
	args_text = cJSON_PrintUnformatted(args);
	if (!args_text || strlen(args_text) > CW_JSON_IN_MAX) {
		ret = send_store_err(c, r, CW_ERR_NOMEM, "command");
		goto out;
	}
	cw_uuid_v7(cmd->id);
	memcpy(cmd->device_id, cart->device_id, sizeof(cmd->device_id));
	snprintf(cmd->action, sizeof(cmd->action), "%s", action);
	memcpy(cmd->args, args_text, strlen(args_text) + 1);
	memcpy(cmd->created_by, p.u.id, sizeof(cmd->created_by));
	cmd->created_ms = cw_wall_ms();
	cmd->expires_ms = cmd->created_ms + (int64_t)ttl * 1000;
	rc = cw_store_command_create(a->store, cmd);
	if (rc == CW_OK)
		rc = cw_store_command_get(a->store, cmd->id, cmd);
	if (rc != CW_OK) {
		ret = send_store_err(c, r, rc, "command");
		goto out;
	}
	cw_info("command.created", "command=%s device=%s action=%s cart=%s by=%s", cmd->id,
		cmd->device_id, action, cart->id, p.u.id);
	publish_command(a, cmd);
	ret = send_json(c, r, MHD_HTTP_ACCEPTED, command_json(cmd));
out:
	free(cmd);
	free(cart);
	cJSON_free(args_text);
	cJSON_Delete(args);
	cJSON_Delete(body);
	return ret;
}

/* ---- dashboards (issue 7): device list, enrollment code revocation,
 * branch comparison, the caller ---- */

/* GET /api/devices?chain_id=&branch_id=: the devices the caller sees (a
 * manager: of its branches), filtered in SQL. */
static enum MHD_Result h_devices(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				 const char *method, char **seg, int nseg)
{
	static const char *const qargs[] = {"chain_id", "branch_id", "limit", "cursor", NULL};
	const char *chain, *branch;
	struct cw_scope sc;
	struct cw_branch b;
	struct cw_device *rows;
	struct principal p;
	struct cw_page pg;
	char cursor[CW_UUID_STRLEN];
	cJSON *items;
	int n = 0, rc = CW_OK;
	bool ok, more = false;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	(void)method;
	(void)seg;
	(void)nseg;
	if (!ok)
		return ret;
	if (only_args(c, r, qargs) < 0 || page_args(c, r, &pg, cursor) < 0)
		return bad_request(c, r);
	sc = scope_of(&p);
	chain = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "chain_id");
	branch = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "branch_id");
	if ((chain && *chain && !kind_ok(chain, S_UUID)) ||
	    (branch && *branch && !kind_ok(branch, S_UUID))) {
		snprintf(r->err, sizeof(r->err), "%s: expected a lower-case UUID",
			 chain && *chain && !kind_ok(chain, S_UUID) ? "chain_id" : "branch_id");
		return bad_request(c, r);
	}
	if (chain && *chain) {
		if (!sees_chain(&p, chain))
			return not_found(c, r, "chain");
		sc.chain_id = chain;
	}
	if (branch && *branch) {
		/* the branch is authorised itself (404 for one the caller does not see) */
		ret = load_branch(a, c, r, &p, branch, &b, &ok);
		if (!ok)
			return ret;
	}
	rows = calloc((size_t)pg.limit, sizeof(*rows));
	if (!rows)
		return send_store_err(c, r, CW_ERR_NOMEM, "devices");
	/* a branch of another chain than chain_id: no device is both */
	if (!(branch && *branch && chain && *chain && strcmp(b.chain_id, chain) != 0))
		rc = cw_store_device_list(a->store, &sc, branch && *branch ? b.id : NULL, &pg, rows,
					  &n, &more);
	if (rc != CW_OK) {
		free(rows);
		return send_store_err(c, r, rc, "devices");
	}
	items = cJSON_CreateArray();
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(items, device_json(a, &rows[i]));
	ret = send_json(c, r, MHD_HTTP_OK, page_json(items, more, n ? rows[n - 1].id : NULL));
	free(rows);
	return ret;
}

static enum MHD_Result send_no_content(struct MHD_Connection *c, struct req *r)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	r->status = MHD_HTTP_NO_CONTENT;
	ret = MHD_queue_response(c, MHD_HTTP_NO_CONTENT, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* DELETE /api/enrollment-codes/{id}: revokes the code (no use left), like
 * creating one: platform admins, a chain admin of its branch's chain; 404 for
 * a code of a branch the caller does not see, 403 for a manager who does. */
static enum MHD_Result h_enrollment_code(struct cw_cloud_api *a, struct MHD_Connection *c,
					 struct req *r, const char *method, char **seg, int nseg)
{
	struct cw_enrollment_row e;
	struct principal p;
	int rc, err = CW_OK;
	bool ok;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	(void)method;
	(void)nseg;
	if (!ok)
		return ret;
	if (!kind_ok(seg[2], S_UUID))
		return not_found(c, r, "enrollment code");
	rc = cw_store_enrollment_get(a->store, seg[2], &e);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "enrollment code");
	if (!sees_branch(a, &p, e.e.branch_id, e.chain_id, &err))
		return err != CW_OK ? send_store_err(c, r, err, "enrollment code")
				    : not_found(c, r, "enrollment code");
	if (!admins_chain(&p, e.chain_id))
		return forbidden(c, r);
	rc = cw_store_enrollment_revoke(a->store, e.e.id);
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "enrollment code");
	cw_info("enrollment.revoked", "id=%s branch=%s by=%s", e.e.id, e.e.branch_id, p.u.id);
	return send_no_content(c, r);
}

struct compare_items {
	cJSON *items;
};

static int compare_row(void *ctx, const struct cw_branch_compare *x)
{
	struct compare_items *ci = ctx;
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return CW_ERR_NOMEM;
	cJSON_AddStringToObject(o, "branch_id", x->branch_id);
	cJSON_AddStringToObject(o, "code", x->code);
	cJSON_AddStringToObject(o, "name", x->name);
	cJSON_AddBoolToObject(o, "active", x->active);
	cJSON_AddNumberToObject(o, "rentals", (double)x->rentals);
	cJSON_AddNumberToObject(o, "open", (double)x->open);
	/* as the branch's rental stats: (overdue + returned late) / (all but
	 * cancelled); the average over returned ones */
	if (x->rentals - x->cancelled > 0)
		cJSON_AddNumberToObject(o, "overdue_rate",
					(double)(x->overdue + x->returned_late) /
						(double)(x->rentals - x->cancelled));
	else
		cJSON_AddNullToObject(o, "overdue_rate");
	if (x->finished > 0)
		cJSON_AddNumberToObject(o, "average_duration_minutes",
					(double)x->avg_duration_ms / 60000.0);
	else
		cJSON_AddNullToObject(o, "average_duration_minutes");
	cJSON_AddNumberToObject(o, "carts", (double)x->carts);
	cJSON_AddNumberToObject(o, "devices", (double)x->devices);
	cJSON_AddNumberToObject(o, "devices_online", (double)x->devices_online);
	cJSON_AddItemToArray(ci->items, o);
	return CW_OK;
}

/* GET /api/chains/{id}/branch-stats?from=&to=: every branch of the chain side
 * by side (a manager: its branches), rentals started in [from, to) with the
 * branch rental stats' defaults and limit, carts and devices now. */
static enum MHD_Result h_chain_branch_stats(struct cw_cloud_api *a, struct MHD_Connection *c,
					    struct req *r, const char *method, char **seg,
					    int nseg)
{
	struct compare_items ci = {NULL};
	struct principal p;
	struct cw_chain ch;
	int64_t now = cw_wall_ms(), from, to;
	cJSON *o;
	int rc;
	bool ok;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	(void)method;
	(void)nseg;
	if (!ok)
		return ret;
	ret = load_chain(a, c, r, &p, seg[2], &ch, &ok);
	if (!ok)
		return ret;
	if (stats_range(c, r, now, &from, &to) < 0)
		return bad_request(c, r);
	o = cJSON_CreateObject();
	ci.items = cJSON_CreateArray();
	if (!o || !ci.items) {
		cJSON_Delete(o);
		cJSON_Delete(ci.items);
		return send_store_err(c, r, CW_ERR_NOMEM, "branch stats");
	}
	cJSON_AddStringToObject(o, "chain_id", ch.id);
	add_time(o, "from", from);
	add_time(o, "to", to);
	cJSON_AddItemToObject(o, "items", ci.items);
	rc = cw_store_chain_branch_compare(a->store, ch.id,
					   p.u.role == CW_ROLE_BRANCH_MANAGER ? p.u.id : NULL, from,
					   to, now, now - (int64_t)a->cfg.offline_after_s * 1000,
					   compare_row, &ci);
	if (rc != CW_OK) {
		cJSON_Delete(o);
		return send_store_err(c, r, rc, "branch stats");
	}
	return send_json(c, r, MHD_HTTP_OK, o);
}

/* GET /api/auth/me: the caller as the token names it, with the branches a
 * manager manages (read now) and the token's expiry. */
static enum MHD_Result h_auth_me(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				 const char *method, char **seg, int nseg)
{
	struct cw_user_branches br = {.n = 0};
	struct principal p;
	cJSON *claims = NULL, *o, *u, *ids;
	const cJSON *exp;
	int rc;
	bool ok;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	(void)method;
	(void)seg;
	(void)nseg;
	if (!ok)
		return ret;
	if (p.u.role == CW_ROLE_BRANCH_MANAGER) {
		rc = cw_store_user_branches(a->store, p.u.id, &br);
		if (rc != CW_OK)
			return send_store_err(c, r, rc, "user");
	}
	/* verified again (staff() keeps no claims): the expiry is the token's */
	if (verify_token(a, c, CW_JWT_TYP_STAFF, &claims) != CW_OK)
		return send_error(c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
				  "a valid staff token is required");
	exp = cJSON_GetObjectItemCaseSensitive(claims, "exp");
	o = cJSON_CreateObject();
	u = cJSON_AddObjectToObject(o, "user");
	cJSON_AddStringToObject(u, "id", p.u.id);
	cJSON_AddStringToObject(u, "email", p.u.email);
	cJSON_AddStringToObject(u, "role", cw_role_name(p.u.role));
	add_opt_str(u, "chain_id", p.u.chain_id);
	ids = cJSON_AddArrayToObject(u, "branch_ids");
	for (int i = 0; i < br.n; i++)
		cJSON_AddItemToArray(ids, cJSON_CreateString(br.ids[i]));
	add_time(o, "expires_at", cJSON_IsNumber(exp) ? (int64_t)exp->valuedouble * 1000 : 0);
	cJSON_Delete(claims);
	return send_json(c, r, MHD_HTTP_OK, o);
}

/* ---- live events: GET /api/branches/{id}/events (cw_cloud_events.h) ---- */

/* What a stream's keepalive checks (docs/CLOUD.md "Live updates"). */
struct events_check {
	struct cw_cloud_api *a;
	char user_id[CW_UUID_STRLEN];
	char branch_id[CW_UUID_STRLEN];
	char chain_id[CW_UUID_STRLEN];
	int64_t exp_s; /* the staff token's expiry */
};

/* The token has not expired, and its user is still active and still sees
 * the branch; false ends the stream. A database that does not answer ends
 * nothing (the next keepalive asks again). */
static bool events_check(void *ctx)
{
	struct events_check *k = ctx;
	struct principal p;
	int rc, err = CW_OK;

	if (cw_wall_ms() / 1000 >= k->exp_s) {
		cw_info("events.end", "branch=%s user=%s reason=token_expired", k->branch_id,
			k->user_id);
		return false;
	}
	rc = cw_store_user_get(k->a->store, k->user_id, &p.u);
	if (rc == CW_ERR_OFFLINE)
		return true;
	if (rc == CW_OK && p.u.active && sees_branch(k->a, &p, k->branch_id, k->chain_id, &err))
		return true;
	if (rc == CW_OK && err == CW_ERR_OFFLINE)
		return true;
	cw_info("events.end", "branch=%s user=%s reason=access", k->branch_id, k->user_id);
	return false;
}

static enum MHD_Result h_events(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				const char *method, char **seg, int nseg)
{
	struct cw_branch b;
	struct principal p;
	struct events_check *k;
	struct cw_event_stream *st;
	struct MHD_Response *resp;
	const cJSON *exp;
	cJSON *claims = NULL;
	bool ok;
	int rc;
	enum MHD_Result ret = staff(a, c, r, &p, &ok);

	if (!ok)
		return ret;
	ret = load_branch(a, c, r, &p, seg[2], &b, &ok);
	if (!ok)
		return ret;
	if (only_args(c, r, (const char *const[]){NULL}) < 0)
		return bad_request(c, r);
	if (!a->events)
		return send_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
				  "live events are off on this instance");
	/* staff() checked the token; its expiry is what the keepalive checks */
	if (verify_token(a, c, CW_JWT_TYP_STAFF, &claims) != CW_OK)
		return send_error(c, r, MHD_HTTP_UNAUTHORIZED, "unauthorized",
				  "a valid staff token is required");
	exp = cJSON_GetObjectItemCaseSensitive(claims, "exp");
	k = calloc(1, sizeof(*k));
	if (!k) {
		cJSON_Delete(claims);
		return send_store_err(c, r, CW_ERR_NOMEM, "stream");
	}
	k->a = a;
	k->exp_s = cJSON_IsNumber(exp) ? (int64_t)exp->valuedouble : 0;
	cJSON_Delete(claims);
	snprintf(k->user_id, sizeof(k->user_id), "%s", p.u.id);
	snprintf(k->branch_id, sizeof(k->branch_id), "%s", b.id);
	snprintf(k->chain_id, sizeof(k->chain_id), "%s", b.chain_id);
	rc = cw_events_open(a->events, b.id, events_check, k, free, &st);
	if (rc == CW_ERR_LIMIT) {
		cw_warn("events.limit", "max=%d msg=\"listen.max_event_streams reached\"",
			a->cfg.max_event_streams);
		return send_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
				  "too many live event streams on this instance; retry later");
	}
	if (rc == CW_ERR_STATE)
		return send_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
				  "the server is stopping");
	if (rc != CW_OK)
		return send_store_err(c, r, rc, "stream");
	resp = cw_events_response(st, c); /* owns st from here on */
	if (!resp)
		return MHD_NO;
	r->status = MHD_HTTP_OK;
	ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	cw_info("events.open", "branch=%s user=%s", b.id, p.u.id);
	return ret;
}

/* ---- routing ---- */

struct route {
	const char *pattern; /* for logs and 405 */
	const char *segs[MAX_SEGS]; /* "*" = any one segment */
	int nseg;
	const char *methods; /* e.g. "GET POST" */
	handler_fn fn;
};

static const struct route routes[] = {
	{"/api/health", {"api", "health"}, 2, "GET", h_health},
	{"/metrics", {"metrics"}, 1, "GET", h_metrics},
	{"/api/auth/login", {"api", "auth", "login"}, 3, "POST", h_login},
	{"/api/chains", {"api", "chains"}, 2, "GET POST", h_chains},
	{"/api/chains/{id}", {"api", "chains", "*"}, 3, "GET PUT DELETE", h_chain},
	{"/api/chains/{id}/stats", {"api", "chains", "*", "stats"}, 4, "GET", h_chain_stats},
	{"/api/branches", {"api", "branches"}, 2, "GET POST", h_branches},
	{"/api/branches/{id}", {"api", "branches", "*"}, 3, "GET PUT", h_branch},
	{"/api/branches/{id}/stats", {"api", "branches", "*", "stats"}, 4, "GET", h_branch_stats},
	{"/api/branches/{id}/enrollment-codes", {"api", "branches", "*", "enrollment-codes"}, 4,
	 "GET POST", h_enrollment_codes},
	{"/api/devices/register", {"api", "devices", "register"}, 3, "POST", h_register},
	{"/api/devices/{id}", {"api", "devices", "*"}, 3, "GET", h_device},
	{"/api/devices/{id}/status", {"api", "devices", "*", "status"}, 4, "GET", h_device},
	{"/api/devices/{id}/heartbeat", {"api", "devices", "*", "heartbeat"}, 4, "POST",
	 h_heartbeat},
	{"/api/devices/{id}/firmware", {"api", "devices", "*", "firmware"}, 4, "PUT",
	 h_device_firmware},
	{"/api/devices/{id}/token", {"api", "devices", "*", "token"}, 4, "POST", h_device_token},
	{"/api/devices/{id}/revoke-tokens", {"api", "devices", "*", "revoke-tokens"}, 4, "POST",
	 h_device_revoke},
	{"/api/commands/{id}", {"api", "commands", "*"}, 3, "GET", h_command},
	{"/api/branches/{branch_id}/carts", {"api", "branches", "*", "carts"}, 4, "GET", h_carts},
	{"/api/branches/{branch_id}/carts/{id}", {"api", "branches", "*", "carts", "*"}, 5, "GET",
	 h_cart},
	{"/api/branches/{branch_id}/carts/assign", {"api", "branches", "*", "carts", "assign"}, 5,
	 "POST", h_cart_command},
	{"/api/branches/{branch_id}/carts/return", {"api", "branches", "*", "carts", "return"}, 5,
	 "POST", h_cart_command},
	{"/api/branches/{branch_id}/rentals/active", {"api", "branches", "*", "rentals", "active"},
	 5, "GET", h_rentals},
	{"/api/branches/{branch_id}/rentals/history",
	 {"api", "branches", "*", "rentals", "history"}, 5, "GET", h_rentals},
	{"/api/branches/{branch_id}/rentals/stats", {"api", "branches", "*", "rentals", "stats"}, 5,
	 "GET", h_rental_stats},
	{"/api/telemetry/devices/{device_id}", {"api", "telemetry", "devices", "*"}, 4, "GET",
	 h_telemetry},
	{"/api/telemetry/branches/{branch_id}", {"api", "telemetry", "branches", "*"}, 4, "GET",
	 h_telemetry},
	{"/api/users", {"api", "users"}, 2, "GET POST", h_users},
	{"/api/users/{id}", {"api", "users", "*"}, 3, "GET PUT DELETE", h_user},
	{"/api/telemetry/chains/{chain_id}", {"api", "telemetry", "chains", "*"}, 4, "GET",
	 h_telemetry},
	{"/api/devices/{id}/sync", {"api", "devices", "*", "sync"}, 4, "GET POST", h_sync},
	{"/api/devices/{id}/config", {"api", "devices", "*", "config"}, 4, "GET PUT",
	 h_device_config},
	{"/api/devices/{id}/sync/reset", {"api", "devices", "*", "sync", "reset"}, 5, "POST",
	 h_sync_reset},
	{"/api/branches/{branch_id}/carts/{id}/unlock",
	 {"api", "branches", "*", "carts", "*", "unlock"}, 6, "POST", h_cart_unlock},
	{"/api/branches/{id}/events", {"api", "branches", "*", "events"}, 4, "GET", h_events},
	/* dashboards (issue 7) */
	{"/api/auth/me", {"api", "auth", "me"}, 3, "GET", h_auth_me},
	{"/api/devices", {"api", "devices"}, 2, "GET", h_devices},
	{"/api/enrollment-codes/{id}", {"api", "enrollment-codes", "*"}, 3, "DELETE",
	 h_enrollment_code},
	{"/api/chains/{id}/branch-stats", {"api", "chains", "*", "branch-stats"}, 4, "GET",
	 h_chain_branch_stats},
	{"/api/branches/{branch_id}/carts/{id}/maintenance",
	 {"api", "branches", "*", "carts", "*", "maintenance"}, 6, "POST", h_cart_unlock},
	{"/api/branches/{id}/faults", {"api", "branches", "*", "faults"}, 4, "GET", h_branch_faults},
};

_Static_assert(sizeof(routes) / sizeof(routes[0]) + 1 < METRIC_ROUTES, "raise METRIC_ROUTES");

static int route_count(void)
{
	return (int)(sizeof(routes) / sizeof(routes[0]));
}

/* idx == route_count(): requests that matched no route; ROUTE_DASHBOARD */
static const char *route_pattern(int idx)
{
	if (idx == ROUTE_DASHBOARD)
		return "dashboard";
	return idx >= 0 && idx < route_count() ? routes[idx].pattern : "unmatched";
}

void cw_cloud_api_print_routes(FILE *f)
{
	for (int i = 0; i < route_count(); i++) {
		char methods[32], *save = NULL;
		snprintf(methods, sizeof(methods), "%s", routes[i].methods);
		for (char *m = strtok_r(methods, " ", &save); m; m = strtok_r(NULL, " ", &save))
			fprintf(f, "%s %s\n", m, routes[i].pattern);
	}
}

static bool method_in(const char *methods, const char *m)
{
	size_t n = strlen(m);

	for (const char *p = methods; (p = strstr(p, m)); p += n)
		if ((p == methods || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
			return true;
	return false;
}

/* Anything outside /api/ and /metrics: the web dashboard's files from
 * web.dashboard_dir (cw_static.h; docs/DASHBOARD.md "Serving"). */
static enum MHD_Result send_dashboard(struct cw_cloud_api *a, struct MHD_Connection *c,
				      struct req *r, const char *url, const char *method)
{
	const struct cw_static_site site = {
		.root = a->cfg.dashboard_dir,
		.csp = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
		.html_cache = "no-cache",
	};
	struct MHD_Response *resp;
	unsigned status = 0;
	enum MHD_Result ret;

	r->route = "dashboard";
	r->route_idx = ROUTE_DASHBOARD;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return send_error(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
				  "the dashboard allows GET HEAD");
	resp = cw_static_site_response(&site, url, &status);
	if (!resp)
		return MHD_NO;
	r->status = (int)status;
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result dispatch(struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r,
				const char *url, const char *method)
{
	char path[512], *seg[MAX_SEGS + 1], *save = NULL, *tok;
	int nseg = 0;

	if (strncmp(url, "/api/", 5) != 0 && strcmp(url, "/api") != 0 && strcmp(url, "/metrics") != 0)
		return send_dashboard(a, c, r, url, method);

	if (strlen(url) >= sizeof(path))
		return send_error(c, r, MHD_HTTP_URI_TOO_LONG, "too_big", "path too long");
	snprintf(path, sizeof(path), "%s", url);
	for (tok = strtok_r(path, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (nseg == MAX_SEGS)
			return not_found(c, r, "route");
		seg[nseg++] = tok;
	}
	seg[nseg] = NULL;
	/* fewest wildcards first, so that /api/devices/register is not {id}
	 * and /carts/assign is not /carts/{id} */
	for (int pass = 0; pass <= MAX_SEGS; pass++) {
		for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
			const struct route *rt = &routes[i];
			bool match = rt->nseg == nseg;
			int wild = 0;
			for (int k = 0; match && k < nseg; k++) {
				if (strcmp(rt->segs[k], "*") == 0)
					wild++;
				else
					match = strcmp(rt->segs[k], seg[k]) == 0;
			}
			if (!match || wild != pass)
				continue;
			r->route = rt->pattern;
			r->route_idx = (int)i;
			if (!method_in(rt->methods, method))
				return send_error(c, r, MHD_HTTP_METHOD_NOT_ALLOWED,
						  "method_not_allowed", "%s allows %s", rt->pattern,
						  rt->methods);
			if (r->too_big)
				return send_error(c, r, MHD_HTTP_CONTENT_TOO_LARGE, "too_big",
						  "request body over %zu bytes", r->body_max);
			return rt->fn(a, c, r, method, seg, nseg);
		}
	}
	return not_found(c, r, "route");
}

static bool is_trusted_proxy(const struct cw_cloud_api *a, const unsigned char key[16])
{
	for (int i = 0; i < a->cfg.n_trusted_proxies; i++)
		if (memcmp(a->cfg.trusted_proxies[i], key, 16) == 0)
			return true;
	return false;
}

/* The canonical text of a 16-byte address (cw_cloud_addr_key): IPv4 as
 * a.b.c.d, IPv6 as inet_ntop writes it, so that one address has one
 * spelling in the log and in the rate limiter's key ("::FFFF:10.0.0.1",
 * "0:0::ffff:10.0.0.1" and "10.0.0.1" are the same client). */
static void addr_text(const unsigned char key[16], char *out, size_t cap)
{
	if (cw_cloud_addr_is_v4(key))
		inet_ntop(AF_INET, key + 12, out, (socklen_t)cap);
	else
		inet_ntop(AF_INET6, key, out, (socklen_t)cap);
}

/* Every X-Forwarded-For header, in order, joined with commas; when longer
 * than the buffer only its right end is kept, cut at a comma (the walk
 * reads from the right, and an entry cut in two must not pass for an
 * address). A client's own header comes first (HAProxy adds a line after
 * it), so reading only the first header would believe the client. */
struct xff_acc {
	char buf[1024];
	size_t len;
	bool cut;
};

static enum MHD_Result xff_collect(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	struct xff_acc *x = cls;
	const size_t cap = sizeof(x->buf) - 1;
	size_t n, need;

	(void)kind;
	if (!key || !value || strcasecmp(key, "X-Forwarded-For") != 0)
		return MHD_YES;
	n = strlen(value);
	need = (x->len ? 1 : 0) + n;
	if (n > cap) { /* this header alone is too long: its right end */
		value += n - cap;
		n = need = cap;
		x->len = 0;
		x->cut = true;
	} else if (x->len + need > cap) { /* drop from the left */
		size_t drop = x->len + need - cap;
		memmove(x->buf, x->buf + drop, x->len - drop);
		x->len -= drop;
		x->cut = true;
	}
	if (x->len)
		x->buf[x->len++] = ',';
	memcpy(x->buf + x->len, value, n);
	x->len += n;
	x->buf[x->len] = '\0';
	return MHD_YES;
}

/* Behind a reverse proxy listed in listen.trusted_proxies, the client is the
 * rightmost X-Forwarded-For entry that is not itself a trusted proxy (each
 * proxy appends the address it saw; entries left of an untrusted one could
 * be written by the client, so they are never believed). From any other
 * peer the header is ignored. r->ip (canonical text) is what the access log
 * and the login rate limit use. */
static void proxied_client(const struct cw_cloud_api *a, struct MHD_Connection *c, struct req *r)
{
	struct xff_acc x = {.len = 0, .cut = false};
	char *end, *start, *list = x.buf;
	unsigned char key[16];

	if (!cw_cloud_addr_key(r->ip, key))
		return;
	addr_text(key, r->ip, sizeof(r->ip));
	if (!a->cfg.n_trusted_proxies || !is_trusted_proxy(a, key))
		return;
	MHD_get_connection_values(c, MHD_HEADER_KIND, xff_collect, &x);
	if (!x.len)
		return;
	if (x.cut) { /* the left end may be half an entry: start after a comma */
		char *comma = strchr(list, ',');
		if (!comma)
			return;
		list = comma + 1;
	}
	end = list + strlen(list);
	while (end > list) {
		start = end;
		while (start > list && start[-1] != ',')
			start--;
		*end = '\0';
		end = start > list ? start - 1 : list;
		while (*start == ' ' || *start == '\t')
			start++;
		for (char *t = start + strlen(start); t > start && (t[-1] == ' ' || t[-1] == '\t');)
			*--t = '\0';
		if (strlen(start) >= INET6_ADDRSTRLEN || !cw_cloud_addr_key(start, key))
			return; /* not an address: keep the last one believed */
		addr_text(key, r->ip, sizeof(r->ip));
		if (!is_trusted_proxy(a, key))
			return;
	}
}

/* The body limit of a request, decided before its body is read: a sync batch
 * (POST /api/devices/{id}/sync) may be up to CW_CLOUD_SYNC_BODY_MAX, but only
 * with a device token of that device, so that nobody else makes the server
 * buffer a megabyte. Revocation is checked by the handler as usual. */
static size_t body_limit(struct cw_cloud_api *a, struct MHD_Connection *c, const char *url,
			 const char *method)
{
	static const char pre[] = "/api/devices/";
	struct cw_jwt_expect e = {.iss = a->cfg.issuer, .aud = a->cfg.audience,
				  .typ = CW_JWT_TYP_DEVICE, .leeway_s = -1};
	const char *tok = bearer(c), *id, *end, *sub;
	cJSON *claims = NULL;
	bool ok;

	if (strcmp(method, "POST") != 0 || strncmp(url, pre, sizeof(pre) - 1) != 0 || !tok)
		return CW_CLOUD_BODY_MAX;
	id = url + sizeof(pre) - 1;
	end = strchr(id, '/');
	if (!end || strcmp(end, "/sync") != 0 || end - id != CW_UUID_STRLEN - 1)
		return CW_CLOUD_BODY_MAX;
	if (cw_jwt_verify(tok, a->pk, &e, &claims, NULL) != CW_OK)
		return CW_CLOUD_BODY_MAX;
	sub = claim_str(claims, "sub");
	ok = sub && strncmp(sub, id, CW_UUID_STRLEN - 1) == 0 && strlen(sub) == CW_UUID_STRLEN - 1;
	cJSON_Delete(claims);
	return ok ? CW_CLOUD_SYNC_BODY_MAX : CW_CLOUD_BODY_MAX;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct cw_cloud_api *a = cls;
	struct req *r = *con_cls;

	if (!r) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->t0 = cw_mono_ms();
		r->t0_us = mono_us();
		r->route = "-";
		r->route_idx = -1;
		snprintf(r->ip, sizeof(r->ip), "-");
		if (ci && ci->client_addr) {
			const struct sockaddr *sa = ci->client_addr;
			if (sa->sa_family == AF_INET)
				inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
					  r->ip, sizeof(r->ip));
			else if (sa->sa_family == AF_INET6)
				inet_ntop(AF_INET6,
					  &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
					  r->ip, sizeof(r->ip));
		}
		proxied_client(a, c, r);
		r->body_max = body_limit(a, c, url, method);
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_size) {
		/* bounded: past the limit the rest is read and dropped, then 413 */
		if (!r->too_big && r->len + *upload_size <= r->body_max) {
			char *nb = realloc(r->body, r->len + *upload_size + 1);
			if (!nb)
				return MHD_NO;
			r->body = nb;
			memcpy(r->body + r->len, upload, *upload_size);
			r->len += *upload_size;
			r->body[r->len] = '\0';
		} else {
			r->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	return dispatch(a, c, r, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req *r = *con_cls;

	if (!r)
		return;
	{
		struct cw_cloud_api *a = cls;
		int64_t us = mono_us() - r->t0_us;
		int ri = r->route_idx >= 0 ? r->route_idx : route_count();
		size_t k = 0, b = 0;

		while (k < METRIC_NSTATUS - 1 && metric_status[k] != r->status)
			k++;
		while (b < METRIC_NLE && (double)us / 1e6 > metric_le[b])
			b++;
		atomic_fetch_add(&a->m.requests[ri][k], 1);
		atomic_fetch_add(&a->m.le[ri][b], 1);
		atomic_fetch_add(&a->m.sum_us[ri], (unsigned long long)(us > 0 ? us : 0));
		atomic_fetch_add(&a->m.count[ri], 1);
	}
	cw_info("http.request", "route=%s status=%d ms=%lld", r->route, r->status,
		(long long)(cw_mono_ms() - r->t0));
	if (r->body) {
		/* may have held a password */
		sodium_memzero(r->body, r->len);
		free(r->body);
	}
	free(r);
	*con_cls = NULL;
}

int cw_cloud_api_new(const struct cw_cloud_api_params *p, struct cw_cloud_api **out)
{
	struct cw_cloud_api *a;
	struct sockaddr_storage ss;
	/* MHD_USE_AUTO: epoll on Linux, so the number of connections is not
	 * bounded by select()'s FD_SETSIZE (a thousand devices, issue 4).
	 * MHD_ALLOW_SUSPEND_RESUME: live event streams sleep as suspended
	 * connections (cw_cloud_events.h); it also sets MHD_USE_ITC, so that a
	 * resume from another thread wakes the pool thread's poll at once. */
	unsigned int flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
			     MHD_ALLOW_SUSPEND_RESUME;
	const union MHD_DaemonInfo *di;
	char pw[32];
	int rc = CW_ERR_IO;

	*out = NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return CW_ERR_NOMEM;
	a->cfg = *p->cfg;
	a->store = p->store;
	a->mqtt = p->mqtt;
	a->events = p->events;
	memcpy(a->sk, p->sk, sizeof(a->sk));
	crypto_sign_ed25519_sk_to_pk(a->pk, a->sk);
	sodium_bin2base64(a->pk_b64, sizeof(a->pk_b64), a->pk, sizeof(a->pk), B64URL);
	/* enrollment hash key: a subkey of the signing key's seed (libsodium KDF) */
	crypto_kdf_derive_from_key(a->enroll_key, sizeof(a->enroll_key), 1, "cwenroll", a->sk);
	/* login limiter hash key: another subkey (own context) of the same seed */
	crypto_kdf_derive_from_key(a->login_key, sizeof(a->login_key), 1, "cwlogins", a->sk);
	randombytes_buf(pw, sizeof(pw));
	if (cw_cloud_hash_password(&a->cfg, pw, sizeof(pw), a->dummy_hash,
				   sizeof(a->dummy_hash)) != CW_OK) {
		rc = CW_ERR_NOMEM;
		goto fail;
	}
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, a->cfg.listen_address, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)a->cfg.listen_port);
	} else if (inet_pton(AF_INET6, a->cfg.listen_address,
			     &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)a->cfg.listen_port);
		flags |= MHD_USE_IPv6;
	} else {
		rc = CW_ERR_CONFIG;
		goto fail;
	}
	if (p->tls_cert_pem && p->tls_key_pem) {
		a->tls_cert = strdup(p->tls_cert_pem);
		a->tls_key = strdup(p->tls_key_pem);
		if (!a->tls_cert || !a->tls_key) {
			rc = CW_ERR_NOMEM;
			goto fail;
		}
		flags |= MHD_USE_TLS;
	}
	if (a->tls_cert)
		a->d = MHD_start_daemon(flags, (uint16_t)a->cfg.listen_port, NULL, NULL, on_request, a,
					MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
					MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)a->cfg.threads,
					MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
					MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
					MHD_OPTION_HTTPS_MEM_CERT, a->tls_cert,
					MHD_OPTION_HTTPS_MEM_KEY, a->tls_key, MHD_OPTION_END);
	else
		a->d = MHD_start_daemon(flags, (uint16_t)a->cfg.listen_port, NULL, NULL, on_request, a,
					MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
					MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)a->cfg.threads,
					MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
					MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30, MHD_OPTION_END);
	if (!a->d) {
		cw_error("api.start", "address=%s port=%d msg=\"cannot listen (address in use, or "
			 "bad TLS certificate/key)\"", a->cfg.listen_address, a->cfg.listen_port);
		rc = CW_ERR_IO;
		goto fail;
	}
	di = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
	a->port = di ? di->port : a->cfg.listen_port;
	if (a->cfg.dashboard_dir[0]) {
		struct stat st;
		if (stat(a->cfg.dashboard_dir, &st) != 0 || !S_ISDIR(st.st_mode))
			cw_warn("dashboard.missing", "dir=%s msg=\"web.dashboard_dir is not a "
				"directory: the dashboard answers 404\"", a->cfg.dashboard_dir);
	}
	*out = a;
	return CW_OK;
fail:
	cw_cloud_api_free(a);
	return rc;
}

int cw_cloud_api_port(const struct cw_cloud_api *a)
{
	return a->port;
}

void cw_cloud_api_free(struct cw_cloud_api *a)
{
	if (!a)
		return;
	/* MHD_stop_daemon must not meet a suspended connection: the streams
	 * end first (each only has its last chunk to write) */
	if (a->d)
		cw_events_shutdown(a->events, EVENTS_SHUTDOWN_MS);
	if (a->d)
		MHD_stop_daemon(a->d);
	sodium_memzero(a->sk, sizeof(a->sk));
	sodium_memzero(a->enroll_key, sizeof(a->enroll_key));
	sodium_memzero(a->login_key, sizeof(a->login_key));
	if (a->tls_key) {
		sodium_memzero(a->tls_key, strlen(a->tls_key));
		free(a->tls_key);
	}
	free(a->tls_cert);
	free(a);
}
