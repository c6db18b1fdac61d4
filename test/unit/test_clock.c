#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cw_clock.h"

START_TEST(monotonic_moves_forward)
{
	int64_t a = cw_mono_ms();
	cw_sleep_ms(20);
	int64_t b = cw_mono_ms();
	ck_assert_int_ge(b - a, 19);
}
END_TEST

START_TEST(format_rfc3339)
{
	char buf[32];
	cw_wall_format(1795854896123LL, buf); /* 2026-11-28T08:34:56.123Z */
	ck_assert_str_eq(buf, "2026-11-28T08:34:56.123Z");
	cw_wall_format(0, buf);
	ck_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
}
END_TEST

START_TEST(trust_override)
{
	setenv("CW_CLOCK_TRUSTED", "0", 1);
	ck_assert(!cw_wall_trusted());
	setenv("CW_CLOCK_TRUSTED", "1", 1);
	ck_assert(cw_wall_trusted());
}
END_TEST

int main(void)
{
	Suite *s = suite_create("clock");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, monotonic_moves_forward);
	tcase_add_test(tc, format_rfc3339);
	tcase_add_test(tc, trust_override);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
