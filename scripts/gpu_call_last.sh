#!/usr/bin/env bash
# Issue 13, last H100 call of 2026-11-25 (third session): the Python AOTIRunner crash reduction on a
# tiny CUDA package, then GEMM-only max-autotune beside the baseline at 260 px (the size where the
# small-M GEMMs are furthest from the floor).  OUT=... bash scripts/gpu_call_last.sh
set -u
. "$(dirname "$0")/gpu_env.sh"
timeout 200 python3 scripts/gpu_aoti_repro.py fp16 2>&1 | grep -v -i warn | tee "$OUT/aoti_repro.log" | tail -8
timeout 300 python3 scripts/gpu_levers.py --variants base,autotune-gemm --sizes 260 --e2e none \
  --profile base,autotune-gemm --deadline 120 --name autotune 2>&1 \
  | grep -v -E "^E1125|Ignoring this choice|^ *$" | tee "$OUT/autotune.log" | tail -30
