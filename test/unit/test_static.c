/* test_static.c - cw_static (the kiosk page's files) behind a real
 * libmicrohttpd daemon, fetched with libcurl exactly as sent (no path
 * normalisation by the client).
 *
 * Served: index.html for "/" and "dir/", the whitelisted extensions with
 * their Content-Type, the size bound; refused: "..", encoded "..", hidden
 * names, unknown extensions, symbolic links, directories, FIFOs, a missing
 * root; every answer carries the security headers. */
#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cw_error.h"
#include "cw_static.h"
#include "cw_testutil.h"

#define CSP "default-src 'self'; img-src 'self' data:"

static char dir[256], root[512];
static struct MHD_Daemon *d;
static int port;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct MHD_Response *resp;
	unsigned status = 0;
	enum MHD_Result ret;

	(void)cls, (void)method, (void)version, (void)upload, (void)upload_size, (void)con_cls;
	resp = cw_static_response(root, url, &status);
	if (!resp)
		return MHD_NO;
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void put(const char *rel, const char *text)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

static void put_size(const char *rel, off_t size)
{
	char path[1024];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, size), 0);
	close(fd);
}

static void setup(void)
{
	char path[1024];

	ck_assert_int_eq(cw_test_tmpdir(dir, sizeof(dir)), CW_OK);
	snprintf(root, sizeof(root), "%s/www", dir);
	ck_assert_int_eq(mkdir(root, 0755), 0);
	put("index.html", "<!doctype html><title>kiosk</title>");
	put("kiosk.css", "body{}");
	put("kiosk.js", "'use strict';");
	put("i18n.json", "{}");
	put("notes.md", "# not served");
	put("Makefile", "all:");
	put("kiosk.js.bak", "old");
	put(".hidden.html", "hidden");
	snprintf(path, sizeof(path), "%s/secret.html", dir); /* outside the root */
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("SECRET", f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/sub", root);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	put("sub/index.html", "sub index");
	put("sub/a.svg", "<svg/>");
	snprintf(path, sizeof(path), "%s/dir.html", root);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/link.html", root);
	char target[512];
	snprintf(target, sizeof(target), "%s/secret.html", dir);
	ck_assert_int_eq(symlink(target, path), 0);
	/* symbolic links to directories, out of the root and inside it */
	snprintf(path, sizeof(path), "%s/out", root);
	ck_assert_int_eq(symlink(dir, path), 0);
	snprintf(path, sizeof(path), "%s/lsub", root);
	ck_assert_int_eq(symlink("sub", path), 0);
	snprintf(path, sizeof(path), "%s/fifo.html", root);
	ck_assert_int_eq(mkfifo(path, 0644), 0);
	put_size("max.js", CW_STATIC_MAX_FILE);
	put_size("big.js", CW_STATIC_MAX_FILE + 1);

	d = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
			     on_request, NULL, MHD_OPTION_END);
	ck_assert_ptr_nonnull(d);
	port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
	MHD_stop_daemon(d);
	curl_global_cleanup();
	cw_test_rmrf(dir);
}

struct resp {
	long status;
	char body[256];
	size_t len;
	double clen;
	char type[64], cache[32], csp[64], nosniff[16], frame[16];
	cJSON *json;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;
	size_t k = sz * n;

	if (r->len + k < sizeof(r->body)) {
		memcpy(r->body + r->len, p, k);
		r->len += k;
	} else {
		r->len = sizeof(r->body); /* too long to keep: only counted */
	}
	return k;
}

static void header(const char *line, size_t len, const char *name, char *out, size_t cap)
{
	size_t n = strlen(name);

	if (len > n + 2 && strncasecmp(line, name, n) == 0 && line[n] == ':')
		snprintf(out, cap, "%.*s", (int)strcspn(line + n + 2, "\r\n"), line + n + 2);
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct resp *r = ud;

	header(p, sz * n, "Content-Type", r->type, sizeof(r->type));
	header(p, sz * n, "Cache-Control", r->cache, sizeof(r->cache));
	header(p, sz * n, "Content-Security-Policy", r->csp, sizeof(r->csp));
	header(p, sz * n, "X-Content-Type-Options", r->nosniff, sizeof(r->nosniff));
	header(p, sz * n, "X-Frame-Options", r->frame, sizeof(r->frame));
	return sz * n;
}

static struct resp fetch(const char *method, const char *path)
{
	struct resp r;
	char url[1024];
	curl_off_t cl = -1;
	CURL *c = curl_easy_init();

	memset(&r, 0, sizeof(r));
	ck_assert_ptr_nonnull(c);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* send "/../x" as it is */
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	r.clen = (double)cl;
	curl_easy_cleanup(c);
	r.body[r.len < sizeof(r.body) ? r.len : sizeof(r.body) - 1] = '\0';
	r.json = cJSON_Parse(r.body);
	/* every answer, file or error */
	ck_assert_str_eq(r.csp, CSP);
	ck_assert_str_eq(r.nosniff, "nosniff");
	ck_assert_str_eq(r.frame, "DENY");
	return r;
}

static void ck_ok(const char *path, const char *type, const char *body, const char *cache)
{
	struct resp r = fetch("GET", path);

	ck_assert_msg(r.status == 200, "%s: status %ld", path, r.status);
	ck_assert_str_eq(r.type, type);
	ck_assert_str_eq(r.cache, cache);
	if (body)
		ck_assert_str_eq(r.body, body);
	cJSON_Delete(r.json);
}

static void ck_refused(const char *path, long status, const char *code)
{
	struct resp r = fetch("GET", path);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(r.json, "error");

	ck_assert_msg(r.status == status, "%s: status %ld, want %ld (%s)", path, r.status, status,
		      r.body);
	ck_assert_str_eq(r.type, "application/json");
	ck_assert_str_eq(r.cache, "no-store");
	ck_assert_msg(strstr(r.body, "SECRET") == NULL, "%s leaked the file outside the root", path);
	ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code")), code);
	ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "message")));
	cJSON_Delete(r.json);
}

START_TEST(serves_files_with_their_types)
{
	ck_ok("/", "text/html; charset=utf-8", "<!doctype html><title>kiosk</title>", "no-store");
	ck_ok("/index.html", "text/html; charset=utf-8", NULL, "no-store");
	ck_ok("/kiosk.css", "text/css; charset=utf-8", "body{}", "no-cache");
	ck_ok("/kiosk.js", "text/javascript; charset=utf-8", "'use strict';", "no-cache");
	ck_ok("/i18n.json", "application/json", "{}", "no-cache");
	ck_ok("/sub/", "text/html; charset=utf-8", "sub index", "no-store");
	ck_ok("/sub/a.svg", "image/svg+xml", "<svg/>", "no-cache");
	/* a query string is not part of the path MHD hands over */
	ck_ok("/kiosk.css?v=2", "text/css; charset=utf-8", "body{}", "no-cache");
}
END_TEST

START_TEST(head_has_no_body)
{
	struct resp r = fetch("HEAD", "/");

	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.len, 0);
	ck_assert(r.clen == (double)strlen("<!doctype html><title>kiosk</title>"));
	cJSON_Delete(r.json);
}
END_TEST

START_TEST(traversal_and_odd_names_are_404)
{
	static const char *const bad[] = {
		"/../secret.html", "/sub/../../secret.html", "/sub/../index.html",
		"/%2e%2e/secret.html", "/%2E%2E%2Fsecret.html", "/sub/%2e%2e/%2e%2e/secret.html",
		"/..%2fsecret.html", "/./index.html", "/.hidden.html", "/%2ehidden.html",
		"//index.html", "/sub//index.html", "/index.html/", "/sub\\..\\..\\secret.html",
		"/in%20dex.html", "/index%25.html", "/caf%C3%A9.html", "/nope.html",
		"/link.html", "/dir.html", "/fifo.html", "/sub", "/out/secret.html",
		"/out/www/index.html", "/lsub/a.svg", "/lsub/",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_refused(bad[i], 404, "not_found");
}
END_TEST

START_TEST(unknown_extensions_are_404)
{
	ck_refused("/notes.md", 404, "not_found");
	ck_refused("/Makefile", 404, "not_found");
	ck_refused("/kiosk.js.bak", 404, "not_found");
	ck_refused("/kiosk.", 404, "not_found");
	ck_assert_ptr_null(cw_static_type("a.exe"));
	ck_assert_ptr_null(cw_static_type("noext"));
	ck_assert_ptr_null(cw_static_type(".x/y"));
	ck_assert_ptr_null(cw_static_type(NULL));
	ck_assert_str_eq(cw_static_type("a.b.png"), "image/png");
	ck_assert_str_eq(cw_static_type("f.woff2"), "font/woff2");
	ck_assert_str_eq(cw_static_type("favicon.ico"), "image/x-icon");
}
END_TEST

START_TEST(size_is_bounded)
{
	struct resp r = fetch("HEAD", "/max.js");

	ck_assert_int_eq(r.status, 200);
	ck_assert(r.clen == (double)CW_STATIC_MAX_FILE);
	cJSON_Delete(r.json);
	ck_refused("/big.js", 500, "too_big");
}
END_TEST

START_TEST(long_urls_and_missing_root)
{
	char url[600];
	unsigned status = 0;
	struct MHD_Response *resp;

	url[0] = '/';
	memset(url + 1, 'a', sizeof(url) - 7);
	memcpy(url + sizeof(url) - 6, ".html", 6);
	ck_refused(url, 404, "not_found");

	resp = cw_static_response("/nonexistent/cartwise", "/", &status);
	ck_assert_ptr_nonnull(resp);
	ck_assert_uint_eq(status, 404);
	ck_assert_str_eq(MHD_get_response_header(resp, "X-Frame-Options"), "DENY");
	MHD_destroy_response(resp);
	status = 0;
	resp = cw_static_response("", "/", &status);
	ck_assert_ptr_nonnull(resp);
	ck_assert_uint_eq(status, 404);
	MHD_destroy_response(resp);
	status = 0;
	resp = cw_static_response(root, "index.html", &status); /* not a path */
	ck_assert_ptr_nonnull(resp);
	ck_assert_uint_eq(status, 404);
	MHD_destroy_response(resp);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("static");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, serves_files_with_their_types);
	tcase_add_test(tc, head_has_no_body);
	tcase_add_test(tc, traversal_and_odd_names_are_404);
	tcase_add_test(tc, unknown_extensions_are_404);
	tcase_add_test(tc, size_is_bounded);
	tcase_add_test(tc, long_urls_and_missing_root);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
