#!/usr/bin/env bash
# Issue 13, fourteenth session (2026-11-26), H100 calls (runs 82-85) and 2x H200 calls (runs 86-87):
#   branches (run 82; run 83 with calls queued back to back, as time_runner times, and a priority variant) - the
#        decoder's branches 1-3 on a side stream inside one forward's CUDA graph, against one stream and against
#        the shipped runner, at batch 1 (scripts/gpu_branch_streams.py)
#   extract (run 84) - extract's copy to the host overlapping the next chunk's forward: the extract tests natively,
#        FeatureComputer one chunk at a time against overlapped (scripts/gpu_extract_overlap.py), then
#        `lseg-encoder extract --sink none` on 2048 generated JPEGs with the code before the change (.old_src, carried:
#        `git archive ef0d33a src | tar -x -C .old_src`) and after it, batch 8 and 16 at 480 px
#   extract-long (run 85) - the extract tests natively after their fixtures were pinned to the CPU, and the CLI
#        A/B again on 4096 JPEGs, after the second pinned block moved into the warm-up
#   devices (run 86, nvidia-h100-x2) - scripts/gpu_extract_multi.sh (each card alone, then --devices all, then the
#        byte identity of one GPU's and all GPUs' files) with the overlap, and --devices all with the code before it.
#        It ran on 2 H200s and found cuda:1 failing in every run, before and after the change: the finish kernel's
#        eager Triton launch went to the current device (cuda:0)
#   devices-fix (run 87) - the finish kernel under a device guard, the extract workers' device made current:
#        the 2-GPU kernel test natively, then --devices all and --devices cuda:1 on 8192 JPEGs. In run 87 the
#        --devices all run (both devices compiling cold) hit its limit, then 120 s, with no output: now 240 s
set -u
. "$(dirname "$0")/gpu_env.sh"
case "${1:-branches}" in
branches)
  timeout 560 python3 scripts/gpu_branch_streams.py --sizes 260 520 390 --deadline 330 2>&1 | noise \
    | tee "$OUT/branch_streams.log"
  echo "branches exit ${PIPESTATUS[0]}"
  ;;
extract)
  export LSEG_CACHE_DIR=$PWD/.artifact-cache
  DATA=/tmp/lseg_bench/640x480
  for part in a b c d; do timeout 120 python3 scripts/bench_images.py $DATA/$part 512 480x640 & done
  timeout 200 python3 -m pytest -q -rs -p no:cacheprovider tests/test_extract_overlap.py tests/test_extract.py 2>&1 \
    | grep -v Warn | tail -4 | cut -c1-300
  wait; ls $DATA/*/*.jpg | wc -l
  timeout 200 python3 scripts/gpu_extract_overlap.py --batches 8 16 2>&1 | noise | tee "$OUT/extract_overlap.log"
  for batch in 8 16; do
    for code in after before; do
      src=$PWD/src; [ $code = before ] && src=$PWD/.old_src/src
      echo "== extract --sink none, 480 px, batch $batch, code $code the change"
      PYTHONPATH=/tmp/site:$src timeout 110 python3 -c "import lseg_encoder.extract.compute as c; print(c.__file__, hasattr(c.FeatureComputer, 'native_start'))"
      PYTHONPATH=/tmp/site:$src timeout 110 python3 -m lseg_encoder.cli extract $DATA --sink none --size 480 \
        --batch $batch --workers 12 --no-progress 2>&1 | noise | tail -3
    done
  done 2>&1 | tee "$OUT/extract_cli.log"
  ;;
extract-long)
  export LSEG_CACHE_DIR=$PWD/.artifact-cache
  DATA=/tmp/lseg_bench/640x480
  for part in a b c d e f g h; do timeout 150 python3 scripts/bench_images.py $DATA/$part 512 480x640 & done
  timeout 200 python3 -m pytest -q -rs -p no:cacheprovider tests/test_extract_overlap.py tests/test_extract.py 2>&1 \
    | grep -v Warn | tail -4 | cut -c1-300
  wait; ls $DATA/*/*.jpg | wc -l
  for batch in 8 16; do
    for code in after before; do
      src=$PWD/src; [ $code = before ] && src=$PWD/.old_src/src
      echo "== extract --sink none, 480 px, batch $batch, code $code the change ($src)"
      PYTHONPATH=/tmp/site:$src timeout 100 python3 -m lseg_encoder.cli extract $DATA --sink none --size 480 \
        --batch $batch --workers 14 --no-progress 2>&1 | noise | tail -3
    done
  done 2>&1 | tee "$OUT/extract_cli_long.log"
  ;;
devices)  # on nvidia-h100-x2
  bash scripts/gpu_extract_multi.sh 2>&1 | tee "$OUT/multi_gpu.log"
  echo "== code before the change (.old_src): all GPUs (--devices all), 8192 images, --sink none"
  PYTHONPATH=/tmp/site:$PWD/.old_src/src timeout 150 python3 -m lseg_encoder.cli extract /tmp/lseg_bench/x8 --sink none \
    --size 480 --batch 16 --workers 8 --no-progress --devices all 2>&1 | noise | tail -4 | tee -a "$OUT/multi_gpu.log"
  ;;
devices-fix)  # on nvidia-h100-x2 / nvidia-h200-x2, after the device guard of the finish kernel
  export LSEG_CACHE_DIR=$PWD/.artifact-cache NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  DATA=/tmp/lseg_bench/x
  for part in a b c d e f g h; do timeout 100 python3 scripts/bench_images.py $DATA/one/$part 512 480x640 & done
  timeout 90 python3 -m pytest -q -rs -p no:cacheprovider tests/test_kernels.py -k "not_current or equals_upsample" 2>&1 \
    | grep -v Warn | tail -3 | tee "$OUT/devices_fix.log"
  wait; cp -r $DATA/one $DATA/two; ls $DATA/*/*/*.jpg | wc -l
  for devices in all cuda:1; do  # all first: both devices compile cold, side by side
    echo "== extract --sink none, 480 px, batch 16, 8 workers a device, 8192 images, --devices $devices"
    timeout 240 python3 -m lseg_encoder.cli extract $DATA --sink none --size 480 --batch 16 --workers 8 \
      --no-progress --devices $devices 2>&1 | noise | tail -3
  done 2>&1 | tee -a "$OUT/devices_fix.log"
  ;;
*) echo "usage: $0 [branches|extract|extract-long|devices|devices-fix]" >&2; exit 2 ;;
esac
