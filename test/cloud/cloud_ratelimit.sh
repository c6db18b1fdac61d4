#!/usr/bin/env bash
# The login rate limit is shared by every instance on one database (issue 3:
# several stateless instances behind a load balancer): two cartwise-cloud
# processes on the same database (PostgreSQL, or the same SQLite file), where
# failures on A count on B; per (email, client address), unknown emails too;
# a success clears the count; a short window expires; nothing in clear is
# stored. The client address is varied with curl --interface 127.0.0.x
# (all of 127/8 is loopback on Linux).
. "$(dirname "$0")/lib.sh"

# A and B: 3 attempts in a 60 s window; C: 1 attempt in a 2 s window
cloud_config "$T/cloud.json" '{"login": {"max_attempts": 3, "window_s": 60}}'
cloud_config "$T/cloud-c.json" '{"login": {"max_attempts": 1, "window_s": 2}}'
cloud_start
PORT_A=$PORT
"$CLOUD" --config "$T/cloud.json" >>"$T/cloud-b.log" 2>&1 </dev/null &
PIDS+=($!)
"$CLOUD" --config "$T/cloud-c.json" >>"$T/cloud-c.log" 2>&1 </dev/null &
PIDS+=($!)
port_of() { sed -n 's/.*event=cloud.ready .*port=\([0-9]*\).*/\1/p' "$1" | head -1; }
has_port() { [ -n "$(port_of "$1")" ]; }
wait_until 20 has_port "$T/cloud-b.log" || fail "instance B did not start"
wait_until 20 has_port "$T/cloud-c.log" || fail "instance C did not start"
PORT_B=$(port_of "$T/cloud-b.log")
PORT_C=$(port_of "$T/cloud-c.log")
mkuser admin@example.com platform-admin "$PW" >/dev/null
# more platform admins with admin@'s password hash (Argon2id is slow on purpose)
for e in user2@example.com user3@example.com; do
	if [ "$BACKEND" = postgres ]; then
		db_sql "INSERT INTO staff_users (id, email, password_hash, role)
			SELECT '$(new_uuid)', '$e', password_hash, role FROM staff_users
			WHERE email = 'admin@example.com'"
	else
		db_sql "INSERT INTO staff_users (id, email, password_hash, role, active, created_ms, updated_ms)
			SELECT '$(new_uuid)', '$e', password_hash, role, 1, 0, 0 FROM staff_users
			WHERE email = 'admin@example.com'"
	fi
done

# try PORT FROM EMAIL PASSWORD: a login from address FROM; sets CODE (lib.sh)
try() {
	# shellcheck disable=SC2034
	CODE=$(curl -s -o "$T/resp.json" -w '%{http_code}' --interface "$2" \
		-H 'Content-Type: application/json' \
		--data-binary "$(jq -n --arg e "$3" --arg p "$4" '{email: $e, password: $p}')" \
		"http://127.0.0.1:$1/api/auth/login") || CODE=000
}
BAD='wrong password'

note "failures on A count on B"
try "$PORT_A" 127.0.0.1 admin@example.com "$BAD"; expect_error 401 unauthorized
try "$PORT_A" 127.0.0.1 Admin@Example.com "$BAD"; expect_error 401 unauthorized
try "$PORT_B" 127.0.0.1 admin@example.com "$BAD"; expect_error 401 unauthorized
try "$PORT_B" 127.0.0.1 admin@example.com "$PW"; expect_error 429 rate_limited
grep -Eq 'retry in ([1-9]|[1-5][0-9]|60) s' "$T/resp.json" || fail "no retry time: $(cat "$T/resp.json")"
try "$PORT_A" 127.0.0.1 ADMIN@example.com "$PW"; expect_error 429 rate_limited
# every attempt is counted before its password is checked (the two refused
# ones too), so that attempts in flight together cannot share a free slot
[ "$(db_sql 'SELECT failures FROM login_failures')" = 5 ] || fail "counts: $(db_sql 'SELECT * FROM login_failures')"

note "other addresses and other emails count separately"
try "$PORT_B" 127.0.0.2 admin@example.com "$PW"; expect_code 200
try "$PORT_A" 127.0.0.1 user2@example.com "$PW"; expect_code 200

note "unknown emails are limited too"
for p in "$PORT_A" "$PORT_B" "$PORT_A"; do
	try "$p" 127.0.0.3 nobody@example.com "$BAD"; expect_error 401 unauthorized
done
try "$PORT_B" 127.0.0.3 nobody@example.com "$BAD"; expect_error 429 rate_limited
try "$PORT_B" 127.0.0.4 nobody@example.com "$BAD"; expect_error 401 unauthorized

note "a success clears the count"
try "$PORT_A" 127.0.0.1 user3@example.com "$BAD"; expect_code 401
try "$PORT_B" 127.0.0.1 user3@example.com "$BAD"; expect_code 401
try "$PORT_A" 127.0.0.1 user3@example.com "$PW"; expect_code 200
# 2 failures before the success + 2 after = 4 > 3: still 401 only if cleared
try "$PORT_B" 127.0.0.1 user3@example.com "$BAD"; expect_code 401
try "$PORT_A" 127.0.0.1 user3@example.com "$BAD"; expect_code 401
try "$PORT_B" 127.0.0.1 user3@example.com "$PW"; expect_code 200

note "nothing in clear: keys are 64-hex hashes"
rows=$(db_sql 'SELECT key_hash FROM login_failures')
[ -n "$rows" ] || fail "no rows"
grep -Evq '^[0-9a-f]{64}$' <<<"$rows" && fail "a key is not a hash: $rows"
db_sql 'SELECT * FROM login_failures' | grep -Eq 'example|127\.0' && fail "an email or address is stored"

note "the window expires (C: 1 attempt in 2 s)"
try "$PORT_C" 127.0.0.5 user2@example.com "$BAD"; expect_code 401
try "$PORT_C" 127.0.0.5 user2@example.com "$PW"; expect_error 429 rate_limited
grep -Eq 'retry in [12] s' "$T/resp.json" || fail "retry time: $(cat "$T/resp.json")"
sleep 2.3 # since the failure: more than the window
try "$PORT_C" 127.0.0.5 user2@example.com "$PW"; expect_code 200

note "expired rows are pruned by later failures"
# every row except the ones in C's live window is older than C's 2 s window
sleep 2.1
try "$PORT_C" 127.0.0.6 prune@example.com "$BAD"; expect_code 401
n=$(db_sql 'SELECT count(*) FROM login_failures')
[ "$n" = 1 ] || fail "$n rows left after pruning: $(db_sql 'SELECT * FROM login_failures')"

check_logs
