/* cw_phone.c - see cw_phone.h. */
#include "cw_phone.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cw_error.h"

/* Israel: country code 972; a national mobile number is 05X XXX XXXX, ten
 * digits with the trunk prefix 0, nine without it (the Ministry of
 * Communications' numbering plan). */
#define IL_CC "972"

/* out = "+" cc digits; lengths checked by the callers (at most 15 digits). */
static int put(char out[CW_PHONE_E164_MAX], const char *cc, const char *digits)
{
	size_t a = strlen(cc), b = strlen(digits);

	if (1 + a + b >= CW_PHONE_E164_MAX)
		return CW_ERR_INVAL;
	out[0] = '+';
	memcpy(out + 1, cc, a);
	memcpy(out + 1 + a, digits, b + 1);
	return CW_OK;
}

static bool il_mobile(const char *national /* digits after 972 */)
{
	if (strlen(national) != 9 || national[0] != '5')
		return false;
	return true;
}

int cw_phone_normalize(const char *in, bool allow_international, char out[CW_PHONE_E164_MAX])
{
	char d[CW_PHONE_INPUT_MAX + 1];
	size_t n = 0, inlen;
	bool plus = false;
	const char *p;

	out[0] = '\0';
	if (!in)
		return CW_ERR_INVAL;
	inlen = strnlen(in, CW_PHONE_INPUT_MAX + 1);
	if (inlen == 0 || inlen > CW_PHONE_INPUT_MAX)
		return CW_ERR_INVAL;
	for (p = in; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '+' && n == 0 && !plus) {
			plus = true;
		} else if (isdigit(ch)) {
			d[n++] = (char)ch;
		} else if (!strchr(" -.()", ch)) {
			return CW_ERR_INVAL;
		}
	}
	d[n] = '\0';
	/* "00" is the international prefix dialled from Israel (and Europe). */
	if (!plus && n > 2 && d[0] == '0' && d[1] == '0') {
		memmove(d, d + 2, n - 1);
		n -= 2;
		plus = true;
	}
	if (!plus && n == 10 && d[0] == '0') {
		/* national: drop the trunk 0 */
		if (!il_mobile(d + 1))
			return CW_ERR_INVAL;
		return put(out, IL_CC, d + 1);
	}
	/* "972..." typed without '+' is common on Israeli forms (sometimes
	 * with the trunk 0 kept: "9720521234567"). */
	if (!plus && strncmp(d, IL_CC, 3) == 0 && (n == 12 || (n == 13 && d[3] == '0')))
		plus = true;
	if (!plus)
		return CW_ERR_INVAL;
	if (strncmp(d, IL_CC, 3) == 0) {
		/* "+972 05..." (the trunk 0 kept by habit) is the same number */
		const char *nat = d + 3;
		if (nat[0] == '0')
			nat++;
		if (!il_mobile(nat))
			return CW_ERR_INVAL;
		return put(out, IL_CC, nat);
	}
	if (!allow_international || n < 8 || n > 15 || d[0] == '0')
		return CW_ERR_INVAL;
	return put(out, "", d);
}

int cw_phone_canon(const char *in, char out[CW_PHONE_INPUT_MAX + 1])
{
	char e164[CW_PHONE_E164_MAX];
	size_t n = in ? strnlen(in, CW_PHONE_INPUT_MAX + 1) : 0;

	if (cw_phone_normalize(in, true, e164) == CW_OK) {
		memcpy(out, e164, strlen(e164) + 1);
		return CW_OK;
	}
	out[0] = '\0';
	if (n > CW_PHONE_INPUT_MAX)
		return CW_ERR_TOOBIG;
	if (in)
		memcpy(out, in, n + 1);
	return CW_OK;
}

void cw_phone_mask(const char *e164, char *out, size_t cap)
{
	size_t n = e164 ? strlen(e164) : 0;

	if (!cap)
		return;
	if (n < 8) {
		snprintf(out, cap, "***");
		return;
	}
	/* keep "+CCC" + one digit and the last two */
	snprintf(out, cap, "%.6s%.*s%s", e164, (int)(n - 8), "***************", e164 + n - 2);
}
