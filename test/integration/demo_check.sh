#!/usr/bin/env bash
# ./scripts/demo --check on the binaries of this build: the scripted customer
# journey of the demo must pass.
set -euo pipefail
CW_DEMO_BUILD_DIR="$CW_BUILD_DIR" CW_DEMO_NO_INSTALL=1 exec "$CW_SOURCE_DIR/scripts/demo" --check
