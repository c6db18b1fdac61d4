/* cw_edb.h - the edge's SQLite database: open, pragmas, migrations.
 *
 * Migrations are the files schema/edge/NNN_*.sql, compiled into the binary
 * (see src/edge/meson.build) and applied in order inside one transaction each;
 * PRAGMA user_version holds the last applied number. WAL, foreign keys on,
 * synchronous=FULL (see docs/ARCHITECTURE.md "Durability"). */
#ifndef CW_EDB_H
#define CW_EDB_H

#include <sqlite3.h>

struct cw_edb;

/* Opens (creating if needed) and migrates the database at path. Before
 * migrating one of an older schema N (N > 0), copies it online to
 * <path>.pre-vN (an older copy of the same N replaced; log edb.snapshot);
 * if that copy cannot be made, nothing is migrated and the open fails.
 * Returns CW_ERR_DB with a logged message on failure. */
int cw_edb_open(const char *path, struct cw_edb **out);
void cw_edb_free(struct cw_edb *db); /* NULL ok */
sqlite3 *cw_edb_handle(struct cw_edb *db);
/* Highest migration number compiled in, and the one applied. */
int cw_edb_schema_version(struct cw_edb *db);
int cw_edb_latest_version(void);
/* BEGIN IMMEDIATE / COMMIT / ROLLBACK helpers; return CW_OK or CW_ERR_DB. */
int cw_edb_begin(struct cw_edb *db);
int cw_edb_commit(struct cw_edb *db);
void cw_edb_rollback(struct cw_edb *db);
/* Runs PRAGMA integrity_check; CW_OK if "ok". */
int cw_edb_integrity_check(struct cw_edb *db);

#endif
