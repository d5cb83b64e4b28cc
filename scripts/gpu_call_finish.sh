#!/usr/bin/env bash
# Issue 13, sixth session (2026-11-26), one H100 call: the last x2 upsample and the channel
# normalisation as one Triton kernel outside the CUDA graph (fused-finish, kernels/upsample_normalize.py)
# beside the defaults (readout GEMMs on since run 13) at 260/520/910, then batch 16 at 480 px with fp32
# and fp16 features; the kernel's own test on the GPU first.
set -u
. "$(dirname "$0")/gpu_env.sh"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py 2>&1 | tail -3
timeout 300 python3 scripts/gpu_levers.py --variants base,fused-finish --sizes 260 520 910 --e2e none \
  --profile base,fused-finish --trace fused-finish --deadline 200 --name finish 2>&1 | noise | tee "$OUT/finish.log"
timeout 170 python3 scripts/gpu_levers.py --variants base,fused-finish --sizes 480 --batch 16 --iterations 30 \
  --fp16-out --e2e none --profile fused-finish --deadline 100 --name finish_b16 2>&1 | noise | tee "$OUT/finish_b16.log"
