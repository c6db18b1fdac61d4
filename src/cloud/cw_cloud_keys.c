/* cw_cloud_keys.c - the signing key file (see the header). */
#include "cw_cloud_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_cloud_config.h"
#include "cw_error.h"
#include "cw_log.h"

#define KEY_B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define KEY_FILE_MAX 256

static int write_all(int fd, const void *data, size_t len)
{
	const char *buf = data;

	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return CW_ERR_IO;
		buf += w;
		len -= (size_t)w;
	}
	return CW_OK;
}

/* fsync of the directory holding path, so that the rename itself is durable. */
static int sync_dir(const char *path)
{
	char copy[1024];
	int fd, rc;

	snprintf(copy, sizeof(copy), "%s", path);
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return CW_ERR_IO;
	rc = fsync(fd) == 0 ? CW_OK : CW_ERR_IO;
	close(fd);
	return rc;
}

/* Writes data to a new 0600 temp file beside path (name in tmp), fsynced and
 * closed. On failure nothing is left behind. */
static int write_temp(const char *path, const void *data, size_t len, char *tmp, size_t cap)
{
	int fd, rc = CW_ERR_IO;

	if (!path || !*path || strlen(path) + 16 > cap)
		return CW_ERR_INVAL;
	snprintf(tmp, cap, "%s.tmp-XXXXXX", path);
	/* mkstemp creates the file 0600 */
	fd = mkstemp(tmp);
	if (fd < 0)
		return CW_ERR_IO;
	if (fchmod(fd, 0600) == 0 && write_all(fd, data, len) == CW_OK && fsync(fd) == 0)
		rc = CW_OK;
	if (close(fd) != 0)
		rc = CW_ERR_IO;
	if (rc != CW_OK)
		unlink(tmp);
	return rc;
}

int cw_file_replace(const char *path, const void *data, size_t len)
{
	char tmp[1024];
	int rc = write_temp(path, data, len, tmp, sizeof(tmp));

	if (rc != CW_OK)
		return rc;
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return CW_ERR_IO;
	}
	return sync_dir(path);
}

int cw_key_generate_file(const char *path)
{
	unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	char line[sodium_base64_ENCODED_LEN(crypto_sign_SECRETKEYBYTES, KEY_B64) + 1];
	char tmp[1024];
	struct stat st;
	int rc;
	size_t n;

	if (!path || !*path)
		return CW_ERR_INVAL;
	if (lstat(path, &st) == 0)
		return CW_ERR_CONFLICT;
	crypto_sign_keypair(pk, sk);
	sodium_bin2base64(line, sizeof(line) - 1, sk, sizeof(sk), KEY_B64);
	n = strlen(line);
	line[n++] = '\n';
	rc = write_temp(path, line, n, tmp, sizeof(tmp));
	if (rc != CW_OK)
		goto out;
	/* rename that never replaces a key that appeared meanwhile; link()
	 * does the same on file systems without RENAME_NOREPLACE */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) != 0 &&
	    (errno != EINVAL || link(tmp, path) != 0))
		rc = errno == EEXIST ? CW_ERR_CONFLICT : CW_ERR_IO;
	else
		rc = sync_dir(path);
	unlink(tmp);
out:
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(line, sizeof(line));
	return rc;
}

void cw_mqtt_device_password(const unsigned char sk[crypto_sign_SECRETKEYBYTES],
			     const char *device_id, char out[CW_MQTT_PASSWORD_LEN + 1])
{
	unsigned char key[crypto_generichash_KEYBYTES], h[32];

	/* a subkey of the seed with its own context, like the enrollment and
	 * login keys (cw_cloud_api.c) */
	crypto_kdf_derive_from_key(key, sizeof(key), 1, "cwmqttpw", sk);
	crypto_generichash(h, sizeof(h), (const unsigned char *)device_id, strlen(device_id), key,
			   sizeof(key));
	sodium_bin2base64(out, CW_MQTT_PASSWORD_LEN + 1, h, sizeof(h), KEY_B64);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(h, sizeof(h));
}

void cw_customer_token_seed(const unsigned char sk[crypto_sign_SECRETKEYBYTES],
			    const char *chain_id, unsigned char out[CW_CUSTOMER_SEED_BYTES])
{
	/* the label's own NUL separates it from the chain id */
	static const char label[] = "cartwise customer-token v1";
	unsigned char key[crypto_generichash_KEYBYTES];
	crypto_generichash_state st;

	crypto_kdf_derive_from_key(key, sizeof(key), 1, "cwcusttk", sk);
	crypto_generichash_init(&st, key, sizeof(key), CW_CUSTOMER_SEED_BYTES);
	crypto_generichash_update(&st, (const unsigned char *)label, sizeof(label));
	crypto_generichash_update(&st, (const unsigned char *)chain_id, strlen(chain_id));
	crypto_generichash_final(&st, out, CW_CUSTOMER_SEED_BYTES);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(&st, sizeof(st));
}

int cw_key_load_file(const char *path, unsigned char sk[crypto_sign_SECRETKEYBYTES],
		     unsigned char pk[crypto_sign_PUBLICKEYBYTES])
{
	unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
	char *buf = NULL;
	const char *end = NULL;
	size_t len = 0, binlen = 0;
	struct stat st;
	int rc;

	rc = cw_read_file(path, KEY_FILE_MAX, &buf, &len);
	if (rc != CW_OK)
		return rc == CW_ERR_TOOBIG ? CW_ERR_CONFIG : CW_ERR_IO;
	if (stat(path, &st) == 0 && (st.st_mode & 077))
		cw_warn("key.permissions", "path=%s mode=%03o msg=\"signing key is readable by "
			"group or others; chmod 600 it\"", path, (unsigned)(st.st_mode & 0777));
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	rc = CW_ERR_CONFIG;
	if (sodium_base642bin(sk, crypto_sign_SECRETKEYBYTES, buf, len, NULL, &binlen, &end,
			      KEY_B64) != 0 ||
	    binlen != crypto_sign_SECRETKEYBYTES || end != buf + len)
		goto out;
	/* the second half must be the public key of the first (the seed) */
	crypto_sign_seed_keypair(pk2, sk2, sk);
	if (sodium_memcmp(sk2, sk, sizeof(sk2)) != 0)
		goto out;
	memcpy(pk, pk2, sizeof(pk2));
	rc = CW_OK;
out:
	sodium_memzero(sk2, sizeof(sk2));
	if (buf) {
		sodium_memzero(buf, len);
		free(buf);
	}
	if (rc != CW_OK)
		sodium_memzero(sk, crypto_sign_SECRETKEYBYTES);
	return rc;
}
