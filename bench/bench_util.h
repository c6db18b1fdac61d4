/* bench_util.h - helpers shared by the edge benchmarks.
 *
 * A simulator handle (cartwise-simlock started in a temporary directory and
 * driven over its control socket), the wire-time arithmetic of BRIEF.md §3
 * and small statistics. Benchmarks print figures; they never pass or fail on
 * time (docs/BENCHMARKS.md). */
#ifndef CW_BENCH_UTIL_H
#define CW_BENCH_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "cw_lockbus.h"

#define CW_BENCH_MAX_BOARDS 8

struct cw_bench_sim_opts {
	const char *simlock;      /* path of cartwise-simlock */
	enum cw_protocol protocol;
	int baud;                 /* the simulator paces its bytes at this rate */
	int nboards;
	int addresses[CW_BENCH_MAX_BOARDS];
	int locks;                /* locks of every board */
	int relatch_ms;           /* 0 = an untaken released hook stays open */
};

struct cw_bench_sim;

/* Starts the simulator in a fresh temporary directory and waits (up to 10 s)
 * for its "ready" line. On failure prints the simulator's stderr. */
int cw_bench_sim_new(const struct cw_bench_sim_opts *o, struct cw_bench_sim **out);
/* Sends "quit", waits for the process, removes the directory. NULL ok. */
void cw_bench_sim_free(struct cw_bench_sim *s);
/* Path of the pty link the bus must open. Owned by s. */
const char *cw_bench_sim_link(const struct cw_bench_sim *s);
/* Sends one control command ("fault silent 3 on") and reads the one-line
 * answer into reply (cap bytes, may be NULL). CW_OK on "ok ...",
 * CW_ERR_PROTO on "err ...", CW_ERR_IO / CW_ERR_TIMEOUT otherwise. */
int cw_bench_sim_control(struct cw_bench_sim *s, const char *cmd, char *reply, size_t cap);

/* ---- wire time (8N1: 10 bits a character) ---- */

/* Time on the wire of one frame of `bytes` characters followed by the 3.5
 * character inter-frame silence (Modbus over Serial Line V1.02 §2.5.1.1;
 * kept for Kerong too since the boards need a gap). Milliseconds. */
double cw_bench_frame_ms(int bytes, int baud);

struct cw_bench_wire {
	double poll_ms;   /* one whole-board status read: request + reply */
	double unlock_ms; /* release command + one confirming status read */
	int poll_req, poll_reply;     /* byte counts, for the printout */
	int release_req, release_reply;
};
/* Wire times of the transactions of one board with `locks` locks. */
void cw_bench_wire_times(enum cw_protocol p, int locks, int baud, struct cw_bench_wire *out);

/* ---- small helpers ---- */
int64_t cw_bench_now_us(void); /* CLOCK_MONOTONIC, microseconds */
/* Nearest-rank percentile (q in 0..1) of a sorted array; n > 0. */
double cw_bench_percentile(const double *sorted, size_t n, double q);
void cw_bench_sort(double *v, size_t n);
/* Parses a decimal int in [min, max]; CW_ERR_INVAL otherwise. */
int cw_bench_parse_int(const char *s, int min, int max, int *out);
/* One option of a benchmark's command line, at argv[*i]: "--name value", or
 * a flag named in `flags` (NULL-terminated, may be NULL) that takes no value.
 * Sets *name and *value (NULL for a flag) and leaves *i on the option's last
 * word. -h/--help prints usage to stdout and exits 0; a missing value is
 * CW_ERR_INVAL with a message prefixed by prog. */
int cw_bench_next_opt(int argc, char **argv, int *i, const char *prog,
		      const char *const *flags, void (*usage)(FILE *f), const char **name,
		      char **value);
/* Machine description for the report header ("2 cores, Linux 6.1 x86_64"). */
void cw_bench_machine(char *out, size_t cap);

#endif
