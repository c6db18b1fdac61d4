/* bench_util.c - simulator handle, wire-time arithmetic, statistics. */
#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_kerong.h"

extern char **environ;

#define SIM_READY_TIMEOUT_MS 10000
#define SIM_CONTROL_TIMEOUT_MS 2000
#define SIM_QUIT_TIMEOUT_MS 2000
#define SIM_MAX_ARGS (16 + 2 * CW_BENCH_MAX_BOARDS)

struct cw_bench_sim {
	pid_t pid;
	char dir[64];
	char link[128];
	char control[128];
	char out_path[128];
	char err_path[128];
};

const char *cw_bench_sim_link(const struct cw_bench_sim *s)
{
	return s->link;
}

/* Whole file into buf (NUL-terminated, truncated at cap - 1). */
static size_t slurp(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	buf[0] = '\0';
	if (!f)
		return 0;
	n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	fclose(f);
	return n;
}

static void print_sim_stderr(const struct cw_bench_sim *s)
{
	char buf[4096];

	if (slurp(s->err_path, buf, sizeof(buf)) > 0)
		fprintf(stderr, "--- cartwise-simlock stderr ---\n%s--- end ---\n", buf);
}

/* Waits for the child up to ms; returns true when it has been reaped. */
static bool reap(pid_t pid, int ms)
{
	int64_t end = cw_mono_ms() + ms;
	int status;

	do {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD))
			return true;
		cw_sleep_ms(10);
	} while (cw_mono_ms() < end);
	return false;
}

void cw_bench_sim_free(struct cw_bench_sim *s)
{
	if (!s)
		return;
	if (s->pid > 0) {
		cw_bench_sim_control(s, "quit", NULL, 0);
		if (!reap(s->pid, SIM_QUIT_TIMEOUT_MS)) {
			kill(s->pid, SIGTERM);
			if (!reap(s->pid, SIM_QUIT_TIMEOUT_MS)) {
				kill(s->pid, SIGKILL);
				reap(s->pid, SIM_QUIT_TIMEOUT_MS);
			}
		}
	}
	unlink(s->link);
	unlink(s->control);
	unlink(s->out_path);
	unlink(s->err_path);
	rmdir(s->dir);
	free(s);
}

int cw_bench_sim_new(const struct cw_bench_sim_opts *o, struct cw_bench_sim **out)
{
	struct cw_bench_sim *s = NULL;
	posix_spawn_file_actions_t fa;
	bool fa_init = false;
	char boards[CW_BENCH_MAX_BOARDS][24];
	char baud[16], relatch[16];
	char *argv[SIM_MAX_ARGS];
	int argc = 0, rc = CW_ERR_IO;
	int64_t end;

	*out = NULL;
	if (o->nboards < 1 || o->nboards > CW_BENCH_MAX_BOARDS)
		return CW_ERR_INVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CW_ERR_NOMEM;
	snprintf(s->dir, sizeof(s->dir), "/tmp/cw-bench-XXXXXX");
	if (!mkdtemp(s->dir)) {
		fprintf(stderr, "bench: mkdtemp: %s\n", strerror(errno));
		s->dir[0] = '\0';
		goto out;
	}
	snprintf(s->link, sizeof(s->link), "%s/bus", s->dir);
	snprintf(s->control, sizeof(s->control), "%s/control.sock", s->dir);
	snprintf(s->out_path, sizeof(s->out_path), "%s/sim.out", s->dir);
	snprintf(s->err_path, sizeof(s->err_path), "%s/sim.err", s->dir);
	snprintf(baud, sizeof(baud), "%d", o->baud);
	snprintf(relatch, sizeof(relatch), "%d", o->relatch_ms);

	argv[argc++] = (char *)o->simlock;
	argv[argc++] = "--protocol";
	argv[argc++] = (char *)cw_protocol_name(o->protocol);
	argv[argc++] = "--link";
	argv[argc++] = s->link;
	argv[argc++] = "--control";
	argv[argc++] = s->control;
	argv[argc++] = "--baud";
	argv[argc++] = baud;
	for (int i = 0; i < o->nboards; i++) {
		snprintf(boards[i], sizeof(boards[i]), "%d:%d", o->addresses[i], o->locks);
		argv[argc++] = "--board";
		argv[argc++] = boards[i];
	}
	if (o->relatch_ms > 0) {
		argv[argc++] = "--relatch-ms";
		argv[argc++] = relatch;
	}
	argv[argc] = NULL;

	if (posix_spawn_file_actions_init(&fa) != 0)
		goto out;
	fa_init = true;
	/* stdin from /dev/null: the simulator also reads control commands
	 * from stdin, which must not be the benchmark's terminal. */
	if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) ||
	    posix_spawn_file_actions_addopen(&fa, 1, s->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600) ||
	    posix_spawn_file_actions_addopen(&fa, 2, s->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600))
		goto out;
	errno = posix_spawn(&s->pid, o->simlock, &fa, NULL, argv, environ);
	if (errno != 0) {
		fprintf(stderr, "bench: cannot start %s: %s\n", o->simlock, strerror(errno));
		s->pid = 0;
		goto out;
	}

	/* The simulator prints "ready link=... pty=..." once the pty link and
	 * the control socket exist. */
	end = cw_mono_ms() + SIM_READY_TIMEOUT_MS;
	for (;;) {
		char buf[512];
		int status;

		slurp(s->out_path, buf, sizeof(buf));
		if (strncmp(buf, "ready ", 6) == 0 || strstr(buf, "\nready ")) {
			rc = CW_OK;
			break;
		}
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			fprintf(stderr, "bench: cartwise-simlock exited before ready\n");
			s->pid = 0;
			rc = CW_ERR_IO;
			break;
		}
		if (cw_mono_ms() > end) {
			fprintf(stderr, "bench: cartwise-simlock not ready after %d ms\n",
				SIM_READY_TIMEOUT_MS);
			rc = CW_ERR_TIMEOUT;
			break;
		}
		cw_sleep_ms(10);
	}

out:
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (rc != CW_OK) {
		if (s && s->dir[0])
			print_sim_stderr(s);
		cw_bench_sim_free(s);
		return rc;
	}
	*out = s;
	return CW_OK;
}

int cw_bench_sim_control(struct cw_bench_sim *s, const char *cmd, char *reply, size_t cap)
{
	struct sockaddr_un sa;
	char line[256], buf[512];
	size_t got = 0;
	int fd = -1, rc = CW_ERR_IO, n;
	int64_t end = cw_mono_ms() + SIM_CONTROL_TIMEOUT_MS;

	if (reply && cap)
		reply[0] = '\0';
	n = snprintf(line, sizeof(line), "%s\n", cmd);
	if (n < 0 || (size_t)n >= sizeof(line))
		return CW_ERR_TOOBIG;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(s->control) >= sizeof(sa.sun_path))
		return CW_ERR_TOOBIG;
	memcpy(sa.sun_path, s->control, strlen(s->control) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto out;
	if (write(fd, line, (size_t)n) != n)
		goto out;
	/* One answer line. */
	while (got < sizeof(buf) - 1 && !memchr(buf, '\n', got)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = end - cw_mono_ms();
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			rc = CW_ERR_TIMEOUT;
			goto out;
		}
		r = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	buf[got] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (reply && cap)
		snprintf(reply, cap, "%s", buf);
	if (strncmp(buf, "ok", 2) == 0)
		rc = CW_OK;
	else if (got > 0)
		rc = CW_ERR_PROTO;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

double cw_bench_frame_ms(int bytes, int baud)
{
	/* 8N1: start + 8 data + stop = 10 bits a character. */
	return ((double)bytes + 3.5) * 10.0 * 1000.0 / (double)baud;
}

void cw_bench_wire_times(enum cw_protocol p, int locks, int baud, struct cw_bench_wire *out)
{
	memset(out, 0, sizeof(*out));
	if (p == CW_PROTO_MODBUS) {
		/* Modbus Application Protocol V1.1b3 + RTU framing (slave id 1,
		 * CRC 2): FC02 request = id fc addr(2) qty(2) crc(2) = 8 bytes;
		 * reply = id fc count data(ceil(n/8)) crc(2) = 5 + ceil(n/8),
		 * n = 2 * locks inputs (hook + present, BRIEF.md §3).
		 * FC05 request = id fc addr(2) value(2) crc(2) = 8, reply = echo 8. */
		int inputs = 2 * locks;
		out->poll_req = 8;
		out->poll_reply = 5 + (inputs + 7) / 8;
		out->release_req = 8;
		out->release_reply = 8;
	} else {
		/* Kerong KR-CU16 (BRIEF.md §3): STX ADDR CMD ETX SUM = 5 bytes;
		 * the 0x31 unlock and the 0x32 status are both answered by the
		 * 9-byte status frame 02 ADDR 35 D1 D2 D3 D4 03 SUM. */
		out->poll_req = 5;
		out->poll_reply = CW_KR_STATUS_FRAME_LEN;
		out->release_req = 5;
		out->release_reply = CW_KR_STATUS_FRAME_LEN;
	}
	out->poll_ms = cw_bench_frame_ms(out->poll_req, baud) + cw_bench_frame_ms(out->poll_reply, baud);
	out->unlock_ms = cw_bench_frame_ms(out->release_req, baud) +
			 cw_bench_frame_ms(out->release_reply, baud) + out->poll_ms;
}

int64_t cw_bench_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

void cw_bench_sort(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
}

double cw_bench_percentile(const double *sorted, size_t n, double q)
{
	size_t rank = (size_t)ceil(q * (double)n);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

int cw_bench_parse_int(const char *s, int min, int max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return CW_ERR_INVAL;
	*out = (int)v;
	return CW_OK;
}

int cw_bench_next_opt(int argc, char **argv, int *i, const char *prog,
		      const char *const *flags, void (*usage)(FILE *f), const char **name,
		      char **value)
{
	const char *a = argv[*i];

	if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
		usage(stdout);
		exit(0);
	}
	*name = a;
	*value = NULL;
	for (const char *const *f = flags; f && *f; f++)
		if (strcmp(a, *f) == 0)
			return CW_OK;
	if (*i + 1 >= argc) {
		fprintf(stderr, "%s: %s needs a value\n", prog, a);
		return CW_ERR_INVAL;
	}
	*value = argv[++*i];
	return CW_OK;
}

void cw_bench_machine(char *out, size_t cap)
{
	struct utsname u;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (uname(&u) == 0)
		snprintf(out, cap, "%ld cores, %s %s %s", cores, u.sysname, u.release, u.machine);
	else
		snprintf(out, cap, "%ld cores", cores);
}
