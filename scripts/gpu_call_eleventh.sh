#!/usr/bin/env bash
# Issue 13, eleventh session (2026-11-26), H100 calls:
#   softmax - the attention kernel alone: shipped (row max of the raw scores, `attention.RAW_MAX`),
#         "scaled" (the row max of the scaled scores, as before) and "pipelined" (the next key block's
#         scores issued before the current block's softmax, scripts/attention_pipelined.py), three
#         tiles, every shape of run 22; then batch 16 x 480 px in the model, A-B-C-A-B in one process
#         (run 51)
#   run 52 (`mma-sum`, at commit bcff58d): the softmax denominator as a tensor-core product with ones
#         (`attention.MMA_SUM`), the same two steps; slower, so removed with its mode
#   six - the new defaults at 260-780 px with the end-to-end modes and fidelity; batch 16 x 480 A-B-A
#         against the scaled row max (the third step runs only if the deadline allows) (run 53)
#   six-rest - 910 px and the regression gate (run 54)
#   check - after the kernel's prologue and tail became shared jit helpers: tests/test_kernels.py natively,
#         then the kernel alone (shipped, scaled, rotated) at the shipped tile, to compare with run 51 (run 56)
#   coord - batch 16 x 480 with Inductor's coordinate-descent tuning of its Triton kernels (the 48
#         LayerNorm kernels ran at ~2-2.5 TB/s in run 20's trace, ~2.3 ms a forward), A-B-A-B (run 57)
#   autotune - batch 16 x 480 with Inductor's GEMM templates autotuned against cuBLAS (`autotune-gemm`;
#         run 20's trace had the K = 1024 GEMMs at 610-660 TFLOP/s against 720 for fc2), A-B-A (run 59)
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
six)
  timeout 290 python3 scripts/gpu_levers.py --variants base --sizes 260 390 520 650 780 --e2e base \
    --profile none --deadline 240 --name six 2>&1 | noise | tee "$OUT/six.log" | cut -c1-240
  timeout 180 python3 scripts/gpu_levers.py --variants base,scaled-max,base~2 --sizes 480 --batch 16 \
    --iterations 60 --e2e none --profile none --deadline 110 --name six_b16 2>&1 | noise | tee "$OUT/six_b16.log"
  ;;
six-rest)
  timeout 120 python3 scripts/gpu_levers.py --variants base --sizes 910 --e2e base \
    --profile base --deadline 60 --name six_910 2>&1 | noise | tee "$OUT/six_910.log" | cut -c1-240
  regression_gate 400 12
  ;;
check)
  timeout 200 python3 -m pytest -q -rs -p no:cacheprovider tests/test_kernels.py 2>&1 | tee "$OUT/test_kernels.log" | tail -6
  timeout 150 python3 scripts/gpu_attention_kernel.py --kernels shipped scaled pipelined --deadline 120 \
    --tiles 64,64,4,3 2>&1 | noise | tee "$OUT/attention_check.log"
  cp "$OUT/attention_tiles.json" "$OUT/attention_check.json" 2>/dev/null
  ;;
coord)
  timeout 560 python3 scripts/gpu_levers.py --variants base,coord,base~2,coord~2 --sizes 480 --batch 16 \
    --iterations 100 --e2e none --profile base,coord --deadline 470 --name b16_coord 2>&1 | noise | tee "$OUT/b16_coord.log"
  ;;
autotune)
  timeout 580 python3 scripts/gpu_levers.py --variants base,autotune-gemm,base~2 --sizes 480 --batch 16 \
    --iterations 100 --e2e none --profile base,autotune-gemm --deadline 500 --name b16_autotune 2>&1 | noise \
    | grep -v -E "^AUTOTUNE|^ +[A-Za-z_0-9]+ [0-9.]+ ms|SingleProcess|select_algorithm" | tee "$OUT/b16_autotune.log"
  ;;
*) echo "usage: $0 [softmax|six|six-rest|check|coord|autotune]" >&2; exit 2 ;;
esac
