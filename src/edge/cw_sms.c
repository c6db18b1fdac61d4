/* cw_sms.c - text messages: providers, durable queue, sender thread (see
 * the header and docs/OPERATIONS.md "SMS"). */
#include "cw_sms.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_edb.h"
#include "cw_error.h"
#include "cw_file.h"
#include "cw_https.h"
#include "cw_log.h"

#define SECRET_MAX 256
#define BACKOFF_MAX_MS 30000
#define OUTCOMES 256
#define IDLE_WAIT_MS 5000
#define ANSWER_MAX (64 * 1024)

/* ---- configuration ---- */

static const char *const provider_names[] = {"none", "webhook", "inforu", "log"};

const char *cw_sms_provider_name(enum cw_sms_provider p)
{
	return (unsigned)p < sizeof(provider_names) / sizeof(provider_names[0]) ? provider_names[p]
										 : "?";
}

void cw_sms_config_defaults(struct cw_sms_config *c)
{
	memset(c, 0, sizeof(*c));
	c->provider = CW_SMS_NONE;
	c->production = true;
	c->timeout_s = 5;
	snprintf(c->inforu_url, sizeof(c->inforu_url), "%s", CW_SMS_INFORU_URL);
}

/* A loopback host: "localhost", 127.0.0.0/8, "[::1]"; host is host[:port]... */
static bool loopback_host(const char *rest)
{
	char host[64];
	size_t n = strcspn(rest, ":/");
	unsigned char a[4];

	if (strncmp(rest, "[::1]", 5) == 0)
		return rest[5] == '\0' || rest[5] == ':' || rest[5] == '/';
	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, rest, n);
	host[n] = '\0';
	if (strcmp(host, "localhost") == 0)
		return true;
	return inet_pton(AF_INET, host, a) == 1 && a[0] == 127;
}

/* NULL when url is acceptable, else why not. https:// always; http:// to a
 * loopback host (a gateway relay on the device, a test fake) or with
 * insecure. No spaces, credentials or fragment (secrets go in files). */
static const char *url_problem(const char *url, bool insecure)
{
	const char *rest;

	if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		rest = url + 7;
	else
		return "expected an URL starting with https://";
	if (!*rest || *rest == '/' || *rest == ':')
		return "expected a host name after the scheme";
	for (const char *s = rest; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '@' || *s == '#' || *s == '\\')
			return "expected https://host[:port][/path][?query] without spaces, "
			       "credentials or fragment (a token goes in a file)";
	if (rest == url + 7 && !insecure && !loopback_host(rest))
		return "http:// is refused except to a loopback address (the text holds a "
		       "one-time code); use https://";
	return NULL;
}

static int get_url(struct cw_jsoncfg *p, const cJSON *o, const char *key, bool required,
		   char *out, size_t cap)
{
	const char *why;
	int rc = cw_jsoncfg_get_str(p, o, key, required ? CW_JSONCFG_REQUIRED : 0, out, cap);

	if (rc)
		return rc;
	if (out[0] && (why = url_problem(out, false)))
		return cw_jsoncfg_fail(p, key, "%s", why);
	return CW_OK;
}

/* A secret file: an absolute path to a readable file of one line. Read
 * here so that --check-config finds a missing one; the content is dropped. */
static int get_secret_file(struct cw_jsoncfg *p, const cJSON *o, const char *key, bool required,
			   char *out, size_t cap)
{
	char secret[SECRET_MAX];
	int rc = cw_jsoncfg_get_str(p, o, key, required ? CW_JSONCFG_REQUIRED : 0, out, cap);

	if (rc || !out[0])
		return rc;
	if (out[0] != '/')
		return cw_jsoncfg_fail(p, key, "expected an absolute path");
	rc = cw_file_read_secret(out, secret, sizeof(secret));
	sodium_memzero(secret, sizeof(secret));
	if (rc == CW_ERR_IO)
		return cw_jsoncfg_fail(p, key, "cannot read the file: %s", strerror(errno));
	if (rc)
		return cw_jsoncfg_fail(p, key,
				       "the file must hold one line of 1-%d printable characters "
				       "without spaces",
				       SECRET_MAX - 1);
	return CW_OK;
}

static int parse_webhook(struct cw_jsoncfg *p, const cJSON *o, struct cw_sms_config *c)
{
	static const char *const keys[] = {"url", "bearer_token_file", NULL};
	size_t mark = cw_jsoncfg_enter(p, "webhook");
	int rc;

	if ((rc = cw_jsoncfg_check_keys(p, o, keys)) ||
	    (rc = get_url(p, o, "url", true, c->webhook_url, sizeof(c->webhook_url))) ||
	    (rc = get_secret_file(p, o, "bearer_token_file", false, c->webhook_bearer_token_file,
				  sizeof(c->webhook_bearer_token_file))))
		goto out;
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

/* Inforu's sender: a name of letters and digits (at most 11, the GSM
 * limit) or a phone number of at most 15 digits. */
static bool sender_ok(const char *s)
{
	size_t n = strlen(s), digits = strspn(s, "0123456789");

	if (n == 0 || n > 15)
		return false;
	if (digits == n)
		return true;
	if (n > 11)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == ' ' || *s == '-' || *s == '.'))
			return false;
	return true;
}

static int parse_inforu(struct cw_jsoncfg *p, const cJSON *o, struct cw_sms_config *c)
{
	static const char *const keys[] = {"url", "username", "api_token_file", "sender", NULL};
	size_t mark = cw_jsoncfg_enter(p, "inforu");
	int rc;

	if ((rc = cw_jsoncfg_check_keys(p, o, keys)) ||
	    (rc = get_url(p, o, "url", false, c->inforu_url, sizeof(c->inforu_url))) ||
	    (rc = cw_jsoncfg_get_str(p, o, "username", CW_JSONCFG_REQUIRED, c->inforu_username,
				     sizeof(c->inforu_username))) ||
	    (rc = get_secret_file(p, o, "api_token_file", true, c->inforu_api_token_file,
				  sizeof(c->inforu_api_token_file))) ||
	    (rc = cw_jsoncfg_get_str(p, o, "sender", CW_JSONCFG_REQUIRED, c->inforu_sender,
				     sizeof(c->inforu_sender))))
		goto out;
	if (!sender_ok(c->inforu_sender))
		rc = cw_jsoncfg_fail(p, "sender",
				     "expected a name of 1-11 letters, digits, spaces, '-' or '.', "
				     "or a phone number of at most 15 digits");
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

int cw_sms_config_parse(struct cw_jsoncfg *p, const cJSON *sms, const char *data_dir,
			struct cw_sms_config *c)
{
	static const char *const keys[] = {"provider", "production", "timeout_s", "webhook",
					   "inforu",   "log",        NULL};
	static const char *const log_keys[] = {"file", NULL};
	const cJSON *webhook = NULL, *inforu = NULL, *log = NULL;
	char provider[16] = "";
	size_t mark = cw_jsoncfg_enter(p, "sms");
	int rc = CW_OK;
	unsigned i;

	if (data_dir && !c->log_file[0])
		snprintf(c->log_file, sizeof(c->log_file), "%s/sms-dev.log", data_dir);
	if (!sms)
		goto out;
	if ((rc = cw_jsoncfg_check_keys(p, sms, keys)) ||
	    (rc = cw_jsoncfg_get_str(p, sms, "provider", CW_JSONCFG_IDENT, provider,
				     sizeof(provider))) ||
	    (rc = cw_jsoncfg_get_bool(p, sms, "production", &c->production)) ||
	    (rc = cw_jsoncfg_get_int(p, sms, "timeout_s", 1, 60, false, &c->timeout_s)))
		goto out;
	if (provider[0]) {
		for (i = 0; i < sizeof(provider_names) / sizeof(provider_names[0]); i++)
			if (strcmp(provider, provider_names[i]) == 0)
				break;
		if (i == sizeof(provider_names) / sizeof(provider_names[0])) {
			rc = cw_jsoncfg_fail(p, "provider",
					     "expected \"webhook\", \"inforu\", \"log\" or \"none\"");
			goto out;
		}
		c->provider = (enum cw_sms_provider)i;
	}
	if (c->provider == CW_SMS_LOG && c->production) {
		rc = cw_jsoncfg_fail(p, "provider",
				     "\"log\" is for development only and refused while "
				     "\"production\" is true (the default); set \"production\": "
				     "false on a development machine");
		goto out;
	}
	/* a section of another provider is checked too: switching back is safe */
	if ((rc = cw_jsoncfg_get_container(p, sms, "webhook", false, c->provider == CW_SMS_WEBHOOK,
					   &webhook)) ||
	    (webhook && (rc = parse_webhook(p, webhook, c))) ||
	    (rc = cw_jsoncfg_get_container(p, sms, "inforu", false, c->provider == CW_SMS_INFORU,
					   &inforu)) ||
	    (inforu && (rc = parse_inforu(p, inforu, c))) ||
	    (rc = cw_jsoncfg_get_container(p, sms, "log", false, false, &log)))
		goto out;
	if (log) {
		size_t m2 = cw_jsoncfg_enter(p, "log");
		if ((rc = cw_jsoncfg_check_keys(p, log, log_keys)) == CW_OK)
			rc = cw_jsoncfg_get_str(p, log, "file", 0, c->log_file,
						sizeof(c->log_file));
		cw_jsoncfg_pop(p, m2);
	}
out:
	cw_jsoncfg_pop(p, mark);
	return rc;
}

/* ---- the module ---- */

struct outcome {
	int64_t id; /* 0 = free */
	enum cw_sms_state state;
};

struct cw_sms {
	struct cw_sms_config cfg;
	struct cw_engine *e;
	struct cw_https *http;
	char bearer[SECRET_MAX];    /* webhook, "" = none */
	char api_token[SECRET_MAX]; /* inforu */
	atomic_bool stop;
	atomic_int unreachable; /* the last attempt failed */
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t wake_cv; /* the sender sleeps on it */
	pthread_cond_t done_cv; /* cw_sms_wait sleeps on it */
	bool wake;
	struct outcome outcomes[OUTCOMES];
	int next_outcome;
};

struct row {
	int64_t id;
	char to[20];
	char *text;
	int attempts;
};

const char *cw_sms_state_name(enum cw_sms_state st)
{
	switch (st) {
	case CW_SMS_QUEUED:
		return "queued";
	case CW_SMS_SENT:
		return "sent";
	case CW_SMS_FAILING:
		return "failing";
	case CW_SMS_EXPIRED:
		return "expired";
	}
	return "?";
}

/* "+972521234567" -> "+972*******67": enough to tell messages apart. */
static void mask_phone(const char *to, char out[24])
{
	size_t n = strlen(to), i;

	for (i = 0; i < n && i < 23; i++)
		out[i] = (i < 4 || i + 2 >= n) ? to[i] : '*';
	out[i] = '\0';
}

static bool e164_ok(const char *to)
{
	size_t n;

	if (!to || to[0] != '+')
		return false;
	n = strlen(to + 1);
	return n >= 8 && n <= 15 && strspn(to + 1, "0123456789") == n && to[1] != '0';
}

static void record(struct cw_sms *s, int64_t id, enum cw_sms_state st)
{
	int i;

	pthread_mutex_lock(&s->mu);
	for (i = 0; i < OUTCOMES; i++)
		if (s->outcomes[i].id == id)
			break;
	if (i == OUTCOMES) {
		i = s->next_outcome;
		s->next_outcome = (s->next_outcome + 1) % OUTCOMES;
	}
	s->outcomes[i].id = id;
	s->outcomes[i].state = st;
	pthread_cond_broadcast(&s->done_cv);
	pthread_mutex_unlock(&s->mu);
}

/* Under s->mu. */
static bool lookup(struct cw_sms *s, int64_t id, enum cw_sms_state *st)
{
	for (int i = 0; i < OUTCOMES; i++) {
		if (s->outcomes[i].id == id) {
			*st = s->outcomes[i].state;
			return true;
		}
	}
	return false;
}

static sqlite3 *db(struct cw_sms *s)
{
	return cw_edb_handle(cw_engine_edb(s->e));
}

static void db_failed(struct cw_sms *s, const char *what)
{
	cw_error("sms.db_failed", "what=%s msg=\"%s\"", what, sqlite3_errmsg(db(s)));
}

int cw_sms_new(const struct cw_sms_config *c, struct cw_engine *e, struct cw_sms **out)
{
	struct cw_https_config hc = {0};
	pthread_condattr_t ca;
	const char *url = NULL, *why;
	struct cw_sms *s;
	int rc;

	*out = NULL;
	if (!c || !e)
		return CW_ERR_INVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return CW_ERR_NOMEM;
	s->cfg = *c;
	s->e = e;
	atomic_init(&s->stop, false);
	atomic_init(&s->unreachable, 0);
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake_cv, &ca);
	pthread_cond_init(&s->done_cv, &ca);
	pthread_condattr_destroy(&ca);

	rc = CW_ERR_CONFIG;
	if (c->provider == CW_SMS_WEBHOOK) {
		url = c->webhook_url;
		if (c->webhook_bearer_token_file[0] &&
		    cw_file_read_secret(c->webhook_bearer_token_file, s->bearer,
					sizeof(s->bearer)) != CW_OK) {
			cw_error("sms.config", "key=sms.webhook.bearer_token_file path=%s "
					       "msg=\"cannot read the token\"",
				 c->webhook_bearer_token_file);
			goto out;
		}
	} else if (c->provider == CW_SMS_INFORU) {
		url = c->inforu_url;
		if (cw_file_read_secret(c->inforu_api_token_file, s->api_token,
					sizeof(s->api_token)) != CW_OK) {
			cw_error("sms.config", "key=sms.inforu.api_token_file path=%s "
					       "msg=\"cannot read the token\"",
				 c->inforu_api_token_file);
			goto out;
		}
	} else if (c->provider == CW_SMS_LOG && c->production) {
		cw_error("sms.config", "key=sms.provider msg=\"log is refused in production\"");
		goto out;
	}
	if (url) {
		if ((why = url_problem(url, c->insecure_http))) {
			cw_error("sms.config", "key=sms.%s.url msg=\"%s\"",
				 cw_sms_provider_name(c->provider), why);
			goto out;
		}
		hc.insecure_http = strncmp(url, "http://", 7) == 0;
		hc.connect_timeout_ms = hc.total_timeout_ms = (long)c->timeout_s * 1000;
		hc.max_body = ANSWER_MAX;
		hc.cancel = &s->stop;
		if ((rc = cw_https_new(&hc, &s->http)))
			goto out;
	}
	/* the text holds a one-time code: deleted rows are zeroed in the file */
	cw_engine_lock(e);
	rc = sqlite3_exec(db(s), "PRAGMA secure_delete=ON", NULL, NULL, NULL) == SQLITE_OK
		     ? CW_OK
		     : CW_ERR_DB;
	if (rc)
		db_failed(s, "secure_delete");
	cw_engine_unlock(e);
	if (rc)
		goto out;
	cw_info("sms.ready", "provider=%s", cw_sms_provider_name(c->provider));
	*out = s;
	s = NULL;
out:
	cw_sms_free(s);
	return rc;
}

/* ---- providers ---- */

static int send_webhook(struct cw_sms *s, const struct row *r, char *err, size_t errlen)
{
	struct cw_https_resp resp;
	cJSON *o = cJSON_CreateObject();
	char *body = NULL;
	int rc = CW_ERR_NOMEM;

	if (!o || !cJSON_AddStringToObject(o, "to", r->to) ||
	    !cJSON_AddStringToObject(o, "text", r->text) || !(body = cJSON_PrintUnformatted(o))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = cw_https_request(s->http, "POST", s->cfg.webhook_url, s->bearer[0] ? s->bearer : NULL,
			      body, strlen(body), &resp);
	if (rc)
		snprintf(err, errlen, "%s: %s", cw_errname(rc), resp.err);
	else if (resp.status < 200 || resp.status > 299) {
		snprintf(err, errlen, "http %ld", resp.status);
		rc = CW_ERR_PROTO;
	}
	cw_https_resp_clear(&resp);
out:
	if (body) {
		sodium_memzero(body, strlen(body));
		cJSON_free(body);
	}
	cJSON_Delete(o); /* the text is in it; freed, not kept */
	return rc;
}

struct buf {
	char *p;
	size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n < b->cap) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
		b->p[b->len] = '\0';
	}
}

static void put_str(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* XML character data and attribute values. */
static void put_xml(struct buf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			put_str(b, "&amp;");
			break;
		case '<':
			put_str(b, "&lt;");
			break;
		case '>':
			put_str(b, "&gt;");
			break;
		case '"':
			put_str(b, "&quot;");
			break;
		case '\'':
			put_str(b, "&apos;");
			break;
		default:
			put(b, s, 1);
		}
	}
}

/* The text of <tag>...</tag> in an answer, printable ASCII only, at most cap-1. */
static bool xml_field(const char *body, const char *tag, char *out, size_t cap)
{
	char open[32], close[32];
	const char *a, *z;
	size_t n = 0;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	if (!body || !(a = strstr(body, open)))
		return false;
	a += strlen(open);
	if (!(z = strstr(a, close)))
		return false;
	for (; a < z && n + 1 < cap; a++)
		out[n++] = (*a >= 0x20 && *a < 0x7f) ? *a : '?';
	out[n] = '\0';
	return true;
}

static int send_inforu(struct cw_sms *s, const struct row *r, char *err, size_t errlen)
{
	struct cw_https_resp resp = {0};
	struct buf x = {0};
	char *field = NULL, *body = NULL;
	char status[16], desc[100];
	size_t blen = 0;
	int rc = CW_ERR_NOMEM;

	/* every character escaped is at most 6 bytes */
	x.cap = 512 + 6 * (strlen(r->text) + strlen(s->cfg.inforu_username) +
			   strlen(s->api_token) + strlen(s->cfg.inforu_sender) + strlen(r->to));
	if (!(x.p = malloc(x.cap))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	x.p[0] = '\0';
	put_str(&x, "<Inforu><User><Username>");
	put_xml(&x, s->cfg.inforu_username);
	put_str(&x, "</Username><ApiToken>");
	put_xml(&x, s->api_token);
	put_str(&x, "</ApiToken></User><Content Type=\"sms\"><Message>");
	put_xml(&x, r->text);
	put_str(&x, "</Message></Content><Recipients><PhoneNumber>");
	put_xml(&x, r->to + 1); /* digits without '+' */
	put_str(&x, "</PhoneNumber></Recipients><Settings><Sender>");
	put_xml(&x, s->cfg.inforu_sender);
	put_str(&x, "</Sender></Settings></Inforu>");
	/* curl ignores the handle since 7.82 */
	if (!(field = curl_easy_escape(NULL, x.p, (int)x.len))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	blen = strlen("InforuXML=") + strlen(field);
	if (!(body = malloc(blen + 1))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	snprintf(body, blen + 1, "InforuXML=%s", field);
	rc = cw_https_post(s->http, s->cfg.inforu_url, NULL, "application/x-www-form-urlencoded",
			   body, blen, &resp);
	if (rc) {
		snprintf(err, errlen, "%s: %s", cw_errname(rc), resp.err);
	} else if (resp.status < 200 || resp.status > 299) {
		snprintf(err, errlen, "http %ld", resp.status);
		rc = CW_ERR_PROTO;
	} else if (!xml_field(resp.body, "Status", status, sizeof(status))) {
		snprintf(err, errlen, "inforu: no <Status> in the answer");
		rc = CW_ERR_PROTO;
	} else if (strcmp(status, "1") != 0) {
		if (!xml_field(resp.body, "Description", desc, sizeof(desc)))
			desc[0] = '\0';
		snprintf(err, errlen, "inforu status %s: %s", status, desc);
		rc = CW_ERR_PROTO;
	}
out:
	cw_https_resp_clear(&resp);
	if (x.p) {
		sodium_memzero(x.p, x.cap);
		free(x.p);
	}
	if (field) {
		sodium_memzero(field, strlen(field));
		curl_free(field);
	}
	if (body) {
		sodium_memzero(body, blen);
		free(body);
	}
	return rc;
}

/* Development only: "to text" lines, control characters as spaces. */
static int send_log(struct cw_sms *s, const struct row *r, char *err, size_t errlen)
{
	char line[24 + CW_SMS_TEXT_MAX + 2];
	int fd, n, rc = CW_OK;

	n = snprintf(line, sizeof(line), "%s %s\n", r->to, r->text);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	for (int i = (int)strlen(r->to) + 1; i < n - 1; i++)
		if ((unsigned char)line[i] < 0x20)
			line[i] = ' ';
	fd = open(s->cfg.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line, (size_t)n) != n) {
		snprintf(err, errlen, "log file: %s", strerror(errno));
		rc = CW_ERR_IO;
	}
	if (fd >= 0)
		close(fd);
	sodium_memzero(line, sizeof(line));
	return rc;
}

/* ---- the queue ---- */

static void row_clear(struct row *r)
{
	if (r->text) {
		sodium_memzero(r->text, strlen(r->text));
		free(r->text);
	}
	memset(r, 0, sizeof(*r));
}

/* Deletes the rows past their expiry, logs and records each. */
static void expire_rows(struct cw_sms *s, int64_t now)
{
	struct {
		int64_t id;
		char to[20];
		int attempts;
	} gone[32];
	sqlite3_stmt *st = NULL;
	int n = 0;

	cw_engine_lock(s->e);
	if (sqlite3_prepare_v2(db(s),
			       "SELECT id, \"to\", attempts FROM sms_outbox WHERE expires_wall_ms <= ? "
			       "ORDER BY id LIMIT 32",
			       -1, &st, NULL) != SQLITE_OK) {
		db_failed(s, "expire.select");
		goto out;
	}
	sqlite3_bind_int64(st, 1, now);
	while (n < 32 && sqlite3_step(st) == SQLITE_ROW) {
		gone[n].id = sqlite3_column_int64(st, 0);
		snprintf(gone[n].to, sizeof(gone[n].to), "%s",
			 (const char *)sqlite3_column_text(st, 1));
		gone[n].attempts = sqlite3_column_int(st, 2);
		n++;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (n == 0)
		goto out;
	if (sqlite3_prepare_v2(db(s), "DELETE FROM sms_outbox WHERE id = ?", -1, &st, NULL) !=
	    SQLITE_OK) {
		db_failed(s, "expire.delete");
		n = 0;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		/* recorded before the row goes: cw_sms_wait looks in both places */
		record(s, gone[i].id, CW_SMS_EXPIRED);
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, gone[i].id);
		if (sqlite3_step(st) != SQLITE_DONE) {
			db_failed(s, "expire.delete");
			n = i;
			break;
		}
	}
out:
	sqlite3_finalize(st);
	cw_engine_unlock(s->e);
	for (int i = 0; i < n; i++) {
		char masked[24];
		mask_phone(gone[i].to, masked);
		cw_warn("sms", "id=%lld to=%s state=expired attempts=%d", (long long)gone[i].id,
			masked, gone[i].attempts);
	}
}

/* The oldest due row into *r (true), else false with *next_wall_ms the time
 * something becomes due or expires (INT64_MAX: queue empty). */
static bool next_row(struct cw_sms *s, int64_t now, struct row *r, int64_t *next_wall_ms)
{
	sqlite3_stmt *st = NULL;
	bool found = false;
	bool send = s->cfg.provider != CW_SMS_NONE;

	*next_wall_ms = INT64_MAX;
	cw_engine_lock(s->e);
	if (send) {
		if (sqlite3_prepare_v2(db(s),
				       "SELECT id, \"to\", text, attempts FROM sms_outbox "
				       "WHERE next_try <= ? ORDER BY id LIMIT 1",
				       -1, &st, NULL) != SQLITE_OK) {
			db_failed(s, "next.select");
			*next_wall_ms = now + 1000;
			goto out;
		}
		sqlite3_bind_int64(st, 1, now);
		if (sqlite3_step(st) == SQLITE_ROW) {
			const char *to = (const char *)sqlite3_column_text(st, 1);
			const char *text = (const char *)sqlite3_column_text(st, 2);
			r->id = sqlite3_column_int64(st, 0);
			snprintf(r->to, sizeof(r->to), "%s", to ? to : "");
			r->text = strdup(text ? text : "");
			r->attempts = sqlite3_column_int(st, 3);
			found = r->text != NULL;
			if (!found)
				*next_wall_ms = now + 1000;
			goto out;
		}
		sqlite3_finalize(st);
		st = NULL;
	}
	if (sqlite3_prepare_v2(db(s),
			       send ? "SELECT MIN(MIN(next_try, expires_wall_ms)) FROM sms_outbox"
				    : "SELECT MIN(expires_wall_ms) FROM sms_outbox",
			       -1, &st, NULL) != SQLITE_OK) {
		db_failed(s, "next.min");
		*next_wall_ms = now + 1000;
		goto out;
	}
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		*next_wall_ms = sqlite3_column_int64(st, 0);
out:
	sqlite3_finalize(st);
	cw_engine_unlock(s->e);
	return found;
}

static int64_t backoff_ms(const struct cw_sms *s, int attempts)
{
	int64_t d = s->cfg.backoff_base_ms > 0 ? s->cfg.backoff_base_ms : 1000;

	for (int i = 1; i < attempts && d < BACKOFF_MAX_MS; i++)
		d *= 2;
	return d < BACKOFF_MAX_MS ? d : BACKOFF_MAX_MS;
}

static void attempt(struct cw_sms *s, struct row *r)
{
	char err[256] = "", masked[24];
	sqlite3_stmt *st = NULL;
	int attempts = r->attempts + 1, rc;

	switch (s->cfg.provider) {
	case CW_SMS_WEBHOOK:
		rc = send_webhook(s, r, err, sizeof(err));
		break;
	case CW_SMS_INFORU:
		rc = send_inforu(s, r, err, sizeof(err));
		break;
	case CW_SMS_LOG:
		rc = send_log(s, r, err, sizeof(err));
		break;
	default:
		rc = CW_ERR_INTERNAL;
		break;
	}
	if (atomic_load(&s->stop) && rc == CW_ERR_AGAIN)
		return; /* cancelled by cw_sms_free: not an attempt, tried again at start */
	atomic_store(&s->unreachable, rc != CW_OK);
	mask_phone(r->to, masked);
	/* sent: recorded before the row goes, failing: after the row says so;
	 * cw_sms_wait looks in both places */
	if (rc == CW_OK)
		record(s, r->id, CW_SMS_SENT);

	cw_engine_lock(s->e);
	if (rc == CW_OK) {
		if (sqlite3_prepare_v2(db(s), "DELETE FROM sms_outbox WHERE id = ?", -1, &st,
				       NULL) == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, r->id);
		}
	} else if (sqlite3_prepare_v2(db(s),
				      "UPDATE sms_outbox SET attempts = ?, next_try = ?, "
				      "state = 'failing', last_error = ? WHERE id = ?",
				      -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int(st, 1, attempts);
		sqlite3_bind_int64(st, 2, cw_wall_ms() + backoff_ms(s, attempts));
		sqlite3_bind_text(st, 3, err, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, r->id);
	}
	if (!st || sqlite3_step(st) != SQLITE_DONE)
		db_failed(s, rc == CW_OK ? "sent.delete" : "failed.update");
	sqlite3_finalize(st);
	cw_engine_unlock(s->e);

	if (rc == CW_OK) {
		cw_info("sms", "id=%lld to=%s state=sent attempt=%d", (long long)r->id, masked,
			attempts);
	} else {
		cw_warn("sms", "id=%lld to=%s state=failing attempt=%d retry_in_ms=%lld error=\"%s\"",
			(long long)r->id, masked, attempts, (long long)backoff_ms(s, attempts), err);
		record(s, r->id, CW_SMS_FAILING);
	}
}

static void *sender(void *arg)
{
	struct cw_sms *s = arg;

	while (!atomic_load(&s->stop)) {
		struct row r = {0};
		int64_t now = cw_wall_ms(), next, wait;
		struct timespec ts;

		expire_rows(s, now);
		if (next_row(s, now, &r, &next)) {
			attempt(s, &r);
			row_clear(&r);
			continue;
		}
		/* wall time stored; slept on the monotonic clock, at most 5 s so
		 * that a step of the wall clock is noticed */
		wait = next == INT64_MAX ? IDLE_WAIT_MS : next - cw_wall_ms();
		if (wait > IDLE_WAIT_MS)
			wait = IDLE_WAIT_MS;
		pthread_mutex_lock(&s->mu);
		if (wait > 0 && !s->wake && !atomic_load(&s->stop)) {
			cw_mono_deadline(wait, &ts);
			pthread_cond_timedwait(&s->wake_cv, &s->mu, &ts);
		}
		s->wake = false;
		pthread_mutex_unlock(&s->mu);
	}
	return NULL;
}

int cw_sms_start(struct cw_sms *s)
{
	if (!s || s->started)
		return CW_ERR_INVAL;
	if (pthread_create(&s->thread, NULL, sender, s) != 0)
		return CW_ERR_IO;
	s->started = true;
	return CW_OK;
}

void cw_sms_free(struct cw_sms *s)
{
	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->mu);
		atomic_store(&s->stop, true);
		pthread_cond_broadcast(&s->wake_cv);
		pthread_mutex_unlock(&s->mu);
		cw_https_abort(s->http);
		pthread_join(s->thread, NULL);
	}
	cw_https_free(s->http);
	sodium_memzero(s->bearer, sizeof(s->bearer));
	sodium_memzero(s->api_token, sizeof(s->api_token));
	pthread_cond_destroy(&s->wake_cv);
	pthread_cond_destroy(&s->done_cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int cw_sms_enqueue(struct cw_sms *s, const char *to_e164, const char *text,
		   int64_t expires_wall_ms, int64_t *id)
{
	sqlite3_stmt *st = NULL;
	int64_t now = cw_wall_ms(), rowid = 0;
	char masked[24];
	size_t n;
	int rc = CW_ERR_DB;

	if (id)
		*id = 0;
	if (!s || !e164_ok(to_e164) || !text)
		return CW_ERR_INVAL;
	n = strlen(text);
	if (n == 0)
		return CW_ERR_INVAL;
	if (n > CW_SMS_TEXT_MAX)
		return CW_ERR_TOOBIG;
	if (s->cfg.provider == CW_SMS_NONE)
		return CW_ERR_OFFLINE;

	cw_engine_lock(s->e);
	if (sqlite3_prepare_v2(db(s),
			       "INSERT INTO sms_outbox (\"to\", text, created, expires_wall_ms, "
			       "next_try) VALUES (?, ?, ?, ?, ?)",
			       -1, &st, NULL) != SQLITE_OK) {
		db_failed(s, "enqueue");
		goto unlock;
	}
	sqlite3_bind_text(st, 1, to_e164, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, text, (int)n, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int64(st, 4, expires_wall_ms);
	sqlite3_bind_int64(st, 5, now);
	if (sqlite3_step(st) != SQLITE_DONE) {
		db_failed(s, "enqueue");
		goto unlock;
	}
	rowid = sqlite3_last_insert_rowid(db(s));
	rc = CW_OK;
unlock:
	sqlite3_finalize(st);
	cw_engine_unlock(s->e);
	if (rc)
		return rc;
	if (id)
		*id = rowid;
	mask_phone(to_e164, masked);
	cw_info("sms", "id=%lld to=%s state=queued expires_in_s=%lld", (long long)rowid, masked,
		(long long)((expires_wall_ms - now) / 1000));
	pthread_mutex_lock(&s->mu);
	s->wake = true;
	pthread_cond_signal(&s->wake_cv);
	pthread_mutex_unlock(&s->mu);
	return CW_OK;
}

/* Whether the row is still queued (true) and its state. */
static bool queued(struct cw_sms *s, int64_t id, enum cw_sms_state *st)
{
	sqlite3_stmt *q = NULL;
	bool found = false;

	cw_engine_lock(s->e);
	if (sqlite3_prepare_v2(db(s), "SELECT state FROM sms_outbox WHERE id = ?", -1, &q,
			       NULL) == SQLITE_OK) {
		sqlite3_bind_int64(q, 1, id);
		if (sqlite3_step(q) == SQLITE_ROW) {
			const char *v = (const char *)sqlite3_column_text(q, 0);
			*st = v && strcmp(v, "failing") == 0 ? CW_SMS_FAILING : CW_SMS_QUEUED;
			found = true;
		}
	} else {
		db_failed(s, "wait.select");
	}
	sqlite3_finalize(q);
	cw_engine_unlock(s->e);
	return found;
}

int cw_sms_wait(struct cw_sms *s, int64_t id, int timeout_ms, enum cw_sms_state *state)
{
	struct timespec ts;
	enum cw_sms_state st = CW_SMS_QUEUED;
	bool in_db;
	int rc = CW_OK;

	if (!s || !state || id <= 0)
		return CW_ERR_INVAL;
	*state = CW_SMS_QUEUED;
	in_db = queued(s, id, &st);
	cw_mono_deadline(timeout_ms, &ts);
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (lookup(s, id, &st))
			break;
		if (!in_db) {
			rc = CW_ERR_NOTFOUND;
			break;
		}
		if (timeout_ms <= 0 || pthread_cond_timedwait(&s->done_cv, &s->mu, &ts) != 0) {
			if (!lookup(s, id, &st))
				st = CW_SMS_QUEUED;
			break;
		}
	}
	pthread_mutex_unlock(&s->mu);
	*state = st;
	return rc;
}

const char *cw_sms_health(struct cw_sms *s)
{
	if (!s || s->cfg.provider == CW_SMS_NONE)
		return "off";
	return atomic_load(&s->unreachable) ? "unreachable" : "ok";
}
