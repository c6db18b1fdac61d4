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
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_error.h"
#include "cw_log.h"

/* A config is a few kilobytes; anything this big is not a config. */
#define CW_CONFIG_MAX_BYTES (1024 * 1024)
#define CW_CART_NUMBER_MAX 99999

struct pctx {
	char *err;
	size_t errlen;
	char path[256]; /* key path of the object being parsed, "" = top level */
};

/* ---- error and path helpers ---- */

static int fail(struct pctx *p, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes "<path>.<key>: <message>" and returns CW_ERR_CONFIG. */
static int fail(struct pctx *p, const char *key, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->err && p->errlen) {
		if (key && *key)
			snprintf(p->err, p->errlen, "%s%s%s: %s", p->path, *p->path ? "." : "", key,
				 msg);
		else if (*p->path)
			snprintf(p->err, p->errlen, "%s: %s", p->path, msg);
		else
			snprintf(p->err, p->errlen, "%s", msg);
	}
	return CW_ERR_CONFIG;
}

/* Appends to the path; returns the old length for path_pop. */
static size_t path_push(struct pctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(struct pctx *p, const char *fmt, ...)
{
	size_t mark = strlen(p->path);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->path + mark, sizeof(p->path) - mark, fmt, ap);
	va_end(ap);
	return mark;
}

static void path_pop(struct pctx *p, size_t mark)
{
	p->path[mark] = '\0';
}

/* Describes what was found instead of what was expected. Never echoes string
 * contents (a string can be a secret); gives its length instead. */
static const char *describe(const cJSON *it, char *buf, size_t cap)
{
	if (cJSON_IsString(it))
		snprintf(buf, cap, "a string");
	else if (cJSON_IsNumber(it))
		snprintf(buf, cap, "%.17g", it->valuedouble);
	else if (cJSON_IsTrue(it))
		snprintf(buf, cap, "true");
	else if (cJSON_IsFalse(it))
		snprintf(buf, cap, "false");
	else if (cJSON_IsNull(it))
		snprintf(buf, cap, "null");
	else if (cJSON_IsArray(it))
		snprintf(buf, cap, "an array");
	else if (cJSON_IsObject(it))
		snprintf(buf, cap, "an object");
	else
		snprintf(buf, cap, "something else");
	return buf;
}

/* Refuses keys not in allowed (NULL-terminated) and keys given twice. */
static int check_keys(struct pctx *p, const cJSON *obj, const char *const *allowed)
{
	const cJSON *it, *prev;

	cJSON_ArrayForEach(it, obj) {
		bool known = false;
		for (const char *const *a = allowed; *a; a++) {
			if (strcmp(it->string, *a) == 0) {
				known = true;
				break;
			}
		}
		if (!known) {
			char list[200] = "";
			size_t n = 0;
			for (const char *const *a = allowed; *a && n < sizeof(list); a++) {
				int w = snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "", *a);
				if (w < 0)
					break;
				n += (size_t)w;
			}
			return fail(p, it->string, "unknown key (known keys here: %s)", list);
		}
		for (prev = obj->child; prev != it; prev = prev->next) {
			if (strcmp(prev->string, it->string) == 0)
				return fail(p, it->string, "key given twice");
		}
	}
	return CW_OK;
}

static int get_int(struct pctx *p, const cJSON *obj, const char *key, long min, long max,
		   bool required, int *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char got[64];
	double v;

	if (!it) {
		if (required)
			return fail(p, key, "missing (expected an integer %ld..%ld)", min, max);
		return CW_OK;
	}
	if (!cJSON_IsNumber(it))
		return fail(p, key, "expected an integer %ld..%ld, got %s", min, max,
			    describe(it, got, sizeof(got)));
	v = it->valuedouble;
	/* Range first: converting a double outside long's range (1e300) is
	 * undefined behaviour (C11 6.3.1.4); in range, the cast is exact for
	 * integers and tells a fraction apart. !(a && b) also refuses NaN. */
	if (!(v >= (double)min && v <= (double)max) || v != (double)(long)v)
		return fail(p, key, "expected an integer %ld..%ld, got %s", min, max,
			    describe(it, got, sizeof(got)));
	*out = (int)(long)v;
	return CW_OK;
}

static int get_bool(struct pctx *p, const cJSON *obj, const char *key, bool *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char got[64];

	if (!it)
		return CW_OK;
	if (!cJSON_IsBool(it))
		return fail(p, key, "expected true or false, got %s", describe(it, got, sizeof(got)));
	*out = cJSON_IsTrue(it);
	return CW_OK;
}

/* Identifier: [A-Za-z0-9_-]{1,max}. */
static bool ident_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (; *s; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

enum str_kind {
	STR_IDENT, /* [A-Za-z0-9_-]{1,cap-1} */
	STR_TEXT,  /* 1..cap-1 bytes, no control characters */
};

static int get_str(struct pctx *p, const cJSON *obj, const char *key, enum str_kind kind,
		   bool required, char *out, size_t cap)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char want[96], got[64];
	size_t n;

	if (kind == STR_IDENT)
		snprintf(want, sizeof(want), "a string of 1-%zu characters [A-Za-z0-9_-]", cap - 1);
	else
		snprintf(want, sizeof(want), "a non-empty string of at most %zu bytes", cap - 1);
	if (!it) {
		if (!required)
			return CW_OK;
		return fail(p, key, "missing (expected %s)", want);
	}
	if (!cJSON_IsString(it) || !it->valuestring)
		return fail(p, key, "expected %s, got %s", want, describe(it, got, sizeof(got)));
	n = strlen(it->valuestring);
	if (kind == STR_IDENT) {
		if (!ident_ok(it->valuestring, cap - 1))
			return fail(p, key,
				    "expected a string of 1-%zu characters [A-Za-z0-9_-], got %zu "
				    "characters with other characters or the wrong length",
				    cap - 1, n);
	} else {
		if (n == 0 || n >= cap)
			return fail(p, key, "expected a non-empty string of at most %zu bytes, got %zu",
				    cap - 1, n);
		for (const unsigned char *c = (const unsigned char *)it->valuestring; *c; c++) {
			if (*c < 0x20 || *c == 0x7f)
				return fail(p, key, "control characters are not allowed");
		}
	}
	memcpy(out, it->valuestring, n + 1);
	return CW_OK;
}

/* Returns the member if present and an object/array as wanted. */
static int get_container(struct pctx *p, const cJSON *obj, const char *key, bool array,
			 bool required, const cJSON **out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char got[64];

	*out = NULL;
	if (!it) {
		if (required)
			return fail(p, key, "missing (expected %s)", array ? "an array" : "an object");
		return CW_OK;
	}
	if (array ? !cJSON_IsArray(it) : !cJSON_IsObject(it))
		return fail(p, key, "expected %s, got %s", array ? "an array" : "an object",
			    describe(it, got, sizeof(got)));
	*out = it;
	return CW_OK;
}

/* ---- sections ---- */

static int parse_api(struct pctx *p, const cJSON *api, struct cw_edge_config *c)
{
	static const char *const keys[] = {"bind", "port", "admin_token", NULL};
	unsigned char addr[sizeof(struct in6_addr)];
	size_t mark = path_push(p, "api");
	const cJSON *tok;
	int rc;

	if ((rc = check_keys(p, api, keys)))
		goto out;
	if ((rc = get_str(p, api, "bind", STR_TEXT, false, c->api_bind, sizeof(c->api_bind))))
		goto out;
	if (inet_pton(AF_INET, c->api_bind, addr) != 1 && inet_pton(AF_INET6, c->api_bind, addr) != 1) {
		rc = fail(p, "bind", "expected an IPv4 or IPv6 address such as \"127.0.0.1\" or "
				     "\"0.0.0.0\" (host names are not resolved)");
		goto out;
	}
	if ((rc = get_int(p, api, "port", 0, 65535, false, &c->api_port)))
		goto out;
	/* Checked by hand: the message must never echo the token. */
	tok = cJSON_GetObjectItemCaseSensitive(api, "admin_token");
	if (!tok) {
		rc = fail(p, "admin_token", "missing (expected a secret string of 16-%zu characters)",
			  sizeof(c->admin_token) - 1);
		goto out;
	}
	if (!cJSON_IsString(tok) || !tok->valuestring) {
		char got[64];
		rc = fail(p, "admin_token", "expected a secret string of 16-%zu characters, got %s",
			  sizeof(c->admin_token) - 1, describe(tok, got, sizeof(got)));
		goto out;
	}
	{
		size_t n = strlen(tok->valuestring);
		if (n < 16 || n >= sizeof(c->admin_token)) {
			rc = fail(p, "admin_token",
				  "expected a secret string of 16-%zu characters, got %zu characters",
				  sizeof(c->admin_token) - 1, n);
			goto out;
		}
		/* It travels in an HTTP header: printable ASCII without spaces. */
		for (const unsigned char *s = (const unsigned char *)tok->valuestring; *s; s++) {
			if (*s <= 0x20 || *s >= 0x7f) {
				rc = fail(p, "admin_token",
					  "only printable ASCII characters without spaces are allowed");
				goto out;
			}
		}
		memcpy(c->admin_token, tok->valuestring, n + 1);
	}
	rc = CW_OK;
out:
	path_pop(p, mark);
	return rc;
}

static int parse_rules(struct pctx *p, const cJSON *r, struct cw_rules *out)
{
	static const char *const keys[] = {"rental_minutes", "one_per_phone", "grace_minutes",
					   "take_timeout_s", "return_timeout_s", NULL};
	size_t mark = path_push(p, "rules");
	int rc;

	if ((rc = check_keys(p, r, keys)) ||
	    (rc = get_int(p, r, "rental_minutes", 1, 7 * 24 * 60, false, &out->rental_minutes)) ||
	    (rc = get_bool(p, r, "one_per_phone", &out->one_per_phone)) ||
	    (rc = get_int(p, r, "grace_minutes", 0, 24 * 60, false, &out->grace_minutes)) ||
	    (rc = get_int(p, r, "take_timeout_s", 5, 3600, false, &out->take_timeout_s)) ||
	    (rc = get_int(p, r, "return_timeout_s", 30, 86400, false, &out->return_timeout_s)))
		goto out;
out:
	path_pop(p, mark);
	return rc;
}

static int parse_board(struct pctx *p, const cJSON *jb, enum cw_protocol proto,
		       struct cw_board_config *b)
{
	static const char *const keys[] = {"address",         "locks",     "pulse_ms",
					   "has_present_sensor", "coil_base", "hook_input_base",
					   "present_input_base", NULL};
	bool kerong = proto == CW_PROTO_KERONG;
	int address = 0, locks = 0, rc;
	char got[64];

	if (!cJSON_IsObject(jb))
		return fail(p, NULL, "expected an object, got %s", describe(jb, got, sizeof(got)));
	if ((rc = check_keys(p, jb, keys)))
		return rc;
	/* Kerong: the board number is the high nibble of ADDR and the lock the
	 * low nibble (BRIEF.md §3), so 0-15 boards of at most 16 locks. Modbus:
	 * slave ids 1-247 (Modbus over serial line spec §2.2). */
	if ((rc = get_int(p, jb, "address", kerong ? 0 : 1, kerong ? 15 : 247, true, &address)))
		return rc;
	if ((rc = get_int(p, jb, "locks", 1, kerong ? 16 : CW_MAX_LOCKS_PER_BOARD, true, &locks)))
		return rc;
	cw_board_config_defaults(b, address, locks);
	if ((rc = get_int(p, jb, "pulse_ms", 10, 10000, false, &b->pulse_ms)) ||
	    (rc = get_bool(p, jb, "has_present_sensor", &b->has_present_sensor)) ||
	    (rc = get_int(p, jb, "coil_base", 0, 65536 - locks, false, &b->coil_base)) ||
	    (rc = get_int(p, jb, "hook_input_base", 0, 65536 - locks, false, &b->hook_input_base)) ||
	    (rc = get_int(p, jb, "present_input_base", 0, 65536 - locks, false,
			  &b->present_input_base)))
		return rc;
	if (kerong) {
		/* The Kerong frame has no register map: refuse settings that would
		 * be silently ignored. */
		static const char *const modbus_only[] = {"coil_base", "hook_input_base",
							  "present_input_base", NULL};
		for (const char *const *k = modbus_only; *k; k++) {
			if (cJSON_GetObjectItemCaseSensitive(jb, *k))
				return fail(p, *k, "only valid for protocol \"modbus\"");
		}
	}
	return CW_OK;
}

static int parse_bus(struct pctx *p, const cJSON *jb, int index, struct cw_bus_config *bus)
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
		return fail(p, NULL, "expected an object, got %s", describe(jb, got, sizeof(got)));
	cw_bus_config_defaults(bus);
	snprintf(bus->name, sizeof(bus->name), "bus%d", index);
	if ((rc = check_keys(p, jb, keys)) ||
	    (rc = get_str(p, jb, "name", STR_IDENT, false, bus->name, sizeof(bus->name))) ||
	    (rc = get_str(p, jb, "port", STR_TEXT, true, bus->port, sizeof(bus->port))))
		return rc;
	it = cJSON_GetObjectItemCaseSensitive(jb, "protocol");
	if (!it)
		return fail(p, "protocol", "missing (expected \"modbus\" or \"kerong\")");
	if (!cJSON_IsString(it) || cw_protocol_parse(it->valuestring, &bus->protocol) != CW_OK ||
	    (strcmp(it->valuestring, "modbus") != 0 && strcmp(it->valuestring, "kerong") != 0))
		return fail(p, "protocol", "expected \"modbus\" or \"kerong\", got %s",
			    describe(it, got, sizeof(got)));
	if ((rc = get_int(p, jb, "baud", 1200, 115200, false, &bus->baud)))
		return rc;
	for (i = 0; i < (int)(sizeof(bauds) / sizeof(bauds[0])); i++) {
		if (bauds[i] == bus->baud)
			break;
	}
	if (i == (int)(sizeof(bauds) / sizeof(bauds[0])))
		return fail(p, "baud",
			    "expected one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, "
			    "got %d",
			    bus->baud);
	it = cJSON_GetObjectItemCaseSensitive(jb, "parity");
	if (it) {
		if (!cJSON_IsString(it) || strlen(it->valuestring) != 1 ||
		    !strchr("NEO", it->valuestring[0]))
			return fail(p, "parity", "expected \"N\", \"E\" or \"O\", got %s",
				    describe(it, got, sizeof(got)));
		bus->parity = it->valuestring[0];
	}
	if ((rc = get_int(p, jb, "response_timeout_ms", 1, 10000, false, &bus->response_timeout_ms)) ||
	    (rc = get_int(p, jb, "retries", 0, 10, false, &bus->retries)) ||
	    (rc = get_int(p, jb, "inter_frame_gap_ms", 0, 1000, false, &bus->inter_frame_gap_ms)) ||
	    (rc = get_int(p, jb, "poll_interval_ms", 0, 60000, false, &bus->poll_interval_ms)) ||
	    (rc = get_int(p, jb, "confirm_timeout_ms", 50, 60000, false, &bus->confirm_timeout_ms)) ||
	    (rc = get_int(p, jb, "offline_after", 1, 1000, false, &bus->offline_after)) ||
	    (rc = get_int(p, jb, "offline_backoff_max_ms", 10, 3600000, false,
			  &bus->offline_backoff_max_ms)))
		return rc;
	if ((rc = get_container(p, jb, "boards", true, true, &boards)))
		return rc;
	bus->nboards = cJSON_GetArraySize(boards);
	if (bus->nboards < 1 || bus->nboards > CW_MAX_BOARDS_PER_BUS)
		return fail(p, "boards", "expected 1..%d boards, got %d", CW_MAX_BOARDS_PER_BUS,
			    bus->nboards);
	i = 0;
	cJSON_ArrayForEach(it, boards) {
		size_t mark = path_push(p, ".boards[%d]", i);
		rc = parse_board(p, it, bus->protocol, &bus->boards[i]);
		if (rc == CW_OK) {
			for (int j = 0; j < i; j++) {
				if (bus->boards[j].address == bus->boards[i].address) {
					rc = fail(p, "address",
						  "%d is already used by boards[%d] on this bus",
						  bus->boards[i].address, j);
					break;
				}
			}
		}
		path_pop(p, mark);
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

static int parse_cart(struct pctx *p, const cJSON *jc, int index, struct cw_edge_config *c)
{
	static const char *const keys[] = {"number", "bus", "board", "lock", NULL};
	struct cw_cart_map *m = &c->carts[index];
	char busname[sizeof(c->buses[0].name)];
	const struct cw_bus_config *bus = NULL;
	int address = -1, rc, i;
	char got[64];

	if (!cJSON_IsObject(jc))
		return fail(p, NULL, "expected an object, got %s", describe(jc, got, sizeof(got)));
	if ((rc = check_keys(p, jc, keys)) ||
	    (rc = get_int(p, jc, "number", 1, CW_CART_NUMBER_MAX, true, &m->number)))
		return rc;
	for (i = 0; i < index; i++) {
		if (c->carts[i].number == m->number)
			return fail(p, "number", "cart %d is already defined by carts[%d]", m->number,
				    i);
	}
	if ((rc = get_str(p, jc, "bus", STR_IDENT, true, busname, sizeof(busname))))
		return rc;
	for (i = 0; i < c->nbuses; i++) {
		if (strcmp(c->buses[i].name, busname) == 0) {
			bus = &c->buses[i];
			break;
		}
	}
	if (!bus)
		return fail(p, "bus", "no bus named \"%s\" in buses", busname);
	m->bus_index = i;
	if ((rc = get_int(p, jc, "board", 0, 247, true, &address)))
		return rc;
	for (i = 0; i < bus->nboards; i++) {
		if (bus->boards[i].address == address)
			break;
	}
	if (i == bus->nboards)
		return fail(p, "board", "no board with address %d on bus \"%s\"", address, busname);
	m->board_index = i;
	if ((rc = get_int(p, jc, "lock", 0, CW_MAX_LOCKS_PER_BOARD - 1, true, &m->lock)))
		return rc;
	if (m->lock >= bus->boards[i].locks)
		return fail(p, "lock", "board %d on bus \"%s\" has locks 0..%d, got %d", address,
			    busname, bus->boards[i].locks - 1, m->lock);
	i = find_slot_owner(c, index, m->bus_index, m->board_index, m->lock);
	if (i >= 0)
		return fail(p, "lock", "this slot is already cart %d (carts[%d])", c->carts[i].number,
			    i);
	return CW_OK;
}

static int parse_carts(struct pctx *p, const cJSON *carts, struct cw_edge_config *c)
{
	const cJSON *it;
	int n = cJSON_GetArraySize(carts), i = 0, rc;

	if (n < 1 || n > CW_MAX_CARTS)
		return fail(p, "carts", "expected 1..%d carts, got %d", CW_MAX_CARTS, n);
	cJSON_ArrayForEach(it, carts) {
		size_t mark = path_push(p, "carts[%d]", i);
		rc = parse_cart(p, it, i, c);
		path_pop(p, mark);
		if (rc)
			return rc;
		i++;
	}
	c->ncarts = n;
	return CW_OK;
}

/* Numbers every lock of every board 1..N in config order. */
static int auto_carts(struct pctx *p, struct cw_edge_config *c)
{
	int n = 0;

	for (int b = 0; b < c->nbuses; b++) {
		for (int d = 0; d < c->buses[b].nboards; d++) {
			for (int l = 0; l < c->buses[b].boards[d].locks; l++) {
				if (n == CW_MAX_CARTS)
					return fail(p, "buses",
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
}

/* 1-based line and column of byte offset off, for "not valid JSON" messages. */
static void line_col(const char *s, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (s[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

int cw_edge_config_parse(const char *json, size_t len, struct cw_edge_config *out, char *errbuf,
			 size_t errlen)
{
	static const char *const keys[] = {"chain_id", "branch_id", "device_id", "device_name",
					   "data_dir", "log_level", "api",       "rules",
					   "buses",    "carts",    NULL};
	struct pctx p = {.err = errbuf, .errlen = errlen};
	const char *end = NULL;
	const cJSON *api, *rules, *buses, *carts, *it;
	cJSON *root = NULL;
	enum cw_log_level lvl;
	int rc, i;

	if (errbuf && errlen)
		errbuf[0] = '\0';
	config_defaults(out);
	if (!json || len == 0) {
		rc = fail(&p, NULL, "config is empty (expected a JSON object)");
		goto out;
	}
	if (len > CW_CONFIG_MAX_BYTES) {
		fail(&p, NULL, "config is %zu bytes, more than the limit of %d", len,
		     CW_CONFIG_MAX_BYTES);
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
	if (root && end) {
		/* cJSON stops after the first value; trailing text is an error too
		 * (e.g. two configs pasted into one file). */
		while ((size_t)(end - json) < len && strchr(" \t\r\n", *end))
			end++;
		if ((size_t)(end - json) < len) {
			int line, col;
			line_col(json, (size_t)(end - json), &line, &col);
			rc = fail(&p, NULL,
				  "config is not valid JSON: unexpected text after the top-level "
				  "object at line %d column %d (byte %zu)",
				  line, col, (size_t)(end - json));
			goto out;
		}
	}
	if (!root) {
		size_t off = end && end >= json ? (size_t)(end - json) : 0;
		int line, col;
		if (off > len)
			off = len;
		line_col(json, off, &line, &col);
		rc = fail(&p, NULL, "config is not valid JSON: error near line %d column %d (byte %zu)%s",
			  line, col, off, off + 1 >= len ? " (file ends too early: half-written?)" : "");
		goto out;
	}
	if (!cJSON_IsObject(root)) {
		rc = fail(&p, NULL, "config must be a JSON object at the top level");
		goto out;
	}
	if ((rc = check_keys(&p, root, keys)) ||
	    (rc = get_str(&p, root, "chain_id", STR_IDENT, true, out->chain_id,
			  sizeof(out->chain_id))) ||
	    (rc = get_str(&p, root, "branch_id", STR_IDENT, true, out->branch_id,
			  sizeof(out->branch_id))) ||
	    (rc = get_str(&p, root, "device_id", STR_IDENT, true, out->device_id,
			  sizeof(out->device_id))) ||
	    (rc = get_str(&p, root, "device_name", STR_TEXT, false, out->device_name,
			  sizeof(out->device_name))) ||
	    (rc = get_str(&p, root, "data_dir", STR_TEXT, true, out->data_dir,
			  sizeof(out->data_dir) - sizeof("/edge.db-journal"))) ||
	    (rc = get_str(&p, root, "log_level", STR_TEXT, false, out->log_level,
			  sizeof(out->log_level))))
		goto out;
	if (!out->device_name[0])
		snprintf(out->device_name, sizeof(out->device_name), "%s", out->device_id);
	if (cw_log_level_parse(out->log_level, &lvl) != CW_OK) {
		rc = fail(&p, "log_level", "expected \"debug\", \"info\", \"warn\" or \"error\"");
		goto out;
	}
	if ((rc = get_container(&p, root, "api", false, true, &api)) ||
	    (rc = parse_api(&p, api, out)))
		goto out;
	if ((rc = get_container(&p, root, "rules", false, false, &rules)))
		goto out;
	if (rules && (rc = parse_rules(&p, rules, &out->rules)))
		goto out;
	if ((rc = get_container(&p, root, "buses", true, true, &buses)))
		goto out;
	out->nbuses = cJSON_GetArraySize(buses);
	if (out->nbuses < 1 || out->nbuses > CW_MAX_BUSES) {
		rc = fail(&p, "buses", "expected 1..%d buses, got %d", CW_MAX_BUSES, out->nbuses);
		goto out;
	}
	i = 0;
	cJSON_ArrayForEach(it, buses) {
		size_t mark = path_push(&p, "buses[%d]", i);
		rc = parse_bus(&p, it, i, &out->buses[i]);
		for (int j = 0; rc == CW_OK && j < i; j++) {
			if (strcmp(out->buses[j].name, out->buses[i].name) == 0)
				rc = fail(&p, "name", "\"%s\" is already the name of buses[%d]",
					  out->buses[i].name, j);
			else if (strcmp(out->buses[j].port, out->buses[i].port) == 0)
				rc = fail(&p, "port", "already used by buses[%d] (one bus per port)",
					  j);
		}
		path_pop(&p, mark);
		if (rc)
			goto out;
		i++;
	}
	if ((rc = get_container(&p, root, "carts", true, false, &carts)))
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
	struct stat st;
	int fd = -1, rc;

	if (errbuf && errlen)
		errbuf[0] = '\0';
	config_defaults(out);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(errbuf, errlen, "%s: cannot open: %s", path, strerror(errno));
		rc = CW_ERR_IO;
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(errbuf, errlen, "%s: not a regular file", path);
		rc = CW_ERR_IO;
		goto out;
	}
	if (st.st_size > CW_CONFIG_MAX_BYTES) {
		snprintf(errbuf, errlen, "%s: %lld bytes, more than the limit of %d", path,
			 (long long)st.st_size, CW_CONFIG_MAX_BYTES);
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	/* One byte more than the limit, in case the file grows under us. */
	buf = malloc(CW_CONFIG_MAX_BYTES + 1);
	if (!buf) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	while (len <= CW_CONFIG_MAX_BYTES) {
		ssize_t r = read(fd, buf + len, CW_CONFIG_MAX_BYTES + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(errbuf, errlen, "%s: read failed: %s", path, strerror(errno));
			rc = CW_ERR_IO;
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > CW_CONFIG_MAX_BYTES) {
		snprintf(errbuf, errlen, "%s: more than the limit of %d bytes", path,
			 CW_CONFIG_MAX_BYTES);
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	rc = cw_edge_config_parse(buf, len, out, errbuf, errlen);
	if (rc && errbuf && errlen) {
		/* Prefix the file name so the operator knows which file. */
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "%s", errbuf);
		snprintf(errbuf, errlen, "%s: %s", path, tmp);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}
