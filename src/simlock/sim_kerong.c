/* sim_kerong.c - Kerong KR-CU16 board logic (BRIEF.md §3, docs/PROTOCOL.md).
 *
 * Every status or unlock command is answered with the 9-byte status frame
 * 02 ADDR 35 D1 D2 D3 D4 03 SUM of the whole board. ADDR echoes board<<4|lock
 * for the one-lock commands (0x30, 0x31) and is board<<4 for the whole-board
 * ones (0x32, 0x33). The status-after-unlock and the exact echo rules are our
 * assumptions (the original code only tells the request side). */
#include "sim.h"

#include "cw_error.h"
#include "cw_kerong.h"
#include "cw_log.h"

static int status_reply(const struct sim_board *b, uint8_t addr, uint8_t *rsp, size_t cap)
{
	uint32_t hook, present;
	uint8_t d[4];

	sim_board_bits(b, &hook, &present);
	cw_kr_status_pack((uint16_t)hook, (uint16_t)present, d);
	return cw_kr_encode(rsp, cap, addr, CW_KR_REPLY_STATUS, d, sizeof(d));
}

int sim_kerong_handle(struct sim *s, struct sim_board *b, const struct cw_kr_frame *f,
		      uint8_t *rsp, size_t cap)
{
	int lock = f->addr & 0x0f;
	uint8_t board_addr = cw_kr_addr((unsigned)b->addr, 0);

	switch (f->cmd) {
	case CW_KR_CMD_STATUS_ONE:
		if (lock >= b->locks)
			return 0; /* no such lock on this board: stay quiet */
		return status_reply(b, f->addr, rsp, cap);
	case CW_KR_CMD_UNLOCK_ONE:
		if (lock >= b->locks)
			return 0;
		sim_release(s, b, lock);
		return status_reply(b, f->addr, rsp, cap);
	case CW_KR_CMD_STATUS_ALL:
		return status_reply(b, board_addr, rsp, cap);
	case CW_KR_CMD_UNLOCK_ALL:
		for (int l = 0; l < b->locks; l++)
			sim_release(s, b, l);
		return status_reply(b, board_addr, rsp, cap);
	case CW_KR_CMD_SET_TIME:
		b->unlock_time = f->data[0];
		cw_info("sim.unlock_time", "board=%d time_10ms=%u", b->addr, b->unlock_time);
		return cw_kr_encode(rsp, cap, f->addr, CW_KR_CMD_SET_TIME, &b->unlock_time, 1);
	case CW_KR_CMD_READ_TIME:
		return cw_kr_encode(rsp, cap, f->addr, CW_KR_CMD_READ_TIME, &b->unlock_time, 1);
	default:
		/* A status frame (another board's reply) or an unknown command. */
		cw_debug("sim.kerong_ignored", "board=%d cmd=0x%02x", b->addr, f->cmd);
		return 0;
	}
}
