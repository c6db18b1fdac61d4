/* cw_file.c - atomic replacement of a small file, secrets read from a file
 * (see cw_file.h). */
#include "cw_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_error.h"
#include "cw_jsoncfg.h"
#include "cw_log.h"

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

/* The directory holding path into dir ("." for a bare name). CW_OK, or
 * CW_ERR_IO with errno ENAMETOOLONG. */
static int dir_of(const char *path, char *dir, size_t cap)
{
	char *slash;

	if (strlen(path) >= cap) {
		errno = ENAMETOOLONG;
		return CW_ERR_IO;
	}
	snprintf(dir, cap, "%s", path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, cap, ".");
	return CW_OK;
}

/* fsync of the directory holding path, so that a rename into it lasts. */
static int fsync_dir_of(const char *path)
{
	char dir[1024];
	int dfd, rc = CW_ERR_IO, saved;

	if (dir_of(path, dir, sizeof(dir)) != CW_OK)
		return CW_ERR_IO;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0 && fsync(dfd) == 0)
		rc = CW_OK;
	saved = errno;
	if (dfd >= 0)
		close(dfd);
	errno = saved;
	return rc;
}

int cw_file_commit(const char *tmp, const char *path)
{
	int fd = open(tmp, O_RDONLY | O_CLOEXEC), saved;

	if (fd < 0)
		return CW_ERR_IO;
	if (fsync(fd) != 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return CW_ERR_IO;
	}
	close(fd);
	if (rename(tmp, path) != 0)
		return CW_ERR_IO;
	return fsync_dir_of(path);
}

int cw_file_remove_stale_tmp(const char *path)
{
	char dir[1024], prefix[300];
	const char *base = strrchr(path, '/');
	struct dirent *e;
	DIR *d;
	int n = 0;

	base = base ? base + 1 : path;
	if (dir_of(path, dir, sizeof(dir)) != CW_OK ||
	    snprintf(prefix, sizeof(prefix), "%s.tmp-", base) >= (int)sizeof(prefix)) {
		errno = ENAMETOOLONG;
		return CW_ERR_IO;
	}
	d = opendir(dir);
	if (!d)
		return CW_ERR_IO;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) != 0) {
			if (errno != ENOENT)
				cw_warn("file.stale_tmp",
					"dir=%s name=%s error=\"%s\" msg=\"cannot remove a temporary "
					"file left by an interrupted write\"",
					dir, e->d_name, strerror(errno));
			continue;
		}
		cw_info("file.stale_tmp_removed", "dir=%s name=%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

int cw_file_replace(const char *path, const void *data, size_t len)
{
	char tmp[1100];
	int fd = -1, rc = CW_ERR_IO, saved;
	bool tmp_made = false;

	if (!path || !*path || strlen(path) >= 1024)
		return CW_ERR_INVAL;
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
	rc = fsync_dir_of(path);
out:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (tmp_made)
		unlink(tmp);
	errno = saved;
	return rc;
}

/* A token travels in an HTTP header: printable ASCII without spaces. */
static bool token_chars_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

int cw_file_read_secret(const char *path, char *out, size_t cap)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (!out || cap < 2)
		return CW_ERR_INVAL;
	out[0] = '\0';
	/* the limit plus CRLF, so that a too long secret is told apart */
	rc = cw_jsoncfg_read_file_stat(path, cap + 1, &buf, &len, &st, NULL, 0);
	if (rc == CW_ERR_TOOBIG)
		return CW_ERR_CONFIG;
	if (rc != CW_OK)
		return rc == CW_ERR_NOMEM ? rc : CW_ERR_IO;
	if (st.st_mode & 077)
		cw_warn("file.secret_permissions",
			"path=%s mode=%03o msg=\"a secret file is readable by group or others; "
			"chmod 600 it\"",
			path, (unsigned)(st.st_mode & 0777));
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	rc = CW_ERR_CONFIG;
	if (len < 1 || len >= cap || !token_chars_ok(buf, len))
		goto out;
	memcpy(out, buf, len + 1);
	rc = CW_OK;
out:
	sodium_memzero(buf, len);
	free(buf);
	return rc;
}

int cw_file_read_token(const char *path, size_t min, char *out, size_t cap, char *err,
		       size_t errlen)
{
	struct stat st;
	char *buf = NULL, *nl;
	size_t len = 0, n;
	int rc, saved;

	if (!err)
		errlen = 0;
	if (!out || cap < 2 || min < 1 || min >= cap)
		return CW_ERR_INVAL;
	out[0] = '\0';
	rc = cw_jsoncfg_read_file_stat(path, CW_FILE_TOKEN_MAX, &buf, &len, &st, err, errlen);
	if (rc != CW_OK) {
		saved = errno;
		if (rc == CW_ERR_NOMEM && errlen)
			snprintf(err, errlen, "%s: out of memory", path);
		errno = saved;
		return rc;
	}
	/* st is the inode just read, not whatever path names now */
	if (st.st_mode & (S_IWGRP | S_IRWXO))
		cw_warn("file.token_permissions",
			"path=%s mode=%03o msg=\"%s (the package installs it root:cartwise "
			"0640)\"",
			path, (unsigned)(st.st_mode & 0777),
			st.st_mode & (S_IWGRP | S_IWOTH)
				? "group or others can write this token, so they could set the "
				  "admin token; chmod g-w,o-rwx it"
				: "others can read this token; chmod o-rwx it");
	nl = memchr(buf, '\n', len);
	n = nl ? (size_t)(nl - buf) : len;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	rc = CW_ERR_CONFIG;
	if (n < min || n >= cap) {
		if (errlen)
			snprintf(err, errlen,
				 "%s: expected a first line of %zu-%zu characters (the token), got "
				 "%zu",
				 path, min, cap - 1, n);
		goto out;
	}
	if (!token_chars_ok(buf, n)) {
		if (errlen)
			snprintf(err, errlen,
				 "%s: the first line (the token) may hold only printable ASCII "
				 "characters without spaces",
				 path);
		goto out;
	}
	memcpy(out, buf, n);
	out[n] = '\0';
	rc = CW_OK;
out:
	sodium_memzero(buf, len);
	free(buf);
	return rc;
}
