/* cw_drv_modbus.c - Modbus-RTU lock boards on libmodbus.
 *
 * Default register map of a "generic lock board" with N locks (BRIEF.md §3,
 * docs/HARDWARE.md), every base configurable per board:
 *   coil coil_base+i              lock i release relay (FC05, pulsed)
 *   discrete input hook_base+i    lock i hook closed   (FC02)
 *   discrete input present_base+i cart present in slot i (FC02)
 * A poll reads hook and present inputs of a whole board in ONE FC02 request
 * when the two ranges are adjacent (the default map) or close together.
 *
 * libmodbus owns the port (modbus_new_rtu, termios, RS485 mode), builds every
 * request and its CRC (modbus_send_raw_request) and checks every reply's
 * CRC and layout (modbus_receive_confirmation). The one thing it cannot do is
 * skip line noise before a reply: a Pi UART sees a spurious 0x00 after the
 * RS485 direction switch (BRIEF.md §3), and libmodbus would take it for the
 * slave address and fail every transaction. So this driver receives the
 * frame itself - dropping leading 0x00 bytes, which can never start a reply
 * to a unicast request (slave ids are 1-247, Modbus over serial line V1.02
 * §2.2) - and hands the clean frame to libmodbus through a pipe for the CRC
 * and structure checks. */
#include "cw_lockbus.h"
#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_serial.h"

#include <errno.h>
#include <fcntl.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FC_READ_DISCRETE_INPUTS 0x02
#define FC_WRITE_SINGLE_COIL 0x05
/* Modbus Application Protocol V1.1b3 §6.5: FC05 ON = 0xFF00, OFF = 0x0000. */
#define COIL_ON 0xff00
#define COIL_OFF 0x0000
/* Modbus over serial line V1.02 §2.5.1.1: RTU ADU at most 256 bytes. */
#define RTU_MAX_ADU 256
/* The shortest reply: an exception, slave fc|0x80 code crc crc (Modbus over
 * serial line V1.02 §2.5.1; Application Protocol V1.1b3 §7). Reading this
 * many bytes before the length is known can never take bytes behind the
 * frame. */
#define RTU_MIN_REPLY 5
/* A reply short of this many bytes at its due time is late by a fraction of
 * a character (the sender or our wake-up): poll for the rest, rather than
 * sleep a whole margin more. */
#define LATE_TAIL_BYTES 2
/* Registers apart by up to this many inputs are still read in one request:
 * two more bytes on the wire cost less than a second round trip. */
#define MAX_GAP_INPUTS 16
/* Between the bytes of one reply. A USB adapter delivers in chunks up to its
 * 16 ms latency timer apart (BRIEF.md §3). */
#define MIN_BYTE_TIMEOUT_US 20000
/* A slave seen answering after its response timeout (its frame arrives in
 * another slave's window) is not trusted for this many response timeouts:
 * RTU has no transaction id, so its next "answer" may be a late one. */
#define LATE_HOLD_TIMEOUTS 5
/* An answer that starts after half the response timeout may be the late
 * answer to an earlier request that happens to land in this window, again
 * and again (a board slower than the timeout, polled at a steady rhythm).
 * Such a board is verified - at most once a second - with a 1-input FC02
 * read, whose 1-byte answer cannot be confused with a whole-board one. */
#define VERIFY_INTERVAL_US 1000000

struct cw_lockdrv {
	modbus_t *ctx;
	int fd;          /* the port, opened by libmodbus */
	int pipefd[2];   /* clean reply frames to libmodbus */
	int64_t gap_us;
	int64_t resp_us;
	int64_t byte_us;
	int64_t char_us;
	int64_t last_end_us; /* end of the last transaction on the wire */
	int64_t late_until[256]; /* slave seen answering after its timeout */
	int64_t verified_at[256]; /* last verification read of a slave */
	int64_t last_lat_us;     /* request end to start of the last answer */
	char port[256];
};

static void mb_close(struct cw_lockdrv *d)
{
	if (!d)
		return;
	if (d->ctx) {
		modbus_set_socket(d->ctx, d->fd);
		modbus_close(d->ctx);
		modbus_free(d->ctx);
	}
	if (d->pipefd[0] >= 0)
		close(d->pipefd[0]);
	if (d->pipefd[1] >= 0)
		close(d->pipefd[1]);
	free(d);
}

static int mb_open(const struct cw_bus_config *cfg, struct cw_lockdrv **out)
{
	struct cw_lockdrv *d;
	int rc;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return CW_ERR_NOMEM;
	d->fd = -1;
	d->pipefd[0] = d->pipefd[1] = -1;
	snprintf(d->port, sizeof(d->port), "%s", cfg->port);
	d->gap_us = (int64_t)cfg->inter_frame_gap_ms * 1000;
	d->resp_us = (int64_t)cfg->response_timeout_ms * 1000;
	d->char_us = cw_serial_char_us(cfg->baud, cfg->parity);
	d->byte_us = d->char_us * 4 > MIN_BYTE_TIMEOUT_US ? d->char_us * 4 : MIN_BYTE_TIMEOUT_US;
	if (d->byte_us > d->resp_us)
		d->byte_us = d->resp_us;

	d->ctx = modbus_new_rtu(cfg->port, cfg->baud, cfg->parity, 8, 1);
	if (!d->ctx) {
		rc = CW_ERR_CONFIG; /* bad baud or parity */
		goto out;
	}
	if (modbus_connect(d->ctx) == -1) {
		modbus_free(d->ctx);
		d->ctx = NULL;
		rc = CW_ERR_IO;
		goto out;
	}
	/* RS485 direction by the kernel driver where the UART has it; USB
	 * adapters and ptys refuse the ioctl and need no help. */
	if (modbus_rtu_set_serial_mode(d->ctx, MODBUS_RTU_RS485) == -1)
		cw_debug("modbus.rs485", "port=%s result=unsupported", cfg->port);
	modbus_set_response_timeout(d->ctx, (uint32_t)(d->resp_us / 1000000),
				    (uint32_t)(d->resp_us % 1000000));
	modbus_set_byte_timeout(d->ctx, (uint32_t)(d->byte_us / 1000000),
				(uint32_t)(d->byte_us % 1000000));
	d->fd = modbus_get_socket(d->ctx);
	if (pipe2(d->pipefd, O_CLOEXEC | O_NONBLOCK) != 0) {
		rc = CW_ERR_IO;
		goto out;
	}
	modbus_flush(d->ctx);
	*out = d;
	d = NULL;
	rc = CW_OK;
out:
	mb_close(d);
	return rc;
}

static int map_errno(int e)
{
	if (e == ETIMEDOUT)
		return CW_ERR_TIMEOUT;
	if (e >= MODBUS_ENOBASE)
		return CW_ERR_PROTO; /* bad CRC, bad data, exception, bad slave */
	return CW_ERR_IO;
}

/* After a garbled or missing reply: let the rest of the garbage arrive and
 * drop it, so it cannot be read as the next answer. */
static void recover(struct cw_lockdrv *d)
{
	int64_t now = cw_serial_now_us();

	cw_serial_drain_fd(d->fd, d->char_us * 4 + d->gap_us, now + d->resp_us);
	modbus_flush(d->ctx);
}

/* Expected total length of a reply frame once its first 3 bytes are in
 * (same rules as libmodbus's receiver for a confirmation). 0 = unknown. */
static int frame_len(const uint8_t *f, int n)
{
	if (n < 2)
		return 0;
	if (f[1] & 0x80)
		return 5; /* slave fc|0x80 exception-code crc crc */
	if (f[1] == FC_WRITE_SINGLE_COIL)
		return 8; /* echo of the request */
	if (f[1] == FC_READ_DISCRETE_INPUTS || f[1] == 0x01) {
		if (n < 3)
			return 0;
		return 5 + f[2]; /* slave fc count data... crc crc */
	}
	return -1;
}

/* Receives one frame until deadline (first byte), skipping leading 0x00.
 * t_sent = end of the request on the wire; expect = length of the reply we
 * expect to this request (a guess for how long to sleep, never trusted for
 * the frame's length).
 *
 * The bytes of a reply arrive one character time apart (0.52 ms at 19200
 * baud). Waking for each of them cost ~10 wake-ups per transaction and made
 * the idle bus the daemon's main CPU cost, so this sleeps until the whole
 * expected reply is due - a slave answers after the 3.5 characters of
 * silence that end our request (Modbus over serial line V1.02 §2.5.1.1) -
 * and reads it in one go. A reply that is not all in by then (a slower
 * board, a USB adapter's latency timer) is waited for with poll() up to its
 * first byte and then again for its rest, as due from then on. The gap
 * allowed between bytes of a reply that has started stays byte_us. */
static int read_frame(struct cw_lockdrv *d, uint8_t *buf, int *len, int expect, int64_t t_sent,
		      int64_t deadline)
{
	int n = 0, want = 0;
	int64_t due = cw_serial_due_us(t_sent + d->char_us * 7 / 2, expect, d->char_us);

	for (;;) {
		/* want unknown: n <= 2 (frame_len decides from 3 bytes) */
		int cap = want > 0 ? want - n : RTU_MIN_REPLY - n;
		int r = cw_serial_read_due_fd(d->fd, buf + n, (size_t)cap, due, deadline);
		int64_t now;
		if (r == CW_ERR_TIMEOUT)
			return n == 0 ? CW_ERR_TIMEOUT : CW_ERR_PROTO; /* truncated */
		if (r < 0)
			return r;
		if (n == 0) {
			int skip = 0;
			while (skip < r && buf[skip] == 0x00)
				skip++;
			if (skip)
				memmove(buf, buf + skip, (size_t)(r - skip));
			r -= skip;
		}
		n += r;
		now = cw_serial_now_us();
		if (r > 0) {
			/* The reply has started: from now on only the gap
			 * between bytes is bounded. */
			if (now + d->byte_us > deadline)
				deadline = now + d->byte_us;
		}
		if (n >= 2 && want <= 0) {
			want = frame_len(buf, n);
			if (want < 0 || want > RTU_MAX_ADU)
				return CW_ERR_PROTO;
		}
		if (want > 0 && n >= want) {
			*len = n;
			return CW_OK;
		}
		/* The read filled cap: more may be waiting, read it now.
		 * Only noise so far, or the last byte or two running late:
		 * poll for them. Else the rest is due one character apart
		 * from now. */
		if (r == cap || n == 0 || (want > 0 ? want : expect) - n <= LATE_TAIL_BYTES)
			due = now;
		else
			due = cw_serial_due_us(now, (want > 0 ? want : expect) - n, d->char_us);
	}
}

/* Hands one received frame to libmodbus for its CRC and layout checks. */
static int confirm_via_pipe(struct cw_lockdrv *d, const uint8_t *frame, int len, uint8_t *rsp,
			    int *err)
{
	uint8_t junk[RTU_MAX_ADU];
	int rc;

	/* len <= 256 < PIPE_BUF: the write is atomic and never blocks */
	if (write(d->pipefd[1], frame, (size_t)len) != len) {
		*err = errno;
		return -2;
	}
	modbus_set_socket(d->ctx, d->pipefd[0]);
	rc = modbus_receive_confirmation(d->ctx, rsp);
	*err = errno;
	modbus_set_socket(d->ctx, d->fd);
	/* A frame libmodbus accepted was read whole (frame_len() follows its
	 * length rules); only a rejected one can leave bytes in the pipe. */
	if (rc <= 0)
		while (read(d->pipefd[0], junk, sizeof(junk)) > 0)
			;
	return rc;
}

/* libmodbus checks the CRC and layout of a frame we received. Returns
 * CW_OK, CW_ERR_AGAIN for an intact frame of another slave (a late answer of
 * a slow board: ignore it), or CW_ERR_PROTO (garbled: bad CRC, two boards
 * answering at once). */
static int check_frame(struct cw_lockdrv *d, int slave, const uint8_t *frame, int len,
		       uint8_t *rsp)
{
	int rc, e = 0;

	rc = confirm_via_pipe(d, frame, len, rsp, &e);
	if (rc == -2)
		return CW_ERR_IO;
	if (rc > 0)
		return CW_OK;
	if (rc < 0)
		return CW_ERR_PROTO;
	/* rc == 0: libmodbus skips the CRC of another slave's frame. Check it
	 * as that slave's: intact = a late answer, else garbage. */
	if (frame[0] < 1 || frame[0] > 247 || modbus_set_slave(d->ctx, frame[0]) != 0)
		return CW_ERR_PROTO;
	rc = confirm_via_pipe(d, frame, len, rsp, &e);
	modbus_set_slave(d->ctx, slave);
	if (rc == -2)
		return CW_ERR_IO;
	return rc > 0 ? CW_ERR_AGAIN : CW_ERR_PROTO;
}

/* Bytes that arrived outside any answer window: if they are one intact
 * frame, its slave answered after its response timeout. */
static void note_late_frame(struct cw_lockdrv *d, const uint8_t *f, int n)
{
	uint8_t rsp[RTU_MAX_ADU];
	int skip = 0;

	while (skip < n && f[skip] == 0x00)
		skip++;
	f += skip;
	n -= skip;
	if (n < 5 || frame_len(f, n) != n || f[0] < 1 || f[0] > 247)
		return;
	if (check_frame(d, f[0], f, n, rsp) == CW_OK)
		d->late_until[f[0]] = cw_serial_now_us() + LATE_HOLD_TIMEOUTS * d->resp_us;
}

/* One request/reply. req = slave fc data (no CRC). rsp gets the checked
 * reply (RTU_MAX_ADU bytes); expect = its usual length (for the sleep, see
 * read_frame()). extra_listen_us > 0: after a good reply, any further byte
 * within that time is a second board on the address. */
static int transact(struct cw_lockdrv *d, const uint8_t *req, int req_len, int expect,
		    uint8_t *rsp, int *rsp_len, int64_t extra_listen_us)
{
	uint8_t frame[RTU_MAX_ADU];
	int64_t deadline, t_sent, t_write;
	int rc, n = 0, sent;

	/* Inter-frame silence (Modbus over serial line V1.02 §2.5.1.1: 3.5
	 * characters; some boards want a few ms more). A late answer still on
	 * the wire is waited out and dropped whole. */
	{
		int64_t quiet = d->gap_us > d->char_us * 7 / 2 ? d->gap_us : d->char_us * 7 / 2;
		int64_t now = cw_serial_now_us();
		size_t kept = 0;
		int dropped = cw_serial_wait_quiet_fd(d->fd, d->last_end_us + quiet - now, quiet,
						      now + d->resp_us, frame, sizeof(frame), &kept);
		if (dropped > 0) {
			cw_debug("modbus.stray_bytes", "port=%s bytes=%d", d->port, dropped);
			note_late_frame(d, frame, (int)kept);
		}
	}
	modbus_set_slave(d->ctx, req[0]);
	t_write = cw_serial_now_us();
	sent = modbus_send_raw_request(d->ctx, req, req_len);
	if (sent < 0) {
		rc = map_errno(errno);
		goto out;
	}
	/* Time the answer from the end of the request on the wire: on the
	 * quiet line (waited for above) its `sent` characters (with the CRC)
	 * take that long from the write. Computed rather than waited for with
	 * tcdrain(): one ioctl, and on a real UART one wake-up, less. */
	t_sent = t_write + (int64_t)sent * d->char_us;
	if (t_sent < cw_serial_now_us())
		t_sent = cw_serial_now_us(); /* the write itself was slow */
	deadline = t_sent + d->resp_us;
	for (;;) {
		rc = read_frame(d, frame, &n, expect, t_sent, deadline);
		if (rc < 0)
			break;
		rc = check_frame(d, req[0], frame, n, rsp);
		if (rc != CW_ERR_AGAIN)
			break;
		/* An intact frame of another slave: its late answer to a
		 * request we gave up on. Keep listening for ours. */
		d->late_until[frame[0]] = cw_serial_now_us() + LATE_HOLD_TIMEOUTS * d->resp_us;
	}
	if (rc == CW_OK && cw_serial_now_us() < d->late_until[req[0]]) {
		/* This slave was seen answering after its response timeout a
		 * moment ago, so this answer may well be the late one to an
		 * earlier request: do not trust it. A board slower than the
		 * timeout is thus treated as not answering. */
		cw_debug("modbus.stale_answer", "port=%s slave=%u", d->port, req[0]);
		rc = CW_ERR_TIMEOUT;
	}
	if (rc == CW_OK && rsp[1] != req[1]) {
		if (rsp[1] == (req[1] | 0x80))
			cw_debug("modbus.exception", "port=%s slave=%u fc=%u code=%u", d->port,
				 req[0], req[1], rsp[2]);
		rc = CW_ERR_PROTO;
	}
	if (rc == CW_OK && extra_listen_us > 0) {
		int64_t now = cw_serial_now_us();
		if (cw_serial_drain_fd(d->fd, extra_listen_us, now + extra_listen_us) > 0)
			rc = CW_ERR_PROTO;
	}
	if (rc == CW_OK) {
		*rsp_len = n;
		/* when the answer started: complete now, n characters long
		 * (read up to half a character after it was complete) */
		d->last_lat_us = cw_serial_now_us() - t_sent - (int64_t)n * d->char_us;
	}
out:
	if (rc == CW_ERR_PROTO || rc == CW_ERR_TIMEOUT)
		recover(d);
	d->last_end_us = cw_serial_now_us();
	return rc;
}

static int read_inputs(struct cw_lockdrv *d, int slave, int start, int count, uint8_t *bits)
{
	uint8_t req[6], rsp[RTU_MAX_ADU];
	int rc, len = 0;

	if (start < 0 || count < 1 || count > MODBUS_MAX_READ_BITS || start + count > 0x10000)
		return CW_ERR_CONFIG;
	req[0] = (uint8_t)slave;
	req[1] = FC_READ_DISCRETE_INPUTS;
	req[2] = (uint8_t)(start >> 8);
	req[3] = (uint8_t)start;
	req[4] = (uint8_t)(count >> 8);
	req[5] = (uint8_t)count;
	/* slave fc count data crc crc */
	rc = transact(d, req, 6, 5 + (count + 7) / 8, rsp, &len, 0);
	if (rc < 0)
		return rc;
	if (rsp[2] != (count + 7) / 8 || len != 5 + rsp[2])
		return CW_ERR_PROTO;
	modbus_set_bits_from_bytes(bits, 0, (unsigned)count, rsp + 3);
	return CW_OK;
}

static bool held_late(struct cw_lockdrv *d, int slave)
{
	return slave >= 0 && slave < 256 && cw_serial_now_us() < d->late_until[slave];
}

static int read_status_once(struct cw_lockdrv *d, const struct cw_board_config *b,
			    struct cw_board_status *out);

static int mb_read_status(struct cw_lockdrv *d, const struct cw_board_config *b,
			  struct cw_board_status *out)
{
	uint8_t bit[8];
	int64_t now;
	int rc;

	memset(out, 0, sizeof(*out));
	if (b->address < 1 || b->address > 247)
		return CW_ERR_CONFIG;
	/* Not asked while it answers late: its backlog drains, and the bus
	 * time goes to the boards that answer. */
	if (held_late(d, b->address))
		return CW_ERR_TIMEOUT;
	rc = read_status_once(d, b, out);
	now = cw_serial_now_us();
	if (rc < 0 || d->last_lat_us <= d->resp_us / 2 ||
	    now - d->verified_at[b->address] < VERIFY_INTERVAL_US)
		return rc;
	d->verified_at[b->address] = now;
	if (read_inputs(d, b->address, b->hook_input_base, 1, bit) == CW_OK &&
	    d->last_lat_us <= d->resp_us)
		return CW_OK;
	cw_debug("modbus.late_answers", "port=%s slave=%d", d->port, b->address);
	d->late_until[b->address] = cw_serial_now_us() + LATE_HOLD_TIMEOUTS * d->resp_us;
	memset(out, 0, sizeof(*out));
	return CW_ERR_TIMEOUT;
}

static int read_status_once(struct cw_lockdrv *d, const struct cw_board_config *b,
			    struct cw_board_status *out)
{
	/* hook + present inputs plus a small gap between them */
	uint8_t bits[2 * CW_MAX_LOCKS_PER_BOARD + MAX_GAP_INPUTS];
	uint8_t bits2[CW_MAX_LOCKS_PER_BOARD];
	int n = b->locks, rc, lo, hi;

	memset(out, 0, sizeof(*out));
	if (n < 1 || n > CW_MAX_LOCKS_PER_BOARD)
		return CW_ERR_CONFIG;
	if (!b->has_present_sensor) {
		rc = read_inputs(d, b->address, b->hook_input_base, n, bits);
		if (rc < 0)
			return rc;
		for (int i = 0; i < n; i++)
			out->hook_closed |= (uint32_t)(bits[i] & 1) << i;
		return CW_OK;
	}
	lo = b->hook_input_base < b->present_input_base ? b->hook_input_base : b->present_input_base;
	hi = b->hook_input_base > b->present_input_base ? b->hook_input_base : b->present_input_base;
	hi += n;
	if (hi - lo <= (int)sizeof(bits)) {
		/* one request for the whole board (the default map: 2N inputs) */
		rc = read_inputs(d, b->address, lo, hi - lo, bits);
		if (rc < 0)
			return rc;
		for (int i = 0; i < n; i++) {
			out->hook_closed |= (uint32_t)(bits[b->hook_input_base - lo + i] & 1) << i;
			out->present |= (uint32_t)(bits[b->present_input_base - lo + i] & 1) << i;
		}
		return CW_OK;
	}
	/* far apart in the map: two requests */
	rc = read_inputs(d, b->address, b->hook_input_base, n, bits);
	if (rc < 0)
		return rc;
	rc = read_inputs(d, b->address, b->present_input_base, n, bits2);
	if (rc < 0)
		return rc;
	for (int i = 0; i < n; i++) {
		out->hook_closed |= (uint32_t)(bits[i] & 1) << i;
		out->present |= (uint32_t)(bits2[i] & 1) << i;
	}
	return CW_OK;
}

static int write_coil(struct cw_lockdrv *d, int slave, int coil, int value)
{
	uint8_t req[6], rsp[RTU_MAX_ADU];
	int rc, len = 0;

	if (coil < 0 || coil > 0xffff)
		return CW_ERR_CONFIG;
	req[0] = (uint8_t)slave;
	req[1] = FC_WRITE_SINGLE_COIL;
	req[2] = (uint8_t)(coil >> 8);
	req[3] = (uint8_t)coil;
	req[4] = (uint8_t)(value >> 8);
	req[5] = (uint8_t)value;
	rc = transact(d, req, 6, 8, rsp, &len, 0); /* the echo: 8 bytes */
	if (rc < 0)
		return rc;
	/* FC05 answers with an echo of the request */
	if (len != 8 || memcmp(rsp, req, 6) != 0)
		return CW_ERR_PROTO;
	return CW_OK;
}

static int mb_start_release(struct cw_lockdrv *d, const struct cw_board_config *b, int lock,
			    int64_t *pulse_end_ms)
{
	if (lock < 0 || lock >= b->locks)
		return CW_ERR_NOTFOUND;
	*pulse_end_ms = 0;
	if (held_late(d, b->address))
		return CW_ERR_TIMEOUT; /* not trusted now: nothing sent */
	/* Set before the write: even an unanswered ON may have reached the
	 * relay, and the worker must then still switch it off. */
	*pulse_end_ms = b->pulse_ms > 0 ? cw_mono_ms() + b->pulse_ms : 0;
	return write_coil(d, b->address, b->coil_base + lock, COIL_ON);
}

static int mb_end_release(struct cw_lockdrv *d, const struct cw_board_config *b, int lock)
{
	if (lock < 0 || lock >= b->locks)
		return CW_ERR_NOTFOUND;
	return write_coil(d, b->address, b->coil_base + lock, COIL_OFF);
}

static int mb_probe(struct cw_lockdrv *d, int address)
{
	uint8_t req[6] = {0, FC_READ_DISCRETE_INPUTS, 0, 0, 0, 1};
	uint8_t rsp[RTU_MAX_ADU];
	int len = 0;

	if (address < 1 || address > 247)
		return CW_ERR_INVAL;
	req[0] = (uint8_t)address;
	/* Two boards on one address answer together: garbled bytes (bad CRC)
	 * or a second frame right after the first. Listen one response
	 * timeout longer for the latter. */
	return transact(d, req, 6, 6, rsp, &len, d->resp_us); /* 1 byte of inputs */
}

const struct cw_lockdrv_ops cw_lockdrv_modbus = {
	.name = "modbus",
	.open = mb_open,
	.close = mb_close,
	.read_status = mb_read_status,
	.start_release = mb_start_release,
	.end_release = mb_end_release,
	.probe = mb_probe,
	.relays = true,
};
