/* cw_sync.h - the device's side of the cloud link (docs/SYNC.md).
 *
 * src/cloudsync speaks the protocol (enrollment, outbox batches, heartbeat,
 * configuration pull, signed commands, MQTT); it knows nothing of the edge's
 * database or engine. The edge (src/edge, which may use src/cloudsync) hands
 * it a struct cw_sync_source: the outbox, health, command execution. Every
 * callback runs on the syncer's own thread and must not block on the
 * network; it may block briefly on the edge's database.
 *
 * Nothing here waits for the network on behalf of the caller: a rental never
 * waits for the cloud. */
#ifndef CW_SYNC_H
#define CW_SYNC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CW_SYNC_URL_MAX 512
#define CW_SYNC_CODE_MAX 128
#define CW_SYNC_ID_MAX 64 /* UUID text + NUL, with room */

/* One outbox entry, as the edge stores it (schema/edge: outbox). Strings are
 * valid only during the callback that passes them. */
struct cw_sync_entry {
	int64_t seq;
	const char *kind;        /* "rental.created", "cart.updated", "telemetry", ... */
	const char *entity_type; /* rental | cart | telemetry | command | device */
	const char *entity_id;
	const char *payload;     /* JSON object text */
	int64_t created_wall_ms;
	bool clock_trusted;
	int attempts;            /* times sent before (outbox_sent calls), 0 = never */
};

typedef int (*cw_sync_entry_fn)(void *fctx, const struct cw_sync_entry *e);

/* A verified command (signature, audience, target device and expiry already
 * checked by cloudsync). */
struct cw_sync_command {
	char id[CW_SYNC_ID_MAX];
	char action[64];
	/* object; valid during the callback. A signed command with a malformed
	 * act or args reaches the source too, with action "" or args that are
	 * not an object: record it refused (never run it). */
	const cJSON *args;
	int64_t issued_ms, expires_ms;
};

struct cw_sync_source {
	void *ctx;
	/* Calls fn for unacknowledged entries with seq > after_seq, in seq
	 * order: at most max_entries and, beyond the first, at most max_bytes
	 * of payload in total. Returns the number passed (0 = none), or a
	 * negative cw_error. A non-zero return of fn stops the walk and is
	 * returned. */
	int (*outbox_read)(void *ctx, int64_t after_seq, int max_entries, size_t max_bytes,
			   cw_sync_entry_fn fn, void *fctx);
	/* Marks every entry with seq <= upto_seq acknowledged (one local
	 * transaction). */
	int (*outbox_ack)(void *ctx, int64_t upto_seq);
	/* Called before each POST of the entries first_seq..last_seq: attempts
	 * + 1 and the send time for that range (one local transaction). The
	 * cloud may only skip entries this database has sent before
	 * (docs/SYNC.md "The cloud ahead of the database"); a non-zero return
	 * stops the send (retried with backoff). */
	int (*outbox_sent)(void *ctx, int64_t first_seq, int64_t last_seq);
	/* Optional. The cloud's answer showed that it skipped first_seq..last_seq
	 * without applying them (state cloud_ahead): undo the attempts + 1 of
	 * the POST that carried them, so that they still count as never sent
	 * from this database and the cloud cannot skip them unnoticed after a
	 * restart. */
	int (*outbox_unsent)(void *ctx, int64_t first_seq, int64_t last_seq);
	/* Unacknowledged entries, for health. */
	int64_t (*outbox_depth)(void *ctx);
	/* Adds the device's health fields to obj (docs/SYNC.md "Heartbeat"). */
	void (*health)(void *ctx, cJSON *obj);
	/* Runs a verified command at most once (the edge's command_log) and
	 * reports its result through the outbox. CW_ERR_CONFLICT: already seen
	 * (a replay or a second delivery), nothing done. */
	int (*command)(void *ctx, const struct cw_sync_command *cmd);
	/* A trusted wall-clock reading from the cloud (heartbeat server_time
	 * over verified TLS), in ms, with the local monotonic time it was
	 * received at. */
	void (*server_time)(void *ctx, int64_t wall_ms, int64_t mono_ms);
	/* Configuration pull (docs/SYNC.md "Down: configuration"); both or
	 * neither. config_versions: the version the edge accepted and the last
	 * one it refused (0 = none); the syncer pulls GET .../config when the
	 * heartbeat's config_version is neither. config_apply: a pulled
	 * version and its sections (an object, valid during the call). CW_OK =
	 * accepted; CW_ERR_CONFIG = refused with a message naming the key in
	 * err (the edge remembers it and reports it); anything else = not
	 * now, pulled again at a later heartbeat. */
	void (*config_versions)(void *ctx, int64_t *have, int64_t *rejected);
	int (*config_apply)(void *ctx, int64_t version, const cJSON *config, char *err,
			    size_t errlen);
	/* The chain's customer-token key (docs/SYNC.md "The chain's
	 * customer-token key"); optional, both or neither, with the two above.
	 * chain_key_held: whether the edge holds one; while it does not, the
	 * syncer pulls after every heartbeat whatever the version (the cloud's
	 * answer carries the key with a version, with none and unchanged).
	 * chain_key: the customer_token_key an answer carried (valid during the
	 * call). CW_OK = held now; CW_ERR_CONFIG = malformed, refused with a
	 * message in err that never shows it; anything else = not now. */
	bool (*chain_key_held)(void *ctx);
	int (*chain_key)(void *ctx, const cJSON *key, char *err, size_t errlen);
};

struct cw_sync_config {
	char url[CW_SYNC_URL_MAX]; /* https://host[:port] (http only if insecure_http) */
	char branch_code[CW_SYNC_CODE_MAX];
	char enrollment_code[CW_SYNC_CODE_MAX]; /* "" once enrolled */
	char ca_file[512];   /* "" = system CAs */
	char data_dir[512];  /* <data_dir>/cloud.json holds the credentials */
	char mac_address[18];
	char serial_number[64];
	char device_name[64];
	char firmware_version[32];
	int heartbeat_s;       /* default 30 */
	int batch_max_entries; /* default 500 */
	size_t batch_max_bytes; /* default 512 KiB */
	bool insecure_http;    /* tests only: allow http:// */
	/* Retry delay after the n-th failure in a row (n >= 1): uniform in
	 * [0, min(cap, base * 2^(n-1))] (full jitter, docs/SYNC.md). 0 = 1000 and
	 * 60000 ms; tests set them smaller. */
	int backoff_base_ms;
	int backoff_cap_ms;
};

/* What `cartwisectl status` and health show. */
enum cw_sync_state {
	CW_SYNC_UNENROLLED, /* no credentials yet, enrolling (with backoff) */
	CW_SYNC_OK,         /* last exchange succeeded */
	CW_SYNC_BACKOFF,    /* waiting to retry after a failure */
	CW_SYNC_REVOKED,    /* the cloud refused the token: operator action needed */
	CW_SYNC_GAP,        /* the cloud's high-water mark is behind what it acknowledged */
	CW_SYNC_CLOUD_AHEAD, /* the cloud skipped entries never sent from this database
			      * (edge.db replaced): re-enroll as a new device */
	CW_SYNC_ENTRY_REFUSED /* the cloud refuses an entry (400): it stays first in the
			       * queue, retried with backoff; an operator must act */
};

/* The MQTT link (docs/SYNC.md "MQTT"). */
enum cw_sync_mqtt_state {
	CW_SYNC_MQTT_OFF,  /* not configured: no broker in cloud.json (or no credentials) */
	CW_SYNC_MQTT_DOWN, /* configured, not connected (connecting, broker down, refused) */
	CW_SYNC_MQTT_UP    /* connected */
};

struct cw_sync_status {
	enum cw_sync_state state;
	enum cw_sync_mqtt_state mqtt;
	int64_t mqtt_commands; /* command objects received over MQTT (before verification) */
	char device_id[CW_SYNC_ID_MAX];
	int64_t high_water;      /* last seq the cloud acknowledged */
	int64_t last_ok_wall_ms; /* 0 = never */
	int64_t batches_sent, entries_sent;
	/* gap or cloud_ahead seen: batches stopped until restart (heartbeats go
	 * on), even while state shows a later transient failure; or an entry
	 * refused: the queue waits at refused_seq until the cloud takes it */
	bool sync_stopped;
	int64_t refused_seq;   /* entry_refused: the entry the cloud refuses (0 = none) */
	char refused_code[32]; /* and the cloud's error code ("invalid") */
	char last_error[160];    /* never holds a secret */
};

struct cw_syncer;

int cw_syncer_new(const struct cw_sync_config *cfg, const struct cw_sync_source *src,
		  struct cw_syncer **out);
/* Starts the syncer's thread. */
int cw_syncer_start(struct cw_syncer *s);
/* The outbox has new entries: wake the sender now rather than at the next
 * heartbeat. Cheap, callable from any thread. */
void cw_syncer_notify(struct cw_syncer *s);
void cw_syncer_status(struct cw_syncer *s, struct cw_sync_status *out);
/* An operator's re-enrollment (`cartwisectl enroll`): the syncer's thread
 * moves <data_dir>/cloud.json aside (cloud.json.replaced-<wall ms>, kept),
 * forgets the credentials and the stopped states, and registers again with
 * code (NULL or "": the configured enrollment_code). CW_ERR_CONFIG: no code
 * given and none configured; CW_ERR_TOOBIG: code too long. Returns at once;
 * the status shows the progress. The code is never logged. */
int cw_syncer_reenroll(struct cw_syncer *s, const char *code);
const char *cw_sync_state_name(enum cw_sync_state st);
/* "not_configured", "disconnected", "connected" */
const char *cw_sync_mqtt_state_name(enum cw_sync_mqtt_state st);
/* Stops the thread (an exchange in flight is abandoned; nothing is lost:
 * unacknowledged entries are sent again) and frees. NULL is fine. */
void cw_syncer_free(struct cw_syncer *s);

#endif
