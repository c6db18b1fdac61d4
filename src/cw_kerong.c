/* cw_kerong.c - frame codec of the Kerong KR-CU16 lock board protocol.
 *
 * Frame (BRIEF.md §3, docs/PROTOCOL.md): STX(0x02) ADDR CMD [DATA] ETX(0x03) SUM,
 * SUM = low byte of the sum of all preceding bytes, STX and ETX included.
 * The protocol has no length field: the data length follows from CMD. */
#include "cw_kerong.h"
#include "cw_error.h"

#include <string.h>

/* STX ADDR CMD ... ETX SUM: 5 bytes of framing around the data. */
#define KR_OVERHEAD 5

static uint8_t kr_sum(const uint8_t *p, size_t n)
{
	unsigned s = 0;

	for (size_t i = 0; i < n; i++)
		s += p[i];
	return (uint8_t)(s & 0xff);
}

size_t cw_kr_data_len(uint8_t cmd)
{
	switch (cmd) {
	case CW_KR_REPLY_STATUS:
		return 4; /* D1 D2 D3 D4: hook bits, present bits */
	case CW_KR_CMD_SET_TIME:
	case CW_KR_CMD_READ_TIME:
		return 1; /* unlock time T in 10 ms units */
	default:
		return 0;
	}
}

int cw_kr_encode(uint8_t *out, size_t cap, uint8_t addr, uint8_t cmd,
		 const uint8_t *data, size_t dlen)
{
	size_t n = 0;

	if (!out || dlen > CW_KR_MAX_DATA || (dlen && !data))
		return CW_ERR_INVAL;
	if (cap < dlen + KR_OVERHEAD)
		return CW_ERR_TOOBIG;
	out[n++] = CW_KR_STX;
	out[n++] = addr;
	out[n++] = cmd;
	if (dlen)
		memcpy(out + n, data, dlen);
	n += dlen;
	out[n++] = CW_KR_ETX;
	out[n] = kr_sum(out, n);
	n++;
	return (int)n;
}

int cw_kr_decode(const uint8_t *buf, size_t len, struct cw_kr_frame *f, size_t *consumed)
{
	size_t start = 0, dlen, total;
	const uint8_t *p;

	if (!buf || !f || !consumed)
		return CW_ERR_INVAL;
	/* Skip noise before STX: a Pi UART emits a spurious 0x00 after the
	 * RS485 direction switch (BRIEF.md §3). */
	while (start < len && buf[start] != CW_KR_STX)
		start++;
	*consumed = start;
	if (len - start < 3)
		return CW_ERR_AGAIN;
	p = buf + start;
	dlen = cw_kr_data_len(p[2]);
	total = dlen + KR_OVERHEAD;
	if (len - start < total)
		return CW_ERR_AGAIN;
	if (p[3 + dlen] != CW_KR_ETX) {
		/* Not a frame where we thought: drop only the STX so that a real
		 * frame starting inside these bytes is still found. */
		*consumed = start + 1;
		return CW_ERR_PROTO;
	}
	if (kr_sum(p, total - 1) != p[total - 1]) {
		/* Well delimited but corrupt: drop the whole frame. */
		*consumed = start + total;
		return CW_ERR_PROTO;
	}
	f->addr = p[1];
	f->cmd = p[2];
	f->len = (uint8_t)dlen;
	memset(f->data, 0, sizeof(f->data));
	memcpy(f->data, p + 3, dlen);
	*consumed = start + total;
	return CW_OK;
}

void cw_kr_status_pack(uint16_t hook_closed, uint16_t present, uint8_t data[4])
{
	data[0] = (uint8_t)(hook_closed & 0xff); /* D1: locks 1-8, bit0 = lock 1 */
	data[1] = (uint8_t)(hook_closed >> 8);   /* D2: locks 9-16 */
	data[2] = (uint8_t)(present & 0xff);     /* D3: infrared, locks 1-8 */
	data[3] = (uint8_t)(present >> 8);       /* D4: infrared, locks 9-16 */
}

void cw_kr_status_unpack(const uint8_t data[4], uint16_t *hook_closed, uint16_t *present)
{
	if (hook_closed)
		*hook_closed = (uint16_t)(data[0] | (data[1] << 8));
	if (present)
		*present = (uint16_t)(data[2] | (data[3] << 8));
}
