/* test_phone.c - phone numbers to E.164 (src/cw_phone.c): the forms people
 * type for an Israeli mobile number, what is refused (landlines, wrong
 * lengths, junk), numbers of other countries only when allowed, and the
 * masked form for logs. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cw_error.h"
#include "cw_phone.h"

/* All of these are the same mobile number. */
static const char *const same_mobile[] = {
	"0521234567",	  "052-123-4567",     "052 123 4567",	"(052) 123.4567",
	"+972521234567",  "+972 52-123-4567", "972521234567",	"00972521234567",
	"+9720521234567", " 052 1234567 ",    "+972(52)1234567", "00 972 52 123 4567",
	"9720521234567",
};

/* Refused with or without allow_international. */
static const char *const refused[] = {
	"021234567",	  /* Jerusalem landline */
	"+97221234567",	  /* the same, international form */
	"0312345678",	  /* ten digits but not 05X */
	"12345",	  "",	     "abc", "052123456x", "05212345six",
	"++972521234567", /* two '+' */
	"+972+521234567", "052+1234567",
	"0521234567                         ", /* 35 characters */
	"+972",		  "972",     "00",  "+", "-", "()",
	"05212345678",	  /* 11 digits */
	"052123456",	  /* 9 digits */
	"+97252123456",	  /* one digit short */
	"+9725212345678", /* one digit too many */
	"0521234567\n",	  "052/1234567", "052_1234567",
};

START_TEST(israeli_mobile_forms)
{
	char out[CW_PHONE_E164_MAX];

	for (size_t i = 0; i < sizeof(same_mobile) / sizeof(same_mobile[0]); i++) {
		for (int intl = 0; intl < 2; intl++) {
			memset(out, 'x', sizeof(out));
			ck_assert_msg(cw_phone_normalize(same_mobile[i], intl, out) == CW_OK,
				      "\"%s\" refused (international %d)", same_mobile[i], intl);
			ck_assert_str_eq(out, "+972521234567");
		}
	}
}
END_TEST

START_TEST(refused_forms)
{
	char out[CW_PHONE_E164_MAX];

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		for (int intl = 0; intl < 2; intl++) {
			memset(out, 'x', sizeof(out));
			ck_assert_msg(cw_phone_normalize(refused[i], intl, out) == CW_ERR_INVAL,
				      "\"%s\" accepted (international %d) as %.*s", refused[i],
				      intl, (int)sizeof(out), out);
			ck_assert_str_eq(out, ""); /* never a half-written number */
		}
	}
	memset(out, 'x', sizeof(out));
	ck_assert_int_eq(cw_phone_normalize(NULL, true, out), CW_ERR_INVAL);
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(input_length_limit)
{
	char in[64], out[CW_PHONE_E164_MAX];

	/* 32 characters (CW_PHONE_INPUT_MAX) with separators: still looked at */
	memset(in, ' ', sizeof(in));
	memcpy(in, "0521234567", 10);
	in[CW_PHONE_INPUT_MAX] = '\0';
	ck_assert_int_eq(strlen(in), 32);
	ck_assert_int_eq(cw_phone_normalize(in, false, out), CW_OK);
	ck_assert_str_eq(out, "+972521234567");
	/* 33 and more: refused without a look */
	in[CW_PHONE_INPUT_MAX] = ' ';
	in[CW_PHONE_INPUT_MAX + 1] = '\0';
	ck_assert_int_eq(cw_phone_normalize(in, false, out), CW_ERR_INVAL);
	ck_assert_str_eq(out, "");
	memset(in, '5', sizeof(in) - 1);
	in[sizeof(in) - 1] = '\0';
	ck_assert_int_eq(cw_phone_normalize(in, true, out), CW_ERR_INVAL);
}
END_TEST

START_TEST(international_only_when_allowed)
{
	static const char *const us[] = {"+14155550123", "0014155550123", "+1 (415) 555-0123",
					 "00 1 415 555 0123"};
	char out[CW_PHONE_E164_MAX];

	for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++) {
		ck_assert_msg(cw_phone_normalize(us[i], false, out) == CW_ERR_INVAL,
			      "\"%s\" accepted without allow_international", us[i]);
		ck_assert_str_eq(out, "");
		ck_assert_msg(cw_phone_normalize(us[i], true, out) == CW_OK, "\"%s\" refused",
			      us[i]);
		ck_assert_str_eq(out, "+14155550123");
	}
	/* a national number without a prefix is not international */
	ck_assert_int_eq(cw_phone_normalize("14155550123", true, out), CW_ERR_INVAL);
	/* country codes never start with 0 */
	ck_assert_int_eq(cw_phone_normalize("+04155550123", true, out), CW_ERR_INVAL);
	ck_assert_int_eq(cw_phone_normalize("0004155550123", true, out), CW_ERR_INVAL);
	/* 8 to 15 digits */
	ck_assert_int_eq(cw_phone_normalize("+4412345678", true, out), CW_OK);
	ck_assert_str_eq(out, "+4412345678");
	ck_assert_int_eq(cw_phone_normalize("+12345678", true, out), CW_OK);
	ck_assert_str_eq(out, "+12345678");
	ck_assert_int_eq(cw_phone_normalize("+1234567", true, out), CW_ERR_INVAL);
	ck_assert_int_eq(cw_phone_normalize("+123456789012345", true, out), CW_OK);
	ck_assert_str_eq(out, "+123456789012345");
	ck_assert_int_eq(strlen(out), CW_PHONE_E164_MAX - 1);
	ck_assert_int_eq(cw_phone_normalize("+1234567890123456", true, out), CW_ERR_INVAL);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(cw_phone_normalize("001234567890123456", true, out), CW_ERR_INVAL);
	/* Israel's rules still apply to +972 when international is allowed */
	ck_assert_int_eq(cw_phone_normalize("+97221234567", true, out), CW_ERR_INVAL);
}
END_TEST

START_TEST(mask)
{
	char out[CW_PHONE_E164_MAX + 8];

	cw_phone_mask("+972521234567", out, sizeof(out));
	ck_assert_str_eq(out, "+97252*****67");
	cw_phone_mask("+14155550123", out, sizeof(out));
	ck_assert_str_eq(out, "+14155****23");
	cw_phone_mask("+12345678", out, sizeof(out));
	ck_assert_str_eq(out, "+12345*78");
	/* too short to show anything of */
	cw_phone_mask("+1234", out, sizeof(out));
	ck_assert_str_eq(out, "***");
	cw_phone_mask("", out, sizeof(out));
	ck_assert_str_eq(out, "***");
	cw_phone_mask(NULL, out, sizeof(out));
	ck_assert_str_eq(out, "***");
	/* bounded by cap; cap 0 writes nothing */
	cw_phone_mask("+972521234567", out, 5);
	ck_assert_str_eq(out, "+972");
	memset(out, 'z', sizeof(out));
	cw_phone_mask("+972521234567", out, 0);
	ck_assert_int_eq(out[0], 'z');
}
END_TEST

int main(void)
{
	Suite *s = suite_create("phone");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, israeli_mobile_forms);
	tcase_add_test(tc, refused_forms);
	tcase_add_test(tc, input_length_limit);
	tcase_add_test(tc, international_only_when_allowed);
	tcase_add_test(tc, mask);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
