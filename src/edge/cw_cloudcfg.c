/* cw_cloudcfg.c - the configuration the cloud manages (see the header and
 * docs/SYNC.md "Down: configuration").
 *
 * <data_dir>/cloud-config.json:
 *   {"v": 1, "version": N, "config": {sections}, "rejected": null |
 *    {"version": M, "message": "..."}, "customer_token_key"?: {"seed": "..."}}
 * version/config: the newest version accepted (running, or waiting for a
 * restart); rejected: the last version refused, so that a restarted edge does
 * not pull it again; customer_token_key: the chain's key, which comes with
 * every pull and is part of no version (absent until the first). */
#include "cw_cloudcfg.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cw_error.h"
#include "cw_file.h"
#include "cw_jsoncfg.h"
#include "cw_log.h"

/* The sections the cloud may set; revoked_tokens and kiosk_staff are not
 * keys of the edge's config file and are handled here. A new section is
 * added here, in the cloud's list (cw_cloud_api.c) and in the file's parser. */
static const char *const sections_allowed[] = {"buses",          "carts",       "rules",
					       "revoked_tokens", "kiosk_staff", NULL};
static const char *const sections_merged[] = {"buses", "carts", "rules", NULL};

#define SAVED_MAX (1024 * 1024)
#define MSG_MAX 256
#define KEY_NAME "customer_token_key"
#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING

struct cw_cloudcfg {
	pthread_mutex_t mu;
	char *file_text;
	size_t file_len;
	char path[600]; /* <data_dir>/cloud-config.json */
	struct cw_engine *e;
	struct cw_edge_config *running; /* what the engine and buses run */
	int64_t applied;                /* the cloud version running, 0 = the file alone */
	cJSON *applied_sections;        /* its sections, NULL for version 0 */
	int64_t pending;                /* accepted, waiting for a restart (0 = none) */
	cJSON *pending_sections;
	struct cw_edge_config *pending_cfg;
	bool restarting; /* pending taken for a restart: no offer until restarted */
	int64_t rejected;
	char rejected_msg[MSG_MAX];
	struct cw_cloudcfg_kiosk kiosk; /* all NULL: no kiosk connected */
	bool has_key;                   /* the chain's customer-token key, of no version */
	unsigned char key[CW_CLOUDCFG_SEED_BYTES];
};

/* The kiosk's staff of one version, checked. */
struct kiosk_part {
	int nstaff;
	struct cw_staff staff[CW_STAFF_MAX];
};

/* ---- merge ---- */

static int check_revoked(struct cw_jsoncfg *p, const cJSON *arr)
{
	const cJSON *it;
	int i = 0;

	if (!cJSON_IsArray(arr))
		return cw_jsoncfg_fail(p, "revoked_tokens", "expected an array of token ids");
	if (cJSON_GetArraySize(arr) > CW_CLOUDCFG_REVOKED_MAX)
		return cw_jsoncfg_fail(p, "revoked_tokens", "at most %d token ids",
				       CW_CLOUDCFG_REVOKED_MAX);
	cJSON_ArrayForEach(it, arr) {
		const char *s = cJSON_IsString(it) ? it->valuestring : NULL;
		size_t n = s ? strlen(s) : 0;
		if (n < 1 || n > CW_CLOUDCFG_ID_MAX ||
		    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != n) {
			char key[40];
			snprintf(key, sizeof(key), "revoked_tokens[%d]", i);
			return cw_jsoncfg_fail(p, key, "expected a token id of 1-%d letters, digits, "
						       "'-' and '_'", CW_CLOUDCFG_ID_MAX);
		}
		i++;
	}
	return CW_OK;
}

/* kiosk_staff of sections (NULL: none) into *k. */
static int kiosk_parse(struct cw_jsoncfg *p, const cJSON *sections, struct kiosk_part *k)
{
	const cJSON *staff = cJSON_GetObjectItemCaseSensitive(sections, "kiosk_staff");

	memset(k, 0, sizeof(*k));
	return staff ? cw_staff_parse(p, "kiosk_staff", staff, k->staff, &k->nstaff) : CW_OK;
}

/* The chain's customer-token key, exactly {"seed": 32 bytes in unpadded
 * base64url}, into seed (caller wipes it). Messages never show it. */
static int key_parse(struct cw_jsoncfg *p, const cJSON *key,
		     unsigned char seed[CW_CLOUDCFG_SEED_BYTES])
{
	static const char *const keys[] = {"seed", NULL};
	size_t mark = cw_jsoncfg_enter(p, KEY_NAME), binlen = 0;
	const cJSON *s;
	const char *end = NULL;
	int rc;

	if (!cJSON_IsObject(key))
		return cw_jsoncfg_fail(p, NULL, "expected an object {\"seed\"}");
	if ((rc = cw_jsoncfg_check_keys(p, key, keys)))
		return rc;
	s = cJSON_GetObjectItemCaseSensitive(key, "seed");
	if (!cJSON_IsString(s) ||
	    sodium_base642bin(seed, CW_CLOUDCFG_SEED_BYTES, s->valuestring, strlen(s->valuestring),
			      NULL, &binlen, &end, B64URL) != 0 ||
	    binlen != CW_CLOUDCFG_SEED_BYTES || *end != '\0')
		return cw_jsoncfg_fail(p, "seed", "expected %d bytes in base64url without padding",
				       CW_CLOUDCFG_SEED_BYTES);
	cw_jsoncfg_pop(p, mark);
	return CW_OK;
}

int cw_cloudcfg_merge(const char *file_json, size_t len, const cJSON *sections,
		      struct cw_edge_config *out, char *err, size_t errlen)
{
	struct kiosk_part *kp;
	struct cw_jsoncfg p;
	cJSON *root = NULL;
	char *text = NULL;
	const cJSON *rv;
	int rc;

	cw_jsoncfg_init(&p, err, errlen);
	if (!cJSON_IsObject(sections))
		return cw_jsoncfg_fail(&p, NULL, "the cloud's configuration must be an object");
	if ((rc = cw_jsoncfg_check_keys(&p, sections, sections_allowed)))
		return rc;
	rv = cJSON_GetObjectItemCaseSensitive(sections, "revoked_tokens");
	if (rv && (rc = check_revoked(&p, rv)))
		return rc;
	kp = malloc(sizeof(*kp));
	if (!kp)
		return CW_ERR_NOMEM;
	rc = kiosk_parse(&p, sections, kp);
	sodium_memzero(kp, sizeof(*kp));
	free(kp);
	if (rc != CW_OK)
		return rc;
	/* the file was parsed at start (its size limited when read); its text,
	 * comments and all, is parsed again as the base */
	if ((rc = cw_jsoncfg_parse(&p, file_json, len, len, CW_JSONCFG_PARSE_COMMENTS, &root)))
		goto out;
	for (const char *const *k = sections_merged; *k; k++) {
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(sections, *k);
		cJSON *copy;
		if (!s)
			continue;
		copy = cJSON_Duplicate(s, true);
		if (!copy) {
			rc = CW_ERR_NOMEM;
			goto out;
		}
		if (cJSON_HasObjectItem(root, *k))
			cJSON_ReplaceItemInObjectCaseSensitive(root, *k, copy);
		else
			cJSON_AddItemToObject(root, *k, copy);
	}
	text = cJSON_PrintUnformatted(root);
	if (!text) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	rc = cw_edge_config_parse(text, strlen(text), out, err, errlen);
out:
	cJSON_free(text);
	cJSON_Delete(root);
	return rc;
}

/* ---- the saved file ---- */

/* Writes the newest accepted version, the last refused one and the chain
 * key. Mutex held. */
static int save(struct cw_cloudcfg *c)
{
	int64_t v = c->pending ? c->pending : c->applied;
	const cJSON *sec = c->pending ? c->pending_sections : c->applied_sections;
	cJSON *o = cJSON_CreateObject(), *r, *seed = NULL;
	char *text = NULL, b64[sodium_base64_ENCODED_LEN(CW_CLOUDCFG_SEED_BYTES, B64URL)];
	int rc = CW_ERR_NOMEM;

	if (!o)
		goto out;
	cJSON_AddNumberToObject(o, "v", 1);
	cJSON_AddNumberToObject(o, "version", (double)v);
	if (sec)
		cJSON_AddItemToObject(o, "config", cJSON_Duplicate(sec, true));
	else
		cJSON_AddNullToObject(o, "config");
	if (c->rejected) {
		r = cJSON_AddObjectToObject(o, "rejected");
		cJSON_AddNumberToObject(r, "version", (double)c->rejected);
		cJSON_AddStringToObject(r, "message", c->rejected_msg);
	} else {
		cJSON_AddNullToObject(o, "rejected");
	}
	if (c->has_key) {
		sodium_bin2base64(b64, sizeof(b64), c->key, sizeof(c->key), B64URL);
		r = cJSON_AddObjectToObject(o, KEY_NAME);
		seed = r ? cJSON_AddStringToObject(r, "seed", b64) : NULL;
		sodium_memzero(b64, sizeof(b64));
		if (!seed)
			goto out;
	}
	text = cJSON_Print(o);
	if (!text)
		goto out;
	rc = cw_file_replace(c->path, text, strlen(text));
	if (rc != CW_OK)
		cw_error("edge.cloud_config_save", "path=%s error=\"%s\"", c->path, strerror(errno));
out:
	/* the copies of the chain key */
	if (text)
		sodium_memzero(text, strlen(text));
	if (seed)
		sodium_memzero(seed->valuestring, strlen(seed->valuestring));
	cJSON_free(text);
	cJSON_Delete(o);
	return rc;
}

/* Reads cloud-config.json strictly. CW_ERR_NOTFOUND when there is none. */
static int load_saved(struct cw_cloudcfg *c, int64_t *version, cJSON **sections, char *err,
		      size_t errlen)
{
	static const char *const keys[] = {"v", "version", "config", "rejected", KEY_NAME, NULL};
	static const char *const rkeys[] = {"version", "message", NULL};
	struct cw_jsoncfg p;
	cJSON *root = NULL;
	const cJSON *cfg, *rej, *key;
	char *buf = NULL;
	size_t len = 0;
	int v = 0, ver = 0, rver = 0, rc;

	*version = 0;
	*sections = NULL;
	if (access(c->path, F_OK) != 0 && errno == ENOENT)
		return CW_ERR_NOTFOUND;
	rc = cw_jsoncfg_read_file(c->path, SAVED_MAX, &buf, &len, err, errlen);
	if (rc != CW_OK)
		return rc;
	cw_jsoncfg_init(&p, err, errlen);
	if ((rc = cw_jsoncfg_parse(&p, buf, len, SAVED_MAX, CW_JSONCFG_PARSE_LINE_COL, &root)) ||
	    (rc = cw_jsoncfg_check_keys(&p, root, keys)) ||
	    (rc = cw_jsoncfg_get_int(&p, root, "v", 1, 1, true, &v)) ||
	    (rc = cw_jsoncfg_get_int(&p, root, "version", 0, INT_MAX, true, &ver)))
		goto out;
	cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
	if (!cfg || (!cJSON_IsNull(cfg) && !cJSON_IsObject(cfg)) || (ver > 0) != cJSON_IsObject(cfg)) {
		rc = cw_jsoncfg_fail(&p, "config", "expected an object (null with version 0)");
		goto out;
	}
	rej = cJSON_GetObjectItemCaseSensitive(root, "rejected");
	if (rej && !cJSON_IsNull(rej)) {
		size_t mark = cw_jsoncfg_enter(&p, "rejected");
		if (!cJSON_IsObject(rej)) {
			rc = cw_jsoncfg_fail(&p, NULL, "expected an object or null");
			goto out;
		}
		if ((rc = cw_jsoncfg_check_keys(&p, rej, rkeys)) ||
		    (rc = cw_jsoncfg_get_int(&p, rej, "version", 1, INT_MAX, true, &rver)) ||
		    (rc = cw_jsoncfg_get_str(&p, rej, "message", CW_JSONCFG_EMPTY_OK,
					     c->rejected_msg, sizeof(c->rejected_msg))))
			goto out;
		cw_jsoncfg_pop(&p, mark);
		c->rejected = rver;
	}
	key = cJSON_GetObjectItemCaseSensitive(root, KEY_NAME);
	if (key) {
		if ((rc = key_parse(&p, key, c->key)))
			goto out;
		c->has_key = true;
	}
	*version = ver;
	if (ver > 0) {
		*sections = cJSON_Duplicate(cfg, true);
		if (!*sections)
			rc = CW_ERR_NOMEM;
	}
out:
	if (rc != CW_OK)
		cw_jsoncfg_prefix(err, errlen, c->path);
	cJSON_Delete(root);
	if (buf)
		sodium_memzero(buf, len);
	free(buf);
	return rc;
}

/* ---- lifecycle ---- */

int cw_cloudcfg_new(const char *config_path, const char *data_dir, struct cw_cloudcfg **out)
{
	struct cw_cloudcfg *c;
	char err[256];
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return CW_ERR_NOMEM;
	pthread_mutex_init(&c->mu, NULL);
	if (snprintf(c->path, sizeof(c->path), "%s/%s", data_dir, CW_CLOUDCFG_FILE) >=
	    (int)sizeof(c->path)) {
		rc = CW_ERR_TOOBIG;
		goto fail;
	}
	rc = cw_jsoncfg_read_file(config_path, 1024 * 1024, &c->file_text, &c->file_len, err,
				  sizeof(err));
	if (rc != CW_OK) {
		cw_error("edge.cloud_config", "error=\"%s\"", err);
		goto fail;
	}
	c->running = calloc(1, sizeof(*c->running));
	if (!c->running) {
		rc = CW_ERR_NOMEM;
		goto fail;
	}
	*out = c;
	return CW_OK;
fail:
	cw_cloudcfg_free(c);
	return rc;
}

void cw_cloudcfg_free(struct cw_cloudcfg *c)
{
	if (!c)
		return;
	free(c->file_text);
	free(c->running);
	free(c->pending_cfg);
	cJSON_Delete(c->applied_sections);
	cJSON_Delete(c->pending_sections);
	pthread_mutex_destroy(&c->mu);
	sodium_memzero(c->key, sizeof(c->key));
	free(c);
}

int cw_cloudcfg_start(struct cw_cloudcfg *c, struct cw_edge_config *cfg, char *err,
		      size_t errlen)
{
	struct cw_edge_config *merged = NULL;
	cJSON *sections = NULL;
	char why[MSG_MAX];
	int64_t version = 0;
	int rc;

	pthread_mutex_lock(&c->mu);
	rc = load_saved(c, &version, &sections, err, errlen);
	if (rc == CW_ERR_NOTFOUND) {
		rc = CW_OK;
		goto out;
	}
	if (rc != CW_OK || version == 0)
		goto out;
	merged = malloc(sizeof(*merged));
	if (!merged) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	rc = cw_cloudcfg_merge(c->file_text, c->file_len, sections, merged, why, sizeof(why));
	if (rc == CW_ERR_CONFIG) {
		/* the file changed under it (other buses, say): the file alone
		 * runs, and this version counts as refused until a newer one */
		cw_error("edge.cloud_config_invalid",
			 "version=%lld error=\"%s\" action=\"running on the config file alone\"",
			 (long long)version, why);
		c->rejected = version;
		snprintf(c->rejected_msg, sizeof(c->rejected_msg), "%s", why);
		rc = save(c);
		goto out;
	}
	if (rc != CW_OK)
		goto out;
	*cfg = *merged;
	c->applied = version;
	c->applied_sections = sections;
	sections = NULL;
	cw_info("edge.cloud_config", "version=%lld source=%s", (long long)version, c->path);
out:
	pthread_mutex_unlock(&c->mu);
	cJSON_Delete(sections);
	free(merged);
	return rc;
}

/* The revoked ids of sections (borrowed pointers into it; caller frees the
 * array). */
static int revoked_list(const cJSON *sections, const char ***out, int *n)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(sections, "revoked_tokens"), *it;
	int k = 0;

	*out = NULL;
	*n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
	if (*n == 0)
		return CW_OK;
	*out = calloc((size_t)*n, sizeof(**out));
	if (!*out)
		return CW_ERR_NOMEM;
	cJSON_ArrayForEach(it, arr)
		(*out)[k++] = it->valuestring;
	return CW_OK;
}

/* The kiosk's staff of sections (NULL: version 0, none) and the chain key to
 * the kiosk's hooks, if one is connected. Mutex held. */
static int apply_kiosk(struct cw_cloudcfg *c, const cJSON *sections)
{
	struct kiosk_part *k;
	struct cw_jsoncfg p;
	char err[MSG_MAX];
	int rc;

	if (!c->kiosk.chain_seed && !c->kiosk.staff)
		return CW_OK;
	k = malloc(sizeof(*k));
	if (!k)
		return CW_ERR_NOMEM;
	cw_jsoncfg_init(&p, err, sizeof(err));
	/* checked by the merge already; a failure here is a bug */
	rc = kiosk_parse(&p, sections, k);
	if (rc != CW_OK)
		cw_error("edge.cloud_config_kiosk", "error=\"%s\"", err);
	if (rc == CW_OK && c->kiosk.staff)
		rc = c->kiosk.staff(c->kiosk.ctx, k->staff, k->nstaff);
	if (rc == CW_OK && c->kiosk.chain_seed)
		c->kiosk.chain_seed(c->kiosk.ctx, c->has_key ? c->key : NULL);
	sodium_memzero(k, sizeof(*k));
	free(k);
	return rc;
}

/* Rules and revoked tokens of (version, sections) into the engine, then the
 * kiosk's sections to the kiosk. */
static int apply_live(struct cw_cloudcfg *c, int64_t version, const cJSON *sections,
		      const struct cw_rules *rules)
{
	const char **ids = NULL;
	int n = 0, rc = revoked_list(sections, &ids, &n);

	if (rc == CW_OK)
		rc = cw_engine_apply_config(c->e, version, rules, ids, n);
	free(ids);
	if (rc == CW_OK)
		rc = apply_kiosk(c, sections);
	return rc;
}

void cw_cloudcfg_set_kiosk(struct cw_cloudcfg *c, const struct cw_cloudcfg_kiosk *k)
{
	int rc;

	pthread_mutex_lock(&c->mu);
	if (k)
		c->kiosk = *k;
	else
		memset(&c->kiosk, 0, sizeof(c->kiosk));
	rc = apply_kiosk(c, c->applied_sections);
	if (rc != CW_OK)
		cw_error("edge.cloud_config_kiosk", "version=%lld error=%s", (long long)c->applied,
			 cw_errname(rc));
	pthread_mutex_unlock(&c->mu);
}

int cw_cloudcfg_attach(struct cw_cloudcfg *c, struct cw_engine *e,
		       const struct cw_edge_config *running)
{
	int rc = CW_OK;

	pthread_mutex_lock(&c->mu);
	c->e = e;
	if (e && running) {
		*c->running = *running;
		rc = apply_live(c, c->applied, c->applied_sections, &running->rules);
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* ---- versions from the cloud ---- */

static bool same_hardware(const struct cw_edge_config *a, const struct cw_edge_config *b)
{
	/* both come from cw_edge_config_parse, which zeroes the structs before
	 * filling them: equal settings are equal bytes */
	return a->nbuses == b->nbuses && a->ncarts == b->ncarts &&
	       memcmp(a->buses, b->buses, (size_t)a->nbuses * sizeof(a->buses[0])) == 0 &&
	       memcmp(a->carts, b->carts, (size_t)a->ncarts * sizeof(a->carts[0])) == 0;
}

/* A bus whose serial port does not exist would stop the daemon at its
 * restart: refused up front, like at start (main.c). */
static int check_ports(const struct cw_edge_config *cfg, char *err, size_t errlen)
{
	for (int i = 0; i < cfg->nbuses; i++) {
		if (access(cfg->buses[i].port, F_OK) != 0) {
			snprintf(err, errlen, "buses[%d].port: serial port does not exist", i);
			return CW_ERR_CONFIG;
		}
	}
	return CW_OK;
}

/* Mutex held. */
static void reject(struct cw_cloudcfg *c, int64_t version, const char *msg)
{
	cJSON *data = cJSON_CreateObject();

	c->rejected = version;
	snprintf(c->rejected_msg, sizeof(c->rejected_msg), "%s", msg);
	cw_warn("edge.cloud_config_rejected", "version=%lld error=\"%s\" running=%lld",
		(long long)version, msg, (long long)c->applied);
	save(c); /* remembered across a restart if it can be; logged otherwise */
	if (data) {
		cJSON_AddNumberToObject(data, "version", (double)version);
		cJSON_AddStringToObject(data, "message", c->rejected_msg);
		cJSON_AddNumberToObject(data, "running_version", (double)c->applied);
	}
	if (c->e && cw_engine_event(c->e, "config.rejected", data) != CW_OK)
		cw_error("edge.cloud_config_event", "version=%lld", (long long)version);
}

static void event_applied(struct cw_cloudcfg *c, int64_t version, bool restart)
{
	cJSON *data = cJSON_CreateObject();

	if (data) {
		cJSON_AddNumberToObject(data, "version", (double)version);
		cJSON_AddBoolToObject(data, "restart", restart);
	}
	if (c->e)
		cw_engine_event(c->e, "config.applied", data);
	else
		cJSON_Delete(data);
}

int cw_cloudcfg_offer(struct cw_cloudcfg *c, int64_t version, const cJSON *config, char *err,
		      size_t errlen)
{
	struct cw_edge_config *next = NULL;
	cJSON *sections = NULL, *old_sections;
	int64_t old_version;
	int rc;

	if (version < 1 || !config)
		return CW_ERR_INVAL;
	next = malloc(sizeof(*next));
	sections = cJSON_Duplicate(config, true);
	pthread_mutex_lock(&c->mu);
	if (!next || !sections) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	if (!c->e || c->restarting) {
		/* between a stop and a start, or a restart into the pending
		 * version under way: offered again at a later heartbeat */
		rc = CW_ERR_STATE;
		goto out;
	}
	rc = cw_cloudcfg_merge(c->file_text, c->file_len, config, next, err, errlen);
	if (rc == CW_OK && !same_hardware(c->running, next))
		rc = check_ports(next, err, errlen);
	if (rc == CW_ERR_CONFIG) {
		reject(c, version, err);
		goto out;
	}
	if (rc != CW_OK)
		goto out;
	if (!same_hardware(c->running, next)) {
		/* buses or carts: saved now, run by a restart at a safe point */
		old_version = c->pending;
		old_sections = c->pending_sections;
		c->pending = version;
		c->pending_sections = sections;
		rc = save(c);
		if (rc != CW_OK) { /* not saved: nothing changed */
			c->pending = old_version;
			c->pending_sections = old_sections;
			goto out;
		}
		sections = NULL;
		cJSON_Delete(old_sections);
		free(c->pending_cfg);
		c->pending_cfg = next;
		next = NULL;
		cw_info("edge.cloud_config_pending",
			"version=%lld reason=\"buses or carts changed: applied by a restart of the "
			"engine at the next safe point\"", (long long)version);
		goto out;
	}
	/* rules and revoked tokens only: live, all or nothing. The file first
	 * (what any restart runs), then the engine in one transaction. */
	old_version = c->applied;
	old_sections = c->applied_sections;
	c->applied = version;
	c->applied_sections = sections;
	{
		int64_t old_pending = c->pending;
		c->pending = 0; /* a newer version replaces one waiting for a restart */
		rc = save(c);
		c->pending = old_pending;
	}
	if (rc != CW_OK) { /* not saved: nothing changed */
		c->applied = old_version;
		c->applied_sections = old_sections;
		goto out;
	}
	sections = NULL;
	cJSON_Delete(c->pending_sections);
	c->pending_sections = NULL;
	c->pending = 0;
	free(c->pending_cfg);
	c->pending_cfg = NULL;
	rc = apply_live(c, version, c->applied_sections, &next->rules);
	if (rc != CW_OK) {
		/* saved but not applied: the engine restart applies it whole */
		cw_warn("edge.cloud_config_apply", "version=%lld error=%s action=restart",
			(long long)version, cw_errname(rc));
		c->pending = version;
		c->pending_sections = c->applied_sections;
		c->applied_sections = old_sections;
		c->applied = old_version;
		c->pending_cfg = next;
		next = NULL;
		rc = CW_OK;
		goto out;
	}
	cJSON_Delete(old_sections);
	c->running->rules = next->rules;
	cw_info("edge.cloud_config_applied", "version=%lld live=true", (long long)version);
	event_applied(c, version, false);
out:
	pthread_mutex_unlock(&c->mu);
	cJSON_Delete(sections);
	free(next);
	return rc;
}

int cw_cloudcfg_offer_key(struct cw_cloudcfg *c, const cJSON *key, char *err, size_t errlen)
{
	unsigned char seed[CW_CLOUDCFG_SEED_BYTES], old[CW_CLOUDCFG_SEED_BYTES];
	struct cw_jsoncfg p;
	bool had;
	int rc;

	cw_jsoncfg_init(&p, err, errlen);
	rc = key_parse(&p, key, seed);
	if (rc != CW_OK)
		goto out;
	pthread_mutex_lock(&c->mu);
	had = c->has_key;
	if (had && sodium_memcmp(c->key, seed, sizeof(seed)) == 0) {
		pthread_mutex_unlock(&c->mu);
		goto out;
	}
	/* the file first (what a restart, also offline, hands the kiosk),
	 * then the kiosk */
	memcpy(old, c->key, sizeof(old));
	memcpy(c->key, seed, sizeof(seed));
	c->has_key = true;
	rc = save(c);
	if (rc != CW_OK) { /* not saved: nothing changed */
		memcpy(c->key, old, sizeof(old));
		c->has_key = had;
	} else {
		if (c->kiosk.chain_seed)
			c->kiosk.chain_seed(c->kiosk.ctx, c->key);
		cw_info("edge.chain_key", "action=%s", had ? "replaced" : "stored");
	}
	pthread_mutex_unlock(&c->mu);
out:
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(old, sizeof(old));
	return rc;
}

bool cw_cloudcfg_has_key(struct cw_cloudcfg *c)
{
	bool yes;

	pthread_mutex_lock(&c->mu);
	yes = c->has_key;
	pthread_mutex_unlock(&c->mu);
	return yes;
}

void cw_cloudcfg_versions(struct cw_cloudcfg *c, int64_t *have, int64_t *rejected)
{
	pthread_mutex_lock(&c->mu);
	*have = c->pending ? c->pending : c->applied;
	*rejected = c->rejected;
	pthread_mutex_unlock(&c->mu);
}

bool cw_cloudcfg_pending(struct cw_cloudcfg *c, struct cw_edge_config *out)
{
	bool yes;

	pthread_mutex_lock(&c->mu);
	yes = c->pending > 0 && c->pending_cfg;
	if (yes) {
		*out = *c->pending_cfg;
		c->restarting = true; /* the version restarted with stays pending */
	}
	pthread_mutex_unlock(&c->mu);
	return yes;
}

void cw_cloudcfg_restarted(struct cw_cloudcfg *c, bool ok, const char *why)
{
	int64_t version;

	pthread_mutex_lock(&c->mu);
	c->restarting = false;
	version = c->pending;
	if (!version) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	free(c->pending_cfg);
	c->pending_cfg = NULL;
	c->pending = 0;
	if (ok) {
		cJSON_Delete(c->applied_sections);
		c->applied_sections = c->pending_sections;
		c->pending_sections = NULL;
		c->applied = version;
		cw_info("edge.cloud_config_applied", "version=%lld live=false", (long long)version);
		event_applied(c, version, true);
	} else {
		cJSON_Delete(c->pending_sections);
		c->pending_sections = NULL;
		reject(c, version, why); /* saves the running version back too */
	}
	pthread_mutex_unlock(&c->mu);
}

static void add_version(cJSON *o, const char *key, int64_t v)
{
	if (v > 0)
		cJSON_AddNumberToObject(o, key, (double)v);
	else
		cJSON_AddNullToObject(o, key);
}

void cw_cloudcfg_health(struct cw_cloudcfg *c, cJSON *obj)
{
	if (!c || !obj)
		return;
	pthread_mutex_lock(&c->mu);
	cJSON_AddNumberToObject(obj, "config_version", (double)c->applied);
	add_version(obj, "config_pending_version", c->pending);
	add_version(obj, "config_rejected_version", c->rejected);
	if (c->rejected)
		cJSON_AddStringToObject(obj, "config_rejected_message", c->rejected_msg);
	else
		cJSON_AddNullToObject(obj, "config_rejected_message");
	pthread_mutex_unlock(&c->mu);
}
