#!/usr/bin/env bash
# Issue 13, sixth session (2026-11-26), one H100 call: three more levers beside the shipped defaults at
# 260/520/910 with fidelity and profiles, one forward's kernel sequence (the idle time between kernels),
# then batch 16 at 480 px:
#   readout-gemm - the DPT readouts' 1x1 and transposed convs as GEMMs on the tokens (model/readout_gemm.py)
#   pdl          - programmatic dependent launch for Inductor's Triton kernels
#   flex         - FlexAttention (an Inductor-generated Triton kernel) instead of cuDNN's SDPA
set -u
. "$(dirname "$0")/gpu_env.sh"
timeout 405 python3 scripts/gpu_levers.py --variants base,readout-gemm,pdl,flex@260/910 --sizes 260 520 910 \
  --e2e none --profile base,readout-gemm,pdl,flex --trace base,readout-gemm --deadline 300 --name readout \
  2>&1 | noise | tee "$OUT/readout.log"
timeout 165 python3 scripts/gpu_levers.py --variants base,readout-gemm --sizes 480 --batch 16 --iterations 30 \
  --e2e none --profile base,readout-gemm --trace base --deadline 100 --name readout_b16 2>&1 | noise \
  | tee "$OUT/readout_b16.log"
