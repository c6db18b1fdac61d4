/* cw_testutil.h - helpers shared by the edge unit tests. */
#ifndef CW_TESTUTIL_H
#define CW_TESTUTIL_H

#include <stddef.h>

/* Makes a fresh temporary directory; path written into out (cap bytes). */
int cw_test_tmpdir(char *out, size_t cap);
/* Removes a directory tree made by cw_test_tmpdir. */
void cw_test_rmrf(const char *path);
/* Path of a built program (CW_BUILD_DIR/<rel>), e.g. "src/simlock/cartwise-simlock". */
int cw_test_build_path(const char *rel, char *out, size_t cap);

#endif
