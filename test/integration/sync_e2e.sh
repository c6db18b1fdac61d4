#!/usr/bin/env bash
# End to end, with real processes: cartwise-cloud (sqlite | postgres, the
# first argument), cartwise-simlock and cartwise-edge with a cloud section.
#  1. the edge enrolls itself, its carts and a whole rental reach the cloud;
#  2. the cloud goes away while the edge keeps working (CW_SYNC_ENTRIES
#     outbox entries, default 10000); when it is back, the cloud's rows equal
#     the edge's: zero lost, zero duplicated;
#  3. a manager's "unlock cart" on the cloud API reaches the lock through the
#     heartbeat, the lock opens once, and the command reads "succeeded".
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?usage: $0 sqlite|postgres}
ENTRIES=${CW_SYNC_ENTRIES:-10000}
# the edge logs the cloud's absence in part 2 (warn) and the cloud nothing
ALLOWED_ERRORS='^$'

. "$(dirname "$0")/cloud_lib.sh"
cloud_world

# ---- the edge, with its cloud section ----
edge_with_cloud 02:e2:e0:00:00:01
cloud_state() { "$CTL" --config "$T/edge.json" --json status | jq -r '.cloud.state'; }
outbox_empty() { [ "$("$CTL" --config "$T/edge.json" --json status | jq -r '.cloud.outbox_depth')" = 0 ]; }
state_is() { [ "$(cloud_state)" = "$1" ]; }

note "1. enrollment, carts and a rental reach the cloud"
wait_until 30 state_is ok || fail "the edge did not enroll: state $(cloud_state)"
[ "$(stat -c %a "$T/data/cloud.json")" = 600 ] || fail "cloud.json is not 0600"
DEV=$(jq -r .device_id "$T/data/cloud.json")
capi GET "/api/devices/$DEV/status"; cexpect 200
[ "$(cjq .online)" = true ] || fail "the device is not online in the cloud: $(cat "$T/cresp.json")"
api POST "$(branch /carts/assign)" '{"phone":"0541231234"}'; expect_code 201
RID=$(jqr .rental_id); CART=$(jqr .cart_number)
sim bus0 take 1 $((CART - 1)) >/dev/null
wait_until 5 cart_has "$CART" cart_present false || fail "cart not taken"
api POST "$(branch /carts/return)" '{"phone":"0541231234"}'; expect_code 200
SLOT=$(jqr .slot_number)
sim bus0 dock 1 $((SLOT - 1)) >/dev/null
wait_until 5 cart_is "$SLOT" available || fail "the return did not close the rental"
wait_until 30 outbox_empty || fail "the outbox did not drain"
capi GET "/api/branches/$CBRANCH/rentals/history?limit=10"; cexpect 200
[ "$(cjq "[.items[] | select(.id == \"$RID\")][0].status")" = returned ] ||
	fail "the rental is not returned in the cloud: $(cat "$T/cresp.json")"
capi GET "/api/branches/$CBRANCH/carts"; cexpect 200
[ "$(cjq '.items | length')" = 4 ] || fail "the cloud has $(cjq '.items | length') carts, not 4"
[ "$(cjq "[.items[] | select(.device_id == \"$DEV\")] | length")" = 4 ] || fail "carts without their device"

note "2. the cloud goes away; the edge keeps working ($ENTRIES outbox entries)"
cloud_stop
before=$(edge_sql "SELECT max(seq) FROM outbox")
# maintenance on/off of cart 4: each change is a cart snapshot and a telemetry
# event; one curl process, keep-alive, many requests
: >"$T/many.curl"
for i in $(seq $((ENTRIES / 4 + 1))); do
	for v in true false; do
		printf 'url = "http://127.0.0.1:%s/api/admin/carts/4/maintenance"\nrequest = "POST"\nheader = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\ndata = "{\\"on\\":%s}"\noutput = "/dev/null"\nnext\n' \
			"$API_PORT" "$TOKEN" "$v" >>"$T/many.curl"
	done
done
sed -i '$ d' "$T/many.curl" # no "next" after the last request
t0=$SECONDS
curl -s -K "$T/many.curl" || fail "the maintenance requests failed"
after=$(edge_sql "SELECT max(seq) FROM outbox")
[ $((after - before)) -ge "$ENTRIES" ] || fail "only $((after - before)) outbox entries were written"
note "   $((after - before)) entries in $((SECONDS - t0)) s while the cloud was down"
api POST "$(branch /carts/assign)" '{"phone":"0549876543"}'; expect_code 201 # rentals go on
RID2=$(jqr .rental_id)
outbox_empty && fail "the outbox is empty while the cloud is down"

note "   the cloud is back: the backlog drains"
cloud_start
t0=$SECONDS
wait_until 120 outbox_empty || fail "the backlog did not drain in 120 s"
note "   drained in $((SECONDS - t0)) s (including the syncer's backoff)"
edge_rows=$(edge_sql "SELECT count(*) FROM outbox WHERE kind = 'telemetry'")
db_count() { # SQL on the cloud database
	if [ "$BACKEND" = sqlite ]; then sqlite3 -readonly "$T/cloud.db" "$1"; else psql -X -qtA -d "$PGDB" -c "$1"; fi
}
cloud_rows=$(db_count "SELECT count(*) FROM telemetry WHERE device_id = '$DEV' AND seq IS NOT NULL")
cloud_distinct=$(db_count "SELECT count(DISTINCT seq) FROM telemetry WHERE device_id = '$DEV'")
[ "$edge_rows" = "$cloud_rows" ] || fail "telemetry: edge $edge_rows, cloud $cloud_rows"
[ "$cloud_rows" = "$cloud_distinct" ] || fail "duplicate telemetry in the cloud"
hw=$(db_count "SELECT high_water FROM device_sync WHERE device_id = '$DEV'")
[ "$hw" = "$(edge_sql "SELECT max(seq) FROM outbox")" ] || fail "high water $hw is not the edge's last seq"
capi GET "/api/branches/$CBRANCH/rentals/active"; cexpect 200
[ "$(cjq "[.items[] | select(.id == \"$RID2\")] | length")" = 1 ] || fail "the offline rental is not in the cloud"

note "3. unlock from the cloud: API -> heartbeat -> edge -> lock -> result"
# a free cart, docked and locked
target=""
for n in 1 2 3; do
	if [ "$(cart_field "$n" status)" = available ]; then target=$n; break; fi
done
[ -n "$target" ] || fail "no available cart for the unlock"
capi GET "/api/branches/$CBRANCH/carts"; cexpect 200
CID=$(cjq ".items[] | select(.cart_number == $target) | .id")
capi POST "/api/branches/$CBRANCH/carts/$CID/unlock" '{}'; cexpect 202
CMD=$(cjq '.command_id // .id')
hook_open() { sim bus0 state 1 $((target - 1)) | grep -q hook=open; }
wait_until 20 hook_open || fail "the lock of cart $target did not open"
cmd_done() { capi GET "/api/commands/$CMD"; [ "$(cjq .state)" = succeeded ]; }
wait_until 30 cmd_done || fail "the command reads $(cjq .state), not succeeded"
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
