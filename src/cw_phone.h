/* cw_phone.h - phone numbers validated and normalised to E.164.
 *
 * Customers type their mobile number at the kiosk in whatever form they are
 * used to ("052-123 4567", "+972 52 1234567", "00972521234567"); every part
 * of the system stores and compares one form: E.164 ("+972521234567"),
 * ITU-T E.164 §6: a '+', a country code and at most 15 digits in all.
 *
 * Israel is the default region (BRIEF.md: the chains are Israeli): a national
 * number must be a mobile one, 05X and seven more digits, since the code goes
 * out by SMS. Numbers of other countries are accepted only when the caller
 * allows them (the chain's kiosk.allow_international); their national rules
 * are not checked beyond length, which the SMS gateway does. This is
 * deliberately narrow rather than a phone-number library: Debian has only
 * the C++ libphonenumber, and the kiosk needs exactly this. */
#ifndef CW_PHONE_H
#define CW_PHONE_H

#include <stdbool.h>
#include <stddef.h>

/* '+', at most 15 digits, NUL. */
#define CW_PHONE_E164_MAX 17
/* Longest input looked at (separators included); longer is refused. */
#define CW_PHONE_INPUT_MAX 32

/* Normalises in into out (CW_PHONE_E164_MAX bytes). Separators ' ', '-',
 * '.', '(' and ')' are ignored. Returns CW_OK, or CW_ERR_INVAL for anything
 * that is not an Israeli mobile number (or, with allow_international, a
 * "+"/"00"-prefixed number of 8-15 digits whose country code does not
 * start with 0). out is "" on error. */
int cw_phone_normalize(const char *in, bool allow_international, char out[CW_PHONE_E164_MAX]);

/* The form a phone is stored and compared in, for paths that took phones
 * before E.164 (the staff API, the cloud's cart commands): E.164 when in
 * parses as a mobile number (any country), else in unchanged, so that the
 * same customer typed two ways is one phone for "one open rental per
 * phone". Returns CW_ERR_TOOBIG when in does not fit into out. */
int cw_phone_canon(const char *in, char out[CW_PHONE_INPUT_MAX + 1]);

/* Writes a masked form for logs and receipts: "+97252*****67". */
void cw_phone_mask(const char *e164, char *out, size_t cap);

#endif
