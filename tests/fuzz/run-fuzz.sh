#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time: run-fuzz.sh TARGET SEEDS WORKDIR SECONDS [DICT]
# New inputs go to WORKDIR/corpus (the seeds in the source tree are never written); a crashing
# input is saved as WORKDIR/crash-<sha1> and the run fails. Extra options: HERD_FUZZ_ARGS.
set -euo pipefail
target=$1 seeds=$2 work=$3 seconds=$4 dict=${5:-}
mkdir -p "$work/corpus"
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
      -artifact_prefix="$work/")
if [ -n "$dict" ] && [ -f "$dict" ]; then args+=(-dict="$dict"); fi
# shellcheck disable=SC2206
extra=(${HERD_FUZZ_ARGS:-})
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
exec "$target" "${args[@]}" "${extra[@]}" "$work/corpus" "$seeds"
