/* cw_error.h - the one error enum of the project.
 *
 * Every function that can fail returns 0 (CW_OK) or one of these negative
 * codes. cw_strerror() gives a short English text for logs and API errors. */
#ifndef CW_ERROR_H
#define CW_ERROR_H

enum cw_err {
	CW_OK = 0,
	CW_ERR_NOMEM = -1,     /* allocation failed */
	CW_ERR_INVAL = -2,     /* bad argument or malformed input */
	CW_ERR_IO = -3,        /* system call or device failure */
	CW_ERR_TIMEOUT = -4,   /* peer did not answer in time */
	CW_ERR_NOTFOUND = -5,  /* no such object */
	CW_ERR_CONFLICT = -6,  /* request conflicts with current state */
	CW_ERR_DB = -7,        /* SQLite / database failure */
	CW_ERR_PROTO = -8,     /* bad frame, bad CRC/checksum, garbage */
	CW_ERR_TOOBIG = -9,    /* input over its bounded size */
	CW_ERR_CONFIG = -10,   /* invalid configuration */
	CW_ERR_OFFLINE = -11,  /* board / device does not answer */
	CW_ERR_NOCART = -12,   /* no cart or slot free for this request */
	CW_ERR_FAULT = -13,    /* hardware did not do what it was told */
	CW_ERR_STATE = -14,    /* transition not allowed from this state */
	CW_ERR_AUTH = -15,     /* missing or bad credentials */
	CW_ERR_AGAIN = -16,    /* not complete yet, call again (e.g. partial frame) */
	CW_ERR_INTERNAL = -17, /* a bug: should not happen */
	CW_ERR_LIMIT = -18,    /* a rate limit was reached: try again later */
};

#define CW_ERR_MIN CW_ERR_LIMIT

/* Static string, never NULL. */
const char *cw_strerror(int err);
/* Stable lower-case identifier ("not_found"), used as API error codes. */
const char *cw_errname(int err);

#endif
