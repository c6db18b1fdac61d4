#include "cw_error.h"

struct err_text {
	const char *name;
	const char *text;
};

/* Indexed by -err. */
static const struct err_text texts[] = {
	[0] = {"ok", "success"},
	[-CW_ERR_NOMEM] = {"no_memory", "out of memory"},
	[-CW_ERR_INVAL] = {"invalid", "invalid argument or input"},
	[-CW_ERR_IO] = {"io", "input/output error"},
	[-CW_ERR_TIMEOUT] = {"timeout", "timed out"},
	[-CW_ERR_NOTFOUND] = {"not_found", "not found"},
	[-CW_ERR_CONFLICT] = {"conflict", "conflicts with current state"},
	[-CW_ERR_DB] = {"database", "database error"},
	[-CW_ERR_PROTO] = {"protocol", "protocol error"},
	[-CW_ERR_TOOBIG] = {"too_big", "input too large"},
	[-CW_ERR_CONFIG] = {"config", "invalid configuration"},
	[-CW_ERR_OFFLINE] = {"offline", "device offline"},
	[-CW_ERR_NOCART] = {"no_cart", "no cart available"},
	[-CW_ERR_FAULT] = {"fault", "hardware fault"},
	[-CW_ERR_STATE] = {"bad_state", "not allowed in current state"},
	[-CW_ERR_AUTH] = {"unauthorized", "unauthorized"},
	[-CW_ERR_AGAIN] = {"again", "incomplete, try again"},
	[-CW_ERR_INTERNAL] = {"internal", "internal error"},
	[-CW_ERR_LIMIT] = {"rate_limited", "too many requests, try again later"},
};

const char *cw_strerror(int err)
{
	if (err > 0 || err < CW_ERR_MIN)
		return "unknown error";
	return texts[-err].text;
}

const char *cw_errname(int err)
{
	if (err > 0 || err < CW_ERR_MIN)
		return "unknown";
	return texts[-err].name;
}
