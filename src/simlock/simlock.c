/* simlock.c - cartwise-simlock: one or more lock boards on a pseudo-terminal.
 *
 * The edge daemon opens the pty's slave side (through the --link symlink)
 * exactly like a USB-RS485 adapter. Protocols, wire model, faults and the
 * control channel are described in docs/PROTOCOL.md. */
#include "sim.h"

#include "cw_error.h"
#include "cw_log.h"
#include "cw_version.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define EXIT_USAGE 2

static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	int saved = errno;
	ssize_t k = write(sig_pipe[1], "s", 1);

	(void)k;
	(void)sig;
	errno = saved;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: cartwise-simlock --protocol modbus|kerong --link PATH [options]\n"
		"Simulates RS485 lock boards on a pseudo-terminal; PATH becomes a symlink to its\n"
		"slave side. Prints 'ready link=PATH pty=/dev/pts/N' when serving.\n"
		"\n"
		"  --protocol P          modbus (Modbus-RTU) or kerong (KR-CU16)\n"
		"  --link PATH           symlink to create for the pty (replaced if a symlink)\n"
		"  --board ADDR[:LOCKS]  a board (repeatable; modbus 1-247, max 32 locks;\n"
		"                        kerong 0-15, max 16 locks). Default: one board at\n"
		"                        address 1 (modbus) or 0 (kerong)\n"
		"  --locks N             locks of boards given without :LOCKS (default 16)\n"
		"  --baud B              wire speed to pace at, 8N1 (default 19200)\n"
		"  --no-pace             answer at once (fast tests)\n"
		"  --control PATH        also accept control commands on this Unix socket\n"
		"  --relatch-ms MS       a released hook whose cart stays closes again after MS\n"
		"  --auto-take-ms MS     a simulated customer takes the cart MS after a release\n"
		"  --help                this text\n"
		"\n"
		"Control commands (stdin or socket, one per line): take B L, dock B L, empty B L,\n"
		"state B L, board B, fault silent|crc|dup B on|off, fault stuck B L on|off,\n"
		"fault slow B MS, fault zero on|off, stats, quit. See docs/PROTOCOL.md.\n");
}

static int bad_arg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_arg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cartwise-simlock: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'cartwise-simlock --help'.\n");
	return CW_ERR_INVAL;
}

static bool num(const char *str, long min, long max, int *out)
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

static int parse_args(int argc, char **argv, struct sim_opts *o, const char **board_args,
		      int *nboard_args)
{
	enum { OPT_NO_PACE = 256, OPT_RELATCH, OPT_AUTO_TAKE };
	static const struct option longopts[] = {
		{"protocol", required_argument, NULL, 'p'},
		{"link", required_argument, NULL, 'l'},
		{"board", required_argument, NULL, 'b'},
		{"locks", required_argument, NULL, 'n'},
		{"baud", required_argument, NULL, 'B'},
		{"no-pace", no_argument, NULL, OPT_NO_PACE},
		{"control", required_argument, NULL, 'c'},
		{"relatch-ms", required_argument, NULL, OPT_RELATCH},
		{"auto-take-ms", required_argument, NULL, OPT_AUTO_TAKE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *proto = NULL;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			proto = optarg;
			break;
		case 'l':
			o->link = optarg;
			break;
		case 'b':
			if (*nboard_args == SIM_MAX_BOARDS)
				return bad_arg("at most 16 --board options");
			board_args[(*nboard_args)++] = optarg;
			break;
		case 'n':
			if (!num(optarg, 1, SIM_MAX_LOCKS, &o->default_locks))
				return bad_arg("--locks wants 1-32, got '%s'", optarg);
			break;
		case 'B':
			if (!num(optarg, 300, 4000000, &o->baud))
				return bad_arg("--baud wants 300-4000000, got '%s'", optarg);
			break;
		case OPT_NO_PACE:
			o->pace = false;
			break;
		case 'c':
			o->control = optarg;
			break;
		case OPT_RELATCH:
			if (!num(optarg, 0, INT_MAX / 2, &o->relatch_ms))
				return bad_arg("--relatch-ms wants a number of ms >= 0, got '%s'", optarg);
			break;
		case OPT_AUTO_TAKE:
			if (!num(optarg, 0, INT_MAX / 2, &o->auto_take_ms))
				return bad_arg("--auto-take-ms wants a number of ms >= 0, got '%s'",
					       optarg);
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_SUCCESS);
		default:
			return bad_arg("unknown option or missing value: '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad_arg("unexpected argument '%s'", argv[optind]);
	if (!proto)
		return bad_arg("--protocol is required (modbus or kerong)");
	if (strcmp(proto, "modbus") == 0)
		o->protocol = SIM_MODBUS;
	else if (strcmp(proto, "kerong") == 0)
		o->protocol = SIM_KERONG;
	else
		return bad_arg("--protocol wants modbus or kerong, got '%s'", proto);
	if (!o->link || !*o->link)
		return bad_arg("--link PATH is required");
	return CW_OK;
}

/* Turns the --board strings into addresses and lock counts. */
static int parse_boards(struct sim_opts *o, const char **board_args, int n)
{
	bool kr = o->protocol == SIM_KERONG;
	int amin = kr ? 0 : 1, amax = kr ? 15 : 247, lmax = kr ? SIM_KR_MAX_LOCKS : SIM_MAX_LOCKS;

	if (o->default_locks > lmax)
		return bad_arg("--locks: a Kerong board has at most 16 locks");
	if (n == 0) {
		o->nboards = 1;
		o->board_addr[0] = kr ? 0 : 1;
		return CW_OK;
	}
	for (int i = 0; i < n; i++) {
		char a[32], *colon;

		if (strlen(board_args[i]) >= sizeof(a))
			return bad_arg("--board '%s' is too long", board_args[i]);
		snprintf(a, sizeof(a), "%s", board_args[i]);
		colon = strchr(a, ':');
		if (colon)
			*colon = '\0';
		if (!num(a, amin, amax, &o->board_addr[i]))
			return bad_arg("--board '%s': %s addresses are %d-%d", board_args[i],
				       kr ? "Kerong" : "Modbus", amin, amax);
		if (colon && !num(colon + 1, 1, lmax, &o->board_locks[i]))
			return bad_arg("--board '%s': LOCKS must be 1-%d", board_args[i], lmax);
		for (int j = 0; j < i; j++)
			if (o->board_addr[j] == o->board_addr[i])
				return bad_arg("--board '%s': address given twice (use 'fault dup' "
					       "to simulate two boards on one address)",
					       board_args[i]);
	}
	o->nboards = n;
	return CW_OK;
}

/* Opens a pty pair in raw mode. *master is non-blocking; *slave stays open
 * for the simulator's lifetime so the master never sees EIO between two
 * openers of the link and the line settings persist. */
static int open_pty(int *master, int *slave, char *name, size_t cap)
{
	struct termios t;
	int m, sl = -1;

	m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, cap) != 0)
		goto fail;
	sl = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (sl < 0 || tcgetattr(sl, &t) < 0)
		goto fail;
	cfmakeraw(&t);
	t.c_cflag |= CLOCAL | CREAD;
	if (tcsetattr(sl, TCSANOW, &t) < 0)
		goto fail;
	*master = m;
	*slave = sl;
	return CW_OK;
fail:
	fprintf(stderr, "cartwise-simlock: cannot open a pseudo-terminal: %s\n", strerror(errno));
	if (sl >= 0)
		close(sl);
	if (m >= 0)
		close(m);
	return CW_ERR_IO;
}

/* Points link at target: an existing symlink is replaced atomically; any
 * other file at that path is left alone and refused. */
static int make_link(const char *link, const char *target)
{
	char tmp[PATH_MAX];
	struct stat st;

	if (lstat(link, &st) == 0 && !S_ISLNK(st.st_mode)) {
		fprintf(stderr, "cartwise-simlock: --link %s exists and is not a symlink\n", link);
		return CW_ERR_INVAL;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp%ld", link, (long)getpid()) >= (int)sizeof(tmp)) {
		fprintf(stderr, "cartwise-simlock: --link path too long\n");
		return CW_ERR_TOOBIG;
	}
	unlink(tmp);
	if (symlink(target, tmp) < 0 || rename(tmp, link) < 0) {
		fprintf(stderr, "cartwise-simlock: cannot create symlink %s: %s\n", link,
			strerror(errno));
		unlink(tmp);
		return CW_ERR_IO;
	}
	return CW_OK;
}

/* Removes the link only if it still points at our pty (a newer simulator
 * may have taken the name over). */
static void remove_link(const char *link, const char *target)
{
	char cur[PATH_MAX];
	ssize_t n = readlink(link, cur, sizeof(cur) - 1);

	if (n < 0)
		return;
	cur[n] = '\0';
	if (strcmp(cur, target) == 0)
		unlink(link);
}

int main(int argc, char **argv)
{
	struct sim_opts o = {.baud = 19200, .pace = true, .default_locks = 16};
	const char *board_args[SIM_MAX_BOARDS];
	int nboard_args = 0, master = -1, slave = -1, rc, status = EXIT_FAILURE;
	char pty[128] = "";
	bool linked = false;
	struct sim *s = NULL;
	struct sim_wire *w = NULL;
	struct sim_control *ctl = NULL;
	struct sigaction sa = {.sa_handler = on_signal};

	/* With fd 0-2 closed by the caller, the pty could land on fd 0 and be
	 * read as the control channel: park /dev/null there first. */
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
			return EXIT_FAILURE;
	if (parse_args(argc, argv, &o, board_args, &nboard_args) < 0 ||
	    parse_boards(&o, board_args, nboard_args) < 0)
		return EXIT_USAGE;
	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return EXIT_FAILURE;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = sim_new(&o, &s);
	if (rc < 0)
		goto out;
	if (o.protocol == SIM_MODBUS && (rc = sim_modbus_init(s)) < 0)
		goto out;
	rc = sim_control_new(s, o.control, &ctl);
	if (rc < 0)
		goto out;
	rc = open_pty(&master, &slave, pty, sizeof(pty));
	if (rc < 0)
		goto out;
	rc = make_link(o.link, pty);
	if (rc < 0)
		goto out;
	linked = true;
	rc = sim_wire_new(s, master, slave, pty, &w);
	if (rc < 0)
		goto out;
	cw_info("sim.start", "version=%s protocol=%s link=%s pty=%s boards=%d baud=%d pace=%d",
		CW_VERSION, o.protocol == SIM_MODBUS ? "modbus" : "kerong", o.link, pty, s->nboards,
		o.baud, o.pace ? 1 : 0);
	printf("ready link=%s pty=%s\n", o.link, pty);
	fflush(stdout);

	rc = sim_control_run(ctl, sig_pipe[0]);
	if (rc == CW_OK)
		status = EXIT_SUCCESS;
	/* Join the wire threads before reading their counters: they count
	 * under s->lock while running, and would race with this read. */
	sim_wire_free(w);
	w = NULL;
	pthread_mutex_lock(&s->lock);
	cw_info("sim.stop", "requests=%llu replies=%llu releases=%llu",
		(unsigned long long)s->requests, (unsigned long long)s->replies,
		(unsigned long long)s->releases);
	pthread_mutex_unlock(&s->lock);
out:
	if (rc == CW_ERR_INVAL || rc == CW_ERR_TOOBIG)
		status = EXIT_USAGE; /* a --link or --control path we must not use */
	if (rc < 0 && rc != CW_ERR_INVAL && rc != CW_ERR_TOOBIG && rc != CW_ERR_IO)
		fprintf(stderr, "cartwise-simlock: %s\n", cw_strerror(rc));
	sim_wire_free(w);
	if (linked)
		remove_link(o.link, pty);
	sim_control_free(ctl);
	if (s)
		sim_modbus_fini(s);
	sim_free(s);
	if (slave >= 0)
		close(slave);
	if (master >= 0)
		close(master);
	close(sig_pipe[0]);
	close(sig_pipe[1]);
	return status;
}
