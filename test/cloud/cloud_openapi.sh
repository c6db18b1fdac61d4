#!/usr/bin/env bash
# docs/openapi.json describes exactly the routes the server has: a route in
# the server but not in the document, or the reverse, fails this test.
set -euo pipefail
B=${CW_BUILD_DIR:?run through meson test}
S=${CW_SOURCE_DIR:?run through meson test}
DOC=$S/docs/openapi.json
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v jq >/dev/null || fail "jq missing"
[ -f "$DOC" ] || fail "$DOC missing"

jq -e '.openapi | startswith("3.")' "$DOC" >/dev/null || fail "not an OpenAPI 3 document"
doc=$(jq -r '.paths | to_entries[] | .key as $p | .value | keys[]
	| select(. != "parameters" and . != "summary" and . != "description")
	| "\(ascii_upcase) \($p)"' "$DOC" | sort)
srv=$("$B/src/cloud/cartwise-cloud" routes | sort)
[ -n "$srv" ] || fail "the server lists no routes"
missing=$(comm -23 <(echo "$srv") <(echo "$doc"))
extra=$(comm -13 <(echo "$srv") <(echo "$doc"))
[ -z "$missing" ] || fail "routes of the server missing from docs/openapi.json:
$missing"
[ -z "$extra" ] || fail "routes in docs/openapi.json that the server does not have:
$extra"

# every $ref resolves
bad=$(jq -r '[.. | objects | .["$ref"]? // empty] | unique[]' "$DOC" | while read -r ref; do
	path=${ref#\#/}
	jq -e --arg p "$path" 'getpath($p | split("/")) != null' "$DOC" >/dev/null || echo "$ref"
done)
[ -z "$bad" ] || fail "unresolved references: $bad"
# every operation documents at least one success and says how it authenticates
jq -e '[.paths[][] | objects | select(has("responses"))
	| (.responses | keys | any(startswith("2"))) and has("security")] | all' "$DOC" >/dev/null \
	|| fail "an operation without a 2xx response or a security entry"
echo "ok: $(echo "$srv" | wc -l) routes documented"
