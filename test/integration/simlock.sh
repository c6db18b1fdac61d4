#!/usr/bin/env bash
# simlock.sh - cartwise-simlock end to end: CLI contract, pty link, control
# protocol (stdin and Unix socket), a few raw frames of both protocols over
# the pty, clean exit. Run by meson with CW_BUILD_DIR set; exits 77 (skip)
# when socat is missing.
set -u

BUILD=${CW_BUILD_DIR:?CW_BUILD_DIR not set}
SIM="$BUILD/src/simlock/cartwise-simlock"
command -v socat >/dev/null || { echo "socat missing: skip"; exit 77; }
[ -x "$SIM" ] || { echo "no simulator at $SIM"; exit 1; }

TMP=$(mktemp -d /tmp/cw-simlock.XXXXXX)
SIM_PID=
FAILS=0
cleanup() {
	[ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }

# check NAME CMD... : passes when CMD succeeds.
check() {
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name"; fi
}

# expect NAME ACTUAL EXPECTED
expect() {
	if [ "$2" == "$3" ]; then pass "$1"; else fail "$1: got '$2', want '$3'"; fi
}

# ctl CMD... : one command over the control socket, prints the answer line.
ctl() { printf '%s\n' "$*" | socat -t 2 - "UNIX-CONNECT:$TMP/ctl" 2>/dev/null; }

# wire HEX : writes the bytes to the link, prints the hex of what comes back
# within 0.2 s (the simulator runs with --no-pace here).
wire() {
	local esc
	esc=$(printf '%s' "$1" | sed 's/../\\x&/g')
	printf '%b' "$esc" | socat -t 0.2 - "FILE:$TMP/bus,raw,echo=0" 2>/dev/null | od -An -v -tx1 | tr -d ' \n'
}

# start PROTO ARGS... : starts the simulator on $TMP/bus with --control.
start() {
	local proto=$1
	shift
	rm -f "$TMP/out" "$TMP/err"
	"$SIM" --protocol "$proto" --link "$TMP/bus" --control "$TMP/ctl" "$@" \
		</dev/null >"$TMP/out" 2>"$TMP/err" &
	SIM_PID=$!
	for _ in $(seq 100); do
		grep -q '^ready ' "$TMP/out" 2>/dev/null && return 0
		sleep 0.05
	done
	fail "simulator ($proto) did not print ready"; cat "$TMP/err"
	return 1
}

# stop : SIGTERM, expects exit 0 and the link and socket removed.
stop() {
	kill -TERM "$SIM_PID"
	wait "$SIM_PID"
	expect "exit status after SIGTERM" "$?" 0
	SIM_PID=
	check "link removed" test ! -L "$TMP/bus" -a ! -e "$TMP/bus"
	check "control socket removed" test ! -e "$TMP/ctl"
	grep -q 'level=error' "$TMP/err" && { fail "error logged"; grep 'level=error' "$TMP/err"; }
	return 0
}

# ---- CLI contract ----
"$SIM" --help >"$TMP/help"
check "--help" grep -q -- '--protocol modbus|kerong' "$TMP/help"
for bad in "--protocol foo --link $TMP/x" "--link $TMP/x" "--protocol modbus" \
	"--protocol kerong --link $TMP/x --board 16" "--protocol modbus --link $TMP/x --board 0" \
	"--protocol modbus --link $TMP/x --board 1:33" "--protocol kerong --link $TMP/x --locks 17" \
	"--protocol modbus --link $TMP/x --board 1 --board 1" "--protocol modbus --link $TMP/x --baud x" \
	"--protocol modbus --link $TMP/x --bogus"; do
	# shellcheck disable=SC2086
	"$SIM" $bad </dev/null >/dev/null 2>"$TMP/usage"
	rc=$?
	expect "bad args exit 2: $bad" "$rc" 2
	[ -s "$TMP/usage" ] || fail "no message for: $bad"
done
touch "$TMP/plainfile"
"$SIM" --protocol modbus --link "$TMP/plainfile" </dev/null >/dev/null 2>&1
expect "refuses to replace a regular file" "$?" 2

# ---- Modbus ----
ln -s /nonexistent "$TMP/bus" # a stale symlink is replaced
start modbus --board 1 --board 7:8 --no-pace || exit 1
line=$(head -1 "$TMP/out")
pty=$(readlink "$TMP/bus")
expect "ready line" "$line" "ready link=$TMP/bus pty=$pty"
case "$pty" in /dev/pts/*) pass "link points at a pty" ;; *) fail "link target $pty" ;; esac

expect "board 1 initial" "$(ctl board 1)" "ok hook=0xffff present=0xffff"
expect "board 7 initial (8 locks)" "$(ctl board 7)" "ok hook=0xff present=0xff"
expect "unknown board" "$(ctl board 2)" "err unknown_board"
expect "unknown lock" "$(ctl state 1 16)" "err unknown_lock"
expect "bad number" "$(ctl state 1 x)" "err unknown_lock"
expect "take while locked" "$(ctl take 1 0)" "err locked"
expect "dock while occupied" "$(ctl dock 1 0)" "err occupied"
expect "unknown command" "$(ctl frobnicate | cut -d' ' -f1-2)" "err unknown_command"
expect "bad fault" "$(ctl fault silent 1 maybe | cut -d' ' -f1-2)" "err usage:"

# FC02 read of all 32 inputs of board 1: 16 hooks closed, 16 carts present.
expect "FC02 all inputs" "$(wire 01020000002079d2)" "010204fffffffffa76"
# FC05 coil 3 on releases lock 3 (reply echoes the request).
expect "FC05 release" "$(wire 01050003ff007c3a)" "01050003ff007c3a"
expect "state after release" "$(ctl state 1 3)" "ok present=1 hook=open releases=1"
expect "FC02 shows hook 3 open" "$(wire 01020000002079d2)" "010204f7fffffff816"
expect "take after release" "$(ctl take 1 3)" "ok"
expect "take twice" "$(ctl take 1 3)" "err empty"
expect "FC02 shows slot 3 empty" "$(wire 01020000002079d2)" "010204f7fff7ffffd6"
expect "dock" "$(ctl dock 1 3)" "ok"
expect "state after dock" "$(ctl state 1 3)" "ok present=1 hook=closed releases=1"
expect "bad CRC: no answer" "$(wire 01020000002079d3)" ""
expect "foreign address: no answer" "$(wire 02020000002079d2)" ""

expect "fault silent" "$(ctl fault silent 1 on)" "ok"
expect "silent board" "$(wire 01020000002079d2)" ""
ctl fault silent 1 off >/dev/null
expect "fault crc" "$(ctl fault crc 1 on)" "ok"
expect "crc fault flips the CRC" "$(wire 01020000002079d2)" "010204fffffffffa89"
ctl fault crc 1 off >/dev/null
ctl fault zero on >/dev/null
expect "zero fault" "$(wire 01020000002079d2)" "00010204fffffffffa76"
ctl fault zero off >/dev/null
ctl fault dup 1 on >/dev/null
got=$(wire 01020000002079d2)
check "dup garbles the reply ($got)" test -n "$got" -a "${got:0:2}" != "01"
ctl fault dup 1 off >/dev/null
expect "fault stuck" "$(ctl fault stuck 1 5 on)" "ok"
wire 01050005ff009c3b >/dev/null
expect "stuck lock counts the release, stays closed" "$(ctl state 1 5)" "ok present=1 hook=closed releases=1"
expect "empty" "$(ctl empty 1 6)" "ok"
expect "state after empty" "$(ctl state 1 6)" "ok present=0 hook=open releases=0"
expect "fault slow" "$(ctl fault slow 1 100)" "ok"
t0=$(date +%s%N); wire 01020000002079d2 >/dev/null; t1=$(date +%s%N)
check "slow board waits ($(((t1 - t0) / 1000000)) ms)" test $(((t1 - t0) / 1000000)) -ge 100
ctl fault slow 1 0 >/dev/null
stats=$(ctl stats)
case "$stats" in "ok requests="*" replies="*" releases=2"*) pass "stats ($stats)" ;; *) fail "stats: $stats" ;; esac
# several clients at once
( for _ in 1 2 3 4 5; do ctl board 7; done ) >"$TMP/c1" &
c1=$!
( for _ in 1 2 3 4 5; do ctl board 7; done ) >"$TMP/c2" &
c2=$!
wait "$c1" "$c2"
expect "concurrent clients" "$(sort -u "$TMP/c1" "$TMP/c2")" "ok hook=0xff present=0xff"
check "release logged" grep -q 'level=info event=sim.release board=1 lock=3' "$TMP/err"
stop

# ---- Kerong ----
start kerong --board 0 --board 2:8 --no-pace --relatch-ms 600 || exit 1
expect "kerong board 2 initial" "$(ctl board 2)" "ok hook=0xff present=0xff"
expect "kerong address range" "$(ctl board 16)" "err unknown_board"
# the example frame of the original system: unlock lock 0 on board 0
expect "0x31 unlock example" "$(wire 0200310336)" "020035feffffff0335"
expect "state after 0x31" "$(ctl state 0 0)" "ok present=1 hook=open releases=1"
sleep 0.7
expect "relatch closes an untaken cart" "$(ctl state 0 0)" "ok present=1 hook=closed releases=1"
expect "0x32 status all, board 2" "$(wire 0220320357)" "022035ff00ff000358"
expect "0x30 status one echoes the lock" "$(wire 0223300358)" "022335ff00ff00035b"
expect "leading 0x00 and bad SUM ignored" "$(wire 000200310337)" ""
expect "0x37 set unlock time" "$(wire 0200370a0346)" "0200370a0346"
expect "0x38 read unlock time" "$(wire 02003800033d)" "0200380a0347"
expect "lock beyond the board: no answer" "$(wire 022931035f)" ""
ctl fault crc 0 on >/dev/null
expect "kerong crc fault" "$(wire 0200320337)" "020035ffffffff03c9"
ctl fault crc 0 off >/dev/null
ctl fault silent 2 on >/dev/null
expect "kerong silent board" "$(wire 0220320357)" ""
ctl fault silent 2 off >/dev/null
ctl fault dup 0 on >/dev/null
got=$(wire 0200320337)
case "$got" in "" | 02*) fail "kerong dup: got '$got'" ;; *) pass "kerong dup garbles ($got)" ;; esac
ctl fault dup 0 off >/dev/null
# stdin EOF did not stop it; quit over the socket does.
expect "quit" "$(ctl quit)" "ok"
wait "$SIM_PID"
expect "exit status after quit" "$?" 0
SIM_PID=
check "link removed after quit" test ! -L "$TMP/bus"

# ---- stdin control and pacing ----
coproc SIMCO { "$SIM" --protocol kerong --link "$TMP/bus2" 2>"$TMP/err2"; }
read -r -t 5 line <&"${SIMCO[0]}"
case "$line" in "ready link=$TMP/bus2 pty=/dev/pts/"*) pass "ready (stdin mode)" ;; *) fail "ready: '$line'" ;; esac
echo "board 0" >&"${SIMCO[1]}"
read -r -t 5 line <&"${SIMCO[0]}"
expect "stdin command" "$line" "ok hook=0xffff present=0xffff"
# Paced at 19200 baud: 5-byte request + 3.5 chars + 9-byte reply = 17.5 chars = 9.1 ms.
t0=$(date +%s%N)
got=$(printf '\x02\x00\x32\x03\x37' | socat -t 0.2 - "FILE:$TMP/bus2,raw,echo=0" | od -An -tx1 | tr -d ' \n')
t1=$(date +%s%N)
expect "paced reply" "$got" "020035ffffffff0336"
ms=$(((t1 - t0) / 1000000 - 200))
check "pacing takes wire time (~$ms ms + 200 ms socat wait)" test "$ms" -ge 8
echo quit >&"${SIMCO[1]}"
read -r -t 5 line <&"${SIMCO[0]}"
expect "stdin quit" "$line" "ok"
wait "$SIMCO_PID" 2>/dev/null

if [ "$FAILS" -ne 0 ]; then
	echo "$FAILS check(s) failed"
	exit 1
fi
echo "all simlock checks passed"
