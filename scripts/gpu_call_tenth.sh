#!/usr/bin/env bash
# Issue 13, tenth session (2026-11-26), H100 calls:
#   tail-tma - the attention kernel alone: shipped (narrow key tail, `kernels.attention.tail_block`),
#         "wide" (a full masked tail block, as before) and TMA (scripts/attention_tma.py), three tiles,
#         every shape of run 22; then batch 16 x 480 px in the model, A-B-A in one process:
#         defaults, wide tail, TMA kernel, defaults again, with a profile of the defaults and of TMA
#         (run 42)
#   run 43 (`tails`, at commit fc3b637): a narrow last query block too, a second code path of 16 rows
#         in the kernel; 1-8 % slower than the key tail alone at every shape (tile 64, 64, 4, 3), so
#         removed with its mode
set -u
. "$(dirname "$0")/gpu_env.sh"
case "${1:-tail-tma}" in
tail-tma)
  timeout 200 python3 scripts/gpu_attention_kernel.py --kernels shipped wide tma --deadline 170 \
    --tiles 64,64,4,3 128,64,8,3 64,64,4,4 2>&1 | noise | tee "$OUT/attention_tail_tma.log"
  cp "$OUT/attention_tiles.json" "$OUT/attention_tail_tma.json" 2>/dev/null
  timeout 330 python3 scripts/gpu_levers.py --variants base,wide-tail,tma-attn,base~2 --sizes 480 --batch 16 \
    --iterations 100 --e2e none --profile base,tma-attn --deadline 280 --name b16_tail_tma 2>&1 | noise \
    | tee "$OUT/b16_tail_tma.log"
  ;;
*) echo "usage: $0 [tail-tma]" >&2; exit 2 ;;
esac
