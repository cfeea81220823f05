#!/usr/bin/env bash
# The benchmark suite, one command: installs what is missing (herd's packages through
# scripts/setup.sh; wrk, nginx, h2o, python3-matplotlib and valgrind from Debian; PM2 from the
# npm registry into bench/.npm), builds herd in build-release/ (-O2 -g, NDEBUG, no tests),
# then runs, in this order:
#   peers      bench/peers.py      herd / nginx / h2o / Node cluster / raw epoll, wrk, CPU per request
#   spawn      bench/spawn.py      worker fork-to-ready and memory, herd and Node child_process.fork()
#   reload     bench/reload.py     failed requests per reload and per crash, herd and PM2 cluster mode
#   callgrind  bench/callgrind.py  instructions per request of a herd worker
#   async      bench/async.py      handlers that wait 10 ms (herd and a Node cluster), 1,000 SSE streams
# Results (tables, CSV, PNG) go to bench/results/; the tables are also printed.
#
# usage: bench/peers.sh [--quick] [--parts "peers spawn reload callgrind async"] [bench/peers.py options]
#   --quick          a short try of every part (1 round of 2 s; fewer spawns, shorter loads)
#   --parts LIST     only these parts
#   anything else goes to bench/peers.py: --rounds N (5), --seconds S (5), --warmup S (1), --only REGEX
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export HERD_BUILD_DIR="${HERD_BUILD_DIR:-$(dirname "$BENCH")/build-release}"
export HERD_MESON_ARGS="${HERD_MESON_ARGS:--Doptimization=2 -Ddebug=true -Db_ndebug=true -Dtests=false}"

parts="peers spawn reload callgrind async"
quick=()
peer_args=()
while (($#)); do
  case "$1" in
    --quick) quick=(--quick); peer_args+=(--quick); shift ;;
    --parts) parts="$2"; shift 2 ;;
    --parts=*) parts="${1#--parts=}"; shift ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) peer_args+=("$1"); shift ;;
  esac
done

# herd's own packages and its build (in $HERD_BUILD_DIR, with $HERD_MESON_ARGS when new).
# shellcheck source=../scripts/setup.sh
source "$BENCH/../scripts/setup.sh"

# The peers, the same way setup.sh installs: only what is missing, as root or through sudo.
EXTRA=(wrk nginx h2o python3-matplotlib valgrind gcc)
missing=()
for p in "${EXTRA[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "peers: installing missing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null; then
    SUDO=(sudo)
  else
    echo "peers: missing packages (${missing[*]}) and neither root nor sudo: install them and run again" >&2
    exit 1
  fi
  # Debian starts nginx and h2o as system services on port 80 when they are installed; the
  # benchmark runs its own, so ask invoke-rc.d not to start them (exit 101 = "not allowed"),
  # unless the machine already has a policy.
  policy_made=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q
  status=0
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?
  if ((policy_made)); then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi
  ((status == 0)) || exit "$status"
fi
command -v node >/dev/null || { echo "peers: node is needed (the Node.js peers)" >&2; exit 1; }

# PM2, locally: bench/.npm/node_modules/.bin/pm2, with its own PM2_HOME (never ~/.pm2).
PM2="$BENCH/.npm/node_modules/.bin/pm2"
if [[ " $parts " == *" reload "* ]] && [ ! -x "$PM2" ]; then
  echo "peers: installing PM2 into bench/.npm"
  npm install --prefix "$BENCH/.npm" --no-audit --no-fund --loglevel=error pm2
fi
export PM2_HOME
PM2_HOME="$(mktemp -d /tmp/herd-bench-pm2-XXXXXX)"
cleanup() {
  if [ -x "$PM2" ]; then "$PM2" kill >/dev/null 2>&1 || true; fi
  rm -rf "$PM2_HOME"
}
trap cleanup EXIT

# Debian's python3: the one python3-matplotlib installs into.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
mkdir -p "$BENCH/results"
for part in $parts; do
  echo "=== $part" >&2
  case "$part" in
    peers) "$PY" "$BENCH/peers.py" "${peer_args[@]}" ;;
    spawn) "$PY" "$BENCH/spawn.py" "${quick[@]}" ;;
    reload) "$PY" "$BENCH/reload.py" --pm2 "$PM2" "${quick[@]}" ;;
    callgrind) "$PY" "$BENCH/callgrind.py" "${quick[@]}" ;;
    async) "$PY" "$BENCH/async.py" "${quick[@]}" ;;
    *) echo "peers: unknown part $part (peers, spawn, reload, callgrind, async)" >&2; exit 2 ;;
  esac
done
echo "results in bench/results/: peers.md peers.csv peers.png spawn.md reload.md callgrind.md async.md async.csv async.png" >&2
