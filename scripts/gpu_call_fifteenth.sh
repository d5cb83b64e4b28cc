#!/usr/bin/env bash
# Issue 13, fifteenth session (2026-11-26): re-checks on the GPU of code that last session could only check here.
#   verify (nvidia-h100-x1) - natively: tests/test_lanes.py, tests/test_extract_overlap.py and tests/test_host_output.py
#        (the copy-stream handshake became runners.base.copy_to_host_behind in 25e7e31, the lane-count rule
#        runners.lanes.check_lane_count in fa660e7), tests/test_kernels.py; then the latency ratios and the regression
#        gate; then the two GPU scripts whose timer moved into scripts/gpu_lanes.py (time_calls), briefly
#   devices (nvidia-h100-x2 / nvidia-h200-x2) - scripts/gpu_extract_multi.sh: each card alone (which also fills
#        Inductor's cache for both), then --devices all, then the byte identity of one GPU's and all GPUs' files;
#        run 87's cold --devices all had hit its 120 s limit with no output
#   devices-start (nvidia-h100-x2 / nvidia-h200-x2) - when each device joins a --devices all run (16384 images),
#        cold and warm, against one GPU in the same call, and with fewer CPU threads a process (run 90);
#        `devices-start threads` (run 91): cold and warm again after each device process took its share of the cores
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
devices-start)  # run 89 had both GPUs idle ~60 s into --devices all and cuda:1 joining at the end: when each joins
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  DATA=/tmp/lseg_bench
  timeout 120 python3 scripts/bench_images.py $DATA/one 1024 480x640 || exit 1
  mkdir -p $DATA/x16 && for c in a b c d e f g h i j k l m n o p; do cp -r $DATA/one $DATA/x16/$c; done
  ls $DATA/x16/*/*.jpg | wc -l
  run() {  # label, limit, extract arguments...
    local label=$1 limit=$2; shift 2
    echo "== $label"
    PYTHONFAULTHANDLER=1 /usr/bin/time -f "wall %e s" timeout -s ABRT -k 15 "$limit" python3 -m lseg_encoder.cli \
      extract $DATA/x16 --sink none --size 480 --batch 16 --workers 8 --no-progress "$@" 2>&1 | noise | tail -30
  }
  if [ "${2:-}" = threads ]; then  # run 91: after each device process took its share of the cores
    {
      run "all GPUs, 16384 images, caches cold (both compile side by side)" 170 --devices all
      run "all GPUs again, caches warm" 130 --devices all
    } 2>&1 | tee "$OUT/devices_threads.log"
    exit 0
  fi
  {
    run "all GPUs, 16384 images, caches cold (both compile side by side)" 200 --devices all
    run "all GPUs again, caches warm" 150 --devices all
    run "1 GPU (cuda:0), caches warm" 150 --devices cuda:0
    OMP_NUM_THREADS=8 run "all GPUs, caches warm, OMP_NUM_THREADS=8" 150 --devices all
  } 2>&1 | tee "$OUT/devices_start.log"
  ;;
*) echo "usage: $0 [verify|devices|devices-start]" >&2; exit 2 ;;
esac
