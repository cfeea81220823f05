#!/usr/bin/env bash
# Installs what herd needs from Debian 12 (as root, or through sudo) and builds it in build/
# (or in $HERD_BUILD_DIR).
# Sourced by the README's two commands; safe to run again (it installs only what is missing).
set -euo pipefail

HERD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${HERD_BUILD_DIR:-$HERD_ROOT/build}"

# Build: compiler, Meson, the libraries (hiredis for the state broker's Redis backend, c-ares
# for the HTTP client's name lookups, libpq for the PostgreSQL client, nettle for the
# WebSocket handshake's SHA-1 and base64).
# Tests: GoogleTest, Python, curl and wrk as clients, redis-server, redis-cli and
# redis-sentinel (the tests start their own Redis, replica and sentinels), postgresql (the PostgreSQL client's tests start their own server).
PACKAGES=(
  g++ meson ninja-build pkg-config
  libboost-dev libboost-filesystem-dev nlohmann-json3-dev libfmt-dev node-llhttp libhiredis-dev
  libc-ares-dev libpq-dev nettle-dev
  libgtest-dev python3 curl wrk redis-server redis-tools redis-sentinel postgresql
)
# A caller may ask for more (scripts/test.sh: clang and its libFuzzer runtime for the fuzz pass,
# which serving does not need).
PACKAGES+=(${HERD_EXTRA_PACKAGES[@]+"${HERD_EXTRA_PACKAGES[@]}"})

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing missing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null; then
    SUDO=(sudo)
  else
    echo "setup: missing packages (${missing[*]}) and neither root nor sudo: install them and run again" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  # HERD_MESON_ARGS: extra options for a new build folder (the benchmark's release build).
  # shellcheck disable=SC2086
  meson setup "$BUILD_DIR" "$HERD_ROOT" ${HERD_MESON_ARGS:-}
fi
meson compile -C "$BUILD_DIR"
