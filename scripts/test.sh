#!/usr/bin/env bash
# The README's second command: set up, build, and run every test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

status=0
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 "$@" || status=$?

# One closing line that any reader understands: counts of meson's test results.
python3 - "$BUILD_DIR/meson-logs/testlog.json" <<'PY'
import json, sys
counts = {}
with open(sys.argv[1]) as f:
    for line in f:
        result = json.loads(line)["result"]
        counts[result] = counts.get(result, 0) + 1
passed = counts.get("OK", 0) + counts.get("EXPECTEDFAIL", 0)
skipped = counts.get("SKIP", 0)
failed = sum(counts.values()) - passed - skipped
print("tests: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
PY
exit "$status"
