#!/usr/bin/env bash
# Builds herd (installing what is missing, redis-server included) and runs the fault-injection
# soak: steady HTTP load and acknowledged state writes for 60 s while workers are killed every
# 200 ms, a worker is stopped, the broker is killed, Redis restarts, herd reloads and the
# descriptor limit fills. Options go to bench/soak.py (--seconds S, --workers N, --nofile N, ...).
# Results: bench/results/soak*.csv and soak-herd.log.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
exec python3 "$HERD_ROOT/bench/soak.py" --build "$BUILD_DIR" "$@"
