#!/usr/bin/env bash
# shellcheck disable=SC2015  # "A && B || fail": fail when any check is false, meant so
# The outbox sender (src/cloudsync/cw_syncer) against test/cloudsync/sync_stub.py,
# a stand-in for the cloud's sync endpoint with the high-water semantics of
# docs/SYNC.md: 10 000 entries drain with zero loss and zero duplicates while
# the stub drops, resets and refuses connections at random; batches respect
# the count and byte bounds; a 409 after an applied batch is resolved by the
# cloud's high-water mark; a cloud behind the device stops sync (gap); a cloud
# ahead of a fresh outbox (edge.db replaced) stops sync unacknowledged; a bad
# payload is kept, not skipped; an entry the cloud refuses (400) holds the
# queue visibly (entry_refused) and is never skipped; the syncer stops at once
# even mid-request. The mqtt group adds a real Mosquitto (test/mqtt/broker.sh,
# production ACL): the MQTT link's status, Last Will, telemetry and signed commands.
set -euo pipefail
# usage: cloudsync_stub.sh drain|protocol|commands|mqtt (four meson tests, each well under a minute)
GROUP=${1:?usage: $0 drain|protocol|commands|mqtt}
B=${CW_BUILD_DIR:?run through meson test}
S=${CW_SOURCE_DIR:?run through meson test}
DRIVER=$B/test/cloudsync/sync_driver
STUB=$S/test/cloudsync/sync_stub.py
[ -x "$DRIVER" ] || { echo "FAIL: $DRIVER not built"; exit 1; }
command -v jq >/dev/null || { echo "FAIL: jq missing"; exit 1; }
# shellcheck source=../cw_python.sh
. "$S/test/cw_python.sh"

T=$(mktemp -d "${TMPDIR:-/tmp}/cwsyncstub.XXXXXX")
STUB_PID=
DRIVER_PID=
cleanup() {
	local rc=$?
	[ -z "$DRIVER_PID" ] || kill "$DRIVER_PID" 2>/dev/null || true
	[ -z "$STUB_PID" ] || kill "$STUB_PID" 2>/dev/null || true
	! declare -F broker_kill >/dev/null || broker_kill
	wait 2>/dev/null || true
	if [ $rc -ne 0 ]; then
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "---- last lines of $(basename "$f")"
			tail -n 30 "$f"
		done
	fi
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- [${SECONDS}s] $*"; }
wait_until() {
	local limit=$1; shift
	local end=$((SECONDS + limit))
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.05
	done
}

# stub_start NAME [stub options]: sets PORT, STUB_PID
stub_start() {
	local name=$1; shift
	: >"$T/$name-stub.out"
	"$CW_PYTHON" "$STUB" "$@" >"$T/$name-stub.out" 2>"$T/$name-stub.log" &
	STUB_PID=$!
	wait_until 10 grep -q '^PORT=' "$T/$name-stub.out" || fail "stub did not start"
	PORT=$(sed -n 's/^PORT=//p' "$T/$name-stub.out")
}
stub_stop() { kill "$STUB_PID"; wait "$STUB_PID" 2>/dev/null || true; STUB_PID=; }
stub_state() { curl -sf "http://127.0.0.1:$PORT/stub/state"; }
# driver NAME [driver options]: runs in the foreground, its log in NAME-driver.log;
# with DRIVER_BG=1 in the background, DRIVER_PID its own pid (for signals)
driver() {
	local name=$1 rc=0; shift
	mkdir -p "$T/$name"
	"$DRIVER" --url "http://127.0.0.1:$PORT" --insecure --data-dir "$T/$name" \
		--branch-code STUB-1 --code stub-code --mac 02:00:00:00:5b:01 \
		--backoff-base-ms 20 --backoff-cap-ms 200 --status "$T/$name/status.json" \
		"$@" 2>"$T/$name-driver.log" &
	DRIVER_PID=$!
	[ -z "${DRIVER_BG:-}" ] || return 0
	wait "$DRIVER_PID" || rc=$?
	DRIVER_PID=
	return $rc
}
st() { jq -r "$1" "$T/$2/status.json"; }

phase_drain() {
	note "10 000 entries, 20 % of batches hit by a fault (drop/reset before or after applying, 500, 429)"
	stub_start drain --fault-rate 0.2 --seed 7 --pad 40 --max-entries 500 --max-bytes 65536
	start=$SECONDS
	driver drain --entries 10000 --pad 40 --batch-entries 500 --batch-bytes 65536 \
		--until drained --seconds 100
	s=$(stub_state)
	echo "stub: $(jq -c 'del(.errors)' <<<"$s")"
	[ "$(jq '.errors | length' <<<"$s")" = 0 ] || fail "stub refused batches: $(jq -c .errors <<<"$s")"
	[ "$(jq .applied <<<"$s")" = 10000 ] || fail "applied $(jq .applied <<<"$s") of 10000"
	[ "$(jq .dupes <<<"$s")" = 0 ] || fail "duplicates"
	[ "$(jq .min <<<"$s")" = 1 ] && [ "$(jq .max <<<"$s")" = 10000 ] && [ "$(jq .contiguous <<<"$s")" = true ] \
		|| fail "applied set is not 1..10000"
	[ "$(jq .high_water <<<"$s")" = 10000 ] || fail "high water"
	[ "$(jq .conflicts <<<"$s")" = 0 ] || fail "the device sent a batch beyond the high-water mark"
	[ "$(jq '[.faults[]] | add' <<<"$s")" -ge 5 ] || fail "too few faults injected to mean anything"
	[ "$(jq .registrations <<<"$s")" = 1 ] || fail "registrations"
	[ "$(jq .max_batch_entries <<<"$s")" -le 500 ] || fail "batch over 500 entries"
	[ "$(jq .max_batch_bytes <<<"$s")" -le 65536 ] || fail "batch over 65536 bytes"
	[ "$(jq .max_batch_entries <<<"$s")" -ge 100 ] || fail "batches far smaller than the byte bound allows"
	[ "$(st .acked drain)" = 10000 ] || fail "device acknowledged $(st .acked drain)"
	[ "$(st .ack_regressions drain)" = 0 ] || fail "ack went backwards"
	[ "$(st .errors drain)" = 0 ] || fail "error-level log lines"
	[ "$(stat -c %a "$T/drain/cloud.json")" = 600 ] || fail "cloud.json mode"
	note "drained in $((SECONDS - start)) s; faults $(jq -c .faults <<<"$s"), skipped (resent after a lost answer) $(jq .skipped <<<"$s")"
	stub_stop
}

phase_live() {
	note "entries appear while the syncer runs: notify wakes it, all arrive once"
	stub_start live --fault-rate 0.05 --seed 3
	start=$SECONDS
	driver live --entries 0 --heartbeat-s 60 --add 37 --add-every-ms 50 --add-times 40 \
		--until drained --seconds 90
	# heartbeat_s 60: without notify the entries would wait for the next heartbeat
	[ $((SECONDS - start)) -lt 30 ] || fail "live entries took $((SECONDS - start)) s: notify did not wake the syncer"
	s=$(stub_state)
	[ "$(jq .applied <<<"$s")" = 1480 ] && [ "$(jq .dupes <<<"$s")" = 0 ] && [ "$(jq .contiguous <<<"$s")" = true ] \
		|| fail "live: $(jq -c 'del(.errors)' <<<"$s")"
	stub_stop
}

phase_c409() {
	note "409 after an applied batch (a lost answer seen as a gap): the device takes the cloud's high water"
	stub_start c409 --apply-then-409 3
	driver c409 --entries 3000 --until drained --seconds 60
	s=$(stub_state)
	[ "$(jq .applied <<<"$s")" = 3000 ] && [ "$(jq .dupes <<<"$s")" = 0 ] && [ "$(jq .contiguous <<<"$s")" = true ] \
		|| fail "409: $(jq -c 'del(.errors)' <<<"$s")"
	[ "$(jq .conflicts <<<"$s")" = 3 ] && [ "$(jq .gets <<<"$s")" -ge 3 ] || fail "409 path not taken"
	[ "$(st .state c409)" = ok ] || fail "state $(st .state c409)"
	grep -q 'event=cloud.sync_resumed' "$T/c409-driver.log" || fail "no sync_resumed log"
	stub_stop
}

phase_gap() {
	note "the cloud is behind what it acknowledged (restored backup): state gap, sync stops, heartbeats go on"
	# a heartbeat failing after the gap (backoff, then ok again) must not resume batches
	stub_start gap --heartbeat-500-after-409 1
	driver gap --entries 100 --acked 50 --seconds 3 || true
	s=$(stub_state)
	[ "$(jq .heartbeats_500 <<<"$s")" -ge 1 ] || fail "no failed heartbeat after the gap"
	[ "$(st .state gap)" = gap ] || fail "state $(st .state gap)"
	[ "$(st .sync_stopped gap)" = true ] || fail "gap: sync not stopped"
	[ "$(jq .applied <<<"$s")" = 0 ] || fail "applied entries after a gap"
	[ "$(jq .conflicts <<<"$s")" = 1 ] || fail "sent again after the gap: $(jq .conflicts <<<"$s") conflicts"
	[ "$(jq .heartbeats <<<"$s")" -ge 2 ] || fail "heartbeats stopped in the gap state"
	grep -q 'level=error event=cloud.sync_gap' "$T/gap-driver.log" || fail "gap not logged as an error"
	[ "$(grep -c 'level=error event=cloud.sync_gap' "$T/gap-driver.log")" = 1 ] || fail "gap logged more than once"
	stub_stop
}

phase_ahead() {
	note "edge.db replaced, cloud.json kept: the cloud's mark (500) is ahead of a fresh outbox; its skips are refused, nothing acknowledged"
	stub_start ahead --initial-hw 500
	driver ahead --entries 100 --backoff-base-ms 20 --seconds 3 || true
	s=$(stub_state)
	echo "stub: $(jq -c 'del(.errors)' <<<"$s")"
	[ "$(st .state ahead)" = cloud_ahead ] || fail "state $(st .state ahead)"
	[ "$(st .sync_stopped ahead)" = true ] || fail "sync not stopped"
	[ "$(st .acked ahead)" = 0 ] || fail "acknowledged $(st .acked ahead) entries the cloud never got"
	[ "$(jq .posts <<<"$s")" = 1 ] || fail "batches sent after cloud_ahead: $(jq .posts <<<"$s")"
	[ "$(jq .heartbeats <<<"$s")" -ge 2 ] || fail "heartbeats stopped in the cloud_ahead state"
	[ "$(grep -c 'level=error event=cloud.sync_cloud_ahead' "$T/ahead-driver.log")" = 1 ] \
		|| fail "cloud_ahead not logged exactly once as an error"
	grep -q 'never_sent_seq=1 reset_to=0 reason="edge.db replaced or restored; lower the cloud.s mark to reset_to (OPERATIONS.md)"' \
		"$T/ahead-driver.log" || fail "no operator hint"
	[ "$(st .sent_upto ahead)" = 0 ] && [ "$(st .unsent_calls ahead)" = 1 ] \
		|| fail "the skipped entries still count as sent (a restart would let the cloud skip them): $(cat "$T/ahead/status.json")"
	stub_stop

	note "the operator lowers the cloud's mark to reset_to (0): cloud_ahead is left at the next heartbeat, all 100 arrive once"
	stub_start lowered --initial-hw 500
	driver lowered --entries 100 --until drained --seconds 20 &
	DRIVER_PID=$!
	ahead_seen() { [ -f "$T/lowered/status.json" ] && [ "$(st .state lowered)" = cloud_ahead ]; }
	wait_until 10 ahead_seen || fail "no cloud_ahead"
	curl -sf -X POST -d '{"high_water":0}' "http://127.0.0.1:$PORT/stub/reset" >/dev/null || fail "stub reset"
	wait "$DRIVER_PID" || fail "did not drain after the mark was lowered"
	DRIVER_PID=
	s=$(stub_state)
	[ "$(jq .applied <<<"$s")" = 100 ] && [ "$(jq .dupes <<<"$s")" = 0 ] && [ "$(jq .max <<<"$s")" = 100 ] \
		|| fail "lowered: $(jq -c 'del(.errors)' <<<"$s")"
	[ "$(st .state lowered)" = ok ] && [ "$(st .sync_stopped lowered)" = false ] || fail "state $(st .state lowered)"
	grep -q 'event=cloud.sync_ahead_resolved' "$T/lowered-driver.log" || fail "resolution not logged"
	stub_stop

	note "entries sent before (answer lost) may be skipped: the mark (60) inside what was sent (100)"
	stub_start resent --initial-hw 60
	driver resent --entries 150 --sent 100 --until drained --seconds 20
	s=$(stub_state)
	[ "$(st .state resent)" = ok ] || fail "state $(st .state resent)"
	[ "$(st .acked resent)" = 150 ] || fail "acked $(st .acked resent)"
	[ "$(jq .applied <<<"$s")" = 90 ] && [ "$(jq .skipped <<<"$s")" = 60 ] || fail "resent: $(jq -c 'del(.errors)' <<<"$s")"
	[ "$(st .sent_regressions resent)" = 0 ] || fail "outbox_sent ranges"
	[ "$(st .errors resent)" = 0 ] || fail "error-level log lines"

	note "the same with a mark beyond what was sent (100 of 150, mark 120): fresh entries 101..120 skipped, refused"
	stub_stop
	stub_start partly --initial-hw 120
	driver partly --entries 150 --sent 100 --seconds 3 || true
	[ "$(st .state partly)" = cloud_ahead ] || fail "state $(st .state partly)"
	[ "$(st .acked partly)" = 0 ] || fail "acked $(st .acked partly)"
	stub_stop
}

phase_save() {
	note "credentials received (201) but cloud.json cannot be written: only the save is retried, no second registration"
	# the stub answers the registration 3 s after it came: the blocker goes
	# in between (a fixed sleep raced a slow start under ASan on a loaded
	# machine; 0.5 s was once too short for this poll and the mkdir)
	stub_start save --register-delay 3
	mkdir -p "$T/save"
	driver save --until enrolled --seconds 20 &
	DRIVER_PID=$!
	reg_started() { [ "$(stub_state | jq .registrations)" -ge 1 ]; }
	wait_until 10 reg_started || fail "no registration"
	mkdir "$T/save/cloud.json" "$T/save/cloud.json/blocker" ||
		fail "cloud.json was written before the blocker went in (the registration was answered)"
	# (rename over a non-empty directory fails)
	wait_until 10 grep -q 'event=cloud.credentials_save' "$T/save-driver.log" || fail "save did not fail"
	sleep 0.3
	rm -rf "$T/save/cloud.json"
	wait "$DRIVER_PID" || fail "driver did not enroll"
	DRIVER_PID=
	s=$(stub_state)
	[ "$(jq .registrations <<<"$s")" = 1 ] || fail "registered $(jq .registrations <<<"$s") times"
	[ -f "$T/save/cloud.json" ] || fail "cloud.json not written"
	[ "$(st .state save)" = ok ] || fail "state $(st .state save)"
	stub_stop
}

phase_refused() {
	note "the cloud refuses entry 37 (400 naming it): entries 1..36 go, the queue waits at 37 (state entry_refused, logged once), nothing skipped; once the cloud takes it, all drain"
	stub_start refused --refuse-seq 37
	driver refused --entries 100 --until drained --seconds 20 &
	DRIVER_PID=$!
	refused_seen() { [ -f "$T/refused/status.json" ] && [ "$(st .state refused)" = entry_refused ] \
		&& [ "$(jq .refused_posts <<<"$(stub_state)")" -ge 4 ]; }
	wait_until 10 refused_seen || fail "no entry_refused state: $(cat "$T/refused/status.json")"
	[ "$(st .refused_seq refused)" = 37 ] || fail "refused_seq $(st .refused_seq refused)"
	[ "$(st .refused_code refused)" = invalid ] || fail "refused_code $(st .refused_code refused)"
	[ "$(st .sync_stopped refused)" = true ] || fail "sync_stopped not set"
	[ "$(st .acked refused)" = 36 ] || fail "acked $(st .acked refused) (want the 36 before it)"
	s=$(stub_state)
	[ "$(jq .applied <<<"$s")" = 36 ] && [ "$(jq .max <<<"$s")" = 36 ] || fail "refused: $(jq -c 'del(.errors)' <<<"$s")"
	[ "$(grep -c 'level=error event=cloud.sync_entry_refused op=sync seq=37 code=invalid' "$T/refused-driver.log")" = 1 ] \
		|| fail "refused entry not logged exactly once"
	curl -sf -X POST "http://127.0.0.1:$PORT/stub/accept" >/dev/null || fail "stub accept"
	wait "$DRIVER_PID" || fail "did not drain once the cloud took the entry"
	DRIVER_PID=
	s=$(stub_state)
	[ "$(jq .applied <<<"$s")" = 100 ] && [ "$(jq .dupes <<<"$s")" = 0 ] || fail "after accept: $(jq -c 'del(.errors)' <<<"$s")"
	[ "$(st .state refused)" = ok ] && [ "$(st .refused_seq refused)" = 0 ] \
		&& [ "$(st .sync_stopped refused)" = false ] || fail "state after accept: $(cat "$T/refused/status.json")"
	grep -q 'event=cloud.sync_entry_accepted seq=37' "$T/refused-driver.log" || fail "acceptance not logged"
	[ "$(st .errors refused)" = 1 ] || fail "error-level lines: $(st .errors refused) (want the one refusal)"
	stub_stop
}

phase_bad() {
	note "a payload that is not JSON is kept (the queue stops, logged once), never skipped"
	stub_start bad
	driver bad --entries 10 --bad-first --seconds 2 || true
	s=$(stub_state)
	[ "$(jq .applied <<<"$s")" = 0 ] && [ "$(jq .posts <<<"$s")" = 0 ] || fail "bad entry: $(jq -c 'del(.errors)' <<<"$s")"
	[ "$(st .acked bad)" = 0 ] || fail "bad entry acknowledged"
	[ "$(grep -c 'level=error event=cloud.outbox_bad_entry' "$T/bad-driver.log")" = 1 ] || fail "bad entry not logged exactly once"
	stub_stop
}

phase_big() {
	note "an answer over 1 MiB is refused (too_big), backed off, nothing crashes"
	stub_start big --big-heartbeat
	driver big --entries 5 --seconds 3 || true
	[ "$(st .server_time_calls big)" = 0 ] || fail "an oversize answer was used"
	[ "$(st .state big)" = backoff ] || fail "state $(st .state big)"
	grep -q 'event=cloud.unreachable op=heartbeat error=too_big' "$T/big-driver.log" || fail "too_big not logged"
	[ "$(st .errors big)" = 0 ] || fail "error-level log lines"
	stub_stop

	note "heartbeats refused (400): the outbox still drains"
	stub_start nohb --refuse-heartbeat
	driver nohb --entries 2000 --until drained --seconds 30
	s=$(stub_state)
	[ "$(jq .applied <<<"$s")" = 2000 ] && [ "$(jq .dupes <<<"$s")" = 0 ] || fail "nohb: $(jq -c 'del(.errors)' <<<"$s")"
	[ "$(grep -c 'level=warn event=cloud.refused op=heartbeat status=400' "$T/nohb-driver.log")" = 1 ] \
		|| fail "refused heartbeat not logged exactly once"
	stub_stop
}

phase_hang() {
	note "the stub accepts the connection and never answers: SIGTERM stops the syncer at once"
	stub_start hang --hang
	mkdir -p "$T/hang"
	"$DRIVER" --url "http://127.0.0.1:$PORT" --insecure --data-dir "$T/hang" --branch-code STUB-1 \
		--code c --mac 02:00:00:00:5b:02 --seconds 60 2>"$T/hang-driver.log" &
	DRIVER_PID=$!
	sleep 1.5
	t0=$(date +%s%N)
	kill -TERM "$DRIVER_PID"
	wait "$DRIVER_PID" || fail "driver exit status"
	DRIVER_PID=
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	note "stopped in $ms ms ($(grep -o 'free_ms=[0-9]*' "$T/hang-driver.log"))"
	[ "$ms" -lt 2500 ] || fail "stop took $ms ms"
	free_ms=$(sed -n 's/^free_ms=//p' "$T/hang-driver.log")
	[ "$free_ms" -lt 300 ] || fail "cw_syncer_free took $free_ms ms with a request in flight"
	stub_stop
}

# Command signing, shared by the commands and mqtt groups: the cloud's key
# (cartwise-cloud keygen) and another one; claims/cmd need DEV.
keys_init() {
	CLOUD=$B/src/cloud/cartwise-cloud
	JWT=$B/test/cloud/cw_jwt_tool
	"$CLOUD" keygen --out "$T/cmd.key" >/dev/null 2>&1 || fail "keygen"
	"$CLOUD" keygen --out "$T/other.key" >/dev/null 2>&1 || fail "keygen"
	# the public key: the last 32 bytes of the 64-byte secret key (base64url)
	local sk
	sk=$(tr -d ' \n' <"$T/cmd.key")
	while [ $((${#sk} % 4)) -ne 0 ]; do sk="$sk="; done
	PK=$(basenc -d --base64url <<<"$sk" | tail -c 32 | basenc --base64url -w 0 | tr -d '=')
	[ ${#PK} -eq 43 ] || fail "could not read the public key of $T/cmd.key"
	echo '[]' >"$T/cmds.json"
}
claims() { # claims ID [jq filter]
	jq -nc --arg sub "$DEV" --arg jti "$1" "{iss: \"stub-cloud\", aud: \"cartwise-device\", typ: \"command\",
		sub: \$sub, jti: \$jti, act: \"unlock\", args: {cart_number: 7}, iat: \"@now-2\", exp: \"@now+600\"} | ${2:-.}"
}
cmd() { # cmd ID TOKEN: one entry of the heartbeat's commands array (and one MQTT payload)
	jq -nc --arg id "$1" --arg t "$2" '{id: $id, action: "unlock", args: {cart_number: 7}, token: $t}'
}

phase_commands() {
	note "commands in heartbeats: a good one runs once (replays are the source's CONFLICT, not errors); forged, unsigned, expired, wrong device, wrong typ/aud are refused, each logged once; a signed one with bad args reaches the source once (it records it refused)"
	keys_init
	stub_start cmd --public-key "$PK" --commands "$T/cmds.json"
	DEV=$(sed -n 's/^DEVICE=//p' "$T/cmd-stub.out")
	good=$("$JWT" sign "$T/cmd.key" "$(claims c-good)")
	{
		echo '['
		cmd c-good "$good"; echo ,
		cmd c-good "$good"; echo ,                       # the same command twice in one answer
		cmd c-forged "$("$JWT" sign "$T/other.key" "$(claims c-forged)")"; echo ,
		cmd c-none "$("$JWT" unsigned '{"alg":"none","typ":"JWT"}' "$(claims c-none)")"; echo ,
		cmd c-expired "$("$JWT" sign "$T/cmd.key" "$(claims c-expired '.iat = "@now-100" | .exp = "@now-1"')")"; echo ,
		cmd c-other "$("$JWT" sign "$T/cmd.key" "$(claims c-other '.sub = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"')")"; echo ,
		cmd c-typ "$("$JWT" sign "$T/cmd.key" "$(claims c-typ '.typ = "device"')")"; echo ,
		cmd c-aud "$("$JWT" sign "$T/cmd.key" "$(claims c-aud '.aud = "cartwise-api"')")"; echo ,
		cmd c-swap "$good"; echo ,                        # a valid token under another id
		# signed, args not an object: handed to the source, which records it refused
		cmd c-badargs "$("$JWT" sign "$T/cmd.key" "$(claims c-badargs '.args = "x"')")"; echo ,
		jq -nc '{id: "c-unsigned", action: "unlock", args: {}}'
		echo ']'
	} >"$T/cmds.json"
	jq -e 'length == 11' "$T/cmds.json" >/dev/null || fail "commands file"
	driver cmd --seconds 4 || true
	[ "$(st .commands cmd)" = 2 ] || fail "commands handed to the source: $(st .commands cmd) (want c-good and c-badargs)"
	[ "$(grep -c 'event=cloud.command_malformed command=c-badargs reason=bad_args' "$T/cmd-driver.log")" = 1 ] \
		|| fail "the malformed command not logged exactly once"
	[ "$(st .replays cmd)" -ge 3 ] || fail "replays seen by the source: $(st .replays cmd)"
	[ "$(st .errors cmd)" = 0 ] || fail "a replay or refusal was logged as an error"
	[ "$(st .state cmd)" = ok ] || fail "state $(st .state cmd)"
	for id in c-forged c-none c-expired c-other c-typ c-aud c-swap c-unsigned; do
		n=$(grep -c "event=cloud.command_refused command=$id " "$T/cmd-driver.log" || true)
		[ "$n" = 1 ] || fail "$id refused-log count $n (want 1)"
	done
	grep -q 'command=c-forged reason=bad_signature' "$T/cmd-driver.log" || fail "forged reason"
	grep -q 'command=c-none reason=bad_alg' "$T/cmd-driver.log" || fail "alg none reason"
	grep -q 'command=c-expired reason=expired' "$T/cmd-driver.log" || fail "expired reason"
	grep -q 'command=c-other reason=wrong_device' "$T/cmd-driver.log" || fail "wrong device reason"
	grep -q 'command=c-typ reason=bad_typ' "$T/cmd-driver.log" || fail "typ reason"
	grep -q 'command=c-aud reason=bad_aud' "$T/cmd-driver.log" || fail "aud reason"
	grep -q 'command=c-swap reason=id_mismatch' "$T/cmd-driver.log" || fail "swapped id reason"
	grep -q 'command=c-unsigned reason=unsigned' "$T/cmd-driver.log" || fail "unsigned reason"
	stub_stop
}

phase_mqtt() {
	note "MQTT link on a real Mosquitto (production ACL): status online/offline, Last Will, telemetry, commands in well under the heartbeat"
	command -v mosquitto_sub >/dev/null && command -v mosquitto_pub >/dev/null || fail "mosquitto clients missing"
	# shellcheck source-path=SCRIPTDIR source=../mqtt/broker.sh
	. "$S/test/mqtt/broker.sh"
	keys_init
	mkdir -p "$T/broker"
	broker_start "$T/broker"
	broker_user cartwise-cloud cloud-pass-0123
	DEVPASS=dev-pass-$RANDOM$RANDOM
	# a token of 3 s is rotated every 2 s: each rotation answer carries
	# mqtt_config from mqtt.json (the same as at registration until changed)
	stub_start mq --public-key "$PK" --commands "$T/cmds.json" --mqtt-port "$MQTT_PORT" --mqtt-password "$DEVPASS" \
		--token-life 3 --mqtt-file "$T/mqtt.json"
	DEV=$(sed -n 's/^DEVICE=//p' "$T/mq-stub.out")
	TOPIC=$(sed -n 's/^TOPIC=//p' "$T/mq-stub.out")
	mqtt_json() {
		jq -n --arg t "$TOPIC" --arg u "$DEV" --arg p "$1" --argjson port "$MQTT_PORT" \
			'{broker: "127.0.0.1", port: $port, tls: false, topic: $t, username: $u, password: $p}' >"$T/mqtt.json.tmp"
		mv "$T/mqtt.json.tmp" "$T/mqtt.json"
	}
	mqtt_json "$DEVPASS"
	broker_user "$DEV" "$DEVPASS"
	sleep 0.2 # the HUP reload
	local cloud=(-h 127.0.0.1 -p "$MQTT_PORT" -u cartwise-cloud -P cloud-pass-0123 -V mqttv5)
	status_msg() { mosquitto_sub "${cloud[@]}" -t "$TOPIC/status" -C 1 -W 5; }
	status_is() { [ "$(status_msg | jq -r .status)" = "$1" ]; }
	pub() { mosquitto_pub "${cloud[@]}" -t "$TOPIC/commands" -q 1 "$@"; }
	mq_is() { [ "$(st .mqtt "$1" 2>/dev/null)" = "$2" ]; }
	run_is() { [ "$(st .commands "$1")" = "$2" ]; }
	got_is() { [ "$(st .mqtt_commands "$1")" = "$2" ]; }
	logged() { grep -q -- "$1" "$T/mq-driver.log"; }

	mosquitto_sub "${cloud[@]}" -t "$TOPIC/telemetry" -C 1 -W 20 >"$T/telemetry.json" &
	local tel_pid=$!
	sleep 0.3 # subscribed before the device connects
	# heartbeat_s 60: after the first heartbeat only MQTT can bring a command quickly;
	# a firmware version with a space and a UTF-8 en dash goes out as printable ASCII without
	# spaces, which the cloud requires of the heartbeat and of the MQTT status
	DRIVER_BG=1 driver mq --heartbeat-s 60 --seconds 60 --firmware "$(printf 'test 1.2\342\200\223rc1')"
	wait_until 10 mq_is mq connected || fail "mqtt state $(st .mqtt mq)"
	wait_until 5 status_is online || fail "retained status: $(status_msg)"
	status_msg | jq -e '.v == 1 and .firmware_version == "test_1.2___rc1" and (.at | test("Z$"))' >/dev/null \
		|| fail "online status: $(status_msg)"
	stub_fw_is() { [ "$(stub_state | jq -r .firmware)" = "$1" ]; }
	wait_until 5 stub_fw_is test_1.2___rc1 || fail "heartbeat firmware: $(stub_state | jq -c .firmware)"
	wait "$tel_pid" || fail "no telemetry"
	jq -e '.v == 1 and .health.fake_marker == "cloudsync-test" and (.health.outbox_depth | type) == "number"' \
		"$T/telemetry.json" >/dev/null || fail "telemetry: $(cat "$T/telemetry.json")"

	note "a signed command on P/commands runs at once; the same again does not run twice"
	local good t0 ms
	good=$("$JWT" sign "$T/cmd.key" "$(claims m-good)")
	t0=$(date +%s%N)
	pub -m "$(cmd m-good "$good")"
	wait_until 5 run_is mq 1 || fail "the MQTT command did not run: $(cat "$T/mq/status.json")"
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	note "MQTT command ran after $ms ms (publish to the source's command, status file polled every 100 ms)"
	[ "$ms" -lt 2000 ] || fail "the MQTT command took $ms ms"
	logged 'event=cloud.command command=m-good action=unlock via=mqtt' || fail "no via=mqtt log"
	pub -m "$(cmd m-good "$good")"
	wait_until 5 got_is mq 2 || fail "replay not received"
	sleep 0.3
	run_is mq 1 || fail "a replay ran again"
	[ "$(st .replays mq)" -ge 1 ] || fail "the replay did not reach the command log"

	note "refused: forged, expired, other device, unsigned, not JSON, not an object, oversize"
	pub -m "$(cmd m-forged "$("$JWT" sign "$T/other.key" "$(claims m-forged)")")"
	pub -m "$(cmd m-expired "$("$JWT" sign "$T/cmd.key" "$(claims m-expired '.iat = "@now-100" | .exp = "@now-1"')")")"
	pub -m "$(cmd m-other "$("$JWT" sign "$T/cmd.key" "$(claims m-other '.sub = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"')")")"
	pub -m '{"id": "m-unsigned", "action": "unlock", "args": {}}'
	pub -m 'not json {'
	pub -m '[1, 2]'
	"$CW_PYTHON" -c 'print("{\"id\": \"m-big\", \"pad\": \"" + "a" * 17000 + "\"}")' >"$T/big.json"
	pub -f "$T/big.json"
	wait_until 5 logged 'reason=oversize' || fail "oversize not refused"
	wait_until 5 logged 'command=m-unsigned reason=unsigned via=mqtt' || fail "unsigned not refused"
	logged 'command=m-forged reason=bad_signature via=mqtt' || fail "forged not refused"
	logged 'command=m-expired reason=expired via=mqtt' || fail "expired not refused"
	logged 'command=m-other reason=wrong_device via=mqtt' || fail "other device not refused"
	logged 'event=cloud.mqtt_refused reason=not_json' || fail "garbage not refused"
	logged 'event=cloud.mqtt_refused reason=not_an_object' || fail "array not refused"
	for id in m-forged m-expired m-other m-unsigned; do
		[ "$(grep -c "event=cloud.command_refused command=$id " "$T/mq-driver.log")" = 1 ] || fail "$id not logged once"
	done
	run_is mq 1 || fail "a refused command ran"
	[ "$(st .errors mq)" = 0 ] || fail "error-level log lines"

	note "killed uncleanly: the Last Will leaves offline retained"
	kill -KILL "$DRIVER_PID"
	wait "$DRIVER_PID" 2>/dev/null || true
	DRIVER_PID=
	wait_until 5 status_is offline || fail "no Last Will: $(status_msg)"
	status_msg | jq -e 'has("at") | not' >/dev/null || fail "not the Last Will: $(status_msg)"

	note "restarted (same cloud.json, persistent session): online again"
	mv "$T/mq-driver.log" "$T/mq1-driver.log"
	# heartbeat_s 1: the loop wakes often enough for the 3 s token's rotations
	DRIVER_BG=1 driver mq --heartbeat-s 1 --seconds 60
	wait_until 10 mq_is mq connected || fail "mqtt state after restart $(st .mqtt mq)"
	wait_until 5 status_is online || fail "not online after restart: $(status_msg)"

	note "a rotation brings a new broker password: the link reconnects with it, cloud.json keeps it"
	local pass2=dev-pass2-$RANDOM$RANDOM
	broker_user "$DEV" "$pass2"
	mqtt_json "$pass2"
	wait_until 10 logged 'event=cloud.mqtt_config_changed' || fail "the new mqtt_config was not taken"
	connects() { [ "$(grep -c 'event=mqtt.connected' "$T/mq-driver.log")" -ge "$1" ]; }
	wait_until 10 connects 2 || fail "not connected again with the new password"
	# the driver writes its status file every 100 ms: the log line can come first
	wait_until 5 mq_is mq connected || fail "mqtt state $(st .mqtt mq) after the new password"
	[ "$(jq -r .mqtt.password "$T/mq/cloud.json")" = "$pass2" ] || fail "cloud.json does not hold the new password"
	[ "$(jq .rotations <<<"$(stub_state)")" -ge 2 ] || fail "rotations"
	DEVPASS="$DEVPASS $pass2"
	pub -m "$(cmd m-after "$("$JWT" sign "$T/cmd.key" "$(claims m-after)")")"
	wait_until 5 run_is mq 1 || fail "no command after the reconnect"

	note "a clean stop publishes offline"
	kill -TERM "$DRIVER_PID"
	wait "$DRIVER_PID" || fail "driver exit status"
	DRIVER_PID=
	status_msg | jq -e '.status == "offline" and (.at | test("Z$"))' >/dev/null || fail "clean stop: $(status_msg)"
	[ "$(jq .registrations <<<"$(stub_state)")" = 1 ] || fail "registered again"

	note "broker down: the link is disconnected, the heartbeat still delivers commands"
	broker_kill
	mkdir -p "$T/hb"
	cp "$T/mq/cloud.json" "$T/hb/"
	cmd m-hb "$("$JWT" sign "$T/cmd.key" "$(claims m-hb)")" | jq -s . >"$T/cmds.json"
	driver hb --heartbeat-s 1 --until command --seconds 5 || true
	note "stopped with the broker down: $(grep -o 'free_ms=[0-9]*' "$T/hb-driver.log")"
	[ "$(sed -n 's/^free_ms=//p' "$T/hb-driver.log")" -lt 1000 ] || fail "cw_syncer_free waited for the broker"
	[ "$(st .commands hb)" = 1 ] || fail "heartbeat delivery with the broker down: $(cat "$T/hb/status.json")"
	[ "$(st .mqtt hb)" = disconnected ] || fail "mqtt state $(st .mqtt hb) with the broker down"
	grep -q 'event=cloud.command command=m-hb action=unlock via=heartbeat' "$T/hb-driver.log" || fail "no via=heartbeat log"
	[ "$(st .errors hb)" = 0 ] || fail "error-level log lines with the broker down"

	note "secrets: neither the broker password nor a command token is logged"
	for p in $DEVPASS; do
		! grep -qF "$p" "$T"/*-driver.log || fail "broker password in a log"
	done
	! grep -qF "$good" "$T"/*-driver.log || fail "command token in a log"
	stub_stop
}

phase_secrets() {
	note "secrets: the device token is never logged"
	tok=$(jq -r .device_token "$T/drain/cloud.json")
	! grep -qF "$tok" "$T"/*.log || fail "device token in a log"
	! grep -q 'stub-code' "$T"/*-driver.log || fail "enrollment code in a log"
}

case $GROUP in
drain) phase_drain; phase_live; phase_secrets ;;
protocol) phase_c409; phase_gap; phase_ahead; phase_save; phase_refused; phase_bad; phase_big; phase_hang ;;
commands) phase_commands ;;
mqtt) phase_mqtt ;;
*) fail "unknown group $GROUP" ;;
esac
echo ok
