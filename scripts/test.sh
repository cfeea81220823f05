#!/usr/bin/env bash
# The README's second command: set up, build, and run every test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 "$@"
