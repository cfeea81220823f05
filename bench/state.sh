#!/usr/bin/env bash
# Builds herd (installing what is missing, redis-server included) and runs the shared-state
# benchmark: propagation latency of a write to every worker (Redis publish path, Redis polling
# path, file backend; 2 and 8 workers) and Redis commands/s of herd's broker next to 8 naive
# pollers. Options go to bench/state.py (--writes N, --poll-ms MS, --idle-seconds S, ...).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
exec python3 "$HERD_ROOT/bench/state.py" --herd "$BUILD_DIR/server/herd" "$@"
