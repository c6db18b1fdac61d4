#include "cw_testutil.h"
#include "cw_clock.h"
#include "cw_error.h"

#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

int cw_test_tmpdir(char *out, size_t cap)
{
	const char *base = getenv("TMPDIR");
	int n = snprintf(out, cap, "%s/cwtest.XXXXXX", base && *base ? base : "/tmp");
	if (n < 0 || (size_t)n >= cap)
		return CW_ERR_TOOBIG;
	return mkdtemp(out) ? CW_OK : CW_ERR_IO;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(path);
}

int cw_test_stderr_to(const char *path)
{
	int saved, fd;

	fflush(stderr);
	saved = dup(2);
	if (saved < 0)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || dup2(fd, 2) < 0) {
		if (fd >= 0)
			close(fd);
		close(saved);
		return -1;
	}
	close(fd);
	return saved;
}

long cw_test_stderr_back(int saved, const char *path, char *buf, size_t cap)
{
	ssize_t n;
	int fd;

	fflush(stderr);
	if (saved < 0 || dup2(saved, 2) < 0)
		return -1;
	close(saved);
	if (!buf || cap == 0)
		return 0;
	buf[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return (long)n;
}

void cw_test_rmrf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int cw_test_build_path(const char *rel, char *out, size_t cap)
{
	const char *b = getenv("CW_BUILD_DIR");
	int n = snprintf(out, cap, "%s/%s", b && *b ? b : ".", rel);
	if (n < 0 || (size_t)n >= cap)
		return CW_ERR_TOOBIG;
	return CW_OK;
}

/* ---- cartwise-simlock ---- */

#define SIM_MAX_ARGS 48

struct cw_test_sim {
	pid_t pid;
	int out_fd;          /* the simulator's stdout */
	pthread_t drain;
	bool drain_started;
	char dir[256];
	char link[300];
	char sock[300];
};

/* Forwards the simulator's stdout to our stderr after "ready", so it never
 * blocks on a full pipe. */
static void *sim_drain(void *arg)
{
	struct cw_test_sim *s = arg;
	char buf[512];
	ssize_t n;

	while ((n = read(s->out_fd, buf, sizeof(buf))) > 0) {
		ssize_t k = write(STDERR_FILENO, buf, (size_t)n);
		(void)k;
	}
	return NULL;
}

/* The words of MESON_EXE_WRAPPER, which meson test sets in a cross build
 * to the cross file's exe_wrapper (scripts/test-arm64: qemu-aarch64-static),
 * put first in argv: the simulator is built for the host machine too, and
 * without binfmt_misc (containers) only the wrapper runs it. Words are split
 * at spaces (meson quotes a word with spaces: refused). Unset: no words. */
#define SIM_WRAP_MAX 8
static int exe_wrapper(char *buf, size_t cap, const char **argv, int max, int *argc)
{
	const char *w = getenv("MESON_EXE_WRAPPER");
	char *save = NULL, *tok;

	if (!w || !*w)
		return CW_OK;
	if (strlen(w) >= cap || strpbrk(w, "'\"\\")) {
		fprintf(stderr, "cw_test_sim_start: MESON_EXE_WRAPPER=%s: too long or quoted\n", w);
		return CW_ERR_INVAL;
	}
	memcpy(buf, w, strlen(w) + 1);
	for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		if (*argc >= max) {
			fprintf(stderr, "cw_test_sim_start: MESON_EXE_WRAPPER has over %d words\n", max);
			return CW_ERR_TOOBIG;
		}
		argv[(*argc)++] = tok;
	}
	return CW_OK;
}

int cw_test_sim_start(const char *protocol, const char *const *args, struct cw_test_sim **out)
{
	struct cw_test_sim *s;
	const char *argv[SIM_MAX_ARGS];
	char prog[512], line[512], wrap[512];
	size_t len = 0;
	int pfd[2] = {-1, -1}, argc = 0, rc;
	int64_t end;

	*out = NULL;
	if (cw_test_build_path("src/simlock/cartwise-simlock", prog, sizeof(prog)) < 0)
		return CW_ERR_TOOBIG;
	if (access(prog, X_OK) != 0) {
		fprintf(stderr, "cw_test_sim_start: %s is not built\n", prog);
		return CW_ERR_NOTFOUND;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return CW_ERR_NOMEM;
	s->pid = -1;
	s->out_fd = -1;
	rc = cw_test_tmpdir(s->dir, sizeof(s->dir));
	if (rc < 0)
		goto fail;
	snprintf(s->link, sizeof(s->link), "%s/link", s->dir);
	snprintf(s->sock, sizeof(s->sock), "%s/ctl", s->dir);
	rc = exe_wrapper(wrap, sizeof(wrap), argv, SIM_WRAP_MAX, &argc);
	if (rc < 0)
		goto fail;
	argv[argc++] = prog;
	argv[argc++] = "--protocol";
	argv[argc++] = protocol;
	argv[argc++] = "--link";
	argv[argc++] = s->link;
	argv[argc++] = "--control";
	argv[argc++] = s->sock;
	for (int i = 0; args && args[i]; i++) {
		if (argc >= SIM_MAX_ARGS - 1) {
			rc = CW_ERR_TOOBIG;
			goto fail;
		}
		argv[argc++] = args[i];
	}
	argv[argc] = NULL;
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		rc = CW_ERR_IO;
		goto fail;
	}
	s->pid = fork();
	if (s->pid < 0) {
		rc = CW_ERR_IO;
		goto fail;
	}
	if (s->pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		/* The simulator must not outlive a crashed test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(pfd[1], STDOUT_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	pfd[1] = -1;
	s->out_fd = pfd[0];
	pfd[0] = -1;

	/* Wait for "ready link=... pty=..." */
	end = cw_mono_ms() + 10000;
	rc = CW_ERR_TIMEOUT;
	while (cw_mono_ms() < end && len < sizeof(line) - 1) {
		struct pollfd p = {.fd = s->out_fd, .events = POLLIN};
		ssize_t n;
		char *nl;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(s->out_fd, line + len, sizeof(line) - 1 - len);
		if (n <= 0) {
			rc = CW_ERR_IO; /* exited */
			break;
		}
		len += (size_t)n;
		line[len] = '\0';
		nl = strstr(line, "ready");
		if (nl && strchr(nl, '\n')) {
			rc = CW_OK;
			break;
		}
	}
	if (rc < 0) {
		fprintf(stderr, "cw_test_sim_start: simulator did not become ready (%s)\n",
			cw_strerror(rc));
		goto fail;
	}
	if (pthread_create(&s->drain, NULL, sim_drain, s) == 0)
		s->drain_started = true;
	*out = s;
	return CW_OK;
fail:
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	cw_test_sim_stop(s);
	return rc;
}

const char *cw_test_sim_link(const struct cw_test_sim *s)
{
	return s->link;
}

int cw_test_sim_cmd(struct cw_test_sim *s, char *reply, size_t cap, const char *fmt, ...)
{
	struct sockaddr_un sa;
	char cmd[256], ans[256];
	size_t len = 0;
	int fd, n, rc = CW_ERR_IO;
	va_list ap;
	int64_t end = cw_mono_ms() + 5000;

	if (reply && cap)
		reply[0] = '\0';
	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd) - 1)
		return CW_ERR_TOOBIG;
	cmd[n++] = '\n';
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(s->sock) >= sizeof(sa.sun_path))
		return CW_ERR_TOOBIG;
	memcpy(sa.sun_path, s->sock, strlen(s->sock) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return CW_ERR_IO;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    send(fd, cmd, (size_t)n, MSG_NOSIGNAL) != n)
		goto out;
	rc = CW_ERR_TIMEOUT;
	while (cw_mono_ms() < end && len < sizeof(ans) - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t k;
		char *nl;

		if (poll(&p, 1, 100) <= 0)
			continue;
		k = read(fd, ans + len, sizeof(ans) - 1 - len);
		if (k <= 0) {
			rc = CW_ERR_IO;
			break;
		}
		len += (size_t)k;
		ans[len] = '\0';
		nl = strchr(ans, '\n');
		if (nl) {
			*nl = '\0';
			if (reply && cap)
				snprintf(reply, cap, "%s", ans);
			rc = strncmp(ans, "ok", 2) == 0 ? CW_OK : CW_ERR_STATE;
			break;
		}
	}
out:
	close(fd);
	return rc;
}

void cw_test_sim_stop(struct cw_test_sim *s)
{
	if (!s)
		return;
	if (s->pid > 0) {
		int st;
		int64_t end;

		cw_test_sim_cmd(s, NULL, 0, "quit");
		end = cw_mono_ms() + 3000;
		while (waitpid(s->pid, &st, WNOHANG) == 0) {
			if (cw_mono_ms() > end) {
				kill(s->pid, SIGKILL);
				waitpid(s->pid, &st, 0);
				break;
			}
			cw_sleep_ms(10);
		}
	}
	if (s->drain_started)
		pthread_join(s->drain, NULL); /* EOF once the simulator is gone */
	if (s->out_fd >= 0)
		close(s->out_fd);
	if (s->dir[0])
		cw_test_rmrf(s->dir);
	free(s);
}

long long cw_test_db_int(const char *path, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	long long v = -2;

	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(h, 5000);
		if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK)
			v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
		sqlite3_finalize(st);
	}
	sqlite3_close(h);
	return v;
}

cJSON *cw_test_json(const char *single_quoted)
{
	char *o = strdup(single_quoted);
	cJSON *j;

	if (!o)
		return NULL;
	for (char *c = o; *c; c++)
		if (*c == '\'')
			*c = '"';
	j = cJSON_Parse(o);
	free(o);
	return j;
}
