/* sim_control.c - control channel of the simulator: one command per line on
 * stdin and on an optional Unix stream socket; one answer line per command,
 * "ok ..." or "err <reason>". The command set is in docs/PROTOCOL.md. */
#include "sim.h"

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_LINE_MAX 256
#define CTL_MAX_CLIENTS 16
#define CTL_MAX_ARGS 6
/* Upper bound of the control loop's sleep, so timers never wait long. */
#define CTL_TICK_MAX_MS 1000

struct ctl_conn {
	int fd;             /* -1 = free */
	char buf[CTL_LINE_MAX];
	size_t len;
	bool overflow;      /* discarding the rest of an over-long line */
};

struct sim_control {
	struct sim *s;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	bool stdin_open;
	struct ctl_conn in;  /* stdin; answers go to stdout */
	struct ctl_conn conn[CTL_MAX_CLIENTS];
};

/* ---- command execution ---- */

static bool parse_int(const char *str, long min, long max, int *out)
{
	char *end;
	long v;

	if (!str || !*str)
		return false;
	errno = 0;
	v = strtol(str, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = (int)v;
	return true;
}

static bool parse_onoff(const char *str, bool *out)
{
	if (str && strcmp(str, "on") == 0)
		*out = true;
	else if (str && strcmp(str, "off") == 0)
		*out = false;
	else
		return false;
	return true;
}

/* Resolves "B" or "B L" arguments; writes the error answer on failure. */
static struct sim_board *board_arg(struct sim *s, const char *bs, const char *ls, int *lock,
				   char *out, size_t cap)
{
	struct sim_board *b;
	int addr;

	if (!parse_int(bs, 0, 255, &addr)) {
		snprintf(out, cap, "err bad_board");
		return NULL;
	}
	b = sim_board_find(s, addr);
	if (!b) {
		snprintf(out, cap, "err unknown_board");
		return NULL;
	}
	if (lock && !parse_int(ls, 0, b->locks - 1, lock)) {
		snprintf(out, cap, "err unknown_lock");
		return NULL;
	}
	return b;
}

static void exec_fault(struct sim *s, char **a, int n, char *out, size_t cap)
{
	struct sim_board *b;
	int lock, ms;
	bool on;

	if (n == 3 && strcmp(a[1], "zero") == 0 && parse_onoff(a[2], &on)) {
		s->zero = on;
		cw_info("sim.fault", "kind=zero on=%d", on);
		snprintf(out, cap, "ok");
		return;
	}
	if (n == 5 && strcmp(a[1], "stuck") == 0) {
		if (!(b = board_arg(s, a[2], a[3], &lock, out, cap)))
			return;
		if (!parse_onoff(a[4], &on))
			goto usage;
		b->slot[lock].stuck = on;
		cw_info("sim.fault", "kind=stuck board=%d lock=%d on=%d", b->addr, lock, on);
		snprintf(out, cap, "ok");
		return;
	}
	if (n == 4 && strcmp(a[1], "slow") == 0) {
		if (!(b = board_arg(s, a[2], NULL, NULL, out, cap)))
			return;
		if (!parse_int(a[3], 0, 60000, &ms))
			goto usage;
		b->slow_ms = ms;
		cw_info("sim.fault", "kind=slow board=%d ms=%d", b->addr, ms);
		snprintf(out, cap, "ok");
		return;
	}
	if (n == 4 && (strcmp(a[1], "silent") == 0 || strcmp(a[1], "crc") == 0 ||
		       strcmp(a[1], "dup") == 0)) {
		if (!(b = board_arg(s, a[2], NULL, NULL, out, cap)))
			return;
		if (!parse_onoff(a[3], &on))
			goto usage;
		if (a[1][0] == 's')
			b->silent = on;
		else if (a[1][0] == 'c')
			b->crc = on;
		else
			b->dup = on;
		cw_info("sim.fault", "kind=%s board=%d on=%d", a[1], b->addr, on);
		snprintf(out, cap, "ok");
		return;
	}
usage:
	snprintf(out, cap, "err usage: fault silent|crc|dup B on|off | fault stuck B L on|off | "
			   "fault slow B MS | fault zero on|off");
}

static int exec_locked(struct sim *s, char **a, int n, char *out, size_t cap)
{
	struct sim_board *b;
	int lock, rc;

	if (strcmp(a[0], "quit") == 0 && n == 1) {
		snprintf(out, cap, "ok");
		return 1;
	}
	if (strcmp(a[0], "stats") == 0 && n == 1) {
		snprintf(out, cap, "ok requests=%llu replies=%llu releases=%llu garbage=%llu",
			 (unsigned long long)s->requests, (unsigned long long)s->replies,
			 (unsigned long long)s->releases, (unsigned long long)s->garbage);
		return 0;
	}
	if (strcmp(a[0], "fault") == 0 && n >= 3) {
		exec_fault(s, a, n, out, cap);
		return 0;
	}
	if (strcmp(a[0], "board") == 0 && n == 2) {
		uint32_t hook, present;

		if (!(b = board_arg(s, a[1], NULL, NULL, out, cap)))
			return 0;
		sim_board_bits(b, &hook, &present);
		snprintf(out, cap, "ok hook=0x%x present=0x%x", hook, present);
		return 0;
	}
	if (n != 3 || (strcmp(a[0], "take") && strcmp(a[0], "dock") && strcmp(a[0], "empty") &&
		       strcmp(a[0], "state"))) {
		snprintf(out, cap, "err unknown_command (take|dock|empty|state B L, board B, "
				   "fault ..., stats, quit)");
		return 0;
	}
	if (!(b = board_arg(s, a[1], a[2], &lock, out, cap)))
		return 0;
	rc = CW_OK;
	if (strcmp(a[0], "state") == 0) {
		const struct sim_slot *sl = &b->slot[lock];

		snprintf(out, cap, "ok present=%d hook=%s releases=%llu", sl->present ? 1 : 0,
			 sl->hook_closed ? "closed" : "open", (unsigned long long)sl->releases);
		return 0;
	} else if (strcmp(a[0], "take") == 0) {
		rc = sim_take(s, b, lock);
	} else if (strcmp(a[0], "dock") == 0) {
		rc = sim_dock(s, b, lock);
	} else {
		sim_empty(s, b, lock);
	}
	if (rc == CW_ERR_STATE)
		snprintf(out, cap, "err locked");
	else if (rc == CW_ERR_NOCART)
		snprintf(out, cap, "err empty");
	else if (rc == CW_ERR_CONFLICT)
		snprintf(out, cap, "err occupied");
	else
		snprintf(out, cap, "ok");
	return 0;
}

int sim_control_exec(struct sim *s, const char *line, char *out, size_t cap)
{
	char copy[CTL_LINE_MAX];
	char *a[CTL_MAX_ARGS + 1], *save = NULL, *tok;
	int n = 0, rc;

	if (strlen(line) >= sizeof(copy)) {
		snprintf(out, cap, "err too_long");
		return 0;
	}
	snprintf(copy, sizeof(copy), "%s", line);
	for (tok = strtok_r(copy, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
		if (n == CTL_MAX_ARGS) {
			snprintf(out, cap, "err too_many_arguments");
			return 0;
		}
		a[n++] = tok;
	}
	if (n == 0) {
		snprintf(out, cap, "err empty_command");
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	rc = exec_locked(s, a, n, out, cap);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* ---- transport: stdin and the Unix socket ---- */

int sim_control_new(struct sim *s, const char *sock_path, struct sim_control **out)
{
	struct sim_control *c;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int rc = CW_OK;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return CW_ERR_NOMEM;
	c->s = s;
	c->listen_fd = -1;
	c->stdin_open = true;
	c->in.fd = STDIN_FILENO;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		c->conn[i].fd = -1;
	if (!sock_path)
		goto out;
	if (strlen(sock_path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "cartwise-simlock: --control path too long (max %zu bytes)\n",
			sizeof(sa.sun_path) - 1);
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	/* A stale socket from a killed run is replaced; anything else is not. */
	if (lstat(sock_path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "cartwise-simlock: --control %s exists and is not a socket\n",
				sock_path);
			rc = CW_ERR_INVAL;
			goto out;
		}
		unlink(sock_path);
	}
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->listen_fd < 0 || bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(c->listen_fd, 8) < 0) {
		fprintf(stderr, "cartwise-simlock: cannot listen on %s: %s\n", sock_path,
			strerror(errno));
		rc = CW_ERR_IO;
		goto out;
	}
	snprintf(c->path, sizeof(c->path), "%s", sock_path);
out:
	if (rc < 0) {
		sim_control_free(c);
		return rc;
	}
	*out = c;
	return CW_OK;
}

void sim_control_free(struct sim_control *c)
{
	if (!c)
		return;
	for (int i = 0; i < CTL_MAX_CLIENTS; i++)
		if (c->conn[i].fd >= 0)
			close(c->conn[i].fd);
	if (c->listen_fd >= 0)
		close(c->listen_fd);
	if (c->path[0])
		unlink(c->path);
	free(c);
}

static void answer(struct ctl_conn *k, bool is_stdin, const char *text)
{
	char line[CTL_LINE_MAX * 2];
	int n = snprintf(line, sizeof(line), "%s\n", text);

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	if (is_stdin) {
		fputs(line, stdout);
		fflush(stdout);
		return;
	}
	/* A client that does not read its answers must not block us. */
	if (send(k->fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) != n) {
		close(k->fd);
		k->fd = -1;
	}
}

/* Reads what is available on k and runs each complete line.
 * Returns 1 on quit, -1 on EOF/error (k is closed), 0 otherwise. */
static int serve(struct sim_control *c, struct ctl_conn *k, bool is_stdin)
{
	char out[CTL_LINE_MAX * 2];
	ssize_t n;
	int quit = 0;

	n = read(k->fd, k->buf + k->len, sizeof(k->buf) - k->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	k->len += (size_t)n;
	for (;;) {
		char *nl = memchr(k->buf, '\n', k->len);
		size_t used;

		if (!nl) {
			if (k->len == sizeof(k->buf)) {
				/* Bounded line: refuse it, skip up to its newline. */
				if (!k->overflow)
					answer(k, is_stdin, "err too_long");
				k->overflow = true;
				k->len = 0;
			}
			break;
		}
		*nl = '\0';
		used = (size_t)(nl - k->buf) + 1;
		if (k->overflow) {
			k->overflow = false;
		} else if (k->buf[0] != '\0' && k->buf[0] != '#') {
			quit = sim_control_exec(c->s, k->buf, out, sizeof(out));
			answer(k, is_stdin, out);
			if (!is_stdin && k->fd < 0)
				return -1;
		}
		memmove(k->buf, k->buf + used, k->len - used);
		k->len -= used;
		if (quit)
			return 1;
	}
	return 0;
}

int sim_control_run(struct sim_control *c, int stop_fd)
{
	for (;;) {
		struct pollfd pf[3 + CTL_MAX_CLIENTS];
		int idx[3 + CTL_MAX_CLIENTS];
		int np = 0, timeout = CTL_TICK_MAX_MS, rc;
		int64_t now = cw_mono_ms(), next = sim_tick(c->s, now);

		if (next > 0 && next - now < timeout)
			timeout = (int)(next - now < 0 ? 0 : next - now);
		pf[np] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
		idx[np++] = -3;
		if (c->stdin_open) {
			pf[np] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
			idx[np++] = -2;
		}
		if (c->listen_fd >= 0) {
			pf[np] = (struct pollfd){.fd = c->listen_fd, .events = POLLIN};
			idx[np++] = -1;
		}
		for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
			if (c->conn[i].fd < 0)
				continue;
			pf[np] = (struct pollfd){.fd = c->conn[i].fd, .events = POLLIN};
			idx[np++] = i;
		}
		rc = poll(pf, (nfds_t)np, timeout);
		if (rc < 0 && errno != EINTR)
			return CW_ERR_IO;
		if (rc <= 0)
			continue;
		for (int p = 0; p < np; p++) {
			if (!pf[p].revents)
				continue;
			if (idx[p] == -3)
				return CW_OK;
			if (idx[p] == -2) {
				rc = serve(c, &c->in, true);
				if (rc == 1)
					return CW_OK;
				if (rc < 0) /* EOF on stdin does not stop the simulator */
					c->stdin_open = false;
			} else if (idx[p] == -1) {
				int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
				int i;

				if (fd < 0)
					continue;
				for (i = 0; i < CTL_MAX_CLIENTS && c->conn[i].fd >= 0; i++)
					;
				if (i == CTL_MAX_CLIENTS) {
					const char *busy = "err too_many_clients\n";
					ssize_t k = send(fd, busy, strlen(busy), MSG_DONTWAIT | MSG_NOSIGNAL);

					(void)k;
					close(fd);
					continue;
				}
				c->conn[i] = (struct ctl_conn){.fd = fd};
			} else {
				struct ctl_conn *k = &c->conn[idx[p]];

				rc = serve(c, k, false);
				if (rc == 1)
					return CW_OK;
				if (rc < 0 && k->fd >= 0) {
					close(k->fd);
					k->fd = -1;
				}
			}
		}
	}
}
