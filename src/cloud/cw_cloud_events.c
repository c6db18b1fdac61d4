/* cw_cloud_events.c - the live event hub (cw_cloud_events.h).
 *
 * Suspend/resume (libmicrohttpd 0.9.75, microhttpd.h on MHD_suspend_connection
 * and MHD_resume_connection): a connection may only be suspended from its
 * own callbacks, may be resumed from any thread, and resuming one that is not
 * suspended is undefined. A stream's state, under the hub's lock:
 *
 *   RUNNING    the reader may be called at any time;
 *   SUSPENDING the reader decided to sleep and is calling MHD_suspend_connection
 *              (without the lock): a waker only marks it WAKE;
 *   WAKE       the reader finds it after suspending and resumes at once;
 *   SUSPENDED  asleep: the waker that moves it to RUNNING owns the one
 *              MHD_resume_connection call, made after the lock is released.
 *
 * A suspended connection is never closed by libmicrohttpd (it does not even
 * see the client leave), so a stream taken out of SUSPENDED stays alive until
 * its waker has resumed it. Wakers chain the streams they took through
 * wake_next (they own that field until the resume) and resume them once the
 * lock is released: MHD takes its own locks inside, and no MHD function is
 * ever called with the hub's lock held. */
#include "cw_cloud_events.h"

#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_uuid.h"

/* The reader's outgoing event, drained across calls when MHD's buffer is
 * smaller (it never is in practice: several kB). */
#define OUT_MAX 160
/* A connection of a stream times out after this long without any progress
 * while it is not suspended (MHD stops the clock of a suspended connection
 * and restarts it at resume): only a client that stops reading is closed.
 * Three keepalives, independent of the daemon's connection timeout. */
#define STREAM_TIMEOUT_S 45
#define TICK_MS 1000

enum st_state { ST_RUNNING, ST_SUSPENDING, ST_WAKE, ST_SUSPENDED };

struct cw_event_stream {
	struct cw_events *h;
	struct cw_event_stream *prev, *next; /* the hub's list */
	struct cw_event_stream *wake_next;   /* owned by the waker that took it */
	struct MHD_Connection *c;            /* NULL: not bound (tests) */
	int fd;                              /* c's socket, -1 = unknown */
	char branch_id[CW_UUID_STRLEN];
	enum st_state state;
	unsigned pending;
	bool hello_sent, ended;
	int64_t last_write_ms; /* monotonic */
	cw_events_check_fn check;
	void *check_ctx;
	void (*check_free)(void *);
	char out[OUT_MAX];
	size_t out_len, out_off;
};

struct cw_events {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* the thread's tick and stop; a stream freed (shutdown) */
	pthread_t th;
	bool th_started, stop, closing;
	int max_streams, keepalive_ms, n;
	struct cw_event_stream *head;
	cw_events_forward_fn forward;
	void *forward_ctx;
};

static const char *const kind_names[] = {"carts", "rentals", "devices", "commands", "telemetry"};
#define NKINDS (sizeof(kind_names) / sizeof(kind_names[0]))

size_t cw_events_kinds_text(unsigned kinds, char *buf, size_t cap)
{
	size_t len = 0;

	if (cap)
		buf[0] = '\0';
	for (size_t i = 0; i < NKINDS; i++) {
		int w;
		if (!(kinds & (1u << i)))
			continue;
		w = snprintf(buf + len, cap > len ? cap - len : 0, "%s%s", len ? "," : "",
			     kind_names[i]);
		if (w < 0 || len + (size_t)w >= cap)
			break;
		len += (size_t)w;
	}
	return len;
}

unsigned cw_events_kinds_parse(const char *text)
{
	unsigned kinds = 0;

	while (text && *text) {
		size_t n = strcspn(text, ",");
		for (size_t i = 0; i < NKINDS; i++)
			if (strlen(kind_names[i]) == n && strncmp(text, kind_names[i], n) == 0)
				kinds |= 1u << i;
		text += n;
		if (*text == ',')
			text++;
	}
	return kinds;
}

static void abs_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Under the lock: takes st out of its sleep. Returns st when the caller must
 * resume its connection (after unlocking), else NULL. */
static struct cw_event_stream *wake_locked(struct cw_event_stream *st)
{
	if (st->state == ST_SUSPENDED) {
		st->state = ST_RUNNING;
		return st;
	}
	if (st->state == ST_SUSPENDING)
		st->state = ST_WAKE;
	return NULL;
}

/* Without the lock: resumes a chain of streams taken by wake_locked. */
static void resume_chain(struct cw_event_stream *w)
{
	while (w) {
		struct cw_event_stream *next = w->wake_next;
		struct MHD_Connection *c = w->c;
		w->wake_next = NULL;
		/* w may be freed as soon as its connection runs again */
		MHD_resume_connection(c);
		w = next;
	}
}

void cw_events_deliver(struct cw_events *h, const char *branch_id, unsigned kinds)
{
	struct cw_event_stream *wake = NULL;

	if (!h || !(kinds & CW_EVENT_ALL))
		return;
	pthread_mutex_lock(&h->mu);
	for (struct cw_event_stream *st = h->head; st; st = st->next) {
		struct cw_event_stream *w;
		if (branch_id && strcmp(st->branch_id, branch_id) != 0)
			continue;
		st->pending |= kinds & CW_EVENT_ALL;
		if ((w = wake_locked(st))) {
			w->wake_next = wake;
			wake = w;
		}
	}
	pthread_mutex_unlock(&h->mu);
	resume_chain(wake);
}

void cw_events_publish(struct cw_events *h, const char *branch_id, unsigned kinds)
{
	char payload[CW_EVENTS_PAYLOAD_MAX], names[64];

	if (!h || !branch_id || !(kinds & CW_EVENT_ALL))
		return;
	cw_events_deliver(h, branch_id, kinds);
	if (!h->forward)
		return;
	cw_events_kinds_text(kinds, names, sizeof(names));
	snprintf(payload, sizeof(payload), "%.36s:%s", branch_id, names);
	h->forward(h->forward_ctx, payload);
}

void cw_events_remote(void *ctx, const char *payload)
{
	struct cw_events *h = ctx;
	char branch[CW_UUID_STRLEN];
	const char *colon;
	unsigned kinds;

	if (!payload) {
		cw_events_deliver(h, NULL, CW_EVENT_ALL);
		return;
	}
	colon = strchr(payload, ':');
	if (!colon || colon - payload != CW_UUID_STRLEN - 1)
		return; /* not ours: ignored */
	memcpy(branch, payload, CW_UUID_STRLEN - 1);
	branch[CW_UUID_STRLEN - 1] = '\0';
	kinds = cw_events_kinds_parse(colon + 1);
	cw_events_deliver(h, branch, kinds);
}

/* Under the lock, for a SUSPENDED stream: whether its client has gone.
 * libmicrohttpd does not watch a suspended connection's socket, so without
 * this a closed client would hold its place (listen.max_event_streams)
 * until a write failed, a keepalive or two later. The socket stays open
 * while the connection is suspended, so the fd is valid here; a zero-time
 * poll only reads its state. */
static bool client_gone_locked(const struct cw_event_stream *st)
{
	struct pollfd pf = {.fd = st->fd, .events = POLLRDHUP};

	return st->fd >= 0 && poll(&pf, 1, 0) > 0 &&
	       (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* The keepalive thread: once a second, wakes the sleeping streams whose
 * keepalive is due (the reader then runs the check and writes it) or whose
 * client has gone (the reader ends them). */
static void *tick_main(void *arg)
{
	struct cw_events *h = arg;
	struct timespec ts;

	pthread_mutex_lock(&h->mu);
	while (!h->stop) {
		struct cw_event_stream *wake = NULL;
		int64_t now = cw_mono_ms();
		for (struct cw_event_stream *st = h->head; st; st = st->next) {
			struct cw_event_stream *w;
			if (st->state == ST_SUSPENDED && client_gone_locked(st))
				st->ended = true;
			else if (now - st->last_write_ms < h->keepalive_ms)
				continue;
			if ((w = wake_locked(st))) {
				w->wake_next = wake;
				wake = w;
			}
		}
		if (wake) {
			pthread_mutex_unlock(&h->mu);
			resume_chain(wake);
			pthread_mutex_lock(&h->mu);
		}
		abs_after(&ts, h->keepalive_ms < TICK_MS ? h->keepalive_ms / 2 + 1 : TICK_MS);
		pthread_cond_timedwait(&h->cv, &h->mu, &ts);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

int cw_events_new(const struct cw_events_params *p, struct cw_events **out)
{
	struct cw_events *h;
	pthread_condattr_t ca;

	*out = NULL;
	if (p->max_streams < 0 || p->max_streams > CW_EVENTS_MAX_STREAMS || p->keepalive_ms < 0)
		return CW_ERR_CONFIG;
	h = calloc(1, sizeof(*h));
	if (!h)
		return CW_ERR_NOMEM;
	pthread_mutex_init(&h->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cv, &ca);
	pthread_condattr_destroy(&ca);
	h->max_streams = p->max_streams;
	h->keepalive_ms = p->keepalive_ms ? p->keepalive_ms : CW_EVENTS_KEEPALIVE_MS;
	h->forward = p->forward;
	h->forward_ctx = p->forward_ctx;
	if (pthread_create(&h->th, NULL, tick_main, h) != 0) {
		cw_events_free(h);
		return CW_ERR_NOMEM;
	}
	h->th_started = true;
	*out = h;
	return CW_OK;
}

void cw_events_free(struct cw_events *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->stop = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	if (h->th_started)
		pthread_join(h->th, NULL);
	if (h->n)
		cw_error("events.free", "streams=%d msg=\"streams still open (a bug)\"", h->n);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
	free(h);
}

int cw_events_open(struct cw_events *h, const char *branch_id, cw_events_check_fn check,
		   void *check_ctx, void (*check_free)(void *), struct cw_event_stream **out)
{
	struct cw_event_stream *st;
	int rc = CW_OK;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st) {
		if (check_free)
			check_free(check_ctx);
		return CW_ERR_NOMEM;
	}
	st->h = h;
	st->fd = -1;
	snprintf(st->branch_id, sizeof(st->branch_id), "%s", branch_id);
	st->check = check;
	st->check_ctx = check_ctx;
	st->check_free = check_free;
	st->last_write_ms = cw_mono_ms();
	pthread_mutex_lock(&h->mu);
	if (h->closing)
		rc = CW_ERR_STATE;
	else if (h->n >= h->max_streams)
		rc = CW_ERR_LIMIT;
	if (rc == CW_OK) {
		st->next = h->head;
		if (h->head)
			h->head->prev = st;
		h->head = st;
		h->n++;
	}
	pthread_mutex_unlock(&h->mu);
	if (rc != CW_OK) {
		st->h = NULL; /* not linked */
		cw_events_close(st);
		return rc;
	}
	*out = st;
	return CW_OK;
}

void cw_events_close(struct cw_event_stream *st)
{
	struct cw_events *h;

	if (!st)
		return;
	h = st->h;
	if (h) {
		pthread_mutex_lock(&h->mu);
		if (st->prev)
			st->prev->next = st->next;
		else
			h->head = st->next;
		if (st->next)
			st->next->prev = st->prev;
		h->n--;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->mu);
	}
	if (st->check_free)
		st->check_free(st->check_ctx);
	free(st);
}

/* Under the lock: formats the next event into st->out; false when nothing
 * is due. *need_check: a keepalive is due and the check must run first. */
static bool next_event_locked(struct cw_event_stream *st, int64_t now, bool checked,
			      bool *need_check)
{
	int w = 0;

	*need_check = false;
	if (!st->hello_sent) {
		w = snprintf(st->out, sizeof(st->out), "event: hello\ndata: {\"branch_id\":\"%s\"}\n\n",
			     st->branch_id);
		st->hello_sent = true;
	} else if (st->pending) {
		size_t len = 0;
		w = snprintf(st->out, sizeof(st->out), "event: change\ndata: {\"kinds\":[");
		for (size_t i = 0; i < NKINDS && w > 0 && (size_t)w < sizeof(st->out); i++) {
			if (!(st->pending & (1u << i)))
				continue;
			w += snprintf(st->out + w, sizeof(st->out) - (size_t)w, "%s\"%s\"",
				      len++ ? "," : "", kind_names[i]);
		}
		if (w > 0 && (size_t)w < sizeof(st->out))
			w += snprintf(st->out + w, sizeof(st->out) - (size_t)w, "]}\n\n");
		st->pending = 0;
	} else if (now - st->last_write_ms >= st->h->keepalive_ms) {
		if (st->check && !checked) {
			*need_check = true;
			return false;
		}
		w = snprintf(st->out, sizeof(st->out), ": keepalive\n\n");
	} else {
		return false;
	}
	if (w <= 0 || (size_t)w >= sizeof(st->out))
		return false; /* cannot happen: every event fits OUT_MAX */
	st->out_len = (size_t)w;
	st->out_off = 0;
	st->last_write_ms = now;
	return true;
}

/* The reader's work. may_suspend: when nothing is due, the stream goes to
 * SUSPENDING (the caller suspends the connection). */
static ssize_t read_stream(struct cw_event_stream *st, char *buf, size_t max, bool may_suspend)
{
	struct cw_events *h = st->h;
	bool need_check, checked = false;
	size_t n;

	pthread_mutex_lock(&h->mu);
	for (;;) {
		if (st->out_off < st->out_len)
			break;
		if (st->ended || h->closing) {
			st->ended = true;
			pthread_mutex_unlock(&h->mu);
			return -1;
		}
		if (next_event_locked(st, cw_mono_ms(), checked, &need_check))
			break;
		if (!need_check) {
			if (may_suspend)
				st->state = ST_SUSPENDING;
			pthread_mutex_unlock(&h->mu);
			return 0;
		}
		/* the check may ask the store: never under the hub's lock */
		pthread_mutex_unlock(&h->mu);
		if (!st->check(st->check_ctx)) {
			pthread_mutex_lock(&h->mu);
			st->ended = true;
			pthread_mutex_unlock(&h->mu);
			cw_debug("events.ended", "branch=%s reason=check", st->branch_id);
			return -1;
		}
		checked = true;
		pthread_mutex_lock(&h->mu);
	}
	n = st->out_len - st->out_off;
	if (n > max)
		n = max;
	memcpy(buf, st->out + st->out_off, n);
	st->out_off += n;
	pthread_mutex_unlock(&h->mu);
	return (ssize_t)n;
}

ssize_t cw_events_read(struct cw_event_stream *st, char *buf, size_t max)
{
	return read_stream(st, buf, max, false);
}

/* MHD_ContentReaderCallback on an HTTP pool thread. */
static ssize_t mhd_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct cw_event_stream *st = cls;
	struct cw_events *h = st->h;
	ssize_t n;
	bool resume = false;

	(void)pos;
	if (max == 0)
		return 0;
	n = read_stream(st, buf, max, true);
	if (n < 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (n > 0)
		return n;
	/* nothing to send: sleep until a waker resumes us (state SUSPENDING) */
	MHD_suspend_connection(st->c);
	pthread_mutex_lock(&h->mu);
	if (st->state == ST_WAKE) { /* woken while suspending: run again at once */
		st->state = ST_RUNNING;
		resume = true;
	} else {
		st->state = ST_SUSPENDED;
	}
	pthread_mutex_unlock(&h->mu);
	if (resume)
		MHD_resume_connection(st->c);
	return 0; /* with the connection suspended: no busy loop */
}

static void mhd_free(void *cls)
{
	cw_events_close(cls);
}

struct MHD_Response *cw_events_response(struct cw_event_stream *st, void *connection)
{
	struct MHD_Response *resp;
	const union MHD_ConnectionInfo *ci;

	st->c = connection;
	ci = MHD_get_connection_info(st->c, MHD_CONNECTION_INFO_CONNECTION_FD);
	st->fd = ci ? ci->connect_fd : -1;
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, OUT_MAX, mhd_reader, st,
						 mhd_free);
	if (!resp) {
		cw_events_close(st);
		return NULL;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	/* nginx: pass every event on at once instead of buffering the body */
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	MHD_set_connection_option(st->c, MHD_CONNECTION_OPTION_TIMEOUT,
				  (unsigned int)STREAM_TIMEOUT_S);
	return resp;
}

void cw_events_shutdown(struct cw_events *h, int wait_ms)
{
	struct cw_event_stream *wake = NULL;
	struct timespec ts;
	int64_t t0 = cw_mono_ms();
	int n0, left;

	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	h->closing = true;
	n0 = h->n;
	for (struct cw_event_stream *st = h->head; st; st = st->next) {
		struct cw_event_stream *w;
		st->ended = true;
		if ((w = wake_locked(st))) {
			w->wake_next = wake;
			wake = w;
		}
	}
	pthread_mutex_unlock(&h->mu);
	resume_chain(wake);
	/* each reader now ends its stream; MHD frees the response after the
	 * last chunk and the stream leaves the list */
	abs_after(&ts, wait_ms);
	pthread_mutex_lock(&h->mu);
	while (h->n > 0 && pthread_cond_timedwait(&h->cv, &h->mu, &ts) != ETIMEDOUT)
		;
	left = h->n;
	pthread_mutex_unlock(&h->mu);
	if (left)
		cw_warn("events.shutdown", "streams=%d left=%d ms=%lld msg=\"streams still "
			"writing (clients that do not read, or a starved machine); the HTTP server "
			"closes them\"", n0, left, (long long)(cw_mono_ms() - t0));
	else if (n0)
		cw_info("events.shutdown", "streams=%d ms=%lld", n0, (long long)(cw_mono_ms() - t0));
}

int cw_events_count(struct cw_events *h)
{
	int n;

	pthread_mutex_lock(&h->mu);
	n = h->n;
	pthread_mutex_unlock(&h->mu);
	return n;
}
