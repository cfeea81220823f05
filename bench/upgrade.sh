#!/usr/bin/env bash
# Builds herd in build-release/ (installing what is missing through scripts/setup.sh, wrk and
# nginx included) and runs bench/upgrade.py: failed requests per binary upgrade under wrk load,
# herd (`herd upgrade`) next to nginx (USR2, WINCH, QUIT: its "upgrading executable on the
# fly"), 2 workers each, keep-alive and a new connection per request. Options go to
# bench/upgrade.py (--rounds N, --upgrades K, --pause S, --connections N, --no-close, --quick).
# Results: bench/results/upgrade.md and upgrade.csv.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export HERD_BUILD_DIR="${HERD_BUILD_DIR:-$(dirname "$BENCH")/build-release}"
export HERD_MESON_ARGS="${HERD_MESON_ARGS:--Doptimization=2 -Ddebug=true -Db_ndebug=true -Dtests=false}"
HERD_EXTRA_PACKAGES=(nginx)

# Debian starts nginx as a system service on port 80 when it is installed; the benchmark runs
# its own, so, as bench/peers.sh does, ask invoke-rc.d not to start it (exit 101 = "not
# allowed") while setup.sh installs it, unless the machine already has a policy.
policy_made=0
if ! dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q "install ok installed" && [ ! -e /usr/sbin/policy-rc.d ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=(sudo); fi
  if printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null 2>&1; then
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
fi
remove_policy() {
  if ((policy_made)); then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; policy_made=0; fi
}
trap remove_policy EXIT

# shellcheck source=../scripts/setup.sh
source "$BENCH/../scripts/setup.sh"
remove_policy

mkdir -p "$BENCH/results"
exec python3 "$BENCH/upgrade.py" --build "$HERD_BUILD_DIR" "$@"
