#!/usr/bin/env bash
# The kiosk page end to end in headless chromium (test/kiosk/e2e.mjs)
# against the real cartwise-edge serving web/kiosk from the source tree, its
# SMS codes written to a file (the "log" provider), and cartwise-simlock (one
# Modbus board, 4 carts). Screenshots go to
# <build>/meson-logs/kiosk-screens/e2e/ (docs/KIOSK.md).
# Needs test/kiosk/node_modules: scripts/test runs `npm ci` there.
. "$(dirname "$0")/../integration/lib.sh"
K=$CW_SOURCE_DIR/test/kiosk
command -v node >/dev/null || fail "node missing (scripts/test installs nodejs)"
[ -d "$K/node_modules/playwright-core" ] || fail "playwright-core missing: run 'npm ci' in test/kiosk (scripts/test does)"

PIN=2468
# The staff PIN's Argon2id hash, as cartwisectl pin-hash makes it (libsodium's
# crypto_pwhash_str; the smallest cost: this is a test).
PIN_HASH=$("$CW_PYTHON" - "$PIN" <<'PY'
import ctypes, ctypes.util, sys
so = ctypes.CDLL(ctypes.util.find_library('sodium') or 'libsodium.so.23')
assert so.sodium_init() >= 0
out = ctypes.create_string_buffer(128)
pin = sys.argv[1].encode()
rc = so.crypto_pwhash_str(out, pin, ctypes.c_ulonglong(len(pin)),
                          ctypes.c_ulonglong(so.crypto_pwhash_opslimit_min()),
                          ctypes.c_size_t(so.crypto_pwhash_memlimit_min()))
assert rc == 0
print(out.value.decode())
PY
)
[[ $PIN_HASH == '$argon2id$'* ]] || fail "no Argon2id hash of the PIN: $PIN_HASH"

sim_start bus0 modbus --board 1:4
# a wider answer window than the 50 ms default: this test is about the page,
# and in a CI run with two chromium tests beside it the edge once missed an
# answer the simulator had sent (all 532 answered): the unlock failed
buses=$(jq -n --arg port "$T/bus0.tty" \
	'[{name: "bus0", port: $port, protocol: "modbus", response_timeout_ms: 300, retries: 2,
	   boards: [{address: 1, locks: 4}]}]')
# the page from the source tree; codes to a file (the "log" SMS provider)
kiosk=$(jq -n --arg root "$CW_SOURCE_DIR/web/kiosk" --arg h "$PIN_HASH" --arg sms "$T/sms.log" \
	'{kiosk: {web_root: $root, staff: [{id: "staff-1", name: "Test Staff", pin_hash: $h}]},
	  sms: {provider: "log", production: false, log: {file: $sms}}}')
edge_config "$T/edge.json" "$buses" "$kiosk"
edge_start
wait_until 10 cart_is 4 available || fail "carts not ready"

SHOTS=$B/meson-logs/kiosk-screens/e2e
rm -rf "$SHOTS"
note "chromium against http://127.0.0.1:$API_PORT/ (screenshots: $SHOTS)"
KIOSK_BASE="http://127.0.0.1:$API_PORT" SIM_SOCK="$T/bus0.sock" ADMIN_TOKEN=$TOKEN SMS_LOG="$T/sms.log" \
	BRANCH=$BRANCH STAFF_PIN=$PIN SHOTS_DIR=$SHOTS \
	node "$K/e2e.mjs" || fail "the browser test failed (screenshots so far: $SHOTS)"

note "the daemon logged every page request, never the PIN or a token"
grep -q 'method=GET path=/ status=200' "$T/edge.log" || fail "no log line for the page"
grep -q 'path=/kiosk.js status=200' "$T/edge.log" || fail "no log line for kiosk.js"
! grep -q "$PIN_HASH" "$T/edge.log" || fail "the PIN hash is in the log"
! grep -Eq 'eyJ[A-Za-z0-9_-]{10,}' "$T/edge.log" || fail "a token is in the log"
for code in $(grep -oE '[0-9]{6}' "$T/sms.log" | sort -u); do
	! grep -q "$code" "$T/edge.log" || fail "an SMS code is in the daemon log"
done
check_logs
edge_stop
note "ok"
