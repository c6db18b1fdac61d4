/* Tests of cw_jwt: EdDSA tokens, and every way a token must be refused. */
#include <check.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_error.h"
#include "cw_jwt.h"

#define NOW 1790000000LL /* a fixed "now" so the tests never depend on the clock */
#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

static unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
static unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];

static const struct cw_jwt_expect staff = {
	.iss = "cartwise-cloud", .aud = "cartwise-api", .typ = "staff", .now_s = NOW, .leeway_s = -1};

static void setup(void)
{
	ck_assert_int_ge(sodium_init(), 0);
	crypto_sign_keypair(pk, sk);
	crypto_sign_keypair(pk2, sk2);
}

static cJSON *claims_at(long long iat, long long exp)
{
	cJSON *c = cJSON_CreateObject();

	cJSON_AddStringToObject(c, "iss", "cartwise-cloud");
	cJSON_AddStringToObject(c, "aud", "cartwise-api");
	cJSON_AddStringToObject(c, "typ", "staff");
	cJSON_AddStringToObject(c, "sub", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
	cJSON_AddNumberToObject(c, "iat", (double)iat);
	cJSON_AddNumberToObject(c, "exp", (double)exp);
	return c;
}

static char *sign_claims(cJSON *c, const unsigned char *key)
{
	char *tok = NULL;

	ck_assert_int_eq(cw_jwt_sign(c, key, &tok), CW_OK);
	cJSON_Delete(c);
	ck_assert_ptr_nonnull(tok);
	return tok;
}

static void b64(const void *bin, size_t len, char *out, size_t cap)
{
	ck_assert_uint_ge(cap, sodium_base64_ENCODED_LEN(len, B64));
	sodium_bin2base64(out, cap, bin, len, B64);
}

/* Builds a token from raw header and payload texts, signed with key (or with
 * no signature at all when key is NULL): what an attacker can produce. */
static char *forge(const char *header, const char *payload, const unsigned char *key)
{
	static char tok[8192];
	char h[2048], p[4096], s[128] = "";
	unsigned char sig[crypto_sign_BYTES];
	char input[8192];
	int n;

	b64(header, strlen(header), h, sizeof(h));
	b64(payload, strlen(payload), p, sizeof(p));
	n = snprintf(input, sizeof(input), "%s.%s", h, p);
	ck_assert(n > 0 && (size_t)n < sizeof(input));
	if (key) {
		crypto_sign_detached(sig, NULL, (const unsigned char *)input, strlen(input), key);
		b64(sig, sizeof(sig), s, sizeof(s));
	}
	n = snprintf(tok, sizeof(tok), "%s.%s", input, s);
	ck_assert(n > 0 && (size_t)n < sizeof(tok));
	return tok;
}

static const char *good_payload(void)
{
	static char buf[512];

	snprintf(buf, sizeof(buf),
		 "{\"iss\":\"cartwise-cloud\",\"aud\":\"cartwise-api\",\"typ\":\"staff\","
		 "\"iat\":%lld,\"exp\":%lld}",
		 NOW - 10, NOW + 3600);
	return buf;
}

/* Asserts that verification fails with CW_ERR_AUTH and the given reason. */
static void refused(const char *tok, const struct cw_jwt_expect *e, const char *want_reason)
{
	cJSON *claims = (cJSON *)1;
	const char *why = NULL;

	ck_assert_int_eq(cw_jwt_verify(tok, pk, e, &claims, &why), CW_ERR_AUTH);
	ck_assert_ptr_null(claims);
	ck_assert_ptr_nonnull(why);
	if (want_reason)
		ck_assert_str_eq(why, want_reason);
}

START_TEST(sign_verify_roundtrip)
{
	char *tok = sign_claims(claims_at(NOW - 10, NOW + 3600), sk);
	cJSON *claims = NULL;
	const char *why = NULL;

	ck_assert_uint_lt(strlen(tok), 512);
	ck_assert_ptr_null(strchr(tok, '='));
	ck_assert_ptr_null(strchr(tok, '+'));
	ck_assert_ptr_null(strchr(tok, '/'));
	ck_assert_int_eq(cw_jwt_verify(tok, pk, &staff, &claims, &why), CW_OK);
	ck_assert_str_eq(why, "ok");
	ck_assert_ptr_nonnull(claims);
	ck_assert_str_eq(cJSON_GetObjectItem(claims, "sub")->valuestring,
			 "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
	cJSON_Delete(claims);
	/* claims may be NULL when the caller only wants a yes/no */
	ck_assert_int_eq(cw_jwt_verify(tok, pk, &staff, NULL, NULL), CW_OK);
	/* the header we issue is exactly the RFC 8037 one */
	{
		char h[128];
		b64("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", 27, h, sizeof(h));
		ck_assert_int_eq(strncmp(tok, h, strlen(h)), 0);
		ck_assert_int_eq(tok[strlen(h)], '.');
	}
	free(tok);
}
END_TEST

START_TEST(forged_good_token_accepted)
{
	/* the test's forge() builds valid tokens too: the negatives below differ
	 * from this one in exactly the field under test */
	ck_assert_int_eq(cw_jwt_verify(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", good_payload(), sk),
				       pk, &staff, NULL, NULL),
			 CW_OK);
	ck_assert_int_eq(cw_jwt_verify(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"k1\"}",
					     good_payload(), sk),
				       pk, &staff, NULL, NULL),
			 CW_OK);
}
END_TEST

START_TEST(alg_none_refused)
{
	refused(forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", good_payload(), NULL), &staff, "bad_alg");
	refused(forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", good_payload(), sk), &staff, "bad_alg");
	refused(forge("{\"alg\":\"None\",\"typ\":\"JWT\"}", good_payload(), sk), &staff, "bad_alg");
	/* a valid EdDSA header with the signature stripped */
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", good_payload(), NULL), &staff,
		"bad_signature");
}
END_TEST

START_TEST(other_alg_refused)
{
	/* signed with the right Ed25519 key, but the header names another
	 * algorithm: the verifier never lets the token choose */
	refused(forge("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", good_payload(), sk), &staff, "bad_alg");
	refused(forge("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", good_payload(), sk), &staff, "bad_alg");
	refused(forge("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", good_payload(), sk), &staff, "bad_alg");
	refused(forge("{\"alg\":\"eddsa\",\"typ\":\"JWT\"}", good_payload(), sk), &staff, "bad_alg");
	refused(forge("{\"typ\":\"JWT\"}", good_payload(), sk), &staff, "bad_alg");
	refused(forge("{\"alg\":[\"EdDSA\"],\"typ\":\"JWT\"}", good_payload(), sk), &staff, "bad_alg");
	/* header typ must be JWT; unknown header parameters (crit) refused */
	refused(forge("{\"alg\":\"EdDSA\"}", good_payload(), sk), &staff, "bad_header_typ");
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWE\"}", good_payload(), sk), &staff,
		"bad_header_typ");
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"crit\":[\"exp\"]}", good_payload(), sk),
		&staff, "unknown_header");
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"jwk\":{}}", good_payload(), sk), &staff,
		"unknown_header");
	/* duplicate alg: two parsers could read two algorithms */
	refused(forge("{\"alg\":\"none\",\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", good_payload(), sk),
		&staff, "malformed");
}
END_TEST

START_TEST(bad_signature_refused)
{
	char *tok = sign_claims(claims_at(NOW - 10, NOW + 3600), sk2);
	char *last;

	refused(tok, &staff, "bad_signature"); /* signed by another key */
	free(tok);
	tok = sign_claims(claims_at(NOW - 10, NOW + 3600), sk);
	last = strrchr(tok, '.') + 1;
	/* flip one character of the signature to another base64url character */
	last[5] = last[5] == 'A' ? 'B' : 'A';
	refused(tok, &staff, "bad_signature");
	/* truncated signature */
	last[10] = '\0';
	refused(tok, &staff, NULL);
	free(tok);
}
END_TEST

START_TEST(tampered_payload_refused)
{
	char *tok = sign_claims(claims_at(NOW - 10, NOW + 3600), sk);
	char orig[1024], forged[1024], p64[512];
	char payload[256];
	size_t hlen, siglen;

	snprintf(orig, sizeof(orig), "%s", tok);
	free(tok);
	hlen = strcspn(orig, ".");
	siglen = strlen(orig) - (size_t)(strrchr(orig, '.') - orig);
	/* same header and signature, payload changed to a chain admin's */
	snprintf(payload, sizeof(payload),
		 "{\"iss\":\"cartwise-cloud\",\"aud\":\"cartwise-api\",\"typ\":\"staff\","
		 "\"sub\":\"other\",\"role\":\"platform-admin\",\"iat\":%lld,\"exp\":%lld}",
		 NOW - 10, NOW + 3600);
	b64(payload, strlen(payload), p64, sizeof(p64));
	snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)hlen, orig, p64,
		 orig + strlen(orig) - siglen);
	refused(forged, &staff, "bad_signature");
	/* also: one character of the original payload changed */
	snprintf(forged, sizeof(forged), "%s", orig);
	forged[hlen + 3] = forged[hlen + 3] == 'A' ? 'B' : 'A';
	refused(forged, &staff, NULL);
}
END_TEST

START_TEST(expiry_and_times)
{
	struct cw_jwt_expect e = staff;
	char *tok;

	/* expired an hour ago */
	tok = sign_claims(claims_at(NOW - 7200, NOW - 3600), sk);
	refused(tok, &staff, "expired");
	free(tok);
	/* expired 30 s ago: inside the default 60 s leeway, outside leeway 0 */
	tok = sign_claims(claims_at(NOW - 600, NOW - 30), sk);
	ck_assert_int_eq(cw_jwt_verify(tok, pk, &staff, NULL, NULL), CW_OK);
	e.leeway_s = 0;
	refused(tok, &e, "expired");
	free(tok);
	/* exp == now is already expired (RFC 7519 §4.1.4: now must be before exp) */
	tok = sign_claims(claims_at(NOW - 600, NOW), sk);
	refused(tok, &e, "expired");
	free(tok);
	/* issued in the future beyond the leeway */
	tok = sign_claims(claims_at(NOW + 600, NOW + 3600), sk);
	refused(tok, &staff, "issued_in_future");
	free(tok);
	/* iat after exp */
	tok = sign_claims(claims_at(NOW + 30, NOW + 20), sk);
	refused(tok, &staff, "bad_iat");
	free(tok);
	/* missing exp, missing iat, exp as a string, fractional, negative, huge */
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}",
		      "{\"iss\":\"cartwise-cloud\",\"aud\":\"cartwise-api\",\"typ\":\"staff\",\"iat\":1}",
		      sk),
		&staff, "bad_exp");
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}",
		      "{\"iss\":\"cartwise-cloud\",\"aud\":\"cartwise-api\",\"typ\":\"staff\","
		      "\"exp\":1890000000}",
		      sk),
		&staff, "bad_iat");
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}",
		      "{\"iss\":\"cartwise-cloud\",\"aud\":\"cartwise-api\",\"typ\":\"staff\","
		      "\"iat\":1,\"exp\":\"1890000000\"}",
		      sk),
		&staff, "bad_exp");
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}",
		      "{\"iss\":\"cartwise-cloud\",\"aud\":\"cartwise-api\",\"typ\":\"staff\","
		      "\"iat\":1,\"exp\":1890000000.5}",
		      sk),
		&staff, "bad_exp");
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}",
		      "{\"iss\":\"cartwise-cloud\",\"aud\":\"cartwise-api\",\"typ\":\"staff\","
		      "\"iat\":1,\"exp\":1e300}",
		      sk),
		&staff, "bad_exp");
	/* nbf in the future, and nbf after exp */
	{
		cJSON *c = claims_at(NOW - 10, NOW + 3600);
		cJSON_AddNumberToObject(c, "nbf", (double)(NOW + 600));
		tok = sign_claims(c, sk);
		refused(tok, &staff, "not_yet_valid");
		free(tok);
		c = claims_at(NOW - 10, NOW + 3600);
		cJSON_AddNumberToObject(c, "nbf", (double)(NOW - 5));
		tok = sign_claims(c, sk);
		ck_assert_int_eq(cw_jwt_verify(tok, pk, &staff, NULL, NULL), CW_OK);
		free(tok);
		c = claims_at(NOW - 10, NOW + 3600);
		cJSON_AddStringToObject(c, "nbf", "soon");
		tok = sign_claims(c, sk);
		refused(tok, &staff, "bad_nbf");
		free(tok);
	}
}
END_TEST

START_TEST(wrong_iss_aud_typ_refused)
{
	struct cw_jwt_expect e = staff;
	cJSON *c;
	char *tok = sign_claims(claims_at(NOW - 10, NOW + 3600), sk);

	e.aud = "cartwise-edge";
	refused(tok, &e, "bad_aud");
	e = staff;
	e.iss = "someone-else";
	refused(tok, &e, "bad_iss");
	e = staff;
	e.typ = CW_JWT_TYP_DEVICE; /* a staff token offered where a device token is wanted */
	refused(tok, &e, "bad_typ");
	e.typ = CW_JWT_TYP_CUSTOMER;
	refused(tok, &e, "bad_typ");
	free(tok);

	/* aud as an array containing ours is fine (RFC 7519 §4.1.3); without it, not */
	c = claims_at(NOW - 10, NOW + 3600);
	cJSON_ReplaceItemInObject(c, "aud", cJSON_CreateStringArray(
						    (const char *const[]){"x", "cartwise-api"}, 2));
	tok = sign_claims(c, sk);
	ck_assert_int_eq(cw_jwt_verify(tok, pk, &staff, NULL, NULL), CW_OK);
	free(tok);
	c = claims_at(NOW - 10, NOW + 3600);
	cJSON_ReplaceItemInObject(c, "aud", cJSON_CreateStringArray((const char *const[]){"x"}, 1));
	tok = sign_claims(c, sk);
	refused(tok, &staff, "bad_aud");
	free(tok);
	/* claims missing entirely, or of another type */
	c = claims_at(NOW - 10, NOW + 3600);
	cJSON_DeleteItemFromObject(c, "typ");
	tok = sign_claims(c, sk);
	refused(tok, &staff, "bad_typ");
	free(tok);
	c = claims_at(NOW - 10, NOW + 3600);
	cJSON_ReplaceItemInObject(c, "iss", cJSON_CreateNumber(1));
	tok = sign_claims(c, sk);
	refused(tok, &staff, "bad_iss");
	free(tok);
	/* duplicate claim: "typ" staff then device */
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}",
		      "{\"iss\":\"cartwise-cloud\",\"aud\":\"cartwise-api\",\"typ\":\"device\","
		      "\"typ\":\"staff\",\"iat\":1,\"exp\":1890000000}",
		      sk),
		&staff, "malformed");
}
END_TEST

START_TEST(garbage_refused)
{
	static const char *const junk[] = {
		"",
		"abc",
		"a.b",
		"a.b.c.d",
		"...",
		"..",
		"eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9..",
		"eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.e30.",
		"!!!!.????.####",
		"Bearer x.y.z",
		" eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.e30.AAAA",
		"eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9=.e30.AAAA", /* padding */
		"eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.e30.AAAA\n",
		"' OR 1=1 --.x.y",
	};
	char buf[512];

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		refused(junk[i], &staff, NULL);
	/* header not JSON, an array, JSON with trailing bytes, payload not an object */
	refused(forge("not json", good_payload(), sk), &staff, "malformed");
	refused(forge("[\"EdDSA\"]", good_payload(), sk), &staff, "malformed");
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"} x", good_payload(), sk), &staff,
		"malformed");
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", "[1,2]", sk), &staff, "malformed");
	refused(forge("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", "\"staff\"", sk), &staff, "malformed");
	/* a good token with standard base64 characters instead of base64url */
	{
		char *tok = sign_claims(claims_at(NOW - 10, NOW + 3600), sk);
		snprintf(buf, sizeof(buf), "%s", tok);
		for (char *p = buf; *p; p++) {
			if (*p == '-')
				*p = '+';
			else if (*p == '_')
				*p = '/';
		}
		if (strcmp(buf, tok) != 0)
			refused(buf, &staff, NULL);
		/* one trailing character: not a whole base64url encoding */
		snprintf(buf, sizeof(buf), "%sA", tok);
		refused(buf, &staff, NULL);
		free(tok);
	}
	/* NULL arguments */
	ck_assert_int_eq(cw_jwt_verify(NULL, pk, &staff, NULL, NULL), CW_ERR_INVAL);
	{
		struct cw_jwt_expect e = staff;
		e.aud = NULL;
		ck_assert_int_eq(cw_jwt_verify("a.b.c", pk, &e, NULL, NULL), CW_ERR_INVAL);
	}
}
END_TEST

START_TEST(oversize_refused)
{
	char *big = malloc(CW_JWT_MAX_LEN + 2);
	cJSON *c = claims_at(NOW - 10, NOW + 3600);
	char *tok = (char *)1;
	const char *why = NULL;

	memset(big, 'A', CW_JWT_MAX_LEN + 1);
	big[CW_JWT_MAX_LEN + 1] = '\0';
	ck_assert_int_eq(cw_jwt_verify(big, pk, &staff, NULL, &why), CW_ERR_TOOBIG);
	ck_assert_str_eq(why, "too_long");
	/* the signer refuses to make a token the verifier would refuse */
	memset(big, 'x', 4000);
	big[4000] = '\0';
	cJSON_AddStringToObject(c, "pad", big);
	ck_assert_int_eq(cw_jwt_sign(c, sk, &tok), CW_ERR_TOOBIG);
	ck_assert_ptr_null(tok);
	ck_assert_int_eq(cw_jwt_sign(NULL, sk, &tok), CW_ERR_INVAL);
	cJSON_Delete(c);
	free(big);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("jwt");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, sign_verify_roundtrip);
	tcase_add_test(tc, forged_good_token_accepted);
	tcase_add_test(tc, alg_none_refused);
	tcase_add_test(tc, other_alg_refused);
	tcase_add_test(tc, bad_signature_refused);
	tcase_add_test(tc, tampered_payload_refused);
	tcase_add_test(tc, expiry_and_times);
	tcase_add_test(tc, wrong_iss_aud_typ_refused);
	tcase_add_test(tc, garbage_refused);
	tcase_add_test(tc, oversize_refused);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
