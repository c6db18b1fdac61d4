/* cw_config.h - the edge daemon's JSON configuration (the seed's config.json).
 *
 * Unknown keys and bad values are refused with a message naming the key path
 * ("buses[0].boards[1].locks: expected an integer 1..32"). Never ignored. */
#ifndef CW_CONFIG_H
#define CW_CONFIG_H

#include <stddef.h>

#include "cw_engine.h"
#include "cw_kiosk.h"
#include "cw_lockbus.h"
#include "cw_sms.h"
#include "cw_sync.h"

#define CW_MAX_BUSES 8
#define CW_MAX_CARTS 512

struct cw_edge_config {
	/* identity */
	char chain_id[64];
	char branch_id[64];
	char device_id[64];
	char device_name[64];
	/* storage: <data_dir>/edge.db */
	char data_dir[512];
	char log_level[8]; /* debug|info|warn|error, default info */
	/* hardware */
	int nbuses;
	struct cw_bus_config buses[CW_MAX_BUSES];
	/* carts: explicit list, or numbered 1..N over every lock of every board
	 * in config order when the "carts" key is absent */
	int ncarts;
	struct cw_cart_map carts[CW_MAX_CARTS];
	struct cw_rules rules;
	/* local HTTP API */
	char api_bind[64];  /* default "127.0.0.1" */
	int api_port;       /* default 8080; 0 = any free port */
	char admin_token[128];
	/* api.admin_token_file, "" when the token is given inline: the token
	 * is the file's first line, read at every load (docs/OPERATIONS.md) */
	char admin_token_file[512];
	/* optional "cloud" section (docs/SYNC.md "Identity and enrollment"):
	 * without it the device runs alone. cloud.data_dir, device_name and
	 * firmware_version are filled from the rest of the config. */
	bool cloud_enabled;
	struct cw_sync_config cloud;
	/* the customer kiosk (docs/KIOSK.md); defaults when absent */
	struct cw_kiosk_config kiosk;
	/* "sms" (optional): text messages to customers, provider none by
	 * default (src/edge/cw_sms.h) */
	struct cw_sms_config sms;
};

/* Fills defaults, then parses. On error returns CW_ERR_CONFIG (or
 * CW_ERR_IO / CW_ERR_TOOBIG for the file) and writes a one-line reason that
 * names the key into errbuf. */
int cw_edge_config_load(const char *path, struct cw_edge_config *out, char *errbuf, size_t errlen);
int cw_edge_config_parse(const char *json, size_t len, struct cw_edge_config *out, char *errbuf,
			 size_t errlen);

#endif
