/* kiosk_tool - helpers for the kiosk tests (the scripts in test/kiosk).
 *
 *   kiosk_tool pin-hash
 *       reads a PIN (one line) from stdin and prints its crypto_pwhash_str
 *       hash ("$argon2id$..."), for kiosk.staff[].pin_hash in a test config.
 *       Python's standard library has no Argon2id. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

static int pin_hash(void)
{
	char pin[256], out[crypto_pwhash_STRBYTES];
	size_t len;

	if (!fgets(pin, sizeof(pin), stdin)) {
		fprintf(stderr, "kiosk_tool pin-hash: no PIN on stdin\n");
		return 1;
	}
	len = strcspn(pin, "\r\n");
	pin[len] = '\0';
	if (len == 0) {
		fprintf(stderr, "kiosk_tool pin-hash: empty PIN\n");
		return 1;
	}
	if (crypto_pwhash_str_alg(out, pin, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
				  crypto_pwhash_MEMLIMIT_INTERACTIVE,
				  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		fprintf(stderr, "kiosk_tool pin-hash: out of memory\n");
		return 1;
	}
	sodium_memzero(pin, sizeof(pin));
	printf("%s\n", out);
	return 0;
}

int main(int argc, char **argv)
{
	if (sodium_init() < 0)
		return 2;
	if (argc == 2 && strcmp(argv[1], "pin-hash") == 0)
		return pin_hash();
	fprintf(stderr, "usage: kiosk_tool pin-hash <PIN\n");
	return 2;
}
