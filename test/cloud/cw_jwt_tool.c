/* cw_jwt_tool - builds tokens for the cloud's integration tests, good and bad.
 *
 *   cw_jwt_tool sign KEYFILE CLAIMS_JSON
 *       a well-formed EdDSA token (cw_jwt_sign) over the given claims
 *   cw_jwt_tool forge KEYFILE HEADER_JSON CLAIMS_JSON
 *       any header, Ed25519-signed with the key (e.g. "alg":"none")
 *   cw_jwt_tool unsigned HEADER_JSON CLAIMS_JSON
 *       no signature at all ("h.p.")
 *   cw_jwt_tool hs256-pk KEYFILE CLAIMS_JSON
 *       the key-confusion attack: HS256 keyed with the *public* key
 *   cw_jwt_tool verify PUBKEY_B64URL ISS AUD TYP TOKEN
 *       verifies as a device would (cw_jwt_verify with the cloud's public
 *       key as handed out at registration); prints the claims, exit 1 if
 *       refused (the reason on stderr)
 * Claims may use "@now+N" / "@now-N" as numbers for iat/exp/nbf. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cw_cloud_keys.h"
#include "cw_error.h"
#include "cw_jwt.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

static void b64(const void *bin, size_t len, char *out, size_t cap)
{
	sodium_bin2base64(out, cap, bin, len, B64);
}

/* Replaces "@now+N" / "@now-N" string values of iat/exp/nbf by numbers. */
static char *claims_text(const char *in)
{
	cJSON *c = cJSON_Parse(in);
	const char *keys[] = {"iat", "exp", "nbf"};
	char *out;

	if (!c) {
		fprintf(stderr, "claims are not JSON\n");
		exit(2);
	}
	for (int i = 0; i < 3; i++) {
		cJSON *it = cJSON_GetObjectItem(c, keys[i]);
		if (cJSON_IsString(it) && strncmp(it->valuestring, "@now", 4) == 0) {
			long d = strtol(it->valuestring + 4, NULL, 10);
			cJSON_ReplaceItemInObject(c, keys[i], cJSON_CreateNumber((double)(time(NULL) + d)));
		}
	}
	out = cJSON_PrintUnformatted(c);
	cJSON_Delete(c);
	return out;
}

int main(int argc, char **argv)
{
	unsigned char sk[crypto_sign_SECRETKEYBYTES], pk[crypto_sign_PUBLICKEYBYTES];
	static char h64[4096], p64[8192], s64[256], input[12288];
	const char *header = NULL;
	char *claims;
	int mode;

	if (sodium_init() < 0 || argc < 3)
		return 2;
	if (strcmp(argv[1], "verify") == 0 && argc == 7) {
		struct cw_jwt_expect e = {.iss = argv[3], .aud = argv[4], .typ = argv[5],
					  .leeway_s = -1};
		const char *why = "";
		cJSON *cl = NULL;
		size_t len = 0;
		char *text;
		if (sodium_base642bin(pk, sizeof(pk), argv[2], strlen(argv[2]), NULL, &len, NULL,
				      B64) != 0 || len != sizeof(pk)) {
			fprintf(stderr, "bad public key\n");
			return 2;
		}
		if (cw_jwt_verify(argv[6], pk, &e, &cl, &why) != CW_OK) {
			fprintf(stderr, "refused: %s\n", why);
			return 1;
		}
		text = cJSON_PrintUnformatted(cl);
		printf("%s\n", text ? text : "{}");
		cJSON_free(text);
		cJSON_Delete(cl);
		return 0;
	}
	if (strcmp(argv[1], "sign") == 0 && argc == 4)
		mode = 0;
	else if (strcmp(argv[1], "forge") == 0 && argc == 5)
		mode = 1;
	else if (strcmp(argv[1], "unsigned") == 0 && argc == 4)
		mode = 2;
	else if (strcmp(argv[1], "hs256-pk") == 0 && argc == 4)
		mode = 3;
	else
		return 2;
	if (mode != 2 && cw_key_load_file(argv[2], sk, pk) != CW_OK) {
		fprintf(stderr, "cannot load key\n");
		return 1;
	}
	claims = claims_text(argv[argc - 1]);
	if (mode == 0) {
		cJSON *c = cJSON_Parse(claims);
		char *tok = NULL;
		int rc = cw_jwt_sign(c, sk, &tok);
		cJSON_Delete(c);
		free(claims);
		if (rc != CW_OK)
			return 1;
		printf("%s\n", tok);
		free(tok);
		return 0;
	}
	header = mode == 1 ? argv[3] : mode == 2 ? argv[2] : "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	b64(header, strlen(header), h64, sizeof(h64));
	b64(claims, strlen(claims), p64, sizeof(p64));
	snprintf(input, sizeof(input), "%s.%s", h64, p64);
	if (mode == 1) {
		unsigned char sig[crypto_sign_BYTES];
		crypto_sign_detached(sig, NULL, (unsigned char *)input, strlen(input), sk);
		b64(sig, sizeof(sig), s64, sizeof(s64));
	} else if (mode == 3) {
		unsigned char mac[crypto_auth_hmacsha256_BYTES];
		crypto_auth_hmacsha256_state st;
		crypto_auth_hmacsha256_init(&st, pk, sizeof(pk));
		crypto_auth_hmacsha256_update(&st, (unsigned char *)input, strlen(input));
		crypto_auth_hmacsha256_final(&st, mac);
		b64(mac, sizeof(mac), s64, sizeof(s64));
	}
	printf("%s.%s\n", input, s64);
	free(claims);
	return 0;
}
