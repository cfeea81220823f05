#!/usr/bin/env bash
# Builds herd (installing what is missing through scripts/setup.sh), builds the C load client
# bench/peers/ws_load.c (cc -O2, into bench/results/), installs the `ws` npm package into
# bench/.npm, raises the open-files limit and runs bench/websocket.py: herd's probe WebSocket
# endpoints next to a Node.js cluster with `ws` (bench/peers/node-ws.js), 2 workers each —
# memory per idle socket (10,000), echo round trips at 1,000 sockets, one message fanned out to
# 10,000 sockets of a room. Options go to bench/websocket.py (--quick, --rounds N, --seconds S,
# --parts idle,echo,fanout, --idle N, --fanout N, --messages N, --sources N).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export HERD_BUILD_DIR="${HERD_BUILD_DIR:-$(dirname "$BENCH")/build-release}"
export HERD_MESON_ARGS="${HERD_MESON_ARGS:--Doptimization=2 -Ddebug=true -Db_ndebug=true -Dtests=false}"
# cc for bench/peers/ws_load.c, taskset to pin it: setup.sh installs them with herd's own.
HERD_EXTRA_PACKAGES=(gcc util-linux)
# shellcheck source=../scripts/setup.sh
source "$BENCH/../scripts/setup.sh"

command -v node >/dev/null || { echo "websocket: node is needed (the Node.js peer)" >&2; exit 1; }

# What Node users pick for WebSockets, locally: bench/.npm/node_modules/ws.
if [ ! -d "$BENCH/.npm/node_modules/ws" ]; then
  echo "websocket: installing ws into bench/.npm"
  npm install --prefix "$BENCH/.npm" --no-audit --no-fund --loglevel=error ws@8
fi

mkdir -p "$BENCH/results"
cc -O2 -Wall -Wextra -o "$BENCH/results/ws_load" "$BENCH/peers/ws_load.c"

# 10,000 sockets need more than the usual 1,024 descriptors, in the client and in herd's and
# Node's workers (herd's workers inherit the limit and size themselves by it): as high as
# allowed, up to 65,536.
hard="$(ulimit -Hn)"
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
echo "websocket: open-files limit $(ulimit -n), $(nproc) CPUs"

exec python3 "$BENCH/websocket.py" --build "$HERD_BUILD_DIR" "$@"
