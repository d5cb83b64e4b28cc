#!/usr/bin/env bash
# Issue 13, fifteenth session (2026-11-26): re-checks on the GPU of code that last session could only check here.
#   verify (nvidia-h100-x1) - natively: tests/test_lanes.py, tests/test_extract_overlap.py and tests/test_host_output.py
#        (the copy-stream handshake became runners.base.copy_to_host_behind in 25e7e31, the lane-count rule
#        runners.lanes.check_lane_count in fa660e7), tests/test_kernels.py; then the latency ratios and the regression
#        gate; then the two GPU scripts whose timer moved into scripts/gpu_lanes.py (time_calls), briefly
#   devices (nvidia-h100-x2 / nvidia-h200-x2) - scripts/gpu_extract_multi.sh: each card alone (which also fills
#        Inductor's cache for both), then --devices all, then the byte identity of one GPU's and all GPUs' files;
#        run 87's cold --devices all had hit its 120 s limit with no output
set -u
. "$(dirname "$0")/gpu_env.sh"
export LSEG_CACHE_DIR=$PWD/.artifact-cache
case "${1:-verify}" in
verify)
  timeout 330 python3 -m pytest -q -rs -p no:cacheprovider tests/test_lanes.py tests/test_extract_overlap.py \
    tests/test_host_output.py tests/test_kernels.py 2>&1 | grep -v Warn | tail -8 | cut -c1-400 | tee "$OUT/tests.log"
  regression_gate 200 30
  timeout 60 python3 scripts/gpu_finish_kernel.py --layouts nchw --skip-nhwc 2>&1 | noise | tail -12 \
    | tee "$OUT/finish_kernel.log"
  timeout 120 python3 scripts/gpu_branch_streams.py --sizes 260 --iterations 100 --rounds 1 --deadline 90 2>&1 \
    | noise | tail -12 | tee "$OUT/branch_streams.log"
  ;;
devices)
  bash scripts/gpu_extract_multi.sh 2>&1 | tee "$OUT/multi_gpu.log"
  ;;
*) echo "usage: $0 [verify|devices]" >&2; exit 2 ;;
esac
