#!/usr/bin/env bash
# The live event stream GET /api/branches/{id}/events (docs/CLOUD.md "Live
# updates"): hello at once; a sync batch of the branch's device gives a
# change with its kinds within 2 s, another branch's gives none; a heartbeat
# gives "devices"; 401 without a token, 404 for a manager of another branch,
# 503 past listen.max_event_streams (1 here); a client that leaves frees its
# place; SIGTERM with a stream open stops at once. PostgreSQL: a second
# instance on the same database hears a change applied through the first
# (LISTEN/NOTIFY), and a killed LISTEN connection comes back with a full
# refresh of the streams.
# One HTTP thread: every request below is served while a stream is open, so
# a stream that held its thread instead of suspending would hang the test.
SYNC_WORLD_EXTRA='{"listen":{"max_event_streams":1,"threads":1}}'
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=sync_lib.sh
. "$(dirname "$0")/sync_lib.sh"

URL_A1=/api/branches/$BR_A1/events

# stream_open NAME TOKEN PATH [PORT]: curl -N in the background, output in
# $T/NAME.sse, headers in $T/NAME.hdr; its pid in STREAM_PID
stream_open() {
	curl -sS -N --max-time 20 -D "$T/$1.hdr" -H "Authorization: Bearer $2" \
		"http://127.0.0.1:${4:-$PORT}$3" >"$T/$1.sse" 2>"$T/$1.err" &
	STREAM_PID=$!
	PIDS+=("$STREAM_PID")
}
has_hello() { grep -q '^event: hello$' "$T/$1.sse"; }
changes() { grep -c '^event: change$' "$T/$1.sse" || true; }
# has_changes NAME N: the stream got N change events or more
has_changes() { [ "$(changes "$1")" -ge "$2" ]; }
# wait_change NAME N: the stream got its Nth change event within 2 s
wait_change() {
	local t0=$EPOCHREALTIME
	wait_until 2 has_changes "$1" "$2" || fail "no change event $2 on $1 within 2 s"
	CHANGE_MS=$(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 ))
}
last_kinds() { grep '^data: {"kinds"' "$T/$1.sse" | tail -1 | sed 's/^data: //' | jq -c .kinds; }

note "no token: 401; a manager of another branch: 404; an unknown branch: 404"
AUTH=; api GET "$URL_A1"; expect_error 401 unauthorized
AUTH=$TOK_MGR_B1; api GET "$URL_A1"; expect_error 404 not_found
AUTH=$TOK_MGR_A1; api GET "/api/branches/$(new_uuid)/events"; expect_error 404 not_found

note "a manager of the branch: hello at once, with the SSE headers"
stream_open s1 "$TOK_MGR_A1" "$URL_A1"
S1_PID=$STREAM_PID
wait_until 2 has_hello s1 || fail "no hello within 2 s: $(cat "$T/s1.sse" "$T/s1.err")"
grep -q "^data: {\"branch_id\":\"$BR_A1\"}$" "$T/s1.sse" || fail "hello data: $(cat "$T/s1.sse")"
grep -qi '^content-type: text/event-stream' "$T/s1.hdr" || fail "content type: $(cat "$T/s1.hdr")"
grep -qi '^cache-control: no-store' "$T/s1.hdr" || fail "cache-control: $(cat "$T/s1.hdr")"
grep -qi '^x-accel-buffering: no' "$T/s1.hdr" || fail "x-accel-buffering: $(cat "$T/s1.hdr")"

note "listen.max_event_streams = 1: a second stream gets 503"
AUTH=$TOK_ADMIN_A; api GET "$URL_A1"; expect_error 503 unavailable

note "a batch of another branch's device: no change on this stream"
CART_B=$(new_uuid)
sync "$DEV_B1" "$DTOK_B1" "$(cart_e 1 cart.created "$CART_B" 1 available 1 1 | batch)"
expect_code 200

note "a batch with a cart and its rental: one change naming carts and rentals"
CART=$(new_uuid); RENTAL=$(new_uuid)
sync "$DEV_A1" "$DTOK_A1" "$( { cart_e 1 cart.created "$CART" 1 rented 1 1
	rental_e 2 rental.started "$RENTAL" "$CART" active +972501234567; } | batch)"
expect_code 200
wait_change s1 1
note "change after ${CHANGE_MS} ms"
[ "$(last_kinds s1)" = '["carts","rentals"]' ] || fail "kinds: $(cat "$T/s1.sse")"
# the B1 batch came first: had it reached this stream, there would be two
sleep 0.3
[ "$(changes s1)" = 1 ] || fail "another branch's batch reached the stream: $(cat "$T/s1.sse")"

note "a heartbeat: devices"
AUTH=$DTOK_A1; api POST "/api/devices/$DEV_A1/heartbeat" '{"status":"online"}'; expect_code 200
wait_change s1 2
[ "$(last_kinds s1)" = '["devices"]' ] || fail "kinds: $(cat "$T/s1.sse")"

if [ "$BACKEND" = postgres ]; then
	note "a second instance on the same database: a change applied through A reaches B"
	PORT_A=$PORT PID_A=$CLOUD_PID
	cloud_config "$T/cloud2.json" '{"listen":{"max_event_streams":1,"threads":1}}'
	"$CLOUD" --config "$T/cloud2.json" >>"$T/cloud2.log" 2>&1 </dev/null &
	PID_B=$!; PIDS+=("$PID_B")
	ready_b() { PORT_B=$(sed -n 's/.*event=cloud.ready .*port=\([0-9]*\).*/\1/p' "$T/cloud2.log" | head -1); [ -n "$PORT_B" ]; }
	wait_until 20 ready_b || fail "the second instance did not start"
	listening_b() { grep -q 'event=store.listening' "$T/cloud2.log"; }
	wait_until 5 listening_b || fail "the second instance does not LISTEN"
	stream_open s2 "$TOK_MGR_A1" "$URL_A1" "$PORT_B"
	wait_until 2 has_hello s2 || fail "no hello from B: $(cat "$T/s2.sse" "$T/s2.err")"
	sync "$DEV_A1" "$DTOK_A1" "$(rental_e 3 rental.returned "$RENTAL" "$CART" returned +972501234567 "$NOW" | batch)"
	expect_code 200
	wait_change s2 1
	note "change on B after ${CHANGE_MS} ms"
	[ "$(last_kinds s2)" = '["carts","rentals"]' ] || fail "kinds on B: $(cat "$T/s2.sse")"
	# A's own stream heard it once, not once more through its own NOTIFY
	wait_change s1 3
	sleep 0.3
	[ "$(changes s1)" = 3 ] || fail "A delivered its own notification twice: $(cat "$T/s1.sse")"
	note "the LISTEN connections are killed: they reconnect, and the streams get every kind"
	n2=$(changes s2)
	db_sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN cartwise_events'" >/dev/null
	wait_until 5 has_changes s2 $((n2 + 1)) || fail "no full refresh after the reconnect"
	[ "$(last_kinds s2)" = '["carts","rentals","devices","commands","telemetry"]' ] ||
		fail "kinds after the reconnect: $(cat "$T/s2.sse")"
	grep -q 'event=store.listening .*reconnect=yes' "$T/cloud2.log" || fail "B did not log its reconnect"
	kill -TERM "$PID_B"
	t0=$SECONDS
	wait "$PID_B" || fail "the second instance exited $? on SIGTERM"
	[ $((SECONDS - t0)) -le 2 ] || fail "the second instance took $((SECONDS - t0)) s to stop"
fi

note "a client that leaves frees its place within a couple of seconds"
kill "$S1_PID"; wait "$S1_PID" 2>/dev/null || true
reopened() {
	stream_open s3 "$TOK_MGR_A1" "$URL_A1"
	wait_until 1 has_hello s3 && return 0
	kill "$STREAM_PID" 2>/dev/null || true
	wait "$STREAM_PID" 2>/dev/null || true
	return 1
}
wait_until 4 reopened || fail "the place of a closed stream was not freed"
S1_PID=$STREAM_PID

note "SIGTERM with a stream open: the stream ends and the cloud stops at once"
t0=$SECONDS
cloud_stop
[ $((SECONDS - t0)) -le 2 ] || fail "cartwise-cloud took $((SECONDS - t0)) s to stop"
wait_until 2 eval '! kill -0 '"$S1_PID"' 2>/dev/null' ||
	fail "the stream did not end with the server"
check_logs
note "ok"
