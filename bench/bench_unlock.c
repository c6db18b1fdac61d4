/* bench_unlock.c - unlock latency, request to release confirmed by sensor.
 *
 * Drives libcwedge's bus worker (cw_bus_unlock) directly against
 * cartwise-simlock pacing its bytes at the real baud rate, for each protocol:
 * N unlocks spread round-robin over B boards x L locks while the worker keeps
 * polling at its default interval. Prints p50/p99 beside the wire-time
 * ceiling of the transactions involved (release + one confirming status read)
 * plus one sensor poll, and the ratio p99 / ceiling (target: <= 2).
 * Figures only: the exit status never depends on time. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_lockbus.h"

#define TARGET_RATIO 2.0
#define ONLINE_TIMEOUT_MS 5000
#define MAX_UNLOCKS 100000

struct opts {
	const char *simlock;
	int nproto;
	enum cw_protocol protos[2];
	int unlocks;
	int boards;
	int locks;
	int baud;
	int relatch_ms;
	int jitter_ms; /* random pause before each unlock, so requests land
			* anywhere in the poll cycle */
};

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_unlock --simlock PATH [--protocol modbus|kerong|both]\n"
		   "         [--unlocks N (300)] [--boards B (2)] [--locks L (16)]\n"
		   "         [--baud BAUD (19200)] [--relatch-ms MS (300)] [--jitter-ms MS (50)]\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	o->simlock = NULL;
	o->nproto = 2;
	o->protos[0] = CW_PROTO_MODBUS;
	o->protos[1] = CW_PROTO_KERONG;
	o->unlocks = 300;
	o->boards = 2;
	o->locks = 16;
	o->baud = 19200;
	o->relatch_ms = 300;
	o->jitter_ms = 50;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int rc = CW_OK;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (!v) {
			fprintf(stderr, "bench_unlock: %s needs a value\n", a);
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
		} else if (strcmp(a, "--unlocks") == 0) {
			rc = cw_bench_parse_int(v, 1, MAX_UNLOCKS, &o->unlocks);
		} else if (strcmp(a, "--boards") == 0) {
			rc = cw_bench_parse_int(v, 1, CW_BENCH_MAX_BOARDS, &o->boards);
		} else if (strcmp(a, "--locks") == 0) {
			rc = cw_bench_parse_int(v, 1, 16, &o->locks);
		} else if (strcmp(a, "--baud") == 0) {
			rc = cw_bench_parse_int(v, 1200, 1000000, &o->baud);
		} else if (strcmp(a, "--relatch-ms") == 0) {
			rc = cw_bench_parse_int(v, 0, 60000, &o->relatch_ms);
		} else if (strcmp(a, "--jitter-ms") == 0) {
			rc = cw_bench_parse_int(v, 0, 10000, &o->jitter_ms);
		} else {
			fprintf(stderr, "bench_unlock: unknown option %s\n", a);
			usage(stderr);
			return CW_ERR_INVAL;
		}
		if (rc != CW_OK) {
			fprintf(stderr, "bench_unlock: bad value for %s: %s\n", a, v);
			return rc;
		}
	}
	if (!o->simlock) {
		usage(stderr);
		return CW_ERR_INVAL;
	}
	return CW_OK;
}

static int wait_online(struct cw_bus *bus, int nboards)
{
	int64_t end = cw_mono_ms() + ONLINE_TIMEOUT_MS;

	for (;;) {
		struct cw_board_status st;
		int ok = 0;

		for (int b = 0; b < nboards; b++)
			ok += cw_bus_board_status(bus, b, &st) == CW_OK;
		if (ok == nboards)
			return CW_OK;
		if (cw_mono_ms() > end)
			return CW_ERR_OFFLINE;
		cw_sleep_ms(10);
	}
}

/* One protocol: start a simulator, open the bus, N unlocks, print a row. */
static int run_protocol(const struct opts *o, enum cw_protocol proto)
{
	struct cw_bench_sim_opts so = {
		.simlock = o->simlock,
		.protocol = proto,
		.baud = o->baud,
		.nboards = o->boards,
		.locks = o->locks,
		.relatch_ms = o->relatch_ms,
	};
	struct cw_bench_sim *sim = NULL;
	struct cw_bus_config cfg;
	struct cw_bus *bus = NULL;
	struct cw_bus_stats st0, st1;
	struct cw_bench_wire w;
	double *lat = NULL, *lib_lat = NULL;
	int nok = 0, nfail = 0, noffline = 0, nfault = 0, rc;
	int64_t t_start, t_end;

	for (int b = 0; b < o->boards; b++)
		so.addresses[b] = b + 1;
	lat = calloc((size_t)o->unlocks, sizeof(*lat));
	lib_lat = calloc((size_t)o->unlocks, sizeof(*lib_lat));
	if (!lat || !lib_lat) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	rc = cw_bench_sim_new(&so, &sim);
	if (rc != CW_OK)
		goto out;

	/* The daemon's defaults, as shipped: only the port and boards differ. */
	cw_bus_config_defaults(&cfg);
	snprintf(cfg.name, sizeof(cfg.name), "bench");
	snprintf(cfg.port, sizeof(cfg.port), "%s", cw_bench_sim_link(sim));
	cfg.protocol = proto;
	cfg.baud = o->baud;
	cfg.nboards = o->boards;
	for (int b = 0; b < o->boards; b++)
		cw_board_config_defaults(&cfg.boards[b], so.addresses[b], o->locks);
	rc = cw_bus_new(&cfg, NULL, NULL, &bus);
	if (rc != CW_OK) {
		fprintf(stderr, "bench_unlock: cw_bus_new: %s\n", cw_strerror(rc));
		goto out;
	}
	rc = wait_online(bus, o->boards);
	if (rc != CW_OK) {
		fprintf(stderr, "bench_unlock: boards not online after %d ms\n", ONLINE_TIMEOUT_MS);
		goto out;
	}

	cw_bus_stats(bus, &st0);
	t_start = cw_bench_now_us();
	for (int i = 0; i < o->unlocks; i++) {
		/* Round-robin over boards, then locks: the same lock comes back
		 * every boards*locks unlocks, long after the simulator has
		 * re-latched it (--relatch-ms). */
		int board = i % o->boards;
		int lock = (i / o->boards) % o->locks;
		int64_t lib_ms = 0, t0, t1;

		if (o->jitter_ms > 0)
			cw_sleep_ms(randombytes_uniform((uint32_t)o->jitter_ms + 1));
		t0 = cw_bench_now_us();
		rc = cw_bus_unlock(bus, board, lock, &lib_ms);
		t1 = cw_bench_now_us();
		if (rc == CW_OK) {
			lat[nok] = (double)(t1 - t0) / 1000.0;
			lib_lat[nok] = (double)lib_ms;
			nok++;
		} else {
			nfail++;
			noffline += rc == CW_ERR_OFFLINE;
			nfault += rc == CW_ERR_FAULT;
			if (nfail <= 5)
				fprintf(stderr, "bench_unlock: %s board %d lock %d: %s\n",
					cw_protocol_name(proto), board, lock, cw_strerror(rc));
		}
	}
	t_end = cw_bench_now_us();
	cw_bus_stats(bus, &st1);
	rc = CW_OK;

	cw_bench_wire_times(proto, o->locks, o->baud, &w);
	if (nok == 0) {
		printf("| %-7s | %5d | %4d | - | - | - | - | %6.2f | %6.2f | %6.2f | - | no confirmed "
		       "unlock |\n",
		       cw_protocol_name(proto), o->unlocks, nfail, w.unlock_ms, w.poll_ms,
		       w.unlock_ms + w.poll_ms);
	} else {
		double ceiling = w.unlock_ms + w.poll_ms, p50, p99, mean = 0, ratio;

		for (int i = 0; i < nok; i++)
			mean += lat[i];
		mean /= nok;
		cw_bench_sort(lat, (size_t)nok);
		cw_bench_sort(lib_lat, (size_t)nok);
		p50 = cw_bench_percentile(lat, (size_t)nok, 0.50);
		p99 = cw_bench_percentile(lat, (size_t)nok, 0.99);
		ratio = p99 / ceiling;
		printf("| %-7s | %5d | %4d | %6.2f | %6.2f | %6.2f | %6.2f | %6.2f | %6.2f | %6.2f | "
		       "%4.2f | %s |\n",
		       cw_protocol_name(proto), o->unlocks, nfail, p50, p99, lat[nok - 1], mean,
		       w.unlock_ms, w.poll_ms, ceiling, ratio,
		       ratio <= TARGET_RATIO ? "met" : "MISSED");
		fprintf(stderr,
			"bench_unlock: %s: library-reported latency p50 %.0f ms p99 %.0f ms "
			"(whole ms); failures %d (offline %d, not confirmed %d); "
			"%llu transactions in %.1f s, %llu timeouts, %llu protocol errors\n",
			cw_protocol_name(proto), cw_bench_percentile(lib_lat, (size_t)nok, 0.50),
			cw_bench_percentile(lib_lat, (size_t)nok, 0.99), nfail, noffline, nfault,
			(unsigned long long)(st1.transactions - st0.transactions),
			(double)(t_end - t_start) / 1e6,
			(unsigned long long)(st1.timeouts - st0.timeouts),
			(unsigned long long)(st1.proto_errors - st0.proto_errors));
	}
	fflush(stdout);
out:
	cw_bus_free(bus);
	cw_bench_sim_free(sim);
	free(lat);
	free(lib_lat);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct cw_bench_wire w;
	char machine[128];
	int rc = CW_OK;

	if (parse_args(argc, argv, &o) != CW_OK)
		return 2;
	if (sodium_init() < 0) {
		fprintf(stderr, "bench_unlock: sodium_init failed\n");
		return 1;
	}
	cw_log_set_level(CW_LOG_WARN);
	cw_bench_machine(machine, sizeof(machine));
	printf("## bench_unlock: %d unlocks over %d boards x %d locks, %d baud 8N1, "
	       "paced simulator, bus defaults (%s)\n",
	       o.unlocks, o.boards, o.locks, o.baud, machine);
	for (int p = 0; p < o.nproto; p++) {
		cw_bench_wire_times(o.protos[p], o.locks, o.baud, &w);
		printf("# %s frames: release %d + %d bytes, status %d + %d bytes, each followed by "
		       "3.5 characters of silence\n",
		       cw_protocol_name(o.protos[p]), w.release_req, w.release_reply, w.poll_req,
		       w.poll_reply);
	}
	printf("\n| protocol | unlocks | failed | p50 ms | p99 ms | max ms | mean ms | wire ms "
	       "(release+confirm read) | one poll ms | ceiling ms | p99/ceiling | target <= %.0fx |\n",
	       TARGET_RATIO);
	printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
	for (int p = 0; p < o.nproto; p++) {
		int r = run_protocol(&o, o.protos[p]);
		if (r != CW_OK) {
			fprintf(stderr, "bench_unlock: %s run failed: %s\n",
				cw_protocol_name(o.protos[p]), cw_strerror(r));
			rc = r;
		}
	}
	return rc == CW_OK ? 0 : 1;
}
