/* bench_fleet.c - a load generator speaking the device protocol as a fleet
 * of devices against one cartwise-cloud (issue 4: "1,000 devices sustained
 * with heartbeat p99 <= 50 ms").
 *
 *   1. registers --devices devices (POST /api/devices/register with the
 *      enrollment codes given, a MAC of its own each);
 *   2. every device sends its carts (cart.created, seq 1..--carts) in a first
 *      sync batch, then, open loop for --warmup + --seconds seconds, a
 *      heartbeat every --heartbeat-s seconds and a sync batch of --entries
 *      entries every --sync-s seconds, each device at its own phase (spread
 *      evenly over the interval). Entries are the edge's shapes in turn:
 *      rental.created / rental.updated (returned), cart.updated and a
 *      telemetry event, with consecutive sequence numbers; a batch the cloud
 *      refuses is sent again from the cloud's mark (409 expected seq);
 *   3. with --mqtt-status-s S, every device also connects to the broker of
 *      its registration answer's mqtt_config with its own credentials (MQTT
 *      5, the edge's Last Will), publishes its retained status
 *      ({"v":1,"status":"online","at":...,"firmware_version":...}, QoS 1)
 *      on <topic>/status at once after connecting and then every S seconds,
 *      open loop like the heartbeats; latency is from the scheduled time to
 *      the broker's PUBACK. A device whose connection is refused (its broker
 *      user not loaded yet: the broker is reloaded after the registrations)
 *      or lost tries again every second; the run starts when all are
 *      connected, or after 60 s with those that are.
 *
 * Open loop (no coordinated omission): every request has a scheduled time
 * fixed in advance, and its latency is measured from that time, not from
 * when it could be sent. A device sends one request at a time (like the
 * edge's one sync thread), so a slow answer delays its next request, and
 * that delay is in the next request's latency. Requests scheduled in the
 * measuring window are waited for (up to 30 s) after it ends; any still
 * unanswered are counted as such.
 *
 * One thread, libcurl's multi interface on loopback; connections are pooled
 * by the multi handle (keep-alive) unless --fresh-connections, where every
 * request opens a TCP connection of its own (devices whose idle connection
 * the server closed). MQTT goes through paho's async client directly, one
 * client a device: paho serves all of them from its own two threads, and
 * its completion callbacks give each PUBACK's time (libcwmqtt's publish
 * either waits, blocking this one thread, or reports nothing, and it starts
 * a reconnect thread a client). Prints key=value lines; never passes or
 * fails on time.
 *
 * Usage: bench_fleet --url http://127.0.0.1:PORT --branch-code CODE
 *            --enrollment-codes CODE[,CODE...] [--devices 1000]
 *            [--heartbeat-s 10] [--sync-s 30] [--entries 4] [--carts 2]
 *            [--seconds 60] [--warmup 10] [--fresh-connections]
 *            [--mqtt-status-s S] */
#include <MQTTAsync.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "cw_clock.h"
#include "cw_error.h"

#define MAX_DEVICES 20000
#define MAX_CODES 32
#define CODE_USES 1000 /* the cloud's limit of uses of one code */
#define BODY_MAX 16384 /* request body of one device */
#define RESP_MAX 8192  /* answer kept (longer ones are cut, still counted ok) */
#define ID_LEN 36
#define TOKEN_MAX 1024
#define REGISTER_PARALLEL 8
#define DRAIN_TIMEOUT_US 30000000LL
#define FIRMWARE "1.4.2"
#define MQ_HOST_MAX 256
#define MQ_TOPIC_MAX 256
#define MQ_USER_MAX 64
#define MQ_PASS_MAX 128
#define MQ_CONNECT_WAIT_US 60000000LL
#define MQ_RETRY_US 1000000LL

enum req_kind { R_NONE, R_REGISTER, R_HEARTBEAT, R_SYNC };

/* a device's MQTT client: the main thread moves DOWN -> CONNECTING and
 * UP -> BUSY (a publish in flight); paho's callbacks the rest */
enum mq_state { MQ_DOWN, MQ_CONNECTING, MQ_UP, MQ_BUSY };

struct fleet;

struct device {
	struct fleet *f;
	int index;
	char id[ID_LEN + 1];
	char token[TOKEN_MAX];
	struct curl_slist *headers;
	CURL *easy;
	enum req_kind busy;
	int64_t sched_us;         /* scheduled time of the request in flight */
	bool measured;            /* scheduled in the measuring window */
	int64_t next_hb_us, next_sync_us;
	int64_t acked;            /* the cloud's high-water mark */
	int64_t sent_last;        /* last seq of the batch in flight */
	char url[256];
	char body[BODY_MAX];
	char resp[RESP_MAX];
	size_t resp_len;
	/* MQTT (--mqtt-status-s): its mqtt_config and client */
	char mq_host[MQ_HOST_MAX];
	int mq_port;
	char mq_topic[MQ_TOPIC_MAX]; /* <topic>/status */
	char mq_user[MQ_USER_MAX];
	char mq_pass[MQ_PASS_MAX];
	MQTTAsync mq;
	_Atomic int mq_state;
	atomic_bool mq_hello;        /* connected: the status "at connect" is due */
	_Atomic int64_t mq_retry_us; /* next connect attempt */
	int64_t mq_sched_us;         /* of the publish in flight */
	bool mq_measured;
	int64_t next_st_us;
};

struct samples {
	double *v;
	size_t n, cap;
};

struct stats {
	struct samples lat;     /* ms from the scheduled time */
	struct samples lag;     /* ms from the scheduled time to the send (ours) */
	long ok, http_err, net_err, gaps;
	long unanswered;
};

struct opts {
	const char *url, *branch_code;
	char *codes[MAX_CODES];
	int ncodes;
	int devices, heartbeat_s, sync_s, entries, carts, seconds, warmup;
	int mqtt_status_s;        /* 0: no MQTT */
	bool fresh;
};

struct fleet {
	struct opts o;
	CURLM *multi;
	struct device *dev;
	uint32_t run_tag;         /* random: ids and MACs of this run */
	int64_t t0_us, window_start_us, window_end_us;
	struct stats hb, sync;
	long entries_applied;
	int inflight;
	/* MQTT: st's lat, ok, http_err (refused by the broker: PUBACK reason
	 * >= 0x80) and net_err (not sent, failed, connection lost) are written
	 * by paho's threads under mq_mu; its lag and unanswered by ours */
	struct stats st;
	pthread_mutex_t mq_mu;
	atomic_int mq_inflight, mq_connected, mq_lost, mq_refused_connects;
	atomic_long mq_acked;     /* every PUBACK ok, warm-up and hellos too */
	atomic_int mq_first_reason;
};

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int samples_add(struct samples *s, double v)
{
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 4096;
		double *g = realloc(s->v, ncap * sizeof(*g));
		if (!g)
			return CW_ERR_NOMEM;
		s->v = g;
		s->cap = ncap;
	}
	s->v[s->n++] = v;
	return CW_OK;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
	struct device *d = ud;
	size_t n = size * nmemb, room = RESP_MAX - 1 - d->resp_len;

	memcpy(d->resp + d->resp_len, p, n < room ? n : room);
	d->resp_len += n < room ? n : room;
	d->resp[d->resp_len] = '\0';
	return n;
}

/* ---- what a device sends (the edge's shapes, docs/SYNC.md "Up") ---- */

/* A UUID (version 4 layout) made of the run tag, a type, the device index
 * and a counter: unique within a run, the same for the same inputs. */
static void make_id(const struct fleet *f, unsigned type, int dev, int64_t n,
		    char out[ID_LEN + 1])
{
	snprintf(out, ID_LEN + 1, "%08x-%04x-4%03x-8%03x-%012" PRIx64, f->run_tag, type & 0xffff,
		 (unsigned)(dev >> 12) & 0xfff, (unsigned)dev & 0xfff,
		 (uint64_t)n & UINT64_C(0xffffffffffff));
}

/* Appends entry `seq` of device d to b (at most cap bytes in all); the
 * entry's kind is a function of seq, so a batch sent again is the same. */
static int entry_append(const struct fleet *f, const struct device *d, int64_t seq, char *b,
			size_t *len, size_t cap)
{
	int C = f->o.carts;
	int64_t now = wall_ms();
	char cart[ID_LEN + 1], rental[ID_LEN + 1], payload[1024];
	const char *kind, *etype, *eid;
	int n, cart_i;

	if (seq <= C) {
		/* the device's carts first: a rental needs its cart in the cloud */
		cart_i = (int)seq - 1;
		make_id(f, 0xca, d->index, cart_i, cart);
		kind = "cart.created";
		etype = "cart";
		eid = cart;
		n = snprintf(payload, sizeof(payload),
			     "{\"v\":1,\"cart\":{\"id\":\"%s\",\"cart_number\":%d,"
			     "\"status\":\"available\",\"is_locked\":1,\"board_online\":1,"
			     "\"bus_index\":0,\"board_index\":0,\"lock_index\":%d,"
			     "\"updated\":%" PRId64 "}}",
			     cart, d->index * C + cart_i + 1, cart_i, now);
	} else {
		int64_t k = (seq - C - 1) / 3, rk = k / 2;
		cart_i = (int)(rk % C);
		make_id(f, 0xca, d->index, cart_i, cart);
		make_id(f, 0x4e, d->index, rk, rental);
		switch ((seq - C - 1) % 3) {
		case 0: /* a rental starts (k even) or ends (k odd) */
			kind = k % 2 == 0 ? "rental.created" : "rental.updated";
			etype = "rental";
			eid = rental;
			n = snprintf(payload, sizeof(payload),
				     "{\"v\":1,\"rental\":{\"id\":\"%s\",\"cart_id\":\"%s\","
				     "\"user_phone\":\"05%08d\",\"status\":\"%s\","
				     "\"start_time\":%" PRId64 ",\"expected_return\":%" PRId64 ","
				     "%s\"clock_trusted\":1,\"updated\":%" PRId64 "}}",
				     rental, cart, d->index, k % 2 == 0 ? "active" : "returned",
				     now - 60000, now + 3540000,
				     k % 2 == 0 ? "" : "\"duration_s\":1800,", now);
			break;
		case 1: /* the cart's state follows the rental */
			kind = "cart.updated";
			etype = "cart";
			eid = cart;
			n = snprintf(payload, sizeof(payload),
				     "{\"v\":1,\"cart\":{\"id\":\"%s\",\"cart_number\":%d,"
				     "\"status\":\"%s\",\"is_locked\":%d,\"board_online\":1,"
				     "\"bus_index\":0,\"board_index\":0,\"lock_index\":%d,"
				     "\"last_used\":%" PRId64 ",\"updated\":%" PRId64 "}}",
				     cart, d->index * C + cart_i + 1,
				     k % 2 == 0 ? "rented" : "available", k % 2 == 0 ? 0 : 1,
				     cart_i, now, now);
			break;
		default: /* and a lock event */
			kind = "telemetry";
			etype = "telemetry";
			eid = cart;
			n = snprintf(payload, sizeof(payload),
				     "{\"v\":1,\"telemetry\":{\"event_type\":\"lock.released\","
				     "\"event_data\":{\"bus\":0,\"board\":1,\"lock\":%d,"
				     "\"confirm_ms\":38},\"cart_id\":\"%s\",\"wall_ms\":%" PRId64 ","
				     "\"clock_trusted\":1}}",
				     cart_i, cart, now);
			break;
		}
	}
	if (n < 0 || (size_t)n >= sizeof(payload))
		return CW_ERR_TOOBIG;
	n = snprintf(b + *len, cap - *len,
		     "%s{\"seq\":%" PRId64 ",\"kind\":\"%s\",\"entity_type\":\"%s\","
		     "\"entity_id\":\"%s\",\"created_wall_ms\":%" PRId64 ",\"clock_trusted\":true,"
		     "\"payload\":%s}",
		     *len > 12 ? "," : "", seq, kind, etype, eid, now, payload);
	if (n < 0 || (size_t)n >= cap - *len)
		return CW_ERR_TOOBIG;
	*len += (size_t)n;
	return CW_OK;
}

/* ---- requests ---- */

static int start(struct fleet *f, struct device *d, enum req_kind k, int64_t sched_us)
{
	CURL *e = d->easy;
	size_t len = 0;
	int64_t first, last;
	int n, rc;

	d->resp_len = 0;
	d->resp[0] = '\0';
	switch (k) {
	case R_REGISTER:
		snprintf(d->url, sizeof(d->url), "%s/api/devices/register", f->o.url);
		n = snprintf(d->body, sizeof(d->body),
			     "{\"mac_address\":\"02:%02x:%02x:%02x:%02x:%02x\","
			     "\"branch_code\":\"%s\",\"enrollment_code\":\"%s\","
			     "\"device_name\":\"bench %d\"}",
			     f->run_tag & 0xff, (f->run_tag >> 8) & 0xff, (d->index >> 16) & 0xff,
			     (d->index >> 8) & 0xff, d->index & 0xff, f->o.branch_code,
			     f->o.codes[d->index / CODE_USES], d->index);
		if (n < 0 || (size_t)n >= sizeof(d->body))
			return CW_ERR_TOOBIG;
		len = (size_t)n;
		break;
	case R_HEARTBEAT:
		snprintf(d->url, sizeof(d->url), "%s/api/devices/%s/heartbeat", f->o.url, d->id);
		n = snprintf(d->body, sizeof(d->body),
			     "{\"status\":\"online\",\"firmware_version\":\"" FIRMWARE "\",\"health\":"
			     "{\"cpu_temp_c\":51.2,\"disk_free_mb\":11873,\"mem_available_mb\":612,"
			     "\"uptime_s\":%" PRId64 ",\"outbox_depth\":0,\"clock_trusted\":true,"
			     "\"boards_online\":2,\"boards_total\":2,\"config_version\":0,"
			     "\"sync_state\":\"ok\"}}",
			     (cw_bench_now_us() - f->t0_us) / 1000000 + 86400);
		if (n < 0 || (size_t)n >= sizeof(d->body))
			return CW_ERR_TOOBIG;
		len = (size_t)n;
		break;
	case R_SYNC:
		snprintf(d->url, sizeof(d->url), "%s/api/devices/%s/sync", f->o.url, d->id);
		first = d->acked + 1;
		last = d->acked < f->o.carts ? f->o.carts : d->acked + f->o.entries;
		len = (size_t)snprintf(d->body, sizeof(d->body), "{\"entries\":[");
		for (int64_t s = first; s <= last; s++)
			if ((rc = entry_append(f, d, s, d->body, &len, sizeof(d->body) - 2)) != CW_OK)
				return rc;
		memcpy(d->body + len, "]}", 3);
		len += 2;
		d->sent_last = last;
		break;
	default:
		return CW_ERR_INTERNAL;
	}
	curl_easy_setopt(e, CURLOPT_URL, d->url);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, d->headers);
	if (curl_multi_add_handle(f->multi, e) != CURLM_OK)
		return CW_ERR_INTERNAL;
	d->busy = k;
	d->sched_us = sched_us;
	d->measured = sched_us >= f->window_start_us && sched_us < f->window_end_us;
	if (d->measured && k != R_REGISTER)
		samples_add(&(k == R_HEARTBEAT ? &f->hb : &f->sync)->lag,
			    (double)(cw_bench_now_us() - sched_us) / 1000.0);
	f->inflight++;
	return CW_OK;
}

/* The answer's mqtt_config {broker, port, tls, topic, username, password}
 * (docs/SYNC.md "MQTT"); the bench speaks plain MQTT only (loopback). */
static int mqtt_config(struct device *d, const cJSON *mc)
{
	const char *keys[] = {"broker", "topic", "username", "password"};
	const char *v[4];
	const cJSON *port = cJSON_GetObjectItemCaseSensitive(mc, "port");
	int n;

	if (!cJSON_IsObject(mc)) {
		fprintf(stderr, "bench_fleet: registration %d: mqtt_config is null (the cloud has "
			"no mqtt section)\n", d->index);
		return CW_ERR_CONFIG;
	}
	for (int i = 0; i < 4; i++)
		if (!(v[i] = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(mc, keys[i])))) {
			fprintf(stderr, "bench_fleet: registration %d: mqtt_config.%s missing\n",
				d->index, keys[i]);
			return CW_ERR_PROTO;
		}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(mc, "tls"))) {
		fprintf(stderr, "bench_fleet: mqtt_config.tls is true; the bench speaks plain MQTT "
			"(set the cloud's mqtt.tls to false)\n");
		return CW_ERR_CONFIG;
	}
	if (!cJSON_IsNumber(port) || port->valueint < 1 || port->valueint > 65535) {
		fprintf(stderr, "bench_fleet: registration %d: mqtt_config.port invalid\n", d->index);
		return CW_ERR_PROTO;
	}
	d->mq_port = port->valueint;
	n = snprintf(d->mq_topic, sizeof(d->mq_topic), "%s/status", v[1]);
	if (strlen(v[0]) >= sizeof(d->mq_host) || n < 0 || (size_t)n >= sizeof(d->mq_topic) ||
	    strlen(v[2]) >= sizeof(d->mq_user) || strlen(v[3]) >= sizeof(d->mq_pass)) {
		fprintf(stderr, "bench_fleet: registration %d: mqtt_config field too long\n",
			d->index);
		return CW_ERR_TOOBIG;
	}
	snprintf(d->mq_host, sizeof(d->mq_host), "%s", v[0]);
	snprintf(d->mq_user, sizeof(d->mq_user), "%s", v[2]);
	snprintf(d->mq_pass, sizeof(d->mq_pass), "%s", v[3]);
	return CW_OK;
}

/* A register answer: the device's id and token (and its mqtt_config with
 * --mqtt-status-s); its headers for later. */
static int registered(const struct fleet *f, struct device *d)
{
	cJSON *j = cJSON_Parse(d->resp);
	const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "device_id"));
	const char *tok =
		cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "device_token"));
	char auth[TOKEN_MAX + 32];
	int rc = CW_ERR_PROTO;

	if (id && tok && strlen(id) == ID_LEN && strlen(tok) < TOKEN_MAX) {
		snprintf(d->id, sizeof(d->id), "%s", id);
		snprintf(d->token, sizeof(d->token), "%s", tok);
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
		curl_slist_free_all(d->headers);
		d->headers = curl_slist_append(NULL, "Content-Type: application/json");
		d->headers = d->headers ? curl_slist_append(d->headers, auth) : NULL;
		rc = d->headers ? CW_OK : CW_ERR_NOMEM;
		if (rc == CW_OK && f->o.mqtt_status_s > 0)
			rc = mqtt_config(d, cJSON_GetObjectItemCaseSensitive(j, "mqtt_config"));
	}
	cJSON_Delete(j);
	return rc;
}

/* the cloud's mark from a 200 ({"high_water"}) or a 409 ("expected seq N") */
static bool sync_mark(struct device *d, long code, int64_t *mark)
{
	const char *p;

	if (code == 200) {
		cJSON *j = cJSON_Parse(d->resp);
		const cJSON *hw = cJSON_GetObjectItemCaseSensitive(j, "high_water");
		bool ok = cJSON_IsNumber(hw);
		if (ok)
			*mark = (int64_t)hw->valuedouble;
		cJSON_Delete(j);
		return ok;
	}
	p = strstr(d->resp, "expected seq ");
	if (code == 409 && p) {
		*mark = strtoll(p + 13, NULL, 10) - 1;
		return true;
	}
	return false;
}

static void finish(struct fleet *f, CURLMsg *m)
{
	struct device *d = NULL;
	long code = 0;
	int64_t now = cw_bench_now_us(), mark = 0;
	struct stats *st;

	curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&d);
	curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(f->multi, m->easy_handle);
	f->inflight--;
	if (d->busy == R_REGISTER) {
		d->busy = R_NONE;
		/* a 201's body holds the device's secrets: not printed */
		if (m->data.result != CURLE_OK || code != 201 || registered(f, d) != CW_OK)
			fprintf(stderr, "bench_fleet: registration %d: %s HTTP %ld %.200s\n",
				d->index, curl_easy_strerror(m->data.result), code,
				code == 201 ? "(answer not usable)" : d->resp);
		return;
	}
	st = d->busy == R_HEARTBEAT ? &f->hb : &f->sync;
	if (d->busy == R_SYNC) {
		if (m->data.result == CURLE_OK && sync_mark(d, code, &mark)) {
			if (code == 200)
				f->entries_applied += d->measured ? mark - d->acked : 0;
			d->acked = mark;
			if (code == 409)
				st->gaps++;
		}
	}
	d->busy = R_NONE;
	if (!d->measured)
		return;
	if (m->data.result != CURLE_OK) {
		if (st->net_err++ == 0)
			fprintf(stderr, "bench_fleet: first network error: %s\n",
				curl_easy_strerror(m->data.result));
	} else if (code != 200) {
		if (st->http_err++ == 0)
			fprintf(stderr, "bench_fleet: first HTTP error: %ld %.200s\n", code, d->resp);
	} else {
		st->ok++;
	}
	samples_add(&st->lat, (double)(now - d->sched_us) / 1000.0);
}

static void pump(struct fleet *f, int timeout_ms)
{
	CURLMsg *m;
	int running, left;

	curl_multi_perform(f->multi, &running);
	while ((m = curl_multi_info_read(f->multi, &left)))
		if (m->msg == CURLMSG_DONE)
			finish(f, m);
	if (timeout_ms > 0)
		curl_multi_poll(f->multi, NULL, 0, timeout_ms, NULL);
}

/* ---- MQTT status (--mqtt-status-s) ---- */

/* A publish's end (paho's thread): recorded only if it is still the one in
 * flight (a lost connection already counted it). */
static void mq_done(struct device *d, bool answered, int reason)
{
	struct fleet *f = d->f;
	int busy = MQ_BUSY;
	int64_t now = cw_bench_now_us();

	if (!atomic_compare_exchange_strong(&d->mq_state, &busy, MQ_UP))
		return;
	atomic_fetch_sub(&f->mq_inflight, 1);
	if (answered && reason < 0x80)
		atomic_fetch_add(&f->mq_acked, 1);
	if (!d->mq_measured)
		return;
	pthread_mutex_lock(&f->mq_mu);
	if (!answered)
		f->st.net_err++;
	else if (reason >= 0x80)
		f->st.http_err++;
	else
		f->st.ok++;
	if (answered)
		samples_add(&f->st.lat, (double)(now - d->mq_sched_us) / 1000.0);
	pthread_mutex_unlock(&f->mq_mu);
}

static void mq_pub_ok(void *ctx, MQTTAsync_successData5 *r)
{
	mq_done(ctx, true, r ? (int)r->reasonCode : 0);
}

static void mq_pub_fail(void *ctx, MQTTAsync_failureData5 *r)
{
	/* a PUBACK with a refusal comes here with its reason code */
	int reason = r ? (int)r->reasonCode : 0;

	mq_done(ctx, reason >= 0x80, reason);
}

static void mq_connect_ok(void *ctx, MQTTAsync_successData5 *r)
{
	struct device *d = ctx;

	(void)r;
	atomic_store(&d->mq_hello, true);
	atomic_store(&d->mq_state, MQ_UP);
	atomic_fetch_add(&d->f->mq_connected, 1);
}

static void mq_connect_fail(void *ctx, MQTTAsync_failureData5 *r)
{
	struct device *d = ctx;
	/* a refused CONNACK comes as code (its reason code), reasonCode 0 */
	int reason = !r ? 0 : r->reasonCode ? (int)r->reasonCode : r->code > 0 ? r->code : 0;
	int none = 0;

	if (reason >= 0x80)
		atomic_fetch_add(&d->f->mq_refused_connects, 1);
	atomic_compare_exchange_strong(&d->f->mq_first_reason, &none, reason ? reason : -1);
	atomic_store(&d->mq_retry_us, cw_bench_now_us() + MQ_RETRY_US);
	atomic_store(&d->mq_state, MQ_DOWN);
}

static void mq_lost(void *ctx, char *cause)
{
	struct device *d = ctx;
	struct fleet *f = d->f;

	(void)cause;
	atomic_store(&d->mq_retry_us, cw_bench_now_us() + MQ_RETRY_US);
	atomic_fetch_sub(&f->mq_connected, 1);
	atomic_fetch_add(&f->mq_lost, 1);
	if (atomic_exchange(&d->mq_state, MQ_DOWN) == MQ_BUSY) {
		atomic_fetch_sub(&f->mq_inflight, 1);
		if (d->mq_measured) {
			pthread_mutex_lock(&f->mq_mu);
			f->st.net_err++;
			pthread_mutex_unlock(&f->mq_mu);
		}
	}
}

/* paho requires one; a device subscribes to nothing here */
static int mq_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *msg)
{
	(void)ctx;
	(void)topic_len;
	MQTTAsync_freeMessage(&msg);
	MQTTAsync_free(topic);
	return 1;
}

/* One connect attempt (MQTT 5, clean start, the edge's Last Will). */
static int mq_connect(struct device *d)
{
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
	int rc;

	if (!d->mq) {
		MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer5;
		char uri[MQ_HOST_MAX + 32];
		snprintf(uri, sizeof(uri), "tcp://%s:%d", d->mq_host, d->mq_port);
		if (MQTTAsync_createWithOptions(&d->mq, uri, d->mq_user, MQTTCLIENT_PERSISTENCE_NONE,
					       NULL, &cro) != MQTTASYNC_SUCCESS ||
		    MQTTAsync_setCallbacks(d->mq, d, mq_lost, mq_message, NULL) != MQTTASYNC_SUCCESS)
			return CW_ERR_INTERNAL;
	}
	co.keepAliveInterval = 30;
	co.cleanstart = 1;
	co.connectTimeout = 10;
	co.username = d->mq_user;
	co.password = d->mq_pass;
	will.topicName = d->mq_topic;
	will.message = "{\"v\":1,\"status\":\"offline\"}";
	will.qos = 1;
	will.retained = 1;
	co.will = &will;
	co.onSuccess5 = mq_connect_ok;
	co.onFailure5 = mq_connect_fail;
	co.context = d;
	atomic_store(&d->mq_state, MQ_CONNECTING);
	rc = MQTTAsync_connect(d->mq, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		atomic_store(&d->mq_retry_us, cw_bench_now_us() + MQ_RETRY_US);
		atomic_store(&d->mq_state, MQ_DOWN);
	}
	return CW_OK;
}

/* P/status, retained, QoS 1, scheduled at sched_us; false if the device
 * is no longer connected (nothing sent). */
static bool mq_publish(struct fleet *f, struct device *d, int64_t sched_us)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	char at[32], body[192];
	int n, rc, up = MQ_UP, busy = MQ_BUSY;

	cw_wall_format(cw_wall_ms(), at);
	n = snprintf(body, sizeof(body),
		     "{\"v\":1,\"status\":\"online\",\"at\":\"%s\",\"firmware_version\":\"%s\"}",
		     at, FIRMWARE);
	d->mq_sched_us = sched_us;
	d->mq_measured = sched_us >= f->window_start_us && sched_us < f->window_end_us;
	atomic_fetch_add(&f->mq_inflight, 1);
	/* not if the connection was lost meanwhile (paho's thread): sent
	 * after the reconnect, its lateness in its latency */
	if (!atomic_compare_exchange_strong(&d->mq_state, &up, MQ_BUSY)) {
		atomic_fetch_sub(&f->mq_inflight, 1);
		return false;
	}
	if (d->mq_measured)
		samples_add(&f->st.lag, (double)(cw_bench_now_us() - sched_us) / 1000.0);
	ro.onSuccess5 = mq_pub_ok;
	ro.onFailure5 = mq_pub_fail;
	ro.context = d;
	rc = MQTTAsync_send(d->mq, d->mq_topic, n, body, 1, 1, &ro);
	if (rc != MQTTASYNC_SUCCESS &&
	    atomic_compare_exchange_strong(&d->mq_state, &busy,
					   rc == MQTTASYNC_DISCONNECTED ? MQ_DOWN : MQ_UP)) {
		atomic_fetch_sub(&f->mq_inflight, 1);
		if (d->mq_measured) {
			pthread_mutex_lock(&f->mq_mu);
			f->st.net_err++;
			pthread_mutex_unlock(&f->mq_mu);
		}
	}
	return true;
}

/* The MQTT side of one device at `now`: (re)connect when due, the status at
 * connect, then the scheduled ones (until the window ends). One publish in
 * flight at a time, like the edge's one link. */
static int mq_step(struct fleet *f, struct device *d, int64_t now)
{
	int64_t S = (int64_t)f->o.mqtt_status_s * 1000000;
	int state = atomic_load(&d->mq_state);

	if (state == MQ_DOWN && atomic_load(&d->mq_retry_us) <= now)
		return mq_connect(d);
	if (state != MQ_UP)
		return CW_OK;
	if (atomic_load(&d->mq_hello)) {
		if (mq_publish(f, d, now))
			atomic_store(&d->mq_hello, false);
	} else if (d->next_st_us <= now && d->next_st_us < f->window_end_us) {
		if (mq_publish(f, d, d->next_st_us))
			d->next_st_us += S;
	}
	return CW_OK;
}

/* Connects every device (retrying refusals: the broker learns the users when
 * it is reloaded after the registrations) and sends the status at connect;
 * waits until all are acknowledged or MQ_CONNECT_WAIT_US. */
static int mq_connect_all(struct fleet *f)
{
	int64_t t0 = cw_bench_now_us(), end = t0 + MQ_CONNECT_WAIT_US, now;
	int N = f->o.devices, ready = 0, reason;

	for (int i = 0; i < N; i++)
		f->dev[i].next_st_us = INT64_MAX; /* the schedule starts with the run */
	f->window_start_us = f->window_end_us = INT64_MAX;
	while ((now = cw_bench_now_us()) < end) {
		ready = 0;
		for (int i = 0; i < N; i++) {
			struct device *d = &f->dev[i];
			if (mq_step(f, d, now) != CW_OK)
				return CW_ERR_INTERNAL;
			ready += atomic_load(&d->mq_state) == MQ_UP && !atomic_load(&d->mq_hello);
		}
		if (ready == N && atomic_load(&f->mq_inflight) == 0)
			break;
		cw_sleep_ms(5);
	}
	reason = atomic_load(&f->mq_first_reason);
	printf("mqtt_connect devices=%d connected=%d seconds=%.1f refused_attempts=%d "
	       "first_failure_reason=%d\n",
	       N, ready, (double)(cw_bench_now_us() - t0) / 1e6,
	       atomic_load(&f->mq_refused_connects), reason < 0 ? 0 : reason);
	fflush(stdout);
	if (ready == 0) {
		fprintf(stderr, "bench_fleet: no device connected to the broker (first failure "
			"reason %d; 0x86/0x87 = user not known or not authorised)\n", reason);
		return CW_ERR_OFFLINE;
	}
	return CW_OK;
}

/* A clean goodbye (DISCONNECT: no Last Will), then the clients go. */
static void mq_close_all(struct fleet *f)
{
	int64_t end = cw_bench_now_us() + 5000000;
	bool any = true;

	for (int i = 0; f->dev && i < f->o.devices; i++) {
		MQTTAsync_disconnectOptions dc = MQTTAsync_disconnectOptions_initializer5;
		dc.timeout = 2000;
		if (f->dev[i].mq && MQTTAsync_isConnected(f->dev[i].mq))
			MQTTAsync_disconnect(f->dev[i].mq, &dc);
	}
	while (any && cw_bench_now_us() < end) {
		any = false;
		for (int i = 0; f->dev && i < f->o.devices && !any; i++)
			any = f->dev[i].mq && MQTTAsync_isConnected(f->dev[i].mq);
		if (any)
			cw_sleep_ms(20);
	}
	for (int i = 0; f->dev && i < f->o.devices; i++) {
		if (f->dev[i].mq)
			MQTTAsync_destroy(&f->dev[i].mq);
		memset(f->dev[i].mq_pass, 0, sizeof(f->dev[i].mq_pass));
	}
}

/* ---- phases ---- */

static int register_all(struct fleet *f)
{
	int next = 0, ok = 0;
	int64_t t0 = cw_bench_now_us();

	while (next < f->o.devices || f->inflight > 0) {
		while (next < f->o.devices && f->inflight < REGISTER_PARALLEL)
			if (start(f, &f->dev[next++], R_REGISTER, 0) != CW_OK)
				return CW_ERR_INTERNAL;
		pump(f, 5);
	}
	for (int i = 0; i < f->o.devices; i++)
		ok += f->dev[i].id[0] != '\0';
	printf("register devices=%d ok=%d seconds=%.1f\n", f->o.devices, ok,
	       (double)(cw_bench_now_us() - t0) / 1e6);
	return ok == f->o.devices ? CW_OK : CW_ERR_PROTO;
}

static int run(struct fleet *f)
{
	int64_t H = (int64_t)f->o.heartbeat_s * 1000000, S = (int64_t)f->o.sync_s * 1000000;
	int64_t M = (int64_t)f->o.mqtt_status_s * 1000000;
	bool mqtt = M > 0;
	int64_t start_us = cw_bench_now_us() + 100000, drain_end;
	int N = f->o.devices;

	f->window_start_us = start_us + (int64_t)f->o.warmup * 1000000;
	f->window_end_us = f->window_start_us + (int64_t)f->o.seconds * 1000000;
	/* the carts batch at once (warm-up), then the phases spread evenly */
	for (int i = 0; i < N; i++) {
		struct device *d = &f->dev[i];
		d->next_hb_us = start_us + H * i / N;
		d->next_sync_us = start_us + S * i / N;
		d->next_st_us = mqtt ? start_us + M * i / N : INT64_MAX;
	}
	drain_end = f->window_end_us + DRAIN_TIMEOUT_US;
	for (;;) {
		int64_t now = cw_bench_now_us(), wake = now + 1000;
		bool scheduling = now < f->window_end_us;
		for (int i = 0; i < N; i++) {
			struct device *d = &f->dev[i];
			bool hb_due, sync_due;
			if (mqtt && mq_step(f, d, now) != CW_OK)
				return CW_ERR_INTERNAL;
			if (d->busy != R_NONE)
				continue;
			hb_due = d->next_hb_us <= now && d->next_hb_us < f->window_end_us;
			sync_due = d->next_sync_us <= now && d->next_sync_us < f->window_end_us;
			if (hb_due && (!sync_due || d->next_hb_us <= d->next_sync_us)) {
				if (start(f, d, R_HEARTBEAT, d->next_hb_us) != CW_OK)
					return CW_ERR_INTERNAL;
				d->next_hb_us += H;
			} else if (sync_due) {
				if (start(f, d, R_SYNC, d->next_sync_us) != CW_OK)
					return CW_ERR_INTERNAL;
				d->next_sync_us += S;
			}
		}
		if (!scheduling && f->inflight == 0 && atomic_load(&f->mq_inflight) == 0) {
			bool pending = false;
			for (int i = 0; i < N && !pending; i++)
				pending = f->dev[i].next_hb_us < f->window_end_us ||
					  f->dev[i].next_sync_us < f->window_end_us ||
					  f->dev[i].next_st_us < f->window_end_us;
			if (!pending || now >= drain_end)
				break;
		}
		if (!scheduling && now >= drain_end)
			break;
		pump(f, (int)((wake - now) / 1000));
	}
	/* what was scheduled in the window and never answered */
	for (int i = 0; i < N; i++) {
		struct device *d = &f->dev[i];
		for (int64_t t = d->next_hb_us; t < f->window_end_us; t += H)
			f->hb.unanswered += t >= f->window_start_us;
		for (int64_t t = d->next_sync_us; t < f->window_end_us; t += S)
			f->sync.unanswered += t >= f->window_start_us;
		if (d->busy != R_NONE && d->measured)
			(d->busy == R_HEARTBEAT ? &f->hb : &f->sync)->unanswered++;
		if (!mqtt)
			continue;
		for (int64_t t = d->next_st_us; t < f->window_end_us; t += M)
			f->st.unanswered += t >= f->window_start_us;
		/* still in flight: taken back from paho's callbacks first */
		{
			int busy = MQ_BUSY;
			if (atomic_compare_exchange_strong(&d->mq_state, &busy, MQ_UP)) {
				atomic_fetch_sub(&f->mq_inflight, 1);
				f->st.unanswered += d->mq_measured;
			}
		}
	}
	return CW_OK;
}

/* errs: the names of http_err and net_err in the printout */
static void report(const char *name, struct stats *s, double window_s, const char *const errs[2])
{
	size_t n = s->lat.n;

	cw_bench_sort(s->lat.v, n);
	printf("%s requests=%zu ok=%ld %s=%ld %s=%ld unanswered=%ld gaps=%ld rate_per_s=%.1f", name,
	       n, s->ok, errs[0], s->http_err, errs[1], s->net_err, s->unanswered, s->gaps,
	       (double)n / window_s);
	if (n > 0)
		printf(" p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f",
		       cw_bench_percentile(s->lat.v, n, 0.50), cw_bench_percentile(s->lat.v, n, 0.95),
		       cw_bench_percentile(s->lat.v, n, 0.99), s->lat.v[n - 1]);
	/* how late this generator sent them: a figure of the generator, not
	 * of the server (a busy machine starves it too) */
	cw_bench_sort(s->lag.v, s->lag.n);
	if (s->lag.n > 0)
		printf(" send_lag_p50_ms=%.2f send_lag_p99_ms=%.2f",
		       cw_bench_percentile(s->lag.v, s->lag.n, 0.50),
		       cw_bench_percentile(s->lag.v, s->lag.n, 0.99));
	printf("\n");
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench_fleet --url URL --branch-code CODE --enrollment-codes C1[,C2...]\n"
		   "         [--devices N (1000)] [--heartbeat-s S (10)] [--sync-s S (30)]\n"
		   "         [--entries N (4)] [--carts N (2)] [--seconds S (60)] [--warmup S (10)]\n"
		   "         [--fresh-connections] [--mqtt-status-s S (0: no MQTT)]\n"
		   "  (one enrollment code per %d devices)\n",
		CODE_USES);
}

static int parse_codes(char *v, struct opts *o)
{
	for (char *save = NULL, *c = strtok_r(v, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
		if (o->ncodes == MAX_CODES)
			return CW_ERR_INVAL;
		o->codes[o->ncodes++] = c;
	}
	return o->ncodes > 0 ? CW_OK : CW_ERR_INVAL;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const char *const flags[] = {"--fresh-connections", NULL};

	memset(o, 0, sizeof(*o));
	o->devices = 1000;
	o->heartbeat_s = 10;
	o->sync_s = 30;
	o->entries = 4;
	o->carts = 2;
	o->seconds = 60;
	o->warmup = 10;
	for (int i = 1; i < argc; i++) {
		const char *a;
		char *v;
		int rc = cw_bench_next_opt(argc, argv, &i, "bench_fleet", flags, usage, &a, &v);

		if (rc != CW_OK)
			return rc;
		if (strcmp(a, "--fresh-connections") == 0)
			o->fresh = true;
		else if (strcmp(a, "--url") == 0)
			o->url = v;
		else if (strcmp(a, "--branch-code") == 0)
			o->branch_code = v;
		else if (strcmp(a, "--enrollment-codes") == 0)
			rc = parse_codes(v, o);
		else if (strcmp(a, "--devices") == 0)
			rc = cw_bench_parse_int(v, 1, MAX_DEVICES, &o->devices);
		else if (strcmp(a, "--heartbeat-s") == 0)
			rc = cw_bench_parse_int(v, 1, 3600, &o->heartbeat_s);
		else if (strcmp(a, "--sync-s") == 0)
			rc = cw_bench_parse_int(v, 1, 3600, &o->sync_s);
		else if (strcmp(a, "--entries") == 0)
			rc = cw_bench_parse_int(v, 1, 30, &o->entries);
		else if (strcmp(a, "--carts") == 0)
			rc = cw_bench_parse_int(v, 1, 16, &o->carts);
		else if (strcmp(a, "--seconds") == 0)
			rc = cw_bench_parse_int(v, 1, 3600, &o->seconds);
		else if (strcmp(a, "--warmup") == 0)
			rc = cw_bench_parse_int(v, 0, 600, &o->warmup);
		else if (strcmp(a, "--mqtt-status-s") == 0)
			rc = cw_bench_parse_int(v, 0, 3600, &o->mqtt_status_s);
		else {
			fprintf(stderr, "bench_fleet: unknown option %s\n", a);
			usage(stderr);
			return CW_ERR_INVAL;
		}
		if (rc != CW_OK) {
			fprintf(stderr, "bench_fleet: bad value for %s\n", a);
			return rc;
		}
	}
	if (!o->url || !o->branch_code || o->ncodes == 0) {
		usage(stderr);
		return CW_ERR_INVAL;
	}
	if (o->ncodes * CODE_USES < o->devices) {
		fprintf(stderr, "bench_fleet: %d devices need %d enrollment codes\n", o->devices,
			(o->devices + CODE_USES - 1) / CODE_USES);
		return CW_ERR_INVAL;
	}
	return CW_OK;
}

static int fleet_init(struct fleet *f)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	f->run_tag = (uint32_t)(ts.tv_nsec ^ (ts.tv_sec << 20));
	f->t0_us = cw_bench_now_us();
	pthread_mutex_init(&f->mq_mu, NULL);
	f->multi = curl_multi_init();
	f->dev = calloc((size_t)f->o.devices, sizeof(*f->dev));
	if (!f->multi || !f->dev)
		return CW_ERR_NOMEM;
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)f->o.devices);
	for (int i = 0; i < f->o.devices; i++) {
		struct device *d = &f->dev[i];
		d->f = f;
		d->index = i;
		d->easy = curl_easy_init();
		d->headers = curl_slist_append(NULL, "Content-Type: application/json");
		if (!d->easy || !d->headers)
			return CW_ERR_NOMEM;
		curl_easy_setopt(d->easy, CURLOPT_PRIVATE, d);
		curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(d->easy, CURLOPT_WRITEDATA, d);
		curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, 30000L);
		curl_easy_setopt(d->easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
		if (f->o.fresh)
			curl_easy_setopt(d->easy, CURLOPT_FORBID_REUSE, 1L);
	}
	return CW_OK;
}

static void fleet_free(struct fleet *f)
{
	mq_close_all(f); /* paho's callbacks touch the devices: first */
	for (int i = 0; f->dev && i < f->o.devices; i++) {
		if (f->dev[i].busy != R_NONE)
			curl_multi_remove_handle(f->multi, f->dev[i].easy);
		curl_easy_cleanup(f->dev[i].easy);
		curl_slist_free_all(f->dev[i].headers);
		memset(f->dev[i].token, 0, sizeof(f->dev[i].token));
	}
	free(f->dev);
	curl_multi_cleanup(f->multi);
	free(f->hb.lat.v);
	free(f->sync.lat.v);
	free(f->hb.lag.v);
	free(f->sync.lag.v);
	free(f->st.lat.v);
	free(f->st.lag.v);
	pthread_mutex_destroy(&f->mq_mu);
}

int main(int argc, char **argv)
{
	static const char *const http_errs[2] = {"http_errors", "net_errors"};
	static const char *const mq_errs[2] = {"refused", "failed"};
	static struct fleet f;
	struct rusage ru;
	int status = 1;

	if (parse_args(argc, argv, &f.o) != CW_OK)
		return 2;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	if (fleet_init(&f) != CW_OK) {
		fprintf(stderr, "bench_fleet: out of memory\n");
		goto out;
	}
	if (register_all(&f) != CW_OK)
		goto out;
	fflush(stdout); /* the register line: run-sync.sh reloads the broker on it */
	if ((f.o.mqtt_status_s > 0 && mq_connect_all(&f) != CW_OK) || run(&f) != CW_OK)
		goto out;
	getrusage(RUSAGE_SELF, &ru);
	printf("fleet devices=%d heartbeat_s=%d sync_s=%d entries=%d seconds=%d warmup=%d "
	       "connections=%s entries_applied=%ld entries_per_s=%.1f generator_cpu_s=%.1f\n",
	       f.o.devices, f.o.heartbeat_s, f.o.sync_s, f.o.entries, f.o.seconds, f.o.warmup,
	       f.o.fresh ? "fresh" : "pooled", f.entries_applied,
	       (double)f.entries_applied / f.o.seconds,
	       (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	report("heartbeat", &f.hb, f.o.seconds, http_errs);
	if (f.o.mqtt_status_s > 0) {
		pthread_mutex_lock(&f.mq_mu);
		report("mqtt_status", &f.st, f.o.seconds, mq_errs);
		pthread_mutex_unlock(&f.mq_mu);
		printf("mqtt status_s=%d connected_at_end=%d connections_lost=%d acked_total=%ld\n",
		       f.o.mqtt_status_s, atomic_load(&f.mq_connected), atomic_load(&f.mq_lost),
		       atomic_load(&f.mq_acked));
	}
	report("sync", &f.sync, f.o.seconds, http_errs);
	status = 0;
out:
	fleet_free(&f);
	curl_global_cleanup();
	return status;
}
