/* cw_drv_kerong.c - Kerong KR-CU16 lock boards (BRIEF.md §3, docs/PROTOCOL.md).
 *
 * One poll = command 0x32 (status of all locks) to ADDR = board<<4, answered
 * by a 9-byte 0x35 status frame: D1 D2 hook-closed bits, D3 D4 cart-present
 * (infrared) bits. A release = command 0x31 to ADDR = board<<4 | lock; the
 * board answers with a 0x35 status frame and times the unlock pulse itself
 * (0x37 sets it), so there is no end_release for this board type.
 * Frames are encoded and decoded by the shared codec (src/cw_kerong.h); this
 * file does the line discipline: inter-frame gap, deadline, skipping a
 * spurious leading 0x00, checking that the answer comes from the board asked,
 * and draining garbage after a bad checksum. */
#include "cw_lockbus.h"
#include "cw_error.h"
#include "cw_kerong.h"
#include "cw_log.h"
#include "cw_serial.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KR_MAX_BOARD 15
#define KR_MAX_LOCKS 16
#define RX_BUF 64
/* Bytes of one reply arrive at most this far apart (a USB adapter's 16 ms
 * latency timer, BRIEF.md §3). */
#define MIN_BYTE_TIMEOUT_US 20000
/* A board seen answering after its response timeout (its frame arrives in
 * another board's window) is not trusted for this many response timeouts:
 * the protocol has no transaction id, so its next "answer" may be late. */
#define LATE_HOLD_TIMEOUTS 5
/* An answer that starts after half the response timeout may be the late
 * answer to an earlier request landing in this window again and again (a
 * board slower than the timeout, polled at a steady rhythm). Such a board is
 * verified - at most once a second - with a 0x30 status request for lock L,
 * whose answer echoes ADDR = board<<4|L and so cannot be confused with the
 * answer to a 0x32 (ADDR = board<<4). */
#define VERIFY_INTERVAL_US 1000000
/* A reply short of this many bytes at its due time is late by a fraction of
 * a character (the board or our wake-up): poll for the rest, rather than
 * sleep a whole margin more. */
#define LATE_TAIL_BYTES 2

struct cw_lockdrv {
	struct cw_serial *s;
	int64_t gap_us;
	int64_t resp_us;
	int64_t byte_us;
	int64_t char_us;
	int64_t last_end_us;
	int64_t late_until[16]; /* board seen answering after its timeout */
	int64_t verified_at[16]; /* last verification read of a board */
	int64_t last_lat_us;     /* request end to start of the last answer */
	unsigned verify_seq;
	char port[256];
};

static void kr_close(struct cw_lockdrv *d)
{
	if (!d)
		return;
	cw_serial_free(d->s);
	free(d);
}

static int kr_open(const struct cw_bus_config *cfg, struct cw_lockdrv **out)
{
	struct cw_lockdrv *d;
	int rc;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return CW_ERR_NOMEM;
	snprintf(d->port, sizeof(d->port), "%s", cfg->port);
	d->gap_us = (int64_t)cfg->inter_frame_gap_ms * 1000;
	d->resp_us = (int64_t)cfg->response_timeout_ms * 1000;
	d->char_us = cw_serial_char_us(cfg->baud, cfg->parity);
	d->byte_us = d->char_us * 4 > MIN_BYTE_TIMEOUT_US ? d->char_us * 4 : MIN_BYTE_TIMEOUT_US;
	if (d->byte_us > d->resp_us)
		d->byte_us = d->resp_us;
	rc = cw_serial_new(cfg->port, cfg->baud, cfg->parity, &d->s);
	if (rc < 0) {
		kr_close(d);
		return rc;
	}
	*out = d;
	return CW_OK;
}

static void recover(struct cw_lockdrv *d)
{
	int64_t now = cw_serial_now_us();

	cw_serial_drain_fd(cw_serial_fd(d->s), d->char_us * 4 + d->gap_us, now + d->resp_us);
	cw_serial_flush(d->s);
}

/* Sends cmd to addr and waits for a 0x35 status frame from board `board`.
 * extra_listen_us > 0: any further byte after the answer within that time
 * means a second board answered too (CW_ERR_PROTO). */
static int transact(struct cw_lockdrv *d, uint8_t addr, uint8_t cmd, int board, bool exact_addr,
		    struct cw_kr_frame *reply, int64_t extra_listen_us)
{
	uint8_t req[CW_KR_MAX_FRAME], buf[RX_BUF];
	size_t n = 0, junk = 0;
	int64_t deadline, t_sent, t_write, due;
	int len, rc;

	len = cw_kr_encode(req, sizeof(req), addr, cmd, NULL, 0);
	if (len < 0)
		return len;
	/* Boards need a few ms of silence between frames (BRIEF.md §3). A
	 * late answer still on the wire is waited out and dropped whole. */
	{
		int64_t quiet = d->gap_us > d->char_us ? d->gap_us : d->char_us;
		int64_t now = cw_serial_now_us();
		size_t kept = 0, used = 0;
		int dropped = cw_serial_wait_quiet_fd(cw_serial_fd(d->s), d->last_end_us + quiet - now,
						      quiet, now + d->resp_us, buf, sizeof(buf), &kept);
		if (dropped > 0) {
			cw_debug("kerong.stray_bytes", "port=%s bytes=%d", d->port, dropped);
			/* An intact status frame out of any window: that board
			 * answered after its response timeout. */
			if (cw_kr_decode(buf, kept, reply, &used) == CW_OK &&
			    reply->cmd == CW_KR_REPLY_STATUS)
				d->late_until[(reply->addr >> 4) & 0x0f] =
					now + LATE_HOLD_TIMEOUTS * d->resp_us;
		}
	}
	t_write = cw_serial_now_us();
	rc = cw_serial_write_nodrain(d->s, req, (size_t)len);
	if (rc < 0)
		goto out;
	/* Time the answer from the end of the request on the wire: on the
	 * quiet line its len characters take that long from the write
	 * (computed: no tcdrain ioctl, no wake-up for it on a real UART). */
	t_sent = t_write + (int64_t)len * d->char_us;
	if (t_sent < cw_serial_now_us())
		t_sent = cw_serial_now_us(); /* the write itself was slow */
	deadline = t_sent + d->resp_us;
	/* Every reply to our commands is a 9-byte status frame. Its bytes
	 * arrive one character time apart (0.52 ms at 19200 baud); waking for
	 * each of them made the idle bus the daemon's main CPU cost. So sleep
	 * until the whole frame is due - after the 3.5 characters of silence
	 * that end our request, kept on this bus as on Modbus (BRIEF.md §3) -
	 * and read it in one go; a reply not all in by then is waited for with
	 * poll() up to its next byte, then its rest as due from then on. */
	due = cw_serial_due_us(t_sent + d->char_us * 7 / 2, CW_KR_STATUS_FRAME_LEN, d->char_us);
	for (;;) {
		size_t used = 0;
		int r = cw_serial_read_due_fd(cw_serial_fd(d->s), buf + n, sizeof(buf) - n, due,
					      deadline);
		if (r < 0) {
			/* Timeout with bytes held back = a truncated frame;
			 * after garbage (two boards answering at once never
			 * leave an STX intact) = a garbled answer. */
			rc = (r == CW_ERR_TIMEOUT && (n > 0 || junk > 0)) ? CW_ERR_PROTO : r;
			goto out;
		}
		n += (size_t)r;
		{
			int64_t t = cw_serial_now_us() + d->byte_us;
			if (t > deadline)
				deadline = t;
		}
		for (;;) {
			rc = cw_kr_decode(buf, n, reply, &used);
			if (used > n)
				used = n;
			/* Skipped bytes: a 0x00 is the Pi UART's direction
			 * switch artefact (tolerated), anything else garbage. */
			for (size_t i = 0; rc != CW_ERR_PROTO && i < used && buf[i] != CW_KR_STX; i++)
				junk += buf[i] != 0x00;
			memmove(buf, buf + used, n - used);
			n -= used;
			if (rc == CW_ERR_AGAIN)
				break; /* need more bytes (leading noise dropped) */
			if (rc == CW_ERR_PROTO)
				goto out; /* bad checksum or framing */
			if (rc < 0)
				goto out;
			if (reply->cmd == CW_KR_REPLY_STATUS &&
			    (exact_addr ? reply->addr == addr : (reply->addr >> 4) == board)) {
				rc = CW_OK;
				/* started n + 9 characters ago */
				d->last_lat_us = cw_serial_now_us() - t_sent -
						 (int64_t)(n + CW_KR_STATUS_FRAME_LEN) * d->char_us;
				goto answered;
			}
			if (reply->cmd == CW_KR_REPLY_STATUS && (reply->addr >> 4) == board)
				continue; /* ours, but to another request: stale */
			/* A frame from another board: its late answer to a
			 * request we gave up on. Ignore it, remember it. */
			if (reply->cmd == CW_KR_REPLY_STATUS)
				d->late_until[(reply->addr >> 4) & 0x0f] =
					cw_serial_now_us() + LATE_HOLD_TIMEOUTS * d->resp_us;
		}
		if (n == sizeof(buf)) {
			rc = CW_ERR_PROTO; /* a full buffer and still no frame */
			goto out;
		}
		/* buf holds the start of a frame (noise before its STX was
		 * dropped) or nothing. Nothing, or only the last byte or two
		 * running late: poll for them. Else the rest is due one
		 * character apart from now. */
		{
			/* STX ADDR CMD [DATA] ETX SUM: 5 bytes and the data */
			size_t total = n >= 3 ? 5 + cw_kr_data_len(buf[2]) : CW_KR_STATUS_FRAME_LEN;
			int rest = total > n ? (int)(total - n) : 1;

			due = cw_serial_now_us();
			if (n > 0 && rest > LATE_TAIL_BYTES)
				due = cw_serial_due_us(due, rest, d->char_us);
		}
	}
answered:
	if (cw_serial_now_us() < d->late_until[board & 0x0f]) {
		/* This board was seen answering after its response timeout a
		 * moment ago, so this may be the late answer to an earlier
		 * request: do not trust it. A board slower than the timeout is
		 * thus treated as not answering. */
		cw_debug("kerong.stale_answer", "port=%s board=%d", d->port, board);
		rc = CW_ERR_TIMEOUT;
		goto out;
	}
	if (n > 0 && extra_listen_us > 0) {
		rc = CW_ERR_PROTO; /* more bytes right behind the answer */
		goto out;
	}
	if (extra_listen_us > 0) {
		int64_t now = cw_serial_now_us();
		if (cw_serial_drain_fd(cw_serial_fd(d->s), extra_listen_us, now + extra_listen_us) > 0)
			rc = CW_ERR_PROTO;
	}
out:
	if (rc == CW_ERR_PROTO || rc == CW_ERR_TIMEOUT)
		recover(d);
	d->last_end_us = cw_serial_now_us();
	return rc;
}

static bool held_late(struct cw_lockdrv *d, int board)
{
	return cw_serial_now_us() < d->late_until[board & 0x0f];
}

static int kr_read_status(struct cw_lockdrv *d, const struct cw_board_config *b,
			  struct cw_board_status *out)
{
	struct cw_kr_frame f, v;
	uint16_t hook = 0, present = 0;
	int64_t now;
	int rc;

	memset(out, 0, sizeof(*out));
	if (b->address < 0 || b->address > KR_MAX_BOARD || b->locks < 1 || b->locks > KR_MAX_LOCKS)
		return CW_ERR_CONFIG;
	/* Not asked while it answers late: its backlog drains, and the bus
	 * time goes to the boards that answer. */
	if (held_late(d, b->address))
		return CW_ERR_TIMEOUT;
	rc = transact(d, cw_kr_addr((unsigned)b->address, 0), CW_KR_CMD_STATUS_ALL, b->address,
		      false, &f, 0);
	if (rc < 0)
		return rc;
	now = cw_serial_now_us();
	if (d->last_lat_us > d->resp_us / 2 && now - d->verified_at[b->address] >= VERIFY_INTERVAL_US) {
		/* lock 1..locks-1 so that the echo differs from a 0x32 answer */
		unsigned l = b->locks > 1 ? 1 + d->verify_seq++ % (unsigned)(b->locks - 1) : 0;
		d->verified_at[b->address] = now;
		if (transact(d, cw_kr_addr((unsigned)b->address, l), CW_KR_CMD_STATUS_ONE, b->address,
			     true, &v, 0) != CW_OK ||
		    d->last_lat_us > d->resp_us) {
			cw_debug("kerong.late_answers", "port=%s board=%d", d->port, b->address);
			d->late_until[b->address] = cw_serial_now_us() + LATE_HOLD_TIMEOUTS * d->resp_us;
			return CW_ERR_TIMEOUT;
		}
	}
	cw_kr_status_unpack(f.data, &hook, &present);
	out->hook_closed = hook;
	out->present = b->has_present_sensor ? present : 0;
	return CW_OK;
}

static int kr_start_release(struct cw_lockdrv *d, const struct cw_board_config *b, int lock,
			    int64_t *pulse_end_ms)
{
	struct cw_kr_frame f;

	/* the board times its own unlock pulse */
	*pulse_end_ms = 0;
	if (b->address < 0 || b->address > KR_MAX_BOARD)
		return CW_ERR_CONFIG;
	if (lock < 0 || lock >= b->locks || lock >= KR_MAX_LOCKS)
		return CW_ERR_NOTFOUND;
	if (held_late(d, b->address))
		return CW_ERR_TIMEOUT; /* not trusted now: nothing sent */
	return transact(d, cw_kr_addr((unsigned)b->address, (unsigned)lock), CW_KR_CMD_UNLOCK_ONE,
			b->address, false, &f, 0);
}

static int kr_end_release(struct cw_lockdrv *d, const struct cw_board_config *b, int lock)
{
	(void)d;
	(void)b;
	(void)lock;
	return CW_OK; /* nothing to switch off */
}

static int kr_probe(struct cw_lockdrv *d, int address)
{
	struct cw_kr_frame f;

	if (address < 0 || address > KR_MAX_BOARD)
		return CW_ERR_INVAL;
	return transact(d, cw_kr_addr((unsigned)address, 0), CW_KR_CMD_STATUS_ALL, address, false, &f,
			d->resp_us);
}

const struct cw_lockdrv_ops cw_lockdrv_kerong = {
	.name = "kerong",
	.open = kr_open,
	.close = kr_close,
	.read_status = kr_read_status,
	.start_release = kr_start_release,
	.end_release = kr_end_release,
	.probe = kr_probe,
};
