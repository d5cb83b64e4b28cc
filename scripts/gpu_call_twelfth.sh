#!/usr/bin/env bash
# Issue 13, twelfth session (2026-11-26), H100 calls:
#   lt - the ViT's four GEMMs at every seed size's token count and at batch 16 x 480: PyTorch's cuBLASLt
#        call against up to 64 candidates of cuBLASLt's heuristic each, with 1 and 32 MiB of workspace
#        (scripts/gpu_lt_search.py); then PyTorch's calls alone in two processes, with its default
#        cuBLASLt workspace and with CUBLASLT_WORKSPACE_SIZE=32768 (KiB), the one knob that needs no code
#        (run 60 timed only the last two: the search crashed; runs 61-63 traced it; run 64 the search alone)
#   run 65 (`tuned`, at commit ffd5847): tests/test_tuned_linear.py natively, then the compiled runner with
#        the blocks' Linears on the tuned cuBLASLt op (`CompiledRunner(tuned_gemms=True)`, gpu_levers.py
#        `lt-tuned`) against the defaults at 260 and 520 px, A-B-A-B; run 66 (`tuned-b16`, at commit
#        929a7d3) the same at batch 16 x 480 px. No gain: the option, its tests and both modes were removed
#   final - the shipped defaults at all six seed sizes in one process: device-only, end-to-end modes, the
#        kernel profile and fidelity per size (780 and 390 first: run 53 lost 780's row to its limit, and
#        its 390 px stream was the one outlier) (run 67)
#   extract-dtype - the extract job's fp16 features written by the finish kernel against fp32 features cast
#        afterwards (the path before), batch 16 and 8 at 480 px, device-only and FeatureComputer.native_batch,
#        A-B-A-B in one process (scripts/gpu_extract_dtype.py) (run 68)
#   run 70 (`gram`, at commit 5686beb): the finish kernel in one pass with its norms from neighbour dot
#        products (scripts/finish_gram.py there), alone against the shipped two-pass kernel, then batch 16 x 480
#        in the model, A-B-A-B; no gain, so the mode and its scripts were removed (run 69 found the mode missing)
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
final)
  timeout 570 python3 scripts/gpu_levers.py --variants base --sizes 780 390 260 520 650 910 --e2e base \
    --profile base --deadline 500 --name final 2>&1 | noise | tee "$OUT/final.log" | cut -c1-250
  ;;
extract-dtype)
  export LSEG_CACHE_DIR=${LSEG_CACHE_DIR:-$PWD/.artifact-cache}
  timeout 400 python3 scripts/gpu_extract_dtype.py --batches 16 8 2>&1 | noise | tee "$OUT/extract_dtype.log"
  ;;
*) echo "usage: $0 [lt|final|extract-dtype]" >&2; exit 2 ;;
esac
