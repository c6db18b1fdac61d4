# shellcheck shell=bash
# shellcheck disable=SC2034,SC2120  # globals and optional arguments for the sourcing scripts
# Helpers for the cloud's integration tests: run the real cartwise-cloud on
# one backend (the script's first argument: sqlite | postgres) and talk to it.
# Sourced by test/cloud/*.sh; meson sets CW_BUILD_DIR and CW_SOURCE_DIR.
# PostgreSQL: the standard PG* variables name a server (run the suite under
# pg_virtualenv); each test creates its own database and drops it. Without
# PG* variables a PostgreSQL test exits 77 (skipped).
set -euo pipefail

B=${CW_BUILD_DIR:?run through meson test}
CLOUD=$B/src/cloud/cartwise-cloud
JWT=$B/test/cloud/cw_jwt_tool
BACKEND=${1:?usage: $0 sqlite|postgres}
TEST_NAME="$(basename "$0" .sh)_$BACKEND"
ALLOWED_ERRORS=${ALLOWED_ERRORS:-'^$'}
for prog in "$CLOUD" "$JWT"; do
	[ -x "$prog" ] || { echo "FAIL: $prog was not built"; exit 1; }
done
command -v jq >/dev/null || { echo "FAIL: jq missing (scripts/test installs it)"; exit 1; }

case $BACKEND in
sqlite) command -v sqlite3 >/dev/null || { echo "FAIL: sqlite3 CLI missing"; exit 1; } ;;
postgres)
	if [ -z "${PGHOST:-}${PGPORT:-}${PGUSER:-}${PGDATABASE:-}" ]; then
		echo "SKIP: no PG* variables (run under pg_virtualenv)"
		exit 77
	fi
	command -v psql >/dev/null || { echo "FAIL: psql missing"; exit 1; }
	;;
*) echo "FAIL: backend must be sqlite or postgres"; exit 1 ;;
esac

T=$(mktemp -d "${TMPDIR:-/tmp}/cwcloud.XXXXXX")
# shellcheck source=../cw_python.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cw_python.sh"
# shellcheck source=../cw_psql.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cw_psql.sh"
# shellcheck source=../cw_http.sh
. "$(dirname "${BASH_SOURCE[0]}")/../cw_http.sh"
CLOUD_PID=
PORT=
PGDB=
PIDS=()

cw_cleanup() {
	local rc=$?
	[ -z "$CLOUD_PID" ] || kill "$CLOUD_PID" 2>/dev/null || true
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	cw_http_stop
	wait 2>/dev/null || true
	if [ -n "$PGDB" ]; then
		"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$PGDB\" WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	if [ $rc -ne 0 ] || [ -n "${CW_KEEP:-}" ]; then
		if [ -n "${CW_TEST_ARTIFACTS:-}" ]; then
			mkdir -p "$CW_TEST_ARTIFACTS/$TEST_NAME"
			cp "$T"/*.log "$CW_TEST_ARTIFACTS/$TEST_NAME/" 2>/dev/null || true
		fi
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "---- last lines of $(basename "$f")"
			tail -n 30 "$f"
		done
	fi
	rm -rf "$T"
	exit $rc
}
trap cw_cleanup EXIT
# a test stopped by meson (timeout) or by hand still stops its daemons
trap 'exit 143' TERM INT

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- [${SECONDS}s] $*"; }

wait_until() {
	local limit=$1; shift
	local start=$SECONDS pause=0.05
	until "$@"; do
		[ $SECONDS -lt $((start + limit)) ] || return 1
		# a long wait polls every 0.25 s: each try of a curl+jq predicate
		# costs ~0.1 s of CPU, which the daemons under test need
		[ $SECONDS -lt $((start + 3)) ] || pause=0.25
		sleep $pause
	done
}

# The database of this test: a file, or a fresh PostgreSQL database.
if [ "$BACKEND" = postgres ]; then
	PGDB="cwit_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	"$PSQL" -X -q -d postgres -c "CREATE DATABASE \"$PGDB\"" >/dev/null || fail "cannot create database"
	DB_JSON="{\"backend\":\"postgres\",\"conninfo\":\"dbname=$PGDB\",\"pool_size\":4}"
else
	DB_JSON="{\"backend\":\"sqlite\",\"path\":\"$T/cloud.db\"}"
fi

# db_sql SQL: runs SQL on the test's database and prints rows (| separated).
db_sql() {
	if [ "$BACKEND" = postgres ]; then
		"$PSQL" -X -q -tA -d "$PGDB" -v ON_ERROR_STOP=1 -c "$1"
	else
		sqlite3 "$T/cloud.db" "$1"
	fi
}

"$CLOUD" keygen --out "$T/signing.key" || fail "keygen failed"

# cloud_config FILE [extra top-level JSON merged in]: port 0, the server
# picks a free one and cloud_start reads it from the cloud.ready line.
# login.hash_*: the cheapest Argon2id (1 pass over 8 KiB; the cloud warns
# cloud.weak_password_hash): at the default 64 MiB every sign-in, user and
# cloud start cost ~0.2 s of CPU, a tenth of some tests. The default cost is
# checked by test_cloud_config, and the demo runs with it.
cloud_config() {
	local file=$1 extra=${2:-'{}'}
	jq -n --argjson db "$DB_JSON" --arg key "$T/signing.key" --argjson extra "$extra" '
		{listen: {address: "127.0.0.1", port: 0, threads: 4},
		 database: $db, signing_key_file: $key, log_level: "info",
		 login: {hash_ops: 1, hash_mem_kib: 8}} * $extra' >"$file"
}

# cloud_spawn [CONFIG]: starts the server in the background;
# cloud_wait_ready [SECONDS]: waits for its cloud.ready line and sets PORT.
# cloud_start [CONFIG]: both.
CLOUD_LOG_MARK=0
cloud_spawn() {
	local cfg=${1:-$T/cloud.json}
	CLOUD_LOG_MARK=0
	[ ! -f "$T/cloud.log" ] || CLOUD_LOG_MARK=$(wc -l <"$T/cloud.log")
	"$CLOUD" --config "$cfg" >>"$T/cloud.log" 2>&1 </dev/null &
	CLOUD_PID=$!
}
ready_port() {
	PORT=$(tail -n +"$((CLOUD_LOG_MARK + 1))" "$T/cloud.log" |
		sed -n 's/.*event=cloud.ready .*port=\([0-9]*\).*/\1/p' | head -1)
	[ -n "$PORT" ]
}
cloud_wait_ready() {
	wait_until "${1:-20}" ready_port || fail "cartwise-cloud did not log cloud.ready"
}
cloud_start() {
	cloud_spawn "$@"
	cloud_wait_ready
}

cloud_stop() {
	[ -n "$CLOUD_PID" ] || return 0
	kill -TERM "$CLOUD_PID"
	local rc=0
	wait "$CLOUD_PID" || rc=$?
	CLOUD_PID=
	[ $rc -eq 0 ] || fail "cartwise-cloud exited $rc on SIGTERM"
}

# free_port: a TCP port nothing listens on now (for helpers such as socat)
# shellcheck source=../free_port.sh
. "$(dirname "${BASH_SOURCE[0]}")/../free_port.sh"
free_port() { cw_free_port; }

# mkuser EMAIL ROLE PASSWORD [--chain ID] [--branch ID]...: prints the user id
mkuser() {
	local email=$1 role=$2 pw=$3; shift 3
	printf '%s\n' "$pw" | "$CLOUD" --config "$T/cloud.json" admin create-user \
		--email "$email" --role "$role" "$@" 2>>"$T/admin.log" | jq -r .id
}

# api METHOD PATH [BODY]: uses $AUTH (a token, may be empty); sets CODE,
# writes the body to $T/resp.json.
AUTH=
CODE=
# (test/cw_http.sh: one Python process makes the requests, not a curl each)
api() {
	local url=http://127.0.0.1:$PORT$2
	if [ $# -ge 3 ]; then
		cw_http "$1" "$url" "$T/resp.json" "$AUTH" "$3"
	else
		cw_http "$1" "$url" "$T/resp.json" "$AUTH"
	fi
}
# api_file METHOD PATH FILE: the body from a file (large bodies)
api_file() {
	CODE=$(curl -s -o "$T/resp.json" -w '%{http_code}' -X "$1" ${AUTH:+-H "Authorization: Bearer $AUTH"} \
		-H 'Content-Type: application/json' --data-binary "@$3" "http://127.0.0.1:$PORT$2") || CODE=000
}
jqr() { cw_jq "$1" "$T/resp.json"; }
# jqs FILTER...: the filters' values (each one value) joined by "|", from
# one jq process: [ "$(jqs .a .b)" = "1|x" ] checks two fields at once
jqs() {
	local f='' x
	for x in "$@"; do f+="${f:+, }($x)"; done
	jq -r "[$f] | map(tostring) | join(\"|\")" "$T/resp.json"
}
expect_code() {
	[ "$CODE" = "$1" ] || fail "expected HTTP $1, got $CODE: $(cat "$T/resp.json" 2>/dev/null)"
}
# Every error body is exactly {"error": {"code": ..., "message": ...}}.
# The cloud writes it unformatted: a body that matches ERROR_RE is that
# shape without a jq process (a message with escapes or a code outside
# [a-z_] is left to jq).
ERROR_RE='^\{"error":\{"code":"([a-z_]+)","message":"[^"\\[:cntrl:]]+"\}\}$'
expect_error() {
	local got body=
	expect_code "$1"
	IFS= read -r -d '' body <"$T/resp.json" || true
	if [[ $body =~ $ERROR_RE ]]; then
		got=${BASH_REMATCH[1]}
	else
		got=$(jq -r 'if (keys == ["error"]) and (.error | keys == ["code", "message"])
		and (.error.code | type == "string") and (.error.message | length > 0)
		then .error.code else "BAD-SHAPE" end' "$T/resp.json" 2>/dev/null) || got=BAD-SHAPE
	fi
	[ "$got" != BAD-SHAPE ] || fail "HTTP $1 without the error shape: $(cat "$T/resp.json")"
	[ -z "${2:-}" ] || [ "$got" = "$2" ] || fail "expected error code $2, got $got"
}

# login EMAIL PASSWORD: prints the staff token (jq only when the email or
# password needs JSON escaping, or the answer does not start with the token)
login() {
	local saved=$AUTH body
	if [[ $1$2 =~ ^[A-Za-z0-9@.+_\ -]*$ ]]; then
		printf -v body '{"email":"%s","password":"%s"}' "$1" "$2"
	else
		body=$(jq -n --arg e "$1" --arg p "$2" '{email: $e, password: $p}')
	fi
	AUTH=
	api POST /api/auth/login "$body"
	AUTH=$saved
	expect_code 200
	IFS= read -r -d '' body <"$T/resp.json" || true
	if [[ $body =~ ^\{\"token\":\"([A-Za-z0-9._-]+)\" ]]; then
		printf '%s\n' "${BASH_REMATCH[1]}"
	else
		jqr .token
	fi
}

# Fails when the daemon logged an error-level line the test did not expect.
check_logs() {
	local bad
	bad=$(grep -h 'level=error' "$T"/*.log | grep -Ev "$ALLOWED_ERRORS" || true)
	[ -z "$bad" ] || fail "unexpected error-level log lines:
$bad"
}

# assert_not_logged SECRET...: none of the strings is in any log.
assert_not_logged() {
	for s in "$@"; do
		[ -n "$s" ] || continue
		if grep -qF -- "$s" "$T"/*.log; then
			fail "a secret was written to a log"
		fi
	done
}

# new_uuid: a UUIDv7 (48-bit ms time, version 7, variant 10, random rest)
new_uuid() {
	local ms r us=${EPOCHREALTIME//[!0-9]/}
	printf -v ms '%012x' $((us / 1000))
	printf -v r '%08x%08x%08x' "$SRANDOM" "$SRANDOM" "$SRANDOM" # bash's getrandom()
	printf '%s-%s-7%s-%x%s-%s\n' "${ms:0:8}" "${ms:8:4}" "${r:0:3}" $((8 + 0x${r:3:1} % 4)) \
		"${r:4:3}" "${r:7:12}"
}

# PW's Argon2id hash at libsodium's least cost (t=1, 8 KiB; made once with
# crypto_pwhash_str_alg(..., crypto_pwhash_argon2id_OPSLIMIT_MIN,
# crypto_pwhash_argon2id_MEMLIMIT_MIN, crypto_pwhash_ALG_ARGON2ID13)). The
# cloud verifies a hash with the cost written in it: a sign-in of such a user
# takes the same code path as any other, without the ~0.3 s of CPU the
# product's cost (MEMLIMIT_INTERACTIVE) takes, and setup_world signs in four
# of them per test. The product's cost is what every hash the cloud makes
# has (admin create-user, POST /api/users: the platform admin here and the
# users of cloud_users).
# shellcheck disable=SC2016  # a literal hash
PW_HASH_CHEAP='$argon2id$v=19$m=8,t=1,p=1$ZPH/hpVmeU09n9Kjn0jBBQ$WETGX+wwF8gJ2EjEdXKJcv5Dzb7Q945tn1eme4QACj0'

# mkuser_sql EMAIL ROLE CHAIN [BRANCH]: a user with the password PW (its
# hash PW_HASH_CHEAP), written straight into the database
mkuser_sql() {
	local id
	id=$(new_uuid)
	if [ "$BACKEND" = postgres ]; then
		db_sql "INSERT INTO staff_users (id, email, password_hash, role, chain_id)
			VALUES ('$id', '$1', '$PW_HASH_CHEAP', '$2', '$3')"
	else
		db_sql "INSERT INTO staff_users (id, email, password_hash, role, chain_id, active, created_ms, updated_ms)
			VALUES ('$id', '$1', '$PW_HASH_CHEAP', '$2', '$3', 1, 0, 0)"
	fi
	[ -z "${4:-}" ] || db_sql "INSERT INTO user_branches (user_id, branch_id) VALUES ('$id', '$4')"
}

# setup_world: starts the cloud and creates two chains (A, B), branches A1,
# A2 of A and B1 of B, one user of every role per chain (tokens in
# TOK_PLATFORM, TOK_ADMIN_A, TOK_ADMIN_B, TOK_MGR_A1, TOK_MGR_B1), and one
# registered device per branch A1 and B1 (ids DEV_A1, DEV_B1; device tokens
# DTOK_A1, DTOK_B1).
PW='correct horse battery staple'
setup_world() {
	local extra=${1:-}
	[ -n "$extra" ] || extra='{}'
	cloud_config "$T/cloud.json" "$extra"
	cloud_start
	mkuser admin@example.com platform-admin "$PW" >/dev/null
	TOK_PLATFORM=$(login admin@example.com "$PW")
	AUTH=$TOK_PLATFORM
	api POST /api/chains '{"name":"Chain A","slug":"chain-a"}'; expect_code 201; CHAIN_A=$(jqr .id)
	api POST /api/chains '{"name":"Chain B","slug":"chain-b"}'; expect_code 201; CHAIN_B=$(jqr .id)
	api POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":\"A-001\",\"name\":\"A one\"}"
	expect_code 201; BR_A1=$(jqr .id)
	api POST /api/branches "{\"chain_id\":\"$CHAIN_A\",\"code\":\"A-002\",\"name\":\"A two\"}"
	expect_code 201; BR_A2=$(jqr .id)
	api POST /api/branches "{\"chain_id\":\"$CHAIN_B\",\"code\":\"B-001\",\"name\":\"B one\"}"
	expect_code 201; BR_B1=$(jqr .id)
	# same password, in the database at the least Argon2id cost (mkuser_sql,
	# PW_HASH_CHEAP); with SETUP_WITH_CLI one user of each chain role goes
	# through `admin create-user --chain --branch`
	if [ -n "${SETUP_WITH_CLI:-}" ]; then
		mkuser admin-a@example.com chain-admin "$PW" --chain "$CHAIN_A" >/dev/null
		mkuser mgr-a1@example.com branch-manager "$PW" --chain "$CHAIN_A" --branch "$BR_A1" >/dev/null
	else
		mkuser_sql admin-a@example.com chain-admin "$CHAIN_A"
		mkuser_sql mgr-a1@example.com branch-manager "$CHAIN_A" "$BR_A1"
	fi
	mkuser_sql admin-b@example.com chain-admin "$CHAIN_B"
	mkuser_sql mgr-b1@example.com branch-manager "$CHAIN_B" "$BR_B1"
	TOK_ADMIN_A=$(login admin-a@example.com "$PW")
	TOK_ADMIN_B=$(login admin-b@example.com "$PW")
	TOK_MGR_A1=$(login mgr-a1@example.com "$PW")
	TOK_MGR_B1=$(login mgr-b1@example.com "$PW")
	AUTH=$TOK_PLATFORM
	api POST "/api/branches/$BR_A1/enrollment-codes" '{"uses":5}'; expect_code 201
	CODE_A1=$(jqr .code)
	api POST "/api/branches/$BR_B1/enrollment-codes" '{"uses":5}'; expect_code 201
	CODE_B1=$(jqr .code)
	AUTH=
	api POST /api/devices/register "{\"mac_address\":\"02:00:00:00:00:a1\",\"serial_number\":\"RPI-A1\",\"branch_code\":\"A-001\",\"enrollment_code\":\"$CODE_A1\"}"
	expect_code 201; IFS='|' read -r DEV_A1 DTOK_A1 < <(jqs .device_id .device_token)
	api POST /api/devices/register "{\"mac_address\":\"02:00:00:00:00:b1\",\"serial_number\":\"RPI-B1\",\"branch_code\":\"B-001\",\"enrollment_code\":\"$CODE_B1\"}"
	expect_code 201; IFS='|' read -r DEV_B1 DTOK_B1 < <(jqs .device_id .device_token)
}
