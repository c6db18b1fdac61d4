/* cw_edge_sync.c - the struct cw_sync_source of the edge (cw_sync.h,
 * docs/SYNC.md): outbox read / acknowledge / depth / prune on its own
 * SQLite connection, device health, commands and the cloud's time through
 * the engine. */
#include "cw_edge_sync.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "cw_clock.h"
#include "cw_edb.h"
#include "cw_error.h"
#include "cw_log.h"

#define PRUNE_EVERY_MS (10LL * 60 * 1000)

struct cw_edge_sync {
	pthread_mutex_t mu;
	struct cw_edb *db; /* our own connection, not the engine's */
	sqlite3 *h;
	struct cw_engine *e;
	char data_dir[512];
	int64_t last_prune_mono; /* 0 = never */
	struct cw_cloudcfg *cloudcfg; /* configuration pull; NULL = none */
};

int cw_edge_sync_new(const char *db_path, const char *data_dir, struct cw_engine *e,
		     struct cw_edge_sync **out)
{
	struct cw_edge_sync *s;
	int rc;

	if (!out)
		return CW_ERR_INVAL;
	*out = NULL;
	if (!db_path || !data_dir || !e)
		return CW_ERR_INVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CW_ERR_NOMEM;
	{
		/* Recursive: a callback of outbox_read may ask for the depth. */
		pthread_mutexattr_t a;
		pthread_mutexattr_init(&a);
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&s->mu, &a);
		pthread_mutexattr_destroy(&a);
	}
	s->e = e;
	if (snprintf(s->data_dir, sizeof(s->data_dir), "%s", data_dir) >= (int)sizeof(s->data_dir)) {
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	/* Same pragmas as the engine's (WAL, synchronous=FULL, busy timeout);
	 * the schema is already current, so nothing is migrated here. */
	rc = cw_edb_open(db_path, &s->db);
	if (rc != CW_OK)
		goto out;
	s->h = cw_edb_handle(s->db);
	*out = s;
	s = NULL;
out:
	cw_edge_sync_free(s);
	return rc;
}

void cw_edge_sync_free(struct cw_edge_sync *s)
{
	if (!s)
		return;
	cw_edb_free(s->db);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static int sql_fail(struct cw_edge_sync *s, const char *what, int rc)
{
	cw_error("sync.sql", "what=%s rc=%d msg=\"%s\"", what, rc, sqlite3_errmsg(s->h));
	return CW_ERR_DB;
}

/* ---------------------------------------------------------------- outbox */

int cw_edge_sync_outbox_read(struct cw_edge_sync *s, int64_t after_seq, int max_entries,
			     size_t max_bytes, cw_sync_entry_fn fn, void *fctx)
{
	sqlite3_stmt *st = NULL;
	size_t bytes = 0;
	int n = 0, rc, src;

	if (!s || !fn || max_entries < 1)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&s->mu);
	/* outbox_unacked (a partial index on seq WHERE acked = 0) serves this. */
	src = sqlite3_prepare_v2(s->h,
				 "SELECT seq, kind, entity_type, entity_id, payload, created_wall_ms, "
				 "clock_trusted, attempts FROM outbox WHERE acked = 0 AND seq > ?1 "
				 "ORDER BY seq LIMIT ?2",
				 -1, &st, NULL);
	if (src != SQLITE_OK) {
		rc = sql_fail(s, "outbox_read.prepare", src);
		goto out;
	}
	sqlite3_bind_int64(st, 1, after_seq);
	sqlite3_bind_int(st, 2, max_entries);
	rc = CW_OK;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		struct cw_sync_entry en;
		size_t len = (size_t)sqlite3_column_bytes(st, 4);
		int frc;

		/* The first entry always goes, however big: else one large
		 * entry would stop the queue for good. */
		if (n > 0 && bytes + len > max_bytes)
			break;
		en.seq = sqlite3_column_int64(st, 0);
		en.kind = (const char *)sqlite3_column_text(st, 1);
		en.entity_type = (const char *)sqlite3_column_text(st, 2);
		en.entity_id = (const char *)sqlite3_column_text(st, 3);
		en.payload = (const char *)sqlite3_column_text(st, 4);
		en.created_wall_ms = sqlite3_column_int64(st, 5);
		en.clock_trusted = sqlite3_column_int(st, 6) != 0;
		en.attempts = sqlite3_column_int(st, 7);
		if (!en.kind || !en.entity_type || !en.entity_id || !en.payload) {
			rc = CW_ERR_NOMEM; /* NOT NULL columns: only a failed conversion */
			break;
		}
		frc = fn(fctx, &en);
		if (frc != 0) {
			rc = frc;
			break;
		}
		bytes += len;
		n++;
	}
	if (rc == CW_OK && src != SQLITE_ROW && src != SQLITE_DONE)
		rc = sql_fail(s, "outbox_read.step", src);
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->mu);
	return rc == CW_OK ? n : rc;
}

static int64_t prune_locked(struct cw_edge_sync *s, int64_t now_wall_ms)
{
	sqlite3_stmt *st = NULL;
	int64_t n;
	int src;

	/* Entries are acknowledged in seq order and only acknowledged ones go,
	 * so the outbox keeps no holes below its first unacknowledged entry. */
	src = sqlite3_prepare_v2(s->h,
				 "DELETE FROM outbox WHERE acked = 1 AND (acked_wall_ms < ?1 - ?2 OR "
				 "acked_wall_ms > ?1 + ?2)",
				 -1, &st, NULL);
	if (src != SQLITE_OK)
		return sql_fail(s, "prune.prepare", src);
	sqlite3_bind_int64(st, 1, now_wall_ms);
	sqlite3_bind_int64(st, 2, CW_EDGE_SYNC_KEEP_ACKED_MS);
	src = sqlite3_step(st);
	n = sqlite3_changes(s->h);
	sqlite3_finalize(st);
	if (src != SQLITE_DONE)
		return sql_fail(s, "prune.step", src);
	if (n > 0)
		cw_info("sync.pruned", "entries=%lld", (long long)n);
	return n;
}

int64_t cw_edge_sync_prune(struct cw_edge_sync *s, int64_t now_wall_ms)
{
	int64_t n;

	if (!s)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&s->mu);
	n = prune_locked(s, now_wall_ms);
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* One UPDATE of the outbox with up to three integer parameters (?1..?3, as
 * many as the statement names), in its own write transaction (s->mu held). BEGIN IMMEDIATE makes the wait for the engine's
 * writer explicit (busy timeout) rather than an upgrade failure half-way. */
static int update_locked(struct cw_edge_sync *s, const char *what, const char *sql, int64_t p1,
			 int64_t p2, int64_t p3)
{
	sqlite3_stmt *st = NULL;
	int src;

	if (cw_edb_begin(s->db) != CW_OK)
		return CW_ERR_DB;
	src = sqlite3_prepare_v2(s->h, sql, -1, &st, NULL);
	if (src == SQLITE_OK) {
		const int64_t p[3] = {p1, p2, p3};
		for (int i = 0; i < sqlite3_bind_parameter_count(st) && i < 3; i++)
			sqlite3_bind_int64(st, i + 1, p[i]);
		src = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	if (src != SQLITE_DONE) {
		int rc = sql_fail(s, what, src);
		cw_edb_rollback(s->db);
		return rc;
	}
	if (cw_edb_commit(s->db) != CW_OK) {
		cw_edb_rollback(s->db);
		return CW_ERR_DB;
	}
	return CW_OK;
}

int cw_edge_sync_outbox_ack(struct cw_edge_sync *s, int64_t upto_seq)
{
	int64_t mono = cw_mono_ms();
	int rc;

	if (!s)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&s->mu);
	rc = update_locked(s, "outbox_ack",
			   "UPDATE outbox SET acked = 1, acked_wall_ms = ?1 "
			   "WHERE acked = 0 AND seq <= ?2",
			   cw_wall_ms(), upto_seq, 0);
	/* Pruning is housekeeping: at most every few minutes, and its failure
	 * is not the acknowledgement's. */
	if (rc == CW_OK &&
	    (s->last_prune_mono == 0 || mono - s->last_prune_mono >= PRUNE_EVERY_MS)) {
		s->last_prune_mono = mono;
		(void)prune_locked(s, cw_wall_ms());
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int cw_edge_sync_outbox_sent(struct cw_edge_sync *s, int64_t first_seq, int64_t last_seq)
{
	int rc;

	if (!s || first_seq > last_seq)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&s->mu);
	/* Counted before the POST: an entry the cloud may have seen counts as
	 * sent, so only an entry it cannot have seen from this database keeps
	 * attempts = 0 (docs/SYNC.md "The cloud ahead of the database"). */
	rc = update_locked(s, "outbox_sent",
			   "UPDATE outbox SET attempts = attempts + 1, sent_wall_ms = ?1 "
			   "WHERE acked = 0 AND seq BETWEEN ?2 AND ?3",
			   cw_wall_ms(), first_seq, last_seq);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int cw_edge_sync_outbox_unsent(struct cw_edge_sync *s, int64_t first_seq, int64_t last_seq)
{
	int rc;

	if (!s || first_seq > last_seq)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&s->mu);
	/* the cloud skipped these without applying them (cloud_ahead): the
	 * POST that carried them does not count */
	rc = update_locked(s, "outbox_unsent",
			   "UPDATE outbox SET attempts = max(attempts - 1, 0) "
			   "WHERE acked = 0 AND seq BETWEEN ?1 AND ?2",
			   first_seq, last_seq, 0);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int64_t cw_edge_sync_outbox_depth(struct cw_edge_sync *s)
{
	sqlite3_stmt *st = NULL;
	int64_t n = CW_ERR_DB;
	int src;

	if (!s)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&s->mu);
	src = sqlite3_prepare_v2(s->h, "SELECT count(*) FROM outbox WHERE acked = 0", -1, &st, NULL);
	if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	else
		sql_fail(s, "outbox_depth", src);
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* ---------------------------------------------------------------- health */

/* First number of a small text file; false when absent or unreadable. */
static bool read_number(const char *path, double *out)
{
	FILE *f = fopen(path, "r");
	bool ok;

	if (!f)
		return false;
	ok = fscanf(f, "%lf", out) == 1;
	fclose(f);
	return ok;
}

/* "MemAvailable:  123456 kB" of /proc/meminfo, in kB. */
static bool mem_available_kb(double *out)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	bool ok = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemAvailable: %lf kB", out) == 1) {
			ok = true;
			break;
		}
	}
	fclose(f);
	return ok;
}

void cw_edge_sync_health(struct cw_edge_sync *s, cJSON *obj)
{
	struct statvfs vfs;
	double v;
	int64_t depth;
	int online = 0, total = 0;

	if (!s || !obj)
		return;
	/* millidegrees Celsius; absent off the Pi (containers, some boards) */
	if (read_number("/sys/class/thermal/thermal_zone0/temp", &v))
		cJSON_AddNumberToObject(obj, "cpu_temp_c", (double)(int64_t)(v / 100.0) / 10.0);
	else
		cJSON_AddNullToObject(obj, "cpu_temp_c");
	if (statvfs(s->data_dir, &vfs) == 0)
		cJSON_AddNumberToObject(obj, "disk_free_mb",
					(double)((uint64_t)vfs.f_bavail * vfs.f_frsize / (1024 * 1024)));
	else
		cJSON_AddNullToObject(obj, "disk_free_mb");
	if (mem_available_kb(&v))
		cJSON_AddNumberToObject(obj, "mem_available_mb", (double)(int64_t)(v / 1024.0));
	else
		cJSON_AddNullToObject(obj, "mem_available_mb");
	if (read_number("/proc/uptime", &v))
		cJSON_AddNumberToObject(obj, "uptime_s", (double)(int64_t)v);
	else
		cJSON_AddNullToObject(obj, "uptime_s");
	depth = cw_edge_sync_outbox_depth(s);
	if (depth >= 0)
		cJSON_AddNumberToObject(obj, "outbox_depth", (double)depth);
	else
		cJSON_AddNullToObject(obj, "outbox_depth");
	cJSON_AddBoolToObject(obj, "clock_trusted", cw_engine_clock_trusted(s->e));
	cw_engine_boards(s->e, &online, &total);
	cJSON_AddNumberToObject(obj, "boards_online", online);
	cJSON_AddNumberToObject(obj, "boards_total", total);
	if (s->cloudcfg)
		cw_cloudcfg_health(s->cloudcfg, obj);
	else
		cJSON_AddNumberToObject(obj, "config_version", 0); /* the file alone */
}

void cw_edge_sync_set_cloudcfg(struct cw_edge_sync *s, struct cw_cloudcfg *c)
{
	s->cloudcfg = c;
}

/* ------------------------------------------------------ source callbacks */

static int src_outbox_read(void *ctx, int64_t after_seq, int max_entries, size_t max_bytes,
			   cw_sync_entry_fn fn, void *fctx)
{
	return cw_edge_sync_outbox_read(ctx, after_seq, max_entries, max_bytes, fn, fctx);
}

static int src_outbox_ack(void *ctx, int64_t upto_seq)
{
	return cw_edge_sync_outbox_ack(ctx, upto_seq);
}

static int src_outbox_sent(void *ctx, int64_t first_seq, int64_t last_seq)
{
	return cw_edge_sync_outbox_sent(ctx, first_seq, last_seq);
}

static int src_outbox_unsent(void *ctx, int64_t first_seq, int64_t last_seq)
{
	return cw_edge_sync_outbox_unsent(ctx, first_seq, last_seq);
}

static int64_t src_outbox_depth(void *ctx)
{
	return cw_edge_sync_outbox_depth(ctx);
}

static void src_health(void *ctx, cJSON *obj)
{
	cw_edge_sync_health(ctx, obj);
}

static int src_command(void *ctx, const struct cw_sync_command *cmd)
{
	struct cw_edge_sync *s = ctx;
	struct cw_engine_command ec = {
		.id = cmd->id,
		.action = cmd->action,
		.args = cmd->args,
		.issued_wall_ms = cmd->issued_ms,
		.expires_wall_ms = cmd->expires_ms,
	};

	return cw_engine_command(s->e, &ec, NULL);
}

static void src_server_time(void *ctx, int64_t wall_ms, int64_t mono_ms)
{
	struct cw_edge_sync *s = ctx;

	cw_engine_server_time(s->e, wall_ms, mono_ms);
}

static void src_config_versions(void *ctx, int64_t *have, int64_t *rejected)
{
	struct cw_edge_sync *s = ctx;

	cw_cloudcfg_versions(s->cloudcfg, have, rejected);
}

static int src_config_apply(void *ctx, int64_t version, const cJSON *config, char *err,
			    size_t errlen)
{
	struct cw_edge_sync *s = ctx;

	return cw_cloudcfg_offer(s->cloudcfg, version, config, err, errlen);
}

static bool src_chain_key_held(void *ctx)
{
	struct cw_edge_sync *s = ctx;

	return cw_cloudcfg_has_key(s->cloudcfg);
}

static int src_chain_key(void *ctx, const cJSON *key, char *err, size_t errlen)
{
	struct cw_edge_sync *s = ctx;

	return cw_cloudcfg_offer_key(s->cloudcfg, key, err, errlen);
}

void cw_edge_sync_source(struct cw_edge_sync *s, struct cw_sync_source *out)
{
	*out = (struct cw_sync_source){
		.ctx = s,
		.outbox_read = src_outbox_read,
		.outbox_ack = src_outbox_ack,
		.outbox_sent = src_outbox_sent,
		.outbox_unsent = src_outbox_unsent,
		.outbox_depth = src_outbox_depth,
		.health = src_health,
		.command = src_command,
		.server_time = src_server_time,
		.config_versions = s->cloudcfg ? src_config_versions : NULL,
		.config_apply = s->cloudcfg ? src_config_apply : NULL,
		.chain_key_held = s->cloudcfg ? src_chain_key_held : NULL,
		.chain_key = s->cloudcfg ? src_chain_key : NULL,
	};
}
