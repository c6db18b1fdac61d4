#include <check.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cw_uuid.h"

START_TEST(v7_format_and_order)
{
	char a[CW_UUID_STRLEN], b[CW_UUID_STRLEN];

	ck_assert_int_ge(sodium_init(), 0);
	ck_assert_int_eq(cw_uuid_v7(a), 0);
	ck_assert(cw_uuid_valid(a));
	ck_assert_int_eq(a[14], '7');                 /* version nibble */
	ck_assert(strchr("89ab", a[19]) != NULL);     /* variant 10xx */
	for (int i = 0; i < 1000; i++) {
		ck_assert_int_eq(cw_uuid_v7(b), 0);
		ck_assert_str_ne(a, b);
		/* time-ordered: the 48-bit ms prefix never goes backwards */
		ck_assert(memcmp(a, b, 13) <= 0);
		memcpy(a, b, sizeof(a));
	}
}
END_TEST

START_TEST(valid_rejects_garbage)
{
	ck_assert(!cw_uuid_valid(NULL));
	ck_assert(!cw_uuid_valid(""));
	ck_assert(!cw_uuid_valid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5"));
	ck_assert(!cw_uuid_valid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g"));
	ck_assert(!cw_uuid_valid("0190a1b2xc3d4-7e5f-8a9b-0c1d2e3f4a5b"));
	ck_assert(!cw_uuid_valid("1; DROP TABLE carts; --"));
	ck_assert(cw_uuid_valid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("uuid");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, v7_format_and_order);
	tcase_add_test(tc, valid_rejects_garbage);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
