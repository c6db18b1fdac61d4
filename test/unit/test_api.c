/* test_api.c - the local HTTP API against a real engine (SQLite in a temp
 * dir) with a fake lock bus, through a real HTTP client (libcurl).
 *
 * Every route on success and failure; auth; 404/405/413/400; engine errors
 * mapped to statuses; SQL metacharacters harmless; the database unchanged
 * after bad input; a blocking rent does not stall other requests; the log
 * never carries the token or a body. */
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cw_api.h"
#include "cw_clock.h"
#include "cw_engine.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_testutil.h"
#include "cw_uuid.h"

#define TOKEN "test-token-0123456789abcdef"
#define BRANCH "branch-7"
#define NLOCKS 4
#define NBOARDS 2
#define NCARTS (NLOCKS * NBOARDS)

/* ---- fake hardware ---- */
static atomic_int hw_result;   /* what unlock returns */
static atomic_int hw_delay_ms; /* how long it blocks */
static atomic_int hw_calls;

static int fake_unlock(void *ctx, int bus, int board, int lock, int64_t *latency_ms)
{
	(void)ctx;
	(void)bus;
	(void)board;
	(void)lock;
	atomic_fetch_add(&hw_calls, 1);
	if (atomic_load(&hw_delay_ms))
		cw_sleep_ms(atomic_load(&hw_delay_ms));
	if (latency_ms)
		*latency_ms = 7;
	return atomic_load(&hw_result);
}

static cJSON *fake_buses_json(void *ctx)
{
	cJSON *a = cJSON_CreateArray(), *b = cJSON_CreateObject();
	(void)ctx;
	cJSON_AddStringToObject(b, "name", "bus0");
	cJSON_AddItemToArray(a, b);
	return a;
}

static int fake_scan(void *ctx, const char *bus, int first, int last, cJSON **out)
{
	cJSON *a, *o;
	(void)ctx;
	if (strcmp(bus, "bus0") != 0)
		return CW_ERR_NOTFOUND;
	a = cJSON_CreateArray();
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "address", first < 0 ? 1 : first);
	cJSON_AddStringToObject(o, "result", "ok");
	cJSON_AddItemToArray(a, o);
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "address", last < 0 ? 247 : last);
	cJSON_AddStringToObject(o, "result", "garbled");
	cJSON_AddItemToArray(a, o);
	*out = a;
	return CW_OK;
}

/* ---- fixture ---- */
static char dir[256], dbpath[512], logpath[512];
static struct cw_engine *eng;
static struct cw_api *api;
static char base[64];
static bool errors_expected; /* a test that provokes error-level logs says so */

static void board_bits(int board, uint32_t present, uint32_t hook)
{
	struct cw_board_status st = {.hook_closed = hook, .present = present};
	cw_engine_on_board_status(eng, 0, board, &st);
}

static void setup(void)
{
	struct cw_engine_config ec;
	struct cw_cart_map carts[NCARTS];
	struct cw_engine_hw hw = {.unlock = fake_unlock};
	struct cw_api_hooks hooks = {.buses_json = fake_buses_json, .scan = fake_scan};

	ck_assert_int_ge(sodium_init(), 0);
	/* as meson's test environment does; set here (before any thread) so the
	 * override's warning can be asserted when run by hand too */
	setenv("CW_CLOCK_TRUSTED", "1", 1);
	ck_assert_int_eq(cw_test_tmpdir(dir, sizeof(dir)), CW_OK);
	hooks.web_root = dir; /* the kiosk page's files: none until a test writes one */
	/* the log goes to a file so tests can read what was logged */
	snprintf(logpath, sizeof(logpath), "%s/log", dir);
	ck_assert_ptr_nonnull(freopen(logpath, "w", stderr));
	setvbuf(stderr, NULL, _IONBF, 0);

	memset(&ec, 0, sizeof(ec));
	snprintf(dbpath, sizeof(dbpath), "%s/edge.db", dir);
	snprintf(ec.db_path, sizeof(ec.db_path), "%s", dbpath);
	snprintf(ec.chain_id, sizeof(ec.chain_id), "chain-1");
	snprintf(ec.branch_id, sizeof(ec.branch_id), BRANCH);
	snprintf(ec.device_id, sizeof(ec.device_id), "dev-1");
	cw_rules_defaults(&ec.rules);
	for (int i = 0; i < NCARTS; i++) {
		carts[i].number = i + 1;
		carts[i].bus_index = 0;
		carts[i].board_index = i / NLOCKS;
		carts[i].lock = i % NLOCKS;
	}
	ec.ncarts = NCARTS;
	ec.carts = carts;
	errors_expected = false;
	atomic_store(&hw_result, CW_OK);
	atomic_store(&hw_delay_ms, 0);
	atomic_store(&hw_calls, 0);
	ck_assert_int_eq(cw_engine_new(&ec, &hw, &eng), CW_OK);
	/* every slot holds a cart, hook closed */
	for (int b = 0; b < NBOARDS; b++)
		board_bits(b, 0xF, 0xF);
	ck_assert_int_eq(cw_api_new("127.0.0.1", 0, TOKEN, eng, &hooks, &api), CW_OK);
	ck_assert_int_gt(cw_api_port(api), 0);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", cw_api_port(api));
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
	unsigned long errs = cw_log_error_count();

	ck_assert_msg(errors_expected || errs == 0, "%lu unexpected error-level log lines (see %s)",
		      errs, logpath);
	cw_api_free(api);
	api = NULL;
	cw_engine_free(eng);
	eng = NULL;
	curl_global_cleanup();
	cw_test_rmrf(dir);
}

/* ---- HTTP client ---- */
struct resp {
	long status;
	char *body;
	size_t len;
	char allow[64];
	char www_auth[64];
	cJSON *json;
};

static size_t on_body(char *d, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	char *p = realloc(r->body, r->len + sz * n + 1);
	ck_assert_ptr_nonnull(p);
	r->body = p;
	memcpy(r->body + r->len, d, sz * n);
	r->len += sz * n;
	r->body[r->len] = '\0';
	return sz * n;
}

static size_t on_header(char *d, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	size_t len = sz * n;
	if (len > 7 && strncasecmp(d, "Allow: ", 7) == 0)
		snprintf(r->allow, sizeof(r->allow), "%.*s", (int)strcspn(d + 7, "\r\n"), d + 7);
	if (len > 18 && strncasecmp(d, "WWW-Authenticate: ", 18) == 0)
		snprintf(r->www_auth, sizeof(r->www_auth), "%.*s", (int)strcspn(d + 18, "\r\n"),
			 d + 18);
	return len;
}

/* auth: NULL = the right token, "" = no header, else the whole header value. */
static struct resp http_x(const char *method, const char *path, const char *body, size_t blen,
			  const char *auth, bool chunked)
{
	struct curl_slist *h = NULL;
	struct resp r = {0};
	char url[1024], hdr[512];
	CURL *c = curl_easy_init();

	ck_assert_ptr_nonnull(c);
	snprintf(url, sizeof(url), "%s%s", base, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	if (!auth) {
		snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", TOKEN);
		h = curl_slist_append(h, hdr);
	} else if (*auth) {
		snprintf(hdr, sizeof(hdr), "Authorization: %s", auth);
		h = curl_slist_append(h, hdr);
	}
	h = curl_slist_append(h, "Expect:");
	if (body) {
		h = curl_slist_append(h, "Content-Type: application/json");
		if (chunked) {
			h = curl_slist_append(h, "Transfer-Encoding: chunked");
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		} else {
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)blen);
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		}
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	r.json = r.body ? cJSON_ParseWithLength(r.body, r.len) : NULL;
	return r;
}

static struct resp http(const char *method, const char *path, const char *body)
{
	return http_x(method, path, body, body ? strlen(body) : 0, NULL, false);
}

static void resp_free(struct resp *r)
{
	free(r->body);
	cJSON_Delete(r->json);
}

/* Sends an assign request with the given Content-Length header and no body
 * over a raw socket (libcurl would insist on sending that many bytes), and
 * returns the status of the answer, 0 when there is none. */
static int raw_status(const char *content_length)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cw_api_port(api))};
	char req[512], buf[256];
	ssize_t n;
	size_t got = 0;
	int fd, status = 0;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(req, sizeof(req),
		 "POST /api/branches/" BRANCH "/carts/assign HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		 "Authorization: Bearer " TOKEN "\r\nContent-Type: application/json\r\n"
		 "Content-Length: %s\r\n\r\n",
		 content_length);
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0) {
		got += (size_t)n;
		if (memchr(buf, '\n', got))
			break;
	}
	buf[got] = '\0';
	close(fd);
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
		status = 0;
	return status;
}

/* Asserts an error answer: status, exact shape, code. */
#define ck_error(r, st, codename)                                                                  \
	do {                                                                                       \
		const cJSON *e_ = cJSON_GetObjectItemCaseSensitive((r).json, "error");             \
		ck_assert_msg((r).status == (st), "status %ld, want %d: %s", (r).status, (st),     \
			      (r).body ? (r).body : "");                                            \
		ck_assert_msg(cJSON_IsObject(e_), "no error object: %s", (r).body ? (r).body : "");  \
		ck_assert_int_eq(cJSON_GetArraySize((r).json), 1);                                  \
		ck_assert_int_eq(cJSON_GetArraySize(e_), 2);                                        \
		ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e_, "code")), \
				 (codename));                                                      \
		ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e_, "message")));        \
	} while (0)

static const char *jstr(const cJSON *o, const char *k)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static double jnum(const cJSON *o, const char *k)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
	ck_assert_msg(cJSON_IsNumber(it), "%s is not a number", k);
	return it->valuedouble;
}

/* A fingerprint of everything the engine stores (rentals, carts, outbox,
 * telemetry), read through a second connection. */
static char *db_fingerprint(void)
{
	static const char *const q[] = {
		"SELECT count(*) || ':' || coalesce(group_concat(id || status || user_phone || "
		"coalesce(notes,''), ','), '') FROM rentals",
		"SELECT group_concat(cart_number || status || coalesce(maintenance_notes,'') || "
		"coalesce(reserved_for_rental,''), ',') FROM carts",
		"SELECT count(*) || ':' || coalesce(max(seq), 0) FROM outbox",
		"SELECT count(*) FROM telemetry",
	};
	sqlite3 *db;
	char *out = calloc(1, 1);
	size_t len = 0;

	ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		sqlite3_stmt *st;
		const char *t;
		ck_assert_int_eq(sqlite3_prepare_v2(db, q[i], -1, &st, NULL), SQLITE_OK);
		ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
		t = (const char *)sqlite3_column_text(st, 0);
		t = t ? t : "";
		out = realloc(out, len + strlen(t) + 2);
		memcpy(out + len, t, strlen(t));
		len += strlen(t);
		out[len++] = '|';
		out[len] = '\0';
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return out;
}

static char *read_log(void)
{
	FILE *f = fopen(logpath, "r");
	char *buf = calloc(1, 1 << 20);
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void rent_ok(const char *phone, char rental_id[40], int *cart)
{
	char body[128];
	struct resp r;

	snprintf(body, sizeof(body), "{\"phone\": \"%s\"}", phone);
	r = http("POST", "/api/branches/" BRANCH "/carts/assign", body);
	ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body);
	if (rental_id)
		snprintf(rental_id, 40, "%s", jstr(r.json, "rental_id"));
	if (cart)
		*cart = (int)jnum(r.json, "cart_number");
	resp_free(&r);
}

/* ---- tests ---- */

START_TEST(health_needs_no_token)
{
	/* public (load balancers, monitoring): status and version only */
	struct resp r = http_x("GET", "/api/health", NULL, 0, "", false);

	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(r.json, "status"), "ok");
	ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r.json, "version")));
	ck_assert_int_eq(cJSON_GetArraySize(r.json), 2);
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(r.json, "branch_id"));
	resp_free(&r);
	/* a wrong token is no error here, and tells no more */
	r = http_x("GET", "/api/health", NULL, 0, "Bearer test-token-0123456789abcdeX", false);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(cJSON_GetArraySize(r.json), 2);
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(r.json, "branch_id"));
	resp_free(&r);
	/* with the admin token it names the branch (cartwisectl asks here) */
	r = http("GET", "/api/health", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(r.json, "status"), "ok");
	ck_assert_str_eq(jstr(r.json, "branch_id"), BRANCH);
	resp_free(&r);
}
END_TEST

START_TEST(auth_is_required_and_checked)
{
	static const char *const bad[] = {
		"",                                  /* no header */
		"Bearer",                            /* no token */
		"Bearer wrong",                      /* wrong length */
		"Bearer test-token-0123456789abcdeX", /* same length, one byte off */
		"Bearer " TOKEN "x",                 /* prefix of a longer one */
		"Basic " TOKEN,                      /* wrong scheme */
		TOKEN,                               /* no scheme */
	};
	struct resp r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = http_x("GET", "/api/branches/" BRANCH "/carts", NULL, 0, bad[i], false);
		ck_error(r, 401, "unauthorized");
		ck_assert_str_eq(r.www_auth, "Bearer");
		resp_free(&r);
		/* admin routes and POSTs too, before any body is looked at */
		r = http_x("POST", "/api/admin/carts/1/unlock", "{}", 2, bad[i], false);
		ck_error(r, 401, "unauthorized");
		resp_free(&r);
	}
	ck_assert_int_eq(atomic_load(&hw_calls), 0);
	/* scheme is case-insensitive (RFC 7235 §2.1) */
	r = http_x("GET", "/api/branches/" BRANCH "/carts", NULL, 0, "bearer " TOKEN, false);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
}
END_TEST

START_TEST(unknown_routes_branches_and_methods)
{
	static const char *const nf[] = {
		"/", "/api", "/api/nope", "/api/health/", "/api/branches/" BRANCH "/nope",
		"/api/branches/" BRANCH "/carts/1/x", "/api//health", "/api/admin/carts",
		"/api/branches/other-branch/carts", "/api/branches/other-branch/rentals/active",
		"/api/branches/x/carts/1",
	};
	struct resp r;

	for (size_t i = 0; i < sizeof(nf) / sizeof(nf[0]); i++) {
		r = http("GET", nf[i], NULL);
		ck_error(r, 404, "not_found");
		resp_free(&r);
	}
	/* an unknown branch on a POST changes nothing */
	r = http("POST", "/api/branches/other/carts/assign", "{\"phone\":\"0501234567\"}");
	ck_error(r, 404, "not_found");
	resp_free(&r);
	ck_assert_int_eq(atomic_load(&hw_calls), 0);

	r = http_x("POST", "/api/health", "{}", 2, "", false);
	ck_error(r, 405, "invalid");
	ck_assert_str_eq(r.allow, "GET");
	resp_free(&r);
	r = http("GET", "/api/branches/" BRANCH "/carts/assign", NULL);
	ck_error(r, 405, "invalid");
	ck_assert_str_eq(r.allow, "POST");
	resp_free(&r);
	r = http("DELETE", "/api/branches/" BRANCH "/carts", NULL);
	ck_error(r, 405, "invalid");
	resp_free(&r);
	r = http("PUT", "/api/admin/carts/1/maintenance", "{\"on\":true}");
	ck_error(r, 405, "invalid");
	resp_free(&r);
	r = http("GET", "/api/admin/buses/bus0/scan", NULL);
	ck_error(r, 405, "invalid");
	resp_free(&r);
}
END_TEST

START_TEST(oversize_bodies_are_413)
{
	size_t n = CW_API_MAX_BODY + 100;
	char *big = malloc(n + 1);
	struct resp r;

	memset(big, ' ', n);
	memcpy(big, "{\"phone\":\"0501234567\"", 21);
	big[n - 1] = '}';
	big[n] = '\0';
	r = http_x("POST", "/api/branches/" BRANCH "/carts/assign", big, n, NULL, false);
	ck_error(r, 413, "too_big");
	resp_free(&r);
	/* no Content-Length: counted while reading */
	r = http_x("POST", "/api/branches/" BRANCH "/carts/assign", big, n, NULL, true);
	ck_error(r, 413, "too_big");
	resp_free(&r);
	/* exactly the limit is fine (a valid body padded with spaces) */
	big[CW_API_MAX_BODY - 1] = '}';
	big[CW_API_MAX_BODY] = '\0';
	memset(big + 21, ' ', CW_API_MAX_BODY - 22);
	r = http_x("POST", "/api/branches/" BRANCH "/carts/assign", big, CW_API_MAX_BODY, NULL,
		   false);
	ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body);
	resp_free(&r);
	free(big);
	ck_assert_int_eq(atomic_load(&hw_calls), 1);

	/* Content-Lengths past 32 bits are refused before any body is read:
	 * 2^32 + 1 would wrap to 1 in a 32-bit long (armhf), 2^64 + 1 in any. */
	ck_assert_int_eq(raw_status("4294967297"), 413);
	ck_assert_int_eq(raw_status("18446744073709551617"), 413);
	ck_assert_int_eq(raw_status("16385"), 413);
	ck_assert_int_eq(atomic_load(&hw_calls), 1);
}
END_TEST

START_TEST(bad_bodies_are_400_and_change_nothing)
{
	static const char *const bodies[] = {
		"",
		"not json",
		"{\"phone\": \"0501234567\"",  /* half-written */
		"{\"phone\": \"0501234567\"} x",
		"[\"0501234567\"]",
		"\"0501234567\"",
		"{}",
		"{\"phone\": 501234567}",
		"{\"phone\": null}",
		"{\"phone\": \"\"}",
		"{\"phone\": \"0501234567\", \"extra\": 1}",
		"{\"phone\": \"0501234567\", \"phone\": \"0501234568\"}",
		"{\"Phone\": \"0501234567\"}",
		"{\"phone\": \"123456789012345678901234567890123\"}",
		"{\"phone\": \"abc\"}",
		"{\"phone\": \"'; DROP TABLE rentals; --\"}",
		"{\"phone\": \"050\\\"1234567\"}",
		"{\"phone\": \"0501234567\\u0000\"}",
	};
	const char *const paths[] = {"/api/branches/" BRANCH "/carts/assign",
				     "/api/branches/" BRANCH "/carts/return"};
	char *before = db_fingerprint(), *after;
	struct resp r;

	for (size_t p = 0; p < 2; p++) {
		for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
			r = http_x("POST", paths[p], bodies[i], strlen(bodies[i]), NULL, false);
			ck_assert_msg(r.status == 400, "%s body %zu: %ld %s", paths[p], i, r.status,
				      r.body);
			ck_error(r, 400, "invalid");
			resp_free(&r);
		}
	}
	/* admin bodies */
	r = http("POST", "/api/admin/carts/1/maintenance", "{}");
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("POST", "/api/admin/carts/1/maintenance", "{\"on\": \"yes\"}");
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("POST", "/api/admin/carts/1/maintenance", "{\"on\": true, \"note\": 5}");
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("POST", "/api/admin/carts/1/maintenance", "{\"on\": true, \"color\": \"red\"}");
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("POST", "/api/admin/carts/1/unlock", "{\"force\": true}");
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("POST", "/api/admin/carts/abc/unlock", NULL);
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("POST", "/api/admin/carts/0/maintenance", "{\"on\": true}");
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("POST", "/api/admin/rentals/1%27%20OR%201=1/return", "{}");
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("POST", "/api/admin/buses/bus0/scan", "{\"first\": 10}");
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("POST", "/api/admin/buses/bus0/scan", "{\"first\": 10, \"last\": 5}");
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("POST", "/api/admin/buses/bus0/scan", "{\"first\": 1, \"last\": 300}");
	ck_error(r, 400, "invalid");
	resp_free(&r);
	{
		/* numbers no int can hold, and fractions: refused by range before
		 * any conversion (converting them is undefined behaviour), and
		 * the message names the key */
		static const struct {
			const char *body, *key;
		} nums[] = {
			{"{\"first\": 1e300, \"last\": 5}", "first"},
			{"{\"first\": -1e300, \"last\": 5}", "first"},
			{"{\"first\": 4294967297, \"last\": 5}", "first"},
			{"{\"first\": 3.5, \"last\": 5}", "first"},
			{"{\"first\": 1, \"last\": 1e300}", "last"},
			{"{\"first\": 1, \"last\": 2.000001}", "last"},
			{"{\"first\": 1, \"last\": -4294967295}", "last"},
			{"{\"first\": 1, \"last\": \"5\"}", "last"},
		};
		for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
			const char *msg;

			r = http("POST", "/api/admin/buses/bus0/scan", nums[i].body);
			ck_error(r, 400, "invalid");
			msg = jstr(cJSON_GetObjectItemCaseSensitive(r.json, "error"), "message");
			ck_assert_msg(strncmp(msg, nums[i].key, strlen(nums[i].key)) == 0 &&
					      msg[strlen(nums[i].key)] == ':',
				      "%s: message \"%s\" does not name %s", nums[i].body, msg,
				      nums[i].key);
			resp_free(&r);
		}
	}
	/* bad query strings */
	r = http("GET", "/api/branches/" BRANCH "/rentals/history?limit=0", NULL);
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("GET", "/api/branches/" BRANCH "/rentals/history?limit=1e3", NULL);
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("GET", "/api/branches/" BRANCH "/rentals/history?limit=10&order=asc", NULL);
	ck_error(r, 400, "invalid");
	resp_free(&r);
	r = http("GET", "/api/branches/" BRANCH "/carts?x=1", NULL);
	ck_error(r, 400, "invalid");
	resp_free(&r);

	ck_assert_int_eq(atomic_load(&hw_calls), 0);
	after = db_fingerprint();
	ck_assert_str_eq(before, after);
	free(before);
	free(after);
}
END_TEST

START_TEST(assign_and_its_failures)
{
	char id[40];
	int cart;
	struct resp r;
	int found = 0;

	r = http("POST", "/api/branches/" BRANCH "/carts/assign", "{\"phone\": \"+972501234567\"}");
	ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body);
	ck_assert_int_eq(cJSON_GetArraySize(r.json), 4);
	snprintf(id, sizeof(id), "%s", jstr(r.json, "rental_id"));
	ck_assert_int_eq(strlen(id), 36);
	cart = (int)jnum(r.json, "cart_number");
	ck_assert(cart >= 1 && cart <= NCARTS);
	ck_assert_int_eq((int)jnum(r.json, "unlock_latency_ms"), 7);
	ck_assert_int_eq(strlen(jstr(r.json, "expected_return")), 24); /* RFC 3339, ms, Z */
	resp_free(&r);

	/* same phone again: its rental is still open */
	r = http("POST", "/api/branches/" BRANCH "/carts/assign", "{\"phone\": \"+972501234567\"}");
	ck_error(r, 409, "conflict");
	resp_free(&r);

	/* the rental is listed as active */
	r = http("GET", "/api/branches/" BRANCH "/rentals/active", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strstr(r.body, id));
	resp_free(&r);

	/* lock did not open: 503 fault, no rental left open */
	atomic_store(&hw_result, CW_ERR_FAULT);
	r = http("POST", "/api/branches/" BRANCH "/carts/assign", "{\"phone\": \"0520000001\"}");
	ck_error(r, 503, "fault");
	resp_free(&r);
	/* board silent: 503 offline */
	atomic_store(&hw_result, CW_ERR_OFFLINE);
	r = http("POST", "/api/branches/" BRANCH "/carts/assign", "{\"phone\": \"0520000002\"}");
	ck_error(r, 503, "offline");
	resp_free(&r);
	atomic_store(&hw_result, CW_OK);

	r = http("GET", "/api/branches/" BRANCH "/rentals/active", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(strstr(r.body, "0520000001"));
	ck_assert_ptr_null(strstr(r.body, "0520000002"));
	resp_free(&r);

	/* rent out everything that is left: then no_cart */
	for (int i = 0; i < NCARTS; i++) {
		char body[64];
		snprintf(body, sizeof(body), "{\"phone\": \"05300000%02d\"}", i);
		r = http("POST", "/api/branches/" BRANCH "/carts/assign", body);
		if (r.status == 409) {
			ck_error(r, 409, "no_cart");
			found = 1;
			resp_free(&r);
			break;
		}
		ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body);
		resp_free(&r);
	}
	ck_assert_msg(found, "never ran out of carts");
}
END_TEST

START_TEST(carts_and_cart)
{
	struct resp r = http("GET", "/api/branches/" BRANCH "/carts", NULL);
	const cJSON *arr;

	ck_assert_int_eq(r.status, 200);
	arr = cJSON_IsArray(r.json) ? r.json : cJSON_GetObjectItemCaseSensitive(r.json, "carts");
	ck_assert_msg(cJSON_IsArray(arr), "%s", r.body);
	ck_assert_int_eq(cJSON_GetArraySize(arr), NCARTS);
	resp_free(&r);

	r = http("GET", "/api/branches/" BRANCH "/carts/3", NULL);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert(cJSON_IsObject(r.json));
	ck_assert_ptr_nonnull(strstr(r.body, "3"));
	resp_free(&r);

	r = http("GET", "/api/branches/" BRANCH "/carts/999", NULL);
	ck_error(r, 404, "not_found");
	resp_free(&r);
	r = http("GET", "/api/branches/" BRANCH "/carts/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", NULL);
	ck_error(r, 404, "not_found");
	resp_free(&r);
	r = http("GET", "/api/branches/" BRANCH "/carts/1%27%20OR%20%271%27=%271", NULL);
	ck_error(r, 404, "not_found");
	resp_free(&r);
}
END_TEST

START_TEST(return_flow)
{
	char id[40];
	int cart;
	struct resp r;

	r = http("POST", "/api/branches/" BRANCH "/carts/return", "{\"phone\": \"0541111111\"}");
	ck_error(r, 404, "not_found");
	resp_free(&r);

	rent_ok("0541111111", id, &cart);
	/* the customer takes the cart out of its slot */
	{
		int b = (cart - 1) / NLOCKS, l = (cart - 1) % NLOCKS;
		uint32_t bits = 0xFu & ~(1u << l);
		board_bits(b, bits, bits);
	}
	r = http("POST", "/api/branches/" BRANCH "/carts/return", "{\"phone\": \"0541111111\"}");
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert_str_eq(jstr(r.json, "rental_id"), id);
	ck_assert_int_eq((int)jnum(r.json, "slot_number"), cart); /* its own empty slot */
	resp_free(&r);
	/* asking again gives the same slot */
	r = http("POST", "/api/branches/" BRANCH "/carts/return", "{\"phone\": \"0541111111\"}");
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq((int)jnum(r.json, "slot_number"), cart);
	resp_free(&r);
}
END_TEST

START_TEST(history_and_stats)
{
	char id[40];
	struct resp r;

	rent_ok("0551234567", id, NULL);
	rent_ok("0551234568", NULL, NULL);
	r = http("GET", "/api/branches/" BRANCH "/rentals/history", NULL);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert_ptr_nonnull(strstr(r.body, id));
	resp_free(&r);
	r = http("GET", "/api/branches/" BRANCH "/rentals/history?limit=1&phone=0551234567", NULL);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert_ptr_nonnull(strstr(r.body, id));
	ck_assert_ptr_null(strstr(r.body, "0551234568"));
	resp_free(&r);
	/* SQL in a query parameter is just a string that matches nothing */
	r = http("GET",
		 "/api/branches/" BRANCH "/rentals/history?phone=%27%20OR%20%271%27%3D%271", NULL);
	ck_assert_msg(r.status == 200 || r.status == 400, "%ld %s", r.status, r.body);
	ck_assert_ptr_null(strstr(r.body, id));
	resp_free(&r);
	/* pages: limit 1 gives a cursor to the next (older) page */
	{
		char path[256], first[40], cur[128];
		r = http("GET", "/api/branches/" BRANCH "/rentals/history?limit=1", NULL);
		ck_assert_int_eq(r.status, 200);
		ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "rentals")), 1);
		snprintf(first, sizeof(first), "%s",
			 jstr(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r.json, "rentals"), 0),
			      "id"));
		ck_assert_ptr_nonnull(jstr(r.json, "next_cursor"));
		snprintf(cur, sizeof(cur), "%s", jstr(r.json, "next_cursor"));
		resp_free(&r);
		snprintf(path, sizeof(path), "/api/branches/" BRANCH "/rentals/history?limit=1&cursor=%s",
			 cur);
		r = http("GET", path, NULL);
		ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
		ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "rentals")), 1);
		ck_assert_str_ne(jstr(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r.json, "rentals"), 0),
				      "id"),
				 first);
		resp_free(&r);
		r = http("GET", "/api/branches/" BRANCH "/rentals/history?cursor=garbage", NULL);
		ck_error(r, 400, "invalid");
		resp_free(&r);
	}
	r = http("GET", "/api/branches/" BRANCH "/rentals/stats", NULL);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert(cJSON_IsObject(r.json));
	resp_free(&r);
}
END_TEST

START_TEST(admin_routes)
{
	char id[40], uuid[40];
	struct resp r;
	const cJSON *res;

	r = http("GET", "/api/admin/status", NULL);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r.json, "engine")));
	ck_assert_str_eq(jstr(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r.json, "buses"), 0),
			      "name"),
			 "bus0");
	ck_assert(jnum(r.json, "outbox_depth") > 0); /* the carts were created */
	ck_assert_str_eq(jstr(r.json, "branch_id"), BRANCH);
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(r.json, "engine"), "clock_trusted")));
	resp_free(&r);
	r = http("GET", "/api/admin/status", NULL);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	{
		/* the clock-trust override in effect is said once, at warn level */
		char *log = read_log(), *p = log;
		int n = 0;

		while ((p = strstr(p, "event=clock.override"))) {
			n++;
			p++;
		}
		ck_assert_msg(n == 1, "clock.override logged %d times:\n%s", n, log);
		ck_assert_ptr_nonnull(strstr(log, "level=warn event=clock.override var=CW_CLOCK_TRUSTED "
						  "trusted=1"));
		free(log);
	}

	/* maintenance unlock of a free cart */
	r = http("POST", "/api/admin/carts/2/unlock", NULL);
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert_int_eq((int)jnum(r.json, "cart_number"), 2);
	ck_assert_int_eq(atomic_load(&hw_calls), 1);
	resp_free(&r);
	r = http("POST", "/api/admin/carts/999/unlock", "{}");
	ck_error(r, 404, "not_found");
	resp_free(&r);
	atomic_store(&hw_result, CW_ERR_FAULT);
	r = http("POST", "/api/admin/carts/3/unlock", "{}");
	ck_error(r, 503, "fault");
	resp_free(&r);
	atomic_store(&hw_result, CW_OK);

	/* maintenance on with a note full of quotes and SQL, then off */
	r = http("POST", "/api/admin/carts/4/maintenance",
		 "{\"on\": true, \"note\": \"wheel O'Brien \\\"x\\\"; DROP TABLE carts; --\"}");
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "maintenance")));
	resp_free(&r);
	r = http("GET", "/api/branches/" BRANCH "/carts/4", NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_msg(strstr(r.body, "maintenance") != NULL, "%s", r.body);
	ck_assert_msg(strstr(r.body, "DROP TABLE carts") != NULL, "note kept verbatim: %s", r.body);
	resp_free(&r);
	r = http("GET", "/api/branches/" BRANCH "/carts", NULL);
	ck_assert_int_eq(r.status, 200); /* the table is still there */
	resp_free(&r);
	r = http("POST", "/api/admin/carts/4/maintenance", "{\"on\": false}");
	ck_assert_int_eq(r.status, 200);
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r.json, "maintenance")));
	resp_free(&r);
	r = http("POST", "/api/admin/carts/999/maintenance", "{\"on\": true}");
	ck_error(r, 404, "not_found");
	resp_free(&r);

	/* staff return */
	{
		int cart;
		char path[64];
		rent_ok("0561234567", id, &cart);
		/* a customer's cart cannot be unlocked for maintenance */
		snprintf(path, sizeof(path), "/api/admin/carts/%d/unlock", cart);
		r = http("POST", path, NULL);
		ck_error(r, 409, "bad_state");
		resp_free(&r);
	}
	r = http("POST", "/api/admin/rentals/", NULL);
	ck_error(r, 404, "not_found");
	resp_free(&r);
	{
		char path[128];
		snprintf(path, sizeof(path), "/api/admin/rentals/%s/return", id);
		r = http("POST", path, "{\"note\": \"customer left it at the door\"}");
		ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
		ck_assert_str_eq(jstr(r.json, "rental_id"), id);
		resp_free(&r);
		/* a returned rental cannot be returned again */
		r = http("POST", path, NULL);
		ck_error(r, 409, "bad_state");
		resp_free(&r);
		/* an unknown one */
		ck_assert_int_eq(cw_uuid_v7(uuid), 0);
		snprintf(path, sizeof(path), "/api/admin/rentals/%s/return", uuid);
		r = http("POST", path, "{}");
		ck_error(r, 404, "not_found");
		resp_free(&r);
	}
	r = http("GET", "/api/branches/" BRANCH "/rentals/active", NULL);
	ck_assert_ptr_null(strstr(r.body, id));
	resp_free(&r);

	/* scan through the hook */
	r = http("POST", "/api/admin/buses/bus0/scan", "{\"first\": 3, \"last\": 9}");
	ck_assert_msg(r.status == 200, "%ld %s", r.status, r.body);
	res = r.json;
	ck_assert(cJSON_IsArray(res));
	ck_assert_int_eq(cJSON_GetArraySize(res), 2);
	ck_assert_int_eq((int)jnum(cJSON_GetArrayItem(res, 0), "address"), 3);
	ck_assert_str_eq(jstr(cJSON_GetArrayItem(res, 1), "result"), "garbled");
	resp_free(&r);
	r = http("POST", "/api/admin/buses/bus0/scan", NULL);
	ck_assert_int_eq(r.status, 200);
	res = r.json;
	ck_assert_int_eq((int)jnum(cJSON_GetArrayItem(res, 1), "address"), 247);
	resp_free(&r);
	r = http("POST", "/api/admin/buses/nobus/scan", "{}");
	ck_error(r, 404, "not_found");
	resp_free(&r);
}
END_TEST

struct rent_thread {
	struct resp r;
};

static void *slow_rent(void *ud)
{
	struct rent_thread *t = ud;
	t->r = http("POST", "/api/branches/" BRANCH "/carts/assign", "{\"phone\": \"0571234567\"}");
	return NULL;
}

START_TEST(slow_unlock_does_not_stall_others)
{
	struct rent_thread t;
	pthread_t th;
	int64_t t0;
	struct resp r;

	atomic_store(&hw_delay_ms, 1500);
	ck_assert_int_eq(pthread_create(&th, NULL, slow_rent, &t), 0);
	while (atomic_load(&hw_calls) == 0)
		cw_sleep_ms(5);
	t0 = cw_mono_ms();
	r = http("GET", "/api/health", NULL);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	r = http("GET", "/api/branches/" BRANCH "/carts", NULL);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	ck_assert_msg(cw_mono_ms() - t0 < 700, "other requests waited %lld ms",
		      (long long)(cw_mono_ms() - t0));
	pthread_join(th, NULL);
	ck_assert_int_eq(t.r.status, 201);
	resp_free(&t.r);
}
END_TEST

START_TEST(log_line_per_request_without_secrets)
{
	struct resp r;
	char *log;

	r = http("GET", "/api/health", NULL);
	resp_free(&r);
	r = http("POST", "/api/branches/" BRANCH "/carts/assign", "{\"phone\": \"0589876543\"}");
	ck_assert_int_eq(r.status, 201);
	resp_free(&r);
	r = http_x("GET", "/api/admin/status", NULL, 0, "Bearer wrong-token-abcdefghijk", false);
	resp_free(&r);
	r = http("GET", "/api/x%20event=forged%0Alevel=error", NULL);
	resp_free(&r);
	log = read_log();
	ck_assert_msg(strstr(log, "event=api.request method=GET path=/api/health status=200 ms=") !=
			      NULL,
		      "%s", log);
	ck_assert_msg(strstr(log, "event=api.request method=POST path=/api/branches/" BRANCH
				  "/carts/assign status=201") != NULL,
		      "%s", log);
	ck_assert(strstr(log, "path=/api/admin/status status=401") != NULL);
	ck_assert_ptr_null(strstr(log, TOKEN));
	ck_assert_ptr_null(strstr(log, "wrong-token"));
	ck_assert_ptr_null(strstr(log, "{\"phone\""));
	/* a path cannot forge fields or lines */
	ck_assert_ptr_null(strstr(log, "event=forged"));
	ck_assert_ptr_null(strstr(log, "\nlevel=error event=api"));
	free(log);
}
END_TEST

START_TEST(bind_errors)
{
	struct cw_api *other = NULL;
	int port = cw_api_port(api);

	errors_expected = true;

	/* the port is taken */
	ck_assert_int_eq(cw_api_new("127.0.0.1", port, TOKEN, eng, NULL, &other), CW_ERR_IO);
	ck_assert_ptr_null(other);
	ck_assert_int_eq(cw_api_new("localhost", 0, TOKEN, eng, NULL, &other), CW_ERR_INVAL);
	ck_assert_int_eq(cw_api_new("127.0.0.1", 0, "short", eng, NULL, &other), CW_ERR_INVAL);
	/* IPv6 loopback, no hooks: admin status still answers */
	if (cw_api_new("::1", 0, TOKEN, eng, NULL, &other) == CW_OK) {
		struct resp r;
		snprintf(base, sizeof(base), "http://[::1]:%d", cw_api_port(other));
		r = http("GET", "/api/admin/status", NULL);
		ck_assert_int_eq(r.status, 200);
		ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "buses")), 0);
		resp_free(&r);
		r = http("POST", "/api/admin/buses/bus0/scan", NULL);
		ck_error(r, 404, "not_found");
		resp_free(&r);
		cw_api_free(other);
	}
	cw_api_free(NULL);
}
END_TEST

/* Outside /api/: the kiosk page from web_root (cw_static, test_static.c),
 * without a token, GET and HEAD only, one log line like any request. */
START_TEST(kiosk_page_outside_api)
{
	char path[512], *log;
	struct resp r;
	FILE *f;

	r = http_x("GET", "/", NULL, 0, "", false);
	ck_error(r, 404, "not_found");
	resp_free(&r);
	snprintf(path, sizeof(path), "%s/index.html", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("<!doctype html><title>kiosk</title>", f);
	fclose(f);
	r = http_x("GET", "/", NULL, 0, "", false);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "<!doctype html><title>kiosk</title>");
	resp_free(&r);
	r = http_x("POST", "/index.html", "{}", 2, "", false);
	ck_error(r, 405, "invalid");
	ck_assert_str_eq(r.allow, "GET, HEAD");
	resp_free(&r);
	/* /api itself and anything under it stay API routes */
	r = http("GET", "/api", NULL);
	ck_error(r, 404, "not_found");
	resp_free(&r);
	log = read_log();
	ck_assert_ptr_nonnull(strstr(log, "method=GET path=/ status=200"));
	ck_assert_ptr_nonnull(strstr(log, "method=POST path=/index.html status=405"));
	free(log);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("api");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, health_needs_no_token);
	tcase_add_test(tc, auth_is_required_and_checked);
	tcase_add_test(tc, unknown_routes_branches_and_methods);
	tcase_add_test(tc, oversize_bodies_are_413);
	tcase_add_test(tc, bad_bodies_are_400_and_change_nothing);
	tcase_add_test(tc, assign_and_its_failures);
	tcase_add_test(tc, carts_and_cart);
	tcase_add_test(tc, return_flow);
	tcase_add_test(tc, history_and_stats);
	tcase_add_test(tc, admin_routes);
	tcase_add_test(tc, slow_unlock_does_not_stall_others);
	tcase_add_test(tc, log_line_per_request_without_secrets);
	tcase_add_test(tc, bind_errors);
	tcase_add_test(tc, kiosk_page_outside_api);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
