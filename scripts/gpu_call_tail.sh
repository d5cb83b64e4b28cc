#!/usr/bin/env bash
# Issue 13, fifth session (2026-11-25): the decoder tail and the graph's output, one H100 call.
#   tail - baseline vs the features written outside the CUDA graph with the 1x1 convs before their
#          upsamples (late-split), and the same with cuDNN benchmarking, at 260/520/910: device-only,
#          fidelity against eager fp32 and profiles in one run; then batch 16 at 480 (throughput).
set -u
export PYTHONPATH=${PYTHONPATH:-}:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-reports/gpu}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
date -u +"%Y-%m-%dT%H:%M:%SZ"
noise() { grep -v -E "^E1125|Ignoring this choice|^ *$|[Ww]arn" ; }
case "${1:-tail}" in
tail)
  timeout 400 python3 scripts/gpu_levers.py --variants base,late-split,late-split-cudnn --sizes 260 520 910 \
    --e2e late-split-cudnn --profile base,late-split-cudnn --deadline 300 --name tail 2>&1 | noise | tee "$OUT/tail.log"
  timeout 170 python3 scripts/gpu_levers.py --variants base,late-split-cudnn --sizes 480 --batch 16 --iterations 30 \
    --e2e none --profile none --deadline 120 --name tail_b16 2>&1 | noise | tee "$OUT/tail_b16.log"
  ;;
esac
