/* sim_modbus.c - Modbus-RTU boards served by libmodbus.
 *
 * libmodbus's RTU server answers only requests for its own slave id, so each
 * board has its own ctx whose "serial port" is one end of a socketpair. The
 * wire thread routes a request frame by its address byte: it writes the frame
 * into the board's socketpair, lets modbus_receive() validate length and CRC,
 * modbus_reply() build the answer, and reads that answer back to pace it out
 * on the pty. libmodbus thus does all framing and CRC work (BRIEF.md §2).
 *
 * Default register map of BRIEF.md §3 (board with N locks):
 *   coil i            lock i release relay; a 0->1 write releases lock i
 *   discrete input i  lock i hook closed
 *   discrete input N+i cart present in slot i */
#include "sim.h"

#include "cw_error.h"
#include "cw_log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The request is already in the socket when modbus_receive() runs, so any
 * wait is a truncated frame: give up quickly. */
#define SIM_MB_TIMEOUT_US 2000

static void drain(int fd)
{
	uint8_t junk[256];

	while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
}

static int board_init(struct sim *s, struct sim_board *b)
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b->sp) < 0) {
		cw_error("sim.modbus_init", "board=%d err=\"%s\"", b->addr, strerror(errno));
		return CW_ERR_IO;
	}
	/* The device name is never opened: modbus_set_socket() supplies the fd. */
	b->mb = modbus_new_rtu("/dev/null", s->opt.baud, 'N', 8, 1);
	b->map = modbus_mapping_new(b->locks, 2 * b->locks, 0, 0);
	if (!b->mb || !b->map)
		return CW_ERR_NOMEM;
	if (modbus_set_slave(b->mb, b->addr) < 0 || modbus_set_socket(b->mb, b->sp[1]) < 0)
		return CW_ERR_INVAL;
	modbus_set_indication_timeout(b->mb, 0, SIM_MB_TIMEOUT_US);
	modbus_set_byte_timeout(b->mb, 0, SIM_MB_TIMEOUT_US);
	modbus_set_response_timeout(b->mb, 0, SIM_MB_TIMEOUT_US);
	return CW_OK;
}

int sim_modbus_init(struct sim *s)
{
	int rc = CW_OK;

	for (int i = 0; i < s->nboards; i++) {
		rc = board_init(s, &s->board[i]);
		if (rc < 0)
			goto out;
	}
out:
	if (rc < 0)
		sim_modbus_fini(s);
	return rc;
}

void sim_modbus_fini(struct sim *s)
{
	for (int i = 0; i < s->nboards; i++) {
		struct sim_board *b = &s->board[i];

		/* modbus_free() does not close the fd: we own the socketpair. */
		if (b->mb)
			modbus_free(b->mb);
		if (b->map)
			modbus_mapping_free(b->map);
		b->mb = NULL;
		b->map = NULL;
		for (int k = 0; k < 2; k++) {
			if (b->sp[k] >= 0)
				close(b->sp[k]);
			b->sp[k] = -1;
		}
	}
}

int sim_modbus_handle(struct sim *s, struct sim_board *b, const uint8_t *req, size_t len,
		      uint8_t *rsp, size_t cap)
{
	uint8_t ind[MODBUS_RTU_MAX_ADU_LENGTH];
	uint8_t coils[SIM_MAX_LOCKS];
	ssize_t n;
	int rc;

	if (!b->mb || len == 0 || len > MODBUS_RTU_MAX_ADU_LENGTH)
		return 0;
	drain(b->sp[0]);
	drain(b->sp[1]);
	n = write(b->sp[0], req, len);
	if (n != (ssize_t)len)
		return CW_ERR_IO;
	rc = modbus_receive(b->mb, ind);
	if (rc <= 0) {
		/* Bad CRC, truncated or foreign frame: a real board stays quiet. */
		cw_debug("sim.modbus_drop", "board=%d len=%zu err=\"%s\"", b->addr, len,
			 modbus_strerror(errno));
		drain(b->sp[1]);
		return 0;
	}
	drain(b->sp[1]); /* bytes past the frame libmodbus expected */
	/* Present the sensors as discrete inputs (FC02). */
	for (int l = 0; l < b->locks; l++) {
		b->map->tab_input_bits[l] = b->slot[l].hook_closed ? 1 : 0;
		b->map->tab_input_bits[b->locks + l] = b->slot[l].present ? 1 : 0;
	}
	memcpy(coils, b->map->tab_bits, (size_t)b->locks);
	if (modbus_reply(b->mb, ind, rc, b->map) < 0)
		cw_debug("sim.modbus_reply", "board=%d err=\"%s\"", b->addr, modbus_strerror(errno));
	/* A relay energised (coil 0->1) releases its lock. */
	for (int l = 0; l < b->locks; l++)
		if (!coils[l] && b->map->tab_bits[l])
			sim_release(s, b, l);
	n = recv(b->sp[0], rsp, cap, MSG_DONTWAIT);
	if (n <= 0)
		return 0; /* broadcast: no answer */
	return (int)n;
}
