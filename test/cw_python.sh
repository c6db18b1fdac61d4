# shellcheck shell=bash
# CW_PYTHON: the Python interpreter of the test scripts: Debian's own when
# there is one. A pyenv shim in front of python3 (as on the 2-core CI
# machine) costs ~0.7 s of CPU and seconds of wall time per start under
# load, and the suite starts Python dozens of times (stubs, proxies).
# Sourced by test/integration/lib.sh and test/cloudsync/cloudsync_stub.sh.
CW_PYTHON=/usr/bin/python3
[ -x "$CW_PYTHON" ] || CW_PYTHON=$(command -v python3) || { echo "FAIL: python3 missing"; exit 1; }
