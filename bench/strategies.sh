#!/usr/bin/env bash
# Builds herd (installing what is missing) and runs the balancing-strategy benchmark.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
exec python3 "$HERD_ROOT/bench/strategies.py" "$@"
