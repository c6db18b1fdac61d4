/* cw_lockbus.h - the RS485 lock bus: one driver interface, one worker per port.
 *
 * A bus is one serial port with one protocol and one or more boards. The
 * driver (a table of function pointers, filled with designated initialisers)
 * speaks the protocol; the bus worker (one thread per port) owns the port and
 * runs a queue in which unlock jobs go before status polls. */
#ifndef CW_LOCKBUS_H
#define CW_LOCKBUS_H

#include <stdbool.h>
#include <stdint.h>

#define CW_MAX_BOARDS_PER_BUS 16
#define CW_MAX_LOCKS_PER_BOARD 32

enum cw_protocol { CW_PROTO_MODBUS, CW_PROTO_KERONG };

/* Per-board settings. For Modbus every address is configurable (default
 * register map of docs/HARDWARE.md); Kerong ignores the register fields. */
struct cw_board_config {
	int address;             /* Modbus slave id 1-247, Kerong board 0-15 */
	int locks;               /* 1..CW_MAX_LOCKS_PER_BOARD (Kerong: max 16) */
	int pulse_ms;            /* release pulse, default 500 */
	bool has_present_sensor; /* default true */
	int coil_base;           /* Modbus: coil of lock 0, default 0 */
	int hook_input_base;     /* Modbus: discrete input of lock 0 hook, default 0 */
	int present_input_base;  /* Modbus: discrete input of lock 0 present, default = locks */
};

struct cw_bus_config {
	char name[32];             /* e.g. "bus0" */
	char port[256];            /* serial device path */
	enum cw_protocol protocol;
	int baud;                  /* default 19200 */
	char parity;               /* 'N', 'E', 'O'; default 'N' */
	int response_timeout_ms;   /* default 50 */
	int retries;               /* extra tries after a timeout/garbage, default 1 */
	int inter_frame_gap_ms;    /* silence kept between frames, default 2 */
	int poll_interval_ms;      /* pause after a full poll round, default 50 */
	int confirm_timeout_ms;    /* unlock confirmation window, default 2000 */
	int offline_after;         /* consecutive failures before offline, default 3 */
	int offline_backoff_max_ms;/* cap of the offline re-probe backoff, default 5000 */
	int nboards;
	struct cw_board_config boards[CW_MAX_BOARDS_PER_BUS];
};

/* Sets every field of c to its default (name/port empty, no boards). */
void cw_bus_config_defaults(struct cw_bus_config *c);
/* Sets a board's defaults for the given number of locks. */
void cw_board_config_defaults(struct cw_board_config *b, int address, int locks);

/* Status of one board as read in one request. Bit i = lock i. */
struct cw_board_status {
	uint32_t hook_closed;
	uint32_t present;     /* all zero when the board has no present sensor */
};

/* ---- driver interface (one instance per open port) ---- */
struct cw_lockdrv;
struct cw_lockdrv_ops {
	const char *name; /* "modbus", "kerong" */
	/* Opens the port. A failing RS485 ioctl (USB adapters, ptys) is tolerated. */
	int (*open)(const struct cw_bus_config *cfg, struct cw_lockdrv **out);
	void (*close)(struct cw_lockdrv *d);
	/* Reads a whole board's status in one request. */
	int (*read_status)(struct cw_lockdrv *d, const struct cw_board_config *b,
			   struct cw_board_status *out);
	/* Starts a release of one lock. For relay boards this energises the
	 * coil; *pulse_end_ms is set > 0 when the worker must call
	 * end_release() at that monotonic time (de-energise), else 0. */
	int (*start_release)(struct cw_lockdrv *d, const struct cw_board_config *b, int lock,
			     int64_t *pulse_end_ms);
	int (*end_release)(struct cw_lockdrv *d, const struct cw_board_config *b, int lock);
	/* true for relay boards: a coil stays on until end_release() switches
	 * it off, so the worker switches every coil off at the first contact
	 * with a board and when it comes back online (a coil left on by a
	 * process killed mid-pulse holds its lock open, and the next release,
	 * ON over ON, would not move it). */
	bool relays;
	/* Probes one address (for a bus scan). Returns CW_OK if exactly one
	 * board answered cleanly, CW_ERR_TIMEOUT if none, CW_ERR_PROTO if the
	 * answer was garbled (e.g. two boards on one address). */
	int (*probe)(struct cw_lockdrv *d, int address);
};

const struct cw_lockdrv_ops *cw_lockdrv_find(enum cw_protocol p);
extern const struct cw_lockdrv_ops cw_lockdrv_modbus;
extern const struct cw_lockdrv_ops cw_lockdrv_kerong;
int cw_protocol_parse(const char *s, enum cw_protocol *out);
const char *cw_protocol_name(enum cw_protocol p);

/* ---- the bus worker ---- */
struct cw_bus;

enum cw_bus_event_kind {
	CW_BUS_EV_STATUS,  /* a board's status was read (every poll) */
	CW_BUS_EV_OFFLINE, /* a board stopped answering (after offline_after failures) */
	CW_BUS_EV_ONLINE,  /* an offline board answers again */
};

struct cw_bus_event {
	enum cw_bus_event_kind kind;
	int board_index;   /* index into cfg.boards */
	struct cw_board_status status; /* valid for STATUS and ONLINE */
};

/* Called on the bus worker thread. Must not block on the bus itself. */
typedef void (*cw_bus_event_cb)(struct cw_bus *bus, const struct cw_bus_event *ev, void *ud);

/* Copies cfg. Opens the port and starts the worker thread.
 * Returns CW_ERR_IO with a logged message naming the port if it cannot open. */
int cw_bus_new(const struct cw_bus_config *cfg, cw_bus_event_cb cb, void *ud, struct cw_bus **out);
/* Same with an explicit driver table (tests use a fake driver; a board type
 * that is not built in can be passed here). ops must outlive the bus. */
int cw_bus_new_with_driver(const struct cw_bus_config *cfg, const struct cw_lockdrv_ops *ops,
			   cw_bus_event_cb cb, void *ud, struct cw_bus **out);
/* Stops the worker (finishes the transaction on the wire), closes the port. NULL ok. */
void cw_bus_free(struct cw_bus *bus);
const struct cw_bus_config *cw_bus_config_of(const struct cw_bus *bus);

/* Liveness of the worker thread (the daemon's systemd watchdog,
 * docs/ARCHITECTURE.md): the monotonic time (cw_mono_ms) when its loop last
 * turned, i.e. finished one unit of work (one transaction at most: a poll,
 * a probe of an offline board, a step of a release or scan) or woke from an
 * idle wait. A running worker sleeps at most CW_BUS_ALIVE_PERIOD_MS at a
 * time, also while every board is offline in a long re-probe backoff, so the
 * value only falls behind by more than that plus one transaction when the
 * thread is stuck (a serial call or an event callback that does not return).
 * Any thread. */
#define CW_BUS_ALIVE_PERIOD_MS 1000
int64_t cw_bus_alive_ms(struct cw_bus *bus);

/* The longest one turn of the worker's loop may legitimately block on the
 * wire with configuration c (a silent or slow board answering at the end of
 * its window): the watchdog's allowance for it (cartwise-edge main.c). The
 * worst turn is a status read: 1 + retries attempts, each of up to two
 * requests (a board whose hook and present inputs are far apart in the
 * Modbus map), and after a late answer one more request to verify it; a
 * release start is 1 + retries requests, a scan step one probe listening a
 * response timeout more. Each request costs at most response_timeout_ms
 * plus inter_frame_gap_ms: (2 * (1 + retries) + 1) * (response_timeout_ms
 * + inter_frame_gap_ms). Frame times on the wire and the event callback are
 * not counted: the caller adds a margin. */
int64_t cw_bus_step_max_ms(const struct cw_bus_config *c);

/* Releases one lock and waits for the sensors to confirm (hook reported open,
 * or cart reported gone) within cfg.confirm_timeout_ms. Jumps ahead of polls.
 * Blocks the caller (not the bus). Returns:
 *   CW_OK           release confirmed by sensor
 *   CW_ERR_FAULT    the board answered but no sensor confirmed the release
 *   CW_ERR_OFFLINE  the board did not answer (or is marked offline)
 *   CW_ERR_NOTFOUND no such board/lock
 * *latency_ms (may be NULL) = request to confirmation, monotonic. */
int cw_bus_unlock(struct cw_bus *bus, int board_index, int lock, int64_t *latency_ms);

/* Last known status; returns CW_ERR_OFFLINE if the board is offline,
 * CW_ERR_AGAIN if never read yet. */
int cw_bus_board_status(struct cw_bus *bus, int board_index, struct cw_board_status *out);

/* Per-lock maintenance counters. */
struct cw_lock_counters {
	uint64_t releases;        /* confirmed releases */
	uint64_t release_failures;/* releases not confirmed or not answered */
	uint64_t sensor_changes;  /* hook or present bit flips seen */
	char last_fault[64];      /* "" or short text, e.g. "release not confirmed" */
	int64_t last_fault_wall_ms;
};
int cw_bus_lock_counters(struct cw_bus *bus, int board_index, int lock, struct cw_lock_counters *out);

/* Bus-wide counters (for status and benchmarks). */
struct cw_bus_stats {
	uint64_t transactions;  /* requests put on the wire */
	uint64_t timeouts;
	uint64_t proto_errors;
	uint64_t polls;         /* successful status reads */
	int boards_online;
};
void cw_bus_stats(struct cw_bus *bus, struct cw_bus_stats *out);

/* Scan: probes addresses [first, last] on a port that is NOT opened by a
 * running bus (the daemon's scan goes through its own bus: cw_bus_scan). */
struct cw_scan_result {
	int address;
	int result; /* CW_OK answered, CW_ERR_PROTO garbled (duplicate address?) */
};
/* Runs a scan as a job on the worker (between polls). results has room for
 * max entries; only answering/garbled addresses are listed. Returns count or <0. */
int cw_bus_scan(struct cw_bus *bus, int first, int last, struct cw_scan_result *results, int max);

#endif
