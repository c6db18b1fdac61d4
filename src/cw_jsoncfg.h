/* cw_jsoncfg.h - strict JSON configuration parsing, shared by the edge
 * daemon's and the cloud's config loaders.
 *
 * Strict by design (BRIEF.md §2): callers refuse unknown and duplicate keys,
 * check every value's type and range, and report the first problem with the
 * full key path: "<path>.<key>: <message>", returning CW_ERR_CONFIG. Messages
 * never echo a string's contents (a string can be a secret). */
#ifndef CW_JSONCFG_H
#define CW_JSONCFG_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

/* One parse in progress. Small and public so callers keep it on the stack;
 * set it up with cw_jsoncfg_init. */
struct cw_jsoncfg {
	char *err;	/* caller's message buffer, may be NULL */
	size_t errlen;
	char path[256]; /* key path of the object being parsed, "" = top level */
};

/* Flags for cw_jsoncfg_get_str. */
enum {
	CW_JSONCFG_REQUIRED = 1 << 0, /* missing is an error */
	CW_JSONCFG_IDENT = 1 << 1,    /* [A-Za-z0-9_-]{1,cap-1} instead of text */
	CW_JSONCFG_EMPTY_OK = 1 << 2, /* text may be "" */
	/* Cloud wording: "a string of at most N bytes" when missing or of the
	 * wrong type, and "got N bytes" for a bad length. Kept so the cloud's
	 * messages stay as they were; the edge says "a non-empty string". */
	CW_JSONCFG_CLOUD_WORDING = 1 << 3,
};

/* Starts a parse that writes its message to err (errlen bytes, cleared). */
void cw_jsoncfg_init(struct cw_jsoncfg *c, char *err, size_t errlen);

/* Writes "<path>.<key>: <message>" (key may be NULL) and returns CW_ERR_CONFIG. */
int cw_jsoncfg_fail(struct cw_jsoncfg *c, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Appends printf-formatted text to the path ("api", ".boards[1]"); returns
 * the old length for cw_jsoncfg_pop. */
size_t cw_jsoncfg_push(struct cw_jsoncfg *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends key, with a "." unless at the top level. */
size_t cw_jsoncfg_enter(struct cw_jsoncfg *c, const char *key);
void cw_jsoncfg_pop(struct cw_jsoncfg *c, size_t mark);

/* Describes a value found instead of the one expected, into buf: a number
 * or literal as written, otherwise its kind ("a string", never its text). */
const char *cw_jsoncfg_describe(const cJSON *it, char *buf, size_t cap);

/* Refuses keys of obj not in allowed (NULL-terminated) and keys given twice. */
int cw_jsoncfg_check_keys(struct cw_jsoncfg *c, const cJSON *obj, const char *const *allowed);

/* Getters: a missing optional key leaves *out unchanged and returns CW_OK. */
int cw_jsoncfg_get_int(struct cw_jsoncfg *c, const cJSON *obj, const char *key, long min,
		       long max, bool required, int *out);
int cw_jsoncfg_get_bool(struct cw_jsoncfg *c, const cJSON *obj, const char *key, bool *out);
/* Copies a string of at most cap-1 bytes into out; text has no control
 * characters. flags: CW_JSONCFG_*. */
int cw_jsoncfg_get_str(struct cw_jsoncfg *c, const cJSON *obj, const char *key, unsigned flags,
		       char *out, size_t cap);
/* *out = the member if it is an array (array) or object (!array), else NULL. */
int cw_jsoncfg_get_container(struct cw_jsoncfg *c, const cJSON *obj, const char *key, bool array,
			     bool required, const cJSON **out);

/* Flags for cw_jsoncfg_parse. */
enum {
	/* positions in "not valid JSON" messages are "line L column C (byte B)"
	 * instead of "byte B" */
	CW_JSONCFG_PARSE_LINE_COL = 1 << 0,
	/* a config file an operator edits: `// to end of line` and block
	 * comments outside strings are allowed (blanked to spaces, newlines
	 * kept, so positions stay right). Never for what programs write or send
	 * (saved state, HTTP bodies): those stay strict JSON. */
	CW_JSONCFG_PARSE_COMMENTS = 1 << 1,
};

/* Parses len bytes (at most max) that must hold exactly one JSON object.
 * flags: CW_JSONCFG_PARSE_*. On CW_OK *root is the object (caller frees with
 * cJSON_Delete); otherwise NULL, with CW_ERR_CONFIG (also for a comment left
 * open), CW_ERR_TOOBIG past max, or CW_ERR_NOMEM. */
int cw_jsoncfg_parse(struct cw_jsoncfg *c, const char *json, size_t len, size_t max,
		     unsigned flags, cJSON **root);

/* Reads a regular file of at most max bytes into *out (NUL-terminated,
 * caller frees). Anything else (a FIFO, a device, a directory) is refused
 * at once, without waiting for a writer. Returns CW_OK, CW_ERR_IO,
 * CW_ERR_TOOBIG or CW_ERR_NOMEM; on error writes "<path>: <reason>" to err
 * if err is not NULL. */
int cw_jsoncfg_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
			 size_t errlen);
/* The same, and on CW_OK *st (if not NULL) = fstat of the file read, for
 * checks on the same inode (its permissions) instead of a stat(path) that
 * may see another file. */
int cw_jsoncfg_read_file_stat(const char *path, size_t max, char **out, size_t *len,
			      struct stat *st, char *err, size_t errlen);

/* Rewrites err as "<path>: <err>", so the operator knows which file. */
void cw_jsoncfg_prefix(char *err, size_t errlen, const char *path);

#endif
