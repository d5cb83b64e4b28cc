#!/usr/bin/env bash
# Issue 13, eleventh session (2026-11-26), H100 calls:
#   softmax - the attention kernel alone: shipped (row max of the raw scores, `attention.RAW_MAX`),
#         "scaled" (the row max of the scaled scores, as before) and "pipelined" (the next key block's
#         scores issued before the current block's softmax, scripts/attention_pipelined.py), three
#         tiles, every shape of run 22; then batch 16 x 480 px in the model, A-B-C-A-B in one process
#         (run 51)
#   mma-sum - the same for the softmax denominator on the tensor cores (`attention.MMA_SUM`), A-B-A-B
set -u
. "$(dirname "$0")/gpu_env.sh"
case "${1:-softmax}" in
softmax)
  timeout 190 python3 scripts/gpu_attention_kernel.py --kernels shipped scaled pipelined --deadline 160 \
    --tiles 64,64,4,3 64,64,4,2 128,64,8,2 2>&1 | noise | tee "$OUT/attention_softmax.log"
  cp "$OUT/attention_tiles.json" "$OUT/attention_softmax.json" 2>/dev/null
  timeout 330 python3 scripts/gpu_levers.py --variants base,scaled-max,pipelined-attn,base~2,scaled-max~2 \
    --sizes 480 --batch 16 --iterations 100 --e2e none --profile base,pipelined-attn --deadline 270 \
    --name b16_softmax 2>&1 | noise | tee "$OUT/b16_softmax.log"
  ;;
mma-sum)
  timeout 150 python3 scripts/gpu_attention_kernel.py --kernels shipped mma-sum --deadline 120 \
    --tiles 64,64,4,3 64,64,4,4 2>&1 | noise | tee "$OUT/attention_mma_sum.log"
  cp "$OUT/attention_tiles.json" "$OUT/attention_mma_sum.json" 2>/dev/null
  timeout 300 python3 scripts/gpu_levers.py --variants base,mma-sum,base~2,mma-sum~2 \
    --sizes 480 --batch 16 --iterations 100 --e2e none --profile none --deadline 240 \
    --name b16_mma_sum 2>&1 | noise | tee "$OUT/b16_mma_sum.log"
  ;;
*) echo "usage: $0 [softmax|mma-sum]" >&2; exit 2 ;;
esac
