/* ctl.c - cartwisectl: the branch technician's tool; talks to the local API
 * of cartwise-edge (docs/OPERATIONS.md "cartwisectl").
 *
 * Human-readable aligned tables by default, the API's JSON with --json.
 * Exit status: 0 ok, 1 the API refused or could not be reached (its error
 * message is printed), 2 bad usage. */
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cw_error.h"
#include "cw_file.h"
#include "cw_jsoncfg.h"
#include "cw_version.h"

#define MAX_RESPONSE (8 * 1024 * 1024)
#define MAX_CONFIG (1024 * 1024)
#define DEFAULT_URL "http://127.0.0.1:8080"

struct ctl {
	char url[512];
	char token[256];
	char branch[64];
	bool json;
};

static struct ctl g;

/* ---- small helpers ---- */

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("cartwisectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static bool parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (!s || !*s)
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* it as an int when it is an integral JSON number in min..max. The range is
 * checked on the double first: converting a double outside int's range
 * (1e300) is undefined behaviour (C11 6.3.1.4). NaN fails the range check. */
static bool json_int(const cJSON *it, int min, int max, int *out)
{
	double v;

	if (!cJSON_IsNumber(it))
		return false;
	v = it->valuedouble;
	if (!(v >= (double)min && v <= (double)max) || v != (double)(int)v)
		return false;
	*out = (int)v;
	return true;
}

/* For display of a number the API sent: -1 when it is not a plain int. */
static int json_int_or(const cJSON *it, int dflt)
{
	int v;

	return json_int(it, INT_MIN, INT_MAX, &v) ? v : dflt;
}

static void copy(char *dst, size_t cap, const char *src, const char *what)
{
	if (snprintf(dst, cap, "%s", src) >= (int)cap)
		die(2, "%s is too long (at most %zu characters)", what, cap - 1);
}

/* ---- HTTP ---- */

struct buf {
	char *p;
	size_t n;
	bool too_big;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *ud)
{
	struct buf *b = ud;
	size_t n = size * nmemb;
	char *np;

	if (b->n + n > MAX_RESPONSE) {
		b->too_big = true;
		return 0;
	}
	np = realloc(b->p, b->n + n + 1);
	if (!np)
		return 0;
	b->p = np;
	memcpy(b->p + b->n, data, n);
	b->n += n;
	b->p[b->n] = '\0';
	return n;
}

/* Performs one request. Returns the parsed JSON body (caller frees) on a 2xx
 * answer; otherwise prints the API's error message and exits 1. */
static cJSON *request(const char *method, const char *path, const cJSON *body, bool auth)
{
	char url[1024], hdr[300], errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *headers = NULL;
	struct buf b = {0};
	char *payload = NULL;
	long status = 0;
	cJSON *resp;
	CURLcode cc;
	CURL *h;

	if (snprintf(url, sizeof(url), "%s%s", g.url, path) >= (int)sizeof(url))
		die(2, "URL too long");
	if (auth && !g.token[0])
		die(2, "no admin token: give --token, set CARTWISE_TOKEN, or --config the edge "
		       "config file");
	h = curl_easy_init();
	if (!h)
		die(1, "cannot initialise libcurl");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
	/* a bus scan of 247 addresses can take tens of seconds */
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 300L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	headers = curl_slist_append(headers, "Accept: application/json");
	if (auth) {
		snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", g.token);
		headers = curl_slist_append(headers, hdr);
	}
	if (body) {
		payload = cJSON_PrintUnformatted(body);
		if (!payload)
			die(1, "out of memory");
		headers = curl_slist_append(headers, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	curl_slist_free_all(headers);
	memset(hdr, 0, sizeof(hdr));
	free(payload);
	if (cc != CURLE_OK) {
		free(b.p);
		if (b.too_big)
			die(1, "%s %s: answer larger than %d bytes", method, url, MAX_RESPONSE);
		die(1, "cannot reach %s: %s (is cartwise-edge running? see --url)", g.url,
		    errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
	resp = b.p ? cJSON_ParseWithLength(b.p, b.n) : NULL;
	free(b.p);
	if (status < 200 || status > 299) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(resp, "error");
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
		if (g.json && resp) {
			char *t = cJSON_Print(resp);
			if (t)
				puts(t);
			free(t);
		}
		fprintf(stderr, "cartwisectl: %s (HTTP %ld %s)\n",
			cJSON_IsString(m) ? m->valuestring : "request failed", status,
			cJSON_IsString(c) ? c->valuestring : "");
		cJSON_Delete(resp);
		exit(1);
	}
	if (!resp)
		die(1, "%s %s: the answer is not JSON", method, url);
	return resp;
}

/* ---- output ---- */

static void print_json(const cJSON *j)
{
	char *t = cJSON_Print(j);

	if (t)
		puts(t);
	free(t);
}

/* Text of a field for a table cell: the first of the comma-separated keys
 * that exists. */
static void cell(const cJSON *o, const char *keys, char *out, size_t cap)
{
	char k[64];
	const char *p = keys;

	while (*p) {
		size_t n = strcspn(p, ",");
		const cJSON *it;
		snprintf(k, sizeof(k), "%.*s", (int)n, p);
		p += n + (p[n] == ',');
		it = cJSON_GetObjectItemCaseSensitive(o, k);
		if (!it)
			continue;
		if (cJSON_IsString(it))
			snprintf(out, cap, "%s", it->valuestring);
		else if (cJSON_IsNumber(it))
			snprintf(out, cap, "%.15g", it->valuedouble);
		else if (cJSON_IsBool(it))
			snprintf(out, cap, "%s", cJSON_IsTrue(it) ? "yes" : "no");
		else if (cJSON_IsNull(it))
			snprintf(out, cap, "-");
		else {
			char *t = cJSON_PrintUnformatted(it);
			snprintf(out, cap, "%s", t ? t : "?");
			free(t);
		}
		if (!out[0])
			snprintf(out, cap, "-");
		return;
	}
	snprintf(out, cap, "-");
}

struct col {
	const char *title;
	const char *keys; /* alternatives, comma-separated */
};

#define CELL 96

/* Prints an array of objects as an aligned table. */
static void table(const cJSON *rows, const struct col *cols, int ncols)
{
	int n = cJSON_GetArraySize(rows), w[16];
	char c[CELL];
	const cJSON *r;

	if (ncols > 16)
		ncols = 16;
	for (int i = 0; i < ncols; i++)
		w[i] = (int)strlen(cols[i].title);
	cJSON_ArrayForEach(r, rows) {
		for (int i = 0; i < ncols; i++) {
			cell(r, cols[i].keys, c, sizeof(c));
			if ((int)strlen(c) > w[i])
				w[i] = (int)strlen(c);
		}
	}
	/* the last column unpadded: no trailing blanks */
	for (int i = 0; i < ncols; i++)
		printf("%-*s%s", i + 1 < ncols ? w[i] : 0, cols[i].title, i + 1 < ncols ? "  " : "\n");
	cJSON_ArrayForEach(r, rows) {
		for (int i = 0; i < ncols; i++) {
			cell(r, cols[i].keys, c, sizeof(c));
			printf("%-*s%s", i + 1 < ncols ? w[i] : 0, c, i + 1 < ncols ? "  " : "\n");
		}
	}
	if (n == 0)
		printf("(none)\n");
}

/* The array in a response: the response itself, or its first array member
 * among keys. */
static const cJSON *array_of(const cJSON *resp, const char *keys)
{
	char k[64];
	const char *p = keys;

	if (cJSON_IsArray(resp))
		return resp;
	while (*p) {
		size_t n = strcspn(p, ",");
		const cJSON *it;
		snprintf(k, sizeof(k), "%.*s", (int)n, p);
		p += n + (p[n] == ',');
		it = cJSON_GetObjectItemCaseSensitive(resp, k);
		if (cJSON_IsArray(it))
			return it;
	}
	return NULL;
}

/* Prints "key: value" lines for scalar members of an object (one level,
 * nested objects flattened as parent.child). */
static void kv(const cJSON *o, const char *prefix)
{
	const cJSON *it;
	char c[CELL];

	cJSON_ArrayForEach(it, o) {
		if (cJSON_IsObject(it)) {
			char p[128];
			snprintf(p, sizeof(p), "%s%s.", prefix, it->string);
			kv(it, p);
			continue;
		}
		if (cJSON_IsArray(it))
			continue;
		if (cJSON_IsString(it))
			snprintf(c, sizeof(c), "%s", it->valuestring);
		else if (cJSON_IsNumber(it))
			snprintf(c, sizeof(c), "%.15g", it->valuedouble);
		else if (cJSON_IsBool(it))
			snprintf(c, sizeof(c), "%s", cJSON_IsTrue(it) ? "yes" : "no");
		else
			snprintf(c, sizeof(c), "-");
		printf("  %s%-*s %s\n", prefix, 24 - (int)strlen(prefix), it->string, c);
	}
}

/* ---- branch ---- */

static const char *branch(void)
{
	if (!g.branch[0]) {
		/* /api/health names the branch of this device to a caller with
		 * the admin token (every command that needs a branch needs it) */
		cJSON *h = request("GET", "/api/health", NULL, true);
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(h, "branch_id");
		if (!cJSON_IsString(b))
			die(1, "the API did not say which branch it serves (is the admin token "
			       "right?)");
		copy(g.branch, sizeof(g.branch), b->valuestring, "branch_id");
		cJSON_Delete(h);
	}
	return g.branch;
}

/* ---- commands ---- */

static const struct col cart_cols[] = {
	{"CART", "cart_number,number"},
	{"STATE", "status,state"}, /* "status" says "offline" when the board is */
	{"BUS", "bus,bus_name,bus_index"},
	{"BOARD", "board,address,board_address,board_index"},
	{"LOCK", "lock,lock_index"},
	{"PRESENT", "cart_present,present"},
	{"HOOK", "hook_closed"},
	{"RENTAL", "rental_id,reserved_for_rental"},
	{"NOTE", "maintenance_notes,fault_reason,note"},
};

static const struct col rental_cols[] = {
	{"RENTAL", "rental_id,id"},
	{"CART", "cart_number"},
	{"PHONE", "phone,user_phone"},
	{"STATUS", "status,state"},
	{"STARTED", "start_time"},
	{"EXPECTED", "expected_return"},
	{"RETURNED", "actual_return"},
};

static int cmd_status(int argc, char **argv)
{
	const cJSON *buses, *bus, *eng;
	cJSON *st;

	(void)argc;
	(void)argv;
	st = request("GET", "/api/admin/status", NULL, true);
	if (g.json) {
		print_json(st);
		cJSON_Delete(st);
		return 0;
	}
	{
		char b[CELL], v[CELL], o[CELL];
		cell(st, "branch_id", b, sizeof(b));
		cell(st, "version", v, sizeof(v));
		cell(st, "outbox_depth", o, sizeof(o));
		printf("branch %s, cartwise-edge %s, outbox depth %s\n", b, v, o);
	}
	{
		const cJSON *cl = cJSON_GetObjectItemCaseSensitive(st, "cloud");
		if (cJSON_IsObject(cl)) {
			char s1[CELL] = "", d[CELL] = "", hw[CELL] = "", ok[CELL] = "", dp[CELL] = "",
			     le[CELL] = "", mq[CELL] = "", rs[CELL] = "", rc[CELL] = "";
			cell(cl, "state", s1, sizeof(s1));
			cell(cl, "mqtt", mq, sizeof(mq));
			cell(cl, "device_id", d, sizeof(d));
			cell(cl, "high_water", hw, sizeof(hw));
			cell(cl, "last_ok", ok, sizeof(ok));
			cell(cl, "outbox_depth", dp, sizeof(dp));
			cell(cl, "last_error", le, sizeof(le));
			printf("cloud %s, mqtt %s, device %s, high water %s, last ok %s, outbox depth "
			       "%s%s%s\n",
			       s1, mq, d, hw, ok, dp, le[0] ? ", last error: " : "", le);
			cell(cl, "refused_seq", rs, sizeof(rs));
			cell(cl, "refused_code", rc, sizeof(rc));
			if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(cl, "refused_seq")))
				printf("sync stopped: the cloud refuses outbox entry %s (%s); it is kept "
				       "and sent again, the entries after it wait\n", rs, rc);
			else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cl, "sync_stopped")))
				printf("sync stopped (%s): see docs/OPERATIONS.md\n", s1);
			{
				char cv[CELL] = "", pv[CELL] = "", rv[CELL] = "", rm[CELL] = "";
				cell(cl, "config_version", cv, sizeof(cv));
				cell(cl, "config_pending_version", pv, sizeof(pv));
				cell(cl, "config_rejected_version", rv, sizeof(rv));
				cell(cl, "config_rejected_message", rm, sizeof(rm));
				printf("configuration from the cloud: version %s", cv);
				if (strcmp(pv, "-") != 0 && pv[0])
					printf(", version %s waiting for a restart", pv);
				if (strcmp(rv, "-") != 0 && rv[0])
					printf(", version %s refused: %s", rv, rm);
				printf("\n");
			}
		} else {
			printf("cloud: not configured (no \"cloud\" section)\n");
		}
		printf("\n");
	}
	buses = cJSON_GetObjectItemCaseSensitive(st, "buses");
	printf("BUSES\n");
	{
		static const struct col cols[] = {{"NAME", "name"},	    {"PORT", "port"},
						  {"PROTOCOL", "protocol"}, {"BAUD", "baud"},
						  {"ONLINE", "online_text"}};
		cJSON *rows = cJSON_CreateArray();
		cJSON_ArrayForEach(bus, buses) {
			cJSON *r = cJSON_Duplicate(bus, 1), *bd;
			int on = 0, all = 0;
			char t[32];
			cJSON_ArrayForEach(bd, cJSON_GetObjectItemCaseSensitive(bus, "boards")) {
				all++;
				on += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bd, "online"));
			}
			snprintf(t, sizeof(t), "%d/%d boards", on, all);
			cJSON_AddStringToObject(r, "online_text", t);
			cJSON_AddItemToArray(rows, r);
		}
		table(rows, cols, 5);
		cJSON_Delete(rows);
	}
	printf("\nBOARDS\n");
	{
		static const struct col cols[] = {{"BUS", "bus"},	    {"ADDRESS", "address"},
						  {"STATE", "state"},	    {"LOCKS", "locks"},
						  {"RELEASES", "releases"}, {"FAILURES", "failures"},
						  {"LAST FAULT", "last_fault"}};
		cJSON *rows = cJSON_CreateArray();
		cJSON_ArrayForEach(bus, buses) {
			const cJSON *bd, *name = cJSON_GetObjectItemCaseSensitive(bus, "name");
			cJSON_ArrayForEach(bd, cJSON_GetObjectItemCaseSensitive(bus, "boards")) {
				cJSON *r = cJSON_Duplicate(bd, 1);
				const cJSON *lc;
				double rel = 0, fail = 0;
				char last[CELL] = "";
				cJSON_AddStringToObject(r, "bus",
							cJSON_IsString(name) ? name->valuestring : "?");
				cJSON_ArrayForEach(lc, cJSON_GetObjectItemCaseSensitive(bd, "lock_counters")) {
					const cJSON *lf = cJSON_GetObjectItemCaseSensitive(lc, "last_fault");
					rel += cJSON_GetNumberValue(
						cJSON_GetObjectItemCaseSensitive(lc, "releases"));
					fail += cJSON_GetNumberValue(
						cJSON_GetObjectItemCaseSensitive(lc, "release_failures"));
					if (cJSON_IsString(lf) && lf->valuestring[0])
						snprintf(last, sizeof(last), "lock %d: %s",
							 json_int_or(cJSON_GetObjectItemCaseSensitive(
									     lc, "lock"),
								     -1),
							 lf->valuestring);
				}
				cJSON_AddNumberToObject(r, "releases", rel);
				cJSON_AddNumberToObject(r, "failures", fail);
				cJSON_AddStringToObject(r, "last_fault", last);
				cJSON_AddItemToArray(rows, r);
			}
		}
		table(rows, cols, 7);
		cJSON_Delete(rows);
	}
	eng = cJSON_GetObjectItemCaseSensitive(st, "engine");
	printf("\nENGINE\n");
	kv(eng, "");
	cJSON_Delete(st);
	return 0;
}

static int cmd_carts(int argc, char **argv)
{
	char path[256];
	cJSON *r;

	(void)argc;
	(void)argv;
	snprintf(path, sizeof(path), "/api/branches/%s/carts", branch());
	r = request("GET", path, NULL, true);
	if (g.json)
		print_json(r);
	else
		table(array_of(r, "carts,items"), cart_cols, 9);
	cJSON_Delete(r);
	return 0;
}

static int cmd_rentals(int argc, char **argv)
{
	static const struct option opts[] = {
		{"history", no_argument, NULL, 'H'},
		{"phone", required_argument, NULL, 'p'},
		{"limit", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *phone = NULL;
	bool history = false;
	long limit = 50;
	char path[512];
	cJSON *r;
	int opt;

	optind = 0; /* 0: full re-initialisation of GNU getopt (the global parse used "+") */
	while ((opt = getopt_long(argc, argv, "Hp:l:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'H':
			history = true;
			break;
		case 'p':
			phone = optarg;
			break;
		case 'l':
			if (!parse_long(optarg, 1, 200, &limit))
				die(2, "--limit: expected 1..200");
			break;
		case 'h':
			printf("Usage: cartwisectl rentals [--history [--phone P] [--limit N]]\n"
			       "Open rentals (active and overdue), or the history newest first.\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc)
		die(2, "rentals: unexpected argument \"%s\"", argv[optind]);
	if (phone && !history)
		history = true; /* a phone filter only exists on the history */
	if (history) {
		CURL *h = curl_easy_init();
		char *esc = phone && h ? curl_easy_escape(h, phone, 0) : NULL;
		snprintf(path, sizeof(path), "/api/branches/%s/rentals/history?limit=%ld%s%s",
			 branch(), limit, esc ? "&phone=" : "", esc ? esc : "");
		curl_free(esc);
		curl_easy_cleanup(h);
	} else {
		snprintf(path, sizeof(path), "/api/branches/%s/rentals/active", branch());
	}
	r = request("GET", path, NULL, true);
	if (g.json) {
		print_json(r);
	} else {
		const cJSON *next = cJSON_GetObjectItemCaseSensitive(r, "next_cursor");
		table(array_of(r, "rentals,items"), rental_cols, 7);
		if (cJSON_IsString(next))
			printf("(more: --json shows next_cursor %s)\n", next->valuestring);
	}
	cJSON_Delete(r);
	return 0;
}

static int cart_arg(const char *s)
{
	long v;

	if (!parse_long(s, 1, 99999, &v))
		die(2, "\"%s\" is not a cart number", s);
	return (int)v;
}

/* Parses an optional --note TEXT among the remaining arguments. */
static const char *note_opt(int argc, char **argv, int *first_pos)
{
	static const struct option opts[] = {
		{"note", required_argument, NULL, 'n'},
		{NULL, 0, NULL, 0},
	};
	const char *note = NULL;
	int opt;

	optind = 0; /* 0: full re-initialisation of GNU getopt (the global parse used "+") */
	while ((opt = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		if (opt == 'n')
			note = optarg;
		else
			exit(2);
	}
	*first_pos = optind;
	return note;
}

static int cmd_unlock(int argc, char **argv)
{
	char path[128];
	cJSON *r;
	int n;

	if (argc != 2)
		die(2, "usage: cartwisectl unlock CART_NUMBER");
	n = cart_arg(argv[1]);
	snprintf(path, sizeof(path), "/api/admin/carts/%d/unlock", n);
	r = request("POST", path, NULL, true);
	if (g.json)
		print_json(r);
	else
		printf("cart %d released (confirmed by sensor in %.0f ms)\n", n,
		       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "unlock_latency_ms")));
	cJSON_Delete(r);
	return 0;
}

static int cmd_maintenance(int argc, char **argv)
{
	const char *note;
	char path[128];
	cJSON *body, *r;
	int pos, n;
	bool on;

	note = note_opt(argc, argv, &pos);
	if (argc - pos != 2 || (strcmp(argv[pos + 1], "on") != 0 && strcmp(argv[pos + 1], "off") != 0))
		die(2, "usage: cartwisectl maintenance CART_NUMBER on|off [--note TEXT]");
	n = cart_arg(argv[pos]);
	on = strcmp(argv[pos + 1], "on") == 0;
	body = cJSON_CreateObject();
	cJSON_AddBoolToObject(body, "on", on);
	if (note)
		cJSON_AddStringToObject(body, "note", note);
	snprintf(path, sizeof(path), "/api/admin/carts/%d/maintenance", n);
	r = request("POST", path, body, true);
	cJSON_Delete(body);
	if (g.json)
		print_json(r);
	else
		printf("cart %d: maintenance %s\n", n, on ? "on" : "off");
	cJSON_Delete(r);
	return 0;
}

static int cmd_return(int argc, char **argv)
{
	const char *note;
	char path[128];
	cJSON *body, *r;
	int pos;

	note = note_opt(argc, argv, &pos);
	if (argc - pos != 1 || strlen(argv[pos]) != 36)
		die(2, "usage: cartwisectl return RENTAL_ID [--note TEXT]  (RENTAL_ID is a UUID)");
	for (const char *p = argv[pos]; *p; p++) {
		if (!strchr("0123456789abcdefABCDEF-", *p))
			die(2, "\"%s\" is not a rental id (a UUID)", argv[pos]);
	}
	body = cJSON_CreateObject();
	if (note)
		cJSON_AddStringToObject(body, "note", note);
	snprintf(path, sizeof(path), "/api/admin/rentals/%s/return", argv[pos]);
	r = request("POST", path, body, true);
	cJSON_Delete(body);
	if (g.json)
		print_json(r);
	else
		printf("rental %s closed by hand\n", argv[pos]);
	cJSON_Delete(r);
	return 0;
}

/* Re-enrollment by an operator (docs/OPERATIONS.md "cartwisectl enroll"):
 * the running edge drops its cloud credentials (kept aside) and registers
 * again with the code, or the configured one. "--code -" reads the code
 * from the standard input (a command line is visible to other users). */
static int cmd_enroll(int argc, char **argv)
{
	char code[128] = "";
	cJSON *body, *r;

	if (argc == 3 && strcmp(argv[1], "--code") == 0) {
		if (strcmp(argv[2], "-") == 0) {
			if (!fgets(code, sizeof(code), stdin))
				die(2, "no code on the standard input");
			code[strcspn(code, "\r\n")] = '\0';
		} else {
			copy(code, sizeof(code), argv[2], "--code");
		}
		if (!code[0])
			die(2, "--code: empty");
	} else if (argc != 1) {
		die(2, "usage: cartwisectl enroll [--code CODE|-]");
	}
	body = cJSON_CreateObject();
	if (code[0])
		cJSON_AddStringToObject(body, "code", code);
	r = request("POST", "/api/admin/cloud/enroll", body, true);
	cJSON_Delete(body);
	memset(code, 0, sizeof(code));
	if (g.json)
		print_json(r);
	else
		printf("re-enrolling: the old cloud credentials are kept as cloud.json.replaced-* in "
		       "the data directory; `cartwisectl status` shows the device once registered\n");
	cJSON_Delete(r);
	return 0;
}

/* One line of the standard input into buf without its line end; without
 * echo when it is a terminal (prompt on stderr). false at end of input. */
static bool read_secret(const char *prompt, char *buf, size_t cap)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0, ok;

	if (tty) {
		fputs(prompt, stderr);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	ok = fgets(buf, (int)cap, stdin) != NULL;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	if (ok)
		buf[strcspn(buf, "\r\n")] = '\0';
	return ok;
}

/* A staff PIN's hash for the cloud's kiosk_staff (docs/OPERATIONS.md
 * "Staff PINs"): Argon2id by crypto_pwhash_str_alg, printed on stdout. The
 * PIN is read from the standard input (never the command line, which other
 * users see), twice on a terminal. INTERACTIVE limits (64 MiB, 2 passes)
 * because the Raspberry Pi verifies the hash at the kiosk while a customer
 * waits, on a machine with 1-4 GiB and a slow core: MODERATE (256 MiB, about
 * 1 s on a PC) would take seconds there and a large share of its memory. A
 * 4-12 digit PIN cannot be made strong by any hash: the kiosk's limit on
 * failed attempts protects it; the hash keeps the PIN itself out of the
 * configuration. */
static int cmd_pin_hash(int argc, char **argv)
{
	char pin[64] = "", again[64] = "", hash[crypto_pwhash_STRBYTES];
	size_t n;
	bool ok;

	(void)argv;
	if (argc != 1)
		die(2, "usage: cartwisectl pin-hash  (the PIN is read from the standard input)");
	if (sodium_init() < 0)
		die(1, "libsodium could not be initialised");
	if (!read_secret("Staff PIN (4-12 digits): ", pin, sizeof(pin)))
		die(2, "no PIN on the standard input");
	n = strlen(pin);
	ok = n >= 4 && n <= 12 && strspn(pin, "0123456789") == n;
	if (ok && isatty(STDIN_FILENO)) {
		if (!read_secret("Again: ", again, sizeof(again)) || strcmp(pin, again) != 0) {
			sodium_memzero(pin, sizeof(pin));
			sodium_memzero(again, sizeof(again));
			die(2, "the two PINs differ");
		}
	}
	sodium_memzero(again, sizeof(again));
	if (!ok) {
		sodium_memzero(pin, sizeof(pin));
		die(2, "a staff PIN is 4-12 digits");
	}
	ok = crypto_pwhash_str_alg(hash, pin, n, crypto_pwhash_OPSLIMIT_INTERACTIVE,
				   crypto_pwhash_MEMLIMIT_INTERACTIVE,
				   crypto_pwhash_ALG_ARGON2ID13) == 0;
	sodium_memzero(pin, sizeof(pin));
	if (!ok)
		die(1, "could not hash the PIN (out of memory?)");
	printf("%s\n", hash);
	return 0;
}

static int cmd_scan(int argc, char **argv)
{
	const cJSON *res, *it;
	char path[256];
	cJSON *body = NULL, *r;
	long first, last;
	int answering = 0;

	if (argc != 2 && argc != 4)
		die(2, "usage: cartwisectl scan BUS [FIRST LAST]");
	for (const char *p = argv[1]; *p; p++) {
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", *p))
			die(2, "\"%s\" is not a bus name", argv[1]);
	}
	if (argc == 4) {
		if (!parse_long(argv[2], 0, 247, &first) || !parse_long(argv[3], 0, 247, &last) ||
		    first > last)
			die(2, "FIRST and LAST: addresses 0..247 with FIRST <= LAST");
		body = cJSON_CreateObject();
		cJSON_AddNumberToObject(body, "first", (double)first);
		cJSON_AddNumberToObject(body, "last", (double)last);
	}
	snprintf(path, sizeof(path), "/api/admin/buses/%s/scan", argv[1]);
	if (!g.json)
		fprintf(stderr, "scanning %s (this can take a while)...\n", argv[1]);
	r = request("POST", path, body, true);
	cJSON_Delete(body);
	if (g.json) {
		print_json(r);
		cJSON_Delete(r);
		return 0;
	}
	res = array_of(r, "results");
	printf("ADDRESS  RESULT\n");
	cJSON_ArrayForEach(it, res) {
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(it, "address");
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(it, "result");
		bool ok = cJSON_IsString(s) && strcmp(s->valuestring, "ok") == 0;
		printf("%-7d  %s\n", json_int_or(a, -1),
		       ok ? "ok" : "garbled (two boards on one address?)");
		answering++;
	}
	if (!answering)
		printf("(no board answered)\n");
	cJSON_Delete(r);
	return 0;
}

/* ---- configuration from the edge config file ---- */

/* The admin token from api.admin_token_file of the config at path, read as
 * the daemon reads it. The packaged file is root:cartwise 0640. */
static void token_from_file(const char *file, const char *path)
{
	char why[700];
	int rc = cw_file_read_token(file, CW_ADMIN_TOKEN_MIN, g.token, sizeof(g.token), why,
				    sizeof(why));

	if (rc == CW_ERR_IO && (errno == EACCES || errno == EPERM))
		die(2,
		    "cannot read the admin token file %s (api.admin_token_file of %s): "
		    "permission denied; run cartwisectl as root or as a member of group cartwise",
		    file, path);
	if (rc != CW_OK)
		die(2, "%s: api.admin_token_file: %s", path, why);
}

static void from_config(const char *path, bool url_given)
{
	const cJSON *api, *bind, *port, *tok, *tokfile, *br;
	struct cw_jsoncfg jc;
	char *text = NULL, err[512];
	size_t n = 0;
	cJSON *root;

	/* read as the daemon reads it: comments allowed */
	if (cw_jsoncfg_read_file(path, MAX_CONFIG, &text, &n, err, sizeof(err)) != CW_OK)
		die(2, "%s", err);
	cw_jsoncfg_init(&jc, err, sizeof(err));
	if (cw_jsoncfg_parse(&jc, text, n, MAX_CONFIG,
			     CW_JSONCFG_PARSE_LINE_COL | CW_JSONCFG_PARSE_COMMENTS, &root) != CW_OK)
		die(2, "%s: %s (check it with cartwise-edge --check-config)", path, err);
	free(text);
	api = cJSON_GetObjectItemCaseSensitive(root, "api");
	bind = cJSON_GetObjectItemCaseSensitive(api, "bind");
	port = cJSON_GetObjectItemCaseSensitive(api, "port");
	tok = cJSON_GetObjectItemCaseSensitive(api, "admin_token");
	tokfile = cJSON_GetObjectItemCaseSensitive(api, "admin_token_file");
	br = cJSON_GetObjectItemCaseSensitive(root, "branch_id");
	if (!url_given) {
		const char *host = cJSON_IsString(bind) ? bind->valuestring : "127.0.0.1";
		int p = 8080;

		/* 0 (any free port) is valid for the daemon but not reachable here */
		if (port && !json_int(port, 1, 65535, &p))
			die(2, "%s: api.port: expected an integer 1..65535 (or give --url)", path);
		/* a wildcard bind is reached through loopback */
		if (strcmp(host, "0.0.0.0") == 0)
			host = "127.0.0.1";
		else if (strcmp(host, "::") == 0)
			host = "::1";
		if (strchr(host, ':'))
			snprintf(g.url, sizeof(g.url), "http://[%s]:%d", host, p);
		else
			snprintf(g.url, sizeof(g.url), "http://%s:%d", host, p);
	}
	if (!g.token[0] && cJSON_IsString(tok))
		copy(g.token, sizeof(g.token), tok->valuestring, "api.admin_token");
	if (!g.token[0] && cJSON_IsString(tokfile))
		token_from_file(tokfile->valuestring, path);
	if (cJSON_IsString(br))
		copy(g.branch, sizeof(g.branch), br->valuestring, "branch_id");
	cJSON_Delete(root);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: cartwisectl [OPTIONS] COMMAND [ARGS]\n"
		"\n"
		"Talks to the local API of cartwise-edge.\n"
		"\n"
		"Options:\n"
		"  --url URL        API address (default " DEFAULT_URL ")\n"
		"  --token TOKEN    admin token (prefer CARTWISE_TOKEN or --config: a command\n"
		"                   line is visible to other users of the machine)\n"
		"  --config FILE    read address, token and branch from the edge config\n"
		"  --json           print the API's JSON instead of tables\n"
		"  --help, --version\n"
		"\n"
		"Commands:\n"
		"  status                          buses, boards, carts by state, rentals, outbox\n"
		"  carts                           every cart (slot) and its state\n"
		"  rentals [--history] [--phone P] [--limit N]\n"
		"                                  open rentals, or the history\n"
		"  unlock N                        release cart N's lock (maintenance)\n"
		"  maintenance N on|off [--note T] take cart N out of service / back\n"
		"  return RENTAL_ID [--note T]     close a rental by hand\n"
		"  enroll [--code CODE|-]          drop the cloud credentials, register again\n"
		"  scan BUS [FIRST LAST]           list addresses answering on a bus\n"
		"  pin-hash                        hash a staff PIN read from stdin (kiosk_staff)\n"
		"\n"
		"Token: --token, else $CARTWISE_TOKEN, else api.admin_token of --config (or the\n"
		"first line of its api.admin_token_file: root or group cartwise can read it).\n"
		"Exit status: 0 ok, 1 refused or unreachable (message printed), 2 bad usage.\n");
}

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
};

static const struct command commands[] = {
	{"status", cmd_status, "cartwisectl status\nBuses, boards online/offline, lock counters, "
			       "carts by state, active rentals, outbox depth."},
	{"carts", cmd_carts, "cartwisectl carts\nEvery cart (docking slot) and its state."},
	{"rentals", cmd_rentals, NULL},
	{"unlock", cmd_unlock, "cartwisectl unlock CART_NUMBER\nReleases the cart's lock without "
			       "a rental and waits for the sensor to confirm."},
	{"maintenance", cmd_maintenance, "cartwisectl maintenance CART_NUMBER on|off [--note "
					 "TEXT]\nTakes a cart out of service, or puts it back."},
	{"return", cmd_return, "cartwisectl return RENTAL_ID [--note TEXT]\nCloses a rental by "
			       "hand (staff), keeping the note for the audit trail."},
	{"enroll", cmd_enroll, "cartwisectl enroll [--code CODE|-]\nAsks the running edge to "
			       "drop its cloud credentials (kept as cloud.json.replaced-* in its data "
			       "directory) and register again with CODE (\"-\": read from the standard "
			       "input, which keeps it off the command line), else with cloud."
			       "enrollment_code of its configuration. For a revoked or expired device "
			       "token, a device moved to another branch, or a device to be registered "
			       "afresh."},
	{"scan", cmd_scan, "cartwisectl scan BUS [FIRST LAST]\nProbes addresses on a configured "
			   "bus (default: the protocol's whole range) and flags garbled answers "
			   "(two boards on one address?)."},
	{"pin-hash", cmd_pin_hash, "cartwisectl pin-hash\nReads a staff PIN of 4-12 digits from "
				   "the standard input (without echo, and twice, on a terminal) and "
				   "prints its Argon2id hash ($argon2id$...) for the pin_hash of an "
				   "entry of the cloud's kiosk_staff. Needs no running edge."},
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"url", required_argument, NULL, 'u'},
		{"token", required_argument, NULL, 't'},
		{"config", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *config = NULL, *env;
	bool url_given = false;
	int opt, rc;

	copy(g.url, sizeof(g.url), DEFAULT_URL, "--url");
	/* "+": stop at the command; its own options follow it */
	while ((opt = getopt_long(argc, argv, "+u:t:c:jhV", opts, NULL)) != -1) {
		switch (opt) {
		case 'u':
			copy(g.url, sizeof(g.url), optarg, "--url");
			url_given = true;
			break;
		case 't':
			copy(g.token, sizeof(g.token), optarg, "--token");
			break;
		case 'c':
			config = optarg;
			break;
		case 'j':
			g.json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("cartwisectl %s\n", CW_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	env = getenv("CARTWISE_TOKEN");
	if (!g.token[0] && env && *env)
		copy(g.token, sizeof(g.token), env, "CARTWISE_TOKEN");
	if (config)
		from_config(config, url_given);
	while (strlen(g.url) > 0 && g.url[strlen(g.url) - 1] == '/')
		g.url[strlen(g.url) - 1] = '\0';

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];
		if (strcmp(c->name, argv[optind]) != 0)
			continue;
		for (int k = optind + 1; k < argc && c->usage; k++) {
			if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
				printf("Usage: %s\n", c->usage);
				return 0;
			}
		}
		curl_global_init(CURL_GLOBAL_DEFAULT);
		rc = c->fn(argc - optind, argv + optind);
		curl_global_cleanup();
		return rc;
	}
	fprintf(stderr, "cartwisectl: unknown command \"%s\" (see --help)\n", argv[optind]);
	return 2;
}
