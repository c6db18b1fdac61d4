/* test_engine.c - the rental engine against a fake lock bus.
 *
 * Layout of every test: bus 0, board 0 holds carts 1..8 (locks 0..7, all
 * docked with hooks closed); board 1 holds slots 9..12 (locks 0..3, empty),
 * the free slots returns are sent to. The fake hardware's unlock result is
 * set per test; on success it reports the hook open (and optionally the cart
 * gone) through cw_engine_on_board_status from inside unlock, as the bus
 * worker does, which also proves the engine mutex is not held there. Time is
 * moved with cw_engine_test_advance_clock(), never slept. */
#include <check.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_edb.h"
#include "cw_engine.h"
#include "cw_engine_test.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_testutil.h"

struct fake_hw {
	pthread_mutex_t mu;
	struct cw_engine *e;
	int next_rc;           /* result of the next unlocks */
	bool take_on_unlock;   /* the customer pulls the cart at once */
	bool crash_on_unlock;  /* _exit() between commit and confirmation */
	bool sense_on_fault;   /* sensors move although the bus reports a fault */
	bool no_report;        /* the lock moves but no status has been read yet */
	void (*during_unlock)(void); /* runs once inside the next unlock, before sensors */
	int delay_ms;
	int calls;
	uint32_t hook[2], present[2];
	/* state seen from a second connection while unlock runs */
	int64_t seen_rentals, seen_created, seen_confirmed;
};

static struct fake_hw f;
static char dir[256];
static char dbpath[320];
static struct cw_cart_map map[12];
static struct cw_engine_config cfg;
static struct cw_engine *e;
static unsigned long errs_at_start;

static int64_t qraw(const char *sql)
{
	long long v = cw_test_db_int(dbpath, sql);

	ck_assert_msg(v != -2, "cannot read %s: %s", dbpath, sql);
	return v;
}

/* A query through the engine's own connection, under its mutex. */
static int64_t q(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int64_t q(const char *fmt, ...)
{
	char sql[1024];
	sqlite3_stmt *st = NULL;
	int64_t v = -1;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	cw_engine_lock(e);
	ck_assert_int_eq(sqlite3_prepare_v2(cw_edb_handle(cw_engine_edb(e)), sql, -1, &st, NULL),
			 SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	cw_engine_unlock(e);
	return v;
}

static void qs(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void qs(char *out, size_t cap, const char *fmt, ...)
{
	char sql[1024];
	sqlite3_stmt *st = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	out[0] = '\0';
	cw_engine_lock(e);
	ck_assert_int_eq(sqlite3_prepare_v2(cw_edb_handle(cw_engine_edb(e)), sql, -1, &st, NULL),
			 SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	cw_engine_unlock(e);
}

/* Like the bus worker (one thread per port), statuses reach the engine one
 * at a time and in the order they were read. */
static pthread_mutex_t bus_mu = PTHREAD_MUTEX_INITIALIZER;

static void push(int board)
{
	struct cw_board_status st;

	pthread_mutex_lock(&bus_mu);
	pthread_mutex_lock(&f.mu);
	st.hook_closed = f.hook[board];
	st.present = f.present[board];
	pthread_mutex_unlock(&f.mu);
	cw_engine_on_board_status(f.e, 0, board, &st);
	pthread_mutex_unlock(&bus_mu);
}

static void setbits(int board, int lock, bool present, bool hook)
{
	pthread_mutex_lock(&f.mu);
	if (present)
		f.present[board] |= 1u << lock;
	else
		f.present[board] &= ~(1u << lock);
	if (hook)
		f.hook[board] |= 1u << lock;
	else
		f.hook[board] &= ~(1u << lock);
	pthread_mutex_unlock(&f.mu);
}

/* A slot (cart number) reports present/hook. */
static void sense(int cart, bool present, bool hook)
{
	int board = cart <= 8 ? 0 : 1;
	int lock = cart <= 8 ? cart - 1 : cart - 9;
	setbits(board, lock, present, hook);
	push(board);
}

static int fake_unlock(void *ctx, int bus, int board, int lock, int64_t *latency_ms)
{
	struct fake_hw *fh = ctx;
	int rc;
	bool take;

	(void)bus;
	pthread_mutex_lock(&fh->mu);
	fh->calls++;
	rc = fh->next_rc;
	take = fh->take_on_unlock;
	pthread_mutex_unlock(&fh->mu);
	/* What a second connection sees between the first commit and the
	 * confirmation: everything of the first transaction, or nothing. */
	fh->seen_rentals = qraw("SELECT count(*) FROM rentals WHERE status = 'active'");
	fh->seen_created = qraw("SELECT count(*) FROM outbox WHERE kind = 'rental.created'");
	fh->seen_confirmed = qraw("SELECT count(*) FROM rentals WHERE release_confirmed = 1");
	if (fh->crash_on_unlock)
		_exit(0); /* like kill -9 after the rental's commit */
	if (fh->during_unlock) {
		/* One-shot: staff or a second customer act while the lock moves. */
		void (*fn)(void) = fh->during_unlock;
		fh->during_unlock = NULL;
		fn();
	}
	if (fh->delay_ms)
		cw_sleep_ms(fh->delay_ms);
	if (rc == CW_OK || fh->sense_on_fault) {
		/* sensors confirm: hook opens (and the cart leaves if taken) */
		setbits(board, lock, !take, false);
		if (!fh->no_report)
			push(board);
	}
	if (latency_ms)
		*latency_ms = 15;
	return rc;
}

static void engine_open(void)
{
	struct cw_engine_hw hw = {.unlock = fake_unlock, .ctx = &f};
	ck_assert_int_eq(cw_engine_new(&cfg, &hw, &e), CW_OK);
	f.e = e;
}

static void engine_close(void)
{
	cw_engine_free(e);
	e = NULL;
	f.e = NULL;
}

static void setup(void)
{
	cw_log_set_level(CW_LOG_WARN);
	ck_assert_int_ge(sodium_init(), 0);
	errs_at_start = cw_log_error_count();
	memset(&f, 0, sizeof(f));
	pthread_mutex_init(&f.mu, NULL);
	f.next_rc = CW_OK;
	ck_assert_int_eq(cw_test_tmpdir(dir, sizeof(dir)), CW_OK);
	snprintf(dbpath, sizeof(dbpath), "%s/edge.db", dir);
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.db_path, sizeof(cfg.db_path), "%s", dbpath);
	snprintf(cfg.chain_id, sizeof(cfg.chain_id), "chain-1");
	snprintf(cfg.branch_id, sizeof(cfg.branch_id), "branch-1");
	snprintf(cfg.device_id, sizeof(cfg.device_id), "device-1");
	cw_rules_defaults(&cfg.rules);
	for (int i = 0; i < 12; i++) {
		map[i].number = i + 1;
		map[i].bus_index = 0;
		map[i].board_index = i < 8 ? 0 : 1;
		map[i].lock = i < 8 ? i : i - 8;
	}
	cfg.ncarts = 12;
	cfg.carts = map;
	f.hook[0] = 0xff;
	f.present[0] = 0xff;
	f.hook[1] = 0;
	f.present[1] = 0;
	engine_open();
	push(0);
	push(1);
}

static void teardown(void)
{
	engine_close();
	cw_test_rmrf(dir);
}

static void assert_no_errors(void)
{
	ck_assert_uint_eq(cw_log_error_count(), errs_at_start);
}

static int64_t total_rows(void)
{
	return q("SELECT (SELECT count(*) FROM rentals) + (SELECT count(*) FROM outbox) + "
		 "(SELECT count(*) FROM telemetry) + (SELECT total_changes())");
}

static void cart_status(int number, char *out, size_t cap)
{
	qs(out, cap, "SELECT status FROM carts WHERE cart_number = %d", number);
}

static void rental_status(const char *id, char *out, size_t cap)
{
	qs(out, cap, "SELECT status FROM rentals WHERE id = '%s'", id);
}

/* Rent for phone and take the cart out of its slot. */
static void rent_and_take(const char *phone, struct cw_rent_result *r)
{
	ck_assert_int_eq(cw_engine_rent(e, phone, r), CW_OK);
	sense(r->cart_number, false, false);
	ck_assert_int_eq(q("SELECT taken FROM rentals WHERE id = '%s'", r->rental_id), 1);
}

/* ------------------------------------------------------------------ rent */

START_TEST(rent_happy_path)
{
	struct cw_rent_result r;
	char s[32];

	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
	ck_assert_int_ge(r.cart_number, 1);
	ck_assert_int_le(r.cart_number, 8);
	ck_assert_int_eq(r.unlock_latency_ms, 15);
	ck_assert_int_eq(strlen(r.rental_id), 36);
	ck_assert_int_gt(r.expected_return_wall_ms, cw_wall_ms() + 119 * 60000LL);
	ck_assert_int_eq(f.calls, 1);
	/* While the lock moved, the rental and its outbox entry were committed
	 * together, and the release not yet confirmed. */
	ck_assert_int_eq(f.seen_rentals, 1);
	ck_assert_int_eq(f.seen_created, 1);
	ck_assert_int_eq(f.seen_confirmed, 0);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "active");
	ck_assert_int_eq(q("SELECT release_confirmed FROM rentals WHERE id = '%s'", r.rental_id), 1);
	ck_assert_int_eq(q("SELECT taken FROM rentals WHERE id = '%s'", r.rental_id), 0);
	ck_assert_int_eq(q("SELECT unlock_latency_ms FROM rentals WHERE id = '%s'", r.rental_id), 15);
	ck_assert_int_eq(q("SELECT clock_trusted FROM rentals WHERE id = '%s'", r.rental_id), 1);
	cart_status(r.cart_number, s, sizeof(s));
	ck_assert_str_eq(s, "rented");
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'rental.released' AND "
			   "entity_id = '%s'", r.rental_id), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'rental.created' AND "
			   "json_extract(payload, '$.rental.user_phone') = '0501234567'"), 1);
	/* the customer takes the cart */
	sense(r.cart_number, false, false);
	ck_assert_int_eq(q("SELECT taken FROM rentals WHERE id = '%s'", r.rental_id), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'rental.taken'"), 1);
	/* the open rental blocks the slot at the database level */
	ck_assert_int_eq(q("SELECT count(*) FROM rentals WHERE status IN ('active', 'overdue')"), 1);
	assert_no_errors();
}
END_TEST

START_TEST(rent_bad_phone)
{
	struct cw_rent_result r;
	int64_t before = total_rows();
	const char *bad[] = {"", "123456", "+123456", "05012345ab", "0501 234567", "1234567890123456",
			     "++0501234567", "-501234567"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_int_eq(cw_engine_rent(e, bad[i], &r), CW_ERR_INVAL);
	ck_assert_int_eq(cw_engine_rent(e, NULL, &r), CW_ERR_INVAL);
	ck_assert_int_eq(cw_engine_rent(NULL, "0501234567", &r), CW_ERR_INVAL);
	ck_assert_int_eq(total_rows(), before);
	ck_assert_int_eq(f.calls, 0);
	ck_assert_int_eq(cw_engine_rent(e, "+972501234567", &r), CW_OK);
	ck_assert_int_eq(cw_engine_rent(e, "1234567", &r), CW_OK);
	assert_no_errors();
}
END_TEST

START_TEST(second_rent_same_phone_conflict)
{
	struct cw_rent_result r, r2;

	rent_and_take("0501234567", &r);
	{
		int64_t rentals = q("SELECT count(*) FROM rentals");
		int64_t outbox = q("SELECT count(*) FROM outbox");
		int64_t depth = cw_engine_outbox_depth(e);
		ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r2), CW_ERR_CONFLICT);
		ck_assert_str_eq(r2.rental_id, "");
		ck_assert_int_eq(q("SELECT count(*) FROM rentals"), rentals);
		ck_assert_int_eq(q("SELECT count(*) FROM outbox"), outbox);
		ck_assert_int_eq(cw_engine_outbox_depth(e), depth);
	}
	ck_assert_int_eq(f.calls, 1);
	/* another phone is fine */
	ck_assert_int_eq(cw_engine_rent(e, "0507654321", &r2), CW_OK);
	ck_assert_int_ne(r2.cart_number, r.cart_number);
	assert_no_errors();
}
END_TEST

START_TEST(one_per_phone_off)
{
	struct cw_rent_result r, r2;

	engine_close();
	cfg.rules.one_per_phone = false;
	engine_open();
	push(0);
	push(1);
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r2), CW_OK);
	ck_assert_int_ne(r.cart_number, r2.cart_number);
}
END_TEST

START_TEST(overdue_blocks_and_is_returnable)
{
	struct cw_rent_result r, r2;
	struct cw_return_result ret;
	char s[32];

	rent_and_take("0501234567", &r);
	cw_engine_tick(e);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "active");
	/* just before expected return + grace: still active */
	cw_engine_test_advance_clock((120 + 10) * 60000LL - 1000);
	cw_engine_tick(e);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "active");
	cw_engine_test_advance_clock(2000);
	cw_engine_tick(e);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "overdue");
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'rental.overdue'"), 1);
	cw_engine_tick(e); /* no second overdue entry */
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'rental.overdue'"), 1);
	/* overdue still blocks the phone */
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r2), CW_ERR_CONFLICT);
	/* ... and is still returnable, as returned-late */
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	ck_assert_str_eq(ret.rental_id, r.rental_id);
	ck_assert_int_eq(ret.slot_number, r.cart_number); /* its own, empty slot */
	sense(ret.slot_number, true, true);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "returned-late");
	ck_assert_int_ge(q("SELECT duration_s FROM rentals WHERE id = '%s'", r.rental_id), 130 * 60);
	cart_status(ret.slot_number, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	/* now the phone may rent again */
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r2), CW_OK);
	assert_no_errors();
}
END_TEST

START_TEST(no_free_cart)
{
	struct cw_rent_result r;
	char phone[16];
	int64_t before;

	for (int i = 0; i < 8; i++) {
		snprintf(phone, sizeof(phone), "05000000%02d", i % 100);
		ck_assert_int_eq(cw_engine_rent(e, phone, &r), CW_OK);
	}
	before = q("SELECT count(*) FROM outbox");
	ck_assert_int_eq(cw_engine_rent(e, "0509999999", &r), CW_ERR_NOCART);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox"), before);
	ck_assert_int_eq(q("SELECT count(*) FROM rentals"), 8);
	/* the empty slots 9..12 were never offered */
	ck_assert_int_eq(q("SELECT count(*) FROM rentals r JOIN carts c ON c.id = r.cart_id "
			   "WHERE c.cart_number > 8"), 0);
	assert_no_errors();
}
END_TEST

START_TEST(unlock_not_confirmed_cancels_and_faults)
{
	struct cw_rent_result r, r2;
	char s[64];
	int64_t n;

	f.next_rc = CW_ERR_FAULT;
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_ERR_FAULT);
	n = q("SELECT count(*) FROM rentals");
	ck_assert_int_eq(n, 1);
	qs(s, sizeof(s), "SELECT status FROM rentals");
	ck_assert_str_eq(s, "cancelled");
	qs(s, sizeof(s), "SELECT end_reason FROM rentals");
	ck_assert_str_eq(s, "release not confirmed");
	qs(s, sizeof(s), "SELECT status FROM carts WHERE id = (SELECT cart_id FROM rentals)");
	ck_assert_str_eq(s, "fault");
	qs(s, sizeof(s), "SELECT fault_reason FROM carts WHERE id = (SELECT cart_id FROM rentals)");
	ck_assert_str_eq(s, "release not confirmed");
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = 'lock.fault'"), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'rental.cancelled'"), 1);
	/* not left with an open rental: the phone can rent another cart */
	f.next_rc = CW_OK;
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r2), CW_OK);
	ck_assert_int_ne(r2.cart_number,
			 (int)q("SELECT cart_number FROM carts WHERE status = 'fault'"));
	assert_no_errors();
}
END_TEST

START_TEST(cart_gone_counts_as_released)
{
	struct cw_rent_result r;
	char s[64];

	/* the bus gave up confirming, but the cart left its slot meanwhile: the
	 * customer has it, so the rental stands */
	f.next_rc = CW_ERR_FAULT;
	f.sense_on_fault = true;
	f.take_on_unlock = true;
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "active");
	ck_assert_int_eq(q("SELECT release_confirmed + taken FROM rentals"), 2);
	cart_status(r.cart_number, s, sizeof(s));
	ck_assert_str_eq(s, "rented");
	assert_no_errors();
}
END_TEST

START_TEST(unlock_offline_cancels_keeps_available)
{
	struct cw_rent_result r;
	char s[64];

	f.next_rc = CW_ERR_OFFLINE;
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_ERR_OFFLINE);
	qs(s, sizeof(s), "SELECT status FROM rentals");
	ck_assert_str_eq(s, "cancelled");
	qs(s, sizeof(s), "SELECT status FROM carts WHERE id = (SELECT cart_id FROM rentals)");
	ck_assert_str_eq(s, "available");
	ck_assert_int_eq(q("SELECT count(*) FROM rentals WHERE status IN ('active', 'overdue')"), 0);
	assert_no_errors();
}
END_TEST

START_TEST(take_timeout_cancels)
{
	struct cw_rent_result r;
	char s[64];

	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK); /* hook open, cart present */
	cw_engine_test_advance_clock(59 * 1000);
	cw_engine_tick(e);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "active");
	cw_engine_test_advance_clock(2 * 1000);
	cw_engine_tick(e);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "cancelled");
	qs(s, sizeof(s), "SELECT end_reason FROM rentals");
	ck_assert_str_eq(s, "cart never taken");
	cart_status(r.cart_number, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	/* the hook as sensed: still open, so not rentable until it closes */
	ck_assert_int_eq(q("SELECT hook_closed FROM carts WHERE cart_number = %d", r.cart_number), 0);
	ck_assert_int_eq(q("SELECT cart_present FROM carts WHERE cart_number = %d", r.cart_number), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = 'rental.not_taken'"), 1);
	assert_no_errors();
}
END_TEST

/* ---------------------------------------------------------------- return */

START_TEST(return_designates_empty_slot_only)
{
	struct cw_rent_result r;
	struct cw_return_result ret, ret2;
	char s[64];

	rent_and_take("0501234567", &r);
	/* its own slot is occupied again (hook still open: not a return) */
	sense(r.cart_number, true, false);
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	ck_assert_str_eq(ret.rental_id, r.rental_id);
	/* never a slot with a cart in it: only 9..12 are empty */
	ck_assert_int_ge(ret.slot_number, 9);
	ck_assert_int_eq(q("SELECT cart_present FROM carts WHERE cart_number = %d", ret.slot_number),
			 0);
	cart_status(ret.slot_number, s, sizeof(s));
	ck_assert_str_eq(s, "awaiting-return");
	qs(s, sizeof(s), "SELECT reserved_for_rental FROM carts WHERE cart_number = %d",
	   ret.slot_number);
	ck_assert_str_eq(s, r.rental_id);
	/* same call again: same slot */
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret2), CW_OK);
	ck_assert_int_eq(ret2.slot_number, ret.slot_number);
	ck_assert_int_eq(q("SELECT count(*) FROM carts WHERE status = 'awaiting-return'"), 1);
	/* a second customer gets a different empty slot */
	{
		struct cw_rent_result rb;
		struct cw_return_result retb;
		rent_and_take("0507654321", &rb);
		sense(rb.cart_number, true, false);
		ck_assert_int_eq(cw_engine_return_begin(e, "0507654321", &retb), CW_OK);
		ck_assert_int_ge(retb.slot_number, 9);
		ck_assert_int_ne(retb.slot_number, ret.slot_number);
	}
	/* no open rental */
	ck_assert_int_eq(cw_engine_return_begin(e, "0500000000", &ret2), CW_ERR_NOTFOUND);
	ck_assert_int_eq(cw_engine_return_begin(e, "bad", &ret2), CW_ERR_INVAL);
	assert_no_errors();
}
END_TEST

START_TEST(return_no_free_slot)
{
	struct cw_rent_result r;
	struct cw_return_result ret;
	int64_t before;

	rent_and_take("0501234567", &r);
	sense(r.cart_number, true, false);
	for (int n = 9; n <= 12; n++)
		sense(n, true, true); /* every spare slot filled */
	before = q("SELECT count(*) FROM outbox");
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_ERR_NOCART);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox"), before);
	ck_assert_int_eq(q("SELECT count(*) FROM carts WHERE status = 'awaiting-return'"), 0);
	assert_no_errors();
}
END_TEST

START_TEST(dock_closes_rental)
{
	struct cw_rent_result r;
	struct cw_return_result ret;
	char s[64];

	rent_and_take("0501234567", &r);
	sense(r.cart_number, true, false); /* own slot not usable */
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	cw_engine_test_advance_clock(30 * 60000LL);
	/* a cart docks in ANOTHER empty slot: nothing closes */
	{
		int other = ret.slot_number == 12 ? 11 : 12;
		sense(other, true, true);
		rental_status(r.rental_id, s, sizeof(s));
		ck_assert_str_eq(s, "active");
	}
	/* present but hook still open: not yet */
	sense(ret.slot_number, true, false);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "active");
	sense(ret.slot_number, true, true);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "returned");
	ck_assert_int_ge(q("SELECT duration_s FROM rentals WHERE id = '%s'", r.rental_id), 1800);
	ck_assert_int_le(q("SELECT duration_s FROM rentals WHERE id = '%s'", r.rental_id), 1805);
	ck_assert_int_eq(q("SELECT duration_trusted FROM rentals WHERE id = '%s'", r.rental_id), 1);
	ck_assert_int_gt(q("SELECT actual_return FROM rentals WHERE id = '%s'", r.rental_id), 0);
	ck_assert_int_eq(q("SELECT count(*) FROM rentals r JOIN carts c ON c.id = r.returned_to "
			   "WHERE r.id = '%s' AND c.cart_number = %d", r.rental_id, ret.slot_number), 1);
	cart_status(ret.slot_number, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	ck_assert_int_eq(q("SELECT count(*) FROM carts WHERE reserved_for_rental IS NOT NULL"), 0);
	/* the rental's original slot is free again */
	cart_status(r.cart_number, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'rental.returned'"), 1);
	/* returning a returned rental: nothing open any more */
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_ERR_NOTFOUND);
	assert_no_errors();
}
END_TEST

START_TEST(returned_late)
{
	struct cw_rent_result r;
	struct cw_return_result ret;
	char s[64];

	rent_and_take("0501234567", &r);
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	ck_assert_int_eq(ret.slot_number, r.cart_number);
	/* past expected return + grace, and no tick ran: still late */
	cw_engine_test_advance_clock((120 + 10) * 60000LL + 5000);
	cw_engine_return_begin(e, "0501234567", &ret); /* renews the reservation */
	sense(ret.slot_number, true, true);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "returned-late");
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'rental.returned-late'"), 1);
	assert_no_errors();
}
END_TEST

START_TEST(reservation_expires)
{
	struct cw_rent_result r;
	struct cw_return_result ret;
	char s[64];

	rent_and_take("0501234567", &r);
	sense(r.cart_number, true, false);
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	cw_engine_test_advance_clock(599 * 1000);
	cw_engine_tick(e);
	cart_status(ret.slot_number, s, sizeof(s));
	ck_assert_str_eq(s, "awaiting-return");
	cw_engine_test_advance_clock(2000);
	cw_engine_tick(e);
	cart_status(ret.slot_number, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	ck_assert_int_eq(q("SELECT return_slot IS NULL FROM rentals WHERE id = '%s'", r.rental_id), 1);
	/* the rental is still open and can ask again */
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	/* own-slot reservation expiring gives the slot back to its rental */
	sense(r.cart_number, false, false);
	cw_engine_test_advance_clock(601 * 1000);
	cw_engine_tick(e);
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	ck_assert_int_eq(ret.slot_number, r.cart_number);
	cw_engine_test_advance_clock(601 * 1000);
	cw_engine_tick(e);
	cart_status(r.cart_number, s, sizeof(s));
	ck_assert_str_eq(s, "rented");
	assert_no_errors();
}
END_TEST

/* ----------------------------------------------------------------- staff */

START_TEST(force_return)
{
	struct cw_rent_result r;
	struct cw_return_result ret;
	char s[128];

	rent_and_take("0501234567", &r);
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	ck_assert_int_eq(cw_engine_force_return(e, r.rental_id, "cart found in parking lot"), CW_OK);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "returned");
	qs(s, sizeof(s), "SELECT notes FROM rentals WHERE id = '%s'", r.rental_id);
	ck_assert_ptr_nonnull(strstr(s, "cart found in parking lot"));
	ck_assert_int_eq(q("SELECT count(*) FROM carts WHERE status <> 'available'"), 0);
	/* returning a returned rental: clear error, nothing written */
	{
		int64_t n = q("SELECT count(*) FROM outbox");
		ck_assert_int_eq(cw_engine_force_return(e, r.rental_id, NULL), CW_ERR_STATE);
		ck_assert_int_eq(q("SELECT count(*) FROM outbox"), n);
	}
	ck_assert_int_eq(cw_engine_force_return(e, "not-a-uuid", NULL), CW_ERR_INVAL);
	ck_assert_int_eq(cw_engine_force_return(e, "01890000-0000-7000-8000-000000000000", NULL),
			 CW_ERR_NOTFOUND);
	/* force return of an overdue rental is returned-late */
	{
		struct cw_rent_result r2;
		rent_and_take("0507654321", &r2);
		cw_engine_test_advance_clock(131 * 60000LL);
		cw_engine_tick(e);
		ck_assert_int_eq(cw_engine_force_return(e, r2.rental_id, "late"), CW_OK);
		rental_status(r2.rental_id, s, sizeof(s));
		ck_assert_str_eq(s, "returned-late");
	}
	assert_no_errors();
}
END_TEST

START_TEST(maintenance_excludes_cart)
{
	struct cw_rent_result r;
	int64_t lat = -1;
	char s[64];

	for (int n = 1; n <= 8; n++)
		ck_assert_int_eq(cw_engine_set_maintenance(e, n, true, "wheel"), CW_OK);
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_ERR_NOCART);
	ck_assert_int_eq(cw_engine_set_maintenance(e, 5, false, NULL), CW_OK);
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
	ck_assert_int_eq(r.cart_number, 5);
	/* a rented cart cannot go to maintenance; unknown cart */
	ck_assert_int_eq(cw_engine_set_maintenance(e, 5, true, NULL), CW_ERR_STATE);
	ck_assert_int_eq(cw_engine_set_maintenance(e, 99, true, NULL), CW_ERR_NOTFOUND);
	ck_assert_int_eq(cw_engine_set_maintenance(e, 0, true, NULL), CW_ERR_INVAL);
	/* maintenance unlock: not for a rented cart; fine for one in maintenance */
	ck_assert_int_eq(cw_engine_maintenance_unlock(e, 5, &lat), CW_ERR_STATE);
	ck_assert_int_eq(cw_engine_maintenance_unlock(e, 3, &lat), CW_OK);
	ck_assert_int_eq(lat, 15);
	cart_status(3, s, sizeof(s));
	ck_assert_str_eq(s, "maintenance");
	/* an available cart unlocked by staff goes to maintenance, not to fault */
	ck_assert_int_eq(cw_engine_set_maintenance(e, 4, false, NULL), CW_OK);
	ck_assert_int_eq(cw_engine_maintenance_unlock(e, 4, &lat), CW_OK);
	cart_status(4, s, sizeof(s));
	ck_assert_str_eq(s, "maintenance");
	/* maintenance off, and a fault can be cleared by staff */
	f.next_rc = CW_ERR_FAULT;
	ck_assert_int_eq(cw_engine_set_maintenance(e, 6, false, NULL), CW_OK);
	ck_assert_int_eq(cw_engine_rent(e, "0509999999", &r), CW_ERR_FAULT);
	cart_status(6, s, sizeof(s));
	ck_assert_str_eq(s, "fault");
	ck_assert_int_eq(cw_engine_set_maintenance(e, 6, false, "fixed"), CW_OK);
	cart_status(6, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	ck_assert_int_eq(q("SELECT fault_reason IS NULL FROM carts WHERE cart_number = 6"), 1);
	assert_no_errors();
}
END_TEST

/* -------------------------------------------------------- reconciliation */

/* Board 0 goes away and comes back with the bits set by change(). */
static void offline_and_back(void (*change)(void))
{
	cw_engine_on_board_offline(e, 0, 0, true);
	change();
	cw_engine_on_board_offline(e, 0, 0, false);
	push(0);
}

static void dock_cart1(void)
{
	setbits(0, 0, true, true);
}

START_TEST(reconcile_rented_cart_back_in_own_slot)
{
	struct cw_rent_result r;
	char s[64];

	rent_and_take("0501234567", &r);
	ck_assert_int_eq(r.cart_number, 1);
	offline_and_back(dock_cart1);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "returned");
	cart_status(1, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = "
			   "'reconcile.returned_own_slot'"), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'telemetry' AND "
			   "json_extract(payload, '$.telemetry.event_type') = "
			   "'reconcile.returned_own_slot'"), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = 'reconcile.done'"), 3);
	assert_no_errors();
}
END_TEST

START_TEST(reconcile_rented_overdue_back_is_late)
{
	struct cw_rent_result r;
	char s[64];

	rent_and_take("0501234567", &r);
	cw_engine_test_advance_clock(131 * 60000LL);
	cw_engine_tick(e);
	offline_and_back(dock_cart1);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "returned-late");
	assert_no_errors();
}
END_TEST

static void empty_cart2(void)
{
	setbits(0, 1, false, false);
}

START_TEST(reconcile_available_slot_empty)
{
	struct cw_rent_result r;
	char s[64];

	offline_and_back(empty_cart2);
	cart_status(2, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry t JOIN carts c ON c.id = t.cart_id "
			   "WHERE t.event_type = 'cart.missing' AND c.cart_number = 2"), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'telemetry' AND "
			   "json_extract(payload, '$.telemetry.event_type') = 'cart.missing'"), 1);
	/* not rentable: 7 rentals exhaust the carts */
	for (int i = 0; i < 7; i++) {
		char phone[16];
		snprintf(phone, sizeof(phone), "05000000%02d", i % 100);
		ck_assert_int_eq(cw_engine_rent(e, phone, &r), CW_OK);
		ck_assert_int_ne(r.cart_number, 2);
	}
	ck_assert_int_eq(cw_engine_rent(e, "0509999999", &r), CW_ERR_NOCART);
	assert_no_errors();
}
END_TEST

static void open_hook_cart3(void)
{
	setbits(0, 2, true, false);
}

START_TEST(reconcile_hook_open_without_rental)
{
	char s[64];

	offline_and_back(open_hook_cart3);
	cart_status(3, s, sizeof(s));
	ck_assert_str_eq(s, "fault");
	qs(s, sizeof(s), "SELECT fault_reason FROM carts WHERE cart_number = 3");
	ck_assert_str_eq(s, "hook open without rental");
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = "
			   "'cart.hook_open_without_rental'"), 1);
	/* the same finding live, without reconciliation */
	sense(4, true, false);
	cart_status(4, s, sizeof(s));
	ck_assert_str_eq(s, "fault");
	assert_no_errors();
}
END_TEST

START_TEST(reconcile_awaiting_slot_present)
{
	struct cw_rent_result r;
	struct cw_return_result ret;
	char s[64];

	rent_and_take("0501234567", &r);
	sense(r.cart_number, true, false);
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	ck_assert_int_ge(ret.slot_number, 9);
	/* board 1 drops out, the cart is docked meanwhile (hook not yet read closed) */
	cw_engine_on_board_offline(e, 0, 1, true);
	setbits(1, ret.slot_number - 9, true, false);
	cw_engine_on_board_offline(e, 0, 1, false);
	push(1);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "returned");
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = "
			   "'reconcile.return_closed'"), 1);
	cart_status(ret.slot_number, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	assert_no_errors();
}
END_TEST

/* Crash between the rental's commit and the release confirmation: a child
 * process rents and dies inside unlock; the engine reopens on the same file. */
static void crash_while_renting(void)
{
	pid_t pid;
	int status = 0;

	engine_close();
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cw_rent_result r;
		engine_open();
		push(0);
		push(1);
		f.crash_on_unlock = true;
		cw_engine_rent(e, "0501234567", &r);
		_exit(3); /* not reached */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(qraw("SELECT count(*) FROM rentals WHERE status = 'active' AND "
			      "release_confirmed = 0"), 1);
}

START_TEST(crash_recovery_never_released)
{
	char s[64];

	crash_while_renting();
	engine_open();
	/* the cart is still docked with its hook closed: it never left */
	push(0);
	push(1);
	qs(s, sizeof(s), "SELECT status FROM rentals");
	ck_assert_str_eq(s, "cancelled");
	qs(s, sizeof(s), "SELECT status FROM carts WHERE id = (SELECT cart_id FROM rentals)");
	ck_assert_str_eq(s, "available");
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = "
			   "'reconcile.pending_cancelled'"), 1);
	ck_assert_int_eq(cw_edb_integrity_check(cw_engine_edb(e)), CW_OK);
	assert_no_errors();
}
END_TEST

START_TEST(crash_recovery_cart_gone)
{
	char s[64];

	crash_while_renting();
	engine_open();
	setbits(0, 0, false, false); /* cart 1 (the least used) is gone */
	push(0);
	push(1);
	qs(s, sizeof(s), "SELECT status FROM rentals");
	ck_assert_str_eq(s, "active");
	ck_assert_int_eq(q("SELECT release_confirmed FROM rentals"), 1);
	ck_assert_int_eq(q("SELECT taken FROM rentals"), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = "
			   "'reconcile.pending_confirmed'"), 1);
	/* the customer can return it normally */
	{
		struct cw_return_result ret;
		ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
		ck_assert_int_eq(ret.slot_number, 1);
	}
	assert_no_errors();
}
END_TEST

START_TEST(restart_keeps_state)
{
	struct cw_rent_result r;
	char s[64];

	rent_and_take("0501234567", &r);
	engine_close();
	engine_open();
	push(0);
	push(1);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "active");
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_ERR_CONFLICT);
	ck_assert_int_eq(cw_edb_integrity_check(cw_engine_edb(e)), CW_OK);
	assert_no_errors();
}
END_TEST

/* ----------------------------------------------------------------- misc */

START_TEST(board_offline_shows_and_blocks)
{
	struct cw_rent_result r;
	cJSON *carts, *c;

	cw_engine_on_board_offline(e, 0, 0, true);
	carts = cw_engine_carts_json(e);
	ck_assert_ptr_nonnull(carts);
	ck_assert_int_eq(cJSON_GetArraySize(carts), 12);
	c = cJSON_GetArrayItem(carts, 0);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(c, "status")), "offline");
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(c, "state")), "available");
	cJSON_Delete(carts);
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_ERR_NOCART);
	cw_engine_on_board_offline(e, 0, 0, false);
	/* back, but not rentable before its reconciliation status */
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_ERR_NOCART);
	push(0);
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = 'board.offline'"), 1);
	assert_no_errors();
}
END_TEST

START_TEST(outbox_sequence_increasing)
{
	struct cw_rent_result r;
	struct cw_return_result ret;
	sqlite3_stmt *st = NULL;
	int64_t prev = 0, n = 0, prev_t = 0;

	rent_and_take("0501234567", &r);
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	sense(ret.slot_number, true, true);
	f.next_rc = CW_ERR_FAULT;
	cw_engine_rent(e, "0507654321", &r);
	cw_engine_lock(e);
	ck_assert_int_eq(sqlite3_prepare_v2(cw_edb_handle(cw_engine_edb(e)),
					    "SELECT seq, created_wall_ms, json_valid(payload), "
					    "json_extract(payload, '$.device_id') FROM outbox ORDER BY rowid",
					    -1, &st, NULL),
			 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(st, 0);
		int64_t t = sqlite3_column_int64(st, 1);
		ck_assert_int_gt(seq, prev);
		ck_assert_int_ge(t, prev_t);
		ck_assert_int_eq(sqlite3_column_int(st, 2), 1);
		ck_assert_str_eq((const char *)sqlite3_column_text(st, 3), "device-1");
		prev = seq;
		prev_t = t;
		n++;
	}
	sqlite3_finalize(st);
	cw_engine_unlock(e);
	ck_assert_int_gt(n, 10);
	ck_assert_int_eq(prev, n); /* no gaps: 1..n */
	ck_assert_int_eq(cw_engine_outbox_depth(e), n);
	assert_no_errors();
}
END_TEST

struct rent_thread {
	char phone[16];
	int rc;
	int cart;
};

static void *rent_worker(void *arg)
{
	struct rent_thread *t = arg;
	struct cw_rent_result r;

	t->rc = cw_engine_rent(e, t->phone, &r);
	t->cart = r.cart_number;
	return NULL;
}

START_TEST(concurrent_rents_never_share_a_cart)
{
	enum { N = 16 };
	pthread_t th[N];
	struct rent_thread t[N];
	int ok = 0, nocart = 0;
	bool used[13] = {false};

	f.delay_ms = 5;
	f.take_on_unlock = true;
	for (int i = 0; i < N; i++) {
		snprintf(t[i].phone, sizeof(t[i].phone), "05011111%02d", i % 100);
		ck_assert_int_eq(pthread_create(&th[i], NULL, rent_worker, &t[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < N; i++) {
		if (t[i].rc == CW_OK) {
			ok++;
			ck_assert_int_ge(t[i].cart, 1);
			ck_assert_int_le(t[i].cart, 8);
			ck_assert(!used[t[i].cart]);
			used[t[i].cart] = true;
		} else {
			ck_assert_int_eq(t[i].rc, CW_ERR_NOCART);
			nocart++;
		}
	}
	ck_assert_int_eq(ok, 8);
	ck_assert_int_eq(nocart, N - 8);
	ck_assert_int_eq(q("SELECT count(*) FROM (SELECT cart_id FROM rentals WHERE status IN "
			   "('active', 'overdue') GROUP BY cart_id HAVING count(*) > 1)"), 0);
	ck_assert_int_eq(q("SELECT count(*) FROM rentals WHERE taken = 1"), 8);
	ck_assert_int_eq(cw_edb_integrity_check(cw_engine_edb(e)), CW_OK);
	assert_no_errors();
}
END_TEST

START_TEST(read_side)
{
	struct cw_rent_result r[5];
	cJSON *j, *arr, *item;
	int err = 0;
	char phone[16], uuid[40], cursor[128];
	const char *next;

	for (int i = 0; i < 5; i++) {
		snprintf(phone, sizeof(phone), "05022222%02d", i % 100);
		rent_and_take(phone, &r[i]);
		cw_engine_test_advance_clock(1000);
	}
	ck_assert_int_eq(cw_engine_force_return(e, r[0].rental_id, NULL), CW_OK);
	ck_assert_int_eq(cw_engine_force_return(e, r[1].rental_id, NULL), CW_OK);
	cw_engine_test_advance_clock(131 * 60000LL);
	cw_engine_tick(e); /* r[2..4] overdue */
	ck_assert_int_eq(cw_engine_force_return(e, r[4].rental_id, NULL), CW_OK);
	{
		struct cw_rent_result r5;
		rent_and_take("0503333333", &r5); /* one active, not overdue */
	}

	/* one cart, by number and by UUID */
	j = cw_engine_cart_json(e, "3", &err);
	ck_assert_int_eq(err, CW_OK);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "cart_number")), 3);
	snprintf(uuid, sizeof(uuid), "%s", cJSON_GetStringValue(cJSON_GetObjectItem(j, "id")));
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(j, "status")), "rented");
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(j, "rental_id")), r[2].rental_id);
	cJSON_Delete(j);
	j = cw_engine_cart_json(e, uuid, &err);
	ck_assert_ptr_nonnull(j);
	cJSON_Delete(j);
	ck_assert_ptr_null(cw_engine_cart_json(e, "99", &err));
	ck_assert_int_eq(err, CW_ERR_NOTFOUND);
	ck_assert_ptr_null(cw_engine_cart_json(e, "x' OR 1=1 --", &err));
	ck_assert_int_eq(err, CW_ERR_NOTFOUND);

	/* active: overdue first */
	arr = cw_engine_rentals_active_json(e);
	ck_assert_int_eq(cJSON_GetArraySize(arr), 3);
	item = cJSON_GetArrayItem(arr, 0);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(item, "status")), "overdue");
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(item, "user_phone")), "0502222202");
	item = cJSON_GetArrayItem(arr, 2);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(item, "status")), "active");
	cJSON_Delete(arr);

	/* history: newest first, pages of 2, cursor, no duplicates */
	{
		int seen = 0;
		int64_t last = INT64_MAX;
		cursor[0] = '\0';
		for (int page = 0; page < 10; page++) {
			j = cw_engine_rentals_history_json_ex(e, 2, cursor, NULL, &err);
			ck_assert_int_eq(err, CW_OK);
			arr = cJSON_GetObjectItem(j, "rentals");
			cJSON_ArrayForEach(item, arr) {
				int64_t t = (int64_t)cJSON_GetNumberValue(
					cJSON_GetObjectItem(item, "start_time_ms"));
				ck_assert_int_le(t, last);
				last = t;
				seen++;
			}
			next = cJSON_GetStringValue(cJSON_GetObjectItem(j, "next_cursor"));
			if (!next) {
				cJSON_Delete(j);
				break;
			}
			snprintf(cursor, sizeof(cursor), "%s", next);
			cJSON_Delete(j);
		}
		ck_assert_int_eq(seen, 6);
	}
	j = cw_engine_rentals_history_json(e, 50, NULL, "0502222201");
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "rentals")), 1);
	cJSON_Delete(j);
	ck_assert_ptr_null(cw_engine_rentals_history_json_ex(e, 10, "garbage", NULL, &err));
	ck_assert_int_eq(err, CW_ERR_INVAL);
	ck_assert_ptr_null(cw_engine_rentals_history_json_ex(e, 10, NULL, "05' OR 1=1", &err));
	ck_assert_int_eq(err, CW_ERR_INVAL);
	j = cw_engine_rentals_history_json(e, 100000, NULL, NULL); /* clamped */
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "rentals")), 6);
	cJSON_Delete(j);

	/* stats */
	j = cw_engine_rentals_stats_json(e);
	ck_assert_ptr_nonnull(j);
	item = cJSON_GetObjectItem(j, "rentals");
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(item, "overdue")), 2);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(item, "returned")), 2);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(item, "returned_late")), 1);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(item, "active")), 1);
	/* overdue rate: (2 overdue + 1 late) / 6 rentals given out */
	ck_assert(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "overdue_rate")) > 0.49);
	ck_assert(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "overdue_rate")) < 0.51);
	ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, "average_duration_s")));
	ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, "rentals_today")));
	item = cJSON_GetObjectItem(j, "carts");
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(item, "rented")), 3);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(item, "total")), 12);
	cJSON_Delete(j);

	/* status */
	j = cw_engine_status_json(e);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "active_rentals")), 3);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "overdue_rentals")), 2);
	ck_assert_int_eq((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "outbox_depth")),
			 cw_engine_outbox_depth(e));
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "schema_version")),
			 cw_edb_latest_version());
	cJSON_Delete(j);
	assert_no_errors();
}
END_TEST

START_TEST(config_changes)
{
	struct cw_engine_hw hw = {.unlock = fake_unlock, .ctx = &f};
	struct cw_engine *e2 = NULL;
	unsigned long errs;
	cJSON *carts;

	/* carts no longer configured are kept for history, marked removed */
	engine_close();
	cfg.ncarts = 10;
	engine_open();
	carts = cw_engine_carts_json(e);
	ck_assert_int_eq(cJSON_GetArraySize(carts), 10);
	cJSON_Delete(carts);
	ck_assert_int_eq(q("SELECT count(*) FROM carts WHERE removed = 1"), 2);
	engine_close();
	/* two carts swap locks */
	cfg.ncarts = 12;
	map[0].lock = 1;
	map[1].lock = 0;
	engine_open();
	ck_assert_int_eq(q("SELECT lock_index FROM carts WHERE cart_number = 1"), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM carts WHERE removed = 1"), 0);
	engine_close();
	/* bad configurations are refused */
	errs = cw_log_error_count();
	map[1].lock = 1; /* two carts on one lock */
	ck_assert_int_eq(cw_engine_new(&cfg, &hw, &e2), CW_ERR_CONFIG);
	map[1].lock = 0;
	map[1].number = 1; /* duplicate number */
	ck_assert_int_eq(cw_engine_new(&cfg, &hw, &e2), CW_ERR_CONFIG);
	map[1].number = 2;
	cfg.rules.rental_minutes = 0;
	ck_assert_int_eq(cw_engine_new(&cfg, &hw, &e2), CW_ERR_CONFIG);
	ck_assert_ptr_null(e2);
	ck_assert_uint_gt(cw_log_error_count(), errs);
	cfg.rules.rental_minutes = 120;
	engine_open();
}
END_TEST

START_TEST(untrusted_clock_recorded)
{
	struct cw_rent_result r;

	setenv("CW_CLOCK_TRUSTED", "0", 1);
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
	ck_assert_int_eq(q("SELECT clock_trusted FROM rentals"), 0);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE clock_trusted = 0 AND "
			   "kind = 'rental.created'"), 1);
	setenv("CW_CLOCK_TRUSTED", "1", 1);
	ck_assert_int_eq(cw_engine_force_return(e, r.rental_id, NULL), CW_OK);
	/* the duration came from the monotonic clock: trusted */
	ck_assert_int_eq(q("SELECT duration_trusted FROM rentals"), 1);
	assert_no_errors();
}
END_TEST

/* ------------------------------------------------ review fixes (issue 2) */

/* Runs SQL through the engine's own connection, under its mutex. */
static void exec_engine(const char *sql)
{
	char *msg = NULL;

	cw_engine_lock(e);
	ck_assert_msg(sqlite3_exec(cw_edb_handle(cw_engine_edb(e)), sql, NULL, NULL, &msg) ==
			      SQLITE_OK, "%s", msg ? msg : "?");
	cw_engine_unlock(e);
	sqlite3_free(msg);
}

static void maintenance_except(int keep)
{
	for (int n = 1; n <= 8; n++)
		if (n != keep)
			ck_assert_int_eq(cw_engine_set_maintenance(e, n, true, "test"), CW_OK);
}

/* H1: closing a rental through one slot frees its other slot, which comes
 * later in the same board pass; the board must not wedge on it. */
START_TEST(board_not_wedged_when_close_frees_later_slot)
{
	struct cw_rent_result r;
	struct cw_return_result ret;
	char s[64];

	sense(5, false, false); /* slot 5 (board 0, lock 4) is empty */
	rent_and_take("0501234567", &r);
	ck_assert_int_eq(r.cart_number, 1);
	/* pushed back into its own slot without the hook latching */
	sense(1, true, false);
	ck_assert_int_eq(cw_engine_return_begin(e, "0501234567", &ret), CW_OK);
	ck_assert_int_eq(ret.slot_number, 5); /* same board, later lock */
	/* now the hook latches: rule 1 closes the rental and frees slot 5 */
	sense(1, true, true);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "returned");
	cart_status(1, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	cart_status(5, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	ck_assert_int_eq(q("SELECT count(*) FROM carts WHERE reserved_for_rental IS NOT NULL"), 0);
	/* the board is not wedged: the next change is recorded */
	sense(3, false, false);
	ck_assert_int_eq(q("SELECT cart_present FROM carts WHERE cart_number = 3"), 0);

	/* The other way round: designated slot 2 (lock 1) before the own slot 4
	 * (lock 3) in the board pass; the own slot is freed by the close. */
	sense(2, false, false);
	{
		struct cw_rent_result r2;
		rent_and_take("0507654321", &r2);
		ck_assert_int_eq(r2.cart_number, 4);
		sense(4, true, false);
		ck_assert_int_eq(cw_engine_return_begin(e, "0507654321", &ret), CW_OK);
		ck_assert_int_eq(ret.slot_number, 2);
		/* the customer pulls it out again and docks it in slot 2: one status */
		setbits(0, 3, false, false);
		setbits(0, 1, true, true);
		push(0);
		rental_status(r2.rental_id, s, sizeof(s));
		ck_assert_str_eq(s, "returned");
		cart_status(4, s, sizeof(s));
		ck_assert_str_eq(s, "available");
	}
	/* and a restart reconciles cleanly */
	engine_close();
	engine_open();
	push(0);
	push(1);
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = 'reconcile.done'"), 4);
	ck_assert_int_eq(cw_edb_integrity_check(cw_engine_edb(e)), CW_OK);
	assert_no_errors();
}
END_TEST

static int during_force_rc, during_rent_rc, during_maint_rc;

static void staff_acts_during_release(void)
{
	char id[40];
	struct cw_rent_result r2;

	qs(id, sizeof(id), "SELECT id FROM rentals WHERE release_confirmed = 0 AND status = 'active'");
	during_force_rc = cw_engine_force_return(e, id, "pressed by mistake");
	during_rent_rc = cw_engine_rent(e, "0507654321", &r2);
}

static void maintenance_off_during_unlock(void)
{
	struct cw_rent_result r2;

	during_maint_rc = cw_engine_set_maintenance(e, 2, false, NULL);
	during_rent_rc = cw_engine_rent(e, "0507777777", &r2);
}

/* H2: nothing may hand a slot to a second customer while its release is in
 * flight. */
START_TEST(release_in_flight_is_protected)
{
	struct cw_rent_result r;
	int64_t lat = 0;
	char s[64];

	maintenance_except(1);
	f.during_unlock = staff_acts_during_release;
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
	ck_assert_int_eq(r.cart_number, 1);
	ck_assert_int_eq(during_force_rc, CW_ERR_STATE);
	ck_assert_int_eq(during_rent_rc, CW_ERR_NOCART);
	ck_assert_int_eq(f.calls, 1);
	rental_status(r.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "active");
	ck_assert_int_eq(q("SELECT release_confirmed FROM rentals WHERE id = '%s'", r.rental_id), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM rentals"), 1);
	cart_status(1, s, sizeof(s));
	ck_assert_str_eq(s, "rented");
	/* once confirmed, force return works */
	ck_assert_int_eq(cw_engine_force_return(e, r.rental_id, NULL), CW_OK);

	/* maintenance unlock: maintenance cannot end while the lock moves */
	f.during_unlock = maintenance_off_during_unlock;
	ck_assert_int_eq(cw_engine_maintenance_unlock(e, 2, &lat), CW_OK);
	ck_assert_int_eq(during_maint_rc, CW_ERR_STATE);
	ck_assert_int_eq(during_rent_rc, CW_ERR_NOCART); /* slot 1: hook open */
	cart_status(2, s, sizeof(s));
	ck_assert_str_eq(s, "maintenance");
	ck_assert_int_eq(q("SELECT count(*) FROM rentals"), 1);
	assert_no_errors();
}
END_TEST

/* H2: a rental whose release was never confirmed (crash leftover, before
 * its board reconciled) is cancelled by a force return, not returned. */
START_TEST(force_return_unconfirmed_is_cancelled)
{
	char s[64], id[40];

	crash_while_renting();
	engine_open();
	qs(id, sizeof(id), "SELECT id FROM rentals");
	ck_assert_int_eq(cw_engine_force_return(e, id, "never opened"), CW_OK);
	rental_status(id, s, sizeof(s));
	ck_assert_str_eq(s, "cancelled");
	qs(s, sizeof(s), "SELECT notes FROM rentals WHERE id = '%s'", id);
	ck_assert_ptr_nonnull(strstr(s, "never opened"));
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'rental.cancelled'"), 1);
	push(0);
	push(1);
	qs(s, sizeof(s), "SELECT status FROM carts WHERE id = (SELECT cart_id FROM rentals)");
	ck_assert_str_eq(s, "available");
	assert_no_errors();
}
END_TEST

static void close_behind_engine(void)
{
	/* Another writer closes the rental while the lock moves (no engine path
	 * does any more; the engine must still not offer the slot blindly). */
	exec_engine("UPDATE rentals SET status = 'cancelled' WHERE status = 'active'; "
		    "UPDATE carts SET status = 'available' WHERE cart_number = 1");
}

/* H2: the release succeeded but the rental was closed meanwhile: the slot
 * is not offered again before a fresh status was read. */
START_TEST(closed_during_release_needs_fresh_status)
{
	struct cw_rent_result r;
	char s[64];

	maintenance_except(1);
	f.during_unlock = close_behind_engine;
	f.no_report = true;
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_ERR_STATE);
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = "
			   "'rental.closed_during_release'"), 1);
	f.no_report = false;
	ck_assert_int_eq(cw_engine_rent(e, "0507654321", &r), CW_ERR_NOCART);
	ck_assert_int_eq(f.calls, 1);
	push(0); /* the lock did open: hook open, no rental */
	cart_status(1, s, sizeof(s));
	ck_assert_str_eq(s, "fault");
	ck_assert_int_eq(cw_engine_rent(e, "0507654321", &r), CW_ERR_NOCART);
	assert_no_errors();
}
END_TEST

/* M1: CW_ERR_OFFLINE may mean "sent, not answered": the slot is not offered
 * again before a fresh status shows what the lock did. */
START_TEST(unlock_unanswered_needs_fresh_status)
{
	struct cw_rent_result r;
	char s[64];

	maintenance_except(1);
	f.next_rc = CW_ERR_OFFLINE;
	f.sense_on_fault = true; /* it did open */
	f.no_report = true;
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_ERR_OFFLINE);
	f.next_rc = CW_OK;
	f.sense_on_fault = false;
	f.no_report = false;
	ck_assert_int_eq(cw_engine_rent(e, "0507654321", &r), CW_ERR_NOCART);
	ck_assert_int_eq(f.calls, 1);
	push(0);
	cart_status(1, s, sizeof(s));
	ck_assert_str_eq(s, "fault");
	/* one that really did not open is offered again after a fresh status */
	ck_assert_int_eq(cw_engine_set_maintenance(e, 2, false, NULL), CW_OK);
	f.next_rc = CW_ERR_OFFLINE;
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_ERR_OFFLINE);
	f.next_rc = CW_OK;
	ck_assert_int_eq(cw_engine_rent(e, "0507654321", &r), CW_ERR_NOCART);
	push(0);
	ck_assert_int_eq(cw_engine_rent(e, "0507654321", &r), CW_OK);
	ck_assert_int_eq(r.cart_number, 2);
	assert_no_errors();
}
END_TEST

static int64_t cart_entries(int board, const char *field, int value)
{
	return q("SELECT count(*) FROM outbox WHERE entity_type = 'cart' AND "
		 "json_extract(payload, '$.cart.board_index') = %d AND "
		 "json_extract(payload, '$.cart.%s') = %d", board, field, value);
}

/* M3: board_online and is_locked changes reach the outbox, once per change. */
START_TEST(online_and_lock_changes_reach_outbox)
{
	struct cw_rent_result r;
	int64_t off0 = cart_entries(0, "board_online", 0), on0;
	int64_t lat = 0;

	cw_engine_on_board_offline(e, 0, 0, true);
	ck_assert_int_eq(cart_entries(0, "board_online", 0), off0 + 8);
	cw_engine_on_board_offline(e, 0, 0, true); /* no transition */
	ck_assert_int_eq(cart_entries(0, "board_online", 0), off0 + 8);
	on0 = cart_entries(0, "board_online", 1);
	cw_engine_on_board_offline(e, 0, 0, false);
	push(0);
	push(0);
	ck_assert_int_eq(cart_entries(0, "board_online", 1) - on0, 8);
	/* back online through a status alone */
	cw_engine_on_board_offline(e, 0, 0, true);
	on0 = cart_entries(0, "board_online", 1);
	push(0);
	ck_assert_int_eq(cart_entries(0, "board_online", 1) - on0, 8);
	/* the lock opened: is_locked = 0 reaches the cloud */
	f.no_report = true;
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE entity_type = 'cart' AND "
			   "json_extract(payload, '$.cart.cart_number') = %d AND "
			   "json_extract(payload, '$.cart.is_locked') = 0", r.cart_number), 1);
	ck_assert_int_eq(cw_engine_maintenance_unlock(e, 8, &lat), CW_OK);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE entity_type = 'cart' AND "
			   "json_extract(payload, '$.cart.cart_number') = 8 AND "
			   "json_extract(payload, '$.cart.is_locked') = 0"), 1);
	assert_no_errors();
}
END_TEST

/* LOW a: one failing item of the tick does not roll back the others. */
START_TEST(tick_item_failure_is_isolated)
{
	struct cw_rent_result a, b;
	char s[64], sql[256];
	unsigned long errs;

	rent_and_take("0501234567", &a);
	rent_and_take("0507654321", &b);
	snprintf(sql, sizeof(sql), "CREATE TEMP TRIGGER block_a BEFORE UPDATE OF status ON rentals "
		 "WHEN OLD.id = '%s' BEGIN SELECT RAISE(ABORT, 'test: blocked'); END", a.rental_id);
	exec_engine(sql);
	cw_engine_test_advance_clock(131 * 60000LL);
	errs = cw_log_error_count();
	cw_engine_tick(e);
	ck_assert_uint_gt(cw_log_error_count(), errs); /* the blocked item is reported */
	rental_status(a.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "active");
	rental_status(b.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "overdue");
	exec_engine("DROP TRIGGER temp.block_a");
	cw_engine_tick(e);
	rental_status(a.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "overdue");
}
END_TEST

/* LOW b: closing a rental never frees a slot that is not its own reservation. */
START_TEST(close_frees_only_own_reservation)
{
	struct cw_rent_result a, b;
	char s[64], sql[256];

	rent_and_take("0501234567", &a);
	rent_and_take("0507654321", &b);
	snprintf(sql, sizeof(sql), "UPDATE rentals SET return_slot = (SELECT cart_id FROM rentals "
		 "WHERE id = '%s') WHERE id = '%s'", b.rental_id, a.rental_id);
	exec_engine(sql);
	ck_assert_int_eq(cw_engine_force_return(e, a.rental_id, NULL), CW_OK);
	cart_status(b.cart_number, s, sizeof(s));
	ck_assert_str_eq(s, "rented");
	rental_status(b.rental_id, s, sizeof(s));
	ck_assert_str_eq(s, "active");
	cart_status(a.cart_number, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	assert_no_errors();
}
END_TEST

/* Fault injection: a statement whose SQL contains fail_needle fails while
 * stepping (SQLITE_INTERRUPT from the progress handler). */
static const char *fail_needle;

static int fail_progress(void *arg)
{
	sqlite3 *h = arg;

	for (sqlite3_stmt *s = sqlite3_next_stmt(h, NULL); s; s = sqlite3_next_stmt(h, s))
		if (sqlite3_stmt_busy(s) && strstr(sqlite3_sql(s), fail_needle))
			return 1;
	return 0;
}

static void fail_steps(const char *needle)
{
	sqlite3 *h = cw_edb_handle(cw_engine_edb(e));

	cw_engine_lock(e);
	fail_needle = needle;
	sqlite3_progress_handler(h, needle ? 1 : 0, needle ? fail_progress : NULL, h);
	cw_engine_unlock(e);
}

/* LOW c: a failing step is a database error, not the end of the rows. */
START_TEST(step_errors_are_db_errors)
{
	struct cw_rent_result r;
	unsigned long errs;

	fail_steps("cart_present = 1 AND hook_closed = 1");
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_ERR_DB);
	fail_steps("GROUP BY s");
	ck_assert_ptr_null(cw_engine_rentals_stats_json(e));
	ck_assert_ptr_null(cw_engine_status_json(e));
	/* the board's snapshot fails: the status is retried, not lost */
	fail_steps("ORDER BY lock_index");
	setbits(0, 4, false, false);
	push(0);
	fail_steps(NULL);
	push(0);
	ck_assert_int_eq(q("SELECT cart_present FROM carts WHERE cart_number = 5"), 0);
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry WHERE event_type = 'cart.missing'"), 1);
	/* the tick's list of rentals */
	fail_steps("SELECT id FROM rentals WHERE");
	errs = cw_log_error_count();
	cw_engine_tick(e);
	ck_assert_uint_gt(cw_log_error_count(), errs);
	fail_steps(NULL);
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
}
END_TEST

/* LOW d: maintenance off on a slot that is not in maintenance (available)
 * is a no-op that writes nothing. */
START_TEST(maintenance_off_noop_writes_nothing)
{
	int64_t before = total_rows();

	ck_assert_int_eq(cw_engine_set_maintenance(e, 3, false, NULL), CW_OK);
	ck_assert_int_eq(total_rows(), before);
	assert_no_errors();
}
END_TEST


/* ------------------------------------------------ commands (issue 4) */

static const char *const CMD_A = "0190f0a0-0000-7000-8000-00000000000a";
static const char *const CMD_B = "0190f0a0-0000-7000-8000-00000000000b";

/* Runs a command built from JSON args text, issued at issued (wall ms);
 * expires in 60 s unless given. */
static int run_cmd_at(const char *id, const char *action, const char *args, int64_t issued,
		      int64_t expires, struct cw_command_outcome *out)
{
	cJSON *a = cJSON_Parse(args);
	struct cw_engine_command c = {
		.id = id,
		.action = action,
		.args = a,
		.issued_wall_ms = issued,
		.expires_wall_ms = expires ? expires : cw_wall_ms() + 60000,
	};
	int rc;

	ck_assert_ptr_nonnull(a);
	rc = cw_engine_command(e, &c, out);
	cJSON_Delete(a);
	return rc;
}

static int run_cmd(const char *id, const char *action, const char *args, int64_t expires,
		   struct cw_command_outcome *out)
{
	return run_cmd_at(id, action, args, cw_wall_ms(), expires, out);
}

static int64_t results_of(const char *id)
{
	return q("SELECT count(*) FROM outbox WHERE kind = 'command.result' AND entity_type = "
		 "'command' AND entity_id = '%s'", id);
}

static void result_field(const char *id, const char *path, char *out, size_t cap)
{
	qs(out, cap, "SELECT json_extract(payload, '%s') FROM outbox WHERE kind = 'command.result' "
	   "AND entity_id = '%s'", path, id);
}

START_TEST(cmd_unlock_once)
{
	struct cw_command_outcome o;
	char s[64];

	ck_assert_int_eq(run_cmd(CMD_A, "unlock", "{\"cart_number\": 3}", 0, &o), CW_OK);
	ck_assert_str_eq(o.state, "done");
	ck_assert_str_eq(o.error, "");
	ck_assert_int_eq(f.calls, 1);
	cart_status(3, s, sizeof(s));
	ck_assert_str_eq(s, "maintenance");
	qs(s, sizeof(s), "SELECT state FROM command_log WHERE id = '%s'", CMD_A);
	ck_assert_str_eq(s, "done");
	ck_assert_int_eq(results_of(CMD_A), 1);
	result_field(CMD_A, "$.command.state", s, sizeof(s));
	ck_assert_str_eq(s, "succeeded");
	result_field(CMD_A, "$.command.result.cart_number", s, sizeof(s));
	ck_assert_str_eq(s, "3");
	result_field(CMD_A, "$.command.result.cart.hook_closed", s, sizeof(s));
	ck_assert_str_eq(s, "0"); /* the sensors saw the hook open */
	result_field(CMD_A, "$.command.id", s, sizeof(s));
	ck_assert_str_eq(s, CMD_A);
	/* a second delivery (MQTT then heartbeat) or a replay: nothing moves */
	ck_assert_int_eq(run_cmd(CMD_A, "unlock", "{\"cart_number\": 3}", 0, &o), CW_ERR_CONFLICT);
	ck_assert_int_eq(run_cmd(CMD_A, "unlock", "{\"cart_number\": 4}", 0, &o), CW_ERR_CONFLICT);
	ck_assert_int_eq(f.calls, 1);
	ck_assert_int_eq(results_of(CMD_A), 1);
	ck_assert_int_eq(q("SELECT count(*) FROM command_log"), 1);
	/* by cart id as well */
	{
		char args[128], id[40];
		qs(id, sizeof(id), "SELECT id FROM carts WHERE cart_number = 6");
		snprintf(args, sizeof(args), "{\"cart_id\": \"%s\"}", id);
		ck_assert_int_eq(run_cmd(CMD_B, "unlock", args, 0, &o), CW_OK);
		ck_assert_str_eq(o.state, "done");
		ck_assert_int_eq(f.calls, 2);
	}
	assert_no_errors();
}
END_TEST

START_TEST(cmd_unlock_unconfirmed_fails)
{
	struct cw_command_outcome o;
	char s[64];

	f.next_rc = CW_ERR_FAULT;
	ck_assert_int_eq(run_cmd(CMD_A, "unlock", "{\"cart_number\": 2}", 0, &o), CW_OK);
	ck_assert_str_eq(o.state, "failed");
	ck_assert_str_eq(o.error, "fault");
	result_field(CMD_A, "$.command.state", s, sizeof(s));
	ck_assert_str_eq(s, "failed");
	result_field(CMD_A, "$.command.result.cart.is_locked", s, sizeof(s));
	ck_assert_str_eq(s, "1");
	/* a customer's cart is refused before anything moves */
	f.next_rc = CW_OK;
	{
		struct cw_rent_result r;
		ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
		f.calls = 0;
		char args[64];
		snprintf(args, sizeof(args), "{\"cart_number\": %d}", r.cart_number);
		ck_assert_int_eq(run_cmd(CMD_B, "unlock", args, 0, &o), CW_OK);
		ck_assert_str_eq(o.state, "failed");
		ck_assert_str_eq(o.error, "bad_state");
		ck_assert_int_eq(f.calls, 0);
		qs(s, sizeof(s), "SELECT state FROM command_log WHERE id = '%s'", CMD_B);
		ck_assert_str_eq(s, "failed");
	}
}
END_TEST

START_TEST(cmd_expired_refused)
{
	struct cw_command_outcome o;
	char s[64];

	ck_assert_int_eq(run_cmd(CMD_A, "unlock", "{\"cart_number\": 3}", cw_wall_ms() - 1, &o),
			 CW_OK);
	ck_assert_str_eq(o.state, "expired");
	ck_assert_str_eq(o.error, "expired");
	ck_assert_int_eq(f.calls, 0);
	cart_status(3, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	result_field(CMD_A, "$.command.state", s, sizeof(s));
	ck_assert_str_eq(s, "failed");
	result_field(CMD_A, "$.command.result.error", s, sizeof(s));
	ck_assert_str_eq(s, "expired");
	/* the same id again, now with a future expiry: still never run */
	ck_assert_int_eq(run_cmd(CMD_A, "unlock", "{\"cart_number\": 3}", 0, &o), CW_ERR_CONFLICT);
	ck_assert_int_eq(f.calls, 0);
	assert_no_errors();
}
END_TEST

START_TEST(cmd_untrusted_clock_refused)
{
	struct cw_command_outcome o;
	char s[64];

	setenv("CW_CLOCK_TRUSTED", "0", 1);
	ck_assert(!cw_engine_clock_trusted(e));
	ck_assert_int_eq(run_cmd(CMD_A, "unlock", "{\"cart_number\": 3}", 0, &o), CW_OK);
	ck_assert_str_eq(o.state, "refused");
	ck_assert_str_eq(o.error, "clock_untrusted");
	ck_assert_int_eq(f.calls, 0);
	result_field(CMD_A, "$.command.result.error", s, sizeof(s));
	ck_assert_str_eq(s, "clock_untrusted");
	ck_assert_int_eq(q("SELECT clock_trusted FROM outbox WHERE kind = 'command.result'"), 0);
	/* the cloud's time (heartbeat over verified TLS) makes the clock trusted;
	 * the kernel clock is 10 minutes behind: records are corrected */
	cw_engine_server_time(e, cw_wall_ms() + 600000, cw_mono_ms());
	ck_assert(cw_engine_clock_trusted(e));
	ck_assert_int_eq(run_cmd(CMD_B, "unlock", "{\"cart_number\": 3}", cw_wall_ms() + 660000, &o),
			 CW_OK);
	ck_assert_str_eq(o.state, "done");
	ck_assert_int_eq(f.calls, 1);
	ck_assert_int_eq(q("SELECT received_trusted FROM command_log WHERE id = '%s'", CMD_B), 1);
	ck_assert_int_ge(q("SELECT received_wall_ms FROM command_log WHERE id = '%s'", CMD_B),
			 cw_wall_ms() + 590000);
	setenv("CW_CLOCK_TRUSTED", "1", 1);
}
END_TEST

/* A crash after the command's row committed (state executing): at the next
 * start it is reported failed "interrupted" with the cart's state and never
 * run again. */
START_TEST(cmd_crash_never_reexecuted)
{
	struct cw_command_outcome o;
	pid_t pid;
	int status = 0;
	char s[64];

	engine_close();
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		engine_open();
		push(0);
		push(1);
		f.crash_on_unlock = true;
		run_cmd(CMD_A, "unlock", "{\"cart_number\": 4}", 0, &o);
		_exit(3); /* not reached */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(qraw("SELECT count(*) FROM command_log WHERE state = 'executing'"), 1);
	f.calls = 0;
	engine_open();
	push(0);
	push(1);
	qs(s, sizeof(s), "SELECT state FROM command_log WHERE id = '%s'", CMD_A);
	ck_assert_str_eq(s, "failed");
	ck_assert_int_eq(results_of(CMD_A), 1);
	result_field(CMD_A, "$.command.result.error", s, sizeof(s));
	ck_assert_str_eq(s, "interrupted");
	result_field(CMD_A, "$.command.result.cart.cart_number", s, sizeof(s));
	ck_assert_str_eq(s, "4");
	result_field(CMD_A, "$.command.state", s, sizeof(s));
	ck_assert_str_eq(s, "failed");
	/* delivered again after the restart: refused, no lock moves */
	ck_assert_int_eq(run_cmd(CMD_A, "unlock", "{\"cart_number\": 4}", 0, &o), CW_ERR_CONFLICT);
	ck_assert_int_eq(f.calls, 0);
	/* a second restart reports nothing more */
	engine_close();
	engine_open();
	ck_assert_int_eq(results_of(CMD_A), 1);
}
END_TEST

/* The same with a row left executing by hand (any action). */
START_TEST(cmd_executing_row_reported_at_start)
{
	char s[64];

	exec_engine("INSERT INTO command_log(id, action, args, received_wall_ms, received_trusted, "
		    "state, updated_wall_ms) VALUES ('0190f0a0-0000-7000-8000-00000000000a', "
		    "'cart_assign', '{\"cart_number\": 7, \"phone\": \"0501234567\"}', 1, 1, "
		    "'executing', 1)");
	engine_close();
	f.calls = 0;
	engine_open();
	qs(s, sizeof(s), "SELECT state FROM command_log WHERE id = '%s'", CMD_A);
	ck_assert_str_eq(s, "failed");
	result_field(CMD_A, "$.command.result.cart.cart_number", s, sizeof(s));
	ck_assert_str_eq(s, "7");
	result_field(CMD_A, "$.command.action", s, sizeof(s));
	ck_assert_str_eq(s, "cart_assign");
	ck_assert_int_eq(f.calls, 0);
	ck_assert_int_eq(q("SELECT count(*) FROM rentals"), 0);
}
END_TEST

START_TEST(cmd_assign_and_return)
{
	struct cw_command_outcome o;
	char s[64], rid[40];

	ck_assert_int_eq(run_cmd(CMD_A, "cart_assign",
				 "{\"cart_number\": 5, \"locker_id\": 0, \"phone\": \"0501234567\"}",
				 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.state, "done");
	ck_assert_int_eq(f.calls, 1);
	/* stored in E.164, as the kiosk stores it: one customer, one phone */
	qs(rid, sizeof(rid), "SELECT id FROM rentals WHERE user_phone = '+972501234567'");
	ck_assert_int_eq(q("SELECT c.cart_number FROM rentals r JOIN carts c ON c.id = r.cart_id"), 5);
	result_field(CMD_A, "$.command.result.rental_id", s, sizeof(s));
	ck_assert_str_eq(s, rid);
	/* the same cart again: not available */
	ck_assert_int_eq(run_cmd("cmd-2", "cart.assign",
				 "{\"cart_number\": 5, \"phone\": \"0509999999\"}", 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.state, "failed");
	ck_assert_str_eq(o.error, "no_cart");
	ck_assert_int_eq(f.calls, 1);
	ck_assert_int_eq(run_cmd("cmd-3", "cart_assign", "{\"cart_number\": 6, \"phone\": \"12\"}", 0,
				 &o),
			 CW_OK);
	ck_assert_str_eq(o.error, "invalid_args");
	sense(5, false, false); /* taken */
	ck_assert_int_eq(run_cmd(CMD_B, "cart_return", "{\"cart_number\": 5}", 0, &o), CW_OK);
	ck_assert_str_eq(o.state, "done");
	rental_status(rid, s, sizeof(s));
	ck_assert_str_eq(s, "returned");
	ck_assert_int_eq(run_cmd("cmd-4", "cart_return", "{\"cart_number\": 5}", 0, &o), CW_OK);
	ck_assert_str_eq(o.state, "failed");
	ck_assert_str_eq(o.error, "not_found");
	assert_no_errors();
}
END_TEST

START_TEST(cmd_maintenance_and_others)
{
	struct cw_command_outcome o;
	int64_t before;
	char s[64];

	ck_assert_int_eq(run_cmd(CMD_A, "set_maintenance",
				 "{\"cart_number\": 2, \"on\": true, \"note\": \"wheel\"}", 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.state, "done");
	cart_status(2, s, sizeof(s));
	ck_assert_str_eq(s, "maintenance");
	ck_assert_int_eq(run_cmd(CMD_B, "set_maintenance", "{\"cart_number\": 2, \"on\": false}", 0,
				 &o),
			 CW_OK);
	cart_status(2, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	/* bad arguments, unknown carts and actions: failed, recorded, nothing moves */
	before = q("SELECT count(*) FROM telemetry");
	ck_assert_int_eq(run_cmd("c1", "set_maintenance", "{\"cart_number\": 2}", 0, &o), CW_OK);
	ck_assert_str_eq(o.error, "invalid_args");
	ck_assert_int_eq(run_cmd("c2", "set_maintenance", "{\"cart_number\": 99, \"on\": true}", 0,
				 &o),
			 CW_OK);
	ck_assert_str_eq(o.error, "not_found");
	ck_assert_int_eq(run_cmd("c3", "unlock", "{\"cart_number\": 1.5}", 0, &o), CW_OK);
	ck_assert_str_eq(o.error, "invalid_args");
	ck_assert_int_eq(run_cmd("c4", "unlock", "{}", 0, &o), CW_OK);
	ck_assert_str_eq(o.error, "invalid_args");
	ck_assert_int_eq(run_cmd("c5", "unlock",
				 "{\"cart_number\": 3, \"cart_id\": \"0190f0a0-0000-7000-8000-"
				 "0000000000ff\"}", 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.error, "not_found");
	ck_assert_int_eq(run_cmd("c6", "firmware_update", "{\"version\": \"1.2\"}", 0, &o), CW_OK);
	ck_assert_str_eq(o.state, "failed");
	ck_assert_str_eq(o.error, "not_supported");
	ck_assert_int_eq(run_cmd("c7", "self_destruct", "{}", 0, &o), CW_OK);
	ck_assert_str_eq(o.error, "unknown_action");
	ck_assert_int_eq(f.calls, 0);
	ck_assert_int_eq(q("SELECT count(*) FROM telemetry"), before);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'command.result'"), 9);
	ck_assert_int_eq(q("SELECT count(*) FROM command_log WHERE state = 'failed'"), 7);
	/* malformed ids are not recorded (nothing to key them by) */
	ck_assert_int_eq(run_cmd("", "unlock", "{}", 0, &o), CW_ERR_INVAL);
	ck_assert_int_eq(run_cmd("a b", "unlock", "{}", 0, &o), CW_ERR_INVAL);
	ck_assert_int_eq(q("SELECT count(*) FROM command_log"), 9);
	assert_no_errors();
}
END_TEST

/* A signed command with a malformed action or args is recorded refused,
 * reported, and refused again as a replay. */
START_TEST(cmd_malformed_recorded_refused)
{
	struct cw_command_outcome o;
	char s[64], big[6000];

	ck_assert_int_eq(run_cmd("m1", "un lock", "{\"cart_number\": 3}", 0, &o), CW_OK);
	ck_assert_str_eq(o.state, "refused");
	ck_assert_str_eq(o.error, "malformed_command");
	qs(s, sizeof(s), "SELECT state || ' ' || action FROM command_log WHERE id = 'm1'");
	ck_assert_str_eq(s, "refused invalid");
	ck_assert_int_eq(run_cmd("m2", "", "{}", 0, &o), CW_OK);
	ck_assert_str_eq(o.error, "malformed_command");
	/* args not an object (what the syncer hands on for "bad_args") */
	ck_assert_int_eq(run_cmd("m3", "unlock", "[3]", 0, &o), CW_OK);
	ck_assert_str_eq(o.state, "refused");
	result_field("m3", "$.command.state", s, sizeof(s));
	ck_assert_str_eq(s, "failed");
	result_field("m3", "$.command.result.error", s, sizeof(s));
	ck_assert_str_eq(s, "malformed_command");
	result_field("m3", "$.command.local_state", s, sizeof(s));
	ck_assert_str_eq(s, "refused");
	/* args too long */
	snprintf(big, sizeof(big), "{\"cart_number\": 3, \"note\": \"%05000d\"}", 0);
	ck_assert_int_eq(run_cmd("m4", "unlock", big, 0, &o), CW_OK);
	ck_assert_str_eq(o.error, "malformed_command");
	ck_assert_int_eq(q("SELECT count(*) FROM command_log WHERE state = 'refused'"), 4);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'command.result'"), 4);
	/* a replay, now well formed: refused by the log, nothing moves */
	ck_assert_int_eq(run_cmd("m3", "unlock", "{\"cart_number\": 3}", 0, &o), CW_ERR_CONFLICT);
	ck_assert_int_eq(run_cmd("m1", "unlock", "{\"cart_number\": 3}", 0, &o), CW_ERR_CONFLICT);
	ck_assert_int_eq(f.calls, 0);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'command.result'"), 4);
	cart_status(3, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	assert_no_errors();
}
END_TEST

static void fail_telemetry(void)
{
	fail_steps("INSERT INTO telemetry");
}

static void fail_outbox(void)
{
	fail_steps("INSERT INTO outbox");
}

/* The lock moved but the outcome's transaction failed: the command is
 * reported failed "result_not_recorded" by a smaller transaction, or, when
 * that fails too, by the next tick; never run again. */
START_TEST(cmd_outcome_not_recorded)
{
	struct cw_command_outcome o;
	unsigned long errs = cw_log_error_count();
	char s[64];

	f.during_unlock = fail_telemetry;
	ck_assert_int_eq(run_cmd(CMD_A, "unlock", "{\"cart_number\": 3}", 0, &o), CW_OK);
	fail_steps(NULL);
	ck_assert_str_eq(o.state, "failed");
	ck_assert_str_eq(o.error, "result_not_recorded");
	ck_assert_uint_gt(cw_log_error_count(), errs);
	ck_assert_int_eq(f.calls, 1);
	qs(s, sizeof(s), "SELECT state FROM command_log WHERE id = '%s'", CMD_A);
	ck_assert_str_eq(s, "failed");
	ck_assert_int_eq(results_of(CMD_A), 1);
	result_field(CMD_A, "$.command.result.error", s, sizeof(s));
	ck_assert_str_eq(s, "result_not_recorded");
	result_field(CMD_A, "$.command.result.release", s, sizeof(s));
	ck_assert_str_eq(s, cw_errname(CW_OK));
	result_field(CMD_A, "$.command.result.cart.cart_number", s, sizeof(s));
	ck_assert_str_eq(s, "3");
	ck_assert_int_eq(run_cmd(CMD_A, "unlock", "{\"cart_number\": 3}", 0, &o), CW_ERR_CONFLICT);
	ck_assert_int_eq(f.calls, 1);

	/* neither transaction can write: left executing, the tick reports it */
	f.during_unlock = fail_outbox;
	ck_assert_int_eq(run_cmd(CMD_B, "unlock", "{\"cart_number\": 4}", 0, &o), CW_ERR_DB);
	fail_steps(NULL);
	ck_assert_int_eq(f.calls, 2);
	qs(s, sizeof(s), "SELECT state FROM command_log WHERE id = '%s'", CMD_B);
	ck_assert_str_eq(s, "executing");
	ck_assert_int_eq(results_of(CMD_B), 0);
	ck_assert_int_eq(run_cmd(CMD_B, "unlock", "{\"cart_number\": 4}", 0, &o), CW_ERR_CONFLICT);
	cw_engine_tick(e);
	qs(s, sizeof(s), "SELECT state FROM command_log WHERE id = '%s'", CMD_B);
	ck_assert_str_eq(s, "failed");
	ck_assert_int_eq(results_of(CMD_B), 1);
	result_field(CMD_B, "$.command.result.error", s, sizeof(s));
	ck_assert_str_eq(s, "result_not_recorded");
	cw_engine_tick(e);
	ck_assert_int_eq(results_of(CMD_B), 1);
	ck_assert_int_eq(f.calls, 2);
}
END_TEST

static void drop_db_files(void)
{
	const char *suffix[] = {"", "-wal", "-shm"};
	char p[400];

	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s%s", dbpath, suffix[i]);
		unlink(p);
	}
}

/* A command issued before the database was created may have run in the one
 * it replaced (whose command_log is gone): refused. */
START_TEST(cmd_issued_before_database)
{
	struct cw_command_outcome o;
	int64_t sec = cw_wall_ms() / 1000 * 1000; /* iat is in whole seconds */
	char s[128];

	/* this database is 2 s old; the command was issued a second ago */
	exec_engine("UPDATE settings SET value = json_set(value, '$.wall_ms', "
		    "json_extract(value, '$.wall_ms') - 2000) WHERE key = 'db_created'");
	ck_assert_int_eq(run_cmd_at(CMD_A, "unlock", "{\"cart_number\": 3}", sec - 1000, 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.state, "done");
	ck_assert_int_eq(f.calls, 1);
	/* edge.db replaced (restored, recreated): the same command again */
	engine_close();
	drop_db_files();
	setbits(0, 2, true, true); /* cart 3 docked and locked again */
	engine_open();
	push(0);
	push(1);
	ck_assert_int_eq(q("SELECT count(*) FROM command_log"), 0);
	ck_assert_int_eq(run_cmd_at(CMD_A, "unlock", "{\"cart_number\": 3}", sec - 1000, 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.state, "refused");
	ck_assert_str_eq(o.error, "issued_before_database");
	ck_assert_int_eq(f.calls, 1);
	result_field(CMD_A, "$.command.result.error", s, sizeof(s));
	ck_assert_str_eq(s, "issued_before_database");
	cart_status(3, s, sizeof(s));
	ck_assert_str_eq(s, "available");
	/* one issued in the second the database was created runs */
	ck_assert_int_eq(run_cmd_at(CMD_B, "unlock", "{\"cart_number\": 4}",
				    q("SELECT json_extract(value, '$.wall_ms') / 1000 * 1000 FROM "
				      "settings WHERE key = 'db_created'"), 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.state, "done");
	ck_assert_int_eq(f.calls, 2);

	/* created while the clock was not trusted, same boot: the monotonic
	 * clock dates it (3 s ago); stored trusted from then on */
	exec_engine("UPDATE settings SET value = json_set(value, '$.wall_ms', 5, '$.trusted', 0, "
		    "'$.mono_ms', json_extract(value, '$.mono_ms') - 3000) WHERE key = 'db_created'");
	ck_assert_int_eq(run_cmd_at("c1", "unlock", "{\"cart_number\": 5}", sec - 6000, 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.error, "issued_before_database");
	ck_assert_int_eq(q("SELECT json_extract(value, '$.trusted') FROM settings WHERE key = "
			   "'db_created'"), 1);
	ck_assert_int_ge(q("SELECT json_extract(value, '$.wall_ms') FROM settings WHERE key = "
			   "'db_created'"), cw_wall_ms() - 5000);
	ck_assert_int_eq(run_cmd_at("c2", "unlock", "{\"cart_number\": 5}", sec - 1000, 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.state, "done");
	/* ... after a reboot: created before this boot at the latest, so one
	 * issued before the boot is refused, one issued since runs */
	exec_engine("UPDATE settings SET value = json_set(value, '$.trusted', 0, '$.boot', "
		    "'another-boot') WHERE key = 'db_created'");
	ck_assert_int_ge(cw_boot_ms(), 2000); /* the test machine is up for more than 2 s */
	ck_assert_int_eq(run_cmd_at("c3", "unlock", "{\"cart_number\": 6}",
				    sec - (cw_boot_ms() / 1000 + 2) * 1000, 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.error, "issued_before_database");
	ck_assert_int_eq(f.calls, 3);
	ck_assert_int_le(q("SELECT json_extract(value, '$.wall_ms') FROM settings WHERE key = "
			   "'db_created'"), cw_wall_ms() - cw_boot_ms() + 1000);
	ck_assert_int_eq(run_cmd_at("c4", "unlock", "{\"cart_number\": 6}", sec - 1000, 0, &o),
			 CW_OK);
	ck_assert_str_eq(o.state, "done");
	ck_assert_int_eq(f.calls, 4);
	assert_no_errors();
}
END_TEST

static int hook_calls;
static void count_hook(void *ctx)
{
	(void)ctx;
	__atomic_add_fetch(&hook_calls, 1, __ATOMIC_SEQ_CST);
}

START_TEST(outbox_hook_after_commits)
{
	struct cw_rent_result r;
	int n;

	hook_calls = 0;
	cw_engine_set_outbox_hook(e, count_hook, NULL);
	ck_assert_int_eq(cw_engine_set_maintenance(e, 3, false, NULL), CW_OK); /* no-op */
	ck_assert_int_eq(hook_calls, 0);
	ck_assert_int_eq(cw_engine_rent(e, "0501234567", &r), CW_OK);
	/* the rental's commit, the sensors, the confirmation */
	ck_assert_int_ge(hook_calls, 2);
	n = hook_calls;
	ck_assert_int_eq(cw_engine_set_maintenance(e, 99, true, NULL), CW_ERR_NOTFOUND);
	ck_assert_int_eq(hook_calls, n);
	cw_engine_set_outbox_hook(e, NULL, NULL);
	ck_assert_int_eq(cw_engine_set_maintenance(e, 3, true, NULL), CW_OK);
	ck_assert_int_eq(hook_calls, n);
}
END_TEST

START_TEST(cart_payload_has_controller)
{
	char s[64];
	int64_t before = q("SELECT count(*) FROM outbox WHERE kind = 'cart.updated'");

	ck_assert_int_eq(cw_engine_set_controller_info(e, 0, 0, "bus0", 7, "modbus"), CW_OK);
	/* the 8 carts of that board, once */
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'cart.updated'"), before + 8);
	ck_assert_int_eq(cw_engine_set_controller_info(e, 0, 0, "bus0", 7, "modbus"), CW_OK);
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind = 'cart.updated'"), before + 8);
	qs(s, sizeof(s), "SELECT json_extract(payload, '$.cart.controller.protocol') FROM outbox "
	   "WHERE kind = 'cart.updated' ORDER BY seq DESC LIMIT 1");
	ck_assert_str_eq(s, "modbus");
	ck_assert_int_eq(q("SELECT json_extract(payload, '$.cart.controller.address') FROM outbox "
			   "WHERE kind = 'cart.updated' ORDER BY seq DESC LIMIT 1"), 7);
	qs(s, sizeof(s), "SELECT json_extract(payload, '$.cart.controller.bus_name') FROM outbox "
	   "WHERE kind = 'cart.updated' ORDER BY seq DESC LIMIT 1");
	ck_assert_str_eq(s, "bus0");
	ck_assert_int_eq(q("SELECT count(*) FROM outbox WHERE kind LIKE 'cart.%%' AND "
			   "json_extract(payload, '$.cart.controller.id') = "
			   "json_extract(payload, '$.cart.controller_id') AND "
			   "json_extract(payload, '$.v') = 1"),
			 q("SELECT count(*) FROM outbox WHERE kind LIKE 'cart.%%'"));
	ck_assert_int_eq(cw_engine_set_controller_info(e, 0, 5, "bus0", 9, "modbus"),
			 CW_ERR_NOTFOUND);
	{
		int on, total;
		cw_engine_boards(e, &on, &total);
		ck_assert_int_eq(total, 2);
		ck_assert_int_eq(on, 2);
		cw_engine_on_board_offline(e, 0, 1, true);
		cw_engine_boards(e, &on, &total);
		ck_assert_int_eq(on, 1);
	}
	assert_no_errors();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("engine");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, rent_happy_path);
	tcase_add_test(tc, rent_bad_phone);
	tcase_add_test(tc, second_rent_same_phone_conflict);
	tcase_add_test(tc, one_per_phone_off);
	tcase_add_test(tc, overdue_blocks_and_is_returnable);
	tcase_add_test(tc, no_free_cart);
	tcase_add_test(tc, unlock_not_confirmed_cancels_and_faults);
	tcase_add_test(tc, cart_gone_counts_as_released);
	tcase_add_test(tc, unlock_offline_cancels_keeps_available);
	tcase_add_test(tc, take_timeout_cancels);
	tcase_add_test(tc, return_designates_empty_slot_only);
	tcase_add_test(tc, return_no_free_slot);
	tcase_add_test(tc, dock_closes_rental);
	tcase_add_test(tc, returned_late);
	tcase_add_test(tc, reservation_expires);
	tcase_add_test(tc, force_return);
	tcase_add_test(tc, maintenance_excludes_cart);
	tcase_add_test(tc, reconcile_rented_cart_back_in_own_slot);
	tcase_add_test(tc, reconcile_rented_overdue_back_is_late);
	tcase_add_test(tc, reconcile_available_slot_empty);
	tcase_add_test(tc, reconcile_hook_open_without_rental);
	tcase_add_test(tc, reconcile_awaiting_slot_present);
	tcase_add_test(tc, crash_recovery_never_released);
	tcase_add_test(tc, crash_recovery_cart_gone);
	tcase_add_test(tc, restart_keeps_state);
	tcase_add_test(tc, board_offline_shows_and_blocks);
	tcase_add_test(tc, outbox_sequence_increasing);
	tcase_add_test(tc, concurrent_rents_never_share_a_cart);
	tcase_add_test(tc, read_side);
	tcase_add_test(tc, config_changes);
	tcase_add_test(tc, untrusted_clock_recorded);
	tcase_add_test(tc, board_not_wedged_when_close_frees_later_slot);
	tcase_add_test(tc, release_in_flight_is_protected);
	tcase_add_test(tc, force_return_unconfirmed_is_cancelled);
	tcase_add_test(tc, closed_during_release_needs_fresh_status);
	tcase_add_test(tc, unlock_unanswered_needs_fresh_status);
	tcase_add_test(tc, online_and_lock_changes_reach_outbox);
	tcase_add_test(tc, tick_item_failure_is_isolated);
	tcase_add_test(tc, close_frees_only_own_reservation);
	tcase_add_test(tc, step_errors_are_db_errors);
	tcase_add_test(tc, maintenance_off_noop_writes_nothing);
	tcase_add_test(tc, cmd_unlock_once);
	tcase_add_test(tc, cmd_unlock_unconfirmed_fails);
	tcase_add_test(tc, cmd_expired_refused);
	tcase_add_test(tc, cmd_untrusted_clock_refused);
	tcase_add_test(tc, cmd_crash_never_reexecuted);
	tcase_add_test(tc, cmd_executing_row_reported_at_start);
	tcase_add_test(tc, cmd_assign_and_return);
	tcase_add_test(tc, cmd_maintenance_and_others);
	tcase_add_test(tc, cmd_malformed_recorded_refused);
	tcase_add_test(tc, cmd_outcome_not_recorded);
	tcase_add_test(tc, cmd_issued_before_database);
	tcase_add_test(tc, outbox_hook_after_commits);
	tcase_add_test(tc, cart_payload_has_controller);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
