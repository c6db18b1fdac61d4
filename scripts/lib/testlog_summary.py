#!/usr/bin/python3
"""testlog_summary.py TESTLOG [LABEL]: the closing line of a meson test run,
"[LABEL: ]N passed, N failed, N skipped", from its meson-logs/testlog.json.
Exit 0 when every test passed, 3 when some were skipped and none failed,
1 when one failed or none ran (a missing log counts as one failure)."""
import json
import sys

ok = bad = skip = 0
try:
    lines = open(sys.argv[1]).readlines()
except OSError:
    print('meson test did not run', file=sys.stderr)
    lines = ['{"result": "ERROR"}']
for line in lines:
    r = json.loads(line)['result']
    if r in ('OK', 'EXPECTEDFAIL'):
        ok += 1
    elif r == 'SKIP':
        skip += 1
    else:
        bad += 1
label = sys.argv[2] + ': ' if len(sys.argv) > 2 else ''
print('%s%d passed, %d failed, %d skipped' % (label, ok, bad, skip))
sys.exit(1 if bad or not ok else 3 if skip else 0)
