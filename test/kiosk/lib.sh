# shellcheck shell=bash
# Helpers for the kiosk tests (issue 5): the integration helpers
# (test/integration/lib.sh: simulator, edge, cleanup) plus a fake SMS gateway
# (fake_sms.py), kiosk-style requests (no admin token, a chosen client
# address: the edge counts requests per kiosk by client IP) and JWT decoding.
# Sourced by test/kiosk/*.sh.
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

KDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SMS_OUT=$T/sms.jsonl   # one JSON line per message the gateway accepted
SMS_CTL=$T/sms.mode    # ok | fail | close | hang (fake_sms.py)
SMS_TOKEN=sms-bearer-0123456789abcdef
SMS_PORT=
FREE_PORTS=()

# sms_start: the fake gateway (bearer token required) on a port of its own
# choosing; it also hands out 4 free ports for the edge (free_port below), so
# a test starts Python once (slow on some machines).
sms_start() {
	printf '%s\n' "$SMS_TOKEN" >"$T/sms.token"
	chmod 600 "$T/sms.token"
	"$CW_PYTHON" "$KDIR/fake_sms.py" --port 0 --out "$SMS_OUT" --token "$SMS_TOKEN" \
		--control "$SMS_CTL" --free-ports 4 >"$T/sms.out" 2>"$T/sms-stats.txt" </dev/null &
	PIDS+=($!)
	wait_until 20 grep -qs '^ready' "$T/sms.out" || fail "fake_sms.py did not start"
	SMS_PORT=$(sed -n 's/^ready port=\([0-9]*\).*/\1/p' "$T/sms.out")
	IFS=, read -r -a FREE_PORTS <<<"$(sed -n 's/.* free=\([0-9,]*\).*/\1/p' "$T/sms.out")"
}
sms_mode() { printf '%s\n' "$1" >"$SMS_CTL.tmp" && mv "$SMS_CTL.tmp" "$SMS_CTL"; }
# replaces lib.sh's (one Python start per port): a port fake_sms.py found free
free_port() {
	[ ${#FREE_PORTS[@]} -gt 0 ] || fail "no free port left (sms_start first)"
	echo "${FREE_PORTS[0]}"
	FREE_PORTS=("${FREE_PORTS[@]:1}")
}
# (in a $(...) the pop is lost: kiosk_config pops for edge_config)

# The helpers below avoid starting programs where bash can do the work:
# these tests make hundreds of requests, and a jq per check adds seconds on
# a loaded machine.

# sms_count PHONE: how many messages the gateway accepted for PHONE (E.164)
sms_count() {
	local n=0 l
	while IFS= read -r l; do
		[[ $l != *"\"to\": \"$1\""* ]] || n=$((n + 1))
	done <"$SMS_OUT"
	echo $n
}
# sms_text PHONE: the text of the newest message to PHONE
sms_text() {
	local l t=
	while IFS= read -r l; do
		[[ $l == *"\"to\": \"$1\""* && $l =~ \"text\":\ \"([^\"]*)\" ]] && t=${BASH_REMATCH[1]}
	done <"$SMS_OUT"
	printf '%s\n' "$t"
}
# sms_code PHONE [COUNT_BEFORE]: waits for message number COUNT_BEFORE+1 to
# PHONE (default: any) and prints the one 6-digit code in its text.
sms_code() {
	local phone=$1 before=${2:-0} text
	wait_until 10 sms_more "$phone" "$before" || fail "no SMS to $phone (had $before)"
	text=$(sms_text "$phone")
	code_in "$text" || fail "no single 6-digit code in the SMS to $phone: $text"
}
sms_more() { [ "$(sms_count "$1")" -gt "$2" ]; }
# code_in TEXT: prints the one 6-digit number in TEXT (the text may hold
# other numbers, such as the minutes it is valid, but no longer digit run)
code_in() {
	local s=$1 run six= n=0
	while [[ $s =~ [0-9]+ ]]; do
		run=${BASH_REMATCH[0]}
		s=${s#*"$run"}
		if [ ${#run} = 6 ]; then
			six=$run; n=$((n + 1))
		elif [ ${#run} -gt 6 ]; then
			return 1
		fi
	done
	[ $n = 1 ] || return 1
	echo "$six"
}

# kiosk_sim NAME LOCKS: a simulator with one Modbus board (address 1) of
# LOCKS locks; kiosk_bus NAME LOCKS: the edge's bus for it. 115200 baud, a
# 500 ms response timeout and 10 misses before the board counts as offline
# (defaults 50 ms and 3): these tests are about the kiosk, not the bus's
# fault detection (edge_faults.sh), and on a loaded 2-core machine the ASan
# daemon and the simulator stall past 50 ms now and then.
kiosk_sim() { sim_start "$1" modbus --board "1:$2" --baud 115200; }
kiosk_bus() {
	printf '{"name":"%s","port":"%s","protocol":"modbus","baud":115200,"response_timeout_ms":500,
	  "offline_after":10,"boards":[{"address":1,"locks":%d}]}' "$1" "$T/$1.tty" "$2"
}

# kiosk_config FILE BUSES_JSON [extra JSON]: edge_config plus a kiosk section
# and the webhook SMS provider pointed at the fake gateway. The extra JSON is
# merged last (jq *), so a test can change any limit.
kiosk_config() {
	local file=$1 buses=$2 extra=${3:-'{}'} web ks
	web=${CW_SOURCE_DIR:?}/web/kiosk
	[ -d "$web" ] || { web=$T/web; mkdir -p "$web"; }
	ks=$(jq -n --arg web "$web" --arg url "http://127.0.0.1:$SMS_PORT/sms/send" \
		--arg tokfile "$T/sms.token" '{
		kiosk: {web_root: $web},
		sms: {provider: "webhook", timeout_s: 2,
		      webhook: {url: $url, bearer_token_file: $tokfile}}}')
	ks=$(jq -n --argjson a "$ks" --argjson b "$extra" '$a * $b')
	edge_config "$file" "$buses" "$ks"
	# edge_config's API_PORT=$(free_port) ran in a subshell: drop that port here
	[ "$API_PORT" = "${FREE_PORTS[0]}" ] || fail "free port bookkeeping"
	FREE_PORTS=("${FREE_PORTS[@]:1}")
}

# kapi [-i IP] [-t TOKEN] METHOD PATH [BODY]: a request as a kiosk makes it
# (no admin token; TOKEN as a customer bearer token), from client address IP
# (default 127.0.0.1; the edge listens on 127.0.0.1 and any 127.x address
# reaches it, each one a different kiosk). Sets CODE and BODY (also in
# $RESP, default $T/resp.json, which jqr reads).
BODY=
RESP=
kapi() {
	local ip=127.0.0.1 tok= args
	while [ $# -gt 0 ]; do
		case $1 in
		-i) ip=$2; shift 2 ;;
		-t) tok=$2; shift 2 ;;
		*) break ;;
		esac
	done
	args=(-s -o "${RESP:-$T/resp.json}" -w '%{http_code}' --interface "$ip" -X "$1"
		"http://127.0.0.1:$API_PORT$2")
	[ -z "$tok" ] || args+=(-H "Authorization: Bearer $tok")
	[ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
	: >"${RESP:-$T/resp.json}"
	CODE=$(curl "${args[@]}") || CODE=000
	BODY=
	[ ! -f "${RESP:-$T/resp.json}" ] || IFS= read -r -d '' BODY <"${RESP:-$T/resp.json}" || true
}
# js KEY / jn KEY: a string / integer member of the last answer (flat JSON as
# cJSON prints it; the first "KEY" anywhere); empty when absent
js() { if [[ $BODY =~ \"$1\":\"([^\"]*)\" ]]; then echo "${BASH_REMATCH[1]}"; fi; }
jn() { if [[ $BODY =~ \"$1\":(-?[0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; fi; }
# expect CODE [REASON]: the last answer had this status and error.reason
expect() {
	[ "$CODE" = "$1" ] || fail "expected HTTP $1, got $CODE: $BODY"
	[ -z "${2:-}" ] || [ "$(js reason)" = "$2" ] ||
		fail "expected reason '$2' with HTTP $1, got: $BODY"
}

# otp_request PHONE [IP]: 202 expected; prints nothing, sets CODE
otp_request() { kapi -i "${2:-127.0.0.1}" POST /api/auth/otp/request "{\"phone\":\"$1\"}"; }
otp_verify() { kapi -i "${3:-127.0.0.1}" POST /api/auth/otp/verify "{\"phone\":\"$1\",\"code\":\"$2\"}"; }

# signin E164 [IP]: request a code, read it from the gateway, verify; sets CTOKEN
CTOKEN=
signin() {
	local phone=$1 ip=${2:-127.0.0.1} n code
	n=$(sms_count "$phone")
	otp_request "$phone" "$ip"; expect 202
	code=$(sms_code "$phone" "$n")
	otp_verify "$phone" "$code" "$ip"; expect 200
	CTOKEN=$(js token)
}

# edge_sql_w SQL: a write into the running edge's database (to make a state
# that would take long to reach, such as an overdue rental)
edge_sql_w() { sqlite3 -cmd '.timeout 5000' "$T/data/edge.db" "$1" >/dev/null; }
# wrong_of CODE: another 6-digit code
wrong_of() { printf '%06d' $(( (10#$1 + 1) % 1000000 )); }
# rental_state ID REGEX: the public view of the rental has a matching state
rental_state() { kapi GET "/api/kiosk/rentals/$1"; [[ $(js state) =~ ^$2$ ]]; }

# assert_codes_secret: none of the codes in CODES (every code a test saw in a
# text) is in the daemon's log or in its database (stored as keyed hashes
# only; the SMS queue row with the text is deleted once sent)
CODES=()
assert_codes_secret() {
	local c
	[ ${#CODES[@]} -ge "${1:-1}" ] || fail "only ${#CODES[@]} codes seen"
	sqlite3 "$T/data/edge.db" .dump >"$T/dump.sql"
	for c in "${CODES[@]}"; do
		[ ${#c} = 6 ] || fail "bad code '$c' collected"
		! grep -qw -- "$c" "$T/edge.log" ||
			fail "code $c is in the daemon's log: $(grep -w -- "$c" "$T/edge.log" | head -3)"
		! grep -qw -- "$c" "$T/dump.sql" ||
			fail "code $c is in the database: $(grep -w -- "$c" "$T/dump.sql" | head -3)"
	done
}

# jwt_part TOKEN N: base64url-decoded part N (1 header, 2 claims) of a JWT
jwt_part() {
	local s
	s=$(cut -d. -f"$2" <<<"$1" | tr '_-' '/+')
	while [ $(( ${#s} % 4 )) -ne 0 ]; do s+='='; done
	base64 -d <<<"$s"
}
jwt_claims() { jwt_part "$1" 2; }
