#!/usr/bin/env bash
# Builds herd (installing what is missing: herd's packages, redis-server and postgresql through
# scripts/setup.sh; wrk and nginx from Debian the way bench/peers.sh does; ioredis and pg from
# the npm registry into bench/.npm) and runs bench/clients.py: handlers that call Redis,
# PostgreSQL and nginx, herd async and blocking next to a Node.js cluster. Options go to
# bench/clients.py (--quick, --rounds N, --seconds S, --kinds redis,pg,http).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export HERD_BUILD_DIR="${HERD_BUILD_DIR:-$(dirname "$BENCH")/build-release}"
export HERD_MESON_ARGS="${HERD_MESON_ARGS:--Doptimization=2 -Ddebug=true -Db_ndebug=true -Dtests=false}"
# shellcheck source=../scripts/setup.sh
source "$BENCH/../scripts/setup.sh"

missing=()
for p in wrk nginx; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "clients: installing missing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null; then
    SUDO=(sudo)
  else
    echo "clients: missing packages (${missing[*]}) and neither root nor sudo: install them and run again" >&2
    exit 1
  fi
  # As in bench/peers.sh: Debian would start nginx as a service on port 80; the benchmark runs
  # its own, so invoke-rc.d is told not to (exit 101), unless the machine has a policy already.
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
command -v node >/dev/null || { echo "clients: node is needed (the Node.js peer)" >&2; exit 1; }

# What Node users pick, locally: bench/.npm/node_modules/{ioredis,pg}.
if [ ! -d "$BENCH/.npm/node_modules/ioredis" ] || [ ! -d "$BENCH/.npm/node_modules/pg" ]; then
  echo "clients: installing ioredis and pg into bench/.npm"
  npm install --prefix "$BENCH/.npm" --no-audit --no-fund --loglevel=error ioredis@6 pg@8
fi

mkdir -p "$BENCH/results"
exec python3 "$BENCH/clients.py" --build "$HERD_BUILD_DIR" "$@"
