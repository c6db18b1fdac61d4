/* kiosk_tool - helpers for the kiosk tests (the scripts in test/kiosk).
 *
 *   kiosk_tool sign DATA_DIR
 *       signs each line of stdin (a JSON object of claims) with the edge's
 *       own customer-token key, derived from DATA_DIR/kiosk.key as
 *       src/edge/cw_kiosk.c derives it, and prints one token per line: tokens
 *       the edge must refuse (expired, another typ or audience) and one it
 *       must accept (which proves the derivation matches), from one process. */
#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cw_error.h"
#include "cw_jwt.h"

/* Must match src/edge/cw_kiosk.c (KDF_CTX, KDF_TOKEN): a test that signs a
 * token the edge then accepts proves they do. */
#define KIOSK_KDF_CTX "cwkiosk1"
#define KIOSK_KDF_TOKEN 1

static int sign_lines(const char *data_dir)
{
	unsigned char master[crypto_kdf_KEYBYTES], seed[crypto_sign_SEEDBYTES];
	unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	static char line[16384];
	char path[4096];
	int rc = 0;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/kiosk.key", data_dir);
	f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	n = fread(master, 1, sizeof(master), f);
	fclose(f);
	if (n != sizeof(master)) {
		fprintf(stderr, "%s: expected %zu bytes\n", path, sizeof(master));
		return 1;
	}
	crypto_kdf_derive_from_key(seed, sizeof(seed), KIOSK_KDF_TOKEN, KIOSK_KDF_CTX, master);
	crypto_sign_seed_keypair(pk, sk, seed);
	while (rc == 0 && fgets(line, sizeof(line), stdin)) {
		cJSON *claims = cJSON_Parse(line);
		char *tok = NULL;
		if (!claims || cw_jwt_sign(claims, sk, &tok) != CW_OK) {
			fprintf(stderr, "kiosk_tool sign: cannot sign %s", line);
			rc = 1;
		} else {
			printf("%s\n", tok);
		}
		free(tok);
		cJSON_Delete(claims);
	}
	sodium_memzero(master, sizeof(master));
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
	return rc;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 2;
	if (argc == 3 && strcmp(argv[1], "sign") == 0)
		return sign_lines(argv[2]);
	fprintf(stderr, "usage: kiosk_tool sign DATA_DIR <CLAIMS_LINES\n");
	return 2;
}
