/* test_edb.c - the edge database: pragmas, migrations, refusal of a newer
 * schema, transactions, integrity check, schema constraints. */
#include <check.h>
#include <glob.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_edb.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_migration.h"
#include "cw_testutil.h"

static char dir[256];
static char path[320];

static void setup(void)
{
	cw_log_set_level(CW_LOG_WARN);
	ck_assert_int_eq(cw_test_tmpdir(dir, sizeof(dir)), CW_OK);
	snprintf(path, sizeof(path), "%s/edge.db", dir);
}

static void teardown(void)
{
	cw_test_rmrf(dir);
}

static int64_t q1(struct cw_edb *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	ck_assert_int_eq(sqlite3_prepare_v2(cw_edb_handle(db), sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static const char *qtext(struct cw_edb *db, const char *sql, char *buf, size_t cap)
{
	sqlite3_stmt *st = NULL;

	buf[0] = '\0';
	ck_assert_int_eq(sqlite3_prepare_v2(cw_edb_handle(db), sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return buf;
}

static int exec(struct cw_edb *db, const char *sql)
{
	return sqlite3_exec(cw_edb_handle(db), sql, NULL, NULL, NULL);
}

START_TEST(open_sets_pragmas_and_migrates)
{
	struct cw_edb *db = NULL;
	char buf[32];
	unsigned long errs = cw_log_error_count();

	ck_assert_int_eq(cw_edb_open(path, &db), CW_OK);
	ck_assert_ptr_nonnull(db);
	ck_assert_int_ge(cw_edb_latest_version(), 1);
	ck_assert_int_eq(cw_edb_schema_version(db), cw_edb_latest_version());
	ck_assert_str_eq(qtext(db, "PRAGMA journal_mode", buf, sizeof(buf)), "wal");
	ck_assert_int_eq(q1(db, "PRAGMA synchronous"), 2); /* FULL */
	ck_assert_int_eq(q1(db, "PRAGMA foreign_keys"), 1);
	ck_assert_int_eq(q1(db, "PRAGMA busy_timeout"), 5000);
	/* the tables of the schema are there */
	ck_assert_int_eq(q1(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
				"('settings', 'device_identity', 'controllers', 'carts', 'rentals', "
				"'telemetry', 'outbox', 'command_log')"),
			 8);
	ck_assert_int_eq(cw_edb_integrity_check(db), CW_OK);
	cw_edb_free(db);
	ck_assert_uint_eq(cw_log_error_count(), errs);
}
END_TEST

START_TEST(migrations_idempotent)
{
	struct cw_edb *db = NULL;

	ck_assert_int_eq(cw_edb_open(path, &db), CW_OK);
	ck_assert_int_eq(exec(db, "INSERT INTO settings(key, value) VALUES ('k', 'v')"), SQLITE_OK);
	cw_edb_free(db);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(cw_edb_open(path, &db), CW_OK);
		ck_assert_int_eq(cw_edb_schema_version(db), cw_edb_latest_version());
		/* data survives, nothing applied twice */
		ck_assert_int_eq(q1(db, "SELECT count(*) FROM settings WHERE key = 'k'"), 1);
		cw_edb_free(db);
	}
}
END_TEST

START_TEST(newer_schema_refused)
{
	struct cw_edb *db = NULL;
	sqlite3 *raw = NULL;
	char sql[64];
	unsigned long errs;

	ck_assert_int_eq(cw_edb_open(path, &db), CW_OK);
	cw_edb_free(db);
	ck_assert_int_eq(sqlite3_open(path, &raw), SQLITE_OK);
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", cw_edb_latest_version() + 1);
	ck_assert_int_eq(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(raw);

	errs = cw_log_error_count();
	db = (struct cw_edb *)1;
	ck_assert_int_eq(cw_edb_open(path, &db), CW_ERR_DB);
	ck_assert_ptr_null(db);
	ck_assert_uint_gt(cw_log_error_count(), errs); /* a clear, logged refusal */
}
END_TEST

START_TEST(bad_path_refused)
{
	struct cw_edb *db = NULL;
	char bad[400];

	snprintf(bad, sizeof(bad), "%s/no/such/dir/edge.db", dir);
	ck_assert_int_eq(cw_edb_open(bad, &db), CW_ERR_DB);
	ck_assert_ptr_null(db);
	ck_assert_int_eq(cw_edb_open("", &db), CW_ERR_INVAL);
	ck_assert_int_eq(cw_edb_open(NULL, &db), CW_ERR_INVAL);
	cw_edb_free(NULL);
}
END_TEST

/* A database left at schema 2 by an older cartwise-edge: the first two
 * compiled-in migrations, applied as cw_edb applied them then. */
extern const struct cw_migration cw_edge_migrations[];

static void make_old_db(int version)
{
	sqlite3 *raw = NULL;
	char sql[64];

	ck_assert_int_eq(sqlite3_open(path, &raw), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(raw, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < version; i++)
		ck_assert_int_eq(sqlite3_exec(raw, cw_edge_migrations[i].sql, NULL, NULL, NULL),
				 SQLITE_OK);
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
	ck_assert_int_eq(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(raw,
				      "INSERT INTO settings(key, value) VALUES ('k', 'v');"
				      "INSERT INTO revoked_tokens(jti, config_version) "
				      "VALUES ('j', 1)",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	/* left in the WAL, as a daemon killed before a checkpoint leaves it:
	 * the copy must hold it too */
	ck_assert_int_eq(sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_close(raw), SQLITE_OK);
}

START_TEST(snapshot_before_migrating)
{
	struct cw_edb *db = NULL;
	char snap[400], old[400];
	struct stat st;
	FILE *f;

	ck_assert_int_ge(cw_edb_latest_version(), 3);
	make_old_db(2);
	snprintf(old, sizeof(old), "%s-wal", path);
	ck_assert_int_eq(stat(old, &st), 0);
	ck_assert_int_gt(st.st_size, 0);
	/* an older snapshot of the same version is replaced */
	snprintf(snap, sizeof(snap), "%s.pre-v2", path);
	f = fopen(snap, "w");
	ck_assert_ptr_nonnull(f);
	fputs("stale", f);
	fclose(f);

	ck_assert_int_eq(cw_edb_open(path, &db), CW_OK);
	ck_assert_int_eq(cw_edb_schema_version(db), cw_edb_latest_version());
	ck_assert_int_eq(q1(db, "SELECT count(*) FROM settings WHERE key = 'k'"), 1);
	cw_edb_free(db);

	/* the copy: schema 2, the rows, nothing of what came after */
	ck_assert_int_eq(stat(snap, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(cw_test_db_int(snap, "PRAGMA user_version"), 2);
	ck_assert_int_eq(cw_test_db_int(snap, "SELECT count(*) FROM settings WHERE value = 'v'"),
			 1);
	ck_assert_int_eq(cw_test_db_int(snap, "SELECT count(*) FROM revoked_tokens"), 1);
	ck_assert_int_eq(cw_test_db_int(snap, "SELECT count(*) FROM sqlite_master WHERE "
					      "name = 'otp_codes'"),
			 0);

	/* no snapshot for a new database nor for one already at the latest */
	ck_assert_int_eq(cw_edb_open(path, &db), CW_OK);
	cw_edb_free(db);
	snprintf(old, sizeof(old), "%s.pre-v%d", path, cw_edb_latest_version());
	ck_assert_int_ne(access(old, F_OK), 0);
	snprintf(old, sizeof(old), "%s/new.db.pre-v0", dir);
	ck_assert_int_ne(access(old, F_OK), 0);
}
END_TEST

START_TEST(no_migration_without_a_snapshot)
{
	struct cw_edb *db = (struct cw_edb *)1;
	char snap[400];
	unsigned long errs;
	glob_t g;

	make_old_db(2);
	/* a directory where the copy goes: it cannot be made (as a full disk) */
	snprintf(snap, sizeof(snap), "%s.pre-v2", path);
	ck_assert_int_eq(mkdir(snap, 0700), 0);
	ck_assert_int_eq(mkdir(strcat(snap, "/x"), 0700), 0);
	errs = cw_log_error_count();
	ck_assert_int_eq(cw_edb_open(path, &db), CW_ERR_DB);
	ck_assert_ptr_null(db);
	ck_assert_uint_gt(cw_log_error_count(), errs);
	/* not migrated, and no temporary file left behind */
	ck_assert_int_eq(cw_test_db_int(path, "PRAGMA user_version"), 2);
	ck_assert_int_eq(cw_test_db_int(path, "SELECT count(*) FROM settings"), 1);
	snprintf(snap, sizeof(snap), "%s.pre-v2.tmp-*", path);
	ck_assert_int_eq(glob(snap, 0, NULL, &g), GLOB_NOMATCH);
}
END_TEST

/* A copy killed half-way left its temporary file and journal: the next start
 * removes them and makes the copy; files of another snapshot name stay. */
START_TEST(stale_snapshot_tmp_removed)
{
	struct cw_edb *db = NULL;
	char name[400], snap[400];
	const char *stale[] = {".pre-v2.tmp-AbC123", ".pre-v2.tmp-AbC123-journal",
			       ".pre-v2.tmp-zzzzzz-wal"};
	glob_t g;
	FILE *f;

	make_old_db(2);
	for (size_t i = 0; i < sizeof(stale) / sizeof(stale[0]); i++) {
		snprintf(name, sizeof(name), "%s%s", path, stale[i]);
		f = fopen(name, "w");
		ck_assert_ptr_nonnull(f);
		fputs("half a copy", f);
		fclose(f);
	}
	snprintf(name, sizeof(name), "%s.pre-v1.tmp-keepme", path);
	f = fopen(name, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);

	ck_assert_int_eq(cw_edb_open(path, &db), CW_OK);
	cw_edb_free(db);
	snprintf(snap, sizeof(snap), "%s.pre-v2.tmp-*", path);
	ck_assert_int_eq(glob(snap, 0, NULL, &g), GLOB_NOMATCH);
	snprintf(snap, sizeof(snap), "%s.pre-v2", path);
	ck_assert_int_eq(cw_test_db_int(snap, "PRAGMA user_version"), 2);
	ck_assert_int_eq(access(name, F_OK), 0);
}
END_TEST

START_TEST(transactions)
{
	struct cw_edb *db = NULL;

	ck_assert_int_eq(cw_edb_open(path, &db), CW_OK);
	ck_assert_int_eq(cw_edb_begin(db), CW_OK);
	ck_assert_int_eq(exec(db, "INSERT INTO settings(key, value) VALUES ('a', '1')"), SQLITE_OK);
	cw_edb_rollback(db);
	ck_assert_int_eq(q1(db, "SELECT count(*) FROM settings"), 0);
	ck_assert_int_eq(cw_edb_begin(db), CW_OK);
	ck_assert_int_eq(exec(db, "INSERT INTO settings(key, value) VALUES ('a', '1')"), SQLITE_OK);
	ck_assert_int_eq(cw_edb_commit(db), CW_OK);
	ck_assert_int_eq(q1(db, "SELECT count(*) FROM settings"), 1);
	cw_edb_rollback(db); /* no transaction open: harmless */
	cw_edb_free(db);
}
END_TEST

START_TEST(schema_constraints)
{
	struct cw_edb *db = NULL;

	ck_assert_int_eq(cw_edb_open(path, &db), CW_OK);
	ck_assert_int_eq(exec(db, "INSERT INTO controllers(id, bus_index, board_index) VALUES "
				  "('c0', 0, 0)"),
			 SQLITE_OK);
	ck_assert_int_eq(exec(db, "INSERT INTO carts(id, branch_id, cart_number, controller_id, "
				  "bus_index, board_index, lock_index, created_wall_ms, updated_wall_ms) "
				  "VALUES ('k1', 'b', 1, 'c0', 0, 0, 0, 0, 0)"),
			 SQLITE_OK);
	/* unknown status refused */
	ck_assert_int_ne(exec(db, "UPDATE carts SET status = 'lost' WHERE id = 'k1'"), SQLITE_OK);
	/* two slots on one lock refused */
	ck_assert_int_ne(exec(db, "INSERT INTO carts(id, branch_id, cart_number, bus_index, "
				  "board_index, lock_index, created_wall_ms, updated_wall_ms) "
				  "VALUES ('k2', 'b', 2, 0, 0, 0, 0, 0)"),
			 SQLITE_OK);
	/* awaiting-return needs its rental, and the rental must exist (foreign key) */
	ck_assert_int_ne(exec(db, "UPDATE carts SET status = 'awaiting-return' WHERE id = 'k1'"),
			 SQLITE_OK);
	ck_assert_int_ne(exec(db, "UPDATE carts SET status = 'awaiting-return', "
				  "reserved_for_rental = 'nope' WHERE id = 'k1'"),
			 SQLITE_OK);
	/* one open rental per slot; overdue counts as open */
	ck_assert_int_eq(exec(db, "INSERT INTO rentals(id, cart_id, branch_id, user_phone, status, "
				  "start_time, start_trusted, start_mono_ms, mono_boot, allowed_ms, "
				  "grace_ms, expected_return, clock_trusted, created_wall_ms, "
				  "updated_wall_ms) VALUES ('r1', 'k1', 'b', '0501234567', 'overdue', 0, "
				  "1, 0, 'x', 1, 0, 1, 1, 0, 0)"),
			 SQLITE_OK);
	ck_assert_int_ne(exec(db, "INSERT INTO rentals(id, cart_id, branch_id, user_phone, status, "
				  "start_time, start_trusted, start_mono_ms, mono_boot, allowed_ms, "
				  "grace_ms, expected_return, clock_trusted, created_wall_ms, "
				  "updated_wall_ms) VALUES ('r2', 'k1', 'b', '0509999999', 'active', 0, "
				  "1, 0, 'x', 1, 0, 1, 1, 0, 0)"),
			 SQLITE_OK);
	/* closed rentals do not count */
	ck_assert_int_eq(exec(db, "UPDATE rentals SET status = 'returned-late' WHERE id = 'r1'"),
			 SQLITE_OK);
	ck_assert_int_eq(exec(db, "INSERT INTO rentals(id, cart_id, branch_id, user_phone, status, "
				  "start_time, start_trusted, start_mono_ms, mono_boot, allowed_ms, "
				  "grace_ms, expected_return, clock_trusted, created_wall_ms, "
				  "updated_wall_ms) VALUES ('r2', 'k1', 'b', '0509999999', 'active', 0, "
				  "1, 0, 'x', 1, 0, 1, 1, 0, 0)"),
			 SQLITE_OK);
	/* outbox payload must be JSON; seq is assigned increasing */
	ck_assert_int_ne(exec(db, "INSERT INTO outbox(kind, entity_type, entity_id, payload, "
				  "created_wall_ms, clock_trusted) VALUES ('x', 'cart', 'k1', 'not json', "
				  "0, 1)"),
			 SQLITE_OK);
	ck_assert_int_eq(cw_edb_integrity_check(db), CW_OK);
	cw_edb_free(db);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("edb");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, open_sets_pragmas_and_migrates);
	tcase_add_test(tc, migrations_idempotent);
	tcase_add_test(tc, newer_schema_refused);
	tcase_add_test(tc, bad_path_refused);
	tcase_add_test(tc, snapshot_before_migrating);
	tcase_add_test(tc, no_migration_without_a_snapshot);
	tcase_add_test(tc, stale_snapshot_tmp_removed);
	tcase_add_test(tc, transactions);
	tcase_add_test(tc, schema_constraints);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
