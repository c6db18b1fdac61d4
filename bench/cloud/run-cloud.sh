#!/usr/bin/env bash
# run-cloud.sh BUILD_DIR - the cloud benchmarks of issue 3 (docs/BENCHMARKS-CLOUD.md).
#
#  1. Heartbeat throughput on each backend: cartwise-cloud of BUILD_DIR on SQLite
#     (a temp dir on disk) and on PostgreSQL, N devices registered through the
#     real API, wrk on loopback driving POST /api/devices/{id}/heartbeat; then,
#     in the same run, the same database doing the same statements directly
#     (bench_sqlite_raw for SQLite, pgbench for PostgreSQL). The ratio is the figure.
#  2. Chain-wide telemetry and rental-stats queries over CW_BENCH_ROWS telemetry
#     rows on PostgreSQL, with the indexes of 001 and then with 002 applied; then
#     005 (the daily telemetry rollup): the chain stats statements (queries/c_*,
#     which need it), and the cost of its trigger on a 500-row insert.
#
# Prints figures and a Markdown table; never passes or fails on time. Builds
# nothing: meson setup BUILD --buildtype=release && ninja -C BUILD first.
# Needs wrk, pgbench, psql, sqlite3, jq, curl and pg_virtualenv (without PG*
# variables it re-runs itself under `pg_virtualenv -t -o fsync=on`: a
# throwaway cluster with fsync on, as in production).
#
# Knobs (environment):
#   CW_BENCH_PARTS    heartbeat,telemetry   which parts to run
#   CW_BENCH_BACKENDS sqlite,postgres       which backends the heartbeat part runs on
#   CW_BENCH_DEVICES  128    devices registered (pgbench takes <= 128 scripts)
#   CW_BENCH_THREADS  4      server threads = PostgreSQL pool = raw writers
#   CW_BENCH_SECONDS  10     each measuring window
#   CW_BENCH_CONNS    "4 16 64"  wrk connections tried for the maximum
#   CW_BENCH_ROWS     10000000   telemetry rows of part 2
set -euo pipefail

B=$(realpath "${1:?usage: run-cloud.sh BUILD_DIR}")
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
CLOUD=$B/src/cloud/cartwise-cloud
RAW=$B/bench/cloud/bench_sqlite_raw
PARTS=${CW_BENCH_PARTS:-heartbeat,telemetry}
BACKENDS=${CW_BENCH_BACKENDS:-sqlite,postgres}
DEVICES=${CW_BENCH_DEVICES:-128}
THREADS=${CW_BENCH_THREADS:-4}
SECONDS_RUN=${CW_BENCH_SECONDS:-10}
CONNS=${CW_BENCH_CONNS:-4 16 64}
ROWS=${CW_BENCH_ROWS:-10000000}

for prog in "$CLOUD" "$RAW"; do
	[ -x "$prog" ] || { echo "run-cloud: $prog was not built" >&2; exit 1; }
done
for tool in wrk pgbench psql sqlite3 jq curl; do
	command -v "$tool" >/dev/null || { echo "run-cloud: $tool missing (apt-get install -y $tool)" >&2; exit 1; }
done
[ "$DEVICES" -ge 1 ] && [ "$DEVICES" -le 128 ] || { echo "run-cloud: CW_BENCH_DEVICES 1..128" >&2; exit 1; }

# A PostgreSQL of our own, with fsync on (pg_virtualenv turns it off by default).
if [ -z "${PGHOST:-}${PGPORT:-}" ]; then
	exec pg_virtualenv -t -o fsync=on "$0" "$@"
fi

T=$(mktemp -d /var/tmp/cwbench.XXXXXX) # on disk: /tmp may be tmpfs elsewhere
CLOUD_PID=
cleanup() {
	[ -z "$CLOUD_PID" ] || kill "$CLOUD_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
note() { echo "-- $(date -u +%H:%M:%S) $*" >&2; }
RESULTS=$T/results.md
: >"$RESULTS"
row() { printf '| %s |\n' "$*" >>"$RESULTS"; }

HB_BODY='{"status":"online","firmware_version":"1.4.2","health":{"boards":2,"locks":32,"uptime_s":86400}}'
HEALTH='{"boards":2,"locks":32,"uptime_s":86400}'
PW='bench password 0123456789'

"$CLOUD" keygen --out "$T/signing.key" >/dev/null

# ---- the server ----------------------------------------------------------

cloud_start() { # CONFIG LOG
	"$CLOUD" --config "$1" >"$2" 2>&1 </dev/null &
	CLOUD_PID=$!
	PORT=
	for _ in $(seq 200); do
		PORT=$(sed -n 's/.*event=cloud.ready .*port=\([0-9]*\).*/\1/p' "$2" | head -1)
		[ -z "$PORT" ] || return 0
		sleep 0.05
	done
	echo "run-cloud: cartwise-cloud did not start:" >&2
	tail -n 20 "$2" >&2
	exit 1
}
cloud_stop() {
	kill -TERM "$CLOUD_PID"
	wait "$CLOUD_PID" || true
	CLOUD_PID=
}
api() { # METHOD PATH [BODY]: prints the body; AUTH may hold a token
	local args=(-sS -X "$1" "http://127.0.0.1:$PORT$2")
	[ -z "${AUTH:-}" ] || args+=(-H "Authorization: Bearer $AUTH")
	[ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
	curl "${args[@]}"
}
# make_config FILE DB_JSON
make_config() {
	jq -n --argjson db "$2" --arg key "$T/signing.key" --argjson th "$THREADS" \
		'{listen: {address: "127.0.0.1", port: 0, threads: $th}, database: $db,
		  signing_key_file: $key, log_level: "info"}' >"$1"
}
# bootstrap CONFIG: platform admin, chain, branch, enrollment code, DEVICES
# devices registered through POST /api/devices/register; writes
# $T/devices.txt ("id token") and leaves AUTH = the admin's token.
bootstrap() {
	printf '%s\n' "$PW" | "$CLOUD" --config "$1" admin create-user \
		--email bench@example.com --role platform-admin >/dev/null
	AUTH=$(api POST /api/auth/login "{\"email\":\"bench@example.com\",\"password\":\"$PW\"}" | jq -r .token)
	local chain branch code
	chain=$(api POST /api/chains '{"name":"Bench","slug":"bench"}' | jq -r .id)
	branch=$(api POST /api/branches "{\"chain_id\":\"$chain\",\"code\":\"HB-1\",\"name\":\"Heartbeat\"}" | jq -r .id)
	code=$(api POST "/api/branches/$branch/enrollment-codes" "{\"uses\":$DEVICES}" | jq -r .code)
	[ -n "$code" ] && [ "$code" != null ] || { echo "run-cloud: bootstrap failed" >&2; exit 1; }
	: >"$T/devices.txt"
	local saved=$AUTH
	AUTH=
	for i in $(seq "$DEVICES"); do
		api POST /api/devices/register "$(printf '{"mac_address":"02:bb:00:00:%02x:%02x","branch_code":"HB-1","enrollment_code":"%s"}' \
			$((i / 256)) $((i % 256)) "$code")" | jq -r '"\(.device_id) \(.device_token)"' >>"$T/devices.txt"
	done
	AUTH=$saved
	grep -c -v null "$T/devices.txt" | grep -qx "$DEVICES" || { echo "run-cloud: registration failed" >&2; exit 1; }
}

# ---- wrk -----------------------------------------------------------------

# to_ms "1.23ms" | "456.00us" | "1.02s" -> milliseconds
to_ms() {
	awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0;
		else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
# wrk_run CONNS SECONDS DELAY_MS: sets W_RPS, W_P50, W_P99, W_ERR (non-2xx + socket errors)
wrk_run() {
	local out=$T/wrk.out
	CW_DEVICES=$T/devices.txt CW_HB_BODY=$HB_BODY CW_DELAY_MS=$3 \
		wrk -t 1 -c "$1" -d "${2}s" --timeout 5s --latency -s "$HERE/hb.lua" \
		"http://127.0.0.1:$PORT" >"$out" 2>&1
	W_RPS=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
	W_P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
	W_P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
	W_ERR=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
}

# heartbeat_http: max throughput over CONNS, then ~70 % of it; sets H_MAX,
# H_MAX_P99, H_MAX_C, H_70_RPS, H_70_P50, H_70_P99, H_70_C, H_ERR.
heartbeat_http() {
	local c delay conns70 lat target
	H_MAX=0 H_ERR=0
	wrk_run 16 3 0 # warm-up: caches, prepared statements, connections
	for c in $CONNS; do
		wrk_run "$c" "$SECONDS_RUN" 0
		note "  wrk -c $c: $W_RPS req/s, p50 $W_P50 ms, p99 $W_P99 ms, errors $W_ERR"
		H_ERR=$((H_ERR + W_ERR))
		if [ "$W_RPS" -gt "$H_MAX" ]; then
			H_MAX=$W_RPS H_MAX_P99=$W_P99 H_MAX_C=$c
		fi
	done
	# ~70 %: closed loop with a fixed pause after each response. With C
	# connections, rate = C / (pause + latency); pick C for a ~50 ms period,
	# calibrate the latency in two 5 s runs, then measure. The load reached is
	# printed beside the figure (a busy machine moves it).
	target=$((H_MAX * 70 / 100))
	conns70=$(( (target + 19) / 20 ))
	[ "$conns70" -ge 2 ] || conns70=2
	delay=$(( conns70 * 1000 / target ))
	[ "$delay" -ge 1 ] || delay=1
	for _ in 1 2; do # two 5 s calibration steps
		wrk_run "$conns70" 5 "$delay"
		lat=$(awk -v c="$conns70" -v r="$W_RPS" -v d="$delay" 'BEGIN { l = c * 1000 / (r > 0 ? r : 1) - d; print (l > 0 ? l : 0) }')
		delay=$(awk -v c="$conns70" -v t="$target" -v l="$lat" 'BEGIN { d = c * 1000 / t - l; printf "%d", (d < 1 ? 1 : d + 0.5) }')
	done
	wrk_run "$conns70" "$SECONDS_RUN" "$delay"
	H_70_RPS=$W_RPS H_70_P50=$W_P50 H_70_P99=$W_P99 H_70_C="$conns70 conns, ${delay} ms pause"
	H_ERR=$((H_ERR + W_ERR))
	note "  ~70 %: $W_RPS req/s (target $target) with $H_70_C: p50 $W_P50 ms, p99 $W_P99 ms"
}

pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "n/a" }'; }

# interleaved RAWFN: on a shared machine the disk's fsync latency moves a lot
# within a minute, so the ratio is also taken from PAIRS of adjacent 5 s
# windows (raw database, then the server at the maximum's wrk connection
# count, server left running and idle during the raw window); prints each
# pair and sets PAIR_MEDIAN (median of the pair ratios, %) and PAIR_TXT.
# When RAWFN sets RAW_OWN (SQLite: its `own` mode) the same against it:
# PAIR_OWN_MEDIAN.
interleaved() {
	local k ratios=() owns=() txt=""
	for k in 1 2 3; do
		RAW_OWN=
		SECONDS_RUN=5 "$1"
		wrk_run "$H_MAX_C" 5 0
		ratios+=("$(awk -v a="$W_RPS" -v b="$RAW_RPS" 'BEGIN { printf "%.0f", (b > 0 ? 100 * a / b : 0) }')")
		txt+="${txt:+, }$W_RPS/$RAW_RPS"
		if [ -n "$RAW_OWN" ]; then
			owns+=("$(awk -v a="$W_RPS" -v b="$RAW_OWN" 'BEGIN { printf "%.0f", (b > 0 ? 100 * a / b : 0) }')")
			txt+=" (own $RAW_OWN)"
		fi
		note "  pair $k: server $W_RPS req/s (p99 $W_P99 ms), raw $RAW_RPS/s: ${ratios[-1]} %${RAW_OWN:+; own $RAW_OWN/s: ${owns[-1]} %}"
	done
	PAIR_MEDIAN=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n 2p)
	PAIR_OWN_MEDIAN=
	[ "${#owns[@]}" = 0 ] || PAIR_OWN_MEDIAN=$(printf '%s\n' "${owns[@]}" | sort -n | sed -n 2p)
	PAIR_TXT=$txt
}

# ---- part 1a: SQLite -----------------------------------------------------

# raw_sqlite: the three sharing modes of bench_sqlite_raw; sets RAW_RPS (the
# fastest), RAW_OWN and RAW_TXT ("shared / own / split")
raw_sqlite() {
	local m out r best=0 txt=""
	for m in shared own split; do
		out=$("$RAW" --db "$T/hb.db" --devices "$T/raw.txt" --threads "$THREADS" \
			--seconds "$SECONDS_RUN" --mode "$m" --health "$HEALTH" --firmware 1.4.2)
		note "  raw ($m): $out"
		r=$(sed -n 's/.* rps=\([0-9]*\).*/\1/p' <<<"$out")
		[ "$m" != own ] || RAW_OWN=$r
		best=$(( r > best ? r : best ))
		txt+="${txt:+ / }$r"
	done
	RAW_RPS=$best
	RAW_TXT=$txt
}

# The raw database runs before and after the HTTP runs (drift on a shared
# machine shows); the ratio is against the faster of the two (fastest mode),
# and against `own` (a connection a thread) on its own.
bench_heartbeat_sqlite() {
	note "heartbeat on SQLite ($T/hb.db, WAL, synchronous=FULL), $DEVICES devices, $THREADS server threads and readers"
	make_config "$T/hb-sqlite.json" "{\"backend\":\"sqlite\",\"path\":\"$T/hb.db\",\"pool_size\":$THREADS}"
	cloud_start "$T/hb-sqlite.json" "$T/hb-sqlite.log"
	bootstrap "$T/hb-sqlite.json"
	cloud_stop
	sqlite3 "$T/hb.db" "SELECT device_id || ' ' || jti FROM device_tokens WHERE revoked = 0" >"$T/raw.txt"
	raw_sqlite
	local pre=$RAW_RPS pre_txt=$RAW_TXT pre_own=$RAW_OWN
	cloud_start "$T/hb-sqlite.json" "$T/hb-sqlite.log"
	heartbeat_http
	interleaved raw_sqlite
	cloud_stop
	raw_sqlite
	local best=$(( pre > RAW_RPS ? pre : RAW_RPS )) best_own=$(( pre_own > RAW_OWN ? pre_own : RAW_OWN ))
	row "SQLite | $H_MAX (c=$H_MAX_C) | $H_MAX_P99 | $pre_txt; after: $RAW_TXT | $(pct "$H_MAX" "$best"); own: $(pct "$H_MAX" "$best_own") | **$PAIR_MEDIAN %**; own: **$PAIR_OWN_MEDIAN %** ($PAIR_TXT) | $H_70_RPS ($(pct "$H_70_RPS" "$H_MAX")) | $H_70_P50 | **$H_70_P99** | $H_ERR"
}

# ---- part 1b: PostgreSQL -------------------------------------------------

# pgbench scripts: one per device (pgbench has no string arithmetic; up to
# 128 scripts), the statements of src/cloud/cw_store_pg.c with the device's
# id and jti as literals and :now (ms) as the time parameter.
pg_scripts() {
	local n=0 id jti
	PGB_ARGS=()
	while read -r id jti; do
		n=$((n + 1))
		cat >"$T/pgb-$n.sql" <<EOF
SELECT 1 FROM device_tokens WHERE jti = '$jti'::uuid AND device_id = '$id'::uuid AND NOT revoked;
UPDATE devices SET status = 'online'::text, firmware_version = coalesce('1.4.2'::text, firmware_version), health = coalesce('$HEALTH'::jsonb, health), last_heartbeat = to_timestamp(:now::bigint / 1000.0), updated_at = to_timestamp(:now::bigint / 1000.0) WHERE id = '$id'::uuid;
SELECT 1 FROM commands WHERE device_id = '$id'::uuid AND state IN ('pending', 'delivered') LIMIT 1;
EOF
		PGB_ARGS+=(-f "$T/pgb-$n.sql")
	done <"$T/raw.txt"
}

# raw_pg DB [CLIENTS]: pgbench; sets RAW_RPS
raw_pg() {
	local now tps p50 p99 clients=${2:-$THREADS}
	now=$(($(date +%s%N) / 1000000))
	# -M prepared: like the server (PQprepare once, PQexecPrepared); -c = pool size
	pgbench -n -M prepared -c "$clients" -j 2 -T "$SECONDS_RUN" -D now="$now" \
		-l --log-prefix "$T/pgblog" "${PGB_ARGS[@]}" "$1" >"$T/pgbench.out" 2>&1 ||
		{ cat "$T/pgbench.out" >&2; exit 1; }
	tps=$(awk '/^tps = / { printf "%.0f", $3 }' "$T/pgbench.out")
	read -r p50 p99 < <(cat "$T"/pgblog.* | awk '{ print $3 / 1000 }' | sort -n |
		awk '{ a[NR] = $1 } END { printf "%.2f %.2f\n", a[int(NR * 0.5) + 1], a[int(NR * 0.99) + 1] }')
	rm -f "$T"/pgblog.*
	note "  raw (pgbench -M prepared -c $clients): $tps heartbeats/s, p50 $p50 ms, p99 $p99 ms"
	RAW_RPS=$tps
}

raw_pg_db() { raw_pg "$PG_DB"; }

bench_heartbeat_pg() {
	local db=cwbench_hb
	note "heartbeat on PostgreSQL $(psql -X -qtAc 'SHOW server_version'), fsync=$(psql -X -qtAc 'SHOW fsync'), pool $THREADS, $DEVICES devices"
	psql -X -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
	make_config "$T/hb-pg.json" "{\"backend\":\"postgres\",\"conninfo\":\"dbname=$db\",\"pool_size\":$THREADS}"
	cloud_start "$T/hb-pg.json" "$T/hb-pg.log"
	bootstrap "$T/hb-pg.json"
	cloud_stop
	psql -X -qtA -d "$db" -c "SELECT device_id || ' ' || jti FROM device_tokens WHERE NOT revoked" >"$T/raw.txt"
	pg_scripts
	raw_pg "$db"
	local pre=$RAW_RPS
	cloud_start "$T/hb-pg.json" "$T/hb-pg.log"
	heartbeat_http
	PG_DB=$db interleaved raw_pg_db
	cloud_stop
	raw_pg "$db"
	local best=$(( pre > RAW_RPS ? pre : RAW_RPS )) post=$RAW_RPS
	# context only (not the ratio): more concurrent writers than the pool
	raw_pg "$db" $((THREADS * 4))
	row "PostgreSQL | $H_MAX (c=$H_MAX_C) | $H_MAX_P99 | $pre; after: $post (-c $((THREADS * 4)): $RAW_RPS) | $(pct "$H_MAX" "$best") | **$PAIR_MEDIAN %** ($PAIR_TXT) | $H_70_RPS ($(pct "$H_70_RPS" "$H_MAX")) | $H_70_P50 | **$H_70_P99** | $H_ERR"
	psql -X -q -c "DROP DATABASE $db" >/dev/null
}

# ---- part 2: telemetry queries on PostgreSQL -------------------------------

# q_time SQLFILE: the statements of bench/cloud/queries/*.sql (EXPLAIN ANALYZE
# EXECUTE of the server's statement texts); the median over 3 runs (after one
# warm-up) of the summed "Execution Time" of the file's statements.
q_time() {
	local times=() i t
	for i in 1 2 3 4; do
		t=$(psql -X -qtA -d cwbench_tele -v ON_ERROR_STOP=1 -v chain="'$CHAIN'" -v branch="'$BRANCH'" \
			-v t_end_ms="$T_END_MS" -v manager="'$MANAGER'" -v cursor="$CURSOR" -f "$1" |
			sed -n 's/^Execution Time: \([0-9.]*\) ms/\1/p' | awk '{ s += $1 } END { printf "%.1f", s }')
		[ "$i" = 1 ] || times+=("$t")
	done
	printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}

# api_time N PATH: N GETs with the admin token; prints "status median max" (ms)
api_time() {
	local n=$1 path=$2 i code t codes=() ts=()
	for i in $(seq "$n"); do
		read -r code t < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
			-H "Authorization: Bearer $AUTH" "http://127.0.0.1:$PORT$path")
		codes+=("$code")
		ts+=("$t")
	done
	printf '%s %s %s\n' "$(printf '%s\n' "${codes[@]}" | sort -u | tr '\n' ',' | sed 's/,$//')" \
		"$(printf '%s\n' "${ts[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "%.1f", 1000 * a[int((NR + 1) / 2)] }')" \
		"$(printf '%s\n' "${ts[@]}" | sort -n | tail -1 | awk '{ printf "%.1f", 1000 * $1 }')"
}

bench_telemetry() {
	local db=cwbench_tele t0 t1 q i
	T_END=$(date -u +'%Y-%m-%d %H:00:00+00')
	note "telemetry: $ROWS rows on PostgreSQL (3 chains, 30 branches, 300 devices, 90 days up to $T_END)"
	psql -X -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
	make_config "$T/tele.json" "{\"backend\":\"postgres\",\"conninfo\":\"dbname=$db\",\"pool_size\":$THREADS}"
	# schema 001 only: the "before" state. Applied with psql and recorded in
	# the server's ledger (cw_store_pg.c) so that the server can run on it.
	psql -X -q -d "$db" -v ON_ERROR_STOP=1 -f "$SRC/schema/cloud/postgres/001_init.sql" \
		-c "CREATE TABLE cw_schema_migrations (version int PRIMARY KEY, name text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())" \
		-c "INSERT INTO cw_schema_migrations (version, name) VALUES (1, '001_init.sql')" >/dev/null
	t0=$(date +%s)
	psql -X -q -d "$db" -v rows="$ROWS" -v t_end="'$T_END'" -f "$HERE/telemetry_gen.sql" >/dev/null
	t1=$(date +%s)
	note "  generated in $((t1 - t0)) s: $(psql -X -qtA -d "$db" -c "SELECT count(*) FROM telemetry") telemetry rows ($(psql -X -qtA -d "$db" -c "SELECT pg_size_pretty(pg_total_relation_size('telemetry'))") with indexes), $(psql -X -qtA -d "$db" -c "SELECT count(*) FROM rentals") rentals"
	CHAIN=$(psql -X -qtA -d "$db" -c "SELECT id FROM chains WHERE slug = 'bench-chain-1'")
	BRANCH=$(psql -X -qtA -d "$db" -c "SELECT b.id FROM branches b WHERE b.code = 'BR-001' AND b.chain_id = '$CHAIN'")
	T_END_MS=$(psql -X -qtA -d "$db" -c "SELECT (extract(epoch from timestamptz '$T_END') * 1000)::bigint")
	# a manager of one branch (for the manager-scoped chain list) and a cursor 100 pages deep
	MANAGER=$(psql -X -qtA -d "$db" -c "INSERT INTO staff_users (id, email, password_hash, role, chain_id)
		VALUES (gen_random_uuid(), 'manager@bench.example', 'x', 'branch-manager', '$CHAIN') RETURNING id" | head -1)
	psql -X -q -d "$db" -c "INSERT INTO user_branches VALUES ('$MANAGER', '$BRANCH')" >/dev/null
	CURSOR=$(psql -X -qtA -d "$db" -c "SELECT id FROM telemetry WHERE chain_id = '$CHAIN'
		ORDER BY \"timestamp\" DESC, id DESC OFFSET 5000 LIMIT 1")
	local names=() before=() after=() qs=()
	for q in "$HERE"/queries/*.sql; do # c_*: need 005, timed after it
		case $(basename "$q") in c_*) ;; *) qs+=("$q") ;; esac
	done
	for q in "${qs[@]}"; do
		names+=("$(basename "$q" .sql)")
		before+=("$(q_time "$q")")
		note "  before 002: ${names[-1]} ${before[-1]} ms"
	done
	t0=$(date +%s)
	psql -X -q -d "$db" -v ON_ERROR_STOP=1 -f "$SRC/schema/cloud/postgres/002_telemetry_indexes.sql" >/dev/null
	t1=$(date +%s)
	psql -X -q -d "$db" -c "VACUUM ANALYZE telemetry" -c "VACUUM ANALYZE rentals" >/dev/null
	# recorded only if this binary knows 002 (a database newer than the binary is refused)
	if grep -q 002_telemetry_indexes.sql "$CLOUD"; then
		psql -X -q -d "$db" -c "INSERT INTO cw_schema_migrations (version, name) VALUES (2, '002_telemetry_indexes.sql')" >/dev/null
	fi
	note "  002 applied in $((t1 - t0)) s; telemetry now $(psql -X -qtA -d "$db" -c "SELECT pg_size_pretty(pg_total_relation_size('telemetry'))") with indexes"
	i=0
	for q in "${qs[@]}"; do
		after+=("$(q_time "$q")")
		note "  with 002:   ${names[$i]} ${after[$i]} ms"
		printf '| %s | %s | %s | %s |\n' "${names[$i]}" "${before[$i]}" "${after[$i]}" \
			"$(awk -v a="${after[$i]}" 'BEGIN { print (a <= 100 ? "met" : "MISSED") }')" >>"$T/tele.md"
		i=$((i + 1))
	done
	bench_rollup
	# the same through the API, if this build has the routes
	if "$CLOUD" routes | grep -q '/api/telemetry/chains/'; then
		# the migrations the benchmark did not apply itself (003 login failures,
		# 004 sync: small, unrelated to these queries), then the ledger rows of
		# 003..005, so that the server accepts the database as current
		psql -X -q -d "$db" -v ON_ERROR_STOP=1 -f "$SRC/schema/cloud/postgres/003_login_failures.sql" \
			-f "$SRC/schema/cloud/postgres/004_sync.sql" >/dev/null
		psql -X -q -d "$db" -c "INSERT INTO cw_schema_migrations (version, name) VALUES
			(3, '003_login_failures.sql'), (4, '004_sync.sql'), (5, '005_telemetry_daily.sql')" >/dev/null
		cloud_start "$T/tele.json" "$T/tele.log"
		printf '%s\n' "$PW" | "$CLOUD" --config "$T/tele.json" admin create-user \
			--email bench@example.com --role platform-admin >/dev/null
		AUTH=$(api POST /api/auth/login "{\"email\":\"bench@example.com\",\"password\":\"$PW\"}" | jq -r .token)
		local from24 from7 from30 from90 tc="/api/telemetry/chains/$CHAIN" rs="/api/branches/$BRANCH/rentals/stats"
		local cs="/api/chains/$CHAIN/stats" specs=()
		from24=$(date -u -d "$T_END - 1 day" +%Y-%m-%dT%H:%M:%SZ)
		from7=$(date -u -d "$T_END - 7 days" +%Y-%m-%dT%H:%M:%SZ)
		from30=$(date -u -d "$T_END - 30 days" +%Y-%m-%dT%H:%M:%SZ)
		from90=$(date -u -d "$T_END - 90 days" +%Y-%m-%dT%H:%M:%SZ)
		local to=${T_END/ /T}
		to=${to%+00}Z
		# order matters: the server prepares each statement once a connection,
		# and PostgreSQL may switch a prepared statement to its generic plan
		# after 5 runs; the filtered calls come after 24 unfiltered ones
		specs=("24 $tc?limit=50" "12 $tc?limit=50&from=$from24&to=$to" \
			"12 $tc?limit=50&cursor=$CURSOR" "12 $tc?limit=50&event_type=lock_fault" \
			"8 $tc?limit=50&event_type=no_such_type" "12 $rs" "12 $rs?from=$from30&to=$to" \
			"8 $rs?from=$from90&to=$to")
		if "$CLOUD" routes | grep -q '/api/chains/{id}/stats'; then
			specs+=("12 $cs" "12 $cs?from=$from24&to=$to" "12 $cs?from=$from7&to=$to" \
				"12 $cs?from=$from90&to=$to")
		fi
		for spec in "${specs[@]}"; do
			local n=${spec%% *} path=${spec#* } res
			res=$(api_time "$n" "$path")
			printf '| `GET %s` | %s | %s | %s | %s |\n' "$(sed -e "s/$CHAIN/{chain}/; s/$BRANCH/{branch}/; s/$CURSOR/{cursor}/" <<<"$path")" \
				"$n" $res >>"$T/api.md" # $res: three words, split on purpose
			note "  API: $path: $res"
		done
		cloud_stop
	fi
	psql -X -q -c "DROP DATABASE $db" >/dev/null
}

# bench_rollup: applies 005 (daily telemetry counts, maintained by triggers) to
# the part-2 database, times the statements that need it (queries/c_*) and the
# s_* on-demand counts again beside them, then the insert trigger's cost:
# a 500-row batch with and without it, alternated 8 times (the first pair is a
# warm-up), median of the other 7 of each.
bench_rollup() {
	local db=cwbench_tele t0 t1 q n with without
	t0=$(date +%s)
	psql -X -q -d "$db" -v ON_ERROR_STOP=1 -f "$SRC/schema/cloud/postgres/005_telemetry_daily.sql" >/dev/null
	t1=$(date +%s)
	psql -X -q -d "$db" -c "VACUUM ANALYZE telemetry_daily" >/dev/null
	note "  005 applied in $((t1 - t0)) s: $(psql -X -qtA -d "$db" -c "SELECT count(*) FROM telemetry_daily") rollup rows, $(psql -X -qtA -d "$db" -c "SELECT pg_size_pretty(pg_total_relation_size('telemetry_daily'))")"
	for q in "$HERE"/queries/c_*.sql "$HERE"/queries/s_*.sql; do
		n=$(basename "$q" .sql)
		t0=$(q_time "$q")
		note "  with 005:   $n $t0 ms"
		printf '| %s | %s | %s |\n' "$n" "$t0" \
			"$(awk -v a="$t0" 'BEGIN { print (a <= 100 ? "met" : "MISSED") }')" >>"$T/rollup.md"
	done
	with=() without=()
	for n in 0 1 2 3 4 5 6 7; do
		for q in true false; do
			t0=$(psql -X -qtA -d "$db" -v with_trigger=$q -v branch="'$BRANCH'" -v t_end_ms="$T_END_MS" \
				-f "$HERE/insert_batch.sql" | sed -n 's/^Execution Time: \([0-9.]*\) ms/\1/p')
			[ "$n" = 0 ] && continue
			if [ "$q" = true ]; then with+=("$t0"); else without+=("$t0"); fi
		done
	done
	with=$(printf '%s\n' "${with[@]}" | sort -n | sed -n 4p)
	without=$(printf '%s\n' "${without[@]}" | sort -n | sed -n 4p)
	note "  500-row insert: $with ms with the trigger, $without ms without"
	printf '| 500-row telemetry insert (one device, one day), ms | %s | %s |\n' "$without" "$with" >>"$T/insert.md"
}

# ---- run -----------------------------------------------------------------

echo "cartwise cloud benchmarks, $(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)"
echo "build: $B"
case ",$PARTS," in *,heartbeat,*)
	case ",$BACKENDS," in *,sqlite,*) bench_heartbeat_sqlite ;; esac
	case ",$BACKENDS," in *,postgres,*) bench_heartbeat_pg ;; esac
	;;
esac
case ",$PARTS," in *,telemetry,*) bench_telemetry ;; esac

echo
if [ -s "$RESULTS" ]; then
	echo "Heartbeat (POST /api/devices/{id}/heartbeat; $DEVICES devices, $THREADS server threads, ${SECONDS_RUN} s windows; targets: ratio >= 50 %, p99 at ~70 % <= 20 ms)"
	echo
	echo "| backend | max req/s (wrk conns) | p99 at max, ms | raw DB heartbeats/s, before; after | ratio max/raw | ratio, median of 3 adjacent pairs (server/raw) | ~70 % run, req/s | p50, ms | p99, ms | errors |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	cat "$RESULTS"
	echo
fi
if [ -s "$T/tele.md" ]; then
	echo "Queries, median of 3 EXPLAIN ANALYZE runs (server time), $ROWS telemetry rows (target <= 100 ms)"
	echo
	echo "| query | 001 indexes, ms | with 002, ms | target |"
	echo "|---|---|---|---|"
	cat "$T/tele.md"
	echo
fi
if [ -s "$T/rollup.md" ]; then
	echo "With 005 (daily telemetry rollup), median of 3 EXPLAIN ANALYZE runs (server time)"
	echo
	echo "| query | with 005, ms | target |"
	echo "|---|---|---|"
	cat "$T/rollup.md"
	echo
	echo "| insert | without the 005 trigger | with it |"
	echo "|---|---|---|"
	cat "$T/insert.md"
	echo
fi
if [ -s "$T/api.md" ]; then
	echo "Through the API (curl on loopback, with 002; calls in this order)"
	echo
	echo "| request | calls | status | median ms | max ms |"
	echo "|---|---|---|---|---|"
	cat "$T/api.md"
fi
