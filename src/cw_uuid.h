/* cw_uuid.h - UUIDv7 (RFC 9562), time-ordered, random bits from libsodium.
 * Ids are born where the record is born: an offline edge never asks the cloud. */
#ifndef CW_UUID_H
#define CW_UUID_H

#include <stddef.h>

#define CW_UUID_STRLEN 37 /* 36 characters + NUL */

/* Writes a canonical lower-case UUIDv7 string into out (CW_UUID_STRLEN bytes).
 * Requires sodium_init() to have succeeded. */
int cw_uuid_v7(char out[CW_UUID_STRLEN]);
/* 1 if s is a canonical 36-character UUID string (any version), else 0. */
int cw_uuid_valid(const char *s);

#endif
