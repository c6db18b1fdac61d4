/* cw_cloud_config.c - cartwise-cloud's configuration (see the header).
 * Keep in step with docs/CLOUD.md, which lists every key. */
#include "cw_cloud_config.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_error.h"
#include "cw_jsoncfg.h"
#include "cw_log.h"

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool cw_cloud_addr_key(const char *text, unsigned char out[16])
{
	struct in_addr v4;

	if (inet_pton(AF_INET6, text, out) == 1)
		return true;
	if (inet_pton(AF_INET, text, &v4) != 1)
		return false;
	memcpy(out, v4_mapped, sizeof(v4_mapped));
	memcpy(out + 12, &v4, 4);
	return true;
}

bool cw_cloud_addr_is_v4(const unsigned char key[16])
{
	return memcmp(key, v4_mapped, sizeof(v4_mapped)) == 0;
}

/* listen.trusted_proxies: an array of addresses */
static int parse_proxies(struct cw_jsoncfg *p, const cJSON *o, struct cw_cloud_config *c)
{
	const cJSON *arr, *it;
	int rc, i = 0;

	if ((rc = cw_jsoncfg_get_container(p, o, "trusted_proxies", true, false, &arr)) || !arr)
		return rc;
	if (cJSON_GetArraySize(arr) > CW_CLOUD_TRUSTED_PROXIES_MAX)
		return cw_jsoncfg_fail(p, "trusted_proxies", "at most %d addresses",
				       CW_CLOUD_TRUSTED_PROXIES_MAX);
	cJSON_ArrayForEach(it, arr) {
		size_t mark = cw_jsoncfg_push(p, ".trusted_proxies[%d]", i);
		if (!cJSON_IsString(it) || !cw_cloud_addr_key(it->valuestring, c->trusted_proxies[i]))
			rc = cw_jsoncfg_fail(p, NULL,
					     "expected an IPv4 or IPv6 address such as \"127.0.0.1\" "
					     "(no host names, no ranges)");
		cw_jsoncfg_pop(p, mark);
		if (rc)
			return rc;
		i++;
	}
	c->n_trusted_proxies = i;
	return CW_OK;
}

static int parse_listen(struct cw_jsoncfg *p, const cJSON *o, struct cw_cloud_config *c)
{
	static const char *const keys[] = {"address", "port", "threads", "trusted_proxies",
					   "max_event_streams", NULL};
	unsigned char addr[sizeof(struct in6_addr)];
	size_t mark = cw_jsoncfg_enter(p, "listen");
	int rc;

	if ((rc = cw_jsoncfg_check_keys(p, o, keys)) ||
	    (rc = cw_jsoncfg_get_str(p, o, "address", CW_JSONCFG_CLOUD_WORDING, c->listen_address,
				     sizeof(c->listen_address))) ||
	    (rc = cw_jsoncfg_get_int(p, o, "port", 0, 65535, false, &c->listen_port)) ||
	    (rc = cw_jsoncfg_get_int(p, o, "threads", 1, 64, false, &c->threads)) ||
	    (rc = cw_jsoncfg_get_int(p, o, "max_event_streams", 0, 4096, false,
				     &c->max_event_streams)) ||
	    (rc = parse_proxies(p, o, c)))
		goto out;
	if (inet_pton(AF_INET, c->listen_address, addr) != 1 &&
	    inet_pton(AF_INET6, c->listen_address, addr) != 1)
		rc = cw_jsoncfg_fail(p, "address",
				     "expected an IPv4 or IPv6 address such as \"127.0.0.1\" or "
				     "\"0.0.0.0\" (host names are not resolved)");
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

static int parse_database(struct cw_jsoncfg *p, const cJSON *o, struct cw_cloud_config *c)
{
	static const char *const keys[] = {"backend", "path", "conninfo", "pool_size",
					   "migrate_on_start", NULL};
	char backend[16] = "";
	size_t mark = cw_jsoncfg_enter(p, "database");
	bool has_path = cJSON_HasObjectItem(o, "path"), has_ci = cJSON_HasObjectItem(o, "conninfo");
	int rc;

	if ((rc = cw_jsoncfg_check_keys(p, o, keys)) ||
	    (rc = cw_jsoncfg_get_str(p, o, "backend",
				     CW_JSONCFG_REQUIRED | CW_JSONCFG_CLOUD_WORDING, backend,
				     sizeof(backend))) ||
	    (rc = cw_jsoncfg_get_int(p, o, "pool_size", 1, 64, false, &c->db_pool_size)) ||
	    (rc = cw_jsoncfg_get_bool(p, o, "migrate_on_start", &c->migrate_on_start)))
		goto out;
	if (strcmp(backend, "sqlite") == 0) {
		c->db_backend = CW_BACKEND_SQLITE;
		if (has_ci) {
			rc = cw_jsoncfg_fail(p, "conninfo", "only for backend \"postgres\"");
			goto out;
		}
		rc = cw_jsoncfg_get_str(p, o, "path",
					CW_JSONCFG_REQUIRED | CW_JSONCFG_CLOUD_WORDING, c->db_path,
					sizeof(c->db_path));
	} else if (strcmp(backend, "postgres") == 0) {
		c->db_backend = CW_BACKEND_POSTGRES;
		if (has_path) {
			rc = cw_jsoncfg_fail(p, "path", "only for backend \"sqlite\"");
			goto out;
		}
		/* "" = everything from the PG* environment variables */
		rc = cw_jsoncfg_get_str(p, o, "conninfo",
					CW_JSONCFG_EMPTY_OK | CW_JSONCFG_CLOUD_WORDING,
					c->db_conninfo, sizeof(c->db_conninfo));
	} else {
		rc = cw_jsoncfg_fail(p, "backend", "expected \"sqlite\" or \"postgres\"");
	}
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

static int parse_tokens(struct cw_jsoncfg *p, const cJSON *o, struct cw_cloud_config *c)
{
	static const char *const keys[] = {"issuer", "audience", "staff_ttl_s", "device_ttl_s",
					   NULL};
	size_t mark = cw_jsoncfg_enter(p, "tokens");
	int rc;

	if ((rc = cw_jsoncfg_check_keys(p, o, keys)) ||
	    (rc = cw_jsoncfg_get_str(p, o, "issuer", CW_JSONCFG_CLOUD_WORDING, c->issuer,
				     sizeof(c->issuer))) ||
	    (rc = cw_jsoncfg_get_str(p, o, "audience", CW_JSONCFG_CLOUD_WORDING, c->audience,
				     sizeof(c->audience))) ||
	    (rc = cw_jsoncfg_get_int(p, o, "staff_ttl_s", 60, 30 * 86400, false,
				     &c->staff_token_ttl_s)) ||
	    (rc = cw_jsoncfg_get_int(p, o, "device_ttl_s", 3600, 400 * 86400, false,
				     &c->device_token_ttl_s)))
		goto out;
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

static int parse_mqtt(struct cw_jsoncfg *p, const cJSON *o, struct cw_cloud_config *c)
{
	static const char *const keys[] = {"host",	    "port",	     "tls",
					   "connect_host",  "connect_port",  "username",
					   "password_file", "ca_file",	     "passwd_out", NULL};
	static const unsigned opt = CW_JSONCFG_CLOUD_WORDING;
	size_t mark = cw_jsoncfg_enter(p, "mqtt");
	int rc;

	c->mqtt_connect_port = 0;
	if ((rc = cw_jsoncfg_check_keys(p, o, keys)) ||
	    (rc = cw_jsoncfg_get_str(p, o, "host", CW_JSONCFG_REQUIRED | opt, c->mqtt_host,
				     sizeof(c->mqtt_host))) ||
	    (rc = cw_jsoncfg_get_int(p, o, "port", 1, 65535, false, &c->mqtt_port)) ||
	    (rc = cw_jsoncfg_get_bool(p, o, "tls", &c->mqtt_tls)) ||
	    (rc = cw_jsoncfg_get_str(p, o, "connect_host", opt, c->mqtt_connect_host,
				     sizeof(c->mqtt_connect_host))) ||
	    (rc = cw_jsoncfg_get_int(p, o, "connect_port", 1, 65535, false,
				     &c->mqtt_connect_port)) ||
	    (rc = cw_jsoncfg_get_str(p, o, "username", opt, c->mqtt_username,
				     sizeof(c->mqtt_username))) ||
	    (rc = cw_jsoncfg_get_str(p, o, "password_file", opt, c->mqtt_password_file,
				     sizeof(c->mqtt_password_file))) ||
	    (rc = cw_jsoncfg_get_str(p, o, "ca_file", opt, c->mqtt_ca_file,
				     sizeof(c->mqtt_ca_file))) ||
	    (rc = cw_jsoncfg_get_str(p, o, "passwd_out", opt, c->mqtt_passwd_out,
				     sizeof(c->mqtt_passwd_out))))
		goto out;
	/* ':' ends the user name in Mosquitto's password file */
	if (strchr(c->mqtt_username, ':')) {
		rc = cw_jsoncfg_fail(p, "username", "must not contain ':'");
		goto out;
	}
	if (c->mqtt_ca_file[0] && !c->mqtt_tls) {
		rc = cw_jsoncfg_fail(p, "ca_file", "only with \"tls\": true");
		goto out;
	}
	if (c->mqtt_passwd_out[0] && !c->mqtt_password_file[0]) {
		rc = cw_jsoncfg_fail(p, "passwd_out",
				     "needs \"password_file\" (the file holds the cloud's own user)");
		goto out;
	}
	if (!c->mqtt_connect_host[0])
		snprintf(c->mqtt_connect_host, sizeof(c->mqtt_connect_host), "%s", c->mqtt_host);
	if (!c->mqtt_connect_port)
		c->mqtt_connect_port = c->mqtt_port;
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

static int parse_small(struct cw_jsoncfg *p, const cJSON *root, struct cw_cloud_config *c)
{
	static const char *const login_keys[] = {"max_attempts", "window_s", "hash_ops",
						 "hash_mem_kib", NULL};
	static const char *const dev_keys[] = {"offline_after_s", NULL};
	static const char *const tls_keys[] = {"cert_file", "key_file", NULL};
	static const char *const web_keys[] = {"dashboard_dir", NULL};
	const cJSON *o;
	size_t mark;
	int rc;

	if ((rc = cw_jsoncfg_get_container(p, root, "login", false, false, &o)))
		return rc;
	if (o) {
		mark = cw_jsoncfg_enter(p, "login");
		if (!(rc = cw_jsoncfg_check_keys(p, o, login_keys)) &&
		    !(rc = cw_jsoncfg_get_int(p, o, "max_attempts", 1, 1000, false,
					      &c->login_max_attempts)))
			rc = cw_jsoncfg_get_int(p, o, "window_s", 1, 86400, false,
						&c->login_window_s);
		if (!rc && !(rc = cw_jsoncfg_get_int(p, o, "hash_ops", 1, 10, false, &c->hash_ops)))
			rc = cw_jsoncfg_get_int(p, o, "hash_mem_kib", 8, 1048576, false,
						&c->hash_mem_kib);
		cw_jsoncfg_pop(p, mark);
		if (rc)
			return rc;
	}
	if ((rc = cw_jsoncfg_get_container(p, root, "devices", false, false, &o)))
		return rc;
	if (o) {
		mark = cw_jsoncfg_enter(p, "devices");
		if (!(rc = cw_jsoncfg_check_keys(p, o, dev_keys)))
			rc = cw_jsoncfg_get_int(p, o, "offline_after_s", 5, 86400, false,
						&c->offline_after_s);
		cw_jsoncfg_pop(p, mark);
		if (rc)
			return rc;
	}
	if ((rc = cw_jsoncfg_get_container(p, root, "mqtt", false, false, &o)) ||
	    (o && (rc = parse_mqtt(p, o, c))))
		return rc;
	if ((rc = cw_jsoncfg_get_container(p, root, "tls", false, false, &o)))
		return rc;
	if (o) {
		mark = cw_jsoncfg_enter(p, "tls");
		if (!(rc = cw_jsoncfg_check_keys(p, o, tls_keys)) &&
		    !(rc = cw_jsoncfg_get_str(p, o, "cert_file",
					      CW_JSONCFG_REQUIRED | CW_JSONCFG_CLOUD_WORDING,
					      c->tls_cert_file, sizeof(c->tls_cert_file))))
			rc = cw_jsoncfg_get_str(p, o, "key_file",
						CW_JSONCFG_REQUIRED | CW_JSONCFG_CLOUD_WORDING,
						c->tls_key_file, sizeof(c->tls_key_file));
		cw_jsoncfg_pop(p, mark);
		if (rc)
			return rc;
	}
	if ((rc = cw_jsoncfg_get_container(p, root, "web", false, false, &o)))
		return rc;
	if (o) {
		mark = cw_jsoncfg_enter(p, "web");
		if (!(rc = cw_jsoncfg_check_keys(p, o, web_keys)))
			rc = cw_jsoncfg_get_str(p, o, "dashboard_dir",
						CW_JSONCFG_CLOUD_WORDING | CW_JSONCFG_EMPTY_OK,
						c->dashboard_dir, sizeof(c->dashboard_dir));
		cw_jsoncfg_pop(p, mark);
		if (rc)
			return rc;
	}
	return CW_OK;
}

/* privacy.phone_visible_roles: an array of distinct role names (may be
 * empty: nobody sees phones in full) */
static int parse_privacy(struct cw_jsoncfg *p, const cJSON *root, struct cw_cloud_config *c)
{
	static const char *const keys[] = {"phone_visible_roles", NULL};
	const cJSON *o, *arr, *it;
	unsigned roles = 0;
	size_t mark;
	int rc, i = 0;

	if ((rc = cw_jsoncfg_get_container(p, root, "privacy", false, false, &o)) || !o)
		return rc;
	mark = cw_jsoncfg_enter(p, "privacy");
	if ((rc = cw_jsoncfg_check_keys(p, o, keys)) ||
	    (rc = cw_jsoncfg_get_container(p, o, "phone_visible_roles", true, false, &arr)) || !arr)
		goto out;
	cJSON_ArrayForEach(it, arr) {
		enum cw_role role;
		size_t item = cw_jsoncfg_push(p, ".phone_visible_roles[%d]", i++);
		if (!cJSON_IsString(it) || cw_role_parse(it->valuestring, &role) != CW_OK)
			rc = cw_jsoncfg_fail(p, NULL, "expected \"platform-admin\", \"chain-admin\" "
						      "or \"branch-manager\"");
		else if (roles & (1u << role))
			rc = cw_jsoncfg_fail(p, NULL, "a role given twice");
		else
			roles |= 1u << role;
		cw_jsoncfg_pop(p, item);
		if (rc)
			goto out;
	}
	c->phone_visible_roles = roles;
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

static void defaults(struct cw_cloud_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen_address, sizeof(c->listen_address), "127.0.0.1");
	c->listen_port = 8000;
	c->threads = 4;
	c->max_event_streams = 256;
	c->db_pool_size = 4;
	c->migrate_on_start = true;
	snprintf(c->issuer, sizeof(c->issuer), "cartwise-cloud");
	snprintf(c->audience, sizeof(c->audience), "cartwise-api");
	c->staff_token_ttl_s = 12 * 3600;
	c->device_token_ttl_s = 30 * 86400;
	c->login_max_attempts = 5;
	c->login_window_s = 900;
	c->hash_ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
	c->hash_mem_kib = crypto_pwhash_MEMLIMIT_INTERACTIVE / 1024;
	c->offline_after_s = 90;
	c->mqtt_port = 8883;
	c->mqtt_tls = true;
	snprintf(c->mqtt_username, sizeof(c->mqtt_username), "cartwise-cloud");
	snprintf(c->log_level, sizeof(c->log_level), "info");
	c->phone_visible_roles = 1u << CW_ROLE_CHAIN_ADMIN;
	snprintf(c->dashboard_dir, sizeof(c->dashboard_dir), "%s", CW_DASHBOARD_DIR);
}

int cw_cloud_config_parse(const char *json, size_t len, struct cw_cloud_config *out, char *errbuf,
			  size_t errlen)
{
	static const char *const keys[] = {"listen", "database", "signing_key_file", "tokens",
					   "login",  "devices",  "mqtt",	     "tls",
					   "log_level", "web", "privacy", NULL};
	struct cw_jsoncfg p;
	const cJSON *o;
	cJSON *root = NULL;
	enum cw_log_level lvl;
	int rc;

	cw_jsoncfg_init(&p, errbuf, errlen);
	defaults(out);
	/* an operator's file: positions by line and column, as the edge's */
	if ((rc = cw_jsoncfg_parse(&p, json, len, CW_CLOUD_CONFIG_MAX_BYTES,
				    CW_JSONCFG_PARSE_LINE_COL | CW_JSONCFG_PARSE_COMMENTS, &root)))
		goto out;
	if ((rc = cw_jsoncfg_check_keys(&p, root, keys)) ||
	    (rc = cw_jsoncfg_get_str(&p, root, "signing_key_file",
				     CW_JSONCFG_REQUIRED | CW_JSONCFG_CLOUD_WORDING,
				     out->signing_key_file, sizeof(out->signing_key_file))) ||
	    (rc = cw_jsoncfg_get_str(&p, root, "log_level", CW_JSONCFG_CLOUD_WORDING,
				     out->log_level, sizeof(out->log_level))))
		goto out;
	if (cw_log_level_parse(out->log_level, &lvl) != CW_OK) {
		rc = cw_jsoncfg_fail(&p, "log_level",
				     "expected \"debug\", \"info\", \"warn\" or \"error\"");
		goto out;
	}
	if ((rc = cw_jsoncfg_get_container(&p, root, "listen", false, false, &o)) ||
	    (o && (rc = parse_listen(&p, o, out))))
		goto out;
	if ((rc = cw_jsoncfg_get_container(&p, root, "database", false, true, &o)) ||
	    (rc = parse_database(&p, o, out)))
		goto out;
	if ((rc = cw_jsoncfg_get_container(&p, root, "tokens", false, false, &o)) ||
	    (o && (rc = parse_tokens(&p, o, out))))
		goto out;
	if ((rc = parse_small(&p, root, out)))
		goto out;
	rc = parse_privacy(&p, root, out);
out:
	cJSON_Delete(root);
	return rc;
}

int cw_read_file(const char *path, size_t max, char **out, size_t *len)
{
	return cw_jsoncfg_read_file(path, max, out, len, NULL, 0);
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
	if (rc)
		cw_jsoncfg_prefix(errbuf, errlen, path);
	free(buf);
	return rc;
}

bool cw_cloud_config_weak_hash(const struct cw_cloud_config *c)
{
	return c->hash_ops < 2 || c->hash_mem_kib < 19 * 1024;
}

int cw_cloud_hash_password(const struct cw_cloud_config *c, const char *password, size_t len,
			   char *out, size_t cap)
{
	if (cap < crypto_pwhash_STRBYTES)
		return CW_ERR_TOOBIG;
	if (crypto_pwhash_str_alg(out, password, len, (unsigned long long)c->hash_ops,
				  (size_t)c->hash_mem_kib * 1024, crypto_pwhash_ALG_ARGON2ID13) != 0)
		return CW_ERR_NOMEM;
	return CW_OK;
}

bool cw_cloud_utf8_ok(const char *text)
{
	const unsigned char *s = (const unsigned char *)text;

	while (*s) {
		/* the second byte's range (Unicode Table 3-7): no overlong
		 * forms (E0, F0), no surrogates (ED), nothing past U+10FFFF (F4) */
		unsigned char lo = 0x80, hi = 0xbf;
		int n;
		if (*s < 0x80)
			n = 0;
		else if ((*s & 0xe0) == 0xc0 && *s >= 0xc2)
			n = 1;
		else if ((*s & 0xf0) == 0xe0)
			n = 2;
		else if ((*s & 0xf8) == 0xf0 && *s <= 0xf4)
			n = 3;
		else
			return false;
		if (*s == 0xe0)
			lo = 0xa0;
		else if (*s == 0xed)
			hi = 0x9f;
		else if (*s == 0xf0)
			lo = 0x90;
		else if (*s == 0xf4)
			hi = 0x8f;
		s++;
		if (n > 0 && (*s < lo || *s > hi))
			return false;
		for (int i = 0; i < n; i++, s++)
			if ((*s & 0xc0) != 0x80)
				return false;
	}
	return true;
}
