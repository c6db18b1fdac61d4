/* cw_engine_int.h - internals shared by cw_engine.c (state machine, outbox),
 * cw_engine_ops.c (operations, sensors) and cw_engine_query.c (read side).
 * Not a public contract. */
#ifndef CW_ENGINE_INT_H
#define CW_ENGINE_INT_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "cw_edb.h"
#include "cw_engine.h"

/* One lock board the configured carts live on. In memory only: everything
 * here is re-derived at start-up. */
struct cw_eboard {
	int bus_index;
	int board_index;
	bool need_reconcile; /* first status after start-up or after offline */
	bool have_bits;      /* hook/present below were committed to the DB */
	uint32_t hook;
	uint32_t present;
	uint32_t inflight;   /* locks with a release in progress (mutex not held) */
	bool online;         /* answered its last poll (health: boards online) */
	/* Who set each in-flight bit: only that operation clears it. */
	uint64_t inflight_owner[CW_MAX_LOCKS_PER_BOARD];
};

struct cw_engine {
	pthread_mutex_t mu;
	struct cw_edb *db;
	sqlite3 *h;
	struct cw_engine_hw hw;
	struct cw_rules rules;
	char chain_id[64];
	char branch_id[64];
	char device_id[64];
	char boot[40]; /* kernel boot id: monotonic times are comparable within one boot */
	int nboards;
	struct cw_eboard *boards;
	uint64_t next_token; /* owner tokens of in-flight releases, never 0 */
	/* Outbox hook (cw_engine_set_outbox_hook): outbox_written is set by
	 * every outbox insert of the open transaction, notify_pending by its
	 * commit; cwe_unlock() calls the hook after releasing the mutex. */
	void (*outbox_hook)(void *ctx);
	void *outbox_hook_ctx;
	bool outbox_written;
	bool notify_pending;
	/* Wall clock from the cloud (cw_engine_server_time): used when the
	 * kernel's clock is not NTP-synchronised. */
	_Atomic int64_t server_offset_ms;
	atomic_bool server_synced;
	/* Commands whose lock is moving (mutex not held): their rows are
	 * executing on purpose. cmd_unrecorded: a command's outcome could not
	 * be written; the tick reports the executing rows once none moves. */
	int cmd_running;
	bool cmd_unrecorded;
};

/* Releases the engine mutex, then runs the outbox hook if a commit made
 * while it was held wrote outbox entries. Use instead of unlocking by hand. */
void cwe_unlock(struct cw_engine *e);

int cw_eq_vprepare(struct cw_engine *e, sqlite3_stmt **st, const char *sql, const char *types,
		   va_list ap);

/* ---- shared by cw_engine.c and cw_engine_ops.c ---- */

#define I64(x) ((int64_t)(x))
/* Open = active OR overdue, in every query (BRIEF.md §4: the original system
 * forgot overdue rentals). */
#define OPEN_SQL "status IN ('active', 'overdue')"

/* One reading of the clocks per operation, so every row written by one
 * transaction carries the same time. */
struct stamp {
	int64_t wall;
	int64_t mono;
	bool trusted;
};

enum cart_st { CS_AVAILABLE, CS_RENTED, CS_AWAITING, CS_MAINT, CS_FAULT, CS_N };

enum rental_st { RS_ACTIVE, RS_OVERDUE, RS_RETURNED, RS_LATE, RS_CANCELLED, RS_N };

struct cart_row {
	char id[40];
	int number, bus, board, lock;
	int st; /* enum cart_st */
	bool present, hook, online, removed;
	char reserved[40];
	int64_t res_wall, res_mono;
	char res_boot[40];
};
#define CART_COLS                                                                          \
	"id, cart_number, bus_index, board_index, lock_index, status, cart_present, "        \
	"hook_closed, board_online, removed, reserved_for_rental, reserved_wall_ms, "        \
	"reserved_mono_ms, reserved_boot"

struct rental_row {
	char id[40];
	char cart_id[40];
	char phone[24];
	int st; /* enum rental_st */
	int64_t start_wall, start_mono;
	bool start_trusted;
	char boot[40];
	int64_t allowed_ms, grace_ms;
	bool release_confirmed;
	int64_t rel_wall, rel_mono;
	char rel_boot[40];
	bool taken;
	char return_slot[40];
};
#define RENTAL_COLS                                                                        \
	"id, cart_id, user_phone, status, start_time, start_trusted, start_mono_ms, "        \
	"mono_boot, allowed_ms, grace_ms, release_confirmed, released_wall_ms, "             \
	"released_mono_ms, released_boot, taken, return_slot"

void cwe_stamp_now(struct cw_engine *e, struct stamp *s);
int64_t cwe_elapsed_ms(const struct cw_engine *e, const struct stamp *now, int64_t wall0,
			  int64_t mono0, const char *boot0, bool trusted0, bool *trusted);
void cwe_cart_from_row(sqlite3_stmt *st, struct cart_row *c);
int cwe_cart_load(struct cw_engine *e, struct cart_row *c, const char *where, const char *types,
		     ...);
int cwe_rental_load(struct cw_engine *e, struct rental_row *r, const char *where,
		       const char *types, ...);
bool cwe_rental_open(const struct rental_row *r);
void cwe_col_text(sqlite3_stmt *st, int i, char *buf, size_t cap);
int cwe_outbox_rental(struct cw_engine *e, const struct stamp *now, const char *rental_id,
			 const char *kind);
int cwe_outbox_cart(struct cw_engine *e, const struct stamp *now, const char *cart_id,
		       const char *kind);
int cwe_telemetry(struct cw_engine *e, const struct stamp *now, const char *type,
		     const char *cart_id, const char *rental_id, cJSON *data);
cJSON *cwe_jdata(const char *k1, const char *v1, const char *k2, const char *v2);
int cwe_cart_transition(struct cw_engine *e, const struct stamp *now, const char *cart_id,
			   int to, const char *arg);
int cwe_rental_transition(struct cw_engine *e, const struct stamp *now,
			     const struct rental_row *r, int to, const char *reason,
			     const char *returned_to, const char *note);
bool cwe_rental_late(const struct cw_engine *e, const struct stamp *now,
			const struct rental_row *r);
int cwe_release_slots(struct cw_engine *e, const struct stamp *now, const struct rental_row *r,
			 const char *fault_reason);
int cwe_close_returned(struct cw_engine *e, const struct stamp *now, const struct rental_row *r,
			  const char *slot_id, const char *reason, const char *note);
int cwe_cancel_rental(struct cw_engine *e, const struct stamp *now, const struct rental_row *r,
			 const char *reason, const char *fault_reason);
int cwe_confirm_release(struct cw_engine *e, const struct stamp *now, const struct rental_row *r,
			   int64_t latency_ms, bool has_latency);
int cwe_mark_taken(struct cw_engine *e, const struct stamp *now, const struct rental_row *r);
struct cw_eboard *cwe_board_find(struct cw_engine *e, int bus, int board);
/* In-flight releases (mutex held): begin returns the owner token; end clears
 * the bit only if token still owns it. */
uint64_t cwe_inflight_begin(struct cw_engine *e, struct cw_eboard *b, int lock);
void cwe_inflight_end(struct cw_eboard *b, int lock, uint64_t token);
bool cwe_inflight(const struct cw_eboard *b, int lock);
int cwe_set_online(struct cw_engine *e, const struct stamp *now, int bus, int board, bool online,
		   int *changed);
/* Savepoints inside the open transaction: one slot or one tick item can fail
 * without rolling back the others. end() releases on CW_OK, else rolls back
 * to the savepoint; returns CW_OK or the savepoint's own failure. */
int cwe_savepoint(struct cw_engine *e);
int cwe_savepoint_end(struct cw_engine *e, int rc);
/* Steps st over its rows: CW_OK with a row, CW_ERR_NOTFOUND at the end, CW_ERR_DB
 * (logged) when the step failed -- never an error taken for the end of rows. */
int cwe_step(struct cw_engine *e, sqlite3_stmt *st);
bool cwe_board_usable(struct cw_engine *e, int bus, int board);
bool cwe_phone_valid(const char *p);
int cwe_begin(struct cw_engine *e);
int cwe_finish(struct cw_engine *e, int rc);
int cwe_parse_state(const char *s, const char *const *names, int n);

/* ---- operations in phases, shared by cw_engine_ops.c and the commands of
 * cw_engine_cmd.c: each *_tx runs inside a transaction the caller opened
 * (mutex held) and neither begins nor commits. ---- */
/* Rent: picks a free cart (only that one when only_cart_id is not NULL),
 * creates the rental and marks the cart rented. */
int cwe_rent_tx(struct cw_engine *e, const struct stamp *now, const char *phone,
		const char *only_cart_id, struct cart_row *c, struct cw_rent_result *out);
/* After hw.unlock; *result = the operation's outcome (CW_OK, CW_ERR_FAULT,
 * CW_ERR_OFFLINE, CW_ERR_STATE); returns the database result. */
int cwe_rent_end_tx(struct cw_engine *e, const struct stamp *now, const struct cart_row *c,
		    const char *rental_id, int hw_rc, int64_t latency, bool *recheck, int *result);
/* Maintenance unlock, before the lock moves: checks the cart (CW_ERR_STATE
 * for a customer's slot or a lock already moving) and puts an available
 * cart in maintenance. */
int cwe_munlock_begin_tx(struct cw_engine *e, const struct stamp *now, const struct cart_row *c);
/* After hw.unlock: the sensed lock state and telemetry. */
int cwe_munlock_end_tx(struct cw_engine *e, const struct stamp *now, const struct cart_row *c,
		       int hw_rc);
int cwe_set_maintenance_tx(struct cw_engine *e, const struct stamp *now, int cart_number, bool on,
			   const char *note);
/* *cancelled: closed as cancelled (its board must be read afresh). */
int cwe_force_return_tx(struct cw_engine *e, const struct stamp *now, const char *rental_id,
			const char *note, bool *cancelled, struct cw_eboard **board);
/* Marks the open transaction as having written the outbox. */
void cwe_outbox_written(struct cw_engine *e);
/* Commands left executing by a crash: reported failed "interrupted". */
int cwe_commands_interrupted(struct cw_engine *e, const struct stamp *now);
/* Tick (mutex held, no transaction open): when a command's outcome could
 * not be recorded and no command is moving a lock, reports the executing
 * rows failed "result_not_recorded" in a transaction of its own. */
void cwe_commands_unrecorded(struct cw_engine *e);
/* Start transaction: remembers when this database was created (settings
 * 'db_created'), unless it is known already. Commands issued before it
 * are refused (docs/RENTALS.md "Commands"). */
int cwe_db_created_init(struct cw_engine *e, const struct stamp *now);

#endif
