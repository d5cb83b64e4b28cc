#!/usr/bin/env bash
# The H100 runs behind docs/extract.md (issue 12) and the verify wall time in docs (issue 14), in two
# calls: `gpu_extract_bench.sh extract` then `gpu_extract_bench.sh verify`. Synthetic ViT-L/16 weights,
# compiled fp16; every step has its own time limit so a slow step does not cost the others.
set -u
OUT=${OUT:-reports/gpu}; mkdir -p "$OUT"
export LSEG_CACHE_DIR=${LSEG_CACHE_DIR:-$PWD/.artifact-cache} PYTHONUNBUFFERED=1
CLI="python3 -m lseg_encoder.cli"  # a variable, not a function: `timeout` runs programs
quiet() { grep -v -i -E "warn|it/s\]|img/s\]" ; }
DATA=/tmp/lseg_bench
case "${1:-extract}" in
extract)
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  timeout 120 python3 scripts/bench_images.py $DATA/640x480 1024 480x640
  ls $DATA/640x480/*.jpg | head -512 > $DATA/first512.txt
  timeout 60 python3 scripts/bench_images.py $DATA/320x240 256 240x320
  timeout 60 python3 scripts/bench_images.py $DATA/512x683 48 512x683
  echo "== disk write speed (dd, 2 GiB, fdatasync)"; dd if=/dev/zero of=/tmp/ddtest bs=1M count=2048 conv=fdatasync 2>&1 | tail -1; rm -f /tmp/ddtest
  echo "== bench: device-only batch 16 at 480"
  timeout 200 $CLI bench --device cuda --no-progress --backends compiled --sizes 480 --batch 16 --iterations 30 \
    --mode device --out "$OUT/bench" 2>&1 | quiet | tail -4
  echo "== extract native 480, batch 16, --sink none (1024 images)"
  timeout 120 $CLI extract $DATA/640x480 --sink none --size 480 --batch 16 --workers 8 --no-progress 2>&1 | quiet | tail -4
  echo "== extract native 480, batch 16, .npy fp16 on local disk (512 of the images)"
  rm -rf /tmp/xnpy; timeout 150 $CLI extract @$DATA/first512.txt --out /tmp/xnpy --size 480 --batch 16 --workers 8 \
    --no-progress 2>&1 | quiet | tail -4; du -sh /tmp/xnpy; rm -rf /tmp/xnpy
  echo "== extract openscene on 320x240 frames, batch 16, --sink none"
  timeout 150 $CLI extract $DATA/320x240 --recipe openscene --sink none --batch 16 --workers 8 --no-progress 2>&1 | quiet | tail -4
  echo "== extract lseg-multiscale, 6 scales + flip, on 512x683, batch 16, --sink none"
  timeout 200 $CLI extract $DATA/512x683 --recipe lseg-multiscale --sink none --batch 16 --workers 8 --no-progress 2>&1 | quiet | tail -4
  ;;
verify)
  for run in first warm; do
    echo "== verify --device cuda ($run run)"
    /usr/bin/time -f "verify wall %e s" timeout 280 $CLI verify --device cuda --out "$OUT/verify_$run" 2>&1 | quiet | tail -14
  done
  ;;
esac
