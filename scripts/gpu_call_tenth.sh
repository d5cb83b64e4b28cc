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
#   rows-ncu - the ViT's GEMMs with and without the class token's row (scripts/gpu_gemm_rows.py); Nsight
#         Compute on one launch each of the finish and attention kernels at batch 16 x 480
#   six - the new defaults (narrow key tail) at all six sizes with the end-to-end modes and fidelity;
#         batch 16 x 480 A-B-A against the wide tail; the regression gate and latency ratios
#   b16-ws - batch 16 x 480 with the defaults and with no cuBLAS / cuBLASLt workspace, four processes
#         alternating (run 41 had one of each: +0.5-1.0 % without)
#   regcap - the finish and attention kernels under Triton's register cap (maxnreg), batch 16 and 520
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
rows-ncu)
  timeout 150 python3 scripts/gpu_gemm_rows.py 2>&1 | noise | tee "$OUT/gemm_rows.log"
  timeout 240 ncu --kernel-name regex:"upsample2|attention" --launch-count 2 --set full \
    python3 scripts/gpu_ncu_two_kernels.py > "$OUT/ncu_two_kernels.txt" 2>&1
  echo "ncu rc=$?"; grep -E "Duration|Throughput|Registers|Achieved Occupancy|Theoretical Occupancy|Block Limit|Shared Memory Configuration Size|Dynamic Shared|Stall|bank|Bank|One or More|Uncoalesced|Excessive" \
    "$OUT/ncu_two_kernels.txt" | head -90
  ;;
six)
  timeout 290 python3 scripts/gpu_levers.py --variants base --sizes 260 390 520 650 780 910 --e2e base \
    --profile none --deadline 240 --name six 2>&1 | noise | tee "$OUT/six.log" | cut -c1-240
  timeout 180 python3 scripts/gpu_levers.py --variants base,wide-tail,base~2 --sizes 480 --batch 16 \
    --iterations 60 --e2e none --profile none --deadline 110 --name six_b16 2>&1 | noise | tee "$OUT/six_b16.log"
  regression_gate 100 8
  ;;
six-rest)  # run 45 ran out of its limits at 910 px and in the gate (the gate alone takes ~150 s)
  timeout 120 python3 scripts/gpu_levers.py --variants base --sizes 910 --e2e base \
    --profile base --deadline 60 --name six_910 2>&1 | noise | tee "$OUT/six_910.log" | cut -c1-240
  regression_gate 400 12
  ;;
cpp910)  # run 47 (`gpu_call_final.sh cpp`) spent its budget before Python's 910 px step
  timeout 560 python3 scripts/gpu_cpp_compare.py --sizes 910 --budget-s 470 --iterations 100 --stream-frames 30 \
    --steps package build cpp fidelity python --cpp-configs graph-fp16 graph-fp32 \
    2>&1 | grep -v -i warn | tee "$OUT/cpp_call.log" | tail -30
  cd "$OUT" && tar czf details.tgz logs cpp_*.json 2>/dev/null; rm -rf logs cpp_*.json feats_*.npy x_*.npy
  ;;
b16-ws)  # the defaults with and without a cuBLAS workspace (process-wide), alternating processes
  for WS in default none default none; do
    if [ $WS = none ]; then export CUBLAS_WORKSPACE_CONFIG=:0:0 CUBLASLT_WORKSPACE_SIZE=0
    else unset CUBLAS_WORKSPACE_CONFIG CUBLASLT_WORKSPACE_SIZE; fi
    timeout 120 python3 scripts/gpu_levers.py --variants base --sizes 480 --batch 16 --iterations 100 \
      --e2e none --profile none --deadline 60 --name b16_ws_$WS 2>&1 | noise | grep -E "base 480|eager" \
      | tee -a "$OUT/b16_ws.log"
    cp "$OUT/b16_ws_$WS.json" "$OUT/b16_ws_${WS}_$(date +%H%M%S).json"
  done
  ;;
regcap)
  timeout 200 python3 scripts/gpu_register_cap.py 2>&1 | noise | tee "$OUT/register_cap.log"
  ;;
*) echo "usage: $0 [tail-tma|rows-ncu|six|six-rest|cpp910|b16-ws|regcap]" >&2; exit 2 ;;
esac
