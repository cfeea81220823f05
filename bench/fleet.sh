#!/usr/bin/env bash
# Builds herd in build-release/ (installing what is missing through scripts/setup.sh: haproxy
# and iproute2 here, wrk, redis-server and redis-sentinel are in its own list) and runs bench/fleet.py:
# several herd hosts, redis-server, redis-sentinel and haproxy, each in a network namespace of its own
# (tests/integration/topology.py). 1. how long a write through one host takes to reach every
# worker of 3 hosts (and of 1 host, for comparison); 2. requests/s through haproxy with 1, 2
# and 3 hosts (all on this machine's CPUs: overhead, not scaling); 3. failover time: the
# Redis primary killed (two replicas, three redis-sentinel), until the first acknowledged write
# through a host, with min_replicas_ack 0 and 1. Root only (network namespaces).
# Options go to bench/fleet.py (--writes N, --rounds N, --seconds S, --failovers N,
# --parts state,rps,failover).
# Results: bench/results/fleet.md and fleet.csv. Every process and namespace it makes is
# removed on exit, Ctrl-C included (`ip netns list` shows none of its hf<pid>-* afterwards).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "fleet: needs root (it makes network namespaces); run it as root" >&2
  exit 1
fi

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export HERD_BUILD_DIR="${HERD_BUILD_DIR:-$(dirname "$BENCH")/build-release}"
export HERD_MESON_ARGS="${HERD_MESON_ARGS:--Doptimization=2 -Ddebug=true -Db_ndebug=true -Dtests=false}"
HERD_EXTRA_PACKAGES=(haproxy iproute2)

# Debian starts haproxy as a system service when it is installed (on *:80 with its default
# config); the benchmark runs its own, so, as bench/upgrade.sh does for nginx, ask invoke-rc.d
# not to start it (exit 101 = "not allowed") while setup.sh installs it, unless the machine
# already has a policy.
policy_made=0
if ! dpkg-query -W -f='${Status}' haproxy 2>/dev/null | grep -q "install ok installed" && [ ! -e /usr/sbin/policy-rc.d ]; then
  if printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d 2>/dev/null; then
    chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
fi
remove_policy() {
  if ((policy_made)); then rm -f /usr/sbin/policy-rc.d; policy_made=0; fi
}
trap remove_policy EXIT

# shellcheck source=../scripts/setup.sh
source "$BENCH/../scripts/setup.sh"
remove_policy

mkdir -p "$BENCH/results"
exec python3 "$BENCH/fleet.py" --build "$HERD_BUILD_DIR" --results "$BENCH/results" "$@"
