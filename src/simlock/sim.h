/* sim.h - internals of cartwise-simlock, the lock-board simulator.
 *
 * Shared by the simulator's own files only (not a project contract).
 * Threads: the main thread runs the control channel and the timers; the
 * wire thread (sim_pace.c) owns the pty, frames requests and paces replies.
 * All board state is guarded by sim->lock. */
#ifndef CW_SIM_H
#define CW_SIM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <modbus.h>

#define SIM_MAX_BOARDS 16
#define SIM_MAX_LOCKS 32        /* Modbus boards; Kerong boards max 16 */
#define SIM_KR_MAX_LOCKS 16
#define SIM_MAX_FRAME 512       /* longest request/reply handled on the wire */

enum sim_protocol { SIM_MODBUS, SIM_KERONG };

struct sim_slot {
	bool present;        /* cart in the slot (infrared / present input) */
	bool hook_closed;    /* hook sensor */
	bool stuck;          /* fault: releases are acknowledged, hook never opens */
	uint64_t releases;   /* release commands received for this lock */
	int64_t relatch_at;  /* monotonic ms, 0 = none: hook closes again */
	int64_t take_at;     /* monotonic ms, 0 = none: simulated customer takes */
};

struct sim_board {
	int addr;
	int locks;
	struct sim_slot slot[SIM_MAX_LOCKS];
	/* faults */
	bool silent, crc, dup;
	int slow_ms;
	/* Kerong: unlock time in 10 ms units (0x37/0x38) */
	uint8_t unlock_time;
	/* Modbus server state (sim_modbus.c) */
	modbus_t *mb;
	modbus_mapping_t *map;
	int sp[2];           /* socketpair: [0] ours, [1] the libmodbus ctx's */
};

struct sim_opts {
	enum sim_protocol protocol;
	const char *link;
	const char *control;   /* NULL = no socket */
	int baud;
	bool pace;
	int relatch_ms;
	int auto_take_ms;
	int nboards;
	int board_addr[SIM_MAX_BOARDS];
	int board_locks[SIM_MAX_BOARDS]; /* 0 = use default_locks */
	int default_locks;
};

struct sim {
	struct sim_opts opt;
	pthread_mutex_t lock;
	int nboards;
	struct sim_board board[SIM_MAX_BOARDS];
	bool zero;             /* fault: 0x00 before every reply */
	uint64_t requests, replies, releases, garbage;
};

/* sim_board.c: state and lock physics. Functions marked (locked) expect
 * sim->lock held by the caller. */
int sim_new(const struct sim_opts *opt, struct sim **out);
void sim_free(struct sim *s);
struct sim_board *sim_board_find(struct sim *s, int addr);               /* (locked) */
void sim_release(struct sim *s, struct sim_board *b, int lock);          /* (locked) */
int sim_take(struct sim *s, struct sim_board *b, int lock);              /* (locked) */
int sim_dock(struct sim *s, struct sim_board *b, int lock);              /* (locked) */
void sim_empty(struct sim *s, struct sim_board *b, int lock);            /* (locked) */
void sim_board_bits(const struct sim_board *b, uint32_t *hook, uint32_t *present); /* (locked) */
/* Runs due timers (relatch, auto-take); returns the next deadline or 0. */
int64_t sim_tick(struct sim *s, int64_t now_ms);

/* sim_modbus.c: one libmodbus RTU server ctx per board. */
int sim_modbus_init(struct sim *s);
void sim_modbus_fini(struct sim *s);
/* Handles one request frame addressed to b (locked). Writes the reply into
 * rsp; returns its length, 0 for no reply (bad CRC, broadcast), <0 error. */
int sim_modbus_handle(struct sim *s, struct sim_board *b, const uint8_t *req, size_t len,
		      uint8_t *rsp, size_t cap);

/* sim_kerong.c: KR-CU16 board logic (locked). Same return convention. */
struct cw_kr_frame;
int sim_kerong_handle(struct sim *s, struct sim_board *b, const struct cw_kr_frame *f,
		      uint8_t *rsp, size_t cap);

/* sim_pace.c: the wire thread. */
struct sim_wire;
/* ptyfd = master (non-blocking); slavefd = our slave fd; pty = slave path. */
int sim_wire_new(struct sim *s, int ptyfd, int slavefd, const char *pty, struct sim_wire **out);
void sim_wire_free(struct sim_wire *w); /* stops the thread */

/* sim_control.c: control channel. */
/* Executes one command line; the answer (one line, no newline) goes to out.
 * Returns 1 if the command was quit, else 0. */
int sim_control_exec(struct sim *s, const char *line, char *out, size_t cap);
/* Serves stdin and the optional socket until *stop or quit; stop_fd
 * becomes readable when a signal asks to stop. Returns 0 or <0. */
struct sim_control;
int sim_control_new(struct sim *s, const char *sock_path, struct sim_control **out);
int sim_control_run(struct sim_control *c, int stop_fd);
void sim_control_free(struct sim_control *c);

#endif
