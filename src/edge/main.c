/* main.c - cartwise-edge: the edge daemon.
 *
 * Wires the pieces together: config -> engine (SQLite) -> one bus worker per
 * serial port -> local HTTP API, then ticks the engine every second until
 * SIGTERM/SIGINT. Exit codes: 0 clean stop, 1 runtime failure (database,
 * serial port, API socket), 2 bad command line or bad config. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cw_api.h"
#include "cw_clock.h"
#include "cw_cloudcfg.h"
#include "cw_kiosk.h"
#include "cw_config.h"
#include "cw_edge_sync.h"
#include "cw_engine.h"
#include "cw_error.h"
#include "cw_lockbus.h"
#include "cw_log.h"
#include "cw_service.h"
#include "cw_sms.h"
#include "cw_sync.h"
#include "cw_version.h"

#define TICK_MS 1000
#define SCAN_MAX 256

struct edge;
struct bus_ud {
	struct edge *edge;
	int index;
};

struct edge {
	struct cw_edge_config cfg;
	/* Published after the buses start (so that a bad port leaves the
	 * database untouched); bus workers read it atomically and drop events
	 * until then. The bus reports every poll, so nothing is lost. */
	struct cw_engine *_Atomic engine;
	struct cw_bus *buses[CW_MAX_BUSES];
	struct bus_ud ud[CW_MAX_BUSES];
	struct cw_api *api;
	/* text messages (one-time codes): a queue in the engine's database and
	 * a sender thread; made after the engine, freed before it */
	struct cw_sms *sms;
	/* cloud link (issue 4): only with a "cloud" section in the config */
	struct cw_edge_sync *sync_src;
	struct cw_syncer *syncer;
	/* the configuration the cloud manages (docs/SYNC.md "Down:
	 * configuration"); lives across engine restarts */
	struct cw_cloudcfg *cloudcfg;
	/* the customer kiosk's sign-in (docs/KIOSK.md); restarts with the
	 * engine whose database it uses */
	struct cw_kiosk *kiosk;
	/* systemd's watchdog (docs/ARCHITECTURE.md): fed by the main thread
	 * while every bus worker is alive; starved_bus: the bus it was last
	 * withheld for (logged once), -1 while fed */
	struct cw_watchdog wd;
	int starved_bus;
	/* API bus scans in flight (hook_scan), and the gate that refuses new
	 * ones while restart_all waits for them: a scan holds its HTTP request,
	 * and cw_api_free waits for requests, so a restart that began under a
	 * scan would stop feeding the watchdog for the rest of it (247
	 * addresses at a response timeout each). */
	atomic_int scans;
	atomic_bool scans_closed;
	bool restart_waits; /* edge.restart_waiting logged (once per wait) */
};

/* Big (carts and buses arrays): static, not on the stack. */
static struct edge g_edge;

/* ---- hardware table for the engine ---- */

static int hw_unlock(void *ctx, int bus_index, int board_index, int lock, int64_t *latency_ms)
{
	struct edge *ed = ctx;

	if (bus_index < 0 || bus_index >= ed->cfg.nbuses || !ed->buses[bus_index])
		return CW_ERR_OFFLINE;
	return cw_bus_unlock(ed->buses[bus_index], board_index, lock, latency_ms);
}

/* Runs on the bus worker thread; the engine locks for itself. */
static void on_bus_event(struct cw_bus *bus, const struct cw_bus_event *ev, void *ud)
{
	struct bus_ud *u = ud;
	struct cw_engine *e = atomic_load(&u->edge->engine);
	const struct cw_board_config *bd;
	struct cw_board_status st = ev->status;

	(void)bus;
	if (!e || ev->board_index < 0 || ev->board_index >= u->edge->cfg.buses[u->index].nboards)
		return;
	/* A board without cart-present sensors (infrared) reports no present
	 * bits. Its locks close only when a cart is pushed in (BRIEF.md §3), so
	 * a closed hook is the best evidence of a docked cart we have. */
	bd = &u->edge->cfg.buses[u->index].boards[ev->board_index];
	if (!bd->has_present_sensor)
		st.present = st.hook_closed;
	switch (ev->kind) {
	case CW_BUS_EV_STATUS:
		cw_engine_on_board_status(e, u->index, ev->board_index, &st);
		break;
	case CW_BUS_EV_OFFLINE:
		cw_engine_on_board_offline(e, u->index, ev->board_index, true);
		break;
	case CW_BUS_EV_ONLINE:
		/* back online first, then the fresh status it came back with, so
		 * reconciliation compares against real sensor state */
		cw_engine_on_board_offline(e, u->index, ev->board_index, false);
		cw_engine_on_board_status(e, u->index, ev->board_index, &st);
		break;
	}
}

/* ---- cloud link ---- */

/* The engine committed outbox entries: wake the sender (cheap, any thread). */
static void on_outbox(void *ctx)
{
	cw_syncer_notify(ctx);
}

/* /proc/device-tree/serial-number (Raspberry Pi): printable characters only. */
static void read_serial(char *out, size_t cap)
{
	FILE *f = fopen("/proc/device-tree/serial-number", "r");
	size_t n = 0;
	int ch;

	if (f) {
		while ((ch = fgetc(f)) != EOF && n + 1 < cap) {
			if (ch > 0x20 && ch < 0x7f)
				out[n++] = (char)ch;
		}
		fclose(f);
	}
	out[n] = '\0';
}

/* ---- hooks for the API ---- */

/* "cloud" of the status: the syncer's state, or NULL without a cloud. */
static cJSON *hook_cloud_json(void *ctx)
{
	struct edge *ed = ctx;
	struct cw_sync_status st;
	cJSON *o;

	if (!ed->syncer)
		return NULL;
	cw_syncer_status(ed->syncer, &st);
	o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "state", cw_sync_state_name(st.state));
	/* true after gap or cloud_ahead: batches stopped until restart, even
	 * while state shows a later transient backoff; or while the cloud
	 * refuses an entry (refused_seq: the queue waits there) */
	cJSON_AddBoolToObject(o, "sync_stopped", st.sync_stopped);
	/* the MQTT link: connected, disconnected or not_configured (no broker
	 * in cloud.json); commands come through the heartbeat without it */
	cJSON_AddStringToObject(o, "mqtt", cw_sync_mqtt_state_name(st.mqtt));
	if (st.refused_seq > 0) {
		cJSON_AddNumberToObject(o, "refused_seq", (double)st.refused_seq);
		cJSON_AddStringToObject(o, "refused_code", st.refused_code);
	} else {
		cJSON_AddNullToObject(o, "refused_seq");
		cJSON_AddNullToObject(o, "refused_code");
	}
	if (st.device_id[0])
		cJSON_AddStringToObject(o, "device_id", st.device_id);
	else
		cJSON_AddNullToObject(o, "device_id");
	cJSON_AddNumberToObject(o, "high_water", (double)st.high_water);
	if (st.last_ok_wall_ms > 0) {
		char when[32];
		cw_wall_format(st.last_ok_wall_ms, when);
		cJSON_AddStringToObject(o, "last_ok", when);
	} else {
		cJSON_AddNullToObject(o, "last_ok");
	}
	cJSON_AddNumberToObject(o, "outbox_depth",
				(double)cw_edge_sync_outbox_depth(ed->sync_src));
	cJSON_AddNumberToObject(o, "batches_sent", (double)st.batches_sent);
	cJSON_AddNumberToObject(o, "entries_sent", (double)st.entries_sent);
	cJSON_AddStringToObject(o, "last_error", st.last_error);
	cw_cloudcfg_health(ed->cloudcfg, o);
	return o;
}

/* `cartwisectl enroll` (POST /api/admin/cloud/enroll). */
static int hook_cloud_enroll(void *ctx, const char *code)
{
	struct edge *ed = ctx;

	if (!ed->syncer)
		return CW_ERR_NOTFOUND;
	return cw_syncer_reenroll(ed->syncer, code);
}

static cJSON *bits_array(uint32_t bits, int n)
{
	cJSON *a = cJSON_CreateArray();

	for (int i = 0; a && i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateBool((bits >> i) & 1u));
	return a;
}

static cJSON *hook_buses_json(void *ctx)
{
	struct edge *ed = ctx;
	cJSON *arr = cJSON_CreateArray();

	for (int i = 0; arr && i < ed->cfg.nbuses; i++) {
		const struct cw_bus_config *bc = &ed->cfg.buses[i];
		struct cw_bus *bus = ed->buses[i];
		cJSON *b = cJSON_CreateObject(), *st, *boards;
		struct cw_bus_stats s;

		cJSON_AddItemToArray(arr, b);
		cJSON_AddStringToObject(b, "name", bc->name);
		cJSON_AddStringToObject(b, "port", bc->port);
		cJSON_AddStringToObject(b, "protocol", cw_protocol_name(bc->protocol));
		cJSON_AddNumberToObject(b, "baud", bc->baud);
		memset(&s, 0, sizeof(s));
		if (bus)
			cw_bus_stats(bus, &s);
		st = cJSON_AddObjectToObject(b, "stats");
		cJSON_AddNumberToObject(st, "transactions", (double)s.transactions);
		cJSON_AddNumberToObject(st, "timeouts", (double)s.timeouts);
		cJSON_AddNumberToObject(st, "proto_errors", (double)s.proto_errors);
		cJSON_AddNumberToObject(st, "polls", (double)s.polls);
		cJSON_AddNumberToObject(st, "boards_online", s.boards_online);
		boards = cJSON_AddArrayToObject(b, "boards");
		for (int j = 0; j < bc->nboards; j++) {
			const struct cw_board_config *bd = &bc->boards[j];
			struct cw_board_status bs;
			cJSON *o = cJSON_CreateObject(), *locks;
			int rc = bus ? cw_bus_board_status(bus, j, &bs) : CW_ERR_OFFLINE;

			cJSON_AddItemToArray(boards, o);
			cJSON_AddNumberToObject(o, "address", bd->address);
			cJSON_AddNumberToObject(o, "locks", bd->locks);
			cJSON_AddBoolToObject(o, "online", rc == CW_OK);
			cJSON_AddStringToObject(o, "state", rc == CW_OK		    ? "online"
							    : rc == CW_ERR_AGAIN ? "unknown"
										 : "offline");
			if (rc == CW_OK) {
				cJSON_AddItemToObject(o, "hook_closed", bits_array(bs.hook_closed, bd->locks));
				if (bd->has_present_sensor)
					cJSON_AddItemToObject(o, "present",
							      bits_array(bs.present, bd->locks));
			}
			locks = cJSON_AddArrayToObject(o, "lock_counters");
			for (int l = 0; bus && l < bd->locks; l++) {
				struct cw_lock_counters lc;
				cJSON *lo;
				if (cw_bus_lock_counters(bus, j, l, &lc) != CW_OK)
					continue;
				lo = cJSON_CreateObject();
				cJSON_AddItemToArray(locks, lo);
				cJSON_AddNumberToObject(lo, "lock", l);
				cJSON_AddNumberToObject(lo, "releases", (double)lc.releases);
				cJSON_AddNumberToObject(lo, "release_failures",
							(double)lc.release_failures);
				cJSON_AddNumberToObject(lo, "sensor_changes", (double)lc.sensor_changes);
				cJSON_AddStringToObject(lo, "last_fault", lc.last_fault);
				if (lc.last_fault_wall_ms > 0) {
					char when[32];
					cw_wall_format(lc.last_fault_wall_ms, when);
					cJSON_AddStringToObject(lo, "last_fault_at", when);
				}
			}
		}
	}
	return arr;
}

/* first/last < 0: the protocol's whole address range. */
static int hook_scan(void *ctx, const char *name, int first, int last, cJSON **out)
{
	struct edge *ed = ctx;
	struct cw_scan_result res[SCAN_MAX];
	const struct cw_bus_config *bc = NULL;
	int i, n, lo, hi;
	cJSON *arr;

	*out = NULL;
	for (i = 0; i < ed->cfg.nbuses; i++) {
		if (strcmp(ed->cfg.buses[i].name, name) == 0) {
			bc = &ed->cfg.buses[i];
			break;
		}
	}
	if (!bc || !ed->buses[i])
		return CW_ERR_NOTFOUND;
	/* Kerong: board number is one nibble (0-15); Modbus slave ids 1-247. */
	lo = bc->protocol == CW_PROTO_KERONG ? 0 : 1;
	hi = bc->protocol == CW_PROTO_KERONG ? 15 : 247;
	if (first < 0) {
		first = lo;
		last = hi;
	}
	if (first < lo || last > hi || first > last)
		return CW_ERR_INVAL;
	/* counted before the gate is read, the gate closed before restart_all
	 * reads the count (both seq_cst): a scan either is seen or refused */
	atomic_fetch_add(&ed->scans, 1);
	if (atomic_load(&ed->scans_closed)) {
		atomic_fetch_sub(&ed->scans, 1);
		return CW_ERR_STATE; /* restarting with a new configuration */
	}
	cw_info("edge.scan", "bus=%s first=%d last=%d", bc->name, first, last);
	n = cw_bus_scan(ed->buses[i], first, last, res, SCAN_MAX);
	atomic_fetch_sub(&ed->scans, 1);
	if (n < 0)
		return n;
	arr = cJSON_CreateArray();
	if (!arr)
		return CW_ERR_NOMEM;
	for (int k = 0; k < n; k++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, o);
		cJSON_AddNumberToObject(o, "address", res[k].address);
		cJSON_AddStringToObject(o, "result", res[k].result == CW_OK ? "ok" : "garbled");
	}
	*out = arr;
	return CW_OK;
}

/* ---- start-up helpers ---- */

/* mkdir -p with mode for the components it creates. */
static int make_dirs(const char *path, mode_t mode)
{
	char buf[sizeof(g_edge.cfg.data_dir)];
	struct stat st;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return CW_ERR_TOOBIG;
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char saved = *p;
			*p = '\0';
			if (mkdir(buf, mode) != 0 && errno != EEXIST)
				return CW_ERR_IO;
			*p = saved;
			if (saved == '\0')
				break;
		}
	}
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return CW_ERR_IO;
	}
	return CW_OK;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: cartwise-edge --config FILE [--check-config]\n"
		"       cartwise-edge --help | --version\n"
		"\n"
		"The CartWise edge daemon: rental engine, RS485 lock buses and the local\n"
		"HTTP API of one device. See docs/OPERATIONS.md.\n"
		"\n"
		"  -c, --config FILE   edge configuration (JSON; every key in docs/OPERATIONS.md)\n"
		"      --check-config  validate the configuration, print a summary, exit\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the version\n"
		"\n"
		"Exit status: 0 stopped cleanly, 1 runtime failure, 2 bad usage or config.\n");
}

static void shutdown_all(struct edge *ed, struct cw_engine *engine)
{
	cw_api_free(ed->api); /* waits for requests in flight */
	ed->api = NULL;
	/* after the API (its handlers queue messages), before the engine */
	cw_sms_free(ed->sms);
	ed->sms = NULL;
	if (ed->cloudcfg)
		cw_cloudcfg_set_kiosk(ed->cloudcfg, NULL);
	cw_kiosk_free(ed->kiosk);
	ed->kiosk = NULL;
	/* The syncer's thread runs commands on the engine and the buses: it
	 * goes before them (a command in flight finishes its release first),
	 * and the engine stops calling it before that. */
	if (engine)
		cw_engine_set_outbox_hook(engine, NULL, NULL);
	cw_syncer_free(ed->syncer);
	ed->syncer = NULL;
	cw_edge_sync_free(ed->sync_src);
	ed->sync_src = NULL;
	for (int i = 0; i < ed->cfg.nbuses; i++) {
		cw_bus_free(ed->buses[i]); /* no more events after this */
		ed->buses[i] = NULL;
	}
	if (ed->cloudcfg)
		cw_cloudcfg_attach(ed->cloudcfg, NULL, NULL);
	atomic_store(&ed->engine, NULL);
	cw_engine_free(engine);
}

/* The kiosk's view of cw_sms (struct cw_kiosk_sms): queue durably, then
 * wait a little for the first attempt so that the customer hears at once
 * when the gateway is down. */
static int kiosk_sms_send(void *ctx, const char *to, const char *text, int64_t expires_wall_ms,
			  int wait_ms, const char **state)
{
	enum cw_sms_state st = CW_SMS_QUEUED;
	int64_t id = 0;
	int rc;

	*state = "queued";
	rc = cw_sms_enqueue(ctx, to, text, expires_wall_ms, &id);
	if (rc)
		return rc;
	rc = cw_sms_wait(ctx, id, wait_ms, &st);
	if (rc == CW_OK)
		*state = cw_sms_state_name(st);
	return CW_OK; /* queued whatever the wait saw */
}

static const char *kiosk_sms_health(void *ctx)
{
	return cw_sms_health(ctx);
}

/* The cloud's kiosk sections (cw_cloudcfg_kiosk) into the kiosk. */
static void kiosk_chain_seed(void *ctx, const unsigned char *seed)
{
	cw_kiosk_set_chain_seed(ctx, seed);
}

static int kiosk_staff(void *ctx, const struct cw_staff *s, int n)
{
	return cw_kiosk_set_cloud_staff(ctx, s, n);
}

/* How long bus i's worker may go without a turn of its loop and still be
 * alive: half the watchdog interval, but never less than an idle wait
 * (CW_BUS_ALIVE_PERIOD_MS) plus the longest turn its configuration allows
 * (cw_bus_step_max_ms: a silent board with a long response timeout and
 * retries) plus 1 s for frame times and the event callback. */
static int64_t bus_alive_limit_ms(const struct edge *ed, int i)
{
	int64_t limit = ed->wd.interval_ms / 2;
	int64_t need = CW_BUS_ALIVE_PERIOD_MS + cw_bus_step_max_ms(&ed->cfg.buses[i]) + 1000;

	return limit > need ? limit : need;
}

/* At every start: a bus whose turns may outlast the watchdog interval makes
 * a stuck worker be noticed only after that long, and a stop of its worker
 * (cw_bus_free in a configuration restart) may block the main loop past the
 * interval, so systemd would kill a healthy daemon: say which WatchdogSec it
 * needs. */
static void watchdog_check_limits(const struct edge *ed)
{
	if (ed->wd.interval_ms <= 0)
		return;
	for (int i = 0; i < ed->cfg.nbuses; i++) {
		int64_t need = bus_alive_limit_ms(ed, i);

		if (need <= ed->wd.interval_ms)
			continue;
		cw_warn("edge.watchdog_too_short",
			"bus=%s need_ms=%lld watchdog_ms=%lld msg=\"one poll step of this bus may "
			"block up to (2*(1+retries)+1)*(response_timeout_ms+inter_frame_gap_ms); "
			"raise WatchdogSec to at least %llds with a drop-in (systemctl edit "
			"cartwise-edge: [Service] WatchdogSec=%lld) or lower the bus's "
			"response_timeout_ms or retries\"",
			ed->cfg.buses[i].name, (long long)need, (long long)ed->wd.interval_ms,
			(long long)((need + 999) / 1000), (long long)((need + 999) / 1000));
	}
}

/* Buses, engine, cloud link and API for ed->cfg: at start, and again when a
 * configuration from the cloud changes buses or carts (restart_all). On
 * failure the caller runs shutdown_all(ed, *enginep). */
static int start_all(struct edge *ed, struct cw_engine **enginep)
{
	struct cw_api_hooks hooks = {.buses_json = hook_buses_json,
				     .scan = hook_scan,
				     .cloud_json = hook_cloud_json,
				     .cloud_enroll = hook_cloud_enroll,
				     .ctx = &g_edge};
	const struct cw_engine_hw hw = {.unlock = hw_unlock, .ctx = ed};
	struct cw_kiosk_sms ksms = {.send = kiosk_sms_send, .health = kiosk_sms_health};
	struct cw_engine *engine = NULL;
	struct cw_engine_config ec;
	int rc;

	*enginep = NULL;
	/* Every port first: a missing adapter is refused before anything,
	 * the database included, is touched. */
	for (int i = 0; i < ed->cfg.nbuses; i++) {
		const struct cw_bus_config *bc = &ed->cfg.buses[i];
		if (access(bc->port, F_OK) != 0) {
			cw_error("edge.bus_failed",
				 "bus=%s port=%s error=\"serial port does not exist (adapter "
				 "unplugged? wrong path in buses[%d].port?)\"",
				 bc->name, bc->port, i);
			return CW_ERR_IO;
		}
	}

	for (int i = 0; i < ed->cfg.nbuses; i++) {
		const struct cw_bus_config *bc = &ed->cfg.buses[i];
		ed->ud[i].edge = ed;
		ed->ud[i].index = i;
		rc = cw_bus_new(bc, on_bus_event, &ed->ud[i], &ed->buses[i]);
		if (rc) {
			cw_error("edge.bus_failed", "bus=%s port=%s err=%s", bc->name, bc->port,
				 cw_errname(rc));
			return rc;
		}
	}
	watchdog_check_limits(ed);

	memset(&ec, 0, sizeof(ec));
	if (snprintf(ec.db_path, sizeof(ec.db_path), "%s/edge.db", ed->cfg.data_dir) >=
	    (int)sizeof(ec.db_path)) {
		cw_error("edge.data_dir_failed", "path=%s error=\"path too long\"", ed->cfg.data_dir);
		return CW_ERR_TOOBIG;
	}
	/* same sizes in both structs, NUL-terminated by the config parser */
	_Static_assert(sizeof(ec.chain_id) == sizeof(ed->cfg.chain_id), "chain_id size");
	_Static_assert(sizeof(ec.branch_id) == sizeof(ed->cfg.branch_id), "branch_id size");
	_Static_assert(sizeof(ec.device_id) == sizeof(ed->cfg.device_id), "device_id size");
	memcpy(ec.chain_id, ed->cfg.chain_id, sizeof(ec.chain_id));
	memcpy(ec.branch_id, ed->cfg.branch_id, sizeof(ec.branch_id));
	memcpy(ec.device_id, ed->cfg.device_id, sizeof(ec.device_id));
	ec.rules = ed->cfg.rules;
	ec.ncarts = ed->cfg.ncarts;
	ec.carts = ed->cfg.carts;
	rc = cw_engine_new(&ec, &hw, enginep);
	engine = *enginep;
	if (rc) {
		cw_error("edge.engine_failed", "db=%s err=%s", ec.db_path, cw_errname(rc));
		return rc;
	}

	/* Descriptive data for the controllers table; boards without any
	 * configured cart are not in the engine (CW_ERR_NOTFOUND is fine). */
	for (int i = 0; i < ed->cfg.nbuses; i++) {
		const struct cw_bus_config *bc = &ed->cfg.buses[i];
		for (int j = 0; j < bc->nboards; j++) {
			rc = cw_engine_set_controller_info(engine, i, j, bc->name,
							   bc->boards[j].address,
							   cw_protocol_name(bc->protocol));
			if (rc != CW_OK && rc != CW_ERR_NOTFOUND)
				cw_warn("edge.controller_info_failed", "bus=%s board=%d err=%s",
					bc->name, bc->boards[j].address, cw_errname(rc));
		}
	}

	/* Messages left queued by the previous run go out now. */
	rc = cw_sms_new(&ed->cfg.sms, engine, &ed->sms);
	if (rc == CW_OK)
		rc = cw_sms_start(ed->sms);
	if (rc) {
		cw_error("edge.sms_failed", "provider=%s err=%s",
			 cw_sms_provider_name(ed->cfg.sms.provider), cw_errname(rc));
		return rc;
	}

	/* The cloud link: its own connection to the database, a syncer thread
	 * (started once the API is up), woken by every commit to the outbox. */
	if (ed->cfg.cloud_enabled) {
		struct cw_sync_source src;

		read_serial(ed->cfg.cloud.serial_number, sizeof(ed->cfg.cloud.serial_number));
		rc = cw_edge_sync_new(ec.db_path, ed->cfg.data_dir, engine, &ed->sync_src);
		if (rc == CW_OK) {
			if (ed->cloudcfg)
				cw_edge_sync_set_cloudcfg(ed->sync_src, ed->cloudcfg);
			cw_edge_sync_source(ed->sync_src, &src);
			rc = cw_syncer_new(&ed->cfg.cloud, &src, &ed->syncer);
		}
		if (rc) {
			cw_error("edge.cloud_failed", "url=%s err=%s", ed->cfg.cloud.url,
				 cw_errname(rc));
			return rc;
		}
		cw_engine_set_outbox_hook(engine, on_outbox, ed->syncer);
	}
	/* The kiosk, before the attach below hands it the cloud's staff list
	 * and chain key (also those stored in cloud-config.json). */
	ksms.ctx = ed->sms;
	rc = cw_kiosk_new(&ed->cfg.kiosk, engine, ed->cfg.sms.provider == CW_SMS_NONE ? NULL : &ksms,
			  ed->cfg.data_dir, ed->cfg.chain_id, ed->cfg.device_id, &ed->kiosk);
	if (rc) {
		cw_error("edge.kiosk_failed", "err=%s", cw_errname(rc));
		return rc;
	}
	hooks.kiosk = ed->kiosk;
	if (ed->cloudcfg)
		cw_cloudcfg_set_kiosk(ed->cloudcfg, &(struct cw_cloudcfg_kiosk){
							    .chain_seed = kiosk_chain_seed,
							    .staff = kiosk_staff,
							    .ctx = ed->kiosk});
	/* before the syncer starts: it offers the cloud's versions to it */
	if (ed->cloudcfg) {
		rc = cw_cloudcfg_attach(ed->cloudcfg, engine, &ed->cfg);
		if (rc) {
			cw_error("edge.cloud_config_failed", "err=%s", cw_errname(rc));
			return rc;
		}
	}
	atomic_store(&ed->engine, engine);

	rc = cw_api_new(ed->cfg.api_bind, ed->cfg.api_port, ed->cfg.admin_token, engine,
			&hooks, &ed->api);
	if (rc) {
		cw_error("edge.api_failed", "bind=%s port=%d err=%s", ed->cfg.api_bind,
			 ed->cfg.api_port, cw_errname(rc));
		return rc;
	}
	{
		char status[sizeof(ed->cfg.api_bind) + 64];
		bool v6 = strchr(ed->cfg.api_bind, ':') != NULL;

		snprintf(status, sizeof(status), "api=http://%s%s%s:%d carts=%d buses=%d",
			 v6 ? "[" : "", ed->cfg.api_bind, v6 ? "]" : "", cw_api_port(ed->api),
			 ed->cfg.ncarts, ed->cfg.nbuses);
		cw_info("edge.ready", "%s", status);
		cw_service_ready(status);
	}
	if (ed->syncer) {
		rc = cw_syncer_start(ed->syncer);
		if (rc) {
			cw_error("edge.cloud_failed", "url=%s err=%s", ed->cfg.cloud.url,
				 cw_errname(rc));
			return rc;
		}
		cw_info("edge.cloud", "url=%s branch_code=%s", ed->cfg.cloud.url,
			ed->cfg.cloud.branch_code);
	}

	return CW_OK;
}

/* systemd's watchdog: WATCHDOG=1 when due, but only while every bus worker
 * is alive, i.e. its loop turned (a transaction or an idle wake-up,
 * cw_bus_alive_ms) within its limit (bus_alive_limit_ms). A worker stuck in
 * a serial call stops the feed and systemd restarts the daemon; one sleeping
 * through an offline board's backoff wakes every CW_BUS_ALIVE_PERIOD_MS and
 * stays healthy. Between the buses of restart_all (none running) nothing is
 * stuck. Called by the main loop and between the steps of restart_all. */
static void watchdog_feed(struct edge *ed)
{
	int64_t now = cw_mono_ms();

	if (!cw_watchdog_due(&ed->wd))
		return;
	for (int i = 0; i < ed->cfg.nbuses; i++) {
		int64_t age, limit;

		if (!ed->buses[i])
			continue;
		limit = bus_alive_limit_ms(ed, i);
		age = now - cw_bus_alive_ms(ed->buses[i]);
		if (age <= limit)
			continue;
		if (ed->starved_bus != i)
			cw_error("edge.watchdog_starved",
				 "bus=%s age_ms=%lld limit_ms=%lld action=\"watchdog not fed: "
				 "systemd restarts the daemon\"",
				 ed->cfg.buses[i].name, (long long)age, (long long)limit);
		ed->starved_bus = i;
		cw_watchdog_withhold(&ed->wd);
		return;
	}
	if (ed->starved_bus >= 0)
		cw_info("edge.watchdog_fed", "reason=\"every bus worker is alive again\"");
	ed->starved_bus = -1;
	cw_watchdog_feed(&ed->wd);
}

/* A configuration from the cloud changed buses or carts: everything but the
 * process restarts with it at this safe point (no release in flight, no bus
 * scan: the API is closed first and waits for its requests, and a scan's
 * request lasts the whole scan, during which the watchdog would not be fed).
 * While a scan runs it returns CW_ERR_AGAIN having stopped nothing (tried
 * again at the next tick). If it cannot start (a port that vanished
 * meanwhile), the previous configuration runs again and the version counts
 * as refused (docs/ARCHITECTURE.md). No newer version is accepted from
 * cw_cloudcfg_pending until cw_cloudcfg_restarted. */
static int restart_all(struct edge *ed, struct cw_engine **enginep,
		       const struct cw_edge_config *next)
{
	struct cw_edge_config *prev;
	int rc;

	/* the gate first, then the count (see hook_scan) */
	atomic_store(&ed->scans_closed, true);
	if (atomic_load(&ed->scans) > 0) {
		atomic_store(&ed->scans_closed, false);
		if (!ed->restart_waits)
			cw_info("edge.restart_waiting", "reason=\"a bus scan is running\"");
		ed->restart_waits = true;
		return CW_ERR_AGAIN;
	}
	ed->restart_waits = false;
	prev = malloc(sizeof(*prev));
	if (!prev) {
		atomic_store(&ed->scans_closed, false);
		return CW_ERR_NOMEM; /* tried again at the next tick */
	}
	*prev = ed->cfg;
	cw_info("edge.restarting", "reason=\"configuration from the cloud changed buses or carts\"");
	cw_service_status("restarting with a new configuration from the cloud");
	shutdown_all(ed, *enginep);
	*enginep = NULL;
	/* the old API is gone: the next one's scans may run */
	atomic_store(&ed->scans_closed, false);
	watchdog_feed(ed); /* progress: stopped */
	ed->cfg = *next;
	rc = start_all(ed, enginep);
	watchdog_feed(ed);
	if (rc == CW_OK) {
		cw_cloudcfg_restarted(ed->cloudcfg, true, NULL);
		/* the revoked tokens of the version now running */
		rc = cw_cloudcfg_attach(ed->cloudcfg, *enginep, &ed->cfg);
		free(prev);
		return rc;
	}
	cw_error("edge.restart_failed", "err=%s action=\"previous configuration\"",
		 cw_errname(rc));
	shutdown_all(ed, *enginep);
	*enginep = NULL;
	watchdog_feed(ed);
	ed->cfg = *prev;
	free(prev);
	rc = start_all(ed, enginep);
	/* after the start, so that the refusal reaches the outbox */
	cw_cloudcfg_restarted(ed->cloudcfg, false, "the engine could not start with it (see the "
						   "device's log)");
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct edge *ed = &g_edge;
	struct cw_engine *engine = NULL;
	struct cw_edge_config *next = NULL;
	const char *config_path = NULL;
	bool check_only = false;
	enum cw_log_level lvl;
	char err[1024];
	sigset_t sigs;
	int opt, rc, status = 1;
	int64_t next_tick;

	while ((opt = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'k':
			check_only = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("cartwise-edge %s\n", CW_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!config_path || optind != argc) {
		fprintf(stderr, "cartwise-edge: %s\n",
			config_path ? "unexpected argument" : "--config FILE is required");
		usage(stderr);
		return 2;
	}

	rc = cw_edge_config_load(config_path, &ed->cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "cartwise-edge: bad config: %s\n", err);
		return 2;
	}
	if (check_only) {
		printf("config ok: %s branch=%s device=%s buses=%d carts=%d api=%s:%d cloud=%s "
		       "sms=%s\n",
		       config_path, ed->cfg.branch_id, ed->cfg.device_id, ed->cfg.nbuses,
		       ed->cfg.ncarts, ed->cfg.api_bind, ed->cfg.api_port,
		       ed->cfg.cloud_enabled ? ed->cfg.cloud.url : "none",
		       cw_sms_provider_name(ed->cfg.sms.provider));
		return 0;
	}
	if (cw_log_level_parse(ed->cfg.log_level, &lvl) == CW_OK)
		cw_log_set_level(lvl);
	if (sodium_init() < 0) {
		cw_error("edge.sodium_failed", NULL);
		return 1;
	}

	/* Signals are taken synchronously by the main loop (sigtimedwait), so
	 * every thread started below inherits them blocked. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	cw_info("edge.start", "version=%s config=%s branch=%s device=%s", CW_VERSION, config_path,
		ed->cfg.branch_id, ed->cfg.device_id);
	if (make_dirs(ed->cfg.data_dir, 0750) != CW_OK) {
		cw_error("edge.data_dir_failed", "path=%s error=\"%s\"", ed->cfg.data_dir,
			 strerror(errno));
		goto out;
	}

	/* The cloud's last accepted configuration, merged over the file's
	 * sections (docs/OPERATIONS.md "cloud-config.json"). */
	if (ed->cfg.cloud_enabled) {
		if (cw_cloudcfg_new(config_path, ed->cfg.data_dir, &ed->cloudcfg) != CW_OK)
			goto out;
		err[0] = '\0';
		if (cw_cloudcfg_start(ed->cloudcfg, &ed->cfg, err, sizeof(err)) != CW_OK)
			/* ours, written atomically: damaged by hand at most.
			 * The file alone runs; the next version replaces it. */
			cw_error("edge.cloud_config_unreadable",
				 "error=\"%s\" action=\"running on the config file alone\"", err);
		next = malloc(sizeof(*next));
		if (!next)
			goto out;
	}

	cw_watchdog_init(&ed->wd);
	ed->starved_bus = -1;
	if (start_all(ed, &engine) != CW_OK)
		goto out;

	next_tick = cw_mono_ms() + TICK_MS;
	unsigned kiosk_ticks = 0;
	for (;;) {
		int64_t wait = next_tick - cw_mono_ms();
		struct timespec ts;
		int sig;

		watchdog_feed(ed);
		wait = cw_watchdog_wait_ms(&ed->wd, wait);
		if (next_tick - cw_mono_ms() <= 0) {
			/* a configuration waiting for a restart, at a safe point */
			/* releasing first: pending holds offers until restarted
			 * (restart_all gives up, stopping nothing, under a scan) */
			if (next && !cw_engine_releasing(engine) &&
			    cw_cloudcfg_pending(ed->cloudcfg, next) &&
			    restart_all(ed, &engine, next) != CW_OK && !engine)
				goto out;
			cw_engine_tick(engine);
			if (ed->kiosk && ++kiosk_ticks % 60 == 0)
				cw_kiosk_tick(ed->kiosk);
			next_tick += TICK_MS;
			/* after a long stall (suspend, debugger) do not burst */
			if (next_tick < cw_mono_ms())
				next_tick = cw_mono_ms() + TICK_MS;
			continue;
		}
		ts.tv_sec = (time_t)(wait / 1000);
		ts.tv_nsec = (long)(wait % 1000) * 1000000L;
		sig = sigtimedwait(&sigs, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			cw_info("edge.stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
			cw_service_stopping();
			break;
		}
	}
	status = 0;
out:
	shutdown_all(ed, engine);
	cw_cloudcfg_free(ed->cloudcfg);
	free(next);
	if (status == 0)
		cw_info("edge.stop", NULL);
	else
		cw_error("edge.exit", "status=%d", status);
	return status;
}
