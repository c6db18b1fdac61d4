/* cw_kerong.h - frame codec of the Kerong KR-CU16 lock board protocol.
 *
 * Shared by the edge driver and the simulator. See docs/PROTOCOL.md and
 * BRIEF.md §3. Frame: STX(0x02) ADDR CMD [DATA...] ETX(0x03) SUM, where SUM is
 * the low byte of the sum of every preceding byte, STX and ETX included.
 * ADDR: high nibble = board number (0-15), low nibble = lock number (0-15). */
#ifndef CW_KERONG_H
#define CW_KERONG_H

#include <stddef.h>
#include <stdint.h>

#define CW_KR_STX 0x02
#define CW_KR_ETX 0x03

#define CW_KR_CMD_STATUS_ONE 0x30  /* status of one lock */
#define CW_KR_CMD_UNLOCK_ONE 0x31  /* unlock one lock */
#define CW_KR_CMD_STATUS_ALL 0x32  /* status of all locks of a board */
#define CW_KR_CMD_UNLOCK_ALL 0x33  /* unlock all locks of a board */
#define CW_KR_REPLY_STATUS 0x35    /* status reply: D1 D2 D3 D4 */
#define CW_KR_CMD_SET_TIME 0x37    /* set/query unlock time, 10 ms units */
#define CW_KR_CMD_READ_TIME 0x38   /* read unlock time */

#define CW_KR_MAX_DATA 8
#define CW_KR_MAX_FRAME (5 + CW_KR_MAX_DATA)
#define CW_KR_STATUS_FRAME_LEN 9

struct cw_kr_frame {
	uint8_t addr;
	uint8_t cmd;
	uint8_t len; /* number of data bytes */
	uint8_t data[CW_KR_MAX_DATA];
};

static inline uint8_t cw_kr_addr(unsigned board, unsigned lock)
{
	return (uint8_t)(((board & 0x0f) << 4) | (lock & 0x0f));
}

/* Encodes a frame into out (cap bytes). Returns the frame length (> 0) or
 * CW_ERR_INVAL (dlen > CW_KR_MAX_DATA) / CW_ERR_TOOBIG (cap too small). */
int cw_kr_encode(uint8_t *out, size_t cap, uint8_t addr, uint8_t cmd,
		 const uint8_t *data, size_t dlen);

/* Looks for one frame at the start of buf[0..len).
 * Leading bytes that are not STX (e.g. the spurious 0x00 a Pi UART emits after
 * a direction switch) are skipped and counted in *consumed.
 * Returns CW_OK with *f filled and *consumed = bytes used (including skipped);
 * CW_ERR_AGAIN if more bytes are needed (*consumed = garbage skipped so far);
 * CW_ERR_PROTO on a bad checksum or missing ETX (*consumed = bytes to drop).
 * The frame length is known from the command: status replies (0x35) carry 4
 * data bytes, 0x37/0x38 carry 1, all other commands 0 (see docs/PROTOCOL.md). */
int cw_kr_decode(const uint8_t *buf, size_t len, struct cw_kr_frame *f, size_t *consumed);

/* Data length the decoder expects after ADDR CMD for a given command byte. */
size_t cw_kr_data_len(uint8_t cmd);

/* Status reply helpers. Bit i (0-based) of the 16-bit values = lock i.
 * D1 = hook-closed bits of locks 1-8 (bit0 = lock 1), D2 = locks 9-16,
 * D3, D4 = cart-present (infrared) bits likewise. */
void cw_kr_status_pack(uint16_t hook_closed, uint16_t present, uint8_t data[4]);
void cw_kr_status_unpack(const uint8_t data[4], uint16_t *hook_closed, uint16_t *present);

#endif
