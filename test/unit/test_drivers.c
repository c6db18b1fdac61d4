/* test_drivers.c - both real backends (Modbus-RTU on libmodbus, Kerong
 * KR-CU16) through the bus worker against the real simulator,
 * cartwise-simlock, on a pseudo-terminal, pacing bytes at 19200 baud.
 *
 * Every test runs once per protocol (loop index 0 = modbus, 1 = kerong).
 * The simulator is built with the project; a missing simulator fails the
 * test (CI always builds it). */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_lockbus.h"
#include "cw_log.h"
#include "cw_testutil.h"

#define LOCKS 16

static const char *const proto_name[2] = {"modbus", "kerong"};
/* simulator board addresses: Modbus slave ids start at 1, Kerong boards at 0 */
static const int addr_of[2][2] = {{1, 2}, {0, 1}};

static struct {
	pthread_mutex_t mu;
	int status[2], offline[2], online[2];
} E = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct cw_test_sim *sim;
static struct cw_bus *bus;
static int P; /* protocol index of the running test */
static unsigned long errors_at_start;

static void on_event(struct cw_bus *b, const struct cw_bus_event *ev, void *ud)
{
	(void)b;
	(void)ud;
	pthread_mutex_lock(&E.mu);
	if (ev->kind == CW_BUS_EV_STATUS)
		E.status[ev->board_index]++;
	else if (ev->kind == CW_BUS_EV_OFFLINE)
		E.offline[ev->board_index]++;
	else
		E.online[ev->board_index]++;
	pthread_mutex_unlock(&E.mu);
}

static int ev_count(int *c)
{
	int n;
	pthread_mutex_lock(&E.mu);
	n = *c;
	pthread_mutex_unlock(&E.mu);
	return n;
}

static bool wait_count(int *c, int n, int ms)
{
	int64_t end = cw_mono_ms() + ms;
	while (ev_count(c) < n) {
		if (cw_mono_ms() > end)
			return false;
		cw_sleep_ms(5);
	}
	return true;
}

/* Two boards of 16 locks, paced at 19200 baud. */
static void start_sim(void)
{
	char b0[16], b1[16];
	const char *args[] = {"--board", b0, "--board", b1, "--baud", "19200", NULL};
	int rc;

	snprintf(b0, sizeof(b0), "%d:%d", addr_of[P][0], LOCKS);
	snprintf(b1, sizeof(b1), "%d:%d", addr_of[P][1], LOCKS);
	rc = cw_test_sim_start(proto_name[P], args, &sim);
	ck_assert_msg(rc == CW_OK, "cartwise-simlock did not start: %s", cw_strerror(rc));
}

static void make_cfg(struct cw_bus_config *c)
{
	cw_bus_config_defaults(c);
	snprintf(c->name, sizeof(c->name), "bus-%s", proto_name[P]);
	snprintf(c->port, sizeof(c->port), "%s", cw_test_sim_link(sim));
	c->protocol = P == 0 ? CW_PROTO_MODBUS : CW_PROTO_KERONG;
	c->poll_interval_ms = 10;
	c->confirm_timeout_ms = 500;
	c->offline_backoff_max_ms = 400;
	c->nboards = 2;
	for (int i = 0; i < 2; i++) {
		cw_board_config_defaults(&c->boards[i], addr_of[P][i], LOCKS);
		c->boards[i].pulse_ms = 100;
	}
}

static void start_bus(void)
{
	struct cw_bus_config c;
	make_cfg(&c);
	ck_assert_int_eq(cw_bus_new(&c, on_event, NULL, &bus), CW_OK);
	ck_assert(wait_count(&E.status[0], 1, 3000));
	ck_assert(wait_count(&E.status[1], 1, 3000));
}

static void setup(void)
{
	memset(E.status, 0, sizeof(E.status));
	memset(E.offline, 0, sizeof(E.offline));
	memset(E.online, 0, sizeof(E.online));
	sim = NULL;
	bus = NULL;
	errors_at_start = cw_log_error_count();
}

static void teardown(void)
{
	cw_bus_free(bus);
	bus = NULL;
	cw_test_sim_stop(sim);
	sim = NULL;
}

static void sim_ok(const char *cmd)
{
	char ans[256];
	int rc = cw_test_sim_cmd(sim, ans, sizeof(ans), "%s", cmd);
	ck_assert_msg(rc == CW_OK, "simulator: '%s' answered '%s' (%s)", cmd, ans, cw_strerror(rc));
}

/* The simulator's own view of a board: "ok hook=0x.. present=0x..". */
static void sim_board(int bi, uint32_t *hook, uint32_t *present)
{
	char ans[256];
	unsigned h = 0, p = 0;
	ck_assert_int_eq(cw_test_sim_cmd(sim, ans, sizeof(ans), "board %d", addr_of[P][bi]), CW_OK);
	ck_assert_msg(sscanf(ans, "ok hook=0x%x present=0x%x", &h, &p) == 2, "answer '%s'", ans);
	*hook = h;
	*present = p;
}

/* Waits until the bus reports the simulator's current state of board bi. */
static bool bus_matches_sim(int bi, int ms)
{
	uint32_t h, p;
	struct cw_board_status st;
	int64_t end = cw_mono_ms() + ms;

	sim_board(bi, &h, &p);
	while (cw_mono_ms() < end) {
		if (cw_bus_board_status(bus, bi, &st) == CW_OK && st.hook_closed == h && st.present == p)
			return true;
		cw_sleep_ms(5);
	}
	return false;
}

static void no_error_logged(void)
{
	ck_assert_uint_eq(cw_log_error_count(), errors_at_start);
}

START_TEST(status_matches_simulator)
{
	struct cw_board_status st;
	uint32_t h, p;

	P = _i;
	start_sim();
	start_bus();
	sim_board(0, &h, &p);
	ck_assert_uint_eq(h, 0xffff); /* initial state: all closed, all present */
	ck_assert_uint_eq(p, 0xffff);
	ck_assert_int_eq(cw_bus_board_status(bus, 0, &st), CW_OK);
	ck_assert_uint_eq(st.hook_closed, 0xffff);
	ck_assert_uint_eq(st.present, 0xffff);
	sim_ok(P == 0 ? "empty 2 3" : "empty 1 3");
	sim_ok(P == 0 ? "empty 2 15" : "empty 1 15");
	ck_assert(bus_matches_sim(1, 2000));
	ck_assert_int_eq(cw_bus_board_status(bus, 1, &st), CW_OK);
	ck_assert_uint_eq(st.present, 0xffff & ~(1u << 3) & ~(1u << 15));
	ck_assert_uint_eq(st.hook_closed, 0xffff & ~(1u << 3) & ~(1u << 15));
	ck_assert(bus_matches_sim(0, 2000));
	no_error_logged();
}
END_TEST

START_TEST(unlock_take_dock)
{
	struct cw_lock_counters k;
	struct cw_board_status st;
	char ans[256], cmd[64];
	int64_t lat = -1;
	int a;

	P = _i;
	a = addr_of[P][0];
	start_sim();
	start_bus();
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 2, &lat), CW_OK);
	ck_assert_int_ge(lat, 1);
	ck_assert_int_eq(cw_test_sim_cmd(sim, ans, sizeof(ans), "state %d 2", a), CW_OK);
	ck_assert_msg(strstr(ans, "hook=open") && strstr(ans, "releases=1"), "state: %s", ans);
	ck_assert_int_eq(cw_bus_board_status(bus, 0, &st), CW_OK);
	ck_assert_uint_eq(st.hook_closed & (1u << 2), 0);
	ck_assert_uint_ne(st.present & (1u << 2), 0);

	/* the customer takes the cart: present clears */
	snprintf(cmd, sizeof(cmd), "take %d 2", a);
	sim_ok(cmd);
	ck_assert(bus_matches_sim(0, 2000));
	ck_assert_int_eq(cw_bus_board_status(bus, 0, &st), CW_OK);
	ck_assert_uint_eq(st.present & (1u << 2), 0);
	/* and docks one back: closed + present */
	snprintf(cmd, sizeof(cmd), "dock %d 2", a);
	sim_ok(cmd);
	ck_assert(bus_matches_sim(0, 2000));
	ck_assert_int_eq(cw_bus_board_status(bus, 0, &st), CW_OK);
	ck_assert_uint_ne(st.present & (1u << 2), 0);
	ck_assert_uint_ne(st.hook_closed & (1u << 2), 0);

	ck_assert_int_eq(cw_bus_lock_counters(bus, 0, 2, &k), CW_OK);
	ck_assert_uint_eq(k.releases, 1);
	ck_assert_uint_eq(k.release_failures, 0);
	/* hook open, cart out, cart in + hook closed */
	ck_assert_uint_eq(k.sensor_changes, 4);
	no_error_logged();
}
END_TEST

static int cmp64(const void *x, const void *y)
{
	int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
	return a < b ? -1 : a > b;
}

/* Informal figures at 19200 baud, paced (the benchmarks are in bench/). */
START_TEST(figures_latency_and_polls)
{
	int64_t lat[16];
	struct cw_bus_stats s0, s1;
	int64_t t0, t1;
	struct cw_bus_config c;
	char cmd[64];

	P = _i;
	start_sim();
	make_cfg(&c);
	c.poll_interval_ms = 0;
	ck_assert_int_eq(cw_bus_new(&c, on_event, NULL, &bus), CW_OK);
	ck_assert(wait_count(&E.status[1], 2, 3000));
	cw_bus_stats(bus, &s0);
	t0 = cw_mono_ms();
	cw_sleep_ms(1000);
	cw_bus_stats(bus, &s1);
	t1 = cw_mono_ms();
	for (int i = 0; i < 16; i++) {
		ck_assert_int_eq(cw_bus_unlock(bus, i % 2, i, &lat[i]), CW_OK);
		snprintf(cmd, sizeof(cmd), "empty %d %d", addr_of[P][i % 2], i);
		sim_ok(cmd);
		/* requests arrive at any point of a poll on the wire */
		cw_sleep_ms((i * 7) % 13);
	}
	qsort(lat, 16, sizeof(lat[0]), cmp64);
	fprintf(stderr,
		"figures protocol=%s baud=19200 paced polls_per_s=%.1f unlock_ms_p50=%lld "
		"unlock_ms_max=%lld\n",
		proto_name[P], (double)(s1.polls - s0.polls) * 1000.0 / (double)(t1 - t0),
		(long long)lat[8], (long long)lat[15]);
	/* a release + one status read + at most one poll ahead of it */
	ck_assert_int_lt(lat[8], 60);
	ck_assert_uint_gt(s1.polls - s0.polls, 40);
	no_error_logged();
}
END_TEST

START_TEST(silent_board_offline_then_online)
{
	struct cw_board_status st;
	char cmd[64];
	int64_t lat = 0;
	int st1;

	P = _i;
	start_sim();
	start_bus();
	snprintf(cmd, sizeof(cmd), "fault silent %d on", addr_of[P][0]);
	sim_ok(cmd);
	ck_assert(wait_count(&E.offline[0], 1, 3000));
	ck_assert_int_eq(cw_bus_board_status(bus, 0, &st), CW_ERR_OFFLINE);
	/* the other board is still polled */
	st1 = ev_count(&E.status[1]);
	ck_assert(wait_count(&E.status[1], st1 + 5, 1000));
	ck_assert_int_eq(ev_count(&E.offline[1]), 0);
	/* unlock on the offline board: fast failure, never success */
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 0, &lat), CW_ERR_OFFLINE);
	ck_assert_int_lt(lat, 400);
	snprintf(cmd, sizeof(cmd), "fault silent %d off", addr_of[P][0]);
	sim_ok(cmd);
	ck_assert(wait_count(&E.online[0], 1, 3000));
	ck_assert(bus_matches_sim(0, 2000));
	no_error_logged();
}
END_TEST

START_TEST(crc_fault_counts_errors_and_goes_offline)
{
	struct cw_bus_stats s;
	char cmd[64];

	P = _i;
	start_sim();
	start_bus();
	snprintf(cmd, sizeof(cmd), "fault crc %d on", addr_of[P][1]);
	sim_ok(cmd);
	ck_assert(wait_count(&E.offline[1], 1, 3000));
	cw_bus_stats(bus, &s);
	ck_assert_uint_ge(s.proto_errors, 6); /* 3 polls x (1 + 1 retry) */
	ck_assert_int_eq(s.boards_online, 1);
	ck_assert_int_eq(ev_count(&E.offline[0]), 0);
	snprintf(cmd, sizeof(cmd), "fault crc %d off", addr_of[P][1]);
	sim_ok(cmd);
	ck_assert(wait_count(&E.online[1], 1, 3000));
	no_error_logged();
}
END_TEST

START_TEST(stuck_lock_is_fault)
{
	struct cw_lock_counters k;
	char cmd[64];
	int64_t lat = 0;

	P = _i;
	start_sim();
	start_bus();
	snprintf(cmd, sizeof(cmd), "fault stuck %d 4 on", addr_of[P][0]);
	sim_ok(cmd);
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 4, &lat), CW_ERR_FAULT);
	ck_assert_int_ge(lat, 500);
	ck_assert_int_eq(cw_bus_lock_counters(bus, 0, 4, &k), CW_OK);
	ck_assert_uint_eq(k.release_failures, 1);
	ck_assert_str_eq(k.last_fault, "release not confirmed");
	/* the board answered all along */
	ck_assert_int_eq(ev_count(&E.offline[0]), 0);
	snprintf(cmd, sizeof(cmd), "fault stuck %d 4 off", addr_of[P][0]);
	sim_ok(cmd);
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 4, &lat), CW_OK);
	no_error_logged();
}
END_TEST

START_TEST(slow_board_beyond_timeout_is_silent)
{
	char cmd[64];

	P = _i;
	start_sim();
	start_bus();
	/* a little slow is fine: 20 ms within the 50 ms response timeout */
	snprintf(cmd, sizeof(cmd), "fault slow %d 20", addr_of[P][1]);
	sim_ok(cmd);
	cw_sleep_ms(500);
	ck_assert_int_eq(ev_count(&E.offline[1]), 0);
	/* beyond the timeout: no answer */
	snprintf(cmd, sizeof(cmd), "fault slow %d 150", addr_of[P][1]);
	sim_ok(cmd);
	ck_assert(wait_count(&E.offline[1], 1, 5000));
	snprintf(cmd, sizeof(cmd), "fault slow %d 0", addr_of[P][1]);
	sim_ok(cmd);
	ck_assert(wait_count(&E.online[1], 1, 5000));
	ck_assert(bus_matches_sim(1, 2000));
	ck_assert(bus_matches_sim(0, 2000));
	no_error_logged();
}
END_TEST

START_TEST(duplicate_address_scan_reports_garbled)
{
	struct cw_scan_result r[8];
	char cmd[64];
	int n, first = addr_of[P = _i][0], last = addr_of[P][1] + 1;

	start_sim();
	start_bus();
	n = cw_bus_scan(bus, first, last, r, 8);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(r[0].address, addr_of[P][0]);
	ck_assert_int_eq(r[0].result, CW_OK);
	ck_assert_int_eq(r[1].address, addr_of[P][1]);
	ck_assert_int_eq(r[1].result, CW_OK);
	snprintf(cmd, sizeof(cmd), "fault dup %d on", addr_of[P][0]);
	sim_ok(cmd);
	n = cw_bus_scan(bus, first, last, r, 8);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(r[0].address, addr_of[P][0]);
	ck_assert_int_eq(r[0].result, CW_ERR_PROTO);
	ck_assert_int_eq(r[1].address, addr_of[P][1]);
	ck_assert_int_eq(r[1].result, CW_OK);
	no_error_logged();
}
END_TEST

START_TEST(leading_zero_byte_tolerated)
{
	struct cw_bus_stats s0, s1;
	int64_t lat;
	int st0;

	P = _i;
	start_sim();
	start_bus();
	sim_ok("fault zero on");
	cw_sleep_ms(50);
	cw_bus_stats(bus, &s0);
	st0 = ev_count(&E.status[0]);
	ck_assert(wait_count(&E.status[0], st0 + 5, 2000));
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 7, &lat), CW_OK);
	ck_assert(bus_matches_sim(0, 2000));
	cw_bus_stats(bus, &s1);
	ck_assert_uint_eq(s1.proto_errors, s0.proto_errors);
	ck_assert_uint_eq(s1.timeouts, s0.timeouts);
	ck_assert_int_eq(ev_count(&E.offline[0]), 0);
	sim_ok("fault zero off");
	no_error_logged();
}
END_TEST

START_TEST(missing_port_is_io_error)
{
	struct cw_bus_config c;
	struct cw_bus *b = NULL;

	cw_bus_config_defaults(&c);
	snprintf(c.name, sizeof(c.name), "nobus");
	snprintf(c.port, sizeof(c.port), "/nonexistent/ttyUSB9");
	c.protocol = _i == 0 ? CW_PROTO_MODBUS : CW_PROTO_KERONG;
	c.nboards = 1;
	cw_board_config_defaults(&c.boards[0], 1, 16);
	ck_assert_int_eq(cw_bus_new(&c, NULL, NULL, &b), CW_ERR_IO);
	ck_assert_ptr_null(b);
	/* not a tty */
	snprintf(c.port, sizeof(c.port), "/dev/null");
	ck_assert_int_eq(cw_bus_new(&c, NULL, NULL, &b), CW_ERR_IO);
	ck_assert_uint_eq(cw_log_error_count(), errors_at_start + 2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("drivers");
	TCase *tc = tcase_create("simlock");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, status_matches_simulator, 0, 2);
	tcase_add_loop_test(tc, unlock_take_dock, 0, 2);
	tcase_add_loop_test(tc, figures_latency_and_polls, 0, 2);
	tcase_add_loop_test(tc, silent_board_offline_then_online, 0, 2);
	tcase_add_loop_test(tc, crc_fault_counts_errors_and_goes_offline, 0, 2);
	tcase_add_loop_test(tc, stuck_lock_is_fault, 0, 2);
	tcase_add_loop_test(tc, slow_board_beyond_timeout_is_silent, 0, 2);
	tcase_add_loop_test(tc, duplicate_address_scan_reports_garbled, 0, 2);
	tcase_add_loop_test(tc, leading_zero_byte_tolerated, 0, 2);
	tcase_add_loop_test(tc, missing_port_is_io_error, 0, 2);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
