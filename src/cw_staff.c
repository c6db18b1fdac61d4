/* cw_staff.c - kiosk staff entries (see the header). */
#include "cw_staff.h"

#include <string.h>

#include "cw_error.h"

/* One entry into *s; p's path is the element's ("kiosk_staff[i]"). */
static int parse_one(struct cw_jsoncfg *p, const cJSON *o, struct cw_staff *s)
{
	static const char *const keys[] = {"id", "name", "pin_hash", NULL};
	const unsigned req = CW_JSONCFG_REQUIRED;
	int rc;

	if (!cJSON_IsObject(o))
		return cw_jsoncfg_fail(p, NULL, "expected an object {\"id\", \"name\", \"pin_hash\"}");
	if ((rc = cw_jsoncfg_check_keys(p, o, keys)) ||
	    (rc = cw_jsoncfg_get_str(p, o, "id", req | CW_JSONCFG_IDENT, s->id, sizeof(s->id))) ||
	    (rc = cw_jsoncfg_get_str(p, o, "name", req, s->name, sizeof(s->name))) ||
	    (rc = cw_jsoncfg_get_str(p, o, "pin_hash", req, s->pin_hash, sizeof(s->pin_hash))))
		return rc;
	if (strncmp(s->pin_hash, CW_STAFF_HASH_PREFIX, strlen(CW_STAFF_HASH_PREFIX)) != 0)
		return cw_jsoncfg_fail(p, "pin_hash", "expected an Argon2id hash starting with \"%s\" "
				       "(cartwisectl pin-hash)", CW_STAFF_HASH_PREFIX);
	return CW_OK;
}

int cw_staff_parse(struct cw_jsoncfg *p, const char *key, const cJSON *arr, struct cw_staff *out,
		   int *n)
{
	struct cw_staff tmp[CW_STAFF_MAX];
	struct cw_staff *s = out ? out : tmp;
	const cJSON *it;
	int i = 0, rc = CW_OK;

	*n = 0;
	if (!cJSON_IsArray(arr))
		return cw_jsoncfg_fail(p, key, "expected an array of {\"id\", \"name\", \"pin_hash\"}");
	if (cJSON_GetArraySize(arr) > CW_STAFF_MAX)
		return cw_jsoncfg_fail(p, key, "at most %d staff entries", CW_STAFF_MAX);
	cJSON_ArrayForEach(it, arr) {
		size_t mark = cw_jsoncfg_push(p, "%s%s[%d]", p->path[0] ? "." : "", key, i);
		memset(&s[i], 0, sizeof(s[i]));
		rc = parse_one(p, it, &s[i]);
		for (int j = 0; rc == CW_OK && j < i; j++) {
			if (strcmp(s[j].id, s[i].id) == 0)
				rc = cw_jsoncfg_fail(p, "id", "the same id as %s[%d]", key, j);
		}
		cw_jsoncfg_pop(p, mark);
		if (rc != CW_OK)
			break;
		i++;
	}
	if (rc == CW_OK)
		*n = i;
	return rc;
}
