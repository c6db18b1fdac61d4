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

#endif
