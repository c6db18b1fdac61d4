/* cw_cloud_events.h - the live event hub behind GET /api/branches/{id}/events
 * (server-sent events, docs/CLOUD.md "Live updates").
 *
 * Publishers (a committed sync batch, a heartbeat, MQTT status and telemetry,
 * a new command) name a branch and what changed in it as a bitmask of kinds;
 * each open stream of that branch ORs the kinds into its pending set, so that
 * changes arriving while a stream is busy or asleep are coalesced into one
 * "change" event. A change carries no data: the client refetches the kinds it
 * names.
 *
 * A stream is a libmicrohttpd response from a content reader callback. When
 * the reader has nothing to send it suspends the connection
 * (MHD_ALLOW_SUSPEND_RESUME): no pool thread ever blocks or spins on a
 * stream. The hub resumes it on a publish, for the keepalive (every 15 s,
 * when the stream's check also runs: an expired token or a deactivated user
 * ends it), and at shutdown. MHD functions are never called with the hub's
 * lock held; a small state machine per stream makes "resume" safe against a
 * reader that is suspending at the same moment (resuming a connection that
 * is not suspended is undefined in libmicrohttpd).
 *
 * Several instances: every local publish is also handed to a forward
 * function (PostgreSQL NOTIFY through the store), and what the other
 * instances publish comes back through cw_events_remote(). */
#ifndef CW_CLOUD_EVENTS_H
#define CW_CLOUD_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What changed (the names of the "kinds" array of a change event). */
enum cw_event_kind {
	CW_EVENT_CARTS = 1u << 0,
	CW_EVENT_RENTALS = 1u << 1,
	CW_EVENT_DEVICES = 1u << 2,
	CW_EVENT_COMMANDS = 1u << 3,
	CW_EVENT_TELEMETRY = 1u << 4,
};
#define CW_EVENT_ALL 0x1fu

#define CW_EVENTS_KEEPALIVE_MS 15000
#define CW_EVENTS_MAX_STREAMS 4096 /* upper bound of listen.max_event_streams */
/* "<branch uuid>:carts,rentals,devices,commands,telemetry" fits */
#define CW_EVENTS_PAYLOAD_MAX 128

/* Hands a local publish to the other instances ("<branch>:<kinds>"). */
typedef void (*cw_events_forward_fn)(void *ctx, const char *payload);
/* A stream's check at each keepalive: false ends the stream. Runs on an
 * HTTP pool thread without the hub's lock (it may ask the store). */
typedef bool (*cw_events_check_fn)(void *ctx);

struct cw_events_params {
	int max_streams;  /* open streams at most, 0..CW_EVENTS_MAX_STREAMS */
	int keepalive_ms; /* 0 = CW_EVENTS_KEEPALIVE_MS (tests use less) */
	cw_events_forward_fn forward; /* NULL = one instance */
	void *forward_ctx;
};

struct cw_events;
struct cw_event_stream;

/* Starts the hub and its keepalive thread. CW_ERR_CONFIG, CW_ERR_NOMEM. */
int cw_events_new(const struct cw_events_params *p, struct cw_events **out);
/* Stops the thread and frees. Every stream must be gone (cw_events_shutdown
 * before the HTTP daemon stops). NULL ok. */
void cw_events_free(struct cw_events *h);

/* A change in branch_id: the local streams, and the forward function. h may
 * be NULL (no hub: nothing happens); kinds 0 does nothing. */
void cw_events_publish(struct cw_events *h, const char *branch_id, unsigned kinds);
/* Only the local streams; branch_id NULL = every stream. */
void cw_events_deliver(struct cw_events *h, const char *branch_id, unsigned kinds);
/* A payload forwarded by another instance, or NULL: the link to the others
 * was lost and is back, so every stream gets every kind (nothing missed).
 * The signature of the store's listen callback; ctx is the hub. */
void cw_events_remote(void *ctx, const char *payload);

/* "carts,rentals" in bit order; returns the length (0 for no kind). */
size_t cw_events_kinds_text(unsigned kinds, char *buf, size_t cap);
/* The inverse; unknown names are ignored (a newer instance's kind). */
unsigned cw_events_kinds_parse(const char *text);

/* Opens a stream of branch_id. check (may be NULL) runs at each keepalive
 * with check_ctx; check_ctx is freed with check_free (may be NULL) when the
 * stream is freed, and also when this call fails. CW_ERR_LIMIT: max_streams
 * are open; CW_ERR_STATE: the hub is shutting down. */
int cw_events_open(struct cw_events *h, const char *branch_id, cw_events_check_fn check,
		   void *check_ctx, void (*check_free)(void *), struct cw_event_stream **out);
/* Frees a stream that was never given to cw_events_response. NULL ok. */
void cw_events_close(struct cw_event_stream *st);
/* The next bytes of a stream not bound to a connection (tests, and the
 * reader callback): > 0 bytes written to buf, 0 = nothing to send now, -1 =
 * the stream has ended (check failed, hub shutting down). */
ssize_t cw_events_read(struct cw_event_stream *st, char *buf, size_t max);

/* The stream as a libmicrohttpd response for connection c (a struct
 * MHD_Connection, void here so that this header needs no microhttpd.h): the
 * response owns the stream from here on, also when NULL is returned (no
 * memory). The caller queues it and destroys its reference. */
struct MHD_Response *cw_events_response(struct cw_event_stream *st, void *connection);

/* Ends every stream (resuming the suspended ones) and refuses new ones;
 * waits up to wait_ms for the streams' responses to be freed. Call before
 * MHD_stop_daemon, which must not meet a suspended connection. */
void cw_events_shutdown(struct cw_events *h, int wait_ms);
/* Open streams right now. */
int cw_events_count(struct cw_events *h);

#endif
