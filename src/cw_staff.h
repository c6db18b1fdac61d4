/* cw_staff.h - kiosk staff entries {"id", "name", "pin_hash"} (issue 5,
 * docs/SYNC.md "Down: configuration"): the cloud's `kiosk_staff` section
 * and the edge's own list. One parser, so the cloud refuses at PUT time
 * exactly what the edge would refuse at pull time.
 *
 * pin_hash is a crypto_pwhash_str string of the Argon2id algorithm
 * (`cartwisectl pin-hash`); the PIN itself never leaves the person who
 * types it. Messages never echo a hash. */
#ifndef CW_STAFF_H
#define CW_STAFF_H

#include <cjson/cJSON.h>

#include "cw_jsoncfg.h"

#define CW_STAFF_MAX 50             /* entries in one list */
#define CW_STAFF_ID_MAX 64          /* bytes with the NUL: [A-Za-z0-9_-]{1,63} */
#define CW_STAFF_NAME_MAX 64        /* bytes with the NUL: 1-63 bytes of text */
#define CW_STAFF_HASH_MAX 128       /* bytes with the NUL (crypto_pwhash_STRBYTES) */
#define CW_STAFF_HASH_PREFIX "$argon2id$"

struct cw_staff {
	char id[CW_STAFF_ID_MAX];
	char name[CW_STAFF_NAME_MAX];
	char pin_hash[CW_STAFF_HASH_MAX];
};

/* Parses arr, the member `key` of the object at p's path, strictly: an
 * array of at most CW_STAFF_MAX objects of exactly id, name and pin_hash,
 * ids unique. out (room for CW_STAFF_MAX entries) may be NULL to check only;
 * *n = the number of entries. CW_ERR_CONFIG with a message naming the
 * element ("kiosk_staff[2].pin_hash: ..."). */
int cw_staff_parse(struct cw_jsoncfg *p, const char *key, const cJSON *arr, struct cw_staff *out,
		   int *n);

#endif
