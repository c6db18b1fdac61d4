/* cw_engine.h - the rental engine: carts, rentals, the state machine of
 * BRIEF.md §4, reconciliation, and the transactional outbox.
 *
 * Thread-safe: one mutex guards the database connection; it is never held
 * while waiting on the bus. Every state change and its outbox entry commit in
 * one SQLite transaction.
 *
 * Cart (slot) states: available, rented, awaiting-return, maintenance, fault;
 * "offline" is reported when the slot's board does not answer (the stored
 * state is kept so that reconciliation can compare when the board returns).
 * Rental states: active, overdue, returned, returned-late, cancelled. */
#ifndef CW_ENGINE_H
#define CW_ENGINE_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "cw_lockbus.h"

struct cw_engine;

struct cw_rules {
	int rental_minutes;   /* default 120 */
	bool one_per_phone;   /* default true */
	int grace_minutes;    /* after expected return before overdue, default 10 */
	int take_timeout_s;   /* released cart not taken -> rental cancelled, default 60 */
	int return_timeout_s; /* designated slot reservation lifetime, default 600 */
};
void cw_rules_defaults(struct cw_rules *r);

/* A cart is a docking slot: (bus, board, lock). */
struct cw_cart_map {
	int number;      /* cart number shown to people, unique, >= 1 */
	int bus_index;
	int board_index; /* index into that bus's cfg.boards */
	int lock;
};

/* How the engine reaches the hardware. The daemon passes the real buses;
 * unit tests pass a fake. */
struct cw_engine_hw {
	/* Blocking release + sensor confirmation; same results as cw_bus_unlock. */
	int (*unlock)(void *ctx, int bus_index, int board_index, int lock, int64_t *latency_ms);
	void *ctx;
};

struct cw_engine_config {
	char db_path[512];
	char chain_id[64];
	char branch_id[64];
	char device_id[64];
	struct cw_rules rules;
	int ncarts;
	struct cw_cart_map *carts; /* borrowed during cw_engine_new only */
};

/* Opens/migrates the database and brings the carts table in line with the
 * configured carts (new carts are added as available; carts no longer
 * configured are kept for history but marked removed). */
int cw_engine_new(const struct cw_engine_config *cfg, const struct cw_engine_hw *hw,
		  struct cw_engine **out);
void cw_engine_free(struct cw_engine *e); /* NULL ok */

/* ---- sensor input (called from bus worker threads) ---- */
void cw_engine_on_board_status(struct cw_engine *e, int bus_index, int board_index,
			       const struct cw_board_status *st);
void cw_engine_on_board_offline(struct cw_engine *e, int bus_index, int board_index, bool offline);

/* ---- customer and staff operations ---- */
struct cw_rent_result {
	char rental_id[37];
	int cart_number;
	int64_t expected_return_wall_ms;
	int64_t unlock_latency_ms;
};
/* Picks a free cart (available, cart present, hook closed, board online and
 * reconciled, no release in flight on its lock), creates the rental,
 * releases the lock and waits for sensor confirmation.
 * Errors: CW_ERR_INVAL (bad phone), CW_ERR_CONFLICT (phone has an open
 * rental, overdue included), CW_ERR_NOCART, CW_ERR_FAULT (release not
 * confirmed: rental cancelled, cart marked fault), CW_ERR_OFFLINE (board
 * offline or release unanswered: rental cancelled, the board is read afresh
 * before the slot is offered again), CW_ERR_STATE (the rental was closed
 * while the lock moved). */
int cw_engine_rent(struct cw_engine *e, const char *phone, struct cw_rent_result *out);

struct cw_return_result {
	char rental_id[37];
	int slot_number; /* the designated free slot the cart must go into */
};
/* Designates a free (empty, not reserved) slot for the phone's open rental.
 * Calling it again returns the same slot while the reservation lives.
 * Errors: CW_ERR_NOTFOUND (no open rental), CW_ERR_NOCART (no free slot). */
int cw_engine_return_begin(struct cw_engine *e, const char *phone, struct cw_return_result *out);

/* Staff: closes an open rental by hand, audit note kept: returned /
 * returned-late, or cancelled when its release was never confirmed (the
 * customer may never have had the cart). CW_ERR_STATE while its release is
 * still in flight or when it is not open; CW_ERR_NOTFOUND, CW_ERR_INVAL. */
int cw_engine_force_return(struct cw_engine *e, const char *rental_id, const char *note);
/* Staff: maintenance mode on/off for one cart. Off puts a maintenance or
 * fault cart back to available (the next poll corrects it if needed); off
 * for an available cart is a no-op (CW_OK, nothing written); rented /
 * awaiting-return carts, and any cart whose lock is being released, give
 * CW_ERR_STATE with nothing written. */
int cw_engine_set_maintenance(struct cw_engine *e, int cart_number, bool on, const char *note);
/* Staff: releases a cart's lock without a rental (maintenance). */
int cw_engine_maintenance_unlock(struct cw_engine *e, int cart_number, int64_t *latency_ms);

/* Periodic work (daemon calls it every second): overdue detection, take
 * timeouts, expired return reservations. */
void cw_engine_tick(struct cw_engine *e);

/* ---- read side for the API (caller frees with cJSON_Delete) ---- */
cJSON *cw_engine_carts_json(struct cw_engine *e);
/* id = cart UUID or cart number as text. NULL + *err = CW_ERR_NOTFOUND. */
cJSON *cw_engine_cart_json(struct cw_engine *e, const char *id, int *err);
cJSON *cw_engine_rentals_active_json(struct cw_engine *e);
/* History newest first; cursor NULL (or "") for the newest page, else the
 * next_cursor of the previous page. NULL on error (see the _ex variant). */
cJSON *cw_engine_rentals_history_json(struct cw_engine *e, int limit, const char *cursor,
				      const char *phone);
cJSON *cw_engine_rentals_stats_json(struct cw_engine *e);
/* One rental by id (the object of the history list). NULL with *err =
 * CW_ERR_INVAL (not a UUID), CW_ERR_NOTFOUND, CW_ERR_DB or CW_ERR_NOMEM. */
cJSON *cw_engine_rental_json(struct cw_engine *e, const char *id, int *err);
/* Counts: carts by state, active rentals, outbox depth, schema version. */
cJSON *cw_engine_status_json(struct cw_engine *e);
int64_t cw_engine_outbox_depth(struct cw_engine *e);
const char *cw_engine_branch_id(const struct cw_engine *e);

/* ---- additions (issue 2, engine helper) ---- */
/* Same as cw_engine_rentals_history_json, with a reason when it returns NULL:
 * CW_ERR_INVAL (malformed cursor, bad phone filter), CW_ERR_DB, CW_ERR_NOMEM.
 * Returns {"rentals": [...], "next_cursor": "..." | null}; limit is clamped
 * to 1..200 (<= 0 means 50). */
cJSON *cw_engine_rentals_history_json_ex(struct cw_engine *e, int limit, const char *cursor,
					 const char *phone, int *err);
/* Descriptive data of a board for the controllers table (bus name, address,
 * protocol name); NULL strings leave the stored value. CW_ERR_NOTFOUND if no
 * configured cart is on that board. */
int cw_engine_set_controller_info(struct cw_engine *e, int bus_index, int board_index,
				  const char *bus_name, int address, const char *protocol);
/* The engine's database (for the sync loop of issue 4). Use only under
 * cw_engine_lock()/cw_engine_unlock(): the engine mutex guards the connection. */
struct cw_edb *cw_engine_edb(struct cw_engine *e);
void cw_engine_lock(struct cw_engine *e);
void cw_engine_unlock(struct cw_engine *e);
/* The test-only clock hook is declared in cw_engine_test.h. */

/* Queries on the engine's database for modules that keep their own tables
 * in it (the kiosk): call them between cw_engine_lock() and
 * cw_engine_unlock() only. cw_eq_prepare prepares sql and binds arguments
 * described by types: 'i' int64_t, 't' const char * (NULL binds NULL).
 * Returns CW_OK or CW_ERR_DB (logged). */
int cw_eq_prepare(struct cw_engine *e, sqlite3_stmt **st, const char *sql, const char *types, ...);
/* Runs a statement that returns no rows. */
int cw_eq_exec(struct cw_engine *e, const char *sql, const char *types, ...);
/* First column of the first row as an integer (0 when no row). */
int cw_eq_int(struct cw_engine *e, int64_t *out, const char *sql, const char *types, ...);
/* Wall and monotonic time of the engine, in ms (plus the test offset of
 * cw_engine_test.h). */
int64_t cw_engine_now_wall(void);
int64_t cw_engine_now_mono(void);

/* ---- the cloud link (issue 4, docs/SYNC.md) ---- */
/* fn(ctx) is called after every commit that wrote outbox entries, once the
 * engine mutex is released (so fn may call back into the engine), from the
 * thread that made the change. NULL fn: no hook. Set it before other
 * threads use the engine, and clear it before freeing what ctx points to. */
void cw_engine_set_outbox_hook(struct cw_engine *e, void (*fn)(void *ctx), void *ctx);
/* A wall-clock reading from the cloud (heartbeat server_time over verified
 * TLS) received at monotonic time mono_ms (cw_mono_ms). While the kernel's
 * clock is not NTP-synchronised the engine then stamps records with the
 * kernel clock corrected by the measured offset, and trusts them. */
void cw_engine_server_time(struct cw_engine *e, int64_t wall_ms, int64_t mono_ms);
/* Whether records written now carry a trusted wall time. */
bool cw_engine_clock_trusted(struct cw_engine *e);
/* Lock boards with configured carts: how many answered their last poll. */
void cw_engine_boards(struct cw_engine *e, int *online, int *total);

/* A command from the cloud, already verified by src/cloudsync (signature,
 * audience, target device). */
struct cw_engine_command {
	const char *id;     /* the cloud's command id: 1-63 of [A-Za-z0-9_-] */
	const char *action; /* unlock, set_maintenance, cart_assign, cart_return, ... */
	const cJSON *args;  /* object, or NULL for {} */
	int64_t issued_wall_ms;
	int64_t expires_wall_ms;
};
struct cw_command_outcome {
	/* command_log state: done, failed, refused (clock not trusted),
	 * expired */
	char state[12];
	/* "" when done; else a short code: clock_untrusted, expired,
	 * invalid_args, unknown_action, not_supported, interrupted, or an
	 * engine error name (not_found, bad_state, no_cart, conflict, fault,
	 * offline, database) */
	char error[32];
};
/* Runs a command at most once (docs/SYNC.md "Commands"): its id goes into
 * command_log (state executing) in the same transaction that starts the
 * action, so a second delivery, a replay or a restart after a crash never
 * runs it again; the outcome is recorded and reported through the outbox
 * (kind command.result). A command is refused while the clock is not
 * trusted and when it has expired. Blocks while a lock moves.
 * Returns CW_OK when the command was recorded, whatever its outcome (in
 * *out, may be NULL); CW_ERR_CONFLICT when its id was seen before (nothing
 * done); CW_ERR_INVAL for a malformed id or action; CW_ERR_DB. */
int cw_engine_command(struct cw_engine *e, const struct cw_engine_command *cmd,
		      struct cw_command_outcome *out);

/* ---- configuration from the cloud (docs/SYNC.md "Down: configuration";
 * cw_engine_cfg.c) ---- */
/* Applies the parts of a configuration that change live, all or nothing:
 * the revoked token ids (the revoked_tokens table replaced in one
 * transaction, tagged with version) and then the rental rules (taken by
 * rentals started from now on; open rentals keep the times they started
 * with). version 0 with n 0 empties the table. CW_ERR_DB: nothing changed. */
int cw_engine_apply_config(struct cw_engine *e, int64_t version, const struct cw_rules *rules,
			   const char *const *revoked, int n);
/* Whether a customer token id was revoked by the chain (for the kiosk,
 * issue 5). CW_OK with *revoked set, or CW_ERR_DB. */
int cw_engine_token_revoked(struct cw_engine *e, const char *jti, bool *revoked);
/* A telemetry event of the device (kind telemetry in the outbox, so it
 * reaches the cloud's telemetry). Takes ownership of data (may be NULL). */
int cw_engine_event(struct cw_engine *e, const char *type, cJSON *data);
/* Whether any lock release is in flight right now: a restart of the engine
 * and the buses waits for false (a safe point). */
bool cw_engine_releasing(struct cw_engine *e);

#endif
