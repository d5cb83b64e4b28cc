#!/usr/bin/env bash
# Issue 13, H100 call of 2026-11-25 (third session): the AOTIRunner crash reduction, then the levers
# not measured before (GELU epilogue, GEMM-only autotune) beside the baseline, with fidelity and
# profiles, in one process.  OUT=... bash scripts/gpu_call_levers.sh
set -u
. "$(dirname "$0")/gpu_env.sh"
timeout 130 python3 scripts/gpu_aoti_repro.py fp16 2>&1 | grep -v -i warn | tail -8 | tee "$OUT/aoti_repro.log"
timeout 450 python3 scripts/gpu_levers.py --variants base,gelu-epi,autotune-gemm@520 --sizes 260 520 910 \
  --e2e none --profile base,gelu-epi,autotune-gemm --deadline 300 2>&1 | grep -v -E "^E1125|Ignoring this choice|^ *$" \
  | tee "$OUT/levers.log" | tail -40
