/* cw_serial.c - raw serial port with RS485 mode and deadline reads. */
#include "cw_serial.h"
#include "cw_error.h"
#include "cw_log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/serial.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

struct cw_serial {
	int fd;
	int rs485;
};

int64_t cw_serial_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cw_serial_sleep_until_us(int64_t t_us)
{
	struct timespec ts = {.tv_sec = t_us / 1000000, .tv_nsec = (t_us % 1000000) * 1000};

	if (t_us <= cw_serial_now_us())
		return;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

int64_t cw_serial_char_us(int baud, char parity)
{
	/* start + 8 data + (parity) + 1 stop */
	int bits = (parity == 'E' || parity == 'O') ? 11 : 10;

	if (baud <= 0)
		baud = 19200;
	return ((int64_t)bits * 1000000 + baud - 1) / baud;
}

static int baud_constant(int baud, speed_t *out)
{
	static const struct {
		int baud;
		speed_t c;
	} map[] = {
		{1200, B1200},   {2400, B2400},   {4800, B4800},     {9600, B9600},
		{19200, B19200}, {38400, B38400}, {57600, B57600},   {115200, B115200},
		{230400, B230400},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (map[i].baud == baud) {
			*out = map[i].c;
			return CW_OK;
		}
	}
	return CW_ERR_INVAL;
}

int cw_serial_new(const char *path, int baud, char parity, struct cw_serial **out)
{
	struct cw_serial *s = NULL;
	struct termios tio;
	struct serial_rs485 rs;
	speed_t speed;
	int rc;

	*out = NULL;
	if (!path || !*path || (parity != 'N' && parity != 'E' && parity != 'O'))
		return CW_ERR_INVAL;
	rc = baud_constant(baud, &speed);
	if (rc < 0)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CW_ERR_NOMEM;
	s->fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (s->fd < 0) {
		rc = CW_ERR_IO;
		goto out;
	}
	if (tcgetattr(s->fd, &tio) != 0) {
		rc = CW_ERR_IO; /* not a tty */
		goto out;
	}
	cfmakeraw(&tio);
	tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
	tio.c_cflag |= CS8 | CLOCAL | CREAD;
	if (parity != 'N')
		tio.c_cflag |= PARENB | (parity == 'O' ? PARODD : 0);
	tio.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY | INPCK);
	tio.c_cc[VMIN] = 0;
	tio.c_cc[VTIME] = 0;
	if (cfsetispeed(&tio, speed) != 0 || cfsetospeed(&tio, speed) != 0 ||
	    tcsetattr(s->fd, TCSANOW, &tio) != 0) {
		rc = CW_ERR_IO;
		goto out;
	}
	/* Keep other programs off the port while the bus owns it. */
	(void)ioctl(s->fd, TIOCEXCL);
	/* Driver-controlled transmitter enable (RTS high while sending). USB
	 * adapters and ptys refuse this ioctl: they need no help, so go on. */
	memset(&rs, 0, sizeof(rs));
	rs.flags = SER_RS485_ENABLED | SER_RS485_RTS_ON_SEND;
	s->rs485 = ioctl(s->fd, TIOCSRS485, &rs) == 0;
	if (!s->rs485)
		cw_debug("serial.rs485", "port=%s result=unsupported errno=%d", path, errno);
	tcflush(s->fd, TCIOFLUSH);
	*out = s;
	s = NULL;
	rc = CW_OK;
out:
	cw_serial_free(s);
	return rc;
}

void cw_serial_free(struct cw_serial *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

int cw_serial_fd(const struct cw_serial *s)
{
	return s->fd;
}

int cw_serial_rs485_enabled(const struct cw_serial *s)
{
	return s->rs485;
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			if (poll(&p, 1, 1000) <= 0)
				return CW_ERR_IO;
			continue;
		}
		return CW_ERR_IO;
	}
	return CW_OK;
}

int cw_serial_write_nodrain(struct cw_serial *s, const uint8_t *buf, size_t len)
{
	return write_all(s->fd, buf, len);
}

int cw_serial_write(struct cw_serial *s, const uint8_t *buf, size_t len)
{
	int rc = write_all(s->fd, buf, len);

	if (rc < 0)
		return rc;
	/* The request is on the wire before we start timing the answer. */
	while (tcdrain(s->fd) != 0) {
		if (errno != EINTR)
			return CW_ERR_IO;
	}
	return CW_OK;
}

int cw_serial_read_fd(int fd, uint8_t *buf, size_t cap, int64_t deadline_us)
{
	if (cap == 0)
		return CW_ERR_INVAL;
	for (;;) {
		ssize_t n = read(fd, buf, cap);
		if (n > 0)
			return (int)n;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return CW_ERR_IO;
		/* n == 0 on a tty in non-blocking raw mode just means "nothing". */
		int64_t left = deadline_us - cw_serial_now_us();
		if (left <= 0)
			return CW_ERR_TIMEOUT;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		struct timespec ts = {.tv_sec = left / 1000000, .tv_nsec = (left % 1000000) * 1000};
		int r = ppoll(&p, 1, &ts, NULL);
		if (r < 0 && errno != EINTR)
			return CW_ERR_IO;
		if (r > 0 && (p.revents & (POLLERR | POLLNVAL)))
			return CW_ERR_IO;
		if (r > 0 && (p.revents & POLLHUP) && !(p.revents & POLLIN)) {
			/* The other side of a pty is gone: nothing will come. Wait
			 * out the deadline like a silent line would, without
			 * spinning. */
			cw_serial_sleep_until_us(deadline_us);
			return CW_ERR_TIMEOUT;
		}
	}
}

int64_t cw_serial_due_us(int64_t from_us, int bytes, int64_t char_us)
{
	int64_t margin = char_us / 2 > 200 ? char_us / 2 : 200;

	if (bytes < 0)
		bytes = 0;
	return from_us + (int64_t)bytes * char_us + margin;
}

int cw_serial_read_due_fd(int fd, uint8_t *buf, size_t cap, int64_t due_us, int64_t deadline_us)
{
	if (cap == 0)
		return CW_ERR_INVAL;
	/* A plain sleep, not a poll: poll would return at the first byte. */
	cw_serial_sleep_until_us(due_us < deadline_us ? due_us : deadline_us);
	return cw_serial_read_fd(fd, buf, cap, deadline_us);
}

int cw_serial_read(struct cw_serial *s, uint8_t *buf, size_t cap, int64_t deadline_us)
{
	return cw_serial_read_fd(s->fd, buf, cap, deadline_us);
}

int cw_serial_drain_fd(int fd, int64_t quiet_us, int64_t deadline_us)
{
	uint8_t junk[64];
	int dropped = 0;

	for (;;) {
		int64_t now = cw_serial_now_us();
		int64_t until = now + quiet_us;
		if (until > deadline_us)
			until = deadline_us;
		if (until <= now)
			return dropped;
		int n = cw_serial_read_fd(fd, junk, sizeof(junk), until);
		if (n <= 0)
			return dropped;
		dropped += n;
	}
}

int cw_serial_wait_quiet_fd(int fd, int64_t first_wait_us, int64_t quiet_us, int64_t deadline_us,
			    uint8_t *keep, size_t keep_cap, size_t *kept)
{
	uint8_t junk[64];
	int dropped = 0;
	int64_t wait = first_wait_us > 0 ? first_wait_us : 0;

	if (kept)
		*kept = 0;
	for (;;) {
		int64_t now = cw_serial_now_us();
		int64_t until = now + wait;
		int n;

		if (until > deadline_us)
			until = deadline_us;
		/* wait == 0: only what is already there */
		n = cw_serial_read_fd(fd, junk, sizeof(junk), until);
		if (n <= 0)
			return dropped;
		if (keep && kept && *kept < keep_cap) {
			size_t c = keep_cap - *kept < (size_t)n ? keep_cap - *kept : (size_t)n;
			memcpy(keep + *kept, junk, c);
			*kept += c;
		}
		dropped += n;
		if (cw_serial_now_us() >= deadline_us)
			return dropped;
		wait = quiet_us; /* a full silence after the last stray byte */
	}
}

int cw_serial_flush(struct cw_serial *s)
{
	return tcflush(s->fd, TCIOFLUSH) == 0 ? CW_OK : CW_ERR_IO;
}
