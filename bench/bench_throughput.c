/* bench_throughput.c - bus transactions per second against the wire ceiling,
 * and the cost of one silent board to the healthy ones.
 *
 * Drives libcwedge's bus worker directly against cartwise-simlock pacing its
 * bytes at the real baud rate. The worker polls continuously
 * (poll_interval_ms = 0; every other setting is the shipped default):
 *   1. 2 boards and 4 boards: transactions/s as a fraction of the ceiling
 *      1 / (wire time of one status read) (target >= 85 %);
 *   2. 3 boards all healthy, then board 3 silenced through the simulator's
 *      control socket: status reads/s of boards 1 and 2 against the reads/s
 *      of the whole bus when all three were healthy, i.e. the bus capacity
 *      the silent board takes from the others (target: <= 20 %). The first
 *      silent window starts when the fault is switched on, so detection is
 *      included; a second one follows it (steady state, offline backoff).
 *      A bus with only boards 1 and 2 is measured as a reference.
 * Figures only: the exit status never depends on time. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_lockbus.h"

#define TARGET_FRACTION 0.85
#define TARGET_SILENT_COST 0.20
#define ONLINE_TIMEOUT_MS 5000
#define WARMUP_MS 1000

struct opts {
	const char *simlock;
	int nproto;
	enum cw_protocol protos[2];
	int seconds;
	int locks;
	int baud;
};

/* Counters fed by the bus worker's event callback. */
struct counts {
	atomic_ullong status[CW_MAX_BOARDS_PER_BUS];
	atomic_uint offline;
	atomic_uint online;
};

struct snapshot {
	int64_t t_us;
	struct cw_bus_stats st;
	unsigned long long status[CW_MAX_BOARDS_PER_BUS];
};

struct window {
	double seconds;
	double tx_per_s;
	double polls_per_s;        /* successful status reads, whole bus */
	double board_per_s[CW_MAX_BOARDS_PER_BUS];
	unsigned long long timeouts;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_throughput --simlock PATH [--protocol modbus|kerong|both]\n"
		   "         [--seconds S (10)] [--locks L (16)] [--baud BAUD (19200)]\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	o->simlock = NULL;
	o->nproto = 2;
	o->protos[0] = CW_PROTO_MODBUS;
	o->protos[1] = CW_PROTO_KERONG;
	o->seconds = 10;
	o->locks = 16;
	o->baud = 19200;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int rc = CW_OK;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (!v) {
			fprintf(stderr, "bench_throughput: %s needs a value\n", a);
			return CW_ERR_INVAL;
		}
		i++;
		if (strcmp(a, "--simlock") == 0) {
			o->simlock = v;
		} else if (strcmp(a, "--protocol") == 0) {
			if (strcmp(v, "both") == 0) {
				o->nproto = 2;
			} else {
				o->nproto = 1;
				rc = cw_protocol_parse(v, &o->protos[0]);
			}
		} else if (strcmp(a, "--seconds") == 0) {
			rc = cw_bench_parse_int(v, 1, 3600, &o->seconds);
		} else if (strcmp(a, "--locks") == 0) {
			rc = cw_bench_parse_int(v, 1, 16, &o->locks);
		} else if (strcmp(a, "--baud") == 0) {
			rc = cw_bench_parse_int(v, 1200, 1000000, &o->baud);
		} else {
			fprintf(stderr, "bench_throughput: unknown option %s\n", a);
			usage(stderr);
			return CW_ERR_INVAL;
		}
		if (rc != CW_OK) {
			fprintf(stderr, "bench_throughput: bad value for %s: %s\n", a, v);
			return rc;
		}
	}
	if (!o->simlock) {
		usage(stderr);
		return CW_ERR_INVAL;
	}
	return CW_OK;
}

static void on_event(struct cw_bus *bus, const struct cw_bus_event *ev, void *ud)
{
	struct counts *c = ud;

	if (ev->board_index < 0 || ev->board_index >= CW_MAX_BOARDS_PER_BUS)
		return;
	switch (ev->kind) {
	case CW_BUS_EV_STATUS:
		atomic_fetch_add(&c->status[ev->board_index], 1);
		break;
	case CW_BUS_EV_OFFLINE:
		atomic_fetch_add(&c->offline, 1);
		break;
	case CW_BUS_EV_ONLINE:
		atomic_fetch_add(&c->online, 1);
		break;
	}
}

static void snap(struct cw_bus *bus, struct counts *c, struct snapshot *s)
{
	s->t_us = cw_bench_now_us();
	cw_bus_stats(bus, &s->st);
	for (int b = 0; b < CW_MAX_BOARDS_PER_BUS; b++)
		s->status[b] = atomic_load(&c->status[b]);
}

static void diff(const struct snapshot *a, const struct snapshot *b, struct window *w)
{
	double s = (double)(b->t_us - a->t_us) / 1e6;

	w->seconds = s;
	w->tx_per_s = (double)(b->st.transactions - a->st.transactions) / s;
	w->polls_per_s = (double)(b->st.polls - a->st.polls) / s;
	w->timeouts = b->st.timeouts - a->st.timeouts;
	for (int i = 0; i < CW_MAX_BOARDS_PER_BUS; i++)
		w->board_per_s[i] = (double)(b->status[i] - a->status[i]) / s;
}

struct run {
	struct cw_bench_sim *sim;
	struct cw_bus *bus;
	struct counts counts;
};

static void run_free(struct run *r)
{
	cw_bus_free(r->bus);
	cw_bench_sim_free(r->sim);
	r->bus = NULL;
	r->sim = NULL;
}

/* Starts a simulator with boards 1..nboards and a continuously polling bus. */
static int run_start(const struct opts *o, enum cw_protocol proto, int nboards, struct run *r)
{
	struct cw_bench_sim_opts so = {
		.simlock = o->simlock,
		.protocol = proto,
		.baud = o->baud,
		.nboards = nboards,
		.locks = o->locks,
	};
	struct cw_bus_config cfg;
	int64_t end;
	int rc;

	memset(r, 0, sizeof(*r));
	for (int b = 0; b < nboards; b++)
		so.addresses[b] = b + 1;
	rc = cw_bench_sim_new(&so, &r->sim);
	if (rc != CW_OK)
		goto out;
	cw_bus_config_defaults(&cfg);
	snprintf(cfg.name, sizeof(cfg.name), "bench");
	snprintf(cfg.port, sizeof(cfg.port), "%s", cw_bench_sim_link(r->sim));
	cfg.protocol = proto;
	cfg.baud = o->baud;
	cfg.poll_interval_ms = 0; /* continuous polling: the bus is never idle */
	cfg.nboards = nboards;
	for (int b = 0; b < nboards; b++)
		cw_board_config_defaults(&cfg.boards[b], so.addresses[b], o->locks);
	rc = cw_bus_new(&cfg, on_event, &r->counts, &r->bus);
	if (rc != CW_OK) {
		fprintf(stderr, "bench_throughput: cw_bus_new: %s\n", cw_strerror(rc));
		goto out;
	}
	end = cw_mono_ms() + ONLINE_TIMEOUT_MS;
	for (;;) {
		struct cw_board_status st;
		int ok = 0;

		for (int b = 0; b < nboards; b++)
			ok += cw_bus_board_status(r->bus, b, &st) == CW_OK;
		if (ok == nboards)
			break;
		if (cw_mono_ms() > end) {
			fprintf(stderr, "bench_throughput: boards not online after %d ms\n",
				ONLINE_TIMEOUT_MS);
			rc = CW_ERR_OFFLINE;
			goto out;
		}
		cw_sleep_ms(10);
	}
	cw_sleep_ms(WARMUP_MS);
out:
	if (rc != CW_OK)
		run_free(r);
	return rc;
}

static void measure(struct run *r, int seconds, struct window *w)
{
	struct snapshot a, b;

	snap(r->bus, &r->counts, &a);
	cw_sleep_ms((int64_t)seconds * 1000);
	snap(r->bus, &r->counts, &b);
	diff(&a, &b, w);
}

static int bench_ceiling(const struct opts *o, enum cw_protocol proto, int nboards)
{
	struct cw_bench_wire wt;
	struct window w;
	struct run r;
	double ceiling, frac;
	int rc;

	rc = run_start(o, proto, nboards, &r);
	if (rc != CW_OK)
		return rc;
	measure(&r, o->seconds, &w);
	run_free(&r);
	cw_bench_wire_times(proto, o->locks, o->baud, &wt);
	ceiling = 1000.0 / wt.poll_ms;
	frac = w.tx_per_s / ceiling;
	printf("| %-7s | %d | %4.1f | %6.1f | %6.1f | %6.2f | %6.1f | %5.1f %% | %s |\n",
	       cw_protocol_name(proto), nboards, w.seconds, w.tx_per_s, w.polls_per_s, wt.poll_ms,
	       ceiling, 100.0 * frac, frac >= TARGET_FRACTION ? "met" : "MISSED");
	if (w.timeouts)
		fprintf(stderr, "bench_throughput: %s %d boards: %llu timeouts while healthy\n",
			cw_protocol_name(proto), nboards, w.timeouts);
	fflush(stdout);
	return CW_OK;
}

/* cost = bus capacity the healthy boards lose: 1 - (reads/s of boards 1+2)
 * / (reads/s of the whole bus with all three boards healthy). */
static void silent_row(enum cw_protocol proto, const char *what, const struct window *w,
		       double healthy_bus, double alone, bool judged)
{
	double h = w->board_per_s[0] + w->board_per_s[1];
	double cost = healthy_bus > 0 ? 1.0 - h / healthy_bus : 1.0;

	if (!judged) { /* a reference row: nothing to compare */
		printf("| %-7s | %s | %4.1f | %6.1f | %6.1f | - | - | %llu | - |\n",
		       cw_protocol_name(proto), what, w->seconds, h, w->polls_per_s, w->timeouts);
		return;
	}
	printf("| %-7s | %s | %4.1f | %6.1f | %6.1f | %5.1f %% | %5.1f %% | %llu | %s |\n",
	       cw_protocol_name(proto), what, w->seconds, h, w->polls_per_s, 100.0 * cost,
	       alone > 0 ? 100.0 * (1.0 - h / alone) : 100.0, w->timeouts,
	       cost <= TARGET_SILENT_COST ? "met" : "MISSED");
}

/* 2 boards alone (reference), then 3 boards healthy, then board 3 silent:
 * one window from the moment of the fault (detection included) and one
 * right after it (steady state with the offline backoff). */
static int bench_silent(const struct opts *o, enum cw_protocol proto)
{
	struct window alone, healthy, detect, steady;
	struct run r;
	char reply[128];
	double h_alone, bus_healthy;
	int rc;

	rc = run_start(o, proto, 2, &r);
	if (rc != CW_OK)
		return rc;
	measure(&r, o->seconds, &alone);
	run_free(&r);

	rc = run_start(o, proto, 3, &r);
	if (rc != CW_OK)
		return rc;
	measure(&r, o->seconds, &healthy);
	rc = cw_bench_sim_control(r.sim, "fault silent 3 on", reply, sizeof(reply));
	if (rc != CW_OK) {
		fprintf(stderr, "bench_throughput: 'fault silent 3 on' -> %s (%s)\n",
			cw_strerror(rc), reply);
		run_free(&r);
		return rc;
	}
	measure(&r, o->seconds, &detect);
	measure(&r, o->seconds, &steady);
	run_free(&r);

	h_alone = alone.board_per_s[0] + alone.board_per_s[1];
	bus_healthy = healthy.polls_per_s;
	silent_row(proto, "2 boards only (reference)", &alone, bus_healthy, h_alone, false);
	silent_row(proto, "3 boards, all healthy", &healthy, bus_healthy, h_alone, false);
	silent_row(proto, "board 3 silent, from the fault", &detect, bus_healthy, h_alone, true);
	silent_row(proto, "board 3 silent, the window after", &steady, bus_healthy, h_alone, true);
	fflush(stdout);
	return CW_OK;
}

int main(int argc, char **argv)
{
	struct opts o;
	char machine[128];
	int rc = CW_OK;

	if (parse_args(argc, argv, &o) != CW_OK)
		return 2;
	cw_log_set_level(CW_LOG_WARN);
	cw_bench_machine(machine, sizeof(machine));
	printf("## bench_throughput: continuous polling (poll_interval_ms=0, other bus settings "
	       "default), boards of %d locks, %d baud 8N1, paced simulator, %d s windows (%s)\n",
	       o.locks, o.baud, o.seconds, machine);
	printf("\n| protocol | boards | window s | transactions/s | status reads/s | wire ms per "
	       "read | ceiling /s | fraction | target >= %.0f %% |\n",
	       100.0 * TARGET_FRACTION);
	printf("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
	for (int p = 0; p < o.nproto; p++) {
		for (int nb = 2; nb <= 4; nb += 2) {
			int r = bench_ceiling(&o, o.protos[p], nb);
			if (r != CW_OK) {
				fprintf(stderr, "bench_throughput: %s %d boards failed: %s\n",
					cw_protocol_name(o.protos[p]), nb, cw_strerror(r));
				rc = r;
			}
		}
	}
	printf("\nOne silent board: board 3 of 3 silenced with `fault silent 3 on`; the first "
	       "window starts at the fault (detection included), the second follows it. Cost = "
	       "1 - (reads/s of boards 1+2) / (reads/s of the whole bus with all 3 boards healthy): "
	       "the bus capacity the silent board takes from the others. The last cost column "
	       "compares with a bus that has only boards 1 and 2.\n\n");
	printf("| protocol | bus | window s | reads/s of boards 1+2 | reads/s whole bus | cost vs "
	       "all-healthy bus | cost vs 2-board bus | timeouts | target <= %.0f %% |\n",
	       100.0 * TARGET_SILENT_COST);
	printf("|---|---|---:|---:|---:|---:|---:|---:|---|\n");
	for (int p = 0; p < o.nproto; p++) {
		int r = bench_silent(&o, o.protos[p]);
		if (r != CW_OK) {
			fprintf(stderr, "bench_throughput: %s silent-board run failed: %s\n",
				cw_protocol_name(o.protos[p]), cw_strerror(r));
			rc = r;
		}
	}
	return rc == CW_OK ? 0 : 1;
}
