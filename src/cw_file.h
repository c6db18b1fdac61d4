/* cw_file.h - files outside SQLite, written the one safe way (BRIEF.md §6):
 * a temporary file in the same directory (mode 0600), write, fsync, rename
 * over the old one, fsync of the directory. A reader sees the old content or
 * the new one, never a mix, also after a power cut. */
#ifndef CW_FILE_H
#define CW_FILE_H

#include <stddef.h>

/* Replaces path with len bytes of data (mode 0600). CW_OK, CW_ERR_INVAL
 * (path too long), or CW_ERR_IO with errno set; no temporary file is left
 * behind on failure. */
int cw_file_replace(const char *path, const void *data, size_t len);

/* The end of a replacement whose temporary file (in path's directory) was
 * written by someone else (SQLite's backup): fsync of tmp, rename over path,
 * fsync of the directory. CW_OK, or CW_ERR_IO with errno set (tmp is then
 * left for the caller to remove). */
int cw_file_commit(const char *tmp, const char *path);

/* Removes what an interrupted replacement of path left in its directory:
 * every "<basename(path)>.tmp-*" (the mkstemp file and, for a copy SQLite
 * wrote, its "-journal"/"-wal" beside it). Only for a path this process
 * alone writes (another writer's temporary file would be removed under it).
 * Returns the number removed (each logged), or CW_ERR_IO with errno set
 * when the directory cannot be read; a file that cannot be removed is
 * warned about and skipped. */
int cw_file_remove_stale_tmp(const char *path);

/* Reads a secret (a token, a password) from a file of one line into out:
 * 1..cap-1 bytes of printable ASCII without spaces; one trailing newline
 * (LF or CRLF) is dropped. The bytes read are zeroed before return. CW_OK,
 * CW_ERR_IO (cannot read it: errno set), CW_ERR_CONFIG (empty, too long,
 * or another character). Warns when group or others can read the file.
 * The content is never logged. */
int cw_file_read_secret(const char *path, char *out, size_t cap);

/* Largest token file cw_file_read_token reads. */
#define CW_FILE_TOKEN_MAX 4096
/* The edge's admin token is 16-127 characters (api.admin_token or the first
 * line of api.admin_token_file); here so that cartwisectl, which links only
 * this library, checks it as the daemon does. */
#define CW_ADMIN_TOKEN_MIN 16

/* Reads a token (the edge's admin token) from the first line of a file of
 * at most CW_FILE_TOKEN_MAX bytes into out: min..cap-1 bytes of printable
 * ASCII without spaces; the line's LF or CRLF is dropped and what follows it
 * ignored. A FIFO or device at path is refused at once (never waited on).
 * Warns when others can read the file or group or others can write it (they
 * could set the token); the group may read: the package installs it
 * root:cartwise 0640 for the daemon and cartwisectl. On error
 * err gets "<path>: <reason>", never the token's bytes. CW_OK, CW_ERR_IO
 * (cannot read it: errno set, e.g. EACCES), CW_ERR_TOOBIG, CW_ERR_CONFIG
 * (a bad first line), CW_ERR_NOMEM. */
int cw_file_read_token(const char *path, size_t min, char *out, size_t cap, char *err,
		       size_t errlen);

#endif
