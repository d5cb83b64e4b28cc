#!/usr/bin/env bash
# Issue 13, ninth session (2026-11-26), H100 calls:
#   cpp - runs 38-40: `bash scripts/gpu_call_final.sh cpp` (C++ vs Python, graph-revision-8 packages)
#   b16 - batch 16 x 480 px: the defaults, cuDNN timing its conv algorithms while the graph records
#         (cudnn-bench), the defaults again (A-B-A in one process); then no cuBLAS / cuBLASLt workspace
#         (a process-wide environment setting, so a process of its own); fp16 features timed beside
#         fp32 in every cell; one forward's kernel sequence of the defaults
#   attention-tma - scripts/attention_tma.py (the attention kernel with TMA descriptor loads and
#         stores) beside the shipped kernel and cuDNN, seven tiles, every shape of run 22; measured in
#         the tenth session through gpu_call_tenth.sh tail-tma instead (run 42)
set -u
if [ "${1:-b16}" = cpp ]; then exec bash "$(dirname "$0")/gpu_call_final.sh" cpp; fi
. "$(dirname "$0")/gpu_env.sh"
case "${1:-b16}" in
b16)
  B16="--sizes 480 --batch 16 --iterations 100 --fp16-out --e2e none"
  timeout 220 python3 scripts/gpu_levers.py --variants base,cudnn-bench,base~2 $B16 \
    --profile base --trace base --deadline 150 --name b16_cudnn 2>&1 | noise | tee "$OUT/b16_cudnn.log"
  CUBLAS_WORKSPACE_CONFIG=:0:0 CUBLASLT_WORKSPACE_SIZE=0 timeout 130 python3 scripts/gpu_levers.py \
    --variants base,base~2 $B16 --profile base --deadline 80 --name b16_noworkspace 2>&1 | noise \
    | tee "$OUT/b16_noworkspace.log"
  ;;
attention-tma)
  timeout 420 python3 scripts/gpu_attention_kernel.py --kernels shipped tma --deadline 360 \
    --tiles 64,64,4,3 64,64,4,4 64,128,4,3 128,64,4,3 128,64,8,3 128,64,8,4 128,128,8,3 2>&1 | noise \
    | tee "$OUT/attention_tma.log"
  ;;
*) echo "usage: $0 [b16|cpp|attention-tma]" >&2; exit 2 ;;
esac
