/* cw_file.c - atomic replacement of a small file (see cw_file.h). */
#include "cw_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_error.h"

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return CW_ERR_IO;
		buf += w;
		len -= (size_t)w;
	}
	return CW_OK;
}

int cw_file_replace(const char *path, const void *data, size_t len)
{
	char tmp[1100], dir[1024], *slash;
	int fd = -1, dfd = -1, rc = CW_ERR_IO, saved;
	bool tmp_made = false;

	if (!path || !*path || strlen(path) >= sizeof(dir))
		return CW_ERR_INVAL;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path);
	fd = mkstemp(tmp); /* 0600, in the same directory: rename stays atomic */
	if (fd < 0)
		return CW_ERR_IO;
	tmp_made = true;
	if (fchmod(fd, 0600) != 0 || write_all(fd, data, len) != CW_OK || fsync(fd) != 0)
		goto out;
	if (close(fd) != 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto out;
	tmp_made = false;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0)
		goto out;
	rc = CW_OK;
out:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (tmp_made)
		unlink(tmp);
	errno = saved;
	return rc;
}
