#!/usr/bin/env bash
# Issue 13, fourteenth session (2026-11-26), H100 calls:
#   branches (run 82; run 83 with calls queued back to back, as time_runner times, and a priority variant) - the
#        stream and against the shipped runner, at batch 1 (scripts/gpu_branch_streams.py)
set -u
. "$(dirname "$0")/gpu_env.sh"
case "${1:-branches}" in
branches)
  timeout 560 python3 scripts/gpu_branch_streams.py --sizes 260 520 390 --deadline 330 2>&1 | noise \
    | tee "$OUT/branch_streams.log"
  echo "branches exit ${PIPESTATUS[0]}"
  ;;
*) echo "usage: $0 [branches]" >&2; exit 2 ;;
esac
