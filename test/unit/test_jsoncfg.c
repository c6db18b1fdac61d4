/* test_jsoncfg.c - the shared strict-JSON-config helpers (src/cw_jsoncfg.c). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cw_error.h"
#include "cw_jsoncfg.h"

static char err[512];
static struct cw_jsoncfg ctx;

#define LC CW_JSONCFG_PARSE_LINE_COL
#define COMMENTS (CW_JSONCFG_PARSE_LINE_COL | CW_JSONCFG_PARSE_COMMENTS)

static cJSON *parse_ok(const char *json)
{
	cJSON *root = NULL;

	cw_jsoncfg_init(&ctx, err, sizeof(err));
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, json, strlen(json), 4096, LC, &root), CW_OK);
	ck_assert_ptr_nonnull(root);
	return root;
}

START_TEST(path_building)
{
	size_t top, sub;

	cw_jsoncfg_init(&ctx, err, sizeof(err));
	ck_assert_int_eq(cw_jsoncfg_fail(&ctx, NULL, "top %d", 1), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "top 1");
	ck_assert_int_eq(cw_jsoncfg_fail(&ctx, "k", "bad"), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "k: bad");
	top = cw_jsoncfg_push(&ctx, "buses[%d]", 2);
	sub = cw_jsoncfg_push(&ctx, ".boards[%d]", 1);
	cw_jsoncfg_fail(&ctx, "locks", "x");
	ck_assert_str_eq(err, "buses[2].boards[1].locks: x");
	cw_jsoncfg_fail(&ctx, NULL, "y");
	ck_assert_str_eq(err, "buses[2].boards[1]: y");
	cw_jsoncfg_pop(&ctx, sub);
	{
		size_t m = cw_jsoncfg_enter(&ctx, "api");
		cw_jsoncfg_fail(&ctx, "port", "z");
		ck_assert_str_eq(err, "buses[2].api.port: z");
		cw_jsoncfg_pop(&ctx, m);
	}
	cw_jsoncfg_pop(&ctx, top);
	ck_assert_str_eq(ctx.path, "");
	top = cw_jsoncfg_enter(&ctx, "listen");
	ck_assert_str_eq(ctx.path, "listen");
	cw_jsoncfg_pop(&ctx, top);
	/* a NULL message buffer is allowed */
	cw_jsoncfg_init(&ctx, NULL, 0);
	ck_assert_int_eq(cw_jsoncfg_fail(&ctx, "k", "bad"), CW_ERR_CONFIG);
}
END_TEST

START_TEST(describe_never_echoes_strings)
{
	cJSON *root = parse_ok("{\"s\":\"hunter2-secret\",\"n\":2.5,\"t\":true,\"f\":false,"
			       "\"z\":null,\"a\":[],\"o\":{}}");
	char buf[64];
	int i = 0;

	ck_assert_str_eq(cw_jsoncfg_describe(cJSON_GetObjectItem(root, "s"), buf, sizeof(buf)),
			 "a string");
	ck_assert_str_eq(cw_jsoncfg_describe(cJSON_GetObjectItem(root, "n"), buf, sizeof(buf)), "2.5");
	ck_assert_str_eq(cw_jsoncfg_describe(cJSON_GetObjectItem(root, "t"), buf, sizeof(buf)), "true");
	ck_assert_str_eq(cw_jsoncfg_describe(cJSON_GetObjectItem(root, "f"), buf, sizeof(buf)),
			 "false");
	ck_assert_str_eq(cw_jsoncfg_describe(cJSON_GetObjectItem(root, "z"), buf, sizeof(buf)), "null");
	ck_assert_str_eq(cw_jsoncfg_describe(cJSON_GetObjectItem(root, "a"), buf, sizeof(buf)),
			 "an array");
	ck_assert_str_eq(cw_jsoncfg_describe(cJSON_GetObjectItem(root, "o"), buf, sizeof(buf)),
			 "an object");
	/* a getter's message about the secret names its kind, not its text */
	ck_assert_int_eq(cw_jsoncfg_get_int(&ctx, root, "s", 0, 9, false, &i), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "s: expected an integer 0..9, got a string");
	ck_assert_ptr_null(strstr(err, "hunter2"));
	cJSON_Delete(root);
}
END_TEST

START_TEST(int_range_and_integral)
{
	cJSON *root = parse_ok("{\"big\":1e300,\"neg\":-1e300,\"frac\":3.5,\"ok\":7,\"hi\":11,"
			       "\"b\":1}");
	int v = -1;

	ck_assert_int_eq(cw_jsoncfg_get_int(&ctx, root, "big", 0, 10, false, &v), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "big: expected an integer 0..10, got 1.0000000000000001e+300");
	ck_assert_int_eq(cw_jsoncfg_get_int(&ctx, root, "neg", 0, 10, false, &v), CW_ERR_CONFIG);
	ck_assert_int_eq(cw_jsoncfg_get_int(&ctx, root, "frac", 0, 10, false, &v), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "frac: expected an integer 0..10, got 3.5");
	ck_assert_int_eq(cw_jsoncfg_get_int(&ctx, root, "hi", 0, 10, false, &v), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "hi: expected an integer 0..10, got 11");
	ck_assert_int_eq(v, -1);
	ck_assert_int_eq(cw_jsoncfg_get_int(&ctx, root, "ok", 0, 10, false, &v), CW_OK);
	ck_assert_int_eq(v, 7);
	/* missing: optional leaves the value, required says what was expected */
	ck_assert_int_eq(cw_jsoncfg_get_int(&ctx, root, "none", 0, 10, false, &v), CW_OK);
	ck_assert_int_eq(v, 7);
	ck_assert_int_eq(cw_jsoncfg_get_int(&ctx, root, "none", 0, 10, true, &v), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "none: missing (expected an integer 0..10)");
	{
		bool b = false;
		ck_assert_int_eq(cw_jsoncfg_get_bool(&ctx, root, "b", &b), CW_ERR_CONFIG);
		ck_assert_str_eq(err, "b: expected true or false, got 1");
	}
	cJSON_Delete(root);
}
END_TEST

START_TEST(strings)
{
	cJSON *root = parse_ok("{\"id\":\"ab-1\",\"badid\":\"a b\",\"ctl\":\"a\\u0001\",\"e\":\"\","
			       "\"long\":\"abcdefghij\"}");
	char out[8];

	ck_assert_int_eq(cw_jsoncfg_get_str(&ctx, root, "id", CW_JSONCFG_IDENT, out, sizeof(out)),
			 CW_OK);
	ck_assert_str_eq(out, "ab-1");
	ck_assert_int_eq(cw_jsoncfg_get_str(&ctx, root, "badid", CW_JSONCFG_IDENT, out, sizeof(out)),
			 CW_ERR_CONFIG);
	ck_assert_ptr_null(strstr(err, "a b"));
	ck_assert_int_eq(cw_jsoncfg_get_str(&ctx, root, "ctl", 0, out, sizeof(out)), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "ctl: control characters are not allowed");
	ck_assert_int_eq(cw_jsoncfg_get_str(&ctx, root, "long", 0, out, sizeof(out)), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "long: expected a non-empty string of at most 7 bytes, got 10");
	ck_assert_int_eq(cw_jsoncfg_get_str(&ctx, root, "long", CW_JSONCFG_CLOUD_WORDING, out,
					    sizeof(out)),
			 CW_ERR_CONFIG);
	ck_assert_str_eq(err, "long: expected a non-empty string of at most 7 bytes, got 10 bytes");
	ck_assert_int_eq(cw_jsoncfg_get_str(&ctx, root, "e", 0, out, sizeof(out)), CW_ERR_CONFIG);
	ck_assert_int_eq(cw_jsoncfg_get_str(&ctx, root, "e", CW_JSONCFG_EMPTY_OK, out, sizeof(out)),
			 CW_OK);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(cw_jsoncfg_get_str(&ctx, root, "none", CW_JSONCFG_REQUIRED, out, sizeof(out)),
			 CW_ERR_CONFIG);
	ck_assert_str_eq(err, "none: missing (expected a non-empty string of at most 7 bytes)");
	cJSON_Delete(root);
}
END_TEST

START_TEST(unknown_and_duplicate_keys)
{
	static const char *const keys[] = {"a", "b", NULL};
	cJSON *root = parse_ok("{\"a\":1,\"c\":2}");
	size_t m;

	m = cw_jsoncfg_enter(&ctx, "sec");
	ck_assert_int_eq(cw_jsoncfg_check_keys(&ctx, root, keys), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "sec.c: unknown key (known keys here: a, b)");
	cw_jsoncfg_pop(&ctx, m);
	cJSON_Delete(root);

	root = parse_ok("{\"a\":1,\"b\":2,\"a\":3}");
	ck_assert_int_eq(cw_jsoncfg_check_keys(&ctx, root, keys), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "a: key given twice");
	cJSON_Delete(root);

	root = parse_ok("{\"b\":1,\"a\":2}");
	ck_assert_int_eq(cw_jsoncfg_check_keys(&ctx, root, keys), CW_OK);
	cJSON_Delete(root);
}
END_TEST

START_TEST(invalid_json_position)
{
	const char *bad = "{\"a\": 1,\n \"b\" 2}";
	cJSON *root = (cJSON *)1;

	cw_jsoncfg_init(&ctx, err, sizeof(err));
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, bad, strlen(bad), 4096, LC, &root), CW_ERR_CONFIG);
	ck_assert_ptr_null(root);
	ck_assert_str_eq(err, "config is not valid JSON: error near line 2 column 6 (byte 14)");
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, bad, strlen(bad), 4096, 0, &root), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "config is not valid JSON: error near byte 14");
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, "{} {}", 5, 4096, LC, &root), CW_ERR_CONFIG);
	ck_assert_ptr_null(root);
	ck_assert_str_eq(err, "config is not valid JSON: unexpected text after the top-level "
			      "object at line 1 column 4 (byte 3)");
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, "{\"a\":", 5, 4096, LC, &root), CW_ERR_CONFIG);
	ck_assert_ptr_nonnull(strstr(err, "(file ends too early: half-written?)"));
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, "[]", 2, 4096, LC, &root), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "config must be a JSON object at the top level");
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, "", 0, 4096, LC, &root), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "config is empty (expected a JSON object)");
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, "{}      ", 8, 4, LC, &root), CW_ERR_TOOBIG);
	ck_assert_str_eq(err, "config is 8 bytes, more than the limit of 4");
}
END_TEST

START_TEST(comments_blanked)
{
	/* a // or a block comment opener inside a string is text, also after an
	 * escaped quote */
	const char *json = "// head\n"
			   "{ /* block\n spanning */ \"a\": \"a//b\", // tail\n"
			   "  \"b\": \"\\\"//\", \"c\": \"/*x*/\", \"d\": 1 /**/ } // end";
	cJSON *root = NULL;

	cw_jsoncfg_init(&ctx, err, sizeof(err));
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, json, strlen(json), 4096, COMMENTS, &root), CW_OK);
	ck_assert_str_eq(cJSON_GetObjectItem(root, "a")->valuestring, "a//b");
	ck_assert_str_eq(cJSON_GetObjectItem(root, "b")->valuestring, "\"//");
	ck_assert_str_eq(cJSON_GetObjectItem(root, "c")->valuestring, "/*x*/");
	ck_assert_int_eq(cJSON_GetObjectItem(root, "d")->valueint, 1);
	cJSON_Delete(root);
	/* the caller's text is left as it was */
	ck_assert_ptr_nonnull(strstr(json, "// head"));
	/* a comment at the end without a newline, and a string ending in \\ */
	json = "{\"e\": \"x\\\\\"} /* fin */ // eof";
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, json, strlen(json), 4096, COMMENTS, &root), CW_OK);
	ck_assert_str_eq(cJSON_GetObjectItem(root, "e")->valuestring, "x\\");
	cJSON_Delete(root);
	/* without the flag, comments stay an error (saved files, bodies) */
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, "{} // x", 7, 4096, LC, &root), CW_ERR_CONFIG);
	ck_assert_ptr_null(root);
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, "{/**/}", 6, 4096, LC, &root), CW_ERR_CONFIG);
}
END_TEST

START_TEST(comments_positions)
{
	/* error positions after comments are the file's own */
	const char *json = "{ /* one\n two */ \"a\": 1, // x\n  \"b\" 2}";
	cJSON *root = (cJSON *)1;

	cw_jsoncfg_init(&ctx, err, sizeof(err));
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, json, strlen(json), 4096, COMMENTS, &root),
			 CW_ERR_CONFIG);
	ck_assert_ptr_null(root);
	ck_assert_str_eq(err, "config is not valid JSON: error near line 3 column 7 (byte 36)");
	json = "{\"a\": 1}\n/* done */ {\"b\": 2}";
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, json, strlen(json), 4096, COMMENTS, &root),
			 CW_ERR_CONFIG);
	ck_assert_str_eq(err, "config is not valid JSON: unexpected text after the top-level "
			      "object at line 2 column 12 (byte 20)");
	/* a block comment left open names where it starts */
	json = "{\"a\": 1,\n  /* \"b\": 2\n}\n";
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, json, strlen(json), 4096, COMMENTS, &root),
			 CW_ERR_CONFIG);
	ck_assert_ptr_null(root);
	ck_assert_str_eq(err, "config is not valid JSON: the comment opened at line 2 column 3 "
			      "(byte 11) is never closed (no */)");
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, "{}/*/", 5, 4096, CW_JSONCFG_PARSE_COMMENTS, &root),
			 CW_ERR_CONFIG);
	ck_assert_str_eq(err, "config is not valid JSON: the comment opened at byte 2 is never "
			      "closed (no */)");
	/* a lone slash is cJSON's to refuse */
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, "{} /", 4, 4096, COMMENTS, &root), CW_ERR_CONFIG);
	ck_assert_str_eq(err, "config is not valid JSON: unexpected text after the top-level "
			      "object at line 1 column 4 (byte 3)");
	/* only comments: nothing to parse */
	ck_assert_int_eq(cw_jsoncfg_parse(&ctx, "// x\n", 5, 4096, COMMENTS, &root), CW_ERR_CONFIG);
	ck_assert_ptr_null(root);
}
END_TEST

START_TEST(file_limits)
{
	char path[] = "/tmp/test_jsoncfg_XXXXXX";
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{\"a\":1}", f);
	fclose(f);
	ck_assert_int_eq(cw_jsoncfg_read_file(path, 7, &buf, &len, err, sizeof(err)), CW_OK);
	ck_assert_uint_eq(len, 7);
	ck_assert_str_eq(buf, "{\"a\":1}");
	free(buf);
	ck_assert_int_eq(cw_jsoncfg_read_file(path, 6, &buf, &len, err, sizeof(err)), CW_ERR_TOOBIG);
	ck_assert_ptr_null(buf);
	ck_assert_ptr_nonnull(strstr(err, "7 bytes, more than the limit of 6"));
	unlink(path);
	ck_assert_int_eq(cw_jsoncfg_read_file(path, 6, &buf, &len, err, sizeof(err)), CW_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err, ": cannot open: "));
	ck_assert_int_eq(cw_jsoncfg_read_file("/tmp", 6, &buf, &len, NULL, 0), CW_ERR_IO);

	snprintf(err, sizeof(err), "k: bad");
	cw_jsoncfg_prefix(err, sizeof(err), "/etc/x.json");
	ck_assert_str_eq(err, "/etc/x.json: k: bad");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("jsoncfg");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, path_building);
	tcase_add_test(tc, describe_never_echoes_strings);
	tcase_add_test(tc, int_range_and_integral);
	tcase_add_test(tc, strings);
	tcase_add_test(tc, unknown_and_duplicate_keys);
	tcase_add_test(tc, invalid_json_position);
	tcase_add_test(tc, comments_blanked);
	tcase_add_test(tc, comments_positions);
	tcase_add_test(tc, file_limits);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
