/* cw_edb.c - the edge's SQLite database: open, pragmas, migrations.
 *
 * Durability: WAL + synchronous=FULL, so a COMMIT that returned is on disk
 * (the kiosk tells a customer "take cart N" only after it). Migrations come
 * from schema/edge/NNN_*.sql compiled in by scripts/embed_sql.py. */
#include "cw_edb.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cw_error.h"
#include "cw_file.h"
#include "cw_log.h"
#include "cw_migration.h"

extern const struct cw_migration cw_edge_migrations[];
extern const int cw_edge_migrations_count;

#define CW_EDB_BUSY_TIMEOUT_MS 5000

struct cw_edb {
	sqlite3 *h;
};

int cw_edb_latest_version(void)
{
	return cw_edge_migrations_count;
}

static int exec_sql(sqlite3 *h, const char *sql, const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(h, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		cw_error("edb.exec", "what=%s rc=%d msg=\"%s\"", what, rc,
			 msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return CW_ERR_DB;
	}
	return CW_OK;
}

static int read_user_version(sqlite3 *h, int *out)
{
	sqlite3_stmt *st = NULL;
	int rc = CW_ERR_DB;

	if (sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		goto out;
	if (sqlite3_step(st) != SQLITE_ROW)
		goto out;
	*out = sqlite3_column_int(st, 0);
	rc = CW_OK;
out:
	sqlite3_finalize(st);
	return rc;
}

/* Applies one migration inside BEGIN IMMEDIATE; re-reads user_version inside
 * the transaction so two processes opening the same file never both apply it. */
static int apply_one(sqlite3 *h, const struct cw_migration *m)
{
	char pragma[64];
	int cur = 0;

	if (exec_sql(h, "BEGIN IMMEDIATE", "migrate.begin") != CW_OK)
		return CW_ERR_DB;
	if (read_user_version(h, &cur) != CW_OK)
		goto fail;
	if (cur >= m->version) {
		exec_sql(h, "COMMIT", "migrate.commit");
		return CW_OK;
	}
	if (cur != m->version - 1) {
		cw_error("edb.migrate", "file=%s have=%d msg=\"gap in migrations\"", m->name, cur);
		goto fail;
	}
	if (exec_sql(h, m->sql, m->name) != CW_OK)
		goto fail;
	snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", m->version);
	if (exec_sql(h, pragma, "migrate.version") != CW_OK)
		goto fail;
	if (exec_sql(h, "COMMIT", "migrate.commit") != CW_OK)
		goto fail;
	cw_info("edb.migrated", "version=%d file=%s", m->version, m->name);
	return CW_OK;
fail:
	sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
	return CW_ERR_DB;
}

/* Before migrating a database of schema from (0 < from < to): an online copy
 * with SQLite's backup API to <path>.pre-v<from> (<data_dir>/edge.db.pre-vN),
 * so an upgrade that goes wrong can be undone (docs/OPERATIONS.md
 * "Recover"). Written to a temporary file (those left by an interrupted
 * copy removed first), synced, renamed over an older copy of the same from,
 * directory synced. CW_ERR_DB (logged) when it cannot be made, e.g. the
 * disk is full: the caller then does not migrate. */
static int snapshot(sqlite3 *h, const char *path, int from, int to)
{
	char snap[1100], tmp[1200];
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	const char *why = NULL;
	int fd, rc = SQLITE_OK;
	bool made = false;

	if (snprintf(snap, sizeof(snap), "%s.pre-v%d", path, from) >= (int)sizeof(snap) ||
	    snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", snap) >= (int)sizeof(tmp)) {
		cw_error("edb.snapshot_failed", "path=%s msg=\"path too long\"", path);
		return CW_ERR_DB;
	}
	/* A copy interrupted by a kill (power cut, start timeout, OOM) left its
	 * full-size temporary file and journal; each start would add one more.
	 * Only this process writes them: the database is opened by it alone. */
	cw_file_remove_stale_tmp(snap);
	fd = mkstemp(tmp); /* 0600: the copy holds what the database holds */
	if (fd < 0) {
		why = strerror(errno);
		goto fail;
	}
	close(fd);
	made = true;
	rc = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK) {
		b = sqlite3_backup_init(dst, "main", h, "main");
		if (!b) {
			rc = sqlite3_errcode(dst);
		} else {
			rc = sqlite3_backup_step(b, -1);
			if (rc == SQLITE_DONE)
				rc = SQLITE_OK;
			if (sqlite3_backup_finish(b) != SQLITE_OK && rc == SQLITE_OK)
				rc = sqlite3_errcode(dst);
		}
	}
	if (rc != SQLITE_OK) {
		why = sqlite3_errstr(rc);
		goto fail;
	}
	if (sqlite3_close(dst) != SQLITE_OK) {
		why = sqlite3_errmsg(dst);
		goto fail;
	}
	dst = NULL;
	if (cw_file_commit(tmp, snap) != CW_OK) {
		why = strerror(errno);
		goto fail;
	}
	cw_info("edb.snapshot", "path=%s from=%d to=%d", snap, from, to);
	return CW_OK;
fail:
	cw_error("edb.snapshot_failed",
		 "path=%s from=%d to=%d error=\"%s\" msg=\"no copy of the database could be "
		 "made before migrating it, so it is left at schema %d, unchanged; fix the "
		 "cause (often a full disk) and start again\"",
		 snap, from, to, why ? why : "unknown", from);
	sqlite3_close(dst);
	if (made)
		unlink(tmp);
	return CW_ERR_DB;
}

static int migrate(sqlite3 *h, const char *path)
{
	int cur = 0;
	int latest = cw_edge_migrations_count;

	for (int i = 0; i < latest; i++) {
		if (cw_edge_migrations[i].version != i + 1) {
			cw_error("edb.migrate", "msg=\"compiled migrations out of order\" index=%d", i);
			return CW_ERR_INTERNAL;
		}
	}
	if (read_user_version(h, &cur) != CW_OK) {
		cw_error("edb.open", "path=%s msg=\"cannot read user_version: %s\"", path,
			 sqlite3_errmsg(h));
		return CW_ERR_DB;
	}
	if (cur > latest) {
		cw_error("edb.too_new",
			 "path=%s schema=%d known=%d msg=\"database was written by a newer "
			 "cartwise-edge; refusing to open it (install the newer version or restore "
			 "a backup)\"",
			 path, cur, latest);
		return CW_ERR_DB;
	}
	if (cur > 0 && cur < latest && snapshot(h, path, cur, latest) != CW_OK)
		return CW_ERR_DB;
	for (int i = cur; i < latest; i++) {
		if (apply_one(h, &cw_edge_migrations[i]) != CW_OK)
			return CW_ERR_DB;
	}
	return CW_OK;
}

int cw_edb_open(const char *path, struct cw_edb **out)
{
	struct cw_edb *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = CW_ERR_DB;

	*out = NULL;
	if (!path || !*path)
		return CW_ERR_INVAL;
	db = calloc(1, sizeof(*db));
	if (!db)
		return CW_ERR_NOMEM;
	if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				  SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		cw_error("edb.open", "path=%s msg=\"%s\"", path,
			 db->h ? sqlite3_errmsg(db->h) : "out of memory");
		goto out;
	}
	sqlite3_extended_result_codes(db->h, 1);
	sqlite3_busy_timeout(db->h, CW_EDB_BUSY_TIMEOUT_MS);
	/* journal_mode answers the mode it ended in: insist on WAL. */
	if (sqlite3_prepare_v2(db->h, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
		cw_error("edb.open", "path=%s msg=\"cannot enable WAL: %s\"", path,
			 sqlite3_errmsg(db->h));
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (exec_sql(db->h, "PRAGMA synchronous=FULL", "pragma.synchronous") != CW_OK ||
	    exec_sql(db->h, "PRAGMA foreign_keys=ON", "pragma.foreign_keys") != CW_OK)
		goto out;
	rc = migrate(db->h, path);
	if (rc != CW_OK)
		goto out;
	*out = db;
	db = NULL;
out:
	sqlite3_finalize(st);
	cw_edb_free(db);
	return rc == CW_ERR_INTERNAL ? CW_ERR_DB : rc;
}

void cw_edb_free(struct cw_edb *db)
{
	if (!db)
		return;
	sqlite3_close_v2(db->h);
	free(db);
}

sqlite3 *cw_edb_handle(struct cw_edb *db)
{
	return db ? db->h : NULL;
}

int cw_edb_schema_version(struct cw_edb *db)
{
	int v = -1;

	if (!db || read_user_version(db->h, &v) != CW_OK)
		return CW_ERR_DB;
	return v;
}

int cw_edb_begin(struct cw_edb *db)
{
	return exec_sql(db->h, "BEGIN IMMEDIATE", "begin");
}

int cw_edb_commit(struct cw_edb *db)
{
	return exec_sql(db->h, "COMMIT", "commit");
}

void cw_edb_rollback(struct cw_edb *db)
{
	/* Harmless when no transaction is open (SQLite may have rolled back itself). */
	if (!sqlite3_get_autocommit(db->h))
		sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

int cw_edb_integrity_check(struct cw_edb *db)
{
	sqlite3_stmt *st = NULL;
	int rc = CW_ERR_DB;
	int rows = 0;

	if (sqlite3_prepare_v2(db->h, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
		goto out;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		rows++;
		if (!t || strcmp(t, "ok") != 0) {
			cw_error("edb.integrity", "msg=\"%s\"", t ? t : "(null)");
			goto out;
		}
	}
	if (rows == 1)
		rc = CW_OK;
out:
	sqlite3_finalize(st);
	return rc;
}
