/* cw_mqtt.c - see cw_mqtt.h.
 *
 * paho's own automatic reconnect does not retry a first connection that
 * failed, so one small thread of ours does every (re)connect with capped
 * exponential backoff; paho's callbacks only record what happened. Each
 * call that waits for the broker's answer gets a heap "waiter" shared with
 * the callback (two references), so a callback that arrives after the
 * caller gave up writes to live memory. */
#include "cw_mqtt.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cw_clock.h"
#include "cw_error.h"
#include "cw_log.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int rc;
	int refs;
};

struct sub {
	char filter[CW_MQTT_TOPIC_MAX];
	int qos;
};

struct cw_mqtt {
	struct cw_mqtt_config cfg;
	MQTTAsync client;
	MQTTProperties conn_props;
	cw_mqtt_msg_fn on_msg;
	cw_mqtt_state_fn on_state;
	void *ctx;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool started, stop, connected, connecting, auth_refused;
	bool closing; /* cw_mqtt_free began: callbacks do nothing */
	int in_cb;    /* callbacks running now (cw_mqtt_free waits for 0) */
	bool warned;  /* a connect failure of the current series was logged */
	int64_t next_try_ms, up_since_ms;
	int backoff_ms;
	int nsubs;
	struct sub subs[CW_MQTT_SUBS_MAX];
};

static void deadline(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static int cond_init_mono(pthread_cond_t *cv)
{
	pthread_condattr_t at;
	int rc;

	if (pthread_condattr_init(&at))
		return CW_ERR_NOMEM;
	pthread_condattr_setclock(&at, CLOCK_MONOTONIC);
	rc = pthread_cond_init(cv, &at) ? CW_ERR_NOMEM : CW_OK;
	pthread_condattr_destroy(&at);
	return rc;
}

/* ---- waiters ---- */

static struct waiter *waiter_new(void)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	pthread_mutex_init(&w->mu, NULL);
	if (cond_init_mono(&w->cv) != CW_OK) {
		pthread_mutex_destroy(&w->mu);
		free(w);
		return NULL;
	}
	w->refs = 2; /* the caller and the callback */
	return w;
}

static void waiter_unref(struct waiter *w)
{
	bool last;

	pthread_mutex_lock(&w->mu);
	last = --w->refs == 0;
	pthread_mutex_unlock(&w->mu);
	if (last) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w);
	}
}

static void waiter_finish(struct waiter *w, int rc)
{
	pthread_mutex_lock(&w->mu);
	w->done = true;
	w->rc = rc;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	waiter_unref(w);
}

/* Waits for the callback, keeps the caller's reference. */
static int waiter_await(struct waiter *w, int timeout_ms)
{
	struct timespec ts;
	int rc;

	deadline(&ts, timeout_ms);
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
			break;
	rc = w->done ? w->rc : CW_ERR_TIMEOUT;
	pthread_mutex_unlock(&w->mu);
	return rc;
}

/* Waits for the callback, drops the caller's reference. */
static int waiter_wait(struct waiter *w, int timeout_ms)
{
	int rc = waiter_await(w, timeout_ms);

	waiter_unref(w);
	return rc;
}

/* MQTT 5 reason codes of 0x80 and above are refusals; 0x86 bad user name
 * or password, 0x87 not authorized, 0x8C bad authentication method. */
static int reason_rc(int reason)
{
	if (reason < 0x80)
		return CW_OK;
	if (reason == 0x86 || reason == 0x87 || reason == 0x8C)
		return CW_ERR_AUTH;
	return CW_ERR_PROTO;
}

static void on_call_ok(void *context, MQTTAsync_successData5 *resp)
{
	/* one filter a subscription: its answer is reasonCode (alt.sub is for
	 * subscribeMany, and alt is a union that differs by call) */
	waiter_finish(context, reason_rc(resp ? (int)resp->reasonCode : 0));
}

static void on_call_fail(void *context, MQTTAsync_failureData5 *resp)
{
	int rc = resp ? reason_rc((int)resp->reasonCode) : CW_ERR_IO;

	waiter_finish(context, rc == CW_OK ? CW_ERR_IO : rc);
}

/* ---- connection ---- */

/* A paho callback may still be running, or start, while cw_mqtt_free runs:
 * each one enters through here and does nothing once closing is set. */
static bool cb_enter(struct cw_mqtt *m)
{
	bool ok;

	pthread_mutex_lock(&m->mu);
	ok = !m->closing;
	if (ok)
		m->in_cb++;
	pthread_mutex_unlock(&m->mu);
	return ok;
}

static void cb_leave(struct cw_mqtt *m)
{
	pthread_mutex_lock(&m->mu);
	m->in_cb--;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

static int next_backoff(int ms)
{
	return ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
}

static void set_state(struct cw_mqtt *m, bool connected)
{
	if (m->on_state)
		m->on_state(m->ctx, connected);
}

static void subscribe_all(struct cw_mqtt *m)
{
	struct sub subs[CW_MQTT_SUBS_MAX];
	int n;

	pthread_mutex_lock(&m->mu);
	n = m->nsubs;
	memcpy(subs, m->subs, sizeof(subs));
	pthread_mutex_unlock(&m->mu);
	for (int i = 0; i < n; i++) {
		MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
		int rc = MQTTAsync_subscribe(m->client, subs[i].filter, subs[i].qos, &ro);
		if (rc != MQTTASYNC_SUCCESS)
			cw_warn("mqtt.subscribe_failed", "filter=%s code=%d", subs[i].filter, rc);
	}
}

static void on_connect_ok(void *context, MQTTAsync_successData5 *resp)
{
	struct cw_mqtt *m = context;
	bool closing;

	(void)resp;
	pthread_mutex_lock(&m->mu);
	m->connecting = false;
	closing = m->closing;
	if (!closing) {
		m->connected = true;
		m->auth_refused = false;
		m->warned = false;
		/* the backoff is reset only by a link that stays up (on_lost):
		 * a broker that accepts and drops at once is not retried every
		 * second */
		m->up_since_ms = cw_mono_ms();
		m->in_cb++;
	}
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (closing)
		return;
	cw_info("mqtt.connected", "host=%s port=%d client=%s", m->cfg.host, m->cfg.port,
		m->cfg.client_id);
	subscribe_all(m);
	set_state(m, true);
	cb_leave(m);
}

static void on_connect_fail(void *context, MQTTAsync_failureData5 *resp)
{
	struct cw_mqtt *m = context;
	/* a refused CONNACK comes as code (its reason code), reasonCode 0 */
	int reason = !resp ? 0 : resp->reasonCode ? (int)resp->reasonCode : resp->code > 0 ? resp->code : 0;
	bool auth = reason_rc(reason) == CW_ERR_AUTH;
	bool first, live;

	pthread_mutex_lock(&m->mu);
	first = !m->warned;
	m->warned = true;
	m->connecting = false;
	m->auth_refused = auth;
	m->next_try_ms = cw_mono_ms() + m->backoff_ms;
	m->backoff_ms = next_backoff(m->backoff_ms);
	live = !m->closing;
	if (live)
		m->in_cb++;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (!live)
		return;
	/* logged on the first failure of a series, not on every retry */
	if (first || auth)
		cw_warn("mqtt.connect_failed", "host=%s port=%d reason=%s", m->cfg.host, m->cfg.port,
			auth ? "not_authorized" : "unreachable");
	cb_leave(m);
}

static void on_lost(void *context, char *cause)
{
	struct cw_mqtt *m = context;
	int64_t now = cw_mono_ms();

	(void)cause;
	if (!cb_enter(m))
		return;
	pthread_mutex_lock(&m->mu);
	m->connected = false;
	/* up for a minute: a fresh start; else the series goes on */
	m->backoff_ms = now - m->up_since_ms >= 60000 ? BACKOFF_MIN_MS : next_backoff(m->backoff_ms);
	m->next_try_ms = now + (m->backoff_ms == BACKOFF_MIN_MS ? 0 : m->backoff_ms);
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	cw_warn("mqtt.connection_lost", "host=%s port=%d", m->cfg.host, m->cfg.port);
	set_state(m, false);
	cb_leave(m);
}

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *msg)
{
	struct cw_mqtt *m = context;
	char t[CW_MQTT_TOPIC_MAX];
	size_t n = topic_len > 0 ? (size_t)topic_len : strlen(topic);

	/* a topic with a NUL inside or longer than ours is dropped */
	if (!cb_enter(m)) {
		MQTTAsync_freeMessage(&msg);
		MQTTAsync_free(topic);
		return 1;
	}
	if (n < sizeof(t) && memchr(topic, '\0', n) == NULL) {
		memcpy(t, topic, n);
		t[n] = '\0';
		if (m->on_msg)
			m->on_msg(m->ctx, t, msg->payload, (size_t)msg->payloadlen);
	} else {
		cw_warn("mqtt.bad_topic", "len=%zu", n);
	}
	MQTTAsync_freeMessage(&msg);
	MQTTAsync_free(topic);
	cb_leave(m);
	return 1;
}

static int connect_now(struct cw_mqtt *m)
{
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;

	co.keepAliveInterval = m->cfg.keepalive_s;
	co.cleanstart = 0;
	co.connectProperties = &m->conn_props;
	co.onSuccess5 = on_connect_ok;
	co.onFailure5 = on_connect_fail;
	co.context = m;
	co.connectTimeout = 10;
	if (m->cfg.username[0]) {
		co.username = m->cfg.username;
		co.password = m->cfg.password;
	}
	if (m->cfg.will_topic[0]) {
		will.topicName = m->cfg.will_topic;
		will.message = m->cfg.will_payload;
		will.qos = 1;
		will.retained = m->cfg.will_retained;
		co.will = &will;
	}
	if (m->cfg.tls) {
		ssl.enableServerCertAuth = 1;
		ssl.verify = 1; /* host name too */
		if (m->cfg.ca_file[0])
			ssl.trustStore = m->cfg.ca_file;
		co.ssl = &ssl;
	}
	return MQTTAsync_connect(m->client, &co) == MQTTASYNC_SUCCESS ? CW_OK : CW_ERR_IO;
}

static void *keeper(void *arg)
{
	struct cw_mqtt *m = arg;
	struct timespec ts;

	pthread_mutex_lock(&m->mu);
	while (!m->stop) {
		int64_t now = cw_mono_ms();
		if (!m->connected && !m->connecting && now >= m->next_try_ms) {
			m->connecting = true;
			pthread_mutex_unlock(&m->mu);
			int rc = connect_now(m);
			pthread_mutex_lock(&m->mu);
			if (rc != CW_OK) {
				m->connecting = false;
				m->next_try_ms = now + m->backoff_ms;
				m->backoff_ms = next_backoff(m->backoff_ms);
				if (!m->warned)
					cw_warn("mqtt.connect_failed", "host=%s port=%d reason=client",
						m->cfg.host, m->cfg.port);
				m->warned = true;
			}
			continue;
		}
		deadline(&ts, 500);
		pthread_cond_timedwait(&m->cv, &m->mu, &ts);
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

/* ---- public ---- */

int cw_mqtt_new(const struct cw_mqtt_config *cfg, cw_mqtt_msg_fn on_msg, cw_mqtt_state_fn on_state,
		void *ctx, struct cw_mqtt **out)
{
	MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer5;
	MQTTProperty p = {.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL};
	struct cw_mqtt *m;
	char uri[sizeof(cfg->host) + 32];
	int rc = CW_ERR_NOMEM;

	*out = NULL;
	if (!cfg->host[0] || !cfg->client_id[0] || cfg->port < 0 || cfg->port > 65535 ||
	    cfg->keepalive_s < 0 || cfg->session_expiry_s < -1)
		return CW_ERR_INVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return CW_ERR_NOMEM;
	m->cfg = *cfg;
	if (!m->cfg.port)
		m->cfg.port = cfg->tls ? 8883 : 1883;
	if (!m->cfg.keepalive_s)
		m->cfg.keepalive_s = 30;
	m->on_msg = on_msg;
	m->on_state = on_state;
	m->ctx = ctx;
	m->backoff_ms = BACKOFF_MIN_MS;
	pthread_mutex_init(&m->mu, NULL);
	if (cond_init_mono(&m->cv) != CW_OK)
		goto fail_mu;
	snprintf(uri, sizeof(uri), "%s://%s:%d", cfg->tls ? "ssl" : "tcp", cfg->host, m->cfg.port);
	if (MQTTAsync_createWithOptions(&m->client, uri, cfg->client_id, MQTTCLIENT_PERSISTENCE_NONE,
				       NULL, &cro) != MQTTASYNC_SUCCESS) {
		rc = CW_ERR_INVAL;
		goto fail_cv;
	}
	/* after the create: paho's allocator bookkeeping starts there (properties
	 * added before the first client leak) */
	p.value.integer4 = cfg->session_expiry_s == 0    ? 604800u /* the default: 7 days */
			   : cfg->session_expiry_s < 0 ? 0u	     /* ends at disconnect */
						       : (unsigned int)cfg->session_expiry_s;
	m->conn_props = (MQTTProperties)MQTTProperties_initializer;
	if (MQTTProperties_add(&m->conn_props, &p) != 0)
		goto fail_client;
	if (MQTTAsync_setCallbacks(m->client, m, on_lost, on_message, NULL) != MQTTASYNC_SUCCESS) {
		rc = CW_ERR_INTERNAL;
		goto fail_client;
	}
	*out = m;
	return CW_OK;
fail_client:
	MQTTAsync_destroy(&m->client);
	MQTTProperties_free(&m->conn_props);
fail_cv:
	pthread_cond_destroy(&m->cv);
fail_mu:
	pthread_mutex_destroy(&m->mu);
	free(m);
	return rc;
}

int cw_mqtt_subscribe(struct cw_mqtt *m, const char *filter, int qos, int timeout_ms)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	struct waiter *w;
	bool connected;

	if (!filter || !*filter || strlen(filter) >= CW_MQTT_TOPIC_MAX || qos < 0 || qos > 1)
		return CW_ERR_INVAL;
	pthread_mutex_lock(&m->mu);
	{
		int i = 0;
		while (i < m->nsubs && strcmp(m->subs[i].filter, filter) != 0)
			i++;
		if (i == m->nsubs) { /* a filter is remembered once */
			if (m->nsubs >= CW_MQTT_SUBS_MAX) {
				pthread_mutex_unlock(&m->mu);
				return CW_ERR_TOOBIG;
			}
			snprintf(m->subs[i].filter, sizeof(m->subs[0].filter), "%s", filter);
			m->nsubs++;
		}
		m->subs[i].qos = qos;
	}
	connected = m->connected;
	pthread_mutex_unlock(&m->mu);
	if (!connected)
		return timeout_ms > 0 ? CW_ERR_OFFLINE : CW_OK;
	if (timeout_ms <= 0)
		return MQTTAsync_subscribe(m->client, filter, qos, &ro) == MQTTASYNC_SUCCESS ? CW_OK
											 : CW_ERR_IO;
	if (!(w = waiter_new()))
		return CW_ERR_NOMEM;
	ro.onSuccess5 = on_call_ok;
	ro.onFailure5 = on_call_fail;
	ro.context = w;
	if (MQTTAsync_subscribe(m->client, filter, qos, &ro) != MQTTASYNC_SUCCESS) {
		waiter_unref(w); /* the callback's reference: it will not run */
		waiter_unref(w);
		return CW_ERR_IO;
	}
	return waiter_wait(w, timeout_ms);
}

int cw_mqtt_start(struct cw_mqtt *m)
{
	if (m->started)
		return CW_ERR_STATE;
	if (pthread_create(&m->thread, NULL, keeper, m))
		return CW_ERR_IO;
	m->started = true;
	return CW_OK;
}

bool cw_mqtt_connected(struct cw_mqtt *m)
{
	bool c;

	pthread_mutex_lock(&m->mu);
	c = m->connected;
	pthread_mutex_unlock(&m->mu);
	return c;
}

int cw_mqtt_wait_connected(struct cw_mqtt *m, int timeout_ms)
{
	struct timespec ts;
	int rc;

	deadline(&ts, timeout_ms);
	pthread_mutex_lock(&m->mu);
	while (!m->connected && !m->auth_refused)
		if (pthread_cond_timedwait(&m->cv, &m->mu, &ts) == ETIMEDOUT)
			break;
	rc = m->connected ? CW_OK : m->auth_refused ? CW_ERR_AUTH : CW_ERR_TIMEOUT;
	pthread_mutex_unlock(&m->mu);
	return rc;
}

int cw_mqtt_publish(struct cw_mqtt *m, const char *topic, const void *payload, size_t len, int qos,
		    bool retained, int timeout_ms)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	struct waiter *w = NULL;
	int rc;

	if (!topic || !*topic || strlen(topic) >= CW_MQTT_TOPIC_MAX || qos < 0 || qos > 1 ||
	    len > INT32_MAX)
		return CW_ERR_INVAL;
	if (!cw_mqtt_connected(m))
		return CW_ERR_OFFLINE;
	if (timeout_ms > 0) {
		if (!(w = waiter_new()))
			return CW_ERR_NOMEM;
		ro.onSuccess5 = on_call_ok;
		ro.onFailure5 = on_call_fail;
		ro.context = w;
	}
	rc = MQTTAsync_send(m->client, topic, (int)len, payload, qos, retained, &ro);
	if (rc != MQTTASYNC_SUCCESS) {
		if (w) {
			waiter_unref(w);
			waiter_unref(w);
		}
		return rc == MQTTASYNC_DISCONNECTED ? CW_ERR_OFFLINE : CW_ERR_IO;
	}
	return w ? waiter_wait(w, timeout_ms) : CW_OK;
}

void cw_mqtt_free(struct cw_mqtt *m)
{
	MQTTAsync_disconnectOptions dc = MQTTAsync_disconnectOptions_initializer5;
	struct waiter *dw = NULL; /* the disconnect's, until paho is gone */

	if (!m)
		return;
	if (m->started) {
		pthread_mutex_lock(&m->mu);
		m->stop = true;
		pthread_cond_broadcast(&m->cv);
		pthread_mutex_unlock(&m->mu);
		pthread_join(m->thread, NULL);
	}
	/* no callback does anything from here on; wait for a connect in flight
	 * to finish (paho's connect timeout is 10 s) and for the callbacks
	 * already running */
	{
		struct timespec ts;
		deadline(&ts, 12000);
		pthread_mutex_lock(&m->mu);
		m->closing = true;
		while (m->connecting && pthread_cond_timedwait(&m->cv, &m->mu, &ts) != ETIMEDOUT)
			;
		/* no deadline here: a running callback uses m and the caller's ctx
		 * (a cloud store call may block for long), freeing them under it
		 * would be a use-after-free */
		while (m->in_cb > 0) {
			deadline(&ts, 5000);
			if (pthread_cond_timedwait(&m->cv, &m->mu, &ts) == ETIMEDOUT && m->in_cb > 0)
				cw_warn("mqtt.close_waiting", "host=%s port=%d callbacks=%d",
					m->cfg.host, m->cfg.port, m->in_cb);
		}
		pthread_mutex_unlock(&m->mu);
	}
	/* a DISCONNECT the broker receives: no Last Will on a clean stop */
	if (MQTTAsync_isConnected(m->client)) {
		struct waiter *w = waiter_new();
		dc.timeout = 1000;
		if (w) {
			dc.onSuccess5 = on_call_ok;
			dc.onFailure5 = on_call_fail;
			dc.context = w;
		}
		if (MQTTAsync_disconnect(m->client, &dc) == MQTTASYNC_SUCCESS) {
			if (w) {
				waiter_await(w, 2000); /* the reference is kept: see below */
				dw = w;
			}
		} else if (w) {
			waiter_unref(w);
			waiter_unref(w);
		}
	}
	MQTTAsync_destroy(&m->client);
	if (dw) {
		/* no paho callback runs after MQTTAsync_destroy: when the
		 * disconnect's never ran (the broker died or stalled), its
		 * reference is dropped here, else the waiter leaked */
		bool ran;
		pthread_mutex_lock(&dw->mu);
		ran = dw->done;
		pthread_mutex_unlock(&dw->mu);
		if (!ran)
			waiter_unref(dw);
		waiter_unref(dw);
	}
	MQTTProperties_free(&m->conn_props);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	free(m);
}
