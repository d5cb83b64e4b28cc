#!/usr/bin/env bash
# Issue 13, fourth session (2026-11-25), two H100 calls:
#   six      - the shipped compiled fp16 path (GELU epilogue on) at the seed's six sizes: device-only,
#              end-to-end modes and fidelity against eager fp32 in the same run; batch-16 throughput at 480.
#   autotune - GEMM-only max-autotune at 260 beside the baseline, no deadline (it needs ~10 minutes).
set -u
. "$(dirname "$0")/gpu_env.sh"
case "${1:-six}" in
six)
  timeout 450 python3 scripts/gpu_levers.py --variants base --sizes 260 390 520 650 780 910 --e2e base \
    --profile none --deadline 330 --name six 2>&1 | noise | tee "$OUT/six.log" | tail -40
  [ "${SKIP_BENCH:-0}" = 1 ] && exit 0
  echo "== bench: compiled fp16, batch 16 at 480, device-only"
  timeout 150 python3 -m lseg_encoder.cli bench --device cuda --no-progress --backends compiled --sizes 480 \
    --batch 16 --iterations 50 --mode device --out "$OUT/bench_b16" 2>&1 | noise | tail -6
  ;;
autotune)
  timeout 590 python3 scripts/gpu_levers.py --variants base,autotune-gemm --sizes 260 --e2e none \
    --profile base,autotune-gemm --deadline 100 --name autotune260 2>&1 | noise | tee "$OUT/autotune260.log" \
    | grep -v -E "^  triton_|^  extern|^strides|^dtypes" | tail -60
  ;;
esac
