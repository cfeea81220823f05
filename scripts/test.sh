#!/usr/bin/env bash
# The README's second command: set up, build, and run every test suite, first in the normal
# build, then in a build instrumented with AddressSanitizer and UndefinedBehaviorSanitizer
# (HERD_SANITIZE=0 skips that second pass), then each libFuzzer target for a bounded time in a
# clang build (HERD_FUZZ=0 skips that third pass; HERD_FUZZ_SECONDS sets the time per target).
set -euo pipefail
# The WebSocket tests' client (Python's websockets, run by Debian's /usr/bin/python3), the
# browser that test_example_chat drives over its DevTools protocol, and the load balancer in
# front of test_fleet's hosts (with iproute2 for its network namespaces), and tmux, the
# terminal test_top runs `herd top` in.
HERD_EXTRA_PACKAGES=(python3-websockets chromium haproxy iproute2 tmux)
if [ "${HERD_FUZZ:-1}" != 0 ]; then
  # clang with its libFuzzer and sanitizer runtimes: only the fuzz pass needs them.
  HERD_EXTRA_PACKAGES+=(clang libclang-rt-14-dev)
fi
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

if [ "${HERD_FUZZ:-1}" != 0 ]; then
  FUZZ_DIR="${HERD_FUZZ_BUILD_DIR:-$HERD_ROOT/build-fuzz}"
  FUZZ_SECONDS="${HERD_FUZZ_SECONDS:-30}"
  if [ ! -f "$FUZZ_DIR/build.ninja" ]; then
    # Only the fuzz targets and the herd sources they test (-Dtests=false: the suites above
    # already ran); every object instrumented for coverage, ASan and UBSan.
    CC=clang CXX=clang++ meson setup "$FUZZ_DIR" "$HERD_ROOT" -Dfuzz=true -Dtests=false \
      -Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Dfuzz_seconds="$FUZZ_SECONDS"
  else
    meson setup --reconfigure "$FUZZ_DIR" "$HERD_ROOT" -Dfuzz_seconds="$FUZZ_SECONDS" >/dev/null
  fi
  meson compile -C "$FUZZ_DIR" fuzz-targets
  # Each target runs FUZZ_SECONDS from its seed corpus (tests/fuzz/corpus/); a crash or a
  # broken invariant fails its test and leaves the input in $FUZZ_DIR/tests/fuzz/work/TARGET/.
  meson test -C "$FUZZ_DIR" --no-rebuild --suite fuzz --print-errorlogs --num-processes 2 \
    || status=$?
  testlogs+=("$FUZZ_DIR/meson-logs/testlog.json")
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
