#!/usr/bin/env bash
# Issue 13, twelfth session (2026-11-26), H100 calls:
#   lt - the ViT's four GEMMs at every seed size's token count and at batch 16 x 480: PyTorch's cuBLASLt
#        call against up to 64 candidates of cuBLASLt's heuristic each, with 1 and 32 MiB of workspace
#        (scripts/gpu_lt_search.py); then PyTorch's calls alone in two processes, with its default
#        cuBLASLt workspace and with CUBLASLT_WORKSPACE_SIZE=32768 (KiB), the one knob that needs no code
#        (run 60 timed only the last two: the search crashed; runs 61-63 traced it; run 64 the search alone)
#   tuned - tests/test_tuned_linear.py natively (builds kernels/lt_linear.cpp), then the compiled runner with
#        the blocks' Linears on the tuned cuBLASLt op against the defaults at 260 and 520 px, A-B-A-B (run 65)
#   tuned-b16 - the tests verbosely (run 65's pytest crashed), then the same A-B-A-B at batch 16 x 480 px
set -u
. "$(dirname "$0")/gpu_env.sh"
case "${1:-lt}" in
lt)
  timeout 370 python3 scripts/gpu_lt_search.py --deadline 330 2>&1 | noise | tee "$OUT/lt_search.log"
  echo "lt_search exit ${PIPESTATUS[0]}"
  timeout 95 python3 scripts/gpu_lt_search.py --torch-only --deadline 75 --name lt_torch 2>&1 | noise \
    | tee "$OUT/lt_torch.log"
  CUBLASLT_WORKSPACE_SIZE=32768 timeout 95 python3 scripts/gpu_lt_search.py --torch-only --deadline 75 \
    --name lt_torch_ws32 2>&1 | noise | tee "$OUT/lt_torch_ws32.log"
  ;;
tuned)
  timeout 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_tuned_linear.py 2>&1 | tail -6
  timeout 400 python3 scripts/gpu_levers.py --variants base,lt-tuned,base~2,lt-tuned~2 --sizes 260 520 \
    --e2e none --profile base,lt-tuned --deadline 330 --name tuned 2>&1 | noise | tee "$OUT/tuned.log" | cut -c1-250
  ;;
tuned-b16)
  timeout 100 python3 -m pytest -x -v -p no:cacheprovider tests/test_tuned_linear.py 2>&1 \
    | grep -E "PASSED|FAILED|SKIPPED|ERROR|Fatal|File \"/work" | head -20
  timeout 480 python3 scripts/gpu_levers.py --variants base,lt-tuned,base~2,lt-tuned~2 --sizes 480 --batch 16 \
    --iterations 100 --e2e none --profile base,lt-tuned --deadline 380 --name tuned_b16 2>&1 | noise \
    | tee "$OUT/tuned_b16.log" | cut -c1-250
  ;;
*) echo "usage: $0 [lt|tuned|tuned-b16]" >&2; exit 2 ;;
esac
