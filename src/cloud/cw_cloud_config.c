/* cw_cloud_config.c - cartwise-cloud's configuration (see the header).
 * Keep in step with docs/CLOUD.md, which lists every key. */
#include "cw_cloud_config.h"

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

struct pctx {
	char *err;
	size_t errlen;
	char path[128]; /* key path of the object being parsed, "" = top level */
};

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

/* Never echoes a string's contents (it can be a secret). */
static const char *describe(const cJSON *it, char *buf, size_t cap)
{
	if (cJSON_IsString(it))
		snprintf(buf, cap, "a string");
	else if (cJSON_IsNumber(it))
		snprintf(buf, cap, "%.17g", it->valuedouble);
	else if (cJSON_IsBool(it))
		snprintf(buf, cap, "%s", cJSON_IsTrue(it) ? "true" : "false");
	else if (cJSON_IsNull(it))
		snprintf(buf, cap, "null");
	else if (cJSON_IsArray(it))
		snprintf(buf, cap, "an array");
	else
		snprintf(buf, cap, "an object");
	return buf;
}

static int check_keys(struct pctx *p, const cJSON *obj, const char *const *allowed)
{
	const cJSON *it, *prev;

	cJSON_ArrayForEach(it, obj) {
		bool known = false;
		for (const char *const *a = allowed; *a && !known; a++)
			known = strcmp(it->string, *a) == 0;
		if (!known) {
			char list[256] = "";
			size_t n = 0;
			for (const char *const *a = allowed; *a && n < sizeof(list); a++) {
				int w = snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "", *a);
				if (w < 0)
					break;
				n += (size_t)w;
			}
			return fail(p, it->string, "unknown key (known keys here: %s)", list);
		}
		for (prev = obj->child; prev != it; prev = prev->next)
			if (strcmp(prev->string, it->string) == 0)
				return fail(p, it->string, "key given twice");
	}
	return CW_OK;
}

static int get_int(struct pctx *p, const cJSON *obj, const char *key, long min, long max,
		   int *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char got[64];
	double v;

	if (!it)
		return CW_OK;
	if (!cJSON_IsNumber(it))
		return fail(p, key, "expected an integer %ld..%ld, got %s", min, max,
			    describe(it, got, sizeof(got)));
	v = it->valuedouble;
	if (v != (double)(long)v || v < (double)min || v > (double)max)
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

/* A string of at most cap-1 bytes without control characters; empty only
 * when empty_ok. */
static int get_str(struct pctx *p, const cJSON *obj, const char *key, bool required, bool empty_ok,
		   char *out, size_t cap)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char got[64];
	size_t n;

	if (!it) {
		if (required)
			return fail(p, key, "missing (expected a string of at most %zu bytes)", cap - 1);
		return CW_OK;
	}
	if (!cJSON_IsString(it) || !it->valuestring)
		return fail(p, key, "expected a string of at most %zu bytes, got %s", cap - 1,
			    describe(it, got, sizeof(got)));
	n = strlen(it->valuestring);
	if ((n == 0 && !empty_ok) || n >= cap)
		return fail(p, key, "expected a %sstring of at most %zu bytes, got %zu bytes",
			    empty_ok ? "" : "non-empty ", cap - 1, n);
	for (const unsigned char *c = (const unsigned char *)it->valuestring; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			return fail(p, key, "control characters are not allowed");
	memcpy(out, it->valuestring, n + 1);
	return CW_OK;
}

static int get_object(struct pctx *p, const cJSON *obj, const char *key, bool required,
		      const cJSON **out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char got[64];

	*out = NULL;
	if (!it)
		return required ? fail(p, key, "missing (expected an object)") : CW_OK;
	if (!cJSON_IsObject(it))
		return fail(p, key, "expected an object, got %s", describe(it, got, sizeof(got)));
	*out = it;
	return CW_OK;
}

/* Enters section key (an object) for the duration of one parse function. */
static size_t enter(struct pctx *p, const char *key)
{
	size_t mark = strlen(p->path);

	snprintf(p->path + mark, sizeof(p->path) - mark, "%s%s", mark ? "." : "", key);
	return mark;
}

static void leave(struct pctx *p, size_t mark)
{
	p->path[mark] = '\0';
}

static int parse_listen(struct pctx *p, const cJSON *o, struct cw_cloud_config *c)
{
	static const char *const keys[] = {"address", "port", "threads", NULL};
	unsigned char addr[sizeof(struct in6_addr)];
	size_t mark = enter(p, "listen");
	int rc;

	if ((rc = check_keys(p, o, keys)) ||
	    (rc = get_str(p, o, "address", false, false, c->listen_address,
			  sizeof(c->listen_address))) ||
	    (rc = get_int(p, o, "port", 0, 65535, &c->listen_port)) ||
	    (rc = get_int(p, o, "threads", 1, 64, &c->threads)))
		goto out;
	if (inet_pton(AF_INET, c->listen_address, addr) != 1 &&
	    inet_pton(AF_INET6, c->listen_address, addr) != 1)
		rc = fail(p, "address", "expected an IPv4 or IPv6 address such as \"127.0.0.1\" or "
					"\"0.0.0.0\" (host names are not resolved)");
out:
	leave(p, mark);
	return rc;
}

static int parse_database(struct pctx *p, const cJSON *o, struct cw_cloud_config *c)
{
	static const char *const keys[] = {"backend", "path", "conninfo", "pool_size",
					   "migrate_on_start", NULL};
	char backend[16] = "";
	size_t mark = enter(p, "database");
	bool has_path = cJSON_HasObjectItem(o, "path"), has_ci = cJSON_HasObjectItem(o, "conninfo");
	int rc;

	if ((rc = check_keys(p, o, keys)) ||
	    (rc = get_str(p, o, "backend", true, false, backend, sizeof(backend))) ||
	    (rc = get_int(p, o, "pool_size", 1, 64, &c->db_pool_size)) ||
	    (rc = get_bool(p, o, "migrate_on_start", &c->migrate_on_start)))
		goto out;
	if (strcmp(backend, "sqlite") == 0) {
		c->db_backend = CW_BACKEND_SQLITE;
		if (has_ci) {
			rc = fail(p, "conninfo", "only for backend \"postgres\"");
			goto out;
		}
		rc = get_str(p, o, "path", true, false, c->db_path, sizeof(c->db_path));
	} else if (strcmp(backend, "postgres") == 0) {
		c->db_backend = CW_BACKEND_POSTGRES;
		if (has_path) {
			rc = fail(p, "path", "only for backend \"sqlite\"");
			goto out;
		}
		/* "" = everything from the PG* environment variables */
		rc = get_str(p, o, "conninfo", false, true, c->db_conninfo, sizeof(c->db_conninfo));
	} else {
		rc = fail(p, "backend", "expected \"sqlite\" or \"postgres\"");
	}
out:
	leave(p, mark);
	return rc;
}

static int parse_tokens(struct pctx *p, const cJSON *o, struct cw_cloud_config *c)
{
	static const char *const keys[] = {"issuer", "audience", "staff_ttl_s", "device_ttl_s",
					   NULL};
	size_t mark = enter(p, "tokens");
	int rc;

	if ((rc = check_keys(p, o, keys)) ||
	    (rc = get_str(p, o, "issuer", false, false, c->issuer, sizeof(c->issuer))) ||
	    (rc = get_str(p, o, "audience", false, false, c->audience, sizeof(c->audience))) ||
	    (rc = get_int(p, o, "staff_ttl_s", 60, 30 * 86400, &c->staff_token_ttl_s)) ||
	    (rc = get_int(p, o, "device_ttl_s", 3600, 400 * 86400, &c->device_token_ttl_s)))
		goto out;
out:
	leave(p, mark);
	return rc;
}

static int parse_small(struct pctx *p, const cJSON *root, struct cw_cloud_config *c)
{
	static const char *const login_keys[] = {"max_attempts", "window_s", NULL};
	static const char *const dev_keys[] = {"offline_after_s", NULL};
	static const char *const mqtt_keys[] = {"host", "port", NULL};
	static const char *const tls_keys[] = {"cert_file", "key_file", NULL};
	const cJSON *o;
	size_t mark;
	int rc;

	if ((rc = get_object(p, root, "login", false, &o)))
		return rc;
	if (o) {
		mark = enter(p, "login");
		if (!(rc = check_keys(p, o, login_keys)) &&
		    !(rc = get_int(p, o, "max_attempts", 1, 1000, &c->login_max_attempts)))
			rc = get_int(p, o, "window_s", 1, 86400, &c->login_window_s);
		leave(p, mark);
		if (rc)
			return rc;
	}
	if ((rc = get_object(p, root, "devices", false, &o)))
		return rc;
	if (o) {
		mark = enter(p, "devices");
		if (!(rc = check_keys(p, o, dev_keys)))
			rc = get_int(p, o, "offline_after_s", 5, 86400, &c->offline_after_s);
		leave(p, mark);
		if (rc)
			return rc;
	}
	if ((rc = get_object(p, root, "mqtt", false, &o)))
		return rc;
	if (o) {
		mark = enter(p, "mqtt");
		if (!(rc = check_keys(p, o, mqtt_keys)) &&
		    !(rc = get_str(p, o, "host", true, false, c->mqtt_host, sizeof(c->mqtt_host))))
			rc = get_int(p, o, "port", 1, 65535, &c->mqtt_port);
		leave(p, mark);
		if (rc)
			return rc;
	}
	if ((rc = get_object(p, root, "tls", false, &o)))
		return rc;
	if (o) {
		mark = enter(p, "tls");
		if (!(rc = check_keys(p, o, tls_keys)) &&
		    !(rc = get_str(p, o, "cert_file", true, false, c->tls_cert_file,
				   sizeof(c->tls_cert_file))))
			rc = get_str(p, o, "key_file", true, false, c->tls_key_file,
				     sizeof(c->tls_key_file));
		leave(p, mark);
		if (rc)
			return rc;
	}
	return CW_OK;
}

static void defaults(struct cw_cloud_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen_address, sizeof(c->listen_address), "127.0.0.1");
	c->listen_port = 8000;
	c->threads = 4;
	c->db_pool_size = 4;
	c->migrate_on_start = true;
	snprintf(c->issuer, sizeof(c->issuer), "cartwise-cloud");
	snprintf(c->audience, sizeof(c->audience), "cartwise-api");
	c->staff_token_ttl_s = 12 * 3600;
	c->device_token_ttl_s = 30 * 86400;
	c->login_max_attempts = 5;
	c->login_window_s = 900;
	c->offline_after_s = 90;
	c->mqtt_port = 8883;
	snprintf(c->log_level, sizeof(c->log_level), "info");
}

int cw_cloud_config_parse(const char *json, size_t len, struct cw_cloud_config *out, char *errbuf,
			  size_t errlen)
{
	static const char *const keys[] = {"listen", "database", "signing_key_file", "tokens",
					   "login",  "devices",  "mqtt",	     "tls",
					   "log_level", NULL};
	struct pctx p = {.err = errbuf, .errlen = errlen};
	const char *end = NULL;
	const cJSON *o;
	cJSON *root = NULL;
	enum cw_log_level lvl;
	int rc;

	if (errbuf && errlen)
		errbuf[0] = '\0';
	defaults(out);
	if (!json || len == 0) {
		rc = fail(&p, NULL, "config is empty (expected a JSON object)");
		goto out;
	}
	if (len > CW_CLOUD_CONFIG_MAX_BYTES) {
		fail(&p, NULL, "config is %zu bytes, more than the limit of %d", len,
		     CW_CLOUD_CONFIG_MAX_BYTES);
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
	if (root && end) {
		while ((size_t)(end - json) < len && strchr(" \t\r\n", *end))
			end++;
		if ((size_t)(end - json) < len) {
			rc = fail(&p, NULL, "config is not valid JSON: unexpected text after the "
					    "top-level object at byte %zu",
				  (size_t)(end - json));
			goto out;
		}
	}
	if (!root) {
		size_t off = end && end >= json ? (size_t)(end - json) : 0;
		rc = fail(&p, NULL, "config is not valid JSON: error near byte %zu", off > len ? len : off);
		goto out;
	}
	if (!cJSON_IsObject(root)) {
		rc = fail(&p, NULL, "config must be a JSON object at the top level");
		goto out;
	}
	if ((rc = check_keys(&p, root, keys)) ||
	    (rc = get_str(&p, root, "signing_key_file", true, false, out->signing_key_file,
			  sizeof(out->signing_key_file))) ||
	    (rc = get_str(&p, root, "log_level", false, false, out->log_level,
			  sizeof(out->log_level))))
		goto out;
	if (cw_log_level_parse(out->log_level, &lvl) != CW_OK) {
		rc = fail(&p, "log_level", "expected \"debug\", \"info\", \"warn\" or \"error\"");
		goto out;
	}
	if ((rc = get_object(&p, root, "listen", false, &o)) || (o && (rc = parse_listen(&p, o, out))))
		goto out;
	if ((rc = get_object(&p, root, "database", true, &o)) || (rc = parse_database(&p, o, out)))
		goto out;
	if ((rc = get_object(&p, root, "tokens", false, &o)) || (o && (rc = parse_tokens(&p, o, out))))
		goto out;
	rc = parse_small(&p, root, out);
out:
	cJSON_Delete(root);
	return rc;
}

int cw_read_file(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int fd, rc = CW_ERR_IO;

	*out = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return CW_ERR_IO;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto out;
	if ((size_t)st.st_size > max) {
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	buf = malloc(max + 2);
	if (!buf) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	/* one byte past the limit, in case the file grows under us */
	while (n <= max) {
		ssize_t r = read(fd, buf + n, max + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto out;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > max) {
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	rc = CW_OK;
out:
	close(fd);
	free(buf);
	return rc;
}

int cw_cloud_config_load(const char *path, struct cw_cloud_config *out, char *errbuf,
			 size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (errbuf && errlen)
		errbuf[0] = '\0';
	defaults(out);
	rc = cw_read_file(path, CW_CLOUD_CONFIG_MAX_BYTES, &buf, &len);
	if (rc != CW_OK) {
		snprintf(errbuf, errlen, "%s: %s", path,
			 rc == CW_ERR_TOOBIG ? "larger than the limit of 256 KiB"
					     : "cannot read (missing, unreadable or not a file)");
		return rc;
	}
	rc = cw_cloud_config_parse(buf, len, out, errbuf, errlen);
	if (rc && errbuf && errlen) {
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "%s", errbuf);
		snprintf(errbuf, errlen, "%s: %s", path, tmp);
	}
	free(buf);
	return rc;
}
