/* test_sms.c - text messages (src/edge/cw_sms.c): the "sms" config section,
 * the webhook and Inforu providers against an in-process fake gateway
 * (libmicrohttpd on a free loopback port), retries after a 500, a gateway
 * not listening and an Inforu refusal, durability across a restart,
 * expiry, the log provider, and what stays in the database file and the
 * log (never the text, never the whole phone). The engine runs against a
 * fake lock bus. */
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_clock.h"
#include "cw_config.h"
#include "cw_edb.h"
#include "cw_engine.h"
#include "cw_error.h"
#include "cw_log.h"
#include "cw_sms.h"
#include "cw_testutil.h"

#define PHONE "+972521234567"
/* Hebrew, English and every XML metacharacter */
#define TEXT "קוד הכניסה שלך: 482913 — your CartWise code <b> & \"x\" 'y'"

static char dir[256];
static char dbpath[320];
static char tokfile[320];
static struct cw_engine *e;
static struct cw_sms *sms;

static int fake_unlock(void *ctx, int bus, int board, int lock, int64_t *latency_ms)
{
	(void)ctx;
	(void)bus;
	(void)board;
	(void)lock;
	*latency_ms = 1;
	return CW_OK;
}

/* ---- the fake gateway ---- */

enum gw_mode { GW_OK, GW_500, GW_INFORU_OK, GW_INFORU_REFUSE };

static struct {
	pthread_mutex_t mu;
	struct MHD_Daemon *d;
	int port;
	enum gw_mode mode;
	int hits;
	char path[128];
	char auth[256];
	char ctype[128];
	char body[16384];
} gw = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct upload {
	char buf[16384];
	size_t len;
};

static enum MHD_Result on_gw(void *cls, struct MHD_Connection *c, const char *url,
			     const char *method, const char *version, const char *data,
			     size_t *data_size, void **con_cls)
{
	struct upload *u = *con_cls;
	struct MHD_Response *r;
	const char *answer, *h;
	unsigned status = 200;
	enum MHD_Result ret;

	(void)cls;
	(void)version;
	if (!u) {
		u = calloc(1, sizeof(*u));
		*con_cls = u;
		return u ? MHD_YES : MHD_NO;
	}
	if (*data_size) {
		size_t n = *data_size;
		if (n > sizeof(u->buf) - 1 - u->len)
			n = sizeof(u->buf) - 1 - u->len;
		memcpy(u->buf + u->len, data, n);
		u->len += n;
		*data_size = 0;
		return MHD_YES;
	}
	pthread_mutex_lock(&gw.mu);
	gw.hits++;
	snprintf(gw.path, sizeof(gw.path), "%s %s", method, url);
	h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	snprintf(gw.auth, sizeof(gw.auth), "%s", h ? h : "");
	h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	snprintf(gw.ctype, sizeof(gw.ctype), "%s", h ? h : "");
	memcpy(gw.body, u->buf, u->len + 1);
	switch (gw.mode) {
	case GW_OK:
		answer = "{\"ok\":true}";
		break;
	case GW_500:
		answer = "oops";
		status = 500;
		break;
	case GW_INFORU_OK:
		answer = "<Result><Status>1</Status><Description>Message accepted successfully"
			 "</Description><NumberOfRecipients>1</NumberOfRecipients></Result>";
		break;
	default:
		answer = "<Result><Status>-2</Status><Description>Invalid username or "
			 "password</Description><NumberOfRecipients>0</NumberOfRecipients>"
			 "</Result>";
		break;
	}
	pthread_mutex_unlock(&gw.mu);
	r = MHD_create_response_from_buffer(strlen(answer), (void *)answer,
					    MHD_RESPMEM_PERSISTENT);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static void on_gw_done(void *cls, struct MHD_Connection *c, void **con_cls,
		       enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	free(*con_cls);
	*con_cls = NULL;
}

/* port 0: any free port (kept in gw.port) */
static void gw_start(int port, enum gw_mode mode)
{
	const union MHD_DaemonInfo *info;

	pthread_mutex_lock(&gw.mu);
	gw.mode = mode;
	gw.hits = 0;
	gw.body[0] = gw.auth[0] = gw.ctype[0] = gw.path[0] = '\0';
	pthread_mutex_unlock(&gw.mu);
	gw.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port,
				NULL, NULL, on_gw, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_gw_done,
				NULL, MHD_OPTION_END);
	ck_assert_ptr_nonnull(gw.d);
	info = MHD_get_daemon_info(gw.d, MHD_DAEMON_INFO_BIND_PORT);
	ck_assert_ptr_nonnull(info);
	gw.port = info->port;
}

static void gw_stop(void)
{
	if (gw.d)
		MHD_stop_daemon(gw.d);
	gw.d = NULL;
}

static void gw_mode(enum gw_mode m)
{
	pthread_mutex_lock(&gw.mu);
	gw.mode = m;
	pthread_mutex_unlock(&gw.mu);
}

static int gw_hits(void)
{
	int n;

	pthread_mutex_lock(&gw.mu);
	n = gw.hits;
	pthread_mutex_unlock(&gw.mu);
	return n;
}

/* A loopback port nothing listens on (bound, then closed). */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* ---- engine and database ---- */

static void engine_open(void)
{
	static struct cw_cart_map map[1] = {{.number = 1}};
	struct cw_engine_config cfg;
	struct cw_engine_hw hw = {.unlock = fake_unlock};

	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.db_path, sizeof(cfg.db_path), "%s", dbpath);
	snprintf(cfg.chain_id, sizeof(cfg.chain_id), "chain-1");
	snprintf(cfg.branch_id, sizeof(cfg.branch_id), "branch-1");
	snprintf(cfg.device_id, sizeof(cfg.device_id), "device-1");
	cw_rules_defaults(&cfg.rules);
	cfg.ncarts = 1;
	cfg.carts = map;
	ck_assert_int_eq(cw_engine_new(&cfg, &hw, &e), CW_OK);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void setup(void)
{
	cw_log_set_level(CW_LOG_INFO);
	ck_assert_int_ge(sodium_init(), 0);
	ck_assert_int_eq(cw_test_tmpdir(dir, sizeof(dir)), CW_OK);
	snprintf(dbpath, sizeof(dbpath), "%s/edge.db", dir);
	snprintf(tokfile, sizeof(tokfile), "%s/token", dir);
	write_file(tokfile, "tok-Secret-42\n");
	engine_open();
	sms = NULL;
}

static void teardown(void)
{
	cw_sms_free(sms);
	sms = NULL;
	gw_stop();
	cw_engine_free(e);
	e = NULL;
	cw_test_rmrf(dir);
}

static long long qdb(const char *sql)
{
	long long v = cw_test_db_int(dbpath, sql);

	ck_assert_msg(v != -2, "cannot read %s: %s", dbpath, sql);
	return v;
}

static void webhook_cfg(struct cw_sms_config *c, int port)
{
	cw_sms_config_defaults(c);
	c->provider = CW_SMS_WEBHOOK;
	snprintf(c->webhook_url, sizeof(c->webhook_url), "http://127.0.0.1:%d/hook", port);
	snprintf(c->webhook_bearer_token_file, sizeof(c->webhook_bearer_token_file), "%s",
		 tokfile);
	c->timeout_s = 2;
}

static void inforu_cfg(struct cw_sms_config *c, int port)
{
	cw_sms_config_defaults(c);
	c->provider = CW_SMS_INFORU;
	snprintf(c->inforu_url, sizeof(c->inforu_url), "http://127.0.0.1:%d/SendMessageXml.ashx",
		 port);
	snprintf(c->inforu_username, sizeof(c->inforu_username), "shop&co");
	snprintf(c->inforu_api_token_file, sizeof(c->inforu_api_token_file), "%s", tokfile);
	snprintf(c->inforu_sender, sizeof(c->inforu_sender), "CartWise");
	c->timeout_s = 2;
}

static void start(const struct cw_sms_config *c)
{
	ck_assert_int_eq(cw_sms_new(c, e, &sms), CW_OK);
	ck_assert_int_eq(cw_sms_start(sms), CW_OK);
}

static int64_t enqueue(int64_t ttl_ms)
{
	int64_t id = 0;

	ck_assert_int_eq(cw_sms_enqueue(sms, PHONE, TEXT, cw_wall_ms() + ttl_ms, &id), CW_OK);
	ck_assert_int_gt(id, 0);
	return id;
}

/* Polls until the queue is empty (true) or ms pass. */
static bool drained(int ms)
{
	for (int64_t end = cw_mono_ms() + ms; cw_mono_ms() < end; usleep(20000))
		if (qdb("SELECT COUNT(*) FROM sms_outbox") == 0)
			return true;
	return false;
}

/* ---- config ---- */

#define HEAD                                                                                      \
	"{\"chain_id\":\"c\",\"branch_id\":\"b\",\"device_id\":\"d\",\"data_dir\":\"/tmp/cwd\","    \
	"\"api\":{\"admin_token\":\"0123456789abcdef\"},"                                         \
	"\"buses\":[{\"name\":\"b0\",\"port\":\"/dev/ttyUSB0\",\"protocol\":\"modbus\","          \
	"\"boards\":[{\"address\":1,\"locks\":2}]}]"

static struct cw_edge_config ecfg;

/* Parses HEAD + ,"sms": sms_json + } */
static int parse_sms(const char *sms_json, char *err, size_t errlen)
{
	char json[4096];

	snprintf(json, sizeof(json), "%s%s%s}", HEAD, sms_json ? ",\"sms\":" : "",
		 sms_json ? sms_json : "");
	return cw_edge_config_parse(json, strlen(json), &ecfg, err, errlen);
}

static void bad(const char *sms_json, const char *want)
{
	char err[512];

	ck_assert_int_eq(parse_sms(sms_json, err, sizeof(err)), CW_ERR_CONFIG);
	ck_assert_msg(strstr(err, want), "error \"%s\" lacks \"%s\"", err, want);
	ck_assert_msg(!strstr(err, "Secret"), "error echoes a secret: %s", err);
}

START_TEST(config_defaults_and_keys)
{
	char err[512], json[1024];

	ck_assert_int_eq(parse_sms(NULL, err, sizeof(err)), CW_OK);
	ck_assert_int_eq(ecfg.sms.provider, CW_SMS_NONE);
	ck_assert(ecfg.sms.production);
	ck_assert_int_eq(ecfg.sms.timeout_s, 5);
	ck_assert_str_eq(ecfg.sms.inforu_url, CW_SMS_INFORU_URL);
	ck_assert_str_eq(ecfg.sms.log_file, "/tmp/cwd/sms-dev.log");

	snprintf(json, sizeof(json),
		 "{\"provider\":\"inforu\",\"timeout_s\":9,\"inforu\":{\"username\":\"u1\","
		 "\"api_token_file\":\"%s\",\"sender\":\"CartWise\"},"
		 "\"webhook\":{\"url\":\"https://gw.example/send\"}}",
		 tokfile);
	ck_assert_int_eq(parse_sms(json, err, sizeof(err)), CW_OK);
	ck_assert_int_eq(ecfg.sms.provider, CW_SMS_INFORU);
	ck_assert_int_eq(ecfg.sms.timeout_s, 9);
	ck_assert_str_eq(ecfg.sms.inforu_username, "u1");
	ck_assert_str_eq(ecfg.sms.inforu_sender, "CartWise");
	ck_assert_str_eq(ecfg.sms.inforu_api_token_file, tokfile);
	ck_assert_str_eq(ecfg.sms.webhook_url, "https://gw.example/send");

	/* http:// only to loopback */
	ck_assert_int_eq(parse_sms("{\"provider\":\"webhook\",\"webhook\":{\"url\":"
				   "\"http://127.0.0.1:9/x\"}}",
				   err, sizeof(err)),
			 CW_OK);
	bad("{\"provider\":\"webhook\",\"webhook\":{\"url\":\"http://gw.example/x\"}}",
	    "sms.webhook.url: http:// is refused");
	bad("{\"provider\":\"webhook\",\"webhook\":{\"url\":\"https://u:p@gw.example/x\"}}",
	    "sms.webhook.url:");
	bad("{\"provider\":\"webhook\"}", "sms.webhook");
	bad("{\"provider\":\"webhook\",\"webhook\":{}}", "sms.webhook.url");
	bad("{\"provider\":\"webhook\",\"webhook\":{\"url\":\"https://gw/x\",\"token\":\"t\"}}",
	    "sms.webhook.token");
	bad("{\"provider\":\"sms77\"}", "sms.provider: expected \"webhook\"");
	bad("{\"provider\":1}", "sms.provider");
	bad("{\"timeout_s\":0}", "sms.timeout_s");
	bad("{\"production\":\"no\"}", "sms.production");
	bad("{\"colour\":1}", "sms.colour");
	bad("{\"provider\":\"inforu\",\"inforu\":{\"username\":\"u\",\"sender\":\"CW\"}}",
	    "sms.inforu.api_token_file");
	bad("{\"provider\":\"inforu\",\"inforu\":{\"username\":\"u\",\"sender\":\"CW\","
	    "\"api_token_file\":\"relative/token\"}}",
	    "sms.inforu.api_token_file: expected an absolute path");
	bad("{\"provider\":\"inforu\",\"inforu\":{\"username\":\"u\",\"sender\":\"CW\","
	    "\"api_token_file\":\"/nonexistent/token\"}}",
	    "sms.inforu.api_token_file: cannot read the file");
	snprintf(json, sizeof(json),
		 "{\"provider\":\"inforu\",\"inforu\":{\"username\":\"u\",\"api_token_file\":"
		 "\"%s\",\"sender\":\"A very long sender\"}}",
		 tokfile);
	bad(json, "sms.inforu.sender");
	/* a token file of two words: refused without its content */
	write_file(tokfile, "tok Secret\n");
	snprintf(json, sizeof(json),
		 "{\"provider\":\"webhook\",\"webhook\":{\"url\":\"https://gw/x\","
		 "\"bearer_token_file\":\"%s\"}}",
		 tokfile);
	bad(json, "sms.webhook.bearer_token_file: the file must hold one line");
}
END_TEST

START_TEST(log_provider_refused_in_production)
{
	struct cw_sms_config c;
	char err[512], json[1024], line[256] = "";
	FILE *f;
	enum cw_sms_state st;
	int64_t id;

	bad("{\"provider\":\"log\"}", "sms.provider: \"log\" is for development only");
	bad("{\"provider\":\"log\",\"production\":true}", "sms.provider: \"log\"");
	snprintf(json, sizeof(json),
		 "{\"provider\":\"log\",\"production\":false,\"log\":{\"file\":\"%s/dev.log\"}}",
		 dir);
	ck_assert_int_eq(parse_sms(json, err, sizeof(err)), CW_OK);
	c = ecfg.sms;
	/* the module refuses it too when built by hand */
	c.production = true;
	ck_assert_int_eq(cw_sms_new(&c, e, &sms), CW_ERR_CONFIG);
	ck_assert_ptr_null(sms);

	c.production = false;
	start(&c);
	id = enqueue(60000);
	ck_assert_int_eq(cw_sms_wait(sms, id, 3000, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_SENT);
	snprintf(json, sizeof(json), "%s/dev.log", dir);
	f = fopen(json, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	ck_assert_str_eq(line, PHONE " " TEXT "\n");
	ck_assert(drained(2000));
}
END_TEST

/* ---- providers ---- */

START_TEST(webhook_body_and_bearer)
{
	struct cw_sms_config c;
	enum cw_sms_state st;
	cJSON *body;
	char logpath[320], logbuf[8192] = "";
	int saved;
	int64_t id;

	gw_start(0, GW_OK);
	webhook_cfg(&c, gw.port);
	/* the log of this test, to check what it says and what it never says */
	snprintf(logpath, sizeof(logpath), "%s/stderr.log", dir);
	saved = cw_test_stderr_to(logpath);
	ck_assert_int_ge(saved, 0);

	start(&c);
	ck_assert_str_eq(cw_sms_health(sms), "ok");
	id = enqueue(60000);
	ck_assert_int_eq(cw_sms_wait(sms, id, 3000, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_SENT);
	ck_assert(drained(2000));
	/* the sender logs "sent" just after it deletes the row: wait for the
	 * line before stderr goes back (a busy machine showed the race) */
	for (int64_t end = cw_mono_ms() + 2000; cw_mono_ms() < end; usleep(20000)) {
		FILE *f = fopen(logpath, "r");
		size_t n = f ? fread(logbuf, 1, sizeof(logbuf) - 1, f) : 0;

		if (f)
			fclose(f);
		logbuf[n] = '\0';
		if (strstr(logbuf, "state=sent"))
			break;
	}

	ck_assert_int_gt(cw_test_stderr_back(saved, logpath, logbuf, sizeof(logbuf)), 0);

	ck_assert_int_eq(gw_hits(), 1);
	ck_assert_str_eq(gw.path, "POST /hook");
	ck_assert_str_eq(gw.auth, "Bearer tok-Secret-42");
	ck_assert_str_eq(gw.ctype, "application/json");
	body = cJSON_Parse(gw.body);
	ck_assert_ptr_nonnull(body);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(body, "to")), PHONE);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(body, "text")), TEXT);
	ck_assert_int_eq(cJSON_GetArraySize(body), 2);
	cJSON_Delete(body);
	ck_assert_str_eq(cw_sms_health(sms), "ok");
	/* the outcome is remembered; an unknown id is not */
	ck_assert_int_eq(cw_sms_wait(sms, id, 0, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_SENT);
	ck_assert_int_eq(cw_sms_wait(sms, id + 100, 0, &st), CW_ERR_NOTFOUND);

	fputs(logbuf, stderr);
	ck_assert_msg(strstr(logbuf, "to=+972*******67 state=sent attempt=1"), "%s", logbuf);
	ck_assert(!strstr(logbuf, "482913"));
	ck_assert(!strstr(logbuf, "CartWise code"));
	ck_assert(!strstr(logbuf, PHONE));
	ck_assert(!strstr(logbuf, "Secret"));
}
END_TEST

/* Undoes put_xml's five entities. */
static void xml_unescape(char *s)
{
	static const char *const ent[][2] = {
		{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}, {"&amp;", "&"}};
	char *w = s;

	while (*s) {
		size_t i;
		for (i = 0; i < 5; i++) {
			size_t n = strlen(ent[i][0]);
			if (strncmp(s, ent[i][0], n) == 0) {
				*w++ = ent[i][1][0];
				s += n;
				break;
			}
		}
		if (i == 5)
			*w++ = *s++;
	}
	*w = '\0';
}

/* The text between <tag> and </tag> of xml, malloc'd. */
static char *between(const char *xml, const char *open, const char *close)
{
	const char *a = strstr(xml, open), *z;

	ck_assert_msg(a, "no %s in %s", open, xml);
	a += strlen(open);
	z = strstr(a, close);
	ck_assert_ptr_nonnull(z);
	return strndup(a, (size_t)(z - a));
}

START_TEST(inforu_request_fields)
{
	struct cw_sms_config c;
	enum cw_sms_state st;
	char *xml, *v;
	int len = 0;
	int64_t id;

	gw_start(0, GW_INFORU_OK);
	inforu_cfg(&c, gw.port);
	start(&c);
	id = enqueue(60000);
	ck_assert_int_eq(cw_sms_wait(sms, id, 3000, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_SENT);
	ck_assert(drained(2000));

	ck_assert_int_eq(gw_hits(), 1);
	ck_assert_str_eq(gw.path, "POST /SendMessageXml.ashx");
	ck_assert_str_eq(gw.ctype, "application/x-www-form-urlencoded");
	ck_assert_str_eq(gw.auth, "");
	ck_assert_int_eq(strncmp(gw.body, "InforuXML=", 10), 0);
	/* one field only, fully percent-encoded */
	ck_assert_ptr_null(strchr(gw.body, '&'));
	ck_assert_ptr_null(strchr(gw.body, '<'));
	xml = curl_easy_unescape(NULL, gw.body + 10, 0, &len);
	ck_assert_ptr_nonnull(xml);
	ck_assert_str_eq(xml, "<Inforu><User><Username>shop&amp;co</Username>"
			      "<ApiToken>tok-Secret-42</ApiToken></User>"
			      "<Content Type=\"sms\"><Message>"
			      "קוד הכניסה שלך: 482913 — your CartWise code &lt;b&gt; &amp; "
			      "&quot;x&quot; &apos;y&apos;</Message></Content>"
			      "<Recipients><PhoneNumber>972521234567</PhoneNumber></Recipients>"
			      "<Settings><Sender>CartWise</Sender></Settings></Inforu>");
	v = between(xml, "<Message>", "</Message>");
	xml_unescape(v);
	ck_assert_str_eq(v, TEXT);
	free(v);
	v = between(xml, "<Username>", "</Username>");
	xml_unescape(v);
	ck_assert_str_eq(v, "shop&co");
	free(v);
	curl_free(xml);
}
END_TEST

/* ---- failures and retries ---- */

START_TEST(http_500_then_recovers)
{
	struct cw_sms_config c;
	enum cw_sms_state st;
	int64_t id, t0;

	gw_start(0, GW_500);
	webhook_cfg(&c, gw.port); /* the real backoff: 1 s first */
	start(&c);
	t0 = cw_wall_ms();
	id = enqueue(60000);
	ck_assert_int_eq(cw_sms_wait(sms, id, 3000, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_FAILING);
	ck_assert_str_eq(cw_sms_health(sms), "unreachable");
	ck_assert_int_eq(qdb("SELECT attempts FROM sms_outbox"), 1);
	ck_assert_int_eq(qdb("SELECT state = 'failing' FROM sms_outbox"), 1);
	ck_assert_int_eq(qdb("SELECT last_error = 'http 500' FROM sms_outbox"), 1);
	ck_assert_int_ge(qdb("SELECT next_try FROM sms_outbox"), t0 + 900);
	ck_assert_int_le(qdb("SELECT next_try FROM sms_outbox"), cw_wall_ms() + 1100);
	gw_mode(GW_OK);
	ck_assert(drained(4000));
	ck_assert_int_eq(gw_hits(), 2);
	ck_assert_str_eq(cw_sms_health(sms), "ok");
	ck_assert_int_eq(cw_sms_wait(sms, id, 0, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_SENT);
}
END_TEST

/* Not listening, then an Inforu refusal (Status -2), then accepted: failing
 * with the reason of each, retried (backoff shortened), sent. */
START_TEST(not_listening_then_refused_then_sent)
{
	struct cw_sms_config c;
	enum cw_sms_state st;
	int port = free_port();
	int64_t id;
	bool refused = false;

	inforu_cfg(&c, port);
	c.backoff_base_ms = 100;
	start(&c);
	id = enqueue(60000);
	ck_assert_int_eq(cw_sms_wait(sms, id, 3000, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_FAILING);
	ck_assert_str_eq(cw_sms_health(sms), "unreachable");
	ck_assert_int_eq(qdb("SELECT last_error LIKE 'offline:%' FROM sms_outbox"), 1);

	gw_start(port, GW_INFORU_REFUSE);
	/* the gateway's reason, kept while it refuses (the row stays) */
	for (int64_t end = cw_mono_ms() + 3000; !refused && cw_mono_ms() < end; usleep(20000))
		refused = qdb("SELECT last_error = 'inforu status -2: Invalid username or "
			      "password' FROM sms_outbox") == 1;
	ck_assert(refused);
	ck_assert_str_eq(cw_sms_health(sms), "unreachable");
	ck_assert_int_ge(qdb("SELECT attempts FROM sms_outbox"), 2);

	gw_mode(GW_INFORU_OK);
	ck_assert(drained(4000));
	ck_assert_int_ge(gw_hits(), 2);
	ck_assert_str_eq(cw_sms_health(sms), "ok");
}
END_TEST

/* ---- durability and expiry ---- */

START_TEST(survives_restart)
{
	struct cw_sms_config c;
	cJSON *body;
	int64_t id, id2;

	gw_start(0, GW_OK);
	webhook_cfg(&c, gw.port);
	/* queued but never started: the process "dies" with it queued */
	ck_assert_int_eq(cw_sms_new(&c, e, &sms), CW_OK);
	id = enqueue(60000);
	cw_sms_free(sms);
	sms = NULL;
	cw_engine_free(e);
	e = NULL;
	ck_assert_int_eq(qdb("SELECT COUNT(*) FROM sms_outbox"), 1);
	ck_assert_int_eq(gw_hits(), 0);

	engine_open();
	start(&c);
	ck_assert(drained(3000));
	ck_assert_int_eq(gw_hits(), 1);
	body = cJSON_Parse(gw.body);
	ck_assert_ptr_nonnull(body);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(body, "text")), TEXT);
	cJSON_Delete(body);
	/* ids are never reused after a delete (cw_sms_wait asks by id) */
	id2 = enqueue(60000);
	ck_assert_int_gt(id2, id);
}
END_TEST

START_TEST(expired_never_sent_and_gone)
{
	struct cw_sms_config c;
	enum cw_sms_state st;
	int64_t id;

	gw_start(0, GW_500);
	webhook_cfg(&c, gw.port);
	start(&c);
	/* expires before the first retry (1 s) */
	id = enqueue(400);
	ck_assert_int_eq(cw_sms_wait(sms, id, 3000, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_FAILING);
	gw_mode(GW_OK);
	ck_assert(drained(3000));
	ck_assert_int_eq(cw_sms_wait(sms, id, 0, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_EXPIRED);
	usleep(800 * 1000); /* past the retry it would have had (1 s after the first) */
	ck_assert_int_eq(gw_hits(), 1);

	/* already expired when queued: no attempt at all */
	id = enqueue(-1000);
	ck_assert_int_eq(cw_sms_wait(sms, id, 3000, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_EXPIRED);
	ck_assert(drained(1000));
	ck_assert_int_eq(gw_hits(), 1);
}
END_TEST

/* The text of a sent message does not stay in the database file. */
START_TEST(sent_text_zeroed_in_file)
{
	struct cw_sms_config c;
	enum cw_sms_state st;
	int64_t id;
	char *buf;
	size_t len;
	FILE *f;
	const char *marker = "MARKER-7f3a9c-UNIQUE-CODE-TEXT";

	gw_start(0, GW_OK);
	webhook_cfg(&c, gw.port);
	start(&c);
	cw_engine_lock(e);
	{
		sqlite3_stmt *q;
		ck_assert_int_eq(sqlite3_prepare_v2(cw_edb_handle(cw_engine_edb(e)),
						    "PRAGMA secure_delete", -1, &q, NULL),
				 SQLITE_OK);
		ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
		ck_assert_int_eq(sqlite3_column_int(q, 0), 1);
		sqlite3_finalize(q);
	}
	cw_engine_unlock(e);
	ck_assert_int_eq(cw_sms_enqueue(sms, PHONE, marker, cw_wall_ms() + 60000, &id), CW_OK);
	ck_assert_int_eq(cw_sms_wait(sms, id, 3000, &st), CW_OK);
	ck_assert_int_eq(st, CW_SMS_SENT);
	ck_assert(drained(2000));
	/* fold the WAL into the file, then look for the text in it */
	cw_engine_lock(e);
	ck_assert_int_eq(sqlite3_exec(cw_edb_handle(cw_engine_edb(e)),
				      "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
			 SQLITE_OK);
	cw_engine_unlock(e);
	f = fopen(dbpath, "rb");
	ck_assert_ptr_nonnull(f);
	buf = malloc(4 * 1024 * 1024);
	ck_assert_ptr_nonnull(buf);
	len = fread(buf, 1, 4 * 1024 * 1024, f);
	fclose(f);
	ck_assert_int_gt(len, 0);
	ck_assert_msg(!memmem(buf, len, marker, strlen(marker)), "the sent text is in edge.db");
	free(buf);
}
END_TEST

START_TEST(enqueue_checks)
{
	struct cw_sms_config c;
	char big[CW_SMS_TEXT_MAX + 2];
	int64_t id;

	cw_sms_config_defaults(&c); /* provider none */
	ck_assert_int_eq(cw_sms_new(&c, e, &sms), CW_OK);
	ck_assert_str_eq(cw_sms_health(sms), "off");
	ck_assert_int_eq(cw_sms_enqueue(sms, PHONE, "hi", cw_wall_ms() + 1000, &id),
			 CW_ERR_OFFLINE);
	cw_sms_free(sms);
	sms = NULL;

	gw_start(0, GW_OK);
	webhook_cfg(&c, gw.port);
	ck_assert_int_eq(cw_sms_new(&c, e, &sms), CW_OK);
	ck_assert_int_eq(cw_sms_enqueue(sms, "0521234567", "hi", cw_wall_ms() + 1000, &id),
			 CW_ERR_INVAL);
	ck_assert_int_eq(cw_sms_enqueue(sms, "+97252x234567", "hi", cw_wall_ms() + 1000, &id),
			 CW_ERR_INVAL);
	ck_assert_int_eq(cw_sms_enqueue(sms, PHONE, "", cw_wall_ms() + 1000, &id), CW_ERR_INVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(cw_sms_enqueue(sms, PHONE, big, cw_wall_ms() + 1000, &id), CW_ERR_TOOBIG);
	ck_assert_int_eq(qdb("SELECT COUNT(*) FROM sms_outbox"), 0);
	/* a URL refused by the parser is refused here too */
	snprintf(c.webhook_url, sizeof(c.webhook_url), "http://gw.example/x");
	cw_sms_free(sms);
	sms = NULL;
	ck_assert_int_eq(cw_sms_new(&c, e, &sms), CW_ERR_CONFIG);
}
END_TEST

static Suite *sms_suite(void)
{
	Suite *s = suite_create("sms");
	TCase *tc = tcase_create("sms");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, config_defaults_and_keys);
	tcase_add_test(tc, log_provider_refused_in_production);
	tcase_add_test(tc, webhook_body_and_bearer);
	tcase_add_test(tc, inforu_request_fields);
	tcase_add_test(tc, http_500_then_recovers);
	tcase_add_test(tc, not_listening_then_refused_then_sent);
	tcase_add_test(tc, survives_restart);
	tcase_add_test(tc, expired_never_sent_and_gone);
	tcase_add_test(tc, sent_text_zeroed_in_file);
	tcase_add_test(tc, enqueue_checks);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sms_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
