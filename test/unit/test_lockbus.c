/* test_lockbus.c - the bus worker with a fake driver (no serial port).
 *
 * The fake driver keeps each board's sensor bits in memory and takes a
 * configurable "wire time" per transaction, so the scheduling of the worker
 * (priorities, round robin, offline backoff, shutdown) can be measured. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_lockbus.h"
#include "cw_log.h"

#define NB CW_MAX_BOARDS_PER_BUS
#define MAX_LOG 4096

enum fop { F_READ, F_RELEASE, F_END, F_PROBE };

struct fboard {
	uint32_t hook, present;
	bool silent, garbled;
	uint32_t stuck; /* locks whose hook never opens */
	int reads, releases, ends;
	int64_t read_ms[MAX_LOG];
	int nread_ms;
	int64_t release_ms, end_ms;
};

static struct {
	pthread_mutex_t mu;
	struct fboard b[NB];
	int op_us;      /* wire time of one transaction */
	int timeout_us; /* what a silent board costs */
	int seq;        /* transactions started */
	int release_seq;
	int probe[256]; /* 0 timeout, 1 ok, 2 garbled */
	enum fop log_op[MAX_LOG];
	int log_board[MAX_LOG];
	int open_rc;
	bool hang;    /* board 3's read_status blocks while set (a stuck serial call) */
	bool in_hang; /* the worker is blocked in it */
} F = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Board i answers on address i + 1. */
static int bidx(const struct cw_board_config *b)
{
	return b->address - 1;
}

static void fake_reset(void)
{
	pthread_mutex_lock(&F.mu);
	memset(F.b, 0, sizeof(F.b));
	for (int i = 0; i < NB; i++) {
		F.b[i].hook = 0xffff;
		F.b[i].present = 0xffff;
	}
	F.op_us = 1000;
	F.timeout_us = 20000;
	F.seq = 0;
	F.release_seq = -1;
	memset(F.probe, 0, sizeof(F.probe));
	F.open_rc = CW_OK;
	F.hang = false;
	F.in_hang = false;
	pthread_mutex_unlock(&F.mu);
}

static void log_op(enum fop op, int board)
{
	if (F.seq < MAX_LOG) {
		F.log_op[F.seq] = op;
		F.log_board[F.seq] = board;
	}
	F.seq++;
}

struct cw_lockdrv {
	int dummy;
};
static struct cw_lockdrv fake_handle;

static int f_open(const struct cw_bus_config *cfg, struct cw_lockdrv **out)
{
	(void)cfg;
	*out = F.open_rc == CW_OK ? &fake_handle : NULL;
	return F.open_rc;
}

static void f_close(struct cw_lockdrv *d)
{
	(void)d;
}

/* Common failure behaviour: silent boards cost a timeout, garbled ones a
 * transaction. Returns 0 when the board answers cleanly. */
static int f_fail(int bi)
{
	bool silent = F.b[bi].silent, garbled = F.b[bi].garbled;
	pthread_mutex_unlock(&F.mu);
	if (silent) {
		usleep((useconds_t)F.timeout_us);
		return CW_ERR_TIMEOUT;
	}
	usleep((useconds_t)F.op_us);
	return garbled ? CW_ERR_PROTO : CW_OK;
}

static int f_read(struct cw_lockdrv *d, const struct cw_board_config *b, struct cw_board_status *o)
{
	int bi = bidx(b), rc;
	(void)d;
	pthread_mutex_lock(&F.mu);
	while (F.hang && bi == 2) {
		F.in_hang = true;
		pthread_mutex_unlock(&F.mu);
		cw_sleep_ms(5);
		pthread_mutex_lock(&F.mu);
	}
	F.in_hang = false;
	log_op(F_READ, bi);
	if (F.b[bi].nread_ms < MAX_LOG)
		F.b[bi].read_ms[F.b[bi].nread_ms++] = cw_mono_ms();
	o->hook_closed = F.b[bi].hook;
	o->present = F.b[bi].present;
	rc = f_fail(bi); /* unlocks F.mu */
	if (rc == CW_OK) {
		pthread_mutex_lock(&F.mu);
		F.b[bi].reads++;
		pthread_mutex_unlock(&F.mu);
	}
	return rc;
}

static int f_start(struct cw_lockdrv *d, const struct cw_board_config *b, int lock, int64_t *pe)
{
	int bi = bidx(b), rc;
	(void)d;
	pthread_mutex_lock(&F.mu);
	log_op(F_RELEASE, bi);
	F.release_seq = F.seq - 1;
	/* the pulse starts now: pe and release_ms from the same instant, not
	 * release_ms after the simulated wire time (which a slow machine or
	 * qemu stretches, making the pulse look shorter than it was) */
	F.b[bi].release_ms = cw_mono_ms();
	*pe = b->pulse_ms > 0 ? F.b[bi].release_ms + b->pulse_ms : 0;
	if (!F.b[bi].silent && !(F.b[bi].stuck & (1u << lock)))
		F.b[bi].hook &= ~(1u << lock);
	rc = f_fail(bi);
	pthread_mutex_lock(&F.mu);
	F.b[bi].releases++;
	pthread_mutex_unlock(&F.mu);
	return rc;
}

static int f_end(struct cw_lockdrv *d, const struct cw_board_config *b, int lock)
{
	int bi = bidx(b);
	(void)d;
	(void)lock;
	pthread_mutex_lock(&F.mu);
	log_op(F_END, bi);
	F.b[bi].ends++;
	F.b[bi].end_ms = cw_mono_ms();
	return f_fail(bi);
}

static int f_probe(struct cw_lockdrv *d, int address)
{
	int r;
	(void)d;
	pthread_mutex_lock(&F.mu);
	log_op(F_PROBE, address);
	r = address >= 0 && address < 256 ? F.probe[address] : 0;
	pthread_mutex_unlock(&F.mu);
	usleep((useconds_t)F.op_us);
	return r == 1 ? CW_OK : r == 2 ? CW_ERR_PROTO : CW_ERR_TIMEOUT;
}

static const struct cw_lockdrv_ops fake_ops = {
	.name = "fake",
	.open = f_open,
	.close = f_close,
	.read_status = f_read,
	.start_release = f_start,
	.end_release = f_end,
	.probe = f_probe,
};

/* ---- events ---- */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int status[NB], offline[NB], online[NB];
	int64_t offline_ms[NB], online_ms[NB];
	struct cw_board_status online_st[NB];
} E = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void on_event(struct cw_bus *bus, const struct cw_bus_event *ev, void *ud)
{
	(void)bus;
	(void)ud;
	pthread_mutex_lock(&E.mu);
	switch (ev->kind) {
	case CW_BUS_EV_STATUS:
		E.status[ev->board_index]++;
		break;
	case CW_BUS_EV_OFFLINE:
		E.offline[ev->board_index]++;
		E.offline_ms[ev->board_index] = cw_mono_ms();
		break;
	case CW_BUS_EV_ONLINE:
		E.online[ev->board_index]++;
		E.online_ms[ev->board_index] = cw_mono_ms();
		E.online_st[ev->board_index] = ev->status;
		break;
	}
	pthread_cond_broadcast(&E.cv);
	pthread_mutex_unlock(&E.mu);
}

/* Waits until *counter >= n, at most ms. */
static bool wait_event(int *counter, int n, int ms)
{
	int64_t end = cw_mono_ms() + ms;
	bool ok;
	pthread_mutex_lock(&E.mu);
	while (*counter < n && cw_mono_ms() < end) {
		pthread_mutex_unlock(&E.mu);
		cw_sleep_ms(2);
		pthread_mutex_lock(&E.mu);
	}
	ok = *counter >= n;
	pthread_mutex_unlock(&E.mu);
	return ok;
}

static int reads_of(int bi)
{
	int n;
	pthread_mutex_lock(&F.mu);
	n = F.b[bi].reads;
	pthread_mutex_unlock(&F.mu);
	return n;
}

static void make_cfg(struct cw_bus_config *c, int nboards, int locks)
{
	cw_bus_config_defaults(c);
	snprintf(c->name, sizeof(c->name), "fakebus");
	snprintf(c->port, sizeof(c->port), "/dev/null");
	c->response_timeout_ms = 20;
	c->poll_interval_ms = 0;
	c->confirm_timeout_ms = 500;
	c->nboards = nboards;
	for (int i = 0; i < nboards; i++) {
		cw_board_config_defaults(&c->boards[i], i + 1, locks);
		c->boards[i].pulse_ms = 100;
	}
}

static struct cw_bus *start_bus(const struct cw_bus_config *c)
{
	struct cw_bus *bus = NULL;
	ck_assert_int_eq(cw_bus_new_with_driver(c, &fake_ops, on_event, NULL, &bus), CW_OK);
	ck_assert_ptr_nonnull(bus);
	return bus;
}

static unsigned long errors_at_start;

static void setup(void)
{
	fake_reset();
	pthread_mutex_lock(&E.mu);
	memset(E.status, 0, sizeof(E.status));
	memset(E.offline, 0, sizeof(E.offline));
	memset(E.online, 0, sizeof(E.online));
	pthread_mutex_unlock(&E.mu);
	errors_at_start = cw_log_error_count();
}

static void no_error_logged(void)
{
	ck_assert_uint_eq(cw_log_error_count(), errors_at_start);
}

/* ---- tests ---- */

START_TEST(defaults_and_names)
{
	struct cw_bus_config c;
	struct cw_board_config b;
	enum cw_protocol p;

	cw_bus_config_defaults(&c);
	ck_assert_int_eq(c.baud, 19200);
	ck_assert_int_eq(c.parity, 'N');
	ck_assert_int_eq(c.response_timeout_ms, 50);
	ck_assert_int_eq(c.retries, 1);
	ck_assert_int_eq(c.inter_frame_gap_ms, 2);
	ck_assert_int_eq(c.confirm_timeout_ms, 2000);
	ck_assert_int_eq(c.offline_after, 3);
	ck_assert_int_eq(c.offline_backoff_max_ms, 5000);
	ck_assert_int_eq(c.nboards, 0);
	cw_board_config_defaults(&b, 3, 16);
	ck_assert_int_eq(b.address, 3);
	ck_assert_int_eq(b.pulse_ms, 500);
	ck_assert(b.has_present_sensor);
	ck_assert_int_eq(b.coil_base, 0);
	ck_assert_int_eq(b.hook_input_base, 0);
	ck_assert_int_eq(b.present_input_base, 16);

	ck_assert_int_eq(cw_protocol_parse("modbus", &p), CW_OK);
	ck_assert_int_eq(p, CW_PROTO_MODBUS);
	ck_assert_int_eq(cw_protocol_parse("kerong", &p), CW_OK);
	ck_assert_int_eq(p, CW_PROTO_KERONG);
	ck_assert_int_eq(cw_protocol_parse("Kerong ", &p), CW_ERR_INVAL);
	ck_assert_int_eq(cw_protocol_parse(NULL, &p), CW_ERR_INVAL);
	ck_assert_str_eq(cw_protocol_name(CW_PROTO_MODBUS), "modbus");
	ck_assert_str_eq(cw_protocol_name(CW_PROTO_KERONG), "kerong");
	ck_assert_ptr_eq(cw_lockdrv_find(CW_PROTO_MODBUS), &cw_lockdrv_modbus);
	ck_assert_ptr_eq(cw_lockdrv_find(CW_PROTO_KERONG), &cw_lockdrv_kerong);
	ck_assert_str_eq(cw_lockdrv_find(CW_PROTO_KERONG)->name, "kerong");
	cw_bus_free(NULL);
}
END_TEST

START_TEST(bad_config_and_open_failure)
{
	struct cw_bus_config c;
	struct cw_bus *bus = (struct cw_bus *)&c;

	make_cfg(&c, 1, 16);
	c.boards[0].locks = 0;
	ck_assert_int_eq(cw_bus_new_with_driver(&c, &fake_ops, NULL, NULL, &bus), CW_ERR_CONFIG);
	ck_assert_ptr_null(bus);
	make_cfg(&c, 1, 16);
	c.response_timeout_ms = 0;
	ck_assert_int_eq(cw_bus_new_with_driver(&c, &fake_ops, NULL, NULL, &bus), CW_ERR_CONFIG);
	make_cfg(&c, 1, 16);
	c.boards[0].address = 0; /* Modbus broadcast, not a board */
	ck_assert_int_eq(cw_bus_new_with_driver(&c, &fake_ops, NULL, NULL, &bus), CW_ERR_CONFIG);
	c.protocol = CW_PROTO_KERONG;
	c.boards[0].address = 16; /* Kerong boards are 0-15 */
	ck_assert_int_eq(cw_bus_new_with_driver(&c, &fake_ops, NULL, NULL, &bus), CW_ERR_CONFIG);
	make_cfg(&c, 1, 16);
	F.open_rc = CW_ERR_IO;
	ck_assert_int_eq(cw_bus_new_with_driver(&c, &fake_ops, NULL, NULL, &bus), CW_ERR_IO);
	ck_assert_ptr_null(bus);
	/* all logged at error level: the daemon cannot run that bus */
	ck_assert_uint_eq(cw_log_error_count(), errors_at_start + 5);
}
END_TEST

START_TEST(round_robin_status_events)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	struct cw_board_status st;
	struct cw_bus_stats s;
	int r[3];

	make_cfg(&c, 3, 16);
	pthread_mutex_lock(&F.mu);
	F.b[1].hook = 0x00f0;
	F.b[1].present = 0x0f0f;
	pthread_mutex_unlock(&F.mu);
	bus = start_bus(&c);
	ck_assert(wait_event(&E.status[2], 20, 2000));
	cw_bus_free(bus);
	for (int i = 0; i < 3; i++)
		r[i] = reads_of(i);
	/* fair round robin: every board read, none more than one round ahead */
	for (int i = 1; i < 3; i++)
		ck_assert_int_le(abs(r[i] - r[0]), 1);
	ck_assert_int_eq(E.status[0] + E.status[1] + E.status[2], r[0] + r[1] + r[2]);

	bus = start_bus(&c);
	ck_assert(wait_event(&E.status[1], E.status[1] + 1, 2000));
	ck_assert_int_eq(cw_bus_board_status(bus, 1, &st), CW_OK);
	ck_assert_uint_eq(st.hook_closed, 0x00f0);
	ck_assert_uint_eq(st.present, 0x0f0f);
	ck_assert_int_eq(cw_bus_board_status(bus, 3, &st), CW_ERR_NOTFOUND);
	cw_bus_stats(bus, &s);
	ck_assert_int_eq(s.boards_online, 3);
	ck_assert_uint_ge(s.polls, 1);
	ck_assert_uint_ge(s.transactions, s.polls);
	ck_assert_uint_eq(s.timeouts, 0);
	ck_assert_str_eq(cw_bus_config_of(bus)->name, "fakebus");
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

START_TEST(unlock_confirmed_and_pulse_ended)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	struct cw_lock_counters k;
	struct cw_board_status st;
	int64_t lat = -1;
	int reads_other;

	make_cfg(&c, 2, 16);
	c.boards[0].pulse_ms = 200;
	bus = start_bus(&c);
	ck_assert(wait_event(&E.status[1], 2, 2000));
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 5, &lat), CW_OK);
	ck_assert_int_ge(lat, 0);
	ck_assert_int_lt(lat, 150);
	ck_assert_int_eq(cw_bus_board_status(bus, 0, &st), CW_OK);
	ck_assert_uint_eq(st.hook_closed & (1u << 5), 0);
	ck_assert_int_eq(cw_bus_lock_counters(bus, 0, 5, &k), CW_OK);
	ck_assert_uint_eq(k.releases, 1);
	ck_assert_uint_eq(k.release_failures, 0);
	ck_assert_str_eq(k.last_fault, "");
	/* the hook bit flipped: one sensor change */
	ck_assert_uint_eq(k.sensor_changes, 1);
	/* the worker keeps polling while the relay is energised */
	reads_other = reads_of(1);
	cw_sleep_ms(100);
	ck_assert_int_gt(reads_of(1), reads_other + 10);
	pthread_mutex_lock(&F.mu);
	ck_assert_int_eq(F.b[0].ends, 0);
	pthread_mutex_unlock(&F.mu);
	cw_sleep_ms(200);
	pthread_mutex_lock(&F.mu);
	ck_assert_int_eq(F.b[0].ends, 1);
	ck_assert_int_ge(F.b[0].end_ms - F.b[0].release_ms, 200); /* never early */
	ck_assert_int_le(F.b[0].end_ms - F.b[0].release_ms, 260);
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(cw_bus_unlock(bus, 2, 0, NULL), CW_ERR_NOTFOUND);
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 16, NULL), CW_ERR_NOTFOUND);
	ck_assert_int_eq(cw_bus_unlock(bus, -1, 0, NULL), CW_ERR_NOTFOUND);
	ck_assert_int_eq(cw_bus_lock_counters(bus, 0, 16, &k), CW_ERR_NOTFOUND);
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

START_TEST(unlock_preempts_polls)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	int s0, rs;
	int64_t lat;

	make_cfg(&c, 16, 16);
	F.op_us = 3000; /* 16 boards x 3 ms: a round takes ~48 ms */
	bus = start_bus(&c);
	ck_assert(wait_event(&E.status[15], 2, 3000));
	for (int round = 0; round < 5; round++) {
		int board = (round * 7) % 16;
		pthread_mutex_lock(&F.mu);
		s0 = F.seq;
		F.b[board].hook = 0xffff;
		pthread_mutex_unlock(&F.mu);
		ck_assert_int_eq(cw_bus_unlock(bus, board, round, &lat), CW_OK);
		pthread_mutex_lock(&F.mu);
		rs = F.release_seq;
		/* at most the poll on the wire and one that started meanwhile */
		ck_assert_int_le(rs - s0, 2);
		/* and the very next transaction reads that board */
		ck_assert_int_eq(F.log_op[rs + 1], F_READ);
		ck_assert_int_eq(F.log_board[rs + 1], board);
		pthread_mutex_unlock(&F.mu);
		/* release + confirming read + at most one poll ahead, not a round */
		ck_assert_int_lt(lat, 40);
		cw_sleep_ms(7);
	}
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

START_TEST(unconfirmed_release_is_fault)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	struct cw_lock_counters k;
	int64_t lat = 0, t0;
	int other0;

	make_cfg(&c, 3, 16);
	c.confirm_timeout_ms = 300;
	F.op_us = 2000;
	pthread_mutex_lock(&F.mu);
	F.b[0].stuck = 1u << 3;
	pthread_mutex_unlock(&F.mu);
	bus = start_bus(&c);
	ck_assert(wait_event(&E.status[2], 1, 2000));
	other0 = reads_of(1) + reads_of(2);
	t0 = cw_mono_ms();
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 3, &lat), CW_ERR_FAULT);
	ck_assert_int_ge(lat, 300);
	ck_assert_int_lt(cw_mono_ms() - t0, 600);
	/* the confirmation polls took turns with the other boards' polls */
	ck_assert_int_gt(reads_of(1) + reads_of(2) - other0, 30);
	ck_assert_int_gt(reads_of(0), 30);
	ck_assert_int_eq(cw_bus_lock_counters(bus, 0, 3, &k), CW_OK);
	ck_assert_uint_eq(k.releases, 0);
	ck_assert_uint_eq(k.release_failures, 1);
	ck_assert_str_eq(k.last_fault, "release not confirmed");
	ck_assert_int_gt(k.last_fault_wall_ms, 0);

	/* the cart taken out (present bit clears) confirms too, hook closed */
	pthread_mutex_lock(&F.mu);
	F.b[0].present &= ~(1u << 3);
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 3, &lat), CW_OK);
	ck_assert_int_eq(cw_bus_lock_counters(bus, 0, 3, &k), CW_OK);
	ck_assert_uint_eq(k.releases, 1);
	ck_assert_uint_eq(k.release_failures, 1);
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

START_TEST(no_reply_is_offline_never_success)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	struct cw_lock_counters k;
	struct cw_board_status st;
	int64_t lat = 0;
	int rel0;

	make_cfg(&c, 2, 16);
	c.offline_after = 5;
	bus = start_bus(&c);
	ck_assert(wait_event(&E.status[1], 1, 2000));
	pthread_mutex_lock(&F.mu);
	F.b[0].silent = true;
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 1, &lat), CW_ERR_OFFLINE);
	/* 1 + retries attempts of 20 ms */
	ck_assert_int_ge(lat, 40);
	ck_assert_int_lt(lat, 200);
	ck_assert_int_eq(cw_bus_lock_counters(bus, 0, 1, &k), CW_OK);
	ck_assert_uint_eq(k.releases, 0);
	ck_assert_uint_eq(k.release_failures, 1);
	ck_assert_str_eq(k.last_fault, "release not answered");

	/* once the board is offline: one attempt, fast */
	ck_assert(wait_event(&E.offline[0], 1, 3000));
	ck_assert_int_eq(cw_bus_board_status(bus, 0, &st), CW_ERR_OFFLINE);
	pthread_mutex_lock(&F.mu);
	rel0 = F.b[0].releases;
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 1, &lat), CW_ERR_OFFLINE);
	ck_assert_int_lt(lat, 70);
	pthread_mutex_lock(&F.mu);
	ck_assert_int_eq(F.b[0].releases, rel0 + 1);
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(cw_bus_lock_counters(bus, 0, 1, &k), CW_OK);
	ck_assert_uint_eq(k.release_failures, 2);
	ck_assert_str_eq(k.last_fault, "board offline");
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

static double healthy_rate(int nb, int ms)
{
	int before = 0, after = 0;
	int64_t t0, t1;

	for (int i = 0; i < nb; i++)
		before += reads_of(i);
	t0 = cw_mono_ms();
	cw_sleep_ms(ms);
	t1 = cw_mono_ms();
	for (int i = 0; i < nb; i++)
		after += reads_of(i);
	return (after - before) * 1000.0 / (double)(t1 - t0);
}

START_TEST(silent_board_offline_backoff_online)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	struct cw_board_status st;
	struct cw_bus_stats s;
	double base, degraded;
	int64_t t_off, t_on;
	int n0, n;
	int64_t gaps[8];

	make_cfg(&c, 4, 16);
	c.offline_backoff_max_ms = 1000;
	F.op_us = 2000;
	F.timeout_us = 20000;
	bus = start_bus(&c);
	ck_assert(wait_event(&E.status[3], 3, 2000));
	base = healthy_rate(3, 600);

	pthread_mutex_lock(&F.mu);
	F.b[3].silent = true;
	pthread_mutex_unlock(&F.mu);
	ck_assert(wait_event(&E.offline[3], 1, 2000));
	t_off = E.offline_ms[3];
	cw_bus_stats(bus, &s);
	ck_assert_int_eq(s.boards_online, 3);
	ck_assert_uint_ge(s.timeouts, 6); /* offline_after 3 x (1 + retries 1) */
	ck_assert_int_eq(cw_bus_board_status(bus, 3, &st), CW_ERR_OFFLINE);
	pthread_mutex_lock(&F.mu);
	n0 = F.b[3].nread_ms;
	pthread_mutex_unlock(&F.mu);

	/* the healthy boards keep (nearly) their rate: target <= 20 % cost */
	degraded = healthy_rate(3, 1200);
	ck_assert_msg(degraded >= 0.8 * base, "healthy polls/s %.0f with a silent board vs %.0f",
		      degraded, base);

	/* re-probes back off: 250, 500, 1000, 1000 (cap) ms */
	for (;;) {
		pthread_mutex_lock(&F.mu);
		n = F.b[3].nread_ms;
		pthread_mutex_unlock(&F.mu);
		if (n - n0 >= 4 || cw_mono_ms() - t_off > 5000)
			break;
		cw_sleep_ms(20);
	}
	ck_assert_int_ge(n - n0, 4);
	pthread_mutex_lock(&F.mu);
	gaps[0] = F.b[3].read_ms[n0] - t_off;
	for (int i = 1; i < 4; i++)
		gaps[i] = F.b[3].read_ms[n0 + i] - F.b[3].read_ms[n0 + i - 1];
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_ge(gaps[0], 240);
	ck_assert_int_le(gaps[0], 330);
	ck_assert_int_ge(gaps[1], 480);
	ck_assert_int_le(gaps[1], 600);
	ck_assert_int_ge(gaps[2], 980);
	ck_assert_int_le(gaps[2], 1100);
	ck_assert_int_ge(gaps[3], 980);
	ck_assert_int_le(gaps[3], 1100);

	/* back: ONLINE with the status, within one backoff period */
	pthread_mutex_lock(&F.mu);
	F.b[3].silent = false;
	F.b[3].present = 0x7fff;
	pthread_mutex_unlock(&F.mu);
	t_on = cw_mono_ms();
	ck_assert(wait_event(&E.online[3], 1, 1500));
	ck_assert_int_le(E.online_ms[3] - t_on, 1100);
	ck_assert_uint_eq(E.online_st[3].present, 0x7fff);
	ck_assert_uint_eq(E.online_st[3].hook_closed, 0xffff);
	ck_assert_int_eq(cw_bus_board_status(bus, 3, &st), CW_OK);
	ck_assert_uint_eq(st.present, 0x7fff);
	cw_bus_stats(bus, &s);
	ck_assert_int_eq(s.boards_online, 4);
	ck_assert_int_eq(E.offline[3], 1);
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

START_TEST(garbled_board_goes_offline)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	struct cw_bus_stats s;

	make_cfg(&c, 2, 8);
	bus = start_bus(&c);
	pthread_mutex_lock(&F.mu);
	F.b[1].garbled = true;
	pthread_mutex_unlock(&F.mu);
	ck_assert(wait_event(&E.offline[1], 1, 2000));
	cw_bus_stats(bus, &s);
	ck_assert_uint_ge(s.proto_errors, 6);
	ck_assert_int_eq(s.boards_online, 1);
	ck_assert_int_eq(E.offline[0], 0);
	pthread_mutex_lock(&F.mu);
	F.b[1].garbled = false;
	pthread_mutex_unlock(&F.mu);
	ck_assert(wait_event(&E.online[1], 1, 2000));
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

START_TEST(sensor_changes_counted)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	struct cw_lock_counters k;
	struct cw_board_status st;

	make_cfg(&c, 1, 16);
	c.poll_interval_ms = 5;
	bus = start_bus(&c);
	ck_assert(wait_event(&E.status[0], 1, 2000));
	/* a cart taken out of slot 2 ... */
	pthread_mutex_lock(&F.mu);
	F.b[0].present &= ~(1u << 2);
	pthread_mutex_unlock(&F.mu);
	ck_assert(wait_event(&E.status[0], E.status[0] + 2, 2000));
	ck_assert_int_eq(cw_bus_board_status(bus, 0, &st), CW_OK);
	ck_assert_uint_eq(st.present & (1u << 2), 0);
	/* ... and docked back: hook and present flip */
	pthread_mutex_lock(&F.mu);
	F.b[0].present |= 1u << 2;
	F.b[0].hook &= ~(1u << 2);
	pthread_mutex_unlock(&F.mu);
	ck_assert(wait_event(&E.status[0], E.status[0] + 2, 2000));
	ck_assert_int_eq(cw_bus_lock_counters(bus, 0, 2, &k), CW_OK);
	ck_assert_uint_eq(k.sensor_changes, 3);
	ck_assert_int_eq(cw_bus_lock_counters(bus, 0, 3, &k), CW_OK);
	ck_assert_uint_eq(k.sensor_changes, 0);
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

START_TEST(scan_lists_answering_and_garbled)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	struct cw_scan_result r[8];
	int n;

	make_cfg(&c, 1, 16);
	F.probe[1] = 1;
	F.probe[2] = 2;
	F.probe[5] = 1;
	bus = start_bus(&c);
	n = cw_bus_scan(bus, 1, 10, r, 8);
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(r[0].address, 1);
	ck_assert_int_eq(r[0].result, CW_OK);
	ck_assert_int_eq(r[1].address, 2);
	ck_assert_int_eq(r[1].result, CW_ERR_PROTO);
	ck_assert_int_eq(r[2].address, 5);
	ck_assert_int_eq(r[2].result, CW_OK);
	/* bounded by max */
	ck_assert_int_eq(cw_bus_scan(bus, 1, 10, r, 1), 1);
	ck_assert_int_eq(cw_bus_scan(bus, 10, 1, r, 8), CW_ERR_INVAL);
	/* polls went on between the probes */
	ck_assert_int_gt(reads_of(0), 3);
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

struct unlock_arg {
	struct cw_bus *bus;
	int board, lock, rc;
	int64_t lat;
};

static void *unlock_thread(void *p)
{
	struct unlock_arg *a = p;
	a->rc = cw_bus_unlock(a->bus, a->board, a->lock, &a->lat);
	return NULL;
}

START_TEST(shutdown_wakes_blocked_caller)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	struct unlock_arg a = {0};
	pthread_t th;
	int64_t t0;

	make_cfg(&c, 2, 16);
	c.confirm_timeout_ms = 10000;
	c.boards[0].pulse_ms = 5000;
	pthread_mutex_lock(&F.mu);
	F.b[0].stuck = 1u;
	pthread_mutex_unlock(&F.mu);
	bus = start_bus(&c);
	a.bus = bus;
	a.board = 0;
	a.lock = 0;
	a.rc = 12345;
	ck_assert_int_eq(pthread_create(&th, NULL, unlock_thread, &a), 0);
	for (int i = 0; i < 200; i++) {
		int rel;
		pthread_mutex_lock(&F.mu);
		rel = F.b[0].releases;
		pthread_mutex_unlock(&F.mu);
		if (rel)
			break;
		cw_sleep_ms(5);
	}
	cw_sleep_ms(50);
	t0 = cw_mono_ms();
	cw_bus_free(bus);
	ck_assert_int_lt(cw_mono_ms() - t0, 500);
	pthread_join(th, NULL);
	/* released but never confirmed: a fault, never success */
	ck_assert_int_eq(a.rc, CW_ERR_FAULT);
	/* the relay was switched off before the port closed */
	pthread_mutex_lock(&F.mu);
	ck_assert_int_eq(F.b[0].ends, 1);
	pthread_mutex_unlock(&F.mu);
	no_error_logged();
}
END_TEST

START_TEST(second_unlock_during_pulse)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	int64_t lat;

	make_cfg(&c, 1, 16);
	c.boards[0].pulse_ms = 300;
	bus = start_bus(&c);
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 0, &lat), CW_OK);
	ck_assert_int_eq(cw_bus_unlock(bus, 0, 1, &lat), CW_OK);
	ck_assert_int_lt(lat, 100); /* not queued behind the first pulse */
	cw_sleep_ms(400);
	pthread_mutex_lock(&F.mu);
	ck_assert_int_eq(F.b[0].ends, 2);
	pthread_mutex_unlock(&F.mu);
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

/* A relay board: every coil is switched off at the first contact and when
 * the board comes back (a coil left on by a process killed mid-pulse holds
 * its lock open, and the next release would not move it); not on every
 * poll. Boards without relays (the fake above, Kerong) get nothing. */
START_TEST(relays_switched_off_at_first_contact_and_online)
{
	struct cw_lockdrv_ops relay_ops = fake_ops;
	struct cw_bus_config c;
	struct cw_bus *bus = NULL;
	int ends;

	relay_ops.relays = true;
	make_cfg(&c, 2, 4);
	ck_assert_int_eq(cw_bus_new_with_driver(&c, &relay_ops, on_event, NULL, &bus), CW_OK);
	ck_assert(wait_event(&E.status[1], 3, 2000));
	cw_sleep_ms(50);
	pthread_mutex_lock(&F.mu);
	ck_assert_int_eq(F.b[0].ends, 4);
	ck_assert_int_eq(F.b[1].ends, 4);
	F.b[1].silent = true;
	pthread_mutex_unlock(&F.mu);
	ck_assert(wait_event(&E.offline[1], 1, 2000));
	pthread_mutex_lock(&F.mu);
	ends = F.b[1].ends;
	F.b[1].silent = false;
	pthread_mutex_unlock(&F.mu);
	ck_assert(wait_event(&E.online[1], 1, 3000));
	cw_sleep_ms(50);
	pthread_mutex_lock(&F.mu);
	ck_assert_int_eq(F.b[0].ends, 4);
	ck_assert_int_eq(F.b[1].ends, ends + 4);
	pthread_mutex_unlock(&F.mu);
	cw_bus_free(bus);
	/* the fake driver without relays: no switching off */
	setup();
	bus = start_bus(&c);
	ck_assert(wait_event(&E.status[1], 3, 2000));
	pthread_mutex_lock(&F.mu);
	ck_assert_int_eq(F.b[0].ends, 0);
	pthread_mutex_unlock(&F.mu);
	cw_bus_free(bus);
}
END_TEST

/* How old cw_bus_alive_ms is now. */
static int64_t alive_age(struct cw_bus *bus)
{
	return cw_mono_ms() - cw_bus_alive_ms(bus);
}

/* The daemon's watchdog (cw_bus_alive_ms): a worker that sleeps through a
 * long offline backoff is alive, one stuck in a driver call is not. Two
 * buses side by side: one whose boards (1, 2) are all offline in a 1 h
 * backoff, one whose board (3) never returns from its read. */
START_TEST(alive_in_backoff_not_when_stuck)
{
	struct cw_bus_config c, ch;
	struct cw_bus *bus, *hung;
	int64_t end, worst = 0;
	bool stuck = false;
	int n0;

	make_cfg(&c, 2, 16);
	c.offline_backoff_max_ms = 3600 * 1000;
	F.b[0].silent = F.b[1].silent = true;
	make_cfg(&ch, 1, 16);
	snprintf(ch.name, sizeof(ch.name), "hungbus");
	ch.boards[0].address = 3;
	F.hang = true;
	bus = start_bus(&c);
	hung = start_bus(&ch);
	ck_assert(wait_event(&E.offline[0], 1, 2000));
	ck_assert(wait_event(&E.offline[1], 1, 2000));
	/* re-probes 250, 500, 1000, 2000 ms apart: the worker mostly sleeps,
	 * more than CW_BUS_ALIVE_PERIOD_MS at a time from 1.75 s on */
	pthread_mutex_lock(&F.mu);
	n0 = F.b[0].nread_ms + F.b[1].nread_ms;
	stuck = F.in_hang;
	pthread_mutex_unlock(&F.mu);
	ck_assert(stuck);
	end = cw_mono_ms() + 3100;
	while (cw_mono_ms() < end) {
		int64_t age = alive_age(bus);
		if (age > worst)
			worst = age;
		cw_sleep_ms(20);
	}
	pthread_mutex_lock(&F.mu);
	ck_assert_int_le(F.b[0].nread_ms + F.b[1].nread_ms - n0, 2 * 3);
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_le(worst, CW_BUS_ALIVE_PERIOD_MS + 150);
	/* the hung one: no turn since its first read began */
	ck_assert_int_ge(alive_age(hung), 3000);
	pthread_mutex_lock(&F.mu);
	F.hang = false;
	pthread_mutex_unlock(&F.mu);
	ck_assert(wait_event(&E.status[0], 1, 1000)); /* board index 0 of its bus */
	cw_sleep_ms(50);
	ck_assert_int_le(alive_age(hung), 200);
	cw_bus_free(hung);
	cw_bus_free(bus);
	no_error_logged();
}
END_TEST

/* The watchdog's allowance for one turn of the worker (cw_bus_step_max_ms):
 * a silent board still online costs 1 + retries timeouts in one turn, and
 * the worker's turns stay within the allowance. */
START_TEST(step_max_covers_a_silent_board)
{
	struct cw_bus_config c;
	struct cw_bus *bus;
	int64_t end, worst = 0;

	cw_bus_config_defaults(&c);
	ck_assert_int_eq(cw_bus_step_max_ms(&c), 5 * (50 + 2));
	c.response_timeout_ms = 10000; /* the config's maxima */
	c.retries = 10;
	c.inter_frame_gap_ms = 1000;
	ck_assert_int_eq(cw_bus_step_max_ms(&c), 23 * 11000);

	make_cfg(&c, 1, 4);
	c.response_timeout_ms = 100;
	c.retries = 2;
	c.offline_after = 1000; /* stays online: every poll retries */
	pthread_mutex_lock(&F.mu);
	F.timeout_us = 100 * 1000;
	F.b[0].silent = true;
	pthread_mutex_unlock(&F.mu);
	bus = start_bus(&c);
	end = cw_mono_ms() + 1200;
	while (cw_mono_ms() < end) {
		int64_t age = cw_mono_ms() - cw_bus_alive_ms(bus);
		if (age > worst)
			worst = age;
		cw_sleep_ms(10);
	}
	cw_bus_free(bus);
	/* one turn really is three timeouts long, and it is allowed for */
	ck_assert_int_ge(worst, 250);
	ck_assert_int_le(worst, cw_bus_step_max_ms(&c));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("lockbus");
	TCase *tc = tcase_create("worker");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, defaults_and_names);
	tcase_add_test(tc, bad_config_and_open_failure);
	tcase_add_test(tc, round_robin_status_events);
	tcase_add_test(tc, unlock_confirmed_and_pulse_ended);
	tcase_add_test(tc, unlock_preempts_polls);
	tcase_add_test(tc, unconfirmed_release_is_fault);
	tcase_add_test(tc, no_reply_is_offline_never_success);
	tcase_add_test(tc, silent_board_offline_backoff_online);
	tcase_add_test(tc, garbled_board_goes_offline);
	tcase_add_test(tc, sensor_changes_counted);
	tcase_add_test(tc, scan_lists_answering_and_garbled);
	tcase_add_test(tc, shutdown_wakes_blocked_caller);
	tcase_add_test(tc, second_unlock_during_pulse);
	tcase_add_test(tc, relays_switched_off_at_first_contact_and_online);
	tcase_add_test(tc, alive_in_backoff_not_when_stuck);
	tcase_add_test(tc, step_max_covers_a_silent_board);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
