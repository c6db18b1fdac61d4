/* cw_jwt.h - JSON Web Tokens signed with Ed25519 ("alg": "EdDSA").
 *
 * RFC 7519 (JWT), RFC 7515 (JWS compact serialisation), RFC 8037 (EdDSA /
 * Ed25519 in JOSE). The cloud signs staff, device and customer tokens with
 * its secret key; anyone holding the public key (an offline edge) verifies
 * them. Crypto and base64url come from libsodium, JSON from cJSON.
 *
 * The verifier is deliberately narrow: the algorithm is pinned to EdDSA (a
 * token's own "alg" never chooses the check), the header must say typ "JWT",
 * and exp, iat, nbf, iss, aud and the token-type claim "typ" are all checked
 * against what the caller expects. Every failure is CW_ERR_AUTH (or
 * CW_ERR_TOOBIG past CW_JWT_MAX_LEN) with a short static reason for logs;
 * the token itself is never logged. */
#ifndef CW_JWT_H
#define CW_JWT_H

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdint.h>

/* Whole compact token, without NUL. A staff token is ~400 bytes. */
#define CW_JWT_MAX_LEN 4096
/* Accepted clock difference between issuer and verifier, seconds. */
#define CW_JWT_DEFAULT_LEEWAY_S 60

/* Values of the "typ" claim (the token type, not the header's typ). */
#define CW_JWT_TYP_STAFF "staff"
#define CW_JWT_TYP_DEVICE "device"
#define CW_JWT_TYP_CUSTOMER "customer"

struct cw_jwt_expect {
	const char *iss; /* required: claim "iss" must equal it */
	const char *aud; /* required: claim "aud" must equal it (or, as an array, contain it) */
	const char *typ; /* required: claim "typ" must equal it */
	int64_t now_s;   /* seconds since the epoch; 0 = current wall time */
	int leeway_s;    /* clock skew allowed on exp/nbf/iat; <0 = default, 0 = none */
};

/* Signs claims (a JSON object; not modified, caller keeps ownership) with
 * the Ed25519 secret key sk (crypto_sign_SECRETKEYBYTES bytes) and writes a
 * NUL-terminated compact token into *out (caller frees with free()).
 * The claims are signed as given: the caller sets iss, aud, typ, iat, exp.
 * Returns CW_ERR_INVAL (not an object), CW_ERR_TOOBIG (token over
 * CW_JWT_MAX_LEN), CW_ERR_NOMEM. Requires sodium_init(). */
int cw_jwt_sign(const cJSON *claims, const unsigned char sk[crypto_sign_SECRETKEYBYTES],
		char **out);

/* Verifies token against the public key pk and the expectations. On success
 * stores the claims object in *claims (caller frees with cJSON_Delete) when
 * claims is not NULL. On failure *claims is NULL, *reason (when not NULL) is
 * a static string such as "expired" or "bad_signature", and the return is
 * CW_ERR_AUTH, or CW_ERR_TOOBIG for a token longer than CW_JWT_MAX_LEN. */
int cw_jwt_verify(const char *token, const unsigned char pk[crypto_sign_PUBLICKEYBYTES],
		  const struct cw_jwt_expect *expect, cJSON **claims, const char **reason);

#endif
