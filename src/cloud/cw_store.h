/* cw_store.h - the cloud aggregator's storage: one interface, two backends.
 *
 * The operations below are written once (cw_store.c) on top of a small
 * backend interface (cw_store_int.h: connections, prepared statements,
 * transactions), implemented by cw_store_sqlite.c (embedded default) and
 * cw_store_pg.c (libpq, connection pool). Every statement is a fixed,
 * prepared SQL text with bound parameters; nothing is ever built from input.
 *
 * Tenancy: list operations take a struct cw_scope and filter in SQL, so a
 * list never carries another tenant's rows. Single-object reads return the
 * object's chain_id so that the caller authorises the object itself.
 *
 * Errors: CW_ERR_NOTFOUND (no such row), CW_ERR_CONFLICT (unique or
 * reference violation), CW_ERR_INVAL (a CHECK refused the value),
 * CW_ERR_AUTH (registration refused), CW_ERR_OFFLINE (database unreachable:
 * HTTP 503; the PostgreSQL pool reconnects by itself on a later call),
 * CW_ERR_DB (anything else). All functions are thread-safe. */
#ifndef CW_STORE_H
#define CW_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "cw_uuid.h"

/* Field bounds (bytes + NUL), the same as the schema's. */
#define CW_NAME_MAX 256
#define CW_SLUG_MAX 101
#define CW_CODE_MAX 65
#define CW_ADDRESS_MAX 513
#define CW_CITY_MAX 101
#define CW_EMAIL_MAX 255
#define CW_PWHASH_MAX 129
#define CW_DEVNAME_MAX 101
#define CW_MAC_MAX 18
#define CW_SERIAL_MAX 101
#define CW_FIRMWARE_MAX 21
#define CW_STATUS_MAX 16
#define CW_HASH_HEX_MAX 65
#define CW_ACTION_MAX 51
/* health, command args and results as read back: PostgreSQL re-formats
 * jsonb (", " and ": "), so JSON given to the store is at most half of it */
#define CW_JSON_MAX 4096
#define CW_JSON_IN_MAX (CW_JSON_MAX / 2)

/* Largest page a list returns. */
#define CW_PAGE_MAX 200

enum cw_backend { CW_BACKEND_SQLITE, CW_BACKEND_POSTGRES };

struct cw_store_config {
	enum cw_backend backend;
	const char *path;     /* SQLite: database file */
	const char *conninfo; /* PostgreSQL: libpq connection string; "" = PG* environment */
	int pool_size;        /* PostgreSQL: connections, 1..64; SQLite: read-only
			       * connections beside the one writer, 0..64 (one per
			       * server thread; 0 = everything on the writer) */
	int acquire_timeout_ms; /* wait for a free (read) connection; 0 = 5000 */
};

enum cw_role { CW_ROLE_PLATFORM_ADMIN, CW_ROLE_CHAIN_ADMIN, CW_ROLE_BRANCH_MANAGER };
const char *cw_role_name(enum cw_role r);
/* CW_ERR_INVAL for anything but the three names of the schema. */
int cw_role_parse(const char *s, enum cw_role *out);

/* What a list may show: everything (both NULL), one chain, or only the
 * branches a branch manager manages (manager_id set; chain_id set too). */
struct cw_scope {
	const char *chain_id;
	const char *manager_id;
};

/* Keyset pagination on the time-ordered UUIDv7 ids: rows with id > after
 * (NULL or "" = from the start), at most limit (1..CW_PAGE_MAX). */
struct cw_page {
	const char *after;
	int limit;
};

struct cw_chain {
	char id[CW_UUID_STRLEN];
	char name[CW_NAME_MAX];
	char slug[CW_SLUG_MAX];
	bool active;
	int64_t created_ms, updated_ms;
};

struct cw_branch {
	char id[CW_UUID_STRLEN];
	char chain_id[CW_UUID_STRLEN];
	char code[CW_CODE_MAX];
	char name[CW_NAME_MAX];
	char address[CW_ADDRESS_MAX]; /* "" = none */
	char city[CW_CITY_MAX];       /* "" = none */
	bool has_location;
	double latitude, longitude;
	bool active;
	int64_t created_ms, updated_ms;
};

struct cw_branch_stats {
	int64_t carts_total, carts_available, carts_rented, carts_maintenance, carts_fault;
	int64_t rentals_open, rentals_overdue, rentals_since; /* since: started at or after since_ms */
	int64_t devices_total, devices_online;                /* online: heartbeat at or after online_after_ms */
};

struct cw_user {
	char id[CW_UUID_STRLEN];
	char email[CW_EMAIL_MAX]; /* lower case */
	char password_hash[CW_PWHASH_MAX];
	enum cw_role role;
	char chain_id[CW_UUID_STRLEN]; /* "" for a platform admin */
	bool active;
	int64_t created_ms;
};

struct cw_device {
	char id[CW_UUID_STRLEN];
	char branch_id[CW_UUID_STRLEN];
	char chain_id[CW_UUID_STRLEN]; /* of its branch */
	char device_name[CW_DEVNAME_MAX];
	char mac_address[CW_MAC_MAX];
	char serial_number[CW_SERIAL_MAX]; /* "" = none */
	char status[CW_STATUS_MAX];        /* as stored: offline|online|degraded|maintenance */
	int64_t last_heartbeat_ms;         /* 0 = never */
	char firmware_version[CW_FIRMWARE_MAX];
	char health[CW_JSON_MAX];          /* JSON object text, "" = none */
	int64_t created_ms, updated_ms;
};

struct cw_enrollment {
	char id[CW_UUID_STRLEN];
	char branch_id[CW_UUID_STRLEN];
	char code_hash[CW_HASH_HEX_MAX]; /* keyed BLAKE2b of the code, hex */
	char created_by[CW_UUID_STRLEN]; /* "" = none */
	int64_t created_ms, expires_ms;
	int uses_left;
};

/* Registration of a device with a branch enrollment code (one transaction):
 * the code (found by its hash) must belong to the branch with this code, be
 * unexpired and have uses left; one use is consumed. A known MAC address in
 * the same branch re-registers that device (its earlier tokens are revoked);
 * a known MAC in another branch is CW_ERR_CONFLICT. Every refusal of the
 * code itself is CW_ERR_AUTH and consumes nothing. */
struct cw_register_req {
	const char *branch_code;
	const char *code_hash;
	const char *mac_address;   /* canonical "AA:BB:CC:DD:EE:FF" */
	const char *serial_number; /* may be "" */
	const char *device_name;
	const char *new_device_id; /* used when the MAC is new */
	const char *token_jti;     /* the new device token's id */
	int64_t now_ms, token_expires_ms;
};

struct cw_heartbeat {
	const char *status;    /* online|degraded|maintenance */
	const char *firmware;  /* may be NULL = unchanged */
	const char *health;    /* JSON object text, may be NULL = unchanged */
	int64_t now_ms;
};

struct cw_command {
	char id[CW_UUID_STRLEN];
	char device_id[CW_UUID_STRLEN];
	char branch_id[CW_UUID_STRLEN];
	char chain_id[CW_UUID_STRLEN]; /* of its branch (read only) */
	char action[CW_ACTION_MAX];
	char args[CW_JSON_MAX];   /* JSON object text */
	char state[CW_STATUS_MAX]; /* pending|delivered|succeeded|failed|expired */
	char created_by[CW_UUID_STRLEN];
	int64_t created_ms, expires_ms;
	char result[CW_JSON_MAX]; /* "" = none yet */
};

struct cw_store;

/* Opens the backend (no migration). CW_ERR_CONFIG for a bad config,
 * CW_ERR_OFFLINE when PostgreSQL cannot be reached, CW_ERR_DB otherwise. */
int cw_store_new(const struct cw_store_config *cfg, struct cw_store **out);
void cw_store_free(struct cw_store *s); /* NULL ok */
enum cw_backend cw_store_backend(const struct cw_store *s);

/* Applies the compiled-in migrations (schema/cloud/<dialect>/NNN_*.sql);
 * safe when several processes do it at once. *version (may be NULL) gets the
 * schema version after. A database newer than the binary is CW_ERR_DB. */
int cw_store_migrate(struct cw_store *s, int *version);
int cw_store_latest_version(const struct cw_store *s);
/* A trivial query: CW_OK, or CW_ERR_OFFLINE. */
int cw_store_ping(struct cw_store *s);

/* Staff. email must already be lower case. */
int cw_store_user_create(struct cw_store *s, const struct cw_user *u, int64_t now_ms);
int cw_store_user_get(struct cw_store *s, const char *id, struct cw_user *out);
int cw_store_user_get_by_email(struct cw_store *s, const char *email, struct cw_user *out);
/* Gives a branch manager a branch; CW_ERR_INVAL unless the user is a branch
 * manager of the branch's chain. Idempotent. */
int cw_store_user_add_branch(struct cw_store *s, const char *user_id, const char *branch_id);
/* *yes = whether user_id manages branch_id. */
int cw_store_user_manages(struct cw_store *s, const char *user_id, const char *branch_id, bool *yes);

/* Chains. update changes name, slug, active; delete refuses (CW_ERR_CONFLICT)
 * a chain that still has branches or staff. */
int cw_store_chain_create(struct cw_store *s, const struct cw_chain *c, int64_t now_ms);
int cw_store_chain_get(struct cw_store *s, const char *id, struct cw_chain *out);
int cw_store_chain_update(struct cw_store *s, const struct cw_chain *c, int64_t now_ms);
int cw_store_chain_delete(struct cw_store *s, const char *id);
/* Fills out[0..*n) (cap >= page->limit) and sets *more when a next page exists.
 * A manager's scope lists the chain of its branches only. */
int cw_store_chain_list(struct cw_store *s, const struct cw_scope *scope,
			const struct cw_page *page, struct cw_chain *out, int *n, bool *more);

/* Branches. */
int cw_store_branch_create(struct cw_store *s, const struct cw_branch *b, int64_t now_ms);
int cw_store_branch_get(struct cw_store *s, const char *id, struct cw_branch *out);
int cw_store_branch_list(struct cw_store *s, const struct cw_scope *scope,
			 const struct cw_page *page, struct cw_branch *out, int *n, bool *more);
int cw_store_branch_stats(struct cw_store *s, const char *branch_id, int64_t since_ms,
			  int64_t online_after_ms, struct cw_branch_stats *out);

/* Enrollment codes (only the keyed hash of the code is stored). */
int cw_store_enrollment_create(struct cw_store *s, const struct cw_enrollment *e);

/* Devices. */
int cw_store_device_register(struct cw_store *s, const struct cw_register_req *r,
			     struct cw_device *out);
int cw_store_device_get(struct cw_store *s, const char *id, struct cw_device *out);
/* branch_out (may be NULL) gets the device's branch id. */
int cw_store_device_heartbeat(struct cw_store *s, const char *id, const struct cw_heartbeat *h,
			      char branch_out[CW_UUID_STRLEN]);
/* CW_OK when jti is a known, unrevoked token of device_id; else CW_ERR_AUTH. */
int cw_store_device_token_check(struct cw_store *s, const char *jti, const char *device_id);
/* Token rotation, one transaction: old_jti (a live token of the device) is
 * revoked, so are any others, and new_jti becomes the device's one live
 * token. CW_ERR_AUTH when old_jti is not live (also for the loser of two
 * rotations racing with the same token). */
int cw_store_device_token_rotate(struct cw_store *s, const char *device_id, const char *old_jti,
				 const char *new_jti, int64_t now_ms, int64_t expires_ms);
/* Revokes every token of the device. */
int cw_store_device_tokens_revoke(struct cw_store *s, const char *device_id, int64_t now_ms);

/* Commands. create stores a pending command (branch_id taken from the device). */
int cw_store_command_create(struct cw_store *s, const struct cw_command *c);
int cw_store_command_get(struct cw_store *s, const char *id, struct cw_command *out);
/* The device's commands that are pending or delivered and not expired, oldest
 * first, at most cap; those that were pending become delivered. Commands past
 * their expiry are marked expired on the way. */
int cw_store_commands_for_device(struct cw_store *s, const char *device_id, int64_t now_ms,
				 struct cw_command *out, int cap, int *n);

/* Devices whose last heartbeat is at or after after_ms (and not reported
 * offline by themselves), over every chain: for /metrics. */
int cw_store_devices_online(struct cw_store *s, int64_t after_ms, int64_t *n);
/* Sets the device's health (JSON object text, at most CW_JSON_IN_MAX) and
 * nothing else: live telemetry over MQTT. CW_ERR_NOTFOUND, CW_ERR_INVAL. */
int cw_store_device_health(struct cw_store *s, const char *id, const char *health, int64_t now_ms);
/* Calls fn with the id of every device that holds a live (unrevoked,
 * unexpired at now_ms) token, in id order: who may log in to the MQTT broker.
 * A non-zero return of fn stops with that error. */
typedef int (*cw_device_id_fn)(void *ctx, const char *device_id);
int cw_store_devices_mqtt(struct cw_store *s, int64_t now_ms, cw_device_id_fn fn, void *ctx);
/* Database connections in total and in use right now. */
void cw_store_pool_stats(struct cw_store *s, int *total, int *in_use);

/* ---- change notifications between instances (docs/CLOUD.md "Live updates") ---- */

/* Longest payload (PostgreSQL allows 8000 bytes; ours are about 80). */
#define CW_STORE_NOTIFY_MAX 256
/* A payload another instance sent; NULL: the listening connection was lost
 * and is back, so anything sent meanwhile was missed. */
typedef void (*cw_store_notify_fn)(void *ctx, const char *payload);
/* Sends payload to every instance listening on this database, after the
 * caller's commit (PostgreSQL: pg_notify('cartwise_events', payload) on a
 * pool connection). SQLite: nothing (one instance). CW_ERR_TOOBIG,
 * CW_ERR_OFFLINE. */
int cw_store_notify(struct cw_store *s, const char *payload);
/* Starts listening (PostgreSQL: one dedicated connection with the pool's
 * parameters, LISTEN cartwise_events, on its own thread, reconnecting with
 * backoff): fn runs on that thread for every payload sent by another
 * instance (not those of this store's own connections), and with NULL after
 * each reconnect. SQLite: CW_OK and nothing. CW_ERR_STATE when already
 * listening. */
int cw_store_listen(struct cw_store *s, cw_store_notify_fn fn, void *ctx);
/* Stops listening and joins the thread (also done by cw_store_free). */
void cw_store_unlisten(struct cw_store *s);

/* ---- carts, rentals, telemetry (rows arrive by the edge sync, issue 4) ---- */

#define CW_NOTES_MAX 1025   /* notes as returned (longer text is cut at a character) */
#define CW_PHONE_MAX 21
#define CW_EVENT_TYPE_MAX 51
#define CW_EVENT_DATA_MAX 8192 /* event_data as returned; larger is reported as absent */
/* Time range bounds of the lists: [from_ms, to_ms). */
#define CW_TIME_MIN_MS 0LL
#define CW_TIME_MAX_MS 253402300799999LL /* 9999-12-31T23:59:59.999Z */

struct cw_cart {
	char id[CW_UUID_STRLEN];
	char branch_id[CW_UUID_STRLEN];
	char chain_id[CW_UUID_STRLEN];      /* of its branch */
	char device_id[CW_UUID_STRLEN];     /* of its controller; "" = none (no command target) */
	char controller_id[CW_UUID_STRLEN]; /* "" = none */
	int64_t cart_number, locker_id;
	char status[CW_STATUS_MAX];
	bool is_locked;
	int64_t last_used_ms; /* 0 = never */
	char maintenance_notes[CW_NOTES_MAX];
	int64_t updated_ms;
	/* its controller's board (issue 7's cart grid): -1 = none (no
	 * controller, or one made by hand without a bus) */
	int64_t bus_index, board;
	int board_online; /* 1 online, 0 offline, -1 unknown (no controller, or
			   * one no device has reported: status 'inactive') */
};

/* Carts of one branch in cart_number order; status NULL = any. The cursor
 * (page->after) is the id of the last cart of the previous page. */
int cw_store_cart_list(struct cw_store *s, const char *branch_id, const char *status,
		       const struct cw_page *page, struct cw_cart *out, int *n, bool *more);
int cw_store_cart_get(struct cw_store *s, const char *id, struct cw_cart *out);

struct cw_rental {
	char id[CW_UUID_STRLEN];
	char cart_id[CW_UUID_STRLEN];
	char branch_id[CW_UUID_STRLEN];
	char device_id[CW_UUID_STRLEN]; /* "" = unknown */
	int64_t cart_number;
	char user_phone[CW_PHONE_MAX];
	int64_t start_ms, expected_return_ms, actual_return_ms; /* actual: 0 = not yet */
	bool clock_trusted;
	char status[CW_STATUS_MAX];
	int64_t duration_minutes; /* -1 = none */
	char notes[CW_NOTES_MAX];
	int64_t created_ms;
};

/* Open rentals of a branch (active and overdue: BRIEF.md §4, overdue is
 * still open) by expected return, earliest first, so every overdue rental
 * comes before every rental still on time. Cursor: the last rental's id. */
int cw_store_rentals_active(struct cw_store *s, const char *branch_id, const struct cw_page *page,
			    struct cw_rental *out, int *n, bool *more);

struct cw_rental_filter {
	int64_t from_ms, to_ms; /* start time in [from, to) */
	const char *phone;      /* exact; NULL = any */
	const char *status;     /* exact; NULL = any */
};
/* Every rental of a branch started in the range, newest first. Cursor: the
 * last rental's id. */
int cw_store_rentals_history(struct cw_store *s, const char *branch_id,
			     const struct cw_rental_filter *f, const struct cw_page *page,
			     struct cw_rental *out, int *n, bool *more);

struct cw_rental_day {
	int64_t day;            /* UTC days since the epoch */
	int64_t started, late;  /* late: overdue now or returned late */
	int64_t finished;       /* returned or returned late, with a return time */
	int64_t avg_duration_ms; /* of the finished ones; 0 when none */
};
struct cw_rental_stats {
	int64_t total, active, overdue, returned, returned_late, cancelled;
	int64_t finished, avg_duration_ms;
};
/* Rentals of a branch started in [from, to): counts by status (an active
 * rental past its expected return at now_ms counts as overdue), average
 * duration of the finished ones, and the same per UTC day (at most cap days,
 * oldest first; *ndays gets how many). */
int cw_store_rental_stats(struct cw_store *s, const char *branch_id, int64_t from_ms,
			  int64_t to_ms, int64_t now_ms, struct cw_rental_stats *out,
			  struct cw_rental_day *days, int cap, int *ndays);

struct cw_telemetry {
	int64_t id;
	char device_id[CW_UUID_STRLEN];
	char branch_id[CW_UUID_STRLEN];
	char chain_id[CW_UUID_STRLEN];
	int64_t seq; /* -1 = none */
	char event_type[CW_EVENT_TYPE_MAX];
	char event_data[CW_EVENT_DATA_MAX]; /* JSON text; "" = none */
	bool event_data_cut;                /* it was too large to return */
	int64_t ts_ms;
	bool clock_trusted;
	int64_t received_ms;
};

enum cw_telemetry_key { CW_TELEMETRY_DEVICE, CW_TELEMETRY_BRANCH, CW_TELEMETRY_CHAIN };
struct cw_telemetry_query {
	enum cw_telemetry_key key;
	const char *id;          /* the device, branch or chain */
	const char *manager_id;  /* chain queries: only the branches this manager manages; NULL = all */
	const char *event_type;  /* NULL = any */
	int64_t from_ms, to_ms;  /* event time in [from, to) */
	int64_t after_id;        /* cursor: the id of the last row of the previous page; 0 = none */
	int limit;               /* 1..CW_PAGE_MAX */
};
/* Telemetry rows newest first (event time, then id). */
int cw_store_telemetry_list(struct cw_store *s, const struct cw_telemetry_query *q,
			    struct cw_telemetry *out, int *n, bool *more);

/* Called once per (UTC day, event type) with events, ordered by day; return
 * non-zero to stop with that error. event_type is only valid during the call. */
typedef int (*cw_event_count_fn)(void *ctx, int64_t day, const char *event_type, int64_t n);
/* Telemetry events of a chain whose event time is in [from, to), counted by
 * UTC day (days since the epoch) and event type; only the branches manager_id
 * manages when it is not NULL. Whole days come from the daily rollup kept by
 * migration 003's triggers, the partial first and last day from telemetry
 * itself, in one statement (one snapshot), so the counts are exact. */
int cw_store_chain_event_counts(struct cw_store *s, const char *chain_id, const char *manager_id,
				int64_t from_ms, int64_t to_ms, cw_event_count_fn fn, void *ctx);

/* ---- staff user management (HTTP) ---- */

#define CW_USER_BRANCHES_MAX 64
struct cw_user_branches {
	int n;
	char ids[CW_USER_BRANCHES_MAX][CW_UUID_STRLEN]; /* sorted */
};
struct cw_user_row {
	struct cw_user user;
	struct cw_user_branches branches;
};
/* Staff users by id; scope->chain_id set = the users of that chain only
 * (never a platform admin). */
int cw_store_user_list(struct cw_store *s, const struct cw_scope *scope,
		       const struct cw_page *page, struct cw_user_row *out, int *n, bool *more);
int cw_store_user_branches(struct cw_store *s, const char *user_id, struct cw_user_branches *out);
/* Creates (create) or updates a user in one transaction; br (NULL = leave
 * them as they are) replaces the branches a manager manages.
 * CW_ERR_CONFLICT: email taken; CW_ERR_INVAL: a branch that is not of the
 * user's chain, or branches for a role that has none; CW_ERR_NOTFOUND: no
 * such user (update). */
int cw_store_user_save(struct cw_store *s, const struct cw_user *u,
		       const struct cw_user_branches *br, bool create, int64_t now_ms);

/* ---- failed staff logins (the login rate limit, shared by every instance) ---- */

/* key: the hash of (lower-case email, client address) as 64 lower-case hex
 * characters (CW_ERR_INVAL otherwise); the store never sees either in clear.
 * A window started at w is live while w > now_ms - window_ms (window_ms >= 1). */
struct cw_login_failures {
	int failures;            /* 0 = no live window */
	int64_t window_start_ms; /* of the live window; 0 = none */
};
/* The live window of key (one indexed read). */
int cw_store_login_failures_get(struct cw_store *s, const char *key, int64_t now_ms,
				int64_t window_ms, struct cw_login_failures *out);
/* Counts one failed login in one atomic upsert: a new window starts at now_ms
 * when key has none or its window has passed, else the count goes up by one;
 * out (may be NULL) gets the window after. Then deletes up to
 * CW_LOGIN_PRUNE_BATCH rows of expired windows (of any key), so that a spray
 * of random emails cannot grow the table beyond the rows of one window. */
#define CW_LOGIN_PRUNE_BATCH 16
int cw_store_login_failure_add(struct cw_store *s, const char *key, int64_t now_ms,
			       int64_t window_ms, struct cw_login_failures *out);
/* A successful login: forgets key's failures. */
int cw_store_login_failures_clear(struct cw_store *s, const char *key);
/* ---- edge -> cloud sync (issue 4, docs/SYNC.md "Up") ---- */

enum cw_sync_op {
	CW_SYNC_RENTAL,         /* upsert rentals by id */
	CW_SYNC_CART,           /* upsert carts by id (and the controllers row of its board) */
	CW_SYNC_TELEMETRY,      /* insert a telemetry row (also unknown kinds) */
	CW_SYNC_HEALTH,         /* telemetry row + devices.health */
	CW_SYNC_COMMAND_RESULT, /* this device's command: succeeded/failed */
};

/* One validated outbox entry (the API checks types and ranges; the store
 * checks ownership). Strings are borrowed; NULL = SQL NULL where optional.
 * Times are wall-clock ms of the device; 0 = none for the optional ones. */
struct cw_sync_item {
	int64_t seq;
	enum cw_sync_op op;
	const char *id;          /* rental, cart or command id (canonical UUID) */
	/* rental */
	const char *cart_id;
	const char *phone;
	const char *status;      /* rental or cart status (cloud names); command state */
	int64_t start_ms, expected_ms, actual_ms;
	int64_t duration_min;    /* -1 = none */
	bool clock_trusted;      /* rental: its own flag; telemetry: the event's */
	const char *notes;       /* rental notes, cart maintenance notes */
	/* cart */
	int64_t cart_number, locker_id, bus, board;
	bool is_locked, board_online;
	int64_t last_used_ms, updated_ms;
	/* telemetry, health (data = the health object), command result */
	const char *event_type;
	const char *data;        /* JSON object text, NULL = none */
	int64_t ts_ms;           /* event time; command: finished time */
};

struct cw_sync_result {
	int64_t high_water;  /* after the batch (or the current one on a gap) */
	int applied, skipped;
	bool gap;            /* CW_ERR_CONFLICT: the first seq is above high_water + 1 */
	int bad;             /* CW_ERR_INVAL: index of the refused entry */
	const char *why;     /* static text: why it was refused */
	int ignored;         /* command results for unknown or another device's commands */
	char branch_id[CW_UUID_STRLEN]; /* the device's branch ("" when not found) */
};

/* Applies a batch of one device in one transaction with its device_sync row
 * locked (created at 0): entries at or below the high-water mark are skipped,
 * the others applied in order, and the mark set to the last seq. seq must be
 * consecutive (the caller checks). Tenancy comes from the device row, never
 * from the payload: a cart of another branch or another device's controller,
 * a rental of another device, or a rental of a cart that is not this
 * device's is refused (CW_ERR_INVAL with res->bad and res->why; nothing is
 * written). CW_ERR_CONFLICT with res->gap: the batch starts above
 * high_water + 1 (res->high_water is the current mark). CW_ERR_NOTFOUND: no
 * such device. */
int cw_store_sync_apply(struct cw_store *s, const char *device_id, const struct cw_sync_item *it,
			int n, int64_t now_ms, struct cw_sync_result *res);
/* The device's high-water mark (0 when it never synced). */
int cw_store_sync_high_water(struct cw_store *s, const char *device_id, int64_t *out);
/* An operator lowers the device's mark to high_water (docs/SYNC.md "The
 * cloud ahead of the database"), in one transaction with its device_sync
 * row locked: its telemetry rows with a seq above the new mark are kept but
 * lose their seq (*detached of them), so that the entries the device sends
 * again under those numbers are stored, not dropped as replays. *previous:
 * the mark before. CW_ERR_INVAL: high_water is negative or above the
 * current mark (raising it would skip entries the cloud never got);
 * CW_ERR_NOTFOUND: no such device. */
int cw_store_sync_reset(struct cw_store *s, const char *device_id, int64_t high_water,
			int64_t now_ms, int64_t *previous, int64_t *detached);

/* ---- versioned device configuration (docs/SYNC.md "Down: configuration") ---- */

/* Adds body (a JSON object's text, at most CW_DEVICE_CONFIG_MAX bytes) as the
 * device's next version (1, 2, ...) and returns it in *version. created_by
 * may be NULL. CW_ERR_NOTFOUND: no such device; CW_ERR_CONFLICT: another
 * version was added at the same moment (retry). */
#define CW_DEVICE_CONFIG_MAX (64 * 1024)
int cw_store_device_config_put(struct cw_store *s, const char *device_id, const char *body,
			       const char *created_by, int64_t now_ms, int64_t *version);
/* The newest version (0 when none) and, if body is not NULL, its text
 * (caller frees; NULL for version 0). */
int cw_store_device_config_get(struct cw_store *s, const char *device_id, int64_t *version,
			       char **body);
/* Only the newest version number (0 when none): the heartbeat's. */
int cw_store_device_config_version(struct cw_store *s, const char *device_id, int64_t *version);

/* ---- dashboards (issue 7): lists and edits the web app needs ---- */

/* Devices by id. branch_id set: that branch's devices only (the caller has
 * authorised the branch); else the scope's (everything, one chain, or the
 * branches manager_id manages). */
int cw_store_device_list(struct cw_store *s, const struct cw_scope *scope, const char *branch_id,
			 const struct cw_page *page, struct cw_device *out, int *n, bool *more);

/* Changes code, name, address, city, location and active of branch b->id
 * (its chain never changes). CW_ERR_NOTFOUND; CW_ERR_CONFLICT: the code is
 * taken in the chain. */
int cw_store_branch_update(struct cw_store *s, const struct cw_branch *b, int64_t now_ms);

/* Enrollment codes of a branch by id (never the code: only its hash is
 * stored, and that is not returned either: code_hash is ""). chain_id of
 * cw_enrollment_row is the branch's. */
struct cw_enrollment_row {
	struct cw_enrollment e;
	char chain_id[CW_UUID_STRLEN];
};
int cw_store_enrollment_list(struct cw_store *s, const char *branch_id, const struct cw_page *page,
			     struct cw_enrollment_row *out, int *n, bool *more);
int cw_store_enrollment_get(struct cw_store *s, const char *id, struct cw_enrollment_row *out);
/* Revokes a code: no use left (idempotent). CW_ERR_NOTFOUND. */
int cw_store_enrollment_revoke(struct cw_store *s, const char *id);

/* One branch of a chain's comparison: rentals started in [from, to) counted
 * like cw_store_rental_stats (an active rental past its expected return at
 * now counts as overdue), and the branch's carts and devices now. */
struct cw_branch_compare {
	char branch_id[CW_UUID_STRLEN];
	char code[CW_CODE_MAX];
	char name[CW_NAME_MAX];
	bool active;
	int64_t rentals, open, overdue, returned_late, cancelled, finished, avg_duration_ms;
	int64_t carts, devices, devices_online; /* online: heartbeat at or after online_after_ms */
};
/* Called once per branch, by code; non-zero stops with that error. */
typedef int (*cw_branch_compare_fn)(void *ctx, const struct cw_branch_compare *row);
/* Every branch of the chain (only those manager_id manages when it is not
 * NULL) in one statement (one snapshot), so the rows compare. */
int cw_store_chain_branch_compare(struct cw_store *s, const char *chain_id, const char *manager_id,
				  int64_t from_ms, int64_t to_ms, int64_t now_ms,
				  int64_t online_after_ms, cw_branch_compare_fn fn, void *ctx);

/* ---- branch analytics (issue 7: the branch dashboard) ---- */

/* Lower edges, in minutes, of the rental duration buckets; the last bucket
 * has no upper edge. A bucket holds [edge, next edge). */
#define CW_DURATION_BUCKETS 6
#define CW_DURATION_EDGES_MIN {0, 15, 30, 60, 120, 240}

struct cw_rental_hour {
	int64_t hour;    /* UTC hours since the epoch */
	int64_t started; /* rentals started in that hour */
};
struct cw_rental_analytics {
	/* finished rentals (returned, returned late; with a return time) by
	 * duration (return - start; a negative one counts in the first) */
	int64_t durations[CW_DURATION_BUCKETS];
	int64_t carts;     /* carts of the branch now, except removed ones (status offline) */
	int64_t rented_ms; /* the time rentals overlapped [from, min(to, now)): an open
			    * one up to now, a cancelled one not at all */
	int64_t range_ms;  /* min(to, now) - from, 0 when the range starts after now */
};
/* Rentals of a branch, in one read-only transaction: started per UTC hour
 * in [from, to) (hours with rentals only, oldest first, at most cap; more is
 * CW_ERR_TOOBIG), durations of those started in the range, and the rented
 * time within the range of every rental that overlaps it, whenever it
 * started. */
int cw_store_rental_analytics(struct cw_store *s, const char *branch_id, int64_t from_ms,
			      int64_t to_ms, int64_t now_ms, struct cw_rental_analytics *out,
			      struct cw_rental_hour *hours, int cap, int *nhours);

struct cw_cart_faults {
	char cart_id[CW_UUID_STRLEN];
	int64_t cart_number;
	int64_t lock_fault, lock_offline;
};
/* Telemetry lock.fault and lock.offline events of a branch with event time
 * in [from, to), counted per cart (the cart_id of the row's event_data; rows
 * naming no cart of this branch are left out), most events first (then
 * cart number), at most cap carts. */
int cw_store_branch_faults(struct cw_store *s, const char *branch_id, int64_t from_ms,
			   int64_t to_ms, struct cw_cart_faults *out, int cap, int *n);

#endif
