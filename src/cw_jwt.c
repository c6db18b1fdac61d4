/* cw_jwt.c - EdDSA JWTs (RFC 7519 + RFC 7515 compact form + RFC 8037).
 *
 * token = b64url(header) "." b64url(claims) "." b64url(Ed25519 signature)
 * where the signature covers the ASCII bytes "b64url(header).b64url(claims)"
 * (RFC 7515 §5.1) and b64url is base64url without padding (RFC 7515 §2). */
#include "cw_jwt.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cw_clock.h"
#include "cw_error.h"

/* The only header we issue. RFC 8037 §3.1: "alg": "EdDSA" with an Ed25519 key. */
#define CW_JWT_HEADER "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}"
#define CW_JWT_B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
/* Our header is 36 characters encoded; leave room for a "kid" later. */
#define CW_JWT_MAX_HEADER_B64 256
/* 2^53: past this a JSON number (a double) no longer holds every integer. */
#define CW_JWT_MAX_NUMERIC 9007199254740992.0

/* Encodes len bytes as base64url into a new string (caller frees). */
static char *b64url(const unsigned char *bin, size_t len)
{
	size_t cap = sodium_base64_ENCODED_LEN(len, CW_JWT_B64);
	char *s = malloc(cap);

	if (s)
		sodium_bin2base64(s, cap, bin, len, CW_JWT_B64);
	return s;
}

int cw_jwt_sign(const cJSON *claims, const unsigned char sk[crypto_sign_SECRETKEYBYTES],
		char **out)
{
	unsigned char sig[crypto_sign_BYTES];
	char *payload = NULL, *h64 = NULL, *p64 = NULL, *s64 = NULL, *tok = NULL;
	size_t hlen, plen, slen, total;
	int rc = CW_ERR_NOMEM;

	*out = NULL;
	if (!cJSON_IsObject(claims) || !sk)
		return CW_ERR_INVAL;
	payload = cJSON_PrintUnformatted(claims);
	if (!payload)
		goto out;
	h64 = b64url((const unsigned char *)CW_JWT_HEADER, strlen(CW_JWT_HEADER));
	p64 = b64url((const unsigned char *)payload, strlen(payload));
	if (!h64 || !p64)
		goto out;
	hlen = strlen(h64);
	plen = strlen(p64);
	slen = sodium_base64_ENCODED_LEN(crypto_sign_BYTES, CW_JWT_B64) - 1;
	total = hlen + 1 + plen + 1 + slen;
	if (total > CW_JWT_MAX_LEN) {
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	tok = malloc(total + 1);
	if (!tok)
		goto out;
	memcpy(tok, h64, hlen);
	tok[hlen] = '.';
	memcpy(tok + hlen + 1, p64, plen);
	crypto_sign_detached(sig, NULL, (const unsigned char *)tok, hlen + 1 + plen, sk);
	s64 = b64url(sig, sizeof(sig));
	if (!s64)
		goto out;
	tok[hlen + 1 + plen] = '.';
	memcpy(tok + hlen + 1 + plen + 1, s64, slen + 1);
	*out = tok;
	tok = NULL;
	rc = CW_OK;
out:
	free(payload);
	free(h64);
	free(p64);
	free(s64);
	free(tok);
	return rc;
}

/* Decodes one base64url segment of len characters into a new NUL-terminated
 * buffer (caller frees); *outlen is the decoded length. libsodium refuses
 * characters outside the alphabet, padding, and non-zero trailing bits, so
 * every token has exactly one encoding. */
static unsigned char *b64url_decode(const char *seg, size_t len, size_t *outlen)
{
	size_t cap = len / 4 * 3 + 3;
	unsigned char *bin = malloc(cap + 1);
	const char *end = NULL;

	if (!bin)
		return NULL;
	if (len == 0 || sodium_base642bin(bin, cap, seg, len, NULL, outlen, &end, CW_JWT_B64) != 0 ||
	    end != seg + len) {
		free(bin);
		return NULL;
	}
	bin[*outlen] = '\0';
	return bin;
}

/* A JSON object with a key given twice is refused: two parsers could read two
 * different values from it (RFC 7515 §5.2 step 4, RFC 7519 §4). */
static bool has_duplicate_keys(const cJSON *obj)
{
	for (const cJSON *a = obj->child; a; a = a->next)
		for (const cJSON *b = a->next; b; b = b->next)
			if (strcmp(a->string, b->string) == 0)
				return true;
	return false;
}

/* Parses exactly len bytes of text as one JSON object; NULL otherwise (an
 * embedded NUL, trailing bytes, another type, duplicate keys). */
static cJSON *parse_object(const unsigned char *text, size_t len)
{
	const char *end = NULL;
	cJSON *j;

	if (strlen((const char *)text) != len)
		return NULL;
	j = cJSON_ParseWithLengthOpts((const char *)text, len, &end, 0);
	if (!j)
		return NULL;
	if (end != (const char *)text + len || !cJSON_IsObject(j) || has_duplicate_keys(j)) {
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

static bool str_is(const cJSON *obj, const char *key, const char *want)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(it) && it->valuestring && strcmp(it->valuestring, want) == 0;
}

/* NumericDate (RFC 7519 §2): we accept only whole seconds in (0, 2^53). */
static int numeric_date(const cJSON *obj, const char *key, bool required, int64_t *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	double v;

	if (!it)
		return required ? CW_ERR_AUTH : CW_ERR_NOTFOUND;
	if (!cJSON_IsNumber(it))
		return CW_ERR_AUTH;
	v = it->valuedouble;
	if (!isfinite(v) || v <= 0 || v >= CW_JWT_MAX_NUMERIC || v != (double)(int64_t)v)
		return CW_ERR_AUTH;
	*out = (int64_t)v;
	return CW_OK;
}

/* RFC 7519 §4.1.3: aud is a string or an array of strings. */
static bool aud_ok(const cJSON *claims, const char *want)
{
	const cJSON *aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
	const cJSON *it;

	if (cJSON_IsString(aud))
		return aud->valuestring && strcmp(aud->valuestring, want) == 0;
	if (!cJSON_IsArray(aud))
		return false;
	cJSON_ArrayForEach(it, aud) {
		if (cJSON_IsString(it) && it->valuestring && strcmp(it->valuestring, want) == 0)
			return true;
	}
	return false;
}

static int check_header(const cJSON *h, const char **why)
{
	static const char *const known[] = {"alg", "typ", "kid", NULL};

	/* Pinned: the token never picks the algorithm (no "none", no HS256
	 * keyed with the public key). */
	if (!str_is(h, "alg", "EdDSA")) {
		*why = "bad_alg";
		return CW_ERR_AUTH;
	}
	if (!str_is(h, "typ", "JWT")) {
		*why = "bad_header_typ";
		return CW_ERR_AUTH;
	}
	/* RFC 7515 §4.1.11: a "crit" we do not understand must be refused; we
	 * refuse every header parameter we do not use. */
	for (const cJSON *it = h->child; it; it = it->next) {
		bool ok = false;
		for (const char *const *k = known; *k; k++)
			ok = ok || strcmp(it->string, *k) == 0;
		if (!ok) {
			*why = "unknown_header";
			return CW_ERR_AUTH;
		}
	}
	return CW_OK;
}

static int check_claims(const cJSON *c, const struct cw_jwt_expect *e, const char **why)
{
	int64_t now = e->now_s ? e->now_s : cw_wall_ms() / 1000;
	int64_t leeway = e->leeway_s < 0 ? CW_JWT_DEFAULT_LEEWAY_S : e->leeway_s;
	int64_t exp = 0, iat = 0, nbf = 0;
	int rc;

	if (numeric_date(c, "exp", true, &exp) != CW_OK) {
		*why = "bad_exp";
		return CW_ERR_AUTH;
	}
	/* RFC 7519 §4.1.4: the current time must be before exp. */
	if (now - leeway >= exp) {
		*why = "expired";
		return CW_ERR_AUTH;
	}
	if (numeric_date(c, "iat", true, &iat) != CW_OK || iat > exp) {
		*why = "bad_iat";
		return CW_ERR_AUTH;
	}
	if (iat > now + leeway) {
		*why = "issued_in_future";
		return CW_ERR_AUTH;
	}
	rc = numeric_date(c, "nbf", false, &nbf);
	if (rc == CW_ERR_AUTH || (rc == CW_OK && nbf > exp)) {
		*why = "bad_nbf";
		return CW_ERR_AUTH;
	}
	if (rc == CW_OK && now + leeway < nbf) {
		*why = "not_yet_valid";
		return CW_ERR_AUTH;
	}
	if (!str_is(c, "iss", e->iss)) {
		*why = "bad_iss";
		return CW_ERR_AUTH;
	}
	if (!aud_ok(c, e->aud)) {
		*why = "bad_aud";
		return CW_ERR_AUTH;
	}
	if (!str_is(c, "typ", e->typ)) {
		*why = "bad_typ";
		return CW_ERR_AUTH;
	}
	return CW_OK;
}

int cw_jwt_verify(const char *token, const unsigned char pk[crypto_sign_PUBLICKEYBYTES],
		  const struct cw_jwt_expect *expect, cJSON **claims, const char **reason)
{
	const char *why = "malformed";
	const char *dot1, *dot2;
	unsigned char *hbin = NULL, *pbin = NULL, *sbin = NULL;
	size_t len, hlen, plen, slen, n;
	cJSON *header = NULL, *body = NULL;
	int rc = CW_ERR_AUTH;

	if (claims)
		*claims = NULL;
	if (!token || !pk || !expect || !expect->iss || !expect->aud || !expect->typ) {
		why = "bad_argument";
		rc = CW_ERR_INVAL;
		goto out;
	}
	len = strnlen(token, CW_JWT_MAX_LEN + 1);
	if (len > CW_JWT_MAX_LEN) {
		why = "too_long";
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
		goto out; /* RFC 7515 §7.1: exactly three parts */
	hlen = (size_t)(dot1 - token);
	plen = (size_t)(dot2 - dot1 - 1);
	slen = len - (size_t)(dot2 + 1 - token);
	if (hlen > CW_JWT_MAX_HEADER_B64)
		goto out;
	hbin = b64url_decode(token, hlen, &n);
	if (!hbin || !(header = parse_object(hbin, n)))
		goto out;
	if (check_header(header, &why) != CW_OK)
		goto out;
	sbin = b64url_decode(dot2 + 1, slen, &n);
	if (!sbin || n != crypto_sign_BYTES) {
		why = "bad_signature";
		goto out;
	}
	/* The signature is checked before the claims are even parsed. */
	if (crypto_sign_verify_detached(sbin, (const unsigned char *)token, hlen + 1 + plen, pk) !=
	    0) {
		why = "bad_signature";
		goto out;
	}
	pbin = b64url_decode(dot1 + 1, plen, &n);
	if (!pbin || !(body = parse_object(pbin, n)))
		goto out;
	if (check_claims(body, expect, &why) != CW_OK)
		goto out;
	why = "ok";
	rc = CW_OK;
	if (claims) {
		*claims = body;
		body = NULL;
	}
out:
	if (reason)
		*reason = why;
	cJSON_Delete(header);
	cJSON_Delete(body);
	free(hbin);
	free(pbin);
	free(sbin);
	return rc;
}
