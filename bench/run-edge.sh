#!/usr/bin/env bash
# run-edge.sh - runs every edge benchmark against a finished build and prints
# one results table (Markdown, ready for docs/BENCHMARKS.md).
#
# usage: bench/run-edge.sh BUILD_DIR
#
# Builds nothing. Benchmark figures come from the optimised, non-sanitizer
# build:   meson setup build-bench --buildtype=release && ninja -C build-bench
#
# Environment (defaults in brackets):
#   CW_BENCH_UNLOCKS       unlocks per protocol in bench_unlock [300]
#   CW_BENCH_SECONDS       measuring window of each bench_throughput run [10]
#   CW_BENCH_IDLE_SECONDS  daemon resource window [60]
#   CW_BENCH_SLOW_POLL_MS  more daemon runs, one per poll_interval_ms in this
#                          space-separated list; 0 or empty skips them [100 1000]
# Figures only: the exit status says whether every benchmark ran, never
# whether a target was met.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
BUILD=$(cd "$1" && pwd)
SIM=$BUILD/src/simlock/cartwise-simlock
EDGE=$BUILD/src/edge/cartwise-edge
B_UNLOCK=$BUILD/bench/bench_unlock
B_THRU=$BUILD/bench/bench_throughput
UNLOCKS=${CW_BENCH_UNLOCKS:-300}
SECS=${CW_BENCH_SECONDS:-10}
IDLE=${CW_BENCH_IDLE_SECONDS:-60}
SLOW_POLL=${CW_BENCH_SLOW_POLL_MS-100 1000}
TOKEN=bench-admin-token-0123456789
LOCKS=16

for prog in "$SIM" "$EDGE" "$B_UNLOCK" "$B_THRU"; do
	[ -x "$prog" ] || { echo "run-edge: $prog is not built (ninja -C $BUILD)" >&2; exit 1; }
done
for tool in jq curl python3; do
	command -v "$tool" >/dev/null || { echo "run-edge: $tool is missing" >&2; exit 1; }
done
if jq -e '.[] | select(.name=="b_sanitize") | .value != "none"' \
	"$BUILD/meson-info/intro-buildoptions.json" >/dev/null 2>&1; then
	echo "run-edge: warning: $BUILD is a sanitizer build; figures are not representative" >&2
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/cw-bench.XXXXXX")
RESULTS=$T/results.md
PIDS=()
cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT

# Figures go to the terminal and to the results file.
out() { printf '%s\n' "$*" | tee -a "$RESULTS"; }

wait_until() { # wait_until SECONDS COMMAND...
	local end=$((SECONDS + $1)); shift
	until "$@"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.05
	done
}

CLK_TCK=$(getconf CLK_TCK)
# cpu_ticks PID: utime + stime (fields 14 and 15 of /proc/PID/stat; the
# command name in field 2 may hold spaces, so cut after its closing paren).
cpu_ticks() {
	local line rest
	read -r line <"/proc/$1/stat"
	rest=${line##*) }
	# shellcheck disable=SC2086
	set -- $rest
	echo $((${12} + ${13}))
}
# bus_tx PORT: transactions put on the wire so far by the daemon's bus0.
bus_tx() {
	curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/api/admin/status" |
		jq -r '.buses[0].stats.transactions // 0'
}
# run_ns PID: time on a CPU in ns, summed over the threads (first field of
# /proc/PID/task/*/schedstat): exact, where utime/stime are sampled per tick.
run_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
# ctx_switches PID: voluntary + involuntary context switches of all threads.
ctx_switches() {
	cat /proc/"$1"/task/*/status 2>/dev/null |
		awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { s += $2 } END { printf "%.0f", s }'
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# daemon_run LABEL POLL_MS: simulator with 2 boards x 16 locks, the daemon on a
# fresh data directory, IDLE seconds of polling; prints one table row.
daemon_run() {
	local label=$1 poll=$2 d=$T/$1 port sim_pid edge_pid buses
	mkdir -p "$d"
	"$SIM" --protocol modbus --link "$d/bus0.tty" --control "$d/sim.sock" \
		--board 1:$LOCKS --board 2:$LOCKS >"$d/sim.out" 2>"$d/sim.log" </dev/null &
	sim_pid=$!
	PIDS+=("$sim_pid")
	wait_until 10 grep -q '^ready' "$d/sim.out" || { echo "run-edge: simulator not ready" >&2; return 1; }

	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	buses=$(jq -n --arg p "$d/bus0.tty" --argjson locks $LOCKS '
		[{name: "bus0", port: $p, protocol: "modbus",
		  boards: [{address: 1, locks: $locks}, {address: 2, locks: $locks}]}]')
	if [ "$poll" != default ]; then
		buses=$(jq --argjson ms "$poll" '.[0].poll_interval_ms = $ms' <<<"$buses")
	fi
	jq -n --arg dd "$d/data" --argjson port "$port" --arg tok "$TOKEN" --argjson buses "$buses" '
		{chain_id: "chain-bench", branch_id: "branch-bench", device_id: "rpi-bench-1",
		 data_dir: $dd, log_level: "info",
		 api: {bind: "127.0.0.1", port: $port, admin_token: $tok},
		 buses: $buses}' >"$d/edge.json"

	"$EDGE" --config "$d/edge.json" >"$d/edge.log" 2>&1 </dev/null &
	edge_pid=$!
	PIDS+=("$edge_pid")
	if ! wait_until 20 curl -sf -H "Authorization: Bearer $TOKEN" \
		"http://127.0.0.1:$port/api/health" -o "$d/health0.json"; then
		echo "run-edge: cartwise-edge did not answer /api/health; its log:" >&2
		tail -n 20 "$d/edge.log" >&2
		return 1
	fi
	sleep 2 # start-up work (migrations, reconciliation) is not "idle"

	local e0 s0 t0 e1 s1 t1 n0 n1 x0 x1 c0 c1 hwm rss threads errs_n
	x0=$(bus_tx "$port")
	c0=$(ctx_switches "$edge_pid")
	e0=$(cpu_ticks "$edge_pid")
	n0=$(run_ns "$edge_pid")
	s0=$(cpu_ticks "$sim_pid")
	t0=$(date +%s.%N)
	sleep "$IDLE"
	e1=$(cpu_ticks "$edge_pid")
	n1=$(run_ns "$edge_pid")
	s1=$(cpu_ticks "$sim_pid")
	t1=$(date +%s.%N)
	c1=$(ctx_switches "$edge_pid")
	x1=$(bus_tx "$port")
	hwm=$(status_kb "$edge_pid" VmHWM)
	rss=$(status_kb "$edge_pid" VmRSS)
	threads=$(status_kb "$edge_pid" Threads)
	errs_n=$(grep -c 'level=error' "$d/edge.log" || true)

	kill -TERM "$edge_pid"
	local rc=0
	wait "$edge_pid" || rc=$?
	kill -TERM "$sim_pid" 2>/dev/null || true
	wait "$sim_pid" 2>/dev/null || true
	[ $rc -eq 0 ] || echo "run-edge: cartwise-edge exited $rc on SIGTERM" >&2

	awk -v label="$label" -v poll="$poll" -v e="$((e1 - e0))" -v s="$((s1 - s0))" -v ns="$((n1 - n0))" \
		-v tx="$((x1 - x0))" -v cs="$((c1 - c0))" \
		-v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" -v hwm="$hwm" -v rss="$rss" \
		-v thr="$threads" -v errs="$errs_n" 'BEGIN {
		w = t1 - t0
		cpu = 100 * e / hz / w
		scpu = 100 * s / hz / w
		ncpu = 100 * ns / 1e9 / w
		us_tx = tx > 0 ? ns / 1000 / tx : 0
		cs_tx = tx > 0 ? cs / tx : 0
		printf "| %s | %s | %.0f | %.1f | %.2f | %.2f | %d | %.2f %% | %.2f %% | %.0f | %.1f | %.2f %% | %d | %s | %s |\n",
			label, poll, w, tx / w, hwm / 1024, rss / 1024, thr, cpu, ncpu,
			us_tx, cs_tx, scpu, errs,
			(hwm <= 10240 ? "met" : "MISSED"), (cpu <= 1.0 ? "met" : "MISSED")
	}' | tee -a "$RESULTS"
	cp "$d/edge.log" "$T/edge-$label.log"
}

out "# CartWise edge benchmarks"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(nproc) cores, $(uname -srm), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
out "- build: $BUILD ($(jq -r '.[] | select(.name=="buildtype") | .value' "$BUILD/meson-info/intro-buildoptions.json" 2>/dev/null || echo '?'))"
out "- load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
out "- commit: $(git -C "$(dirname "$0")/.." rev-parse --short HEAD 2>/dev/null || echo '?') (plus uncommitted work, if any)"
out ""

"$B_UNLOCK" --simlock "$SIM" --unlocks "$UNLOCKS" | tee -a "$RESULTS"
out ""
"$B_THRU" --simlock "$SIM" --seconds "$SECS" | tee -a "$RESULTS"
out ""
out "## daemon resources: cartwise-edge, 2 boards x $LOCKS locks (Modbus) polled for ${IDLE} s, no rentals"
out ""
out "| run | poll_interval_ms | window s | bus transactions/s | peak RSS (VmHWM) MB | RSS at end MB | threads | daemon CPU, utime+stime (% of one core) | daemon CPU, schedstat | CPU µs per transaction | context switches per transaction | simulator CPU, utime+stime | error lines | RSS <= 10 MB | CPU <= 1 % (utime+stime) |"
out "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
daemon_run default-poll default
for ms in $SLOW_POLL; do
	[ "$ms" = 0 ] || daemon_run "poll-$ms" "$ms"
done

echo
echo "================ results ================"
cat "$RESULTS"
