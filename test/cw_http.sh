# shellcheck shell=bash
# cw_http: a test script's HTTP requests through one Python process
# (test/cw_http.py) instead of one curl start each. A curl start costs
# ~40 ms of CPU (mostly the dynamic linking of libcurl's libraries); a cloud
# test makes 100-300 requests, and on the 2-core CI machine that CPU is taken
# from the suite (perf of cloud_users: curl 28 % of its CPU).
# Sourced by test/cloud/lib.sh and test/integration/lib.sh after T (the
# test's directory) and CW_PYTHON (cw_python.sh) are set; their cleanup
# calls cw_http_stop before it waits for its children.
#
# cw_http METHOD URL OUTFILE AUTH [BODY]: sets CODE (000: no answer) and
# writes the response body to OUTFILE; AUTH is a bearer token or empty; a
# BODY, even an empty one, is sent as application/json.
# cw_http_ok URL [AUTH [OUTFILE]]: succeeds on an answer below 400 (as
# curl -sf); the body to OUTFILE (default /dev/null).
#
# The helper serves the script's shell and its command substitutions
# ($(...) runs while the shell waits). curl makes the request, with the
# same meaning, in other subshells (a pipeline's commands, ( ), cmd &: bash
# closes the coprocess's pipe there, so no two requests mix on it), where
# the helper is not running (after cw_http_stop),
# for bodies over 64 KiB (curl's Expect: 100-continue lets the server refuse
# them before they are sent) and for what http.client will not send as
# given (a tab or line break in a field, a space or non-ASCII byte in the
# URL: bad-input tests), and for a path with a "/." (curl removes dot
# segments before it sends the path; http.client does not).

CW_HTTP_PY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cw_http.py"
CW_HTTP_BODY=${T:?cw_http.sh needs T}/.cw_http.body
coproc CW_HTTP { exec "$CW_PYTHON" -u "$CW_HTTP_PY"; }

# the helper runs and its pipe is open here: bash closes a coprocess's
# descriptors in subshells (a pipeline's commands, ( ), cmd &) but for
# command substitutions, so that two of them never use the pipe at once
cw_http_usable() { [ -n "${CW_HTTP[1]:-}" ] && [ -e "/dev/fd/${CW_HTTP[1]}" ]; }

cw_http() {
	local bodyfile=
	if ! cw_http_usable || [[ $1$2$3$4 == *[$'\t\n']* ]] || [[ $2 == */.* ]] ||
		{ [ $# -ge 5 ] && [ ${#5} -gt 65536 ]; }; then
		cw_http_curl "$@"
		return
	fi
	if [ $# -ge 5 ]; then
		printf '%s' "$5" >"$CW_HTTP_BODY"
		bodyfile=$CW_HTTP_BODY
	fi
	local out=$3
	[[ $out == /* ]] || out=$PWD/$out # the helper's directory is not the caller's
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$out" "$4" "$bodyfile" >&"${CW_HTTP[1]}"
	IFS= read -r CODE <&"${CW_HTTP[0]}" || CODE=000
	[ "$CODE" != curl ] || cw_http_curl "$@"
}

cw_http_curl() {
	local args=(-s -o "$3" -w '%{http_code}' -X "$1")
	[ -z "$4" ] || args+=(-H "Authorization: Bearer $4")
	[ $# -lt 5 ] || args+=(-H 'Content-Type: application/json' --data-binary "$5")
	CODE=$(curl "${args[@]}" "$2") || CODE=000
}

cw_http_ok() {
	cw_http GET "$1" "${3:-/dev/null}" "${2:-}"
	[ "$CODE" != 000 ] && [ "$CODE" -lt 400 ]
}

# cw_jq FILTER FILE: as jq -r FILTER FILE (one JSON value in FILE); a path
# of names and indexes (.a.b, .items[0].id), maybe with "| length", is
# answered by the helper where it can tell jq's output (a string without
# line breaks, an integer, a boolean, null), anything else by jq.
CW_JQ_PATH='^(\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\])+$'
cw_jq() {
	local path=$1 file=$2 len=0 ans
	[[ $file == /* ]] || file=$PWD/$file
	if [[ $path == *' | length' ]]; then
		path=${path% | length} len=1
	fi
	if [[ $path =~ $CW_JQ_PATH ]] && [[ $file != *[$'\t\n']* ]] && cw_http_usable; then
		printf 'J\t%s\t%s\t%s\n' "$file" "$path" "$len" >&"${CW_HTTP[1]}"
		IFS= read -r ans <&"${CW_HTTP[0]}" || ans=
		if [[ $ans == =* ]]; then
			printf '%s\n' "${ans#=}"
			return 0
		fi
	fi
	jq -r "$1" "$2"
}

# cw_http_stop: ends the helper and waits for it
cw_http_stop() {
	[ -n "${CW_HTTP_PID:-}" ] || return 0
	local pid=$CW_HTTP_PID w=${CW_HTTP[1]:-} r=${CW_HTTP[0]:-}
	[ -z "$w" ] || exec {w}>&-
	[ -z "$r" ] || exec {r}<&-
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	CW_HTTP_PID=
}
