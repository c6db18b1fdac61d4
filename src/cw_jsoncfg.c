/* cw_jsoncfg.c - strict JSON configuration parsing (see the header). */
#include "cw_jsoncfg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_error.h"

void cw_jsoncfg_init(struct cw_jsoncfg *c, char *err, size_t errlen)
{
	c->err = err;
	c->errlen = errlen;
	c->path[0] = '\0';
	if (err && errlen)
		err[0] = '\0';
}

int cw_jsoncfg_fail(struct cw_jsoncfg *c, const char *key, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->err && c->errlen) {
		if (key && *key)
			snprintf(c->err, c->errlen, "%s%s%s: %s", c->path, *c->path ? "." : "", key,
				 msg);
		else if (*c->path)
			snprintf(c->err, c->errlen, "%s: %s", c->path, msg);
		else
			snprintf(c->err, c->errlen, "%s", msg);
	}
	return CW_ERR_CONFIG;
}

size_t cw_jsoncfg_push(struct cw_jsoncfg *c, const char *fmt, ...)
{
	size_t mark = strlen(c->path);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->path + mark, sizeof(c->path) - mark, fmt, ap);
	va_end(ap);
	return mark;
}

size_t cw_jsoncfg_enter(struct cw_jsoncfg *c, const char *key)
{
	return cw_jsoncfg_push(c, "%s%s", *c->path ? "." : "", key);
}

void cw_jsoncfg_pop(struct cw_jsoncfg *c, size_t mark)
{
	c->path[mark] = '\0';
}

const char *cw_jsoncfg_describe(const cJSON *it, char *buf, size_t cap)
{
	if (cJSON_IsString(it))
		snprintf(buf, cap, "a string");
	else if (cJSON_IsNumber(it))
		snprintf(buf, cap, "%.17g", it->valuedouble);
	else if (cJSON_IsTrue(it))
		snprintf(buf, cap, "true");
	else if (cJSON_IsFalse(it))
		snprintf(buf, cap, "false");
	else if (cJSON_IsNull(it))
		snprintf(buf, cap, "null");
	else if (cJSON_IsArray(it))
		snprintf(buf, cap, "an array");
	else if (cJSON_IsObject(it))
		snprintf(buf, cap, "an object");
	else
		snprintf(buf, cap, "something else");
	return buf;
}

int cw_jsoncfg_check_keys(struct cw_jsoncfg *c, const cJSON *obj, const char *const *allowed)
{
	const cJSON *it, *prev;

	cJSON_ArrayForEach(it, obj) {
		bool known = false;
		for (const char *const *a = allowed; *a && !known; a++)
			known = strcmp(it->string, *a) == 0;
		if (!known) {
			char list[256] = "";
			size_t n = 0;
			for (const char *const *a = allowed; *a && n < sizeof(list); a++) {
				int w = snprintf(list + n, sizeof(list) - n, "%s%s", n ? ", " : "", *a);
				if (w < 0)
					break;
				n += (size_t)w;
			}
			return cw_jsoncfg_fail(c, it->string, "unknown key (known keys here: %s)", list);
		}
		for (prev = obj->child; prev != it; prev = prev->next) {
			if (strcmp(prev->string, it->string) == 0)
				return cw_jsoncfg_fail(c, it->string, "key given twice");
		}
	}
	return CW_OK;
}

int cw_jsoncfg_get_int(struct cw_jsoncfg *c, const cJSON *obj, const char *key, long min,
		       long max, bool required, int *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char got[64];
	double v;

	if (!it) {
		if (required)
			return cw_jsoncfg_fail(c, key, "missing (expected an integer %ld..%ld)", min,
					       max);
		return CW_OK;
	}
	if (!cJSON_IsNumber(it))
		return cw_jsoncfg_fail(c, key, "expected an integer %ld..%ld, got %s", min, max,
				       cw_jsoncfg_describe(it, got, sizeof(got)));
	v = it->valuedouble;
	/* Range first: converting a double outside long's range (1e300) is
	 * undefined behaviour (C11 6.3.1.4); in range, the cast is exact for
	 * integers and tells a fraction apart. !(a && b) also refuses NaN. */
	if (!(v >= (double)min && v <= (double)max) || v != (double)(long)v)
		return cw_jsoncfg_fail(c, key, "expected an integer %ld..%ld, got %s", min, max,
				       cw_jsoncfg_describe(it, got, sizeof(got)));
	*out = (int)(long)v;
	return CW_OK;
}

int cw_jsoncfg_get_bool(struct cw_jsoncfg *c, const cJSON *obj, const char *key, bool *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char got[64];

	if (!it)
		return CW_OK;
	if (!cJSON_IsBool(it))
		return cw_jsoncfg_fail(c, key, "expected true or false, got %s",
				       cw_jsoncfg_describe(it, got, sizeof(got)));
	*out = cJSON_IsTrue(it);
	return CW_OK;
}

/* Identifier: [A-Za-z0-9_-]{1,max}. */
static bool ident_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (; *s; s++) {
		char ch = *s;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

int cw_jsoncfg_get_str(struct cw_jsoncfg *c, const cJSON *obj, const char *key, unsigned flags,
		       char *out, size_t cap)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	bool cloud = flags & CW_JSONCFG_CLOUD_WORDING, empty_ok = flags & CW_JSONCFG_EMPTY_OK;
	char want[96], got[64];
	size_t n;

	if (flags & CW_JSONCFG_IDENT)
		snprintf(want, sizeof(want), "a string of 1-%zu characters [A-Za-z0-9_-]", cap - 1);
	else
		snprintf(want, sizeof(want), "a %sstring of at most %zu bytes",
			 cloud ? "" : "non-empty ", cap - 1);
	if (!it) {
		if (!(flags & CW_JSONCFG_REQUIRED))
			return CW_OK;
		return cw_jsoncfg_fail(c, key, "missing (expected %s)", want);
	}
	if (!cJSON_IsString(it) || !it->valuestring)
		return cw_jsoncfg_fail(c, key, "expected %s, got %s", want,
				       cw_jsoncfg_describe(it, got, sizeof(got)));
	n = strlen(it->valuestring);
	if (flags & CW_JSONCFG_IDENT) {
		if (!ident_ok(it->valuestring, cap - 1))
			return cw_jsoncfg_fail(c, key,
					       "expected a string of 1-%zu characters [A-Za-z0-9_-], "
					       "got %zu characters with other characters or the "
					       "wrong length",
					       cap - 1, n);
	} else {
		if ((n == 0 && !empty_ok) || n >= cap)
			return cw_jsoncfg_fail(c, key,
					       "expected a %sstring of at most %zu bytes, got %zu%s",
					       empty_ok ? "" : "non-empty ", cap - 1, n,
					       cloud ? " bytes" : "");
		for (const unsigned char *s = (const unsigned char *)it->valuestring; *s; s++) {
			if (*s < 0x20 || *s == 0x7f)
				return cw_jsoncfg_fail(c, key, "control characters are not allowed");
		}
	}
	memcpy(out, it->valuestring, n + 1);
	return CW_OK;
}

int cw_jsoncfg_get_container(struct cw_jsoncfg *c, const cJSON *obj, const char *key, bool array,
			     bool required, const cJSON **out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	const char *what = array ? "an array" : "an object";
	char got[64];

	*out = NULL;
	if (!it) {
		if (required)
			return cw_jsoncfg_fail(c, key, "missing (expected %s)", what);
		return CW_OK;
	}
	if (array ? !cJSON_IsArray(it) : !cJSON_IsObject(it))
		return cw_jsoncfg_fail(c, key, "expected %s, got %s", what,
				       cw_jsoncfg_describe(it, got, sizeof(got)));
	*out = it;
	return CW_OK;
}

/* Where byte offset off of s is, for "not valid JSON" messages: "line L
 * column C (byte B)" (1-based) if line_col, else "byte B". */
static const char *where(const char *s, size_t off, bool line_col, char *buf, size_t cap)
{
	int line = 1, col = 1;

	if (!line_col) {
		snprintf(buf, cap, "byte %zu", off);
		return buf;
	}
	for (size_t i = 0; i < off; i++) {
		if (s[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	snprintf(buf, cap, "line %d column %d (byte %zu)", line, col, off);
	return buf;
}

/* Blanks `//` and block comments outside strings to spaces in place; the
 * newlines inside stay, so every line, column and byte cJSON reports is
 * still the one in the file (cJSON_Minify would delete them and move every
 * position after the first comment). CW_ERR_CONFIG for a block comment that
 * is never closed. A '/' starting nothing, or a string left open, is left
 * for cJSON to refuse. */
static int blank_comments(struct cw_jsoncfg *c, char *s, size_t len, bool line_col)
{
	size_t i = 0, open;
	char pos[80];

	while (i < len) {
		if (s[i] == '"') {
			/* a string: to its closing quote, stepping over escapes */
			for (i++; i < len && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			i++;
			continue;
		}
		if (s[i] != '/' || i + 1 >= len || (s[i + 1] != '/' && s[i + 1] != '*')) {
			i++;
			continue;
		}
		if (s[i + 1] == '/') {
			for (; i < len && s[i] != '\n'; i++)
				s[i] = ' ';
			continue;
		}
		open = i;
		s[i] = s[i + 1] = ' ';
		for (i += 2; i < len && !(s[i] == '*' && i + 1 < len && s[i + 1] == '/'); i++)
			if (s[i] != '\n')
				s[i] = ' ';
		if (i >= len)
			return cw_jsoncfg_fail(c, NULL,
					       "config is not valid JSON: the comment opened at %s "
					       "is never closed (no */)",
					       where(s, open, line_col, pos, sizeof(pos)));
		s[i] = s[i + 1] = ' ';
		i += 2;
	}
	return CW_OK;
}

int cw_jsoncfg_parse(struct cw_jsoncfg *c, const char *json, size_t len, size_t max,
		     unsigned flags, cJSON **root)
{
	bool line_col = flags & CW_JSONCFG_PARSE_LINE_COL;
	const char *end = NULL;
	char *copy = NULL, pos[80];
	size_t off;
	int rc;

	*root = NULL;
	if (!json || len == 0)
		return cw_jsoncfg_fail(c, NULL, "config is empty (expected a JSON object)");
	if (len > max) {
		cw_jsoncfg_fail(c, NULL, "config is %zu bytes, more than the limit of %zu", len, max);
		return CW_ERR_TOOBIG;
	}
	if (flags & CW_JSONCFG_PARSE_COMMENTS) {
		/* the caller's text is const: blank a copy of the same length */
		copy = malloc(len);
		if (!copy)
			return CW_ERR_NOMEM;
		memcpy(copy, json, len);
		if ((rc = blank_comments(c, copy, len, line_col)))
			goto out;
		json = copy;
	}
	*root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
	if (!*root) {
		off = end && end >= json ? (size_t)(end - json) : 0;
		if (off > len)
			off = len;
		rc = cw_jsoncfg_fail(c, NULL, "config is not valid JSON: error near %s%s",
				     where(json, off, line_col, pos, sizeof(pos)),
				     line_col && off + 1 >= len
					     ? " (file ends too early: half-written?)"
					     : "");
		goto out;
	}
	if (end) {
		/* cJSON stops after the first value; trailing text is an error too
		 * (e.g. two configs pasted into one file). */
		while ((size_t)(end - json) < len && strchr(" \t\r\n", *end))
			end++;
		if ((size_t)(end - json) < len) {
			rc = cw_jsoncfg_fail(c, NULL,
					     "config is not valid JSON: unexpected text after the "
					     "top-level object at %s",
					     where(json, (size_t)(end - json), line_col, pos,
						   sizeof(pos)));
			goto out;
		}
	}
	if (!cJSON_IsObject(*root)) {
		rc = cw_jsoncfg_fail(c, NULL, "config must be a JSON object at the top level");
		goto out;
	}
	rc = CW_OK;
out:
	if (rc != CW_OK) {
		cJSON_Delete(*root);
		*root = NULL;
	}
	free(copy);
	return rc;
}

int cw_jsoncfg_read_file_stat(const char *path, size_t max, char **out, size_t *len,
			      struct stat *stp, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int fd, rc;

	*out = NULL;
	*len = 0;
	if (!err)
		errlen = 0;
	/* O_NONBLOCK: a FIFO (or a device) at path must not hang the open until
	 * a writer comes; it is refused below. No effect on a regular file.
	 * O_NOCTTY: a terminal never becomes ours. */
	fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errlen)
			snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return CW_ERR_IO;
	}
	rc = fstat(fd, &st);
	if (rc != 0 || !S_ISREG(st.st_mode)) {
		if (rc == 0)
			errno = EINVAL; /* not a stale EACCES a caller would report */
		if (errlen)
			snprintf(err, errlen, "%s: not a regular file", path);
		rc = CW_ERR_IO;
		goto out;
	}
	if ((unsigned long long)st.st_size > max) {
		if (errlen)
			snprintf(err, errlen, "%s: %lld bytes, more than the limit of %zu", path,
				 (long long)st.st_size, max);
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	/* One byte more than the limit, in case the file grows under us, and
	 * one for the terminating NUL. */
	buf = malloc(max + 2);
	if (!buf) {
		rc = CW_ERR_NOMEM;
		goto out;
	}
	while (n <= max) {
		ssize_t r = read(fd, buf + n, max + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			if (errlen)
				snprintf(err, errlen, "%s: read failed: %s", path, strerror(errno));
			rc = CW_ERR_IO;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > max) {
		if (errlen)
			snprintf(err, errlen, "%s: more than the limit of %zu bytes", path, max);
		rc = CW_ERR_TOOBIG;
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	if (stp)
		*stp = st;
	rc = CW_OK;
out:
	close(fd);
	free(buf);
	return rc;
}

int cw_jsoncfg_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
			 size_t errlen)
{
	return cw_jsoncfg_read_file_stat(path, max, out, len, NULL, err, errlen);
}

void cw_jsoncfg_prefix(char *err, size_t errlen, const char *path)
{
	char tmp[512];

	if (!err || !errlen)
		return;
	snprintf(tmp, sizeof(tmp), "%s", err);
	snprintf(err, errlen, "%s: %s", path, tmp);
}
