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
	int pool_size;        /* PostgreSQL connections, 1..64 (SQLite: ignored) */
	int acquire_timeout_ms; /* wait for a free connection; 0 = 5000 */
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
int cw_store_device_heartbeat(struct cw_store *s, const char *id, const struct cw_heartbeat *h);
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
/* Database connections in total and in use right now. */
void cw_store_pool_stats(struct cw_store *s, int *total, int *in_use);

#endif
