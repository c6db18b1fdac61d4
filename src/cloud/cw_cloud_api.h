/* cw_cloud_api.h - the aggregator's HTTP API on libmicrohttpd.
 *
 * A thread pool serves requests; each request takes a store connection for
 * the duration of one store call. Routes, status codes and bodies are listed
 * in docs/CLOUD.md. Every error is {"error": {"code": ..., "message": ...}}. */
#ifndef CW_CLOUD_API_H
#define CW_CLOUD_API_H

#include <sodium.h>
#include <stdio.h>

#include "cw_cloud_config.h"
#include "cw_cloud_events.h"
#include "cw_cloud_mqtt.h"
#include "cw_store.h"

/* Request bodies larger than this are refused with 413. */
#define CW_CLOUD_BODY_MAX (64 * 1024)
/* ... except a sync batch of an authenticated device (docs/SYNC.md "Up"). */
#define CW_CLOUD_SYNC_BODY_MAX (1024 * 1024)

struct cw_cloud_api;

struct cw_cloud_api_params {
	const struct cw_cloud_config *cfg;             /* copied */
	struct cw_store *store;                        /* borrowed: outlives the API */
	const unsigned char *sk;                       /* crypto_sign_SECRETKEYBYTES, copied */
	const char *tls_cert_pem, *tls_key_pem;        /* NULL = plain HTTP; copied */
	struct cw_cloud_mqtt *mqtt;                    /* NULL = no broker link; borrowed */
	struct cw_events *events;                      /* live event hub; NULL = the
							* events route answers 503; borrowed:
							* outlives the API */
};

/* Starts serving. CW_ERR_IO when the address cannot be bound. */
int cw_cloud_api_new(const struct cw_cloud_api_params *p, struct cw_cloud_api **out);
/* The port actually bound (useful with port 0). */
int cw_cloud_api_port(const struct cw_cloud_api *a);
/* Stops serving (ends the live event streams, waits for requests in
 * progress) and frees. NULL ok. */
void cw_cloud_api_free(struct cw_cloud_api *a);

/* Writes every route as "METHOD /path/{id}" lines (what docs/openapi.json
 * must describe; test/cloud/cloud_openapi.sh compares the two). */
void cw_cloud_api_print_routes(FILE *f);

/* RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), years
 * 1970..9999) into ms since the epoch: true, or false when it is not one. */
bool cw_cloud_rfc3339_ms(const char *s, int64_t *out);

/* Keyed BLAKE2b of an enrollment code as 64 hex characters, with the key
 * derived from the signing key (so a database dump alone enrols nothing). */
void cw_enroll_hash(const unsigned char key[crypto_generichash_KEYBYTES], const char *code,
		    char out[65]);

#endif
