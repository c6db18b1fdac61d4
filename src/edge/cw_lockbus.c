/* cw_lockbus.c - the bus worker: one thread per serial port.
 *
 * Only one transaction can be on a half-duplex RS485 line at a time (BRIEF.md
 * §3), so one worker thread owns the port and decides what goes on the wire
 * next. In order of priority:
 *   1. a queued unlock: start_release, then at once a status read of THAT
 *      board (the first confirmation poll);
 *   2. the end of a relay pulse that is due (de-energise the coil; at most
 *      a couple of transactions late on a 500 ms pulse);
 *   3. further confirmation polls of releases under way, a step of a bus
 *      scan, and the round-robin status polls. Among these a kind that just
 *      ran yields once to another kind that is waiting, so a stuck lock
 *      (confirmation polls for up to confirm_timeout_ms) or a long scan never
 *      stops the polling of the other boards.
 * A board that fails offline_after consecutive transactions is marked
 * offline and then re-probed (one attempt, no retries) with a capped
 * exponential backoff, so a silent board costs the healthy ones one
 * response timeout per backoff period. Callers of cw_bus_unlock block on a
 * condition variable, never the worker. */
#include "cw_lockbus.h"
#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* First re-probe of an offline board after this long; doubles up to
 * cfg.offline_backoff_max_ms. 250 ms = 5 response timeouts: the silent
 * board costs <= 20 % of the bus right after it went offline, and less as
 * the backoff grows. */
#define BACKOFF_START_MS 250
/* A relay that did not take its "off" command is retried this many times,
 * a response timeout apart, before giving up with an error log. */
#define PULSE_END_TRIES 3
/* Upper bound of an idle wait, so a wrong clock never hangs the worker and
 * cw_bus_alive_ms advances while it sleeps (cw_lockbus.h). */
#define IDLE_WAIT_MAX_MS CW_BUS_ALIVE_PERIOD_MS

enum op_kind { OP_NONE, OP_CONFIRM, OP_SCAN, OP_POLL };
enum job_kind { JOB_UNLOCK, JOB_SCAN };

struct job {
	enum job_kind kind;
	int board, lock;
	/* scan */
	int first, last, next_addr, max, count;
	struct cw_scan_result *results;
	/* unlock under way (worker only) */
	int64_t t_request_ms;
	int64_t confirm_deadline_ms;
	bool first_poll_done;
	/* result (under bus->mu) */
	int result;
	int64_t latency_ms;
	bool done;
	struct job *next;
};

struct board_rt {
	/* worker only */
	int fails;               /* failure score, see handle_read() */
	int64_t backoff_ms;
	int64_t next_probe_ms;   /* when offline */
	int64_t pulse_end_ms[CW_MAX_LOCKS_PER_BOARD]; /* 0 = no pulse pending */
	int pulse_tries[CW_MAX_LOCKS_PER_BOARD];
	/* shared, under bus->mu */
	bool online;
	bool ever_read;
	struct cw_board_status st;
	struct cw_lock_counters ctr[CW_MAX_LOCKS_PER_BOARD];
};

struct cw_bus {
	struct cw_bus_config cfg;
	const struct cw_lockdrv_ops *ops;
	struct cw_lockdrv *drv;
	cw_bus_event_cb cb;
	void *ud;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t wake; /* worker: new job or stop (CLOCK_MONOTONIC) */
	pthread_cond_t done; /* callers: a job finished */
	pthread_cond_t idle; /* cw_bus_free: last caller left */
	bool stopping;
	int users;
	struct job *qhead, *qtail; /* queued, not started */
	struct cw_bus_stats stats;
	struct board_rt b[CW_MAX_BOARDS_PER_BUS];

	/* worker only */
	struct job *active;   /* releases waiting for confirmation */
	struct job *scan;     /* scan under way */
	struct job *scan_q;   /* scans waiting their turn */
	int npulses;
	int cursor;           /* round-robin position */
	bool round_had_work;
	int64_t next_round_ms;
	enum op_kind last_op;
	/* written by the worker at every turn of its loop, read by anyone */
	_Atomic int64_t alive_ms;
};

/* ---- configuration ---- */

void cw_bus_config_defaults(struct cw_bus_config *c)
{
	memset(c, 0, sizeof(*c));
	c->protocol = CW_PROTO_MODBUS;
	c->baud = 19200;
	c->parity = 'N';
	/* A 16-lock FC02 round trip at 19200 baud is ~10 ms of wire time; a USB
	 * adapter's latency timer adds up to 16 ms. 50 ms answers all of that
	 * and keeps a silent board from stalling the bus (libmodbus: 500 ms). */
	c->response_timeout_ms = 50;
	c->retries = 1;
	/* Modbus-RTU needs 3.5 characters of silence (1.82 ms at 19200). */
	c->inter_frame_gap_ms = 2;
	c->poll_interval_ms = 50;
	c->confirm_timeout_ms = 2000;
	c->offline_after = 3;
	c->offline_backoff_max_ms = 5000;
}

void cw_board_config_defaults(struct cw_board_config *b, int address, int locks)
{
	memset(b, 0, sizeof(*b));
	b->address = address;
	b->locks = locks;
	b->pulse_ms = 500;
	b->has_present_sensor = true;
	b->coil_base = 0;
	b->hook_input_base = 0;
	b->present_input_base = locks;
}

int cw_protocol_parse(const char *s, enum cw_protocol *out)
{
	if (s && strcmp(s, "modbus") == 0) {
		*out = CW_PROTO_MODBUS;
		return CW_OK;
	}
	if (s && strcmp(s, "kerong") == 0) {
		*out = CW_PROTO_KERONG;
		return CW_OK;
	}
	return CW_ERR_INVAL;
}

const char *cw_protocol_name(enum cw_protocol p)
{
	switch (p) {
	case CW_PROTO_MODBUS:
		return "modbus";
	case CW_PROTO_KERONG:
		return "kerong";
	}
	return "unknown";
}

const struct cw_lockdrv_ops *cw_lockdrv_find(enum cw_protocol p)
{
	switch (p) {
	case CW_PROTO_MODBUS:
		return &cw_lockdrv_modbus;
	case CW_PROTO_KERONG:
		return &cw_lockdrv_kerong;
	}
	return NULL;
}

/* Writes what is wrong into why (for the log) and returns CW_ERR_CONFIG. */
static int validate(const struct cw_bus_config *c, char *why, size_t cap)
{
	if (c->nboards < 0 || c->nboards > CW_MAX_BOARDS_PER_BUS) {
		snprintf(why, cap, "nboards=%d (0..%d)", c->nboards, CW_MAX_BOARDS_PER_BUS);
		return CW_ERR_CONFIG;
	}
	if (c->response_timeout_ms < 1 || c->retries < 0 || c->inter_frame_gap_ms < 0 ||
	    c->poll_interval_ms < 0 || c->confirm_timeout_ms < 1 || c->offline_after < 1 ||
	    c->offline_backoff_max_ms < 1) {
		snprintf(why, cap, "timing out of range");
		return CW_ERR_CONFIG;
	}
	for (int i = 0; i < c->nboards; i++) {
		const struct cw_board_config *b = &c->boards[i];
		bool kerong = c->protocol == CW_PROTO_KERONG;
		int max = kerong ? 16 : CW_MAX_LOCKS_PER_BOARD;
		/* Modbus slave ids 1-247 (0 = broadcast); Kerong boards 0-15 */
		int amin = kerong ? 0 : 1, amax = kerong ? 15 : 247;

		if (b->locks < 1 || b->locks > max || b->pulse_ms < 0 || b->address < amin ||
		    b->address > amax) {
			snprintf(why, cap, "board %d: address=%d (%d..%d) locks=%d (1..%d) pulse_ms=%d", i,
				 b->address, amin, amax, b->locks, max, b->pulse_ms);
			return CW_ERR_CONFIG;
		}
	}
	return CW_OK;
}

/* ---- helpers ---- */

static const char *bus_name(const struct cw_bus *bus)
{
	return bus->cfg.name[0] ? bus->cfg.name : bus->cfg.port;
}

static void emit(struct cw_bus *bus, enum cw_bus_event_kind kind, int board,
		 const struct cw_board_status *st)
{
	struct cw_bus_event ev;

	if (!bus->cb)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.kind = kind;
	ev.board_index = board;
	if (st)
		ev.status = *st;
	bus->cb(bus, &ev, bus->ud);
}

static void count_attempt(struct cw_bus *bus, int rc)
{
	pthread_mutex_lock(&bus->mu);
	bus->stats.transactions++;
	if (rc == CW_ERR_TIMEOUT)
		bus->stats.timeouts++;
	else if (rc == CW_ERR_PROTO)
		bus->stats.proto_errors++;
	pthread_mutex_unlock(&bus->mu);
}

static bool retryable(int rc)
{
	return rc == CW_ERR_TIMEOUT || rc == CW_ERR_PROTO;
}

static int min_i(int a, int b)
{
	return a < b ? a : b;
}

/* A transaction of a board failed (after its retries). */
static void board_failed(struct cw_bus *bus, int bi, int rc, int64_t now)
{
	struct board_rt *r = &bus->b[bi];
	bool went_offline = false;

	pthread_mutex_lock(&bus->mu);
	if (r->online) {
		if (++r->fails >= bus->cfg.offline_after) {
			r->online = false;
			went_offline = true;
			r->backoff_ms = min_i(BACKOFF_START_MS, bus->cfg.offline_backoff_max_ms);
			r->next_probe_ms = now + r->backoff_ms;
		}
	} else {
		/* A failed re-probe: wait twice as long next time. */
		r->backoff_ms = r->backoff_ms * 2;
		if (r->backoff_ms > bus->cfg.offline_backoff_max_ms)
			r->backoff_ms = bus->cfg.offline_backoff_max_ms;
		if (r->backoff_ms < 1)
			r->backoff_ms = 1;
		r->next_probe_ms = now + r->backoff_ms;
	}
	pthread_mutex_unlock(&bus->mu);
	if (went_offline) {
		cw_warn("bus.board_offline", "bus=%s board=%d address=%d failures=%d error=%s",
			bus_name(bus), bi, bus->cfg.boards[bi].address, r->fails, cw_errname(rc));
		emit(bus, CW_BUS_EV_OFFLINE, bi, NULL);
	}
}

static void finish_job(struct cw_bus *bus, struct job *j, int result, const char *fault)
{
	int64_t now = cw_mono_ms();

	pthread_mutex_lock(&bus->mu);
	if (j->kind == JOB_UNLOCK) {
		struct cw_lock_counters *c = &bus->b[j->board].ctr[j->lock];
		if (result == CW_OK) {
			c->releases++;
		} else {
			c->release_failures++;
			snprintf(c->last_fault, sizeof(c->last_fault), "%s",
				 fault ? fault : cw_strerror(result));
			c->last_fault_wall_ms = cw_wall_ms();
		}
	}
	j->result = result;
	j->latency_ms = now - j->t_request_ms;
	j->done = true;
	pthread_cond_broadcast(&bus->done);
	pthread_mutex_unlock(&bus->mu);
}

static void remove_active(struct cw_bus *bus, struct job *j)
{
	for (struct job **pp = &bus->active; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			j->next = NULL;
			return;
		}
	}
}

static bool release_seen(const struct cw_board_config *bc, const struct cw_board_status *st,
			 int lock)
{
	uint32_t bit = (uint32_t)1 << lock;

	if (!(st->hook_closed & bit))
		return true; /* hook reported open */
	if (bc->has_present_sensor && !(st->present & bit))
		return true; /* cart reported gone */
	return false;
}

/* Relay boards: schedules the end of a pulse, now, for every lock of board
 * bi without one under way (cw_lockdrv_ops.relays); called at the first
 * contact with the board and when it comes back online. A coil left on by a
 * process killed mid-pulse, or whose end failed while the board was away,
 * would hold its lock open, and the next release would not move it. */
static void switch_coils_off(struct cw_bus *bus, int bi, int64_t now)
{
	struct board_rt *r = &bus->b[bi];

	if (!bus->ops->relays || bus->cfg.boards[bi].pulse_ms <= 0)
		return; /* pulse_ms 0: the board times its pulse, no OFF is ever sent */
	for (int l = 0; l < bus->cfg.boards[bi].locks; l++) {
		if (r->pulse_end_ms[l])
			continue; /* a pulse of ours: it ends in its time */
		r->pulse_end_ms[l] = now > 0 ? now : 1;
		r->pulse_tries[l] = 0;
		bus->npulses++;
	}
}

/* A status read of board bi finished with rc (after its retries). */
static void handle_read(struct cw_bus *bus, int bi, int rc, const struct cw_board_status *st,
			int64_t now)
{
	struct board_rt *r = &bus->b[bi];
	const struct cw_board_config *bc = &bus->cfg.boards[bi];
	bool came_online = false, first_contact;
	uint32_t mask = bc->locks >= 32 ? 0xffffffffu : (((uint32_t)1 << bc->locks) - 1);
	struct cw_board_status s;

	if (rc != CW_OK) {
		board_failed(bus, bi, rc, now);
		return;
	}
	s.hook_closed = st->hook_closed & mask;
	s.present = bc->has_present_sensor ? (st->present & mask) : 0;

	pthread_mutex_lock(&bus->mu);
	bus->stats.polls++;
	if (r->ever_read) {
		uint32_t dh = r->st.hook_closed ^ s.hook_closed;
		uint32_t dp = r->st.present ^ s.present;
		for (int i = 0; i < bc->locks; i++)
			r->ctr[i].sensor_changes += ((dh >> i) & 1u) + ((dp >> i) & 1u);
	}
	r->st = s;
	first_contact = !r->ever_read;
	r->ever_read = true;
	/* A failure score rather than a plain streak: +1 per failed
	 * transaction, -1 per answered one. offline_after consecutive failures
	 * still take a board offline, and so does a board that fails more
	 * often than it answers - e.g. one slower than the response timeout,
	 * whose late answer sometimes lands in the window of our next request
	 * to it and would otherwise reset a streak for ever. */
	if (r->fails > 0)
		r->fails--;
	if (!r->online) {
		r->online = true;
		r->fails = 0;
		came_online = true;
	}
	pthread_mutex_unlock(&bus->mu);
	if (first_contact || came_online)
		switch_coils_off(bus, bi, now);

	if (came_online) {
		cw_info("bus.board_online", "bus=%s board=%d address=%d", bus_name(bus), bi,
			bc->address);
		emit(bus, CW_BUS_EV_ONLINE, bi, &s);
	}
	emit(bus, CW_BUS_EV_STATUS, bi, &s);

	/* Every read of the board counts as a confirmation poll for the
	 * releases under way on it. */
	for (struct job *j = bus->active, *nx; j; j = nx) {
		nx = j->next;
		if (j->board != bi || !release_seen(bc, &s, j->lock))
			continue;
		remove_active(bus, j);
		cw_debug("bus.unlock_confirmed", "bus=%s board=%d lock=%d latency_ms=%lld",
			 bus_name(bus), bi, j->lock, (long long)(now - j->t_request_ms));
		finish_job(bus, j, CW_OK, NULL);
	}
}

/* One status read with up to `tries` attempts. */
static int read_board(struct cw_bus *bus, int bi, int tries, struct cw_board_status *st)
{
	int rc = CW_ERR_TIMEOUT;

	for (int t = 0; t < tries; t++) {
		memset(st, 0, sizeof(*st));
		rc = bus->ops->read_status(bus->drv, &bus->cfg.boards[bi], st);
		count_attempt(bus, rc);
		if (!retryable(rc))
			break;
	}
	return rc;
}

/* ---- the work items ---- */

static void do_pulse_end(struct cw_bus *bus, int bi, int lock)
{
	struct board_rt *r = &bus->b[bi];
	int rc = bus->ops->end_release(bus->drv, &bus->cfg.boards[bi], lock);

	count_attempt(bus, rc);
	/* An offline board gets one try: it most likely never heard the ON,
	 * and retrying would cost the healthy boards bus time. */
	if (rc == CW_OK || ++r->pulse_tries[lock] >= PULSE_END_TRIES || !r->online) {
		if (rc != CW_OK)
			cw_warn("bus.pulse_end_failed",
				 "bus=%s board=%d lock=%d error=%s note=relay_may_stay_energised",
				 bus_name(bus), bi, lock, cw_errname(rc));
		r->pulse_end_ms[lock] = 0;
		r->pulse_tries[lock] = 0;
		bus->npulses--;
		return;
	}
	r->pulse_end_ms[lock] = cw_mono_ms() + bus->cfg.response_timeout_ms;
}

static bool due_pulse(struct cw_bus *bus, int64_t now, int *bi, int *lock, int64_t *next)
{
	if (bus->npulses == 0)
		return false;
	for (int i = 0; i < bus->cfg.nboards; i++) {
		for (int l = 0; l < bus->cfg.boards[i].locks; l++) {
			int64_t t = bus->b[i].pulse_end_ms[l];
			if (!t)
				continue;
			if (t <= now) {
				*bi = i;
				*lock = l;
				return true;
			}
			if (t < *next)
				*next = t;
		}
	}
	return false;
}

static void start_unlock(struct cw_bus *bus, struct job *j, int64_t now)
{
	struct board_rt *r = &bus->b[j->board];
	const struct cw_board_config *bc = &bus->cfg.boards[j->board];
	bool online;
	int tries, rc = CW_ERR_TIMEOUT;
	int64_t pulse_end = 0;

	pthread_mutex_lock(&bus->mu);
	online = r->online;
	pthread_mutex_unlock(&bus->mu);
	/* An offline board gets one attempt: fail fast, but a board that is
	 * back before its next probe is used at once. */
	tries = online ? 1 + bus->cfg.retries : 1;
	for (int t = 0; t < tries; t++) {
		int64_t pe = 0;
		rc = bus->ops->start_release(bus->drv, bc, j->lock, &pe);
		count_attempt(bus, rc);
		/* Even a failed attempt may have energised the relay: schedule
		 * its end whenever the driver asks for one. */
		if (pe > 0)
			pulse_end = pe;
		if (!retryable(rc))
			break;
	}
	if (pulse_end > 0) {
		if (!r->pulse_end_ms[j->lock])
			bus->npulses++;
		r->pulse_end_ms[j->lock] = pulse_end;
		r->pulse_tries[j->lock] = 0;
	}
	if (rc == CW_OK || rc == CW_ERR_PROTO) {
		/* Answered (a garbled answer still means the board heard us and
		 * may have released): the sensors decide. */
		if (rc != CW_OK)
			board_failed(bus, j->board, rc, now);
		j->confirm_deadline_ms = cw_mono_ms() + bus->cfg.confirm_timeout_ms;
		j->first_poll_done = false;
		j->next = bus->active;
		bus->active = j;
		return;
	}
	board_failed(bus, j->board, rc, now);
	cw_warn("bus.unlock_failed", "bus=%s board=%d lock=%d error=%s reason=no_reply",
		bus_name(bus), j->board, j->lock, cw_errname(rc));
	finish_job(bus, j, CW_ERR_OFFLINE, online ? "release not answered" : "board offline");
}

static void confirm_poll(struct cw_bus *bus, struct job *j)
{
	struct cw_board_status st;
	int bi = j->board;
	int rc;

	j->first_poll_done = true;
	/* One attempt per confirmation poll: the next poll is the retry. */
	rc = read_board(bus, bi, 1, &st);
	handle_read(bus, bi, rc, &st, cw_mono_ms());
}

static void expire_actives(struct cw_bus *bus, int64_t now)
{
	for (struct job *j = bus->active, *nx; j; j = nx) {
		nx = j->next;
		if (now < j->confirm_deadline_ms)
			continue;
		remove_active(bus, j);
		cw_warn("bus.unlock_unconfirmed", "bus=%s board=%d lock=%d confirm_timeout_ms=%d",
			bus_name(bus), j->board, j->lock, bus->cfg.confirm_timeout_ms);
		finish_job(bus, j, CW_ERR_FAULT, "release not confirmed");
	}
}

/* The oldest release that still needs its first poll, else the oldest one
 * (the list is newest first, so take the last match). */
static struct job *pick_active(struct cw_bus *bus, bool first_only)
{
	struct job *pick = NULL;

	for (struct job *j = bus->active; j; j = j->next) {
		if (first_only && j->first_poll_done)
			continue;
		pick = j;
	}
	return pick;
}

static void scan_step(struct cw_bus *bus)
{
	struct job *j = bus->scan;
	int rc;

	if (j->next_addr <= j->last && j->count < j->max) {
		int a = j->next_addr++;
		rc = bus->ops->probe(bus->drv, a);
		if (rc != CW_ERR_INVAL)
			count_attempt(bus, rc);
		if (rc == CW_OK || rc == CW_ERR_PROTO) {
			j->results[j->count].address = a;
			j->results[j->count].result = rc;
			j->count++;
		}
	}
	if (j->next_addr > j->last || j->count >= j->max) {
		bus->scan = NULL;
		cw_info("bus.scan_done", "bus=%s first=%d last=%d found=%d", bus_name(bus), j->first,
			j->last, j->count);
		finish_job(bus, j, j->count, NULL);
	}
}

static int64_t earliest_probe(struct cw_bus *bus, int64_t now)
{
	int64_t t = now + IDLE_WAIT_MAX_MS;

	for (int i = 0; i < bus->cfg.nboards; i++) {
		if (!bus->b[i].online && bus->b[i].next_probe_ms < t)
			t = bus->b[i].next_probe_ms;
	}
	return t;
}

/* Is a round-robin poll due now? Sets *bi. Skips offline boards whose probe
 * is not due (they cost nothing) and handles the pause between rounds. */
static bool poll_ready(struct cw_bus *bus, int64_t now, int *bi)
{
	for (int guard = 0; guard <= bus->cfg.nboards + 1; guard++) {
		if (now < bus->next_round_ms || bus->cfg.nboards == 0)
			return false;
		if (bus->cursor >= bus->cfg.nboards) {
			int64_t next = now + bus->cfg.poll_interval_ms;
			/* A round in which every board was skipped (all offline):
			 * sleep until the first re-probe instead of spinning. */
			if (!bus->round_had_work) {
				int64_t p = earliest_probe(bus, now);
				if (p > next)
					next = p;
			}
			bus->cursor = 0;
			bus->round_had_work = false;
			bus->next_round_ms = next;
			continue;
		}
		int i = bus->cursor;
		if (bus->b[i].online || now >= bus->b[i].next_probe_ms) {
			*bi = i;
			return true;
		}
		bus->cursor++;
	}
	return false;
}

static void do_poll(struct cw_bus *bus, int bi)
{
	struct cw_board_status st;
	int rc;

	/* online is only written by this thread, reading it unlocked is fine */
	rc = read_board(bus, bi, bus->b[bi].online ? 1 + bus->cfg.retries : 1, &st);
	bus->cursor++;
	bus->round_had_work = true;
	handle_read(bus, bi, rc, &st, cw_mono_ms());
}

/* Performs one unit of bus work. Returns false when there was nothing to do;
 * *next is then the monotonic time when something will be. */
static bool step(struct cw_bus *bus, int64_t *next)
{
	int64_t now = cw_mono_ms();
	struct job *j = NULL;
	int bi, lock;
	bool can_confirm, can_scan, can_poll;
	enum op_kind pick = OP_NONE;

	*next = now + IDLE_WAIT_MAX_MS;
	expire_actives(bus, now);

	/* 1. queued jobs: unlocks start at once, scans wait their turn */
	pthread_mutex_lock(&bus->mu);
	j = bus->qhead;
	if (j) {
		bus->qhead = j->next;
		if (!bus->qhead)
			bus->qtail = NULL;
		j->next = NULL;
	}
	pthread_mutex_unlock(&bus->mu);
	if (j && j->kind == JOB_SCAN) {
		struct job **pp = &bus->scan_q;
		while (*pp)
			pp = &(*pp)->next;
		*pp = j;
		return true;
	}
	if (j) {
		start_unlock(bus, j, now);
		bus->last_op = OP_NONE;
		return true;
	}
	/* 2. the first confirmation poll right after a release */
	j = pick_active(bus, true);
	if (j) {
		confirm_poll(bus, j);
		bus->last_op = OP_CONFIRM;
		return true;
	}
	/* 3. relay pulses that must end now (a transaction late at most: the
	 * unlock the customer waits for goes first) */
	if (due_pulse(bus, now, &bi, &lock, next)) {
		do_pulse_end(bus, bi, lock);
		return true;
	}
	if (!bus->scan && bus->scan_q) {
		bus->scan = bus->scan_q;
		bus->scan_q = bus->scan->next;
		bus->scan->next = NULL;
	}
	/* 4. confirmation polls, scan steps, round-robin polls, taking turns */
	can_confirm = bus->active != NULL;
	can_scan = bus->scan != NULL;
	can_poll = poll_ready(bus, now, &bi);
	if (can_confirm && (bus->last_op != OP_CONFIRM || (!can_scan && !can_poll)))
		pick = OP_CONFIRM;
	else if (can_scan && (bus->last_op != OP_SCAN || !can_poll))
		pick = OP_SCAN;
	else if (can_poll)
		pick = OP_POLL;
	else if (can_confirm)
		pick = OP_CONFIRM;
	else if (can_scan)
		pick = OP_SCAN;

	switch (pick) {
	case OP_CONFIRM:
		confirm_poll(bus, pick_active(bus, false));
		break;
	case OP_SCAN:
		scan_step(bus);
		break;
	case OP_POLL:
		do_poll(bus, bi);
		break;
	case OP_NONE:
		if (bus->next_round_ms < *next)
			*next = bus->next_round_ms;
		return false;
	}
	bus->last_op = pick;
	return true;
}

static void worker_shutdown(struct cw_bus *bus)
{
	int bi, lock;
	int64_t far = INT64_MAX;

	/* De-energise every relay still pulsed: a coil left on holds a lock open. */
	while (bus->npulses > 0 && due_pulse(bus, INT64_MAX - 1, &bi, &lock, &far)) {
		bus->b[bi].pulse_tries[lock] = PULSE_END_TRIES - 1; /* one last try */
		do_pulse_end(bus, bi, lock);
	}
	/* The release was answered but the confirmation was cut short. */
	while (bus->active) {
		struct job *j = bus->active;
		bus->active = j->next;
		j->next = NULL;
		finish_job(bus, j, CW_ERR_FAULT, "bus stopped before confirmation");
	}
	if (bus->scan) {
		finish_job(bus, bus->scan, CW_ERR_OFFLINE, NULL);
		bus->scan = NULL;
	}
	while (bus->scan_q) {
		struct job *j = bus->scan_q;
		bus->scan_q = j->next;
		finish_job(bus, j, CW_ERR_OFFLINE, NULL);
	}
	/* Queued jobs that never reached the wire. */
	for (;;) {
		struct job *j;
		pthread_mutex_lock(&bus->mu);
		j = bus->qhead;
		if (j) {
			bus->qhead = j->next;
			if (!bus->qhead)
				bus->qtail = NULL;
		}
		pthread_mutex_unlock(&bus->mu);
		if (!j)
			break;
		finish_job(bus, j, CW_ERR_OFFLINE, "bus stopped");
	}
}

static void *worker(void *arg)
{
	struct cw_bus *bus = arg;

	for (;;) {
		int64_t next;
		bool stop;

		/* a turn of the loop: the last step (one transaction at most)
		 * or idle wait is over (cw_bus_alive_ms) */
		atomic_store(&bus->alive_ms, cw_mono_ms());
		pthread_mutex_lock(&bus->mu);
		stop = bus->stopping;
		pthread_mutex_unlock(&bus->mu);
		if (stop)
			break;
		if (step(bus, &next))
			continue;
		pthread_mutex_lock(&bus->mu);
		if (!bus->stopping && !bus->qhead) {
			int64_t wait_ms = next - cw_mono_ms();
			if (wait_ms > 0) {
				struct timespec ts;
				clock_gettime(CLOCK_MONOTONIC, &ts);
				ts.tv_sec += wait_ms / 1000;
				ts.tv_nsec += (wait_ms % 1000) * 1000000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&bus->wake, &bus->mu, &ts);
			}
		}
		pthread_mutex_unlock(&bus->mu);
	}
	worker_shutdown(bus);
	return NULL;
}

/* ---- public API ---- */

int cw_bus_new_with_driver(const struct cw_bus_config *cfg, const struct cw_lockdrv_ops *ops,
			   cw_bus_event_cb cb, void *ud, struct cw_bus **out)
{
	struct cw_bus *bus = NULL;
	pthread_condattr_t ca;
	char why[128];
	bool sync_ok = false;
	int rc;

	*out = NULL;
	if (!cfg || !ops)
		return CW_ERR_INVAL;
	rc = validate(cfg, why, sizeof(why));
	if (rc < 0) {
		cw_error("bus.config_invalid", "bus=%.32s reason=\"%s\"", cfg->name, why);
		return rc;
	}
	bus = calloc(1, sizeof(*bus));
	if (!bus)
		return CW_ERR_NOMEM;
	bus->cfg = *cfg;
	bus->cfg.name[sizeof(bus->cfg.name) - 1] = '\0';
	bus->cfg.port[sizeof(bus->cfg.port) - 1] = '\0';
	bus->ops = ops;
	bus->cb = cb;
	bus->ud = ud;
	for (int i = 0; i < CW_MAX_BOARDS_PER_BUS; i++)
		bus->b[i].online = true; /* until proven otherwise */

	if (pthread_mutex_init(&bus->mu, NULL) != 0) {
		free(bus);
		return CW_ERR_INTERNAL;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&bus->wake, &ca) == 0) {
		if (pthread_cond_init(&bus->done, NULL) == 0) {
			if (pthread_cond_init(&bus->idle, NULL) == 0)
				sync_ok = true;
			else
				pthread_cond_destroy(&bus->done);
		}
		if (!sync_ok)
			pthread_cond_destroy(&bus->wake);
	}
	pthread_condattr_destroy(&ca);
	if (!sync_ok) {
		pthread_mutex_destroy(&bus->mu);
		free(bus);
		return CW_ERR_INTERNAL;
	}

	rc = ops->open(&bus->cfg, &bus->drv);
	if (rc < 0) {
		cw_error("bus.open_failed", "bus=%s port=%s protocol=%s error=%s", bus_name(bus),
			 bus->cfg.port, ops->name, cw_errname(rc));
		bus->drv = NULL;
		goto out;
	}
	atomic_store(&bus->alive_ms, cw_mono_ms());
	if (pthread_create(&bus->thread, NULL, worker, bus) != 0) {
		rc = CW_ERR_INTERNAL;
		goto out;
	}
	bus->thread_started = true;
	cw_info("bus.start", "bus=%s port=%s protocol=%s boards=%d baud=%d", bus_name(bus),
		bus->cfg.port, ops->name, bus->cfg.nboards, bus->cfg.baud);
	*out = bus;
	bus = NULL;
	rc = CW_OK;
out:
	cw_bus_free(bus);
	return rc;
}

int cw_bus_new(const struct cw_bus_config *cfg, cw_bus_event_cb cb, void *ud, struct cw_bus **out)
{
	const struct cw_lockdrv_ops *ops;

	*out = NULL;
	if (!cfg)
		return CW_ERR_INVAL;
	ops = cw_lockdrv_find(cfg->protocol);
	if (!ops)
		return CW_ERR_CONFIG;
	return cw_bus_new_with_driver(cfg, ops, cb, ud, out);
}

void cw_bus_free(struct cw_bus *bus)
{
	if (!bus)
		return;
	pthread_mutex_lock(&bus->mu);
	bus->stopping = true;
	pthread_cond_broadcast(&bus->wake);
	pthread_mutex_unlock(&bus->mu);
	if (bus->thread_started)
		pthread_join(bus->thread, NULL);
	if (bus->drv)
		bus->ops->close(bus->drv);
	bus->drv = NULL;
	/* Callers woken by the worker still hold a pointer to their job and
	 * to bus->mu: wait until the last one has left. */
	pthread_mutex_lock(&bus->mu);
	while (bus->users > 0)
		pthread_cond_wait(&bus->idle, &bus->mu);
	pthread_mutex_unlock(&bus->mu);
	pthread_cond_destroy(&bus->wake);
	pthread_cond_destroy(&bus->done);
	pthread_cond_destroy(&bus->idle);
	pthread_mutex_destroy(&bus->mu);
	free(bus);
}

const struct cw_bus_config *cw_bus_config_of(const struct cw_bus *bus)
{
	return &bus->cfg;
}

int64_t cw_bus_alive_ms(struct cw_bus *bus)
{
	return atomic_load(&bus->alive_ms);
}

int64_t cw_bus_step_max_ms(const struct cw_bus_config *c)
{
	/* see step(): one unit of work per turn; the cost of each in the header */
	int64_t requests = 2 * (1 + (int64_t)c->retries) + 1;

	return requests * ((int64_t)c->response_timeout_ms + c->inter_frame_gap_ms);
}

/* Queues j and blocks until the worker finished it. */
static int run_job(struct cw_bus *bus, struct job *j)
{
	int rc;

	pthread_mutex_lock(&bus->mu);
	if (bus->stopping) {
		pthread_mutex_unlock(&bus->mu);
		return CW_ERR_OFFLINE;
	}
	bus->users++;
	if (bus->qtail)
		bus->qtail->next = j;
	else
		bus->qhead = j;
	bus->qtail = j;
	pthread_cond_signal(&bus->wake);
	while (!j->done)
		pthread_cond_wait(&bus->done, &bus->mu);
	rc = j->result;
	if (--bus->users == 0)
		pthread_cond_broadcast(&bus->idle);
	pthread_mutex_unlock(&bus->mu);
	return rc;
}

int cw_bus_unlock(struct cw_bus *bus, int board_index, int lock, int64_t *latency_ms)
{
	struct job j;
	int rc;

	if (latency_ms)
		*latency_ms = 0;
	if (!bus || board_index < 0 || board_index >= bus->cfg.nboards || lock < 0 ||
	    lock >= bus->cfg.boards[board_index].locks)
		return CW_ERR_NOTFOUND;
	memset(&j, 0, sizeof(j));
	j.kind = JOB_UNLOCK;
	j.board = board_index;
	j.lock = lock;
	j.t_request_ms = cw_mono_ms();
	rc = run_job(bus, &j);
	if (latency_ms && j.done)
		*latency_ms = j.latency_ms;
	return rc;
}

int cw_bus_scan(struct cw_bus *bus, int first, int last, struct cw_scan_result *results, int max)
{
	struct job j;

	if (!bus || first < 0 || last > 255 || first > last || max < 0 || (max > 0 && !results))
		return CW_ERR_INVAL;
	if (max == 0)
		return 0;
	memset(&j, 0, sizeof(j));
	j.kind = JOB_SCAN;
	j.first = first;
	j.last = last;
	j.next_addr = first;
	j.max = max;
	j.results = results;
	j.t_request_ms = cw_mono_ms();
	return run_job(bus, &j);
}

int cw_bus_board_status(struct cw_bus *bus, int board_index, struct cw_board_status *out)
{
	int rc;

	if (!bus || board_index < 0 || board_index >= bus->cfg.nboards)
		return CW_ERR_NOTFOUND;
	pthread_mutex_lock(&bus->mu);
	if (!bus->b[board_index].online)
		rc = CW_ERR_OFFLINE;
	else if (!bus->b[board_index].ever_read)
		rc = CW_ERR_AGAIN;
	else {
		*out = bus->b[board_index].st;
		rc = CW_OK;
	}
	pthread_mutex_unlock(&bus->mu);
	return rc;
}

int cw_bus_lock_counters(struct cw_bus *bus, int board_index, int lock, struct cw_lock_counters *out)
{
	if (!bus || board_index < 0 || board_index >= bus->cfg.nboards || lock < 0 ||
	    lock >= bus->cfg.boards[board_index].locks)
		return CW_ERR_NOTFOUND;
	pthread_mutex_lock(&bus->mu);
	*out = bus->b[board_index].ctr[lock];
	pthread_mutex_unlock(&bus->mu);
	return CW_OK;
}

void cw_bus_stats(struct cw_bus *bus, struct cw_bus_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!bus)
		return;
	pthread_mutex_lock(&bus->mu);
	*out = bus->stats;
	out->boards_online = 0;
	for (int i = 0; i < bus->cfg.nboards; i++)
		out->boards_online += bus->b[i].online ? 1 : 0;
	pthread_mutex_unlock(&bus->mu);
}
