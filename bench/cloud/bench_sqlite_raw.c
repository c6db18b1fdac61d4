/* bench_sqlite_raw.c - the raw speed of SQLite doing exactly the writes of
 * one cartwise-cloud heartbeat, for the ratio of bench/cloud/run-cloud.sh.
 *
 * A heartbeat (POST /api/devices/{id}/heartbeat, src/cloud/cw_cloud_api.c
 * h_heartbeat) runs, through src/cloud/cw_store.c on the SQLite backend:
 *   1. TOKEN_CHECK            (device_caller -> cw_store_device_token_check)
 *   2. DEVICE_HEARTBEAT       (cw_store_device_heartbeat, autocommit)
 *   3. COMMANDS_ANY_OPEN      (cw_store_commands_for_device's first look; no
 *                             command is open in the benchmark, so its write
 *                             transaction - expire, hand out, mark - never runs)
 * The SQL texts below are copies of src/cloud/cw_store_sqlite.c (keep them in
 * step when the store's statements change) and the pragmas
 * are those of sq_open(): WAL, synchronous=FULL, foreign_keys=ON, busy
 * timeout 5 s.
 *
 * Three ways of sharing the database between the threads:
 *   --mode shared : one connection behind a mutex for the whole heartbeat
 *                   (the server's design until 2026-11-28);
 *   --mode own    : one connection per thread (SQLite's own locking);
 *   --mode split  : the server's design (cw_store_sqlite.c): one writer
 *                   connection behind a mutex, taken for the write (2) and
 *                   again for the write transaction (3), and a read-only
 *                   connection per thread for the read (1).
 * It prints one line of key=value figures (errors counted, the first one
 * printed on stderr); it never passes or fails on time. Exit 1 only when it
 * cannot open the database or read the devices.
 *
 * Usage: bench_sqlite_raw --db FILE --devices FILE [--threads 4]
 *            [--seconds 10] [--mode shared|own|split] [--health JSON] [--firmware V]
 * The devices file has one "device_id jti" pair a line (a live token's jti). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DEVICES 4096
#define MAX_THREADS 64
#define MAX_SAMPLES 4000000 /* latency samples kept per run (all threads) */
#define UUID_LEN 36
enum { S_TOKEN_CHECK, S_HEARTBEAT, S_ANY_OPEN, S_N };
enum mode { M_SHARED, M_OWN, M_SPLIT };

/* Copies of cw_store_sqlite.c's sq_sql[] entries (same ?N numbering). */
static const char *const sql[S_N] = {
	[S_TOKEN_CHECK] = "SELECT 1 FROM device_tokens "
			  "WHERE jti = ?1 AND device_id = ?2 AND revoked = 0",
	[S_HEARTBEAT] =
		"UPDATE devices SET status = ?2, firmware_version = coalesce(?3, firmware_version), "
		"health = coalesce(?4, health), last_heartbeat_ms = ?5, updated_ms = ?5 "
		"WHERE id = ?1",
	[S_ANY_OPEN] = "SELECT 1 FROM commands WHERE device_id = ?1 "
		       "AND state IN ('pending', 'delivered') LIMIT 1",
};

struct device {
	char id[UUID_LEN + 1];
	char jti[UUID_LEN + 1];
};

struct conn {
	sqlite3 *h;
	sqlite3_stmt *st[S_N];
	pthread_mutex_t lock;
};

struct shared {
	const char *db_path, *health, *firmware;
	struct device *dev;
	int ndev;
	enum mode mode;
	struct conn *one; /* --mode shared: everything; split: the writer */
	atomic_bool stop;
	atomic_long ops, errors;
	double *lat_ms; /* MAX_SAMPLES */
	atomic_long nlat;
};

struct worker {
	struct shared *sh;
	int index;
	pthread_t th;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_free(struct conn *c)
{
	if (!c)
		return;
	for (int i = 0; i < S_N; i++)
		sqlite3_finalize(c->st[i]);
	sqlite3_close(c->h);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Opens the database with the pragmas of cw_store_sqlite.c's sq_open(); a
 * reader like its readers (SQLITE_OPEN_READONLY, busy timeout, only the
 * read statement). */
static struct conn *conn_new(const char *path, bool reader)
{
	struct conn *c = calloc(1, sizeof(*c));
	char *msg = NULL;

	if (!c)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	if (sqlite3_open_v2(path, &c->h,
			    (reader ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) |
				    SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK)
		goto fail;
	sqlite3_extended_result_codes(c->h, 1);
	sqlite3_busy_timeout(c->h, 5000);
	if (!reader && sqlite3_exec(c->h, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
					  "PRAGMA foreign_keys=ON",
				    NULL, NULL, &msg) != SQLITE_OK)
		goto fail;
	for (int i = 0; i < S_N; i++)
		if (!(reader && i == S_HEARTBEAT) && /* a read-only connection cannot prepare it */
		    sqlite3_prepare_v3(c->h, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i], NULL) !=
		    SQLITE_OK)
			goto fail;
	return c;
fail:
	fprintf(stderr, "bench_sqlite_raw: %s: %s\n", path,
		msg ? msg : (c->h ? sqlite3_errmsg(c->h) : "cannot open"));
	sqlite3_free(msg);
	conn_free(c);
	return NULL;
}

/* Steps a bound statement to the end; rows are read like the store reads them. */
static int step_all(sqlite3_stmt *st, int *rows)
{
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int n = sqlite3_column_count(st);
		for (int i = 0; i < n; i++)
			(void)sqlite3_column_text(st, i);
		if (rows)
			(*rows)++;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* 1: the token is live; 0 or -1. */
static int hb_read(struct conn *c, const struct device *d)
{
	int rows = 0;

	sqlite3_bind_text(c->st[S_TOKEN_CHECK], 1, d->jti, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(c->st[S_TOKEN_CHECK], 2, d->id, -1, SQLITE_TRANSIENT);
	return step_all(c->st[S_TOKEN_CHECK], &rows) || rows != 1 ? -1 : 0;
}

/* 2: the heartbeat write (its own transaction: one WAL commit); 0 or -1. */
static int hb_write(struct conn *c, const struct device *d, const char *health,
		    const char *firmware, int64_t now)
{
	sqlite3_bind_text(c->st[S_HEARTBEAT], 1, d->id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(c->st[S_HEARTBEAT], 2, "online", -1, SQLITE_STATIC);
	sqlite3_bind_text(c->st[S_HEARTBEAT], 3, firmware, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(c->st[S_HEARTBEAT], 4, health, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(c->st[S_HEARTBEAT], 5, now);
	return step_all(c->st[S_HEARTBEAT], NULL) || sqlite3_changes(c->h) != 1 ? -1 : 0;
}

/* 3: any command open for the device (a read); 0 or -1. */
static int hb_commands(struct conn *c, const struct device *d)
{
	int rows = 0;

	sqlite3_bind_text(c->st[S_ANY_OPEN], 1, d->id, -1, SQLITE_TRANSIENT);
	return step_all(c->st[S_ANY_OPEN], &rows);
}

/* One heartbeat's statements on the connections of the mode; 0, or -1 with
 * *failed the connection that failed. */
static int heartbeat(const struct shared *sh, struct conn *c, const struct device *d,
		     struct conn **failed)
{
	int64_t now = wall_ms();
	int rc;

	if (sh->mode != M_SPLIT) { /* c for everything, the mutex held throughout */
		*failed = c;
		pthread_mutex_lock(&c->lock);
		rc = hb_read(c, d) || hb_write(c, d, sh->health, sh->firmware, now) ||
		     hb_commands(c, d) ? -1 : 0;
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	/* split: c is this thread's reader; the writer is taken per step, like
	 * cw_store.c takes it per statement or transaction */
	*failed = c;
	if (hb_read(c, d))
		return -1;
	*failed = sh->one;
	pthread_mutex_lock(&sh->one->lock);
	rc = hb_write(sh->one, d, sh->health, sh->firmware, now);
	pthread_mutex_unlock(&sh->one->lock);
	if (rc)
		return -1;
	*failed = c;
	return hb_commands(c, d); /* a read: on this thread's reader */
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	struct conn *c = sh->mode == M_SHARED ? sh->one : conn_new(sh->db_path, sh->mode == M_SPLIT);
	unsigned i = (unsigned)w->index * 7919u;

	if (!c) {
		atomic_fetch_add(&sh->errors, 1);
		return NULL;
	}
	while (!atomic_load(&sh->stop)) {
		const struct device *d = &sh->dev[i++ % (unsigned)sh->ndev];
		struct conn *failed = c;
		double t0 = now_s();

		if (heartbeat(sh, c, d, &failed)) {
			/* reported, not fatal: the figure is the rate of what succeeded */
			if (atomic_fetch_add(&sh->errors, 1) == 0)
				fprintf(stderr, "bench_sqlite_raw: first error: %s (%d)\n",
					sqlite3_errmsg(failed->h), sqlite3_extended_errcode(failed->h));
			continue;
		}
		atomic_fetch_add(&sh->ops, 1);
		long k = atomic_fetch_add(&sh->nlat, 1);
		if (k < MAX_SAMPLES)
			sh->lat_ms[k] = (now_s() - t0) * 1000.0;
	}
	if (sh->mode != M_SHARED)
		conn_free(c);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
	char *end = NULL;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !end || *end || end == s || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int load_devices(const char *path, struct device *dev, int *n)
{
	FILE *f = fopen(path, "r");
	char line[256];

	*n = 0;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f) && *n < MAX_DEVICES) {
		char id[64], jti[64];
		if (sscanf(line, "%63s %63s", id, jti) != 2 || strlen(id) != UUID_LEN ||
		    strlen(jti) != UUID_LEN)
			continue;
		memcpy(dev[*n].id, id, UUID_LEN + 1);
		memcpy(dev[*n].jti, jti, UUID_LEN + 1);
		(*n)++;
	}
	fclose(f);
	return *n > 0 ? 0 : -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_sqlite_raw --db FILE --devices FILE [--threads N] "
			"[--seconds S] [--mode shared|own|split] [--health JSON] [--firmware V]\n");
}

int main(int argc, char **argv)
{
	static struct device dev[MAX_DEVICES];
	struct shared sh = {.health = "{\"boards\":2,\"locks\":32,\"uptime_s\":86400}",
			    .firmware = "1.4.2"};
	struct worker w[MAX_THREADS];
	const char *devices = NULL, *mode = "shared";
	long threads = 4, seconds = 10;
	double t0, elapsed;
	long n;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			usage();
			return 2;
		}
		if (strcmp(a, "--db") == 0)
			sh.db_path = v;
		else if (strcmp(a, "--devices") == 0)
			devices = v;
		else if (strcmp(a, "--mode") == 0)
			mode = v;
		else if (strcmp(a, "--health") == 0)
			sh.health = v;
		else if (strcmp(a, "--firmware") == 0)
			sh.firmware = v;
		else if (strcmp(a, "--threads") == 0) {
			if (parse_int(v, 1, MAX_THREADS, &threads)) {
				usage();
				return 2;
			}
		} else if (strcmp(a, "--seconds") == 0) {
			if (parse_int(v, 1, 3600, &seconds)) {
				usage();
				return 2;
			}
		} else {
			usage();
			return 2;
		}
		i++;
	}
	if (!sh.db_path || !devices ||
	    (strcmp(mode, "shared") && strcmp(mode, "own") && strcmp(mode, "split"))) {
		usage();
		return 2;
	}
	sh.mode = strcmp(mode, "own") == 0 ? M_OWN : strcmp(mode, "split") == 0 ? M_SPLIT : M_SHARED;
	if (load_devices(devices, dev, &sh.ndev)) {
		fprintf(stderr, "bench_sqlite_raw: no \"id jti\" lines in %s\n", devices);
		return 1;
	}
	sh.dev = dev;
	sh.lat_ms = malloc(sizeof(double) * MAX_SAMPLES);
	if (!sh.lat_ms)
		return 1;
	if (sh.mode != M_OWN && !(sh.one = conn_new(sh.db_path, false)))
		goto out;
	t0 = now_s();
	for (long i = 0; i < threads; i++) {
		w[i] = (struct worker){.sh = &sh, .index = (int)i};
		if (pthread_create(&w[i].th, NULL, work, &w[i])) {
			threads = i;
			atomic_store(&sh.stop, true);
			break;
		}
	}
	while (!atomic_load(&sh.stop) && now_s() - t0 < (double)seconds) {
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	atomic_store(&sh.stop, true);
	for (long i = 0; i < threads; i++)
		pthread_join(w[i].th, NULL);
	elapsed = now_s() - t0;
	n = atomic_load(&sh.nlat);
	if (n > MAX_SAMPLES)
		n = MAX_SAMPLES;
	qsort(sh.lat_ms, (size_t)n, sizeof(double), cmp_double);
	printf("mode=%s threads=%ld seconds=%.1f heartbeats=%ld errors=%ld rps=%.0f "
	       "p50_ms=%.2f p99_ms=%.2f\n",
	       mode, threads, elapsed, atomic_load(&sh.ops), atomic_load(&sh.errors),
	       (double)atomic_load(&sh.ops) / elapsed, n ? sh.lat_ms[n / 2] : 0.0,
	       n ? sh.lat_ms[(long)((double)n * 0.99)] : 0.0);
	rc = 0;
out:
	conn_free(sh.one);
	free(sh.lat_ms);
	return rc;
}
