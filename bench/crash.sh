#!/usr/bin/env bash
# Builds herd (installing what is missing) and runs the crash-recovery benchmark against a
# Node.js cluster (node must be on PATH).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
command -v node >/dev/null || { echo "crash.sh: node is needed for the comparison" >&2; exit 1; }
exec python3 "$HERD_ROOT/bench/crash.py" "$@"
