/* test_edge_sync.c - the edge's struct cw_sync_source (cw_edge_sync.c):
 * outbox read / acknowledge / depth / prune on its own connection, health,
 * and commands through the source table. The engine runs against a fake
 * lock bus whose unlocks always succeed. */
#include <check.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_clock.h"
#include "cw_edge_sync.h"
#include "cw_engine.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_testutil.h"

static char dir[256];
static char dbpath[320];
static struct cw_engine *e;
static struct cw_edge_sync *s;
static unsigned long errs_at_start;
static int unlocks;

static int fake_unlock(void *ctx, int bus, int board, int lock, int64_t *latency_ms)
{
	(void)ctx;
	(void)bus;
	(void)board;
	(void)lock;
	unlocks++;
	*latency_ms = 12;
	return CW_OK;
}

static void exec_raw(const char *sql)
{
	sqlite3 *h = NULL;
	char *msg = NULL;

	ck_assert_int_eq(sqlite3_open(dbpath, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 5000);
	ck_assert_msg(sqlite3_exec(h, sql, NULL, NULL, &msg) == SQLITE_OK, "%s", msg ? msg : "?");
	sqlite3_close(h);
}

static int64_t qraw(const char *sql)
{
	long long v = cw_test_db_int(dbpath, sql);

	ck_assert_msg(v != -2, "cannot read %s: %s", dbpath, sql);
	return v;
}

static void setup(void)
{
	static struct cw_cart_map map[4];
	struct cw_engine_config cfg;
	struct cw_engine_hw hw = {.unlock = fake_unlock};
	struct cw_board_status bs = {.hook_closed = 0xf, .present = 0xf};

	cw_log_set_level(CW_LOG_WARN);
	ck_assert_int_ge(sodium_init(), 0);
	errs_at_start = cw_log_error_count();
	unlocks = 0;
	ck_assert_int_eq(cw_test_tmpdir(dir, sizeof(dir)), CW_OK);
	snprintf(dbpath, sizeof(dbpath), "%s/edge.db", dir);
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.db_path, sizeof(cfg.db_path), "%s", dbpath);
	snprintf(cfg.chain_id, sizeof(cfg.chain_id), "chain-1");
	snprintf(cfg.branch_id, sizeof(cfg.branch_id), "branch-1");
	snprintf(cfg.device_id, sizeof(cfg.device_id), "device-1");
	cw_rules_defaults(&cfg.rules);
	for (int i = 0; i < 4; i++)
		map[i] = (struct cw_cart_map){.number = i + 1, .lock = i};
	cfg.ncarts = 4;
	cfg.carts = map;
	ck_assert_int_eq(cw_engine_new(&cfg, &hw, &e), CW_OK);
	cw_engine_on_board_status(e, 0, 0, &bs);
	ck_assert_int_eq(cw_edge_sync_new(dbpath, dir, e, &s), CW_OK);
}

static void teardown(void)
{
	cw_edge_sync_free(s);
	s = NULL;
	cw_engine_free(e);
	e = NULL;
	cw_test_rmrf(dir);
}

struct seen {
	int n;
	int64_t seqs[64];
	int attempts[64];
	size_t bytes;
	int stop_at; /* return 99 at this index (-1: never) */
};

static int collect(void *fctx, const struct cw_sync_entry *en)
{
	struct seen *sn = fctx;
	cJSON *p;

	/* a callback may ask the source again (no deadlock) */
	ck_assert_int_gt(cw_edge_sync_outbox_depth(s), 0);

	if (sn->n == sn->stop_at)
		return 99;
	ck_assert_int_lt(sn->n, 64);
	ck_assert_ptr_nonnull(en->kind);
	ck_assert_ptr_nonnull(en->entity_id);
	ck_assert_int_gt(en->created_wall_ms, 0);
	ck_assert(en->clock_trusted);
	p = cJSON_Parse(en->payload);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(p, "v")), 1);
	cJSON_Delete(p);
	sn->attempts[sn->n] = en->attempts;
	sn->seqs[sn->n++] = en->seq;
	sn->bytes += strlen(en->payload);
	return 0;
}

START_TEST(read_in_order_and_bounded)
{
	struct seen a = {.stop_at = -1}, b = {.stop_at = -1}, c = {.stop_at = -1};
	int64_t total = qraw("SELECT count(*) FROM outbox WHERE acked = 0");
	int64_t first = qraw("SELECT min(seq) FROM outbox");
	int n;

	ck_assert_int_ge(total, 6);
	ck_assert_int_eq(cw_edge_sync_outbox_depth(s), total);
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 1000, 1 << 20, collect, &a), total);
	ck_assert_int_eq(a.seqs[0], first);
	for (int i = 1; i < a.n; i++)
		ck_assert_int_gt(a.seqs[i], a.seqs[i - 1]);
	/* count bound, then after a seq */
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 3, 1 << 20, collect, &b), 3);
	ck_assert_int_eq(b.seqs[2], a.seqs[2]);
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, a.seqs[1], 2, 1 << 20, collect, &c), 2);
	ck_assert_int_eq(c.seqs[0], a.seqs[2]);
	/* byte bound: the first entry always goes, then no more than max_bytes */
	memset(&b, 0, sizeof(b));
	b.stop_at = -1;
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 1000, 1, collect, &b), 1);
	memset(&c, 0, sizeof(c));
	c.stop_at = -1;
	n = cw_edge_sync_outbox_read(s, 0, 1000, a.bytes / 2, collect, &c);
	ck_assert_int_eq(n, c.n);
	ck_assert_int_gt(c.n, 1);
	ck_assert_int_lt(c.n, a.n);
	ck_assert_uint_le(c.bytes, a.bytes / 2);
	/* the callback stops the walk with its own value */
	memset(&b, 0, sizeof(b));
	b.stop_at = 2;
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 1000, 1 << 20, collect, &b), 99);
	ck_assert_int_eq(b.n, 2);
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 0, 1 << 20, collect, &b), CW_ERR_INVAL);
	ck_assert_uint_eq(cw_log_error_count(), errs_at_start);
}
END_TEST

START_TEST(ack_and_prune)
{
	struct seen a = {.stop_at = -1}, b = {.stop_at = -1};
	int64_t total = cw_edge_sync_outbox_depth(s);
	int64_t now = cw_wall_ms();
	char sql[256];

	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 1000, 1 << 20, collect, &a), total);
	ck_assert_int_eq(cw_edge_sync_outbox_ack(s, a.seqs[2]), CW_OK);
	ck_assert_int_eq(cw_edge_sync_outbox_depth(s), total - 3);
	ck_assert_int_eq(qraw("SELECT count(*) FROM outbox WHERE acked = 1 AND acked_wall_ms > 0"), 3);
	/* acknowledged entries are not read again, even after seq 0 */
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 1000, 1 << 20, collect, &b), total - 3);
	ck_assert_int_eq(b.seqs[0], a.seqs[3]);
	/* again, or below: nothing changes */
	ck_assert_int_eq(cw_edge_sync_outbox_ack(s, a.seqs[1]), CW_OK);
	ck_assert_int_eq(cw_edge_sync_outbox_depth(s), total - 3);
	/* kept for a day, then deleted; unacknowledged ones never */
	ck_assert_int_eq(cw_edge_sync_prune(s, now), 0);
	ck_assert_int_eq(cw_edge_sync_prune(s, now + CW_EDGE_SYNC_KEEP_ACKED_MS + 60000), 3);
	ck_assert_int_eq(qraw("SELECT count(*) FROM outbox"), total - 3);
	ck_assert_int_eq(cw_edge_sync_outbox_depth(s), total - 3);
	/* an acknowledgement stamped by a clock far in the future goes too */
	ck_assert_int_eq(cw_edge_sync_outbox_ack(s, a.seqs[3]), CW_OK);
	snprintf(sql, sizeof(sql), "UPDATE outbox SET acked_wall_ms = %lld WHERE acked = 1",
		 (long long)(now + 3 * CW_EDGE_SYNC_KEEP_ACKED_MS));
	exec_raw(sql);
	ck_assert_int_eq(cw_edge_sync_prune(s, now), 1);
	/* seq keeps growing after pruning (AUTOINCREMENT): never reused */
	ck_assert_int_eq(cw_engine_set_maintenance(e, 1, true, NULL), CW_OK);
	ck_assert_int_gt(qraw("SELECT min(seq) FROM outbox WHERE kind = 'cart.updated' AND "
			      "json_extract(payload, '$.cart.status') = 'maintenance'"),
			 a.seqs[a.n - 1]);
	ck_assert_uint_eq(cw_log_error_count(), errs_at_start);
}
END_TEST

/* The outbox is read on another connection while the engine writes. */
/* The send count the syncer's cloud-ahead check relies on (docs/SYNC.md
 * "The cloud ahead of the database"): 0 for an entry never sent, +1 per
 * outbox_sent over its range, with the send time; acknowledged entries and
 * those outside the range are not touched. */
START_TEST(sent_counts_attempts)
{
	struct seen a = {.stop_at = -1}, b = {.stop_at = -1}, c = {.stop_at = -1},
		    d = {.stop_at = -1};
	struct cw_sync_source src;
	int64_t total = cw_edge_sync_outbox_depth(s);
	int64_t t0 = cw_wall_ms();
	char sql[200];

	ck_assert_int_ge(total, 4);
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 1000, 1 << 20, collect, &a), total);
	for (int i = 0; i < a.n; i++)
		ck_assert_int_eq(a.attempts[i], 0);
	ck_assert_int_eq(qraw("SELECT count(*) FROM outbox WHERE sent_wall_ms IS NOT NULL"), 0);
	cw_edge_sync_source(s, &src);
	ck_assert_ptr_nonnull(src.outbox_sent);
	/* entries 0..2 sent twice, entry 1 acknowledged in between */
	ck_assert_int_eq(src.outbox_sent(src.ctx, a.seqs[0], a.seqs[2]), CW_OK);
	ck_assert_int_eq(cw_edge_sync_outbox_ack(s, a.seqs[0]), CW_OK);
	ck_assert_int_eq(cw_edge_sync_outbox_sent(s, a.seqs[0], a.seqs[2]), CW_OK);
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 1000, 1 << 20, collect, &b), total - 1);
	ck_assert_int_eq(b.seqs[0], a.seqs[1]);
	ck_assert_int_eq(b.attempts[0], 2);
	ck_assert_int_eq(b.attempts[1], 2);
	ck_assert_int_eq(b.attempts[2], 0);
	snprintf(sql, sizeof(sql), "SELECT attempts FROM outbox WHERE seq = %lld",
		 (long long)a.seqs[0]);
	ck_assert_int_eq(qraw(sql), 1); /* acknowledged before the second send */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM outbox WHERE sent_wall_ms >= %lld AND sent_wall_ms <= %lld",
		 (long long)t0, (long long)cw_wall_ms());
	ck_assert_int_eq(qraw(sql), 3);
	/* a range beyond the outbox or upside down changes nothing */
	ck_assert_int_eq(cw_edge_sync_outbox_sent(s, a.seqs[a.n - 1] + 1, a.seqs[a.n - 1] + 9),
			 CW_OK);
	ck_assert_int_eq(cw_edge_sync_outbox_sent(s, a.seqs[2], a.seqs[1]), CW_ERR_INVAL);
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 1000, 1 << 20, collect, &c), total - 1);
	ck_assert_int_eq(c.attempts[2], 0);
	ck_assert_int_eq(qraw("SELECT sum(attempts) FROM outbox"), 5);
	ck_assert_int_eq(cw_edge_sync_outbox_sent(NULL, 1, 1), CW_ERR_INVAL);
	/* the cloud skipped entries 1..3 unapplied (cloud_ahead): that send does
	 * not count; never below 0, acknowledged entries untouched */
	ck_assert_ptr_nonnull(src.outbox_unsent);
	ck_assert_int_eq(src.outbox_unsent(src.ctx, a.seqs[0], a.seqs[3]), CW_OK);
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 1000, 1 << 20, collect, &d), total - 1);
	ck_assert_int_eq(d.attempts[0], 1);
	ck_assert_int_eq(d.attempts[1], 1);
	ck_assert_int_eq(d.attempts[2], 0);
	snprintf(sql, sizeof(sql), "SELECT attempts FROM outbox WHERE seq = %lld",
		 (long long)a.seqs[0]);
	ck_assert_int_eq(qraw(sql), 1);
	ck_assert_int_eq(cw_edge_sync_outbox_unsent(s, a.seqs[2], a.seqs[1]), CW_ERR_INVAL);
}
END_TEST

START_TEST(read_sees_only_committed)
{
	struct seen a = {.stop_at = -1};
	struct cw_rent_result r;
	int64_t before = cw_edge_sync_outbox_depth(s);

	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
	ck_assert_int_gt(cw_edge_sync_outbox_depth(s), before);
	ck_assert_int_eq(cw_edge_sync_outbox_read(s, 0, 1000, 1 << 20, collect, &a),
			 cw_edge_sync_outbox_depth(s));
	ck_assert_int_eq(qraw("SELECT count(*) FROM outbox WHERE kind = 'rental.created'"), 1);
}
END_TEST

START_TEST(health_fields)
{
	cJSON *h = cJSON_CreateObject();
	static const char *const keys[] = {"cpu_temp_c", "disk_free_mb", "mem_available_mb",
					   "uptime_s", "outbox_depth", "clock_trusted",
					   "boards_online", "boards_total", "config_version"};

	cw_edge_sync_health(s, h);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		ck_assert_msg(cJSON_GetObjectItem(h, keys[i]) != NULL, "missing %s", keys[i]);
	ck_assert_int_eq((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(h, "outbox_depth")),
			 cw_edge_sync_outbox_depth(s));
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(h, "boards_total")), 1);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(h, "boards_online")), 1);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(h, "config_version")), 0);
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(h, "clock_trusted")));
	ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(h, "disk_free_mb")));
	ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(h, "mem_available_mb")));
	ck_assert_int_gt((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(h, "uptime_s")), 0);
	cJSON_Delete(h);
}
END_TEST

START_TEST(source_table_commands)
{
	struct cw_sync_source src;
	struct cw_sync_command cmd;
	cJSON *args = cJSON_Parse("{\"cart_number\": 2}");

	cw_edge_sync_source(s, &src);
	ck_assert_ptr_eq(src.ctx, s);
	ck_assert_ptr_nonnull(src.outbox_read);
	ck_assert_ptr_nonnull(src.outbox_ack);
	ck_assert_ptr_nonnull(src.health);
	ck_assert_ptr_nonnull(src.server_time);
	ck_assert_int_eq(src.outbox_depth(src.ctx), cw_edge_sync_outbox_depth(s));
	memset(&cmd, 0, sizeof(cmd));
	snprintf(cmd.id, sizeof(cmd.id), "0190f0a0-0000-7000-8000-000000000001");
	snprintf(cmd.action, sizeof(cmd.action), "unlock");
	cmd.args = args;
	cmd.issued_ms = cw_wall_ms();
	cmd.expires_ms = cw_wall_ms() + 60000;
	ck_assert_int_eq(src.command(src.ctx, &cmd), CW_OK);
	ck_assert_int_eq(unlocks, 1);
	ck_assert_int_eq(src.command(src.ctx, &cmd), CW_ERR_CONFLICT);
	ck_assert_int_eq(unlocks, 1);
	ck_assert_int_eq(qraw("SELECT count(*) FROM outbox WHERE kind = 'command.result' AND "
			      "json_extract(payload, '$.command.state') = 'succeeded'"), 1);
	src.server_time(src.ctx, cw_wall_ms(), cw_mono_ms());
	ck_assert(cw_engine_clock_trusted(e));
	cJSON_Delete(args);
}
END_TEST

START_TEST(bad_arguments)
{
	struct cw_edge_sync *t = NULL;

	ck_assert_int_eq(cw_edge_sync_new(NULL, dir, e, &t), CW_ERR_INVAL);
	ck_assert_int_eq(cw_edge_sync_new(dbpath, dir, NULL, &t), CW_ERR_INVAL);
	ck_assert_ptr_null(t);
	ck_assert_int_eq(cw_edge_sync_outbox_read(NULL, 0, 1, 1, collect, NULL), CW_ERR_INVAL);
	ck_assert_int_eq(cw_edge_sync_outbox_ack(NULL, 1), CW_ERR_INVAL);
	ck_assert_int_eq(cw_edge_sync_outbox_depth(NULL), CW_ERR_INVAL);
	cw_edge_sync_free(NULL);
}
END_TEST

int main(void)
{
	Suite *su = suite_create("edge_sync");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, read_in_order_and_bounded);
	tcase_add_test(tc, ack_and_prune);
	tcase_add_test(tc, sent_counts_attempts);
	tcase_add_test(tc, read_sees_only_committed);
	tcase_add_test(tc, health_fields);
	tcase_add_test(tc, source_table_commands);
	tcase_add_test(tc, bad_arguments);
	suite_add_tcase(su, tc);
	sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
