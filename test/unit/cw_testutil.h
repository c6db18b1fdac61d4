/* cw_testutil.h - helpers shared by the edge unit tests. */
#ifndef CW_TESTUTIL_H
#define CW_TESTUTIL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Makes a fresh temporary directory; path written into out (cap bytes). */
int cw_test_tmpdir(char *out, size_t cap);
/* Parses test JSON written with ' for readability (no ' inside strings):
 * the object (caller frees with cJSON_Delete), NULL if it does not parse. */
cJSON *cw_test_json(const char *single_quoted);
/* Removes a directory tree made by cw_test_tmpdir. */
void cw_test_rmrf(const char *path);
/* Sends stderr (the log) to a new file at path, mode 0600, until
 * cw_test_stderr_back; returns the saved stderr to give it (-1: failed). */
int cw_test_stderr_to(const char *path);
/* Puts stderr back; with buf (cap bytes), reads the file into it
 * (NUL-terminated) and returns the bytes read, -1 if it cannot; 0 without. */
long cw_test_stderr_back(int saved, const char *path, char *buf, size_t cap);
/* Path of a built program (CW_BUILD_DIR/<rel>), e.g. "src/simlock/cartwise-simlock". */
int cw_test_build_path(const char *rel, char *out, size_t cap);

/* The first column of the first row of sql, read through a read-only
 * connection of its own to the SQLite file path (busy timeout 5 s); -1 when
 * there is no row; -2 when the file or the statement fails. */
long long cw_test_db_int(const char *path, const char *sql);

/* ---- cartwise-simlock on a pty (test_drivers, engine tests) ---- */
struct cw_test_sim;
/* Starts CW_BUILD_DIR/src/simlock/cartwise-simlock --protocol protocol with
 * --link and --control in a fresh temporary directory, plus the extra
 * arguments args (NULL-terminated, may be NULL), and waits (10 s) for its
 * "ready" line. Returns CW_ERR_NOTFOUND when the program is not built (a
 * test must then fail, not skip: CI always builds it), CW_ERR_TIMEOUT when
 * it did not become ready. The simulator's output goes to stderr. */
int cw_test_sim_start(const char *protocol, const char *const *args, struct cw_test_sim **out);
/* Path of the serial link (the pty's slave) the bus opens. */
const char *cw_test_sim_link(const struct cw_test_sim *s);
/* Sends one control command (printf format) and reads its one-line answer
 * into reply (may be NULL) without the newline. Returns CW_OK for "ok ...",
 * CW_ERR_STATE for "err ...", CW_ERR_IO/CW_ERR_TIMEOUT when unreachable. */
int cw_test_sim_cmd(struct cw_test_sim *s, char *reply, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Sends quit, waits for the process (then kills it), removes its files. NULL ok. */
void cw_test_sim_stop(struct cw_test_sim *s);

#endif
