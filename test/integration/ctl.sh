#!/usr/bin/env bash
# cartwisectl against the running daemon: status, carts, rentals, unlock for
# maintenance, maintenance on/off, a forced return, a bus scan, and
# pin-hash (no daemon needed); the config as packaged (comments, the token in
# api.admin_token_file) and a token file cartwisectl cannot read.
. "$(dirname "$0")/lib.sh"

sim_start bus0 kerong --board 0:4 --board 1:4
edge_config "$T/edge.json" "[{\"name\":\"bus0\",\"port\":\"$T/bus0.tty\",\"protocol\":\"kerong\",
  \"boards\":[{\"address\":0,\"locks\":4},{\"address\":1,\"locks\":4}]}]"
# As packaged: comments in the config, no secret in it (the token is the first
# line of api.admin_token_file, 0640), read by the daemon and by cartwisectl.
printf '%s\nnot part of the token\n' "$TOKEN" >"$T/edge-admin.token"
chmod 0640 "$T/edge-admin.token"
{
	printf '// cartwise-edge, test/integration/ctl.sh\n/* the token is not in here */\n'
	jq --arg f "$T/edge-admin.token" '.api |= (del(.admin_token) + {admin_token_file: $f})' \
		"$T/edge.json"
} >"$T/edge.json.new"
mv "$T/edge.json.new" "$T/edge.json"
grep -q "$TOKEN" "$T/edge.json" && fail "the token is still in the config"
out=$("$EDGE" --config "$T/edge.json" --check-config 2>&1) || fail "--check-config: $out"
grep -q '^config ok: ' <<<"$out" || fail "--check-config: $out"
grep -q "$TOKEN" <<<"$out" && fail "--check-config prints the token: $out"
edge_start
wait_until 10 all_available 8 || fail "carts not ready: $(cat "$T/resp.json")"
ctl() { "$CTL" --config "$T/edge.json" "$@"; }

"$CTL" --help | grep -q status || fail "--help does not list commands"
out=$(ctl status) || fail "status failed: $out"
grep -q bus0 <<<"$out" || fail "status does not show the bus: $out"
grep -qi 'outbox' <<<"$out" || fail "status does not show the outbox depth: $out"
grep -q 'cloud: not configured' <<<"$out" || fail "status does not say the cloud is absent: $out"
[ "$(ctl --json status | jq -r '.cloud')" = null ] || fail "status --json: cloud is not null"
[ "$(ctl --json status | jq -r '.buses[0].boards | length')" = 2 ] || fail "status --json lacks boards"

[ "$(ctl --json carts | jq 'length')" = 8 ] || fail "carts --json"
ctl carts | grep -q available || fail "carts table"

note "maintenance on/off and a maintenance unlock"
ctl maintenance 3 on --note "wheel broken" >/dev/null
cart_is 3 maintenance || fail "maintenance on did not stick"
ctl unlock 3 >/dev/null || fail "maintenance unlock failed"
sim bus0 state 0 2 | grep -q hook=open || fail "cart 3 lock not released by cartwisectl unlock"
# staff pull the cart and push it back, which closes the lock again
sim bus0 take 0 2 >/dev/null
sim bus0 dock 0 2 >/dev/null
ctl maintenance 3 off >/dev/null
wait_until 5 cart_is 3 available || fail "cart 3 not available after maintenance"

note "forced return by staff"
api POST "$(branch /carts/assign)" '{"phone":"0541231234"}'
expect_code 201
RID=$(jqr .rental_id)
ctl rentals | grep -q "$RID" || fail "rentals does not list the active rental"
ctl return "$RID" --note "customer left cart at the door" >/dev/null || fail "forced return failed"
api GET "$(branch "/rentals/history?limit=5")"
st=$(jq -r ".rentals | .[] | select(.id==\"$RID\") | .status" "$T/resp.json")
case "$st" in returned|returned-late) ;; *) fail "forced return left status '$st'";; esac

note "errors come back with the API's message and a non-zero exit"
if out=$(ctl unlock 99 2>&1); then fail "unlock of a missing cart succeeded"; fi
grep -qi 'not found' <<<"$out" || fail "no clear message: $out"
if "$CTL" --url "http://127.0.0.1:$API_PORT" --token wrong-token-wrong-token status >/dev/null 2>&1; then
	fail "a wrong token was accepted"
fi

note "bus scan flags two boards on one address"
sim bus0 fault dup 1 on >/dev/null
out=$(ctl scan bus0 0 3) || fail "scan failed: $out"
grep -E '^ *0 ' <<<"$out" | grep -q ok || fail "scan does not list board 0: $out"
grep -E '^ *1 ' <<<"$out" | grep -qi garbled || fail "scan does not flag address 1: $out"
sim bus0 fault dup 1 off >/dev/null

note "pin-hash: Argon2id (interactive limits) of a PIN from stdin, fresh salt; bad PINs refused"
h1=$(printf '2468\n' | "$CTL" pin-hash) || fail "pin-hash failed"
h2=$(printf '2468' | "$CTL" pin-hash) || fail "pin-hash without a newline failed"
grep -Eq '^\$argon2id\$v=19\$m=65536,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$' <<<"$h1" \
	|| fail "not an Argon2id hash: $h1"
[ "$h1" != "$h2" ] || fail "two hashes of one PIN are equal (no salt?)"
for pin in 123 1234567890123 12a4 ''; do
	if out=$(printf '%s\n' "$pin" | "$CTL" pin-hash 2>&1); then fail "PIN '$pin' accepted: $out"; fi
	grep -q '4-12 digits' <<<"$out" || fail "no clear message for '$pin': $out"
done
"$CTL" pin-hash </dev/null 2>/dev/null && fail "pin-hash with no input succeeded"
"$CTL" --help | grep -q pin-hash || fail "--help does not list pin-hash"

note "a token file cartwisectl cannot read: one line saying what to do"
# as nobody, with the config and a copy of the program where nobody can reach them
chmod 711 "$T"
mkdir -m 755 "$T/pub"
cp "$CTL" "$T/pub/cartwisectl"
printf '%s\n' "$TOKEN" >"$T/pub/root.token"
chmod 0640 "$T/pub/root.token"
sed "s|$T/edge-admin.token|$T/pub/root.token|" "$T/edge.json" >"$T/pub/edge.json"
chmod 644 "$T/pub/edge.json"
if out=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$T/pub/cartwisectl" --config "$T/pub/edge.json" status 2>&1); then
	fail "status ran without the token: $out"
fi
[ "$(wc -l <<<"$out")" = 1 ] || fail "more than one line: $out"
grep -q "$T/pub/root.token" <<<"$out" \
	&& grep -q 'as root or as a member of group cartwise' <<<"$out" \
	|| fail "no clear message: $out"

check_logs
edge_stop
note "ok"
