/* cw_config.c - the edge daemon's JSON configuration.
 *
 * Strict by design (BRIEF.md §2): every key is known, every value is checked
 * for type and range, and the first problem found is reported with the full
 * key path ("buses[0].boards[1].locks: expected an integer 1..32, got 40").
 * Every key, its type, range and default is documented in docs/OPERATIONS.md;
 * keep the two in step. */
#include "cw_config.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_error.h"
#include "cw_file.h"
#include "cw_jsoncfg.h"
#include "cw_log.h"
#include "cw_version.h"

/* A config is a few kilobytes; anything this big is not a config. */
#define CW_CONFIG_MAX_BYTES (1024 * 1024)
#define CW_CART_NUMBER_MAX 99999

/* ---- sections ---- */

/* The admin token: inline (api.admin_token) or the first line of a file
 * (api.admin_token_file), exactly one of them. Checked by hand: no message
 * may echo the token. */
static int parse_admin_token(struct cw_jsoncfg *p, const cJSON *api, struct cw_edge_config *c)
{
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(api, "admin_token");
	bool from_file = cJSON_HasObjectItem(api, "admin_token_file");
	size_t cap = sizeof(c->admin_token), n;
	char why[700];
	int rc;

	if (tok && from_file)
		return cw_jsoncfg_fail(p, NULL,
				       "admin_token and admin_token_file are both given; keep one");
	if (from_file) {
		if ((rc = cw_jsoncfg_get_str(p, api, "admin_token_file", CW_JSONCFG_REQUIRED,
					     c->admin_token_file, sizeof(c->admin_token_file))))
			return rc;
		if (cw_file_read_token(c->admin_token_file, CW_ADMIN_TOKEN_MIN, c->admin_token, cap,
				       why, sizeof(why)) != CW_OK)
			return cw_jsoncfg_fail(p, "admin_token_file", "%s", why);
		return CW_OK;
	}
	if (!tok)
		return cw_jsoncfg_fail(p, "admin_token",
				       "missing (expected a secret string of %d-%zu characters, or "
				       "admin_token_file: the path of a file holding it)",
				       CW_ADMIN_TOKEN_MIN, cap - 1);
	if (!cJSON_IsString(tok) || !tok->valuestring) {
		char got[64];
		return cw_jsoncfg_fail(p, "admin_token",
				       "expected a secret string of %d-%zu characters, got %s",
				       CW_ADMIN_TOKEN_MIN, cap - 1,
				       cw_jsoncfg_describe(tok, got, sizeof(got)));
	}
	n = strlen(tok->valuestring);
	if (n < CW_ADMIN_TOKEN_MIN || n >= cap)
		return cw_jsoncfg_fail(
			p, "admin_token",
			"expected a secret string of %d-%zu characters, got %zu characters",
			CW_ADMIN_TOKEN_MIN, cap - 1, n);
	/* It travels in an HTTP header: printable ASCII without spaces. */
	for (const unsigned char *s = (const unsigned char *)tok->valuestring; *s; s++) {
		if (*s <= 0x20 || *s >= 0x7f)
			return cw_jsoncfg_fail(p, "admin_token",
					       "only printable ASCII characters without spaces "
					       "are allowed");
	}
	memcpy(c->admin_token, tok->valuestring, n + 1);
	return CW_OK;
}

static int parse_api(struct cw_jsoncfg *p, const cJSON *api, struct cw_edge_config *c)
{
	static const char *const keys[] = {"bind", "port", "admin_token", "admin_token_file",
					   NULL};
	unsigned char addr[sizeof(struct in6_addr)];
	size_t mark = cw_jsoncfg_push(p, "api");
	int rc;

	if ((rc = cw_jsoncfg_check_keys(p, api, keys)))
		goto out;
	if ((rc = cw_jsoncfg_get_str(p, api, "bind", 0, c->api_bind, sizeof(c->api_bind))))
		goto out;
	if (inet_pton(AF_INET, c->api_bind, addr) != 1 && inet_pton(AF_INET6, c->api_bind, addr) != 1) {
		rc = cw_jsoncfg_fail(p, "bind",
				     "expected an IPv4 or IPv6 address such as \"127.0.0.1\" or "
				     "\"0.0.0.0\" (host names are not resolved)");
		goto out;
	}
	if ((rc = cw_jsoncfg_get_int(p, api, "port", 0, 65535, false, &c->api_port)))
		goto out;
	rc = parse_admin_token(p, api, c);
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

/* https://host[:port][/path], no credentials, query or fragment: the URL
 * is logged, and the syncer appends /api/... to it. http:// only with
 * insecure_http (tests on loopback). */
static int check_cloud_url(struct cw_jsoncfg *p, char *url, bool insecure)
{
	const char *rest;
	size_t n;

	if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (strncmp(url, "http://", 7) == 0 && insecure)
		rest = url + 7;
	else if (strncmp(url, "http://", 7) == 0)
		return cw_jsoncfg_fail(p, "url",
				       "http:// is refused (the device token would travel in clear); "
				       "use https://, or set \"insecure_http\": true for a test "
				       "cloud");
	else
		return cw_jsoncfg_fail(p, "url", "expected an URL starting with https://");
	if (!*rest || *rest == '/' || *rest == ':')
		return cw_jsoncfg_fail(p, "url", "expected a host name after the scheme");
	for (const char *s = rest; *s; s++) {
		if (*s == ' ' || *s == '@' || *s == '?' || *s == '#' || *s == '\\')
			return cw_jsoncfg_fail(p, "url",
					       "expected https://host[:port][/path] without spaces, "
					       "credentials, query or fragment");
	}
	/* One form only: without the trailing slash. */
	n = strlen(url);
	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
	return CW_OK;
}

/* "aa:bb:cc:dd:ee:ff", hex digits, lower or upper case. */
static bool mac_ok(const char *m)
{
	if (strlen(m) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2) {
			if (m[i] != ':')
				return false;
		} else if (!strchr("0123456789abcdefABCDEF", m[i])) {
			return false;
		}
	}
	return true;
}

static int parse_cloud(struct cw_jsoncfg *p, const cJSON *cl, struct cw_sync_config *out)
{
	static const char *const keys[] = {"url",        "branch_code",     "enrollment_code",
					   "ca_file",    "heartbeat_s",     "batch_max_entries",
					   "batch_max_bytes", "mac_address", "insecure_http",
					   "backoff_max_ms", NULL};
	size_t mark = cw_jsoncfg_push(p, "cloud");
	int bytes = (int)out->batch_max_bytes;
	int rc;

	if ((rc = cw_jsoncfg_check_keys(p, cl, keys)) ||
	    (rc = cw_jsoncfg_get_bool(p, cl, "insecure_http", &out->insecure_http)) ||
	    (rc = cw_jsoncfg_get_str(p, cl, "url", CW_JSONCFG_REQUIRED, out->url,
				     sizeof(out->url))) ||
	    (rc = check_cloud_url(p, out->url, out->insecure_http)) ||
	    (rc = cw_jsoncfg_get_str(p, cl, "branch_code", CW_JSONCFG_REQUIRED, out->branch_code,
				     sizeof(out->branch_code))) ||
	    /* a secret: the getter never echoes string contents */
	    (rc = cw_jsoncfg_get_str(p, cl, "enrollment_code", CW_JSONCFG_EMPTY_OK,
				     out->enrollment_code, sizeof(out->enrollment_code))) ||
	    (rc = cw_jsoncfg_get_str(p, cl, "ca_file", 0, out->ca_file, sizeof(out->ca_file))) ||
	    (rc = cw_jsoncfg_get_int(p, cl, "heartbeat_s", 5, 3600, false, &out->heartbeat_s)) ||
	    /* the cloud takes at most 1000 entries and 1 MiB per batch (docs/SYNC.md) */
	    (rc = cw_jsoncfg_get_int(p, cl, "batch_max_entries", 1, 1000, false,
				     &out->batch_max_entries)) ||
	    (rc = cw_jsoncfg_get_int(p, cl, "batch_max_bytes", 4096, 1024 * 1024, false, &bytes)) ||
	    (rc = cw_jsoncfg_get_str(p, cl, "mac_address", 0, out->mac_address,
				     sizeof(out->mac_address))) ||
	    (rc = cw_jsoncfg_get_int(p, cl, "backoff_max_ms", 1000, 3600 * 1000, false,
				     &out->backoff_cap_ms)))
		goto out;
	out->batch_max_bytes = (size_t)bytes;
	if (out->ca_file[0] && out->ca_file[0] != '/') {
		rc = cw_jsoncfg_fail(p, "ca_file", "expected an absolute path");
		goto out;
	}
	if (out->mac_address[0] && !mac_ok(out->mac_address)) {
		rc = cw_jsoncfg_fail(p, "mac_address", "expected six hex pairs such as "
						       "\"b8:27:eb:12:34:56\"");
		goto out;
	}
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

static void cloud_defaults(struct cw_sync_config *c)
{
	memset(c, 0, sizeof(*c));
	c->heartbeat_s = 30;
	c->batch_max_entries = 500;
	c->batch_max_bytes = 512 * 1024;
}

static int parse_rules(struct cw_jsoncfg *p, const cJSON *r, struct cw_rules *out)
{
	static const char *const keys[] = {"rental_minutes", "one_per_phone", "grace_minutes",
					   "take_timeout_s", "return_timeout_s", NULL};
	size_t mark = cw_jsoncfg_push(p, "rules");
	int rc;

	if ((rc = cw_jsoncfg_check_keys(p, r, keys)) ||
	    (rc = cw_jsoncfg_get_int(p, r, "rental_minutes", 1, 7 * 24 * 60, false,
				     &out->rental_minutes)) ||
	    (rc = cw_jsoncfg_get_bool(p, r, "one_per_phone", &out->one_per_phone)) ||
	    (rc = cw_jsoncfg_get_int(p, r, "grace_minutes", 0, 24 * 60, false,
				     &out->grace_minutes)) ||
	    (rc = cw_jsoncfg_get_int(p, r, "take_timeout_s", 5, 3600, false,
				     &out->take_timeout_s)) ||
	    (rc = cw_jsoncfg_get_int(p, r, "return_timeout_s", 30, 86400, false,
				     &out->return_timeout_s)))
		goto out;
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

static int parse_board(struct cw_jsoncfg *p, const cJSON *jb, enum cw_protocol proto,
		       struct cw_board_config *b)
{
	static const char *const keys[] = {"address",         "locks",     "pulse_ms",
					   "has_present_sensor", "coil_base", "hook_input_base",
					   "present_input_base", NULL};
	bool kerong = proto == CW_PROTO_KERONG;
	int address = 0, locks = 0, rc;
	char got[64];

	if (!cJSON_IsObject(jb))
		return cw_jsoncfg_fail(p, NULL, "expected an object, got %s",
				       cw_jsoncfg_describe(jb, got, sizeof(got)));
	if ((rc = cw_jsoncfg_check_keys(p, jb, keys)))
		return rc;
	/* Kerong: the board number is the high nibble of ADDR and the lock the
	 * low nibble (BRIEF.md §3), so 0-15 boards of at most 16 locks. Modbus:
	 * slave ids 1-247 (Modbus over serial line spec §2.2). */
	if ((rc = cw_jsoncfg_get_int(p, jb, "address", kerong ? 0 : 1, kerong ? 15 : 247, true,
				     &address)))
		return rc;
	if ((rc = cw_jsoncfg_get_int(p, jb, "locks", 1, kerong ? 16 : CW_MAX_LOCKS_PER_BOARD, true,
				     &locks)))
		return rc;
	cw_board_config_defaults(b, address, locks);
	if ((rc = cw_jsoncfg_get_int(p, jb, "pulse_ms", 10, 10000, false, &b->pulse_ms)) ||
	    (rc = cw_jsoncfg_get_bool(p, jb, "has_present_sensor", &b->has_present_sensor)) ||
	    (rc = cw_jsoncfg_get_int(p, jb, "coil_base", 0, 65536 - locks, false, &b->coil_base)) ||
	    (rc = cw_jsoncfg_get_int(p, jb, "hook_input_base", 0, 65536 - locks, false,
				     &b->hook_input_base)) ||
	    (rc = cw_jsoncfg_get_int(p, jb, "present_input_base", 0, 65536 - locks, false,
				     &b->present_input_base)))
		return rc;
	if (kerong) {
		/* The Kerong frame has no register map: refuse settings that would
		 * be silently ignored. */
		static const char *const modbus_only[] = {"coil_base", "hook_input_base",
							  "present_input_base", NULL};
		for (const char *const *k = modbus_only; *k; k++) {
			if (cJSON_GetObjectItemCaseSensitive(jb, *k))
				return cw_jsoncfg_fail(p, *k, "only valid for protocol \"modbus\"");
		}
	}
	return CW_OK;
}

static int parse_bus(struct cw_jsoncfg *p, const cJSON *jb, int index, struct cw_bus_config *bus)
{
	static const char *const keys[] = {
		"name",     "port",    "protocol",           "baud",
		"parity",   "retries", "response_timeout_ms", "inter_frame_gap_ms",
		"poll_interval_ms",   "confirm_timeout_ms",  "offline_after",
		"offline_backoff_max_ms", "boards", NULL};
	static const int bauds[] = {1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200};
	const cJSON *it, *boards;
	char got[64];
	int rc, i;

	if (!cJSON_IsObject(jb))
		return cw_jsoncfg_fail(p, NULL, "expected an object, got %s",
				       cw_jsoncfg_describe(jb, got, sizeof(got)));
	cw_bus_config_defaults(bus);
	snprintf(bus->name, sizeof(bus->name), "bus%d", index);
	if ((rc = cw_jsoncfg_check_keys(p, jb, keys)) ||
	    (rc = cw_jsoncfg_get_str(p, jb, "name", CW_JSONCFG_IDENT, bus->name,
				     sizeof(bus->name))) ||
	    (rc = cw_jsoncfg_get_str(p, jb, "port", CW_JSONCFG_REQUIRED, bus->port,
				     sizeof(bus->port))))
		return rc;
	it = cJSON_GetObjectItemCaseSensitive(jb, "protocol");
	if (!it)
		return cw_jsoncfg_fail(p, "protocol",
				       "missing (expected \"modbus\" or \"kerong\")");
	if (!cJSON_IsString(it) || cw_protocol_parse(it->valuestring, &bus->protocol) != CW_OK ||
	    (strcmp(it->valuestring, "modbus") != 0 && strcmp(it->valuestring, "kerong") != 0))
		return cw_jsoncfg_fail(p, "protocol", "expected \"modbus\" or \"kerong\", got %s",
				       cw_jsoncfg_describe(it, got, sizeof(got)));
	if ((rc = cw_jsoncfg_get_int(p, jb, "baud", 1200, 115200, false, &bus->baud)))
		return rc;
	for (i = 0; i < (int)(sizeof(bauds) / sizeof(bauds[0])); i++) {
		if (bauds[i] == bus->baud)
			break;
	}
	if (i == (int)(sizeof(bauds) / sizeof(bauds[0])))
		return cw_jsoncfg_fail(
			p, "baud",
			"expected one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, "
			"got %d",
			bus->baud);
	it = cJSON_GetObjectItemCaseSensitive(jb, "parity");
	if (it) {
		if (!cJSON_IsString(it) || strlen(it->valuestring) != 1 ||
		    !strchr("NEO", it->valuestring[0]))
			return cw_jsoncfg_fail(p, "parity",
					       "expected \"N\", \"E\" or \"O\", got %s",
					       cw_jsoncfg_describe(it, got, sizeof(got)));
		bus->parity = it->valuestring[0];
	}
	if ((rc = cw_jsoncfg_get_int(p, jb, "response_timeout_ms", 1, 10000, false,
				     &bus->response_timeout_ms)) ||
	    (rc = cw_jsoncfg_get_int(p, jb, "retries", 0, 10, false, &bus->retries)) ||
	    (rc = cw_jsoncfg_get_int(p, jb, "inter_frame_gap_ms", 0, 1000, false,
				     &bus->inter_frame_gap_ms)) ||
	    (rc = cw_jsoncfg_get_int(p, jb, "poll_interval_ms", 0, 60000, false,
				     &bus->poll_interval_ms)) ||
	    (rc = cw_jsoncfg_get_int(p, jb, "confirm_timeout_ms", 50, 60000, false,
				     &bus->confirm_timeout_ms)) ||
	    (rc = cw_jsoncfg_get_int(p, jb, "offline_after", 1, 1000, false,
				     &bus->offline_after)) ||
	    (rc = cw_jsoncfg_get_int(p, jb, "offline_backoff_max_ms", 10, 3600000, false,
				     &bus->offline_backoff_max_ms)))
		return rc;
	if ((rc = cw_jsoncfg_get_container(p, jb, "boards", true, true, &boards)))
		return rc;
	bus->nboards = cJSON_GetArraySize(boards);
	if (bus->nboards < 1 || bus->nboards > CW_MAX_BOARDS_PER_BUS)
		return cw_jsoncfg_fail(p, "boards", "expected 1..%d boards, got %d",
				       CW_MAX_BOARDS_PER_BUS, bus->nboards);
	i = 0;
	cJSON_ArrayForEach(it, boards) {
		size_t mark = cw_jsoncfg_push(p, ".boards[%d]", i);
		rc = parse_board(p, it, bus->protocol, &bus->boards[i]);
		if (rc == CW_OK) {
			for (int j = 0; j < i; j++) {
				if (bus->boards[j].address == bus->boards[i].address) {
					rc = cw_jsoncfg_fail(
						p, "address",
						"%d is already used by boards[%d] on this bus",
						bus->boards[i].address, j);
					break;
				}
			}
		}
		cw_jsoncfg_pop(p, mark);
		if (rc)
			return rc;
		i++;
	}
	return CW_OK;
}

static int find_slot_owner(const struct cw_edge_config *c, int n, int bus, int board, int lock)
{
	for (int i = 0; i < n; i++) {
		if (c->carts[i].bus_index == bus && c->carts[i].board_index == board &&
		    c->carts[i].lock == lock)
			return i;
	}
	return -1;
}

static int parse_cart(struct cw_jsoncfg *p, const cJSON *jc, int index, struct cw_edge_config *c)
{
	static const char *const keys[] = {"number", "bus", "board", "lock", NULL};
	struct cw_cart_map *m = &c->carts[index];
	char busname[sizeof(c->buses[0].name)];
	const struct cw_bus_config *bus = NULL;
	int address = -1, rc, i;
	char got[64];

	if (!cJSON_IsObject(jc))
		return cw_jsoncfg_fail(p, NULL, "expected an object, got %s",
				       cw_jsoncfg_describe(jc, got, sizeof(got)));
	if ((rc = cw_jsoncfg_check_keys(p, jc, keys)) ||
	    (rc = cw_jsoncfg_get_int(p, jc, "number", 1, CW_CART_NUMBER_MAX, true, &m->number)))
		return rc;
	for (i = 0; i < index; i++) {
		if (c->carts[i].number == m->number)
			return cw_jsoncfg_fail(p, "number",
					       "cart %d is already defined by carts[%d]", m->number,
					       i);
	}
	if ((rc = cw_jsoncfg_get_str(p, jc, "bus", CW_JSONCFG_IDENT | CW_JSONCFG_REQUIRED, busname,
				     sizeof(busname))))
		return rc;
	for (i = 0; i < c->nbuses; i++) {
		if (strcmp(c->buses[i].name, busname) == 0) {
			bus = &c->buses[i];
			break;
		}
	}
	if (!bus)
		return cw_jsoncfg_fail(p, "bus", "no bus named \"%s\" in buses", busname);
	m->bus_index = i;
	if ((rc = cw_jsoncfg_get_int(p, jc, "board", 0, 247, true, &address)))
		return rc;
	for (i = 0; i < bus->nboards; i++) {
		if (bus->boards[i].address == address)
			break;
	}
	if (i == bus->nboards)
		return cw_jsoncfg_fail(p, "board", "no board with address %d on bus \"%s\"",
				       address, busname);
	m->board_index = i;
	if ((rc = cw_jsoncfg_get_int(p, jc, "lock", 0, CW_MAX_LOCKS_PER_BOARD - 1, true, &m->lock)))
		return rc;
	if (m->lock >= bus->boards[i].locks)
		return cw_jsoncfg_fail(p, "lock", "board %d on bus \"%s\" has locks 0..%d, got %d",
				       address, busname, bus->boards[i].locks - 1, m->lock);
	i = find_slot_owner(c, index, m->bus_index, m->board_index, m->lock);
	if (i >= 0)
		return cw_jsoncfg_fail(p, "lock", "this slot is already cart %d (carts[%d])",
				       c->carts[i].number, i);
	return CW_OK;
}

static int parse_carts(struct cw_jsoncfg *p, const cJSON *carts, struct cw_edge_config *c)
{
	const cJSON *it;
	int n = cJSON_GetArraySize(carts), i = 0, rc;

	if (n < 1 || n > CW_MAX_CARTS)
		return cw_jsoncfg_fail(p, "carts", "expected 1..%d carts, got %d", CW_MAX_CARTS, n);
	cJSON_ArrayForEach(it, carts) {
		size_t mark = cw_jsoncfg_push(p, "carts[%d]", i);
		rc = parse_cart(p, it, i, c);
		cw_jsoncfg_pop(p, mark);
		if (rc)
			return rc;
		i++;
	}
	c->ncarts = n;
	return CW_OK;
}

/* Numbers every lock of every board 1..N in config order. */
static int auto_carts(struct cw_jsoncfg *p, struct cw_edge_config *c)
{
	int n = 0;

	for (int b = 0; b < c->nbuses; b++) {
		for (int d = 0; d < c->buses[b].nboards; d++) {
			for (int l = 0; l < c->buses[b].boards[d].locks; l++) {
				if (n == CW_MAX_CARTS)
					return cw_jsoncfg_fail(
						p, "buses",
						"more than %d locks in total; list at most %d "
						"carts explicitly under \"carts\"",
						CW_MAX_CARTS, CW_MAX_CARTS);
				c->carts[n].number = n + 1;
				c->carts[n].bus_index = b;
				c->carts[n].board_index = d;
				c->carts[n].lock = l;
				n++;
			}
		}
	}
	c->ncarts = n;
	return CW_OK;
}

static void config_defaults(struct cw_edge_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->log_level, sizeof(c->log_level), "info");
	snprintf(c->api_bind, sizeof(c->api_bind), "127.0.0.1");
	c->api_port = 8080;
	cw_rules_defaults(&c->rules);
	cw_sms_config_defaults(&c->sms);
	cloud_defaults(&c->cloud);
	cw_kiosk_config_defaults(&c->kiosk);
}

int cw_edge_config_parse(const char *json, size_t len, struct cw_edge_config *out, char *errbuf,
			 size_t errlen)
{
	static const char *const keys[] = {"chain_id", "branch_id", "device_id", "device_name",
					   "data_dir", "log_level", "api",       "rules",
					   "buses",    "carts",    "cloud",     "kiosk",
					   "sms",      NULL};
	struct cw_jsoncfg p;
	const cJSON *api, *rules, *buses, *carts, *cloud, *kiosk, *sms, *it;
	cJSON *root = NULL;
	enum cw_log_level lvl;
	int rc, i;

	cw_jsoncfg_init(&p, errbuf, errlen);
	config_defaults(out);
	if ((rc = cw_jsoncfg_parse(&p, json, len, CW_CONFIG_MAX_BYTES,
				    CW_JSONCFG_PARSE_LINE_COL | CW_JSONCFG_PARSE_COMMENTS, &root)))
		goto out;
	if ((rc = cw_jsoncfg_check_keys(&p, root, keys)) ||
	    (rc = cw_jsoncfg_get_str(&p, root, "chain_id", CW_JSONCFG_IDENT | CW_JSONCFG_REQUIRED,
				     out->chain_id, sizeof(out->chain_id))) ||
	    (rc = cw_jsoncfg_get_str(&p, root, "branch_id", CW_JSONCFG_IDENT | CW_JSONCFG_REQUIRED,
				     out->branch_id, sizeof(out->branch_id))) ||
	    (rc = cw_jsoncfg_get_str(&p, root, "device_id", CW_JSONCFG_IDENT | CW_JSONCFG_REQUIRED,
				     out->device_id, sizeof(out->device_id))) ||
	    (rc = cw_jsoncfg_get_str(&p, root, "device_name", 0, out->device_name,
				     sizeof(out->device_name))) ||
	    (rc = cw_jsoncfg_get_str(&p, root, "data_dir", CW_JSONCFG_REQUIRED, out->data_dir,
				     sizeof(out->data_dir) - sizeof("/edge.db-journal"))) ||
	    (rc = cw_jsoncfg_get_str(&p, root, "log_level", 0, out->log_level,
				     sizeof(out->log_level))))
		goto out;
	if (!out->device_name[0])
		snprintf(out->device_name, sizeof(out->device_name), "%s", out->device_id);
	if (cw_log_level_parse(out->log_level, &lvl) != CW_OK) {
		rc = cw_jsoncfg_fail(&p, "log_level",
				     "expected \"debug\", \"info\", \"warn\" or \"error\"");
		goto out;
	}
	if ((rc = cw_jsoncfg_get_container(&p, root, "api", false, true, &api)) ||
	    (rc = parse_api(&p, api, out)))
		goto out;
	if ((rc = cw_jsoncfg_get_container(&p, root, "rules", false, false, &rules)))
		goto out;
	if (rules && (rc = parse_rules(&p, rules, &out->rules)))
		goto out;
	if ((rc = cw_jsoncfg_get_container(&p, root, "kiosk", false, false, &kiosk)) ||
	    (kiosk && (rc = cw_kiosk_config_parse(&p, kiosk, &out->kiosk))))
		goto out;
	if ((rc = cw_jsoncfg_get_container(&p, root, "cloud", false, false, &cloud)))
		goto out;
	if (cloud) {
		if ((rc = parse_cloud(&p, cloud, &out->cloud)))
			goto out;
		out->cloud_enabled = true;
		snprintf(out->cloud.data_dir, sizeof(out->cloud.data_dir), "%s", out->data_dir);
		snprintf(out->cloud.device_name, sizeof(out->cloud.device_name), "%s",
			 out->device_name);
		snprintf(out->cloud.firmware_version, sizeof(out->cloud.firmware_version), "%s",
			 CW_VERSION);
	}
	/* the data_dir above: the default file of the "log" provider */
	if ((rc = cw_jsoncfg_get_container(&p, root, "sms", false, false, &sms)) ||
	    (rc = cw_sms_config_parse(&p, sms, out->data_dir, &out->sms)))
		goto out;
	if ((rc = cw_jsoncfg_get_container(&p, root, "buses", true, true, &buses)))
		goto out;
	out->nbuses = cJSON_GetArraySize(buses);
	if (out->nbuses < 1 || out->nbuses > CW_MAX_BUSES) {
		rc = cw_jsoncfg_fail(&p, "buses", "expected 1..%d buses, got %d", CW_MAX_BUSES,
				     out->nbuses);
		goto out;
	}
	i = 0;
	cJSON_ArrayForEach(it, buses) {
		size_t mark = cw_jsoncfg_push(&p, "buses[%d]", i);
		rc = parse_bus(&p, it, i, &out->buses[i]);
		for (int j = 0; rc == CW_OK && j < i; j++) {
			if (strcmp(out->buses[j].name, out->buses[i].name) == 0)
				rc = cw_jsoncfg_fail(&p, "name",
						     "\"%s\" is already the name of buses[%d]",
						     out->buses[i].name, j);
			else if (strcmp(out->buses[j].port, out->buses[i].port) == 0)
				rc = cw_jsoncfg_fail(&p, "port",
						     "already used by buses[%d] (one bus per port)",
						     j);
		}
		cw_jsoncfg_pop(&p, mark);
		if (rc)
			goto out;
		i++;
	}
	if ((rc = cw_jsoncfg_get_container(&p, root, "carts", true, false, &carts)))
		goto out;
	rc = carts ? parse_carts(&p, carts, out) : auto_carts(&p, out);
out:
	cJSON_Delete(root);
	return rc;
}

int cw_edge_config_load(const char *path, struct cw_edge_config *out, char *errbuf, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (errbuf && errlen)
		errbuf[0] = '\0';
	config_defaults(out);
	rc = cw_jsoncfg_read_file(path, CW_CONFIG_MAX_BYTES, &buf, &len, errbuf, errlen);
	if (rc != CW_OK)
		return rc;
	rc = cw_edge_config_parse(buf, len, out, errbuf, errlen);
	if (rc)
		cw_jsoncfg_prefix(errbuf, errlen, path);
	free(buf);
	return rc;
}
