/* bench_cmdlat.c - command latency over MQTT: a manager's unlock on the cloud
 * API to the release confirmed by the lock's sensor at the edge.
 *
 * Drives a running cartwise-cloud (POST /api/branches/{b}/carts/{id}/unlock,
 * round-robin over the branch's carts) and reads the edge's own record of
 * each command in its database (read-only, while the daemon runs):
 * command_log.received_wall_ms (the syncer handed the command to the engine)
 * and updated_wall_ms (the engine's stamp once the sensor confirmed the
 * release, written with the result). Every clock is the one machine's wall
 * clock, so request start -> that stamp is fair (ms resolution). Started by
 * bench/run-cmdlat.sh, which sets up cloud, broker, simulator and edge.
 * Prints p50/p99 of each leg beside the bus wire time of one unlock plus
 * its confirming read at the simulator's baud rate (bench_util's
 * arithmetic, as bench_unlock). Figures only: the exit status says whether
 * the run worked, never whether the target was met.
 *
 * The staff token comes from the environment (CW_BENCH_TOKEN), not argv. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cw_clock.h"
#include "cw_error.h"

#define TARGET_P99_MS 100.0
#define MAX_UNLOCKS 100000
#define MAX_CARTS 256
#define RESP_MAX (256 * 1024)
#define DONE_TIMEOUT_MS 10000
#define RELATCH_TIMEOUT_MS 3000
#define POLL_MS 2

struct opts {
	const char *cloud;
	const char *branch;
	const char *edge_db;
	int unlocks;
	int locks;
	int baud;
	int jitter_ms;
};

struct cart {
	char id[64];
	int number;
};

struct buf {
	char *p;
	size_t len;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: CW_BENCH_TOKEN=staff-token bench_cmdlat --cloud URL --branch ID "
		   "--edge-db PATH\n"
		   "         [--unlocks N (200)] [--locks L (16)] [--baud BAUD (19200)] "
		   "[--jitter-ms MS (50)]\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->unlocks = 200;
	o->locks = 16;
	o->baud = 19200;
	o->jitter_ms = 50;
	for (int i = 1; i < argc; i++) {
		const char *a;
		char *v;
		int rc = cw_bench_next_opt(argc, argv, &i, "bench_cmdlat", NULL, usage, &a, &v);

		if (rc != CW_OK)
			return rc;
		if (strcmp(a, "--cloud") == 0)
			o->cloud = v;
		else if (strcmp(a, "--branch") == 0)
			o->branch = v;
		else if (strcmp(a, "--edge-db") == 0)
			o->edge_db = v;
		else if (strcmp(a, "--unlocks") == 0)
			rc = cw_bench_parse_int(v, 1, MAX_UNLOCKS, &o->unlocks);
		else if (strcmp(a, "--locks") == 0)
			rc = cw_bench_parse_int(v, 1, 32, &o->locks);
		else if (strcmp(a, "--baud") == 0)
			rc = cw_bench_parse_int(v, 1200, 1000000, &o->baud);
		else if (strcmp(a, "--jitter-ms") == 0)
			rc = cw_bench_parse_int(v, 0, 10000, &o->jitter_ms);
		else
			rc = CW_ERR_INVAL;
		if (rc != CW_OK) {
			fprintf(stderr, "bench_cmdlat: bad option %s %s\n", a, v);
			usage(stderr);
			return CW_ERR_INVAL;
		}
	}
	if (!o->cloud || !o->branch || !o->edge_db) {
		usage(stderr);
		return CW_ERR_INVAL;
	}
	return CW_OK;
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
	struct buf *b = ctx;
	size_t len = size * n;

	if (b->len + len + 1 > RESP_MAX)
		return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
	memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return len;
}

/* One request on the shared handle; the body is parsed into *out (caller
 * frees). CW_ERR_PROTO when the status is not `want` or the body not JSON. */
static int request(CURL *h, const char *url, const char *post, long want, struct buf *b,
		   cJSON **out)
{
	long status = 0;
	CURLcode cc;

	*out = NULL;
	b->len = 0;
	b->p[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (post) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		fprintf(stderr, "bench_cmdlat: %s: %s\n", url, curl_easy_strerror(cc));
		return CW_ERR_IO;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status != want) {
		fprintf(stderr, "bench_cmdlat: %s: HTTP %ld: %.200s\n", url, status, b->p);
		return CW_ERR_PROTO;
	}
	*out = cJSON_Parse(b->p);
	return *out ? CW_OK : CW_ERR_PROTO;
}

static int load_carts(CURL *h, const struct opts *o, struct buf *b, struct cart *carts, int *n)
{
	char url[512];
	cJSON *body = NULL, *it;
	int rc;

	*n = 0;
	snprintf(url, sizeof(url), "%s/api/branches/%s/carts", o->cloud, o->branch);
	rc = request(h, url, NULL, 200, b, &body);
	if (rc != CW_OK)
		return rc;
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(body, "items")) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
		const cJSON *num = cJSON_GetObjectItemCaseSensitive(it, "cart_number");

		if (*n == MAX_CARTS || !cJSON_IsString(id) || !cJSON_IsNumber(num) ||
		    strlen(id->valuestring) >= sizeof(carts[0].id))
			continue;
		snprintf(carts[*n].id, sizeof(carts[0].id), "%s", id->valuestring);
		carts[*n].number = num->valueint;
		(*n)++;
	}
	cJSON_Delete(body);
	return *n > 0 ? CW_OK : CW_ERR_NOTFOUND;
}

/* Waits until the edge has sensed cart `number`'s hook closed again (the
 * simulator re-latches an untaken released hook), so that every unlock
 * releases a latched lock. */
static int wait_latched(sqlite3 *db, int number)
{
	sqlite3_stmt *st = NULL;
	int64_t end = cw_mono_ms() + RELATCH_TIMEOUT_MS;
	int rc = CW_ERR_TIMEOUT;

	if (sqlite3_prepare_v2(db, "SELECT hook_closed FROM carts WHERE cart_number = ?", -1, &st,
			       NULL) != SQLITE_OK)
		return CW_ERR_DB;
	while (cw_mono_ms() < end) {
		bool closed = false;

		sqlite3_bind_int(st, 1, number);
		if (sqlite3_step(st) == SQLITE_ROW)
			closed = sqlite3_column_int(st, 0) == 1;
		sqlite3_reset(st);
		if (closed) {
			rc = CW_OK;
			break;
		}
		cw_sleep_ms(POLL_MS);
	}
	sqlite3_finalize(st);
	return rc;
}

/* Waits for the command's outcome in the edge's command_log. */
static int wait_done(sqlite3 *db, const char *id, bool *ok, int64_t *received, int64_t *done,
		     int64_t *lib_ms)
{
	sqlite3_stmt *st = NULL;
	int64_t end = cw_mono_ms() + DONE_TIMEOUT_MS;
	int rc = CW_ERR_TIMEOUT;

	if (sqlite3_prepare_v2(db, "SELECT state, received_wall_ms, updated_wall_ms, "
				   "json_extract(result, '$.unlock_latency_ms') FROM command_log "
				   "WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
		return CW_ERR_DB;
	while (cw_mono_ms() < end && rc == CW_ERR_TIMEOUT) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			const char *state = (const char *)sqlite3_column_text(st, 0);

			if (state && strcmp(state, "executing") != 0) {
				*ok = strcmp(state, "done") == 0;
				*received = sqlite3_column_int64(st, 1);
				*done = sqlite3_column_int64(st, 2);
				*lib_ms = sqlite3_column_int64(st, 3);
				rc = CW_OK;
			}
		}
		sqlite3_reset(st);
		if (rc == CW_ERR_TIMEOUT)
			cw_sleep_ms(POLL_MS);
	}
	sqlite3_finalize(st);
	return rc;
}

static void row(const char *leg, double *v, int n)
{
	double mean = 0;

	if (n == 0) {
		printf("| %s | - | - | - | - |\n", leg);
		return;
	}
	for (int i = 0; i < n; i++)
		mean += v[i];
	cw_bench_sort(v, (size_t)n);
	printf("| %s | %.0f | %.0f | %.0f | %.1f |\n", leg, cw_bench_percentile(v, (size_t)n, 0.50),
	       cw_bench_percentile(v, (size_t)n, 0.99), v[n - 1], mean / n);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct cart *carts = NULL;
	struct cw_bench_wire w;
	struct buf b = {0};
	struct curl_slist *hdr = NULL;
	char auth[1024], url[512], machine[128];
	const char *token = getenv("CW_BENCH_TOKEN");
	double *api = NULL, *to_edge = NULL, *bus = NULL, *lib = NULL, *total = NULL;
	sqlite3 *db = NULL;
	CURL *h = NULL;
	int ncarts = 0, nok = 0, nfail = 0, rc;

	if (parse_args(argc, argv, &o) != CW_OK)
		return 2;
	if (!token || !*token || strlen(token) >= sizeof(auth) - 32) {
		fprintf(stderr, "bench_cmdlat: CW_BENCH_TOKEN must hold a staff token\n");
		return 2;
	}
	carts = calloc(MAX_CARTS, sizeof(*carts));
	b.p = malloc(RESP_MAX);
	api = calloc((size_t)o.unlocks, sizeof(double));
	to_edge = calloc((size_t)o.unlocks, sizeof(double));
	bus = calloc((size_t)o.unlocks, sizeof(double));
	lib = calloc((size_t)o.unlocks, sizeof(double));
	total = calloc((size_t)o.unlocks, sizeof(double));
	rc = !carts || !b.p || !api || !to_edge || !bus || !lib || !total ? CW_ERR_NOMEM : CW_OK;
	if (rc == CW_OK && sqlite3_open_v2(o.edge_db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "bench_cmdlat: %s: %s\n", o.edge_db, db ? sqlite3_errmsg(db) : "?");
		rc = CW_ERR_DB;
	}
	if (rc == CW_OK)
		sqlite3_busy_timeout(db, 1000);
	if (rc == CW_OK && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		rc = CW_ERR_INTERNAL;
	if (rc == CW_OK && !(h = curl_easy_init()))
		rc = CW_ERR_NOMEM;
	if (rc != CW_OK)
		goto out;
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	hdr = curl_slist_append(hdr, auth);
	hdr = curl_slist_append(hdr, "Content-Type: application/json");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	rc = load_carts(h, &o, &b, carts, &ncarts);
	if (rc != CW_OK) {
		fprintf(stderr, "bench_cmdlat: no carts in branch %s: %s\n", o.branch, cw_strerror(rc));
		goto out;
	}

	for (int i = 0; i < o.unlocks; i++) {
		const struct cart *c = &carts[i % ncarts];
		int64_t t0, t_resp, received = 0, done = 0, lib_ms = 0;
		cJSON *resp = NULL;
		const cJSON *id;
		bool ok = false;

		rc = wait_latched(db, c->number);
		if (rc != CW_OK) {
			fprintf(stderr, "bench_cmdlat: cart %d did not re-latch: %s\n", c->number,
				cw_strerror(rc));
			goto out;
		}
		if (o.jitter_ms > 0) /* requests land anywhere in the bus's poll cycle */
			cw_sleep_ms(rand() % (o.jitter_ms + 1));
		snprintf(url, sizeof(url), "%s/api/branches/%s/carts/%s/unlock", o.cloud, o.branch,
			 c->id);
		t0 = cw_wall_ms();
		rc = request(h, url, "{}", 202, &b, &resp);
		t_resp = cw_wall_ms();
		id = cJSON_GetObjectItemCaseSensitive(resp, "id");
		if (rc != CW_OK || !cJSON_IsString(id)) {
			cJSON_Delete(resp);
			rc = rc != CW_OK ? rc : CW_ERR_PROTO;
			goto out;
		}
		rc = wait_done(db, id->valuestring, &ok, &received, &done, &lib_ms);
		if (rc != CW_OK || !ok) {
			if (++nfail <= 5)
				fprintf(stderr, "bench_cmdlat: command %s (cart %d): %s\n",
					id->valuestring, c->number,
					rc != CW_OK ? cw_strerror(rc) : "failed at the edge");
			cJSON_Delete(resp);
			rc = CW_OK;
			continue;
		}
		cJSON_Delete(resp);
		api[nok] = (double)(t_resp - t0);
		to_edge[nok] = (double)(received - t0);
		bus[nok] = (double)(done - received);
		lib[nok] = (double)lib_ms;
		total[nok] = (double)(done - t0);
		nok++;
	}

	cw_bench_wire_times(CW_PROTO_MODBUS, o.locks, o.baud, &w);
	cw_bench_machine(machine, sizeof(machine));
	printf("## bench_cmdlat: %d unlocks from the cloud API over MQTT, round-robin over %d "
	       "carts, Modbus %d locks, %d baud 8N1 paced simulator (%s)\n\n",
	       o.unlocks, ncarts, o.locks, o.baud, machine);
	printf("| leg (ms, wall clock) | p50 | p99 | max | mean |\n|---|---:|---:|---:|---:|\n");
	row("API request -> 202 answer", api, nok);
	row("API request -> edge engine has the command", to_edge, nok);
	row("edge engine -> release confirmed by the sensor", bus, nok);
	row("  of which the bus's unlock call (its own figure, whole ms)", lib, nok);
	{
		double p99 = 0;

		row("**API request -> release confirmed**", total, nok);
		if (nok > 0)
			p99 = cw_bench_percentile(total, (size_t)nok, 0.99);
		printf("\nconfirmed %d, failed %d; bus wire time of one unlock (release + confirming "
		       "read) %.2f ms, plus one poll %.2f ms = %.2f ms; target p99 <= %.0f ms: %s\n",
		       nok, nfail, w.unlock_ms, w.poll_ms, w.unlock_ms + w.poll_ms, TARGET_P99_MS,
		       nok == 0 ? "no data" : p99 <= TARGET_P99_MS ? "met" : "MISSED");
	}
	rc = nok > 0 ? CW_OK : CW_ERR_TIMEOUT;
out:
	curl_slist_free_all(hdr);
	if (h)
		curl_easy_cleanup(h);
	curl_global_cleanup();
	sqlite3_close(db);
	free(carts);
	free(b.p);
	free(api);
	free(to_edge);
	free(bus);
	free(lib);
	free(total);
	return rc == CW_OK ? 0 : 1;
}
