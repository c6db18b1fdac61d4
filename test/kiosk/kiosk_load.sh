#!/usr/bin/env bash
# 20 kiosk sessions at once against one edge (issue 5 item 5): each one
# requests a code, reads it from the fake SMS gateway, verifies it, rents with
# its customer token, takes the cart out (simulator), returns it at the kiosk,
# docks it in the slot it was sent to, and polls the receipt. Asserts no error
# anywhere and every rental closed; prints p50/p95 of every step.
#
# The sessions come from 4 kiosk addresses (127.0.6.1-4, 5 customers each);
# kiosk.otp.max_requests_per_kiosk_hour is set to 60 (the default) in the
# test config: a session makes 2 counted requests (code, return), 10 per
# kiosk. Two buses of 12 locks each (24 carts, 20 rented at once), so the
# unlocks of the 20 sessions share two serial lines like in a store.
. "$(dirname "$0")/lib.sh"
N=${KIOSK_SESSIONS:-20}

sms_start
sim_start bus0 modbus --board 1:12
sim_start bus1 modbus --board 1:12
kiosk_config "$T/edge.json" "[
  {\"name\":\"bus0\",\"port\":\"$T/bus0.tty\",\"protocol\":\"modbus\",\"boards\":[{\"address\":1,\"locks\":12}]},
  {\"name\":\"bus1\",\"port\":\"$T/bus1.tty\",\"protocol\":\"modbus\",\"boards\":[{\"address\":1,\"locks\":12}]}]" \
	'{"kiosk":{"otp":{"max_requests_per_kiosk_hour":60}}}'
edge_start
wait_until 15 cart_is 24 available || fail "carts not ready"
api GET "$(branch /carts)"; expect_code 200
# cart number -> "SIMULATOR LOCK_INDEX" (bus index 0/1 -> bus0/bus1)
jqr '.[] | "\(.cart_number) bus\(.bus) \(.lock)"' >"$T/carts.map"
[ "$(wc -l <"$T/carts.map")" = 24 ] || fail "carts: $(cat "$T/carts.map")"
[ "$(jqr '[.[] | select(.status == "available")] | length')" = 24 ] || fail "not 24 free carts"

ms() { echo $(($(date +%s%N) / 1000000)); }
# one session: writes "step ms" lines to $T/s$i.times and "ok" or the failure to $T/s$i.res
session() {
	local i=$1 ip phone local_ phone_e164 t0 t code tok rid cart slot where n r
	ip=127.0.6.$(( (i - 1) % 4 + 1 ))
	local_=$(printf '0581%06d' "$i"); phone_e164="+972${local_:1}"
	sfail() { echo "FAIL session $i: $*" >"$T/s$i.res"; exit 1; }
	step() { echo "$1 $(($(ms) - t0))" >>"$T/s$i.times"; t0=$(ms); }
	s_api() { # METHOD PATH [BODY]: sets r (status) and the body in $T/s$i.json
		local args=(-s -o "$T/s$i.json" -w '%{http_code}' --interface "$ip" -X "$1"
			"http://127.0.0.1:$API_PORT$2")
		[ -z "$tok" ] || args+=(-H "Authorization: Bearer $tok")
		[ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
		r=$(curl "${args[@]}") || r=000
	}
	sj() { jq -r "$1" "$T/s$i.json"; }
	tok=
	t0=$(ms)
	s_api POST /api/auth/otp/request "{\"phone\":\"$local_\"}"
	[ "$r" = 202 ] || sfail "otp/request $r $(cat "$T/s$i.json")"
	step request
	n=0
	until [ "$(jq -r --arg to "$phone_e164" 'select(.to == $to) | .text' "$SMS_OUT" | wc -l)" = 1 ]; do
		n=$((n + 1)); [ $n -lt 200 ] || sfail "no SMS"; sleep 0.05
	done
	code=$(code_in "$(jq -r --arg to "$phone_e164" 'select(.to == $to) | .text' "$SMS_OUT")") ||
		sfail "no code in the SMS"
	step sms
	s_api POST /api/auth/otp/verify "{\"phone\":\"$local_\",\"code\":\"$code\"}"
	[ "$r" = 200 ] || sfail "otp/verify $r $(cat "$T/s$i.json")"
	tok=$(sj .token)
	step verify
	s_api POST "/api/branches/$BRANCH/carts/assign" '{}'
	[ "$r" = 201 ] || sfail "assign $r $(cat "$T/s$i.json")"
	rid=$(sj .rental_id); cart=$(sj .cart_number)
	step assign
	where=$(awk -v c="$cart" '$1 == c { print $2, $3 }' "$T/carts.map")
	sim ${where% *} take 1 "${where#* }" >/dev/null || sfail "take cart $cart"
	n=0
	until [ "$(curl -s -H "Authorization: Bearer $TOKEN" \
		"http://127.0.0.1:$API_PORT/api/branches/$BRANCH/carts/$cart" | jq -r .cart_present)" = false ]; do
		n=$((n + 1)); [ $n -lt 200 ] || sfail "cart $cart never seen taken"; sleep 0.05
	done
	step take
	tok=
	s_api POST /api/kiosk/return "{\"phone\":\"$local_\"}"
	[ "$r" = 200 ] || sfail "return $r $(cat "$T/s$i.json")"
	[ "$(sj .rental_id)" = "$rid" ] || sfail "return named rental $(sj .rental_id), not $rid"
	slot=$(sj .slot_number)
	step return
	where=$(awk -v c="$slot" '$1 == c { print $2, $3 }' "$T/carts.map")
	sim ${where% *} dock 1 "${where#* }" >/dev/null || sfail "dock in slot $slot"
	n=0
	while :; do
		s_api GET "/api/kiosk/rentals/$rid"
		[ "$r" = 200 ] || sfail "receipt $r $(cat "$T/s$i.json")"
		[ "$(sj .state)" = returned ] && break
		n=$((n + 1)); [ $n -lt 200 ] || sfail "rental $rid still $(sj .state)"; sleep 0.05
	done
	[ "$(sj .duration_s)" -ge 0 ] && [ "$(sj .ended_at)" != null ] || sfail "receipt $(cat "$T/s$i.json")"
	step receipt
	echo ok >"$T/s$i.res"
}

note "$N sessions at once"
start=$(ms)
pids=()
for i in $(seq "$N"); do
	(session "$i") &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
wall=$(($(ms) - start))

bad=0
for i in $(seq "$N"); do
	res=$(cat "$T/s$i.res" 2>/dev/null || echo "FAIL session $i: no result")
	[ "$res" = ok ] || { echo "$res" >&2; bad=$((bad + 1)); }
done
[ $bad = 0 ] || fail "$bad of $N sessions failed"

note "$N sessions in $wall ms; per step (ms):"
cat "$T"/s*.times | awk '{ print $1, $2 }' | sort -k1,1 -k2,2n >"$T/times.sorted"
printf '%-8s %5s %5s %5s %5s\n' step n p50 p95 max
for s in request sms verify assign take return receipt; do
	awk -v s="$s" '$1 == s { v[n++] = $2 } END {
		if (n == 0) exit 1
		p50 = v[int((n - 1) * 0.50)]; p95 = v[int((n - 1) * 0.95 + 0.5)]
		printf "%-8s %5d %5d %5d %5d\n", s, n, p50, p95, v[n - 1] }' "$T/times.sorted" ||
		fail "no timings of step $s"
done

note "every rental closed, every cart back, one text per session"
[ "$(edge_sql "SELECT count(*) FROM rentals WHERE status = 'returned'")" = "$N" ] ||
	fail "rentals: $(edge_sql "SELECT status, count(*) FROM rentals GROUP BY status")"
[ "$(edge_sql "SELECT count(*) FROM rentals WHERE status IN ('active', 'overdue')")" = 0 ] ||
	fail "open rentals left"
wait_until 10 cart_is 24 available || fail "cart 24 not available"
api GET "$(branch /carts)"; expect_code 200
[ "$(jqr '[.[] | select(.status == "available" and .cart_present)] | length')" = 24 ] ||
	fail "carts after the run: $(jqr '[.[] | {cart_number, status, cart_present}]')"
[ "$(wc -l <"$SMS_OUT")" = "$N" ] || fail "$(wc -l <"$SMS_OUT") texts for $N sessions"
check_logs
edge_stop
note "ok"
