#!/usr/bin/env bash
# The README's second command: set up, build, and run every test suite, first in the normal
# build, then in a build instrumented with AddressSanitizer and UndefinedBehaviorSanitizer
# (HERD_SANITIZE=0 skips that second pass).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

status=0
testlogs=()
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 "$@" || status=$?
testlogs+=("$BUILD_DIR/meson-logs/testlog.json")

if [ "${HERD_SANITIZE:-1}" != 0 ]; then
  ASAN_DIR="${HERD_ASAN_BUILD_DIR:-$HERD_ROOT/build-asan}"
  if [ ! -f "$ASAN_DIR/build.ninja" ]; then
    meson setup "$ASAN_DIR" "$HERD_ROOT" -Db_sanitize=address,undefined -Dbuildtype=debug
  fi
  meson compile -C "$ASAN_DIR"
  # Any report aborts the process; worker reports are caught in their logs by the harness.
  ASAN_OPTIONS="abort_on_error=1:detect_leaks=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  HERD_TIMEOUT_SCALE="${HERD_TIMEOUT_SCALE:-2}" \
    meson test -C "$ASAN_DIR" --print-errorlogs --num-processes 2 "$@" || status=$?
  testlogs+=("$ASAN_DIR/meson-logs/testlog.json")
fi

# One closing line that any reader understands: counts of meson's test results.
python3 - "${testlogs[@]}" <<'PY'
import json, sys
counts = {}
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            result = json.loads(line)["result"]
            counts[result] = counts.get(result, 0) + 1
passed = counts.get("OK", 0) + counts.get("EXPECTEDFAIL", 0)
skipped = counts.get("SKIP", 0)
failed = sum(counts.values()) - passed - skipped
print("tests: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
PY
exit "$status"
