#!/usr/bin/env bash
# Issue 13, fifth session (2026-11-25): the decoder tail and the graph's output, H100 calls.
#   tail  - (run 7) baseline vs the features written outside the CUDA graph with the 1x1 convs before
#           their upsamples and the last upsample fused into the normalisation (late-split), with and
#           without cuDNN benchmarking, at 260/520/910; then batch 16 at 480.
#   tail2 - (run 8) baseline, the copy out of the graph removed (split), the 1x1 convs before their
#           upsamples with the last upsample in the graph (late-split) or in ATen outside it
#           (late-split-eagerup), at 260/520/910 with profiles; then batch 16 at 480.
set -u
export PYTHONPATH=${PYTHONPATH:-}:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-reports/gpu}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
date -u +"%Y-%m-%dT%H:%M:%SZ"
noise() { grep -v -E "^E1125|Ignoring this choice|^ *$|[Ww]arn" ; }
case "${1:-tail2}" in
tail)  # the cudnn variants were removed from gpu_levers.py after this run (no effect); kept for the record
  timeout 400 python3 scripts/gpu_levers.py --variants base,late-split,late-split-cudnn --sizes 260 520 910 \
    --e2e late-split-cudnn --profile base,late-split-cudnn --deadline 300 --name tail 2>&1 | noise | tee "$OUT/tail.log"
  timeout 170 python3 scripts/gpu_levers.py --variants base,late-split-cudnn --sizes 480 --batch 16 --iterations 30 \
    --e2e none --profile none --deadline 120 --name tail_b16 2>&1 | noise | tee "$OUT/tail_b16.log"
  ;;
tail2)
  timeout 420 python3 scripts/gpu_levers.py --variants base,split,late-split,late-split-eagerup --sizes 260 520 910 \
    --e2e late-split-eagerup --profile base,split,late-split,late-split-eagerup --deadline 330 --name tail2 \
    2>&1 | noise | tee "$OUT/tail2.log"
  timeout 160 python3 scripts/gpu_levers.py --variants base,split,late-split-eagerup --sizes 480 --batch 16 \
    --iterations 30 --e2e none --profile none --deadline 110 --name tail2_b16 2>&1 | noise | tee "$OUT/tail2_b16.log"
  ;;
esac
