/* cw_static.c - a directory of web files (see cw_static.h).
 *
 * The path is checked by name before anything touches the file system: a
 * percent-encoded "..", "%2f" or NUL is already decoded by libmicrohttpd, so
 * the same check refuses it. The file is opened beneath the root one
 * component at a time with O_NOFOLLOW (no symbolic link in any component: a
 * linked directory inside the root cannot lead out of it), O_NONBLOCK (a
 * FIFO planted in the directory cannot hang the
 * connection), and checked with fstat on the descriptor that is served: a
 * regular file, not too large.
 * libmicrohttpd sends it from the descriptor and closes it. */
#include "cw_static.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cw_error.h"
#include "cw_log.h"

#define CW_STATIC_MAX_NAME 256

static const struct {
	const char *ext;
	const char *type;
} types[] = {
	{".html", "text/html; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".json", "application/json"},
	{".txt", "text/plain; charset=utf-8"},
	{".svg", "image/svg+xml"},
	{".png", "image/png"},
	{".ico", "image/x-icon"},
	{".woff2", "font/woff2"},
};

const char *cw_static_type(const char *name)
{
	const char *dot = name ? strrchr(name, '.') : NULL;

	if (!dot || strchr(dot, '/'))
		return NULL;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	}
	return NULL;
}

static void add_security_headers(struct MHD_Response *resp, const struct cw_static_site *site)
{
	MHD_add_response_header(resp, "Content-Security-Policy", site->csp);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
}

static struct MHD_Response *error_response(const struct cw_static_site *site, unsigned *status,
					   unsigned code, int err, const char *msg)
{
	cJSON *root = cJSON_CreateObject(), *e;
	struct MHD_Response *resp = NULL;
	char *text = NULL;

	if (root && (e = cJSON_AddObjectToObject(root, "error")) &&
	    cJSON_AddStringToObject(e, "code", cw_errname(err)) &&
	    cJSON_AddStringToObject(e, "message", msg))
		text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!text)
		return NULL;
	resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		cJSON_free(text);
		return NULL;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	add_security_headers(resp, site);
	*status = code;
	return resp;
}

/* rel opened for reading beneath root with no symbolic link in any
 * component: each directory is opened with O_NOFOLLOW | O_DIRECTORY from the
 * one before it, then the file with O_NOFOLLOW (a link anywhere is ELOOP or
 * ENOTDIR). rel_path() has refused "." and ".." segments, so the walk cannot
 * climb out of the root. Not openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS):
 * qemu-user (the arm64 unit tests) and kernels before 5.6 lack it, and this
 * walk gives the same answer everywhere. -1 with errno set. */
static int open_beneath(const char *root, const char *rel)
{
	char part[CW_STATIC_MAX_NAME];
	const char *p = rel, *slash;
	int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC), fd, err;

	while (dfd >= 0 && (slash = strchr(p, '/')) != NULL) {
		size_t n = (size_t)(slash - p);
		if (n == 0 || n >= sizeof(part)) {
			close(dfd);
			errno = ENOENT;
			return -1;
		}
		memcpy(part, p, n);
		part[n] = '\0';
		fd = openat(dfd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		err = errno;
		close(dfd);
		errno = err;
		dfd = fd;
		p = slash + 1;
	}
	if (dfd < 0)
		return -1;
	fd = openat(dfd, p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	err = errno;
	close(dfd);
	errno = err;
	return fd;
}

static bool name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '_' || ch == '.';
}

/* The path relative to the root for url ("/" -> "index.html", "a/" ->
 * "a/index.html"); false when url is not a plain name (see cw_static.h). */
static bool rel_path(const char *url, char *rel, size_t cap)
{
	size_t n;
	bool seg_start = true;

	if (!url || url[0] != '/')
		return false;
	n = (size_t)snprintf(rel, cap, "%s%s", url + 1,
			     (url[1] == '\0' || url[strlen(url) - 1] == '/') ? "index.html" : "");
	if (n >= cap)
		return false;
	for (const char *p = rel; *p; p++) {
		if (*p == '/') {
			if (seg_start)
				return false; /* "//" */
			seg_start = true;
			continue;
		}
		/* no ".", "..", ".hidden" segment; only plain characters */
		if ((seg_start && *p == '.') || !name_char(*p))
			return false;
		seg_start = false;
	}
	return true;
}

struct MHD_Response *cw_static_site_response(const struct cw_static_site *site, const char *url,
					     unsigned *status)
{
	const char *root = site->root;
	char rel[CW_STATIC_MAX_NAME];
	struct MHD_Response *resp;
	const char *type;
	struct stat st;
	int fd;

	if (!root || !*root || !rel_path(url, rel, sizeof(rel)) || !(type = cw_static_type(rel)))
		return error_response(site, status, MHD_HTTP_NOT_FOUND, CW_ERR_NOTFOUND, "no such page");
	fd = open_beneath(root, rel);
	if (fd < 0) {
		/* ELOOP: a symbolic link on the way */
		if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
			cw_warn("static.open_failed", "file=%s errno=%d", rel, errno);
		return error_response(site, status, MHD_HTTP_NOT_FOUND, CW_ERR_NOTFOUND, "no such page");
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return error_response(site, status, MHD_HTTP_NOT_FOUND, CW_ERR_NOTFOUND, "no such page");
	}
	if (st.st_size > CW_STATIC_MAX_FILE) {
		close(fd);
		cw_warn("static.too_big", "file=%s size=%lld max=%d", rel, (long long)st.st_size,
			CW_STATIC_MAX_FILE);
		return error_response(site, status, MHD_HTTP_INTERNAL_SERVER_ERROR, CW_ERR_TOOBIG,
				      "file too large to serve");
	}
	resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
	if (!resp) {
		close(fd);
		return NULL;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
				strcmp(type, types[0].type) == 0 ? site->html_cache : "no-cache");
	add_security_headers(resp, site);
	*status = MHD_HTTP_OK;
	return resp;
}

struct MHD_Response *cw_static_response(const char *root, const char *url, unsigned *status)
{
	const struct cw_static_site kiosk = {
		.root = root,
		.csp = "default-src 'self'; img-src 'self' data:",
		.html_cache = "no-store",
	};

	return cw_static_site_response(&kiosk, url, status);
}
