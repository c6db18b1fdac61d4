#!/usr/bin/env bash
# The kiosk page's failure messages, SMS-code flow, idle reset and
# accessibility in headless chromium against the contract mock
# (test/kiosk/page_flows.mjs, mock_api.mjs): no daemon. Screenshots go to
# <build>/meson-logs/kiosk-screens/flows/ (docs/KIOSK.md).
set -euo pipefail
B=${CW_BUILD_DIR:?run through meson test}
K=${CW_SOURCE_DIR:?run through meson test}/test/kiosk
command -v node >/dev/null || { echo "FAIL: node missing (scripts/test installs nodejs)"; exit 1; }
[ -d "$K/node_modules/playwright-core" ] ||
	{ echo "FAIL: playwright-core missing: run 'npm ci' in test/kiosk (scripts/test does)"; exit 1; }
SHOTS=$B/meson-logs/kiosk-screens/flows
rm -rf "$SHOTS"
SHOTS_DIR=$SHOTS exec node "$K/page_flows.mjs"
