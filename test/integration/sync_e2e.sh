#!/usr/bin/env bash
# End to end, with real processes: cartwise-cloud (sqlite | postgres, the
# first argument), cartwise-simlock and cartwise-edge with a cloud section.
#  1. the edge enrolls itself, its carts and a whole rental reach the cloud;
#  2. the cloud goes away while the edge keeps working (CW_SYNC_ENTRIES
#     outbox entries, default 10000: 400 from requests to the edge, the rest
#     copies of its telemetry written by SQL, see outbox_fill_sql); when it
#     is back, the cloud's rows equal the edge's: zero lost, zero duplicated;
#  3. a manager's "unlock cart" on the cloud API reaches the lock through the
#     heartbeat, the lock opens once, and the command reads "succeeded".
. "$(dirname "$0")/lib.sh"
ENTRIES=${CW_SYNC_ENTRIES:-10000}
# the edge logs the cloud's absence in part 2 (warn) and the cloud nothing
ALLOWED_ERRORS='^$'

cloud_init "${1:?usage: $0 sqlite|postgres}"
# retries at most 3 s apart: the drain after the outage is measured, not a
# random wait of up to a minute (cloud.backoff_max_ms)
edge_with_cloud "http://127.0.0.1:$CLOUD_PORT" '{"backoff_max_ms": 3000}'

note "1. enrollment, carts and a rental reach the cloud"
[ "$(stat -c %a "$T/data/cloud.json")" = 600 ] || fail "cloud.json is not 0600"
capi GET "/api/devices/$DEV/status"; cexpect 200
[ "$(cjq .online)" = true ] || fail "the device is not online in the cloud: $(cat "$T/cresp.json")"
rental_round_trip 0541231234
wait_until 30 outbox_empty || fail "the outbox did not drain"
assert_cloud_rental_returned

note "2. the cloud goes away; the edge keeps working ($ENTRIES outbox entries)"
cloud_stop
t0=$SECONDS
# the edge writes some itself (cart snapshots and telemetry); the backlog's
# bulk is copies of its telemetry, written by SQL in one transaction: 10,000
# requests to the daemon took ~30 s of CPU, and the point here is the drain
real=$((ENTRIES < 400 ? ENTRIES : 400))
written=$(outbox_fill "$real")
[ "$written" -ge "$ENTRIES" ] || written=$((written + $(outbox_fill_sql $((ENTRIES - written)))))
note "   $written entries in $((SECONDS - t0)) s while the cloud was down"
api POST "$(branch /carts/assign)" '{"phone":"0549876543"}'; expect_code 201 # rentals go on
RID2=$(jqr .rental_id)
outbox_empty && fail "the outbox is empty while the cloud is down"

note "   the cloud is back: the backlog drains"
cloud_start
t0=$SECONDS
# polled every second: the drain waits for the syncer's backoff (up to 60 s)
WAIT_LONG_PAUSE=1 wait_until 120 outbox_empty || fail "the backlog did not drain in 120 s"
note "   drained in $((SECONDS - t0)) s (including the syncer's backoff)"
assert_synced
# active, or closed as not taken when the drain outlasted take_timeout_s
# (a loaded machine)
rental_in() { capi GET "/api/branches/$CBRANCH/rentals/$1"; cexpect 200
	[ "$(cjq "[.items[] | select(.id == \"$RID2\")] | length")" = 1 ]; }
rental_in active || rental_in 'history?limit=10' || fail "the offline rental is not in the cloud"

note "3. unlock from the cloud: API -> heartbeat -> edge -> lock -> result"
# a free cart, docked and locked
target=""
for n in 1 2 3; do
	if [ "$(cart_field "$n" status)" = available ]; then target=$n; break; fi
done
[ -n "$target" ] || fail "no available cart for the unlock"
cloud_unlock "$target"
hook_open() { sim bus0 state 1 $((target - 1)) | grep -q hook=open; }
wait_until 20 hook_open || fail "the lock of cart $target did not open"
wait_until 30 cmd_state_is succeeded || fail "the command reads $(cmd_state), not succeeded"
# it ran once: one command_log row, and one more heartbeat changes nothing
[ "$(edge_sql "SELECT count(*) FROM command_log WHERE id = '$CMD'")" = 1 ] || fail "command_log"
sleep 6
[ "$(edge_sql "SELECT count(*) FROM outbox WHERE kind = 'command.result' AND entity_id = '$CMD'")" = 1 ] ||
	fail "the command ran more than once"

if grep -q "$ECODE" "$T"/*.log; then fail "the enrollment code is in a log"; fi
check_logs
edge_stop
cloud_stop
note "ok"
