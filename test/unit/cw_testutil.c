#include "cw_testutil.h"
#include "cw_error.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int cw_test_tmpdir(char *out, size_t cap)
{
	const char *base = getenv("TMPDIR");
	int n = snprintf(out, cap, "%s/cwtest.XXXXXX", base && *base ? base : "/tmp");
	if (n < 0 || (size_t)n >= cap)
		return CW_ERR_TOOBIG;
	return mkdtemp(out) ? CW_OK : CW_ERR_IO;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(path);
}

void cw_test_rmrf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int cw_test_build_path(const char *rel, char *out, size_t cap)
{
	const char *b = getenv("CW_BUILD_DIR");
	int n = snprintf(out, cap, "%s/%s", b && *b ? b : ".", rel);
	if (n < 0 || (size_t)n >= cap)
		return CW_ERR_TOOBIG;
	return CW_OK;
}
