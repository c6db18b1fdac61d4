#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cw_error.h"
#include "cw_log.h"

START_TEST(every_code_has_text)
{
	for (int e = 0; e >= CW_ERR_MIN; e--) {
		ck_assert_ptr_nonnull(cw_strerror(e));
		ck_assert_str_ne(cw_strerror(e), "unknown error");
		ck_assert_str_ne(cw_errname(e), "unknown");
	}
	ck_assert_str_eq(cw_strerror(1), "unknown error");
	ck_assert_str_eq(cw_strerror(CW_ERR_MIN - 1), "unknown error");
	ck_assert_str_eq(cw_errname(CW_ERR_NOTFOUND), "not_found");
}
END_TEST

START_TEST(log_counts_errors)
{
	unsigned long before = cw_log_error_count();
	enum cw_log_level lvl;

	cw_log_set_level(CW_LOG_ERROR);
	cw_warn("test.warn", "k=%d", 1);
	ck_assert_uint_eq(cw_log_error_count(), before);
	cw_error("test.error", "k=%d", 2);
	ck_assert_uint_eq(cw_log_error_count(), before + 1);
	ck_assert_int_eq(cw_log_level_parse("warn", &lvl), 0);
	ck_assert_int_eq(lvl, CW_LOG_WARN);
	ck_assert_int_eq(cw_log_level_parse("loud", &lvl), CW_ERR_INVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("error");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, every_code_has_text);
	tcase_add_test(tc, log_counts_errors);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
